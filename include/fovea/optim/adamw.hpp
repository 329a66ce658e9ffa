// fovea/optim/adamw.hpp: the AdamW policy: torch.optim.AdamW (decoupled weight decay
// p *= 1 - lr*wd, then the Adam update with bias correction; amsgrad off).
#pragma once

#include <cmath>
#include <cstdint>
#include <string_view>

#include "fovea/optim/optimizer.hpp"

namespace fovea::optim {

struct AdamWOptions {
  float beta1 = 0.9f;
  float beta2 = 0.999f;
  float eps = 1e-8f;
  float weight_decay = 1e-2f;  // torch.optim.AdamW's default; the study fine-tunes with 1e-3
  DecayRule decay_rule = DecayRule::all;
};

struct AdamW {
  using Options = AdamWOptions;
  static constexpr std::string_view name() { return "adamw"; }
  static void validate(const Options& o) {
    FOVEA_CHECK(o.beta1 >= 0.0f && o.beta1 < 1.0f, "adamw: beta1 must be in [0, 1), got ", o.beta1);
    FOVEA_CHECK(o.beta2 >= 0.0f && o.beta2 < 1.0f, "adamw: beta2 must be in [0, 1), got ", o.beta2);
    FOVEA_CHECK(o.eps >= 0.0f, "adamw: eps must be >= 0, got ", o.eps);
    FOVEA_CHECK(o.weight_decay >= 0.0f, "adamw: weight decay must be >= 0, got ", o.weight_decay);
  }
  static int state_count(const Options&) { return 2; }
  static std::string_view state_name(int i) { return i == 0 ? "adam.m" : "adam.v"; }
  static std::uint32_t slot_flags(const Options& o, nn::ParamKind kind) {
    return decay_excluded(o.decay_rule, kind) ? kSlotNoDecay : 0u;
  }
  static void apply(MultiTensorTable& table, const Options& o, float lr, std::int64_t step) {
    const double t = static_cast<double>(step);
    AdamWStep s;
    s.lr = lr;
    s.beta1 = o.beta1;
    s.beta2 = o.beta2;
    s.eps = o.eps;
    s.weight_decay = o.weight_decay;
    s.bias_correction1 = static_cast<float>(1.0 - std::pow(static_cast<double>(o.beta1), t));
    s.bias_correction2 = static_cast<float>(1.0 - std::pow(static_cast<double>(o.beta2), t));
    adamw_update(table, s);
  }
};

using AdamWOptimizer = Optimizer<AdamW>;

}  // namespace fovea::optim
