// fovea/ops/random.hpp: tensors filled from a counter-based random stream (core/random.hpp). Each
// op checks its arguments, then runs its cpu:: or cuda:: twin according to out's device. Element i
// of out is a pure function of (key, i), so the CPU and CUDA twins fill identical tensors (bitwise
// for uniform, to a few ulp for normal), whatever the tensor's size or the launch geometry.
#pragma once

#include <cmath>
#include <cstdint>

#include "fovea/core/random.hpp"
#include "fovea/core/tensor.hpp"
#include "fovea/cpu/random.hpp"
#include "fovea/cuda/random.hpp"

namespace fovea {

// random_uniform: out[i] = lo + (hi - lo) * uniform(key, i) (as uniform_between, one fma), where
// uniform(key, i) is draw i of key's stream: element i uses word i % 4 of Philox block i / 4.
//   requires: purpose < kMaxPurpose and view < kMaxView; finite lo <= hi;
//             out.numel() <= kMaxStreamDraws.  (Each violation throws fovea::Error.)
//   ensures: every element of out is written, with a value in [lo, hi] (hi only by rounding).
inline void random_uniform(View out, const RandomKey& key, float lo, float hi) {
  check_key(key);
  FOVEA_CHECK(std::isfinite(lo) && std::isfinite(hi) && lo <= hi,
              "random_uniform: need finite lo <= hi, got [", lo, ", ", hi, "]");
  FOVEA_CHECK(static_cast<std::uint64_t>(out.numel()) <= kMaxStreamDraws, "random_uniform: ", out.numel(),
              " elements exceed one stream (", kMaxStreamDraws, " draws)");
  if (out.empty()) return;
  if (out.device().is_cuda()) FOVEA_CUDA_CALL(cuda::random_uniform(out, key, lo, hi));
  else cpu::random_uniform(out, key, lo, hi);
}

// random_normal: out[i] = mean + std_dev * normal(key, i) (one fma), where normal(key, i) is the
// Box-Muller transform of words 0 and 1 of Philox block i. Using one block per element (rather than
// packing two normals per block) keeps element i independent of the tensor's size and layout.
//   requires: purpose < kMaxPurpose and view < kMaxView; finite mean; finite std_dev >= 0;
//             out.numel() <= kMaxStreamNormals.  (Each violation throws fovea::Error.)
//   ensures: every element of out is written; |out[i] - mean| <= 5.78 * std_dev (see box_muller).
inline void random_normal(View out, const RandomKey& key, float mean, float std_dev) {
  check_key(key);
  FOVEA_CHECK(std::isfinite(mean) && std::isfinite(std_dev) && std_dev >= 0.0f,
              "random_normal: need finite mean and finite std >= 0, got mean ", mean, ", std ", std_dev);
  FOVEA_CHECK(static_cast<std::uint64_t>(out.numel()) <= kMaxStreamNormals, "random_normal: ", out.numel(),
              " elements exceed one stream (", kMaxStreamNormals, " normals)");
  if (out.empty()) return;
  if (out.device().is_cuda()) FOVEA_CUDA_CALL(cuda::random_normal(out, key, mean, std_dev));
  else cpu::random_normal(out, key, mean, std_dev);
}

}  // namespace fovea
