// kernels/common.cuh: what every kernel file uses: launch geometry for grid-stride loops, the
// stream and device of a view, and device properties cached per device.
#pragma once

#include <cuda_runtime.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <utility>
#include <vector>

#include "check.cuh"
#include "fovea/core/env.hpp"
#include "fovea/core/stream.hpp"
#include "fovea/core/tensor.hpp"

namespace fovea::cuda::detail {

// cudaDeviceProp of `device`, read once.
inline const cudaDeviceProp& device_properties(int device) {
  static std::array<cudaDeviceProp, ::fovea::detail::kMaxCudaDevices> props{};
  static std::array<std::once_flag, ::fovea::detail::kMaxCudaDevices> once;
  std::call_once(once[device],
                 [&] { FOVEA_CHECK_CUDA(cudaGetDeviceProperties(&props[device], device)); });
  return props[device];
}

// The stream fovea launches on for `device` from this thread (the per-thread default stream
// unless a StreamGuard set another).
inline cudaStream_t stream_for(Device device) {
  void* s = ::fovea::current_stream(device);
  return s != nullptr ? static_cast<cudaStream_t>(s) : cudaStreamPerThread;
}

// Makes `device` current for the calling thread while the guard lives.
class DeviceGuard {
 public:
  explicit DeviceGuard(int device) {
    FOVEA_CHECK_CUDA(cudaGetDevice(&previous_));
    if (previous_ != device) FOVEA_CHECK_CUDA(cudaSetDevice(device));
  }
  ~DeviceGuard() { cudaSetDevice(previous_); }
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int previous_ = 0;
};

inline constexpr int kBlock = 256;

// Blocks for a grid-stride loop over `work_items` items: enough to cover them, capped at 16 waves
// of resident blocks so the loop, not the launch, does the striding.
inline unsigned grid_for(std::int64_t work_items, int device) {
  const std::int64_t needed = (work_items + kBlock - 1) / kBlock;
  const std::int64_t cap = static_cast<std::int64_t>(device_properties(device).multiProcessorCount) * 16;
  const std::int64_t blocks = needed < cap ? needed : cap;
  return static_cast<unsigned>(blocks < 1 ? 1 : blocks);
}

// Programmatic dependent launch (compute capability 9.0 and later). A kernel launched with
// launch_dependent() may be scheduled while the kernel before it on the stream is still running; it
// must call pdl_wait() before it touches global memory, which returns once that kernel has completed
// and its writes are visible (as with an ordinary launch). pdl_trigger() lets the next dependent
// launch be scheduled as soon as every block of this grid has called it (it says nothing about this
// grid's writes, which the next kernel's pdl_wait() still waits for). So a chain of kernels that each
// start with pdl_trigger(); pdl_wait(); keeps stream order and overlaps each launch with the tail of
// the kernel before it. Both are no-ops on older devices and in kernels launched the ordinary way.
__device__ __forceinline__ void pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}
__device__ __forceinline__ void pdl_trigger() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

// Asynchronous global -> shared copies (cp.async, compute capability 8.0 and later) of 16 or 4 bytes;
// valid = false writes zeros instead (src is not read, but must be a valid address). A thread's copies
// form a group at cp_commit(); cp_wait<k>() returns once at most k of its committed groups are still
// in flight, which makes the landed copies visible to that thread (others see them after a barrier).
// 16-byte copies need 16-byte aligned addresses on both sides. On older devices the copies are
// ordinary loads and stores, done at once.
__device__ __forceinline__ void cp_async16(float* dst, const float* src, bool valid) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
  *reinterpret_cast<float4*>(dst) = valid ? *reinterpret_cast<const float4*>(src) : float4{0, 0, 0, 0};
#else
  const auto s = static_cast<std::uint32_t>(__cvta_generic_to_shared(dst));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(s), "l"(src), "r"(valid ? 16 : 0)
               : "memory");
#endif
}
__device__ __forceinline__ void cp_async4(float* dst, const float* src, bool valid) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
  *dst = valid ? *src : 0.0f;
#else
  const auto s = static_cast<std::uint32_t>(__cvta_generic_to_shared(dst));
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;" ::"r"(s), "l"(src), "r"(valid ? 4 : 0)
               : "memory");
#endif
}
__device__ __forceinline__ void cp_commit() {
#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800
  asm volatile("cp.async.commit_group;" ::: "memory");
#endif
}
template <int kPending>
__device__ __forceinline__ void cp_wait() {
#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800
  asm volatile("cp.async.wait_group %0;" ::"n"(kPending) : "memory");
#endif
}

// Thread block clusters (compute capability 9.0 and later). cluster_sync(): a barrier over every thread
// of the block's cluster, with release / acquire semantics, so shared-memory writes made before it
// by any block of the cluster are visible after it to all of them (it is also a block barrier). Every
// thread of every block of the cluster must reach it. cluster_peer(p, rank): p, an address in this
// block's shared memory, mapped to the same offset in the shared memory of the cluster's block
// `rank` (distributed shared memory, read with ordinary loads while that block is alive: a block
// must not exit while others may still read its shared memory). Both trap on older devices, where
// the host never launches clusters.
__device__ __forceinline__ void cluster_sync() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 900
  __trap();
#else
  asm volatile("barrier.cluster.arrive.release.aligned;\n\tbarrier.cluster.wait.acquire.aligned;" ::
                   : "memory");
#endif
}
template <class T>
__device__ __forceinline__ const T* cluster_peer(const T* p, unsigned rank) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 900
  __trap();
  return p;
#else
  std::uint64_t mapped = 0;
  asm volatile("mapa.u64 %0, %1, %2;" : "=l"(mapped) : "l"(reinterpret_cast<std::uint64_t>(p)), "r"(rank));
  return reinterpret_cast<const T*>(mapped);
#endif
}

// Launches kernel<<<grid, block, smem, stream>>>(args...) as a programmatic dependent launch where
// the device supports it (compute capability 9.0+), else the ordinary way. The kernel must begin
// with pdl_wait() (see above) before any global memory access.
template <class... Params, class... Args>
void launch_dependent(int device, void (*kernel)(Params...), dim3 grid, dim3 block, std::size_t smem,
                      cudaStream_t stream, Args&&... args) {
  cudaLaunchConfig_t config{};
  config.gridDim = grid;
  config.blockDim = block;
  config.dynamicSmemBytes = smem;
  config.stream = stream;
  cudaLaunchAttribute attribute{};
  attribute.id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attribute.val.programmaticStreamSerializationAllowed = 1;
  if (device_properties(device).major >= 9) {
    config.attrs = &attribute;
    config.numAttrs = 1;
  }
  // The launch's error, if any, is what the caller's FOVEA_CHECK_LAUNCH reads back.
  (void)cudaLaunchKernelEx(&config, kernel, std::forward<Args>(args)...);
}

// The launch configuration of launch_clustered(): grid in clusters of `cluster` blocks (the grid's
// size a multiple of it in each dimension), a programmatic dependent launch as launch_dependent's.
// Compute capability 9.0 and later only. attrs must outlive the returned config.
inline cudaLaunchConfig_t clustered_config(dim3 grid, dim3 cluster, dim3 block, std::size_t smem,
                                           cudaStream_t stream, cudaLaunchAttribute (&attrs)[2]) {
  cudaLaunchConfig_t config{};
  config.gridDim = grid;
  config.blockDim = block;
  config.dynamicSmemBytes = smem;
  config.stream = stream;
  attrs[0] = cudaLaunchAttribute{};
  attrs[0].id = cudaLaunchAttributeClusterDimension;
  attrs[0].val.clusterDim.x = cluster.x;
  attrs[0].val.clusterDim.y = cluster.y;
  attrs[0].val.clusterDim.z = cluster.z;
  attrs[1] = cudaLaunchAttribute{};
  attrs[1].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attrs[1].val.programmaticStreamSerializationAllowed = 1;
  config.attrs = attrs;
  config.numAttrs = 2;
  return config;
}

// Launches kernel in clusters (clustered_config); the kernel must begin with pdl_wait() as for
// launch_dependent.
template <class... Params, class... Args>
void launch_clustered(void (*kernel)(Params...), dim3 grid, dim3 cluster, dim3 block, std::size_t smem,
                      cudaStream_t stream, Args&&... args) {
  cudaLaunchAttribute attrs[2];
  const cudaLaunchConfig_t config = clustered_config(grid, cluster, block, smem, stream, attrs);
  (void)cudaLaunchKernelEx(&config, kernel, std::forward<Args>(args)...);
}

// Page-locked host staging for small per-call uploads (the augmentation plans). A cudaMemcpyAsync
// from pageable memory may synchronise with the stream (CUDA's "API synchronization behavior"), so
// every call would wait for the GPU to drain the work queued before it; from page-locked memory the
// copy is queued like a kernel and the host runs ahead. upload() copies the bytes into a slot, queues
// the copy from the slot and records the slot's event after it; a slot is written again only once
// that event has completed. The ring grows to kSlots slots, then waits for the oldest. One ring per
// device, shared by the host threads under a mutex, never freed (as the caching allocator).
class HostStaging {
 public:
  static constexpr std::size_t kSlots = 16;
  static constexpr std::size_t kMinSlotBytes = 64 * 1024;

  static HostStaging& of(int device) {
    static std::array<HostStaging*, ::fovea::detail::kMaxCudaDevices> rings{};
    static std::mutex mutex;
    std::lock_guard<std::mutex> lock(mutex);
    if (rings[device] == nullptr) rings[device] = new HostStaging(device);
    return *rings[device];
  }

  // Queues a copy of `bytes` from host `src` to device `dst` on `stream` (the caller made the
  // ring's device current). src may be reused as soon as this returns. Without page-locked memory
  // (cudaHostAlloc failed) the copy goes from pageable memory, which is correct, only slower.
  void upload(void* dst, const void* src, std::size_t bytes, cudaStream_t stream) {
    if (bytes == 0) return;
    std::lock_guard<std::mutex> lock(mutex_);
    Slot* slot = free_slot(bytes);
    if (slot == nullptr) {
      FOVEA_CHECK_CUDA(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, stream), bytes,
                       " bytes from pageable host memory to cuda:", device_);
      return;
    }
    std::memcpy(slot->host, src, bytes);
    FOVEA_CHECK_CUDA(cudaMemcpyAsync(dst, slot->host, bytes, cudaMemcpyHostToDevice, stream), bytes,
                     " bytes from page-locked staging to cuda:", device_);
    FOVEA_CHECK_CUDA(cudaEventRecord(slot->done, stream), "staging event on cuda:", device_);
  }

 private:
  struct Slot {
    void* host = nullptr;
    std::size_t bytes = 0;
    cudaEvent_t done = nullptr;
  };

  explicit HostStaging(int device) : device_(device) { slots_.reserve(kSlots); }

  // A slot no queued copy still reads, holding at least `bytes` (nullptr: no page-locked memory).
  Slot* free_slot(std::size_t bytes) {
    Slot* slot = nullptr;
    for (std::size_t k = 0; k < slots_.size() && slot == nullptr; ++k) {
      Slot& s = slots_[(next_ + k) % slots_.size()];
      const cudaError_t e = cudaEventQuery(s.done);  // cudaSuccess also before the first record
      if (e == cudaSuccess) {
        slot = &s;
      } else if (e != cudaErrorNotReady) {
        FOVEA_CHECK_CUDA(e, "staging event on cuda:", device_);
      }
    }
    if (slot == nullptr && slots_.size() < kSlots) {
      Slot fresh;
      FOVEA_CHECK_CUDA(cudaEventCreateWithFlags(&fresh.done, cudaEventDisableTiming),
                       "staging event on cuda:", device_);
      slots_.push_back(fresh);
      slot = &slots_.back();
    }
    if (slot == nullptr) {  // all kSlots in flight: wait for the oldest
      slot = &slots_[next_ % slots_.size()];
      FOVEA_CHECK_CUDA(cudaEventSynchronize(slot->done), "staging event on cuda:", device_);
    }
    next_ = static_cast<std::size_t>(slot - slots_.data()) + 1;
    if (slot->bytes < bytes) {
      if (slot->host != nullptr) cudaFreeHost(slot->host);
      slot->host = nullptr, slot->bytes = 0;
      std::size_t capacity = kMinSlotBytes;
      while (capacity < bytes) capacity *= 2;
      const cudaError_t e = cudaHostAlloc(&slot->host, capacity, cudaHostAllocPortable);
      if (e == cudaErrorMemoryAllocation) {
        cudaGetLastError();
        slot->host = nullptr;
        return nullptr;
      }
      FOVEA_CHECK_CUDA(e, "cudaHostAlloc of ", capacity, " bytes of staging");
      slot->bytes = capacity;
    }
    return slot;
  }

  int device_;
  std::mutex mutex_;
  std::vector<Slot> slots_;
  std::size_t next_ = 0;
};

}  // namespace fovea::cuda::detail
