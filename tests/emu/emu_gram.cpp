// tests/emu/emu_gram.cpp: the feature Gram's column statistics and centring kernels (kernels/gram.cuh)
// run on the CPU by the emulation layer (emu_cuda.hpp), against the CPU's centring
// (analysis::detail::centre_columns, which add_to_feature_gram runs). Per column the statistics
// kernel walks the rows in the CPU's order, so the centred (standardised) values must be bitwise the
// CPU's; constant columns come out as zeros and
// counted; Z Z^T summed from the kernel's layout must be the CPU's Gram up to the order of the sums;
// the first non-finite value in row-major order is reported. Blocks that start inside the matrix,
// grids smaller than the columns (the grid-stride loop), 2 to 300 rows. Exit status 1 on any failure.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <random>
#include <span>
#include <vector>

#include "emu_cuda.hpp"
#include "fovea/analysis/features.hpp"
#include "fovea/ops/math.hpp"

namespace fovea::emu {
#include "gram_device.inc"
}  // namespace fovea::emu

using namespace fovea;

namespace {

int failures = 0;

void report(bool ok, const char* what, std::int64_t n, std::int64_t f, std::int64_t c0, std::int64_t w,
            bool standardise, unsigned grid, const char* detail) {
  std::printf("%s %s n=%lld f=%lld columns %lld..%lld standardise=%d grid=%u%s%s\n", ok ? "ok  " : "FAIL",
              what, static_cast<long long>(n), static_cast<long long>(f), static_cast<long long>(c0),
              static_cast<long long>(c0 + w), standardise ? 1 : 0, grid, detail[0] ? ": " : "", detail);
  failures += !ok;
}

// x (n, f) with every 7th column constant (and column 1 constant but for its last row).
std::vector<float> make_features(std::int64_t n, std::int64_t f, std::uint64_t seed) {
  std::mt19937_64 gen(seed);
  std::normal_distribution<float> d(0.3f, 2.0f);
  std::vector<float> x(static_cast<std::size_t>(n * f));
  for (float& v : x) v = std::max(d(gen), -1.0f);  // some ties at -1, as after a ReLU-like floor
  for (std::int64_t c = 0; c < f; c += 7)
    for (std::int64_t i = 0; i < n; ++i)
      x[static_cast<std::size_t>(i * f + c)] = 0.25f * static_cast<float>(c % 5);
  if (f > 1)
    for (std::int64_t i = 0; i + 1 < n; ++i) x[static_cast<std::size_t>(i * f + 1)] = 1.5f;
  return x;
}

void check_block(std::int64_t n, std::int64_t f, std::int64_t c0, std::int64_t w, bool standardise,
                 unsigned grid) {
  const std::vector<float> x = make_features(n, f, static_cast<std::uint64_t>(n * 131 + f * 7 + c0));
  // The CPU: kept columns only, out[s * n + i]; its constant columns over the whole matrix.
  const analysis::FeatureMatrix m{std::span<const float>(x), n, f};
  std::vector<double> want(static_cast<std::size_t>(w * n)), all(static_cast<std::size_t>(f * n));
  std::int64_t block_constants = 0, want_constants = 0;
  analysis::detail::centre_columns(m, c0, w, standardise, want.data(), &block_constants, "x");
  analysis::detail::centre_columns(m, 0, f, standardise, all.data(), &want_constants, "x");
  // The kernels: statistics of every column, then every column of the block, z[i * w + c].
  const double nan = std::numeric_limits<double>::quiet_NaN();
  std::vector<double> mean(static_cast<std::size_t>(f), nan), scale(static_cast<std::size_t>(f), nan);
  std::vector<double> z(static_cast<std::size_t>(n * w), nan);
  unsigned long long constants = 0, bad = ~0ull;
  emu::launch(dim3(grid), emu::kBlock, 0, false, [&] {
    emu::gram_stats_kernel(x.data(), n, f, standardise, mean.data(), scale.data(), &constants, &bad);
  });
  emu::launch(dim3(grid), emu::kBlock, 0, false, [&] {
    emu::gram_block_kernel(x.data(), n, f, c0, w, standardise, mean.data(), scale.data(), z.data());
  });
  int off = 0;
  std::int64_t s = 0;  // the CPU's slot of column c
  for (std::int64_t c = 0; c < w; ++c) {
    bool constant = true;
    for (std::int64_t i = 0; i < n; ++i)
      constant &= x[static_cast<std::size_t>(i * f + c0 + c)] == x[static_cast<std::size_t>(c0 + c)];
    for (std::int64_t i = 0; i < n; ++i) {
      const double got = z[static_cast<std::size_t>(i * w + c)];
      const double expect = constant ? 0.0 : want[static_cast<std::size_t>(s * n + i)];
      if (!(got == expect)) {
        if (off < 3)
          std::printf("  column %lld row %lld: got %.17g want %.17g\n", static_cast<long long>(c0 + c),
                      static_cast<long long>(i), got, expect);
        ++off;
      }
    }
    if (!constant) ++s;
  }
  char detail[160];
  std::snprintf(detail, sizeof detail, "%d values off, %llu constant columns (CPU %lld), bad %llx", off,
                constants, static_cast<long long>(want_constants), bad);
  report(off == 0 && static_cast<std::int64_t>(constants) == want_constants && bad == ~0ull, "centre", n, f,
         c0, w, standardise, grid, detail);
  // Z Z^T from the kernel's layout against the CPU's Gram of the same columns.
  std::vector<float> sub(static_cast<std::size_t>(n * w));
  for (std::int64_t i = 0; i < n; ++i) std::copy_n(x.data() + i * f + c0, w, sub.data() + i * w);
  const analysis::Gram g =
      analysis::feature_gram(analysis::FeatureMatrix{std::span<const float>(sub), n, w}, standardise);
  double worst = 0.0, largest = 0.0;
  for (double v : g.values) largest = std::max(largest, std::fabs(v));
  for (std::int64_t i = 0; i < n; ++i)
    for (std::int64_t j = 0; j <= i; ++j) {
      double sum = 0.0;
      for (std::int64_t c = 0; c < w; ++c)
        sum += z[static_cast<std::size_t>(i * w + c)] * z[static_cast<std::size_t>(j * w + c)];
      worst = std::max(worst, std::fabs(sum - g.values[static_cast<std::size_t>(i * n + j)]));
    }
  std::snprintf(detail, sizeof detail, "largest difference %.3g of entries up to %.3g", worst, largest);
  report(worst <= 1e-12 * std::max(largest, 1.0), "gram  ", n, f, c0, w, standardise, grid, detail);
}

void check_non_finite(std::int64_t n, std::int64_t f) {
  std::vector<float> x = make_features(n, f, 99);
  x[static_cast<std::size_t>(5 * f + 3)] = std::numeric_limits<float>::quiet_NaN();
  x[static_cast<std::size_t>(2 * f + 9)] = std::numeric_limits<float>::infinity();
  x[static_cast<std::size_t>((n - 1) * f + 0)] = -std::numeric_limits<float>::infinity();
  std::vector<double> mean(static_cast<std::size_t>(f)), scale(static_cast<std::size_t>(f));
  unsigned long long constants = 0, bad = ~0ull;
  emu::launch(dim3(1), emu::kBlock, 0, false, [&] {
    emu::gram_stats_kernel(x.data(), n, f, true, mean.data(), scale.data(), &constants, &bad);
  });
  const unsigned long long want = static_cast<unsigned long long>(2 * f + 9);  // first in row-major order
  char detail[96];
  std::snprintf(detail, sizeof detail, "reported row %llu column %llu (want row 2, column 9)",
                bad / static_cast<unsigned long long>(f), bad % static_cast<unsigned long long>(f));
  report(bad == want, "nonfinite", n, f, 0, f, true, 1, detail);
}

}  // namespace

int main() {
  for (const bool standardise : {false, true}) {
    check_block(2, 1, 0, 1, standardise, 1);
    check_block(3, 40, 0, 40, standardise, 1);
    check_block(37, 700, 0, 300, standardise, 1);     // 300 columns, one block of 256 threads: striding
    check_block(37, 700, 300, 400, standardise, 2);   // a block starting inside the matrix
    check_block(300, 513, 256, 257, standardise, 3);  // more threads than columns
  }
  check_non_finite(8, 20);
  std::printf("%s\n", failures ? "emu_gram: FAILED" : "emu_gram: all passed");
  return failures ? 1 : 0;
}
