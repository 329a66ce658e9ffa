// kernels/lrp.cuh: the CUDA twins of LRP's element-wise ops (ops/lrp.hpp). The maps run the
// functors of ops/math.hpp through elementwise.cuh's launch_map; lrp_mean_share_kernel gives each
// plane a warp: the plane's sum in double (lanes strided, then a shuffle tree), the ratio, then the
// plane's outputs.
#pragma once

#include <cstdint>

#include "common.cuh"
#include "elementwise.cuh"
#include "fovea/cuda/ops.hpp"
#include "fovea/ops/math.hpp"

namespace fovea::cuda::detail {

// One warp per plane of n values: out[p * n + i] = x[p * n + i] r[p] / stab(mean) / n.
__global__ void __launch_bounds__(kBlock)
    lrp_mean_share_kernel(const float* x, const float* r, float* out, std::int64_t planes, std::int64_t n,
                          float epsilon) {
  const int lane = static_cast<int>(threadIdx.x) & 31;
  const std::int64_t warps = static_cast<std::int64_t>(gridDim.x) * (blockDim.x / 32);
  for (std::int64_t p = (static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / 32; p < planes;
       p += warps) {
    const float* xp = x + p * n;
    double sum = 0.0;
    for (std::int64_t i = lane; i < n; i += 32) sum += xp[i];
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, off);
    const double mean = sum / static_cast<double>(n);
    const double ratio = r[p] / math::lrp_stabilise(mean, epsilon) / static_cast<double>(n);
    for (std::int64_t i = lane; i < n; i += 32)
      out[p * n + i] = static_cast<float>(math::dmul_rn(xp[i], ratio));
  }
}

}  // namespace fovea::cuda::detail

namespace fovea::cuda {

void lrp_ratio(CView r, CView z, float epsilon, View s) {
  detail::launch_map(math::LrpRatio{epsilon}, s, r, z);
}
void lrp_share(CView a, CView b, CView r, float epsilon, View out) {
  detail::launch_map(math::LrpShare{epsilon}, out, a, b, r);
}
void lrp_box_input(CView x, CView cx, CView lo, CView cl, CView hi, CView ch, View out) {
  detail::launch_map(math::LrpBoxInput{}, out, x, cx, lo, cl, hi, ch);
}
void lrp_box_denominator(CView zx, CView zl, CView zh, View out) {
  detail::launch_map(math::LrpBoxDenominator{}, out, zx, zl, zh);
}

void lrp_mean_share(CView x, CView r, float epsilon, View out) {
  using namespace detail;
  const std::int64_t planes = r.numel();
  if (planes == 0 || out.numel() == 0) return;
  const int dev = out.device().index();
  DeviceGuard guard(dev);
  cudaStream_t stream = stream_for(out.device());
  const unsigned grid = grid_for(planes * 32, dev);
  lrp_mean_share_kernel<<<grid, kBlock, 0, stream>>>(x.data(), r.data(), out.data(), planes,
                                                     x.numel() / planes, epsilon);
  FOVEA_CHECK_LAUNCH("lrp_mean_share_kernel", "input ", x.shape().str());
}

}  // namespace fovea::cuda
