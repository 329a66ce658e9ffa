// fovea/cpu/optim.hpp: CPU twins of the fused multi-tensor ops (contracts in ops/optim.hpp): the
// same element functors as the CUDA kernels, norms accumulated in double (the accuracy reference).
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

#include "fovea/optim/multi_tensor.hpp"

namespace fovea::cpu {

namespace optim_detail {

// Runs `u` over every element of every tensor; ratios (one per tensor) may be null (all 1).
template <class U>
void apply_update(const MultiTensorTable& table, const U& u, float weight_decay, const float* ratios) {
  const auto& slots = table.slots();
  for (std::size_t t = 0; t < slots.size(); ++t) {
    const TensorSlot& s = slots[t];
    const float decay = (s.flags & kSlotNoDecay) ? 0.0f : weight_decay;
    const float ratio = ratios ? ratios[t] : 1.0f;
    float unused0 = 0.0f, unused1 = 0.0f;
    for (std::int64_t i = 0; i < s.numel; ++i) {
      float& s0 = U::kStates >= 1 ? s.state0[i] : unused0;
      float& s1 = U::kStates >= 2 ? s.state1[i] : unused1;
      u(s.param[i], s.grad[i], s0, s1, decay, ratio);
    }
  }
}

struct TensorSums {
  double w2 = 0.0, g2 = 0.0, wg = 0.0;
};
inline std::vector<TensorSums> tensor_sums(const MultiTensorTable& table) {
  std::vector<TensorSums> sums(table.slots().size());
  for (std::size_t t = 0; t < sums.size(); ++t) {
    const TensorSlot& s = table.slots()[t];
    for (std::int64_t i = 0; i < s.numel; ++i) {
      const double p = s.param[i], g = s.grad[i];
      sums[t].w2 += p * p;
      sums[t].g2 += g * g;
      sums[t].wg += p * g;
    }
  }
  return sums;
}

}  // namespace optim_detail

inline void sgd_update(const MultiTensorTable& table, const SgdStep& s) {
  if (s.momentum == 0.0f) {
    optim_detail::apply_update(table, math::SgdPlainElement{s.lr}, s.weight_decay, nullptr);
  } else {
    optim_detail::apply_update(table, math::SgdMomentumElement{s.lr, s.momentum, s.dampening, s.nesterov, s.first},
                         s.weight_decay, nullptr);
  }
}

inline void adamw_update(const MultiTensorTable& table, const AdamWStep& s) {
  optim_detail::apply_update(table, math::adamw_element(s), s.weight_decay, nullptr);
}

// The per-tensor trust ratios LARS applies (1 for tensors flagged kSlotNoAdapt).
inline std::vector<float> lars_trust_ratios(const MultiTensorTable& table, const LarsStep& s) {
  const auto sums = optim_detail::tensor_sums(table);
  std::vector<float> ratios(sums.size(), 1.0f);
  for (std::size_t t = 0; t < sums.size(); ++t) {
    const TensorSlot& slot = table.slots()[t];
    if (slot.flags & kSlotNoAdapt) continue;
    const float decay = (slot.flags & kSlotNoDecay) ? 0.0f : s.weight_decay;
    ratios[t] = math::lars_trust_ratio(sums[t].w2, sums[t].g2, sums[t].wg, decay, s.trust_coefficient, s.trust);
  }
  return ratios;
}

inline void lars_update(const MultiTensorTable& table, const LarsStep& s) {
  const auto ratios = lars_trust_ratios(table, s);
  optim_detail::apply_update(table, math::LarsElement{s.lr, s.momentum, s.nesterov}, s.weight_decay, ratios.data());
}

inline float grad_norm(const MultiTensorTable& table) {
  double sum = 0.0;
  for (const TensorSlot& s : table.slots())
    for (std::int64_t i = 0; i < s.numel; ++i) sum += static_cast<double>(s.grad[i]) * s.grad[i];
  return static_cast<float>(std::sqrt(sum));
}

inline float clip_grad_norm(const MultiTensorTable& table, float max_norm) {
  const float norm = grad_norm(table);
  const float coef = math::clip_coefficient(norm, max_norm);
  for (const TensorSlot& s : table.slots())
    for (std::int64_t i = 0; i < s.numel; ++i) s.grad[i] *= coef;
  return norm;
}

inline void ema_update(const MultiTensorTable& table, float momentum) {
  optim_detail::apply_update(table, math::EmaElement{momentum}, 0.0f, nullptr);
}

}  // namespace fovea::cpu
