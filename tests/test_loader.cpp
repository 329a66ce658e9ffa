// tests/test_loader.cpp: epoch permutations and the class-balanced sampler as pure functions of
// (seed, epoch), batches and resume, and the threaded Loader: sampler-order output with 0, 1 and 3
// threads under a slow, jittery decoder, resume, stop and skip modes for decode errors, shutdown
// without a deadlock when the consumer stops early or throws, pinned batch buffers (their fallback to
// ordinary memory without a GPU, recycling) and the one-batch-ahead device queue of LoaderSource
// (exercised with a CPU target; the CUDA run is tests/cuda/test_loader_cuda.cpp).
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <future>
#include <map>
#include <numeric>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "fovea/core/random.hpp"
#include "fovea/core/tensor.hpp"
#include "fovea/data/dataset.hpp"
#include "fovea/data/image.hpp"
#include "fovea/data/loader.hpp"
#include "fovea/data/sampler.hpp"
#include "fovea/train/sources.hpp"

namespace fovea::data {
namespace {

namespace fs = std::filesystem;

::testing::AssertionResult contains(const char*, const char*, const std::string& text,
                                    const std::string& part) {
  if (text.find(part) != std::string::npos) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "'" << text << "'\n  does not contain\n'" << part << "'";
}
#define EXPECT_CONTAINS(text, part) EXPECT_PRED_FORMAT2(contains, text, part)

// ---- sampler ------------------------------------------------------------------------------------

bool is_permutation_of_iota(std::vector<std::size_t> v) {
  std::sort(v.begin(), v.end());
  for (std::size_t i = 0; i < v.size(); ++i)
    if (v[i] != i) return false;
  return true;
}

TEST(Sampler, EpochPermutationIsAReproduciblePermutationPerEpoch) {
  for (std::size_t n : {0u, 1u, 2u, 33u, 1000u}) {
    const auto p = epoch_permutation(n, 5, 3);
    EXPECT_EQ(p.size(), n);
    EXPECT_TRUE(is_permutation_of_iota(p)) << n;
    EXPECT_EQ(p, epoch_permutation(n, 5, 3)) << "a pure function of (seed, epoch)";
  }
  const auto e0 = epoch_permutation(1000, 5, 0), e1 = epoch_permutation(1000, 5, 1);
  EXPECT_NE(e0, e1);
  EXPECT_NE(e0, epoch_permutation(1000, 6, 0));
  std::vector<std::size_t> identity(1000);
  std::iota(identity.begin(), identity.end(), std::size_t{0});
  EXPECT_NE(e0, identity);
  const Sampler s = Sampler::shuffled(1000, 5);
  EXPECT_EQ(s.epoch_order(1), e1);
  EXPECT_EQ(Sampler::sequential(1000).epoch_order(7), identity);
}

TEST(Sampler, EpochPermutationIsUniform) {
  // All 24 orders of 4 elements over 2400 epochs: each ~100 times (sd ~9.8); allow 4 sd.
  std::map<std::vector<std::size_t>, int> counts;
  for (std::uint32_t e = 0; e < 2400; ++e) ++counts[epoch_permutation(4, 11, e)];
  ASSERT_EQ(counts.size(), 24u);
  const double sd = std::sqrt(2400.0 * (1.0 / 24) * (23.0 / 24));
  for (const auto& [perm, n] : counts) EXPECT_LE(std::abs(n - 100.0), 4 * sd) << n;
}

TEST(Sampler, ClassBalancedDrawsClassesEqually) {
  std::vector<int> labels;
  const int per_class[] = {2000, 390, 831, 125, 105};  // the EyePACS subset's grade counts
  for (int c = 0; c < 5; ++c) labels.insert(labels.end(), static_cast<std::size_t>(per_class[c]), c);
  std::reverse(labels.begin(), labels.end());
  const std::size_t draws = 20000;
  const Sampler s = Sampler::class_balanced(labels, 3, draws);
  const auto order = s.epoch_order(0);
  ASSERT_EQ(order.size(), draws);
  std::vector<int> freq(5, 0);
  for (std::size_t i : order) ++freq[static_cast<std::size_t>(labels.at(i))];
  const double expected = draws / 5.0, sd = std::sqrt(draws * 0.2 * 0.8);
  for (int c = 0; c < 5; ++c)
    EXPECT_LE(std::abs(freq[c] - expected), 4 * sd) << "class " << c << ": " << freq[c];
  // The rarest class is drawn with replacement: its 105 samples appear many times each.
  std::set<std::size_t> distinct_rare;
  for (std::size_t i : order)
    if (labels[i] == 4) distinct_rare.insert(i);
  EXPECT_LE(distinct_rare.size(), 105u);
  EXPECT_GT(distinct_rare.size(), 90u);

  EXPECT_EQ(s.epoch_order(0), order);
  EXPECT_NE(s.epoch_order(1), order);
  EXPECT_EQ(Sampler::class_balanced(labels, 3).epoch_size(), labels.size());
  // Classes without samples are not drawn.
  const Sampler gaps = Sampler::class_balanced({0, 0, 2, 2, 4}, 1, 3000);
  std::vector<int> f(5, 0);
  for (std::size_t i : gaps.epoch_order(0)) ++f[static_cast<std::size_t>(std::vector<int>{0, 0, 2, 2, 4}[i])];
  EXPECT_EQ(f[1] + f[3], 0);
  for (int c : {0, 2, 4}) EXPECT_NEAR(f[c], 1000, 4 * std::sqrt(3000 * (1.0 / 3) * (2.0 / 3)));
  EXPECT_THROW(Sampler::class_balanced({0, -1}, 1), Error);
}

TEST(Sampler, BatchesAndResume) {
  const Sampler s = Sampler::shuffled(23, 9);
  const Batches keep = epoch_batches(s, 4, 5, false), drop = epoch_batches(s, 4, 5, true);
  EXPECT_EQ(keep.size(), 5u);
  EXPECT_EQ(drop.size(), 4u);
  EXPECT_EQ(keep[4].size(), 3u);
  std::vector<std::size_t> joined;
  for (std::size_t b = 0; b < keep.size(); ++b) joined.insert(joined.end(), keep[b].begin(), keep[b].end());
  EXPECT_EQ(joined, s.epoch_order(4));
  // A resumed run recomputes the epoch and continues at batch b: the same remaining batches.
  const Batches resumed = epoch_batches(Sampler::shuffled(23, 9), 4, 5, false);
  for (std::size_t b = 2; b < keep.size(); ++b)
    EXPECT_TRUE(std::equal(keep[b].begin(), keep[b].end(), resumed[b].begin(), resumed[b].end()));
  EXPECT_THROW(keep[5], Error);
}

// ---- loader -------------------------------------------------------------------------------------

constexpr int kSize = 4;

Dataset toy_dataset(std::size_t n) {
  Dataset d;
  for (std::size_t i = 0; i < n; ++i)
    d.samples.push_back(Sample{std::to_string(i) + "_left", "/nonexistent/" + std::to_string(i) + ".png",
                               static_cast<int>(i % 5), std::to_string(i)});
  return d;
}

// An in-memory "decoder": every pixel of channel c is index + c / 4. Sleeps 0-1.5 ms, varying by
// sample and epoch, so threads finish out of order.
Tensor fake_image(const DecodeContext& ctx, bool jitter) {
  if (jitter) {
    const std::uint32_t us =
        random_bits(make_key(77, kPurposeTest, ctx.epoch, static_cast<std::uint32_t>(ctx.index)), 0) % 1500;
    std::this_thread::sleep_for(std::chrono::microseconds(us));
  }
  Tensor t(Shape{3, kSize, kSize});
  for (std::int64_t i = 0; i < t.numel(); ++i)
    t.data()[i] = static_cast<float>(ctx.index) + static_cast<float>(i / (kSize * kSize)) * 0.25f;
  return t;
}

LoaderOptions toy_options(int threads, std::size_t batch_size = 4, bool drop_last = false) {
  LoaderOptions o;
  o.batch_size = batch_size;
  o.drop_last = drop_last;
  o.image_size = kSize;
  o.threads = threads;
  o.decode = [](const Sample&, const DecodeContext& ctx) { return fake_image(ctx, true); };
  return o;
}

struct Epoch {
  std::vector<std::string> ids;
  std::vector<std::size_t> indices, batch_numbers, batch_sizes;
  std::vector<float> images, labels;
};

Epoch drain(Loader& loader) {
  Epoch e;
  while (auto b = loader.next()) {
    e.ids.insert(e.ids.end(), b->ids.begin(), b->ids.end());
    e.indices.insert(e.indices.end(), b->indices.begin(), b->indices.end());
    e.batch_numbers.push_back(b->index);
    e.batch_sizes.push_back(b->size());
    const CView view = b->image_view();  // the Tensor, or the pinned buffer in pinned mode
    const std::vector<float> im(view.data(), view.data() + view.numel()), lb = b->labels.to_vector();
    EXPECT_EQ(view.shape(), (Shape{static_cast<std::int64_t>(b->size()), 3, kSize, kSize}));
    EXPECT_EQ(b->image_shape, view.shape());
    EXPECT_EQ(b->images.data() == nullptr, b->pinned != nullptr)
        << "pinned mode holds the images in the buffer only";
    EXPECT_EQ(b->labels.shape(), Shape{static_cast<std::int64_t>(b->size())});
    e.images.insert(e.images.end(), im.begin(), im.end());
    e.labels.insert(e.labels.end(), lb.begin(), lb.end());
  }
  return e;
}

TEST(Loader, OutputFollowsSamplerOrderWithAnyThreadCount) {
  const Dataset d = toy_dataset(37);
  const Sampler sampler = Sampler::shuffled(d.size(), 21);
  for (bool drop_last : {false, true}) {
    std::vector<Epoch> runs;
    for (int threads : {0, 1, 3}) {
      Loader loader(d, sampler, toy_options(threads, 4, drop_last));
      loader.start_epoch(2);
      EXPECT_EQ(loader.num_batches(), drop_last ? 9u : 10u);
      runs.push_back(drain(loader));
      EXPECT_FALSE(loader.next().has_value()) << "the epoch stays over";
    }
    const Epoch& ref = runs[0];
    std::vector<std::size_t> order = sampler.epoch_order(2);
    order.resize(drop_last ? 36 : 37);
    EXPECT_EQ(ref.indices, order);
    EXPECT_EQ(ref.batch_sizes.back(), drop_last ? 4u : 1u);
    for (std::size_t k = 0; k < ref.indices.size(); ++k) {
      ASSERT_EQ(ref.ids[k], d[ref.indices[k]].id);
      ASSERT_EQ(ref.labels[k], static_cast<float>(d[ref.indices[k]].label));
      for (int c = 0; c < 3; ++c)
        ASSERT_EQ(ref.images[k * 3 * kSize * kSize + static_cast<std::size_t>(c * kSize * kSize)],
                  static_cast<float>(ref.indices[k]) + 0.25f * static_cast<float>(c));
    }
    for (std::size_t r = 1; r < runs.size(); ++r) {
      EXPECT_EQ(runs[r].ids, ref.ids) << "run " << r;
      EXPECT_EQ(runs[r].images, ref.images) << "run " << r;
      EXPECT_EQ(runs[r].labels, ref.labels) << "run " << r;
      EXPECT_EQ(runs[r].batch_numbers, ref.batch_numbers) << "run " << r;
    }
  }
}

TEST(Loader, ResumeAtBatchGivesTheRemainingBatches) {
  const Dataset d = toy_dataset(30);
  Loader full(d, Sampler::shuffled(d.size(), 4), toy_options(3, 4));
  full.start_epoch(5);
  const Epoch all = drain(full);
  Loader resumed(d, Sampler::shuffled(d.size(), 4), toy_options(3, 4));
  resumed.start_epoch(5, 3);
  EXPECT_EQ(resumed.position(), 3u);
  const Epoch rest = drain(resumed);
  EXPECT_EQ(rest.batch_numbers, (std::vector<std::size_t>{3, 4, 5, 6, 7}));
  EXPECT_EQ(rest.indices, std::vector<std::size_t>(all.indices.begin() + 12, all.indices.end()));
  EXPECT_EQ(rest.images, std::vector<float>(all.images.begin() + 12 * 3 * kSize * kSize, all.images.end()));
  resumed.start_epoch(5, 8);  // resuming exactly at the end: nothing left
  EXPECT_FALSE(resumed.next().has_value());
  EXPECT_THROW(resumed.start_epoch(5, 9), Error);
  EXPECT_THROW(resumed.next(), Error) << "a failed start leaves no epoch, not a hang";

  // Epochs differ, and restarting an epoch midway replays it from its start.
  resumed.start_epoch(6);
  const Epoch other = drain(resumed);
  EXPECT_NE(other.indices, all.indices);
  full.start_epoch(5);
  ASSERT_TRUE(full.next().has_value());
  full.start_epoch(5);
  EXPECT_EQ(drain(full).indices, all.indices);
}

TEST(Loader, StopModeNamesTheFailingFile) {
  const Dataset d = toy_dataset(20);
  for (int threads : {0, 3}) {
    LoaderOptions o = toy_options(threads, 4);
    o.decode = [](const Sample& s, const DecodeContext& ctx) {
      if (ctx.index == 13) throw Error("corrupt JPEG data in '" + s.path.string() + "'");
      return fake_image(ctx, true);
    };
    Loader loader(d, Sampler::sequential(d.size()), o);
    loader.start_epoch(0);
    for (int b = 0; b < 3; ++b) ASSERT_TRUE(loader.next().has_value()) << "batches before the failure arrive";
    try {
      loader.next();
      ADD_FAILURE() << "no error for the failing sample";
    } catch (const Error& e) {
      EXPECT_CONTAINS(e.what(), "cannot load sample '13_left' ('/nonexistent/13.png')");
      EXPECT_CONTAINS(e.what(), "corrupt JPEG data");
    }
    EXPECT_FALSE(loader.next().has_value()) << "threads " << threads;
    loader.start_epoch(1);  // the loader stays usable
    ASSERT_TRUE(loader.next().has_value());
  }
}

TEST(Loader, SkipModeReplacesAndReports) {
  const Dataset d = toy_dataset(20);
  for (int threads : {0, 3}) {
    LoaderOptions o = toy_options(threads, 4);
    o.on_error = OnDecodeError::skip;
    o.decode = [](const Sample&, const DecodeContext& ctx) {
      if (ctx.index == 5 || ctx.index == 6 || ctx.index == 19) throw std::runtime_error("truncated file");
      return fake_image(ctx, true);
    };
    Loader loader(d, Sampler::sequential(d.size()), o);
    loader.start_epoch(0);
    const Epoch e = drain(loader);
    // 5 and 6 fail: position 5 takes 7 (the next that decodes); 6 takes 7 too; 19 wraps around to 0.
    std::vector<std::size_t> want(20);
    std::iota(want.begin(), want.end(), std::size_t{0});
    want[5] = 7;
    want[6] = 7;
    want[19] = 0;
    EXPECT_EQ(e.indices, want);
    EXPECT_EQ(e.ids[5], "7_left");
    EXPECT_EQ(e.images[5 * 3 * kSize * kSize], 7.0f);
    EXPECT_EQ(e.labels[19], static_cast<float>(d[0].label));
    const LoaderStats st = loader.stats();
    ASSERT_EQ(st.skipped.size(), 4u)
        << "position 5: 5 -> 6, 6 -> 7; position 6: 6 -> 7; position 19: 19 -> 0";
    EXPECT_CONTAINS(st.skipped[0], "cannot load sample '5_left'");
    EXPECT_CONTAINS(st.skipped[0], "truncated file; replaced by '6_left'");
    EXPECT_CONTAINS(st.skipped[1], "cannot load sample '6_left'");
    EXPECT_CONTAINS(st.skipped[1], "replaced by '7_left'");
    EXPECT_CONTAINS(st.skipped[3], "replaced by '0_left'");
    EXPECT_EQ(st.images, 20u);
  }
  // Nothing decodes: an error rather than an endless search.
  LoaderOptions o = toy_options(0, 4);
  o.on_error = OnDecodeError::skip;
  o.decode = [](const Sample&, const DecodeContext&) -> Tensor { throw std::runtime_error("bad"); };
  Loader none(toy_dataset(3), Sampler::sequential(3), o);
  none.start_epoch(0);
  try {
    none.next();
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_CONTAINS(e.what(), "no sample of the epoch could be loaded");
  }
}

// Runs f on another thread; fails (instead of hanging the suite) when it takes over 60 s.
template <class F>
void expect_finishes(F f, const char* what) {
  auto done = std::async(std::launch::async, std::move(f));
  if (done.wait_for(std::chrono::seconds(60)) != std::future_status::ready) {
    ADD_FAILURE() << what << " did not finish within 60 s (deadlock?)";
    std::_Exit(1);  // the stuck thread cannot be joined
  }
  done.get();
}

TEST(Loader, EarlyDestructionDoesNotHang) {
  const Dataset d = toy_dataset(200);
  std::atomic<int> decoded{0};
  LoaderOptions slow = toy_options(3, 8);
  slow.prefetch = 2;
  slow.decode = [&decoded](const Sample&, const DecodeContext& ctx) {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
    ++decoded;
    return fake_image(ctx, false);
  };
  expect_finishes(
      [&] {
        Loader loader(d, Sampler::shuffled(d.size(), 1), slow);
        loader.start_epoch(0);
        ASSERT_TRUE(loader.next().has_value());
      },
      "destroying a loader after one batch");
  EXPECT_LT(decoded.load(), 200) << "the workers stopped instead of decoding the whole epoch";
  expect_finishes(
      [&] {
        Loader loader(d, Sampler::shuffled(d.size(), 1), slow);
        loader.start_epoch(0);  // never consumed
      },
      "destroying an unconsumed loader");
  expect_finishes([&] { Loader loader(d, Sampler::shuffled(d.size(), 1), slow); },
                  "destroying an unstarted loader");
  expect_finishes(
      [&] {
        try {
          Loader loader(d, Sampler::shuffled(d.size(), 1), slow);
          loader.start_epoch(0);
          while (auto b = loader.next())
            if (b->index == 2) throw std::runtime_error("consumer failed");
        } catch (const std::runtime_error&) {
        }
      },
      "unwinding through a loader");
}

TEST(Loader, StatsAndContracts) {
  const Dataset d = toy_dataset(10);
  Loader loader(d, Sampler::sequential(d.size()), toy_options(2, 3));
  EXPECT_THROW(loader.next(), Error);  // start_epoch first
  loader.start_epoch(0);
  drain(loader);
  const LoaderStats st = loader.stats();
  EXPECT_EQ(st.images, 10u);
  EXPECT_EQ(st.batches, 4u);
  EXPECT_GT(st.seconds, 0.0);
  EXPECT_GT(st.images_per_second(), 0.0);
  EXPECT_GT(st.decode_seconds, 0.0);

  LoaderOptions wrong = toy_options(0, 2);
  wrong.decode = [](const Sample&, const DecodeContext&) { return Tensor(Shape{3, kSize + 1, kSize}); };
  Loader bad(d, Sampler::sequential(d.size()), wrong);
  bad.start_epoch(0);
  try {
    bad.next();
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_CONTAINS(e.what(), "returned (3, 5, 4)");
  }
  EXPECT_THROW(Loader(d, Sampler::sequential(d.size() + 1), toy_options(0)), Error);
  LoaderOptions zero = toy_options(0);
  zero.batch_size = 0;
  EXPECT_THROW(Loader(d, Sampler::sequential(d.size()), zero), Error);

  // A class-balanced epoch may be longer than the data set.
  Loader balanced(d, Sampler::class_balanced(d.labels(), 2, 25), toy_options(2, 5));
  balanced.start_epoch(0);
  EXPECT_EQ(drain(balanced).ids.size(), 25u);
}

TEST(Loader, DefaultDecoderReadsImageFiles) {
  if (!kHaveImageIo) GTEST_SKIP() << "built without stb (libstb-dev): load_image is off";
  const fs::path dir = fs::temp_directory_path() / ("fovea_test_loader_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  Dataset d;
  for (int i = 0; i < 3; ++i) {
    Tensor img(Shape{3, 6, 9});
    for (std::int64_t k = 0; k < img.numel(); ++k)
      img.data()[k] = static_cast<float>((k * 7 + i * 13) % 256) / 255.0f;
    const fs::path p = dir / (std::to_string(i) + "_left.png");
    write_png(p, img);
    d.samples.push_back(Sample{std::to_string(i) + "_left", p, i, std::to_string(i)});
  }
  LoaderOptions o;
  o.batch_size = 2;
  o.image_size = 4;
  o.threads = 1;
  Loader loader(d, Sampler::sequential(3), o);
  loader.start_epoch(0);
  auto b = loader.next();
  ASSERT_TRUE(b.has_value());
  const Tensor want = preprocess_for_model(d[1].path, 4, {0, 0, 0}, {1, 1, 1});  // (1, 3, 4, 4)
  const auto got = b->images.to_vector(), ref = want.to_vector();
  EXPECT_TRUE(std::equal(ref.begin(), ref.end(), got.begin() + 48));
  fs::remove_all(dir);
}

// ---- pinned batch buffers -----------------------------------------------------------------------

TEST(PinnedBuffer, FallsBackToOrdinaryMemoryWithoutAGpu) {
  const std::size_t before = memory_stats(Device::cpu()).current_bytes;
  {
    PinnedBuffer buffer(1000 * sizeof(float));
    if (!cuda_available()) {
      EXPECT_FALSE(buffer.pinned()) << "no device: host_allocate memory";
      EXPECT_GE(memory_stats(Device::cpu()).current_bytes, before + 1000 * sizeof(float));
    }
    ASSERT_NE(buffer.data(), nullptr);
    EXPECT_EQ(reinterpret_cast<std::uintptr_t>(buffer.data()) % 64, 0u);
    EXPECT_EQ(buffer.bytes(), 1000 * sizeof(float));
    for (int i = 0; i < 1000; ++i) buffer.data()[i] = static_cast<float>(i) + 0.5f;
    // Copies treat it as any host memory.
    Tensor t(Shape{1000});
    copy(CView(buffer.data(), Shape{1000}, Device::cpu()), t.view());
    EXPECT_EQ(t.data()[999], 999.5f);
    PinnedBuffer ordinary(64, /*page_locked=*/false);
    EXPECT_FALSE(ordinary.pinned());
    PinnedBuffer empty(0);
    EXPECT_EQ(empty.bytes(), 0u);
  }
  if (!cuda_available()) {
    EXPECT_EQ(memory_stats(Device::cpu()).current_bytes, before) << "all returned";
  }
}

TEST(Loader, PinnedModeGivesTheSameBatchesAndRecyclesItsBuffers) {
  const Dataset d = toy_dataset(37);
  const Sampler sampler = Sampler::shuffled(d.size(), 8);
  for (int threads : {0, 3}) {
    LoaderOptions plain = toy_options(threads, 4), pinned = plain;
    pinned.pinned = true;
    Loader a(d, sampler, plain), b(d, sampler, pinned);
    for (std::uint32_t epoch : {0u, 1u}) {
      a.start_epoch(epoch);
      b.start_epoch(epoch);
      const Epoch want = drain(a), got = drain(b);
      EXPECT_EQ(got.ids, want.ids) << "threads " << threads << ", epoch " << epoch;
      EXPECT_EQ(got.images, want.images) << "threads " << threads << ", epoch " << epoch;
      EXPECT_EQ(got.labels, want.labels);
      EXPECT_EQ(got.batch_sizes, want.batch_sizes);
    }
    a.start_epoch(1, 4);
    b.start_epoch(1, 4);
    EXPECT_EQ(drain(b).images, drain(a).images) << "resume";
    EXPECT_EQ(a.pinned_buffers(), 0u);
    // 10 batches x 2.4 epochs, but the buffers go round: at most the prefetch window plus the one
    // the consumer holds.
    EXPECT_GE(b.pinned_buffers(), 1u);
    EXPECT_LE(b.pinned_buffers(), b.options().prefetch + 1) << "threads " << threads;
  }
  // A batch may outlive its loader; its buffer is then simply freed.
  LoaderOptions o = toy_options(1, 4);
  o.pinned = true;
  std::optional<Batch> kept;
  {
    Loader loader(d, sampler, o);
    loader.start_epoch(0);
    kept = loader.next();
  }
  ASSERT_TRUE(kept.has_value());
  EXPECT_EQ(kept->image_view().data()[0], static_cast<float>(kept->indices[0]));
}

TEST(Loader, ReadyTellsWhetherNextWouldWait) {
  const Dataset d = toy_dataset(8);
  Loader sync(d, Sampler::sequential(d.size()), toy_options(0, 4));
  EXPECT_FALSE(sync.ready()) << "no epoch yet";
  sync.start_epoch(0);
  EXPECT_FALSE(sync.ready()) << "threads = 0: next() decodes";
  drain(sync);
  EXPECT_TRUE(sync.ready()) << "the epoch is over";
  Loader threaded(d, Sampler::sequential(d.size()), toy_options(2, 4));
  threaded.start_epoch(0);
  while (!threaded.ready()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  const auto t0 = std::chrono::steady_clock::now();
  ASSERT_TRUE(threaded.next().has_value());
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(5));
}

// ---- the device queue of LoaderSource ------------------------------------------------------------

// Drains a DeviceBatchQueue, prefetching after each batch (and, with `wait`, first waiting until the
// loader has the next batch, so that every batch but the first goes through prefetch()).
Epoch drain_queue(train::detail::DeviceBatchQueue& queue, Loader& loader, bool wait, int* prefetched) {
  Epoch e;
  while (auto* s = queue.next()) {
    const auto im = s->images.to_vector();
    EXPECT_EQ(s->images.shape(), s->batch->image_shape);
    e.ids.insert(e.ids.end(), s->batch->ids.begin(), s->batch->ids.end());
    e.batch_numbers.push_back(s->batch->index);
    e.images.insert(e.images.end(), im.begin(), im.end());
    if (wait)
      while (!loader.ready()) std::this_thread::sleep_for(std::chrono::microseconds(200));
    *prefetched += queue.prefetch() ? 1 : 0;
  }
  return e;
}

TEST(DeviceBatchQueue, HandsOutTheLoaderBatchesInOrderWithOrWithoutPrefetch) {
  const Dataset d = toy_dataset(29);
  const Sampler sampler = Sampler::shuffled(d.size(), 3);
  Loader reference(d, sampler, toy_options(0, 4));
  LoaderOptions o = toy_options(2, 4);
  o.pinned = true;
  Loader loader(d, sampler, o);
  train::detail::DeviceBatchQueue queue(loader, Device::cpu());
  for (std::uint32_t epoch : {0u, 1u}) {
    for (bool wait : {false, true}) {
      reference.start_epoch(epoch);
      const Epoch want = drain(reference);
      queue.reset();
      loader.start_epoch(epoch);
      int prefetched = 0;
      const Epoch got = drain_queue(queue, loader, wait, &prefetched);
      EXPECT_EQ(got.ids, want.ids) << "epoch " << epoch << ", wait " << wait;
      EXPECT_EQ(got.images, want.images) << "epoch " << epoch << ", wait " << wait;
      EXPECT_EQ(got.batch_numbers, want.batch_numbers);
      if (wait) {
        EXPECT_EQ(prefetched, 8) << "8 batches: each after the first, and the end, came through prefetch";
      }
      EXPECT_EQ(queue.next(), nullptr) << "the epoch stays over";
    }
  }
  // Resume mid-epoch after a prefetch: the held batches are dropped, the loader restarts at batch 5.
  loader.start_epoch(1);
  ASSERT_NE(queue.next(), nullptr);
  while (!loader.ready()) std::this_thread::sleep_for(std::chrono::microseconds(200));
  EXPECT_TRUE(queue.prefetch());
  queue.reset();
  loader.start_epoch(1, 5);
  reference.start_epoch(1, 5);
  int prefetched = 0;
  const Epoch got = drain_queue(queue, loader, true, &prefetched);
  const Epoch want = drain(reference);
  EXPECT_EQ(got.batch_numbers, (std::vector<std::size_t>{5, 6, 7}));
  EXPECT_EQ(got.images, want.images);
  EXPECT_LE(loader.pinned_buffers(), loader.options().prefetch + 3);
}

TEST(DeviceBatchQueue, ADecodeErrorComesAfterTheBatchesBeforeIt) {
  const Dataset d = toy_dataset(20);
  LoaderOptions o = toy_options(2, 4);
  o.pinned = true;
  o.decode = [](const Sample&, const DecodeContext& ctx) {
    if (ctx.index == 9) throw Error("corrupt JPEG data");
    return fake_image(ctx, false);
  };
  Loader loader(d, Sampler::sequential(d.size()), o);
  train::detail::DeviceBatchQueue queue(loader, Device::cpu());
  loader.start_epoch(0);
  for (std::size_t b = 0; b < 2; ++b) {
    auto* s = queue.next();
    ASSERT_NE(s, nullptr) << "batch " << b << " arrives although the prefetch of batch 2 failed";
    EXPECT_EQ(s->batch->index, b);
    while (!loader.ready()) std::this_thread::sleep_for(std::chrono::microseconds(200));
    EXPECT_TRUE(queue.prefetch());
  }
  try {
    queue.next();
    ADD_FAILURE() << "no error at batch 2";
  } catch (const Error& e) {
    EXPECT_CONTAINS(e.what(), "cannot load sample '9_left'");
  }
  EXPECT_EQ(queue.next(), nullptr) << "the epoch is over";
  queue.reset();
  loader.start_epoch(0, 3);
  ASSERT_NE(queue.next(), nullptr);
}

}  // namespace
}  // namespace fovea::data

namespace fovea::data {
namespace {

// LoaderSource's before_augment runs on every batch as decoded, with the batch's data set indices,
// and its output is what comes out (no augmentation) or what the augmentation reads.
TEST(LoaderSource, BeforeAugmentSeesEachDecodedBatchWithItsIds) {
  const Dataset d = toy_dataset(10);
  train::LoaderSourceOptions so;
  std::vector<std::int64_t> seen;
  so.before_augment = [&](CView images, std::span<const std::int64_t> ids, View out) {
    ASSERT_EQ(images.shape(), out.shape());
    ASSERT_EQ(images.shape()[0], static_cast<std::int64_t>(ids.size()));
    seen.insert(seen.end(), ids.begin(), ids.end());
    for (std::int64_t i = 0; i < images.numel(); ++i) out.data()[i] = 1000.0f - images.data()[i];
  };
  train::LoaderSource source(d, Sampler::shuffled(d.size(), 5), toy_options(2, 4), so);
  Loader reference(d, Sampler::shuffled(d.size(), 5), toy_options(0, 4));
  source.start_epoch(0, 0);
  reference.start_epoch(0);
  train::Batch b;
  std::vector<std::int64_t> handed;
  while (source.next(b)) {
    const std::optional<Batch> want = reference.next();
    ASSERT_TRUE(want.has_value());
    ASSERT_EQ(b.images.shape(), want->images.shape());
    for (std::int64_t i = 0; i < b.images.numel(); ++i)
      ASSERT_EQ(b.images.data()[i], 1000.0f - want->images.data()[i]) << "element " << i;
    handed.insert(handed.end(), b.ids.begin(), b.ids.end());
  }
  EXPECT_EQ(seen, handed);
  EXPECT_EQ(seen.size(), 10u);
}

}  // namespace
}  // namespace fovea::data
