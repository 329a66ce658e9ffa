// kernels/elementwise.cuh: the grid-stride kernel that runs fovea::math functors on the GPU, and
// the closed set of element-wise ops instantiated from it (declared in include/fovea/cuda/ops.hpp).
//
// Memory-bound by design: each element is read once per input and written once. When every
// pointer is 16-byte aligned, each thread moves float4s (16-byte loads and stores, coalesced
// across the warp); otherwise a scalar loop runs. The grid is capped (common.cuh) so one thread
// handles several vectors.
#pragma once

#include <cstdint>

#include "common.cuh"
#include "fovea/cuda/ops.hpp"
#include "fovea/ops/math.hpp"

namespace fovea::cuda::detail {

template <class F, class... V>
__device__ __forceinline__ float4 apply4(const F& f, const V&... v) {
  return make_float4(f(v.x...), f(v.y...), f(v.z...), f(v.w...));
}

// out[i] = f(in[i]...) for i < n, 4 elements per step; the n % 4 tail by the first threads.
template <class F, class... P>
__global__ void __launch_bounds__(kBlock) map_vec4_kernel(F f, float* out, std::int64_t n, P... in) {
  const std::int64_t n4 = n >> 2;
  const std::int64_t stride = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
  const std::int64_t tid = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  float4* out4 = reinterpret_cast<float4*>(out);
  for (std::int64_t i = tid; i < n4; i += stride)
    out4[i] = apply4(f, reinterpret_cast<const float4*>(in)[i]...);
  const std::int64_t t = (n4 << 2) + tid;
  if (t < n) out[t] = f(in[t]...);
}

template <class F, class... P>
__global__ void __launch_bounds__(kBlock) map_scalar_kernel(F f, float* out, std::int64_t n, P... in) {
  const std::int64_t stride = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
  for (std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += stride)
    out[i] = f(in[i]...);
}

// acc[i] = (start ? 0 : acc[i]) + weight * x[i] in double, the product rounded on its own (as the CPU
// twin rounds it).
__global__ void __launch_bounds__(kBlock)
    accumulate_scaled_kernel(const float* x, double weight, double* acc, std::int64_t n, int start) {
  const std::int64_t stride = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
  for (std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride)
    acc[i] = (start ? 0.0 : acc[i]) + math::dmul_rn(weight, x[i]);
}

inline bool aligned16(const void* p) { return (reinterpret_cast<std::uintptr_t>(p) & 15u) == 0; }

// Runs `f` over out's elements on out's device and current stream.
template <class F, class... In>
void launch_map(const F& f, View out, In... in) {
  const std::int64_t n = out.numel();
  if (n == 0) return;
  const int dev = out.device().index();
  DeviceGuard guard(dev);
  cudaStream_t stream = stream_for(out.device());
  const bool vec = aligned16(out.data()) && (aligned16(in.data()) && ...);
  if (vec) {
    const unsigned grid = grid_for((n + 3) / 4, dev);
    map_vec4_kernel<<<grid, kBlock, 0, stream>>>(f, out.data(), n, in.data()...);
    FOVEA_CHECK_LAUNCH("map_vec4_kernel", "shape ", out.shape().str());
  } else {
    const unsigned grid = grid_for(n, dev);
    map_scalar_kernel<<<grid, kBlock, 0, stream>>>(f, out.data(), n, in.data()...);
    FOVEA_CHECK_LAUNCH("map_scalar_kernel", "shape ", out.shape().str());
  }
}

}  // namespace fovea::cuda::detail

namespace fovea::cuda {

// The closed set of element-wise instantiations.
void fill(View out, float value) { detail::launch_map(math::Fill{value}, out); }
void scale(CView x, float alpha, View out) { detail::launch_map(math::Scale{alpha}, out, x); }
void axpy(float alpha, CView x, View y) { detail::launch_map(math::Axpy{alpha}, y, x, CView(y)); }
void add(CView a, CView b, View out) { detail::launch_map(math::Add{}, out, a, b); }
void multiply(CView a, CView b, View out) { detail::launch_map(math::Multiply{}, out, a, b); }
void relu_forward(CView x, View y) { detail::launch_map(math::Relu{}, y, x); }
void relu_backward(CView x, CView dy, View dx) {
  detail::launch_map(math::ReluBackward{}, dx, x, dy);
}
void lerp(CView a, CView b, float t, View out) { detail::launch_map(math::Lerp{t}, out, a, b); }

void accumulate_scaled(CView x, double weight, View acc, bool start) {
  using namespace detail;
  const std::int64_t n = x.numel();
  if (n == 0) return;
  const int dev = acc.device().index();
  DeviceGuard guard(dev);
  accumulate_scaled_kernel<<<grid_for(n, dev), kBlock, 0, stream_for(acc.device())>>>(
      x.data(), weight, reinterpret_cast<double*>(acc.data()), n, start ? 1 : 0);
  FOVEA_CHECK_LAUNCH("accumulate_scaled_kernel", "shape ", x.shape().str());
}

}  // namespace fovea::cuda
