// fovea/cuda/conv.hpp: host-side declarations of the CUDA (cuDNN) twins of the 2-D convolution ops;
// contracts in ops/conv.hpp, definitions in kernels/conv.cuh. They obey math_settings() (ops/blas.hpp).
#pragma once

#include "fovea/core/config.hpp"
#include "fovea/core/tensor.hpp"
#include "fovea/cpu/conv.hpp"

#if FOVEA_WITH_CUDA
namespace fovea::cuda {

void conv2d_forward(CView x, CView w, CView bias, View y, const Conv2dParams& params);
void conv2d_backward_data(CView dy, CView w, View dx, const Conv2dParams& params);
void conv2d_backward_filter(CView x, CView dy, View dw, const Conv2dParams& params, bool accumulate);
void conv2d_backward_bias(CView dy, View db);

}  // namespace fovea::cuda
#endif
