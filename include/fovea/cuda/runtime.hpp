// fovea/cuda/runtime.hpp: host-side declarations of the CUDA runtime services fovea uses.
//
// No CUDA syntax and no CUDA header here: these functions are defined in kernels/runtime.cuh, which
// a program compiles once, in its single nvcc translation unit (kernels/fovea_kernels.cu). In a
// build without CUDA (FOVEA_WITH_CUDA == 0) nothing is declared and fovea_cuda_call() throws.
#pragma once

#include <cstddef>
#include <string>

#include "fovea/core/config.hpp"
#include "fovea/core/error.hpp"

namespace fovea::cuda {

enum class CopyKind { host_to_device, device_to_host, device_to_device, host_to_host };

#if FOVEA_WITH_CUDA
// Number of CUDA devices; 0 (never an exception) when there is no driver or no device.
int device_count() noexcept;
// Why device_count() is 0, e.g. "cudaGetDeviceCount: CUDA driver version is insufficient...".
std::string no_device_reason();
// Throws fovea::Error unless device `index` exists.
void require_device(int index);

// Raw device memory (the caching allocator sits on top). malloc returns nullptr when the device is
// out of memory; any other failure throws.
void* device_malloc(int device, std::size_t bytes);
void device_free(int device, void* ptr);
// Free and total bytes on the device as the driver sees them.
void mem_info(int device, std::size_t* free_bytes, std::size_t* total_bytes);

// Copies `bytes` on `stream` (nullptr: the per-thread default stream). Copies to the host are
// complete on return; the others are asynchronous with respect to the host.
void memcpy(void* dst, const void* src, std::size_t bytes, CopyKind kind, int device, void* stream);

void* stream_create(int device);
void stream_destroy(int device, void* stream);
void stream_synchronize(int device, void* stream);
void device_synchronize(int device);

// CUDA events, for timing device work (benchmarks): elapsed_ms waits for `stop`.
void* event_create(int device);
void event_destroy(void* event);
void event_record(void* event, int device, void* stream);
float event_elapsed_ms(void* start, void* stop);

// Page-locked host memory (cudaHostAlloc, portable: usable with every device), from which
// memcpy_async is a true asynchronous DMA. host_alloc_pinned returns nullptr when the driver cannot
// pin that much (the caller falls back to ordinary memory); any other failure throws (a machine
// without a device throws from require_device). host_free_pinned never throws.
void* host_alloc_pinned(std::size_t bytes);
void host_free_pinned(void* ptr) noexcept;

// Queues a copy of `bytes` on `stream` (nullptr: the per-thread default stream) and returns without
// waiting, also for copies to the host (unlike memcpy above): the source must stay unchanged and the
// destination unread until an event recorded on `stream` after it has completed. From pageable host
// memory the driver stages the bytes first, so only pinned memory overlaps with other work.
void memcpy_async(void* dst, const void* src, std::size_t bytes, CopyKind kind, int device, void* stream);

// Events that order work between streams (timing disabled, so cheaper than event_create's): record
// on one stream, then stream_wait_event makes another stream's later work wait for that point
// without blocking the host. event_done: whether the work before the last record has completed;
// event_synchronize blocks the host until it has. Destroy with event_destroy.
void* event_create_untimed(int device);
void stream_wait_event(int device, void* stream, void* event);
bool event_done(void* event);
void event_synchronize(void* event);

struct DeviceInfo {
  std::string name;
  int major = 0, minor = 0;  // compute capability
  int multiprocessors = 0;
  std::size_t total_memory = 0;
  std::size_t l2_bytes = 0;
};
DeviceInfo device_info(int device);

// "cuda:0 NVIDIA H100 80GB HBM3 (sm_90, 132 SMs, 79.1 GiB), CUDA runtime 13.0, driver 13.0,
// cuDNN 9.19.0, cuBLAS 13.1.0" or the reason no device can be used.
std::string backend_summary();
#endif

}  // namespace fovea::cuda

namespace fovea::detail {
[[noreturn]] inline void throw_no_cuda(const char* what) {
  throw Error(std::string(what) +
              ": this program was built without the CUDA backend (FOVEA_WITH_CUDA=0); build with "
              "-DFOVEA_CUDA=ON and compile kernels/fovea_kernels.cu once, or use Device::cpu()");
}
}  // namespace fovea::detail

// FOVEA_CUDA_CALL(expr): evaluate a fovea::cuda:: call in a CUDA build, throw a clear error
// otherwise. Keeps dispatch code free of #if blocks.
#if FOVEA_WITH_CUDA
#define FOVEA_CUDA_CALL(...) (__VA_ARGS__)
#else
#define FOVEA_CUDA_CALL(...) ::fovea::detail::throw_no_cuda(#__VA_ARGS__)
#endif
