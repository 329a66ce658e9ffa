// fovea/cuda/linear.hpp: host-side declarations of the cuBLAS twins of the fully connected ops and
// of a row-major GEMM on device pointers; contracts in ops/linear.hpp and cpu/gemm.hpp, definitions
// in kernels/linear.cuh. They obey math_settings() (ops/blas.hpp).
#pragma once

#include <cstdint>

#include "fovea/core/config.hpp"
#include "fovea/core/tensor.hpp"

#if FOVEA_WITH_CUDA
namespace fovea::cuda {

// cpu::gemm's contract (row-major, C = alpha op(A) op(B) + beta C) on device pointers of `device`,
// queued on its current stream; TF32 when math_settings().allow_tf32.
void gemm(Device device, bool trans_a, bool trans_b, std::int64_t M, std::int64_t N, std::int64_t K, float alpha,
          const float* A, std::int64_t lda, const float* B, std::int64_t ldb, float beta, float* C,
          std::int64_t ldc);

void linear_forward(CView x, CView w, CView b, View y);
void linear_backward_data(CView dy, CView w, View dx);
void linear_backward_weight(CView x, CView dy, View dw, bool accumulate);
void linear_backward_bias(CView dy, View db);

}  // namespace fovea::cuda
#endif
