// tools/fovea/resnet50.cpp: the fovea program's ResNet-50 (its own translation unit: builds in parallel).
#include "model_impl.hpp"

namespace fovea::tools {

std::unique_ptr<Model> make_resnet50(const models::ResNetConfig& config) {
  return std::make_unique<ModelImpl<models::ResNet50>>(config);
}

}  // namespace fovea::tools
