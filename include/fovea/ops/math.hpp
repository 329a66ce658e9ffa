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

// Products rounded on their own: nvcc would contract a * b + c into one fma (g++ for x86-64 without
// -march does not), so functors that must give the same bits on both backends round products here.
FOVEA_HD double dmul_rn(double a, double b) {
#ifdef __CUDA_ARCH__
  return __dmul_rn(a, b);
#else
  return a * b;
#endif
}
FOVEA_HD float fmul_rn(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}
struct Lerp {  // inputs (a, b): a + t (b - a), the product rounded on its own
  float t;
  FOVEA_HD float operator()(float a, float b) const { return a + fmul_rn(t, b - a); }
};

// Layer-wise relevance propagation (analysis/lrp.hpp, ops/lrp.hpp). The ratios run in double, so
// the CPU and the GPU round them alike; products are rounded one at a time (dmul_rn), so both
// backends give the same bits.
// stab(z) = z + epsilon sign(z), sign(0) = +1.
FOVEA_HD double lrp_stabilise(double z, double epsilon) { return z + (z >= 0 ? epsilon : -epsilon); }
struct LrpRatio {  // inputs (r, z): r / stab(z)
  float epsilon;
  FOVEA_HD float operator()(float r, float z) const {
    return static_cast<float>(static_cast<double>(r) / lrp_stabilise(z, epsilon));
  }
};
struct LrpShare {  // inputs (a, b, r): a r / stab(a + b), a's share of the relevance of a sum a + b
  float epsilon;
  FOVEA_HD float operator()(float a, float b, float r) const {
    const double ratio = static_cast<double>(r) / lrp_stabilise(static_cast<double>(a) + b, epsilon);
    return static_cast<float>(dmul_rn(a, ratio));
  }
};
struct LrpBoxInput {  // inputs (x, cx, lo, cl, hi, ch): x cx - lo cl - hi ch (the z^B rule's last step)
  FOVEA_HD float operator()(float x, float cx, float lo, float cl, float hi, float ch) const {
    return static_cast<float>(dmul_rn(x, cx) - dmul_rn(lo, cl) - dmul_rn(hi, ch));
  }
};
struct LrpBoxDenominator {  // inputs (zx, zl, zh): zx - zl - zh (the z^B rule's denominator)
  FOVEA_HD float operator()(float zx, float zl, float zh) const { return zx - zl - zh; }
};

}  // namespace fovea::math
