// tests/emu/emu_optim.cpp: the fused multi-tensor optimizer kernels' device code (kernels/optim.cuh:
// SGD, AdamW, LARS with its trust ratios, gradient norm and clipping, EMA) run on the CPU by the
// emulation layer (emu_cuda.hpp), through a driver that mirrors the host code's launches, against
// the CPU twins (fovea/cpu/optim.hpp). The tensors span one to three chunks (and none), some are
// misaligned (the scalar path) and some flagged no-decay / no-adapt; the grid has fewer blocks than
// chunks, so blocks stride. Element-wise updates must be bitwise the CPU's (the same functors);
// what goes through the sums (LARS, norms) is compared with float tolerances, since the kernels add
// in float per block and the CPU in double. Exit status 1 on any failure.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "emu_cuda.hpp"
#include "fovea/cpu/optim.hpp"

namespace fovea::emu {
#include "optim_device.inc"
}  // namespace fovea::emu

using namespace fovea;
using namespace fovea::emu;

namespace {

int failures = 0;
constexpr unsigned kGrid = 3;  // fewer blocks than chunks: each block walks several

// Parameters, gradients and two state buffers of several tensors, laid out in four buffers.
struct Model {
  static constexpr std::int64_t kSizes[] = {5, 2 * kMultiTensorChunk + 3, 40000, 0, 1, 7};
  static constexpr int kOffsets[] = {0, 1, 0, 0, 3, 1};  // floats past a 16-byte boundary
  std::vector<float> param, grad, state0, state1;
  std::vector<TensorSlot> slots;

  explicit Model(std::uint64_t seed) {
    std::int64_t total = 0;
    for (const std::int64_t n : kSizes) total += n + 8;
    std::mt19937_64 gen(seed);
    std::normal_distribution<float> d;
    for (auto* v : {&param, &grad, &state0, &state1}) {
      v->resize(static_cast<std::size_t>(total));
      for (float& x : *v) x = d(gen);
    }
    for (float& x : state1) x = std::fabs(x);  // Adam's second moment is non-negative
    std::int64_t at = 0;
    for (std::size_t t = 0; t < std::size(kSizes); ++t) {
      const std::int64_t o = at + kOffsets[t];
      TensorSlot s;
      s.param = param.data() + o;
      s.grad = grad.data() + o;
      s.state0 = state0.data() + o;
      s.state1 = state1.data() + o;
      s.numel = kSizes[t];
      s.flags = (t == 2 ? kSlotNoDecay : 0u) | (t == 4 ? kSlotNoAdapt | kSlotNoDecay : 0u);
      slots.push_back(s);
      at += (kSizes[t] + 8 + 3) / 4 * 4;
    }
  }
  MultiTensorTable table() { return MultiTensorTable(slots, Device::cpu()); }
};

void compare(const std::string& what, const std::vector<float>& got, const std::vector<float>& want,
             double atol, double rtol) {
  std::size_t bad = 0, differ = 0;
  double worst = 0.0;
  for (std::size_t i = 0; i < want.size(); ++i) {
    if (got[i] != want[i]) ++differ;
    const double e = std::fabs(static_cast<double>(got[i]) - want[i]), lim = atol + rtol * std::fabs(want[i]);
    if (!(e <= lim)) ++bad;
    worst = std::max(worst, e);
  }
  std::printf("%-34s %s: %zu of %zu not bitwise equal, max error %.3g\n", what.c_str(), bad ? "FAIL" : "ok",
              differ, want.size(), worst);
  failures += bad != 0;
}
void compare(const std::string& what, const Model& got, const Model& want, double atol, double rtol) {
  compare(what + " param", got.param, want.param, atol, rtol);
  compare(what + " grad", got.grad, want.grad, atol, rtol);
  compare(what + " state0", got.state0, want.state0, atol, rtol);
  compare(what + " state1", got.state1, want.state1, atol, rtol);
}

// launch_update / launch_sums / launch_grad_norm of kernels/optim.cuh.
template <class U, bool kAdapt>
void update(const MultiTensorTable& t, const U& u, float weight_decay, const float* partials, float eta,
            LarsTrust trust) {
  const int n = static_cast<int>(t.num_chunks());
  launch(dim3(kGrid), kBlock, 0, true, [&] {
    multi_tensor_update_kernel<U, kAdapt>(t.slots().data(), t.chunks().data(), n, u, weight_decay, partials,
                                          eta, trust);
  });
}
template <bool kWithParam>
std::vector<float> sums(const MultiTensorTable& t, std::int64_t extra) {
  const int n = static_cast<int>(t.num_chunks());
  std::vector<float> partials(static_cast<std::size_t>((kWithParam ? 3 : 1) * n + extra),
                              std::numeric_limits<float>::quiet_NaN());
  launch(dim3(kGrid), kBlock, 0, true, [&] {
    multi_tensor_sums_kernel<kWithParam>(t.slots().data(), t.chunks().data(), n, partials.data());
  });
  return partials;
}
std::vector<float> grad_norm(const MultiTensorTable& t, float max_norm) {  // partials, then (norm, coef)
  std::vector<float> partials = sums<false>(t, 2);
  const int n = static_cast<int>(t.num_chunks());
  launch(dim3(1), kBlock, 0, true,
         [&] { norm_finalize_kernel(partials.data(), n, max_norm, partials.data() + n); });
  return {partials[n], partials[n + 1]};
}

void sgd_case(bool nesterov, float momentum) {
  const std::string name = "sgd momentum " + std::to_string(momentum) + (nesterov ? " nesterov" : "");
  Model cpu_model(1), emu_model(1);
  MultiTensorTable a = cpu_model.table(), b = emu_model.table();
  for (int step = 0; step < 2; ++step) {
    const SgdStep s{0.1f, momentum, 0.0f, 1e-4f, nesterov, step == 0};
    cpu::sgd_update(a, s);
    if (momentum == 0.0f)
      update<math::SgdPlainElement, false>(b, math::SgdPlainElement{s.lr}, s.weight_decay, nullptr, 0.0f,
                                           LarsTrust::paper);
    else
      update<math::SgdMomentumElement, false>(
          b, math::SgdMomentumElement{s.lr, s.momentum, s.dampening, s.nesterov, s.first}, s.weight_decay,
          nullptr, 0.0f, LarsTrust::paper);
  }
  compare(name, emu_model, cpu_model, 0.0, 0.0);
}

void adamw_case() {
  Model cpu_model(2), emu_model(2);
  MultiTensorTable a = cpu_model.table(), b = emu_model.table();
  for (int step = 1; step <= 2; ++step) {
    AdamWStep s;
    s.lr = 1e-3f;
    s.weight_decay = 0.05f;
    s.bias_correction1 = 1.0f - std::pow(s.beta1, static_cast<float>(step));
    s.bias_correction2 = 1.0f - std::pow(s.beta2, static_cast<float>(step));
    cpu::adamw_update(a, s);
    update<math::AdamWElement, false>(b, math::adamw_element(s), s.weight_decay, nullptr, 0.0f,
                                      LarsTrust::paper);
  }
  compare("adamw", emu_model, cpu_model, 0.0, 0.0);
}

void lars_case(LarsTrust trust, bool nesterov) {
  const std::string name = std::string("lars ") + (trust == LarsTrust::paper ? "paper" : "decayed_gradient") +
                           (nesterov ? " nesterov" : "");
  Model cpu_model(3), emu_model(3);
  MultiTensorTable a = cpu_model.table(), b = emu_model.table();
  LarsStep s;
  s.lr = 0.3f;
  s.trust = trust;
  s.nesterov = nesterov;
  const std::vector<float> want_ratios = cpu::lars_trust_ratios(a, s);
  std::vector<float> partials = sums<true>(b, static_cast<std::int64_t>(b.slots().size()));
  float* ratios = partials.data() + 3 * b.num_chunks();
  const int tensors = static_cast<int>(b.slots().size());
  launch(dim3(2), kBlock, 0, true, [&] {
    lars_ratio_kernel(b.slots().data(), tensors, partials.data(), s.weight_decay, s.trust_coefficient,
                      s.trust, ratios);
  });
  compare(name + " trust ratios", std::vector<float>(ratios, ratios + tensors), want_ratios, 0.0, 1e-5);
  for (int step = 0; step < 2; ++step) {
    cpu::lars_update(a, s);
    const std::vector<float> p = sums<true>(b, 0);
    update<math::LarsElement, true>(b, math::LarsElement{s.lr, s.momentum, s.nesterov}, s.weight_decay,
                                    p.data(), s.trust_coefficient, s.trust);
  }
  compare(name, emu_model, cpu_model, 1e-6, 1e-5);  // a ratio an ulp apart moves p by lr r d ulps
}

void norm_case() {
  Model cpu_model(4), emu_model(4);
  MultiTensorTable a = cpu_model.table(), b = emu_model.table();
  const float want = cpu::grad_norm(a);
  compare("grad_norm", std::vector<float>{grad_norm(b, 1.0f)[0]}, std::vector<float>{want}, 0.0, 1e-6);
  const float max_norm = 0.5f * want;  // clipping scales every gradient by about a half
  const float want_clip = cpu::clip_grad_norm(a, max_norm);
  const std::vector<float> out = grad_norm(b, max_norm);
  const int n = static_cast<int>(b.num_chunks());
  launch(dim3(kGrid), kBlock, 0, false,
         [&] { multi_tensor_scale_grad_kernel(b.slots().data(), b.chunks().data(), n, out.data() + 1); });
  compare("clip_grad_norm norm", std::vector<float>{out[0]}, std::vector<float>{want_clip}, 0.0, 1e-6);
  compare("clip_grad_norm", emu_model, cpu_model, 0.0, 1e-6);
}

void ema_case() {
  Model cpu_model(5), emu_model(5);
  MultiTensorTable a = cpu_model.table(), b = emu_model.table();
  cpu::ema_update(a, 0.99f);
  update<math::EmaElement, false>(b, math::EmaElement{0.99f}, 0.0f, nullptr, 0.0f, LarsTrust::paper);
  compare("ema", emu_model, cpu_model, 0.0, 0.0);
}

}  // namespace

int main() {
  sgd_case(false, 0.0f);
  sgd_case(false, 0.9f);
  sgd_case(true, 0.9f);
  adamw_case();
  lars_case(LarsTrust::paper, false);
  lars_case(LarsTrust::decayed_gradient, true);
  norm_case();
  ema_case();
  std::printf("%s\n", failures ? "FAILURES" : "all ok");
  return failures ? 1 : 0;
}
