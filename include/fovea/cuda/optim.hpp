// fovea/cuda/optim.hpp: host-side declarations of the CUDA twins of the fused multi-tensor ops
// (contracts in ops/optim.hpp, definitions in kernels/optim.cuh). Each launches on the current
// stream of the table's device and returns without waiting, except the norms, which return a value.
#pragma once

#include "fovea/core/config.hpp"
#include "fovea/optim/multi_tensor.hpp"

#if FOVEA_WITH_CUDA
namespace fovea::cuda {

void sgd_update(MultiTensorTable& table, const SgdStep& step);
void adamw_update(MultiTensorTable& table, const AdamWStep& step);
void lars_update(MultiTensorTable& table, const LarsStep& step);
// Writes the per-tensor LARS trust ratios to `out` (host, one per tensor); for tests.
void lars_trust_ratios(MultiTensorTable& table, const LarsStep& step, float* out);
float grad_norm(MultiTensorTable& table);
float clip_grad_norm(MultiTensorTable& table, float max_norm);
void ema_update(MultiTensorTable& table, float momentum);

}  // namespace fovea::cuda
#endif
