// fovea/cpu/contrastive.hpp: contrastive-loss element math shared by both twins (FOVEA_HD: the online
// log-sum-exp, row normalisation and its backward) and the CPU twins of NT-Xent, InfoNCE, their
// top-k accuracies and the key queue (contracts in ops/contrastive.hpp). Dot products and sums
// accumulate in double; similarities are computed on the fly, never stored as a matrix.
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "fovea/core/config.hpp"
#include "fovea/core/tensor.hpp"

namespace fovea {

namespace math {
// F.normalize's eps: rows are divided by max(||z||, kNormEps).
inline constexpr float kNormEps = 1e-12f;

// A running log-sum-exp: max m and sum l of exp(s - m) over the values added so far; merge combines
// two partial results (identity: m = -inf, l = 0). NaN inputs propagate.
struct OnlineLse {
  float m = -__builtin_huge_valf();
  float l = 0.0f;
  FOVEA_HD void add(float s) {
    if (s > m) {
      l = l * expf(m - s) + 1.0f;
      m = s;
    } else {
      l += expf(s - m);
    }
  }
  FOVEA_HD void merge(float om, float ol) {
    if (ol == 0.0f) return;
    if (l == 0.0f) {
      m = om;
      l = ol;
      return;
    }
    if (om > m) {
      l = l * expf(m - om) + ol;
      m = om;
    } else {
      l += ol * expf(om - m);
    }
  }
  FOVEA_HD float value() const { return m + logf(l); }
};

// 1 / max(||z||, eps) from the squared norm.
FOVEA_HD float inverse_norm(float sum_squares) {
  const float n = sqrtf(sum_squares);
  return 1.0f / (n > kNormEps ? n : kNormEps);
}
// Backward of zhat = z / max(||z||, eps): dz = (dzhat - zhat (zhat . dzhat)) / ||z|| when ||z|| > eps,
// dzhat / eps otherwise (the clamped denominator is a constant).
struct NormalizeBackward {
  float norm, dot;  // ||z||, zhat . dzhat
  FOVEA_HD float operator()(float zhat, float dzhat) const {
    return norm > kNormEps ? (dzhat - zhat * dot) / norm : dzhat / kNormEps;
  }
};
}  // namespace math

namespace detail {
inline double ct_dot_row(const float* a, const float* b, std::int64_t D) {
  double s = 0.0;
  for (std::int64_t d = 0; d < D; ++d) s += static_cast<double>(a[d]) * b[d];
  return s;
}
// Backward through the normalisation of each row, given dzhat (rows, D) in double.
inline void ct_normalize_backward_rows(CView z, CView zn, const std::vector<double>& dzhat, View dz) {
  const std::int64_t rows = z.shape()[0], D = z.shape()[1];
  for (std::int64_t i = 0; i < rows; ++i) {
    const float* zi = z.data() + i * D;
    const float* ni = zn.data() + i * D;
    const double* gi = dzhat.data() + i * D;
    double dot = 0.0;
    for (std::int64_t d = 0; d < D; ++d) dot += ni[d] * gi[d];
    const math::NormalizeBackward f{static_cast<float>(std::sqrt(ct_dot_row(zi, zi, D))), static_cast<float>(dot)};
    for (std::int64_t d = 0; d < D; ++d) dz.data()[i * D + d] = f(ni[d], static_cast<float>(gi[d]));
  }
}
}  // namespace detail

namespace cpu {

// zn = z / max(||z||, eps) row by row; z, zn (rows, D).
inline void l2_normalize_rows(CView z, View zn) {
  const std::int64_t rows = z.shape()[0], D = z.shape()[1];
  for (std::int64_t i = 0; i < rows; ++i) {
    const float* zi = z.data() + i * D;
    const float inv = math::inverse_norm(static_cast<float>(::fovea::detail::ct_dot_row(zi, zi, D)));
    for (std::int64_t d = 0; d < D; ++d) zn.data()[i * D + d] = zi[d] * inv;
  }
}

inline void nt_xent_forward(CView z, float tau, View loss, View row_lse, View znorm) {
  const std::int64_t M = z.shape()[0], D = z.shape()[1], N = M / 2;
  l2_normalize_rows(z, znorm);
  const float* zn = znorm.data();
  double total = 0.0;
  for (std::int64_t i = 0; i < M; ++i) {
    const std::int64_t pos = (i + N) % M;
    double m = -std::numeric_limits<double>::infinity(), s_pos = 0.0;
    std::vector<double> s(static_cast<std::size_t>(M));
    for (std::int64_t j = 0; j < M; ++j) {
      if (j == i) continue;
      s[j] = ::fovea::detail::ct_dot_row(zn + i * D, zn + j * D, D) / tau;
      m = std::max(m, s[j]);
      if (j == pos) s_pos = s[j];
    }
    double l = 0.0;
    for (std::int64_t j = 0; j < M; ++j)
      if (j != i) l += std::exp(s[j] - m);
    const double lse = m + std::log(l);
    row_lse.data()[i] = static_cast<float>(lse);
    total += lse - s_pos;
  }
  loss.data()[0] = static_cast<float>(total / static_cast<double>(M));
}

inline void nt_xent_backward(CView z, CView znorm, CView row_lse, float tau, float dloss, View dz) {
  const std::int64_t M = z.shape()[0], D = z.shape()[1], N = M / 2;
  const float* zn = znorm.data();
  const float* lse = row_lse.data();
  const double c = static_cast<double>(dloss) / (static_cast<double>(M) * tau);
  std::vector<double> g(static_cast<std::size_t>(M * D), 0.0);
  for (std::int64_t k = 0; k < M; ++k) {
    double* gk = g.data() + k * D;
    for (std::int64_t j = 0; j < M; ++j) {
      if (j == k) continue;
      const double s = ::fovea::detail::ct_dot_row(zn + k * D, zn + j * D, D) / tau;
      const double w = std::exp(s - lse[k]) + std::exp(s - lse[j]);
      for (std::int64_t d = 0; d < D; ++d) gk[d] += w * zn[j * D + d];
    }
    const float* zp = zn + ((k + N) % M) * D;
    for (std::int64_t d = 0; d < D; ++d) gk[d] = c * (gk[d] - 2.0 * zp[d]);
  }
  ::fovea::detail::ct_normalize_backward_rows(z, znorm, g, dz);
}

// Top-1 and top-5 of rows whose positive beats all but fewer than 1 (5) candidates: `count` of
// candidates with a strictly larger similarity.
inline void accuracy_from_counts(const std::vector<std::int64_t>& counts, View accuracy) {
  double top1 = 0.0, top5 = 0.0;
  for (std::int64_t c : counts) {
    top1 += c < 1 ? 1.0 : 0.0;
    top5 += c < 5 ? 1.0 : 0.0;
  }
  const double n = static_cast<double>(counts.size());
  accuracy.data()[0] = static_cast<float>(top1 / n);
  accuracy.data()[1] = static_cast<float>(top5 / n);
}

inline void contrastive_accuracy(CView znorm, View accuracy) {
  const std::int64_t M = znorm.shape()[0], D = znorm.shape()[1], N = M / 2;
  const float* zn = znorm.data();
  std::vector<std::int64_t> counts(static_cast<std::size_t>(M), 0);
  for (std::int64_t i = 0; i < M; ++i) {
    const std::int64_t pos = (i + N) % M;
    const double s_pos = ::fovea::detail::ct_dot_row(zn + i * D, zn + pos * D, D);
    for (std::int64_t j = 0; j < M; ++j)
      if (j != i && j != pos && ::fovea::detail::ct_dot_row(zn + i * D, zn + j * D, D) > s_pos) ++counts[i];
  }
  accuracy_from_counts(counts, accuracy);
}

inline void infonce_forward(CView q, CView k, CView queue, float tau, View loss, View row_lse, View qnorm,
                            View knorm) {
  const std::int64_t N = q.shape()[0], D = q.shape()[1], K = queue.shape()[0];
  l2_normalize_rows(q, qnorm);
  l2_normalize_rows(k, knorm);
  double total = 0.0;
  std::vector<double> s(static_cast<std::size_t>(K + 1));
  for (std::int64_t i = 0; i < N; ++i) {
    const float* qi = qnorm.data() + i * D;
    s[0] = ::fovea::detail::ct_dot_row(qi, knorm.data() + i * D, D) / tau;
    double m = s[0];
    for (std::int64_t j = 0; j < K; ++j) {
      s[j + 1] = ::fovea::detail::ct_dot_row(qi, queue.data() + j * D, D) / tau;
      m = std::max(m, s[j + 1]);
    }
    double l = 0.0;
    for (double v : s) l += std::exp(v - m);
    const double lse = m + std::log(l);
    row_lse.data()[i] = static_cast<float>(lse);
    total += lse - s[0];
  }
  loss.data()[0] = static_cast<float>(total / static_cast<double>(N));
}

inline void infonce_backward(CView q, CView qnorm, CView knorm, CView queue, CView row_lse, float tau, float dloss,
                             View dq) {
  const std::int64_t N = q.shape()[0], D = q.shape()[1], K = queue.shape()[0];
  const double c = static_cast<double>(dloss) / (static_cast<double>(N) * tau);
  std::vector<double> g(static_cast<std::size_t>(N * D), 0.0);
  for (std::int64_t i = 0; i < N; ++i) {
    const float* qi = qnorm.data() + i * D;
    const float* ki = knorm.data() + i * D;
    const double lse = row_lse.data()[i];
    double* gi = g.data() + i * D;
    const double p0 = std::exp(::fovea::detail::ct_dot_row(qi, ki, D) / tau - lse);
    for (std::int64_t d = 0; d < D; ++d) gi[d] = (p0 - 1.0) * ki[d];
    for (std::int64_t j = 0; j < K; ++j) {
      const float* qj = queue.data() + j * D;
      const double p = std::exp(::fovea::detail::ct_dot_row(qi, qj, D) / tau - lse);
      for (std::int64_t d = 0; d < D; ++d) gi[d] += p * qj[d];
    }
    for (std::int64_t d = 0; d < D; ++d) gi[d] *= c;
  }
  ::fovea::detail::ct_normalize_backward_rows(q, qnorm, g, dq);
}

inline void infonce_accuracy(CView qnorm, CView knorm, CView queue, View accuracy) {
  const std::int64_t N = qnorm.shape()[0], D = qnorm.shape()[1], K = queue.shape()[0];
  std::vector<std::int64_t> counts(static_cast<std::size_t>(N), 0);
  for (std::int64_t i = 0; i < N; ++i) {
    const float* qi = qnorm.data() + i * D;
    const double s_pos = ::fovea::detail::ct_dot_row(qi, knorm.data() + i * D, D);
    for (std::int64_t j = 0; j < K; ++j)
      if (::fovea::detail::ct_dot_row(qi, queue.data() + j * D, D) > s_pos) ++counts[i];
  }
  accuracy_from_counts(counts, accuracy);
}

inline void queue_enqueue(View queue, CView keys, std::int64_t head) {
  const std::int64_t K = queue.shape()[0], D = queue.shape()[1], N = keys.shape()[0];
  for (std::int64_t i = 0; i < N; ++i) {
    const std::int64_t slot = (head + i) % K;
    for (std::int64_t d = 0; d < D; ++d) queue.data()[slot * D + d] = keys.data()[i * D + d];
  }
}

}  // namespace cpu
}  // namespace fovea
