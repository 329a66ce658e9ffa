// bench/bench_augment.cpp: the SimCLR two-view augmentation pipeline on a batch of 256 images 256x256 ->
// 224 (CUDA; 8 images on the CPU): images/s and GB/s over the copy bandwidth. Bytes counted per call:
// the input read once and the output written once per view (the minimum traffic; the blur passes
// and the gather's re-reads come on top), so frac_of_copy is the share of the copy bandwidth the
// pipeline achieves on that minimum. Variants: augment_batch (drawing parameters on the host
// included), augment_images (parameters drawn beforehand), and the crop gather alone.
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

}  // namespace

void register_augment_benchmarks(Device device) {
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
