// tests/test_nn_ops.cpp: batch norm, pooling and softmax on the CPU: the semantics the op harness
// cannot see (running statistics, eval mode, ties, errors). Their harness cases run from test_ops.cpp.
#include <cmath>
#include <limits>
#include <string>

#include "cases/batch_norm.hpp"
#include "cases/pool.hpp"
#include "cases/softmax.hpp"
#include "op_cases.hpp"

namespace fovea::testing {
namespace {

std::string message_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "no error";
}

// x (2, 2, 1, 2): channel 0 holds {1, 2} (n = 0) and {3, 6} (n = 1); channel 1 holds {-1, 1}, {5, 7}.
TEST(BatchNorm, RunningStatisticsAfterTwoUpdates) {
  Tensor x1 = Tensor::from({1, 2, -1, 1, 3, 6, 5, 7}, {2, 2, 1, 2});
  // Second batch: channel 0 {0, 0, 4, 4}, channel 1 {2, 2, 2, 6}.
  Tensor x2 = Tensor::from({0, 0, 2, 2, 4, 4, 2, 6}, {2, 2, 1, 2});
  Tensor gamma = full({2}, 1.0f), beta = full({2}, 0.0f);
  Tensor rm = zeros({2}), rv = full({2}, 1.0f), mean({2}), invstd({2}), y(x1.shape());
  batch_norm_forward_training(x1, gamma, beta, rm, rv, 0.1f, 1e-5f, y, mean, invstd);
  // Channel 0: mean 3, biased var 14/4, unbiased 14/3. Channel 1: mean 3, biased var 40/4, unbiased 40/3.
  EXPECT_FLOAT_EQ(mean.to_vector()[0], 3.0f);
  EXPECT_FLOAT_EQ(mean.to_vector()[1], 3.0f);
  EXPECT_NEAR(invstd.to_vector()[0], 1.0 / std::sqrt(3.5 + 1e-5), 1e-6);
  EXPECT_NEAR(invstd.to_vector()[1], 1.0 / std::sqrt(10.0 + 1e-5), 1e-6);
  EXPECT_NEAR(rm.to_vector()[0], 0.3, 1e-6);
  EXPECT_NEAR(rv.to_vector()[0], 0.9 + 0.1 * 14.0 / 3.0, 1e-6);
  EXPECT_NEAR(rv.to_vector()[1], 0.9 + 0.1 * 40.0 / 3.0, 1e-6);
  batch_norm_forward_training(x2, gamma, beta, rm, rv, 0.1f, 1e-5f, y, mean, invstd);
  // Channel 0: mean 2, unbiased var 16/3. Channel 1: mean 3, unbiased var 12/3 = 4.
  EXPECT_NEAR(rm.to_vector()[0], 0.9 * 0.3 + 0.1 * 2.0, 1e-6);
  EXPECT_NEAR(rm.to_vector()[1], 0.9 * 0.3 + 0.1 * 3.0, 1e-6);
  EXPECT_NEAR(rv.to_vector()[0], 0.9 * (0.9 + 0.1 * 14.0 / 3.0) + 0.1 * 16.0 / 3.0, 1e-6);
  EXPECT_NEAR(rv.to_vector()[1], 0.9 * (0.9 + 0.1 * 40.0 / 3.0) + 0.1 * 4.0, 1e-6);
}

TEST(BatchNorm, TrainingWithOneValuePerChannelIsAnError) {
  for (const Shape& s : {Shape{1, 3, 1, 1}, Shape{1, 3}}) {
    Tensor x = full(s, 1.0f), y(s), g = full({3}, 1.0f), b = zeros({3}), rm = zeros({3}), rv = full({3}, 1.0f),
           m({3}), is({3});
    const std::string msg = message_of([&] { batch_norm_forward_training(x, g, b, rm, rv, 0.1f, 1e-5f, y, m, is); });
    EXPECT_NE(msg.find("expected more than 1 value per channel when training"), std::string::npos) << msg;
    EXPECT_NE(msg.find(s.str()), std::string::npos) << msg;
  }
}

TEST(BatchNorm, EvalModeUsesRunningStatistics) {
  const Shape s{3, 2, 2, 2};
  Tensor x = Tensor::from(random_values(s.numel(), InputKind::normal, 7), s);
  Tensor gamma = Tensor::from({1.5f, -0.5f}, {2}), beta = Tensor::from({0.25f, 2.0f}, {2});
  Tensor rm = Tensor::from({0.5f, -1.0f}, {2}), rv = Tensor::from({4.0f, 0.25f}, {2}), y(s);
  batch_norm_forward_inference(x, gamma, beta, rm, rv, 1e-5f, y);
  const auto xv = x.to_vector(), yv = y.to_vector();
  const double m[] = {0.5, -1.0}, v[] = {4.0, 0.25}, g[] = {1.5, -0.5}, b[] = {0.25, 2.0};
  for (std::size_t i = 0; i < xv.size(); ++i) {
    const std::size_t c = (i / 4) % 2;
    EXPECT_NEAR(yv[i], (xv[i] - m[c]) / std::sqrt(v[c] + 1e-5) * g[c] + b[c], 1e-5) << i;
  }
  EXPECT_EQ(rm.to_vector(), (std::vector<float>{0.5f, -1.0f}));  // untouched
  EXPECT_EQ(rv.to_vector(), (std::vector<float>{4.0f, 0.25f}));
  // Training mode on the same x gives a different result (batch statistics).
  Tensor yt(s), sm({2}), si({2});
  batch_norm_forward_training(x, gamma, beta, rm, rv, 0.1f, 1e-5f, yt, sm, si);
  EXPECT_GT(std::fabs(yt.to_vector()[0] - yv[0]), 1e-3);
}

TEST(BatchNorm, ShapeMismatchNamesBothShapes) {
  Tensor x = full({2, 3, 4, 4}, 1.0f), y({2, 3, 4, 4}), g = full({4}, 1.0f), b = zeros({3}), rm = zeros({3}),
         rv = full({3}, 1.0f);
  const std::string msg = message_of([&] { batch_norm_forward_inference(x, g, b, rm, rv, 1e-5f, y); });
  EXPECT_NE(msg.find("gamma (4)"), std::string::npos) << msg;
  EXPECT_NE(msg.find("(3)"), std::string::npos) << msg;
  Tensor dy({2, 3, 4, 5}), dx({2, 3, 4, 4}), m = zeros({3}), is = full({3}, 1.0f), dg({3}), db({3});
  const std::string msg2 = message_of([&] { batch_norm_backward(x, dy, b, m, is, dx, dg, db); });
  EXPECT_NE(msg2.find("(2, 3, 4, 4)"), std::string::npos) << msg2;
  EXPECT_NE(msg2.find("(2, 3, 4, 5)"), std::string::npos) << msg2;
}

TEST(BatchNorm, InPlaceForwardMatchesOutOfPlace) {
  const Shape s{3, 5, 3, 3};
  Tensor x = Tensor::from(random_values(s.numel(), InputKind::normal, 3), s);
  Tensor x2 = x.clone(), y(s), g = full({5}, 1.25f), b = full({5}, -0.5f);
  Tensor rm = zeros({5}), rv = full({5}, 1.0f), m({5}), is({5});
  batch_norm_forward_training(x, g, b, rm, rv, 0.1f, 1e-5f, y, m, is);
  batch_norm_forward_training(x2, g, b, rm, rv, 0.1f, 1e-5f, x2, m, is);
  EXPECT_EQ(x2.to_vector(), y.to_vector());
}

// The vectorised loops (AVX2, where the CPU has it) give the scalar loops' bits, forward and backward,
// on planes whose length is and is not a multiple of 8 (vector body and lane-by-lane tail), with
// (N, C) inputs (one value per plane), large channel means, and in place.
TEST(BatchNorm, VectorAndScalarLoopsAgreeBitwise) {
  if (detail::bn_best_isa() != detail::BnIsa::avx2) GTEST_SKIP() << "this CPU has no AVX2";
#ifdef __FMA__
  GTEST_SKIP() << "built with FMA in the baseline (-march): the scalar loops may be contracted";
#endif
  for (const Shape& s :
       {Shape{4, 3, 8, 8}, Shape{3, 5, 7, 5}, Shape{2, 2, 3, 11}, Shape{9, 6}, Shape{5, 4, 1, 1}}) {
    SCOPED_TRACE(s.str());
    std::vector<float> xv = random_values(s.numel(), InputKind::normal, 11);
    for (std::size_t i = 0; i < xv.size(); ++i) xv[i] = xv[i] * 3.0f + (i % 2 ? 1000.0f : 0.0f);
    const Tensor x = Tensor::from(xv, s),
                 dy = Tensor::from(random_values(s.numel(), InputKind::normal, 12), s);
    const std::int64_t c = s[1];
    const Tensor g = Tensor::from(random_values(c, InputKind::normal, 13), {c});
    const Tensor b = Tensor::from(random_values(c, InputKind::normal, 14), {c});
    struct Out {
      Tensor y, rm, rv, m, is, dx, dg, db;
    };
    auto run = [&](detail::BnIsa isa, bool in_place) {
      Out o{in_place ? x.clone() : Tensor(s),  full({c}, 0.5f), full({c}, 2.0f), Tensor({c}), Tensor({c}),
            in_place ? dy.clone() : Tensor(s), Tensor({c}),     Tensor({c})};
      const CView xin = in_place ? CView(o.y) : CView(x);
      cpu::batch_norm_forward_training(xin, g, b, o.rm, o.rv, 0.1f, 1e-5f, o.y, o.m, o.is, isa);
      const CView dyin = in_place ? CView(o.dx) : CView(dy);
      cpu::batch_norm_backward(x, dyin, g, o.m, o.is, o.dx, o.dg, o.db, isa);
      return o;
    };
    const Out a = run(detail::BnIsa::scalar, false), v = run(detail::BnIsa::avx2, false),
              w = run(detail::BnIsa::avx2, true);
    for (const Out* o : {&v, &w}) {
      EXPECT_EQ(o->y.to_vector(), a.y.to_vector());
      EXPECT_EQ(o->rm.to_vector(), a.rm.to_vector());
      EXPECT_EQ(o->rv.to_vector(), a.rv.to_vector());
      EXPECT_EQ(o->m.to_vector(), a.m.to_vector());
      EXPECT_EQ(o->is.to_vector(), a.is.to_vector());
      EXPECT_EQ(o->dx.to_vector(), a.dx.to_vector());
      EXPECT_EQ(o->dg.to_vector(), a.dg.to_vector());
      EXPECT_EQ(o->db.to_vector(), a.db.to_vector());
    }
    // The large mean (1000 in every other value) leaves the variance accurate: the normalised
    // output has mean beta and standard deviation |gamma| per channel.
    const auto yv = a.y.to_vector();
    const auto gv = g.to_vector(), bv = b.to_vector();
    const std::int64_t hw = s.numel() / (s[0] * c);
    for (std::int64_t ch = 0; ch < c; ++ch) {
      double sum = 0, sq = 0;
      for (std::int64_t n = 0; n < s[0]; ++n)
        for (std::int64_t k = 0; k < hw; ++k) {
          const double y = yv[static_cast<std::size_t>((n * c + ch) * hw + k)];
          sum += y;
          sq += y * y;
        }
      const double count = static_cast<double>(s[0] * hw), mean = sum / count;
      EXPECT_NEAR(mean, bv[static_cast<std::size_t>(ch)], 1e-3);
      EXPECT_NEAR(std::sqrt(sq / count - mean * mean), std::fabs(gv[static_cast<std::size_t>(ch)]), 2e-3);
    }
  }
}

// All-equal windows: the first position of each window (row-major, padding excluded) wins.
TEST(MaxPool, TiesGoToTheFirstMaximum) {
  Tensor x = full({1, 1, 3, 3}, 1.0f), y({1, 1, 3, 3}), dy = full({1, 1, 3, 3}, 1.0f), dx({1, 1, 3, 3});
  const PoolParams p{3, 1, 1};
  max_pool2d_forward(x, y, p);
  max_pool2d_backward(x, y, dy, dx, p);
  // Output (i, j) routes to (max(0, i-1), max(0, j-1)).
  EXPECT_EQ(dx.to_vector(), (std::vector<float>{4, 2, 0, 2, 1, 0, 0, 0, 0}));
  Tensor x2 = Tensor::from({5, 1, 7, 7, 2, 5, 7, 0}, {1, 1, 2, 4}), y2({1, 1, 1, 2}), dy2 = Tensor::from({1, 10}, {1, 1, 1, 2}),
         dx2({1, 1, 2, 4});
  max_pool2d_forward(x2, y2, {2, 2, 0});
  max_pool2d_backward(x2, y2, dy2, dx2, {2, 2, 0});
  EXPECT_EQ(y2.to_vector(), (std::vector<float>{5, 7}));
  EXPECT_EQ(dx2.to_vector(), (std::vector<float>{1, 0, 10, 0, 0, 0, 0, 0}));
}

TEST(MaxPool, NaNPropagatesAndPaddingNeverWins) {
  const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
  Tensor x = Tensor::from({1, nan, 3, 4, -inf, -inf, -inf, -inf}, {1, 2, 2, 2}), y({1, 2, 1, 1});
  max_pool2d_forward(x, y, {2, 2, 0});
  EXPECT_TRUE(std::isnan(y.to_vector()[0]));
  EXPECT_EQ(y.to_vector()[1], -inf);
  Tensor z = full({1, 1, 1, 1}, -3.0f), zy({1, 1, 1, 1});
  max_pool2d_forward(z, zy, {3, 2, 1});  // window mostly padding
  EXPECT_EQ(zy.to_vector()[0], -3.0f);
}

TEST(Pool, OutputSizeAndErrors) {
  EXPECT_EQ(pool2d_output_shape({2, 64, 112, 112}, {3, 2, 1}), (Shape{2, 64, 56, 56}));
  EXPECT_EQ(pool2d_output_shape({1, 1, 7, 8}, {2, 2, 0}), (Shape{1, 1, 3, 4}));
  EXPECT_THROW(pool2d_output_shape({1, 1, 7, 7}, {3, 2, 2}), Error);  // padding > kernel / 2
  EXPECT_THROW(pool2d_output_shape({1, 1, 1, 1}, {3, 1, 0}), Error);  // window larger than input
  Tensor x = full({2, 3, 8, 8}, 1.0f), y({2, 3, 5, 4});
  const std::string msg = message_of([&] { max_pool2d_forward(x, y, {2, 2, 0}); });
  EXPECT_NE(msg.find("(2, 3, 5, 4)"), std::string::npos) << msg;
  EXPECT_NE(msg.find("(2, 3, 4, 4)"), std::string::npos) << msg;
  Tensor g({2, 3, 1, 2});
  const std::string msg2 = message_of([&] { global_avg_pool_forward(x, g); });
  EXPECT_NE(msg2.find("(2, 3, 1, 2)"), std::string::npos) << msg2;
  EXPECT_NE(msg2.find("(2, 3, 1, 1)"), std::string::npos) << msg2;
}

TEST(AvgPool, PaddingCountsAsZero) {
  Tensor x = full({1, 1, 2, 2}, 9.0f), y({1, 1, 2, 2});
  avg_pool2d_forward(x, y, {3, 1, 1});  // each window holds the 4 values and 5 zeros
  EXPECT_EQ(y.to_vector(), (std::vector<float>(4, 4.0f)));
}

TEST(Softmax, StableForLargeLogits) {
  Tensor x = Tensor::from({1000, 1001, 1002, -1000, -1001, -1002}, {2, 3}), y({2, 3}), ly({2, 3});
  softmax_forward(x, y);
  log_softmax_forward(x, ly);
  const auto v = y.to_vector(), lv = ly.to_vector();
  const double z = 1.0 + std::exp(-1.0) + std::exp(-2.0);
  EXPECT_NEAR(v[2], 1.0 / z, 1e-6);
  EXPECT_NEAR(v[3], 1.0 / z, 1e-6);
  EXPECT_NEAR(lv[0], -2.0 - std::log(z), 1e-5);
  EXPECT_NEAR(lv[5], -2.0 - std::log(z), 1e-5);
}

TEST(Softmax, ShapeMismatchNamesBothShapes) {
  Tensor x = full({4, 5}, 1.0f), y({5, 4});
  const std::string msg = message_of([&] { softmax_forward(x, y); });
  EXPECT_NE(msg.find("(4, 5)"), std::string::npos) << msg;
  EXPECT_NE(msg.find("(5, 4)"), std::string::npos) << msg;
  Tensor bad = full({2, 3, 2, 2}, 1.0f);
  EXPECT_THROW(softmax_forward(bad, bad), Error);
}

}  // namespace
}  // namespace fovea::testing
