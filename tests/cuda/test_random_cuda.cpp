// tests/cuda/test_random_cuda.cpp: the CUDA random fill ops against the CPU twins at awkward sizes:
// uniform bitwise equal, normal within 1e-5, every element written (the output starts as NaN), the
// scalar path of a misaligned view, and the device-side Philox against a known answer. Skips
// without a CUDA device.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "fovea/core/random.hpp"
#include "fovea/core/tensor.hpp"
#include "fovea/ops/elementwise.hpp"
#include "fovea/ops/random.hpp"

namespace fovea {
namespace {

#define FOVEA_REQUIRE_GPU() \
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device: " << cuda_unavailable_reason()

constexpr std::int64_t kSizes[] = {1, 3, 257, (std::int64_t{1} << 20) + 3};
const float kNaN = std::numeric_limits<float>::quiet_NaN();

// A CUDA tensor of n elements, every one NaN, so an element the kernel skips shows up.
Tensor poisoned(std::int64_t n) { return full(Shape{n}, kNaN, Device::cuda()); }

TEST(RandomCuda, UniformMatchesCpuBitwise) {
  FOVEA_REQUIRE_GPU();
  const RandomKey key = make_key(0x5eed5eed12345678ull, kPurposeAugment, 3, 41, 2);
  for (std::int64_t n : kSizes) {
    for (auto [lo, hi] : {std::pair{0.0f, 1.0f}, std::pair{-0.5f, 2.5f}}) {
      Tensor gpu = poisoned(n);
      random_uniform(gpu, key, lo, hi);
      Tensor cpu(Shape{n});
      random_uniform(cpu, key, lo, hi);
      const std::vector<float> g = gpu.to_vector();
      const float* c = cpu.data();
      for (std::int64_t i = 0; i < n; ++i) {
        ASSERT_FALSE(std::isnan(g[i])) << "element " << i << " of " << n << " not written";
        ASSERT_EQ(g[i], c[i]) << "element " << i << " of " << n << ", range [" << lo << ", " << hi << "]";
      }
    }
  }
}

TEST(RandomCuda, NormalMatchesCpuWithinTolerance) {
  FOVEA_REQUIRE_GPU();
  const RandomKey key = make_key(2024, kPurposeInit, 0, 9);
  for (std::int64_t n : kSizes) {
    Tensor gpu = poisoned(n);
    random_normal(gpu, key, 0.0f, 1.0f);
    Tensor cpu(Shape{n});
    random_normal(cpu, key, 0.0f, 1.0f);
    const std::vector<float> g = gpu.to_vector();
    const float* c = cpu.data();
    float worst = 0.0f;
    for (std::int64_t i = 0; i < n; ++i) {
      ASSERT_FALSE(std::isnan(g[i])) << "element " << i << " of " << n << " not written";
      ASSERT_NEAR(g[i], c[i], 1e-5f) << "element " << i << " of " << n;
      worst = std::max(worst, std::abs(g[i] - c[i]));
    }
    RecordProperty("worst_abs_diff_n" + std::to_string(n), std::to_string(worst));
  }
}

TEST(RandomCuda, NormalScaledMatchesCpu) {
  FOVEA_REQUIRE_GPU();
  const RandomKey key = make_key(11, kPurposeNoise, 1, 2, 3);
  const std::int64_t n = 4099;
  Tensor gpu = poisoned(n);
  random_normal(gpu, key, -1.5f, 0.25f);
  Tensor cpu(Shape{n});
  random_normal(cpu, key, -1.5f, 0.25f);
  const std::vector<float> g = gpu.to_vector();
  for (std::int64_t i = 0; i < n; ++i) ASSERT_NEAR(g[i], cpu.data()[i], 1e-5f) << "element " << i;
}

// A view starting one float into its tensor is not 16-byte aligned: the kernel takes the scalar
// path and must neither write outside the view nor change any value.
TEST(RandomCuda, MisalignedViewUsesScalarPath) {
  FOVEA_REQUIRE_GPU();
  const RandomKey key = make_key(3, kPurposeDropout);
  const std::int64_t n = 1029;
  Tensor gpu = poisoned(n + 2);
  const View inner(gpu.data() + 1, Shape{n}, gpu.device());
  random_uniform(inner, key, 0.0f, 1.0f);
  Tensor cpu(Shape{n});
  random_uniform(cpu, key, 0.0f, 1.0f);
  const std::vector<float> g = gpu.to_vector();
  EXPECT_TRUE(std::isnan(g[0]));
  EXPECT_TRUE(std::isnan(g[n + 1]));
  for (std::int64_t i = 0; i < n; ++i) ASSERT_EQ(g[i + 1], cpu.data()[i]) << "element " << i;

  random_normal(inner, key, 0.0f, 1.0f);
  random_normal(cpu, key, 0.0f, 1.0f);
  const std::vector<float> h = gpu.to_vector();
  EXPECT_TRUE(std::isnan(h[0]));
  EXPECT_TRUE(std::isnan(h[n + 1]));
  for (std::int64_t i = 0; i < n; ++i) ASSERT_NEAR(h[i + 1], cpu.data()[i], 1e-5f) << "element " << i;
}

// The raw device Philox through the uniform op: with lo = 0, hi = 2^24 the output is exactly the
// top 24 bits of each draw, so block 0 of key (seed 0, all fields 0) must reproduce the top bits of
// Random123's all-zero known answer (6627e8d5 e169c58d bc57ac4c 9b00dbd8).
TEST(RandomCuda, DevicePhiloxReproducesKnownAnswer) {
  FOVEA_REQUIRE_GPU();
  const RandomKey key{};  // seed 0, purpose 0, epoch 0, sample 0, view 0: counter (0,0,0,0), key (0,0)
  Tensor gpu = poisoned(4);
  random_uniform(gpu, key, 0.0f, 0x1p24f);
  const std::vector<float> g = gpu.to_vector();
  const std::uint32_t expected[4] = {0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u};
  for (int w = 0; w < 4; ++w) EXPECT_EQ(g[w], static_cast<float>(expected[w] >> 8)) << "word " << w;
}

TEST(RandomCuda, EmptyTensorIsANoOp) {
  FOVEA_REQUIRE_GPU();
  Tensor gpu(Shape{0}, Device::cuda());
  EXPECT_NO_THROW(random_uniform(gpu, RandomKey{}, 0.0f, 1.0f));
  EXPECT_NO_THROW(random_normal(gpu, RandomKey{}, 0.0f, 1.0f));
}

}  // namespace
}  // namespace fovea
