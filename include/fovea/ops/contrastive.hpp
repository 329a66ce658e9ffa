// fovea/ops/contrastive.hpp: the contrastive losses of self-supervised pretraining: NT-Xent (SimCLR,
// in-batch negatives) and InfoNCE against a queue of negatives (MoCo v2), their top-1 / top-5
// accuracies, and the ring-buffer key queue.
//
// Both losses L2-normalise their embedding rows themselves (zhat = z / max(||z||, 1e-12), as
// torch.nn.functional.normalize) and return the normalised rows and each row's log-sum-exp for the
// backward. The CPU twin accumulates in double; the CUDA twin is fused: similarities are computed in
// shared-memory tiles (fp32 FMA, or TF32 tensor cores for NT-Xent when nt_xent_kernel() asks) and
// folded into an online log-sum-exp, so the (2N)^2 or N x K similarity matrix never reaches device
// memory (docs/losses.md).
#pragma once

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <initializer_list>
#include <utility>

#include "fovea/core/tensor.hpp"
#include "fovea/cpu/contrastive.hpp"
#include "fovea/cuda/contrastive.hpp"
#include "fovea/ops/blas.hpp"
#include "fovea/ops/loss.hpp"

namespace fovea {

// Which CUDA kernel NT-Xent's forward and backward run (the CPU twin has one):
//   simt:        fp32 FMA tiles, similarities exact to fp32 rounding (kernels/contrastive.cuh).
//   tensor_core: TF32 mma.sync tiles with fp32 accumulation (kernels/contrastive_tc.cuh), taken only
//                while math_settings().allow_tf32 and for D <= 256 on compute capability >= 8.0 (simt
//                otherwise); TF32 rounding of the normalised rows moves the loss by ~1e-3 relative.
//   automatic:   tensor_core (the default): on the H200 it passed the CUDA tests at TF32 tolerances
//                and ran 3.7x (N = 1024) to 4.4x (N = 8192) faster than simt (docs/benchmarks.md).
//                Exact fp32 (math_settings().allow_tf32 = false) still gets simt.
enum class NtXentKernel { automatic, simt, tensor_core };

namespace detail {
// What automatic resolves to.
inline constexpr NtXentKernel kNtXentAutomatic = NtXentKernel::tensor_core;

inline NtXentKernel nt_xent_kernel_from_env() {
  const char* v = std::getenv("FOVEA_NTXENT_KERNEL");
  if (v == nullptr || v[0] == '\0' || std::strcmp(v, "auto") == 0) return NtXentKernel::automatic;
  if (std::strcmp(v, "simt") == 0) return NtXentKernel::simt;
  if (std::strcmp(v, "tc") == 0 || std::strcmp(v, "tensor_core") == 0) return NtXentKernel::tensor_core;
  FOVEA_FAIL("FOVEA_NTXENT_KERNEL must be auto, simt or tc (tensor_core), got '", v, "'");
}
}  // namespace detail

// The process-wide NT-Xent kernel choice, first read from the environment variable
// FOVEA_NTXENT_KERNEL (auto | simt | tc; unset: automatic). Set it between ops, not while other
// threads launch NT-Xent.
inline NtXentKernel& nt_xent_kernel() {
  static NtXentKernel kernel = detail::nt_xent_kernel_from_env();
  return kernel;
}

// Sets nt_xent_kernel() for a scope and restores the previous choice at its end.
class ScopedNtXentKernel {
 public:
  explicit ScopedNtXentKernel(NtXentKernel kernel) : previous_(nt_xent_kernel()) { nt_xent_kernel() = kernel; }
  ScopedNtXentKernel(const ScopedNtXentKernel&) = delete;
  ScopedNtXentKernel& operator=(const ScopedNtXentKernel&) = delete;
  ~ScopedNtXentKernel() { nt_xent_kernel() = previous_; }

 private:
  NtXentKernel previous_;
};

namespace detail {
inline void check_rows(const char* op, const char* name, CView v, std::int64_t rows, std::int64_t D) {
  const Shape& s = v.shape();
  FOVEA_CHECK(s.rank() == 2 && s[0] == rows && s[1] == D, op, ": ", name, " must be (", rows, ", ", D, "), got ",
              s.str());
}
inline void check_embeddings(const char* op, const char* name, CView v) {
  const Shape& s = v.shape();
  FOVEA_CHECK(s.rank() == 2 && s[0] >= 1 && s[1] >= 1, op, ": ", name, " must be (rows, D) with rows, D >= 1, got ",
              s.str());
}
inline void check_tau(const char* op, float tau) {
  FOVEA_CHECK(tau > 0.0f && std::isfinite(tau), op, ": temperature must be positive and finite, got ", tau);
}
inline void check_nt_xent_z(const char* op, CView z) {
  check_embeddings(op, "z", z);
  FOVEA_CHECK(z.shape()[0] % 2 == 0, op, ": z must be (2N, D) with the two views stacked, got ", z.shape().str());
}
inline void check_devices(const char* op, Device out, std::initializer_list<std::pair<const char*, CView>> views) {
  for (const auto& [name, v] : views) check_same_device(op, name, v.device(), "output", out);
}
inline void check_queue(const char* op, CView q, CView queue) {
  FOVEA_CHECK(queue.shape().rank() == 2 && queue.shape()[0] >= 1 && queue.shape()[1] == q.shape()[1], op,
              ": queue must be (K, D) with K >= 1 and D = ", q.shape()[1], " from q ", q.shape().str(), ", got ",
              queue.shape().str());
}
inline void check_accuracy_out(const char* op, CView acc) {
  check_same_shape(op, "accuracy", acc.shape(), "expected (2): top-1, top-5", Shape{2});
}
// Whether the CUDA NT-Xent asks for the tensor-core kernel (it still falls back for D > 256).
inline bool nt_xent_tensor_cores() {
  const NtXentKernel k = nt_xent_kernel() == NtXentKernel::automatic ? kNtXentAutomatic : nt_xent_kernel();
  return k == NtXentKernel::tensor_core && math_settings().allow_tf32;
}
}  // namespace detail

// nt_xent_forward: SimCLR's normalised-temperature cross-entropy over 2N embeddings.
//   zhat_i = z_i / max(||z_i||, 1e-12); s_ij = zhat_i . zhat_j / tau; pos(i) = (i + N) mod 2N;
//   row_lse_i = log sum_{j != i} exp(s_ij) (the 2N - 1 candidates: the positive and 2N - 2 negatives);
//   loss = (1 / 2N) sum_i (row_lse_i - s_i,pos(i)).
//   z (2N, D), rows [0, N) the first view and [N, 2N) the second, N >= 1, D >= 1; tau > 0;
//   loss () or (1); row_lse (2N) and znorm (2N, D): saved for nt_xent_backward. N = 1 gives loss 0.
//   On CUDA the similarities are fp32 or TF32 as nt_xent_kernel() and math_settings() decide.
inline void nt_xent_forward(CView z, float tau, View loss, View row_lse, View znorm) {
  const char* op = "nt_xent_forward";
  detail::check_nt_xent_z(op, z);
  detail::check_tau(op, tau);
  detail::check_scalar_out(op, "loss", loss);
  check_same_shape(op, "row_lse", row_lse.shape(), "expected (2N) from z", Shape{z.shape()[0]});
  check_same_shape(op, "znorm", znorm.shape(), "z", z.shape());
  detail::check_devices(op, loss.device(), {{"z", z}, {"row_lse", row_lse}, {"znorm", znorm}});
  if (loss.device().is_cuda())
    FOVEA_CUDA_CALL(cuda::nt_xent_forward(z, tau, loss, row_lse, znorm, detail::nt_xent_tensor_cores()));
  else cpu::nt_xent_forward(z, tau, loss, row_lse, znorm);
}

// nt_xent_backward: dz = d loss / d z * dloss, with p_kj = exp(s_kj - row_lse_k) (j != k):
//   dzhat_k = dloss / (2N tau) [sum_{j != k} (p_kj + p_jk) zhat_j - 2 zhat_pos(k)], then through the
//   normalisation: dz_k = (dzhat_k - zhat_k (zhat_k . dzhat_k)) / ||z_k|| (dzhat_k / 1e-12 when the
//   norm was clamped). z, znorm, row_lse as given to / saved by the forward; dz (2N, D), overwritten.
inline void nt_xent_backward(CView z, CView znorm, CView row_lse, float tau, float dloss, View dz) {
  const char* op = "nt_xent_backward";
  detail::check_nt_xent_z(op, z);
  detail::check_tau(op, tau);
  check_same_shape(op, "znorm", znorm.shape(), "z", z.shape());
  check_same_shape(op, "dz", dz.shape(), "z", z.shape());
  check_same_shape(op, "row_lse", row_lse.shape(), "expected (2N) from z", Shape{z.shape()[0]});
  detail::check_devices(op, dz.device(), {{"z", z}, {"row_lse", row_lse}, {"znorm", znorm}});
  if (dz.device().is_cuda())
    FOVEA_CUDA_CALL(cuda::nt_xent_backward(z, znorm, row_lse, tau, dloss, dz, detail::nt_xent_tensor_cores()));
  else cpu::nt_xent_backward(z, znorm, row_lse, tau, dloss, dz);
}

// contrastive_accuracy: NT-Xent retrieval accuracy. For each of the 2N rows, count the candidates
// j != i, pos(i) with zhat_i . zhat_j strictly greater than zhat_i . zhat_pos(i) (ties favour the
// positive); accuracy[0] = fraction of rows with count 0 (top-1), accuracy[1] = count < 5 (top-5),
// among the 2N - 1 candidates. znorm (2N, D) as saved by nt_xent_forward; accuracy (2).
inline void contrastive_accuracy(CView znorm, View accuracy) {
  const char* op = "contrastive_accuracy";
  detail::check_nt_xent_z(op, znorm);
  detail::check_accuracy_out(op, accuracy);
  detail::check_devices(op, accuracy.device(), {{"znorm", znorm}});
  if (accuracy.device().is_cuda()) FOVEA_CUDA_CALL(cuda::contrastive_accuracy(znorm, accuracy));
  else cpu::contrastive_accuracy(znorm, accuracy);
}

// infonce_forward: MoCo's InfoNCE with the positive at index 0.
//   qhat_i, khat_i: rows of q and k normalised as above (both normalised here);
//   logits_i = [qhat_i . khat_i, qhat_i . queue_0, ..., qhat_i . queue_{K-1}] / tau (the queue is used
//   as given: it holds normalised keys from earlier batches, see queue_enqueue);
//   row_lse_i = log sum exp(logits_i) over the K + 1 entries; loss = (1 / N) sum_i (row_lse_i - logits_i0).
//   q, k (N, D); queue (K, D), K >= 1; tau > 0; loss () or (1); row_lse (N), qnorm and knorm (N, D) saved.
inline void infonce_forward(CView q, CView k, CView queue, float tau, View loss, View row_lse, View qnorm,
                            View knorm) {
  const char* op = "infonce_forward";
  detail::check_embeddings(op, "q", q);
  check_same_shape(op, "k", k.shape(), "q", q.shape());
  detail::check_queue(op, q, queue);
  detail::check_tau(op, tau);
  detail::check_scalar_out(op, "loss", loss);
  check_same_shape(op, "row_lse", row_lse.shape(), "expected (N) from q", Shape{q.shape()[0]});
  check_same_shape(op, "qnorm", qnorm.shape(), "q", q.shape());
  check_same_shape(op, "knorm", knorm.shape(), "k", k.shape());
  detail::check_devices(op, loss.device(),
                        {{"q", q}, {"k", k}, {"queue", queue}, {"row_lse", row_lse}, {"qnorm", qnorm}, {"knorm", knorm}});
  if (loss.device().is_cuda()) FOVEA_CUDA_CALL(cuda::infonce_forward(q, k, queue, tau, loss, row_lse, qnorm, knorm));
  else cpu::infonce_forward(q, k, queue, tau, loss, row_lse, qnorm, knorm);
}

// infonce_backward: dq only. The key k gets no gradient (MoCo's stop-gradient: the key encoder is a
// momentum copy), nor does the queue. With p_ij = exp(logit_ij - row_lse_i):
//   dqhat_i = dloss / (N tau) [(p_i0 - 1) khat_i + sum_j p_i,j+1 queue_j], then through q's normalisation.
//   q (N, D) the forward input; qnorm, knorm, row_lse saved by the forward; queue the forward's queue
//   (unchanged: enqueue after the backward); dq (N, D), overwritten.
inline void infonce_backward(CView q, CView qnorm, CView knorm, CView queue, CView row_lse, float tau, float dloss,
                             View dq) {
  const char* op = "infonce_backward";
  detail::check_embeddings(op, "q", q);
  check_same_shape(op, "qnorm", qnorm.shape(), "q", q.shape());
  check_same_shape(op, "knorm", knorm.shape(), "q", q.shape());
  check_same_shape(op, "dq", dq.shape(), "q", q.shape());
  check_same_shape(op, "row_lse", row_lse.shape(), "expected (N) from q", Shape{q.shape()[0]});
  detail::check_queue(op, q, queue);
  detail::check_tau(op, tau);
  detail::check_devices(op, dq.device(),
                        {{"q", q}, {"qnorm", qnorm}, {"knorm", knorm}, {"queue", queue}, {"row_lse", row_lse}});
  if (dq.device().is_cuda()) FOVEA_CUDA_CALL(cuda::infonce_backward(q, qnorm, knorm, queue, row_lse, tau, dloss, dq));
  else cpu::infonce_backward(q, qnorm, knorm, queue, row_lse, tau, dloss, dq);
}

// infonce_accuracy: for each row, count queue entries with qhat_i . queue_j strictly greater than
// qhat_i . khat_i; accuracy[0] = fraction with count 0 (top-1), accuracy[1] = count < 5 (top-5), among
// the K + 1 candidates. qnorm, knorm (N, D) saved by the forward; queue (K, D); accuracy (2).
inline void infonce_accuracy(CView qnorm, CView knorm, CView queue, View accuracy) {
  const char* op = "infonce_accuracy";
  detail::check_embeddings(op, "qnorm", qnorm);
  check_same_shape(op, "knorm", knorm.shape(), "qnorm", qnorm.shape());
  detail::check_queue(op, qnorm, queue);
  detail::check_accuracy_out(op, accuracy);
  detail::check_devices(op, accuracy.device(), {{"qnorm", qnorm}, {"knorm", knorm}, {"queue", queue}});
  if (accuracy.device().is_cuda()) FOVEA_CUDA_CALL(cuda::infonce_accuracy(qnorm, knorm, queue, accuracy));
  else cpu::infonce_accuracy(qnorm, knorm, queue, accuracy);
}

// queue_enqueue: MoCo's ring buffer. queue[(head + i) mod K] = keys[i] for i < N, then
// head = (head + N) mod K (K need not be a multiple of N: a batch may wrap around the end).
//   queue (K, D); keys (N, D), 1 <= N <= K (normally knorm from infonce_forward); 0 <= head < K.
inline void queue_enqueue(View queue, CView keys, std::int64_t& head) {
  const char* op = "queue_enqueue";
  detail::check_embeddings(op, "keys", keys);
  FOVEA_CHECK(queue.shape().rank() == 2 && queue.shape()[1] == keys.shape()[1] && queue.shape()[0] >= keys.shape()[0],
              op, ": queue ", queue.shape().str(), " must be (K, D) with K >= N for keys ", keys.shape().str());
  const std::int64_t K = queue.shape()[0];
  FOVEA_CHECK(head >= 0 && head < K, op, ": head ", head, " outside [0, ", K, ") for queue ", queue.shape().str());
  check_same_device(op, "keys", keys.device(), "queue", queue.device());
  if (queue.device().is_cuda()) FOVEA_CUDA_CALL(cuda::queue_enqueue(queue, keys, head));
  else cpu::queue_enqueue(queue, keys, head);
  head = (head + keys.shape()[0]) % K;
}

// l2_normalize_rows: zn_i = z_i / max(||z_i||, 1e-12) (F.normalize(z, dim=1)). z, zn (rows, D).
inline void l2_normalize_rows(CView z, View zn) {
  detail::check_embeddings("l2_normalize_rows", "z", z);
  check_same_shape("l2_normalize_rows", "zn", zn.shape(), "z", z.shape());
  check_same_device("l2_normalize_rows", "z", z.device(), "zn", zn.device());
  if (zn.device().is_cuda()) FOVEA_CUDA_CALL(cuda::l2_normalize_rows(z, zn));
  else cpu::l2_normalize_rows(z, zn);
}

}  // namespace fovea
