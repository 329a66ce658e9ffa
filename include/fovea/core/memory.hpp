// fovea/core/memory.hpp: host allocation, the caching CUDA allocator, and memory statistics.
#pragma once

#include <algorithm>
#include <array>
#include <atomic>
#include <cstddef>
#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <utility>
#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include "fovea/core/device.hpp"
#include "fovea/core/error.hpp"

namespace fovea {

struct MemoryStats {
  std::size_t current_bytes = 0;   // handed out to tensors now
  std::size_t peak_bytes = 0;      // maximum of current_bytes since start or reset_peak()
  std::size_t cached_bytes = 0;    // freed by tensors, kept for reuse
  std::size_t allocations = 0;     // allocate() calls
  std::size_t cache_hits = 0;      // allocate() calls served from the cache
  std::size_t device_allocations = 0;  // calls that reached the raw allocator
};

// The raw memory source under a CachingAllocator: cudaMalloc/cudaFree for a device, or a fake in
// tests. allocate() returns nullptr when out of memory.
class RawAllocator {
 public:
  virtual ~RawAllocator() = default;
  virtual void* allocate(std::size_t bytes) = 0;
  virtual void release(void* ptr) = 0;
  virtual std::string name() const = 0;
};

// Reuses freed blocks instead of returning them to the driver (cudaMalloc and cudaFree synchronise
// the device and cost tens of microseconds).
//
// Contract:
// - sizes are rounded up to 512 B below 1 MiB and to 2 MiB above, so repeated shapes hit the cache;
// - a freed block is reused only for an allocation on the same stream (it may still be read by
//   queued work on that stream; work on one stream runs in order, so reuse there is safe);
// - a cached block is reused for a request of at least half its size (best fit otherwise);
// - when the raw allocator runs out, the whole cache is released and the request retried once,
//   then OutOfMemoryError names the request and the current statistics.
// Thread-safe.
class CachingAllocator {
 public:
  static constexpr std::size_t kSmallRound = 512;
  static constexpr std::size_t kLargeThreshold = std::size_t{1} << 20;
  static constexpr std::size_t kLargeRound = std::size_t{2} << 20;

  explicit CachingAllocator(std::unique_ptr<RawAllocator> raw) : raw_(std::move(raw)) {}
  CachingAllocator(const CachingAllocator&) = delete;
  CachingAllocator& operator=(const CachingAllocator&) = delete;
  ~CachingAllocator() { release_cache(); }

  static std::size_t round_size(std::size_t bytes) {
    if (bytes == 0) bytes = 1;
    const std::size_t r = bytes < kLargeThreshold ? kSmallRound : kLargeRound;
    return (bytes + r - 1) / r * r;
  }

  void* allocate(std::size_t bytes, void* stream = nullptr) {
    const std::size_t size = round_size(bytes);
    std::lock_guard<std::mutex> lock(mutex_);
    ++stats_.allocations;
    auto it = free_.lower_bound({stream, size});
    if (it != free_.end() && it->first.first == stream && it->first.second / 2 <= size) {
      const std::size_t block = it->first.second;
      void* ptr = it->second;
      free_.erase(it);
      stats_.cached_bytes -= block;
      ++stats_.cache_hits;
      return hand_out(ptr, block, stream);
    }
    void* ptr = raw_->allocate(size);
    if (ptr == nullptr) {
      release_cache_locked();
      ptr = raw_->allocate(size);
    }
    if (ptr == nullptr) {
      throw OutOfMemoryError("out of memory on " + raw_->name() + ": requested " +
                             std::to_string(bytes) + " bytes (rounded to " + std::to_string(size) +
                             "), " + std::to_string(stats_.current_bytes) +
                             " bytes in use by tensors, peak " + std::to_string(stats_.peak_bytes));
    }
    ++stats_.device_allocations;
    return hand_out(ptr, size, stream);
  }

  void deallocate(void* ptr) {
    if (ptr == nullptr) return;
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = in_use_.find(ptr);
    FOVEA_CHECK(it != in_use_.end(), "pointer ", ptr, " was not allocated by ", raw_->name());
    const Block block = it->second;
    in_use_.erase(it);
    stats_.current_bytes -= block.size;
    stats_.cached_bytes += block.size;
    free_.emplace(std::make_pair(block.stream, block.size), ptr);
  }

  // Returns every cached block to the raw allocator.
  void release_cache() {
    std::lock_guard<std::mutex> lock(mutex_);
    release_cache_locked();
  }

  MemoryStats stats() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return stats_;
  }
  void reset_peak() {
    std::lock_guard<std::mutex> lock(mutex_);
    stats_.peak_bytes = stats_.current_bytes;
  }

 private:
  struct Block {
    std::size_t size;
    void* stream;
  };

  void* hand_out(void* ptr, std::size_t size, void* stream) {
    in_use_.emplace(ptr, Block{size, stream});
    stats_.current_bytes += size;
    stats_.peak_bytes = std::max(stats_.peak_bytes, stats_.current_bytes);
    return ptr;
  }
  void release_cache_locked() {
    for (auto& [key, ptr] : free_) raw_->release(ptr);
    free_.clear();
    stats_.cached_bytes = 0;
  }

  std::unique_ptr<RawAllocator> raw_;
  mutable std::mutex mutex_;
  std::multimap<std::pair<void*, std::size_t>, void*> free_;  // (stream, size) -> block
  std::unordered_map<void*, Block> in_use_;
  MemoryStats stats_;
};

namespace detail {

#if FOVEA_WITH_CUDA
class CudaRawAllocator final : public RawAllocator {
 public:
  explicit CudaRawAllocator(int device) : device_(device) {}
  void* allocate(std::size_t bytes) override { return cuda::device_malloc(device_, bytes); }
  void release(void* ptr) override { cuda::device_free(device_, ptr); }
  std::string name() const override { return "cuda:" + std::to_string(device_); }

 private:
  int device_;
};
#endif

inline constexpr int kMaxCudaDevices = 64;

// Host-side byte counters for CPU tensors (current and peak).
struct HostCounters {
  std::atomic<std::size_t> current{0};
  std::atomic<std::size_t> peak{0};
  std::atomic<std::size_t> allocations{0};
};
inline HostCounters& host_counters() {
  static HostCounters counters;
  return counters;
}

}  // namespace detail

// The process-wide caching allocator of CUDA device `index` (created on first use, after checking
// the device exists; never destroyed, so no CUDA call runs during static destruction).
inline CachingAllocator& cuda_allocator(int index) {
#if FOVEA_WITH_CUDA
  static std::array<std::atomic<CachingAllocator*>, detail::kMaxCudaDevices> allocators{};
  static std::mutex mutex;
  FOVEA_CHECK(index >= 0 && index < detail::kMaxCudaDevices, "CUDA device index ", index,
              " out of range");
  CachingAllocator* a = allocators[index].load(std::memory_order_acquire);
  if (a != nullptr) return *a;
  std::lock_guard<std::mutex> lock(mutex);
  a = allocators[index].load(std::memory_order_relaxed);
  if (a == nullptr) {
    cuda::require_device(index);
    a = new CachingAllocator(std::make_unique<detail::CudaRawAllocator>(index));
    allocators[index].store(a, std::memory_order_release);
  }
  return *a;
#else
  detail::throw_no_cuda(("allocating on cuda:" + std::to_string(index)).c_str());
#endif
}

// 64-byte aligned host memory; throws fovea::Error when the system is out of memory.
inline void* host_allocate(std::size_t bytes) {
  const std::size_t size = (std::max<std::size_t>(bytes, 1) + 63) / 64 * 64;
  void* ptr = std::aligned_alloc(64, size);
  if (ptr == nullptr)
    throw OutOfMemoryError("out of host memory: requested " + std::to_string(bytes) + " bytes");
  auto& c = detail::host_counters();
  const std::size_t now = c.current.fetch_add(size) + size;
  std::size_t peak = c.peak.load();
  while (now > peak && !c.peak.compare_exchange_weak(peak, now)) {
  }
  c.allocations.fetch_add(1);
  return ptr;
}
inline void host_deallocate(void* ptr, std::size_t bytes) {
  if (ptr == nullptr) return;
  const std::size_t size = (std::max<std::size_t>(bytes, 1) + 63) / 64 * 64;
  detail::host_counters().current.fetch_sub(size);
  std::free(ptr);
}

// Opt-in, process-wide: lets glibc's malloc keep freed host blocks for reuse. A CPU training or
// attribution step allocates and frees the same activation-sized tensors over and over; with glibc's
// defaults a block above its (adaptive) mmap threshold, or freed memory above the trim threshold, goes
// back to the kernel and the next allocation page-faults it in again, zeroed (about 10 % of a CPU
// saliency run's time on 2 cores). This maps only blocks of 32 MiB and more separately and returns
// freed heap memory to the kernel once more than 256 MiB of it sits at the heap's top. The `fovea`
// program calls it first thing; a library user may. It does nothing without glibc, and leaves the
// setting alone when GLIBC_TUNABLES sets malloc tunables (the user's choice wins). Returns whether
// it changed the setting.
inline bool reuse_freed_host_memory() {
#if defined(__GLIBC__)
  if (const char* t = std::getenv("GLIBC_TUNABLES");
      t != nullptr && std::string(t).find("malloc.") != std::string::npos)
    return false;
  const bool mmap_ok = mallopt(M_MMAP_THRESHOLD, 32 << 20) == 1;
  const bool trim_ok = mallopt(M_TRIM_THRESHOLD, 256 << 20) == 1;
  return mmap_ok && trim_ok;
#else
  return false;
#endif
}

// Starts a new peak on `device`: peak_bytes becomes current_bytes (e.g. to measure one phase).
inline void reset_peak_memory(Device device) {
  if (device.is_cuda()) {
    cuda_allocator(device.index()).reset_peak();
    return;
  }
  auto& c = detail::host_counters();
  c.peak.store(c.current.load());
}

// Current and peak bytes held by tensors on `device` (the cache fields are 0 for the CPU).
inline MemoryStats memory_stats(Device device) {
  if (device.is_cuda()) return cuda_allocator(device.index()).stats();
  auto& c = detail::host_counters();
  MemoryStats s;
  s.current_bytes = c.current.load();
  s.peak_bytes = c.peak.load();
  s.allocations = c.allocations.load();
  return s;
}

}  // namespace fovea
