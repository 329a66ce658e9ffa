// bench/bench_metrics.cpp: the host-side evaluation that every evaluate run and the study's paired
// comparisons spend their time in, at the size of the Kaggle test set (N = 53,576 images, 5 grades):
// evaluate_predictions (every metric with its bootstrap interval) and compare_predictions (the paired
// bootstrap of kappa, AUC and accuracy, DeLong and McNemar), with 200 resamples. Counters: ms per
// call and us per resample (the bootstrap is linear in the resamples; 1,000 is the default). CPU
// only (the metrics are host code), one thread.
#include <benchmark/benchmark.h>

#include <cmath>
#include <vector>

#include "bench_common.hpp"
#include "fovea/core/random.hpp"
#include "fovea/eval/compare.hpp"
#include "fovea/eval/metrics.hpp"

namespace fovea::bench {
void register_metrics_benchmarks(Device device);

namespace {

constexpr std::size_t kImages = 53576;  // the Kaggle DR test set
constexpr int kResamples = 200;

// Labels uniform over 5 grades; probabilities that favour the true grade by `good`.
void make_predictions(std::vector<int>& labels, std::vector<double>& probs, double good, std::uint64_t seed) {
  Philox rng(make_key(seed, kPurposeTest));
  labels.resize(kImages);
  probs.resize(kImages * 5);
  for (std::size_t i = 0; i < kImages; ++i) {
    labels[i] = static_cast<int>(i % 5);
    double total = 0;
    for (std::size_t k = 0; k < 5; ++k) {
      const double v = 0.05 + rng.next_uniform() + (static_cast<int>(k) == labels[i] ? good : 0.0);
      probs[i * 5 + k] = v;
      total += v;
    }
    for (std::size_t k = 0; k < 5; ++k) probs[i * 5 + k] /= total;
  }
}

template <class Fn>
void host_bench(benchmark::State& state, Fn&& fn) {
  HostTimer timer;
  std::vector<double> times;
  for (auto _ : state) {
    timer.start();
    fn();
    timer.stop();
    state.SetIterationTime(timer.seconds());
    times.push_back(timer.seconds());
  }
  const double t = median(times);
  state.counters["ms"] = t * 1e3;
  state.counters["us_per_resample"] = t / kResamples * 1e6;
}

}  // namespace

void register_metrics_benchmarks(Device device) {
  if (!device.is_cpu()) return;
  register_timed("evaluate_predictions/cpu/N53576_B200", [](benchmark::State& s) {
    std::vector<int> labels;
    std::vector<double> probs;
    make_predictions(labels, probs, 0.6, 1);
    host_bench(
        s, [&] { benchmark::DoNotOptimize(eval::evaluate_predictions(labels, probs, 2, kResamples, 0)); });
  })->Iterations(3);
  register_timed("compare_predictions/cpu/N53576_B200", [](benchmark::State& s) {
    std::vector<int> labels;
    std::vector<double> a, b;
    make_predictions(labels, a, 0.6, 1);
    make_predictions(labels, b, 0.4, 2);
    host_bench(s,
               [&] { benchmark::DoNotOptimize(eval::compare_predictions(labels, a, b, 2, kResamples, 0)); });
  })->Iterations(3);
}

}  // namespace fovea::bench
