// tests/cuda/test_augment_cuda.cpp: the CUDA augmentation twins against the CPU twins on the same inputs
// and parameters: every op (outputs poisoned with NaN first, so an unwritten element fails), the
// in-place forms, and the fused SimCLR / MoCo v2 pipelines, within |gpu - cpu| <= 1e-5 + 1e-5 |cpu|.
// Skips without a CUDA device.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "fovea/data/augment.hpp"
#include "fovea/fovea.hpp"
#include "fovea/ops/augment.hpp"

namespace fovea {
namespace {

#define FOVEA_REQUIRE_GPU() \
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device: " << cuda_unavailable_reason()

using Op = void (*)(CView, std::span<const AugmentParams>, View);

constexpr double kAtol = 1e-5, kRtol = 1e-5;
const float kNaN = std::numeric_limits<float>::quiet_NaN();

Tensor random_images(std::int64_t n, std::int64_t h, std::int64_t w, std::uint64_t seed) {
  std::mt19937_64 gen(seed);
  std::uniform_real_distribution<float> u(0.01f, 0.99f);
  std::vector<float> v(static_cast<std::size_t>(n * 3 * h * w));
  for (auto& x : v) x = u(gen);
  return Tensor::from(v, Shape{n, 3, h, w});
}

// |gpu - cpu| <= kAtol + kRtol |cpu| elementwise. With `stats`, both outputs are normalised (N, 3, H, W)
// images and are compared in pixel units, v * std_c + mean_c: the tolerance is on the pixel before
// Normalize, whose division by std (down to 0.13 for the DR statistics) would otherwise scale the
// last-bit differences of a 23- to 201-tap blur sum summed in another order past it.
::testing::AssertionResult close(const std::string& what, const Tensor& gpu, const Tensor& cpu,
                                 const ChannelStats* stats = nullptr) {
  std::vector<float> g = gpu.to_vector(), c = cpu.to_vector();
  if (stats != nullptr && g.size() == c.size()) {
    const std::int64_t plane = cpu.shape().h() * cpu.shape().w();
    for (std::size_t i = 0; i < g.size(); ++i) {
      const auto ch = static_cast<std::size_t>((static_cast<std::int64_t>(i) / plane) % 3);
      g[i] = g[i] * stats->std[ch] + stats->mean[ch];
      c[i] = c[i] * stats->std[ch] + stats->mean[ch];
    }
  }
  if (g.size() != c.size()) return ::testing::AssertionFailure() << what << ": size mismatch";
  std::size_t bad = 0;
  double worst = 0;
  std::ostringstream first;
  for (std::size_t i = 0; i < g.size(); ++i) {
    const double err = std::fabs(static_cast<double>(g[i]) - c[i]);
    if (!(err <= kAtol + kRtol * std::fabs(c[i]))) {
      if (bad++ < 5) first << "\n  [" << i << "] gpu " << g[i] << " cpu " << c[i];
    }
    if (!std::isnan(err)) worst = std::max(worst, err);
  }
  if (bad == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << what << " " << cpu.shape().str() << ": " << bad << " of "
                                       << g.size() << " elements differ, max error " << worst << first.str();
}

// Parameters exercising everything: SimCLR with rotation, vertical flips and solarize, then per
// sample forced variety (jitter on for most, blur on for some, each jitter order).
std::vector<AugmentParams> varied_params(std::int64_t n, std::int64_t h, std::int64_t w, int s, int epoch) {
  data::AugmentConfig c = data::simclr(s);
  c.rotation_degrees = 30.0f;
  c.vflip_p = 0.5f;
  c.solarize_p = 0.5f;
  c.blur_kernel_size = 5;
  std::vector<AugmentParams> p;
  for (std::int64_t i = 0; i < n; ++i) {
    AugmentParams q =
        data::draw_augment_params(c, data::augment_key(99, epoch, static_cast<std::uint32_t>(i), 0), h, w);
    q.jitter = i % 5 != 4;
    q.blur = i % 2 == 0;
    q.solarize = i % 3 == 1;
    q.grayscale = i % 4 == 3;
    p.push_back(q);
  }
  return p;
}

void check_pixel_op(const char* name, Op op, const Tensor& x_cpu, const std::vector<AugmentParams>& params) {
  Tensor x_gpu = x_cpu.to(Device::cuda());
  Tensor cpu(x_cpu.shape());
  op(x_cpu, params, cpu);
  Tensor gpu = full(x_cpu.shape(), kNaN, Device::cuda());
  op(x_gpu, params, gpu);
  EXPECT_TRUE(close(name, gpu, cpu));
  // In place.
  Tensor inplace = x_cpu.to(Device::cuda());
  op(inplace, params, inplace);
  EXPECT_TRUE(close(std::string(name) + " in place", inplace, cpu));
}

TEST(AugmentCuda, RandomResizedCropFlipMatchesCpu) {
  FOVEA_REQUIRE_GPU();
  for (const auto& [h, w, s] :
       std::vector<std::array<int, 3>>{{37, 41, 32}, {33, 33, 33}, {7, 9, 1}, {256, 256, 224}}) {
    const Tensor x = random_images(5, h, w, static_cast<std::uint64_t>(h * w));
    const std::vector<AugmentParams> params = varied_params(5, h, w, s, 1);
    Tensor cpu(Shape{5, 3, s, s});
    random_resized_crop_flip(x, params, cpu);
    Tensor gpu = full(Shape{5, 3, s, s}, kNaN, Device::cuda());
    random_resized_crop_flip(x.to(Device::cuda()), params, gpu);
    EXPECT_TRUE(close("random_resized_crop_flip " + std::to_string(h) + "x" + std::to_string(w), gpu, cpu));
  }
}

// Consecutive rows per thread (cuda::PixelRows::consecutive, whose gathers take a source row the
// previous row read from registers) give the strided rows' bits: the crop alone (upscaling,
// downscaling, whole-pixel) and the fused pipeline (rotation, flips, jitter, blur), and both are
// within tolerance of the CPU.
TEST(AugmentCuda, ConsecutivePixelRowsMatchStridedRowsAndCpu) {
  FOVEA_REQUIRE_GPU();
  const auto bits_equal = [](const Tensor& a, const Tensor& b) {
    const std::vector<float> u = a.to_vector(), v = b.to_vector();
    std::size_t differ = 0;
    for (std::size_t i = 0; i < u.size(); ++i) differ += std::memcmp(&u[i], &v[i], sizeof(float)) != 0;
    return differ;
  };
  const cuda::PixelRows previous = cuda::pixel_rows();
  for (const auto& [h, w, s] : std::vector<std::array<int, 3>>{
           {37, 41, 32}, {40, 50, 130}, {200, 180, 40}, {7, 9, 1}, {256, 256, 224}}) {
    const std::string name = std::to_string(h) + "x" + std::to_string(w) + "->" + std::to_string(s);
    const Tensor x = random_images(6, h, w, static_cast<std::uint64_t>(h * w + 5));
    const Tensor xg = x.to(Device::cuda());
    std::vector<AugmentParams> params = varied_params(6, h, w, s, 2);
    for (std::size_t i = 0; i < params.size(); i += 2)
      params[i].rotation_degrees = 0.0f;  // separable gathers
    Tensor crop_cpu(Shape{6, 3, s, s}), view_cpu(Shape{6, 3, s, s});
    random_resized_crop_flip(x, params, crop_cpu);
    augment_images(x, params, kDrStats, view_cpu);
    Tensor crop[2], view[2];
    for (int consecutive = 0; consecutive < 2; ++consecutive) {
      cuda::pixel_rows() = consecutive ? cuda::PixelRows::consecutive : cuda::PixelRows::strided;
      crop[consecutive] = full(Shape{6, 3, s, s}, kNaN, Device::cuda());
      view[consecutive] = full(Shape{6, 3, s, s}, kNaN, Device::cuda());
      random_resized_crop_flip(xg, params, crop[consecutive]);
      augment_images(xg, params, kDrStats, view[consecutive]);
    }
    cuda::pixel_rows() = previous;
    EXPECT_TRUE(close("random_resized_crop_flip consecutive " + name, crop[1], crop_cpu));
    EXPECT_TRUE(close("augment_images consecutive " + name, view[1], view_cpu, &kDrStats));
    EXPECT_EQ(bits_equal(crop[0], crop[1]), 0u) << name << ": crop values where the row mappings differ";
    EXPECT_EQ(bits_equal(view[0], view[1]), 0u) << name << ": pipeline values where the row mappings differ";
  }
}

TEST(AugmentCuda, FlipIsExactOnTheDevice) {
  FOVEA_REQUIRE_GPU();
  const Tensor x = random_images(3, 33, 33, 5);
  AugmentParams p = neutral_params(33, 33);
  p.hflip = 1;
  const std::vector<AugmentParams> params(3, p);
  Tensor once(x.shape(), Device::cuda()), twice(x.shape(), Device::cuda());
  random_resized_crop_flip(x.to(Device::cuda()), params, once);
  random_resized_crop_flip(once, params, twice);
  EXPECT_EQ(twice.to_vector(), x.to_vector());
}

TEST(AugmentCuda, ColourOpsMatchCpu) {
  FOVEA_REQUIRE_GPU();
  for (const auto& [h, w] : std::vector<std::array<int, 2>>{{32, 32}, {7, 33}, {1, 1}}) {
    const Tensor x = random_images(5, h, w, static_cast<std::uint64_t>(7 * h + w));
    std::vector<AugmentParams> params = varied_params(5, h, w, h, 2);
    // Every sample a different jitter order, contrast included.
    for (std::size_t i = 0; i < params.size(); ++i) {
      std::uint8_t order[4] = {0, 1, 2, 3};
      for (std::size_t r = 0; r < i; ++r) std::next_permutation(order, order + 4);
      std::copy(order, order + 4, params[i].order);
      params[i].jitter_ops = 0xF;
    }
    check_pixel_op("color_jitter", color_jitter, x, params);
    check_pixel_op("grayscale", grayscale, x, params);
    check_pixel_op("solarize", solarize, x, params);
    check_pixel_op("gaussian_blur", gaussian_blur, x, params);
  }
}

TEST(AugmentCuda, HueWrapAroundMatchesCpu) {
  FOVEA_REQUIRE_GPU();
  const Tensor x = random_images(4, 9, 11, 8);
  std::vector<AugmentParams> params(4, neutral_params(9, 11));
  const float shifts[4] = {-0.5f, -0.01f, 0.37f, 0.5f};
  for (int i = 0; i < 4; ++i) {
    params[i].jitter = 1;
    params[i].jitter_ops = 1u << kJitterHue;
    params[i].hue = shifts[i];
  }
  check_pixel_op("adjust_hue", color_jitter, x, params);
}

TEST(AugmentCuda, WideBlurKernelsMatchCpu) {
  FOVEA_REQUIRE_GPU();
  const Tensor x = random_images(3, 5, 40, 9);
  std::vector<AugmentParams> params(3, neutral_params(5, 40));
  for (int i = 0; i < 3; ++i) {
    params[i].blur = i != 1;
    params[i].blur_kernel = 2 * (3 + 4 * i) + 1;  // 7 and 23: wider than the 5 rows
    params[i].blur_sigma = 0.5f + i;
  }
  check_pixel_op("gaussian_blur wide", gaussian_blur, x, params);
}

// Blur parameters: sample i blurred when on[i % on.size()], with kernels[i % kernels.size()] taps and
// sigma 0.3 + 0.7 i (small sigmas lose their negligible tails in the plan), or with keep_all_taps a
// sigma of a sixth of the kernel, wide enough that every tap stays (the large-halo paths).
std::vector<AugmentParams> blur_params(std::int64_t n, std::int64_t h, std::int64_t w,
                                       const std::vector<int>& kernels, const std::vector<int>& on,
                                       bool keep_all_taps = false) {
  std::vector<AugmentParams> p(static_cast<std::size_t>(n), neutral_params(h, w));
  for (std::size_t i = 0; i < p.size(); ++i) {
    p[i].blur = static_cast<std::uint8_t>(on[i % on.size()]);
    p[i].blur_kernel = kernels[i % kernels.size()];
    p[i].blur_sigma = keep_all_taps ? static_cast<float>(p[i].blur_kernel) / 6.0f + 0.1f * static_cast<float>(i)
                                    : 0.3f + 0.7f * static_cast<float>(i);
  }
  return p;
}

// The fused tile kernel out of place (several 64 x 64 tiles, partial edge tiles, reflected halos
// wider than the image), the two-pass path in place; every sample blurred, or some copied.
TEST(AugmentCuda, BlurTilesMatchCpu) {
  FOVEA_REQUIRE_GPU();
  for (const auto& [h, w] :
       std::vector<std::array<int, 2>>{{37, 41}, {67, 129}, {224, 224}, {7, 33}, {1, 1}}) {
    const Tensor x = random_images(3, h, w, static_cast<std::uint64_t>(h * 131 + w));
    const std::string size = std::to_string(h) + "x" + std::to_string(w);
    check_pixel_op(("gaussian_blur all " + size).c_str(), gaussian_blur, x,
                   blur_params(3, h, w, {23, 5, 1}, {1}));
    check_pixel_op(("gaussian_blur some " + size).c_str(), gaussian_blur, x,
                   blur_params(3, h, w, {3, 23, 9}, {1, 0}));
  }
}

// Kernels whose halo needs more than 48 KB of shared memory (61 taps: the raised limit) and more
// than a block may have (201 taps: the two-pass fallback for the whole batch).
TEST(AugmentCuda, LargeRadiusBlurMatchesCpu) {
  FOVEA_REQUIRE_GPU();
  const Tensor x = random_images(3, 70, 90, 21);
  check_pixel_op("gaussian_blur 61 taps", gaussian_blur, x, blur_params(3, 70, 90, {61, 7}, {1}, true));
  check_pixel_op("gaussian_blur 201 taps", gaussian_blur, x, blur_params(3, 70, 90, {201, 7}, {1, 0, 1}, true));
}

// The fused pipeline's compact blur scratch (tile path) and its two-pass fallback.
TEST(AugmentCuda, FusedPipelineBlurPathsMatchCpu) {
  FOVEA_REQUIRE_GPU();
  const Tensor x = random_images(3, 150, 130, 22);
  for (const int kernel : {23, 201}) {
    std::vector<AugmentParams> params = varied_params(3, 150, 130, 100, kernel);
    for (std::size_t i = 0; i < params.size(); ++i) {
      params[i].blur = i != 1;
      params[i].blur_kernel = kernel;
      params[i].blur_sigma = static_cast<float>(kernel) / 6.0f;  // every tap stays (docs/augmentations.md)
    }
    Tensor cpu(Shape{3, 3, 100, 100});
    augment_images(x, params, kDrStats, cpu);
    Tensor gpu = full(Shape{3, 3, 100, 100}, kNaN, Device::cuda());
    augment_images(x.to(Device::cuda()), params, kDrStats, gpu);
    EXPECT_TRUE(close("augment_images blur " + std::to_string(kernel), gpu, cpu, &kDrStats));
  }
}

// Sets cuda::blur_tile_kernel_choice() for a scope.
class ScopedBlurTiles {
 public:
  explicit ScopedBlurTiles(cuda::BlurTileKernel k) : previous_(cuda::blur_tile_kernel_choice()) {
    cuda::blur_tile_kernel_choice() = k;
  }
  ScopedBlurTiles(const ScopedBlurTiles&) = delete;
  ScopedBlurTiles& operator=(const ScopedBlurTiles&) = delete;
  ~ScopedBlurTiles() { cuda::blur_tile_kernel_choice() = previous_; }

 private:
  cuda::BlurTileKernel previous_;
};

// Sets cuda::blur_tile_shape() for a scope.
class ScopedBlurShape {
 public:
  explicit ScopedBlurShape(cuda::BlurTileShape s) : previous_(cuda::blur_tile_shape()) {
    cuda::blur_tile_shape() = s;
  }
  ScopedBlurShape(const ScopedBlurShape&) = delete;
  ScopedBlurShape& operator=(const ScopedBlurShape&) = delete;
  ~ScopedBlurShape() { cuda::blur_tile_shape() = previous_; }

 private:
  cuda::BlurTileShape previous_;
};

// The four-tap kernels and tiles the tests below run, with a label for messages.
struct FourTapKernel {
  cuda::BlurTileKernel kernel;
  cuda::BlurTileShape shape;
  std::string label;
};
std::vector<FourTapKernel> four_tap_kernels() {
  return {{cuda::BlurTileKernel::vector4, cuda::BlurTileShape::square, "vector4 square "},
          {cuda::BlurTileKernel::vector4, cuda::BlurTileShape::fit, "vector4 fit "},
          {cuda::BlurTileKernel::strip, cuda::BlurTileShape::square, "strip "}};
}

// The four-tap kernels (BlurTileKernel::vector4 in square and fitted tiles, BlurTileKernel::strip)
// against the CPU twin, at every four-tap group count (1 to 31 taps) and on partial tiles, and
// against the scalar tile kernel: all add the same products in the same order (a zero-weight tap adds
// an exact 0 to the fused multiply-add), so they must agree bitwise. Then the fused pipeline through
// them, and a batch too wide for them (scalar tiles).
TEST(AugmentCuda, FourTapBlurTilesMatchCpuAndScalarTiles) {
  FOVEA_REQUIRE_GPU();
  const std::vector<int> every{1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31};
  for (const auto& [h, w] :
       std::vector<std::array<int, 2>>{{70, 90}, {224, 224}, {9, 130}, {1, 1}, {300, 200}}) {
    const Tensor x = random_images(16, h, w, static_cast<std::uint64_t>(h * 7 + w));
    const std::vector<AugmentParams> params = blur_params(16, h, w, every, {1, 1, 0}, true);
    Tensor scalar = full(x.shape(), kNaN, Device::cuda());
    const Tensor xg = x.to(Device::cuda());
    {
      const ScopedBlurTiles tiles(cuda::BlurTileKernel::scalar);
      gaussian_blur(xg, params, scalar);
    }
    const std::vector<float> a = scalar.to_vector();
    for (const auto& [kernel, shape, label] : four_tap_kernels()) {
      const std::string name = label + std::to_string(h) + "x" + std::to_string(w);
      const ScopedBlurTiles tiles(kernel);
      const ScopedBlurShape shaped(shape);
      check_pixel_op(("gaussian_blur " + name).c_str(), gaussian_blur, x, params);
      Tensor vec4 = full(x.shape(), kNaN, Device::cuda());
      gaussian_blur(xg, params, vec4);
      const std::vector<float> b = vec4.to_vector();
      std::size_t differ = 0;
      for (std::size_t i = 0; i < a.size(); ++i) differ += std::memcmp(&a[i], &b[i], sizeof(float)) != 0;
      EXPECT_EQ(differ, 0u) << name << ": values where the two tile kernels differ";
    }
  }
  const Tensor x = random_images(3, 150, 130, 23);
  for (const auto& [kernel_choice, shape, label] : four_tap_kernels()) {
    if (kernel_choice == cuda::BlurTileKernel::vector4 && shape == cuda::BlurTileShape::square) continue;
    const ScopedBlurTiles tiles(kernel_choice);
    const ScopedBlurShape shaped(shape);
    for (const int kernel : {23, 31, 33}) {  // 33 taps: the batch runs the scalar tiles
      std::vector<AugmentParams> params = varied_params(3, 150, 130, 100, kernel);
      for (std::size_t i = 0; i < params.size(); ++i) {
        params[i].blur = i != 1;
        params[i].blur_kernel = kernel;
        params[i].blur_sigma = static_cast<float>(kernel) / 6.0f;
      }
      Tensor cpu(Shape{3, 3, 100, 100});
      augment_images(x, params, kDrStats, cpu);
      Tensor gpu = full(Shape{3, 3, 100, 100}, kNaN, Device::cuda());
      augment_images(x.to(Device::cuda()), params, kDrStats, gpu);
      EXPECT_TRUE(close("augment_images blur " + label + std::to_string(kernel), gpu, cpu, &kDrStats));
    }
  }
}

TEST(AugmentCuda, NormalizeMatchesCpu) {
  FOVEA_REQUIRE_GPU();
  const Tensor x = random_images(5, 13, 17, 10);
  Tensor cpu(x.shape());
  normalize_channels(x, kImageNetStats, cpu);
  Tensor gpu = full(x.shape(), kNaN, Device::cuda());
  normalize_channels(x.to(Device::cuda()), kImageNetStats, gpu);
  EXPECT_TRUE(close("normalize_channels", gpu, cpu));
}

TEST(AugmentCuda, FusedPipelineMatchesCpuComposition) {
  FOVEA_REQUIRE_GPU();
  const Tensor x = random_images(5, 37, 41, 11);
  for (int epoch = 0; epoch < 3; ++epoch) {
    const std::vector<AugmentParams> params = varied_params(5, 37, 41, 32, epoch);
    Tensor cpu(Shape{5, 3, 32, 32});
    augment_images(x, params, kDrStats, cpu);
    Tensor gpu = full(Shape{5, 3, 32, 32}, kNaN, Device::cuda());
    augment_images(x.to(Device::cuda()), params, kDrStats, gpu);
    EXPECT_TRUE(close("augment_images epoch " + std::to_string(epoch), gpu, cpu));
  }
}

TEST(AugmentCuda, SimclrAndMocoBatchesMatchCpu) {
  FOVEA_REQUIRE_GPU();
  const Tensor x = random_images(5, 37, 41, 12);
  const Tensor x_gpu = x.to(Device::cuda());
  const std::vector<std::int64_t> ids{0, 7, 1000, 123456, 5};
  for (const data::AugmentConfig& c : {data::simclr(32), data::moco_v2(32), data::supervised_train(32),
                                       data::test_transform(32, kImageNetStats)}) {
    for (int view = 0; view < 2; ++view) {
      Tensor cpu(Shape{5, 3, 32, 32});
      data::augment_batch(x, ids, 4, view, c, 2024, cpu);
      Tensor gpu = full(Shape{5, 3, 32, 32}, kNaN, Device::cuda());
      data::augment_batch(x_gpu, ids, 4, view, c, 2024, gpu);
      EXPECT_TRUE(
          close("augment_batch view " + std::to_string(view) + " scale_min " + std::to_string(c.scale_min),
                gpu, cpu));
    }
  }
  // The two-view augmenter on the device, against the CPU.
  const data::TwoViewAugmenter aug(data::simclr(32), 3);
  Tensor g0(Shape{5, 3, 32, 32}, Device::cuda()), g1(Shape{5, 3, 32, 32}, Device::cuda());
  Tensor c0(Shape{5, 3, 32, 32}), c1(Shape{5, 3, 32, 32});
  aug(x_gpu, ids, 1, g0, g1);
  aug(x, ids, 1, c0, c1);
  EXPECT_TRUE(close("two views, view 0", g0, c0));
  EXPECT_TRUE(close("two views, view 1", g1, c1));
}

TEST(AugmentCuda, LargeBatchMatchesCpu) {
  FOVEA_REQUIRE_GPU();
  const Tensor x = random_images(3, 256, 256, 13);
  data::AugmentConfig c = data::moco_v2(224);
  c.blur_p = 1.0f;  // every sample through the blur passes
  const std::vector<std::int64_t> ids{10, 11, 12};
  Tensor cpu(Shape{3, 3, 224, 224});
  data::augment_batch(x, ids, 0, 0, c, 5, cpu);
  Tensor gpu = full(Shape{3, 3, 224, 224}, kNaN, Device::cuda());
  data::augment_batch(x.to(Device::cuda()), ids, 0, 0, c, 5, gpu);
  EXPECT_TRUE(close("moco_v2 256 -> 224", gpu, cpu));
}

// Many calls queued behind a busy GPU, nothing synchronising between them: each call's plan goes
// through the page-locked staging ring (kernels/common.cuh), which has 16 slots, so the later calls
// reuse slots, after waiting for the copies that read them. A slot rewritten too early would give a
// call another call's plan.
TEST(AugmentCuda, BackToBackCallsKeepTheirPlans) {
  FOVEA_REQUIRE_GPU();
  constexpr int kCalls = 40;
  const Tensor x = random_images(4, 40, 44, 14);
  const Tensor x_gpu = x.to(Device::cuda());
  std::vector<std::vector<AugmentParams>> params;
  std::vector<Tensor> gpu;
  for (int call = 0; call < kCalls; ++call) {
    params.push_back(varied_params(4, 40, 44, 32, call));
    gpu.push_back(full(Shape{4, 3, 32, 32}, kNaN, Device::cuda()));
  }
  Tensor busy(Shape{64 << 20}, Device::cuda());
  for (int i = 0; i < 40; ++i) fill(busy, static_cast<float>(i));  // ~10 ms of queued work
  for (int call = 0; call < kCalls; ++call) augment_images(x_gpu, params[call], kDrStats, gpu[call]);
  for (int call = 0; call < kCalls; ++call) {
    Tensor cpu(Shape{4, 3, 32, 32});
    augment_images(x, params[call], kDrStats, cpu);
    EXPECT_TRUE(close("call " + std::to_string(call), gpu[call], cpu, &kDrStats));
  }
}

}  // namespace
}  // namespace fovea
