// kernels/check.cuh: macros that check CUDA, cuDNN and cuBLAS calls and kernel launches, throwing
// fovea::Error with the call text, file, line, the library's error name and caller-given details
// (shapes). FOVEA_CUDA_SYNC=1 in the environment synchronises after every launch, so an
// asynchronous error surfaces at the launch that caused it.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cudnn.h>

#include <cstdlib>
#include <cstring>

#include "fovea/core/error.hpp"

#define FOVEA_CHECK_CUDA(call, ...)                                                              \
  do {                                                                                           \
    const cudaError_t fovea_status_ = (call);                                                    \
    if (fovea_status_ != cudaSuccess) [[unlikely]]                                               \
      ::fovea::detail::throw_error(__FILE__, __LINE__, "CUDA call failed: " #call,                \
                                   cudaGetErrorName(fovea_status_), " (",                       \
                                   cudaGetErrorString(fovea_status_), ")" __VA_OPT__(, "; ", )   \
                                       __VA_ARGS__);                                             \
  } while (0)

#define FOVEA_CHECK_CUDNN(call, ...)                                                             \
  do {                                                                                           \
    const cudnnStatus_t fovea_status_ = (call);                                                  \
    if (fovea_status_ != CUDNN_STATUS_SUCCESS) [[unlikely]]                                      \
      ::fovea::detail::throw_error(__FILE__, __LINE__, "cuDNN call failed: " #call,               \
                                   cudnnGetErrorString(fovea_status_) __VA_OPT__(, "; ", )       \
                                       __VA_ARGS__);                                             \
  } while (0)

#define FOVEA_CHECK_CUBLAS(call, ...)                                                            \
  do {                                                                                           \
    const cublasStatus_t fovea_status_ = (call);                                                 \
    if (fovea_status_ != CUBLAS_STATUS_SUCCESS) [[unlikely]]                                     \
      ::fovea::detail::throw_error(__FILE__, __LINE__, "cuBLAS call failed: " #call,              \
                                   cublasGetStatusName(fovea_status_), " (",                    \
                                   cublasGetStatusString(fovea_status_), ")" __VA_OPT__(, "; ", ) \
                                       __VA_ARGS__);                                             \
  } while (0)

namespace fovea::cuda::detail {
// True when FOVEA_CUDA_SYNC is set to anything but "0" (read once).
inline bool sync_after_launch() {
  static const bool on = [] {
    const char* v = std::getenv("FOVEA_CUDA_SYNC");
    return v != nullptr && std::strcmp(v, "0") != 0 && v[0] != '\0';
  }();
  return on;
}
}  // namespace fovea::cuda::detail

// After a <<<...>>> launch: throws on a launch error; with FOVEA_CUDA_SYNC=1 also waits for the
// kernel and throws on its execution error.
#define FOVEA_CHECK_LAUNCH(kernel_name, ...)                                                     \
  do {                                                                                           \
    FOVEA_CHECK_CUDA(cudaGetLastError(), "launching " kernel_name __VA_OPT__(, ) __VA_ARGS__);    \
    if (::fovea::cuda::detail::sync_after_launch())                                              \
      FOVEA_CHECK_CUDA(cudaDeviceSynchronize(),                                                  \
                       "running " kernel_name " (FOVEA_CUDA_SYNC=1)" __VA_OPT__(, ) __VA_ARGS__); \
  } while (0)
