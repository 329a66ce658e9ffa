// fovea/analysis/attribution.hpp: input attribution maps of a classifier (REFERENCE §1.5): the
// gradient (saliency), gradient x input, SmoothGrad and integrated gradients (Riemann midpoint or
// Gauss-Legendre, baselines black / gray / mean / blurred, interpolation steps batched).
//
// The network: any Net with `CView forward(CView)` giving (N, K) logits and `CView backward(CView
// dlogits)` giving the input gradient, e.g. models::Classifier. Every function here puts the net in
// evaluation mode and turns its input gradient on (net.set_training(false), nn::set_input_grad(net,
// true)) and leaves it so, and while it runs the backward passes skip the parameter gradients
// (nn::set_param_grad(net, false), back on when it returns); BatchNorm2d's evaluation backward
// (nn/layers.hpp) makes the net a fixed function of each image, independent of the other images of a batch.
//
// Data flow: images (N, 3, H, W) live on the net's device (or on the host); the forward and backward
// passes run on images.device(), in chunks of at most `batch` inputs. SmoothGrad's noisy copies and
// integrated gradients' interpolation points are built on that device and their gradients summed
// there in double (DeviceRows: random_normal, lerp, accumulate_scaled), with the rounding of a host
// loop, so the bits do not depend on where that arithmetic runs; the sum is read back once per image.
// The plain gradient runs on chunks of the caller's images in place and copies each chunk's input
// gradient back. The results are host vectors (like
// analysis/features.hpp), images in the normalised input space of the network.
//
// Determinism: the chunks, the interpolation points and the noise (Philox, keyed by (seed, image,
// sample)) are fixed, and the sums over steps and samples run in double in a fixed order, so the same
// inputs and seed give the same bits on the CPU for a fixed thread count. The batch size does not
// change the result as long as the net's per-image forward and backward do not depend on the batch
// size (true of fovea's CPU ops; a GEMM library may block differently per batch size: see
// docs/attribution.md).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numbers>
#include <span>
#include <string>
#include <vector>

#include "fovea/core/error.hpp"
#include "fovea/core/random.hpp"
#include "fovea/core/stream.hpp"
#include "fovea/core/tensor.hpp"
#include "fovea/cpu/augment.hpp"  // ChannelStats, kDrStats
#include "fovea/nn/compose.hpp"   // set_param_grad
#include "fovea/nn/layer.hpp"
#include "fovea/ops/elementwise.hpp"
#include "fovea/ops/random.hpp"

namespace fovea::analysis {

inline constexpr int kDefaultAttributionBatch = 32;  // images per forward / backward
inline constexpr int kDefaultIgSteps = 50;           // REFERENCE §1.5
inline constexpr int kDefaultSmoothGradSamples = 50;
inline constexpr float kDefaultSmoothGradSigma = 0.15f;  // noise std / (max - min) of the image
inline constexpr float kDefaultBlurSigma = 10.0f;        // px, the blurred baseline

// Per image: the raw attribution (3, H, W) and the heatmap (H, W) = sum over channels of |raw|.
struct AttributionMaps {
  std::int64_t images = 0, channels = 0, height = 0, width = 0;
  std::vector<float> raw;      // (N, C, H, W) row-major
  std::vector<float> heatmap;  // (N, H, W): sum_c |raw[n, c, h, w]|
  // f_target(x) per image (every method); f_target(baseline) per image for integrated gradients
  // (empty otherwise): sum(raw[n]) - (target_logit[n] - baseline_logit[n]) is IG's completeness gap.
  std::vector<double> target_logit, baseline_logit;

  std::int64_t image_size() const { return channels * height * width; }
  std::span<const float> raw_of(std::int64_t n) const {
    return {raw.data() + n * image_size(), static_cast<std::size_t>(image_size())};
  }
  std::span<const float> heatmap_of(std::int64_t n) const {
    return {heatmap.data() + n * height * width, static_cast<std::size_t>(height * width)};
  }
};

struct GradientOptions {
  int batch = kDefaultAttributionBatch;
};

// SmoothGrad (Smilkov et al. 2017): the mean gradient at x + noise, noise ~ N(0, sigma^2) per
// element, sigma = sigma_fraction * (max(x) - min(x)) over the image (all channels).
struct SmoothGradOptions {
  int samples = kDefaultSmoothGradSamples;  // 1 .. 65535
  float sigma_fraction = kDefaultSmoothGradSigma;
  std::uint64_t seed = 0;
  int batch = kDefaultAttributionBatch;  // noisy copies of one image per forward / backward
};

enum class IgRule { riemann_midpoint, gauss_legendre };
enum class IgBaseline { black, gray, mean, blurred };

inline const char* to_string(IgRule r) {
  return r == IgRule::riemann_midpoint ? "riemann_midpoint" : "gauss_legendre";
}
inline const char* to_string(IgBaseline b) {
  switch (b) {
    case IgBaseline::black: return "black";
    case IgBaseline::gray: return "gray";
    case IgBaseline::mean: return "mean";
    case IgBaseline::blurred: return "blurred";
  }
  return "?";
}

// Integrated gradients (Sundararajan et al. 2017), baselines in the network's (normalised) input
// space: black = (0 - mean_c) / std_c (the fundus background), gray = (0.5 - mean_c) / std_c,
// mean = 0 (the data mean), blurred = a Gaussian blur of the image (sigma blur_sigma px, reflect
// padding; blurring commutes with the per-channel normalisation).
struct IntegratedGradientsOptions {
  int steps = kDefaultIgSteps;
  IgRule rule = IgRule::riemann_midpoint;
  IgBaseline baseline = IgBaseline::black;
  ChannelStats normalisation = kDrStats;  // the statistics the images were normalised with
  float blur_sigma = kDefaultBlurSigma;
  int batch = kDefaultAttributionBatch;  // interpolation points of one image per forward / backward
};

// Quadrature on [0, 1]: points alpha_s (ascending) and weights w_s, sum_s w_s g(alpha_s) ~ int g.
struct Quadrature {
  std::vector<double> alphas, weights;
};

// Riemann midpoint: alpha_s = (s + 1/2) / S, w_s = 1 / S. Gauss-Legendre: the S roots of P_S mapped
// from [-1, 1] to [0, 1] (Newton on the three-term recurrence, in double), weights halved.
inline Quadrature ig_quadrature(IgRule rule, int steps) {
  FOVEA_CHECK(steps >= 1, "integrated gradients: steps must be >= 1, got ", steps);
  Quadrature q;
  q.alphas.resize(static_cast<std::size_t>(steps));
  q.weights.resize(static_cast<std::size_t>(steps));
  if (rule == IgRule::riemann_midpoint) {
    for (int s = 0; s < steps; ++s) {
      q.alphas[static_cast<std::size_t>(s)] = (s + 0.5) / steps;
      q.weights[static_cast<std::size_t>(s)] = 1.0 / steps;
    }
    return q;
  }
  // P_n(t) and P_n'(t) by the three-term recurrence.
  const int n = steps;
  const auto legendre = [n](double t, double& derivative) {
    double p0 = 1.0, p1 = t;  // P_0, P_1
    for (int k = 2; k <= n; ++k) {
      const double p2 = ((2.0 * k - 1.0) * t * p1 - (k - 1.0) * p0) / k;
      p0 = p1;
      p1 = p2;
    }
    derivative = n * (t * p1 - p0) / (t * t - 1.0);
    return p1;
  };
  for (int i = 0; i < n; ++i) {
    // Root i of P_n counted from +1 downwards; the start value is Tricomi's approximation.
    double t = std::cos(std::numbers::pi * (i + 0.75) / (n + 0.5)), dp = 1.0;
    for (int iter = 0; iter < 100; ++iter) {
      const double step = legendre(t, dp) / dp;
      t -= step;
      if (std::fabs(step) < 1e-15) break;
    }
    legendre(t, dp);
    const auto j = static_cast<std::size_t>(n - 1 - i);  // ascending alpha
    q.alphas[j] = 0.5 * (1.0 + t);
    q.weights[j] = 1.0 / ((1.0 - t * t) * dp * dp);  // half the weight 2 / ((1 - t^2) P_n'(t)^2)
  }
  return q;
}

// The signed channel sum (N, H, W): sum_c raw[n, c, h, w] (the heatmap keeps |.| instead).
inline std::vector<float> signed_channel_sum(const AttributionMaps& m) {
  const std::int64_t hw = m.height * m.width;
  std::vector<float> out(static_cast<std::size_t>(m.images * hw));
  for (std::int64_t n = 0; n < m.images; ++n)
    for (std::int64_t p = 0; p < hw; ++p) {
      double s = 0;
      for (std::int64_t c = 0; c < m.channels; ++c)
        s += m.raw[static_cast<std::size_t>((n * m.channels + c) * hw + p)];
      out[static_cast<std::size_t>(n * hw + p)] = static_cast<float>(s);
    }
  return out;
}

namespace detail {

inline void fill_heatmap(AttributionMaps& m) {
  const std::int64_t hw = m.height * m.width;
  m.heatmap.assign(static_cast<std::size_t>(m.images * hw), 0.0f);
  for (std::int64_t n = 0; n < m.images; ++n)
    for (std::int64_t p = 0; p < hw; ++p) {
      double s = 0;
      for (std::int64_t c = 0; c < m.channels; ++c)
        s += std::fabs(m.raw[static_cast<std::size_t>((n * m.channels + c) * hw + p)]);
      m.heatmap[static_cast<std::size_t>(n * hw + p)] = static_cast<float>(s);
    }
}

// Index into [0, n) of position i under reflect padding (torchvision's "reflect": no edge repeat),
// folded as often as needed.
inline std::int64_t reflect_index(std::int64_t i, std::int64_t n) {
  if (n == 1) return 0;
  const std::int64_t period = 2 * (n - 1);
  i %= period;
  if (i < 0) i += period;
  return i < n ? i : period - i;
}

// The input and output of the net for one call, owned between calls (the device copy of the inputs
// and of dlogits must outlive the queued work; the next host copy synchronises).
template <class Net>
class GradientRunner {
 public:
  // input_grad false: only the backward's side effects are wanted (a tap's gradients: Grad-CAM);
  // the first layer then skips its input gradient and run() takes grads == nullptr.
  GradientRunner(Net& net, Device device, std::int64_t channels, std::int64_t height, std::int64_t width,
                 bool input_grad = true)
      : net_(net), device_(device), c_(channels), h_(height), w_(width), input_grad_(input_grad) {
    net_.set_training(false);
    nn::set_input_grad(net_, input_grad);
    nn::set_param_grad(net_, false);  // only input (and tap) gradients are wanted: no backward-filter
  }
  ~GradientRunner() { nn::set_param_grad(net_, true); }
  GradientRunner(const GradientRunner&) = delete;
  GradientRunner& operator=(const GradientRunner&) = delete;

  // rows (b x C·H·W, host) -> grads (b x C·H·W, host; not written when null) of logit[target[i]]
  // and the target logits (not written when null).
  void run(const float* rows, std::int64_t b, std::span<const int> targets, float* grads, double* logits) {
    const Shape shape{b, c_, h_, w_};
    if (input_.device() != device_ || input_.data() == nullptr) input_ = Tensor(shape, device_);
    else input_.resize(shape);
    copy(CView(rows, shape, Device::cpu()), input_.view());
    const CView dx = pass(input_.view(), targets, logits, grads != nullptr);
    if (grads != nullptr) copy(dx, View(grads, shape, Device::cpu()));
  }

  // The same for inputs already on the runner's device: (b, C, H, W), kept alive by the caller until
  // the work queued on the device is done. Returns the input gradient on the device, valid until the
  // next call.
  CView run_on_device(CView inputs, std::span<const int> targets, double* logits) {
    FOVEA_CHECK(inputs.device() == device_, "attribution: inputs on ", inputs.device().str(), ", net on ",
                device_.str());
    return pass(inputs, targets, logits, true);
  }

 private:
  CView pass(CView input, std::span<const int> targets, double* logits, bool want_grads) {
    const std::int64_t b = input.shape()[0];
    CView out = net_.forward(input);  // (b, K)
    FOVEA_CHECK(out.shape().rank() == 2 && out.shape()[0] == b,
                "attribution: the net must give (N, K) logits, got ", out.shape().str());
    const std::int64_t k = out.shape()[1];
    host_logits_.resize(static_cast<std::size_t>(b * k));
    copy(out, View(host_logits_.data(), out.shape(), Device::cpu()));
    onehot_.assign(static_cast<std::size_t>(b * k), 0.0f);
    for (std::int64_t i = 0; i < b; ++i) {
      const int t = targets[static_cast<std::size_t>(i)];
      FOVEA_CHECK(0 <= t && t < k, "attribution: target class ", t, " outside [0, ", k, ")");
      onehot_[static_cast<std::size_t>(i * k + t)] = 1.0f;
      if (logits != nullptr) logits[i] = host_logits_[static_cast<std::size_t>(i * k + t)];
    }
    if (dlogits_.device() != device_ || dlogits_.data() == nullptr) dlogits_ = Tensor(out.shape(), device_);
    else dlogits_.resize(out.shape());
    copy(CView(onehot_.data(), out.shape(), Device::cpu()), dlogits_.view());
    CView dx = net_.backward(dlogits_.view());
    if (!want_grads) {
      if (!device_.is_cpu()) synchronize(device_);  // dlogits_ must outlive the queued backward
      return CView();
    }
    FOVEA_CHECK(input_grad_ && dx.data() != nullptr,
                "attribution: the net returned no input gradient (nn::set_input_grad)");
    check_same_shape("attribution", "input gradient", dx.shape(), "input", input.shape());
    return dx;
  }

  Net& net_;
  Device device_;
  std::int64_t c_, h_, w_;
  bool input_grad_ = true;
  Tensor input_, dlogits_;
  std::vector<float> host_logits_, onehot_;
};

struct Images {
  std::int64_t n = 0, c = 0, h = 0, w = 0;
  std::vector<float> host;  // (N, C, H, W)
  Device device;
  CView source;  // the caller's images, on `device`
  std::int64_t size() const { return c * h * w; }
  const float* image(std::int64_t i) const { return host.data() + i * size(); }
  // Images i0 .. i0 + b - 1 of the caller's tensor, on the device (no copy).
  CView batch(std::int64_t i0, std::int64_t b) const {
    return CView(source.data() + i0 * size(), Shape{b, c, h, w}, device);
  }
};

inline Images to_host(CView images, std::span<const int> targets, const char* what) {
  FOVEA_CHECK(images.shape().rank() == 4 && images.shape().c() == 3, what,
              ": images must be (N, 3, H, W), got ", images.shape().str());
  FOVEA_CHECK(static_cast<std::int64_t>(targets.size()) == images.shape().n(), what, ": ", targets.size(),
              " targets for ", images.shape().n(), " images");
  Images im{images.shape().n(),
            images.shape().c(),
            images.shape().h(),
            images.shape().w(),
            std::vector<float>(static_cast<std::size_t>(images.numel())),
            images.device(),
            images};
  copy(images, View(im.host.data(), images.shape(), Device::cpu()));
  return im;
}

inline AttributionMaps empty_maps(const Images& im) {
  AttributionMaps m;
  m.images = im.n;
  m.channels = im.c;
  m.height = im.h;
  m.width = im.w;
  m.raw.assign(im.host.size(), 0.0f);
  m.target_logit.assign(static_cast<std::size_t>(im.n), 0.0);
  return m;
}

inline void check_batch(int batch, const char* what) {
  FOVEA_CHECK(batch >= 1, what, ": batch must be >= 1, got ", batch);
}

// The device side of SmoothGrad and integrated gradients, on the net's device: one image and its
// baseline, `chunk` rows of inputs built from them, and the double accumulator of the gradients.
// The rows and the sums are made by fovea ops with the host loops' rounding, so the maps have the
// same bits as when this ran on the host; nothing but the image, its baseline and, once per image,
// the accumulator crosses between host and device.
class DeviceRows {
 public:
  DeviceRows(const Images& im, int chunk)
      : size_(im.size()),
        shape_{1, im.c, im.h, im.w},
        image_(shape_, im.device),
        baseline_(shape_, im.device),
        rows_(Shape{chunk, im.c, im.h, im.w}, im.device),
        acc_(double_accumulator(im.size(), im.device)) {}

  CView upload_image(const float* x) { return upload(x, image_); }
  CView upload_baseline(const float* x) { return upload(x, baseline_); }
  View row(int j) { return View(rows_.data() + j * size_, shape_, rows_.device()); }
  CView rows(int b) const {
    return CView(rows_.data(), Shape{b, shape_.c(), shape_.h(), shape_.w()}, rows_.device());
  }
  CView of(CView batch, int j) const { return CView(batch.data() + j * size_, shape_, batch.device()); }
  View acc() { return acc_.view(); }

 private:
  CView upload(const float* x, Tensor& t) {
    copy(CView(x, shape_, Device::cpu()), t.view());
    return t.view();
  }
  std::int64_t size_;
  Shape shape_;
  Tensor image_, baseline_, rows_, acc_;
};

// Plain gradients of whole images, in chunks of `batch` images.
template <class Net>
void image_gradients(GradientRunner<Net>& runner, const Images& im, std::span<const int> targets, int batch,
                     float* grads, double* logits) {
  for (std::int64_t i0 = 0; i0 < im.n; i0 += batch) {
    const std::int64_t b = std::min<std::int64_t>(batch, im.n - i0);
    const CView dx = runner.run_on_device(
        im.batch(i0, b), targets.subspan(static_cast<std::size_t>(i0), static_cast<std::size_t>(b)),
        logits + i0);
    copy(dx, View(grads + i0 * im.size(), dx.shape(), Device::cpu()));
  }
}

}  // namespace detail

// The baseline of one image (C, H, W) in the normalised input space (see IntegratedGradientsOptions).
inline std::vector<float> ig_baseline(std::span<const float> image, std::int64_t channels,
                                      std::int64_t height, std::int64_t width,
                                      const IntegratedGradientsOptions& opt) {
  FOVEA_CHECK(static_cast<std::int64_t>(image.size()) == channels * height * width && channels <= 3,
              "ig_baseline: image of ", image.size(), " values for (", channels, ", ", height, ", ", width,
              ")");
  const std::int64_t hw = height * width;
  std::vector<float> out(image.size());
  auto constant = [&](auto value_of) {
    for (std::int64_t c = 0; c < channels; ++c)
      std::fill_n(out.begin() + c * hw, hw, value_of(static_cast<int>(c)));
  };
  const ChannelStats& st = opt.normalisation;
  switch (opt.baseline) {
    case IgBaseline::black: constant([&](int c) { return (0.0f - st.mean[c]) / st.std[c]; }); break;
    case IgBaseline::gray: constant([&](int c) { return (0.5f - st.mean[c]) / st.std[c]; }); break;
    case IgBaseline::mean: constant([](int) { return 0.0f; }); break;
    case IgBaseline::blurred: {
      FOVEA_CHECK(opt.blur_sigma > 0.0f && std::isfinite(opt.blur_sigma), "ig_baseline: blur sigma ",
                  opt.blur_sigma, " must be > 0");
      const auto radius = static_cast<std::int64_t>(std::ceil(3.0 * opt.blur_sigma));
      std::vector<double> k(static_cast<std::size_t>(2 * radius + 1));
      double sum = 0;
      for (std::int64_t d = -radius; d <= radius; ++d) {
        const double v = std::exp(-0.5 * (d * d) / (double(opt.blur_sigma) * opt.blur_sigma));
        k[static_cast<std::size_t>(d + radius)] = v;
        sum += v;
      }
      for (double& v : k) v /= sum;
      std::vector<double> tmp(static_cast<std::size_t>(hw));
      for (std::int64_t c = 0; c < channels; ++c) {
        const float* src = image.data() + c * hw;
        for (std::int64_t y = 0; y < height; ++y)  // horizontal pass
          for (std::int64_t x = 0; x < width; ++x) {
            double s = 0;
            for (std::int64_t d = -radius; d <= radius; ++d)
              s += k[static_cast<std::size_t>(d + radius)] *
                   src[y * width + detail::reflect_index(x + d, width)];
            tmp[static_cast<std::size_t>(y * width + x)] = s;
          }
        for (std::int64_t y = 0; y < height; ++y)  // vertical pass
          for (std::int64_t x = 0; x < width; ++x) {
            double s = 0;
            for (std::int64_t d = -radius; d <= radius; ++d)
              s += k[static_cast<std::size_t>(d + radius)] *
                   tmp[static_cast<std::size_t>(detail::reflect_index(y + d, height) * width + x)];
            out[static_cast<std::size_t>(c * hw + y * width + x)] = static_cast<float>(s);
          }
      }
      break;
    }
  }
  return out;
}

// gradient: raw = d logit_target / d input.
template <class Net>
AttributionMaps gradient(Net& net, CView images, std::span<const int> targets,
                         const GradientOptions& opt = {}) {
  detail::check_batch(opt.batch, "gradient");
  const detail::Images im = detail::to_host(images, targets, "gradient");
  detail::GradientRunner<Net> runner(net, im.device, im.c, im.h, im.w);
  AttributionMaps m = detail::empty_maps(im);
  detail::image_gradients(runner, im, targets, opt.batch, m.raw.data(), m.target_logit.data());
  detail::fill_heatmap(m);
  return m;
}

// gradient_x_input: raw = x * d logit_target / d x (element-wise).
template <class Net>
AttributionMaps gradient_x_input(Net& net, CView images, std::span<const int> targets,
                                 const GradientOptions& opt = {}) {
  AttributionMaps m = gradient(net, images, targets, opt);
  std::vector<float> x(m.raw.size());
  copy(images, View(x.data(), images.shape(), Device::cpu()));
  for (std::size_t i = 0; i < x.size(); ++i) m.raw[i] *= x[i];
  detail::fill_heatmap(m);
  return m;
}

// smoothgrad: raw = (1/n) sum_s grad(x + sigma z_s), z_s[i] = normal(key(seed, image, s), i),
// key = (seed, kPurposeNoise, epoch 0, sample = image index, view = s); sigma = sigma_fraction *
// (max - min) of the image. The sum runs in double over s in order.
template <class Net>
AttributionMaps smoothgrad(Net& net, CView images, std::span<const int> targets,
                           const SmoothGradOptions& opt = {}) {
  detail::check_batch(opt.batch, "smoothgrad");
  FOVEA_CHECK(opt.samples >= 1 && static_cast<std::uint32_t>(opt.samples) <= kMaxView, "smoothgrad: samples ",
              opt.samples, " outside [1, ", kMaxView, "]");
  FOVEA_CHECK(opt.sigma_fraction >= 0.0f && std::isfinite(opt.sigma_fraction), "smoothgrad: sigma_fraction ",
              opt.sigma_fraction, " must be finite and >= 0");
  const detail::Images im = detail::to_host(images, targets, "smoothgrad");
  FOVEA_CHECK(im.n <= std::numeric_limits<std::uint32_t>::max(), "smoothgrad: too many images");
  detail::GradientRunner<Net> runner(net, im.device, im.c, im.h, im.w);
  AttributionMaps m = detail::empty_maps(im);
  const std::int64_t size = im.size();
  const int chunk = std::min(opt.batch, opt.samples);
  detail::DeviceRows dev(im, chunk);
  std::vector<int> chunk_targets(static_cast<std::size_t>(chunk));
  for (std::int64_t n = 0; n < im.n; ++n) {
    const float* x = im.image(n);
    const auto [lo, hi] = std::minmax_element(x, x + size);
    const float sigma = opt.sigma_fraction * (*hi - *lo);
    FOVEA_CHECK(std::isfinite(sigma), "smoothgrad: image ", n, " has values that are not finite (range ", *lo,
                " to ", *hi, ")");
    const CView xd = dev.upload_image(x);
    std::fill(chunk_targets.begin(), chunk_targets.end(), targets[static_cast<std::size_t>(n)]);
    for (int s0 = 0; s0 < opt.samples; s0 += chunk) {
      const int b = std::min(chunk, opt.samples - s0);
      for (int j = 0; j < b; ++j) {  // x + sigma z: the product rounded, then the sum (as on the host)
        const RandomKey key = make_key(opt.seed, kPurposeNoise, 0, static_cast<std::uint32_t>(n),
                                       static_cast<std::uint32_t>(s0 + j));
        random_normal(dev.row(j), key, 0.0f, sigma);
        add(xd, dev.row(j), dev.row(j));
      }
      const CView grads = runner.run_on_device(
          dev.rows(b), std::span<const int>(chunk_targets).first(static_cast<std::size_t>(b)), nullptr);
      for (int j = 0; j < b; ++j) accumulate_scaled(dev.of(grads, j), 1.0, dev.acc(), s0 + j == 0);
    }
    const std::vector<double> acc = read_double_accumulator(dev.acc());
    float* out = m.raw.data() + n * size;
    for (std::int64_t i = 0; i < size; ++i)
      out[i] = static_cast<float>(acc[static_cast<std::size_t>(i)] / opt.samples);
  }
  // f_target(x) without noise.
  for (std::int64_t i0 = 0; i0 < im.n; i0 += opt.batch) {
    const std::int64_t b = std::min<std::int64_t>(opt.batch, im.n - i0);
    runner.run(im.image(i0), b, targets.subspan(static_cast<std::size_t>(i0), static_cast<std::size_t>(b)),
               nullptr, m.target_logit.data() + i0);
  }
  detail::fill_heatmap(m);
  return m;
}

// integrated_gradients: raw = (x - x') * sum_s w_s grad(x' + alpha_s (x - x')) for the baseline x'
// and the rule's (alpha_s, w_s) (ig_quadrature); the steps of one image run in chunks of at most
// `batch` inputs, in order, the sum in double. target_logit / baseline_logit hold f(x) and f(x').
template <class Net>
AttributionMaps integrated_gradients(Net& net, CView images, std::span<const int> targets,
                                     const IntegratedGradientsOptions& opt = {}) {
  detail::check_batch(opt.batch, "integrated_gradients");
  const Quadrature q = ig_quadrature(opt.rule, opt.steps);
  const detail::Images im = detail::to_host(images, targets, "integrated_gradients");
  detail::GradientRunner<Net> runner(net, im.device, im.c, im.h, im.w);
  AttributionMaps m = detail::empty_maps(im);
  m.baseline_logit.assign(static_cast<std::size_t>(im.n), 0.0);
  const std::int64_t size = im.size();
  const int chunk = std::min(opt.batch, opt.steps);
  detail::DeviceRows dev(im, chunk);
  std::vector<float> rows(static_cast<std::size_t>(2 * size));
  std::vector<int> chunk_targets(static_cast<std::size_t>(std::max(chunk, 2)));
  for (std::int64_t n = 0; n < im.n; ++n) {
    const float* x = im.image(n);
    const std::vector<float> base = ig_baseline({x, static_cast<std::size_t>(size)}, im.c, im.h, im.w, opt);
    const CView xd = dev.upload_image(x), bd = dev.upload_baseline(base.data());
    std::fill(chunk_targets.begin(), chunk_targets.end(), targets[static_cast<std::size_t>(n)]);
    for (int s0 = 0; s0 < opt.steps; s0 += chunk) {
      const int b = std::min(chunk, opt.steps - s0);
      for (int j = 0; j < b; ++j)
        lerp(bd, xd, static_cast<float>(q.alphas[static_cast<std::size_t>(s0 + j)]), dev.row(j));
      const CView grads = runner.run_on_device(
          dev.rows(b), std::span<const int>(chunk_targets).first(static_cast<std::size_t>(b)), nullptr);
      for (int j = 0; j < b; ++j)
        accumulate_scaled(dev.of(grads, j), q.weights[static_cast<std::size_t>(s0 + j)], dev.acc(),
                          s0 + j == 0);
    }
    const std::vector<double> acc = read_double_accumulator(dev.acc());
    float* out = m.raw.data() + n * size;
    for (std::int64_t i = 0; i < size; ++i)
      out[i] = static_cast<float>((double(x[i]) - base[static_cast<std::size_t>(i)]) *
                                  acc[static_cast<std::size_t>(i)]);
    // f(x) and f(x') in one call of two inputs.
    std::copy_n(x, size, rows.begin());
    std::copy(base.begin(), base.end(), rows.begin() + size);
    double logits[2];
    runner.run(rows.data(), 2, std::span<const int>(chunk_targets).first(2), nullptr, logits);
    m.target_logit[static_cast<std::size_t>(n)] = logits[0];
    m.baseline_logit[static_cast<std::size_t>(n)] = logits[1];
  }
  detail::fill_heatmap(m);
  return m;
}

}  // namespace fovea::analysis
