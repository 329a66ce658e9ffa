// fovea/eval/compare.hpp: whether classifier A is better than classifier B on the same images, the
// question a pretraining study asks of every pair of regimes. Two models' intervals overlapping says
// little, because their errors on the same images are correlated; these tests pair them:
//   - paired bootstrap: each resample draws the same images for both models (bootstrap_resample, so
//     resample r is the one evaluate_predictions used for each model's own interval), giving the
//     interval of the difference A - B of any statistic and a two-sided bootstrap p-value;
//   - DeLong's test (DeLong, DeLong & Clarke-Pearson 1988) for the difference of two correlated ROC
//     AUCs, with the midrank computation of Sun & Xu (2014): the standard test of medical-imaging
//     papers;
//   - McNemar's exact test for the difference of two accuracies (the discordant images);
//   - across independent replicates (a study's seeds): the t interval of a figure's mean and the
//     one-sample t test of a mean difference (mean_interval).
// compare_predictions bundles them for kappa, referable AUC and accuracy; to_json writes the result.
// Host-side only, deterministic (docs/metrics.md, "Comparing two classifiers").
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <numeric>
#include <span>
#include <string>
#include <vector>

#include "fovea/core/error.hpp"
#include "fovea/eval/metrics.hpp"

namespace fovea::eval {

// A statistic of A and of B on the same images, and their difference A - B.
struct PairedDifference {
  double a = kNaN, b = kNaN;      // on the full sample
  ConfidenceInterval difference;  // point a - b; percentile interval of the paired resamples
  double p_value = kNaN;          // two-sided bootstrap p (below)
};

// DeLong's test of AUC_A - AUC_B on one set of binary labels.
struct DeLongTest {
  std::int64_t positives = 0, negatives = 0;
  double auc_a = kNaN, auc_b = kNaN;
  double difference = kNaN;      // auc_a - auc_b
  double standard_error = kNaN;  // of the difference
  double z = kNaN;
  double p_value = kNaN;           // two-sided, normal
  double low = kNaN, high = kNaN;  // difference -+ z_{1 - alpha/2} standard_error
};

// McNemar's exact test of accuracy_A - accuracy_B: the images only one model gets right.
struct McNemarTest {
  std::int64_t only_a = 0;  // A right, B wrong
  std::int64_t only_b = 0;  // B right, A wrong
  std::int64_t both = 0, neither = 0;
  double p_value = kNaN;  // exact two-sided binomial test of only_a against only_a + only_b at 1/2
};

// Everything compare_predictions computes.
struct Comparison : EvaluationSettings {
  PairedDifference kappa;  // quadratic weighted kappa of the argmax predictions
  PairedDifference accuracy;
  PairedDifference referable_auc;  // bootstrap; DeLong below
  DeLongTest delong;               // referable AUC
  McNemarTest mcnemar;             // accuracy
};

// normal_quantile: Phi^{-1}(p), the standard normal quantile, to about 1e-14 (bisection on erfc).
//   requires: 0 < p < 1.
inline double normal_quantile(double p) {
  FOVEA_CHECK(p > 0.0 && p < 1.0, "normal_quantile: p ", p, " must lie in (0, 1)");
  double lo = -40.0, hi = 40.0;  // Phi(lo) < p < Phi(hi)
  for (int i = 0; i < 200 && hi - lo > 1e-15; ++i) {
    const double mid = 0.5 * (lo + hi);
    (0.5 * std::erfc(-mid / std::sqrt(2.0)) < p ? lo : hi) = mid;
  }
  return 0.5 * (lo + hi);
}

// bootstrap_p_value: the two-sided p of "the difference is 0" from resampled differences d*:
// min(1, 2 (1 + min(#{d* <= 0}, #{d* >= 0})) / (B + 1)) over the B non-NaN values, the +1 counting
// the observed sample as one of the resamples (Davison & Hinkley 1997, 4.4), so p >= 2 / (B + 1).
// NaN when B is 0.
inline double bootstrap_p_value(std::span<const double> differences) {
  std::int64_t below = 0, above = 0, valid = 0;
  for (double d : differences) {
    if (std::isnan(d)) continue;
    ++valid;
    below += d <= 0.0;
    above += d >= 0.0;
  }
  if (valid == 0) return kNaN;
  return std::min(1.0,
                  2.0 * static_cast<double>(1 + std::min(below, above)) / static_cast<double>(valid + 1));
}

// student_t_central: P(|T| <= |t|) for Student's t with df degrees of freedom (df >= 1), exactly by
// the finite series of Abramowitz & Stegun 26.7.3 / 26.7.4 in theta = atan(|t| / sqrt(df)).
inline double student_t_central(double t, int df) {
  FOVEA_CHECK(df >= 1, "student_t_central: df ", df, " must be >= 1");
  if (std::isnan(t)) return kNaN;
  if (std::isinf(t)) return 1.0;
  const double theta = std::atan(std::fabs(t) / std::sqrt(static_cast<double>(df)));
  const double c = std::cos(theta), s = std::sin(theta), c2 = c * c;
  constexpr double kPi = 3.14159265358979323846;
  if (df % 2 == 1) {  // (2/pi) (theta + sin(theta) (cos + 2/3 cos^3 + 2 4/(3 5) cos^5 + ... cos^(df-2)))
    double sum = 0.0;
    if (df > 1) {
      double term = c;
      sum = term;
      for (int k = 2; k <= df - 3; k += 2) sum += term *= c2 * k / (k + 1);
    }
    return 2.0 / kPi * (theta + s * sum);
  }
  double sum = 1.0, term = 1.0;  // sin(theta) (1 + 1/2 cos^2 + 1 3/(2 4) cos^4 + ... cos^(df-2))
  for (int k = 1; k <= df - 3; k += 2) sum += term *= c2 * k / (k + 1);
  return s * sum;
}

// student_t_quantile: the t with P(T <= t) = p for df degrees of freedom (bisection, relative 1e-13).
//   requires: 0 < p < 1, df >= 1.
inline double student_t_quantile(double p, int df) {
  FOVEA_CHECK(p > 0.0 && p < 1.0, "student_t_quantile: p ", p, " must lie in (0, 1)");
  const double central = std::fabs(2.0 * p - 1.0);  // P(|T| <= |t|)
  double lo = 0.0, hi = 1.0;
  while (student_t_central(hi, df) < central && hi < 1e300) hi *= 2.0;
  for (int i = 0; i < 400 && hi - lo > 1e-13 * hi; ++i) {
    const double mid = 0.5 * (lo + hi);
    (student_t_central(mid, df) < central ? lo : hi) = mid;
  }
  const double t = 0.5 * (lo + hi);
  return p < 0.5 ? -t : t;
}

// The mean of independent replicates (e.g. a study's seeds) with its t interval.
struct MeanInterval {
  int n = 0;  // finite values
  double mean = kNaN;
  double sd = kNaN;                // ddof 1
  double low = kNaN, high = kNaN;  // mean -+ t_{n-1, 1 - alpha/2} sd / sqrt(n)
  double p_value = kNaN;           // two-sided one-sample t test of mean = 0
};

// mean_interval: NaNs are skipped; with one value only the mean; with sd 0 the interval is the mean
// and p is 1 for a mean of 0, else 0. The mean is the values' sum (in order) over n.
//   requires: 0 < alpha < 1.
inline MeanInterval mean_interval(std::span<const double> values, double alpha = kDefaultAlpha) {
  FOVEA_CHECK(alpha > 0.0 && alpha < 1.0, "alpha ", alpha, " must lie in (0, 1)");
  MeanInterval m;
  double sum = 0.0;
  for (double v : values)
    if (std::isfinite(v)) sum += v, ++m.n;
  if (m.n == 0) return m;
  m.mean = sum / static_cast<double>(m.n);
  if (m.n < 2) return m;
  double ss = 0.0;
  for (double v : values)
    if (std::isfinite(v)) ss += (v - m.mean) * (v - m.mean);
  m.sd = std::sqrt(ss / static_cast<double>(m.n - 1));
  const double se = m.sd / std::sqrt(static_cast<double>(m.n));
  if (!(se > 0.0)) {
    m.low = m.high = m.mean;
    m.p_value = m.mean == 0.0 ? 1.0 : 0.0;
    return m;
  }
  const double q = student_t_quantile(1.0 - alpha / 2.0, m.n - 1);
  m.low = m.mean - q * se, m.high = m.mean + q * se;
  m.p_value = 1.0 - student_t_central(m.mean / se, m.n - 1);
  return m;
}

namespace detail {

// Midranks (1-based, tied values share the mean of their ranks) of v.
inline std::vector<double> midranks(std::span<const double> v) {
  const std::vector<std::size_t> order = ascending_order(v);
  std::vector<double> rank(v.size());
  std::size_t g = 0;
  while (g < order.size()) {
    std::size_t end = g;
    while (end < order.size() && v[order[end]] == v[order[g]]) ++end;
    const double r = 0.5 * static_cast<double>(g + 1 + end);  // mean of ranks g + 1 .. end
    for (std::size_t k = g; k < end; ++k) rank[order[k]] = r;
    g = end;
  }
  return rank;
}

// DeLong's structural components of one model's scores: V10 (one per positive: the share of the
// negatives it beats, ties half) and V10's mean, the AUC; V01 (one per negative: the share of the
// positives that beat it).
struct Placements {
  std::vector<double> v10, v01;
  double auc = kNaN;
};

inline Placements placements(std::span<const int> binary, std::span<const double> score) {
  std::vector<double> pos, neg, all;
  for (std::size_t i = 0; i < binary.size(); ++i) (binary[i] ? pos : neg).push_back(score[i]);
  all = pos;
  all.insert(all.end(), neg.begin(), neg.end());
  const auto m = static_cast<double>(pos.size()), n = static_cast<double>(neg.size());
  const std::vector<double> tx = midranks(pos), ty = midranks(neg), tz = midranks(all);
  Placements p;
  p.v10.resize(pos.size());
  p.v01.resize(neg.size());
  double sum = 0.0;
  for (std::size_t i = 0; i < pos.size(); ++i) sum += p.v10[i] = (tz[i] - tx[i]) / n;
  for (std::size_t j = 0; j < neg.size(); ++j) p.v01[j] = 1.0 - (tz[pos.size() + j] - ty[j]) / m;
  p.auc = sum / m;
  return p;
}

// The sample covariance (ddof 1) of x and y.
inline double covariance(const std::vector<double>& x, const std::vector<double>& y) {
  const auto n = static_cast<double>(x.size());
  const double mx = std::accumulate(x.begin(), x.end(), 0.0) / n,
               my = std::accumulate(y.begin(), y.end(), 0.0) / n;
  double s = 0.0;
  for (std::size_t i = 0; i < x.size(); ++i) s += (x[i] - mx) * (y[i] - my);
  return s / (n - 1.0);
}

// log C(n, k).
inline double log_choose(std::int64_t n, std::int64_t k) {
  return std::lgamma(static_cast<double>(n) + 1.0) - std::lgamma(static_cast<double>(k) + 1.0) -
         std::lgamma(static_cast<double>(n - k) + 1.0);
}

}  // namespace detail

// delong_test: DeLong's test of the AUCs of two scores of the same items. AUCs equal roc_auc's.
// Variance of the difference: (S10_aa + S10_bb - 2 S10_ab) / m + (S01_aa + S01_bb - 2 S01_ab) / n, with
// S10, S01 the sample covariances (ddof 1) of the components over the m positives and n negatives.
//   requires: binary labels, finite scores, equal lengths, 0 < alpha < 1.
//   ensures: NaN AUCs when a class is absent; NaN standard error, z, p and interval with fewer than
//   two of either class; a standard error of 0 (the same ranking) gives p = 1 for a difference of 0
//   and 0 otherwise.
inline DeLongTest delong_test(std::span<const int> binary, std::span<const double> score_a,
                              std::span<const double> score_b, double alpha = kDefaultAlpha) {
  detail::check_same_length(binary.size(), score_a.size(), "labels", "scores A");
  detail::check_same_length(binary.size(), score_b.size(), "labels", "scores B");
  detail::check_binary(binary, "labels");
  detail::check_finite(score_a, "scores A");
  detail::check_finite(score_b, "scores B");
  FOVEA_CHECK(alpha > 0.0 && alpha < 1.0, "alpha ", alpha, " must lie in (0, 1)");
  DeLongTest t;
  for (int b : binary) (b ? t.positives : t.negatives) += 1;
  if (t.positives == 0 || t.negatives == 0) return t;
  const detail::Placements a = detail::placements(binary, score_a), b = detail::placements(binary, score_b);
  t.auc_a = a.auc, t.auc_b = b.auc, t.difference = a.auc - b.auc;
  if (t.positives < 2 || t.negatives < 2) return t;
  using detail::covariance;
  const double var = (covariance(a.v10, a.v10) + covariance(b.v10, b.v10) - 2.0 * covariance(a.v10, b.v10)) /
                         static_cast<double>(t.positives) +
                     (covariance(a.v01, a.v01) + covariance(b.v01, b.v01) - 2.0 * covariance(a.v01, b.v01)) /
                         static_cast<double>(t.negatives);
  t.standard_error = std::sqrt(std::max(var, 0.0));
  if (!(t.standard_error > 0.0)) {
    t.standard_error = 0.0;
    t.p_value = t.difference == 0.0 ? 1.0 : 0.0;
    t.low = t.high = t.difference;
    return t;
  }
  t.z = t.difference / t.standard_error;
  t.p_value = std::erfc(std::fabs(t.z) / std::sqrt(2.0));
  const double q = normal_quantile(1.0 - alpha / 2.0);
  t.low = t.difference - q * t.standard_error;
  t.high = t.difference + q * t.standard_error;
  return t;
}

// mcnemar_test: the images each model classifies correctly, and the exact two-sided p of the
// discordant counts: min(1, 2 P(X <= min(only_a, only_b))), X ~ Binomial(only_a + only_b, 1/2); 1
// when no image is discordant.
//   requires: equal lengths.
inline McNemarTest mcnemar_test(std::span<const int> labels, std::span<const int> preds_a,
                                std::span<const int> preds_b) {
  detail::check_same_length(labels.size(), preds_a.size(), "labels", "predictions A");
  detail::check_same_length(labels.size(), preds_b.size(), "labels", "predictions B");
  McNemarTest t;
  for (std::size_t i = 0; i < labels.size(); ++i) {
    const bool ra = preds_a[i] == labels[i], rb = preds_b[i] == labels[i];
    (ra ? (rb ? t.both : t.only_a) : (rb ? t.only_b : t.neither)) += 1;
  }
  const std::int64_t d = t.only_a + t.only_b, k = std::min(t.only_a, t.only_b);
  if (d == 0) {
    t.p_value = 1.0;
    return t;
  }
  double tail = 0.0;  // P(X <= k), summed from the smallest term up
  for (std::int64_t j = 0; j <= k; ++j)
    tail += std::exp(detail::log_choose(d, j) - static_cast<double>(d) * std::log(2.0));
  t.p_value = std::min(1.0, 2.0 * tail);
  return t;
}

// compare_predictions: A against B on the same images (probability rows in the same order): the
// paired bootstrap of kappa, accuracy and referable AUC (resample r = bootstrap_resample(N, seed, r),
// the resamples of evaluate_predictions with the same seed), DeLong's test of the referable AUCs and
// McNemar's test of the accuracies. Predictions are argmax_rows, the referable score
// referable_score(probs, K, referable_threshold), as in evaluate_predictions.
//   requires: labels (N) in [0, K), N > 0; probs_a, probs_b (N, K) row-major with entries in [0, 1],
//   K >= 2; 1 <= referable_threshold < K; resamples >= 1; 0 < alpha < 1.
inline Comparison compare_predictions(std::span<const int> labels, std::span<const double> probs_a,
                                      std::span<const double> probs_b,
                                      int referable_threshold = kDefaultReferableThreshold,
                                      int resamples = kDefaultResamples, std::uint64_t seed = 0,
                                      double alpha = kDefaultAlpha) {
  FOVEA_CHECK(!labels.empty(), "compare_predictions needs at least one sample");
  FOVEA_CHECK(probs_a.size() % labels.size() == 0 && probs_a.size() / labels.size() >= 2, "probs A has ",
              probs_a.size(), " entries, not N * K for N = ", labels.size(), " labels and K >= 2 classes");
  FOVEA_CHECK(probs_b.size() == probs_a.size(), "probs B has ", probs_b.size(), " entries, probs A ",
              probs_a.size(), ": the two models must score the same images with the same classes");
  FOVEA_CHECK(resamples >= 1, "resamples must be >= 1, got ", resamples);
  FOVEA_CHECK(alpha > 0.0 && alpha < 1.0, "alpha ", alpha, " must lie in (0, 1)");
  const std::size_t n = labels.size();
  const int k = static_cast<int>(probs_a.size() / n);
  FOVEA_CHECK(referable_threshold >= 1 && referable_threshold < k, "referable threshold ",
              referable_threshold, " must lie in 1..", k - 1);
  detail::check_classes(labels, k, "labels");
  detail::check_probability(probs_a, "probs A");
  detail::check_probability(probs_b, "probs B");
  const std::vector<int> pa = argmax_rows(probs_a, k), pb = argmax_rows(probs_b, k);
  const std::vector<int> binary = referable(labels, referable_threshold);
  const std::vector<double> sa = referable_score(probs_a, k, referable_threshold),
                            sb = referable_score(probs_b, k, referable_threshold);
  const std::vector<std::size_t> order_a = detail::ascending_order(sa), order_b = detail::ascending_order(sb);

  // The three statistics of one model on a resample given as weights (counts per image).
  const auto kappa_of = [&](const std::vector<int>& preds, const std::vector<std::uint32_t>& w) {
    std::vector<std::int64_t> c(static_cast<std::size_t>(k * k), 0);
    for (std::size_t i = 0; i < n; ++i) c[static_cast<std::size_t>(labels[i] * k + preds[i])] += w[i];
    return detail::kappa_from_confusion(c, k);
  };
  const auto accuracy_of = [&](const std::vector<int>& preds, const std::vector<std::uint32_t>& w) {
    double hits = 0.0, total = 0.0;
    for (std::size_t i = 0; i < n; ++i)
      hits += (preds[i] == labels[i]) * static_cast<double>(w[i]), total += w[i];
    return hits / total;
  };
  std::vector<std::uint32_t> ones(n, 1), w(n);
  Comparison c;
  c.n = static_cast<std::int64_t>(n);
  c.num_classes = k, c.referable_threshold = referable_threshold;
  c.resamples = resamples, c.seed = seed, c.alpha = alpha;
  c.kappa.a = kappa_of(pa, ones), c.kappa.b = kappa_of(pb, ones);
  c.accuracy.a = accuracy_of(pa, ones), c.accuracy.b = accuracy_of(pb, ones);
  c.referable_auc.a = detail::auc_sorted(order_a, binary, sa, nullptr);
  c.referable_auc.b = detail::auc_sorted(order_b, binary, sb, nullptr);
  std::vector<double> dk, dacc, dauc;
  dk.reserve(static_cast<std::size_t>(resamples));
  dacc.reserve(static_cast<std::size_t>(resamples));
  dauc.reserve(static_cast<std::size_t>(resamples));
  for (int r = 0; r < resamples; ++r) {
    std::fill(w.begin(), w.end(), 0u);
    for (std::size_t i : bootstrap_resample(n, seed, static_cast<std::uint32_t>(r))) ++w[i];
    dk.push_back(kappa_of(pa, w) - kappa_of(pb, w));
    dacc.push_back(accuracy_of(pa, w) - accuracy_of(pb, w));
    dauc.push_back(detail::auc_sorted(order_a, binary, sa, &w) - detail::auc_sorted(order_b, binary, sb, &w));
  }
  const auto finish = [&](PairedDifference& d, std::vector<double>& values) {
    d.difference.point = d.a - d.b;
    d.difference.resamples = resamples;
    d.p_value = bootstrap_p_value(values);
    std::erase_if(values, [](double v) { return std::isnan(v); });
    d.difference.valid_resamples = static_cast<int>(values.size());
    d.difference.low = percentile(values, alpha / 2);
    d.difference.high = percentile(std::move(values), 1.0 - alpha / 2);
  };
  finish(c.kappa, dk);
  finish(c.accuracy, dacc);
  finish(c.referable_auc, dauc);
  c.delong = delong_test(binary, sa, sb, alpha);
  c.mcnemar = mcnemar_test(labels, pa, pb);
  return c;
}

// to_json: the comparison as one JSON object (NaN as null; layout in docs/metrics.md).
inline std::string to_json(const Comparison& c) {
  using detail::json_double;
  const auto paired = [](const PairedDifference& d) {
    return "{\"a\":" + json_double(d.a) + ",\"b\":" + json_double(d.b) +
           ",\"difference\":" + detail::json_interval(d.difference) +
           ",\"p_value\":" + json_double(d.p_value) + "}";
  };
  const DeLongTest& t = c.delong;
  const McNemarTest& m = c.mcnemar;
  return "{\"n\":" + std::to_string(c.n) + ",\"num_classes\":" + std::to_string(c.num_classes) +
         ",\"resamples\":" + std::to_string(c.resamples) + ",\"seed\":" + std::to_string(c.seed) +
         ",\"alpha\":" + json_double(c.alpha) + ",\"quadratic_weighted_kappa\":" + paired(c.kappa) +
         ",\"accuracy\":" + paired(c.accuracy) + ",\"mcnemar\":{\"only_a\":" + std::to_string(m.only_a) +
         ",\"only_b\":" + std::to_string(m.only_b) + ",\"both\":" + std::to_string(m.both) +
         ",\"neither\":" + std::to_string(m.neither) + ",\"p_value\":" + json_double(m.p_value) +
         "},\"referable\":{\"threshold\":" + std::to_string(c.referable_threshold) +
         ",\"auc\":" + paired(c.referable_auc) + ",\"delong\":{\"positives\":" + std::to_string(t.positives) +
         ",\"negatives\":" + std::to_string(t.negatives) + ",\"auc_a\":" + json_double(t.auc_a) +
         ",\"auc_b\":" + json_double(t.auc_b) + ",\"difference\":" + json_double(t.difference) +
         ",\"standard_error\":" + json_double(t.standard_error) + ",\"z\":" + json_double(t.z) +
         ",\"p_value\":" + json_double(t.p_value) + ",\"low\":" + json_double(t.low) +
         ",\"high\":" + json_double(t.high) + "}}}";
}

}  // namespace fovea::eval
