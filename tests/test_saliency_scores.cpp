// tests/test_saliency_scores.cpp: scores of saliency maps against lesion masks
// (fovea/analysis/saliency_scores.hpp) on hand-made maps with known answers, against a brute-force
// full-sort reference on random maps full of ties, statistically on random maps, and on one real IDRiD
// microaneurysm mask (skipped where ../shared/data/fundus is absent).
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <limits>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "fovea/analysis/saliency_scores.hpp"
#include "fovea/core/error.hpp"
#include "fovea/data/fundus.hpp"
#include "fovea/data/image.hpp"
#include "fovea/data/tiff.hpp"
#include "test_support.hpp"

namespace fovea::analysis {
namespace {

using fovea::testing::error_of;

using Bytes = std::vector<std::uint8_t>;
using Floats = std::vector<float>;

Heatmap heat(const Floats& v, std::int64_t h, std::int64_t w) {
  return Heatmap{std::span<const float>(v), h, w};
}
Mask mask(const Bytes& v, std::int64_t h, std::int64_t w) {
  return Mask{std::span<const std::uint8_t>(v), h, w};
}

// An h x w mask with the listed (row, column) pixels inside.
Bytes pixels(std::int64_t h, std::int64_t w, std::initializer_list<std::pair<int, int>> on) {
  Bytes m(static_cast<std::size_t>(h * w), 0);
  for (auto [y, x] : on) m[static_cast<std::size_t>(y * w + x)] = 1;
  return m;
}

Bytes ones(std::int64_t h, std::int64_t w) { return Bytes(static_cast<std::size_t>(h * w), 1); }

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

// The message of the fovea::Error that f throws ("" when it throws none).
// ---- brute-force reference: a full sort of the field-of-view pixels ---------------------------------------

struct Reference {
  std::vector<std::size_t> order;  // field-of-view pixels by relevance desc, then raster order
  std::vector<double> r;           // relevance per pixel
};

Reference rank_all(const Floats& h, const Bytes& fov, bool absolute) {
  Reference ref;
  for (float v : h) ref.r.push_back(absolute ? std::fabs(v) : std::max(v, 0.0f));
  for (std::size_t i = 0; i < h.size(); ++i)
    if (fov[i]) ref.order.push_back(i);
  std::stable_sort(ref.order.begin(), ref.order.end(),
                   [&](std::size_t a, std::size_t b) { return ref.r[a] > ref.r[b]; });
  return ref;
}

SaliencyScores brute_force(const Floats& h, const Bytes& lesion, const Bytes& fov, std::int64_t w,
                           bool absolute, double tolerance) {
  const Reference ref = rank_all(h, fov, absolute);
  SaliencyScores s;
  double total = 0, inside = 0;
  for (std::size_t i : ref.order) {
    total += ref.r[i];
    if (lesion[i]) inside += ref.r[i], ++s.lesion_pixels;
  }
  s.fov_pixels = static_cast<std::int64_t>(ref.order.size());
  const double nan = std::numeric_limits<double>::quiet_NaN();
  s.mass_inside = total > 0 ? inside / total : nan;
  if (s.lesion_pixels == 0) {
    s.rank_accuracy = s.pointing_game = nan;
    return s;
  }
  std::int64_t hits = 0;
  for (std::int64_t j = 0; j < s.lesion_pixels; ++j)
    hits += lesion[ref.order[static_cast<std::size_t>(j)]] != 0;
  s.rank_accuracy = static_cast<double>(hits) / static_cast<double>(s.lesion_pixels);
  const std::int64_t top = static_cast<std::int64_t>(ref.order[0]);
  double best = std::numeric_limits<double>::infinity();
  for (std::size_t i : ref.order)
    if (lesion[i]) {
      const double dy = static_cast<double>(static_cast<std::int64_t>(i) / w - top / w);
      const double dx = static_cast<double>(static_cast<std::int64_t>(i) % w - top % w);
      best = std::min(best, std::sqrt(dy * dy + dx * dx));
    }
  s.pointing_game = best <= tolerance ? 1.0 : 0.0;
  return s;
}

void expect_same(double got, double want, const std::string& what) {
  if (std::isnan(want)) EXPECT_TRUE(std::isnan(got)) << what << ": got " << got << ", want NaN";
  else EXPECT_DOUBLE_EQ(got, want) << what;
}

// ---- score_heatmap on hand-made maps ----------------------------------------------------------------------

// 5 x 5; lesion (1,1) (1,2) (3,3) and (0,4), which lies outside the field of view (all but (0,4)).
const Floats kMap = {0,    0, 0,  0, 9,  //
                     0,    5, 1,  0, 0,  //
                     0,    0, -6, 0, 0,  //
                     0,    0, 0,  2, 0,  //
                     1.5f, 0, 0,  0, 0};
const Bytes kLesion = pixels(5, 5, {{1, 1}, {1, 2}, {3, 3}, {0, 4}});
Bytes all_but_corner() {
  Bytes f = ones(5, 5);
  f[4] = 0;
  return f;
}

TEST(SaliencyScores, HandMadeMapPositivePart) {
  const Bytes fov = all_but_corner();
  const SaliencyScores s = score_heatmap(heat(kMap, 5, 5), mask(kLesion, 5, 5), mask(fov, 5, 5));
  EXPECT_EQ(s.fov_pixels, 24);
  EXPECT_EQ(s.lesion_pixels, 3);  // (0, 4) is outside the field of view
  EXPECT_DOUBLE_EQ(s.mass_inside,
                   8.0 / 9.5);  // (5 + 1 + 2) / (5 + 1 + 2 + 1.5); the 9 and the -6 do not count
  EXPECT_DOUBLE_EQ(s.rank_accuracy, 2.0 / 3.0);  // top 3: 5 (lesion), 2 (lesion), 1.5 (not)
  EXPECT_EQ(s.pointing_game, 1.0);               // top: the 5 at (1, 1), not the 9 outside the field of view
}

TEST(SaliencyScores, HandMadeMapAbsoluteAndTolerance) {
  const Bytes fov = all_but_corner();
  const auto score = [&](double tol) {
    return score_heatmap(heat(kMap, 5, 5), mask(kLesion, 5, 5), mask(fov, 5, 5), /*absolute=*/true, tol);
  };
  const SaliencyScores s = score(0.0);
  EXPECT_DOUBLE_EQ(s.mass_inside, 8.0 / 15.5);   // |-6| counts now, outside the lesion
  EXPECT_DOUBLE_EQ(s.rank_accuracy, 2.0 / 3.0);  // top 3: 6 (not), 5 (lesion), 2 (lesion)
  EXPECT_EQ(s.pointing_game, 0.0);               // top: the -6 at (2, 2), 1 pixel below lesion (1, 2)
  EXPECT_EQ(score(0.99).pointing_game, 0.0);
  EXPECT_EQ(score(1.0).pointing_game, 1.0);
}

TEST(SaliencyScores, PointingGameToleranceIsEuclideanAndInsideTheFieldOfView) {
  Floats h(64, 0.0f);
  h[4 * 8 + 4] = 1.0f;                                  // top pixel (4, 4)
  const Bytes lesion = pixels(8, 8, {{1, 1}, {4, 6}});  // distances sqrt(18) = 4.243 and 2
  Bytes fov = ones(8, 8);
  fov[4 * 8 + 6] = 0;  // (4, 6) is outside the field of view
  const auto pg = [&](double tol) {
    return score_heatmap(heat(h, 8, 8), mask(lesion, 8, 8), mask(fov, 8, 8), false, tol).pointing_game;
  };
  EXPECT_EQ(pg(0.0), 0.0);
  EXPECT_EQ(pg(2.0), 0.0);  // (4, 6) would be within 2 but lies outside the field of view
  EXPECT_EQ(pg(4.2), 0.0);
  EXPECT_EQ(pg(4.25), 1.0);
  fov[4 * 8 + 6] = 1;
  EXPECT_EQ(pg(1.99), 0.0);
  EXPECT_EQ(pg(2.0), 1.0);
}

TEST(SaliencyScores, TiesAreBrokenByRasterOrder) {
  const Floats h(25, 1.0f);  // all equal: the ranking is the raster order
  const Bytes fov = ones(5, 5);
  const Bytes late = pixels(5, 5, {{0, 1}, {4, 4}});
  SaliencyScores s = score_heatmap(heat(h, 5, 5), mask(late, 5, 5), mask(fov, 5, 5));
  EXPECT_DOUBLE_EQ(s.mass_inside, 2.0 / 25.0);
  EXPECT_DOUBLE_EQ(s.rank_accuracy, 0.5);  // top 2: (0, 0) (not), (0, 1) (lesion)
  EXPECT_EQ(s.pointing_game, 0.0);         // top: (0, 0)
  const Bytes first = pixels(5, 5, {{0, 0}, {0, 1}});
  s = score_heatmap(heat(h, 5, 5), mask(first, 5, 5), mask(fov, 5, 5));
  EXPECT_DOUBLE_EQ(s.rank_accuracy, 1.0);
  EXPECT_EQ(s.pointing_game, 1.0);
  // Ties among the non-zero values only: the 3s at (0, 3) and (2, 0); the earlier one wins.
  Floats t(25, 0.0f);
  t[3] = 3.0f;
  t[10] = 3.0f;
  s = score_heatmap(heat(t, 5, 5), mask(pixels(5, 5, {{2, 0}}), 5, 5), mask(fov, 5, 5));
  EXPECT_DOUBLE_EQ(s.rank_accuracy, 0.0);
  EXPECT_EQ(s.pointing_game, 0.0);
  s = score_heatmap(heat(t, 5, 5), mask(pixels(5, 5, {{0, 3}}), 5, 5), mask(fov, 5, 5));
  EXPECT_DOUBLE_EQ(s.rank_accuracy, 1.0);
  EXPECT_EQ(s.pointing_game, 1.0);
}

TEST(SaliencyScores, UndefinedScoresAreNaN) {
  const Bytes fov = ones(5, 5);
  // No lesion pixel in the field of view: rank accuracy and pointing game are undefined, mass is 0.
  const Bytes outside = pixels(5, 5, {{0, 4}});
  SaliencyScores s = score_heatmap(heat(kMap, 5, 5), mask(outside, 5, 5), mask(all_but_corner(), 5, 5));
  EXPECT_EQ(s.lesion_pixels, 0);
  EXPECT_EQ(s.mass_inside, 0.0);
  EXPECT_TRUE(std::isnan(s.rank_accuracy));
  EXPECT_TRUE(std::isnan(s.pointing_game));
  // No positive relevance: mass is undefined; the ranking is the raster order.
  const Floats negative(25, -1.0f);
  s = score_heatmap(heat(negative, 5, 5), mask(pixels(5, 5, {{0, 0}}), 5, 5), mask(fov, 5, 5));
  EXPECT_TRUE(std::isnan(s.mass_inside));
  EXPECT_EQ(s.rank_accuracy, 1.0);
  EXPECT_DOUBLE_EQ(
      score_heatmap(heat(negative, 5, 5), mask(pixels(5, 5, {{0, 0}}), 5, 5), mask(fov, 5, 5), true)
          .mass_inside,
      1.0 / 25.0);
  // Empty field of view: nothing is defined.
  const Bytes none(25, 0);
  s = score_heatmap(heat(kMap, 5, 5), mask(kLesion, 5, 5), mask(none, 5, 5));
  EXPECT_EQ(s.fov_pixels, 0);
  EXPECT_TRUE(std::isnan(s.mass_inside) && std::isnan(s.rank_accuracy) && std::isnan(s.pointing_game));
}

TEST(SaliencyScores, MatchesFullSortReferenceOnRandomMapsWithTies) {
  std::mt19937_64 rng(7);
  std::uniform_int_distribution<int> value(-2, 3);
  std::bernoulli_distribution lesion_bit(0.2), fov_bit(0.85);
  for (int trial = 0; trial < 200; ++trial) {
    const std::int64_t h = 1 + trial % 9, w = 1 + (trial * 7) % 11;
    const std::size_t n = static_cast<std::size_t>(h * w);
    Floats map(n);
    Bytes lesion(n), fov(n);
    for (std::size_t i = 0; i < n; ++i) {
      map[i] = static_cast<float>(value(rng)) * 0.5f;
      lesion[i] = lesion_bit(rng) ? 255 : 0;  // any nonzero byte is inside
      fov[i] = fov_bit(rng) ? 1 : 0;
    }
    const bool absolute = trial % 2 == 1;
    const double tolerance = (trial % 4) * 0.75;
    const SaliencyScores got =
        score_heatmap(heat(map, h, w), mask(lesion, h, w), mask(fov, h, w), absolute, tolerance);
    const SaliencyScores want = brute_force(map, lesion, fov, w, absolute, tolerance);
    const std::string what = "trial " + std::to_string(trial);
    EXPECT_EQ(got.lesion_pixels, want.lesion_pixels) << what;
    EXPECT_EQ(got.fov_pixels, want.fov_pixels) << what;
    expect_same(got.mass_inside, want.mass_inside, what + " mass_inside");
    expect_same(got.rank_accuracy, want.rank_accuracy, what + " rank_accuracy");
    expect_same(got.pointing_game, want.pointing_game, what + " pointing_game");
  }
}

TEST(SaliencyScores, RandomHeatmapMassIsTheLesionAreaFraction) {
  // A heatmap independent of the mask puts on the lesion about its share of the field of view: with
  // uniform relevance on n_L = ~3,100 lesion pixels, the relative std of the lesion's sum is
  // 1 / sqrt(3 n_L) ~ 1%, so mass_inside is within 0.01 of the area fraction (~0.08) by > 10 sigma; the
  // top-K overlap is hypergeometric (std ~ sqrt(f (1 - f) / K) ~ 0.005), within 0.03.
  const std::int64_t h = 200, w = 200;
  std::mt19937_64 rng(11);
  std::uniform_real_distribution<float> u(0.0f, 1.0f);
  Floats map(static_cast<std::size_t>(h * w));
  for (float& v : map) v = u(rng);
  Bytes lesion(map.size(), 0), fov(map.size(), 0);
  for (std::int64_t y = 0; y < h; ++y)
    for (std::int64_t x = 0; x < w; ++x) {
      const double r_fov = std::hypot(y - 99.5, x - 99.5), r_les = std::hypot(y - 80.0, x - 120.0);
      fov[static_cast<std::size_t>(y * w + x)] = r_fov < 98.0;
      lesion[static_cast<std::size_t>(y * w + x)] = r_les < 30.0 || (y % 17 == 0 && x % 13 == 0);
    }
  const SaliencyScores s = score_heatmap(heat(map, h, w), mask(lesion, h, w), mask(fov, h, w));
  const double fraction = static_cast<double>(s.lesion_pixels) / static_cast<double>(s.fov_pixels);
  EXPECT_GT(s.lesion_pixels, 2500);
  EXPECT_NEAR(s.mass_inside, fraction, 0.01) << "lesion fraction " << fraction;
  EXPECT_NEAR(s.rank_accuracy, fraction, 0.03) << "lesion fraction " << fraction;
  // The same map made to favour the lesion scores higher.
  Floats biased = map;
  for (std::size_t i = 0; i < map.size(); ++i)
    if (lesion[i]) biased[i] += 0.5f;
  const SaliencyScores b = score_heatmap(heat(biased, h, w), mask(lesion, h, w), mask(fov, h, w));
  EXPECT_GT(b.mass_inside, 1.5 * s.mass_inside);
  EXPECT_GT(b.rank_accuracy, 0.5);
}

TEST(SaliencyScores, ErrorsNameTheProblem) {
  const Floats h(25, 1.0f);
  const Bytes m5 = ones(5, 5), m45 = ones(4, 5);
  std::string e = error_of([&] { score_heatmap(heat(h, 5, 5), mask(m45, 4, 5), mask(m5, 5, 5)); });
  EXPECT_TRUE(contains(e, "heatmap 5 x 5") && contains(e, "lesion mask 4 x 5") &&
              contains(e, "field-of-view mask 5 x 5"))
      << e;
  e = error_of([&] { score_by_lesion_size(heat(h, 5, 5), mask(m5, 5, 5), mask(m45, 4, 5)); });
  EXPECT_TRUE(contains(e, "score_by_lesion_size") && contains(e, "field-of-view mask 4 x 5")) << e;
  Floats bad = h;
  bad[2 * 5 + 3] = std::numeric_limits<float>::quiet_NaN();
  e = error_of([&] { score_heatmap(heat(bad, 5, 5), mask(m5, 5, 5), mask(m5, 5, 5)); });
  EXPECT_TRUE(contains(e, "row 2, column 3") && contains(e, "not finite")) << e;
  bad[2 * 5 + 3] = std::numeric_limits<float>::infinity();
  e = error_of([&] { score_by_lesion_size(heat(bad, 5, 5), mask(m5, 5, 5), mask(m5, 5, 5)); });
  EXPECT_TRUE(contains(e, "row 2, column 3")) << e;
  e = error_of([&] { score_heatmap(Heatmap{{}, 0, 0}, Mask{{}, 0, 0}, Mask{{}, 0, 0}); });
  EXPECT_TRUE(contains(e, "heatmap is empty")) << e;
  e = error_of([&] { score_heatmap(heat(h, 5, 4), mask(m5, 5, 5), mask(m5, 5, 5)); });
  EXPECT_TRUE(contains(e, "25 values") && contains(e, "5 x 4")) << e;
  e = error_of([&] { score_heatmap(heat(h, 5, 5), mask(m5, 5, 5), mask(m5, 5, 5), false, -1.0); });
  EXPECT_TRUE(contains(e, "tolerance")) << e;
  const std::int64_t flat[] = {1, 5, 5}, first0[] = {0, 5};
  e = error_of([&] { score_by_lesion_size(heat(h, 5, 5), mask(m5, 5, 5), mask(m5, 5, 5), flat); });
  EXPECT_TRUE(contains(e, "must increase") && contains(e, "edge 2 = 5")) << e;
  e = error_of([&] { score_by_lesion_size(heat(h, 5, 5), mask(m5, 5, 5), mask(m5, 5, 5), first0); });
  EXPECT_TRUE(contains(e, "first bin edge")) << e;
  e = error_of([&] { connected_components(mask(m5, 5, 5), nullptr, 6); });
  EXPECT_TRUE(contains(e, "connectivity must be 4 or 8, got 6")) << e;
  e = error_of([&] { resize_mask_any(mask(m5, 5, 5), 0, 3); });
  EXPECT_TRUE(contains(e, "0 x 3")) << e;
  e = error_of([&] { mask_union({}); });
  EXPECT_TRUE(contains(e, "no masks")) << e;
  const Mask two[] = {mask(m5, 5, 5), mask(m45, 4, 5)};
  e = error_of([&] { mask_union(two); });
  EXPECT_TRUE(contains(e, "mask 1 is 4 x 5 but mask 0 is 5 x 5")) << e;
}

// ---- masks: connected components, resize, union -----------------------------------------------------------

TEST(SaliencyMasks, ConnectedComponentsFourVersusEightOnADiagonal) {
  // X . . . X      a diagonal of three, two corners
  // . X . . .
  // . . X . .
  // . . . . .
  // X . . . .
  const Bytes m = pixels(5, 5, {{0, 0}, {1, 1}, {2, 2}, {0, 4}, {4, 0}});
  std::vector<int> labels;
  const std::vector<Component> c8 = connected_components(mask(m, 5, 5), &labels);
  ASSERT_EQ(c8.size(), 3u);
  EXPECT_EQ(c8[0].label, 1);
  EXPECT_EQ(c8[0].area, 3);
  EXPECT_EQ(c8[0].top, 0);
  EXPECT_EQ(c8[0].left, 0);
  EXPECT_EQ(c8[0].bottom, 3);
  EXPECT_EQ(c8[0].right, 3);
  EXPECT_EQ(c8[1].area, 1);  // (0, 4): second in raster order
  EXPECT_EQ(c8[1].left, 4);
  EXPECT_EQ(c8[2].top, 4);  // (4, 0)
  const std::vector<int> want8 = {1, 0, 0, 0, 2, 0, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 0};
  EXPECT_EQ(labels, want8);

  const std::vector<Component> c4 = connected_components(mask(m, 5, 5), &labels, 4);
  ASSERT_EQ(c4.size(), 5u);
  for (const Component& c : c4) EXPECT_EQ(c.area, 1) << "label " << c.label;
  const std::vector<int> want4 = {1, 0, 0, 0, 2, 0, 3, 0, 0, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 5, 0, 0, 0, 0};
  EXPECT_EQ(labels, want4);
}

TEST(SaliencyMasks, ComponentLabelsFollowTheFirstPixelOfAUShape) {
  // A U whose arms meet only at the bottom row, and a dot between the arms: the U is one component
  // labelled 1 (its first pixel is (0, 0)), the dot (1, 2) is 2.
  const Bytes m = pixels(
      4, 5, {{0, 0}, {1, 0}, {2, 0}, {3, 0}, {3, 1}, {3, 2}, {3, 3}, {3, 4}, {2, 4}, {1, 4}, {0, 4}, {1, 2}});
  std::vector<int> labels;
  const std::vector<Component> c = connected_components(mask(m, 4, 5), &labels, 4);
  ASSERT_EQ(c.size(), 2u);
  EXPECT_EQ(c[0].area, 11);
  EXPECT_EQ(c[0].bottom, 4);
  EXPECT_EQ(c[0].right, 5);
  EXPECT_EQ(c[1].area, 1);
  EXPECT_EQ(labels[0 * 5 + 4], 1);
  EXPECT_EQ(labels[1 * 5 + 2], 2);
}

TEST(SaliencyMasks, ResizeKeepsASinglePixelAtOneNineteenth) {
  Bytes m(38 * 38, 0);
  m[37 * 38 + 20] = 1;  // footprint of output (1, 1): rows and columns [19, 38)
  Bytes got = resize_mask_any(mask(m, 38, 38), 2, 2);
  EXPECT_EQ(got, (Bytes{0, 0, 0, 1}));
  // A 2-pixel microaneurysm on an IDRiD-sized mask, at the model's 224 x 224: exactly one pixel, (7, 10)
  // (rows [89, 102) hold row 100; columns [191, 211) hold 200 and 201).
  const std::int64_t h = 2848, w = 4288;
  Bytes big(static_cast<std::size_t>(h * w), 0);
  big[static_cast<std::size_t>(100 * w + 200)] = 1;
  big[static_cast<std::size_t>(100 * w + 201)] = 1;
  got = resize_mask_any(mask(big, h, w), 224, 224);
  ASSERT_EQ(got.size(), 224u * 224u);
  EXPECT_EQ(std::count(got.begin(), got.end(), 1), 1);
  EXPECT_EQ(got[7 * 224 + 10], 1);
  EXPECT_EQ(connected_components(mask(got, 224, 224)).size(), 1u);
}

TEST(SaliencyMasks, ResizeFootprintAtNonIntegerRatios) {
  // 5 -> 3: footprints [0, 2), [1, 4), [3, 5) overlap; each source pixel reaches the outputs listed.
  const std::vector<Bytes> want = {{1, 0, 0}, {1, 1, 0}, {0, 1, 0}, {0, 1, 1}, {0, 0, 1}};
  for (int p = 0; p < 5; ++p) {
    Bytes src(5, 0);
    src[static_cast<std::size_t>(p)] = 1;
    EXPECT_EQ(resize_mask_any(mask(src, 1, 5), 1, 3), want[static_cast<std::size_t>(p)]) << "column " << p;
    EXPECT_EQ(resize_mask_any(mask(src, 5, 1), 3, 1), want[static_cast<std::size_t>(p)]) << "row " << p;
  }
  // 2 -> 5 (upscaling): footprints [0, 1), [0, 1), [0, 2), [1, 2), [1, 2).
  EXPECT_EQ(resize_mask_any(mask(Bytes{1, 0}, 1, 2), 1, 5), (Bytes{1, 1, 1, 0, 0}));
  EXPECT_EQ(resize_mask_any(mask(Bytes{0, 7}, 2, 1), 5, 1), (Bytes{0, 0, 1, 1, 1}));
  // 2-D: a 7 x 10 mask to 3 x 4, compared with the footprint rule written out.
  std::mt19937_64 rng(3);
  std::bernoulli_distribution bit(0.08);
  Bytes src(70);
  for (auto& b : src) b = bit(rng);
  const Bytes got = resize_mask_any(mask(src, 7, 10), 3, 4);
  for (int y = 0; y < 3; ++y)
    for (int x = 0; x < 4; ++x) {
      std::uint8_t any = 0;
      for (int r = y * 7 / 3; r < ((y + 1) * 7 + 2) / 3; ++r)
        for (int c = x * 10 / 4; c < ((x + 1) * 10 + 3) / 4; ++c)
          any |= src[static_cast<std::size_t>(r * 10 + c)];
      EXPECT_EQ(got[static_cast<std::size_t>(y * 4 + x)], any) << y << ", " << x;
    }
}

TEST(SaliencyMasks, UnionOfLesionTypes) {
  const Bytes ma = pixels(3, 3, {{0, 0}}), he = pixels(3, 3, {{1, 1}, {0, 0}}), ex(9, 200);
  const Mask two[] = {mask(ma, 3, 3), mask(he, 3, 3)};
  EXPECT_EQ(mask_union(two), pixels(3, 3, {{0, 0}, {1, 1}}));
  const Mask three[] = {mask(ma, 3, 3), mask(he, 3, 3), mask(ex, 3, 3)};
  EXPECT_EQ(mask_union(three), ones(3, 3));
}

// ---- score_by_lesion_size ---------------------------------------------------------------------------------

// 8 x 8: a tiny lesion (one pixel at (0, 7)) and a large one (3 x 3 block, rows 4-6, columns 1-3).
const Bytes kTwoLesions =
    pixels(8, 8, {{0, 7}, {4, 1}, {4, 2}, {4, 3}, {5, 1}, {5, 2}, {5, 3}, {6, 1}, {6, 2}, {6, 3}});

TEST(SaliencyBySize, HeatmapOnTheLargeLesionHitsItAndMissesTheTinyOne) {
  Floats h(64, 0.0f);
  for (int y = 4; y < 7; ++y)
    for (int x = 1; x < 4; ++x) h[static_cast<std::size_t>(y * 8 + x)] = 1.0f;
  const Bytes fov = ones(8, 8);
  const std::vector<SizeBinScores> bins =
      score_by_lesion_size(heat(h, 8, 8), mask(kTwoLesions, 8, 8), mask(fov, 8, 8));
  ASSERT_EQ(bins.size(), 4u);  // default edges 1, 5, 25, 125
  EXPECT_EQ(bins[0].min_area, 1);
  EXPECT_EQ(bins[0].max_area, 5);
  EXPECT_EQ(bins[3].min_area, 125);
  EXPECT_EQ(bins[3].max_area, std::numeric_limits<std::int64_t>::max());
  // Tiny: the top 10 pixels are the block's 9 and the first zero in raster order, (0, 0), not (0, 7).
  EXPECT_EQ(bins[0].components, 1);
  EXPECT_EQ(bins[0].lesion_pixels, 1);
  EXPECT_EQ(bins[0].mass_inside, 0.0);
  EXPECT_EQ(bins[0].rank_accuracy, 0.0);
  EXPECT_EQ(bins[0].hit_rate, 0.0);
  // Large: all of the relevance, all of its top 9.
  EXPECT_EQ(bins[1].components, 1);
  EXPECT_EQ(bins[1].lesion_pixels, 9);
  EXPECT_DOUBLE_EQ(bins[1].mass_inside, 1.0);
  EXPECT_DOUBLE_EQ(bins[1].rank_accuracy, 1.0);
  EXPECT_EQ(bins[1].hit_rate, 1.0);
  for (int b = 2; b < 4; ++b) {
    EXPECT_EQ(bins[static_cast<std::size_t>(b)].components, 0);
    EXPECT_EQ(bins[static_cast<std::size_t>(b)].mass_inside, 0.0);
    EXPECT_TRUE(std::isnan(bins[static_cast<std::size_t>(b)].rank_accuracy));
    EXPECT_TRUE(std::isnan(bins[static_cast<std::size_t>(b)].hit_rate));
  }
}

TEST(SaliencyBySize, HeatmapOnTheTinyLesionHitsOnlyIt) {
  Floats h(64, 0.0f);
  h[7] = -2.0f;  // (0, 7), negative: only its absolute value ranks it first
  const Bytes fov = ones(8, 8);
  std::vector<SizeBinScores> bins =
      score_by_lesion_size(heat(h, 8, 8), mask(kTwoLesions, 8, 8), mask(fov, 8, 8), {}, true);
  EXPECT_EQ(bins[0].hit_rate, 1.0);
  EXPECT_EQ(bins[0].rank_accuracy, 1.0);
  EXPECT_DOUBLE_EQ(bins[0].mass_inside, 1.0);
  EXPECT_EQ(bins[1].hit_rate, 0.0);  // top 10: (0, 7) and 9 zeros of rows 0-1
  EXPECT_EQ(bins[1].rank_accuracy, 0.0);
  // The positive part sees no relevance: mass undefined, ranking by raster order.
  bins = score_by_lesion_size(heat(h, 8, 8), mask(kTwoLesions, 8, 8), mask(fov, 8, 8));
  EXPECT_TRUE(std::isnan(bins[0].mass_inside));
  EXPECT_EQ(bins[0].hit_rate,
            1.0);  // the top 10 in raster order are rows 0 and 1 up to (1, 1): (0, 7) is one
  EXPECT_EQ(bins[0].rank_accuracy, 0.0);
}

TEST(SaliencyBySize, CustomEdgesAndTheFieldOfView) {
  const Floats h(64, 1.0f);
  Bytes fov = ones(8, 8);
  const std::int64_t edges[] = {2, 9};
  std::vector<SizeBinScores> bins =
      score_by_lesion_size(heat(h, 8, 8), mask(kTwoLesions, 8, 8), mask(fov, 8, 8), edges);
  ASSERT_EQ(bins.size(), 2u);
  EXPECT_EQ(bins[0].components, 0);  // the tiny lesion (area 1) is in no bin
  EXPECT_EQ(bins[1].min_area, 9);
  EXPECT_EQ(bins[1].components, 1);
  EXPECT_DOUBLE_EQ(bins[1].mass_inside, 9.0 / 64.0);
  // Cutting row 4 off the field of view leaves the large lesion with 6 pixels: now in bin [2, 9).
  for (int x = 0; x < 8; ++x) fov[static_cast<std::size_t>(4 * 8 + x)] = 0;
  bins = score_by_lesion_size(heat(h, 8, 8), mask(kTwoLesions, 8, 8), mask(fov, 8, 8), edges);
  EXPECT_EQ(bins[0].components, 1);
  EXPECT_EQ(bins[0].lesion_pixels, 6);
  EXPECT_DOUBLE_EQ(bins[0].mass_inside, 6.0 / 56.0);
  EXPECT_EQ(bins[1].components, 0);
}

TEST(SaliencyBySize, MatchesFullSortReferenceOnRandomMaps) {
  std::mt19937_64 rng(21);
  std::uniform_int_distribution<int> value(-1, 4);
  std::bernoulli_distribution lesion_bit(0.3), fov_bit(0.9);
  const std::int64_t edges[] = {1, 2, 4, 8};
  for (int trial = 0; trial < 60; ++trial) {
    const std::int64_t h = 3 + trial % 7, w = 4 + (trial * 5) % 9;
    const std::size_t n = static_cast<std::size_t>(h * w);
    Floats map(n);
    Bytes lesion(n), fov(n);
    for (std::size_t i = 0; i < n; ++i) {
      map[i] = static_cast<float>(value(rng));
      lesion[i] = lesion_bit(rng);
      fov[i] = fov_bit(rng);
    }
    const std::vector<SizeBinScores> got =
        score_by_lesion_size(heat(map, h, w), mask(lesion, h, w), mask(fov, h, w), edges);
    // Reference: components of lesion AND fov, a full sort, per-bin counts by brute force.
    Bytes both(n);
    for (std::size_t i = 0; i < n; ++i) both[i] = lesion[i] && fov[i];
    std::vector<int> labels;
    const std::vector<Component> comps = connected_components(mask(both, h, w), &labels);
    const Reference ref = rank_all(map, fov, false);
    const auto bin_of = [&](int label) {
      const std::int64_t a = comps[static_cast<std::size_t>(label - 1)].area;
      return a >= 8 ? 3 : a >= 4 ? 2 : a >= 2 ? 1 : 0;
    };
    std::int64_t all = 0;
    for (std::size_t i = 0; i < n; ++i) all += both[i];
    double total = 0;
    for (std::size_t i : ref.order) total += ref.r[i];
    ASSERT_EQ(got.size(), 4u);
    for (int b = 0; b < 4; ++b) {
      const std::string what = "trial " + std::to_string(trial) + " bin " + std::to_string(b);
      std::int64_t count = 0, pixels_in = 0, hit = 0;
      double mass = 0;
      for (const Component& c : comps)
        if (bin_of(c.label) == b) {
          ++count;
          pixels_in += c.area;
          bool h_any = false;
          for (std::int64_t j = 0; j < all; ++j)
            h_any |= labels[ref.order[static_cast<std::size_t>(j)]] == c.label;
          hit += h_any;
        }
      std::int64_t on = 0;
      for (std::size_t i = 0; i < n; ++i)
        if (labels[i] != 0 && bin_of(labels[i]) == b) mass += ref.r[i];
      for (std::int64_t j = 0; j < pixels_in; ++j) {
        const int l = labels[ref.order[static_cast<std::size_t>(j)]];
        on += l != 0 && bin_of(l) == b;
      }
      const double nan = std::numeric_limits<double>::quiet_NaN();
      EXPECT_EQ(got[static_cast<std::size_t>(b)].components, count) << what;
      EXPECT_EQ(got[static_cast<std::size_t>(b)].lesion_pixels, pixels_in) << what;
      expect_same(got[static_cast<std::size_t>(b)].mass_inside, total > 0 ? mass / total : nan,
                  what + " mass");
      expect_same(got[static_cast<std::size_t>(b)].rank_accuracy,
                  pixels_in > 0 ? static_cast<double>(on) / static_cast<double>(pixels_in) : nan,
                  what + " rank");
      expect_same(got[static_cast<std::size_t>(b)].hit_rate,
                  count > 0 ? static_cast<double>(hit) / static_cast<double>(count) : nan, what + " hit");
    }
  }
}

// ---- a real IDRiD mask ------------------------------------------------------------------------------------

// The lesion_pixels column of idrid/lesion_masks.csv for one image and type (-1 when absent).
std::int64_t recorded_lesion_pixels(const std::filesystem::path& csv, const std::string& image,
                                    const std::string& type) {
  std::ifstream in(csv);
  std::string line;
  const std::string prefix = image + "," + type + ",";
  while (std::getline(in, line))
    if (line.rfind(prefix, 0) == 0) return std::stoll(line.substr(line.rfind(',') + 1));
  return -1;
}

TEST(SaliencyRealData, IdridMicroaneurysmMaskScoresItselfPerfectly) {
  namespace fs = std::filesystem;
  const fs::path dir = testing::fundus_dir();
  if (dir.empty())
    GTEST_SKIP() << "../shared/data/fundus not found next to the repository (set FOVEA_FUNDUS_DIR): "
                    "no real IDRiD mask to score";
  const fs::path tif = dir / "idrid" / "original_tif" / "IDRiD_03_MA.tif";
  if (!fs::exists(tif)) GTEST_SKIP() << tif << " is absent";
  if (!data::kHaveTiff) GTEST_SKIP() << "built without libtiff (libtiff-dev): cannot read " << tif;
  const Tensor image = data::load_tiff(tif);  // (3, H, W), 0 / 1
  const std::int64_t h = image.shape()[1], w = image.shape()[2];
  ASSERT_EQ(h, 2848);
  ASSERT_EQ(w, 4288);
  Bytes ma(static_cast<std::size_t>(h * w));
  for (std::size_t i = 0; i < ma.size(); ++i) ma[i] = image.data()[i] > 0.5f;
  const std::int64_t area = std::count(ma.begin(), ma.end(), 1);
  const std::int64_t recorded =
      recorded_lesion_pixels(dir / "idrid" / "lesion_masks.csv", "IDRiD_03.jpg", "MA");
  if (recorded >= 0) {
    EXPECT_EQ(area, recorded) << "the TIFF and the PNG copy's pixel count differ";
  }
  const std::vector<Component> full = connected_components(mask(ma, h, w));
  ASSERT_GT(full.size(), 0u);

  // At the model's 224 x 224, every lesion pixel lands on an inside pixel: no microaneurysm is lost.
  const Bytes small = resize_mask_any(mask(ma, h, w), 224, 224);
  const std::vector<Component> comps = connected_components(mask(small, 224, 224));
  EXPECT_GT(comps.size(), 0u);
  EXPECT_LE(comps.size(), full.size());
  for (std::int64_t y = 0; y < h; ++y)
    for (std::int64_t x = 0; x < w; ++x)
      if (ma[static_cast<std::size_t>(y * w + x)]) {
        ASSERT_EQ(small[static_cast<std::size_t>((y * 224 / h) * 224 + x * 224 / w)], 1)
            << "lesion pixel (" << y << ", " << x << ") lost";
      }
  const Bytes fov224 = ones(224, 224);
  Floats map(small.begin(), small.end());
  SaliencyScores s = score_heatmap(heat(map, 224, 224), mask(small, 224, 224), mask(fov224, 224, 224));
  EXPECT_DOUBLE_EQ(s.mass_inside, 1.0);
  EXPECT_DOUBLE_EQ(s.rank_accuracy, 1.0);
  EXPECT_EQ(s.pointing_game, 1.0);

  // Full resolution, inside the photo's field of view when the JPEG can be read: a heatmap equal to the
  // mask scores 1, and the size bins account for every lesion pixel.
  Bytes fov = ones(h, w);
  const fs::path jpg = dir / "idrid" / "images" / "IDRiD_03.jpg";
  if (data::kHaveImageIo && fs::exists(jpg)) {
    const Tensor f = data::fov_mask(data::load_image(jpg));  // (1, H, W)
    for (std::size_t i = 0; i < fov.size(); ++i) fov[i] = f.data()[i] > 0.5f;
  }
  Floats full_map(ma.begin(), ma.end());
  const auto t0 = std::chrono::steady_clock::now();
  s = score_heatmap(heat(full_map, h, w), mask(ma, h, w), mask(fov, h, w));
  const auto t1 = std::chrono::steady_clock::now();
  const std::vector<SizeBinScores> bins =
      score_by_lesion_size(heat(full_map, h, w), mask(ma, h, w), mask(fov, h, w));
  const auto t2 = std::chrono::steady_clock::now();
  EXPECT_DOUBLE_EQ(s.mass_inside, 1.0);
  EXPECT_DOUBLE_EQ(s.rank_accuracy, 1.0);
  EXPECT_EQ(s.pointing_game, 1.0);
  std::int64_t binned = 0;
  for (const SizeBinScores& b : bins) {
    binned += b.lesion_pixels;
    if (b.components > 0) {
      EXPECT_EQ(b.hit_rate, 1.0) << "bin from " << b.min_area;
    }
  }
  EXPECT_EQ(binned, s.lesion_pixels);
  const auto ms = [](auto d) { return std::chrono::duration<double, std::milli>(d).count(); };
  std::cout << "IDRiD_03 MA: " << area << " pixels, " << full.size() << " components at " << h << " x " << w
            << ", " << comps.size() << " at 224 x 224 (" << std::count(small.begin(), small.end(), 1)
            << " pixels); in the field of view: " << s.lesion_pixels << " of " << s.fov_pixels
            << "; score_heatmap " << ms(t1 - t0) << " ms, score_by_lesion_size " << ms(t2 - t1) << " ms\n";
  for (const SizeBinScores& b : bins)
    std::cout << "  bin [" << b.min_area << ", " << b.max_area << "): " << b.components << " components, "
              << b.lesion_pixels << " pixels\n";
}

}  // namespace
}  // namespace fovea::analysis
