// kernels/batch_norm.cuh: batch normalisation on the GPU (contracts in include/fovea/ops/batch_norm.hpp).
//
// A channel's n = N*H*W values lie in N planes of H*W contiguous floats. Per-channel statistics use a
// grid of (chunk, channel) blocks so both ResNet extremes fill the GPU: C = 64 with n = 3.2 M gives
// several chunks per channel, C = 2048 with n = 12,544 one block per channel.
//   forward training: partial Welford (mean, M2) per block, Chan-merged across threads in float;
//                     a per-channel finalize merges the chunks in double, writes saved_mean /
//                     saved_invstd and updates the running statistics; then an element-wise pass.
//   backward:         partial sums of dy and dy * (x - mean) per block; a per-channel finalize in
//                     double writes dgamma, dbeta; then an element-wise pass for dx.
// Element-wise passes index in 32 bits when the tensor allows it (integer division is the cost).
#pragma once

#include <cstdint>

#include "common.cuh"
#include "fovea/cpu/batch_norm.hpp"
#include "fovea/cuda/batch_norm.hpp"

namespace fovea::cuda::detail {

struct BnWelford {
  float count, mean, m2;
};

__device__ __forceinline__ BnWelford bn_merge(BnWelford a, BnWelford b) {
  const float n = a.count + b.count;
  if (n == 0.0f) return a;
  const float d = b.mean - a.mean, f = b.count / n;
  return {n, a.mean + d * f, a.m2 + b.m2 + d * d * a.count * f};
}

// Offset of the j-th value of a channel from its first value: j / hw planes, then j % hw.
__device__ __forceinline__ std::int64_t bn_offset(std::uint32_t j, std::uint32_t hw, std::int64_t plane_stride) {
  const std::uint32_t nn = j / hw;
  return static_cast<std::int64_t>(nn) * plane_stride + (j - nn * hw);
}

__global__ void __launch_bounds__(kBlock)
    bn_partial_stats_kernel(const float* x, float* part_mean, float* part_m2, std::uint32_t hw, int channels,
                            std::uint32_t n, std::uint32_t per_chunk) {
  const int c = blockIdx.y, chunk = blockIdx.x, chunks = gridDim.x;
  const std::uint32_t begin = chunk * per_chunk;
  const std::uint32_t end = n - begin < per_chunk ? n : begin + per_chunk;
  const float* xc = x + static_cast<std::int64_t>(c) * hw;
  const std::int64_t plane_stride = static_cast<std::int64_t>(channels) * hw;
  BnWelford w{0.0f, 0.0f, 0.0f};
  for (std::uint32_t j = begin + threadIdx.x; j < end; j += blockDim.x) {
    const float v = xc[bn_offset(j, hw, plane_stride)];
    w.count += 1.0f;
    const float d = v - w.mean;
    w.mean += d / w.count;
    w.m2 += d * (v - w.mean);
  }
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) {
    BnWelford o{__shfl_down_sync(0xffffffffu, w.count, off), __shfl_down_sync(0xffffffffu, w.mean, off),
                __shfl_down_sync(0xffffffffu, w.m2, off)};
    w = bn_merge(w, o);
  }
  __shared__ BnWelford warps[kBlock / 32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) warps[warp] = w;
  __syncthreads();
  if (threadIdx.x == 0) {
    BnWelford t = warps[0];
    for (int k = 1; k < kBlock / 32; ++k) t = bn_merge(t, warps[k]);
    part_mean[c * chunks + chunk] = t.mean;
    part_m2[c * chunks + chunk] = t.m2;
  }
}

// One thread per channel: Chan-merge the chunks in double, then the saved and running statistics.
__global__ void bn_finalize_stats_kernel(const float* part_mean, const float* part_m2, int channels, int chunks,
                                         std::uint32_t n, std::uint32_t per_chunk, float eps, float momentum,
                                         float* saved_mean, float* saved_invstd, float* running_mean,
                                         float* running_var) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= channels) return;
  double count = 0.0, mean = 0.0, m2 = 0.0;
  for (int k = 0; k < chunks; ++k) {
    const std::uint32_t begin = k * per_chunk;
    const double nb = static_cast<double>(n - begin < per_chunk ? n - begin : per_chunk);
    const double mb = part_mean[c * chunks + k], m2b = part_m2[c * chunks + k];
    const double total = count + nb;
    const double d = mb - mean, f = nb / total;
    mean += d * f;
    m2 += m2b + d * d * count * f;
    count = total;
  }
  const float mean_f = static_cast<float>(mean);
  const math::RunningStatUpdate update{momentum};
  saved_mean[c] = mean_f;
  saved_invstd[c] = static_cast<float>(1.0 / sqrt(m2 / count + eps));
  running_mean[c] = update(running_mean[c], mean_f);
  running_var[c] = update(running_var[c], static_cast<float>(m2 / (count - 1.0)));
}

// y = normalize(x) with per-channel (mean, invstd) or, in eval mode, (running_mean, running_var).
template <class Index, bool kEval>
__global__ void __launch_bounds__(kBlock)
    bn_apply_kernel(const float* x, float* y, const float* mean, const float* stat, const float* gamma,
                    const float* beta, float eps, Index hw, Index channels, Index total) {
  const math::BatchNormNormalize normalize;
  const Index stride = static_cast<Index>(gridDim.x) * blockDim.x;
  for (Index i = static_cast<Index>(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += stride) {
    const Index c = (i / hw) % channels;
    const float invstd = kEval ? math::BatchNormInvstd{eps}(stat[c]) : stat[c];
    y[i] = normalize(x[i], mean[c], invstd, gamma[c], beta[c]);
  }
}

__global__ void __launch_bounds__(kBlock)
    bn_partial_grad_kernel(const float* x, const float* dy, const float* mean, float* part_sum_dy,
                           float* part_sum_dy_xmu, std::uint32_t hw, int channels, std::uint32_t n,
                           std::uint32_t per_chunk) {
  const int c = blockIdx.y, chunk = blockIdx.x, chunks = gridDim.x;
  const std::uint32_t begin = chunk * per_chunk;
  const std::uint32_t end = n - begin < per_chunk ? n : begin + per_chunk;
  const std::int64_t channel_offset = static_cast<std::int64_t>(c) * hw;
  const std::int64_t plane_stride = static_cast<std::int64_t>(channels) * hw;
  const float m = mean[c];
  float s1 = 0.0f, s2 = 0.0f;
  for (std::uint32_t j = begin + threadIdx.x; j < end; j += blockDim.x) {
    const std::int64_t o = channel_offset + bn_offset(j, hw, plane_stride);
    const float d = dy[o];
    s1 += d;
    s2 += d * (x[o] - m);
  }
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) {
    s1 += __shfl_down_sync(0xffffffffu, s1, off);
    s2 += __shfl_down_sync(0xffffffffu, s2, off);
  }
  __shared__ float w1[kBlock / 32], w2[kBlock / 32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) {
    w1[warp] = s1;
    w2[warp] = s2;
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    float t1 = 0.0f, t2 = 0.0f;
    for (int k = 0; k < kBlock / 32; ++k) {
      t1 += w1[k];
      t2 += w2[k];
    }
    part_sum_dy[c * chunks + chunk] = t1;
    part_sum_dy_xmu[c * chunks + chunk] = t2;
  }
}

// One thread per channel: sum the chunks in double; dbeta, dgamma, and the sums for the dx pass.
__global__ void bn_finalize_grad_kernel(const float* part_sum_dy, const float* part_sum_dy_xmu, int channels,
                                        int chunks, const float* invstd, float* dgamma, float* dbeta,
                                        float* sum_dy, float* sum_dy_xmu) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= channels) return;
  double s1 = 0.0, s2 = 0.0;
  for (int k = 0; k < chunks; ++k) {
    s1 += part_sum_dy[c * chunks + k];
    s2 += part_sum_dy_xmu[c * chunks + k];
  }
  dbeta[c] = static_cast<float>(s1);
  dgamma[c] = static_cast<float>(s2 * invstd[c]);
  sum_dy[c] = static_cast<float>(s1);
  sum_dy_xmu[c] = static_cast<float>(s2);
}

template <class Index>
__global__ void __launch_bounds__(kBlock)
    bn_input_grad_kernel(const float* x, const float* dy, float* dx, const float* mean, const float* invstd,
                         const float* gamma, const float* sum_dy, const float* sum_dy_xmu, float inv_n, Index hw,
                         Index channels, Index total) {
  const math::BatchNormInputGrad input_grad;
  const Index stride = static_cast<Index>(gridDim.x) * blockDim.x;
  for (Index i = static_cast<Index>(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += stride) {
    const Index c = (i / hw) % channels;
    dx[i] = input_grad(x[i], dy[i], mean[c], invstd[c], gamma[c], sum_dy[c], sum_dy_xmu[c], inv_n);
  }
}

// The (chunks, channels) grid of the statistics kernels: about 8 blocks per SM in all, each chunk
// at least 4096 values.
struct BnStatsPlan {
  int chunks = 1;
  std::uint32_t per_chunk = 0;
};
inline BnStatsPlan bn_stats_plan(const ::fovea::detail::ChannelGeometry& g, int device) {
  const std::int64_t n = g.per_channel();
  FOVEA_CHECK(n < (std::int64_t{1} << 31), "batch norm on CUDA supports fewer than 2^31 values per channel, got ",
              n, " (N = ", g.n, ", H*W = ", g.hw, ")");
  FOVEA_CHECK(g.c <= 65535, "batch norm on CUDA supports at most 65535 channels, got ", g.c);
  const std::int64_t target = static_cast<std::int64_t>(device_properties(device).multiProcessorCount) * 8;
  std::int64_t chunks = (target + g.c - 1) / g.c;
  const std::int64_t max_chunks = (n + 4095) / 4096;
  if (chunks > max_chunks) chunks = max_chunks;
  if (chunks < 1) chunks = 1;
  BnStatsPlan p;
  p.per_chunk = static_cast<std::uint32_t>((n + chunks - 1) / chunks);
  p.chunks = static_cast<int>((n + p.per_chunk - 1) / p.per_chunk);
  return p;
}

inline bool bn_index32(std::int64_t total) { return total < (std::int64_t{1} << 32); }

}  // namespace fovea::cuda::detail

namespace fovea::cuda {

void batch_norm_forward_training(CView x, CView gamma, CView beta, View running_mean, View running_var,
                                 float momentum, float eps, View y, View saved_mean, View saved_invstd) {
  using namespace detail;
  const auto g = ::fovea::detail::channel_geometry(x.shape());
  const int dev = y.device().index();
  DeviceGuard guard(dev);
  cudaStream_t stream = stream_for(y.device());
  const BnStatsPlan plan = bn_stats_plan(g, dev);
  const int channels = static_cast<int>(g.c);
  Tensor part(Shape{2, g.c * plan.chunks}, y.device());  // (mean | M2) per (channel, chunk)
  float* part_mean = part.data();
  float* part_m2 = part.data() + g.c * plan.chunks;
  const std::uint32_t n = static_cast<std::uint32_t>(g.per_channel());
  const dim3 grid(static_cast<unsigned>(plan.chunks), static_cast<unsigned>(g.c));
  bn_partial_stats_kernel<<<grid, kBlock, 0, stream>>>(x.data(), part_mean, part_m2,
                                                       static_cast<std::uint32_t>(g.hw), channels, n,
                                                       plan.per_chunk);
  FOVEA_CHECK_LAUNCH("bn_partial_stats_kernel", "input ", x.shape().str());
  const unsigned cgrid = static_cast<unsigned>((g.c + kBlock - 1) / kBlock);
  bn_finalize_stats_kernel<<<cgrid, kBlock, 0, stream>>>(part_mean, part_m2, channels, plan.chunks, n,
                                                         plan.per_chunk, eps, momentum, saved_mean.data(),
                                                         saved_invstd.data(), running_mean.data(),
                                                         running_var.data());
  FOVEA_CHECK_LAUNCH("bn_finalize_stats_kernel", "input ", x.shape().str());
  const std::int64_t total = x.numel();
  const unsigned egrid = grid_for(total, dev);
  if (bn_index32(total)) {
    bn_apply_kernel<std::uint32_t, false><<<egrid, kBlock, 0, stream>>>(
        x.data(), y.data(), saved_mean.data(), saved_invstd.data(), gamma.data(), beta.data(), eps,
        static_cast<std::uint32_t>(g.hw), static_cast<std::uint32_t>(g.c), static_cast<std::uint32_t>(total));
  } else {
    bn_apply_kernel<std::uint64_t, false><<<egrid, kBlock, 0, stream>>>(
        x.data(), y.data(), saved_mean.data(), saved_invstd.data(), gamma.data(), beta.data(), eps,
        static_cast<std::uint64_t>(g.hw), static_cast<std::uint64_t>(g.c), static_cast<std::uint64_t>(total));
  }
  FOVEA_CHECK_LAUNCH("bn_apply_kernel", "input ", x.shape().str());
}

void batch_norm_forward_inference(CView x, CView gamma, CView beta, CView running_mean, CView running_var,
                                  float eps, View y) {
  using namespace detail;
  const auto g = ::fovea::detail::channel_geometry(x.shape());
  const int dev = y.device().index();
  DeviceGuard guard(dev);
  cudaStream_t stream = stream_for(y.device());
  const std::int64_t total = x.numel();
  const unsigned egrid = grid_for(total, dev);
  if (bn_index32(total)) {
    bn_apply_kernel<std::uint32_t, true><<<egrid, kBlock, 0, stream>>>(
        x.data(), y.data(), running_mean.data(), running_var.data(), gamma.data(), beta.data(), eps,
        static_cast<std::uint32_t>(g.hw), static_cast<std::uint32_t>(g.c), static_cast<std::uint32_t>(total));
  } else {
    bn_apply_kernel<std::uint64_t, true><<<egrid, kBlock, 0, stream>>>(
        x.data(), y.data(), running_mean.data(), running_var.data(), gamma.data(), beta.data(), eps,
        static_cast<std::uint64_t>(g.hw), static_cast<std::uint64_t>(g.c), static_cast<std::uint64_t>(total));
  }
  FOVEA_CHECK_LAUNCH("bn_apply_kernel (eval)", "input ", x.shape().str());
}

void batch_norm_backward(CView x, CView dy, CView gamma, CView saved_mean, CView saved_invstd, View dx,
                         View dgamma, View dbeta) {
  using namespace detail;
  const auto g = ::fovea::detail::channel_geometry(x.shape());
  const int dev = dx.device().index();
  DeviceGuard guard(dev);
  cudaStream_t stream = stream_for(dx.device());
  const BnStatsPlan plan = bn_stats_plan(g, dev);
  const int channels = static_cast<int>(g.c);
  // (sum_dy | sum_dy_xmu) per (channel, chunk), then the same two per channel.
  Tensor work(Shape{2 * g.c * plan.chunks + 2 * g.c}, dx.device());
  float* part_s1 = work.data();
  float* part_s2 = part_s1 + g.c * plan.chunks;
  float* sum_dy = part_s2 + g.c * plan.chunks;
  float* sum_dy_xmu = sum_dy + g.c;
  const std::uint32_t n = static_cast<std::uint32_t>(g.per_channel());
  const dim3 grid(static_cast<unsigned>(plan.chunks), static_cast<unsigned>(g.c));
  bn_partial_grad_kernel<<<grid, kBlock, 0, stream>>>(x.data(), dy.data(), saved_mean.data(), part_s1, part_s2,
                                                      static_cast<std::uint32_t>(g.hw), channels, n,
                                                      plan.per_chunk);
  FOVEA_CHECK_LAUNCH("bn_partial_grad_kernel", "input ", x.shape().str());
  const unsigned cgrid = static_cast<unsigned>((g.c + kBlock - 1) / kBlock);
  bn_finalize_grad_kernel<<<cgrid, kBlock, 0, stream>>>(part_s1, part_s2, channels, plan.chunks,
                                                        saved_invstd.data(), dgamma.data(), dbeta.data(), sum_dy,
                                                        sum_dy_xmu);
  FOVEA_CHECK_LAUNCH("bn_finalize_grad_kernel", "input ", x.shape().str());
  const std::int64_t total = x.numel();
  const float inv_n = 1.0f / static_cast<float>(g.per_channel());
  const unsigned egrid = grid_for(total, dev);
  if (bn_index32(total)) {
    bn_input_grad_kernel<std::uint32_t><<<egrid, kBlock, 0, stream>>>(
        x.data(), dy.data(), dx.data(), saved_mean.data(), saved_invstd.data(), gamma.data(), sum_dy, sum_dy_xmu,
        inv_n, static_cast<std::uint32_t>(g.hw), static_cast<std::uint32_t>(g.c), static_cast<std::uint32_t>(total));
  } else {
    bn_input_grad_kernel<std::uint64_t><<<egrid, kBlock, 0, stream>>>(
        x.data(), dy.data(), dx.data(), saved_mean.data(), saved_invstd.data(), gamma.data(), sum_dy, sum_dy_xmu,
        inv_n, static_cast<std::uint64_t>(g.hw), static_cast<std::uint64_t>(g.c), static_cast<std::uint64_t>(total));
  }
  FOVEA_CHECK_LAUNCH("bn_input_grad_kernel", "input ", x.shape().str());
}

}  // namespace fovea::cuda
