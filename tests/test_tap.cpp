// tests/test_tap.cpp: activation capture (nn/tap.hpp) on a tiny ResNet-18: the observed leaves are
// the conv / BN / linear layers in network order with their state-dict paths, the captured fc
// output is the logits, a captured conv output is the convolution of the captured values before it
// (BN outputs are captured before their ReLU), observing does not change the forward, selection
// and detaching work (cuda/test_tap_cuda.cpp: CUDA outputs copied to the host).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <string>
#include <vector>

#include "fovea/fovea.hpp"
#include "fovea/models/resnet.hpp"
#include "fovea/nn/state.hpp"
#include "fovea/nn/summary.hpp"
#include "fovea/nn/tap.hpp"
#include "tap_helpers.hpp"

namespace fovea {
namespace {

using namespace fovea::nn;
using namespace fovea::models;
using namespace fovea::tap_test;

// The conv, BN and linear paths of a ResNet-18 in torchvision's module order, written out.
std::vector<std::string> expected_resnet18_paths() {
  std::vector<std::string> p{"conv1", "bn1"};
  for (int stage = 1; stage <= 4; ++stage)
    for (int block = 0; block < 2; ++block) {
      const std::string b = "layer" + std::to_string(stage) + "." + std::to_string(block) + ".";
      for (const char* leaf : {"conv1", "bn1", "conv2", "bn2"}) p.push_back(b + leaf);
      if (stage > 1 && block == 0) {
        p.push_back(b + "downsample.0");
        p.push_back(b + "downsample.1");
      }
    }
  p.push_back("fc");
  return p;
}

TEST(ActivationTap, CapturesConvBnLinearInNetworkOrder) {
  TinyNet t;
  Recorder r(kinds({LayerKind::conv, LayerKind::bn, LayerKind::linear}));
  EXPECT_EQ(r.tap.attach(t.net), expected_resnet18_paths().size());
  t.net.forward(t.input);
  std::vector<std::string> paths;
  for (const auto& c : r.seen) paths.push_back(c.site.path);
  EXPECT_EQ(paths, expected_resnet18_paths());
  // The same order as the state dict's layer prefixes (parameters visited in network order).
  std::vector<std::string> prefixes;
  t.net.visit_parameters("", [&](const std::string& name, Parameter&) {
    const std::string prefix = name.substr(0, name.rfind('.'));
    if (prefixes.empty() || prefixes.back() != prefix) prefixes.push_back(prefix);
  });
  EXPECT_EQ(paths, prefixes);
  for (const auto& c : r.seen) {
    const std::string& p = c.site.path;
    const bool bn = p.find("bn") != std::string::npos || p.ends_with("downsample.1");
    const LayerKind want = p == "fc" ? LayerKind::linear : bn ? LayerKind::bn : LayerKind::conv;
    EXPECT_EQ(c.site.kind, want) << p;
    EXPECT_EQ(c.site.type, want == LayerKind::conv ? "Conv2d"
                           : want == LayerKind::bn ? "BatchNorm2d"
                                                   : "Linear");
  }
  EXPECT_EQ(r.at("conv1").shape, (Shape{3, 8, 16, 16}));
  EXPECT_EQ(r.at("layer1.0.bn2").shape, (Shape{3, 8, 8, 8}));
  EXPECT_EQ(r.at("layer4.1.conv2").shape, (Shape{3, 64, 1, 1}));
  EXPECT_EQ(r.at("fc").shape, (Shape{3, 5}));
  // Indices are positions among all leaves (ReLU, pooling, Flatten included), increasing.
  for (std::size_t i = 1; i < r.seen.size(); ++i) EXPECT_LT(r.seen[i - 1].site.index, r.seen[i].site.index);
}

TEST(ActivationTap, SitesListEveryLeafWithPaths) {
  TinyNet t;
  const std::vector<TapSite> sites = tap_sites(t.net);
  std::vector<std::string> selected;
  for (std::size_t i = 0; i < sites.size(); ++i) {
    EXPECT_EQ(sites[i].index, static_cast<int>(i));
    if (sites[i].kind != LayerKind::other) selected.push_back(sites[i].path);
  }
  EXPECT_EQ(selected, expected_resnet18_paths());
  std::map<std::string, std::string> type;
  for (const auto& s : sites) type[s.path] = s.type;
  EXPECT_EQ(type["maxpool"], "MaxPool2d");
  EXPECT_EQ(type["avgpool"], "GlobalAvgPool");
  EXPECT_EQ(type["layer1.0.2"], "ReLU");  // unnamed leaves go by their index in the Sequential
  EXPECT_EQ(type["layer2.0.downsample.1"], "BatchNorm2d");
  // 2 stem + relu + maxpool, 8 blocks of 5 leaves + 3 downsample pairs, avgpool, flatten, fc.
  EXPECT_EQ(sites.size(), 4u + 8u * 5u + 6u + 3u);
  // The small stem has no max-pool leaf (a disabled Optional).
  ResNet18 small(ResNetConfig{.num_classes = 2, .width = 0.125f, .small_stem = true});
  small.setup(Shape{1, 3, 16, 16}, Device::cpu());
  for (const auto& s : tap_sites(small)) EXPECT_NE(s.path, "maxpool");
}

TEST(ActivationTap, FcOutputIsTheLogitsAndObservingChangesNothing) {
  TinyNet t;
  const std::vector<float> plain = host_copy(t.net.forward(t.input));
  std::vector<float> observed;
  {
    Recorder r;  // every leaf, "other" ones included
    r.tap.attach(t.net);
    observed = host_copy(t.net.forward(t.input));
    EXPECT_EQ(r.seen.size(), tap_sites(t.net).size());
    EXPECT_EQ(r.at("fc").y, observed);  // bitwise
    EXPECT_EQ(r.at("fc").shape, (Shape{3, 5}));
    // Flatten's output is avgpool's, reshaped; fc's input is that.
    EXPECT_EQ(r.at("avgpool").y, r.at("fc").x);
  }
  EXPECT_EQ(observed, plain);                           // bitwise: the tap only reads
  EXPECT_EQ(host_copy(t.net.forward(t.input)), plain);  // the tap is gone: its hooks were cleared
}

// BN outputs are captured before the ReLU that follows them, and a conv's captured output is the
// convolution of relu(previous BN output): layer1.0.conv2(relu(layer1.0.bn1)).
TEST(ActivationTap, BnBeforeReluAndConvOfCapturedInput) {
  TinyNet t;
  Recorder r(kinds({LayerKind::conv, LayerKind::bn}));
  r.tap.attach(t.net);
  t.net.forward(t.input);
  const Captured& bn1 = r.at("layer1.0.bn1");
  const Captured& conv2 = r.at("layer1.0.conv2");
  EXPECT_LT(*std::min_element(bn1.y.begin(), bn1.y.end()), 0.0f) << "BN output looks rectified";
  std::vector<float> relu(bn1.y);
  for (float& v : relu) v = std::max(v, 0.0f);
  EXPECT_EQ(conv2.x, relu);                                   // the conv's input is relu(bn1), bitwise
  auto& conv = t.net.backbone().get<4>()[0].body().get<3>();  // layer1.0.conv2
  Tensor y(conv2.shape);
  conv2d_forward(CView(relu.data(), bn1.shape, Device::cpu()), conv.weight().value, CView(), y,
                 conv.params());
  EXPECT_EQ(y.to_vector(), conv2.y);
  // A block's last BN is captured before the residual add and its ReLU: it has negative values,
  // while the block output (the next block's first conv input) does not.
  const Captured& bn2 = r.at("layer1.0.bn2");
  EXPECT_LT(*std::min_element(bn2.y.begin(), bn2.y.end()), 0.0f);
  const Captured& next = r.at("layer1.1.conv1");
  EXPECT_GE(*std::min_element(next.x.begin(), next.x.end()), 0.0f);
  EXPECT_NE(next.x, bn2.y);
}

TEST(ActivationTap, SelectionDetachAndOneTapPerNetwork) {
  TinyNet t;
  Recorder only(
      TapSelector([](const TapSite& s) { return s.path == "layer3.0.downsample.1" || s.path == "fc"; }));
  EXPECT_EQ(only.tap.attach(t.net), 2u);
  EXPECT_EQ(only.tap.sites().size(), 2u);
  t.net.forward(t.input);
  ASSERT_EQ(only.seen.size(), 2u);
  EXPECT_EQ(only.seen[0].site.path, "layer3.0.downsample.1");
  EXPECT_EQ(only.seen[0].site.kind, LayerKind::bn);
  Recorder other;
  EXPECT_THROW(other.tap.attach(t.net), Error);  // one tap at a time
  EXPECT_FALSE(other.tap.attached());
  EXPECT_TRUE(other.tap.sites().empty());
  only.tap.detach();
  EXPECT_FALSE(only.tap.attached());
  t.net.forward(t.input);
  EXPECT_EQ(only.seen.size(), 2u);
  EXPECT_GT(other.tap.attach(t.net), 0u);  // free again
  t.net.forward(t.input);
  EXPECT_EQ(other.seen.size(), tap_sites(t.net).size());
  // Training mode is observed too (BN on batch statistics).
  other.seen.clear();
  nn::set_training(t.net, true);
  t.net.forward(t.input);
  EXPECT_EQ(other.seen.size(), tap_sites(t.net).size());
}

TEST(ActivationTap, MovedNetworkCarriesNoTap) {
  auto t = std::make_unique<TinyNet>();
  int calls = 0;
  ActivationTap tap([&](const TapSite&, CView, CView) { ++calls; });
  tap.attach(t->net);
  ResNet18 moved(std::move(t->net));
  moved.forward(t->input);
  EXPECT_EQ(calls, 0);
  tap.detach();
}

TEST(ActivationTap, CopyToHostFeatureRanges) {
  std::vector<float> v(2 * 3 * 2 * 2);
  for (std::size_t i = 0; i < v.size(); ++i) v[i] = static_cast<float>(i);
  const CView y(v.data(), Shape{2, 3, 2, 2}, Device::cpu());  // 12 features per sample
  std::vector<float> dst(2 * 5, -1.0f);
  copy_to_host(y, 3, 7, dst.data(), 5);
  EXPECT_EQ(dst, (std::vector<float>{3, 4, 5, 6, -1, 15, 16, 17, 18, -1}));
  EXPECT_THROW(copy_to_host(y, 3, 13, dst.data(), 10), Error);
  if (!cuda_available()) return;
  const Tensor g = Tensor::from(v, y.shape(), Device::cuda(0));
  Tensor staging;
  std::fill(dst.begin(), dst.end(), -1.0f);
  copy_to_host(g, 3, 7, dst.data(), 5, &staging);
  EXPECT_EQ(dst, (std::vector<float>{3, 4, 5, 6, -1, 15, 16, 17, 18, -1}));
  std::vector<float> all(v.size());
  copy_to_host(g, 0, 12, all.data(), 12);
  EXPECT_EQ(all, v);
}

}  // namespace
}  // namespace fovea
