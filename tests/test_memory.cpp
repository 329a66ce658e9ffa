// tests/test_memory.cpp: buffer release in composed networks on the CPU: backward holds a few
// gradient buffers instead of one per layer, batch-norm outputs are freed after their consumer
// ran, gradients are bitwise those of a network whose layers keep every buffer (user layers
// without the release members), and the image gradient is skipped when nobody needs it.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "fovea/fovea.hpp"
#include "fovea/models/resnet.hpp"
#include "fovea/nn/summary.hpp"
#include "fovea/train/tasks.hpp"

namespace fovea {
namespace {

using namespace fovea::nn;
using namespace fovea::models;

// A user-style layer: wraps L but has only the members of the Layer concept, so it keeps its
// output and input gradient for the whole run (the behaviour before buffers were released).
template <class L>
class Keep {
 public:
  Keep() = default;
  Keep(L layer) : layer_(std::move(layer)) {}  // NOLINT: implicit, like Named
  static constexpr std::string_view kind_name() { return L::kind_name(); }
  Shape setup(const Shape& in, Device device) { return layer_.setup(in, device); }
  Shape output_shape(const Shape& in) const { return layer_.output_shape(in); }
  CView forward(CView x) { return layer_.forward(x); }
  CView backward(CView dy) { return layer_.backward(dy); }
  void set_training(bool t) { layer_.set_training(t); }
  void initialize(InitStream& init) { layer_.initialize(init); }
  template <class F>
  void visit_parameters(const std::string& prefix, F&& f) {
    layer_.visit_parameters(prefix, f);
  }
  template <class F>
  void visit_buffers(const std::string& prefix, F&& f) {
    layer_.visit_buffers(prefix, f);
  }

 private:
  L layer_;
};

template <class L>
concept ReleasesInputGrad = requires(L& l) { l.release_input_grad(); };
static_assert(Layer<Keep<Conv2d>> && ReleasesInputGrad<Conv2d> && !ReleasesInputGrad<Keep<Conv2d>>);

// One network shape, built from plain layers (W = std::type_identity_t) or Keep-wrapped ones:
// stem, a block with an identity shortcut, a strided block with a projection, pooling and a head.
template <template <class> class W>
using TestNet =
    Sequential<W<Conv2d>, W<BatchNorm2d>, W<ReLU>, W<MaxPool2d>,
               Residual<Sequential<W<Conv2d>, W<BatchNorm2d>, W<ReLU>, W<Conv2d>, W<BatchNorm2d>>>,
               Residual<Sequential<W<Conv2d>, W<BatchNorm2d>, W<ReLU>, W<Conv2d>, W<BatchNorm2d>>,
                        Sequential<W<Conv2d>, W<BatchNorm2d>>>,
               W<GlobalAvgPool>, W<Flatten>, W<Linear>>;
template <class L>
using Plain = L;

template <template <class> class W>
TestNet<W> make_test_net() {
  using Body = Sequential<W<Conv2d>, W<BatchNorm2d>, W<ReLU>, W<Conv2d>, W<BatchNorm2d>>;
  return TestNet<W>(Conv2d(6, 3, 1, 1), BatchNorm2d(), ReLU(), MaxPool2d(3, 2, 1),
                    Residual<Body>(Body(Conv2d(6, 3, 1, 1), BatchNorm2d(), ReLU(), Conv2d(6, 3, 1, 1), BatchNorm2d())),
                    Residual<Body, Sequential<W<Conv2d>, W<BatchNorm2d>>>(
                        Body(Conv2d(10, 3, 2, 1), BatchNorm2d(), ReLU(), Conv2d(10, 3, 1, 1), BatchNorm2d()),
                        Sequential<W<Conv2d>, W<BatchNorm2d>>(Conv2d(10, 1, 2, 0), BatchNorm2d())),
                    GlobalAvgPool(), Flatten(), Linear(3));
}

Tensor random_tensor(const Shape& s, unsigned seed) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> v(static_cast<std::size_t>(s.numel()));
  for (auto& e : v) e = nd(gen);
  return Tensor::from(v, s);
}

std::vector<float> host(CView v) {
  std::vector<float> h(static_cast<std::size_t>(v.numel()));
  copy(v, View(h.data(), v.shape(), Device::cpu()));
  return h;
}

std::vector<std::vector<float>> parameter_grads(auto& net) {
  std::vector<std::vector<float>> g;
  net.visit_parameters("", [&](const std::string&, Parameter& p) { g.push_back(p.grad.to_vector()); });
  return g;
}

// Bytes of one forward + backward on the CPU: what forward adds, and the most that backward adds
// on top of the state after forward.
struct StepBytes {
  double activations = 0, backward_extra = 0;
  std::vector<float> output, input_grad;
};
template <class Net>
StepBytes measure_step(Net& net, CView x, CView dy) {
  const Device cpu = Device::cpu();
  StepBytes b;
  const double before = static_cast<double>(memory_stats(cpu).current_bytes);
  b.output = host(net.forward(x));
  const double after_forward = static_cast<double>(memory_stats(cpu).current_bytes);
  b.activations = after_forward - before;
  reset_peak_memory(cpu);
  b.input_grad = host(net.backward(dy));
  b.backward_extra = static_cast<double>(memory_stats(cpu).peak_bytes) - after_forward;
  return b;
}

TEST(BufferRelease, GradientsAreBitwiseThoseOfLayersKeepingEveryBuffer) {
  auto plain = make_test_net<Plain>();
  auto keep = make_test_net<Keep>();
  const Shape in{5, 3, 9, 9};
  plain.setup(in, Device::cpu());
  keep.setup(in, Device::cpu());
  initialize(plain, 4);
  initialize(keep, 4);
  for (unsigned step = 0; step < 2; ++step) {  // the second step runs on released, re-made buffers
    Tensor x = random_tensor(in, 10 + step), dy = random_tensor(Shape{5, 3}, 20 + step);
    const StepBytes p = measure_step(plain, x, dy);
    const StepBytes k = measure_step(keep, x, dy);
    EXPECT_EQ(p.output, k.output) << "step " << step;
    EXPECT_EQ(p.input_grad, k.input_grad) << "step " << step;
    EXPECT_EQ(parameter_grads(plain), parameter_grads(keep)) << "step " << step;
    if (step == 0) {
      // Keep's layers hold a gradient per layer, about as much as the activations; plain layers
      // release them as they go and free the batch-norm outputs after the ReLU or add.
      EXPECT_GT(k.backward_extra, 0.8 * k.activations) << k.backward_extra << " vs " << k.activations;
      EXPECT_LT(p.backward_extra, 0.5 * p.activations) << p.backward_extra << " vs " << p.activations;
      EXPECT_LT(p.activations, 0.8 * k.activations) << p.activations << " vs " << k.activations;
    }
  }
  // Evaluation mode: batch norm keeps no input, so the convolution outputs go too; same outputs.
  set_training(plain, false);
  set_training(keep, false);
  Tensor x = random_tensor(in, 30);
  const double before = static_cast<double>(memory_stats(Device::cpu()).current_bytes);
  const auto out_keep = host(keep.forward(x));
  const auto out_plain = host(plain.forward(x));
  EXPECT_EQ(out_plain, out_keep);
  EXPECT_LT(static_cast<double>(memory_stats(Device::cpu()).current_bytes), before);
}

// The acceptance figure of the change: one forward + backward of a small-stem ResNet-18 on the
// CPU. Before buffers were released, backward added a copy of the activations (ratio 1.2); now it
// holds a few gradient buffers at a time (ratio about 0.3), and a second step allocates no more.
TEST(BufferRelease, ResNet18BackwardHoldsAFewGradientBuffers) {
  ResNet18 net(ResNetConfig{.num_classes = 5, .width = 0.5f, .small_stem = true});
  const Shape in{4, 3, 32, 32};
  net.setup(in, Device::cpu());
  initialize(net, 1);
  set_training(net, true);
  Tensor x = random_tensor(in, 1), dy = random_tensor(Shape{4, 5}, 2);
  const StepBytes first = measure_step(net, x, dy);
  const double after_first = static_cast<double>(memory_stats(Device::cpu()).current_bytes);
  EXPECT_LT(first.backward_extra, 0.4 * first.activations)
      << "backward added " << first.backward_extra << " bytes to " << first.activations << " of activations";
  const StepBytes second = measure_step(net, x, dy);
  EXPECT_EQ(second.input_grad, first.input_grad);
  EXPECT_LE(second.activations, 0.0);
  EXPECT_LT(second.backward_extra, 0.4 * first.activations);
  EXPECT_EQ(static_cast<double>(memory_stats(Device::cpu()).current_bytes), after_first);
  // What the network holds between steps: its activations and the image gradient, nothing else.
  release_input_grad(net);
  EXPECT_EQ(static_cast<double>(memory_stats(Device::cpu()).current_bytes),
            after_first - static_cast<double>(in.numel() * sizeof(float)));
}

TEST(InputGradient, SkippedWhenNotNeededWithIdenticalParameterGradients) {
  ResNet18 net(ResNetConfig{.num_classes = 3, .width = 0.125f, .small_stem = true});
  const Shape in{3, 3, 16, 16};
  net.setup(in, Device::cpu());
  initialize(net, 5);
  Tensor x = random_tensor(in, 3), dy = random_tensor(Shape{3, 3}, 4);
  net.forward(x);
  const auto dx = host(net.backward(dy));
  const auto grads = parameter_grads(net);
  EXPECT_FALSE(dx.empty());

  set_input_grad(net, false);  // reaches the stem convolution through Classifier and the backbone
  net.forward(x);
  EXPECT_EQ(net.backward(dy).data(), nullptr);
  EXPECT_EQ(parameter_grads(net), grads);

  set_input_grad(net, true);
  net.forward(x);
  EXPECT_EQ(host(net.backward(dy)), dx);
}

// set_param_grad(net, false): backward skips the backward-filter convolutions and the linear
// layer's weight gradient, gives the same input gradient bit for bit and leaves every parameter
// gradient as it was (here poisoned with NaN); back on, backward writes them again.
TEST(ParameterGradient, SkippedWhenNotNeededWithIdenticalInputGradients) {
  ResNet18 net(ResNetConfig{.num_classes = 3, .width = 0.125f, .small_stem = true});
  const Shape in{3, 3, 16, 16};
  net.setup(in, Device::cpu());
  initialize(net, 8);
  Tensor x = random_tensor(in, 9), dy = random_tensor(Shape{3, 3}, 10);
  net.forward(x);
  const auto dx = host(net.backward(dy));
  const auto grads = parameter_grads(net);

  int poisoned = 0;
  net.visit_parameters("", [&](const std::string&, Parameter& p) {
    fill(p.grad.view(), std::numeric_limits<float>::quiet_NaN());
    ++poisoned;
  });
  set_param_grad(net, false);
  net.forward(x);
  EXPECT_EQ(host(net.backward(dy)), dx);
  int untouched = 0, written = 0;
  net.visit_parameters("", [&](const std::string& name, Parameter& p) {
    const auto g = p.grad.to_vector();
    const bool all_nan = std::all_of(g.begin(), g.end(), [](float v) { return std::isnan(v); });
    // BatchNorm2d in training mode computes dgamma / dbeta with its input gradient (one kernel).
    if (all_nan) ++untouched;
    else {
      ++written;
      EXPECT_EQ(p.kind, ParamKind::norm) << name << ": written with set_param_grad(false)";
    }
  });
  EXPECT_GT(untouched, 20) << "conv and fc parameters left alone: " << untouched << " of " << poisoned;

  set_param_grad(net, true);
  net.forward(x);
  EXPECT_EQ(host(net.backward(dy)), dx);
  EXPECT_EQ(parameter_grads(net), grads);
}

TEST(InputGradient, TrainingTasksSwitchItOff) {
  ResNet18 net(ResNetConfig{.num_classes = 2, .width = 0.125f, .small_stem = true});
  const Shape in{2, 3, 16, 16};
  net.setup(in, Device::cpu());
  initialize(net, 6);
  train::ClassifierTask<ResNet18> task(net, Device::cpu());
  train::Batch batch;
  batch.images = random_tensor(in, 7);
  batch.labels = Tensor::from({0.0f, 1.0f}, Shape{2});
  task.set_training(true);
  task.train_step(batch);
  net.forward(batch.images);
  EXPECT_EQ(net.backward(full(Shape{2, 2}, 0.5f)).data(), nullptr);
}

TEST(BatchNormLayer, BackwardAfterAnEvaluationForwardIsAClearError) {
  BatchNorm2d bn;
  const Shape in{4, 2, 3, 3};
  bn.setup(in, Device::cpu());
  InitStream init(0);
  bn.initialize(init);
  Tensor x = random_tensor(in, 8);
  bn.set_training(false);
  bn.forward(x);
  EXPECT_FALSE(bn.keeps_input());
  bn.set_training(true);
  try {
    bn.backward(x);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("evaluation mode"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace fovea
