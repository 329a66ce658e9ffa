// tests/emu/emu_corruptions.cpp: the corruption kernels' device code (kernels/corruptions.cuh) run
// on the CPU by the emulation layer (emu_cuda.hpp), launched as cuda::corrupt_batch launches them,
// on the plan data::detail::corruption::corruption_plan resolves, against data::corrupt image by
// image. Host code without fused multiply-adds gives the CPU's bits, so every corruption (for
// jpeg_compression, its 8-bit packing kernels around stb's codec) at every severity must match
// bitwise on a batch of a fundus-like image, an image without a dark surround (all field of view)
// and, for the fundus ones, an all-black image (an empty field of view: copied), and a batch of
// 56-px-wide images (fog's plasma maps made by the device, in chunks). Argument `big` adds a 224-px batch.
// Exit status 1 on any failure.
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "emu_cuda.hpp"
#include "fovea/data/corruptions.hpp"

namespace fovea::emu {
using ::fovea::RandomKey;
using ::fovea::uniform;
using ::fovea::data::Corruption;
using ::fovea::data::detail::Border;
using ::fovea::data::detail::border_index;
using ::fovea::data::detail::corruption::CorruptBatchPlan;
using ::fovea::data::detail::corruption::CorruptImagePlan;
using ::fovea::data::detail::corruption::LinearTap;
using ::fovea::data::detail::corruption::Spot;
using ::fovea::data::detail::corruption::Tap;
#include "corruptions_device.inc"
}  // namespace fovea::emu

using namespace fovea;
using namespace fovea::emu;
namespace dc = fovea::data::detail::corruption;

static int failures = 0;

// A fundus-like image: a lit disc with texture on a near-black surround.
static Tensor fundus_like(std::int64_t h, std::int64_t w, int seed) {
  Tensor img(Shape{3, h, w});
  for (int c = 0; c < 3; ++c)
    for (std::int64_t y = 0; y < h; ++y)
      for (std::int64_t x = 0; x < w; ++x) {
        const double dx =
            (static_cast<double>(x) - 0.5 * static_cast<double>(w)) / (0.45 * static_cast<double>(w));
        const double dy =
            (static_cast<double>(y) - 0.5 * static_cast<double>(h)) / (0.48 * static_cast<double>(h));
        const float texture = static_cast<float>((x * 7 + y * 13 + c * 5 + seed * 3) % 17) / 17.0f;
        img.data()[(c * h + y) * w + x] = dx * dx + dy * dy < 1.0 ? 0.15f + 0.6f * texture : 0.01f;
      }
  return img;
}

// An image without a dark surround (all field of view): a smooth gradient with texture.
static Tensor plain(std::int64_t h, std::int64_t w) {
  Tensor img(Shape{3, h, w});
  for (int c = 0; c < 3; ++c)
    for (std::int64_t y = 0; y < h; ++y)
      for (std::int64_t x = 0; x < w; ++x)
        img.data()[(c * h + y) * w + x] = 0.2f +
                                          0.5f * static_cast<float>(x + y) / static_cast<float>(h + w) +
                                          0.02f * static_cast<float>((x * y + c) % 5);
  return img;
}

// Runs c at severity over batch (N, 3, H, W) with masks (N, 1, H, W) the way cuda::corrupt_batch
// does, returning the output.
static std::vector<float> run_emulated(const std::vector<float>& batch, const std::vector<float>& masks,
                                       std::int64_t n, std::int64_t h, std::int64_t w, Corruption c,
                                       int severity, std::uint64_t seed,
                                       const std::vector<std::int64_t>& samples) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const std::int64_t hw = h * w;
  // the boxes as the device computes them
  std::vector<std::int64_t> boxes(static_cast<std::size_t>(4 * n), -7);
  std::vector<data::BoundingBox> fov;
  if (data::is_fundus_corruption(c)) {
    launch(dim3(static_cast<unsigned>(n)), kBlock, 0, true,
           [&] { fov_box_kernel(masks.data(), h, w, boxes.data()); });
    for (std::int64_t k = 0; k < n; ++k)
      fov.push_back({boxes[4 * k], boxes[4 * k + 1], boxes[4 * k + 2], boxes[4 * k + 3]});
  }
  const CorruptBatchPlan plan = dc::corruption_plan(c, severity, seed, samples, h, w, fov);
  std::vector<float> stats(static_cast<std::size_t>(3 * n), nan);
  CorruptDevice d;
  d.images = plan.images.data();
  d.taps = plan.taps.data();
  d.kernel = plan.kernel.data();
  d.zoom = plan.zoom.data();
  d.index = plan.index.data();
  d.spots = plan.spots.data();
  d.layers = plan.layers.data();
  d.glass_delta = plan.glass_delta, d.glass_iterations = plan.glass_iterations;
  d.masks = plan.needs_mask ? masks.data() : nullptr;
  d.stats = stats.data();
  d.n = n, d.h = h, d.w = w, d.small_h = plan.small_h, d.small_w = plan.small_w;
  d.factors = static_cast<int>(plan.zoom.size() / static_cast<std::size_t>(h + w));
  d.a = plan.a, d.b = plan.b;
  std::vector<float> out(batch.size(), nan);
  const dim3 grid(3);  // a few blocks, so the grid-stride loops stride
  auto separable = [&](const float* in, float* dst, std::int64_t planes, Border border, bool clip) {
    std::vector<float> rows(static_cast<std::size_t>(planes * hw), nan);
    const int radius = static_cast<int>(plan.kernel.size() / 2);
    launch(grid, kBlock, 0, false,
           [&] { corrupt_rows_kernel(in, rows.data(), planes, h, w, plan.kernel.data(), radius, border); });
    launch(grid, kBlock, 0, false, [&] {
      corrupt_cols_kernel(rows.data(), dst, planes, h, w, plan.kernel.data(), radius, border, clip);
    });
  };
  auto pixels = [&](auto kernel) {
    launch(grid, kBlock, 0, false, [&] { kernel(batch.data(), out.data(), d); });
  };
  switch (c) {
    case Corruption::gaussian_noise: pixels(corrupt_pixel_kernel<0>); break;
    case Corruption::shot_noise: pixels(corrupt_pixel_kernel<1>); break;
    case Corruption::impulse_noise: pixels(corrupt_pixel_kernel<2>); break;
    case Corruption::speckle_noise: pixels(corrupt_pixel_kernel<3>); break;
    case Corruption::gaussian_blur: separable(batch.data(), out.data(), 3 * n, Border::clamp, true); break;
    case Corruption::defocus_blur: pixels(corrupt_pixel_kernel<5>); break;
    case Corruption::motion_blur: pixels(corrupt_pixel_kernel<6>); break;
    case Corruption::zoom_blur: pixels(corrupt_pixel_kernel<7>); break;
    case Corruption::brightness: pixels(corrupt_pixel_kernel<8>); break;
    case Corruption::contrast:
    case Corruption::fog: {
      const int mode = c == Corruption::contrast ? 0 : 1;
      launch(dim3(static_cast<unsigned>(3 * n)), kBlock, 0, true,
             [&] { corrupt_stats_kernel(batch.data(), stats.data(), hw, mode); });
      if (mode == 0) {
        pixels(corrupt_pixel_kernel<9>);
      } else if (plan.fog_map == 0) {  // layers from the host
        pixels(corrupt_pixel_kernel<14>);
      } else {  // as launch_fog_on_device, in chunks of 2 images (a batch of 3 has a second one)
        const std::int64_t m = plan.fog_map, chunk = 2;
        std::vector<double> maps(static_cast<std::size_t>(chunk * m * m), nan), norms(2 * chunk, nan);
        for (std::int64_t first = 0; first < n; first += chunk) {
          CorruptDevice part = d;
          part.n = std::min(chunk, n - first);
          part.images = d.images + first;
          part.stats = d.stats + 3 * first;
          part.plasma = maps.data(), part.plasma_norm = norms.data(), part.plasma_m = m;
          launch(dim3(static_cast<unsigned>(part.n)), kBlock, 0, true,
                 [&] { fog_plasma_kernel(maps.data(), norms.data(), m, plan.b, part.images); });
          launch(grid, kBlock, 0, false, [&] {
            corrupt_pixel_kernel<14>(batch.data() + first * 3 * hw, out.data() + first * 3 * hw, part);
          });
        }
      }
      break;
    }
    case Corruption::saturate: pixels(corrupt_pixel_kernel<10>); break;
    case Corruption::pixelate: pixels(corrupt_pixel_kernel<12>); break;
    case Corruption::elastic_transform: {
      std::vector<float> noise(static_cast<std::size_t>(2 * n * hw), nan), field(noise.size(), nan);
      launch(grid, kBlock, 0, false, [&] { elastic_noise_kernel(noise.data(), d); });
      separable(noise.data(), field.data(), 2 * n, Border::reflect, false);
      d.field = field.data();
      pixels(corrupt_pixel_kernel<13>);
      break;
    }
    case Corruption::uneven_illumination: pixels(corrupt_pixel_kernel<15>); break;
    case Corruption::halo: pixels(corrupt_pixel_kernel<16>); break;
    case Corruption::dark_hole: pixels(corrupt_pixel_kernel<17>); break;
    case Corruption::spots: pixels(corrupt_pixel_kernel<18>); break;
    case Corruption::fundus_defocus: pixels(corrupt_pixel_kernel<19>); break;
    case Corruption::glass_blur: {
      std::vector<std::int32_t> source(static_cast<std::size_t>(n * hw), -1);
      launch(grid, kBlock, 0, false, [&] { glass_source_kernel(source.data(), d); });
      d.source = source.data();
      std::vector<float> blurred(batch.size(), nan);
      separable(batch.data(), blurred.data(), 3 * n, Border::clamp, false);
      launch(grid, kBlock, 0, false, [&] { glass_shuffle_kernel(blurred.data(), out.data(), d); });
      separable(out.data(), out.data(), 3 * n, Border::clamp, true);
      break;
    }
    case Corruption::jpeg_compression: {  // as data::corrupt_batch's device route
      std::vector<unsigned char> pixels(static_cast<std::size_t>(3 * n * hw), 0xA5);
      launch(grid, kBlock, 0, false, [&] { jpeg_pack_kernel(batch.data(), pixels.data(), n, hw); });
      for (std::int64_t k = 0; k < n; ++k)
        dc::jpeg_roundtrip(pixels.data() + k * 3 * hw, h, w,
                           dc::kJpegQuality[static_cast<std::size_t>(severity - 1)], "emulated");
      launch(grid, kBlock, 0, false, [&] { jpeg_unpack_kernel(pixels.data(), out.data(), n, hw); });
      break;
    }
  }
  return out;
}

static void check_batch(const char* label, const std::vector<Tensor>& images, std::uint64_t seed) {
  const std::int64_t n = static_cast<std::int64_t>(images.size()), h = images[0].shape()[1],
                     w = images[0].shape()[2];
  const std::int64_t hw = h * w;
  std::vector<float> batch, masks;
  std::vector<Tensor> fov;
  for (const Tensor& im : images) {
    batch.insert(batch.end(), im.data(), im.data() + im.numel());
    fov.push_back(data::fov_mask(im));
    masks.insert(masks.end(), fov.back().data(), fov.back().data() + hw);
  }
  const std::vector<std::int64_t> samples = [&] {
    std::vector<std::int64_t> s;
    for (std::int64_t k = 0; k < n; ++k) s.push_back(5 + 11 * k);
    return s;
  }();
  for (Corruption c : data::all_corruptions()) {
    for (int severity = 1; severity <= 5; ++severity) {
      const std::vector<float> got = run_emulated(batch, masks, n, h, w, c, severity, seed, samples);
      std::size_t differ = 0, bad = 0;
      double worst = 0;
      for (std::int64_t k = 0; k < n; ++k) {
        const Tensor ref =
            data::corrupt(images[static_cast<std::size_t>(k)], c, severity, seed,
                          samples[static_cast<std::size_t>(k)], fov[static_cast<std::size_t>(k)]);
        for (std::int64_t i = 0; i < ref.numel(); ++i) {
          const float g = got[static_cast<std::size_t>(k * 3 * hw + i)], r = ref.data()[i];
          if (std::memcmp(&g, &r, sizeof g) != 0) {
            ++differ;
            const double err = std::fabs(static_cast<double>(g) - r);
            if (!(err <= 1e-6)) {
              if (bad++ < 3)
                std::printf("   image %lld [%lld] got %.9g ref %.9g\n", static_cast<long long>(k),
                            static_cast<long long>(i), g, r);
            }
            if (!std::isnan(err)) worst = std::max(worst, err);
          }
        }
      }
      if (differ != 0 || severity == 1)
        std::printf("%-8s %-20s %d %s: %zu values out of tolerance, %zu not bitwise equal, max err %.3g\n",
                    label, std::string(data::corruption_name(c)).c_str(), severity,
                    bad || differ ? "FAIL" : "ok", bad, differ, worst);
      failures += (bad != 0 || differ != 0);
    }
  }
}

int main(int argc, char** argv) {
  set_cpu_threads(1);
  auto batch = [](auto... images) {
    std::vector<Tensor> v;
    (v.push_back(std::move(images)), ...);
    return v;
  };
  Tensor black(Shape{3, 45, 61});
  std::fill(black.data(), black.data() + black.numel(), 0.0f);
  check_batch("small", batch(fundus_like(45, 61, 1), plain(45, 61), fundus_like(45, 61, 2), std::move(black)),
              7);
  check_batch("tall", batch(fundus_like(70, 33, 3), plain(70, 33)), 1234567);
  // longer side 56: fog's plasma maps (64 x 64) on the device, in two chunks
  check_batch("56", batch(fundus_like(40, 56, 5), plain(40, 56), fundus_like(40, 56, 6)), 77);
  if (argc > 1 && std::string(argv[1]) == "big")
    check_batch("224", batch(fundus_like(224, 224, 4), plain(224, 224)), 3);
  std::printf("%s\n", failures == 0 ? "all corruption kernels match the CPU bitwise" : "FAILURES");
  return failures == 0 ? 0 : 1;
}
