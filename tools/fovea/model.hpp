// tools/fovea/model.hpp: the fovea program's view of a classifier: one interface over ResNet-18/34/50,
// so the command-line code compiles apart from the network templates (one translation unit per arch).
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include "fovea/core/tensor.hpp"
#include "fovea/io/safetensors.hpp"
#include "fovea/models/resnet.hpp"
#include "fovea/nn/state.hpp"
#include "fovea/nn/tap.hpp"

namespace fovea::tools {

// A classifier behind a virtual interface; see fovea/nn/summary.hpp and fovea/nn/weights.hpp for what
// each call does.
class Model {
 public:
  virtual ~Model() = default;
  virtual Shape setup(const Shape& input, Device device) = 0;  // input (N, 3, H, W) -> (N, K)
  virtual void initialize(std::uint64_t seed) = 0;
  virtual void set_training(bool training) = 0;
  virtual std::int64_t parameter_count() = 0;
  virtual void print_summary(const Shape& input, std::ostream& os) = 0;
  virtual nn::LoadReport load_weights(const std::filesystem::path& path, const nn::LoadOptions& options) = 0;
  virtual void save_weights(const std::filesystem::path& path, const io::SafeTensorsMetadata& metadata) = 0;
  virtual CView forward(CView x) = 0;  // (N, 3, H, W) -> (N, K)
  // A state dict already in memory (e.g. the "model." tensors of a training checkpoint).
  virtual nn::LoadReport load_state(const nn::StateDict& state, const nn::LoadOptions& options) = 0;
  // Activation capture (fovea/nn/tap.hpp): every leaf layer in network order, and hooking a tap to
  // the ones it selects (returns how many; the tap detaches itself when destroyed).
  virtual std::vector<nn::TapSite> tap_sites() = 0;
  virtual std::size_t attach_tap(nn::ActivationTap& tap) = 0;
};

// The architectures the program knows, in the order --help lists them.
inline const std::vector<std::string>& architectures() {
  static const std::vector<std::string> names{"resnet18", "resnet34", "resnet50"};
  return names;
}

// Defined in resnet18.cpp, resnet34.cpp, resnet50.cpp.
std::unique_ptr<Model> make_resnet18(const models::ResNetConfig& config);
std::unique_ptr<Model> make_resnet34(const models::ResNetConfig& config);
std::unique_ptr<Model> make_resnet50(const models::ResNetConfig& config);

// requires: arch is one of architectures().
inline std::unique_ptr<Model> make_model(const std::string& arch, const models::ResNetConfig& config) {
  if (arch == "resnet18") return make_resnet18(config);
  if (arch == "resnet34") return make_resnet34(config);
  if (arch == "resnet50") return make_resnet50(config);
  FOVEA_FAIL("unknown architecture '", arch, "' (expected resnet18, resnet34 or resnet50)");
}

}  // namespace fovea::tools
