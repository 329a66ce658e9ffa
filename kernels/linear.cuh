// kernels/linear.cuh: every cuBLAS GEMM of fovea: a row-major GEMM on device pointers (cublasGemmEx,
// fp32 storage, TF32 or fp32 compute from math_settings()) and the CUDA twins of the fully connected
// ops (contracts in include/fovea/ops/linear.hpp).
//
// cuBLAS is column-major; a row-major C = op(A) op(B) is the column-major Cᵀ = op(B)ᵀ op(A)ᵀ, so the
// row-major call swaps the operands and M with N and passes the same leading dimensions.
#pragma once

#include <cublas_v2.h>

#include <cstdint>
#include <limits>

#include "check.cuh"
#include "common.cuh"
#include "cublas.cuh"
#include "fovea/cuda/linear.hpp"
#include "fovea/cuda/ops.hpp"
#include "fovea/ops/blas.hpp"

namespace fovea::cuda::detail {

// y[n, o] = b[o] for every row n of y (N, O).
__global__ void __launch_bounds__(kBlock) broadcast_rows_kernel(const float* b, float* y, std::int64_t total,
                                                                std::int64_t O) {
  const std::int64_t stride = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
  for (std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += stride)
    y[i] = b[i % O];
}

}  // namespace fovea::cuda::detail

namespace fovea::cuda {

void gemm(Device device, bool trans_a, bool trans_b, std::int64_t M, std::int64_t N, std::int64_t K, float alpha,
          const float* A, std::int64_t lda, const float* B, std::int64_t ldb, float beta, float* C,
          std::int64_t ldc) {
  constexpr std::int64_t kIntMax = std::numeric_limits<int>::max();
  FOVEA_CHECK(M >= 0 && N >= 0 && K >= 0 && M <= kIntMax && N <= kIntMax && K <= kIntMax && lda <= kIntMax &&
                  ldb <= kIntMax && ldc <= kIntMax,
              "cuda::gemm: sizes M ", M, ", N ", N, ", K ", K, " out of the int range of cuBLAS");
  if (M == 0 || N == 0) return;
  detail::DeviceGuard guard(device.index());
  cublasHandle_t handle = detail::cublas_handle(device);
  const bool tf32 = ::fovea::math_settings().allow_tf32;
  FOVEA_CHECK_CUBLAS(cublasSetMathMode(handle, tf32 ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH));
  const auto op = [](bool t) { return t ? CUBLAS_OP_T : CUBLAS_OP_N; };
  FOVEA_CHECK_CUBLAS(cublasGemmEx(handle, op(trans_b), op(trans_a), static_cast<int>(N), static_cast<int>(M),
                                  static_cast<int>(K), &alpha, B, CUDA_R_32F, static_cast<int>(ldb), A, CUDA_R_32F,
                                  static_cast<int>(lda), &beta, C, CUDA_R_32F, static_cast<int>(ldc),
                                  tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                     "row-major M ", M, ", N ", N, ", K ", K, ", trans_a ", trans_a, ", trans_b ", trans_b,
                     ", lda ", lda, ", ldb ", ldb, ", ldc ", ldc);
}

void linear_forward(CView x, CView w, CView b, View y) {
  const std::int64_t N = y.shape()[0], O = w.shape()[0], F = w.shape()[1];
  if (y.numel() == 0) return;
  const Device dev = y.device();
  detail::DeviceGuard guard(dev.index());
  float beta = 0.0f;
  if (::fovea::detail::is_present(b)) {
    const std::int64_t total = N * O;
    detail::broadcast_rows_kernel<<<detail::grid_for(total, dev.index()), detail::kBlock, 0,
                                    detail::stream_for(dev)>>>(b.data(), y.data(), total, O);
    FOVEA_CHECK_LAUNCH("broadcast_rows_kernel", "bias ", b.shape().str(), ", output ", y.shape().str());
    beta = 1.0f;
  }
  gemm(dev, false, true, N, O, F, 1.0f, x.data(), F, w.data(), F, beta, y.data(), O);
}

void linear_backward_data(CView dy, CView w, View dx) {
  const std::int64_t N = dy.shape()[0], O = w.shape()[0], F = w.shape()[1];
  gemm(dx.device(), false, false, N, F, O, 1.0f, dy.data(), O, w.data(), F, 0.0f, dx.data(), F);
}

void linear_backward_weight(CView x, CView dy, View dw, bool accumulate) {
  const std::int64_t N = dy.shape()[0], O = dw.shape()[0], F = dw.shape()[1];
  gemm(dw.device(), true, false, O, F, N, 1.0f, dy.data(), O, x.data(), F, accumulate ? 1.0f : 0.0f, dw.data(), F);
}

void linear_backward_bias(CView dy, View db) {
  reduce(dy, 0, db.reshaped(Shape{1, db.numel()}), ReduceKind::sum);
}

}  // namespace fovea::cuda
