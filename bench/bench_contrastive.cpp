// bench/bench_contrastive.cpp: the fused NT-Xent and InfoNCE kernels (forward + backward) against the
// composition a framework would run (cuBLAS GEMM for the similarities, the softmax kernel, cuBLAS
// GEMMs for the gradient), timed in the same run, and against a roofline built from rates measured in
// this binary: max(FLOPs / cuBLAS sgemm rate, minimal bytes / device copy rate). CUDA only.
//
// FLOPs count the useful work: NT-Xent 4 M^2 D (M = 2N: the similarity GEMM and one gradient GEMM,
// since G = P + Pᵀ is symmetric), InfoNCE 4 N K D (similarities and dq; no queue gradient). The fused
// backward recomputes the similarities, so it executes 1.5x these FLOPs. The composition leaves out
// the O(M) and O(M D) steps (diagonal mask, picking the positive, the normalisation's backward),
// which favours it slightly. NT-Xent runs twice: the fp32 SIMT kernel and the TF32 tensor-core kernel
// (both against the same composition; the TF32 roofline is the fair bound for the latter).
// Every time is reported twice: per call with 20 calls queued back to back (the GPU's time, what a
// training step pays; the headline `ms` and speed-ups) and for one call into an idle GPU (latency,
// which at small N is mostly the host launching kernels: the fused pass launches 4 kernels, the
// composition 5).
#include "bench_common.hpp"
#include "fovea/ops/contrastive.hpp"

namespace fovea::bench {

// Registered from bench_main.cpp for cuda:0 when a device can be used (a no-op for the CPU).
void register_contrastive_benchmarks(Device device);

#if FOVEA_WITH_CUDA
namespace {

constexpr float kTau = 0.2f;

// FLOP/s of a square cuBLAS sgemm of side 8192 (TF32 off or on), measured once per process.
double gemm_rate(Device device, bool tf32) {
  static double rates[2] = {0.0, 0.0};
  double& r = rates[tf32 ? 1 : 0];
  if (r > 0.0) return r;
  constexpr std::int64_t n = 8192;
  Tensor a = make_input({n, n}, device, 1), b = make_input({n, n}, device, 2), c({n, n}, device);
  ScopedMathSettings scope({tf32, math_settings().deterministic});
  const double t = median_seconds(device, 5, [&] {
    cuda::gemm(device, false, false, n, n, n, 1.0f, a.data(), n, b.data(), n, 0.0f, c.data(), n);
  });
  r = 2.0 * n * n * n / t;
  benchmark::AddCustomContext(tf32 ? "cuda_sgemm_tf32_TFLOPs" : "cuda_sgemm_fp32_TFLOPs", std::to_string(r * 1e-12));
  return r;
}

// Device-to-device copy rate in bytes per second (read + write) of 64 Mi floats, measured once.
double copy_rate(Device device) {
  static double r = 0.0;
  if (r > 0.0) return r;
  const double reference = copy_gbps(device, kCudaElements);
  if (reference > 0.0) return r = reference * 1e9;
  Tensor src = make_input({kCudaElements}, device, 1), dst({kCudaElements}, device);
  r = 2 * float_bytes(kCudaElements) / median_seconds(device, 10, [&] { copy(src, dst); });
  return r;
}

struct Work {
  double flops = 0.0;  // useful FLOPs of forward + backward
  double bytes = 0.0;  // minimal device-memory traffic of forward + backward
};

// Times `fused` in the benchmark loop (batches of kPipelinedCalls back-to-back calls, the iteration
// time is per call) and `composition` (fp32 and TF32 GEMMs) the same way, and each of them as a
// single call into an idle GPU. Reports ms and composition_ms (pipelined), latency_ms and
// composition_latency_ms (single call), GFLOP/s, speedup_vs_composition (fp32, pipelined),
// latency_speedup_vs_composition, speedup_vs_tf32_composition, frac_of_roofline (fp32 GEMM rate) and
// frac_of_tf32_roofline (both pipelined).
template <class Fused, class Composition>
void time_against_composition(benchmark::State& state, Device device, Work work, Fused&& fused,
                              Composition&& composition) {
  CudaTimer timer(device);
  for (int i = 0; i < 2; ++i) fused();
  synchronize(device);
  std::vector<double> times;
  for (auto _ : state) {
    timer.start();
    for (int c = 0; c < kPipelinedCalls; ++c) fused();
    timer.stop();
    const double s = timer.seconds() / kPipelinedCalls;
    state.SetIterationTime(s);
    times.push_back(s);
  }
  const double t = median(std::move(times));
  const int reps = 10;
  const double t_latency = median_seconds(device, reps, fused);
  double t_fp32, t_fp32_latency, t_tf32;
  {
    ScopedMathSettings scope({false, math_settings().deterministic});
    t_fp32 = median_seconds(device, reps, composition, kPipelinedCalls);
    t_fp32_latency = median_seconds(device, reps, composition);
  }
  {
    ScopedMathSettings scope({true, math_settings().deterministic});
    t_tf32 = median_seconds(device, reps, composition, kPipelinedCalls);
  }
  const double mem_time = work.bytes / copy_rate(device);
  const double roof_fp32 = std::max(work.flops / gemm_rate(device, false), mem_time);
  const double roof_tf32 = std::max(work.flops / gemm_rate(device, true), mem_time);
  state.counters["ms"] = t * 1e3;
  state.counters["latency_ms"] = t_latency * 1e3;
  state.counters["GFLOP/s"] = work.flops / t * 1e-9;
  state.counters["composition_ms"] = t_fp32 * 1e3;
  state.counters["composition_latency_ms"] = t_fp32_latency * 1e3;
  state.counters["speedup_vs_composition"] = t_fp32 / t;
  state.counters["latency_speedup_vs_composition"] = t_fp32_latency / t_latency;
  state.counters["speedup_vs_tf32_composition"] = t_tf32 / t;
  state.counters["frac_of_roofline"] = roof_fp32 / t;
  state.counters["frac_of_tf32_roofline"] = roof_tf32 / t;
}

// NT-Xent with the fp32 SIMT kernel (nt_xent_fwd_bwd) or the TF32 tensor-core kernel
// (nt_xent_fwd_bwd_tc: the default plan, tc_blocks = 0 = auto; counter tensor_cores = 1 when it really
// ran, 0 when it fell back), the latter also with one and two blocks per SM forced
// (nt_xent_fwd_bwd_tc_1block, _2blocks: tc_blocks = 1, 2, cuda/contrastive.hpp) and with the symmetric
// forward (nt_xent_fwd_bwd_tc_sym: symmetric with the automatic backward; counter tc_symmetric_forward)
// and with the backward finished in clusters (nt_xent_fwd_bwd_tc_cluster: counter tc_cluster_finish =
// 1 where the plan really ran it, 0 where it fell back to the finish kernel).
void register_nt_xent(Device device, std::int64_t N, NtXentKernel kernel, int tc_blocks = 0,
                      bool symmetric = false, bool cluster = false) {
  const std::int64_t M = 2 * N, D = 128;
  const bool tc = kernel == NtXentKernel::tensor_core;
  const char* blocks_suffix = tc_blocks == 1 ? "_1block" : tc_blocks == 2 ? "_2blocks" : "";
  const std::string name = std::string(tc ? "nt_xent_fwd_bwd_tc" : "nt_xent_fwd_bwd") +
                           (tc ? blocks_suffix : "") + (tc && symmetric ? "_sym" : "") +
                           (tc && cluster ? "_cluster" : "") + "/cuda/N" + std::to_string(N);
  register_timed(name, [device, M, D, kernel, tc, tc_blocks, symmetric, cluster](benchmark::State& state) {
    Tensor z = make_input({M, D}, device, 1), zn({M, D}, device), lse({M}, device), loss(Shape{}, device),
           dz({M, D}, device);
    Tensor s({M, M}, device), dzhat({M, D}, device);  // the composition's similarity matrix
    const Work work{4.0 * M * M * D, float_bytes(6 * M * D)};
    const float c = 1.0f / (static_cast<float>(M) * kTau);
    state.SetLabel(std::string(tc ? "TF32 tensor cores" : "fp32 SIMT") +
                   ", M=2N rows, D=128, tau 0.2; composition: sgemm + softmax + 2 sgemm");
    state.counters["tensor_cores"] = tc && cuda::nt_xent_tensor_cores_supported(D, device.index()) ? 1.0 : 0.0;
    state.counters["tc_blocks_setting"] = tc ? tc_blocks : 0;
    ScopedNtXentKernel scoped_kernel(kernel);
    ScopedValue<int> scoped_blocks(cuda::nt_xent_tc_blocks_per_sm(), tc_blocks);
    ScopedValue<cuda::NtXentForwardTiles> scoped_forward(
        cuda::nt_xent_tc_forward_tiles(),
        symmetric ? cuda::NtXentForwardTiles::symmetric : cuda::NtXentForwardTiles::split);
    state.counters["tc_symmetric_forward"] = tc && symmetric ? 1 : 0;
    ScopedValue<cuda::NtXentBackwardFinish> scoped_finish(
        cuda::nt_xent_tc_backward_finish(),
        cluster ? cuda::NtXentBackwardFinish::cluster : cuda::NtXentBackwardFinish::kernel);
    state.counters["tc_cluster_finish"] =
        tc && cuda::nt_xent_tc_backward_in_clusters(M, D, device.index()) ? 1.0 : 0.0;
    time_against_composition(
        state, device, work,
        [&] {
          ScopedMathSettings tf32({true, math_settings().deterministic});  // the tensor-core kernel needs TF32
          nt_xent_forward(z, kTau, loss, lse, zn);
          nt_xent_backward(z, zn, lse, kTau, 1.0f, dz);
        },
        [&] {
          l2_normalize_rows(z, zn);
          cuda::gemm(device, false, true, M, M, D, 1.0f / kTau, zn.data(), D, zn.data(), D, 0.0f, s.data(), M);
          softmax_forward(s, s);
          cuda::gemm(device, false, false, M, D, M, c, s.data(), M, zn.data(), D, 0.0f, dzhat.data(), D);
          cuda::gemm(device, true, false, M, D, M, c, s.data(), M, zn.data(), D, 1.0f, dzhat.data(), D);
        });
  });
}

void register_infonce(Device device, std::int64_t N, std::int64_t K) {
  const std::int64_t D = 128;
  register_timed("infonce_fwd_bwd/cuda/N" + std::to_string(N) + "_K" + std::to_string(K),
                 [device, N, K, D](benchmark::State& state) {
                   Tensor q = make_input({N, D}, device, 1), k = make_input({N, D}, device, 2);
                   Tensor raw = make_input({K, D}, device, 3), queue({K, D}, device);
                   l2_normalize_rows(raw, queue);
                   Tensor qn({N, D}, device), kn({N, D}, device), lse({N}, device), loss(Shape{}, device),
                       dq({N, D}, device);
                   Tensor logits({N, K}, device), dqhat({N, D}, device);
                   const Work work{4.0 * N * K * D, float_bytes(2 * K * D + 8 * N * D)};
                   const float c = 1.0f / (static_cast<float>(N) * kTau);
                   state.SetLabel("D=128, tau 0.2; composition: sgemm + softmax + sgemm");
                   time_against_composition(
                       state, device, work,
                       [&] {
                         infonce_forward(q, k, queue, kTau, loss, lse, qn, kn);
                         infonce_backward(q, qn, kn, queue, lse, kTau, 1.0f, dq);
                       },
                       [&] {
                         l2_normalize_rows(q, qn);
                         l2_normalize_rows(k, kn);
                         cuda::gemm(device, false, true, N, K, D, 1.0f / kTau, qn.data(), D, queue.data(), D, 0.0f,
                                    logits.data(), K);
                         softmax_forward(logits, logits);
                         cuda::gemm(device, false, false, N, D, K, c, logits.data(), K, queue.data(), D, 0.0f,
                                    dqhat.data(), D);
                       });
                 });
}

}  // namespace
#endif

void register_contrastive_benchmarks(Device device) {
  if (!device.is_cuda()) return;
#if FOVEA_WITH_CUDA
  for (const std::int64_t N : {256, 1024, 4096, 8192}) register_nt_xent(device, N, NtXentKernel::simt);
  // N = 2048 besides issue 4's sizes: where the automatic plan switches to two blocks per SM
  for (const int blocks : {0, 1, 2})
    for (const std::int64_t N : {256, 1024, 2048, 4096, 8192})
      register_nt_xent(device, N, NtXentKernel::tensor_core, blocks);
  for (const std::int64_t N : {256, 1024, 2048, 4096, 8192})
    register_nt_xent(device, N, NtXentKernel::tensor_core, 0, true);
  for (const std::int64_t N : {256, 1024, 2048, 4096, 8192})
    register_nt_xent(device, N, NtXentKernel::tensor_core, 0, false, true);
  register_infonce(device, 256, 65536);
  register_timed("sgemm_rate/cuda/8192", [device](benchmark::State& state) {
    for (auto _ : state) state.SetIterationTime(1e-3);
    state.counters["fp32_TFLOP/s"] = gemm_rate(device, false) * 1e-12;
    state.counters["tf32_TFLOP/s"] = gemm_rate(device, true) * 1e-12;
  })->Iterations(1);
#endif
}

}  // namespace fovea::bench
