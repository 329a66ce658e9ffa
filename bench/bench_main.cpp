// bench/bench_main.cpp: fovea_bench's entry point. Prints the backend line, measures each backend's
// copy bandwidth once (the reference for frac_of_copy), then registers the CPU suites and, only when
// a CUDA device can be used, the CUDA suites, and runs them.
#include <cstdio>
#include <exception>
#include <string>

#include "bench_common.hpp"

namespace fovea::bench {
namespace {

// Bytes read + written per second (in GB/s) of fovea::copy of n floats on `device`, timed as
// time_bandwidth times the ops (on a GPU per call of kPipelinedCalls back-to-back copies): the median
// of `reps` timed batches after a warm-up.
template <class Timer>
double measure_copy_gbps(Timer& timer, Device device, std::int64_t n, int reps) {
  Tensor src = make_input({n}, device, 1);
  Tensor dst({n}, device);
  const int calls = device.is_cuda() ? kPipelinedCalls : 1;
  const double t = median_batch_seconds(timer, device, reps, [&] { copy(src, dst); }, calls);
  return t > 0.0 ? 2 * float_bytes(n) / t * 1e-9 : 0.0;
}

std::string format_gbps(double v) {
  char text[32];
  std::snprintf(text, sizeof text, "%.1f", v);
  return text;
}

// Measures and stores the copy bandwidth of every size the suites run on `device`, and records it
// in the output (console and the JSON context, e.g. "cuda_copy_GBps_64Mi").
template <class Timer>
void measure_references(Timer& timer, Device device, int reps, const char* how) {
  const char* backend = device.is_cuda() ? "cuda" : "cpu";
  for (const std::int64_t n : bench_sizes(device)) {
    const double gbps = measure_copy_gbps(timer, device, n, reps);
    copy_references()[{device.is_cuda(), n}] = gbps;
    const std::string batches =
        device.is_cuda() ? " batches of " + std::to_string(kPipelinedCalls) + " back-to-back copies" : "";
    std::printf("fovea_bench: %s copy reference %s GB/s (%s of %s floats, read + write, median of %d%s)\n",
                backend, format_gbps(gbps).c_str(), how, size_name(n).c_str(), reps, batches.c_str());
    benchmark::AddCustomContext(std::string(backend) + "_copy_GBps_" + size_name(n),
                                format_gbps(gbps));
  }
}

void register_all(Device device) {
  register_copy_benchmarks(device);
  register_elementwise_benchmarks(device);
  register_reduce_benchmarks(device);
  register_norm_benchmarks(device);
  register_optim_benchmarks(device);
  register_augment_benchmarks(device);
  register_contrastive_benchmarks(device);
  register_conv_benchmarks(device);
  register_resnet_benchmarks(device);
  register_decode_benchmarks(device);
  register_attribution_benchmarks(device);
  register_features_benchmarks(device);
  register_corruption_benchmarks(device);
  register_metrics_benchmarks(device);
}

int run(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;

  const std::string backend = backend_summary();
  std::printf("fovea_bench: %s\n", backend.c_str());
  benchmark::AddCustomContext("fovea_backend", backend);

  HostTimer host_timer;
  measure_references(host_timer, Device::cpu(), 10, "memcpy");
  register_all(Device::cpu());

  if (cuda_available()) {
#if FOVEA_WITH_CUDA
    const Device gpu = Device::cuda(0);
    CudaTimer timer(gpu);
    measure_references(timer, gpu, 10, "device-to-device copy, CUDA events");
    register_all(gpu);
#endif
  } else {
    const std::string reason = "not registered: " + cuda_unavailable_reason();
    std::printf("fovea_bench: CUDA benchmarks %s\n", reason.c_str());
    benchmark::AddCustomContext("cuda_benchmarks", reason);
  }
  std::fflush(stdout);

  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}

}  // namespace
}  // namespace fovea::bench

int main(int argc, char** argv) {
  fovea::cpu::restart_with_short_blas_spin(argv);  // as the fovea program does (cpu/gemm.hpp)
  fovea::reuse_freed_host_memory();                // and core/memory.hpp
  try {
    return fovea::bench::run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "fovea_bench: %s\n", e.what());
    return 1;
  }
}
