// bench/bench_augment.cpp: the SimCLR two-view augmentation pipeline on a batch of 256 images 256x256 ->
// 224 (CUDA; 8 images on the CPU): images/s and GB/s over the copy bandwidth. Bytes counted per call:
// the input read once and the output written once per view (the minimum traffic; the blur passes
// and the gather's re-reads come on top), so frac_of_copy is the share of the copy bandwidth the
// pipeline achieves on that minimum. Variants: augment_batch (drawing parameters on the host
// included), augment_images (parameters drawn beforehand), and the crop gather alone.
//
// Per-kernel suite (CUDA only; nothing registers without a device): each augmentation op of
// ops/augment.hpp alone on a batch of 256 x 3 x 224 x 224, the op switched on for every sample, named
// aug_<op>/cuda/256x224. Bytes counted are the minimum an op must move: the output written once and
// each input pixel it depends on read once (crop: the crop boxes; rotation: the pixels that land
// inside the output; the others: the whole input), so GB/s / copy GB/s (frac_of_copy) is comparable
// with the element-wise ops'. Colour jitter is one kernel (plus a mean pass for contrast), so it is
// timed whole and without contrast, not per factor.
#include <cmath>
#include <span>
#include <vector>

#include "bench_common.hpp"
#include "fovea/data/augment.hpp"
#include "fovea/ops/augment.hpp"

namespace fovea::bench {

void register_augment_benchmarks(Device device);

namespace {

constexpr std::int64_t kSide = 256, kOut = 224;

// The element count whose copy bandwidth serves as this backend's reference.
std::int64_t reference_size(Device device) { return bench_sizes(device).back(); }

Tensor uniform_images(std::int64_t n, Device device) {
  Tensor t(Shape{n, 3, kSide, kSide}, device);
  random_uniform(t, make_key(1, kPurposeTest), 0.0f, 1.0f);
  synchronize(device);
  return t;
}

// The per-kernel suite: 256 images 224 x 224 in and out.
constexpr std::int64_t kKernelBatch = 256, kKernelSide = 224;

Tensor uniform_batch(std::int64_t n, std::int64_t side, Device device) {
  Tensor t(Shape{n, 3, side, side}, device);
  random_uniform(t, make_key(2, kPurposeTest), 0.0f, 1.0f);
  synchronize(device);
  return t;
}

std::vector<std::int64_t> sample_ids(std::int64_t n) {
  std::vector<std::int64_t> ids(static_cast<std::size_t>(n));
  for (std::int64_t i = 0; i < n; ++i) ids[static_cast<std::size_t>(i)] = 1000 + 7 * i;
  return ids;
}

void add_rates(benchmark::State& state, std::int64_t images, int views) {
  state.counters["images/s"] = benchmark::Counter(
      static_cast<double>(images) * static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
  state.counters["views"] = views;
}

// Parameters of `config` drawn for every sample (epoch 0, view 0) of a 224 x 224 batch.
std::vector<AugmentParams> drawn_params(const data::AugmentConfig& config) {
  return data::draw_batch_params(config, sample_ids(kKernelBatch), 0, 0, 42, kKernelSide, kKernelSide);
}

// Each sample unchanged geometrically (the crop box is the whole image), with `edit` applied.
template <class Edit>
std::vector<AugmentParams> neutral_batch(Edit edit) {
  std::vector<AugmentParams> params(static_cast<std::size_t>(kKernelBatch),
                                    neutral_params(kKernelSide, kKernelSide));
  for (std::size_t i = 0; i < params.size(); ++i) edit(params[i], i);
  return params;
}

// Output pixels (over the batch) whose source lies inside the image: the input pixels a
// geometric op reads at least, with the kernel's own mapping (rotation about the output centre).
double sampled_pixels(std::span<const AugmentParams> params) {
  const auto plan =
      ::fovea::detail::make_augment_plan(params, kKernelSide, kKernelSide, kKernelSide, kKernelSide);
  double count = 0;
  for (const auto& p : plan.samples) {
    if (!p.rotate) {
      count += static_cast<double>(p.crop_height) * p.crop_width;  // the crop box
      continue;
    }
    const float lo = -0.5f, hi = static_cast<float>(kKernelSide) - 0.5f;
    for (int oy = 0; oy < kKernelSide; ++oy)
      for (int ox = 0; ox < kKernelSide; ++ox) {
        const float dx = static_cast<float>(ox) - p.center, dy = static_cast<float>(oy) - p.center;
        const float x = dx * p.cos_a - dy * p.sin_a + p.center, y = dx * p.sin_a + dy * p.cos_a + p.center;
        if (x >= lo && x <= hi && y >= lo && y <= hi) count += 1;
      }
  }
  return count;
}

using PixelOp = void (*)(CView, std::span<const AugmentParams>, View);

// The blur tiles a row times (cuda/augment.hpp): the defaults, the scalar tiles (name suffix _scalar),
// the four-tap tiles in fitted tiles (BlurTileShape::fit, suffix _fit) or the streaming strips
// (BlurTileKernel::strip, suffix _strip), next to each other in one run.
enum class BlurRow { defaults, scalar, fit, strip };
const char* blur_suffix(BlurRow r) {
  return r == BlurRow::scalar ? "_scalar" : r == BlurRow::fit ? "_fit" : r == BlurRow::strip ? "_strip" : "";
}

#if FOVEA_WITH_CUDA
class ScopedBlurTiles {
 public:
  explicit ScopedBlurTiles(BlurRow row)
      : kernel_(cuda::blur_tile_kernel_choice(), row == BlurRow::scalar  ? cuda::BlurTileKernel::scalar
                                                 : row == BlurRow::fit   ? cuda::BlurTileKernel::vector4
                                                 : row == BlurRow::strip ? cuda::BlurTileKernel::strip
                                                                         : cuda::blur_tile_kernel_choice()),
        shape_(cuda::blur_tile_shape(),
               row == BlurRow::fit ? cuda::BlurTileShape::fit : cuda::blur_tile_shape()) {}

 private:
  ScopedValue<cuda::BlurTileKernel> kernel_;
  ScopedValue<cuda::BlurTileShape> shape_;
};
#else
struct ScopedBlurTiles {
  explicit ScopedBlurTiles(BlurRow) {}
};
#endif

// One op on every sample of the kernel batch, with the blur tiles of `row`.
void register_pixel_op(const std::string& op, PixelOp fn, std::vector<AugmentParams> params, Device device,
                       BlurRow row = BlurRow::defaults) {
  const std::int64_t n = kKernelBatch, side = kKernelSide;
  const double bytes = 2 * float_bytes(n * 3 * side * side);
  register_timed(op + blur_suffix(row) + "/cuda/256x224", [=](benchmark::State& state) {
    const ScopedBlurTiles tiles(row);
    const Tensor x = uniform_batch(n, side, device);
    Tensor out(Shape{n, 3, side, side}, device);
    time_bandwidth(state, device, reference_size(device), bytes, [&] { fn(x, params, out); });
    add_rates(state, n, 1);
  });
}

#if FOVEA_WITH_CUDA
// The pixel kernel's row mapping for a scope (cuda::pixel_rows(): strided, or consecutive rows per
// thread, name suffix _consecutive).
struct ScopedPixelRows {
  explicit ScopedPixelRows(bool consecutive)
      : rows(cuda::pixel_rows(), consecutive ? cuda::PixelRows::consecutive : cuda::pixel_rows()) {}
  ScopedValue<cuda::PixelRows> rows;
};
#else
struct ScopedPixelRows {
  explicit ScopedPixelRows(bool) {}
};
#endif

void register_geometry_op(const std::string& op, std::vector<AugmentParams> params, Device device,
                          bool consecutive = false) {
  register_timed(op + (consecutive ? "_consecutive" : "") + "/cuda/256x224", [=](benchmark::State& state) {
    const ScopedPixelRows rows(consecutive);
    const std::int64_t n = kKernelBatch, side = kKernelSide;
    const double bytes =
        float_bytes(3 * static_cast<std::int64_t>(sampled_pixels(params))) + float_bytes(n * 3 * side * side);
    const Tensor x = uniform_batch(n, side, device);
    Tensor out(Shape{n, 3, side, side}, device);
    time_bandwidth(state, device, reference_size(device), bytes,
                   [&] { random_resized_crop_flip(x, params, out); });
    add_rates(state, n, 1);
  });
}

// One augmentation kernel per benchmark (CUDA only).
void register_augment_kernel_benchmarks(Device device) {
  if (!device.is_cuda()) return;
  // Random resized crop + bilinear resize (SimCLR's scale 0.08-1, ratio 3/4-4/3), no flip.
  data::AugmentConfig crop = data::supervised_train(static_cast<int>(kKernelSide));
  crop.hflip_p = 0.0f;
  register_geometry_op("aug_crop_resize", drawn_params(crop), device);
  register_geometry_op("aug_crop_resize", drawn_params(crop), device, true);
  // Flips alone: every sample mirrored horizontally, every other one vertically too.
  register_geometry_op("aug_flip", neutral_batch([](AugmentParams& p, std::size_t i) {
                         p.hflip = 1;
                         p.vflip = i % 2 == 0 ? 1 : 0;
                       }),
                       device);
  // Rotation alone: angles spread over -45..45 degrees (zero fill outside).
  register_geometry_op("aug_rotate", neutral_batch([](AugmentParams& p, std::size_t i) {
                         p.rotation_degrees = -45.0f + 90.0f * static_cast<float>((i * 37) % 256) / 255.0f;
                       }),
                       device);
  // Colour jitter with all four factors (SimCLR's strengths, random order) on every sample; then
  // without contrast, which needs a mean pass before the pixel pass.
  data::AugmentConfig jitter = data::simclr(static_cast<int>(kKernelSide));
  jitter.jitter_p = 1.0f;
  register_pixel_op("aug_color_jitter", color_jitter, drawn_params(jitter), device);
  std::vector<AugmentParams> no_contrast = drawn_params(jitter);
  for (AugmentParams& p : no_contrast) {
    p.contrast = 1.0f;
    p.jitter_ops = static_cast<std::uint8_t>(p.jitter_ops & ~(1u << kJitterContrast));
  }
  register_pixel_op("aug_color_jitter_no_contrast", color_jitter, no_contrast, device);
  register_pixel_op("aug_grayscale", grayscale,
                    neutral_batch([](AugmentParams& p, std::size_t) { p.grayscale = 1; }), device);
  // Gaussian blur: SimCLR's kernel (10 % of the side: 23 taps), sigma 0.1-2, every sample.
  data::AugmentConfig blur = data::simclr(static_cast<int>(kKernelSide));
  blur.blur_p = 1.0f;
  register_pixel_op("aug_gaussian_blur", gaussian_blur, drawn_params(blur), device);
  for (const BlurRow row : {BlurRow::scalar, BlurRow::fit, BlurRow::strip})
    register_pixel_op("aug_gaussian_blur", gaussian_blur, drawn_params(blur), device, row);
  register_pixel_op("aug_solarize", solarize,
                    neutral_batch([](AugmentParams& p, std::size_t) { p.solarize = 1; }), device);
  register_timed("aug_normalize/cuda/256x224", [device](benchmark::State& state) {
    const std::int64_t n = kKernelBatch, side = kKernelSide;
    const Tensor x = uniform_batch(n, side, device);
    Tensor out(Shape{n, 3, side, side}, device);
    time_bandwidth(state, device, reference_size(device), 2 * float_bytes(n * 3 * side * side),
                   [&] { normalize_channels(x, kDrStats, out); });
    add_rates(state, n, 1);
  });
  // The fused pipeline of one SimCLR view (crop, flip, jitter, grayscale, blur, normalise) for scale,
  // with the default (four-tap, square) blur tiles, the scalar ones, the fitted four-tap ones and the
  // strips; then with the default tiles and consecutive pixel rows.
  const auto register_view = [device](BlurRow row, bool consecutive) {
    register_timed(std::string("aug_simclr_view") + blur_suffix(row) + (consecutive ? "_consecutive" : "") +
                       "/cuda/256x224",
                   [device, row, consecutive](benchmark::State& state) {
                     const ScopedBlurTiles tiles(row);
                     const ScopedPixelRows rows(consecutive);
                     const std::int64_t n = kKernelBatch, side = kKernelSide;
                     const data::AugmentConfig c = data::simclr(static_cast<int>(side));
                     const auto params = drawn_params(c);
                     const Tensor x = uniform_batch(n, side, device);
                     Tensor out(Shape{n, 3, side, side}, device);
                     time_bandwidth(state, device, reference_size(device),
                                    2 * float_bytes(n * 3 * side * side),
                                    [&] { augment_images(x, params, c.stats, out); });
                     add_rates(state, n, 1);
                   });
  };
  for (const BlurRow row : {BlurRow::defaults, BlurRow::scalar, BlurRow::fit, BlurRow::strip})
    register_view(row, false);
  register_view(BlurRow::defaults, true);
}

}  // namespace

void register_augment_benchmarks(Device device) {
  register_augment_kernel_benchmarks(device);
  const std::int64_t n = device.is_cuda() ? 256 : 8;
  const double in_bytes = float_bytes(n * 3 * kSide * kSide), out_bytes = float_bytes(n * 3 * kOut * kOut);
  const std::string suffix = std::string("/") + (device.is_cuda() ? "cuda" : "cpu") + "/" +
                             std::to_string(n) + "x" + std::to_string(kSide) + "to" + std::to_string(kOut);

  register_timed("simclr_two_view_batch" + suffix, [=](benchmark::State& state) {
    const Tensor images = uniform_images(n, device);
    const auto ids = sample_ids(n);
    const data::TwoViewAugmenter aug(data::simclr(static_cast<int>(kOut)), 42);
    Tensor v0(Shape{n, 3, kOut, kOut}, device), v1(Shape{n, 3, kOut, kOut}, device);
    int epoch = 0;
    time_bandwidth(state, device, reference_size(device), 2 * (in_bytes + out_bytes),
                   [&] { aug(images, ids, epoch++, v0, v1); });
    add_rates(state, n, 2);
  });

  register_timed("simclr_two_view_images" + suffix, [=](benchmark::State& state) {
    const Tensor images = uniform_images(n, device);
    const auto ids = sample_ids(n);
    const data::AugmentConfig c = data::simclr(static_cast<int>(kOut));
    const auto p0 = data::draw_batch_params(c, ids, 0, 0, 42, kSide, kSide);
    const auto p1 = data::draw_batch_params(c, ids, 0, 1, 42, kSide, kSide);
    Tensor v0(Shape{n, 3, kOut, kOut}, device), v1(Shape{n, 3, kOut, kOut}, device);
    time_bandwidth(state, device, reference_size(device), 2 * (in_bytes + out_bytes), [&] {
      augment_images(images, p0, c.stats, v0);
      augment_images(images, p1, c.stats, v1);
    });
    add_rates(state, n, 2);
  });

  register_timed("random_resized_crop_flip" + suffix, [=](benchmark::State& state) {
    const Tensor images = uniform_images(n, device);
    const auto ids = sample_ids(n);
    const auto params =
        data::draw_batch_params(data::simclr(static_cast<int>(kOut)), ids, 0, 0, 42, kSide, kSide);
    Tensor out(Shape{n, 3, kOut, kOut}, device);
    time_bandwidth(state, device, reference_size(device), in_bytes + out_bytes,
                   [&] { random_resized_crop_flip(images, params, out); });
    add_rates(state, n, 1);
  });
}

}  // namespace fovea::bench
