// fovea/models/resnet.hpp: ResNet-18, -34 and -50 in torchvision's layout (ResNet-50 v1.5: the
// stride sits on the 3x3 convolution), with a width multiplier and a small-image stem, plus the
// classifier and contrastive-projection heads. State-dict names match torchvision
// (conv1.weight, bn1.running_mean, layer1.0.downsample.0.weight, fc.weight, ...).
#pragma once

#include <cmath>
#include <cstddef>
#include <string>

#include "fovea/nn/compose.hpp"
#include "fovea/nn/layers.hpp"

namespace fovea::models {

using namespace fovea::nn;  // NOLINT: model definitions read better with the layer names bare

struct ResNetConfig {
  int num_classes = 1000;          // classifier outputs (ignored by backbones and projection models)
  float width = 1.0f;              // multiplies every stage's channel count (64, 128, 256, 512)
  bool small_stem = false;         // 3x3 stride-1 stem, no max-pool: for 32-128 px inputs
  bool zero_init_residual = false; // gamma = 0 in each block's last batch norm
  float bn_eps = 1e-5f;
  float bn_momentum = 0.1f;
};

// A projection shortcut (1x1 conv + BN) present only when the block changes shape.
using Downsample = Named<"downsample", Optional<Sequential<Conv2d, BatchNorm2d>>>;

using BasicBody = Sequential<Named<"conv1", Conv2d>, Named<"bn1", BatchNorm2d>, ReLU, Named<"conv2", Conv2d>,
                             Named<"bn2", BatchNorm2d>>;
struct BasicBlock : Residual<BasicBody, Downsample> {
  static constexpr int kExpansion = 1;
  using Residual::Residual;
};

using BottleneckBody = Sequential<Named<"conv1", Conv2d>, Named<"bn1", BatchNorm2d>, ReLU, Named<"conv2", Conv2d>,
                                  Named<"bn2", BatchNorm2d>, ReLU, Named<"conv3", Conv2d>, Named<"bn3", BatchNorm2d>>;
struct Bottleneck : Residual<BottleneckBody, Downsample> {
  static constexpr int kExpansion = 4;
  using Residual::Residual;
};

namespace detail {

inline int scaled_channels(int base, float width) {
  const int c = static_cast<int>(std::lround(base * width));
  FOVEA_CHECK(c > 0, "ResNet width ", width, " leaves ", c, " channels");
  return c;
}
inline BatchNorm2d norm(const ResNetConfig& cfg, bool zero_init = false) {
  return BatchNorm2d(cfg.bn_eps, cfg.bn_momentum, zero_init);
}
inline Downsample downsample(int in_channels, int out_channels, int stride, const ResNetConfig& cfg) {
  const bool needed = stride != 1 || in_channels != out_channels;
  return Downsample(Optional<Sequential<Conv2d, BatchNorm2d>>(
      Sequential<Conv2d, BatchNorm2d>(Conv2d(out_channels, 1, stride, 0), norm(cfg)), needed));
}

template <class Block>
Block make_block(int in_channels, int planes, int stride, const ResNetConfig& cfg);

template <>
inline BasicBlock make_block<BasicBlock>(int in_channels, int planes, int stride, const ResNetConfig& cfg) {
  return BasicBlock(BasicBody(Conv2d(planes, 3, stride, 1), norm(cfg), ReLU(), Conv2d(planes, 3, 1, 1),
                              norm(cfg, cfg.zero_init_residual)),
                    downsample(in_channels, planes, stride, cfg));
}

template <>
inline Bottleneck make_block<Bottleneck>(int in_channels, int planes, int stride, const ResNetConfig& cfg) {
  const int out = planes * Bottleneck::kExpansion;
  return Bottleneck(BottleneckBody(Conv2d(planes, 1, 1, 0), norm(cfg), ReLU(), Conv2d(planes, 3, stride, 1),
                                   norm(cfg), ReLU(), Conv2d(out, 1, 1, 0), norm(cfg, cfg.zero_init_residual)),
                    downsample(in_channels, out, stride, cfg));
}

}  // namespace detail

// The backbone: stem, four stages, global average pool, flatten: (N, 3, H, W) -> (N, features).
template <class Block, std::size_t N1, std::size_t N2, std::size_t N3, std::size_t N4>
struct ResNetBackbone
    : Sequential<Named<"conv1", Conv2d>, Named<"bn1", BatchNorm2d>, ReLU, Named<"maxpool", Optional<MaxPool2d>>,
                 Named<"layer1", Repeat<N1, Block>>, Named<"layer2", Repeat<N2, Block>>,
                 Named<"layer3", Repeat<N3, Block>>, Named<"layer4", Repeat<N4, Block>>,
                 Named<"avgpool", GlobalAvgPool>, Flatten> {
  using Base = Sequential<Named<"conv1", Conv2d>, Named<"bn1", BatchNorm2d>, ReLU, Named<"maxpool", Optional<MaxPool2d>>,
                          Named<"layer1", Repeat<N1, Block>>, Named<"layer2", Repeat<N2, Block>>,
                          Named<"layer3", Repeat<N3, Block>>, Named<"layer4", Repeat<N4, Block>>,
                          Named<"avgpool", GlobalAvgPool>, Flatten>;
  using BlockType = Block;

  ResNetBackbone() = default;
  explicit ResNetBackbone(const ResNetConfig& cfg) : Base(make(cfg)) {}

  // Channels of the flattened output (2048 for ResNet-50 at width 1).
  static int features(const ResNetConfig& cfg) {
    return detail::scaled_channels(512, cfg.width) * Block::kExpansion;
  }

 private:
  template <std::size_t N>
  static Repeat<N, Block> stage(int& in_channels, int base, int stride, const ResNetConfig& cfg) {
    const int planes = detail::scaled_channels(base, cfg.width);
    const int in0 = in_channels;
    in_channels = planes * Block::kExpansion;
    return Repeat<N, Block>([&](std::size_t i) {
      return detail::make_block<Block>(i == 0 ? in0 : planes * Block::kExpansion, planes, i == 0 ? stride : 1, cfg);
    });
  }
  static Base make(const ResNetConfig& cfg) {
    const int stem = detail::scaled_channels(64, cfg.width);
    int channels = stem;
    auto l1 = stage<N1>(channels, 64, 1, cfg);
    auto l2 = stage<N2>(channels, 128, 2, cfg);
    auto l3 = stage<N3>(channels, 256, 2, cfg);
    auto l4 = stage<N4>(channels, 512, 2, cfg);
    return Base(cfg.small_stem ? Conv2d(stem, 3, 1, 1) : Conv2d(stem, 7, 2, 3), detail::norm(cfg), ReLU(),
                Optional<MaxPool2d>(MaxPool2d(3, 2, 1), !cfg.small_stem), std::move(l1), std::move(l2),
                std::move(l3), std::move(l4), GlobalAvgPool(), Flatten());
  }
};

using ResNet18Backbone = ResNetBackbone<BasicBlock, 2, 2, 2, 2>;
using ResNet34Backbone = ResNetBackbone<BasicBlock, 3, 4, 6, 3>;
using ResNet50Backbone = ResNetBackbone<Bottleneck, 3, 4, 6, 3>;

// Backbone + Linear classifier named "fc" (torchvision's layout). init selects the head's
// initialisation: the study's N(0, 0.01) (default) or PyTorch's Linear default (torchvision's).
template <class Backbone>
struct Classifier : Sequential<Inline<Backbone>, Named<"fc", Linear>> {
  using Base = Sequential<Inline<Backbone>, Named<"fc", Linear>>;
  Classifier() = default;
  explicit Classifier(const ResNetConfig& cfg, Linear::Init init = Linear::Init::normal_001)
      : Base(Inline<Backbone>(Backbone(cfg)), Named<"fc", Linear>(Linear(cfg.num_classes, true, init))) {}
  Backbone& backbone() { return this->template get<0>(); }
  Linear& fc() { return this->template get<1>(); }
};

// The contrastive projection MLP: Linear(hidden) -> ReLU -> Linear(out), e.g. 2048 -> 2048 -> 128
// (MoCo v2, SimCLR). Keys head.0.* and head.2.*.
struct ProjectionHead : Sequential<Linear, ReLU, Linear> {
  using Base = Sequential<Linear, ReLU, Linear>;
  ProjectionHead() = default;
  ProjectionHead(int hidden, int out) : Base(Linear(hidden), ReLU(), Linear(out)) {}
};

// Backbone + projection head named "head": what contrastive pretraining trains.
template <class Backbone>
struct ContrastiveModel : Sequential<Inline<Backbone>, Named<"head", ProjectionHead>> {
  using Base = Sequential<Inline<Backbone>, Named<"head", ProjectionHead>>;
  ContrastiveModel() = default;
  ContrastiveModel(const ResNetConfig& cfg, int hidden, int out)
      : Base(Inline<Backbone>(Backbone(cfg)), Named<"head", ProjectionHead>(ProjectionHead(hidden, out))) {}
  Backbone& backbone() { return this->template get<0>(); }
};

using ResNet18 = Classifier<ResNet18Backbone>;
using ResNet34 = Classifier<ResNet34Backbone>;
using ResNet50 = Classifier<ResNet50Backbone>;

}  // namespace fovea::models
