// tests/op_cases.hpp: the op table the harness runs (tests/op_harness.hpp). Element-wise and
// reduction cases are here; each further op family keeps its cases in tests/cases/<family>.hpp and
// is added to all_op_cases() below, so the CPU suite (reference and grad modes) and the CUDA suite
// (cuda mode) cover it.
#pragma once

#include <cmath>
#include <vector>

#include "cases/batch_norm.hpp"
#include "cases/conv.hpp"
#include "cases/linear.hpp"
#include "cases/loss.hpp"
#include "cases/lrp.hpp"
#include "cases/pool.hpp"
#include "cases/softmax.hpp"
#include "op_harness.hpp"

namespace fovea::testing {

// Awkward sizes: odd batches, C = 3, 67, 129, H = W = 1, 7, 33, and one large enough to run many
// CUDA blocks.
inline std::vector<Shape> awkward_shapes() {
  return {Shape{1}, Shape{7}, Shape{3, 67}, Shape{5, 3, 7, 7}, Shape{2, 129, 1, 1}, Shape{3, 3, 33, 33},
          Shape{2, 67, 31, 29}};
}

inline std::vector<std::vector<Shape>> repeat_shapes(int arity) {
  std::vector<std::vector<Shape>> out;
  for (const auto& s : awkward_shapes()) out.emplace_back(static_cast<std::size_t>(arity), s);
  return out;
}

template <class F>
Reference unary_reference(F f) {
  return [f](const std::vector<std::vector<double>>& x, const std::vector<Shape>&) {
    std::vector<double> y(x[0].size());
    for (std::size_t i = 0; i < y.size(); ++i) y[i] = f(x[0][i]);
    return y;
  };
}
template <class F>
Reference binary_reference(F f) {
  return [f](const std::vector<std::vector<double>>& x, const std::vector<Shape>&) {
    std::vector<double> y(x[0].size());
    for (std::size_t i = 0; i < y.size(); ++i) y[i] = f(x[0][i], x[1][i]);
    return y;
  };
}

inline std::vector<OpCase> elementwise_cases() {
  std::vector<OpCase> cases;
  {
    OpCase c;
    c.name = "fill";
    c.input_shapes = repeat_shapes(1);  // the input only gives the shape
    c.run = [](const Inputs&, View out) { fill(out, -2.5f); };
    c.reference = unary_reference([](double) { return -2.5; });
    c.forward_tol = c.cuda_tol = {0, 0};
    cases.push_back(c);
  }
  {
    OpCase c;
    c.name = "scale";
    c.input_shapes = repeat_shapes(1);
    c.inputs = InputKind::integer;
    c.run = [](const Inputs& in, View out) { scale(in[0], 0.75f, out); };
    c.reference = unary_reference([](double x) { return 0.75 * x; });
    c.backward = [](const Inputs&, CView, CView dy, const std::vector<View>& dx) { scale(dy, 0.75f, dx[0]); };
    c.differentiable = {true};
    c.forward_tol = c.cuda_tol = {0, 0};
    cases.push_back(c);
  }
  {
    OpCase c;
    c.name = "axpy";  // out starts as a copy of y, then out = alpha * x + out
    c.input_shapes = repeat_shapes(2);
    c.inputs = InputKind::integer;
    c.run = [](const Inputs& in, View out) {
      copy(in[1], out);
      axpy(-1.5f, in[0], out);
    };
    c.reference = binary_reference([](double x, double y) { return -1.5 * x + y; });
    c.forward_tol = c.cuda_tol = {0, 0};
    cases.push_back(c);
  }
  {
    OpCase c;
    c.name = "add";
    c.input_shapes = repeat_shapes(2);
    c.inputs = InputKind::integer;
    c.run = [](const Inputs& in, View out) { add(in[0], in[1], out); };
    c.reference = binary_reference([](double a, double b) { return a + b; });
    c.backward = [](const Inputs&, CView, CView dy, const std::vector<View>& dx) {
      copy(dy, dx[0]);
      copy(dy, dx[1]);
    };
    c.differentiable = {true, true};
    c.forward_tol = c.cuda_tol = {0, 0};
    cases.push_back(c);
  }
  {
    OpCase c;
    c.name = "multiply";
    c.input_shapes = repeat_shapes(2);
    c.run = [](const Inputs& in, View out) { multiply(in[0], in[1], out); };
    c.reference = binary_reference([](double a, double b) { return a * b; });
    c.backward = [](const Inputs& in, CView, CView dy, const std::vector<View>& dx) {
      multiply(dy, in[1], dx[0]);
      multiply(dy, in[0], dx[1]);
    };
    c.differentiable = {true, true};
    c.forward_tol = c.cuda_tol = {0, 1e-6};
    cases.push_back(c);
  }
  {
    OpCase c;
    c.name = "lerp";  // a + t (b - a), the product rounded on its own: the GPU gives the CPU's bits
    c.input_shapes = repeat_shapes(2);
    c.run = [](const Inputs& in, View out) { lerp(in[0], in[1], 0.3f, out); };
    c.reference = binary_reference([](double a, double b) { return a + double(0.3f) * (b - a); });
    c.backward = [](const Inputs&, CView, CView dy, const std::vector<View>& dx) {
      scale(dy, 0.7f, dx[0]);  // 1 - t in float: exact to the tolerance
      scale(dy, 0.3f, dx[1]);
    };
    c.differentiable = {true, true};
    c.cuda_tol = {0, 0};
    cases.push_back(c);
  }
  {
    OpCase c;
    c.name = "relu";
    c.input_shapes = repeat_shapes(1);
    c.inputs = InputKind::away_from_zero;
    c.run = [](const Inputs& in, View out) { relu_forward(in[0], out); };
    c.reference = unary_reference([](double x) { return x > 0 ? x : 0.0; });
    c.backward = [](const Inputs& in, CView, CView dy, const std::vector<View>& dx) {
      relu_backward(in[0], dy, dx[0]);
    };
    c.differentiable = {true};
    c.forward_tol = c.cuda_tol = {0, 0};
    cases.push_back(c);
  }
  {
    OpCase c;  // backward from the forward output instead of the input
    c.name = "relu_backward_from_output";
    c.input_shapes = repeat_shapes(1);
    c.inputs = InputKind::away_from_zero;
    c.run = [](const Inputs& in, View out) { relu_forward(in[0], out); };
    c.reference = unary_reference([](double x) { return x > 0 ? x : 0.0; });
    c.backward = [](const Inputs&, CView out, CView dy, const std::vector<View>& dx) {
      relu_backward(out, dy, dx[0]);
    };
    c.differentiable = {true};
    c.forward_tol = c.cuda_tol = {0, 0};
    cases.push_back(c);
  }
  return cases;
}

// Naive reduction along `axis` in double.
inline Reference reduce_reference(int axis, ReduceKind kind) {
  return [axis, kind](const std::vector<std::vector<double>>& x, const std::vector<Shape>& shapes) {
    const Shape& s = shapes[0];
    const Shape o = s.with(axis, 1);
    std::vector<double> y(static_cast<std::size_t>(o.numel()));
    for (std::size_t i = 0; i < y.size(); ++i) {
      // Unravel the output index, then walk the reduced axis.
      std::int64_t idx[4] = {0, 0, 0, 0}, rem = static_cast<std::int64_t>(i);
      for (int d = o.rank() - 1; d >= 0; --d) {
        idx[d] = rem % o[d];
        rem /= o[d];
      }
      double acc = kind == ReduceKind::max ? -INFINITY : 0.0;
      for (std::int64_t k = 0; k < s[axis]; ++k) {
        idx[axis] = k;
        std::int64_t flat = 0;
        for (int d = 0; d < s.rank(); ++d) flat = flat * s[d] + idx[d];
        const double v = x[0][static_cast<std::size_t>(flat)];
        acc = kind == ReduceKind::max ? std::max(acc, v) : acc + v;
      }
      y[i] = kind == ReduceKind::mean ? acc / static_cast<double>(s[axis]) : acc;
    }
    return y;
  };
}

inline std::vector<OpCase> reduce_cases() {
  std::vector<OpCase> cases;
  const char* names[] = {"sum", "mean", "max"};
  const ReduceKind kinds[] = {ReduceKind::sum, ReduceKind::mean, ReduceKind::max};
  for (int k = 0; k < 3; ++k) {
    for (int axis = 0; axis < 4; ++axis) {
      OpCase c;
      c.name = std::string("reduce_") + names[k] + "_axis" + std::to_string(axis);
      c.input_shapes = {{Shape{5, 3, 7, 7}}, {Shape{2, 129, 1, 1}}, {Shape{3, 67, 33, 9}},
                        {Shape{1, 1, 1, 4099}}, {Shape{300, 2, 3, 1}}};
      const ReduceKind kind = kinds[k];
      c.output_shape = [axis](const std::vector<Shape>& s) { return s[0].with(axis, 1); };
      c.run = [axis, kind](const Inputs& in, View out) { reduce(in[0], axis, out, kind); };
      c.reference = reduce_reference(axis, kind);
      c.inputs = kind == ReduceKind::sum ? InputKind::integer : InputKind::normal;
      c.forward_tol = {1e-5, 1e-6};
      c.cuda_tol = kind == ReduceKind::sum ? Tolerance{0, 0} : Tolerance{1e-5, 1e-5};
      cases.push_back(c);
    }
  }
  return cases;
}

inline std::vector<OpCase> all_op_cases() {
  auto cases = elementwise_cases();
  for (auto* family : {&reduce_cases, &batch_norm_cases, &pool_cases, &softmax_cases, &conv_cases,
                       &linear_cases, &loss_cases, &lrp_cases})
    for (auto& c : (*family)()) cases.push_back(c);
  return cases;
}

struct CaseName {
  std::string operator()(const ::testing::TestParamInfo<OpCase>& info) const { return info.param.name; }
};

}  // namespace fovea::testing
