// bench/bench_elementwise.cpp: element-wise ops (fill, scale, axpy, add, multiply, relu forward and
// backward) as memory-bound kernels: GB/s counting inputs read + outputs written, and the fraction
// of the copy bandwidth.
#include "bench_common.hpp"

namespace fovea::bench {

void register_elementwise_benchmarks(Device device) {
  for (const std::int64_t n : bench_sizes(device)) {
    const double b = float_bytes(n);
    register_timed(bench_name("fill", device, n), [device, n, b](benchmark::State& state) {
      Tensor out({n}, device);
      time_bandwidth(state, device, n, b, [&] { fill(out, 0.5f); });
    });
    register_timed(bench_name("scale", device, n), [device, n, b](benchmark::State& state) {
      Tensor x = make_input({n}, device, 1);
      Tensor out({n}, device);
      time_bandwidth(state, device, n, 2 * b, [&] { scale(x, 0.5f, out); });
    });
    register_timed(bench_name("axpy", device, n), [device, n, b](benchmark::State& state) {
      Tensor x = make_input({n}, device, 1);
      Tensor y = make_input({n}, device, 2);
      time_bandwidth(state, device, n, 3 * b, [&] { axpy(1e-3f, x, y); });
    });
    register_timed(bench_name("add", device, n), [device, n, b](benchmark::State& state) {
      Tensor a = make_input({n}, device, 1);
      Tensor c = make_input({n}, device, 2);
      Tensor out({n}, device);
      time_bandwidth(state, device, n, 3 * b, [&] { add(a, c, out); });
    });
    register_timed(bench_name("multiply", device, n), [device, n, b](benchmark::State& state) {
      Tensor a = make_input({n}, device, 1);
      Tensor c = make_input({n}, device, 2);
      Tensor out({n}, device);
      time_bandwidth(state, device, n, 3 * b, [&] { multiply(a, c, out); });
    });
    register_timed(bench_name("relu_forward", device, n), [device, n, b](benchmark::State& state) {
      Tensor x = make_input({n}, device, 1);
      Tensor y({n}, device);
      time_bandwidth(state, device, n, 2 * b, [&] { relu_forward(x, y); });
    });
    register_timed(bench_name("relu_backward", device, n), [device, n, b](benchmark::State& state) {
      Tensor x = make_input({n}, device, 1);
      Tensor dy = make_input({n}, device, 2);
      Tensor dx({n}, device);
      time_bandwidth(state, device, n, 3 * b, [&] { relu_backward(x, dy, dx); });
    });
  }
}

}  // namespace fovea::bench
