// tests/emu/emu_cuda.hpp: just enough of CUDA to run fovea's device code on the CPU, so that CI (no
// GPU) checks the kernels' indexing, tiling, synchronisation and arithmetic against the CPU twins.
//
// A launch runs the blocks one after another. Within a block, `threaded` launches give each CUDA
// thread a fiber (a ucontext with its own stack) on the launching thread: a fiber runs until it waits
// at a barrier (__syncthreads over the block; the per-warp barrier of shuffles and whatever a test
// builds on emu_warp(); the cluster barrier) or returns, then the lowest-numbered thread that can run
// goes on (the highest in every other block: run_fibers). So threads run as far apart as the barriers
// allow, and a missing barrier shows as a read of a value not yet written (NaN) or already replaced.
// A run is deterministic, a barrier that can never complete is reported as a deadlock instead of
// hanging, and a barrier is a swapcontext on one OS thread (OS threads on std::barrier spent most of
// the emulation in futex waits and scheduling). Launches of kernels without barriers or warp
// collectives may run the threads one after another. Shared memory (emu_smem()) and, by the tests'
// convention, outputs start as NaN, so a read before a write shows up. What this cannot check: speed, the
// hardware's own behaviour (instruction fragment layouts are taken from the PTX ISA), and races that
// sequential blocks or this fixed interleaving hide.
#pragma once

#include <ucontext.h>

#include <atomic>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <limits>
#include <memory>
#include <vector>

struct dim3 {
  unsigned x = 1, y = 1, z = 1;
  dim3(unsigned a = 1, unsigned b = 1, unsigned c = 1) : x(a), y(b), z(c) {}
};
struct alignas(16) float4 {
  float x, y, z, w;
};

inline thread_local dim3 threadIdx, blockIdx;
inline dim3 gridDim, blockDim;

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __restrict__
#define __shared__ static  // blocks run one at a time, so a static is one block's shared variable

namespace fovea::emu {

inline constexpr int kBlock = 256;  // kernels/common.cuh's block size, which the device code assumes
// CUDA's isfinite, found before any global one by the device code included in this namespace.
inline bool isfinite(float v) { return std::isfinite(v); }
inline bool isfinite(double v) { return std::isfinite(v); }

// Programmatic dependent launch (kernels/common.cuh): launches run one after another here, so the
// wait and the trigger have nothing to do.
inline void pdl_wait() {}
inline void pdl_trigger() {}

struct Fiber;

// A barrier between fibers (below): arrive_and_wait suspends the calling fiber until `count` fibers
// have arrived; the last to arrive goes on at once, as with std::barrier.
class FiberBarrier {
 public:
  explicit FiberBarrier(std::ptrdiff_t count) : count_(count) {}
  void arrive_and_wait();

 private:
  std::ptrdiff_t count_, arrived_ = 0;
  std::vector<Fiber*> waiting_;
};

// A warp's exchange area, double-buffered: collective k of a lane uses buffer k % 2 (slot()), so one
// barrier per collective suffices. A lane writes buffer b again only in collective k + 2, after
// every lane has arrived at collective k + 1's barrier, so after every lane has read collective k's.
// (Every lane of a warp calls the same sequence of collectives, so the lanes agree on k % 2.)
struct Warp {
  FiberBarrier bar{32};
  float f[2][32];
  double d[2][32];
  std::uint32_t u[2][32][6];
  unsigned char next[32] = {};  // each lane's buffer for its next collective
  // The buffer for this lane's collective, which it advances.
  int slot(unsigned lane) {
    const int b = next[lane];
    next[lane] = static_cast<unsigned char>(b ^ 1);
    return b;
  }
};

struct State {
  FiberBarrier* block_barrier = nullptr;
  std::vector<float4> smem;
  std::size_t smem_bytes = 0;
};
// The running block's state: the one block of an ordinary launch, or this thread's block of a cluster
// (launch_clusters: its blocks run at once, each with its own shared memory).
inline thread_local State* t_block = nullptr;
inline State& state() {
  static State s;
  return t_block != nullptr ? *t_block : s;
}
inline thread_local Warp* t_warp = nullptr;
struct Cluster;
inline thread_local Cluster* t_cluster = nullptr;
inline thread_local unsigned t_rank = 0;

struct PendingCopy {  // a cp.async copy in flight (below)
  float* dst;
  float v[4];
  int n;
};
using CopyGroups = std::vector<std::vector<PendingCopy>>;

// One CUDA thread of a threaded launch: its context and stack, and the per-thread state that the
// scheduler installs in the thread-local variables above whenever the fiber resumes.
struct Fiber {
  ucontext_t context{};
  std::unique_ptr<char[]> stack;
  std::function<void()> body;
  bool done = false;
  std::size_t index = 0;  // in the launch's fibers
  dim3 thread, block;
  Warp* warp = nullptr;
  State* block_state = nullptr;  // nullptr: the launch's one block state
  Cluster* cluster = nullptr;
  unsigned rank = 0;
  CopyGroups copies = CopyGroups(1);
};
inline constexpr std::size_t kFiberStack = 256 * 1024;  // bytes; untouched pages cost nothing
// Stacks of finished fibers, reused by the next launch's (fewer mappings and page faults).
inline std::vector<std::unique_ptr<char[]>>& fiber_stack_pool() {
  static thread_local std::vector<std::unique_ptr<char[]>> pool;
  return pool;
}
// The fibers of a launch and which of them may run (a bit per fiber: not waiting, not done).
struct Scheduler {
  ucontext_t main{};
  Fiber* current = nullptr;
  std::vector<std::uint64_t> ready;
  void set_ready(std::size_t k, bool on) {
    if (on) ready[k / 64] |= std::uint64_t{1} << (k % 64);
    else ready[k / 64] &= ~(std::uint64_t{1} << (k % 64));
  }
  // The lowest (or highest) ready fiber, or -1.
  std::ptrdiff_t pick(bool highest) const {
    const std::size_t words = ready.size();
    for (std::size_t i = 0; i < words; ++i) {
      const std::size_t w = highest ? words - 1 - i : i;
      if (ready[w] != 0)
        return static_cast<std::ptrdiff_t>(64 * w) +
               (highest ? 63 - std::countl_zero(ready[w]) : std::countr_zero(ready[w]));
    }
    return -1;
  }
};
inline thread_local Scheduler* t_scheduler = nullptr;
inline Warp& emu_warp() { return *t_warp; }

[[noreturn]] inline void die(const char* what) {
  std::fprintf(stderr, "EMULATION FAILURE: %s (block %u,%u,%u thread %u)\n", what, blockIdx.x, blockIdx.y,
               blockIdx.z, threadIdx.x);
  std::abort();
}

// The block's dynamic shared memory (NaN at the start of every block).
inline float* emu_smem() { return reinterpret_cast<float*>(state().smem.data()); }
inline void check_smem(const void* p, std::size_t bytes) {
  const auto* c = static_cast<const char*>(p);
  const auto* s = reinterpret_cast<const char*>(state().smem.data());
  if (c < s || c + bytes > s + state().smem_bytes) die("shared-memory access out of bounds");
}

// cp.async (kernels/common.cuh): a thread's copies land only when its cp_wait retires their group.
// A launch whose kernel copies asynchronously calls cp_begin() before and cp_check_drained() after
// each thread's run.
// This thread's copies in flight, grouped by cp_commit (the fiber's when one runs).
inline CopyGroups& copy_groups() {
  static thread_local CopyGroups own(1);
  return t_scheduler != nullptr && t_scheduler->current != nullptr ? t_scheduler->current->copies : own;
}
inline void cp_async16(float* dst, const float* src, bool valid) {
  check_smem(dst, 16);
  if (reinterpret_cast<std::uintptr_t>(dst) & 15) die("cp.async 16: misaligned shared address");
  if (valid && (reinterpret_cast<std::uintptr_t>(src) & 15)) die("cp.async 16: misaligned global address");
  PendingCopy c{dst, {0, 0, 0, 0}, 4};
  if (valid) std::memcpy(c.v, src, 16);
  copy_groups().back().push_back(c);
}
inline void cp_async4(float* dst, const float* src, bool valid) {
  check_smem(dst, 4);
  copy_groups().back().push_back(PendingCopy{dst, {valid ? *src : 0.0f, 0, 0, 0}, 1});
}
inline void cp_commit() { copy_groups().emplace_back(); }
template <int kPending>
void cp_wait() {
  // committed groups: all but the open last one; land all but the newest kPending of them
  CopyGroups& groups = copy_groups();
  const int committed = static_cast<int>(groups.size()) - 1;
  const int land = committed - kPending;
  for (int gi = 0; gi < land; ++gi)
    for (const PendingCopy& c : groups[gi]) std::memcpy(c.dst, c.v, sizeof(float) * c.n);
  if (land > 0) groups.erase(groups.begin(), groups.begin() + land);
}
inline void cp_begin() { copy_groups().assign(1, {}); }
inline void cp_check_drained() {
  const CopyGroups& groups = copy_groups();
  if (groups.size() != 1 || !groups[0].empty()) die("cp.async copies left in flight at exit");
}

// The fiber that runs now goes back to the scheduler (run_fibers) until it is resumed.
inline void fiber_yield() {
  Fiber* f = t_scheduler->current;
  if (swapcontext(&f->context, &t_scheduler->main) != 0) die("swapcontext failed");
}
inline void FiberBarrier::arrive_and_wait() {
  if (t_scheduler == nullptr || t_scheduler->current == nullptr) die("a barrier outside a threaded launch");
  if (++arrived_ == count_) {  // the last to arrive releases the others and goes on
    arrived_ = 0;
    for (Fiber* f : waiting_) t_scheduler->set_ready(f->index, true);
    waiting_.clear();
    return;
  }
  Fiber* f = t_scheduler->current;
  t_scheduler->set_ready(f->index, false);
  waiting_.push_back(f);
  fiber_yield();
}
inline void fiber_entry() {
  Fiber* f = t_scheduler->current;
  f->body();
  f->done = true;
}  // returns to uc_link: the scheduler's context as saved by its last switch into this fiber

// Gives fiber f its stack and a context that starts in fiber_entry and returns to the scheduler.
// (getcontext, too, returns twice.)
[[gnu::noinline]] inline void fiber_prepare(Fiber& f, Scheduler& scheduler) {
  auto& pool = fiber_stack_pool();
  if (pool.empty()) {
    f.stack.reset(new char[kFiberStack]);
  } else {
    f.stack = std::move(pool.back());
    pool.pop_back();
  }
  if (getcontext(&f.context) != 0) die("getcontext failed");
  f.context.uc_stack.ss_sp = f.stack.get();
  f.context.uc_stack.ss_size = kFiberStack;
  f.context.uc_link = &scheduler.main;
  makecontext(&f.context, fiber_entry, 0);
}

// Runs fiber f until it waits or returns. A function of its own: swapcontext returns twice, as setjmp
// does, and nothing of the caller's may live across it.
[[gnu::noinline]] inline void fiber_resume(Scheduler& scheduler, Fiber* f) {
  scheduler.current = f;
  if (swapcontext(&scheduler.main, &f->context) != 0) die("swapcontext failed");
  scheduler.current = nullptr;
}

// Runs the fibers to completion, always resuming the lowest-numbered fiber that can run (the highest
// where `highest`), until it waits or returns. So threads run as far ahead of one another as the
// barriers allow (a warp runs its whole phase before the next warp starts), which turns a missing
// barrier into a read of a value not yet written, or already overwritten; launches alternate the
// direction between blocks. Dies when every unfinished fiber waits (a barrier that cannot complete).
inline void run_fibers(std::vector<std::unique_ptr<Fiber>>& fibers, bool highest) {
  Scheduler scheduler;
  Scheduler* outer = t_scheduler;
  t_scheduler = &scheduler;
  const std::size_t n = fibers.size();
  scheduler.ready.assign((n + 63) / 64, 0);
  for (std::size_t k = 0; k < n; ++k) {
    fibers[k]->index = k;
    fiber_prepare(*fibers[k], scheduler);
    scheduler.set_ready(k, true);
  }
  std::size_t done = 0;
  while (done < n) {
    const std::ptrdiff_t k = scheduler.pick(highest);
    if (k < 0) die("deadlock: every unfinished thread waits at a barrier that cannot complete");
    Fiber* f = fibers[static_cast<std::size_t>(k)].get();
    threadIdx = f->thread;
    blockIdx = f->block;
    t_warp = f->warp;
    t_block = f->block_state;
    t_cluster = f->cluster;
    t_rank = f->rank;
    fiber_resume(scheduler, f);
    if (f->done) {
      scheduler.set_ready(f->index, false);
      fiber_stack_pool().push_back(std::move(f->stack));
      ++done;
    }
  }
  t_block = nullptr;
  t_cluster = nullptr;
  t_warp = nullptr;
  t_scheduler = outer;
}

// A fiber for thread t of block `block`, running body, with its warp's exchange area, its block's
// state (nullptr: the launch's one block state) and, in a cluster launch, its cluster and rank.
inline std::unique_ptr<Fiber> make_fiber(unsigned t, dim3 block, Warp* warp, std::function<void()> body,
                                         State* block_state = nullptr, Cluster* cluster = nullptr,
                                         unsigned rank = 0) {
  auto f = std::make_unique<Fiber>();
  f->thread = dim3(t);
  f->block = block;
  f->warp = warp;
  f->body = std::move(body);
  f->block_state = block_state;
  f->cluster = cluster;
  f->rank = rank;
  return f;
}

// Runs fn as every thread of every block of grid (blocks in x, then y, then z order) with `threads`
// threads per block and smem_bytes of dynamic shared memory. threaded = false runs a block's threads
// one after another (kernels without __syncthreads or warp collectives only). per_thread_exit runs in
// each thread after fn (checks of per-thread state).
inline void launch(dim3 grid, unsigned threads, std::size_t smem_bytes, bool threaded,
                   const std::function<void()>& fn, const std::function<void()>& per_thread_exit = {}) {
  gridDim = grid;
  blockDim = dim3(threads);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  for (unsigned bz = 0; bz < grid.z; ++bz)
    for (unsigned by = 0; by < grid.y; ++by)
      for (unsigned bx = 0; bx < grid.x; ++bx) {
        State& st = state();
        st.smem.assign(smem_bytes / 16 + 1, float4{nan, nan, nan, nan});
        st.smem_bytes = smem_bytes;
        if (!threaded) {
          for (unsigned t = 0; t < threads; ++t) {
            blockIdx = dim3(bx, by, bz);
            threadIdx = dim3(t);
            fn();
            if (per_thread_exit) per_thread_exit();
          }
          continue;
        }
        FiberBarrier bar(static_cast<std::ptrdiff_t>(threads));
        st.block_barrier = &bar;
        std::vector<std::unique_ptr<Warp>> warps;
        for (unsigned w = 0; w < (threads + 31) / 32; ++w) warps.push_back(std::make_unique<Warp>());
        std::vector<std::unique_ptr<Fiber>> fibers;
        for (unsigned t = 0; t < threads; ++t)
          fibers.push_back(make_fiber(t, dim3(bx, by, bz), warps[t / 32].get(), [&] {
            fn();
            if (per_thread_exit) per_thread_exit();
          }));
        run_fibers(fibers, ((bx + by + bz) & 1) != 0);
        st.block_barrier = nullptr;
      }
}

// A cluster of blocks run at once by launch_clusters: their states, a barrier over all their threads,
// and which blocks have exited (their shared memory is then NaN and may no longer be mapped).
struct Cluster {
  std::vector<std::unique_ptr<State>> blocks;
  std::unique_ptr<FiberBarrier> bar;
  std::vector<unsigned> exited_threads;
  unsigned threads = 0;
  bool exited(unsigned rank) const { return exited_threads[rank] == threads; }
};

// Runs fn as every thread of every block of grid, in clusters of (1, cluster_y, 1) blocks (grid.y a
// multiple of cluster_y): the clusters one after another, the blocks of a cluster at once, every
// thread a fiber, each block with its own shared memory (NaN at the start, and again once
// every thread of the block has returned). Kernels run this way may not declare static __shared__
// variables (the emulator's __shared__ is one static for all blocks).
inline void launch_clusters(dim3 grid, unsigned cluster_y, unsigned threads, std::size_t smem_bytes,
                            const std::function<void()>& fn,
                            const std::function<void()>& per_thread_exit = {}) {
  if (cluster_y == 0 || grid.y % cluster_y != 0) die("launch_clusters: grid.y not a multiple of the cluster");
  gridDim = grid;
  blockDim = dim3(threads);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  for (unsigned bz = 0; bz < grid.z; ++bz)
    for (unsigned cy = 0; cy < grid.y; cy += cluster_y)
      for (unsigned bx = 0; bx < grid.x; ++bx) {
        Cluster cluster;
        cluster.threads = threads;
        cluster.bar = std::make_unique<FiberBarrier>(static_cast<std::ptrdiff_t>(threads * cluster_y));
        std::vector<std::unique_ptr<FiberBarrier>> block_bars;
        std::vector<std::unique_ptr<Warp>> warps;
        for (unsigned r = 0; r < cluster_y; ++r) {
          auto st = std::make_unique<State>();
          st->smem.assign(smem_bytes / 16 + 1, float4{nan, nan, nan, nan});
          st->smem_bytes = smem_bytes;
          block_bars.push_back(std::make_unique<FiberBarrier>(static_cast<std::ptrdiff_t>(threads)));
          st->block_barrier = block_bars.back().get();
          cluster.blocks.push_back(std::move(st));
          cluster.exited_threads.push_back(0u);
          for (unsigned w = 0; w < (threads + 31) / 32; ++w) warps.push_back(std::make_unique<Warp>());
        }
        const unsigned warps_per_block = (threads + 31) / 32;
        std::vector<std::unique_ptr<Fiber>> fibers;
        for (unsigned r = 0; r < cluster_y; ++r)
          for (unsigned t = 0; t < threads; ++t)
            fibers.push_back(make_fiber(
                t, dim3(bx, cy + r, bz), warps[r * warps_per_block + t / 32].get(),
                [&, r] {
                  fn();
                  if (per_thread_exit) per_thread_exit();
                  if (++cluster.exited_threads[r] == threads)  // the block's last thread
                    for (float4& v : cluster.blocks[r]->smem) v = float4{nan, nan, nan, nan};
                },
                cluster.blocks[r].get(), &cluster, r));
        run_fibers(fibers, ((bx + cy + bz) & 1) != 0);
      }
}

}  // namespace fovea::emu

// kernels/common.cuh's cluster primitives, for kernels run by launch_clusters.
inline void cluster_sync() {
  if (fovea::emu::t_cluster == nullptr) fovea::emu::die("cluster_sync outside a cluster launch");
  fovea::emu::t_cluster->bar->arrive_and_wait();
}
template <class T>
const T* cluster_peer(const T* p, unsigned rank) {
  using namespace fovea::emu;
  if (t_cluster == nullptr) die("cluster_peer outside a cluster launch");
  if (rank >= t_cluster->blocks.size()) die("cluster_peer: rank outside the cluster");
  if (t_cluster->exited(rank)) die("distributed shared memory of a block that has exited");
  check_smem(p, sizeof(T));
  const auto offset = reinterpret_cast<const char*>(p) - reinterpret_cast<const char*>(state().smem.data());
  return reinterpret_cast<const T*>(reinterpret_cast<const char*>(t_cluster->blocks[rank]->smem.data()) +
                                    offset);
}

inline void __syncthreads() {
  if (fovea::emu::state().block_barrier == nullptr) fovea::emu::die("__syncthreads in an unthreaded launch");
  fovea::emu::state().block_barrier->arrive_and_wait();
}
// A warp shuffle: every lane publishes v, then reads the value of lane source(lane), or keeps its own
// when the source is outside the warp (as __shfl_down_sync does past the last lane).
template <class T, class Source>
T emu_shuffle(T v, Source source) {
  static_assert(sizeof(T) == 4 || sizeof(T) == 8);
  fovea::emu::Warp& w = fovea::emu::emu_warp();
  const unsigned lane = threadIdx.x & 31, from = source(lane);
  const int b = w.slot(lane);
  T* slot;
  if constexpr (sizeof(T) == 8) slot = reinterpret_cast<T*>(w.d[b]);
  else slot = reinterpret_cast<T*>(w.f[b]);
  slot[lane] = v;
  w.bar.arrive_and_wait();
  return from < 32 ? slot[from] : v;
}
template <class T>
T emu_shfl_xor(T v, int off) {
  return emu_shuffle(v, [off](unsigned lane) { return lane ^ static_cast<unsigned>(off); });
}
template <class T>
T emu_shfl_down(T v, unsigned off) {
  return emu_shuffle(v, [off](unsigned lane) { return lane + off; });
}
inline float __shfl_xor_sync(unsigned, float v, int off) { return emu_shfl_xor(v, off); }
inline double __shfl_xor_sync(unsigned, double v, int off) { return emu_shfl_xor(v, off); }
inline int __shfl_xor_sync(unsigned, int v, int off) { return emu_shfl_xor(v, off); }
inline float __shfl_down_sync(unsigned, float v, unsigned off) { return emu_shfl_down(v, off); }
inline double __shfl_down_sync(unsigned, double v, unsigned off) { return emu_shfl_down(v, off); }
inline float4 make_float4(float x, float y, float z, float w) { return float4{x, y, z, w}; }
// Round-to-nearest multiply and add, never fused: plain operators on the host, which is built without
// fused multiply-adds.
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __uint_as_float(std::uint32_t u) { return std::bit_cast<float>(u); }
inline std::uint32_t __float_as_uint(float f) { return std::bit_cast<std::uint32_t>(f); }
template <class T>
T __ldg(const T* p) {
  return *p;
}
template <class T>
T __ldcg(const T* p) {
  return *p;
}
inline void __threadfence() { std::atomic_thread_fence(std::memory_order_seq_cst); }
inline unsigned atomicAdd(unsigned* p, unsigned v) { return __atomic_fetch_add(p, v, __ATOMIC_SEQ_CST); }
inline unsigned long long atomicAdd(unsigned long long* p, unsigned long long v) {
  return __atomic_fetch_add(p, v, __ATOMIC_SEQ_CST);
}
inline unsigned long long atomicMin(unsigned long long* p, unsigned long long v) {
  unsigned long long old = __atomic_load_n(p, __ATOMIC_SEQ_CST);
  while (v < old && !__atomic_compare_exchange_n(p, &old, v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) {
  }
  return old;
}
