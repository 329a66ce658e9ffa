// bench/bench_attribution.cpp: the attribution methods of `fovea saliency` in ms per image: the
// gradient, integrated gradients (50 Riemann steps, batched 32 at a time), Grad-CAM at layer4 and
// LRP (z+ / z^B), on the study's CPU network (ResNet-18 at width 0.25, small stem, 64 px) and on the
// GPU on ResNet-50 at 224 px. Each benchmark also times the plain gradient of the same images in the
// same process and reports its own time as a multiple of it (`x_gradient`): one forward + backward is
// the unit every method is built from. The methods return host maps, so a host clock brackets them
// (each ends with a device-to-host copy).
#include <benchmark/benchmark.h>

#include <string>
#include <vector>

#include "bench_common.hpp"
#include "fovea/analysis/attribution.hpp"
#include "fovea/analysis/gradcam.hpp"
#include "fovea/analysis/lrp.hpp"
#include "fovea/models/resnet.hpp"
#include "fovea/nn/summary.hpp"

namespace fovea::bench {
namespace {

enum class Method { gradient, integrated_gradients, grad_cam, lrp };

const char* method_name(Method m) {
  switch (m) {
    case Method::gradient: return "gradient";
    case Method::integrated_gradients: return "integrated_gradients";
    case Method::grad_cam: return "grad_cam";
    case Method::lrp: return "lrp";
  }
  return "?";
}

template <class Net>
analysis::AttributionMaps attribute(Net& net, Method m, CView x, std::span<const int> targets) {
  switch (m) {
    case Method::gradient: return analysis::gradient(net, x, targets);
    case Method::integrated_gradients: return analysis::integrated_gradients(net, x, targets, {.steps = 50});
    case Method::grad_cam: return analysis::grad_cam(net, x, targets);
    case Method::lrp: return analysis::lrp(net, x, targets);
  }
  return {};
}

template <class Net>
void attribution_bench(benchmark::State& state, Device device, Method method, models::ResNetConfig cfg,
                       Shape in) {
  Net net(cfg);
  net.setup(in, device);
  nn::initialize(net, 1);
  net.set_training(false);
  Tensor x = make_input(in, device, 3);
  std::vector<int> targets(static_cast<std::size_t>(in.n()));
  for (std::size_t i = 0; i < targets.size(); ++i) targets[i] = static_cast<int>(i % cfg.num_classes);
  HostTimer timer;
  const auto seconds_of = [&](Method m) {
    synchronize(device);
    timer.start();
    benchmark::DoNotOptimize(attribute(net, m, x, targets).heatmap.data());
    timer.stop();
    return timer.seconds();
  };
  seconds_of(method);  // warm-up: allocations, cuDNN plans
  std::vector<double> times, reference;
  for (auto _ : state) {
    const double s = seconds_of(method);
    state.SetIterationTime(s);
    times.push_back(s);
  }
  for (int i = 0; i < 3; ++i) reference.push_back(seconds_of(Method::gradient));  // after the timed loop
  const double t = median(times), g = median(reference);
  state.counters["ms_per_image"] = t * 1e3 / static_cast<double>(in.n());
  state.counters["x_gradient"] = g > 0 ? t / g : 0.0;
}

}  // namespace

void register_attribution_benchmarks(Device device) {
  for (const Method m : {Method::gradient, Method::integrated_gradients, Method::grad_cam, Method::lrp}) {
    if (device.is_cpu()) {
      register_timed(std::string("attribution_") + method_name(m) + "/cpu/resnet18w0.25_64px_b8",
                     [=](benchmark::State& s) {
                       attribution_bench<models::ResNet18>(
                           s, device, m,
                           models::ResNetConfig{.num_classes = 5, .width = 0.25f, .small_stem = true},
                           Shape{8, 3, 64, 64});
                     })
          ->Iterations(m == Method::integrated_gradients ? 1 : 3);
    } else {
      register_timed(std::string("attribution_") + method_name(m) + "/cuda/resnet50_224px_b8",
                     [=](benchmark::State& s) {
                       attribution_bench<models::ResNet50>(
                           s, device, m, models::ResNetConfig{.num_classes = 5}, Shape{8, 3, 224, 224});
                     })
          ->Iterations(m == Method::integrated_gradients ? 2 : 5);
    }
  }
}

}  // namespace fovea::bench
