// tests/cuda/test_corruptions_cuda.cpp: data::corrupt_batch on a GPU against the CPU on the same
// batch: every corruption at every severity (jpeg_compression through its host route), outputs
// poisoned with NaN first, within |gpu - cpu| <= 1e-5 + 1e-5 |cpu| (nvcc fuses multiply-adds the CPU
// does not; shot noise may move a Poisson draw across an inversion step in a rare element, so up to
// 1e-4 of its elements may differ); the fundus ones with masks given and detected, an empty field of
// view copied bitwise, and the masks' bounding boxes; fog with its plasma maps made on the device.
// Skips without a CUDA device.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include "fovea/data/corruptions.hpp"
#include "fovea/fovea.hpp"

namespace fovea {
namespace {

#define FOVEA_REQUIRE_GPU() \
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device: " << cuda_unavailable_reason()

using data::Corruption;

// Image k of a batch of n (H, W) images: a textured disc on a near-black surround (k even), a
// textured image without a surround (k odd); image n - 1 is black when `black_last`.
Tensor batch_of(std::int64_t n, std::int64_t h, std::int64_t w, bool black_last) {
  Tensor t(Shape{n, 3, h, w});
  for (std::int64_t k = 0; k < n; ++k)
    for (std::int64_t c = 0; c < 3; ++c)
      for (std::int64_t y = 0; y < h; ++y)
        for (std::int64_t x = 0; x < w; ++x) {
          const double dx =
              (static_cast<double>(x) + 0.5 - 0.5 * static_cast<double>(w)) / (0.46 * static_cast<double>(w));
          const double dy =
              (static_cast<double>(y) + 0.5 - 0.5 * static_cast<double>(h)) / (0.46 * static_cast<double>(h));
          const double tex = 0.5 +
                             0.2 * std::sin(0.3 * static_cast<double>(x) + static_cast<double>(c + k)) *
                                 std::cos(0.23 * static_cast<double>(y)) +
                             0.1 * std::sin(static_cast<double>(x + 2 * y) / 1.7);
          float v = static_cast<float>(tex);
          if (k % 2 == 0 && dx * dx + dy * dy > 1.0) v = 0.01f;
          if (black_last && k == n - 1) v = 0.0f;
          t.data()[((k * 3 + c) * h + y) * w + x] = v;
        }
  return t;
}

::testing::AssertionResult close(const std::string& what, const Tensor& gpu, const Tensor& cpu,
                                 double allowed_fraction = 0.0) {
  const std::vector<float> g = gpu.to_vector(), c = cpu.to_vector();
  std::size_t bad = 0;
  double worst = 0;
  std::ostringstream first;
  for (std::size_t i = 0; i < g.size(); ++i) {
    const double err = std::fabs(static_cast<double>(g[i]) - c[i]);
    if (!(err <= 1e-5 + 1e-5 * std::fabs(c[i]))) {
      if (bad++ == 0) first << " first at " << i << ": gpu " << g[i] << " cpu " << c[i];
    }
    if (!std::isnan(err)) worst = std::max(worst, err);
  }
  if (static_cast<double>(bad) <= allowed_fraction * static_cast<double>(g.size()) && !std::isnan(worst))
    return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << what << ": " << bad << " of " << g.size()
                                       << " out of tolerance, max err " << worst << first.str();
}

TEST(CudaCorruptions, EveryCorruptionAndSeverityMatchesTheCpu) {
  FOVEA_REQUIRE_GPU();
  const Device gpu = Device::cuda(0);
  const Tensor host = batch_of(5, 72, 90, true);
  const Tensor dev = host.to(gpu);
  const std::vector<std::int64_t> samples{3, 17, 0, 4096, 12345};
  Tensor cpu_out(host.shape()), gpu_out(host.shape(), gpu);
  for (Corruption c : data::all_corruptions())
    for (int severity = 1; severity <= 5; ++severity) {
      const std::string what = std::string(data::corruption_name(c)) + " " + std::to_string(severity);
      data::corrupt_batch(host, c, severity, 99, samples, cpu_out);
      fill(gpu_out, std::numeric_limits<float>::quiet_NaN());
      data::corrupt_batch(dev, c, severity, 99, samples, gpu_out);
      EXPECT_TRUE(close(what, gpu_out, cpu_out, c == Corruption::shot_noise ? 1e-4 : 0.0));
    }
}

// fog where the layer is the plasma map's corner unresized (longer side 112 or 224): the device
// computes the maps (fog_plasma_kernel). Every severity on 112 x 84 images (maps of 128), and at
// 224 px a batch of 257, whose maps (512 KB each) take two chunks of the 128 MB scratch.
TEST(CudaCorruptions, FogPlasmaMapsOnTheDeviceMatchTheCpu) {
  FOVEA_REQUIRE_GPU();
  namespace dc = data::detail::corruption;
  const Device gpu = Device::cuda(0);
  {
    const std::vector<std::int64_t> samples{3, 17, 0, 4096, 12345};
    ASSERT_EQ(dc::corruption_plan(Corruption::fog, 2, 99, samples, 112, 84).fog_map, 128);
    const Tensor host = batch_of(5, 112, 84, false), dev = host.to(gpu);
    Tensor cpu_out(host.shape()), gpu_out(host.shape(), gpu);
    for (int severity = 1; severity <= 5; ++severity) {
      data::corrupt_batch(host, Corruption::fog, severity, 99, samples, cpu_out);
      fill(gpu_out, std::numeric_limits<float>::quiet_NaN());
      data::corrupt_batch(dev, Corruption::fog, severity, 99, samples, gpu_out);
      EXPECT_TRUE(close("fog 112x84 " + std::to_string(severity), gpu_out, cpu_out));
    }
  }
  const std::int64_t n = 257;
  std::vector<std::int64_t> samples;
  for (std::int64_t k = 0; k < n; ++k) samples.push_back(1000 + 7 * k);
  ASSERT_EQ(dc::corruption_plan(Corruption::fog, 3, 5, samples, 224, 224).fog_map, 256);
  const Tensor host = batch_of(n, 224, 224, false), dev = host.to(gpu);
  Tensor cpu_out(host.shape()), gpu_out(host.shape(), gpu);
  data::corrupt_batch(host, Corruption::fog, 3, 5, samples, cpu_out);
  fill(gpu_out, std::numeric_limits<float>::quiet_NaN());
  data::corrupt_batch(dev, Corruption::fog, 3, 5, samples, gpu_out);
  EXPECT_TRUE(close("fog 257 x 224 px", gpu_out, cpu_out));
}

TEST(CudaCorruptions, FundusWithMasksGivenAndEmptyFieldOfView) {
  FOVEA_REQUIRE_GPU();
  const Device gpu = Device::cuda(0);
  const Tensor host = batch_of(3, 64, 64, true);  // image 2 is black
  // masks: the discs of images 0 and 1 as detected, and an empty one for image 2
  Tensor masks(Shape{3, 1, 64, 64});
  fill(masks, 0.0f);
  for (std::int64_t k = 0; k < 2; ++k) {
    const Tensor m = data::fov_mask(CView(host.data() + k * 3 * 64 * 64, Shape{3, 64, 64}, Device::cpu()));
    std::copy(m.data(), m.data() + m.numel(), masks.data() + k * 64 * 64);
  }
  const Tensor dev = host.to(gpu), dmasks = masks.to(gpu);
  const std::vector<std::int64_t> samples{1, 2, 3};
  Tensor cpu_out(host.shape()), gpu_out(host.shape(), gpu);
  const CView hm = masks, dm = dmasks;
  for (Corruption c : data::fundus_corruptions()) {
    data::corrupt_batch(host, c, 5, 7, samples, cpu_out, &hm);
    fill(gpu_out, std::numeric_limits<float>::quiet_NaN());
    data::corrupt_batch(dev, c, 5, 7, samples, gpu_out, &dm);
    EXPECT_TRUE(close(std::string(data::corruption_name(c)) + " with masks", gpu_out, cpu_out));
    const std::vector<float> g = gpu_out.to_vector();
    for (std::int64_t i = 0; i < 3 * 64 * 64; ++i)
      ASSERT_EQ(g[static_cast<std::size_t>(2 * 3 * 64 * 64 + i)], 0.0f)
          << data::corruption_name(c) << ": empty field of view not copied";
  }
}

TEST(CudaCorruptions, FieldOfViewBoxes) {
  FOVEA_REQUIRE_GPU();
  Tensor masks(Shape{3, 1, 20, 30});
  fill(masks, 0.0f);
  masks.data()[0 * 600 + 5 * 30 + 7] = 1.0f;  // image 0: one pixel at (y 5, x 7)
  for (std::int64_t y = 2; y < 19; ++y)       // image 1: rows 2..18, columns 0..29
    for (std::int64_t x = 0; x < 30; ++x) masks.data()[600 + y * 30 + x] = 0.5f;
  const auto boxes = cuda::fov_boxes(masks.to(Device::cuda(0)));
  ASSERT_EQ(boxes.size(), 3u);
  EXPECT_EQ(boxes[0], (std::array<std::int64_t, 4>{7, 5, 8, 6}));
  EXPECT_EQ(boxes[1], (std::array<std::int64_t, 4>{0, 2, 30, 19}));
  EXPECT_EQ(boxes[2], (std::array<std::int64_t, 4>{0, 0, 0, 0}));
}

}  // namespace
}  // namespace fovea
