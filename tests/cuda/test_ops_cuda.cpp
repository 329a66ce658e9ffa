// tests/cuda/test_ops_cuda.cpp: every op of the table (op_cases.hpp) in cuda mode: the CUDA twin
// against the CPU op, on aligned and misaligned views. Skips without a CUDA device.
#include "op_cases.hpp"

namespace fovea::testing {
namespace {

class OpCuda : public ::testing::TestWithParam<OpCase> {};
TEST_P(OpCuda, MatchesCpu) { check_cuda(GetParam()); }
INSTANTIATE_TEST_SUITE_P(Ops, OpCuda, ::testing::ValuesIn(all_op_cases()), CaseName());

TEST(CudaReduce, MaxPropagatesNaN) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device: " << cuda_unavailable_reason();
  Tensor x = Tensor::from({1.0f, std::nanf(""), 3.0f, -1.0f, -2.0f, -3.0f}, {2, 3}, Device::cuda(0));
  const auto v = reduce(x, 1, ReduceKind::max).to_vector();
  EXPECT_TRUE(std::isnan(v[0]));
  EXPECT_EQ(v[1], -1.0f);
}

TEST(CudaReduce, LargeRowsMatchCpu) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device: " << cuda_unavailable_reason();
  const Shape s{3, 1 << 20};
  Tensor x = Tensor::from(random_values(s.numel(), InputKind::integer, 5), s);
  Tensor g = x.to(Device::cuda(0));
  EXPECT_EQ(reduce(g, 1, ReduceKind::sum).to_vector(), reduce(x, 1, ReduceKind::sum).to_vector());
}

// The double accumulator on the GPU: the CPU's bits after several calls, x misaligned too.
TEST(CudaElementwise, AccumulateScaledMatchesCpuBitwise) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device: " << cuda_unavailable_reason();
  const Device gpu = Device::cuda(0);
  const std::int64_t n = 300007;
  const double weights[] = {0.25, -1.0 / 7.0, 3.5e-4};
  Tensor cpu_acc = double_accumulator(n, Device::cpu()), gpu_acc = double_accumulator(n, gpu);
  for (int k = 0; k < 3; ++k) {
    const Tensor x = Tensor::from(random_values(n, InputKind::normal, 90 + k), {n});
    const DeviceCopy xg = device_copy(x, gpu, k == 1);
    accumulate_scaled(x, weights[k], cpu_acc, k == 0);
    accumulate_scaled(xg.view, weights[k], gpu_acc, k == 0);
  }
  EXPECT_EQ(read_double_accumulator(gpu_acc), read_double_accumulator(cpu_acc));
}

}  // namespace
}  // namespace fovea::testing
