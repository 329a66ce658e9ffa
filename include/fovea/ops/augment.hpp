// fovea/ops/augment.hpp: batched image augmentations driven by per-sample AugmentParams (drawn by
// data::draw_augment_params): crop-resize with flips and rotation, colour jitter, grayscale, Gaussian
// blur, solarize, per-channel normalisation, and the whole pipeline in one call. Each op checks
// shapes, devices and parameters, resolves the parameters into a plan on the host (cos/sin, blur
// weights: the same bits for both twins), then runs its cpu:: or cuda:: twin by out's device.
//
// Images are (N, 3, H, W) fp32, values in [0, 1]; params holds one AugmentParams per sample, in host
// memory (the CUDA twins copy it to the device). Per-pixel ops and the blur allow out to alias x
// exactly; random_resized_crop_flip and augment_images need out distinct from images.
#pragma once

#include <span>
#include <string>

#include "fovea/core/tensor.hpp"
#include "fovea/cpu/augment.hpp"
#include "fovea/cuda/augment.hpp"

namespace fovea {

namespace detail {
inline void check_rgb_batch(const char* op, const char* name, CView x) {
  FOVEA_CHECK(x.shape().rank() == 4 && x.shape().c() == 3, op, ": ", name, " must be (N, 3, H, W), got ",
              x.shape().str());
}
inline void check_param_count(const char* op, std::span<const AugmentParams> params, CView x) {
  FOVEA_CHECK(static_cast<std::int64_t>(params.size()) == x.shape().n(), op, ": ", params.size(),
              " AugmentParams for a batch of shape ", x.shape().str());
}
// Input (N, 3, H, W) and output (N, 3, S, S) of a geometric op.
inline void check_geometry(const char* op, CView images, std::span<const AugmentParams> params, CView out) {
  check_rgb_batch(op, "images", images);
  check_rgb_batch(op, "output", out);
  FOVEA_CHECK(
      out.shape().n() == images.shape().n() && out.shape().h() == out.shape().w() && out.shape().h() >= 1, op,
      ": output ", out.shape().str(), " must be (N, 3, S, S) for images ", images.shape().str());
  check_param_count(op, params, images);
  check_same_device(op, "images", images.device(), "output", out.device());
  FOVEA_CHECK(images.data() != out.data() || images.empty(), op, ": output must not alias the images");
}
inline void check_pixelwise(const char* op, CView x, std::span<const AugmentParams> params, CView out) {
  check_rgb_batch(op, "input", x);
  check_same_shape(op, "input", x.shape(), "output", out.shape());
  check_same_device(op, "input", x.device(), "output", out.device());
  check_param_count(op, params, x);
}
// The params resolved for a pixel-wise op (the crop box is ignored).
inline AugmentBatchPlan pixelwise_plan(CView x, std::span<const AugmentParams> params) {
  return make_augment_plan(params, x.shape().h(), x.shape().w(), x.shape().h(), x.shape().w(), false);
}
}  // namespace detail

// neutral_params: AugmentParams that change nothing, with the crop box covering a height x width
// image (random_resized_crop_flip of an S x S image with them to S x S is an exact copy).
inline AugmentParams neutral_params(std::int64_t height, std::int64_t width) {
  AugmentParams p;
  p.crop_height = static_cast<std::int32_t>(height);
  p.crop_width = static_cast<std::int32_t>(width);
  return p;
}

// random_resized_crop_flip: out[n] = the crop box of images[n] resampled to S x S (bilinear,
// align_corners = false, no antialias: torchvision's resized_crop on tensors), horizontally /
// vertically flipped per hflip / vflip, then rotated by rotation_degrees counter-clockwise about the
// output centre ((S - 1) / 2, (S - 1) / 2) with zero fill; all folded into one gather, so the
// rotation resamples the crop once (no second interpolation).
//   images (N, 3, H, W); out (N, 3, S, S); params.size() == N, every crop box inside H x W
//   (each violation throws fovea::Error).  ensures: every element of out is written.
inline void random_resized_crop_flip(CView images, std::span<const AugmentParams> params, View out) {
  constexpr const char* op = "random_resized_crop_flip";
  detail::check_geometry(op, images, params, out);
  if (out.empty()) return;
  const auto plan = detail::make_augment_plan(params, images.shape().h(), images.shape().w(), out.shape().h(),
                                              out.shape().w());
  if (out.device().is_cuda()) FOVEA_CUDA_CALL(cuda::random_resized_crop_flip(images, plan, out));
  else cpu::random_resized_crop_flip(images, plan, out);
}

// color_jitter: for samples with jitter set, torchvision's ColorJitter ops in the sample's order
// (order[0] first), each op j only when bit j of jitter_ops is set:
//   brightness: clamp(x * b);  contrast: clamp(c * x + (1 - c) * m), m the mean over the image of
//   the grayscale (0.2989 r + 0.587 g + 0.114 b) of the image as it stands before contrast;
//   saturation: clamp(s * x + (1 - s) * gray(pixel));  hue: RGB -> HSV, h = (h + hue) mod 1, -> RGB
//   (torchvision's _rgb2hsv / _hsv2rgb). Other samples are copied.
//   x, out (N, 3, H, W); params.size() == N.  out may alias x.
inline void color_jitter(CView x, std::span<const AugmentParams> params, View out) {
  detail::check_pixelwise("color_jitter", x, params, out);
  if (out.empty()) return;
  const auto plan = detail::pixelwise_plan(x, params);
  if (out.device().is_cuda()) FOVEA_CUDA_CALL(cuda::color_jitter(x, plan, out));
  else cpu::color_jitter(x, plan, out);
}

// grayscale: for samples with grayscale set, every channel = 0.2989 r + 0.587 g + 0.114 b
// (torchvision's rgb_to_grayscale with 3 output channels); others copied.
//   x, out (N, 3, H, W); params.size() == N.  out may alias x.
inline void grayscale(CView x, std::span<const AugmentParams> params, View out) {
  detail::check_pixelwise("grayscale", x, params, out);
  if (out.empty()) return;
  const auto plan = detail::pixelwise_plan(x, params);
  if (out.device().is_cuda()) FOVEA_CUDA_CALL(cuda::grayscale(x, plan, out));
  else cpu::grayscale(x, plan, out);
}

// solarize: for samples with solarize set, v >= solarize_threshold ? 1 - v : v; others copied.
//   x, out (N, 3, H, W); params.size() == N.  out may alias x.
inline void solarize(CView x, std::span<const AugmentParams> params, View out) {
  detail::check_pixelwise("solarize", x, params, out);
  if (out.empty()) return;
  const auto plan = detail::pixelwise_plan(x, params);
  if (out.device().is_cuda()) FOVEA_CUDA_CALL(cuda::solarize(x, plan, out));
  else cpu::solarize(x, plan, out);
}

// gaussian_blur: for samples with blur set, torchvision's gaussian_blur: the normalised kernel
// exp(-x^2 / 2 sigma^2) at x = -(k-1)/2 .. (k-1)/2 along rows then columns, "reflect" padding (edge
// not repeated, folded again for kernels wider than the image); others copied.
//   x, out (N, 3, H, W); params.size() == N; blur_kernel odd >= 1, blur_sigma > 0.  out may alias x.
inline void gaussian_blur(CView x, std::span<const AugmentParams> params, View out) {
  detail::check_pixelwise("gaussian_blur", x, params, out);
  if (out.empty()) return;
  const auto plan = detail::pixelwise_plan(x, params);
  if (out.device().is_cuda()) FOVEA_CUDA_CALL(cuda::gaussian_blur(x, plan, out));
  else cpu::gaussian_blur(x, plan, out);
}

// normalize_channels: out[n, c] = (x[n, c] - stats.mean[c]) / stats.std[c] (torchvision Normalize).
//   x, out (N, 3, H, W); std > 0.  out may alias x.
inline void normalize_channels(CView x, const ChannelStats& stats, View out) {
  constexpr const char* op = "normalize_channels";
  detail::check_rgb_batch(op, "input", x);
  check_same_shape(op, "input", x.shape(), "output", out.shape());
  check_same_device(op, "input", x.device(), "output", out.device());
  for (int c = 0; c < 3; ++c)
    FOVEA_CHECK(stats.std[c] > 0.0f && std::isfinite(stats.std[c]) && std::isfinite(stats.mean[c]), op,
                ": channel ", c, " needs finite mean and std > 0, got mean ", stats.mean[c], ", std ",
                stats.std[c]);
  if (out.empty()) return;
  if (out.device().is_cuda()) FOVEA_CUDA_CALL(cuda::normalize_channels(x, stats, out));
  else cpu::normalize_channels(x, stats, out);
}

// augment_images: the whole per-sample pipeline, in this order: random_resized_crop_flip (with
// rotation), color_jitter, grayscale, gaussian_blur, solarize, normalize_channels(stats). The CPU
// twin runs the ops above one after the other; the CUDA twin fuses them (a contrast-mean pass, one
// gather + colour + grayscale (+ solarize + normalise) kernel, and two blur passes for the blurred
// samples), equal to the CPU within float rounding (~1e-6).
//   images (N, 3, H, W); out (N, 3, S, S), distinct from images; params.size() == N.
inline void augment_images(CView images, std::span<const AugmentParams> params, const ChannelStats& stats,
                           View out) {
  constexpr const char* op = "augment_images";
  detail::check_geometry(op, images, params, out);
  for (int c = 0; c < 3; ++c)
    FOVEA_CHECK(stats.std[c] > 0.0f && std::isfinite(stats.std[c]) && std::isfinite(stats.mean[c]), op,
                ": channel ", c, " needs finite mean and std > 0");
  if (out.empty()) return;
  const auto plan = detail::make_augment_plan(params, images.shape().h(), images.shape().w(), out.shape().h(),
                                              out.shape().w());
  if (out.device().is_cuda()) FOVEA_CUDA_CALL(cuda::augment_images(images, plan, stats, out));
  else cpu::augment_images(images, plan, stats, out);
}

}  // namespace fovea
