// tests/cases/conv.hpp: harness cases for conv2d (forward, and backward data / filter / bias through
// the grad and cuda modes): a direct 7-loop reference in double, ResNet-like and awkward shapes.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "fovea/ops/conv.hpp"
#include "op_harness.hpp"

namespace fovea::testing {

// Direct convolution in double over inputs (x, w, b); b may be empty.
inline Reference conv2d_reference(Conv2dParams p) {
  return [p](const std::vector<std::vector<double>>& in, const std::vector<Shape>& shapes) {
    const Shape &xs = shapes[0], &ws = shapes[1];
    const std::int64_t N = xs[0], C = xs[1], H = xs[2], W = xs[3], K = ws[0], Cg = ws[1], R = ws[2], S = ws[3];
    const std::int64_t Kg = K / p.groups;
    const std::int64_t P = (H + 2 * p.pad_h - p.dilation_h * (R - 1) - 1) / p.stride_h + 1;
    const std::int64_t Q = (W + 2 * p.pad_w - p.dilation_w * (S - 1) - 1) / p.stride_w + 1;
    const auto &x = in[0], &w = in[1], &b = in[2];
    std::vector<double> y(static_cast<std::size_t>(N * K * P * Q));
    for (std::int64_t n = 0; n < N; ++n)
      for (std::int64_t k = 0; k < K; ++k)
        for (std::int64_t oh = 0; oh < P; ++oh)
          for (std::int64_t ow = 0; ow < Q; ++ow) {
            double acc = b.empty() ? 0.0 : b[static_cast<std::size_t>(k)];
            for (std::int64_t c = 0; c < Cg; ++c)
              for (std::int64_t r = 0; r < R; ++r)
                for (std::int64_t s = 0; s < S; ++s) {
                  const std::int64_t ih = oh * p.stride_h - p.pad_h + r * p.dilation_h;
                  const std::int64_t iw = ow * p.stride_w - p.pad_w + s * p.dilation_w;
                  if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
                  const std::int64_t ci = (k / Kg) * Cg + c;
                  acc += x[static_cast<std::size_t>(((n * C + ci) * H + ih) * W + iw)] *
                         w[static_cast<std::size_t>(((k * Cg + c) * R + r) * S + s)];
                }
            y[static_cast<std::size_t>(((n * K + k) * P + oh) * Q + ow)] = acc;
          }
    (void)C;
    return y;
  };
}

// The process-wide math settings with TF32 off, so the cuda mode compares fp32 against fp32.
inline MathSettings fp32_math() {
  MathSettings s = math_settings();
  s.allow_tf32 = false;
  return s;
}

// Sums the largest reduction of forward and backward (for tolerances that grow like sqrt(length)).
inline double conv2d_reduction_length(const std::vector<std::vector<Shape>>& sets, const Conv2dParams& p) {
  double longest = 1;
  for (const auto& s : sets) {
    const Shape y = conv2d_output_shape(s[0], s[1], p);
    const double fwd = static_cast<double>(s[1][1] * s[1][2] * s[1][3]);
    const double filter = static_cast<double>(y[0] * y[2] * y[3]);
    const double data = static_cast<double>(s[1][0] / p.groups * s[1][2] * s[1][3]);
    longest = std::max({longest, fwd, filter, data});
  }
  return longest;
}

// One case: shape sets {x, w, b} (b of shape (0) for none) under `params`.
inline OpCase conv2d_case(const std::string& name, Conv2dParams params, std::vector<std::vector<Shape>> sets,
                          bool with_bias = true) {
  OpCase c;
  c.name = "conv2d_" + name;
  if (!with_bias)
    for (auto& s : sets) s[2] = Shape{0};
  c.input_shapes = sets;
  c.output_shape = [params](const std::vector<Shape>& s) { return conv2d_output_shape(s[0], s[1], params); };
  c.run = [params](const Inputs& in, View out) {
    ScopedMathSettings fp32(fp32_math());
    conv2d_forward(in[0], in[1], in[2], out, params);
  };
  c.reference = conv2d_reference(params);
  c.backward = [params](const Inputs& in, CView, CView dy, const std::vector<View>& grads) {
    ScopedMathSettings fp32(fp32_math());
    conv2d_backward_data(dy, in[1], grads[0], params);
    conv2d_backward_filter(in[0], dy, grads[1], params);
    if (grads[2].data() != nullptr) conv2d_backward_bias(dy, grads[2]);
  };
  c.differentiable = {true, true, with_bias};
  const double root = std::sqrt(conv2d_reduction_length(sets, params));
  c.forward_tol = {2e-6 * root, 1e-5};
  c.cuda_tol = {5e-5 * root, 1e-4};
  c.grad_tol = {1e-4 * std::max(1.0, root / 8), 1e-3};
  return c;
}

inline std::vector<OpCase> conv_cases() {
  using S = Shape;
  std::vector<OpCase> cases;
  // ResNet 3x3 body conv; small sets first (grad mode), then C = 67 and H = W = 33, and H = W = 1.
  cases.push_back(conv2d_case("3x3_s1_p1", {1, 1, 1, 1},
                              {{S{3, 3, 7, 7}, S{4, 3, 3, 3}, S{4}},
                               {S{5, 3, 1, 1}, S{4, 3, 3, 3}, S{4}},
                               {S{1, 67, 7, 7}, S{5, 67, 3, 3}, S{5}},
                               {S{3, 16, 33, 33}, S{67, 16, 3, 3}, S{67}},
                               // the weight gradient's image groups: 3 + 2 images of 400 pixels
                               {S{5, 3, 20, 20}, S{4, 3, 3, 3}, S{4}}}));
  cases.push_back(conv2d_case("3x3_s1_p1_nobias", {1, 1, 1, 1}, {{S{3, 3, 7, 7}, S{4, 3, 3, 3}, S{0}}}, false));
  // ResNet v1.5 downsampling 3x3 (stride 2) and the 7x7 stem (stride 2, pad 3).
  cases.push_back(conv2d_case("3x3_s2_p1", {2, 2, 1, 1},
                              {{S{3, 4, 7, 7}, S{5, 4, 3, 3}, S{5}},
                               {S{1, 3, 1, 1}, S{2, 3, 3, 3}, S{2}},
                               {S{2, 3, 33, 33}, S{6, 3, 3, 3}, S{6}}}));
  cases.push_back(conv2d_case("7x7_s2_p3", {2, 2, 3, 3},
                              {{S{1, 3, 9, 9}, S{2, 3, 7, 7}, S{2}},
                               {S{3, 3, 1, 1}, S{4, 3, 7, 7}, S{4}},
                               {S{2, 3, 33, 33}, S{8, 3, 7, 7}, S{8}},
                               {S{1, 3, 65, 65}, S{64, 3, 7, 7}, S{64}}}));
  cases.push_back(conv2d_case("7x7_s1_p0", {1, 1, 0, 0}, {{S{3, 2, 9, 8}, S{3, 2, 7, 7}, S{3}}}));
  // 1x1 convolutions: the pointwise path (stride 1) and the projection shortcut (stride 2).
  cases.push_back(conv2d_case("1x1_s1_p0", {1, 1, 0, 0},
                              {{S{3, 5, 4, 4}, S{7, 5, 1, 1}, S{7}},
                               {S{5, 67, 1, 1}, S{3, 67, 1, 1}, S{3}},
                               {S{3, 67, 7, 7}, S{129, 67, 1, 1}, S{129}},
                               {S{9, 4, 12, 12}, S{5, 4, 1, 1}, S{5}}}));  // image groups of 8 + 1
  cases.push_back(conv2d_case("1x1_s2_p0", {2, 2, 0, 0},
                              {{S{3, 8, 7, 7}, S{6, 8, 1, 1}, S{6}}, {S{1, 67, 33, 33}, S{16, 67, 1, 1}, S{16}}}));
  // Awkward: dilation 2, a non-square kernel with per-axis stride and pad, groups.
  cases.push_back(conv2d_case("3x3_dilation2", {1, 1, 2, 2, 2, 2},
                              {{S{3, 3, 9, 9}, S{4, 3, 3, 3}, S{4}}, {S{1, 5, 7, 7}, S{3, 5, 3, 3}, S{3}}}));
  cases.push_back(conv2d_case("3x5_s2x1_p0x1", {2, 1, 0, 1},
                              {{S{3, 3, 9, 7}, S{4, 3, 3, 5}, S{4}}, {S{1, 3, 3, 5}, S{2, 3, 3, 5}, S{2}}}));
  cases.push_back(
      conv2d_case("3x3_groups2", {1, 1, 1, 1, 1, 1, 2},
                  {{S{3, 4, 7, 7}, S{6, 2, 3, 3}, S{6}}, {S{13, 4, 10, 10}, S{6, 2, 3, 3}, S{6}}}));
  cases.push_back(conv2d_case("3x3_depthwise", {2, 2, 1, 1, 1, 1, 3}, {{S{3, 3, 7, 7}, S{3, 1, 3, 3}, S{3}}}));
  return cases;
}

}  // namespace fovea::testing
