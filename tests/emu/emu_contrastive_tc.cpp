// tests/emu/emu_contrastive_tc.cpp: the tensor-core NT-Xent kernels' device code
// (kernels/contrastive_tc.cuh, and the finish kernel of contrastive.cuh they reuse) run on the CPU by
// the emulation layer (emu_cuda.hpp), through a driver that mirrors tc_nt_xent_forward / backward's
// launches and scratch layout, against the CPU twin (fovea/cpu/contrastive.hpp) with the CUDA tests'
// TF32 tolerances. The PTX wrappers are emulated here: mma.sync from the PTX ISA's fragment tables,
// refusing operands that are not TF32 (so every operand must have been rounded); cp.async copies that
// land only when the issuing thread's cp.async.wait_group retires their group (so a missing wait reads
// NaN); ex2.approx as exp2 flushed to zero below 2^-126. Sizes cover one and two stages, 1 to 9
// column splits, one and two dim chunks, single- and multi-panel walks, D not a multiple of 4 and a
// misaligned znorm view, and the host's plan for two blocks per SM (one stage, the backward's
// 128-register instance), and the symmetric forward (1, 2, 3 and 5 row tiles, partial last tiles,
// tau 0.03, the D = 128 instance bitwise equal to the general one; tau 0.02 falls back to the split forward),
// and the backward finished in clusters (1, 3 and 8 splits, one and two blocks per SM: dz bitwise the
// finish kernel's; N = 225 has 8 splits by the host's rule). Argument `big` adds N = 257. Exit status 1
// on any failure.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "emu_cuda.hpp"
#include "fovea/core/env.hpp"
#include "fovea/cpu/contrastive.hpp"

namespace fovea::emu {
enum class PairMode { symmetric, queue };

__device__ __forceinline__ std::uint32_t tc_tf32(float x) {
  std::uint32_t u = std::bit_cast<std::uint32_t>(x);
  if ((u & 0x7f800000u) == 0x7f800000u) return u;  // inf, nan
  u += 0x1000u;                                    // half a TF32 ulp: ties away from zero
  return u & 0xffffe000u;
}
// The 8-byte store, refusing a misaligned address (the device would fault).
__device__ __forceinline__ void tc_store_pair(float* p, float a, float b) {
  if (reinterpret_cast<std::uintptr_t>(p) % 8 != 0) die("8-byte store to a misaligned address");
  p[0] = a;
  p[1] = b;
}
__device__ __forceinline__ void tc_mma(float (&d)[4], const std::uint32_t (&a)[4], std::uint32_t b0,
                                       std::uint32_t b1) {
  const int lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
  for (int e = 0; e < 4; ++e)
    if (a[e] & 0x1fffu) die("mma A operand is not TF32");
  if ((b0 | b1) & 0x1fffu) die("mma B operand is not TF32");
  Warp& w = emu_warp();
  auto& u = w.u[w.slot(static_cast<unsigned>(lane))];  // double-buffered: one barrier (emu_cuda.hpp)
  for (int e = 0; e < 4; ++e) u[lane][e] = a[e];
  u[lane][4] = b0;
  u[lane][5] = b1;
  w.bar.arrive_and_wait();
  // PTX ISA fragments of m16n8k8 .tf32: lane (g, t) holds A (g, t), (g + 8, t), (g, t + 4),
  // (g + 8, t + 4); B (k = t, n = g), (t + 4, g); C/D (g, 2t), (g, 2t + 1), (g + 8, 2t), (g + 8, 2t + 1)
  const auto A = [&u](int r, int k) {
    return std::bit_cast<float>(u[(r % 8) * 4 + k % 4][(r >= 8 ? 1 : 0) + (k >= 4 ? 2 : 0)]);
  };
  const auto B = [&u](int k, int c) { return std::bit_cast<float>(u[c * 4 + k % 4][k >= 4 ? 5 : 4]); };
  const int rr[4] = {g, g, g + 8, g + 8}, cc[4] = {2 * t, 2 * t + 1, 2 * t, 2 * t + 1};
  for (int e = 0; e < 4; ++e) {
    double s = 0.0;
    for (int k = 0; k < 8; ++k) s += static_cast<double>(A(rr[e], k)) * B(k, cc[e]);
    d[e] = static_cast<float>(d[e] + s);
  }
}
__device__ __forceinline__ float tc_exp2(float x) {
  const float y = std::exp2(x);
  return std::fpclassify(y) == FP_SUBNORMAL ? 0.0f : y;
}

#include "contrastive_tc_device.inc"
}  // namespace fovea::emu

using namespace fovea;
using namespace fovea::emu;
const float kNaN = std::numeric_limits<float>::quiet_NaN();

// Every launch here is threaded (barriers, shuffles, MMAs); each thread must leave no copy in flight.
static void launch(dim3 grid, std::size_t smem_bytes, const std::function<void()>& fn) {
  fovea::emu::launch(grid, 256, smem_bytes, true, [&] {
    cp_begin();
    fn();
    cp_check_drained();
  });
}

// The same for a launch in clusters of (1, cluster_y, 1) blocks.
static void launch_clusters(dim3 grid, unsigned cluster_y, std::size_t smem_bytes,
                            const std::function<void()>& fn) {
  fovea::emu::launch_clusters(grid, cluster_y, 256, smem_bytes, [&] {
    cp_begin();
    fn();
    cp_check_drained();
  });
}

static unsigned grid_for(std::int64_t needed) {
  const std::int64_t blocks = (needed + 255) / 256, cap = 132 * 16;
  return static_cast<unsigned>(std::max<std::int64_t>(1, std::min(blocks, cap)));
}

struct Run {
  std::vector<float> loss, lse, zn, dz;
};

// Mirrors tc_nt_xent_forward / tc_nt_xent_backward (kernels/contrastive_tc.cuh) with `resident` block
// slots; zn_offset floats in front of znorm make the backward's rows misaligned when odd.
// fixed: run the kernels compiled for D = kTcFixedDim (as the host does for that D) instead of the
// general ones. two_blocks: the host's plan for nt_xent_tc_blocks_per_sm() = 2 (one stage, twice the
// resident blocks; the backward's two-block instance only with fixed, else its default plan).
// sym: the symmetric forward (nt_xent_tc_forward_tiles() = symmetric) where the host would run it
// (sym_ran tells whether it did), else the split forward.
// cluster: the backward's finish in clusters (nt_xent_tc_backward_finish() = cluster) where the host
// would run it (D = kTcFixedDim, at most kTcMaxClusterSplits splits; cluster_ran tells whether it did).
// backward_splits > 0: the backward's column splits, in place of the host's rule (more than the column
// panels leaves some splits without panels: clusters of 8 at a size the emulator runs quickly).
static Run run_tc(const std::vector<float>& z, std::int64_t M, std::int64_t D, float tau, float dloss,
                  std::int64_t resident, int zn_offset, bool fixed, bool two_blocks = false, bool sym = false,
                  bool* sym_ran = nullptr, bool cluster = false, bool* cluster_ran = nullptr,
                  int backward_splits = 0) {
  if (fixed && D != kTcFixedDim) die("the fixed-D kernels need D = kTcFixedDim");
  const std::size_t limit = 232448;
  Run out;
  out.loss.assign(1, kNaN);
  out.lse.assign(M, kNaN);
  std::vector<float> zn_store(M * D + zn_offset + 4, kNaN);
  float* zn = zn_store.data() + zn_offset;
  out.dz.assign(M * D, kNaN);
  const float inv_tau = 1.0f / tau;
  const std::int64_t row_tiles = (M + kTcRows - 1) / kTcRows, col_tiles = (M + kTcCols - 1) / kTcCols;
  const float scale2 = kTcLog2e * inv_tau;
  const int stride = tc_stride(static_cast<int>(D));
  sym = sym && row_tiles <= kTcSymMaxTiles && scale2 <= kTcSymMaxScale2 &&
        tc_sym_smem_bytes(stride) + kTcStaticSmem <= limit;
  if (sym_ran) *sym_ran = sym;
  if (sym) {  // the symmetric forward, as tc_nt_xent_forward_symmetric
    const std::int64_t R = row_tiles;
    const std::int64_t copy = (M * D + 3) / 4 * 4;
    const std::int64_t terms_at = (copy + (R + 1) * M + 1) / 2 * 2;
    const std::int64_t n_counters = R + 1;
    std::vector<float4> scratch_store((terms_at + 2 * R + n_counters + 3) / 4 + 1,
                                      float4{kNaN, kNaN, kNaN, kNaN});
    float* scratch = reinterpret_cast<float*>(scratch_store.data());
    float* zt = scratch;
    float* part = zt + copy;
    float* s_pos = part + R * M;
    auto* tile_terms = reinterpret_cast<double*>(scratch + terms_at);
    auto* counters = reinterpret_cast<unsigned*>(scratch + terms_at + 2 * R);
    launch(dim3(grid_for(M * 32)), 0,
           [&] { tc_normalize_kernel(z.data(), M, D, M / 2, inv_tau, zn, zt, s_pos, counters, n_counters); });
    launch(dim3(static_cast<unsigned>(tc_sym_blocks(R))), tc_sym_smem_bytes(stride), [&] {
      const auto kernel = fixed ? tc_lse_sym_kernel<kTcFixedDim> : tc_lse_sym_kernel<0>;
      kernel(zt, M, D, tc_padded(static_cast<int>(D)), stride, scale2, static_cast<int>(R), part, s_pos,
             tile_terms, counters, out.lse.data(), out.loss.data());
    });
    // every row tile got R contributions, and each tile's merge arrived once
    for (std::int64_t c = 0; c < n_counters; ++c)
      if (counters[c] != static_cast<unsigned>(R)) die("symmetric forward: arrival count");
    std::printf("  forward: symmetric, %lld row tiles, %lld blocks\n", static_cast<long long>(R),
                static_cast<long long>(tc_sym_blocks(R)));
  } else {  // forward
    const TcLayout l = tc_layout(D, limit, false, two_blocks ? 1 : 2);
    const std::size_t smem = tc_smem_bytes(l.stride, l.stages, false);
    const int splits = tc_splits(row_tiles, col_tiles, two_blocks ? 2 * resident : resident);
    const std::int64_t copy = (M * D + 3) / 4 * 4;
    const std::int64_t terms_at = (copy + (2 * splits + 1) * M + 1) / 2 * 2;
    const std::int64_t n_counters = row_tiles + 1;
    std::vector<float4> scratch_store((terms_at + 2 * row_tiles + n_counters + 3) / 4 + 1,
                                      float4{kNaN, kNaN, kNaN, kNaN});
    float* scratch = reinterpret_cast<float*>(scratch_store.data());
    float* zt = scratch;
    float* part_m = zt + copy;
    float* part_l = part_m + splits * M;
    float* s_pos = part_l + splits * M;
    auto* tile_terms = reinterpret_cast<double*>(scratch + terms_at);
    auto* counters = reinterpret_cast<unsigned*>(scratch + terms_at + 2 * row_tiles);
    launch(dim3(grid_for(M * 32)), 0,
           [&] { tc_normalize_kernel(z.data(), M, D, M / 2, inv_tau, zn, zt, s_pos, counters, n_counters); });
    launch(dim3(row_tiles, splits), smem, [&] {
      const auto kernel = fixed ? tc_lse_partial_kernel<kTcFixedDim> : tc_lse_partial_kernel<0>;
      kernel(zt, M, D, l.padded, l.stride, l.stages, kTcLog2e * inv_tau, col_tiles, part_m, part_l, s_pos,
             tile_terms, counters, out.lse.data(), out.loss.data());
    });
    // every split block of each row tile arrived once, and every row tile's last block once
    for (std::int64_t c = 0; c < n_counters; ++c)
      if (counters[c] != static_cast<unsigned>(c < row_tiles ? splits : row_tiles)) die("arrival count");
    std::printf("  forward: %lld row tiles x %d splits, %d stage(s)\n", static_cast<long long>(row_tiles),
                splits, l.stages);
  }
  if (!sym) {  // backward (the symmetric forward's runs check the forward alone: the backward is the same)
    const bool two = two_blocks && fixed;
    const TcLayout l = tc_layout(D, limit, true, two ? 1 : 2);
    const std::size_t smem = tc_smem_bytes(l.stride, l.stages, true);
    const std::int64_t dim_chunks = (D + kTcGradDims - 1) / kTcGradDims;
    const int splits = backward_splits > 0
                           ? backward_splits
                           : tc_splits(row_tiles * dim_chunks, col_tiles, two ? 2 * resident : resident);
    const float scale = dloss * inv_tau / static_cast<float>(M);
    cluster = cluster && fixed && dim_chunks == 1 && splits <= kTcMaxClusterSplits;
    if (cluster_ran) *cluster_ran = cluster;
    if (cluster) {  // as tc_nt_xent_backward with a clustered plan: one launch, no partials in memory
      launch_clusters(dim3(row_tiles, splits, 1), static_cast<unsigned>(splits), smem, [&] {
        const auto kernel =
            two ? tc_grad_partial_kernel<kTcFixedDim, 2, true> : tc_grad_partial_kernel<kTcFixedDim, 1, true>;
        kernel(zn, out.lse.data(), M, D, l.padded, l.stride, l.stages, kTcLog2e * inv_tau, col_tiles, nullptr,
               z.data(), M / 2, scale, out.dz.data());
      });
    } else {
      std::vector<float> part(splits * M * D, kNaN);
      launch(dim3(row_tiles, splits, dim_chunks), smem, [&] {
        const auto kernel = two     ? tc_grad_partial_kernel<kTcFixedDim, 2>
                            : fixed ? tc_grad_partial_kernel<kTcFixedDim>
                                    : tc_grad_partial_kernel<0>;
        kernel(zn, out.lse.data(), M, D, l.padded, l.stride, l.stages, kTcLog2e * inv_tau, col_tiles,
               part.data(), nullptr, 0, 0.0f, nullptr);
      });
      launch(dim3(grid_for(M * 32)), 0, [&] {
        ct_grad_finish_kernel<PairMode::symmetric>(part.data(), splits, M, D, z.data(), zn, zn, M / 2,
                                                   out.lse.data(), inv_tau, scale, out.dz.data());
      });
    }
    std::printf("  backward: %lld row tiles x %d splits x %lld dim chunks, %d stage(s)%s\n",
                static_cast<long long>(row_tiles), splits, static_cast<long long>(dim_chunks), l.stages,
                cluster ? ", finished in clusters" : "");
  }
  out.zn.assign(zn, zn + M * D);
  return out;
}

static bool close_all(const char* what, const std::vector<float>& got, const std::vector<float>& want,
                      double atol, double rtol) {
  double worst = 0.0;
  std::size_t bad = 0;
  for (std::size_t i = 0; i < got.size(); ++i) {
    const double e = std::fabs(static_cast<double>(got[i]) - want[i]);
    const double lim = atol + rtol * std::fabs(want[i]);
    if (!(e <= lim)) ++bad;
    worst = std::max(worst, std::isfinite(e) ? e / lim : 1e30);
  }
  std::printf("  %-6s worst error / tolerance %.3f%s\n", what, worst, bad ? "  FAIL" : "");
  return bad == 0;
}

int main(int argc, char** argv) {
  struct Case {
    std::int64_t N, D, resident;
    float tau;
    int zn_offset;
    int sym;  // 1: also the symmetric forward; 2: only the symmetric forward (no split run)
    bool lean = false;  // only the default run against the CPU and the clustered finish against it
  };
  std::vector<Case> cases = {{1, 3, 132, 0.5f, 0, 1},
                             {3, 3, 132, 0.1f, 1, 0},
                             {8, 64, 132, 0.5f, 0, 0},
                             {70, 128, 6, 0.2f, 0, 1},
                             {70, 128, 6, 0.2f, 1, 0},
                             {40, 200, 4, 0.1f, 0, 0},
                             {45, 129, 5, 0.5f, 0, 0},
                             {70, 128, 1, 0.2f, 1, 0},
                             {100, 200, 2, 0.1f, 0, 0},
                             {100, 7, 3, 0.5f, 0, 1},
                             {300, 64, 132, 0.2f, 0, 1},  // 10 splits
                             // the symmetric forward alone: 1 and 3 row tiles, and below its tau range
                             {64, 128, 132, 0.03f, 0, 2},
                             {130, 128, 132, 0.07f, 0, 2},
                             {40, 128, 132, 0.02f, 0, 2}};
  cases.push_back({225, 128, 32, 0.2f, 0, 0, true});  // 8 splits by the host's rule (clusters of 8)
  if (argc > 1 && std::string(argv[1]) == "big") cases.push_back({257, 128, 132, 0.2f, 0, 1});
  bool ok = true;
  int clustered_runs = 0;
  for (const Case& c : cases) {
    const std::int64_t M = 2 * c.N;
    std::printf("N %lld D %lld tau %g resident %lld znorm offset %d\n", static_cast<long long>(c.N),
                static_cast<long long>(c.D), c.tau, static_cast<long long>(c.resident), c.zn_offset);
    std::mt19937 rng(40 + c.N + c.D);
    std::normal_distribution<float> dist;
    std::vector<float> z(M * c.D);
    for (float& v : z) v = dist(rng);
    const float dloss = 0.75f;
    Tensor zc = Tensor::from(z, {M, c.D}), loss(Shape{}), lse({M}), zn({M, c.D}), dz({M, c.D});
    cpu::nt_xent_forward(zc, c.tau, loss, lse, zn);
    cpu::nt_xent_backward(zc, zn, lse, c.tau, dloss, dz);
    const bool fixed = c.D == kTcFixedDim;  // as the host chooses
    const auto same = [](const Run& a, const Run& b) {
      return a.loss == b.loss && a.lse == b.lse && a.zn == b.zn && a.dz == b.dz;
    };
    const Run r = c.sym == 2 ? Run{} : run_tc(z, M, c.D, c.tau, dloss, c.resident, c.zn_offset, fixed);
    if (c.sym != 2 && c.zn_offset != 0) {  // the 4-byte staging path must give the 16-byte path's bits
      const bool equal = same(r, run_tc(z, M, c.D, c.tau, dloss, c.resident, 0, fixed));
      std::printf("  misaligned znorm %s the aligned run bitwise\n", equal ? "matches" : "DIFFERS FROM");
      ok &= equal;
    }
    if (c.sym != 2 && fixed && !c.lean) {  // the D = 128 kernels must give the general kernels' bits
      const bool equal = same(r, run_tc(z, M, c.D, c.tau, dloss, c.resident, c.zn_offset, false));
      std::printf("  fixed-D kernels %s the general kernels bitwise\n", equal ? "match" : "DIFFER FROM");
      ok &= equal;
    }
    double min_norm = 1e30;
    for (std::int64_t i = 0; i < M; ++i) {
      double ss = 0.0;
      for (std::int64_t d = 0; d < c.D; ++d) ss += static_cast<double>(z[i * c.D + d]) * z[i * c.D + d];
      min_norm = std::min(min_norm, std::sqrt(ss));
    }
    const double unit = dloss / (static_cast<double>(M) * c.tau * min_norm);
    const auto check = [&](const Run& run) {
      ok &= close_all("loss", run.loss, loss.to_vector(), 1e-3 / c.tau, 1e-3);
      ok &= close_all("lse", run.lse, lse.to_vector(), 3e-4 / c.tau, 3e-4 / c.tau);
      ok &= close_all("zn", run.zn, zn.to_vector(), 1e-7, 1e-5);
      ok &= close_all("dz", run.dz, dz.to_vector(), 2e-3 * unit, 1e-2);
    };
    if (c.sym != 2) check(r);
    bool sym_ran = false;
    const Run sym =
        c.sym == 0 ? Run{} : run_tc(z, M, c.D, c.tau, dloss, c.resident, c.zn_offset, fixed, false, true, &sym_ran);
    if (c.sym != 0 && sym_ran) {
      std::printf(" symmetric forward:\n");
      ok &= close_all("loss", sym.loss, loss.to_vector(), 1e-3 / c.tau, 1e-3);
      ok &= close_all("lse", sym.lse, lse.to_vector(), 3e-4 / c.tau, 3e-4 / c.tau);
      ok &= close_all("zn", sym.zn, zn.to_vector(), 1e-7, 1e-5);
      if (fixed && c.zn_offset == 0) {  // the D = 128 instance gives the general one's bits
        const Run general = run_tc(z, M, c.D, c.tau, dloss, c.resident, c.zn_offset, false, false, true);
        const bool equal = sym.loss == general.loss && sym.lse == general.lse && sym.zn == general.zn;
        std::printf("  symmetric forward, fixed-D kernel %s the general kernel bitwise\n",
                    equal ? "matches" : "DIFFERS FROM");
        ok &= equal;
      }
    } else if (c.sym != 0) {  // the split forward ran instead: its forward outputs
      std::printf(" symmetric forward: not applicable (the split forward runs)\n");
      ok &= close_all("lse", sym.lse, lse.to_vector(), 3e-4 / c.tau, 3e-4 / c.tau);
    }
    if (c.sym != 2 && !c.lean &&
        (fixed || c.N >= 100)) {  // two blocks per SM: other splits and stages, the same tolerances
      std::printf(" two blocks per SM:\n");
      const Run two = run_tc(z, M, c.D, c.tau, dloss, c.resident, c.zn_offset, fixed, true);
      check(two);
      if (fixed) {  // the clustered finish gives the two-block plan's bits too
        bool ran = false;
        const Run cl =
            run_tc(z, M, c.D, c.tau, dloss, c.resident, c.zn_offset, fixed, true, false, nullptr, true, &ran);
        const bool equal = same(cl, two);
        std::printf("  finish in clusters %s the finish kernel bitwise%s\n",
                    equal ? "matches" : "DIFFERS FROM",
                    ran ? "" : " (not applicable: it ran the finish kernel)");
        ok &= equal;
      }
    }
    if (c.sym != 2 && fixed) {  // the backward's finish in clusters gives the finish kernel's bits
      bool ran = false;
      const Run cl =
          run_tc(z, M, c.D, c.tau, dloss, c.resident, c.zn_offset, fixed, false, false, nullptr, true, &ran);
      const bool equal = same(cl, r);
      std::printf("  finish in clusters %s the finish kernel bitwise%s\n", equal ? "matches" : "DIFFERS FROM",
                  ran ? "" : " (not applicable: it ran the finish kernel)");
      ok &= equal;
      clustered_runs += ran ? 1 : 0;
      if (!c.lean && c.zn_offset == 0 && c.N == 70) {  // clusters of 8 (3 column panels: 5 splits walk none)
        const Run plain8 = run_tc(z, M, c.D, c.tau, dloss, c.resident, 0, fixed, false, false, nullptr, false,
                                  nullptr, kTcMaxClusterSplits);
        check(plain8);
        const Run cl8 = run_tc(z, M, c.D, c.tau, dloss, c.resident, 0, fixed, false, false, nullptr, true,
                               &ran, kTcMaxClusterSplits);
        const bool equal8 = ran && same(cl8, plain8);
        std::printf("  8 splits: finish in clusters %s the finish kernel bitwise\n",
                    equal8 ? "matches" : "DIFFERS FROM");
        ok &= equal8;
        clustered_runs += ran ? 1 : 0;
      }
    }
  }
  if (clustered_runs < 3) {  // the cases must exercise the clustered finish
    std::printf("only %d runs finished in clusters\n", clustered_runs);
    ok = false;
  }
  std::printf(ok ? "ALL PASSED\n" : "FAILURES\n");
  return ok ? 0 : 1;
}
