// kernels/random.cuh: the CUDA twins of the random fill ops (declared in include/fovea/cuda/random.hpp).
//
// Both kernels evaluate the same FOVEA_HD functions as the CPU loops (core/random.hpp) at the same
// (key, index) pairs, so the launch geometry never changes a value. random_uniform: one thread per
// Philox block of 4 consecutive elements, written as one float4 store when out is 16-byte aligned.
// random_normal: one thread per element (normal i uses block i). Grid-stride loops over a capped grid.
#pragma once

#include <cstdint>

#include "common.cuh"
#include "fovea/core/random.hpp"
#include "fovea/cuda/random.hpp"

namespace fovea::cuda::detail {

// out[i] = uniform_between(uniform(key, i), lo, hi) for i < n; thread t handles blocks t, t + stride, ...
__global__ void __launch_bounds__(kBlock)
    random_uniform_kernel(float* out, std::int64_t n, RandomKey key, float lo, float hi, bool aligned) {
  const std::int64_t blocks = (n + 3) >> 2;
  const std::int64_t stride = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
  for (std::int64_t b = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; b < blocks;
       b += stride) {
    const U32x4 bits = random_block(key, static_cast<std::uint32_t>(b));
    const std::int64_t base = b << 2;
    if (aligned && base + 4 <= n) {
      reinterpret_cast<float4*>(out)[b] = make_float4(uniform_between(uniform_from_bits(bits.v[0]), lo, hi),
                                                      uniform_between(uniform_from_bits(bits.v[1]), lo, hi),
                                                      uniform_between(uniform_from_bits(bits.v[2]), lo, hi),
                                                      uniform_between(uniform_from_bits(bits.v[3]), lo, hi));
    } else {
      for (int w = 0; w < 4; ++w)
        if (base + w < n) out[base + w] = uniform_between(uniform_from_bits(bits.v[w]), lo, hi);
    }
  }
}

// out[i] = scale_normal(normal(key, i), mean, std_dev) for i < n.
__global__ void __launch_bounds__(kBlock)
    random_normal_kernel(float* out, std::int64_t n, RandomKey key, float mean, float std_dev) {
  const std::int64_t stride = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
  for (std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride)
    out[i] = scale_normal(normal(key, static_cast<std::uint64_t>(i)), mean, std_dev);
}

}  // namespace fovea::cuda::detail

namespace fovea::cuda {

void random_uniform(View out, RandomKey key, float lo, float hi) {
  const std::int64_t n = out.numel();
  if (n == 0) return;
  const int dev = out.device().index();
  detail::DeviceGuard guard(dev);
  cudaStream_t stream = detail::stream_for(out.device());
  const bool aligned = (reinterpret_cast<std::uintptr_t>(out.data()) & 15u) == 0;
  const unsigned grid = detail::grid_for((n + 3) / 4, dev);
  detail::random_uniform_kernel<<<grid, detail::kBlock, 0, stream>>>(out.data(), n, key, lo, hi, aligned);
  FOVEA_CHECK_LAUNCH("random_uniform_kernel", "shape ", out.shape().str());
}

void random_normal(View out, RandomKey key, float mean, float std_dev) {
  const std::int64_t n = out.numel();
  if (n == 0) return;
  const int dev = out.device().index();
  detail::DeviceGuard guard(dev);
  cudaStream_t stream = detail::stream_for(out.device());
  const unsigned grid = detail::grid_for(n, dev);
  detail::random_normal_kernel<<<grid, detail::kBlock, 0, stream>>>(out.data(), n, key, mean, std_dev);
  FOVEA_CHECK_LAUNCH("random_normal_kernel", "shape ", out.shape().str());
}

}  // namespace fovea::cuda
