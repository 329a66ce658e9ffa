// fovea/analysis/features_device.hpp: the feature Grams of features.hpp for activations that live on
// a network's device. On the CPU these are features.hpp's host functions on the view's memory (the
// same bits); on a CUDA device the activations stay there: a kernel centres (and standardises) a
// block of features at a time in double, with the CPU's means and deviations, and cublasDsyrk sums
// the block's Gram in double on the device (kernels/gram.cuh); only the n x n Gram comes back.
#pragma once

#include <algorithm>
#include <cstdint>
#include <span>
#include <vector>

#include "fovea/analysis/features.hpp"
#include "fovea/core/error.hpp"
#include "fovea/core/tensor.hpp"
#include "fovea/cuda/gram.hpp"
#include "fovea/cuda/runtime.hpp"

namespace fovea::analysis {

// add_to_feature_gram(g, FeatureMatrix, standardise) for x, a (samples, ...) view on any device
// whose rows are the samples' flattened features.
//   requires: x.shape()[0] == g.n >= 2 (a default Gram{} is sized on first use), x finite.
//   ensures: returns the number of features exactly constant over the samples; g stays exactly
//            symmetric. On a CUDA device: the same Gram up to the order of the sums (cuBLAS's, not
//            OpenBLAS's), differences of order 1e-15 of the Gram's largest entry (tested to 1e-12);
//            a non-finite value throws the CPU's message, naming the first one in row-major order
//            (the CPU names the first in the first of its column blocks that holds one), and
//            leaves g unchanged. Waits for the device.
inline std::int64_t add_to_feature_gram(Gram& g, CView x, bool standardise) {
  const std::int64_t n = x.shape().rank() == 0 ? 1 : x.shape()[0];
  const std::int64_t f = n == 0 ? 0 : x.numel() / n;
  if (x.device().is_cpu())
    return add_to_feature_gram(
        g, FeatureMatrix{std::span<const float>(x.data(), static_cast<std::size_t>(x.numel())), n, f},
        standardise);
  FOVEA_CHECK(n >= 2, "feature_gram: x needs at least 2 samples, got ", n);
  FOVEA_CHECK(f >= 1, "feature_gram: x needs at least 1 feature, got ", x.shape().str());
  if (g.n == 0 && g.values.empty()) g = Gram{n, std::vector<double>(static_cast<std::size_t>(n * n), 0.0)};
  FOVEA_CHECK(g.n == n, "feature_gram: the Gram is ", g.n, " x ", g.n, " but x has ", n, " samples");
  FOVEA_CHECK(g.values.size() == static_cast<std::size_t>(n * n), "feature_gram: the Gram has ",
              g.values.size(), " values, not ", n, " x ", n);
#if FOVEA_WITH_CUDA
  const cuda::FeatureGramResult r = cuda::add_feature_gram(x, standardise, g.values.data());
  if (!r.finite) detail::fail_non_finite("feature_gram: x", r.bad_row, r.bad_column, r.bad_value);
  return r.constants;
#else
  ::fovea::detail::throw_no_cuda("add_to_feature_gram on a CUDA device");
#endif
}

// Copies features [begin, end) of every row of y (rows of y.shape().sample_numel() values) into rows
// row0 .. row0 + rows(y) - 1 of dst (n, end - begin): a layer's batch of activations into the
// buffer of one feature range over all samples. y and dst on the same device; on a CUDA device the
// copy is queued on the current stream.
inline void copy_feature_columns(CView y, std::int64_t begin, std::int64_t end, View dst, std::int64_t row0) {
  const std::int64_t rows = y.shape().rank() == 0 ? 1 : y.shape()[0], f = y.shape().sample_numel();
  const std::int64_t width = end - begin;
  FOVEA_CHECK(0 <= begin && begin <= end && end <= f, "copy_feature_columns: features [", begin, ", ", end,
              ") of ", y.shape().str());
  FOVEA_CHECK(
      dst.shape().rank() == 2 && dst.shape()[1] == width && row0 >= 0 && row0 + rows <= dst.shape()[0],
      "copy_feature_columns: ", rows, " rows of ", width, " features at row ", row0, " into ",
      dst.shape().str());
  FOVEA_CHECK(y.device() == dst.device(), "copy_feature_columns: source on ", y.device().str(),
              ", destination on ", dst.device().str());
  if (rows == 0 || width == 0) return;
  if (y.device().is_cpu()) {
    for (std::int64_t i = 0; i < rows; ++i)
      std::copy_n(y.data() + i * f + begin, width, dst.data() + (row0 + i) * width);
    return;
  }
  FOVEA_CUDA_CALL(cuda::copy_feature_columns(y, begin, end, dst, row0));
}

}  // namespace fovea::analysis
