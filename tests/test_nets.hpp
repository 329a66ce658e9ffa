// tests/test_nets.hpp: what the tests that build networks share. randomize_batch_norm gives a
// freshly initialised network batch-norm layers that are not the identity in evaluation mode, the
// tests' stand-in for a trained network (attribution, Grad-CAM, LRP, randomisation checks).
#pragma once

#include <cstdint>
#include <string>

#include "fovea/fovea.hpp"
#include "fovea/nn/layer.hpp"

namespace fovea::testing {

// Every batch norm's gamma ~ U(0.5, 1.5), beta ~ U(-0.2, 0.2), running mean ~ U(-0.3, 0.3) and
// running variance ~ U(0.5, 2), each tensor from its own seed: seed, seed + 1, ... in visiting order
// (parameters first, then buffers).
template <class Net>
void randomize_batch_norm(Net& net, std::uint64_t seed) {
  net.visit_parameters("", [&](const std::string& name, nn::Parameter& p) {
    if (p.kind != nn::ParamKind::norm) return;
    const bool gamma = name.ends_with("weight");
    random_uniform(p.value, RandomKey{.seed = seed++}, gamma ? 0.5f : -0.2f, gamma ? 1.5f : 0.2f);
  });
  net.visit_buffers("", [&](const std::string& name, Tensor& t) {
    const bool mean = name.ends_with("running_mean");
    random_uniform(t, RandomKey{.seed = seed++}, mean ? -0.3f : 0.5f, mean ? 0.3f : 2.0f);
  });
}

}  // namespace fovea::testing
