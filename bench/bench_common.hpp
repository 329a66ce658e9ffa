// bench/bench_common.hpp: what fovea's benchmark suites share: the copy-bandwidth reference measured
// once per process, timers, non-zero inputs, and the loop that times one op and reports GB/s.
#pragma once

#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <exception>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "cuda_timer.hpp"
#include "fovea/fovea.hpp"

namespace fovea::bench {

// Sets a process-wide setting (a reference such as cuda::nt_xent_tc_blocks_per_sm()) for a scope,
// so that variant rows time a kernel choice next to the default in the same run.
template <class T>
class ScopedValue {
 public:
  ScopedValue(T& slot, T value) : slot_(slot), previous_(slot) { slot_ = value; }
  ScopedValue(const ScopedValue&) = delete;
  ScopedValue& operator=(const ScopedValue&) = delete;
  ~ScopedValue() { slot_ = previous_; }

 private:
  T& slot_;
  T previous_;
};

inline constexpr std::int64_t kMi = std::int64_t{1} << 20;
// 64 Mi floats = 256 MiB per tensor: far beyond the L2 of any GPU, so every iteration reads from
// and writes to device memory.
inline constexpr std::int64_t kCudaElements = 64 * kMi;
// Small enough that the CPU suite runs in a few seconds.
inline constexpr std::int64_t kCpuElements[] = {4 * kMi, 16 * kMi};

// Copy bandwidth in GB/s (1e9 bytes per second, bytes read + bytes written) of fovea::copy of n
// floats on each backend, measured once at start by bench_main.cpp for every size the suites use
// (on the CPU the figure depends on the size through the caches); 0 where not measured.
inline std::map<std::pair<bool, std::int64_t>, double>& copy_references() {
  static std::map<std::pair<bool, std::int64_t>, double> references;
  return references;
}
inline double copy_gbps(Device device, std::int64_t n) {
  const auto it = copy_references().find({device.is_cuda(), n});
  return it == copy_references().end() ? 0.0 : it->second;
}

// "4Mi", "64Mi", or the plain count.
inline std::string size_name(std::int64_t n) {
  return n % kMi == 0 ? std::to_string(n / kMi) + "Mi" : std::to_string(n);
}

// Host wall clock; CPU ops are synchronous, so it brackets the work exactly.
class HostTimer {
 public:
  void start() { begin_ = Clock::now(); }
  void stop() { end_ = Clock::now(); }
  double seconds() const { return std::chrono::duration<double>(end_ - begin_).count(); }

 private:
  using Clock = std::chrono::steady_clock;
  Clock::time_point begin_, end_;
};

// Fills `out` with values in [-1, 1) that are never zero and change sign (so relu takes both
// branches): a 1 Mi pattern keyed by `seed`, repeated.
inline void fill_input(View out, std::uint32_t seed) {
  const std::int64_t n = out.numel();
  const std::int64_t period = std::min<std::int64_t>(n, kMi);
  std::vector<float> pattern(static_cast<std::size_t>(period));
  std::uint32_t state = seed * 2654435761u + 12345u;
  for (float& v : pattern) {
    state = state * 1664525u + 1013904223u;
    const float u = static_cast<float>(state >> 8) * (1.0f / 16777216.0f);  // [0, 1)
    v = u < 0.5f ? u - 0.75f : u - 0.25f;  // [-0.75, -0.25) or [0.25, 0.75)
  }
  for (std::int64_t off = 0; off < n; off += period) {
    const std::int64_t len = std::min(period, n - off);
    copy(CView(pattern.data(), Shape{len}, Device::cpu()),
         View(out.data() + off, Shape{len}, out.device()));
  }
  synchronize(out.device());
}

inline Tensor make_input(const Shape& shape, Device device, std::uint32_t seed) {
  Tensor t(shape, device);
  fill_input(t, seed);
  return t;
}

inline double median(std::vector<double> v) {
  if (v.empty()) return 0.0;
  const std::size_t mid = v.size() / 2;
  std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(mid), v.end());
  return v[mid];
}

// Calls per timed batch on a GPU: the host queues them back to back, so the events measure what the
// GPU spends per call once the host runs ahead of it, as it does inside a training step (the
// backbone's kernels take far longer to run than to launch). One call into an idle GPU (the latency)
// also waits for the host: its per-call work (an augmentation plan, argument checks) and the launches.
inline constexpr int kPipelinedCalls = 20;

// Median time per call of `reps` timed batches of `calls` back-to-back runs of body, after a warm-up:
// CUDA events on a GPU, the host clock on the CPU.
template <class Timer, class Body>
double median_batch_seconds(Timer& timer, Device device, int reps, Body&& body, int calls = 1) {
  for (int i = 0; i < 2; ++i) body();
  synchronize(device);
  std::vector<double> times;
  times.reserve(static_cast<std::size_t>(reps));
  for (int i = 0; i < reps; ++i) {
    timer.start();
    for (int c = 0; c < calls; ++c) body();
    timer.stop();
    times.push_back(timer.seconds() / calls);
  }
  return median(std::move(times));
}

#if FOVEA_WITH_CUDA
template <class Body>
double median_seconds(Device device, int reps, Body&& body, int calls = 1) {
  CudaTimer timer(device);
  return median_batch_seconds(timer, device, reps, body, calls);
}
#endif

namespace detail {
template <class Timer, class Body>
void timed_loop(benchmark::State& state, Timer& timer, Device device, std::int64_t n, double bytes,
                Body& body) {
  const int calls = device.is_cuda() ? kPipelinedCalls : 1;
  for (int i = 0; i < 3; ++i) body();  // warm-up: first-touch pages, kernel loading, allocator
  synchronize(device);
  std::vector<double> times;
  times.reserve(1024);
  for (auto _ : state) {
    timer.start();
    for (int c = 0; c < calls; ++c) body();
    timer.stop();
    const double s = timer.seconds() / calls;
    state.SetIterationTime(s);
    times.push_back(s);
  }
  const double t = median(std::move(times));
  const double gbps = t > 0.0 ? bytes / t * 1e-9 : 0.0;
  const double reference = copy_gbps(device, n);
  state.counters["ms"] = t * 1e3;
  state.counters["GB/s"] = gbps;
  state.counters["frac_of_copy"] = reference > 0.0 ? gbps / reference : 0.0;
  state.counters["bytes"] = bytes;
  if (calls > 1) state.counters["latency_ms"] = median_batch_seconds(timer, device, 10, body) * 1e3;
}
}  // namespace detail

// Times `body` (work on `device` over tensors of n elements that moves `bytes` bytes: inputs read +
// outputs written) after a warm-up: on the CPU one call per iteration by the host clock; on a GPU by
// CUDA events around kPipelinedCalls back-to-back calls, the iteration time being the time per call.
// The benchmark must be registered with UseManualTime(). Counters: ms (median time per call), GB/s
// (bytes / ms / 1e9), frac_of_copy (GB/s over the copy bandwidth of n floats on the same backend,
// measured the same way at start), bytes, and on a GPU latency_ms (one call into an idle GPU).
template <class Body>
void time_bandwidth(benchmark::State& state, Device device, std::int64_t n, double bytes,
                    Body&& body) {
  if (device.is_cuda()) {
#if FOVEA_WITH_CUDA
    CudaTimer timer(device);
    detail::timed_loop(state, timer, device, n, bytes, body);
#else
    state.SkipWithError("built without the CUDA backend");
#endif
  } else {
    HostTimer timer;
    detail::timed_loop(state, timer, device, n, bytes, body);
  }
}

// Registers `fn(state)` as a manually timed benchmark; a fovea::Error (or any exception) becomes
// the benchmark's error message instead of ending the program.
template <class Fn>
benchmark::internal::Benchmark* register_timed(const std::string& name, Fn fn) {
  return benchmark::RegisterBenchmark(name.c_str(),
                                      [fn](benchmark::State& state) {
                                        try {
                                          fn(state);
                                        } catch (const std::exception& e) {
                                          state.SkipWithError(e.what());
                                        }
                                      })
      ->UseManualTime()
      ->Unit(benchmark::kMillisecond);
}

inline double float_bytes(std::int64_t n) { return static_cast<double>(n) * sizeof(float); }

// Registered by each suite; bench_main.cpp calls them for the CPU and, when a device can be used,
// for cuda:0.
void register_copy_benchmarks(Device device);
void register_elementwise_benchmarks(Device device);
void register_reduce_benchmarks(Device device);
void register_optim_benchmarks(Device device);
void register_augment_benchmarks(Device device);
void register_contrastive_benchmarks(Device device);
void register_conv_benchmarks(Device device);
void register_resnet_benchmarks(Device device);
void register_decode_benchmarks(Device device);
void register_attribution_benchmarks(Device device);
void register_features_benchmarks(Device device);
void register_corruption_benchmarks(Device device);
void register_metrics_benchmarks(Device device);
void register_norm_benchmarks(Device device);

// Element counts a suite runs on `device`.
inline std::vector<std::int64_t> bench_sizes(Device device) {
  if (device.is_cuda()) return {kCudaElements};
  return {std::begin(kCpuElements), std::end(kCpuElements)};
}

// "<op>/<cpu|cuda>/<size>": the name scripts/gpu-check parses.
inline std::string bench_name(const std::string& op, Device device, std::int64_t n) {
  return op + "/" + (device.is_cuda() ? "cuda" : "cpu") + "/" + size_name(n);
}

}  // namespace fovea::bench
