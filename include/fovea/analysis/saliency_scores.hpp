// fovea/analysis/saliency_scores.hpp: scores of a saliency map (a heatmap of relevance per pixel, from
// any attribution method) against pixel-level lesion masks such as IDRiD's (REFERENCE §1.5): relevance
// mass inside the lesions, relevance rank accuracy, the pointing game, the same per lesion size
// (connected components binned by area: the paper's "minute vs large lesions"), and the mask tools they
// need (connected components, a resize that keeps every lesion, the union of lesion types).
//
// Host-side only (std::span / std::vector, no tensors, no CUDA), single-threaded and deterministic: the
// same inputs give bitwise the same results. Conventions:
//   - heatmaps and masks are row-major height x width; a mask pixel is inside when its byte is nonzero;
//     masks returned here hold 0 / 1;
//   - scores count only pixels inside the field-of-view mask `fov` (all ones for "the whole image");
//     the lesion pixels of a score are those inside both `lesion` and `fov`;
//   - relevance is the positive part of the heatmap (max(v, 0)) by default, |v| when `absolute`;
//     sums are in double, in raster order;
//   - "the K pixels of highest relevance" are the first K of the field-of-view pixels ordered by
//     relevance, descending, ties broken by raster order (the earlier pixel ranks higher). They are
//     selected with std::nth_element on (relevance, index) keys: O(pixels) on average, no full sort.
#pragma once

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <limits>
#include <span>
#include <vector>

#include "fovea/core/error.hpp"

namespace fovea::analysis {

// Relevance per pixel, row-major: values.size() == height * width.
struct Heatmap {
  std::span<const float> values;
  std::int64_t height = 0, width = 0;
};

// A binary mask, row-major: values.size() == height * width, nonzero = inside.
struct Mask {
  std::span<const std::uint8_t> values;
  std::int64_t height = 0, width = 0;
};

// One connected component of a mask: its label (1..count), pixel count and bounding box, rows
// [top, bottom) x columns [left, right) (half-open, as data::BoundingBox).
struct Component {
  int label = 0;
  std::int64_t area = 0, top = 0, left = 0, bottom = 0, right = 0;
};

struct SaliencyScores {
  double mass_inside = 0;    // sum of relevance on lesion pixels / on all field-of-view pixels (NaN when 0)
  double rank_accuracy = 0;  // fraction on lesion pixels of the K top pixels, K = lesion_pixels (NaN when 0)
  double pointing_game =
      0;  // 1 when the top pixel is within `tolerance` of a lesion pixel, else 0 (NaN: no lesion)
  std::int64_t lesion_pixels = 0, fov_pixels = 0;
};

// Scores of the lesion components whose area lies in [min_area, max_area).
struct SizeBinScores {
  std::int64_t min_area = 0, max_area = 0;  // max_area = int64 max for the last bin (no upper bound)
  std::int64_t components = 0, lesion_pixels = 0;
  double mass_inside = 0;  // relevance on this bin's components / on all field-of-view pixels (NaN when 0)
  double rank_accuracy =
      0;  // of the K top pixels, K = this bin's lesion pixels, the fraction on them (NaN: K = 0)
  double hit_rate = 0;  // fraction of this bin's components holding one of the top-K pixels, K = all
                        // lesion pixels (NaN when the bin has no components)
};

// Default size bins, in pixels at the heatmap's resolution: [1, 5), [5, 25), [25, 125), [125, inf).
inline constexpr std::int64_t kDefaultLesionSizeEdges[] = {1, 5, 25, 125};

namespace detail {

inline constexpr double kScoreNaN = std::numeric_limits<double>::quiet_NaN();

template <class T>
inline void check_grid(std::span<const T> values, std::int64_t height, std::int64_t width, const char* what) {
  FOVEA_CHECK(height >= 1 && width >= 1, what, " is empty: ", height, " x ", width);
  FOVEA_CHECK(static_cast<std::uint64_t>(values.size()) ==
                  static_cast<std::uint64_t>(height) * static_cast<std::uint64_t>(width),
              what, " has ", values.size(), " values but height x width = ", height, " x ", width);
}

inline void check_mask(const Mask& m, const char* what) { check_grid(m.values, m.height, m.width, what); }

// Checks heatmap, lesion and fov: each well formed, one size, and the heatmap finite.
inline void check_scoring_inputs(const char* fn, const Heatmap& h, const Mask& lesion, const Mask& fov) {
  check_grid(h.values, h.height, h.width, "heatmap");
  check_mask(lesion, "lesion mask");
  check_mask(fov, "field-of-view mask");
  FOVEA_CHECK(
      lesion.height == h.height && lesion.width == h.width && fov.height == h.height && fov.width == h.width,
      fn, ": sizes differ: heatmap ", h.height, " x ", h.width, ", lesion mask ", lesion.height, " x ",
      lesion.width, ", field-of-view mask ", fov.height, " x ", fov.width);
  FOVEA_CHECK(h.values.size() < (std::size_t{1} << 32), fn, ": ", h.values.size(),
              " pixels exceed the 2^32 this scoring supports");
  for (std::size_t i = 0; i < h.values.size(); ++i)
    if (!std::isfinite(h.values[i]))
      FOVEA_FAIL(fn, ": heatmap value at row ", static_cast<std::int64_t>(i) / h.width, ", column ",
                 static_cast<std::int64_t>(i) % h.width, " is not finite (", h.values[i], ")");
}

inline float relevance(float v, bool absolute) {
  if (absolute) return std::fabs(v);
  return v > 0.0f ? v : 0.0f;  // never -0.0f, so the key below orders all relevances correctly
}

// A key ordering pixels by relevance (>= 0) descending, then raster index ascending, as one uint64
// compared with >: the float's bits (monotone for non-negative floats) above the complemented index.
inline std::uint64_t rank_key(float r, std::uint32_t index) {
  return (static_cast<std::uint64_t>(std::bit_cast<std::uint32_t>(r)) << 32) | (~index);
}

inline std::uint32_t key_index(std::uint64_t key) { return ~static_cast<std::uint32_t>(key); }

// Reorders keys so that its first k entries are the k largest (in no particular order).
inline void select_top(std::span<std::uint64_t> keys, std::size_t k) {
  if (k == 0 || k >= keys.size()) return;
  std::nth_element(keys.begin(), keys.begin() + static_cast<std::ptrdiff_t>(k - 1), keys.end(),
                   std::greater<>());
}

inline std::int64_t ceil_div(std::int64_t a, std::int64_t b) { return (a + b - 1) / b; }

}  // namespace detail

// resize_mask_any: mask m at height x width, keeping every inside pixel: output pixel (y, x) is inside
// when any source pixel of its footprint is, the footprint being source rows
// [floor(y * H / height), ceil((y + 1) * H / height)) x columns [floor(x * W / width),
// ceil((x + 1) * W / width)). Downscaling thus never loses a lesion (a 2-pixel microaneurysm survives a
// 19x reduction) but grows it to at least one output pixel; upscaling replicates pixels (nearest).
// requires: m well formed and non-empty, height >= 1, width >= 1. ensures: height * width bytes, 0 / 1.
inline std::vector<std::uint8_t> resize_mask_any(const Mask& m, std::int64_t height, std::int64_t width) {
  detail::check_mask(m, "resize_mask_any: mask");
  FOVEA_CHECK(height >= 1 && width >= 1, "resize_mask_any: output size must be positive, got ", height, " x ",
              width);
  const std::int64_t sh = m.height, sw = m.width;
  std::vector<std::int64_t> c0(static_cast<std::size_t>(width)), c1(static_cast<std::size_t>(width));
  for (std::int64_t x = 0; x < width; ++x) {
    c0[static_cast<std::size_t>(x)] = x * sw / width;
    c1[static_cast<std::size_t>(x)] = detail::ceil_div((x + 1) * sw, width);
  }
  // Columns first: every source row reduced to `width` footprints.
  std::vector<std::uint8_t> cols(static_cast<std::size_t>(sh * width), 0);  // (H, width)
  for (std::int64_t r = 0; r < sh; ++r) {
    const std::uint8_t* src = m.values.data() + r * sw;
    std::uint8_t* dst = cols.data() + r * width;
    for (std::int64_t x = 0; x < width; ++x) {
      std::uint8_t any = 0;
      for (std::int64_t c = c0[static_cast<std::size_t>(x)]; c < c1[static_cast<std::size_t>(x)] && !any; ++c)
        any = src[c] != 0;
      dst[x] = any;
    }
  }
  std::vector<std::uint8_t> out(static_cast<std::size_t>(height * width), 0);  // (height, width)
  for (std::int64_t y = 0; y < height; ++y) {
    std::uint8_t* dst = out.data() + y * width;
    for (std::int64_t r = y * sh / height, r1 = detail::ceil_div((y + 1) * sh, height); r < r1; ++r) {
      const std::uint8_t* src = cols.data() + r * width;
      for (std::int64_t x = 0; x < width; ++x) dst[x] |= src[x];
    }
  }
  return out;
}

// connected_components: the connected components of m's inside pixels, 8-connected (diagonal
// neighbours join) or 4-connected, labelled 1..count in raster order of their first pixel.
// requires: m well formed and non-empty, connectivity 4 or 8. ensures: one Component per label, in
// label order; when `labels` is given it is resized to height * width and holds each pixel's label
// (0 outside the mask).
inline std::vector<Component> connected_components(const Mask& m, std::vector<int>* labels = nullptr,
                                                   int connectivity = 8) {
  detail::check_mask(m, "connected_components: mask");
  FOVEA_CHECK(connectivity == 4 || connectivity == 8,
              "connected_components: connectivity must be 4 or 8, got ", connectivity);
  FOVEA_CHECK(m.values.size() < static_cast<std::size_t>(std::numeric_limits<int>::max()),
              "connected_components: ", m.values.size(), " pixels exceed the int range of labels");
  const std::int64_t h = m.height, w = m.width;
  std::vector<int> local;
  std::vector<int>& lab = labels != nullptr ? *labels : local;
  lab.assign(m.values.size(), 0);
  std::vector<Component> out;
  std::vector<std::int64_t> stack;
  for (std::int64_t start = 0; start < h * w; ++start) {
    if (m.values[static_cast<std::size_t>(start)] == 0 || lab[static_cast<std::size_t>(start)] != 0) continue;
    Component c;
    c.label = static_cast<int>(out.size()) + 1;
    c.top = start / w;
    c.left = start % w;
    c.bottom = c.top + 1;
    c.right = c.left + 1;
    lab[static_cast<std::size_t>(start)] = c.label;
    stack.assign(1, start);
    while (!stack.empty()) {
      const std::int64_t p = stack.back();
      stack.pop_back();
      const std::int64_t y = p / w, x = p % w;
      ++c.area;
      c.top = std::min(c.top, y);
      c.bottom = std::max(c.bottom, y + 1);
      c.left = std::min(c.left, x);
      c.right = std::max(c.right, x + 1);
      for (std::int64_t dy = -1; dy <= 1; ++dy)
        for (std::int64_t dx = -1; dx <= 1; ++dx) {
          if ((dy == 0 && dx == 0) || (connectivity == 4 && dy != 0 && dx != 0)) continue;
          const std::int64_t ny = y + dy, nx = x + dx;
          if (ny < 0 || ny >= h || nx < 0 || nx >= w) continue;
          const std::size_t q = static_cast<std::size_t>(ny * w + nx);
          if (m.values[q] == 0 || lab[q] != 0) continue;
          lab[q] = c.label;
          stack.push_back(ny * w + nx);
        }
    }
    out.push_back(c);
  }
  return out;
}

// mask_union: the pixelwise union (OR) of masks of one size, e.g. MA + HE + EX (the paper's union).
// requires: at least one mask, all well formed, non-empty and of one size. ensures: 0 / 1 bytes.
inline std::vector<std::uint8_t> mask_union(std::span<const Mask> masks) {
  FOVEA_CHECK(!masks.empty(), "mask_union: no masks given");
  detail::check_mask(masks[0], "mask_union: mask 0");
  std::vector<std::uint8_t> out(masks[0].values.size(), 0);
  for (std::size_t k = 0; k < masks.size(); ++k) {
    const Mask& m = masks[k];
    detail::check_mask(m, "mask_union: mask");
    FOVEA_CHECK(m.height == masks[0].height && m.width == masks[0].width, "mask_union: mask ", k, " is ",
                m.height, " x ", m.width, " but mask 0 is ", masks[0].height, " x ", masks[0].width);
    for (std::size_t i = 0; i < out.size(); ++i) out[i] |= static_cast<std::uint8_t>(m.values[i] != 0);
  }
  return out;
}

// score_heatmap: mass inside, rank accuracy and pointing game of heatmap h against `lesion`, counting
// only pixels inside `fov` (conventions at the top of this file).
//   mass_inside   = sum of relevance over lesion pixels / sum over field-of-view pixels;
//   rank_accuracy = of the K pixels of highest relevance, K = lesion pixels, the fraction on lesion pixels;
//   pointing_game = 1 when the pixel of highest relevance (the first in raster order among equals: with
//                   an all-zero map, the first field-of-view pixel) is at Euclidean distance <= tolerance
//                   of a lesion pixel (distance 0: on one), else 0.
// NaN where undefined: mass_inside when the field of view holds no relevance, the other two when it
// holds no lesion pixel.
// requires: h, lesion and fov well formed, non-empty and of one size (else an error naming the three
// sizes); h finite (else an error naming the row and column); tolerance finite and >= 0.
inline SaliencyScores score_heatmap(const Heatmap& h, const Mask& lesion, const Mask& fov,
                                    bool absolute = false, double tolerance = 0.0) {
  detail::check_scoring_inputs("score_heatmap", h, lesion, fov);
  FOVEA_CHECK(std::isfinite(tolerance) && tolerance >= 0.0,
              "score_heatmap: tolerance must be finite and >= 0, got ", tolerance);
  const std::size_t n = h.values.size();
  SaliencyScores s;
  double total = 0.0, inside = 0.0;
  std::vector<std::uint64_t> keys;  // field-of-view pixels
  keys.reserve(n);
  for (std::size_t i = 0; i < n; ++i) {
    if (fov.values[i] == 0) continue;
    const float r = detail::relevance(h.values[i], absolute);
    const bool on = lesion.values[i] != 0;
    total += r;
    if (on) inside += r;
    s.lesion_pixels += on;
    keys.push_back(detail::rank_key(r, static_cast<std::uint32_t>(i)));
  }
  s.fov_pixels = static_cast<std::int64_t>(keys.size());
  s.mass_inside = total > 0.0 ? inside / total : detail::kScoreNaN;
  if (s.lesion_pixels == 0) {
    s.rank_accuracy = s.pointing_game = detail::kScoreNaN;
    return s;
  }
  const std::uint64_t top_key = *std::max_element(keys.begin(), keys.end());
  const std::size_t k = static_cast<std::size_t>(s.lesion_pixels);
  detail::select_top(keys, k);
  std::int64_t hits = 0;
  for (std::size_t j = 0; j < k; ++j) hits += lesion.values[detail::key_index(keys[j])] != 0;
  s.rank_accuracy = static_cast<double>(hits) / static_cast<double>(k);

  const std::int64_t top = detail::key_index(top_key), ty = top / h.width, tx = top % h.width;
  const std::int64_t reach = static_cast<std::int64_t>(std::floor(tolerance));
  s.pointing_game = 0.0;
  for (std::int64_t y = std::max<std::int64_t>(0, ty - reach); y <= std::min(h.height - 1, ty + reach); ++y)
    for (std::int64_t x = std::max<std::int64_t>(0, tx - reach); x <= std::min(h.width - 1, tx + reach);
         ++x) {
      const std::size_t q = static_cast<std::size_t>(y * h.width + x);
      const double d2 = static_cast<double>((y - ty) * (y - ty) + (x - tx) * (x - tx));
      if (lesion.values[q] != 0 && fov.values[q] != 0 && d2 <= tolerance * tolerance) s.pointing_game = 1.0;
    }
  return s;
}

// score_by_lesion_size: the scores per lesion size. The lesion pixels inside the field of view are
// split into 8-connected components; component areas are binned by bin_edges e_0 < e_1 < ... < e_{n-1}
// into [e_0, e_1), ..., [e_{n-1}, inf) (empty: kDefaultLesionSizeEdges; components smaller than e_0
// belong to no bin). Per bin (SizeBinScores): its components and lesion pixels, mass_inside over its
// components' pixels (denominator: all field-of-view relevance), rank_accuracy with K = its lesion
// pixels, and hit_rate: the fraction of its components holding at least one of the top-K pixels of the
// whole lesion mask (K = all lesion pixels in the field of view).
// requires: as score_heatmap; bin_edges strictly increasing and e_0 >= 1. ensures: n bins, in edge order.
inline std::vector<SizeBinScores> score_by_lesion_size(const Heatmap& h, const Mask& lesion, const Mask& fov,
                                                       std::span<const std::int64_t> bin_edges = {},
                                                       bool absolute = false) {
  detail::check_scoring_inputs("score_by_lesion_size", h, lesion, fov);
  if (bin_edges.empty()) bin_edges = kDefaultLesionSizeEdges;
  FOVEA_CHECK(bin_edges[0] >= 1, "score_by_lesion_size: the first bin edge must be >= 1, got ", bin_edges[0]);
  for (std::size_t b = 1; b < bin_edges.size(); ++b)
    FOVEA_CHECK(bin_edges[b] > bin_edges[b - 1], "score_by_lesion_size: bin edges must increase, but edge ",
                b, " = ", bin_edges[b], " <= edge ", b - 1, " = ", bin_edges[b - 1]);
  const std::size_t n = h.values.size(), bins = bin_edges.size();

  std::vector<std::uint8_t> in_fov(n);  // lesion and fov
  for (std::size_t i = 0; i < n; ++i) in_fov[i] = lesion.values[i] != 0 && fov.values[i] != 0;
  std::vector<int> labels;
  const std::vector<Component> comps = connected_components(Mask{in_fov, h.height, h.width}, &labels, 8);
  std::vector<int> bin_of(comps.size() + 1, -1);  // by label; -1: in no bin
  std::vector<SizeBinScores> out(bins);
  for (std::size_t b = 0; b < bins; ++b) {
    out[b].min_area = bin_edges[b];
    out[b].max_area = b + 1 < bins ? bin_edges[b + 1] : std::numeric_limits<std::int64_t>::max();
  }
  for (const Component& c : comps) {
    const auto it = std::upper_bound(bin_edges.begin(), bin_edges.end(), c.area);
    if (it == bin_edges.begin()) continue;
    const int b = static_cast<int>(it - bin_edges.begin()) - 1;
    bin_of[static_cast<std::size_t>(c.label)] = b;
    ++out[static_cast<std::size_t>(b)].components;
    out[static_cast<std::size_t>(b)].lesion_pixels += c.area;
  }

  double total = 0.0;
  std::vector<double> mass(bins, 0.0);
  std::vector<std::uint64_t> keys;  // field-of-view pixels
  keys.reserve(n);
  std::size_t lesion_pixels = 0;
  for (std::size_t i = 0; i < n; ++i) {
    if (fov.values[i] == 0) continue;
    const float r = detail::relevance(h.values[i], absolute);
    total += r;
    if (labels[i] != 0) {
      ++lesion_pixels;
      const int b = bin_of[static_cast<std::size_t>(labels[i])];
      if (b >= 0) mass[static_cast<std::size_t>(b)] += r;
    }
    keys.push_back(detail::rank_key(r, static_cast<std::uint32_t>(i)));
  }

  // Nested selections, largest K first: after select_top(K), the top K' < K lie in keys[0, K).
  std::vector<std::size_t> order(bins);
  for (std::size_t b = 0; b < bins; ++b) order[b] = b;
  std::stable_sort(order.begin(), order.end(),
                   [&](std::size_t a, std::size_t b) { return out[a].lesion_pixels > out[b].lesion_pixels; });
  std::vector<char> hit(comps.size() + 1, 0);
  detail::select_top(keys, lesion_pixels);
  for (std::size_t j = 0; j < lesion_pixels; ++j)
    hit[static_cast<std::size_t>(labels[detail::key_index(keys[j])])] = 1;
  std::size_t selected = lesion_pixels;
  for (std::size_t b : order) {
    const std::size_t k = static_cast<std::size_t>(out[b].lesion_pixels);
    if (k < selected) {
      detail::select_top(std::span<std::uint64_t>(keys).first(selected), k);
      selected = k;
    }
    std::int64_t on = 0;
    for (std::size_t j = 0; j < k; ++j) {
      const int label = labels[detail::key_index(keys[j])];
      on += label != 0 && bin_of[static_cast<std::size_t>(label)] == static_cast<int>(b);
    }
    out[b].mass_inside = total > 0.0 ? mass[b] / total : detail::kScoreNaN;
    out[b].rank_accuracy = k > 0 ? static_cast<double>(on) / static_cast<double>(k) : detail::kScoreNaN;
  }
  std::vector<std::int64_t> hits(bins, 0);
  for (const Component& c : comps) {
    const int b = bin_of[static_cast<std::size_t>(c.label)];
    if (b >= 0) hits[static_cast<std::size_t>(b)] += hit[static_cast<std::size_t>(c.label)];
  }
  for (std::size_t b = 0; b < bins; ++b)
    out[b].hit_rate = out[b].components > 0
                          ? static_cast<double>(hits[b]) / static_cast<double>(out[b].components)
                          : detail::kScoreNaN;
  return out;
}

}  // namespace fovea::analysis
