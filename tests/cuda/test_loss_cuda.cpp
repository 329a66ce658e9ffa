// tests/cuda/test_loss_cuda.cpp: the CUDA loss twins against the CPU twins beyond the harness cases
// (those run from test_ops_cuda.cpp): NT-Xent at N = 1, 3, 257 and InfoNCE at
// K = 1, 7, 4099 with every saved tensor compared, the documented NaN for invalid labels, and the
// queue's wrap-around. Skips without a CUDA device.
#include <cmath>
#include <limits>

#include "cases/loss.hpp"

namespace fovea::testing {
namespace {

#define FOVEA_REQUIRE_GPU() \
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device: " << cuda_unavailable_reason()

Tensor poisoned(const Shape& s, Device d) { return full(s, std::numeric_limits<float>::quiet_NaN(), d); }

// The fp32 kernel (automatic picks the TF32 tensor-core kernel, whose tolerances are in
// test_contrastive_cuda.cpp).
TEST(CudaNtXent, SavedTensorsAndGradientMatchCpu) {
  FOVEA_REQUIRE_GPU();
  ScopedNtXentKernel simt(NtXentKernel::simt);
  const Device gpu = Device::cuda(0);
  for (const std::int64_t N : {1, 3, 257}) {
    for (const std::int64_t D : {1, 7, 128, 200}) {
      SCOPED_TRACE("N " + std::to_string(N) + " D " + std::to_string(D));
      const Shape s{2 * N, D};
      Tensor z = Tensor::from(random_values(s.numel(), InputKind::normal, 40 + N + D), s), zg = z.to(gpu);
      Tensor loss(Shape{}), lse({2 * N}), zn(s), dz(s), acc({2});
      Tensor lossg = poisoned(Shape{}, gpu), lseg = poisoned({2 * N}, gpu), zng = poisoned(s, gpu), dzg = poisoned(s, gpu),
             accg = poisoned({2}, gpu);
      for (const float tau : {0.07f, 0.5f}) {
        nt_xent_forward(z, tau, loss, lse, zn);
        nt_xent_forward(zg, tau, lossg, lseg, zng);
        nt_xent_backward(z, zn, lse, tau, 0.75f, dz);
        nt_xent_backward(zg, zng, lseg, tau, 0.75f, dzg);
        contrastive_accuracy(zn, acc);
        contrastive_accuracy(zng, accg);
        EXPECT_TRUE(all_close("loss", lossg.to_vector(), to_double(loss.to_vector()), {1e-5, 1e-4}));
        EXPECT_TRUE(all_close("row_lse", lseg.to_vector(), to_double(lse.to_vector()), {1e-5, 1e-5}));
        EXPECT_TRUE(all_close("znorm", zng.to_vector(), to_double(zn.to_vector()), {1e-7, 1e-5}));
        EXPECT_TRUE(all_close("dz", dzg.to_vector(), to_double(dz.to_vector()), {1e-5, 1e-3}));
        EXPECT_TRUE(all_close("accuracy", accg.to_vector(), to_double(acc.to_vector()), {1e-7, 0}));
      }
    }
  }
}

TEST(CudaInfoNce, SavedTensorsAndGradientMatchCpu) {
  FOVEA_REQUIRE_GPU();
  const Device gpu = Device::cuda(0);
  for (const std::int64_t K : {1, 7, 4099}) {
    for (const std::int64_t N : {1, 5, 70}) {
      SCOPED_TRACE("N " + std::to_string(N) + " K " + std::to_string(K));
      const std::int64_t D = 128;
      const Shape s{N, D};
      Tensor q = Tensor::from(random_values(s.numel(), InputKind::normal, 7 + N), s);
      Tensor k = Tensor::from(random_values(s.numel(), InputKind::normal, 8 + N), s);
      Tensor raw = Tensor::from(random_values(K * D, InputKind::normal, 9 + K), {K, D}), queue({K, D});
      l2_normalize_rows(raw, queue);  // a realistic queue of normalised keys
      Tensor qg = q.to(gpu), kg = k.to(gpu), queueg = queue.to(gpu);
      Tensor loss(Shape{}), lse({N}), qn(s), kn(s), dq(s), acc({2});
      Tensor lossg = poisoned(Shape{}, gpu), lseg = poisoned({N}, gpu), qng = poisoned(s, gpu), kng = poisoned(s, gpu),
             dqg = poisoned(s, gpu), accg = poisoned({2}, gpu);
      infonce_forward(q, k, queue, 0.2f, loss, lse, qn, kn);
      infonce_forward(qg, kg, queueg, 0.2f, lossg, lseg, qng, kng);
      infonce_backward(q, qn, kn, queue, lse, 0.2f, 1.5f, dq);
      infonce_backward(qg, qng, kng, queueg, lseg, 0.2f, 1.5f, dqg);
      infonce_accuracy(qn, kn, queue, acc);
      infonce_accuracy(qng, kng, queueg, accg);
      EXPECT_TRUE(all_close("loss", lossg.to_vector(), to_double(loss.to_vector()), {1e-5, 1e-4}));
      EXPECT_TRUE(all_close("row_lse", lseg.to_vector(), to_double(lse.to_vector()), {1e-5, 1e-5}));
      EXPECT_TRUE(all_close("qnorm", qng.to_vector(), to_double(qn.to_vector()), {1e-7, 1e-5}));
      EXPECT_TRUE(all_close("knorm", kng.to_vector(), to_double(kn.to_vector()), {1e-7, 1e-5}));
      EXPECT_TRUE(all_close("dq", dqg.to_vector(), to_double(dq.to_vector()), {1e-5, 1e-3}));
      EXPECT_TRUE(all_close("accuracy", accg.to_vector(), to_double(acc.to_vector()), {1e-7, 0}));
    }
  }
}

TEST(CudaQueue, WrapAroundMatchesCpu) {
  FOVEA_REQUIRE_GPU();
  const Device gpu = Device::cuda(0);
  const std::int64_t K = 10, D = 3;
  Tensor queue = Tensor::from(random_values(K * D, InputKind::normal, 1), {K, D}), queueg = queue.to(gpu);
  std::int64_t head = 0, headg = 0;
  for (const std::int64_t N : {4, 4, 4, 7, 10, 1}) {
    Tensor keys = Tensor::from(random_values(N * D, InputKind::normal, 10 + N + head), {N, D}), keysg = keys.to(gpu);
    queue_enqueue(queue, keys, head);
    queue_enqueue(queueg, keysg, headg);
    EXPECT_EQ(head, headg);
    EXPECT_TRUE(all_close("queue", queueg.to_vector(), to_double(queue.to_vector()), {0, 0}));
  }
}

// Kernels cannot throw: an invalid label makes the CUDA loss NaN and its row of dlogits NaN.
TEST(CudaCrossEntropy, InvalidLabelGivesNaN) {
  FOVEA_REQUIRE_GPU();
  const Device gpu = Device::cuda(0);
  Tensor x = Tensor::from({1, 2, 3, 4, 5, 6}, {2, 3}, gpu), loss(Shape{}, gpu), dx({2, 3}, gpu);
  for (float bad : {-1.0f, 3.0f, 0.5f}) {
    Tensor y = Tensor::from({1.0f, bad}, {2}, gpu);
    cross_entropy_forward(x, y, CView(), 0.1f, loss);
    EXPECT_TRUE(std::isnan(loss.to_vector()[0]));
    cross_entropy_backward(x, y, CView(), 0.0f, 1.0f, dx);
    const auto g = dx.to_vector();
    for (int j = 3; j < 6; ++j) EXPECT_TRUE(std::isnan(g[j])) << j;
  }
}

}  // namespace
}  // namespace fovea::testing
