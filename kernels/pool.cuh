// kernels/pool.cuh: max, average and global average pooling on the GPU (contracts in
// include/fovea/ops/pool.hpp). The window math is the FOVEA_HD code of include/fovea/cpu/pool.hpp:
//   forwards:  one thread per output element scans its window;
//   backwards: one thread per input element gathers from the outputs whose window holds it (max
//              pooling first stores each window's first maximum as an int in a workspace), so there
//              are no atomics, results are deterministic and equal the CPU twin's bit for bit;
//   global average pooling: one warp per (n, c) plane, float sums.
// Memory-bound; windows overlap only a little (ResNet's 3x3 stride 2), so rescans hit L1/L2.
#pragma once

#include <cstdint>

#include "common.cuh"
#include "fovea/cpu/pool.hpp"
#include "fovea/cuda/pool.hpp"

namespace fovea::cuda::detail {

enum class PoolKind { max_forward, avg_forward, avg_backward };

// Forwards: i over outputs; backwards: i over inputs.
template <PoolKind kKind, class Index>
__global__ void __launch_bounds__(kBlock)
    pool_kernel(const float* x, const float* dy, float* out, ::fovea::detail::PoolGeometry g, Index total) {
  const Index stride = static_cast<Index>(gridDim.x) * blockDim.x;
  constexpr bool kForward = kKind != PoolKind::avg_backward;
  const Index cols = kForward ? g.ow : g.w, rows = kForward ? g.oh : g.h;
  for (Index i = static_cast<Index>(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += stride) {
    const Index col = i % cols, t = i / cols;
    const Index row = t % rows, plane = t / rows;
    const float* xp = x + static_cast<std::int64_t>(plane) * g.h * g.w;
    const float* dyp = dy + static_cast<std::int64_t>(plane) * g.oh * g.ow;
    const int r = static_cast<int>(row), c = static_cast<int>(col);
    if constexpr (kKind == PoolKind::max_forward) out[i] = xp[math::max_pool_argmax(xp, g, r, c)];
    if constexpr (kKind == PoolKind::avg_forward) out[i] = math::avg_pool_window(xp, g, r, c);
    if constexpr (kKind == PoolKind::avg_backward) out[i] = math::avg_pool_input_grad(dyp, g, r, c);
  }
}

template <PoolKind kKind>
void launch_pool(const float* x, const float* dy, View out, const ::fovea::detail::PoolGeometry& g,
                 const char* name) {
  const int dev = out.device().index();
  DeviceGuard guard(dev);
  cudaStream_t stream = stream_for(out.device());
  const std::int64_t total = out.numel();
  const unsigned grid = grid_for(total, dev);
  if (total < (std::int64_t{1} << 32))
    pool_kernel<kKind, std::uint32_t><<<grid, kBlock, 0, stream>>>(x, dy, out.data(), g,
                                                                   static_cast<std::uint32_t>(total));
  else
    pool_kernel<kKind, std::uint64_t><<<grid, kBlock, 0, stream>>>(x, dy, out.data(), g,
                                                                   static_cast<std::uint64_t>(total));
  FOVEA_CHECK_LAUNCH("pool_kernel", name, ", output ", out.shape().str(), ", kernel ", g.k, ", stride ", g.s,
                     ", padding ", g.p);
}

// Max-pool backward in two passes: the first maximum of every window once (as an in-plane index),
// then a gather per input over its covering outputs, in raster order (the CPU twin's sum order).
template <class Index>
__global__ void __launch_bounds__(kBlock)
    max_pool_argmax_kernel(const float* x, int* argmax, ::fovea::detail::PoolGeometry g, Index total) {
  const Index stride = static_cast<Index>(gridDim.x) * blockDim.x;
  for (Index i = static_cast<Index>(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += stride) {
    const Index col = i % g.ow, t = i / g.ow;
    const Index row = t % g.oh, plane = t / g.oh;
    argmax[i] = math::max_pool_argmax(x + static_cast<std::int64_t>(plane) * g.h * g.w, g, static_cast<int>(row),
                                      static_cast<int>(col));
  }
}

template <class Index>
__global__ void __launch_bounds__(kBlock) max_pool_gather_kernel(const int* argmax, const float* dy, float* dx,
                                                                  ::fovea::detail::PoolGeometry g, Index total) {
  const Index stride = static_cast<Index>(gridDim.x) * blockDim.x;
  for (Index i = static_cast<Index>(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += stride) {
    const Index col = i % g.w, t = i / g.w;
    const Index row = t % g.h, plane = t / g.h;
    const std::int64_t base = static_cast<std::int64_t>(plane) * g.oh * g.ow;
    int oh0, oh1, ow0, ow1;
    math::pool_outputs_covering(static_cast<int>(row), g.k, g.s, g.p, g.oh, oh0, oh1);
    math::pool_outputs_covering(static_cast<int>(col), g.k, g.s, g.p, g.ow, ow0, ow1);
    const int self = static_cast<int>(row) * g.w + static_cast<int>(col);
    float sum = 0.0f;
    for (int oh = oh0; oh <= oh1; ++oh)
      for (int ow = ow0; ow <= ow1; ++ow)
        if (argmax[base + oh * g.ow + ow] == self) sum += dy[base + oh * g.ow + ow];
    dx[i] = sum;
  }
}

template <class Index>
void launch_max_pool_backward(CView x, CView dy, View dx, const ::fovea::detail::PoolGeometry& g) {
  const int dev = dx.device().index();
  DeviceGuard guard(dev);
  cudaStream_t stream = stream_for(dx.device());
  static_assert(sizeof(int) == sizeof(float), "argmax indices share a float workspace");
  Tensor work(Shape{dy.numel()}, dx.device());  // (N, C, OH, OW) in-plane argmax indices
  int* argmax = reinterpret_cast<int*>(work.data());
  max_pool_argmax_kernel<Index><<<grid_for(dy.numel(), dev), kBlock, 0, stream>>>(x.data(), argmax, g,
                                                                               static_cast<Index>(dy.numel()));
  FOVEA_CHECK_LAUNCH("max_pool_argmax_kernel", "input ", x.shape().str(), ", kernel ", g.k, ", stride ", g.s,
                     ", padding ", g.p);
  max_pool_gather_kernel<Index><<<grid_for(dx.numel(), dev), kBlock, 0, stream>>>(argmax, dy.data(), dx.data(), g,
                                                                               static_cast<Index>(dx.numel()));
  FOVEA_CHECK_LAUNCH("max_pool_gather_kernel", "input ", x.shape().str(), ", kernel ", g.k, ", stride ", g.s,
                     ", padding ", g.p);
}

// One warp per plane: y[plane] = sum(x[plane]) / hw.
__global__ void __launch_bounds__(kBlock)
    global_avg_pool_kernel(const float* x, float* y, std::int64_t planes, std::int64_t hw) {
  const int lane = threadIdx.x & 31;
  const std::int64_t warps = static_cast<std::int64_t>(gridDim.x) * (blockDim.x / 32);
  for (std::int64_t pl = (static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / 32; pl < planes;
       pl += warps) {
    const float* p = x + pl * hw;
    float s = 0.0f;
    for (std::int64_t k = lane; k < hw; k += 32) s += p[k];
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) s += __shfl_down_sync(0xffffffffu, s, off);
    if (lane == 0) y[pl] = s / static_cast<float>(hw);
  }
}

template <class Index>
__global__ void __launch_bounds__(kBlock)
    global_avg_pool_backward_kernel(const float* dy, float* dx, Index hw, Index total, float inv) {
  const Index stride = static_cast<Index>(gridDim.x) * blockDim.x;
  for (Index i = static_cast<Index>(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += stride)
    dx[i] = dy[i / hw] * inv;
}

}  // namespace fovea::cuda::detail

namespace fovea::cuda {

void max_pool2d_forward(CView x, View y, const PoolParams& params) {
  detail::launch_pool<detail::PoolKind::max_forward>(x.data(), nullptr, y,
                                                     ::fovea::detail::pool_geometry(x.shape(), params),
                                                     "max_pool2d_forward");
}
void max_pool2d_backward(CView x, CView dy, View dx, const PoolParams& params) {
  const auto g = ::fovea::detail::pool_geometry(x.shape(), params);
  if (dx.numel() < (std::int64_t{1} << 32)) detail::launch_max_pool_backward<std::uint32_t>(x, dy, dx, g);
  else detail::launch_max_pool_backward<std::uint64_t>(x, dy, dx, g);
}
void avg_pool2d_forward(CView x, View y, const PoolParams& params) {
  detail::launch_pool<detail::PoolKind::avg_forward>(x.data(), nullptr, y,
                                                     ::fovea::detail::pool_geometry(x.shape(), params),
                                                     "avg_pool2d_forward");
}
void avg_pool2d_backward(CView dy, View dx, const PoolParams& params) {
  detail::launch_pool<detail::PoolKind::avg_backward>(nullptr, dy.data(), dx,
                                                      ::fovea::detail::pool_geometry(dx.shape(), params),
                                                      "avg_pool2d_backward");
}

void global_avg_pool_forward(CView x, View y) {
  using namespace detail;
  const int dev = y.device().index();
  DeviceGuard guard(dev);
  cudaStream_t stream = stream_for(y.device());
  const std::int64_t planes = y.numel(), hw = x.shape().h() * x.shape().w();
  const unsigned grid = grid_for(planes * 32, dev);
  global_avg_pool_kernel<<<grid, kBlock, 0, stream>>>(x.data(), y.data(), planes, hw);
  FOVEA_CHECK_LAUNCH("global_avg_pool_kernel", "input ", x.shape().str());
}

void global_avg_pool_backward(CView dy, View dx) {
  using namespace detail;
  const int dev = dx.device().index();
  DeviceGuard guard(dev);
  cudaStream_t stream = stream_for(dx.device());
  const std::int64_t total = dx.numel(), hw = dx.shape().h() * dx.shape().w();
  const float inv = 1.0f / static_cast<float>(hw);
  const unsigned grid = grid_for(total, dev);
  if (total < (std::int64_t{1} << 32))
    global_avg_pool_backward_kernel<std::uint32_t><<<grid, kBlock, 0, stream>>>(
        dy.data(), dx.data(), static_cast<std::uint32_t>(hw), static_cast<std::uint32_t>(total), inv);
  else
    global_avg_pool_backward_kernel<std::uint64_t><<<grid, kBlock, 0, stream>>>(
        dy.data(), dx.data(), static_cast<std::uint64_t>(hw), static_cast<std::uint64_t>(total), inv);
  FOVEA_CHECK_LAUNCH("global_avg_pool_backward_kernel", "dx ", dx.shape().str());
}

}  // namespace fovea::cuda
