// kernels/fovea_kernels.cu: the one nvcc translation unit of a fovea program. It defines every
// CUDA twin declared in include/fovea/cuda/*.hpp. Compile it exactly once per program (CMake:
// fovea_add_kernels(<target>) or link the fovea_kernels library that the build makes); never
// include these .cuh files from a second translation unit.
#include "runtime.cuh"
#include "elementwise.cuh"
#include "reduce.cuh"
#include "batch_norm.cuh"
#include "pool.cuh"
#include "softmax.cuh"
#include "conv.cuh"
#include "linear.cuh"
#include "random.cuh"
#include "optim.cuh"
#include "loss.cuh"
#include "contrastive.cuh"
#include "augment.cuh"
#include "corruptions.cuh"
#include "lrp.cuh"
#include "gram.cuh"
