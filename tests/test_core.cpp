// tests/test_core.cpp: shapes, devices, tensors and views, transfers, the caching allocator (on a
// fake raw allocator), host memory statistics, errors and the backend line.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "fovea/cpu/lane_sum.hpp"
#include "fovea/fovea.hpp"
#include "fovea/io/folder_lock.hpp"

namespace fovea {
namespace {

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

TEST(Shape, BasicsAndErrors) {
  Shape s{2, 3, 4, 5};
  EXPECT_EQ(s.rank(), 4);
  EXPECT_EQ(s.numel(), 120);
  EXPECT_EQ(s.sample_numel(), 60);
  EXPECT_EQ(s.str(), "(2, 3, 4, 5)");
  EXPECT_EQ(Shape{}.numel(), 1);
  EXPECT_EQ(Shape{}.str(), "()");
  Shape m{8, 10};
  EXPECT_EQ(m.n(), 8);
  EXPECT_EQ(m.c(), 10);
  EXPECT_EQ(m.h(), 1);
  EXPECT_EQ(s.with(1, 7), (Shape{2, 7, 4, 5}));
  EXPECT_THROW((Shape{1, 2, 3, 4, 5}), Error);
  EXPECT_THROW((Shape{2, -1}), Error);
  EXPECT_THROW(s[4], Error);
}

TEST(Device, ParseAndPrint) {
  EXPECT_EQ(Device::parse("cpu"), Device::cpu());
  EXPECT_EQ(Device::parse("cuda"), Device::cuda(0));
  EXPECT_EQ(Device::parse("cuda:3"), Device::cuda(3));
  EXPECT_EQ(Device::cuda(2).str(), "cuda:2");
  EXPECT_FALSE(Device::cuda(0) == Device::cuda(1));
  EXPECT_THROW(Device::parse("gpu"), Error);
  EXPECT_THROW(Device::parse("cuda:x"), Error);
  EXPECT_THROW(Device::parse("cuda:"), Error);
}

TEST(Tensor, FromToVectorAndClone) {
  Tensor t = Tensor::from({1, 2, 3, 4, 5, 6}, {2, 3});
  EXPECT_EQ(t.shape(), (Shape{2, 3}));
  Tensor c = t.clone();
  c.data()[0] = 100;
  EXPECT_EQ(t.to_vector()[0], 1.0f);
  EXPECT_EQ(c.to_vector()[0], 100.0f);
  EXPECT_THROW(Tensor::from({1, 2, 3}, {2, 2}), Error);
}

TEST(Tensor, MoveLeavesSourceEmpty) {
  Tensor a = full({4}, 2.0f);
  const float* p = a.data();
  Tensor b = std::move(a);
  EXPECT_EQ(b.data(), p);
  EXPECT_EQ(a.data(), nullptr);  // NOLINT: checking the moved-from state on purpose
  EXPECT_TRUE(a.empty() || a.data() == nullptr);
}

TEST(Tensor, BatchViewsShareMemoryAndSplit) {
  Tensor t = Tensor::from({0, 1, 2, 3, 4, 5, 6, 7, 8, 9}, {5, 2});
  View rows = t.batch(1, 3);
  EXPECT_EQ(rows.shape(), (Shape{2, 2}));
  EXPECT_EQ(rows.data(), t.data() + 2);
  fill(rows, -1.0f);
  EXPECT_EQ(t.to_vector(), (std::vector<float>{0, 1, -1, -1, -1, -1, 6, 7, 8, 9}));
  auto parts = t.split_batch(2);
  ASSERT_EQ(parts.size(), 3u);
  EXPECT_EQ(parts[2].shape(), (Shape{1, 2}));
  EXPECT_EQ(parts[2].data(), t.data() + 8);
  EXPECT_THROW(t.batch(3, 6), Error);
  EXPECT_THROW(t.split_batch(0), Error);
}

TEST(Tensor, ReshapeAndResize) {
  Tensor t = full({2, 6}, 1.0f);
  t.reshape({3, 2, 2});
  EXPECT_EQ(t.shape(), (Shape{3, 2, 2}));
  EXPECT_THROW(t.reshape({5}), Error);
  const float* p = t.data();
  t.resize({2, 2});  // smaller: keeps the memory
  EXPECT_EQ(t.data(), p);
  t.resize({100, 100});  // larger: reallocates
  EXPECT_EQ(t.numel(), 10000);
  EXPECT_THROW(t.view().reshaped({3}), Error);
}

TEST(Tensor, CopyChecksShapes) {
  Tensor a = full({2, 3}, 1.0f), b({3, 2});
  try {
    copy(a, b);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_TRUE(contains(e.what(), "(2, 3)") && contains(e.what(), "(3, 2)")) << e.what();
  }
}

TEST(Tensor, DeviceMismatchIsAnError) {
  // A view that claims to live on cuda:0 is enough: the check fires before any memory is touched.
  Tensor a = full({4}, 1.0f), out({4});
  float fake = 0;
  View g(&fake, Shape{4}, Device::cuda(0));
  try {
    add(a, g, out);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_TRUE(contains(e.what(), "device mismatch") && contains(e.what(), "cuda:0")) << e.what();
  }
}

// LaneSum: every term once (lengths around multiples of 8, then a second call into the same lanes), in
// the documented order: term k of a call in lane k % 8, the lanes combined ((0+1)+(2+3))+((4+5)+(6+7)).
TEST(LaneSum, AddsEveryTermInTheDocumentedOrder) {
  for (std::int64_t n = 0; n <= 27; ++n) {
    detail::LaneSum s;
    s.add(n, [](std::int64_t k) { return static_cast<float>(k + 1); });
    s.add(3, [](std::int64_t k) { return 1000.0f * static_cast<float>(k + 1); });
    EXPECT_EQ(s.total(), static_cast<double>(n * (n + 1) / 2 + 6000)) << "n " << n;
  }
  // The order shows where rounding differs: 1 + 1e16 rounds to 1e16 (ulp 2), so lanes 0+1 and 2+3
  // give 1e16 and -1e16, total 0; a serial sum gives 1.
  const std::vector<double> v = {1e16, 1.0, -1e16, 1.0};
  detail::LaneSum s;
  s.add(4, [&](std::int64_t k) { return v[static_cast<std::size_t>(k)]; });
  volatile double serial = 0.0;
  for (double x : v) serial = serial + x;
  EXPECT_EQ(s.total(), (v[0] + v[1]) + (v[2] + v[3]));
  EXPECT_EQ(s.total(), 0.0);
  EXPECT_EQ(serial, 1.0);
}

TEST(Error, CheckMacroNamesConditionFileAndDetails) {
  try {
    const int channels = 3;
    FOVEA_CHECK(channels == 4, "expected 4 channels, got ", channels);
    FAIL() << "no error";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_TRUE(contains(msg, "test_core.cpp:")) << msg;
    EXPECT_TRUE(contains(msg, "channels == 4")) << msg;
    EXPECT_TRUE(contains(msg, "expected 4 channels, got 3")) << msg;
  }
}

// env_choice: unset or empty gives the first choice, a listed name its value, anything else an error
// naming the variable, the accepted names and the value.
TEST(Env, ChoiceFromTheListOrAnErrorNamingIt) {
  enum class Pick { a, b };
  const char* name = "FOVEA_TEST_ENV_CHOICE";
  const auto read = [&] {
    return env_choice<Pick>(name, {{"auto", Pick::b}, {"a", Pick::a}, {"b", Pick::b}});
  };
  ::unsetenv(name);
  EXPECT_EQ(read(), Pick::b);
  ::setenv(name, "", 1);
  EXPECT_EQ(read(), Pick::b);
  ::setenv(name, "a", 1);
  EXPECT_EQ(read(), Pick::a);
  ::setenv(name, "c", 1);
  try {
    read();
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_TRUE(contains(e.what(), "FOVEA_TEST_ENV_CHOICE must be auto, a or b, got 'c'")) << e.what();
  }
  ::unsetenv(name);
}

// A raw allocator that hands out host memory and counts calls.
class FakeRaw final : public RawAllocator {
 public:
  explicit FakeRaw(std::size_t limit) : limit_(limit) {}
  void* allocate(std::size_t bytes) override {
    if (in_use_ + bytes > limit_) return nullptr;
    in_use_ += bytes;
    ++allocs;
    void* p = ::operator new(bytes);
    sizes_[p] = bytes;
    return p;
  }
  void release(void* p) override {
    in_use_ -= sizes_.at(p);
    sizes_.erase(p);
    ++releases;
    ::operator delete(p);
  }
  std::string name() const override { return "fake:0"; }
  int allocs = 0, releases = 0;

 private:
  std::size_t limit_, in_use_ = 0;
  std::map<void*, std::size_t> sizes_;
};

TEST(CachingAllocator, ReusesFreedBlocksAndTracksPeak) {
  auto raw = std::make_unique<FakeRaw>(std::size_t{64} << 20);
  FakeRaw* r = raw.get();
  CachingAllocator a(std::move(raw));
  void* p1 = a.allocate(1000);
  void* p2 = a.allocate(3 << 20);
  EXPECT_EQ(r->allocs, 2);
  EXPECT_EQ(a.stats().current_bytes, 1024u + (4u << 20));  // 512-B and 2-MiB rounding
  a.deallocate(p1);
  EXPECT_EQ(a.stats().cached_bytes, 1024u);
  void* p3 = a.allocate(900);  // same rounded size: served from the cache
  EXPECT_EQ(p3, p1);
  EXPECT_EQ(r->allocs, 2);
  EXPECT_EQ(a.stats().cache_hits, 1u);
  a.deallocate(p2);
  a.deallocate(p3);
  EXPECT_EQ(a.stats().current_bytes, 0u);
  EXPECT_EQ(a.stats().peak_bytes, 1024u + (4u << 20));
  a.reset_peak();
  EXPECT_EQ(a.stats().peak_bytes, 0u);
  a.release_cache();
  EXPECT_EQ(r->releases, 2);
  EXPECT_EQ(a.stats().cached_bytes, 0u);
}

TEST(CachingAllocator, DoesNotHandOutMuchLargerBlocksOrCrossStreams) {
  auto raw = std::make_unique<FakeRaw>(std::size_t{64} << 20);
  FakeRaw* r = raw.get();
  CachingAllocator a(std::move(raw));
  void* big = a.allocate(8 << 20);
  a.deallocate(big);
  void* small = a.allocate(1 << 20);  // 2 MiB rounded: an 8-MiB block is more than twice that
  EXPECT_NE(small, big);
  EXPECT_EQ(r->allocs, 2);
  a.deallocate(small);
  int stream_tag = 0;
  void* other = a.allocate(8 << 20, &stream_tag);  // another stream: no reuse
  EXPECT_NE(other, big);
  a.deallocate(other);
}

TEST(CachingAllocator, ReleasesCacheThenThrowsOutOfMemory) {
  auto raw = std::make_unique<FakeRaw>(std::size_t{10} << 20);
  FakeRaw* r = raw.get();
  CachingAllocator a(std::move(raw));
  void* p = a.allocate(6 << 20);
  a.deallocate(p);                 // cached: 6 MiB of the 10 stay reserved
  void* q = a.allocate(8 << 20);   // needs the cache released first
  EXPECT_NE(q, nullptr);
  EXPECT_EQ(r->releases, 1);
  try {
    a.allocate(9 << 20);
    FAIL() << "no error";
  } catch (const OutOfMemoryError& e) {
    EXPECT_TRUE(contains(e.what(), "fake:0") && contains(e.what(), "requested 9437184 bytes")) << e.what();
  }
  a.deallocate(q);
  EXPECT_THROW(a.deallocate(reinterpret_cast<void*>(0x1234)), Error);
}

// A second process (here: a second open of the lock file, which flock treats alike) is refused while
// the folder is held, with the holder named; the lock goes when its holder closes it or dies.
TEST(FolderLock, OneHolderPerFolderReleasedWhenTheHolderEnds) {
  const auto dir =
      std::filesystem::temp_directory_path() / ("fovea_lock_" + std::to_string(::getpid())) / "run";
  std::filesystem::remove_all(dir.parent_path());
  {
    const io::FolderLock first(dir, "fovea finetune");  // creates the folder
    EXPECT_TRUE(first.held());
    EXPECT_TRUE(std::filesystem::exists(dir / ".fovea.lock"));
    std::string message;
    try {
      io::FolderLock second(dir, "fovea evaluate");
    } catch (const Error& e) {
      message = e.what();
    }
    EXPECT_NE(message.find("the run folder '" + dir.string() + "' is in use by another fovea process (pid " +
                           std::to_string(::getpid()) + " on "),
              std::string::npos)
        << message;
    EXPECT_NE(message.find(": fovea finetune); wait for it to end, or choose another --out"),
              std::string::npos)
        << message;
  }
  EXPECT_NO_THROW(io::FolderLock(dir, "again"));  // released with the first
  // A holder killed with SIGKILL leaves no stale lock.
  int ready[2];
  ASSERT_EQ(::pipe(ready), 0);
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    const io::FolderLock held(dir, "child");
    const char c = 'x';
    (void)!::write(ready[1], &c, 1);
    ::pause();
    ::_exit(0);
  }
  char c = 0;
  ASSERT_EQ(::read(ready[0], &c, 1), 1);
  EXPECT_THROW(io::FolderLock(dir, "parent"), Error);
  ::kill(child, SIGKILL);
  int status = 0;
  ::waitpid(child, &status, 0);
  EXPECT_NO_THROW(io::FolderLock(dir, "parent"));
  ::close(ready[0]), ::close(ready[1]);
  // A lock file that cannot be opened is named.
  std::filesystem::create_directories(dir / "blocked" / ".fovea.lock");  // a folder where the file goes
  try {
    io::FolderLock(dir / "blocked", "x");
    ADD_FAILURE() << "no error for an unopenable lock file";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("cannot open the lock file '" +
                                         (dir / "blocked" / ".fovea.lock").string()),
              std::string::npos)
        << e.what();
  }
  std::filesystem::remove_all(dir.parent_path());
}

TEST(Memory, HostStatsCountTensors) {
  const auto before = memory_stats(Device::cpu()).current_bytes;
  {
    Tensor t({1000});
    EXPECT_GE(memory_stats(Device::cpu()).current_bytes, before + 4000);
    EXPECT_GE(memory_stats(Device::cpu()).peak_bytes, before + 4000);
  }
  EXPECT_EQ(memory_stats(Device::cpu()).current_bytes, before);
}

TEST(Backend, SummaryIsOneLine) {
  const std::string s = backend_summary();
  EXPECT_FALSE(s.empty());
  EXPECT_EQ(s.find('\n'), std::string::npos);
  if (!cuda_available()) {
    EXPECT_TRUE(contains(s, "CPU only")) << s;
  }
}

TEST(Backend, MissingCudaDeviceIsAnErrorNotAFallback) {
  const int count = cuda_device_count();
  const Device missing = Device::cuda(count);  // one past the last device
  try {
    Tensor t(Shape{4}, missing);
    FAIL() << "allocated on " << missing.str() << " although only " << count << " devices exist";
  } catch (const Error& e) {
    EXPECT_TRUE(contains(e.what(), missing.str())) << e.what();
  }
  if (count == 0) {
    EXPECT_FALSE(cuda_unavailable_reason().empty());
  }
}

}  // namespace
}  // namespace fovea
