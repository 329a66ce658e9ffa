// tests/cases/loss.hpp: harness cases for the losses (cross-entropy with weights and label smoothing,
// MSE, NT-Xent, InfoNCE and their top-k accuracies), with naive double references. Each loss is a
// scalar output, so grad mode differentiates dy * loss: dy plays the part of dloss. Labels and class
// weights are not harness inputs (they are not differentiable and must be integers): each case derives
// them from the logits' shape.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "fovea/ops/contrastive.hpp"
#include "fovea/ops/loss.hpp"
#include "op_harness.hpp"

namespace fovea::testing {

// Labels 0 .. K-1 in a scrambled order covering every class when N >= K.
inline std::vector<float> loss_labels(std::int64_t N, std::int64_t K) {
  std::vector<float> y(static_cast<std::size_t>(N));
  for (std::int64_t n = 0; n < N; ++n) y[n] = static_cast<float>((n * 7 + 3) % K);
  return y;
}
inline std::vector<float> loss_class_weights(std::int64_t K) {
  std::vector<float> w(static_cast<std::size_t>(K));
  for (std::int64_t k = 0; k < K; ++k) w[k] = 0.5f + 0.25f * static_cast<float>(k % 5);
  return w;
}

// PyTorch's cross_entropy(weight, label_smoothing, reduction='mean'), in double.
inline double cross_entropy_reference(const std::vector<double>& x, std::int64_t N, std::int64_t K,
                                      const std::vector<float>& y, const std::vector<float>& w, double eps) {
  double nll = 0.0, smooth = 0.0, wsum = 0.0;
  for (std::int64_t n = 0; n < N; ++n) {
    const double* row = x.data() + n * K;
    const double m = *std::max_element(row, row + K);
    double s = 0.0;
    for (std::int64_t j = 0; j < K; ++j) s += std::exp(row[j] - m);
    const double lse = m + std::log(s);
    const auto label = static_cast<std::int64_t>(y[n]);
    const double wy = w.empty() ? 1.0 : w[label];
    nll += -wy * (row[label] - lse);
    for (std::int64_t j = 0; j < K; ++j) smooth += -(w.empty() ? 1.0 : w[j]) * (row[j] - lse);
    wsum += wy;
  }
  return (1.0 - eps) * nll / wsum + eps / static_cast<double>(K) * smooth / wsum;
}

// Rows normalised as F.normalize, in double.
inline std::vector<double> normalized_rows(const std::vector<double>& z, std::int64_t rows, std::int64_t D) {
  std::vector<double> out(z.size());
  for (std::int64_t i = 0; i < rows; ++i) {
    double ss = 0.0;
    for (std::int64_t d = 0; d < D; ++d) ss += z[i * D + d] * z[i * D + d];
    const double n = std::max(std::sqrt(ss), 1e-12);
    for (std::int64_t d = 0; d < D; ++d) out[i * D + d] = z[i * D + d] / n;
  }
  return out;
}
inline double dot_rows(const std::vector<double>& a, std::int64_t i, const std::vector<double>& b, std::int64_t j,
                       std::int64_t D) {
  double s = 0.0;
  for (std::int64_t d = 0; d < D; ++d) s += a[i * D + d] * b[j * D + d];
  return s;
}

inline double nt_xent_reference(const std::vector<double>& z, std::int64_t M, std::int64_t D, double tau) {
  const auto zn = normalized_rows(z, M, D);
  double total = 0.0;
  for (std::int64_t i = 0; i < M; ++i) {
    double denom = 0.0;
    for (std::int64_t j = 0; j < M; ++j)
      if (j != i) denom += std::exp(dot_rows(zn, i, zn, j, D) / tau);
    total += -std::log(std::exp(dot_rows(zn, i, zn, (i + M / 2) % M, D) / tau) / denom);
  }
  return total / static_cast<double>(M);
}

inline double infonce_reference(const std::vector<double>& q, const std::vector<double>& k,
                                const std::vector<double>& queue, std::int64_t N, std::int64_t K, std::int64_t D,
                                double tau) {
  const auto qn = normalized_rows(q, N, D), kn = normalized_rows(k, N, D);
  double total = 0.0;
  for (std::int64_t i = 0; i < N; ++i) {
    const double pos = std::exp(dot_rows(qn, i, kn, i, D) / tau);
    double denom = pos;
    for (std::int64_t j = 0; j < K; ++j) denom += std::exp(dot_rows(qn, i, queue, j, D) / tau);
    total += -std::log(pos / denom);
  }
  return total / static_cast<double>(N);
}

// Top-1 / top-5 of the positive's rank by plain counting.
inline std::vector<double> accuracy_reference(const std::vector<std::int64_t>& above) {
  double top1 = 0.0, top5 = 0.0;
  for (auto c : above) {
    top1 += c == 0;
    top5 += c < 5;
  }
  const double n = static_cast<double>(above.size());
  return {top1 / n, top5 / n};
}

// Second views that resemble the first (x2 <- x1 + 0.5 x2), so accuracies are neither 0 nor 1.
inline void mix_views(CView first, CView second, View out) {
  scale(second, 0.5f, out);
  axpy(1.0f, first, out);
}
inline std::vector<double> mixed(const std::vector<double>& first, const std::vector<double>& second) {
  std::vector<double> out(first.size());
  for (std::size_t i = 0; i < out.size(); ++i) out[i] = first[i] + 0.5 * second[i];
  return out;
}

inline Shape scalar_shape(const std::vector<Shape>&) { return Shape{}; }

inline std::vector<OpCase> cross_entropy_cases() {
  std::vector<OpCase> cases;
  struct Variant {
    const char* name;
    bool weighted;
    float eps;
  };
  for (const Variant v : {Variant{"cross_entropy", false, 0.0f}, Variant{"cross_entropy_weighted", true, 0.0f},
                          Variant{"cross_entropy_smoothed", false, 0.1f},
                          Variant{"cross_entropy_weighted_smoothed", true, 0.2f}}) {
    OpCase c;
    c.name = v.name;
    c.input_shapes = {{Shape{1, 5}}, {Shape{7, 5}}, {Shape{3, 67}}, {Shape{2, 1}}, {Shape{257, 5}}, {Shape{5, 1000}}};
    c.output_shape = scalar_shape;
    const bool weighted = v.weighted;
    const float eps = v.eps;
    // Labels and weights on the device of `like`.
    auto operands = [weighted](CView logits, Device device) {
      const std::int64_t N = logits.shape()[0], K = logits.shape()[1];
      std::vector<Tensor> t;
      t.push_back(Tensor::from(loss_labels(N, K), Shape{N}, device));
      t.push_back(weighted ? Tensor::from(loss_class_weights(K), Shape{K}, device) : Tensor());
      return t;
    };
    c.run = [operands, eps](const Inputs& in, View out) {
      auto t = operands(in[0], out.device());
      cross_entropy_forward(in[0], t[0], t[1], eps, out);
    };
    c.reference = [weighted, eps](const std::vector<std::vector<double>>& x, const std::vector<Shape>& s) {
      const std::int64_t N = s[0][0], K = s[0][1];
      return std::vector<double>{cross_entropy_reference(
          x[0], N, K, loss_labels(N, K), weighted ? loss_class_weights(K) : std::vector<float>{}, eps)};
    };
    c.backward = [operands, eps](const Inputs& in, CView, CView dy, const std::vector<View>& dx) {
      auto t = operands(in[0], dx[0].device());
      cross_entropy_backward(in[0], t[0], t[1], eps, host_values(dy)[0], dx[0]);
    };
    c.differentiable = {true};
    c.forward_tol = {1e-6, 1e-5};
    c.cuda_tol = {1e-5, 1e-5};
    cases.push_back(c);
  }
  return cases;
}

inline std::vector<OpCase> mse_cases() {
  OpCase c;
  c.name = "mse";
  c.input_shapes = {{Shape{1}, Shape{1}},       {Shape{7}, Shape{7}},         {Shape{257, 1}, Shape{257, 1}},
                    {Shape{7, 1}, Shape{7}},    {Shape{33}, Shape{33, 1}},    {Shape{70000}, Shape{70000}}};
  c.output_shape = scalar_shape;
  c.run = [](const Inputs& in, View out) { mse_forward(in[0], in[1], out); };
  c.reference = [](const std::vector<std::vector<double>>& x, const std::vector<Shape>&) {
    double s = 0.0;
    for (std::size_t i = 0; i < x[0].size(); ++i) s += (x[0][i] - x[1][i]) * (x[0][i] - x[1][i]);
    return std::vector<double>{s / static_cast<double>(x[0].size())};
  };
  c.backward = [](const Inputs& in, CView, CView dy, const std::vector<View>& dx) {
    mse_backward(in[0], in[1], host_values(dy)[0], dx[0]);
  };
  c.differentiable = {true, false};
  c.forward_tol = {1e-6, 1e-5};
  c.cuda_tol = {1e-6, 1e-5};
  return {c};
}

inline std::vector<OpCase> nt_xent_cases() {
  std::vector<OpCase> cases;
  for (const float tau : {0.5f, 0.1f}) {
    OpCase c;
    c.name = tau == 0.5f ? "nt_xent" : "nt_xent_tau_0_1";
    // N = 1 (two rows), 3, 7, 257; D = 1, 2, 3, 33, 67, 128, 129 (two gradient dim chunks on CUDA).
    c.input_shapes = {{Shape{2, 2}}, {Shape{2, 1}}, {Shape{6, 3}},    {Shape{6, 67}},
                      {Shape{14, 33}}, {Shape{4, 129}}, {Shape{514, 128}}};
    c.output_shape = scalar_shape;
    // The harness's tolerances are fp32's: on CUDA the fp32 kernel runs (automatic would pick the TF32
    // tensor-core kernel, tested with its own tolerances in tests/cuda/test_contrastive_cuda.cpp).
    c.run = [tau](const Inputs& in, View out) {
      ScopedNtXentKernel simt(NtXentKernel::simt);
      const Shape& s = in[0].shape();
      Tensor lse(Shape{s[0]}, out.device()), zn(s, out.device());
      nt_xent_forward(in[0], tau, out, lse, zn);
    };
    c.reference = [tau](const std::vector<std::vector<double>>& x, const std::vector<Shape>& s) {
      return std::vector<double>{nt_xent_reference(x[0], s[0][0], s[0][1], tau)};
    };
    c.backward = [tau](const Inputs& in, CView, CView dy, const std::vector<View>& dx) {
      ScopedNtXentKernel simt(NtXentKernel::simt);
      const Shape& s = in[0].shape();
      const Device dev = dx[0].device();
      Tensor loss(Shape{}, dev), lse(Shape{s[0]}, dev), zn(s, dev);
      nt_xent_forward(in[0], tau, loss, lse, zn);
      nt_xent_backward(in[0], zn, lse, tau, host_values(dy)[0], dx[0]);
    };
    c.differentiable = {true};
    c.forward_tol = {1e-5, 1e-5};
    c.cuda_tol = {2e-5, 1e-4};
    c.grad_tol = {2e-4, 2e-3};
    cases.push_back(c);
  }
  {
    OpCase c;
    c.name = "contrastive_accuracy";  // on z = [z1; z1 + 0.5 z2]
    c.input_shapes = {{Shape{2, 2}}, {Shape{6, 3}}, {Shape{14, 4}}, {Shape{40, 5}}, {Shape{514, 16}}};
    c.output_shape = [](const std::vector<Shape>&) { return Shape{2}; };
    c.run = [](const Inputs& in, View out) {
      const std::int64_t M = in[0].shape()[0];
      Tensor z(in[0].shape(), out.device()), zn(in[0].shape(), out.device());
      copy(in[0], z);
      mix_views(in[0].batch(0, M / 2), in[0].batch(M / 2, M), z.batch(M / 2, M));
      l2_normalize_rows(z, zn);
      contrastive_accuracy(zn, out);
    };
    c.reference = [](const std::vector<std::vector<double>>& x, const std::vector<Shape>& s) {
      const std::int64_t M = s[0][0], D = s[0][1], N = M / 2;
      std::vector<double> first(x[0].begin(), x[0].begin() + N * D), second(x[0].begin() + N * D, x[0].end());
      auto z = first;
      const auto m = mixed(first, second);
      z.insert(z.end(), m.begin(), m.end());
      const auto zn = normalized_rows(z, M, D);
      std::vector<std::int64_t> above(static_cast<std::size_t>(M), 0);
      for (std::int64_t i = 0; i < M; ++i) {
        const std::int64_t pos = (i + N) % M;
        for (std::int64_t j = 0; j < M; ++j)
          if (j != i && j != pos && dot_rows(zn, i, zn, j, D) > dot_rows(zn, i, zn, pos, D)) ++above[i];
      }
      return accuracy_reference(above);
    };
    c.forward_tol = c.cuda_tol = {1e-7, 0};
    cases.push_back(c);
  }
  return cases;
}

inline std::vector<OpCase> infonce_cases() {
  std::vector<OpCase> cases;
  constexpr float kTau = 0.2f;
  // (N, D) with K = 1, 7, 4099 and D = 2, 5, 33, 128, 129.
  const std::vector<std::vector<Shape>> shapes = {
      {Shape{1, 2}, Shape{1, 2}, Shape{1, 2}},       {Shape{3, 5}, Shape{3, 5}, Shape{7, 5}},
      {Shape{5, 33}, Shape{5, 33}, Shape{7, 33}},    {Shape{67, 129}, Shape{67, 129}, Shape{7, 129}},
      {Shape{5, 33}, Shape{5, 33}, Shape{4099, 33}}, {Shape{4, 128}, Shape{4, 128}, Shape{4099, 128}}};
  {
    OpCase c;
    c.name = "infonce";
    c.input_shapes = shapes;
    c.output_shape = scalar_shape;
    c.run = [](const Inputs& in, View out) {
      const Shape& s = in[0].shape();
      Tensor lse(Shape{s[0]}, out.device()), qn(s, out.device()), kn(s, out.device());
      infonce_forward(in[0], in[1], in[2], kTau, out, lse, qn, kn);
    };
    c.reference = [](const std::vector<std::vector<double>>& x, const std::vector<Shape>& s) {
      return std::vector<double>{infonce_reference(x[0], x[1], x[2], s[0][0], s[2][0], s[0][1], kTau)};
    };
    c.backward = [](const Inputs& in, CView, CView dy, const std::vector<View>& dx) {
      const Shape& s = in[0].shape();
      const Device dev = dx[0].device();
      Tensor loss(Shape{}, dev), lse(Shape{s[0]}, dev), qn(s, dev), kn(s, dev);
      infonce_forward(in[0], in[1], in[2], kTau, loss, lse, qn, kn);
      infonce_backward(in[0], qn, kn, in[2], lse, kTau, host_values(dy)[0], dx[0]);
    };
    c.differentiable = {true, false, false};  // k: stop-gradient; the queue holds constants
    c.forward_tol = {1e-5, 1e-5};
    c.cuda_tol = {2e-5, 1e-4};
    c.grad_tol = {2e-4, 2e-3};
    cases.push_back(c);
  }
  {
    OpCase c;
    c.name = "infonce_accuracy";  // on k = q + 0.5 k
    c.input_shapes = shapes;
    c.output_shape = [](const std::vector<Shape>&) { return Shape{2}; };
    c.run = [](const Inputs& in, View out) {
      const Shape& s = in[0].shape();
      Tensor k(s, out.device()), qn(s, out.device()), kn(s, out.device());
      mix_views(in[0], in[1], k);
      l2_normalize_rows(in[0], qn);
      l2_normalize_rows(k, kn);
      infonce_accuracy(qn, kn, in[2], out);
    };
    c.reference = [](const std::vector<std::vector<double>>& x, const std::vector<Shape>& s) {
      const std::int64_t N = s[0][0], D = s[0][1], K = s[2][0];
      const auto qn = normalized_rows(x[0], N, D), kn = normalized_rows(mixed(x[0], x[1]), N, D);
      std::vector<std::int64_t> above(static_cast<std::size_t>(N), 0);
      for (std::int64_t i = 0; i < N; ++i)
        for (std::int64_t j = 0; j < K; ++j)
          if (dot_rows(qn, i, x[2], j, D) > dot_rows(qn, i, kn, i, D)) ++above[i];
      return accuracy_reference(above);
    };
    c.forward_tol = c.cuda_tol = {1e-7, 0};
    cases.push_back(c);
  }
  return cases;
}

inline std::vector<OpCase> loss_cases() {
  std::vector<OpCase> cases;
  for (auto* family : {&cross_entropy_cases, &mse_cases, &nt_xent_cases, &infonce_cases})
    for (auto& c : family()) cases.push_back(std::move(c));
  return cases;
}

}  // namespace fovea::testing
