// tools/fovea/resnet18.cpp: the fovea program's ResNet-18 (its own translation unit: builds in parallel).
#include "model_impl.hpp"

namespace fovea::tools {

std::unique_ptr<Model> make_resnet18(const models::ResNetConfig& config) {
  return std::make_unique<ModelImpl<models::ResNet18>>(config);
}

}  // namespace fovea::tools
