// fovea/cuda/contrastive.hpp: host-side declarations of the fused CUDA contrastive-loss twins
// (contracts in ops/contrastive.hpp; definitions in kernels/contrastive.cuh).
#pragma once

#include <cstdint>

#include "fovea/core/config.hpp"
#include "fovea/core/tensor.hpp"

#if FOVEA_WITH_CUDA
namespace fovea::cuda {

void l2_normalize_rows(CView z, View zn);
// tensor_cores: run the similarity tiles as TF32 MMAs (kernels/contrastive_tc.cuh) where
// nt_xent_tensor_cores_supported(D, device) (compute capability >= 8.0, D <= 256); the fp32 kernels
// otherwise. The caller decides from nt_xent_kernel() and math_settings() (ops/contrastive.hpp).
bool nt_xent_tensor_cores_supported(std::int64_t D, int device);
// The residency the tensor-core kernels' tile passes aim for: 1 is one block of 8 warps per SM with a
// two-stage pipeline of column panels; 2 is two blocks per SM with one stage each and twice the column
// splits (twice the warps to hide latency; D = 128 only for the backward, and where two blocks do not
// fit an SM the passes run as with 1); 0 (auto, the default) is 2 from 2N = 4096 rows (N >= 2048), 1
// below (measured: two blocks win by 9 % at N = 2048 and 15 % at 4096, and lose by 8 % at N = 1024). Results
// agree within the TF32 tolerances but not bitwise across settings (the split count changes the order of the
// partial sums); each setting is deterministic. First read from the environment variable
// FOVEA_NTXENT_TC_BLOCKS (auto | 1 | 2); set it between ops, not while other threads launch NT-Xent.
// docs/losses.md has the measurements behind the default.
int& nt_xent_tc_blocks_per_sm();
// How the tensor-core forward covers S = zhat zhatᵀ: split (the default) walks every row tile against
// all columns in column splits; symmetric computes each pair of 128-row tiles once (S is symmetric),
// feeding one exponential into a row sum and a column sum, and merges each row's per-tile partial
// sums: half the MMAs and exponentials in R (R - 1) / 2 + ceil(R / 2) blocks for R = ceil(2N / 128)
// row tiles (N = 1024: 128 blocks). symmetric applies where R <= 128 (N <= 8192), tau >= 0.024 (a fixed
// shift replaces the running max: no term may flush to zero) and two 128-row panels fit the
// device's shared memory (D <= 200 or so); elsewhere the split forward runs. Results agree within
// float rounding, not bitwise, across settings; each is deterministic. First read from the
// environment variable FOVEA_NTXENT_TC_FORWARD (auto | split | symmetric); set it between ops.
enum class NtXentForwardTiles { split, symmetric };
NtXentForwardTiles& nt_xent_tc_forward_tiles();
// How the tensor-core backward sums its column splits' partial gradients and finishes dz: kernel (the
// default) writes each split's partial (splits x 2N x D floats) to device memory and a second kernel
// adds them and applies the normalisation's backward; cluster launches each row tile's split blocks as
// one thread block cluster that adds the partials from the blocks' shared memory and finishes dz in
// the same launch (no partials in device memory, one launch fewer). cluster applies where D = 128, the
// device has clusters (compute capability 9.0), the splits are at most 8 and the clusters fit the
// device in as many waves as the plain launch's blocks; elsewhere kernel runs. The two give the same
// bits (the same additions in the same order). First read from the environment variable
// FOVEA_NTXENT_TC_FINISH (auto | kernel | cluster); set it between ops.
enum class NtXentBackwardFinish { kernel, cluster };
NtXentBackwardFinish& nt_xent_tc_backward_finish();
// Whether a tensor-core backward of `rows` (2N) rows of D dims on `device` would finish in clusters
// under the current settings.
bool nt_xent_tc_backward_in_clusters(std::int64_t rows, std::int64_t D, int device);
void nt_xent_forward(CView z, float tau, View loss, View row_lse, View znorm, bool tensor_cores);
void nt_xent_backward(CView z, CView znorm, CView row_lse, float tau, float dloss, View dz, bool tensor_cores);
void contrastive_accuracy(CView znorm, View accuracy);
void infonce_forward(CView q, CView k, CView queue, float tau, View loss, View row_lse, View qnorm, View knorm);
void infonce_backward(CView q, CView qnorm, CView knorm, CView queue, CView row_lse, float tau, float dloss, View dq);
void infonce_accuracy(CView qnorm, CView knorm, CView queue, View accuracy);
void queue_enqueue(View queue, CView keys, std::int64_t head);

}  // namespace fovea::cuda
#endif
