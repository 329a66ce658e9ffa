// fovea/cuda/softmax.hpp: host-side declarations of the CUDA softmax twins (contracts in
// ops/softmax.hpp; definitions in kernels/softmax.cuh).
#pragma once

#include "fovea/core/config.hpp"
#include "fovea/core/tensor.hpp"

#if FOVEA_WITH_CUDA
namespace fovea::cuda {

void softmax_forward(CView x, View y);
void log_softmax_forward(CView x, View y);
void softmax_backward(CView y, CView dy, View dx);
void log_softmax_backward(CView y, CView dy, View dx);

}  // namespace fovea::cuda
#endif
