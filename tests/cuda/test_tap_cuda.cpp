// tests/cuda/test_tap_cuda.cpp: activation capture (nn/tap.hpp) on a CUDA network: the callback gets
// device views, copied to the host here, equal to the CPU network's within fp32 rounding. Skips
// without a CUDA device.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "fovea/fovea.hpp"
#include "fovea/nn/state.hpp"
#include "tap_helpers.hpp"

namespace fovea {
namespace {

using namespace fovea::tap_test;

// On a GPU the callback gets device views (copied to the host here); fp32 (TF32 off) outputs agree
// with the CPU's to 1e-3 of each layer's largest value, and the captured fc output is the logits.
TEST(ActivationTap, CudaOutputsMatchTheCpu) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device: " << cuda_unavailable_reason();
  ScopedMathSettings fp32(MathSettings{.allow_tf32 = false, .deterministic = true});
  TinyNet cpu_net(Device::cpu()), gpu_net(Device::cuda(0));
  load_state(gpu_net.net, state_dict(cpu_net.net));  // the same weights and running statistics
  gpu_net.input = cpu_net.input.to(Device::cuda(0));
  const TapSelector select = kinds({LayerKind::conv, LayerKind::bn, LayerKind::linear});
  Recorder rc(select), rg(select);
  rc.tap.attach(cpu_net.net);
  rg.tap.attach(gpu_net.net);
  cpu_net.net.forward(cpu_net.input);
  const CView logits = gpu_net.net.forward(gpu_net.input);
  ASSERT_EQ(rc.seen.size(), rg.seen.size());
  for (std::size_t i = 0; i < rc.seen.size(); ++i) {
    const Captured &c = rc.seen[i], &g = rg.seen[i];
    EXPECT_EQ(c.site.path, g.site.path);
    EXPECT_EQ(c.shape, g.shape) << c.site.path;
    ASSERT_EQ(c.y.size(), g.y.size());
    double largest = 0, worst = 0;
    for (std::size_t j = 0; j < c.y.size(); ++j) {
      largest = std::max(largest, std::abs(static_cast<double>(c.y[j])));
      worst = std::max(worst, std::abs(static_cast<double>(c.y[j]) - g.y[j]));
    }
    EXPECT_LE(worst, 1e-3 * largest + 1e-6) << c.site.path << ": largest |y| " << largest;
  }
  EXPECT_EQ(rg.at("fc").y, host_copy(logits));
}

}  // namespace
}  // namespace fovea
