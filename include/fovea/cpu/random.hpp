// fovea/cpu/random.hpp: the CPU twins of the random fill ops (contracts in ops/random.hpp).
#pragma once

#include <cstdint>

#include "fovea/core/random.hpp"
#include "fovea/core/tensor.hpp"

namespace fovea::cpu {

// out[i] = uniform_between(uniform(key, i), lo, hi), one Philox block per 4 elements.
inline void random_uniform(View out, RandomKey key, float lo, float hi) {
  float* o = out.data();
  const std::int64_t n = out.numel();
  for (std::int64_t base = 0; base < n; base += 4) {
    const U32x4 block = random_block(key, static_cast<std::uint32_t>(base >> 2));
    const std::int64_t count = n - base < 4 ? n - base : 4;
    for (std::int64_t w = 0; w < count; ++w)
      o[base + w] = uniform_between(uniform_from_bits(block.v[w]), lo, hi);
  }
}

// out[i] = scale_normal(normal(key, i), mean, std_dev).
inline void random_normal(View out, RandomKey key, float mean, float std_dev) {
  float* o = out.data();
  const std::int64_t n = out.numel();
  for (std::int64_t i = 0; i < n; ++i)
    o[i] = scale_normal(normal(key, static_cast<std::uint64_t>(i)), mean, std_dev);
}

}  // namespace fovea::cpu
