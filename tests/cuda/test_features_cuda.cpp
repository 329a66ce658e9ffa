// tests/cuda/test_features_cuda.cpp: the feature Grams on the GPU (analysis/features_device.hpp:
// statistics and centring kernels + cublasDsyrk) against the CPU's (features.hpp), and
// copy_feature_columns on the GPU against the CPU. Shapes: 2 and 3 rows, a block boundary of the
// device's column blocks, constant columns, a Gram passed in two parts; a non-finite value's error
// names its row and column. Skips without a CUDA device.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "fovea/analysis/features.hpp"
#include "fovea/analysis/features_device.hpp"
#include "fovea/fovea.hpp"

namespace fovea {
namespace {

#define FOVEA_REQUIRE_GPU() \
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device: " << cuda_unavailable_reason()

// (n, f) with every 5th column constant, some ties.
std::vector<float> features(std::int64_t n, std::int64_t f, std::uint64_t seed) {
  std::mt19937_64 gen(seed);
  std::normal_distribution<float> d(0.2f, 1.5f);
  std::vector<float> x(static_cast<std::size_t>(n * f));
  for (float& v : x) v = std::max(d(gen), -0.5f);
  for (std::int64_t c = 0; c < f; c += 5)
    for (std::int64_t i = 0; i < n; ++i) x[static_cast<std::size_t>(i * f + c)] = 0.5f;
  return x;
}

Tensor on_gpu(const std::vector<float>& x, const Shape& shape) {
  Tensor t(shape, Device::cuda(0));
  copy(CView(x.data(), shape, Device::cpu()), t.view());
  return t;
}

void expect_close(const analysis::Gram& got, const analysis::Gram& want, const std::string& what) {
  ASSERT_EQ(got.n, want.n) << what;
  double scale = 0, worst = 0;
  for (double v : want.values) scale = std::max(scale, std::fabs(v));
  for (std::size_t i = 0; i < want.values.size(); ++i)
    worst = std::max(worst, std::fabs(got.values[i] - want.values[i]));
  EXPECT_LE(worst, 1e-12 * std::max(scale, 1.0))
      << what << ": largest difference " << worst << " of " << scale;
  for (std::int64_t i = 0; i < got.n; ++i)
    for (std::int64_t j = 0; j < i; ++j)
      ASSERT_EQ(got.values[static_cast<std::size_t>(i * got.n + j)],
                got.values[static_cast<std::size_t>(j * got.n + i)])
          << what << ": not symmetric at (" << i << ", " << j << ")";
}

TEST(CudaFeatureGram, MatchesCpu) {
  FOVEA_REQUIRE_GPU();
  // (2, 7): tiny; (3, 100); (37, 5000): one block of 5000 columns; (600, 20000): 13,981 columns per
  // block, so two blocks, the second starting inside the matrix.
  for (const auto& [n, f] :
       std::vector<std::pair<std::int64_t, std::int64_t>>{{2, 7}, {3, 100}, {37, 5000}, {600, 20000}})
    for (const bool standardise : {false, true}) {
      const std::string what =
          std::to_string(n) + " x " + std::to_string(f) + (standardise ? " standardised" : " centred");
      const std::vector<float> x = features(n, f, static_cast<std::uint64_t>(n * 31 + f));
      analysis::Gram want, got;
      const std::int64_t want_constants =
          analysis::add_to_feature_gram(want, analysis::FeatureMatrix{x, n, f}, standardise);
      const Tensor xd = on_gpu(x, Shape{n, f});
      const std::int64_t got_constants = analysis::add_to_feature_gram(got, xd.cview(), standardise);
      EXPECT_EQ(got_constants, want_constants) << what;
      expect_close(got, want, what);
      // A second call adds to the Gram: twice the first.
      analysis::add_to_feature_gram(got, xd.cview(), standardise);
      for (double& v : want.values) v *= 2;
      expect_close(got, want, what + ", added twice");
    }
}

TEST(CudaFeatureGram, PartsAddUpLikeTheCpu) {
  FOVEA_REQUIRE_GPU();
  const std::int64_t n = 19, f = 700, split = 333;
  const std::vector<float> x = features(n, f, 5);
  analysis::Gram want, got;
  analysis::add_to_feature_gram(want, analysis::FeatureMatrix{x, n, f}, true);
  for (const auto& [begin, end] :
       std::vector<std::pair<std::int64_t, std::int64_t>>{{0, split}, {split, f}}) {
    std::vector<float> part(static_cast<std::size_t>(n * (end - begin)));
    for (std::int64_t i = 0; i < n; ++i)
      std::copy(x.begin() + i * f + begin, x.begin() + i * f + end, part.begin() + i * (end - begin));
    analysis::add_to_feature_gram(got, on_gpu(part, Shape{n, end - begin}).cview(), true);
  }
  expect_close(got, want, "two parts");
}

TEST(CudaFeatureGram, NonFiniteValueNamed) {
  FOVEA_REQUIRE_GPU();
  std::vector<float> x = features(6, 40, 3);
  x[4 * 40 + 17] = std::numeric_limits<float>::quiet_NaN();
  analysis::Gram g;
  try {
    analysis::add_to_feature_gram(g, on_gpu(x, Shape{6, 40}).cview(), false);
    FAIL() << "no error for a NaN";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("row 4, column 17"), std::string::npos) << e.what();
  }
  EXPECT_TRUE(g.values.empty() ||
              std::all_of(g.values.begin(), g.values.end(), [](double v) { return v == 0; }))
      << "the Gram changed before the error";
}

TEST(CudaFeatureGram, CopyFeatureColumnsMatchesCpu) {
  FOVEA_REQUIRE_GPU();
  const Shape batch{3, 4, 5, 6};  // 120 features per row
  std::vector<float> y(static_cast<std::size_t>(batch.numel()));
  for (std::size_t i = 0; i < y.size(); ++i) y[i] = static_cast<float>(i) * 0.5f;
  std::vector<float> want(static_cast<std::size_t>(7 * 50), -1.0f);
  analysis::copy_feature_columns(CView(y.data(), batch, Device::cpu()), 35, 85,
                                 View(want.data(), Shape{7, 50}, Device::cpu()), 2);
  Tensor dst(Shape{7, 50}, Device::cuda(0));
  copy(CView(std::vector<float>(350, -1.0f).data(), Shape{7, 50}, Device::cpu()), dst.view());
  analysis::copy_feature_columns(on_gpu(y, batch).cview(), 35, 85, dst.view(), 2);
  std::vector<float> got(350);
  copy(dst.cview(), View(got.data(), Shape{7, 50}, Device::cpu()));
  EXPECT_EQ(got, want);
  EXPECT_EQ(want[2 * 50], y[35]);                 // row 2 of dst = image 0's feature 35
  EXPECT_EQ(want[4 * 50 + 49], y[2 * 120 + 84]);  // row 4 = image 2's feature 84
  EXPECT_EQ(want[0], -1.0f);                      // rows outside the batch untouched
}

}  // namespace
}  // namespace fovea
