// tests/test_compare.cpp: eval/compare.hpp: the normal quantile, the bootstrap p-value, McNemar's exact
// test on hand-computed counts, DeLong's test against its definition computed pair by pair (ties
// included) and against the spread of the paired bootstrap, and compare_predictions on identical,
// swapped and clearly different models.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "fovea/core/random.hpp"
#include "fovea/eval/compare.hpp"
#include "fovea/eval/predictions.hpp"
#include "test_support.hpp"

namespace fovea::eval {
namespace {

using fovea::testing::error_of;

TEST(NormalQuantile, KnownValues) {
  EXPECT_NEAR(normal_quantile(0.975), 1.959963984540054, 1e-12);
  EXPECT_NEAR(normal_quantile(0.995), 2.5758293035489004, 1e-12);
  EXPECT_NEAR(normal_quantile(0.5), 0.0, 1e-14);
  EXPECT_NEAR(normal_quantile(0.025), -normal_quantile(0.975), 1e-13);
  EXPECT_NE(error_of([] { normal_quantile(1.0); }).find("(0, 1)"), std::string::npos);
}

TEST(StudentT, KnownQuantiles) {
  // Closed forms: df 1 is Cauchy, t = tan(pi (p - 1/2)); df 2: t = (2p - 1) / sqrt(2 p (1 - p)).
  const double pi = 3.14159265358979323846;
  const double exact1 = std::tan(pi * 0.475), exact2 = 0.95 / std::sqrt(2 * 0.975 * 0.025);
  EXPECT_NEAR(student_t_quantile(0.975, 1), exact1, 1e-12 * exact1);
  EXPECT_NEAR(student_t_quantile(0.975, 2), exact2, 1e-12 * exact2);
  EXPECT_NEAR(student_t_central(exact1, 1), 0.95, 1e-14);
  EXPECT_NEAR(student_t_central(exact2, 2), 0.95, 1e-14);
  EXPECT_NEAR(student_t_central(1.0, 1), 0.5, 1e-15);  // Cauchy: P(|T| <= 1) = 1/2
  // scipy.stats.t.ppf(0.975, df) (itself good to about 1e-10), odd and even degrees of freedom
  const std::pair<int, double> q975[] = {{3, 3.182446305284263},
                                         {4, 2.7764451051977987},
                                         {9, 2.2621571627409915},
                                         {10, 2.2281388519649385},
                                         {29, 2.045229642132703}};
  for (auto [df, q] : q975) {
    EXPECT_NEAR(student_t_quantile(0.975, df), q, 1e-9 * q) << df;
    EXPECT_NEAR(student_t_quantile(0.025, df), -q, 1e-9 * q) << df;
    EXPECT_NEAR(student_t_central(student_t_quantile(0.975, df), df), 0.95, 1e-13) << df;
  }
  EXPECT_NEAR(student_t_quantile(0.95, 3), 2.3533634348018264, 1e-9);
  // many degrees of freedom approach the normal
  EXPECT_NEAR(student_t_quantile(0.975, 2000), normal_quantile(0.975), 2e-3);
  EXPECT_EQ(student_t_central(0.0, 5), 0.0);
}

TEST(MeanInterval, TIntervalAndOneSampleTest) {
  // 0.1, 0.3, 0.2: mean 0.2, sd 0.1, se 0.1 / sqrt(3); t = 0.2 / se = 3.4641; p (df 2) = 0.0742
  const MeanInterval m = mean_interval(std::vector<double>{0.1, 0.3, std::nan(""), 0.2});
  EXPECT_EQ(m.n, 3);
  EXPECT_NEAR(m.mean, 0.2, 1e-15);
  EXPECT_NEAR(m.sd, 0.1, 1e-15);
  const double half = 0.95 / std::sqrt(2 * 0.975 * 0.025) * 0.1 / std::sqrt(3.0);  // t_{2, 0.975}
  EXPECT_NEAR(m.low, 0.2 - half, 1e-12);
  EXPECT_NEAR(m.high, 0.2 + half, 1e-12);
  EXPECT_NEAR(m.p_value, 0.07417990022744853, 1e-10);  // scipy.stats.ttest_1samp
  const MeanInterval one = mean_interval(std::vector<double>{0.4});
  EXPECT_EQ(one.mean, 0.4);
  EXPECT_TRUE(std::isnan(one.sd) && std::isnan(one.low) && std::isnan(one.p_value));
  const MeanInterval flat = mean_interval(std::vector<double>{0.0, 0.0});
  EXPECT_EQ(flat.p_value, 1.0);
  EXPECT_EQ(flat.low, 0.0);
  EXPECT_EQ(mean_interval(std::vector<double>{}).n, 0);
}

TEST(BootstrapPValue, CountsTheOtherSideWithTheObservedSample) {
  EXPECT_EQ(bootstrap_p_value(std::vector<double>(999, 0.0)), 1.0);           // no difference at all
  EXPECT_DOUBLE_EQ(bootstrap_p_value(std::vector<double>(999, 0.2)), 0.002);  // 2 (1 + 0) / 1000
  std::vector<double> d(999, 0.2);
  for (int i = 0; i < 24; ++i) d[static_cast<std::size_t>(i)] = -0.1;  // 24 of 999 at or below 0
  d.push_back(std::nan(""));                                           // skipped
  EXPECT_DOUBLE_EQ(bootstrap_p_value(d), 0.05);                        // 2 (1 + 24) / 1000
  for (double& v : d) v = -v;                                          // the other side: the same p
  EXPECT_DOUBLE_EQ(bootstrap_p_value(d), 0.05);
  EXPECT_TRUE(std::isnan(bootstrap_p_value(std::vector<double>{std::nan("")})));
}

TEST(McNemar, ExactBinomialOnTheDiscordantImages) {
  // labels 0; A right on the first a images, B on the images from `from_b` on
  auto run = [](int n, int a_right, int b_from) {
    std::vector<int> labels(static_cast<std::size_t>(n), 0), pa(labels.size(), 1), pb(labels.size(), 1);
    for (int i = 0; i < a_right; ++i) pa[static_cast<std::size_t>(i)] = 0;
    for (int i = b_from; i < n; ++i) pb[static_cast<std::size_t>(i)] = 0;
    return mcnemar_test(labels, pa, pb);
  };
  const McNemarTest none = run(5, 0, 5);  // both wrong everywhere
  EXPECT_EQ(none.neither, 5);
  EXPECT_EQ(none.p_value, 1.0);
  const McNemarTest ten = run(12, 10, 12);  // A alone right on 10 images
  EXPECT_EQ(ten.only_a, 10);
  EXPECT_EQ(ten.only_b, 0);
  EXPECT_EQ(ten.neither, 2);
  EXPECT_NEAR(ten.p_value, 2.0 / 1024.0, 1e-15);
  // A right on 0..5, B right on 3..12: only A on 0..2 (3), both on 3..5, only B on 6..12 (7)
  const McNemarTest split = run(13, 6, 3);
  EXPECT_EQ(split.only_a, 3);
  EXPECT_EQ(split.only_b, 7);
  EXPECT_EQ(split.both, 3);
  EXPECT_NEAR(split.p_value, 2.0 * (1 + 10 + 45 + 120) / 1024.0, 1e-14);  // 0.34375
  const McNemarTest even = run(10, 5, 5);                                 // only A 5, only B 5
  EXPECT_EQ(even.p_value, 1.0);
}

// DeLong's definition, pair by pair: psi(x, y) = 1, 1/2, 0 for x > y, x = y, x < y.
struct Naive {
  double auc_a, auc_b, var;
};
Naive naive_delong(const std::vector<int>& y, const std::vector<double>& a, const std::vector<double>& b) {
  std::vector<std::size_t> pos, neg;
  for (std::size_t i = 0; i < y.size(); ++i) (y[i] ? pos : neg).push_back(i);
  const double m = static_cast<double>(pos.size()), n = static_cast<double>(neg.size());
  auto psi = [](double x, double z) { return x > z ? 1.0 : (x == z ? 0.5 : 0.0); };
  std::vector<double> v10a, v10b, v01a, v01b;
  for (std::size_t i : pos) {
    double sa = 0, sb = 0;
    for (std::size_t j : neg) sa += psi(a[i], a[j]), sb += psi(b[i], b[j]);
    v10a.push_back(sa / n), v10b.push_back(sb / n);
  }
  for (std::size_t j : neg) {
    double sa = 0, sb = 0;
    for (std::size_t i : pos) sa += psi(a[i], a[j]), sb += psi(b[i], b[j]);
    v01a.push_back(sa / m), v01b.push_back(sb / m);
  }
  auto mean = [](const std::vector<double>& v) {
    double s = 0;
    for (double x : v) s += x;
    return s / static_cast<double>(v.size());
  };
  auto cov = [&](const std::vector<double>& u, const std::vector<double>& v) {
    const double mu = mean(u), mv = mean(v);
    double s = 0;
    for (std::size_t i = 0; i < u.size(); ++i) s += (u[i] - mu) * (v[i] - mv);
    return s / static_cast<double>(u.size() - 1);
  };
  const double var = (cov(v10a, v10a) + cov(v10b, v10b) - 2 * cov(v10a, v10b)) / m +
                     (cov(v01a, v01a) + cov(v01b, v01b) - 2 * cov(v01a, v01b)) / n;
  return {mean(v10a), mean(v10b), var};
}

// n items, positives with probability 0.35; score A separates the classes better than score B,
// and both are rounded to 0.05 so that ties occur within and across classes.
void scored_items(std::size_t n, std::uint64_t seed, std::vector<int>& y, std::vector<double>& a,
                  std::vector<double>& b) {
  Philox rng(make_key(seed, kPurposeTest));
  y.resize(n), a.resize(n), b.resize(n);
  for (std::size_t i = 0; i < n; ++i) {
    y[i] = rng.next_uniform() < 0.35f ? 1 : 0;
    const double shared = rng.next_uniform();
    a[i] = std::round(20.0 * (0.5 * shared + 0.6 * y[i] + 0.4 * rng.next_uniform())) / 20.0;
    b[i] = std::round(20.0 * (0.5 * shared + 0.25 * y[i] + 0.8 * rng.next_uniform())) / 20.0;
  }
}

TEST(DeLong, MatchesItsDefinitionPairByPair) {
  for (std::uint64_t seed : {1u, 2u, 3u}) {
    std::vector<int> y;
    std::vector<double> a, b;
    scored_items(90, seed, y, a, b);
    const DeLongTest t = delong_test(y, a, b);
    const Naive ref = naive_delong(y, a, b);
    EXPECT_NEAR(t.auc_a, ref.auc_a, 1e-14);
    EXPECT_NEAR(t.auc_b, ref.auc_b, 1e-14);
    EXPECT_NEAR(t.auc_a, roc_auc(y, a), 1e-14);
    EXPECT_NEAR(t.auc_b, roc_auc(y, b), 1e-14);
    EXPECT_NEAR(t.standard_error, std::sqrt(ref.var), 1e-12);
    EXPECT_NEAR(t.z, (ref.auc_a - ref.auc_b) / std::sqrt(ref.var), 1e-9);
    EXPECT_NEAR(t.p_value, std::erfc(std::fabs(t.z) / std::sqrt(2.0)), 1e-15);
    EXPECT_NEAR(t.high - t.difference, 1.959963984540054 * t.standard_error, 1e-12);
    // B against A: the same test, the other sign
    const DeLongTest s = delong_test(y, b, a);
    EXPECT_NEAR(s.difference, -t.difference, 1e-15);
    EXPECT_NEAR(s.p_value, t.p_value, 1e-12);
    EXPECT_NEAR(s.low, -t.high, 1e-12);
  }
}

TEST(DeLong, EdgeCases) {
  std::vector<int> y;
  std::vector<double> a, b;
  scored_items(50, 9, y, a, b);
  const DeLongTest same = delong_test(y, a, a);
  EXPECT_EQ(same.difference, 0.0);
  EXPECT_EQ(same.standard_error, 0.0);
  EXPECT_EQ(same.p_value, 1.0);
  // a monotone transform ranks the items the same: the same AUC and test
  std::vector<double> squared(a);
  for (double& v : squared) v = v * v + 3.0;
  EXPECT_EQ(delong_test(y, a, squared).p_value, 1.0);
  const std::vector<int> all_negative(y.size(), 0);
  const DeLongTest none = delong_test(all_negative, a, b);
  EXPECT_TRUE(std::isnan(none.auc_a) && std::isnan(none.p_value));
  std::vector<int> one_positive(y.size(), 0);
  one_positive[3] = 1;
  const DeLongTest one = delong_test(one_positive, a, b);
  EXPECT_FALSE(std::isnan(one.auc_a));
  EXPECT_TRUE(std::isnan(one.standard_error) && std::isnan(one.p_value));
  EXPECT_NE(error_of([&] {
              delong_test(std::vector<int>{0, 2}, std::vector<double>{0, 1}, std::vector<double>{0, 1});
            }).find("labels"),
            std::string::npos);
  EXPECT_NE(error_of([&] { delong_test(y, a, std::vector<double>(3, 0.0)); }).find("scores B"),
            std::string::npos);
}

// Probabilities (N, 5) for labels drawn uniformly: a "good" model puts weight `good` on the true
// grade, the rest spread with noise; `noise` sets how much the argmax wanders.
std::vector<double> model_probs(const std::vector<int>& labels, double good, std::uint64_t seed) {
  Philox rng(make_key(seed, kPurposeTest, 1));
  std::vector<double> p(labels.size() * 5);
  for (std::size_t i = 0; i < labels.size(); ++i) {
    double total = 0;
    for (int k = 0; k < 5; ++k) {
      const double near = std::exp(-std::abs(k - labels[i]));
      double v = 0.05 + rng.next_uniform() + (k == labels[i] ? good : 0.0) + 0.3 * near;
      p[i * 5 + static_cast<std::size_t>(k)] = v;
      total += v;
    }
    for (int k = 0; k < 5; ++k) p[i * 5 + static_cast<std::size_t>(k)] /= total;
  }
  return p;
}

std::vector<int> grades(std::size_t n, std::uint64_t seed) {
  Philox rng(make_key(seed, kPurposeTest, 2));
  std::vector<int> l(n);
  for (int& v : l) v = static_cast<int>(rng.uniform_int(5));
  return l;
}

TEST(ComparePredictions, IdenticalModelsDifferByNothing) {
  const std::vector<int> labels = grades(80, 1);
  const std::vector<double> p = model_probs(labels, 0.8, 3);
  const Comparison c = compare_predictions(labels, p, p, 2, 300, 5);
  for (const PairedDifference* d : {&c.kappa, &c.accuracy, &c.referable_auc}) {
    EXPECT_EQ(d->a, d->b);
    EXPECT_EQ(d->difference.point, 0.0);
    EXPECT_EQ(d->difference.low, 0.0);
    EXPECT_EQ(d->difference.high, 0.0);
    EXPECT_EQ(d->p_value, 1.0);
    EXPECT_EQ(d->difference.valid_resamples, 300);
  }
  EXPECT_EQ(c.delong.p_value, 1.0);
  EXPECT_EQ(c.mcnemar.p_value, 1.0);
  EXPECT_EQ(c.mcnemar.only_a + c.mcnemar.only_b, 0);
}

TEST(ComparePredictions, ABetterModelIsFoundAndSwappingNegates) {
  const std::vector<int> labels = grades(300, 2);
  const std::vector<double> good = model_probs(labels, 0.6, 4), poor = model_probs(labels, 0.15, 5);
  const Comparison c = compare_predictions(labels, good, poor, 2, 1000, 11);
  // the points are the single-model metrics
  const MetricReport ra = evaluate_predictions(labels, good, 2, 20, 11),
                     rb = evaluate_predictions(labels, poor, 2, 20, 11);
  EXPECT_EQ(c.kappa.a, ra.kappa.point);
  EXPECT_EQ(c.kappa.b, rb.kappa.point);
  EXPECT_EQ(c.accuracy.a, ra.accuracy.point);
  EXPECT_EQ(c.referable_auc.b, rb.referable_auc.point);
  EXPECT_NEAR(c.delong.auc_a, ra.referable_auc.point, 1e-12);  // midranks: another summation order
  EXPECT_GT(c.kappa.difference.low, 0.0);
  EXPECT_GT(c.accuracy.difference.low, 0.0);
  EXPECT_GT(c.referable_auc.difference.low, 0.0);
  EXPECT_LE(c.kappa.p_value, 0.01);
  EXPECT_LT(c.delong.p_value, 0.01);
  EXPECT_LT(c.mcnemar.p_value, 0.01);
  EXPECT_GT(c.mcnemar.only_a, c.mcnemar.only_b);
  // The bootstrap's spread of the AUC difference and DeLong's standard error estimate the same thing.
  const double boot_sd = (c.referable_auc.difference.high - c.referable_auc.difference.low) / (2 * 1.959964);
  EXPECT_NEAR(boot_sd / c.delong.standard_error, 1.0, 0.2);
  const Comparison s = compare_predictions(labels, poor, good, 2, 1000, 11);
  for (auto [x, y] :
       {std::pair{&c.kappa, &s.kappa}, {&c.accuracy, &s.accuracy}, {&c.referable_auc, &s.referable_auc}}) {
    EXPECT_NEAR(x->difference.point, -y->difference.point, 1e-15);
    EXPECT_NEAR(x->difference.low, -y->difference.high, 1e-12);
    EXPECT_NEAR(x->difference.high, -y->difference.low, 1e-12);
    EXPECT_EQ(x->p_value, y->p_value);
  }
  EXPECT_EQ(c.mcnemar.p_value, s.mcnemar.p_value);
  // reproducible from the seed; another seed draws other resamples
  EXPECT_EQ(to_json(c), to_json(compare_predictions(labels, good, poor, 2, 1000, 11)));
  EXPECT_NE(to_json(c), to_json(compare_predictions(labels, good, poor, 2, 1000, 12)));
}

TEST(ComparePredictions, SimilarModelsAreNotSeparated) {
  // Two draws of the same kind of model: the differences' intervals cover 0 and p is large.
  const std::vector<int> labels = grades(200, 7);
  const Comparison c =
      compare_predictions(labels, model_probs(labels, 0.6, 8), model_probs(labels, 0.6, 9), 2, 1000, 1);
  EXPECT_LT(c.kappa.difference.low, 0.0);
  EXPECT_GT(c.kappa.difference.high, 0.0);
  EXPECT_GT(c.kappa.p_value, 0.05);
  EXPECT_GT(c.delong.p_value, 0.05);
  EXPECT_GT(c.mcnemar.p_value, 0.05);
}

TEST(ComparePredictions, BadInputNamesTheProblem) {
  const std::vector<int> labels = grades(10, 3);
  const std::vector<double> p = model_probs(labels, 0.5, 1);
  EXPECT_NE(error_of([&] {
              compare_predictions(labels, p, std::vector<double>(p.begin(), p.end() - 5));
            }).find("the same images"),
            std::string::npos);
  EXPECT_NE(error_of([&] { compare_predictions(labels, p, p, 5); }).find("referable threshold 5"),
            std::string::npos);
  EXPECT_NE(error_of([&] { compare_predictions(std::vector<int>{}, p, p); }).find("at least one"),
            std::string::npos);
  std::vector<double> bad = p;
  bad[7] = 1.5;
  EXPECT_NE(error_of([&] { compare_predictions(labels, p, bad); }).find("probs B"), std::string::npos);
}

TEST(ComparePredictions, JsonHasEveryTest) {
  const std::vector<int> labels = grades(40, 5);
  const Comparison c =
      compare_predictions(labels, model_probs(labels, 0.9, 1), model_probs(labels, 0.3, 2), 2, 50, 3);
  const std::string j = to_json(c);
  for (const char* key :
       {"\"quadratic_weighted_kappa\":{\"a\":", "\"p_value\":", "\"mcnemar\":{\"only_a\":",
        "\"delong\":{\"positives\":", "\"standard_error\":", "\"referable\":{\"threshold\":2"})
    EXPECT_NE(j.find(key), std::string::npos) << key << " in " << j;
  EXPECT_EQ(j.find("nan"), std::string::npos);
}

// predictions.csv as evaluate writes it (ids through csv_field, fp32 probabilities in their
// shortest form) reads back exactly; each malformed field is named by file, line and field.
TEST(Predictions, ReadBackExactlyAndMalformedRowsAreNamed) {
  const std::string header = "image,label,pred,p0,p1,p2\n";
  const auto table = [&](const std::string& rows) { return data::parse_csv(header + rows, "p.csv"); };
  const PredictionsFile p = predictions_from_table(
      table("img0,0,0,0.7,0.2,0.1\n" + data::csv_field("left, \"1\"") + ",2,1,0.1,0.45000002,0.45\n"));
  ASSERT_EQ(p.ids.size(), 2u);
  EXPECT_EQ(p.ids[1], "left, \"1\"");
  EXPECT_EQ(p.labels, (std::vector<int>{0, 2}));
  EXPECT_EQ(p.predicted, (std::vector<int>{0, 1}));
  EXPECT_EQ(p.classes, 3);
  EXPECT_EQ(p.probs[4], static_cast<double>(0.45000002f));  // read as fp32, as written
  EXPECT_EQ(p.path, "p.csv");
  const auto error = [&](const std::string& rows) {
    return error_of([&] { predictions_from_table(table(rows)); });
  };
  const std::string good = "img0,0,0,0.7,0.2,0.1\n";
  EXPECT_NE(error(good + "img1,3,0,0.7,0.2,0.1\n").find("p.csv:3: field 'label' is '3'"), std::string::npos);
  EXPECT_NE(error(good + "img1,0,0,0.7,0.2,0.1x\n").find("p.csv:3: p2 '0.1x' is not a probability"),
            std::string::npos);
  EXPECT_NE(error(good + "img1,0,0,0.7,0.2,nan\n").find("p2 'nan'"), std::string::npos);
  EXPECT_NE(error(good + "img1,0,0,1.5,-0.2,-0.3\n").find("p0 '1.5'"), std::string::npos);
  EXPECT_NE(error(good + "img1,0,0,0.7,0.2,0.2\n").find("p.csv:3: the probabilities p0..p2 sum to 1.1"),
            std::string::npos);
  EXPECT_NE(error(good + "img1,0,2,0.7,0.2,0.1\n").find("p.csv:3: pred 2 is not the class of the largest"),
            std::string::npos);
  EXPECT_NE(error(good + "img1,0,0,0.4,0.4,0.2\n" + "img0,0,0,0.7,0.2,0.1\n")
                .find("p.csv:4: image 'img0' appears twice"),
            std::string::npos);
  EXPECT_NE(error("").find("no image rows"), std::string::npos);
  EXPECT_NE(error_of([] {
              predictions_from_table(data::parse_csv("image,label,pred,p0\na,0,0,1\n", "q.csv"));
            }).find("header"),
            std::string::npos);
  EXPECT_NE(error_of([] {
              predictions_from_table(data::parse_csv("image,label,pred,p0,p2\na,0,0,1,0\n", "q.csv"));
            }).find("is 'p2', expected p1"),
            std::string::npos);
  // Ties: pred is the first largest probability, as evaluate picks it.
  EXPECT_NO_THROW(predictions_from_table(table("img0,0,0,0.4,0.4,0.2\n")));
  // B in A's order; other images or labels are named.
  const PredictionsFile b = predictions_from_table(
      table(data::csv_field("left, \"1\"") + ",2,2,0.1,0.1,0.8\nimg0,0,1,0.3,0.6,0.1\n"));
  EXPECT_EQ(align_predictions(p, b),
            (std::vector<double>{0.30000001192092896, 0.60000002384185791, 0.10000000149011612,
                                 0.10000000149011612, 0.10000000149011612, 0.80000001192092896}));
  const PredictionsFile c = predictions_from_table(table("img0,1,0,0.7,0.2,0.1\nimg9,2,0,0.7,0.2,0.1\n"));
  EXPECT_NE(error_of([&] { align_predictions(p, c); }).find("image 'img0' has label 0"), std::string::npos);
  const PredictionsFile d = predictions_from_table(table("img0,0,0,0.7,0.2,0.1\nimg9,2,0,0.7,0.2,0.1\n"));
  EXPECT_NE(error_of([&] { align_predictions(p, d); }).find("is not in"), std::string::npos);
}

}  // namespace
}  // namespace fovea::eval
