// fovea/cpu/elementwise.hpp: the CPU loop that runs fovea::math functors, and the CPU twins of the
// element-wise ops (contracts in ops/elementwise.hpp).
#pragma once

#include <algorithm>
#include <cstdint>

#include "fovea/core/parallel.hpp"
#include "fovea/core/tensor.hpp"
#include "fovea/ops/math.hpp"

namespace fovea::cpu {

// Elements per chunk of a parallel map; maps of fewer than 8 chunks stay serial (waking threads
// costs more than a few microseconds of streaming).
inline constexpr std::int64_t kMapChunk = 16384;

// body(i) for every i < n, in chunks of kMapChunk elements on the parallel loop (each element
// computed alike, so the result does not depend on the thread count).
template <class Body>
void for_each_element(std::int64_t n, const Body& body) {
  const std::int64_t chunks = (n + kMapChunk - 1) / kMapChunk;
  parallel_for(
      chunks,
      [&](std::int64_t first, std::int64_t last) {
        const std::int64_t end = std::min(n, last * kMapChunk);
        for (std::int64_t i = first * kMapChunk; i < end; ++i) body(i);
      },
      kParallelMinWork / 8);
}

// out[i] = f(in[i]...) for every i; out may alias an input exactly.
template <class F, class... In>
void map(const F& f, View out, In... in) {
  float* o = out.data();
  for_each_element(out.numel(), [&](std::int64_t i) { o[i] = f(in.data()[i]...); });
}

inline void fill(View out, float value) { map(math::Fill{value}, out); }
inline void scale(CView x, float alpha, View out) { map(math::Scale{alpha}, out, x); }
inline void axpy(float alpha, CView x, View y) { map(math::Axpy{alpha}, y, x, CView(y)); }
inline void add(CView a, CView b, View out) { map(math::Add{}, out, a, b); }
inline void multiply(CView a, CView b, View out) { map(math::Multiply{}, out, a, b); }
inline void relu_forward(CView x, View y) { map(math::Relu{}, y, x); }
inline void relu_backward(CView x, CView dy, View dx) { map(math::ReluBackward{}, dx, x, dy); }
inline void lerp(CView a, CView b, float t, View out) { map(math::Lerp{t}, out, a, b); }

inline void accumulate_scaled(CView x, double weight, View acc, bool start) {
  auto* a = reinterpret_cast<double*>(acc.data());
  const float* xs = x.data();
  for_each_element(x.numel(),
                   [&](std::int64_t i) { a[i] = (start ? 0.0 : a[i]) + math::dmul_rn(weight, xs[i]); });
}

}  // namespace fovea::cpu
