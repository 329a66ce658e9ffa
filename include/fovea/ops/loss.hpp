// fovea/ops/loss.hpp: supervised losses with mean reduction: softmax cross-entropy with PyTorch's
// semantics (class weights, label smoothing) and mean squared error for regression-style grading.
//
// Labels are fp32 tensors holding integer class indices (fovea tensors are fp32 only). The CPU twin
// throws fovea::Error for a label that is not an integer in [0, K); the CUDA twin cannot throw from a
// kernel: it writes NaN into the loss (forward) and into dlogits (backward: the label's row, and every
// other row too, since the normaliser sum_n w_{y_n} is NaN).
// Precision: the CPU twin accumulates row sums and the batch mean in double; the CUDA twin (one warp
// per row) sums a row in float and the batch in double.
#pragma once

#include <cstdint>

#include "fovea/core/tensor.hpp"
#include "fovea/cpu/loss.hpp"
#include "fovea/cuda/loss.hpp"

namespace fovea {

namespace detail {
inline void check_scalar_out(const char* op, const char* name, CView v) {
  FOVEA_CHECK(v.numel() == 1 && v.shape().rank() <= 1, op, ": ", name, " must be a scalar () or (1), got ",
              v.shape().str());
}
inline void check_cross_entropy(const char* op, CView logits, CView labels, CView weights, float smoothing,
                                CView out) {
  const Shape& s = logits.shape();
  FOVEA_CHECK(s.rank() == 2 && s[0] >= 1 && s[1] >= 1, op, ": logits must be (N, K) with N, K >= 1, got ",
              s.str());
  check_same_shape(op, "labels", labels.shape(), "expected (N) from logits", Shape{s[0]});
  if (is_present(weights)) {
    check_same_shape(op, "class weights", weights.shape(), "expected (K) from logits", Shape{s[1]});
    check_same_device(op, "class weights", weights.device(), "logits", logits.device());
  }
  FOVEA_CHECK(smoothing >= 0.0f && smoothing <= 1.0f, op, ": label smoothing must be in [0, 1], got ", smoothing);
  check_same_device(op, "labels", labels.device(), "logits", logits.device());
  check_same_device(op, "output", out.device(), "logits", logits.device());
}
inline void check_mse(const char* op, CView pred, CView target, CView out) {
  const Shape& p = pred.shape();
  FOVEA_CHECK((p.rank() == 1 || (p.rank() == 2 && p[1] == 1)) && p[0] >= 1, op,
              ": pred must be (N) or (N, 1) with N >= 1, got ", p.str());
  FOVEA_CHECK(target.numel() == pred.numel() && target.shape().rank() >= 1 && target.shape()[0] == p[0] &&
                  target.shape().rank() <= 2,
              op, ": target ", target.shape().str(), " must be (N) or (N, 1) matching pred ", p.str());
  check_same_device(op, "target", target.device(), "pred", pred.device());
  check_same_device(op, "output", out.device(), "pred", pred.device());
}
}  // namespace detail

// cross_entropy_forward: torch.nn.functional.cross_entropy(logits, labels, weight, label_smoothing=eps,
// reduction='mean'):
//   lse_n = log sum_j exp(x[n, j]); y = labels[n]; w = weights (all ones when absent)
//   loss = sum_n [(1 - eps) w_y (lse_n - x[n, y]) + (eps / K) sum_j w_j (lse_n - x[n, j])] / sum_n w_{y_n}
//   (without weights the denominator is N: a plain mean; with weights both terms are divided by
//   sum_n w_{y_n}, exactly as PyTorch does; sum_n w_{y_n} = 0 gives NaN, as in PyTorch).
//   logits (N, K); labels (N), integer class indices stored as floats; weights (K) or CView() for none;
//   smoothing eps in [0, 1]; loss () or (1). No ignore_index.
inline void cross_entropy_forward(CView logits, CView labels, CView weights, float smoothing, View loss) {
  detail::check_cross_entropy("cross_entropy_forward", logits, labels, weights, smoothing, loss);
  detail::check_scalar_out("cross_entropy_forward", "loss", loss);
  if (loss.device().is_cuda()) FOVEA_CUDA_CALL(cuda::cross_entropy_forward(logits, labels, weights, smoothing, loss));
  else cpu::cross_entropy_forward(logits, labels, weights, smoothing, loss);
}

// cross_entropy_backward: dlogits = d loss / d logits * dloss, recomputing the softmax p from logits:
//   dlogits[n, k] = dloss / sum_m w_{y_m} * [(1 - eps) w_y (p[n, k] - [k == y]) + (eps / K)(p[n, k] W - w_k)],
//   W = sum_j w_j (K without weights). Same operands as the forward; dlogits (N, K), overwritten.
inline void cross_entropy_backward(CView logits, CView labels, CView weights, float smoothing, float dloss,
                                   View dlogits) {
  detail::check_cross_entropy("cross_entropy_backward", logits, labels, weights, smoothing, dlogits);
  check_same_shape("cross_entropy_backward", "dlogits", dlogits.shape(), "logits", logits.shape());
  if (dlogits.device().is_cuda())
    FOVEA_CUDA_CALL(cuda::cross_entropy_backward(logits, labels, weights, smoothing, dloss, dlogits));
  else cpu::cross_entropy_backward(logits, labels, weights, smoothing, dloss, dlogits);
}

// mse_forward: loss = (1 / N) sum_n (pred[n] - target[n])^2 (torch.nn.functional.mse_loss, mean).
//   pred (N) or (N, 1); target (N) or (N, 1) (either layout with either); loss () or (1).
inline void mse_forward(CView pred, CView target, View loss) {
  detail::check_mse("mse_forward", pred, target, loss);
  detail::check_scalar_out("mse_forward", "loss", loss);
  if (loss.device().is_cuda()) FOVEA_CUDA_CALL(cuda::mse_forward(pred, target, loss));
  else cpu::mse_forward(pred, target, loss);
}

// mse_backward: dpred[n] = (2 dloss / N) (pred[n] - target[n]). dpred like pred, overwritten. The target's
// gradient, if wanted, is -dpred.
inline void mse_backward(CView pred, CView target, float dloss, View dpred) {
  detail::check_mse("mse_backward", pred, target, dpred);
  check_same_shape("mse_backward", "dpred", dpred.shape(), "pred", pred.shape());
  if (dpred.device().is_cuda()) FOVEA_CUDA_CALL(cuda::mse_backward(pred, target, dloss, dpred));
  else cpu::mse_backward(pred, target, dloss, dpred);
}

}  // namespace fovea
