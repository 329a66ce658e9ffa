// fovea/cpu/conv_direct.hpp: "same" stride-1 convolutions on the host without im2col or a GEMM.
//
// A convolution is "same" here when the stride and dilation are 1, there is one channel group, the
// kernel is R x S with R and S odd and more than one tap, and the padding is (R - 1) / 2 by
// (S - 1) / 2: the output has the input's size. ResNet's 3x3 body convolutions are all of this kind,
// and on small images with few channels (the CPU main job's 16 to 64 channels at 64 to 16 pixels)
// im2col, OpenBLAS's packing of the unfolded matrix and col2im cost as much as the multiply-adds
// (docs/benchmarks.md). The direct kernel reads the image itself:
//
// - One image at a time. Each input channel is copied into a plane of (H + R - 1) x (W + S - 1) =
//   Hp x Wp floats with a zero border. In that plane output pixel (oh, ow) reads tap (r, s) at flat
//   index (oh * Wp + ow) + (r * Wp + s): one constant offset per tap. The kernel therefore computes
//   an output for every flat index j in [0, H * Wp) (the S - 1 indices past each row's W pixels are
//   computed and dropped).
// - A tile of KB output channels by TW consecutive indices j stays in vector registers while the
//   loop runs over the input channels and taps: per tap, TW / lanes unaligned loads of the plane and
//   KB weight broadcasts feed KB * TW / lanes multiply-adds. The tile is then stored, and the rows'
//   first W values are copied to the output with the bias.
// - Each output is one chain of multiply-adds over (c, r, s) in that order, in float (fused where the
//   code is compiled for FMA). The AVX-512 and AVX2 + FMA variants are therefore bitwise equal; the
//   generic variant (the compiler's baseline vectors: SSE2 on x86-64, NEON on AArch64) fuses only
//   where the baseline has FMA.
// - The weight gradient with respect to the input of a same convolution is the same convolution of
//   the output gradient with the kernel flipped in both axes and the channel axes swapped, so
//   backward_data runs the same kernel with the weights packed that way.
//
// The variant is chosen at run time from the CPU (__builtin_cpu_supports), so one binary runs on any
// x86-64. Whether the CPU twin uses this path (docs/ops-conv.md): FOVEA_CPU_CONV=auto (default: where
// it was measured faster than im2col + OpenBLAS, conv_direct_chosen), gemm (never) or direct (every
// same convolution, on any CPU); set_cpu_conv_path changes it for the process.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "fovea/core/env.hpp"
#include "fovea/core/error.hpp"
#include "fovea/core/parallel.hpp"

#if (defined(__GNUC__) || defined(__clang__)) && (defined(__x86_64__) || defined(__i386__))
#define FOVEA_CONV_DIRECT_X86 1
#else
#define FOVEA_CONV_DIRECT_X86 0
#endif

namespace fovea {

// How the CPU twin computes same convolutions (see above); FOVEA_CPU_CONV sets the starting value.
enum class CpuConvPath { automatic, gemm, direct };

namespace detail {

inline std::atomic<CpuConvPath>& cpu_conv_path_setting() {
  static std::atomic<CpuConvPath> path{env_choice<CpuConvPath>(
      "FOVEA_CPU_CONV",
      {{"auto", CpuConvPath::automatic}, {"gemm", CpuConvPath::gemm}, {"direct", CpuConvPath::direct}})};
  return path;
}

// The instruction sets of the direct kernel's variants, widest last.
enum class ConvDirectIsa { generic, avx2, avx512 };

inline const char* conv_direct_isa_name(ConvDirectIsa isa) {
  switch (isa) {
    case ConvDirectIsa::avx512: return "AVX-512";
    case ConvDirectIsa::avx2: return "AVX2 + FMA";
    case ConvDirectIsa::generic: break;
  }
  return "baseline vectors";
}

// The widest variant this CPU runs.
inline ConvDirectIsa conv_direct_best_isa() {
#if FOVEA_CONV_DIRECT_X86
  static const ConvDirectIsa best = [] {
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) return ConvDirectIsa::avx512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return ConvDirectIsa::avx2;
    return ConvDirectIsa::generic;
  }();
  return best;
#else
  return ConvDirectIsa::generic;
#endif
}

inline bool conv_direct_supported(ConvDirectIsa isa) {
  return static_cast<int>(isa) <= static_cast<int>(conv_direct_best_isa());
}

// Where the automatic choice takes the direct kernel: at least kConvDirectMinPixels output pixels
// per channel, at least kConvDirectMinOut output channels, and at most conv_direct_max_in(isa)
// input channels. Measured against OpenBLAS 0.3.21 on a 2-core Xeon (its SkylakeX kernel, and its
// Haswell kernel for the AVX2 comparison) with 2 threads, per convolution of a batch
// (docs/benchmarks.md):
// - Small images: the dropped columns and the part-filled last tile take a growing share (an 8 x 8
//   image computes 80 or 96 indices for 64 pixels), while a GEMM reducing over many channels runs
//   near its peak. 16 x 16 with 64 channels was a tie (AVX-512: 1.08x forward); 8 x 8, 0.84x.
// - Many input channels: the GEMM's packing and im2col cost less per multiply-add as the reduction
//   grows. AVX-512 beats the GEMM up to 64 input channels (1.3x at 56 x 56) and loses at 128 (0.9x);
//   the AVX2 variant, at 58 against 100 GFLOP/s, only up to 16 (1.3x at 64 x 64; 0.9x with 32).
// - Few output channels: a tile of KB channels is then mostly empty (0.7x for 64 -> 3 at 224 x 224).
inline constexpr std::int64_t kConvDirectMinPixels = 16 * 16;
inline constexpr std::int64_t kConvDirectMinOut = 4;
inline std::int64_t conv_direct_max_in(ConvDirectIsa isa) {
  switch (isa) {
    case ConvDirectIsa::avx512: return 64;
    case ConvDirectIsa::avx2: return 16;
    case ConvDirectIsa::generic: break;
  }
  return 0;  // the baseline variant (2.5x slower than AVX2) is never chosen automatically
}

// The sizes of one same convolution as the kernel sees it: `in` channels of H x W into `out`
// channels, an R x S kernel.
struct ConvDirectShape {
  std::int64_t in = 0, out = 0, H = 0, W = 0, R = 0, S = 0;
  std::int64_t Hp() const { return H + R - 1; }
  std::int64_t Wp() const { return W + S - 1; }
};

// The per-variant tiling: the vector type, KB output channels by NV vectors per tile.
#if defined(__GNUC__) || defined(__clang__)
typedef float ConvVec4 __attribute__((vector_size(16)));
typedef float ConvVec8 __attribute__((vector_size(32)));
typedef float ConvVec16 __attribute__((vector_size(64)));
// The same vectors at float alignment, for unaligned loads and stores. (A typedef's attributes are
// dropped when it is a template argument, so the kernels find these through ConvUnaligned<V>.)
template <class V>
struct ConvUnaligned;
template <>
struct ConvUnaligned<ConvVec4> {
  typedef float type __attribute__((vector_size(16), aligned(4), may_alias));
};
template <>
struct ConvUnaligned<ConvVec8> {
  typedef float type __attribute__((vector_size(32), aligned(4), may_alias));
};
template <>
struct ConvUnaligned<ConvVec16> {
  typedef float type __attribute__((vector_size(64), aligned(4), may_alias));
};
#define FOVEA_CONV_ALWAYS_INLINE __attribute__((always_inline)) inline
#endif

template <ConvDirectIsa Isa>
struct ConvDirectTiling;
template <>
struct ConvDirectTiling<ConvDirectIsa::generic> {
  static constexpr int KB = 4, NV = 2, lanes = 4;
};
template <>
struct ConvDirectTiling<ConvDirectIsa::avx2> {
  static constexpr int KB = 4, NV = 2, lanes = 8;
};
template <>
struct ConvDirectTiling<ConvDirectIsa::avx512> {
  static constexpr int KB = 8, NV = 3, lanes = 16;
};

// The floats of one tile's row and of the computed index range [0, span) rounded up to tiles.
inline std::int64_t conv_direct_span(const ConvDirectShape& s, std::int64_t tile) {
  const std::int64_t span = s.H * s.Wp();
  return (span + tile - 1) / tile * tile;
}
// The floats between two channels' planes: the plane, or more when the last tile's loads reach past it.
inline std::int64_t conv_direct_plane_stride(const ConvDirectShape& s, std::int64_t tile) {
  return std::max(s.Hp() * s.Wp(), conv_direct_span(s, tile) + (s.R - 1) * s.Wp() + (s.S - 1));
}

// Weights packed for tiles of kb output channels: (ceil(out / kb), in, R * S, kb), zero past `out`.
// w is the convolution's weight (K, C, R, S). Forward: out = K, in = C, taps as stored. Adjoint (the
// input gradient): out = C, in = K, and tap (r, s) of packed channel pair (c, k) is w[k, c, R-1-r, S-1-s].
inline std::vector<float> conv_direct_pack(const float* w, const ConvDirectShape& s, bool adjoint, int kb) {
  const std::int64_t taps = s.R * s.S, blocks = (s.out + kb - 1) / kb;
  std::vector<float> packed(static_cast<std::size_t>(blocks * s.in * taps * kb), 0.0f);
  for (std::int64_t o = 0; o < s.out; ++o)
    for (std::int64_t i = 0; i < s.in; ++i)
      for (std::int64_t t = 0; t < taps; ++t) {
        // adjoint: the stored weight is w[i, o, taps - 1 - t] (K = s.in, C = s.out)
        const float v = adjoint ? w[(i * s.out + o) * taps + (taps - 1 - t)] : w[(o * s.in + i) * taps + t];
        packed[static_cast<std::size_t>((((o / kb) * s.in + i) * taps + t) * kb + o % kb)] = v;
      }
  return packed;
}

#if defined(__GNUC__) || defined(__clang__)

// One tile: out[k][v * lanes + l] for k < KB, from the planes at `in` (plane stride cs) and packed
// weights `wp` (in, taps, KB); stores the first `valid` channels' rows `os` floats apart.
template <class V, int KB, int NV>
FOVEA_CONV_ALWAYS_INLINE void conv_direct_tile(const float* in, std::int64_t cs, const float* wp,
                                               const std::int64_t* offsets, std::int64_t taps,
                                               std::int64_t channels, float* out, std::int64_t os,
                                               int valid) {
  using VU = typename ConvUnaligned<V>::type;
  constexpr int L = sizeof(V) / sizeof(float);
  V acc[KB][NV];
  for (int k = 0; k < KB; ++k)
    for (int v = 0; v < NV; ++v) acc[k][v] = V{};
  for (std::int64_t c = 0; c < channels; ++c) {
    const float* plane = in + c * cs;
    const float* wc = wp + c * taps * KB;
    for (std::int64_t t = 0; t < taps; ++t) {
      const float* p = plane + offsets[t];
      V x[NV];
      for (int v = 0; v < NV; ++v) x[v] = *reinterpret_cast<const VU*>(p + v * L);
      for (int k = 0; k < KB; ++k) {
        const V wv = V{} + wc[t * KB + k];
        for (int v = 0; v < NV; ++v) acc[k][v] += wv * x[v];
      }
    }
  }
  for (int k = 0; k < valid; ++k)
    for (int v = 0; v < NV; ++v) *reinterpret_cast<VU*>(out + k * os + v * L) = acc[k][v];
}

// Images [0, n) of x (n, in, H, W) into y (n, out, H, W) with packed weights and optional bias (out).
// plane: in * conv_direct_plane_stride floats whose border is zero (it stays zero: only the interior
// is written); rows: KB * conv_direct_span floats.
template <class V, int KB, int NV>
FOVEA_CONV_ALWAYS_INLINE void conv_direct_images(const float* x, std::int64_t n, const ConvDirectShape& s,
                                                 const float* packed, const float* bias, float* y,
                                                 float* plane, float* rows) {
  constexpr std::int64_t tile = static_cast<std::int64_t>(sizeof(V) / sizeof(float)) * NV;
  const std::int64_t Wp = s.Wp(), taps = s.R * s.S, hw = s.H * s.W;
  const std::int64_t span = conv_direct_span(s, tile), cs = conv_direct_plane_stride(s, tile);
  const std::int64_t top = (s.R - 1) / 2, left = (s.S - 1) / 2;
  std::int64_t offsets[64];  // taps <= 64 (checked by the caller)
  for (std::int64_t r = 0; r < s.R; ++r)
    for (std::int64_t c = 0; c < s.S; ++c) offsets[r * s.S + c] = r * Wp + c;
  for (std::int64_t img = 0; img < n; ++img) {
    const float* xi = x + img * s.in * hw;
    float* yi = y + img * s.out * hw;
    for (std::int64_t c = 0; c < s.in; ++c)
      for (std::int64_t h = 0; h < s.H; ++h)
        std::copy(xi + (c * s.H + h) * s.W, xi + (c * s.H + h + 1) * s.W,
                  plane + c * cs + (h + top) * Wp + left);
    for (std::int64_t k0 = 0; k0 < s.out; k0 += KB) {
      const int valid = static_cast<int>(std::min<std::int64_t>(KB, s.out - k0));
      const float* wp = packed + (k0 / KB) * s.in * taps * KB;
      for (std::int64_t j = 0; j < span; j += tile)
        conv_direct_tile<V, KB, NV>(plane + j, cs, wp, offsets, taps, s.in, rows + j, span, valid);
      for (int k = 0; k < valid; ++k) {
        const float b = bias != nullptr ? bias[k0 + k] : 0.0f;
        float* out = yi + (k0 + k) * hw;
        for (std::int64_t h = 0; h < s.H; ++h) {
          const float* src = rows + k * span + h * Wp;
          for (std::int64_t i = 0; i < s.W; ++i) out[h * s.W + i] = src[i] + b;
        }
      }
    }
  }
}

#define FOVEA_CONV_DIRECT_ARGS                                                                      \
  const float *x, std::int64_t n, const ConvDirectShape &s, const float *packed, const float *bias, \
      float *y, float *plane, float *rows
#define FOVEA_CONV_DIRECT_PASS x, n, s, packed, bias, y, plane, rows

inline void conv_direct_images_generic(FOVEA_CONV_DIRECT_ARGS) {
  using T = ConvDirectTiling<ConvDirectIsa::generic>;
  conv_direct_images<ConvVec4, T::KB, T::NV>(FOVEA_CONV_DIRECT_PASS);
}
#if FOVEA_CONV_DIRECT_X86
__attribute__((target("avx2,fma"))) inline void conv_direct_images_avx2(FOVEA_CONV_DIRECT_ARGS) {
  using T = ConvDirectTiling<ConvDirectIsa::avx2>;
  conv_direct_images<ConvVec8, T::KB, T::NV>(FOVEA_CONV_DIRECT_PASS);
}
__attribute__((target("avx512f"))) inline void conv_direct_images_avx512(FOVEA_CONV_DIRECT_ARGS) {
  using T = ConvDirectTiling<ConvDirectIsa::avx512>;
  conv_direct_images<ConvVec16, T::KB, T::NV>(FOVEA_CONV_DIRECT_PASS);
}
#endif
#undef FOVEA_CONV_DIRECT_ARGS
#undef FOVEA_CONV_DIRECT_PASS

#endif  // GNU vector extensions

// Whether the kernel handles this convolution at all (sizes as in Conv2dGeometry and Conv2dParams).
inline bool conv_direct_applies(std::int64_t R, std::int64_t S, int stride_h, int stride_w, int pad_h,
                                int pad_w, int dilation_h, int dilation_w, int groups) {
#if defined(__GNUC__) || defined(__clang__)
  return R % 2 == 1 && S % 2 == 1 && R * S > 1 && R * S <= 64 && stride_h == 1 && stride_w == 1 &&
         dilation_h == 1 && dilation_w == 1 && groups == 1 && pad_h == (R - 1) / 2 && pad_w == (S - 1) / 2;
#else
  (void)R, (void)S, (void)stride_h, (void)stride_w, (void)pad_h, (void)pad_w, (void)dilation_h,
      (void)dilation_w, (void)groups;
  return false;
#endif
}

// Whether the CPU twin takes the direct path for a convolution the kernel handles, from `in` to `out`
// channels of H x W pixels, under the current setting.
inline bool conv_direct_chosen(std::int64_t in, std::int64_t out, std::int64_t H, std::int64_t W) {
  switch (cpu_conv_path_setting().load()) {
    case CpuConvPath::gemm: return false;
    case CpuConvPath::direct: return true;
    case CpuConvPath::automatic: break;
  }
  return in <= conv_direct_max_in(conv_direct_best_isa()) && out >= kConvDirectMinOut &&
         H * W >= kConvDirectMinPixels;
}

// y (N, s.out, H, W) = the same convolution of x (N, s.in, H, W) by w (adjoint: see conv_direct_pack),
// plus bias (s.out) when not null; images in parallel, each computed as in a serial loop.
inline void conv_direct(const float* x, std::int64_t N, const ConvDirectShape& s, const float* w,
                        bool adjoint, const float* bias, float* y,
                        ConvDirectIsa isa = conv_direct_best_isa()) {
  FOVEA_CHECK(conv_direct_supported(isa), "conv_direct: this CPU cannot run the ", conv_direct_isa_name(isa),
              " variant");
  if (N == 0 || s.out == 0) return;
#if defined(__GNUC__) || defined(__clang__)
  const auto run = [&](auto tiling, auto images) {
    using T = decltype(tiling);
    const std::int64_t tile = T::lanes * T::NV;
    const std::vector<float> packed = conv_direct_pack(w, s, adjoint, T::KB);
    const std::int64_t plane_floats = s.in * conv_direct_plane_stride(s, tile);
    const std::int64_t rows_floats = T::KB * conv_direct_span(s, tile);
    parallel_for(
        N,
        [&](std::int64_t first, std::int64_t last) {
          std::vector<float> plane(static_cast<std::size_t>(plane_floats), 0.0f);
          std::vector<float> rows(static_cast<std::size_t>(rows_floats));
          const std::int64_t hw = s.H * s.W;
          images(x + first * s.in * hw, last - first, s, packed.data(), bias, y + first * s.out * hw,
                 plane.data(), rows.data());
        },
        s.out * s.in * s.R * s.S * s.H * s.W);
  };
  switch (isa) {
#if FOVEA_CONV_DIRECT_X86
    case ConvDirectIsa::avx512:
      run(ConvDirectTiling<ConvDirectIsa::avx512>{}, conv_direct_images_avx512);
      return;
    case ConvDirectIsa::avx2: run(ConvDirectTiling<ConvDirectIsa::avx2>{}, conv_direct_images_avx2); return;
#endif
    default: run(ConvDirectTiling<ConvDirectIsa::generic>{}, conv_direct_images_generic);
  }
#else
  (void)x, (void)w, (void)adjoint, (void)bias, (void)y, (void)isa;
  FOVEA_FAIL("conv_direct: this compiler has no vector extensions");
#endif
}

}  // namespace detail

// Sets how the CPU twin computes same convolutions from now on (all threads). Results change in their
// last bits between the paths; each path is deterministic.
inline void set_cpu_conv_path(CpuConvPath path) { detail::cpu_conv_path_setting().store(path); }
inline CpuConvPath cpu_conv_path() { return detail::cpu_conv_path_setting().load(); }

}  // namespace fovea
