// fovea/cpu/gemm.hpp: single-precision matrix multiply on the host: OpenBLAS (cblas_sgemm) when the
// build defines FOVEA_WITH_BLAS, otherwise a cache-blocked loop, so g++ alone still works.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <mutex>
#include <string>
#include <vector>

#include "fovea/core/error.hpp"
#include "fovea/core/parallel.hpp"
#include "fovea/core/tensor.hpp"

#if defined(FOVEA_WITH_BLAS) && FOVEA_WITH_BLAS
#include <cblas.h>
#define FOVEA_CPU_GEMM_BACKEND "cblas"
#if defined(__linux__)
#include <unistd.h>  // execv
#endif
// OpenBLAS's thread setting; weak, since other CBLAS libraries lack it (then the pointers are null).
extern "C" void openblas_set_num_threads(int) __attribute__((weak));
extern "C" int openblas_get_num_threads(void) __attribute__((weak));
// OpenBLAS's build and the kernel it picked for this CPU at load time (OPENBLAS_CORETYPE overrides).
extern "C" char* openblas_get_config(void) __attribute__((weak));
extern "C" char* openblas_get_corename(void) __attribute__((weak));
#else
#define FOVEA_CPU_GEMM_BACKEND "fovea blocked loop"
#endif

namespace fovea::cpu {

// Which implementation cpu::gemm uses: "cblas" or "fovea blocked loop".
inline const char* gemm_backend() { return FOVEA_CPU_GEMM_BACKEND; }

// The CPU GEMM in detail: "OpenBLAS <config>, kernel <core>" when the CBLAS is OpenBLAS, else
// gemm_backend(). OpenBLAS picks its kernel by CPU at load time, and kernels sum in different orders:
// a CPU run is bitwise reproducible on another machine only with the same kernel (pin it with
// OPENBLAS_CORETYPE=<core>, a kernel that CPU can run). Recorded in every run's environment.json.
inline std::string gemm_kernel() {
#if defined(FOVEA_WITH_BLAS) && FOVEA_WITH_BLAS
  if (openblas_get_corename != nullptr) {
    const char* config = openblas_get_config != nullptr ? openblas_get_config() : nullptr;
    const char* core = openblas_get_corename();
    return std::string("OpenBLAS ") + (config != nullptr ? config : "") + ", kernel " +
           (core != nullptr ? core : "unknown");
  }
#endif
  return gemm_backend();
}

// For programs, first thing in main: OpenBLAS's idle worker threads spin (sched_yield) for 2^28
// cycles, about a tenth of a second, after each multithreaded call before they sleep. fovea's own
// thread pool runs its image-parallel loops between such calls, so on a laptop's few cores the
// spinning workers take cores from it: a fifth of the CPU main job's pretraining time went to the
// scheduler (docs/decisions.md). OpenBLAS reads OPENBLAS_THREAD_TIMEOUT (log2 of the spin in cycles)
// only when it loads, so this sets it to 12 (2^12 cycles) and starts the program again with the same
// arguments (execv of /proc/self/exe: the same process id, so signals and waiting parents see no
// difference). It returns at once, doing nothing, when the variable is already set (a value the user
// sets wins, and the restarted program finds it set), when the BLAS is not OpenBLAS, off Linux, or
// when the restart fails. The spin does not touch the arithmetic: results are the same bits.
inline void restart_with_short_blas_spin(char** argv) {
#if defined(FOVEA_WITH_BLAS) && FOVEA_WITH_BLAS && defined(__linux__)
  if (argv == nullptr || openblas_get_config == nullptr || std::getenv("OPENBLAS_THREAD_TIMEOUT") != nullptr)
    return;
  if (setenv("OPENBLAS_THREAD_TIMEOUT", "12", 1) != 0) return;
  execv("/proc/self/exe", argv);  // returns only on failure: then run as we are
#else
  (void)argv;
#endif
}

}  // namespace fovea::cpu

namespace fovea::detail {

// While a parallel loop whose items call gemm runs on several threads, OpenBLAS runs single-threaded:
// its own threads would compete with the loop's. (OpenBLAS shares a product among its threads by
// blocks of C's rows and columns, so a single-threaded call gives the same bits; the convolution
// tests compare both paths bitwise.) Nested and concurrent scopes count; the last to end restores
// the setting.
class SerialBlasScope {
 public:
  SerialBlasScope() {
#if defined(FOVEA_WITH_BLAS) && FOVEA_WITH_BLAS
    if (openblas_set_num_threads == nullptr || openblas_get_num_threads == nullptr) return;
    std::lock_guard<std::mutex> lock(state().mutex);
    if (state().depth++ == 0) {
      state().saved = openblas_get_num_threads();
      openblas_set_num_threads(1);
    }
    active_ = true;
#endif
  }
  ~SerialBlasScope() {
#if defined(FOVEA_WITH_BLAS) && FOVEA_WITH_BLAS
    if (!active_) return;
    std::lock_guard<std::mutex> lock(state().mutex);
    if (--state().depth == 0) openblas_set_num_threads(state().saved);
#endif
  }
  SerialBlasScope(const SerialBlasScope&) = delete;
  SerialBlasScope& operator=(const SerialBlasScope&) = delete;

 private:
  struct State {
    std::mutex mutex;
    int depth = 0, saved = 1;
  };
  static State& state() {
    static State s;
    return s;
  }
  bool active_ = false;
};

// Whether an optional operand (a bias) is given: a default CView() (a null scalar view) and a view
// of 0 elements both mean "none".
inline bool is_present(CView v) { return v.data() != nullptr && v.numel() > 0; }

// C (M, N) = alpha * op(A) (M, K) * op(B) (K, N) + beta * C, row-major, by panels: a (kc, nc) panel
// of op(B) and an (mc, kc) panel of alpha * op(A) are packed contiguous, then four rows of C are
// updated per pass so each loaded row of B feeds four multiply-adds.
inline void gemm_blocked(bool trans_a, bool trans_b, std::int64_t M, std::int64_t N, std::int64_t K,
                         float alpha, const float* A, std::int64_t lda, const float* B,
                         std::int64_t ldb, float beta, float* C, std::int64_t ldc) {
  constexpr std::int64_t kMc = 64, kKc = 256, kNc = 1024;
  for (std::int64_t i = 0; i < M; ++i) {
    float* c = C + i * ldc;
    if (beta == 0.0f) std::fill(c, c + N, 0.0f);  // C may hold NaN: never read it
    else if (beta != 1.0f)
      for (std::int64_t j = 0; j < N; ++j) c[j] *= beta;
  }
  if (alpha == 0.0f || K == 0) return;
  std::vector<float> bp(static_cast<std::size_t>(std::min(K, kKc) * std::min(N, kNc)));
  std::vector<float> ap(static_cast<std::size_t>(std::min(M, kMc) * std::min(K, kKc)));
  for (std::int64_t jc = 0; jc < N; jc += kNc) {
    const std::int64_t nc = std::min(kNc, N - jc);
    for (std::int64_t pc = 0; pc < K; pc += kKc) {
      const std::int64_t kc = std::min(kKc, K - pc);
      for (std::int64_t p = 0; p < kc; ++p)  // bp (kc, nc) = op(B)[pc.., jc..]
        for (std::int64_t j = 0; j < nc; ++j)
          bp[p * nc + j] = trans_b ? B[(jc + j) * ldb + pc + p] : B[(pc + p) * ldb + jc + j];
      for (std::int64_t ic = 0; ic < M; ic += kMc) {
        const std::int64_t mc = std::min(kMc, M - ic);
        for (std::int64_t i = 0; i < mc; ++i)  // ap (mc, kc) = alpha * op(A)[ic.., pc..]
          for (std::int64_t p = 0; p < kc; ++p)
            ap[i * kc + p] = alpha * (trans_a ? A[(pc + p) * lda + ic + i] : A[(ic + i) * lda + pc + p]);
        std::int64_t i = 0;
        for (; i + 4 <= mc; i += 4) {
          float* c0 = C + (ic + i) * ldc + jc;
          float* c1 = c0 + ldc;
          float* c2 = c1 + ldc;
          float* c3 = c2 + ldc;
          const float* a = ap.data() + i * kc;
          for (std::int64_t p = 0; p < kc; ++p) {
            const float a0 = a[p], a1 = a[kc + p], a2 = a[2 * kc + p], a3 = a[3 * kc + p];
            const float* b = bp.data() + p * nc;
            for (std::int64_t j = 0; j < nc; ++j) {
              const float bj = b[j];
              c0[j] += a0 * bj;
              c1[j] += a1 * bj;
              c2[j] += a2 * bj;
              c3[j] += a3 * bj;
            }
          }
        }
        for (; i < mc; ++i) {
          float* c0 = C + (ic + i) * ldc + jc;
          const float* a = ap.data() + i * kc;
          for (std::int64_t p = 0; p < kc; ++p) {
            const float a0 = a[p];
            const float* b = bp.data() + p * nc;
            for (std::int64_t j = 0; j < nc; ++j) c0[j] += a0 * b[j];
          }
        }
      }
    }
  }
}

}  // namespace fovea::detail

namespace fovea::cpu {

// gemm: C = alpha * op(A) * op(B) + beta * C, all row-major (cblas_sgemm with CblasRowMajor).
//   op(A) is (M, K): A is (M, K) with row stride lda >= K, or (K, M) with lda >= M when trans_a;
//   op(B) is (K, N): B is (K, N) with ldb >= N, or (N, K) with ldb >= K when trans_b;
//   C is (M, N) with ldc >= N and does not overlap A or B.
//   Ensures: beta == 0 overwrites C without reading it (NaN in C does not propagate). Sizes must
//            fit in int (the BLAS interface).
inline void gemm(bool trans_a, bool trans_b, std::int64_t M, std::int64_t N, std::int64_t K, float alpha,
                 const float* A, std::int64_t lda, const float* B, std::int64_t ldb, float beta, float* C,
                 std::int64_t ldc) {
  constexpr std::int64_t kIntMax = std::numeric_limits<int>::max();
  FOVEA_CHECK(M >= 0 && N >= 0 && K >= 0 && M <= kIntMax && N <= kIntMax && K <= kIntMax &&
                  lda <= kIntMax && ldb <= kIntMax && ldc <= kIntMax,
              "cpu::gemm: sizes M ", M, ", N ", N, ", K ", K, " out of the int range of BLAS");
  FOVEA_CHECK(lda >= std::max<std::int64_t>(1, trans_a ? M : K) &&
                  ldb >= std::max<std::int64_t>(1, trans_b ? K : N) && ldc >= std::max<std::int64_t>(1, N),
              "cpu::gemm: leading dimensions lda ", lda, ", ldb ", ldb, ", ldc ", ldc, " too small for M ",
              M, ", N ", N, ", K ", K);
  if (M == 0 || N == 0) return;
#if defined(FOVEA_WITH_BLAS) && FOVEA_WITH_BLAS
  cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans,
              static_cast<int>(M), static_cast<int>(N), static_cast<int>(K), alpha, A, static_cast<int>(lda),
              B, static_cast<int>(ldb), beta, C, static_cast<int>(ldc));
#else
  detail::gemm_blocked(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
#endif
}

// parallel_for over items that call gemm (a convolution's images): BLAS single-threaded meanwhile.
template <class Body>
void parallel_gemm_for(std::int64_t n, Body&& body) {
  if (n > 1 && cpu_threads() > 1 && !::fovea::detail::CpuPool::in_region()) {
    detail::SerialBlasScope serial;
    parallel_for(n, body);
  } else {
    parallel_for(n, body);
  }
}

}  // namespace fovea::cpu
