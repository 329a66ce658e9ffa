// fovea/ops/lrp.hpp: the element-wise parts of layer-wise relevance propagation's rules
// (analysis/lrp.hpp), so that a relevance pass stays on the net's device. Each op checks shapes and
// devices, then runs its cpu:: or cuda:: twin by the output's device; all tensors of one call live on
// one device. The ratios are computed in double and rounded once (ops/math.hpp), so the CPU and the
// GPU give the same bits for the maps; lrp_mean_share's plane sums differ in order between them.
// stab(z) = z + epsilon sign(z), sign(0) = +1.
#pragma once

#include <initializer_list>
#include <utility>

#include "fovea/core/tensor.hpp"
#include "fovea/cpu/lrp.hpp"
#include "fovea/cuda/ops.hpp"
#include "fovea/ops/elementwise.hpp"

namespace fovea {

namespace detail {
inline void check_lrp_inputs(const char* op, std::initializer_list<std::pair<const char*, CView>> in,
                             CView out) {
  for (const auto& [name, v] : in) {
    check_same_shape(op, name, v.shape(), "output", out.shape());
    check_same_device(op, name, v.device(), "output", out.device());
  }
}
}  // namespace detail

// lrp_ratio: s[i] = r[i] / stab(z[i]), the relevance per unit of pre-activation.
//   Requires: r, z, s of one shape and device.
inline void lrp_ratio(CView r, CView z, float epsilon, View s) {
  detail::check_lrp_inputs("lrp_ratio", {{"r", r}, {"z", z}}, s);
  if (s.device().is_cuda()) FOVEA_CUDA_CALL(cuda::lrp_ratio(r, z, epsilon, s));
  else cpu::lrp_ratio(r, z, epsilon, s);
}

// lrp_share: out[i] = a[i] r[i] / stab(a[i] + b[i]), the share of a sum's relevance r that goes to the
// term a (the residual split: once with (body, shortcut), once with (shortcut, body)).
//   Requires: a, b, r, out of one shape and device.
inline void lrp_share(CView a, CView b, CView r, float epsilon, View out) {
  detail::check_lrp_inputs("lrp_share", {{"a", a}, {"b", b}, {"r", r}}, out);
  if (out.device().is_cuda()) FOVEA_CUDA_CALL(cuda::lrp_share(a, b, r, epsilon, out));
  else cpu::lrp_share(a, b, r, epsilon, out);
}

// lrp_box_input: out[i] = x[i] cx[i] - lo[i] cl[i] - hi[i] ch[i], the z^B rule's input relevance from
// the three transposed convolutions (cx with W, cl with W+, ch with W-).
//   Requires: all seven of one shape and device.
inline void lrp_box_input(CView x, CView cx, CView lo, CView cl, CView hi, CView ch, View out) {
  detail::check_lrp_inputs("lrp_box_input",
                           {{"x", x}, {"cx", cx}, {"lo", lo}, {"cl", cl}, {"hi", hi}, {"ch", ch}}, out);
  if (out.device().is_cuda()) FOVEA_CUDA_CALL(cuda::lrp_box_input(x, cx, lo, cl, hi, ch, out));
  else cpu::lrp_box_input(x, cx, lo, cl, hi, ch, out);
}

// lrp_box_denominator: out[i] = zx[i] - zl[i] - zh[i], the z^B rule's z (conv(x, W) - conv(l, W+) -
// conv(h, W-)).  Requires: all four of one shape and device.
inline void lrp_box_denominator(CView zx, CView zl, CView zh, View out) {
  detail::check_lrp_inputs("lrp_box_denominator", {{"zx", zx}, {"zl", zl}, {"zh", zh}}, out);
  if (out.device().is_cuda()) FOVEA_CUDA_CALL(cuda::lrp_box_denominator(zx, zl, zh, out));
  else cpu::lrp_box_denominator(zx, zl, zh, out);
}

// lrp_mean_share: the global average pool's rule. For each plane p (N C planes of H W values) with
// relevance r[p] at the pool's output, out[p, i] = x[p, i] r[p] / stab(mean(x[p])) / (H W); the plane
// mean in double.  Requires: x and out (N, C, H, W) of one shape, r with N C elements, one device.
inline void lrp_mean_share(CView x, CView r, float epsilon, View out) {
  check_same_shape("lrp_mean_share", "x", x.shape(), "output", out.shape());
  FOVEA_CHECK(x.shape().rank() == 4, "lrp_mean_share: x must be (N, C, H, W), got ", x.shape().str());
  FOVEA_CHECK(r.numel() == x.shape()[0] * x.shape()[1], "lrp_mean_share: relevance ", r.shape().str(),
              " must have one value per plane of x ", x.shape().str());
  check_same_device("lrp_mean_share", "x", x.device(), "output", out.device());
  check_same_device("lrp_mean_share", "r", r.device(), "output", out.device());
  if (out.device().is_cuda()) FOVEA_CUDA_CALL(cuda::lrp_mean_share(x, r, epsilon, out));
  else cpu::lrp_mean_share(x, r, epsilon, out);
}

}  // namespace fovea
