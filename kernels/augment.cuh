// kernels/augment.cuh: the CUDA twins of the augmentation ops (declared in include/fovea/cuda/augment.hpp,
// contracts in include/fovea/ops/augment.hpp). The per-pixel math is the FOVEA_HD code of
// include/fovea/cpu/augment.hpp; the host plan (per-sample parameters, cos/sin, blur weights) is copied
// to the device once per call, so both twins read the same bits.
//
// Kernels (all memory-bound):
//   contrast_mean_kernel: one block per sample whose jitter includes contrast: the mean over the
//     output pixels of the grayscale of the jitter prefix (optionally after the geometric gather);
//   pixel_kernel: one thread per output pixel, all three channels: an optional gather (crop + flips +
//     rotation), then the enabled stages (jitter, grayscale, solarize, normalise); in the fused
//     pipeline solarize and normalise are deferred for blurred samples;
//   blur_rows_kernel / blur_cols_kernel: the separable blur over the blurred samples only (compact
//     scratch of those samples), the column pass finishing with solarize and normalise.
// augment_images is therefore 2 to 4 launches and reads the input once (twice for contrast samples).
#pragma once

#include <cstdint>
#include <cstring>
#include <vector>

#include "common.cuh"
#include "fovea/cpu/augment.hpp"
#include "fovea/cuda/augment.hpp"

namespace fovea::cuda::detail {

using ::fovea::detail::AugmentBatchPlan;
using ::fovea::detail::AugmentPlan;

enum AugmentStage : int {
  kStageGeometry = 1,
  kStageJitter = 2,
  kStageGray = 4,
  kStageSolarize = 8,
  kStageNormalize = 16,
  kStageDeferBlurred = 32,  // skip solarize and normalise for blurred samples (the blur pass does them)
};

// Device memory from fovea's caching allocator for one call, returned after the work is queued
// (the allocator reuses a block only on the same stream, so queued work finishes first).
class AugmentScratch {
 public:
  AugmentScratch(Device device, std::size_t bytes) : device_(device) {
    if (bytes > 0)
      ptr_ = ::fovea::cuda_allocator(device.index()).allocate(bytes, ::fovea::current_stream(device));
  }
  AugmentScratch(const AugmentScratch&) = delete;
  AugmentScratch& operator=(const AugmentScratch&) = delete;
  ~AugmentScratch() {
    if (ptr_ == nullptr) return;
    try {
      ::fovea::cuda_allocator(device_.index()).deallocate(ptr_);
    } catch (...) {  // the allocator made this pointer; a destructor must not throw
    }
  }
  char* bytes() const { return static_cast<char*>(ptr_); }

 private:
  Device device_;
  void* ptr_ = nullptr;
};

inline std::size_t align_up(std::size_t n) { return (n + 255) & ~std::size_t{255}; }

// The plan on the device: plans[N], means[N], blur weights, blurred sample indices.
struct DevicePlan {
  const AugmentPlan* plans = nullptr;
  float* means = nullptr;
  const float* weights = nullptr;
  const std::int32_t* blurred = nullptr;
};

class DevicePlanBuffer {
 public:
  DevicePlanBuffer(Device device, const AugmentBatchPlan& plan, cudaStream_t stream)
      : plans_bytes_(align_up(plan.samples.size() * sizeof(AugmentPlan))),
        means_bytes_(align_up(plan.samples.size() * sizeof(float))),
        weights_bytes_(align_up(plan.blur_weights.size() * sizeof(float))),
        blurred_bytes_(align_up(plan.blurred.size() * sizeof(std::int32_t))),
        scratch_(device, plans_bytes_ + means_bytes_ + weights_bytes_ + blurred_bytes_) {
    std::vector<char> host(plans_bytes_ + means_bytes_ + weights_bytes_ + blurred_bytes_, 0);
    auto put = [&](std::size_t offset, const void* src, std::size_t bytes) {
      if (bytes > 0) std::memcpy(host.data() + offset, src, bytes);
    };
    put(0, plan.samples.data(), plan.samples.size() * sizeof(AugmentPlan));
    put(plans_bytes_ + means_bytes_, plan.blur_weights.data(), plan.blur_weights.size() * sizeof(float));
    put(plans_bytes_ + means_bytes_ + weights_bytes_, plan.blurred.data(),
        plan.blurred.size() * sizeof(std::int32_t));
    // From pageable memory: returns once the bytes are staged, so `host` may go out of scope.
    FOVEA_CHECK_CUDA(
        cudaMemcpyAsync(scratch_.bytes(), host.data(), host.size(), cudaMemcpyHostToDevice, stream),
        host.size(), " bytes of augmentation plan");
    char* base = scratch_.bytes();
    view_.plans = reinterpret_cast<const AugmentPlan*>(base);
    view_.means = reinterpret_cast<float*>(base + plans_bytes_);
    view_.weights = reinterpret_cast<const float*>(base + plans_bytes_ + means_bytes_);
    view_.blurred =
        reinterpret_cast<const std::int32_t*>(base + plans_bytes_ + means_bytes_ + weights_bytes_);
  }
  const DevicePlan& view() const { return view_; }

 private:
  std::size_t plans_bytes_, means_bytes_, weights_bytes_, blurred_bytes_;
  AugmentScratch scratch_;
  DevicePlan view_;
};

// Sizes of one pixel-stage launch.
struct PixelGeometry {
  int in_h = 0, in_w = 0;  // input planes (== output planes without the geometry stage)
  int out_h = 0, out_w = 0;
  std::int64_t samples = 0;
};

// The pixel (oy, ox) of sample n before the colour stages: gathered, or read.
__device__ __forceinline__ void load_pixel(const float* x, const PixelGeometry& g, const AugmentPlan& p,
                                           int stages, std::int64_t n, int oy, int ox, float rgb[3]) {
  const std::int64_t in_plane = static_cast<std::int64_t>(g.in_h) * g.in_w;
  const float* img = x + n * 3 * in_plane;
  if (stages & kStageGeometry) {
    math::augment::geometry_pixel(img, g.in_h, g.in_w, g.out_w, p, oy, ox, rgb);
  } else {
    const std::int64_t i = static_cast<std::int64_t>(oy) * g.in_w + ox;
    rgb[0] = img[i], rgb[1] = img[in_plane + i], rgb[2] = img[2 * in_plane + i];
  }
}

__global__ void __launch_bounds__(kBlock)
    contrast_mean_kernel(const float* x, PixelGeometry g, DevicePlan plan, int stages) {
  const std::int64_t n = blockIdx.x;
  const AugmentPlan& p = plan.plans[n];
  if (!p.contrast) return;
  const int hw = g.out_h * g.out_w;
  float sum = 0.0f;
  for (int i = threadIdx.x; i < hw; i += blockDim.x) {
    float rgb[3];
    load_pixel(x, g, p, stages, n, i / g.out_w, i % g.out_w, rgb);
    math::augment::jitter_pixel(p, rgb[0], rgb[1], rgb[2], 0.0f, true);
    sum += math::augment::gray_of(rgb[0], rgb[1], rgb[2]);
  }
  __shared__ double partial[kBlock];
  partial[threadIdx.x] = sum;
  __syncthreads();
  for (int step = kBlock / 2; step > 0; step >>= 1) {
    if (threadIdx.x < step) partial[threadIdx.x] += partial[threadIdx.x + step];
    __syncthreads();
  }
  if (threadIdx.x == 0) plan.means[n] = static_cast<float>(partial[0] / hw);
}

__global__ void __launch_bounds__(kBlock) pixel_kernel(const float* x, float* out, PixelGeometry g,
                                                       DevicePlan plan, ChannelStats stats, int stages) {
  const std::int64_t hw = static_cast<std::int64_t>(g.out_h) * g.out_w;
  const std::int64_t total = g.samples * hw;
  const std::int64_t stride = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
  for (std::int64_t t = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; t < total;
       t += stride) {
    const std::int64_t n = t / hw, i = t - n * hw;
    const int oy = static_cast<int>(i / g.out_w), ox = static_cast<int>(i % g.out_w);
    const AugmentPlan& p = plan.plans[n];
    float rgb[3];
    load_pixel(x, g, p, stages, n, oy, ox, rgb);
    if (stages & kStageJitter)
      math::augment::jitter_pixel(p, rgb[0], rgb[1], rgb[2], p.contrast ? plan.means[n] : 0.0f, false);
    if (stages & kStageGray) math::augment::grayscale_pixel(p, rgb[0], rgb[1], rgb[2]);
    const bool deferred = (stages & kStageDeferBlurred) && p.blur;
    if ((stages & kStageSolarize) && !deferred && p.solarize)
      for (int c = 0; c < 3; ++c) rgb[c] = math::augment::solarize_value(rgb[c], p.threshold);
    if ((stages & kStageNormalize) && !deferred)
      for (int c = 0; c < 3; ++c)
        rgb[c] = math::augment::normalize_value(rgb[c], stats.mean[c], stats.std[c]);
    float* o = out + n * 3 * hw + i;
    o[0] = rgb[0], o[hw] = rgb[1], o[2 * hw] = rgb[2];
  }
}

// Row pass: rows[b] (compact, b over the blurred samples) from x's sample blurred[b].
__global__ void __launch_bounds__(kBlock)
    blur_rows_kernel(const float* x, float* rows, int h, int w, DevicePlan plan, std::int64_t blurred) {
  const std::int64_t hw = static_cast<std::int64_t>(h) * w;
  const std::int64_t total = blurred * 3 * hw;
  const std::int64_t stride = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
  for (std::int64_t t = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; t < total;
       t += stride) {
    const std::int64_t plane = t / hw, i = t - plane * hw;
    const std::int64_t b = plane / 3, c = plane - b * 3;
    const int n = plan.blurred[b];
    const AugmentPlan& p = plan.plans[n];
    const int y = static_cast<int>(i / w), xx = static_cast<int>(i % w);
    const float* line = x + (static_cast<std::int64_t>(n) * 3 + c) * hw + static_cast<std::int64_t>(y) * w;
    rows[t] = math::augment::blur_tap_sum(line, w, 1, xx, plan.weights + p.blur_offset, p.blur_kernel);
  }
}

// Column pass: out's sample blurred[b] from rows[b], then solarize / normalise when asked.
__global__ void __launch_bounds__(kBlock)
    blur_cols_kernel(const float* rows, float* out, int h, int w, DevicePlan plan, std::int64_t blurred,
                     ChannelStats stats, int stages) {
  const std::int64_t hw = static_cast<std::int64_t>(h) * w;
  const std::int64_t total = blurred * 3 * hw;
  const std::int64_t stride = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
  for (std::int64_t t = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; t < total;
       t += stride) {
    const std::int64_t plane = t / hw, i = t - plane * hw;
    const std::int64_t b = plane / 3, c = plane - b * 3;
    const int n = plan.blurred[b];
    const AugmentPlan& p = plan.plans[n];
    const int y = static_cast<int>(i / w), xx = static_cast<int>(i % w);
    float v = math::augment::blur_tap_sum(rows + plane * hw + xx, h, w, y, plan.weights + p.blur_offset,
                                          p.blur_kernel);
    if ((stages & kStageSolarize) && p.solarize) v = math::augment::solarize_value(v, p.threshold);
    if (stages & kStageNormalize) v = math::augment::normalize_value(v, stats.mean[c], stats.std[c]);
    out[(static_cast<std::int64_t>(n) * 3 + c) * hw + i] = v;
  }
}

// Runs the pixel stages (with the contrast-mean pass first when jitter includes contrast).
inline void launch_pixel_stages(const float* x, View out, const PixelGeometry& g,
                                const AugmentBatchPlan& plan, const DevicePlan& dplan,
                                const ChannelStats& stats, int stages, cudaStream_t stream, const char* op) {
  const int dev = out.device().index();
  bool any_contrast = false;
  for (const auto& p : plan.samples) any_contrast = any_contrast || p.contrast;
  if ((stages & kStageJitter) && any_contrast) {
    contrast_mean_kernel<<<static_cast<unsigned>(g.samples), kBlock, 0, stream>>>(x, g, dplan, stages);
    FOVEA_CHECK_LAUNCH("contrast_mean_kernel", op, ", output ", out.shape().str());
  }
  const std::int64_t pixels = g.samples * g.out_h * g.out_w;
  pixel_kernel<<<grid_for(pixels, dev), kBlock, 0, stream>>>(x, out.data(), g, dplan, stats, stages);
  FOVEA_CHECK_LAUNCH("pixel_kernel", op, ", output ", out.shape().str(), ", input ", g.in_h, "x", g.in_w);
}

// Blurs the plan's blurred samples of x into out (row pass into scratch, column pass into out).
inline void launch_blur(const float* x, View out, const AugmentBatchPlan& plan, const DevicePlan& dplan,
                        const ChannelStats& stats, int stages, cudaStream_t stream, const char* op) {
  const std::int64_t blurred = static_cast<std::int64_t>(plan.blurred.size());
  if (blurred == 0) return;
  const int dev = out.device().index();
  const int h = static_cast<int>(out.shape().h()), w = static_cast<int>(out.shape().w());
  const std::int64_t elements = blurred * 3 * h * w;
  AugmentScratch rows(out.device(), static_cast<std::size_t>(elements) * sizeof(float));
  float* r = reinterpret_cast<float*>(rows.bytes());
  blur_rows_kernel<<<grid_for(elements, dev), kBlock, 0, stream>>>(x, r, h, w, dplan, blurred);
  FOVEA_CHECK_LAUNCH("blur_rows_kernel", op, ", shape ", out.shape().str(), ", blurred samples ", blurred);
  blur_cols_kernel<<<grid_for(elements, dev), kBlock, 0, stream>>>(r, out.data(), h, w, dplan, blurred, stats,
                                                                   stages);
  FOVEA_CHECK_LAUNCH("blur_cols_kernel", op, ", shape ", out.shape().str(), ", blurred samples ", blurred);
}

inline PixelGeometry pixel_geometry(CView x, CView out) {
  PixelGeometry g;
  g.in_h = static_cast<int>(x.shape().h());
  g.in_w = static_cast<int>(x.shape().w());
  g.out_h = static_cast<int>(out.shape().h());
  g.out_w = static_cast<int>(out.shape().w());
  g.samples = out.shape().n();
  return g;
}

// A pixel-wise op: x -> out through `stages`.
inline void run_pixel_op(CView x, const AugmentBatchPlan& plan, View out, const ChannelStats& stats,
                         int stages, const char* op) {
  DeviceGuard guard(out.device().index());
  cudaStream_t stream = stream_for(out.device());
  DevicePlanBuffer dplan(out.device(), plan, stream);
  launch_pixel_stages(x.data(), out, pixel_geometry(x, out), plan, dplan.view(), stats, stages, stream, op);
}

}  // namespace fovea::cuda::detail

namespace fovea::cuda {

void random_resized_crop_flip(CView images, const ::fovea::detail::AugmentBatchPlan& plan, View out) {
  detail::run_pixel_op(images, plan, out, kIdentityStats, detail::kStageGeometry, "random_resized_crop_flip");
}

void color_jitter(CView x, const ::fovea::detail::AugmentBatchPlan& plan, View out) {
  detail::run_pixel_op(x, plan, out, kIdentityStats, detail::kStageJitter, "color_jitter");
}

void grayscale(CView x, const ::fovea::detail::AugmentBatchPlan& plan, View out) {
  detail::run_pixel_op(x, plan, out, kIdentityStats, detail::kStageGray, "grayscale");
}

void solarize(CView x, const ::fovea::detail::AugmentBatchPlan& plan, View out) {
  detail::run_pixel_op(x, plan, out, kIdentityStats, detail::kStageSolarize, "solarize");
}

void normalize_channels(CView x, const ChannelStats& stats, View out) {
  // No per-sample parameters: a plan of neutral samples.
  ::fovea::detail::AugmentBatchPlan plan;
  plan.samples.resize(static_cast<std::size_t>(x.shape().n()));
  detail::run_pixel_op(x, plan, out, stats, detail::kStageNormalize, "normalize_channels");
}

void gaussian_blur(CView x, const ::fovea::detail::AugmentBatchPlan& plan, View out) {
  detail::DeviceGuard guard(out.device().index());
  cudaStream_t stream = detail::stream_for(out.device());
  if (x.data() != out.data())
    FOVEA_CHECK_CUDA(cudaMemcpyAsync(out.data(), x.data(), x.bytes(), cudaMemcpyDeviceToDevice, stream),
                     "gaussian_blur copy, shape ", x.shape().str());
  if (plan.blurred.empty()) return;
  detail::DevicePlanBuffer dplan(out.device(), plan, stream);
  detail::launch_blur(x.data(), out, plan, dplan.view(), kIdentityStats, 0, stream, "gaussian_blur");
}

void augment_images(CView images, const ::fovea::detail::AugmentBatchPlan& plan, const ChannelStats& stats,
                    View out) {
  detail::DeviceGuard guard(out.device().index());
  cudaStream_t stream = detail::stream_for(out.device());
  detail::DevicePlanBuffer dplan(out.device(), plan, stream);
  const int pixel_stages = detail::kStageGeometry | detail::kStageJitter | detail::kStageGray |
                           detail::kStageSolarize | detail::kStageNormalize | detail::kStageDeferBlurred;
  detail::launch_pixel_stages(images.data(), out, detail::pixel_geometry(images, out), plan, dplan.view(),
                              stats, pixel_stages, stream, "augment_images");
  // The blurred samples: out holds them after geometry, jitter and grayscale; blur in place (the row
  // pass reads out into scratch, the column pass writes out) and finish with solarize + normalise.
  detail::launch_blur(out.data(), out, plan, dplan.view(), stats,
                      detail::kStageSolarize | detail::kStageNormalize, stream, "augment_images");
}

}  // namespace fovea::cuda
