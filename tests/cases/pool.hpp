// tests/cases/pool.hpp: harness cases for max, average and global average pooling, with naive double
// references (first maximum in window order; count_include_pad = true).
#pragma once

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "fovea/ops/pool.hpp"
#include "op_harness.hpp"

namespace fovea::testing {

// Naive pooling: for each output, walk its window of the padded input in row-major order.
inline Reference pool_reference(PoolParams p, bool max) {
  return [p, max](const std::vector<std::vector<double>>& in, const std::vector<Shape>& shapes) {
    const Shape& s = shapes[0];
    const Shape o = pool2d_output_shape(s, p);
    const std::int64_t h = s.h(), w = s.w();
    std::vector<double> y(static_cast<std::size_t>(o.numel()));
    std::size_t idx = 0;
    for (std::int64_t plane = 0; plane < s.n() * s.c(); ++plane)
      for (std::int64_t i = 0; i < o.h(); ++i)
        for (std::int64_t j = 0; j < o.w(); ++j) {
          double acc = max ? -std::numeric_limits<double>::infinity() : 0.0;
          for (std::int64_t a = 0; a < p.kernel; ++a)
            for (std::int64_t b = 0; b < p.kernel; ++b) {
              const std::int64_t r = i * p.stride - p.padding + a, c = j * p.stride - p.padding + b;
              if (r < 0 || r >= h || c < 0 || c >= w) continue;
              const double v = in[0][static_cast<std::size_t>((plane * h + r) * w + c)];
              if (max) {
                if (v > acc) acc = v;
              } else {
                acc += v;
              }
            }
          y[idx++] = max ? acc : acc / (p.kernel * p.kernel);
        }
    return y;
  };
}

inline std::vector<OpCase> pool_cases() {
  std::vector<OpCase> cases;
  struct Named {
    const char* name;
    PoolParams p;
  };
  const Named params[] = {{"k3s2p1", {3, 2, 1}}, {"k2s2p0", {2, 2, 0}}, {"k3s1p1", {3, 1, 1}}, {"k3s3p0", {3, 3, 0}},
                          {"k1s1p0", {1, 1, 0}}};
  const Shape shapes[] = {Shape{5, 3, 7, 7}, Shape{2, 67, 1, 1}, Shape{3, 3, 33, 33}, Shape{1, 129, 8, 9},
                          Shape{3, 2, 4, 5}, Shape{2, 64, 56, 56}};
  for (bool max : {true, false}) {
    for (const auto& np : params) {
      OpCase c;
      const PoolParams p = np.p;
      c.name = std::string(max ? "max_pool2d_" : "avg_pool2d_") + np.name;
      for (const auto& s : shapes)
        if (s.h() + 2 * p.padding >= p.kernel && s.w() + 2 * p.padding >= p.kernel) c.input_shapes.push_back({s});
      c.output_shape = [p](const std::vector<Shape>& s) { return pool2d_output_shape(s[0], p); };
      c.run = [p, max](const Inputs& in, View out) {
        if (max) max_pool2d_forward(in[0], out, p);
        else avg_pool2d_forward(in[0], out, p);
      };
      c.reference = pool_reference(p, max);
      c.backward = [p, max](const Inputs& in, CView y, CView dy, const std::vector<View>& dx) {
        if (max) max_pool2d_backward(in[0], y, dy, dx[0], p);
        else avg_pool2d_backward(dy, dx[0], p);
      };
      c.differentiable = {true};
      c.forward_tol = max ? Tolerance{0, 0} : Tolerance{1e-6, 1e-5};
      c.cuda_tol = {0, 0};  // same FOVEA_HD window code and summation order on both twins
      cases.push_back(c);
    }
  }
  {
    OpCase c;
    c.name = "global_avg_pool";
    c.input_shapes = {{Shape{5, 3, 7, 7}}, {Shape{2, 129, 1, 1}}, {Shape{3, 67, 33, 33}}, {Shape{2, 2048, 7, 7}},
                      {Shape{1, 3, 112, 112}}};
    c.output_shape = [](const std::vector<Shape>& s) { return Shape{s[0].n(), s[0].c(), 1, 1}; };
    c.run = [](const Inputs& in, View out) { global_avg_pool_forward(in[0], out); };
    c.reference = [](const std::vector<std::vector<double>>& in, const std::vector<Shape>& shapes) {
      const std::int64_t planes = shapes[0].n() * shapes[0].c(), hw = shapes[0].h() * shapes[0].w();
      std::vector<double> y(static_cast<std::size_t>(planes), 0.0);
      for (std::int64_t pl = 0; pl < planes; ++pl) {
        for (std::int64_t k = 0; k < hw; ++k) y[pl] += in[0][static_cast<std::size_t>(pl * hw + k)];
        y[pl] /= static_cast<double>(hw);
      }
      return y;
    };
    c.backward = [](const Inputs&, CView, CView dy, const std::vector<View>& dx) {
      global_avg_pool_backward(dy, dx[0]);
    };
    c.differentiable = {true};
    c.forward_tol = {1e-6, 1e-5};
    c.cuda_tol = {1e-6, 1e-5};
    cases.push_back(c);
  }
  return cases;
}

}  // namespace fovea::testing
