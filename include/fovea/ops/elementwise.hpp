// fovea/ops/elementwise.hpp: element-wise ops. Each checks shapes and devices, then runs its cpu::
// or cuda:: twin according to the output's device. All tensors of one call live on one device.
// Outputs may alias an input exactly (in place); partial overlap is not allowed.
#pragma once

#include "fovea/core/tensor.hpp"
#include "fovea/cpu/elementwise.hpp"
#include "fovea/cuda/ops.hpp"

namespace fovea {

namespace detail {
inline void check_unary(const char* op, CView x, CView out) {
  check_same_shape(op, "input", x.shape(), "output", out.shape());
  check_same_device(op, "input", x.device(), "output", out.device());
}
inline void check_binary(const char* op, const char* na, CView a, const char* nb, CView b, CView out) {
  check_same_shape(op, na, a.shape(), nb, b.shape());
  check_same_shape(op, na, a.shape(), "output", out.shape());
  check_same_device(op, na, a.device(), nb, b.device());
  check_same_device(op, na, a.device(), "output", out.device());
}
}  // namespace detail

// fill: out[i] = value.
inline void fill(View out, float value) {
  if (out.device().is_cuda()) FOVEA_CUDA_CALL(cuda::fill(out, value));
  else cpu::fill(out, value);
}

// scale: out[i] = alpha * x[i].  Requires: x and out of one shape and device.
inline void scale(CView x, float alpha, View out) {
  detail::check_unary("scale", x, out);
  if (out.device().is_cuda()) FOVEA_CUDA_CALL(cuda::scale(x, alpha, out));
  else cpu::scale(x, alpha, out);
}

// axpy: y[i] = alpha * x[i] + y[i] (BLAS semantics, y updated in place).
inline void axpy(float alpha, CView x, View y) {
  detail::check_unary("axpy", x, y);
  if (y.device().is_cuda()) FOVEA_CUDA_CALL(cuda::axpy(alpha, x, y));
  else cpu::axpy(alpha, x, y);
}

// add: out[i] = a[i] + b[i].  Requires: a, b, out of one shape and device.
inline void add(CView a, CView b, View out) {
  detail::check_binary("add", "a", a, "b", b, out);
  if (out.device().is_cuda()) FOVEA_CUDA_CALL(cuda::add(a, b, out));
  else cpu::add(a, b, out);
}

// multiply: out[i] = a[i] * b[i].  Requires: a, b, out of one shape and device.
inline void multiply(CView a, CView b, View out) {
  detail::check_binary("multiply", "a", a, "b", b, out);
  if (out.device().is_cuda()) FOVEA_CUDA_CALL(cuda::multiply(a, b, out));
  else cpu::multiply(a, b, out);
}

// relu_forward: y[i] = max(x[i], 0); NaN stays NaN.
inline void relu_forward(CView x, View y) {
  detail::check_unary("relu_forward", x, y);
  if (y.device().is_cuda()) FOVEA_CUDA_CALL(cuda::relu_forward(x, y));
  else cpu::relu_forward(x, y);
}

// relu_backward: dx[i] = dy[i] if x[i] > 0 else 0. `x` may be the forward input or output (same
// sign pattern), so the input need not be kept.  Requires: x, dy, dx of one shape and device.
inline void relu_backward(CView x, CView dy, View dx) {
  detail::check_binary("relu_backward", "x", x, "dy", dy, dx);
  if (dx.device().is_cuda()) FOVEA_CUDA_CALL(cuda::relu_backward(x, dy, dx));
  else cpu::relu_backward(x, dy, dx);
}

// A tensor of `shape` on `device` with every element `value`.
inline Tensor full(const Shape& shape, float value, Device device = Device::cpu()) {
  Tensor t(shape, device);
  fill(t, value);
  return t;
}
inline Tensor zeros(const Shape& shape, Device device = Device::cpu()) {
  return full(shape, 0.0f, device);
}

}  // namespace fovea
