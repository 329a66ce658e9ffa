// kernels/reduce.cuh: axis reductions (sum, mean, max) on the GPU; contract in
// include/fovea/ops/reduce.hpp. A tensor reduced along one axis is (outer, len, inner) in memory:
// - inner == 1 (the reduced axis is innermost): one block per row, a strided loop per thread, then
//   warp shuffles and one shared-memory step;
// - inner > 1: one thread per (outer, inner) output, looping over len; neighbouring threads read
//   neighbouring addresses, so loads coalesce.
// Both accumulate in float.
#pragma once

#include <cstdint>

#include "common.cuh"
#include "fovea/cuda/ops.hpp"
#include "fovea/ops/math.hpp"

namespace fovea::cuda::detail {

template <class Op>
__device__ __forceinline__ float warp_reduce(float v, const Op& op) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) v = op(v, __shfl_down_sync(0xffffffffu, v, offset));
  return v;
}

template <class Op>
__global__ void __launch_bounds__(kBlock)
    reduce_rows_kernel(const float* x, float* out, std::int64_t rows, std::int64_t len, float post_scale) {
  __shared__ float partial[kBlock / 32];
  const Op op;
  for (std::int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const float* p = x + row * len;
    float acc = Op::identity();
    for (std::int64_t k = threadIdx.x; k < len; k += blockDim.x) acc = op(p[k], acc);
    acc = warp_reduce(acc, op);
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    if (lane == 0) partial[warp] = acc;
    __syncthreads();
    if (warp == 0) {
      acc = lane < kBlock / 32 ? partial[lane] : Op::identity();
      acc = warp_reduce(acc, op);
      if (lane == 0) out[row] = acc * post_scale;
    }
    __syncthreads();
  }
}

template <class Op>
__global__ void __launch_bounds__(kBlock) reduce_columns_kernel(const float* x, float* out, std::int64_t outer,
                                                                std::int64_t len, std::int64_t inner,
                                                                float post_scale) {
  const Op op;
  const std::int64_t total = outer * inner;
  const std::int64_t stride = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
  for (std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += stride) {
    const std::int64_t a = i / inner, c = i % inner;
    const float* p = x + a * len * inner + c;
    float acc = Op::identity();
    for (std::int64_t k = 0; k < len; ++k) acc = op(p[k * inner], acc);
    out[i] = acc * post_scale;
  }
}

template <class Op>
void launch_reduce(CView x, View out, const ::fovea::detail::ReduceGeometry& g, float post_scale) {
  const int dev = out.device().index();
  cudaStream_t stream = stream_for(out.device());
  if (g.inner == 1) {
    const std::int64_t cap = static_cast<std::int64_t>(device_properties(dev).multiProcessorCount) * 32;
    const unsigned grid = static_cast<unsigned>(g.outer < cap ? g.outer : cap);
    reduce_rows_kernel<Op><<<grid, kBlock, 0, stream>>>(x.data(), out.data(), g.outer, g.len, post_scale);
    FOVEA_CHECK_LAUNCH("reduce_rows_kernel", "input ", x.shape().str());
  } else {
    const unsigned grid = grid_for(g.outer * g.inner, dev);
    reduce_columns_kernel<Op><<<grid, kBlock, 0, stream>>>(x.data(), out.data(), g.outer, g.len, g.inner,
                                                           post_scale);
    FOVEA_CHECK_LAUNCH("reduce_columns_kernel", "input ", x.shape().str());
  }
}

}  // namespace fovea::cuda::detail

namespace fovea::cuda {

void reduce(CView x, int axis, View out, ReduceKind kind) {
  const auto g = ::fovea::detail::reduce_geometry(x.shape(), axis);
  if (out.numel() == 0) return;
  detail::DeviceGuard guard(out.device().index());
  if (g.len == 0) {  // sum over an empty axis (mean and max are rejected by the dispatcher)
    fill(out, 0.0f);
    return;
  }
  switch (kind) {
    case ReduceKind::sum: detail::launch_reduce<math::SumReduce>(x, out, g, 1.0f); break;
    case ReduceKind::mean:
      detail::launch_reduce<math::SumReduce>(x, out, g, 1.0f / static_cast<float>(g.len));
      break;
    case ReduceKind::max: detail::launch_reduce<math::MaxReduce>(x, out, g, 1.0f); break;
  }
}

}  // namespace fovea::cuda
