// tools/fovea/resnet34.cpp: the fovea program's ResNet-34 (its own translation unit: builds in parallel).
#include "model_impl.hpp"

namespace fovea::tools {

std::unique_ptr<Model> make_resnet34(const models::ResNetConfig& config) {
  return std::make_unique<ModelImpl<models::ResNet34>>(config);
}

}  // namespace fovea::tools
