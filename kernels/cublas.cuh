// kernels/cublas.cuh: every cuBLAS call of fovea lives in this file: per-thread, per-device handles
// bound to the current stream, and the version.
#pragma once

#include <cublas_v2.h>

#include <array>
#include <string>

#include "check.cuh"
#include "common.cuh"

namespace fovea::cuda::detail {

// The calling thread's cuBLAS handle for `device`, bound to the current stream (never destroyed,
// like the cuDNN handle).
inline cublasHandle_t cublas_handle(Device device) {
  thread_local std::array<cublasHandle_t, ::fovea::detail::kMaxCudaDevices> handles{};
  cublasHandle_t& h = handles[device.index()];
  if (h == nullptr) {
    DeviceGuard guard(device.index());
    FOVEA_CHECK_CUBLAS(cublasCreate(&h), "creating the cuBLAS handle of ", device.str());
  }
  FOVEA_CHECK_CUBLAS(cublasSetStream(h, stream_for(device)));
  return h;
}

// "13.1.0" for the library loaded at run time. Needs no handle (and so no device).
inline std::string cublas_version_string() {
  int major = 0, minor = 0, patch = 0;
  cublasGetProperty(MAJOR_VERSION, &major);
  cublasGetProperty(MINOR_VERSION, &minor);
  cublasGetProperty(PATCH_LEVEL, &patch);
  return std::to_string(major) + "." + std::to_string(minor) + "." + std::to_string(patch);
}

}  // namespace fovea::cuda::detail
