// fovea/eval/metrics.hpp: the evaluation metrics of a DR classifier (confusion matrix, accuracy,
// quadratic weighted kappa, referable-DR ROC AUC, sensitivity / specificity at an operating point,
// expected calibration error), percentile bootstrap confidence intervals driven by fovea's Philox,
// and evaluate_predictions / to_json, which bundle them into one report.
//
// Host-side only (std::vector / std::span, no tensors), deterministic: the same inputs and seed give
// bitwise the same report. Conventions (see docs/metrics.md):
//   - labels and predictions are class indices in [0, K); confusion rows are true labels, columns
//     predictions (as sklearn.metrics.confusion_matrix);
//   - quadratic_weighted_kappa(labels, preds, K) equals sklearn's
//     cohen_kappa_score(labels, preds, labels=range(K), weights="quadratic"), NaN where sklearn's
//     expected-disagreement term is 0 (0/0: both raters use one and the same class) or the input is
//     empty;
//   - roc_auc equals sklearn's roc_auc_score (Mann-Whitney U, tied scores count 1/2); NaN where one
//     class is absent (sklearn raises);
//   - a binary decision is positive iff score >= threshold; referable DR is grade >= threshold
//     (default 2), its score the summed probability of the grades >= threshold;
//   - ECE bins are equal-width, bin b = (b/B, (b+1)/B] (confidence 0 goes to bin 0);
//   - bootstrap resample r of n items draws n indices with Philox::uniform_int(n) from the stream
//     RandomKey(seed, kPurposeSplit, epoch 0, sample r, view kBootstrapView); statistics that are NaN
//     on a resample are skipped and counted; the interval is the percentile method with numpy's
//     default (linear) quantile.
#pragma once

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <limits>
#include <numeric>
#include <span>
#include <string>
#include <vector>

#include "fovea/core/error.hpp"
#include "fovea/core/random.hpp"

namespace fovea::eval {

inline constexpr int kDefaultReferableThreshold = 2;  // grade >= 2: moderate NPDR or worse
inline constexpr int kDefaultCalibrationBins = 15;
inline constexpr int kDefaultResamples = 1000;
inline constexpr double kDefaultAlpha = 0.05;  // 95 % intervals
// The Philox view of the bootstrap streams under kPurposeSplit (data/split.hpp uses views 0 and 1).
inline constexpr std::uint32_t kBootstrapView = 2;

inline constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

namespace detail {

inline void check_same_length(std::size_t a, std::size_t b, const char* what_a, const char* what_b) {
  FOVEA_CHECK(a == b, what_a, " has ", a, " entries but ", what_b, " has ", b);
}

inline void check_classes(std::span<const int> values, int num_classes, const char* what) {
  FOVEA_CHECK(num_classes >= 1, "num_classes must be >= 1, got ", num_classes);
  for (std::size_t i = 0; i < values.size(); ++i)
    FOVEA_CHECK(values[i] >= 0 && values[i] < num_classes, what, "[", i, "] = ", values[i],
                " is not a class index in [0, ", num_classes, ")");
}

inline void check_binary(std::span<const int> values, const char* what) {
  for (std::size_t i = 0; i < values.size(); ++i)
    FOVEA_CHECK(values[i] == 0 || values[i] == 1, what, "[", i, "] = ", values[i], " is not 0 or 1");
}

inline void check_finite(std::span<const double> values, const char* what) {
  for (std::size_t i = 0; i < values.size(); ++i)
    FOVEA_CHECK(std::isfinite(values[i]), what, "[", i, "] = ", values[i], " is not finite");
}

inline void check_probability(std::span<const double> values, const char* what) {
  for (std::size_t i = 0; i < values.size(); ++i)
    FOVEA_CHECK(values[i] >= 0.0 && values[i] <= 1.0, what, "[", i, "] = ", values[i], " is not in [0, 1]");
}

// Kappa from a K x K confusion matrix with quadratic weights (i - j)^2. sklearn computes
// 1 - sum(w * C) / sum(w * outer(col, row) / n); here the same ratio as sum(w C) * n / sum(w r c).
inline double kappa_from_confusion(std::span<const std::int64_t> confusion, int k) {
  std::vector<double> rows(static_cast<std::size_t>(k), 0.0), cols(static_cast<std::size_t>(k), 0.0);
  double n = 0.0, observed = 0.0;
  for (int i = 0; i < k; ++i)
    for (int j = 0; j < k; ++j) {
      const double c = static_cast<double>(confusion[static_cast<std::size_t>(i * k + j)]);
      rows[static_cast<std::size_t>(i)] += c;
      cols[static_cast<std::size_t>(j)] += c;
      n += c;
      observed += static_cast<double>((i - j) * (i - j)) * c;
    }
  double expected = 0.0;
  for (int i = 0; i < k; ++i)
    for (int j = 0; j < k; ++j)
      expected += static_cast<double>((i - j) * (i - j)) * rows[static_cast<std::size_t>(i)] *
                  cols[static_cast<std::size_t>(j)];
  if (n == 0.0 || expected == 0.0) return kNaN;
  return 1.0 - observed * n / expected;
}

// AUC over items sorted by ascending score, item i counted weight[i] times (all 1 without weights).
// Walks groups of tied scores: each positive beats the negatives of lower groups and ties half of
// its own group's. The sums are integers / half-integers, exact in double below 2^52.
inline double auc_sorted(std::span<const std::size_t> ascending, std::span<const int> labels,
                         std::span<const double> scores, const std::vector<std::uint32_t>* weight) {
  double negatives_below = 0.0, positives = 0.0, negatives = 0.0, wins = 0.0;
  std::size_t g = 0;
  while (g < ascending.size()) {
    std::size_t end = g;
    double p = 0.0, q = 0.0;
    while (end < ascending.size() && scores[ascending[end]] == scores[ascending[g]]) {
      const std::size_t i = ascending[end];
      const double w = weight ? static_cast<double>((*weight)[i]) : 1.0;
      (labels[i] ? p : q) += w;
      ++end;
    }
    wins += p * negatives_below + 0.5 * p * q;
    negatives_below += q;
    positives += p;
    negatives += q;
    g = end;
  }
  if (positives == 0.0 || negatives == 0.0) return kNaN;
  return wins / (positives * negatives);
}

inline std::vector<std::size_t> ascending_order(std::span<const double> scores) {
  std::vector<std::size_t> order(scores.size());
  std::iota(order.begin(), order.end(), std::size_t{0});
  std::stable_sort(order.begin(), order.end(),
                   [&](std::size_t a, std::size_t b) { return scores[a] < scores[b]; });
  return order;
}

// The ECE bin of a confidence in [0, 1]: (b/B, (b+1)/B], with 0 in bin 0.
inline int calibration_bin(double confidence, int bins) {
  int b = static_cast<int>(std::ceil(confidence * bins)) - 1;
  b = std::clamp(b, 0, bins - 1);
  while (b > 0 && confidence <= static_cast<double>(b) / bins) --b;
  while (b < bins - 1 && confidence > static_cast<double>(b + 1) / bins) ++b;
  return b;
}

}  // namespace detail

// ---- multi-class metrics ------------------------------------------------------------------------

// confusion_matrix: counts of (true label, prediction) pairs.
//   requires: labels.size() == preds.size(); every entry in [0, num_classes).
//   ensures: a K x K row-major matrix, entry [i * K + j] = #{n : labels[n] == i, preds[n] == j}.
inline std::vector<std::int64_t> confusion_matrix(std::span<const int> labels, std::span<const int> preds,
                                                  int num_classes) {
  detail::check_same_length(labels.size(), preds.size(), "labels", "preds");
  detail::check_classes(labels, num_classes, "labels");
  detail::check_classes(preds, num_classes, "preds");
  const auto k = static_cast<std::size_t>(num_classes);
  std::vector<std::int64_t> confusion(k * k, 0);
  for (std::size_t n = 0; n < labels.size(); ++n)
    ++confusion[static_cast<std::size_t>(labels[n]) * k + static_cast<std::size_t>(preds[n])];
  return confusion;
}

// accuracy: the fraction of equal entries.  requires: equal lengths.  ensures: NaN when empty.
inline double accuracy(std::span<const int> labels, std::span<const int> preds) {
  detail::check_same_length(labels.size(), preds.size(), "labels", "preds");
  if (labels.empty()) return kNaN;
  std::size_t hits = 0;
  for (std::size_t n = 0; n < labels.size(); ++n) hits += labels[n] == preds[n] ? 1 : 0;
  return static_cast<double>(hits) / static_cast<double>(labels.size());
}

// quadratic_weighted_kappa: Cohen's kappa with weights (i - j)^2 over the classes 0..K-1,
//   kappa = 1 - sum_ij w_ij O_ij / sum_ij w_ij E_ij,  E = outer(row sums, column sums) / n.
//   requires: equal lengths; entries in [0, num_classes).
//   ensures: sklearn's cohen_kappa_score(labels, preds, labels=range(K), weights="quadratic") (which
//   equals the call without labels= when every class occurs); NaN when the input is empty or
//   sum w E == 0 (both raters use a single, identical class: sklearn's 0/0).
inline double quadratic_weighted_kappa(std::span<const int> labels, std::span<const int> preds,
                                       int num_classes) {
  return detail::kappa_from_confusion(confusion_matrix(labels, preds, num_classes), num_classes);
}

// argmax_rows: per row of a (N, K) row-major matrix, the first index of its maximum.
//   requires: probs.size() == N * K for some N, num_classes >= 1.
inline std::vector<int> argmax_rows(std::span<const double> probs, int num_classes) {
  FOVEA_CHECK(num_classes >= 1 && probs.size() % static_cast<std::size_t>(num_classes) == 0, "probs has ",
              probs.size(), " entries, not a multiple of num_classes = ", num_classes);
  const auto k = static_cast<std::size_t>(num_classes);
  std::vector<int> out(probs.size() / k);
  for (std::size_t n = 0; n < out.size(); ++n) {
    const auto row = probs.subspan(n * k, k);
    out[n] = static_cast<int>(std::max_element(row.begin(), row.end()) - row.begin());
  }
  return out;
}

// ---- referable DR and binary metrics ------------------------------------------------------------

// referable: 1 where grade >= threshold, else 0 (threshold 2 is the clinical convention; 1 is "any
// DR", 3 "severe or worse").
inline std::vector<int> referable(std::span<const int> labels, int threshold = kDefaultReferableThreshold) {
  std::vector<int> out(labels.size());
  for (std::size_t n = 0; n < labels.size(); ++n) out[n] = labels[n] >= threshold ? 1 : 0;
  return out;
}

// referable_score: per row of probs (N, K), sum_{k >= threshold} p_k.
//   requires: probs.size() a multiple of num_classes; 1 <= threshold < num_classes.
inline std::vector<double> referable_score(std::span<const double> probs, int num_classes,
                                           int threshold = kDefaultReferableThreshold) {
  FOVEA_CHECK(num_classes >= 2 && threshold >= 1 && threshold < num_classes, "referable threshold ",
              threshold, " must lie in [1, num_classes = ", num_classes, ")");
  FOVEA_CHECK(probs.size() % static_cast<std::size_t>(num_classes) == 0, "probs has ", probs.size(),
              " entries, not a multiple of num_classes = ", num_classes);
  const auto k = static_cast<std::size_t>(num_classes);
  std::vector<double> out(probs.size() / k, 0.0);
  for (std::size_t n = 0; n < out.size(); ++n)
    for (std::size_t c = static_cast<std::size_t>(threshold); c < k; ++c) out[n] += probs[n * k + c];
  return out;
}

// roc_auc: the area under the ROC curve = P(score of a positive > score of a negative) + 1/2 P(tie).
//   requires: equal lengths; labels 0 / 1; finite scores.
//   ensures: sklearn's roc_auc_score(labels, scores) to rounding; NaN when either class is absent.
inline double roc_auc(std::span<const int> binary_labels, std::span<const double> scores) {
  detail::check_same_length(binary_labels.size(), scores.size(), "binary_labels", "scores");
  detail::check_binary(binary_labels, "binary_labels");
  detail::check_finite(scores, "scores");
  const auto order = detail::ascending_order(scores);
  return detail::auc_sorted(order, binary_labels, scores, nullptr);
}

// A binary decision rule (positive iff score >= threshold) and its counts.
struct OperatingPoint {
  double threshold = kNaN;
  double sensitivity = kNaN;  // tp / (tp + fn), NaN without positives
  double specificity = kNaN;  // tn / (tn + fp), NaN without negatives
  std::int64_t tp = 0, fn = 0, tn = 0, fp = 0;
  double youden() const { return sensitivity + specificity - 1.0; }
};

namespace detail {
inline OperatingPoint make_point(double threshold, std::int64_t tp, std::int64_t fn, std::int64_t tn,
                                 std::int64_t fp) {
  OperatingPoint p;
  p.threshold = threshold;
  p.tp = tp, p.fn = fn, p.tn = tn, p.fp = fp;
  p.sensitivity = tp + fn > 0 ? static_cast<double>(tp) / static_cast<double>(tp + fn) : kNaN;
  p.specificity = tn + fp > 0 ? static_cast<double>(tn) / static_cast<double>(tn + fp) : kNaN;
  return p;
}

inline void check_binary_scores(std::span<const int> labels, std::span<const double> scores) {
  check_same_length(labels.size(), scores.size(), "binary_labels", "scores");
  check_binary(labels, "binary_labels");
  check_finite(scores, "scores");
}

// Every candidate operating point, thresholds = the distinct scores in descending order.
inline std::vector<OperatingPoint> operating_points(std::span<const int> labels,
                                                    std::span<const double> scores) {
  check_binary_scores(labels, scores);
  const auto order = ascending_order(scores);
  std::int64_t positives = 0;
  for (int l : labels) positives += l;
  const auto negatives = static_cast<std::int64_t>(labels.size()) - positives;
  std::vector<OperatingPoint> points;
  std::int64_t tp = 0, fp = 0;
  std::size_t g = order.size();
  while (g > 0) {
    const double s = scores[order[g - 1]];
    while (g > 0 && scores[order[g - 1]] == s) {
      (labels[order[g - 1]] ? tp : fp) += 1;
      --g;
    }
    points.push_back(make_point(s, tp, positives - tp, negatives - fp, fp));
  }
  return points;
}
}  // namespace detail

// sensitivity_specificity: the counts of the rule "positive iff score >= threshold".
//   requires: equal lengths; labels 0 / 1; finite scores.
inline OperatingPoint sensitivity_specificity(std::span<const int> binary_labels,
                                              std::span<const double> scores, double threshold) {
  detail::check_binary_scores(binary_labels, scores);
  std::int64_t tp = 0, fn = 0, tn = 0, fp = 0;
  for (std::size_t n = 0; n < scores.size(); ++n) {
    const bool positive = scores[n] >= threshold;
    if (binary_labels[n]) (positive ? tp : fn) += 1;
    else (positive ? fp : tn) += 1;
  }
  return detail::make_point(threshold, tp, fn, tn, fp);
}

// threshold_at_sensitivity: the largest threshold among the scores whose sensitivity is >= target
// (so the most specific such rule).
//   requires: 0 < target <= 1.  ensures: an all-NaN point (threshold NaN) when there are no positives.
inline OperatingPoint threshold_at_sensitivity(std::span<const int> binary_labels,
                                               std::span<const double> scores, double target = 0.9) {
  FOVEA_CHECK(target > 0.0 && target <= 1.0, "target sensitivity ", target, " must lie in (0, 1]");
  for (const auto& p : detail::operating_points(binary_labels, scores))
    if (p.sensitivity >= target) return p;
  return OperatingPoint{};
}

// youden_point: the threshold among the scores that maximises Youden's J = sensitivity +
// specificity - 1; ties go to the largest threshold (sklearn: thr[argmax(tpr - fpr)] of roc_curve,
// except that sklearn's extra "nothing positive" point, J = 0, is not a candidate here).
//   ensures: an all-NaN point when either class is absent or the input is empty.
inline OperatingPoint youden_point(std::span<const int> binary_labels, std::span<const double> scores) {
  OperatingPoint best;
  for (const auto& p : detail::operating_points(binary_labels, scores)) {
    if (std::isnan(p.youden())) return OperatingPoint{};
    if (std::isnan(best.threshold) || p.youden() > best.youden()) best = p;
  }
  return best;
}

// ---- calibration --------------------------------------------------------------------------------

// The reliability diagram's sums per equal-width confidence bin b = (b/B, (b+1)/B] (confidence 0
// in bin 0): how many samples, their summed confidence and how many were correct.
struct CalibrationBins {
  std::vector<double> count, confidence, hits;
};

// calibration_bins: the sums above.
//   requires: equal lengths; confidence in [0, 1]; correct 0 / 1; bins >= 1.
inline CalibrationBins calibration_bins(std::span<const double> confidence, std::span<const int> correct,
                                        int bins = kDefaultCalibrationBins) {
  detail::check_same_length(confidence.size(), correct.size(), "confidence", "correct");
  detail::check_probability(confidence, "confidence");
  detail::check_binary(correct, "correct");
  FOVEA_CHECK(bins >= 1, "bins must be >= 1, got ", bins);
  CalibrationBins out;
  out.count.assign(static_cast<std::size_t>(bins), 0.0);
  out.confidence = out.hits = out.count;
  for (std::size_t n = 0; n < confidence.size(); ++n) {
    const auto b = static_cast<std::size_t>(detail::calibration_bin(confidence[n], bins));
    out.count[b] += 1.0;
    out.confidence[b] += confidence[n];
    out.hits[b] += correct[n];
  }
  return out;
}

// expected_calibration_error: sum_b (n_b / N) |accuracy_b - mean confidence_b| over `bins`
// equal-width bins of the confidence, b = (b/B, (b+1)/B] (Guo et al. 2017; confidence 0 in bin 0).
//   requires: equal lengths; confidence in [0, 1]; correct 0 / 1; bins >= 1.  ensures: NaN when empty.
inline double expected_calibration_error(std::span<const double> confidence, std::span<const int> correct,
                                         int bins = kDefaultCalibrationBins) {
  const CalibrationBins c = calibration_bins(confidence, correct, bins);
  if (confidence.empty()) return kNaN;
  double ece = 0.0;
  for (std::size_t b = 0; b < c.count.size(); ++b)
    if (c.count[b] > 0) ece += std::abs(c.hits[b] - c.confidence[b]);  // = n_b |acc_b - conf_b|
  return ece / static_cast<double>(confidence.size());
}

// top_label_calibration_error: the usual multi-class ECE, confidence = max_k p_k, correct = (argmax
// == label).  requires: probs (N, K) row-major with entries in [0, 1]; labels (N) in [0, K).
// top_label_outcomes: per row the top label's probability (the confidence) and whether it is the label.
//   requires: probs (N, K) row-major; labels (N) in [0, K).
struct TopLabelOutcomes {
  std::vector<double> confidence;
  std::vector<int> correct;
};
inline TopLabelOutcomes top_label_outcomes(std::span<const double> probs, std::span<const int> labels,
                                           int num_classes) {
  const auto preds = argmax_rows(probs, num_classes);
  detail::check_same_length(labels.size(), preds.size(), "labels", "probs rows");
  detail::check_classes(labels, num_classes, "labels");
  const auto k = static_cast<std::size_t>(num_classes);
  TopLabelOutcomes out{std::vector<double>(preds.size()), std::vector<int>(preds.size())};
  for (std::size_t n = 0; n < preds.size(); ++n) {
    out.confidence[n] = probs[n * k + static_cast<std::size_t>(preds[n])];
    out.correct[n] = preds[n] == labels[n] ? 1 : 0;
  }
  return out;
}

inline double top_label_calibration_error(std::span<const double> probs, std::span<const int> labels,
                                          int num_classes, int bins = kDefaultCalibrationBins) {
  const TopLabelOutcomes t = top_label_outcomes(probs, labels, num_classes);
  return expected_calibration_error(t.confidence, t.correct, bins);
}

// binary_calibration_error: the ECE of a binary score s = P(positive): the predicted class is
// s >= 0.5, its confidence max(s, 1 - s).  requires: scores in [0, 1]; labels 0 / 1.
inline double binary_calibration_error(std::span<const int> binary_labels, std::span<const double> scores,
                                       int bins = kDefaultCalibrationBins) {
  detail::check_same_length(binary_labels.size(), scores.size(), "binary_labels", "scores");
  detail::check_binary(binary_labels, "binary_labels");
  detail::check_probability(scores, "scores");
  std::vector<double> confidence(scores.size());
  std::vector<int> correct(scores.size());
  for (std::size_t n = 0; n < scores.size(); ++n) {
    const int pred = scores[n] >= 0.5 ? 1 : 0;
    confidence[n] = pred ? scores[n] : 1.0 - scores[n];
    correct[n] = pred == binary_labels[n] ? 1 : 0;
  }
  return expected_calibration_error(confidence, correct, bins);
}

// ---- bootstrap ----------------------------------------------------------------------------------

// A statistic evaluated on a resample, given as the indices (with repeats) of the items it holds.
using Statistic = std::function<double(std::span<const std::size_t>)>;

// A point estimate and its percentile bootstrap interval.
struct ConfidenceInterval {
  double point = kNaN;  // the statistic on the full sample
  double low = kNaN;    // percentile alpha/2 of the valid resamples (NaN when none is valid)
  double high = kNaN;   // percentile 1 - alpha/2
  int valid_resamples = 0;
  int resamples = 0;  // drawn; resamples - valid_resamples were NaN and skipped
};

// bootstrap_resample: the n indices of resample r, each uniform on [0, n) by Philox::uniform_int on
// RandomKey(seed, kPurposeSplit, 0, r, kBootstrapView). Resample r depends on (n, seed, r) only.
//   requires: 0 < n < 2^32.
inline std::vector<std::size_t> bootstrap_resample(std::size_t n, std::uint64_t seed, std::uint32_t r) {
  FOVEA_CHECK(n > 0 && n <= std::numeric_limits<std::uint32_t>::max(), "bootstrap needs 0 < n < 2^32, got ",
              n);
  Philox rng(make_key(seed, kPurposeSplit, 0, r, kBootstrapView));
  std::vector<std::size_t> idx(n);
  for (auto& i : idx) i = rng.uniform_int(static_cast<std::uint32_t>(n));
  return idx;
}

// percentile: numpy.percentile(values, 100 q) with the default linear interpolation; NaN when empty.
//   requires: 0 <= q <= 1.
inline double percentile(std::vector<double> values, double q) {
  FOVEA_CHECK(q >= 0.0 && q <= 1.0, "quantile ", q, " must lie in [0, 1]");
  if (values.empty()) return kNaN;
  std::sort(values.begin(), values.end());
  const double h = q * static_cast<double>(values.size() - 1);
  const auto lo = static_cast<std::size_t>(std::floor(h));
  const std::size_t hi = std::min(lo + 1, values.size() - 1);
  return values[lo] + (h - static_cast<double>(lo)) * (values[hi] - values[lo]);
}

// bootstrap_cis: several statistics on the same resamples (so their intervals are paired).
//   requires: n > 0, resamples >= 1, 0 < alpha < 1.
//   ensures: per statistic, point = statistic(0..n-1) and the percentile interval of its non-NaN
//   values over resamples r = 0..resamples-1 (a prefix of a longer run draws the same resamples).
inline std::vector<ConfidenceInterval> bootstrap_cis(std::size_t n, std::span<const Statistic> statistics,
                                                     int resamples = kDefaultResamples,
                                                     std::uint64_t seed = 0, double alpha = kDefaultAlpha) {
  FOVEA_CHECK(resamples >= 1, "resamples must be >= 1, got ", resamples);
  FOVEA_CHECK(alpha > 0.0 && alpha < 1.0, "alpha ", alpha, " must lie in (0, 1)");
  FOVEA_CHECK(n > 0 && n <= std::numeric_limits<std::uint32_t>::max(), "bootstrap needs 0 < n < 2^32, got ",
              n);
  std::vector<std::size_t> all(n);
  std::iota(all.begin(), all.end(), std::size_t{0});
  std::vector<ConfidenceInterval> out(statistics.size());
  std::vector<std::vector<double>> values(statistics.size());
  for (std::size_t s = 0; s < statistics.size(); ++s) {
    out[s].point = statistics[s](all);
    out[s].resamples = resamples;
    values[s].reserve(static_cast<std::size_t>(resamples));
  }
  for (int r = 0; r < resamples; ++r) {
    const auto idx = bootstrap_resample(n, seed, static_cast<std::uint32_t>(r));
    for (std::size_t s = 0; s < statistics.size(); ++s) {
      const double v = statistics[s](idx);
      if (!std::isnan(v)) values[s].push_back(v);
    }
  }
  for (std::size_t s = 0; s < statistics.size(); ++s) {
    out[s].valid_resamples = static_cast<int>(values[s].size());
    out[s].low = percentile(values[s], alpha / 2);
    out[s].high = percentile(std::move(values[s]), 1.0 - alpha / 2);
  }
  return out;
}

// bootstrap_ci: the percentile bootstrap (1 - alpha) interval of one statistic (see bootstrap_cis).
inline ConfidenceInterval bootstrap_ci(std::size_t n, const Statistic& statistic,
                                       int resamples = kDefaultResamples, std::uint64_t seed = 0,
                                       double alpha = kDefaultAlpha) {
  return bootstrap_cis(n, std::span<const Statistic>(&statistic, 1), resamples, seed, alpha)[0];
}

// ---- the report ---------------------------------------------------------------------------------

// A binary operating point with intervals for its rates (threshold fixed on the full sample).
struct OperatingPointReport {
  OperatingPoint point;
  ConfidenceInterval sensitivity;
  ConfidenceInterval specificity;
};

// What a bootstrap evaluation was run on and with (shared by MetricReport and eval::Comparison).
struct EvaluationSettings {
  std::int64_t n = 0;
  int num_classes = 0;
  int referable_threshold = kDefaultReferableThreshold;
  int resamples = 0;
  std::uint64_t seed = 0;
  double alpha = kDefaultAlpha;
};

// Everything evaluate_predictions computes.
struct MetricReport : EvaluationSettings {
  int calibration_bins = kDefaultCalibrationBins;
  std::vector<std::int64_t> confusion;  // (K, K) row-major, rows true labels
  ConfidenceInterval accuracy;
  ConfidenceInterval kappa;              // quadratic weighted
  ConfidenceInterval ece;                // top-label ECE of the K-class probabilities
  std::int64_t referable_positives = 0;  // grade >= referable_threshold
  std::int64_t referable_negatives = 0;
  ConfidenceInterval referable_auc;        // of the referable score
  OperatingPointReport referable_at_half;  // positive iff referable score >= 0.5
  OperatingPointReport referable_youden;   // Youden's point on the full sample
  ConfidenceInterval referable_ece;        // binary_calibration_error of the referable score
};

// evaluate_predictions: the metrics of 1.3 of the reference with percentile bootstrap intervals,
// all statistics on the same resamples. Predictions are argmax_rows(probs); the referable score is
// referable_score(probs, K, referable_threshold). Sensitivity / specificity intervals hold the
// threshold fixed (0.5, or Youden's point chosen once on the full sample).
//   requires: labels (N) in [0, K), N > 0; probs (N, K) row-major, entries in [0, 1], K >= 2;
//   1 <= referable_threshold < K; resamples >= 1.
inline MetricReport evaluate_predictions(std::span<const int> labels, std::span<const double> probs,
                                         int referable_threshold = kDefaultReferableThreshold,
                                         int resamples = kDefaultResamples, std::uint64_t seed = 0,
                                         double alpha = kDefaultAlpha, int bins = kDefaultCalibrationBins) {
  FOVEA_CHECK(!labels.empty(), "evaluate_predictions needs at least one sample");
  FOVEA_CHECK(probs.size() % labels.size() == 0 && probs.size() / labels.size() >= 2, "probs has ",
              probs.size(), " entries, not N * K for N = ", labels.size(), " labels and K >= 2 classes");
  const auto n = labels.size();
  const int k = static_cast<int>(probs.size() / n);
  detail::check_classes(labels, k, "labels");
  detail::check_probability(probs, "probs");
  const auto preds = argmax_rows(probs, k);
  const auto binary = referable(labels, referable_threshold);
  const auto score = referable_score(probs, k, referable_threshold);
  std::vector<double> top(n);
  for (std::size_t i = 0; i < n; ++i)
    top[i] = probs[i * static_cast<std::size_t>(k) + static_cast<std::size_t>(preds[i])];

  MetricReport rep;
  rep.n = static_cast<std::int64_t>(n);
  rep.num_classes = k;
  rep.referable_threshold = referable_threshold;
  rep.resamples = resamples;
  rep.seed = seed;
  rep.alpha = alpha;
  rep.calibration_bins = bins;
  rep.confusion = confusion_matrix(labels, preds, k);
  for (int b : binary) (b ? rep.referable_positives : rep.referable_negatives) += 1;
  rep.referable_at_half.point = sensitivity_specificity(binary, score, 0.5);
  rep.referable_youden.point = youden_point(binary, score);

  const auto order = detail::ascending_order(score);
  const double youden_threshold = rep.referable_youden.point.threshold;
  const auto rate = [&](double threshold, bool sensitivity) -> Statistic {
    return [&binary, &score, threshold, sensitivity](std::span<const std::size_t> idx) {
      if (std::isnan(threshold)) return kNaN;
      double hit = 0.0, total = 0.0;
      for (std::size_t i : idx)
        if ((binary[i] == 1) == sensitivity) {
          total += 1.0;
          hit += (score[i] >= threshold) == sensitivity ? 1.0 : 0.0;
        }
      return total > 0 ? hit / total : kNaN;
    };
  };
  const auto ece_of = [bins](const std::vector<double>& conf, const std::vector<int>& correct) -> Statistic {
    return [&conf, &correct, bins](std::span<const std::size_t> idx) {
      std::vector<double> c(idx.size());
      std::vector<int> h(idx.size());
      for (std::size_t j = 0; j < idx.size(); ++j) c[j] = conf[idx[j]], h[j] = correct[idx[j]];
      return expected_calibration_error(c, h, bins);
    };
  };
  std::vector<int> top_correct(n), bin_correct(n);
  std::vector<double> bin_conf(n);
  for (std::size_t i = 0; i < n; ++i) {
    top_correct[i] = preds[i] == labels[i] ? 1 : 0;
    const int p = score[i] >= 0.5 ? 1 : 0;
    bin_conf[i] = p ? score[i] : 1.0 - score[i];
    bin_correct[i] = p == binary[i] ? 1 : 0;
  }

  const std::vector<Statistic> stats = {
      [&](std::span<const std::size_t> idx) {
        double hits = 0.0;
        for (std::size_t i : idx) hits += top_correct[i];
        return hits / static_cast<double>(idx.size());
      },
      [&](std::span<const std::size_t> idx) {
        std::vector<std::int64_t> c(static_cast<std::size_t>(k * k), 0);
        for (std::size_t i : idx) ++c[static_cast<std::size_t>(labels[i] * k + preds[i])];
        return detail::kappa_from_confusion(c, k);
      },
      ece_of(top, top_correct),
      [&](std::span<const std::size_t> idx) {
        std::vector<std::uint32_t> w(n, 0);
        for (std::size_t i : idx) ++w[i];
        return detail::auc_sorted(order, binary, score, &w);
      },
      rate(0.5, true),
      rate(0.5, false),
      rate(youden_threshold, true),
      rate(youden_threshold, false),
      ece_of(bin_conf, bin_correct),
  };
  const auto ci = bootstrap_cis(n, stats, resamples, seed, alpha);
  rep.accuracy = ci[0];
  rep.kappa = ci[1];
  rep.ece = ci[2];
  rep.referable_auc = ci[3];
  rep.referable_at_half.sensitivity = ci[4];
  rep.referable_at_half.specificity = ci[5];
  rep.referable_youden.sensitivity = ci[6];
  rep.referable_youden.specificity = ci[7];
  rep.referable_ece = ci[8];
  return rep;
}

// ---- JSON ---------------------------------------------------------------------------------------

namespace detail {
// The shortest decimal that reads back to v; null for NaN and infinities (JSON has neither).
inline std::string json_double(double v) {
  if (!std::isfinite(v)) return "null";
  char buf[32];
  const auto res = std::to_chars(buf, buf + sizeof(buf), v);
  return std::string(buf, res.ptr);
}

inline std::string json_interval(const ConfidenceInterval& c) {
  return "{\"point\":" + json_double(c.point) + ",\"low\":" + json_double(c.low) +
         ",\"high\":" + json_double(c.high) + ",\"valid_resamples\":" + std::to_string(c.valid_resamples) +
         ",\"resamples\":" + std::to_string(c.resamples) + "}";
}

inline std::string json_operating_point(const OperatingPointReport& r) {
  const auto& p = r.point;
  return "{\"threshold\":" + json_double(p.threshold) + ",\"sensitivity\":" + json_interval(r.sensitivity) +
         ",\"specificity\":" + json_interval(r.specificity) + ",\"tp\":" + std::to_string(p.tp) +
         ",\"fn\":" + std::to_string(p.fn) + ",\"tn\":" + std::to_string(p.tn) +
         ",\"fp\":" + std::to_string(p.fp) + "}";
}
}  // namespace detail

// to_json: the report as one JSON object (keys in a fixed order, NaN written as null, doubles in
// their shortest round-trip form); the layout is documented in docs/metrics.md.
inline std::string to_json(const MetricReport& r) {
  using detail::json_double;
  using detail::json_interval;
  std::string confusion = "[";
  const auto k = static_cast<std::size_t>(r.num_classes);
  for (std::size_t i = 0; i < k; ++i) {
    confusion += i ? ",[" : "[";
    for (std::size_t j = 0; j < k; ++j)
      confusion += (j ? "," : "") + std::to_string(r.confusion.size() == k * k ? r.confusion[i * k + j] : 0);
    confusion += "]";
  }
  confusion += "]";
  return "{\"n\":" + std::to_string(r.n) + ",\"num_classes\":" + std::to_string(r.num_classes) +
         ",\"resamples\":" + std::to_string(r.resamples) + ",\"seed\":" + std::to_string(r.seed) +
         ",\"alpha\":" + json_double(r.alpha) +
         ",\"calibration_bins\":" + std::to_string(r.calibration_bins) +
         ",\"confusion_matrix\":" + confusion + ",\"accuracy\":" + json_interval(r.accuracy) +
         ",\"quadratic_weighted_kappa\":" + json_interval(r.kappa) + ",\"ece\":" + json_interval(r.ece) +
         ",\"referable\":{\"threshold\":" + std::to_string(r.referable_threshold) +
         ",\"positives\":" + std::to_string(r.referable_positives) +
         ",\"negatives\":" + std::to_string(r.referable_negatives) +
         ",\"auc\":" + json_interval(r.referable_auc) +
         ",\"at_half\":" + detail::json_operating_point(r.referable_at_half) +
         ",\"youden\":" + detail::json_operating_point(r.referable_youden) +
         ",\"ece\":" + json_interval(r.referable_ece) + "}}";
}

}  // namespace fovea::eval
