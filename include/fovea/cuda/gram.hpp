// fovea/cuda/gram.hpp: host-side declarations of the CUDA twins behind analysis::add_to_feature_gram
// and analysis::copy_feature_columns (fovea/analysis/features.hpp, where the contracts are); the
// definitions are in kernels/gram.cuh.
#pragma once

#include <cstdint>

#include "fovea/core/config.hpp"
#include "fovea/core/tensor.hpp"

namespace fovea::cuda {

// What one device Gram update found. The Gram is only added to when `finite`; otherwise bad_row and
// bad_column name the first non-finite value of x in row-major order and bad_value holds it.
struct FeatureGramResult {
  std::int64_t constants = 0;  // columns of x exactly constant over the rows (they add nothing)
  bool finite = true;
  std::int64_t bad_row = 0, bad_column = 0;
  float bad_value = 0.0f;
};

#if FOVEA_WITH_CUDA

// g (n x n doubles on the host, row-major, full storage) += Z Z^T, Z = x's (n, f) columns centred on
// their means over the rows and, with standardise, divided by their standard deviations (ddof 1).
// Means and deviations are computed in double row by row as the CPU does; cublasDsyrk sums the
// products in double on the device, in its own order. Waits for the device before returning.
//   requires: x a contiguous (n, ...) view on a CUDA device, n >= 2.
FeatureGramResult add_feature_gram(CView x, bool standardise, double* g);

// Copies features [begin, end) of every row of y (rows of y.shape().sample_numel() values) to rows
// row0 .. row0 + rows(y) - 1 of dst (n, end - begin), both on the same CUDA device; queued.
void copy_feature_columns(CView y, std::int64_t begin, std::int64_t end, View dst, std::int64_t row0);

#endif

}  // namespace fovea::cuda
