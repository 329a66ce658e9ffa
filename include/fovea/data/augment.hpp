// fovea/data/augment.hpp: augmentation pipelines for training: AugmentConfig and its presets (SimCLR,
// MoCo v2, supervised training, test), per-sample parameter drawing from Philox in torchvision's way,
// augment_batch for one view of a batch, and TwoViewAugmenter for contrastive pairs.
//
// Replay: the parameters of (seed, epoch, sample, view) are a pure function of the key
// RandomKey{seed, kPurposeAugment, epoch, sample, view}: draw j of that stream is uniform(key, j) at
// a fixed slot per decision (below), so any sample's augmentation in any epoch can be redrawn, and
// changing one probability never shifts the draws of another decision.
//   slots 0..39   RandomResizedCrop: attempt a uses 4a (scale), 4a+1 (log ratio), 4a+2 (top), 4a+3 (left)
//   40 hflip, 41 vflip, 42 rotation angle
//   43 jitter applied, 44..47 brightness, contrast, saturation, hue factors, 48..50 the permutation
//   51 grayscale, 52 blur applied, 53 blur sigma, 54 solarize
#pragma once

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "fovea/core/random.hpp"
#include "fovea/core/tensor.hpp"
#include "fovea/ops/augment.hpp"

namespace fovea::data {

// The random transforms of one view, with torchvision's parameter names and semantics.
struct AugmentConfig {
  int output_size = 224;  // S: views are (3, S, S)
  // RandomResizedCrop(S, scale, ratio); with random_crop false, the deterministic centre crop of
  // side round(center_crop_fraction * min(H, W)) resampled to S (Resize + CenterCrop on a cached
  // image: 0.875 = 224 / 256).
  bool random_crop = true;
  float scale_min = 0.08f, scale_max = 1.0f;
  float ratio_min = 3.0f / 4.0f, ratio_max = 4.0f / 3.0f;
  float center_crop_fraction = 0.875f;
  float hflip_p = 0.0f, vflip_p = 0.0f;
  float rotation_degrees = 0.0f;  // angle ~ U(-d, d), counter-clockwise, zero fill
  // RandomApply(ColorJitter(brightness, contrast, saturation, hue), p = jitter_p): brightness,
  // contrast and saturation factors ~ U(max(0, 1 - v), 1 + v), hue ~ U(-h, h); an op of strength 0
  // is skipped; the four ops run in a random permutation.
  float jitter_p = 0.0f;
  float brightness = 0.0f, contrast = 0.0f, saturation = 0.0f, hue = 0.0f;
  float grayscale_p = 0.0f;
  // RandomApply(GaussianBlur(k, (sigma_min, sigma_max)), p = blur_p); k = blur_kernel_size, or when
  // 0, int(blur_kernel_fraction * S) made odd (SimCLR: 10 % of the side).
  float blur_p = 0.0f;
  float blur_sigma_min = 0.1f, blur_sigma_max = 2.0f;
  int blur_kernel_size = 0;
  float blur_kernel_fraction = 0.1f;
  float solarize_p = 0.0f, solarize_threshold = 0.5f;
  ChannelStats stats = kDrStats;  // Normalize(mean, std); kIdentityStats to skip

  // The blur kernel size for this config (odd, >= 1).
  int blur_kernel() const {
    const int k =
        blur_kernel_size > 0 ? blur_kernel_size : static_cast<int>(blur_kernel_fraction * output_size);
    return k % 2 == 0 ? k + 1 : k;
  }
};

// SimCLR (Chen et al. 2020) as users know it: crop scale 0.08-1, flip 0.5, jitter (0.8, 0.8, 0.8,
// 0.2) with p 0.8, grayscale 0.2, blur sigma U(0.1, 2) with kernel 10 % of the side, p 0.5.
inline AugmentConfig simclr(int output_size = 224, ChannelStats stats = kDrStats) {
  AugmentConfig c;
  c.output_size = output_size;
  c.scale_min = 0.08f;
  c.hflip_p = 0.5f;
  c.jitter_p = 0.8f;
  c.brightness = c.contrast = c.saturation = 0.8f;
  c.hue = 0.2f;
  c.grayscale_p = 0.2f;
  c.blur_p = 0.5f;
  c.stats = stats;
  return c;
}

// MoCo v2 (the study's augmentations): crop scale 0.2-1, jitter (0.4, 0.4, 0.4, 0.1) with p 0.8,
// grayscale 0.2, blur sigma U(0.1, 2) p 0.5, flip 0.5.
inline AugmentConfig moco_v2(int output_size = 224, ChannelStats stats = kDrStats) {
  AugmentConfig c = simclr(output_size, stats);
  c.scale_min = 0.2f;
  c.brightness = c.contrast = c.saturation = 0.4f;
  c.hue = 0.1f;
  return c;
}

// Supervised training: RandomResizedCrop(S) (scale 0.08-1) and horizontal flip 0.5.
inline AugmentConfig supervised_train(int output_size = 224, ChannelStats stats = kDrStats) {
  AugmentConfig c;
  c.output_size = output_size;
  c.hflip_p = 0.5f;
  c.stats = stats;
  return c;
}

// Test: the centre crop (0.875 of the shorter side) resampled to S; no randomness.
inline AugmentConfig test_transform(int output_size = 224, ChannelStats stats = kDrStats) {
  AugmentConfig c;
  c.output_size = output_size;
  c.random_crop = false;
  c.stats = stats;
  return c;
}

// check_config: throws fovea::Error unless every field is in range.
inline void check_config(const AugmentConfig& c);

// The contrastive presets by name, for command lines and configuration files:
//   simclr, moco_v2  the two above;
//   fundus           MoCo v2's crops (scale 0.2-1), flips, blur and weak photometric jitter
//                    (brightness 0.2, contrast 0.2, saturation 0.1, no hue, no grayscale): the colour
//                    ops as strong as a fundus camera's exposure and white balance vary, no more
//                    (docs/augmentations.md, "Contrastive augmentations on fundus images");
//   crop             RandomResizedCrop (scale 0.08-1) and horizontal flip only.
// Throws fovea::Error naming the known presets for any other name.
inline AugmentConfig augment_preset(std::string_view name, int output_size = 224,
                                    ChannelStats stats = kDrStats) {
  if (name == "simclr") return simclr(output_size, stats);
  if (name == "moco_v2") return moco_v2(output_size, stats);
  if (name == "fundus") {
    AugmentConfig c = moco_v2(output_size, stats);
    c.brightness = c.contrast = 0.2f;
    c.saturation = 0.1f;
    c.hue = 0.0f;
    c.grayscale_p = 0.0f;
    return c;
  }
  if (name == "crop") return supervised_train(output_size, stats);
  FOVEA_FAIL("augmentation preset '", std::string(name), "' is not one of simclr, moco_v2, fundus, crop");
}

namespace detail {
// The float settings of an AugmentConfig by their field names (parse_augment, describe_augment).
struct AugmentKey {
  const char* name;
  float AugmentConfig::*field;
};
inline constexpr AugmentKey kAugmentKeys[] = {
    {"scale_min", &AugmentConfig::scale_min},
    {"scale_max", &AugmentConfig::scale_max},
    {"ratio_min", &AugmentConfig::ratio_min},
    {"ratio_max", &AugmentConfig::ratio_max},
    {"hflip_p", &AugmentConfig::hflip_p},
    {"vflip_p", &AugmentConfig::vflip_p},
    {"rotation_degrees", &AugmentConfig::rotation_degrees},
    {"jitter_p", &AugmentConfig::jitter_p},
    {"brightness", &AugmentConfig::brightness},
    {"contrast", &AugmentConfig::contrast},
    {"saturation", &AugmentConfig::saturation},
    {"hue", &AugmentConfig::hue},
    {"grayscale_p", &AugmentConfig::grayscale_p},
    {"blur_p", &AugmentConfig::blur_p},
    {"blur_sigma_min", &AugmentConfig::blur_sigma_min},
    {"blur_sigma_max", &AugmentConfig::blur_sigma_max},
    {"blur_kernel_fraction", &AugmentConfig::blur_kernel_fraction},
    {"solarize_p", &AugmentConfig::solarize_p},
    {"solarize_threshold", &AugmentConfig::solarize_threshold},
};
}  // namespace detail

// An augmentation from text: "PRESET", "PRESET,key=value,..." or "key=value,..." (then the keys
// change `base`, e.g. the method's own preset). Keys are the AugmentConfig field names of
// detail::kAugmentKeys (scale_min, hue, grayscale_p, ...). output_size, stats and the blur kernel's
// size come from `base`.
//   ensures: check_config passes on the result; an unknown preset or key, a malformed or
//            non-finite value, a repeated key or an out-of-range setting throws fovea::Error naming it.
inline AugmentConfig parse_augment(std::string_view text, const AugmentConfig& base) {
  AugmentConfig c = base;
  std::vector<std::string> seen;
  std::size_t start = 0;
  bool first = true;
  while (start <= text.size()) {
    const std::size_t comma = std::min(text.find(',', start), text.size());
    std::string item(text.substr(start, comma - start));
    const auto trim = [](std::string s) {
      const auto b = s.find_first_not_of(" \t"), e = s.find_last_not_of(" \t");
      return b == std::string::npos ? std::string() : s.substr(b, e - b + 1);
    };
    item = trim(item);
    FOVEA_CHECK(!item.empty(), "augmentation '", std::string(text),
                "': an empty item (expected PRESET or key=value, comma-separated)");
    const std::size_t eq = item.find('=');
    if (eq == std::string::npos) {
      FOVEA_CHECK(first, "augmentation '", std::string(text), "': '", item,
                  "' is not key=value (a preset name can only come first)");
      c = augment_preset(item, base.output_size, base.stats);
      c.blur_kernel_size = base.blur_kernel_size;
    } else {
      const std::string key = trim(item.substr(0, eq)), value = trim(item.substr(eq + 1));
      const auto* k = std::find_if(std::begin(detail::kAugmentKeys), std::end(detail::kAugmentKeys),
                                   [&](const detail::AugmentKey& x) { return key == x.name; });
      if (k == std::end(detail::kAugmentKeys)) {
        std::string known;
        for (const auto& x : detail::kAugmentKeys) known += std::string(known.empty() ? "" : ", ") + x.name;
        FOVEA_FAIL("augmentation '", std::string(text), "': unknown key '", key, "' (known: ", known, ")");
      }
      FOVEA_CHECK(std::find(seen.begin(), seen.end(), key) == seen.end(), "augmentation '", std::string(text),
                  "': key '", key, "' given twice");
      seen.push_back(key);
      // std::from_chars: the same in every locale (stof would read "0.2" as 0 under a decimal comma).
      float v = 0.0f;
      const char* end = value.data() + value.size();
      const auto [ptr, ec] = std::from_chars(value.data() + (!value.empty() && value.front() == '+'), end, v);
      FOVEA_CHECK(!value.empty() && ec == std::errc() && ptr == end && std::isfinite(v), "augmentation '",
                  std::string(text), "': ", key, "='", value, "' is not a finite number");
      c.*(k->field) = v;
    }
    first = false;
    start = comma + 1;
  }
  try {
    check_config(c);
  } catch (const Error& e) {
    throw Error("augmentation '" + std::string(text) + "': " + e.what());
  }
  return c;
}

// Every setting of detail::kAugmentKeys as "key=value,...", each value in the fewest digits that
// read back as the same float (std::to_chars: 0.2, not 0.200000003; a point in every locale), so that
// parse_augment(describe_augment(c), c) == c: for logs and a run's config.json.
inline std::string describe_augment(const AugmentConfig& c) {
  std::string out;
  for (const auto& k : detail::kAugmentKeys) {
    char buf[32];
    const auto r = std::to_chars(buf, buf + sizeof buf, c.*(k.field));  // shortest round trip, any locale
    out += std::string(out.empty() ? "" : ",") + k.name + "=" + std::string(buf, r.ptr);
  }
  return out;
}

inline void check_config(const AugmentConfig& c) {
  auto prob = [](float p) { return p >= 0.0f && p <= 1.0f; };
  FOVEA_CHECK(c.output_size >= 1, "AugmentConfig: output_size ", c.output_size, " must be positive");
  FOVEA_CHECK(0.0f < c.scale_min && c.scale_min <= c.scale_max && std::isfinite(c.scale_max),
              "AugmentConfig: crop scale (", c.scale_min, ", ", c.scale_max, ") must satisfy 0 < min <= max");
  FOVEA_CHECK(0.0f < c.ratio_min && c.ratio_min <= c.ratio_max && std::isfinite(c.ratio_max),
              "AugmentConfig: crop ratio (", c.ratio_min, ", ", c.ratio_max, ") must satisfy 0 < min <= max");
  FOVEA_CHECK(c.center_crop_fraction > 0.0f && c.center_crop_fraction <= 1.0f,
              "AugmentConfig: center_crop_fraction ", c.center_crop_fraction, " must be in (0, 1]");
  FOVEA_CHECK(prob(c.hflip_p) && prob(c.vflip_p) && prob(c.jitter_p) && prob(c.grayscale_p) &&
                  prob(c.blur_p) && prob(c.solarize_p),
              "AugmentConfig: probabilities must be in [0, 1]");
  FOVEA_CHECK(c.rotation_degrees >= 0.0f && std::isfinite(c.rotation_degrees),
              "AugmentConfig: rotation_degrees ", c.rotation_degrees, " must be finite and >= 0");
  FOVEA_CHECK(
      c.brightness >= 0.0f && c.contrast >= 0.0f && c.saturation >= 0.0f && c.hue >= 0.0f && c.hue <= 0.5f,
      "AugmentConfig: jitter strengths must be >= 0 and hue <= 0.5");
  FOVEA_CHECK(
      0.0f < c.blur_sigma_min && c.blur_sigma_min <= c.blur_sigma_max && std::isfinite(c.blur_sigma_max),
      "AugmentConfig: blur sigma (", c.blur_sigma_min, ", ", c.blur_sigma_max,
      ") must satisfy 0 < min <= max");
  FOVEA_CHECK(c.blur_kernel_size >= 0 && c.blur_kernel_fraction >= 0.0f, "AugmentConfig: blur kernel size ",
              c.blur_kernel_size, " and fraction ", c.blur_kernel_fraction, " must be >= 0");
  for (int ch = 0; ch < 3; ++ch)
    FOVEA_CHECK(c.stats.std[ch] > 0.0f, "AugmentConfig: normalisation std of channel ", ch,
                " must be positive");
}

// Slots of the draws (see the file comment).
inline constexpr std::uint64_t kSlotCrop = 0;
inline constexpr int kCropAttempts = 10;
inline constexpr std::uint64_t kSlotHflip = 40, kSlotVflip = 41, kSlotRotation = 42;
inline constexpr std::uint64_t kSlotJitter = 43, kSlotJitterFactors = 44, kSlotPermutation = 48;
inline constexpr std::uint64_t kSlotGrayscale = 51, kSlotBlur = 52, kSlotBlurSigma = 53, kSlotSolarize = 54;

namespace detail {
// An integer uniform on [0, n) from 32 random bits ((bits * n) >> 32; bias below n / 2^32).
inline std::int64_t uniform_index(std::uint32_t bits, std::int64_t n) {
  return static_cast<std::int64_t>((static_cast<std::uint64_t>(bits) * static_cast<std::uint64_t>(n)) >> 32);
}
// Draws of one key by slot, each Philox block computed once: bits(j) == random_bits(key, j) and
// uniform(j) == fovea::uniform(key, j).
class SlotDraws {
 public:
  explicit SlotDraws(const RandomKey& key) : key_(key) {}
  std::uint32_t bits(std::uint64_t j) {
    const auto b = static_cast<std::uint32_t>(j >> 2);
    if (!cached_ || b != block_index_) {
      block_ = random_block(key_, b);
      block_index_ = b;
      cached_ = true;
    }
    return block_.v[j & 3u];
  }
  float uniform(std::uint64_t j) { return uniform_from_bits(bits(j)); }

 private:
  RandomKey key_;
  bool cached_ = false;
  std::uint32_t block_index_ = 0;
  U32x4 block_{};
};

// Python's round(): to nearest, ties to even (the default rounding mode).
inline std::int64_t round_half_even(double v) { return static_cast<std::int64_t>(std::nearbyint(v)); }
}  // namespace detail

// crop_box: torchvision's RandomResizedCrop.get_params on a height x width image: up to 10 attempts
// of area ~ U(scale) * H * W and log aspect ~ U(log ratio), w = round(sqrt(area * aspect)),
// h = round(sqrt(area / aspect)), accepted when 0 < w <= W and 0 < h <= H, with top ~ U{0..H-h},
// left ~ U{0..W-w}; otherwise the central crop clamped to the ratio range.
//   ensures: the box lies inside the image.
inline void crop_box(const AugmentConfig& c, const RandomKey& key, std::int64_t height, std::int64_t width,
                     AugmentParams& p) {
  detail::SlotDraws draws(key);
  const double area = static_cast<double>(height) * static_cast<double>(width);
  const float log_lo = std::log(c.ratio_min), log_hi = std::log(c.ratio_max);
  for (int a = 0; a < kCropAttempts; ++a) {
    const std::uint64_t s = kSlotCrop + 4 * static_cast<std::uint64_t>(a);
    const double target = area * uniform_between(draws.uniform(s), c.scale_min, c.scale_max);
    const double aspect =
        std::exp(static_cast<double>(uniform_between(draws.uniform(s + 1), log_lo, log_hi)));
    const std::int64_t w = detail::round_half_even(std::sqrt(target * aspect));
    const std::int64_t h = detail::round_half_even(std::sqrt(target / aspect));
    if (0 < w && w <= width && 0 < h && h <= height) {
      p.crop_top = static_cast<std::int32_t>(detail::uniform_index(draws.bits(s + 2), height - h + 1));
      p.crop_left = static_cast<std::int32_t>(detail::uniform_index(draws.bits(s + 3), width - w + 1));
      p.crop_height = static_cast<std::int32_t>(h);
      p.crop_width = static_cast<std::int32_t>(w);
      return;
    }
  }
  const double in_ratio = static_cast<double>(width) / static_cast<double>(height);
  std::int64_t w = width, h = height;
  if (in_ratio < c.ratio_min) {
    h = detail::round_half_even(static_cast<double>(w) / c.ratio_min);
  } else if (in_ratio > c.ratio_max) {
    w = detail::round_half_even(static_cast<double>(h) * c.ratio_max);
  }
  h = h < 1 ? 1 : (h > height ? height : h);
  w = w < 1 ? 1 : (w > width ? width : w);
  p.crop_top = static_cast<std::int32_t>((height - h) / 2);
  p.crop_left = static_cast<std::int32_t>((width - w) / 2);
  p.crop_height = static_cast<std::int32_t>(h);
  p.crop_width = static_cast<std::int32_t>(w);
}

// draw_augment_params: the parameters of one view of one sample of a height x width image,
// drawn from key's stream (use key = make_key(seed, kPurposeAugment, epoch, sample, view)) in
// torchvision's way: RandomResizedCrop (or the centre crop), flips with their p (u < p), rotation
// ~ U(-d, d), ColorJitter with p (its factors and a uniform permutation of the four ops, drawn
// whether applied or not), grayscale, blur with sigma ~ U(sigma_min, sigma_max), solarize.
//   requires: check_config(config) passes; a checked key; height, width >= 1.
//   ensures: a valid AugmentParams (check_augment_params passes); the same key gives the same
//            result bit for bit.
inline AugmentParams draw_augment_params(const AugmentConfig& c, const RandomKey& key, std::int64_t height,
                                         std::int64_t width) {
  check_config(c);
  check_key(key);
  FOVEA_CHECK(
      height >= 1 && width >= 1 && height < (std::int64_t{1} << 31) && width < (std::int64_t{1} << 31),
      "draw_augment_params: image size ", height, "x", width, " out of range");
  AugmentParams p;
  if (c.random_crop) {
    crop_box(c, key, height, width, p);
  } else {
    const std::int64_t side = std::min(height, width);
    std::int64_t crop =
        detail::round_half_even(static_cast<double>(c.center_crop_fraction) * static_cast<double>(side));
    crop = crop < 1 ? 1 : crop;
    p.crop_height = p.crop_width = static_cast<std::int32_t>(crop);
    p.crop_top = static_cast<std::int32_t>(detail::round_half_even((height - crop) / 2.0));
    p.crop_left = static_cast<std::int32_t>(detail::round_half_even((width - crop) / 2.0));
  }
  detail::SlotDraws draws(key);
  p.hflip = draws.uniform(kSlotHflip) < c.hflip_p;
  p.vflip = draws.uniform(kSlotVflip) < c.vflip_p;
  if (c.rotation_degrees > 0.0f)
    p.rotation_degrees =
        uniform_between(draws.uniform(kSlotRotation), -c.rotation_degrees, c.rotation_degrees);

  p.jitter = draws.uniform(kSlotJitter) < c.jitter_p;
  const float strength[kJitterOps] = {c.brightness, c.contrast, c.saturation, c.hue};
  float factor[kJitterOps];
  for (int op = 0; op < kJitterOps; ++op) {
    const float u = draws.uniform(kSlotJitterFactors + static_cast<std::uint64_t>(op));
    const float v = strength[op];
    factor[op] =
        op == kJitterHue ? uniform_between(u, -v, v) : uniform_between(u, std::max(0.0f, 1.0f - v), 1.0f + v);
    if (v > 0.0f) p.jitter_ops = static_cast<std::uint8_t>(p.jitter_ops | (1u << op));
  }
  p.brightness = factor[kJitterBrightness];
  p.contrast = factor[kJitterContrast];
  p.saturation = factor[kJitterSaturation];
  p.hue = factor[kJitterHue];
  // Fisher-Yates: a uniform permutation of 0..3 (torch.randperm(4) in distribution).
  std::uint8_t order[kJitterOps] = {0, 1, 2, 3};
  for (int i = kJitterOps - 1; i > 0; --i) {
    const std::int64_t j =
        detail::uniform_index(draws.bits(kSlotPermutation + static_cast<std::uint64_t>(3 - i)), i + 1);
    std::swap(order[i], order[j]);
  }
  for (int k = 0; k < kJitterOps; ++k) p.order[k] = order[k];

  p.grayscale = draws.uniform(kSlotGrayscale) < c.grayscale_p;
  p.blur = draws.uniform(kSlotBlur) < c.blur_p && c.blur_kernel() > 1;
  p.blur_kernel = c.blur_kernel();
  p.blur_sigma = uniform_between(draws.uniform(kSlotBlurSigma), c.blur_sigma_min, c.blur_sigma_max);
  p.solarize = draws.uniform(kSlotSolarize) < c.solarize_p;
  p.solarize_threshold = c.solarize_threshold;
  return p;
}

// The key of (seed, epoch, sample, view) for augmentation.
inline RandomKey augment_key(std::uint64_t seed, int epoch, std::int64_t sample, int view) {
  FOVEA_CHECK(epoch >= 0 && sample >= 0 && sample <= 0xFFFFFFFFll && view >= 0, "augment_key: epoch ", epoch,
              ", sample ", sample, ", view ", view, " must be >= 0 (sample < 2^32)");
  return make_key(seed, kPurposeAugment, static_cast<std::uint32_t>(epoch),
                  static_cast<std::uint32_t>(sample), static_cast<std::uint32_t>(view));
}

// draw_batch_params: draw_augment_params for every sample id of a batch of height x width images.
inline std::vector<AugmentParams> draw_batch_params(const AugmentConfig& c,
                                                    std::span<const std::int64_t> sample_ids, int epoch,
                                                    int view, std::uint64_t seed, std::int64_t height,
                                                    std::int64_t width) {
  std::vector<AugmentParams> params;
  params.reserve(sample_ids.size());
  for (const std::int64_t id : sample_ids)
    params.push_back(draw_augment_params(c, augment_key(seed, epoch, id, view), height, width));
  return params;
}

// augment_batch: view `view` of every image of a batch at `epoch`: images[k] is sample
// sample_ids[k]; out[k] = augment_images(images[k], draw_augment_params(config, key(seed, epoch,
// sample_ids[k], view))) normalised with config.stats. Runs on out's device (images on the same).
//   images (N, 3, H, W) in [0, 1]; sample_ids.size() == N; out (N, 3, S, S), S = config.output_size.
inline void augment_batch(CView images, std::span<const std::int64_t> sample_ids, int epoch, int view,
                          const AugmentConfig& config, std::uint64_t seed, View out) {
  FOVEA_CHECK(images.shape().rank() == 4, "augment_batch: images must be (N, 3, H, W), got ",
              images.shape().str());
  FOVEA_CHECK(static_cast<std::int64_t>(sample_ids.size()) == images.shape().n(),
              "augment_batch: ", sample_ids.size(), " sample ids for images ", images.shape().str());
  const Shape want{images.shape().n(), 3, config.output_size, config.output_size};
  check_same_shape("augment_batch", "output", out.shape(), "(N, 3, S, S) for output_size", want);
  const auto params =
      draw_batch_params(config, sample_ids, epoch, view, seed, images.shape().h(), images.shape().w());
  augment_images(images, params, config.stats, out);
}

// TwoViewAugmenter: the two views of a contrastive pair (view 0 and view 1 of each sample), each
// with its own config (the same for SimCLR and MoCo; BYOL-style asymmetric pairs use two).
class TwoViewAugmenter {
 public:
  TwoViewAugmenter(const AugmentConfig& config, std::uint64_t seed)
      : TwoViewAugmenter(config, config, seed) {}
  TwoViewAugmenter(const AugmentConfig& view0, const AugmentConfig& view1, std::uint64_t seed)
      : configs_{view0, view1}, seed_(seed) {
    check_config(view0);
    check_config(view1);
    FOVEA_CHECK(view0.output_size == view1.output_size, "TwoViewAugmenter: views of different sizes (",
                view0.output_size, " vs ", view1.output_size, ")");
  }

  const AugmentConfig& config(int view) const { return configs_[view == 0 ? 0 : 1]; }
  std::uint64_t seed() const { return seed_; }
  int output_size() const { return configs_[0].output_size; }

  // views[v] = augment_batch(images, sample_ids, epoch, v, config(v), seed), v = 0, 1.
  //   images (N, 3, H, W); view0, view1 (N, 3, S, S) on images' device.
  void operator()(CView images, std::span<const std::int64_t> sample_ids, int epoch, View view0,
                  View view1) const {
    augment_batch(images, sample_ids, epoch, 0, configs_[0], seed_, view0);
    augment_batch(images, sample_ids, epoch, 1, configs_[1], seed_, view1);
  }

 private:
  AugmentConfig configs_[2];
  std::uint64_t seed_;
};

}  // namespace fovea::data
