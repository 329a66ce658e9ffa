// kernels/softmax.cuh: softmax and log-softmax over rows on the GPU (contracts in
// include/fovea/ops/softmax.hpp). One warp per row: lanes stride over the row for the maximum and the
// sum of exponentials (warp all-reduce by xor shuffles, float sums), then write the row with the
// FOVEA_HD functors of include/fovea/cpu/softmax.hpp. Rows of classifier logits (K = 5 ... 1000)
// are short, so a warp per row keeps every lane busy without shared memory.
#pragma once

#include <cstdint>

#include "common.cuh"
#include "fovea/cpu/softmax.hpp"
#include "fovea/cuda/softmax.hpp"
#include "fovea/ops/math.hpp"

namespace fovea::cuda::detail {

template <class Op>
__device__ __forceinline__ float softmax_warp_allreduce(float v, const Op& op) {
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) v = op(v, __shfl_xor_sync(0xffffffffu, v, off));
  return v;
}

template <bool kLog>
__global__ void __launch_bounds__(kBlock)
    softmax_forward_kernel(const float* x, float* y, std::int64_t rows, std::int64_t k) {
  const int lane = threadIdx.x & 31;
  const std::int64_t warps = static_cast<std::int64_t>(gridDim.x) * (blockDim.x / 32);
  const math::MaxReduce max_op;
  const math::SumReduce sum_op;
  for (std::int64_t r = (static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / 32; r < rows;
       r += warps) {
    const float* xr = x + r * k;
    float* yr = y + r * k;
    float m = math::MaxReduce::identity();
    for (std::int64_t j = lane; j < k; j += 32) m = max_op(xr[j], m);
    m = softmax_warp_allreduce(m, max_op);
    const math::SoftmaxExp e{m};
    float s = 0.0f;
    for (std::int64_t j = lane; j < k; j += 32) s += e(xr[j]);
    s = softmax_warp_allreduce(s, sum_op);
    if constexpr (kLog) {
      const math::LogSoftmaxOutput f{m, logf(s)};
      for (std::int64_t j = lane; j < k; j += 32) yr[j] = f(xr[j]);
    } else {
      const math::SoftmaxOutput f{m, s};
      for (std::int64_t j = lane; j < k; j += 32) yr[j] = f(xr[j]);
    }
  }
}

template <bool kLog>
__global__ void __launch_bounds__(kBlock)
    softmax_backward_kernel(const float* y, const float* dy, float* dx, std::int64_t rows, std::int64_t k) {
  const int lane = threadIdx.x & 31;
  const std::int64_t warps = static_cast<std::int64_t>(gridDim.x) * (blockDim.x / 32);
  const math::SumReduce sum_op;
  for (std::int64_t r = (static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / 32; r < rows;
       r += warps) {
    const float *yr = y + r * k, *dyr = dy + r * k;
    float* dxr = dx + r * k;
    float s = 0.0f;
    for (std::int64_t j = lane; j < k; j += 32) s += kLog ? dyr[j] : dyr[j] * yr[j];
    s = softmax_warp_allreduce(s, sum_op);
    if constexpr (kLog) {
      const math::LogSoftmaxBackward f{s};
      for (std::int64_t j = lane; j < k; j += 32) dxr[j] = f(yr[j], dyr[j]);
    } else {
      const math::SoftmaxBackward f{s};
      for (std::int64_t j = lane; j < k; j += 32) dxr[j] = f(yr[j], dyr[j]);
    }
  }
}

inline unsigned softmax_grid(std::int64_t rows, int device) { return grid_for(rows * 32, device); }

}  // namespace fovea::cuda::detail

namespace fovea::cuda {

namespace detail {
template <bool kLog>
void softmax_forward_launch(CView x, View y, const char* name) {
  const auto g = ::fovea::detail::softmax_geometry(x.shape());
  const int dev = y.device().index();
  DeviceGuard guard(dev);
  softmax_forward_kernel<kLog><<<softmax_grid(g.rows, dev), kBlock, 0, stream_for(y.device())>>>(
      x.data(), y.data(), g.rows, g.k);
  FOVEA_CHECK_LAUNCH("softmax_forward_kernel", name, ", input ", x.shape().str());
}
template <bool kLog>
void softmax_backward_launch(CView y, CView dy, View dx, const char* name) {
  const auto g = ::fovea::detail::softmax_geometry(y.shape());
  const int dev = dx.device().index();
  DeviceGuard guard(dev);
  softmax_backward_kernel<kLog><<<softmax_grid(g.rows, dev), kBlock, 0, stream_for(dx.device())>>>(
      y.data(), dy.data(), dx.data(), g.rows, g.k);
  FOVEA_CHECK_LAUNCH("softmax_backward_kernel", name, ", y ", y.shape().str());
}
}  // namespace detail

void softmax_forward(CView x, View y) { detail::softmax_forward_launch<false>(x, y, "softmax_forward"); }
void log_softmax_forward(CView x, View y) { detail::softmax_forward_launch<true>(x, y, "log_softmax_forward"); }
void softmax_backward(CView y, CView dy, View dx) { detail::softmax_backward_launch<false>(y, dy, dx, "softmax_backward"); }
void log_softmax_backward(CView y, CView dy, View dx) {
  detail::softmax_backward_launch<true>(y, dy, dx, "log_softmax_backward");
}

}  // namespace fovea::cuda
