// bench/bench_norm.cpp: batch normalisation (training forward, eval forward, backward) as the
// memory-bound ops they are: GB/s counting the tensors that must be touched (forward: x read, y
// written; backward: x and dy read, dx written; the per-channel vectors are negligible) and the
// fraction of the copy bandwidth. A training forward or a backward reads its inputs twice (the
// statistics first, then the element pass), so 1.0 of copy is out of reach unless a channel's values
// stay in cache between the passes. Shapes are ResNet activations of the element counts the other
// suites use (the copy reference exists for those): on the CPU the study network's first stage at
// two views of 32 images (64 x 16 x 64 x 64) and a wider, larger one; on a GPU a ResNet-50 stem.
// On the CPU, rows ending in /scalar time the baseline variant of the per-channel loops next to the
// default (the AVX2 variant where the CPU has it; cpu/batch_norm.hpp), the same bits.
#include "bench_common.hpp"

namespace fovea::bench {
namespace {

Shape norm_shape(std::int64_t n) {
  if (n == 4 * kMi) return Shape{64, 16, 64, 64};
  if (n == 16 * kMi) return Shape{16, 64, 128, 128};
  return Shape{n / (64 * 64 * 64), 64, 64, 64};  // kCudaElements: 256 x 64 x 64 x 64
}

std::string norm_name(const std::string& op, Device device, const Shape& s) {
  return op + "/" + (device.is_cuda() ? "cuda" : "cpu") + "/b" + std::to_string(s[0]) + "_" +
         std::to_string(s[1]) + "c_" + std::to_string(s[2]) + "px";
}

// Per-channel tensors of a batch norm over `channels` channels, with the values a trained network has.
struct NormParams {
  Tensor gamma, beta, running_mean, running_var, saved_mean, saved_invstd, dgamma, dbeta;
  NormParams(std::int64_t channels, Device device)
      : gamma({channels}, device),
        beta({channels}, device),
        running_mean({channels}, device),
        running_var({channels}, device),
        saved_mean({channels}, device),
        saved_invstd({channels}, device),
        dgamma({channels}, device),
        dbeta({channels}, device) {
    fill(gamma, 1.25f);
    fill(beta, 0.1f);
    fill(running_mean, 0.0f);
    fill(running_var, 1.0f);
  }
};

}  // namespace

void register_norm_benchmarks(Device device) {
  for (const std::int64_t n : bench_sizes(device)) {
    const Shape s = norm_shape(n);
    const double b = float_bytes(n);
    register_timed(norm_name("batch_norm_fwd_train", device, s), [device, s, n, b](benchmark::State& state) {
      Tensor x = make_input(s, device, 1);
      Tensor y(s, device);
      NormParams p(s[1], device);
      time_bandwidth(state, device, n, 2 * b, [&] {
        batch_norm_forward_training(x, p.gamma, p.beta, p.running_mean, p.running_var, 0.1f, 1e-5f, y,
                                    p.saved_mean, p.saved_invstd);
      });
    });
    register_timed(norm_name("batch_norm_fwd_eval", device, s), [device, s, n, b](benchmark::State& state) {
      Tensor x = make_input(s, device, 1);
      Tensor y(s, device);
      NormParams p(s[1], device);
      time_bandwidth(state, device, n, 2 * b, [&] {
        batch_norm_forward_inference(x, p.gamma, p.beta, p.running_mean, p.running_var, 1e-5f, y);
      });
    });
    register_timed(norm_name("batch_norm_bwd", device, s), [device, s, n, b](benchmark::State& state) {
      Tensor x = make_input(s, device, 1);
      Tensor dy = make_input(s, device, 2);
      Tensor y(s, device), dx(s, device);
      NormParams p(s[1], device);
      batch_norm_forward_training(x, p.gamma, p.beta, p.running_mean, p.running_var, 0.1f, 1e-5f, y,
                                  p.saved_mean, p.saved_invstd);
      time_bandwidth(state, device, n, 3 * b, [&] {
        batch_norm_backward(x, dy, p.gamma, p.saved_mean, p.saved_invstd, dx, p.dgamma, p.dbeta);
      });
    });
    if (device.is_cuda() || fovea::detail::bn_best_isa() == fovea::detail::BnIsa::scalar) continue;
    register_timed(
        norm_name("batch_norm_fwd_train", device, s) + "/scalar", [s, n, b](benchmark::State& state) {
          Tensor x = make_input(s, Device::cpu(), 1);
          Tensor y(s);
          NormParams p(s[1], Device::cpu());
          time_bandwidth(state, Device::cpu(), n, 2 * b, [&] {
            cpu::batch_norm_forward_training(x, p.gamma, p.beta, p.running_mean, p.running_var, 0.1f, 1e-5f,
                                             y, p.saved_mean, p.saved_invstd, fovea::detail::BnIsa::scalar);
          });
        });
    register_timed(norm_name("batch_norm_bwd", device, s) + "/scalar", [s, n, b](benchmark::State& state) {
      Tensor x = make_input(s, Device::cpu(), 1);
      Tensor dy = make_input(s, Device::cpu(), 2);
      Tensor y(s), dx(s);
      NormParams p(s[1], Device::cpu());
      batch_norm_forward_training(x, p.gamma, p.beta, p.running_mean, p.running_var, 0.1f, 1e-5f, y,
                                  p.saved_mean, p.saved_invstd);
      time_bandwidth(state, Device::cpu(), n, 3 * b, [&] {
        cpu::batch_norm_backward(x, dy, p.gamma, p.saved_mean, p.saved_invstd, dx, p.dgamma, p.dbeta,
                                 fovea::detail::BnIsa::scalar);
      });
    });
  }
}

}  // namespace fovea::bench
