// tests/cuda/test_attribution_cuda.cpp: attribution maps (analysis/attribution.hpp) of a tiny
// ResNet-18 on cuda:0 against the same network on the CPU: the gradient, integrated gradients and
// SmoothGrad (their inputs built and their sums accumulated on the GPU),
// in fp32 (tight) and with TF32 (loose), plus BatchNorm2d's evaluation backward on the GPU and the
// run-to-run determinism of the maps with deterministic cuDNN; Grad-CAM (the gradient tap at layer3
// and layer4) and LRP (its convolutions and element-wise rules as fovea ops on the GPU) in fp32. Skips
// without a CUDA device.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "fovea/analysis/attribution.hpp"
#include "fovea/analysis/gradcam.hpp"
#include "fovea/analysis/lrp.hpp"
#include "fovea/fovea.hpp"
#include "fovea/models/resnet.hpp"
#include "fovea/nn/state.hpp"
#include "fovea/nn/summary.hpp"
#include "fovea/ops/blas.hpp"
#include "test_nets.hpp"

namespace fovea {
namespace {

using namespace fovea::nn;
using namespace fovea::models;
using namespace fovea::analysis;

#define FOVEA_REQUIRE_GPU() \
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device: " << cuda_unavailable_reason()

const Shape kImages{3, 3, 16, 16};

// max |got - want| / max |want|.
double relative_to_max(const std::vector<float>& got, const std::vector<float>& want) {
  EXPECT_EQ(got.size(), want.size());
  double largest = 0, worst = 0;
  for (std::size_t i = 0; i < std::min(got.size(), want.size()); ++i) {
    largest = std::max(largest, std::fabs(double(want[i])));
    worst = std::max(worst, std::fabs(double(got[i]) - want[i]));
  }
  return largest > 0 ? worst / largest : worst;
}

// A tiny ResNet-18 with random BN statistics on `device`; the GPU copy loads the CPU one's state.
struct Nets {
  ResNet18 cpu{ResNetConfig{.num_classes = 5, .width = 0.125f, .small_stem = true}};
  ResNet18 gpu{ResNetConfig{.num_classes = 5, .width = 0.125f, .small_stem = true}};
  Tensor images, images_gpu;
  std::vector<int> targets{1, 0, 4};

  Nets() {
    cpu.setup(kImages, Device::cpu());
    nn::initialize(cpu, 21);
    testing::randomize_batch_norm(cpu, 100);
    gpu.setup(kImages, Device::cuda(0));
    load_state(gpu, state_dict(cpu));
    images = Tensor(kImages);
    random_normal(images, RandomKey{.seed = 31}, 0.0f, 1.0f);
    images_gpu = images.to(Device::cuda(0));
  }
};

TEST(CudaAttribution, BatchNormEvalBackwardMatchesCpu) {
  FOVEA_REQUIRE_GPU();
  const Shape in{4, 3, 5, 7};
  BatchNorm2d a, b;
  a.setup(in, Device::cpu());
  b.setup(in, Device::cuda(0));
  InitStream ia(0), ib(0);
  a.initialize(ia);
  b.initialize(ib);
  a.set_training(false);
  b.set_training(false);
  Tensor x(in), dy(in);
  random_normal(x, RandomKey{.seed = 1}, 0.0f, 1.0f);
  random_normal(dy, RandomKey{.seed = 2}, 0.0f, 1.0f);
  const Tensor xg = x.to(Device::cuda(0)), dyg = dy.to(Device::cuda(0));
  a.forward(x);
  b.forward(xg);
  CView da = a.backward(dy);
  CView db = b.backward(dyg);
  std::vector<float> ha(static_cast<std::size_t>(in.numel())), hb(ha.size());
  copy(da, View(ha.data(), in, Device::cpu()));
  copy(db, View(hb.data(), in, Device::cpu()));
  EXPECT_LT(relative_to_max(hb, ha), 1e-6);
}

// fp32 on the GPU (no TF32): the maps agree with the CPU's to float rounding through ~20 layers;
// with TF32 (10-bit mantissa inputs to every convolution and GEMM) to a few percent of the largest
// entry.
TEST(CudaAttribution, GradientAndIntegratedGradientsMatchCpu) {
  FOVEA_REQUIRE_GPU();
  Nets n;
  const AttributionMaps gc = gradient(n.cpu, n.images, n.targets);
  const IntegratedGradientsOptions ig{
      .steps = 16, .rule = IgRule::gauss_legendre, .baseline = IgBaseline::black, .batch = 7};
  const AttributionMaps ic = integrated_gradients(n.cpu, n.images, n.targets, ig);
  const SmoothGradOptions sg{.samples = 9, .seed = 4, .batch = 4};
  const AttributionMaps sc = smoothgrad(n.cpu, n.images, n.targets, sg);
  struct Case {
    bool tf32;
    double tol;
  };
  for (const Case c : {Case{false, 1e-3}, Case{true, 5e-2}}) {
    ScopedMathSettings settings(MathSettings{.allow_tf32 = c.tf32, .deterministic = true});
    const AttributionMaps gg = gradient(n.gpu, n.images_gpu, n.targets);
    const AttributionMaps ig_gpu = integrated_gradients(n.gpu, n.images_gpu, n.targets, ig);
    EXPECT_LT(relative_to_max(gg.raw, gc.raw), c.tol) << "gradient, tf32 " << c.tf32;
    EXPECT_LT(relative_to_max(gg.heatmap, gc.heatmap), c.tol) << "gradient heatmap, tf32 " << c.tf32;
    EXPECT_LT(relative_to_max(ig_gpu.raw, ic.raw), c.tol) << "integrated gradients, tf32 " << c.tf32;
    // The noisy copies are drawn on the GPU (the same Philox stream and rounding as the CPU's).
    const AttributionMaps sg_gpu = smoothgrad(n.gpu, n.images_gpu, n.targets, sg);
    EXPECT_LT(relative_to_max(sg_gpu.raw, sc.raw), c.tol) << "smoothgrad, tf32 " << c.tf32;
    for (std::size_t i = 0; i < 3; ++i) {
      EXPECT_NEAR(ig_gpu.target_logit[i], ic.target_logit[i], c.tol * (1.0 + std::fabs(ic.target_logit[i])));
      EXPECT_NEAR(ig_gpu.baseline_logit[i], ic.baseline_logit[i],
                  c.tol * (1.0 + std::fabs(ic.baseline_logit[i])));
    }
    // Deterministic cuDNN: a second run gives the same bits.
    EXPECT_EQ(integrated_gradients(n.gpu, n.images_gpu, n.targets, ig).raw, ig_gpu.raw) << "tf32 " << c.tf32;
  }
}

TEST(CudaAttribution, GradCamAndLrpMatchCpu) {
  FOVEA_REQUIRE_GPU();
  Nets n;
  ScopedMathSettings settings(MathSettings{.allow_tf32 = false, .deterministic = true});
  for (const char* layer : {"layer3", "layer4"}) {
    const AttributionMaps c = grad_cam(n.cpu, n.images, n.targets, {.layer = layer});
    const AttributionMaps g = grad_cam(n.gpu, n.images_gpu, n.targets, {.layer = layer});
    EXPECT_LT(relative_to_max(g.raw, c.raw), 1e-4) << "grad_cam " << layer;
  }
  // Every rule and input rule; batch 2 of 3 images: the second chunk is smaller (the box bounds are
  // rebuilt, the prepared weights reused).
  for (const LrpRule rule : {LrpRule::plus, LrpRule::gamma, LrpRule::epsilon}) {
    for (const LrpInputRule input : {LrpInputRule::box, LrpInputRule::flat, LrpInputRule::epsilon}) {
      const LrpOptions opt{.rule = rule, .input = input, .epsilon = 1e-2f, .batch = 2};
      const AttributionMaps c = lrp(n.cpu, n.images, n.targets, opt);
      const AttributionMaps g = lrp(n.gpu, n.images_gpu, n.targets, opt);
      EXPECT_LT(relative_to_max(g.raw, c.raw), 1e-3) << "lrp " << to_string(rule) << " " << to_string(input);
      EXPECT_EQ(lrp(n.gpu, n.images_gpu, n.targets, opt).raw, g.raw) << "lrp run to run";
    }
  }
}

}  // namespace
}  // namespace fovea
