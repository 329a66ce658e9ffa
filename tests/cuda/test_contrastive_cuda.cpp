// tests/cuda/test_contrastive_cuda.cpp: NT-Xent's tensor-core (TF32) CUDA kernel against the CPU twin
// at awkward and realistic sizes with TF32 tolerances (docs/losses.md), its fallbacks to the fp32
// kernel (TF32 off, D > 256), run-to-run reproducibility, the absence of a (2N)^2 buffer, and the
// kernel selection (FOVEA_NTXENT_KERNEL, ScopedNtXentKernel). GPU tests skip without a CUDA device.
#include <cmath>
#include <cstdlib>
#include <limits>
#include <optional>
#include <string>

#include "fovea/cuda/runtime.hpp"
#include "fovea/ops/blas.hpp"
#include "fovea/ops/contrastive.hpp"
#include "op_harness.hpp"

namespace fovea::testing {
namespace {

#define FOVEA_REQUIRE_GPU() \
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device: " << cuda_unavailable_reason()

constexpr float kDloss = 0.75f;

Tensor poisoned(const Shape& s, Device d) { return full(s, std::numeric_limits<float>::quiet_NaN(), d); }

// Sets (or unsets, for nullopt) an environment variable for a scope.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, std::optional<std::string> value) : name_(name) {
    if (const char* old = std::getenv(name)) previous_ = old;
    set(value);
  }
  ~ScopedEnv() { set(previous_); }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  void set(const std::optional<std::string>& v) {
    if (v) setenv(name_, v->c_str(), 1);
    else unsetenv(name_);
  }
  const char* name_;
  std::optional<std::string> previous_;
};

struct NtXentRun {
  std::vector<float> loss, lse, zn, dz;
};

NtXentRun run_nt_xent(const Tensor& z, float tau) {
  const Device dev = z.device();
  const Shape& s = z.shape();
  Tensor loss = poisoned(Shape{}, dev), lse = poisoned({s[0]}, dev), zn = poisoned(s, dev),
         dz = poisoned(s, dev);
  nt_xent_forward(z, tau, loss, lse, zn);
  nt_xent_backward(z, zn, lse, tau, kDloss, dz);
  return {loss.to_vector(), lse.to_vector(), zn.to_vector(), dz.to_vector()};
}

double min_row_norm(const std::vector<float>& z, std::int64_t M, std::int64_t D) {
  double lo = std::numeric_limits<double>::infinity();
  for (std::int64_t i = 0; i < M; ++i) {
    double ss = 0.0;
    for (std::int64_t d = 0; d < D; ++d) ss += static_cast<double>(z[i * D + d]) * z[i * D + d];
    lo = std::min(lo, std::sqrt(ss));
  }
  return lo;
}

// ||got - want|| <= rtol ||want||.
::testing::AssertionResult norm_close(const std::string& what, const std::vector<float>& got,
                                      const std::vector<float>& want, double rtol) {
  double num = 0.0, den = 0.0;
  for (std::size_t i = 0; i < got.size(); ++i) {
    const double e = static_cast<double>(got[i]) - want[i];
    num += e * e;
    den += static_cast<double>(want[i]) * want[i];
  }
  const double rel = std::sqrt(num) / std::sqrt(den);
  if (rel <= rtol) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << what << ": normwise relative error " << rel << " > " << rtol;
}

// The tensor-core kernel against the CPU twin (double accumulation). TF32 keeps 10 mantissa bits of
// each normalised coordinate, so a similarity moves by up to ~1e-3 / tau (typically far less): the
// loss and row_lse tolerances scale with 1 / tau. A gradient entry is a sum of terms of size
// dloss / (2N tau ||z_i||), each carrying TF32 rounding; its tolerance is 2e-3 of that unit plus 1e-2
// relative. The CPU emulation of these kernels (docs/losses.md) predicts at most 1/5 to 1/3 of each
// bound on these inputs.
void expect_tensor_core_matches_cpu(std::int64_t N, std::int64_t D, float tau) {
  SCOPED_TRACE("N " + std::to_string(N) + " D " + std::to_string(D) + " tau " + std::to_string(tau));
  const std::int64_t M = 2 * N;
  const Shape s{M, D};
  const std::vector<float> values = random_values(s.numel(), InputKind::normal, 40 + N + D);
  Tensor z = Tensor::from(values, s), zg = z.to(Device::cuda(0));
  const NtXentRun cpu = run_nt_xent(z, tau);
  const NtXentRun gpu = run_nt_xent(zg, tau);
  EXPECT_TRUE(all_close("loss", gpu.loss, to_double(cpu.loss), {1e-3 / tau, 1e-3}));
  EXPECT_TRUE(all_close("row_lse", gpu.lse, to_double(cpu.lse), {3e-4 / tau, 3e-4 / tau}));
  EXPECT_TRUE(all_close("znorm", gpu.zn, to_double(cpu.zn), {1e-7, 1e-5}));
  const double unit = kDloss / (static_cast<double>(M) * tau * min_row_norm(values, M, D));
  EXPECT_TRUE(all_close("dz", gpu.dz, to_double(cpu.dz), {2e-3 * unit, 1e-2}));
  if (N >= 3) {
    EXPECT_TRUE(norm_close("dz", gpu.dz, cpu.dz, 5e-3));
  }
  // fixed reduction orders: a second run is bitwise equal
  const NtXentRun again = run_nt_xent(zg, tau);
  EXPECT_EQ(again.loss, gpu.loss);
  EXPECT_EQ(again.lse, gpu.lse);
  EXPECT_EQ(again.dz, gpu.dz);
}

bool tensor_cores_usable() { return cuda_available() && cuda::nt_xent_tensor_cores_supported(128, 0); }

TEST(NtXentKernelSetting, EnvironmentScopeAndTf32Switch) {
  {
    ScopedEnv env("FOVEA_NTXENT_KERNEL", std::nullopt);
    EXPECT_EQ(detail::nt_xent_kernel_from_env(), NtXentKernel::automatic);
  }
  {
    ScopedEnv env("FOVEA_NTXENT_KERNEL", "tc");
    EXPECT_EQ(detail::nt_xent_kernel_from_env(), NtXentKernel::tensor_core);
  }
  {
    ScopedEnv env("FOVEA_NTXENT_KERNEL", "simt");
    EXPECT_EQ(detail::nt_xent_kernel_from_env(), NtXentKernel::simt);
  }
  {
    ScopedEnv env("FOVEA_NTXENT_KERNEL", "wmma");
    EXPECT_THROW(detail::nt_xent_kernel_from_env(), Error);
  }
  const NtXentKernel before = nt_xent_kernel();
  {
    ScopedNtXentKernel tc(NtXentKernel::tensor_core);
    EXPECT_EQ(nt_xent_kernel(), NtXentKernel::tensor_core);
    {
      ScopedMathSettings on({true, false});
      EXPECT_TRUE(detail::nt_xent_tensor_cores());
    }
    {
      ScopedMathSettings off({false, false});
      EXPECT_FALSE(detail::nt_xent_tensor_cores());
    }
    ScopedNtXentKernel simt(NtXentKernel::simt);
    EXPECT_FALSE(detail::nt_xent_tensor_cores());
  }
  EXPECT_EQ(nt_xent_kernel(), before);
  {
    // automatic is the tensor-core kernel while TF32 is allowed, the fp32 kernel otherwise
    ScopedNtXentKernel automatic(NtXentKernel::automatic);
    {
      ScopedMathSettings on({true, false});
      EXPECT_TRUE(detail::nt_xent_tensor_cores());
    }
    ScopedMathSettings off({false, false});
    EXPECT_FALSE(detail::nt_xent_tensor_cores());
  }
}

TEST(CudaNtXentTensorCore, SupportedDims) {
  FOVEA_REQUIRE_GPU();
  if (!tensor_cores_usable()) GTEST_SKIP() << "needs compute capability 8.0 or later";
  for (const std::int64_t D : {1, 3, 7, 64, 128, 129, 200, 256})
    EXPECT_TRUE(cuda::nt_xent_tensor_cores_supported(D, 0)) << D;
  EXPECT_FALSE(cuda::nt_xent_tensor_cores_supported(257, 0));
}

TEST(CudaNtXentTensorCore, MatchesCpuAtAwkwardSizes) {
  FOVEA_REQUIRE_GPU();
  if (!tensor_cores_usable()) GTEST_SKIP() << "needs compute capability 8.0 or later";
  ScopedNtXentKernel kernel(NtXentKernel::tensor_core);
  ScopedMathSettings tf32({true, false});
  for (const std::int64_t N : {1, 3, 8, 257})
    for (const std::int64_t D : {3, 64, 128, 200})
      for (const float tau : {0.1f, 0.5f}) expect_tensor_core_matches_cpu(N, D, tau);
}

TEST(CudaNtXentTensorCore, MatchesCpuAtN1024) {
  FOVEA_REQUIRE_GPU();
  if (!tensor_cores_usable()) GTEST_SKIP() << "needs compute capability 8.0 or later";
  ScopedNtXentKernel kernel(NtXentKernel::tensor_core);
  ScopedMathSettings tf32({true, false});
  for (const float tau : {0.1f, 0.5f}) expect_tensor_core_matches_cpu(1024, 128, tau);
}

// Two blocks per SM (cuda::nt_xent_tc_blocks_per_sm() = 2: one stage of column panels, twice the
// splits, the backward's 128-register instance for D = 128): the same tolerances against the CPU, at
// sizes with one and several splits, D = 128 (both passes with two blocks) and 64 / 200 (the
// backward falls back to one block), and bitwise repeatable.
TEST(CudaNtXentTensorCore, TwoBlocksPerSmMatchesCpu) {
  FOVEA_REQUIRE_GPU();
  if (!tensor_cores_usable()) GTEST_SKIP() << "needs compute capability 8.0 or later";
  ScopedNtXentKernel kernel(NtXentKernel::tensor_core);
  ScopedMathSettings tf32({true, false});
  int& blocks = cuda::nt_xent_tc_blocks_per_sm();
  const int previous = blocks;
  blocks = 2;
  for (const std::int64_t N : {3, 257, 1024})
    for (const std::int64_t D : {64, 128, 200}) expect_tensor_core_matches_cpu(N, D, 0.2f);
  blocks = previous;
}

// The automatic plan (cuda::nt_xent_tc_blocks_per_sm() = 0, the default): one block per SM below
// 2N = 4096 rows, two from there (the measured crossover, docs/losses.md), so its results are bitwise
// those of the setting it picks; the two plans agree within the TF32 tolerances.
TEST(CudaNtXentTensorCore, AutomaticBlocksPlanPicksTheMeasuredResidency) {
  FOVEA_REQUIRE_GPU();
  if (!tensor_cores_usable()) GTEST_SKIP() << "needs compute capability 8.0 or later";
  ScopedNtXentKernel kernel(NtXentKernel::tensor_core);
  ScopedMathSettings tf32({true, false});
  int& blocks = cuda::nt_xent_tc_blocks_per_sm();
  const int previous = blocks;
  for (const std::int64_t N : {1024, 2047, 2048, 4096}) {
    SCOPED_TRACE("N " + std::to_string(N));
    const Shape s{2 * N, 128};
    Tensor z = Tensor::from(random_values(s.numel(), InputKind::normal, 7 + N), s).to(Device::cuda(0));
    blocks = 0;
    const NtXentRun automatic = run_nt_xent(z, 0.2f);
    blocks = N >= 2048 ? 2 : 1;
    const NtXentRun chosen = run_nt_xent(z, 0.2f);
    blocks = N >= 2048 ? 1 : 2;
    const NtXentRun other = run_nt_xent(z, 0.2f);
    EXPECT_EQ(automatic.loss, chosen.loss);
    EXPECT_EQ(automatic.lse, chosen.lse);
    EXPECT_EQ(automatic.dz, chosen.dz);
    EXPECT_TRUE(all_close("loss", automatic.loss, to_double(other.loss), {2e-3, 1e-3}));
    EXPECT_TRUE(norm_close("dz", automatic.dz, other.dz, 5e-3));
  }
  blocks = previous;
}

// The backward's finish in clusters (cuda::nt_xent_tc_backward_finish() = cluster: each row tile's
// split blocks add their partial gradients from one another's shared memory and finish dz in the same
// launch) gives the finish kernel's bits: at 1 to 32 row tiles, partial last tiles, 1 to 8 splits,
// one and two blocks per SM, and (falling back to the finish kernel) D = 64; and it ran somewhere
// on a device with clusters. Also within the default's tolerances of the CPU at N = 257 and 1024.
TEST(CudaNtXentTensorCore, ClusterFinishMatchesFinishKernelBitwise) {
  FOVEA_REQUIRE_GPU();
  if (!tensor_cores_usable()) GTEST_SKIP() << "needs compute capability 8.0 or later";
  ScopedNtXentKernel kernel(NtXentKernel::tensor_core);
  ScopedMathSettings tf32({true, false});
  cuda::NtXentBackwardFinish& finish = cuda::nt_xent_tc_backward_finish();
  const cuda::NtXentBackwardFinish previous_finish = finish;
  int& blocks = cuda::nt_xent_tc_blocks_per_sm();
  const int previous_blocks = blocks;
  const Device gpu = Device::cuda(0);
  int clustered = 0;
  for (const int b : {1, 2})
    for (const auto& [N, D] : std::vector<std::pair<std::int64_t, std::int64_t>>{
             {1, 128}, {3, 128}, {70, 128}, {257, 128}, {1024, 128}, {2048, 128}, {257, 64}}) {
      SCOPED_TRACE("blocks " + std::to_string(b) + " N " + std::to_string(N) + " D " + std::to_string(D));
      blocks = b;
      const Shape s{2 * N, D};
      const Tensor z = Tensor::from(random_values(s.numel(), InputKind::normal, 91 + N + D), s).to(gpu);
      finish = cuda::NtXentBackwardFinish::kernel;
      EXPECT_FALSE(cuda::nt_xent_tc_backward_in_clusters(2 * N, D, 0));
      const NtXentRun plain = run_nt_xent(z, 0.2f);
      finish = cuda::NtXentBackwardFinish::cluster;
      const bool ran = cuda::nt_xent_tc_backward_in_clusters(2 * N, D, 0);
      if (D != 128) {
        EXPECT_FALSE(ran);
      }
      clustered += ran ? 1 : 0;
      const NtXentRun cl = run_nt_xent(z, 0.2f);
      EXPECT_EQ(cl.loss, plain.loss);
      EXPECT_EQ(cl.lse, plain.lse);
      EXPECT_EQ(cl.dz, plain.dz);
    }
  blocks = previous_blocks;
  expect_tensor_core_matches_cpu(257, 128, 0.2f);
  expect_tensor_core_matches_cpu(1024, 128, 0.1f);
  finish = previous_finish;
  if (cuda::device_info(0).major >= 9) {
    EXPECT_GT(clustered, 0) << "no size ran the clustered finish on this device";
  } else {
    EXPECT_EQ(clustered, 0);
  }
}

// The symmetric forward (cuda::nt_xent_tc_forward_tiles() = symmetric: each pair of row tiles once,
// a fixed shift instead of the running max) at 1 to 16 row tiles, odd and even counts, partial last
// tiles, tau at the edge of its range (0.03) and a D whose panels do not fit (256: the split forward
// runs); against the CPU with the default's tolerances (and bitwise equal from one call to the next),
// and at N = 1024 within float rounding of the split forward.
TEST(CudaNtXentTensorCore, SymmetricForwardMatchesCpu) {
  FOVEA_REQUIRE_GPU();
  if (!tensor_cores_usable()) GTEST_SKIP() << "needs compute capability 8.0 or later";
  ScopedNtXentKernel kernel(NtXentKernel::tensor_core);
  ScopedMathSettings tf32({true, false});
  cuda::NtXentForwardTiles& tiles = cuda::nt_xent_tc_forward_tiles();
  const cuda::NtXentForwardTiles previous = tiles;
  tiles = cuda::NtXentForwardTiles::symmetric;
  for (const std::int64_t N : {1, 64, 70, 192, 257, 1024})
    for (const float tau : {0.03f, 0.2f}) expect_tensor_core_matches_cpu(N, 128, tau);
  expect_tensor_core_matches_cpu(300, 64, 0.1f);
  expect_tensor_core_matches_cpu(300, 256, 0.1f);
  const Device gpu = Device::cuda(0);
  const Shape s{2048, 128};
  const Tensor z = Tensor::from(random_values(s.numel(), InputKind::normal, 77), s).to(gpu);
  const NtXentRun first = run_nt_xent(z, 0.1f);
  tiles = cuda::NtXentForwardTiles::split;
  const NtXentRun split = run_nt_xent(z, 0.1f);
  tiles = previous;
  ASSERT_EQ(split.lse.size(), first.lse.size());
  for (std::size_t i = 0; i < split.lse.size(); ++i)
    ASSERT_NEAR(first.lse[i], split.lse[i], 2e-5f * (1.0f + std::fabs(split.lse[i]))) << "row " << i;
  EXPECT_NEAR(first.loss[0], split.loss[0], 2e-5f * (1.0f + std::fabs(split.loss[0])));
}

// z, znorm and dz as views one float past a 16-byte boundary: the backward stages the caller's znorm
// with 4-byte copies instead of 16-byte ones (and rounds it to TF32 in shared memory either way), so
// every output must be bitwise the aligned run's.
TEST(CudaNtXentTensorCore, MisalignedViewsMatchAlignedBitwise) {
  FOVEA_REQUIRE_GPU();
  if (!tensor_cores_usable()) GTEST_SKIP() << "needs compute capability 8.0 or later";
  ScopedNtXentKernel kernel(NtXentKernel::tensor_core);
  ScopedMathSettings tf32({true, false});
  const Device gpu = Device::cuda(0);
  for (const std::int64_t N : {37, 300}) {
    SCOPED_TRACE("N " + std::to_string(N));
    const std::int64_t M = 2 * N, D = 128;
    const Shape s{M, D};
    const std::vector<float> values = random_values(s.numel(), InputKind::normal, 90 + N);
    Tensor z = Tensor::from(values, s).to(gpu);
    const NtXentRun aligned = run_nt_xent(z, 0.2f);
    Tensor zbuf = Tensor::from(std::vector<float>(values.size() + 1, 0.0f), Shape{s.numel() + 1}).to(gpu);
    Tensor znbuf = poisoned(Shape{s.numel() + 1}, gpu), dzbuf = poisoned(Shape{s.numel() + 1}, gpu);
    const View zv(zbuf.data() + 1, s, gpu), znv(znbuf.data() + 1, s, gpu), dzv(dzbuf.data() + 1, s, gpu);
    copy(CView(z.data(), s, gpu), zv);
    Tensor loss = poisoned(Shape{}, gpu), lse = poisoned({M}, gpu);
    nt_xent_forward(zv, 0.2f, loss, lse, znv);
    nt_xent_backward(zv, znv, lse, 0.2f, kDloss, dzv);
    const std::vector<float> zn = znbuf.to_vector(), dz = dzbuf.to_vector();
    EXPECT_EQ(loss.to_vector(), aligned.loss);
    EXPECT_EQ(lse.to_vector(), aligned.lse);
    EXPECT_EQ(std::vector<float>(zn.begin() + 1, zn.end()), aligned.zn);
    EXPECT_EQ(std::vector<float>(dz.begin() + 1, dz.end()), aligned.dz);
  }
}

// The tensor-core kernels are programmatic dependent launches (kernels/common.cuh): each may be
// scheduled before the one ahead of it has finished and must wait for it before touching memory.
// A chain of calls queued without a host synchronisation, each call's input the previous call's
// gradient (so every forward reads what the last kernel before it wrote), must give bitwise the
// results of the same calls run one at a time with a synchronisation after each.
TEST(CudaNtXentTensorCore, QueuedChainedCallsMatchSynchronisedCalls) {
  FOVEA_REQUIRE_GPU();
  if (!tensor_cores_usable()) GTEST_SKIP() << "needs compute capability 8.0 or later";
  ScopedNtXentKernel kernel(NtXentKernel::tensor_core);
  ScopedMathSettings tf32({true, false});
  const Device gpu = Device::cuda(0);
  for (const std::int64_t D : {128, 64}) {  // the D = 128 instances and the general ones
    SCOPED_TRACE("D " + std::to_string(D));
    const std::int64_t M = 2 * 300, calls = 6;
    const Shape s{M, D};
    const Tensor z0 = Tensor::from(random_values(s.numel(), InputKind::normal, 11 + D), s).to(gpu);
    std::vector<NtXentRun> reference{run_nt_xent(z0, 0.2f)};  // reads every output back: synchronised
    for (std::int64_t c = 1; c < calls; ++c)
      reference.push_back(run_nt_xent(Tensor::from(reference.back().dz, s).to(gpu), 0.2f));
    std::vector<Tensor> loss, lse, zn, dz;
    for (std::int64_t c = 0; c < calls; ++c) {
      loss.push_back(poisoned(Shape{}, gpu));
      lse.push_back(poisoned({M}, gpu));
      zn.push_back(poisoned(s, gpu));
      dz.push_back(poisoned(s, gpu));
    }
    synchronize(gpu);
    for (std::int64_t c = 0; c < calls; ++c) {  // no host synchronisation until the end
      const Tensor& in = c == 0 ? z0 : dz[c - 1];
      nt_xent_forward(in, 0.2f, loss[c], lse[c], zn[c]);
      nt_xent_backward(in, zn[c], lse[c], 0.2f, kDloss, dz[c]);
    }
    synchronize(gpu);
    for (std::int64_t c = 0; c < calls; ++c) {
      SCOPED_TRACE("call " + std::to_string(c));
      EXPECT_TRUE(std::isfinite(reference[c].loss[0]));
      EXPECT_EQ(loss[c].to_vector(), reference[c].loss);
      EXPECT_EQ(lse[c].to_vector(), reference[c].lse);
      EXPECT_EQ(zn[c].to_vector(), reference[c].zn);
      EXPECT_EQ(dz[c].to_vector(), reference[c].dz);
    }
  }
}

// TF32 off, or D beyond the tensor-core kernel: the selection falls back to the fp32 kernel, bitwise.
TEST(CudaNtXentTensorCore, FallsBackToFp32Kernel) {
  FOVEA_REQUIRE_GPU();
  const Device gpu = Device::cuda(0);
  for (const std::int64_t D : {64, 300}) {
    SCOPED_TRACE("D " + std::to_string(D));
    const Shape s{2 * 37, D};
    Tensor z = Tensor::from(random_values(s.numel(), InputKind::normal, 7 + D), s).to(gpu);
    NtXentRun simt;
    {
      ScopedNtXentKernel kernel(NtXentKernel::simt);
      simt = run_nt_xent(z, 0.2f);
    }
    ScopedNtXentKernel kernel(NtXentKernel::tensor_core);
    ScopedMathSettings settings({D > 256, false});  // D = 300 falls back even with TF32 allowed
    const NtXentRun tc = run_nt_xent(z, 0.2f);
    EXPECT_EQ(tc.loss, simt.loss);
    EXPECT_EQ(tc.lse, simt.lse);
    EXPECT_EQ(tc.zn, simt.zn);
    EXPECT_EQ(tc.dz, simt.dz);
  }
}

// The forward and backward hold O(2N D) scratch, never the (2N)^2 similarity matrix.
TEST(CudaNtXentTensorCore, NoSimilarityMatrixInDeviceMemory) {
  FOVEA_REQUIRE_GPU();
  if (!tensor_cores_usable()) GTEST_SKIP() << "needs compute capability 8.0 or later";
  const Device gpu = Device::cuda(0);
  const std::int64_t M = 8192, D = 128;
  Tensor z = Tensor::from(random_values(M * D, InputKind::normal, 3), {M, D}).to(gpu);
  Tensor loss(Shape{}, gpu), lse({M}, gpu), zn({M, D}, gpu), dz({M, D}, gpu);
  ScopedNtXentKernel kernel(NtXentKernel::tensor_core);
  ScopedMathSettings tf32({true, false});
  synchronize(gpu);
  cuda_allocator(0).reset_peak();
  const std::size_t before = memory_stats(gpu).current_bytes;
  nt_xent_forward(z, 0.2f, loss, lse, zn);
  nt_xent_backward(z, zn, lse, 0.2f, 1.0f, dz);
  synchronize(gpu);
  const std::size_t extra = memory_stats(gpu).peak_bytes - before;
  EXPECT_LT(extra, static_cast<std::size_t>(M) * M * sizeof(float) / 8) << extra << " scratch bytes";
  EXPECT_TRUE(std::isfinite(loss.to_vector()[0]));
}

}  // namespace
}  // namespace fovea::testing
