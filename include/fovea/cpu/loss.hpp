// fovea/cpu/loss.hpp: cross-entropy and MSE element math shared by both twins (FOVEA_HD) and the CPU
// twins (contracts in ops/loss.hpp). Row sums and the batch mean accumulate in double.
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>

#include "fovea/core/config.hpp"
#include "fovea/core/tensor.hpp"
#include "fovea/cpu/gemm.hpp"

namespace fovea {

namespace math {
// The class index a float label holds, or -1 when it is not an integer in [0, classes).
FOVEA_HD std::int64_t class_index(float label, std::int64_t classes) {
  if (!(label >= 0.0f) || !(label < static_cast<float>(classes)) || label != floorf(label)) return -1;
  return static_cast<std::int64_t>(label);
}

// One row's share of the cross-entropy numerator: (1 - eps) w_y (lse - x_y) + (eps / K) smooth, where
// smooth = sum_j w_j (lse - x_j) (PyTorch's label-smoothing term, weighted when weights are given).
struct CrossEntropyRow {
  float keep;    // 1 - eps
  float spread;  // eps / K
  FOVEA_HD float operator()(float lse, float x_label, float w_label, float smooth) const {
    return keep * w_label * (lse - x_label) + spread * smooth;
  }
};

// d loss / d x_k of one row: scale [(1 - eps) w_y (p_k - [k == y]) + (eps / K) (p_k W - w_k)], with
// p = softmax(x), W = sum_j w_j and scale = dloss / sum_n w_{y_n}.
struct CrossEntropyGrad {
  float scale, keep, spread, w_label, w_all;
  FOVEA_HD float operator()(float p, bool is_label, float w_k) const {
    return scale * (keep * w_label * (p - (is_label ? 1.0f : 0.0f)) + spread * (p * w_all - w_k));
  }
};

struct SquaredError {  // inputs (pred, target)
  FOVEA_HD float operator()(float p, float t) const {
    const float d = p - t;
    return d * d;
  }
};
struct SquaredErrorGrad {  // inputs (pred, target): scale (pred - target), scale = 2 dloss / N
  float scale;
  FOVEA_HD float operator()(float p, float t) const { return scale * (p - t); }
};
}  // namespace math

namespace detail {
// Class index of every label; throws when one is not an integer in [0, K).
inline std::int64_t ce_checked_class(const float* labels, std::int64_t n, std::int64_t K) {
  const std::int64_t y = math::class_index(labels[n], K);
  FOVEA_CHECK(y >= 0, "cross_entropy: label ", labels[n], " of row ", n, " is not an integer class index in [0, ", K,
              ")");
  return y;
}
inline float ce_class_weight(CView weights, std::int64_t k) {
  return is_present(weights) ? weights.data()[k] : 1.0f;
}
// Row maximum and log-sum-exp (sum in double).
inline float ce_row_lse(const float* x, std::int64_t K) {
  float m = -std::numeric_limits<float>::infinity();
  for (std::int64_t j = 0; j < K; ++j) m = (x[j] > m || x[j] != x[j]) ? x[j] : m;
  double s = 0.0;
  for (std::int64_t j = 0; j < K; ++j) s += std::exp(static_cast<double>(x[j]) - m);
  return static_cast<float>(m + std::log(s));
}
}  // namespace detail

namespace cpu {

inline void cross_entropy_forward(CView logits, CView labels, CView weights, float smoothing, View loss) {
  const std::int64_t N = logits.shape()[0], K = logits.shape()[1];
  const math::CrossEntropyRow row{1.0f - smoothing, smoothing / static_cast<float>(K)};
  double numer = 0.0, denom = 0.0;
  for (std::int64_t n = 0; n < N; ++n) {
    const std::int64_t y = ::fovea::detail::ce_checked_class(labels.data(), n, K);
    const float* x = logits.data() + n * K;
    const float lse = ::fovea::detail::ce_row_lse(x, K);
    double smooth = 0.0;
    for (std::int64_t j = 0; j < K; ++j) smooth += static_cast<double>(::fovea::detail::ce_class_weight(weights, j)) * (lse - x[j]);
    const float wy = ::fovea::detail::ce_class_weight(weights, y);
    numer += row(lse, x[y], wy, static_cast<float>(smooth));
    denom += wy;
  }
  loss.data()[0] = static_cast<float>(numer / denom);
}

inline void cross_entropy_backward(CView logits, CView labels, CView weights, float smoothing, float dloss,
                                   View dlogits) {
  const std::int64_t N = logits.shape()[0], K = logits.shape()[1];
  double denom = 0.0, w_all = 0.0;
  for (std::int64_t n = 0; n < N; ++n) denom += ::fovea::detail::ce_class_weight(weights, ::fovea::detail::ce_checked_class(labels.data(), n, K));
  for (std::int64_t k = 0; k < K; ++k) w_all += ::fovea::detail::ce_class_weight(weights, k);
  for (std::int64_t n = 0; n < N; ++n) {
    const std::int64_t y = ::fovea::detail::ce_checked_class(labels.data(), n, K);
    const float* x = logits.data() + n * K;
    const float lse = ::fovea::detail::ce_row_lse(x, K);
    const math::CrossEntropyGrad g{static_cast<float>(dloss / denom), 1.0f - smoothing,
                                   smoothing / static_cast<float>(K), ::fovea::detail::ce_class_weight(weights, y),
                                   static_cast<float>(w_all)};
    for (std::int64_t k = 0; k < K; ++k)
      dlogits.data()[n * K + k] = g(std::exp(x[k] - lse), k == y, ::fovea::detail::ce_class_weight(weights, k));
  }
}

inline void mse_forward(CView pred, CView target, View loss) {
  const std::int64_t n = pred.numel();
  const math::SquaredError f;
  double s = 0.0;
  for (std::int64_t i = 0; i < n; ++i) s += f(pred.data()[i], target.data()[i]);
  loss.data()[0] = static_cast<float>(s / static_cast<double>(n));
}

inline void mse_backward(CView pred, CView target, float dloss, View dpred) {
  const std::int64_t n = pred.numel();
  const math::SquaredErrorGrad f{2.0f * dloss / static_cast<float>(n)};
  for (std::int64_t i = 0; i < n; ++i) dpred.data()[i] = f(pred.data()[i], target.data()[i]);
}

}  // namespace cpu
}  // namespace fovea
