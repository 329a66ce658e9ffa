// fovea/core/stream.hpp: CUDA streams, the calling thread's current stream, and synchronisation.
#pragma once

#include <array>

#include "fovea/core/device.hpp"
#include "fovea/core/memory.hpp"

namespace fovea {

namespace detail {
inline void*& current_stream_slot(int device) {
  thread_local std::array<void*, kMaxCudaDevices> slots{};
  FOVEA_CHECK(device >= 0 && device < kMaxCudaDevices, "CUDA device index ", device, " out of range");
  return slots[device];
}
}  // namespace detail

// The stream fovea's CUDA ops on `device` launch on from this thread. nullptr means CUDA's
// per-thread default stream (cudaStreamPerThread), which is the default.
inline void* current_stream(Device device) {
  return device.is_cuda() ? detail::current_stream_slot(device.index()) : nullptr;
}

// An owned, non-blocking CUDA stream.
class Stream {
 public:
  explicit Stream(Device device) : device_(device) {
    FOVEA_CHECK(device.is_cuda(), "a Stream needs a CUDA device, got ", device.str());
    require_device(device);
#if FOVEA_WITH_CUDA
    handle_ = cuda::stream_create(device.index());
#else
    detail::throw_no_cuda("creating a CUDA stream");
#endif
  }
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;
  ~Stream() {
#if FOVEA_WITH_CUDA
    if (handle_ != nullptr) cuda::stream_destroy(device_.index(), handle_);
#endif
  }
  void* handle() const { return handle_; }
  Device device() const { return device_; }
  void synchronize() const { FOVEA_CUDA_CALL(cuda::stream_synchronize(device_.index(), handle_)); }

 private:
  Device device_;
  void* handle_ = nullptr;
};

// Makes `stream` the calling thread's current stream for its device until the guard ends.
class StreamGuard {
 public:
  explicit StreamGuard(const Stream& stream)
      : device_(stream.device().index()), previous_(detail::current_stream_slot(device_)) {
    detail::current_stream_slot(device_) = stream.handle();
  }
  StreamGuard(const StreamGuard&) = delete;
  StreamGuard& operator=(const StreamGuard&) = delete;
  ~StreamGuard() { detail::current_stream_slot(device_) = previous_; }

 private:
  int device_;
  void* previous_;
};

// Waits until all work queued from this thread on `device`'s current stream is done (no-op on the CPU).
inline void synchronize(Device device) {
  if (device.is_cpu()) return;
  FOVEA_CUDA_CALL(cuda::stream_synchronize(device.index(), current_stream(device)));
}

}  // namespace fovea
