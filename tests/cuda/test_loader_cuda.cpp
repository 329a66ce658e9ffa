// tests/cuda/test_loader_cuda.cpp: LoaderSource on cuda:0 (batches decoded into pinned buffers, copied
// by cudaMemcpyAsync on a copy stream, one batch ahead, the compute stream waiting on an event) hands
// out bitwise the batches of the CPU path: plain images against the CPU source, augmented ones
// against the CPU loader's batches augmented on the GPU (and within float rounding of the CPU
// augmentation), across two epochs and a resume mid-epoch, with and without prefetching; and a stress
// run where every batch is copied on the GPU behind the consumer's back, on the default and on an
// owned stream, to catch a copy that overwrites a buffer still being read. Skips without a device.
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstdint>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "fovea/data/augment.hpp"
#include "fovea/fovea.hpp"
#include "fovea/train/sources.hpp"

namespace fovea::train {
namespace {

#define FOVEA_REQUIRE_GPU() \
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device: " << cuda_unavailable_reason()

constexpr int kSize = 16;  // the loader's image size (the stored images are 18 x 22: resized)
const Device kGpu = Device::cuda(0);

InMemoryDataset synthetic(std::size_t n, std::int64_t h = 18, std::int64_t w = 22) {
  std::mt19937_64 gen(5);
  std::uniform_real_distribution<float> u(0.01f, 0.99f);
  std::vector<Tensor> images;
  std::vector<int> labels;
  for (std::size_t i = 0; i < n; ++i) {
    std::vector<float> v(static_cast<std::size_t>(3 * h * w));
    for (float& x : v) x = u(gen);
    images.push_back(Tensor::from(v, Shape{3, h, w}));
    labels.push_back(static_cast<int>(i % 5));
  }
  return make_in_memory_dataset(std::move(images), labels);
}

data::LoaderOptions loader_options(const InMemoryDataset& mem, int threads, std::size_t batch = 5,
                                   int size = kSize) {
  data::LoaderOptions o;
  o.batch_size = batch;
  o.image_size = size;
  o.threads = threads;
  o.prefetch = 64;  // with decode_ahead every batch of the epoch is ready, so each next() prefetches
  o.decode = mem.decoder(size);
  return o;
}

struct Collected {
  std::vector<std::vector<float>> images, labels;
  std::vector<std::vector<std::int64_t>> ids;
  std::vector<int> epochs;
};

// (epoch, first batch) pairs: two whole epochs and a resume at batch 3 of epoch 1.
const std::vector<std::pair<int, int>> kPlan = {{0, 0}, {1, 0}, {1, 3}};

// The batches of kPlan, copied to the host after each next(). decode_ahead: wait after start_epoch
// until the workers have decoded everything, so that every next() finds the next batch ready.
Collected collect(LoaderSource& source, bool decode_ahead) {
  Collected r;
  Batch b;
  for (const auto& [epoch, first] : kPlan) {
    source.start_epoch(epoch, first);
    if (decode_ahead) std::this_thread::sleep_for(std::chrono::milliseconds(100));
    while (source.next(b)) {
      EXPECT_EQ(b.images.device(), source.options().device);
      EXPECT_TRUE(b.labels.device().is_cpu());
      r.images.push_back(b.images.to_vector());
      r.labels.push_back(b.labels.to_vector());
      r.ids.push_back(b.ids);
      r.epochs.push_back(epoch);
    }
  }
  return r;
}

TEST(LoaderSourceCuda, PinnedBuffersArePageLocked) {
  FOVEA_REQUIRE_GPU();
  const data::PinnedBuffer buffer(1 << 20);
  EXPECT_TRUE(buffer.pinned());
  const InMemoryDataset mem = synthetic(12);
  LoaderSourceOptions so;
  so.device = kGpu;
  LoaderSource source(mem.dataset, data::Sampler::sequential(12), loader_options(mem, 2), so);
  EXPECT_TRUE(source.loader().options().pinned);
  source.start_epoch(0, 0);
  Batch b;
  while (source.next(b)) {
  }
  EXPECT_GE(source.loader().pinned_buffers(), 1u);
}

TEST(LoaderSourceCuda, PlainBatchesAreBitwiseThoseOfTheCpu) {
  FOVEA_REQUIRE_GPU();
  const InMemoryDataset mem = synthetic(23);
  const data::Sampler sampler = data::Sampler::shuffled(23, 7);
  LoaderSource cpu(mem.dataset, sampler, loader_options(mem, 0));
  const Collected want = collect(cpu, false);
  ASSERT_EQ(want.images.size(), 5u + 5u + 2u);
  for (int threads : {0, 2}) {
    for (bool ahead : {false, true}) {
      LoaderSourceOptions so;
      so.device = kGpu;
      LoaderSource gpu(mem.dataset, sampler, loader_options(mem, threads), so);
      const Collected got = collect(gpu, ahead);
      EXPECT_EQ(got.ids, want.ids) << "threads " << threads << ", ahead " << ahead;
      EXPECT_EQ(got.labels, want.labels) << "threads " << threads << ", ahead " << ahead;
      EXPECT_EQ(got.images, want.images) << "threads " << threads << ", ahead " << ahead;
    }
  }
}

::testing::AssertionResult close(const std::vector<float>& got, const std::vector<float>& want) {
  if (got.size() != want.size()) return ::testing::AssertionFailure() << got.size() << " vs " << want.size();
  for (std::size_t i = 0; i < got.size(); ++i)
    if (!(std::fabs(got[i] - want[i]) <= 1e-5f + 1e-5f * std::fabs(want[i])))
      return ::testing::AssertionFailure() << "[" << i << "] " << got[i] << " vs " << want[i];
  return ::testing::AssertionSuccess();
}

TEST(LoaderSourceCuda, AugmentedBatchesAreTheCpuLoaderBatchesAugmentedOnTheGpu) {
  FOVEA_REQUIRE_GPU();
  const InMemoryDataset mem = synthetic(17);
  const data::Sampler sampler = data::Sampler::shuffled(17, 2);
  LoaderSource plain(mem.dataset, sampler, loader_options(mem, 0));
  const Collected host = collect(plain, false);  // the decoded batches, not augmented
  for (SourceMode mode : {SourceMode::supervised, SourceMode::two_view}) {
    LoaderSourceOptions so;
    so.mode = mode;
    so.augment = mode == SourceMode::two_view ? data::simclr(12) : data::supervised_train(12);
    so.augment_seed = 31;
    LoaderSource cpu(mem.dataset, sampler, loader_options(mem, 0), so);
    const Collected on_cpu = collect(cpu, false);
    so.device = kGpu;
    for (bool ahead : {false, true}) {
      LoaderSource gpu(mem.dataset, sampler, loader_options(mem, 2), so);
      const Collected got = collect(gpu, ahead);
      ASSERT_EQ(got.images.size(), host.images.size());
      for (std::size_t k = 0; k < host.images.size(); ++k) {
        const std::int64_t n = static_cast<std::int64_t>(host.ids[k].size());
        const Tensor images =
            Tensor::from(host.images[k], Shape{n, 3, kSize, kSize}, kGpu);  // (N, 3, 16, 16)
        Tensor want;
        if (mode == SourceMode::two_view) {
          want = Tensor(Shape{2 * n, 3, 12, 12}, kGpu);
          data::TwoViewAugmenter(*so.augment, so.augment_seed)(images, host.ids[k], host.epochs[k],
                                                               want.batch(0, n), want.batch(n, 2 * n));
        } else {
          want = Tensor(Shape{n, 3, 12, 12}, kGpu);
          data::augment_batch(images, host.ids[k], host.epochs[k], 0, *so.augment, so.augment_seed, want);
        }
        EXPECT_EQ(got.ids[k], host.ids[k]);
        EXPECT_EQ(got.images[k], want.to_vector())
            << "batch " << k << ", two-view " << (mode == SourceMode::two_view);
        EXPECT_TRUE(close(got.images[k], on_cpu.images[k])) << "batch " << k;
      }
    }
  }
}

// Every batch is copied on the GPU (queued, not waited for) right after next(), as a training step
// would read it; the copies are compared at the end. A prefetch that overwrote a buffer still being
// read, or a pinned buffer reused before its copy finished, shows up as a wrong batch.
TEST(LoaderSourceCuda, QueuedReadersSeeTheirBatchWhileTheNextIsCopied) {
  FOVEA_REQUIRE_GPU();
  const InMemoryDataset mem = synthetic(96, 70, 70);
  const data::Sampler sampler = data::Sampler::shuffled(96, 4);
  LoaderSource cpu(mem.dataset, sampler, loader_options(mem, 0, 4, 64));
  Batch b;
  std::vector<std::vector<float>> want;
  cpu.start_epoch(3, 0);
  while (cpu.next(b)) want.push_back(b.images.to_vector());
  ASSERT_EQ(want.size(), 24u);
  for (bool own_stream : {false, true}) {
    Stream stream(kGpu);
    std::optional<StreamGuard> guard;
    if (own_stream) guard.emplace(stream);
    LoaderSourceOptions so;
    so.device = kGpu;
    LoaderSource gpu(mem.dataset, sampler, loader_options(mem, 3, 4, 64), so);
    gpu.start_epoch(3, 0);
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    std::vector<Tensor> seen;
    while (gpu.next(b)) {
      seen.emplace_back(b.images.shape(), kGpu);
      copy(b.images, seen.back());  // queued on the current stream
    }
    synchronize(kGpu);
    ASSERT_EQ(seen.size(), want.size());
    for (std::size_t k = 0; k < seen.size(); ++k)
      EXPECT_EQ(seen[k].to_vector(), want[k]) << "batch " << k << ", own stream " << own_stream;
    b = Batch{};  // its device memory goes back while `stream` exists
  }
}

}  // namespace
}  // namespace fovea::train
