// fovea/core/device.hpp: where a tensor lives (the CPU or CUDA device n), and device queries.
#pragma once

#include <ostream>
#include <string>

#include "fovea/core/error.hpp"
#include "fovea/cuda/runtime.hpp"

namespace fovea {

enum class DeviceKind { cpu, cuda };

// A value type naming a device. Device::cuda(n) does not touch the driver; the first allocation on
// it checks that the device exists and throws fovea::Error if it does not (no silent CPU fallback).
class Device {
 public:
  constexpr Device() = default;
  static constexpr Device cpu() { return Device(DeviceKind::cpu, 0); }
  static constexpr Device cuda(int index = 0) { return Device(DeviceKind::cuda, index); }
  // Parses "cpu", "cuda", "cuda:1".
  static Device parse(const std::string& text) {
    if (text == "cpu") return cpu();
    if (text == "cuda") return cuda(0);
    if (text.rfind("cuda:", 0) == 0 && text.size() > 5) {
      int index = 0;
      for (std::size_t i = 5; i < text.size(); ++i) {
        FOVEA_CHECK(text[i] >= '0' && text[i] <= '9' && index < 100000, "bad device name '", text,
                    "' (expected cpu, cuda or cuda:N)");
        index = index * 10 + (text[i] - '0');
      }
      return cuda(index);
    }
    FOVEA_FAIL("bad device name '", text, "' (expected cpu, cuda or cuda:N)");
  }

  constexpr DeviceKind kind() const { return kind_; }
  constexpr int index() const { return index_; }
  constexpr bool is_cpu() const { return kind_ == DeviceKind::cpu; }
  constexpr bool is_cuda() const { return kind_ == DeviceKind::cuda; }
  std::string str() const { return is_cpu() ? "cpu" : "cuda:" + std::to_string(index_); }

  friend constexpr bool operator==(Device a, Device b) {
    return a.kind_ == b.kind_ && (a.kind_ == DeviceKind::cpu || a.index_ == b.index_);
  }
  friend std::ostream& operator<<(std::ostream& os, Device d) { return os << d.str(); }

 private:
  constexpr Device(DeviceKind k, int i) : kind_(k), index_(i) {}
  DeviceKind kind_ = DeviceKind::cpu;
  int index_ = 0;
};

// Number of usable CUDA devices: 0 in a CPU-only build and on machines without a driver.
inline int cuda_device_count() {
#if FOVEA_WITH_CUDA
  return cuda::device_count();
#else
  return 0;
#endif
}

inline bool cuda_available() { return cuda_device_count() > 0; }

// Why no CUDA device can be used (empty when one can).
inline std::string cuda_unavailable_reason() {
#if FOVEA_WITH_CUDA
  return cuda::device_count() > 0 ? std::string() : cuda::no_device_reason();
#else
  return "built without the CUDA backend";
#endif
}

// Throws fovea::Error unless `device` can be used: always true for the CPU.
inline void require_device(Device device) {
  if (device.is_cpu()) return;
  FOVEA_CUDA_CALL(cuda::require_device(device.index()));
}

// One line: backend, device name, compute capability, CUDA / cuDNN / cuBLAS versions, or the
// reason the run is CPU only. Every driver prints it at start.
inline std::string backend_summary() {
#if FOVEA_WITH_CUDA
  return cuda::backend_summary();
#else
  return "CPU only (built without the CUDA backend)";
#endif
}

}  // namespace fovea
