// fovea/cpu/batch_norm.hpp: batch-norm element math shared by both twins, the channel geometry, and
// the CPU twins (contracts in ops/batch_norm.hpp). Statistics accumulate in double, over 8 lanes
// (detail::LaneSum: each image's plane of a channel in lanes by position, the lanes combined at the end).
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#include "fovea/core/config.hpp"
#include "fovea/core/parallel.hpp"
#include "fovea/core/tensor.hpp"
#include "fovea/cpu/lane_sum.hpp"

namespace fovea {

namespace math {
// y = (x - mean) * invstd * gamma + beta.
struct BatchNormNormalize {
  FOVEA_HD float operator()(float x, float mean, float invstd, float gamma, float beta) const {
    return (x - mean) * invstd * gamma + beta;
  }
};
// 1 / sqrt(var + eps), for eval mode (running variance).
struct BatchNormInvstd {
  float eps;
  FOVEA_HD float operator()(float var) const { return 1.0f / sqrtf(var + eps); }
};
// running = momentum * batch + (1 - momentum) * running (PyTorch's order).
struct RunningStatUpdate {
  float momentum;
  FOVEA_HD float operator()(float running, float batch) const {
    return momentum * batch + (1.0f - momentum) * running;
  }
};
// dx through the batch statistics, given per channel sum_dy = sum(dy) and
// sum_dy_xmu = sum(dy * (x - mean)) over the n = N*H*W values of the channel.
struct BatchNormInputGrad {
  FOVEA_HD float operator()(float x, float dy, float mean, float invstd, float gamma, float sum_dy,
                            float sum_dy_xmu, float inv_n) const {
    const float k = sum_dy_xmu * invstd * invstd * inv_n;
    return (dy - sum_dy * inv_n - (x - mean) * k) * invstd * gamma;
  }
};
}  // namespace math

namespace detail {
// An (N, C, H, W) or (N, C) tensor seen per channel: N planes of hw contiguous values per channel.
struct ChannelGeometry {
  std::int64_t n = 1, c = 1, hw = 1;
  std::int64_t per_channel() const { return n * hw; }
};
inline ChannelGeometry channel_geometry(const Shape& s) { return {s.n(), s.c(), s.h() * s.w()}; }
}  // namespace detail

namespace detail {

// The per-channel loops of the CPU twin, in two variants that give the same bits: `scalar` (the
// compiler's baseline code) and `avx2` (GCC/Clang vector extensions compiled for AVX2, picked at run
// time when the CPU has it). Same bits because every value takes the same operations in the same
// order: a sum's term k of a plane goes to lane k % 32 (BnLaneSum; the AVX2 variant holds the lanes
// in 8 vectors of 4 doubles), and the AVX2 variant is compiled without FMA, so nothing is
// contracted. (A build whose baseline has FMA, e.g. -march=native, lets the compiler contract the
// scalar variant, which then differs in the last bits.) 32 lanes because each lane is one chain of dependent
// adds: with 8, the adds' latency held a sum to 2 values per cycle, below the rate of L2 (where a channel's
// planes stay between its passes). A channel's values are N planes of hw floats, plane i at base + i *
// stride.
enum class BnIsa { scalar, avx2 };

#if (defined(__GNUC__) || defined(__clang__)) && (defined(__x86_64__) || defined(__i386__))
#define FOVEA_BN_X86 1
#else
#define FOVEA_BN_X86 0
#endif

inline BnIsa bn_best_isa() {
#if FOVEA_BN_X86
  static const BnIsa best = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") ? BnIsa::avx2 : BnIsa::scalar;
  }();
  return best;
#else
  return BnIsa::scalar;
#endif
}

struct BnPlanes {
  std::int64_t n = 0, stride = 0, hw = 0;
};

using BnLaneSum = BasicLaneSum<32>;

inline double bn_sum_scalar(const float* x, BnPlanes g) {
  BnLaneSum sum;
  for (std::int64_t i = 0; i < g.n; ++i) {
    const float* p = x + i * g.stride;
    sum.add(g.hw, [p](std::int64_t k) { return p[k]; });
  }
  return sum.total();
}
inline double bn_squares_scalar(const float* x, BnPlanes g, double mean) {
  BnLaneSum sum;
  for (std::int64_t i = 0; i < g.n; ++i) {
    const float* p = x + i * g.stride;
    sum.add(g.hw, [p, mean](std::int64_t k) { return (p[k] - mean) * (p[k] - mean); });
  }
  return sum.total();
}
inline void bn_normalize_scalar(const float* x, float* y, BnPlanes g, float mean, float invstd, float gamma,
                                float beta) {
  const math::BatchNormNormalize normalize;
  for (std::int64_t i = 0; i < g.n; ++i) {
    const float* p = x + i * g.stride;
    float* q = y + i * g.stride;
    for (std::int64_t k = 0; k < g.hw; ++k) q[k] = normalize(p[k], mean, invstd, gamma, beta);
  }
}
// sum(dy) and sum(dy * (x - mean)), in double.
inline void bn_grad_sums_scalar(const float* x, const float* dy, BnPlanes g, float mean, double& sum_dy,
                                double& sum_dy_xmu) {
  BnLaneSum dy_sum, dy_xmu_sum;
  for (std::int64_t i = 0; i < g.n; ++i) {
    const float *d = dy + i * g.stride, *xs = x + i * g.stride;
    dy_sum.add(g.hw, [d](std::int64_t k) { return d[k]; });
    dy_xmu_sum.add(g.hw, [d, xs, mean](std::int64_t k) {
      return static_cast<double>(d[k]) * (static_cast<double>(xs[k]) - mean);
    });
  }
  sum_dy = dy_sum.total();
  sum_dy_xmu = dy_xmu_sum.total();
}
inline void bn_input_grad_scalar(const float* x, const float* dy, float* dx, BnPlanes g, float mean,
                                 float invstd, float gamma, float sum_dy, float sum_dy_xmu, float inv_n) {
  const math::BatchNormInputGrad input_grad;
  for (std::int64_t i = 0; i < g.n; ++i) {
    const std::int64_t o = i * g.stride;
    for (std::int64_t k = 0; k < g.hw; ++k)
      dx[o + k] = input_grad(x[o + k], dy[o + k], mean, invstd, gamma, sum_dy, sum_dy_xmu, inv_n);
  }
}

#if FOVEA_BN_X86
typedef float BnF4U __attribute__((vector_size(16), aligned(4), may_alias));
typedef float BnF8 __attribute__((vector_size(32)));
typedef float BnF8U __attribute__((vector_size(32), aligned(4), may_alias));
typedef double BnD4 __attribute__((vector_size(32)));

// Without "fma": (a * b) + c stays a multiply and an add, as in the scalar variant.
#define FOVEA_BN_AVX2 __attribute__((target("avx2")))

// BnLaneSum's 32 double lanes in 8 AVX vectors: v[i] holds lanes 4i to 4i + 3.
struct BnLanes {
  BnD4 v[8] = {};
  // Adds term(j) to lane j for j < count (< 32), a plane's tail; the other lanes get -0.0, which added
  // to any double leaves it unchanged (+0.0 would turn a -0.0 lane into +0.0).
  template <class Term>
  FOVEA_BN_AVX2 void add_tail(std::int64_t count, Term&& term) {
    double t[32];
    for (std::int64_t j = 0; j < 32; ++j) t[j] = j < count ? term(j) : -0.0;
    for (int i = 0; i < 8; ++i) {
      BnD4 a;
      std::memcpy(&a, t + 4 * i, sizeof a);
      v[i] += a;
    }
  }
  FOVEA_BN_AVX2 double total() const {
    double l[32];
    std::memcpy(l, v, sizeof l);
    return lane_tree(l, 32);
  }
};
// 4 floats at p widened to double.
FOVEA_BN_AVX2 inline BnD4 bn_load_d4(const float* p) {
  return __builtin_convertvector(*reinterpret_cast<const BnF4U*>(p), BnD4);
}

FOVEA_BN_AVX2 inline double bn_sum_avx2(const float* x, BnPlanes g) {
  BnLanes acc;
  const std::int64_t body = g.hw / 32 * 32;
  for (std::int64_t i = 0; i < g.n; ++i) {
    const float* p = x + i * g.stride;
    for (std::int64_t k = 0; k < body; k += 32)
      for (int j = 0; j < 8; ++j) acc.v[j] += bn_load_d4(p + k + 4 * j);
    if (body < g.hw)
      acc.add_tail(g.hw - body, [p = p + body](std::int64_t j) { return static_cast<double>(p[j]); });
  }
  return acc.total();
}
FOVEA_BN_AVX2 inline double bn_squares_avx2(const float* x, BnPlanes g, double mean) {
  BnLanes acc;
  const std::int64_t body = g.hw / 32 * 32;
  for (std::int64_t i = 0; i < g.n; ++i) {
    const float* p = x + i * g.stride;
    for (std::int64_t k = 0; k < body; k += 32)
      for (int j = 0; j < 8; ++j) {
        const BnD4 d = bn_load_d4(p + k + 4 * j) - mean;
        acc.v[j] += d * d;
      }
    if (body < g.hw)
      acc.add_tail(g.hw - body, [p = p + body, mean](std::int64_t j) {
        const double d = p[j] - mean;
        return d * d;
      });
  }
  return acc.total();
}
FOVEA_BN_AVX2 inline void bn_normalize_avx2(const float* x, float* y, BnPlanes g, float mean, float invstd,
                                            float gamma, float beta) {
  const std::int64_t body = g.hw / 8 * 8;
  for (std::int64_t i = 0; i < g.n; ++i) {
    const float* p = x + i * g.stride;
    float* q = y + i * g.stride;
    for (std::int64_t k = 0; k < body; k += 8) {
      const BnF8 v = *reinterpret_cast<const BnF8U*>(p + k);
      *reinterpret_cast<BnF8U*>(q + k) = (v - mean) * invstd * gamma + beta;
    }
    for (std::int64_t k = body; k < g.hw; ++k) q[k] = (p[k] - mean) * invstd * gamma + beta;
  }
}
FOVEA_BN_AVX2 inline void bn_grad_sums_avx2(const float* x, const float* dy, BnPlanes g, float mean,
                                            double& sum_dy, double& sum_dy_xmu) {
  BnLanes s1, s2;
  const double m = mean;
  const std::int64_t body = g.hw / 32 * 32;
  for (std::int64_t i = 0; i < g.n; ++i) {
    const float *d = dy + i * g.stride, *xs = x + i * g.stride;
    for (std::int64_t k = 0; k < body; k += 32)
      for (int j = 0; j < 8; ++j) {
        const BnD4 dv = bn_load_d4(d + k + 4 * j);
        s1.v[j] += dv;
        s2.v[j] += dv * (bn_load_d4(xs + k + 4 * j) - m);
      }
    if (body < g.hw) {
      s1.add_tail(g.hw - body, [d = d + body](std::int64_t j) { return static_cast<double>(d[j]); });
      s2.add_tail(g.hw - body, [d = d + body, xs = xs + body, m](std::int64_t j) {
        return static_cast<double>(d[j]) * (static_cast<double>(xs[j]) - m);
      });
    }
  }
  sum_dy = s1.total();
  sum_dy_xmu = s2.total();
}
FOVEA_BN_AVX2 inline void bn_input_grad_avx2(const float* x, const float* dy, float* dx, BnPlanes g,
                                             float mean, float invstd, float gamma, float sum_dy,
                                             float sum_dy_xmu, float inv_n) {
  // math::BatchNormInputGrad with its per-channel factors taken out of the loop (the same operations).
  const float k_xmu = sum_dy_xmu * invstd * invstd * inv_n, mean_dy = sum_dy * inv_n;
  const std::int64_t body = g.hw / 8 * 8;
  for (std::int64_t i = 0; i < g.n; ++i) {
    const std::int64_t o = i * g.stride;
    for (std::int64_t k = 0; k < body; k += 8) {
      const BnF8 dv = *reinterpret_cast<const BnF8U*>(dy + o + k);
      const BnF8 xv = *reinterpret_cast<const BnF8U*>(x + o + k);
      *reinterpret_cast<BnF8U*>(dx + o + k) = (dv - mean_dy - (xv - mean) * k_xmu) * invstd * gamma;
    }
    for (std::int64_t k = body; k < g.hw; ++k)
      dx[o + k] = (dy[o + k] - mean_dy - (x[o + k] - mean) * k_xmu) * invstd * gamma;
  }
}
#undef FOVEA_BN_AVX2
#define FOVEA_BN_PICK(isa, name, ...) \
  ((isa) == ::fovea::detail::BnIsa::avx2 ? name##_avx2(__VA_ARGS__) : name##_scalar(__VA_ARGS__))
#else
#define FOVEA_BN_PICK(isa, name, ...) name##_scalar(__VA_ARGS__)
#endif

}  // namespace detail

namespace cpu {

// The CPU twins; `isa` picks the variant of the per-channel loops (the same bits either way).
inline void batch_norm_forward_training(CView x, CView gamma, CView beta, View running_mean, View running_var,
                                        float momentum, float eps, View y, View saved_mean, View saved_invstd,
                                        detail::BnIsa isa = detail::bn_best_isa()) {
  const auto g = detail::channel_geometry(x.shape());
  const detail::BnPlanes planes{g.n, g.c * g.hw, g.hw};
  const double count = static_cast<double>(g.per_channel());
  const math::RunningStatUpdate update{momentum};
  parallel_for(
      g.c,
      [&](std::int64_t first, std::int64_t last) {
        for (std::int64_t c = first; c < last; ++c) {
          const float* xc = x.data() + c * g.hw;
          const double mean = FOVEA_BN_PICK(isa, detail::bn_sum, xc, planes) / count;
          const double m2 = FOVEA_BN_PICK(isa, detail::bn_squares, xc, planes, mean);
          const float mean_f = static_cast<float>(mean);
          const float invstd = static_cast<float>(1.0 / std::sqrt(m2 / count + eps));
          saved_mean.data()[c] = mean_f;
          saved_invstd.data()[c] = invstd;
          running_mean.data()[c] = update(running_mean.data()[c], mean_f);
          running_var.data()[c] = update(running_var.data()[c], static_cast<float>(m2 / (count - 1.0)));
          FOVEA_BN_PICK(isa, detail::bn_normalize, xc, y.data() + c * g.hw, planes, mean_f, invstd,
                        gamma.data()[c], beta.data()[c]);
        }
      },
      3 * g.per_channel());
}

inline void batch_norm_forward_inference(CView x, CView gamma, CView beta, CView running_mean,
                                         CView running_var, float eps, View y) {
  const auto g = detail::channel_geometry(x.shape());
  const math::BatchNormNormalize normalize;
  const math::BatchNormInvstd invstd_of{eps};
  parallel_for(
      g.n,
      [&](std::int64_t first, std::int64_t last) {
        for (std::int64_t n = first; n < last; ++n) {
          for (std::int64_t c = 0; c < g.c; ++c) {
            const float mean = running_mean.data()[c], invstd = invstd_of(running_var.data()[c]);
            const float gc = gamma.data()[c], bc = beta.data()[c];
            const std::int64_t base = (n * g.c + c) * g.hw;
            for (std::int64_t k = 0; k < g.hw; ++k)
              y.data()[base + k] = normalize(x.data()[base + k], mean, invstd, gc, bc);
          }
        }
      },
      g.c * g.hw);
}

inline void batch_norm_backward(CView x, CView dy, CView gamma, CView saved_mean, CView saved_invstd, View dx,
                                View dgamma, View dbeta, detail::BnIsa isa = detail::bn_best_isa()) {
  const auto g = detail::channel_geometry(x.shape());
  const detail::BnPlanes planes{g.n, g.c * g.hw, g.hw};
  const float inv_n = 1.0f / static_cast<float>(g.per_channel());
  parallel_for(
      g.c,
      [&](std::int64_t first, std::int64_t last) {
        for (std::int64_t c = first; c < last; ++c) {
          const float mean = saved_mean.data()[c], invstd = saved_invstd.data()[c];
          const float *xc = x.data() + c * g.hw, *dyc = dy.data() + c * g.hw;
          double sum_dy = 0.0, sum_dy_xmu = 0.0;
          FOVEA_BN_PICK(isa, detail::bn_grad_sums, xc, dyc, planes, mean, sum_dy, sum_dy_xmu);
          dbeta.data()[c] = static_cast<float>(sum_dy);
          dgamma.data()[c] = static_cast<float>(sum_dy_xmu * invstd);
          FOVEA_BN_PICK(isa, detail::bn_input_grad, xc, dyc, dx.data() + c * g.hw, planes, mean, invstd,
                        gamma.data()[c], static_cast<float>(sum_dy), static_cast<float>(sum_dy_xmu), inv_n);
        }
      },
      3 * g.per_channel());
}

#undef FOVEA_BN_PICK

}  // namespace cpu
}  // namespace fovea
