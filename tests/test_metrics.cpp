// tests/test_metrics.cpp: the evaluation metrics (fovea/eval/metrics.hpp) against hand-computed
// values and values recorded from scikit-learn, the Philox bootstrap, ECE, evaluate_predictions and
// its JSON.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "fovea/core/random.hpp"
#include "fovea/eval/metrics.hpp"

namespace fovea::eval {
namespace {

using Ints = std::vector<int>;
using Doubles = std::vector<double>;

constexpr double kTol = 1e-12;

// ---- recorded scikit-learn values ----------------------------------------------------------------
// Recorded with Debian's scikit-learn 1.2.1 (numpy 1.24.2):
//   /usr/bin/python3 -c 'from sklearn.metrics import cohen_kappa_score as k; print(repr(k(L, P,
//       labels=list(range(5)), weights="quadratic")))'
//   /usr/bin/python3 -c 'from sklearn.metrics import roc_auc_score as a; print(repr(a(L, S)))'
// and for Youden's point fpr, tpr, thr = roc_curve(L, S, drop_intermediate=False);
// thr[argmax(tpr - fpr)]. tests/torch/check_metrics.py recomputes all of them.
struct KappaCase {
  const char* name;
  Ints labels, preds;
  double sklearn;  // NaN: sklearn returns nan (0/0, with a RuntimeWarning)
};

std::vector<KappaCase> kappa_cases() {
  return {
      {"A",
       {0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 2, 2, 0, 1, 4},
       {0, 2, 2, 3, 3, 0, 1, 1, 3, 4, 2, 4, 1, 1, 4},
       0.8574821852731591},
      {"B",
       {1, 3, 0, 1, 1, 1, 4, 3, 4, 4, 0, 0, 4, 0, 0, 0, 4, 1, 1, 0, 2, 2, 4, 3, 4, 0, 2, 2, 3, 0},
       {0, 3, 0, 2, 1, 2, 4, 3, 4, 3, 0, 0, 4, 0, 1, 0, 4, 2, 2, 0, 2, 1, 4, 4, 4, 0, 1, 1, 2, 0},
       0.9164345403899722},
      {"C: one class, both raters (degenerate)", {2, 2, 2, 2, 2, 2}, {2, 2, 2, 2, 2, 2}, std::nan("")},
      {"D: one true class", {0, 0, 0, 0, 0, 0, 0}, {0, 1, 2, 3, 4, 1, 0}, 0.0},
      // sklearn without labels= gives 0.7272727272727273 here: it indexes only the classes present.
      {"E: classes 2, 3 absent", {0, 1, 4, 4, 1, 0, 0, 4}, {0, 4, 4, 1, 1, 0, 1, 4}, 0.6082474226804124},
  };
}

TEST(Kappa, MatchesScikitLearn) {
  for (const auto& c : kappa_cases()) {
    const double got = quadratic_weighted_kappa(c.labels, c.preds, 5);
    if (std::isnan(c.sklearn)) {
      EXPECT_TRUE(std::isnan(got)) << c.name << ": got " << got;
    } else {
      EXPECT_NEAR(got, c.sklearn, kTol) << c.name;
    }
    const double swapped = quadratic_weighted_kappa(c.preds, c.labels, 5);
    if (!std::isnan(got)) EXPECT_DOUBLE_EQ(swapped, got) << c.name << " is symmetric";
    else EXPECT_TRUE(std::isnan(swapped)) << c.name << " is symmetric";
  }
}

// K = 3, confusion (rows true) [[2,1,0],[0,2,1],[1,0,3]], n = 10, weights (i-j)^2.
// Observed sum w O = 1*1 (0,1) + 1*1 (1,2) + 4*1 (2,0) = 6. Row sums r = (3,3,4), column sums c = (3,3,4):
// sum w r_i c_j = 3*(1*3 + 4*4) + 3*(1*3 + 1*4) + 4*(4*3 + 1*3) = 57 + 21 + 60 = 138, so E-term 13.8
// and kappa = 1 - 6 / 13.8 = 13/23 (sklearn: 0.5652173913043479).
TEST(Kappa, HandComputed3x3) {
  const Ints labels = {0, 0, 0, 1, 1, 1, 2, 2, 2, 2};
  const Ints preds = {0, 0, 1, 1, 1, 2, 0, 2, 2, 2};
  const auto cm = confusion_matrix(labels, preds, 3);
  EXPECT_EQ(cm, (std::vector<std::int64_t>{2, 1, 0, 0, 2, 1, 1, 0, 3}));
  EXPECT_NEAR(quadratic_weighted_kappa(labels, preds, 3), 13.0 / 23.0, kTol);
}

TEST(Kappa, PerfectAndOppositeAgreement) {
  const Ints y = {0, 1, 2, 3, 4, 4, 2};
  EXPECT_DOUBLE_EQ(quadratic_weighted_kappa(y, y, 5), 1.0);
  // [0, 4] vs [4, 0]: observed 2 * 16 = 32; expected term 16 * (2 * 0.5) = 16; kappa = 1 - 2 = -1.
  EXPECT_DOUBLE_EQ(quadratic_weighted_kappa(Ints{0, 4}, Ints{4, 0}, 5), -1.0);
  EXPECT_TRUE(std::isnan(quadratic_weighted_kappa(Ints{}, Ints{}, 5)));
}

TEST(Kappa, RejectsBadInput) {
  EXPECT_THROW(quadratic_weighted_kappa(Ints{0, 5}, Ints{0, 1}, 5), Error);
  EXPECT_THROW(quadratic_weighted_kappa(Ints{0, -1}, Ints{0, 1}, 5), Error);
  EXPECT_THROW(quadratic_weighted_kappa(Ints{0, 1}, Ints{0}, 5), Error);
}

TEST(Accuracy, Basic) {
  EXPECT_DOUBLE_EQ(accuracy(Ints{0, 1, 2, 3}, Ints{0, 1, 1, 3}), 0.75);
  EXPECT_TRUE(std::isnan(accuracy(Ints{}, Ints{})));
}

struct AucCase {
  const char* name;
  Ints labels;
  Doubles scores;
  double sklearn;
  double youden_threshold;  // sklearn roc_curve thr[argmax(tpr - fpr)]
};

std::vector<AucCase> auc_cases() {
  return {
      {"A: sklearn docs example", {0, 0, 1, 1}, {0.1, 0.4, 0.35, 0.8}, 0.75, 0.8},
      {"B: ties", {0, 1, 0, 1, 1, 0, 1, 0}, {0.5, 0.5, 0.2, 0.9, 0.5, 0.5, 0.3, 0.1}, 0.75, 0.3},
      {"C: 40 scores on a 0.1 grid",
       {1, 0, 1, 0, 0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 1, 0, 1, 0, 0,
        0, 0, 1, 0, 0, 1, 1, 1, 1, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0},
       {0.4, 0.6, 0.8, 0.4, 0.5, 0.9, 0.9, 0.6, 0.3, 0.6, 0.6, 0.5, 0.4, 0.3, 0.4, 0.5, 0.4, 0.9, 0.3, 0.7,
        0.6, 0.5, 0.5, 0.4, 0.9, 0.7, 0.8, 0.8, 0.9, 0.5, 0.4, 0.6, 0.4, 0.7, 0.5, 0.7, 0.5, 0.7, 0.4, 0.4},
       0.8282967032967032,
       0.7},
      {"D: tie across classes", {1, 0, 1, 0}, {0.5, 0.5, 0.7, 0.2}, 0.875, 0.7},
  };
}

TEST(RocAuc, MatchesScikitLearn) {
  for (const auto& c : auc_cases()) {
    EXPECT_NEAR(roc_auc(c.labels, c.scores), c.sklearn, kTol) << c.name;
    EXPECT_DOUBLE_EQ(youden_point(c.labels, c.scores).threshold, c.youden_threshold) << c.name;
  }
}

// Positives {0.5, 0.7} vs negatives {0.5, 0.2}: pairs 0.5-0.5 tie (1/2), 0.5-0.2, 0.7-0.5, 0.7-0.2
// wins, so AUC = 3.5 / 4. Case B: positives {0.5, 0.9, 0.5, 0.3}, negatives {0.5, 0.2, 0.5, 0.1}:
// 0.9 beats 4; each 0.5 beats 2 and ties 2 (3 each); 0.3 beats 2: 12 / 16.
TEST(RocAuc, HandComputedTies) {
  EXPECT_DOUBLE_EQ(roc_auc(Ints{1, 0, 1, 0}, Doubles{0.5, 0.5, 0.7, 0.2}), 0.875);
  EXPECT_DOUBLE_EQ(roc_auc(Ints{0, 1, 0, 1, 1, 0, 1, 0}, Doubles{0.5, 0.5, 0.2, 0.9, 0.5, 0.5, 0.3, 0.1}),
                   0.75);
  EXPECT_DOUBLE_EQ(roc_auc(Ints{1, 0, 1, 0}, Doubles{0.3, 0.3, 0.3, 0.3}), 0.5);
  EXPECT_DOUBLE_EQ(roc_auc(Ints{0, 0, 1}, Doubles{0.1, 0.2, 0.3}), 1.0);
  EXPECT_DOUBLE_EQ(roc_auc(Ints{1, 1, 0}, Doubles{0.1, 0.2, 0.3}), 0.0);
}

TEST(RocAuc, NaNWhenOneClassAbsent) {
  EXPECT_TRUE(std::isnan(roc_auc(Ints{1, 1, 1}, Doubles{0.1, 0.2, 0.3})));  // sklearn raises
  EXPECT_TRUE(std::isnan(roc_auc(Ints{0, 0}, Doubles{0.1, 0.2})));
  EXPECT_TRUE(std::isnan(roc_auc(Ints{}, Doubles{})));
  EXPECT_THROW(roc_auc(Ints{0, 2}, Doubles{0.1, 0.2}), Error);
  EXPECT_THROW(roc_auc(Ints{0, 1}, Doubles{0.1, std::nan("")}), Error);
}

TEST(Referable, LabelsAndScores) {
  EXPECT_EQ(referable(Ints{0, 1, 2, 3, 4}), (Ints{0, 0, 1, 1, 1}));
  EXPECT_EQ(referable(Ints{0, 1, 2, 3, 4}, 1), (Ints{0, 1, 1, 1, 1}));
  EXPECT_EQ(referable(Ints{0, 1, 2, 3, 4}, 3), (Ints{0, 0, 0, 1, 1}));
  const Doubles probs = {0.5, 0.25, 0.125, 0.0625, 0.0625,  // row 0
                         0.0, 0.0,  0.0,   0.0,    1.0};    // row 1
  EXPECT_EQ(referable_score(probs, 5), (Doubles{0.25, 1.0}));
  EXPECT_EQ(referable_score(probs, 5, 1), (Doubles{0.5, 1.0}));
  EXPECT_EQ(argmax_rows(Doubles{0.2, 0.4, 0.4, 0.9, 0.1, 0.0}, 3), (Ints{1, 0}));  // ties: first max
  EXPECT_THROW(referable_score(probs, 5, 0), Error);
  EXPECT_THROW(referable_score(probs, 5, 5), Error);
}

TEST(OperatingPoints, SensitivitySpecificityAndChoosers) {
  const Ints y = {0, 0, 0, 0, 1, 1, 1, 1, 1, 0};
  const Doubles s = {0.1, 0.2, 0.3, 0.6, 0.4, 0.6, 0.7, 0.8, 0.9, 0.05};
  const auto p = sensitivity_specificity(y, s, 0.5);  // positive iff s >= 0.5
  EXPECT_EQ(p.tp, 4);
  EXPECT_EQ(p.fn, 1);
  EXPECT_EQ(p.tn, 4);
  EXPECT_EQ(p.fp, 1);
  EXPECT_DOUBLE_EQ(p.sensitivity, 0.8);
  EXPECT_DOUBLE_EQ(p.specificity, 0.8);
  EXPECT_DOUBLE_EQ(sensitivity_specificity(y, s, 0.6).sensitivity, 0.8);  // >= includes the threshold
  // Sensitivity >= 0.9 needs all 5 positives: the largest such threshold is 0.4 (spec 4/5).
  const auto q = threshold_at_sensitivity(y, s, 0.9);
  EXPECT_DOUBLE_EQ(q.threshold, 0.4);
  EXPECT_DOUBLE_EQ(q.sensitivity, 1.0);
  EXPECT_DOUBLE_EQ(q.specificity, 0.8);
  EXPECT_DOUBLE_EQ(threshold_at_sensitivity(y, s, 0.6).threshold, 0.7);
  // J at thresholds 0.9 .8 .7 .6 .4: 0.2, 0.4, 0.6, 0.6, 0.8 -> 0.4.
  const auto j = youden_point(y, s);
  EXPECT_DOUBLE_EQ(j.threshold, 0.4);
  EXPECT_NEAR(j.youden(), 0.8, kTol);
  EXPECT_TRUE(std::isnan(youden_point(Ints{1, 1}, Doubles{0.2, 0.3}).threshold));
  EXPECT_TRUE(std::isnan(threshold_at_sensitivity(Ints{0, 0}, Doubles{0.2, 0.3}).threshold));
  EXPECT_TRUE(std::isnan(sensitivity_specificity(Ints{0, 0}, Doubles{0.2, 0.3}, 0.5).sensitivity));
}

// ---- calibration --------------------------------------------------------------------------------

// 10 bins: 0.9 falls in (0.8, 0.9] with accuracy 1/2 -> |0.5 - 0.9| * 2/4; 0.6 in (0.5, 0.6] with
// accuracy 1 -> |1 - 0.6| * 2/4; ECE = 0.2 + 0.2.
TEST(Calibration, HandComputed) {
  EXPECT_NEAR(expected_calibration_error(Doubles{0.9, 0.9, 0.6, 0.6}, Ints{1, 0, 1, 1}, 10), 0.4, kTol);
  EXPECT_NEAR(expected_calibration_error(Doubles{1.0, 0.0}, Ints{1, 0}, 15), 0.0, kTol);
  EXPECT_TRUE(std::isnan(expected_calibration_error(Doubles{}, Ints{}, 15)));
  EXPECT_THROW(expected_calibration_error(Doubles{1.5}, Ints{1}, 15), Error);
  // Binary: s = 0.8 -> predicted 1 with confidence 0.8; s = 0.45 -> predicted 0 with confidence 0.55.
  EXPECT_NEAR(binary_calibration_error(Ints{1, 1}, Doubles{0.8, 0.45}, 10), 0.5 * 0.2 + 0.5 * 0.55, kTol);
  // Top-label: rows (0.7, 0.2, 0.1) label 0 and (0.1, 0.3, 0.6) label 1: bins (0.6,0.7] and (0.5,0.6].
  EXPECT_NEAR(top_label_calibration_error(Doubles{0.7, 0.2, 0.1, 0.1, 0.3, 0.6}, Ints{0, 1}, 3, 10),
              0.5 * 0.3 + 0.5 * 0.6, kTol);
}

// Synthetic confidences with outcomes drawn at exactly that rate (calibrated) or at 0.7 under a
// claimed 0.95 (overconfident).
TEST(Calibration, CalibratedNearZeroOverconfidentLarge) {
  Philox rng(make_key(11, kPurposeTest));
  const int n = 20000;
  Doubles conf(n), over(n);
  Ints correct(n), over_correct(n);
  for (int i = 0; i < n; ++i) {
    conf[i] = 0.2 + 0.8 * rng.next_uniform();
    correct[i] = rng.next_uniform() < conf[i] ? 1 : 0;
    over[i] = 0.95;
    over_correct[i] = rng.next_uniform() < 0.7 ? 1 : 0;
  }
  EXPECT_LT(expected_calibration_error(conf, correct), 0.02);
  EXPECT_GT(expected_calibration_error(over, over_correct), 0.1);
  EXPECT_NEAR(expected_calibration_error(over, over_correct), 0.25, 0.02);
}

// ---- bootstrap ----------------------------------------------------------------------------------

Statistic mean_of(const Doubles& x) {
  return [&x](std::span<const std::size_t> idx) {
    double s = 0;
    for (auto i : idx) s += x[i];
    return s / static_cast<double>(idx.size());
  };
}

Doubles bernoulli(int n, double p, std::uint64_t seed) {
  Philox rng(make_key(seed, kPurposeTest));
  Doubles x(static_cast<std::size_t>(n));
  for (auto& v : x) v = rng.next_uniform() < p ? 1.0 : 0.0;
  return x;
}

TEST(Bootstrap, PercentileMatchesNumpy) {
  EXPECT_DOUBLE_EQ(percentile({4, 1, 3, 2}, 0.25), 1.75);  // numpy.percentile([1,2,3,4], 25)
  EXPECT_DOUBLE_EQ(percentile({4, 1, 3, 2}, 0.975), 3.925);
  EXPECT_DOUBLE_EQ(percentile({7}, 0.5), 7.0);
  EXPECT_TRUE(std::isnan(percentile({}, 0.5)));
}

TEST(Bootstrap, ReproducibleWithASeed) {
  const auto x = bernoulli(300, 0.7, 1);
  const auto a = bootstrap_ci(x.size(), mean_of(x), 200, 42);
  const auto b = bootstrap_ci(x.size(), mean_of(x), 200, 42);
  const auto c = bootstrap_ci(x.size(), mean_of(x), 200, 43);
  EXPECT_EQ(a.low, b.low);
  EXPECT_EQ(a.high, b.high);
  EXPECT_EQ(a.valid_resamples, 200);
  EXPECT_TRUE(a.low != c.low || a.high != c.high);
  EXPECT_EQ(bootstrap_resample(50, 42, 7), bootstrap_resample(50, 42, 7));
  EXPECT_NE(bootstrap_resample(50, 42, 7), bootstrap_resample(50, 42, 8));
  for (auto i : bootstrap_resample(50, 42, 7)) EXPECT_LT(i, 50u);
}

TEST(Bootstrap, ContainsPointAndShrinksLikeOneOverSqrtN) {
  const auto small = bernoulli(400, 0.7, 2);
  const auto large = bernoulli(1600, 0.7, 3);
  const auto a = bootstrap_ci(small.size(), mean_of(small), 400, 5);
  const auto b = bootstrap_ci(large.size(), mean_of(large), 400, 5);
  EXPECT_LT(a.low, a.point);
  EXPECT_GT(a.high, a.point);
  EXPECT_LT(b.low, b.point);
  EXPECT_GT(b.high, b.point);
  // Normal approximation: width ~ 2 * 1.96 * sqrt(0.21 / n) = 0.0898 (n = 400), 0.0449 (n = 1600).
  EXPECT_NEAR(a.high - a.low, 0.0898, 0.015);
  const double ratio = (a.high - a.low) / (b.high - b.low);
  EXPECT_GT(ratio, 1.6);
  EXPECT_LT(ratio, 2.5);
}

TEST(Bootstrap, NaNResamplesAreSkippedAndCounted) {
  // One positive among 10: a resample misses it with probability 0.9^10 ~ 0.35, and its AUC is NaN.
  const Ints y = {0, 0, 0, 0, 1, 0, 0, 0, 0, 0};
  const Doubles s = {0.1, 0.2, 0.3, 0.4, 0.45, 0.5, 0.6, 0.7, 0.8, 0.9};
  const Statistic auc = [&](std::span<const std::size_t> idx) {
    Ints yy;
    Doubles ss;
    for (auto i : idx) yy.push_back(y[i]), ss.push_back(s[i]);
    return roc_auc(yy, ss);
  };
  const auto ci = bootstrap_ci(y.size(), auc, 500, 9);
  int missing = 0;
  for (std::uint32_t r = 0; r < 500; ++r) {
    bool has = false;
    for (auto i : bootstrap_resample(y.size(), 9, r)) has = has || y[i] == 1;
    missing += has ? 0 : 1;
  }
  EXPECT_EQ(ci.resamples, 500);
  EXPECT_EQ(ci.valid_resamples, 500 - missing);
  EXPECT_GT(missing, 100);
  EXPECT_LT(missing, 260);
  EXPECT_TRUE(std::isfinite(ci.low) && std::isfinite(ci.high));
  EXPECT_DOUBLE_EQ(ci.point, 4.0 / 9.0);

  const auto none = bootstrap_ci(
      5, [](std::span<const std::size_t>) { return std::nan(""); }, 20, 1);
  EXPECT_EQ(none.valid_resamples, 0);
  EXPECT_TRUE(std::isnan(none.low) && std::isnan(none.high));
}

// ---- evaluate_predictions and to_json -----------------------------------------------------------

// Synthetic 5-grade predictions: the probability mass centres on the true grade with noise.
void synthetic(int n, std::uint64_t seed, Ints& labels, Doubles& probs) {
  Philox rng(make_key(seed, kPurposeTest));
  labels.assign(static_cast<std::size_t>(n), 0);
  probs.assign(static_cast<std::size_t>(n) * 5, 0.0);
  for (int i = 0; i < n; ++i) {
    labels[i] = static_cast<int>(rng.uniform_int(5));
    const double centre = labels[i] + 1.5 * (rng.next_uniform() - 0.5);
    double sum = 0;
    for (int k = 0; k < 5; ++k) sum += probs[i * 5 + k] = std::exp(-(k - centre) * (k - centre));
    for (int k = 0; k < 5; ++k) probs[i * 5 + k] /= sum;
  }
}

TEST(EvaluatePredictions, AgreesWithTheSingleMetrics) {
  Ints labels;
  Doubles probs;
  synthetic(300, 4, labels, probs);
  const auto rep = evaluate_predictions(labels, probs, 2, 200, 7);
  const auto preds = argmax_rows(probs, 5);
  const auto y = referable(labels, 2);
  const auto s = referable_score(probs, 5, 2);
  EXPECT_EQ(rep.n, 300);
  EXPECT_EQ(rep.num_classes, 5);
  EXPECT_EQ(rep.confusion, confusion_matrix(labels, preds, 5));
  EXPECT_DOUBLE_EQ(rep.accuracy.point, accuracy(labels, preds));
  EXPECT_NEAR(rep.kappa.point, quadratic_weighted_kappa(labels, preds, 5), kTol);
  EXPECT_NEAR(rep.referable_auc.point, roc_auc(y, s), kTol);
  EXPECT_NEAR(rep.ece.point, top_label_calibration_error(probs, labels, 5), kTol);
  EXPECT_NEAR(rep.referable_ece.point, binary_calibration_error(y, s), kTol);
  const auto half = sensitivity_specificity(y, s, 0.5);
  EXPECT_DOUBLE_EQ(rep.referable_at_half.sensitivity.point, half.sensitivity);
  EXPECT_DOUBLE_EQ(rep.referable_at_half.specificity.point, half.specificity);
  const auto j = youden_point(y, s);
  EXPECT_DOUBLE_EQ(rep.referable_youden.point.threshold, j.threshold);
  EXPECT_DOUBLE_EQ(rep.referable_youden.sensitivity.point, j.sensitivity);
  EXPECT_DOUBLE_EQ(rep.referable_youden.specificity.point, j.specificity);
  EXPECT_EQ(rep.referable_positives + rep.referable_negatives, 300);
  for (const auto* ci : {&rep.accuracy, &rep.kappa, &rep.ece, &rep.referable_auc, &rep.referable_ece,
                         &rep.referable_at_half.sensitivity, &rep.referable_youden.specificity}) {
    EXPECT_EQ(ci->valid_resamples, 200);
    EXPECT_LE(ci->low, ci->point);
    EXPECT_GE(ci->high, ci->point);
  }
  // The AUC interval equals the one bootstrap_ci gives with a plain per-resample roc_auc.
  const Statistic auc = [&](std::span<const std::size_t> idx) {
    Ints yy;
    Doubles ss;
    for (auto i : idx) yy.push_back(y[i]), ss.push_back(s[i]);
    return roc_auc(yy, ss);
  };
  const auto direct = bootstrap_ci(labels.size(), auc, 200, 7);
  EXPECT_NEAR(rep.referable_auc.low, direct.low, kTol);
  EXPECT_NEAR(rep.referable_auc.high, direct.high, kTol);
  // Deterministic.
  EXPECT_EQ(to_json(rep), to_json(evaluate_predictions(labels, probs, 2, 200, 7)));
}

TEST(EvaluatePredictions, JsonWritesNaNAsNull) {
  // No referable case (grades 0 and 1 only): AUC, sensitivity and Youden are undefined.
  const Ints labels = {0, 1, 0, 1};
  const Doubles probs = {0.7, 0.2, 0.1, 0.0, 0.0,  //
                         0.2, 0.6, 0.1, 0.1, 0.0,  //
                         0.6, 0.3, 0.1, 0.0, 0.0,  //
                         0.1, 0.3, 0.5, 0.1, 0.0};
  const auto rep = evaluate_predictions(labels, probs, 2, 50, 3);
  EXPECT_TRUE(std::isnan(rep.referable_auc.point));
  EXPECT_EQ(rep.referable_auc.valid_resamples, 0);
  const auto json = to_json(rep);
  EXPECT_NE(json.find("\"auc\":{\"point\":null,\"low\":null,\"high\":null,\"valid_resamples\":0"),
            std::string::npos)
      << json;
  EXPECT_NE(json.find("\"confusion_matrix\":[[2,0,0,0,0],[0,1,1,0,0],[0,0,0,0,0],[0,0,0,0,0],[0,0,0,0,0]]"),
            std::string::npos)
      << json;
  EXPECT_NE(json.find("\"accuracy\":{\"point\":0.75,"), std::string::npos) << json;
  EXPECT_EQ(json.find("nan"), std::string::npos) << json;
  EXPECT_EQ(json.front(), '{');
  EXPECT_EQ(json.back(), '}');
  EXPECT_THROW(evaluate_predictions(labels, Doubles(19, 0.1), 2, 10, 0), Error);
  EXPECT_THROW(evaluate_predictions(labels, probs, 5, 10, 0), Error);
}

}  // namespace
}  // namespace fovea::eval
