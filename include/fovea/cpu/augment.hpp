// fovea/cpu/augment.hpp: per-sample augmentation parameters (AugmentParams), the per-sample plan both
// twins execute (AugmentPlan), the per-pixel formulas written once as FOVEA_HD functions, and the CPU
// twins of the augmentation ops (contracts in ops/augment.hpp).
//
// Pixel formulas follow torchvision's tensor path: bilinear resampling with align_corners = false and
// no antialias; adjust_brightness / contrast / saturation as _blend(...).clamp(0, 1); adjust_hue via
// _rgb2hsv / _hsv2rgb; rgb_to_grayscale with (0.2989, 0.587, 0.114); solarize as where(x >= t, 1 - x,
// x); Gaussian blur with torchvision's kernel and reflect padding, applied as two separable passes.
#pragma once

#include <array>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <span>
#include <vector>

#include "fovea/core/config.hpp"
#include "fovea/core/error.hpp"
#include "fovea/core/parallel.hpp"
#include "fovea/core/tensor.hpp"

namespace fovea {

// The colour-jitter ops, in the numbering of torchvision's ColorJitter (fn_idx).
inline constexpr int kJitterBrightness = 0;
inline constexpr int kJitterContrast = 1;
inline constexpr int kJitterSaturation = 2;
inline constexpr int kJitterHue = 3;
inline constexpr int kJitterOps = 4;

// Everything random about one augmented view of one sample: a plain aggregate (trivially copyable),
// drawn on the host by data::draw_augment_params and copied to the device by the CUDA twins.
// Neutral values (no crop change, no flip, factors 1 / 0, flags 0) leave the image unchanged
// except for the resampling of the crop box.
struct AugmentParams {
  // RandomResizedCrop: the box [crop_top, crop_top + crop_height) x [crop_left, crop_left +
  // crop_width) of the input, resampled to the output size.
  std::int32_t crop_top = 0, crop_left = 0, crop_height = 1, crop_width = 1;
  std::uint8_t hflip = 0, vflip = 0;
  float rotation_degrees = 0.0f;  // counter-clockwise about the output centre, zero fill
  // ColorJitter: applied when jitter != 0, op order[k] at step k; op j runs only when bit j of
  // jitter_ops is set (torchvision skips an op whose strength is 0).
  std::uint8_t jitter = 0;
  std::uint8_t jitter_ops = 0;
  std::uint8_t order[kJitterOps] = {0, 1, 2, 3};
  float brightness = 1.0f, contrast = 1.0f, saturation = 1.0f, hue = 0.0f;
  std::uint8_t grayscale = 0;
  // GaussianBlur: an odd kernel size and sigma > 0.
  std::uint8_t blur = 0;
  std::int32_t blur_kernel = 1;
  float blur_sigma = 1.0f;
  std::uint8_t solarize = 0;
  float solarize_threshold = 0.5f;
};

// Per-channel normalisation (x - mean) / std; kIdentityStats leaves values unchanged.
struct ChannelStats {
  float mean[3] = {0.0f, 0.0f, 0.0f};
  float std[3] = {1.0f, 1.0f, 1.0f};
};
inline constexpr ChannelStats kIdentityStats{};
// The EyePACS (Kaggle DR) statistics of the study's code and torchvision's ImageNet statistics.
inline constexpr ChannelStats kDrStats{{0.3203f, 0.2244f, 0.1609f}, {0.2622f, 0.1833f, 0.1318f}};
inline constexpr ChannelStats kImageNetStats{{0.485f, 0.456f, 0.406f}, {0.229f, 0.224f, 0.225f}};

// torchvision's rgb_to_grayscale weights (tensor path; PIL uses 0.299).
inline constexpr float kGrayR = 0.2989f, kGrayG = 0.587f, kGrayB = 0.114f;

namespace detail {

// The plan of one sample: AugmentParams resolved against the input and output sizes, with every
// transcendental value (cos, sin, blur weights) computed once on the host so both twins use the
// same bits. Trivially copyable; passed to kernels through device memory.
struct AugmentPlan {
  // geometry: the crop box, the scale crop / out, the rotation, the flips
  std::int32_t crop_top = 0, crop_left = 0, crop_height = 1, crop_width = 1;
  float scale_y = 1.0f, scale_x = 1.0f;
  float cos_a = 1.0f, sin_a = 0.0f, center = 0.0f;
  std::int32_t hflip = 0, vflip = 0, rotate = 0;
  // colour
  std::int32_t jitter_ops = 0;  // 0 when jitter is not applied
  std::int32_t order[kJitterOps] = {0, 1, 2, 3};
  float factor[kJitterOps] = {1.0f, 1.0f, 1.0f, 0.0f};
  std::int32_t contrast = 0;  // 1 when contrast runs (its mean must be computed first)
  std::int32_t grayscale = 0;
  std::int32_t solarize = 0;
  float threshold = 0.5f;
  // blur: blur_kernel taps at blur_weights[blur_offset ...] (the drawn kernel without its negligible
  // tails: blur_tail_taps); blur_slot is the sample's index among the blurred samples of the batch
  // (-1 when not blurred)
  std::int32_t blur = 0, blur_kernel = 1, blur_offset = 0, blur_slot = -1;
};

// torchvision's _get_gaussian_kernel1d: exp(-x^2 / (2 sigma^2)) at x = -(k-1)/2 .. (k-1)/2,
// normalised to sum 1 (computed in double, rounded to float once).
inline std::vector<float> gaussian_kernel1d(int kernel, float sigma) {
  FOVEA_CHECK(kernel >= 1 && kernel % 2 == 1, "gaussian kernel size must be odd and positive, got ", kernel);
  FOVEA_CHECK(sigma > 0.0f && std::isfinite(sigma), "gaussian sigma must be positive, got ", sigma);
  std::vector<double> pdf(static_cast<std::size_t>(kernel));
  const double half = (kernel - 1) * 0.5;
  double sum = 0.0;
  for (int i = 0; i < kernel; ++i) {
    const double x = (-half + i) / sigma;
    pdf[i] = std::exp(-0.5 * x * x);
    sum += pdf[i];
  }
  std::vector<float> w(static_cast<std::size_t>(kernel));
  for (int i = 0; i < kernel; ++i) w[i] = static_cast<float>(pdf[i] / sum);
  return w;
}

// Gaussian weights below this (the weights sum to 1) are left out of the blur: all of them together
// move an output by less than 2e-9 of the image's range (a thirtieth of a float's rounding step at 1),
// while a small sigma leaves most of a 23-tap kernel below it (sigma 0.5: 7 taps kept, 2.0: all 23).
inline constexpr float kBlurNegligibleWeight = 0x1p-32f;

// The taps of the odd kernel w that the blur runs: the first and last `trim` taps of each side are
// dropped while they are below kBlurNegligibleWeight (a Gaussian decreases away from its centre, so
// they are its tails). Returns trim; the centre tap always stays.
inline int blur_tail_taps(const std::vector<float>& w) {
  const int radius = static_cast<int>(w.size()) / 2;
  int trim = 0;
  const auto negligible = [&](int i) { return w[static_cast<std::size_t>(i)] < kBlurNegligibleWeight; };
  while (trim < radius && negligible(trim) && negligible(static_cast<int>(w.size()) - 1 - trim)) ++trim;
  return trim;
}

// Throws unless p is valid; the crop box is checked against height x width only when check_crop.
inline void check_augment_params(const AugmentParams& p, std::int64_t height, std::int64_t width,
                                 std::size_t index, bool check_crop = true) {
  FOVEA_CHECK(
      !check_crop || (p.crop_height >= 1 && p.crop_width >= 1 && p.crop_top >= 0 && p.crop_left >= 0 &&
                      p.crop_top + p.crop_height <= height && p.crop_left + p.crop_width <= width),
      "augment params of sample ", index, ": crop box (top ", p.crop_top, ", left ", p.crop_left, ", height ",
      p.crop_height, ", width ", p.crop_width, ") outside the ", height, "x", width, " image");
  FOVEA_CHECK(std::isfinite(p.rotation_degrees), "augment params of sample ", index, ": rotation not finite");
  bool seen[kJitterOps] = {false, false, false, false};
  for (int k = 0; k < kJitterOps; ++k) {
    FOVEA_CHECK(p.order[k] < kJitterOps && !seen[p.order[k]], "augment params of sample ", index,
                ": jitter order is not a permutation of 0..3");
    seen[p.order[k]] = true;
  }
  FOVEA_CHECK(std::isfinite(p.brightness) && std::isfinite(p.contrast) && std::isfinite(p.saturation) &&
                  std::isfinite(p.hue) && p.brightness >= 0.0f && p.contrast >= 0.0f && p.saturation >= 0.0f,
              "augment params of sample ", index,
              ": jitter factors must be finite and >= 0 (hue any finite)");
  if (p.blur)
    FOVEA_CHECK(
        p.blur_kernel >= 1 && p.blur_kernel % 2 == 1 && p.blur_sigma > 0.0f && std::isfinite(p.blur_sigma),
        "augment params of sample ", index, ": blur kernel ", p.blur_kernel, " must be odd and sigma ",
        p.blur_sigma, " positive");
}

// Plans of a batch and the blur weight table they index.
struct AugmentBatchPlan {
  std::vector<AugmentPlan> samples;
  std::vector<float> blur_weights;
  std::vector<std::int32_t> blurred;  // indices of the blurred samples, ascending
};

// Resolves params against an input of in_h x in_w and an output of out_h x out_w. The geometry is
// used (and the crop boxes checked) only when geometry is true: random_resized_crop_flip and
// augment_images; the pixel-wise ops ignore the crop box.
inline AugmentBatchPlan make_augment_plan(std::span<const AugmentParams> params, std::int64_t in_h,
                                          std::int64_t in_w, std::int64_t out_h, std::int64_t out_w,
                                          bool geometry = true) {
  AugmentBatchPlan plan;
  plan.samples.resize(params.size());
  for (std::size_t n = 0; n < params.size(); ++n) {
    const AugmentParams& p = params[n];
    check_augment_params(p, in_h, in_w, n, geometry);
    AugmentPlan& s = plan.samples[n];
    s.crop_top = p.crop_top;
    s.crop_left = p.crop_left;
    s.crop_height = p.crop_height;
    s.crop_width = p.crop_width;
    s.scale_y = static_cast<float>(p.crop_height) / static_cast<float>(out_h);
    s.scale_x = static_cast<float>(p.crop_width) / static_cast<float>(out_w);
    s.hflip = p.hflip != 0;
    s.vflip = p.vflip != 0;
    s.rotate = p.rotation_degrees != 0.0f;
    const double radians = static_cast<double>(p.rotation_degrees) * 3.14159265358979323846 / 180.0;
    s.cos_a = static_cast<float>(std::cos(radians));
    s.sin_a = static_cast<float>(std::sin(radians));
    s.center = static_cast<float>(out_w - 1) * 0.5f;
    s.jitter_ops = p.jitter ? (p.jitter_ops & 0xF) : 0;
    for (int k = 0; k < kJitterOps; ++k) s.order[k] = p.order[k];
    s.factor[kJitterBrightness] = p.brightness;
    s.factor[kJitterContrast] = p.contrast;
    s.factor[kJitterSaturation] = p.saturation;
    s.factor[kJitterHue] = p.hue;
    s.contrast = (s.jitter_ops >> kJitterContrast) & 1;
    s.grayscale = p.grayscale != 0;
    s.solarize = p.solarize != 0;
    s.threshold = p.solarize_threshold;
    s.blur = p.blur != 0;
    if (s.blur) {
      // torchvision's kernel (normalised over all its taps), less its negligible tails
      const std::vector<float> w = gaussian_kernel1d(p.blur_kernel, p.blur_sigma);
      const int trim = blur_tail_taps(w);
      s.blur_kernel = p.blur_kernel - 2 * trim;
      s.blur_offset = static_cast<std::int32_t>(plan.blur_weights.size());
      s.blur_slot = static_cast<std::int32_t>(plan.blurred.size());
      plan.blurred.push_back(static_cast<std::int32_t>(n));
      plan.blur_weights.insert(plan.blur_weights.end(), w.begin() + trim, w.end() - trim);
    }
  }
  return plan;
}

}  // namespace detail

// Inside math::augment so generic helper names (clamp01, reflect_index, ...) cannot collide with
// other op families' FOVEA_HD code.
namespace math::augment {

FOVEA_HD float floor_hd(float v) {
#if defined(__CUDA_ARCH__)
  return floorf(v);
#else
  return std::floor(v);
#endif
}
// One correctly rounded fma, so coordinates are bitwise equal on host and device.
FOVEA_HD float fma_rn(float a, float b, float c) {
#if defined(__CUDA_ARCH__)
  return __fmaf_rn(a, b, c);
#else
  return std::fma(a, b, c);
#endif
}
FOVEA_HD float clamp01(float v) { return v < 0.0f ? 0.0f : (v > 1.0f ? 1.0f : v); }
FOVEA_HD float gray_of(float r, float g, float b) { return kGrayR * r + kGrayG * g + kGrayB * b; }

// torchvision _blend(img1, img2, ratio) = (ratio * img1 + (1 - ratio) * img2).clamp(0, 1).
FOVEA_HD float blend(float a, float b, float ratio) { return clamp01(ratio * a + (1.0f - ratio) * b); }

// torchvision's _rgb2hsv, the hue shift (h + factor) mod 1, and _hsv2rgb, on one pixel, with two
// divisions where torchvision has five: rc, gc, bc multiply by one reciprocal of cr, and h / 6 + 1 is
// one fma of h, 1 / 6 and 1 (docs/decisions.md: within an ulp or two of torchvision's values; IEEE
// divisions were most of the GPU kernel's instructions).
FOVEA_HD void adjust_hue(float& r, float& g, float& b, float factor) {
  const float maxc = r > g ? (r > b ? r : b) : (g > b ? g : b);
  const float minc = r < g ? (r < b ? r : b) : (g < b ? g : b);
  const bool eqc = maxc == minc;
  const float cr = maxc - minc;
  const float s = cr / (eqc ? 1.0f : maxc);
  const float inv = 1.0f / (eqc ? 1.0f : cr);
  const float rc = (maxc - r) * inv, gc = (maxc - g) * inv, bc = (maxc - b) * inv;
  float h = 0.0f;
  if (maxc == r) h = bc - gc;
  else if (maxc == g) h = 2.0f + rc - bc;
  else h = 4.0f + gc - rc;
  h = fma_rn(h, 1.0f / 6.0f, 1.0f);
  h = h - floor_hd(h);  // fmod(h, 1) for h >= 0
  h = h + factor;
  h = h - floor_hd(h);  // Python's (h + factor) % 1.0; may round to 1.0, which maps like 0
  const float v = maxc;
  const float h6 = h * 6.0f;
  const float fi = floor_hd(h6);
  const float f = h6 - fi;
  const int i = static_cast<int>(fi) % 6;  // 0 .. 5 (h in [0, 1])
  const float p = clamp01(v * (1.0f - s));
  const float q = clamp01(v * (1.0f - s * f));
  const float t = clamp01(v * (1.0f - s * (1.0f - f)));
  // Sector i picks (r, g, b) = (v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q):
  // written as selects, not a switch, so that neighbouring pixels in other sectors do not diverge
  // on the GPU.
  r = (i == 0 || i == 5) ? v : (i == 1 ? q : (i == 4 ? t : p));
  g = (i == 1 || i == 2) ? v : (i == 0 ? t : (i == 3 ? q : p));
  b = (i == 3 || i == 4) ? v : (i == 2 ? t : (i == 5 ? q : p));
}

// One colour-jitter op on a pixel (contrast blends with `mean`, the grayscale mean of the image at
// that step).
FOVEA_HD void jitter_op(int op, float& r, float& g, float& b, float factor, float mean) {
  switch (op) {
    case kJitterBrightness:
      r = blend(r, 0.0f, factor), g = blend(g, 0.0f, factor), b = blend(b, 0.0f, factor);
      break;
    case kJitterContrast:
      r = blend(r, mean, factor), g = blend(g, mean, factor), b = blend(b, mean, factor);
      break;
    case kJitterSaturation: {
      const float l = gray_of(r, g, b);
      r = blend(r, l, factor), g = blend(g, l, factor), b = blend(b, l, factor);
      break;
    }
    default: adjust_hue(r, g, b, factor); break;
  }
}

// The sample's jitter ops in order. With prefix_only, stops before contrast (the state whose
// grayscale mean contrast needs). Does nothing when jitter is off.
FOVEA_HD void jitter_pixel(const detail::AugmentPlan& p, float& r, float& g, float& b, float mean,
                           bool prefix_only) {
  for (int k = 0; k < kJitterOps; ++k) {
    const int op = p.order[k];
    if (!((p.jitter_ops >> op) & 1)) continue;
    if (prefix_only && op == kJitterContrast) return;
    jitter_op(op, r, g, b, p.factor[op], mean);
  }
}

// Grayscale (replicated), then solarize, when the plan says so.
FOVEA_HD void grayscale_pixel(const detail::AugmentPlan& p, float& r, float& g, float& b) {
  if (!p.grayscale) return;
  const float l = gray_of(r, g, b);
  r = l, g = l, b = l;
}
FOVEA_HD float solarize_value(float v, float threshold) { return v >= threshold ? 1.0f - v : v; }
FOVEA_HD float normalize_value(float v, float mean, float std_dev) { return (v - mean) / std_dev; }

// Bilinear taps along one axis of a crop of `size` pixels for continuous output coordinate o
// (PyTorch's upsample_bilinear2d, align_corners = false: src = scale * (o + 0.5) - 0.5, clamped at
// 0; the upper tap stays inside the crop).
FOVEA_HD void bilinear_taps(float o, float scale, int size, int& i0, int& i1, float& lambda1) {
  float src = fma_rn(scale, o + 0.5f, -0.5f);
  if (src < 0.0f) src = 0.0f;
  i0 = static_cast<int>(src);
  if (i0 > size - 1) i0 = size - 1;
  i1 = i0 + (i0 < size - 1 ? 1 : 0);
  lambda1 = src - static_cast<float>(i0);
  lambda1 = lambda1 < 0.0f ? 0.0f : (lambda1 > 1.0f ? 1.0f : lambda1);
}

// The geometric result at output pixel (oy, ox): rotation about the output centre (zero outside the
// output square), then the flips, then bilinear sampling of the crop box. `image` is the sample's
// (3, in_h, in_w) planes. Returns false (and zeros) where the rotation leaves the square.
FOVEA_HD bool geometry_pixel(const float* image, int in_h, int in_w, int out_size,
                             const detail::AugmentPlan& p, int oy, int ox, float rgb[3]) {
  float x = static_cast<float>(ox), y = static_cast<float>(oy);
  if (p.rotate) {
    const float dx = x - p.center, dy = y - p.center;
    x = fma_rn(dx, p.cos_a, fma_rn(-dy, p.sin_a, p.center));
    y = fma_rn(dx, p.sin_a, fma_rn(dy, p.cos_a, p.center));
    const float lo = -0.5f, hi = static_cast<float>(out_size) - 0.5f;
    if (!(x >= lo && x <= hi && y >= lo && y <= hi)) {
      rgb[0] = rgb[1] = rgb[2] = 0.0f;
      return false;
    }
  }
  const float last = static_cast<float>(out_size - 1);
  if (p.hflip) x = last - x;
  if (p.vflip) y = last - y;
  int x0, x1, y0, y1;
  float lx, ly;
  bilinear_taps(x, p.scale_x, p.crop_width, x0, x1, lx);
  bilinear_taps(y, p.scale_y, p.crop_height, y0, y1, ly);
  const float hx = 1.0f - lx, hy = 1.0f - ly;
  const std::int64_t plane = static_cast<std::int64_t>(in_h) * in_w;
  const std::int64_t r0 = static_cast<std::int64_t>(p.crop_top + y0) * in_w + p.crop_left;
  const std::int64_t r1 = static_cast<std::int64_t>(p.crop_top + y1) * in_w + p.crop_left;
  for (int c = 0; c < 3; ++c) {
    const float* src = image + c * plane;
    rgb[c] = hy * (hx * src[r0 + x0] + lx * src[r0 + x1]) + ly * (hx * src[r1 + x0] + lx * src[r1 + x1]);
  }
  return true;
}

// torchvision's "reflect" padding index (the edge is not repeated), folded as often as needed.
FOVEA_HD int reflect_index(int i, int n) {
  if (i >= 0 && i < n) return i;
  if (n == 1) return 0;
  const int period = 2 * (n - 1);
  int m = i % period;
  if (m < 0) m += period;
  return m < n ? m : period - m;
}

// Sum of weights[k] * line[reflect(i + k - radius) * stride] over the kernel taps (no reflection
// arithmetic for taps inside the line).
FOVEA_HD float blur_tap_sum(const float* line, int n, std::int64_t stride, int i, const float* weights,
                            int kernel) {
  const int radius = kernel / 2;
  float acc = 0.0f;
  if (i - radius >= 0 && i + radius < n) {
    const float* first = line + static_cast<std::int64_t>(i - radius) * stride;
    for (int k = 0; k < kernel; ++k) acc += weights[k] * first[k * stride];
  } else {
    for (int k = 0; k < kernel; ++k) acc += weights[k] * line[reflect_index(i + k - radius, n) * stride];
  }
  return acc;
}

}  // namespace math::augment

namespace detail {

// Mean over the sample's pixels of the grayscale of the jitter prefix (the state contrast sees).
inline float augment_contrast_mean(const AugmentPlan& p, const float* x, std::int64_t hw) {
  double sum = 0.0;
  for (std::int64_t i = 0; i < hw; ++i) {
    float r = x[i], g = x[hw + i], b = x[2 * hw + i];
    math::augment::jitter_pixel(p, r, g, b, 0.0f, true);
    sum += math::augment::gray_of(r, g, b);
  }
  return static_cast<float>(sum / static_cast<double>(hw));
}

// Applies f(plan, r, g, b) to every pixel of every sample, x -> out (may alias). Samples run in
// parallel (each exactly as in a serial loop, so the result does not depend on the thread count).
template <class F>
void augment_for_each_pixel(CView x, const AugmentBatchPlan& plan, View out, F f) {
  const std::int64_t hw = x.shape().h() * x.shape().w();
  parallel_for(
      x.shape().n(),
      [&](std::int64_t first, std::int64_t last) {
        for (std::int64_t n = first; n < last; ++n) {
          const float* xs = x.data() + n * 3 * hw;
          float* os = out.data() + n * 3 * hw;
          const AugmentPlan& p = plan.samples[static_cast<std::size_t>(n)];
          const float mean = f.needs_mean(p) ? augment_contrast_mean(p, xs, hw) : 0.0f;
          for (std::int64_t i = 0; i < hw; ++i) {
            float r = xs[i], g = xs[hw + i], b = xs[2 * hw + i];
            f(p, mean, r, g, b);
            os[i] = r, os[hw + i] = g, os[2 * hw + i] = b;
          }
        }
      },
      3 * hw);
}

struct AugmentJitterStage {
  bool needs_mean(const AugmentPlan& p) const { return p.contrast != 0; }
  void operator()(const AugmentPlan& p, float mean, float& r, float& g, float& b) const {
    math::augment::jitter_pixel(p, r, g, b, mean, false);
  }
};
struct AugmentGrayStage {
  bool needs_mean(const AugmentPlan&) const { return false; }
  void operator()(const AugmentPlan& p, float, float& r, float& g, float& b) const {
    math::augment::grayscale_pixel(p, r, g, b);
  }
};
struct AugmentSolarizeStage {
  bool needs_mean(const AugmentPlan&) const { return false; }
  void operator()(const AugmentPlan& p, float, float& r, float& g, float& b) const {
    if (!p.solarize) return;
    r = math::augment::solarize_value(r, p.threshold), g = math::augment::solarize_value(g, p.threshold);
    b = math::augment::solarize_value(b, p.threshold);
  }
};
}  // namespace detail

namespace cpu {

// out[n] = geometry(images[n], plan[n]): (N, 3, H, W) -> (N, 3, S, S).
inline void random_resized_crop_flip(CView images, const ::fovea::detail::AugmentBatchPlan& plan, View out) {
  const int in_h = static_cast<int>(images.shape().h()), in_w = static_cast<int>(images.shape().w());
  const int s = static_cast<int>(out.shape().h());
  const std::int64_t in_sample = 3 * static_cast<std::int64_t>(in_h) * in_w,
                     hw = static_cast<std::int64_t>(s) * s;
  parallel_for(
      images.shape().n(),
      [&](std::int64_t first, std::int64_t last) {
        for (std::int64_t n = first; n < last; ++n) {
          const float* img = images.data() + n * in_sample;
          float* o = out.data() + n * 3 * hw;
          const auto& p = plan.samples[static_cast<std::size_t>(n)];
          for (int oy = 0; oy < s; ++oy) {
            for (int ox = 0; ox < s; ++ox) {
              float rgb[3];
              math::augment::geometry_pixel(img, in_h, in_w, s, p, oy, ox, rgb);
              const std::int64_t i = static_cast<std::int64_t>(oy) * s + ox;
              o[i] = rgb[0], o[hw + i] = rgb[1], o[2 * hw + i] = rgb[2];
            }
          }
        }
      },
      12 * hw);
}

inline void color_jitter(CView x, const ::fovea::detail::AugmentBatchPlan& plan, View out) {
  ::fovea::detail::augment_for_each_pixel(x, plan, out, ::fovea::detail::AugmentJitterStage{});
}
inline void grayscale(CView x, const ::fovea::detail::AugmentBatchPlan& plan, View out) {
  ::fovea::detail::augment_for_each_pixel(x, plan, out, ::fovea::detail::AugmentGrayStage{});
}
inline void solarize(CView x, const ::fovea::detail::AugmentBatchPlan& plan, View out) {
  ::fovea::detail::augment_for_each_pixel(x, plan, out, ::fovea::detail::AugmentSolarizeStage{});
}

// Separable Gaussian blur of the samples the plan marks (others copied): rows into a scratch
// plane, then columns into out (so out may alias x). Samples run in parallel.
inline void gaussian_blur(CView x, const ::fovea::detail::AugmentBatchPlan& plan, View out) {
  const int h = static_cast<int>(x.shape().h()), w = static_cast<int>(x.shape().w());
  const std::int64_t hw = static_cast<std::int64_t>(h) * w;
  parallel_for(
      x.shape().n(),
      [&](std::int64_t first, std::int64_t last) {
        std::vector<float> rows(static_cast<std::size_t>(hw));
        for (std::int64_t n = first; n < last; ++n) {
          const auto& p = plan.samples[static_cast<std::size_t>(n)];
          for (int c = 0; c < 3; ++c) {
            const float* xp = x.data() + (n * 3 + c) * hw;
            float* op = out.data() + (n * 3 + c) * hw;
            if (!p.blur) {
              if (op != xp) std::memcpy(op, xp, static_cast<std::size_t>(hw) * sizeof(float));
              continue;
            }
            const float* wts = plan.blur_weights.data() + p.blur_offset;
            for (int y = 0; y < h; ++y)
              for (int xx = 0; xx < w; ++xx)
                rows[static_cast<std::size_t>(y) * w + xx] = math::augment::blur_tap_sum(
                    xp + static_cast<std::int64_t>(y) * w, w, 1, xx, wts, p.blur_kernel);
            for (int y = 0; y < h; ++y)
              for (int xx = 0; xx < w; ++xx)
                op[static_cast<std::int64_t>(y) * w + xx] =
                    math::augment::blur_tap_sum(rows.data() + xx, h, w, y, wts, p.blur_kernel);
          }
        }
      },
      3 * hw * 8);
}

// out[n, c] = (x[n, c] - mean[c]) / std[c].
inline void normalize_channels(CView x, const ChannelStats& stats, View out) {
  const std::int64_t hw = x.shape().h() * x.shape().w();
  parallel_for(
      x.shape().n(),
      [&](std::int64_t first, std::int64_t last) {
        for (std::int64_t n = first; n < last; ++n)
          for (int c = 0; c < 3; ++c) {
            const float* xp = x.data() + (n * 3 + c) * hw;
            float* op = out.data() + (n * 3 + c) * hw;
            for (std::int64_t i = 0; i < hw; ++i)
              op[i] = math::augment::normalize_value(xp[i], stats.mean[c], stats.std[c]);
          }
      },
      3 * hw);
}

// The whole pipeline as the composition of the ops above: geometry, jitter, grayscale, blur,
// solarize, normalisation.
inline void augment_images(CView images, const ::fovea::detail::AugmentBatchPlan& plan,
                           const ChannelStats& stats, View out) {
  random_resized_crop_flip(images, plan, out);
  color_jitter(out, plan, out);
  grayscale(out, plan, out);
  gaussian_blur(out, plan, out);
  solarize(out, plan, out);
  normalize_channels(out, stats, out);
}

}  // namespace cpu
}  // namespace fovea
