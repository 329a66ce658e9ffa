// kernels/gram.cuh: the CUDA twins behind analysis::add_to_feature_gram (fovea/cuda/gram.hpp).
// gram_stats_kernel gives each feature column a thread that walks the rows in order, so the column's
// mean and standard deviation have the CPU's bits; then, a block of columns at a time,
// gram_block_kernel writes the centred (standardised) block in double, element-parallel, and
// cublasDsyrk adds its Gram to an n x n double Gram on the device, read back once per call.
#pragma once

#include <cublas_v2.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <vector>

#include "common.cuh"
#include "cublas.cuh"
#include "fovea/cuda/gram.hpp"
#include "fovea/ops/math.hpp"

namespace fovea::cuda::detail {

inline constexpr unsigned long long kGramNoBadValue = ~0ull;

// Per column c of x (n rows, f values per row), one thread walking the rows in order, as the CPU
// does: the mean in double, with standardise the standard deviation (ddof 1, squares rounded one at
// a time), so both have the CPU's bits. scale[c] = the deviation (standardise) or 1 (centred), or 0
// for a column whose values all equal its first (counted in *constants; it adds nothing). A column
// holding a non-finite value puts the row-major index i * f + c of its first one into *bad
// (atomicMin), so the host can name the first non-finite value of x in row-major order.
__global__ void __launch_bounds__(kBlock)
    gram_stats_kernel(const float* x, std::int64_t n, std::int64_t f, bool standardise, double* mean_out,
                      double* scale_out, unsigned long long* constants, unsigned long long* bad) {
  const std::int64_t stride = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
  for (std::int64_t c = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; c < f;
       c += stride) {
    const float* col = x + c;
    const float first = col[0];
    double mean = 0.0;
    bool varies = false;
    std::int64_t bad_row = -1;
    for (std::int64_t i = 0; i < n; ++i) {
      const float v = col[i * f];
      if (bad_row < 0 && !isfinite(v)) bad_row = i;
      mean += static_cast<double>(v);
      varies |= v != first;
    }
    mean /= static_cast<double>(n);
    double scale = varies ? 1.0 : 0.0;
    if (bad_row >= 0) {
      atomicMin(bad, static_cast<unsigned long long>(bad_row * f + c));
      scale = 0.0;
    } else if (!varies) {
      atomicAdd(constants, 1ull);
    } else if (standardise) {
      double squares = 0.0;
      for (std::int64_t i = 0; i < n; ++i) {
        const double d = static_cast<double>(col[i * f]) - mean;
        squares += math::dmul_rn(d, d);
      }
      scale = sqrt(squares / static_cast<double>(n - 1));
    }
    mean_out[c] = mean;
    scale_out[c] = scale;
  }
}

// Columns c0 .. c0 + w - 1 of x centred (and standardised) into z[i * w + c]: Z row-major (n, w),
// which is column-major (w, n) with leading dimension w for cublasDsyrk; zeros where scale is 0. One
// element per thread, grid-stride: reads and writes coalesced along the columns.
__global__ void __launch_bounds__(kBlock)
    gram_block_kernel(const float* x, std::int64_t n, std::int64_t f, std::int64_t c0, std::int64_t w,
                      bool standardise, const double* mean, const double* scale, double* z) {
  const std::int64_t total = n * w, stride = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
  for (std::int64_t e = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < total;
       e += stride) {
    const std::int64_t i = e / w, c = e - i * w;
    const double s = scale[c0 + c];
    const double d = static_cast<double>(x[i * f + c0 + c]) - mean[c0 + c];
    z[e] = s == 0.0 ? 0.0 : standardise ? d / s : d;
  }
}

// Columns per block: Z holds at most 2^23 doubles (64 MiB), at least 256 columns.
inline std::int64_t gram_block_columns(std::int64_t n, std::int64_t f) {
  return std::min(f, std::clamp<std::int64_t>((std::int64_t{1} << 23) / n, 256, std::int64_t{1} << 16));
}

}  // namespace fovea::cuda::detail

namespace fovea::cuda {

FeatureGramResult add_feature_gram(CView x, bool standardise, double* g) {
  const Device dev = x.device();
  const std::int64_t n = x.shape().rank() == 0 ? 1 : x.shape()[0];
  const std::int64_t f = n == 0 ? 0 : x.numel() / n;
  FOVEA_CHECK(n >= 2, "add_feature_gram: needs at least 2 rows, got ", x.shape().str());
  FeatureGramResult result;
  if (f == 0) return result;
  constexpr std::int64_t kIntMax = std::numeric_limits<int>::max();
  const std::int64_t w = detail::gram_block_columns(n, f);
  FOVEA_CHECK(n <= kIntMax && w <= kIntMax, "add_feature_gram: ", n, " rows are beyond cuBLAS's int range");
  detail::DeviceGuard guard(dev.index());
  const cudaStream_t stream = detail::stream_for(dev);
  // Device scratch: doubles and counters in float tensors (the allocator aligns every block to 256
  // bytes). Per column its mean and scale; the block Z; the n x n Gram; two counters.
  Tensor stats(Shape{4 * f}, dev), z(Shape{2 * n * w}, dev), gram(Shape{2 * n * n}, dev),
      counters(Shape{4}, dev);
  auto* mean = reinterpret_cast<double*>(stats.data());
  double* scale = mean + f;
  auto* zd = reinterpret_cast<double*>(z.data());
  auto* gd = reinterpret_cast<double*>(gram.data());
  auto* constants = reinterpret_cast<unsigned long long*>(counters.data());
  unsigned long long* bad = constants + 1;
  FOVEA_CHECK_CUDA(cudaMemsetAsync(constants, 0, sizeof(unsigned long long), stream));
  FOVEA_CHECK_CUDA(cudaMemsetAsync(bad, 0xff, sizeof(unsigned long long), stream));
  detail::gram_stats_kernel<<<detail::grid_for(f, dev.index()), detail::kBlock, 0, stream>>>(
      x.data(), n, f, standardise, mean, scale, constants, bad);
  FOVEA_CHECK_LAUNCH("gram_stats_kernel", "rows ", n, ", columns ", f);
  unsigned long long found[2] = {0, 0};
  copy(counters.cview(), View(reinterpret_cast<float*>(found), Shape{4}, Device::cpu()));
  if (found[1] != detail::kGramNoBadValue) {  // nothing is summed: the caller throws
    result.finite = false;
    result.bad_row = static_cast<std::int64_t>(found[1] / static_cast<unsigned long long>(f));
    result.bad_column = static_cast<std::int64_t>(found[1] % static_cast<unsigned long long>(f));
    const std::int64_t at = result.bad_row * f + result.bad_column;
    copy(CView(x.data() + at, Shape{1}, dev), View(&result.bad_value, Shape{1}, Device::cpu()));
    return result;
  }
  result.constants = static_cast<std::int64_t>(found[0]);
  FOVEA_CHECK_CUDA(cudaMemsetAsync(gd, 0, gram.bytes(), stream), "the ", n, " x ", n, " device Gram");
  cublasHandle_t handle = detail::cublas_handle(dev);
  const double one = 1.0;
  for (std::int64_t c0 = 0; c0 < f; c0 += w) {
    const std::int64_t width = std::min(w, f - c0);
    detail::gram_block_kernel<<<detail::grid_for(n * width, dev.index()), detail::kBlock, 0, stream>>>(
        x.data(), n, f, c0, width, standardise, mean, scale, zd);
    FOVEA_CHECK_LAUNCH("gram_block_kernel", "rows ", n, ", columns ", c0, "..", c0 + width, " of ", f);
    // Z row-major (n, width) is column-major B (width, n), ld width: B^T B = Z Z^T, lower triangle.
    FOVEA_CHECK_CUBLAS(
        cublasDsyrk(handle, CUBLAS_FILL_MODE_LOWER, CUBLAS_OP_T, static_cast<int>(n), static_cast<int>(width),
                    &one, zd, static_cast<int>(width), &one, gd, static_cast<int>(n)),
        "n ", n, ", k ", width);
  }
  std::vector<double> host(static_cast<std::size_t>(n * n));
  copy(gram.cview(), View(reinterpret_cast<float*>(host.data()), gram.shape(), Device::cpu()));
  // Column-major lower triangle: entry (i, j), i >= j, at host[i + j * n]; g gets both halves.
  for (std::int64_t j = 0; j < n; ++j)
    for (std::int64_t i = j; i < n; ++i) {
      const double v = host[static_cast<std::size_t>(i + j * n)];
      g[i * n + j] += v;
      if (i != j) g[j * n + i] += v;
    }
  return result;
}

void copy_feature_columns(CView y, std::int64_t begin, std::int64_t end, View dst, std::int64_t row0) {
  const std::int64_t rows = y.shape().rank() == 0 ? 1 : y.shape()[0], f = y.shape().sample_numel();
  const std::int64_t width = end - begin;
  if (rows == 0 || width == 0) return;
  detail::DeviceGuard guard(dst.device().index());
  FOVEA_CHECK_CUDA(
      cudaMemcpy2DAsync(dst.data() + row0 * width, static_cast<std::size_t>(width) * sizeof(float),
                        y.data() + begin, static_cast<std::size_t>(f) * sizeof(float),
                        static_cast<std::size_t>(width) * sizeof(float), static_cast<std::size_t>(rows),
                        cudaMemcpyDeviceToDevice, detail::stream_for(dst.device())),
      "features [", begin, ", ", end, ") of ", y.shape().str(), " into rows ", row0, ".. of ",
      dst.shape().str());
}

}  // namespace fovea::cuda
