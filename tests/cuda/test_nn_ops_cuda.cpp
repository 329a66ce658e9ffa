// tests/cuda/test_nn_ops_cuda.cpp: batch norm, pooling and softmax CUDA twins beyond the harness
// (their cuda-mode cases run from test_ops_cuda.cpp): large-channel precision, running statistics,
// ties and eval mode on the GPU. Skips without a CUDA device.
#include <cmath>
#include <limits>

#include "cases/batch_norm.hpp"
#include "cases/pool.hpp"
#include "cases/softmax.hpp"
#include "op_cases.hpp"

namespace fovea::testing {
namespace {

#define FOVEA_REQUIRE_GPU() \
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device: " << cuda_unavailable_reason()

// Channels of 800 K values with mean 100 and std 1: the Welford statistics must match the CPU's
// double two-pass ones, and so must the outputs and gradients.
TEST(CudaBatchNorm, LargeChannelsWithOffsetMeanMatchCpu) {
  FOVEA_REQUIRE_GPU();
  const Shape s{64, 2, 112, 112};
  auto v = random_values(s.numel(), InputKind::normal, 11);
  for (auto& e : v) e = 100.0f + e;
  Tensor x = Tensor::from(v, s), dy = Tensor::from(random_values(s.numel(), InputKind::normal, 12), s);
  Tensor g = Tensor::from({1.5f, 0.5f}, {2}), b = Tensor::from({0.1f, -0.2f}, {2});
  const Device gpu = Device::cuda(0);
  Tensor xg = x.to(gpu), dyg = dy.to(gpu), gg = g.to(gpu), bg = b.to(gpu);
  Tensor rm = zeros({2}), rv = full({2}, 1.0f), m({2}), is({2}), y(s), dx(s), dgm({2}), dbt({2});
  Tensor rmg = zeros({2}, gpu), rvg = full({2}, 1.0f, gpu), mg({2}, gpu), isg({2}, gpu), yg(s, gpu), dxg(s, gpu),
         dgmg({2}, gpu), dbtg({2}, gpu);
  batch_norm_forward_training(x, g, b, rm, rv, 0.1f, 1e-5f, y, m, is);
  batch_norm_forward_training(xg, gg, bg, rmg, rvg, 0.1f, 1e-5f, yg, mg, isg);
  batch_norm_backward(x, dy, g, m, is, dx, dgm, dbt);
  batch_norm_backward(xg, dyg, gg, mg, isg, dxg, dgmg, dbtg);
  EXPECT_TRUE(all_close("saved_mean", mg.to_vector(), to_double(m.to_vector()), {0, 1e-6}));
  EXPECT_TRUE(all_close("saved_invstd", isg.to_vector(), to_double(is.to_vector()), {0, 1e-5}));
  EXPECT_TRUE(all_close("running_mean", rmg.to_vector(), to_double(rm.to_vector()), {0, 1e-6}));
  EXPECT_TRUE(all_close("running_var", rvg.to_vector(), to_double(rv.to_vector()), {0, 1e-5}));
  EXPECT_TRUE(all_close("y", yg.to_vector(), to_double(y.to_vector()), {1e-4, 1e-4}));
  EXPECT_TRUE(all_close("dgamma", dgmg.to_vector(), to_double(dgm.to_vector()), {1e-2, 1e-4}));
  EXPECT_TRUE(all_close("dbeta", dbtg.to_vector(), to_double(dbt.to_vector()), {1e-2, 1e-4}));
  EXPECT_TRUE(all_close("dx", dxg.to_vector(), to_double(dx.to_vector()), {1e-5, 1e-4}));
}

TEST(CudaBatchNorm, RunningStatisticsAfterTwoUpdates) {
  FOVEA_REQUIRE_GPU();
  const Device gpu = Device::cuda(0);
  Tensor x1 = Tensor::from({1, 2, -1, 1, 3, 6, 5, 7}, {2, 2, 1, 2}, gpu);
  Tensor x2 = Tensor::from({0, 0, 2, 2, 4, 4, 2, 6}, {2, 2, 1, 2}, gpu);
  Tensor gamma = full({2}, 1.0f, gpu), beta = zeros({2}, gpu);
  Tensor rm = zeros({2}, gpu), rv = full({2}, 1.0f, gpu), mean({2}, gpu), invstd({2}, gpu), y(x1.shape(), gpu);
  batch_norm_forward_training(x1, gamma, beta, rm, rv, 0.1f, 1e-5f, y, mean, invstd);
  batch_norm_forward_training(x2, gamma, beta, rm, rv, 0.1f, 1e-5f, y, mean, invstd);
  const auto m = rm.to_vector(), v = rv.to_vector();
  EXPECT_NEAR(m[0], 0.9 * 0.3 + 0.1 * 2.0, 1e-6);
  EXPECT_NEAR(m[1], 0.9 * 0.3 + 0.1 * 3.0, 1e-6);
  EXPECT_NEAR(v[0], 0.9 * (0.9 + 0.1 * 14.0 / 3.0) + 0.1 * 16.0 / 3.0, 1e-6);
  EXPECT_NEAR(v[1], 0.9 * (0.9 + 0.1 * 40.0 / 3.0) + 0.1 * 4.0, 1e-6);
}

TEST(CudaMaxPool, TiesGoToTheFirstMaximum) {
  FOVEA_REQUIRE_GPU();
  const Device gpu = Device::cuda(0);
  Tensor x = full({1, 1, 3, 3}, 1.0f, gpu), y({1, 1, 3, 3}, gpu), dy = full({1, 1, 3, 3}, 1.0f, gpu),
         dx({1, 1, 3, 3}, gpu);
  max_pool2d_forward(x, y, {3, 1, 1});
  max_pool2d_backward(x, y, dy, dx, {3, 1, 1});
  EXPECT_EQ(dx.to_vector(), (std::vector<float>{4, 2, 0, 2, 1, 0, 0, 0, 0}));
}

// ResNet's stem pooling and ties in integer data: CUDA equals CPU exactly.
TEST(CudaMaxPool, ResNetStemWithTiesEqualsCpu) {
  FOVEA_REQUIRE_GPU();
  const Shape s{4, 64, 112, 112}, o{4, 64, 56, 56};
  Tensor x = Tensor::from(random_values(s.numel(), InputKind::integer, 21), s);
  Tensor dy = Tensor::from(random_values(o.numel(), InputKind::normal, 22), o);
  Tensor y(o), dx(s);
  max_pool2d_forward(x, y, {3, 2, 1});
  max_pool2d_backward(x, y, dy, dx, {3, 2, 1});
  const Device gpu = Device::cuda(0);
  Tensor xg = x.to(gpu), dyg = dy.to(gpu), yg(o, gpu), dxg(s, gpu);
  max_pool2d_forward(xg, yg, {3, 2, 1});
  max_pool2d_backward(xg, yg, dyg, dxg, {3, 2, 1});
  EXPECT_EQ(yg.to_vector(), y.to_vector());
  EXPECT_EQ(dxg.to_vector(), dx.to_vector());
}

TEST(CudaSoftmax, StableForLargeLogits) {
  FOVEA_REQUIRE_GPU();
  const Device gpu = Device::cuda(0);
  Tensor x = Tensor::from({1000, 1001, 1002, -1000, -1001, -1002}, {2, 3}, gpu), y({2, 3}, gpu), ly({2, 3}, gpu);
  softmax_forward(x, y);
  log_softmax_forward(x, ly);
  const auto v = y.to_vector(), lv = ly.to_vector();
  const double z = 1.0 + std::exp(-1.0) + std::exp(-2.0);
  EXPECT_NEAR(v[2], 1.0 / z, 1e-6);
  EXPECT_NEAR(lv[5], -2.0 - std::log(z), 1e-5);
}

}  // namespace
}  // namespace fovea::testing
