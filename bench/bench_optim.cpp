// bench/bench_optim.cpp: the fused multi-tensor optimizer updates over the ResNet-50 parameter set
// (161 tensors, 25,557,032 elements) on CUDA: SGD with momentum, AdamW, LARS (norm launch +
// update launch) and gradient clipping. GB/s counts bytes read + written per step (4 bytes per
// element per array touched; see docs/optimizers.md); frac_of_copy divides by the device-to-device
// copy bandwidth measured at the start of the same run.
#include <string>
#include <vector>

#include "bench_common.hpp"
#include "fovea/models/resnet.hpp"
#include "fovea/optim/optim.hpp"

namespace fovea::bench {

void register_optim_benchmarks(Device device);

namespace {

struct ParamShape {
  Shape shape;
  nn::ParamKind kind;
};

// Shapes and kinds of torchvision's ResNet-50 parameters, read from fovea's model (set up on the
// CPU once).
const std::vector<ParamShape>& resnet50_parameter_shapes() {
  static const std::vector<ParamShape> shapes = [] {
    models::ResNetConfig cfg;
    cfg.num_classes = 1000;
    models::ResNet50 net(cfg);
    net.setup(Shape{1, 3, 224, 224}, Device::cpu());
    std::vector<ParamShape> out;
    net.visit_parameters("", [&](const std::string&, nn::Parameter& p) { out.push_back({p.value.shape(), p.kind}); });
    return out;
  }();
  return shapes;
}

// The ResNet-50 parameter set on `device` with non-zero values and gradients.
struct ParamSet {
  std::vector<nn::Parameter> params;
  std::int64_t numel = 0;
  explicit ParamSet(Device device) {
    std::uint32_t seed = 1;
    for (const auto& s : resnet50_parameter_shapes()) {
      nn::Parameter p;
      p.allocate(s.shape, device, s.kind);
      fill_input(p.value, seed++);
      fill_input(p.grad, seed++);
      numel += s.shape.numel();
      params.push_back(std::move(p));
    }
  }
  std::vector<nn::Parameter*> ptrs() {
    std::vector<nn::Parameter*> v;
    for (auto& p : params) v.push_back(&p);
    return v;
  }
};

template <class P>
void register_policy(Device device, const std::string& op, typename P::Options options, int arrays, float lr) {
  register_timed(op + "/cuda/resnet50", [device, options, arrays, lr](benchmark::State& state) {
    ParamSet set(device);
    optim::Optimizer<P> opt(set.ptrs(), options);
    state.SetLabel(std::to_string(set.params.size()) + " tensors, " + std::to_string(set.numel) + " elements");
    // The reference is the copy of kCudaElements floats measured at start (bench_main.cpp).
    time_bandwidth(state, device, kCudaElements, arrays * float_bytes(set.numel), [&] { opt.step(lr); });
    state.counters["tensors"] = static_cast<double>(set.params.size());
  });
}

}  // namespace

void register_optim_benchmarks(Device device) {
  if (!device.is_cuda()) return;  // the CPU twins are references, not benchmarked
  // SGD with momentum: read p, g, buf; write p, buf.
  register_policy<optim::Sgd>(device, "sgd_momentum_step", optim::SgdOptions{0.9f, 0.0f, 1e-4f}, 5, 0.03f);
  // AdamW: read p, g, m, v; write p, m, v.
  register_policy<optim::AdamW>(device, "adamw_step", optim::AdamWOptions{0.9f, 0.999f, 1e-8f, 1e-3f}, 7, 1e-4f);
  // LARS: norms read p, g; the update reads p, g, v and writes p, v.
  register_policy<optim::Lars>(device, "lars_step", optim::LarsOptions{}, 7, 0.3f);
  // Clipping: the norm reads g; the scaling pass reads and writes g (it always runs; with this
  // max_norm its factor is 1, so the values stay put between iterations).
  register_timed("clip_grad_norm/cuda/resnet50", [device](benchmark::State& state) {
    ParamSet set(device);
    optim::Optimizer<optim::Sgd> opt(set.ptrs(), optim::SgdOptions{});
    time_bandwidth(state, device, kCudaElements, 3 * float_bytes(set.numel), [&] {
      opt.clip_grad_norm(1e30f);  // returns the norm: one device-to-host read per step
    });
  });
}

}  // namespace fovea::bench
