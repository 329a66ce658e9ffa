// fovea/cpu/conv.hpp: 2-D convolution parameters and geometry shared by both twins, and the CPU
// twin (im2col per image + cpu::gemm, or the direct kernel of cpu/conv_direct.hpp for "same"
// stride-1 convolutions; contracts in ops/conv.hpp).
#pragma once

#include <algorithm>
#include <cstdint>
#include <sstream>
#include <string>
#include <vector>

#include "fovea/core/tensor.hpp"
#include "fovea/cpu/conv_direct.hpp"
#include "fovea/cpu/gemm.hpp"

namespace fovea {

// Stride, zero padding and dilation per spatial axis, and channel groups (PyTorch Conv2d
// semantics; cross-correlation, no kernel flip).
struct Conv2dParams {
  int stride_h = 1, stride_w = 1;
  int pad_h = 0, pad_w = 0;
  int dilation_h = 1, dilation_w = 1;
  int groups = 1;

  std::string str() const {
    std::ostringstream os;
    os << "stride " << stride_h << 'x' << stride_w << ", pad " << pad_h << 'x' << pad_w << ", dilation "
       << dilation_h << 'x' << dilation_w << ", groups " << groups;
    return os.str();
  }
  friend bool operator==(const Conv2dParams&, const Conv2dParams&) = default;
};

// Every size of one convolution: input (N, C, H, W), weight (K, C / groups, R, S), output (N, K, P, Q).
struct Conv2dGeometry {
  std::int64_t N = 0, C = 0, H = 0, W = 0, K = 0, R = 0, S = 0, P = 0, Q = 0;
  Conv2dParams params;
  std::int64_t group_in() const { return C / params.groups; }    // C / groups
  std::int64_t group_out() const { return K / params.groups; }   // K / groups
  std::int64_t patch() const { return group_in() * R * S; }      // one group's im2col rows
};

// Validates x (N, C, H, W), w (K, C / groups, R, S) and params, and returns every size; errors name
// the op, both shapes and the parameters.
inline Conv2dGeometry conv2d_geometry(const char* op, const Shape& x, const Shape& w, const Conv2dParams& p) {
  const auto where = [&] { return " (input " + x.str() + ", weight " + w.str() + ", " + p.str() + ")"; };
  FOVEA_CHECK(x.rank() == 4 && w.rank() == 4, op, ": input (N, C, H, W) and weight (K, C, R, S) must be 4-D",
              where());
  FOVEA_CHECK(p.stride_h > 0 && p.stride_w > 0 && p.pad_h >= 0 && p.pad_w >= 0 && p.dilation_h > 0 &&
                  p.dilation_w > 0 && p.groups > 0,
              op, ": strides and dilations must be positive, paddings non-negative, groups positive", where());
  Conv2dGeometry g;
  g.params = p;
  g.N = x[0], g.C = x[1], g.H = x[2], g.W = x[3];
  g.K = w[0], g.R = w[2], g.S = w[3];
  FOVEA_CHECK(g.C > 0 && g.H > 0 && g.W > 0 && g.K > 0 && g.R > 0 && g.S > 0, op,
              ": channels, spatial sizes and kernel sizes must be positive", where());
  FOVEA_CHECK(g.C % p.groups == 0 && g.K % p.groups == 0, op, ": input channels ", g.C, " and output channels ",
              g.K, " must both be divisible by groups", where());
  FOVEA_CHECK(w[1] == g.C / p.groups, op, ": the input has ", g.C, " channels but the weight expects ",
              w[1] * p.groups, " (weight axis 1 = C / groups = ", w[1], ")", where());
  const std::int64_t span_h = static_cast<std::int64_t>(p.dilation_h) * (g.R - 1) + 1;
  const std::int64_t span_w = static_cast<std::int64_t>(p.dilation_w) * (g.S - 1) + 1;
  FOVEA_CHECK(g.H + 2 * p.pad_h >= span_h && g.W + 2 * p.pad_w >= span_w, op,
              ": the padded input is smaller than the dilated kernel", where());
  g.P = (g.H + 2 * p.pad_h - span_h) / p.stride_h + 1;
  g.Q = (g.W + 2 * p.pad_w - span_w) / p.stride_w + 1;
  return g;
}

// The output shape (N, K, P, Q) of a convolution of x (N, C, H, W) with w (K, C / groups, R, S):
// P = (H + 2 pad_h - dilation_h (R - 1) - 1) / stride_h + 1, likewise Q. Throws on invalid shapes.
inline Shape conv2d_output_shape(const Shape& x, const Shape& w, const Conv2dParams& params) {
  const auto g = conv2d_geometry("conv2d_output_shape", x, w, params);
  return Shape{g.N, g.K, g.P, g.Q};
}

namespace detail {

// Whether the CPU twin runs this convolution's forward pass (adjoint: its input gradient) with the
// direct kernel (cpu/conv_direct.hpp): a same convolution, under the FOVEA_CPU_CONV setting.
inline bool conv2d_uses_direct(const Conv2dGeometry& g, bool adjoint) {
  const auto& p = g.params;
  return conv_direct_applies(g.R, g.S, p.stride_h, p.stride_w, p.pad_h, p.pad_w, p.dilation_h, p.dilation_w,
                             p.groups) &&
         conv_direct_chosen(adjoint ? g.K : g.C, adjoint ? g.C : g.K, g.P, g.Q);
}

// Whether the CPU twin computes this convolution's weight gradient with the direct kernel
// (conv_direct_filter): a same 3x3 convolution, under the FOVEA_CPU_CONV setting.
inline bool conv2d_uses_direct_filter(const Conv2dGeometry& g) {
  const auto& p = g.params;
  return g.R == 3 && g.S == 3 &&
         conv_direct_applies(g.R, g.S, p.stride_h, p.stride_w, p.pad_h, p.pad_w, p.dilation_h, p.dilation_w,
                             p.groups) &&
         conv_direct_filter_chosen(g.C, g.K, g.P, g.Q);
}

// A 1x1 kernel with stride 1 and no padding reads the image itself as its im2col matrix.
inline bool conv2d_is_pointwise(const Conv2dGeometry& g) {
  const auto& p = g.params;
  return g.R == 1 && g.S == 1 && p.stride_h == 1 && p.stride_w == 1 && p.pad_h == 0 && p.pad_w == 0;
}

// The output columns [lo, hi) of a kernel column s whose input column ow * stride - pad + s * dilation
// lies inside [0, W): the rest read padding, so the loops over columns need no per-element test.
struct Conv2dColumnRange {
  std::int64_t lo = 0, hi = 0;
  std::int64_t offset = 0;  // input column of output column 0 (may be negative)
};
inline Conv2dColumnRange conv2d_column_range(const Conv2dGeometry& g, std::int64_t s) {
  const auto& p = g.params;
  Conv2dColumnRange c;
  c.offset = s * p.dilation_w - p.pad_w;
  c.lo = c.offset >= 0 ? 0 : (-c.offset + p.stride_w - 1) / p.stride_w;
  c.hi = g.W - 1 - c.offset < 0 ? 0 : std::min(g.Q, (g.W - 1 - c.offset) / p.stride_w + 1);
  c.lo = std::min(c.lo, g.Q);
  c.hi = std::max(c.hi, c.lo);
  return c;
}

// GCC turns copy loops into memmove calls; for the long copies below, shifted by one float against
// their destination, glibc's memmove runs at half the speed of the vectorised loop on the AMD EPYC
// VMs (docs/benchmarks.md), so GCC keeps the loops here. Other compilers get the plain loops.
#if defined(__GNUC__) && !defined(__clang__) && !defined(__CUDACC__)
#define FOVEA_NO_LOOP_TO_MEMCPY __attribute__((optimize("no-tree-loop-distribute-patterns")))
#else
#define FOVEA_NO_LOOP_TO_MEMCPY
#endif

// The im2col row of kernel tap (r, s) when the output has the input's width and both strides are 1
// (a "same" convolution): output pixel (oh, ow) reads input (oh - pad_h + r dil_h, ow + offset), one
// constant shift of the flat index, so the valid output rows are one block copy of the plane
// (short rows no longer cost a library call each). The columns that read padding took the
// neighbouring row's pixels in that copy and are zeroed after it.
FOVEA_NO_LOOP_TO_MEMCPY inline void conv2d_im2col_same_row(const float* plane, const Conv2dGeometry& g,
                                                           std::int64_t r, const Conv2dColumnRange& cols,
                                                           float* row) {
  const auto& p = g.params;
  const std::int64_t shift = r * p.dilation_h - p.pad_h;  // ih - oh
  const std::int64_t first = std::clamp<std::int64_t>(-shift, 0, g.P);
  const std::int64_t last = std::clamp<std::int64_t>(g.H - shift, first, g.P);  // valid rows [first, last)
  std::fill(row, row + first * g.Q, 0.0f);
  std::fill(row + last * g.Q, row + g.P * g.Q, 0.0f);
  if (last == first || cols.hi == cols.lo) {
    std::fill(row + first * g.Q, row + last * g.Q, 0.0f);
    return;
  }
  // Flat output index i reads plane[i + shift * W + offset] (Q == W); copy from the first valid
  // column of row `first` to the last valid column of row last - 1, both inside the plane.
  const std::int64_t begin = first * g.Q + cols.lo, end = (last - 1) * g.Q + cols.hi;
  const std::int64_t delta = shift * g.W + cols.offset;  // i + delta >= 0 from i = begin on
  for (std::int64_t i = begin; i < end; ++i) row[i] = plane[i + delta];
  for (std::int64_t oh = first; oh < last; ++oh) {
    float* out = row + oh * g.Q;
    for (std::int64_t i = 0; i < cols.lo; ++i) out[i] = 0.0f;
    for (std::int64_t i = cols.hi; i < g.Q; ++i) out[i] = 0.0f;
  }
}

// col (C * R * S, P * Q) from one image (C, H, W), its rows ld >= P * Q floats apart (ld 0: P * Q);
// padding reads as zero.
inline void conv2d_im2col(const float* image, const Conv2dGeometry& g, float* col, std::int64_t ld = 0) {
  const auto& p = g.params;
  if (ld == 0) ld = g.P * g.Q;
  const std::int64_t sw = p.stride_w;
  const bool same = p.stride_h == 1 && sw == 1 && g.Q == g.W;
  for (std::int64_t c = 0; c < g.C; ++c)
    for (std::int64_t r = 0; r < g.R; ++r)
      for (std::int64_t s = 0; s < g.S; ++s) {
        float* row = col + ((c * g.R + r) * g.S + s) * ld;
        const float* plane = image + c * g.H * g.W;
        const Conv2dColumnRange cols = conv2d_column_range(g, s);
        if (same) {
          conv2d_im2col_same_row(plane, g, r, cols, row);
          continue;
        }
        for (std::int64_t oh = 0; oh < g.P; ++oh) {
          float* out = row + oh * g.Q;
          const std::int64_t ih = oh * p.stride_h - p.pad_h + r * p.dilation_h;
          if (ih < 0 || ih >= g.H) {
            std::fill(out, out + g.Q, 0.0f);
            continue;
          }
          std::fill(out, out + cols.lo, 0.0f);
          if (cols.hi > cols.lo) {
            const float* src = plane + ih * g.W + cols.offset + cols.lo * sw;  // input of column lo
            if (sw == 1) {
              std::copy(src, src + (cols.hi - cols.lo), out + cols.lo);
            } else {
              for (std::int64_t ow = cols.lo; ow < cols.hi; ++ow) out[ow] = src[(ow - cols.lo) * sw];
            }
          }
          std::fill(out + cols.hi, out + g.Q, 0.0f);
        }
      }
}

// image (C, H, W) = the sum of col (C * R * S, P * Q) scattered back (the adjoint of im2col). Each
// pixel receives its terms in (c, r, s, oh) order, one add each.
inline void conv2d_col2im(const float* col, const Conv2dGeometry& g, float* image) {
  const auto& p = g.params;
  const std::int64_t sw = p.stride_w;
  std::fill(image, image + g.C * g.H * g.W, 0.0f);
  for (std::int64_t c = 0; c < g.C; ++c)
    for (std::int64_t r = 0; r < g.R; ++r)
      for (std::int64_t s = 0; s < g.S; ++s) {
        const float* row = col + ((c * g.R + r) * g.S + s) * g.P * g.Q;
        float* plane = image + c * g.H * g.W;
        const Conv2dColumnRange cols = conv2d_column_range(g, s);
        for (std::int64_t oh = 0; oh < g.P; ++oh) {
          const std::int64_t ih = oh * p.stride_h - p.pad_h + r * p.dilation_h;
          if (ih < 0 || ih >= g.H || cols.hi == cols.lo) continue;
          float* dst = plane + ih * g.W + cols.offset + cols.lo * sw;  // pixel of column lo
          const float* src = row + oh * g.Q + cols.lo;
          const std::int64_t n = cols.hi - cols.lo;
          if (sw == 1) {
            for (std::int64_t i = 0; i < n; ++i) dst[i] += src[i];
          } else {
            for (std::int64_t i = 0; i < n; ++i) dst[i * sw] += src[i];
          }
        }
      }
}

// The images of one weight-gradient GEMM: enough that its reduction runs over at least
// kConv2dFilterColumns output pixels (a GEMM reducing over the 64 pixels of one 8 x 8 image spends
// its time packing), at most the batch. It depends on the shapes only, never on the thread count.
inline constexpr std::int64_t kConv2dFilterColumns = 1024;
inline std::int64_t conv2d_filter_group(const Conv2dGeometry& g) {
  const std::int64_t pq = std::max<std::int64_t>(g.P * g.Q, 1);
  return std::clamp<std::int64_t>((kConv2dFilterColumns + pq - 1) / pq, 1, std::max<std::int64_t>(g.N, 1));
}

}  // namespace detail

namespace cpu {

// How the CPU twin computes convolutions, for logs and environment.json: the direct kernel's variant
// and where FOVEA_CPU_CONV lets it run, and that everything else is im2col + GEMM (cpu::gemm_kernel).
inline std::string conv_kernel() {
  const auto isa = detail::conv_direct_best_isa();
  const std::string direct =
      std::string("direct ") + detail::conv_direct_isa_name(isa) + " kernel for same stride-1 convolutions";
  switch (cpu_conv_path()) {
    case CpuConvPath::gemm: return "im2col + GEMM (FOVEA_CPU_CONV=gemm)";
    case CpuConvPath::direct: return direct + " (FOVEA_CPU_CONV=direct), im2col + GEMM otherwise";
    case CpuConvPath::automatic: break;
  }
  if (detail::conv_direct_max_in(isa) == 0) return "im2col + GEMM (no AVX2 for the direct kernel)";
  const auto n = [](std::int64_t v) { return std::to_string(v); };
  return direct + " (forward and input gradient: at most " + n(detail::conv_direct_max_in(isa)) +
         " input channels and at least " + n(detail::kConvDirectMinPixels) +
         " pixels; 3x3 weight gradient: at most " + n(detail::kConvDirectFilterMaxIn) +
         " input channels and at least " + n(detail::kConvDirectFilterMinPixels) + " pixels; at least " +
         n(detail::kConvDirectMinOut) + " output channels), im2col + GEMM otherwise";
}

// The images run in parallel (parallel_gemm_for), each chunk of images with its own im2col buffer of
// (C * R * S) x (P * Q) floats; every image's output is computed exactly as in a serial loop.
inline void conv2d_forward(CView x, CView w, CView bias, View y, const Conv2dParams& params) {
  const auto g = conv2d_geometry("conv2d_forward", x.shape(), w.shape(), params);
  const std::int64_t pq = g.P * g.Q, groups = params.groups;
  if (detail::conv2d_uses_direct(g, /*adjoint=*/false)) {
    detail::conv_direct(x.data(), g.N, {g.C, g.K, g.H, g.W, g.R, g.S}, w.data(), /*adjoint=*/false,
                        detail::is_present(bias) ? bias.data() : nullptr, y.data());
    return;
  }
  const bool pointwise = detail::conv2d_is_pointwise(g);
  parallel_gemm_for(g.N, [&](std::int64_t first, std::int64_t last) {
    std::vector<float> col(pointwise ? 0 : static_cast<std::size_t>(g.C * g.R * g.S * pq));
    for (std::int64_t n = first; n < last; ++n) {
      const float* image = x.data() + n * g.C * g.H * g.W;
      float* out = y.data() + n * g.K * pq;  // (K, P * Q)
      if (!pointwise) detail::conv2d_im2col(image, g, col.data());
      const float* cols = pointwise ? image : col.data();
      for (std::int64_t gi = 0; gi < groups; ++gi)
        gemm(false, false, g.group_out(), pq, g.patch(), 1.0f, w.data() + gi * g.group_out() * g.patch(),
             g.patch(), cols + gi * g.patch() * pq, pq, 0.0f, out + gi * g.group_out() * pq, pq);
      if (detail::is_present(bias))
        for (std::int64_t k = 0; k < g.K; ++k) {
          const float b = bias.data()[k];
          for (std::int64_t i = 0; i < pq; ++i) out[k * pq + i] += b;
        }
    }
  });
}

inline void conv2d_backward_data(CView dy, CView w, View dx, const Conv2dParams& params) {
  const auto g = conv2d_geometry("conv2d_backward_data", dx.shape(), w.shape(), params);
  const std::int64_t pq = g.P * g.Q, groups = params.groups;
  if (detail::conv2d_uses_direct(g, /*adjoint=*/true)) {
    detail::conv_direct(dy.data(), g.N, {g.K, g.C, g.H, g.W, g.R, g.S}, w.data(), /*adjoint=*/true, nullptr,
                        dx.data());
    return;
  }
  const bool pointwise = detail::conv2d_is_pointwise(g);
  parallel_gemm_for(g.N, [&](std::int64_t first, std::int64_t last) {
    std::vector<float> col(pointwise ? 0 : static_cast<std::size_t>(g.C * g.R * g.S * pq));
    for (std::int64_t n = first; n < last; ++n) {
      const float* grad = dy.data() + n * g.K * pq;  // (K, P * Q)
      float* image = dx.data() + n * g.C * g.H * g.W;
      float* cols = pointwise ? image : col.data();
      for (std::int64_t gi = 0; gi < groups; ++gi)
        gemm(true, false, g.patch(), pq, g.group_out(), 1.0f, w.data() + gi * g.group_out() * g.patch(),
             g.patch(), grad + gi * g.group_out() * pq, pq, 0.0f, cols + gi * g.patch() * pq, pq);
      if (!pointwise) detail::conv2d_col2im(col.data(), g, image);
    }
  });
}

// The weight gradient is a sum over the images. They go in fixed groups of
// detail::conv2d_filter_group images; one GEMM per group (and channel group) multiplies the group's
// output gradients, side by side (K, b * P * Q), by the transpose of their im2col matrices, side by
// side (C * R * S, b * P * Q), into a partial sum, and the partial sums are added to dw in group order.
// Groups run in parallel, cpu_threads() at a time, each with its own buffers. The groups and the
// order of the adds depend on the shapes only, so the result does not depend on the thread count.
inline void conv2d_backward_filter(CView x, CView dy, View dw, const Conv2dParams& params, bool accumulate) {
  const auto g = conv2d_geometry("conv2d_backward_filter", x.shape(), dw.shape(), params);
  const std::int64_t pq = g.P * g.Q, groups = params.groups, image_floats = g.C * g.H * g.W;
  if (g.N == 0) {
    if (!accumulate) std::fill(dw.data(), dw.data() + dw.numel(), 0.0f);
    return;
  }
  if (detail::conv2d_uses_direct_filter(g)) {
    detail::conv_direct_filter(x.data(), dy.data(), g.N, {g.C, g.K, g.H, g.W, 3, 3}, dw.data(), accumulate);
    return;
  }
  const bool pointwise = detail::conv2d_is_pointwise(g);
  const std::int64_t per_group = detail::conv2d_filter_group(g);
  const std::int64_t n_groups = (g.N + per_group - 1) / per_group;
  const std::int64_t cols = per_group * pq;  // columns of one group's matrices
  const std::int64_t rows = g.C * g.R * g.S, dw_floats = g.K * g.patch();
  // Per slot of a wave: the im2col matrix, the output gradients side by side, the partial sum. A
  // wave holds at most 256 MiB of slots (at least one); its size does not change the result.
  const bool gather_x = !pointwise || per_group > 1, gather_dy = per_group > 1;
  const std::int64_t slot_floats = (gather_x ? rows * cols : 0) + (gather_dy ? g.K * cols : 0) + dw_floats;
  const std::int64_t fit = std::max<std::int64_t>(1, (std::int64_t{256} << 20) / 4 / slot_floats);
  const std::int64_t wave = std::min<std::int64_t>({n_groups, cpu_threads(), fit});
  std::vector<float> buffer(static_cast<std::size_t>(wave * slot_floats));
  for (std::int64_t g0 = 0; g0 < n_groups; g0 += wave) {
    const std::int64_t in_wave = std::min(wave, n_groups - g0);
    parallel_gemm_for(in_wave, [&](std::int64_t first, std::int64_t last) {
      for (std::int64_t slot = first; slot < last; ++slot) {
        const std::int64_t n0 = (g0 + slot) * per_group, count = std::min(per_group, g.N - n0);
        const std::int64_t ld = count * pq;
        float* mine = buffer.data() + slot * slot_floats;
        float* col = gather_x ? mine : nullptr;
        float* grad = gather_dy ? mine + (gather_x ? rows * cols : 0) : nullptr;
        float* partial = mine + slot_floats - dw_floats;
        parallel_for(
            count,
            [&](std::int64_t i0, std::int64_t i1) {
              for (std::int64_t i = i0; i < i1; ++i) {
                const float* image = x.data() + (n0 + i) * image_floats;
                if (pointwise && gather_x) {
                  for (std::int64_t c = 0; c < g.C; ++c)
                    std::copy(image + c * pq, image + (c + 1) * pq, col + c * ld + i * pq);
                } else if (!pointwise) {
                  detail::conv2d_im2col(image, g, col + i * pq, ld);
                }
                if (gather_dy) {
                  const float* d = dy.data() + (n0 + i) * g.K * pq;
                  for (std::int64_t k = 0; k < g.K; ++k)
                    std::copy(d + k * pq, d + (k + 1) * pq, grad + k * ld + i * pq);
                }
              }
            },
            rows * pq);
        const float* a = gather_dy ? grad : dy.data() + n0 * g.K * pq;
        const float* b = gather_x ? col : x.data() + n0 * image_floats;
        for (std::int64_t gi = 0; gi < groups; ++gi)
          gemm(false, true, g.group_out(), g.patch(), ld, 1.0f, a + gi * g.group_out() * ld, ld,
               b + gi * g.patch() * ld, ld, 0.0f, partial + gi * g.group_out() * g.patch(), g.patch());
      }
    });
    for (std::int64_t slot = 0; slot < in_wave; ++slot) {  // in group order
      const float* partial = buffer.data() + slot * slot_floats + slot_floats - dw_floats;
      float* out = dw.data();
      if (g0 + slot == 0 && !accumulate) std::copy(partial, partial + dw_floats, out);
      else
        for (std::int64_t i = 0; i < dw_floats; ++i) out[i] += partial[i];
    }
  }
}

// Accumulates in double.
inline void conv2d_backward_bias(CView dy, View db) {
  const std::int64_t N = dy.shape()[0], K = dy.shape()[1], pq = dy.shape()[2] * dy.shape()[3];
  for (std::int64_t k = 0; k < K; ++k) {
    double s = 0.0;
    for (std::int64_t n = 0; n < N; ++n) {
      const float* p = dy.data() + (n * K + k) * pq;
      for (std::int64_t i = 0; i < pq; ++i) s += p[i];
    }
    db.data()[k] = static_cast<float>(s);
  }
}

}  // namespace cpu
}  // namespace fovea
