// tests/test_lrp.cpp: layer-wise relevance propagation (analysis/lrp.hpp). On a small conv + BN +
// max-pool + conv + BN + global-pool + linear network, every rule combination against an
// independent double-precision implementation written out below (batch norm merged into the
// convolutions by hand); on a tiny ResNet-18 with random batch-norm statistics, LRP-epsilon with a
// tiny epsilon equals gradient x input (residual splits and projection shortcuts included); the
// batch size does not change the bits; unsupported layouts and bad targets are clear errors.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "fovea/analysis/attribution.hpp"
#include "fovea/analysis/lrp.hpp"
#include "fovea/fovea.hpp"
#include "fovea/models/resnet.hpp"
#include "fovea/nn/summary.hpp"
#include "test_nets.hpp"

namespace fovea {
namespace {

using namespace fovea::nn;
using namespace fovea::models;
using namespace fovea::analysis;

std::vector<double> host_double(CView v) {
  std::vector<float> f(static_cast<std::size_t>(v.numel()));
  copy(v, View(f.data(), v.shape(), Device::cpu()));
  return {f.begin(), f.end()};
}

// ---- the reference: stride-1 convolutions with zero padding, in double ------------------------

struct Conv {
  int out, in, k, pad;
  std::vector<double> w, b;  // (out, in, k, k), (out) (empty: no bias)
};

// z[o, y, x] = sum_{c, i, j} in[c, y + i - pad, x + j - pad] w[o, c, i, j] + b[o]  (H x W planes)
std::vector<double> conv_forward(const std::vector<double>& in, int h, int w, const Conv& cv) {
  std::vector<double> z(static_cast<std::size_t>(cv.out * h * w), 0.0);
  for (int o = 0; o < cv.out; ++o)
    for (int y = 0; y < h; ++y)
      for (int x = 0; x < w; ++x) {
        double s = cv.b.empty() ? 0.0 : cv.b[static_cast<std::size_t>(o)];
        for (int c = 0; c < cv.in; ++c)
          for (int i = 0; i < cv.k; ++i)
            for (int j = 0; j < cv.k; ++j) {
              const int yy = y + i - cv.pad, xx = x + j - cv.pad;
              if (yy < 0 || yy >= h || xx < 0 || xx >= w) continue;
              s += in[static_cast<std::size_t>((c * h + yy) * w + xx)] *
                   cv.w[static_cast<std::size_t>(((o * cv.in + c) * cv.k + i) * cv.k + j)];
            }
        z[static_cast<std::size_t>((o * h + y) * w + x)] = s;
      }
  return z;
}

// The transpose: t[c, yy, xx] = sum_{o, y, x} s[o, y, x] w[o, c, i, j] over the taps that reach (yy, xx).
std::vector<double> conv_transpose(const std::vector<double>& s, int h, int w, const Conv& cv) {
  std::vector<double> t(static_cast<std::size_t>(cv.in * h * w), 0.0);
  for (int o = 0; o < cv.out; ++o)
    for (int y = 0; y < h; ++y)
      for (int x = 0; x < w; ++x)
        for (int c = 0; c < cv.in; ++c)
          for (int i = 0; i < cv.k; ++i)
            for (int j = 0; j < cv.k; ++j) {
              const int yy = y + i - cv.pad, xx = x + j - cv.pad;
              if (yy < 0 || yy >= h || xx < 0 || xx >= w) continue;
              t[static_cast<std::size_t>((c * h + yy) * w + xx)] +=
                  s[static_cast<std::size_t>((o * h + y) * w + x)] *
                  cv.w[static_cast<std::size_t>(((o * cv.in + c) * cv.k + i) * cv.k + j)];
            }
  return t;
}

double stab(double z, double eps) { return z + (z >= 0 ? eps : -eps); }

Conv map_weights(Conv cv, double (*f)(double)) {
  for (double& v : cv.w) v = f(v);
  return cv;
}

// ---- the small network ------------------------------------------------------------------------

using Small = Sequential<Conv2d, BatchNorm2d, ReLU, MaxPool2d, Conv2d, BatchNorm2d, ReLU, GlobalAvgPool,
                         Flatten, Linear>;
constexpr int kH = 8;

struct SmallNet {
  Small net{Conv2d(4, 3, 1, 1),
            BatchNorm2d(1e-5f),
            ReLU(),
            MaxPool2d(2, 2),
            Conv2d(5, 3, 1, 1, true),
            BatchNorm2d(1e-5f),
            ReLU(),
            GlobalAvgPool(),
            Flatten(),
            Linear(3)};
  Tensor images{Shape{2, 3, kH, kH}};
  Conv c1, c2;  // batch norm merged in
  std::vector<double> fc_w, fc_b;

  SmallNet() {
    net.setup(images.shape(), Device::cpu());
    nn::initialize(net, 9);
    std::uint64_t seed = 70;
    net.visit_parameters("", [&](const std::string& name, Parameter& p) {
      if (p.kind == ParamKind::norm) {
        const bool gamma = name.ends_with("weight");
        random_uniform(p.value, RandomKey{.seed = seed++}, gamma ? 0.5f : -0.3f, gamma ? 1.5f : 0.3f);
      } else if (p.kind == ParamKind::bias) {
        random_uniform(p.value, RandomKey{.seed = seed++}, -0.2f, 0.2f);
      }
    });
    net.visit_buffers("", [&](const std::string& name, Tensor& t) {
      const bool mean = name.ends_with("running_mean");
      random_uniform(t, RandomKey{.seed = seed++}, mean ? -0.3f : 0.5f, mean ? 0.3f : 2.0f);
    });
    // Pixels in [0, 1], normalised with the DR statistics (the box rule's bounds).
    Tensor u(images.shape());
    random_uniform(u, RandomKey{.seed = 77}, 0.0f, 1.0f);
    const std::int64_t plane = kH * kH;
    for (std::int64_t i = 0; i < u.numel(); ++i) {
      const int c = static_cast<int>((i / plane) % 3);
      images.data()[i] = (u.data()[i] - kDrStats.mean[c]) / kDrStats.std[c];
    }
    net.set_training(false);
    c1 = merged(net.get<0>(), net.get<1>(), 4, 3);
    c2 = merged(net.get<4>(), net.get<5>(), 5, 4);
    fc_w = host_double(net.get<9>().weight().value);
    net.get<9>().visit_parameters("", [&](const std::string& n, Parameter& p) {
      if (n == "bias") fc_b = host_double(p.value);
    });
  }

  static Conv merged(Conv2d& conv, BatchNorm2d& bn, int out, int in) {
    Conv cv{out, in, 3, 1, host_double(conv.weight().value), {}};
    std::vector<double> bias(static_cast<std::size_t>(out), 0.0), gamma, beta, mean, var;
    conv.visit_parameters("", [&](const std::string& n, Parameter& p) {
      if (n == "bias") bias = host_double(p.value);
    });
    bn.visit_parameters("", [&](const std::string& n, Parameter& p) {
      (n == "weight" ? gamma : beta) = host_double(p.value);
    });
    bn.visit_buffers(
        "", [&](const std::string& n, Tensor& t) { (n == "running_mean" ? mean : var) = host_double(t); });
    cv.b.resize(static_cast<std::size_t>(out));
    const std::size_t per = cv.w.size() / static_cast<std::size_t>(out);
    for (std::size_t o = 0; o < static_cast<std::size_t>(out); ++o) {
      const double s = gamma[o] / std::sqrt(var[o] + double(1e-5f));
      for (std::size_t i = 0; i < per; ++i) cv.w[o * per + i] *= s;
      cv.b[o] = beta[o] - s * mean[o] + s * bias[o];
    }
    return cv;
  }

  // The relevance of image n for class t by the rules of `opt`, and the logits (by the reference).
  std::vector<double> reference(int n, int t, const LrpOptions& opt, std::vector<double>* logits_out) const {
    const double eps = opt.epsilon;
    const std::int64_t size = 3 * kH * kH;
    std::vector<double> x(images.data() + n * size, images.data() + (n + 1) * size);
    // forward
    const std::vector<double> z1 = conv_forward(x, kH, kH, c1);
    std::vector<double> a1(z1.size());
    for (std::size_t i = 0; i < z1.size(); ++i) a1[i] = std::max(z1[i], 0.0);
    const int hp = kH / 2;
    std::vector<double> p1(static_cast<std::size_t>(4 * hp * hp));
    std::vector<std::size_t> arg(p1.size());
    for (int c = 0; c < 4; ++c)
      for (int y = 0; y < hp; ++y)
        for (int xx = 0; xx < hp; ++xx) {
          double best = -1e300;
          std::size_t at = 0;
          for (int i = 0; i < 2; ++i)
            for (int j = 0; j < 2; ++j) {
              const auto idx = static_cast<std::size_t>((c * kH + 2 * y + i) * kH + 2 * xx + j);
              if (a1[idx] > best) best = a1[idx], at = idx;
            }
          p1[static_cast<std::size_t>((c * hp + y) * hp + xx)] = best;
          arg[static_cast<std::size_t>((c * hp + y) * hp + xx)] = at;
        }
    const std::vector<double> z2 = conv_forward(p1, hp, hp, c2);
    std::vector<double> a2(z2.size()), g(5, 0.0);
    for (std::size_t i = 0; i < z2.size(); ++i) a2[i] = std::max(z2[i], 0.0);
    for (int c = 0; c < 5; ++c)
      for (int i = 0; i < hp * hp; ++i)
        g[static_cast<std::size_t>(c)] += a2[static_cast<std::size_t>(c * hp * hp + i)] / (hp * hp);
    std::vector<double> logits(3);
    for (int k = 0; k < 3; ++k) {
      logits[static_cast<std::size_t>(k)] = fc_b[static_cast<std::size_t>(k)];
      for (int c = 0; c < 5; ++c)
        logits[static_cast<std::size_t>(k)] +=
            fc_w[static_cast<std::size_t>(k * 5 + c)] * g[static_cast<std::size_t>(c)];
    }
    if (logits_out) *logits_out = logits;
    // fc: epsilon rule from R = f_t at t.
    std::vector<double> rg(5);
    const double ratio_fc =
        logits[static_cast<std::size_t>(t)] / stab(logits[static_cast<std::size_t>(t)], eps);
    for (int c = 0; c < 5; ++c)
      rg[static_cast<std::size_t>(c)] =
          g[static_cast<std::size_t>(c)] * fc_w[static_cast<std::size_t>(t * 5 + c)] * ratio_fc;
    // global average pool
    std::vector<double> ra2(a2.size());
    for (int c = 0; c < 5; ++c)
      for (int i = 0; i < hp * hp; ++i) {
        const auto idx = static_cast<std::size_t>(c * hp * hp + i);
        ra2[idx] =
            a2[idx] / (hp * hp) * rg[static_cast<std::size_t>(c)] / stab(g[static_cast<std::size_t>(c)], eps);
      }
    // conv2 (inner rule); relu passes relevance unchanged
    Conv rho = c2;
    if (opt.rule == LrpRule::plus) {
      rho = map_weights(c2, [](double v) { return std::max(v, 0.0); });
      rho.b.clear();
    } else if (opt.rule == LrpRule::gamma) {
      for (double& v : rho.w) v += opt.gamma * std::max(v, 0.0);
      for (double& v : rho.b) v += opt.gamma * std::max(v, 0.0);
    }
    const std::vector<double> zr = conv_forward(p1, hp, hp, rho);
    std::vector<double> s2(zr.size());
    for (std::size_t i = 0; i < zr.size(); ++i) s2[i] = ra2[i] / stab(zr[i], eps);
    const std::vector<double> t2 = conv_transpose(s2, hp, hp, rho);
    std::vector<double> ra1(a1.size(), 0.0);
    for (std::size_t i = 0; i < p1.size(); ++i) ra1[arg[i]] += p1[i] * t2[i];  // max pool: winner takes all
    // conv1 (input rule)
    std::vector<double> r0(x.size());
    if (opt.input == LrpInputRule::box) {
      std::vector<double> lo(x.size()), hi(x.size());
      for (std::size_t i = 0; i < x.size(); ++i) {
        const int c = static_cast<int>(i / (kH * kH));
        lo[i] = (0.0f - kDrStats.mean[c]) / kDrStats.std[c];
        hi[i] = (1.0f - kDrStats.mean[c]) / kDrStats.std[c];
      }
      Conv w = c1, wp = map_weights(c1, [](double v) { return std::max(v, 0.0); }),
           wn = map_weights(c1, [](double v) { return std::min(v, 0.0); });
      w.b.clear(), wp.b.clear(), wn.b.clear();
      const std::vector<double> zx = conv_forward(x, kH, kH, w), zl = conv_forward(lo, kH, kH, wp),
                                zh = conv_forward(hi, kH, kH, wn);
      std::vector<double> s1(zx.size());
      for (std::size_t i = 0; i < s1.size(); ++i) s1[i] = ra1[i] / stab(zx[i] - zl[i] - zh[i], eps);
      const std::vector<double> tx = conv_transpose(s1, kH, kH, w), tl = conv_transpose(s1, kH, kH, wp),
                                th = conv_transpose(s1, kH, kH, wn);
      for (std::size_t i = 0; i < r0.size(); ++i) r0[i] = x[i] * tx[i] - lo[i] * tl[i] - hi[i] * th[i];
    } else if (opt.input == LrpInputRule::flat) {
      Conv ones = map_weights(c1, [](double) { return 1.0; });
      ones.b.clear();
      const std::vector<double> z = conv_forward(std::vector<double>(x.size(), 1.0), kH, kH, ones);
      std::vector<double> s1(z.size());
      for (std::size_t i = 0; i < s1.size(); ++i) s1[i] = ra1[i] / stab(z[i], eps);
      r0 = conv_transpose(s1, kH, kH, ones);
    } else {
      const std::vector<double> z = conv_forward(x, kH, kH, c1);
      std::vector<double> s1(z.size());
      for (std::size_t i = 0; i < s1.size(); ++i) s1[i] = ra1[i] / stab(z[i], eps);
      const std::vector<double> tx = conv_transpose(s1, kH, kH, c1);
      for (std::size_t i = 0; i < r0.size(); ++i) r0[i] = x[i] * tx[i];
    }
    return r0;
  }
};

struct RuleCase {
  LrpRule rule;
  LrpInputRule input;
};

TEST(Lrp, EveryRuleMatchesTheDoublePrecisionReference) {
  SmallNet s;
  const std::vector<int> targets{2, 0};
  for (const RuleCase rc :
       {RuleCase{LrpRule::plus, LrpInputRule::box}, RuleCase{LrpRule::gamma, LrpInputRule::flat},
        RuleCase{LrpRule::epsilon, LrpInputRule::epsilon}, RuleCase{LrpRule::plus, LrpInputRule::flat},
        RuleCase{LrpRule::gamma, LrpInputRule::box}}) {
    LrpOptions opt;
    opt.rule = rc.rule;
    opt.input = rc.input;
    opt.epsilon = 1e-3f;  // large enough to show in the ratios, so a missing stabiliser would fail
    const AttributionMaps m = lrp(s.net, s.images, targets, opt);
    const std::int64_t size = 3 * kH * kH;
    for (int n = 0; n < 2; ++n) {
      std::vector<double> logits;
      const std::vector<double> want = s.reference(n, targets[static_cast<std::size_t>(n)], opt, &logits);
      EXPECT_NEAR(m.target_logit[static_cast<std::size_t>(n)],
                  logits[static_cast<std::size_t>(targets[static_cast<std::size_t>(n)])], 1e-5);
      double max_abs = 0;
      for (double v : want) max_abs = std::max(max_abs, std::fabs(v));
      ASSERT_GT(max_abs, 1e-6) << to_string(rc.rule) << "/" << to_string(rc.input);
      for (std::int64_t i = 0; i < size; ++i)
        ASSERT_NEAR(m.raw[static_cast<std::size_t>(n * size + i)], want[static_cast<std::size_t>(i)],
                    2e-5 * max_abs)
            << to_string(rc.rule) << "/" << to_string(rc.input) << " image " << n << " element " << i;
    }
  }
}

TEST(Lrp, RulesGiveDifferentMaps) {
  SmallNet s;
  const std::vector<int> targets{2, 0};
  const AttributionMaps a =
      lrp(s.net, s.images, targets, {.rule = LrpRule::plus, .input = LrpInputRule::box});
  const AttributionMaps b =
      lrp(s.net, s.images, targets, {.rule = LrpRule::epsilon, .input = LrpInputRule::box});
  const AttributionMaps c =
      lrp(s.net, s.images, targets, {.rule = LrpRule::plus, .input = LrpInputRule::flat});
  double ab = 0, ac = 0;
  for (std::size_t i = 0; i < a.raw.size(); ++i)
    ab += std::fabs(a.raw[i] - b.raw[i]), ac += std::fabs(a.raw[i] - c.raw[i]);
  EXPECT_GT(ab, 1e-3);
  EXPECT_GT(ac, 1e-3);
}

// ---- ResNet-18: LRP-0 is gradient x input ---------------------------------------------------

struct TinyResNet {
  ResNet18 net{ResNetConfig{.num_classes = 5, .width = 0.125f}};  // full stem: max pool included
  Tensor images{Shape{3, 3, 32, 32}};
  std::vector<int> targets{0, 3, 4};
  TinyResNet() {
    net.setup(images.shape(), Device::cpu());
    nn::initialize(net, 23);
    testing::randomize_batch_norm(net, 500);
    random_normal(images, RandomKey{.seed = 61}, 0.0f, 1.0f);
  }
};

TEST(Lrp, EpsilonRuleIsGradientTimesInputOnAResNet) {
  TinyResNet t;
  const AttributionMaps gxi = gradient_x_input(t.net, t.images, t.targets);
  const AttributionMaps m =
      lrp(t.net, t.images, t.targets,
          {.rule = LrpRule::epsilon, .input = LrpInputRule::epsilon, .epsilon = 1e-12f});
  ASSERT_EQ(m.raw.size(), gxi.raw.size());
  double num = 0, den = 0;
  for (std::size_t i = 0; i < m.raw.size(); ++i) {
    num += (double(m.raw[i]) - gxi.raw[i]) * (double(m.raw[i]) - gxi.raw[i]);
    den += double(gxi.raw[i]) * gxi.raw[i];
  }
  ASSERT_GT(den, 0.0);
  // Both in float; the ratios R / z amplify rounding where z is small, so compare in L2.
  EXPECT_LT(std::sqrt(num / den), 1e-3);
  for (std::size_t n = 0; n < 3; ++n) EXPECT_NEAR(m.target_logit[n], gxi.target_logit[n], 1e-5);
}

TEST(Lrp, BatchingDoesNotChangeTheBitsAndTheDefaultRulesConserveRelevance) {
  TinyResNet t;
  std::vector<float> fc_bias;
  t.net.get<1>().visit_parameters("", [&](const std::string& n, Parameter& p) {
    if (n != "bias") return;
    random_uniform(p.value, RandomKey{.seed = 62}, -0.5f, 0.5f);
    fc_bias = p.value.to_vector();
  });
  ASSERT_EQ(fc_bias.size(), 5u);
  const AttributionMaps one = lrp(t.net, t.images, t.targets, {.batch = 1});
  const AttributionMaps two = lrp(t.net, t.images, t.targets, {.batch = 2});  // chunks of 2 and 1
  const AttributionMaps all = lrp(t.net, t.images, t.targets, {.batch = 3});
  EXPECT_EQ(one.raw, all.raw);
  EXPECT_EQ(two.raw, all.raw);
  // z+ (no bias in its denominators), z^B, the pooling and the residual split pass on exactly what
  // they get; the head's epsilon rule keeps the bias's share: sum = f_t - b_t (up to epsilon and
  // float rounding). A lost or doubled branch, or a bias in z+, breaks this.
  for (std::size_t n = 0; n < 3; ++n) {
    double sum = 0;
    for (std::int64_t i = 0; i < all.image_size(); ++i)
      sum += all.raw[n * static_cast<std::size_t>(all.image_size()) + static_cast<std::size_t>(i)];
    const double want = all.target_logit[n] - fc_bias[static_cast<std::size_t>(t.targets[n])];
    EXPECT_NEAR(sum, want, 1e-4 * (std::fabs(all.target_logit[n]) + std::fabs(want))) << "image " << n;
  }
}

// ---- a rule of the user's for a layer type of their own ------------------------------------------

// y = gain x: a leaf type fovea has no LRP rule for.
class TestGain : public ParameterFree {
 public:
  explicit TestGain(float gain = 2.0f) : gain_(gain) {}
  static constexpr std::string_view kind_name() { return "TestGain"; }
  Shape output_shape(const Shape& in) const { return in; }
  Shape setup(const Shape& in, Device) { return in; }
  CView forward(CView x) {
    View y = act_.output_for(x.shape(), x.device());
    scale(x, gain_, y);
    return y;
  }
  CView backward(CView dy) {
    View dx = act_.input_grad_for(dy.shape(), dy.device());
    scale(dy, gain_, dx);
    return dx;
  }
  void release_input_grad() { act_.release_input_grad(); }
  bool keeps_input() const { return false; }
  float gain() const { return gain_; }

 private:
  Activations act_;
  float gain_;
};

int gain_rule_calls = 0;
bool gain_rule_wrong_shape = false;

}  // namespace
}  // namespace fovea

// The z-rule of y = gain x: R_in = x gain r / stab(y) (= r up to epsilon).
template <>
struct fovea::analysis::LrpLeafRule<fovea::TestGain> {
  static Tensor relevance(TestGain& layer, const LrpLeaf& leaf, const Tensor& r) {
    ++gain_rule_calls;
    EXPECT_EQ(leaf.input.shape(), leaf.output.shape());
    Tensor s(r.shape(), r.device());
    lrp_ratio(r, leaf.output, leaf.options.epsilon, s);
    Tensor out(gain_rule_wrong_shape ? Shape{1} : leaf.input.shape(), r.device());
    if (gain_rule_wrong_shape) return out;
    multiply(leaf.input, s, out);
    scale(out, layer.gain(), out);
    return out;
  }
};

namespace fovea {
namespace {

// A network with the gain layer (bare and named) against the same network without it and with the
// head's weights doubled instead: the same logits, and with the rule the same LRP maps (the ratios
// do not see a common scale, up to epsilon).
TEST(Lrp, RulesForLayersOfYourOwn) {
  Sequential<Conv2d, ReLU, TestGain, GlobalAvgPool, Flatten, Linear> with_gain{
      Conv2d(6, 3, 3, 1, 1), ReLU(), TestGain(2.0f), GlobalAvgPool(), Flatten(), Linear(3)};
  Sequential<Conv2d, ReLU, Named<"gain", TestGain>, GlobalAvgPool, Flatten, Linear> named_gain{
      Conv2d(6, 3, 3, 1, 1), ReLU(), TestGain(2.0f), GlobalAvgPool(), Flatten(), Linear(3)};
  Sequential<Conv2d, ReLU, GlobalAvgPool, Flatten, Linear> plain{Conv2d(6, 3, 3, 1, 1), ReLU(),
                                                                 GlobalAvgPool(), Flatten(), Linear(3)};
  Tensor x(Shape{2, 3, 9, 9});
  random_normal(x, RandomKey{.seed = 8}, 0.0f, 1.0f);
  with_gain.setup(x.shape(), Device::cpu());
  named_gain.setup(x.shape(), Device::cpu());
  plain.setup(x.shape(), Device::cpu());
  nn::initialize(with_gain, 4);
  nn::initialize(named_gain, 4);
  nn::initialize(plain, 4);
  plain.get<4>().visit_parameters("", [](const std::string& n, Parameter& p) {
    if (n == "weight") scale(p.value, 2.0f, p.value);
  });
  const std::vector<int> targets{2, 0};
  const LrpOptions opt{.rule = LrpRule::epsilon, .input = LrpInputRule::flat, .epsilon = 1e-9f};
  gain_rule_calls = 0;
  const AttributionMaps a = lrp(with_gain, x, targets, opt);
  EXPECT_EQ(gain_rule_calls, 1);
  const AttributionMaps b = lrp(named_gain, x, targets, opt);
  EXPECT_EQ(gain_rule_calls, 2);
  const AttributionMaps c = lrp(plain, x, targets, opt);
  for (std::size_t n = 0; n < 2; ++n) EXPECT_NEAR(a.target_logit[n], c.target_logit[n], 1e-5);
  EXPECT_EQ(a.raw, b.raw);
  double largest = 0, worst = 0;
  for (std::size_t i = 0; i < c.raw.size(); ++i) {
    largest = std::max(largest, std::fabs(double(c.raw[i])));
    worst = std::max(worst, std::fabs(double(a.raw[i]) - c.raw[i]));
  }
  EXPECT_GT(largest, 0.0);
  EXPECT_LT(worst, 1e-5 * largest);
  // A rule that returns the wrong shape is an error naming the layer.
  gain_rule_wrong_shape = true;
  try {
    lrp(with_gain, x, targets, opt);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("the rule of layer '2' (TestGain) gave relevance (1)"),
              std::string::npos)
        << e.what();
  }
  gain_rule_wrong_shape = false;
}

TEST(Lrp, UnsupportedLayoutsAndBadTargetsAreClearErrors) {
  Sequential<Conv2d, ReLU, BatchNorm2d, GlobalAvgPool, Flatten, Linear> net{
      Conv2d(4, 3, 1, 1), ReLU(), BatchNorm2d(1e-5f), GlobalAvgPool(), Flatten(), Linear(2)};
  Tensor x(Shape{1, 3, 6, 6});
  random_normal(x, RandomKey{.seed = 3}, 0.0f, 1.0f);
  net.setup(x.shape(), Device::cpu());
  nn::initialize(net, 1);
  const int target[1] = {1};
  try {
    lrp(net, x, target);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("BatchNorm2d at '2' does not follow a Conv2d"), std::string::npos)
        << e.what();
  }
  SmallNet s;
  const int bad[2] = {0, 3};
  EXPECT_THROW(lrp(s.net, s.images, bad), Error);
  EXPECT_THROW(lrp(s.net, s.images, std::vector<int>{0, 1}, {.epsilon = -1.0f}), Error);
}

}  // namespace
}  // namespace fovea
