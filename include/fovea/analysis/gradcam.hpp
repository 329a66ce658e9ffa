// fovea/analysis/gradcam.hpp: Grad-CAM (Selvaraju et al. 2017) of a classifier at an inner layer
// (REFERENCE §1.5): with A the layer's output (C, h, w) for one image and G = d logit_target / d A,
//   alpha_c = (1 / (h w)) sum_ij G[c, i, j],   cam[i, j] = relu(sum_c alpha_c A[c, i, j]),
// then cam is upsampled bilinearly to the input size (half-pixel centres, edges clamped: PyTorch's
// F.interpolate(mode="bilinear", align_corners=False) and OpenCV's INTER_LINEAR, which the
// pytorch-grad-cam package uses). The map is not rescaled to [0, 1]: the scores of
// analysis/saliency_scores.hpp do not depend on the scale, and the raw values compare across images.
//
// The layer is named by its state-dict path, composites included ("layer4": the output of the last
// residual stage, after its last block's add and ReLU, Grad-CAM's usual layer for a ResNet;
// "layer3.1", "layer4.1.conv2" ...); nn::ActivationTap with TapOptions::composites captures A in the
// forward and G before that layer's backward, so the network runs unchanged (evaluation mode; the
// input gradient is switched off while Grad-CAM runs, which skips the first layer's data gradient,
// and switched back on at the end).
//
// The result is an AttributionMaps with one channel: raw (N, 1, H, W) holds the upsampled CAM (>= 0,
// or signed without the ReLU) and heatmap = |raw|. A CAM that is 0 everywhere (every channel's
// weighted sum negative) is a legitimate result: the scores then report NaN or chance.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "fovea/analysis/attribution.hpp"
#include "fovea/core/error.hpp"
#include "fovea/core/tensor.hpp"
#include "fovea/nn/tap.hpp"

namespace fovea::analysis {

inline constexpr const char* kDefaultGradCamLayer = "layer4";

struct GradCamOptions {
  std::string layer = kDefaultGradCamLayer;  // state-dict path of the layer (first site of that path)
  bool relu = true;                          // Grad-CAM's ReLU on the weighted sum
  int batch = kDefaultAttributionBatch;      // images per forward / backward
};

// src (h, w) -> dst (H, W), bilinear with half-pixel centres and clamped edges (align_corners=False).
inline void upsample_bilinear(std::span<const double> src, std::int64_t h, std::int64_t w, float* dst,
                              std::int64_t height, std::int64_t width) {
  FOVEA_CHECK(static_cast<std::int64_t>(src.size()) == h * w && h > 0 && w > 0 && height > 0 && width > 0,
              "upsample_bilinear: ", src.size(), " values for ", h, " x ", w, " -> ", height, " x ", width);
  const auto coordinate = [](std::int64_t d, std::int64_t in, std::int64_t out, std::int64_t& i0,
                             std::int64_t& i1, double& frac) {
    const double s = std::max(0.0, (static_cast<double>(d) + 0.5) * static_cast<double>(in) / out - 0.5);
    i0 = std::min<std::int64_t>(static_cast<std::int64_t>(s), in - 1);
    i1 = std::min<std::int64_t>(i0 + 1, in - 1);
    frac = s - static_cast<double>(i0);
  };
  for (std::int64_t y = 0; y < height; ++y) {
    std::int64_t y0, y1;
    double fy;
    coordinate(y, h, height, y0, y1, fy);
    for (std::int64_t x = 0; x < width; ++x) {
      std::int64_t x0, x1;
      double fx;
      coordinate(x, w, width, x0, x1, fx);
      const auto at = [&](std::int64_t yy, std::int64_t xx) {
        return src[static_cast<std::size_t>(yy * w + xx)];
      };
      const double top = at(y0, x0) + fx * (at(y0, x1) - at(y0, x0));
      const double bottom = at(y1, x0) + fx * (at(y1, x1) - at(y1, x0));
      dst[y * width + x] = static_cast<float>(top + fy * (bottom - top));
    }
  }
}

// The first site of `path` in net (composites included), or an error listing the named composites.
template <class Net>
nn::TapSite find_tap_site(Net& net, const std::string& path, const char* what) {
  const std::vector<nn::TapSite> sites = nn::tap_sites(net, true);
  for (const nn::TapSite& s : sites)
    if (s.path == path) return s;
  std::string names;
  for (const nn::TapSite& s : sites)
    if (s.composite && s.path.find('.') == std::string::npos) names += (names.empty() ? "" : ", ") + s.path;
  FOVEA_FAIL(what, ": the network has no layer '", path, "' (top-level layers: ", names,
             "; blocks and leaves by their state-dict path, e.g. layer4.1 or layer4.1.conv2)");
}

// Grad-CAM maps of images (N, 3, H, W) for targets[n] at opt.layer.
template <class Net>
AttributionMaps grad_cam(Net& net, CView images, std::span<const int> targets,
                         const GradCamOptions& opt = {}) {
  detail::check_batch(opt.batch, "grad_cam");
  const detail::Images im = detail::to_host(images, targets, "grad_cam");
  const nn::TapSite site = find_tap_site(net, opt.layer, "grad_cam");
  // The captures of one chunk: A and G as (b, C, h, w) host copies.
  std::vector<float> activation, gradient;
  Shape a_shape, g_shape;
  nn::ActivationTap tap(
      [&](const nn::TapSite&, CView, CView y) {
        a_shape = y.shape();
        activation.resize(static_cast<std::size_t>(y.numel()));
        copy(y, View(activation.data(), y.shape(), Device::cpu()));
      },
      nn::TapOptions{.select = [&](const nn::TapSite& s) { return s.index == site.index; },
                     .on_gradient =
                         [&](const nn::TapSite&, CView dy) {
                           g_shape = dy.shape();
                           gradient.resize(static_cast<std::size_t>(dy.numel()));
                           copy(dy, View(gradient.data(), dy.shape(), Device::cpu()));
                         },
                     .composites = true});
  FOVEA_CHECK(tap.attach(net) == 1, "grad_cam: could not hook layer '", opt.layer, "'");
  struct InputGradBack {  // the input gradient back on, also when a check below throws
    Net& net;
    ~InputGradBack() { nn::set_input_grad(net, true); }
  } restore{net};
  detail::GradientRunner<Net> runner(net, im.device, im.c, im.h, im.w, /*input_grad=*/false);

  AttributionMaps m;
  m.images = im.n;
  m.channels = 1;
  m.height = im.h;
  m.width = im.w;
  m.raw.assign(static_cast<std::size_t>(im.n * im.h * im.w), 0.0f);
  m.target_logit.assign(static_cast<std::size_t>(im.n), 0.0);
  std::vector<double> cam;
  for (std::int64_t i0 = 0; i0 < im.n; i0 += opt.batch) {
    const std::int64_t b = std::min<std::int64_t>(opt.batch, im.n - i0);
    a_shape = g_shape = Shape();
    runner.run(im.image(i0), b, targets.subspan(static_cast<std::size_t>(i0), static_cast<std::size_t>(b)),
               nullptr, m.target_logit.data() + i0);
    FOVEA_CHECK(a_shape.rank() == 4 && a_shape[0] == b, "grad_cam: layer '", opt.layer,
                "' must give (N, C, h, w) activations, got ", a_shape.str());
    FOVEA_CHECK(g_shape == a_shape, "grad_cam: layer '", opt.layer, "' got a gradient of ", g_shape.str(),
                " for activations ", a_shape.str(), " (is it on the path to the logits?)");
    const std::int64_t c = a_shape[1], h = a_shape[2], w = a_shape[3], hw = h * w;
    cam.assign(static_cast<std::size_t>(hw), 0.0);
    for (std::int64_t n = 0; n < b; ++n) {
      std::fill(cam.begin(), cam.end(), 0.0);
      for (std::int64_t k = 0; k < c; ++k) {
        const float* a = activation.data() + (n * c + k) * hw;
        const float* g = gradient.data() + (n * c + k) * hw;
        double alpha = 0;
        for (std::int64_t p = 0; p < hw; ++p) alpha += g[p];
        alpha /= static_cast<double>(hw);
        for (std::int64_t p = 0; p < hw; ++p) cam[static_cast<std::size_t>(p)] += alpha * a[p];
      }
      if (opt.relu)
        for (double& v : cam) v = std::max(v, 0.0);
      upsample_bilinear(cam, h, w, m.raw.data() + (i0 + n) * im.h * im.w, im.h, im.w);
    }
  }
  detail::fill_heatmap(m);
  return m;
}

}  // namespace fovea::analysis
