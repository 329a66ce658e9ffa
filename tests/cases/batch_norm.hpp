// tests/cases/batch_norm.hpp: harness cases for batch normalisation (training forward and backward
// through batch statistics, eval forward), with naive double references.
#pragma once

#include <cmath>
#include <vector>

#include "fovea/ops/batch_norm.hpp"
#include "op_harness.hpp"

namespace fovea::testing {

inline constexpr float kBnEps = 1e-5f;
inline constexpr float kBnMomentum = 0.1f;

// x (N, C, H, W) or (N, C); gamma, beta (C).
inline std::vector<Shape> bn_shapes(const Shape& x) { return {x, Shape{x[1]}, Shape{x[1]}}; }

// y = (x - mean) / sqrt(var + eps) * gamma + beta with biased batch statistics, in double.
inline std::vector<double> bn_training_reference(const std::vector<std::vector<double>>& in,
                                                 const std::vector<Shape>& shapes) {
  const Shape& s = shapes[0];
  const std::int64_t n = s.n(), c = s.c(), hw = s.h() * s.w();
  std::vector<double> y(in[0].size());
  for (std::int64_t ch = 0; ch < c; ++ch) {
    double mean = 0.0, var = 0.0;
    for (std::int64_t i = 0; i < n; ++i)
      for (std::int64_t k = 0; k < hw; ++k) mean += in[0][(i * c + ch) * hw + k];
    mean /= static_cast<double>(n * hw);
    for (std::int64_t i = 0; i < n; ++i)
      for (std::int64_t k = 0; k < hw; ++k) var += std::pow(in[0][(i * c + ch) * hw + k] - mean, 2);
    var /= static_cast<double>(n * hw);
    const double invstd = 1.0 / std::sqrt(var + kBnEps);
    for (std::int64_t i = 0; i < n; ++i)
      for (std::int64_t k = 0; k < hw; ++k) {
        const std::size_t j = static_cast<std::size_t>((i * c + ch) * hw + k);
        y[j] = (in[0][j] - mean) * invstd * in[1][ch] + in[2][ch];
      }
  }
  return y;
}

inline std::vector<OpCase> batch_norm_cases() {
  std::vector<OpCase> cases;
  const std::vector<std::vector<Shape>> shapes = {
      bn_shapes({5, 3, 7, 7}),   bn_shapes({5, 67, 1, 1}),  bn_shapes({3, 129, 1, 1}), bn_shapes({7, 67}),
      bn_shapes({3, 3, 33, 33}), bn_shapes({4, 3, 112, 112}), bn_shapes({2, 129, 7, 7})};
  {
    OpCase c;
    c.name = "batch_norm_training";
    c.input_shapes = shapes;
    c.run = [](const Inputs& in, View out) {
      const Device d = out.device();
      const Shape ch{in[1].numel()};
      Tensor rm = zeros(ch, d), rv = full(ch, 1.0f, d), mean(ch, d), invstd(ch, d);
      batch_norm_forward_training(in[0], in[1], in[2], rm, rv, kBnMomentum, kBnEps, out, mean, invstd);
    };
    c.reference = bn_training_reference;
    c.backward = [](const Inputs& in, CView, CView dy, const std::vector<View>& grads) {
      const Device d = dy.device();
      const Shape ch{in[1].numel()};
      Tensor rm = zeros(ch, d), rv = full(ch, 1.0f, d), mean(ch, d), invstd(ch, d), y(in[0].shape(), d);
      batch_norm_forward_training(in[0], in[1], in[2], rm, rv, kBnMomentum, kBnEps, y, mean, invstd);
      batch_norm_backward(in[0], dy, in[1], mean, invstd, grads[0], grads[1], grads[2]);
    };
    c.differentiable = {true, true, true};
    c.forward_tol = {1e-5, 1e-5};
    c.cuda_tol = {1e-4, 1e-4};  // float Welford / float partial sums vs the CPU's double
    cases.push_back(c);
  }
  {
    OpCase c;  // eval mode: inputs x, gamma, beta, running_mean, r; running_var = r^2 + 0.5
    c.name = "batch_norm_inference";
    for (const auto& s : shapes) c.input_shapes.push_back({s[0], s[1], s[1], s[1], s[1]});
    c.run = [](const Inputs& in, View out) {
      const Device d = out.device();
      Tensor rv(in[4].shape(), d);
      multiply(in[4], in[4], rv);
      add(rv, full(rv.shape(), 0.5f, d), rv);
      batch_norm_forward_inference(in[0], in[1], in[2], in[3], rv, kBnEps, out);
    };
    c.reference = [](const std::vector<std::vector<double>>& in, const std::vector<Shape>& shapes) {
      const Shape& s = shapes[0];
      const std::int64_t c = s.c(), hw = s.h() * s.w();
      std::vector<double> y(in[0].size());
      for (std::size_t j = 0; j < y.size(); ++j) {
        const std::size_t ch = static_cast<std::size_t>((static_cast<std::int64_t>(j) / hw) % c);
        const double rv = static_cast<double>(static_cast<float>(in[4][ch] * in[4][ch]) + 0.5f);
        y[j] = (in[0][j] - in[3][ch]) / std::sqrt(rv + kBnEps) * in[1][ch] + in[2][ch];
      }
      return y;
    };
    c.forward_tol = {1e-5, 1e-5};
    c.cuda_tol = {1e-5, 1e-5};
    cases.push_back(c);
  }
  return cases;
}

}  // namespace fovea::testing
