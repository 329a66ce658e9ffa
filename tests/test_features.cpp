// tests/test_features.cpp: feature statistics (fovea/analysis/features.hpp) against hand-computed values,
// direct double-precision loops, matrices of known spectrum, invariances, and values recorded from
// numpy / scipy / scikit-learn.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <limits>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "fovea/analysis/features.hpp"
#include "fovea/analysis/features_device.hpp"
#include "fovea/core/error.hpp"
#include "fovea/core/parallel.hpp"

namespace fovea::analysis {
namespace {

using Doubles = std::vector<double>;
using Floats = std::vector<float>;

// ---- helpers --------------------------------------------------------------------------------------------

FeatureMatrix view(const Floats& v, std::int64_t samples, std::int64_t features) {
  return FeatureMatrix{std::span<const float>(v), samples, features};
}

// A samples x features matrix with entry f(i, j), rounded to float.
template <class F>
Floats tabulate(std::int64_t samples, std::int64_t features, F f) {
  Floats v(static_cast<std::size_t>(samples * features));
  for (std::int64_t i = 0; i < samples; ++i)
    for (std::int64_t j = 0; j < features; ++j)
      v[static_cast<std::size_t>(i * features + j)] = static_cast<float>(f(i, j));
  return v;
}

Floats gaussian(std::int64_t samples, std::int64_t features, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> nd;
  return tabulate(samples, features, [&](std::int64_t, std::int64_t) { return nd(rng); });
}

// A random n x n orthogonal matrix (row-major): modified Gram-Schmidt on Gaussian columns.
Doubles random_orthogonal(std::int64_t n, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> nd;
  Doubles q(static_cast<std::size_t>(n * n));
  for (double& v : q) v = nd(rng);
  const auto at = [&](std::int64_t i, std::int64_t j) -> double& {
    return q[static_cast<std::size_t>(i * n + j)];
  };
  for (std::int64_t c = 0; c < n; ++c) {
    for (std::int64_t p = 0; p < c; ++p) {
      double dot = 0.0;
      for (std::int64_t i = 0; i < n; ++i) dot += at(i, c) * at(i, p);
      for (std::int64_t i = 0; i < n; ++i) at(i, c) -= dot * at(i, p);
    }
    double norm = 0.0;
    for (std::int64_t i = 0; i < n; ++i) norm += at(i, c) * at(i, c);
    norm = std::sqrt(norm);
    for (std::int64_t i = 0; i < n; ++i) at(i, c) /= norm;
  }
  return q;
}

// Q diag(lambda) Q^T, exactly symmetric.
Doubles with_spectrum(const Doubles& lambda, std::uint64_t seed) {
  const std::int64_t n = static_cast<std::int64_t>(lambda.size());
  const Doubles q = random_orthogonal(n, seed);
  Doubles a(static_cast<std::size_t>(n * n), 0.0);
  for (std::int64_t i = 0; i < n; ++i)
    for (std::int64_t j = 0; j <= i; ++j) {
      double s = 0.0;
      for (std::int64_t k = 0; k < n; ++k)
        s += q[static_cast<std::size_t>(i * n + k)] * lambda[static_cast<std::size_t>(k)] *
             q[static_cast<std::size_t>(j * n + k)];
      a[static_cast<std::size_t>(i * n + j)] = a[static_cast<std::size_t>(j * n + i)] = s;
    }
  return a;
}

Doubles descending(Doubles v) {
  std::sort(v.begin(), v.end(), std::greater<double>());
  return v;
}

// Columns standardised in double (ddof 1; constant columns zero, or only centred without standardise).
Doubles standardised(const Floats& x, std::int64_t n, std::int64_t f, bool standardise) {
  Doubles z(static_cast<std::size_t>(n * f));
  for (std::int64_t j = 0; j < f; ++j) {
    double mean = 0.0, ss = 0.0;
    for (std::int64_t i = 0; i < n; ++i) mean += x[static_cast<std::size_t>(i * f + j)];
    mean /= static_cast<double>(n);
    for (std::int64_t i = 0; i < n; ++i) {
      const double d = x[static_cast<std::size_t>(i * f + j)] - mean;
      ss += d * d;
    }
    const double sd = std::sqrt(ss / static_cast<double>(n - 1));
    for (std::int64_t i = 0; i < n; ++i) {
      const double d = x[static_cast<std::size_t>(i * f + j)] - mean;
      z[static_cast<std::size_t>(i * f + j)] = !standardise ? d : sd > 0.0 ? d / sd : 0.0;
    }
  }
  return z;
}

// Z Z^T (n x n) by direct loops.
Doubles direct_gram(const Doubles& z, std::int64_t n, std::int64_t f) {
  Doubles g(static_cast<std::size_t>(n * n), 0.0);
  for (std::int64_t i = 0; i < n; ++i)
    for (std::int64_t j = 0; j < n; ++j)
      for (std::int64_t c = 0; c < f; ++c)
        g[static_cast<std::size_t>(i * n + j)] +=
            z[static_cast<std::size_t>(i * f + c)] * z[static_cast<std::size_t>(j * f + c)];
  return g;
}

double max_abs(const Doubles& v) {
  double m = 0.0;
  for (double x : v) m = std::max(m, std::abs(x));
  return m;
}

void expect_all_near(const Doubles& got, const Doubles& want, double tol, const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  double worst = 0.0;
  std::size_t at = 0;
  for (std::size_t i = 0; i < got.size(); ++i)
    if (!(std::abs(got[i] - want[i]) <= worst)) {
      worst = std::abs(got[i] - want[i]);
      at = i;
    }
  EXPECT_LE(worst, tol) << what << ": max error at [" << at << "]: got " << got[at] << ", want " << want[at];
}

// Expects f() to throw fovea::Error whose message contains every one of `parts`.
template <class F>
void expect_error(F f, std::initializer_list<const char*> parts) {
  try {
    f();
    ADD_FAILURE() << "no fovea::Error thrown (expected one mentioning " << *parts.begin() << ")";
  } catch (const Error& e) {
    const std::string msg = e.what();
    for (const char* p : parts) EXPECT_NE(msg.find(p), std::string::npos) << "'" << p << "' not in: " << msg;
  }
}

// ---- Gram ------------------------------------------------------------------------------------------------

// x (3 x 3): column 0 = (1, 2, 6), mean 3, deviations (-2, -1, 3), variance (4 + 1 + 9) / 2 = 7;
// column 1 constant 4; column 2 = (0, 2, 1), mean 1, deviations (-1, 1, 0), variance 1.
// Centred Gram: rows (-2, -1), (-1, 1), (3, 0) over the varying columns:
// [[5, 1, -6], [1, 2, -3], [-6, -3, 9]]. Standardised: column 0's outer product divided by 7.
TEST(FeatureGram, HandComputed) {
  const Floats x = {1, 4, 0, 2, 4, 2, 6, 4, 1};
  std::int64_t constants = -1;
  const Gram g = feature_gram(view(x, 3, 3), false, &constants);
  EXPECT_EQ(g.n, 3);
  EXPECT_EQ(constants, 1);
  expect_all_near(g.values, {5, 1, -6, 1, 2, -3, -6, -3, 9}, 1e-14, "centred");
  const Gram s = feature_gram(view(x, 3, 3), true, &constants);
  EXPECT_EQ(constants, 1);
  expect_all_near(
      s.values,
      {4.0 / 7 + 1, 2.0 / 7 - 1, -6.0 / 7, 2.0 / 7 - 1, 1.0 / 7 + 1, -3.0 / 7, -6.0 / 7, -3.0 / 7, 9.0 / 7},
      1e-14, "standardised");
}

// n = 37 samples, 2,500 features: three blocks of 1,024; a few constant columns; against direct loops.
TEST(FeatureGram, MatchesDirectLoopsAndRepeatsBitwise) {
  const std::int64_t n = 37, f = 2500;
  Floats x = gaussian(n, f, 11);
  for (std::int64_t i = 0; i < n; ++i)
    for (std::int64_t c : {0, 1023, 1024, 2499})
      x[static_cast<std::size_t>(i * f + c)] = 0.5f * static_cast<float>(c);
  for (bool standardise : {false, true}) {
    std::int64_t constants = 0;
    const Gram g = feature_gram(view(x, n, f), standardise, &constants);
    EXPECT_EQ(constants, 4);
    const Doubles want = direct_gram(standardised(x, n, f, standardise), n, f);
    expect_all_near(g.values, want, 1e-12 * max_abs(want), standardise ? "standardised" : "centred");
    for (std::int64_t i = 0; i < n; ++i)
      for (std::int64_t j = 0; j < i; ++j)
        ASSERT_EQ(g.values[static_cast<std::size_t>(i * n + j)],
                  g.values[static_cast<std::size_t>(j * n + i)]);
    const Gram again = feature_gram(view(x, n, f), standardise);
    EXPECT_EQ(again.values, g.values) << "same input, same bits";
  }
}

// Grams of disjoint feature sets add up; a default Gram is sized on first use.
TEST(FeatureGram, PartsAddUp) {
  const std::int64_t n = 9, f1 = 40, f2 = 25;
  const Floats a = gaussian(n, f1, 3), b = gaussian(n, f2, 4);
  Floats both(static_cast<std::size_t>(n * (f1 + f2)));
  for (std::int64_t i = 0; i < n; ++i) {
    std::copy_n(a.begin() + i * f1, f1, both.begin() + i * (f1 + f2));
    std::copy_n(b.begin() + i * f2, f2, both.begin() + i * (f1 + f2) + f1);
  }
  Gram sum;
  EXPECT_EQ(add_to_feature_gram(sum, view(a, n, f1), true), 0);
  add_to_feature_gram(sum, view(b, n, f2), true);
  const Gram whole = feature_gram(view(both, n, f1 + f2), true);
  expect_all_near(sum.values, whole.values, 1e-12 * max_abs(whole.values), "parts vs whole");
}

// The tensor-view overload on the CPU is the FeatureMatrix one (same bits, same constant count); a
// layer's batches copied with copy_feature_columns into a (samples, features) buffer give the Gram of
// the whole matrix.
TEST(FeatureGram, TensorViewsOnTheCpu) {
  const std::int64_t n = 11, f = 3 * 4 * 5;
  Floats x = gaussian(n, f, 21);
  for (std::int64_t i = 0; i < n; ++i) x[static_cast<std::size_t>(i * f + 7)] = 2.0f;  // constant
  for (bool standardise : {false, true}) {
    Gram want, got;
    const std::int64_t want_constants = add_to_feature_gram(want, view(x, n, f), standardise);
    const std::int64_t got_constants =
        add_to_feature_gram(got, CView(x.data(), Shape{n, 3, 4, 5}, Device::cpu()), standardise);
    EXPECT_EQ(got_constants, want_constants);
    EXPECT_EQ(want_constants, 1);
    EXPECT_EQ(got.values, want.values);
  }
  // Features [10, 50) of two batches (7 and 4 images) into rows 0..6 and 7..10 of a (11, 40) buffer.
  Floats columns(static_cast<std::size_t>(n * 40), -1.0f);
  const Shape first{7, 3, 4, 5}, second{4, 3, 4, 5};
  copy_feature_columns(CView(x.data(), first, Device::cpu()), 10, 50,
                       View(columns.data(), Shape{n, 40}, Device::cpu()), 0);
  copy_feature_columns(CView(x.data() + 7 * f, second, Device::cpu()), 10, 50,
                       View(columns.data(), Shape{n, 40}, Device::cpu()), 7);
  for (std::int64_t i = 0; i < n; ++i)
    for (std::int64_t c = 0; c < 40; ++c)
      ASSERT_EQ(columns[static_cast<std::size_t>(i * 40 + c)], x[static_cast<std::size_t>(i * f + 10 + c)])
          << "row " << i << ", feature " << 10 + c;
  EXPECT_THROW(copy_feature_columns(CView(x.data(), first, Device::cpu()), 10, 51,
                                    View(columns.data(), Shape{n, 40}, Device::cpu()), 0),
               Error);  // 41 features into 40 columns
  EXPECT_THROW(copy_feature_columns(CView(x.data(), first, Device::cpu()), 10, 50,
                                    View(columns.data(), Shape{n, 40}, Device::cpu()), 5),
               Error);  // rows 5..11 of 11
}

// The plain loop (the path of builds without BLAS) against direct loops, bitwise independent of threads.
TEST(FeatureGram, PlainLoopIsThreadIndependent) {
  const std::int64_t n = 70, k = 300;  // A (k x n); odd tile count
  const Floats r = gaussian(k, n, 5);
  const Doubles a(r.begin(), r.end());
  const int saved = cpu_threads();
  Doubles serial(static_cast<std::size_t>(n * n), 0.0), threaded(serial);
  set_cpu_threads(1);
  detail::product_tn_loop(n, n, k, a.data(), n, a.data(), n, serial.data(), n, true);
  set_cpu_threads(4);
  detail::product_tn_loop(n, n, k, a.data(), n, a.data(), n, threaded.data(), n, true);
  set_cpu_threads(saved);
  Doubles want(static_cast<std::size_t>(n * n), 0.0), lower(serial), lower_threaded(threaded);
  for (std::int64_t i = 0; i < n; ++i)
    for (std::int64_t j = 0; j < n; ++j) {
      if (j > i) {  // above the diagonal is unspecified
        lower[static_cast<std::size_t>(i * n + j)] = lower_threaded[static_cast<std::size_t>(i * n + j)] =
            0.0;
        continue;
      }
      for (std::int64_t q = 0; q < k; ++q)
        want[static_cast<std::size_t>(i * n + j)] +=
            a[static_cast<std::size_t>(q * n + i)] * a[static_cast<std::size_t>(q * n + j)];
    }
  EXPECT_EQ(lower, lower_threaded) << "thread count changed the bits";
  expect_all_near(lower, want, 1e-12 * max_abs(want), "lower triangle vs direct loops");
  // The general product (kNN, uniformity) likewise.
  Doubles c(static_cast<std::size_t>(n * n), 0.0);
  detail::product_tn_loop(n, n, k, a.data(), n, a.data(), n, c.data(), n, false);
  for (std::int64_t i = 0; i < n; ++i)
    for (std::int64_t j = i + 1; j < n; ++j)
      want[static_cast<std::size_t>(i * n + j)] = want[static_cast<std::size_t>(j * n + i)];
  expect_all_near(c, want, 1e-12 * max_abs(want), "general product vs direct loops");
}

// With cblas, one OpenBLAS thread or several give the same Gram (OpenBLAS splits the output, not the sum).
TEST(FeatureGram, SameBitsWithSerialBlas) {
  if (std::string(cpu::gemm_backend()) != "cblas")
    GTEST_SKIP() << "built without BLAS: the loop test covers this";
  const std::int64_t n = 300, f = 1500;
  const Floats x = gaussian(n, f, 8);
  const Gram threaded = feature_gram(view(x, n, f), true);
  Gram serial;
  {
    ::fovea::detail::SerialBlasScope scope;
    serial = feature_gram(view(x, n, f), true);
  }
  EXPECT_EQ(threaded.values, serial.values);
}

// ---- eigenvalues -------------------------------------------------------------------------------------

TEST(FeatureEigen, SmallClosedForms) {
  EXPECT_EQ(symmetric_eigenvalues(Doubles{-3.5}, 1), Doubles{-3.5});
  expect_all_near(symmetric_eigenvalues(Doubles{2, 1, 1, 2}, 2), {3, 1}, 1e-15, "[[2,1],[1,2]]");
  expect_all_near(symmetric_eigenvalues(Doubles{0, 0, 0, 0}, 2), {0, 0}, 0.0, "zero 2x2");
  // [[a, b], [b, c]]: (a + c)/2 +- sqrt(((a - c)/2)^2 + b^2) = 2.5 +- sqrt(2.25 + 4) = 2.5 +- 2.5.
  expect_all_near(symmetric_eigenvalues(Doubles{1, 2, 2, 4}, 2), {5, 0}, 1e-15, "rank one 2x2");
  // Only the lower triangle is read: NaN above the diagonal is ignored.
  const double nan = std::numeric_limits<double>::quiet_NaN();
  expect_all_near(symmetric_eigenvalues(Doubles{2, nan, 1, 2}, 2), {3, 1}, 1e-15, "upper triangle ignored");
  // tridiag(-1, 2, -1) of order 9: 2 - 2 cos(k pi / 10), k = 1..9.
  const std::int64_t n = 9;
  Doubles lap(static_cast<std::size_t>(n * n), 0.0), want;
  for (std::int64_t i = 0; i < n; ++i) {
    lap[static_cast<std::size_t>(i * n + i)] = 2;
    if (i > 0)
      lap[static_cast<std::size_t>(i * n + i - 1)] = lap[static_cast<std::size_t>((i - 1) * n + i)] = -1;
    want.push_back(2 - 2 * std::cos(static_cast<double>(i + 1) * std::acos(-1.0) / 10));
  }
  expect_all_near(symmetric_eigenvalues(lap, n), descending(want), 1e-14, "1-d Laplacian");
}

TEST(FeatureEigen, KnownSpectraUnderRandomRotations) {
  struct Case {
    const char* name;
    Doubles lambda;
  };
  std::vector<Case> cases = {
      {"n=2 distinct", {4.0, -1.5}},    {"n=2 repeated", {2.0, 2.0}},
      {"n=3", {1e3, 1.0, 1e-3}},        {"repeated, mixed signs", {3, 3, 3, -1, -1, 0, 0, 0, 5, 2}},
      {"all equal", Doubles(12, 0.75)},
  };
  Doubles spread, lowrank(80, 0.0);
  for (int i = 0; i < 150; ++i) spread.push_back(std::pow(0.9, i) * (i % 3 == 0 ? -1 : 1));
  for (int i = 0; i < 7; ++i) lowrank[static_cast<std::size_t>(i)] = 10.0 - i;
  cases.push_back({"n=150 geometric", spread});
  cases.push_back({"n=80 rank 7", lowrank});
  std::uint64_t seed = 100;
  for (const auto& c : cases) {
    const std::int64_t n = static_cast<std::int64_t>(c.lambda.size());
    const Doubles a = with_spectrum(c.lambda, seed++);
    const double scale = max_abs(c.lambda);
    expect_all_near(symmetric_eigenvalues(a, n), descending(c.lambda), 1e-13 * static_cast<double>(n) * scale,
                    c.name);
  }
}

// gram_eigenvalues: the k largest of g / (n - 1), negatives clamped to 0, k = min(top_k, n).
TEST(FeatureEigen, GramEigenvaluesScaleClampAndCount) {
  const Gram g{5, with_spectrum({8, 4, 0, 0, 0}, 7)};
  const Doubles top2 = gram_eigenvalues(g, 2);
  expect_all_near(top2, {2, 1}, 1e-14, "scaled by 1 / (n - 1)");
  const Doubles all = gram_eigenvalues(g, 100);
  ASSERT_EQ(all.size(), 5u);
  for (std::size_t i = 2; i < all.size(); ++i) {
    EXPECT_GE(all[i], 0.0) << "clamped";
    EXPECT_LT(all[i], 1e-14);
  }
  // An indefinite matrix: its negative eigenvalue is clamped, not returned.
  const Doubles neg = gram_eigenvalues(Gram{2, {0, 3, 3, 0}}, 2);
  ASSERT_EQ(neg.size(), 2u);
  EXPECT_NEAR(neg[0], 3.0, 1e-15);
  EXPECT_EQ(neg[1], 0.0) << "-3 clamped";
}

// ---- PCA spectrum ----------------------------------------------------------------------------------------

// Direct: the eigenvalues of the F x F correlation matrix Z^T Z / (n - 1).
Doubles direct_spectrum(const Floats& x, std::int64_t n, std::int64_t f, std::int64_t k) {
  const Doubles z = standardised(x, n, f, true);
  Doubles cov(static_cast<std::size_t>(f * f), 0.0);
  for (std::int64_t a = 0; a < f; ++a)
    for (std::int64_t b = 0; b < f; ++b)
      for (std::int64_t i = 0; i < n; ++i)
        cov[static_cast<std::size_t>(a * f + b)] += z[static_cast<std::size_t>(i * f + a)] *
                                                    z[static_cast<std::size_t>(i * f + b)] /
                                                    static_cast<double>(n - 1);
  Doubles ev = symmetric_eigenvalues(cov, f);
  ev.resize(static_cast<std::size_t>(k));
  for (double& v : ev) v = std::max(v, 0.0);
  return ev;
}

TEST(FeatureSpectrum, MatchesCovarianceOnBothPaths) {
  for (auto [n, f] : {std::pair<std::int64_t, std::int64_t>{30, 12}, {12, 30}}) {
    Floats x = gaussian(n, f, static_cast<std::uint64_t>(n * 100 + f));
    for (std::int64_t i = 0; i < n; ++i) x[static_cast<std::size_t>(i * f + 3)] = 2.0f;  // a constant feature
    const Spectrum s = pca_spectrum(view(x, n, f));
    const std::string what = f < n ? "features < samples" : "features > samples";
    EXPECT_EQ(s.samples, n);
    EXPECT_EQ(s.features, f);
    EXPECT_EQ(s.constant_features, 1) << what;
    ASSERT_EQ(static_cast<std::int64_t>(s.eigenvalues.size()), std::min(n, f)) << what;
    expect_all_near(s.eigenvalues, direct_spectrum(x, n, f, std::min(n, f)), 1e-12, what);
    // The trace of the correlation matrix: one per varying feature (the full rank is kept when f < n).
    if (f < n) {
      double trace = 0.0;
      for (double v : s.eigenvalues) trace += v;
      EXPECT_NEAR(trace, static_cast<double>(f - 1), 1e-12) << what;
    }
    const Spectrum top = pca_spectrum(view(x, n, f), 5);
    ASSERT_EQ(top.eigenvalues.size(), 5u);
    expect_all_near(top.eigenvalues, Doubles(s.eigenvalues.begin(), s.eigenvalues.begin() + 5), 1e-12, what);
  }
}

// Recorded with Debian's numpy 1.24.2 / scikit-learn 1.2.1: x[i, j] = ((i*i + 3j + 2ij) % 9) - 4 +
// 0.25 ((5i + j) % 4), column 2 = 1.5 (constant); z = (x - mean) / std(ddof=1), constant column 0;
//   PCA(n_components=k, svd_solver="full").fit(z).explained_variance_
TEST(FeatureSpectrum, MatchesScikitLearn) {
  const auto fp = [](std::int64_t i, std::int64_t j) {
    return j == 2 ? 1.5
                  : static_cast<double>((i * i + 3 * j + 2 * i * j) % 9) - 4 +
                        0.25 * static_cast<double>((5 * i + j) % 4);
  };
  const Floats tall = tabulate(12, 5, fp), wide = tabulate(6, 9, fp);
  const Spectrum st = pca_spectrum(view(tall, 12, 5));
  expect_all_near(st.eigenvalues,
                  {1.6279437096549323, 1.3302101670606488, 0.66428318474728987, 0.37756293853712836, 0},
                  1e-13, "12 x 5");
  const Spectrum sw = pca_spectrum(view(wide, 6, 9));
  expect_all_near(sw.eigenvalues,
                  {3.2568155543893758, 2.3967406419739059, 1.2456385017083191, 0.69719096275839476,
                   0.40361433917001099, 0},
                  1e-13, "6 x 9");
  EXPECT_EQ(sw.constant_features, 1);
}

// ---- percentile, condition number, kurtosis -------------------------------------------------------------

// Recorded with numpy 1.24.2: np.percentile(v, q) for the v below.
TEST(FeaturePercentile, MatchesNumpy) {
  const Doubles v = {3.5, -1.25, 0.0, 7.0, 2.0, 2.0, 10.5, -4.0, 0.125, 5.75, 1.0};
  const std::vector<std::pair<double, double>> cases = {
      {0, -4.0},
      {10, -1.25},
      {25, 0.0625},
      {33.3, 0.4137499999999997},
      {50, 2.0},
      {90, 7.0},
      {99.9, 10.465000000000007},
      {100, 10.5},
  };
  for (auto [q, want] : cases) EXPECT_NEAR(percentile(v, q), want, 1e-15) << "q = " << q;
  EXPECT_EQ(percentile(Doubles{4.25}, 37.0), 4.25);
  // Hand-computed: sorted (1, 2, 4), q = 75: index 1.5, 2 + 0.5 * (4 - 2) = 3.
  EXPECT_EQ(percentile(Doubles{4, 1, 2}, 75.0), 3.0);
}

// spec = 1 / (1 + i)^1.5, i = 0..99 (a decaying spectrum); numpy: percentile(spec, 99.9) /
// percentile(spec, 90) = 0.9360017856687408 / 0.027831387671076346.
TEST(FeatureConditionNumber, MatchesNumpyAndEdgeCases) {
  Doubles spec;
  for (int i = 0; i < 100; ++i) spec.push_back(1.0 / std::pow(1.0 + i, 1.5));
  EXPECT_NEAR(condition_number(spec), 33.63115762429182, 1e-12);
  EXPECT_NEAR(condition_number(spec, 50, 10), percentile(spec, 50) / percentile(spec, 10), 1e-15);
  Doubles spike(100, 0.0);
  spike[0] = 2.0;  // the 90th percentile is 0, the 99.9th positive
  EXPECT_EQ(condition_number(spike), std::numeric_limits<double>::infinity());
  EXPECT_TRUE(std::isnan(condition_number(Doubles(10, 0.0))));
  EXPECT_EQ(condition_number(Doubles(10, 3.0)), 1.0);
}

// Recorded with scipy 1.10.1: scipy.stats.kurtosis(v) (fisher=True, bias=True).
TEST(FeatureKurtosis, MatchesScipy) {
  const Doubles v = {3.5, -1.25, 0.0, 7.0, 2.0, 2.0, 10.5, -4.0, 0.125, 5.75, 1.0};
  EXPECT_NEAR(fisher_kurtosis(v), -0.3190587665167972, 1e-13);
  Doubles spec;
  for (int i = 0; i < 100; ++i) spec.push_back(1.0 / std::pow(1.0 + i, 1.5));
  EXPECT_NEAR(fisher_kurtosis(spec), 67.29579928599735, 1e-11);
  EXPECT_NEAR(fisher_kurtosis(Doubles{1.0, 2.0}), -2.0, 1e-15);  // m4 / m2^2 = 1
  EXPECT_TRUE(std::isnan(fisher_kurtosis(Doubles{2.5, 2.5, 2.5})));
  EXPECT_TRUE(std::isnan(fisher_kurtosis(Doubles{7.0})));
}

// ---- CKA ------------------------------------------------------------------------------------------------

// Recorded with numpy 1.24.2 for x (10 x 3), y (10 x 5) below and K = x x^T, L = y y^T:
//   biased:   <HKH, HLH> / sqrt(<HKH, HKH> <HLH, HLH>), H = I - 1/n;
//   debiased: the same with U-centring (Szekely & Rizzo 2014): zero diagonal, K - r_i - r_j + t with
//             r = row sums / (n - 2), t = total / ((n - 1)(n - 2)), diagonal zeroed again. U-centring
//             is an independent route to the unbiased HSIC estimator that fovea evaluates in closed form.
TEST(FeatureCka, MatchesNumpy) {
  const Floats x = tabulate(10, 3, [](std::int64_t i, std::int64_t j) {
    return static_cast<double>((3 * i + 5 * j + i * j) % 7) - 3 + 0.5 * static_cast<double>((i + 2 * j) % 3);
  });
  const Floats y = tabulate(10, 5, [](std::int64_t i, std::int64_t j) {
    return static_cast<double>((2 * i * i + 3 * j + 1) % 5) * 0.75 - static_cast<double>((i * j) % 4);
  });
  EXPECT_NEAR(linear_cka(view(x, 10, 3), view(y, 10, 5)), 0.2888384505235403, 1e-14);
  EXPECT_NEAR(linear_cka(view(x, 10, 3), view(y, 10, 5), true), 0.03535642647485098, 1e-14);
  // The Gram overload re-centres: uncentred x x^T gives the same biased CKA, and the debiased
  // estimator does not depend on centring at all.
  Gram kx{10, Doubles(100, 0.0)}, ly{10, Doubles(100, 0.0)};
  for (std::int64_t i = 0; i < 10; ++i)
    for (std::int64_t j = 0; j < 10; ++j) {
      for (std::int64_t c = 0; c < 3; ++c)
        kx.values[static_cast<std::size_t>(i * 10 + j)] +=
            double{x[static_cast<std::size_t>(i * 3 + c)]} * x[static_cast<std::size_t>(j * 3 + c)];
      for (std::int64_t c = 0; c < 5; ++c)
        ly.values[static_cast<std::size_t>(i * 10 + j)] +=
            double{y[static_cast<std::size_t>(i * 5 + c)]} * y[static_cast<std::size_t>(j * 5 + c)];
    }
  EXPECT_NEAR(linear_cka(kx, ly), 0.2888384505235403, 1e-14);
  EXPECT_NEAR(linear_cka(kx, ly, true), 0.03535642647485098, 1e-14);
}

TEST(FeatureCka, Invariances) {
  const std::int64_t n = 40, f = 6;
  const Floats x = gaussian(n, f, 21), y = gaussian(n, 9, 22);
  const Doubles q = random_orthogonal(f, 23);
  Floats xq(x.size()), affine(x.size());
  for (std::int64_t i = 0; i < n; ++i)
    for (std::int64_t j = 0; j < f; ++j) {
      double s = 0.0;
      for (std::int64_t c = 0; c < f; ++c)
        s += double{x[static_cast<std::size_t>(i * f + c)]} * q[static_cast<std::size_t>(c * f + j)];
      xq[static_cast<std::size_t>(i * f + j)] = static_cast<float>(s);
      affine[static_cast<std::size_t>(i * f + j)] =
          -2.5f * x[static_cast<std::size_t>(i * f + j)] + 0.75f * static_cast<float>(j);
    }
  for (bool debiased : {false, true}) {
    const std::string what = debiased ? "debiased" : "biased";
    EXPECT_NEAR(linear_cka(view(x, n, f), view(x, n, f), debiased), 1.0, 1e-14) << what;
    EXPECT_NEAR(linear_cka(view(x, n, f), view(xq, n, f), debiased), 1.0, 1e-6)
        << what << ": X Q (float rounding)";
    EXPECT_NEAR(linear_cka(view(x, n, f), view(affine, n, f), debiased), 1.0, 1e-6) << what << ": a X + b";
    const double xy = linear_cka(view(x, n, f), view(y, n, 9), debiased);
    EXPECT_NEAR(linear_cka(view(y, n, 9), view(x, n, f), debiased), xy, 1e-15) << what << ": symmetric";
    EXPECT_LT(xy, 0.9) << what << ": independent features are not similar";
    if (!debiased) {
      EXPECT_GE(xy, 0.0);
    }
  }
  for (std::uint64_t seed = 30; seed < 36; ++seed) {
    const Floats a = gaussian(12, 4, seed), b = gaussian(12, 7, seed + 100);
    const double c = linear_cka(view(a, 12, 4), view(b, 12, 7));
    EXPECT_GE(c, 0.0);
    EXPECT_LE(c, 1.0);
  }
}

// Independent Gaussian features: the biased CKA is far from 0 at n = 200, F = 50 (its bias grows with
// F / n); the debiased one is near 0.
TEST(FeatureCka, DebiasedNearZeroForIndependentFeatures) {
  const std::int64_t n = 200, f = 50;
  const Floats x = gaussian(n, f, 41), y = gaussian(n, f, 42);
  const double biased = linear_cka(view(x, n, f), view(y, n, f));
  const double debiased = linear_cka(view(x, n, f), view(y, n, f), true);
  EXPECT_GT(biased, 0.15);
  EXPECT_LT(std::abs(debiased), 0.03);
}

TEST(FeatureCka, ConstantFeaturesGiveNaN) {
  const Floats x = gaussian(6, 3, 1), c(6 * 2, 1.5f);
  EXPECT_TRUE(std::isnan(linear_cka(view(x, 6, 3), view(c, 6, 2))));
  EXPECT_TRUE(std::isnan(linear_cka(view(x, 6, 3), view(c, 6, 2), true)));
}

// ---- embedding health -------------------------------------------------------------------------------------

TEST(FeatureEmbedding, CollapsedEmbeddings) {
  const std::int64_t n = 16, d = 8;
  const Floats z =
      tabulate(n, d, [](std::int64_t, std::int64_t j) { return 0.1 * static_cast<double>(j) - 0.3; });
  std::vector<std::int64_t> pos(static_cast<std::size_t>(n));
  for (std::int64_t i = 0; i < n; ++i) pos[static_cast<std::size_t>(i)] = i ^ 1;
  const EmbeddingHealth h = embedding_health(view(z, n, d), pos);
  EXPECT_EQ(h.samples, n);
  EXPECT_EQ(h.dims, d);
  EXPECT_EQ(h.dim_std_mean, 0.0);
  EXPECT_EQ(h.dim_std_min, 0.0);
  EXPECT_EQ(h.dim_std_scaled, 0.0);
  EXPECT_EQ(h.effective_rank, 1.0);
  EXPECT_NEAR(h.uniformity, 0.0, 1e-12);  // every distance 0: log mean exp(0)
  EXPECT_EQ(h.alignment, 0.0);
}

// Gaussian rows normalised are uniform on the sphere: each coordinate has variance 1/d.
TEST(FeatureEmbedding, IsotropicEmbeddings) {
  const std::int64_t n = 4000, d = 16;
  const Floats z = gaussian(n, d, 51);
  const EmbeddingHealth h = embedding_health(view(z, n, d));
  EXPECT_NEAR(h.dim_std_scaled, 1.0, 0.02);
  EXPECT_GT(h.dim_std_min * std::sqrt(double(d)), 0.95);
  EXPECT_GT(h.effective_rank, 0.95 * d);
  EXPECT_LE(h.effective_rank, d + 1e-9);
  EXPECT_LT(h.uniformity, -2.0);  // far from the collapsed 0
  EXPECT_TRUE(std::isnan(h.alignment)) << "no positives given";
}

// Points evenly spread on a circle in a 2-d subspace of 6 dims: the centred matrix has two equal
// singular values, so the effective rank is 2; scaling a row does not change its normalised value.
TEST(FeatureEmbedding, CircleHasEffectiveRankTwo) {
  const std::int64_t n = 12, d = 6;
  const double pi = std::acos(-1.0);
  const Floats z = tabulate(n, d, [&](std::int64_t i, std::int64_t j) {
    const double t = 2 * pi * static_cast<double>(i) / static_cast<double>(n),
                 s = 1.0 + static_cast<double>(i % 3);
    return j == 1 ? s * std::cos(t) : j == 4 ? s * std::sin(t) : 0.0;
  });
  const EmbeddingHealth h = embedding_health(view(z, n, d));
  EXPECT_NEAR(h.effective_rank, 2.0, 1e-6);
  EXPECT_EQ(h.dim_std_min, 0.0);
  // Coordinates cos t, sin t over the circle: std sqrt(1/2) each, 0 elsewhere; mean over 6 dims.
  EXPECT_NEAR(h.dim_std_mean, 2 * std::sqrt(0.5) / 6, 1e-6);
}

// Recorded with numpy 1.24.2: z[i, j] = ((7i + 3j^2 + ij) % 11) - 5 + 0.5 ((i + j) % 2), 8 x 4, rows
// normalised zn; std = zn.std(0); s = svd(zn - zn.mean(0)); p = s / s.sum(); erank = exp(-sum p log p);
// uniformity = log mean over i<j exp(-2 |zn_i - zn_j|^2); alignment = mean |zn_i - zn_pos(i)|^2.
TEST(FeatureEmbedding, MatchesNumpy) {
  const Floats z = tabulate(8, 4, [](std::int64_t i, std::int64_t j) {
    return static_cast<double>((7 * i + 3 * j * j + i * j) % 11) - 5 + 0.5 * static_cast<double>((i + j) % 2);
  });
  const std::vector<std::int64_t> pos = {1, 0, 3, 2, -1, 6, 5, -1};
  const EmbeddingHealth h = embedding_health(view(z, 8, 4), pos);
  EXPECT_NEAR(h.dim_std_mean, 0.49410385019266695, 1e-14);
  EXPECT_NEAR(h.dim_std_min, 0.4622444550498559, 1e-14);
  EXPECT_NEAR(h.dim_std_scaled, 0.9882077003853339, 1e-14);
  EXPECT_NEAR(h.effective_rank, 3.958882211681807, 1e-12);
  EXPECT_NEAR(h.uniformity, -3.3876029440216273, 1e-13);
  EXPECT_NEAR(h.alignment, 2.51081158190096, 1e-13);
}

// ---- kNN ------------------------------------------------------------------------------------------------

TEST(FeatureKnn, SeparableClusters) {
  const std::int64_t d = 5, per = 30, classes = 3;
  std::mt19937_64 rng(61);
  std::normal_distribution<double> nd(0.0, 0.1);
  const auto make = [&](Floats& x, std::vector<int>& y) {
    for (std::int64_t c = 0; c < classes; ++c)
      for (std::int64_t r = 0; r < per; ++r) {
        for (std::int64_t j = 0; j < d; ++j) x.push_back(static_cast<float>((j == c ? 1.0 : 0.0) + nd(rng)));
        y.push_back(static_cast<int>(c));
      }
  };
  Floats train, test;
  std::vector<int> ytrain, ytest;
  make(train, ytrain);
  make(test, ytest);
  const FeatureMatrix tr = view(train, classes * per, d), te = view(test, classes * per, d);
  EXPECT_EQ(knn_accuracy(tr, ytrain, te, ytest, 3), 1.0);
  EXPECT_EQ(knn_accuracy(tr, ytrain, te, ytest, 3, 1), 1.0);
  std::vector<int> shifted(ytest);
  for (std::size_t i = 0; i < shifted.size(); i += 3) shifted[i] = (shifted[i] + 1) % 3;  // a third wrong
  EXPECT_NEAR(knn_accuracy(tr, ytrain, te, shifted, 3), 2.0 / 3.0, 1e-15);
}

// Test row (1, 1) is equally similar to train rows (1, 0) (class 1) and (0, 1) (class 0): equal votes,
// the lowest class wins. With k = 1 and equal similarities the lower train index is the neighbour.
TEST(FeatureKnn, TiesGoToLowestClassAndIndex) {
  const Floats train = {1, 0, 0, 1};
  const Floats test = {1, 1};
  const std::vector<int> ytrain = {1, 0};
  EXPECT_EQ(knn_accuracy(view(train, 2, 2), ytrain, view(test, 1, 2), std::vector<int>{0}, 2, 2), 1.0);
  EXPECT_EQ(knn_accuracy(view(train, 2, 2), ytrain, view(test, 1, 2), std::vector<int>{1}, 2, 2), 0.0);
  // k = 1: train rows 0 and 1 tie; row 0 (class 1) is taken.
  EXPECT_EQ(knn_accuracy(view(train, 2, 2), ytrain, view(test, 1, 2), std::vector<int>{1}, 2, 1), 1.0);
  // k beyond the train rows uses them all.
  EXPECT_EQ(knn_accuracy(view(train, 2, 2), ytrain, view(test, 1, 2), std::vector<int>{0}, 2, 50), 1.0);
}

// One neighbour of class 0 at similarity 1 against two of class 1 at similarity 0.6: with temperature 0.07
// exp(1/0.07) > 2 exp(0.6/0.07) and class 0 wins; at temperature 10, exp(0.1) < 2 exp(0.06), class 1.
TEST(FeatureKnn, VotesAreWeightedBySimilarity) {
  const Floats train = {1, 0, 0.6f, 0.8f, 0.6f, -0.8f};
  const std::vector<int> ytrain = {0, 1, 1};
  const Floats test = {1, 0};
  const std::vector<int> y0 = {0};
  EXPECT_EQ(knn_accuracy(view(train, 3, 2), ytrain, view(test, 1, 2), y0, 2, 3, 0.07), 1.0);
  EXPECT_EQ(knn_accuracy(view(train, 3, 2), ytrain, view(test, 1, 2), y0, 2, 3, 10.0), 0.0);
}

// ---- errors ---------------------------------------------------------------------------------------------

TEST(FeatureErrors, BadInputsAreNamed) {
  const Floats x = gaussian(4, 3, 1);
  expect_error([] { feature_gram(FeatureMatrix{}, true); }, {"at least 2 samples"});
  expect_error([&] { feature_gram(view(x, 1, 12), true); }, {"at least 2 samples", "got 1"});
  expect_error([&] { feature_gram(view(x, 4, 0), true); }, {"at least 1 feature"});
  expect_error([&] { feature_gram(view(x, 4, 4), true); }, {"12 values", "4 x 4"});
  Floats bad(x);
  bad[2 * 3 + 1] = std::numeric_limits<float>::quiet_NaN();
  expect_error([&] { feature_gram(view(bad, 4, 3), false); }, {"row 2", "column 1", "not finite"});
  expect_error([&] { pca_spectrum(view(bad, 4, 3)); }, {"row 2", "column 1"});
  expect_error([&] { pca_spectrum(view(x, 4, 3), 0); }, {"top_k", "got 0"});
  expect_error([&] { embedding_health(view(bad, 4, 3)); }, {"row 2", "column 1"});
  expect_error([] { gram_eigenvalues(Gram{1, {1.0}}, 1); }, {"n >= 2"});
  expect_error([] { symmetric_eigenvalues(Doubles{1, 2, 3}, 2); }, {"3 entries"});
  expect_error([] { symmetric_eigenvalues(Doubles{1, 0, std::nan(""), 1}, 2); }, {"(1, 0)", "not finite"});
  expect_error([] { percentile(Doubles{}, 50); }, {"no values"});
  expect_error([] { percentile(Doubles{1, 2}, 100.5); }, {"[0, 100]", "100.5"});
  expect_error([] { percentile(Doubles{1, std::nan("")}, 50); }, {"v[1]"});
  expect_error([] { fisher_kurtosis(Doubles{}); }, {"no values"});
  expect_error([&] { linear_cka(view(x, 4, 3), view(x, 2, 6)); }, {"x has 4 samples", "y has 2"});
  expect_error([&] { linear_cka(view(x, 3, 4), view(x, 3, 4), true); }, {"debiased", "n >= 4", "got 3"});
  expect_error([&] { linear_cka(Gram{2, {1, 0, 0, 1}}, Gram{2, {1, 0, 0}}); }, {"3 values"});
  expect_error(
      [&] {
        embedding_health(view(x, 4, 3), std::vector<std::int64_t>{1, 0});
      },
      {"2 entries", "4 rows"});
  expect_error(
      [&] {
        embedding_health(view(x, 4, 3), std::vector<std::int64_t>{1, 0, 4, -1});
      },
      {"positive[2] = 4"});
  const std::vector<int> y4 = {0, 1, 0, 1};
  expect_error([&] { knn_accuracy(view(x, 4, 3), y4, view(x, 4, 3), y4, 2, 0); },
               {"k must be >= 1", "got 0"});
  expect_error(
      [&] {
        knn_accuracy(view(x, 4, 3), y4, view(x, 4, 3), std::vector<int>{0, 2, 0, 1}, 2);
      },
      {"test_labels[1] = 2", "[0, 2)"});
  expect_error(
      [&] {
        knn_accuracy(view(x, 4, 3), std::vector<int>{0, 1, -1, 1}, view(x, 4, 3), y4, 2);
      },
      {"train_labels[2] = -1"});
  expect_error(
      [&] {
        knn_accuracy(view(x, 4, 3), y4, view(x, 2, 6), std::vector<int>{0, 1}, 2);
      },
      {"train has 3 features", "test has 6"});
  expect_error([&] { knn_accuracy(view(x, 4, 3), y4, view(x, 4, 3), y4, 2, 20, 0.0); }, {"temperature"});
}

}  // namespace
}  // namespace fovea::analysis
