// tests/tap_helpers.hpp: what the activation-tap tests (test_tap.cpp, cuda/test_tap_cuda.cpp)
// share: a tiny ResNet-18 with warmed-up batch-norm statistics, and a tap that keeps host copies of
// what it sees.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <initializer_list>
#include <string>
#include <vector>

#include "fovea/fovea.hpp"
#include "fovea/models/resnet.hpp"
#include "fovea/nn/summary.hpp"  // initialize, set_training
#include "fovea/nn/tap.hpp"

namespace fovea::tap_test {

using namespace fovea::nn;
using namespace fovea::models;

// A width-0.125 ResNet-18 (8 stem channels) on 32 px inputs, with running statistics away from
// their initial 0 / 1 (one training-mode forward), in evaluation mode.
struct TinyNet {
  ResNet18 net{ResNetConfig{.num_classes = 5, .width = 0.125f}};
  Tensor input;

  explicit TinyNet(Device device = Device::cpu(), std::int64_t n = 3) {
    const Shape in{n, 3, 32, 32};
    net.setup(in, device);
    nn::initialize(net, 4);
    Tensor x(in);
    random_normal(x, RandomKey{.seed = 17}, 0.0f, 1.0f);
    input = x.to(device);
    Tensor warm(in);
    random_normal(warm, RandomKey{.seed = 18}, 0.5f, 2.0f);
    const Tensor warm_d = warm.to(device);
    net.forward(warm_d);
    nn::set_training(net, false);
  }
};

inline std::vector<float> host_copy(CView y) {
  std::vector<float> v(static_cast<std::size_t>(y.numel()));
  copy(y, View(v.data(), y.shape(), Device::cpu()));
  return v;
}

struct Captured {
  TapSite site;
  Shape shape, input_shape;
  std::vector<float> y, x;
};

// A tap that keeps host copies of every selected output (and input).
struct Recorder {
  std::vector<Captured> seen;
  ActivationTap tap;
  explicit Recorder(TapSelector select = {})
      : tap(
            [this](const TapSite& site, CView x, CView y) {
              seen.push_back(Captured{site, y.shape(), x.shape(), host_copy(y), host_copy(x)});
            },
            std::move(select)) {}
  const Captured& at(const std::string& path) const {
    for (const auto& c : seen)
      if (c.site.path == path) return c;
    ADD_FAILURE() << "no capture of " << path;
    static const Captured none{};
    return none;
  }
};

inline TapSelector kinds(std::initializer_list<LayerKind> ks) {
  std::vector<LayerKind> v(ks);
  return [v](const TapSite& s) { return std::find(v.begin(), v.end(), s.kind) != v.end(); };
}

}  // namespace fovea::tap_test
