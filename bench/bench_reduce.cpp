// bench/bench_reduce.cpp: sum along the last axis (rows of 4096) and along axis 1 (the channels of
// an NCHW tensor, a strided reduction); GB/s counts the input read + the output written.
#include "bench_common.hpp"

namespace fovea::bench {

namespace {
void register_reduce(const std::string& op, Device device, std::int64_t n, Shape shape, int axis) {
  register_timed(bench_name(op, device, n), [device, shape, axis](benchmark::State& state) {
    Tensor x = make_input(shape, device, 1);  // (rows, 4096) or (N, C, H, W)
    Tensor out(reduced_shape(shape, axis), device);
    state.SetLabel(shape.str() + " axis " + std::to_string(axis));
    time_bandwidth(state, device, x.numel(), float_bytes(x.numel()) + float_bytes(out.numel()),
                   [&] { reduce_sum(x, axis, out); });
  });
}
}  // namespace

void register_reduce_benchmarks(Device device) {
  constexpr std::int64_t kRow = 4096, kN = 64, kC = 256;
  for (const std::int64_t n : bench_sizes(device)) {
    register_reduce("reduce_sum_last", device, n, Shape{n / kRow, kRow}, 1);
    const std::int64_t hw = n / (kN * kC);  // a power of 4 for the sizes used
    std::int64_t h = 1;
    while (h * h < hw) h *= 2;
    register_reduce("reduce_sum_axis1", device, n, Shape{kN, kC, h, hw / h}, 1);
  }
}

}  // namespace fovea::bench
