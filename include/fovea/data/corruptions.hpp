// fovea/data/corruptions.hpp: image corruptions for robustness evaluation: 16 of ImageNet-C
// (Hendrycks & Dietterich 2019; all but snow, frost and spatter) under their names and severities
// 1..5, and five fundus-specific
// degradations (EyeQ style) that leave the black surround outside the field of view untouched.
// Formulas, parameters, the size rule and the random keys: docs/robustness.md.
//
// corrupt: one CPU image (3, H, W) with values in [0, 1]; corrupt_batch (at the end): a batch
// (N, 3, H, W) on the CPU (in parallel over the images) or a CUDA device (kernels/corruptions.cuh,
// from the per-pixel code of data/corruption_math.hpp and a plan resolved here). Every output is
// clipped to [0, 1]. Random draws come from Philox streams named by corruption_key(seed, sample,
// corruption, severity, stream), each draw at a fixed index (one per pixel, per fractal point, per
// spot, per glass_blur copy), so a result is a pure function of (image, corruption, severity, seed, sample):
// bitwise the same in any program, at any thread count. corrupt runs on the calling thread.
//
// Size rule: ImageNet-C is defined on 224 x 224 images. Its parameters apply as they are at 224 px;
// lengths (blur radii and sigmas, the elastic field) scale by s = min(H, W) / 224; the fog map covers
// the image as its 256-px map covers 224 px. jpeg_compression uses stb (FOVEA_WITH_STB, see
// data/image.hpp) and throws without it.
#pragma once

#include <algorithm>
#include <array>
#include <climits>
#include <cmath>
#include <cstdint>
#include <span>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "fovea/core/error.hpp"
#include "fovea/core/parallel.hpp"
#include "fovea/core/random.hpp"
#include "fovea/core/tensor.hpp"
#include "fovea/cuda/corruptions.hpp"
#include "fovea/data/corruption_math.hpp"
#include "fovea/data/fundus.hpp"
#include "fovea/data/image.hpp"

namespace fovea::data {

inline constexpr int kCorruptionCount = 21;
inline constexpr int kImageNetCCorruptionCount = 16;
inline constexpr int kFundusCorruptionCount = 5;
inline constexpr int kMinSeverity = 1;
inline constexpr int kMaxSeverity = 5;
// The image side ImageNet-C's parameters are defined at.
inline constexpr double kCorruptionReferenceSide = 224.0;

namespace detail::corruption {

inline constexpr std::array<std::string_view, kCorruptionCount> kNames{
    "gaussian_noise", "shot_noise",        "impulse_noise", "speckle_noise",
    "gaussian_blur",  "defocus_blur",      "motion_blur",   "zoom_blur",
    "brightness",     "contrast",          "saturate",      "jpeg_compression",
    "pixelate",       "elastic_transform", "fog",           "uneven_illumination",
    "halo",           "dark_hole",         "spots",         "fundus_defocus",
    "glass_blur"};

inline std::vector<Corruption> range(int first, int last) {
  std::vector<Corruption> v;
  for (int i = first; i < last; ++i) v.push_back(static_cast<Corruption>(i));
  return v;
}

inline std::string valid_names() {
  std::string s;
  for (std::string_view n : kNames) s += (s.empty() ? "" : ", ") + std::string(n);
  return s;
}

}  // namespace detail::corruption

// ImageNet-C's 16: REFERENCE 1.6's table with glass_blur after defocus_blur (ImageNet-C's blur order).
inline const std::vector<Corruption>& imagenet_c_corruptions() {
  static const std::vector<Corruption> v = [] {
    std::vector<Corruption> l = detail::corruption::range(0, 6);  // the noises, gaussian_ and defocus_blur
    l.push_back(Corruption::glass_blur);
    for (Corruption c : detail::corruption::range(6, 15)) l.push_back(c);  // motion_blur .. fog
    return l;
  }();
  return v;
}
// The 5 fundus degradations: uneven_illumination, halo, dark_hole, spots, fundus_defocus.
inline const std::vector<Corruption>& fundus_corruptions() {
  static const std::vector<Corruption> v = detail::corruption::range(15, 15 + kFundusCorruptionCount);
  return v;
}
// All 21, ImageNet-C's first.
inline const std::vector<Corruption>& all_corruptions() {
  static const std::vector<Corruption> v = [] {
    std::vector<Corruption> l = imagenet_c_corruptions();
    for (Corruption c : fundus_corruptions()) l.push_back(c);
    return l;
  }();
  return v;
}

inline bool is_fundus_corruption(Corruption c) {
  return c >= Corruption::uneven_illumination && c <= Corruption::fundus_defocus;
}

// False for the deterministic ones (the blurs but motion_blur, brightness, contrast, saturate,
// jpeg_compression, pixelate, fundus_defocus): their output does not depend on seed or sample.
inline bool corruption_is_random(Corruption c) {
  switch (c) {
    case Corruption::gaussian_blur:
    case Corruption::defocus_blur:
    case Corruption::zoom_blur:
    case Corruption::brightness:
    case Corruption::contrast:
    case Corruption::saturate:
    case Corruption::jpeg_compression:
    case Corruption::pixelate:
    case Corruption::fundus_defocus: return false;
    default: return true;
  }
}

// ImageNet-C's name ("gaussian_noise", ..., "jpeg_compression") or the fundus one's.
inline std::string_view corruption_name(Corruption c) {
  const int i = static_cast<int>(c);
  FOVEA_CHECK(i >= 0 && i < kCorruptionCount, "corruption_name: no corruption with index ", i);
  return detail::corruption::kNames[static_cast<std::size_t>(i)];
}

// The corruption named `name` (exactly as corruption_name spells it); throws fovea::Error listing
// the valid names.
inline Corruption parse_corruption(std::string_view name) {
  for (int i = 0; i < kCorruptionCount; ++i)
    if (detail::corruption::kNames[static_cast<std::size_t>(i)] == name) return static_cast<Corruption>(i);
  FOVEA_FAIL("unknown corruption '", std::string(name),
             "'; valid names: ", detail::corruption::valid_names());
}

// A comma-separated list of names, or one of the groups "all", "imagenet_c", "fundus" (a --corruptions
// flag). Keeps the order given; throws on an empty entry, an unknown name or a repeated one.
inline std::vector<Corruption> parse_corruption_list(std::string_view list) {
  if (list == "all") return all_corruptions();
  if (list == "imagenet_c") return imagenet_c_corruptions();
  if (list == "fundus") return fundus_corruptions();
  std::vector<Corruption> out;
  std::size_t start = 0;
  while (true) {
    const std::size_t comma = list.find(',', start);
    const std::string_view item =
        list.substr(start, comma == std::string_view::npos ? list.npos : comma - start);
    FOVEA_CHECK(!item.empty(), "corruption list '", std::string(list),
                "' has an empty entry (names separated by commas, or all / imagenet_c / fundus)");
    const Corruption c = parse_corruption(item);
    FOVEA_CHECK(std::find(out.begin(), out.end(), c) == out.end(), "corruption list '", std::string(list),
                "' names ", std::string(item), " twice");
    out.push_back(c);
    if (comma == std::string_view::npos) break;
    start = comma + 1;
  }
  return out;
}

// The Philox stream of corruption c at `severity` of image `sample`:
//   RandomKey{seed, kPurposeDistort, epoch = stream, sample, view = index(c) * 8 + severity}
// where index(c) is c's position in the enum (0..20; glass_blur, added last, is 20). `stream` separates
// independent fields of one corruption (elastic_transform's x and y displacements); every other corruption
// uses stream 0. requires: 0 <= sample < 2^32, severity in 1..5.
inline RandomKey corruption_key(std::uint64_t seed, std::int64_t sample, Corruption c, int severity,
                                std::uint32_t stream = 0) {
  FOVEA_CHECK(sample >= 0 && sample <= static_cast<std::int64_t>(UINT32_MAX), "corruption_key: sample ",
              sample, " must be in [0, 2^32)");
  FOVEA_CHECK(severity >= kMinSeverity && severity <= kMaxSeverity, "corruption_key: severity ", severity,
              " must be 1..5");
  return make_key(seed, kPurposeDistort, stream, static_cast<std::uint32_t>(sample),
                  static_cast<std::uint32_t>(static_cast<int>(c) * 8 + severity));
}

// The length scale of the size rule: min(H, W) / 224.
inline double corruption_scale(std::int64_t height, std::int64_t width) {
  return static_cast<double>(std::min(height, width)) / kCorruptionReferenceSide;
}

// ---- parameter tables (severities 1..5) ---------------------------------------------------------

namespace detail::corruption {

template <class T>
using Table = std::array<T, 5>;
struct Pair {
  double a, b;
};

// ImageNet-C (REFERENCE 1.6), lengths in pixels at 224 px.
inline constexpr Table<double> kGaussianNoise{0.08, 0.12, 0.18, 0.26, 0.38};  // sigma
inline constexpr Table<double> kShotNoise{60, 25, 12, 5, 3};                  // photons per unit
inline constexpr Table<double> kImpulseNoise{0.03, 0.06, 0.09, 0.17, 0.27};   // amount
inline constexpr Table<double> kSpeckleNoise{0.15, 0.20, 0.35, 0.45, 0.60};   // sigma
inline constexpr Table<double> kGaussianBlur{1, 2, 3, 4, 6};                  // sigma
inline constexpr Table<Pair> kDefocusBlur{
    {{3, 0.1}, {4, 0.5}, {6, 0.5}, {8, 0.5}, {10, 0.5}}};                                   // radius, alias
inline constexpr Table<Pair> kMotionBlur{{{10, 3}, {15, 5}, {15, 8}, {15, 12}, {20, 15}}};  // radius, sigma
inline constexpr Table<Pair> kZoomBlur{
    {{1.11, 0.01}, {1.16, 0.01}, {1.21, 0.02}, {1.26, 0.02}, {1.31, 0.03}}};  // end (excluded), step
inline constexpr Table<double> kBrightness{0.1, 0.2, 0.3, 0.4, 0.5};
inline constexpr Table<double> kContrast{0.4, 0.3, 0.2, 0.1, 0.05};
inline constexpr Table<Pair> kSaturate{{{0.3, 0}, {0.1, 0}, {2, 0}, {5, 0.1}, {20, 0.2}}};  // scale, shift
inline constexpr Table<int> kJpegQuality{25, 18, 15, 10, 7};
inline constexpr Table<double> kPixelate{0.60, 0.50, 0.40, 0.30, 0.25};  // side fraction
inline constexpr Table<double> kElasticAlpha{12.5, 16.25, 21.25, 25, 30};
inline constexpr double kElasticSigma = 2.44;  // ImageNet-C's 244 * 0.01 (its severities 3-5)
inline constexpr Table<Pair> kFog{{{1.5, 2}, {2, 2}, {2.5, 1.7}, {2.5, 1.5}, {3, 1.4}}};  // strength, decay
struct Glass {
  double sigma;
  int delta, iterations;
};
inline constexpr Table<Glass> kGlassBlur{
    {{0.7, 1, 2}, {0.9, 2, 1}, {1, 2, 3}, {1.1, 3, 2}, {1.5, 4, 2}}};  // sigma, max_delta, iterations

// Fundus degradations; lengths as fractions of the field of view's radius R.
inline constexpr Table<double> kUnevenIllumination{0.4, 0.8, 1.2, 1.6, 2.0};  // log-gain depth a
inline constexpr Table<Pair> kHalo{{{0.25, 0.08}, {0.35, 0.10}, {0.50, 0.12}, {0.65, 0.15}, {0.80, 0.18}}};
inline constexpr Table<Pair> kDarkHole{
    {{0.35, 0.12}, {0.50, 0.16}, {0.65, 0.20}, {0.80, 0.25}, {0.90, 0.30}}};
inline constexpr double kDarkHoleReach = 0.5;  // hole centres within 0.5 R of the FOV centre
inline constexpr Table<Pair> kSpots{
    {{4, 0.30}, {8, 0.40}, {12, 0.50}, {18, 0.60}, {25, 0.70}}};  // count, amp
inline constexpr double kSpotSigmaMin = 0.015, kSpotSigmaMax = 0.045, kSpotReach = 0.9;
inline constexpr Table<double> kFundusDefocus{0.015, 0.025, 0.035, 0.050, 0.070};  // disk radius / R

}  // namespace detail::corruption

// The parameters of c at `severity` at 224 px (fundus: in units of the FOV radius R), as text for
// logs and result files, e.g. "sigma=0.08" or "radius=10 alias_sigma=0.5 px".
inline std::string corruption_parameters(Corruption c, int severity) {
  namespace t = detail::corruption;
  FOVEA_CHECK(severity >= kMinSeverity && severity <= kMaxSeverity, "corruption_parameters: severity ",
              severity, " must be 1..5");
  const std::size_t i = static_cast<std::size_t>(severity - 1);
  std::ostringstream os;
  switch (c) {
    case Corruption::gaussian_noise: os << "sigma=" << t::kGaussianNoise[i]; break;
    case Corruption::shot_noise: os << "c=" << t::kShotNoise[i]; break;
    case Corruption::impulse_noise: os << "amount=" << t::kImpulseNoise[i]; break;
    case Corruption::speckle_noise: os << "sigma=" << t::kSpeckleNoise[i]; break;
    case Corruption::gaussian_blur: os << "sigma=" << t::kGaussianBlur[i] << " px"; break;
    case Corruption::defocus_blur:
      os << "radius=" << t::kDefocusBlur[i].a << " alias_sigma=" << t::kDefocusBlur[i].b << " px";
      break;
    case Corruption::motion_blur:
      os << "radius=" << t::kMotionBlur[i].a << " sigma=" << t::kMotionBlur[i].b << " px angle=U(-45,45)";
      break;
    case Corruption::zoom_blur:
      os << "zooms=arange(1," << t::kZoomBlur[i].a << "," << t::kZoomBlur[i].b << ")";
      break;
    case Corruption::brightness: os << "dV=" << t::kBrightness[i]; break;
    case Corruption::contrast: os << "c=" << t::kContrast[i]; break;
    case Corruption::saturate: os << "S*" << t::kSaturate[i].a << "+" << t::kSaturate[i].b; break;
    case Corruption::jpeg_compression: os << "quality=" << t::kJpegQuality[i]; break;
    case Corruption::pixelate: os << "side*" << t::kPixelate[i]; break;
    case Corruption::elastic_transform:
      os << "alpha=" << t::kElasticAlpha[i] << " sigma=" << t::kElasticSigma << " px";
      break;
    case Corruption::fog: os << "strength=" << t::kFog[i].a << " decay=" << t::kFog[i].b; break;
    case Corruption::glass_blur:
      os << "sigma=" << t::kGlassBlur[i].sigma << " px max_delta=" << t::kGlassBlur[i].delta
         << " px iterations=" << t::kGlassBlur[i].iterations;
      break;
    case Corruption::uneven_illumination: os << "slope=" << t::kUnevenIllumination[i]; break;
    case Corruption::halo: os << "strength=" << t::kHalo[i].a << " width=" << t::kHalo[i].b << " R"; break;
    case Corruption::dark_hole:
      os << "depth=" << t::kDarkHole[i].a << " sigma=" << t::kDarkHole[i].b << " R";
      break;
    case Corruption::spots: os << "count=" << t::kSpots[i].a << " amplitude=" << t::kSpots[i].b; break;
    case Corruption::fundus_defocus: os << "radius=" << t::kFundusDefocus[i] << " R"; break;
  }
  return os.str();
}

// ---- building blocks ----------------------------------------------------------------------------

namespace detail::corruption {

// The plane (h, w) padded by `pad` on every side according to `border`: (h + 2 pad, w + 2 pad).
inline std::vector<float> pad_plane(const float* in, std::int64_t h, std::int64_t w, std::int64_t pad,
                                    Border border) {
  const std::int64_t pw = w + 2 * pad, ph = h + 2 * pad;
  std::vector<float> out(static_cast<std::size_t>(ph * pw));
  std::vector<std::int64_t> xs(static_cast<std::size_t>(pw));
  for (std::int64_t x = 0; x < pw; ++x) xs[static_cast<std::size_t>(x)] = border_index(x - pad, w, border);
  for (std::int64_t y = 0; y < ph; ++y) {
    const std::int64_t sy = border_index(y - pad, h, border);
    float* dst = out.data() + y * pw;
    if (sy < 0) {
      std::fill(dst, dst + pw, 0.0f);
      continue;
    }
    const float* src = in + sy * w;
    for (std::int64_t x = 0; x < pw; ++x) {
      const std::int64_t sx = xs[static_cast<std::size_t>(x)];
      dst[x] = sx < 0 ? 0.0f : src[sx];
    }
  }
  return out;
}

// out(y, x) = sum over taps of weight * in(y + dy, x + dx), positions beyond the plane read through
// `border`. One plane (h, w); out must not alias in.
inline void filter_taps(const float* in, float* out, std::int64_t h, std::int64_t w,
                        const std::vector<Tap>& taps, Border border) {
  std::int64_t pad = 0;
  for (const Tap& t : taps) pad = std::max<std::int64_t>({pad, std::abs(t.dy), std::abs(t.dx)});
  const std::vector<float> padded = pad_plane(in, h, w, pad, border);
  const std::int64_t pw = w + 2 * pad;
  for (std::int64_t y = 0; y < h; ++y) {
    float* dst = out + y * w;
    std::fill(dst, dst + w, 0.0f);
    for (const Tap& t : taps) {
      const float* src = padded.data() + (y + pad + t.dy) * pw + pad + t.dx;
      const float wt = t.weight;
      for (std::int64_t x = 0; x < w; ++x) dst[x] += wt * src[x];
    }
  }
}

// exp(-i^2 / (2 sigma^2)) for i = -radius..radius, normalised to sum 1 (in double).
inline std::vector<float> gaussian_taps(double sigma, std::int64_t radius) {
  std::vector<double> k(static_cast<std::size_t>(2 * radius + 1));
  double total = 0.0;
  for (std::int64_t i = -radius; i <= radius; ++i) {
    const double v = sigma > 0.0 ? std::exp(-0.5 * static_cast<double>(i * i) / (sigma * sigma)) : (i == 0);
    k[static_cast<std::size_t>(i + radius)] = v;
    total += v;
  }
  std::vector<float> out(k.size());
  for (std::size_t i = 0; i < k.size(); ++i) out[i] = static_cast<float>(k[i] / total);
  return out;
}

// ImageNet-C's disk(radius, alias_blur) at scale s: the indicator of x^2 + y^2 <= r^2 on the grid
// [-half, half]^2, normalised, then blurred by a Gaussian of sigma `alias` over (2 ah + 1) taps with
// reflect-101 borders (cv2.GaussianBlur). At s = 1: half = 8 and ah = 1 (a 3x3 blur) for r <= 8,
// else half = r and ah = 2 (5x5); at other scales 8 and the blur window scale with s. The result is
// renormalised to sum 1: ImageNet-C's sums to 1.013 at r = 8 and 1.011 at r = 10, where the disk
// touches the grid's edge and the reflected border adds weight. Taps below 1e-7 are dropped.
inline std::vector<Tap> disk_taps(double radius, double alias, double s) {
  const bool small = radius <= 8.0 * s;
  const int half = static_cast<int>(std::ceil(small ? 8.0 * s - 1e-9 : radius - 1e-9));
  const int ah = std::max(small ? 1 : 2, static_cast<int>(std::lround(small ? s : 2.0 * s)));
  const int n = 2 * half + 1;
  std::vector<float> grid(static_cast<std::size_t>(n * n), 0.0f);
  double count = 0.0;
  for (int y = -half; y <= half; ++y)
    for (int x = -half; x <= half; ++x)
      if (static_cast<double>(x * x + y * y) <= radius * radius) {
        grid[static_cast<std::size_t>((y + half) * n + x + half)] = 1.0f;
        count += 1.0;
      }
  for (float& v : grid) v = static_cast<float>(v / count);
  std::vector<float> blurred(grid.size());
  separable_filter(grid.data(), blurred.data(), n, n, gaussian_taps(alias, ah), Border::reflect101);
  double total = 0.0;
  for (float v : blurred) total += v;
  std::vector<Tap> taps;
  for (int y = -half; y <= half; ++y)
    for (int x = -half; x <= half; ++x) {
      const double v = blurred[static_cast<std::size_t>((y + half) * n + x + half)] / total;
      if (v > 1e-7) taps.push_back({y, x, static_cast<float>(v)});
    }
  return taps;
}

// ImageNet-C's plasma_fractal(mapsize, wibbledecay): diamond-square on an m x m torus (m a power of
// two), point (0, 0) = 0. Each level sets the centres of the squares of side `step` to the mean of
// their 4 corners, then the edge midpoints to the mean of their 4 diamond neighbours, each plus
// w * U(-w, w) (ImageNet-C multiplies its uniform draw by w once more, so the amplitude of a level
// falls by decay^2), with w = 100 at the first level and w /= decay after each. Point (y, x) takes
// its draw from uniform(key, y * m + x): it is set exactly once. Normalised to [0, 1] at the end.
//   -> m * m values, row-major, in double.
inline std::vector<double> plasma_fractal(std::int64_t m, double decay, const RandomKey& key) {
  FOVEA_CHECK(m >= 2 && (m & (m - 1)) == 0, "plasma_fractal: map size ", m, " must be a power of two >= 2");
  std::vector<double> map(static_cast<std::size_t>(m * m), 0.0);
  double wibble = 100.0;
  for (std::int64_t step = m; step >= 2; step /= 2) {  // the points of corruption_math.hpp's passes
    const std::int64_t cells = (m / step) * (m / step);
    for (std::int64_t k = 0; k < cells; ++k) plasma_square(map.data(), m, step, k, wibble, key);
    for (std::int64_t k = 0; k < 2 * cells; ++k) plasma_diamond(map.data(), m, step, k, wibble, key);
    wibble /= decay;
  }
  const auto [lo, hi] = std::minmax_element(map.begin(), map.end());
  const double min = *lo, range = *hi - *lo;
  for (double& v : map) v = range > 0.0 ? (v - min) / range : 0.0;
  return map;
}

// ---- ImageNet-C ---------------------------------------------------------------------------------

inline std::int64_t plane_of(CView x) { return x.shape()[1] * x.shape()[2]; }

inline Tensor gaussian_noise(CView x, double sigma, const RandomKey& key) {
  Tensor out(x.shape());
  const float sd = static_cast<float>(sigma);
  for (std::int64_t i = 0; i < x.numel(); ++i)
    out.data()[i] = gaussian_noise_at(x.data()[i], sd, key, static_cast<std::uint64_t>(i));
  return out;
}

inline Tensor shot_noise(CView x, double c, const RandomKey& key) {
  Tensor out(x.shape());
  for (std::int64_t i = 0; i < x.numel(); ++i)
    out.data()[i] = shot_noise_at(x.data()[i], c, key, static_cast<std::uint32_t>(i));
  return out;
}

// skimage's random_noise(mode="s&p"): each element is replaced with probability `amount`, by 1 or 0
// with equal odds (word 0 of block i decides replacement, the top bit of word 1 salt vs pepper).
inline Tensor impulse_noise(CView x, double amount, const RandomKey& key) {
  Tensor out(x.shape());
  for (std::int64_t i = 0; i < x.numel(); ++i)
    out.data()[i] = impulse_noise_at(x.data()[i], amount, key, static_cast<std::uint32_t>(i));
  return out;
}

inline Tensor speckle_noise(CView x, double sigma, const RandomKey& key) {
  Tensor out(x.shape());
  const float sd = static_cast<float>(sigma);
  for (std::int64_t i = 0; i < x.numel(); ++i)
    out.data()[i] = speckle_noise_at(x.data()[i], sd, key, static_cast<std::uint64_t>(i));
  return out;
}

// Every channel through `taps` (2-D) with `border`, clipped.
inline Tensor filter_image(CView x, const std::vector<Tap>& taps, Border border) {
  Tensor out(x.shape());
  const std::int64_t h = x.shape()[1], w = x.shape()[2], plane = plane_of(x);
  for (std::int64_t c = 0; c < 3; ++c)
    filter_taps(x.data() + c * plane, out.data() + c * plane, h, w, taps, border);
  for (std::int64_t i = 0; i < out.numel(); ++i) out.data()[i] = clip01(out.data()[i]);
  return out;
}

// skimage.filters.gaussian: radius floor(4 sigma + 0.5), edge clamp (scipy "nearest").
inline Tensor gaussian_blur(CView x, double sigma) {
  Tensor out(x.shape());
  const std::int64_t h = x.shape()[1], w = x.shape()[2], plane = plane_of(x);
  const std::vector<float> k = gaussian_taps(sigma, static_cast<std::int64_t>(4.0 * sigma + 0.5));
  for (std::int64_t c = 0; c < 3; ++c)
    separable_filter(x.data() + c * plane, out.data() + c * plane, h, w, k, Border::clamp);
  for (std::int64_t i = 0; i < out.numel(); ++i) out.data()[i] = clip01(out.data()[i]);
  return out;
}

// ImageNet-C's glass_blur at scale s (min(H, W) / 224): sigma s, max_delta max(1, round(delta s)), the
// iterations unchanged.
inline Glass glass_params(int severity, double s) {
  const Glass g = kGlassBlur[static_cast<std::size_t>(severity - 1)];
  return {g.sigma * s, std::max(1, static_cast<int>(std::lround(g.delta * s))), g.iterations};
}

// glass_blur's local shuffle as ImageNet-C runs it on an (H, W) image: for each iteration, for
// y = H - delta down to delta + 1, for x = W - delta down to delta + 1, (dx, dy) = randint(-delta,
// delta, 2) and `x[y, x], x[y + dy, x + dx] = x[y + dy, x + dx], x[y, x]`. On NumPy views that tuple
// assignment is not a swap: the first assignment copies pixel (y + dy, x + dx) into (y, x), and the
// second then writes that same value back where it came from. So each visited pixel takes the value
// its draw points at, now (a pixel visited before it in this pass already holds a copied value).
// Returned as each pixel's source: the shuffled image's pixel p = y W + x is the input's pixel
// source[p]. Draws: Philox block (iteration H + y) W + x of key, word 0 -> dx, word 1 -> dy.
// glass_source_at (corruption_math.hpp) gives the same sources one pixel at a time (the GPU's way).
inline std::vector<std::int32_t> glass_source(std::int64_t h, std::int64_t w, int delta, int iterations,
                                              const RandomKey& key) {
  FOVEA_CHECK(h > 0 && w > 0 && delta > 0 && iterations > 0 &&
                  static_cast<std::int64_t>(iterations) * h * w <= static_cast<std::int64_t>(UINT32_MAX),
              "glass_source: ", iterations, " iterations over ", h, "x", w, " pixels at max_delta ", delta,
              " exceed the random stream (2^32 draws)");
  std::vector<std::int32_t> source(static_cast<std::size_t>(h * w));
  for (std::size_t p = 0; p < source.size(); ++p) source[p] = static_cast<std::int32_t>(p);
  for (int it = 0; it < iterations; ++it)
    for (std::int64_t y = h - delta; y > delta; --y)
      for (std::int64_t x = w - delta; x > delta; --x) {
        const U32x4 b = random_block(key, static_cast<std::uint32_t>((it * h + y) * w + x));
        const std::int64_t dx = glass_offset(b.v[0], delta), dy = glass_offset(b.v[1], delta);
        source[static_cast<std::size_t>(y * w + x)] = source[static_cast<std::size_t>((y + dy) * w + x + dx)];
      }
  return source;
}

// ImageNet-C's glass_blur: the Gaussian blur of gaussian_blur (sigma, edge clamp), stepped to 8 bits
// (glass_quantize_at), shuffled by `source` (glass_source), blurred again and clipped.
inline Tensor glass_blur(CView x, double sigma, const std::vector<std::int32_t>& source) {
  const std::int64_t h = x.shape()[1], w = x.shape()[2], plane = plane_of(x);
  const std::vector<float> k = gaussian_taps(sigma, static_cast<std::int64_t>(4.0 * sigma + 0.5));
  Tensor blurred(x.shape()), shuffled(x.shape()), out(x.shape());
  for (std::int64_t c = 0; c < 3; ++c)
    separable_filter(x.data() + c * plane, blurred.data() + c * plane, h, w, k, Border::clamp);
  for (std::int64_t c = 0; c < 3; ++c)
    for (std::int64_t p = 0; p < plane; ++p)
      shuffled.data()[c * plane + p] =
          glass_quantize_at(blurred.data()[c * plane + source[static_cast<std::size_t>(p)]]);
  for (std::int64_t c = 0; c < 3; ++c)
    separable_filter(shuffled.data() + c * plane, out.data() + c * plane, h, w, k, Border::clamp);
  for (std::int64_t i = 0; i < out.numel(); ++i) out.data()[i] = clip01(out.data()[i]);
  return out;
}

// ImageMagick's MotionBlurImage(radius, sigma, angle): 2 radius + 1 taps i = 0..2 radius with weight
// exp(-i^2 / (2 sigma^2)) (normalised) reading pixel (x + ceil(i cos a - 0.5), y + ceil(i sin a - 0.5)):
// a one-sided trail, edge clamp.
inline std::vector<Tap> motion_taps(std::int64_t radius, double sigma, double degrees) {
  const double a = degrees * kPi / 180.0;
  const std::int64_t width = 2 * radius + 1;
  std::vector<double> k(static_cast<std::size_t>(width));
  double total = 0.0;
  for (std::int64_t i = 0; i < width; ++i)
    total += k[static_cast<std::size_t>(i)] =
        sigma > 0.0 ? std::exp(-0.5 * static_cast<double>(i * i) / (sigma * sigma)) : (i == 0);
  std::vector<Tap> taps;
  for (std::int64_t i = 0; i < width; ++i) {
    const float wt = static_cast<float>(k[static_cast<std::size_t>(i)] / total);
    if (wt <= 0.0f) continue;
    taps.push_back({static_cast<int>(std::ceil(static_cast<double>(i) * std::sin(a) - 0.5)),
                    static_cast<int>(std::ceil(static_cast<double>(i) * std::cos(a) - 0.5)), wt});
  }
  return taps;
}

// motion_blur's taps for the angle U(-45, 45) degrees drawn from key, at severity and scale s.
inline std::vector<Tap> motion_taps_of(const RandomKey& key, int severity, double s) {
  const std::size_t i = static_cast<std::size_t>(severity - 1);
  const double degrees = -45.0 + 90.0 * static_cast<double>(uniform(key, 0));
  const auto radius = static_cast<std::int64_t>(std::lround(kMotionBlur[i].a * s));
  return motion_taps(radius, kMotionBlur[i].b * s, degrees);
}

// The zoom factors of ImageNet-C's np.arange(1, end, step): 1 + k step for k < ceil((end - 1) / step),
// evaluated in double as numpy does (severity 1 thus ends at 1.11: 12 factors).
inline std::vector<double> zoom_factors(double end, double step) {
  const auto n = static_cast<std::int64_t>(std::ceil((end - 1.0) / step));
  std::vector<double> f;
  for (std::int64_t k = 0; k < n; ++k) f.push_back(1.0 + static_cast<double>(k) * step);
  return f;
}

// The bilinear taps of a zoom by f about the centre of a line of n: the centred window of n / f
// pixels stretched back over n (half-pixel centres: src = (o + 0.5 - n/2) / f + n/2 - 0.5).
inline std::vector<LinearTap> zoom_taps(std::int64_t n, double f) {
  std::vector<LinearTap> taps(static_cast<std::size_t>(n));
  const double centre = 0.5 * static_cast<double>(n);
  for (std::int64_t o = 0; o < n; ++o) {
    const double src = std::clamp((static_cast<double>(o) + 0.5 - centre) / f + centre - 0.5, 0.0,
                                  static_cast<double>(n - 1));
    const auto i0 = static_cast<std::int64_t>(std::floor(src));
    taps[static_cast<std::size_t>(o)] = {i0, std::min(i0 + 1, n - 1),
                                         static_cast<float>(src - static_cast<double>(i0))};
  }
  return taps;
}

// (x + sum over factors of zoom_f(x)) / (factors + 1).
inline Tensor zoom_blur(CView x, double end, double step) {
  const std::int64_t h = x.shape()[1], w = x.shape()[2], plane = plane_of(x);
  const std::vector<double> factors = zoom_factors(end, step);
  std::vector<float> acc(x.data(), x.data() + x.numel());
  std::vector<float> rows(static_cast<std::size_t>(h * w));
  for (double f : factors) {
    const std::vector<LinearTap> ty = zoom_taps(h, f), tx = zoom_taps(w, f);
    for (std::int64_t c = 0; c < 3; ++c) {
      const float* src = x.data() + c * plane;
      for (std::int64_t y = 0; y < h; ++y) {  // columns resampled along x into rows
        const float* s = src + y * w;
        float* d = rows.data() + y * w;
        for (std::int64_t o = 0; o < w; ++o) {
          const LinearTap& t = tx[static_cast<std::size_t>(o)];
          d[o] = s[t.i0] + t.lambda * (s[t.i1] - s[t.i0]);
        }
      }
      float* a = acc.data() + c * plane;
      for (std::int64_t o = 0; o < h; ++o) {
        const LinearTap& t = ty[static_cast<std::size_t>(o)];
        const float* r0 = rows.data() + t.i0 * w;
        const float* r1 = rows.data() + t.i1 * w;
        for (std::int64_t xx = 0; xx < w; ++xx) a[o * w + xx] += r0[xx] + t.lambda * (r1[xx] - r0[xx]);
      }
    }
  }
  Tensor out(x.shape());
  const float inv = 1.0f / static_cast<float>(factors.size() + 1);
  for (std::int64_t i = 0; i < out.numel(); ++i)
    out.data()[i] = clip01(acc[static_cast<std::size_t>(i)] * inv);
  return out;
}

// Per pixel: f(r, g, b) in place (brightness_at, saturate_at).
template <class F>
Tensor map_pixels(CView x, F f) {
  Tensor out(x.shape());
  const std::int64_t plane = plane_of(x);
  const float* r = x.data();
  const float* g = r + plane;
  const float* b = g + plane;
  float* ro = out.data();
  float* go = ro + plane;
  float* bo = go + plane;
  for (std::int64_t i = 0; i < plane; ++i) {
    ro[i] = r[i], go[i] = g[i], bo[i] = b[i];
    f(ro[i], go[i], bo[i]);
  }
  return out;
}

inline Tensor contrast(CView x, double c) {
  Tensor out(x.shape());
  const std::int64_t plane = plane_of(x);
  const float cf = static_cast<float>(c);
  for (std::int64_t ch = 0; ch < 3; ++ch) {
    const float* src = x.data() + ch * plane;
    double sum = 0.0;
    for (std::int64_t i = 0; i < plane; ++i) sum += src[i];
    const float mean = static_cast<float>(sum / static_cast<double>(plane));
    float* dst = out.data() + ch * plane;
    for (std::int64_t i = 0; i < plane; ++i) dst[i] = contrast_at(src[i], mean, cf);
  }
  return out;
}

// Encodes an h x w image of interleaved 8-bit RGB `pixels` with stb_image_write at `quality` and
// decodes it with stb_image into `pixels` (the codec's round trip of jpeg_compression; what names the
// image in errors).
inline void jpeg_roundtrip(unsigned char* pixels, std::int64_t h, std::int64_t w, int quality,
                           const std::string& what) {
  FOVEA_CHECK(h <= 65535 && w <= 65535, "jpeg_compression: image ", what,
              " is larger than JPEG allows (65535 px a side)");
#if FOVEA_WITH_STB
  std::string encoded;
  auto sink = [](void* context, void* data, int size) {
    static_cast<std::string*>(context)->append(static_cast<const char*>(data),
                                               static_cast<std::size_t>(size));
  };
  const int ok =
      stbi_write_jpg_to_func(sink, &encoded, static_cast<int>(w), static_cast<int>(h), 3, pixels, quality);
  FOVEA_CHECK(ok != 0 && !encoded.empty(), "jpeg_compression: stb_image_write failed to encode a ", what,
              " image at quality ", quality);
  int dw = 0, dh = 0, channels = 0;
  unsigned char* decoded = stbi_load_from_memory(reinterpret_cast<const unsigned char*>(encoded.data()),
                                                 static_cast<int>(encoded.size()), &dw, &dh, &channels, 3);
  FOVEA_CHECK(decoded != nullptr, "jpeg_compression: stb_image failed to decode its own JPEG: ",
              stbi_failure_reason() != nullptr ? stbi_failure_reason() : "unknown failure");
  struct Freer {
    unsigned char* p;
    ~Freer() { stbi_image_free(p); }
  } freer{decoded};
  FOVEA_CHECK(dw == w && dh == h, "jpeg_compression: decoded ", dw, "x", dh, " from a ", w, "x", h, " image");
  std::copy(decoded, decoded + 3 * h * w, pixels);
#else
  (void)pixels, (void)quality, (void)what;
  FOVEA_FAIL("jpeg_compression needs stb_image_write, and this program was ",
             fovea::data::detail::kNoStbMessage);
#endif
}

inline Tensor jpeg_compression(CView x, int quality) {
  const std::int64_t h = x.shape()[1], w = x.shape()[2], plane = plane_of(x);
  std::vector<unsigned char> pixels(static_cast<std::size_t>(3 * plane));
  for (std::int64_t p = 0; p < plane; ++p)
    for (std::int64_t c = 0; c < 3; ++c)
      pixels[static_cast<std::size_t>(p * 3 + c)] = jpeg_byte(x.data()[c * plane + p]);
  jpeg_roundtrip(pixels.data(), h, w, quality, x.shape().str());
  Tensor out(x.shape());
  for (std::int64_t p = 0; p < plane; ++p)
    for (std::int64_t c = 0; c < 3; ++c)
      out.data()[c * plane + p] = jpeg_value(pixels[static_cast<std::size_t>(p * 3 + c)]);
  return out;
}

// PIL's BOX resampling along one axis when shrinking n -> m: output i averages the input pixels
// whose centres lie in (i n / m, (i + 1) n / m], with equal weights. Returns each output's first
// input and count.
inline std::vector<std::array<std::int64_t, 2>> box_groups(std::int64_t n, std::int64_t m) {
  std::vector<std::array<std::int64_t, 2>> g(static_cast<std::size_t>(m));
  const double scale = static_cast<double>(n) / static_cast<double>(m);
  for (std::int64_t i = 0; i < m; ++i) {
    // centre j + 0.5 in (i scale, (i + 1) scale]  <=>  j in (i scale - 0.5, (i + 1) scale - 0.5]
    std::int64_t first = static_cast<std::int64_t>(std::floor(static_cast<double>(i) * scale - 0.5)) + 1;
    std::int64_t last = static_cast<std::int64_t>(std::floor((static_cast<double>(i) + 1.0) * scale - 0.5));
    first = std::clamp<std::int64_t>(first, 0, n - 1);
    last = std::clamp<std::int64_t>(last, first, n - 1);
    g[static_cast<std::size_t>(i)] = {first, last - first + 1};
  }
  return g;
}

// pixelate's geometry: the small side (int(H c), int(W c)) (at least 1), each output row's and
// column's small row and column (nearest), the box groups of the small rows and columns.
struct PixelateIndex {
  std::int64_t sh = 0, sw = 0;
  std::vector<std::int64_t> near_y, near_x;
  std::vector<std::array<std::int64_t, 2>> gy, gx;
};

inline PixelateIndex pixelate_index(std::int64_t h, std::int64_t w, double c) {
  PixelateIndex p;
  p.sh = std::max<std::int64_t>(1, static_cast<std::int64_t>(static_cast<double>(h) * c));
  p.sw = std::max<std::int64_t>(1, static_cast<std::int64_t>(static_cast<double>(w) * c));
  p.gy = box_groups(h, p.sh), p.gx = box_groups(w, p.sw);
  auto nearest = [](std::int64_t n, std::int64_t m) {
    std::vector<std::int64_t> near(static_cast<std::size_t>(n));
    for (std::int64_t o = 0; o < n; ++o)
      near[static_cast<std::size_t>(o)] =
          std::min(m - 1, static_cast<std::int64_t>((static_cast<double>(o) + 0.5) * static_cast<double>(m) /
                                                    static_cast<double>(n)));
    return near;
  };
  p.near_y = nearest(h, p.sh), p.near_x = nearest(w, p.sw);
  return p;
}

// Box-downscale to (int(H c), int(W c)) (at least 1), then nearest upscale back to (H, W).
inline Tensor pixelate(CView x, double c) {
  const std::int64_t h = x.shape()[1], w = x.shape()[2], plane = plane_of(x);
  const PixelateIndex ix = pixelate_index(h, w, c);
  const std::int64_t sh = ix.sh, sw = ix.sw;
  std::vector<double> rows(static_cast<std::size_t>(h * sw));
  std::vector<float> small(static_cast<std::size_t>(sh * sw));
  Tensor out(x.shape());
  for (std::int64_t c = 0; c < 3; ++c) {
    const float* src = x.data() + c * plane;
    for (std::int64_t y = 0; y < h; ++y)
      for (std::int64_t i = 0; i < sw; ++i) {
        const auto [first, count] = ix.gx[static_cast<std::size_t>(i)];
        double sum = 0.0;
        for (std::int64_t k = 0; k < count; ++k) sum += src[y * w + first + k];
        rows[static_cast<std::size_t>(y * sw + i)] = sum / static_cast<double>(count);
      }
    for (std::int64_t j = 0; j < sh; ++j)
      for (std::int64_t i = 0; i < sw; ++i) {
        const auto [first, count] = ix.gy[static_cast<std::size_t>(j)];
        double sum = 0.0;
        for (std::int64_t k = 0; k < count; ++k) sum += rows[static_cast<std::size_t>((first + k) * sw + i)];
        small[static_cast<std::size_t>(j * sw + i)] = static_cast<float>(sum / static_cast<double>(count));
      }
    float* dst = out.data() + c * plane;
    for (std::int64_t y = 0; y < h; ++y) {
      const std::int64_t j = ix.near_y[static_cast<std::size_t>(y)];
      for (std::int64_t xx = 0; xx < w; ++xx)
        dst[y * w + xx] =
            clip01(small[static_cast<std::size_t>(j * sw + ix.near_x[static_cast<std::size_t>(xx)])]);
    }
  }
  return out;
}

// Displacements U(-1, 1) per pixel (uniform(key, pixel)), Gaussian-smoothed (radius int(3 sigma +
// 0.5), mirrored borders), times alpha; then every channel sampled bilinearly at (y + dy, x + dx)
// with mirrored borders (scipy map_coordinates, order 1, mode "reflect").
inline Tensor elastic_transform(CView x, double alpha, double sigma, const RandomKey& key_x,
                                const RandomKey& key_y) {
  const std::int64_t h = x.shape()[1], w = x.shape()[2], plane = plane_of(x);
  const std::vector<float> k = gaussian_taps(sigma, static_cast<std::int64_t>(3.0 * sigma + 0.5));
  std::vector<float> noise(static_cast<std::size_t>(plane)), dx(noise.size()), dy(noise.size());
  for (std::int64_t i = 0; i < plane; ++i)
    noise[static_cast<std::size_t>(i)] = 2.0f * uniform(key_x, static_cast<std::uint64_t>(i)) - 1.0f;
  separable_filter(noise.data(), dx.data(), h, w, k, Border::reflect);
  for (std::int64_t i = 0; i < plane; ++i)
    noise[static_cast<std::size_t>(i)] = 2.0f * uniform(key_y, static_cast<std::uint64_t>(i)) - 1.0f;
  separable_filter(noise.data(), dy.data(), h, w, k, Border::reflect);
  Tensor out(x.shape());
  const auto a = static_cast<float>(alpha);
  for (std::int64_t y = 0; y < h; ++y)
    for (std::int64_t xx = 0; xx < w; ++xx) {
      const std::size_t p = static_cast<std::size_t>(y * w + xx);
      const double sy = static_cast<double>(y) + static_cast<double>(a * dy[p]);
      const double sx = static_cast<double>(xx) + static_cast<double>(a * dx[p]);
      const double fy = std::floor(sy), fx = std::floor(sx);
      const auto ly = static_cast<float>(sy - fy), lx = static_cast<float>(sx - fx);
      const auto y0 = static_cast<std::int64_t>(fy), x0 = static_cast<std::int64_t>(fx);
      const std::int64_t r0 = border_index(y0, h, Border::reflect) * w,
                         r1 = border_index(y0 + 1, h, Border::reflect) * w;
      const std::int64_t c0 = border_index(x0, w, Border::reflect),
                         c1 = border_index(x0 + 1, w, Border::reflect);
      for (std::int64_t c = 0; c < 3; ++c) {
        const float* s = x.data() + c * plane;
        const float top = s[r0 + c0] + lx * (s[r0 + c1] - s[r0 + c0]);
        const float bottom = s[r1 + c0] + lx * (s[r1 + c1] - s[r1 + c0]);
        out.data()[c * plane + static_cast<std::int64_t>(p)] = clip01(top + ly * (bottom - top));
      }
    }
  return out;
}

// The largest fog map (side); larger images upsample a map of this side.
inline constexpr std::int64_t kMaxFogMap = 2048;

// The plasma map of an h x w image's fog: side m, the smallest power of two >= max(h, w) * 256 / 224
// (capped at kMaxFogMap), and the top-left rh x rw of it (7/8 of the map's side along the longer
// side) that the layer is made of. rh == h and rw == w (the sides whose longer one is 224 * 2^k /
// 2^j: 224, 448, 112, ...) use the region as it is; others resize it.
struct FogMap {
  std::int64_t m = 2, rh = 1, rw = 1;
  bool unresized(std::int64_t h, std::int64_t w) const { return rh == h && rw == w; }
};
inline FogMap fog_map(std::int64_t h, std::int64_t w) {
  const double side = static_cast<double>(std::max(h, w));
  FogMap f;
  while (f.m < kMaxFogMap && static_cast<double>(f.m) < side * 256.0 / 224.0 - 1e-9) f.m *= 2;
  const double region = static_cast<double>(f.m) * 224.0 / 256.0;
  f.rh = std::clamp<std::int64_t>(std::llround(region * static_cast<double>(h) / side), 1, f.m);
  f.rw = std::clamp<std::int64_t>(std::llround(region * static_cast<double>(w) / side), 1, f.m);
  return f;
}

// The fog layer for an h x w image, values in [0, 1]: the region fog_map(h, w) of a plasma map,
// resized to h x w (antialiased bilinear) unless it already is; at 224 x 224 this is ImageNet-C's
// plasma_fractal(256)[:224, :224].
inline std::vector<float> fog_layer(std::int64_t h, std::int64_t w, double decay, const RandomKey& key) {
  const FogMap f = fog_map(h, w);
  const std::vector<double> map = plasma_fractal(f.m, decay, key);
  Tensor crop(Shape{1, f.rh, f.rw});
  for (std::int64_t y = 0; y < f.rh; ++y)
    for (std::int64_t xx = 0; xx < f.rw; ++xx)
      crop.data()[y * f.rw + xx] = static_cast<float>(map[static_cast<std::size_t>(y * f.m + xx)]);
  if (!f.unresized(h, w)) crop = resize_antialiased(crop, static_cast<int>(h), static_cast<int>(w));
  return std::vector<float>(crop.data(), crop.data() + crop.numel());
}

// ImageNet-C's fog: (x + c0 fog) * max(x) / (max(x) + c0), clipped.
inline Tensor fog(CView x, double strength, double decay, const RandomKey& key) {
  const std::int64_t h = x.shape()[1], w = x.shape()[2], plane = plane_of(x);
  const std::vector<float> layer = fog_layer(h, w, decay, key);
  const float max_val = *std::max_element(x.data(), x.data() + x.numel());
  const auto c0 = static_cast<float>(strength);
  const float scale = max_val / (max_val + c0);
  Tensor out(x.shape());
  for (std::int64_t c = 0; c < 3; ++c)
    for (std::int64_t i = 0; i < plane; ++i)
      out.data()[c * plane + i] =
          fog_at(x.data()[c * plane + i], c0, layer[static_cast<std::size_t>(i)], scale);
  return out;
}

// ---- fundus degradations ------------------------------------------------------------------------

inline FovDisc fov_disc(const BoundingBox& box) {
  return {0.5 * static_cast<double>(box.x0 + box.x1), 0.5 * static_cast<double>(box.y0 + box.y1),
          0.5 * static_cast<double>(std::max(box.width(), box.height()))};
}

// A smooth multiplicative gain exp(a (t - r^2) / 2), t = (u, v) . (cos theta, sin theta), r^2 = u^2 + v^2
// in FOV units (an off-axis illumination that falls off towards the rim): 1 at the centre and at the
// lit edge, at most e^(a/8) (half-way to the lit edge), e^(-a/2) at the edges across, e^(-a) at the
// far edge. theta = 2 pi U.
// The direction 2 pi U of uneven_illumination's light and of the halo's crescent: (cos, sin).
inline std::array<double, 2> corruption_direction(const RandomKey& key) {
  const double theta = 2.0 * kPi * static_cast<double>(uniform(key, 0));
  return {std::cos(theta), std::sin(theta)};
}

inline Tensor uneven_illumination(CView x, const FovDisc& d, double a, const RandomKey& key) {
  const auto [ct, st] = corruption_direction(key);
  const std::int64_t h = x.shape()[1], w = x.shape()[2], plane = plane_of(x);
  Tensor out(x.shape());
  for (std::int64_t y = 0; y < h; ++y)
    for (std::int64_t xx = 0; xx < w; ++xx) {
      const float gain = uneven_gain(d, a, ct, st, y, xx);
      for (std::int64_t c = 0; c < 3; ++c) {
        const std::int64_t i = c * plane + y * w + xx;
        out.data()[i] = clip01(x.data()[i] * gain);
      }
    }
  return out;
}

// A bright haze ring hugging the FOV border: out = x + h (colour - x) with
// h = strength * exp(-((r - 1) / width)^2 / 2) * ((1 - m) + m (1 + cos(phi - phi0)) / 2), m = 0.8,
// r and phi the pixel's polar coordinates in FOV units, phi0 = 2 pi U (the crescent's brightest side).
inline Tensor halo(CView x, const FovDisc& d, double strength, double width, const RandomKey& key) {
  const auto [c0, s0] = corruption_direction(key);
  const std::int64_t h = x.shape()[1], w = x.shape()[2], plane = plane_of(x);
  Tensor out(x.shape());
  for (std::int64_t y = 0; y < h; ++y)
    for (std::int64_t xx = 0; xx < w; ++xx) {
      const float weight = halo_weight(d, strength, width, c0, s0, y, xx);
      for (int c = 0; c < 3; ++c) {
        const std::int64_t i = c * plane + y * w + xx;
        out.data()[i] = halo_at(x.data()[i], weight, c);
      }
    }
  return out;
}

// A dark smooth blob: out = x (1 - depth exp(-|p - q|^2 / (2 sigma^2))), q uniform in the disc of
// radius 0.5 about the FOV centre (FOV units; radius 0.5 sqrt(U0), angle 2 pi U1).
// The hole's centre (qx, qy) in FOV units: radius 0.5 sqrt(U0), angle 2 pi U1.
inline std::array<double, 2> dark_hole_centre(const RandomKey& key) {
  const double rho = kDarkHoleReach * std::sqrt(static_cast<double>(uniform(key, 0)));
  const double ang = 2.0 * kPi * static_cast<double>(uniform(key, 1));
  return {rho * std::cos(ang), rho * std::sin(ang)};
}

inline Tensor dark_hole(CView x, const FovDisc& d, double depth, double sigma, const RandomKey& key) {
  const auto [qx, qy] = dark_hole_centre(key);
  const std::int64_t h = x.shape()[1], w = x.shape()[2], plane = plane_of(x);
  Tensor out(x.shape());
  for (std::int64_t y = 0; y < h; ++y)
    for (std::int64_t xx = 0; xx < w; ++xx) {
      const float gain = dark_hole_gain(d, depth, sigma, qx, qy, y, xx);
      for (std::int64_t c = 0; c < 3; ++c) {
        const std::int64_t i = c * plane + y * w + xx;
        out.data()[i] = clip01(x.data()[i] * gain);
      }
    }
  return out;
}

// `count` small blurred spots (dust on the optics, artefacts). Spot k reads uniforms 8k .. 8k + 5:
// centre at radius 0.9 sqrt(U) and angle 2 pi U (FOV units), Gaussian profile g of sigma
// U(0.015, 0.045) R, amplitude a = amplitude * U(0.6, 1), bright with probability 1/2. A bright spot
// lifts towards white, x + a g (1 - x); a dark one darkens, x (1 - a g). Spots apply in order k,
// each within 3 sigma of its centre.
// Spot k of an h x w image (uniforms 8k .. 8k + 4 of key).
inline Spot make_spot(const RandomKey& key, int k, double amplitude, const FovDisc& d, std::int64_t h,
                      std::int64_t w) {
  auto u = [&](int j) { return static_cast<double>(uniform(key, static_cast<std::uint64_t>(8 * k + j))); };
  Spot s;
  const double rho = kSpotReach * std::sqrt(u(0)), ang = 2.0 * kPi * u(1);
  s.sigma = (kSpotSigmaMin + (kSpotSigmaMax - kSpotSigmaMin) * u(2)) * d.r;  // pixels
  s.amp = amplitude * (0.6 + 0.4 * u(3));
  s.bright = u(4) < 0.5 ? 1 : 0;
  s.px = d.cx + rho * std::cos(ang) * d.r, s.py = d.cy + rho * std::sin(ang) * d.r;
  const auto reach = static_cast<std::int64_t>(std::ceil(3.0 * s.sigma));
  s.x0 = std::max<std::int64_t>(0, static_cast<std::int64_t>(std::floor(s.px)) - reach);
  s.x1 = std::min<std::int64_t>(w - 1, static_cast<std::int64_t>(std::floor(s.px)) + reach);
  s.y0 = std::max<std::int64_t>(0, static_cast<std::int64_t>(std::floor(s.py)) - reach);
  s.y1 = std::min<std::int64_t>(h - 1, static_cast<std::int64_t>(std::floor(s.py)) + reach);
  return s;
}

inline Tensor spots(CView x, const FovDisc& d, int count, double amplitude, const RandomKey& key) {
  const std::int64_t h = x.shape()[1], w = x.shape()[2], plane = plane_of(x);
  Tensor out(x.shape());
  for (std::int64_t i = 0; i < x.numel(); ++i) out.data()[i] = clip01(x.data()[i]);
  for (int k = 0; k < count; ++k) {
    const Spot s = make_spot(key, k, amplitude, d, h, w);
    for (std::int64_t y = s.y0; y <= s.y1; ++y)
      for (std::int64_t xx = s.x0; xx <= s.x1; ++xx)
        for (std::int64_t c = 0; c < 3; ++c) {
          float& v = out.data()[c * plane + y * w + xx];
          v = spot_at(v, s, y, xx);
        }
  }
  return out;
}

// Defocus inside the field of view only: the disk of defocus_blur with radius `radius` px (alias
// sigma 0.5 px and the disk grid at scale r / 112) as a normalised convolution,
// out = K * (x m) / K * m, m the mask, so the black surround does not bleed into the rim.
inline Tensor fundus_defocus(CView x, const std::vector<float>& mask, const FovDisc& d, double radius) {
  const std::int64_t h = x.shape()[1], w = x.shape()[2], plane = plane_of(x);
  const double s = d.r / 112.0;
  const std::vector<Tap> taps = disk_taps(radius, 0.5 * s, s);
  std::vector<float> weight(static_cast<std::size_t>(plane)), masked(weight.size()), num(weight.size());
  filter_taps(mask.data(), weight.data(), h, w, taps, Border::zero);
  Tensor out(x.shape());
  for (std::int64_t c = 0; c < 3; ++c) {
    const float* src = x.data() + c * plane;
    for (std::int64_t i = 0; i < plane; ++i)
      masked[static_cast<std::size_t>(i)] = src[i] * mask[static_cast<std::size_t>(i)];
    filter_taps(masked.data(), num.data(), h, w, taps, Border::zero);
    float* dst = out.data() + c * plane;
    for (std::int64_t i = 0; i < plane; ++i) {
      const float wt = weight[static_cast<std::size_t>(i)];
      dst[i] = clip01(wt > 1e-6f ? num[static_cast<std::size_t>(i)] / wt : src[i]);
    }
  }
  return out;
}

inline void check_corrupt_args(CView image, int severity) {
  FOVEA_CHECK(image.device().is_cpu(), "corrupt: image must be on the cpu, got ", image.device().str());
  FOVEA_CHECK(image.shape().rank() == 3 && image.shape()[0] == 3, "corrupt: image must be (3, H, W), got ",
              image.shape().str());
  FOVEA_CHECK(image.shape()[1] > 0 && image.shape()[2] > 0, "corrupt: empty image ", image.shape().str());
  FOVEA_CHECK(severity >= kMinSeverity && severity <= kMaxSeverity, "corrupt: severity ", severity,
              " must be 1..5");
  FOVEA_CHECK(image.numel() <= static_cast<std::int64_t>(UINT32_MAX), "corrupt: image ", image.shape().str(),
              " has more elements than a random stream indexes (2^32)");
}

// The fundus degradation c of image inside `mask` (values != 0 are the field of view); pixels
// outside are copied bitwise.
inline Tensor corrupt_fundus(CView image, CView mask, Corruption c, int severity, const RandomKey& key) {
  const std::size_t i = static_cast<std::size_t>(severity - 1);
  const std::int64_t plane = plane_of(image);
  std::vector<float> m(static_cast<std::size_t>(plane));
  for (std::int64_t p = 0; p < plane; ++p)
    m[static_cast<std::size_t>(p)] = mask.data()[p] != 0.0f ? 1.0f : 0.0f;
  const BoundingBox box = fov_box(mask);
  Tensor out(image.shape());
  if (box.empty()) {
    copy(image, out.view());
    return out;
  }
  const FovDisc d = fov_disc(box);
  switch (c) {
    case Corruption::uneven_illumination:
      out = uneven_illumination(image, d, kUnevenIllumination[i], key);
      break;
    case Corruption::halo: out = halo(image, d, kHalo[i].a, kHalo[i].b, key); break;
    case Corruption::dark_hole: out = dark_hole(image, d, kDarkHole[i].a, kDarkHole[i].b, key); break;
    case Corruption::spots: out = spots(image, d, static_cast<int>(kSpots[i].a), kSpots[i].b, key); break;
    case Corruption::fundus_defocus: out = fundus_defocus(image, m, d, kFundusDefocus[i] * d.r); break;
    default: FOVEA_FAIL("corrupt_fundus: ", corruption_name(c), " is not a fundus corruption");
  }
  for (std::int64_t ch = 0; ch < 3; ++ch)
    for (std::int64_t p = 0; p < plane; ++p)
      if (m[static_cast<std::size_t>(p)] == 0.0f) out.data()[ch * plane + p] = image.data()[ch * plane + p];
  return out;
}

}  // namespace detail::corruption

// ---- the entry points ---------------------------------------------------------------------------

namespace detail::corruption {

// corrupt with an optional mask (fundus corruptions only; nullptr: fov_mask(image)).
inline Tensor corrupt_image(CView image, Corruption c, int severity, std::uint64_t seed, std::int64_t sample,
                            const CView* mask) {
  check_corrupt_args(image, severity);
  const RandomKey key = corruption_key(seed, sample, c, severity);
  const std::size_t i = static_cast<std::size_t>(severity - 1);
  const double s = corruption_scale(image.shape()[1], image.shape()[2]);
  switch (c) {
    case Corruption::gaussian_noise: return gaussian_noise(image, kGaussianNoise[i], key);
    case Corruption::shot_noise: return shot_noise(image, kShotNoise[i], key);
    case Corruption::impulse_noise: return impulse_noise(image, kImpulseNoise[i], key);
    case Corruption::speckle_noise: return speckle_noise(image, kSpeckleNoise[i], key);
    case Corruption::gaussian_blur: return gaussian_blur(image, kGaussianBlur[i] * s);
    case Corruption::defocus_blur:
      return filter_image(image, disk_taps(kDefocusBlur[i].a * s, kDefocusBlur[i].b * s, s),
                          Border::reflect101);
    case Corruption::motion_blur: {
      return filter_image(image, motion_taps_of(key, severity, s), Border::clamp);
    }
    case Corruption::zoom_blur: return zoom_blur(image, kZoomBlur[i].a, kZoomBlur[i].b);
    case Corruption::brightness: {
      const auto dv = static_cast<float>(kBrightness[i]);
      return map_pixels(image, [dv](float& r, float& g, float& b) { brightness_at(r, g, b, dv); });
    }
    case Corruption::contrast: return contrast(image, kContrast[i]);
    case Corruption::saturate: {
      const auto scale = static_cast<float>(kSaturate[i].a), shift = static_cast<float>(kSaturate[i].b);
      return map_pixels(image, [=](float& r, float& g, float& b) { saturate_at(r, g, b, scale, shift); });
    }
    case Corruption::jpeg_compression: return jpeg_compression(image, kJpegQuality[i]);
    case Corruption::pixelate: return pixelate(image, kPixelate[i]);
    case Corruption::elastic_transform:
      return elastic_transform(image, kElasticAlpha[i] * s * s, kElasticSigma * s, key,
                               corruption_key(seed, sample, c, severity, 1));
    case Corruption::fog: return fog(image, kFog[i].a, kFog[i].b, key);
    case Corruption::glass_blur: {
      const Glass g = glass_params(severity, s);
      return glass_blur(image, g.sigma,
                        glass_source(image.shape()[1], image.shape()[2], g.delta, g.iterations, key));
    }
    default: break;
  }
  if (mask != nullptr) return corrupt_fundus(image, *mask, c, severity, key);
  const Tensor detected = fov_mask(image);  // (1, H, W)
  return corrupt_fundus(image, detected, c, severity, key);
}

}  // namespace detail::corruption

// corrupt: the copy of image corrupted by c at severity 1..5, clipped to [0, 1].
//   image (3, H, W) on the cpu, values in [0, 1] -> (3, H, W) on the cpu.
// Random draws: corruption_key(seed, sample, c, severity[, stream]); the same arguments give bitwise
// the same output. ImageNet-C's corruptions act on the whole image. The fundus ones act inside the
// field of view fov_mask(image) (data/fundus.hpp) and copy every pixel outside it bitwise (an image
// without a dark surround is all field of view); the overload below takes the mask instead.
// Throws fovea::Error for a non-CPU, non-(3, H, W) or empty image, a severity outside 1..5, a sample
// outside [0, 2^32), or jpeg_compression in a build without stb.
inline Tensor corrupt(CView image, Corruption c, int severity, std::uint64_t seed, std::int64_t sample) {
  return detail::corruption::corrupt_image(image, c, severity, seed, sample, nullptr);
}

// corrupt with the field of view given: mask (1, H, W) on the cpu, nonzero inside (fov_mask's output,
// or a data set's own FOV mask). The fundus corruptions use it; ImageNet-C's ignore it.
inline Tensor corrupt(CView image, Corruption c, int severity, std::uint64_t seed, std::int64_t sample,
                      CView mask) {
  detail::corruption::check_corrupt_args(image, severity);
  FOVEA_CHECK(mask.device().is_cpu() && mask.shape().rank() == 3 && mask.shape()[0] == 1 &&
                  mask.shape()[1] == image.shape()[1] && mask.shape()[2] == image.shape()[2],
              "corrupt: mask must be (1, H, W) on the cpu matching image ", image.shape().str(), ", got ",
              mask.shape().str(), " on ", mask.device().str());
  return detail::corruption::corrupt_image(image, c, severity, seed, sample, &mask);
}

namespace detail::corruption {

// out = images planes of hw values, plane n = make(n) (a vector of hw values), computed in parallel
// over the images (fog's resized layers: sequential work per image).
template <class T, class Make>
void per_image_planes(std::vector<T>& out, std::size_t images, std::int64_t hw, Make&& make) {
  out.resize(images * static_cast<std::size_t>(hw));
  parallel_for(
      static_cast<std::int64_t>(images),
      [&](std::int64_t first, std::int64_t last) {
        for (std::int64_t n = first; n < last; ++n) {
          const std::vector<T> plane = make(static_cast<std::size_t>(n));
          std::copy(plane.begin(), plane.end(), out.begin() + n * hw);
        }
      },
      kParallelMinWork);
}

// The CUDA twin's plan of c at severity over a batch of (H, W) images whose random draws are keyed by
// samples[n]; boxes[n]: image n's field-of-view box (fundus corruptions only). Every parameter comes
// from the functions the CPU implementation calls, so both twins read the same bits. fog's layers,
// where they need a resize, are computed here, on the host (a diamond-square per image, parallel over
// images); the device makes the others (fog_plasma_kernel) and glass_blur's sources
// (glass_source_kernel).
inline CorruptBatchPlan corruption_plan(Corruption c, int severity, std::uint64_t seed,
                                        std::span<const std::int64_t> samples, std::int64_t h, std::int64_t w,
                                        std::span<const BoundingBox> boxes = {}) {
  const std::size_t i = static_cast<std::size_t>(severity - 1);
  const double s = corruption_scale(h, w);
  CorruptBatchPlan plan;
  plan.corruption = c, plan.severity = severity, plan.height = h, plan.width = w;
  plan.images.resize(samples.size());
  for (std::size_t n = 0; n < samples.size(); ++n) {
    plan.images[n].key = corruption_key(seed, samples[n], c, severity);
    plan.images[n].key2 = corruption_key(seed, samples[n], c, severity, 1);
  }
  auto per_image_taps = [&](std::size_t n, const std::vector<Tap>& taps) {
    plan.images[n].taps_begin = static_cast<std::int32_t>(plan.taps.size());
    plan.images[n].taps_count = static_cast<std::int32_t>(taps.size());
    plan.images[n].taps_reach = taps_reach(taps.data(), taps.size());
    plan.taps.insert(plan.taps.end(), taps.begin(), taps.end());
  };
  switch (c) {
    case Corruption::gaussian_noise: plan.a = kGaussianNoise[i]; break;
    case Corruption::shot_noise: plan.a = kShotNoise[i]; break;
    case Corruption::impulse_noise: plan.a = kImpulseNoise[i]; break;
    case Corruption::speckle_noise: plan.a = kSpeckleNoise[i]; break;
    case Corruption::gaussian_blur: {
      const double sigma = kGaussianBlur[i] * s;
      plan.kernel = gaussian_taps(sigma, static_cast<std::int64_t>(4.0 * sigma + 0.5));
      break;
    }
    case Corruption::defocus_blur: {
      plan.taps = disk_taps(kDefocusBlur[i].a * s, kDefocusBlur[i].b * s, s);
      const std::int32_t reach = taps_reach(plan.taps.data(), plan.taps.size());
      for (CorruptImagePlan& img : plan.images)
        img.taps_count = static_cast<std::int32_t>(plan.taps.size()), img.taps_reach = reach;
      break;
    }
    case Corruption::motion_blur:
      for (std::size_t n = 0; n < samples.size(); ++n)
        per_image_taps(n, motion_taps_of(plan.images[n].key, severity, s));
      break;
    case Corruption::zoom_blur:
      for (double f : zoom_factors(kZoomBlur[i].a, kZoomBlur[i].b)) {
        const std::vector<LinearTap> ty = zoom_taps(h, f), tx = zoom_taps(w, f);
        plan.zoom.insert(plan.zoom.end(), ty.begin(), ty.end());
        plan.zoom.insert(plan.zoom.end(), tx.begin(), tx.end());
      }
      break;
    case Corruption::brightness: plan.a = static_cast<float>(kBrightness[i]); break;
    case Corruption::contrast: plan.a = static_cast<float>(kContrast[i]); break;
    case Corruption::saturate:
      plan.a = static_cast<float>(kSaturate[i].a), plan.b = static_cast<float>(kSaturate[i].b);
      break;
    case Corruption::jpeg_compression: break;  // runs on the host
    case Corruption::pixelate: {
      const PixelateIndex ix = pixelate_index(h, w, kPixelate[i]);
      plan.small_h = ix.sh, plan.small_w = ix.sw;
      plan.index = ix.near_y;
      plan.index.insert(plan.index.end(), ix.near_x.begin(), ix.near_x.end());
      for (const auto& g : ix.gy) plan.index.insert(plan.index.end(), g.begin(), g.end());
      for (const auto& g : ix.gx) plan.index.insert(plan.index.end(), g.begin(), g.end());
      break;
    }
    case Corruption::elastic_transform: {
      const double sigma = kElasticSigma * s;
      plan.a = kElasticAlpha[i] * s * s;
      plan.kernel = gaussian_taps(sigma, static_cast<std::int64_t>(3.0 * sigma + 0.5));
      break;
    }
    case Corruption::glass_blur: {
      const Glass g = glass_params(severity, s);
      plan.kernel = gaussian_taps(g.sigma, static_cast<std::int64_t>(4.0 * g.sigma + 0.5));
      FOVEA_CHECK(static_cast<std::int64_t>(g.iterations) * h * w <= static_cast<std::int64_t>(UINT32_MAX),
                  "corruption_plan: glass_blur's ", g.iterations, " iterations over ", h, "x", w,
                  " pixels exceed the random stream (2^32 draws)");
      plan.glass_delta = g.delta, plan.glass_iterations = g.iterations;  // sources: glass_source_kernel
      break;
    }
    case Corruption::fog: {
      plan.a = kFog[i].a, plan.b = kFog[i].b;
      const FogMap f = fog_map(h, w);
      if (f.unresized(h, w)) {  // the device computes the maps (fog_plasma_kernel)
        plan.fog_map = f.m;
        break;
      }
      const std::int64_t hw = h * w;
      per_image_planes(plan.layers, samples.size(), hw,
                       [&](std::size_t n) { return fog_layer(h, w, kFog[i].b, plan.images[n].key); });
      for (std::size_t n = 0; n < samples.size(); ++n)
        plan.images[n].layer = static_cast<std::int64_t>(n) * hw;
      break;
    }
    default: {  // the fundus degradations
      FOVEA_CHECK(boxes.size() == samples.size(), "corruption_plan: ", corruption_name(c), " needs ",
                  samples.size(), " field-of-view boxes, got ", boxes.size());
      plan.needs_mask = true;
      for (std::size_t n = 0; n < samples.size(); ++n) {
        CorruptImagePlan& img = plan.images[n];
        if (boxes[n].empty()) continue;  // has_fov 0: copied
        img.has_fov = 1;
        img.disc = fov_disc(boxes[n]);
        const FovDisc& d = img.disc;
        switch (c) {
          case Corruption::uneven_illumination: {
            plan.a = kUnevenIllumination[i];
            const auto [ct, st] = corruption_direction(img.key);
            img.p0 = ct, img.p1 = st;
            break;
          }
          case Corruption::halo: {
            plan.a = kHalo[i].a, plan.b = kHalo[i].b;
            const auto [c0, s0] = corruption_direction(img.key);
            img.p0 = c0, img.p1 = s0;
            break;
          }
          case Corruption::dark_hole: {
            plan.a = kDarkHole[i].a, plan.b = kDarkHole[i].b;
            const auto [qx, qy] = dark_hole_centre(img.key);
            img.p0 = qx, img.p1 = qy;
            break;
          }
          case Corruption::spots: {
            img.spots_begin = static_cast<std::int32_t>(plan.spots.size());
            img.spots_count = static_cast<std::int32_t>(kSpots[i].a);
            for (int k = 0; k < img.spots_count; ++k)
              plan.spots.push_back(make_spot(img.key, k, kSpots[i].b, d, h, w));
            break;
          }
          case Corruption::fundus_defocus: {
            const double sd = d.r / 112.0;
            per_image_taps(n, disk_taps(kFundusDefocus[i] * d.r, 0.5 * sd, sd));
            break;
          }
          default: FOVEA_FAIL("corruption_plan: unknown corruption ", static_cast<int>(c));
        }
      }
    }
  }
  return plan;
}

// The (3, H, W) image n of a batch (N, 3, H, W), and its (1, H, W) mask.
inline CView image_of(CView batch, std::int64_t n) {
  const Shape& s = batch.shape();
  return CView(batch.data() + n * s[1] * s[2] * s[3], Shape{s[1], s[2], s[3]}, batch.device());
}

// corrupt_batch on the CPU: each image through corrupt, in parallel over the images.
inline void corrupt_batch_cpu(CView images, Corruption c, int severity, std::uint64_t seed,
                              std::span<const std::int64_t> samples, View out, const CView* masks) {
  const std::int64_t n = images.shape()[0], floats = images.numel() / std::max<std::int64_t>(n, 1);
  parallel_for(
      n,
      [&](std::int64_t first, std::int64_t last) {
        for (std::int64_t k = first; k < last; ++k) {
          const CView image = image_of(images, k);
          const std::size_t ks = static_cast<std::size_t>(k);
          const Tensor y = masks != nullptr
                               ? corrupt(image, c, severity, seed, samples[ks], image_of(*masks, k))
                               : corrupt(image, c, severity, seed, samples[ks]);
          std::copy(y.data(), y.data() + floats, out.data() + k * floats);
        }
      },
      kParallelMinWork);
}

}  // namespace detail::corruption

// corrupt_batch: image n of images (N, 3, H, W), values in [0, 1], corrupted by c at severity 1..5
// with its random draws keyed by samples[n], into out (N, 3, H, W) on the same device, distinct from
// images: out[n] = corrupt(images[n], c, severity, seed, samples[n]) (equal within an ulp or so of
// the unclipped value on a GPU, where nvcc fuses multiply-adds; bitwise on the CPU).
// masks (N, 1, H, W) on the same device: the fields of view of the fundus corruptions (nonzero
// inside); nullptr: fov_mask of each image.
// On the CPU the images run in parallel through corrupt. On a CUDA device the work is queued on the
// current stream (kernels/corruptions.cuh) except: jpeg_compression (stb's codec) runs on the host
// (the batch's 8-bit pixels are copied there and back; it waits for them), fog's layers are computed on the
// host where they need a resize (sides other than 224 * 2^k / 2^j along the longer side), the fundus
// corruptions wait for the fields of view's bounding boxes (a small device-to-host copy) and, without
// masks, copy the batch to the host for fov_mask. Throws fovea::Error for shapes, devices, a severity
// outside 1..5, a sample count other than N or a sample outside [0, 2^32).
inline void corrupt_batch(CView images, Corruption c, int severity, std::uint64_t seed,
                          std::span<const std::int64_t> samples, View out, const CView* masks = nullptr) {
  namespace d = detail::corruption;
  const Shape& s = images.shape();
  FOVEA_CHECK(s.rank() == 4 && s[1] == 3 && s[2] > 0 && s[3] > 0,
              "corrupt_batch: images must be (N, 3, H, W), got ", s.str());
  FOVEA_CHECK(out.shape() == s && out.device() == images.device(), "corrupt_batch: output ",
              out.shape().str(), " on ", out.device().str(), " does not match images ", s.str(), " on ",
              images.device().str());
  FOVEA_CHECK(out.data() != images.data() || images.empty(),
              "corrupt_batch: output must not alias the images");
  FOVEA_CHECK(static_cast<std::int64_t>(samples.size()) == s[0], "corrupt_batch: ", samples.size(),
              " sample indices for a batch of ", s[0]);
  FOVEA_CHECK(severity >= kMinSeverity && severity <= kMaxSeverity, "corrupt_batch: severity ", severity,
              " must be 1..5");
  FOVEA_CHECK(3 * s[2] * s[3] <= static_cast<std::int64_t>(UINT32_MAX), "corrupt_batch: images ", s.str(),
              " have more elements than a random stream indexes (2^32)");
  for (std::int64_t sample : samples)
    FOVEA_CHECK(sample >= 0 && sample <= static_cast<std::int64_t>(UINT32_MAX), "corrupt_batch: sample ",
                sample, " outside [0, 2^32)");
  if (masks != nullptr)
    FOVEA_CHECK(masks->device() == images.device() && masks->shape().rank() == 4 &&
                    masks->shape()[0] == s[0] && masks->shape()[1] == 1 && masks->shape()[2] == s[2] &&
                    masks->shape()[3] == s[3],
                "corrupt_batch: masks must be (N, 1, H, W) on ", images.device().str(), " matching images ",
                s.str(), ", got ", masks->shape().str(), " on ", masks->device().str());
  if (s[0] == 0) return;
  if (images.device().is_cpu()) {
    d::corrupt_batch_cpu(images, c, severity, seed, samples, out, masks);
    return;
  }
#if FOVEA_WITH_CUDA
  if (c == Corruption::jpeg_compression) {
    // stb's codec on the host; the 8-bit pixels travel (a quarter of the floats' bytes), packed and
    // unpacked on the device
    const std::int64_t hw = s[2] * s[3];
    std::vector<unsigned char> pixels(static_cast<std::size_t>(s[0] * 3 * hw));
    FOVEA_CUDA_CALL(cuda::jpeg_pack(images, pixels.data()));
    const int quality = d::kJpegQuality[static_cast<std::size_t>(severity - 1)];
    const std::string what = Shape{3, s[2], s[3]}.str();
    parallel_for(
        s[0],
        [&](std::int64_t first, std::int64_t last) {
          for (std::int64_t k = first; k < last; ++k)
            d::jpeg_roundtrip(pixels.data() + k * 3 * hw, s[2], s[3], quality, what);
        },
        kParallelMinWork);
    FOVEA_CUDA_CALL(cuda::jpeg_unpack(pixels.data(), out));
    return;
  }
  std::vector<BoundingBox> boxes;
  Tensor found;  // fov_mask of each image, when no masks were given
  CView fov;
  if (is_fundus_corruption(c)) {
    if (masks == nullptr) {
      Tensor host(s);
      copy(images, host.view());
      Tensor m(Shape{s[0], 1, s[2], s[3]});
      parallel_for(
          s[0],
          [&](std::int64_t first, std::int64_t last) {
            for (std::int64_t k = first; k < last; ++k) {
              const Tensor one = fov_mask(d::image_of(host, k));
              std::copy(one.data(), one.data() + one.numel(), m.data() + k * s[2] * s[3]);
            }
          },
          kParallelMinWork);
      found = m.to(images.device());
      fov = found;
    } else {
      fov = *masks;
    }
    for (const auto& b : cuda::fov_boxes(fov)) boxes.push_back({b[0], b[1], b[2], b[3]});
  }
  const d::CorruptBatchPlan plan = d::corruption_plan(c, severity, seed, samples, s[2], s[3], boxes);
  FOVEA_CUDA_CALL(cuda::corrupt_batch(images, fov, plan, out));
#else
  FOVEA_FAIL("corrupt_batch: images on ", images.device().str(), " but this program was built without CUDA");
#endif
}

}  // namespace fovea::data
