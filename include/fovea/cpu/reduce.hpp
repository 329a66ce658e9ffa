// fovea/cpu/reduce.hpp: CPU twins of the axis reductions (contracts in ops/reduce.hpp).
#pragma once

#include <cstdint>
#include <limits>

#include "fovea/core/tensor.hpp"
#include "fovea/ops/math.hpp"

namespace fovea {

enum class ReduceKind { sum, mean, max };

namespace detail {
// A 4-D-or-less contiguous tensor reduced along `axis` is (outer, len, inner) in memory.
struct ReduceGeometry {
  std::int64_t outer = 1, len = 1, inner = 1;
};
inline ReduceGeometry reduce_geometry(const Shape& s, int axis) {
  ReduceGeometry g;
  for (int i = 0; i < axis; ++i) g.outer *= s[i];
  g.len = s[axis];
  for (int i = axis + 1; i < s.rank(); ++i) g.inner *= s[i];
  return g;
}
}  // namespace detail

namespace cpu {

// Sums and means accumulate in double, so this is also the accuracy reference for the CUDA twin.
inline void reduce(CView x, int axis, View out, ReduceKind kind) {
  const auto g = detail::reduce_geometry(x.shape(), axis);
  const float* in = x.data();
  float* o = out.data();
  for (std::int64_t a = 0; a < g.outer; ++a) {
    for (std::int64_t c = 0; c < g.inner; ++c) {
      const float* p = in + a * g.len * g.inner + c;
      float result;
      if (kind == ReduceKind::max) {
        math::MaxReduce op;
        float m = math::MaxReduce::identity();
        for (std::int64_t k = 0; k < g.len; ++k) m = op(p[k * g.inner], m);
        result = m;
      } else {
        double s = 0.0;
        for (std::int64_t k = 0; k < g.len; ++k) s += p[k * g.inner];
        if (kind == ReduceKind::mean) s /= static_cast<double>(g.len);
        result = static_cast<float>(s);
      }
      o[a * g.inner + c] = result;
    }
  }
}

}  // namespace cpu
}  // namespace fovea
