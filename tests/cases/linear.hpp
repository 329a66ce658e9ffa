// tests/cases/linear.hpp: harness cases for the fully connected ops (y = x wᵀ + b and its backward):
// a naive reference in double, with 2-D inputs and (N, C, 1, 1) inputs from global pooling.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "fovea/ops/linear.hpp"
#include "op_harness.hpp"

namespace fovea::testing {

// y[n, o] = b[o] + sum_f x[n, f] w[o, f] over inputs (x, w, b); b may be empty.
inline std::vector<double> linear_reference(const std::vector<std::vector<double>>& in,
                                            const std::vector<Shape>& shapes) {
  const std::int64_t N = shapes[0][0], O = shapes[1][0], F = shapes[1][1];
  const auto &x = in[0], &w = in[1], &b = in[2];
  std::vector<double> y(static_cast<std::size_t>(N * O));
  for (std::int64_t n = 0; n < N; ++n)
    for (std::int64_t o = 0; o < O; ++o) {
      double acc = b.empty() ? 0.0 : b[static_cast<std::size_t>(o)];
      for (std::int64_t f = 0; f < F; ++f)
        acc += x[static_cast<std::size_t>(n * F + f)] * w[static_cast<std::size_t>(o * F + f)];
      y[static_cast<std::size_t>(n * O + o)] = acc;
    }
  return y;
}

// One case: shape sets {x, w, b} (b of shape (0) for none).
inline OpCase linear_case(const std::string& name, std::vector<std::vector<Shape>> sets, bool with_bias = true) {
  OpCase c;
  c.name = "linear_" + name;
  double longest = 1;
  for (auto& s : sets) {
    if (!with_bias) s[2] = Shape{0};
    longest = std::max({longest, static_cast<double>(s[1][0]), static_cast<double>(s[1][1]),
                        static_cast<double>(s[0][0])});
  }
  c.input_shapes = sets;
  c.output_shape = [](const std::vector<Shape>& s) { return Shape{s[0][0], s[1][0]}; };
  c.run = [](const Inputs& in, View out) {
    MathSettings fp32 = math_settings();
    fp32.allow_tf32 = false;
    ScopedMathSettings scope(fp32);
    linear_forward(in[0], in[1], in[2], out);
  };
  c.reference = linear_reference;
  c.backward = [](const Inputs& in, CView, CView dy, const std::vector<View>& grads) {
    MathSettings fp32 = math_settings();
    fp32.allow_tf32 = false;
    ScopedMathSettings scope(fp32);
    linear_backward_data(dy, in[1], grads[0]);
    linear_backward_weight(in[0], dy, grads[1]);
    if (grads[2].data() != nullptr) linear_backward_bias(dy, grads[2]);
  };
  c.differentiable = {true, true, with_bias};
  const double root = std::sqrt(longest);
  c.forward_tol = {2e-6 * root, 1e-5};
  c.cuda_tol = {5e-5 * root, 1e-4};
  c.grad_tol = {1e-4 * std::max(1.0, root / 8), 1e-3};
  return c;
}

inline std::vector<OpCase> linear_cases() {
  using S = Shape;
  std::vector<OpCase> cases;
  cases.push_back(linear_case("2d", {{S{3, 67}, S{5, 67}, S{5}},
                                     {S{1, 1}, S{1, 1}, S{1}},
                                     {S{7, 129}, S{33, 129}, S{33}},
                                     {S{33, 2048}, S{5, 2048}, S{5}}}));
  cases.push_back(linear_case("2d_nobias", {{S{5, 7}, S{3, 7}, S{0}}, {S{67, 129}, S{7, 129}, S{0}}}, false));
  // The ResNet head: global pooling leaves (N, C, 1, 1).
  cases.push_back(linear_case("pooled_4d", {{S{3, 67, 1, 1}, S{5, 67}, S{5}}, {S{7, 2048, 1, 1}, S{5, 2048}, S{5}}}));
  return cases;
}

}  // namespace fovea::testing
