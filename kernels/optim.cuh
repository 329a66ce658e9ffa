// kernels/optim.cuh: fused multi-tensor ops on the GPU (contracts in include/fovea/ops/optim.hpp):
// SGD, AdamW and LARS updates, gradient norm and clipping, EMA.
//
// Multi-tensor apply: the table (optim/multi_tensor.hpp) lives on the device; block b walks chunks
// b, b + grid, ... of the concatenated element space, reads its chunk's tensor slot and updates
// that chunk with the element functor shared with the CPU twin, in float4 steps when the tensor's
// pointers are 16-byte aligned. One launch covers every tensor.
// Norms: a sums launch writes one partial per chunk (sum p^2, sum g^2, sum p*g, each reduced within
// the block in float); consumers add a tensor's chunk partials in double. Nothing uses atomics, so
// results are bitwise reproducible run to run.
#pragma once

#include <cstdint>

#include "common.cuh"
#include "fovea/cuda/optim.hpp"
#include "fovea/optim/multi_tensor.hpp"

namespace fovea::cuda::detail {

__device__ __forceinline__ float4 load4(const float* p) { return *reinterpret_cast<const float4*>(p); }
__device__ __forceinline__ void store4(float* p, float4 v) { *reinterpret_cast<float4*>(p) = v; }

// Elements [begin, end) of chunk `r` of tensor `s`.
__device__ __forceinline__ void chunk_range(const TensorSlot& s, const ChunkRef& r, std::int64_t& begin,
                                            std::int64_t& end) {
  begin = static_cast<std::int64_t>(r.chunk) * kMultiTensorChunk;
  end = begin + kMultiTensorChunk < s.numel ? begin + kMultiTensorChunk : s.numel;
}

template <class U>
__device__ __forceinline__ void update_range(const U u, const TensorSlot& s, std::int64_t begin, std::int64_t end,
                                             float decay, float ratio) {
  if (s.flags & kSlotAligned) {
    const std::int64_t vend = begin + ((end - begin) & ~std::int64_t{3});
    for (std::int64_t i = begin + 4 * static_cast<std::int64_t>(threadIdx.x); i < vend; i += 4 * blockDim.x) {
      float4 p = load4(s.param + i);
      const float4 g = load4(s.grad + i);
      float4 a = make_float4(0.f, 0.f, 0.f, 0.f), b = a;
      if constexpr (U::kStates >= 1) a = load4(s.state0 + i);
      if constexpr (U::kStates >= 2) b = load4(s.state1 + i);
      u(p.x, g.x, a.x, b.x, decay, ratio);
      u(p.y, g.y, a.y, b.y, decay, ratio);
      u(p.z, g.z, a.z, b.z, decay, ratio);
      u(p.w, g.w, a.w, b.w, decay, ratio);
      store4(s.param + i, p);
      if constexpr (U::kStates >= 1) store4(s.state0 + i, a);
      if constexpr (U::kStates >= 2) store4(s.state1 + i, b);
    }
    begin = vend;
  }
  for (std::int64_t i = begin + threadIdx.x; i < end; i += blockDim.x) {
    float p = s.param[i];
    float a = 0.f, b = 0.f;
    if constexpr (U::kStates >= 1) a = s.state0[i];
    if constexpr (U::kStates >= 2) b = s.state1[i];
    u(p, s.grad[i], a, b, decay, ratio);
    s.param[i] = p;
    if constexpr (U::kStates >= 1) s.state0[i] = a;
    if constexpr (U::kStates >= 2) s.state1[i] = b;
  }
}

template <class T>
__device__ __forceinline__ T warp_sum(T v) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_down_sync(0xffffffffu, v, offset);
  return v;
}

// Sums K values across the block; the result is valid in thread 0. Every thread must call it.
template <class T, int K>
__device__ __forceinline__ void block_sum(T (&v)[K]) {
  __shared__ T partial[K][kBlock / 32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
#pragma unroll
  for (int k = 0; k < K; ++k) {
    v[k] = warp_sum(v[k]);
    if (lane == 0) partial[k][warp] = v[k];
  }
  __syncthreads();
  if (warp == 0) {
#pragma unroll
    for (int k = 0; k < K; ++k) {
      v[k] = lane < static_cast<int>(blockDim.x >> 5) ? partial[k][lane] : T(0);
      v[k] = warp_sum(v[k]);
    }
  }
  __syncthreads();
}

// Per-chunk sums: kWithParam: (sum p^2, sum g^2, sum p*g) at partials[3c..3c+2]; else sum g^2 at
// partials[c].
template <bool kWithParam>
__global__ void __launch_bounds__(kBlock) multi_tensor_sums_kernel(const TensorSlot* slots, const ChunkRef* chunks,
                                                                   int num_chunks, float* partials) {
  for (int c = blockIdx.x; c < num_chunks; c += gridDim.x) {
    const ChunkRef r = chunks[c];
    const TensorSlot s = slots[r.tensor];
    std::int64_t begin, end;
    chunk_range(s, r, begin, end);
    float acc[3] = {0.f, 0.f, 0.f};
    if (s.flags & kSlotAligned) {
      const std::int64_t vend = begin + ((end - begin) & ~std::int64_t{3});
#pragma unroll 4
      for (std::int64_t i = begin + 4 * static_cast<std::int64_t>(threadIdx.x); i < vend; i += 4 * blockDim.x) {
        const float4 g = load4(s.grad + i);
        acc[1] += g.x * g.x + g.y * g.y + g.z * g.z + g.w * g.w;
        if constexpr (kWithParam) {
          const float4 p = load4(s.param + i);
          acc[0] += p.x * p.x + p.y * p.y + p.z * p.z + p.w * p.w;
          acc[2] += p.x * g.x + p.y * g.y + p.z * g.z + p.w * g.w;
        }
      }
      begin = vend;
    }
    for (std::int64_t i = begin + threadIdx.x; i < end; i += blockDim.x) {
      const float g = s.grad[i];
      acc[1] += g * g;
      if constexpr (kWithParam) {
        const float p = s.param[i];
        acc[0] += p * p;
        acc[2] += p * g;
      }
    }
    block_sum(acc);
    if (threadIdx.x == 0) {
      if constexpr (kWithParam) {
        partials[3 * c] = acc[0];
        partials[3 * c + 1] = acc[1];
        partials[3 * c + 2] = acc[2];
      } else {
        partials[c] = acc[1];
      }
    }
  }
}

// The trust ratio of tensor `s` from its chunk partials (kWithParam layout); valid in every thread.
__device__ __forceinline__ float block_trust_ratio(const TensorSlot& s, const float* partials, float decay,
                                                   float eta, LarsTrust trust) {
  __shared__ float ratio;
  const int n = static_cast<int>((s.numel + kMultiTensorChunk - 1) / kMultiTensorChunk);
  double acc[3] = {0.0, 0.0, 0.0};
  for (int k = threadIdx.x; k < n; k += blockDim.x) {
    const float* p = partials + 3 * (static_cast<std::int64_t>(s.chunk_begin) + k);
    acc[0] += p[0];
    acc[1] += p[1];
    acc[2] += p[2];
  }
  block_sum(acc);
  if (threadIdx.x == 0) ratio = math::lars_trust_ratio(acc[0], acc[1], acc[2], decay, eta, trust);
  __syncthreads();
  const float r = ratio;
  __syncthreads();
  return r;
}

template <class U, bool kAdapt>
__global__ void __launch_bounds__(kBlock)
    multi_tensor_update_kernel(const TensorSlot* slots, const ChunkRef* chunks, int num_chunks, U u,
                               float weight_decay, const float* partials, float eta, LarsTrust trust) {
  for (int c = blockIdx.x; c < num_chunks; c += gridDim.x) {
    const ChunkRef r = chunks[c];
    const TensorSlot s = slots[r.tensor];
    const float decay = (s.flags & kSlotNoDecay) ? 0.0f : weight_decay;
    float ratio = 1.0f;
    if constexpr (kAdapt) {
      if (!(s.flags & kSlotNoAdapt)) ratio = block_trust_ratio(s, partials, decay, eta, trust);
    }
    std::int64_t begin, end;
    chunk_range(s, r, begin, end);
    update_range(u, s, begin, end, decay, ratio);
  }
}

// One block per tensor: its trust ratio into out[t].
__global__ void __launch_bounds__(kBlock) lars_ratio_kernel(const TensorSlot* slots, int num_tensors,
                                                            const float* partials, float weight_decay, float eta,
                                                            LarsTrust trust, float* out) {
  for (int t = blockIdx.x; t < num_tensors; t += gridDim.x) {
    const TensorSlot s = slots[t];
    const float decay = (s.flags & kSlotNoDecay) ? 0.0f : weight_decay;
    const float r = (s.flags & kSlotNoAdapt) || s.numel == 0 ? 1.0f : block_trust_ratio(s, partials, decay, eta, trust);
    if (threadIdx.x == 0) out[t] = r;
  }
}

// out[0] = sqrt(sum of partials[0..n)), out[1] = clip coefficient for max_norm. One block.
__global__ void __launch_bounds__(kBlock) norm_finalize_kernel(const float* partials, int n, float max_norm,
                                                               float* out) {
  double acc[1] = {0.0};
  for (int k = threadIdx.x; k < n; k += blockDim.x) acc[0] += partials[k];
  block_sum(acc);
  if (threadIdx.x == 0) {
    const float norm = static_cast<float>(sqrt(acc[0]));
    out[0] = norm;
    out[1] = math::clip_coefficient(norm, max_norm);
  }
}

// grad *= *coef for every element of every tensor.
__global__ void __launch_bounds__(kBlock) multi_tensor_scale_grad_kernel(const TensorSlot* slots,
                                                                         const ChunkRef* chunks, int num_chunks,
                                                                         const float* coef) {
  const float k = *coef;
  for (int c = blockIdx.x; c < num_chunks; c += gridDim.x) {
    const ChunkRef r = chunks[c];
    const TensorSlot s = slots[r.tensor];
    std::int64_t begin, end;
    chunk_range(s, r, begin, end);
    if (s.flags & kSlotAligned) {
      const std::int64_t vend = begin + ((end - begin) & ~std::int64_t{3});
      for (std::int64_t i = begin + 4 * static_cast<std::int64_t>(threadIdx.x); i < vend; i += 4 * blockDim.x) {
        float4 g = load4(s.grad + i);
        g.x *= k;
        g.y *= k;
        g.z *= k;
        g.w *= k;
        store4(s.grad + i, g);
      }
      begin = vend;
    }
    for (std::int64_t i = begin + threadIdx.x; i < end; i += blockDim.x) s.grad[i] *= k;
  }
}

inline unsigned chunk_grid(std::int64_t items, int device) {
  const std::int64_t cap = static_cast<std::int64_t>(device_properties(device).multiProcessorCount) * 32;
  const std::int64_t g = items < cap ? items : cap;
  return static_cast<unsigned>(g < 1 ? 1 : g);
}

template <class U, bool kAdapt>
void launch_update(MultiTensorTable& table, const U& u, float weight_decay, const float* partials, float eta,
                   LarsTrust trust) {
  const int dev = table.device().index();
  const int n = static_cast<int>(table.num_chunks());
  multi_tensor_update_kernel<U, kAdapt><<<chunk_grid(n, dev), kBlock, 0, stream_for(table.device())>>>(
      table.device_slots(), table.device_chunks(), n, u, weight_decay, partials, eta, trust);
  FOVEA_CHECK_LAUNCH("multi_tensor_update_kernel", table.slots().size(), " tensors, ", table.total_numel(),
                     " elements");
}

template <bool kWithParam>
float* launch_sums(MultiTensorTable& table, std::int64_t extra) {
  const int dev = table.device().index();
  const int n = static_cast<int>(table.num_chunks());
  float* partials = table.scratch(kWithParam ? 3 : 1, extra);
  multi_tensor_sums_kernel<kWithParam><<<chunk_grid(n, dev), kBlock, 0, stream_for(table.device())>>>(
      table.device_slots(), table.device_chunks(), n, partials);
  FOVEA_CHECK_LAUNCH("multi_tensor_sums_kernel", table.slots().size(), " tensors, ", table.total_numel(),
                     " elements");
  return partials;
}

// Launches the gradient sums and the finalize kernel; returns the device pair (norm, coefficient).
inline float* launch_grad_norm(MultiTensorTable& table, float max_norm) {
  float* partials = launch_sums<false>(table, 2);
  const int n = static_cast<int>(table.num_chunks());
  float* out = partials + n;
  norm_finalize_kernel<<<1, kBlock, 0, stream_for(table.device())>>>(partials, n, max_norm, out);
  FOVEA_CHECK_LAUNCH("norm_finalize_kernel", n, " chunks");
  return out;
}

inline float read_device_float(const float* p, Device device) {
  float v = 0.0f;
  copy(CView(p, Shape{1}, device), View(&v, Shape{1}, Device::cpu()));
  return v;
}

}  // namespace fovea::cuda::detail

namespace fovea::cuda {

void sgd_update(MultiTensorTable& table, const SgdStep& s) {
  detail::DeviceGuard guard(table.device().index());
  if (s.momentum == 0.0f) {
    detail::launch_update<math::SgdPlainElement, false>(table, math::SgdPlainElement{s.lr}, s.weight_decay, nullptr,
                                                        0.0f, LarsTrust::paper);
  } else {
    detail::launch_update<math::SgdMomentumElement, false>(
        table, math::SgdMomentumElement{s.lr, s.momentum, s.dampening, s.nesterov, s.first}, s.weight_decay, nullptr,
        0.0f, LarsTrust::paper);
  }
}

void adamw_update(MultiTensorTable& table, const AdamWStep& s) {
  detail::DeviceGuard guard(table.device().index());
  detail::launch_update<math::AdamWElement, false>(table, math::adamw_element(s), s.weight_decay, nullptr, 0.0f,
                                                   LarsTrust::paper);
}

void lars_update(MultiTensorTable& table, const LarsStep& s) {
  detail::DeviceGuard guard(table.device().index());
  const float* partials = detail::launch_sums<true>(table, 0);
  detail::launch_update<math::LarsElement, true>(table, math::LarsElement{s.lr, s.momentum, s.nesterov},
                                                 s.weight_decay, partials, s.trust_coefficient, s.trust);
}

void lars_trust_ratios(MultiTensorTable& table, const LarsStep& s, float* out) {
  detail::DeviceGuard guard(table.device().index());
  const int tensors = static_cast<int>(table.slots().size());
  float* partials = detail::launch_sums<true>(table, tensors);
  float* ratios = partials + 3 * table.num_chunks();
  detail::lars_ratio_kernel<<<detail::chunk_grid(tensors, table.device().index()), detail::kBlock, 0,
                              detail::stream_for(table.device())>>>(table.device_slots(), tensors, partials,
                                                                    s.weight_decay, s.trust_coefficient, s.trust,
                                                                    ratios);
  FOVEA_CHECK_LAUNCH("lars_ratio_kernel", tensors, " tensors");
  copy(CView(ratios, Shape{tensors}, table.device()), View(out, Shape{tensors}, Device::cpu()));
}

float grad_norm(MultiTensorTable& table) {
  detail::DeviceGuard guard(table.device().index());
  return detail::read_device_float(detail::launch_grad_norm(table, 1.0f), table.device());
}

float clip_grad_norm(MultiTensorTable& table, float max_norm) {
  detail::DeviceGuard guard(table.device().index());
  const float* out = detail::launch_grad_norm(table, max_norm);
  const int n = static_cast<int>(table.num_chunks());
  detail::multi_tensor_scale_grad_kernel<<<detail::chunk_grid(n, table.device().index()), detail::kBlock, 0,
                                           detail::stream_for(table.device())>>>(table.device_slots(),
                                                                                 table.device_chunks(), n, out + 1);
  FOVEA_CHECK_LAUNCH("multi_tensor_scale_grad_kernel", table.slots().size(), " tensors");
  return detail::read_device_float(out, table.device());
}

void ema_update(MultiTensorTable& table, float momentum) {
  detail::DeviceGuard guard(table.device().index());
  detail::launch_update<math::EmaElement, false>(table, math::EmaElement{momentum}, 0.0f, nullptr, 0.0f,
                                                 LarsTrust::paper);
}

}  // namespace fovea::cuda
