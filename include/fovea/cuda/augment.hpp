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

// The shared-memory tile kernel behind the Gaussian blur (gaussian_blur and augment_images' fused
// blur). vector4 (the default): taps rounded up to a multiple of four with zero weights, the tap loop
// unrolled at compile time, 16-byte shared-memory loads; batches whose widest kernel has more than 32
// taps run the scalar kernel. scalar: one shared-memory load per tap and per kBlurRun outputs, any tap
// count. Both sum the same taps in the same order (results equal for finite images; a padded tap
// multiplies a pixel by zero, so an Inf within four pixels of a sample's kernel reach gives NaN).
// First read from the environment variable FOVEA_BLUR_TILES (auto | scalar | vector4 | strip); set it
// between ops, not while other threads launch blurs. vector4 became the default when a GPU run timed
// it 9 % faster (H200, 2026-11-28; docs/decisions.md); docs/augmentations.md describes the kernels.
// strip (opt-in, not yet timed on a GPU): blur_strip_kernel, the four-tap runs without halo rows: a
// block walks down a strip of at most 64 columns, row-blurring each input row once into a ring of
// blurred rows that the column pass reads; same bits as vector4, same tap limit (FOVEA_BLUR_TILES=strip).
enum class BlurTileKernel { scalar, vector4, strip };
BlurTileKernel& blur_tile_kernel_choice();
// The output tiles of the four-tap kernel. square (the default): 64 x 64, as the scalar tiles (a
// 224-px plane in 16 tiles of 64, 64, 64 and 32 rows and columns). fit: the fewest tiles of at most 64
// columns and 128 rows, their sides as even as the image allows (224 px: 8 tiles of 56 x 112), so no
// tile is a sliver and the row pass blurs fewer halo rows (22 per 112 rows at 23 taps), at the cost of
// more shared memory per block (77 KB at 23 taps: two blocks per SM instead of four); timed on the
// H200 it was no faster (0.269 against 0.265 ms at 23 taps), so square stays the default. Same bits
// either way (each output sums the same taps in the same order). First read from
// FOVEA_BLUR_TILE_SHAPE (auto | square | fit); set it between ops. docs/augmentations.md has the figures.
enum class BlurTileShape { square, fit };
BlurTileShape& blur_tile_shape();
// Which output rows a thread of the pixel kernel (crop, flips, rotation, colour ops, normalise) takes:
// strided (the default, measured): rows w, w + 8, w + 16, w + 24 of a 32-row tile for warp w;
// consecutive (opt-in, not yet timed on a GPU): rows 4 w .. 4 w + 3, so that a crop's gather takes a
// source row the previous row also read from registers instead of loading it again (an upscaling
// crop, as most of SimCLR's are, advances less than one source row per output row). Same results
// either way. First read from FOVEA_PIXEL_ROWS (auto | strided | consecutive); set it between ops.
enum class PixelRows { strided, consecutive };
PixelRows& pixel_rows();

}  // namespace fovea::cuda
#endif
