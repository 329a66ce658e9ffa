// tests/test_augment.cpp: the augmentation ops and pipelines on the CPU: flips and rotations exactly,
// crop-resize against a double-precision bilinear reference, torchvision's RandomResizedCrop boxes and
// fallback, colour ops against their formulas on hand-picked pixels, the blur kernel and its reflect
// padding, replay of (seed, epoch, sample, view), and the statistics of the drawn parameters.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <map>
#include <random>
#include <vector>

#include "fovea/data/augment.hpp"
#include "fovea/fovea.hpp"
#include "fovea/ops/augment.hpp"

namespace fovea {
namespace {

using data::AugmentConfig;

// Values in (0, 1), never exactly 0.
Tensor random_images(std::int64_t n, std::int64_t h, std::int64_t w, std::uint64_t seed) {
  std::mt19937_64 gen(seed);
  std::uniform_real_distribution<float> u(0.01f, 0.99f);
  std::vector<float> v(static_cast<std::size_t>(n * 3 * h * w));
  for (auto& x : v) x = u(gen);
  return Tensor::from(v, Shape{n, 3, h, w});
}

// A (1, 3, 1, k) image of the given pixels.
Tensor pixels(const std::vector<std::array<float, 3>>& rgb) {
  const auto k = static_cast<std::int64_t>(rgb.size());
  std::vector<float> v(static_cast<std::size_t>(3 * k));
  for (std::int64_t i = 0; i < k; ++i)
    for (int c = 0; c < 3; ++c) v[static_cast<std::size_t>(c * k + i)] = rgb[static_cast<std::size_t>(i)][c];
  return Tensor::from(v, Shape{1, 3, 1, k});
}
std::array<float, 3> pixel_at(const Tensor& t, std::int64_t i) {
  const std::int64_t k = t.shape().w() * t.shape().h();
  return {t.data()[i], t.data()[k + i], t.data()[2 * k + i]};
}

AugmentParams jitter_only(int op, float factor) {
  AugmentParams p = neutral_params(1, 1);
  p.jitter = 1;
  p.jitter_ops = static_cast<std::uint8_t>(1u << op);
  p.brightness = op == kJitterBrightness ? factor : 1.0f;
  p.contrast = op == kJitterContrast ? factor : 1.0f;
  p.saturation = op == kJitterSaturation ? factor : 1.0f;
  p.hue = op == kJitterHue ? factor : 0.0f;
  return p;
}

std::vector<float> apply(void (*op)(CView, std::span<const AugmentParams>, View), const Tensor& x,
                         const AugmentParams& p) {
  Tensor out(x.shape());
  const std::vector<AugmentParams> params(static_cast<std::size_t>(x.shape().n()), p);
  op(x, params, out);
  return out.to_vector();
}

double clamp01(double v) { return std::min(1.0, std::max(0.0, v)); }
double gray(double r, double g, double b) { return 0.2989 * r + 0.587 * g + 0.114 * b; }

// Textbook HSV hue rotation in double (Python's colorsys), the reference for adjust_hue.
std::array<double, 3> hue_reference(double r, double g, double b, double shift) {
  const double mx = std::max({r, g, b}), mn = std::min({r, g, b});
  const double v = mx;
  if (mx == mn) return {r, g, b};
  const double s = (mx - mn) / mx;
  const double rc = (mx - r) / (mx - mn), gc = (mx - g) / (mx - mn), bc = (mx - b) / (mx - mn);
  double h = r == mx ? bc - gc : (g == mx ? 2.0 + rc - bc : 4.0 + gc - rc);
  h = std::fmod(h / 6.0 + 1.0, 1.0);
  h = h + shift - std::floor(h + shift);
  const int i = static_cast<int>(std::floor(h * 6.0)) % 6;
  const double f = h * 6.0 - std::floor(h * 6.0);
  const double p = v * (1 - s), q = v * (1 - s * f), t = v * (1 - s * (1 - f));
  switch (i) {
    case 0: return {v, t, p};
    case 1: return {q, v, p};
    case 2: return {p, v, t};
    case 3: return {p, q, v};
    case 4: return {t, p, v};
    default: return {v, p, q};
  }
}

// ---- geometry -----------------------------------------------------------------------------------

TEST(Augment, HorizontalFlipTwiceIsIdentityExactly) {
  Tensor x = random_images(3, 33, 33, 1);
  AugmentParams p = neutral_params(33, 33);
  p.hflip = 1;
  const std::vector<AugmentParams> params(3, p);
  Tensor once(x.shape()), twice(x.shape());
  random_resized_crop_flip(x, params, once);
  random_resized_crop_flip(once, params, twice);
  const std::vector<float> a = x.to_vector(), b = twice.to_vector(), f = once.to_vector();
  for (std::size_t i = 0; i < a.size(); ++i) ASSERT_EQ(a[i], b[i]) << "element " << i;
  // One flip mirrors each row exactly.
  for (int y = 0; y < 33; ++y)
    for (int xx = 0; xx < 33; ++xx) ASSERT_EQ(f[y * 33 + xx], a[y * 33 + 32 - xx]);
}

TEST(Augment, VerticalFlipMirrorsRowsExactly) {
  Tensor x = random_images(1, 7, 7, 2);
  AugmentParams p = neutral_params(7, 7);
  p.vflip = 1;
  const std::vector<float> out = apply(random_resized_crop_flip, x, p);
  const std::vector<float> a = x.to_vector();
  for (int c = 0; c < 3; ++c)
    for (int y = 0; y < 7; ++y)
      for (int xx = 0; xx < 7; ++xx) ASSERT_EQ(out[(c * 7 + y) * 7 + xx], a[(c * 7 + 6 - y) * 7 + xx]);
}

TEST(Augment, NeutralParamsCopyExactly) {
  Tensor x = random_images(2, 9, 9, 3);
  const std::vector<float> out = apply(random_resized_crop_flip, x, neutral_params(9, 9));
  EXPECT_EQ(out, x.to_vector());
}

TEST(Augment, Rotation90IsRot90) {
  const int s = 9;
  Tensor x = random_images(1, s, s, 4);
  AugmentParams p = neutral_params(s, s);
  p.rotation_degrees = 90.0f;
  const std::vector<float> out = apply(random_resized_crop_flip, x, p);
  const std::vector<float> a = x.to_vector();
  // Counter-clockwise: out[i][j] = in[j][S-1-i] (torch.rot90(img, 1, (-2, -1))).
  for (int c = 0; c < 3; ++c)
    for (int i = 0; i < s; ++i)
      for (int j = 0; j < s; ++j)
        ASSERT_NEAR(out[(c * s + i) * s + j], a[(c * s + j) * s + s - 1 - i], 1e-5) << i << "," << j;
}

TEST(Augment, Rotation45FillsCornersWithZero) {
  const int s = 16;
  Tensor x = random_images(1, s, s, 5);
  AugmentParams p = neutral_params(s, s);
  p.rotation_degrees = 45.0f;
  const std::vector<float> out = apply(random_resized_crop_flip, x, p);
  for (int c = 0; c < 3; ++c) {
    EXPECT_EQ(out[(c * s + 0) * s + 0], 0.0f);
    EXPECT_EQ(out[(c * s + s - 1) * s + s - 1], 0.0f);
    EXPECT_NE(out[(c * s + s / 2) * s + s / 2], 0.0f);
  }
}

// PyTorch's interpolate(mode="bilinear", align_corners=False) of the crop, in double.
std::vector<double> crop_resize_reference(const std::vector<float>& img, int h, int w, const AugmentParams& p,
                                          int s) {
  std::vector<double> out(static_cast<std::size_t>(3 * s * s));
  auto taps = [](int o, int in, int outn, int& i0, int& i1, double& l1) {
    const double scale = static_cast<double>(in) / outn;
    double src = scale * (o + 0.5) - 0.5;
    if (src < 0) src = 0;
    i0 = static_cast<int>(src);
    i1 = i0 + (i0 < in - 1 ? 1 : 0);
    l1 = std::min(1.0, src - i0);
  };
  for (int c = 0; c < 3; ++c)
    for (int oy = 0; oy < s; ++oy)
      for (int ox = 0; ox < s; ++ox) {
        int y0, y1, x0, x1;
        double ly, lx;
        taps(oy, p.crop_height, s, y0, y1, ly);
        taps(ox, p.crop_width, s, x0, x1, lx);
        auto at = [&](int y, int xx) {
          return static_cast<double>(img[(c * h + p.crop_top + y) * w + p.crop_left + xx]);
        };
        out[(c * s + oy) * s + ox] = (1 - ly) * ((1 - lx) * at(y0, x0) + lx * at(y0, x1)) +
                                     ly * ((1 - lx) * at(y1, x0) + lx * at(y1, x1));
      }
  return out;
}

TEST(Augment, CropResizeMatchesBilinearReference) {
  const int h = 37, w = 41;
  Tensor x = random_images(1, h, w, 6);
  const std::vector<float> a = x.to_vector();
  for (const auto& [top, left, ch, cw, s] : std::vector<std::array<int, 5>>{
           {3, 5, 20, 30, 32}, {0, 0, 37, 41, 7}, {10, 2, 5, 3, 33}, {36, 40, 1, 1, 4}, {0, 0, 37, 41, 1}}) {
    AugmentParams p = neutral_params(h, w);
    p.crop_top = top, p.crop_left = left, p.crop_height = ch, p.crop_width = cw;
    Tensor out = full(Shape{1, 3, s, s}, std::nanf(""));
    const std::vector<AugmentParams> params{p};
    random_resized_crop_flip(x, params, out);
    const std::vector<double> ref = crop_resize_reference(a, h, w, p, s);
    const std::vector<float> got = out.to_vector();
    for (std::size_t i = 0; i < got.size(); ++i)
      ASSERT_NEAR(got[i], ref[i], 2e-6)
          << "box " << top << "," << left << "," << ch << "," << cw << " S " << s << " at " << i;
  }
}

// ---- RandomResizedCrop boxes ----------------------------------------------------------------------

TEST(Augment, CropBoxesStayInsideTheImage) {
  const AugmentConfig c = data::simclr(32);
  const std::int64_t sizes[][2] = {{37, 41}, {256, 256}, {1, 1}, {3, 500}, {500, 3}};
  for (const auto& hw : sizes) {
    for (std::uint32_t i = 0; i < 2000; ++i) {
      const AugmentParams p = data::draw_augment_params(c, data::augment_key(7, 1, i, 0), hw[0], hw[1]);
      ASSERT_GE(p.crop_top, 0);
      ASSERT_GE(p.crop_left, 0);
      ASSERT_GE(p.crop_height, 1);
      ASSERT_GE(p.crop_width, 1);
      ASSERT_LE(p.crop_top + p.crop_height, hw[0]) << "draw " << i;
      ASSERT_LE(p.crop_left + p.crop_width, hw[1]) << "draw " << i;
    }
  }
}

TEST(Augment, CropFollowsTorchvisionFallback) {
  AugmentConfig c = data::simclr(32);
  c.scale_min = 0.9f, c.scale_max = 1.0f;  // no attempt can fit the thin side
  for (std::uint32_t i = 0; i < 50; ++i) {
    // Wide: in_ratio 100 > 4/3: h = 10, w = round(10 * 4/3) = 13, i = 0, j = (1000 - 13) // 2 = 493.
    AugmentParams p = data::draw_augment_params(c, data::augment_key(1, 0, i, 0), 10, 1000);
    EXPECT_EQ(p.crop_top, 0);
    EXPECT_EQ(p.crop_left, 493);
    EXPECT_EQ(p.crop_height, 10);
    EXPECT_EQ(p.crop_width, 13);
    // Tall: in_ratio 0.01 < 3/4: w = 10, h = round(10 / 0.75) = 13, i = 493, j = 0.
    p = data::draw_augment_params(c, data::augment_key(1, 0, i, 0), 1000, 10);
    EXPECT_EQ(p.crop_top, 493);
    EXPECT_EQ(p.crop_left, 0);
    EXPECT_EQ(p.crop_height, 13);
    EXPECT_EQ(p.crop_width, 10);
  }
  // Ratio range containing the image ratio but no attempt fitting: the whole image.
  c.scale_min = c.scale_max = 1.0f;
  c.ratio_min = 0.5f, c.ratio_max = 0.5f;
  const AugmentParams p = data::draw_augment_params(c, data::augment_key(1, 0, 0, 0), 20, 30);
  // target 600, aspect 0.5: w = round(sqrt(300)) = 17, h = round(sqrt(1200)) = 35 > 20 -> fallback;
  // in_ratio 1.5 > 0.5: h = 20, w = round(20 * 0.5) = 10, j = 10.
  EXPECT_EQ(p.crop_top, 0);
  EXPECT_EQ(p.crop_height, 20);
  EXPECT_EQ(p.crop_width, 10);
  EXPECT_EQ(p.crop_left, 10);
}

TEST(Augment, FullScaleUnitRatioCropIsTheWholeImage) {
  AugmentConfig c = data::simclr(32);
  c.scale_min = c.scale_max = 1.0f;
  c.ratio_min = c.ratio_max = 1.0f;
  for (std::uint32_t i = 0; i < 100; ++i) {
    const AugmentParams p = data::draw_augment_params(c, data::augment_key(3, 0, i, 1), 64, 64);
    EXPECT_EQ(p.crop_top, 0);
    EXPECT_EQ(p.crop_left, 0);
    EXPECT_EQ(p.crop_height, 64);
    EXPECT_EQ(p.crop_width, 64);
  }
}

TEST(Augment, TestTransformIsTheCentreCrop) {
  const AugmentConfig c = data::test_transform(224);
  const AugmentParams p = data::draw_augment_params(c, data::augment_key(9, 4, 17, 0), 256, 300);
  EXPECT_EQ(p.crop_height, 224);
  EXPECT_EQ(p.crop_width, 224);
  EXPECT_EQ(p.crop_top, 16);
  EXPECT_EQ(p.crop_left, 38);
  EXPECT_FALSE(p.hflip || p.vflip || p.jitter || p.grayscale || p.blur || p.solarize);
  EXPECT_EQ(p.rotation_degrees, 0.0f);
}

// ---- colour ops ---------------------------------------------------------------------------------

TEST(Augment, BrightnessScalesAndClamps) {
  const Tensor x = pixels({{0.2f, 0.5f, 0.8f}, {0.01f, 0.6f, 0.99f}});
  const Tensor out = Tensor::from(apply(color_jitter, x, jitter_only(kJitterBrightness, 1.5f)), x.shape());
  const auto p0 = pixel_at(out, 0), p1 = pixel_at(out, 1);
  EXPECT_NEAR(p0[0], 0.3, 1e-6);
  EXPECT_NEAR(p0[1], 0.75, 1e-6);
  EXPECT_EQ(p0[2], 1.0f);
  EXPECT_NEAR(p1[0], 0.015, 1e-6);
  EXPECT_NEAR(p1[1], 0.9, 1e-6);
  EXPECT_EQ(p1[2], 1.0f);
}

TEST(Augment, ContrastBlendsWithTheGrayscaleMean) {
  const std::vector<std::array<float, 3>> px{{0.2f, 0.5f, 0.8f}, {0.9f, 0.1f, 0.3f}, {0.05f, 0.05f, 0.95f}};
  const Tensor x = pixels(px);
  double mean = 0;
  for (const auto& p : px) mean += gray(p[0], p[1], p[2]) / 3.0;
  for (const float c : {0.3f, 1.7f}) {
    const Tensor out = Tensor::from(apply(color_jitter, x, jitter_only(kJitterContrast, c)), x.shape());
    for (int i = 0; i < 3; ++i)
      for (int ch = 0; ch < 3; ++ch)
        EXPECT_NEAR(pixel_at(out, i)[ch], clamp01(c * px[i][ch] + (1 - c) * mean), 1e-6) << "c " << c;
  }
}

TEST(Augment, SaturationBlendsWithThePixelGray) {
  const std::vector<std::array<float, 3>> px{{0.2f, 0.5f, 0.8f}, {0.9f, 0.1f, 0.3f}};
  const Tensor x = pixels(px);
  for (const float s : {0.0f, 0.4f, 1.8f}) {
    const Tensor out = Tensor::from(apply(color_jitter, x, jitter_only(kJitterSaturation, s)), x.shape());
    for (int i = 0; i < 2; ++i) {
      const double l = gray(px[i][0], px[i][1], px[i][2]);
      for (int ch = 0; ch < 3; ++ch)
        EXPECT_NEAR(pixel_at(out, i)[ch], clamp01(s * px[i][ch] + (1 - s) * l), 1e-6) << "s " << s;
    }
  }
}

TEST(Augment, HueRotatesIncludingWrapAround) {
  // Pure colours: red + 1/3 -> green, blue + 0.5 -> yellow (wraps past 1), red - 0.25 -> violet
  // (wraps below 0), gray unchanged.
  const Tensor x = pixels({{1, 0, 0}, {0, 0, 1}, {1, 0, 0}, {0.4f, 0.4f, 0.4f}});
  struct Case {
    float shift;
    int pixel;
    std::array<float, 3> want;
  };
  for (const Case& k : {Case{1.0f / 3, 0, {0, 1, 0}}, Case{0.5f, 1, {1, 1, 0}}, Case{-0.25f, 2, {0.5f, 0, 1}},
                        Case{0.3f, 3, {0.4f, 0.4f, 0.4f}}}) {
    const Tensor out = Tensor::from(apply(color_jitter, x, jitter_only(kJitterHue, k.shift)), x.shape());
    for (int ch = 0; ch < 3; ++ch)
      EXPECT_NEAR(pixel_at(out, k.pixel)[ch], k.want[ch], 2e-6) << "shift " << k.shift;
  }
  // Random pixels and shifts against the textbook HSV rotation.
  std::mt19937 gen(11);
  std::uniform_real_distribution<float> u(0.0f, 1.0f), shift(-0.5f, 0.5f);
  std::vector<std::array<float, 3>> px(200);
  for (auto& p : px) p = {u(gen), u(gen), u(gen)};
  const Tensor rx = pixels(px);
  for (int t = 0; t < 5; ++t) {
    const float h = shift(gen);
    const Tensor out = Tensor::from(apply(color_jitter, rx, jitter_only(kJitterHue, h)), rx.shape());
    for (int i = 0; i < 200; ++i) {
      const auto ref = hue_reference(px[i][0], px[i][1], px[i][2], h);
      for (int ch = 0; ch < 3; ++ch)
        ASSERT_NEAR(pixel_at(out, i)[ch], ref[ch], 1e-5) << "pixel " << i << " shift " << h;
    }
  }
}

TEST(Augment, JitterRunsInTheSampleOrder) {
  const std::vector<std::array<float, 3>> px{{0.2f, 0.5f, 0.8f}, {0.7f, 0.6f, 0.1f}};
  const Tensor x = pixels(px);
  AugmentParams p = neutral_params(1, 2);
  p.jitter = 1;
  p.jitter_ops = (1u << kJitterBrightness) | (1u << kJitterContrast);
  p.brightness = 1.6f;
  p.contrast = 0.5f;
  auto expect = [&](bool brightness_first) {
    std::vector<std::array<double, 3>> v(2);
    for (int i = 0; i < 2; ++i)
      for (int c = 0; c < 3; ++c) v[i][c] = px[i][c];
    auto bright = [&] {
      for (auto& q : v)
        for (auto& c : q) c = clamp01(c * 1.6);
    };
    auto contrast = [&] {
      const double m = (gray(v[0][0], v[0][1], v[0][2]) + gray(v[1][0], v[1][1], v[1][2])) / 2;
      for (auto& q : v)
        for (auto& c : q) c = clamp01(0.5 * c + 0.5 * m);
    };
    if (brightness_first) bright(), contrast();
    else contrast(), bright();
    return v;
  };
  for (const bool bfirst : {true, false}) {
    const std::uint8_t b_then_c[4] = {0, 1, 2, 3}, c_then_b[4] = {3, 1, 0, 2};
    std::copy(bfirst ? b_then_c : c_then_b, (bfirst ? b_then_c : c_then_b) + 4, p.order);
    const Tensor out = Tensor::from(apply(color_jitter, x, p), x.shape());
    const auto ref = expect(bfirst);
    for (int i = 0; i < 2; ++i)
      for (int c = 0; c < 3; ++c)
        EXPECT_NEAR(pixel_at(out, i)[c], ref[i][c], 1e-6) << "brightness first " << bfirst;
  }
  // The two orders differ (pixel 0's blue saturates only when brightness comes first).
  EXPECT_GT(std::fabs(expect(true)[0][2] - expect(false)[0][2]), 1e-3);
}

TEST(Augment, JitterFlagOffCopies) {
  const Tensor x = random_images(2, 5, 6, 12);
  AugmentParams p = jitter_only(kJitterBrightness, 1.5f);
  p.jitter = 0;
  EXPECT_EQ(apply(color_jitter, x, p), x.to_vector());
}

TEST(Augment, GrayscaleUsesTorchvisionWeights) {
  const Tensor x = pixels({{1, 0, 0}, {0, 1, 0}, {0, 0, 1}, {0.2f, 0.5f, 0.8f}});
  AugmentParams p = neutral_params(1, 4);
  p.grayscale = 1;
  const Tensor out = Tensor::from(apply(grayscale, x, p), x.shape());
  const double want[4] = {0.2989, 0.587, 0.114, gray(0.2f, 0.5f, 0.8f)};
  for (int i = 0; i < 4; ++i)
    for (int c = 0; c < 3; ++c) EXPECT_NEAR(pixel_at(out, i)[c], want[i], 1e-7);
  p.grayscale = 0;
  EXPECT_EQ(apply(grayscale, x, p), x.to_vector());
}

TEST(Augment, SolarizeInvertsAtAndAboveTheThreshold) {
  const Tensor x = pixels({{0.49f, 0.5f, 0.7f}, {0.0f, 1.0f, 0.2f}});
  AugmentParams p = neutral_params(1, 2);
  p.solarize = 1;
  p.solarize_threshold = 0.5f;
  const Tensor out = Tensor::from(apply(solarize, x, p), x.shape());
  EXPECT_EQ(pixel_at(out, 0)[0], 0.49f);
  EXPECT_EQ(pixel_at(out, 0)[1], 0.5f);
  EXPECT_NEAR(pixel_at(out, 0)[2], 0.3f, 1e-7);
  EXPECT_EQ(pixel_at(out, 1)[0], 0.0f);
  EXPECT_EQ(pixel_at(out, 1)[1], 0.0f);
  EXPECT_EQ(pixel_at(out, 1)[2], 0.2f);
}

TEST(Augment, NormalizeChannels) {
  const Tensor x = random_images(3, 4, 5, 13);
  Tensor out(x.shape());
  normalize_channels(x, kDrStats, out);
  const std::vector<float> a = x.to_vector(), o = out.to_vector();
  for (std::size_t i = 0; i < a.size(); ++i) {
    const int c = static_cast<int>((i / 20) % 3);
    ASSERT_NEAR(o[i], (a[i] - kDrStats.mean[c]) / kDrStats.std[c], 1e-6);
  }
}

// ---- blur ---------------------------------------------------------------------------------------

TEST(Augment, GaussianKernelIsNormalisedGaussian) {
  for (const auto& [k, sigma] :
       std::vector<std::pair<int, float>>{{3, 0.1f}, {5, 1.0f}, {23, 2.0f}, {1, 1.0f}}) {
    const std::vector<float> w = detail::gaussian_kernel1d(k, sigma);
    double sum = 0, ref_sum = 0;
    for (int i = 0; i < k; ++i) ref_sum += std::exp(-0.5 * std::pow((i - (k - 1) / 2.0) / sigma, 2));
    for (int i = 0; i < k; ++i) {
      sum += w[i];
      EXPECT_NEAR(w[i], std::exp(-0.5 * std::pow((i - (k - 1) / 2.0) / sigma, 2)) / ref_sum, 1e-7);
      EXPECT_FLOAT_EQ(w[i], w[k - 1 - i]);
    }
    EXPECT_NEAR(sum, 1.0, 1e-6);
  }
}

TEST(Augment, BlurOfConstantIsConstant) {
  Tensor x = full(Shape{2, 3, 7, 33}, 0.37f);
  AugmentParams p = neutral_params(7, 33);
  p.blur = 1;
  p.blur_kernel = 9;  // wider than the 7 rows: reflect folds again
  p.blur_sigma = 1.7f;
  for (const float v : apply(gaussian_blur, x, p)) ASSERT_NEAR(v, 0.37f, 1e-6);
}

TEST(Augment, BlurOfDeltaIsTheKernel) {
  const int s = 33, k = 7, r = k / 2;
  const float sigma = 1.3f;
  const std::vector<float> w = detail::gaussian_kernel1d(k, sigma);
  AugmentParams p = neutral_params(s, s);
  p.blur = 1;
  p.blur_kernel = k;
  p.blur_sigma = sigma;
  // A delta in the middle gives the outer product of the kernel around it.
  std::vector<float> v(3 * s * s, 0.0f);
  for (int c = 0; c < 3; ++c) v[(c * s + 16) * s + 16] = 1.0f;
  std::vector<float> out = apply(gaussian_blur, Tensor::from(v, Shape{1, 3, s, s}), p);
  for (int c = 0; c < 3; ++c)
    for (int y = 0; y < s; ++y)
      for (int x = 0; x < s; ++x) {
        const int dy = y - 16 + r, dx = x - 16 + r;
        const double want = (dy >= 0 && dy < k && dx >= 0 && dx < k) ? double(w[dy]) * w[dx] : 0.0;
        ASSERT_NEAR(out[(c * s + y) * s + x], want, 1e-8) << y << "," << x;
      }
  // A delta in the corner, with reflect padding (edge not repeated): out[y][x] = w[r - y] w[r - x].
  std::fill(v.begin(), v.end(), 0.0f);
  for (int c = 0; c < 3; ++c) v[c * s * s] = 1.0f;
  out = apply(gaussian_blur, Tensor::from(v, Shape{1, 3, s, s}), p);
  for (int y = 0; y < s; ++y)
    for (int x = 0; x < s; ++x) {
      const double want = (y <= r && x <= r) ? double(w[r - y]) * w[r - x] : 0.0;
      ASSERT_NEAR(out[y * s + x], want, 1e-8) << y << "," << x;
    }
}

// The plan drops a kernel's tails below kBlurNegligibleWeight (sigma 0.1 / 0.5 / 1 / 2 of a 23-tap
// kernel keep 1 / 7 / 13 / 23 taps, the centre ones, bitwise), and the blur with the kept taps stays
// within float rounding of torchvision's full 23-tap blur computed in double.
TEST(Augment, BlurDropsOnlyNegligibleTails) {
  const int h = 19, w = 23, k = 23, r = k / 2;
  const Tensor x = random_images(1, h, w, 31);
  const std::vector<float> px = x.to_vector();
  for (const auto& [sigma, kept] :
       std::vector<std::pair<float, int>>{{0.1f, 1}, {0.5f, 7}, {1.0f, 13}, {2.0f, 23}}) {
    AugmentParams p = neutral_params(h, w);
    p.blur = 1;
    p.blur_kernel = k;
    p.blur_sigma = sigma;
    const std::vector<AugmentParams> params{p};
    const detail::AugmentBatchPlan plan = detail::make_augment_plan(params, h, w, h, w, false);
    ASSERT_EQ(plan.samples[0].blur_kernel, kept) << "sigma " << sigma;
    const std::vector<float> full = detail::gaussian_kernel1d(k, sigma);
    const int trim = (k - kept) / 2;
    ASSERT_EQ(plan.blur_weights, std::vector<float>(full.begin() + trim, full.end() - trim))
        << "sigma " << sigma;
    for (int t = 0; t < trim; ++t) EXPECT_LT(full[t], detail::kBlurNegligibleWeight);
    if (trim > 0) {
      EXPECT_GE(full[trim], detail::kBlurNegligibleWeight);
    }
    // torchvision: reflect padding by 11, the full kernel along rows then columns (in double here)
    const std::vector<float> out = apply(gaussian_blur, x, p);
    const auto refl = [](int i, int n) { return math::augment::reflect_index(i, n); };
    double worst = 0.0;
    for (int c = 0; c < 3; ++c) {
      std::vector<double> rows(static_cast<std::size_t>(h * w));
      for (int y = 0; y < h; ++y)
        for (int xx = 0; xx < w; ++xx) {
          double a = 0.0;
          for (int t = 0; t < k; ++t) a += double(full[t]) * px[(c * h + y) * w + refl(xx + t - r, w)];
          rows[y * w + xx] = a;
        }
      for (int y = 0; y < h; ++y)
        for (int xx = 0; xx < w; ++xx) {
          double a = 0.0;
          for (int t = 0; t < k; ++t) a += double(full[t]) * rows[refl(y + t - r, h) * w + xx];
          worst = std::max(worst, std::abs(a - out[(c * h + y) * w + xx]));
        }
    }
    EXPECT_LT(worst, 3e-7) << "sigma " << sigma;
  }
}

TEST(Augment, BlurInPlaceEqualsOutOfPlace) {
  Tensor x = random_images(2, 9, 11, 14);
  AugmentParams p = neutral_params(9, 11);
  p.blur = 1;
  p.blur_kernel = 5;
  p.blur_sigma = 0.8f;
  const std::vector<float> out = apply(gaussian_blur, x, p);
  const std::vector<AugmentParams> params(2, p);
  gaussian_blur(x, params, x);
  EXPECT_EQ(x.to_vector(), out);
}

// ---- pipelines, replay, statistics ----------------------------------------------------------------

TEST(Augment, ReplayIsBitwiseAndViewsAndEpochsDiffer) {
  const Tensor x = random_images(5, 37, 41, 15);
  const std::vector<std::int64_t> ids{3, 14, 15, 92, 65};
  AugmentConfig c = data::simclr(32);
  c.rotation_degrees = 10.0f;
  c.solarize_p = 0.2f;
  auto run = [&](int epoch, int view) {
    Tensor out(Shape{5, 3, 32, 32});
    data::augment_batch(x, ids, epoch, view, c, 1234, out);
    return out.to_vector();
  };
  const std::vector<float> a = run(2, 0);
  EXPECT_EQ(a, run(2, 0));
  EXPECT_NE(a, run(2, 1));
  EXPECT_NE(a, run(3, 0));
  // The same sample gets the same view whatever its position in the batch.
  const std::vector<float> all = x.to_vector();
  const Tensor y = Tensor::from(
      std::vector<float>(all.begin() + 3 * 3 * 37 * 41, all.begin() + 4 * 3 * 37 * 41), Shape{1, 3, 37, 41});
  Tensor one(Shape{1, 3, 32, 32});
  const std::vector<std::int64_t> id{92};
  data::augment_batch(y, id, 2, 0, c, 1234, one);
  EXPECT_EQ(one.to_vector(), std::vector<float>(a.begin() + 3 * 3 * 32 * 32, a.begin() + 4 * 3 * 32 * 32));
  // Finite values, normalised with the DR statistics.
  for (const float v : a) ASSERT_TRUE(std::isfinite(v));
}

TEST(Augment, TwoViewAugmenterProducesViewsZeroAndOne) {
  const Tensor x = random_images(3, 20, 24, 16);
  const std::vector<std::int64_t> ids{0, 1, 2};
  const AugmentConfig c = data::moco_v2(16);
  const data::TwoViewAugmenter aug(c, 77);
  Tensor v0(Shape{3, 3, 16, 16}), v1(Shape{3, 3, 16, 16}), ref(Shape{3, 3, 16, 16});
  aug(x, ids, 5, v0, v1);
  data::augment_batch(x, ids, 5, 1, c, 77, ref);
  EXPECT_EQ(v1.to_vector(), ref.to_vector());
  EXPECT_NE(v0.to_vector(), v1.to_vector());
}

TEST(Augment, ParameterStatisticsMatchTheConfig) {
  AugmentConfig c = data::simclr(224);
  c.vflip_p = 0.3f;
  c.solarize_p = 0.1f;
  c.rotation_degrees = 15.0f;
  const int n = 10000;
  double hflip = 0, vflip = 0, jitter = 0, gray_count = 0, blur = 0, sol = 0;
  std::map<int, int> perms;
  for (int i = 0; i < n; ++i) {
    const AugmentParams p =
        data::draw_augment_params(c, data::augment_key(42, 0, static_cast<std::uint32_t>(i), 0), 256, 256);
    hflip += p.hflip, vflip += p.vflip, jitter += p.jitter, gray_count += p.grayscale, blur += p.blur,
        sol += p.solarize;
    perms[p.order[0] * 1000 + p.order[1] * 100 + p.order[2] * 10 + p.order[3]]++;
    ASSERT_GE(p.brightness, 0.2f);
    ASSERT_LE(p.brightness, 1.8f);
    ASSERT_GE(p.hue, -0.2f);
    ASSERT_LE(p.hue, 0.2f);
    ASSERT_GE(p.blur_sigma, 0.1f);
    ASSERT_LE(p.blur_sigma, 2.0f);
    ASSERT_LE(std::fabs(p.rotation_degrees), 15.0f);
    ASSERT_EQ(p.blur_kernel, 23);
    ASSERT_EQ(p.jitter_ops, 0xF);
    ASSERT_EQ(detail::make_augment_plan(std::span(&p, 1), 256, 256, 224, 224).samples.size(), 1u);
  }
  auto within = [n](double count, double prob) {
    const double sd = std::sqrt(prob * (1 - prob) / n);
    return std::fabs(count / n - prob) <= 4 * sd;
  };
  EXPECT_TRUE(within(hflip, 0.5)) << hflip;
  EXPECT_TRUE(within(vflip, 0.3)) << vflip;
  EXPECT_TRUE(within(jitter, 0.8)) << jitter;
  EXPECT_TRUE(within(gray_count, 0.2)) << gray_count;
  EXPECT_TRUE(within(blur, 0.5)) << blur;
  EXPECT_TRUE(within(sol, 0.1)) << sol;
  EXPECT_EQ(perms.size(), 24u);
  for (const auto& [perm, count] : perms)
    EXPECT_TRUE(within(count, 1.0 / 24)) << "permutation " << perm << ": " << count;
}

// The documented slots: decision k reads uniform(key, slot k) of the stream of (seed, purpose
// augment, epoch, sample, view), so a sample's parameters can be recomputed from the key alone.
TEST(Augment, DrawsUseTheDocumentedSlots) {
  const AugmentConfig c = data::simclr(224);
  for (std::uint32_t i = 0; i < 200; ++i) {
    const RandomKey key = make_key(5, kPurposeAugment, 2, i, 1);
    const AugmentParams p = data::draw_augment_params(c, key, 256, 256);
    EXPECT_EQ(p.hflip != 0, uniform(key, data::kSlotHflip) < 0.5f);
    EXPECT_EQ(p.jitter != 0, uniform(key, data::kSlotJitter) < 0.8f);
    EXPECT_EQ(p.blur_sigma, uniform_between(uniform(key, data::kSlotBlurSigma), 0.1f, 2.0f));
    EXPECT_EQ(p.brightness,
              uniform_between(uniform(key, data::kSlotJitterFactors), 1.0f - 0.8f, 1.0f + 0.8f));
  }
}

TEST(Augment, PresetsMatchTheReference) {
  const AugmentConfig s = data::simclr(), m = data::moco_v2(), t = data::supervised_train(96);
  EXPECT_EQ(s.output_size, 224);
  EXPECT_FLOAT_EQ(s.scale_min, 0.08f);
  EXPECT_FLOAT_EQ(s.brightness, 0.8f);
  EXPECT_FLOAT_EQ(s.hue, 0.2f);
  EXPECT_EQ(s.blur_kernel(), 23);
  EXPECT_FLOAT_EQ(m.scale_min, 0.2f);
  EXPECT_FLOAT_EQ(m.contrast, 0.4f);
  EXPECT_FLOAT_EQ(m.hue, 0.1f);
  EXPECT_FLOAT_EQ(m.jitter_p, 0.8f);
  EXPECT_FLOAT_EQ(m.grayscale_p, 0.2f);
  EXPECT_FLOAT_EQ(m.blur_p, 0.5f);
  EXPECT_FLOAT_EQ(m.hflip_p, 0.5f);
  EXPECT_EQ(t.jitter_p, 0.0f);
  EXPECT_EQ(t.hflip_p, 0.5f);
  EXPECT_EQ(data::simclr(32).blur_kernel(), 3);
  EXPECT_FLOAT_EQ(kDrStats.mean[0], 0.3203f);
  EXPECT_FLOAT_EQ(kDrStats.std[2], 0.1318f);
  EXPECT_FLOAT_EQ(kImageNetStats.mean[1], 0.456f);
}

TEST(Augment, NamedPresetsAndKeyChangesParse) {
  const AugmentConfig base = data::simclr(96, kImageNetStats);
  // A preset by name keeps the base's size and normalisation.
  const AugmentConfig m = data::parse_augment("moco_v2", base);
  EXPECT_EQ(m.output_size, 96);
  EXPECT_FLOAT_EQ(m.stats.mean[1], 0.456f);
  EXPECT_EQ(data::describe_augment(m), data::describe_augment(data::moco_v2(96, kImageNetStats)));
  // fundus: MoCo v2's crops, flips and blur with weak photometric jitter, no hue, no grayscale.
  const AugmentConfig f = data::parse_augment("fundus", base);
  EXPECT_FLOAT_EQ(f.scale_min, 0.2f);
  EXPECT_FLOAT_EQ(f.jitter_p, 0.8f);
  EXPECT_FLOAT_EQ(f.brightness, 0.2f);
  EXPECT_FLOAT_EQ(f.contrast, 0.2f);
  EXPECT_FLOAT_EQ(f.saturation, 0.1f);
  EXPECT_EQ(f.hue, 0.0f);
  EXPECT_EQ(f.grayscale_p, 0.0f);
  EXPECT_FLOAT_EQ(f.blur_p, 0.5f);
  const AugmentConfig c = data::parse_augment("crop", base);
  EXPECT_EQ(c.jitter_p, 0.0f);
  EXPECT_EQ(c.blur_p, 0.0f);
  EXPECT_FLOAT_EQ(c.scale_min, 0.08f);
  // Keys alone change the base; after a preset they change the preset; spaces are allowed.
  const AugmentConfig k = data::parse_augment("hue=0, grayscale_p=0", base);
  EXPECT_EQ(k.hue, 0.0f);
  EXPECT_EQ(k.grayscale_p, 0.0f);
  EXPECT_FLOAT_EQ(k.brightness, 0.8f);  // SimCLR's, untouched
  const AugmentConfig p = data::parse_augment("fundus,scale_min=0.08,vflip_p=0.5,rotation_degrees=180", base);
  EXPECT_FLOAT_EQ(p.scale_min, 0.08f);
  EXPECT_FLOAT_EQ(p.vflip_p, 0.5f);
  EXPECT_FLOAT_EQ(p.rotation_degrees, 180.0f);
  EXPECT_FLOAT_EQ(p.brightness, 0.2f);
  // describe_augment round-trips every field and prints short numbers.
  const std::string text = data::describe_augment(p);
  EXPECT_NE(text.find("brightness=0.2,"), std::string::npos) << text;
  EXPECT_NE(text.find("ratio_max=1.3333334"), std::string::npos) << text;
  const AugmentConfig back = data::parse_augment(text, data::moco_v2(96, kImageNetStats));
  for (const auto& key : data::detail::kAugmentKeys) EXPECT_EQ(back.*(key.field), p.*(key.field)) << key.name;
  EXPECT_EQ(data::describe_augment(back), text);
}

TEST(Augment, BadAugmentationTextNamesTheCulprit) {
  const AugmentConfig base = data::simclr(64);
  const auto message = [&](const std::string& text) {
    try {
      (void)data::parse_augment(text, base);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(message("byol").find("'byol' is not one of simclr, moco_v2, fundus, crop"), std::string::npos);
  EXPECT_NE(message("hue=0,fundus").find("a preset name can only come first"), std::string::npos);
  EXPECT_NE(message("jitter=0.4").find("unknown key 'jitter'"), std::string::npos);
  EXPECT_NE(message("hue=abc").find("hue='abc' is not a finite number"), std::string::npos);
  EXPECT_NE(message("hue=0.1x").find("is not a finite number"), std::string::npos);
  EXPECT_NE(message("blur_p=nan").find("is not a finite number"), std::string::npos);
  EXPECT_NE(message("hue=0,hue=0.1").find("key 'hue' given twice"), std::string::npos);
  EXPECT_NE(message("fundus,,hue=0").find("an empty item"), std::string::npos);
  EXPECT_NE(message("").find("an empty item"), std::string::npos);
  EXPECT_NE(message("hue=0.7").find("hue <= 0.5"), std::string::npos);
  EXPECT_NE(message("grayscale_p=1.5").find("probabilities must be in [0, 1]"), std::string::npos);
  EXPECT_NE(message("scale_min=0.9,scale_max=0.5").find("crop scale (0.9, 0.5)"), std::string::npos);
  EXPECT_EQ(message("moco_v2, hue = 0.05"), "no error");
}

TEST(Augment, BadArgumentsThrow) {
  const Tensor x = random_images(2, 8, 8, 17);
  Tensor out(Shape{2, 3, 4, 4});
  std::vector<AugmentParams> one(1, neutral_params(8, 8));
  EXPECT_THROW(random_resized_crop_flip(x, one, out), Error);
  std::vector<AugmentParams> bad(2, neutral_params(8, 8));
  bad[1].crop_top = 1;  // box overflows the bottom edge
  EXPECT_THROW(random_resized_crop_flip(x, bad, out), Error);
  Tensor wrong(Shape{2, 3, 4, 5});
  EXPECT_THROW(random_resized_crop_flip(x, std::vector<AugmentParams>(2, neutral_params(8, 8)), wrong),
               Error);
  std::vector<AugmentParams> perm(2, neutral_params(8, 8));
  perm[0].order[1] = 0;
  Tensor same(x.shape());
  EXPECT_THROW(color_jitter(x, perm, same), Error);
  AugmentConfig c = data::simclr(4);
  c.hflip_p = 1.5f;
  const std::vector<std::int64_t> ids{0, 1};
  EXPECT_THROW(data::augment_batch(x, ids, 0, 0, c, 1, out), Error);
}

}  // namespace
}  // namespace fovea
