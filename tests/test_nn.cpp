// tests/test_nn.cpp: Tier-A layers and models on the CPU: parameter counts and names of the ResNets
// (torchvision's), output shapes, the summary table, finite-difference gradient checks of every
// layer and of a whole small ResNet, state-dict round trips and strict/partial loading.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <set>
#include <sstream>

#include "fovea/fovea.hpp"
#include "fovea/models/resnet.hpp"
#include "fovea/nn/state.hpp"
#include "fovea/nn/summary.hpp"

namespace fovea {
namespace {

using namespace fovea::nn;
using namespace fovea::models;

std::set<std::string> parameter_names(auto& net) {
  std::set<std::string> names;
  net.visit_parameters("", [&](const std::string& n, Parameter&) { names.insert(n); });
  net.visit_buffers("", [&](const std::string& n, Tensor&) { names.insert(n); });
  return names;
}

TEST(ResNet, ParameterCountsMatchTorchvision) {
  ResNet18 r18(ResNetConfig{});
  r18.setup(Shape{1, 3, 224, 224}, Device::cpu());
  EXPECT_EQ(count_parameters(r18), 11689512);
  ResNet34 r34(ResNetConfig{});
  r34.setup(Shape{1, 3, 224, 224}, Device::cpu());
  EXPECT_EQ(count_parameters(r34), 21797672);
  ResNet50 r50(ResNetConfig{});
  r50.setup(Shape{1, 3, 224, 224}, Device::cpu());
  EXPECT_EQ(count_parameters(r50), 25557032);
  EXPECT_EQ(r50.output_shape(Shape{2, 3, 224, 224}), (Shape{2, 1000}));
}

TEST(ResNet, StateDictKeysAreTorchvisions) {
  ResNet50 r50(ResNetConfig{.num_classes = 5});
  r50.setup(Shape{1, 3, 64, 64}, Device::cpu());
  const auto names = parameter_names(r50);
  for (const char* key : {"conv1.weight", "bn1.weight", "bn1.bias", "bn1.running_mean", "bn1.running_var",
                          "layer1.0.conv1.weight", "layer1.0.bn3.running_var", "layer1.0.downsample.0.weight",
                          "layer1.0.downsample.1.running_mean", "layer2.3.conv2.weight", "layer4.2.bn3.bias",
                          "fc.weight", "fc.bias"})
    EXPECT_TRUE(names.count(key)) << key;
  EXPECT_FALSE(names.count("layer1.1.downsample.0.weight"));
  // torchvision resnet50: 161 parameter tensors + 106 running statistics (num_batches_tracked aside).
  EXPECT_EQ(names.size(), 161u + 106u);

  ResNet18 r18(ResNetConfig{});
  r18.setup(Shape{1, 3, 64, 64}, Device::cpu());
  const auto n18 = parameter_names(r18);
  EXPECT_FALSE(n18.count("layer1.0.downsample.0.weight"));  // 64 -> 64, stride 1: identity
  EXPECT_TRUE(n18.count("layer2.0.downsample.0.weight"));
  EXPECT_TRUE(n18.count("layer4.1.bn2.weight"));
}

TEST(ResNet, WidthMultiplierAndSmallStem) {
  ResNetConfig cfg{.num_classes = 5, .width = 0.25f, .small_stem = true};
  ResNet18 net(cfg);
  EXPECT_EQ(net.output_shape(Shape{3, 3, 32, 32}), (Shape{3, 5}));
  net.setup(Shape{3, 3, 32, 32}, Device::cpu());
  std::ostringstream os;
  print_summary(net, Shape{3, 3, 32, 32}, os);
  const std::string table = os.str();
  // Small stem: 3x3 conv, no max-pool, so layer1 keeps 32x32; width 0.25: 16 channels.
  EXPECT_NE(table.find("layer1.0.conv1"), std::string::npos) << table;
  EXPECT_NE(table.find("(3, 16, 32, 32)"), std::string::npos) << table;
  EXPECT_EQ(table.find("maxpool"), std::string::npos) << table;
  EXPECT_NE(table.find("(3, 128)"), std::string::npos) << table;  // flattened features: 512 * 0.25
  EXPECT_NE(table.find(with_thousands(count_parameters(net))), std::string::npos);
  EXPECT_EQ(ResNet18Backbone::features(cfg), 128);
}

TEST(ResNet, InitialisationFollowsTorchvision) {
  ResNet50 net(ResNetConfig{.num_classes = 5, .zero_init_residual = true});
  net.setup(Shape{1, 3, 32, 32}, Device::cpu());
  initialize(net, 7);
  StateDict s = state_dict(net);
  auto stats = [](const std::vector<float>& v) {
    double m = 0, q = 0;
    for (float x : v) m += x;
    m /= v.size();
    for (float x : v) q += (x - m) * (x - m);
    return std::pair{m, std::sqrt(q / v.size())};
  };
  // Kaiming normal, fan-out: layer3.0.conv2 is (256, 256, 3, 3): std sqrt(2 / (256 * 9)).
  auto [m, sd] = stats(s.at("layer3.0.conv2.weight").values);
  EXPECT_NEAR(m, 0.0, 0.002);
  EXPECT_NEAR(sd, std::sqrt(2.0 / (256 * 9)), 0.002);
  auto [fm, fsd] = stats(s.at("fc.weight").values);  // the study's head: N(0, 0.01)
  EXPECT_NEAR(fsd, 0.01, 0.001);
  EXPECT_EQ(s.at("fc.bias").values, std::vector<float>(5, 0.0f));
  EXPECT_EQ(s.at("bn1.weight").values, std::vector<float>(64, 1.0f));
  EXPECT_EQ(s.at("layer1.0.bn3.weight").values, std::vector<float>(256, 0.0f));  // zero-init residual
  EXPECT_EQ(s.at("layer1.0.bn2.weight").values, std::vector<float>(64, 1.0f));
  EXPECT_EQ(s.at("bn1.running_var").values, std::vector<float>(64, 1.0f));
  // Same seed, same weights; another seed, other weights.
  ResNet50 again(ResNetConfig{.num_classes = 5, .zero_init_residual = true});
  again.setup(Shape{1, 3, 32, 32}, Device::cpu());
  initialize(again, 7);
  EXPECT_EQ(state_dict(again).at("layer3.0.conv2.weight").values, s.at("layer3.0.conv2.weight").values);
  initialize(again, 8);
  EXPECT_NE(state_dict(again).at("layer3.0.conv2.weight").values, s.at("layer3.0.conv2.weight").values);
}

// Finite-difference check of a whole network: L = sum(dy * net(x)); perturbs a sample of input
// elements and parameter elements (float forward, h = 1e-2, double accumulation of L).
template <class Net>
void check_network_gradients(Net& net, const Shape& in_shape, int samples, double tol) {
  std::mt19937 gen(3);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> xv(static_cast<std::size_t>(in_shape.numel()));
  for (auto& v : xv) v = nd(gen);
  Tensor x = Tensor::from(xv, in_shape);
  const Shape out_shape = net.output_shape(in_shape);
  std::vector<float> dyv(static_cast<std::size_t>(out_shape.numel()));
  for (auto& v : dyv) v = nd(gen);
  Tensor dy = Tensor::from(dyv, out_shape);

  auto loss = [&]() {
    CView out = net.forward(x);
    std::vector<float> h(static_cast<std::size_t>(out.numel()));
    copy(out, View(h.data(), out.shape(), Device::cpu()));
    double l = 0;
    for (std::size_t i = 0; i < h.size(); ++i) l += static_cast<double>(dyv[i]) * h[i];
    return l;
  };
  loss();
  CView dx_view = net.backward(dy);
  const std::vector<float> dx = Tensor::from(std::vector<float>(dx_view.data(), dx_view.data() + dx_view.numel()),
                                             dx_view.shape())
                                    .to_vector();
  struct Grad {
    std::string name;
    std::vector<float> g;
    Parameter* p;
  };
  std::vector<Grad> grads;
  net.visit_parameters("", [&](const std::string& n, Parameter& p) { grads.push_back({n, p.grad.to_vector(), &p}); });

  // Central differences at two steps; where they disagree the step crossed a ReLU kink (or a
  // max-pool switch) and the point is skipped. At least 80 % of the points must be checkable.
  int checked = 0, skipped = 0;
  auto fd = [&](float& slot, float h) {
    const float saved = slot;
    slot = saved + h;
    const double lp = loss();
    slot = saved - h;
    const double lm = loss();
    slot = saved;
    return (lp - lm) / (2.0 * static_cast<double>(h));
  };
  auto check = [&](float& slot, double analytic, const std::string& what) {
    const double n1 = fd(slot, 4e-3f), n2 = fd(slot, 2e-3f);
    if (std::fabs(n1 - n2) > tol * (1.0 + std::fabs(n2))) {
      ++skipped;
      return;
    }
    ++checked;
    EXPECT_LE(std::fabs(analytic - n2), tol * (1.0 + std::fabs(n2))) << what << ": " << analytic << " vs " << n2;
  };
  std::uniform_int_distribution<std::int64_t> pick_x(0, x.numel() - 1);
  for (int s = 0; s < samples; ++s) {
    const auto i = pick_x(gen);
    check(x.data()[i], dx[static_cast<std::size_t>(i)], "input " + std::to_string(i));
  }
  for (auto& g : grads) {
    std::uniform_int_distribution<std::int64_t> pick(0, g.p->value.numel() - 1);
    for (int s = 0; s < std::min<int>(samples, static_cast<int>(g.p->value.numel())); ++s) {
      const auto i = pick(gen);
      check(g.p->value.data()[i], g.g[static_cast<std::size_t>(i)], g.name + "[" + std::to_string(i) + "]");
    }
  }
  EXPECT_GE(checked, 4 * skipped) << checked << " points checked, " << skipped << " skipped at kinks";
}

TEST(LayerGradients, ConvBatchNormReluPoolLinear) {
  Sequential<Conv2d, BatchNorm2d, ReLU, MaxPool2d, Conv2d, GlobalAvgPool, Flatten, Linear> net(
      Conv2d(5, 3, 1, 1, true), BatchNorm2d(), ReLU(), MaxPool2d(3, 2, 1), Conv2d(4, 3, 2, 1), GlobalAvgPool(),
      Flatten(), Linear(3));
  const Shape in{3, 2, 7, 7};
  net.setup(in, Device::cpu());
  initialize(net, 1);
  check_network_gradients(net, in, 12, 5e-3);
}

// A whole network has too many ReLU kinks and tiny batch-statistics groups for element-wise finite
// differences; the derivative along one random direction (of the input, optionally also of every
// parameter) averages them out: (L(θ + h v) - L(θ - h v)) / 2h must equal <∇L, v>. Whole random
// networks stay rough at the scale float differences can resolve, so for them only the input
// direction is checked; every block's parameter gradients are checked element by element above
// and below.
template <class Net>
void check_directional_derivative(Net& net, const Shape& in_shape, double tol, bool include_parameters, float h) {
  std::mt19937 gen(5);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  auto random_vector = [&](std::int64_t n) {
    std::vector<float> v(static_cast<std::size_t>(n));
    for (auto& e : v) e = nd(gen);
    return v;
  };
  Tensor x = Tensor::from(random_vector(in_shape.numel()), in_shape);
  const Shape out_shape = net.output_shape(in_shape);
  const auto dy = random_vector(out_shape.numel());
  auto loss = [&]() {
    CView out = net.forward(x);
    double l = 0;
    for (std::int64_t i = 0; i < out.numel(); ++i) l += static_cast<double>(dy[i]) * out.data()[i];
    return l;
  };
  loss();
  Tensor dy_t = Tensor::from(dy, out_shape);
  CView dx = net.backward(dy_t);
  const auto vx = random_vector(x.numel());
  double analytic = 0;
  for (std::int64_t i = 0; i < x.numel(); ++i) analytic += static_cast<double>(dx.data()[i]) * vx[i];
  std::vector<std::pair<Parameter*, std::vector<float>>> dirs;
  if (include_parameters) net.visit_parameters("", [&](const std::string&, Parameter& p) {
    dirs.emplace_back(&p, random_vector(p.value.numel()));
    for (std::int64_t i = 0; i < p.value.numel(); ++i)
      analytic += static_cast<double>(p.grad.data()[i]) * dirs.back().second[i];
  });
  auto shift = [&](float h) {
    for (std::int64_t i = 0; i < x.numel(); ++i) x.data()[i] += h * vx[i];
    for (auto& [p, v] : dirs)
      for (std::int64_t i = 0; i < p->value.numel(); ++i) p->value.data()[i] += h * v[i];
  };
  shift(h);
  const double lp = loss();
  shift(-2 * h);
  const double lm = loss();
  shift(h);
  const double numeric = (lp - lm) / (2.0 * h);
  EXPECT_NEAR(analytic, numeric, tol * std::fabs(numeric)) << "directional derivative";
  EXPECT_GT(std::fabs(numeric), 1e-3);
}

TEST(LayerGradients, TinyResNetEndToEnd) {
  ResNet18 net(ResNetConfig{.num_classes = 3, .width = 0.125f, .small_stem = true});
  const Shape in{4, 3, 16, 16};
  net.setup(in, Device::cpu());
  initialize(net, 2);
  check_directional_derivative(net, in, 2e-2, false, 1e-4f);
}

TEST(LayerGradients, BasicBlockIdentityAllParameters) {
  ResNetConfig cfg{.width = 0.125f};
  BasicBlock block = models::detail::make_block<BasicBlock>(8, 8, 1, cfg);
  const Shape in{4, 8, 8, 8};
  block.setup(in, Device::cpu());
  initialize(block, 2);
  check_directional_derivative(block, in, 1e-2, true, 1e-2f);
}

TEST(LayerGradients, BottleneckWithProjection) {
  ResNetConfig cfg{.bn_eps = 1e-5f};
  Bottleneck block = models::detail::make_block<Bottleneck>(6, 2, 2, cfg);
  const Shape in{2, 6, 5, 5};
  EXPECT_EQ(block.setup(in, Device::cpu()), (Shape{2, 8, 3, 3}));
  initialize(block, 3);
  check_network_gradients(block, in, 10, 5e-3);
}

TEST(BatchNormLayer, EvalUsesRunningStatistics) {
  BatchNorm2d bn;
  const Shape in{4, 2, 3, 3};
  bn.setup(in, Device::cpu());
  InitStream init(0);
  bn.initialize(init);
  Tensor x = Tensor::from(std::vector<float>(72, 3.0f), in);
  bn.set_training(false);
  // Running mean 0, var 1: eval output = x / sqrt(1 + eps).
  EXPECT_NEAR(bn.forward(x).data()[0], 3.0 / std::sqrt(1.0 + 1e-5), 1e-6);
  bn.set_training(true);
  EXPECT_NEAR(bn.forward(x).data()[0], 0.0, 1e-6);  // batch statistics: constant input -> 0
  EXPECT_THROW(
      {
        bn.set_training(false);
        bn.backward(x);
      },
      Error);
}

TEST(Layers, WrongInputChannelsIsAClearError) {
  Conv2d conv(4, 3, 1, 1);
  conv.setup(Shape{1, 3, 8, 8}, Device::cpu());
  Tensor x(Shape{1, 5, 8, 8});
  try {
    conv.forward(x);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("(1, 5, 8, 8)"), std::string::npos) << e.what();
  }
}

TEST(State, RoundTripGivesIdenticalOutputs) {
  ResNetConfig cfg{.num_classes = 4, .width = 0.125f, .small_stem = true};
  ResNet18 a(cfg), b(cfg);
  const Shape in{2, 3, 16, 16};
  a.setup(in, Device::cpu());
  b.setup(in, Device::cpu());
  initialize(a, 10);
  initialize(b, 11);
  set_training(a, false);
  set_training(b, false);
  Tensor x = full(in, 0.5f);
  CView oa = a.forward(x);
  std::vector<float> va(oa.data(), oa.data() + oa.numel());
  LoadReport r = load_state(b, state_dict(a));
  EXPECT_TRUE(r.missing.empty() && r.unexpected.empty() && r.mismatched.empty()) << r.str();
  CView ob = b.forward(x);
  EXPECT_EQ(std::vector<float>(ob.data(), ob.data() + ob.numel()), va);
}

TEST(State, StrictLoadListsEveryProblemAndLeavesTheNetworkUntouched) {
  ResNetConfig cfg{.num_classes = 4, .width = 0.125f, .small_stem = true};
  ResNet18 net(cfg);
  net.setup(Shape{1, 3, 16, 16}, Device::cpu());
  initialize(net, 1);
  StateDict d = state_dict(net);
  const auto before = d.at("conv1.weight").values;
  d.erase("layer1.0.bn1.running_var");
  d["extra.weight"] = HostTensor{Shape{2}, {1, 2}};
  d["fc.weight"] = HostTensor{Shape{7, 64}, std::vector<float>(7 * 64, 0.0f)};
  d["conv1.weight"].values.assign(d["conv1.weight"].values.size(), 9.0f);
  try {
    load_state(net, d, {.mode = LoadMode::strict, .source = "w.safetensors"});
    FAIL() << "no error";
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("w.safetensors"), std::string::npos) << m;
    EXPECT_NE(m.find("layer1.0.bn1.running_var"), std::string::npos) << m;
    EXPECT_NE(m.find("extra.weight"), std::string::npos) << m;
    EXPECT_NE(m.find("fc.weight: file (7, 64) vs network (4, 64)"), std::string::npos) << m;
  }
  EXPECT_EQ(state_dict(net).at("conv1.weight").values, before);
}

TEST(State, PartialLoadTakesTheBackboneOnly) {
  ResNetConfig pre{.num_classes = 1000, .width = 0.125f, .small_stem = true};
  ResNetConfig fine{.num_classes = 5, .width = 0.125f, .small_stem = true};
  ContrastiveModel<ResNet18Backbone> simclr(pre, 32, 16);
  ResNet18 classifier(fine);
  simclr.setup(Shape{1, 3, 16, 16}, Device::cpu());
  classifier.setup(Shape{1, 3, 16, 16}, Device::cpu());
  initialize(simclr, 1);
  initialize(classifier, 2);
  StateDict d = state_dict(simclr);
  EXPECT_TRUE(d.count("head.0.weight") && d.count("head.2.bias"));
  EXPECT_THROW(load_state(classifier, d), Error);  // strict: head.* unexpected, fc.* missing
  LoadReport r = load_state(classifier, d, {.mode = LoadMode::partial});
  EXPECT_EQ(r.missing, (std::vector<std::string>{"fc.weight", "fc.bias"}));
  EXPECT_EQ(r.unexpected.size(), 4u);
  EXPECT_EQ(state_dict(classifier).at("layer4.1.conv2.weight").values, d.at("layer4.1.conv2.weight").values);
  // Prefixed keys (e.g. MoCo's module.encoder_q.) load after stripping the prefix.
  StateDict prefixed;
  for (auto& [k, v] : d) prefixed["module.encoder_q." + k] = v;
  EXPECT_THROW(load_state(classifier, prefixed, {.mode = LoadMode::partial}), Error);  // nothing matches
  LoadReport r2 = load_state(classifier, prefixed, {.mode = LoadMode::partial, .strip_prefix = "module.encoder_q."});
  EXPECT_EQ(r2.loaded.size(), r.loaded.size());
}

TEST(Visit, AtAndVisitLayersReachEveryLayer) {
  ResNet18 net(ResNetConfig{.num_classes = 2, .width = 0.125f});
  int convs = 0, bns = 0;
  std::vector<std::string> paths;
  visit_layers(net, [&](const std::string& path, auto& layer) {
    using L = std::remove_cvref_t<decltype(layer)>;
    if constexpr (std::is_base_of_v<Conv2d, L>) {
      ++convs;
      paths.push_back(path);
    }
    if constexpr (std::is_base_of_v<BatchNorm2d, L>) ++bns;
  });
  EXPECT_EQ(convs, 20);  // 1 stem + 16 in blocks + 3 projections
  EXPECT_EQ(bns, 20);
  EXPECT_EQ(paths.front(), "conv1");
  EXPECT_EQ(paths.back(), "layer4.1.conv2");
  EXPECT_EQ(at<1>(net).kind_name(), "Linear");
  EXPECT_EQ(net.fc().kind_name(), "Linear");
}

}  // namespace
}  // namespace fovea
