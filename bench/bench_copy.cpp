// bench/bench_copy.cpp: the reference bandwidth: fovea::copy within one device (cudaMemcpyAsync
// device to device on CUDA, std::memcpy on the CPU), counting bytes read + bytes written.
#include "bench_common.hpp"

namespace fovea::bench {

void register_copy_benchmarks(Device device) {
  for (const std::int64_t n : bench_sizes(device)) {
    register_timed(bench_name("copy", device, n), [device, n](benchmark::State& state) {
      const Shape s{n};
      Tensor src = make_input(s, device, 1);
      Tensor dst(s, device);
      state.SetLabel(device.is_cuda() ? "cudaMemcpyAsync D2D" : "memcpy");
      time_bandwidth(state, device, n, 2 * float_bytes(n), [&] { copy(src, dst); });
    });
  }
}

}  // namespace fovea::bench
