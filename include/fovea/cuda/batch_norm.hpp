// fovea/cuda/batch_norm.hpp: host-side declarations of the CUDA batch-norm twins (contracts in
// ops/batch_norm.hpp; definitions in kernels/batch_norm.cuh).
#pragma once

#include "fovea/core/config.hpp"
#include "fovea/core/tensor.hpp"

#if FOVEA_WITH_CUDA
namespace fovea::cuda {

void batch_norm_forward_training(CView x, CView gamma, CView beta, View running_mean, View running_var,
                                 float momentum, float eps, View y, View saved_mean, View saved_invstd);
void batch_norm_forward_inference(CView x, CView gamma, CView beta, CView running_mean,
                                  CView running_var, float eps, View y);
void batch_norm_backward(CView x, CView dy, CView gamma, CView saved_mean, CView saved_invstd, View dx,
                         View dgamma, View dbeta);

}  // namespace fovea::cuda
#endif
