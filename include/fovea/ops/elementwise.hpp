// fovea/ops/elementwise.hpp: element-wise ops. Each checks shapes and devices, then runs its cpu::
// or cuda:: twin according to the output's device. All tensors of one call live on one device.
// Outputs may alias an input exactly (in place); partial overlap is not allowed.
#pragma once

#include <cstdint>
#include <vector>

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

// lerp: out[i] = a[i] + t (b[i] - a[i]), the product rounded on its own (the same bits on the CPU and
// the GPU).  Requires: a, b, out of one shape and device.
inline void lerp(CView a, CView b, float t, View out) {
  detail::check_binary("lerp", "a", a, "b", b, out);
  if (out.device().is_cuda()) FOVEA_CUDA_CALL(cuda::lerp(a, b, t, out));
  else cpu::lerp(a, b, t, out);
}

// accumulate_scaled: a sum in double over calls. acc holds x.numel() doubles in the storage of 2
// x.numel() floats (make one with double_accumulator); each call sets acc[i] = (start ? 0 : acc[i])
// + weight * x[i], the product rounded on its own, so a sequence of calls gives the same bits on the
// CPU and the GPU (and as a host loop `double s = 0; s += weight * x` would). Read the result with
// read_double_accumulator.  Requires: acc a contiguous 1-D view of 2 x.numel() floats, 8-byte
// aligned, on x's device.
inline void accumulate_scaled(CView x, double weight, View acc, bool start) {
  FOVEA_CHECK(acc.shape() == Shape{2 * x.numel()}, "accumulate_scaled: accumulator ", acc.shape().str(),
              " for ", x.numel(), " values (it needs 2 floats per value)");
  FOVEA_CHECK(reinterpret_cast<std::uintptr_t>(acc.data()) % alignof(double) == 0,
              "accumulate_scaled: the accumulator is not 8-byte aligned");
  check_same_device("accumulate_scaled", "x", x.device(), "accumulator", acc.device());
  if (acc.device().is_cuda()) FOVEA_CUDA_CALL(cuda::accumulate_scaled(x, weight, acc, start));
  else cpu::accumulate_scaled(x, weight, acc, start);
}

// An accumulator of n doubles for accumulate_scaled, on `device` (its contents start undefined: the
// first call passes start = true).
inline Tensor double_accumulator(std::int64_t n, Device device) { return Tensor(Shape{2 * n}, device); }

// The doubles of an accumulator, on the host (waits for the work queued on its device).
inline std::vector<double> read_double_accumulator(CView acc) {
  std::vector<double> out(static_cast<std::size_t>(acc.numel() / 2));
  if (!out.empty()) copy(acc, View(reinterpret_cast<float*>(out.data()), acc.shape(), Device::cpu()));
  return out;
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
