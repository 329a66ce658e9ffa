// fovea/core/config.hpp: build-wide switches and the host/device annotation macro.
#pragma once

// FOVEA_WITH_CUDA is 1 when the program links the CUDA backend (the CMake target fovea::fovea
// defines it when FOVEA_CUDA resolved to ON). A g++-only build leaves it at 0 and never sees CUDA.
#ifndef FOVEA_WITH_CUDA
#define FOVEA_WITH_CUDA 0
#endif

// FOVEA_HD marks element math written once for both backends: under nvcc it becomes
// __host__ __device__, under a host compiler it vanishes.
#if defined(__CUDACC__)
#define FOVEA_HD __host__ __device__ __forceinline__
#else
#define FOVEA_HD inline
#endif

#define FOVEA_VERSION_MAJOR 0
#define FOVEA_VERSION_MINOR 1
#define FOVEA_VERSION_PATCH 0
