// kernels/augment.cuh: the CUDA twins of the augmentation ops (declared in include/fovea/cuda/augment.hpp,
// contracts in include/fovea/ops/augment.hpp). The per-pixel math is the FOVEA_HD code of
// include/fovea/cpu/augment.hpp; the host plan (per-sample parameters, cos/sin, blur weights) is copied
// to the device once per call, so both twins read the same bits.
//
// Kernels (all memory-bound):
//   contrast_mean_kernel: kMeanChunks blocks per sample whose jitter includes contrast, each summing
//     the grayscale of the jitter prefix (optionally after the geometric gather) over its share of the
//     output pixels; the last of a sample's blocks to finish adds the kMeanChunks partial sums in a
//     fixed order into the sample's mean;
//   pixel_kernel: blockIdx.y a sample, blockIdx.x a 32 x 32 output tile, each thread one column of
//     kPixelRows pixels (rows 8 apart, or consecutive: cuda::pixel_rows()) with all three channels: an
//     optional gather (crop + flips + rotation; without rotation the x taps are computed once per thread, the
//     y taps once per row, and taps of weight 0, as all of a flip's are, are not loaded), then the enabled
//     stages (jitter op by op over the thread's rows, grayscale, solarize, normalise). In the fused pipeline
//     blurred samples skip solarize and normalise and go to a compact scratch for the blur;
//   blur_tile_kernel: the fused blur: one block per (64 x 64 output tile, blurred plane) loads the
//     tile plus its reflected halo into shared memory, runs the row pass into shared memory and the
//     column pass to the output (each thread kBlurRun outputs from a register window), then solarize
//     and normalise when asked;
//   blur_vec4_kernel: the same blur with taps rounded up to a multiple of four (zero weights), the tap
//     loop unrolled per four-tap group count and 16-byte shared-memory loads (opt-in:
//     cuda::blur_tile_kernel_choice(); batches with kernels of at most kVec4MaxTaps taps);
//   blur_strip_kernel: the same four-tap runs in strips of at most 64 columns that a block walks down,
//     row-blurring each input row once into a ring of blurred rows (opt-in: BlurTileKernel::strip);
//   blur_rows_kernel / blur_cols_kernel: the two-pass fallback (when the halo does not fit in shared
//     memory, or the blur runs in place), through a compact scratch of the blurred samples;
//   copy_unblurred_kernel: gaussian_blur's copy of the samples it does not blur.
// augment_images is therefore 2 to 4 launches and reads the input once (twice for contrast samples).
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>
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

// Blocks per sample of contrast_mean_kernel (a block per sample left most SMs idle at batch 256), and
// the pixels each of its threads loads at once.
inline constexpr int kMeanChunks = 16;
inline constexpr int kMeanUnroll = 4;

// The plan on the device: plans[N], the contrast mean's partial sums mean_parts[N][kMeanChunks], the
// arrival counts of its blocks per sample (zero at upload), the means[N], blur weights, blurred sample
// indices.
struct DevicePlan {
  const AugmentPlan* plans = nullptr;
  double* mean_parts = nullptr;
  unsigned* arrivals = nullptr;
  float* means = nullptr;
  const float* weights = nullptr;
  const std::int32_t* blurred = nullptr;
};

class DevicePlanBuffer {
 public:
  DevicePlanBuffer(Device device, const AugmentBatchPlan& plan, cudaStream_t stream)
      : plans_bytes_(align_up(plan.samples.size() * sizeof(AugmentPlan))),
        means_bytes_(align_up(plan.samples.size() * kMeanChunks * sizeof(double)) +
                     align_up(plan.samples.size() * sizeof(unsigned)) +
                     align_up(plan.samples.size() * sizeof(float))),
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
    // The whole buffer goes up, the zeros of the means region included: they are the arrival counts
    // contrast_mean_kernel starts from. Through page-locked staging, so the call does not wait for
    // the stream (`host` may go out of scope at once).
    HostStaging::of(device.index()).upload(scratch_.bytes(), host.data(), host.size(), stream);
    char* base = scratch_.bytes();
    view_.plans = reinterpret_cast<const AugmentPlan*>(base);
    view_.mean_parts = reinterpret_cast<double*>(base + plans_bytes_);
    const std::size_t parts_bytes = align_up(plan.samples.size() * kMeanChunks * sizeof(double));
    view_.arrivals = reinterpret_cast<unsigned*>(base + plans_bytes_ + parts_bytes);
    view_.means = reinterpret_cast<float*>(base + plans_bytes_ + parts_bytes +
                                           align_up(plan.samples.size() * sizeof(unsigned)));
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

// The setting behind fovea::cuda::pixel_rows(), first read from FOVEA_PIXEL_ROWS (unset, "auto" or
// "strided": strided; "consecutive": consecutive).
inline PixelRows& pixel_rows_setting() {
  using R = PixelRows;
  static R rows = env_choice<R>(
      "FOVEA_PIXEL_ROWS", {{"auto", R::strided}, {"strided", R::strided}, {"consecutive", R::consecutive}});
  return rows;
}

// pixel_kernel's tiling: lanes along x, the block's 8 warps along y, kPixelRows rows per thread.
inline constexpr int kPixelTileW = 32;
inline constexpr int kPixelRowStep = kBlock / kPixelTileW;
inline constexpr int kPixelRows = 4;
inline constexpr int kPixelTileH = kPixelRowStep * kPixelRows;

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

// Grid: (kMeanChunks, samples, at most 65535 looping). Block c of sample n sums pixels
// [c hw / kMeanChunks, (c + 1) hw / kMeanChunks) into mean_parts[n][c] (per thread in float, then a
// fixed double tree); the block that arrives last (arrivals[n], zero at the start) adds the parts in
// order c = 0, 1, ... into means[n] = float(sum / hw), so every pixel thread reads one float instead
// of adding kMeanChunks doubles (fp64 is slow on most GPUs) and the result does not depend on which
// block finished last.
__global__ void __launch_bounds__(kBlock)
    contrast_mean_kernel(const float* x, PixelGeometry g, const AugmentPlan* __restrict__ plans,
                         double* __restrict__ mean_parts, unsigned* __restrict__ arrivals,
                         float* __restrict__ means, int stages) {
  const int hw = g.out_h * g.out_w;
  const int chunk = static_cast<int>(blockIdx.x);
  const int begin = static_cast<int>(static_cast<std::int64_t>(hw) * chunk / kMeanChunks);
  const int end = static_cast<int>(static_cast<std::int64_t>(hw) * (chunk + 1) / kMeanChunks);
  __shared__ double partial[kBlock];
  for (std::int64_t n = blockIdx.y; n < g.samples; n += gridDim.y) {  // block-uniform
    const AugmentPlan& p = plans[n];
    if (!p.contrast) continue;
    // A thread's pixels i, i + kBlock, ... are added in that order; kMeanUnroll of them are loaded
    // before any is used, so their loads are in flight together (the same sum as one at a time).
    float sum = 0.0f;
    const bool gather = (stages & kStageGeometry) != 0;
    const float* img = x + n * 3 * (static_cast<std::int64_t>(g.in_h) * g.in_w);
    const int plane = g.in_h * g.in_w;
    const auto load = [&](int i, float rgb[3]) {
      if (gather) {
        load_pixel(x, g, p, stages, n, i / g.out_w, i % g.out_w, rgb);
      } else {  // no geometry: out's planes are the input's, pixel i is at offset i
        rgb[0] = __ldg(img + i), rgb[1] = __ldg(img + plane + i), rgb[2] = __ldg(img + 2 * plane + i);
      }
    };
    const auto add = [&](float rgb[3]) {
      math::augment::jitter_pixel(p, rgb[0], rgb[1], rgb[2], 0.0f, true);
      sum += math::augment::gray_of(rgb[0], rgb[1], rgb[2]);
    };
    int i = begin + static_cast<int>(threadIdx.x);
    for (; i + (kMeanUnroll - 1) * kBlock < end; i += kMeanUnroll * kBlock) {
      float rgb[kMeanUnroll][3];
#pragma unroll
      for (int u = 0; u < kMeanUnroll; ++u) load(i + u * kBlock, rgb[u]);
#pragma unroll
      for (int u = 0; u < kMeanUnroll; ++u) add(rgb[u]);
    }
    for (; i < end; i += kBlock) {
      float rgb[3];
      load(i, rgb);
      add(rgb);
    }
    partial[threadIdx.x] = sum;
    __syncthreads();
    for (int step = kBlock / 2; step > 0; step >>= 1) {
      if (threadIdx.x < step) partial[threadIdx.x] += partial[threadIdx.x + step];
      __syncthreads();
    }
    if (threadIdx.x == 0) {
      mean_parts[n * kMeanChunks + chunk] = partial[0];
      __threadfence();  // the part is visible device-wide before the arrival is counted
      if (atomicAdd(&arrivals[n], 1u) == kMeanChunks - 1) {
        __threadfence();
        double sum = 0.0;
        for (int c = 0; c < kMeanChunks; ++c) sum += __ldcg(mean_parts + n * kMeanChunks + c);  // not L1
        means[n] = static_cast<float>(sum / hw);
      }
    }
    __syncthreads();  // partial is reused for the next sample
  }
}

// The separable gather (no rotation) of rows oy0 + k * kStep at column ox: the x taps once,
// the y taps per row; the same expressions as math::augment::geometry_pixel. All 12 x kPixelRows loads
// are independent, so they are in flight together. A tap of weight 0 (the upper tap where the source
// coordinate is a whole pixel, as everywhere in a flip or an unscaled crop) is not loaded: its term is
// 0 * v = 0 either way, so the result is the same for finite pixels. kStep is kPixelRowStep
// (PixelRows::strided) or 1 (PixelRows::consecutive); with consecutive rows a source row that the
// previous row also read (an upscaling crop advances less than one source row per output row) is
// taken from registers instead of loaded again: keyed on the row's offset, so the values are the
// same, and warp-uniform, since the y taps depend on the row alone.
template <int kStep>
__device__ __forceinline__ void gather_rows(const float* img, const PixelGeometry& g, const AugmentPlan& p,
                                            int ox, int oy0, float rgb[kPixelRows][3]) {
  const int plane = g.in_h * g.in_w;
  if (p.scale_x == 1.0f && p.scale_y == 1.0f && g.out_h == g.out_w) {
    // Whole-pixel sampling (a flip, or a crop as large as the output): every source coordinate is
    // an integer, the taps' weights are 1 and 0, and the sample is a permutation of the crop's
    // pixels: integer indices, one load per channel, no arithmetic on the values.
    const int last = g.out_w - 1;
    const float* src = img + p.crop_left + (p.hflip ? last - ox : ox);
#pragma unroll
    for (int k = 0; k < kPixelRows; ++k) {
      const int oy = min(oy0 + k * kStep, last);
      const float* row = src + (p.crop_top + (p.vflip ? last - oy : oy)) * g.in_w;
#pragma unroll
      for (int c = 0; c < 3; ++c) rgb[k][c] = __ldg(row + c * plane);
    }
    return;
  }
  const float last = static_cast<float>(g.out_w - 1);
  float fx = static_cast<float>(ox);
  if (p.hflip) fx = last - fx;
  int x0, x1;
  float lx;
  math::augment::bilinear_taps(fx, p.scale_x, p.crop_width, x0, x1, lx);
  const float hx = 1.0f - lx;
  const int col0 = p.crop_left + x0, col1 = p.crop_left + x1;
  const bool use_x1 = lx != 0.0f;
#if defined(__CUDA_ARCH__)
  // The sample's base pointer held in a register: nvcc otherwise folds it into a 64-bit sum per load
  // (four instructions per address where one widening multiply-add does).
  asm("" : "+l"(img));
#endif
  constexpr bool reuse = kStep == 1;
  int ra = -1, rb = -1;  // the previous row's source rows (offsets into a plane); -1: none
  float a0[3] = {}, a1[3] = {}, b0[3] = {}, b1[3] = {};  // their values at col0 and col1
#pragma unroll
  for (int k = 0; k < kPixelRows; ++k) {
    // Rows past the output repeat the last one (not stored), so every load issues unconditionally.
    const int oy = min(oy0 + k * kStep, g.out_h - 1);
    float fy = static_cast<float>(oy);
    if (p.vflip) fy = last - fy;
    int y0, y1;
    float ly;
    math::augment::bilinear_taps(fy, p.scale_y, p.crop_height, y0, y1, ly);
    const float hy = 1.0f - ly;
    const int r0 = (p.crop_top + y0) * g.in_w, r1 = (p.crop_top + y1) * g.in_w;
    const bool use_y1 = ly != 0.0f;
    const bool r0_in_a = r0 == ra, r0_in_b = r0 == rb, r1_in_a = r1 == ra, r1_in_b = r1 == rb;
#pragma unroll
    for (int c = 0; c < 3; ++c) {
      // Whole 32-bit offsets into the sample (3 planes fit in int: launch_pixel_stages), one widening
      // multiply-add per load instead of 64-bit pointer steps.
      const int o0 = c * plane + r0, o1 = c * plane + r1;
      if constexpr (!reuse) {
        const float v00 = __ldg(img + (o0 + col0));
        const float v01 = use_x1 ? __ldg(img + (o0 + col1)) : 0.0f;
        const float v10 = use_y1 ? __ldg(img + (o1 + col0)) : 0.0f;
        const float v11 = use_x1 && use_y1 ? __ldg(img + (o1 + col1)) : 0.0f;
        rgb[k][c] = hy * (hx * v00 + lx * v01) + ly * (hx * v10 + lx * v11);
      } else {
        float v00, v01, v10 = 0.0f, v11 = 0.0f;
        if (r0_in_a) v00 = a0[c], v01 = a1[c];
        else if (r0_in_b) v00 = b0[c], v01 = b1[c];
        else v00 = __ldg(img + (o0 + col0)), v01 = use_x1 ? __ldg(img + (o0 + col1)) : 0.0f;
        if (use_y1) {
          if (r1_in_a) v10 = a0[c], v11 = a1[c];
          else if (r1_in_b) v10 = b0[c], v11 = b1[c];
          else v10 = __ldg(img + (o1 + col0)), v11 = use_x1 ? __ldg(img + (o1 + col1)) : 0.0f;
        }
        rgb[k][c] = hy * (hx * v00 + lx * v01) + ly * (hx * v10 + lx * v11);
        a0[c] = v00, a1[c] = v01, b0[c] = v10, b1[c] = v11;
      }
    }
    ra = r0, rb = use_y1 ? r1 : -1;
  }
}

// The sample's colour jitter on a thread's kPixelRows pixels, op by op: each op over all rows before
// the next, so the op switch runs once per op rather than per pixel and each op's code once. Per pixel
// it is math::augment::jitter_pixel: the same ops, order, factors and expressions.
__device__ __forceinline__ void jitter_rows(const AugmentPlan& p, float mean, float rgb[kPixelRows][3]) {
  const int ops = p.jitter_ops;
  if (ops == 0) return;
  int order = 0;
  float f[kJitterOps];
#pragma unroll
  for (int k = 0; k < kJitterOps; ++k) {
    order |= (p.order[k] & 3) << (2 * k);
    f[k] = p.factor[p.order[k] & 3];
  }
#pragma unroll 1
  for (int k = 0; k < kJitterOps; ++k) {
    const int op = (order >> (2 * k)) & 3;
    if (!((ops >> op) & 1)) continue;
    const float factor = k == 0 ? f[0] : (k == 1 ? f[1] : (k == 2 ? f[2] : f[3]));
    switch (op) {
      case kJitterBrightness:
#pragma unroll
        for (int r = 0; r < kPixelRows; ++r)
          math::augment::jitter_op(kJitterBrightness, rgb[r][0], rgb[r][1], rgb[r][2], factor, mean);
        break;
      case kJitterContrast:
#pragma unroll
        for (int r = 0; r < kPixelRows; ++r)
          math::augment::jitter_op(kJitterContrast, rgb[r][0], rgb[r][1], rgb[r][2], factor, mean);
        break;
      case kJitterSaturation:
#pragma unroll
        for (int r = 0; r < kPixelRows; ++r)
          math::augment::jitter_op(kJitterSaturation, rgb[r][0], rgb[r][1], rgb[r][2], factor, mean);
        break;
      default:
#pragma unroll
        for (int r = 0; r < kPixelRows; ++r)
          math::augment::jitter_op(kJitterHue, rgb[r][0], rgb[r][1], rgb[r][2], factor, mean);
        break;
    }
  }
}

// out (or, for blurred samples under kStageDeferBlurred with deferred != nullptr, deferred's compact
// slot of the sample) from x through `stages`. Grid: (tiles of 32 x 32 output pixels, samples).
// plans and means (contrast_mean_kernel's) are the DevicePlan's, passed apart so that __restrict__
// lets the plan's fields stay in registers across the stores to out. kStages >= 0 fixes the stages
// at compile time (the single-op kernels: no registers or branches for the other stages); -1 takes
// them from `stages`. kStep: the rows between a thread's pixels, kPixelRowStep (strided: warp w of a
// tile has rows w, w + 8, ...) or 1 (consecutive: rows 4 w .. 4 w + 3, whose gathers share source
// rows; gather_rows).
template <int kStages, int kStep = kPixelRowStep>
__global__ void __launch_bounds__(kBlock)
    pixel_kernel(const float* x, float* out, float* deferred, PixelGeometry g,
                 const AugmentPlan* __restrict__ plans, const float* __restrict__ means, ChannelStats stats,
                 int runtime_stages) {
  const int stages = kStages >= 0 ? kStages : runtime_stages;
  const int tiles_x = (g.out_w + kPixelTileW - 1) / kPixelTileW;
  const int ty = static_cast<int>(blockIdx.x) / tiles_x, tx = static_cast<int>(blockIdx.x) - ty * tiles_x;
  const int ox = tx * kPixelTileW + static_cast<int>(threadIdx.x) % kPixelTileW;
  const int warp_row = static_cast<int>(threadIdx.x) / kPixelTileW;
  const int oy0 = ty * kPixelTileH + (kStep == 1 ? warp_row * kPixelRows : warp_row);
  if (ox >= g.out_w || oy0 >= g.out_h) return;
  const std::int64_t in_sample = 3 * static_cast<std::int64_t>(g.in_h) * g.in_w;
  const std::int64_t hw = static_cast<std::int64_t>(g.out_h) * g.out_w;
  // Samples in reverse order: the contrast-mean pass before this one read the last samples last, so
  // they are the ones still in L2; and the blur after it reads the first samples' deferred output
  // first, which this pass now writes last. Same results in any order.
  for (std::int64_t k = blockIdx.y; k < g.samples; k += gridDim.y) {
    const std::int64_t n = g.samples - 1 - k;
    const AugmentPlan& p = plans[n];
    float rgb[kPixelRows][3];
    if ((stages & kStageGeometry) && !p.rotate) {
      gather_rows<kStep>(x + n * in_sample, g, p, ox, oy0, rgb);
    } else {
#pragma unroll
      for (int k = 0; k < kPixelRows; ++k) {
        // rows past the output: a copy of the first (computed on, never stored)
        const int oy = oy0 + k * kStep;
        load_pixel(x, g, p, stages, n, oy < g.out_h ? oy : oy0, ox, rgb[k]);
      }
    }
    const bool defer = (stages & kStageDeferBlurred) && p.blur;
    if (stages & kStageJitter)
      jitter_rows(p, p.contrast ? means[n] : 0.0f, rgb);
    float* o = defer && deferred != nullptr ? deferred + p.blur_slot * 3 * hw : out + n * 3 * hw;
#pragma unroll
    for (int k = 0; k < kPixelRows; ++k) {
      const int oy = oy0 + k * kStep;
      if (oy >= g.out_h) break;
      float* v = rgb[k];
      if (stages & kStageGray) math::augment::grayscale_pixel(p, v[0], v[1], v[2]);
      if ((stages & kStageSolarize) && !defer && p.solarize)
        for (int c = 0; c < 3; ++c) v[c] = math::augment::solarize_value(v[c], p.threshold);
      if ((stages & kStageNormalize) && !defer)
        for (int c = 0; c < 3; ++c) v[c] = math::augment::normalize_value(v[c], stats.mean[c], stats.std[c]);
      const std::int64_t i = static_cast<std::int64_t>(oy) * g.out_w + ox;
      o[i] = v[0], o[hw + i] = v[1], o[2 * hw + i] = v[2];
    }
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

// blur_tile_kernel's tiling: 64 x 64 outputs per block, kBlurRun consecutive outputs per thread in
// each pass. Shared memory: the input tile with its halo (rows x pitch_in), then the row-pass result
// (span rows of kBlurMidPitch). Odd pitches keep the passes free of bank conflicts: in the row pass a
// warp's lanes walk consecutive rows. A run starting at s reads the window up to s + span - 64 - 1
// (blur_run loads whole kBlurRun blocks past the last tap), so `in` rows and `mid` are span = 64 +
// kernel rounded up to kBlurRun long; the values past the halo feed no tap, or only outputs that are
// not stored. 23 taps: 53.5 KB, four blocks per SM.
inline constexpr int kBlurTile = 64;
inline constexpr int kBlurRun = 8;
inline constexpr int kBlurMidPitch = kBlurTile + 1;

struct BlurTileLayout {
  int rows = 0, pitch_in = 0, mid = 0, weights = 0, floats = 0;
};

// Shared memory of one plane: in (rows x pitch_in), mid (span x kBlurMidPitch), then the plane's
// 2 radius + 1 weights (a shared-memory read per tap instead of a 64-bit address and a global load).
__host__ __device__ inline BlurTileLayout blur_tile_layout(int radius) {
  const int span = kBlurTile + (2 * radius + kBlurRun) / kBlurRun * kBlurRun;
  BlurTileLayout l;
  l.rows = kBlurTile + 2 * radius;
  l.pitch_in = span | 1;
  l.mid = l.rows * l.pitch_in;
  l.weights = l.mid + span * kBlurMidPitch;
  l.floats = l.weights + 2 * radius + 1;
  return l;
}

// kBlurRun taps kb .. kb + kBlurRun - 1 (those below kernel) of acc[j] += weights[k] * window[j + k - kb],
// the window being lo then hi; weights in shared memory.
__device__ __forceinline__ void blur_taps(const float lo[kBlurRun], const float hi[kBlurRun],
                                          const float* weights, int kb, int kernel, float acc[kBlurRun]) {
#pragma unroll
  for (int kk = 0; kk < kBlurRun; ++kk) {
    if (kb + kk < kernel) {
      const float wk = weights[kb + kk];
#pragma unroll
      for (int j = 0; j < kBlurRun; ++j)
        acc[j] += wk * (j + kk < kBlurRun ? lo[j + kk] : hi[j + kk - kBlurRun]);
    }
  }
}

// acc[j] = sum over taps k (in order) of weights[k] * line[(j + k) * stride], j < kBlurRun: a window of
// 2 kBlurRun values in registers, refilled kBlurRun values per kBlurRun taps (a and b swap roles).
__device__ __forceinline__ void blur_run(const float* line, int stride, const float* weights, int kernel,
                                         float acc[kBlurRun]) {
  float a[kBlurRun], b[kBlurRun];
#pragma unroll
  for (int j = 0; j < kBlurRun; ++j) acc[j] = 0.0f, a[j] = line[j * stride];
  for (int kb = 0; kb < kernel; kb += 2 * kBlurRun) {
#pragma unroll
    for (int j = 0; j < kBlurRun; ++j) b[j] = line[(kb + kBlurRun + j) * stride];
    blur_taps(a, b, weights, kb, kernel, acc);
    if (kb + kBlurRun >= kernel) break;
#pragma unroll
    for (int j = 0; j < kBlurRun; ++j) a[j] = line[(kb + 2 * kBlurRun + j) * stride];
    blur_taps(b, a, weights, kb + kBlurRun, kernel, acc);
  }
}

// The output tile of this block (blockIdx.x over 64 x 64 tiles in row-major order): origin and size.
struct BlurTile {
  int y0 = 0, x0 = 0, th = 0, tw = 0;
};

// Tiles of tile_w x tile_h outputs (the scalar tiles: kBlurTile x kBlurTile).
__device__ __forceinline__ BlurTile blur_tile_of_block(int h, int w, int tile_w = kBlurTile,
                                                       int tile_h = kBlurTile) {
  const int tiles_x = (w + tile_w - 1) / tile_w;
  const int ty = static_cast<int>(blockIdx.x) / tiles_x, tx = static_cast<int>(blockIdx.x) - ty * tiles_x;
  BlurTile t;
  t.y0 = ty * tile_h, t.x0 = tx * tile_w;
  t.th = min(tile_h, h - t.y0), t.tw = min(tile_w, w - t.x0);
  return t;
}

// Loads a blur tile's input into `in` (rows th + 2 radius, row pitch `pitch`): the th x tw output tile
// at (y0, x0) of plane `src` with its halo, reflected at the image border as math::augment::blur_tap_sum
// does per tap; away from the top and bottom borders (block-uniform) the rows are read without
// reflection. kZeroPad: the columns past the halo up to the pitch are written as zeros. Lanes along
// columns, warps along rows.
template <bool kZeroPad>
__device__ __forceinline__ void blur_load_tile(const float* src, float* in, int pitch, int x0, int y0, int th,
                                               int tw, int radius, int h, int w, int lane, int warp) {
  constexpr int kWarps = kBlock / 32;
  const int rows = th + 2 * radius, cols = tw + 2 * radius, row0 = y0 - radius;
  const bool rows_inside = row0 >= 0 && row0 + rows <= h;
  for (int col = lane; col < (kZeroPad ? pitch : cols); col += 32) {
    if (kZeroPad && col >= cols) {
      for (int r = warp; r < rows; r += kWarps) in[r * pitch + col] = 0.0f;
      continue;
    }
    const float* column = src + math::augment::reflect_index(x0 - radius + col, w);
    if (rows_inside) {
      const float* q = column + static_cast<std::int64_t>(row0 + warp) * w;
      const std::int64_t step = static_cast<std::int64_t>(kWarps) * w;
#pragma unroll 8
      for (int r = warp; r < rows; r += kWarps, q += step) in[r * pitch + col] = __ldg(q);
    } else {
#pragma unroll 8
      for (int r = warp; r < rows; r += kWarps)
        in[r * pitch + col] =
            __ldg(column + static_cast<std::int64_t>(math::augment::reflect_index(row0 + r, h)) * w);
    }
  }
}

// The blur's finish: solarize at `threshold` when `solarize`, then normalise with (mean, std) when
// `normalize`; block-uniform, read once per plane (per output, nvcc reloaded the plan's fields and
// selected the channel's statistics from the kernel parameters).
struct BlurFinish {
  bool solarize = false, normalize = false;
  float threshold = 0.0f, mean = 0.0f, std = 1.0f;
};

__device__ __forceinline__ BlurFinish blur_finish(const AugmentPlan& p, int c, const ChannelStats& stats,
                                                  int stages) {
  BlurFinish f;
  f.solarize = (stages & kStageSolarize) && p.solarize;
  f.threshold = p.threshold;
  f.normalize = (stages & kStageNormalize) != 0;
  f.mean = stats.mean[c];
  f.std = stats.std[c];
  return f;
}

// Stores a column run: o[j w] = the finish of acc[j] for j < min(kBlurRun, rows).
__device__ __forceinline__ void blur_store_run(float* o, int w, int rows, const float acc[kBlurRun],
                                               const BlurFinish& f) {
#pragma unroll
  for (int j = 0; j < kBlurRun; ++j, o += w) {
    if (j >= rows) break;
    float v = acc[j];
    if (f.solarize) v = math::augment::solarize_value(v, f.threshold);
    if (f.normalize) v = math::augment::normalize_value(v, f.mean, f.std);
    *o = v;
  }
}

// The blur of the planes of the blurred samples: input plane 3 b + c of x when compact (x holds only
// the blurred samples), else plane 3 blurred[b] + c; output plane 3 blurred[b] + c of out, then
// solarize / normalise as `stages` say. Grid: (64 x 64 output tiles, blurred planes); dynamic shared
// memory blur_tile_layout(the largest radius).floats. x must not alias out.
// At most 64 registers, so four blocks (the shared memory of 23 taps) fit an SM.
__global__ void __launch_bounds__(kBlock, 4)
    blur_tile_kernel(const float* x, float* out, int h, int w, DevicePlan plan, std::int64_t blurred,
                     int compact, ChannelStats stats, int stages) {
  extern __shared__ float blur_smem[];
  const BlurTile t = blur_tile_of_block(h, w);
  const int y0 = t.y0, x0 = t.x0, th = t.th, tw = t.tw;
  const int tid = static_cast<int>(threadIdx.x), lane = tid % 32, warp = tid / 32;
  const std::int64_t hw = static_cast<std::int64_t>(h) * w;
  for (std::int64_t plane = blockIdx.y; plane < 3 * blurred; plane += gridDim.y) {
    const std::int64_t b = plane / 3;
    const int c = static_cast<int>(plane - 3 * b);
    const int n = plan.blurred[b];
    const AugmentPlan& p = plan.plans[n];
    const int kernel = p.blur_kernel, radius = kernel / 2;
    const BlurTileLayout l = blur_tile_layout(radius);
    float* in = blur_smem;
    float* mid = blur_smem + l.mid;
    float* weights = blur_smem + l.weights;
    for (int k = tid; k < kernel; k += kBlock) weights[k] = __ldg(plan.weights + p.blur_offset + k);
    const float* src = x + ((compact ? b : static_cast<std::int64_t>(n)) * 3 + c) * hw;
    const int rows = th + 2 * radius;
    blur_load_tile<false>(src, in, l.pitch_in, x0, y0, th, tw, radius, h, w, lane, warp);
    __syncthreads();
    // Row pass: item = (row r, run of kBlurRun columns), consecutive lanes on consecutive rows; (run, r)
    // advance by kBlock items without a division per item.
    const int runs_x = (tw + kBlurRun - 1) / kBlurRun;
    {
      const int step_run = kBlock / rows, step_r = kBlock - step_run * rows;
      int run = tid / rows, r = tid - run * rows;
      for (int item = tid; item < rows * runs_x; item += kBlock) {
        float acc[kBlurRun];
        blur_run(in + r * l.pitch_in + run * kBlurRun, 1, weights, kernel, acc);
#pragma unroll
        for (int j = 0; j < kBlurRun; ++j) mid[r * kBlurMidPitch + run * kBlurRun + j] = acc[j];
        run += step_run, r += step_r;
        if (r >= rows) r -= rows, ++run;
      }
    }
    __syncthreads();
    // Column pass: item = (column col < tw, run of kBlurRun rows), consecutive lanes on consecutive
    // columns (a partial tile keeps every thread busy); (run, col) advance as in the row pass.
    const int runs_y = (th + kBlurRun - 1) / kBlurRun;
    float* dst = out + (static_cast<std::int64_t>(n) * 3 + c) * hw + x0;
    const BlurFinish f = blur_finish(p, c, stats, stages);
    {
      const int step_run = kBlock / tw, step_col = kBlock - step_run * tw;
      int run = tid / tw, col = tid - run * tw;
      for (int item = tid; item < tw * runs_y; item += kBlock) {
        float acc[kBlurRun];
        blur_run(mid + run * kBlurRun * kBlurMidPitch + col, kBlurMidPitch, weights, kernel, acc);
        blur_store_run(dst + static_cast<std::int64_t>(y0 + run * kBlurRun) * w + col, w, th - run * kBlurRun,
                       acc, f);
        run += step_run, col += step_col;
        if (col >= tw) col -= tw, ++run;
      }
    }
    __syncthreads();  // before the next plane overwrites shared memory
  }
}

// ---- the four-tap blur tiles (BlurTileKernel::vector4) ----
// blur_vec4_kernel computes what blur_tile_kernel computes (the same taps summed in the same order),
// with fewer instructions per output: the tap count of a plane is rounded up to a multiple of four
// (zero weights past the sample's kernel, whose terms add an exact 0 to a finite sum) and the tap loop
// is unrolled at compile time for each such count up to kVec4MaxTaps, so there is no per-tap test;
// every shared-memory load reads four floats (a window quarter, or four weights), where the scalar
// tiles read one per tap. The row pass writes its result transposed, so the column pass also reads
// contiguous, 16-byte aligned windows. Pitches are odd multiples of four floats: the eight lanes of a
// quarter-warp (the unit of a 16-byte shared load) then touch eight different groups of four banks.
inline constexpr int kVec4MaxTaps = 32;

struct BlurVec4Layout {
  int taps = 0;       // the kernel rounded up to a multiple of four
  int pitch_in = 0;   // input tile row pitch (floats): >= tile_w + taps, an odd multiple of 4
  int pitch_mid = 0;  // row-pass result, one row per tile column: >= tile_h + taps, likewise
  int mid = 0, weights = 0, floats = 0;
};

// The output tile of the four-tap kernel: tile_w x tile_h outputs, both multiples of kBlurRun.
// square: kBlurTile x kBlurTile, as the scalar tiles. fit (BlurTileShape::fit): the fewest tiles of at
// most kBlurTile columns and kVec4FitRows rows, their sides as even as the image allows (224 px: 56 x
// 112, eight whole tiles per plane, where square cuts 16 tiles of 64, 64, 64 and 32; fewer halo rows
// for the row pass to blur: 22 per 112 rows instead of per 64 at 23 taps).
struct BlurVec4Shape {
  int tile_w = kBlurTile, tile_h = kBlurTile;
};
inline constexpr int kVec4FitRows = 2 * kBlurTile;

__host__ __device__ inline int blur_even_side(int n, int most) {
  const int tiles = (n + most - 1) / most;
  const int side = (n + tiles - 1) / tiles;
  return side < kBlurRun ? kBlurRun : (side + kBlurRun - 1) / kBlurRun * kBlurRun;
}

__host__ __device__ inline BlurVec4Shape blur_vec4_fit(int h, int w) {
  BlurVec4Shape s;
  s.tile_w = blur_even_side(w, kBlurTile);
  s.tile_h = blur_even_side(h, kVec4FitRows);
  return s;
}

__host__ __device__ inline int odd_multiple_of_four_at_least(int n) {
  const int m = (n + 3) / 4 * 4;
  return m % 8 == 4 ? m : m + 4;
}

// Shared memory of one plane of radius `radius` in tiles of `shape`: in ((tile_h + 2 radius) x
// pitch_in), mid (tile_w x pitch_mid), then the taps weights (16-byte aligned).
__host__ __device__ inline BlurVec4Layout blur_vec4_layout(int radius, BlurVec4Shape shape = {}) {
  BlurVec4Layout l;
  l.taps = (2 * radius + 1 + 3) / 4 * 4;
  l.pitch_in = odd_multiple_of_four_at_least(shape.tile_w + l.taps);
  l.pitch_mid = odd_multiple_of_four_at_least(shape.tile_h + l.taps);
  l.mid = (shape.tile_h + 2 * radius) * l.pitch_in;
  l.weights = l.mid + shape.tile_w * l.pitch_mid;
  l.floats = l.weights + l.taps;
  return l;
}

// acc[j] = sum over taps k < 4 G (in order) of weights[k] * line[j + k], j < kBlurRun. line and weights
// are 16-byte aligned; line[0 .. kBlurRun + 4 G) is read.
template <int G>
__device__ __forceinline__ void blur_vec4_run(const float* line, const float* weights, float acc[kBlurRun]) {
  constexpr int kWindow = kBlurRun + 4 * G;
  float x[kWindow];
#pragma unroll
  for (int q = 0; q < kWindow / 4; ++q) {
    const float4 v = reinterpret_cast<const float4*>(line)[q];
    x[4 * q] = v.x, x[4 * q + 1] = v.y, x[4 * q + 2] = v.z, x[4 * q + 3] = v.w;
  }
#pragma unroll
  for (int j = 0; j < kBlurRun; ++j) acc[j] = 0.0f;
#pragma unroll
  for (int g = 0; g < G; ++g) {
    const float4 wv = reinterpret_cast<const float4*>(weights)[g];
    const float wk[4] = {wv.x, wv.y, wv.z, wv.w};
#pragma unroll
    for (int t = 0; t < 4; ++t)
#pragma unroll
      for (int j = 0; j < kBlurRun; ++j) acc[j] += wk[t] * x[j + 4 * g + t];
  }
}

// Blurred plane `plane` of a launch (3 b + c over the plan's blurred samples): b, the channel c, the
// sample n, its plan and its kernel's radius.
struct BlurPlane {
  std::int64_t b = 0;
  int c = 0, n = 0, kernel = 0, radius = 0;
  const AugmentPlan* p = nullptr;
};
__device__ __forceinline__ BlurPlane blur_plane(const DevicePlan& plan, std::int64_t plane) {
  BlurPlane bp;
  bp.b = plane / 3;
  bp.c = static_cast<int>(plane - 3 * bp.b);
  bp.n = plan.blurred[bp.b];
  bp.p = &plan.plans[bp.n];
  bp.kernel = bp.p->blur_kernel;
  bp.radius = bp.kernel / 2;
  return bp;
}

// The four-tap kernels' weights of bp's sample: its kernel's taps, then zeros up to `taps`.
__device__ __forceinline__ void blur_vec4_weights(float* weights, const DevicePlan& plan, const BlurPlane& bp,
                                                  int taps, int tid) {
  for (int k = tid; k < taps; k += kBlock)
    weights[k] = k < bp.kernel ? __ldg(plan.weights + bp.p->blur_offset + k) : 0.0f;
}

// Calls f(std::integral_constant<int, G>{}) for G = groups, the four-tap groups of a plane (1 to
// kVec4MaxTaps / 4; block-uniform), so that each count runs its own unrolled tap loop.
template <class F>
__device__ __forceinline__ void blur_vec4_dispatch(int groups, F&& f) {
  static_assert(kVec4MaxTaps == 32, "one case per four-tap group count");
  switch (groups) {
    case 1: f(std::integral_constant<int, 1>{}); break;
    case 2: f(std::integral_constant<int, 2>{}); break;
    case 3: f(std::integral_constant<int, 3>{}); break;
    case 4: f(std::integral_constant<int, 4>{}); break;
    case 5: f(std::integral_constant<int, 5>{}); break;
    case 6: f(std::integral_constant<int, 6>{}); break;
    case 7: f(std::integral_constant<int, 7>{}); break;
    default: f(std::integral_constant<int, 8>{}); break;
  }
}

// Row and column passes of one plane whose taps round up to 4 G, the tile (th x tw outputs, rows =
// th + 2 radius input rows) already in `in`. mid rows at or past `rows` are written as zeros: the
// column pass's windows reach them only with zero weights or for outputs it does not store.
template <int G>
__device__ __forceinline__ void blur_vec4_passes(const float* in, float* mid, const float* weights,
                                                 const BlurVec4Layout& l, int rows, int th, int tw, int tid,
                                                 float* dst, int w, const BlurFinish f) {
  constexpr int kTaps = 4 * G;
  const int runs_x = (tw + kBlurRun - 1) / kBlurRun, runs_y = (th + kBlurRun - 1) / kBlurRun;
  // Row pass: item = (run of kBlurRun columns, mid row r), consecutive lanes on consecutive rows.
  const int mid_rows = runs_y * kBlurRun + kTaps;
  {
    const int step_run = kBlock / mid_rows, step_r = kBlock - step_run * mid_rows;
    int run = tid / mid_rows, r = tid - run * mid_rows;
    for (int item = tid; item < mid_rows * runs_x; item += kBlock) {
      float acc[kBlurRun];
      if (r < rows) {
        blur_vec4_run<G>(in + r * l.pitch_in + run * kBlurRun, weights, acc);
      } else {
#pragma unroll
        for (int j = 0; j < kBlurRun; ++j) acc[j] = 0.0f;
      }
      float* m = mid + run * kBlurRun * l.pitch_mid + r;
#pragma unroll
      for (int j = 0; j < kBlurRun; ++j) m[j * l.pitch_mid] = acc[j];
      run += step_run, r += step_r;
      if (r >= mid_rows) r -= mid_rows, ++run;
    }
  }
  __syncthreads();
  // Column pass: item = (column col < tw, run of kBlurRun rows), consecutive lanes on consecutive
  // columns; stores are coalesced rows of the output.
  {
    const int step_run = kBlock / tw, step_col = kBlock - step_run * tw;
    int run = tid / tw, col = tid - run * tw;
    for (int item = tid; item < tw * runs_y; item += kBlock) {
      float acc[kBlurRun];
      blur_vec4_run<G>(mid + col * l.pitch_mid + run * kBlurRun, weights, acc);
      blur_store_run(dst + static_cast<std::int64_t>(run * kBlurRun) * w + col, w, th - run * kBlurRun, acc,
                     f);
      run += step_run, col += step_col;
      if (col >= tw) col -= tw, ++run;
    }
  }
}

// The four-tap twin of blur_tile_kernel: the same arguments and results, in output tiles of `shape`
// (grid: (tiles of that shape, blurred planes)); dynamic shared memory blur_vec4_layout(the largest
// radius, shape).floats, the radius at most (kVec4MaxTaps - 1) / 2.
__global__ void __launch_bounds__(kBlock, 4)
    blur_vec4_kernel(const float* x, float* out, int h, int w, DevicePlan plan, std::int64_t blurred,
                     int compact, ChannelStats stats, int stages, BlurVec4Shape shape) {
  extern __shared__ float4 blur_vec4_smem[];
  const BlurTile t = blur_tile_of_block(h, w, shape.tile_w, shape.tile_h);
  const int y0 = t.y0, x0 = t.x0, th = t.th, tw = t.tw;
  const int tid = static_cast<int>(threadIdx.x), lane = tid % 32, warp = tid / 32;
  const std::int64_t hw = static_cast<std::int64_t>(h) * w;
  float* smem = reinterpret_cast<float*>(blur_vec4_smem);
  for (std::int64_t plane = blockIdx.y; plane < 3 * blurred; plane += gridDim.y) {
    const BlurPlane bp = blur_plane(plan, plane);
    const std::int64_t b = bp.b;
    const int c = bp.c, n = bp.n, radius = bp.radius;
    const AugmentPlan& p = *bp.p;
    const BlurVec4Layout l = blur_vec4_layout(radius, shape);
    float* in = smem;
    float* mid = smem + l.mid;
    float* weights = smem + l.weights;
    blur_vec4_weights(weights, plan, bp, l.taps, tid);
    const float* src = x + ((compact ? b : static_cast<std::int64_t>(n)) * 3 + c) * hw;
    // The columns past the halo up to the row pitch are zeros (zero-weight taps read them).
    const int rows = th + 2 * radius;
    blur_load_tile<true>(src, in, l.pitch_in, x0, y0, th, tw, radius, h, w, lane, warp);
    __syncthreads();
    float* dst = out + (static_cast<std::int64_t>(n) * 3 + c) * hw + static_cast<std::int64_t>(y0) * w + x0;
    const BlurFinish f = blur_finish(p, c, stats, stages);
    blur_vec4_dispatch(l.taps / 4, [&](auto groups) {
      blur_vec4_passes<decltype(groups)::value>(in, mid, weights, l, rows, th, tw, tid, dst, w, f);
    });
    __syncthreads();  // before the next plane overwrites shared memory
  }
}

// ---- the streaming strip blur (BlurTileKernel::strip) ----
// blur_strip_kernel computes what blur_vec4_kernel computes (the same four-tap runs over the same
// values, so the same bits) without blurring halo rows twice: a block owns a strip of strip_w columns
// of a plane and walks down it in steps of kStripRows rows. Step s row-blurs the input rows
// kStripRows s - radius + i (i < kStripRows, reflected at the border) once each, into a ring of the
// last three steps' blurred rows; the column pass turns the rows of steps s - 2 and s - 1 into output
// rows kStripRows (s - 2) .. + kStripRows - 1 in the same phase, and the input rows of step s + 1 are
// copied into the other of two staging buffers meanwhile (cp.async). So a phase is one row run and
// one column run per thread and ends in one barrier, and a 224-px plane's row pass blurs 256 rows for
// 224 outputs (the 64 x 64 tiles blur 1.34 rows per output row at 23 taps). The ring is stored
// transposed (one ring row of kStripRing + taps floats per strip column), and its first `taps`
// positions are also written past the ring's end, so the column pass's windows are contiguous,
// 16-byte aligned runs even where they wrap. Input rows past h - 1 + radius are zeros: only outputs
// that are never stored, or zero-weight taps, read them.
inline constexpr int kStripRows = 32;
inline constexpr int kStripRing = 3 * kStripRows;
static_assert(kVec4MaxTaps <= kStripRows, "a column window must end within the next step's rows");

struct BlurStripLayout {
  int taps = 0;       // the kernel rounded up to a multiple of four
  int pitch_in = 0;   // staging row pitch (floats): >= strip_w + taps, an odd multiple of 4
  int pitch_mid = 0;  // ring row pitch: >= kStripRing + taps, likewise
  int in = 0;         // floats of one staging buffer (two at the start of shared memory)
  int mid = 0, weights = 0, floats = 0;
};

// The strip width: at most kBlurTile columns, as even as the image allows (224 px: four strips of 56).
__host__ __device__ inline int blur_strip_width(int w) { return blur_even_side(w, kBlurTile); }

__host__ __device__ inline BlurStripLayout blur_strip_layout(int radius, int strip_w) {
  BlurStripLayout l;
  l.taps = (2 * radius + 1 + 3) / 4 * 4;
  l.pitch_in = odd_multiple_of_four_at_least(strip_w + l.taps);
  l.pitch_mid = odd_multiple_of_four_at_least(kStripRing + l.taps);
  l.in = kStripRows * l.pitch_in;
  l.mid = 2 * l.in;
  l.weights = l.mid + strip_w * l.pitch_mid;
  l.floats = l.weights + l.taps;
  return l;
}

// Issues (without committing) the copies of step s's input rows into `in`: row i holds plane row
// kStripRows s - radius + i at columns x0 - radius + col for col < tw + 2 radius, reflected, and zeros
// past those columns up to the pitch and in rows past h - 1 + radius. Lanes along columns, warps along
// rows.
__device__ __forceinline__ void blur_strip_load(const float* src, float* in, int pitch, int x0, int tw, int s,
                                                int radius, int h, int w, int lane, int warp) {
  constexpr int kWarps = kBlock / 32, kPerWarp = kStripRows / kWarps;
  static_assert(kStripRows % kWarps == 0, "whole rows per warp");
  const int cols = tw + 2 * radius, g0 = kStripRows * s - radius;
  std::int64_t row_offset[kPerWarp];
  bool row_ok[kPerWarp];
#pragma unroll
  for (int m = 0; m < kPerWarp; ++m) {
    const int g = g0 + warp + m * kWarps;
    row_ok[m] = g <= h - 1 + radius;
    row_offset[m] = row_ok[m] ? static_cast<std::int64_t>(math::augment::reflect_index(g, h)) * w : 0;
  }
  for (int col = lane; col < pitch; col += 32) {
    const bool col_ok = col < cols;
    const float* column = src + (col_ok ? math::augment::reflect_index(x0 - radius + col, w) : 0);
#pragma unroll
    for (int m = 0; m < kPerWarp; ++m)
      cp_async4(in + (warp + m * kWarps) * pitch + col, column + row_offset[m], col_ok && row_ok[m]);
  }
}

// The phases of one plane whose taps round up to 4 G, step 0's input rows already in staging buffer
// 0 and the weights in `weights` (both visible to the block). Ends after a barrier.
template <int G>
__device__ __forceinline__ void blur_strip_phases(const float* src, float* smem, const BlurStripLayout& l,
                                                  const float* weights, int x0, int tw, int radius, int h,
                                                  int w, int tid, float* dst, const BlurFinish f) {
  constexpr int kRunsPerStep = kStripRows / kBlurRun;
  const int lane = tid % 32, warp = tid / 32;
  const int runs_x = (tw + kBlurRun - 1) / kBlurRun;
  const int steps = (h + kStripRows - 1) / kStripRows + 1;
  float* mid = smem + l.mid;
  // Row-pass item: lane = row of the step, warp = run of kBlurRun columns (runs_x <= 8 warps).
  const bool row_item = warp < runs_x;
  float* ring = mid + warp * kBlurRun * l.pitch_mid + lane;
  // Column-pass item: consecutive threads on consecutive columns, then runs of kBlurRun rows.
  const int col_run = tid / tw, col = tid - col_run * tw;
  const bool col_item = col_run < kRunsPerStep;
  for (int s = 0; s <= steps; ++s) {
    if (s + 1 < steps) {
      blur_strip_load(src, smem + ((s + 1) & 1) * l.in, l.pitch_in, x0, tw, s + 1, radius, h, w, lane, warp);
      cp_commit();
    }
    if (s < steps && row_item) {
      float acc[kBlurRun];
      blur_vec4_run<G>(smem + (s & 1) * l.in + lane * l.pitch_in + warp * kBlurRun, weights, acc);
      const int slot = s % 3;
      float* m = ring + slot * kStripRows;
#pragma unroll
      for (int j = 0; j < kBlurRun; ++j) m[j * l.pitch_mid] = acc[j];
      if (slot == 0 && lane < l.taps) {  // the copy past the ring's end
#pragma unroll
        for (int j = 0; j < kBlurRun; ++j) m[j * l.pitch_mid + kStripRing] = acc[j];
      }
    }
    if (s >= 2 && col_item) {
      const int k = s - 2, y = k * kStripRows + col_run * kBlurRun;
      if (y < h) {
        float acc[kBlurRun];
        blur_vec4_run<G>(mid + col * l.pitch_mid + (k % 3) * kStripRows + col_run * kBlurRun, weights, acc);
        blur_store_run(dst + static_cast<std::int64_t>(y) * w + col, w, h - y, acc, f);
      }
    }
    cp_wait<0>();
    __syncthreads();
  }
}

// The strip twin of blur_tile_kernel: the same arguments and results (for finite images, as
// blur_vec4_kernel), in strips of strip_w = blur_strip_width(w) columns (grid: (strips, blurred
// planes)); dynamic shared memory blur_strip_layout(the largest radius, strip_w).floats, the radius at
// most (kVec4MaxTaps - 1) / 2.
__global__ void __launch_bounds__(kBlock, 4)
    blur_strip_kernel(const float* x, float* out, int h, int w, DevicePlan plan, std::int64_t blurred,
                      int compact, ChannelStats stats, int stages, int strip_w) {
  extern __shared__ float4 blur_strip_smem[];
  const int tid = static_cast<int>(threadIdx.x), lane = tid % 32, warp = tid / 32;
  const int x0 = static_cast<int>(blockIdx.x) * strip_w, tw = min(strip_w, w - x0);
  const std::int64_t hw = static_cast<std::int64_t>(h) * w;
  float* smem = reinterpret_cast<float*>(blur_strip_smem);
  for (std::int64_t plane = blockIdx.y; plane < 3 * blurred; plane += gridDim.y) {
    const BlurPlane bp = blur_plane(plan, plane);
    const std::int64_t b = bp.b;
    const int c = bp.c, n = bp.n, radius = bp.radius;
    const AugmentPlan& p = *bp.p;
    const BlurStripLayout l = blur_strip_layout(radius, strip_w);
    float* weights = smem + l.weights;
    blur_vec4_weights(weights, plan, bp, l.taps, tid);
    const float* src = x + ((compact ? b : static_cast<std::int64_t>(n)) * 3 + c) * hw;
    float* dst = out + (static_cast<std::int64_t>(n) * 3 + c) * hw + x0;
    const BlurFinish f = blur_finish(p, c, stats, stages);
    blur_strip_load(src, smem, l.pitch_in, x0, tw, 0, radius, h, w, lane, warp);
    cp_commit();
    cp_wait<0>();
    __syncthreads();
    blur_vec4_dispatch(l.taps / 4, [&](auto groups) {
      blur_strip_phases<decltype(groups)::value>(src, smem, l, weights, x0, tw, radius, h, w, tid, dst, f);
    });
  }
}

// Copies the samples of x the plan does not blur into out, 4 floats per thread where aligned.
// Grid: (chunks of one sample, samples).
__global__ void __launch_bounds__(kBlock)
    copy_unblurred_kernel(const float* x, float* out, std::int64_t sample_floats, std::int64_t samples,
                          DevicePlan plan) {
  const bool vec = sample_floats % 4 == 0 && reinterpret_cast<std::uintptr_t>(x) % 16 == 0 &&
                   reinterpret_cast<std::uintptr_t>(out) % 16 == 0;
  const std::int64_t start = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const std::int64_t stride = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
  for (std::int64_t n = blockIdx.y; n < samples; n += gridDim.y) {
    if (plan.plans[n].blur) continue;
    const float* s = x + n * sample_floats;
    float* d = out + n * sample_floats;
    if (vec) {
      for (std::int64_t i = start; i < sample_floats / 4; i += stride)
        reinterpret_cast<float4*>(d)[i] = __ldg(reinterpret_cast<const float4*>(s) + i);
    } else {
      for (std::int64_t i = start; i < sample_floats; i += stride) d[i] = __ldg(s + i);
    }
  }
}

// Runs the pixel stages (with the contrast-mean pass first when jitter includes contrast); deferred as
// in pixel_kernel.
inline void launch_pixel_stages(const float* x, View out, float* deferred, const PixelGeometry& g,
                                const AugmentBatchPlan& plan, const DevicePlan& dplan,
                                const ChannelStats& stats, int stages, cudaStream_t stream, const char* op) {
  FOVEA_CHECK(3 * static_cast<std::int64_t>(g.in_h) * g.in_w <= INT32_MAX, op, ": input planes ", g.in_h, "x",
              g.in_w, " too large for 32-bit pixel offsets");
  if (g.samples == 0 || g.out_h == 0 || g.out_w == 0) return;
  bool any_contrast = false;
  for (const auto& p : plan.samples) any_contrast = any_contrast || p.contrast;
  if ((stages & kStageJitter) && any_contrast) {
    const dim3 mean_grid(kMeanChunks, static_cast<unsigned>(g.samples < 65535 ? g.samples : 65535));
    contrast_mean_kernel<<<mean_grid, kBlock, 0, stream>>>(x, g, dplan.plans, dplan.mean_parts,
                                                           dplan.arrivals, dplan.means, stages);
    FOVEA_CHECK_LAUNCH("contrast_mean_kernel", op, ", output ", out.shape().str());
  }
  const std::int64_t tiles = static_cast<std::int64_t>((g.out_w + kPixelTileW - 1) / kPixelTileW) *
                             ((g.out_h + kPixelTileH - 1) / kPixelTileH);
  const dim3 grid(static_cast<unsigned>(tiles), static_cast<unsigned>(g.samples < 65535 ? g.samples : 65535));
  auto launch = [&](auto kernel) {
    kernel<<<grid, kBlock, 0, stream>>>(x, out.data(), deferred, g, dplan.plans, dplan.means, stats, stages);
  };
  const bool consecutive = pixel_rows_setting() == PixelRows::consecutive;
  switch (stages) {  // the single ops get kernels compiled for their one stage
    case kStageGeometry:
      if (consecutive) launch(pixel_kernel<kStageGeometry, 1>);
      else launch(pixel_kernel<kStageGeometry>);
      break;
    case kStageJitter: launch(pixel_kernel<kStageJitter>); break;
    case kStageGray: launch(pixel_kernel<kStageGray>); break;
    case kStageSolarize: launch(pixel_kernel<kStageSolarize>); break;
    case kStageNormalize: launch(pixel_kernel<kStageNormalize>); break;
    default:
      if (consecutive && (stages & kStageGeometry)) launch(pixel_kernel<-1, 1>);
      else launch(pixel_kernel<-1>);
      break;
  }
  FOVEA_CHECK_LAUNCH("pixel_kernel", op, ", output ", out.shape().str(), ", input ", g.in_h, "x", g.in_w);
}

// The setting behind fovea::cuda::blur_tile_kernel_choice(), first read from FOVEA_BLUR_TILES (unset,
// "auto" or "vector4": vector4; "scalar": scalar; "strip": strip). vector4 is the default since the H200 run
// of 2026-11-28: 9 % faster at 23 taps (docs/benchmarks.md).
inline BlurTileKernel& blur_tile_kernel_setting() {
  using K = BlurTileKernel;
  static K choice = env_choice<K>(
      "FOVEA_BLUR_TILES",
      {{"auto", K::vector4}, {"scalar", K::scalar}, {"vector4", K::vector4}, {"strip", K::strip}});
  return choice;
}

// The setting behind fovea::cuda::blur_tile_shape(), first read from FOVEA_BLUR_TILE_SHAPE (unset,
// "auto" or "square": square; "fit": fit).
inline BlurTileShape& blur_tile_shape_setting() {
  using S = BlurTileShape;
  static S shape =
      env_choice<S>("FOVEA_BLUR_TILE_SHAPE", {{"auto", S::square}, {"square", S::square}, {"fit", S::fit}});
  return shape;
}

// Which tile kernel blurs the plan's samples of h x w, in which tiles and with how much dynamic shared
// memory: smem 0 when the tiles of the plan's widest kernel exceed what a block may have on `device`
// (then the two-pass path runs). The four-tap and strip kernels run when chosen and every kernel has
// at most kVec4MaxTaps taps (else the scalar tiles); the four-tap tiles are blur_tile_shape()'s when
// they fit the device, else square.
struct BlurTiles {
  std::size_t smem = 0;
  bool vector4 = false;
  BlurVec4Shape shape;
  int strip_w = 0;  // > 0: blur_strip_kernel in strips of strip_w columns
};

inline BlurTiles blur_tiles_for(const AugmentBatchPlan& plan, int h, int w, Device device) {
  int radius = 0;
  for (const std::int32_t n : plan.blurred) radius = std::max(radius, plan.samples[n].blur_kernel / 2);
  BlurTiles t;
  const BlurTileKernel kernel = blur_tile_kernel_setting();
  const bool four_tap = 2 * radius + 1 <= kVec4MaxTaps;
  const std::size_t limit = device_properties(device.index()).sharedMemPerBlockOptin;
  const auto bytes = [](int floats) { return static_cast<std::size_t>(floats) * sizeof(float); };
  if (kernel == BlurTileKernel::strip && four_tap) {
    const int strip_w = blur_strip_width(w);
    const std::size_t need = bytes(blur_strip_layout(radius, strip_w).floats);
    if (need <= limit) {
      t.strip_w = strip_w;
      t.smem = need;
      return t;
    }
  }
  t.vector4 = kernel != BlurTileKernel::scalar && four_tap;
  if (t.vector4 && blur_tile_shape_setting() == BlurTileShape::fit) {
    const BlurVec4Shape fit = blur_vec4_fit(h, w);
    if (bytes(blur_vec4_layout(radius, fit).floats) <= limit) t.shape = fit;
  }
  const std::size_t need =
      bytes(t.vector4 ? blur_vec4_layout(radius, t.shape).floats : blur_tile_layout(radius).floats);
  t.smem = need <= limit ? need : 0;
  return t;
}

// The fused blur of the plan's blurred samples: x (compact: only the blurred samples, in plan order)
// into out, which must not alias x.
inline void launch_blur_tiles(const float* x, bool compact, View out, const BlurTiles& tiles,
                              const AugmentBatchPlan& plan, const DevicePlan& dplan,
                              const ChannelStats& stats, int stages, cudaStream_t stream, const char* op) {
  const std::int64_t blurred = static_cast<std::int64_t>(plan.blurred.size());
  const int h = static_cast<int>(out.shape().h()), w = static_cast<int>(out.shape().w());
  if (blurred == 0 || h == 0 || w == 0) return;
  const std::size_t smem = tiles.smem;
  const auto raise_limit = [&](auto kernel) {
    if (smem > 48 * 1024)
      FOVEA_CHECK_CUDA(
          cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)),
          op, ": ", smem, " bytes of shared memory for the blur tiles");
  };
  const std::int64_t planes = 3 * blurred;
  const unsigned grid_y = static_cast<unsigned>(planes < 65535 ? planes : 65535);
  if (tiles.strip_w > 0) {
    raise_limit(blur_strip_kernel);
    const dim3 grid(static_cast<unsigned>((w + tiles.strip_w - 1) / tiles.strip_w), grid_y);
    blur_strip_kernel<<<grid, kBlock, smem, stream>>>(x, out.data(), h, w, dplan, blurred, compact ? 1 : 0,
                                                      stats, stages, tiles.strip_w);
    FOVEA_CHECK_LAUNCH("blur_strip_kernel", op, ", shape ", out.shape().str(), ", blurred samples ", blurred,
                       ", strips of ", tiles.strip_w, " columns, shared bytes ", smem);
    return;
  }
  const int tile_w = tiles.vector4 ? tiles.shape.tile_w : kBlurTile;
  const int tile_h = tiles.vector4 ? tiles.shape.tile_h : kBlurTile;
  const std::int64_t tiles_n =
      static_cast<std::int64_t>((w + tile_w - 1) / tile_w) * ((h + tile_h - 1) / tile_h);
  const dim3 grid(static_cast<unsigned>(tiles_n), grid_y);
  if (tiles.vector4) {
    raise_limit(blur_vec4_kernel);
    blur_vec4_kernel<<<grid, kBlock, smem, stream>>>(x, out.data(), h, w, dplan, blurred, compact ? 1 : 0,
                                                     stats, stages, tiles.shape);
    FOVEA_CHECK_LAUNCH("blur_vec4_kernel", op, ", shape ", out.shape().str(), ", blurred samples ", blurred,
                       ", tiles ", tile_w, "x", tile_h, ", shared bytes ", smem);
  } else {
    raise_limit(blur_tile_kernel);
    blur_tile_kernel<<<grid, kBlock, smem, stream>>>(x, out.data(), h, w, dplan, blurred, compact ? 1 : 0,
                                                     stats, stages);
    FOVEA_CHECK_LAUNCH("blur_tile_kernel", op, ", shape ", out.shape().str(), ", blurred samples ", blurred,
                       ", shared bytes ", smem);
  }
}

// The two-pass blur of the plan's blurred samples of x into out (row pass into scratch, column pass
// into out; out may alias x).
inline void launch_blur(const float* x, View out, const AugmentBatchPlan& plan, const DevicePlan& dplan,
                        const ChannelStats& stats, int stages, cudaStream_t stream, const char* op) {
  const std::int64_t blurred = static_cast<std::int64_t>(plan.blurred.size());
  if (blurred == 0) return;
  const int dev = out.device().index();
  const int h = static_cast<int>(out.shape().h()), w = static_cast<int>(out.shape().w());
  const std::int64_t elements = blurred * 3 * h * w;
  if (elements == 0) return;
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
  launch_pixel_stages(x.data(), out, nullptr, pixel_geometry(x, out), plan, dplan.view(), stats, stages,
                      stream, op);
}

}  // namespace fovea::cuda::detail

namespace fovea::cuda {

BlurTileKernel& blur_tile_kernel_choice() { return detail::blur_tile_kernel_setting(); }
BlurTileShape& blur_tile_shape() { return detail::blur_tile_shape_setting(); }
PixelRows& pixel_rows() { return detail::pixel_rows_setting(); }

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
  const bool in_place = x.data() == out.data();
  if (plan.blurred.empty()) {
    if (!in_place)
      FOVEA_CHECK_CUDA(cudaMemcpyAsync(out.data(), x.data(), x.bytes(), cudaMemcpyDeviceToDevice, stream),
                       "gaussian_blur copy, shape ", x.shape().str());
    return;
  }
  detail::DevicePlanBuffer dplan(out.device(), plan, stream);
  const std::int64_t n = x.shape().n(), sample_floats = 3 * x.shape().h() * x.shape().w();
  if (!in_place && static_cast<std::int64_t>(plan.blurred.size()) < n) {
    const std::int64_t chunks = (sample_floats / 4 + detail::kBlock - 1) / detail::kBlock;
    const dim3 grid(static_cast<unsigned>(std::clamp<std::int64_t>(chunks, 1, 64)),
                    static_cast<unsigned>(n < 65535 ? n : 65535));
    detail::copy_unblurred_kernel<<<grid, detail::kBlock, 0, stream>>>(x.data(), out.data(), sample_floats, n,
                                                                       dplan.view());
    FOVEA_CHECK_LAUNCH("copy_unblurred_kernel", "gaussian_blur, shape ", x.shape().str());
  }
  const detail::BlurTiles tiles =
      in_place ? detail::BlurTiles{}
               : detail::blur_tiles_for(plan, static_cast<int>(out.shape().h()),
                                        static_cast<int>(out.shape().w()), out.device());
  if (tiles.smem > 0)
    detail::launch_blur_tiles(x.data(), false, out, tiles, plan, dplan.view(), kIdentityStats, 0, stream,
                              "gaussian_blur");
  else detail::launch_blur(x.data(), out, plan, dplan.view(), kIdentityStats, 0, stream, "gaussian_blur");
}

void augment_images(CView images, const ::fovea::detail::AugmentBatchPlan& plan, const ChannelStats& stats,
                    View out) {
  detail::DeviceGuard guard(out.device().index());
  cudaStream_t stream = detail::stream_for(out.device());
  detail::DevicePlanBuffer dplan(out.device(), plan, stream);
  const int pixel_stages = detail::kStageGeometry | detail::kStageJitter | detail::kStageGray |
                           detail::kStageSolarize | detail::kStageNormalize | detail::kStageDeferBlurred;
  const int blur_stages = detail::kStageSolarize | detail::kStageNormalize;
  const detail::PixelGeometry g = detail::pixel_geometry(images, out);
  const detail::BlurTiles tiles = plan.blurred.empty()
                                      ? detail::BlurTiles{}
                                      : detail::blur_tiles_for(plan, g.out_h, g.out_w, out.device());
  if (tiles.smem > 0) {
    // The blurred samples after geometry, jitter and grayscale go to a compact scratch; the fused blur
    // reads it and writes out, finishing with solarize + normalise.
    const std::size_t floats =
        plan.blurred.size() * 3 * static_cast<std::size_t>(g.out_h) * static_cast<std::size_t>(g.out_w);
    detail::AugmentScratch scratch(out.device(), floats * sizeof(float));
    float* deferred = reinterpret_cast<float*>(scratch.bytes());
    detail::launch_pixel_stages(images.data(), out, deferred, g, plan, dplan.view(), stats, pixel_stages,
                                stream, "augment_images");
    detail::launch_blur_tiles(deferred, true, out, tiles, plan, dplan.view(), stats, blur_stages, stream,
                              "augment_images");
    return;
  }
  detail::launch_pixel_stages(images.data(), out, nullptr, g, plan, dplan.view(), stats, pixel_stages, stream,
                              "augment_images");
  // Two-pass fallback: out holds the blurred samples after geometry, jitter and grayscale; blur in
  // place (the row pass reads out into scratch, the column pass writes out).
  detail::launch_blur(out.data(), out, plan, dplan.view(), stats, blur_stages, stream, "augment_images");
}

}  // namespace fovea::cuda
