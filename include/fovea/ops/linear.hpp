// fovea/ops/linear.hpp: the fully connected layer in PyTorch layout (y = x wᵀ + b) and its backward
// ops. CPU: cpu::gemm (OpenBLAS when built with it); CUDA: cuBLAS (kernels/linear.cuh).
#pragma once

#include <cstdint>
#include <string>

#include "fovea/core/tensor.hpp"
#include "fovea/cpu/linear.hpp"
#include "fovea/cuda/linear.hpp"
#include "fovea/ops/blas.hpp"

namespace fovea {

namespace detail {
// Throws unless x reads as (N, F): rank >= 2, axis 0 == N and the rest F elements per sample, so
// (N, C, 1, 1) from global pooling passes as (N, C).
inline void linear_check_rows(const char* op, const char* name, const Shape& x, std::int64_t N, std::int64_t F,
                              const char* other, const Shape& o) {
  if (x.rank() < 2 || x[0] != N || x.sample_numel() != F)
    throw Error(std::string(op) + ": shape mismatch: " + name + " " + x.str() + " does not read as (N, F) = (" +
                std::to_string(N) + ", " + std::to_string(F) + ") for " + other + " " + o.str());
}
inline void linear_check_weight(const char* op, const Shape& w) {
  FOVEA_CHECK(w.rank() == 2, op, ": weight must be (O, F), got ", w.str());
}
}  // namespace detail

// linear_forward: y[n, o] = b[o] + sum_f x[n, f] * w[o, f].
//   x (N, F), or any rank >= 2 with axis 0 == N and F elements per sample (e.g. (N, C, 1, 1), F = C)
//   w (O, F)
//   b (O), or CView() / a view of 0 elements for none
//   y (N, O)
//   Requires: one device; y overlaps no input. Ensures: every element of y written. CUDA: cuBLAS,
//             TF32 unless math_settings().allow_tf32 is false.
inline void linear_forward(CView x, CView w, CView b, View y) {
  detail::linear_check_weight("linear_forward", w.shape());
  const std::int64_t O = w.shape()[0], F = w.shape()[1];
  FOVEA_CHECK(y.shape().rank() == 2 && y.shape()[1] == O, "linear_forward: output y ", y.shape().str(),
              " must be (N, O) with O = ", O, " from weight ", w.shape().str());
  detail::linear_check_rows("linear_forward", "input x", x.shape(), y.shape()[0], F, "weight", w.shape());
  if (detail::is_present(b)) {
    check_same_shape("linear_forward", "bias", b.shape(), "expected bias (O)", Shape{O});
    check_same_device("linear_forward", "bias", b.device(), "output y", y.device());
  }
  check_same_device("linear_forward", "input x", x.device(), "output y", y.device());
  check_same_device("linear_forward", "weight w", w.device(), "output y", y.device());
  if (y.device().is_cuda()) FOVEA_CUDA_CALL(cuda::linear_forward(x, w, b, y));
  else cpu::linear_forward(x, w, b, y);
}

// linear_backward_data: dx = dy w.
//   dy (N, O); w (O, F); dx (N, F) or any shape linear_forward accepts for x, overwritten.
inline void linear_backward_data(CView dy, CView w, View dx) {
  detail::linear_check_weight("linear_backward_data", w.shape());
  const std::int64_t O = w.shape()[0], F = w.shape()[1];
  FOVEA_CHECK(dy.shape().rank() == 2 && dy.shape()[1] == O, "linear_backward_data: dy ", dy.shape().str(),
              " must be (N, O) with O = ", O, " from weight ", w.shape().str());
  detail::linear_check_rows("linear_backward_data", "dx", dx.shape(), dy.shape()[0], F, "weight", w.shape());
  check_same_device("linear_backward_data", "dy", dy.device(), "dx", dx.device());
  check_same_device("linear_backward_data", "weight w", w.device(), "dx", dx.device());
  if (dx.device().is_cuda()) FOVEA_CUDA_CALL(cuda::linear_backward_data(dy, w, dx));
  else cpu::linear_backward_data(dy, w, dx);
}

// linear_backward_weight: dw (+)= dyᵀ x, summed over the batch.
//   x (N, F) or any shape linear_forward accepts; dy (N, O); dw (O, F), overwritten or added to
//   when `accumulate`. N == 0 gives dw = 0 (or leaves it when accumulating).
inline void linear_backward_weight(CView x, CView dy, View dw, bool accumulate = false) {
  detail::linear_check_weight("linear_backward_weight", dw.shape());
  const std::int64_t O = dw.shape()[0], F = dw.shape()[1];
  FOVEA_CHECK(dy.shape().rank() == 2 && dy.shape()[1] == O, "linear_backward_weight: dy ", dy.shape().str(),
              " must be (N, O) with O = ", O, " from dw ", dw.shape().str());
  detail::linear_check_rows("linear_backward_weight", "input x", x.shape(), dy.shape()[0], F, "dw", dw.shape());
  check_same_device("linear_backward_weight", "input x", x.device(), "dw", dw.device());
  check_same_device("linear_backward_weight", "dy", dy.device(), "dw", dw.device());
  if (dw.device().is_cuda()) FOVEA_CUDA_CALL(cuda::linear_backward_weight(x, dy, dw, accumulate));
  else cpu::linear_backward_weight(x, dy, dw, accumulate);
}

// linear_backward_bias: db[o] = sum_n dy[n, o].
//   dy (N, O); db (O), overwritten. The CPU twin accumulates in double.
inline void linear_backward_bias(CView dy, View db) {
  FOVEA_CHECK(dy.shape().rank() == 2, "linear_backward_bias: dy must be (N, O), got ", dy.shape().str(),
              " with db ", db.shape().str());
  check_same_shape("linear_backward_bias", "bias gradient db", db.shape(), "expected (O) from dy",
                   Shape{dy.shape()[1]});
  check_same_device("linear_backward_bias", "dy", dy.device(), "db", db.device());
  if (db.device().is_cuda()) FOVEA_CUDA_CALL(cuda::linear_backward_bias(dy, db));
  else cpu::linear_backward_bias(dy, db);
}

// Allocating form: y (N, O) on x's device.
inline Tensor linear_forward(CView x, CView w, CView b) {
  detail::linear_check_weight("linear_forward", w.shape());
  FOVEA_CHECK(x.shape().rank() >= 2, "linear_forward: input x must be (N, F, ...), got ", x.shape().str());
  Tensor y(Shape{x.shape()[0], w.shape()[0]}, x.device());
  linear_forward(x, w, b, y);
  return y;
}

}  // namespace fovea
