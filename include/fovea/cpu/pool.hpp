// fovea/cpu/pool.hpp: pooling parameters and window math shared by both twins (FOVEA_HD), and the CPU
// twins of the pooling ops (contracts in ops/pool.hpp).
#pragma once

#include <algorithm>
#include <cstdint>

#include "fovea/core/config.hpp"
#include "fovea/core/parallel.hpp"
#include "fovea/core/tensor.hpp"

namespace fovea {

// A square pooling window: kernel x kernel, moved by stride, over an input padded by padding on
// every side (floor output size, PyTorch's ceil_mode = false; dilation 1).
struct PoolParams {
  int kernel = 2;
  int stride = 2;
  int padding = 0;
};

namespace detail {
// Planes of one pooling call and their sizes (trivially copyable, passed to kernels by value).
struct PoolGeometry {
  std::int64_t planes = 0;  // N * C
  int h = 0, w = 0, oh = 0, ow = 0;
  int k = 1, s = 1, p = 0;
};
inline std::int64_t pool_output_size(std::int64_t in, const PoolParams& p) {
  return (in + 2 * p.padding - p.kernel) / p.stride + 1;
}
inline PoolGeometry pool_geometry(const Shape& x, const PoolParams& p) {
  PoolGeometry g;
  g.planes = x.n() * x.c();
  g.h = static_cast<int>(x.h());
  g.w = static_cast<int>(x.w());
  g.oh = static_cast<int>(pool_output_size(x.h(), p));
  g.ow = static_cast<int>(pool_output_size(x.w(), p));
  g.k = p.kernel;
  g.s = p.stride;
  g.p = p.padding;
  return g;
}
}  // namespace detail

namespace math {

// Index (row * w + col) within the plane of the first maximum of output (oh, ow)'s window, scanning
// rows then columns; padding never wins; a NaN wins (the last NaN, as in PyTorch).
FOVEA_HD int max_pool_argmax(const float* plane, const detail::PoolGeometry& g, int oh, int ow) {
  const int h0 = oh * g.s - g.p, w0 = ow * g.s - g.p;
  const int hb = h0 < 0 ? 0 : h0, wb = w0 < 0 ? 0 : w0;
  const int he = h0 + g.k < g.h ? h0 + g.k : g.h, we = w0 + g.k < g.w ? w0 + g.k : g.w;
  int best = hb * g.w + wb;
  float best_v = -__builtin_huge_valf();
  for (int r = hb; r < he; ++r) {
    for (int c = wb; c < we; ++c) {
      const float v = plane[r * g.w + c];
      if (v > best_v || v != v) {
        best_v = v;
        best = r * g.w + c;
      }
    }
  }
  return best;
}

// Mean of output (oh, ow)'s window, padding counted as zeros (count_include_pad = true).
FOVEA_HD float avg_pool_window(const float* plane, const detail::PoolGeometry& g, int oh, int ow) {
  const int h0 = oh * g.s - g.p, w0 = ow * g.s - g.p;
  const int hb = h0 < 0 ? 0 : h0, wb = w0 < 0 ? 0 : w0;
  const int he = h0 + g.k < g.h ? h0 + g.k : g.h, we = w0 + g.k < g.w ? w0 + g.k : g.w;
  float sum = 0.0f;
  for (int r = hb; r < he; ++r)
    for (int c = wb; c < we; ++c) sum += plane[r * g.w + c];
  return sum / static_cast<float>(g.k * g.k);
}

// Outputs [first, last] along one axis whose windows contain input position i (empty if last < first).
FOVEA_HD void pool_outputs_covering(int i, int k, int s, int p, int out, int& first, int& last) {
  const int hi = i + p;  // position in the padded input
  first = hi < k ? 0 : (hi - k) / s + 1;
  last = hi / s;
  if (last > out - 1) last = out - 1;
}

// dx at input (ih, iw): the sum, in output raster order, of dy over the outputs whose first maximum
// is this input. A gather, so both twins are deterministic and write every element once.
FOVEA_HD float max_pool_input_grad(const float* x_plane, const float* dy_plane,
                                   const detail::PoolGeometry& g, int ih, int iw) {
  int oh0, oh1, ow0, ow1;
  pool_outputs_covering(ih, g.k, g.s, g.p, g.oh, oh0, oh1);
  pool_outputs_covering(iw, g.k, g.s, g.p, g.ow, ow0, ow1);
  const int self = ih * g.w + iw;
  float sum = 0.0f;
  for (int oh = oh0; oh <= oh1; ++oh)
    for (int ow = ow0; ow <= ow1; ++ow)
      if (max_pool_argmax(x_plane, g, oh, ow) == self) sum += dy_plane[oh * g.ow + ow];
  return sum;
}

// dx at input (ih, iw) of average pooling: sum of dy over covering outputs, divided by k * k.
FOVEA_HD float avg_pool_input_grad(const float* dy_plane, const detail::PoolGeometry& g, int ih, int iw) {
  int oh0, oh1, ow0, ow1;
  pool_outputs_covering(ih, g.k, g.s, g.p, g.oh, oh0, oh1);
  pool_outputs_covering(iw, g.k, g.s, g.p, g.ow, ow0, ow1);
  float sum = 0.0f;
  for (int oh = oh0; oh <= oh1; ++oh)
    for (int ow = ow0; ow <= ow1; ++ow) sum += dy_plane[oh * g.ow + ow];
  return sum / static_cast<float>(g.k * g.k);
}

}  // namespace math

namespace cpu {

// Planes (N x C) run in parallel, each as in a serial loop.
inline void max_pool2d_forward(CView x, View y, const PoolParams& params) {
  const auto g = detail::pool_geometry(x.shape(), params);
  parallel_for(
      g.planes,
      [&](std::int64_t first, std::int64_t last) {
        for (std::int64_t pl = first; pl < last; ++pl) {
          const float* xp = x.data() + pl * g.h * g.w;
          float* yp = y.data() + pl * g.oh * g.ow;
          for (int oh = 0; oh < g.oh; ++oh)
            for (int ow = 0; ow < g.ow; ++ow) yp[oh * g.ow + ow] = xp[math::max_pool_argmax(xp, g, oh, ow)];
        }
      },
      static_cast<std::int64_t>(g.oh) * g.ow * g.k * g.k);
}

// A scatter in output raster order: each input receives the dy of the outputs whose first maximum
// it is, added to 0 in the order math::max_pool_input_grad (the CUDA twin's gather) adds them, so
// the sums are bitwise the same, with each window's maximum found once instead of once per input
// it covers (9 times as often for ResNet's 3x3 stride-2 pool).
inline void max_pool2d_backward(CView x, CView dy, View dx, const PoolParams& params) {
  const auto g = detail::pool_geometry(x.shape(), params);
  parallel_for(
      g.planes,
      [&](std::int64_t first, std::int64_t last) {
        for (std::int64_t pl = first; pl < last; ++pl) {
          const float* xp = x.data() + pl * g.h * g.w;
          const float* dyp = dy.data() + pl * g.oh * g.ow;
          float* dxp = dx.data() + pl * g.h * g.w;
          std::fill(dxp, dxp + static_cast<std::int64_t>(g.h) * g.w, 0.0f);
          for (int oh = 0; oh < g.oh; ++oh)
            for (int ow = 0; ow < g.ow; ++ow)
              dxp[math::max_pool_argmax(xp, g, oh, ow)] += dyp[oh * g.ow + ow];
        }
      },
      static_cast<std::int64_t>(g.oh) * g.ow * g.k * g.k);
}

inline void avg_pool2d_forward(CView x, View y, const PoolParams& params) {
  const auto g = detail::pool_geometry(x.shape(), params);
  for (std::int64_t pl = 0; pl < g.planes; ++pl) {
    const float* xp = x.data() + pl * g.h * g.w;
    float* yp = y.data() + pl * g.oh * g.ow;
    for (int oh = 0; oh < g.oh; ++oh)
      for (int ow = 0; ow < g.ow; ++ow) yp[oh * g.ow + ow] = math::avg_pool_window(xp, g, oh, ow);
  }
}

inline void avg_pool2d_backward(CView dy, View dx, const PoolParams& params) {
  const auto g = detail::pool_geometry(dx.shape(), params);
  for (std::int64_t pl = 0; pl < g.planes; ++pl) {
    const float* dyp = dy.data() + pl * g.oh * g.ow;
    float* dxp = dx.data() + pl * g.h * g.w;
    for (int ih = 0; ih < g.h; ++ih)
      for (int iw = 0; iw < g.w; ++iw) dxp[ih * g.w + iw] = math::avg_pool_input_grad(dyp, g, ih, iw);
  }
}

// Global average pooling: CPU sums in double.
inline void global_avg_pool_forward(CView x, View y) {
  const std::int64_t planes = x.shape().n() * x.shape().c(), hw = x.shape().h() * x.shape().w();
  for (std::int64_t pl = 0; pl < planes; ++pl) {
    double sum = 0.0;
    for (std::int64_t k = 0; k < hw; ++k) sum += x.data()[pl * hw + k];
    y.data()[pl] = static_cast<float>(sum / static_cast<double>(hw));
  }
}

inline void global_avg_pool_backward(CView dy, View dx) {
  const std::int64_t planes = dx.shape().n() * dx.shape().c(), hw = dx.shape().h() * dx.shape().w();
  const float inv = 1.0f / static_cast<float>(hw);
  for (std::int64_t pl = 0; pl < planes; ++pl)
    for (std::int64_t k = 0; k < hw; ++k) dx.data()[pl * hw + k] = dy.data()[pl] * inv;
}

}  // namespace cpu
}  // namespace fovea
