// tests/op_harness.hpp: the table-driven op harness. One OpCase per op describes how to run it, a
// naive double-precision reference, and optionally its backward; three modes check every case:
//   reference: the CPU op against the naive reference;
//   cuda:      the CUDA twin against the CPU op on the same inputs (aligned and misaligned views);
//   grad:      the backward op against central finite differences of the reference, in double.
// Failures print the op, the shapes, the first mismatches and the largest error.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "fovea/fovea.hpp"

namespace fovea::testing {

struct Tolerance {
  double atol = 1e-6;
  double rtol = 1e-5;
};

enum class InputKind {
  normal,          // N(0, 1)
  away_from_zero,  // N(0, 1) with |x| >= 0.05, so kinks (relu) stay out of finite differences
  integer,         // integers in [-8, 8], so sums and products are exact
};

using Inputs = std::vector<CView>;
using Reference =
    std::function<std::vector<double>(const std::vector<std::vector<double>>&, const std::vector<Shape>&)>;

struct OpCase {
  std::string name;                             // a test-name-safe identifier
  std::vector<std::vector<Shape>> input_shapes;  // one entry per call: the shapes of its inputs
  std::function<Shape(const std::vector<Shape>&)> output_shape;  // default: the first input's shape
  std::function<void(const Inputs&, View)> run;                   // the op under test (dispatching)
  Reference reference;                                            // naive, in double
  // Optional backward under test: (inputs, output, dy, grads); grads[k] is empty for inputs that are
  // not differentiable.
  std::function<void(const Inputs&, CView, CView, const std::vector<View>&)> backward;
  std::vector<bool> differentiable;
  InputKind inputs = InputKind::normal;
  Tolerance forward_tol{};
  Tolerance cuda_tol{};
  Tolerance grad_tol{1e-4, 1e-3};
};

inline std::ostream& operator<<(std::ostream& os, const OpCase& c) { return os << c.name; }

inline Shape output_shape_of(const OpCase& c, const std::vector<Shape>& in) {
  return c.output_shape ? c.output_shape(in) : in.at(0);
}

inline std::string shapes_str(const std::vector<Shape>& shapes) {
  std::string s;
  for (const auto& sh : shapes) {
    if (!s.empty()) s += ' ';
    s += sh.str();
  }
  return s;
}

// Fresh random values (never zeros), on the host.
inline std::vector<float> random_values(std::int64_t n, InputKind kind, std::uint64_t seed) {
  std::mt19937_64 gen(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_int_distribution<int> integer(-8, 8);
  std::vector<float> v(static_cast<std::size_t>(n));
  for (auto& x : v) {
    switch (kind) {
      case InputKind::normal: x = normal(gen); break;
      case InputKind::away_from_zero:
        do x = normal(gen);
        while (std::fabs(x) < 0.05f);
        break;
      case InputKind::integer: x = static_cast<float>(integer(gen)); break;
    }
  }
  return v;
}

inline std::vector<Tensor> make_inputs(const OpCase& c, const std::vector<Shape>& shapes, std::uint64_t seed) {
  std::vector<Tensor> in;
  for (std::size_t k = 0; k < shapes.size(); ++k)
    in.push_back(Tensor::from(random_values(shapes[k].numel(), c.inputs, seed * 131 + k), shapes[k]));
  return in;
}

inline Inputs views_of(const std::vector<Tensor>& ts) {
  Inputs v;
  for (const auto& t : ts) v.push_back(t.view());
  return v;
}

// |got - want| <= atol + rtol * |want| everywhere (NaN never passes).
inline ::testing::AssertionResult all_close(const std::string& what, const std::vector<float>& got,
                                            const std::vector<double>& want, Tolerance tol) {
  if (got.size() != want.size())
    return ::testing::AssertionFailure() << what << ": " << got.size() << " values vs " << want.size()
                                         << " expected";
  std::ostringstream first;
  std::size_t bad = 0;
  double max_err = 0.0;
  for (std::size_t i = 0; i < got.size(); ++i) {
    const double err = std::fabs(static_cast<double>(got[i]) - want[i]);
    const bool ok = err <= tol.atol + tol.rtol * std::fabs(want[i]);
    if (!std::isnan(err)) max_err = std::max(max_err, err);
    if (!ok) {
      if (bad < 5) first << "\n  [" << i << "] got " << got[i] << " want " << want[i] << " (err " << err << ")";
      ++bad;
    }
  }
  if (bad == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << what << ": " << bad << " of " << got.size()
                                       << " elements outside atol " << tol.atol << " + rtol " << tol.rtol
                                       << ", max error " << max_err << first.str();
}

inline std::vector<double> to_double(const std::vector<float>& v) { return {v.begin(), v.end()}; }

inline std::vector<double> run_reference(const OpCase& c, const std::vector<Tensor>& in,
                                         const std::vector<Shape>& shapes) {
  std::vector<std::vector<double>> x;
  for (const auto& t : in) x.push_back(to_double(t.to_vector()));
  return c.reference(x, shapes);
}

// Mode "reference": CPU op vs the naive reference, output poisoned with NaN first.
inline void check_reference(const OpCase& c) {
  std::uint64_t seed = 1;
  for (const auto& shapes : c.input_shapes) {
    SCOPED_TRACE(c.name + " " + shapes_str(shapes));
    auto in = make_inputs(c, shapes, seed++);
    Tensor out = full(output_shape_of(c, shapes), std::numeric_limits<float>::quiet_NaN());
    c.run(views_of(in), out);
    EXPECT_TRUE(all_close(c.name + " cpu vs reference", out.to_vector(), run_reference(c, in, shapes),
                          c.forward_tol));
  }
}

// A copy of `t` on `device` whose data starts 4 bytes past a 16-byte boundary when `misalign`
// (the storage tensor keeps it alive).
struct DeviceCopy {
  Tensor storage;
  View view;
};
inline DeviceCopy device_copy(const Tensor& t, Device device, bool misalign) {
  DeviceCopy d;
  d.storage = Tensor(Shape{t.numel() + 1}, device);
  d.view = View(d.storage.data() + (misalign ? 1 : 0), t.shape(), device);
  copy(t.view(), d.view);
  return d;
}
inline std::vector<float> host_values(CView v) {
  std::vector<float> h(static_cast<std::size_t>(v.numel()));
  copy(v, View(h.data(), v.shape(), Device::cpu()));
  return h;
}

// Mode "cuda": the CUDA twin vs the CPU op on identical inputs; every output element must be
// written (poisoned with NaN first). Skips when no CUDA device can be used.
inline void check_cuda(const OpCase& c) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device: " << cuda_unavailable_reason();
  const Device gpu = Device::cuda(0);
  std::uint64_t seed = 1000;
  for (const auto& shapes : c.input_shapes) {
    for (bool misalign : {false, true}) {
      SCOPED_TRACE(c.name + " " + shapes_str(shapes) + (misalign ? " misaligned" : " aligned"));
      auto in = make_inputs(c, shapes, seed++);
      const Shape out_shape = output_shape_of(c, shapes);
      Tensor cpu_out(out_shape);
      c.run(views_of(in), cpu_out);

      std::vector<DeviceCopy> gin;
      Inputs gviews;
      for (const auto& t : in) {
        gin.push_back(device_copy(t, gpu, misalign));
        gviews.push_back(gin.back().view);
      }
      DeviceCopy gout = device_copy(full(out_shape, std::numeric_limits<float>::quiet_NaN()), gpu, misalign);
      c.run(gviews, gout.view);
      EXPECT_TRUE(all_close(c.name + " cuda vs cpu", host_values(gout.view), to_double(cpu_out.to_vector()),
                            c.cuda_tol));

      if (c.backward) {
        Tensor dy = Tensor::from(random_values(out_shape.numel(), InputKind::normal, seed * 7), out_shape);
        std::vector<Tensor> cpu_dx;
        std::vector<View> cpu_dx_views;
        std::vector<DeviceCopy> gdx;
        std::vector<View> gdx_views;
        for (std::size_t k = 0; k < in.size(); ++k) {
          const bool d = k < c.differentiable.size() && c.differentiable[k];
          cpu_dx.emplace_back(d ? in[k].shape() : Shape{0});
          cpu_dx_views.push_back(d ? cpu_dx.back().view() : View());
          gdx.push_back(d ? device_copy(full(in[k].shape(), std::numeric_limits<float>::quiet_NaN()), gpu, misalign)
                          : DeviceCopy{});
          gdx_views.push_back(d ? gdx.back().view : View());
        }
        c.backward(views_of(in), cpu_out, dy, cpu_dx_views);
        DeviceCopy gdy = device_copy(dy, gpu, misalign);
        c.backward(gviews, gout.view, gdy.view, gdx_views);
        for (std::size_t k = 0; k < in.size(); ++k) {
          if (gdx_views[k].data() == nullptr) continue;
          EXPECT_TRUE(all_close(c.name + " backward input " + std::to_string(k) + " cuda vs cpu",
                                host_values(gdx_views[k]), to_double(cpu_dx[k].to_vector()), c.cuda_tol));
        }
      }
    }
  }
}

// Mode "grad": the backward op vs central differences of L(x) = sum(dy * reference(x)) in double.
// Shapes larger than 4096 elements are skipped (finite differences cost one reference call per
// element).
inline void check_grad(const OpCase& c) {
  if (!c.backward) GTEST_SKIP() << c.name << " has no backward";
  std::uint64_t seed = 2000;
  int checked = 0;
  for (const auto& shapes : c.input_shapes) {
    std::int64_t total = 0;
    for (const auto& s : shapes) total += s.numel();
    if (total > 4096) continue;
    SCOPED_TRACE(c.name + " " + shapes_str(shapes));
    auto in = make_inputs(c, shapes, seed++);
    const Shape out_shape = output_shape_of(c, shapes);
    Tensor out(out_shape);
    c.run(views_of(in), out);
    const auto dy = random_values(out_shape.numel(), InputKind::normal, seed * 13);
    Tensor dy_t = Tensor::from(dy, out_shape);
    std::vector<Tensor> dx;
    std::vector<View> dx_views;
    for (std::size_t k = 0; k < in.size(); ++k) {
      const bool d = k < c.differentiable.size() && c.differentiable[k];
      dx.push_back(d ? full(in[k].shape(), std::numeric_limits<float>::quiet_NaN()) : Tensor(Shape{0}));
      dx_views.push_back(d ? dx.back().view() : View());
    }
    c.backward(views_of(in), out, dy_t, dx_views);

    std::vector<std::vector<double>> x;
    for (const auto& t : in) x.push_back(to_double(t.to_vector()));
    auto loss = [&](const std::vector<std::vector<double>>& xs) {
      const auto y = c.reference(xs, shapes);
      double l = 0.0;
      for (std::size_t i = 0; i < y.size(); ++i) l += dy[i] * y[i];
      return l;
    };
    for (std::size_t k = 0; k < in.size(); ++k) {
      if (dx_views[k].data() == nullptr) continue;
      std::vector<double> numeric(x[k].size());
      for (std::size_t j = 0; j < x[k].size(); ++j) {
        const double h = 1e-4 * std::max(1.0, std::fabs(x[k][j]));
        const double saved = x[k][j];
        x[k][j] = saved + h;
        const double lp = loss(x);
        x[k][j] = saved - h;
        const double lm = loss(x);
        x[k][j] = saved;
        numeric[j] = (lp - lm) / (2 * h);
      }
      EXPECT_TRUE(all_close(c.name + " backward input " + std::to_string(k) + " vs finite differences",
                            dx[k].to_vector(), numeric, c.grad_tol));
      ++checked;
    }
  }
  EXPECT_GT(checked, 0) << c.name << ": no shape small enough for finite differences";
}

}  // namespace fovea::testing
