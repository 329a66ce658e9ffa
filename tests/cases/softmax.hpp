// tests/cases/softmax.hpp: harness cases for softmax and log-softmax over (N, K) and (N, K, 1, 1),
// with naive double references.
#pragma once

#include <algorithm>
#include <cmath>
#include <vector>

#include "fovea/ops/softmax.hpp"
#include "op_harness.hpp"

namespace fovea::testing {

inline Reference softmax_reference(bool log) {
  return [log](const std::vector<std::vector<double>>& in, const std::vector<Shape>& shapes) {
    const std::int64_t rows = shapes[0].n(), k = shapes[0].c();
    std::vector<double> y(in[0].size());
    for (std::int64_t r = 0; r < rows; ++r) {
      const double* x = in[0].data() + r * k;
      const double m = *std::max_element(x, x + k);
      double s = 0.0;
      for (std::int64_t j = 0; j < k; ++j) s += std::exp(x[j] - m);
      for (std::int64_t j = 0; j < k; ++j)
        y[static_cast<std::size_t>(r * k + j)] = log ? x[j] - m - std::log(s) : std::exp(x[j] - m) / s;
    }
    return y;
  };
}

inline std::vector<OpCase> softmax_cases() {
  std::vector<OpCase> cases;
  const std::vector<std::vector<Shape>> shapes = {{Shape{1, 5}},    {Shape{7, 5}},           {Shape{3, 67}},
                                                  {Shape{5, 1000}}, {Shape{2, 129, 1, 1}},   {Shape{3, 4099}},
                                                  {Shape{257, 33}}, {Shape{1, 1}}};
  for (bool log : {false, true}) {
    OpCase c;
    c.name = log ? "log_softmax" : "softmax";
    c.input_shapes = shapes;
    c.run = [log](const Inputs& in, View out) {
      if (log) log_softmax_forward(in[0], out);
      else softmax_forward(in[0], out);
    };
    c.reference = softmax_reference(log);
    c.backward = [log](const Inputs&, CView y, CView dy, const std::vector<View>& dx) {
      if (log) log_softmax_backward(y, dy, dx[0]);
      else softmax_backward(y, dy, dx[0]);
    };
    c.differentiable = {true};
    c.forward_tol = log ? Tolerance{1e-5, 1e-5} : Tolerance{1e-7, 1e-5};
    c.cuda_tol = {1e-5, 1e-5};
    cases.push_back(c);
  }
  return cases;
}

}  // namespace fovea::testing
