// fovea/cuda/pool.hpp: host-side declarations of the CUDA pooling twins (contracts in ops/pool.hpp;
// definitions in kernels/pool.cuh).
#pragma once

#include "fovea/core/config.hpp"
#include "fovea/core/tensor.hpp"
#include "fovea/cpu/pool.hpp"

#if FOVEA_WITH_CUDA
namespace fovea::cuda {

void max_pool2d_forward(CView x, View y, const PoolParams& params);
void max_pool2d_backward(CView x, CView dy, View dx, const PoolParams& params);
void avg_pool2d_forward(CView x, View y, const PoolParams& params);
void avg_pool2d_backward(CView dy, View dx, const PoolParams& params);
void global_avg_pool_forward(CView x, View y);
void global_avg_pool_backward(CView dy, View dx);

}  // namespace fovea::cuda
#endif
