// fovea/ops/reduce.hpp: reductions along one axis (sum, mean, max).
#pragma once

#include "fovea/core/tensor.hpp"
#include "fovea/cpu/reduce.hpp"
#include "fovea/cuda/ops.hpp"

namespace fovea {

// The shape of x reduced along `axis` (that axis kept, with size 1).
inline Shape reduced_shape(const Shape& x, int axis) {
  FOVEA_CHECK(axis >= 0 && axis < x.rank(), "reduction axis ", axis, " out of range for shape ",
              x.str());
  return x.with(axis, 1);
}

// reduce: out = op over axis `axis` of x, where op is sum, mean or max.
//   Requires: 0 <= axis < rank(x); out.shape == reduced_shape(x, axis) (the axis kept with size 1);
//             x and out on one device, not overlapping; for mean and max the axis is not empty.
//   Ensures:  sum of an empty axis is 0; max propagates NaN. The CPU twin accumulates in double,
//             the CUDA twin in float with a tree order (relative differences ~1e-6 * sqrt(len)).
inline void reduce(CView x, int axis, View out, ReduceKind kind) {
  const Shape expect = reduced_shape(x.shape(), axis);
  check_same_shape("reduce", "output", out.shape(), "reduced input", expect);
  check_same_device("reduce", "input", x.device(), "output", out.device());
  FOVEA_CHECK(kind == ReduceKind::sum || x.shape()[axis] > 0,
              "reduce: mean or max over the empty axis ", axis, " of shape ", x.shape().str());
  if (out.device().is_cuda()) FOVEA_CUDA_CALL(cuda::reduce(x, axis, out, kind));
  else cpu::reduce(x, axis, out, kind);
}

inline void reduce_sum(CView x, int axis, View out) { reduce(x, axis, out, ReduceKind::sum); }
inline void reduce_mean(CView x, int axis, View out) { reduce(x, axis, out, ReduceKind::mean); }
inline void reduce_max(CView x, int axis, View out) { reduce(x, axis, out, ReduceKind::max); }

// Allocating forms: a new tensor on x's device.
inline Tensor reduce(CView x, int axis, ReduceKind kind) {
  Tensor out(reduced_shape(x.shape(), axis), x.device());
  reduce(x, axis, out, kind);
  return out;
}

}  // namespace fovea
