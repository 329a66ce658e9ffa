// fovea/cpu/batch_norm.hpp: batch-norm element math shared by both twins, the channel geometry, and
// the CPU twins (contracts in ops/batch_norm.hpp). Statistics accumulate in double, over 8 lanes
// (detail::LaneSum: each image's plane of a channel in lanes by position, the lanes combined at the end).
#pragma once

#include <cmath>
#include <cstdint>

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

namespace cpu {

inline void batch_norm_forward_training(CView x, CView gamma, CView beta, View running_mean, View running_var,
                                        float momentum, float eps, View y, View saved_mean,
                                        View saved_invstd) {
  const auto g = detail::channel_geometry(x.shape());
  const double count = static_cast<double>(g.per_channel());
  const math::RunningStatUpdate update{momentum};
  const math::BatchNormNormalize normalize;
  parallel_for(
      g.c,
      [&](std::int64_t first, std::int64_t last) {
        for (std::int64_t c = first; c < last; ++c) {
          detail::LaneSum sum;
          for (std::int64_t n = 0; n < g.n; ++n) {
            const float* p = x.data() + (n * g.c + c) * g.hw;
            sum.add(g.hw, [p](std::int64_t k) { return p[k]; });
          }
          const double mean = sum.total() / count;
          detail::LaneSum squares;
          for (std::int64_t n = 0; n < g.n; ++n) {
            const float* p = x.data() + (n * g.c + c) * g.hw;
            squares.add(g.hw, [p, mean](std::int64_t k) { return (p[k] - mean) * (p[k] - mean); });
          }
          const double m2 = squares.total();
          const float mean_f = static_cast<float>(mean);
          const float invstd = static_cast<float>(1.0 / std::sqrt(m2 / count + eps));
          saved_mean.data()[c] = mean_f;
          saved_invstd.data()[c] = invstd;
          running_mean.data()[c] = update(running_mean.data()[c], mean_f);
          running_var.data()[c] = update(running_var.data()[c], static_cast<float>(m2 / (count - 1.0)));
          const float gc = gamma.data()[c], bc = beta.data()[c];
          for (std::int64_t n = 0; n < g.n; ++n) {
            const std::int64_t base = (n * g.c + c) * g.hw;
            for (std::int64_t k = 0; k < g.hw; ++k)
              y.data()[base + k] = normalize(x.data()[base + k], mean_f, invstd, gc, bc);
          }
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
                                View dgamma, View dbeta) {
  const auto g = detail::channel_geometry(x.shape());
  const math::BatchNormInputGrad input_grad;
  const float inv_n = 1.0f / static_cast<float>(g.per_channel());
  parallel_for(
      g.c,
      [&](std::int64_t first, std::int64_t last) {
        for (std::int64_t c = first; c < last; ++c) {
          const float mean = saved_mean.data()[c], invstd = saved_invstd.data()[c];
          detail::LaneSum dy_sum, dy_xmu_sum;
          for (std::int64_t n = 0; n < g.n; ++n) {
            const std::int64_t base = (n * g.c + c) * g.hw;
            const float *d = dy.data() + base, *xs = x.data() + base;
            dy_sum.add(g.hw, [d](std::int64_t k) { return d[k]; });
            dy_xmu_sum.add(g.hw, [d, xs, mean](std::int64_t k) {
              return static_cast<double>(d[k]) * (static_cast<double>(xs[k]) - mean);
            });
          }
          const double sum_dy = dy_sum.total(), sum_dy_xmu = dy_xmu_sum.total();
          dbeta.data()[c] = static_cast<float>(sum_dy);
          dgamma.data()[c] = static_cast<float>(sum_dy_xmu * invstd);
          const float s1 = static_cast<float>(sum_dy), s2 = static_cast<float>(sum_dy_xmu);
          const float gc = gamma.data()[c];
          for (std::int64_t n = 0; n < g.n; ++n) {
            const std::int64_t base = (n * g.c + c) * g.hw;
            for (std::int64_t k = 0; k < g.hw; ++k)
              dx.data()[base + k] =
                  input_grad(x.data()[base + k], dy.data()[base + k], mean, invstd, gc, s1, s2, inv_n);
          }
        }
      },
      3 * g.per_channel());
}

}  // namespace cpu
}  // namespace fovea
