// fovea/data/fundus.hpp: fundus-photo preprocessing: field-of-view mask and crop, Ben Graham's local
// contrast normalisation, and the decode pipeline preprocess_fundus (docs/preprocessing.md).
//
// Host code on CPU tensors (3, H, W) with values in [0, 1], as load_image returns them.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "fovea/core/error.hpp"
#include "fovea/core/tensor.hpp"
#include "fovea/data/corruption_math.hpp"  // Border, border_index
#include "fovea/data/image.hpp"

namespace fovea::data {

// A pixel rectangle [x0, x1) x [y0, y1); empty when x1 <= x0 or y1 <= y0.
struct BoundingBox {
  std::int64_t x0 = 0, y0 = 0, x1 = 0, y1 = 0;
  std::int64_t width() const { return x1 - x0; }
  std::int64_t height() const { return y1 - y0; }
  bool empty() const { return x1 <= x0 || y1 <= y0; }
};

namespace detail {

// Otsu's threshold over a 256-bin histogram of values in [0, 1] (the bin edge maximising the
// between-class variance) and the background level: the most frequent bin below it.
inline std::array<float, 2> otsu_threshold(const std::vector<float>& values) {
  std::array<double, 256> hist{};
  for (float v : values) hist[static_cast<std::size_t>(std::clamp(static_cast<int>(v * 255.0f + 0.5f), 0, 255))] += 1;
  double total = 0, sum = 0;
  for (int i = 0; i < 256; ++i) total += hist[static_cast<std::size_t>(i)], sum += i * hist[static_cast<std::size_t>(i)];
  double w0 = 0, s0 = 0, best = -1;
  int best_t = 0;
  for (int t = 0; t < 255; ++t) {
    w0 += hist[static_cast<std::size_t>(t)];
    s0 += t * hist[static_cast<std::size_t>(t)];
    const double w1 = total - w0;
    if (w0 <= 0 || w1 <= 0) continue;
    const double m0 = s0 / w0, m1 = (sum - s0) / w1;
    const double between = w0 * w1 * (m0 - m1) * (m0 - m1);
    if (between > best) best = between, best_t = t;
  }
  int mode = 0;
  for (int t = 1; t <= best_t; ++t)
    if (hist[static_cast<std::size_t>(t)] > hist[static_cast<std::size_t>(mode)]) mode = t;
  return {(static_cast<float>(best_t) + 0.5f) / 255.0f, static_cast<float>(mode) / 255.0f};
}

// Separable filter of one plane with the odd symmetric kernel k: rows, then columns.
inline void separable_filter(const float* in, float* out, std::int64_t h, std::int64_t w,
                             const std::vector<float>& k, Border border) {
  const std::int64_t radius = static_cast<std::int64_t>(k.size()) / 2;
  std::vector<float> rows(static_cast<std::size_t>(h * w));
  std::vector<float> line(static_cast<std::size_t>(w + 2 * radius));
  for (std::int64_t y = 0; y < h; ++y) {
    const float* src = in + y * w;
    for (std::int64_t x = -radius; x < w + radius; ++x) {
      const std::int64_t sx = border_index(x, w, border);
      line[static_cast<std::size_t>(x + radius)] = sx < 0 ? 0.0f : src[sx];
    }
    float* dst = rows.data() + y * w;
    for (std::int64_t x = 0; x < w; ++x) {
      const float* s = line.data() + x;
      float acc = 0.0f;
      for (std::size_t t = 0; t < k.size(); ++t) acc += k[t] * s[t];
      dst[x] = acc;
    }
  }
  for (std::int64_t y = 0; y < h; ++y) {
    float* dst = out + y * w;
    std::fill(dst, dst + w, 0.0f);
    for (std::int64_t t = -radius; t <= radius; ++t) {
      const std::int64_t sy = border_index(y + t, h, border);
      if (sy < 0) continue;
      const float* s = rows.data() + sy * w;
      const float kt = k[static_cast<std::size_t>(t + radius)];
      for (std::int64_t x = 0; x < w; ++x) dst[x] += kt * s[x];
    }
  }
}

}  // namespace detail

// gaussian_blur: separable Gaussian blur of every channel with standard deviation `sigma` pixels,
// taps exp(-x^2 / (2 sigma^2)) for |x| <= ceil(4 sigma) normalised to sum 1 (OpenCV's size for
// float images with ksize 0), reflect-101 borders. sigma <= 0 copies.
//   image (C, H, W) on the cpu -> (C, H, W).
inline Tensor gaussian_blur(CView image, float sigma) {
  detail::check_image("gaussian_blur", image);
  const std::int64_t c = image.shape()[0], h = image.shape()[1], w = image.shape()[2];
  Tensor out(image.shape());
  if (!(sigma > 0.0f)) {
    copy(image, out.view());
    return out;
  }
  const std::int64_t radius = std::max<std::int64_t>(1, static_cast<std::int64_t>(std::ceil(4.0 * sigma)));
  std::vector<float> k(static_cast<std::size_t>(2 * radius + 1));
  double total = 0;
  for (std::int64_t i = -radius; i <= radius; ++i)
    total += k[static_cast<std::size_t>(i + radius)] = static_cast<float>(std::exp(-0.5 * i * i / (static_cast<double>(sigma) * sigma)));
  for (float& v : k) v = static_cast<float>(v / total);

  for (std::int64_t ch = 0; ch < c; ++ch)
    detail::separable_filter(image.data() + ch * h * w, out.data() + ch * h * w, h, w, k,
                             detail::Border::reflect101);
  return out;
}

// fov_mask: the camera's circular field of view. The brightness max(R, G, B) is thresholded just
// above the surround: at b + max(6 / 255, 0.1 (t - b)), at most (b + t) / 2, where t is Otsu's
// threshold and b the surround's level (the histogram's mode below t), so that the dark rim of an
// unevenly lit photo stays inside while JPEG noise in the black surround stays outside; the largest 4-connected bright component is kept and its holes (dark lesions, vessels,
// pupil shadows) filled. An image without a dark surround (brightness range under 4 / 255, or no
// component) is all field of view.
//   image (C, H, W) on the cpu, C = 1 or 3 -> (1, H, W) of 0 / 1.
inline Tensor fov_mask(CView image) {
  detail::check_image("fov_mask", image);
  const std::int64_t c = image.shape()[0], h = image.shape()[1], w = image.shape()[2];
  FOVEA_CHECK(c == 1 || c == 3, "fov_mask: image must be (1 or 3, H, W), got ", image.shape().str());
  const std::size_t n = static_cast<std::size_t>(h * w);
  std::vector<float> bright(n);
  for (std::size_t p = 0; p < n; ++p) {
    float v = image.data()[p];
    for (std::int64_t k = 1; k < c; ++k) v = std::max(v, image.data()[static_cast<std::size_t>(k) * n + p]);
    bright[p] = v;
  }
  Tensor mask(Shape{1, h, w});  // (1, H, W)
  float* m = mask.data();
  const auto [lo, hi] = std::minmax_element(bright.begin(), bright.end());
  if (n == 0 || *hi - *lo < 4.0f / 255.0f) {
    std::fill(m, m + n, 1.0f);
    return mask;
  }
  const auto [otsu, background] = detail::otsu_threshold(bright);
  const float threshold =
      std::min(background + std::max(6.0f / 255.0f, 0.1f * (otsu - background)), 0.5f * (otsu + background));

  // label: 0 background, 1 bright unvisited, 2.. component ids
  std::vector<std::int32_t> label(n);
  for (std::size_t p = 0; p < n; ++p) label[p] = bright[p] > threshold ? 1 : 0;
  std::vector<std::size_t> stack;
  auto flood = [&](std::size_t seed, std::int32_t from, std::int32_t to) {
    std::int64_t count = 0;
    stack.assign(1, seed);
    label[seed] = to;
    while (!stack.empty()) {
      const std::size_t p = stack.back();
      stack.pop_back();
      ++count;
      const std::int64_t y = static_cast<std::int64_t>(p) / w, x = static_cast<std::int64_t>(p) % w;
      const std::size_t nb[4] = {p - 1, p + 1, p - static_cast<std::size_t>(w), p + static_cast<std::size_t>(w)};
      const bool ok[4] = {x > 0, x + 1 < w, y > 0, y + 1 < h};
      for (int k = 0; k < 4; ++k)
        if (ok[k] && label[nb[k]] == from) label[nb[k]] = to, stack.push_back(nb[k]);
    }
    return count;
  };
  std::int32_t next = 2, best = 0;
  std::int64_t best_count = 0;
  for (std::size_t p = 0; p < n; ++p)
    if (label[p] == 1) {
      const std::int64_t count = flood(p, 1, next);
      if (count > best_count) best_count = count, best = next;
      ++next;
    }
  if (best == 0) {
    std::fill(m, m + n, 1.0f);
    return mask;
  }
  // Everything not in the best component and reachable from the border is outside; the rest is inside.
  for (std::size_t p = 0; p < n; ++p) label[p] = label[p] == best ? 1 : 0;
  auto seed_outside = [&](std::int64_t y, std::int64_t x) {
    const std::size_t p = static_cast<std::size_t>(y * w + x);
    if (label[p] == 0) flood(p, 0, -1);
  };
  for (std::int64_t x = 0; x < w; ++x) seed_outside(0, x), seed_outside(h - 1, x);
  for (std::int64_t y = 0; y < h; ++y) seed_outside(y, 0), seed_outside(y, w - 1);
  for (std::size_t p = 0; p < n; ++p) m[p] = label[p] == -1 ? 0.0f : 1.0f;
  return mask;
}

// fov_box: the bounding box of the nonzero pixels of mask (1, H, W); empty ({0, 0, 0, 0}) when none.
inline BoundingBox fov_box(CView mask) {
  detail::check_image("fov_box", mask);
  FOVEA_CHECK(mask.shape()[0] == 1, "fov_box: mask must be (1, H, W), got ", mask.shape().str());
  const std::int64_t h = mask.shape()[1], w = mask.shape()[2];
  BoundingBox b{w, h, 0, 0};
  for (std::int64_t y = 0; y < h; ++y)
    for (std::int64_t x = 0; x < w; ++x)
      if (mask.data()[y * w + x] != 0.0f)
        b.x0 = std::min(b.x0, x), b.x1 = std::max(b.x1, x + 1), b.y0 = std::min(b.y0, y), b.y1 = std::max(b.y1, y + 1);
  return b.empty() ? BoundingBox{} : b;
}

// The square window crop_to_fov cuts: side max(box width, box height) + 2 margin, centred on the box
// (it may reach beyond the image).
inline BoundingBox fov_square(const BoundingBox& box, std::int64_t margin) {
  const std::int64_t side = std::max(box.width(), box.height()) + 2 * margin;
  const std::int64_t x0 = box.x0 + (box.width() - side) / 2;
  const std::int64_t y0 = box.y0 + (box.height() - side) / 2;
  return {x0, y0, x0 + side, y0 + side};
}

// crop_square: the window `window` of image, which may reach beyond it; pixels beyond the image are 0.
//   image (C, H, W) on the cpu -> (C, window height, window width).
inline Tensor crop_square(CView image, const BoundingBox& window) {
  detail::check_image("crop_square", image);
  FOVEA_CHECK(!window.empty(), "crop_square: empty window");
  const std::int64_t c = image.shape()[0], h = image.shape()[1], w = image.shape()[2];
  const std::int64_t oh = window.height(), ow = window.width();
  Tensor out(Shape{c, oh, ow});  // (C, oh, ow)
  std::fill(out.data(), out.data() + out.numel(), 0.0f);
  const std::int64_t ys = std::max<std::int64_t>(window.y0, 0), ye = std::min(window.y1, h);
  const std::int64_t xs = std::max<std::int64_t>(window.x0, 0), xe = std::min(window.x1, w);
  if (xs >= xe) return out;
  for (std::int64_t ch = 0; ch < c; ++ch)
    for (std::int64_t y = ys; y < ye; ++y)
      std::copy(image.data() + (ch * h + y) * w + xs, image.data() + (ch * h + y) * w + xe,
                out.data() + (ch * oh + y - window.y0) * ow + (xs - window.x0));
  return out;
}

// crop_to_fov: the square window fov_square(fov_box(mask), margin) of image; pixels beyond the image
// (a field of view cut by the frame, as in many EyePACS photos) are 0, the black of the surround, so
// the disc stays round and centred. Apply it to the mask itself to get the matching mask.
// requires: mask (1, H, W) with H, W those of image, margin >= 0. An empty mask keeps the whole image.
//   image (C, H, W) on the cpu -> (C, side, side).
inline Tensor crop_to_fov(CView image, CView mask, std::int64_t margin = 0) {
  detail::check_image("crop_to_fov", image);
  detail::check_image("crop_to_fov", mask);
  FOVEA_CHECK(mask.shape()[0] == 1 && mask.shape()[1] == image.shape()[1] && mask.shape()[2] == image.shape()[2],
              "crop_to_fov: mask ", mask.shape().str(), " does not match image ", image.shape().str());
  FOVEA_CHECK(margin >= 0, "crop_to_fov: margin must be >= 0, got ", margin);
  BoundingBox box = fov_box(mask);
  if (box.empty()) box = {0, 0, image.shape()[2], image.shape()[1]};
  return crop_square(image, fov_square(box, margin));
}

// Ben Graham's value outside the 90 % circle: 128 of 255 in his code, 0.5 here (kBenGrahamGray).
inline constexpr float kBenGrahamGray = 0.5f;

// ben_graham: Ben Graham's local contrast normalisation (Kaggle DR 2015 winner):
//   out = clamp(4 I - 4 Gauss_sigma(I) + 0.5, 0, 1),  sigma = sigma_fraction * r,
// in [0, 1] units (his 8-bit formula 4 I - 4 G + 128 divided by 255, with 128 / 255 ~ 0.502 taken
// as 0.5 and OpenCV's saturation to [0, 255] as the clamp). r and the centre come from the field of
// view's bounding box `fov`: r = half its larger side, centre = its centre. Pixels farther than
// circle_fraction * r from the centre are set to `outside` (Graham's 128 gray = 0.5 by default; 0
// gives a black surround). A constant image is 0.5 wherever the blur sees only that constant.
// An empty `fov` means the whole image. Pixels outside `valid` (when not empty: the part of the image
// that holds photo rather than padding, see crop_to_fov) are set to `outside` as well.
//   image (C, H, W) on the cpu -> (C, H, W).
inline Tensor ben_graham(CView image, BoundingBox fov, float sigma_fraction = 1.0f / 30.0f,
                         float circle_fraction = 0.9f, float outside = kBenGrahamGray, BoundingBox valid = {}) {
  detail::check_image("ben_graham", image);
  FOVEA_CHECK(sigma_fraction > 0.0f && circle_fraction > 0.0f, "ben_graham: sigma_fraction ", sigma_fraction,
              " and circle_fraction ", circle_fraction, " must be positive");
  const std::int64_t c = image.shape()[0], h = image.shape()[1], w = image.shape()[2];
  if (fov.empty()) fov = {0, 0, w, h};
  if (valid.empty()) valid = {0, 0, w, h};
  const double r = 0.5 * static_cast<double>(std::max(fov.width(), fov.height()));
  const double cx = 0.5 * static_cast<double>(fov.x0 + fov.x1), cy = 0.5 * static_cast<double>(fov.y0 + fov.y1);
  const Tensor blurred = gaussian_blur(image, static_cast<float>(sigma_fraction * r));
  Tensor out(image.shape());
  const double limit2 = (circle_fraction * r) * (circle_fraction * r);
  for (std::int64_t y = 0; y < h; ++y)
    for (std::int64_t x = 0; x < w; ++x) {
      const double dx = x + 0.5 - cx, dy = y + 0.5 - cy;
      const bool inside = dx * dx + dy * dy <= limit2 && x >= valid.x0 && x < valid.x1 && y >= valid.y0 &&
                          y < valid.y1;
      for (std::int64_t ch = 0; ch < c; ++ch) {
        const std::int64_t i = (ch * h + y) * w + x;
        out.data()[i] = inside ? std::clamp(4.0f * (image.data()[i] - blurred.data()[i]) + 0.5f, 0.0f, 1.0f)
                               : outside;
      }
    }
  return out;
}

// ben_graham with the field of view given as a mask (1, H, W): its bounding box (fov_box).
inline Tensor ben_graham(CView image, CView mask, float sigma_fraction = 1.0f / 30.0f,
                         float circle_fraction = 0.9f, float outside = kBenGrahamGray) {
  detail::check_image("ben_graham", image);
  detail::check_image("ben_graham", mask);
  FOVEA_CHECK(mask.shape()[0] == 1 && mask.shape()[1] == image.shape()[1] && mask.shape()[2] == image.shape()[2],
              "ben_graham: mask ", mask.shape().str(), " does not match image ", image.shape().str());
  return ben_graham(image, fov_box(mask), sigma_fraction, circle_fraction, outside);
}

// fov_box_fast: fov_box(fov_mask(image)) computed on every k-th pixel (k = ceil(max(H, W) / 1024)),
// the box scaled back (exact to within k pixels); what preprocess_fundus uses on large photos.
inline BoundingBox fov_box_fast(CView image) {
  detail::check_image("fov_box_fast", image);
  const std::int64_t c = image.shape()[0], h = image.shape()[1], w = image.shape()[2];
  const std::int64_t k = std::max<std::int64_t>(1, (std::max(h, w) + 1023) / 1024);
  if (k == 1) return fov_box(fov_mask(image));
  const std::int64_t sh = (h + k - 1) / k, sw = (w + k - 1) / k;
  Tensor small(Shape{c, sh, sw});  // (C, H / k, W / k)
  for (std::int64_t ch = 0; ch < c; ++ch)
    for (std::int64_t y = 0; y < sh; ++y)
      for (std::int64_t x = 0; x < sw; ++x)
        small.data()[(ch * sh + y) * sw + x] = image.data()[(ch * h + y * k) * w + x * k];
  const BoundingBox b = fov_box(fov_mask(small));
  if (b.empty()) return b;
  return {b.x0 * k, b.y0 * k, std::min(b.x1 * k, w), std::min(b.y1 * k, h)};
}

// Settings of preprocess_fundus. Every field enters the disk cache key (data/cache.hpp).
struct FundusPreprocess {
  int size = 512;                // S: output S x S
  bool crop_to_fov = true;       // square FOV crop (else torchvision's Resize(S) + CenterCrop(S))
  float margin_fraction = 0.0f;  // crop margin per side, as a fraction of the FOV's larger side
  bool ben_graham = false;       // Ben Graham's normalisation after resizing
  float sigma_fraction = 1.0f / 30.0f;
  float circle_fraction = 0.9f;
  float outside = kBenGrahamGray;
  std::array<float, 3> mean{0.0f, 0.0f, 0.0f};  // Normalize last; 0 / 1 keep [0, 1]
  std::array<float, 3> std{1.0f, 1.0f, 1.0f};
};

// A fundus photo cropped and resized (the first steps of preprocess_fundus), and where its field of
// view and its frame landed, which Ben Graham's step needs. A driver that must act on the resized
// photo before that step (fovea robustness corrupts it first) keeps these.
struct ResizedFundus {
  Tensor image;        // (3, S, S) on the cpu, in [0, 1]
  BoundingBox window;  // crop_to_fov: the photo's square (photo pixels) the image shows; else empty
  BoundingBox fov;     // the field of view's box in output pixels (empty unless crop_to_fov or ben_graham)
  BoundingBox valid;   // the photo's frame in output pixels (padding lies outside it)
};

// resize_fundus: a decoded image (3, H, W) in [0, 1] (load_image, decode_image) -> [field of view
// (fov_box_fast), square crop_to_fov with margin_fraction * its larger side per side] -> antialiased
// resize to S x S (without the crop: torchvision's Resize(S) + CenterCrop(S)). Reads settings.size,
// crop_to_fov, margin_fraction and (whether to find the field of view) ben_graham.
inline ResizedFundus resize_fundus(CView image, const FundusPreprocess& settings) {
  const int s = settings.size;
  FOVEA_CHECK(s > 0, "preprocess_fundus: size must be positive, got ", s);
  FOVEA_CHECK(image.device().is_cpu() && image.shape().rank() == 3 && image.shape()[0] == 3,
              "preprocess_fundus: image must be (3, H, W) on the cpu, got ", image.shape().str(), " on ",
              image.device().str());
  FOVEA_CHECK(settings.margin_fraction >= 0.0f, "preprocess_fundus: margin_fraction must be >= 0, got ",
              settings.margin_fraction);
  const std::int64_t h = image.shape()[1], w = image.shape()[2];
  ResizedFundus r;
  BoundingBox box;
  if (settings.crop_to_fov || settings.ben_graham) box = fov_box_fast(image);
  if (box.empty()) box = {0, 0, w, h};
  // The box in output pixels: (v - offset) * scale, per axis.
  double ox = 0, oy = 0, sx = 1, sy = 1;
  if (settings.crop_to_fov) {
    const std::int64_t margin = static_cast<std::int64_t>(
        std::lround(settings.margin_fraction * static_cast<float>(std::max(box.width(), box.height()))));
    const BoundingBox sq = fov_square(box, margin);
    r.window = sq;
    ox = static_cast<double>(sq.x0), oy = static_cast<double>(sq.y0);
    sx = sy = static_cast<double>(s) / static_cast<double>(sq.width());
    // crop_square, then resize: in one pass, without the padded square (bitwise the same).
    r.image = sq.width() != s ? resize_window_antialiased(image, sq.y0, sq.x0, sq.height(), sq.width(), s, s)
                              : crop_square(image, sq);
  } else if (h != s || w != s) {
    const auto [rh, rw] = resized_shorter_side(h, w, s);
    Tensor resized;
    if (rh != h || rw != w) resized = resize_antialiased(image, rh, rw);
    sx = static_cast<double>(rw) / static_cast<double>(w), sy = static_cast<double>(rh) / static_cast<double>(h);
    ox = static_cast<double>(center_crop_offset(rw, s)) / sx, oy = static_cast<double>(center_crop_offset(rh, s)) / sy;
    r.image = center_crop(resized.numel() > 0 ? CView(resized) : image, s, s);
  } else {
    r.image = Tensor(image.shape());
    copy(image, r.image.view());
  }
  auto map = [&](const BoundingBox& b) {
    return BoundingBox{std::llround((static_cast<double>(b.x0) - ox) * sx), std::llround((static_cast<double>(b.y0) - oy) * sy),
                       std::llround((static_cast<double>(b.x1) - ox) * sx), std::llround((static_cast<double>(b.y1) - oy) * sy)};
  };
  if (settings.crop_to_fov || settings.ben_graham) r.fov = map(box);
  r.valid = map(BoundingBox{0, 0, w, h});
  return r;
}

// Ben Graham's step of preprocess_fundus on `image` (3, S, S): resized (or resized and then changed,
// e.g. corrupted) by resize_fundus with these settings, whose geometry `resized` holds.
inline Tensor ben_graham(CView image, const ResizedFundus& resized, const FundusPreprocess& settings) {
  return ben_graham(image, resized.fov, settings.sigma_fraction, settings.circle_fraction, settings.outside,
                    resized.valid);
}

// preprocess_fundus: resize_fundus -> [ben_graham at size S, the field of view's box mapped through
// the crop and resize] -> normalize(mean, std). Ben Graham runs after the resize so that
// sigma = r / 30 is measured at the output resolution and the blur stays cheap.
//   image (3, H, W) in [0, 1] -> (3, S, S) on the cpu.
inline Tensor preprocess_fundus(CView image, const FundusPreprocess& settings) {
  ResizedFundus r = resize_fundus(image, settings);
  if (settings.ben_graham) r.image = ben_graham(r.image, r, settings);
  normalize(r.image, settings.mean, settings.std);
  return std::move(r.image);
}

// The same for the image file at `path` (load_image's errors name it).
inline Tensor preprocess_fundus(const std::filesystem::path& path, const FundusPreprocess& settings) {
  FOVEA_CHECK(settings.size > 0, "preprocess_fundus: size must be positive, got ", settings.size);
  return preprocess_fundus(load_image(path), settings);
}

// A loader decode function (it converts to data::DecodeFn, data/loader.hpp, which this header does not
// include): preprocess_fundus of sample.path with `settings` (settings.size = the loader's image_size).
inline auto fundus_decoder(FundusPreprocess settings) {
  return [settings](const auto& sample, const auto& /*context*/) -> Tensor {
    return preprocess_fundus(sample.path, settings);
  };
}

// The drivers' --preprocess: what turns a decoded photo into the loader's S x S image.
//   resize: torchvision's Resize(S) + CenterCrop(S), nothing fundus-specific (the study's own);
//   fov:    the square around the field of view (fov_box_fast), resized: a photo's black sides and
//           the disc's position and size in the frame stop varying between cameras;
//   graham: fov, then Ben Graham's local contrast normalisation (REFERENCE.md §2).
enum class FundusMode { resize, fov, graham };

inline std::string_view fundus_mode_name(FundusMode mode) {
  switch (mode) {
    case FundusMode::fov:
      return "fov";
    case FundusMode::graham:
      return "graham";
    case FundusMode::resize:
      break;
  }
  return "resize";
}

// "resize", "fov" or "graham"; anything else throws fovea::Error naming the three.
inline FundusMode parse_fundus_mode(std::string_view text) {
  for (FundusMode m : {FundusMode::resize, FundusMode::fov, FundusMode::graham})
    if (text == fundus_mode_name(m)) return m;
  FOVEA_FAIL("--preprocess must be resize, fov or graham, got '", std::string(text), "'");
}

// The preprocessing of `mode` for images decoded at side `side` that a test transform will centre-crop
// to crop_fraction of their side (the drivers decode at size / 0.875 and keep the centre 0.875). With
// fov and graham the crop keeps a margin of (1 / crop_fraction - 1) / 2 of the field of view's side on
// each side, so that the centre crop shows the field of view edge to edge (as Resize(256) +
// CenterCrop(224) shows a photo's centre) and the training crops see a little of the surround.
inline FundusPreprocess fundus_settings(FundusMode mode, int side, double crop_fraction = 0.875) {
  FOVEA_CHECK(side > 0, "fundus_settings: side must be positive, got ", side);
  FOVEA_CHECK(crop_fraction > 0.0 && crop_fraction <= 1.0, "fundus_settings: crop_fraction must be in (0, 1], got ",
              crop_fraction);
  FundusPreprocess s;
  s.size = side;
  s.crop_to_fov = mode != FundusMode::resize;
  s.margin_fraction = s.crop_to_fov ? static_cast<float>((1.0 / crop_fraction - 1.0) / 2.0) : 0.0f;
  s.ben_graham = mode == FundusMode::graham;
  return s;
}

}  // namespace fovea::data
