// fovea/ops/optim.hpp: fused multi-tensor ops for training: optimizer updates (SGD, AdamW, LARS),
// the global gradient norm and clipping, and the EMA of MoCo's key encoder. Each op covers every
// tensor of a MultiTensorTable (optim/multi_tensor.hpp) at once: on CUDA one launch per op (LARS:
// a norm launch, then the update launch), on the CPU one loop over the same element functors.
// All tensors of a table live on the table's device.
#pragma once

#include <vector>

#include "fovea/cpu/optim.hpp"
#include "fovea/cuda/optim.hpp"
#include "fovea/optim/multi_tensor.hpp"

namespace fovea {

namespace detail {
inline void check_states(const char* op, const MultiTensorTable& table, int states) {
  for (std::size_t t = 0; t < table.slots().size(); ++t) {
    const TensorSlot& s = table.slots()[t];
    if (s.numel == 0) continue;
    FOVEA_CHECK(states < 1 || s.state0 != nullptr, op, ": tensor ", t, " (", s.numel, " elements) has no state 0");
    FOVEA_CHECK(states < 2 || s.state1 != nullptr, op, ": tensor ", t, " (", s.numel, " elements) has no state 1");
  }
}
}  // namespace detail

// sgd_update: one torch.optim.SGD step on every tensor of the table (formula at SgdStep).
// Requires: state0 (momentum buffer) on every tensor when step.momentum != 0; tensors flagged
// kSlotNoDecay get weight decay 0.  Ensures: param and state0 updated in place; grad unchanged.
inline void sgd_update(MultiTensorTable& table, const SgdStep& step) {
  if (table.total_numel() == 0) return;
  detail::check_states("sgd_update", table, step.momentum != 0.0f ? 1 : 0);
  if (table.device().is_cuda()) FOVEA_CUDA_CALL(cuda::sgd_update(table, step));
  else cpu::sgd_update(table, step);
}

// adamw_update: one torch.optim.AdamW step (formula at AdamWStep; the caller passes the bias
// corrections of step t). Requires: state0 (m) and state1 (v) on every tensor.
// Ensures: param, m, v updated in place; grad unchanged.
inline void adamw_update(MultiTensorTable& table, const AdamWStep& step) {
  if (table.total_numel() == 0) return;
  detail::check_states("adamw_update", table, 2);
  FOVEA_CHECK(step.bias_correction1 > 0.0f && step.bias_correction2 > 0.0f,
              "adamw_update: bias corrections must be positive (step count >= 1), got ", step.bias_correction1, ", ",
              step.bias_correction2);
  if (table.device().is_cuda()) FOVEA_CUDA_CALL(cuda::adamw_update(table, step));
  else cpu::adamw_update(table, step);
}

// lars_update: one LARS step (formula at LarsStep; trust ratio at math::lars_trust_ratio) with
// per-tensor norms of the parameter and gradient taken before the update. Requires: state0
// (momentum) on every tensor. Tensors flagged kSlotNoAdapt use ratio 1, kSlotNoDecay decay 0.
inline void lars_update(MultiTensorTable& table, const LarsStep& step) {
  if (table.total_numel() == 0) return;
  detail::check_states("lars_update", table, 1);
  if (table.device().is_cuda()) FOVEA_CUDA_CALL(cuda::lars_update(table, step));
  else cpu::lars_update(table, step);
}

// lars_trust_ratios: the ratio lars_update would apply to each tensor now (for tests and logs).
inline std::vector<float> lars_trust_ratios(MultiTensorTable& table, const LarsStep& step) {
  if (table.device().is_cpu()) return cpu::lars_trust_ratios(table, step);
  std::vector<float> out(table.slots().size(), 1.0f);
  if (table.total_numel() > 0) FOVEA_CUDA_CALL(cuda::lars_trust_ratios(table, step, out.data()));
  return out;
}

// grad_norm: sqrt(sum over all tensors and elements of grad^2). Waits for the device.
inline float grad_norm(MultiTensorTable& table) {
  if (table.total_numel() == 0) return 0.0f;
  if (table.device().is_cuda()) {
#if FOVEA_WITH_CUDA
    return cuda::grad_norm(table);
#else
    detail::throw_no_cuda("grad_norm on a CUDA table");
#endif
  }
  return cpu::grad_norm(table);
}

// clip_grad_norm: torch.nn.utils.clip_grad_norm_ (L2): total = grad_norm(table); every grad is
// multiplied by min(1, max_norm / (total + 1e-6)). Returns total (before clipping). Waits for the
// device. Requires: max_norm > 0.
inline float clip_grad_norm(MultiTensorTable& table, float max_norm) {
  FOVEA_CHECK(max_norm > 0.0f, "clip_grad_norm: max_norm must be positive, got ", max_norm);
  if (table.total_numel() == 0) return 0.0f;
  if (table.device().is_cuda()) {
#if FOVEA_WITH_CUDA
    return cuda::clip_grad_norm(table, max_norm);
#else
    detail::throw_no_cuda("clip_grad_norm on a CUDA table");
#endif
  }
  return cpu::clip_grad_norm(table, max_norm);
}

// ema_update: param = momentum*param + (1-momentum)*grad for every element, where the table's
// param is the EMA target and its grad slot the source (MoCo key encoder: momentum 0.999).
// Requires: 0 <= momentum <= 1.
inline void ema_update(MultiTensorTable& table, float momentum) {
  FOVEA_CHECK(momentum >= 0.0f && momentum <= 1.0f, "ema_update: momentum must be in [0, 1], got ", momentum);
  if (table.total_numel() == 0) return;
  if (table.device().is_cuda()) FOVEA_CUDA_CALL(cuda::ema_update(table, momentum));
  else cpu::ema_update(table, momentum);
}

}  // namespace fovea
