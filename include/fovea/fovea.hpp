// fovea/fovea.hpp: the public umbrella header. Compiles with a host compiler alone (no CUDA syntax
// is reachable from here); the CUDA twins are compiled once per program from kernels/fovea_kernels.cu.
#pragma once

#include "fovea/core/config.hpp"
#include "fovea/core/device.hpp"
#include "fovea/core/error.hpp"
#include "fovea/core/memory.hpp"
#include "fovea/core/random.hpp"
#include "fovea/core/shape.hpp"
#include "fovea/core/stream.hpp"
#include "fovea/core/tensor.hpp"
#include "fovea/ops/batch_norm.hpp"
#include "fovea/ops/blas.hpp"
#include "fovea/ops/conv.hpp"
#include "fovea/ops/elementwise.hpp"
#include "fovea/ops/random.hpp"
#include "fovea/ops/linear.hpp"
#include "fovea/ops/pool.hpp"
#include "fovea/ops/reduce.hpp"
#include "fovea/ops/softmax.hpp"
