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
// - The gradient with respect to the input of a same convolution is the same convolution of the
//   output gradient with the kernel flipped in both axes and the channel axes swapped, so
//   backward_data runs the same kernel with the weights packed that way.
// - The weight gradient (3x3 kernels) is an outer product per flat index: a vector of output
//   channels of the output gradient (stored transposed) times each input channel's 9 tap values,
//   broadcast (conv_direct_filter_items).
//
// The variant is chosen at run time from the CPU (__builtin_cpu_supports), so one binary runs on any
// x86-64. Whether the CPU twin uses this path (docs/ops-conv.md): FOVEA_CPU_CONV=auto (default: where
// it was measured faster than im2col + OpenBLAS, conv_direct_chosen), gemm (never) or direct (every
// same convolution, on any CPU); set_cpu_conv_path changes it for the process.
#pragma once

#include <algorithm>
#include <array>
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

// Where the automatic choice takes the direct kernels: at least kConvDirectMinOut output channels,
// and for the forward kernel (forward and input gradient) at least kConvDirectMinPixels output pixels
// per channel and at most conv_direct_max_in(isa) input channels; for the weight gradient at least
// kConvDirectFilterMinPixels pixels and at most kConvDirectFilterMaxIn input channels. Measured
// against OpenBLAS 0.3.21 on a 2-core Xeon (its SkylakeX kernel, and its Haswell kernel for the AVX2
// comparison) with 2 threads, per convolution of a batch (docs/benchmarks.md):
// - Forward, small images: the dropped columns and the part-filled last tile take a growing share
//   (an 8 x 8 image computes 80 or 96 indices for 64 pixels), while a GEMM reducing over many
//   channels runs near its peak: 128 channels at 8 x 8 was a tie (AVX-512: 1.1x forward, 0.93x input
//   gradient).
// - Forward, many input channels: the GEMM's packing and im2col cost less per multiply-add as the
//   reduction grows. AVX-512 beats the GEMM up to 128 input channels (1.2x at 28 x 28) and ties at
//   256 (0.95x); the AVX2 variant, at half the rate, up to 64 (with its 4 x 3 tile: 1.03-1.06x
//   forward and 1.15x input gradient at 64 channels, 0.92x and 1.0x at 128).
// - Weight gradient: faster than the GEMM at every shape measured, 3 to 256 input channels and 8 x 8
//   to 64 x 64 pixels (1.0x to 1.8x; AVX2 against the Haswell GEMM 1.0x to 1.5x).
// - Few output channels: a tile of KB channels is then mostly empty (0.7x for 64 -> 3 at 224 x 224).
inline constexpr std::int64_t kConvDirectMinPixels = 16 * 16;
inline constexpr std::int64_t kConvDirectFilterMinPixels = 8 * 8;
inline constexpr std::int64_t kConvDirectFilterMaxIn = 256;
inline constexpr std::int64_t kConvDirectMinOut = 4;
inline std::int64_t conv_direct_max_in(ConvDirectIsa isa) {
  switch (isa) {
    case ConvDirectIsa::avx512: return 128;
    case ConvDirectIsa::avx2: return 64;
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

// The per-variant tiling: KB output channels by NV vectors per tile of the forward kernel; `lanes`
// output channels by NI input channels (by 9 taps) per tile of the weight gradient.
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
  static constexpr int KB = 4, NV = 2, lanes = 4, NI = 1;
};
// AVX2: 4 x 3 vectors, 12 accumulators + 3 plane loads of the 16 registers; measured 8-15 % faster
// than 4 x 2 (1 thread, forcing the AVX2 variant, docs/benchmarks.md 2026-11-30); 6 x 2 was as fast
// at 64 channels and slower elsewhere, 3 x 4 25 % slower.
template <>
struct ConvDirectTiling<ConvDirectIsa::avx2> {
  static constexpr int KB = 4, NV = 3, lanes = 8, NI = 1;
};
template <>
struct ConvDirectTiling<ConvDirectIsa::avx512> {
  static constexpr int KB = 8, NV = 3, lanes = 16, NI = 3;
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
  // -0 in every lane. (V{} + w keeps its add, since 0 + -0 is +0, and broadcasts from a register;
  // -0 + w is w, so it folds into a broadcast load. Written V{} * -1 because nvcc's device front end
  // aborts on the unary minus of a vector.)
  const V negzero = V{} * -1.0f;
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
        const V wv = negzero + wc[t * KB + k];  // -0 + w is w: one broadcast load
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

// The weight gradient of a same 3x3 convolution, dw[o, i, t] = the sum over images and flat
// padded-width indices j (as in conv_direct_images) of dy[o, j] * plane_i[j + offset_t], where dy is
// zero in the dropped columns, so they add nothing. An outer product per index: a vector holds
// `lanes` output channels of dy at j (the output gradient is stored transposed, (j, o) per block of
// output channels), and each of NI input channels' 9 tap values at j is broadcast against it, into
// NI x 9 accumulators. One item is one block of output channels by NI input channels; its
// accumulators sum kConvFilterBlock indices in registers, from zero, and are then added to the
// running totals in `acc`: every dw value is a sum, in order, of blocks' sums in order (chains of at
// most 512 and N * H * Wp / 512 terms rather than one of N * H * Wp: three times the GEMM's error
// without the blocks, at 32 x 16 x 64 x 64), the same for every variant with FMA.
// buffer: per image, ceil(in / NI) * NI planes conv_direct_plane_stride(s, 1) apart (the ones past
// `in` zero), then per block of output channels H * Wp rows of `lanes` floats.
inline constexpr std::int64_t kConvFilterBlock = 512;
// The weight gradient's images go in chunks of at most this many bytes of planes: 8 MiB measured
// 5 to 10 % faster than 64 MiB at the study's 16 and 32 channels (the chunk is read once per block of
// input channels, and more of it stays in cache), and smaller chunks slower (a parallel loop per
// chunk, and fewer images than threads to fill).
inline constexpr std::int64_t kConvFilterChunkBytes = std::int64_t{8} << 20;
template <class V, int NI>
FOVEA_CONV_ALWAYS_INLINE void conv_direct_filter_items(const float* buffer, std::int64_t images,
                                                       const ConvDirectShape& s, std::int64_t first,
                                                       std::int64_t last, float* acc) {
  using VU = typename ConvUnaligned<V>::type;
  constexpr int L = sizeof(V) / sizeof(float);
  const std::int64_t Wp = s.Wp(), span = s.H * Wp, cs = conv_direct_plane_stride(s, 1);
  const std::int64_t in_blocks = (s.in + NI - 1) / NI, out_blocks = (s.out + L - 1) / L;
  const std::int64_t image_floats = in_blocks * NI * cs + out_blocks * span * L;
  for (std::int64_t img = 0; img < images; ++img) {
    const float* planes = buffer + img * image_floats;
    const float* grads = planes + in_blocks * NI * cs;
    for (std::int64_t item = first; item < last; ++item) {
      const std::int64_t block = item / in_blocks, q = item % in_blocks;
      const float* g = grads + block * span * L;
      const float* p = planes + q * NI * cs;
      float* a = acc + item * NI * 9 * L;
      const V negzero = V{} * -1.0f;  // see conv_direct_tile
      const float* rows[NI][3];
      for (int n = 0; n < NI; ++n)
        for (int r = 0; r < 3; ++r) rows[n][r] = p + n * cs + r * Wp;
      for (std::int64_t j0 = 0; j0 < span; j0 += kConvFilterBlock) {
        V sum[NI][9];
        for (int n = 0; n < NI; ++n)
          for (int t = 0; t < 9; ++t) sum[n][t] = V{};
        const std::int64_t j1 = std::min(span, j0 + kConvFilterBlock);
        for (std::int64_t j = j0; j < j1; ++j) {
          const V gv = *reinterpret_cast<const VU*>(g + j * L);
          for (int n = 0; n < NI; ++n)
            for (int r = 0; r < 3; ++r) {
              const float* q = rows[n][r] + j;  // taps (r, 0..2) at constant displacements
              for (int c = 0; c < 3; ++c) sum[n][r * 3 + c] += gv * (negzero + q[c]);
            }
        }
        for (int n = 0; n < NI; ++n)
          for (int t = 0; t < 9; ++t) {
            VU& total = *reinterpret_cast<VU*>(a + (n * 9 + t) * L);
            total = total + sum[n][t];
          }
      }
    }
  }
}

#define FOVEA_CONV_FILTER_ARGS                                                                               \
  const float *planes, std::int64_t images, const ConvDirectShape &s, std::int64_t first, std::int64_t last, \
      float *acc
#define FOVEA_CONV_FILTER_PASS planes, images, s, first, last, acc
// GCC's predictive commoning sees that tap (r, c + 1) at j is tap (r, c) at j + 1 and carries the
// 27 values from one index to the next through the stack, which costs more than the broadcast loads
// it saves; the weight-gradient loop is compiled without it.
#if defined(__GNUC__) && !defined(__clang__) && !defined(__CUDACC__)
#define FOVEA_CONV_FILTER_OPT __attribute__((optimize("no-predictive-commoning")))
#else
#define FOVEA_CONV_FILTER_OPT
#endif

FOVEA_CONV_FILTER_OPT inline void conv_direct_filter_generic(FOVEA_CONV_FILTER_ARGS) {
  conv_direct_filter_items<ConvVec4, ConvDirectTiling<ConvDirectIsa::generic>::NI>(FOVEA_CONV_FILTER_PASS);
}
#if FOVEA_CONV_DIRECT_X86
__attribute__((target("avx2,fma"))) FOVEA_CONV_FILTER_OPT inline void conv_direct_filter_avx2(
    FOVEA_CONV_FILTER_ARGS) {
  conv_direct_filter_items<ConvVec8, ConvDirectTiling<ConvDirectIsa::avx2>::NI>(FOVEA_CONV_FILTER_PASS);
}
__attribute__((target("avx512f"))) FOVEA_CONV_FILTER_OPT inline void conv_direct_filter_avx512(
    FOVEA_CONV_FILTER_ARGS) {
  conv_direct_filter_items<ConvVec16, ConvDirectTiling<ConvDirectIsa::avx512>::NI>(FOVEA_CONV_FILTER_PASS);
}
#endif
#undef FOVEA_CONV_FILTER_ARGS
#undef FOVEA_CONV_FILTER_PASS
#undef FOVEA_CONV_FILTER_OPT

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

// The same for the weight gradient of a same 3x3 convolution from `in` to `out` channels.
inline bool conv_direct_filter_chosen(std::int64_t in, std::int64_t out, std::int64_t H, std::int64_t W) {
  switch (cpu_conv_path_setting().load()) {
    case CpuConvPath::gemm: return false;
    case CpuConvPath::direct: return true;
    case CpuConvPath::automatic: break;
  }
  return conv_direct_best_isa() != ConvDirectIsa::generic && in <= kConvDirectFilterMaxIn &&
         out >= kConvDirectMinOut && H * W >= kConvDirectFilterMinPixels;
}

// Per-thread scratch of the direct kernels, kept between calls: a training step calls them dozens of
// times, and fresh zeroed vectors of up to 8 MiB cost a page fault per 4 KiB (6 % of the study
// network's step in `perf`). `slot` 0 to 3 are separate buffers; the first `floats` are zeroed,
// unless `layout` is not empty and equals the layout of the slot's previous call: a caller that
// writes the same positions on every call with one layout (and leaves the rest zero) passes it, and
// the zeros of the last call are still there (zeroing 8 MiB took 1 ms of a 6 ms weight gradient).
using ConvScratchLayout = std::array<std::int64_t, 8>;
inline float* conv_direct_scratch(int slot, std::int64_t floats, const ConvScratchLayout& layout = {}) {
  struct Buffer {
    std::vector<float> data;
    ConvScratchLayout layout{};
  };
  thread_local Buffer buffers[4];
  Buffer& b = buffers[slot];
  const bool keep = layout != ConvScratchLayout{} && layout == b.layout &&
                    b.data.size() >= static_cast<std::size_t>(floats);
  b.layout = layout;
  if (keep) return b.data.data();
  if (b.data.size() < static_cast<std::size_t>(floats)) b.data.resize(static_cast<std::size_t>(floats));
  std::fill(b.data.begin(), b.data.begin() + floats, 0.0f);
  return b.data.data();
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
          float* plane = conv_direct_scratch(0, plane_floats);
          float* rows = conv_direct_scratch(1, rows_floats);
          const std::int64_t hw = s.H * s.W;
          images(x + first * s.in * hw, last - first, s, packed.data(), bias, y + first * s.out * hw, plane,
                 rows);
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

// dw (s.out, s.in, 3, 3) = (accumulate: dw +) the weight gradient of the same 3x3 convolution of x
// (N, s.in, H, W) whose output gradient is dy (N, s.out, H, W). The images go in chunks of at most
// kConvFilterChunkBytes of planes (their count depends on the shapes only, and the chunking does not
// change the sums' order); in each chunk the planes are filled in
// parallel over images, then the items (see conv_direct_filter_items) run in parallel, each over the
// chunk's images in order. Each dw value is summed in one order (per image, then over the images)
// whatever the thread count, and the AVX2 and AVX-512 variants give the same bits.
inline void conv_direct_filter(const float* x, const float* dy, std::int64_t N, const ConvDirectShape& s,
                               float* dw, bool accumulate, ConvDirectIsa isa = conv_direct_best_isa()) {
  FOVEA_CHECK(conv_direct_supported(isa), "conv_direct_filter: this CPU cannot run the ",
              conv_direct_isa_name(isa), " variant");
  FOVEA_CHECK(s.R == 3 && s.S == 3, "conv_direct_filter: 3x3 kernels only, got ", s.R, "x", s.S);
  const std::int64_t dw_floats = s.out * s.in * 9;
  if (N == 0 || dw_floats == 0) {
    if (!accumulate) std::fill(dw, dw + dw_floats, 0.0f);
    return;
  }
#if defined(__GNUC__) || defined(__clang__)
  const auto run = [&](auto tiling, auto items_fn) {
    using T = decltype(tiling);
    constexpr std::int64_t L = T::lanes, NI = T::NI;
    const std::int64_t Wp = s.Wp(), span = s.H * Wp, cs = conv_direct_plane_stride(s, 1), hw = s.H * s.W;
    const std::int64_t in_blocks = (s.in + NI - 1) / NI, out_blocks = (s.out + L - 1) / L;
    const std::int64_t items = out_blocks * in_blocks;
    const std::int64_t image_floats = in_blocks * NI * cs + out_blocks * span * L;
    const std::int64_t chunk = std::clamp<std::int64_t>(kConvFilterChunkBytes / 4 / image_floats, 1, N);
    // Zeroed once per layout: the planes' borders and tails, the planes past `in`, the dropped columns
    // and the lanes past `out` are never written.
    float* buffer = conv_direct_scratch(3, chunk * image_floats, {s.in, s.out, s.H, s.W, L, NI, chunk, 1});
    float* acc = conv_direct_scratch(2, items * NI * 9 * L);
    for (std::int64_t n0 = 0; n0 < N; n0 += chunk) {
      const std::int64_t count = std::min(chunk, N - n0);
      parallel_for(
          count,
          [&](std::int64_t b, std::int64_t e) {
            for (std::int64_t img = b; img < e; ++img) {
              float* image = buffer + img * image_floats;
              const float* xi = x + (n0 + img) * s.in * hw;
              const float* di = dy + (n0 + img) * s.out * hw;
              for (std::int64_t c = 0; c < s.in; ++c)
                for (std::int64_t h = 0; h < s.H; ++h)
                  std::copy(xi + (c * s.H + h) * s.W, xi + (c * s.H + h + 1) * s.W,
                            image + c * cs + (h + 1) * Wp + 1);
              float* grads = image + in_blocks * NI * cs;
              for (std::int64_t o = 0; o < s.out; ++o) {
                float* g = grads + (o / L) * span * L + o % L;
                for (std::int64_t h = 0; h < s.H; ++h)
                  for (std::int64_t w = 0; w < s.W; ++w) g[(h * Wp + w) * L] = di[(o * s.H + h) * s.W + w];
              }
            }
          },
          (s.in + s.out) * hw);
      parallel_for(
          items, [&](std::int64_t first, std::int64_t last) { items_fn(buffer, count, s, first, last, acc); },
          count * NI * 9 * span);
    }
    for (std::int64_t o = 0; o < s.out; ++o)
      for (std::int64_t i = 0; i < s.in; ++i)
        for (std::int64_t t = 0; t < 9; ++t) {
          const float v = acc[static_cast<std::size_t>(
              ((((o / L) * in_blocks + i / NI) * NI + i % NI) * 9 + t) * L + o % L)];
          float& out = dw[(o * s.in + i) * 9 + t];
          out = accumulate ? out + v : v;
        }
  };
  switch (isa) {
#if FOVEA_CONV_DIRECT_X86
    case ConvDirectIsa::avx512:
      run(ConvDirectTiling<ConvDirectIsa::avx512>{}, conv_direct_filter_avx512);
      return;
    case ConvDirectIsa::avx2: run(ConvDirectTiling<ConvDirectIsa::avx2>{}, conv_direct_filter_avx2); return;
#endif
    default: run(ConvDirectTiling<ConvDirectIsa::generic>{}, conv_direct_filter_generic);
  }
#else
  (void)x, (void)dy, (void)accumulate, (void)isa;
  FOVEA_FAIL("conv_direct_filter: this compiler has no vector extensions");
#endif
}

}  // namespace detail

// Sets how the CPU twin computes same convolutions from now on (all threads). Results change in their
// last bits between the paths; each path is deterministic.
inline void set_cpu_conv_path(CpuConvPath path) { detail::cpu_conv_path_setting().store(path); }
inline CpuConvPath cpu_conv_path() { return detail::cpu_conv_path_setting().load(); }

}  // namespace fovea
