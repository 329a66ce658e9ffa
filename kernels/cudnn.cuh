// kernels/cudnn.cuh: every cuDNN call of fovea lives in this file: per-thread, per-device handles
// bound to the current stream, the version, and (later) descriptor and algorithm caches.
#pragma once

#include <cudnn.h>

#include <array>
#include <string>

#include "check.cuh"
#include "common.cuh"

namespace fovea::cuda::detail {

// The calling thread's cuDNN handle for `device`, bound to the thread's current stream. Handles are
// created on first use and deliberately never destroyed (destroying at process exit races the CUDA
// runtime's own teardown).
inline cudnnHandle_t cudnn_handle(Device device) {
  thread_local std::array<cudnnHandle_t, ::fovea::detail::kMaxCudaDevices> handles{};
  cudnnHandle_t& h = handles[device.index()];
  if (h == nullptr) {
    DeviceGuard guard(device.index());
    FOVEA_CHECK_CUDNN(cudnnCreate(&h), "creating the cuDNN handle of ", device.str());
  }
  FOVEA_CHECK_CUDNN(cudnnSetStream(h, stream_for(device)));
  return h;
}

// "9.19.0" for the library loaded at run time (which may differ from the headers').
inline std::string cudnn_version_string() {
  const std::size_t v = cudnnGetVersion();  // 9.19.0 -> 91900
  return std::to_string(v / 10000) + "." + std::to_string((v % 10000) / 100) + "." +
         std::to_string(v % 100);
}

}  // namespace fovea::cuda::detail
