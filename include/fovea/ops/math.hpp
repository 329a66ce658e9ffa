// fovea/ops/math.hpp: element math written once, as FOVEA_HD functors that the CPU loop
// (cpu/elementwise.hpp) and the CUDA grid-stride kernel (kernels/elementwise.cuh) both run.
#pragma once

#include "fovea/core/config.hpp"

namespace fovea::math {

// Each functor maps the i-th elements of its inputs to the i-th output element.
struct Fill {
  float value;
  FOVEA_HD float operator()() const { return value; }
};
struct Scale {
  float alpha;
  FOVEA_HD float operator()(float x) const { return alpha * x; }
};
struct Axpy {  // inputs (x, y): alpha * x + y
  float alpha;
  FOVEA_HD float operator()(float x, float y) const { return alpha * x + y; }
};
struct Add {
  FOVEA_HD float operator()(float a, float b) const { return a + b; }
};
struct Multiply {
  FOVEA_HD float operator()(float a, float b) const { return a * b; }
};
// max(x, 0), propagating NaN as PyTorch does.
struct Relu {
  FOVEA_HD float operator()(float x) const { return (x > 0.0f || x != x) ? x : 0.0f; }
};
// inputs (x, dy): dy where x > 0, else 0 (the subgradient at 0 is 0, as in PyTorch).
struct ReluBackward {
  FOVEA_HD float operator()(float x, float dy) const { return x > 0.0f ? dy : 0.0f; }
};

// Reductions: an identity and an associative combine.
struct SumReduce {
  FOVEA_HD static float identity() { return 0.0f; }
  FOVEA_HD float operator()(float a, float b) const { return a + b; }
};
// Maximum, propagating NaN.
struct MaxReduce {
  FOVEA_HD static float identity() { return -__builtin_huge_valf(); }
  FOVEA_HD float operator()(float a, float b) const { return (a > b || a != a) ? a : b; }
};

}  // namespace fovea::math
