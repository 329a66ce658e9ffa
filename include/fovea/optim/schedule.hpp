// fovea/optim/schedule.hpp: learning-rate schedules as small value types with `float lr(step)`
// (steps count updates from 0), and the batch-size scaling rules of the learning rate.
#pragma once

#include <algorithm>
#include <cmath>
#include <concepts>
#include <cstdint>
#include <numbers>
#include <string>
#include <variant>
#include <vector>

#include "fovea/core/error.hpp"

namespace fovea::optim {

template <class S>
concept Schedule = requires(const S& s, std::int64_t step) {
  { s.lr(step) } -> std::convertible_to<float>;
};

template <class S>
constexpr bool check_schedule() {
  static_assert(requires(const S& s, std::int64_t step) { { s.lr(step) } -> std::convertible_to<float>; },
                "fovea schedule: missing `float lr(std::int64_t step) const`");
  return true;
}

// The same learning rate at every step.
struct ConstantLr {
  float base = 0.1f;
  float lr(std::int64_t) const { return base; }
};

// base * gamma^k where k is the number of milestones <= step (torch MultiStepLR).
struct StepLr {
  float base = 0.1f;
  std::vector<std::int64_t> milestones;  // in steps, ascending
  float gamma = 0.1f;

  // Milestones given in epochs (e.g. {60, 80} with gamma 0.1 for the study's fine-tuning).
  static StepLr from_epochs(float base, const std::vector<std::int64_t>& epochs, float gamma,
                            std::int64_t steps_per_epoch) {
    FOVEA_CHECK(steps_per_epoch > 0, "StepLr: steps per epoch must be positive, got ", steps_per_epoch);
    StepLr s{base, {}, gamma};
    for (std::int64_t e : epochs) s.milestones.push_back(e * steps_per_epoch);
    return s;
  }
  float lr(std::int64_t step) const {
    double v = base;
    for (std::int64_t m : milestones)
      if (step >= m) v *= gamma;
    return static_cast<float>(v);
  }
};

// Linear warm-up, then cosine decay to min_lr (SimCLR: 10 warm-up epochs, then cosine; MoCo v2:
// no warm-up, cosine per epoch).
//   step < W:        base * step / W                          (SimCLR: 0 at step 0)
//   W <= step < T:   min + (base - min) * (1 + cos(pi * (step - W) / (T - W))) / 2
//   step >= T:       min
// With per_epoch, `step` is first rounded down to the first step of its epoch, so the rate changes
// once per epoch (MoCo's adjust_learning_rate).
struct WarmupCosineLr {
  float base = 0.1f;
  std::int64_t warmup_steps = 0;
  std::int64_t total_steps = 1;
  float min_lr = 0.0f;
  bool per_epoch = false;
  std::int64_t steps_per_epoch = 1;

  static WarmupCosineLr from_epochs(float base, std::int64_t warmup_epochs, std::int64_t total_epochs,
                                    std::int64_t steps_per_epoch, float min_lr = 0.0f, bool per_epoch = false) {
    FOVEA_CHECK(steps_per_epoch > 0, "WarmupCosineLr: steps per epoch must be positive, got ", steps_per_epoch);
    return {base, warmup_epochs * steps_per_epoch, total_epochs * steps_per_epoch, min_lr, per_epoch,
            steps_per_epoch};
  }
  float lr(std::int64_t step) const {
    FOVEA_CHECK(total_steps > 0 && warmup_steps >= 0 && warmup_steps <= total_steps,
                "WarmupCosineLr: need 0 <= warmup_steps <= total_steps, total > 0 (got ", warmup_steps, ", ",
                total_steps, ")");
    if (per_epoch) {
      FOVEA_CHECK(steps_per_epoch > 0, "WarmupCosineLr: steps per epoch must be positive");
      step = step / steps_per_epoch * steps_per_epoch;
    }
    if (step < warmup_steps) return static_cast<float>(static_cast<double>(base) * step / warmup_steps);
    if (step >= total_steps) return min_lr;
    const double t = static_cast<double>(step - warmup_steps) / static_cast<double>(total_steps - warmup_steps);
    return static_cast<float>(min_lr + (static_cast<double>(base) - min_lr) * 0.5 * (1.0 + std::cos(std::numbers::pi * t)));
  }
};

static_assert(check_schedule<ConstantLr>() && check_schedule<StepLr>() && check_schedule<WarmupCosineLr>());

// A schedule chosen at run time (command line).
using AnySchedule = std::variant<ConstantLr, StepLr, WarmupCosineLr>;
inline float lr_at(const AnySchedule& s, std::int64_t step) {
  return std::visit([step](const auto& x) { return x.lr(step); }, s);
}

// How the base learning rate grows with the batch size.
enum class LrScaling {
  none,    // base
  linear,  // base * batch / 256 (Goyal et al.; SimCLR "linear")
  sqrt,    // base * sqrt(batch) (SimCLR "sqrt": 0.075 * sqrt(B))
};

inline float scaled_lr(float base, std::int64_t batch, LrScaling rule) {
  FOVEA_CHECK(batch > 0, "scaled_lr: batch size must be positive, got ", batch);
  switch (rule) {
    case LrScaling::none: return base;
    case LrScaling::linear: return static_cast<float>(static_cast<double>(base) * batch / 256.0);
    case LrScaling::sqrt: return static_cast<float>(static_cast<double>(base) * std::sqrt(static_cast<double>(batch)));
  }
  return base;
}

inline LrScaling parse_lr_scaling(const std::string& text) {
  if (text == "none") return LrScaling::none;
  if (text == "linear") return LrScaling::linear;
  if (text == "sqrt") return LrScaling::sqrt;
  FOVEA_FAIL("unknown learning-rate scaling '", text, "' (expected none, linear or sqrt)");
}

}  // namespace fovea::optim
