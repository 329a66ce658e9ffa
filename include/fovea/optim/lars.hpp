// fovea/optim/lars.hpp: the LARS policy as SimCLR runs it (momentum 0.9, trust coefficient 1e-3,
// weight decay 1e-6; parameters of kind bias and norm get neither weight decay nor adaptation).
// Formula and references in docs/optimizers.md and at fovea::LarsStep.
#pragma once

#include <cstdint>
#include <string_view>

#include "fovea/optim/optimizer.hpp"

namespace fovea::optim {

struct LarsOptions {
  float momentum = 0.9f;
  float weight_decay = 1e-6f;
  float trust_coefficient = 1e-3f;  // eta
  bool nesterov = false;
  bool exclude_bias_and_norm = true;  // no decay and no adaptation for bias / norm parameters
  LarsTrust trust = LarsTrust::paper;  // decayed_gradient: SimCLR's TF code, |g + wd*w| below
};

struct Lars {
  using Options = LarsOptions;
  static constexpr std::string_view name() { return "lars"; }
  static void validate(const Options& o) {
    FOVEA_CHECK(o.momentum >= 0.0f, "lars: momentum must be >= 0, got ", o.momentum);
    FOVEA_CHECK(o.weight_decay >= 0.0f, "lars: weight decay must be >= 0, got ", o.weight_decay);
    FOVEA_CHECK(o.trust_coefficient > 0.0f, "lars: trust coefficient must be > 0, got ", o.trust_coefficient);
  }
  static int state_count(const Options&) { return 1; }
  static std::string_view state_name(int) { return "momentum"; }
  static std::uint32_t slot_flags(const Options& o, nn::ParamKind kind) {
    return o.exclude_bias_and_norm && kind != nn::ParamKind::weight ? (kSlotNoDecay | kSlotNoAdapt) : 0u;
  }
  static void apply(MultiTensorTable& table, const Options& o, float lr, std::int64_t) {
    lars_update(table, LarsStep{lr, o.momentum, o.weight_decay, o.trust_coefficient, o.nesterov, o.trust});
  }
};

using LarsOptimizer = Optimizer<Lars>;

}  // namespace fovea::optim
