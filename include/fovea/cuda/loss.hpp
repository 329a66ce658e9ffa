// fovea/cuda/loss.hpp: host-side declarations of the CUDA cross-entropy and MSE twins (contracts in
// ops/loss.hpp; definitions in kernels/loss.cuh).
#pragma once

#include "fovea/core/config.hpp"
#include "fovea/core/tensor.hpp"

#if FOVEA_WITH_CUDA
namespace fovea::cuda {

void cross_entropy_forward(CView logits, CView labels, CView weights, float smoothing, View loss);
void cross_entropy_backward(CView logits, CView labels, CView weights, float smoothing, float dloss, View dlogits);
void mse_forward(CView pred, CView target, View loss);
void mse_backward(CView pred, CView target, float dloss, View dpred);

}  // namespace fovea::cuda
#endif
