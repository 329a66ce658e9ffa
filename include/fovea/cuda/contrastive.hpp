// fovea/cuda/contrastive.hpp: host-side declarations of the fused CUDA contrastive-loss twins
// (contracts in ops/contrastive.hpp; definitions in kernels/contrastive.cuh).
#pragma once

#include <cstdint>

#include "fovea/core/config.hpp"
#include "fovea/core/tensor.hpp"

#if FOVEA_WITH_CUDA
namespace fovea::cuda {

void l2_normalize_rows(CView z, View zn);
void nt_xent_forward(CView z, float tau, View loss, View row_lse, View znorm);
void nt_xent_backward(CView z, CView znorm, CView row_lse, float tau, float dloss, View dz);
void contrastive_accuracy(CView znorm, View accuracy);
void infonce_forward(CView q, CView k, CView queue, float tau, View loss, View row_lse, View qnorm, View knorm);
void infonce_backward(CView q, CView qnorm, CView knorm, CView queue, CView row_lse, float tau, float dloss, View dq);
void infonce_accuracy(CView qnorm, CView knorm, CView queue, View accuracy);
void queue_enqueue(View queue, CView keys, std::int64_t head);

}  // namespace fovea::cuda
#endif
