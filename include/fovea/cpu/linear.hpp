// fovea/cpu/linear.hpp: CPU twins of the fully connected ops through cpu::gemm (contracts in
// ops/linear.hpp). x is read as (N, F) whatever its rank.
#pragma once

#include <cstdint>

#include "fovea/core/tensor.hpp"
#include "fovea/cpu/gemm.hpp"

namespace fovea::cpu {

inline void linear_forward(CView x, CView w, CView b, View y) {
  const std::int64_t N = y.shape()[0], O = w.shape()[0], F = w.shape()[1];
  float beta = 0.0f;
  if (::fovea::detail::is_present(b)) {
    for (std::int64_t n = 0; n < N; ++n)
      for (std::int64_t o = 0; o < O; ++o) y.data()[n * O + o] = b.data()[o];
    beta = 1.0f;
  }
  gemm(false, true, N, O, F, 1.0f, x.data(), F, w.data(), F, beta, y.data(), O);  // (N, F) x (F, O)
}

inline void linear_backward_data(CView dy, CView w, View dx) {
  const std::int64_t N = dy.shape()[0], O = w.shape()[0], F = w.shape()[1];
  gemm(false, false, N, F, O, 1.0f, dy.data(), O, w.data(), F, 0.0f, dx.data(), F);  // (N, O) x (O, F)
}

inline void linear_backward_weight(CView x, CView dy, View dw, bool accumulate) {
  const std::int64_t N = dy.shape()[0], O = dw.shape()[0], F = dw.shape()[1];
  gemm(true, false, O, F, N, 1.0f, dy.data(), O, x.data(), F, accumulate ? 1.0f : 0.0f, dw.data(),
       F);  // (O, N) x (N, F)
}

// Accumulates in double.
inline void linear_backward_bias(CView dy, View db) {
  const std::int64_t N = dy.shape()[0], O = dy.shape()[1];
  for (std::int64_t o = 0; o < O; ++o) {
    double s = 0.0;
    for (std::int64_t n = 0; n < N; ++n) s += dy.data()[n * O + o];
    db.data()[o] = static_cast<float>(s);
  }
}

}  // namespace fovea::cpu
