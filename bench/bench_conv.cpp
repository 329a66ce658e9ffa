// bench/bench_conv.cpp: the CPU twin's 3x3 "same" convolutions at the shapes of the CPU main job's
// network (ResNet-18, width 0.25, small stem, 64 px, batch 32: 16 channels at 64 x 64 down to 128 at
// 8 x 8) and of ResNet-50's body at 224 px (64 channels at 56 x 56 down to 256 at 14 x 14, batch 8),
// forward, input gradient and weight gradient, by im2col + GEMM and by the direct kernel
// (cpu/conv_direct.hpp) in the same run, so that the choice FOVEA_CPU_CONV=auto makes can be checked on any
// machine. Each row reports GFLOP/s (2 * N * K * C * 9 * H * W per call) and whether auto would pick the
// direct kernel there (`auto_direct`); the same for the weight gradient (3x3 only).
#include <benchmark/benchmark.h>

#include <string>
#include <vector>

#include "bench_common.hpp"
#include "fovea/ops/conv.hpp"

namespace fovea::bench {

void register_conv_benchmarks(Device device);

namespace {

enum class ConvPass { forward, input_grad, weight_grad };

struct ConvShape {
  std::int64_t n, c, k, size;
};

void same_conv(benchmark::State& state, ConvShape s, ConvPass pass, CpuConvPath path) {
  const CpuConvPath before = cpu_conv_path();
  set_cpu_conv_path(path);
  const Device cpu = Device::cpu();
  const Tensor x = make_input(Shape{s.n, s.c, s.size, s.size}, cpu, 1);
  const Tensor w = make_input(Shape{s.k, s.c, 3, 3}, cpu, 2);
  const Tensor b = make_input(Shape{s.k}, cpu, 3);
  const Tensor dy = make_input(Shape{s.n, s.k, s.size, s.size}, cpu, 4);
  Tensor y(Shape{s.n, s.k, s.size, s.size}), dx(x.shape()), dw(w.shape());
  const Conv2dParams p{1, 1, 1, 1};
  auto body = [&] {
    switch (pass) {
      case ConvPass::forward: conv2d_forward(x, w, b, y, p); break;
      case ConvPass::input_grad: conv2d_backward_data(dy, w, dx, p); break;
      case ConvPass::weight_grad: conv2d_backward_filter(x, dy, dw, p); break;
    }
  };
  body();
  std::vector<double> times;
  HostTimer timer;
  for (auto _ : state) {
    timer.start();
    body();
    timer.stop();
    state.SetIterationTime(timer.seconds());
    times.push_back(timer.seconds());
  }
  set_cpu_conv_path(before);
  const double t = median(times);
  const double flops = 2.0 * static_cast<double>(s.n * s.k * s.c * 9 * s.size * s.size);
  state.counters["GFLOP/s"] = t > 0 ? flops / t / 1e9 : 0.0;
  state.counters["ms"] = t * 1e3;
  const auto g = conv2d_geometry("bench", x.shape(), w.shape(), p);
  const bool direct = pass == ConvPass::weight_grad
                          ? ::fovea::detail::conv2d_uses_direct_filter(g)
                          : ::fovea::detail::conv2d_uses_direct(g, pass == ConvPass::input_grad);
  state.counters["auto_direct"] = direct ? 1.0 : 0.0;
}

}  // namespace

void register_conv_benchmarks(Device device) {
  if (!device.is_cpu()) return;
  const ConvShape shapes[] = {{32, 3, 16, 64},   {32, 16, 16, 64}, {32, 32, 32, 32},  {32, 64, 64, 16},
                              {32, 128, 128, 8}, {8, 64, 64, 56},  {8, 128, 128, 28}, {8, 256, 256, 14}};
  for (const ConvShape& s : shapes) {
    const std::string shape = std::to_string(s.c) + "to" + std::to_string(s.k) + "_" +
                              std::to_string(s.size) + "px_b" + std::to_string(s.n);
    for (ConvPass pass : {ConvPass::forward, ConvPass::input_grad, ConvPass::weight_grad}) {
      const std::string op = pass == ConvPass::forward      ? "conv3x3_fwd"
                             : pass == ConvPass::input_grad ? "conv3x3_input_grad"
                                                            : "conv3x3_weight_grad";
      for (CpuConvPath path : {CpuConvPath::gemm, CpuConvPath::direct})
        register_timed(op + "/cpu/" + shape + (path == CpuConvPath::gemm ? "/gemm" : "/direct"),
                       [=](benchmark::State& st) { same_conv(st, s, pass, path); })
            ->MinTime(0.2);
    }
  }
}

}  // namespace fovea::bench
