// fovea/cuda/augment.hpp: host-side declarations of the CUDA twins of the augmentation ops (contracts
// in ops/augment.hpp; definitions in kernels/augment.cuh). Each copies the batch plan (per-sample
// parameters and blur weights) to the device, launches on the current stream of out's device and
// returns without waiting.
#pragma once

#include "fovea/core/config.hpp"
#include "fovea/core/tensor.hpp"
#include "fovea/cpu/augment.hpp"

#if FOVEA_WITH_CUDA
namespace fovea::cuda {

void random_resized_crop_flip(CView images, const ::fovea::detail::AugmentBatchPlan& plan, View out);
void color_jitter(CView x, const ::fovea::detail::AugmentBatchPlan& plan, View out);
void grayscale(CView x, const ::fovea::detail::AugmentBatchPlan& plan, View out);
void solarize(CView x, const ::fovea::detail::AugmentBatchPlan& plan, View out);
void gaussian_blur(CView x, const ::fovea::detail::AugmentBatchPlan& plan, View out);
void normalize_channels(CView x, const ChannelStats& stats, View out);
void augment_images(CView images, const ::fovea::detail::AugmentBatchPlan& plan, const ChannelStats& stats,
                    View out);

}  // namespace fovea::cuda
#endif
