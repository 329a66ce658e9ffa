// fovea/cpu/lrp.hpp: the CPU twins of LRP's element-wise ops (contracts in ops/lrp.hpp). The maps run
// the functors of ops/math.hpp; lrp_mean_share sums each plane in double, in order.
#pragma once

#include <cstdint>

#include "fovea/core/parallel.hpp"
#include "fovea/core/tensor.hpp"
#include "fovea/cpu/elementwise.hpp"
#include "fovea/ops/math.hpp"

namespace fovea::cpu {

inline void lrp_ratio(CView r, CView z, float epsilon, View s) { map(math::LrpRatio{epsilon}, s, r, z); }
inline void lrp_share(CView a, CView b, CView r, float epsilon, View out) {
  map(math::LrpShare{epsilon}, out, a, b, r);
}
inline void lrp_box_input(CView x, CView cx, CView lo, CView cl, CView hi, CView ch, View out) {
  map(math::LrpBoxInput{}, out, x, cx, lo, cl, hi, ch);
}
inline void lrp_box_denominator(CView zx, CView zl, CView zh, View out) {
  map(math::LrpBoxDenominator{}, out, zx, zl, zh);
}

// out[p, i] = x[p, i] r[p] / stab(mean_i x[p, i]) / n over planes p of n = H W values.
inline void lrp_mean_share(CView x, CView r, float epsilon, View out) {
  const std::int64_t planes = r.numel(), n = planes == 0 ? 0 : x.numel() / planes;
  const float* xs = x.data();
  const float* rs = r.data();
  float* o = out.data();
  parallel_for(
      planes,
      [&](std::int64_t first, std::int64_t last) {
        for (std::int64_t p = first; p < last; ++p) {
          const float* xp = xs + p * n;
          double mean = 0;
          for (std::int64_t i = 0; i < n; ++i) mean += xp[i];
          mean /= static_cast<double>(n);
          const double ratio = rs[p] / math::lrp_stabilise(mean, epsilon) / static_cast<double>(n);
          for (std::int64_t i = 0; i < n; ++i) o[p * n + i] = static_cast<float>(math::dmul_rn(xp[i], ratio));
        }
      },
      2 * n);
}

}  // namespace fovea::cpu
