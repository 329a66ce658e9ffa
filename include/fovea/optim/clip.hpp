// fovea/optim/clip.hpp: global gradient-norm clipping over a parameter list (torch
// clip_grad_norm_), fused over all tensors. Optimizer<P>::clip_grad_norm does the same on the
// optimizer's cached table.
#pragma once

#include <vector>

#include "fovea/nn/layer.hpp"
#include "fovea/ops/optim.hpp"

namespace fovea::optim {

namespace detail {
inline MultiTensorTable grad_table(const std::vector<nn::Parameter*>& params) {
  std::vector<TensorSlot> slots;
  Device device;
  for (std::size_t i = 0; i < params.size(); ++i) {
    nn::Parameter* p = params[i];
    FOVEA_CHECK(p != nullptr && p->grad.data() != nullptr, "clip_grad_norm: parameter ", i, " has no gradient");
    if (i == 0) device = p->grad.device();
    check_same_device("clip_grad_norm", "first gradient", device, "gradient", p->grad.device());
    TensorSlot s;
    s.param = p->grad.data();
    s.grad = p->grad.data();
    s.numel = p->grad.numel();
    slots.push_back(s);
  }
  return MultiTensorTable(std::move(slots), device);
}
}  // namespace detail

// sqrt(sum of every gradient element squared).
inline float grad_norm(const std::vector<nn::Parameter*>& params) {
  if (params.empty()) return 0.0f;
  MultiTensorTable table = detail::grad_table(params);
  return fovea::grad_norm(table);
}

// Multiplies every gradient by min(1, max_norm / (norm + 1e-6)); returns the norm before clipping.
inline float clip_grad_norm(const std::vector<nn::Parameter*>& params, float max_norm) {
  if (params.empty()) return 0.0f;
  MultiTensorTable table = detail::grad_table(params);
  return fovea::clip_grad_norm(table, max_norm);
}

}  // namespace fovea::optim
