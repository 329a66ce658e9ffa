// fovea/cuda/random.hpp: host-side declarations of the CUDA twins of the random fill ops. Contracts
// are on the dispatching functions in ops/random.hpp; definitions live in kernels/random.cuh.
// Both launch on the current stream of out's device and return without waiting.
#pragma once

#include "fovea/core/config.hpp"
#include "fovea/core/random.hpp"
#include "fovea/core/tensor.hpp"

#if FOVEA_WITH_CUDA
namespace fovea::cuda {

void random_uniform(View out, RandomKey key, float lo, float hi);
void random_normal(View out, RandomKey key, float mean, float std_dev);

}  // namespace fovea::cuda
#endif
