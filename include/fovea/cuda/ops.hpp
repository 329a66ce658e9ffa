// fovea/cuda/ops.hpp: host-side declarations of the CUDA twins of fovea's ops. Contracts are on
// the dispatching functions in ops/; definitions live in kernels/ (one nvcc translation unit).
// Every function launches on the current stream of its output's device and returns without waiting.
#pragma once

#include "fovea/core/config.hpp"
#include "fovea/core/tensor.hpp"
#include "fovea/cpu/reduce.hpp"

#if FOVEA_WITH_CUDA
namespace fovea::cuda {

void fill(View out, float value);
void scale(CView x, float alpha, View out);
void axpy(float alpha, CView x, View y);
void add(CView a, CView b, View out);
void multiply(CView a, CView b, View out);
void relu_forward(CView x, View y);
void relu_backward(CView x, CView dy, View dx);

void reduce(CView x, int axis, View out, ReduceKind kind);

}  // namespace fovea::cuda
#endif
