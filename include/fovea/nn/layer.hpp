// fovea/nn/layer.hpp: what a layer is. The Layer concept with readable static_assert messages,
// parameters and buffers with their kind, naming helpers, and the initialisation stream.
//
// Layers are Tier A: composed at compile time (nn/compose.hpp), they call only Tier-B ops, so no
// network type ever instantiates a kernel. A layer
//   - infers its output shape and allocates its parameters in setup(input_shape, device);
//   - runs forward(x) -> y and backward(dy) -> dx on views it owns (valid until its next call);
//     forward keeps a view of x for backward, so x must stay unchanged until backward returns;
//   - writes (does not accumulate) its parameter gradients in backward;
//   - lists parameters (weight, bias, norm) and buffers (running statistics) under torchvision
//     style names through visit_parameters / visit_buffers.
// Optional members, found with `requires` and called through the free helpers below (a layer
// without them still works; it just keeps its buffers for the whole run):
//   - release_input_grad(): the caller has consumed the view returned by the last backward; free
//     the input gradient and any other backward-only buffer;
//   - release_output(): nobody reads the view returned by the last forward any more; free the
//     output unless the layer's own backward needs it;
//   - keeps_input() -> bool: false when, after forward returns, the layer holds no view of its
//     input and its output does not alias it (so the producer of the input may release_output);
//   - set_input_grad(bool): false when nobody needs the input gradient (the image gradient of the
//     first layer): backward may then skip computing it and return a null view (data() nullptr);
//   - set_param_grad(bool): false when nobody needs the parameter gradients (attribution maps):
//     backward may then leave them unwritten. nn::set_param_grad(net, b) sets it on every layer.
// Composites call these on their children as soon as a buffer is dead (nn/compose.hpp), so only
// the views returned by the outermost forward and backward stay valid until the next call.
#pragma once

#include <concepts>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>

#include "fovea/core/random.hpp"
#include "fovea/core/tensor.hpp"

namespace fovea::nn {

// Optimizers treat kinds differently (LARS and weight decay skip biases and norm parameters).
enum class ParamKind { weight, bias, norm };

inline const char* to_string(ParamKind k) {
  switch (k) {
    case ParamKind::weight: return "weight";
    case ParamKind::bias: return "bias";
    case ParamKind::norm: return "norm";
  }
  return "?";
}

// A trainable tensor and its gradient (same shape and device).
struct Parameter {
  Tensor value;
  Tensor grad;
  ParamKind kind = ParamKind::weight;

  void allocate(const Shape& shape, Device device, ParamKind k) {
    value = Tensor(shape, device);
    grad = Tensor(shape, device);
    kind = k;
  }
  bool defined() const { return value.data() != nullptr; }
};

// "a.b" joining that skips empty parts.
inline std::string join_name(std::string_view prefix, std::string_view name) {
  if (prefix.empty()) return std::string(name);
  if (name.empty()) return std::string(prefix);
  std::string s(prefix);
  s += '.';
  s += name;
  return s;
}

// Hands out one Philox key per parameter tensor, in visiting order, so initialisation is a pure
// function of (seed, parameter order).
class InitStream {
 public:
  explicit InitStream(std::uint64_t seed) : seed_(seed) {}
  RandomKey next() { return RandomKey{seed_, kPurposeInit, 0, counter_++, 0}; }

 private:
  std::uint64_t seed_;
  std::uint32_t counter_ = 0;
};

// Archetypes used to check the concept (the real visitors are generic lambdas).
struct ParameterVisitorArchetype {
  void operator()(const std::string&, Parameter&) const {}
};
struct BufferVisitorArchetype {
  void operator()(const std::string&, Tensor&) const {}
};

template <class L>
concept Layer = requires(L& l, const L& cl, const Shape& s, Device d, CView x, bool b, InitStream& init,
                         const std::string& prefix) {
  { l.setup(s, d) } -> std::same_as<Shape>;
  { cl.output_shape(s) } -> std::same_as<Shape>;
  { l.forward(x) } -> std::same_as<CView>;
  { l.backward(x) } -> std::same_as<CView>;
  { l.set_training(b) };
  { l.initialize(init) };
  { l.visit_parameters(prefix, ParameterVisitorArchetype{}) };
  { l.visit_buffers(prefix, BufferVisitorArchetype{}) };
  { L::kind_name() } -> std::convertible_to<std::string_view>;
};

// Explains which member a type lacks; composites call it for every child.
template <class L>
constexpr bool check_layer() {
  static_assert(requires(L& l, const Shape& s, Device d) { { l.setup(s, d) } -> std::same_as<Shape>; },
                "fovea layer: missing `Shape setup(const Shape& input, Device device)`");
  static_assert(requires(const L& l, const Shape& s) { { l.output_shape(s) } -> std::same_as<Shape>; },
                "fovea layer: missing `Shape output_shape(const Shape& input) const`");
  static_assert(requires(L& l, CView x) { { l.forward(x) } -> std::same_as<CView>; },
                "fovea layer: missing `CView forward(CView x)`");
  static_assert(requires(L& l, CView dy) { { l.backward(dy) } -> std::same_as<CView>; },
                "fovea layer: missing `CView backward(CView dy)`");
  static_assert(requires(L& l, bool b) { l.set_training(b); }, "fovea layer: missing `void set_training(bool)`");
  static_assert(requires(L& l, InitStream& s) { l.initialize(s); },
                "fovea layer: missing `void initialize(InitStream&)`");
  static_assert(requires(L& l, const std::string& p) { l.visit_parameters(p, ParameterVisitorArchetype{}); },
                "fovea layer: missing `template <class F> void visit_parameters(const std::string& prefix, F&& f)`");
  static_assert(requires(L& l, const std::string& p) { l.visit_buffers(p, BufferVisitorArchetype{}); },
                "fovea layer: missing `template <class F> void visit_buffers(const std::string& prefix, F&& f)`");
  static_assert(requires { { L::kind_name() } -> std::convertible_to<std::string_view>; },
                "fovea layer: missing `static constexpr std::string_view kind_name()`");
  return true;
}

// Owned activation buffers of a leaf layer: the output and the input gradient, resized to the
// shapes of the current call (the batch may change between calls) and freed by the release members.
struct Activations {
  Tensor y;    // forward output
  Tensor dx;   // gradient with respect to the input
  CView x;     // the last forward input (not owned)

  View output_for(const Shape& shape, Device device) {
    if (y.device() != device || y.data() == nullptr) y = Tensor(shape, device);
    else y.resize(shape);
    return y.view();
  }
  View input_grad_for(const Shape& shape, Device device) {
    if (dx.device() != device || dx.data() == nullptr) dx = Tensor(shape, device);
    else dx.resize(shape);
    return dx.view();
  }
  void release_output() { y = Tensor(); }
  void release_input_grad() { dx = Tensor(); }
};

// Do two views share memory? (Empty and null views share none.) Composites use it to see whether
// a child passed a buffer through (Identity, Flatten) instead of writing its own.
inline bool views_overlap(CView a, CView b) {
  if (a.data() == nullptr || b.data() == nullptr || a.empty() || b.empty() || !(a.device() == b.device()))
    return false;
  return a.data() < b.data() + b.numel() && b.data() < a.data() + a.numel();
}

// The optional members, with their defaults for layers that lack them.
template <class L>
void release_input_grad(L& layer) {
  if constexpr (requires { layer.release_input_grad(); }) layer.release_input_grad();
}
template <class L>
void release_output(L& layer) {
  if constexpr (requires { layer.release_output(); }) layer.release_output();
}
template <class L>
bool keeps_input(const L& layer) {
  if constexpr (requires { { layer.keeps_input() } -> std::convertible_to<bool>; }) return layer.keeps_input();
  else return true;
}
template <class L>
void set_input_grad(L& layer, bool needed) {
  if constexpr (requires { layer.set_input_grad(needed); }) layer.set_input_grad(needed);
}
template <class L>
void set_param_grad_of(L& layer, bool needed) {
  if constexpr (requires { layer.set_param_grad(needed); }) layer.set_param_grad(needed);
}

}  // namespace fovea::nn
