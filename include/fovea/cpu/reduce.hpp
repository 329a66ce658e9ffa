// fovea/cpu/reduce.hpp: CPU twins of the axis reductions (contracts in ops/reduce.hpp).
#pragma once

#include <algorithm>
#include <cstdint>
#include <limits>
#include <vector>

#include "fovea/core/tensor.hpp"
#include "fovea/cpu/lane_sum.hpp"
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

// Sums and means accumulate in double, so this is also the accuracy reference for the CUDA twin. A
// contiguous run (the last axis) sums over 8 lanes (detail::LaneSum); a strided one (inner > 1) keeps
// one running double per output and walks the rows in order, so the inner outputs' adds overlap.
inline void reduce(CView x, int axis, View out, ReduceKind kind) {
  const auto g = detail::reduce_geometry(x.shape(), axis);
  const float* in = x.data();
  float* o = out.data();
  if (kind == ReduceKind::max) {
    math::MaxReduce op;
    for (std::int64_t a = 0; a < g.outer; ++a)
      for (std::int64_t c = 0; c < g.inner; ++c) {
        const float* p = in + a * g.len * g.inner + c;
        float m = math::MaxReduce::identity();
        for (std::int64_t k = 0; k < g.len; ++k) m = op(p[k * g.inner], m);
        o[a * g.inner + c] = m;
      }
    return;
  }
  const auto finish = [&](double s) {
    return static_cast<float>(kind == ReduceKind::mean ? s / static_cast<double>(g.len) : s);
  };
  if (g.inner == 1) {
    for (std::int64_t a = 0; a < g.outer; ++a) {
      const float* p = in + a * g.len;
      detail::LaneSum s;
      s.add(g.len, [p](std::int64_t k) { return p[k]; });
      o[a] = finish(s.total());
    }
    return;
  }
  std::vector<double> sums(static_cast<std::size_t>(g.inner));
  for (std::int64_t a = 0; a < g.outer; ++a) {
    std::fill(sums.begin(), sums.end(), 0.0);
    const float* block = in + a * g.len * g.inner;
    for (std::int64_t k = 0; k < g.len; ++k) {
      const float* row = block + k * g.inner;
      for (std::int64_t c = 0; c < g.inner; ++c) sums[static_cast<std::size_t>(c)] += row[c];
    }
    for (std::int64_t c = 0; c < g.inner; ++c) o[a * g.inner + c] = finish(sums[static_cast<std::size_t>(c)]);
  }
}

}  // namespace cpu
}  // namespace fovea
