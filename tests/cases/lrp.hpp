// tests/cases/lrp.hpp: harness cases for LRP's element-wise ops (ops/lrp.hpp), with naive double
// references. epsilon = 0.05 so that the stabiliser's sign matters for inputs of N(0, 1). The maps'
// CUDA twins must give the CPU's bits (double ratios, exact products of floats); the mean share's
// plane sums run in another order on the GPU.
#pragma once

#include <vector>

#include "fovea/ops/lrp.hpp"
#include "op_harness.hpp"

namespace fovea::testing {

inline double lrp_stab_reference(double z, double eps) { return z >= 0 ? z + eps : z - eps; }

// `arity` inputs of one shape, for odd sizes and one large enough for many CUDA blocks.
inline std::vector<std::vector<Shape>> lrp_map_shapes(int arity) {
  std::vector<std::vector<Shape>> out;
  for (const Shape& s : {Shape{1}, Shape{7}, Shape{5, 3, 7, 7}, Shape{3, 3, 33, 33}, Shape{2, 67, 31, 29}})
    out.emplace_back(static_cast<std::size_t>(arity), s);
  return out;
}

// A reference for an element-wise op: y[i] = f(x, i), x the inputs.
template <class F>
Reference lrp_map_reference(F f) {
  return [f](const std::vector<std::vector<double>>& x, const std::vector<Shape>&) {
    std::vector<double> y(x[0].size());
    for (std::size_t i = 0; i < y.size(); ++i) y[i] = f(x, i);
    return y;
  };
}

inline std::vector<OpCase> lrp_cases() {
  using X = std::vector<std::vector<double>>;
  constexpr float kEps = 0.05f;
  const double eps = kEps;
  std::vector<OpCase> cases;
  {
    OpCase c;
    c.name = "lrp_ratio";
    c.input_shapes = lrp_map_shapes(2);
    c.run = [](const Inputs& in, View out) { lrp_ratio(in[0], in[1], kEps, out); };
    c.reference = lrp_map_reference(
        [eps](const X& x, std::size_t i) { return x[0][i] / lrp_stab_reference(x[1][i], eps); });
    c.cuda_tol = {0, 0};
    cases.push_back(c);
  }
  {
    OpCase c;
    c.name = "lrp_share";
    c.input_shapes = lrp_map_shapes(3);
    c.run = [](const Inputs& in, View out) { lrp_share(in[0], in[1], in[2], kEps, out); };
    c.reference = lrp_map_reference([eps](const X& x, std::size_t i) {
      return x[0][i] * x[2][i] / lrp_stab_reference(x[0][i] + x[1][i], eps);
    });
    c.cuda_tol = {0, 0};
    cases.push_back(c);
  }
  {
    OpCase c;
    c.name = "lrp_box_input";
    c.input_shapes = lrp_map_shapes(6);
    c.run = [](const Inputs& in, View out) { lrp_box_input(in[0], in[1], in[2], in[3], in[4], in[5], out); };
    c.reference = lrp_map_reference(
        [](const X& x, std::size_t i) { return x[0][i] * x[1][i] - x[2][i] * x[3][i] - x[4][i] * x[5][i]; });
    c.cuda_tol = {0, 0};
    cases.push_back(c);
  }
  {
    OpCase c;
    c.name = "lrp_box_denominator";
    c.input_shapes = lrp_map_shapes(3);
    c.inputs = InputKind::integer;  // exact in float
    c.run = [](const Inputs& in, View out) { lrp_box_denominator(in[0], in[1], in[2], out); };
    c.reference = lrp_map_reference([](const X& x, std::size_t i) { return x[0][i] - x[1][i] - x[2][i]; });
    c.forward_tol = c.cuda_tol = {0, 0};
    cases.push_back(c);
  }
  {
    OpCase c;
    c.name = "lrp_mean_share";
    c.input_shapes = {{Shape{5, 3, 7, 7}, Shape{5, 3}},
                      {Shape{2, 129, 1, 1}, Shape{2, 129, 1, 1}},
                      {Shape{3, 3, 33, 33}, Shape{3, 3}},
                      {Shape{2, 67, 31, 29}, Shape{2, 67}}};
    c.run = [](const Inputs& in, View out) { lrp_mean_share(in[0], in[1], kEps, out); };
    c.reference = [eps](const std::vector<std::vector<double>>& x, const std::vector<Shape>& s) {
      const std::int64_t planes = s[0].n() * s[0].c(), n = s[0].h() * s[0].w();
      std::vector<double> y(x[0].size());
      for (std::int64_t p = 0; p < planes; ++p) {
        double mean = 0;
        for (std::int64_t i = 0; i < n; ++i) mean += x[0][static_cast<std::size_t>(p * n + i)];
        mean /= static_cast<double>(n);
        for (std::int64_t i = 0; i < n; ++i) {
          const auto k = static_cast<std::size_t>(p * n + i);
          y[k] = x[0][k] / static_cast<double>(n) * x[1][static_cast<std::size_t>(p)] /
                 lrp_stab_reference(mean, eps);
        }
      }
      return y;
    };
    c.cuda_tol = {1e-7, 1e-6};
    cases.push_back(c);
  }
  return cases;
}

}  // namespace fovea::testing
