// bench/cuda_timer.hpp: times device work with a pair of CUDA events on the current stream.
#pragma once

#include "fovea/core/device.hpp"
#include "fovea/core/stream.hpp"

#if FOVEA_WITH_CUDA
namespace fovea::bench {

// start() and stop() record events on `device`'s current stream around queued work; seconds() waits
// for the stop event and returns the device time between the two (not the host's launch time).
class CudaTimer {
 public:
  explicit CudaTimer(Device device) : device_(device) {
    FOVEA_CHECK(device.is_cuda(), "CudaTimer needs a CUDA device, got ", device.str());
    start_ = cuda::event_create(device.index());
    try {
      stop_ = cuda::event_create(device.index());
    } catch (...) {
      cuda::event_destroy(start_);
      throw;
    }
  }
  CudaTimer(const CudaTimer&) = delete;
  CudaTimer& operator=(const CudaTimer&) = delete;
  ~CudaTimer() {
    cuda::event_destroy(start_);
    cuda::event_destroy(stop_);
  }

  void start() { cuda::event_record(start_, device_.index(), current_stream(device_)); }
  void stop() { cuda::event_record(stop_, device_.index(), current_stream(device_)); }
  double seconds() const { return 1e-3 * static_cast<double>(cuda::event_elapsed_ms(start_, stop_)); }

 private:
  Device device_;
  void* start_ = nullptr;
  void* stop_ = nullptr;
};

}  // namespace fovea::bench
#endif
