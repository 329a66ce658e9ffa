// tests/emu/emu_augment.cpp: the augmentation kernels' device code (kernels/augment.cuh) run on the
// CPU by the emulation layer (emu_cuda.hpp) against the CPU twins (fovea/cpu/augment.hpp), which they
// must match within 1e-5 (they are written to be bitwise equal; the count of differing values is
// printed): the Gaussian-blur tile kernel at every tap count and awkward sizes, crops, flips, colour
// jitter with and without contrast, and the fused pipeline as the CUDA twin launches it. Argument
// `big` adds 224-px cases. Exit status 1 on any failure.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "emu_cuda.hpp"
#include "fovea/cpu/augment.hpp"
#include "fovea/data/augment.hpp"

namespace fovea::emu {
using ::fovea::ChannelStats;
using ::fovea::detail::AugmentBatchPlan;
using ::fovea::detail::AugmentPlan;
using std::min;
#include "augment_device.inc"
}  // namespace fovea::emu

using namespace fovea;
using namespace fovea::emu;
const float kNaN = std::numeric_limits<float>::quiet_NaN();

// The device plan as DevicePlanBuffer lays it out: the arrival counts zero (as uploaded), the partial
// sums and means NaN until written.
struct Plan {
  explicit Plan(AugmentBatchPlan h) : host(std::move(h)) {}
  AugmentBatchPlan host;
  std::vector<double> parts;
  std::vector<unsigned> arrivals;
  std::vector<float> means;
  DevicePlan view() {
    parts.assign(host.samples.size() * kMeanChunks, std::numeric_limits<double>::quiet_NaN());
    arrivals.assign(host.samples.size(), 0u);
    means.assign(host.samples.size(), std::numeric_limits<float>::quiet_NaN());
    DevicePlan d;
    d.plans = host.samples.data();
    d.mean_parts = parts.data();
    d.arrivals = arrivals.data();
    d.means = means.data();
    d.weights = host.blur_weights.data();
    d.blurred = host.blurred.data();
    return d;
  }
};

static int failures = 0;
static void compare(const char* what, const std::vector<float>& got, const std::vector<float>& ref) {
  std::size_t bad = 0, differ = 0;
  double worst = 0;
  for (std::size_t i = 0; i < ref.size(); ++i) {
    const double err = std::fabs(static_cast<double>(got[i]) - ref[i]);
    if (got[i] != ref[i]) ++differ;
    if (!(err <= 1e-5 + 1e-5 * std::fabs(ref[i]))) {
      if (bad++ < 3) std::printf("   [%zu] got %g ref %g\n", i, got[i], ref[i]);
    }
    if (!std::isnan(err)) worst = std::max(worst, err);
  }
  std::printf("%-40s %s: %zu/%zu out of tolerance, %zu not bitwise equal, max err %.3g\n", what,
              bad ? "FAIL" : "ok", bad, ref.size(), differ, worst);
  failures += bad != 0;
}

static std::vector<float> random_vec(std::size_t n, std::uint64_t seed) {
  std::mt19937_64 gen(seed);
  std::uniform_real_distribution<float> u(0.01f, 0.99f);
  std::vector<float> v(n);
  for (auto& x : v) x = u(gen);
  return v;
}

static std::vector<AugmentParams> varied(int n, int h, int w, int s, int epoch, int blur_kernel) {
  data::AugmentConfig c = data::simclr(s);
  c.rotation_degrees = 30.0f;
  c.vflip_p = 0.5f;
  c.solarize_p = 0.5f;
  c.blur_kernel_size = blur_kernel;
  std::vector<AugmentParams> p;
  for (int i = 0; i < n; ++i) {
    AugmentParams q =
        data::draw_augment_params(c, data::augment_key(99, epoch, static_cast<std::uint32_t>(i), 0), h, w);
    q.jitter = i % 5 != 4;
    q.blur = i % 2 == 0;
    if (blur_kernel > 23) q.blur_sigma = blur_kernel / 6.0f;  // keep every tap: the large-halo paths
    q.solarize = i % 3 == 1;
    q.grayscale = i % 4 == 3;
    if (i % 3 == 2) q.rotation_degrees = 0.0f;
    p.push_back(q);
  }
  return p;
}

// The widest blur radius of the plan, and whether the four-tap tile kernel takes it.
static int max_radius(const AugmentBatchPlan& plan) {
  int radius = 0;
  for (int b : plan.blurred) radius = std::max(radius, plan.samples[b].blur_kernel / 2);
  return radius;
}
static bool vec4_takes(const AugmentBatchPlan& plan) { return 2 * max_radius(plan) + 1 <= kVec4MaxTaps; }

// The tile kernel a case runs: the scalar one, the four-tap one in square or fitted tiles, or the
// streaming strips.
enum class Tiles { scalar, vec4, vec4_fit, strip };
static const char* tiles_name(Tiles t) {
  return t == Tiles::scalar ? "" : t == Tiles::vec4 ? " vec4" : t == Tiles::vec4_fit ? " vec4 fit" : " strip";
}

// Launches the blur kernel of `kind` on the plan's blurred planes of x (h x w) as launch_blur_tiles
// does, with at most max_planes blocks along y (fewer than the planes exercises the kernels' stride).
static void run_blur_tiles(Tiles kind, const float* x, float* out, int h, int w, const Plan& plan,
                           const DevicePlan& d, int compact, const ChannelStats& stats, int stages,
                           std::int64_t max_planes) {
  const int radius = max_radius(plan.host);
  const std::int64_t blurred = plan.host.blurred.size();
  const unsigned planes = static_cast<unsigned>(std::min<std::int64_t>(3 * blurred, max_planes));
  if (kind == Tiles::strip) {
    const int strip_w = blur_strip_width(w);
    const std::size_t smem = sizeof(float) * blur_strip_layout(radius, strip_w).floats;
    launch(dim3((w + strip_w - 1) / strip_w, planes), kBlock, smem, true, [&] {
      cp_begin();
      blur_strip_kernel(x, out, h, w, d, blurred, compact, stats, stages, strip_w);
      cp_check_drained();
    });
    return;
  }
  const BlurVec4Shape shape = kind == Tiles::vec4_fit ? blur_vec4_fit(h, w) : BlurVec4Shape{};
  const int tiles = ((w + shape.tile_w - 1) / shape.tile_w) * ((h + shape.tile_h - 1) / shape.tile_h);
  const bool vec4 = kind != Tiles::scalar;
  const std::size_t smem =
      sizeof(float) * (vec4 ? blur_vec4_layout(radius, shape).floats : blur_tile_layout(radius).floats);
  launch(dim3(tiles, planes), kBlock, smem, true, [&] {
    if (vec4) blur_vec4_kernel(x, out, h, w, d, blurred, compact, stats, stages, shape);
    else blur_tile_kernel(x, out, h, w, d, blurred, compact, stats, stages);
  });
}

// gaussian_blur as the CUDA twin runs it out of place (copy kernel + tile kernel).
static void blur_case(const char* what, int n, int h, int w, std::vector<AugmentParams> params, Tiles kind) {
  const std::vector<float> x = random_vec(static_cast<std::size_t>(n) * 3 * h * w, h * 131 + w);
  Plan plan(detail::make_augment_plan(params, h, w, h, w, false));
  Tensor xt = Tensor::from(x, Shape{n, 3, h, w}), ref(Shape{n, 3, h, w});
  cpu::gaussian_blur(xt, plan.host, ref);
  std::vector<float> out(x.size(), kNaN);
  DevicePlan d = plan.view();
  const std::int64_t sf = 3LL * h * w;
  launch(dim3(2, n), kBlock, 0, false, [&] { copy_unblurred_kernel(x.data(), out.data(), sf, n, d); });
  run_blur_tiles(kind, x.data(), out.data(), h, w, plan, d, 0, kIdentityStats, 0, 4);
  compare((std::string(what) + tiles_name(kind)).c_str(), out, ref.to_vector());
}

// blur_case with the scalar tile kernel, and with the four-tap ones (square and fitted tiles, strips)
// where they take the plan.
static void blur_cases(const char* what, int n, int h, int w, const std::vector<AugmentParams>& params) {
  blur_case(what, n, h, w, params, Tiles::scalar);
  if (vec4_takes(detail::make_augment_plan(params, h, w, h, w, false)))
    for (const Tiles t : {Tiles::vec4, Tiles::vec4_fit, Tiles::strip}) blur_case(what, n, h, w, params, t);
}

// The row mapping of the geometry launches: strided, or consecutive rows per thread
// (cuda::PixelRows::consecutive: pixel_kernel<stages, 1>), whose gathers reuse source rows.
static bool g_consecutive = false;
static const char* rows_name() { return g_consecutive ? " consecutive" : ""; }
template <int kStages>
static void pixel_launch(const float* x, float* out, float* deferred, const PixelGeometry& g,
                         const DevicePlan& d, const ChannelStats& stats, int stages) {
  if (g_consecutive) pixel_kernel<kStages, 1>(x, out, deferred, g, d.plans, d.means, stats, stages);
  else pixel_kernel<kStages>(x, out, deferred, g, d.plans, d.means, stats, stages);
}

// Output tiles of pixel_kernel for an h x w output.
static int pixel_tiles(int h, int w) {
  return ((w + kPixelTileW - 1) / kPixelTileW) * ((h + kPixelTileH - 1) / kPixelTileH);
}

// random_resized_crop_flip of x (n, 3, h, w) to s x s through the gather, against the CPU twin.
static void geometry_check(const char* what, const std::vector<float>& x,
                           const std::vector<AugmentParams>& params, int n, int h, int w, int s) {
  Plan plan(detail::make_augment_plan(params, h, w, s, s));
  Tensor xt = Tensor::from(x, Shape{n, 3, h, w}), ref(Shape{n, 3, s, s});
  cpu::random_resized_crop_flip(xt, plan.host, ref);
  std::vector<float> out(static_cast<std::size_t>(n) * 3 * s * s, kNaN);
  DevicePlan d = plan.view();
  PixelGeometry g{h, w, s, s, n};
  launch(dim3(pixel_tiles(s, s), std::min(n, 2)), kBlock, 0, false,
         [&] { pixel_launch<kStageGeometry>(x.data(), out.data(), nullptr, g, d, kIdentityStats, 0); });
  compare((std::string(what) + rows_name()).c_str(), out, ref.to_vector());
}

static void crop_case(const char* what, int n, int h, int w, int s) {
  const std::vector<float> x = random_vec(static_cast<std::size_t>(n) * 3 * h * w, h * 7 + w);
  geometry_check(what, x, varied(n, h, w, s, 1, 5), n, h, w, s);
}

// augment_images as the CUDA twin runs it with the fused blur.
static void pipeline_case(const char* what, int n, int h, int w, int s, int epoch, int blur_kernel,
                          Tiles kind) {
  const std::vector<float> x = random_vec(static_cast<std::size_t>(n) * 3 * h * w, h * 3 + w + epoch);
  const auto params = varied(n, h, w, s, epoch, blur_kernel);
  Plan plan(detail::make_augment_plan(params, h, w, s, s));
  Tensor xt = Tensor::from(x, Shape{n, 3, h, w}), ref(Shape{n, 3, s, s});
  cpu::augment_images(xt, plan.host, kDrStats, ref);
  std::vector<float> out(static_cast<std::size_t>(n) * 3 * s * s, kNaN);
  std::vector<float> scratch(plan.host.blurred.size() * 3 * s * s, kNaN);
  DevicePlan d = plan.view();
  PixelGeometry g{h, w, s, s, n};
  const int stages =
      kStageGeometry | kStageJitter | kStageGray | kStageSolarize | kStageNormalize | kStageDeferBlurred;
  launch(dim3(kMeanChunks, std::min(n, 2)), kBlock, 0, true,
         [&] { contrast_mean_kernel(x.data(), g, d.plans, d.mean_parts, d.arrivals, d.means, stages); });
  const int tiles = pixel_tiles(s, s);
  launch(dim3(tiles, n), kBlock, 0, false,
         [&] { pixel_launch<-1>(x.data(), out.data(), scratch.data(), g, d, kDrStats, stages); });
  run_blur_tiles(kind, scratch.data(), out.data(), s, s, plan, d, 1, kDrStats,
                 kStageSolarize | kStageNormalize, 65535);
  compare((std::string(what) + tiles_name(kind) + rows_name()).c_str(), out, ref.to_vector());
}

// pipeline_case with each blur kernel (the four-tap ones where they take the plan).
static void pipeline_cases(const char* what, int n, int h, int w, int s, int epoch, int blur_kernel) {
  pipeline_case(what, n, h, w, s, epoch, blur_kernel, Tiles::scalar);
  if (blur_kernel <= kVec4MaxTaps)
    for (const Tiles t : {Tiles::vec4, Tiles::vec4_fit, Tiles::strip})
      pipeline_case(what, n, h, w, s, epoch, blur_kernel, t);
}

// Flips alone (whole-image crop: every tap of weight 0 or 1) through the gather; square images.
static void flip_case(const char* what, int n, int side) {
  const std::vector<float> x = random_vec(static_cast<std::size_t>(n) * 3 * side * side, side * 6);
  std::vector<AugmentParams> params(n, neutral_params(side, side));
  for (int i = 0; i < n; ++i) params[i].hflip = i % 2 == 0, params[i].vflip = i % 3 == 0;
  geometry_check(what, x, params, n, side, side, side);
}

// color_jitter alone (contrast mean pass + pixel pass), every sample jittered, varied orders.
static void jitter_case(const char* what, int n, int h, int w, bool contrast) {
  const std::vector<float> x = random_vec(static_cast<std::size_t>(n) * 3 * h * w, h * 11 + w);
  std::vector<AugmentParams> params = varied(n, h, w, h, 4, 5);
  for (auto& p : params) {
    p.jitter = 1;
    if (!contrast) p.jitter_ops = static_cast<std::uint8_t>(p.jitter_ops & ~(1u << kJitterContrast));
  }
  Plan plan(detail::make_augment_plan(params, h, w, h, w, false));
  Tensor xt = Tensor::from(x, Shape{n, 3, h, w}), ref(Shape{n, 3, h, w});
  cpu::color_jitter(xt, plan.host, ref);
  std::vector<float> out(x.size(), kNaN);
  DevicePlan d = plan.view();
  PixelGeometry g{h, w, h, w, n};
  launch(dim3(kMeanChunks, std::min(n, 3)), kBlock, 0, true,
         [&] {
           contrast_mean_kernel(x.data(), g, d.plans, d.mean_parts, d.arrivals, d.means, kStageJitter);
         });
  const int tiles = pixel_tiles(h, w);
  launch(dim3(tiles, std::min(n, 2)), kBlock, 0, false, [&] {
    pixel_kernel<kStageJitter>(x.data(), out.data(), nullptr, g, d.plans, d.means, kIdentityStats, 0);
  });
  compare(what, out, ref.to_vector());
}

// Sample i blurred when on[i % on.size()], kernels[i % kernels.size()] taps, sigma 0.3 + 0.7 i (small
// sigmas lose their negligible tails in the plan) or, keep_all_taps, a sixth of the kernel.
static std::vector<AugmentParams> blur_params(int n, int h, int w, std::vector<int> kernels,
                                              std::vector<int> on, bool keep_all_taps = false) {
  std::vector<AugmentParams> p(n, neutral_params(h, w));
  for (int i = 0; i < n; ++i) {
    p[i].blur = on[i % on.size()];
    p[i].blur_kernel = kernels[i % kernels.size()];
    p[i].blur_sigma = keep_all_taps ? p[i].blur_kernel / 6.0f + 0.1f * i : 0.3f + 0.7f * i;
  }
  return p;
}

int main(int argc, char** argv) {
  const bool big = argc > 1 && std::string(argv[1]) == "big";
  blur_cases("blur 3x37x41 k3/5/23 some off", 3, 37, 41, blur_params(3, 37, 41, {3, 5, 23}, {1, 0, 1}));
  blur_cases("blur 3x37x41 k1/23/7 all on", 3, 37, 41, blur_params(3, 37, 41, {1, 23, 7}, {1}));
  blur_cases("blur 3x5x40 k7/23 wide", 3, 5, 40, blur_params(3, 5, 40, {7, 23, 11}, {1, 0, 1}));
  blur_cases("blur 2x1x1 k5", 2, 1, 1, blur_params(2, 1, 1, {5}, {1}));
  blur_cases("blur 3x7x33 k9", 3, 7, 33, blur_params(3, 7, 33, {9, 3}, {1}));
  blur_cases("blur 2x67x129 k15/29", 2, 67, 129, blur_params(2, 67, 129, {15, 29}, {1}, true));
  blur_cases("blur 3x70x90 k61/7", 3, 70, 90, blur_params(3, 70, 90, {61, 7}, {1}, true));
  // every tap count the four-tap kernel unrolls for (1 to 31: four-tap groups 1 to 8), all taps kept
  blur_cases("blur 16x70x90 k1..31", 16, 70, 90,
             blur_params(16, 70, 90, {1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31}, {1}, true));
  blur_cases("blur 3x9x130 k31/29/27", 3, 9, 130, blur_params(3, 9, 130, {31, 29, 27}, {1}, true));
  pipeline_cases("pipeline 3x150x130->100 k61", 3, 150, 130, 100, 3, 61);
  flip_case("flip 5x37x37", 5, 37);
  flip_case("flip 4x70x70", 4, 70);
  jitter_case("jitter 6x37x41 contrast", 6, 37, 41, true);
  jitter_case("jitter 6x37x41 no contrast", 6, 37, 41, false);
  jitter_case("jitter 5x3x5 contrast", 5, 3, 5, true);
  // mean chunks of over kMeanUnroll x 256 pixels: the mean pass's unrolled loop and its tail
  jitter_case("jitter 2x130x135 contrast", 2, 130, 135, true);
  crop_case("crop 5x37x41->32", 5, 37, 41, 32);
  crop_case("crop 5x33x33->33", 5, 33, 33, 33);
  crop_case("crop 5x7x9->1", 5, 7, 9, 1);
  crop_case("crop 3x70x90->41", 3, 70, 90, 41);
  crop_case("crop 4x200x180->40", 4, 200, 180, 40);  // downscaling crops
  pipeline_cases("pipeline 5x37x41->32 k5 e0", 5, 37, 41, 32, 0, 5);
  pipeline_cases("pipeline 5x37x41->32 k3 e1", 5, 37, 41, 32, 1, 3);
  pipeline_cases("pipeline 5x37x41->32 k23 e2", 5, 37, 41, 32, 2, 23);
  pipeline_cases("pipeline 2x150x140->130 k23 e3", 2, 150, 140, 130, 3, 23);
  // The same gathers with consecutive rows per thread (source rows reused from registers).
  g_consecutive = true;
  flip_case("flip 5x37x37", 5, 37);
  crop_case("crop 5x37x41->32", 5, 37, 41, 32);
  crop_case("crop 5x7x9->1", 5, 7, 9, 1);
  crop_case("crop 3x70x90->41", 3, 70, 90, 41);
  crop_case("crop 4x200x180->40", 4, 200, 180, 40);
  crop_case("crop 3x40x50->130", 3, 40, 50, 130);  // every crop upscales
  pipeline_case("pipeline 5x37x41->32 k23 e2", 5, 37, 41, 32, 2, 23, Tiles::vec4);
  pipeline_case("pipeline 2x150x140->130 k23 e3", 2, 150, 140, 130, 3, 23, Tiles::vec4);
  g_consecutive = false;
  if (big) {
    blur_cases("blur 2x224x224 k23", 2, 224, 224, blur_params(2, 224, 224, {23}, {1}));
    crop_case("crop 3x256x256->224", 3, 256, 256, 224);
    flip_case("flip 3x224x224", 3, 224);
    jitter_case("jitter 3x224x224 contrast", 3, 224, 224, true);
    pipeline_cases("pipeline 3x256x256->224 k23", 3, 256, 256, 224, 0, 23);
    g_consecutive = true;
    crop_case("crop 3x256x256->224", 3, 256, 256, 224);
    pipeline_case("pipeline 3x256x256->224 k23", 3, 256, 256, 224, 0, 23, Tiles::vec4);
    g_consecutive = false;
  }
  std::printf("%s\n", failures ? "FAILURES" : "all ok");
  return failures ? 1 : 0;
}
