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
void lerp(CView a, CView b, float t, View out);
void accumulate_scaled(CView x, double weight, View acc, bool start);

void reduce(CView x, int axis, View out, ReduceKind kind);

void lrp_ratio(CView r, CView z, float epsilon, View s);
void lrp_share(CView a, CView b, CView r, float epsilon, View out);
void lrp_box_input(CView x, CView cx, CView lo, CView cl, CView hi, CView ch, View out);
void lrp_box_denominator(CView zx, CView zl, CView zh, View out);
void lrp_mean_share(CView x, CView r, float epsilon, View out);

}  // namespace fovea::cuda
#endif
