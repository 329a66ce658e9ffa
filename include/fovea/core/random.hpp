// fovea/core/random.hpp: the counter-based random numbers of fovea (Philox4x32-10), the mapping from
// a RandomKey to Philox counters, uniform and normal draws, and a sequential host-side generator.
//
// Every draw is a pure function of (key, index): draw j of a key's stream is word j % 4 of the
// Philox block j / 4. Nothing carries state between draws, so any draw can be replayed, and a CPU
// loop and a CUDA kernel that evaluate the same (key, index) pairs produce the same numbers.
//
// Host/device agreement: philox4x32_10, random_bits, uniform_from_bits, uniform and
// uniform_between are bitwise identical on the host and on the device (integer math, one exact
// conversion, one correctly rounded fma). normal and box_muller call logf/sqrtf/cosf, whose device
// versions may differ from the host libm by a few ulp, so normals agree only to ~1e-6 absolute.
// (The CUDA kernels must not be built with --use_fast_math, which would widen that gap.)
//
// This header is FOVEA_HD code with no CUDA syntax: it compiles with a host compiler alone.
#pragma once

#include <cmath>
#include <cstdint>

#include "fovea/core/config.hpp"
#include "fovea/core/error.hpp"

namespace fovea {

// ---- Philox4x32-10 ------------------------------------------------------------------------------

// Four 32-bit words: a Philox counter or output block. A plain aggregate, usable in device code.
struct U32x4 {
  std::uint32_t v[4];
};
// Two 32-bit words: a Philox key.
struct U32x2 {
  std::uint32_t v[2];
};

inline constexpr std::uint32_t kPhiloxMultiplier0 = 0xD2511F53u;
inline constexpr std::uint32_t kPhiloxMultiplier1 = 0xCD9E8D57u;
inline constexpr std::uint32_t kPhiloxWeyl0 = 0x9E3779B9u;  // golden ratio
inline constexpr std::uint32_t kPhiloxWeyl1 = 0xBB67AE85u;  // sqrt(3) - 1
inline constexpr int kPhiloxRounds = 10;

namespace detail {

// The high 32 bits of the 64-bit product a * b.
FOVEA_HD std::uint32_t mul_high32(std::uint32_t a, std::uint32_t b) {
#if defined(__CUDA_ARCH__)
  return __umulhi(a, b);
#else
  return static_cast<std::uint32_t>((static_cast<std::uint64_t>(a) * b) >> 32);
#endif
}

// One Philox4x32 round: two 32x32->64 multiplies, their halves mixed with the other words and key.
FOVEA_HD U32x4 philox_round(U32x4 x, U32x2 k) {
  const std::uint32_t hi0 = mul_high32(kPhiloxMultiplier0, x.v[0]);
  const std::uint32_t lo0 = kPhiloxMultiplier0 * x.v[0];
  const std::uint32_t hi1 = mul_high32(kPhiloxMultiplier1, x.v[2]);
  const std::uint32_t lo1 = kPhiloxMultiplier1 * x.v[2];
  return U32x4{{hi1 ^ x.v[1] ^ k.v[0], lo1, hi0 ^ x.v[3] ^ k.v[1], lo0}};
}

}  // namespace detail

// philox4x32_10: the Random123 Philox4x32 bijection with 10 rounds, the key bumped by the Weyl
// constants between rounds.
//   ensures: the result equals Random123's philox4x32(ctr, key) with R = 10 (its kat_vectors).
FOVEA_HD U32x4 philox4x32_10(U32x4 counter, U32x2 key) {
  for (int round = 0; round < kPhiloxRounds; ++round) {
    if (round > 0) {
      key.v[0] += kPhiloxWeyl0;
      key.v[1] += kPhiloxWeyl1;
    }
    counter = detail::philox_round(counter, key);
  }
  return counter;
}

// ---- keys and streams ---------------------------------------------------------------------------

// What a stream of random numbers is for. Distinct purposes never share a stream, so e.g. adding
// dropout does not change the weight initialisation of the same seed. Values are < 65536.
inline constexpr std::uint32_t kPurposeTest = 0;       // tests and examples
inline constexpr std::uint32_t kPurposeInit = 1;       // weight initialisation
inline constexpr std::uint32_t kPurposeShuffle = 2;    // dataset order
inline constexpr std::uint32_t kPurposeAugment = 3;    // data augmentation (crops, flips)
inline constexpr std::uint32_t kPurposeDropout = 4;    // dropout masks
inline constexpr std::uint32_t kPurposeDistort = 5;    // geometric / photometric distortion
inline constexpr std::uint32_t kPurposeNoise = 6;      // additive noise
inline constexpr std::uint32_t kPurposeSynthetic = 7;  // synthetic data sets
inline constexpr std::uint32_t kPurposeSplit = 8;      // train / validation splits

// Exclusive upper bounds of the RandomKey fields packed into 16 bits of the counter.
inline constexpr std::uint32_t kMaxPurpose = 1u << 16;
inline constexpr std::uint32_t kMaxView = 1u << 16;
// Draws per stream: the block index j / 4 fills one 32-bit counter word.
inline constexpr std::uint64_t kMaxStreamDraws = std::uint64_t{1} << 34;
// Normals per stream: normal(key, i) uses block i.
inline constexpr std::uint64_t kMaxStreamNormals = std::uint64_t{1} << 32;

// Names one stream of random numbers. The mapping onto Philox is collision-free by construction:
//   Philox key     = (seed & 0xffffffff, seed >> 32)
//   Philox counter = (c0 = block index, c1 = sample, c2 = epoch, c3 = purpose << 16 | view)
// so two keys that differ in any field (with purpose, view < 65536) never share a block. Fields are
// plain data so a key can be passed to a kernel; build keys with make_key() or check them with
// check_key(), which enforce purpose < kMaxPurpose and view < kMaxView (the device functions below
// cannot throw and assume it).
struct RandomKey {
  std::uint64_t seed = 0;
  std::uint32_t purpose = kPurposeTest;
  std::uint32_t epoch = 0;   // training epoch (or any outer iteration)
  std::uint32_t sample = 0;  // sample index within the data set, or layer / parameter index
  std::uint32_t view = 0;    // augmented view of a sample, or sub-stream
};

// check_key: throws fovea::Error unless key.purpose < kMaxPurpose and key.view < kMaxView.
inline void check_key(const RandomKey& key) {
  FOVEA_CHECK(key.purpose < kMaxPurpose, "RandomKey purpose ", key.purpose,
              " does not fit in 16 bits (must be < ", kMaxPurpose, ")");
  FOVEA_CHECK(key.view < kMaxView, "RandomKey view ", key.view, " does not fit in 16 bits (must be < ",
              kMaxView, ")");
}

// make_key: a checked RandomKey.
//   requires: purpose < kMaxPurpose, view < kMaxView (else throws fovea::Error).
inline RandomKey make_key(std::uint64_t seed, std::uint32_t purpose, std::uint32_t epoch = 0,
                          std::uint32_t sample = 0, std::uint32_t view = 0) {
  RandomKey key{seed, purpose, epoch, sample, view};
  check_key(key);
  return key;
}

// The Philox key of a stream: the two halves of the seed.
FOVEA_HD U32x2 philox_key(const RandomKey& key) {
  return U32x2{{static_cast<std::uint32_t>(key.seed), static_cast<std::uint32_t>(key.seed >> 32)}};
}

// The Philox counter of block `block` of a stream.
//   requires: key.purpose < kMaxPurpose, key.view < kMaxView (see check_key).
FOVEA_HD U32x4 philox_counter(const RandomKey& key, std::uint32_t block) {
  return U32x4{{block, key.sample, key.epoch, (key.purpose << 16) | key.view}};
}

// random_block: the four draws 4 * block .. 4 * block + 3 of a stream.
//   requires: a checked key (check_key).
FOVEA_HD U32x4 random_block(const RandomKey& key, std::uint32_t block) {
  return philox4x32_10(philox_counter(key, block), philox_key(key));
}

// random_bits: draw j of a stream, 32 uniformly distributed bits.
//   requires: a checked key, j < kMaxStreamDraws.
FOVEA_HD std::uint32_t random_bits(const RandomKey& key, std::uint64_t j) {
  return random_block(key, static_cast<std::uint32_t>(j >> 2)).v[j & 3u];
}

// ---- distributions ------------------------------------------------------------------------------

inline constexpr float kTwoPi = 6.28318530717958647692f;

// uniform_from_bits: the top 24 bits times 2^-24, a float in [0, 1) on the grid k * 2^-24. Exact
// (every value is representable), so identical on host and device.
FOVEA_HD float uniform_from_bits(std::uint32_t bits) { return static_cast<float>(bits >> 8) * 0x1p-24f; }

// uniform_between: lo + (hi - lo) * u as one correctly rounded fma, so identical on host and device
// whatever the compiler's contraction settings.
//   requires: u in [0, 1).  ensures: a value in [lo, hi]; hi itself only through rounding.
FOVEA_HD float uniform_between(float u, float lo, float hi) {
#if defined(__CUDA_ARCH__)
  return __fmaf_rn(hi - lo, u, lo);
#else
  return std::fma(hi - lo, u, lo);
#endif
}

// uniform: draw j of a stream as a float in [0, 1).
//   requires: a checked key, j < kMaxStreamDraws.
FOVEA_HD float uniform(const RandomKey& key, std::uint64_t j) {
  return uniform_from_bits(random_bits(key, j));
}

// box_muller: one N(0, 1) value from two independent 32-bit draws, the cosine branch of the
// Box-Muller transform: sqrt(-2 ln u1) * cos(2 pi u2) with u1 = (top 24 bits of a + 1) * 2^-24 in
// (0, 1] (so the log never sees 0) and u2 = uniform_from_bits(b) in [0, 1). The 24-bit u1 bounds
// |result| by sqrt(48 ln 2) ~ 5.77: tails beyond that (probability ~8e-9) are cut off.
//   ensures: host and device results differ by at most a few ulp (device logf/cosf vs host libm).
FOVEA_HD float box_muller(std::uint32_t a, std::uint32_t b) {
  const float u1 = static_cast<float>((a >> 8) + 1u) * 0x1p-24f;
  const float theta = kTwoPi * uniform_from_bits(b);
#if defined(__CUDA_ARCH__)
  return sqrtf(-2.0f * logf(u1)) * cosf(theta);
#else
  return std::sqrt(-2.0f * std::log(u1)) * std::cos(theta);
#endif
}

// normal: normal number i of a stream, N(0, 1), from words 0 and 1 of Philox block i (words 2 and
// 3 are unused). Normal i thus never depends on how many normals a tensor holds, and it shares
// its block with uniform draws 4i..4i+3 of the same key: use a separate purpose or view when a
// consumer needs both uniforms and normals.
//   requires: a checked key, i < kMaxStreamNormals.
//   ensures: equal on host and device up to a few ulp (see box_muller).
FOVEA_HD float normal(const RandomKey& key, std::uint64_t i) {
  const U32x4 block = random_block(key, static_cast<std::uint32_t>(i));
  return box_muller(block.v[0], block.v[1]);
}

// scale_normal: mean + std_dev * z as one fma (the same rounding on host and device).
FOVEA_HD float scale_normal(float z, float mean, float std_dev) {
#if defined(__CUDA_ARCH__)
  return __fmaf_rn(std_dev, z, mean);
#else
  return std::fma(std_dev, z, mean);
#endif
}

// ---- sequential host generator ------------------------------------------------------------------

// Philox: a sequential host-side reader of one stream, for host code such as shuffling. Its n-th
// next_u32() is random_bits(key, n), so a sequence can be replayed from any position with seek().
class Philox {
 public:
  // requires: a key with purpose < kMaxPurpose and view < kMaxView (else throws fovea::Error).
  explicit Philox(const RandomKey& key) : key_(key) { check_key(key); }

  const RandomKey& key() const { return key_; }
  // The index of the next draw.
  std::uint64_t position() const { return position_; }
  // Moves to draw j.  requires: j <= kMaxStreamDraws.
  void seek(std::uint64_t j) {
    FOVEA_CHECK(j <= kMaxStreamDraws, "Philox::seek(", j, ") past the end of the stream");
    position_ = j;
  }

  // The next 32 random bits.  requires: the stream is not exhausted (kMaxStreamDraws draws).
  std::uint32_t next_u32() {
    FOVEA_CHECK(position_ < kMaxStreamDraws, "Philox stream exhausted after ", kMaxStreamDraws, " draws");
    const std::uint64_t block = position_ >> 2;
    if (block != cached_block_) {
      cached_ = random_block(key_, static_cast<std::uint32_t>(block));
      cached_block_ = block;
    }
    return cached_.v[position_++ & 3u];
  }
  // A float in [0, 1) from one draw (uniform_from_bits).
  float next_uniform() { return uniform_from_bits(next_u32()); }
  // N(0, 1) from two draws (box_muller).
  float next_normal() {
    const std::uint32_t a = next_u32();
    const std::uint32_t b = next_u32();
    return box_muller(a, b);
  }
  // A float in [lo, hi] (hi only through rounding) from one draw.  requires: lo <= hi, finite.
  float uniform(float lo, float hi) {
    FOVEA_CHECK(std::isfinite(lo) && std::isfinite(hi) && lo <= hi, "Philox::uniform(", lo, ", ", hi,
                "): need finite lo <= hi");
    return uniform_between(next_uniform(), lo, hi);
  }
  // An integer uniform on [0, n) without modulo bias: draws below 2^32 mod n are rejected, so the
  // accepted range is a whole number of copies of [0, n). Uses one draw, or more after a rejection
  // (each with probability < n / 2^32).  requires: n > 0.
  std::uint32_t uniform_int(std::uint32_t n) {
    FOVEA_CHECK(n > 0, "Philox::uniform_int needs n > 0");
    const std::uint32_t reject_below = (0u - n) % n;  // 2^32 mod n
    std::uint32_t x = next_u32();
    while (x < reject_below) x = next_u32();
    return x % n;
  }

 private:
  RandomKey key_;
  std::uint64_t position_ = 0;
  std::uint64_t cached_block_ = ~std::uint64_t{0};
  U32x4 cached_{};
};

}  // namespace fovea
