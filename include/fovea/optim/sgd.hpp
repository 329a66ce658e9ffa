// fovea/optim/sgd.hpp: the SGD policy: torch.optim.SGD (momentum, dampening, Nesterov, L2 weight
// decay added to the gradient; the momentum buffer starts as the first step's gradient).
#pragma once

#include <cstdint>
#include <string_view>

#include "fovea/optim/optimizer.hpp"

namespace fovea::optim {

struct SgdOptions {
  float momentum = 0.0f;
  float dampening = 0.0f;
  float weight_decay = 0.0f;
  bool nesterov = false;
  DecayRule decay_rule = DecayRule::all;
};

struct Sgd {
  using Options = SgdOptions;
  static constexpr std::string_view name() { return "sgd"; }
  static void validate(const Options& o) {
    FOVEA_CHECK(o.momentum >= 0.0f, "sgd: momentum must be >= 0, got ", o.momentum);
    FOVEA_CHECK(o.weight_decay >= 0.0f, "sgd: weight decay must be >= 0, got ", o.weight_decay);
    FOVEA_CHECK(!o.nesterov || (o.momentum > 0.0f && o.dampening == 0.0f),
                "sgd: Nesterov momentum requires momentum > 0 and dampening 0 (as torch.optim.SGD)");
  }
  static int state_count(const Options& o) { return o.momentum != 0.0f ? 1 : 0; }
  static std::string_view state_name(int) { return "momentum"; }
  static std::uint32_t slot_flags(const Options& o, nn::ParamKind kind) {
    return decay_excluded(o.decay_rule, kind) ? kSlotNoDecay : 0u;
  }
  static void apply(MultiTensorTable& table, const Options& o, float lr, std::int64_t step) {
    sgd_update(table, SgdStep{lr, o.momentum, o.dampening, o.weight_decay, o.nesterov, step == 1});
  }
};

using SgdOptimizer = Optimizer<Sgd>;

}  // namespace fovea::optim
