// fovea/nn/compose.hpp: compile-time composition of layers. Sequential<Ls...> (a flat variadic
// pack, run with fold expressions), Named<"name", L> and Inline<L> (how children are named),
// Residual<Body, Shortcut> (y = relu(body(x) + shortcut(x))), Repeat<N, Block> (N blocks of one
// type in an array: depth stays out of the type), Optional<L> (a layer switched on or off at
// construction, e.g. a projection shortcut). Plus at<I>(net) and visit_layers(net, f).
//
// Naming (torchvision's state-dict keys): a Sequential names its children by index ("0", "1", ...)
// unless a child is Named (its name) or Inline (no name of its own: its children's names appear at
// the parent's level). Residual and Optional add no name of their own.
//
// Buffers (the optional members of nn/layer.hpp): Sequential and Repeat release a child's output
// once the next child has run and kept no view of it, and a child's input gradient once the
// previous child's backward has consumed it (unless that child passed it through); Residual
// releases its branches' outputs after the add and their input gradients after its own backward.
// So a network holds its forward activations, not a copy of them in gradients: backward keeps a
// few gradient buffers alive at a time. Named and Inline inherit the members of what they wrap.
//
// Activation capture (nn/tap.hpp): each composite keeps a TapHook per child and runs its children
// through detail::forward_child, which tests the child's hook after its forward (one null-pointer
// test; an attached ActivationTap gets the output before the next layer runs), and backward through
// detail::backward_child, which tests it before the child's backward (a tap with a gradient callback
// gets the gradient with respect to the child's output). visit_child_hooks lists (path, child, hook)
// as visit_children lists (path, child).
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "fovea/nn/layer.hpp"
#include "fovea/nn/layers.hpp"
#include "fovea/nn/tap.hpp"

namespace fovea::nn {

// A string usable as a template argument: Named<"conv1", Conv2d>.
template <std::size_t N>
struct FixedString {
  char chars[N]{};
  constexpr FixedString(const char (&s)[N]) { std::copy_n(s, N, chars); }  // NOLINT: implicit by design
  constexpr std::string_view view() const { return std::string_view(chars, N - 1); }
};

// L under a fixed name.
template <FixedString Name, class L>
class Named : public L {
  static_assert(check_layer<L>());

 public:
  using Inner = L;
  static constexpr std::string_view layer_name() { return Name.view(); }
  Named() = default;
  Named(L layer) : L(std::move(layer)) {}  // NOLINT: implicit, so Sequential{Conv2d(...), ...} works
  L& inner() { return *this; }
};

// L whose children are named at the parent's level.
template <class L>
class Inline : public L {
  static_assert(check_layer<L>());

 public:
  using Inner = L;
  static constexpr bool inline_names = true;
  Inline() = default;
  Inline(L layer) : L(std::move(layer)) {}  // NOLINT
  L& inner() { return *this; }
};

namespace detail {
template <class L>
concept HasLayerName = requires { { L::layer_name() } -> std::convertible_to<std::string_view>; };
template <class L>
concept HasInlineNames = requires { requires L::inline_names; };

// The name of child I of type L inside a Sequential.
template <class L>
std::string child_name(std::size_t index) {
  if constexpr (HasLayerName<L>) return std::string(L::layer_name());
  else if constexpr (HasInlineNames<L>) return std::string();
  else return std::to_string(index);
}

// The prefix under which a wrapper (Residual, Optional) shows child L: its name if Named.
template <class L>
std::string wrapped_prefix(const std::string& prefix) {
  if constexpr (HasLayerName<L>) return join_name(prefix, L::layer_name());
  else return prefix;
}

// Output shapes seen by output_shape() while a ShapeRecorder is active (print_summary uses it).
inline std::vector<std::pair<const void*, Shape>>*& shape_record() {
  thread_local std::vector<std::pair<const void*, Shape>>* record = nullptr;
  return record;
}
inline Shape record_shape(const void* layer, const Shape& s) {
  if (auto* r = shape_record()) r->emplace_back(layer, s);
  return s;
}
// detail::Composite (does L contain children, so visit_layers recurses?) is in nn/tap.hpp.
}  // namespace detail

// visit_layers(layer, f): calls f(path, layer) for `layer` and, depth first in network order, every
// layer inside it. Paths are the state-dict prefixes ("layer1.0.conv2"); unnamed wrappers report
// the path of what they wrap.
template <class L, class F>
void visit_layers(L& layer, F&& f, const std::string& path = "") {
  f(path, layer);
  if constexpr (detail::Composite<L>) {
    layer.visit_children(path, [&](const std::string& child_path, auto& child) { visit_layers(child, f, child_path); });
  }
}

// set_param_grad(net, needed): whether backward writes the parameter gradients, on every layer of
// `net` that can skip them (Conv2d, Linear). Off, backward computes only what the input gradient
// needs: an attribution map's backward pass skips the backward-filter convolutions. Training needs
// it on (the default).
template <class L>
void set_param_grad(L& net, bool needed) {
  visit_layers(net, [needed](const std::string&, auto& layer) { set_param_grad_of(layer, needed); });
}

// Layers run one after the other.
template <class... Ls>
class Sequential {
  static_assert(sizeof...(Ls) > 0, "fovea: Sequential needs at least one layer");
  static_assert((check_layer<Ls>() && ...));

 public:
  Sequential() = default;
  explicit Sequential(Ls... layers) : children_(std::move(layers)...) {}
  static constexpr std::string_view kind_name() { return "Sequential"; }
  static constexpr std::size_t size() { return sizeof...(Ls); }

  template <std::size_t I>
  auto& get() { return std::get<I>(children_); }

  Shape output_shape(const Shape& in) const {
    Shape s = in;
    std::apply([&](const auto&... c) { ((s = detail::record_shape(&c, c.output_shape(s))), ...); }, children_);
    return s;
  }
  Shape setup(const Shape& in, Device device) {
    Shape s = in;
    std::apply([&](auto&... c) { ((s = c.setup(s, device)), ...); }, children_);
    return s;
  }
  void initialize(InitStream& init) {
    std::apply([&](auto&... c) { (c.initialize(init), ...); }, children_);
  }
  CView forward(CView x) { return forward_from<0>(x); }
  CView backward(CView dy) {
    backward_from<sizeof...(Ls)>(dy, sizeof...(Ls));
    return dy_;
  }
  // Every child's input gradient (the ones still held alias the view backward returned).
  void release_input_grad() { release_input_grads(0, sizeof...(Ls)); }
  void release_output() { nn::release_output(std::get<sizeof...(Ls) - 1>(children_)); }
  bool keeps_input() const { return nn::keeps_input(std::get<0>(children_)); }
  void set_input_grad(bool needed) { nn::set_input_grad(std::get<0>(children_), needed); }
  void set_training(bool t) {
    std::apply([&](auto&... c) { (c.set_training(t), ...); }, children_);
  }
  template <class F>
  void visit_parameters(const std::string& prefix, F&& f) {
    for_each_child(prefix, [&](const std::string& p, auto& c) { c.visit_parameters(p, f); });
  }
  template <class F>
  void visit_buffers(const std::string& prefix, F&& f) {
    for_each_child(prefix, [&](const std::string& p, auto& c) { c.visit_buffers(p, f); });
  }
  template <class F>
  void visit_children(const std::string& prefix, F&& f) {
    for_each_child(prefix, f);
  }
  template <class F>
  void visit_child_hooks(const std::string& prefix, F&& f) {
    [&]<std::size_t... I>(std::index_sequence<I...>) {
      (f(join_name(prefix, detail::child_name<std::tuple_element_t<I, std::tuple<Ls...>>>(I)),
         std::get<I>(children_), hooks_[I]),
       ...);
    }
    (std::index_sequence_for<Ls...>{});
  }

 private:
  // Child I-1's output x is dead once child I has run, kept no view of it and did not pass it on.
  template <std::size_t I>
  CView forward_from(CView x) {
    if constexpr (I == sizeof...(Ls)) {
      return x;
    } else {
      auto& child = std::get<I>(children_);
      const CView y = detail::forward_child(child, x, hooks_[I]);
      if constexpr (I > 0) {
        if (!nn::keeps_input(child) && !views_overlap(x, y)) nn::release_output(std::get<I - 1>(children_));
      }
      return forward_from<I + 1>(y);
    }
  }
  // dy lives in the input gradients of children [I, held) (the first that wrote it, and any that
  // passed it through). Once child I-1 has returned a gradient of its own, they are all consumed.
  template <std::size_t I>
  void backward_from(CView dy, std::size_t held) {
    if constexpr (I == 0) {
      dy_ = dy;
    } else {
      const CView g = detail::backward_child(std::get<I - 1>(children_), dy, hooks_[I - 1]);
      if (!views_overlap(g, dy)) {
        release_input_grads(I, held);
        held = I;
      }
      backward_from<I - 1>(g, held);
    }
  }
  void release_input_grads(std::size_t begin, std::size_t end) {
    [&]<std::size_t... I>(std::index_sequence<I...>) {
      ((I >= begin && I < end ? nn::release_input_grad(std::get<I>(children_)) : void()), ...);
    }(std::index_sequence_for<Ls...>{});
  }
  template <class F>
  void for_each_child(const std::string& prefix, F&& f) {
    [&]<std::size_t... I>(std::index_sequence<I...>) {
      (f(join_name(prefix, detail::child_name<std::tuple_element_t<I, std::tuple<Ls...>>>(I)),
         std::get<I>(children_)),
       ...);
    }(std::index_sequence_for<Ls...>{});
  }

  std::tuple<Ls...> children_;
  std::array<TapHook, sizeof...(Ls)> hooks_{};
  CView dy_;
};

// at<I>(seq): the I-th child of a Sequential (through Named/Inline wrappers too).
template <std::size_t I, class S>
auto& at(S& seq) {
  return seq.template get<I>();
}

// y = relu(body(x) + shortcut(x)) (ResNet v1 blocks), or without the final relu when PostRelu is
// false. Body and shortcut outputs must have equal shapes.
template <class Body, class Shortcut = Identity, bool PostRelu = true>
class Residual {
  static_assert(check_layer<Body>() && check_layer<Shortcut>());

 public:
  Residual() = default;
  Residual(Body body, Shortcut shortcut) : body_(std::move(body)), shortcut_(std::move(shortcut)) {}
  explicit Residual(Body body) : body_(std::move(body)) {}
  static constexpr std::string_view kind_name() { return "Residual"; }

  Shape output_shape(const Shape& in) const {
    detail::record_shape(&shortcut_, shortcut_.output_shape(in));
    return detail::record_shape(&body_, body_.output_shape(in));
  }
  Shape setup(const Shape& in, Device device) {
    const Shape b = body_.setup(in, device);
    const Shape s = shortcut_.setup(in, device);
    check_same_shape("Residual", "body output", b, "shortcut output", s);
    return b;
  }
  void initialize(InitStream& init) {
    body_.initialize(init);
    shortcut_.initialize(init);
  }
  CView forward(CView x) {
    const CView b = detail::forward_child(body_, x, body_hook_);
    const CView s = detail::forward_child(shortcut_, x, shortcut_hook_);
    View y = act_.output_for(b.shape(), b.device());
    add(b, s, y);
    if constexpr (PostRelu) relu_forward(y, y);
    nn::release_output(body_);
    nn::release_output(shortcut_);
    return y;
  }
  // g = relu'(y) * dy goes to both branches; dx = db + ds is written over g where it fits (g is
  // dead by then; an identity shortcut's ds is g itself, which the element-wise add allows).
  CView backward(CView dy) {
    CView g = dy;
    if constexpr (PostRelu) {
      View gy = grad_sum_.output_for(dy.shape(), dy.device());
      relu_backward(act_.y, dy, gy);
      g = gy;
    }
    const CView db = detail::backward_child(body_, g, body_hook_);
    const CView ds = detail::backward_child(shortcut_, g, shortcut_hook_);
    if (!input_grad_) {
      release_input_grad();
      return CView();
    }
    View dx;
    const bool g_dead = !views_overlap(db, g) && !views_overlap(ds, g);
    if (PostRelu && (db.shape() == g.shape() || (g_dead && db.numel() <= g.numel()))) {
      dx = View(grad_sum_.y.data(), db.shape(), db.device());
      act_.release_input_grad();
    } else {
      if (PostRelu && g_dead) grad_sum_.release_output();
      dx = act_.input_grad_for(db.shape(), db.device());
    }
    add(db, ds, dx);
    nn::release_input_grad(body_);
    nn::release_input_grad(shortcut_);
    return dx;
  }
  void release_input_grad() {
    nn::release_input_grad(body_);
    nn::release_input_grad(shortcut_);
    grad_sum_.release_output();
    act_.release_input_grad();
  }
  void release_output() {
    if constexpr (!PostRelu) act_.release_output();  // with the relu, backward reads y
  }
  bool keeps_input() const { return nn::keeps_input(body_) || nn::keeps_input(shortcut_); }
  void set_input_grad(bool needed) {
    input_grad_ = needed;
    nn::set_input_grad(body_, needed);
    nn::set_input_grad(shortcut_, needed);
    if (!needed) act_.release_input_grad();
  }
  void set_training(bool t) {
    body_.set_training(t);
    shortcut_.set_training(t);
  }
  template <class F>
  void visit_parameters(const std::string& prefix, F&& f) {
    body_.visit_parameters(detail::wrapped_prefix<Body>(prefix), f);
    shortcut_.visit_parameters(detail::wrapped_prefix<Shortcut>(prefix), f);
  }
  template <class F>
  void visit_buffers(const std::string& prefix, F&& f) {
    body_.visit_buffers(detail::wrapped_prefix<Body>(prefix), f);
    shortcut_.visit_buffers(detail::wrapped_prefix<Shortcut>(prefix), f);
  }
  template <class F>
  void visit_children(const std::string& prefix, F&& f) {
    f(detail::wrapped_prefix<Body>(prefix), body_);
    f(detail::wrapped_prefix<Shortcut>(prefix), shortcut_);
  }
  template <class F>
  void visit_child_hooks(const std::string& prefix, F&& f) {
    f(detail::wrapped_prefix<Body>(prefix), body_, body_hook_);
    f(detail::wrapped_prefix<Shortcut>(prefix), shortcut_, shortcut_hook_);
  }
  Body& body() { return body_; }
  Shortcut& shortcut() { return shortcut_; }

 private:
  Body body_;
  Shortcut shortcut_;
  Activations act_, grad_sum_;  // grad_sum_.y holds g, then dx where it fits
  TapHook body_hook_, shortcut_hook_;
  bool input_grad_ = true;
};

// N blocks of one type, named "0" .. "N-1"; each built by make(i) so blocks can differ in their
// runtime settings (e.g. the first block of a ResNet stage strides).
template <std::size_t N, class Block>
class Repeat {
  static_assert(N > 0, "fovea: Repeat needs N > 0");
  static_assert(check_layer<Block>());

 public:
  Repeat() = default;
  template <class Make>
    requires std::is_invocable_r_v<Block, Make, std::size_t>
  explicit Repeat(Make make) {
    for (std::size_t i = 0; i < N; ++i) blocks_[i] = make(i);
  }
  static constexpr std::string_view kind_name() { return "Repeat"; }
  static constexpr std::size_t size() { return N; }
  Block& operator[](std::size_t i) { return blocks_.at(i); }

  Shape output_shape(const Shape& in) const {
    Shape s = in;
    for (const auto& b : blocks_) s = detail::record_shape(&b, b.output_shape(s));
    return s;
  }
  Shape setup(const Shape& in, Device device) {
    Shape s = in;
    for (auto& b : blocks_) s = b.setup(s, device);
    return s;
  }
  void initialize(InitStream& init) {
    for (auto& b : blocks_) b.initialize(init);
  }
  CView forward(CView x) {
    for (std::size_t i = 0; i < N; ++i) {
      const CView y = detail::forward_child(blocks_[i], x, hooks_[i]);
      if (i > 0 && !nn::keeps_input(blocks_[i]) && !views_overlap(x, y)) nn::release_output(blocks_[i - 1]);
      x = y;
    }
    return x;
  }
  // As Sequential::backward: dy lives in the input gradients of blocks [i + 1, held).
  CView backward(CView dy) {
    std::size_t held = N;
    for (std::size_t i = N; i-- > 0;) {
      const CView g = detail::backward_child(blocks_[i], dy, hooks_[i]);
      if (!views_overlap(g, dy)) {
        for (std::size_t j = i + 1; j < held; ++j) nn::release_input_grad(blocks_[j]);
        held = i + 1;
      }
      dy = g;
    }
    return dy;
  }
  void release_input_grad() {
    for (auto& b : blocks_) nn::release_input_grad(b);
  }
  void release_output() { nn::release_output(blocks_[N - 1]); }
  bool keeps_input() const { return nn::keeps_input(blocks_[0]); }
  void set_input_grad(bool needed) { nn::set_input_grad(blocks_[0], needed); }
  void set_training(bool t) {
    for (auto& b : blocks_) b.set_training(t);
  }
  template <class F>
  void visit_parameters(const std::string& prefix, F&& f) {
    for (std::size_t i = 0; i < N; ++i) blocks_[i].visit_parameters(join_name(prefix, std::to_string(i)), f);
  }
  template <class F>
  void visit_buffers(const std::string& prefix, F&& f) {
    for (std::size_t i = 0; i < N; ++i) blocks_[i].visit_buffers(join_name(prefix, std::to_string(i)), f);
  }
  template <class F>
  void visit_children(const std::string& prefix, F&& f) {
    for (std::size_t i = 0; i < N; ++i) f(join_name(prefix, std::to_string(i)), blocks_[i]);
  }
  template <class F>
  void visit_child_hooks(const std::string& prefix, F&& f) {
    for (std::size_t i = 0; i < N; ++i) f(join_name(prefix, std::to_string(i)), blocks_[i], hooks_[i]);
  }

 private:
  std::array<Block, N> blocks_{};
  std::array<TapHook, N> hooks_{};
};

// L when enabled, the identity otherwise (decided at construction).
template <class L>
class Optional {
  static_assert(check_layer<L>());

 public:
  Optional() = default;
  explicit Optional(L layer, bool enabled = true) : layer_(std::move(layer)), enabled_(enabled) {}
  static constexpr std::string_view kind_name() { return "Optional"; }
  bool enabled() const { return enabled_; }

  Shape output_shape(const Shape& in) const {
    return enabled_ ? detail::record_shape(&layer_, layer_.output_shape(in)) : in;
  }
  Shape setup(const Shape& in, Device device) { return enabled_ ? layer_.setup(in, device) : in; }
  void initialize(InitStream& init) {
    if (enabled_) layer_.initialize(init);
  }
  CView forward(CView x) { return enabled_ ? detail::forward_child(layer_, x, hook_) : x; }
  CView backward(CView dy) { return enabled_ ? detail::backward_child(layer_, dy, hook_) : dy; }
  void release_input_grad() {
    if (enabled_) nn::release_input_grad(layer_);
  }
  void release_output() {
    if (enabled_) nn::release_output(layer_);
  }
  bool keeps_input() const { return enabled_ ? nn::keeps_input(layer_) : true; }  // disabled: passes x on
  void set_input_grad(bool needed) {
    if (enabled_) nn::set_input_grad(layer_, needed);
  }
  void set_training(bool t) { layer_.set_training(t); }
  template <class F>
  void visit_parameters(const std::string& prefix, F&& f) {
    if (enabled_) layer_.visit_parameters(detail::wrapped_prefix<L>(prefix), f);
  }
  template <class F>
  void visit_buffers(const std::string& prefix, F&& f) {
    if (enabled_) layer_.visit_buffers(detail::wrapped_prefix<L>(prefix), f);
  }
  template <class F>
  void visit_children(const std::string& prefix, F&& f) {
    if (enabled_) f(detail::wrapped_prefix<L>(prefix), layer_);
  }
  template <class F>
  void visit_child_hooks(const std::string& prefix, F&& f) {
    if (enabled_) f(detail::wrapped_prefix<L>(prefix), layer_, hook_);
  }
  L& layer() { return layer_; }

 private:
  L layer_{};
  TapHook hook_;
  bool enabled_ = false;
};

}  // namespace fovea::nn
