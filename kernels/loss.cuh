// kernels/loss.cuh: cross-entropy and MSE on the GPU (contracts in include/fovea/ops/loss.hpp).
// Cross-entropy: one warp per row (lanes stride over the K classes: maximum, sum of exponentials,
// the smoothing sum), per-row numerators and label weights into a scratch buffer, then one block sums
// them in a fixed order (deterministic, double). The backward first sums the label weights in one block,
// then recomputes each row's softmax in a warp and writes the gradient with math::CrossEntropyGrad.
// A label that is not an integer in [0, K) makes its row NaN (kernels cannot throw).
#pragma once

#include <cstdint>

#include "common.cuh"
#include "fovea/cpu/loss.hpp"
#include "fovea/cuda/loss.hpp"
#include "fovea/ops/math.hpp"

namespace fovea::cuda::detail {

constexpr int kLossReduceThreads = 1024;

__device__ __forceinline__ float loss_warp_sum(float v) {
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
  return v;
}
__device__ __forceinline__ float loss_warp_max(float v) {
  const math::MaxReduce op;
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) v = op(v, __shfl_xor_sync(0xffffffffu, v, off));
  return v;
}
// Sum over a block of kLossReduceThreads threads in a fixed order; the result is valid in thread 0.
__device__ double loss_block_sum(double v, double* shared) {
  shared[threadIdx.x] = v;
  __syncthreads();
  for (int s = blockDim.x / 2; s > 0; s >>= 1) {
    if (static_cast<int>(threadIdx.x) < s) shared[threadIdx.x] += shared[threadIdx.x + s];
    __syncthreads();
  }
  return shared[0];
}

__device__ __forceinline__ float ce_weight(const float* w, std::int64_t k) { return w != nullptr ? w[k] : 1.0f; }

// Row log-sum-exp of x (length K) by one warp.
__device__ __forceinline__ float ce_row_lse(const float* x, std::int64_t K, int lane) {
  const math::MaxReduce max_op;
  float m = math::MaxReduce::identity();
  for (std::int64_t j = lane; j < K; j += 32) m = max_op(x[j], m);
  m = loss_warp_max(m);
  float s = 0.0f;
  for (std::int64_t j = lane; j < K; j += 32) s += expf(x[j] - m);
  return m + logf(loss_warp_sum(s));
}

__global__ void __launch_bounds__(kBlock)
    ce_forward_rows_kernel(const float* logits, const float* labels, const float* w, std::int64_t N, std::int64_t K,
                           math::CrossEntropyRow row, float* numer, float* wy) {
  const int lane = threadIdx.x & 31;
  const std::int64_t warps = static_cast<std::int64_t>(gridDim.x) * (blockDim.x / 32);
  const float nan = __int_as_float(0x7fc00000);
  for (std::int64_t n = (static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / 32; n < N; n += warps) {
    const float* x = logits + n * K;
    const float lse = ce_row_lse(x, K, lane);
    float smooth = 0.0f;
    for (std::int64_t j = lane; j < K; j += 32) smooth += ce_weight(w, j) * (lse - x[j]);
    smooth = loss_warp_sum(smooth);
    if (lane == 0) {
      const std::int64_t y = math::class_index(labels[n], K);
      numer[n] = y >= 0 ? row(lse, x[y], ce_weight(w, y), smooth) : nan;
      wy[n] = y >= 0 ? ce_weight(w, y) : nan;
    }
  }
}

__global__ void __launch_bounds__(kLossReduceThreads)
    ce_forward_reduce_kernel(const float* numer, const float* wy, std::int64_t N, float* loss) {
  __shared__ double shared[kLossReduceThreads];
  double a = 0.0, b = 0.0;
  for (std::int64_t n = threadIdx.x; n < N; n += blockDim.x) {
    a += numer[n];
    b += wy[n];
  }
  a = loss_block_sum(a, shared);
  __syncthreads();
  b = loss_block_sum(b, shared);
  if (threadIdx.x == 0) loss[0] = static_cast<float>(a / b);
}

// out[0] = sum_n w_{y_n} (NaN when a label is invalid), out[1] = sum_k w_k.
__global__ void __launch_bounds__(kLossReduceThreads)
    ce_weight_sums_kernel(const float* labels, const float* w, std::int64_t N, std::int64_t K, float* out) {
  __shared__ double shared[kLossReduceThreads];
  double a = 0.0, b = 0.0;
  for (std::int64_t n = threadIdx.x; n < N; n += blockDim.x) {
    const std::int64_t y = math::class_index(labels[n], K);
    a += y >= 0 ? static_cast<double>(ce_weight(w, y)) : __longlong_as_double(0x7ff8000000000000LL);
  }
  for (std::int64_t k = threadIdx.x; k < K; k += blockDim.x) b += ce_weight(w, k);
  a = loss_block_sum(a, shared);
  __syncthreads();
  b = loss_block_sum(b, shared);
  if (threadIdx.x == 0) {
    out[0] = static_cast<float>(a);
    out[1] = static_cast<float>(b);
  }
}

__global__ void __launch_bounds__(kBlock)
    ce_backward_rows_kernel(const float* logits, const float* labels, const float* w, const float* sums, std::int64_t N,
                            std::int64_t K, float smoothing, float dloss, float* dlogits) {
  const int lane = threadIdx.x & 31;
  const std::int64_t warps = static_cast<std::int64_t>(gridDim.x) * (blockDim.x / 32);
  const float nan = __int_as_float(0x7fc00000);
  for (std::int64_t n = (static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / 32; n < N; n += warps) {
    const float* x = logits + n * K;
    float* dx = dlogits + n * K;
    const std::int64_t y = math::class_index(labels[n], K);
    if (y < 0) {
      for (std::int64_t j = lane; j < K; j += 32) dx[j] = nan;
      continue;
    }
    const float lse = ce_row_lse(x, K, lane);
    const math::CrossEntropyGrad g{dloss / sums[0], 1.0f - smoothing, smoothing / static_cast<float>(K),
                                   ce_weight(w, y), sums[1]};
    for (std::int64_t j = lane; j < K; j += 32) dx[j] = g(expf(x[j] - lse), j == y, ce_weight(w, j));
  }
}

__global__ void __launch_bounds__(kLossReduceThreads)
    mse_forward_kernel(const float* pred, const float* target, std::int64_t n, float* loss) {
  __shared__ double shared[kLossReduceThreads];
  const math::SquaredError f;
  double s = 0.0;
  for (std::int64_t i = threadIdx.x; i < n; i += blockDim.x) s += f(pred[i], target[i]);
  s = loss_block_sum(s, shared);
  if (threadIdx.x == 0) loss[0] = static_cast<float>(s / static_cast<double>(n));
}

__global__ void __launch_bounds__(kBlock)
    mse_backward_kernel(const float* pred, const float* target, std::int64_t n, math::SquaredErrorGrad f,
                        float* dpred) {
  const std::int64_t stride = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
  for (std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride)
    dpred[i] = f(pred[i], target[i]);
}

inline const float* optional_data(CView v) { return ::fovea::detail::is_present(v) ? v.data() : nullptr; }

}  // namespace fovea::cuda::detail

namespace fovea::cuda {

void cross_entropy_forward(CView logits, CView labels, CView weights, float smoothing, View loss) {
  const std::int64_t N = logits.shape()[0], K = logits.shape()[1];
  const Device dev = loss.device();
  detail::DeviceGuard guard(dev.index());
  const cudaStream_t stream = detail::stream_for(dev);
  Tensor scratch(Shape{2 * N}, dev);  // per-row numerators, then label weights
  const math::CrossEntropyRow row{1.0f - smoothing, smoothing / static_cast<float>(K)};
  detail::ce_forward_rows_kernel<<<detail::grid_for(N * 32, dev.index()), detail::kBlock, 0, stream>>>(
      logits.data(), labels.data(), detail::optional_data(weights), N, K, row, scratch.data(), scratch.data() + N);
  FOVEA_CHECK_LAUNCH("ce_forward_rows_kernel", "logits ", logits.shape().str());
  detail::ce_forward_reduce_kernel<<<1, detail::kLossReduceThreads, 0, stream>>>(scratch.data(), scratch.data() + N,
                                                                                 N, loss.data());
  FOVEA_CHECK_LAUNCH("ce_forward_reduce_kernel", "logits ", logits.shape().str());
}

void cross_entropy_backward(CView logits, CView labels, CView weights, float smoothing, float dloss, View dlogits) {
  const std::int64_t N = logits.shape()[0], K = logits.shape()[1];
  const Device dev = dlogits.device();
  detail::DeviceGuard guard(dev.index());
  const cudaStream_t stream = detail::stream_for(dev);
  Tensor sums(Shape{2}, dev);
  const float* w = detail::optional_data(weights);
  detail::ce_weight_sums_kernel<<<1, detail::kLossReduceThreads, 0, stream>>>(labels.data(), w, N, K, sums.data());
  FOVEA_CHECK_LAUNCH("ce_weight_sums_kernel", "logits ", logits.shape().str());
  detail::ce_backward_rows_kernel<<<detail::grid_for(N * 32, dev.index()), detail::kBlock, 0, stream>>>(
      logits.data(), labels.data(), w, sums.data(), N, K, smoothing, dloss, dlogits.data());
  FOVEA_CHECK_LAUNCH("ce_backward_rows_kernel", "logits ", logits.shape().str());
}

void mse_forward(CView pred, CView target, View loss) {
  const Device dev = loss.device();
  detail::DeviceGuard guard(dev.index());
  detail::mse_forward_kernel<<<1, detail::kLossReduceThreads, 0, detail::stream_for(dev)>>>(
      pred.data(), target.data(), pred.numel(), loss.data());
  FOVEA_CHECK_LAUNCH("mse_forward_kernel", "pred ", pred.shape().str());
}

void mse_backward(CView pred, CView target, float dloss, View dpred) {
  const Device dev = dpred.device();
  const std::int64_t n = pred.numel();
  detail::DeviceGuard guard(dev.index());
  const math::SquaredErrorGrad f{2.0f * dloss / static_cast<float>(n)};
  detail::mse_backward_kernel<<<detail::grid_for(n, dev.index()), detail::kBlock, 0, detail::stream_for(dev)>>>(
      pred.data(), target.data(), n, f, dpred.data());
  FOVEA_CHECK_LAUNCH("mse_backward_kernel", "pred ", pred.shape().str());
}

}  // namespace fovea::cuda
