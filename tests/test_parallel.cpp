// tests/test_parallel.cpp: the CPU twins' parallel loop (fovea/core/parallel.hpp) and the ops that use
// it: every item exactly once, exceptions, nesting, the thread setting, and bitwise the same
// convolution, pooling and batch-norm results whatever the thread count.
#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "fovea/data/augment.hpp"
#include "fovea/fovea.hpp"
#include "op_cases.hpp"

namespace fovea::testing {
namespace {

// Restores the thread setting when a test ends.
class ThreadsScope {
 public:
  explicit ThreadsScope(int threads) : saved_(cpu_threads()) { set_cpu_threads(threads); }
  ~ThreadsScope() { set_cpu_threads(saved_); }
  ThreadsScope(const ThreadsScope&) = delete;
  ThreadsScope& operator=(const ThreadsScope&) = delete;

 private:
  int saved_;
};

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

TEST(ParallelFor, VisitsEveryItemOnceInContiguousChunks) {
  for (int threads : {1, 2, 3, 7}) {
    ThreadsScope scope(threads);
    for (std::int64_t n : {1, 2, 5, 64, 1001}) {
      std::vector<std::atomic<int>> hits(static_cast<std::size_t>(n));
      std::atomic<int> chunks{0};
      std::mutex mutex;
      std::vector<std::thread::id> ids;
      parallel_for(n, [&](std::int64_t first, std::int64_t last) {
        ASSERT_LT(first, last);
        ++chunks;
        {
          std::lock_guard<std::mutex> lock(mutex);
          ids.push_back(std::this_thread::get_id());
        }
        for (std::int64_t i = first; i < last; ++i) ++hits[static_cast<std::size_t>(i)];
      });
      for (std::int64_t i = 0; i < n; ++i)
        ASSERT_EQ(hits[static_cast<std::size_t>(i)].load(), 1) << "item " << i;
      EXPECT_EQ(chunks.load(), std::min<std::int64_t>(n, threads)) << "n " << n << ", threads " << threads;
    }
  }
}

TEST(ParallelFor, SmallLoopsStaySerialAndEmptyOnesDoNothing) {
  ThreadsScope scope(4);
  int chunks = 0;
  parallel_for(
      100,
      [&](std::int64_t first, std::int64_t last) {
        ++chunks;  // not atomic: serial loops only
        EXPECT_EQ(first, 0);
        EXPECT_EQ(last, 100);
      },
      /*work_per_item=*/10);
  EXPECT_EQ(chunks, 1);
  parallel_for(0, [&](std::int64_t, std::int64_t) { ++chunks; });
  EXPECT_EQ(chunks, 1);
}

TEST(ParallelFor, RethrowsAChunksExceptionAndStaysUsable) {
  ThreadsScope scope(3);
  EXPECT_THROW(parallel_for(9,
                            [&](std::int64_t first, std::int64_t) {
                              if (first > 0) throw std::runtime_error("chunk failed");
                            }),
               std::runtime_error);
  std::atomic<std::int64_t> sum{0};
  parallel_for(9, [&](std::int64_t first, std::int64_t last) {
    for (std::int64_t i = first; i < last; ++i) sum += i;
  });
  EXPECT_EQ(sum.load(), 36);
}

TEST(ParallelFor, NestedLoopsRunSeriallyInTheirThread) {
  ThreadsScope scope(3);
  std::atomic<std::int64_t> total{0};
  std::atomic<int> inner_chunks{0};
  parallel_for(6, [&](std::int64_t first, std::int64_t last) {
    for (std::int64_t i = first; i < last; ++i)
      parallel_for(10, [&](std::int64_t b, std::int64_t e) {
        ++inner_chunks;
        total += e - b;
      });
  });
  EXPECT_EQ(total.load(), 60);
  EXPECT_EQ(inner_chunks.load(), 6);  // one serial chunk per inner loop
}

TEST(ParallelFor, ConcurrentCallersBothFinish) {
  ThreadsScope scope(2);
  std::atomic<std::int64_t> a{0}, b{0};
  auto work = [](std::atomic<std::int64_t>& sum) {
    for (int rep = 0; rep < 50; ++rep)
      parallel_for(1000, [&](std::int64_t first, std::int64_t last) {
        for (std::int64_t i = first; i < last; ++i) sum += i;
      });
  };
  std::thread other([&] { work(b); });
  work(a);
  other.join();
  EXPECT_EQ(a.load(), 50 * 499500);
  EXPECT_EQ(b.load(), 50 * 499500);
}

TEST(ParallelFor, ThreadSettingIsValidated) {
  EXPECT_THROW(set_cpu_threads(0), Error);
  EXPECT_THROW(set_cpu_threads(-2), Error);
  ThreadsScope scope(5);
  EXPECT_EQ(cpu_threads(), 5);
  ::setenv("FOVEA_CPU_THREADS", "3", 1);
  EXPECT_EQ(detail::default_cpu_threads(), 3);
  ::setenv("FOVEA_CPU_THREADS", "many", 1);
  try {
    detail::default_cpu_threads();
    ADD_FAILURE() << "FOVEA_CPU_THREADS=many accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("FOVEA_CPU_THREADS"), std::string::npos) << e.what();
  }
  ::unsetenv("FOVEA_CPU_THREADS");
}

// Convolution (forward, backward data, backward filter; strided, padded, grouped, 1x1), max pooling,
// batch norm, the augmentation pipeline, element-wise maps and copies give the same bits on 1, 2 and
// 5 threads, with item counts that split unevenly.
TEST(ParallelOps, ResultsDoNotDependOnTheThreadCount) {
  struct ConvCase {
    Shape x, w;
    Conv2dParams p;
  };
  const std::vector<ConvCase> convs = {
      {{7, 6, 19, 17}, {8, 6, 3, 3}, {1, 1, 1, 1}},         {{5, 4, 16, 16}, {6, 4, 7, 7}, {2, 2, 3, 3}},
      {{3, 8, 9, 11}, {8, 2, 3, 3}, {1, 2, 1, 0, 1, 1, 4}}, {{6, 16, 8, 8}, {32, 16, 1, 1}, {1, 1, 0, 0}},
      {{6, 16, 8, 8}, {32, 16, 1, 1}, {2, 2, 0, 0}},        {{7, 3, 40, 40}, {4, 3, 3, 3}, {1, 1, 1, 1}},
      {{11, 4, 12, 12}, {5, 4, 1, 1}, {1, 1, 0, 0}},
  };
  auto run = [&](int threads) {
    ThreadsScope scope(threads);
    std::vector<float> bits;
    auto keep = [&](const Tensor& t) {
      const auto v = t.to_vector();
      bits.insert(bits.end(), v.begin(), v.end());
    };
    std::uint64_t seed = 10;
    for (const ConvCase& c : convs) {
      const Tensor x = Tensor::from(random_values(c.x.numel(), InputKind::normal, seed++), c.x);
      const Tensor w = Tensor::from(random_values(c.w.numel(), InputKind::normal, seed++), c.w);
      const Shape ys = conv2d_output_shape(c.x, c.w, c.p);
      const Tensor dy = Tensor::from(random_values(ys.numel(), InputKind::normal, seed++), ys);
      Tensor y(ys), dx(c.x), dw(c.w);
      conv2d_forward(x, w, CView(), y, c.p);
      conv2d_backward_data(dy, w, dx, c.p);
      conv2d_backward_filter(x, dy, dw, c.p);
      keep(y), keep(dx), keep(dw);
    }
    const Shape xs{9, 12, 33, 31};
    const Tensor x = Tensor::from(random_values(xs.numel(), InputKind::normal, 99), xs);
    const PoolParams pool{3, 2, 1};
    const Shape ps = pool2d_output_shape(xs, pool);
    Tensor py(ps), pdx(xs);
    max_pool2d_forward(x, py, pool);
    const Tensor pdy = Tensor::from(random_values(ps.numel(), InputKind::normal, 98), ps);
    max_pool2d_backward(x, py, pdy, pdx, pool);
    keep(py), keep(pdx);
    const Tensor gamma = Tensor::from(random_values(12, InputKind::normal, 97), Shape{12});
    const Tensor beta = Tensor::from(random_values(12, InputKind::normal, 96), Shape{12});
    Tensor rm = full({12}, 0.0f), rv = full({12}, 1.0f), by(xs), mean(Shape{12}), invstd(Shape{12});
    batch_norm_forward_training(x, gamma, beta, rm, rv, 0.1f, 1e-5f, by, mean, invstd);
    Tensor bdx(xs), dgamma(Shape{12}), dbeta(Shape{12});
    batch_norm_backward(x, by, gamma, mean, invstd, bdx, dgamma, dbeta);
    Tensor iy(xs);
    batch_norm_forward_inference(x, gamma, beta, rm, rv, 1e-5f, iy);
    keep(by), keep(rm), keep(rv), keep(bdx), keep(dgamma), keep(dbeta), keep(iy);
    // The SimCLR pipeline with every op on (crop, flip, jitter with contrast, grayscale, blur,
    // solarize, normalisation), samples in parallel.
    data::AugmentConfig config = data::simclr(96);
    config.jitter_p = config.grayscale_p = config.blur_p = config.solarize_p = 0.5f;
    const Shape is{7, 3, 100, 104};
    std::vector<float> pixels = random_values(is.numel(), InputKind::normal, 95);
    for (float& v : pixels) v = 0.5f + 0.15f * std::tanh(v);  // inside (0, 1), like an image
    const Tensor images = Tensor::from(pixels, is);
    Tensor views(Shape{7, 3, 96, 96});
    const std::vector<std::int64_t> ids{0, 1, 2, 3, 4, 5, 6};
    data::augment_batch(images, ids, 3, 0, config, 2024, views);
    keep(views);
    // Element-wise maps and copies of 20 chunks and a remainder.
    const Shape es{20 * 16384 + 123};
    const Tensor ea = Tensor::from(random_values(es.numel(), InputKind::normal, 94), es);
    const Tensor eb = Tensor::from(random_values(es.numel(), InputKind::normal, 93), es);
    Tensor sum(es), copied(es);
    add(ea, eb, sum);
    axpy(0.3f, ea, sum);
    relu_forward(sum, sum);
    copy(sum, copied);
    keep(copied);
    return bits;
  };
  const std::vector<float> serial = run(1);
  EXPECT_TRUE(same_bits(run(2), serial));
  EXPECT_TRUE(same_bits(run(5), serial));
}

}  // namespace
}  // namespace fovea::testing
