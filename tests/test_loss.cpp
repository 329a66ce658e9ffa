// tests/test_loss.cpp: the losses on the CPU beyond their harness cases (tests/cases/loss.hpp, run
// from test_ops.cpp): hand-computed values, temperature limits, label checks, the
// key queue's wrap-around and shape errors.
#include <cmath>
#include <functional>
#include <limits>
#include <string>

#include "cases/loss.hpp"

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
float scalar(const Tensor& t) { return t.to_vector()[0]; }

// logits rows (1, 2, 3) and (1, 1, 1), labels (2, 0):
//   lse_0 = 3 + log(1 + e^-1 + e^-2) = 3.4076059644, lse_1 = 1 + log 3 = 2.0986122887.
//   plain: ((lse_0 - 3) + (lse_1 - 1)) / 2 = 0.7531091265.
//   weights (1, 2, 3): nll = (3 (lse_0 - 3) + 1 (lse_1 - 1)) / (3 + 1) = 0.5803575455.
//   smoothing 0.1 with those weights: smooth_0 = 1 (lse_0 - 1) + 2 (lse_0 - 2) + 3 (lse_0 - 3) = 6.4456357866,
//   smooth_1 = 6 (lse_1 - 1) = 6.5916737320; loss = 0.9 nll + (0.1 / 3)(smooth_0 + smooth_1) / 4
//   = 0.6309660369 (torch.nn.functional.cross_entropy gives the same; tests/torch/check_losses.py).
TEST(CrossEntropy, HandComputedWeightsAndSmoothing) {
  Tensor x = Tensor::from({1, 2, 3, 1, 1, 1}, {2, 3}), y = Tensor::from({2, 0}, {2}),
         w = Tensor::from({1, 2, 3}, {3}), loss(Shape{});
  cross_entropy_forward(x, y, CView(), 0.0f, loss);
  EXPECT_NEAR(scalar(loss), 0.7531091265, 1e-6);
  cross_entropy_forward(x, y, w, 0.0f, loss);
  EXPECT_NEAR(scalar(loss), 0.5803575455, 1e-6);
  cross_entropy_forward(x, y, w, 0.1f, loss);
  EXPECT_NEAR(scalar(loss), 0.6309660369, 1e-6);
  // Smoothing without weights: (1 - eps) nll + eps / K * mean_n sum_j (lse - x_j).
  const double lse0 = 3 + std::log(1 + std::exp(-1.0) + std::exp(-2.0)), lse1 = 1 + std::log(3.0);
  const double nll = ((lse0 - 3) + (lse1 - 1)) / 2, smooth = ((3 * lse0 - 6) + (3 * lse1 - 3)) / 2;
  cross_entropy_forward(x, y, CView(), 0.3f, loss);
  EXPECT_NEAR(scalar(loss), 0.7 * nll + 0.1 * smooth, 1e-6);
}

// Without weights or smoothing the gradient is (softmax - onehot) / N.
TEST(CrossEntropy, GradientIsSoftmaxMinusOneHotOverN) {
  Tensor x = Tensor::from({1, 2, 3, 1, 1, 1}, {2, 3}), y = Tensor::from({2, 0}, {2}), dx({2, 3});
  cross_entropy_backward(x, y, CView(), 0.0f, 2.0f, dx);
  const double e = std::exp(1.0), z = 1 + e + e * e;
  const std::vector<double> want = {2.0 / 2 * (1 / z), 2.0 / 2 * (e / z), 2.0 / 2 * (e * e / z - 1),
                                    (1.0 / 3 - 1), 1.0 / 3, 1.0 / 3};
  EXPECT_TRUE(all_close("dlogits", dx.to_vector(), want, {1e-6, 1e-5}));
}

TEST(CrossEntropy, RejectsLabelsThatAreNotClassIndices) {
  Tensor x = full({2, 3}, 0.5f), loss(Shape{}), dx({2, 3});
  for (float bad : {1.5f, -1.0f, 3.0f, std::numeric_limits<float>::quiet_NaN()}) {
    Tensor y = Tensor::from({0.0f, bad}, {2});
    const std::string msg = message_of([&] { cross_entropy_forward(x, y, CView(), 0.0f, loss); });
    EXPECT_NE(msg.find("is not an integer class index in [0, 3)"), std::string::npos) << msg;
    EXPECT_NE(message_of([&] { cross_entropy_backward(x, y, CView(), 0.0f, 1.0f, dx); }), "no error");
  }
}

TEST(CrossEntropy, ShapeErrorsNameBothShapes) {
  Tensor x = full({4, 3}, 0.5f), y = zeros({5}), w = full({2}, 1.0f), loss(Shape{});
  std::string msg = message_of([&] { cross_entropy_forward(x, y, CView(), 0.0f, loss); });
  EXPECT_NE(msg.find("(5)"), std::string::npos) << msg;
  EXPECT_NE(msg.find("(4)"), std::string::npos) << msg;
  Tensor y4 = zeros({4});
  msg = message_of([&] { cross_entropy_forward(x, y4, w, 0.0f, loss); });
  EXPECT_NE(msg.find("(2)"), std::string::npos) << msg;
  EXPECT_NE(msg.find("(3)"), std::string::npos) << msg;
  EXPECT_NE(message_of([&] { cross_entropy_forward(x, y4, CView(), 1.5f, loss); }), "no error");
}

// pred (1, 2, 3), target (0, 2, 5): (1 + 0 + 4) / 3; gradient 2/3 (1, 0, -2) * dloss.
TEST(Mse, HandComputed) {
  Tensor p = Tensor::from({1, 2, 3}, {3, 1}), t = Tensor::from({0, 2, 5}, {3}), loss(Shape{}), dp({3, 1});
  mse_forward(p, t, loss);
  EXPECT_NEAR(scalar(loss), 5.0 / 3.0, 1e-7);
  mse_backward(p, t, 3.0f, dp);
  EXPECT_TRUE(all_close("dpred", dp.to_vector(), {2.0, 0.0, -4.0}, {1e-6, 1e-6}));
  Tensor bad = zeros({4});
  EXPECT_NE(message_of([&] { mse_forward(p, bad, loss); }).find("(4)"), std::string::npos);
}

// N = 1, D = 2: the only candidate of each row is its positive, so softmax = 1, loss = 0 and the
// gradient is 0 whatever the rows are.
TEST(NtXent, OnePairHasZeroLossAndGradient) {
  Tensor z = Tensor::from({3, 4, 1, -2}, {2, 2}), loss(Shape{}), lse({2}), zn({2, 2}), dz({2, 2}), acc({2});
  nt_xent_forward(z, 0.5f, loss, lse, zn);
  EXPECT_NEAR(scalar(loss), 0.0, 1e-6);
  EXPECT_TRUE(all_close("znorm", zn.to_vector(), {0.6, 0.8, 1 / std::sqrt(5.0), -2 / std::sqrt(5.0)}, {1e-7, 1e-6}));
  // s_01 = (0.6 - 1.6) / sqrt(5) / 0.5
  const double s = (0.6 - 1.6) / std::sqrt(5.0) / 0.5;
  EXPECT_TRUE(all_close("row_lse", lse.to_vector(), {s, s}, {1e-6, 1e-6}));
  nt_xent_backward(z, zn, lse, 0.5f, 1.0f, dz);
  EXPECT_TRUE(all_close("dz", dz.to_vector(), {0, 0, 0, 0}, {1e-6, 0}));
  contrastive_accuracy(zn, acc);
  EXPECT_TRUE(all_close("accuracy", acc.to_vector(), {1, 1}, {0, 0}));
}

// N = 2, D = 2, tau = 1: z = (1, 0), (0, 1), (2, 0), (0, 3) normalise to e1, e2, e1, e2. Row 0's
// candidates: row 1 (s = 0), row 2 (its positive, s = 1), row 3 (s = 0), so
// loss_0 = log(e + 2) - 1, and by symmetry every row: loss = log(2 + e) - 1 = 0.5514447139.
TEST(NtXent, HandComputedTwoPairs) {
  Tensor z = Tensor::from({1, 0, 0, 1, 2, 0, 0, 3}, {4, 2}), loss(Shape{}), lse({4}), zn({4, 2}), acc({2});
  nt_xent_forward(z, 1.0f, loss, lse, zn);
  EXPECT_NEAR(scalar(loss), 0.5514447139, 1e-6);
  EXPECT_TRUE(all_close("row_lse", lse.to_vector(), std::vector<double>(4, std::log(2 + std::exp(1.0))), {1e-6, 1e-6}));
  contrastive_accuracy(zn, acc);
  EXPECT_TRUE(all_close("accuracy", acc.to_vector(), {1, 1}, {0, 0}));
}

// tau -> infinity: every similarity -> 0, softmax uniform over 2N - 1 candidates: loss -> log(2N - 1).
// tau -> 0: tau * loss -> mean_i max(0, max_negatives c_ij - c_i,pos) (a hinge on cosines), with an
// error of at most tau log(2N - 1).
TEST(NtXent, TemperatureLimits) {
  const std::int64_t N = 4, D = 6, M = 2 * N;
  Tensor z = Tensor::from(random_values(M * D, InputKind::normal, 5), {M, D}), loss(Shape{}), lse({M}), zn({M, D});
  nt_xent_forward(z, 1e5f, loss, lse, zn);
  EXPECT_NEAR(scalar(loss), std::log(2.0 * N - 1), 1e-4);
  const float tau = 1e-3f;
  nt_xent_forward(z, tau, loss, lse, zn);
  const auto zd = normalized_rows(to_double(z.to_vector()), M, D);
  double hinge = 0.0;
  for (std::int64_t i = 0; i < M; ++i) {
    const std::int64_t pos = (i + N) % M;
    double best = -2.0;
    for (std::int64_t j = 0; j < M; ++j)
      if (j != i && j != pos) best = std::max(best, dot_rows(zd, i, zd, j, D));
    hinge += std::max(0.0, best - dot_rows(zd, i, zd, pos, D));
  }
  EXPECT_NEAR(tau * scalar(loss), hinge / M, tau * std::log(2.0 * N - 1) + 1e-5);
}

TEST(NtXent, RejectsOddRowsAndBadTemperature) {
  Tensor z = full({3, 4}, 1.0f), loss(Shape{}), lse({3}), zn({3, 4});
  EXPECT_NE(message_of([&] { nt_xent_forward(z, 0.5f, loss, lse, zn); }).find("(3, 4)"), std::string::npos);
  Tensor z2 = full({2, 4}, 1.0f), lse2({2}), zn2({2, 4});
  EXPECT_NE(message_of([&] { nt_xent_forward(z2, 0.0f, loss, lse2, zn2); }), "no error");
  EXPECT_NE(message_of([&] { nt_xent_forward(z2, 0.5f, loss, lse, zn2); }).find("(3)"), std::string::npos);
}

// N = 1, D = 2, tau = 1: q = (1, 0), k = (2, 0) -> khat = (1, 0); queue (0, 1), (-1, 0):
// logits (1, 0, -1), loss = log(e + 1 + 1/e) - 1 = 0.4076059644; the positive ranks first.
TEST(InfoNce, HandComputed) {
  Tensor q = Tensor::from({1, 0}, {1, 2}), k = Tensor::from({2, 0}, {1, 2}), queue = Tensor::from({0, 1, -1, 0}, {2, 2});
  Tensor loss(Shape{}), lse({1}), qn({1, 2}), kn({1, 2}), acc({2});
  infonce_forward(q, k, queue, 1.0f, loss, lse, qn, kn);
  EXPECT_NEAR(scalar(loss), 0.4076059644, 1e-6);
  EXPECT_TRUE(all_close("knorm", kn.to_vector(), {1, 0}, {0, 0}));
  infonce_accuracy(qn, kn, queue, acc);
  EXPECT_TRUE(all_close("accuracy", acc.to_vector(), {1, 1}, {0, 0}));
  // dqhat = (p0 - 1) khat + p1 queue_0 + p2 queue_1 = (p0 - 1 - p2, p1); dq projects out qhat = (1, 0).
  Tensor dq({1, 2});
  infonce_backward(q, qn, kn, queue, lse, 1.0f, 1.0f, dq);
  const double z = std::exp(1.0) + 1 + std::exp(-1.0);
  EXPECT_TRUE(all_close("dq", dq.to_vector(), {0.0, 1 / z}, {1e-6, 1e-5}));
}

TEST(InfoNce, LargeTemperatureGivesLogOfCandidates) {
  const std::int64_t N = 3, D = 5, K = 11;
  Tensor q = Tensor::from(random_values(N * D, InputKind::normal, 1), {N, D});
  Tensor k = Tensor::from(random_values(N * D, InputKind::normal, 2), {N, D});
  Tensor queue = Tensor::from(random_values(K * D, InputKind::normal, 3), {K, D});
  Tensor loss(Shape{}), lse({N}), qn({N, D}), kn({N, D});
  infonce_forward(q, k, queue, 1e5f, loss, lse, qn, kn);
  EXPECT_NEAR(scalar(loss), std::log(K + 1.0), 1e-4);
}

TEST(InfoNce, QueueMustMatchDims) {
  Tensor q = full({2, 4}, 1.0f), queue = full({3, 5}, 1.0f), loss(Shape{}), lse({2}), qn({2, 4}), kn({2, 4});
  const std::string msg = message_of([&] { infonce_forward(q, q, queue, 0.2f, loss, lse, qn, kn); });
  EXPECT_NE(msg.find("(3, 5)"), std::string::npos) << msg;
  EXPECT_NE(msg.find("(2, 4)"), std::string::npos) << msg;
}

// K = 5, N = 3: head 3 writes slots 3, 4, 0 and moves to 1; then 5 keys fill 1, 2, 3, 4, 0.
TEST(Queue, WrapsAroundTheEnd) {
  Tensor queue = zeros({5, 2});
  Tensor a = Tensor::from({1, 1, 2, 2, 3, 3}, {3, 2});
  std::int64_t head = 3;
  queue_enqueue(queue, a, head);
  EXPECT_EQ(head, 1);
  EXPECT_TRUE(all_close("queue", queue.to_vector(), {3, 3, 0, 0, 0, 0, 1, 1, 2, 2}, {0, 0}));
  Tensor b = Tensor::from({4, 4, 5, 5, 6, 6, 7, 7, 8, 8}, {5, 2});
  queue_enqueue(queue, b, head);
  EXPECT_EQ(head, 1);
  EXPECT_TRUE(all_close("queue", queue.to_vector(), {8, 8, 4, 4, 5, 5, 6, 6, 7, 7}, {0, 0}));
  Tensor c = zeros({6, 2});
  EXPECT_NE(message_of([&] { queue_enqueue(queue, c, head); }).find("(6, 2)"), std::string::npos);
  std::int64_t bad = 5;
  EXPECT_NE(message_of([&] { queue_enqueue(queue, a, bad); }).find("head 5"), std::string::npos);
}

}  // namespace
}  // namespace fovea::testing
