// fovea/cpu/softmax.hpp: softmax element math shared by both twins (FOVEA_HD) and the CPU twins
// (contracts in ops/softmax.hpp). Row sums accumulate in double.
#pragma once

#include <cmath>
#include <cstdint>

#include "fovea/core/config.hpp"
#include "fovea/core/tensor.hpp"
#include "fovea/ops/math.hpp"

namespace fovea {

namespace math {
// exp(x - max): the max-subtracted exponential of a row.
struct SoftmaxExp {
  float max;
  FOVEA_HD float operator()(float x) const { return expf(x - max); }
};
struct SoftmaxOutput {  // exp(x - max) / sum
  float max, sum;
  FOVEA_HD float operator()(float x) const { return expf(x - max) / sum; }
};
struct LogSoftmaxOutput {  // x - max - log(sum)
  float max, log_sum;
  FOVEA_HD float operator()(float x) const { return x - max - log_sum; }
};
struct SoftmaxBackward {  // inputs (y, dy): y * (dy - sum(dy * y))
  float dot;
  FOVEA_HD float operator()(float y, float dy) const { return y * (dy - dot); }
};
struct LogSoftmaxBackward {  // inputs (y, dy): dy - exp(y) * sum(dy)
  float sum_dy;
  FOVEA_HD float operator()(float y, float dy) const { return dy - expf(y) * sum_dy; }
};
}  // namespace math

namespace detail {
// Rows and row length of a softmax input: (N, K) or (N, K, 1, 1).
struct SoftmaxGeometry {
  std::int64_t rows = 0, k = 0;
};
inline SoftmaxGeometry softmax_geometry(const Shape& s) { return {s.n(), s.c()}; }
}  // namespace detail

namespace cpu {

inline void softmax_rows(CView x, View y, bool log) {
  const auto g = detail::softmax_geometry(x.shape());
  for (std::int64_t r = 0; r < g.rows; ++r) {
    const float* xr = x.data() + r * g.k;
    float* yr = y.data() + r * g.k;
    const math::MaxReduce max_op;
    float m = math::MaxReduce::identity();
    for (std::int64_t j = 0; j < g.k; ++j) m = max_op(xr[j], m);
    const math::SoftmaxExp e{m};
    double sum = 0.0;
    for (std::int64_t j = 0; j < g.k; ++j) sum += e(xr[j]);
    if (log) {
      const math::LogSoftmaxOutput f{m, static_cast<float>(std::log(sum))};
      for (std::int64_t j = 0; j < g.k; ++j) yr[j] = f(xr[j]);
    } else {
      const math::SoftmaxOutput f{m, static_cast<float>(sum)};
      for (std::int64_t j = 0; j < g.k; ++j) yr[j] = f(xr[j]);
    }
  }
}

inline void softmax_forward(CView x, View y) { softmax_rows(x, y, false); }
inline void log_softmax_forward(CView x, View y) { softmax_rows(x, y, true); }

inline void softmax_backward(CView y, CView dy, View dx) {
  const auto g = detail::softmax_geometry(y.shape());
  for (std::int64_t r = 0; r < g.rows; ++r) {
    const float *yr = y.data() + r * g.k, *dyr = dy.data() + r * g.k;
    double dot = 0.0;
    for (std::int64_t j = 0; j < g.k; ++j) dot += static_cast<double>(yr[j]) * dyr[j];
    const math::SoftmaxBackward f{static_cast<float>(dot)};
    for (std::int64_t j = 0; j < g.k; ++j) dx.data()[r * g.k + j] = f(yr[j], dyr[j]);
  }
}

inline void log_softmax_backward(CView y, CView dy, View dx) {
  const auto g = detail::softmax_geometry(y.shape());
  for (std::int64_t r = 0; r < g.rows; ++r) {
    const float *yr = y.data() + r * g.k, *dyr = dy.data() + r * g.k;
    double sum = 0.0;
    for (std::int64_t j = 0; j < g.k; ++j) sum += dyr[j];
    const math::LogSoftmaxBackward f{static_cast<float>(sum)};
    for (std::int64_t j = 0; j < g.k; ++j) dx.data()[r * g.k + j] = f(yr[j], dyr[j]);
  }
}

}  // namespace cpu
}  // namespace fovea
