// kernels/contrastive_tc.cuh: NT-Xent's similarity tiles on tensor cores (TF32 mma.sync, fp32
// accumulation), the alternative to the fp32 tiles of contrastive.cuh that nt_xent_kernel() selects
// (ops/contrastive.hpp; design and precision in docs/losses.md). Included by contrastive.cuh after its
// helpers: this path reuses the finish kernel (positive term and the normalisation's backward); only
// the (2N)^2 work, the normalisation and the merge of the forward's partials differ. Four launches
// for a forward + backward: normalise, forward partials (whose last blocks merge them into row_lse
// and the loss), backward partials, finish; each a programmatic dependent launch (common.cuh,
// launch_dependent) on Hopper, so the next launch overlaps the tail of the one before it.
//
// A block of 8 warps owns 128 rows of zhat (warp w: rows 16w .. 16w + 15), staged whole (all D dims,
// rounded to TF32: the forward's normalisation writes a rounded copy, the backward rounds znorm in
// shared memory as it arrives) in shared memory, and walks 64-row panels of zhat (the
// columns of S = zhat zhatᵀ) that cp.async double-buffers. Each warp computes its 16 x 64 slice of S
// with m16n8k8 MMAs reading both operands from shared memory.
// Forward: the slice folds into a base-2 online log-sum-exp per row (the 4 lanes holding a row merge
// with shuffles); (max, sum) per row and column split go to scratch, and the last split block of a
// row tile to finish (an atomic arrival counter) merges them in split order.
// Backward: the slice becomes G = exp(s - lse_i) + exp(s - lse_j) (P + Pᵀ) in registers, and that
// accumulator fragment is already the A operand of the next MMA: lane (g, t) holds G columns 2t and
// 2t + 1 of each 8-column group, so A's k index t stands for column 2t and t + 4 for column 2t + 1,
// and the B operand (the column panel's rows, already in shared memory) is read with the same
// permutation. dA += G Z accumulates 16 rows x 128 dims per warp in registers, with no shared-memory
// round trip for G.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <tuple>

#include "common.cuh"

namespace fovea::cuda::detail {

// ---- PTX wrappers (sm_80 and later; the host side refuses older devices) ----

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
#define FOVEA_TC_UNSUPPORTED_ARCH 1
#endif

// x rounded to TF32 (10-bit mantissa, round to nearest, ties away from zero), as a valid TF32 pattern.
__device__ __forceinline__ std::uint32_t tc_tf32(float x) {
  std::uint32_t r = 0;
#ifdef FOVEA_TC_UNSUPPORTED_ARCH
  __trap();
#else
  asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(r) : "f"(x));
#endif
  return r;
}

// d += a b for one m16n8k8 TF32 tile (fragment layouts in the PTX ISA, "mma.m16n8k8 .tf32").
__device__ __forceinline__ void tc_mma(float (&d)[4], const std::uint32_t (&a)[4], std::uint32_t b0,
                                       std::uint32_t b1) {
#ifdef FOVEA_TC_UNSUPPORTED_ARCH
  __trap();
#else
  asm("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
#endif
}

// 2^x (MUFU.EX2, ~2 ulp; results below 2^-126 flush to zero, which only drops negligible terms).
__device__ __forceinline__ float tc_exp2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}

#undef FOVEA_TC_UNSUPPORTED_ARCH

// One 8-byte store of (a, b) at p, which must be 8-byte aligned (the emulator checks that).
__device__ __forceinline__ void tc_store_pair(float* p, float a, float b) {
  *reinterpret_cast<float2*>(p) = make_float2(a, b);
}

// ---- tiles ----

constexpr int kTcRows = 128;  // rows of zhat per block (8 warps x 16)
constexpr int kTcCols = 64;   // columns of S (rows of zhat) per panel
constexpr int kTcThreads = 256;
constexpr int kTcNTiles = kTcCols / 8;        // 8-column MMA tiles of a warp's S slice
constexpr int kTcGradDims = 128;              // dims of dA per block in the backward
constexpr int kTcDimTiles = kTcGradDims / 8;  // 8-dim MMA tiles of a warp's dA slice
constexpr std::int64_t kTcMaxDim = 256;       // larger D runs on the fp32 kernels
constexpr int kTcMaxSplits = 64;
constexpr unsigned kTcMergeBatch = 8;  // split partials the forward's merge loads at once
constexpr int kTcNormChunks = 2;  // float4 chunks of 128 dims per row that tc_normalize_kernel vectorises
constexpr float kTcLog2e = 1.4426950408889634f;
constexpr float kTcLn2 = 0.6931471805599453f;
constexpr std::size_t kTcStaticSmem = 256;  // bytes of static shared memory the kernels may declare

// Shared-memory layout for row length D: the A panel (kTcRows rows) then `stages` column panels
// (kTcCols rows each) of `stride` floats, then (backward) kTcCols column lse values per stage.
// padded: D rounded up to the MMA's k = 8 (zero-filled dims). stride: D rounded up to 32, plus 4, so
// fragment loads (8 rows x 4 dims, or 4 rows x 8 dims) hit 32 distinct banks and rows stay 16-byte
// aligned. stages = 0: not even one panel fits.
struct TcLayout {
  int padded = 0;
  int stride = 0;
  int stages = 0;
};

constexpr int tc_padded(int D) { return (D + 7) / 8 * 8; }
constexpr int tc_stride(int D) { return (D + 31) / 32 * 32 + 4; }

// The row length the kernels are compiled for besides the general one (kD = 0: D, padded and stride
// from the arguments): SimCLR's and MoCo's projection size.
constexpr int kTcFixedDim = 128;

inline std::size_t tc_smem_bytes(int stride, int stages, bool with_lse) {
  const std::size_t panel =
      static_cast<std::size_t>(kTcCols) * (static_cast<std::size_t>(stride) + (with_lse ? 1 : 0));
  return sizeof(float) *
         (static_cast<std::size_t>(kTcRows) * stride + static_cast<std::size_t>(stages) * panel);
}

// max_stages: 2, or 1 to halve the column panels' shared memory (two blocks per SM, see
// nt_xent_tc_blocks_per_sm()).
inline TcLayout tc_layout(std::int64_t D, std::size_t smem_limit, bool with_lse, int max_stages = 2) {
  TcLayout l;
  if (D < 1 || D > kTcMaxDim) return l;
  l.padded = tc_padded(static_cast<int>(D));
  l.stride = tc_stride(static_cast<int>(D));
  for (int s = std::min(max_stages, 2); s >= 1 && l.stages == 0; --s)
    if (tc_smem_bytes(l.stride, s, with_lse) + kTcStaticSmem <= smem_limit) l.stages = s;
  return l;
}

// Column splits per row tile: the count in [1, min(col_tiles, kTcMaxSplits)] that keeps `resident`
// block slots busiest (blocks_per_split x splits blocks, each walking ceil(col_tiles / splits)
// panels, in waves); a larger count must gain 2 % to win (it costs partial results).
inline int tc_splits(std::int64_t blocks_per_split, std::int64_t col_tiles, std::int64_t resident) {
  int best = 1;
  double best_use = 0.0;
  const std::int64_t most = std::min<std::int64_t>(col_tiles, kTcMaxSplits);
  for (std::int64_t s = 1; s <= most; ++s) {
    const std::int64_t blocks = blocks_per_split * s;
    const std::int64_t waves = (blocks + resident - 1) / resident;
    const std::int64_t steps = (col_tiles + s - 1) / s;
    const double use =
        static_cast<double>(blocks_per_split * col_tiles) / static_cast<double>(waves * steps * resident);
    if (use > best_use * 1.02) {
      best = static_cast<int>(s);
      best_use = use;
    }
  }
  return best;
}

// Column panels [begin, end) of split blockIdx.y out of gridDim.y (every split gets at least one
// when gridDim.y <= col_tiles).
__device__ __forceinline__ void tc_split_range(std::int64_t col_tiles, std::int64_t& begin,
                                               std::int64_t& end) {
  begin = col_tiles * blockIdx.y / gridDim.y;
  end = col_tiles * (blockIdx.y + 1) / gridDim.y;
}

// Whether rows of x (rows, D) are copied 16 bytes at a time (D a multiple of 4 and x 16-byte aligned;
// the backward reads the caller's znorm, which may be a view at any float offset) or 4.
__device__ __forceinline__ bool tc_vector_rows(const float* x, std::int64_t D) {
  return (D & 3) == 0 && (reinterpret_cast<std::uintptr_t>(x) & 15) == 0;
}

// Queues the copy of rows [row0, row0 + n) of x (rows, D) into dst (n rows of `stride` floats); dims
// [D, padded) and rows past the end become zeros. vec: tc_vector_rows(x, D).
__device__ __forceinline__ void tc_stage_rows(float* dst, const float* x, std::int64_t rows, std::int64_t D,
                                              int padded, int stride, std::int64_t row0, int n, bool vec) {
  const int width = vec ? 4 : 1;
  const int per_row = padded / width;  // <= kTcThreads
  const int step_r = kTcThreads / per_row, step_c = kTcThreads - step_r * per_row;
  int r = static_cast<int>(threadIdx.x) / per_row, c = static_cast<int>(threadIdx.x) - r * per_row;
  while (r < n) {  // element threadIdx.x + k kTcThreads of the n x per_row grid is (r, c)
    const std::int64_t gr = row0 + r, d = static_cast<std::int64_t>(c) * width;
    const bool ok = gr < rows && d < D;
    const float* src = ok ? x + gr * D + d : x;
    if (vec) cp_async16(dst + r * stride + c * 4, src, ok);
    else cp_async4(dst + r * stride + c, src, ok);
    r += step_r;
    c += step_c;
    if (c >= per_row) {
      c -= per_row;
      ++r;
    }
  }
}

// Rounds to TF32, in place, the n x padded floats that this thread's tc_stage_rows(dst, ..., n) call
// copied (the same walk over the grid). Legal once this thread's copies have arrived
// (cp.async.wait_group makes a thread's own asynchronous writes visible to it); the other threads see
// the result after the next barrier.
__device__ __forceinline__ void tc_round_staged(float* dst, int padded, int stride, int n, bool vec) {
  const int width = vec ? 4 : 1;
  const int per_row = padded / width;
  const int step_r = kTcThreads / per_row, step_c = kTcThreads - step_r * per_row;
  int r = static_cast<int>(threadIdx.x) / per_row, c = static_cast<int>(threadIdx.x) - r * per_row;
  while (r < n) {
    if (vec) {
      float4* p = reinterpret_cast<float4*>(dst + r * stride + c * 4);
      float4 v = *p;
      v.x = __uint_as_float(tc_tf32(v.x));
      v.y = __uint_as_float(tc_tf32(v.y));
      v.z = __uint_as_float(tc_tf32(v.z));
      v.w = __uint_as_float(tc_tf32(v.w));
      *p = v;
    } else {
      float* p = dst + r * stride + c;
      *p = __uint_as_float(tc_tf32(*p));
    }
    r += step_r;
    c += step_c;
    if (c >= per_row) {
      c -= per_row;
      ++r;
    }
  }
}

// Stages the block's A panel (rows r0 ..) and walks the column panels [begin, end): the next panel's
// copies overlap the current panel's work when stages == 2. body(As, Bs, Ls, c0) sees the A panel, the
// panel of rows c0 .. c0 + kTcCols - 1 and (kWithLse) their lse values, all complete and visible to
// every thread; it may not write them. kRound: zt holds plain fp32 values, rounded to TF32 here after
// they arrive in shared memory (the backward reads the forward's znorm directly instead of a rounded
// copy made by a separate pass); otherwise zt is already TF32.
template <bool kWithLse, bool kRound, class Body>
__device__ __forceinline__ void tc_walk_columns(const float* zt, const float* lse, std::int64_t rows,
                                                std::int64_t D, int padded, int stride, int stages,
                                                std::int64_t r0, std::int64_t begin, std::int64_t end,
                                                float* smem, Body&& body) {
  float* As = smem;
  float* Bs = smem + kTcRows * stride;
  float* Ls = Bs + stages * kTcCols * stride;
  const bool vec = tc_vector_rows(zt, D);
  const auto stage_panel = [&](std::int64_t ct, int buf) {
    const std::int64_t c0 = ct * kTcCols;
    tc_stage_rows(Bs + buf * kTcCols * stride, zt, rows, D, padded, stride, c0, kTcCols, vec);
    if constexpr (kWithLse) {
      for (int e = threadIdx.x; e < kTcCols; e += kTcThreads) {
        const bool ok = c0 + e < rows;
        cp_async4(Ls + buf * kTcCols + e, ok ? lse + c0 + e : lse, ok);
      }
    }
  };
  tc_stage_rows(As, zt, rows, D, padded, stride, r0, kTcRows, vec);
  if (begin < end) stage_panel(begin, 0);
  cp_commit();
  for (std::int64_t ct = begin; ct < end; ++ct) {
    const int it = static_cast<int>(ct - begin);
    if (stages == 2 && ct + 1 < end) {
      stage_panel(ct + 1, (it + 1) & 1);
      cp_commit();
      cp_wait<1>();
    } else {
      cp_wait<0>();
    }
    const int buf = stages == 2 ? (it & 1) : 0;
    if constexpr (kRound) {
      if (it == 0) tc_round_staged(As, padded, stride, kTcRows, vec);
      tc_round_staged(Bs + buf * kTcCols * stride, padded, stride, kTcCols, vec);
    }
    __syncthreads();
    body(static_cast<const float*>(As), static_cast<const float*>(Bs + buf * kTcCols * stride),
         static_cast<const float*>(Ls + buf * kTcCols), ct * kTcCols);
    __syncthreads();
    if (stages == 1 && ct + 1 < end) {
      stage_panel(ct + 1, 0);
      cp_commit();
    }
  }
  cp_wait<0>();
}

// s = a warp's 16 x 64 slice of A Bᵀ: rows 16 group .. + 15 of the A panel against the 64 panel rows,
// over `padded` dims (operands already TF32), for the 8-column tiles n >= kFirst (the others are
// left 0; the symmetric forward's diagonal tiles skip those another warp covers). Lane (g, t) =
// (lane / 4, lane % 4) gets s[n] = {(g, 8n + 2t), (g, 8n + 2t + 1), (g + 8, 8n + 2t), (g + 8, 8n + 2t + 1)}.
// With stride and padded known at compile time (the kernels' D = 128 instances) every fragment load is
// a base register plus an immediate offset; with run-time values the compiler spends more instructions
// on addresses than on the loads and MMAs themselves.
template <int kFirst>
__device__ __forceinline__ void tc_similarity_rows(const float* As, const float* Bs, int stride, int padded,
                                                   int group, float (&s)[kTcNTiles][4]) {
  const int lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
  const float* a = As + (group * 16 + g) * stride + t;
  const float* b = Bs + g * stride + t;
#pragma unroll
  for (int n = 0; n < kTcNTiles; ++n)
#pragma unroll
    for (int e = 0; e < 4; ++e) s[n][e] = 0.0f;
#pragma unroll 2
  for (int k = 0; k < padded; k += 8) {
    const std::uint32_t af[4] = {__float_as_uint(a[k]), __float_as_uint(a[8 * stride + k]),
                                 __float_as_uint(a[k + 4]), __float_as_uint(a[8 * stride + k + 4])};
#pragma unroll
    for (int n = 0; n < kTcNTiles; ++n)
      if (n >= kFirst)
        tc_mma(s[n], af, __float_as_uint(b[8 * n * stride + k]), __float_as_uint(b[8 * n * stride + k + 4]));
  }
}

// This warp's slice (rows 16 warp ..) of the whole panel.
__device__ __forceinline__ void tc_similarity(const float* As, const float* Bs, int stride, int padded,
                                              float (&s)[kTcNTiles][4]) {
  tc_similarity_rows<0>(As, Bs, stride, padded, static_cast<int>(threadIdx.x >> 5), s);
}

// Whether this warp's slice of the panel at c0 holds a diagonal entry or columns past the end.
__device__ __forceinline__ bool tc_needs_mask(std::int64_t r0, std::int64_t c0, std::int64_t rows) {
  const std::int64_t w0 = r0 + 16 * (threadIdx.x >> 5);
  return c0 + kTcCols > rows || (c0 < w0 + 16 && w0 < c0 + kTcCols);
}

// Sum of v over the block's kTcThreads threads in a fixed order (warp trees, then warp 0 over the
// warps' sums); valid in thread 0. shared: kTcThreads / 32 doubles.
__device__ __forceinline__ double tc_block_sum(double v, double* shared) {
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
  __syncthreads();
  if ((threadIdx.x & 31) == 0) shared[threadIdx.x >> 5] = v;
  __syncthreads();
  double total = 0.0;
  if (threadIdx.x == 0)
    for (int w = 0; w < kTcThreads / 32; ++w) total += shared[w];
  return total;
}

// Whether this block is the last of `expected` blocks to call it with the same counter (zero before
// the launch; it ends at `expected`): every thread's earlier global writes are then visible to the
// returning block (fences on both sides). Uniform over the block.
__device__ __forceinline__ bool tc_last_arrival(unsigned* counter, unsigned expected) {
  __shared__ bool last;
  __threadfence();
  __syncthreads();
  if (threadIdx.x == 0) last = atomicAdd(counter, 1u) == expected - 1;
  __syncthreads();
  if (last) __threadfence();
  return last;
}

// The end of a forward's merge of row tile `tile` (of `tiles`), in the block that merged it: the
// block's sum of this thread's row_lse_i - s_pos[i] terms becomes tile_terms[tile], and the last of the
// tiles to get there adds them in tile order into loss = their total / rows (counters[tiles] counts
// the tiles). Uniform over the block; sums: kTcThreads / 32 doubles of shared memory.
__device__ __forceinline__ void tc_loss_tail(double term, unsigned tile, unsigned tiles, std::int64_t rows,
                                             double* tile_terms, unsigned* counters, float* loss,
                                             double* sums) {
  term = tc_block_sum(term, sums);
  if (threadIdx.x == 0) tile_terms[tile] = term;
  if (!tc_last_arrival(counters + tiles, tiles)) return;
  double total = 0.0;
  for (unsigned x = threadIdx.x; x < tiles; x += kTcThreads) total += __ldcg(tile_terms + x);
  total = tc_block_sum(total, sums);
  if (threadIdx.x == 0) loss[0] = static_cast<float>(total / static_cast<double>(rows));
}

// Forward: partial (max, sum) of exp(s_ij) over j != i in this block's column panels, per row i,
// then, in the last of a row tile's split blocks to finish, the merge of the tile's partials in
// split order (row_lse) and the tile's sum of row_lse_i - s_pos[i] (tile_terms); the last row tile
// to finish adds the tiles' sums in tile order into loss = mean(row_lse - s_pos). Deterministic:
// which block comes last changes no order of summation. zt: zhat rounded to TF32 (rows, D);
// scale2 = log2(e) / tau. part_m (natural log units), part_l: (splits, rows). counters: row tiles + 1,
// zero before the launch (tc_normalize_kernel zeroes them).
// kD > 0: compiled for D = kD (D, padded and stride arguments are then ignored), else general.
template <int kD>
__global__ void __launch_bounds__(kTcThreads, 1)
    tc_lse_partial_kernel(const float* zt, std::int64_t rows, std::int64_t D, int padded, int stride,
                          int stages, float scale2, std::int64_t col_tiles, float* part_m, float* part_l,
                          const float* s_pos, double* tile_terms, unsigned* counters, float* row_lse,
                          float* loss) {
  extern __shared__ float4 tc_smem[];
  if constexpr (kD > 0) D = kD, padded = tc_padded(kD), stride = tc_stride(kD);
  pdl_trigger();
  pdl_wait();
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, t = lane & 3;
  const std::int64_t r0 = static_cast<std::int64_t>(blockIdx.x) * kTcRows;
  const std::int64_t row[2] = {r0 + warp * 16 + g, r0 + warp * 16 + g + 8};
  std::int64_t begin, end;
  tc_split_range(col_tiles, begin, end);
  float m[2] = {-__builtin_huge_valf(), -__builtin_huge_valf()};  // running max of s log2(e)
  float l[2] = {0.0f, 0.0f};                                      // this lane's sum of 2^(x - m)
  tc_walk_columns<false, false>(
      zt, nullptr, rows, D, padded, stride, stages, r0, begin, end, reinterpret_cast<float*>(tc_smem),
      [&](const float* As, const float* Bs, const float*, std::int64_t c0) {
        float s[kTcNTiles][4];
        tc_similarity(As, Bs, stride, padded, s);
        const bool mask = tc_needs_mask(r0, c0, rows);
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          float mx = -__builtin_huge_valf();
#pragma unroll
          for (int n = 0; n < kTcNTiles; ++n)
#pragma unroll
            for (int e = 0; e < 2; ++e) {
              float x = s[n][2 * h + e] * scale2;
              if (mask) {
                const std::int64_t j = c0 + 8 * n + 2 * t + e;
                if (j == row[h] || j >= rows) x = -__builtin_huge_valf();
              }
              s[n][2 * h + e] = x;
              mx = fmaxf(mx, x);
            }
          mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
          mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
          const float mn = fmaxf(m[h], mx);
          const float base = mn == -__builtin_huge_valf() ? 0.0f : mn;  // all masked so far: sums stay 0
          float sum = 0.0f;
#pragma unroll
          for (int n = 0; n < kTcNTiles; ++n)
            sum += tc_exp2(s[n][2 * h] - base) + tc_exp2(s[n][2 * h + 1] - base);
          l[h] = l[h] * tc_exp2(m[h] - base) + sum;
          m[h] = mn;
        }
      });
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    l[h] += __shfl_xor_sync(0xffffffffu, l[h], 1);
    l[h] += __shfl_xor_sync(0xffffffffu, l[h], 2);
    if (t == 0 && row[h] < rows) {
      part_m[blockIdx.y * rows + row[h]] = m[h] * kTcLn2;
      part_l[blockIdx.y * rows + row[h]] = l[h];
    }
  }
  if (!tc_last_arrival(counters + blockIdx.x, gridDim.y)) return;
  __shared__ double sums[kTcThreads / 32];
  double term = 0.0;
  const std::int64_t i = r0 + threadIdx.x;
  if (threadIdx.x < kTcRows && i < rows) {
    // The splits' pairs are merged in split order, kTcMergeBatch of them loaded before any is used
    // (one L2 round trip per batch instead of one per split: this runs in the kernel's tail).
    math::OnlineLse acc;
    for (unsigned sp0 = 0; sp0 < gridDim.y; sp0 += kTcMergeBatch) {
      float pm[kTcMergeBatch], pl[kTcMergeBatch];
#pragma unroll
      for (unsigned u = 0; u < kTcMergeBatch; ++u) {
        const bool ok = sp0 + u < gridDim.y;
        pm[u] = ok ? __ldcg(part_m + (sp0 + u) * rows + i) : 0.0f;
        pl[u] = ok ? __ldcg(part_l + (sp0 + u) * rows + i) : 0.0f;
      }
#pragma unroll
      for (unsigned u = 0; u < kTcMergeBatch; ++u)
        if (sp0 + u < gridDim.y) acc.merge(pm[u], pl[u]);
    }
    const float lse = acc.value();
    row_lse[i] = lse;
    term = static_cast<double>(lse) - s_pos[i];
  }
  tc_loss_tail(term, blockIdx.x, gridDim.x, rows, tile_terms, counters, loss, sums);
}

// The backward's finish inside a cluster of a row tile's split blocks (opt-in:
// nt_xent_tc_backward_finish() = cluster; D = kTcGradDims, one dim chunk; compute capability 9.0):
// in place of part and ct_grad_finish_kernel, each block leaves its partial sums acc (the tile's 128
// rows x 128 dims) in its own shared memory, in the A panel's space (free after the walk), and after a
// cluster barrier block y of the S = gridDim.y splits finishes rows [128 y / S, 128 (y + 1) / S) of
// the tile, warp w every 8th row from the w-th. ct_finish_row4 reads each row's S partials from
// the S blocks' shared memory in split order: ct_grad_finish_kernel's operations in its order, so
// its bits. A second cluster barrier keeps every block's shared memory alive until the others have
// read it. z, zn: the raw rows and their zhat (zn = zt, unrounded); positive of row i:
// (i + shift) mod rows; scale = dloss / (tau rows); dz: (rows, kTcGradDims).
constexpr int kTcMaxClusterSplits = 8;  // the portable cluster size
__device__ __forceinline__ void tc_cluster_finish(const float (&acc)[kTcDimTiles][4], float* smem, int stride,
                                                  std::int64_t r0, std::int64_t rows, const float* z,
                                                  const float* zn, std::int64_t shift, float scale,
                                                  float* dz) {
  constexpr int D = kTcGradDims;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, t = lane & 3;
  __syncthreads();  // every thread's copies into the A panel have landed
#pragma unroll
  for (int n = 0; n < kTcDimTiles; ++n)
#pragma unroll
    for (int h = 0; h < 2; ++h)
      tc_store_pair(smem + (warp * 16 + g + 8 * h) * stride + 8 * n + 2 * t, acc[n][2 * h],
                    acc[n][2 * h + 1]);
  cluster_sync();
  const int S = static_cast<int>(gridDim.y), y = static_cast<int>(blockIdx.y);  // rank y in the cluster
  const int lo = kTcRows * y / S, hi = kTcRows * (y + 1) / S;
  const bool vec = ct_aligned16(z) && ct_aligned16(zn) && ct_aligned16(dz);
  for (int r = lo + warp; r < hi && r0 + r < rows; r += kTcThreads / 32) {
    const std::int64_t i = r0 + r;
    ct_finish_row4(D, S, -2.0f, zn + ((i + shift) % rows) * D, z + i * D, zn + i * D, scale, vec, dz + i * D,
                   [&](int s, std::int64_t d) {
                     return *reinterpret_cast<const float4*>(cluster_peer(smem, static_cast<unsigned>(s)) +
                                                             r * stride + d);
                   });
  }
  cluster_sync();
}

// Backward: part[split][i][d] = sum_j G_ij zt_j[d] over this block's column panels, for dims
// [128 blockIdx.z, + 128): G_ij = exp(s_ij - lse_i) + exp(s_ij - lse_j), 0 on the diagonal and past
// the end. zt as in the forward; lse (rows) natural units; scale2 = log2(e) / tau.
// kD as in tc_lse_partial_kernel. kMinBlocks = 2: at most 128 registers, so two blocks fit an SM (with
// one stage of column panels); ptxas then spills a few scalars of the staging code, none in the MMA loop.
// kCluster (kD = kTcGradDims only; launched in clusters of gridDim.y blocks): the blocks of a row tile
// finish dz together (tc_cluster_finish, with z, shift, scale and dz) instead of writing part.
template <int kD, int kMinBlocks = 1, bool kCluster = false>
__global__ void __launch_bounds__(kTcThreads, kMinBlocks)
    tc_grad_partial_kernel(const float* zt, const float* lse, std::int64_t rows, std::int64_t D, int padded,
                           int stride, int stages, float scale2, std::int64_t col_tiles, float* part,
                           const float* z, std::int64_t shift, float scale, float* dz) {
  static_assert(!kCluster || kD == kTcGradDims, "the clustered finish is compiled for D = kTcGradDims");
  extern __shared__ float4 tc_smem[];
  if constexpr (kD > 0) D = kD, padded = tc_padded(kD), stride = tc_stride(kD);
  pdl_trigger();
  pdl_wait();
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, t = lane & 3;
  const std::int64_t r0 = static_cast<std::int64_t>(blockIdx.x) * kTcRows;
  const int d0 = kD > 0 && kD <= kTcGradDims ? 0 : static_cast<int>(blockIdx.z) * kTcGradDims;
  const int dim_tiles = (padded - d0) / 8 < kTcDimTiles ? (padded - d0) / 8 : kTcDimTiles;
  const std::int64_t row[2] = {r0 + warp * 16 + g, r0 + warp * 16 + g + 8};
  const float lse2[2] = {row[0] < rows ? lse[row[0]] * kTcLog2e : 0.0f,
                         row[1] < rows ? lse[row[1]] * kTcLog2e : 0.0f};
  std::int64_t begin, end;
  tc_split_range(col_tiles, begin, end);
  float acc[kTcDimTiles][4];
#pragma unroll
  for (int n = 0; n < kTcDimTiles; ++n)
#pragma unroll
    for (int e = 0; e < 4; ++e) acc[n][e] = 0.0f;
  tc_walk_columns<true, true>(
      zt, lse, rows, D, padded, stride, stages, r0, begin, end, reinterpret_cast<float*>(tc_smem),
      [&](const float* As, const float* Bs, const float* Ls, std::int64_t c0) {
        float s[kTcNTiles][4];
        tc_similarity(As, Bs, stride, padded, s);
        const bool mask = tc_needs_mask(r0, c0, rows);
#pragma unroll
        for (int n = 0; n < kTcNTiles; ++n)
#pragma unroll
          for (int e = 0; e < 4; ++e) {
            const int h = e >> 1, jj = 8 * n + 2 * t + (e & 1);
            const float x = s[n][e] * scale2;
            float gv = tc_exp2(x - lse2[h]) + tc_exp2(x - Ls[jj] * kTcLog2e);
            if (mask) {
              const std::int64_t j = c0 + jj;
              if (j == row[h] || j >= rows) gv = 0.0f;
            }
            s[n][e] = gv;
          }
        // k step kk covers panel rows 8kk .. 8kk + 7: A's k index t is row 8kk + 2t, t + 4 is 8kk + 2t + 1.
        // In the D = 128 instance dim_tiles is a compile-time 16 and the predicate folds away; in the
        // general one nvcc turns these loops around into chains of dependent MMAs on 3 accumulators.
#pragma unroll
        for (int kk = 0; kk < kTcNTiles; ++kk) {
          const std::uint32_t af[4] = {tc_tf32(s[kk][0]), tc_tf32(s[kk][2]), tc_tf32(s[kk][1]),
                                       tc_tf32(s[kk][3])};
          const float* zb = Bs + (8 * kk + 2 * t) * stride + d0 + g;
#pragma unroll
          for (int n = 0; n < kTcDimTiles; ++n)
            if (n < dim_tiles)
              tc_mma(acc[n], af, __float_as_uint(zb[8 * n]), __float_as_uint(zb[stride + 8 * n]));
        }
      });
  if constexpr (kCluster) {
    tc_cluster_finish(acc, reinterpret_cast<float*>(tc_smem), stride, r0, rows, z, zt, shift, scale, dz);
    return;
  }
  // Lane (g, t) holds dims 2t and 2t + 1 of each 8-dim tile for rows g and g + 8: one 8-byte store per
  // pair where D is even (then every pair starts at an even float offset of the buffer), two 4-byte
  // ones otherwise. (Scalar stores of all 64 values showed as the pass's third stall reason,
  // lg_throttle, on the H200.)
  const bool pairs = kD > 0 ? kD % 2 == 0 : D % 2 == 0;
#pragma unroll
  for (int n = 0; n < kTcDimTiles; ++n)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const std::int64_t i = row[h];
      const int d = d0 + 8 * n + 2 * t;
      if (n >= dim_tiles || i >= rows || d >= D) continue;
      float* p = part + (blockIdx.y * rows + i) * D + d;
      if (pairs) {
        tc_store_pair(p, acc[n][2 * h], acc[n][2 * h + 1]);
      } else {
        p[0] = acc[n][2 * h];
        if (d + 1 < D) p[1] = acc[n][2 * h + 1];
      }
    }
}

// ---- symmetric forward (opt-in: nt_xent_tc_forward_tiles() = symmetric) ----
// S = zhat zhatᵀ is symmetric, so each pair of 128-row tiles (I < J) is computed once: its
// exponentials go into the row sums of tile I's rows (over tile J's columns) and, as column sums,
// into those of tile J's rows (over tile I's). A diagonal tile computes, per warp of 16 rows, only
// the columns from its own 16 x 16 diagonal block on (row sums there, column sums past it); two
// diagonal tiles P and R - 1 - P share a block with warp w on P's rows 16 w .. and R - 1 - P's rows
// 16 (7 - w) .., so every warp walks 18 eight-column tiles where an off-diagonal block's walk 16.
// Half the MMAs and exponentials of the split forward, in R (R - 1) / 2 + ceil(R / 2) blocks for R row
// tiles (N = 1024: 128 blocks). A fixed shift replaces the running max: with unit rows, s_ij <= 1
// (TF32 rounding moves that by ~1e-3) so 2^(s_ij log2(e) / tau - log2(e) / tau) never overflows, and
// with log2(e) / tau <= kTcSymMaxScale2 it stays above 2^-126 (no term flushes to zero); one
// exponential then serves a row sum and a column sum. Each row's R partial sums (one per tile it was
// paired with) go to part[tile][row] and the last block to contribute to a row tile (an arrival
// counter per tile, R contributions each) adds them in tile order: deterministic.
constexpr int kTcSymWarps = kTcThreads / 32;
constexpr float kTcSymMaxScale2 = 60.0f;      // log2(e) / tau: tau >= 0.024
constexpr std::int64_t kTcSymMaxTiles = 128;  // row tiles (N <= 8192): the partials are R x 2N floats

// Shared memory of the symmetric forward for row stride `stride`: two 128-row panels (tiles I and J,
// or P and Q), then the column sums [2][warps][128] and row sums [2][128] of up to two tiles.
inline std::size_t tc_sym_smem_bytes(int stride) {
  return sizeof(float) * (2 * static_cast<std::size_t>(kTcRows) * static_cast<std::size_t>(stride) +
                          2 * kTcSymWarps * kTcRows + 2 * kTcRows);
}
// Blocks of the symmetric forward for R row tiles: the diagonal pairs, then the tile pairs I < J.
inline std::int64_t tc_sym_blocks(std::int64_t R) { return (R + 1) / 2 + R * (R - 1) / 2; }

// Block b's tiles: b < ceil(R / 2): the diagonal tiles first = b and second = R - 1 - b (equal for the
// middle tile of an odd R); then the tile pairs first < second in row-major order.
struct TcSymItem {
  int first = 0, second = 0;
  bool diagonal = false;
};
__device__ __forceinline__ TcSymItem tc_sym_item(int b, int R) {
  const int diagonals = (R + 1) / 2;
  if (b < diagonals) return {b, R - 1 - b, true};
  int left = b - diagonals, first = 0;
  while (left >= R - 1 - first) left -= R - 1 - first++;
  return {first, first + 1 + left, false};
}

// One warp's part of a symmetric tile: rows 16 group .. + 15 of A (global rows row0 ..) against the
// 64-row panel Bp (global rows col0 ..), from eight-column tile kFirst on; with kDiag the tiles kFirst
// and kFirst + 1 are the warp's diagonal 16 x 16 block (the diagonal j = i masked, row sums only).
// Compile-time bounds: no per-tile test in the MMA loop. Adds 2^(s scale2 - scale2) to this lane's
// row sums rs[h] (rows g, g + 8) and writes each other tile's column sums over the 16 rows to
// col[8n + 2t + e] (lanes g = 0). Entries past `rows`, in either direction, count 0.
template <int kFirst, bool kDiag>
__device__ __forceinline__ void tc_sym_slice(const float* A, const float* Bp, int stride, int padded,
                                             int group, std::int64_t row0, std::int64_t col0,
                                             std::int64_t rows, float scale2, float (&rs)[2], float* col) {
  const int lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
  float s[kTcNTiles][4];
  tc_similarity_rows<kFirst>(A, Bp, stride, padded, group, s);
  const std::int64_t i0 = row0 + group * 16 + g;
  const bool edge = col0 + kTcCols > rows || row0 + group * 16 + 16 > rows;
#pragma unroll
  for (int n = 0; n < kTcNTiles; ++n) {
    if (n < kFirst) continue;
    const bool in_diag = kDiag && (n == kFirst || n == kFirst + 1);
    float e[4];
#pragma unroll
    for (int q = 0; q < 4; ++q) {
      e[q] = tc_exp2(fmaf(s[n][q], scale2, -scale2));
      if (edge || in_diag) {
        const std::int64_t i = i0 + (q >> 1) * 8, j = col0 + 8 * n + 2 * t + (q & 1);
        if (i >= rows || j >= rows || j == i) e[q] = 0.0f;
      }
    }
    rs[0] += e[0] + e[1];
    rs[1] += e[2] + e[3];
    if (!in_diag) {
      float c0 = e[0] + e[2], c1 = e[1] + e[3];
#pragma unroll
      for (int off = 4; off < 32; off <<= 1) {
        c0 += __shfl_xor_sync(0xffffffffu, c0, off);
        c1 += __shfl_xor_sync(0xffffffffu, c1, off);
      }
      if (g == 0) {
        col[8 * n + 2 * t] = c0;
        col[8 * n + 2 * t + 1] = c1;
      }
    }
  }
}

// A diagonal tile's two panels for the warp with row group `group`: the 64-column panels from the
// warp's diagonal block on. T: the tile's rows in shared memory (also its columns), row0 its first
// global row, col: the tile's column sums of this row group (128 floats).
__device__ __forceinline__ void tc_sym_diagonal(const float* T, int stride, int padded, int group,
                                                std::int64_t row0, std::int64_t rows, float scale2,
                                                float (&rs)[2], float* col) {
#pragma unroll 1
  for (int p = 0; p < 2; ++p) {
    const int first = 2 * group - kTcNTiles * p;  // the diagonal block's first 8-column tile in panel p
    const float* Bp = T + p * kTcCols * stride;
    const std::int64_t col0 = row0 + p * kTcCols;
    float* c = col + p * kTcCols;
    switch (first) {  // warp-uniform
      case 0: tc_sym_slice<0, true>(T, Bp, stride, padded, group, row0, col0, rows, scale2, rs, c); break;
      case 2: tc_sym_slice<2, true>(T, Bp, stride, padded, group, row0, col0, rows, scale2, rs, c); break;
      case 4: tc_sym_slice<4, true>(T, Bp, stride, padded, group, row0, col0, rows, scale2, rs, c); break;
      case 6: tc_sym_slice<6, true>(T, Bp, stride, padded, group, row0, col0, rows, scale2, rs, c); break;
      default:  // the diagonal block lies in an earlier panel (first < 0) or a later one (first >= 8)
        if (first < 0) tc_sym_slice<0, false>(T, Bp, stride, padded, group, row0, col0, rows, scale2, rs, c);
    }
  }
}

// Row tile `tile`'s merge, by the last block to contribute to it: row_lse_i = (scale2 + log2 sum of
// the R partials in tile order) ln 2, then the loss tail.
__device__ __forceinline__ void tc_sym_merge(int tile, int R, const float* part, std::int64_t rows,
                                             float scale2, const float* s_pos, double* tile_terms,
                                             unsigned* counters, float* row_lse, float* loss, double* sums) {
  double term = 0.0;
  const std::int64_t i = static_cast<std::int64_t>(tile) * kTcRows + threadIdx.x;
  if (threadIdx.x < kTcRows && i < rows) {
    float sum = 0.0f;
    for (int s0 = 0; s0 < R; s0 += static_cast<int>(kTcMergeBatch)) {
      float v[kTcMergeBatch];
#pragma unroll
      for (int u = 0; u < static_cast<int>(kTcMergeBatch); ++u)
        v[u] = s0 + u < R ? __ldcg(part + static_cast<std::int64_t>(s0 + u) * rows + i) : 0.0f;
#pragma unroll
      for (int u = 0; u < static_cast<int>(kTcMergeBatch); ++u)
        if (s0 + u < R) sum += v[u];
    }
    const float lse = (scale2 + log2f(sum)) * kTcLn2;
    row_lse[i] = lse;
    term = static_cast<double>(lse) - s_pos[i];
  }
  tc_loss_tail(term, static_cast<unsigned>(tile), static_cast<unsigned>(R), rows, tile_terms, counters, loss,
               sums);
}

// The symmetric forward: one block per tile pair or diagonal pair (tc_sym_item), grid tc_sym_blocks(R).
// zt: zhat rounded to TF32 (rows, D); scale2 = log2(e) / tau <= kTcSymMaxScale2; part (R, rows);
// counters: R + 1, zero before the launch. kD as in tc_lse_partial_kernel.
template <int kD>
__global__ void __launch_bounds__(kTcThreads, 1)
    tc_lse_sym_kernel(const float* zt, std::int64_t rows, std::int64_t D, int padded, int stride,
                      float scale2, int row_tiles, float* part, const float* s_pos, double* tile_terms,
                      unsigned* counters, float* row_lse, float* loss) {
  extern __shared__ float4 tc_smem[];
  if constexpr (kD > 0) D = kD, padded = tc_padded(kD), stride = tc_stride(kD);
  pdl_trigger();
  pdl_wait();
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, t = lane & 3;
  float* As = reinterpret_cast<float*>(tc_smem);
  float* Bs = As + kTcRows * stride;
  float* cols = Bs + kTcRows * stride;               // [2][kTcSymWarps][kTcRows]
  float* rowsum = cols + 2 * kTcSymWarps * kTcRows;  // [2][kTcRows]
  const TcSymItem item = tc_sym_item(static_cast<int>(blockIdx.x), row_tiles);
  const bool pair = item.first != item.second;
  const std::int64_t r0 = static_cast<std::int64_t>(item.first) * kTcRows;
  const std::int64_t c0 = static_cast<std::int64_t>(item.second) * kTcRows;
  for (int e = threadIdx.x; e < 2 * kTcSymWarps * kTcRows; e += kTcThreads) cols[e] = 0.0f;
  const bool vec = tc_vector_rows(zt, D);
  float rs[2][2] = {{0.0f, 0.0f}, {0.0f, 0.0f}};  // [tile][h]
  tc_stage_rows(As, zt, rows, D, padded, stride, r0, kTcRows, vec);
  if (item.diagonal) {
    cp_commit();
    if (pair) tc_stage_rows(Bs, zt, rows, D, padded, stride, c0, kTcRows, vec);
    cp_commit();
    // tile first (warp w: rows 16 w ..), then tile second (rows 16 (7 - w) ..): one loop, so the
    // slices' code exists once
#pragma unroll 1
    for (int k = 0; k < (pair ? 2 : 1); ++k) {
      if (k == 0) {
        cp_wait<1>();
      } else {
        cp_wait<0>();
      }
      __syncthreads();
      const int group = k == 0 ? warp : kTcSymWarps - 1 - warp;
      float r[2] = {0.0f, 0.0f};
      tc_sym_diagonal(k == 0 ? As : Bs, stride, padded, group, k == 0 ? r0 : c0, rows, scale2, r,
                      cols + (k * kTcSymWarps + group) * kTcRows);
      if (k == 0) {
        rs[0][0] = r[0], rs[0][1] = r[1];
      } else {
        rs[1][0] = r[0], rs[1][1] = r[1];
      }
    }
  } else {
    tc_stage_rows(Bs, zt, rows, D, padded, stride, c0, kTcCols, vec);
    cp_commit();
    tc_stage_rows(Bs + kTcCols * stride, zt, rows, D, padded, stride, c0 + kTcCols, kTcCols, vec);
    cp_commit();
#pragma unroll 1
    for (int p = 0; p < 2; ++p) {
      if (p == 0) cp_wait<1>();
      else cp_wait<0>();
      __syncthreads();
      tc_sym_slice<0, false>(As, Bs + p * kTcCols * stride, stride, padded, warp, r0, c0 + p * kTcCols, rows,
                             scale2, rs[0], cols + warp * kTcRows + p * kTcCols);
    }
  }
  cp_wait<0>();
  // row sums: the 4 lanes of a row, then one lane per row into shared memory (a diagonal pair has
  // two tiles of row sums, any other block one)
  const int row_tiles_here = item.diagonal && pair ? 2 : 1;
#pragma unroll
  for (int k = 0; k < 2; ++k) {
    if (k >= row_tiles_here) break;
    const int group = k == 0 ? warp : kTcSymWarps - 1 - warp;
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      float v = rs[k][h];
      v += __shfl_xor_sync(0xffffffffu, v, 1);
      v += __shfl_xor_sync(0xffffffffu, v, 2);
      if (t == 0) rowsum[k * kTcRows + group * 16 + g + 8 * h] = v;
    }
  }
  __syncthreads();
  // partials: a row's sum over the other tile of its pair goes to that tile's slot
  {
    const int k = static_cast<int>(threadIdx.x) / kTcRows, c = static_cast<int>(threadIdx.x) % kTcRows;
    const auto column_sum = [&](int slot) {  // over the warps, in warp order
      float sum = 0.0f;
      for (int w = 0; w < kTcSymWarps; ++w) sum += cols[(slot * kTcSymWarps + w) * kTcRows + c];
      return sum;
    };
    if (item.diagonal) {  // k = 0: tile first, k = 1: tile second (when it is another tile)
      const std::int64_t i = (k == 0 ? r0 : c0) + c;
      if (k < row_tiles_here && i < rows)
        part[static_cast<std::int64_t>(k == 0 ? item.first : item.second) * rows + i] =
            rowsum[k * kTcRows + c] + column_sum(k);
    } else if (k == 0) {  // tile first's rows, over tile second's columns
      part[static_cast<std::int64_t>(item.second) * rows + r0 + c] = rowsum[c];
    } else if (c0 + c < rows) {  // tile second's rows: the column sums over tile first's rows
      part[static_cast<std::int64_t>(item.first) * rows + c0 + c] = column_sum(0);
    }
  }
  __shared__ double sums[kTcThreads / 32];
  if (tc_last_arrival(counters + item.first, static_cast<unsigned>(row_tiles)))
    tc_sym_merge(item.first, row_tiles, part, rows, scale2, s_pos, tile_terms, counters, row_lse, loss, sums);
  if (pair && tc_last_arrival(counters + item.second, static_cast<unsigned>(row_tiles)))
    tc_sym_merge(item.second, row_tiles, part, rows, scale2, s_pos, tile_terms, counters, row_lse, loss,
                 sums);
}

// ---- host side ----

// One warp per row i: zn_i = z_i / max(||z_i||, eps), zt_i = zn_i rounded to TF32, and the positive's
// fp32 similarity s_pos[i] = (z_i . z_p) / (max(||z_i||, eps) max(||z_p||, eps) tau) with
// p = (i + shift) mod rows. Also zeroes the next pass's n_counters arrival counters.
__global__ void __launch_bounds__(kBlock)
    tc_normalize_kernel(const float* z, std::int64_t rows, std::int64_t D, std::int64_t shift, float inv_tau,
                        float* zn, float* zt, float* s_pos, unsigned* counters, std::int64_t n_counters) {
  pdl_trigger();
  pdl_wait();
  const int lane = threadIdx.x & 31;
  for (std::int64_t c = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; c < n_counters;
       c += static_cast<std::int64_t>(gridDim.x) * blockDim.x)
    counters[c] = 0u;
  const std::int64_t warps = static_cast<std::int64_t>(gridDim.x) * (blockDim.x / 32);
  // Rows of up to 128 kTcNormChunks dims, a multiple of 4: lane l takes dims 4 l + 128 c .. + 3, kept in
  // registers between the two passes; as float4 where z and zn are 16-byte aligned, else one float at
  // a time in the same order (a misaligned view gives the same bits).
  const bool chunked = D % 4 == 0 && D <= 128 * kTcNormChunks;
  const bool vec = chunked && ct_aligned16(z) && ct_aligned16(zn) && ct_aligned16(zt);
  for (std::int64_t i = (static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / 32; i < rows;
       i += warps) {
    const float* zi = z + i * D;
    const float* zp = z + ((i + shift) % rows) * D;
    float ss = 0.0f, sp = 0.0f, dot = 0.0f;
    if (chunked) {
      float4 row[kTcNormChunks] = {};
#pragma unroll
      for (int c = 0; c < kTcNormChunks; ++c) {
        const std::int64_t d = 4 * lane + 128 * c;
        if (d < D) {
          const float4 a = ct_load4(zi + d, vec), b = ct_load4(zp + d, vec);
          ss = fmaf(a.x, a.x, ss), ss = fmaf(a.y, a.y, ss), ss = fmaf(a.z, a.z, ss), ss = fmaf(a.w, a.w, ss);
          sp = fmaf(b.x, b.x, sp), sp = fmaf(b.y, b.y, sp), sp = fmaf(b.z, b.z, sp), sp = fmaf(b.w, b.w, sp);
          dot = fmaf(a.x, b.x, dot), dot = fmaf(a.y, b.y, dot), dot = fmaf(a.z, b.z, dot);
          dot = fmaf(a.w, b.w, dot);
          row[c] = a;
        }
      }
      const float inv = math::inverse_norm(ct_warp_sum(ss));
      const float inv_p = math::inverse_norm(ct_warp_sum(sp));
      dot = ct_warp_sum(dot);
#pragma unroll
      for (int c = 0; c < kTcNormChunks; ++c) {
        const std::int64_t d = 4 * lane + 128 * c;
        if (d < D) {
          const float4 v = make_float4(row[c].x * inv, row[c].y * inv, row[c].z * inv, row[c].w * inv);
          ct_store4(zn + i * D + d, v, vec);
          ct_store4(zt + i * D + d,
                    make_float4(__uint_as_float(tc_tf32(v.x)), __uint_as_float(tc_tf32(v.y)),
                                __uint_as_float(tc_tf32(v.z)), __uint_as_float(tc_tf32(v.w))),
                    vec);
        }
      }
      if (lane == 0) s_pos[i] = dot * inv * inv_p * inv_tau;
      continue;
    }
    for (std::int64_t d = lane; d < D; d += 32) {
      ss = fmaf(zi[d], zi[d], ss);
      sp = fmaf(zp[d], zp[d], sp);
      dot = fmaf(zi[d], zp[d], dot);
    }
    const float inv = math::inverse_norm(ct_warp_sum(ss));
    const float inv_p = math::inverse_norm(ct_warp_sum(sp));
    dot = ct_warp_sum(dot);
    for (std::int64_t d = lane; d < D; d += 32) {
      const float v = zi[d] * inv;
      zn[i * D + d] = v;
      zt[i * D + d] = __uint_as_float(tc_tf32(v));
    }
    if (lane == 0) s_pos[i] = dot * inv * inv_p * inv_tau;
  }
}

// The setting behind fovea::cuda::nt_xent_tc_blocks_per_sm(), first read from FOVEA_NTXENT_TC_BLOCKS
// (unset or "auto": 0; "1": 1; "2": 2).
inline int& nt_xent_tc_blocks_per_sm_setting() {
  static int blocks = env_choice<int>("FOVEA_NTXENT_TC_BLOCKS", {{"auto", 0}, {"1", 1}, {"2", 2}});
  return blocks;
}

// The rows (2N) from which the automatic plan (setting 0) asks for two blocks per SM. Measured on the
// H200 (2026-11-28, docs/benchmarks.md): two blocks took 9 % off a forward + backward at N = 2048 and
// 15-16 % at N = 4096 and 8192, and added 8-9 % at N = 1024 and 23-27 % at N = 256, where each of
// their blocks walks only 2 panels.
inline constexpr std::int64_t kTcTwoBlocksMinRows = 4096;

// The residency the tile passes aim for at `rows` rows under `setting` (0 auto, 1, 2).
constexpr int tc_wanted_blocks_per_sm(int setting, std::int64_t rows) {
  return setting == 0 ? (rows >= kTcTwoBlocksMinRows ? 2 : 1) : setting;
}

// Whether the tensor-core kernels run for row length D on `device` (compute capability 8.0 or later,
// D <= kTcMaxDim and the backward's panels fit the opt-in shared memory).
inline bool tc_supported(std::int64_t D, int device) {
  const cudaDeviceProp& p = device_properties(device);
  return p.major >= 8 && tc_layout(D, p.sharedMemPerBlockOptin, true).stages > 0;
}

// The setting behind fovea::cuda::nt_xent_tc_forward_tiles(), first read from FOVEA_NTXENT_TC_FORWARD
// (unset, "auto" or "split": split; "symmetric").
inline NtXentForwardTiles& nt_xent_tc_forward_tiles_setting() {
  using F = NtXentForwardTiles;
  static F tiles = env_choice<F>("FOVEA_NTXENT_TC_FORWARD",
                                 {{"auto", F::split}, {"split", F::split}, {"symmetric", F::symmetric}});
  return tiles;
}

// The setting behind fovea::cuda::nt_xent_tc_backward_finish(), first read from FOVEA_NTXENT_TC_FINISH
// (unset, "auto" or "kernel": kernel; "cluster").
inline NtXentBackwardFinish& nt_xent_tc_backward_finish_setting() {
  using F = NtXentBackwardFinish;
  static F finish = env_choice<F>("FOVEA_NTXENT_TC_FINISH",
                                  {{"auto", F::kernel}, {"kernel", F::kernel}, {"cluster", F::cluster}});
  return finish;
}

// Grid of a tensor-core pass: raises `kernel`'s shared-memory limit and sizes the column splits from
// its occupancy.
struct TcLaunch {
  TcLayout layout;
  std::size_t smem = 0;
  std::int64_t row_tiles = 0, col_tiles = 0, dim_chunks = 1;
  int splits = 1;
  int per_sm = 1;  // blocks resident per SM
  dim3 grid() const {
    return dim3(static_cast<unsigned>(row_tiles), static_cast<unsigned>(splits),
                static_cast<unsigned>(dim_chunks));
  }
};
// Blocks of `kernel` resident per SM with `smem` bytes of dynamic shared memory on `device`, after
// raising the kernel's shared-memory limit to at least smem (the limit only grows, so a launch planned
// with a smaller layout earlier stays valid). The driver calls run once per (kernel, device, smem), not
// on every loss call (on the H200 this did not change the N = 256 time: the device, not the host, sets
// it).
template <class Kernel>
int tc_blocks_per_sm(Kernel kernel, std::size_t smem, int device) {
  using Key = std::tuple<const void*, int, std::size_t>;
  static std::mutex mutex;
  static std::map<Key, int> cache;
  static std::map<std::pair<const void*, int>, std::size_t> limits;
  const Key key{reinterpret_cast<const void*>(kernel), device, smem};
  std::lock_guard<std::mutex> lock(mutex);
  if (const auto it = cache.find(key); it != cache.end()) return it->second;
  std::size_t& limit = limits[{reinterpret_cast<const void*>(kernel), device}];
  if (smem > limit) {
    FOVEA_CHECK_CUDA(
        cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)));
    limit = smem;
  }
  int per_sm = 0;
  FOVEA_CHECK_CUDA(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, kTcThreads, smem));
  cache.emplace(key, per_sm);
  return per_sm;
}

template <class Kernel>
TcLaunch tc_launch(Kernel kernel, std::int64_t rows, std::int64_t D, bool with_lse, std::int64_t dim_chunks,
                   int device, int max_stages = 2) {
  const cudaDeviceProp& p = device_properties(device);
  TcLaunch l;
  l.layout = tc_layout(D, p.sharedMemPerBlockOptin, with_lse, max_stages);
  FOVEA_CHECK(l.layout.stages > 0, "nt_xent tensor-core kernel: D = ", D, " does not fit");
  l.smem = tc_smem_bytes(l.layout.stride, l.layout.stages, with_lse);
  const int per_sm = tc_blocks_per_sm(kernel, l.smem, device);
  l.per_sm = std::max(per_sm, 1);
  l.row_tiles = (rows + kTcRows - 1) / kTcRows;
  l.col_tiles = (rows + kTcCols - 1) / kTcCols;
  l.dim_chunks = dim_chunks;
  FOVEA_CHECK(l.row_tiles <= 0x7fffffff, "nt_xent: ", rows, " rows exceed the CUDA grid");
  const std::int64_t resident = static_cast<std::int64_t>(std::max(per_sm, 1)) * p.multiProcessorCount;
  l.splits = tc_splits(l.row_tiles * dim_chunks, l.col_tiles, resident);
  return l;
}

// The launch of a pass as nt_xent_tc_blocks_per_sm() asks for `rows` rows (tc_wanted_blocks_per_sm):
// with 2, one stage of column panels through `two` (the kernel compiled for two blocks per SM) when two
// of its blocks then really fit an SM; otherwise one block per SM with two stages, through `one`.
// Sets *use_two accordingly.
template <class Kernel>
TcLaunch tc_plan(Kernel one, Kernel two, std::int64_t rows, std::int64_t D, bool with_lse,
                 std::int64_t dim_chunks, int device, bool* use_two) {
  *use_two = false;
  if (tc_wanted_blocks_per_sm(nt_xent_tc_blocks_per_sm_setting(), rows) == 2) {
    const TcLaunch l = tc_launch(two, rows, D, with_lse, dim_chunks, device, 1);
    if (l.per_sm >= 2) {
      *use_two = true;
      return l;
    }
  }
  return tc_launch(one, rows, D, with_lse, dim_chunks, device);
}

// Floats of a TF32 copy of zhat at the start of a scratch buffer, keeping what follows 16-byte aligned.
inline std::int64_t tc_copy_floats(std::int64_t rows, std::int64_t D) { return (rows * D + 3) / 4 * 4; }

// A forward's scratch, in floats: the TF32 copy of zhat, `partial_floats` of per-row partials, s_pos
// (rows), then, 8-byte aligned, one double per row tile and row tiles + 1 arrival counters.
struct TcForwardScratch {
  Tensor buffer;
  float *zt = nullptr, *part = nullptr, *s_pos = nullptr;
  double* tile_terms = nullptr;
  unsigned* counters = nullptr;
  std::int64_t n_counters = 0;
  TcForwardScratch(std::int64_t rows, std::int64_t D, std::int64_t partial_floats, std::int64_t row_tiles,
                   Device dev) {
    const std::int64_t copy = tc_copy_floats(rows, D);
    const std::int64_t terms_at = (copy + partial_floats + rows + 1) / 2 * 2;
    n_counters = row_tiles + 1;
    buffer = Tensor(Shape{terms_at + 2 * row_tiles + n_counters}, dev);
    zt = buffer.data();
    part = zt + copy;
    s_pos = part + partial_floats;
    tile_terms = reinterpret_cast<double*>(buffer.data() + terms_at);
    counters = reinterpret_cast<unsigned*>(buffer.data() + terms_at + 2 * row_tiles);
  }
};

// The normalisation both forwards start with (zn, the TF32 copy, s_pos; it zeroes the counters).
inline void tc_launch_normalize(CView z, float inv_tau, View znorm, const TcForwardScratch& s, Device dev,
                                cudaStream_t stream) {
  const std::int64_t M = z.shape()[0], D = z.shape()[1];
  launch_dependent(dev.index(), tc_normalize_kernel, grid_for(M * 32, dev.index()), kBlock, 0, stream,
                   z.data(), M, D, M / 2, inv_tau, znorm.data(), s.zt, s.s_pos, s.counters, s.n_counters);
  FOVEA_CHECK_LAUNCH("tc_normalize_kernel", "z ", z.shape().str());
}

// The symmetric forward's launch (nt_xent_tc_forward_tiles() = symmetric) where it applies: R row tiles
// at most kTcSymMaxTiles, log2(e) / tau at most kTcSymMaxScale2 and its shared memory within the
// device's limit; returns false (nothing launched) otherwise.
inline bool tc_nt_xent_forward_symmetric(CView z, float tau, View loss, View row_lse, View znorm, Device dev,
                                         cudaStream_t stream) {
  const std::int64_t M = z.shape()[0], D = z.shape()[1];
  const std::int64_t R = (M + kTcRows - 1) / kTcRows;
  const float inv_tau = 1.0f / tau, scale2 = kTcLog2e * inv_tau;
  const cudaDeviceProp& p = device_properties(dev.index());
  const int stride = tc_stride(static_cast<int>(D));
  const std::size_t smem = tc_sym_smem_bytes(stride);
  if (nt_xent_tc_forward_tiles_setting() != NtXentForwardTiles::symmetric || R > kTcSymMaxTiles ||
      !(scale2 <= kTcSymMaxScale2) || smem + kTcStaticSmem > p.sharedMemPerBlockOptin)
    return false;
  const auto kernel = D == kTcFixedDim ? tc_lse_sym_kernel<kTcFixedDim> : tc_lse_sym_kernel<0>;
  tc_blocks_per_sm(kernel, smem, dev.index());  // raises the kernel's shared-memory limit
  const TcForwardScratch s(M, D, R * M, R, dev);  // part: R x M
  tc_launch_normalize(z, inv_tau, znorm, s, dev, stream);
  launch_dependent(dev.index(), kernel, dim3(static_cast<unsigned>(tc_sym_blocks(R))), kTcThreads, smem,
                   stream, s.zt, M, D, tc_padded(static_cast<int>(D)), stride, scale2, static_cast<int>(R),
                   s.part, s.s_pos, s.tile_terms, s.counters, row_lse.data(), loss.data());
  FOVEA_CHECK_LAUNCH("tc_lse_sym_kernel", "z ", z.shape().str(), ", ", R, " row tiles");
  return true;
}

// Two launches: the normalisation (which also zeroes the arrival counters), then the partial
// log-sum-exps whose last blocks merge them into row_lse and the loss.
inline void tc_nt_xent_forward(CView z, float tau, View loss, View row_lse, View znorm, Device dev,
                               cudaStream_t stream) {
  if (tc_nt_xent_forward_symmetric(z, tau, loss, row_lse, znorm, dev, stream)) return;
  const std::int64_t M = z.shape()[0], D = z.shape()[1];
  // (96 registers: two blocks fit an SM without a separate instance)
  const auto kernel = D == kTcFixedDim ? tc_lse_partial_kernel<kTcFixedDim> : tc_lse_partial_kernel<0>;
  bool two = false;
  const TcLaunch l = tc_plan(kernel, kernel, M, D, false, 1, dev.index(), &two);
  const TcForwardScratch s(M, D, 2 * l.splits * M, l.row_tiles, dev);  // part_m, part_l: splits x M each
  const float inv_tau = 1.0f / tau;
  tc_launch_normalize(z, inv_tau, znorm, s, dev, stream);
  launch_dependent(dev.index(), kernel, l.grid(), kTcThreads, l.smem, stream, s.zt, M, D, l.layout.padded,
                   l.layout.stride, l.layout.stages, kTcLog2e * inv_tau, l.col_tiles, s.part,
                   s.part + l.splits * M, s.s_pos, s.tile_terms, s.counters, row_lse.data(), loss.data());
  FOVEA_CHECK_LAUNCH("tc_lse_partial_kernel", "z ", z.shape().str(), ", ", l.splits, " splits");
}

// Clusters of `kernel` (launched as clustered_config(l.grid(), (1, l.splits, 1), ...)) resident on
// `device` at once, after raising its shared-memory limit; cached per (kernel, device, smem, splits).
// 0 where such clusters cannot run.
template <class Kernel>
int tc_resident_clusters(Kernel kernel, const TcLaunch& l, int device) {
  using Key = std::tuple<const void*, int, std::size_t, int>;
  static std::mutex mutex;
  static std::map<Key, int> cache;
  tc_blocks_per_sm(kernel, l.smem, device);  // raises the limit
  const Key key{reinterpret_cast<const void*>(kernel), device, l.smem, l.splits};
  std::lock_guard<std::mutex> lock(mutex);
  if (const auto it = cache.find(key); it != cache.end()) return it->second;
  cudaLaunchAttribute attrs[2];
  const cudaLaunchConfig_t config = clustered_config(l.grid(), dim3(1, static_cast<unsigned>(l.splits), 1),
                                                     kTcThreads, l.smem, nullptr, attrs);
  int clusters = 0;
  if (cudaOccupancyMaxActiveClusters(&clusters, kernel, &config) != cudaSuccess) {
    (void)cudaGetLastError();  // an unsupported configuration: no clusters, the plain launch runs
    clusters = 0;
  }
  cache.emplace(key, clusters);
  return clusters;
}

// The backward's launch: the partial kernel's instance and grid, and whether it finishes in clusters
// (nt_xent_tc_backward_finish() = cluster, D = kTcFixedDim, compute capability 9.0, at most
// kTcMaxClusterSplits splits, and the clusters take no more waves than the plain launch's blocks).
using TcGradKernel = void (*)(const float*, const float*, std::int64_t, std::int64_t, int, int, int, float,
                              std::int64_t, float*, const float*, std::int64_t, float, float*);
struct TcBackwardPlan {
  TcLaunch launch;
  TcGradKernel kernel = nullptr;
  bool cluster = false;
};
inline TcBackwardPlan tc_backward_plan(std::int64_t M, std::int64_t D, int device) {
  // Two blocks per SM only for D = kTcFixedDim: the general instance needs more than 128 registers.
  const bool fixed = D == kTcFixedDim;
  const TcGradKernel one = fixed ? tc_grad_partial_kernel<kTcFixedDim> : tc_grad_partial_kernel<0>;
  const TcGradKernel two_blocks = fixed ? tc_grad_partial_kernel<kTcFixedDim, 2> : one;
  bool two = false;
  TcBackwardPlan p;
  p.launch = tc_plan(one, two_blocks, M, D, true, (D + kTcGradDims - 1) / kTcGradDims, device, &two);
  p.kernel = two ? two_blocks : one;
  const TcLaunch& l = p.launch;
  if (nt_xent_tc_backward_finish_setting() != NtXentBackwardFinish::cluster || !fixed || l.dim_chunks != 1 ||
      l.splits > kTcMaxClusterSplits || device_properties(device).major < 9)
    return p;
  const TcGradKernel clustered =
      two ? tc_grad_partial_kernel<kTcFixedDim, 2, true> : tc_grad_partial_kernel<kTcFixedDim, 1, true>;
  const int clusters = tc_resident_clusters(clustered, l, device);
  const std::int64_t blocks = l.row_tiles * l.splits;
  const std::int64_t resident =
      static_cast<std::int64_t>(l.per_sm) * device_properties(device).multiProcessorCount;
  if (clusters > 0 && (l.row_tiles + clusters - 1) / clusters <= (blocks + resident - 1) / resident) {
    p.kernel = clustered;
    p.cluster = true;
  }
  return p;
}

inline void tc_nt_xent_backward(CView z, CView znorm, CView row_lse, float tau, float dloss, View dz,
                                Device dev, cudaStream_t stream) {
  const std::int64_t M = z.shape()[0], D = z.shape()[1];
  const TcBackwardPlan p = tc_backward_plan(M, D, dev.index());
  const TcLaunch& l = p.launch;
  const float inv_tau = 1.0f / tau, scale = dloss * inv_tau / static_cast<float>(M);
  // reads znorm itself: the partial kernel rounds each staged panel to TF32 in shared memory
  if (p.cluster) {
    launch_clustered(p.kernel, l.grid(), dim3(1, static_cast<unsigned>(l.splits), 1), kTcThreads, l.smem,
                     stream, znorm.data(), row_lse.data(), M, D, l.layout.padded, l.layout.stride,
                     l.layout.stages, kTcLog2e * inv_tau, l.col_tiles, nullptr, z.data(), M / 2, scale,
                     dz.data());
    FOVEA_CHECK_LAUNCH("tc_grad_partial_kernel (clusters)", "z ", z.shape().str(), ", ", l.splits, " splits");
    return;
  }
  Tensor part(Shape{l.splits * M * D}, dev);
  launch_dependent(dev.index(), p.kernel, l.grid(), kTcThreads, l.smem, stream, znorm.data(), row_lse.data(),
                   M, D, l.layout.padded, l.layout.stride, l.layout.stages, kTcLog2e * inv_tau, l.col_tiles,
                   part.data(), nullptr, std::int64_t{0}, 0.0f, nullptr);
  FOVEA_CHECK_LAUNCH("tc_grad_partial_kernel", "z ", z.shape().str(), ", ", l.splits, " splits");
  launch_dependent(dev.index(), ct_grad_finish_kernel<PairMode::symmetric>, grid_for(M * 32, dev.index()),
                   kBlock, 0, stream, part.data(), l.splits, M, D, z.data(), znorm.data(), znorm.data(),
                   M / 2, row_lse.data(), inv_tau, scale, dz.data());
  FOVEA_CHECK_LAUNCH("ct_grad_finish_kernel", "z ", z.shape().str());
}

}  // namespace fovea::cuda::detail
