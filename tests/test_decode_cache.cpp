// tests/test_decode_cache.cpp: DecodedImageCache (tools/fovea/drivers.hpp), the store of decoded
// images `fovea robustness` reads on its passes after the first: the byte budget (an image beyond it
// is decoded again and still returned right), concurrent fills from several threads, failing decodes,
// and a Loader whose decoder goes through the cache giving the default decoder's batches bitwise.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "../tools/fovea/drivers.hpp"
#include "fovea/core/tensor.hpp"
#include "fovea/data/dataset.hpp"
#include "fovea/data/image.hpp"
#include "fovea/data/loader.hpp"
#include "fovea/data/sampler.hpp"

namespace fovea::tools {
namespace {

namespace fs = std::filesystem;

// The "decoded" image of index i: (1, 3, s, s) with values that depend on i.
Tensor image_of(std::size_t i, std::int64_t s = 4) {
  Tensor t(Shape{1, 3, s, s});
  for (std::int64_t k = 0; k < t.numel(); ++k)
    t.data()[k] = static_cast<float>((static_cast<std::int64_t>(i) * 31 + k * 7) % 256) / 255.0f;
  return t;
}

bool same(const Tensor& a, const Tensor& b) {
  return a.shape() == b.shape() && std::equal(a.data(), a.data() + a.numel(), b.data());
}

TEST(DecodedImageCache, StoresWithinTheBudgetAndDecodesTheRestAgain) {
  const std::size_t bytes = image_of(0).bytes();  // 3 * 4 * 4 floats
  DecodedImageCache cache(3, 2 * bytes);          // room for two images
  std::vector<int> decodes(3, 0);
  const auto get = [&](std::size_t i) {
    return cache.get(i, [&] {
      ++decodes[i];
      return image_of(i);
    });
  };
  for (int pass = 0; pass < 3; ++pass)
    for (std::size_t i = 0; i < 3; ++i) {
      const Tensor got = get(i);
      EXPECT_TRUE(same(got, image_of(i))) << "pass " << pass << ", image " << i;
    }
  EXPECT_EQ(decodes, (std::vector<int>{1, 1, 3})) << "images 0 and 1 stored, image 2 decoded every time";
  EXPECT_EQ(cache.images(), 2u);
  EXPECT_EQ(cache.bytes(), 2 * bytes);
  EXPECT_EQ(cache.capacity(), 3u);

  // What get returns is the caller's own copy: changing it leaves the stored image as it was.
  Tensor mine = get(0);
  mine.data()[0] = -1.0f;
  EXPECT_TRUE(same(get(0), image_of(0)));
  EXPECT_EQ(decodes[0], 1);
}

TEST(DecodedImageCache, ZeroBudgetStoresNothing) {
  DecodedImageCache cache(2, 0);
  int decodes = 0;
  for (int pass = 0; pass < 3; ++pass) {
    const Tensor got = cache.get(1, [&] {
      ++decodes;
      return image_of(1);
    });
    EXPECT_TRUE(same(got, image_of(1)));
  }
  EXPECT_EQ(decodes, 3);
  EXPECT_EQ(cache.images(), 0u);
  EXPECT_EQ(cache.bytes(), 0u);
}

TEST(DecodedImageCache, AFailingDecodeStoresNothingAndIsTriedAgain) {
  DecodedImageCache cache(1, 1 << 20);
  EXPECT_THROW(cache.get(0, []() -> Tensor { throw std::runtime_error("cannot decode"); }),
               std::runtime_error);
  EXPECT_EQ(cache.images(), 0u);
  EXPECT_TRUE(same(cache.get(0, [] { return image_of(0); }), image_of(0)));
  EXPECT_TRUE(same(cache.get(0, []() -> Tensor { throw std::runtime_error("not called"); }), image_of(0)));
  EXPECT_THROW(cache.get(1, [] { return image_of(1); }), fovea::Error) << "index outside the cache";
}

TEST(DecodedImageCache, ConcurrentFillsGiveTheRightImages) {
  constexpr std::size_t kImages = 64;
  constexpr int kThreads = 6;
  const std::size_t bytes = image_of(0, 8).bytes();
  // Room for 40 of the 64: which ones end up stored depends on timing, what get returns must not.
  DecodedImageCache cache(kImages, 40 * bytes);
  std::atomic<int> decodes{0}, wrong{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t)
    threads.emplace_back([&, t] {
      for (int pass = 0; pass < 4; ++pass)
        for (std::size_t k = 0; k < kImages; ++k) {
          // Threads walk the indices from different starting points, so some ask for the same index
          // at the same time and others fill distinct ones.
          const std::size_t i = (k + static_cast<std::size_t>(t) * 11) % kImages;
          const Tensor got = cache.get(i, [&] {
            decodes.fetch_add(1);
            return image_of(i, 8);
          });
          if (!same(got, image_of(i, 8))) wrong.fetch_add(1);
        }
    });
  for (std::thread& th : threads) th.join();
  EXPECT_EQ(wrong.load(), 0);
  EXPECT_EQ(cache.images(), 40u);
  EXPECT_EQ(cache.bytes(), 40 * bytes);
  // Every stored image is decoded at least once; the 24 that do not fit are decoded on every call.
  EXPECT_GE(decodes.load(), static_cast<int>(40 + 24 * kThreads * 4));
  EXPECT_LT(decodes.load(), static_cast<int>(kImages * kThreads * 4));
}

// A Loader decoding through the cache gives the default resize decoder's batches bitwise, on the pass
// that fills the cache and on the passes that read it (`fovea robustness`'s clean pass).
TEST(DecodedImageCache, LoaderThroughTheCacheMatchesTheDefaultDecoder) {
  if (!data::kHaveImageIo) GTEST_SKIP() << "built without stb (libstb-dev): load_image is off";
  const fs::path dir = fs::temp_directory_path() / ("fovea_test_decode_cache_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  data::Dataset d;
  for (int i = 0; i < 7; ++i) {
    Tensor img(Shape{3, 10 + i, 13});
    for (std::int64_t k = 0; k < img.numel(); ++k)
      img.data()[k] = static_cast<float>((k * 7 + i * 13) % 256) / 255.0f;
    const fs::path p = dir / (std::to_string(i) + "_left.png");
    data::write_png(p, img);
    d.samples.push_back(data::Sample{std::to_string(i) + "_left", p, i % 5, std::to_string(i)});
  }
  constexpr int kSide = 9;
  const auto batches = [&](data::DecodeFn decode) {
    data::LoaderOptions o;
    o.batch_size = 3;
    o.image_size = kSide;
    o.threads = 2;
    o.decode = std::move(decode);
    data::Loader loader(d, data::Sampler::sequential(d.size()), o);
    loader.start_epoch(0);
    std::vector<float> all;
    while (auto b = loader.next()) {
      const auto v = b->images.to_vector();
      all.insert(all.end(), v.begin(), v.end());
    }
    return all;
  };
  const std::vector<float> want = batches({});  // the default: data::resize_decoder(kSide)
  ASSERT_EQ(want.size(), d.size() * 3 * kSide * kSide);
  DecodedImageCache cache(d.size(), std::size_t{1} << 20);
  const data::DecodeFn cached = [&](const data::Sample& s, const data::DecodeContext& ctx) {
    return cache.get(ctx.index, [&] {
      return data::preprocess_for_model(s.path, kSide, {0.0f, 0.0f, 0.0f}, {1.0f, 1.0f, 1.0f});
    });
  };
  for (int pass = 0; pass < 3; ++pass) EXPECT_EQ(batches(cached), want) << "pass " << pass;
  EXPECT_EQ(cache.images(), d.size());
  fs::remove_all(dir);
}

}  // namespace
}  // namespace fovea::tools
