// fovea/cuda/corruptions.hpp: host-side declarations of the CUDA twin of the image corruptions
// (definitions in kernels/corruptions.cuh; the entry point users call is data::corrupt_batch in
// data/corruptions.hpp, which resolves the plan on the host and picks the twin by the batch's device).
#pragma once

#include <array>
#include <cstdint>
#include <vector>

#include "fovea/core/config.hpp"
#include "fovea/core/tensor.hpp"
#include "fovea/data/corruption_math.hpp"

#if FOVEA_WITH_CUDA
namespace fovea::cuda {

// images (N, 3, H, W) -> out (N, 3, H, W) on one CUDA device, out distinct from images; masks
// (N, 1, H, W) on the same device when plan.needs_mask (else ignored). Queued on the current stream;
// returns without waiting. jpeg_compression is not supported (it throws).
void corrupt_batch(CView images, CView masks, const ::fovea::data::detail::corruption::CorruptBatchPlan& plan,
                   View out);

// jpeg_compression's device ends. jpeg_pack: images (N, 3, H, W) on a CUDA device to interleaved
// 8-bit RGB, pixels[((n H + y) W + x) 3 + c] = jpeg_byte(images[n, c, y, x]), in host memory of
// N H W 3 bytes; waits for them. jpeg_unpack: those bytes back, out[n, c, y, x] = jpeg_value(...),
// into out (N, 3, H, W) on a CUDA device; queued (pixels may be reused when it returns).
void jpeg_pack(CView images, unsigned char* pixels);
void jpeg_unpack(const unsigned char* pixels, View out);

// The bounding box {x0, y0, x1, y1} (half-open) of the nonzero pixels of each mask of masks
// (N, 1, H, W) on a CUDA device, {0, 0, 0, 0} for an empty one. Waits for the stream.
std::vector<std::array<std::int64_t, 4>> fov_boxes(CView masks);

}  // namespace fovea::cuda
#endif
