// tools/fovea/model_impl.hpp: Model implemented by a composed network type; included only by the
// per-architecture translation units (resnet18.cpp, ...), which each instantiate it once.
#pragma once

#include <memory>

#include "fovea/nn/summary.hpp"
#include "fovea/nn/weights.hpp"
#include "model.hpp"

namespace fovea::tools {

template <class Net>
class ModelImpl final : public Model {
 public:
  explicit ModelImpl(const models::ResNetConfig& config) : net_(config) {}
  Shape setup(const Shape& input, Device device) override { return net_.setup(input, device); }
  void initialize(std::uint64_t seed) override { nn::initialize(net_, seed); }
  void set_training(bool training) override { nn::set_training(net_, training); }
  std::int64_t parameter_count() override { return nn::count_parameters(net_); }
  void print_summary(const Shape& input, std::ostream& os) override { nn::print_summary(net_, input, os); }
  nn::LoadReport load_weights(const std::filesystem::path& path, const nn::LoadOptions& options) override {
    return nn::load_weights(net_, path, options);
  }
  void save_weights(const std::filesystem::path& path, const io::SafeTensorsMetadata& metadata) override {
    nn::save_weights(net_, path, metadata);
  }
  CView forward(CView x) override { return net_.forward(x); }
  nn::LoadReport load_state(const nn::StateDict& state, const nn::LoadOptions& options) override {
    return nn::load_state(net_, state, options);
  }
  std::vector<nn::TapSite> tap_sites() override { return nn::tap_sites(net_); }
  std::size_t attach_tap(nn::ActivationTap& tap) override { return tap.attach(net_); }

 private:
  Net net_;
};

}  // namespace fovea::tools
