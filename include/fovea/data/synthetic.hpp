// fovea/data/synthetic.hpp: a procedural fundus-photograph generator with DR lesions and pixel masks per ICDR grade.
//
// generate_fundus draws one colour fundus "photograph" (3, S, S) in [0, 1]: a round field of view on
// black, reddish-orange background with choroidal texture and vignetting, a vessel tree grown from
// the optic disc (two temporal arcades, nasal vessels, recursive tapering branches, arteries lighter
// than veins), the disc with its cup, the darker macula and fovea, and the diabetic-retinopathy
// lesions of the requested ICDR grade (0 none, 1 microaneurysms only, 2 + haemorrhages and exudates,
// 3 + many haemorrhages in all quadrants, cotton-wool spots, venous beading, 4 + new vessels and
// pre-retinal haemorrhage). It returns one binary mask per lesion type (IDRiD's MA, HE, EX, SE, plus
// NV and the optic disc OD) and the list of lesions with their centres and areas.
//
// Everything is a pure function of (seed, index, grade, size): all randomness comes from Philox
// streams keyed by (seed, kPurposeSynthetic, index, stream), so calls on different threads never
// interact and any image can be regenerated alone. Anatomy and camera come from streams that do not
// depend on the grade: the same (seed, index) at grades 0 and 3 shows the same eye, once healthy
// and once with lesions (a counterfactual pair for attribution studies).
//
// Host code only. It is not a photorealistic simulator; see docs/synthetic-data.md for what it draws
// and what may and may not be concluded from models trained on it.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "fovea/core/error.hpp"
#include "fovea/core/random.hpp"
#include "fovea/core/tensor.hpp"

namespace fovea::data {

// ---- lesion types, eyes, names ------------------------------------------------------------------

// Mask channels of a SyntheticFundus, in this order. MA..SE are IDRiD's lesion types; NV are new
// vessels (proliferative DR); OD is the optic disc (anatomy, never in the lesion list).
enum class LesionType : std::uint8_t { MA = 0, HE = 1, EX = 2, SE = 3, NV = 4, OD = 5 };
inline constexpr int kLesionTypeCount = 6;
inline constexpr std::array<LesionType, kLesionTypeCount> kSyntheticLesionTypes{LesionType::MA, LesionType::HE,
                                                                       LesionType::EX, LesionType::SE,
                                                                       LesionType::NV, LesionType::OD};

// "MA", "HE", "EX", "SE", "NV", "OD" (IDRiD's folder and suffix names).
inline const char* lesion_type_name(LesionType type) {
  constexpr std::array<const char*, kLesionTypeCount> kNames{"MA", "HE", "EX", "SE", "NV", "OD"};
  return kNames[static_cast<std::size_t>(type)];
}

enum class Eye : std::uint8_t { left, right };

// Image `index` of a synthetic data set is eye index % 2 (0 left, 1 right) of patient index / 2, so
// the two eyes of a patient are neighbours, like EyePACS's "10_left" / "10_right".
inline std::int64_t synthetic_patient(std::int64_t index) { return index / 2; }
inline Eye synthetic_eye(std::int64_t index) { return index % 2 == 0 ? Eye::left : Eye::right; }
// "synthetic_<patient>_<left|right>" (no extension, the EyePACS labels.csv convention).
inline std::string synthetic_image_name(std::int64_t index) {
  FOVEA_CHECK(index >= 0, "synthetic_image_name: negative index ", index);
  return "synthetic_" + std::to_string(synthetic_patient(index)) +
         (synthetic_eye(index) == Eye::left ? "_left" : "_right");
}

// ---- configuration and result -------------------------------------------------------------------

struct SyntheticConfig {
  std::uint64_t seed = 0;
  int size = 512;  // S: images are S x S pixels; lesion sizes scale with S (quoted below at 512)
  // Camera variation: colour cast, exposure, gamma, uneven illumination, blur, sensor noise, rotation
  // of the anatomy and field-of-view size. Off: one neutral camera (useful for tests and figures).
  bool camera_variation = true;
  // The acquiring site's camera: 0, the default population of cameras; 1, a second site's camera,
  // for studies of generalisation to an external data set: a smaller field of view, darker
  // (exposure x 0.8, gamma x 1.15), a green-blue cast (red x 0.88, green x 1.05, blue x 1.35), a
  // stronger illumination fall-off (+0.2), every image defocused with 1.4x the blur, twice the
  // sensor noise. Applied to camera_variation's draws (the same draws, so the anatomy, vessels and
  // lesions of an image are those of site 0, seen through the other camera); without
  // camera_variation the one neutral camera is used at every site.
  int site = 0;
};
inline constexpr int kSyntheticSites = 2;

// One lesion: its type, centre in pixels (x right, y down, pixel centres at k + 0.5) and its own area
// in pixels inside the field of view (lesions of one type may overlap, so the mask can hold fewer
// pixels than the sum of the areas). Every lesion covers at least one pixel.
struct Lesion {
  LesionType type = LesionType::MA;
  float x = 0.0f;
  float y = 0.0f;
  std::int64_t pixels = 0;
};

struct SyntheticFundus {
  Tensor image;  // (3, S, S) RGB in [0, 1]; exactly 0 outside the field of view
  Tensor masks;  // (kLesionTypeCount, S, S), values 0 or 1, channel = LesionType; 0 outside the FOV
  std::vector<Lesion> lesions;  // MA, HE, EX, SE and NV lesions (not OD)
  int grade = 0;
  Eye eye = Eye::left;
  float fov_x = 0.0f, fov_y = 0.0f, fov_radius = 0.0f;  // field of view (pixels): inside iff distance <= radius
  float disc_x = 0.0f, disc_y = 0.0f, disc_radius = 0.0f;
  float fovea_x = 0.0f, fovea_y = 0.0f;

  int size() const { return static_cast<int>(image.shape()[2]); }
  // The mask of one type.  -> (1, S, S)
  CView mask(LesionType type) const {
    const std::int64_t s = image.shape()[2], t = static_cast<std::int64_t>(type);
    return CView(masks.data() + t * s * s, Shape{1, s, s}, Device::cpu());
  }
  // The number of pixels in the mask of one type.
  std::int64_t mask_pixels(LesionType type) const {
    const CView m = mask(type);
    std::int64_t n = 0;
    for (std::int64_t i = 0; i < m.numel(); ++i) n += m.data()[i] != 0.0f;
    return n;
  }
  // The number of listed lesions of one type.
  std::int64_t lesion_count(LesionType type) const {
    return std::count_if(lesions.begin(), lesions.end(), [type](const Lesion& l) { return l.type == type; });
  }
};

// ---- grade distributions ------------------------------------------------------------------------

// Relative weights of ICDR grades 0..4 (need not sum to 1).
struct GradeDistribution {
  std::array<double, 5> weights{};
};
// The Kaggle/EyePACS 2015 training labels: 25,810 / 2,443 / 5,292 / 873 / 708 images
// (73.5 / 7.0 / 15.1 / 2.5 / 2.0 %).
inline constexpr GradeDistribution kEyePacsGradeDistribution{{25810.0, 2443.0, 5292.0, 873.0, 708.0}};
inline constexpr GradeDistribution kBalancedGradeDistribution{{1.0, 1.0, 1.0, 1.0, 1.0}};

namespace detail {

// Philox sub-streams of one synthetic image (the RandomKey view field).
inline constexpr std::uint32_t kStreamScene = 0;    // anatomy placement and colours
inline constexpr std::uint32_t kStreamVessels = 1;  // vessel tree
inline constexpr std::uint32_t kStreamLesions = 2;  // lesions (depends on the grade)
inline constexpr std::uint32_t kStreamTexture = 3;  // background texture lattices
inline constexpr std::uint32_t kStreamNoise = 4;    // per-pixel sensor noise (stateless)
inline constexpr std::uint32_t kStreamCamera = 5;   // camera variation
inline constexpr std::uint32_t kStreamGrade = 6;    // the grade of image `index` in synthetic_grades

inline RandomKey synthetic_key(std::uint64_t seed, std::int64_t index, std::uint32_t stream) {
  FOVEA_CHECK(index >= 0, "synthetic data: negative image index ", index);
  const auto u = static_cast<std::uint64_t>(index);
  return make_key(seed, kPurposeSynthetic, static_cast<std::uint32_t>(u >> 32), static_cast<std::uint32_t>(u),
                  stream);
}

}  // namespace detail

// synthetic_grade: the grade of image `index` under `distribution`, drawn independently per image
// from the seed's grade stream (so the first n grades do not depend on how many are drawn).
//   requires: index >= 0; weights finite, >= 0, with a positive sum.
inline int synthetic_grade(std::uint64_t seed, std::int64_t index,
                           const GradeDistribution& distribution = kEyePacsGradeDistribution) {
  double total = 0.0;
  for (double w : distribution.weights) {
    FOVEA_CHECK(std::isfinite(w) && w >= 0.0, "synthetic_grade: grade weights must be finite and >= 0, got ", w);
    total += w;
  }
  FOVEA_CHECK(total > 0.0, "synthetic_grade: grade weights sum to 0");
  const RandomKey key = detail::synthetic_key(seed, index, detail::kStreamGrade);
  const U32x4 bits = random_block(key, 0);
  const double u = (static_cast<double>(bits.v[0] >> 11) * 0x1p-21 + static_cast<double>(bits.v[1])) * 0x1p-32;
  double cumulative = 0.0;
  int last = 0;
  for (int g = 0; g < 5; ++g) {
    if (distribution.weights[static_cast<std::size_t>(g)] <= 0.0) continue;
    last = g;
    cumulative += distribution.weights[static_cast<std::size_t>(g)] / total;
    if (u < cumulative) return g;
  }
  return last;
}

// synthetic_grades: synthetic_grade(seed, i, distribution) for i in [0, count).
inline std::vector<int> synthetic_grades(std::int64_t count, std::uint64_t seed,
                                         const GradeDistribution& distribution = kEyePacsGradeDistribution) {
  FOVEA_CHECK(count >= 0, "synthetic_grades: negative count ", count);
  std::vector<int> grades(static_cast<std::size_t>(count));
  for (std::int64_t i = 0; i < count; ++i) grades[static_cast<std::size_t>(i)] = synthetic_grade(seed, i, distribution);
  return grades;
}

// ---- implementation -----------------------------------------------------------------------------

namespace detail {

struct Vec2 {
  float x = 0.0f, y = 0.0f;
};
inline Vec2 operator+(Vec2 a, Vec2 b) { return {a.x + b.x, a.y + b.y}; }
inline Vec2 operator-(Vec2 a, Vec2 b) { return {a.x - b.x, a.y - b.y}; }
inline Vec2 operator*(Vec2 a, float s) { return {a.x * s, a.y * s}; }
inline float dot(Vec2 a, Vec2 b) { return a.x * b.x + a.y * b.y; }
inline float length(Vec2 a) { return std::sqrt(dot(a, a)); }
inline Vec2 normalized(Vec2 a) {
  const float n = length(a);
  return n > 1e-12f ? a * (1.0f / n) : Vec2{1.0f, 0.0f};
}
inline Vec2 rotated(Vec2 a, float angle) {
  const float c = std::cos(angle), s = std::sin(angle);
  return {c * a.x - s * a.y, s * a.x + c * a.y};
}
inline Vec2 perpendicular(Vec2 a) { return {-a.y, a.x}; }

inline constexpr float kPi = 3.14159265358979f;
inline constexpr float kDegree = kPi / 180.0f;

// A sequential Philox reader with the distributions the generator uses.
class Draw {
 public:
  explicit Draw(const RandomKey& key) : rng_(key) {}
  float uniform(float lo, float hi) { return uniform_between(rng_.next_uniform(), lo, hi); }
  float unit() { return rng_.next_uniform(); }
  float normal() { return rng_.next_normal(); }
  float normal(float mean, float std_dev) { return mean + std_dev * rng_.next_normal(); }
  // An integer uniform on [lo, hi].
  int between(int lo, int hi) { return lo + static_cast<int>(rng_.uniform_int(static_cast<std::uint32_t>(hi - lo + 1))); }
  bool chance(float p) { return unit() < p; }
  float sign() { return chance(0.5f) ? 1.0f : -1.0f; }

 private:
  Philox rng_;
};

inline float smoothstep(float e0, float e1, float x) {
  const float t = std::clamp((x - e0) / (e1 - e0), 0.0f, 1.0f);
  return t * t * (3.0f - 2.0f * t);
}

// Value noise: a lattice of uniform values in [-1, 1] with smoothstep interpolation.
class ValueNoise {
 public:
  ValueNoise(Draw& draw, float cell_px, int size) : cell_(cell_px) {
    n_ = static_cast<int>(std::ceil(static_cast<float>(size) / cell_px)) + 2;
    values_.resize(static_cast<std::size_t>(n_) * static_cast<std::size_t>(n_));
    for (float& v : values_) v = draw.uniform(-1.0f, 1.0f);
  }
  float at(float x, float y) const {
    const float gx = x / cell_, gy = y / cell_;
    const int ix = std::min(static_cast<int>(gx), n_ - 2), iy = std::min(static_cast<int>(gy), n_ - 2);
    float fx = gx - static_cast<float>(ix), fy = gy - static_cast<float>(iy);
    fx = fx * fx * (3.0f - 2.0f * fx);
    fy = fy * fy * (3.0f - 2.0f * fy);
    const float* row0 = values_.data() + static_cast<std::size_t>(iy) * static_cast<std::size_t>(n_) + ix;
    const float* row1 = row0 + n_;
    const float top = row0[0] + fx * (row0[1] - row0[0]);
    const float bottom = row1[0] + fx * (row1[1] - row1[0]);
    return top + fy * (bottom - top);
  }

 private:
  float cell_;
  int n_ = 0;
  std::vector<float> values_;
};

enum class VesselKind : std::uint8_t { artery, vein, neo };

// A straight piece of vessel in pixels with linearly varying width; s0/s1 are arc lengths (pixels)
// from the vessel's origin, used for venous beading.
struct VesselSegment {
  Vec2 a, b;
  float width_a = 0.0f, width_b = 0.0f;
  VesselKind kind = VesselKind::vein;
  bool beadable = false;
  float s_a = 0.0f, s_b = 0.0f;
  float bead_phase = 0.0f;
};

// The eye frame: units of the FOV radius, origin at the FOV centre, the disc of a right eye on the
// +x side (image right), y down. Mirrored for left eyes, rotated by the camera, scaled to pixels.
struct EyeFrame {
  float cx = 0.0f, cy = 0.0f, radius = 1.0f, cos_a = 1.0f, sin_a = 0.0f;
  bool mirror = false;
  Vec2 to_pixels(Vec2 e) const {
    const float x = mirror ? -e.x : e.x;
    return {cx + radius * (cos_a * x - sin_a * e.y), cy + radius * (sin_a * x + cos_a * e.y)};
  }
  // A direction of the eye frame in pixel space (unit length).
  Vec2 direction_to_pixels(Vec2 d) const {
    const float x = mirror ? -d.x : d.x;
    return normalized({cos_a * x - sin_a * d.y, sin_a * x + cos_a * d.y});
  }
};

// The anatomy in eye-frame units.
struct Anatomy {
  Vec2 fovea, disc;
  float disc_radius = 0.13f;  // horizontal radius; vertical = disc_radius * disc_aspect
  float disc_aspect = 1.08f;
  float cup_ratio = 0.4f;
  float macula_sigma = 0.16f;
};

// How a lesion changes the colour under it.
struct Tint {
  bool mix = false;           // false: colour *= 1 - alpha (1 - factor); true: colour += alpha (target - colour)
  std::array<float, 3> rgb{};  // factor or target
};

class FundusPainter {
 public:
  FundusPainter(SyntheticFundus& out, int size, const EyeFrame& frame)
      : out_(out), size_(size), frame_(frame), plane_(static_cast<std::size_t>(size) * static_cast<std::size_t>(size)),
        stamp_(plane_, -1) {
    red_ = out.image.data();
    green_ = red_ + plane_;
    blue_ = green_ + plane_;
    fov_r2_ = frame.radius * frame.radius;
    scale_ = frame.radius / 240.0f;  // lesion sizes are quoted for a 512 px image (FOV radius ~240 px)
  }

  float scale() const { return scale_; }
  int size() const { return size_; }
  float* plane(int c) { return red_ + static_cast<std::size_t>(c) * plane_; }
  float* mask(LesionType t) { return out_.masks.data() + static_cast<std::size_t>(t) * plane_; }

  bool in_fov(int x, int y) const {
    const float dx = static_cast<float>(x) + 0.5f - frame_.cx, dy = static_cast<float>(y) + 0.5f - frame_.cy;
    return dx * dx + dy * dy <= fov_r2_;
  }

  void apply_tint(std::size_t i, float alpha, const Tint& tint) {
    float* c[3] = {red_ + i, green_ + i, blue_ + i};
    for (int k = 0; k < 3; ++k) {
      const float t = tint.rgb[static_cast<std::size_t>(k)];
      if (tint.mix)
        *c[k] += alpha * (t - *c[k]);
      else
        *c[k] *= 1.0f - alpha * (1.0f - t);
    }
  }

  // Starts a lesion: the id used to count its own pixels.
  int begin_lesion() { return next_lesion_++; }
  // Marks pixel (x, y) as part of lesion `id` of `type` (inside the FOV only); returns whether it is new.
  void mark(int x, int y, int id, LesionType type, std::int64_t& area) {
    if (!in_fov(x, y)) return;
    const std::size_t i = static_cast<std::size_t>(y) * static_cast<std::size_t>(size_) + static_cast<std::size_t>(x);
    mask(type)[i] = 1.0f;
    if (stamp_[i] != id) {
      stamp_[i] = id;
      ++area;
    }
  }
  // Records a finished lesion; a lesion that covered no pixel takes the pixel under its centre.
  void end_lesion(int id, LesionType type, Vec2 centre, std::int64_t area) {
    if (area == 0) {
      const int x = std::clamp(static_cast<int>(std::floor(centre.x)), 0, size_ - 1);
      const int y = std::clamp(static_cast<int>(std::floor(centre.y)), 0, size_ - 1);
      mark(x, y, id, type, area);
    }
    if (area > 0) out_.lesions.push_back(Lesion{type, centre.x, centre.y, area});
  }

  // Paints an irregular elliptical blob. radius (px) is the mean radius along the major axis,
  // aspect >= 1 the ratio of the axes, angle the major axis direction (radians, pixel frame),
  // harmonics modulate the radius with angle (amplitude, phase for orders 2..4), feather the edge
  // softness (px); pixels whose shape value is >= 0.5 form the mask.
  struct Blob {
    Vec2 centre;
    float radius = 1.0f, aspect = 1.0f, angle = 0.0f;
    std::array<float, 3> amplitude{}, phase{};
    float feather = 1.0f;
    float opacity = 1.0f;
    float mask_level = 0.5f;  // shape coverage at or above which a pixel is in the mask
    float flat_top = -2.0f;   // > -1: pixels above centre.y + flat_top * radius are cut (a fluid level)
    float bottom_darkening = 0.0f;
  };
  void paint_blob(const Blob& blob, const Tint& tint, LesionType type, int id, std::int64_t& area) {
    float max_amp = 0.0f;
    for (float a : blob.amplitude) max_amp += std::abs(a);
    const float extent = blob.radius * (1.0f + max_amp) + blob.feather + 1.0f;
    const int x0 = std::max(0, static_cast<int>(std::floor(blob.centre.x - extent)));
    const int x1 = std::min(size_ - 1, static_cast<int>(std::ceil(blob.centre.x + extent)));
    const int y0 = std::max(0, static_cast<int>(std::floor(blob.centre.y - extent)));
    const int y1 = std::min(size_ - 1, static_cast<int>(std::ceil(blob.centre.y + extent)));
    const float ca = std::cos(blob.angle), sa = std::sin(blob.angle);
    const bool round = max_amp == 0.0f;
    for (int y = y0; y <= y1; ++y) {
      for (int x = x0; x <= x1; ++x) {
        const float dx = static_cast<float>(x) + 0.5f - blob.centre.x, dy = static_cast<float>(y) + 0.5f - blob.centre.y;
        const float u = (ca * dx + sa * dy), v = (-sa * dx + ca * dy) * blob.aspect;
        const float d = std::sqrt(u * u + v * v);
        float r = blob.radius;
        if (!round && d > 1e-6f) {
          const float theta = std::atan2(v, u);
          float m = 1.0f;
          for (int k = 0; k < 3; ++k)
            m += blob.amplitude[static_cast<std::size_t>(k)] *
                 std::cos(static_cast<float>(k + 2) * theta + blob.phase[static_cast<std::size_t>(k)]);
          r *= m;
        }
        float coverage = std::clamp((r - d) / blob.feather + 0.5f, 0.0f, 1.0f);
        if (blob.flat_top > -1.0f) coverage *= std::clamp(dy - blob.flat_top * blob.radius + 0.5f, 0.0f, 1.0f);
        if (coverage <= 0.0f) continue;
        float alpha = coverage * blob.opacity;
        if (blob.bottom_darkening > 0.0f)
          alpha = std::min(1.0f, alpha * (1.0f + blob.bottom_darkening * std::clamp(dy / blob.radius, 0.0f, 1.0f)));
        apply_tint(static_cast<std::size_t>(y) * static_cast<std::size_t>(size_) + static_cast<std::size_t>(x), alpha,
                   tint);
        if (coverage >= blob.mask_level) mark(x, y, id, type, area);
      }
    }
  }

  // Rasterises a vessel segment: f(index, x, y, alpha, inside) with alpha the coverage-weighted
  // opacity and inside whether the pixel centre lies within max(half width, 0.5 px) of the axis.
  template <class F>
  void rasterise_segment(const VesselSegment& seg, float width_a, float width_b, F&& f) {
    const float reach = std::max(width_a, width_b) * 0.5f + 1.5f;
    const int x0 = std::max(0, static_cast<int>(std::floor(std::min(seg.a.x, seg.b.x) - reach)));
    const int x1 = std::min(size_ - 1, static_cast<int>(std::ceil(std::max(seg.a.x, seg.b.x) + reach)));
    const int y0 = std::max(0, static_cast<int>(std::floor(std::min(seg.a.y, seg.b.y) - reach)));
    const int y1 = std::min(size_ - 1, static_cast<int>(std::ceil(std::max(seg.a.y, seg.b.y) + reach)));
    const Vec2 ab = seg.b - seg.a;
    const float len2 = std::max(dot(ab, ab), 1e-12f);
    for (int y = y0; y <= y1; ++y) {
      for (int x = x0; x <= x1; ++x) {
        const Vec2 p{static_cast<float>(x) + 0.5f, static_cast<float>(y) + 0.5f};
        const float t = std::clamp(dot(p - seg.a, ab) / len2, 0.0f, 1.0f);
        const Vec2 q = seg.a + ab * t;
        const float dx = p.x - q.x, dy = p.y - q.y;
        const float dist = std::sqrt(dx * dx + dy * dy);
        const float half = 0.5f * (width_a + t * (width_b - width_a));
        float alpha;
        if (half >= 0.5f) {
          const float coverage = std::clamp(half - dist + 0.5f, 0.0f, 1.0f);
          const float body = std::sqrt(std::max(0.0f, 1.0f - (dist * dist) / (half * half)));
          alpha = coverage * (0.7f + 0.3f * body);
        } else {
          alpha = std::clamp(1.0f - dist, 0.0f, 1.0f) * 2.0f * half * 0.85f;
        }
        if (alpha <= 0.0f) continue;
        f(static_cast<std::size_t>(y) * static_cast<std::size_t>(size_) + static_cast<std::size_t>(x), x, y, alpha,
          dist <= std::max(half, 0.5f), dist, half);
      }
    }
  }

 private:
  SyntheticFundus& out_;
  int size_;
  EyeFrame frame_;
  std::size_t plane_;
  std::vector<int> stamp_;
  float* red_ = nullptr;
  float* green_ = nullptr;
  float* blue_ = nullptr;
  float fov_r2_ = 0.0f;
  float scale_ = 1.0f;
  int next_lesion_ = 0;
};

// ---- the vessel tree ----------------------------------------------------------------------------

enum class Steering : std::uint8_t { arcade, nasal, macular, branch };

struct Walker {
  Vec2 p, dir;
  float width = 0.02f;  // eye units
  VesselKind kind = VesselKind::vein;
  Steering steering = Steering::branch;
  int depth = 0;
  float s = 0.0f;  // arc length from the disc (eye units)
  float turn = 0.0f;
  float arcade_ratio = 0.72f;
  bool beadable = false;
  float bead_phase = 0.0f;
};

inline constexpr float kVesselStep = 0.008f;  // eye units: ~2 px at 512
inline constexpr float kMinVesselWidth = 0.0032f;
inline constexpr std::size_t kMaxVesselSegments = 40000;

// Grows the vessel tree of one eye in the eye frame and returns it in pixels. Independent of the grade.
inline std::vector<VesselSegment> grow_vessels(Draw& draw, const Anatomy& anatomy, const EyeFrame& frame) {
  std::vector<VesselSegment> segments;
  std::vector<Walker> stack;
  const Vec2 disc = anatomy.disc, fovea = anatomy.fovea;

  auto add_root = [&](Vec2 dir, float width, VesselKind kind, Steering steering) {
    Walker w;
    w.dir = normalized(dir);
    w.p = disc + w.dir * (anatomy.disc_radius * 0.15f) + Vec2{draw.normal(0.0f, 0.01f), draw.normal(0.0f, 0.01f)};
    w.width = width * draw.uniform(0.9f, 1.1f);
    w.kind = kind;
    w.steering = steering;
    w.arcade_ratio = draw.uniform(0.62f, 0.8f);
    w.beadable = kind == VesselKind::vein;
    w.bead_phase = draw.uniform(0.0f, 2.0f * kPi);
    stack.push_back(w);
  };
  const float vein = 0.021f, artery = 0.0155f;
  for (float side : {-1.0f, 1.0f}) {  // superior (-y) and inferior (+y)
    add_root({draw.uniform(-0.45f, -0.15f), side}, vein, VesselKind::vein, Steering::arcade);
    add_root({draw.uniform(-0.6f, -0.25f), side}, artery, VesselKind::artery, Steering::arcade);
    add_root({draw.uniform(0.5f, 0.9f), side * draw.uniform(0.6f, 1.0f)}, vein * 0.7f, VesselKind::vein, Steering::nasal);
    add_root({draw.uniform(0.7f, 1.1f), side * draw.uniform(0.4f, 0.9f)}, artery * 0.7f, VesselKind::artery,
             Steering::nasal);
    add_root({-1.0f, side * draw.uniform(0.05f, 0.3f)}, vein * 0.32f, VesselKind::vein, Steering::macular);
    add_root({-1.0f, side * draw.uniform(0.1f, 0.4f)}, artery * 0.3f, VesselKind::artery, Steering::macular);
  }

  while (!stack.empty() && segments.size() < kMaxVesselSegments) {
    Walker w = stack.back();
    stack.pop_back();
    auto branch_spacing = [&](float width) { return draw.uniform(0.6f, 1.4f) * (0.04f + 8.0f * width); };
    float next_branch = branch_spacing(w.width) + (w.depth == 0 ? 0.08f : 0.0f);
    float since_branch = 0.0f;
    for (int step = 0; step < 400 && segments.size() < kMaxVesselSegments; ++step) {
      if (w.width < kMinVesselWidth || length(w.p) > 1.03f || length(w.p - fovea) < 0.07f) break;
      Vec2 desired;
      float pull = 0.0f;
      switch (w.steering) {
        case Steering::arcade: {
          const Vec2 d = w.p - fovea;
          const Vec2 gradient{d.x, d.y / (w.arcade_ratio * w.arcade_ratio)};
          Vec2 tangent = normalized(perpendicular(gradient));
          if (dot(tangent, w.dir) < 0.0f) tangent = tangent * -1.0f;
          const float fan = std::clamp((fovea.x - w.p.x) / 0.7f, 0.0f, 1.0f);
          desired = normalized(tangent + normalized(d) * (0.6f * fan));
          pull = 0.3f;
          break;
        }
        case Steering::nasal:
          desired = normalized(w.p - disc);
          pull = 0.08f;
          break;
        case Steering::macular:
          desired = normalized(fovea - w.p + Vec2{0.0f, (w.dir.y > 0 ? 0.12f : -0.12f)});
          pull = 0.05f;
          break;
        case Steering::branch:
          desired = normalized(w.p - disc);
          pull = 0.05f;
          break;
      }
      w.turn = 0.85f * w.turn + draw.normal(0.0f, 0.045f);
      w.dir = normalized(rotated(w.dir, w.turn) + desired * pull);
      const Vec2 next = w.p + w.dir * kVesselStep;
      const float width_next = w.width * std::exp(-0.35f * kVesselStep);
      VesselSegment seg;
      seg.a = frame.to_pixels(w.p);
      seg.b = frame.to_pixels(next);
      seg.width_a = w.width * frame.radius;
      seg.width_b = width_next * frame.radius;
      seg.kind = w.kind;
      seg.beadable = w.beadable && w.depth <= 2 && w.s > 0.3f;
      seg.s_a = w.s * frame.radius;
      seg.s_b = (w.s + kVesselStep) * frame.radius;
      seg.bead_phase = w.bead_phase;
      segments.push_back(seg);
      w.p = next;
      w.width = width_next;
      w.s += kVesselStep;
      since_branch += kVesselStep;
      if (since_branch >= next_branch && w.depth < 6) {
        since_branch = 0.0f;
        next_branch = branch_spacing(w.width);
        Walker child = w;
        const float ratio = draw.uniform(0.4f, 0.75f);
        child.width = w.width * ratio;
        child.dir = rotated(w.dir, draw.sign() * draw.uniform(30.0f, 70.0f) * kDegree);
        child.steering = Steering::branch;
        child.depth = w.depth + 1;
        child.turn = 0.0f;
        child.bead_phase = draw.uniform(0.0f, 2.0f * kPi);
        w.width *= std::cbrt(1.0f - ratio * ratio * ratio);  // Murray's law
        stack.push_back(child);
      }
    }
  }
  return segments;
}

// ---- lesions ------------------------------------------------------------------------------------

struct LesionCounts {
  int ma = 0, he_dot = 0, he_blot = 0, he_large = 0, he_flame = 0, preretinal = 0;
  int ex_clusters = 0, se = 0, nv = 0;
  bool quadrants = false, beading = false;
};

inline LesionCounts lesion_counts(Draw& draw, int grade) {
  LesionCounts c;
  if (grade == 1) {
    c.ma = draw.between(1, 5);
  } else if (grade == 2) {
    c.ma = draw.between(3, 12);
    c.he_dot = draw.between(2, 6);
    c.he_blot = draw.between(1, 4);
    c.he_flame = draw.between(0, 2);
    c.ex_clusters = draw.between(0, 3);
    c.se = draw.chance(0.35f) ? draw.between(1, 2) : 0;
  } else if (grade >= 3) {
    c.ma = draw.between(8, 25);
    c.he_dot = draw.between(10, 20);
    c.he_blot = draw.between(8, 16);
    c.he_large = draw.between(1, 3);
    c.he_flame = draw.between(2, 5);
    c.ex_clusters = draw.between(1, 5);
    c.se = draw.between(2, 6);
    c.quadrants = true;
    c.beading = true;
    if (grade == 4) {
      c.nv = draw.between(1, 3);
      c.preretinal = draw.chance(0.7f) ? (draw.chance(0.25f) ? 2 : 1) : 0;
      c.beading = draw.chance(0.6f);
    }
  }
  return c;
}

class LesionPainter {
  using PainterBlob = FundusPainter::Blob;

 public:
  LesionPainter(FundusPainter& painter, Draw& draw, const Anatomy& anatomy, const EyeFrame& frame)
      : painter_(painter), draw_(draw), anatomy_(anatomy), frame_(frame), k_(painter.scale()) {}

  // A point of the posterior pole (eye units), away from the disc; in quadrant q (0..3 around the
  // fovea: bit 0 = nasal/temporal, bit 1 = inferior/superior) when q >= 0.
  Vec2 posterior_point(int quadrant = -1, float spread = 0.36f) {
    Vec2 p;
    for (int attempt = 0; attempt < 64; ++attempt) {
      if (quadrant < 0) {
        p = anatomy_.fovea + Vec2{0.12f + draw_.normal(0.0f, spread * 1.15f), draw_.normal(0.0f, spread)};
      } else {
        const float sx = (quadrant & 1) ? 1.0f : -1.0f, sy = (quadrant & 2) ? 1.0f : -1.0f;
        p = anatomy_.fovea + Vec2{sx * (0.04f + std::abs(draw_.normal(0.0f, spread * 1.2f))),
                                  sy * (0.04f + std::abs(draw_.normal(0.0f, spread)))};
      }
      if (length(p) <= 0.88f && length(p - anatomy_.disc) >= anatomy_.disc_radius * 1.35f) return p;
    }
    return anatomy_.fovea + Vec2{0.2f, 0.2f};
  }

  void irregular(PainterBlob& blob, float amount) {
    for (int k = 0; k < 3; ++k) {
      blob.amplitude[static_cast<std::size_t>(k)] = draw_.uniform(0.0f, amount / static_cast<float>(k + 1));
      blob.phase[static_cast<std::size_t>(k)] = draw_.uniform(0.0f, 2.0f * kPi);
    }
  }

  void paint(const PainterBlob& blob, const Tint& tint, LesionType type) {
    const int id = painter_.begin_lesion();
    std::int64_t area = 0;
    painter_.paint_blob(blob, tint, type, id, area);
    painter_.end_lesion(id, type, blob.centre, area);
  }

  // Microaneurysm: a sharp dark-red dot of radius 1-3 px (at 512 px), most near 1.
  void microaneurysm(Vec2 p) {
    PainterBlob b;
    b.centre = frame_.to_pixels(p);
    const float u = draw_.unit();
    b.radius = (1.0f + 2.0f * u * u) * k_;
    b.feather = 0.8f;
    b.opacity = draw_.uniform(0.8f, 1.0f);
    paint(b, Tint{false, {0.5f, 0.2f, 0.3f}}, LesionType::MA);
  }

  // Dot, blot or large blot haemorrhage (deep, round to irregular).
  void haemorrhage(Vec2 p, float radius_lo, float radius_hi, float irregularity) {
    PainterBlob b;
    b.centre = frame_.to_pixels(p);
    b.radius = draw_.uniform(radius_lo, radius_hi) * k_;
    b.aspect = draw_.uniform(1.0f, 1.5f);
    b.angle = draw_.uniform(0.0f, kPi);
    irregular(b, irregularity);
    b.feather = std::max(0.8f, 0.12f * b.radius);
    b.opacity = draw_.uniform(0.75f, 0.95f);
    paint(b, Tint{false, {0.55f, 0.22f, 0.3f}}, LesionType::HE);
  }

  // Flame haemorrhage: an elongated streak along the nerve fibres (radial from the disc), near it.
  void flame() {
    Vec2 p;
    for (int attempt = 0; attempt < 64; ++attempt) {
      const float angle = draw_.uniform(0.0f, 2.0f * kPi);
      p = anatomy_.disc + Vec2{std::cos(angle), std::sin(angle)} * draw_.uniform(0.2f, 0.55f);
      if (length(p) <= 0.88f) break;
    }
    PainterBlob b;
    b.centre = frame_.to_pixels(p);
    const float len = draw_.uniform(12.0f, 40.0f) * k_;
    b.radius = 0.5f * len;
    b.aspect = draw_.uniform(3.0f, 5.0f);
    const Vec2 d = frame_.direction_to_pixels(normalized(p - anatomy_.disc));
    b.angle = std::atan2(d.y, d.x);
    irregular(b, 0.15f);
    b.feather = std::max(1.0f, 0.15f * b.radius);
    b.opacity = draw_.uniform(0.7f, 0.9f);
    paint(b, Tint{false, {0.55f, 0.2f, 0.28f}}, LesionType::HE);
  }

  // Pre-retinal (sub-hyaloid) haemorrhage: a large dark pool with a flat top (a fluid level).
  void preretinal() {
    PainterBlob b;
    b.centre = frame_.to_pixels(posterior_point(-1, 0.3f));
    b.radius = draw_.uniform(25.0f, 55.0f) * k_;
    b.aspect = draw_.uniform(1.0f, 1.2f);
    irregular(b, 0.08f);
    b.feather = std::max(1.0f, 0.05f * b.radius);
    b.flat_top = draw_.uniform(-0.6f, 0.0f);
    b.opacity = 0.85f;
    b.bottom_darkening = 0.25f;
    paint(b, Tint{false, {0.42f, 0.1f, 0.16f}}, LesionType::HE);
  }

  // A cluster of hard exudates: waxy yellow spots, in a ring (circinate) or a heap, maybe a plaque.
  void exudate_cluster(float plaque_chance, int spots_lo, int spots_hi) {
    const Vec2 centre = posterior_point(-1, 0.26f);
    const Vec2 c_px = frame_.to_pixels(centre);
    const int spots = draw_.between(spots_lo, spots_hi);
    const bool ring = draw_.chance(0.4f);
    const float ring_radius = draw_.uniform(10.0f, 35.0f) * k_;
    const float spread = draw_.uniform(5.0f, 20.0f) * k_;
    const Tint tint{true, {draw_.uniform(0.92f, 1.0f), draw_.uniform(0.78f, 0.88f), draw_.uniform(0.42f, 0.55f)}};
    if (draw_.chance(plaque_chance)) {
      PainterBlob b;
      b.centre = c_px;
      b.radius = draw_.uniform(4.0f, 10.0f) * k_;
      b.aspect = draw_.uniform(1.0f, 1.8f);
      b.angle = draw_.uniform(0.0f, kPi);
      irregular(b, 0.35f);
      b.feather = 1.0f;
      b.opacity = draw_.uniform(0.65f, 0.85f);
      paint(b, tint, LesionType::EX);
    }
    for (int i = 0; i < spots; ++i) {
      PainterBlob b;
      if (ring) {
        const float a = draw_.uniform(0.0f, 2.0f * kPi);
        b.centre = c_px + Vec2{std::cos(a), std::sin(a)} * (ring_radius + draw_.normal(0.0f, 2.0f * k_));
      } else {
        b.centre = c_px + Vec2{draw_.normal(0.0f, spread), draw_.normal(0.0f, spread)};
      }
      const float u = draw_.unit();
      b.radius = (1.0f + 3.5f * u * u) * k_;
      b.aspect = draw_.uniform(1.0f, 1.4f);
      b.angle = draw_.uniform(0.0f, kPi);
      irregular(b, 0.2f);
      b.feather = 0.8f;
      b.opacity = draw_.uniform(0.6f, 0.9f);
      paint(b, tint, LesionType::EX);
    }
  }

  // Cotton-wool spot: a pale, fluffy, soft-edged patch near the disc along the arcades.
  void cotton_wool() {
    Vec2 p;
    for (int attempt = 0; attempt < 64; ++attempt) {
      const float angle = draw_.sign() * draw_.uniform(40.0f, 150.0f) * kDegree;
      p = anatomy_.disc + Vec2{std::cos(angle), std::sin(angle)} * draw_.uniform(0.25f, 0.7f);
      if (length(p) <= 0.85f && length(p - anatomy_.fovea) > 0.12f) break;
    }
    PainterBlob b;
    b.centre = frame_.to_pixels(p);
    b.radius = draw_.uniform(5.0f, 15.0f) * k_;
    b.aspect = draw_.uniform(1.0f, 1.7f);
    b.angle = draw_.uniform(0.0f, kPi);
    irregular(b, 0.3f);
    b.feather = 0.45f * b.radius + 0.5f;
    b.opacity = draw_.uniform(0.6f, 0.8f);
    b.mask_level = 0.5f;
    paint(b, Tint{true, {0.94f, 0.84f, 0.68f}}, LesionType::SE);
  }

  // A new-vessel complex: fine tortuous loops with feeders, on the disc (NVD) or by a vessel (NVE).
  // Its segments are appended to `neo` for painting with the vessels; its mask pixels are marked now.
  void new_vessels(const std::vector<VesselSegment>& tree, std::vector<VesselSegment>& neo) {
    Vec2 c_px;
    if (draw_.chance(0.5f) || tree.empty()) {
      const float a = draw_.uniform(0.0f, 2.0f * kPi);
      c_px = frame_.to_pixels(anatomy_.disc + Vec2{std::cos(a), std::sin(a)} * anatomy_.disc_radius *
                                                 draw_.uniform(0.0f, 1.3f));
    } else {
      const VesselSegment* seg = &tree.front();
      for (int attempt = 0; attempt < 64; ++attempt) {
        seg = &tree[static_cast<std::size_t>(draw_.between(0, static_cast<int>(tree.size()) - 1))];
        if (seg->width_a > 0.007f * frame_.radius && seg->s_a > 0.3f * frame_.radius) break;
      }
      c_px = seg->a + Vec2{draw_.normal(0.0f, 4.0f * k_), draw_.normal(0.0f, 4.0f * k_)};
    }
    const int id = painter_.begin_lesion();
    std::int64_t area = 0;
    const float spread = draw_.uniform(6.0f, 16.0f) * k_;
    const int loops = draw_.between(3, 7);
    auto add = [&](Vec2 a, Vec2 b, float width) {
      VesselSegment s;
      s.a = a;
      s.b = b;
      s.width_a = s.width_b = width;
      s.kind = VesselKind::neo;
      painter_.rasterise_segment(s, width, width, [&](std::size_t, int x, int y, float, bool inside, float, float) {
        if (inside) painter_.mark(x, y, id, LesionType::NV, area);
      });
      neo.push_back(s);
    };
    for (int l = 0; l < loops; ++l) {
      const Vec2 centre = c_px + Vec2{draw_.normal(0.0f, spread), draw_.normal(0.0f, spread)};
      const float radius = draw_.uniform(3.0f, 10.0f) * k_;
      const float width = draw_.uniform(0.9f, 1.6f) * k_;
      std::array<float, 3> amp{}, phase{};
      for (int k = 0; k < 3; ++k) {
        amp[static_cast<std::size_t>(k)] = draw_.uniform(0.0f, 0.35f / static_cast<float>(k + 1));
        phase[static_cast<std::size_t>(k)] = draw_.uniform(0.0f, 2.0f * kPi);
      }
      const int points = 20;
      const float start = draw_.uniform(0.0f, 2.0f * kPi);
      Vec2 prev;
      for (int i = 0; i <= points; ++i) {
        const float t = start + 2.0f * kPi * static_cast<float>(i) / points;
        float r = radius;
        for (int k = 0; k < 3; ++k)
          r *= 1.0f + amp[static_cast<std::size_t>(k)] *
                          std::cos(static_cast<float>(k + 2) * t + phase[static_cast<std::size_t>(k)]);
        const Vec2 q = centre + Vec2{std::cos(t), std::sin(t)} * r;
        if (i > 0) add(prev, q, width);
        prev = q;
      }
      // a feeder from the complex centre to the loop, tortuous
      Vec2 p = c_px;
      const Vec2 target = centre;
      Vec2 dir = normalized(target - p);
      const float step = 1.5f * k_;
      for (int i = 0; i < 60 && length(target - p) > step; ++i) {
        dir = normalized(rotated(dir, draw_.normal(0.0f, 0.5f)) + normalized(target - p) * 0.6f);
        const Vec2 q = p + dir * step;
        add(p, q, width);
        p = q;
      }
    }
    painter_.end_lesion(id, LesionType::NV, c_px, area);
  }

 private:
  FundusPainter& painter_;
  Draw& draw_;
  const Anatomy& anatomy_;
  const EyeFrame& frame_;
  float k_;
};

// Separable Gaussian blur of one plane, edges clamped.
inline void gaussian_blur_plane(float* data, int size, float sigma, std::vector<float>& scratch) {
  const int radius = std::max(1, static_cast<int>(std::ceil(3.0f * sigma)));
  std::vector<float> kernel(static_cast<std::size_t>(2 * radius + 1));
  float total = 0.0f;
  for (int i = -radius; i <= radius; ++i) {
    kernel[static_cast<std::size_t>(i + radius)] = std::exp(-0.5f * static_cast<float>(i * i) / (sigma * sigma));
    total += kernel[static_cast<std::size_t>(i + radius)];
  }
  for (float& k : kernel) k /= total;
  const std::size_t n = static_cast<std::size_t>(size);
  scratch.resize(n * n);
  std::vector<float> padded(n + 2 * static_cast<std::size_t>(radius));
  for (int y = 0; y < size; ++y) {
    const float* row = data + static_cast<std::size_t>(y) * n;
    std::fill(padded.begin(), padded.begin() + radius, row[0]);
    std::copy(row, row + n, padded.begin() + radius);
    std::fill(padded.begin() + radius + size, padded.end(), row[n - 1]);
    float* out = scratch.data() + static_cast<std::size_t>(y) * n;
    for (int x = 0; x < size; ++x) {
      const float* p = padded.data() + x;
      float acc = 0.0f;
      for (std::size_t i = 0; i < kernel.size(); ++i) acc += kernel[i] * p[i];
      out[x] = acc;
    }
  }
  for (int y = 0; y < size; ++y) {
    float* out = data + static_cast<std::size_t>(y) * n;
    std::fill(out, out + n, 0.0f);
    for (int i = -radius; i <= radius; ++i) {
      const float w = kernel[static_cast<std::size_t>(i + radius)];
      const float* src = scratch.data() + static_cast<std::size_t>(std::clamp(y + i, 0, size - 1)) * n;
      for (std::size_t x = 0; x < n; ++x) out[x] += w * src[x];
    }
  }
}

// A sum of two 16-bit uniforms, centred and scaled to unit variance (a cheap, bounded normal).
inline float triangular_noise(std::uint32_t bits) {
  const float a = static_cast<float>(bits & 0xffffu) * (1.0f / 65536.0f);
  const float b = static_cast<float>(bits >> 16) * (1.0f / 65536.0f);
  return (a + b - 1.0f) * 2.4494897f;
}

}  // namespace detail

// generate_fundus: synthetic fundus image `index` of the data set `config.seed`, showing ICDR `grade`.
//   requires: config.size in [32, 8192]; grade in 0..4; index >= 0.
//   ensures: image (3, S, S) in [0, 1], 0 outside the FOV circle; masks (6, S, S) in {0, 1} and 0
//            outside the FOV; the OD mask is never empty; every MA/HE/EX/SE/NV mask is empty at grade 0
//            and the MA mask is non-empty at grades >= 1; the eye is synthetic_eye(index); the result
//            depends only on (config, index, grade), bitwise, on any thread.
// Sizes quoted at 512 px (they scale with S): microaneurysms 1-3 px radius; dot haemorrhages 2.5-5,
// blots 5-11, large blots 12-26 px radius; flame haemorrhages 12-40 px long; pre-retinal
// haemorrhages 25-55 px radius; exudate spots 1-4.5 px, plaques 4-10 px; cotton-wool spots 5-15 px.
inline SyntheticFundus generate_fundus(const SyntheticConfig& config, std::int64_t index, int grade) {
  using namespace detail;
  FOVEA_CHECK(config.size >= 32 && config.size <= 8192, "generate_fundus: size ", config.size,
              " outside [32, 8192]");
  FOVEA_CHECK(grade >= 0 && grade <= 4, "generate_fundus: grade ", grade, " outside the ICDR scale 0..4");
  FOVEA_CHECK(index >= 0, "generate_fundus: negative index ", index);
  const int size = config.size;
  const float fsize = static_cast<float>(size);
  const std::size_t plane = static_cast<std::size_t>(size) * static_cast<std::size_t>(size);

  SyntheticFundus out;
  out.grade = grade;
  out.eye = synthetic_eye(index);
  out.image = Tensor(Shape{3, size, size});                 // (3, S, S)
  out.masks = Tensor(Shape{kLesionTypeCount, size, size});  // (6, S, S)
  std::fill(out.masks.data(), out.masks.data() + out.masks.numel(), 0.0f);

  Draw scene(synthetic_key(config.seed, index, kStreamScene));
  Draw camera(synthetic_key(config.seed, index, kStreamCamera));
  const bool vary = config.camera_variation;

  // Camera: field of view, rotation, exposure, colour cast, gamma, illumination, blur, noise. All
  // drawn whether used or not, so switching camera_variation off changes nothing else.
  FOVEA_CHECK(config.site >= 0 && config.site < kSyntheticSites, "generate_fundus: site ", config.site,
              " is not a synthetic camera site (0 or 1)");
  float fov_scale = camera.uniform(0.455f, 0.49f);
  const float fov_dx = camera.normal(0.0f, 0.006f), fov_dy = camera.normal(0.0f, 0.006f);
  const float rotation = camera.uniform(-10.0f, 10.0f) * kDegree;
  float exposure = camera.uniform(0.82f, 1.15f);
  std::array<float, 3> cast{camera.normal(1.0f, 0.06f), camera.normal(1.0f, 0.06f),
                            camera.normal(1.0f, 0.08f)};
  float gamma = camera.uniform(0.85f, 1.15f);
  float vignette = camera.uniform(0.35f, 0.6f);
  const float tilt_x = camera.uniform(-0.12f, 0.12f), tilt_y = camera.uniform(-0.12f, 0.12f);
  bool blurred = camera.chance(0.55f);
  float blur_sigma = camera.uniform(0.3f, 1.6f);
  float noise_sigma = camera.uniform(0.004f, 0.02f);
  if (config.site == 1) {  // the second site's camera (SyntheticConfig::site)
    fov_scale *= 0.92f;
    exposure *= 0.8f;
    gamma *= 1.15f;
    cast[0] *= 0.88f, cast[1] *= 1.05f, cast[2] *= 1.35f;
    vignette += 0.2f;
    blurred = true;
    blur_sigma *= 1.4f;
    noise_sigma *= 2.0f;
  }

  EyeFrame frame;
  frame.cx = fsize * (0.5f + (vary ? fov_dx : 0.0f));
  frame.cy = fsize * (0.5f + (vary ? fov_dy : 0.0f));
  frame.radius = fsize * (vary ? fov_scale : 0.47f);
  frame.cos_a = std::cos(vary ? rotation : 0.0f);
  frame.sin_a = std::sin(vary ? rotation : 0.0f);
  frame.mirror = out.eye == Eye::left;
  const float k = frame.radius / 240.0f;

  // Anatomy (eye frame): fovea near the centre, the disc 2.5 disc diameters nasal and a bit higher.
  Anatomy anatomy;
  anatomy.disc_radius = scene.uniform(0.12f, 0.15f);
  anatomy.disc_aspect = scene.uniform(1.02f, 1.15f);
  anatomy.cup_ratio = scene.uniform(0.25f, 0.5f);
  anatomy.fovea = Vec2{scene.normal(-0.06f, 0.025f), scene.normal(0.03f, 0.02f)};
  anatomy.disc = anatomy.fovea + Vec2{2.0f * anatomy.disc_radius * scene.uniform(2.2f, 2.6f), scene.normal(-0.06f, 0.025f)};
  anatomy.macula_sigma = scene.uniform(0.13f, 0.18f);
  const std::array<float, 3> base{scene.uniform(0.70f, 0.86f), scene.uniform(0.30f, 0.44f), scene.uniform(0.12f, 0.24f)};
  const float texture_strength = scene.uniform(0.5f, 1.3f);
  const std::array<float, 3> rim{scene.uniform(1.1f, 1.2f), scene.uniform(0.86f, 0.98f), scene.uniform(0.5f, 0.64f)};
  const float macula_depth = scene.uniform(0.25f, 0.45f);

  const Vec2 fovea_px = frame.to_pixels(anatomy.fovea), disc_px = frame.to_pixels(anatomy.disc);
  out.fov_x = frame.cx;
  out.fov_y = frame.cy;
  out.fov_radius = frame.radius;
  out.disc_x = disc_px.x;
  out.disc_y = disc_px.y;
  out.disc_radius = anatomy.disc_radius * frame.radius;
  out.fovea_x = fovea_px.x;
  out.fovea_y = fovea_px.y;

  FundusPainter painter(out, size, frame);
  float* red = painter.plane(0);
  float* green = painter.plane(1);
  float* blue = painter.plane(2);

  // Background: base colour with choroidal texture, the macula and the fovea.
  {
    Draw texture(synthetic_key(config.seed, index, kStreamTexture));
    const ValueNoise coarse(texture, 0.22f * frame.radius, size), medium(texture, 0.07f * frame.radius, size),
        fine(texture, 0.025f * frame.radius, size);
    const float ms2 = 1.0f / (2.0f * std::pow(anatomy.macula_sigma * frame.radius, 2.0f));
    const float fs2 = 1.0f / (2.0f * std::pow(0.03f * frame.radius, 2.0f));
    for (int y = 0; y < size; ++y) {
      const float py = static_cast<float>(y) + 0.5f;
      for (int x = 0; x < size; ++x) {
        const float px = static_cast<float>(x) + 0.5f;
        const float c = coarse.at(px, py), m = medium.at(px, py), f = fine.at(px, py);
        const float t = texture_strength * (0.07f * c + 0.045f * m + 0.03f * f);
        const float dx = px - fovea_px.x, dy = py - fovea_px.y;
        const float d2 = dx * dx + dy * dy;
        const float mac = macula_depth * std::exp(-d2 * ms2), fov = 0.25f * std::exp(-d2 * fs2);
        const std::size_t i = static_cast<std::size_t>(y) * static_cast<std::size_t>(size) + static_cast<std::size_t>(x);
        red[i] = base[0] * (1.0f + t) * (1.0f - 0.45f * mac - 0.3f * fov);
        green[i] = base[1] * (1.0f + 1.3f * t + 0.02f * c) * (1.0f - mac - fov);
        blue[i] = base[2] * (1.0f + 1.1f * t) * (1.0f - 0.8f * mac - fov);
      }
    }
  }

  // Optic disc: a bright, slightly tall ellipse with a soft edge and a paler cup offset temporally.
  {
    const float rx = anatomy.disc_radius * frame.radius, ry = rx * anatomy.disc_aspect;
    const float cup = anatomy.cup_ratio;
    const Vec2 cup_px = frame.to_pixels(anatomy.disc + Vec2{-0.15f * anatomy.disc_radius, 0.0f});
    const float edge = std::max(0.08f, 1.2f / rx);
    const int x0 = std::max(0, static_cast<int>(disc_px.x - ry - 3)), x1 = std::min(size - 1, static_cast<int>(disc_px.x + ry + 3));
    const int y0 = std::max(0, static_cast<int>(disc_px.y - ry - 3)), y1 = std::min(size - 1, static_cast<int>(disc_px.y + ry + 3));
    float* od = painter.mask(LesionType::OD);
    const Tint rim_tint{true, rim};
    const Tint cup_tint{true, {1.0f, 0.95f, 0.72f}};
    for (int y = y0; y <= y1; ++y) {
      for (int x = x0; x <= x1; ++x) {
        const float px = static_cast<float>(x) + 0.5f, py = static_cast<float>(y) + 0.5f;
        const float ex = (px - disc_px.x) / rx, ey = (py - disc_px.y) / ry;
        const float e = std::sqrt(ex * ex + ey * ey);
        const float alpha = smoothstep(1.0f + edge, 1.0f - edge, e);
        if (alpha <= 0.0f) continue;
        const std::size_t i = static_cast<std::size_t>(y) * static_cast<std::size_t>(size) + static_cast<std::size_t>(x);
        painter.apply_tint(i, alpha, rim_tint);
        const float cx = (px - cup_px.x) / (rx * cup), cy = (py - cup_px.y) / (ry * cup);
        const float cup_alpha = smoothstep(1.3f, 0.6f, std::sqrt(cx * cx + cy * cy));
        if (cup_alpha > 0.0f) painter.apply_tint(i, cup_alpha * 0.9f, cup_tint);
        if (e <= 1.0f && painter.in_fov(x, y)) od[i] = 1.0f;
      }
    }
    // A tiny disc always covers its centre pixel.
    const int cx = std::clamp(static_cast<int>(disc_px.x), 0, size - 1), cy = std::clamp(static_cast<int>(disc_px.y), 0, size - 1);
    if (painter.in_fov(cx, cy)) od[static_cast<std::size_t>(cy) * static_cast<std::size_t>(size) + static_cast<std::size_t>(cx)] = 1.0f;
  }

  Draw vessel_draw(synthetic_key(config.seed, index, kStreamVessels));
  const std::vector<VesselSegment> tree = grow_vessels(vessel_draw, anatomy, frame);

  Draw lesion_draw(synthetic_key(config.seed, index, kStreamLesions));
  const LesionCounts counts = lesion_counts(lesion_draw, grade);
  LesionPainter lesions(painter, lesion_draw, anatomy, frame);

  // Deep lesions, under the vessels: microaneurysms, dot and blot haemorrhages, hard exudates.
  for (int i = 0; i < counts.ma; ++i) lesions.microaneurysm(lesions.posterior_point(-1, 0.3f));
  for (int i = 0; i < counts.he_dot; ++i)
    lesions.haemorrhage(lesions.posterior_point(counts.quadrants ? i % 4 : -1), 2.5f, 5.0f, 0.15f);
  for (int i = 0; i < counts.he_blot; ++i)
    lesions.haemorrhage(lesions.posterior_point(counts.quadrants ? (i + 2) % 4 : -1), 5.0f, 11.0f, 0.35f);
  for (int i = 0; i < counts.he_large; ++i) lesions.haemorrhage(lesions.posterior_point(i % 4), 12.0f, 26.0f, 0.4f);
  for (int i = 0; i < counts.ex_clusters; ++i)
    lesions.exudate_cluster(grade >= 3 ? 0.5f : 0.3f, grade >= 3 ? 6 : 4, grade >= 3 ? 30 : 18);

  // Vessels: veins darker and more saturated than arteries; arteries show a central light reflex;
  // veins beaded in severe DR. Accumulated as per-kind opacity, then applied once.
  std::vector<float> artery_alpha(plane, 0.0f), vein_alpha(plane, 0.0f), neo_alpha(plane, 0.0f);
  const float bead_length = 0.045f * frame.radius;
  for (const VesselSegment& seg : tree) {
    float wa = seg.width_a, wb = seg.width_b;
    if (counts.beading && seg.beadable) {
      wa *= 1.0f + 0.55f * std::max(0.0f, std::sin(2.0f * kPi * seg.s_a / bead_length + seg.bead_phase));
      wb *= 1.0f + 0.55f * std::max(0.0f, std::sin(2.0f * kPi * seg.s_b / bead_length + seg.bead_phase));
    }
    const bool artery = seg.kind == VesselKind::artery;
    std::vector<float>& target = artery ? artery_alpha : vein_alpha;
    painter.rasterise_segment(seg, wa, wb, [&](std::size_t i, int, int, float alpha, bool, float dist, float half) {
      if (artery && half > 1.2f) alpha *= 1.0f - 0.45f * std::exp(-(dist * dist) / (0.1f * half * half));
      target[i] = std::max(target[i], alpha);
    });
  }

  // Superficial lesions, over the vessels: flame and pre-retinal haemorrhages, cotton-wool spots, new vessels.
  std::vector<VesselSegment> neo;
  for (int i = 0; i < counts.nv; ++i) lesions.new_vessels(tree, neo);
  for (const VesselSegment& seg : neo)
    painter.rasterise_segment(seg, seg.width_a, seg.width_b, [&](std::size_t i, int, int, float alpha, bool, float, float) {
      neo_alpha[i] = std::max(neo_alpha[i], alpha);
    });
  for (std::size_t i = 0; i < plane; ++i) {
    const float a = artery_alpha[i], v = vein_alpha[i], n = neo_alpha[i];
    if (a + v + n == 0.0f) continue;
    red[i] *= (1.0f - 0.3f * a) * (1.0f - 0.45f * v) * (1.0f - 0.35f * n);
    green[i] *= (1.0f - 0.45f * a) * (1.0f - 0.68f * v) * (1.0f - 0.6f * n);
    blue[i] *= (1.0f - 0.3f * a) * (1.0f - 0.5f * v) * (1.0f - 0.45f * n);
  }
  for (int i = 0; i < counts.he_flame; ++i) lesions.flame();
  for (int i = 0; i < counts.se; ++i) lesions.cotton_wool();
  for (int i = 0; i < counts.preretinal; ++i) lesions.preretinal();

  // Camera: illumination fall-off and tilt, exposure, colour cast, gamma, blur, noise, FOV mask.
  const float e = vary ? exposure : 1.0f;
  const std::array<float, 3> gain{vary ? cast[0] * e : 1.0f, vary ? cast[1] * e : 1.0f, vary ? cast[2] * e : 1.0f};
  const float vig = vary ? vignette : 0.45f;
  const float tx = vary ? tilt_x : 0.0f, ty = vary ? tilt_y : 0.0f;
  const float inv_r = 1.0f / frame.radius;
  for (int y = 0; y < size; ++y) {
    const float ny = (static_cast<float>(y) + 0.5f - frame.cy) * inv_r;
    for (int x = 0; x < size; ++x) {
      const float nx = (static_cast<float>(x) + 0.5f - frame.cx) * inv_r;
      const float r2 = std::min(nx * nx + ny * ny, 1.2f);
      const float fall = std::max(0.0f, 1.0f - vig * r2 * std::sqrt(r2)) * (1.0f + tx * nx + ty * ny);
      const std::size_t i = static_cast<std::size_t>(y) * static_cast<std::size_t>(size) + static_cast<std::size_t>(x);
      red[i] *= gain[0] * fall;
      green[i] *= gain[1] * fall * fall;
      blue[i] *= gain[2] * fall * fall;
    }
  }
  if (vary && blurred) {
    std::vector<float> scratch;
    for (int c = 0; c < 3; ++c) gaussian_blur_plane(painter.plane(c), size, blur_sigma * k * 2.0f, scratch);
  }
  std::array<float, 1024> gamma_lut{};
  const float g = vary ? gamma : 1.0f;
  for (std::size_t j = 0; j < gamma_lut.size(); ++j)
    gamma_lut[j] = std::pow(static_cast<float>(j) / static_cast<float>(gamma_lut.size() - 1), g);
  const RandomKey noise_key = synthetic_key(config.seed, index, kStreamNoise);
  const float sigma = vary ? noise_sigma : 0.006f;
  const float edge_r = frame.radius;
  for (int y = 0; y < size; ++y) {
    for (int x = 0; x < size; ++x) {
      const std::size_t i = static_cast<std::size_t>(y) * static_cast<std::size_t>(size) + static_cast<std::size_t>(x);
      const float dx = static_cast<float>(x) + 0.5f - frame.cx, dy = static_cast<float>(y) + 0.5f - frame.cy;
      const float fov = std::clamp(edge_r - std::sqrt(dx * dx + dy * dy) + 0.5f, 0.0f, 1.0f);
      if (fov <= 0.0f) {
        red[i] = green[i] = blue[i] = 0.0f;
        for (int t = 0; t < kLesionTypeCount; ++t) painter.mask(static_cast<LesionType>(t))[i] = 0.0f;
        continue;
      }
      const U32x4 bits = random_block(noise_key, static_cast<std::uint32_t>(i));
      const float shared = triangular_noise(bits.v[3]);
      float* c[3] = {red + i, green + i, blue + i};
      for (int ch = 0; ch < 3; ++ch) {
        const float v = std::clamp(*c[ch] + sigma * (0.6f * shared + 0.8f * triangular_noise(bits.v[ch])), 0.0f, 1.0f);
        const float pos = v * static_cast<float>(gamma_lut.size() - 1);
        const std::size_t j = std::min(static_cast<std::size_t>(pos), gamma_lut.size() - 2);
        const float frac = pos - static_cast<float>(j);
        *c[ch] = fov * (gamma_lut[j] + frac * (gamma_lut[j + 1] - gamma_lut[j]));
      }
      if (fov < 1.0f && dx * dx + dy * dy > edge_r * edge_r)
        for (int t = 0; t < kLesionTypeCount; ++t) painter.mask(static_cast<LesionType>(t))[i] = 0.0f;
    }
  }
  return out;
}

}  // namespace fovea::data
