// tests/test_gradcam.cpp: gradient capture at inner layers (nn/tap.hpp's gradient callback and
// composite sites) and Grad-CAM (analysis/gradcam.hpp) on a tiny ResNet-18 in evaluation mode:
// composite sites in network order, a leaf's captured output gradient gives the input gradient
// through the convolution's transpose, the gradient at layer4 and the CAM there have closed forms
// (global average pool + fc), layer4 and its last block give the same map, the bilinear upsampling
// matches PyTorch's align_corners=False, and bad layer names are clear errors.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "fovea/analysis/gradcam.hpp"
#include "fovea/fovea.hpp"
#include "fovea/models/resnet.hpp"
#include "fovea/nn/summary.hpp"
#include "test_nets.hpp"

namespace fovea {
namespace {

using namespace fovea::nn;
using namespace fovea::models;
using namespace fovea::analysis;

std::vector<float> host(CView v) {
  std::vector<float> out(static_cast<std::size_t>(v.numel()));
  copy(v, View(out.data(), v.shape(), Device::cpu()));
  return out;
}

// ResNet-18 at width 0.125 with the small stem on 32 px: layer4 is (N, 64, 4, 4). Random batch-norm
// statistics so evaluation mode is not the identity.
struct Tiny {
  ResNet18 net{ResNetConfig{.num_classes = 5, .width = 0.125f, .small_stem = true}};
  Tensor images{Shape{2, 3, 32, 32}};
  std::vector<int> targets{1, 4};
  Tiny() {
    net.setup(images.shape(), Device::cpu());
    nn::initialize(net, 5);
    testing::randomize_batch_norm(net, 300);
    random_normal(images, RandomKey{.seed = 41}, 0.0f, 1.0f);
    net.set_training(false);
  }
};

TEST(TapGradients, CompositeSitesInNetworkOrder) {
  Tiny t;
  std::vector<std::string> composites, all;
  for (const TapSite& s : tap_sites(t.net, true)) {
    all.push_back(s.path);
    if (s.composite) composites.push_back(s.path);
  }
  std::vector<std::string> want{"maxpool"};  // Named<"maxpool", Optional<MaxPool2d>> (disabled here)
  for (int stage = 1; stage <= 4; ++stage) {
    const std::string l = "layer" + std::to_string(stage);
    want.push_back(l);
    for (int b = 0; b < 2; ++b) {
      want.push_back(l + "." + std::to_string(b));
      want.push_back(l + "." + std::to_string(b) + ".downsample");
    }
  }
  EXPECT_EQ(composites, want);
  // Leaves keep their order and paths; each composite comes before what it contains.
  std::vector<std::string> leaves;
  for (const TapSite& s : tap_sites(t.net)) leaves.push_back(s.path);
  std::vector<std::string> leaves_of_all;
  for (const TapSite& s : tap_sites(t.net, true))
    if (!s.composite) leaves_of_all.push_back(s.path);
  EXPECT_EQ(leaves, leaves_of_all);
  const auto pos = [&](const std::string& p) { return std::find(all.begin(), all.end(), p) - all.begin(); };
  EXPECT_LT(pos("layer2"), pos("layer2.0"));
  EXPECT_LT(pos("layer2.0"), pos("layer2.0.conv1"));
  EXPECT_LT(pos("layer2.0.bn2"), pos("layer2.0.downsample"));
  EXPECT_LT(pos("layer2.0.downsample"), pos("layer2.0.downsample.0"));
}

// The gradient captured before conv1's backward, pushed through conv1's transpose, is the input
// gradient the network returns: the callback sees d logit / d (conv1 output).
TEST(TapGradients, LeafOutputGradientGivesTheInputGradient) {
  Tiny t;
  nn::set_input_grad(t.net, true);
  std::vector<float> dy;
  Shape dy_shape;
  int calls = 0;
  ActivationTap tap(TapCallback{}, TapOptions{.select = [](const TapSite& s) { return s.path == "conv1"; },
                                              .on_gradient =
                                                  [&](const TapSite& s, CView g) {
                                                    EXPECT_EQ(s.path, "conv1");
                                                    dy = host(g);
                                                    dy_shape = g.shape();
                                                    ++calls;
                                                  }});
  ASSERT_EQ(tap.attach(t.net), 1u);
  const CView out = t.net.forward(t.images);
  Tensor dlogits = zeros(out.shape());
  dlogits.data()[1] = 1.0f;
  dlogits.data()[5 + 4] = -2.0f;
  const std::vector<float> dx = host(t.net.backward(dlogits));
  ASSERT_EQ(calls, 1);
  ASSERT_EQ(dy_shape, (Shape{2, 8, 32, 32}));
  auto& conv1 = t.net.get<0>().get<0>();
  Tensor want(t.images.shape());
  conv2d_backward_data(Tensor::from(dy, dy_shape), conv1.weight().value, want, conv1.params());
  double max_abs = 0, max_diff = 0;
  for (std::size_t i = 0; i < dx.size(); ++i) {
    max_abs = std::max(max_abs, std::fabs(double(dx[i])));
    max_diff = std::max(max_diff, std::fabs(double(dx[i]) - want.data()[i]));
  }
  EXPECT_GT(max_abs, 0.0);
  EXPECT_LE(max_diff, 1e-6 * max_abs);
}

// At layer4 (the input of the global average pool) the gradient of logit t is fc.weight[t, c] / (h w)
// at every position, and the CAM is relu(sum_c fc.weight[t, c] A[c] / (h w)).
TEST(GradCam, Layer4HasItsClosedForm) {
  Tiny t;
  std::vector<float> a, g;
  Shape a_shape;
  ActivationTap tap(
      [&](const TapSite&, CView, CView y) {
        a = host(y);
        a_shape = y.shape();
      },
      TapOptions{.select = [](const TapSite& s) { return s.path == "layer4"; },
                 .on_gradient = [&](const TapSite&, CView dy) { g = host(dy); },
                 .composites = true});
  ASSERT_EQ(tap.attach(t.net), 1u);
  nn::set_input_grad(t.net, true);
  const CView out = t.net.forward(t.images);
  const std::vector<float> logits = host(out);
  Tensor dlogits = zeros(out.shape());
  dlogits.data()[t.targets[0]] = 1.0f;
  dlogits.data()[5 + t.targets[1]] = 1.0f;
  t.net.backward(dlogits);
  ASSERT_EQ(a_shape, (Shape{2, 64, 4, 4}));
  const std::vector<float> w = host(t.net.get<1>().weight().value);  // fc (5, 64)
  const std::int64_t hw = 16;
  for (std::int64_t n = 0; n < 2; ++n)
    for (std::int64_t c = 0; c < 64; ++c)
      for (std::int64_t p = 0; p < hw; ++p) {
        const double want =
            w[static_cast<std::size_t>(t.targets[static_cast<std::size_t>(n)] * 64 + c)] / 16.0;
        ASSERT_NEAR(g[static_cast<std::size_t>((n * 64 + c) * hw + p)], want, 1e-7) << n << " " << c;
      }
  tap.detach();

  const AttributionMaps m = grad_cam(t.net, t.images, t.targets);
  ASSERT_EQ(m.channels, 1);
  ASSERT_EQ(m.raw.size(), 2u * 32 * 32);
  for (std::int64_t n = 0; n < 2; ++n) {
    const int target = t.targets[static_cast<std::size_t>(n)];
    EXPECT_NEAR(m.target_logit[static_cast<std::size_t>(n)], logits[static_cast<std::size_t>(n * 5 + target)],
                1e-5);
    std::vector<double> cam(16);
    for (std::int64_t p = 0; p < hw; ++p) {
      double s = 0;
      for (std::int64_t c = 0; c < 64; ++c)
        s += w[static_cast<std::size_t>(target * 64 + c)] / 16.0 *
             a[static_cast<std::size_t>((n * 64 + c) * hw + p)];
      cam[static_cast<std::size_t>(p)] = std::max(s, 0.0);
    }
    std::vector<float> up(32 * 32);
    upsample_bilinear(cam, 4, 4, up.data(), 32, 32);
    double max_abs = 0;
    for (float v : up) max_abs = std::max(max_abs, double(v));
    ASSERT_GT(max_abs, 0.0) << "an all-zero CAM would make this test vacuous";
    for (std::size_t i = 0; i < up.size(); ++i) {
      EXPECT_NEAR(m.raw[static_cast<std::size_t>(n) * up.size() + i], up[i], 1e-5 * max_abs) << n << " " << i;
      EXPECT_EQ(m.heatmap[static_cast<std::size_t>(n) * up.size() + i],
                std::fabs(m.raw[static_cast<std::size_t>(n) * up.size() + i]));
    }
  }
  // Grad-CAM leaves the input gradient on for the other methods.
  nn::set_input_grad(t.net, true);
  const CView again = t.net.forward(t.images);
  EXPECT_NE(t.net.backward(zeros(again.shape())).data(), nullptr);
}

TEST(GradCam, StageAndItsLastBlockAgreeAndBatchingDoesNotMatter) {
  Tiny t;
  const AttributionMaps stage = grad_cam(t.net, t.images, t.targets, {.layer = "layer3"});
  const AttributionMaps block = grad_cam(t.net, t.images, t.targets, {.layer = "layer3.1", .batch = 1});
  ASSERT_EQ(stage.raw.size(), block.raw.size());
  double max_abs = 0;
  for (float v : stage.raw) max_abs = std::max(max_abs, double(v));
  EXPECT_GT(max_abs, 0.0);
  for (std::size_t i = 0; i < stage.raw.size(); ++i)
    EXPECT_NEAR(stage.raw[i], block.raw[i], 1e-5 * max_abs) << i;
  // Without the ReLU the map is signed, and its positive part is the map with the ReLU.
  const AttributionMaps signed_map = grad_cam(t.net, t.images, t.targets, {.layer = "layer3", .relu = false});
  bool negative = false;
  for (float v : signed_map.raw) negative |= v < 0.0f;
  EXPECT_TRUE(negative);
  // A leaf works too, and a different layer gives a different map.
  const AttributionMaps leaf = grad_cam(t.net, t.images, t.targets, {.layer = "layer2.1.conv2"});
  double diff = 0;
  for (std::size_t i = 0; i < leaf.raw.size(); ++i) diff += std::fabs(leaf.raw[i] - stage.raw[i]);
  EXPECT_GT(diff, 0.0);
}

TEST(GradCam, UpsamplingMatchesPytorchBilinear) {
  // torch.nn.functional.interpolate(torch.tensor([[[[1., 2.], [3., 4.]]]]), size=(4, 4),
  // mode="bilinear", align_corners=False)
  const std::vector<double> src{1, 2, 3, 4};
  std::vector<float> out(16);
  upsample_bilinear(src, 2, 2, out.data(), 4, 4);
  const float want[16] = {1.0f, 1.25f, 1.75f, 2.0f, 1.5f, 1.75f, 2.25f, 2.5f,
                          2.5f, 2.75f, 3.25f, 3.5f, 3.0f, 3.25f, 3.75f, 4.0f};
  for (int i = 0; i < 16; ++i) EXPECT_FLOAT_EQ(out[static_cast<std::size_t>(i)], want[i]) << i;
  // 3 -> 2 (downsampling): centres at 0.25 and 1.75 of the source.
  const std::vector<double> row{0, 10, 20};
  std::vector<float> down(2);
  upsample_bilinear(row, 1, 3, down.data(), 1, 2);
  EXPECT_FLOAT_EQ(down[0], 2.5f);
  EXPECT_FLOAT_EQ(down[1], 17.5f);
}

TEST(GradCam, BadLayersAreClearErrors) {
  Tiny t;
  try {
    grad_cam(t.net, t.images, t.targets, {.layer = "layer5"});
    FAIL() << "no error";
  } catch (const Error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("no layer 'layer5'"), std::string::npos) << what;
    EXPECT_NE(what.find("layer4"), std::string::npos) << what;
  }
  // fc's output is (N, K): not a feature map.
  EXPECT_THROW(grad_cam(t.net, t.images, t.targets, {.layer = "fc"}), Error);
  // The tap is gone after an error: another capture can attach.
  EXPECT_NO_THROW(grad_cam(t.net, t.images, t.targets));
}

}  // namespace
}  // namespace fovea
