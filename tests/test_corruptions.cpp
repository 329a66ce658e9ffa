// tests/test_corruptions.cpp: the image corruptions of data/corruptions.hpp: names and parsing, input
// errors, range and shape of every corruption x severity, replay from (seed, sample), the formulas on
// hand-made images (noise statistics, HSV brightness and saturation, contrast, blur kernels, glass_blur
// against ImageNet-C's loop run literally, pixelate, zoom factors, fog), damage growing with severity,
// and the fundus degradations keeping the surround outside the field of view bitwise.
#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <set>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "fovea/core/parallel.hpp"
#include "fovea/data/corruptions.hpp"
#include "test_support.hpp"

namespace fovea {
namespace {

using fovea::testing::error_of;

using data::corrupt;
using data::Corruption;

Tensor constant_image(std::int64_t h, std::int64_t w, float v) {
  return Tensor::from(std::vector<float>(static_cast<std::size_t>(3 * h * w), v), Shape{3, h, w});
}

// A multi-scale colour texture in [0.1, 0.9]: sinusoids of periods 3 to 40 px, different per channel.
Tensor texture(std::int64_t h, std::int64_t w) {
  std::vector<float> v(static_cast<std::size_t>(3 * h * w));
  for (std::int64_t c = 0; c < 3; ++c)
    for (std::int64_t y = 0; y < h; ++y)
      for (std::int64_t x = 0; x < w; ++x) {
        const double fx = static_cast<double>(x), fy = static_cast<double>(y), fc = static_cast<double>(c);
        const double t = 0.5 + 0.15 * std::sin(fx / 6.0 + fc) * std::cos(fy / 4.5 - fc) +
                         0.12 * std::sin((fx + 2.0 * fy) / 1.3 + 2.0 * fc) + 0.1 * std::cos((fx - fy) / 0.7);
        v[static_cast<std::size_t>((c * h + y) * w + x)] = static_cast<float>(std::clamp(t, 0.1, 0.9));
      }
  return Tensor::from(v, Shape{3, h, w});
}

// A smoother colour texture in [0.1, 0.9] whose amplitude falls with frequency, as in photos.
Tensor smooth_texture(std::int64_t h, std::int64_t w) {
  std::vector<float> v(static_cast<std::size_t>(3 * h * w));
  for (std::int64_t c = 0; c < 3; ++c)
    for (std::int64_t y = 0; y < h; ++y)
      for (std::int64_t x = 0; x < w; ++x) {
        const double fx = static_cast<double>(x), fy = static_cast<double>(y), fc = static_cast<double>(c);
        double t = 0.5;
        for (int k = 0; k < 5; ++k) {
          const double period = 48.0 / std::pow(1.8, k), a = std::cos(0.7 * k + fc),
                       b = std::sin(1.3 * k - fc);
          t += 0.12 / (1.0 + 0.5 * k) * std::sin(6.2832 * (a * fx + b * fy) / period + k + fc);
        }
        v[static_cast<std::size_t>((c * h + y) * w + x)] = static_cast<float>(std::clamp(t, 0.1, 0.9));
      }
  return Tensor::from(v, Shape{3, h, w});
}

// A synthetic fundus: black outside the disc of radius 0.45 S about the centre, texture inside.
Tensor fundus_like(std::int64_t s) {
  Tensor t = texture(s, s);
  const double r = 0.45 * static_cast<double>(s), centre = 0.5 * static_cast<double>(s);
  for (std::int64_t y = 0; y < s; ++y)
    for (std::int64_t x = 0; x < s; ++x) {
      const double dx = static_cast<double>(x) + 0.5 - centre, dy = static_cast<double>(y) + 0.5 - centre;
      if (dx * dx + dy * dy > r * r)
        for (std::int64_t c = 0; c < 3; ++c) t.data()[(c * s + y) * s + x] = 0.0f;
    }
  return t;
}

double mean_abs_diff(const Tensor& a, const Tensor& b) {
  double d = 0.0;
  for (std::int64_t i = 0; i < a.numel(); ++i) d += std::abs(static_cast<double>(a.data()[i]) - b.data()[i]);
  return d / static_cast<double>(a.numel());
}

double mean_of(const Tensor& t) {
  double s = 0.0;
  for (std::int64_t i = 0; i < t.numel(); ++i) s += t.data()[i];
  return s / static_cast<double>(t.numel());
}

double std_of(const Tensor& t) {
  const double m = mean_of(t);
  double s = 0.0;
  for (std::int64_t i = 0; i < t.numel(); ++i) s += (t.data()[i] - m) * (t.data()[i] - m);
  return std::sqrt(s / static_cast<double>(t.numel()));
}

bool bitwise_equal(const Tensor& a, const Tensor& b) {
  return a.shape() == b.shape() && std::equal(a.data(), a.data() + a.numel(), b.data());
}

bool available(Corruption c) { return c != Corruption::jpeg_compression || data::kHaveImageIo; }

// ---- names --------------------------------------------------------------------------------------

TEST(CorruptionNames, ImageNetCNamesInTableOrder) {
  const std::vector<std::string> expected{
      "gaussian_noise",   "shot_noise",   "impulse_noise",     "speckle_noise",
      "gaussian_blur",    "defocus_blur", "glass_blur",        "motion_blur",
      "zoom_blur",        "brightness",   "contrast",          "saturate",
      "jpeg_compression", "pixelate",     "elastic_transform", "fog"};
  ASSERT_EQ(data::imagenet_c_corruptions().size(), expected.size());
  for (std::size_t i = 0; i < expected.size(); ++i)
    EXPECT_EQ(data::corruption_name(data::imagenet_c_corruptions()[i]), expected[i]);
  const std::vector<std::string> fundus{"uneven_illumination", "halo", "dark_hole", "spots",
                                        "fundus_defocus"};
  ASSERT_EQ(data::fundus_corruptions().size(), fundus.size());
  for (std::size_t i = 0; i < fundus.size(); ++i) {
    EXPECT_EQ(data::corruption_name(data::fundus_corruptions()[i]), fundus[i]);
    EXPECT_TRUE(data::is_fundus_corruption(data::fundus_corruptions()[i]));
  }
  EXPECT_FALSE(data::is_fundus_corruption(Corruption::fog));
  EXPECT_FALSE(data::is_fundus_corruption(Corruption::glass_blur));
  // all = ImageNet-C's then the fundus ones
  std::vector<Corruption> both = data::imagenet_c_corruptions();
  both.insert(both.end(), data::fundus_corruptions().begin(), data::fundus_corruptions().end());
  EXPECT_EQ(data::all_corruptions(), both);
}

TEST(CorruptionNames, RoundTripAndErrors) {
  std::set<std::string_view> seen;
  for (Corruption c : data::all_corruptions()) {
    EXPECT_EQ(data::parse_corruption(data::corruption_name(c)), c);
    seen.insert(data::corruption_name(c));
    EXPECT_FALSE(data::corruption_parameters(c, 3).empty());
  }
  EXPECT_EQ(seen.size(), 21u);
  const std::string e = error_of([] { data::parse_corruption("gaussian"); });
  EXPECT_NE(e.find("'gaussian'"), std::string::npos) << e;
  EXPECT_NE(e.find("jpeg_compression"), std::string::npos) << e;
  EXPECT_NE(e.find("fundus_defocus"), std::string::npos) << e;
  EXPECT_NE(error_of([] { data::parse_corruption("Fog"); }), "(no error)");

  EXPECT_EQ(data::parse_corruption_list("fog,contrast"),
            (std::vector<Corruption>{Corruption::fog, Corruption::contrast}));
  EXPECT_EQ(data::parse_corruption_list("all").size(), 21u);
  EXPECT_EQ(data::parse_corruption_list("imagenet_c").size(), 16u);
  EXPECT_EQ(data::parse_corruption_list("fundus").size(), 5u);
  EXPECT_NE(error_of([] { data::parse_corruption_list("fog,,contrast"); }).find("empty entry"),
            std::string::npos);
  EXPECT_NE(error_of([] { data::parse_corruption_list("fog,fog"); }).find("twice"), std::string::npos);
  EXPECT_NE(error_of([] { data::parse_corruption_list("fog,snow"); }).find("'snow'"), std::string::npos);
}

// ---- errors -------------------------------------------------------------------------------------

TEST(CorruptionErrors, BadArgumentsNameTheValue) {
  const Tensor img = texture(8, 8);
  for (int severity : {0, 6, -1}) {
    const std::string e = error_of([&] { corrupt(img, Corruption::fog, severity, 1, 0); });
    EXPECT_NE(e.find("severity " + std::to_string(severity)), std::string::npos) << e;
  }
  const Tensor gray(Shape{1, 8, 8});
  std::string e = error_of([&] { corrupt(gray, Corruption::contrast, 1, 1, 0); });
  EXPECT_NE(e.find("(1, 8, 8)"), std::string::npos) << e;
  const Tensor flat(Shape{3, 64});
  e = error_of([&] { corrupt(flat, Corruption::contrast, 1, 1, 0); });
  EXPECT_NE(e.find("(3, 64)"), std::string::npos) << e;
  const Tensor batch(Shape{1, 3, 8, 8});
  e = error_of([&] { corrupt(batch, Corruption::contrast, 1, 1, 0); });
  EXPECT_NE(e.find("(1, 3, 8, 8)"), std::string::npos) << e;
  const Tensor empty(Shape{3, 0, 8});
  e = error_of([&] { corrupt(empty, Corruption::contrast, 1, 1, 0); });
  EXPECT_NE(e.find("empty image (3, 0, 8)"), std::string::npos) << e;
  const CView on_gpu(img.data(), img.shape(), Device::cuda(0));  // never dereferenced
  e = error_of([&] { corrupt(on_gpu, Corruption::contrast, 1, 1, 0); });
  EXPECT_NE(e.find("cuda:0"), std::string::npos) << e;
  e = error_of([&] { corrupt(img, Corruption::contrast, 1, 1, -1); });
  EXPECT_NE(e.find("sample -1"), std::string::npos) << e;
  const Tensor wrong_mask(Shape{1, 8, 9});
  e = error_of([&] { corrupt(img, Corruption::halo, 1, 1, 0, wrong_mask); });
  EXPECT_NE(e.find("(1, 8, 9)"), std::string::npos) << e;
  if (!data::kHaveImageIo) {
    e = error_of([&] { corrupt(img, Corruption::jpeg_compression, 1, 1, 0); });
    EXPECT_NE(e.find("libstb-dev"), std::string::npos) << e;
  }
}

// ---- every corruption ---------------------------------------------------------------------------

TEST(CorruptAll, EverySeverityKeepsShapeAndRange) {
  // A non-square image, a tiny one and a single pixel.
  for (const Tensor& img : {fundus_like(48), texture(37, 52), texture(5, 3), constant_image(1, 1, 0.4f)}) {
    for (Corruption c : data::all_corruptions()) {
      if (!available(c)) continue;
      for (int s = 1; s <= 5; ++s) {
        const Tensor out = corrupt(img, c, s, 3, 5);
        ASSERT_EQ(out.shape(), img.shape()) << data::corruption_name(c) << " " << s;
        for (std::int64_t i = 0; i < out.numel(); ++i) {
          const float v = out.data()[i];
          ASSERT_TRUE(v >= 0.0f && v <= 1.0f) << data::corruption_name(c) << " severity " << s << " "
                                              << img.shape().str() << " element " << i << " = " << v;
        }
      }
    }
  }
}

TEST(CorruptAll, EveryCorruptionChangesTheImage) {
  const Tensor img = fundus_like(224);  // at 64 px the mildest blurs are under a pixel
  for (Corruption c : data::all_corruptions()) {
    if (!available(c)) continue;
    for (int s = 1; s <= 5; ++s)
      EXPECT_GT(mean_abs_diff(corrupt(img, c, s, 3, 5), img), 1e-4) << data::corruption_name(c) << " " << s;
  }
}

TEST(CorruptAll, SameKeySameBitsOtherKeyOtherBits) {
  const Tensor img = fundus_like(48);
  const int threads = cpu_threads();
  for (Corruption c : data::all_corruptions()) {
    if (!available(c)) continue;
    for (int s = 1; s <= 5; ++s) {
      const Tensor a = corrupt(img, c, s, 11, 7);
      set_cpu_threads(1);
      const Tensor b = corrupt(img, c, s, 11, 7);
      set_cpu_threads(std::max(2, threads));
      const Tensor b2 = corrupt(img, c, s, 11, 7);
      set_cpu_threads(threads);
      EXPECT_TRUE(bitwise_equal(a, b) && bitwise_equal(a, b2)) << data::corruption_name(c) << " " << s;
      const Tensor other_sample = corrupt(img, c, s, 11, 8);
      const Tensor other_seed = corrupt(img, c, s, 12, 7);
      if (data::corruption_is_random(c)) {
        EXPECT_FALSE(bitwise_equal(a, other_sample)) << data::corruption_name(c) << " " << s;
        EXPECT_FALSE(bitwise_equal(a, other_seed)) << data::corruption_name(c) << " " << s;
      } else {
        EXPECT_TRUE(bitwise_equal(a, other_sample)) << data::corruption_name(c) << " " << s;
        EXPECT_TRUE(bitwise_equal(a, other_seed)) << data::corruption_name(c) << " " << s;
      }
    }
  }
}

TEST(CorruptAll, KeyLayout) {
  const RandomKey k = data::corruption_key(99, 1234, Corruption::fog, 3, 1);
  EXPECT_EQ(k.seed, 99u);
  EXPECT_EQ(k.purpose, kPurposeDistort);
  EXPECT_EQ(k.epoch, 1u);
  EXPECT_EQ(k.sample, 1234u);
  EXPECT_EQ(k.view, 14u * 8u + 3u);
  // Two corruptions at one severity, or one at two severities, never share a stream.
  std::set<std::uint32_t> views;
  for (Corruption c : data::all_corruptions())
    for (int s = 1; s <= 5; ++s) views.insert(data::corruption_key(0, 0, c, s).view);
  EXPECT_EQ(views.size(), 105u);
  // glass_blur was appended to the enum, so the streams of the 20 before it did not move
  EXPECT_EQ(data::corruption_key(0, 0, Corruption::glass_blur, 1).view, 20u * 8u + 1u);
  EXPECT_EQ(data::corruption_key(0, 0, Corruption::fundus_defocus, 1).view, 19u * 8u + 1u);
}

// Damage (mean |out - in|) grows with severity where ImageNet-C's parameters make it so.
TEST(CorruptSeverity, DamageGrowsWithSeverity) {
  const Tensor img = smooth_texture(128, 128);
  for (Corruption c : {Corruption::gaussian_noise, Corruption::shot_noise, Corruption::impulse_noise,
                       Corruption::speckle_noise, Corruption::gaussian_blur, Corruption::defocus_blur,
                       Corruption::motion_blur, Corruption::zoom_blur, Corruption::brightness,
                       Corruption::pixelate, Corruption::jpeg_compression, Corruption::elastic_transform}) {
    if (!available(c)) continue;
    double previous = 0.0;
    for (int s = 1; s <= 5; ++s) {
      const double d = mean_abs_diff(corrupt(img, c, s, 5, 2), img);
      EXPECT_GT(d, previous) << data::corruption_name(c) << " severity " << s;
      previous = d;
    }
  }
  double previous = std_of(img);
  for (int s = 1; s <= 5; ++s) {
    const double sd = std_of(corrupt(img, Corruption::contrast, s, 5, 2));
    EXPECT_LT(sd, previous) << "contrast severity " << s;
    previous = sd;
  }
}

TEST(CorruptSeverity, FundusDamageGrowsWithSeverity) {
  const Tensor img = fundus_like(96);
  for (Corruption c : data::fundus_corruptions()) {
    double previous = 0.0;
    for (int s = 1; s <= 5; ++s) {
      const double d = mean_abs_diff(corrupt(img, c, s, 5, 2), img);
      EXPECT_GT(d, previous) << data::corruption_name(c) << " severity " << s;
      previous = d;
    }
  }
}

// ---- noise statistics ---------------------------------------------------------------------------

TEST(CorruptNoise, GaussianNoiseHasStdC) {
  const Tensor img = constant_image(64, 64, 0.5f);
  const double n = static_cast<double>(img.numel());
  for (auto [s, sigma] : {std::pair{1, 0.08}, std::pair{2, 0.12}}) {
    const Tensor out = corrupt(img, Corruption::gaussian_noise, s, 21, 3);
    EXPECT_NEAR(mean_of(out), 0.5, 5.0 * sigma / std::sqrt(n)) << s;
    EXPECT_NEAR(std_of(out), sigma, 5.0 * sigma / std::sqrt(2.0 * n)) << s;
  }
}

TEST(CorruptNoise, ShotNoiseIsPoissonOverC) {
  const Tensor img = constant_image(64, 64, 0.5f);
  const double n = static_cast<double>(img.numel());
  for (auto [s, c] : {std::pair{1, 60.0}, std::pair{2, 25.0}}) {
    const Tensor out = corrupt(img, Corruption::shot_noise, s, 21, 3);
    const double var = 0.5 / c;  // Poisson(0.5 c) / c
    EXPECT_NEAR(mean_of(out), 0.5, 5.0 * std::sqrt(var / n)) << s;
    EXPECT_NEAR(std_of(out) * std_of(out), var, 0.06 * var) << s;
    for (std::int64_t i = 0; i < out.numel(); ++i) {
      const double k = out.data()[i] * c;
      ASSERT_NEAR(k, std::round(k), 1e-4) << "severity " << s << ": not a count over c";
    }
  }
}

TEST(CorruptNoise, ImpulseNoiseReplacesFractionC) {
  const Tensor img = constant_image(64, 64, 0.5f);
  const double n = static_cast<double>(img.numel());
  const double amounts[] = {0.03, 0.06, 0.09, 0.17, 0.27};
  for (int s = 1; s <= 5; ++s) {
    const Tensor out = corrupt(img, Corruption::impulse_noise, s, 21, 3);
    double salt = 0, pepper = 0, other = 0;
    for (std::int64_t i = 0; i < out.numel(); ++i) {
      const float v = out.data()[i];
      salt += v == 1.0f, pepper += v == 0.0f, other += v != 0.5f && v != 1.0f && v != 0.0f;
    }
    const double c = amounts[s - 1], tol = 5.0 * std::sqrt(c * (1.0 - c) / n);
    EXPECT_EQ(other, 0.0);
    EXPECT_NEAR((salt + pepper) / n, c, tol) << s;
    EXPECT_NEAR(salt / n, c / 2.0, tol) << s;
  }
}

TEST(CorruptNoise, SpeckleScalesWithTheValue) {
  const Tensor black = constant_image(16, 16, 0.0f);
  EXPECT_TRUE(bitwise_equal(corrupt(black, Corruption::speckle_noise, 5, 1, 1), black));
  const Tensor img = constant_image(64, 64, 0.25f);
  const Tensor out = corrupt(img, Corruption::speckle_noise, 1, 1, 1);  // std 0.25 * 0.15
  EXPECT_NEAR(std_of(out), 0.25 * 0.15,
              5.0 * 0.25 * 0.15 / std::sqrt(2.0 * static_cast<double>(img.numel())));
}

// ---- formulas -----------------------------------------------------------------------------------

TEST(CorruptFormula, BrightnessAddsToV) {
  // Gray pixels (S = 0): every channel becomes clip(V + c).
  const std::vector<float> grays{0.0f, 0.2f, 0.55f, 0.95f};
  std::vector<float> v;
  for (int c = 0; c < 3; ++c) v.insert(v.end(), grays.begin(), grays.end());
  const Tensor img = Tensor::from(v, Shape{3, 1, 4});
  const float dv[] = {0.1f, 0.2f, 0.3f, 0.4f, 0.5f};
  for (int s = 1; s <= 5; ++s) {
    const Tensor out = corrupt(img, Corruption::brightness, s, 0, 0);
    for (int c = 0; c < 3; ++c)
      for (std::size_t i = 0; i < grays.size(); ++i)
        EXPECT_EQ(out.data()[c * 4 + static_cast<int>(i)], std::min(1.0f, grays[i] + dv[s - 1]))
            << s << " " << i;
  }
  // A coloured pixel keeps hue and saturation: RGB scales by (V + c) / V.
  const Tensor px = Tensor::from({0.4f, 0.2f, 0.1f}, Shape{3, 1, 1});
  const Tensor out = corrupt(px, Corruption::brightness, 1, 0, 0);
  EXPECT_NEAR(out.data()[0], 0.5f, 1e-6);
  EXPECT_NEAR(out.data()[1], 0.25f, 1e-6);
  EXPECT_NEAR(out.data()[2], 0.125f, 1e-6);
}

TEST(CorruptFormula, SaturateScalesS) {
  // (0.8, 0.4, 0.2): V = 0.8, S = 0.75, hue in sector 0 with f = 1/3. Severity 1: S = 0.225, so
  // min = V (1 - S) = 0.62 and the middle channel t = V (1 - (1 - f) S) = 0.68.
  const Tensor px = Tensor::from({0.8f, 0.4f, 0.2f}, Shape{3, 1, 1});
  Tensor out = corrupt(px, Corruption::saturate, 1, 0, 0);
  EXPECT_NEAR(out.data()[0], 0.8, 1e-6);
  EXPECT_NEAR(out.data()[1], 0.68, 1e-6);
  EXPECT_NEAR(out.data()[2], 0.62, 1e-6);
  // The mirror pixel (0.2, 0.4, 0.8), blue the maximum: hue sector 3 with f = 2/3, (p, q, v).
  out = corrupt(Tensor::from({0.2f, 0.4f, 0.8f}, Shape{3, 1, 1}), Corruption::saturate, 1, 0, 0);
  EXPECT_NEAR(out.data()[0], 0.62, 1e-6);
  EXPECT_NEAR(out.data()[1], 0.68, 1e-6);
  EXPECT_NEAR(out.data()[2], 0.8, 1e-6);
  // Severity 4: S = clip(0.75 * 5 + 0.1) = 1: min = 0, middle = V f = 0.8 / 3.
  out = corrupt(px, Corruption::saturate, 4, 0, 0);
  EXPECT_NEAR(out.data()[0], 0.8, 1e-6);
  EXPECT_NEAR(out.data()[1], 0.8 / 3.0, 1e-6);
  EXPECT_NEAR(out.data()[2], 0.0, 1e-6);
  // Gray stays gray while the shift is 0; the shift of severity 4 tints it red (hue 0, S = 0.1).
  const Tensor gray = constant_image(1, 1, 0.5f);
  EXPECT_TRUE(bitwise_equal(corrupt(gray, Corruption::saturate, 3, 0, 0), gray));
  out = corrupt(gray, Corruption::saturate, 4, 0, 0);
  EXPECT_NEAR(out.data()[0], 0.5, 1e-6);
  EXPECT_NEAR(out.data()[1], 0.45, 1e-6);
  EXPECT_NEAR(out.data()[2], 0.45, 1e-6);
}

TEST(CorruptFormula, ContrastAroundChannelMeans) {
  const Tensor img = texture(23, 31);
  const std::int64_t plane = 23 * 31;
  const double factors[] = {0.4, 0.3, 0.2, 0.1, 0.05};
  for (int s = 1; s <= 5; ++s) {
    const Tensor out = corrupt(img, Corruption::contrast, s, 0, 0);
    for (std::int64_t c = 0; c < 3; ++c) {
      double mean = 0.0;
      for (std::int64_t i = 0; i < plane; ++i) mean += img.data()[c * plane + i];
      mean /= static_cast<double>(plane);
      for (std::int64_t i = 0; i < plane; ++i) {
        const double x = img.data()[c * plane + i];
        ASSERT_NEAR(out.data()[c * plane + i], (x - mean) * factors[s - 1] + mean, 1e-6) << s;
      }
    }
  }
}

TEST(CorruptFormula, FiltersKeepAConstantImage) {
  const Tensor img = constant_image(40, 56, 0.37f);
  for (Corruption c : {Corruption::gaussian_blur, Corruption::defocus_blur, Corruption::motion_blur,
                       Corruption::zoom_blur, Corruption::pixelate, Corruption::elastic_transform})
    for (int s = 1; s <= 5; ++s) {
      const Tensor out = corrupt(img, c, s, 1, 1);
      for (std::int64_t i = 0; i < out.numel(); ++i)
        ASSERT_NEAR(out.data()[i], 0.37f, 1e-6) << data::corruption_name(c) << " " << s << " at " << i;
    }
}

// Gaussian blur at 224 px against a direct double-precision sum: sigma = c, radius floor(4 sigma + 0.5),
// edge clamp.
TEST(CorruptFormula, GaussianBlurMatchesDirectSum) {
  const std::int64_t n = 224;
  const Tensor img = texture(n, n);
  for (int s : {1, 2}) {
    const double sigma = s;
    const int radius = static_cast<int>(4.0 * sigma + 0.5);
    const Tensor out = corrupt(img, Corruption::gaussian_blur, s, 0, 0);
    double total = 0.0;
    for (int i = -radius; i <= radius; ++i) total += std::exp(-0.5 * i * i / (sigma * sigma));
    for (auto [y, x] : {std::pair{0, 0}, std::pair{3, 200}, std::pair{111, 112}, std::pair{223, 5}}) {
      for (std::int64_t c = 0; c < 3; ++c) {
        double ref = 0.0;
        for (int i = -radius; i <= radius; ++i)
          for (int j = -radius; j <= radius; ++j) {
            const std::int64_t yy = std::clamp<std::int64_t>(y + i, 0, n - 1),
                               xx = std::clamp<std::int64_t>(x + j, 0, n - 1);
            ref += std::exp(-0.5 * (i * i + j * j) / (sigma * sigma)) * img.data()[(c * n + yy) * n + xx];
          }
        EXPECT_NEAR(out.data()[(c * n + y) * n + x], ref / (total * total), 2e-6)
            << s << " " << y << "," << x;
      }
    }
  }
}

TEST(CorruptFormula, DefocusDiskKernel) {
  // Radius 3 covers 29 lattice points, radius 10 covers 317; the kernel sums to 1 and is symmetric.
  for (auto [radius, alias, points] : {std::tuple{3.0, 0.1, 29.0}, std::tuple{10.0, 0.5, 317.0}}) {
    const auto taps = data::detail::corruption::disk_taps(radius, alias, 1.0);
    double sum = 0.0, centre = 0.0, sym = 0.0;
    int reach = 0;
    for (const auto& t : taps) {
      sum += t.weight;
      reach = std::max({reach, std::abs(t.dx), std::abs(t.dy)});
      if (t.dx == 0 && t.dy == 0) centre = t.weight;
      for (const auto& u : taps)
        if (u.dx == -t.dx && u.dy == t.dy)
          sym = std::max(sym, static_cast<double>(std::abs(u.weight - t.weight)));
    }
    EXPECT_NEAR(sum, 1.0, 1e-6);
    EXPECT_LE(reach, static_cast<int>(radius) + 2);
    EXPECT_LT(sym, 1e-7);
    if (alias < 0.2) EXPECT_NEAR(centre, 1.0 / points, 1e-4);  // alias 0.1: the bare disk
    else EXPECT_NEAR(centre, 1.0 / points, 0.2 / points);
  }
}

TEST(CorruptFormula, MotionBlurIsAOneSidedTrailWithin45Degrees) {
  const std::int64_t n = 224, y0 = 112, x0 = 112;
  Tensor img = constant_image(n, n, 0.0f);
  for (std::int64_t c = 0; c < 3; ++c) img.data()[(c * n + y0) * n + x0] = 1.0f;
  for (int s = 1; s <= 5; ++s)
    for (std::int64_t sample = 0; sample < 3; ++sample) {
      const Tensor out = corrupt(img, Corruption::motion_blur, s, 4, sample);
      double sum = 0.0;
      int left = 0, right = 0, far = 0;
      for (std::int64_t y = 0; y < n; ++y)
        for (std::int64_t x = 0; x < n; ++x) {
          const float v = out.data()[y * n + x];
          if (v == 0.0f) continue;
          sum += v;
          left += x<x0, right += x> x0;
          far = std::max<int>(far, static_cast<int>(std::max(std::abs(x - x0), std::abs(y - y0))));
          EXPECT_LE(std::abs(y - y0), std::abs(x - x0) + 1) << "steeper than 45 degrees";
        }
      EXPECT_NEAR(sum, 1.0, 1e-5);
      EXPECT_TRUE(left == 0 || right == 0) << "a motion trail is one-sided";
      // ImageMagick's trail: 2 radius + 1 taps, the first at the pixel itself.
      EXPECT_LE(far, 2 * static_cast<int>(data::detail::corruption::kMotionBlur[s - 1].a));
      EXPECT_GE(far, 5);
    }
}

TEST(CorruptFormula, ZoomFactorsFollowNumpyArange) {
  using data::detail::corruption::zoom_factors;
  EXPECT_EQ(zoom_factors(1.11, 0.01).size(), 12u);  // numpy's rounding includes 1.11
  EXPECT_EQ(zoom_factors(1.16, 0.01).size(), 16u);
  EXPECT_EQ(zoom_factors(1.21, 0.02).size(), 11u);
  EXPECT_EQ(zoom_factors(1.26, 0.02).size(), 13u);
  EXPECT_EQ(zoom_factors(1.31, 0.03).size(), 11u);
  EXPECT_DOUBLE_EQ(zoom_factors(1.31, 0.03).back(), 1.30);
}

TEST(CorruptFormula, ZoomBlurKeepsTheCentre) {
  // The centre pixel of an odd image is a fixed point of every zoom.
  const Tensor img = texture(65, 65);
  const Tensor out = corrupt(img, Corruption::zoom_blur, 5, 0, 0);
  for (std::int64_t c = 0; c < 3; ++c)
    EXPECT_NEAR(out.data()[(c * 65 + 32) * 65 + 32], img.data()[(c * 65 + 32) * 65 + 32], 1e-6);
}

TEST(CorruptFormula, PixelateAveragesBlocks) {
  // Severity 2 halves the side: each 2 x 2 block becomes its mean.
  const std::int64_t n = 224;
  const Tensor img = texture(n, n);
  const Tensor out = corrupt(img, Corruption::pixelate, 2, 0, 0);
  for (std::int64_t c = 0; c < 3; ++c)
    for (std::int64_t y = 0; y < n; ++y)
      for (std::int64_t x = 0; x < n; ++x) {
        const std::int64_t by = y / 2 * 2, bx = x / 2 * 2;
        const float* p = img.data() + c * n * n;
        const double mean = (static_cast<double>(p[by * n + bx]) + p[by * n + bx + 1] + p[(by + 1) * n + bx] +
                             p[(by + 1) * n + bx + 1]) /
                            4.0;
        ASSERT_NEAR(out.data()[(c * n + y) * n + x], mean, 1e-6) << y << "," << x;
      }
  // Severity 5 (0.25): 56 x 56 blocks of 4 x 4, so the output has at most 56 distinct rows.
  const Tensor coarse = corrupt(img, Corruption::pixelate, 5, 0, 0);
  int changes = 0;
  for (std::int64_t y = 1; y < n; ++y) changes += coarse.data()[y * n] != coarse.data()[(y - 1) * n];
  EXPECT_LE(changes, 55);
  EXPECT_GE(changes, 40);
}

TEST(CorruptFormula, JpegRoundTripsThroughEightBits) {
  if (!data::kHaveImageIo) GTEST_SKIP() << "built without stb (apt-get install libstb-dev)";
  const Tensor gray = constant_image(32, 48, 128.0f / 255.0f);
  for (int s = 1; s <= 5; ++s) {
    const Tensor out = corrupt(gray, Corruption::jpeg_compression, s, 0, 0);
    for (std::int64_t i = 0; i < out.numel(); ++i) {
      ASSERT_NEAR(out.data()[i] * 255.0f, std::round(out.data()[i] * 255.0f), 1e-3) << "not 8-bit";
      ASSERT_NEAR(out.data()[i], 128.0f / 255.0f, 2.5f / 255.0f) << "flat gray survives JPEG";
    }
  }
}

TEST(CorruptFormula, FogFollowsImageNetC) {
  // On a flat image x = 0.5, out = (x + c0 F) * x / (x + c0) with the fog layer F in [0, 1] spanning
  // most of that range (the map is normalised over 256 px, 224 of them kept).
  const double c0s[] = {1.5, 2.0, 2.5, 2.5, 3.0};
  const Tensor img = constant_image(224, 224, 0.5f);
  for (int s = 1; s <= 5; ++s) {
    const Tensor out = corrupt(img, Corruption::fog, s, 9, 1);
    const double c0 = c0s[s - 1];
    double lo = 1.0, hi = 0.0;
    for (std::int64_t i = 0; i < 224 * 224; ++i) {
      const double f = (out.data()[i] * (0.5 + c0) / 0.5 - 0.5) / c0;
      lo = std::min(lo, f), hi = std::max(hi, f);
      ASSERT_EQ(out.data()[i], out.data()[224 * 224 + i]) << "fog is gray";
    }
    EXPECT_GT(lo, -1e-5);
    EXPECT_LT(hi, 1.0 + 1e-5);
    EXPECT_GT(hi - lo, 0.6) << s;
  }
  // The map itself: normalised to [0, 1], point (0, 0) is a corner of the first square.
  const auto map = data::detail::corruption::plasma_fractal(64, 2.0, make_key(1, kPurposeTest));
  EXPECT_EQ(*std::min_element(map.begin(), map.end()), 0.0);
  EXPECT_EQ(*std::max_element(map.begin(), map.end()), 1.0);
}

// glass_source_at, the GPU's way to glass_blur's sources (each pixel follows its chain of copies on its
// own), against glass_source's pass over the image: every pixel, at deltas whose draws point forward
// (delta >= 2, chains longer than one step) or never (delta 1), empty and one-pixel visited regions.
TEST(CorruptFormula, GlassSourcePerPixelEqualsThePass) {
  namespace dc = data::detail::corruption;
  struct Case {
    std::int64_t h, w;
    int delta, iterations;
  };
  std::size_t longest = 0;
  for (const Case& c : {Case{30, 40, 1, 2}, Case{50, 37, 2, 3}, Case{64, 64, 4, 2}, Case{224, 224, 4, 2},
                        Case{224, 200, 3, 3}, Case{20, 9, 3, 1}, Case{5, 5, 3, 1}, Case{3, 3, 1, 1}}) {
    const RandomKey key =
        data::corruption_key(11, static_cast<std::uint64_t>(c.h * c.w), Corruption::glass_blur, 3);
    const std::vector<std::int32_t> ref = dc::glass_source(c.h, c.w, c.delta, c.iterations, key);
    std::size_t moved = 0;
    for (std::int64_t p = 0; p < c.h * c.w; ++p) {
      ASSERT_EQ(dc::glass_source_at(p, c.h, c.w, c.delta, c.iterations, key),
                ref[static_cast<std::size_t>(p)])
          << c.h << "x" << c.w << " delta " << c.delta << " iterations " << c.iterations << " pixel " << p;
      moved += ref[static_cast<std::size_t>(p)] != p;
    }
    if (c.h >= 20 && c.w >= 20)
      EXPECT_GT(moved, static_cast<std::size_t>(c.h * c.w / 4)) << c.h << "x" << c.w;
    // how far the chains reach: a copy of a copy moves a value more than delta
    for (std::int64_t p = 0; p < c.h * c.w; ++p) {
      const std::int64_t q = ref[static_cast<std::size_t>(p)];
      longest = std::max<std::size_t>(longest, static_cast<std::size_t>(std::abs(q / c.w - p / c.w)));
    }
  }
  EXPECT_GT(longest, 4u) << "no chain of copies longer than one step was exercised";
}

// The premise of fog_plasma_kernel: within a pass of the diamond-square the points are independent,
// so computing them in another order (here backwards, squares and diamonds each) gives plasma_fractal's
// bits. And the sides whose maps the device makes (the layer is the map's corner, unresized).
TEST(CorruptFormula, FogPlasmaPassesInAnyOrderAndTheDeviceRoute) {
  namespace dc = data::detail::corruption;
  for (std::int64_t m : {2, 8, 64, 256})
    for (double decay : {1.4, 2.0}) {
      const RandomKey key = data::corruption_key(3, 40 + m, Corruption::fog, 2);
      std::vector<double> map(static_cast<std::size_t>(m * m), 0.0);
      double wibble = 100.0;
      for (std::int64_t step = m; step >= 2; step /= 2) {
        const std::int64_t cells = (m / step) * (m / step);
        for (std::int64_t k = cells - 1; k >= 0; --k) dc::plasma_square(map.data(), m, step, k, wibble, key);
        for (std::int64_t k = 2 * cells - 1; k >= 0; --k)
          dc::plasma_diamond(map.data(), m, step, k, wibble, key);
        wibble /= decay;
      }
      const auto [lo, hi] = std::minmax_element(map.begin(), map.end());
      const double min = *lo, range = *hi - *lo;
      const std::vector<double> ref = dc::plasma_fractal(m, decay, key);
      for (std::size_t i = 0; i < map.size(); ++i)
        ASSERT_EQ(dc::plasma_layer_value(map[i], min, range), static_cast<float>(ref[i]))
            << "m " << m << " decay " << decay << " point " << i;
    }
  struct Side {
    std::int64_t h, w, m;
    bool unresized;
  };
  for (const Side& c : {Side{224, 224, 256, true}, Side{112, 84, 128, true}, Side{448, 300, 512, true},
                        Side{72, 90, 128, false}, Side{64, 64, 128, false}, Side{225, 225, 512, false}}) {
    const dc::FogMap f = dc::fog_map(c.h, c.w);
    EXPECT_EQ(f.m, c.m) << c.h << "x" << c.w;
    EXPECT_EQ(f.unresized(c.h, c.w), c.unresized) << c.h << "x" << c.w << ": region " << f.rh << "x" << f.rw;
    const std::vector<std::int64_t> samples{1, 2};
    const dc::CorruptBatchPlan plan = dc::corruption_plan(Corruption::fog, 4, 9, samples, c.h, c.w);
    EXPECT_EQ(plan.fog_map, c.unresized ? c.m : 0) << c.h << "x" << c.w;
    EXPECT_EQ(plan.layers.size(), c.unresized ? 0u : static_cast<std::size_t>(2 * c.h * c.w))
        << c.h << "x" << c.w;
  }
}

// glass_blur against ImageNet-C's code run literally on 8-bit values: blur, np.uint8(v * 255), the
// pass of tuple assignments on NumPy views (x[y, x] takes x[y + dy, x + dx], which keeps its value),
// blur of the 8-bit image / 255, clip. The draws are fovea's (glass_offset of Philox words 0, 1);
// the blur is the library's separable filter (checked against a direct sum above).
TEST(CorruptFormula, GlassBlurRunsImageNetCsLoopLiterally) {
  namespace dc = data::detail::corruption;
  const std::int64_t n = 224, hw = n * n;
  const Tensor img = texture(n, n);
  for (int severity : {1, 3, 5}) {
    const Tensor got = corrupt(img, Corruption::glass_blur, severity, 21, 4);
    const dc::Glass g = dc::kGlassBlur[static_cast<std::size_t>(severity - 1)];  // s = 1 at 224 px
    const std::vector<float> k = dc::gaussian_taps(g.sigma, static_cast<std::int64_t>(4.0 * g.sigma + 0.5));
    std::vector<float> blurred(static_cast<std::size_t>(3 * hw));
    for (std::int64_t c = 0; c < 3; ++c)
      data::detail::separable_filter(img.data() + c * hw, blurred.data() + c * hw, n, n, k,
                                     data::detail::Border::clamp);
    std::vector<std::uint8_t> x8(blurred.size());  // np.uint8(gaussian(x) * 255), (3, H, W)
    for (std::size_t i = 0; i < x8.size(); ++i)
      x8[i] = static_cast<std::uint8_t>(std::clamp(blurred[i], 0.0f, 1.0f) * 255.0f);
    const RandomKey key = data::corruption_key(21, 4, Corruption::glass_blur, severity);
    for (int it = 0; it < g.iterations; ++it)
      for (std::int64_t y = n - g.delta; y > g.delta; --y)
        for (std::int64_t x = n - g.delta; x > g.delta; --x) {
          const U32x4 b = random_block(key, static_cast<std::uint32_t>((it * n + y) * n + x));
          const std::int64_t dx = dc::glass_offset(b.v[0], g.delta), dy = dc::glass_offset(b.v[1], g.delta);
          ASSERT_TRUE(dx >= -g.delta && dx < g.delta && dy >= -g.delta && dy < g.delta);
          const std::int64_t p = y * n + x, q = (y + dy) * n + x + dx;
          std::uint8_t a[3], bb[3];  // the right-hand side: two views
          for (std::int64_t c = 0; c < 3; ++c) a[c] = x8[c * hw + q];
          for (std::int64_t c = 0; c < 3; ++c) x8[c * hw + p] = a[c];   // x[y, x] = view of x[y', x']
          for (std::int64_t c = 0; c < 3; ++c) bb[c] = x8[c * hw + p];  // the view of x[y, x], now a
          for (std::int64_t c = 0; c < 3; ++c) x8[c * hw + q] = bb[c];  // x[y', x'] = that view
        }
    std::vector<float> shuffled(x8.size()), want(x8.size());
    for (std::size_t i = 0; i < x8.size(); ++i) shuffled[i] = static_cast<float>(x8[i]) / 255.0f;
    for (std::int64_t c = 0; c < 3; ++c)
      data::detail::separable_filter(shuffled.data() + c * hw, want.data() + c * hw, n, n, k,
                                     data::detail::Border::clamp);
    std::size_t moved = 0;
    for (std::size_t i = 0; i < want.size(); ++i) {
      ASSERT_EQ(got.data()[i], std::clamp(want[i], 0.0f, 1.0f)) << "severity " << severity << " at " << i;
      moved += x8[i] != static_cast<std::uint8_t>(std::clamp(blurred[i], 0.0f, 1.0f) * 255.0f);
    }
    EXPECT_GT(moved, want.size() / 4) << "the shuffle moved few pixels at severity " << severity;
  }
}

// With max_delta 1 the draws are -1 or 0, so a visited pixel copies itself or its left, upper or
// upper-left neighbour, which the pass (bottom-up, right to left) has not visited yet: one pass's
// sources are those four pixels, a quarter each; pixels outside the visited rows and columns keep
// their own value.
TEST(CorruptFormula, GlassShuffleWithMaxDeltaOne) {
  namespace dc = data::detail::corruption;
  const std::int64_t h = 60, w = 70;
  const std::vector<std::int32_t> src = dc::glass_source(h, w, 1, 1, make_key(5, kPurposeTest));
  std::array<int, 4> counts{};
  for (std::int64_t y = 0; y < h; ++y)
    for (std::int64_t x = 0; x < w; ++x) {
      const std::int64_t p = y * w + x, from = src[static_cast<std::size_t>(p)];
      if (y < 2 || y > h - 1 || x < 2 || x > w - 1) {
        ASSERT_EQ(from, p) << y << "," << x;
        continue;
      }
      const std::int64_t dy = from / w - y, dx = from % w - x;
      ASSERT_TRUE((dy == 0 || dy == -1) && (dx == 0 || dx == -1)) << y << "," << x << " from " << from;
      ++counts[static_cast<std::size_t>(-2 * dy - dx)];
    }
  const double visited = static_cast<double>((h - 2) * (w - 2)), sd = std::sqrt(visited * 0.25 * 0.75);
  for (int c : counts) EXPECT_NEAR(c, visited / 4, 4 * sd);
  // Two passes compose: sources up to two pixels up and left.
  const std::vector<std::int32_t> two = dc::glass_source(h, w, 1, 2, make_key(5, kPurposeTest));
  for (std::int64_t p = 0; p < h * w; ++p) {
    const std::int64_t from = two[static_cast<std::size_t>(p)], dy = from / w - p / w, dx = from % w - p % w;
    ASSERT_TRUE(dy <= 0 && dy >= -2 && dx <= 0 && dx >= -2) << p << " from " << from;
  }
  EXPECT_NE(two, src);
  EXPECT_NE(error_of([&] { dc::glass_source(70000, 70000, 1, 3, make_key(5, kPurposeTest)); }).find("2^32"),
            std::string::npos);
}

TEST(CorruptFormula, GlassBlurStepsAConstantImageToEightBits) {
  for (float v : {0.5f, 0.37f, 1.0f, 0.0f}) {
    const Tensor out = corrupt(constant_image(50, 40, v), Corruption::glass_blur, 5, 1, 1);
    const float want = std::floor(v * 255.0f) / 255.0f;
    for (std::int64_t i = 0; i < out.numel(); ++i) ASSERT_NEAR(out.data()[i], want, 1e-6) << v << " at " << i;
  }
}

// ---- fundus -------------------------------------------------------------------------------------

TEST(CorruptFundus, SurroundOutsideTheMaskStaysBitwise) {
  const std::int64_t n = 96;
  const Tensor img = fundus_like(n);
  const Tensor detected = data::fov_mask(img);
  // A smaller explicit mask: the left 60 % of the disc.
  Tensor mask = data::fov_mask(img);
  for (std::int64_t y = 0; y < n; ++y)
    for (std::int64_t x = n * 6 / 10; x < n; ++x) mask.data()[y * n + x] = 0.0f;
  const Tensor* masks[] = {&detected, &mask};
  for (Corruption c : data::fundus_corruptions())
    for (int s = 1; s <= 5; ++s) {
      for (const Tensor* m : masks) {
        const Tensor out = m == &detected ? corrupt(img, c, s, 2, 3) : corrupt(img, c, s, 2, 3, *m);
        std::int64_t changed_inside = 0;
        for (std::int64_t ch = 0; ch < 3; ++ch)
          for (std::int64_t p = 0; p < n * n; ++p) {
            const float a = img.data()[ch * n * n + p], b = out.data()[ch * n * n + p];
            if (m->data()[p] == 0.0f)
              ASSERT_EQ(std::bit_cast<std::uint32_t>(a), std::bit_cast<std::uint32_t>(b))
                  << data::corruption_name(c) << " " << s << " changed pixel " << p << " outside the mask";
            else changed_inside += a != b;
          }
        EXPECT_GT(changed_inside, 0) << data::corruption_name(c) << " " << s;
      }
    }
}

TEST(CorruptFundus, DefocusDoesNotBleedTheSurroundIn) {
  const std::int64_t n = 96;
  Tensor img = fundus_like(n);
  for (std::int64_t i = 0; i < img.numel(); ++i)
    if (img.data()[i] != 0.0f) img.data()[i] = 0.6f;
  const Tensor mask = data::fov_mask(img);
  const Tensor out = corrupt(img, Corruption::fundus_defocus, 5, 0, 0);
  const Tensor plain = corrupt(img, Corruption::defocus_blur, 5, 0, 0);
  float rim_plain = 1.0f;
  for (std::int64_t p = 0; p < n * n; ++p) {
    if (mask.data()[p] == 0.0f) continue;
    ASSERT_NEAR(out.data()[p], 0.6f, 1e-5) << "pixel " << p;
    rim_plain = std::min(rim_plain, plain.data()[p]);
  }
  EXPECT_LT(rim_plain, 0.5f) << "a plain blur darkens the rim (so the test above means something)";
}

// Polar coordinates of pixel p of an n x n fundus_like image, in units of the disc radius.
double radius_of(std::int64_t p, std::int64_t n) {
  const double c = 0.5 * static_cast<double>(n);
  const double dx = static_cast<double>(p % n) + 0.5 - c, dy = static_cast<double>(p / n) + 0.5 - c;
  return std::sqrt(dx * dx + dy * dy) / (0.45 * static_cast<double>(n));
}

TEST(CorruptFundus, HaloBrightensTheRim) {
  const std::int64_t n = 128;
  const Tensor img = fundus_like(n);
  for (int s = 1; s <= 5; ++s) {
    const Tensor out = corrupt(img, Corruption::halo, s, 6, 1);
    double rim = 0, centre = 0;
    int rim_n = 0, centre_n = 0;
    for (std::int64_t p = 0; p < n * n; ++p) {
      const double r = radius_of(p, n);
      const double d = out.data()[p] - img.data()[p];  // red channel
      if (r > 0.85 && r < 0.97) rim += d, ++rim_n;
      if (r < 0.5) centre += d, ++centre_n;
    }
    EXPECT_GT(rim / rim_n, 0.03) << s;
    EXPECT_GT(rim / rim_n, 5.0 * std::abs(centre / centre_n)) << s;
  }
}

TEST(CorruptFundus, UnevenIlluminationIsASmoothGain) {
  const std::int64_t n = 128;
  Tensor img = fundus_like(n);
  for (std::int64_t i = 0; i < img.numel(); ++i)
    if (img.data()[i] != 0.0f) img.data()[i] = 0.5f;
  const double depth[] = {0.4, 0.8, 1.2, 1.6, 2.0};
  for (int s = 1; s <= 5; ++s) {
    const Tensor out = corrupt(img, Corruption::uneven_illumination, s, 6, 1);
    double lo = 10, hi = 0, jump = 0;
    for (std::int64_t p = 0; p < n * n; ++p) {
      if (img.data()[p] == 0.0f) continue;
      const double g = out.data()[p] / 0.5;
      lo = std::min(lo, g), hi = std::max(hi, g);
      if (p + 1 < n * n && img.data()[p + 1] != 0.0f)
        jump = std::max(jump, std::abs(out.data()[p + 1] / 0.5 - g));
    }
    const double a = depth[s - 1];
    EXPECT_GE(lo, std::exp(-a) - 1e-4) << s;
    EXPECT_LE(lo, std::exp(-a) * 1.25) << s << ": the far edge reaches e^-a";
    EXPECT_LE(hi, std::exp(a / 8.0) + 1e-4) << s;
    EXPECT_LT(jump, 0.05) << s;
  }
}

TEST(CorruptFundus, DarkHoleOnlyDarkens) {
  const std::int64_t n = 128;
  const Tensor img = fundus_like(n);
  const double depth[] = {0.35, 0.5, 0.65, 0.8, 0.9};
  for (int s = 1; s <= 5; ++s) {
    const Tensor out = corrupt(img, Corruption::dark_hole, s, 6, 1);
    double min_ratio = 1.0;
    for (std::int64_t i = 0; i < img.numel(); ++i) {
      ASSERT_LE(out.data()[i], img.data()[i]);
      if (img.data()[i] > 0.05f)
        min_ratio = std::min(min_ratio, static_cast<double>(out.data()[i] / img.data()[i]));
    }
    EXPECT_NEAR(min_ratio, 1.0 - depth[s - 1], 0.03) << s;
  }
}

TEST(CorruptFundus, SpotsAreSmallAndLocal) {
  const std::int64_t n = 128;
  const Tensor img = fundus_like(n);
  for (int s = 1; s <= 5; ++s) {
    const Tensor out = corrupt(img, Corruption::spots, s, 6, 1);
    std::int64_t changed = 0, brighter = 0, darker = 0;
    for (std::int64_t p = 0; p < n * n; ++p) {
      const float d = out.data()[p] - img.data()[p];
      changed += std::abs(d) > 0.02f, brighter += d > 0.02f, darker += d < -0.02f;
    }
    EXPECT_GT(changed, 0) << s;
    EXPECT_LT(static_cast<double>(changed) / static_cast<double>(n * n), 0.25) << s;
    if (s == 5) {
      EXPECT_TRUE(brighter > 0 && darker > 0) << "bright and dark spots";
    }
  }
}

}  // namespace
}  // namespace fovea

namespace fovea {
namespace {

// A batch (N, 3, H, W) of the given images (all H x W).
Tensor stack_images(const std::vector<const Tensor*>& images) {
  const Shape& s = images.front()->shape();
  Tensor out(Shape{static_cast<std::int64_t>(images.size()), s[0], s[1], s[2]});
  for (std::size_t k = 0; k < images.size(); ++k)
    std::copy(images[k]->data(), images[k]->data() + images[k]->numel(),
              out.data() + static_cast<std::int64_t>(k) * images[k]->numel());
  return out;
}

TEST(CorruptBatch, EqualsCorruptPerImageBitwise) {
  const Tensor a = fundus_like(48), b = texture(48, 48), black = constant_image(48, 48, 0.0f);
  const Tensor batch = stack_images({&a, &b, &black});
  const std::vector<std::int64_t> samples{4, 9, 2};
  Tensor out(batch.shape());
  for (Corruption c : data::all_corruptions())
    for (int severity : {1, 4}) {
      std::fill(out.data(), out.data() + out.numel(), std::numeric_limits<float>::quiet_NaN());
      data::corrupt_batch(batch, c, severity, 11, samples, out);
      const Tensor* images[] = {&a, &b, &black};
      for (std::size_t k = 0; k < 3; ++k) {
        const Tensor ref = corrupt(*images[k], c, severity, 11, samples[k]);
        EXPECT_TRUE(std::equal(ref.data(), ref.data() + ref.numel(), out.data() + k * ref.numel(),
                               [](float x, float y) { return std::bit_cast<std::uint32_t>(x) == std::bit_cast<std::uint32_t>(y); }))
            << data::corruption_name(c) << " severity " << severity << " image " << k;
      }
    }
}

TEST(CorruptBatch, MasksAreTheFieldsOfView) {
  const Tensor a = fundus_like(40), b = texture(40, 40);
  const Tensor batch = stack_images({&a, &b});
  // image 0: its detected field of view; image 1: only the left half is field of view
  Tensor masks(Shape{2, 1, 40, 40});
  const Tensor m0 = data::fov_mask(a);
  std::copy(m0.data(), m0.data() + m0.numel(), masks.data());
  for (std::int64_t y = 0; y < 40; ++y)
    for (std::int64_t x = 0; x < 40; ++x) masks.data()[1600 + y * 40 + x] = x < 20 ? 1.0f : 0.0f;
  const std::vector<std::int64_t> samples{0, 1};
  Tensor out(batch.shape());
  const CView mv = masks;
  data::corrupt_batch(batch, Corruption::halo, 5, 3, samples, out, &mv);
  const Tensor ref0 = corrupt(a, Corruption::halo, 5, 3, 0, m0);
  EXPECT_TRUE(std::equal(ref0.data(), ref0.data() + ref0.numel(), out.data()));
  for (std::int64_t c = 0; c < 3; ++c)
    for (std::int64_t y = 0; y < 40; ++y) {
      EXPECT_EQ(out.data()[4800 + (c * 40 + y) * 40 + 30], b.data()[(c * 40 + y) * 40 + 30]) << "outside the mask";
    }
  double changed = 0;
  for (std::int64_t y = 0; y < 40; ++y) changed += std::fabs(out.data()[4800 + y * 40 + 2] - b.data()[y * 40 + 2]);
  EXPECT_GT(changed, 0.1) << "the halo reaches the rim of the left-half field of view";
}

TEST(CorruptBatch, BadArgumentsNameTheProblem) {
  const Tensor a = texture(16, 16);
  const Tensor batch = stack_images({&a, &a});
  Tensor out(batch.shape());
  const std::vector<std::int64_t> two{0, 1}, one{0}, huge{0, std::int64_t{1} << 33};
  EXPECT_NE(error_of([&] { data::corrupt_batch(batch, Corruption::fog, 1, 0, one, out); }).find("1 sample indices"),
            std::string::npos);
  EXPECT_NE(error_of([&] { data::corrupt_batch(batch, Corruption::fog, 6, 0, two, out); }).find("severity 6"),
            std::string::npos);
  EXPECT_NE(error_of([&] { data::corrupt_batch(batch, Corruption::fog, 1, 0, huge, out); }).find("outside [0, 2^32)"),
            std::string::npos);
  Tensor same = batch.clone();
  EXPECT_NE(error_of([&] { data::corrupt_batch(same, Corruption::fog, 1, 0, two, same); }).find("alias"),
            std::string::npos);
  Tensor small(Shape{2, 3, 8, 8});
  EXPECT_NE(error_of([&] { data::corrupt_batch(batch, Corruption::fog, 1, 0, two, small); }).find("(2, 3, 8, 8)"),
            std::string::npos);
  Tensor masks(Shape{2, 1, 8, 8});
  const CView mv = masks;
  EXPECT_NE(error_of([&] { data::corrupt_batch(batch, Corruption::halo, 1, 0, two, out, &mv); }).find("masks must be"),
            std::string::npos);
  const Tensor single = texture(16, 16);
  EXPECT_NE(error_of([&] { data::corrupt_batch(single, Corruption::fog, 1, 0, two, out); }).find("(N, 3, H, W)"),
            std::string::npos);
}

}  // namespace
}  // namespace fovea
