// fovea/analysis/features.hpp: feature statistics of a network's layers (REFERENCE §1.4) on the host:
// Grams of centred / standardised activations, the PCA spectrum, its condition number CN(p1, p2) and
// Fisher kurtosis, linear CKA (biased and debiased), embedding health (per-dimension std, effective
// rank, alignment, uniformity) and weighted kNN accuracy.
//
// Host-side only (std::span / std::vector, no tensors, no CUDA), deterministic: the same inputs give
// bitwise the same results for a fixed build and thread count (see docs/features.md). Conventions:
//   - a FeatureMatrix holds samples in rows (row-major float, samples x features), e.g. a layer's
//     activations of N images flattened to N x (C·H·W);
//   - means and variances are computed in double, two-pass; the standard deviation of a feature uses
//     ddof 1 (as numpy's std(ddof=1), sklearn's PCA variances); a feature exactly constant over the
//     samples contributes nothing and is counted;
//   - the PCA spectrum is the descending eigenvalues of the covariance of the standardised features
//     (their correlation matrix), i.e. sklearn's PCA(n_components=k).explained_variance_ on the
//     standardised matrix: eigenvalues of Z^T Z / (n - 1), computed from the n x n Gram Z Z^T when
//     features >= samples and from the F x F matrix Z^T Z otherwise (same nonzero eigenvalues);
//   - percentile is numpy.percentile's default (linear) method, kurtosis scipy.stats.kurtosis's
//     default (Fisher, biased);
//   - dense products in double go through cblas (dsyrk / dgemm) when the build defines FOVEA_WITH_BLAS
//     (OpenBLAS: bitwise reproducible for a fixed thread count and CPU), otherwise through a plain loop
//     whose per-entry summation order is fixed and independent of fovea's thread count. The symmetric
//     eigenvalue solver is fovea's own (Householder tridiagonalisation + implicit QL), in double.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <limits>
#include <numeric>
#include <span>
#include <utility>
#include <vector>

#include "fovea/core/error.hpp"
#include "fovea/core/parallel.hpp"
#include "fovea/cpu/gemm.hpp"  // cblas.h and the OpenBLAS thread hooks when FOVEA_WITH_BLAS

namespace fovea::analysis {

inline constexpr int kDefaultTopEigenvalues = 100;  // REFERENCE §1.4: top-100 PCA eigenvalues
inline constexpr double kDefaultConditionHigh = 99.9, kDefaultConditionLow = 90.0;  // CN(99.9, 90)
inline constexpr int kDefaultKnnNeighbours = 20;
inline constexpr double kDefaultKnnTemperature = 0.07;
inline constexpr double kUniformityScale = 2.0;     // t in log E exp(-t ||z_i - z_j||^2) (Wang & Isola)
inline constexpr double kNormaliseEpsilon = 1e-12;  // rows are divided by max(||row||, eps) (F.normalize)

// Samples in rows: values.size() == samples * features, row-major.
struct FeatureMatrix {
  std::span<const float> values;
  std::int64_t samples = 0, features = 0;
};

// Symmetric n x n matrix, row-major, double.
struct Gram {
  std::int64_t n = 0;
  std::vector<double> values;
};

struct Spectrum {
  std::vector<double> eigenvalues;  // descending, at most top_k: PCA of the standardised features
  std::int64_t samples = 0, features = 0, constant_features = 0;
};

struct EmbeddingHealth {
  std::int64_t samples = 0, dims = 0;
  double dim_std_mean = 0, dim_std_min = 0;  // per-dimension std (ddof 0) of the normalised embeddings
  double dim_std_scaled = 0;  // dim_std_mean * sqrt(dims): ~1 for well-spread embeddings, -> 0 at collapse
  double effective_rank =
      0;  // Roy & Vetterli 2007: exp(entropy of the normalised singular values of the centred matrix)
  double uniformity = 0;  // Wang & Isola 2020: log mean over pairs i<j of exp(-2 ||z_i - z_j||^2)
  double alignment = 0;   // mean ||z_i - z_pos(i)||^2 over rows with a positive; NaN without pairs
};

namespace detail {

inline constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

inline void check_matrix(const FeatureMatrix& x, const char* what, std::int64_t min_samples) {
  FOVEA_CHECK(x.samples >= min_samples, what, " needs at least ", min_samples, " samples, got ", x.samples);
  FOVEA_CHECK(x.features >= 1, what, " needs at least 1 feature, got ", x.features);
  FOVEA_CHECK(static_cast<std::uint64_t>(x.values.size()) ==
                  static_cast<std::uint64_t>(x.samples) * static_cast<std::uint64_t>(x.features),
              what, " has ", x.values.size(), " values but samples x features = ", x.samples, " x ",
              x.features);
}

[[noreturn]] inline void fail_non_finite(const char* what, std::int64_t row, std::int64_t col, double v) {
  FOVEA_FAIL(what, " value at row ", row, ", column ", col, " is not finite (", v, ")");
}

inline void check_finite(const FeatureMatrix& x, const char* what) {
  for (std::int64_t i = 0; i < x.samples; ++i) {
    const float* row = x.values.data() + i * x.features;
    for (std::int64_t c = 0; c < x.features; ++c)
      if (!std::isfinite(row[c])) fail_non_finite(what, i, c, row[c]);
  }
}

inline void check_finite(std::span<const double> v, const char* what) {
  for (std::size_t i = 0; i < v.size(); ++i)
    FOVEA_CHECK(std::isfinite(v[i]), what, "[", i, "] = ", v[i], " is not finite");
}

inline void check_blas_size(std::int64_t v, const char* what) {
  FOVEA_CHECK(v <= std::numeric_limits<int>::max(), what, " = ", v, " exceeds the int range of BLAS");
}

// C (m x p, ldc) += A^T B, A (k x m, lda) and B (k x p, ldb) row-major, by the plain loop. With
// lower_only, only the tiles of C that meet its lower triangle (C = A^T A) are formed; a few entries just
// above the diagonal are formed too. Each entry sums its k products in the order 0..k-1, whatever the
// tiling and the thread count (threads split C's rows), so the result is bitwise reproducible.
inline void product_tn_loop(std::int64_t m, std::int64_t p, std::int64_t k, const double* a, std::int64_t lda,
                            const double* b, std::int64_t ldb, double* c, std::int64_t ldc, bool lower_only) {
  constexpr std::int64_t kRows = 4, kCols = 128;
  const std::int64_t tiles = (m + kRows - 1) / kRows;
  const auto tile = [&](std::int64_t t) {
    const std::int64_t i0 = t * kRows, rows = std::min(kRows, m - i0);
    const std::int64_t cols = lower_only ? std::min(p, i0 + rows) : p;
    for (std::int64_t j0 = 0; j0 < cols; j0 += kCols) {
      const std::int64_t nc = std::min(kCols, cols - j0);
      if (rows == kRows) {
        double* __restrict__ c0 = c + i0 * ldc + j0;
        double* __restrict__ c1 = c0 + ldc;
        double* __restrict__ c2 = c1 + ldc;
        double* __restrict__ c3 = c2 + ldc;
        for (std::int64_t q = 0; q < k; ++q) {
          const double* ar = a + q * lda + i0;
          const double a0 = ar[0], a1 = ar[1], a2 = ar[2], a3 = ar[3];
          const double* __restrict__ br = b + q * ldb + j0;
          for (std::int64_t j = 0; j < nc; ++j) {
            const double bj = br[j];
            c0[j] += a0 * bj;
            c1[j] += a1 * bj;
            c2[j] += a2 * bj;
            c3[j] += a3 * bj;
          }
        }
      } else {
        for (std::int64_t r = 0; r < rows; ++r) {
          double* __restrict__ cr = c + (i0 + r) * ldc + j0;
          for (std::int64_t q = 0; q < k; ++q) {
            const double ar = a[q * lda + i0 + r];
            const double* __restrict__ br = b + q * ldb + j0;
            for (std::int64_t j = 0; j < nc; ++j) cr[j] += ar * br[j];
          }
        }
      }
    }
  };
  // For a triangle, tile t is paired with tile tiles-1-t so the parallel loop's chunks get equal work.
  const std::int64_t items = lower_only ? (tiles + 1) / 2 : tiles;
  parallel_for(
      items,
      [&](std::int64_t begin, std::int64_t end) {
        for (std::int64_t t = begin; t < end; ++t) {
          tile(t);
          if (lower_only && tiles - 1 - t != t) tile(tiles - 1 - t);
        }
      },
      k * kRows * p);
}

// G (n x n, ldg): lower triangle (diagonal included) += A^T A, A (k x n, lda) row-major. cblas_dsyrk
// with FOVEA_WITH_BLAS, else the loop. Entries strictly above the diagonal are unspecified.
inline void syrk_lower(std::int64_t n, std::int64_t k, const double* a, std::int64_t lda, double* g,
                       std::int64_t ldg) {
  if (n == 0 || k == 0) return;
#if defined(FOVEA_WITH_BLAS) && FOVEA_WITH_BLAS
  check_blas_size(n, "syrk: n");
  check_blas_size(k, "syrk: k");
  check_blas_size(std::max(lda, ldg), "syrk: leading dimension");
  cblas_dsyrk(CblasRowMajor, CblasLower, CblasTrans, static_cast<int>(n), static_cast<int>(k), 1.0, a,
              static_cast<int>(lda), 1.0, g, static_cast<int>(ldg));
#else
  product_tn_loop(n, n, k, a, lda, a, lda, g, ldg, true);
#endif
}

// C (m x p, ldc) = A^T B (overwritten), A (k x m, lda), B (k x p, ldb) row-major: cblas_dgemm or the loop.
inline void product_tn(std::int64_t m, std::int64_t p, std::int64_t k, const double* a, std::int64_t lda,
                       const double* b, std::int64_t ldb, double* c, std::int64_t ldc) {
  if (m == 0 || p == 0) return;
#if defined(FOVEA_WITH_BLAS) && FOVEA_WITH_BLAS
  check_blas_size(std::max({m, p, k}), "gemm: size");
  check_blas_size(std::max({lda, ldb, ldc}), "gemm: leading dimension");
  cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, static_cast<int>(m), static_cast<int>(p),
              static_cast<int>(k), 1.0, a, static_cast<int>(lda), b, static_cast<int>(ldb), 0.0, c,
              static_cast<int>(ldc));
#else
  for (std::int64_t i = 0; i < m; ++i) std::fill(c + i * ldc, c + i * ldc + p, 0.0);
  product_tn_loop(m, p, k, a, lda, b, ldb, c, ldc, false);
#endif
}

// Copies the lower triangle of the n x n row-major matrix onto its upper triangle.
inline void mirror_lower(std::int64_t n, double* g) {
  for (std::int64_t i = 0; i < n; ++i)
    for (std::int64_t j = i + 1; j < n; ++j) g[i * n + j] = g[j * n + i];
}

// Columns [c0, c0 + width) of x centred on their means (over the samples) and, with standardise,
// divided by their standard deviations (ddof 1), written transposed: kept column r to out[r * n + i]
// (n = samples). Columns exactly constant over the samples are dropped and counted in *constants; the
// return value is the number kept. Throws on a non-finite value, naming its row and column.
inline std::int64_t centre_columns(const FeatureMatrix& x, std::int64_t c0, std::int64_t width,
                                   bool standardise, double* out, std::int64_t* constants, const char* what) {
  const std::int64_t n = x.samples, f = x.features;
  const float* base = x.values.data() + c0;
  std::vector<double> mean(static_cast<std::size_t>(width), 0.0), scale(static_cast<std::size_t>(width), 0.0);
  std::vector<unsigned char> varies(static_cast<std::size_t>(width), 0);
  for (std::int64_t i = 0; i < n; ++i) {
    const float* row = base + i * f;
    for (std::int64_t c = 0; c < width; ++c) {
      const float v = row[c];
      if (!std::isfinite(v)) fail_non_finite(what, i, c0 + c, v);
      mean[static_cast<std::size_t>(c)] += static_cast<double>(v);
      varies[static_cast<std::size_t>(c)] |= static_cast<unsigned char>(v != base[c]);
    }
  }
  for (double& m : mean) m /= static_cast<double>(n);
  if (standardise) {
    for (std::int64_t i = 0; i < n; ++i) {
      const float* row = base + i * f;
      for (std::int64_t c = 0; c < width; ++c) {
        const double d = static_cast<double>(row[c]) - mean[static_cast<std::size_t>(c)];
        scale[static_cast<std::size_t>(c)] += d * d;
      }
    }
    for (double& s : scale) s = std::sqrt(s / static_cast<double>(n - 1));
  }
  std::vector<std::int64_t> slot(static_cast<std::size_t>(width), -1);
  std::int64_t kept = 0;
  for (std::int64_t c = 0; c < width; ++c)
    if (varies[static_cast<std::size_t>(c)]) slot[static_cast<std::size_t>(c)] = kept++;
  if (constants) *constants += width - kept;
  for (std::int64_t i = 0; i < n; ++i) {
    const float* row = base + i * f;
    for (std::int64_t c = 0; c < width; ++c) {
      const std::int64_t s = slot[static_cast<std::size_t>(c)];
      if (s < 0) continue;
      const double d = static_cast<double>(row[c]) - mean[static_cast<std::size_t>(c)];
      out[s * n + i] = standardise ? d / scale[static_cast<std::size_t>(c)] : d;
    }
  }
  return kept;
}

// Features per block of feature_gram: the block buffer (n x width doubles) stays near 8 MiB.
inline std::int64_t gram_block_width(std::int64_t n) {
  return std::clamp<std::int64_t>((std::int64_t{1} << 20) / std::max<std::int64_t>(n, 1), 32, 1024);
}

// Rows of x in double, each divided by max(||row||_2, kNormaliseEpsilon), written transposed:
// out[c * n + i] (dims x samples). Throws on a non-finite value.
inline std::vector<double> normalised_rows_transposed(const FeatureMatrix& x, const char* what) {
  const std::int64_t n = x.samples, d = x.features;
  std::vector<double> out(static_cast<std::size_t>(n * d));
  for (std::int64_t i = 0; i < n; ++i) {
    const float* row = x.values.data() + i * d;
    double sq = 0.0;
    for (std::int64_t c = 0; c < d; ++c) {
      if (!std::isfinite(row[c])) fail_non_finite(what, i, c, row[c]);
      sq += static_cast<double>(row[c]) * static_cast<double>(row[c]);
    }
    const double norm = std::max(std::sqrt(sq), kNormaliseEpsilon);
    for (std::int64_t c = 0; c < d; ++c)
      out[static_cast<std::size_t>(c * n + i)] = static_cast<double>(row[c]) / norm;
  }
  return out;
}

// Householder reduction of the symmetric n x n matrix a (full storage, overwritten) to tridiagonal form:
// diagonal d (n), off-diagonal e (n - 1, e[i] couples i and i + 1). Same eigenvalues.
inline void tridiagonalise(std::int64_t n, std::vector<double>& a, std::vector<double>& d,
                           std::vector<double>& e) {
  d.assign(static_cast<std::size_t>(n), 0.0);
  e.assign(static_cast<std::size_t>(std::max<std::int64_t>(n - 1, 0)), 0.0);
  std::vector<double> v(static_cast<std::size_t>(n)), p(static_cast<std::size_t>(n));
  for (std::int64_t k = 0; k + 2 < n; ++k) {
    d[static_cast<std::size_t>(k)] = a[static_cast<std::size_t>(k * n + k)];
    const std::int64_t s0 = k + 1, m = n - s0;  // the trailing block is rows / columns s0..n-1
    const double* x = a.data() + k * n + s0;    // column k below the diagonal (= row k, symmetric)
    double big = 0.0;
    for (std::int64_t j = 0; j < m; ++j) big = std::max(big, std::abs(x[j]));
    if (big == 0.0) continue;  // e[k] = 0: column already reduced
    double ss = 0.0;
    for (std::int64_t j = 0; j < m; ++j) ss += (x[j] / big) * (x[j] / big);
    const double norm = big * std::sqrt(ss);
    const double alpha = x[0] >= 0.0 ? -norm : norm;  // x -> alpha e_1, v = x - alpha e_1
    for (std::int64_t j = 0; j < m; ++j) v[static_cast<std::size_t>(j)] = x[j];
    v[0] -= alpha;
    const double h = norm * (norm + std::abs(x[0]));  // v^T v / 2; H = I - v v^T / h
    e[static_cast<std::size_t>(k)] = alpha;
    // p = B v / h, B the trailing block, as a sum of B's rows (symmetric): each thread owns a range of p.
    parallel_for(
        m,
        [&](std::int64_t begin, std::int64_t end) {
          std::fill(p.begin() + begin, p.begin() + end, 0.0);
          for (std::int64_t j = 0; j < m; ++j) {
            const double vj = v[static_cast<std::size_t>(j)];
            if (vj == 0.0) continue;
            const double* row = a.data() + (s0 + j) * n + s0;
            for (std::int64_t i = begin; i < end; ++i) p[static_cast<std::size_t>(i)] += vj * row[i];
          }
          for (std::int64_t i = begin; i < end; ++i) p[static_cast<std::size_t>(i)] /= h;
        },
        m);
    double vp = 0.0;
    for (std::int64_t j = 0; j < m; ++j)
      vp += v[static_cast<std::size_t>(j)] * p[static_cast<std::size_t>(j)];
    const double kk = vp / (2.0 * h);
    for (std::int64_t j = 0; j < m; ++j)
      p[static_cast<std::size_t>(j)] -= kk * v[static_cast<std::size_t>(j)];
    // B -= v q^T + q v^T with q = p - K v (now in p): H B H.
    parallel_for(
        m,
        [&](std::int64_t begin, std::int64_t end) {
          for (std::int64_t i = begin; i < end; ++i) {
            const double vi = v[static_cast<std::size_t>(i)], qi = p[static_cast<std::size_t>(i)];
            double* row = a.data() + (s0 + i) * n + s0;
            for (std::int64_t j = 0; j < m; ++j)
              row[j] -= vi * p[static_cast<std::size_t>(j)] + qi * v[static_cast<std::size_t>(j)];
          }
        },
        m);
  }
  if (n >= 2) {
    d[static_cast<std::size_t>(n - 2)] = a[static_cast<std::size_t>((n - 2) * n + n - 2)];
    e[static_cast<std::size_t>(n - 2)] = a[static_cast<std::size_t>((n - 1) * n + n - 2)];
  }
  if (n >= 1) d[static_cast<std::size_t>(n - 1)] = a[static_cast<std::size_t>((n - 1) * n + n - 1)];
}

// Eigenvalues of the symmetric tridiagonal matrix (d, e) by implicit QL sweeps with a Wilkinson-type
// shift from the leading 2 x 2 block; d is overwritten with the eigenvalues (unordered).
inline void tridiagonal_eigenvalues(std::vector<double>& d, std::vector<double> e) {
  const std::int64_t n = static_cast<std::int64_t>(d.size());
  constexpr int kMaxSweeps = 64;  // per eigenvalue; a few suffice in practice
  constexpr double kEps = std::numeric_limits<double>::epsilon();
  e.resize(static_cast<std::size_t>(n), 0.0);  // e[n - 1] = 0 ends every search
  const auto at = [](std::vector<double>& v, std::int64_t i) -> double& {
    return v[static_cast<std::size_t>(i)];
  };
  for (std::int64_t l = 0; l < n; ++l) {
    for (int sweep = 0;; ++sweep) {
      std::int64_t m = l;  // the first negligible coupling at or after l splits off the block [l, m]
      for (; m + 1 < n; ++m) {
        const double off = std::abs(at(e, m));
        if (off <= kEps * (std::abs(at(d, m)) + std::abs(at(d, m + 1))) ||
            off < std::numeric_limits<double>::min())
          break;
      }
      if (m == l) break;
      FOVEA_CHECK(sweep < kMaxSweeps, "symmetric eigenvalues: implicit QL did not converge at index ", l);
      // Shift: the eigenvalue of [[d_l, e_l], [e_l, d_{l+1}]] nearer d_l; g starts as d_m - shift.
      double g = (at(d, l + 1) - at(d, l)) / (2.0 * at(e, l));
      double r = std::hypot(g, 1.0);
      g = at(d, m) - at(d, l) + at(e, l) / (g + std::copysign(r, g));
      double s = 1.0, c = 1.0, p = 0.0;
      bool restarted = false;
      for (std::int64_t i = m - 1; i >= l; --i) {  // chase the bulge from m up to l by Givens rotations
        const double f = s * at(e, i), b = c * at(e, i);
        r = std::hypot(f, g);
        at(e, i + 1) = r;
        if (r == 0.0) {  // the rotation underflowed: deflate here and restart the sweep
          at(d, i + 1) -= p;
          at(e, m) = 0.0;
          restarted = true;
          break;
        }
        s = f / r;
        c = g / r;
        g = at(d, i + 1) - p;
        r = (at(d, i) - g) * s + 2.0 * c * b;
        p = s * r;
        at(d, i + 1) = g + p;
        g = c * r - b;
      }
      if (restarted) continue;
      at(d, l) -= p;
      at(e, l) = g;
      at(e, m) = 0.0;
    }
  }
}

}  // namespace detail

// ---- eigenvalues ------------------------------------------------------------------------------------

// symmetric_eigenvalues: all eigenvalues of a real symmetric matrix, descending.
//   requires: a.size() == n * n (row-major), n >= 1, finite; only the lower triangle (j <= i) is read.
//   ensures: n eigenvalues, descending; absolute error about n * eps * max |eigenvalue|. O(n^3) time
//            (Householder tridiagonalisation, 4/3 n^3 multiply-adds), n^2 doubles of workspace.
inline std::vector<double> symmetric_eigenvalues(std::span<const double> a, std::int64_t n) {
  FOVEA_CHECK(n >= 1, "symmetric_eigenvalues: n must be >= 1, got ", n);
  FOVEA_CHECK(
      static_cast<std::uint64_t>(a.size()) == static_cast<std::uint64_t>(n) * static_cast<std::uint64_t>(n),
      "symmetric_eigenvalues: the matrix has ", a.size(), " entries but n x n = ", n, " x ", n);
  std::vector<double> w(static_cast<std::size_t>(n * n));
  for (std::int64_t i = 0; i < n; ++i)
    for (std::int64_t j = 0; j <= i; ++j) {
      const double v = a[static_cast<std::size_t>(i * n + j)];
      FOVEA_CHECK(std::isfinite(v), "symmetric_eigenvalues: entry (", i, ", ", j, ") = ", v,
                  " is not finite");
      w[static_cast<std::size_t>(i * n + j)] = w[static_cast<std::size_t>(j * n + i)] = v;
    }
  std::vector<double> d, e;
  detail::tridiagonalise(n, w, d, e);
  detail::tridiagonal_eigenvalues(d, std::move(e));
  std::sort(d.begin(), d.end(), std::greater<double>());
  return d;
}

// gram_eigenvalues: the k = min(top_k, n) largest eigenvalues of the covariance whose Gram is g, i.e. of
// g / (n - 1) (the nonzero eigenvalues of X^T X / (n - 1) equal those of X X^T / (n - 1)).
//   requires: g.n >= 2, g.values.size() == n * n, finite, symmetric (the lower triangle is read);
//             top_k >= 1.
//   ensures: descending; negative values (round-off of a positive semi-definite Gram) clamped to 0.
inline std::vector<double> gram_eigenvalues(const Gram& g, int top_k) {
  FOVEA_CHECK(top_k >= 1, "gram_eigenvalues: top_k must be >= 1, got ", top_k);
  FOVEA_CHECK(g.n >= 2, "gram_eigenvalues: the covariance needs n >= 2 samples, got n = ", g.n);
  std::vector<double> ev = symmetric_eigenvalues(g.values, g.n);
  ev.resize(static_cast<std::size_t>(std::min<std::int64_t>(top_k, g.n)));
  for (double& v : ev) v = std::max(v / static_cast<double>(g.n - 1), 0.0);
  return ev;
}

// ---- Grams --------------------------------------------------------------------------------------------

// add_to_feature_gram: g += the Gram of x's features after centring each on its mean over the samples
// and, with standardise, dividing it by its standard deviation (ddof 1). Grams of disjoint feature
// sets of the same samples add up to the Gram of their union, so a layer can be passed in parts.
//   requires: x.samples == g.n >= 2 (a default Gram{} is sized on first use), x finite.
//   ensures: returns the number of features of x exactly constant over the samples (they add nothing);
//            g stays exactly symmetric.
inline std::int64_t add_to_feature_gram(Gram& g, const FeatureMatrix& x, bool standardise) {
  detail::check_matrix(x, "feature_gram: x", 2);
  if (g.n == 0 && g.values.empty())
    g = Gram{x.samples, std::vector<double>(static_cast<std::size_t>(x.samples * x.samples), 0.0)};
  FOVEA_CHECK(g.n == x.samples, "feature_gram: the Gram is ", g.n, " x ", g.n, " but x has ", x.samples,
              " samples");
  FOVEA_CHECK(g.values.size() == static_cast<std::size_t>(g.n * g.n), "feature_gram: the Gram has ",
              g.values.size(), " values, not ", g.n, " x ", g.n);
  const std::int64_t n = x.samples, width = detail::gram_block_width(n);
  std::vector<double> block(static_cast<std::size_t>(std::min(width, x.features) * n));  // (kept, n)
  std::int64_t constants = 0;
  for (std::int64_t c0 = 0; c0 < x.features; c0 += width) {
    const std::int64_t w = std::min(width, x.features - c0);
    const std::int64_t kept =
        detail::centre_columns(x, c0, w, standardise, block.data(), &constants, "feature_gram: x");
    detail::syrk_lower(n, kept, block.data(), n, g.values.data(), n);
  }
  detail::mirror_lower(n, g.values.data());
  return constants;
}

// feature_gram: the n x n Gram Z Z^T of x's features centred on their means over the samples and, when
// standardise, divided by their standard deviations (ddof 1). Features exactly constant over the samples
// contribute nothing and are counted in *constant_features when given.
//   requires: x.samples >= 2, x.features >= 1, values.size() == samples * features, finite.
//   ensures: symmetric, positive semi-definite up to round-off. Cost: samples^2 * features / 2
//            multiply-adds in double (dsyrk by blocks of features), memory samples^2 doubles for the
//            Gram plus a block of samples x min(1024, 2^20 / samples) doubles; x is never copied whole.
inline Gram feature_gram(const FeatureMatrix& x, bool standardise,
                         std::int64_t* constant_features = nullptr) {
  Gram g;
  const std::int64_t constants = add_to_feature_gram(g, x, standardise);
  if (constant_features) *constant_features = constants;
  return g;
}

// ---- PCA spectrum, percentiles, condition number, kurtosis ---------------------------------------------

// pca_spectrum: the k = min(top_k, samples, features) largest eigenvalues of the covariance of the
// standardised features (ddof 1), descending; zeros beyond the rank (at most samples - 1).
//   requires: x.samples >= 2, x.features >= 1, sizes match, finite; top_k >= 1.
//   ensures: equals sklearn PCA(k).explained_variance_ of x standardised with ddof 1 (constant columns
//            set to 0; StandardScaler divides by the ddof-0 std, which scales every eigenvalue by
//            n / (n - 1)). Uses the samples x samples Gram when features >= samples, the
//            features x features matrix Z^T Z otherwise.
inline Spectrum pca_spectrum(const FeatureMatrix& x, int top_k = kDefaultTopEigenvalues) {
  FOVEA_CHECK(top_k >= 1, "pca_spectrum: top_k must be >= 1, got ", top_k);
  detail::check_matrix(x, "pca_spectrum: x", 2);
  Spectrum s;
  s.samples = x.samples;
  s.features = x.features;
  const std::int64_t k = std::min<std::int64_t>({top_k, x.samples, x.features});
  if (x.features >= x.samples) {
    const Gram g = feature_gram(x, true, &s.constant_features);
    s.eigenvalues = gram_eigenvalues(g, static_cast<int>(k));
    return s;
  }
  // Fewer features than samples: Z^T Z (F x F) from the kept standardised columns.
  const std::int64_t n = x.samples, f = x.features;
  std::vector<double> zt(static_cast<std::size_t>(f * n));  // (kept, n)
  const std::int64_t kept =
      detail::centre_columns(x, 0, f, true, zt.data(), &s.constant_features, "pca_spectrum: x");
  std::vector<double> ev(static_cast<std::size_t>(f), 0.0);
  if (kept > 0) {
    std::vector<double> z(static_cast<std::size_t>(n * kept));  // (n, kept)
    for (std::int64_t r = 0; r < kept; ++r)
      for (std::int64_t i = 0; i < n; ++i)
        z[static_cast<std::size_t>(i * kept + r)] = zt[static_cast<std::size_t>(r * n + i)];
    std::vector<double> cov(static_cast<std::size_t>(kept * kept), 0.0);
    detail::syrk_lower(kept, n, z.data(), kept, cov.data(), kept);
    const std::vector<double> kev = symmetric_eigenvalues(cov, kept);
    for (std::int64_t r = 0; r < kept; ++r)
      ev[static_cast<std::size_t>(r)] =
          std::max(kev[static_cast<std::size_t>(r)] / static_cast<double>(n - 1), 0.0);
  }
  ev.resize(static_cast<std::size_t>(k));
  s.eigenvalues = std::move(ev);
  return s;
}

// percentile: numpy.percentile(v, q) with the default linear method: the sorted values at virtual index
// (n - 1) * q / 100, interpolated as numpy does (a + (b - a) t, or b - (b - a)(1 - t) when t >= 0.5).
//   requires: v non-empty and finite; q in [0, 100].
inline double percentile(std::span<const double> v, double q) {
  FOVEA_CHECK(!v.empty(), "percentile: no values");
  FOVEA_CHECK(q >= 0.0 && q <= 100.0, "percentile: q must be in [0, 100], got ", q);
  detail::check_finite(v, "percentile: v");
  std::vector<double> s(v.begin(), v.end());
  std::sort(s.begin(), s.end());
  const std::int64_t n = static_cast<std::int64_t>(s.size());
  const double index = static_cast<double>(n - 1) * (q / 100.0);
  if (index >= static_cast<double>(n - 1)) return s.back();
  const std::int64_t lo = static_cast<std::int64_t>(std::floor(index));
  const double t = index - static_cast<double>(lo);
  const double a = s[static_cast<std::size_t>(lo)], b = s[static_cast<std::size_t>(lo + 1)], diff = b - a;
  return t >= 0.5 ? b - diff * (1.0 - t) : a + diff * t;
}

// condition_number: CN(p1, p2) = percentile_p1(eigenvalues) / percentile_p2(eigenvalues) (REFERENCE
// §1.4; default CN(99.9, 90)).
//   requires: as percentile. ensures: +inf when the denominator is 0 and the numerator positive (-inf
//   when negative), NaN when both are 0.
inline double condition_number(std::span<const double> eigenvalues, double p1 = kDefaultConditionHigh,
                               double p2 = kDefaultConditionLow) {
  const double num = percentile(eigenvalues, p1), den = percentile(eigenvalues, p2);
  if (den == 0.0)
    return num == 0.0 ? detail::kNaN : std::copysign(std::numeric_limits<double>::infinity(), num);
  return num / den;
}

// fisher_kurtosis: scipy.stats.kurtosis(v) with its defaults (fisher=True, bias=True): m4 / m2^2 - 3,
// m_k the k-th central moment with divisor n.
//   requires: v non-empty and finite. ensures: NaN where scipy gives NaN: m2 <= (1e-15 * mean)^2
//   (constant data, including one value).
inline double fisher_kurtosis(std::span<const double> v) {
  FOVEA_CHECK(!v.empty(), "fisher_kurtosis: no values");
  detail::check_finite(v, "fisher_kurtosis: v");
  const double n = static_cast<double>(v.size());
  double sum = 0.0;
  for (double x : v) sum += x;
  const double mean = sum / n;
  double m2 = 0.0, m4 = 0.0;
  for (double x : v) {
    const double d2 = (x - mean) * (x - mean);
    m2 += d2;
    m4 += d2 * d2;
  }
  m2 /= n;
  m4 /= n;
  if (m2 <= (1e-15 * mean) * (1e-15 * mean)) return detail::kNaN;
  return m4 / (m2 * m2) - 3.0;
}

// ---- CKA -----------------------------------------------------------------------------------------------

// linear_cka: linear CKA (Kornblith et al. 2019) of two Grams of the same n samples.
//   Biased: HSIC(K, L) = <HKH, HLH>_F (H the centring matrix; the Grams are re-centred, so an
//   uncentred Gram X X^T gives the same value as the centred one), CKA = HSIC(K, L) /
//   sqrt(HSIC(K, K) HSIC(L, L)), in [0, 1]; requires n >= 2.
//   Debiased: HSIC is the unbiased estimator of Song et al. 2012 (with K~, L~ the Grams with zeroed
//   diagonals) [tr(K~ L~) + 1'K~1 1'L~1 / ((n-1)(n-2)) - 2/(n-2) 1'K~L~1] / (n(n-3)), as in Kornblith's
//   debiased CKA; near 0 for independent features, in [-1, 1]; requires n >= 4.
//   requires: k.n == l.n, values.size() == n * n, finite, symmetric.
//   ensures: NaN when HSIC(K, K) or HSIC(L, L) is not positive (a Gram of constant features).
inline double linear_cka(const Gram& k, const Gram& l, bool debiased = false) {
  FOVEA_CHECK(k.n == l.n, "linear_cka: the Grams are ", k.n, " x ", k.n, " and ", l.n, " x ", l.n);
  const std::int64_t n = k.n;
  FOVEA_CHECK(n >= (debiased ? 4 : 2), "linear_cka: ", debiased ? "debiased" : "biased",
              " CKA needs n >= ", debiased ? 4 : 2, " samples, got ", n);
  const std::size_t nn = static_cast<std::size_t>(n * n);
  FOVEA_CHECK(k.values.size() == nn && l.values.size() == nn, "linear_cka: the Grams have ", k.values.size(),
              " and ", l.values.size(), " values, not ", n, " x ", n);
  detail::check_finite(k.values, "linear_cka: k");
  detail::check_finite(l.values, "linear_cka: l");
  const auto idx = [n](std::int64_t i, std::int64_t j) { return static_cast<std::size_t>(i * n + j); };
  const double dn = static_cast<double>(n);
  double hkl = 0.0, hkk = 0.0, hll = 0.0;
  if (!debiased) {
    // Centred entry: m_ij - rowmean_i - colmean_j + mean.
    const auto centring = [&](const std::vector<double>& m, std::vector<double>& row,
                              std::vector<double>& col) {
      row.assign(static_cast<std::size_t>(n), 0.0);
      col.assign(static_cast<std::size_t>(n), 0.0);
      double all = 0.0;
      for (std::int64_t i = 0; i < n; ++i)
        for (std::int64_t j = 0; j < n; ++j) {
          row[static_cast<std::size_t>(i)] += m[idx(i, j)];
          col[static_cast<std::size_t>(j)] += m[idx(i, j)];
        }
      for (std::int64_t i = 0; i < n; ++i) {
        all += row[static_cast<std::size_t>(i)];
        row[static_cast<std::size_t>(i)] /= dn;
        col[static_cast<std::size_t>(i)] /= dn;
      }
      return all / (dn * dn);
    };
    std::vector<double> kr, kc, lr, lc;
    const double km = centring(k.values, kr, kc), lm = centring(l.values, lr, lc);
    for (std::int64_t i = 0; i < n; ++i)
      for (std::int64_t j = 0; j < n; ++j) {
        const double a =
            k.values[idx(i, j)] - kr[static_cast<std::size_t>(i)] - kc[static_cast<std::size_t>(j)] + km;
        const double b =
            l.values[idx(i, j)] - lr[static_cast<std::size_t>(i)] - lc[static_cast<std::size_t>(j)] + lm;
        hkl += a * b;
        hkk += a * a;
        hll += b * b;
      }
  } else {
    // Row and column sums of the zero-diagonal Grams; 1'K~L~1 = sum_j colsum(K~)_j rowsum(L~)_j.
    std::vector<double> kr(static_cast<std::size_t>(n), 0.0), kc(static_cast<std::size_t>(n), 0.0),
        lr(static_cast<std::size_t>(n), 0.0), lc(static_cast<std::size_t>(n), 0.0);
    double tkl = 0.0, tkk = 0.0, tll = 0.0;
    for (std::int64_t i = 0; i < n; ++i)
      for (std::int64_t j = 0; j < n; ++j) {
        if (i == j) continue;
        const double a = k.values[idx(i, j)], b = l.values[idx(j, i)];  // tr(K~L~) = sum K~_ij L~_ji
        const double bt = l.values[idx(i, j)], at = k.values[idx(j, i)];
        kr[static_cast<std::size_t>(i)] += a;
        kc[static_cast<std::size_t>(j)] += a;
        lr[static_cast<std::size_t>(i)] += bt;
        lc[static_cast<std::size_t>(j)] += bt;
        tkl += a * b;
        tkk += a * at;
        tll += bt * b;
      }
    // HSIC(A, B) from tr(A~B~), A~'s column and row sums and B~'s row sums.
    const auto hsic = [&](double trace, const std::vector<double>& ac, const std::vector<double>& ar,
                          const std::vector<double>& br) {
      double sa = 0.0, sb = 0.0, cross = 0.0;
      for (std::int64_t j = 0; j < n; ++j) {
        sa += ar[static_cast<std::size_t>(j)];
        sb += br[static_cast<std::size_t>(j)];
        cross += ac[static_cast<std::size_t>(j)] * br[static_cast<std::size_t>(j)];
      }
      return (trace + sa * sb / ((dn - 1.0) * (dn - 2.0)) - 2.0 / (dn - 2.0) * cross) / (dn * (dn - 3.0));
    };
    hkl = hsic(tkl, kc, kr, lr);
    hkk = hsic(tkk, kc, kr, kr);
    hll = hsic(tll, lc, lr, lr);
  }
  if (!(hkk > 0.0) || !(hll > 0.0)) return detail::kNaN;
  return hkl / std::sqrt(hkk * hll);
}

// linear_cka of two layers' features of the same samples (any feature counts): CKA of their centred,
// not standardised, Grams (feature_gram(x, false)).
//   requires: x.samples == y.samples (>= 2, >= 4 when debiased), each matrix as feature_gram requires.
inline double linear_cka(const FeatureMatrix& x, const FeatureMatrix& y, bool debiased = false) {
  FOVEA_CHECK(x.samples == y.samples, "linear_cka: x has ", x.samples, " samples but y has ", y.samples);
  return linear_cka(feature_gram(x, false), feature_gram(y, false), debiased);
}

// ---- embedding health ------------------------------------------------------------------------------------

// embedding_health: statistics of (samples x dims) embeddings z, each row first L2-normalised
// (divided by max(||row||, 1e-12), as torch.nn.functional.normalize):
//   dim_std_*: per-dimension std (ddof 0) of the normalised rows, its mean, min, and mean * sqrt(dims)
//     (1/sqrt(dims) per dimension for rows spread uniformly on the sphere; 0 at collapse);
//   effective_rank: exp(-sum p_i log p_i), p_i = s_i / sum s, s the singular values of the normalised
//     rows centred on their mean; 1 when that matrix is exactly 0 (every row the same);
//   uniformity: log of the mean over pairs i < j of exp(-2 ||z_i - z_j||^2) (all pairs, positives too);
//   alignment: mean of ||z_i - z_pos(i)||^2 over rows i with positive[i] >= 0; NaN when there are none.
//   requires: z.samples >= 2, z.features >= 1, sizes match, finite; positive empty or one entry per row,
//             each -1 or a row index in [0, samples).
//   Cost: samples^2 * dims multiply-adds (uniformity), min(samples, dims)^3 (effective rank).
inline EmbeddingHealth embedding_health(const FeatureMatrix& z, std::span<const std::int64_t> positive = {}) {
  detail::check_matrix(z, "embedding_health: z", 2);
  const std::int64_t n = z.samples, d = z.features;
  FOVEA_CHECK(positive.empty() || static_cast<std::int64_t>(positive.size()) == n,
              "embedding_health: positive has ", positive.size(), " entries but z has ", n,
              " rows (give none or one per row)");
  for (std::size_t i = 0; i < positive.size(); ++i)
    FOVEA_CHECK(positive[i] >= -1 && positive[i] < n, "embedding_health: positive[", i, "] = ", positive[i],
                " is neither -1 nor a row index in [0, ", n, ")");
  EmbeddingHealth h;
  h.samples = n;
  h.dims = d;
  const std::vector<double> zt = detail::normalised_rows_transposed(z, "embedding_health: z");  // (d, n)
  const auto at = [&](std::int64_t i, std::int64_t c) { return zt[static_cast<std::size_t>(c * n + i)]; };

  // Per-dimension mean and std (ddof 0); an exactly constant dimension has std 0 and centres to 0.
  std::vector<double> centred(static_cast<std::size_t>(n * d));  // (n, d)
  double std_sum = 0.0, std_min = std::numeric_limits<double>::infinity();
  for (std::int64_t c = 0; c < d; ++c) {
    const double* col = zt.data() + c * n;
    double sum = 0.0;
    bool varies = false;
    for (std::int64_t i = 0; i < n; ++i) {
      sum += col[i];
      varies |= col[i] != col[0];
    }
    const double mean = sum / static_cast<double>(n);
    double ss = 0.0;
    for (std::int64_t i = 0; i < n; ++i) {
      const double dv = varies ? col[i] - mean : 0.0;
      centred[static_cast<std::size_t>(i * d + c)] = dv;
      ss += dv * dv;
    }
    const double sd = std::sqrt(ss / static_cast<double>(n));
    std_sum += sd;
    std_min = std::min(std_min, sd);
  }
  h.dim_std_mean = std_sum / static_cast<double>(d);
  h.dim_std_min = std_min;
  h.dim_std_scaled = h.dim_std_mean * std::sqrt(static_cast<double>(d));

  // Effective rank from the eigenvalues of the smaller of C^T C (d x d) and C C^T (n x n).
  {
    const std::int64_t m = std::min(n, d);
    std::vector<double> g(static_cast<std::size_t>(m * m), 0.0);
    if (d <= n) {
      detail::syrk_lower(d, n, centred.data(), d, g.data(), d);
    } else {
      std::vector<double> ct(static_cast<std::size_t>(d * n));  // (d, n)
      for (std::int64_t i = 0; i < n; ++i)
        for (std::int64_t c = 0; c < d; ++c)
          ct[static_cast<std::size_t>(c * n + i)] = centred[static_cast<std::size_t>(i * d + c)];
      detail::syrk_lower(n, d, ct.data(), n, g.data(), n);
    }
    const std::vector<double> ev = symmetric_eigenvalues(g, m);
    std::vector<double> sv(ev.size());
    double total = 0.0;
    for (std::size_t i = 0; i < ev.size(); ++i) total += sv[i] = std::sqrt(std::max(ev[i], 0.0));
    if (total == 0.0) {
      h.effective_rank = 1.0;
    } else {
      double entropy = 0.0;
      for (double s : sv)
        if (s > 0.0) entropy -= (s / total) * std::log(s / total);
      h.effective_rank = std::exp(entropy);
    }
  }

  // Uniformity over pairs i < j, by blocks of rows: ||z_i - z_j||^2 = |z_i|^2 + |z_j|^2 - 2 z_i.z_j.
  {
    std::vector<double> sq(static_cast<std::size_t>(n), 0.0);
    for (std::int64_t c = 0; c < d; ++c)
      for (std::int64_t i = 0; i < n; ++i) sq[static_cast<std::size_t>(i)] += at(i, c) * at(i, c);
    constexpr std::int64_t kBlock = 256;
    std::vector<double> dots(static_cast<std::size_t>(std::min(kBlock, n) * n));
    double sum = 0.0;
    for (std::int64_t r0 = 0; r0 < n; r0 += kBlock) {
      const std::int64_t rows = std::min(kBlock, n - r0);
      detail::product_tn(rows, n, d, zt.data() + r0, n, zt.data(), n, dots.data(), n);
      for (std::int64_t r = 0; r < rows; ++r) {
        const std::int64_t i = r0 + r;
        for (std::int64_t j = i + 1; j < n; ++j) {
          const double dist = std::max(sq[static_cast<std::size_t>(i)] + sq[static_cast<std::size_t>(j)] -
                                           2.0 * dots[static_cast<std::size_t>(r * n + j)],
                                       0.0);
          sum += std::exp(-kUniformityScale * dist);
        }
      }
    }
    h.uniformity = std::log(sum / (0.5 * static_cast<double>(n) * static_cast<double>(n - 1)));
  }

  // Alignment over the rows that have a positive.
  {
    double sum = 0.0;
    std::int64_t pairs = 0;
    for (std::int64_t i = 0; i < static_cast<std::int64_t>(positive.size()); ++i) {
      const std::int64_t j = positive[static_cast<std::size_t>(i)];
      if (j < 0) continue;
      double dist = 0.0;
      for (std::int64_t c = 0; c < d; ++c) dist += (at(i, c) - at(j, c)) * (at(i, c) - at(j, c));
      sum += dist;
      ++pairs;
    }
    h.alignment = pairs == 0 ? detail::kNaN : sum / static_cast<double>(pairs);
  }
  return h;
}

// ---- kNN -------------------------------------------------------------------------------------------------

// knn_accuracy: weighted kNN classification accuracy (Wu et al. 2018, as MoCo / DINO monitor it): rows
// L2-normalised (as embedding_health), similarity the cosine; the min(k, train samples) most similar
// train rows (equal similarities: lower train index first) vote for their label with weight
// exp(sim / temperature); the prediction is the class with the largest summed vote (ties: lowest class).
//   requires: train.samples, test.samples >= 1; train.features == test.features; label spans one entry
//             per row, each in [0, num_classes); num_classes >= 1; k >= 1; temperature > 0; finite.
//   ensures: the fraction of test rows predicted correctly. Cost: test x train x features multiply-adds
//            (dgemm by blocks of 256 test rows), memory 256 x train doubles plus both normalised copies.
inline double knn_accuracy(const FeatureMatrix& train, std::span<const int> train_labels,
                           const FeatureMatrix& test, std::span<const int> test_labels, int num_classes,
                           int k = kDefaultKnnNeighbours, double temperature = kDefaultKnnTemperature) {
  detail::check_matrix(train, "knn_accuracy: train", 1);
  detail::check_matrix(test, "knn_accuracy: test", 1);
  FOVEA_CHECK(train.features == test.features, "knn_accuracy: train has ", train.features,
              " features but test has ", test.features);
  FOVEA_CHECK(num_classes >= 1, "knn_accuracy: num_classes must be >= 1, got ", num_classes);
  FOVEA_CHECK(k >= 1, "knn_accuracy: k must be >= 1, got ", k);
  FOVEA_CHECK(temperature > 0.0 && std::isfinite(temperature),
              "knn_accuracy: temperature must be positive, got ", temperature);
  FOVEA_CHECK(static_cast<std::int64_t>(train_labels.size()) == train.samples,
              "knn_accuracy: train_labels has ", train_labels.size(), " entries but train has ",
              train.samples, " rows");
  FOVEA_CHECK(static_cast<std::int64_t>(test_labels.size()) == test.samples, "knn_accuracy: test_labels has ",
              test_labels.size(), " entries but test has ", test.samples, " rows");
  for (std::size_t i = 0; i < train_labels.size(); ++i)
    FOVEA_CHECK(train_labels[i] >= 0 && train_labels[i] < num_classes, "knn_accuracy: train_labels[", i,
                "] = ", train_labels[i], " is not a class index in [0, ", num_classes, ")");
  for (std::size_t i = 0; i < test_labels.size(); ++i)
    FOVEA_CHECK(test_labels[i] >= 0 && test_labels[i] < num_classes, "knn_accuracy: test_labels[", i,
                "] = ", test_labels[i], " is not a class index in [0, ", num_classes, ")");
  const std::int64_t nt = train.samples, nq = test.samples, d = train.features;
  const std::vector<double> a = detail::normalised_rows_transposed(train, "knn_accuracy: train");  // (d, nt)
  const std::vector<double> b = detail::normalised_rows_transposed(test, "knn_accuracy: test");    // (d, nq)
  const std::int64_t kk = std::min<std::int64_t>(k, nt);
  constexpr std::int64_t kBlock = 256;
  std::vector<double> sim(static_cast<std::size_t>(std::min(kBlock, nq) * nt));
  std::vector<std::int64_t> order(static_cast<std::size_t>(nt));
  std::vector<double> votes(static_cast<std::size_t>(num_classes));
  std::int64_t correct = 0;
  for (std::int64_t r0 = 0; r0 < nq; r0 += kBlock) {
    const std::int64_t rows = std::min(kBlock, nq - r0);
    detail::product_tn(rows, nt, d, b.data() + r0, nq, a.data(), nt, sim.data(), nt);
    for (std::int64_t r = 0; r < rows; ++r) {
      const double* s = sim.data() + r * nt;
      std::iota(order.begin(), order.end(), std::int64_t{0});
      std::partial_sort(order.begin(), order.begin() + kk, order.end(), [s](std::int64_t x, std::int64_t y) {
        return s[x] > s[y] || (s[x] == s[y] && x < y);
      });
      std::fill(votes.begin(), votes.end(), 0.0);
      for (std::int64_t t = 0; t < kk; ++t) {
        const std::int64_t j = order[static_cast<std::size_t>(t)];
        votes[static_cast<std::size_t>(train_labels[static_cast<std::size_t>(j)])] +=
            std::exp(s[j] / temperature);
      }
      const int predicted = static_cast<int>(std::max_element(votes.begin(), votes.end()) - votes.begin());
      correct += predicted == test_labels[static_cast<std::size_t>(r0 + r)];
    }
  }
  return static_cast<double>(correct) / static_cast<double>(nq);
}

}  // namespace fovea::analysis
