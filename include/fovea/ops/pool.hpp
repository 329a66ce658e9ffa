// fovea/ops/pool.hpp: 2-D max and average pooling and global average pooling on (N, C, H, W), with
// PyTorch's semantics (ceil_mode = false, dilation 1, count_include_pad = true).
//
// Max pooling keeps no index tensor: the backward rescans each window of x (the first maximum in
// row-major window order wins, as in PyTorch; a NaN wins over numbers). Both backwards are gathers
// (each dx element sums its covering outputs in raster order), so they are deterministic and every
// dx element is written. All tensors of one call live on one device; outputs must not overlap inputs.
#pragma once

#include <string>

#include "fovea/core/tensor.hpp"
#include "fovea/cpu/pool.hpp"
#include "fovea/cuda/pool.hpp"

namespace fovea {

// The output shape of pooling x (N, C, H, W): (N, C, OH, OW) with
// OH = floor((H + 2p - k) / s) + 1 and likewise OW.
//   Requires: rank 4; k >= 1; s >= 1; 0 <= p <= k / 2 (PyTorch's limit); H + 2p >= k, W + 2p >= k.
inline Shape pool2d_output_shape(const Shape& x, const PoolParams& p) {
  FOVEA_CHECK(x.rank() == 4, "pool2d: input must be (N, C, H, W), got ", x.str());
  FOVEA_CHECK(p.kernel >= 1 && p.stride >= 1, "pool2d: kernel ", p.kernel, " and stride ", p.stride,
              " must be positive");
  FOVEA_CHECK(p.padding >= 0 && 2 * p.padding <= p.kernel, "pool2d: padding ", p.padding,
              " must be between 0 and half the kernel ", p.kernel);
  FOVEA_CHECK(x.h() + 2 * p.padding >= p.kernel && x.w() + 2 * p.padding >= p.kernel, "pool2d: kernel ",
              p.kernel, " with padding ", p.padding, " is larger than the input ", x.str());
  return Shape{x.n(), x.c(), detail::pool_output_size(x.h(), p), detail::pool_output_size(x.w(), p)};
}

namespace detail {
inline void check_pool(const char* op, CView x, const char* out_name, CView out, const PoolParams& p) {
  const Shape want = pool2d_output_shape(x.shape(), p);
  if (!(out.shape() == want))
    throw Error(std::string(op) + ": shape mismatch: " + out_name + " " + out.shape().str() +
                " vs pooled input " + want.str() + " (input " + x.shape().str() + ", kernel " +
                std::to_string(p.kernel) + ", stride " + std::to_string(p.stride) + ", padding " +
                std::to_string(p.padding) + ")");
  check_same_device(op, "input", x.device(), out_name, out.device());
}
}  // namespace detail

// max_pool2d_forward: y[n,c,i,j] = max over the window of output (i, j) of x (padding is -inf).
//   x (N, C, H, W); y (N, C, OH, OW) = pool2d_output_shape(x, params).  NaN propagates.
inline void max_pool2d_forward(CView x, View y, const PoolParams& params) {
  detail::check_pool("max_pool2d_forward", x, "output", y, params);
  if (y.numel() == 0) return;
  if (y.device().is_cuda()) FOVEA_CUDA_CALL(cuda::max_pool2d_forward(x, y, params));
  else cpu::max_pool2d_forward(x, y, params);
}

// max_pool2d_backward: dx = sum over outputs of dy routed to the first maximum of each window.
//   x, dx (N, C, H, W); y, dy (N, C, OH, OW). y is checked for shape only: the argmax is recomputed
//   from x, so x must be the forward input unchanged. dx is overwritten (not accumulated).
inline void max_pool2d_backward(CView x, CView y, CView dy, View dx, const PoolParams& params) {
  constexpr const char* op = "max_pool2d_backward";
  detail::check_pool(op, x, "y", y, params);
  detail::check_pool(op, x, "dy", dy, params);
  check_same_shape(op, "input", x.shape(), "dx", dx.shape());
  check_same_device(op, "input", x.device(), "dx", dx.device());
  if (dx.numel() == 0) return;
  if (dx.device().is_cuda()) FOVEA_CUDA_CALL(cuda::max_pool2d_backward(x, dy, dx, params));
  else cpu::max_pool2d_backward(x, dy, dx, params);
}

// avg_pool2d_forward: y = sum of the window (padding counts as 0) / kernel^2 (count_include_pad).
//   x (N, C, H, W); y (N, C, OH, OW).
inline void avg_pool2d_forward(CView x, View y, const PoolParams& params) {
  detail::check_pool("avg_pool2d_forward", x, "output", y, params);
  if (y.numel() == 0) return;
  if (y.device().is_cuda()) FOVEA_CUDA_CALL(cuda::avg_pool2d_forward(x, y, params));
  else cpu::avg_pool2d_forward(x, y, params);
}

// avg_pool2d_backward: dx[i] = sum of dy over the outputs whose window holds i, / kernel^2.
//   dy (N, C, OH, OW); dx (N, C, H, W), overwritten.
inline void avg_pool2d_backward(CView dy, View dx, const PoolParams& params) {
  detail::check_pool("avg_pool2d_backward", dx, "dy", dy, params);
  if (dx.numel() == 0) return;
  if (dx.device().is_cuda()) FOVEA_CUDA_CALL(cuda::avg_pool2d_backward(dy, dx, params));
  else cpu::avg_pool2d_backward(dy, dx, params);
}

namespace detail {
inline void check_global_pool(const char* op, CView x, const char* out_name, CView out) {
  FOVEA_CHECK(x.shape().rank() == 4, op, ": input must be (N, C, H, W), got ", x.shape().str());
  check_same_shape(op, out_name, out.shape(), "(N, C, 1, 1) of input",
                   Shape{x.shape().n(), x.shape().c(), 1, 1});
  check_same_device(op, "input", x.device(), out_name, out.device());
}
}  // namespace detail

// global_avg_pool_forward: y[n,c] = mean over H, W of x[n,c].
//   x (N, C, H, W) with H*W >= 1; y (N, C, 1, 1). CPU sums in double, CUDA in float (one warp per plane).
inline void global_avg_pool_forward(CView x, View y) {
  detail::check_global_pool("global_avg_pool_forward", x, "output", y);
  FOVEA_CHECK(x.shape().h() * x.shape().w() > 0 || y.numel() == 0,
              "global_avg_pool_forward: empty planes in ", x.shape().str());
  if (y.numel() == 0) return;
  if (y.device().is_cuda()) FOVEA_CUDA_CALL(cuda::global_avg_pool_forward(x, y));
  else cpu::global_avg_pool_forward(x, y);
}

// global_avg_pool_backward: dx[n,c,h,w] = dy[n,c] / (H*W).
//   dy (N, C, 1, 1); dx (N, C, H, W), overwritten.
inline void global_avg_pool_backward(CView dy, View dx) {
  detail::check_global_pool("global_avg_pool_backward", dx, "dy", dy);
  if (dx.numel() == 0) return;
  if (dx.device().is_cuda()) FOVEA_CUDA_CALL(cuda::global_avg_pool_backward(dy, dx));
  else cpu::global_avg_pool_backward(dy, dx);
}

}  // namespace fovea
