// fovea/optim/optimizer.hpp: Optimizer<Policy>, the one optimizer class, parameterised at compile
// time by an update policy (Sgd, AdamW, Lars) in the style of ensmallen. It holds the parameter
// list, per-parameter state tensors and the multi-tensor table its fused update runs on, and
// exposes the state under names for checkpoints.
#pragma once

#include <cmath>
#include <concepts>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "fovea/nn/layer.hpp"
#include "fovea/ops/elementwise.hpp"
#include "fovea/ops/optim.hpp"
#include "fovea/optim/multi_tensor.hpp"

namespace fovea::optim {

// Which parameters weight decay reaches in SGD and AdamW.
enum class DecayRule {
  all,           // every parameter (PyTorch's default)
  weights_only,  // not parameters of kind bias or norm
};

inline bool decay_excluded(DecayRule rule, nn::ParamKind kind) {
  return rule == DecayRule::weights_only && kind != nn::ParamKind::weight;
}

// A parameter and its name (torchvision style, e.g. "layer1.0.conv1.weight").
struct ParamRef {
  std::string name;
  nn::Parameter* param = nullptr;
};

// A policy P provides:
//   typename P::Options                                   its settings;
//   static std::string_view name();                       "sgd", "adamw", "lars";
//   static void validate(const Options&);                 throws fovea::Error on bad settings;
//   static int state_count(const Options&);               state tensors per parameter (0..2);
//   static std::string_view state_name(int i);            checkpoint prefix of state i;
//   static std::uint32_t slot_flags(const Options&, ParamKind);   kSlotNoDecay / kSlotNoAdapt;
//   static void apply(MultiTensorTable&, const Options&, float lr, std::int64_t step);
//     one update of every tensor; step counts from 1.
template <class P>
concept OptimizerPolicy = requires(const typename P::Options& o, MultiTensorTable& t, float lr, std::int64_t step,
                                   nn::ParamKind kind, int i) {
  typename P::Options;
  { P::name() } -> std::convertible_to<std::string_view>;
  { P::validate(o) };
  { P::state_count(o) } -> std::same_as<int>;
  { P::state_name(i) } -> std::convertible_to<std::string_view>;
  { P::slot_flags(o, kind) } -> std::same_as<std::uint32_t>;
  { P::apply(t, o, lr, step) };
};

// Explains which member a policy lacks.
template <class P>
constexpr bool check_policy() {
  static_assert(requires { typename P::Options; }, "fovea optimizer policy: missing `using Options = ...`");
  if constexpr (requires { typename P::Options; }) {
    using O = typename P::Options;
    static_assert(requires { { P::name() } -> std::convertible_to<std::string_view>; },
                  "fovea optimizer policy: missing `static std::string_view name()`");
    static_assert(requires(const O& o) { P::validate(o); },
                  "fovea optimizer policy: missing `static void validate(const Options&)`");
    static_assert(requires(const O& o) { { P::state_count(o) } -> std::same_as<int>; },
                  "fovea optimizer policy: missing `static int state_count(const Options&)`");
    static_assert(requires(int i) { { P::state_name(i) } -> std::convertible_to<std::string_view>; },
                  "fovea optimizer policy: missing `static std::string_view state_name(int)`");
    static_assert(requires(const O& o, nn::ParamKind k) { { P::slot_flags(o, k) } -> std::same_as<std::uint32_t>; },
                  "fovea optimizer policy: missing `static std::uint32_t slot_flags(const Options&, nn::ParamKind)`");
    static_assert(requires(MultiTensorTable& t, const O& o, float lr, std::int64_t s) { P::apply(t, o, lr, s); },
                  "fovea optimizer policy: missing `static void apply(MultiTensorTable&, const Options&, float lr, "
                  "std::int64_t step)`");
  }
  return true;
}

// Every parameter of a network with its name, in visiting order.
template <class Net>
std::vector<ParamRef> collect_parameters(Net& net, const std::string& prefix = "") {
  std::vector<ParamRef> refs;
  net.visit_parameters(prefix, [&](const std::string& name, nn::Parameter& p) { refs.push_back({name, &p}); });
  return refs;
}

// Names "0", "1", ... for a bare list of parameters.
inline std::vector<ParamRef> name_parameters(const std::vector<nn::Parameter*>& params) {
  std::vector<ParamRef> refs;
  for (std::size_t i = 0; i < params.size(); ++i) refs.push_back({std::to_string(i), params[i]});
  return refs;
}

template <class Policy>
class Optimizer {
  static_assert(check_policy<Policy>());

 public:
  using Options = typename Policy::Options;
  static constexpr int kMaxStates = 2;

  // All parameters of `net` (set up, so they are allocated), named as visit_parameters names them.
  template <class Net>
    requires requires(Net& n, const std::string& p) { n.visit_parameters(p, nn::ParameterVisitorArchetype{}); }
  explicit Optimizer(Net& net, Options options = {}) : Optimizer(collect_parameters(net), std::move(options)) {}

  explicit Optimizer(std::vector<nn::Parameter*> params, Options options = {})
      : Optimizer(name_parameters(params), std::move(options)) {}

  explicit Optimizer(std::vector<ParamRef> params, Options options = {})
      : params_(std::move(params)), options_(std::move(options)) {
    Policy::validate(options_);
    for (const ParamRef& r : params_) {
      FOVEA_CHECK(r.param != nullptr, Policy::name(), ": parameter '", r.name, "' is null");
      FOVEA_CHECK(r.param->defined(), Policy::name(), ": parameter '", r.name,
                  "' is not allocated (call setup() on the network first)");
      check_same_shape("optimizer", "parameter", r.param->value.shape(), "gradient", r.param->grad.shape());
      check_same_device("optimizer", ("parameter " + r.name).c_str(), r.param->value.device(), "gradient",
                        r.param->grad.device());
      if (&r == &params_.front()) device_ = r.param->value.device();
      check_same_device("optimizer", ("parameter " + r.name).c_str(), r.param->value.device(),
                        ("parameter " + params_.front().name).c_str(), device_);
    }
    const int states = Policy::state_count(options_);
    FOVEA_CHECK(states >= 0 && states <= kMaxStates, Policy::name(), ": ", states, " state tensors per parameter");
    for (int s = 0; s < states; ++s)
      for (const ParamRef& r : params_) state_[s].push_back(zeros(r.param->value.shape(), device_));
  }

  Optimizer(const Optimizer&) = delete;
  Optimizer& operator=(const Optimizer&) = delete;
  Optimizer(Optimizer&&) noexcept = default;
  Optimizer& operator=(Optimizer&&) noexcept = default;

  // One update of every parameter from its current gradient with learning rate `lr`.
  void step(float lr) {
    refresh();
    ++step_;
    Policy::apply(table_, options_, lr, step_);
  }

  // Scales every gradient so their global L2 norm is at most max_norm (torch clip_grad_norm_);
  // returns the norm before clipping.
  float clip_grad_norm(float max_norm) {
    refresh();
    return fovea::clip_grad_norm(table_, max_norm);
  }
  float grad_norm() {
    refresh();
    return fovea::grad_norm(table_);
  }

  // Updates taken so far (restored with the state).
  std::int64_t step_count() const { return step_; }
  void set_step_count(std::int64_t step) {
    FOVEA_CHECK(step >= 0, Policy::name(), ": negative step count ", step);
    step_ = step;
  }

  const Options& options() const { return options_; }
  void set_options(Options options) {
    Policy::validate(options);
    FOVEA_CHECK(Policy::state_count(options) == Policy::state_count(options_), Policy::name(),
                ": new options need a different number of state tensors");
    options_ = std::move(options);
  }
  const std::vector<ParamRef>& parameters() const { return params_; }
  Device device() const { return device_; }
  static constexpr std::string_view name() { return Policy::name(); }

  // Calls f(name, tensor) for every state tensor ("<state>.<parameter>", e.g.
  // "momentum.layer1.0.conv1.weight", "adam.m.fc.bias") and last for "step", a 1-element fp32 CPU
  // tensor holding the step count (exact up to 2^24 steps). f may read the tensors (save) or write
  // their elements in place (restore); the step count is read back after f returns.
  template <class F>
  void visit_state(F&& f) {
    for (int s = 0; s < Policy::state_count(options_); ++s)
      for (std::size_t i = 0; i < params_.size(); ++i)
        f(std::string(Policy::state_name(s)) + "." + params_[i].name, state_[s][i]);
    Tensor step = Tensor::from({static_cast<float>(step_)}, Shape{1});
    f(std::string("step"), step);
    FOVEA_CHECK(step.numel() == 1 && step.device().is_cpu(), Policy::name(),
                ": the step tensor must stay a 1-element CPU tensor");
    const float v = step.data()[0];
    FOVEA_CHECK(v >= 0.0f && v == std::floor(v), Policy::name(), ": bad step count ", v, " in the state");
    step_ = static_cast<std::int64_t>(v);
  }

  // The table the fused ops run on (refreshed: pointers current).
  MultiTensorTable& table() {
    refresh();
    return table_;
  }

 private:
  // Rebuilds the slot list; the table re-uploads only when a pointer or flag changed.
  void refresh() {
    std::vector<TensorSlot> slots(params_.size());
    for (std::size_t i = 0; i < params_.size(); ++i) {
      nn::Parameter& p = *params_[i].param;
      FOVEA_CHECK(p.grad.shape() == p.value.shape() && p.value.device() == device_ && p.grad.device() == device_,
                  Policy::name(), ": parameter '", params_[i].name, "' ", p.value.shape().str(), " on ",
                  p.value.device().str(), " has gradient ", p.grad.shape().str(), " on ", p.grad.device().str(),
                  " (optimizer on ", device_.str(), ")");
      TensorSlot& s = slots[i];
      s.param = p.value.data();
      s.grad = p.grad.data();
      for (int k = 0; k < Policy::state_count(options_); ++k) {
        Tensor& st = state_[k][i];
        FOVEA_CHECK(st.shape() == p.value.shape() && st.device() == device_, Policy::name(), ": state ",
                    Policy::state_name(k), " of '", params_[i].name, "' is ", st.shape().str(), " on ",
                    st.device().str(), ", parameter ", p.value.shape().str());
        (k == 0 ? s.state0 : s.state1) = st.data();
      }
      s.numel = p.value.numel();
      s.flags = Policy::slot_flags(options_, p.kind);
    }
    table_.set(std::move(slots), device_);
  }

  std::vector<ParamRef> params_;
  Options options_;
  Device device_;
  std::vector<Tensor> state_[kMaxStates];
  std::int64_t step_ = 0;
  MultiTensorTable table_;
};

}  // namespace fovea::optim
