// tests/test_random.cpp: Philox4x32-10 against Random123's published known answers, the key ->
// counter mapping, uniform / normal statistics, replayability, the unbiased host generator, and the
// CPU random fill ops.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <set>
#include <vector>

#include "fovea/core/random.hpp"
#include "fovea/core/tensor.hpp"
#include "fovea/ops/random.hpp"

namespace fovea {
namespace {

struct PhiloxAnswer {
  U32x4 counter;
  U32x2 key;
  U32x4 expected;
};

void expect_block_eq(const U32x4& got, const U32x4& want) {
  for (int w = 0; w < 4; ++w)
    EXPECT_EQ(got.v[w], want.v[w]) << "word " << w << ": got 0x" << std::hex << got.v[w] << ", want 0x"
                                   << want.v[w];
}

// Random123 examples/kat_vectors, "philox4x32 10" lines (columns: CTR[4] KEY[2] EXPECTED[4]).
TEST(Philox, KnownAnswersRandom123) {
  const PhiloxAnswer answers[] = {
      {{{0x00000000u, 0x00000000u, 0x00000000u, 0x00000000u}},
       {{0x00000000u, 0x00000000u}},
       {{0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u}}},
      {{{0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu}},
       {{0xffffffffu, 0xffffffffu}},
       {{0x408f276du, 0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu}}},
      {{{0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u}},
       {{0xa4093822u, 0x299f31d0u}},
       {{0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u}}},
  };
  for (const auto& a : answers) expect_block_eq(philox4x32_10(a.counter, a.key), a.expected);
}

// Asymmetric inputs that pin the order of counter and key words (from the Random123 manual's
// extended kat_vectors): a single set bit in one counter or key word.
TEST(Philox, KnownAnswersWordOrder) {
  const PhiloxAnswer answers[] = {
      {{{0x00000001u, 0u, 0u, 0u}},
       {{0x00000001u, 0u}},
       {{0xac08141bu, 0xdfc5ccbeu, 0x79c07a47u, 0xa7f66093u}}},
      {{{0u, 0u, 0u, 0x00000001u}},
       {{0x00000001u, 0u}},
       {{0x127bee41u, 0x1e047488u, 0x48842b20u, 0x0a393496u}}},
      {{{0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u}},
       {{0x00000001u, 0u}},
       {{0x38527b8fu, 0xfad9a48cu, 0x20e675c0u, 0xf2fea26au}}},
      {{{0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u}},
       {{0u, 0x00000001u}},
       {{0x126514c3u, 0xd1898b69u, 0xda2707b3u, 0x6e6fb436u}}},
  };
  for (const auto& a : answers) expect_block_eq(philox4x32_10(a.counter, a.key), a.expected);
}

TEST(RandomKey, MapsFieldsOntoPhiloxKeyAndCounter) {
  const RandomKey key = make_key(0x0123456789abcdefull, kPurposeDropout, 7, 11, 13);
  const U32x2 k = philox_key(key);
  EXPECT_EQ(k.v[0], 0x89abcdefu);
  EXPECT_EQ(k.v[1], 0x01234567u);
  const U32x4 c = philox_counter(key, 5);
  EXPECT_EQ(c.v[0], 5u);
  EXPECT_EQ(c.v[1], 11u);  // sample
  EXPECT_EQ(c.v[2], 7u);   // epoch
  EXPECT_EQ(c.v[3], (kPurposeDropout << 16) | 13u);
  // Draw j is word j % 4 of block j / 4.
  for (std::uint64_t j = 0; j < 40; ++j)
    EXPECT_EQ(random_bits(key, j),
              philox4x32_10(philox_counter(key, static_cast<std::uint32_t>(j / 4)), k).v[j % 4]);
  // The last block of a stream is still reachable.
  EXPECT_EQ(random_bits(key, kMaxStreamDraws - 1), random_block(key, 0xffffffffu).v[3]);
}

TEST(RandomKey, RangeChecksThrow) {
  EXPECT_THROW(make_key(1, kMaxPurpose), Error);
  EXPECT_THROW(make_key(1, kPurposeInit, 0, 0, kMaxView), Error);
  EXPECT_NO_THROW(make_key(1, kMaxPurpose - 1, 0xffffffffu, 0xffffffffu, kMaxView - 1));
  EXPECT_THROW(check_key(RandomKey{1, 70000, 0, 0, 0}), Error);
  EXPECT_THROW(Philox(RandomKey{1, kPurposeShuffle, 0, 0, 1u << 20}), Error);

  std::vector<float> buffer(8);
  const View out(buffer.data(), Shape{8}, Device::cpu());
  EXPECT_THROW(random_uniform(out, RandomKey{1, 1u << 16, 0, 0, 0}, 0.0f, 1.0f), Error);
  EXPECT_THROW(random_normal(out, RandomKey{1, kPurposeInit, 0, 0, 1u << 16}, 0.0f, 1.0f), Error);
  EXPECT_THROW(random_uniform(out, RandomKey{}, 1.0f, 0.0f), Error);
  EXPECT_THROW(random_uniform(out, RandomKey{}, 0.0f, INFINITY), Error);
  EXPECT_THROW(random_normal(out, RandomKey{}, 0.0f, -1.0f), Error);
  EXPECT_THROW(random_normal(out, RandomKey{}, NAN, 1.0f), Error);
}

TEST(Uniform, FromBitsIsExactAndHalfOpen) {
  EXPECT_EQ(uniform_from_bits(0u), 0.0f);
  EXPECT_EQ(uniform_from_bits(0xffu), 0.0f);  // the low 8 bits are dropped
  EXPECT_EQ(uniform_from_bits(0x100u), 0x1p-24f);
  EXPECT_EQ(uniform_from_bits(0x80000000u), 0.5f);
  EXPECT_EQ(uniform_from_bits(0xffffffffu), 1.0f - 0x1p-24f);
  EXPECT_LT(uniform_from_bits(0xffffffffu), 1.0f);
}

TEST(Uniform, RangeMeanAndVariance) {
  const RandomKey key = make_key(20240607, kPurposeTest);
  constexpr int kDraws = 1000000;
  double sum = 0.0, sum_sq = 0.0;
  float lo = 1.0f, hi = 0.0f;
  for (int j = 0; j < kDraws; ++j) {
    const float u = uniform(key, static_cast<std::uint64_t>(j));
    lo = std::min(lo, u);
    hi = std::max(hi, u);
    sum += u;
    sum_sq += static_cast<double>(u) * u;
  }
  EXPECT_GE(lo, 0.0f);
  EXPECT_LT(hi, 1.0f);
  EXPECT_LT(lo, 1e-4f);  // the range is actually covered
  EXPECT_GT(hi, 1.0f - 1e-4f);
  const double mean = sum / kDraws;
  const double var = sum_sq / kDraws - mean * mean;
  // Standard errors: mean 2.9e-4, variance 7.5e-5; the bounds are ~7 of them.
  EXPECT_NEAR(mean, 0.5, 2e-3);
  EXPECT_NEAR(var, 1.0 / 12.0, 5e-4);
}

TEST(Normal, MeanStdAndKurtosis) {
  const RandomKey key = make_key(99, kPurposeInit, 0, 3);
  constexpr int kDraws = 1000000;
  std::vector<double> z(kDraws);
  double sum = 0.0;
  for (int i = 0; i < kDraws; ++i) {
    z[i] = normal(key, static_cast<std::uint64_t>(i));
    ASSERT_TRUE(std::isfinite(z[i]));
    ASSERT_LE(std::abs(z[i]), 5.78);
    sum += z[i];
  }
  const double mean = sum / kDraws;
  double m2 = 0.0, m3 = 0.0, m4 = 0.0;
  for (double x : z) {
    const double d = x - mean;
    m2 += d * d;
    m3 += d * d * d;
    m4 += d * d * d * d;
  }
  m2 /= kDraws;
  m3 /= kDraws;
  m4 /= kDraws;
  const double sd = std::sqrt(m2);
  // Standard errors at n = 1e6: mean 1e-3, std 7e-4, skewness 2.4e-3, kurtosis 4.9e-3.
  EXPECT_NEAR(mean, 0.0, 5e-3);
  EXPECT_NEAR(sd, 1.0, 5e-3);
  EXPECT_NEAR(m3 / (sd * sd * sd), 0.0, 0.02);
  EXPECT_NEAR(m4 / (m2 * m2), 3.0, 0.03);
}

TEST(Replay, SameKeyAndIndexGiveSameValue) {
  const RandomKey key = make_key(5, kPurposeAugment, 2, 1000, 1);
  for (std::uint64_t j : {0ull, 1ull, 3ull, 4ull, 12345ull, (1ull << 33) + 7}) {
    EXPECT_EQ(random_bits(key, j), random_bits(key, j));
    EXPECT_EQ(uniform(key, j), uniform(RandomKey(key), j));
  }
  for (std::uint64_t i : {0ull, 17ull, (1ull << 32) - 1}) EXPECT_EQ(normal(key, i), normal(key, i));

  // The sequential generator reads the same stream and can seek back.
  Philox gen(key);
  std::vector<std::uint32_t> first;
  for (std::uint64_t j = 0; j < 11; ++j) {
    first.push_back(gen.next_u32());
    EXPECT_EQ(first.back(), random_bits(key, j));
  }
  gen.seek(3);
  for (std::uint64_t j = 3; j < 11; ++j) EXPECT_EQ(gen.next_u32(), first[j]);
  EXPECT_EQ(gen.position(), 11u);
  gen.seek(0);
  EXPECT_EQ(gen.next_uniform(), uniform(key, 0));
  EXPECT_EQ(gen.next_normal(), box_muller(random_bits(key, 1), random_bits(key, 2)));
}

TEST(Replay, EveryKeyFieldSelectsAnotherStream) {
  const RandomKey base = make_key(42, kPurposeAugment, 3, 17, 2);
  auto head = [](const RandomKey& k) {
    std::vector<std::uint32_t> v;
    for (std::uint64_t j = 0; j < 8; ++j) v.push_back(random_bits(k, j));
    return v;
  };
  std::vector<RandomKey> keys = {base};
  auto with = [&](auto edit) {
    RandomKey k = base;
    edit(k);
    keys.push_back(k);
  };
  with([](RandomKey& k) { k.seed = 43; });
  with([](RandomKey& k) { k.seed = 42 + (1ull << 32); });  // the high seed word counts too
  with([](RandomKey& k) { k.purpose = kPurposeDropout; });
  with([](RandomKey& k) { k.epoch = 4; });
  with([](RandomKey& k) { k.sample = 18; });
  with([](RandomKey& k) { k.view = 3; });
  // Fields packed into one word must not alias: (purpose 1, view 0) vs (purpose 0, view 1 << 15).
  with([](RandomKey& k) {
    k.purpose = 0;
    k.view = 1u << 15;
  });
  with([](RandomKey& k) {
    k.purpose = 1;
    k.view = 0;
  });
  std::set<std::vector<std::uint32_t>> heads;
  for (const auto& k : keys) heads.insert(head(k));
  EXPECT_EQ(heads.size(), keys.size());
}

// Chi-square of `counts` against equal expected counts.
double chi_square(const std::vector<std::int64_t>& counts, double expected) {
  double chi2 = 0.0;
  for (std::int64_t c : counts) chi2 += (c - expected) * (c - expected) / expected;
  return chi2;
}

TEST(Philox, UniformIntSmallRangeChiSquare) {
  Philox gen(make_key(7, kPurposeShuffle));
  constexpr std::uint32_t kBins = 7;
  constexpr int kDraws = 700000;
  std::vector<std::int64_t> counts(kBins, 0);
  for (int i = 0; i < kDraws; ++i) {
    const std::uint32_t x = gen.uniform_int(kBins);
    ASSERT_LT(x, kBins);
    ++counts[x];
  }
  // 6 degrees of freedom: P(chi2 > 30) ~ 4e-5.
  EXPECT_LT(chi_square(counts, static_cast<double>(kDraws) / kBins), 30.0);
  EXPECT_EQ(gen.uniform_int(1), 0u);
  EXPECT_THROW(gen.uniform_int(0), Error);
}

// n = 3 * 2^30: plain `bits % n` would give [0, 2^30) twice the probability of the rest (1/2 instead
// of 1/3), so this detects modulo bias directly. Rejection also makes ~1/4 of the draws retry.
TEST(Philox, UniformIntLargeRangeHasNoModuloBias) {
  Philox gen(make_key(8, kPurposeShuffle));
  constexpr std::uint32_t kN = 3u << 30;
  constexpr int kDraws = 300000;
  std::vector<std::int64_t> thirds(3, 0);
  for (int i = 0; i < kDraws; ++i) {
    const std::uint32_t x = gen.uniform_int(kN);
    ASSERT_LT(x, kN);
    ++thirds[x >> 30];
  }
  // 2 degrees of freedom: P(chi2 > 25) ~ 4e-6.
  EXPECT_LT(chi_square(thirds, kDraws / 3.0), 25.0);
  EXPECT_GT(gen.position(), static_cast<std::uint64_t>(kDraws) * 5 / 4);  // rejections happened
}

TEST(Philox, UniformBetweenBounds) {
  Philox gen(make_key(9, kPurposeTest));
  for (int i = 0; i < 10000; ++i) {
    const float x = gen.uniform(-2.0f, 3.0f);
    ASSERT_GE(x, -2.0f);
    ASSERT_LE(x, 3.0f);
  }
  EXPECT_EQ(gen.uniform(1.5f, 1.5f), 1.5f);
  EXPECT_THROW(gen.uniform(2.0f, 1.0f), Error);
}

TEST(RandomOps, UniformTensorMatchesPerElementDraws) {
  const RandomKey key = make_key(1234, kPurposeInit, 0, 5);
  for (std::int64_t n : {1, 3, 4, 5, 257, 4099}) {
    Tensor t(Shape{n});
    random_uniform(t, key, 0.0f, 1.0f);
    Tensor s(Shape{n});
    random_uniform(s, key, -0.25f, 0.75f);
    const float* a = t.data();
    const float* b = s.data();
    for (std::int64_t i = 0; i < n; ++i) {
      ASSERT_EQ(a[i], uniform(key, static_cast<std::uint64_t>(i))) << "n " << n << " i " << i;
      ASSERT_EQ(b[i], uniform_between(uniform(key, static_cast<std::uint64_t>(i)), -0.25f, 0.75f));
      ASSERT_GE(b[i], -0.25f);
      ASSERT_LE(b[i], 0.75f);
    }
  }
}

TEST(RandomOps, NormalTensorMatchesPerElementDrawsAndIgnoresSize) {
  const RandomKey key = make_key(1234, kPurposeInit, 0, 6);
  Tensor big(Shape{2, 3, 5, 7});
  random_normal(big, key, 0.5f, 2.0f);
  Tensor small(Shape{3});
  random_normal(small, key, 0.5f, 2.0f);
  for (std::int64_t i = 0; i < big.numel(); ++i)
    ASSERT_EQ(big.data()[i], scale_normal(normal(key, static_cast<std::uint64_t>(i)), 0.5f, 2.0f));
  for (std::int64_t i = 0; i < small.numel(); ++i) EXPECT_EQ(small.data()[i], big.data()[i]);

  Tensor flat(Shape{4});
  random_normal(flat, key, 3.0f, 0.0f);  // std 0 gives the mean exactly
  for (float v : flat.to_vector()) EXPECT_EQ(v, 3.0f);
  Tensor empty(Shape{0});
  EXPECT_NO_THROW(random_normal(empty, key, 0.0f, 1.0f));
  EXPECT_NO_THROW(random_uniform(empty, key, 0.0f, 1.0f));
}

TEST(RandomOps, UniformPrefixIsStableAcrossSizes) {
  const RandomKey key = make_key(77, kPurposeNoise);
  Tensor a(Shape{10});
  Tensor b(Shape{7});
  random_uniform(a, key, 0.0f, 1.0f);
  random_uniform(b, key, 0.0f, 1.0f);
  for (std::int64_t i = 0; i < 7; ++i) EXPECT_EQ(a.data()[i], b.data()[i]);
}

}  // namespace
}  // namespace fovea
