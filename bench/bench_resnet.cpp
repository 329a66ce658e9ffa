// bench/bench_resnet.cpp: whole-network training steps in img/s: ResNet-18 at 64x64 and ResNet-50
// at 224x224 (batch 32) on the CPU; ResNet-50 at 224x224, batch 256, on the GPU (TF32 as set by
// math_settings(), NCHW), forward + backward, and forward + backward + SGD update; and a full SimCLR
// step on the GPU (ResNet-50 + 2048-2048-128 projection, both views of 256 images, NT-Xent, LARS).
// The PyTorch eager figures for the same steps come from bench/torch_resnet_step.py, run by
// scripts/gpu-check in the same session, which prints the ratios.
#include <benchmark/benchmark.h>

#include <chrono>
#include <string>
#include <vector>

#include "bench_common.hpp"
#include "fovea/models/resnet.hpp"
#include "fovea/nn/summary.hpp"
#include "fovea/optim/optim.hpp"
#include "fovea/train/tasks.hpp"

namespace fovea::bench {

void register_resnet_benchmarks(Device device);

namespace {

template <class Net>
void training_step(benchmark::State& state, Device device, models::ResNetConfig cfg, Shape in, bool update,
                   int warmup) {
  reset_peak_memory(device);  // each benchmark reports its own peak (parameters included, as torch's)
  Net net(cfg);
  net.setup(in, device);
  nn::initialize(net, 1);
  nn::set_training(net, true);
  nn::set_input_grad(net, false);  // like torch's input without requires_grad: no stem backward-data
  Tensor x = make_input(in, device, 1);
  Tensor dlogits = make_input(Shape{in.n(), cfg.num_classes}, device, 2);
  optim::Optimizer<optim::Sgd> opt(net, optim::SgdOptions{.momentum = 0.9f, .weight_decay = 1e-4f});
  auto body = [&] {
    net.forward(x);
    net.backward(dlogits);
    if (update) opt.step(1e-4f);
  };
  for (int i = 0; i < warmup; ++i) body();
  synchronize(device);
  std::vector<double> times;
  auto run = [&](auto& timer) {
    for (auto _ : state) {
      timer.start();
      body();
      timer.stop();
      const double s = timer.seconds();
      state.SetIterationTime(s);
      times.push_back(s);
    }
  };
  if (device.is_cuda()) {
#if FOVEA_WITH_CUDA
    CudaTimer timer(device);
    run(timer);
#endif
  } else {
    HostTimer timer;
    run(timer);
  }
  const double t = median(times);
  state.counters["img/s"] = t > 0 ? static_cast<double>(in.n()) / t : 0.0;
  state.counters["ms"] = t * 1e3;
  state.counters["peak_MiB"] = static_cast<double>(memory_stats(device).peak_bytes) / (1 << 20);
}

// One SimCLR training step as the trainer runs it: SimClrTask::train_step (forward of both views,
// NT-Xent, backward, the loss and contrastive accuracies read back) and the LARS update.
void simclr_step(benchmark::State& state, Device device, std::int64_t batch, int size, int warmup) {
  using Net = models::ContrastiveModel<models::ResNet50Backbone>;
  reset_peak_memory(device);
  Net net(models::ResNetConfig{}, 2048, 128);
  const Shape in{2 * batch, 3, size, size};
  net.setup(in, device);
  nn::initialize(net, 1);
  nn::set_training(net, true);
  train::SimClrTask task(net, device, {.temperature = 0.5f});
  optim::Optimizer<optim::Lars> opt(task.trainable_parameters(), optim::LarsOptions{});
  train::Batch b;
  b.images = make_input(in, device, 1);
  auto body = [&] {
    task.train_step(b);
    opt.step(0.3f);
  };
  for (int i = 0; i < warmup; ++i) body();
  synchronize(device);
  std::vector<double> times;
  for (auto _ : state) {
    const auto t0 = std::chrono::steady_clock::now();  // train_step reads the loss back: host time is exact
    body();
    synchronize(device);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    state.SetIterationTime(s);
    times.push_back(s);
  }
  const double t = median(times);
  state.counters["img/s"] = t > 0 ? static_cast<double>(batch) / t : 0.0;
  state.counters["ms"] = t * 1e3;
  state.counters["peak_MiB"] = static_cast<double>(memory_stats(device).peak_bytes) / (1 << 20);
}

}  // namespace

void register_resnet_benchmarks(Device device) {
  using models::ResNet18;
  using models::ResNet50;
  if (device.is_cpu()) {
    register_timed("resnet18_fwd_bwd/cpu/64px_b32", [=](benchmark::State& s) {
      training_step<ResNet18>(s, device, models::ResNetConfig{.num_classes = 5}, Shape{32, 3, 64, 64}, false, 1);
    })->Iterations(3);
    // The network the CPU main job trains (fovea study's defaults): width 0.25, small stem, 64 px.
    register_timed("resnet18w0.25_fwd_bwd/cpu/64px_b32", [=](benchmark::State& s) {
      training_step<ResNet18>(s, device,
                              models::ResNetConfig{.num_classes = 5, .width = 0.25f, .small_stem = true},
                              Shape{32, 3, 64, 64}, false, 1);
    })->Iterations(10);
    register_timed("resnet50_fwd_bwd/cpu/224px_b32", [=](benchmark::State& s) {
      training_step<ResNet50>(s, device, models::ResNetConfig{.num_classes = 5}, Shape{32, 3, 224, 224}, false, 1);
    })->Iterations(2);
    register_timed("resnet50_simclr_step/cpu/64px_b8", [=](benchmark::State& s) { simclr_step(s, device, 8, 64, 1); })
        ->Iterations(2);
    return;
  }
  for (bool update : {false, true}) {
    const std::string name = std::string(update ? "resnet50_train_step" : "resnet50_fwd_bwd") + "/cuda/224px_b256";
    register_timed(name, [=](benchmark::State& s) {
      training_step<ResNet50>(s, device, models::ResNetConfig{.num_classes = 1000}, Shape{256, 3, 224, 224}, update, 3);
    })->Iterations(10);
  }
  register_timed("resnet50_simclr_step/cuda/224px_b256", [=](benchmark::State& s) {
    simclr_step(s, device, 256, 224, 3);
  })->Iterations(10);
}

}  // namespace fovea::bench
