// tests/test_optim.cpp: optimizers (SGD, AdamW, LARS) against closed-form updates computed here by
// hand, over one and two steps and several parameter kinds; schedules at key steps; learning-rate
// scaling; gradient clipping; EMA; the state visitor round trip; the policy concept.
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "fovea/nn/compose.hpp"
#include "fovea/nn/layers.hpp"
#include "fovea/nn/summary.hpp"
#include "fovea/optim/optim.hpp"

namespace fovea::optim {
namespace {

using nn::Parameter;
using nn::ParamKind;
using Vec = std::vector<double>;

std::vector<float> random_floats(std::size_t n, std::uint64_t seed, float lo = 0.1f, float hi = 1.0f) {
  std::mt19937_64 gen(seed);
  std::uniform_real_distribution<float> u(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = (gen() & 1) ? u(gen) : -u(gen);  // never zero, both signs
  return v;
}

Parameter make_param(const std::vector<float>& value, ParamKind kind) {
  Parameter p;
  const Shape s{static_cast<std::int64_t>(value.size())};
  p.allocate(s, Device::cpu(), kind);
  copy(CView(value.data(), s, Device::cpu()), p.value);
  return p;
}
void set_grad(Parameter& p, const std::vector<float>& g) {
  copy(CView(g.data(), p.grad.shape(), Device::cpu()), p.grad);
}
Vec to_double(const Tensor& t) {
  const auto v = t.to_vector();
  return Vec(v.begin(), v.end());
}
Vec to_double(const std::vector<float>& v) { return Vec(v.begin(), v.end()); }

void expect_near(const Vec& got, const Vec& want, double rtol, const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (std::size_t i = 0; i < got.size(); ++i)
    ASSERT_LE(std::fabs(got[i] - want[i]), 1e-7 + rtol * std::fabs(want[i]))
        << what << " element " << i << ": got " << got[i] << ", want " << want[i];
}

// Three parameters of the three kinds with sizes 5, 3, 2.
struct Fixture {
  std::vector<Parameter> params;
  std::vector<std::vector<float>> grads1, grads2;
  Fixture() {
    const ParamKind kinds[] = {ParamKind::weight, ParamKind::bias, ParamKind::norm};
    const std::size_t sizes[] = {5, 3, 2};
    for (int i = 0; i < 3; ++i) {
      params.push_back(make_param(random_floats(sizes[i], 10 + i), kinds[i]));
      grads1.push_back(random_floats(sizes[i], 20 + i));
      grads2.push_back(random_floats(sizes[i], 30 + i));
    }
  }
  std::vector<Parameter*> ptrs() {
    std::vector<Parameter*> v;
    for (auto& p : params) v.push_back(&p);
    return v;
  }
  void set_grads(const std::vector<std::vector<float>>& g) {
    for (std::size_t i = 0; i < params.size(); ++i) set_grad(params[i], g[i]);
  }
  std::vector<Vec> values() {
    std::vector<Vec> v;
    for (auto& p : params) v.push_back(to_double(p.value));
    return v;
  }
};

// ---- SGD ---------------------------------------------------------------------------------

// torch.optim.SGD by hand, in double.
struct SgdRef {
  double momentum, dampening, wd;
  bool nesterov;
  std::vector<Vec> buf;
  void step(std::vector<Vec>& p, const std::vector<std::vector<float>>& g, double lr, const std::vector<bool>& decay) {
    const bool first = buf.empty();
    if (first) buf.resize(p.size());
    for (std::size_t t = 0; t < p.size(); ++t) {
      if (first) buf[t].assign(p[t].size(), 0.0);
      for (std::size_t i = 0; i < p[t].size(); ++i) {
        double d = g[t][i] + (decay[t] ? wd : 0.0) * p[t][i];
        if (momentum != 0.0) {
          buf[t][i] = first ? d : momentum * buf[t][i] + (1.0 - dampening) * d;
          d = nesterov ? d + momentum * buf[t][i] : buf[t][i];
        }
        p[t][i] -= lr * d;
      }
    }
  }
};

void run_sgd_case(const SgdOptions& o, const std::vector<bool>& decay) {
  Fixture f;
  auto want = f.values();
  SgdRef ref{o.momentum, o.dampening, o.weight_decay, o.nesterov, {}};
  Optimizer<Sgd> opt(f.ptrs(), o);
  f.set_grads(f.grads1);
  opt.step(0.1f);
  ref.step(want, f.grads1, 0.1, decay);
  for (int t = 0; t < 3; ++t) expect_near(to_double(f.params[t].value), want[t], 1e-6, "sgd step 1");
  f.set_grads(f.grads2);
  opt.step(0.05f);
  ref.step(want, f.grads2, 0.05, decay);
  for (int t = 0; t < 3; ++t) expect_near(to_double(f.params[t].value), want[t], 1e-6, "sgd step 2");
  EXPECT_EQ(opt.step_count(), 2);
}

TEST(Sgd, PlainWithWeightDecay) { run_sgd_case({0.0f, 0.0f, 0.1f, false, DecayRule::all}, {true, true, true}); }
TEST(Sgd, MomentumBufferStartsAtGradient) {
  run_sgd_case({0.9f, 0.0f, 1e-2f, false, DecayRule::all}, {true, true, true});
}
TEST(Sgd, DampeningSkipsFirstStep) { run_sgd_case({0.9f, 0.3f, 0.0f, false, DecayRule::all}, {true, true, true}); }
TEST(Sgd, Nesterov) { run_sgd_case({0.9f, 0.0f, 1e-4f, true, DecayRule::all}, {true, true, true}); }
TEST(Sgd, WeightsOnlyDecayRule) {
  run_sgd_case({0.9f, 0.0f, 0.05f, false, DecayRule::weights_only}, {true, false, false});
}

TEST(Sgd, FirstStepByHand) {
  // p = 1, g = 0.5, wd = 0.1, momentum 0.9, lr 0.1: d = 0.6, buf = 0.6, p = 1 - 0.06 = 0.94.
  Parameter p = make_param({1.0f}, ParamKind::weight);
  set_grad(p, {0.5f});
  Optimizer<Sgd> opt(std::vector<Parameter*>{&p}, SgdOptions{0.9f, 0.0f, 0.1f});
  opt.step(0.1f);
  EXPECT_FLOAT_EQ(p.value.data()[0], 0.94f);
  // step 2, same gradient: d = 0.5 + 0.094 = 0.594, buf = 0.54 + 0.594 = 1.134, p = 0.94 - 0.1134.
  opt.step(0.1f);
  EXPECT_NEAR(p.value.data()[0], 0.8266f, 1e-6f);
}

TEST(Sgd, RejectsNesterovWithoutMomentum) {
  Fixture f;
  EXPECT_THROW(Optimizer<Sgd>(f.ptrs(), SgdOptions{0.0f, 0.0f, 0.0f, true}), Error);
}

// ---- AdamW -------------------------------------------------------------------------------

void run_adamw_case(const AdamWOptions& o, const std::vector<bool>& decay) {
  Fixture f;
  auto want = f.values();
  std::vector<Vec> m(3), v(3);
  for (int t = 0; t < 3; ++t) m[t].assign(want[t].size(), 0.0), v[t].assign(want[t].size(), 0.0);
  Optimizer<AdamW> opt(f.ptrs(), o);
  const double lrs[] = {1e-2, 3e-3};
  for (int step = 1; step <= 2; ++step) {
    const auto& g = step == 1 ? f.grads1 : f.grads2;
    f.set_grads(g);
    opt.step(static_cast<float>(lrs[step - 1]));
    const double lr = lrs[step - 1];
    const double bc1 = 1.0 - std::pow(o.beta1, step), bc2 = 1.0 - std::pow(o.beta2, step);
    for (int t = 0; t < 3; ++t) {
      for (std::size_t i = 0; i < want[t].size(); ++i) {
        want[t][i] *= 1.0 - lr * (decay[t] ? o.weight_decay : 0.0);
        m[t][i] = o.beta1 * m[t][i] + (1.0 - o.beta1) * g[t][i];
        v[t][i] = o.beta2 * v[t][i] + (1.0 - o.beta2) * g[t][i] * g[t][i];
        const double mhat = m[t][i] / bc1, vhat = v[t][i] / bc2;
        want[t][i] -= lr * mhat / (std::sqrt(vhat) + o.eps);
      }
      expect_near(to_double(f.params[t].value), want[t], 2e-6, "adamw step " + std::to_string(step));
    }
  }
}

TEST(AdamW, TwoStepsWithBiasCorrection) { run_adamw_case({0.9f, 0.999f, 1e-8f, 1e-3f}, {true, true, true}); }
TEST(AdamW, LargeDecayOtherBetas) { run_adamw_case({0.8f, 0.99f, 1e-6f, 0.5f}, {true, true, true}); }
TEST(AdamW, WeightsOnlyDecayRule) {
  run_adamw_case({0.9f, 0.999f, 1e-8f, 0.3f, DecayRule::weights_only}, {true, false, false});
}

TEST(AdamW, FirstStepIsSignTimesLr) {
  // With bias correction, step 1 moves each element by lr * g / (|g| + eps') ~ lr * sign(g).
  Parameter p = make_param({1.0f, -2.0f}, ParamKind::weight);
  set_grad(p, {0.25f, -4.0f});
  Optimizer<AdamW> opt(std::vector<Parameter*>{&p}, AdamWOptions{0.9f, 0.999f, 1e-8f, 0.0f});
  opt.step(0.01f);
  EXPECT_NEAR(p.value.data()[0], 0.99f, 1e-6f);
  EXPECT_NEAR(p.value.data()[1], -1.99f, 1e-6f);
}

// ---- LARS --------------------------------------------------------------------------------

double norm_of(const Vec& v) {
  double s = 0;
  for (double x : v) s += x * x;
  return std::sqrt(s);
}

// Weight (adapted), bias and norm (excluded), a zero weight and a weight with zero gradient.
void run_lars_case(LarsTrust trust, bool nesterov) {
  std::vector<Parameter> params;
  params.push_back(make_param(random_floats(7, 1), ParamKind::weight));
  params.push_back(make_param(random_floats(3, 2), ParamKind::bias));
  params.push_back(make_param(random_floats(4, 3), ParamKind::norm));
  params.push_back(make_param(std::vector<float>(5, 0.0f), ParamKind::weight));  // |w| = 0
  params.push_back(make_param(random_floats(6, 5), ParamKind::weight));          // |g| = 0
  std::vector<std::vector<float>> g[2];
  for (int s = 0; s < 2; ++s)
    for (std::size_t t = 0; t < params.size(); ++t) {
      const auto n = static_cast<std::size_t>(params[t].value.numel());
      g[s].push_back(t == 4 ? std::vector<float>(n, 0.0f) : random_floats(n, 100 * s + t + 50, 0.001f, 0.01f));
    }
  std::vector<Parameter*> ptrs;
  for (auto& p : params) ptrs.push_back(&p);
  LarsOptions o;
  o.weight_decay = 5e-2f;  // large enough that the decay terms matter at test precision
  o.trust = trust;
  o.nesterov = nesterov;
  Optimizer<Lars> opt(ptrs, o);

  std::vector<Vec> p(params.size()), v(params.size());
  for (std::size_t t = 0; t < params.size(); ++t) p[t] = to_double(params[t].value), v[t].assign(p[t].size(), 0.0);
  const double lrs[] = {0.3, 0.2};
  for (int s = 0; s < 2; ++s) {
    for (std::size_t t = 0; t < params.size(); ++t) set_grad(params[t], g[s][t]);
    std::vector<double> ratio(params.size(), 1.0);
    for (std::size_t t = 0; t < params.size(); ++t) {
      const bool excluded = params[t].kind != ParamKind::weight;
      const double wd = excluded ? 0.0 : o.weight_decay;
      Vec d(p[t].size());
      for (std::size_t i = 0; i < d.size(); ++i) d[i] = g[s][t][i] + wd * p[t][i];
      const double wn = norm_of(p[t]), gn = norm_of(to_double(g[s][t]));
      if (!excluded && wn > 0 && gn > 0)
        ratio[t] = o.trust_coefficient * wn / (trust == LarsTrust::paper ? gn + wd * wn : norm_of(d));
      for (std::size_t i = 0; i < d.size(); ++i) {
        const double step = lrs[s] * ratio[t] * d[i];
        v[t][i] = o.momentum * v[t][i] + step;
        p[t][i] -= nesterov ? o.momentum * v[t][i] + step : v[t][i];
      }
    }
    const auto ratios = lars_trust_ratios(opt.table(), LarsStep{0.0f, o.momentum, o.weight_decay,
                                                                o.trust_coefficient, nesterov, trust});
    expect_near(to_double(ratios), ratio, 1e-6, "lars trust ratios, step " + std::to_string(s + 1));
    EXPECT_EQ(ratios[1], 1.0f);
    EXPECT_EQ(ratios[2], 1.0f);
    if (s == 0) {
      EXPECT_EQ(ratios[3], 1.0f);  // zero weight (non-zero after one step)
    }
    EXPECT_EQ(ratios[4], 1.0f);  // zero gradient
    EXPECT_LT(ratios[0], 0.5f);
    opt.step(static_cast<float>(lrs[s]));
    for (std::size_t t = 0; t < params.size(); ++t)
      expect_near(to_double(params[t].value), p[t], 1e-6, "lars step " + std::to_string(s + 1) + " tensor " +
                                                               std::to_string(t));
  }
}

TEST(Lars, PaperTrustRatioTwoSteps) { run_lars_case(LarsTrust::paper, false); }
TEST(Lars, DecayedGradientTrustRatioTwoSteps) { run_lars_case(LarsTrust::decayed_gradient, false); }
TEST(Lars, Nesterov) { run_lars_case(LarsTrust::paper, true); }

TEST(Lars, TrustRatioByHand) {
  // w = (3, 4): |w| = 5; g = (0, 0.5): |g| = 0.5; wd = 0.1: ratio = 1e-3 * 5 / (0.5 + 0.5) = 5e-3.
  EXPECT_FLOAT_EQ(math::lars_trust_ratio(25.0, 0.25, 2.0, 0.1f, 1e-3f, LarsTrust::paper), 5e-3f);
  // decayed gradient: d = (0.3, 0.9): |d| = sqrt(0.9) -> 5e-3 / sqrt(0.9).
  EXPECT_NEAR(math::lars_trust_ratio(25.0, 0.25, 2.0, 0.1f, 1e-3f, LarsTrust::decayed_gradient),
              5e-3 / std::sqrt(0.9), 1e-9);
  EXPECT_EQ(math::lars_trust_ratio(0.0, 1.0, 0.0, 0.1f, 1e-3f, LarsTrust::paper), 1.0f);
  EXPECT_EQ(math::lars_trust_ratio(1.0, 0.0, 0.0, 0.1f, 1e-3f, LarsTrust::paper), 1.0f);
}

// ---- golden values from PyTorch (tests/torch/check_optim.py, torch 1.13) -----------------------

template <class P>
std::vector<float> torch_case_steps(typename P::Options o) {
  Parameter p = make_param({0.5f, -1.25f, 2.0f, 0.75f, -0.3f}, ParamKind::weight);
  Optimizer<P> opt(std::vector<Parameter*>{&p}, o);
  const float lrs[] = {0.1f, 0.05f, 0.02f};
  for (int k = 0; k < 3; ++k) {
    std::vector<float> g(5);
    for (int i = 0; i < 5; ++i) g[static_cast<std::size_t>(i)] = static_cast<float>(0.5 * std::sin(i + 1 + k));
    set_grad(p, g);
    opt.step(lrs[k]);
  }
  return p.value.to_vector();
}

TEST(TorchGolden, SgdNesterov) {
  const std::vector<float> want = {0.341820359f, -1.34982967f, 2.03513336f, 0.898278713f, -0.178407148f};
  expect_near(to_double(torch_case_steps<Sgd>(SgdOptions{0.9f, 0.0f, 1e-2f, true})), to_double(want), 1e-6,
              "torch SGD nesterov");
}
TEST(TorchGolden, SgdDampening) {
  const std::vector<float> want = {0.401921749f, -1.31775236f, 2.01561117f, 0.841016948f, -0.219395563f};
  expect_near(to_double(torch_case_steps<Sgd>(SgdOptions{0.9f, 0.1f, 1e-2f, false})), to_double(want), 1e-6,
              "torch SGD dampening");
}
TEST(TorchGolden, AdamW) {
  const std::vector<float> want = {0.32926929f, -1.37897182f, 1.92965293f, 0.911111355f, -0.151301131f};
  expect_near(to_double(torch_case_steps<AdamW>(AdamWOptions{0.9f, 0.999f, 1e-8f, 0.05f})), to_double(want), 1e-6,
              "torch AdamW");
}

// ---- clipping, EMA -------------------------------------------------------------------------

TEST(Clip, ScalesWhenAboveMaxNorm) {
  Fixture f;
  f.set_grads(f.grads1);
  double sq = 0;
  for (auto& g : f.grads1)
    for (float x : g) sq += double(x) * x;
  const double norm = std::sqrt(sq);
  const float max_norm = static_cast<float>(norm / 3);
  const float got = clip_grad_norm(f.ptrs(), max_norm);
  EXPECT_NEAR(got, norm, 1e-6 * norm);
  const double coef = max_norm / (norm + 1e-6);
  for (int t = 0; t < 3; ++t) {
    Vec want = to_double(f.grads1[t]);
    for (auto& x : want) x *= coef;
    expect_near(to_double(f.params[t].grad), want, 1e-6, "clipped gradient");
  }
  EXPECT_NEAR(grad_norm(f.ptrs()), max_norm, 1e-5 * max_norm);
}

TEST(Clip, LeavesSmallGradientsAlone) {
  Fixture f;
  f.set_grads(f.grads1);
  Optimizer<Sgd> opt(f.ptrs(), SgdOptions{});
  const float norm = opt.clip_grad_norm(1e6f);
  EXPECT_GT(norm, 0.0f);
  for (int t = 0; t < 3; ++t) EXPECT_EQ(f.params[t].grad.to_vector(), f.grads1[t]);
}

TEST(Ema, MovesTargetTowardsSource) {
  Fixture target, source;
  for (std::size_t t = 0; t < source.params.size(); ++t) {
    const auto v = random_floats(static_cast<std::size_t>(source.params[t].value.numel()), 77 + t);
    copy(CView(v.data(), source.params[t].value.shape(), Device::cpu()), source.params[t].value);
  }
  auto want = target.values();
  const auto src = source.values();
  Ema ema(target.ptrs(), source.ptrs());
  for (int s = 0; s < 2; ++s) {
    ema.update(0.99f);
    for (int t = 0; t < 3; ++t) {
      for (std::size_t i = 0; i < want[t].size(); ++i) want[t][i] = 0.99 * want[t][i] + 0.01 * src[t][i];
      expect_near(to_double(target.params[t].value), want[t], 1e-6, "ema");
    }
  }
  ema_update(target.ptrs(), source.ptrs(), 0.0f);  // m = 0 copies the source
  for (int t = 0; t < 3; ++t) expect_near(to_double(target.params[t].value), src[t], 0.0, "ema m=0");
}

// ---- networks, state, concept ------------------------------------------------------------

using TinyNet = nn::Sequential<nn::Named<"conv1", nn::Conv2d>, nn::Named<"bn1", nn::BatchNorm2d>,
                               nn::Named<"fc", nn::Linear>>;

TinyNet make_net(std::uint64_t seed) {
  TinyNet net(nn::Named<"conv1", nn::Conv2d>(nn::Conv2d(4, 3, 1, 1)), nn::Named<"bn1", nn::BatchNorm2d>(nn::BatchNorm2d(1e-5f)),
              nn::Named<"fc", nn::Linear>(nn::Linear(3)));
  net.setup(Shape{2, 3, 5, 5}, Device::cpu());
  nn::initialize(net, seed);
  std::uint64_t k = 0;
  net.visit_parameters("", [&](const std::string&, Parameter& p) {
    const auto g = random_floats(static_cast<std::size_t>(p.grad.numel()), 1000 + k++);
    copy(CView(g.data(), p.grad.shape(), Device::cpu()), p.grad);
  });
  return net;
}

template <class P>
std::map<std::string, std::vector<float>> save_state(Optimizer<P>& opt) {
  std::map<std::string, std::vector<float>> state;
  opt.visit_state([&](const std::string& name, Tensor& t) { state[name] = t.to_vector(); });
  return state;
}

template <class P>
void check_round_trip(typename P::Options o, const std::vector<std::string>& expected_names) {
  TinyNet a = make_net(3), b = make_net(4);
  Optimizer<P> opt_a(a, o);
  opt_a.step(0.1f);
  opt_a.step(0.05f);
  const auto state = save_state(opt_a);
  for (const auto& n : expected_names) EXPECT_TRUE(state.count(n)) << "missing state " << n;
  EXPECT_EQ(state.at("step"), std::vector<float>{2.0f});
  // b gets a's parameters and state, then both take the same step.
  auto pa = collect_parameters(a), pb = collect_parameters(b);
  for (std::size_t i = 0; i < pa.size(); ++i) copy(pa[i].param->value, pb[i].param->value);
  Optimizer<P> opt_b(b, o);
  opt_b.visit_state([&](const std::string& name, Tensor& t) {
    const auto& v = state.at(name);
    copy(CView(v.data(), t.shape(), Device::cpu()), t);
  });
  EXPECT_EQ(opt_b.step_count(), 2);
  opt_a.step(0.02f);
  opt_b.step(0.02f);
  for (std::size_t i = 0; i < pa.size(); ++i)
    EXPECT_EQ(pa[i].param->value.to_vector(), pb[i].param->value.to_vector()) << pa[i].name;
  EXPECT_EQ(save_state(opt_a), save_state(opt_b));
}

TEST(OptimizerState, SgdRoundTrip) {
  check_round_trip<Sgd>(SgdOptions{0.9f, 0.0f, 1e-4f, true},
                        {"momentum.conv1.weight", "momentum.bn1.weight", "momentum.bn1.bias", "momentum.fc.weight",
                         "momentum.fc.bias", "step"});
}
TEST(OptimizerState, AdamWRoundTrip) {
  check_round_trip<AdamW>(AdamWOptions{}, {"adam.m.conv1.weight", "adam.v.conv1.weight", "adam.m.fc.bias", "step"});
}
TEST(OptimizerState, LarsRoundTrip) { check_round_trip<Lars>(LarsOptions{}, {"momentum.fc.weight", "step"}); }

TEST(OptimizerState, SgdWithoutMomentumHasOnlyStep) {
  TinyNet net = make_net(1);
  Optimizer<Sgd> opt(net, SgdOptions{});
  const auto state = save_state(opt);
  EXPECT_EQ(state.size(), 1u);
  EXPECT_TRUE(state.count("step"));
}

TEST(Optimizer, NetworkKindsReachFlags) {
  TinyNet net = make_net(1);
  Optimizer<Lars> opt(net, LarsOptions{});
  const auto& slots = opt.table().slots();
  const auto refs = opt.parameters();
  ASSERT_EQ(slots.size(), refs.size());
  for (std::size_t i = 0; i < slots.size(); ++i) {
    const bool excluded = refs[i].param->kind != ParamKind::weight;
    EXPECT_EQ((slots[i].flags & kSlotNoAdapt) != 0, excluded) << refs[i].name;
    EXPECT_EQ((slots[i].flags & kSlotNoDecay) != 0, excluded) << refs[i].name;
  }
}

TEST(Optimizer, TableRebuildsOnlyWhenPointersChange) {
  Fixture f;
  f.set_grads(f.grads1);
  Optimizer<Sgd> opt(f.ptrs(), SgdOptions{0.9f});
  opt.step(0.1f);
  const auto v = opt.table().version();
  opt.step(0.1f);
  EXPECT_EQ(opt.table().version(), v);
  f.params[1].grad = Tensor(f.params[1].grad.shape());
  set_grad(f.params[1], f.grads2[1]);
  opt.step(0.1f);
  EXPECT_EQ(opt.table().version(), v + 1);
}

TEST(MultiTensorTable, ChunksNeverCrossTensors) {
  std::vector<std::vector<float>> store;
  std::vector<TensorSlot> slots;
  const std::int64_t sizes[] = {1, 3, 257, 65537, 0, kMultiTensorChunk};
  for (std::int64_t n : sizes) {
    store.emplace_back(static_cast<std::size_t>(n) + 1, 1.0f);
    TensorSlot s;
    s.param = s.grad = store.back().data();
    s.numel = n;
    slots.push_back(s);
  }
  MultiTensorTable table(slots, Device::cpu());
  EXPECT_EQ(table.num_chunks(), 1 + 1 + 1 + 5 + 0 + 1);
  EXPECT_EQ(table.total_numel(), 1 + 3 + 257 + 65537 + kMultiTensorChunk);
  EXPECT_EQ(table.slots()[3].chunk_begin, 3u);
  EXPECT_EQ(table.chunks()[7].tensor, 3u);
  EXPECT_EQ(table.chunks()[7].chunk, 4u);
  EXPECT_EQ(table.chunks()[8].tensor, 5u);
}

struct MissingApply {
  using Options = SgdOptions;
  static std::string_view name() { return "x"; }
  static void validate(const Options&) {}
  static int state_count(const Options&) { return 0; }
  static std::string_view state_name(int) { return "x"; }
  static std::uint32_t slot_flags(const Options&, ParamKind) { return 0; }
};
static_assert(OptimizerPolicy<Sgd> && OptimizerPolicy<AdamW> && OptimizerPolicy<Lars>);
static_assert(!OptimizerPolicy<MissingApply>);
static_assert(Schedule<WarmupCosineLr> && !Schedule<int>);

// ---- schedules -------------------------------------------------------------------------------

TEST(Schedule, Constant) { EXPECT_EQ(ConstantLr{0.3f}.lr(12345), 0.3f); }

TEST(Schedule, StepMilestones) {
  const StepLr s = StepLr::from_epochs(1e-3f, {60, 80}, 0.1f, 10);
  EXPECT_FLOAT_EQ(s.lr(0), 1e-3f);
  EXPECT_FLOAT_EQ(s.lr(599), 1e-3f);
  EXPECT_FLOAT_EQ(s.lr(600), 1e-4f);
  EXPECT_FLOAT_EQ(s.lr(799), 1e-4f);
  EXPECT_FLOAT_EQ(s.lr(800), 1e-5f);
  EXPECT_FLOAT_EQ(s.lr(100000), 1e-5f);
}

TEST(Schedule, WarmupCosineKeySteps) {
  // SimCLR: 10 warm-up epochs of 5 steps, 100 epochs in total.
  const auto s = WarmupCosineLr::from_epochs(1.2f, 10, 100, 5, 0.0f);
  EXPECT_EQ(s.lr(0), 0.0f);
  EXPECT_FLOAT_EQ(s.lr(25), 0.6f);
  EXPECT_FLOAT_EQ(s.lr(49), 1.2f * 49 / 50);
  EXPECT_FLOAT_EQ(s.lr(50), 1.2f);  // warm-up end: cosine starts at base
  EXPECT_NEAR(s.lr(275), 0.6f, 1e-6f);  // half-way through the cosine
  EXPECT_NEAR(s.lr(499), 1.2 * 0.5 * (1 + std::cos(M_PI * 449.0 / 450.0)), 1e-7);
  EXPECT_EQ(s.lr(500), 0.0f);
  EXPECT_EQ(s.lr(900), 0.0f);
  const WarmupCosineLr m{1.0f, 0, 100, 0.1f};
  EXPECT_FLOAT_EQ(m.lr(0), 1.0f);
  EXPECT_FLOAT_EQ(m.lr(50), 0.55f);
  EXPECT_FLOAT_EQ(m.lr(100), 0.1f);
}

TEST(Schedule, CosinePerEpochAsMoCo) {
  // MoCo: lr *= 0.5 * (1 + cos(pi * epoch / epochs)), constant within an epoch.
  const auto s = WarmupCosineLr::from_epochs(0.03f, 0, 200, 7, 0.0f, true);
  for (int epoch : {0, 1, 100, 199}) {
    const float want = static_cast<float>(0.03 * 0.5 * (1 + std::cos(M_PI * epoch / 200.0)));
    EXPECT_FLOAT_EQ(s.lr(epoch * 7), want);
    EXPECT_FLOAT_EQ(s.lr(epoch * 7 + 6), want);
  }
  AnySchedule any = s;
  EXPECT_EQ(lr_at(any, 700), s.lr(700));
}

TEST(Schedule, LrScaling) {
  EXPECT_FLOAT_EQ(scaled_lr(0.3f, 4096, LrScaling::linear), 4.8f);
  EXPECT_FLOAT_EQ(scaled_lr(0.075f, 4096, LrScaling::sqrt), 4.8f);
  EXPECT_FLOAT_EQ(scaled_lr(0.03f, 512, LrScaling::none), 0.03f);
  EXPECT_EQ(parse_lr_scaling("sqrt"), LrScaling::sqrt);
  EXPECT_THROW(parse_lr_scaling("cubic"), Error);
}

}  // namespace
}  // namespace fovea::optim
