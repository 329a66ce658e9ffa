// fovea/ops/blas.hpp: process-wide math settings that the cuDNN convolutions and cuBLAS GEMMs obey.
#pragma once

namespace fovea {

// How the library-backed CUDA ops (cuDNN convolutions, cuBLAS GEMMs) may trade accuracy and
// reproducibility for speed. The CPU twins ignore both fields: they are always fp32, deterministic.
//   allow_tf32:    fp32 convolutions and GEMMs may round their inputs to TF32 (10-bit mantissa) on
//                  tensor cores (Ampere and later): ~1e-3 relative error, several times faster.
//                  Off: plain fp32 FMA (cuDNN CUDNN_FMA_MATH, cuBLAS CUBLAS_COMPUTE_32F).
//   deterministic: cuDNN may only pick algorithms it reports as deterministic (no atomics in
//                  backward data / filter), so two runs give bitwise equal results. cuBLAS GEMMs
//                  are deterministic on one GPU model and stream already.
struct MathSettings {
  bool allow_tf32 = true;
  bool deterministic = false;
};

// The process-wide settings. Change them between ops, not while other threads launch work: the
// fields are read at each call (cuDNN algorithm choices are cached per setting, so toggling is cheap).
inline MathSettings& math_settings() {
  static MathSettings settings;
  return settings;
}

// Sets the process-wide math settings for a scope and restores the previous ones at its end.
class ScopedMathSettings {
 public:
  explicit ScopedMathSettings(MathSettings settings) : previous_(math_settings()) {
    math_settings() = settings;
  }
  ScopedMathSettings(const ScopedMathSettings&) = delete;
  ScopedMathSettings& operator=(const ScopedMathSettings&) = delete;
  ~ScopedMathSettings() { math_settings() = previous_; }

 private:
  MathSettings previous_;
};

}  // namespace fovea
