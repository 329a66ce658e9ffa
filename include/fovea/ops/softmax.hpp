// fovea/ops/softmax.hpp: softmax and log-softmax over the class axis of (N, K) or (N, K, 1, 1)
// (PyTorch's dim = 1), numerically stable (the row maximum is subtracted before exp).
//
// Precision: the CPU twin sums exponentials in double, the CUDA twin (one warp per row) in float;
// expf is accurate to 2 ulp on both. In-place (y aliasing x, dx aliasing dy) is allowed exactly.
// A row whose maximum is +-inf or NaN gives NaN, as in PyTorch.
#pragma once

#include "fovea/core/tensor.hpp"
#include "fovea/cpu/softmax.hpp"
#include "fovea/cuda/softmax.hpp"

namespace fovea {

namespace detail {
inline void check_softmax(const char* op, const char* na, CView a, const char* nb, CView b,
                          const char* nout, CView out) {
  const Shape& s = a.shape();
  FOVEA_CHECK(s.rank() == 2 || (s.rank() == 4 && s[2] == 1 && s[3] == 1), op,
              ": input must be (N, K) or (N, K, 1, 1), got ", s.str());
  check_same_shape(op, na, s, nb, b.shape());
  check_same_shape(op, na, s, nout, out.shape());
  check_same_device(op, na, a.device(), nb, b.device());
  check_same_device(op, na, a.device(), nout, out.device());
}
}  // namespace detail

// softmax_forward: y[n, j] = exp(x[n, j] - m) / sum_k exp(x[n, k] - m), m = max_k x[n, k].
//   x, y (N, K) or (N, K, 1, 1).
inline void softmax_forward(CView x, View y) {
  detail::check_softmax("softmax_forward", "input", x, "input", x, "output", y);
  if (y.numel() == 0) return;
  if (y.device().is_cuda()) FOVEA_CUDA_CALL(cuda::softmax_forward(x, y));
  else cpu::softmax_forward(x, y);
}

// log_softmax_forward: y[n, j] = x[n, j] - m - log(sum_k exp(x[n, k] - m)).
//   x, y (N, K) or (N, K, 1, 1).
inline void log_softmax_forward(CView x, View y) {
  detail::check_softmax("log_softmax_forward", "input", x, "input", x, "output", y);
  if (y.numel() == 0) return;
  if (y.device().is_cuda()) FOVEA_CUDA_CALL(cuda::log_softmax_forward(x, y));
  else cpu::log_softmax_forward(x, y);
}

// softmax_backward: dx = y * (dy - sum_k dy[n, k] * y[n, k]), y the softmax output.
//   y, dy, dx (N, K) or (N, K, 1, 1).
inline void softmax_backward(CView y, CView dy, View dx) {
  detail::check_softmax("softmax_backward", "y", y, "dy", dy, "dx", dx);
  if (dx.numel() == 0) return;
  if (dx.device().is_cuda()) FOVEA_CUDA_CALL(cuda::softmax_backward(y, dy, dx));
  else cpu::softmax_backward(y, dy, dx);
}

// log_softmax_backward: dx = dy - exp(y) * sum_k dy[n, k], y the log-softmax output.
//   y, dy, dx (N, K) or (N, K, 1, 1).
inline void log_softmax_backward(CView y, CView dy, View dx) {
  detail::check_softmax("log_softmax_backward", "y", y, "dy", dy, "dx", dx);
  if (dx.numel() == 0) return;
  if (dx.device().is_cuda()) FOVEA_CUDA_CALL(cuda::log_softmax_backward(y, dy, dx));
  else cpu::log_softmax_backward(y, dy, dx);
}

}  // namespace fovea
