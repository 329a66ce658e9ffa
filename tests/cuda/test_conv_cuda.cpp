// tests/cuda/test_conv_cuda.cpp: conv2d (cuDNN) and linear (cuBLAS) against the CPU twins beyond the
// harness cases (those run from test_ops_cuda.cpp, TF32 off inside each case): TF32 on with a loose
// tolerance, deterministic algorithms, accumulation, and the misaligned-view path. Skips without a CUDA device.
#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "cases/conv.hpp"
#include "cases/linear.hpp"
#include "op_cases.hpp"

namespace fovea::testing {
namespace {

#define FOVEA_REQUIRE_GPU() \
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device: " << cuda_unavailable_reason()

Tensor random_tensor(const Shape& s, std::uint64_t seed) {
  return Tensor::from(random_values(s.numel(), InputKind::normal, seed), s);
}

// max |got - want| / max |want|.
double relative_to_max(const std::vector<float>& got, const std::vector<float>& want) {
  double err = 0, scale = 0;
  for (std::size_t i = 0; i < got.size(); ++i) {
    err = std::max(err, std::fabs(static_cast<double>(got[i]) - want[i]));
    scale = std::max(scale, std::fabs(static_cast<double>(want[i])));
    if (std::isnan(got[i])) return INFINITY;
  }
  return err / scale;
}

// ResNet-50 shapes (scaled batch) with TF32 on: within 1e-2 of the fp32 CPU result relative to the
// largest |reference|, for forward and both backward ops.
TEST(ConvCuda, Tf32MatchesCpuLoosely) {
  FOVEA_REQUIRE_GPU();
  ScopedMathSettings tf32(MathSettings{true, false});
  struct Conf {
    Shape x, w;
    Conv2dParams p;
  };
  const Conf confs[] = {{{4, 3, 64, 64}, {64, 3, 7, 7}, {2, 2, 3, 3}},
                        {{4, 64, 16, 16}, {64, 64, 3, 3}, {1, 1, 1, 1}},
                        {{4, 256, 16, 16}, {128, 256, 1, 1}, {2, 2, 0, 0}}};
  const Device gpu = Device::cuda(0);
  for (const auto& c : confs) {
    SCOPED_TRACE(c.x.str() + " " + c.w.str() + " " + c.p.str());
    Tensor x = random_tensor(c.x, 1), w = random_tensor(c.w, 2), b = random_tensor({c.w[0]}, 3);
    const Shape ys = conv2d_output_shape(c.x, c.w, c.p);
    Tensor dy = random_tensor(ys, 4);
    Tensor y(ys), dx(c.x), dw(c.w);
    conv2d_forward(x, w, b, y, c.p);
    conv2d_backward_data(dy, w, dx, c.p);
    conv2d_backward_filter(x, dy, dw, c.p);
    Tensor gx = x.to(gpu), gw = w.to(gpu), gb = b.to(gpu), gdy = dy.to(gpu);
    Tensor gy(ys, gpu), gdx(c.x, gpu), gdw(c.w, gpu);
    conv2d_forward(gx, gw, gb, gy, c.p);
    conv2d_backward_data(gdy, gw, gdx, c.p);
    conv2d_backward_filter(gx, gdy, gdw, c.p);
    EXPECT_LT(relative_to_max(gy.to_vector(), y.to_vector()), 1e-2);
    EXPECT_LT(relative_to_max(gdx.to_vector(), dx.to_vector()), 1e-2);
    EXPECT_LT(relative_to_max(gdw.to_vector(), dw.to_vector()), 1e-2);
  }
}

TEST(LinearCuda, Tf32MatchesCpuLoosely) {
  FOVEA_REQUIRE_GPU();
  ScopedMathSettings tf32(MathSettings{true, false});
  const Device gpu = Device::cuda(0);
  Tensor x = random_tensor({64, 2048}, 1), w = random_tensor({1000, 2048}, 2), b = random_tensor({1000}, 3);
  Tensor dy = random_tensor({64, 1000}, 4);
  Tensor y({64, 1000}), dx({64, 2048}), dw({1000, 2048});
  linear_forward(x, w, b, y);
  linear_backward_data(dy, w, dx);
  linear_backward_weight(x, dy, dw);
  Tensor gx = x.to(gpu), gw = w.to(gpu), gb = b.to(gpu), gdy = dy.to(gpu);
  Tensor gy({64, 1000}, gpu), gdx({64, 2048}, gpu), gdw({1000, 2048}, gpu);
  linear_forward(gx, gw, gb, gy);
  linear_backward_data(gdy, gw, gdx);
  linear_backward_weight(gx, gdy, gdw);
  EXPECT_LT(relative_to_max(gy.to_vector(), y.to_vector()), 1e-2);
  EXPECT_LT(relative_to_max(gdx.to_vector(), dx.to_vector()), 1e-2);
  EXPECT_LT(relative_to_max(gdw.to_vector(), dw.to_vector()), 1e-2);
}

// With deterministic on, two backward-filter / backward-data runs are bitwise equal.
TEST(ConvCuda, DeterministicAlgorithmsRepeatBitwise) {
  FOVEA_REQUIRE_GPU();
  ScopedMathSettings det(MathSettings{true, true});
  const Device gpu = Device::cuda(0);
  const Conv2dParams p{1, 1, 1, 1};
  Tensor x = random_tensor({8, 64, 16, 16}, 1).to(gpu), w = random_tensor({64, 64, 3, 3}, 2).to(gpu);
  Tensor dy = random_tensor({8, 64, 16, 16}, 3).to(gpu);
  Tensor dw1({64, 64, 3, 3}, gpu), dw2({64, 64, 3, 3}, gpu), dx1({8, 64, 16, 16}, gpu), dx2({8, 64, 16, 16}, gpu);
  conv2d_backward_filter(x, dy, dw1, p);
  conv2d_backward_filter(x, dy, dw2, p);
  conv2d_backward_data(dy, w, dx1, p);
  conv2d_backward_data(dy, w, dx2, p);
  EXPECT_EQ(dw1.to_vector(), dw2.to_vector());
  EXPECT_EQ(dx1.to_vector(), dx2.to_vector());
}

TEST(ConvCuda, BackwardFilterAccumulatesAndEmptyBatchZeroes) {
  FOVEA_REQUIRE_GPU();
  ScopedMathSettings fp32(MathSettings{false, false});
  const Device gpu = Device::cuda(0);
  const Conv2dParams p{2, 2, 1, 1};
  Tensor x = random_tensor({3, 5, 9, 9}, 1), dy = random_tensor({3, 4, 5, 5}, 2);
  Tensor start = random_tensor({4, 5, 3, 3}, 3), cpu_dw = start.clone();
  conv2d_backward_filter(x, dy, cpu_dw, p, /*accumulate=*/true);
  Tensor gdw = start.to(gpu);
  conv2d_backward_filter(x.to(gpu), dy.to(gpu), gdw, p, /*accumulate=*/true);
  EXPECT_TRUE(all_close("accumulated dw", gdw.to_vector(), to_double(cpu_dw.to_vector()), {1e-4, 1e-4}));

  Tensor g0 = full({4, 5, 3, 3}, std::numeric_limits<float>::quiet_NaN(), gpu);
  conv2d_backward_filter(Tensor(Shape{0, 5, 9, 9}, gpu), Tensor(Shape{0, 4, 5, 5}, gpu), g0, p);
  for (float v : g0.to_vector()) EXPECT_EQ(v, 0.0f);
}

// A view that starts mid-batch (not 16-byte aligned) goes through the aligned scratch path.
TEST(ConvCuda, MidBatchViewsMatchCpu) {
  FOVEA_REQUIRE_GPU();
  ScopedMathSettings fp32(MathSettings{false, false});
  const Device gpu = Device::cuda(0);
  const Conv2dParams p{1, 1, 1, 1};
  Tensor x = random_tensor({3, 3, 5, 5}, 1), w = random_tensor({2, 3, 3, 3}, 2);  // 75 floats per sample
  Tensor gx = x.to(gpu), gw = w.to(gpu);
  Tensor y({1, 2, 5, 5}), gy({2, 2, 5, 5}, gpu);
  conv2d_forward(x.batch(1, 2), w, CView(), y, p);
  conv2d_forward(gx.batch(1, 2), gw, CView(), gy.batch(1, 2), p);
  Tensor back(Shape{1, 2, 5, 5});
  copy(gy.batch(1, 2), back);
  EXPECT_TRUE(all_close("mid-batch conv", back.to_vector(), to_double(y.to_vector()), {1e-5, 1e-5}));
}

TEST(ConvCuda, DeviceMismatchIsAnError) {
  FOVEA_REQUIRE_GPU();
  Tensor x = random_tensor({1, 3, 5, 5}, 1), w = random_tensor({2, 3, 3, 3}, 2).to(Device::cuda(0));
  Tensor y(Shape{1, 2, 5, 5}, Device::cuda(0));
  EXPECT_THROW(conv2d_forward(x, w, CView(), y, {1, 1, 1, 1}), Error);
}

}  // namespace
}  // namespace fovea::testing
