// tests/test_ops.cpp: every op of the table (op_cases.hpp) in reference and grad modes, on the CPU.
#include "op_cases.hpp"

namespace fovea::testing {
namespace {

class OpReference : public ::testing::TestWithParam<OpCase> {};
TEST_P(OpReference, MatchesNaiveReference) { check_reference(GetParam()); }
INSTANTIATE_TEST_SUITE_P(Ops, OpReference, ::testing::ValuesIn(all_op_cases()), CaseName());

class OpGrad : public ::testing::TestWithParam<OpCase> {};
TEST_P(OpGrad, BackwardMatchesFiniteDifferences) { check_grad(GetParam()); }
std::vector<OpCase> differentiable_cases() {
  std::vector<OpCase> out;
  for (auto& c : all_op_cases())
    if (c.backward) out.push_back(c);
  return out;
}
INSTANTIATE_TEST_SUITE_P(Ops, OpGrad, ::testing::ValuesIn(differentiable_cases()), CaseName());

TEST(Reduce, MaxPropagatesNaN) {
  Tensor x = Tensor::from({1.0f, std::nanf(""), 3.0f, -1.0f, -2.0f, -3.0f}, {2, 3});
  Tensor m = reduce(x, 1, ReduceKind::max);
  const auto v = m.to_vector();
  EXPECT_TRUE(std::isnan(v[0]));
  EXPECT_EQ(v[1], -1.0f);
}

TEST(Reduce, SumOfEmptyAxisIsZeroAndMeanIsAnError) {
  Tensor x(Shape{2, 0, 3});
  Tensor s = reduce(x, 1, ReduceKind::sum);
  EXPECT_EQ(s.to_vector(), std::vector<float>(6, 0.0f));
  EXPECT_THROW(reduce(x, 1, ReduceKind::mean), Error);
}

TEST(Reduce, WrongOutputShapeNamesBothShapes) {
  Tensor x = full({2, 3, 4}, 1.0f);
  Tensor out(Shape{2, 3, 4});
  try {
    reduce(x, 1, out, ReduceKind::sum);
    FAIL() << "no error";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("(2, 3, 4)"), std::string::npos) << msg;
    EXPECT_NE(msg.find("(2, 1, 4)"), std::string::npos) << msg;
  }
  EXPECT_THROW(reduce(x, 3, out, ReduceKind::sum), Error);
}

TEST(Elementwise, ShapeMismatchNamesBothShapes) {
  Tensor a = full({2, 3}, 1.0f), b = full({3, 2}, 1.0f), out({2, 3});
  try {
    add(a, b, out);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "add: shape mismatch: a (2, 3) vs b (3, 2)");
  }
}

TEST(Elementwise, InPlaceAliasingIsAllowed) {
  Tensor a = Tensor::from({1, -2, 3, -4}, {4});
  relu_forward(a, a);
  EXPECT_EQ(a.to_vector(), (std::vector<float>{1, 0, 3, 0}));
  add(a, a, a);
  EXPECT_EQ(a.to_vector(), (std::vector<float>{2, 0, 6, 0}));
}

TEST(Elementwise, ReluPropagatesNaN) {
  Tensor a = Tensor::from({std::nanf(""), -1.0f}, {2});
  Tensor y(a.shape());
  relu_forward(a, y);
  EXPECT_TRUE(std::isnan(y.to_vector()[0]));
  EXPECT_EQ(y.to_vector()[1], 0.0f);
}

// accumulate_scaled over several calls equals the host loop `double s = 0; s += w * x` bit for bit,
// over 70,000 values (several parallel chunks), with start resetting the sum.
TEST(Elementwise, AccumulateScaledIsTheHostLoopInDouble) {
  const std::int64_t n = 70001;
  const double weights[] = {0.1, -2.5e-3, 1.0 / 3.0};
  std::vector<Tensor> xs;
  for (int k = 0; k < 3; ++k) xs.push_back(Tensor::from(random_values(n, InputKind::normal, 40 + k), {n}));
  std::vector<double> want(static_cast<std::size_t>(n), 0.0);
  for (int k = 0; k < 3; ++k) {
    const std::vector<float> x = xs[static_cast<std::size_t>(k)].to_vector();
    for (std::size_t i = 0; i < want.size(); ++i) want[i] += weights[k] * x[i];
  }
  Tensor acc = double_accumulator(n, Device::cpu());
  fill(acc, 7.0f);  // start = true must ignore what is there
  for (int k = 0; k < 3; ++k) accumulate_scaled(xs[static_cast<std::size_t>(k)], weights[k], acc, k == 0);
  EXPECT_EQ(read_double_accumulator(acc), want);
  accumulate_scaled(xs[0], 2.0, acc, true);
  const std::vector<float> x0 = xs[0].to_vector();
  const std::vector<double> again = read_double_accumulator(acc);
  for (std::size_t i = 0; i < again.size(); i += 997) EXPECT_EQ(again[i], 2.0 * x0[i]) << i;
}

TEST(Elementwise, AccumulateScaledChecksItsAccumulator) {
  Tensor x = full({2, 3}, 1.0f), small(Shape{6});
  try {
    accumulate_scaled(x, 1.0, small, true);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("accumulator (6) for 6 values (it needs 2 floats per value)"),
              std::string::npos)
        << e.what();
  }
  Tensor big(Shape{13});
  EXPECT_THROW(accumulate_scaled(x, 1.0, View(big.data() + 1, Shape{12}, Device::cpu()), true),
               Error);  // misaligned
}

}  // namespace
}  // namespace fovea::testing
