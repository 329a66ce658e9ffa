// kernels/contrastive.cuh: fused NT-Xent and InfoNCE on the GPU (contracts in
// include/fovea/ops/contrastive.hpp; design in docs/losses.md).
//
// Rows are normalised first (one warp per row). The similarity matrix S = A Bᵀ (A = zhat, B = zhat for
// NT-Xent; A = qhat, B = queue for InfoNCE) is never written to device memory: a block owns a 64-row
// tile of A and walks a range of 64-column tiles of B; each tile product is built in shared memory
// from 32-dim chunks (fp32 FMA, zero-padded at the edges, so any D >= 1 works), and each thread folds
// its 4 x 4 similarities into a running log-sum-exp per row (math::OnlineLse). The column range is
// split over gridDim.y blocks so small batches still fill the GPU; one block merges the partial
// (max, sum) pairs per row in a fixed order, writes row_lse and the mean loss (deterministic).
// The backward is a second tiled pass: it rebuilds each tile of S, forms G = P (+ Pᵀ for NT-Xent) from
// the saved row_lse, stages G and the matching rows of B in shared memory and accumulates
// dA = G B for a 64-row x 128-dim output tile in registers; partial sums per column split go to a
// scratch buffer that a warp-per-row pass adds up, together with the positive's term and the
// backward of the normalisation. Accuracy counts, per row, the candidates above the positive with the
// same tiles. The positive's similarity is a sequential fmaf dot product, bitwise equal to the one the
// tiles compute. NT-Xent's forward and backward can instead run their tiles on tensor cores
// (contrastive_tc.cuh, TF32), when the caller asks for it and D and the device allow.
#pragma once

#include <algorithm>
#include <cstdint>

#include "common.cuh"
#include "fovea/cpu/contrastive.hpp"
#include "fovea/cuda/contrastive.hpp"

namespace fovea::cuda::detail {

constexpr int kCtTile = 64;       // rows of A and columns (rows of B) per similarity tile
constexpr int kCtTileK = 32;      // dims per shared-memory chunk of the similarity product
constexpr int kCtTileD = 128;     // gradient dims per block in the backward
constexpr int kCtThreads = 256;   // 16 x 16: thread (ty, tx) owns rows ty + 16 r and columns tx + 16 c
constexpr int kCtPad = kCtTile + 1;  // padded row of a transposed chunk: conflict-free stores
constexpr int kCtChunk = kCtTileK * kCtPad;
constexpr int kCtReduceThreads = 1024;
constexpr int kCtGradRegion = kCtTile * kCtTileD > 2 * kCtChunk ? kCtTile * kCtTileD : 2 * kCtChunk;
constexpr std::size_t kCtGradSmemBytes = sizeof(float) * (kCtGradRegion + kCtTile * kCtPad);

enum class PairMode { symmetric, queue };  // NT-Xent (A = B, diagonal masked) or InfoNCE (A vs queue)

__device__ __forceinline__ float ct_warp_sum(float v) {
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
  return v;
}

// Four consecutive floats at p: one 16-byte load when vec (p 16-byte aligned), else four in order;
// cg: through L2 only (data another block wrote in this launch or the last).
__device__ __forceinline__ float4 ct_load4(const float* p, bool vec, bool cg = false) {
  if (vec) return cg ? __ldcg(reinterpret_cast<const float4*>(p)) : *reinterpret_cast<const float4*>(p);
  if (cg) return make_float4(__ldcg(p), __ldcg(p + 1), __ldcg(p + 2), __ldcg(p + 3));
  return make_float4(p[0], p[1], p[2], p[3]);
}
__device__ __forceinline__ void ct_store4(float* p, float4 v, bool vec) {
  if (vec) {
    *reinterpret_cast<float4*>(p) = v;
  } else {
    p[0] = v.x, p[1] = v.y, p[2] = v.z, p[3] = v.w;
  }
}
__device__ __forceinline__ bool ct_aligned16(const void* p) {
  return (reinterpret_cast<std::uintptr_t>(p) & 15) == 0;
}

// acc[r][c] = a[r0 + ty + 16 r] . b[c0 + tx + 16 c] (sequential fmaf over the dims; rows beyond
// rows_a / rows_b read as zeros). Ends with a barrier, so the caller may reuse As and Bs.
__device__ __forceinline__ void ct_tile_dots(const float* __restrict__ a, std::int64_t rows_a,
                                             const float* __restrict__ b, std::int64_t rows_b, std::int64_t D,
                                             std::int64_t r0, std::int64_t c0, float* As, float* Bs,
                                             float (&acc)[4][4]) {
  const int t = threadIdx.x, tx = t & 15, ty = t >> 4;
#pragma unroll
  for (int r = 0; r < 4; ++r)
#pragma unroll
    for (int c = 0; c < 4; ++c) acc[r][c] = 0.0f;
  for (std::int64_t k0 = 0; k0 < D; k0 += kCtTileK) {
#pragma unroll
    for (int it = 0; it < kCtTile * kCtTileK / kCtThreads; ++it) {
      const int e = t + it * kCtThreads;
      const int row = e / kCtTileK, k = e % kCtTileK;
      const std::int64_t gk = k0 + k, ga = r0 + row, gb = c0 + row;
      As[k * kCtPad + row] = (ga < rows_a && gk < D) ? a[ga * D + gk] : 0.0f;
      Bs[k * kCtPad + row] = (gb < rows_b && gk < D) ? b[gb * D + gk] : 0.0f;
    }
    __syncthreads();
#pragma unroll 8
    for (int k = 0; k < kCtTileK; ++k) {
      float av[4], bv[4];
#pragma unroll
      for (int r = 0; r < 4; ++r) av[r] = As[k * kCtPad + ty + 16 * r];
#pragma unroll
      for (int c = 0; c < 4; ++c) bv[c] = Bs[k * kCtPad + tx + 16 * c];
#pragma unroll
      for (int r = 0; r < 4; ++r)
#pragma unroll
        for (int c = 0; c < 4; ++c) acc[r][c] = fmaf(av[r], bv[c], acc[r][c]);
    }
    __syncthreads();
  }
}

// Column tiles [begin, end) of split blockIdx.y out of gridDim.y.
__device__ __forceinline__ void ct_split_range(std::int64_t col_tiles, std::int64_t& begin, std::int64_t& end) {
  begin = col_tiles * blockIdx.y / gridDim.y;
  end = col_tiles * (blockIdx.y + 1) / gridDim.y;
}

__device__ __forceinline__ bool ct_candidate(PairMode mode, std::int64_t i, std::int64_t j, std::int64_t cols) {
  return j < cols && (mode == PairMode::queue || j != i);
}

// zn = z / max(||z||, eps), one warp per row.
__global__ void __launch_bounds__(kBlock)
    ct_normalize_kernel(const float* z, std::int64_t rows, std::int64_t D, float* zn) {
  const int lane = threadIdx.x & 31;
  const std::int64_t warps = static_cast<std::int64_t>(gridDim.x) * (blockDim.x / 32);
  for (std::int64_t i = (static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / 32; i < rows;
       i += warps) {
    const float* zi = z + i * D;
    float ss = 0.0f;
    for (std::int64_t d = lane; d < D; d += 32) ss = fmaf(zi[d], zi[d], ss);
    const float inv = math::inverse_norm(ct_warp_sum(ss));
    for (std::int64_t d = lane; d < D; d += 32) zn[i * D + d] = zi[d] * inv;
  }
}

// out[i] = scale * a[i] . b[(i + shift) mod rows], one thread per row, fmaf in the tiles' order.
__global__ void __launch_bounds__(kBlock) ct_positive_kernel(const float* a, const float* b, std::int64_t rows,
                                                             std::int64_t D, std::int64_t shift, float scale,
                                                             float* out) {
  const std::int64_t stride = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
  for (std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < rows; i += stride) {
    const float* ai = a + i * D;
    const float* bi = b + ((i + shift) % rows) * D;
    float acc = 0.0f;
    for (std::int64_t d = 0; d < D; ++d) acc = fmaf(ai[d], bi[d], acc);
    out[i] = acc * scale;
  }
}

// Partial (max, sum) of exp(s_ij) per row over this block's column tiles.
template <PairMode kMode>
__global__ void __launch_bounds__(kCtThreads)
    ct_lse_partial_kernel(const float* a, std::int64_t rows, const float* b, std::int64_t cols, std::int64_t D,
                          float inv_tau, std::int64_t col_tiles, float* part_m, float* part_l) {
  __shared__ float As[kCtChunk], Bs[kCtChunk];
  const int tx = threadIdx.x & 15, ty = threadIdx.x >> 4;
  const std::int64_t r0 = static_cast<std::int64_t>(blockIdx.x) * kCtTile;
  std::int64_t begin, end;
  ct_split_range(col_tiles, begin, end);
  math::OnlineLse lse[4];
  for (std::int64_t ct = begin; ct < end; ++ct) {
    const std::int64_t c0 = ct * kCtTile;
    float s[4][4];
    ct_tile_dots(a, rows, b, cols, D, r0, c0, As, Bs, s);
#pragma unroll
    for (int r = 0; r < 4; ++r)
#pragma unroll
      for (int c = 0; c < 4; ++c)
        if (ct_candidate(kMode, r0 + ty + 16 * r, c0 + tx + 16 * c, cols)) lse[r].add(s[r][c] * inv_tau);
  }
#pragma unroll
  for (int r = 0; r < 4; ++r) {
#pragma unroll
    for (int off = 8; off > 0; off >>= 1) {
      const float om = __shfl_xor_sync(0xffffffffu, lse[r].m, off);
      const float ol = __shfl_xor_sync(0xffffffffu, lse[r].l, off);
      lse[r].merge(om, ol);
    }
    const std::int64_t i = r0 + ty + 16 * r;
    if (tx == 0 && i < rows) {
      part_m[blockIdx.y * rows + i] = lse[r].m;
      part_l[blockIdx.y * rows + i] = lse[r].l;
    }
  }
}

// Per row: candidates (not the row itself nor its positive) whose similarity beats s_pos[i].
template <PairMode kMode>
__global__ void __launch_bounds__(kCtThreads)
    ct_count_partial_kernel(const float* a, std::int64_t rows, const float* b, std::int64_t cols, std::int64_t D,
                            std::int64_t shift, const float* s_pos, std::int64_t col_tiles, float* part_count) {
  __shared__ float As[kCtChunk], Bs[kCtChunk];
  const int tx = threadIdx.x & 15, ty = threadIdx.x >> 4;
  const std::int64_t r0 = static_cast<std::int64_t>(blockIdx.x) * kCtTile;
  std::int64_t begin, end;
  ct_split_range(col_tiles, begin, end);
  float sp[4];
  std::int64_t pos[4];
  int count[4];
#pragma unroll
  for (int r = 0; r < 4; ++r) {
    const std::int64_t i = r0 + ty + 16 * r;
    sp[r] = i < rows ? s_pos[i] : 0.0f;
    pos[r] = kMode == PairMode::symmetric ? (i + shift) % rows : -1;
    count[r] = 0;
  }
  for (std::int64_t ct = begin; ct < end; ++ct) {
    const std::int64_t c0 = ct * kCtTile;
    float s[4][4];
    ct_tile_dots(a, rows, b, cols, D, r0, c0, As, Bs, s);
#pragma unroll
    for (int r = 0; r < 4; ++r)
#pragma unroll
      for (int c = 0; c < 4; ++c) {
        const std::int64_t j = c0 + tx + 16 * c;
        if (ct_candidate(kMode, r0 + ty + 16 * r, j, cols) && j != pos[r] && s[r][c] > sp[r]) ++count[r];
      }
  }
#pragma unroll
  for (int r = 0; r < 4; ++r) {
#pragma unroll
    for (int off = 8; off > 0; off >>= 1) count[r] += __shfl_xor_sync(0xffffffffu, count[r], off);
    const std::int64_t i = r0 + ty + 16 * r;
    if (tx == 0 && i < rows) part_count[blockIdx.y * rows + i] = static_cast<float>(count[r]);
  }
}

// Sum over kCtReduceThreads threads in a fixed order; valid in thread 0.
__device__ double ct_block_sum(double v, double* shared) {
  __syncthreads();
  shared[threadIdx.x] = v;
  __syncthreads();
  for (int s = blockDim.x / 2; s > 0; s >>= 1) {
    if (static_cast<int>(threadIdx.x) < s) shared[threadIdx.x] += shared[threadIdx.x + s];
    __syncthreads();
  }
  return shared[0];
}

// One block: merges the splits of each row (plus the positive when it is not among the tiles'
// columns), writes row_lse and loss = mean(row_lse - s_pos).
__global__ void __launch_bounds__(kCtReduceThreads)
    ct_lse_combine_kernel(const float* part_m, const float* part_l, int splits, std::int64_t rows, const float* s_pos,
                          bool pos_in_lse, float* row_lse, float* loss) {
  __shared__ double shared[kCtReduceThreads];
  double total = 0.0;
  for (std::int64_t i = threadIdx.x; i < rows; i += blockDim.x) {
    math::OnlineLse acc;
    for (int s = 0; s < splits; ++s) acc.merge(part_m[s * rows + i], part_l[s * rows + i]);
    if (pos_in_lse) acc.add(s_pos[i]);
    const float lse = acc.value();
    row_lse[i] = lse;
    total += static_cast<double>(lse) - s_pos[i];
  }
  total = ct_block_sum(total, shared);
  if (threadIdx.x == 0) loss[0] = static_cast<float>(total / static_cast<double>(rows));
}

__global__ void __launch_bounds__(kCtReduceThreads)
    ct_accuracy_combine_kernel(const float* part_count, int splits, std::int64_t rows, float* accuracy) {
  __shared__ double shared[kCtReduceThreads];
  double top1 = 0.0, top5 = 0.0;
  for (std::int64_t i = threadIdx.x; i < rows; i += blockDim.x) {
    float c = 0.0f;
    for (int s = 0; s < splits; ++s) c += part_count[s * rows + i];
    top1 += c < 1.0f ? 1.0 : 0.0;
    top5 += c < 5.0f ? 1.0 : 0.0;
  }
  top1 = ct_block_sum(top1, shared);
  top5 = ct_block_sum(top5, shared);
  if (threadIdx.x == 0) {
    accuracy[0] = static_cast<float>(top1 / static_cast<double>(rows));
    accuracy[1] = static_cast<float>(top5 / static_cast<double>(rows));
  }
}

// part[split][i][d] = sum_j G_ij b[j][d] over this block's column tiles, for dims
// [blockIdx.z * 128, + 128): G_ij = exp(s_ij - lse_i) (+ exp(s_ij - lse_j) when symmetric), 0 on the
// diagonal and beyond the edges.
template <PairMode kMode>
__global__ void __launch_bounds__(kCtThreads)
    ct_grad_partial_kernel(const float* a, std::int64_t rows, const float* b, std::int64_t cols, std::int64_t D,
                           float inv_tau, const float* lse, std::int64_t col_tiles, float* part) {
  extern __shared__ float ct_smem[];
  float* As = ct_smem;
  float* Bs = ct_smem + kCtChunk;
  float* Zs = ct_smem;  // reuses As and Bs once a tile's similarities are in registers
  float* Gs = ct_smem + kCtGradRegion;
  const int t = threadIdx.x, tx = t & 15, ty = t >> 4;
  const std::int64_t r0 = static_cast<std::int64_t>(blockIdx.x) * kCtTile;
  const std::int64_t d0 = static_cast<std::int64_t>(blockIdx.z) * kCtTileD;
  std::int64_t begin, end;
  ct_split_range(col_tiles, begin, end);
  float lse_row[4];
#pragma unroll
  for (int r = 0; r < 4; ++r) {
    const std::int64_t i = r0 + ty + 16 * r;
    lse_row[r] = i < rows ? lse[i] : 0.0f;
  }
  float acc[4][8];
#pragma unroll
  for (int r = 0; r < 4; ++r)
#pragma unroll
    for (int c = 0; c < 8; ++c) acc[r][c] = 0.0f;

  for (std::int64_t ct = begin; ct < end; ++ct) {
    const std::int64_t c0 = ct * kCtTile;
    float s[4][4];
    ct_tile_dots(a, rows, b, cols, D, r0, c0, As, Bs, s);
#pragma unroll
    for (int c = 0; c < 4; ++c) {
      const std::int64_t j = c0 + tx + 16 * c;
      const float lse_col = (kMode == PairMode::symmetric && j < cols) ? lse[j] : 0.0f;
#pragma unroll
      for (int r = 0; r < 4; ++r) {
        const std::int64_t i = r0 + ty + 16 * r;
        float g = 0.0f;
        if (i < rows && ct_candidate(kMode, i, j, cols)) {
          const float sv = s[r][c] * inv_tau;
          g = expf(sv - lse_row[r]);
          if (kMode == PairMode::symmetric) g += expf(sv - lse_col);
        }
        Gs[(tx + 16 * c) * kCtPad + ty + 16 * r] = g;
      }
    }
    for (int e = t; e < kCtTile * kCtTileD; e += kCtThreads) {
      const int jj = e / kCtTileD, d = e % kCtTileD;
      const std::int64_t gj = c0 + jj, gd = d0 + d;
      Zs[e] = (gj < cols && gd < D) ? b[gj * D + gd] : 0.0f;
    }
    __syncthreads();
#pragma unroll 4
    for (int jj = 0; jj < kCtTile; ++jj) {
      float gv[4], zv[8];
#pragma unroll
      for (int r = 0; r < 4; ++r) gv[r] = Gs[jj * kCtPad + ty + 16 * r];
#pragma unroll
      for (int c = 0; c < 8; ++c) zv[c] = Zs[jj * kCtTileD + tx + 16 * c];
#pragma unroll
      for (int r = 0; r < 4; ++r)
#pragma unroll
        for (int c = 0; c < 8; ++c) acc[r][c] = fmaf(gv[r], zv[c], acc[r][c]);
    }
    __syncthreads();
  }
#pragma unroll
  for (int r = 0; r < 4; ++r) {
    const std::int64_t i = r0 + ty + 16 * r;
    if (i >= rows) continue;
#pragma unroll
    for (int c = 0; c < 8; ++c) {
      const std::int64_t d = d0 + tx + 16 * c;
      if (d < D) part[(blockIdx.y * rows + i) * D + d] = acc[r][c];
    }
  }
}

// Dims per lane-chunk of ct_finish_row4: rows of up to 128 kCtFinishCache dims.
constexpr int kCtFinishCache = 2;

// The finish of one row of up to 128 kCtFinishCache dims, a multiple of 4, by one warp: dzhat = scale
// (alpha v + the splits' partials in split order), then dz (the row dzi) through the normalisation
// of the row (zi, its zhat ni). Lane l takes dims 4 l + 128 c .. + 3 and keeps them in registers
// between the two passes (the partials are read once); part4(s, d) gives split s's partial of dims
// d .. d + 3. vec: v, zi, ni and dzi are read and written as float4 (16-byte aligned), else one float
// at a time in the same order (a misaligned view gives the same bits). ct_grad_finish_kernel reads
// the partials from global memory, the tensor-core backward's clusters (contrastive_tc.cuh) from
// their blocks' shared memory: the same operations in the same order, so the same bits.
template <class Part4>
__device__ __forceinline__ void ct_finish_row4(std::int64_t D, int splits, float alpha, const float* v,
                                               const float* zi, const float* ni, float scale, bool vec,
                                               float* dzi, Part4&& part4) {
  const int lane = threadIdx.x & 31;
  float dot = 0.0f, ss = 0.0f;
  float4 cache[kCtFinishCache] = {}, nc[kCtFinishCache] = {};
#pragma unroll
  for (int c = 0; c < kCtFinishCache; ++c) {
    const std::int64_t d = 4 * lane + 128 * c;
    if (d < D) {
      const float4 vv = ct_load4(v + d, vec);
      float4 g = make_float4(alpha * vv.x, alpha * vv.y, alpha * vv.z, alpha * vv.w);
#pragma unroll 8
      for (int s = 0; s < splits; ++s) {
        const float4 q = part4(s, d);
        g.x += q.x, g.y += q.y, g.z += q.z, g.w += q.w;
      }
      g = make_float4(scale * g.x, scale * g.y, scale * g.z, scale * g.w);
      const float4 n = ct_load4(ni + d, vec), zz = ct_load4(zi + d, vec);
      dot = fmaf(n.x, g.x, dot), dot = fmaf(n.y, g.y, dot), dot = fmaf(n.z, g.z, dot);
      dot = fmaf(n.w, g.w, dot);
      ss = fmaf(zz.x, zz.x, ss), ss = fmaf(zz.y, zz.y, ss), ss = fmaf(zz.z, zz.z, ss);
      ss = fmaf(zz.w, zz.w, ss);
      cache[c] = g;
      nc[c] = n;
    }
  }
  const math::NormalizeBackward f{sqrtf(ct_warp_sum(ss)), ct_warp_sum(dot)};
#pragma unroll
  for (int c = 0; c < kCtFinishCache; ++c) {
    const std::int64_t d = 4 * lane + 128 * c;
    if (d < D)
      ct_store4(dzi + d,
                make_float4(f(nc[c].x, cache[c].x), f(nc[c].y, cache[c].y), f(nc[c].z, cache[c].z),
                            f(nc[c].w, cache[c].w)),
                vec);
  }
}

// One warp per row i: dzhat = scale (sum over splits of part + alpha v), v = other[(i + shift) mod rows]
// (NT-Xent: the positive's zhat, alpha = -2; InfoNCE: khat_i, alpha = p_i0 - 1), then dz through the
// normalisation of row i. Rows of up to 128 kCtFinishCache dims, a multiple of 4, with every row
// 16-byte aligned, are read as float4 and keep dzhat in registers (ct_finish_row4).
template <PairMode kMode>
__global__ void __launch_bounds__(kBlock)
    ct_grad_finish_kernel(const float* part, int splits, std::int64_t rows, std::int64_t D, const float* z,
                          const float* zn, const float* other, std::int64_t shift, const float* lse, float inv_tau,
                          float scale, float* dz) {
  pdl_trigger();  // the tensor-core backward launches it as a programmatic dependent launch
  pdl_wait();
  const int lane = threadIdx.x & 31;
  const bool chunked = D % 4 == 0 && D <= 128 * kCtFinishCache;
  const bool vec = chunked && ct_aligned16(part) && ct_aligned16(z) && ct_aligned16(zn) &&
                   ct_aligned16(other) && ct_aligned16(dz);
  const std::int64_t warps = static_cast<std::int64_t>(gridDim.x) * (blockDim.x / 32);
  for (std::int64_t i = (static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / 32; i < rows;
       i += warps) {
    const float* zi = z + i * D;
    const float* ni = zn + i * D;
    const float* v = other + ((i + shift) % rows) * D;
    float alpha = -2.0f;
    if (kMode == PairMode::queue) {
      float dot = 0.0f;
      for (std::int64_t d = lane; d < D; d += 32) dot = fmaf(ni[d], v[d], dot);
      alpha = expf(ct_warp_sum(dot) * inv_tau - lse[i]) - 1.0f;
    }
    const auto dzhat = [&](std::int64_t d) {
      float g = alpha * v[d];
#pragma unroll 8
      for (int s = 0; s < splits; ++s) g += __ldcg(part + (s * rows + i) * D + d);
      return scale * g;
    };
    if (chunked) {
      ct_finish_row4(D, splits, alpha, v, zi, ni, scale, vec, dz + i * D, [&](int s, std::int64_t d) {
        return ct_load4(part + (s * rows + i) * D + d, vec, true);
      });
      continue;
    }
    float dot = 0.0f, ss = 0.0f;
    for (std::int64_t d = lane; d < D; d += 32) {
      dot = fmaf(ni[d], dzhat(d), dot);
      ss = fmaf(zi[d], zi[d], ss);
    }
    const math::NormalizeBackward f{sqrtf(ct_warp_sum(ss)), ct_warp_sum(dot)};
    for (std::int64_t d = lane; d < D; d += 32) dz[i * D + d] = f(ni[d], dzhat(d));
  }
}

__global__ void __launch_bounds__(kBlock) ct_enqueue_kernel(float* queue, std::int64_t K, const float* keys,
                                                            std::int64_t N, std::int64_t D, std::int64_t head) {
  const std::int64_t total = N * D;
  const std::int64_t stride = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
  for (std::int64_t e = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < total; e += stride) {
    const std::int64_t i = e / D, d = e % D;
    queue[((head + i) % K) * D + d] = keys[e];
  }
}

// Row tiles, column tiles and column splits of a tiled pass: enough blocks for about two waves.
struct CtGrid {
  std::int64_t row_tiles = 0, col_tiles = 0, dim_chunks = 1;
  int splits = 1;
  dim3 grid() const {
    return dim3(static_cast<unsigned>(row_tiles), static_cast<unsigned>(splits), static_cast<unsigned>(dim_chunks));
  }
};
inline CtGrid ct_grid(std::int64_t rows, std::int64_t cols, std::int64_t dim_chunks, int device) {
  CtGrid g;
  g.row_tiles = (rows + kCtTile - 1) / kCtTile;
  g.col_tiles = (cols + kCtTile - 1) / kCtTile;
  g.dim_chunks = dim_chunks;
  const std::int64_t target = 2 * static_cast<std::int64_t>(device_properties(device).multiProcessorCount);
  const std::int64_t per_split = g.row_tiles * dim_chunks;
  const std::int64_t want = (target + per_split - 1) / per_split;
  g.splits = static_cast<int>(std::clamp<std::int64_t>(want, 1, std::min<std::int64_t>(g.col_tiles, 65535)));
  FOVEA_CHECK(g.row_tiles <= 0x7fffffff && dim_chunks <= 65535, "contrastive loss: ", rows, " rows of ", dim_chunks,
              " dim chunks exceed the CUDA grid");
  return g;
}

inline void ct_normalize(CView z, View zn, cudaStream_t stream, int dev) {
  const std::int64_t rows = z.shape()[0], D = z.shape()[1];
  ct_normalize_kernel<<<grid_for(rows * 32, dev), kBlock, 0, stream>>>(z.data(), rows, D, zn.data());
  FOVEA_CHECK_LAUNCH("ct_normalize_kernel", "rows ", z.shape().str());
}

inline void ct_positive(const float* a, const float* b, std::int64_t rows, std::int64_t D, std::int64_t shift,
                        float scale, float* out, cudaStream_t stream, int dev) {
  ct_positive_kernel<<<grid_for(rows, dev), kBlock, 0, stream>>>(a, b, rows, D, shift, scale, out);
  FOVEA_CHECK_LAUNCH("ct_positive_kernel", "rows ", rows, ", D ", D);
}

// Forward: loss and row_lse from normalised a (rows, D) against b (cols, D).
template <PairMode kMode>
void ct_forward(const float* a, std::int64_t rows, const float* b, std::int64_t cols, std::int64_t D,
                std::int64_t shift_b, const float* b_pos, float tau, View loss, View row_lse, Device dev,
                cudaStream_t stream) {
  const CtGrid g = ct_grid(rows, cols, 1, dev.index());
  Tensor scratch(Shape{(2 * g.splits + 1) * rows}, dev);
  float* part_m = scratch.data();
  float* part_l = part_m + g.splits * rows;
  float* s_pos = part_l + g.splits * rows;
  const float inv_tau = 1.0f / tau;
  ct_positive(a, b_pos, rows, D, shift_b, inv_tau, s_pos, stream, dev.index());
  ct_lse_partial_kernel<kMode><<<g.grid(), kCtThreads, 0, stream>>>(a, rows, b, cols, D, inv_tau, g.col_tiles,
                                                                      part_m, part_l);
  FOVEA_CHECK_LAUNCH("ct_lse_partial_kernel", "rows ", rows, ", columns ", cols, ", D ", D);
  ct_lse_combine_kernel<<<1, kCtReduceThreads, 0, stream>>>(part_m, part_l, g.splits, rows, s_pos,
                                                            kMode == PairMode::queue, row_lse.data(), loss.data());
  FOVEA_CHECK_LAUNCH("ct_lse_combine_kernel", "rows ", rows, ", columns ", cols);
}

template <PairMode kMode>
void ct_backward(const float* z, const float* a, std::int64_t rows, const float* b, std::int64_t cols, std::int64_t D,
                 const float* other, std::int64_t shift, const float* lse, float tau, float dloss, View dz, Device dev,
                 cudaStream_t stream) {
  const CtGrid g = ct_grid(rows, cols, (D + kCtTileD - 1) / kCtTileD, dev.index());
  Tensor part(Shape{g.splits * rows * D}, dev);
  const float inv_tau = 1.0f / tau;
  FOVEA_CHECK_CUDA(cudaFuncSetAttribute(ct_grad_partial_kernel<kMode>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                        static_cast<int>(kCtGradSmemBytes)));
  ct_grad_partial_kernel<kMode><<<g.grid(), kCtThreads, kCtGradSmemBytes, stream>>>(a, rows, b, cols, D, inv_tau, lse,
                                                                                     g.col_tiles, part.data());
  FOVEA_CHECK_LAUNCH("ct_grad_partial_kernel", "rows ", rows, ", columns ", cols, ", D ", D);
  const float scale = dloss * inv_tau / static_cast<float>(rows);
  ct_grad_finish_kernel<kMode><<<grid_for(rows * 32, dev.index()), kBlock, 0, stream>>>(
      part.data(), g.splits, rows, D, z, a, other, shift, lse, inv_tau, scale, dz.data());
  FOVEA_CHECK_LAUNCH("ct_grad_finish_kernel", "rows ", rows, ", D ", D);
}

template <PairMode kMode>
void ct_accuracy(const float* a, std::int64_t rows, const float* b, std::int64_t cols, std::int64_t D,
                 const float* b_pos, std::int64_t shift, View accuracy, Device dev, cudaStream_t stream) {
  const CtGrid g = ct_grid(rows, cols, 1, dev.index());
  Tensor scratch(Shape{(g.splits + 1) * rows}, dev);
  float* counts = scratch.data();
  float* s_pos = counts + g.splits * rows;
  ct_positive(a, b_pos, rows, D, shift, 1.0f, s_pos, stream, dev.index());
  ct_count_partial_kernel<kMode><<<g.grid(), kCtThreads, 0, stream>>>(a, rows, b, cols, D, shift, s_pos,
                                                                        g.col_tiles, counts);
  FOVEA_CHECK_LAUNCH("ct_count_partial_kernel", "rows ", rows, ", columns ", cols, ", D ", D);
  ct_accuracy_combine_kernel<<<1, kCtReduceThreads, 0, stream>>>(counts, g.splits, rows, accuracy.data());
  FOVEA_CHECK_LAUNCH("ct_accuracy_combine_kernel", "rows ", rows);
}

}  // namespace fovea::cuda::detail

#include "contrastive_tc.cuh"  // the TF32 tensor-core NT-Xent, built on the helpers above

namespace fovea::cuda {

void l2_normalize_rows(CView z, View zn) {
  const Device dev = zn.device();
  detail::DeviceGuard guard(dev.index());
  detail::ct_normalize(z, zn, detail::stream_for(dev), dev.index());
}

bool nt_xent_tensor_cores_supported(std::int64_t D, int device) { return detail::tc_supported(D, device); }

int& nt_xent_tc_blocks_per_sm() { return detail::nt_xent_tc_blocks_per_sm_setting(); }
NtXentForwardTiles& nt_xent_tc_forward_tiles() { return detail::nt_xent_tc_forward_tiles_setting(); }
NtXentBackwardFinish& nt_xent_tc_backward_finish() { return detail::nt_xent_tc_backward_finish_setting(); }
bool nt_xent_tc_backward_in_clusters(std::int64_t rows, std::int64_t D, int device) {
  detail::DeviceGuard guard(device);
  return detail::tc_backward_plan(rows, D, device).cluster;
}

void nt_xent_forward(CView z, float tau, View loss, View row_lse, View znorm, bool tensor_cores) {
  const std::int64_t M = z.shape()[0], D = z.shape()[1];
  const Device dev = loss.device();
  detail::DeviceGuard guard(dev.index());
  const cudaStream_t stream = detail::stream_for(dev);
  if (tensor_cores && detail::tc_supported(D, dev.index()))
    return detail::tc_nt_xent_forward(z, tau, loss, row_lse, znorm, dev, stream);
  detail::ct_normalize(z, znorm, stream, dev.index());
  detail::ct_forward<detail::PairMode::symmetric>(znorm.data(), M, znorm.data(), M, D, M / 2, znorm.data(), tau, loss,
                                                  row_lse, dev, stream);
}

void nt_xent_backward(CView z, CView znorm, CView row_lse, float tau, float dloss, View dz, bool tensor_cores) {
  const std::int64_t M = z.shape()[0], D = z.shape()[1];
  const Device dev = dz.device();
  detail::DeviceGuard guard(dev.index());
  if (tensor_cores && detail::tc_supported(D, dev.index()))
    return detail::tc_nt_xent_backward(z, znorm, row_lse, tau, dloss, dz, dev, detail::stream_for(dev));
  detail::ct_backward<detail::PairMode::symmetric>(z.data(), znorm.data(), M, znorm.data(), M, D, znorm.data(), M / 2,
                                                   row_lse.data(), tau, dloss, dz, dev, detail::stream_for(dev));
}

void contrastive_accuracy(CView znorm, View accuracy) {
  const std::int64_t M = znorm.shape()[0], D = znorm.shape()[1];
  const Device dev = accuracy.device();
  detail::DeviceGuard guard(dev.index());
  detail::ct_accuracy<detail::PairMode::symmetric>(znorm.data(), M, znorm.data(), M, D, znorm.data(), M / 2, accuracy,
                                                   dev, detail::stream_for(dev));
}

void infonce_forward(CView q, CView k, CView queue, float tau, View loss, View row_lse, View qnorm, View knorm) {
  const std::int64_t N = q.shape()[0], D = q.shape()[1], K = queue.shape()[0];
  const Device dev = loss.device();
  detail::DeviceGuard guard(dev.index());
  const cudaStream_t stream = detail::stream_for(dev);
  detail::ct_normalize(q, qnorm, stream, dev.index());
  detail::ct_normalize(k, knorm, stream, dev.index());
  detail::ct_forward<detail::PairMode::queue>(qnorm.data(), N, queue.data(), K, D, 0, knorm.data(), tau, loss, row_lse,
                                              dev, stream);
}

void infonce_backward(CView q, CView qnorm, CView knorm, CView queue, CView row_lse, float tau, float dloss, View dq) {
  const std::int64_t N = q.shape()[0], D = q.shape()[1], K = queue.shape()[0];
  const Device dev = dq.device();
  detail::DeviceGuard guard(dev.index());
  detail::ct_backward<detail::PairMode::queue>(q.data(), qnorm.data(), N, queue.data(), K, D, knorm.data(), 0,
                                               row_lse.data(), tau, dloss, dq, dev, detail::stream_for(dev));
}

void infonce_accuracy(CView qnorm, CView knorm, CView queue, View accuracy) {
  const std::int64_t N = qnorm.shape()[0], D = qnorm.shape()[1], K = queue.shape()[0];
  const Device dev = accuracy.device();
  detail::DeviceGuard guard(dev.index());
  detail::ct_accuracy<detail::PairMode::queue>(qnorm.data(), N, queue.data(), K, D, knorm.data(), 0, accuracy, dev,
                                               detail::stream_for(dev));
}

void queue_enqueue(View queue, CView keys, std::int64_t head) {
  const std::int64_t K = queue.shape()[0], D = queue.shape()[1], N = keys.shape()[0];
  const Device dev = queue.device();
  detail::DeviceGuard guard(dev.index());
  detail::ct_enqueue_kernel<<<detail::grid_for(N * D, dev.index()), detail::kBlock, 0, detail::stream_for(dev)>>>(
      queue.data(), K, keys.data(), N, D, head);
  FOVEA_CHECK_LAUNCH("ct_enqueue_kernel", "queue ", queue.shape().str(), ", keys ", keys.shape().str());
}

}  // namespace fovea::cuda
