// fovea/ops/batch_norm.hpp: 2-D batch normalisation (per channel over N, H, W) with PyTorch's
// semantics: training forward with batch statistics and running-statistic updates, eval forward with
// running statistics, and the training backward through the batch statistics.
//
// Inputs are (N, C, H, W) or (N, C) (BatchNorm1d style, read as H = W = 1). Every per-channel tensor
// (gamma, beta, running_mean, running_var, saved_mean, saved_invstd, dgamma, dbeta) has shape (C).
// All tensors of one call live on one device. y may alias x exactly, dx may alias dy exactly.
//
// Precision: the CPU twin accumulates in double (two passes: mean, then squared deviations). The
// CUDA twin runs Welford per thread in float, merges threads with Chan's formula in float and the
// per-block partials in double, so the variance is accurate however large the channel mean is
// (relative error ~1e-6 for n up to millions); the backward sums are float per block, double across
// blocks.
#pragma once

#include <string>

#include "fovea/core/tensor.hpp"
#include "fovea/cpu/batch_norm.hpp"
#include "fovea/cuda/batch_norm.hpp"

namespace fovea {

namespace detail {
inline void check_bn_input(const char* op, const Shape& x) {
  FOVEA_CHECK(x.rank() == 4 || x.rank() == 2, op, ": input must be (N, C, H, W) or (N, C), got ",
              x.str());
}
inline void check_bn_channel(const char* op, const char* name, CView t, const Shape& x, Device device) {
  const Shape want{x[1]};
  if (!(t.shape() == want))
    throw Error(std::string(op) + ": shape mismatch: " + name + " " + t.shape().str() +
                " vs (C) = " + want.str() + " of input " + x.str());
  check_same_device(op, "input", device, name, t.device());
}
}  // namespace detail

// batch_norm_forward_training: normalise each channel with its batch statistics and update the
// running statistics.
//   x (N, C, H, W) or (N, C); gamma, beta (C); running_mean, running_var (C), updated in place;
//   y like x; saved_mean, saved_invstd (C), kept for the backward.
//   Requires: n = N*H*W > 1 (one value per channel is an error when training, as in PyTorch).
//   Ensures:  mean = sum(x)/n, var = sum((x - mean)^2)/n (biased), invstd = 1/sqrt(var + eps);
//             y = (x - mean) * invstd * gamma + beta; saved_mean = mean; saved_invstd = invstd;
//             running_mean = m*mean + (1-m)*running_mean;
//             running_var  = m*var*n/(n-1) + (1-m)*running_var (unbiased), m = momentum.
inline void batch_norm_forward_training(CView x, CView gamma, CView beta, View running_mean,
                                        View running_var, float momentum, float eps, View y,
                                        View saved_mean, View saved_invstd) {
  constexpr const char* op = "batch_norm_forward_training";
  detail::check_bn_input(op, x.shape());
  check_same_shape(op, "input", x.shape(), "output", y.shape());
  check_same_device(op, "input", x.device(), "output", y.device());
  detail::check_bn_channel(op, "gamma", gamma, x.shape(), x.device());
  detail::check_bn_channel(op, "beta", beta, x.shape(), x.device());
  detail::check_bn_channel(op, "running_mean", running_mean, x.shape(), x.device());
  detail::check_bn_channel(op, "running_var", running_var, x.shape(), x.device());
  detail::check_bn_channel(op, "saved_mean", saved_mean, x.shape(), x.device());
  detail::check_bn_channel(op, "saved_invstd", saved_invstd, x.shape(), x.device());
  const auto g = detail::channel_geometry(x.shape());
  FOVEA_CHECK(g.per_channel() > 1 || g.c == 0, op,
              ": expected more than 1 value per channel when training, got input shape ",
              x.shape().str());
  if (x.numel() == 0) return;
  if (y.device().is_cuda())
    FOVEA_CUDA_CALL(cuda::batch_norm_forward_training(x, gamma, beta, running_mean, running_var,
                                                      momentum, eps, y, saved_mean, saved_invstd));
  else
    cpu::batch_norm_forward_training(x, gamma, beta, running_mean, running_var, momentum, eps, y,
                                     saved_mean, saved_invstd);
}

// batch_norm_forward_inference: normalise with the running statistics (eval mode).
//   x (N, C, H, W) or (N, C); gamma, beta, running_mean, running_var (C); y like x.
//   Ensures: y = (x - running_mean) / sqrt(running_var + eps) * gamma + beta; nothing is updated.
inline void batch_norm_forward_inference(CView x, CView gamma, CView beta, CView running_mean,
                                         CView running_var, float eps, View y) {
  constexpr const char* op = "batch_norm_forward_inference";
  detail::check_bn_input(op, x.shape());
  check_same_shape(op, "input", x.shape(), "output", y.shape());
  check_same_device(op, "input", x.device(), "output", y.device());
  detail::check_bn_channel(op, "gamma", gamma, x.shape(), x.device());
  detail::check_bn_channel(op, "beta", beta, x.shape(), x.device());
  detail::check_bn_channel(op, "running_mean", running_mean, x.shape(), x.device());
  detail::check_bn_channel(op, "running_var", running_var, x.shape(), x.device());
  if (x.numel() == 0) return;
  if (y.device().is_cuda())
    FOVEA_CUDA_CALL(cuda::batch_norm_forward_inference(x, gamma, beta, running_mean, running_var, eps, y));
  else
    cpu::batch_norm_forward_inference(x, gamma, beta, running_mean, running_var, eps, y);
}

// batch_norm_backward: gradients of the training forward (through the batch statistics).
//   x, dy, dx (N, C, H, W) or (N, C); gamma, saved_mean, saved_invstd, dgamma, dbeta (C).
//   Requires: saved_mean / saved_invstd from batch_norm_forward_training on this x.
//   Ensures:  xhat = (x - mean) * invstd; dbeta = sum(dy); dgamma = sum(dy * xhat);
//             dx = gamma * invstd * (dy - dbeta/n - xhat * dgamma/n), sums over N, H, W.
inline void batch_norm_backward(CView x, CView dy, CView gamma, CView saved_mean, CView saved_invstd,
                                View dx, View dgamma, View dbeta) {
  constexpr const char* op = "batch_norm_backward";
  detail::check_bn_input(op, x.shape());
  check_same_shape(op, "input", x.shape(), "dy", dy.shape());
  check_same_shape(op, "input", x.shape(), "dx", dx.shape());
  check_same_device(op, "input", x.device(), "dy", dy.device());
  check_same_device(op, "input", x.device(), "dx", dx.device());
  detail::check_bn_channel(op, "gamma", gamma, x.shape(), x.device());
  detail::check_bn_channel(op, "saved_mean", saved_mean, x.shape(), x.device());
  detail::check_bn_channel(op, "saved_invstd", saved_invstd, x.shape(), x.device());
  detail::check_bn_channel(op, "dgamma", dgamma, x.shape(), x.device());
  detail::check_bn_channel(op, "dbeta", dbeta, x.shape(), x.device());
  if (x.numel() == 0) return;
  if (dx.device().is_cuda())
    FOVEA_CUDA_CALL(cuda::batch_norm_backward(x, dy, gamma, saved_mean, saved_invstd, dx, dgamma, dbeta));
  else
    cpu::batch_norm_backward(x, dy, gamma, saved_mean, saved_invstd, dx, dgamma, dbeta);
}

}  // namespace fovea
