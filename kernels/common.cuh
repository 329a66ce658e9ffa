// kernels/common.cuh: what every kernel file uses: launch geometry for grid-stride loops, the
// stream and device of a view, and device properties cached per device.
#pragma once

#include <cuda_runtime.h>

#include <array>
#include <cstdint>
#include <mutex>

#include "check.cuh"
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

}  // namespace fovea::cuda::detail
