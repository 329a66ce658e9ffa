// bench/bench_corruptions.cpp: data::corrupt_batch, each corruption at severity 3 on a batch of
// 224 x 224 images (CUDA: 256 images; CPU: 8, in parallel over the images on every core), named
// corrupt_<name>/<cpu|cuda>/<N>x224. Counters: ms per batch, images/s, GB/s and frac_of_copy on the
// minimum traffic (the batch read once, written once), and on a GPU latency_ms. On a GPU
// jpeg_compression runs on the host (the batch goes there and back), fog's plasma layers are computed
// on the host and the fundus ones wait for the masks' bounding boxes, so those rows time the host
// part too. The fundus ones get the masks (a disc per image); without them fov_mask runs on the host.
#include <cmath>
#include <string>
#include <vector>

#include "bench_common.hpp"
#include "fovea/data/corruptions.hpp"

namespace fovea::bench {

void register_corruption_benchmarks(Device device);

namespace {

constexpr std::int64_t kSide = 224;

// Textured discs on a black surround (as fundus photos are), and their masks.
Tensor disc_images(std::int64_t n, bool masks, Device device) {
  const std::int64_t c = masks ? 1 : 3;
  Tensor t(Shape{n, c, kSide, kSide});
  for (std::int64_t k = 0; k < n; ++k)
    for (std::int64_t ch = 0; ch < c; ++ch)
      for (std::int64_t y = 0; y < kSide; ++y)
        for (std::int64_t x = 0; x < kSide; ++x) {
          const double dx = static_cast<double>(x) + 0.5 - 112.0, dy = static_cast<double>(y) + 0.5 - 112.0;
          const bool inside = dx * dx + dy * dy < 104.0 * 104.0;
          const float tex = 0.45f + 0.3f * static_cast<float>(std::sin(0.21 * static_cast<double>(x + 3 * k) +
                                                                       static_cast<double>(ch)) *
                                                              std::cos(0.17 * static_cast<double>(y)));
          t.data()[((k * c + ch) * kSide + y) * kSide + x] =
              masks ? (inside ? 1.0f : 0.0f) : (inside ? tex : 0.0f);
        }
  return t.to(device);
}

}  // namespace

void register_corruption_benchmarks(Device device) {
  const std::int64_t n = device.is_cuda() ? 256 : 8;
  const std::string suffix = std::string("/") + (device.is_cuda() ? "cuda" : "cpu") + "/" +
                             std::to_string(n) + "x" + std::to_string(kSide);
  const double bytes = 2.0 * float_bytes(n * 3 * kSide * kSide);
  for (data::Corruption c : data::all_corruptions()) {
    register_timed("corrupt_" + std::string(data::corruption_name(c)) + suffix, [=](benchmark::State& state) {
      const Tensor images = disc_images(n, false, device), masks = disc_images(n, true, device);
      Tensor out(images.shape(), device);
      std::vector<std::int64_t> samples(static_cast<std::size_t>(n));
      for (std::int64_t k = 0; k < n; ++k) samples[static_cast<std::size_t>(k)] = 100 + k;
      const CView m = masks;
      const CView* mp = data::is_fundus_corruption(c) ? &m : nullptr;
      time_bandwidth(state, device, bench_sizes(device).back(), bytes,
                     [&] { data::corrupt_batch(images, c, 3, 1, samples, out, mp); });
      state.counters["images/s"] = benchmark::Counter(
          static_cast<double>(n) * static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
    });
  }
}

}  // namespace fovea::bench
