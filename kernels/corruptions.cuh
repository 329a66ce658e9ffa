// kernels/corruptions.cuh: the CUDA twin of the image corruptions (declared in
// include/fovea/cuda/corruptions.hpp; the batch entry point is data::corrupt_batch in
// include/fovea/data/corruptions.hpp, which resolves the plan on the host). The per-pixel math is the
// FOVEA_HD code of include/fovea/data/corruption_math.hpp, the plan (per-image random parameters,
// taps, spots, fog layers where they need a resize) is the host's, so both twins read the same bits;
// they differ only where nvcc fuses a multiply and an add (an ulp or so before clipping).
//
// Kernels, one thread per output pixel (all three channels) of the batch, grid-stride:
//   corrupt_pixel_kernel<C>: every corruption but the separable Gaussian blur's two passes: the
//     noises, the colour ones, sparse 2-D taps (defocus, motion, fundus defocus), zoom, pixelate,
//     elastic sampling, fog, and the fundus ones inside the field of view (outside it the pixel is
//     copied);
//   corrupt_stats_kernel: one block per (image, channel): the channel mean in double (contrast) or
//     the maximum (fog);
//   fog_plasma_kernel: one block per image: fog's plasma map (diamond-square, level by level, in
//     double, bitwise plasma_fractal's) and its minimum and range, where the layer is the map's
//     top-left corner unresized (224-px images and the like; other sizes take layers from the host);
//   corrupt_rows_kernel / corrupt_cols_kernel: a separable filter's passes with a border rule, over
//     planes (gaussian_blur, glass_blur's two blurs; the smoothing of elastic_transform's displacement
//     noise), with unfused multiplies and adds, so they give the CPU's bits (glass_blur's 8-bit step
//     would turn an ulp into 1/255);
//   glass_source_kernel: glass_blur's sources, each pixel's chain of copies followed on its own;
//   glass_shuffle_kernel: glass_blur's 8-bit step and copy of each pixel from its source pixel;
//   jpeg_pack_kernel / jpeg_unpack_kernel: jpeg_compression's 8-bit pixels, to and from the host's
//     codec;
//   elastic_noise_kernel: the two U(-1, 1) displacement noise planes of each image;
//   fov_box_kernel: one block per image: the bounding box of its field-of-view mask.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <memory>
#include <vector>

#include "augment.cuh"  // AugmentScratch, align_up
#include "common.cuh"
#include "fovea/cuda/corruptions.hpp"
#include "fovea/data/corruption_math.hpp"

namespace fovea::cuda::detail {

using ::fovea::data::Corruption;
using ::fovea::data::detail::Border;
using ::fovea::data::detail::border_index;
using ::fovea::data::detail::corruption::CorruptBatchPlan;
using ::fovea::data::detail::corruption::CorruptImagePlan;
using ::fovea::data::detail::corruption::LinearTap;
using ::fovea::data::detail::corruption::Spot;
using ::fovea::data::detail::corruption::Tap;

// The plan on the device.
struct CorruptDevice {
  const CorruptImagePlan* images = nullptr;
  const Tap* taps = nullptr;
  const float* kernel = nullptr;
  const LinearTap* zoom = nullptr;
  const std::int64_t* index = nullptr;
  const Spot* spots = nullptr;
  const float* layers = nullptr;
  const double* plasma = nullptr;       // fog: the images' plasma maps (plasma_m^2 each), unnormalised
  const double* plasma_norm = nullptr;  // fog: per image the map's minimum and range
  std::int64_t plasma_m = 0;
  const float* masks = nullptr;  // (N, 1, H, W), nonzero inside the field of view
  const float* field = nullptr;  // elastic: the smoothed displacements (N, 2, H, W): dx, dy
  const std::int32_t* source = nullptr;  // glass_blur: per image, each pixel's source pixel (N, H, W)
  int glass_delta = 0, glass_iterations = 0;
  float* stats = nullptr;        // (N, 3): contrast's channel means, fog's channel maxima
  std::int64_t n = 0, h = 0, w = 0;
  std::int64_t small_h = 0, small_w = 0;
  int factors = 0;
  double a = 0, b = 0;
};

// acc[ch] = the sum over taps t of weight * in_ch(y + dy, x + dx) for the three channel planes of src
// (hw apart), positions beyond the plane read through border (zero: skipped), in tap order
// (filter_taps' order). Each tap's offset and weight are read once for the three channels, and where
// all taps land inside the plane (reach: the taps' largest |dy| or |dx|) without border arithmetic.
__device__ __forceinline__ void taps_at(const float* src, std::int64_t hw, std::int64_t h, std::int64_t w,
                                        const Tap* taps, int count, int reach, Border border, std::int64_t y,
                                        std::int64_t x, float acc[3]) {
  acc[0] = 0.0f, acc[1] = 0.0f, acc[2] = 0.0f;
  if (y >= reach && y + reach < h && x >= reach && x + reach < w) {
    const float* p = src + y * w + x;
    const int row = static_cast<int>(w);  // 3 h w < 2^32 (corrupt_batch), so offsets fit an int
    for (int t = 0; t < count; ++t) {
      const Tap tap = taps[t];
      const int o = tap.dy * row + tap.dx;
      acc[0] += tap.weight * p[o];
      acc[1] += tap.weight * p[hw + o];
      acc[2] += tap.weight * p[2 * hw + o];
    }
    return;
  }
  for (int t = 0; t < count; ++t) {
    const Tap tap = taps[t];
    const std::int64_t sy = border_index(y + tap.dy, h, border);
    const std::int64_t sx = border_index(x + tap.dx, w, border);
    const bool zero = sy < 0 || sx < 0;
    const std::int64_t o = sy * w + sx;
    for (int ch = 0; ch < 3; ++ch) acc[ch] += tap.weight * (zero ? 0.0f : src[ch * hw + o]);
  }
}

template <int C>
__global__ void __launch_bounds__(kBlock)
    corrupt_pixel_kernel(const float* __restrict__ x, float* __restrict__ out, CorruptDevice d) {
  namespace m = ::fovea::data::detail::corruption;
  constexpr Corruption c = static_cast<Corruption>(C);
  const std::int64_t hw = d.h * d.w, total = d.n * hw;
  const std::int64_t stride = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
  for (std::int64_t p = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; p < total;
       p += stride) {
    const std::int64_t n = p / hw, q = p - n * hw, y = q / d.w, xx = q - y * d.w;
    const CorruptImagePlan& img = d.images[n];
    const float* src = x + n * 3 * hw;
    float* dst = out + n * 3 * hw;
    float v[3];
    if constexpr (c == Corruption::gaussian_noise || c == Corruption::speckle_noise) {
      for (int ch = 0; ch < 3; ++ch) {
        const std::int64_t i = ch * hw + q;
        v[ch] = c == Corruption::gaussian_noise ? m::gaussian_noise_at(src[i], static_cast<float>(d.a),
                                                                       img.key, static_cast<std::uint64_t>(i))
                                                : m::speckle_noise_at(src[i], static_cast<float>(d.a),
                                                                      img.key, static_cast<std::uint64_t>(i));
      }
    } else if constexpr (c == Corruption::shot_noise || c == Corruption::impulse_noise) {
      for (int ch = 0; ch < 3; ++ch) {
        const std::int64_t i = ch * hw + q;
        v[ch] = c == Corruption::shot_noise
                    ? m::shot_noise_at(src[i], d.a, img.key, static_cast<std::uint32_t>(i))
                    : m::impulse_noise_at(src[i], d.a, img.key, static_cast<std::uint32_t>(i));
      }
    } else if constexpr (c == Corruption::brightness || c == Corruption::saturate) {
      v[0] = src[q], v[1] = src[hw + q], v[2] = src[2 * hw + q];
      if constexpr (c == Corruption::brightness) m::brightness_at(v[0], v[1], v[2], static_cast<float>(d.a));
      else m::saturate_at(v[0], v[1], v[2], static_cast<float>(d.a), static_cast<float>(d.b));
    } else if constexpr (c == Corruption::contrast) {
      for (int ch = 0; ch < 3; ++ch)
        v[ch] = m::contrast_at(src[ch * hw + q], d.stats[n * 3 + ch], static_cast<float>(d.a));
    } else if constexpr (c == Corruption::fog) {
      const float* s = d.stats + n * 3;
      const float hi01 = s[0] > s[1] ? s[0] : s[1];
      const float hi = hi01 > s[2] ? hi01 : s[2];
      const auto c0 = static_cast<float>(d.a);
      const float scale = hi / (hi + c0);
      const float layer = d.plasma != nullptr
                              ? m::plasma_layer_value(d.plasma[(n * d.plasma_m + y) * d.plasma_m + xx],
                                                      d.plasma_norm[2 * n], d.plasma_norm[2 * n + 1])
                              : d.layers[img.layer + q];
      for (int ch = 0; ch < 3; ++ch) v[ch] = m::fog_at(src[ch * hw + q], c0, layer, scale);
    } else if constexpr (c == Corruption::defocus_blur || c == Corruption::motion_blur) {
      constexpr Border border = c == Corruption::defocus_blur ? Border::reflect101 : Border::clamp;
      taps_at(src, hw, d.h, d.w, d.taps + img.taps_begin, img.taps_count, img.taps_reach, border, y, xx, v);
      for (int ch = 0; ch < 3; ++ch) v[ch] = m::clip01(v[ch]);
    } else if constexpr (c == Corruption::zoom_blur) {
      float acc[3] = {src[q], src[hw + q], src[2 * hw + q]};
      for (int f = 0; f < d.factors; ++f) {
        const LinearTap ty = d.zoom[f * (d.h + d.w) + y], tx = d.zoom[f * (d.h + d.w) + d.h + xx];
        for (int ch = 0; ch < 3; ++ch) {
          const float* s0 = src + ch * hw + ty.i0 * d.w;
          const float* s1 = src + ch * hw + ty.i1 * d.w;
          const float r0 = s0[tx.i0] + tx.lambda * (s0[tx.i1] - s0[tx.i0]);
          const float r1 = s1[tx.i0] + tx.lambda * (s1[tx.i1] - s1[tx.i0]);
          acc[ch] += r0 + ty.lambda * (r1 - r0);
        }
      }
      const float inv = 1.0f / static_cast<float>(d.factors + 1);
      for (int ch = 0; ch < 3; ++ch) v[ch] = m::clip01(acc[ch] * inv);
    } else if constexpr (c == Corruption::pixelate) {
      // index: near_y (h), near_x (w), then (first, count) per small row, per small column
      const std::int64_t j = d.index[y], i = d.index[d.h + xx];
      const std::int64_t* gy = d.index + d.h + d.w + 2 * j;
      const std::int64_t* gx = d.index + d.h + d.w + 2 * d.small_h + 2 * i;
      for (int ch = 0; ch < 3; ++ch) {
        double col = 0.0;
        for (std::int64_t k = 0; k < gy[1]; ++k) {
          const float* row = src + ch * hw + (gy[0] + k) * d.w + gx[0];
          double sum = 0.0;
          for (std::int64_t l = 0; l < gx[1]; ++l) sum += row[l];
          col += sum / static_cast<double>(gx[1]);
        }
        v[ch] = m::clip01(static_cast<float>(col / static_cast<double>(gy[1])));
      }
    } else if constexpr (c == Corruption::elastic_transform) {
      const float* f = d.field + n * 2 * hw;
      const auto a = static_cast<float>(d.a);
      const double sy = static_cast<double>(y) + static_cast<double>(a * f[hw + q]);
      const double sx = static_cast<double>(xx) + static_cast<double>(a * f[q]);
      const double fy = floor(sy), fx = floor(sx);
      const auto ly = static_cast<float>(sy - fy), lx = static_cast<float>(sx - fx);
      const auto y0 = static_cast<std::int64_t>(fy), x0 = static_cast<std::int64_t>(fx);
      const std::int64_t r0 = border_index(y0, d.h, Border::reflect) * d.w,
                         r1 = border_index(y0 + 1, d.h, Border::reflect) * d.w;
      const std::int64_t c0 = border_index(x0, d.w, Border::reflect),
                         c1 = border_index(x0 + 1, d.w, Border::reflect);
      for (int ch = 0; ch < 3; ++ch) {
        const float* s = src + ch * hw;
        const float top = s[r0 + c0] + lx * (s[r0 + c1] - s[r0 + c0]);
        const float bottom = s[r1 + c0] + lx * (s[r1 + c1] - s[r1 + c0]);
        v[ch] = m::clip01(top + ly * (bottom - top));
      }
    } else {  // the fundus degradations: inside the field of view only
      const bool inside = img.has_fov != 0 && d.masks[n * hw + q] != 0.0f;
      v[0] = src[q], v[1] = src[hw + q], v[2] = src[2 * hw + q];
      if (inside) {
        if constexpr (c == Corruption::uneven_illumination) {
          const float gain = m::uneven_gain(img.disc, d.a, img.p0, img.p1, y, xx);
          for (int ch = 0; ch < 3; ++ch) v[ch] = m::clip01(v[ch] * gain);
        } else if constexpr (c == Corruption::halo) {
          const float weight = m::halo_weight(img.disc, d.a, d.b, img.p0, img.p1, y, xx);
          for (int ch = 0; ch < 3; ++ch) v[ch] = m::halo_at(v[ch], weight, ch);
        } else if constexpr (c == Corruption::dark_hole) {
          const float gain = m::dark_hole_gain(img.disc, d.a, d.b, img.p0, img.p1, y, xx);
          for (int ch = 0; ch < 3; ++ch) v[ch] = m::clip01(v[ch] * gain);
        } else if constexpr (c == Corruption::spots) {
          for (int ch = 0; ch < 3; ++ch) v[ch] = m::clip01(v[ch]);
          for (int k = 0; k < img.spots_count; ++k) {
            const Spot& s = d.spots[img.spots_begin + k];
            if (y < s.y0 || y > s.y1 || xx < s.x0 || xx > s.x1) continue;
            for (int ch = 0; ch < 3; ++ch) v[ch] = m::spot_at(v[ch], s, y, xx);
          }
        } else if constexpr (c == Corruption::fundus_defocus) {
          // K * (x m) / K * m with zero borders, m the 0/1 mask.
          const Tap* taps = d.taps + img.taps_begin;
          const float* mask = d.masks + n * hw;
          float weight = 0.0f, num[3] = {0.0f, 0.0f, 0.0f};
          for (int t = 0; t < img.taps_count; ++t) {
            const std::int64_t sy = y + taps[t].dy, sx = xx + taps[t].dx;
            float mv = 0.0f, s0 = 0.0f, s1 = 0.0f, s2 = 0.0f;
            if (sy >= 0 && sy < d.h && sx >= 0 && sx < d.w) {
              const std::int64_t o = sy * d.w + sx;
              mv = mask[o] != 0.0f ? 1.0f : 0.0f;
              s0 = src[o] * mv, s1 = src[hw + o] * mv, s2 = src[2 * hw + o] * mv;
            }
            weight += taps[t].weight * mv;
            num[0] += taps[t].weight * s0, num[1] += taps[t].weight * s1, num[2] += taps[t].weight * s2;
          }
          for (int ch = 0; ch < 3; ++ch) v[ch] = m::clip01(weight > 1e-6f ? num[ch] / weight : v[ch]);
        }
      }
    }
    dst[q] = v[0], dst[hw + q] = v[1], dst[2 * hw + q] = v[2];
  }
}

// One block per (image, channel) = blockIdx.x: mode 0 the channel's mean (a double sum), mode 1 its
// maximum, into stats[blockIdx.x].
__global__ void __launch_bounds__(kBlock)
    corrupt_stats_kernel(const float* __restrict__ x, float* stats, std::int64_t hw, int mode) {
  __shared__ double sums[kBlock];
  __shared__ float maxima[kBlock];
  const float* plane = x + static_cast<std::int64_t>(blockIdx.x) * hw;
  double sum = 0.0;
  float hi = -1e30f;
  for (std::int64_t i = threadIdx.x; i < hw; i += blockDim.x) {
    sum += plane[i];
    hi = plane[i] > hi ? plane[i] : hi;
  }
  sums[threadIdx.x] = sum, maxima[threadIdx.x] = hi;
  __syncthreads();
  for (unsigned half = blockDim.x / 2; half > 0; half /= 2) {
    if (threadIdx.x < half) {
      sums[threadIdx.x] += sums[threadIdx.x + half];
      maxima[threadIdx.x] =
          maxima[threadIdx.x + half] > maxima[threadIdx.x] ? maxima[threadIdx.x + half] : maxima[threadIdx.x];
    }
    __syncthreads();
  }
  if (threadIdx.x == 0)
    stats[blockIdx.x] = mode == 0 ? static_cast<float>(sums[0] / static_cast<double>(hw)) : maxima[0];
}

// fog's plasma maps, one block per image b of images[0 .. gridDim.x): maps + b m^2 gets
// plasma_fractal(m, decay, images[b].key) before its normalisation (the passes of corruption_math.hpp,
// each pass's points spread over the threads, a barrier between passes), norms[2 b] and
// norms[2 b + 1] its minimum and range. The map lives in global memory (256 x 256 doubles at 224 px:
// 512 KB, too much for shared memory); __syncthreads makes each pass's writes visible to the next.
__global__ void __launch_bounds__(kBlock) fog_plasma_kernel(double* maps, double* norms, std::int64_t m,
                                                            double decay, const CorruptImagePlan* images) {
  namespace m_ = ::fovea::data::detail::corruption;
  __shared__ double lows[kBlock], highs[kBlock];
  double* map = maps + static_cast<std::int64_t>(blockIdx.x) * m * m;
  const RandomKey key = images[blockIdx.x].key;
  const auto tid = static_cast<std::int64_t>(threadIdx.x), threads = static_cast<std::int64_t>(blockDim.x);
  if (tid == 0) map[0] = 0.0;  // every other point is set once, before any point reads it
  __syncthreads();
  double wibble = 100.0;
  for (std::int64_t step = m; step >= 2; step /= 2) {
    const std::int64_t cells = (m / step) * (m / step);
    for (std::int64_t k = tid; k < cells; k += threads) m_::plasma_square(map, m, step, k, wibble, key);
    __syncthreads();
    for (std::int64_t k = tid; k < 2 * cells; k += threads) m_::plasma_diamond(map, m, step, k, wibble, key);
    __syncthreads();
    wibble /= decay;
  }
  double lo = map[0], hi = map[0];
  for (std::int64_t i = tid; i < m * m; i += threads) {
    lo = map[i] < lo ? map[i] : lo;
    hi = map[i] > hi ? map[i] : hi;
  }
  lows[threadIdx.x] = lo, highs[threadIdx.x] = hi;
  __syncthreads();
  for (unsigned half = blockDim.x / 2; half > 0; half /= 2) {
    if (threadIdx.x < half) {
      lows[threadIdx.x] =
          lows[threadIdx.x + half] < lows[threadIdx.x] ? lows[threadIdx.x + half] : lows[threadIdx.x];
      highs[threadIdx.x] =
          highs[threadIdx.x + half] > highs[threadIdx.x] ? highs[threadIdx.x + half] : highs[threadIdx.x];
    }
    __syncthreads();
  }
  if (tid == 0) norms[2 * blockIdx.x] = lows[0], norms[2 * blockIdx.x + 1] = highs[0] - lows[0];
}

// The row pass of a separable filter over `planes` planes (h, w): out = sum_t k[t] in(y, x + t - r)
// (separable_filter's order and roundings: no fused multiply-add), border rule `border`.
__global__ void __launch_bounds__(kBlock)
    corrupt_rows_kernel(const float* __restrict__ in, float* __restrict__ out, std::int64_t planes,
                        std::int64_t h, std::int64_t w, const float* __restrict__ k, int radius,
                        Border border) {
  const std::int64_t total = planes * h * w, stride = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
  for (std::int64_t e = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < total;
       e += stride) {
    const std::int64_t row = e / w, x = e - row * w;
    const float* src = in + row * w;
    float acc = 0.0f;
    for (int t = 0; t <= 2 * radius; ++t) {
      const std::int64_t sx = border_index(x + t - radius, w, border);
      acc = __fadd_rn(acc, __fmul_rn(k[t], sx < 0 ? 0.0f : src[sx]));
    }
    out[e] = acc;
  }
}

// The column pass: out = sum_t k[t] rows(y + t - r, x), rows beyond a zero border skipped; clipped
// to [0, 1] when clip is set.
__global__ void __launch_bounds__(kBlock)
    corrupt_cols_kernel(const float* __restrict__ rows, float* __restrict__ out, std::int64_t planes,
                        std::int64_t h, std::int64_t w, const float* __restrict__ k, int radius,
                        Border border, int clip) {
  const std::int64_t hw = h * w, total = planes * hw,
                     stride = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
  for (std::int64_t e = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < total;
       e += stride) {
    const std::int64_t plane = e / hw, q = e - plane * hw, y = q / w, x = q - y * w;
    const float* src = rows + plane * hw;
    float acc = 0.0f;
    for (int t = -radius; t <= radius; ++t) {
      const std::int64_t sy = border_index(y + t, h, border);
      if (sy < 0) continue;
      acc = __fadd_rn(acc, __fmul_rn(k[t + radius], src[sy * w + x]));
    }
    out[e] = clip ? ::fovea::data::detail::corruption::clip01(acc) : acc;
  }
}

// glass_blur's shuffle: out (N, 3, H, W) = glass_quantize_at(blurred) read at each pixel's source
// pixel, d.source (N, H, W).
__global__ void __launch_bounds__(kBlock)
    glass_shuffle_kernel(const float* __restrict__ blurred, float* __restrict__ out, CorruptDevice d) {
  const std::int64_t hw = d.h * d.w, total = d.n * 3 * hw,
                     stride = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
  for (std::int64_t e = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < total;
       e += stride) {
    const std::int64_t plane = e / hw, q = e - plane * hw, n = plane / 3;
    const std::int32_t from = d.source[n * hw + q];
    out[e] = ::fovea::data::detail::corruption::glass_quantize_at(blurred[plane * hw + from]);
  }
}

// glass_blur's sources, source (N, H, W): for each image and pixel the pixel it holds after the
// shuffle's passes (glass_source_at: glass_source's values, each pixel on its own thread).
__global__ void __launch_bounds__(kBlock)
    glass_source_kernel(std::int32_t* __restrict__ source, CorruptDevice d) {
  const std::int64_t hw = d.h * d.w, total = d.n * hw,
                     stride = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
  for (std::int64_t e = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < total;
       e += stride) {
    const std::int64_t n = e / hw;
    source[e] = ::fovea::data::detail::corruption::glass_source_at(e - n * hw, d.h, d.w, d.glass_delta,
                                                                   d.glass_iterations, d.images[n].key);
  }
}

// jpeg_compression's 8-bit pixels: x (N, 3, H, W) -> bytes (N, H, W, 3), jpeg_byte of each value.
__global__ void __launch_bounds__(kBlock)
    jpeg_pack_kernel(const float* __restrict__ x, unsigned char* __restrict__ bytes, std::int64_t n,
                     std::int64_t hw) {
  const std::int64_t stride = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
  for (std::int64_t e = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < n * hw;
       e += stride) {
    const std::int64_t k = e / hw, p = e - k * hw;
    for (int c = 0; c < 3; ++c)
      bytes[3 * e + c] = ::fovea::data::detail::corruption::jpeg_byte(x[(3 * k + c) * hw + p]);
  }
}

// ... and back: bytes (N, H, W, 3) -> out (N, 3, H, W), jpeg_value of each byte.
__global__ void __launch_bounds__(kBlock)
    jpeg_unpack_kernel(const unsigned char* __restrict__ bytes, float* __restrict__ out, std::int64_t n,
                       std::int64_t hw) {
  const std::int64_t stride = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
  for (std::int64_t e = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < 3 * n * hw;
       e += stride) {
    const std::int64_t plane = e / hw, p = e - plane * hw, k = plane / 3, c = plane - 3 * k;
    out[e] = ::fovea::data::detail::corruption::jpeg_value(bytes[3 * (k * hw + p) + c]);
  }
}

// noise (N, 2, H, W): plane 0 of image n is 2 uniform(key, pixel) - 1, plane 1 the same from key2.
__global__ void __launch_bounds__(kBlock) elastic_noise_kernel(float* __restrict__ noise, CorruptDevice d) {
  const std::int64_t hw = d.h * d.w, total = d.n * 2 * hw,
                     stride = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
  for (std::int64_t e = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < total;
       e += stride) {
    const std::int64_t plane = e / hw, q = e - plane * hw, n = plane / 2;
    const RandomKey& key = (plane & 1) ? d.images[n].key2 : d.images[n].key;
    noise[e] = 2.0f * uniform(key, static_cast<std::uint64_t>(q)) - 1.0f;
  }
}

// One block per image: the bounding box {x0, y0, x1, y1} (half-open) of the nonzero pixels of its
// mask (h, w), {0, 0, 0, 0} when there are none.
__global__ void __launch_bounds__(kBlock)
    fov_box_kernel(const float* __restrict__ masks, std::int64_t h, std::int64_t w, std::int64_t* boxes) {
  __shared__ std::int64_t box[4][kBlock];
  const float* mask = masks + static_cast<std::int64_t>(blockIdx.x) * h * w;
  std::int64_t x0 = w, y0 = h, x1 = 0, y1 = 0;
  for (std::int64_t i = threadIdx.x; i < h * w; i += blockDim.x) {
    if (mask[i] == 0.0f) continue;
    const std::int64_t y = i / w, x = i - y * w;
    x0 = x < x0 ? x : x0, y0 = y < y0 ? y : y0;
    x1 = x + 1 > x1 ? x + 1 : x1, y1 = y + 1 > y1 ? y + 1 : y1;
  }
  box[0][threadIdx.x] = x0, box[1][threadIdx.x] = y0, box[2][threadIdx.x] = x1, box[3][threadIdx.x] = y1;
  __syncthreads();
  for (unsigned half = blockDim.x / 2; half > 0; half /= 2) {
    if (threadIdx.x < half) {
      const unsigned o = threadIdx.x + half;
      box[0][threadIdx.x] = box[0][o] < box[0][threadIdx.x] ? box[0][o] : box[0][threadIdx.x];
      box[1][threadIdx.x] = box[1][o] < box[1][threadIdx.x] ? box[1][o] : box[1][threadIdx.x];
      box[2][threadIdx.x] = box[2][o] > box[2][threadIdx.x] ? box[2][o] : box[2][threadIdx.x];
      box[3][threadIdx.x] = box[3][o] > box[3][threadIdx.x] ? box[3][o] : box[3][threadIdx.x];
    }
    __syncthreads();
  }
  if (threadIdx.x == 0) {
    const bool empty = box[2][0] <= box[0][0] || box[3][0] <= box[1][0];
    for (int k = 0; k < 4; ++k) boxes[4 * blockIdx.x + k] = empty ? 0 : box[k][0];
  }
}

// ---- host side ----

// Device copies of the plan's arrays in one allocation (through page-locked staging when small).
class CorruptPlanBuffer {
 public:
  CorruptPlanBuffer(Device device, const CorruptBatchPlan& plan, cudaStream_t stream) {
    std::vector<std::size_t> offsets;
    std::size_t total = 0;
    auto reserve = [&](std::size_t bytes) {
      offsets.push_back(total);
      total += align_up(bytes);
    };
    reserve(plan.images.size() * sizeof(CorruptImagePlan));
    reserve(plan.taps.size() * sizeof(Tap));
    reserve(plan.kernel.size() * sizeof(float));
    reserve(plan.zoom.size() * sizeof(LinearTap));
    reserve(plan.index.size() * sizeof(std::int64_t));
    reserve(plan.spots.size() * sizeof(Spot));
    reserve(plan.layers.size() * sizeof(float));
    reserve(plan.images.size() * 3 * sizeof(float));  // stats, written on the device
    scratch_ = std::make_unique<AugmentScratch>(device, total);
    std::vector<char> host(total, 0);
    auto put = [&](int k, const void* src, std::size_t bytes) {
      if (bytes > 0) std::memcpy(host.data() + offsets[static_cast<std::size_t>(k)], src, bytes);
    };
    put(0, plan.images.data(), plan.images.size() * sizeof(CorruptImagePlan));
    put(1, plan.taps.data(), plan.taps.size() * sizeof(Tap));
    put(2, plan.kernel.data(), plan.kernel.size() * sizeof(float));
    put(3, plan.zoom.data(), plan.zoom.size() * sizeof(LinearTap));
    put(4, plan.index.data(), plan.index.size() * sizeof(std::int64_t));
    put(5, plan.spots.data(), plan.spots.size() * sizeof(Spot));
    put(6, plan.layers.data(), plan.layers.size() * sizeof(float));
    char* base = scratch_->bytes();
    if (total <= kStagedBytes) {
      HostStaging::of(device.index()).upload(base, host.data(), total, stream);
    } else {  // fog's resized layers: from pageable memory (returns once the driver has them)
      FOVEA_CHECK_CUDA(cudaMemcpyAsync(base, host.data(), total, cudaMemcpyHostToDevice, stream), total,
                       " bytes of corruption plan to ", device.str());
    }
    auto at = [&](int k) { return base + offsets[static_cast<std::size_t>(k)]; };
    view_.images = reinterpret_cast<const CorruptImagePlan*>(at(0));
    view_.taps = reinterpret_cast<const Tap*>(at(1));
    view_.kernel = reinterpret_cast<const float*>(at(2));
    view_.zoom = reinterpret_cast<const LinearTap*>(at(3));
    view_.index = reinterpret_cast<const std::int64_t*>(at(4));
    view_.spots = reinterpret_cast<const Spot*>(at(5));
    view_.layers = reinterpret_cast<const float*>(at(6));
    view_.stats = reinterpret_cast<float*>(at(7));
    view_.n = static_cast<std::int64_t>(plan.images.size());
    view_.h = plan.height, view_.w = plan.width;
    view_.small_h = plan.small_h, view_.small_w = plan.small_w;
    view_.factors = static_cast<int>(plan.zoom.size() / static_cast<std::size_t>(plan.height + plan.width));
    view_.a = plan.a, view_.b = plan.b;
    view_.glass_delta = plan.glass_delta, view_.glass_iterations = plan.glass_iterations;
  }
  CorruptDevice view() const { return view_; }

 private:
  static constexpr std::size_t kStagedBytes = std::size_t{4} << 20;
  std::unique_ptr<AugmentScratch> scratch_;
  CorruptDevice view_;
};

template <int C>
void launch_corrupt_pixels(const float* x, float* out, const CorruptDevice& d, int device,
                           cudaStream_t stream) {
  corrupt_pixel_kernel<C><<<grid_for(d.n * d.h * d.w, device), kBlock, 0, stream>>>(x, out, d);
  FOVEA_CHECK_LAUNCH("corrupt_pixel_kernel", ", corruption ", C, ", batch ", d.n, "x3x", d.h, "x", d.w);
}

// Scratch bound of fog's plasma maps: images run in chunks whose maps fit it (at 224 px, 256 maps of
// 512 KB, one chunk; at least one image per chunk).
inline constexpr std::int64_t kPlasmaScratchBytes = std::int64_t{128} << 20;

// fog with the plasma maps computed on the device (plan.fog_map > 0), chunk by chunk: the maps of a
// chunk's images, then its pixels (the channel maxima, d.stats, are already queued).
inline void launch_fog_on_device(const float* x, float* out, const CorruptDevice& d,
                                 const ::fovea::data::detail::corruption::CorruptBatchPlan& plan,
                                 Device device, cudaStream_t stream,
                                 std::int64_t scratch_bytes = kPlasmaScratchBytes) {
  const std::int64_t m = plan.fog_map, map_bytes = m * m * static_cast<std::int64_t>(sizeof(double));
  const std::int64_t chunk =
      std::clamp<std::int64_t>(scratch_bytes / map_bytes, 1, std::min<std::int64_t>(d.n, 65535));
  AugmentScratch scratch(device, static_cast<std::size_t>(chunk * (map_bytes + 2 * sizeof(double))));
  auto* maps = reinterpret_cast<double*>(scratch.bytes());
  double* norms = maps + chunk * m * m;
  const std::int64_t image_floats = 3 * d.h * d.w;
  for (std::int64_t first = 0; first < d.n; first += chunk) {
    CorruptDevice part = d;
    part.n = std::min(chunk, d.n - first);
    part.images = d.images + first;
    part.stats = d.stats + 3 * first;
    part.plasma = maps, part.plasma_norm = norms, part.plasma_m = m;
    fog_plasma_kernel<<<static_cast<unsigned>(part.n), kBlock, 0, stream>>>(maps, norms, m, plan.b,
                                                                            part.images);
    FOVEA_CHECK_LAUNCH("fog_plasma_kernel", ", images ", first, "..", first + part.n, " of ", d.n, ", map ",
                       m, "x", m);
    launch_corrupt_pixels<14>(x + first * image_floats, out + first * image_floats, part, device.index(),
                              stream);
  }
}

// A separable filter (kernel k of 2 radius + 1 taps on the device) over `planes` planes of in into
// out, through a row scratch.
inline void launch_separable(const float* in, float* out, std::int64_t planes, std::int64_t h, std::int64_t w,
                             const float* k, int radius, Border border, bool clip, Device device,
                             cudaStream_t stream) {
  const std::int64_t elements = planes * h * w;
  AugmentScratch rows(device, static_cast<std::size_t>(elements) * sizeof(float));
  float* r = reinterpret_cast<float*>(rows.bytes());
  const unsigned grid = grid_for(elements, device.index());
  corrupt_rows_kernel<<<grid, kBlock, 0, stream>>>(in, r, planes, h, w, k, radius, border);
  FOVEA_CHECK_LAUNCH("corrupt_rows_kernel", ", planes ", planes, " of ", h, "x", w, ", radius ", radius);
  corrupt_cols_kernel<<<grid, kBlock, 0, stream>>>(r, out, planes, h, w, k, radius, border, clip ? 1 : 0);
  FOVEA_CHECK_LAUNCH("corrupt_cols_kernel", ", planes ", planes, " of ", h, "x", w, ", radius ", radius);
}

}  // namespace fovea::cuda::detail

namespace fovea::cuda {

void corrupt_batch(CView images, CView masks, const ::fovea::data::detail::corruption::CorruptBatchPlan& plan,
                   View out) {
  using namespace detail;
  const Device device = out.device();
  DeviceGuard guard(device.index());
  cudaStream_t stream = stream_for(device);
  if (plan.images.empty() || plan.height == 0 || plan.width == 0) return;
  CorruptPlanBuffer buffer(device, plan, stream);
  CorruptDevice d = buffer.view();
  if (plan.needs_mask) d.masks = masks.data();
  const int dev = device.index();
  const float* x = images.data();
  float* y = out.data();
  switch (plan.corruption) {
    case Corruption::gaussian_noise: launch_corrupt_pixels<0>(x, y, d, dev, stream); break;
    case Corruption::shot_noise: launch_corrupt_pixels<1>(x, y, d, dev, stream); break;
    case Corruption::impulse_noise: launch_corrupt_pixels<2>(x, y, d, dev, stream); break;
    case Corruption::speckle_noise: launch_corrupt_pixels<3>(x, y, d, dev, stream); break;
    case Corruption::gaussian_blur:
      launch_separable(x, y, 3 * d.n, d.h, d.w, d.kernel, static_cast<int>(plan.kernel.size() / 2),
                       Border::clamp, true, device, stream);
      break;
    case Corruption::defocus_blur: launch_corrupt_pixels<5>(x, y, d, dev, stream); break;
    case Corruption::motion_blur: launch_corrupt_pixels<6>(x, y, d, dev, stream); break;
    case Corruption::zoom_blur: launch_corrupt_pixels<7>(x, y, d, dev, stream); break;
    case Corruption::brightness: launch_corrupt_pixels<8>(x, y, d, dev, stream); break;
    case Corruption::contrast:
    case Corruption::fog:
      corrupt_stats_kernel<<<static_cast<unsigned>(3 * d.n), kBlock, 0, stream>>>(
          x, d.stats, d.h * d.w, plan.corruption == Corruption::contrast ? 0 : 1);
      FOVEA_CHECK_LAUNCH("corrupt_stats_kernel", ", batch ", d.n, "x3x", d.h, "x", d.w);
      if (plan.corruption == Corruption::contrast) launch_corrupt_pixels<9>(x, y, d, dev, stream);
      else if (plan.fog_map == 0) launch_corrupt_pixels<14>(x, y, d, dev, stream);  // layers from the host
      else launch_fog_on_device(x, y, d, plan, device, stream);
      break;
    case Corruption::saturate: launch_corrupt_pixels<10>(x, y, d, dev, stream); break;
    case Corruption::pixelate: launch_corrupt_pixels<12>(x, y, d, dev, stream); break;
    case Corruption::elastic_transform: {
      const std::int64_t elements = d.n * 2 * d.h * d.w;
      AugmentScratch noise(device, static_cast<std::size_t>(elements) * sizeof(float));
      AugmentScratch field(device, static_cast<std::size_t>(elements) * sizeof(float));
      float* nz = reinterpret_cast<float*>(noise.bytes());
      float* fd = reinterpret_cast<float*>(field.bytes());
      elastic_noise_kernel<<<grid_for(elements, dev), kBlock, 0, stream>>>(nz, d);
      FOVEA_CHECK_LAUNCH("elastic_noise_kernel", ", batch ", d.n, "x3x", d.h, "x", d.w);
      launch_separable(nz, fd, 2 * d.n, d.h, d.w, d.kernel, static_cast<int>(plan.kernel.size() / 2),
                       Border::reflect, false, device, stream);
      d.field = fd;
      launch_corrupt_pixels<13>(x, y, d, dev, stream);
      break;
    }
    case Corruption::uneven_illumination: launch_corrupt_pixels<15>(x, y, d, dev, stream); break;
    case Corruption::halo: launch_corrupt_pixels<16>(x, y, d, dev, stream); break;
    case Corruption::dark_hole: launch_corrupt_pixels<17>(x, y, d, dev, stream); break;
    case Corruption::spots: launch_corrupt_pixels<18>(x, y, d, dev, stream); break;
    case Corruption::fundus_defocus: launch_corrupt_pixels<19>(x, y, d, dev, stream); break;
    case Corruption::glass_blur: {
      // the sources; blur x into scratch, step and shuffle it into y, blur y in place (the row pass
      // reads all of y into its own scratch before the column pass writes y) and clip
      const std::int64_t elements = d.n * 3 * d.h * d.w;
      AugmentScratch sources(device, static_cast<std::size_t>(d.n * d.h * d.w) * sizeof(std::int32_t));
      auto* src = reinterpret_cast<std::int32_t*>(sources.bytes());
      glass_source_kernel<<<grid_for(d.n * d.h * d.w, dev), kBlock, 0, stream>>>(src, d);
      FOVEA_CHECK_LAUNCH("glass_source_kernel", ", batch ", d.n, "x3x", d.h, "x", d.w);
      d.source = src;
      AugmentScratch blurred(device, static_cast<std::size_t>(elements) * sizeof(float));
      float* b = reinterpret_cast<float*>(blurred.bytes());
      const int radius = static_cast<int>(plan.kernel.size() / 2);
      launch_separable(x, b, 3 * d.n, d.h, d.w, d.kernel, radius, Border::clamp, false, device, stream);
      glass_shuffle_kernel<<<grid_for(elements, dev), kBlock, 0, stream>>>(b, y, d);
      FOVEA_CHECK_LAUNCH("glass_shuffle_kernel", ", batch ", d.n, "x3x", d.h, "x", d.w);
      launch_separable(y, y, 3 * d.n, d.h, d.w, d.kernel, radius, Border::clamp, true, device, stream);
      break;
    }
    case Corruption::jpeg_compression:
      FOVEA_FAIL(
          "cuda::corrupt_batch: jpeg_compression has no CUDA twin (data::corrupt_batch runs it on the host)");
  }
}

void jpeg_pack(CView images, unsigned char* pixels) {
  using namespace detail;
  const Device device = images.device();
  DeviceGuard guard(device.index());
  cudaStream_t stream = stream_for(device);
  const std::int64_t n = images.shape()[0], hw = images.shape()[2] * images.shape()[3];
  if (n * hw == 0) return;
  const auto bytes = static_cast<std::size_t>(3 * n * hw);
  AugmentScratch scratch(device, bytes);
  auto* b = reinterpret_cast<unsigned char*>(scratch.bytes());
  jpeg_pack_kernel<<<grid_for(n * hw, device.index()), kBlock, 0, stream>>>(images.data(), b, n, hw);
  FOVEA_CHECK_LAUNCH("jpeg_pack_kernel", ", batch ", images.shape().str());
  FOVEA_CHECK_CUDA(cudaMemcpyAsync(pixels, b, bytes, cudaMemcpyDeviceToHost, stream), bytes,
                   " bytes of 8-bit pixels from ", device.str());
  FOVEA_CHECK_CUDA(cudaStreamSynchronize(stream), "8-bit pixels of a ", images.shape().str(), " batch on ",
                   device.str());
}

void jpeg_unpack(const unsigned char* pixels, View out) {
  using namespace detail;
  const Device device = out.device();
  DeviceGuard guard(device.index());
  cudaStream_t stream = stream_for(device);
  const std::int64_t n = out.shape()[0], hw = out.shape()[2] * out.shape()[3];
  if (n * hw == 0) return;
  const auto bytes = static_cast<std::size_t>(3 * n * hw);
  AugmentScratch scratch(device, bytes);
  auto* b = reinterpret_cast<unsigned char*>(scratch.bytes());
  // from pageable memory: returns once the driver has the bytes
  FOVEA_CHECK_CUDA(cudaMemcpyAsync(b, pixels, bytes, cudaMemcpyHostToDevice, stream), bytes,
                   " bytes of 8-bit pixels to ", device.str());
  jpeg_unpack_kernel<<<grid_for(3 * n * hw, device.index()), kBlock, 0, stream>>>(b, out.data(), n, hw);
  FOVEA_CHECK_LAUNCH("jpeg_unpack_kernel", ", batch ", out.shape().str());
}

std::vector<std::array<std::int64_t, 4>> fov_boxes(CView masks) {
  using namespace detail;
  const Device device = masks.device();
  DeviceGuard guard(device.index());
  cudaStream_t stream = stream_for(device);
  const std::int64_t n = masks.shape()[0], h = masks.shape()[2], w = masks.shape()[3];
  std::vector<std::array<std::int64_t, 4>> boxes(static_cast<std::size_t>(n));
  if (n == 0) return boxes;
  AugmentScratch scratch(device, static_cast<std::size_t>(n) * 4 * sizeof(std::int64_t));
  auto* b = reinterpret_cast<std::int64_t*>(scratch.bytes());
  fov_box_kernel<<<static_cast<unsigned>(n), kBlock, 0, stream>>>(masks.data(), h, w, b);
  FOVEA_CHECK_LAUNCH("fov_box_kernel", ", masks ", masks.shape().str());
  FOVEA_CHECK_CUDA(cudaMemcpyAsync(boxes.data(), b, static_cast<std::size_t>(n) * 4 * sizeof(std::int64_t),
                                   cudaMemcpyDeviceToHost, stream),
                   "field-of-view boxes from ", device.str());
  FOVEA_CHECK_CUDA(cudaStreamSynchronize(stream), "field-of-view boxes on ", device.str());
  return boxes;
}

}  // namespace fovea::cuda
