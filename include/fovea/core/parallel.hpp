// fovea/core/parallel.hpp: the CPU twins' parallel loop. A persistent pool of worker threads splits a
// range of independent items (the images of a convolution's batch) into contiguous chunks; the calling
// thread takes a chunk too. Results never depend on the thread count: callers parallelise only over
// items that do not mix (each item's outputs are computed by the same code as in a serial loop, and a
// sum over items stays in one thread, in order), so deterministic runs stay bitwise reproducible on
// any machine.
//
// The thread count is FOVEA_CPU_THREADS when set, else std::thread::hardware_concurrency(), changeable
// with set_cpu_threads (1 = serial). A parallel_for inside another one, or while another thread's loop
// holds the pool, runs serially in its own thread (no deadlock, same results).
#pragma once

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include "fovea/core/error.hpp"

namespace fovea {

namespace detail {

// The starting thread count: FOVEA_CPU_THREADS (a positive integer) or the hardware's threads.
inline int default_cpu_threads() {
  if (const char* env = std::getenv("FOVEA_CPU_THREADS"); env != nullptr && *env != '\0') {
    char* end = nullptr;
    const long n = std::strtol(env, &end, 10);
    FOVEA_CHECK(end != env && *end == '\0' && n >= 1 && n <= 1024,
                "FOVEA_CPU_THREADS must be an integer from 1 to 1024, got \"", env, "\"");
    return static_cast<int>(n);
  }
  const unsigned hw = std::thread::hardware_concurrency();
  return hw == 0 ? 1 : static_cast<int>(std::min(hw, 1024u));
}

inline std::atomic<int>& cpu_threads_setting() {
  static std::atomic<int> threads{default_cpu_threads()};
  return threads;
}

// Workers that run chunks of one loop at a time. Never destroyed (threads blocked on the condition
// variable at exit are simply abandoned, as the CUDA allocators are).
class CpuPool {
 public:
  static CpuPool& instance() {
    static CpuPool* pool = new CpuPool();
    return *pool;
  }

  // Runs body(begin, end) over min(n, threads) contiguous chunks of [0, n) with up to `threads`
  // threads, the caller included; false when the pool is busy with another thread's loop (the
  // caller then runs serially).
  bool run(std::int64_t n, int threads, const std::function<void(std::int64_t, std::int64_t)>& body) {
    std::unique_lock<std::mutex> busy(busy_, std::try_to_lock);
    if (!busy.owns_lock()) return false;
    grow(threads - 1);
    auto job = std::make_shared<Job>();
    job->body = &body;
    job->n = n;
    job->chunks = std::min<std::int64_t>(n, threads);
    job->pending = job->chunks;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      job_ = job;
      ++generation_;
    }
    wake_.notify_all();
    work(*job);  // the caller takes chunks too
    std::unique_lock<std::mutex> lock(mutex_);
    done_.wait(lock, [&] { return job->pending == 0; });
    job_.reset();
    if (job->error) std::rethrow_exception(job->error);
    return true;
  }

  static bool& in_region() {
    thread_local bool inside = false;
    return inside;
  }

 private:
  // One loop. A worker that wakes late holds its own reference and finds no chunk left: it never
  // touches a later loop's counter, and never calls a finished loop's body.
  struct Job {
    const std::function<void(std::int64_t, std::int64_t)>* body = nullptr;
    std::int64_t n = 0, chunks = 0;
    std::atomic<std::int64_t> next{0};
    std::int64_t pending = 0;  // under mutex_
    std::exception_ptr error;  // under mutex_
  };

  CpuPool() = default;

  // Starts workers up to `workers`; when the system refuses a thread the loops run on those it has.
  void grow(int workers) {
    while (workers_ < workers) {
      try {
        std::thread([this] { loop(); }).detach();
      } catch (const std::system_error&) {
        return;
      }
      ++workers_;
    }
  }

  void loop() {
    in_region() = true;  // a worker's nested loops run serially
    std::uint64_t seen = 0;
    for (;;) {
      std::shared_ptr<Job> job;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        wake_.wait(lock, [&] { return generation_ != seen; });
        seen = generation_;
        job = job_;
      }
      if (job) work(*job);
    }
  }

  // Takes chunks of `job` until none is left.
  void work(Job& job) {
    for (;;) {
      const std::int64_t c = job.next.fetch_add(1);
      if (c >= job.chunks) return;
      try {
        (*job.body)(job.n * c / job.chunks, job.n * (c + 1) / job.chunks);
      } catch (...) {
        std::lock_guard<std::mutex> lock(mutex_);
        if (!job.error) job.error = std::current_exception();
      }
      std::lock_guard<std::mutex> lock(mutex_);
      if (--job.pending == 0) done_.notify_all();
    }
  }

  std::mutex busy_;  // one loop at a time
  std::mutex mutex_;
  std::condition_variable wake_, done_;
  int workers_ = 0;  // under busy_
  std::shared_ptr<Job> job_;
  std::uint64_t generation_ = 0;
};

}  // namespace detail

// Threads the CPU twins' parallel loops use (at least 1).
inline int cpu_threads() { return detail::cpu_threads_setting().load(); }

// Sets the threads of the CPU twins' parallel loops (1: every loop serial). Results do not change.
inline void set_cpu_threads(int threads) {
  FOVEA_CHECK(threads >= 1 && threads <= 1024, "set_cpu_threads: threads must be 1 to 1024, got ", threads);
  detail::cpu_threads_setting().store(threads);
}

// Below this many elementary operations (n * work_per_item) a loop is not worth waking threads for.
inline constexpr std::int64_t kParallelMinWork = std::int64_t{1} << 15;

// body(begin, end) over contiguous chunks of [0, n), on up to cpu_threads() threads; serial when n or
// the thread count is 1, when n * work_per_item is below kParallelMinWork, inside another parallel
// loop, or while another thread's loop holds the pool. The first exception a chunk throws is rethrown
// here after every chunk has finished.
template <class Body>
void parallel_for(std::int64_t n, Body&& body, std::int64_t work_per_item = kParallelMinWork) {
  if (n <= 0) return;
  const int threads = cpu_threads();
  bool& inside = detail::CpuPool::in_region();
  const bool worth = work_per_item >= kParallelMinWork || n * work_per_item >= kParallelMinWork;
  if (threads > 1 && n > 1 && worth && !inside) {
    const std::function<void(std::int64_t, std::int64_t)> fn = [&](std::int64_t b, std::int64_t e) {
      body(b, e);
    };
    inside = true;
    bool ran = false;
    try {
      ran = detail::CpuPool::instance().run(n, threads, fn);
    } catch (...) {
      inside = false;
      throw;
    }
    inside = false;
    if (ran) return;
  }
  body(std::int64_t{0}, n);
}

}  // namespace fovea
