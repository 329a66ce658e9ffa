// fovea/data/corruption_math.hpp: the per-pixel arithmetic of the image corruptions, written once
// (FOVEA_HD) for the CPU implementation (data/corruptions.hpp) and its CUDA twin
// (kernels/corruptions.cuh), and the batch plan the host resolves for the twin: per-image random
// parameters, filter taps, spots and fog layers, so that both read the same bits.
//
// This header has no CUDA syntax and no dependency beyond core/: nvcc and a host compiler both
// compile it. Formulas and parameters: docs/robustness.md.
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

#include "fovea/core/config.hpp"
#include "fovea/core/random.hpp"
#include "fovea/ops/math.hpp"  // dmul_rn

namespace fovea::data {

// The corruptions: ImageNet-C's 15 in the order of REFERENCE 1.6's table, the fundus ones, then
// ImageNet-C's glass_blur (added later, so it comes last: a corruption's random stream is keyed by its
// position here, and appending kept every other corruption's draws; imagenet_c_corruptions() lists it
// after defocus_blur, in ImageNet-C's own order).
enum class Corruption : std::uint8_t {
  gaussian_noise,
  shot_noise,
  impulse_noise,
  speckle_noise,
  gaussian_blur,
  defocus_blur,
  motion_blur,
  zoom_blur,
  brightness,
  contrast,
  saturate,
  jpeg_compression,
  pixelate,
  elastic_transform,
  fog,
  // fundus-specific, inside the field of view only
  uneven_illumination,
  halo,
  dark_hole,
  spots,
  fundus_defocus,
  // ImageNet-C again
  glass_blur,
};

namespace detail {

// How a filter reads beyond the plane: repeat the edge (scipy "nearest"), mirror with the edge
// repeated (scipy "reflect", d c b a | a b c d), mirror without it (OpenCV's default REFLECT_101,
// c b | a b c), or zeros.
enum class Border { clamp, reflect, reflect101, zero };

// The index that position i of a line of n reads, or -1 (zero border, outside).
FOVEA_HD std::int64_t border_index(std::int64_t i, std::int64_t n, Border border) {
  if (i >= 0 && i < n) return i;
  switch (border) {
    case Border::clamp: return i < 0 ? 0 : n - 1;
    case Border::zero: return -1;
    case Border::reflect: {
      const std::int64_t period = 2 * n;
      std::int64_t m = i % period;
      if (m < 0) m += period;
      return m < n ? m : period - 1 - m;
    }
    case Border::reflect101: {
      if (n == 1) return 0;
      const std::int64_t period = 2 * (n - 1);
      std::int64_t m = i % period;
      if (m < 0) m += period;
      return m < n ? m : period - m;
    }
  }
  return 0;
}

}  // namespace detail

namespace detail::corruption {

inline constexpr double kPi = 3.14159265358979323846;

FOVEA_HD float clip01(float v) { return v < 0.0f ? 0.0f : (v > 1.0f ? 1.0f : v); }

// jpeg_compression's 8-bit pixels: a value in [0, 1] to the byte stb encodes (PIL's rounding of
// v * 255, halves away from zero), and a decoded byte back to [0, 1].
FOVEA_HD unsigned char jpeg_byte(float v) { return static_cast<unsigned char>(lroundf(clip01(v) * 255.0f)); }
FOVEA_HD float jpeg_value(unsigned char b) { return static_cast<float>(b) / 255.0f; }

// One weight of a sparse 2-D filter: out(y, x) += weight * in(y + dy, x + dx).
struct Tap {
  int dy, dx;
  float weight;
};

// The largest |dy| or |dx| of taps[0 .. count).
inline std::int32_t taps_reach(const Tap* taps, std::size_t count) {
  std::int32_t reach = 0;
  for (std::size_t t = 0; t < count; ++t) {
    const std::int32_t dy = taps[t].dy < 0 ? -taps[t].dy : taps[t].dy,
                       dx = taps[t].dx < 0 ? -taps[t].dx : taps[t].dx;
    reach = dy > reach ? dy : reach;
    reach = dx > reach ? dx : reach;
  }
  return reach;
}

// Bilinear sampling positions along one axis: output o reads in[i0] * (1 - lambda) + in[i1] * lambda.
struct LinearTap {
  std::int64_t i0, i1;
  float lambda;
};

// 53 uniform bits from two words: a double in [0, 1).
FOVEA_HD double uniform53(std::uint32_t a, std::uint32_t b) {
  return (static_cast<double>(a >> 5) * 67108864.0 + static_cast<double>(b >> 6)) * 0x1p-53;
}

// A Poisson(lambda) variate by inversion of its CDF at u in [0, 1) (exact up to double rounding; the
// search stops after lambda + 40 sqrt(lambda) + 40 terms, where the remaining mass is < 1e-300).
FOVEA_HD int poisson_inverse(double lambda, double u) {
  if (!(lambda > 0.0)) return 0;
  double p = std::exp(-lambda), cdf = p;
  const int cap = static_cast<int>(lambda + 40.0 * std::sqrt(lambda) + 40.0);
  int k = 0;
  while (u >= cdf && k < cap) {
    ++k;
    p *= lambda / k;
    cdf += p;
  }
  return k;
}

// ---- the per-element noises (element i = ch H W + y W + x of the image) --------------------------

FOVEA_HD float gaussian_noise_at(float x, float sd, const RandomKey& key, std::uint64_t i) {
  return clip01(x + sd * normal(key, i));
}

FOVEA_HD float shot_noise_at(float x, double c, const RandomKey& key, std::uint32_t i) {
  const U32x4 b = random_block(key, i);
  const double lambda = static_cast<double>(clip01(x)) * c;
  return clip01(static_cast<float>(poisson_inverse(lambda, uniform53(b.v[0], b.v[1])) / c));
}

// skimage's random_noise(mode="s&p"): replaced with probability `amount` (word 0 of block i), by 1
// or 0 with equal odds (the top bit of word 1).
FOVEA_HD float impulse_noise_at(float x, double amount, const RandomKey& key, std::uint32_t i) {
  const U32x4 b = random_block(key, i);
  const bool flip = static_cast<double>(uniform_from_bits(b.v[0])) < amount;
  return flip ? ((b.v[1] >> 31) ? 1.0f : 0.0f) : clip01(x);
}

FOVEA_HD float speckle_noise_at(float x, float sd, const RandomKey& key, std::uint64_t i) {
  return clip01(x + x * sd * normal(key, i));
}

// ---- colour --------------------------------------------------------------------------------------

// skimage's rgb2hsv on one pixel: v = max, s = (max - min) / max (0 for gray), h in [0, 1) with the
// blue-max formula winning ties over green over red.
FOVEA_HD void rgb_to_hsv(float r, float g, float b, float& h, float& s, float& v) {
  const float hi = r > g ? r : g, lo = r < g ? r : g;
  v = hi > b ? hi : b;
  const float delta = v - (lo < b ? lo : b);
  if (!(delta > 0.0f)) {
    h = 0.0f, s = 0.0f;
    return;
  }
  s = delta / v;
  float hh;
  if (b == v) hh = 4.0f + (r - g) / delta;
  else if (g == v) hh = 2.0f + (b - r) / delta;
  else hh = (g - b) / delta;
  hh /= 6.0f;
  h = hh - std::floor(hh);
}

// skimage's hsv2rgb on one pixel.
FOVEA_HD void hsv_to_rgb(float h, float s, float v, float& r, float& g, float& b) {
  const float h6 = h * 6.0f;
  const float fi = std::floor(h6);
  const float f = h6 - fi;
  const int i = static_cast<int>(fi) % 6;
  const float p = v * (1.0f - s), q = v * (1.0f - f * s), t = v * (1.0f - (1.0f - f) * s);
  switch (i) {
    case 0: r = v, g = t, b = p; break;
    case 1: r = q, g = v, b = p; break;
    case 2: r = p, g = v, b = t; break;
    case 3: r = p, g = q, b = v; break;
    case 4: r = t, g = p, b = v; break;
    default: r = v, g = p, b = q; break;
  }
}

// brightness (shift > 0: V + shift) or saturate (scale, shift: S scale + shift) on one pixel, through
// HSV, clipped.
FOVEA_HD void brightness_at(float& r, float& g, float& b, float shift) {
  float h, s, v;
  rgb_to_hsv(r, g, b, h, s, v);
  v = clip01(v + shift);
  hsv_to_rgb(h, s, v, r, g, b);
  r = clip01(r), g = clip01(g), b = clip01(b);
}
FOVEA_HD void saturate_at(float& r, float& g, float& b, float scale, float shift) {
  float h, s, v;
  rgb_to_hsv(r, g, b, h, s, v);
  s = clip01(s * scale + shift);
  hsv_to_rgb(h, s, v, r, g, b);
  r = clip01(r), g = clip01(g), b = clip01(b);
}

FOVEA_HD float contrast_at(float x, float mean, float c) { return clip01((x - mean) * c + mean); }

// ImageNet-C's fog: (x + c0 fog) * max(x) / (max(x) + c0), scale = max / (max + c0).
FOVEA_HD float fog_at(float x, float c0, float layer, float scale) {
  return clip01((x + c0 * layer) * scale);
}

// fog's plasma fractal (ImageNet-C's diamond-square; plasma_fractal in data/corruptions.hpp runs it on
// the CPU, fog_plasma_kernel on a GPU). The map is m x m doubles (m a power of two), row-major, on a
// torus. The level of side `step` first sets the centre of each of its (m / step)^2 squares, then
// each square's two diamond points (y, x + half) and (y + half, x). A square's centre reads only
// points of earlier levels, a diamond point those and this level's centres: within a pass the points
// are independent, so they may be computed in any order or in parallel.
FOVEA_HD double plasma_at(const double* map, std::int64_t m, std::int64_t y, std::int64_t x) {
  return map[(y & (m - 1)) * m + (x & (m - 1))];  // y, x modulo m (two's complement)
}

// Point (y, x) of the map: the mean of a, b, c, d (added in this order) plus wibble^2 (2u - 1) with
// u = uniform(key, y m + x); the products rounded on their own, so nvcc and g++ give the same bits.
FOVEA_HD double plasma_value(double a, double b, double c, double d, double wibble, const RandomKey& key,
                             std::int64_t m, std::int64_t y, std::int64_t x) {
  const double u = uniform(key, static_cast<std::uint64_t>(y * m + x));
  return (a + b + c + d) / 4.0 + math::dmul_rn(math::dmul_rn(wibble, wibble), 2.0 * u - 1.0);
}

// Square k (row-major, k < (m / step)^2) of the level of side step: sets its centre.
FOVEA_HD void plasma_square(double* map, std::int64_t m, std::int64_t step, std::int64_t k, double wibble,
                            const RandomKey& key) {
  const std::int64_t cells = m / step, half = step / 2;
  const std::int64_t y = k / cells * step, x = k % cells * step;
  map[(y + half) * m + x + half] =
      plasma_value(plasma_at(map, m, y, x), plasma_at(map, m, y + step, x), plasma_at(map, m, y, x + step),
                   plasma_at(map, m, y + step, x + step), wibble, key, m, y + half, x + half);
}

// Diamond point k (k < 2 (m / step)^2) of the level of side step: of square k / 2, the point
// (y, x + half) when k is even, (y + half, x) when odd.
FOVEA_HD void plasma_diamond(double* map, std::int64_t m, std::int64_t step, std::int64_t k, double wibble,
                             const RandomKey& key) {
  const std::int64_t cells = m / step, half = step / 2, square = k / 2;
  const std::int64_t y = square / cells * step, x = square % cells * step;
  if (k % 2 == 0)
    map[y * m + x + half] =
        plasma_value(plasma_at(map, m, y - half, x + half), plasma_at(map, m, y + half, x + half),
                     plasma_at(map, m, y, x), plasma_at(map, m, y, x + step), wibble, key, m, y, x + half);
  else
    map[(y + half) * m + x] =
        plasma_value(plasma_at(map, m, y + half, x - half), plasma_at(map, m, y + half, x + half),
                     plasma_at(map, m, y, x), plasma_at(map, m, y + step, x), wibble, key, m, y + half, x);
}

// A map value normalised to [0, 1] by the map's minimum and range (0 for a flat map), as a float.
FOVEA_HD float plasma_layer_value(double v, double lo, double range) {
  return static_cast<float>(range > 0.0 ? (v - lo) / range : 0.0);
}

// np.random.randint(-delta, delta)'s range from 32 random bits: an integer in [-delta, delta - 1].
FOVEA_HD int glass_offset(std::uint32_t bits, int delta) {
  const std::uint64_t span = static_cast<std::uint64_t>(2 * delta);
  return static_cast<int>((static_cast<std::uint64_t>(bits) * span) >> 32) - delta;
}

// glass_blur's pass of copies number `it` (glass_source in data/corruptions.hpp runs the passes in
// order over the whole image) seen from one pixel p: the pixel whose value, as the pass found it, p
// ends the pass with. The pass visits delta < y <= h - delta, delta < x <= w - delta in descending
// raster order, and a visited pixel takes the value of the pixel its draw points at, q, as it is at
// that moment. q was visited earlier in the pass exactly when it is visited at all and comes after p
// in raster order; then it holds what it took itself, so the chain continues from q. Its indices rise,
// so it ends (after about two steps on average).
FOVEA_HD std::int64_t glass_pass_source(std::int64_t p, std::int64_t h, std::int64_t w, int delta, int it,
                                        const RandomKey& key) {
  std::int64_t y = p / w, x = p - y * w;
  const auto visited = [&](std::int64_t yy, std::int64_t xx) {
    return yy > delta && yy <= h - delta && xx > delta && xx <= w - delta;
  };
  if (!visited(y, x)) return p;
  for (;;) {
    const U32x4 b = random_block(key, static_cast<std::uint32_t>((it * h + y) * w + x));
    const std::int64_t qy = y + glass_offset(b.v[1], delta), qx = x + glass_offset(b.v[0], delta);
    if (!visited(qy, qx) || qy < y || (qy == y && qx <= x)) return qy * w + qx;
    y = qy, x = qx;
  }
}

// glass_source(h, w, delta, iterations, key)[p]: pass `iterations` - 1 maps p to the pixel it read,
// the pass before maps that one, and so on down to pass 0.
FOVEA_HD std::int32_t glass_source_at(std::int64_t p, std::int64_t h, std::int64_t w, int delta,
                                      int iterations, const RandomKey& key) {
  for (int it = iterations - 1; it >= 0; --it) p = glass_pass_source(p, h, w, delta, it, key);
  return static_cast<std::int32_t>(p);
}

// ---- the fundus degradations ---------------------------------------------------------------------

// The field of view as a disc: centre (cx, cy) in continuous pixel coordinates (pixel (y, x) spans
// [x, x + 1) x [y, y + 1)) and radius r = half the larger side of the mask's bounding box (a disc
// cut by the frame, as in many EyePACS photos, keeps its true radius).
struct FovDisc {
  double cx = 0.0, cy = 0.0, r = 1.0;
};

// Pixel (y, x) in FOV units: u = (x + 0.5 - cx) / r, v = (y + 0.5 - cy) / r.
FOVEA_HD void fov_coords(const FovDisc& d, std::int64_t y, std::int64_t x, double& u, double& v) {
  u = (static_cast<double>(x) + 0.5 - d.cx) / d.r;
  v = (static_cast<double>(y) + 0.5 - d.cy) / d.r;
}

// uneven_illumination's gain exp(a (u cos t + v sin t - u^2 - v^2) / 2).
FOVEA_HD float uneven_gain(const FovDisc& d, double a, double ct, double st, std::int64_t y, std::int64_t x) {
  double u, v;
  fov_coords(d, y, x, u, v);
  return static_cast<float>(std::exp(0.5 * a * (u * ct + v * st - (u * u + v * v))));
}

// halo's weight h = strength exp(-((r - 1) / width)^2 / 2) ((1 - m) + m (1 + cos(phi - phi0)) / 2).
inline constexpr double kHaloCrescent = 0.8;  // azimuthal modulation depth m
FOVEA_HD float halo_weight(const FovDisc& d, double strength, double width, double c0, double s0,
                           std::int64_t y, std::int64_t x) {
  double u, v;
  fov_coords(d, y, x, u, v);
  const double r = std::sqrt(u * u + v * v);
  const double cosine = r > 0.0 ? (u * c0 + v * s0) / r : 0.0;
  const double ring = std::exp(-0.5 * ((r - 1.0) / width) * ((r - 1.0) / width));
  return static_cast<float>(strength * ring * ((1.0 - kHaloCrescent) + kHaloCrescent * 0.5 * (1.0 + cosine)));
}
// The halo's colour, channel c: a pale yellow-white haze.
FOVEA_HD float halo_colour(int c) { return c == 0 ? 1.0f : (c == 1 ? 0.97f : 0.88f); }
FOVEA_HD float halo_at(float x, float weight, int c) { return clip01(x + weight * (halo_colour(c) - x)); }

// dark_hole's gain 1 - depth exp(-|p - q|^2 / (2 sigma^2)), q = (qx, qy) in FOV units.
FOVEA_HD float dark_hole_gain(const FovDisc& d, double depth, double sigma, double qx, double qy,
                              std::int64_t y, std::int64_t x) {
  double u, v;
  fov_coords(d, y, x, u, v);
  const double d2 = (u - qx) * (u - qx) + (v - qy) * (v - qy);
  return static_cast<float>(1.0 - depth * std::exp(-0.5 * d2 / (sigma * sigma)));
}

// One of `spots`: centre (px, py) and sigma in pixels, amplitude, bright or dark, and the pixel box
// [x0, x1] x [y0, y1] (inclusive, within the image) it touches.
struct Spot {
  double px = 0, py = 0, sigma = 1, amp = 0;
  std::int64_t x0 = 0, x1 = -1, y0 = 0, y1 = -1;
  int bright = 0;
};

// v after spot s at pixel (y, x) inside its box.
// glass_blur's 8-bit step between its two blurs: ImageNet-C's np.uint8(v * 255) (truncation) / 255,
// in fp32 (v clipped to [0, 1] first; a Gaussian of values in [0, 1] stays there up to rounding).
FOVEA_HD float glass_quantize_at(float v) { return std::floor(clip01(v) * 255.0f) / 255.0f; }

FOVEA_HD float spot_at(float v, const Spot& s, std::int64_t y, std::int64_t x) {
  const double ex = static_cast<double>(x) + 0.5 - s.px, ey = static_cast<double>(y) + 0.5 - s.py;
  const auto g = static_cast<float>(s.amp * std::exp(-0.5 * (ex * ex + ey * ey) / (s.sigma * s.sigma)));
  return clip01(s.bright ? v + g * (1.0f - v) : v * (1.0f - g));
}

// ---- the batch plan of the CUDA twin -------------------------------------------------------------

// One image of a batch: its random streams and the per-image parameters the host resolved.
struct CorruptImagePlan {
  RandomKey key, key2;            // corruption_key(..., stream 0), (..., stream 1) (elastic's dy)
  double p0 = 0, p1 = 0, p2 = 0;  // uneven: cos, sin; halo: cos, sin; dark_hole: qx, qy
  FovDisc disc;                   // fundus: the field of view
  int has_fov = 0;                // fundus: 0 when the mask is empty (the image is copied)
  std::int32_t taps_begin = 0, taps_count = 0;    // 2-D taps (defocus, motion, fundus_defocus)
  std::int32_t taps_reach = 0;                    // the largest |dy| or |dx| of those taps
  std::int32_t spots_begin = 0, spots_count = 0;  // spots
  std::int64_t layer = -1;                        // fog: offset of the (H, W) layer in `layers`
};

// What the CUDA twin runs for one corruption and severity over a batch (N, 3, H, W).
struct CorruptBatchPlan {
  Corruption corruption = Corruption::gaussian_noise;
  int severity = 1;
  std::int64_t height = 0, width = 0;
  double a = 0, b = 0;  // the severity's parameters, scaled to the image (per corruption, see plan)
  std::vector<CorruptImagePlan> images;
  std::vector<Tap> taps;            // 2-D filters, per image or shared (taps_begin 0)
  std::vector<float> kernel;        // gaussian_blur, elastic_transform: the separable kernel
  std::vector<LinearTap> zoom;      // zoom_blur: per factor, height taps then width taps
  std::vector<std::int64_t> index;  // pixelate: per output row its small row, per column its small
                                    // column, then the box groups (first, count) of rows and columns
  std::int64_t small_h = 0, small_w = 0;
  std::vector<Spot> spots;
  std::vector<float> layers;         // fog: one (H, W) layer per image, when its map needs a resize
  std::int64_t fog_map = 0;          // fog: the plasma maps' side m when the device computes them (the
                                     // image is the map's top-left H x W, unresized; layers is empty)
  int glass_delta = 0, glass_iterations = 0;  // glass_blur: max_delta and passes of its shuffle
  bool needs_mask = false;    // fundus: the kernel reads the mask (N, 1, H, W)
};

}  // namespace detail::corruption
}  // namespace fovea::data
