// tests/cuda/test_optim_cuda.cpp: the fused CUDA optimizer ops against the CPU twins on many
// tensors of awkward sizes (1, 3, 4, 5, 257, 16384, 16385, 65537 elements) so chunk and float4
// boundaries are crossed: SGD, AdamW, LARS (3 steps, parameters and state), trust ratios, gradient
// norm and clipping, EMA, and unaligned tables (scalar path). Skips without a CUDA device.
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "fovea/optim/optim.hpp"

namespace fovea::optim {
namespace {

using nn::Parameter;
using nn::ParamKind;

#define FOVEA_REQUIRE_CUDA() \
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device: " << cuda_unavailable_reason()

const std::int64_t kSizes[] = {1, 3, 257, 65537, 16384, 4, 16385, 5, 2 * 16384 + 7};
const ParamKind kKinds[] = {ParamKind::bias, ParamKind::norm, ParamKind::weight};

std::vector<float> random_floats(std::int64_t n, std::uint64_t seed, float scale = 1.0f) {
  std::mt19937_64 gen(seed);
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> v(static_cast<std::size_t>(n));
  for (auto& x : v) {
    do x = d(gen);
    while (x == 0.0f);
  }
  return v;
}

// The same parameters on the CPU and on cuda:0.
struct Twin {
  std::vector<Parameter> cpu, gpu;
  Twin() {
    for (std::size_t i = 0; i < std::size(kSizes); ++i) {
      Parameter c, g;
      c.allocate(Shape{kSizes[i]}, Device::cpu(), kKinds[i % 3]);
      g.allocate(Shape{kSizes[i]}, Device::cuda(0), kKinds[i % 3]);
      const auto v = random_floats(kSizes[i], 11 + i);
      copy(CView(v.data(), c.value.shape(), Device::cpu()), c.value);
      copy(c.value, g.value);
      cpu.push_back(std::move(c));
      gpu.push_back(std::move(g));
    }
  }
  void set_grads(std::uint64_t seed, float scale = 1.0f) {
    for (std::size_t i = 0; i < cpu.size(); ++i) {
      const auto v = random_floats(cpu[i].grad.numel(), seed * 1000 + i, scale);
      copy(CView(v.data(), cpu[i].grad.shape(), Device::cpu()), cpu[i].grad);
      copy(cpu[i].grad, gpu[i].grad);
    }
  }
  static std::vector<Parameter*> ptrs(std::vector<Parameter>& v) {
    std::vector<Parameter*> p;
    for (auto& x : v) p.push_back(&x);
    return p;
  }
};

void expect_close(const std::vector<float>& gpu, const std::vector<float>& cpu, double atol, double rtol,
                  const std::string& what) {
  ASSERT_EQ(gpu.size(), cpu.size()) << what;
  std::size_t bad = 0;
  double worst = 0;
  for (std::size_t i = 0; i < gpu.size(); ++i) {
    const double err = std::fabs(double(gpu[i]) - cpu[i]);
    if (!(err <= atol + rtol * std::fabs(cpu[i]))) {
      if (bad++ < 3) ADD_FAILURE() << what << " element " << i << ": cuda " << gpu[i] << " vs cpu " << cpu[i];
      worst = std::max(worst, err);
    }
  }
  EXPECT_EQ(bad, 0u) << what << ": " << bad << " of " << gpu.size() << " mismatches, max error " << worst;
}

template <class P>
void compare_policy(typename P::Options o, const std::vector<float>& lrs) {
  FOVEA_REQUIRE_CUDA();
  Twin t;
  Optimizer<P> oc(Twin::ptrs(t.cpu), o), og(Twin::ptrs(t.gpu), o);
  for (std::size_t s = 0; s < lrs.size(); ++s) {
    t.set_grads(s + 1, 1e-2f);
    oc.step(lrs[s]);
    og.step(lrs[s]);
  }
  for (std::size_t i = 0; i < t.cpu.size(); ++i)
    expect_close(t.gpu[i].value.to_vector(), t.cpu[i].value.to_vector(), 1e-6, 1e-5,
                 std::string(P::name()) + " parameter " + std::to_string(i) + " of " + std::to_string(kSizes[i]));
  std::map<std::string, std::vector<float>> sc, sg;
  oc.visit_state([&](const std::string& n, Tensor& x) { sc[n] = x.to_vector(); });
  og.visit_state([&](const std::string& n, Tensor& x) { sg[n] = x.to_vector(); });
  ASSERT_EQ(sc.size(), sg.size());
  for (const auto& [name, v] : sc) expect_close(sg.at(name), v, 1e-7, 1e-5, std::string(P::name()) + " state " + name);
}

TEST(CudaOptim, SgdMatchesCpu) { compare_policy<Sgd>(SgdOptions{}, {0.1f, 0.05f, 0.02f}); }
TEST(CudaOptim, SgdMomentumMatchesCpu) {
  compare_policy<Sgd>(SgdOptions{0.9f, 0.0f, 1e-4f, false, DecayRule::weights_only}, {0.1f, 0.05f, 0.02f});
}
TEST(CudaOptim, SgdNesterovDampeningMatchesCpu) {
  compare_policy<Sgd>(SgdOptions{0.9f, 0.0f, 1e-2f, true}, {0.1f, 0.05f, 0.02f});
  compare_policy<Sgd>(SgdOptions{0.8f, 0.2f, 1e-2f, false}, {0.1f, 0.05f, 0.02f});
}
TEST(CudaOptim, AdamWMatchesCpu) {
  compare_policy<AdamW>(AdamWOptions{0.9f, 0.999f, 1e-8f, 1e-3f}, {1e-3f, 5e-4f, 2e-4f});
  compare_policy<AdamW>(AdamWOptions{0.9f, 0.999f, 1e-8f, 0.1f, DecayRule::weights_only}, {1e-3f, 5e-4f, 2e-4f});
}
TEST(CudaOptim, LarsMatchesCpu) {
  compare_policy<Lars>(LarsOptions{}, {0.3f, 0.3f, 0.2f});
  LarsOptions o;
  o.trust = LarsTrust::decayed_gradient;
  o.weight_decay = 1e-2f;
  o.nesterov = true;
  compare_policy<Lars>(o, {0.3f, 0.3f, 0.2f});
}

TEST(CudaOptim, LarsTrustRatiosMatchCpu) {
  FOVEA_REQUIRE_CUDA();
  Twin t;
  t.set_grads(5, 1e-2f);
  Optimizer<Lars> oc(Twin::ptrs(t.cpu)), og(Twin::ptrs(t.gpu));
  for (LarsTrust rule : {LarsTrust::paper, LarsTrust::decayed_gradient}) {
    const LarsStep s{0.1f, 0.9f, 1e-2f, 1e-3f, false, rule};
    const auto rc = lars_trust_ratios(oc.table(), s), rg = lars_trust_ratios(og.table(), s);
    expect_close(rg, rc, 0.0, 1e-5, "trust ratios");
    for (std::size_t i = 0; i < rc.size(); ++i) EXPECT_EQ(rc[i] == 1.0f, kKinds[i % 3] != ParamKind::weight) << i;
  }
}

TEST(CudaOptim, ClipMatchesCpu) {
  FOVEA_REQUIRE_CUDA();
  Twin t;
  t.set_grads(7);
  const float nc = grad_norm(Twin::ptrs(t.cpu)), ng = grad_norm(Twin::ptrs(t.gpu));
  EXPECT_NEAR(ng, nc, 1e-5 * nc);
  for (float max_norm : {nc * 2.0f, nc / 4.0f}) {
    const float rc = clip_grad_norm(Twin::ptrs(t.cpu), max_norm);
    const float rg = clip_grad_norm(Twin::ptrs(t.gpu), max_norm);
    EXPECT_NEAR(rg, rc, 1e-5 * rc);
    for (std::size_t i = 0; i < t.cpu.size(); ++i)
      expect_close(t.gpu[i].grad.to_vector(), t.cpu[i].grad.to_vector(), 1e-7, 1e-5, "clipped grad " + std::to_string(i));
  }
  EXPECT_NEAR(grad_norm(Twin::ptrs(t.gpu)), nc / 4.0f, 1e-4 * nc);
}

TEST(CudaOptim, EmaMatchesCpu) {
  FOVEA_REQUIRE_CUDA();
  Twin target, source;
  for (std::size_t i = 0; i < source.cpu.size(); ++i) {
    const auto v = random_floats(source.cpu[i].value.numel(), 900 + i);
    copy(CView(v.data(), source.cpu[i].value.shape(), Device::cpu()), source.cpu[i].value);
    copy(source.cpu[i].value, source.gpu[i].value);
  }
  Ema ec(Twin::ptrs(target.cpu), Twin::ptrs(source.cpu)), eg(Twin::ptrs(target.gpu), Twin::ptrs(source.gpu));
  for (int s = 0; s < 3; ++s) {
    ec.update(0.999f);
    eg.update(0.999f);
  }
  ema_update(Twin::ptrs(target.cpu), Twin::ptrs(source.cpu), 0.5f);
  ema_update(Twin::ptrs(target.gpu), Twin::ptrs(source.gpu), 0.5f);
  for (std::size_t i = 0; i < target.cpu.size(); ++i)
    // nvcc contracts m*t + (1-m)*s into an FMA, the host compiler does not: one-ulp differences.
    expect_close(target.gpu[i].value.to_vector(), target.cpu[i].value.to_vector(), 1e-6, 1e-6, "ema " + std::to_string(i));
}

// Slots whose pointers are offset by one float: the kernels take their scalar path.
TEST(CudaOptim, UnalignedTablesMatchCpu) {
  FOVEA_REQUIRE_CUDA();
  const std::int64_t sizes[] = {3, 257, 65537, 16385};
  std::int64_t total = 0;
  for (auto n : sizes) total += n + 1;
  auto init = random_floats(4 * total, 3, 0.5f);
  // The last quarter is AdamW's second moment, which is never negative (else sqrt(v) is NaN).
  for (std::int64_t i = 3 * total; i < 4 * total; ++i) init[static_cast<std::size_t>(i)] = std::fabs(init[static_cast<std::size_t>(i)]);
  Tensor hc = Tensor::from(init, Shape{4 * total});
  Tensor hg = hc.to(Device::cuda(0));
  auto slots_for = [&](Tensor& buf) {
    std::vector<TensorSlot> slots;
    std::int64_t off = 0;
    for (auto n : sizes) {
      TensorSlot s;
      s.param = buf.data() + off + 1;
      s.grad = buf.data() + total + off + 1;
      s.state0 = buf.data() + 2 * total + off + 1;
      s.state1 = buf.data() + 3 * total + off + 1;
      s.numel = n;
      slots.push_back(s);
      off += n + 1;
    }
    return slots;
  };
  MultiTensorTable tc(slots_for(hc), Device::cpu()), tg(slots_for(hg), Device::cuda(0));
  EXPECT_EQ(tg.slots()[0].flags & kSlotAligned, 0u);
  for (int s = 1; s <= 2; ++s) {
    const SgdStep sgd{0.1f, 0.9f, 0.0f, 1e-3f, true, s == 1};
    sgd_update(tc, sgd);
    sgd_update(tg, sgd);
    const AdamWStep adam{1e-3f, 0.9f, 0.999f, 1e-8f, 1e-2f, 1.0f - std::pow(0.9f, float(s)), 1.0f - std::pow(0.999f, float(s))};
    adamw_update(tc, adam);
    adamw_update(tg, adam);
    const LarsStep lars{0.2f, 0.9f, 1e-3f, 1e-3f, false, LarsTrust::paper};
    lars_update(tc, lars);
    lars_update(tg, lars);
  }
  EXPECT_NEAR(clip_grad_norm(tg, 1.0f), clip_grad_norm(tc, 1.0f), 1e-3);
  expect_close(hg.to_vector(), hc.to_vector(), 1e-6, 1e-5, "unaligned buffers");
}

TEST(CudaOptim, RepeatedStepsAreBitwiseReproducible) {
  FOVEA_REQUIRE_CUDA();
  std::vector<float> first;
  for (int run = 0; run < 2; ++run) {
    Twin t;
    Optimizer<Lars> opt(Twin::ptrs(t.gpu));
    for (int s = 0; s < 2; ++s) {
      t.set_grads(s + 3, 1e-2f);
      opt.step(0.5f);
    }
    const auto v = t.gpu[3].value.to_vector();
    if (run == 0) {
      first = v;
    } else {
      EXPECT_EQ(v, first);
    }
  }
}

}  // namespace
}  // namespace fovea::optim
