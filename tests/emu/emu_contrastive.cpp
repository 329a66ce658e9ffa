// tests/emu/emu_contrastive.cpp: the fp32 contrastive kernels' device code (kernels/contrastive.cuh:
// NT-Xent and InfoNCE forward and backward, the retrieval accuracy, the MoCo queue) run on the CPU by
// the emulation layer (emu_cuda.hpp), through a driver that mirrors ct_forward / ct_backward /
// ct_accuracy's launches, scratch layout and split rule (ct_grid with `sms` multiprocessors, small so
// that small inputs still split their columns), against the CPU twins (fovea/cpu/contrastive.hpp)
// with the op harness's CUDA tolerances (tests/cases/loss.hpp). Exit status 1 on any failure.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "emu_cuda.hpp"
#include "fovea/cpu/contrastive.hpp"

namespace fovea::emu {
#include "contrastive_device.inc"
}  // namespace fovea::emu

using namespace fovea;
using namespace fovea::emu;

namespace {

const float kNaN = std::numeric_limits<float>::quiet_NaN();
int failures = 0;

unsigned grid_for(std::int64_t needed) {
  const std::int64_t blocks = (needed + kBlock - 1) / kBlock, cap = 132 * 16;
  return static_cast<unsigned>(std::max<std::int64_t>(1, std::min(blocks, cap)));
}

// ct_grid: about two waves of `sms` multiprocessors.
struct Grid {
  std::int64_t row_tiles, col_tiles, dim_chunks;
  int splits;
};
Grid ct_grid(std::int64_t rows, std::int64_t cols, std::int64_t dim_chunks, int sms) {
  Grid g{(rows + kCtTile - 1) / kCtTile, (cols + kCtTile - 1) / kCtTile, dim_chunks, 1};
  const std::int64_t per_split = g.row_tiles * dim_chunks, want = (2 * sms + per_split - 1) / per_split;
  g.splits = static_cast<int>(std::clamp<std::int64_t>(want, 1, std::min<std::int64_t>(g.col_tiles, 65535)));
  return g;
}

void normalize(const std::vector<float>& z, std::int64_t rows, std::int64_t D, std::vector<float>& zn) {
  zn.assign(z.size(), kNaN);
  launch(dim3(grid_for(rows * 32)), kBlock, 0, true,
         [&] { ct_normalize_kernel(z.data(), rows, D, zn.data()); });
}

// ct_forward: loss and row_lse of normalised a (rows, D) against b (cols, D).
template <PairMode kMode>
void forward(const std::vector<float>& a, std::int64_t rows, const std::vector<float>& b, std::int64_t cols,
             std::int64_t D, std::int64_t shift, const std::vector<float>& b_pos, float tau, int sms,
             std::vector<float>& loss, std::vector<float>& lse) {
  const Grid g = ct_grid(rows, cols, 1, sms);
  std::vector<float> part_m(g.splits * rows, kNaN), part_l(g.splits * rows, kNaN), s_pos(rows, kNaN);
  const float inv_tau = 1.0f / tau;
  loss.assign(1, kNaN);
  lse.assign(rows, kNaN);
  launch(dim3(grid_for(rows)), kBlock, 0, false,
         [&] { ct_positive_kernel(a.data(), b_pos.data(), rows, D, shift, inv_tau, s_pos.data()); });
  launch(dim3(g.row_tiles, g.splits), kCtThreads, 0, true, [&] {
    ct_lse_partial_kernel<kMode>(a.data(), rows, b.data(), cols, D, inv_tau, g.col_tiles, part_m.data(),
                                 part_l.data());
  });
  launch(dim3(1), kCtReduceThreads, 0, true, [&] {
    ct_lse_combine_kernel(part_m.data(), part_l.data(), g.splits, rows, s_pos.data(),
                          kMode == PairMode::queue, lse.data(), loss.data());
  });
}

// ct_backward: dz of rows z (rows, D) whose normalised rows are a.
template <PairMode kMode>
void backward(const std::vector<float>& z, const std::vector<float>& a, std::int64_t rows,
              const std::vector<float>& b, std::int64_t cols, std::int64_t D, const std::vector<float>& other,
              std::int64_t shift, const std::vector<float>& lse, float tau, float dloss, int sms,
              std::vector<float>& dz) {
  const Grid g = ct_grid(rows, cols, (D + kCtTileD - 1) / kCtTileD, sms);
  std::vector<float> part(g.splits * rows * D, kNaN);
  const float inv_tau = 1.0f / tau;
  dz.assign(rows * D, kNaN);
  launch(dim3(g.row_tiles, g.splits, g.dim_chunks), kCtThreads, kCtGradSmemBytes, true, [&] {
    ct_grad_partial_kernel<kMode>(a.data(), rows, b.data(), cols, D, inv_tau, lse.data(), g.col_tiles,
                                  part.data());
  });
  const float scale = dloss * inv_tau / static_cast<float>(rows);
  launch(dim3(grid_for(rows * 32)), kBlock, 0, true, [&] {
    ct_grad_finish_kernel<kMode>(part.data(), g.splits, rows, D, z.data(), a.data(), other.data(), shift,
                                 lse.data(), inv_tau, scale, dz.data());
  });
}

// ct_accuracy: top-1 / top-5 retrieval accuracy.
template <PairMode kMode>
std::vector<float> accuracy(const std::vector<float>& a, std::int64_t rows, const std::vector<float>& b,
                            std::int64_t cols, std::int64_t D, const std::vector<float>& b_pos,
                            std::int64_t shift, int sms) {
  const Grid g = ct_grid(rows, cols, 1, sms);
  std::vector<float> counts(g.splits * rows, kNaN), s_pos(rows, kNaN), acc(2, kNaN);
  launch(dim3(grid_for(rows)), kBlock, 0, false,
         [&] { ct_positive_kernel(a.data(), b_pos.data(), rows, D, shift, 1.0f, s_pos.data()); });
  launch(dim3(g.row_tiles, g.splits), kCtThreads, 0, true, [&] {
    ct_count_partial_kernel<kMode>(a.data(), rows, b.data(), cols, D, shift, s_pos.data(), g.col_tiles,
                                   counts.data());
  });
  launch(dim3(1), kCtReduceThreads, 0, true,
         [&] { ct_accuracy_combine_kernel(counts.data(), g.splits, rows, acc.data()); });
  return acc;
}

void compare(const std::string& what, const std::vector<float>& got, const std::vector<float>& want,
             double atol, double rtol) {
  std::size_t bad = 0;
  double worst = 0.0;
  for (std::size_t i = 0; i < want.size(); ++i) {
    const double e = std::fabs(static_cast<double>(got[i]) - want[i]), lim = atol + rtol * std::fabs(want[i]);
    if (!(e <= lim)) ++bad;
    worst = std::max(worst, std::isfinite(e) ? e / lim : 1e30);
  }
  std::printf(
      "%-40s %s: worst error / tolerance %.3f%s\n", what.c_str(), bad ? "FAIL" : "ok", worst,
      want.size() == 2
          ? (" (top-1 " + std::to_string(want[0]) + ", top-5 " + std::to_string(want[1]) + ")").c_str()
          : "");
  failures += bad != 0;
}

std::vector<float> randn(std::int64_t n, std::uint64_t seed) {
  std::mt19937_64 gen(seed);
  std::normal_distribution<float> d;
  std::vector<float> v(static_cast<std::size_t>(n));
  for (float& x : v) x = d(gen);
  return v;
}

std::vector<float> get(const Tensor& t) { return t.to_vector(); }

void nt_xent_case(std::int64_t N, std::int64_t D, float tau, int sms) {
  const std::int64_t M = 2 * N;
  const std::string name =
      "nt_xent N" + std::to_string(N) + " D" + std::to_string(D) + " sms" + std::to_string(sms);
  // second view = first + noise: positives rank high but not always first (accuracies strictly between
  // 0 and 1, so the count reduction is exercised)
  std::vector<float> z = randn(M * D, 7 + N + D);
  for (std::int64_t e = N * D; e < M * D; ++e) z[e] = z[e - N * D] + 1.5f * z[e];
  const float dloss = 0.75f;
  Tensor zc = Tensor::from(z, {M, D}), loss(Shape{}), lse({M}), zn({M, D}), dz({M, D}), acc({2});
  cpu::nt_xent_forward(zc, tau, loss, lse, zn);
  cpu::nt_xent_backward(zc, zn, lse, tau, dloss, dz);
  cpu::contrastive_accuracy(zn, acc);
  std::vector<float> ezn, eloss, emu_lse, edz;
  normalize(z, M, D, ezn);
  forward<PairMode::symmetric>(ezn, M, ezn, M, D, N, ezn, tau, sms, eloss, emu_lse);
  backward<PairMode::symmetric>(z, ezn, M, ezn, M, D, ezn, N, emu_lse, tau, dloss, sms, edz);
  compare(name + " znorm", ezn, get(zn), 1e-6, 1e-5);
  compare(name + " loss", eloss, get(loss), 2e-5, 1e-4);
  compare(name + " row_lse", emu_lse, get(lse), 2e-5, 1e-4);
  compare(name + " dz", edz, get(dz), 2e-5, 1e-4);
  compare(name + " accuracy", accuracy<PairMode::symmetric>(ezn, M, ezn, M, D, ezn, N, sms), get(acc),
          1.01 / static_cast<double>(M), 0.0);  // a near-tie may flip one row
}

void infonce_case(std::int64_t N, std::int64_t K, std::int64_t D, float tau, int sms) {
  const std::string name =
      "infonce N" + std::to_string(N) + " K" + std::to_string(K) + " D" + std::to_string(D);
  std::vector<float> q = randn(N * D, 3 + N), k = randn(N * D, 4 + N), raw = randn(K * D, 5 + K);
  for (std::int64_t e = 0; e < N * D; ++e) k[e] = q[e] + 1.5f * k[e];
  Tensor queue({K, D});
  cpu::l2_normalize_rows(Tensor::from(raw, {K, D}), queue);
  const std::vector<float> qv = get(queue);
  const float dloss = 0.75f;
  Tensor qc = Tensor::from(q, {N, D}), kc = Tensor::from(k, {N, D}), loss(Shape{}), lse({N}), qn({N, D}),
         kn({N, D}), dq({N, D}), acc({2});
  cpu::infonce_forward(qc, kc, queue, tau, loss, lse, qn, kn);
  cpu::infonce_backward(qc, qn, kn, queue, lse, tau, dloss, dq);
  cpu::infonce_accuracy(qn, kn, queue, acc);
  std::vector<float> eqn, ekn, eloss, emu_lse, edq;
  normalize(q, N, D, eqn);
  normalize(k, N, D, ekn);
  forward<PairMode::queue>(eqn, N, qv, K, D, 0, ekn, tau, sms, eloss, emu_lse);
  backward<PairMode::queue>(q, eqn, N, qv, K, D, ekn, 0, emu_lse, tau, dloss, sms, edq);
  compare(name + " loss", eloss, get(loss), 2e-5, 1e-4);
  compare(name + " row_lse", emu_lse, get(lse), 2e-5, 1e-4);
  compare(name + " dq", edq, get(dq), 2e-5, 1e-4);
  compare(name + " accuracy", accuracy<PairMode::queue>(eqn, N, qv, K, D, ekn, 0, sms), get(acc),
          1.01 / static_cast<double>(N), 0.0);
}

void enqueue_case(std::int64_t K, std::int64_t N, std::int64_t D, std::int64_t head) {
  std::vector<float> queue = randn(K * D, 11), keys = randn(N * D, 12);
  Tensor want = Tensor::from(queue, {K, D});
  cpu::queue_enqueue(want, Tensor::from(keys, {N, D}), head);
  launch(dim3(grid_for(N * D)), kBlock, 0, false,
         [&] { ct_enqueue_kernel(queue.data(), K, keys.data(), N, D, head); });
  compare("enqueue K" + std::to_string(K) + " N" + std::to_string(N) + " head " + std::to_string(head), queue,
          get(want), 0.0, 0.0);
}

}  // namespace

int main() {
  nt_xent_case(1, 2, 0.5f, 4);     // two rows
  nt_xent_case(3, 3, 0.1f, 4);     // one tile, D below a chunk
  nt_xent_case(40, 33, 0.2f, 2);   // two row tiles, a split per column tile
  nt_xent_case(37, 129, 0.5f, 1);  // two gradient dim chunks
  nt_xent_case(9, 300, 0.5f, 2);   // D past the finish kernel's register cache
  infonce_case(5, 7, 33, 0.2f, 4);
  infonce_case(67, 130, 129, 0.2f, 2);  // two row tiles, three column tiles, two dim chunks
  enqueue_case(16, 5, 3, 14);           // wraps around the end
  std::printf("%s\n", failures ? "FAILURES" : "all ok");
  return failures ? 1 : 0;
}
