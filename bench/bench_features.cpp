// bench/bench_features.cpp: the feature Gram that `fovea features` (and the study's feature stage)
// spends its time in: analysis::add_to_feature_gram on an (N, F) block of activations already on the
// device, standardised (the spectrum's Gram), the n x n result read back to the host. GFLOP/s counts
// the symmetric rank-k update's N (N + 1) F flops in double. CPU (OpenBLAS dsyrk): N = 256,
// F = 16,384. GPU (statistics and centring kernels + cublasDsyrk): N = 512 at F = 16,384 and at
// F = 802,816 (ResNet-50's conv1 output at 224 px, the largest layer of the study's --full setting).
// The call waits for its result, so a host clock brackets it.
#include <benchmark/benchmark.h>

#include <string>
#include <vector>

#include "bench_common.hpp"
#include "fovea/analysis/features.hpp"
#include "fovea/analysis/features_device.hpp"

namespace fovea::bench {
namespace {

void gram_bench(benchmark::State& state, Device device, std::int64_t n, std::int64_t f) {
  const Tensor x = make_input(Shape{n, f}, device, 5);
  HostTimer timer;
  const auto once = [&] {
    analysis::Gram g;
    synchronize(device);
    timer.start();
    analysis::add_to_feature_gram(g, x.cview(), true);
    timer.stop();
    benchmark::DoNotOptimize(g.values.data());
    return timer.seconds();
  };
  once();  // warm-up: allocations, the cuBLAS handle
  std::vector<double> times;
  for (auto _ : state) {
    const double s = once();
    state.SetIterationTime(s);
    times.push_back(s);
  }
  const double t = median(times);
  state.counters["GFLOPs"] =
      t > 0 ? static_cast<double>(n) * static_cast<double>(n + 1) * static_cast<double>(f) / t * 1e-9 : 0.0;
}

}  // namespace

void register_features_benchmarks(Device device) {
  if (device.is_cpu()) {
    register_timed("feature_gram/cpu/n256_f16384", [=](benchmark::State& s) {
      gram_bench(s, device, 256, 16384);
    })->Iterations(3);
    return;
  }
  for (const std::int64_t f : {std::int64_t{16384}, std::int64_t{802816}})
    register_timed("feature_gram/cuda/n512_f" + std::to_string(f), [=](benchmark::State& s) {
      gram_bench(s, device, 512, f);
    })->Iterations(5);
}

}  // namespace fovea::bench
