// fovea/ops/conv.hpp: 2-D convolution (cross-correlation, NCHW, PyTorch Conv2d semantics): forward,
// and the three backward ops. CPU: im2col per image + cpu::gemm; CUDA: cuDNN (kernels/conv.cuh).
#pragma once

#include <string>

#include "fovea/core/tensor.hpp"
#include "fovea/cpu/conv.hpp"
#include "fovea/cuda/conv.hpp"
#include "fovea/ops/blas.hpp"

namespace fovea {

// The cuDNN path reads the process-wide math_settings() (ops/blas.hpp): allow_tf32 (default true)
// and deterministic (default false). ConvSettings names the same struct for convolution users.
using ConvSettings = MathSettings;

namespace detail {
// Throws unless `got` equals `expect`, naming the op, both shapes and the operands that fix `expect`.
inline void conv2d_check_shape(const char* op, const char* name, const Shape& got, const Shape& expect,
                               const char* na, const Shape& a, const char* nb, const Shape& b,
                               const Conv2dParams& p) {
  if (!(got == expect))
    throw Error(std::string(op) + ": shape mismatch: " + name + " " + got.str() + " vs expected " + expect.str() +
                " for " + na + " " + a.str() + ", " + nb + " " + b.str() + ", " + p.str());
}
inline Shape conv2d_expected_output(const char* op, const Shape& x, const Shape& w, const Conv2dParams& p) {
  const auto g = conv2d_geometry(op, x, w, p);
  return Shape{g.N, g.K, g.P, g.Q};
}
inline void conv2d_check_devices(const char* op, CView a, const char* na, CView b, const char* nb, CView out,
                                 const char* nout) {
  check_same_device(op, na, a.device(), nout, out.device());
  check_same_device(op, nb, b.device(), nout, out.device());
}
}  // namespace detail

// conv2d_forward: y[n, k, p, q] = bias[k] + sum over c in k's group, r, s of
//     x[n, c, p * stride_h - pad_h + r * dilation_h, q * stride_w - pad_w + s * dilation_w] * w[k, c', r, s]
// (x read as zero outside the image).
//   x    (N, C, H, W)
//   w    (K, C / groups, R, S)
//   bias (K), or CView() / a view of 0 elements for none
//   y    (N, K, P, Q) == conv2d_output_shape(x, w, params)
//   Requires: groups divides C and K; all tensors on one device; y overlaps no input.
//   Ensures:  every element of y is written. CUDA: cuDNN, TF32 unless math_settings().allow_tf32 is
//             false (then ~1e-6 relative to the fp32 CPU result, summation order differs).
inline void conv2d_forward(CView x, CView w, CView bias, View y, const Conv2dParams& params) {
  const Shape expect = detail::conv2d_expected_output("conv2d_forward", x.shape(), w.shape(), params);
  detail::conv2d_check_shape("conv2d_forward", "output y", y.shape(), expect, "input x", x.shape(), "weight w",
                             w.shape(), params);
  if (detail::is_present(bias)) {
    check_same_shape("conv2d_forward", "bias", bias.shape(), "expected bias (K)", Shape{w.shape()[0]});
    check_same_device("conv2d_forward", "bias", bias.device(), "output y", y.device());
  }
  detail::conv2d_check_devices("conv2d_forward", x, "input x", w, "weight w", y, "output y");
  if (y.device().is_cuda()) FOVEA_CUDA_CALL(cuda::conv2d_forward(x, w, bias, y, params));
  else cpu::conv2d_forward(x, w, bias, y, params);
}

// conv2d_backward_data: dx = the gradient of sum(dy * conv2d_forward(x, w)) with respect to x
// (a transposed convolution of dy with w).
//   dy (N, K, P, Q) == conv2d_output_shape(dx, w, params)
//   w  (K, C / groups, R, S)
//   dx (N, C, H, W), overwritten (input pixels no kernel tap reads get 0)
//   Requires: all on one device; dx overlaps no input.
inline void conv2d_backward_data(CView dy, CView w, View dx, const Conv2dParams& params) {
  const Shape expect = detail::conv2d_expected_output("conv2d_backward_data", dx.shape(), w.shape(), params);
  detail::conv2d_check_shape("conv2d_backward_data", "output gradient dy", dy.shape(), expect, "dx", dx.shape(),
                             "weight w", w.shape(), params);
  detail::conv2d_check_devices("conv2d_backward_data", dy, "dy", w, "weight w", dx, "dx");
  if (dx.device().is_cuda()) FOVEA_CUDA_CALL(cuda::conv2d_backward_data(dy, w, dx, params));
  else cpu::conv2d_backward_data(dy, w, dx, params);
}

// conv2d_backward_filter: dw (+)= the gradient of sum(dy * conv2d_forward(x, w)) with respect to w,
// summed over the batch.
//   x  (N, C, H, W)
//   dy (N, K, P, Q) == conv2d_output_shape(x, dw, params)
//   dw (K, C / groups, R, S): overwritten, or added to when `accumulate`
//   Requires: all on one device; dw overlaps no input. N == 0 gives dw = 0 (or leaves it when
//             accumulating). CUDA: with math_settings().deterministic false, cuDNN may pick an
//             algorithm whose result varies in the last bits from run to run.
inline void conv2d_backward_filter(CView x, CView dy, View dw, const Conv2dParams& params, bool accumulate = false) {
  const Shape expect = detail::conv2d_expected_output("conv2d_backward_filter", x.shape(), dw.shape(), params);
  detail::conv2d_check_shape("conv2d_backward_filter", "output gradient dy", dy.shape(), expect, "input x",
                             x.shape(), "dw", dw.shape(), params);
  detail::conv2d_check_devices("conv2d_backward_filter", x, "input x", dy, "dy", dw, "dw");
  if (dw.device().is_cuda()) FOVEA_CUDA_CALL(cuda::conv2d_backward_filter(x, dy, dw, params, accumulate));
  else cpu::conv2d_backward_filter(x, dy, dw, params, accumulate);
}

// conv2d_backward_bias: db[k] = sum over n, p, q of dy[n, k, p, q].
//   dy (N, K, P, Q)
//   db (K), overwritten
//   Requires: one device. The CPU twin accumulates in double.
inline void conv2d_backward_bias(CView dy, View db) {
  FOVEA_CHECK(dy.shape().rank() == 4, "conv2d_backward_bias: dy must be (N, K, P, Q), got ", dy.shape().str(),
              " with db ", db.shape().str());
  check_same_shape("conv2d_backward_bias", "bias gradient db", db.shape(), "expected (K) from dy",
                   Shape{dy.shape()[1]});
  check_same_device("conv2d_backward_bias", "dy", dy.device(), "db", db.device());
  if (db.device().is_cuda()) FOVEA_CUDA_CALL(cuda::conv2d_backward_bias(dy, db));
  else cpu::conv2d_backward_bias(dy, db);
}

// Allocating form: y on x's device.
inline Tensor conv2d_forward(CView x, CView w, CView bias, const Conv2dParams& params) {
  Tensor y(conv2d_output_shape(x.shape(), w.shape(), params), x.device());
  conv2d_forward(x, w, bias, y, params);
  return y;
}

}  // namespace fovea
