// kernels/runtime.cuh: definitions of the CUDA runtime services declared in
// include/fovea/cuda/runtime.hpp (device discovery, raw memory, copies, streams, the backend line).
// No CUDA runtime call happens during static initialisation: everything runs on first use.
#pragma once

#include <cuda_runtime.h>

#include <mutex>
#include <sstream>
#include <string>

#include "check.cuh"
#include "common.cuh"
#include "cublas.cuh"
#include "cudnn.cuh"
#include "fovea/cuda/runtime.hpp"

namespace fovea::cuda {

namespace detail {
struct DeviceCountResult {
  int count = 0;
  std::string reason;
};
// cudaGetDeviceCount once. On machines without a driver it fails with
// cudaErrorInsufficientDriver rather than reporting 0 devices: any failure means "no device".
inline const DeviceCountResult& device_count_result() {
  static const DeviceCountResult result = [] {
    DeviceCountResult r;
    const cudaError_t e = cudaGetDeviceCount(&r.count);
    if (e != cudaSuccess) {
      r.count = 0;
      r.reason = std::string("cudaGetDeviceCount failed: ") + cudaGetErrorName(e) + " (" +
                 cudaGetErrorString(e) + ")";
      cudaGetLastError();  // clear the sticky error state
    } else if (r.count == 0) {
      r.reason = "the CUDA driver reports no device";
    }
    return r;
  }();
  return result;
}
}  // namespace detail

int device_count() noexcept {
  try {
    return detail::device_count_result().count;
  } catch (...) {
    return 0;
  }
}

std::string no_device_reason() { return detail::device_count_result().reason; }

void require_device(int index) {
  const auto& r = detail::device_count_result();
  if (r.count == 0)
    FOVEA_FAIL("CUDA device cuda:", index, " requested but no CUDA device can be used: ", r.reason);
  if (index < 0 || index >= r.count)
    FOVEA_FAIL("CUDA device cuda:", index, " requested but this machine has ", r.count,
               " CUDA device(s) (cuda:0..cuda:", r.count - 1, ")");
}

void* device_malloc(int device, std::size_t bytes) {
  detail::DeviceGuard guard(device);
  void* ptr = nullptr;
  const cudaError_t e = cudaMalloc(&ptr, bytes);
  if (e == cudaErrorMemoryAllocation) {
    cudaGetLastError();
    return nullptr;
  }
  FOVEA_CHECK_CUDA(e, "cudaMalloc of ", bytes, " bytes on cuda:", device);
  return ptr;
}

void device_free(int device, void* ptr) {
  detail::DeviceGuard guard(device);
  FOVEA_CHECK_CUDA(cudaFree(ptr), "on cuda:", device);
}

void mem_info(int device, std::size_t* free_bytes, std::size_t* total_bytes) {
  detail::DeviceGuard guard(device);
  FOVEA_CHECK_CUDA(cudaMemGetInfo(free_bytes, total_bytes));
}

namespace detail {
inline cudaMemcpyKind memcpy_kind(CopyKind kind) {
  switch (kind) {
    case CopyKind::host_to_device: return cudaMemcpyHostToDevice;
    case CopyKind::device_to_host: return cudaMemcpyDeviceToHost;
    case CopyKind::device_to_device: return cudaMemcpyDeviceToDevice;
    case CopyKind::host_to_host: return cudaMemcpyHostToHost;
  }
  return cudaMemcpyDefault;
}
}  // namespace detail

void memcpy(void* dst, const void* src, std::size_t bytes, CopyKind kind, int device, void* stream) {
  detail::DeviceGuard guard(device);
  cudaStream_t s = stream != nullptr ? static_cast<cudaStream_t>(stream) : cudaStreamPerThread;
  const cudaMemcpyKind k = detail::memcpy_kind(kind);
  FOVEA_CHECK_CUDA(cudaMemcpyAsync(dst, src, bytes, k, s), bytes, " bytes on cuda:", device);
  if (kind == CopyKind::device_to_host || kind == CopyKind::host_to_device)
    FOVEA_CHECK_CUDA(cudaStreamSynchronize(s), "after a ", bytes, "-byte copy on cuda:", device);
}

void* stream_create(int device) {
  detail::DeviceGuard guard(device);
  cudaStream_t s = nullptr;
  FOVEA_CHECK_CUDA(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), "on cuda:", device);
  return s;
}

void stream_destroy(int device, void* stream) {
  detail::DeviceGuard guard(device);
  cudaStreamDestroy(static_cast<cudaStream_t>(stream));
}

void stream_synchronize(int device, void* stream) {
  detail::DeviceGuard guard(device);
  cudaStream_t s = stream != nullptr ? static_cast<cudaStream_t>(stream) : cudaStreamPerThread;
  FOVEA_CHECK_CUDA(cudaStreamSynchronize(s), "on cuda:", device);
}

void device_synchronize(int device) {
  detail::DeviceGuard guard(device);
  FOVEA_CHECK_CUDA(cudaDeviceSynchronize(), "on cuda:", device);
}

void* event_create(int device) {
  detail::DeviceGuard guard(device);
  cudaEvent_t e = nullptr;
  FOVEA_CHECK_CUDA(cudaEventCreate(&e), "on cuda:", device);
  return e;
}
void event_destroy(void* event) { cudaEventDestroy(static_cast<cudaEvent_t>(event)); }
void event_record(void* event, int device, void* stream) {
  cudaStream_t s = stream != nullptr ? static_cast<cudaStream_t>(stream) : cudaStreamPerThread;
  detail::DeviceGuard guard(device);
  FOVEA_CHECK_CUDA(cudaEventRecord(static_cast<cudaEvent_t>(event), s));
}
float event_elapsed_ms(void* start, void* stop) {
  FOVEA_CHECK_CUDA(cudaEventSynchronize(static_cast<cudaEvent_t>(stop)));
  float ms = 0.0f;
  FOVEA_CHECK_CUDA(cudaEventElapsedTime(&ms, static_cast<cudaEvent_t>(start),
                                        static_cast<cudaEvent_t>(stop)));
  return ms;
}

void* host_alloc_pinned(std::size_t bytes) {
  void* ptr = nullptr;
  const cudaError_t e = cudaHostAlloc(&ptr, bytes, cudaHostAllocPortable);
  if (e == cudaErrorMemoryAllocation) {
    cudaGetLastError();
    return nullptr;
  }
  FOVEA_CHECK_CUDA(e, "cudaHostAlloc of ", bytes, " bytes");
  return ptr;
}

void host_free_pinned(void* ptr) noexcept {
  if (ptr != nullptr) cudaFreeHost(ptr);
}

void memcpy_async(void* dst, const void* src, std::size_t bytes, CopyKind kind, int device, void* stream) {
  detail::DeviceGuard guard(device);
  cudaStream_t s = stream != nullptr ? static_cast<cudaStream_t>(stream) : cudaStreamPerThread;
  const cudaMemcpyKind k = detail::memcpy_kind(kind);
  FOVEA_CHECK_CUDA(cudaMemcpyAsync(dst, src, bytes, k, s), bytes, " bytes on cuda:", device, " (asynchronous)");
}

void* event_create_untimed(int device) {
  detail::DeviceGuard guard(device);
  cudaEvent_t e = nullptr;
  FOVEA_CHECK_CUDA(cudaEventCreateWithFlags(&e, cudaEventDisableTiming), "on cuda:", device);
  return e;
}

void stream_wait_event(int device, void* stream, void* event) {
  detail::DeviceGuard guard(device);
  cudaStream_t s = stream != nullptr ? static_cast<cudaStream_t>(stream) : cudaStreamPerThread;
  FOVEA_CHECK_CUDA(cudaStreamWaitEvent(s, static_cast<cudaEvent_t>(event), 0), "on cuda:", device);
}

bool event_done(void* event) {
  const cudaError_t e = cudaEventQuery(static_cast<cudaEvent_t>(event));
  if (e == cudaErrorNotReady) {
    cudaGetLastError();
    return false;
  }
  FOVEA_CHECK_CUDA(e);
  return true;
}

void event_synchronize(void* event) { FOVEA_CHECK_CUDA(cudaEventSynchronize(static_cast<cudaEvent_t>(event))); }

DeviceInfo device_info(int device) {
  require_device(device);
  const cudaDeviceProp& p = detail::device_properties(device);
  DeviceInfo info;
  info.name = p.name;
  info.major = p.major;
  info.minor = p.minor;
  info.multiprocessors = p.multiProcessorCount;
  info.total_memory = p.totalGlobalMem;
  info.l2_bytes = static_cast<std::size_t>(p.l2CacheSize);
  return info;
}

namespace detail {
inline std::string version_string(int v) {  // CUDA encodes 13.0 as 13000
  return std::to_string(v / 1000) + "." + std::to_string((v % 1000) / 10);
}
}  // namespace detail

std::string backend_summary() {
  int runtime = 0, driver = 0;
  cudaRuntimeGetVersion(&runtime);
  cudaDriverGetVersion(&driver);
  cudaGetLastError();
  std::ostringstream os;
  const std::string libs = "CUDA runtime " + detail::version_string(runtime) + ", cuDNN " +
                           detail::cudnn_version_string() + ", cuBLAS " +
                           detail::cublas_version_string();
  const auto& r = detail::device_count_result();
  if (r.count == 0) {
    os << "CPU only (CUDA backend compiled: " << libs << "; no CUDA device: " << r.reason << ")";
    return os.str();
  }
  const DeviceInfo d = device_info(0);
  os << "CUDA: cuda:0 " << d.name << " (sm_" << d.major << d.minor << ", " << d.multiprocessors
     << " SMs, " << (d.total_memory >> 20) << " MiB)";
  if (r.count > 1) os << " and " << r.count - 1 << " more device(s)";
  os << ", driver " << detail::version_string(driver) << ", " << libs;
  return os.str();
}

}  // namespace fovea::cuda
