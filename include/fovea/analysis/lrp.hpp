// fovea/analysis/lrp.hpp: layer-wise relevance propagation (Bach et al. 2015; the rules as in
// Montavon et al., "Layer-wise relevance propagation: an overview", 2019), the method the study
// explains its classifiers with (REFERENCE §1.5), for networks composed of fovea's layers (every
// ResNet of models/resnet.hpp).
//
// The relevance of the explained class starts as its logit, R = f_t(x) at class t and 0 elsewhere,
// and flows back layer by layer; each linear layer j -> k redistributes R_k over its inputs x_j in
// proportion to the contributions z_jk:
//   R_j = x_j sum_k rho(w_jk) R_k / stab(z_k),   z_k = sum_j x_j rho(w_jk) + rho(b_k),
// stab(z) = z + epsilon sign(z) (sign(0) = +1), computed as x * conv_transpose(R / stab(z), rho(W)).
// Rules (LrpOptions):
//   - Linear (the classifier head): LRP-epsilon, rho = identity.
//   - Conv2d followed by BatchNorm2d (evaluation mode: an affine map per channel, merged into the
//     convolution first, "canonisation": W' = s W, b' = beta - s mean + s b, s = gamma / sqrt(var +
//     eps)), inner layers, by LrpOptions::rule:
//       epsilon: rho = identity (LRP-epsilon; with a tiny epsilon this is gradient x input);
//       gamma:   rho(w) = w + gamma w+ and rho(b) = b + gamma b+ (LRP-gamma, gamma = 0.25);
//       plus:    rho(w) = w+, no bias (LRP-z+, alpha1-beta0: the inputs of inner layers are >= 0).
//   - The first convolution (its input is the normalised image, of either sign), LrpOptions::input:
//       box:     z^B (Montavon et al. 2017) with the bounds l_c = (0 - mean_c) / std_c and
//                h_c = (1 - mean_c) / std_c of pixels in [0, 1]:
//                R_j = sum_k (x_j w_jk - l_j w_jk+ - h_j w_jk-) R_k / stab(z^B_k);
//       flat:    every input of a receptive field gets the same share (w = 1, x = 1);
//       epsilon: the inner epsilon rule.
//   - ReLU: relevance passes unchanged. MaxPool2d: winner takes all (the gradient's routing).
//     GlobalAvgPool: R_i = (x_i / n) R / stab(mean). Flatten: a reshape.
//   - Residual blocks y = relu(b + s): R_b = b R / stab(b + s), R_s = s R / stab(b + s) (the epsilon
//     rule of the sum), then each branch backwards, and the two input relevances add.
// A BatchNorm2d that does not follow a Conv2d in a Sequential is not supported (an error names it).
//   - A leaf type of your own: the rule you give it by specialising LrpLeafRule (below).
//
// With rule = epsilon, input = epsilon and a tiny epsilon, LRP equals gradient x input for ReLU
// networks (biases included: R_j / x_j is then the gradient at every layer): tests/test_lrp.cpp
// checks that on a ResNet-18. Conservation: z+ (no bias in its denominators), z^B, flat, the
// pooling rules and the residual split pass on exactly the relevance they get (up to the
// stabiliser), the epsilon and gamma rules keep the share of the biases (batch-norm shifts
// included); so with the default rules the input relevance sums to f_t(x) - b_t, b_t the head's
// bias for class t.
//
// Data flow: the forward pass runs on the images' device with an nn::ActivationTap that copies the
// inputs of the layers that need them (convolutions, linear, pooling, identity shortcuts) and the
// outputs of the batch-norm layers (the residual branches' values); the convolutions and linear
// maps of the relevance pass run as fovea ops on that device (conv2d_forward, conv2d_backward_data,
// ...), and so does the element-wise arithmetic (ratios, products, the residual split, the pooling
// share: ops/lrp.hpp). Only the weights are prepared on the host (batch norm merged in, rho applied),
// once per layer for all chunks. The memory is one copy of the activations of a batch (LrpOptions::batch
// bounds it) and the prepared weights.
//
// The result is an AttributionMaps: raw (N, 3, H, W) the input relevance per channel, heatmap the
// sum over channels of |raw| like the other methods (signed_channel_sum gives the signed LRP map),
// target_logit f_t(x).
#pragma once

#include <algorithm>
#include <cmath>
#include <concepts>
#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "fovea/analysis/attribution.hpp"
#include "fovea/core/error.hpp"
#include "fovea/core/tensor.hpp"
#include "fovea/nn/compose.hpp"
#include "fovea/nn/layers.hpp"
#include "fovea/nn/tap.hpp"
#include "fovea/ops/conv.hpp"
#include "fovea/ops/elementwise.hpp"
#include "fovea/ops/linear.hpp"
#include "fovea/ops/lrp.hpp"
#include "fovea/ops/pool.hpp"

namespace fovea::analysis {

enum class LrpRule { epsilon, gamma, plus };
enum class LrpInputRule { box, flat, epsilon };

inline const char* to_string(LrpRule r) {
  switch (r) {
    case LrpRule::epsilon: return "epsilon";
    case LrpRule::gamma: return "gamma";
    case LrpRule::plus: return "plus";
  }
  return "?";
}
inline const char* to_string(LrpInputRule r) {
  switch (r) {
    case LrpInputRule::box: return "box";
    case LrpInputRule::flat: return "flat";
    case LrpInputRule::epsilon: return "epsilon";
  }
  return "?";
}

struct LrpOptions {
  LrpRule rule = LrpRule::plus;            // inner convolutions
  LrpInputRule input = LrpInputRule::box;  // the first convolution
  float gamma = 0.25f;                     // LrpRule::gamma
  float epsilon = 1e-6f;                   // the stabiliser of every ratio
  ChannelStats normalisation = kDrStats;   // the box rule's pixel bounds in the normalised space
  int batch = 8;                           // images per forward (the captured activations scale with it)
};

// What a rule of your own (LrpLeafRule) gets for its layer: what the forward pass left.
struct LrpLeaf {
  std::string path;  // the layer's state-dict path ("layer4.1.act", "head.2")
  CView input;       // the layer's input and output in the forward pass, on the net's device
  CView output;
  const LrpOptions& options;  // epsilon (for lrp_ratio), the rule settings
};

// LRP for a leaf type of your own (any layer the tap sees as a leaf). The primary template has no
// rule, so a network with a leaf type that neither fovea nor you cover fails to compile, naming it.
// Specialise it for your type L:
//   template <> struct fovea::analysis::LrpLeafRule<MyLayer> {
//     static Tensor relevance(MyLayer& layer, const LrpLeaf& leaf, const Tensor& r);
//   };
// r is the relevance at the layer's output (leaf.output's shape); return the relevance at its input
// (leaf.input's shape), on the same device. The ops of ops/lrp.hpp and ops/elementwise.hpp build the
// usual rules, e.g. the z-rule of an element-wise map y = g(x) through 0: R_in = x g'(x) r / stab(y)
// (lrp_ratio, then multiply). A specialisation takes precedence over fovea's own rule for that exact
// type, so it can also replace one.
template <class L>
struct LrpLeafRule {};

template <class L>
concept HasLrpLeafRule = requires(L& layer, const LrpLeaf& leaf, const Tensor& r) {
  { LrpLeafRule<L>::relevance(layer, leaf, r) } -> std::convertible_to<Tensor>;
};

namespace detail {

// Composite detection through derived-to-base deduction (ResNet blocks derive from Residual,
// Named<...> from what it wraps).
template <class... Ls>
constexpr bool is_sequential(const nn::Sequential<Ls...>*) {
  return true;
}
constexpr bool is_sequential(const void*) { return false; }
template <class B, class S, bool P>
constexpr bool is_residual(const nn::Residual<B, S, P>*) {
  return true;
}
constexpr bool is_residual(const void*) { return false; }
template <std::size_t N, class B>
constexpr bool is_repeat(const nn::Repeat<N, B>*) {
  return true;
}
constexpr bool is_repeat(const void*) { return false; }
template <class L>
constexpr bool is_optional(const nn::Optional<L>*) {
  return true;
}
constexpr bool is_optional(const void*) { return false; }

template <class L>
inline constexpr bool kIsSequential = is_sequential(static_cast<const L*>(nullptr));
template <class L>
inline constexpr bool kIsResidual = is_residual(static_cast<const L*>(nullptr));
template <class L>
inline constexpr bool kIsRepeat = is_repeat(static_cast<const L*>(nullptr));
template <class L>
inline constexpr bool kIsOptional = is_optional(static_cast<const L*>(nullptr));

template <class L>
inline constexpr bool kDependentFalse = false;

// A Named wrapper (nn::Named: `Inner` the wrapped type) of a type with a rule of the user's.
template <class L>
constexpr bool has_user_rule_inside() {
  if constexpr (requires { typename L::Inner; }) return HasLrpLeafRule<typename L::Inner>;
  else return false;
}
template <class L>
inline constexpr bool kHasUserRuleInside = has_user_rule_inside<L>();

inline std::vector<float> host_values(CView t) {
  std::vector<float> v(static_cast<std::size_t>(t.numel()));
  if (!v.empty()) copy(t, View(v.data(), t.shape(), Device::cpu()));
  return v;
}
inline Tensor device_tensor(const std::vector<float>& v, const Shape& shape, Device device) {
  Tensor t(shape, device);
  if (!v.empty()) copy(CView(v.data(), shape, Device::cpu()), t.view());
  return t;
}

// The parameter `name` ("weight", "bias", "running_mean", ...) of a leaf as host values (empty
// when the leaf has none).
template <class L>
std::vector<float> leaf_tensor(L& layer, const std::string& name) {
  std::vector<float> out;
  layer.visit_parameters("", [&](const std::string& n, nn::Parameter& p) {
    if (n == name) out = host_values(p.value);
  });
  layer.visit_buffers("", [&](const std::string& n, Tensor& t) {
    if (n == name) out = host_values(t);
  });
  return out;
}

// What the forward pass left for the relevance pass, per layer object.
struct LrpCapture {
  Tensor x, y;  // input (conv, linear, pooling, identity) or output (batch norm), on the net's device
  Shape x_shape;
};

class LrpEngine {
 public:
  LrpEngine(const LrpOptions& opt, Device device) : opt_(opt), device_(device) {}

  // The tap callback: keep what the layer's rule will need (fovea's rules: the input, or for batch
  // norm the output, or nothing; a layer of another type, whose rule is the user's: both).
  void capture(const nn::TapSite& site, CView x, CView y) {
    LrpCapture& c = captures_[site.layer];
    c.x_shape = x.shape();
    const auto clone = [](CView v) {
      Tensor t(v.shape(), v.device());
      copy(v, t.view());
      return t;
    };
    const std::string& t = site.type;
    if (t == "BatchNorm2d") {
      c.y = clone(y);
    } else if (t == "Conv2d" || t == "Linear" || t == "MaxPool2d" || t == "GlobalAvgPool" ||
               t == "Identity") {
      c.x = clone(x);
    } else if (t != "ReLU" && t != "Flatten") {
      c.x = clone(x);
      c.y = clone(y);
    }
  }
  void clear() { captures_.clear(); }
  void set_first_layer(const void* layer) { first_layer_ = layer; }

  // Relevance at the input of `layer`, given the relevance R at its output (on device_).
  template <class L>
  Tensor relevance(L& layer, Tensor r, const std::string& path) {
    if constexpr (HasLrpLeafRule<L>) {
      return user_rule<L>(layer, &layer, r, path);
    } else if constexpr (kHasUserRuleInside<L>) {  // Named<name, a type with a rule of its own>
      return user_rule<typename L::Inner>(layer, &layer, r, path);
    } else if constexpr (kIsSequential<L>) {
      return sequential<L::size()>(layer, std::move(r), path);
    } else if constexpr (kIsRepeat<L>) {
      Tensor cur = std::move(r);
      for (std::size_t i = L::size(); i-- > 0;)
        cur = relevance(layer[i], std::move(cur), nn::join_name(path, std::to_string(i)));
      return cur;
    } else if constexpr (kIsResidual<L>) {
      return residual(layer, r, path);
    } else if constexpr (kIsOptional<L>) {
      using Inner = std::remove_cvref_t<decltype(layer.layer())>;
      if (!layer.enabled()) return r;
      return relevance(layer.layer(), std::move(r), nn::detail::wrapped_prefix<Inner>(path));
    } else if constexpr (std::is_base_of_v<nn::Conv2d, L>) {
      return conv(static_cast<nn::Conv2d&>(layer), nullptr, r, path);
    } else if constexpr (std::is_base_of_v<nn::BatchNorm2d, L>) {
      FOVEA_FAIL("lrp: the BatchNorm2d at '", path,
                 "' does not follow a Conv2d in a Sequential (only conv + batch-norm pairs are supported)");
    } else if constexpr (std::is_base_of_v<nn::ReLU, L>) {
      return r;
    } else if constexpr (std::is_base_of_v<nn::Identity, L>) {
      return r;
    } else if constexpr (std::is_base_of_v<nn::Flatten, L>) {
      const LrpCapture& c = get(&layer, path);
      r.reshape(c.x_shape);
      return r;
    } else if constexpr (std::is_base_of_v<nn::MaxPool2d, L>) {
      return max_pool(static_cast<nn::MaxPool2d&>(layer), r, path);
    } else if constexpr (std::is_base_of_v<nn::GlobalAvgPool, L>) {
      return global_avg_pool(&layer, r, path);
    } else if constexpr (std::is_base_of_v<nn::Linear, L>) {
      return linear(static_cast<nn::Linear&>(layer), r, path);
    } else {
      static_assert(
          kDependentFalse<L>,
          "fovea lrp: no relevance rule for this layer type: specialise fovea::analysis::LrpLeafRule "
          "for it (docs/attribution.md, 'Rules for your own layers')");
    }
  }

 private:
  // A rule of the user's (LrpLeafRule<R>) for `layer` (an R, or a Named wrapper of one).
  template <class R>
  Tensor user_rule(R& layer, const void* key, const Tensor& r, const std::string& path) {
    const LrpCapture& c = get(key, path);
    FOVEA_CHECK(c.x.data() != nullptr && c.y.data() != nullptr, "lrp: no input and output kept for layer '",
                path, "' (", R::kind_name(), "): its kind name must differ from those of fovea's layers");
    FOVEA_CHECK(r.shape() == c.y.shape(), "lrp: relevance ", r.shape().str(), " at the output ",
                c.y.shape().str(), " of layer '", path, "'");
    Tensor in = LrpLeafRule<R>::relevance(layer, LrpLeaf{path, c.x, c.y, opt_}, r);
    FOVEA_CHECK(in.shape() == c.x.shape() && in.device() == device_, "lrp: the rule of layer '", path, "' (",
                R::kind_name(), ") gave relevance ", in.shape().str(), " on ", in.device().str(),
                " for its input ", c.x.shape().str(), " on ", device_.str());
    return in;
  }

  const LrpCapture& get(const void* layer, const std::string& path) const {
    const auto it = captures_.find(layer);
    FOVEA_CHECK(it != captures_.end(), "lrp: layer '", path, "' did not run in the forward pass");
    return it->second;
  }
  CView input_of_capture(const void* layer, const std::string& path) const {
    const LrpCapture& c = get(layer, path);
    FOVEA_CHECK(c.x.data() != nullptr, "lrp: no input kept for layer '", path, "'");
    return c.x;
  }

  // The output of a residual branch: its last batch-norm's (or identity's) value.
  template <class L>
  CView output_of(L& layer, const std::string& path) const {
    if constexpr (kIsSequential<L>) {
      return output_of(layer.template get<L::size() - 1>(), path);
    } else if constexpr (kIsRepeat<L>) {
      return output_of(layer[L::size() - 1], path);
    } else if constexpr (kIsOptional<L>) {
      FOVEA_CHECK(layer.enabled(), "lrp: branch '", path, "' is a disabled optional layer");
      return output_of(layer.layer(), path);
    } else if constexpr (std::is_base_of_v<nn::BatchNorm2d, L>) {
      const LrpCapture& c = get(&layer, path);
      return c.y;
    } else if constexpr (std::is_base_of_v<nn::Identity, L>) {
      return input_of_capture(&layer, path);
    } else {
      FOVEA_FAIL("lrp: the residual branch at '", path, "' does not end in a BatchNorm2d or Identity");
    }
  }
  // The input of a branch: its first layer's.
  template <class L>
  CView input_of(L& layer, const std::string& path) const {
    if constexpr (kIsSequential<L>) {
      return input_of(layer.template get<0>(), path);
    } else if constexpr (kIsRepeat<L>) {
      return input_of(layer[0], path);
    } else if constexpr (kIsResidual<L>) {
      return input_of(layer.body(), path);
    } else if constexpr (kIsOptional<L>) {
      FOVEA_CHECK(layer.enabled(), "lrp: branch '", path, "' is a disabled optional layer");
      return input_of(layer.layer(), path);
    } else {
      return input_of_capture(&layer, path);
    }
  }

  template <std::size_t I, class S>
  Tensor sequential(S& seq, Tensor r, const std::string& path) {
    if constexpr (I == 0) {
      return r;
    } else {
      using C = std::remove_cvref_t<decltype(seq.template get<I - 1>())>;
      const std::string child = nn::join_name(path, nn::detail::child_name<C>(I - 1));
      if constexpr (I >= 2 && std::is_base_of_v<nn::BatchNorm2d, C>) {
        using P = std::remove_cvref_t<decltype(seq.template get<I - 2>())>;
        if constexpr (std::is_base_of_v<nn::Conv2d, P>) {
          const std::string conv_path = nn::join_name(path, nn::detail::child_name<P>(I - 2));
          Tensor in = conv(static_cast<nn::Conv2d&>(seq.template get<I - 2>()),
                           &static_cast<nn::BatchNorm2d&>(seq.template get<I - 1>()), r, conv_path);
          return sequential<I - 2>(seq, std::move(in), path);
        } else {
          return sequential<I - 1>(seq, relevance(seq.template get<I - 1>(), std::move(r), child), path);
        }
      } else {
        return sequential<I - 1>(seq, relevance(seq.template get<I - 1>(), std::move(r), child), path);
      }
    }
  }

  template <class R>
  Tensor residual(R& block, const Tensor& r, const std::string& path) {
    auto& body = block.body();
    auto& shortcut = block.shortcut();
    using Sc = std::remove_cvref_t<decltype(shortcut)>;
    using Bd = std::remove_cvref_t<decltype(body)>;
    const std::string body_path = nn::detail::wrapped_prefix<Bd>(path),
                      shortcut_path = nn::detail::wrapped_prefix<Sc>(path);
    const CView b = output_of(body, body_path);
    CView s;
    if constexpr (kIsOptional<Sc>) {
      s = shortcut.enabled() ? output_of(shortcut, shortcut_path) : input_of(body, body_path);
    } else {
      s = output_of(shortcut, shortcut_path);
    }
    FOVEA_CHECK(b.shape() == s.shape() && b.shape() == r.shape(), "lrp: residual block '", path, "': body ",
                b.shape().str(), ", shortcut ", s.shape().str(), ", relevance ", r.shape().str());
    Tensor rb(r.shape(), device_), rs(r.shape(), device_);
    lrp_share(b, s, r, opt_.epsilon, rb.view());
    lrp_share(s, b, r, opt_.epsilon, rs.view());
    const Tensor from_body = relevance(body, std::move(rb), body_path);
    const Tensor from_shortcut = relevance(shortcut, std::move(rs), shortcut_path);
    FOVEA_CHECK(from_body.shape() == from_shortcut.shape(), "lrp: residual block '", path,
                "': input relevance ", from_body.shape().str(), " vs ", from_shortcut.shape().str());
    Tensor out(from_body.shape(), device_);
    add(from_body, from_shortcut, out.view());
    return out;
  }

  // The relevance per unit of pre-activation, s = R / stab(z), with R given in z's shape.
  Tensor ratio(const Tensor& r, CView z, const std::string& path) const {
    FOVEA_CHECK(z.numel() == r.numel(), "lrp: layer '", path, "': relevance ", r.shape().str(), " for ",
                z.shape().str(), " outputs");
    Tensor s(z.shape(), device_);
    lrp_ratio(r.cview().reshaped(z.shape()), z, opt_.epsilon, s.view());
    return s;
  }

  // A convolution's weights as the relevance pass uses them, on device_: rho(W') and rho(b') of the
  // layer's rule (W', b' with the following batch norm merged in), and for the box rule W'+ and W'-.
  // Prepared on the host once per layer and kept for every chunk.
  struct ConvWeights {
    Tensor rho, rho_bias, positive, negative;
  };
  const ConvWeights& conv_weights(nn::Conv2d& layer, nn::BatchNorm2d* bn, const std::string& path,
                                  bool first) {
    const auto it = conv_weights_.find(&layer);
    if (it != conv_weights_.end()) return it->second;
    const Shape wshape = layer.weight().value.shape();
    const std::int64_t out_c = wshape[0], per_out = wshape.numel() / out_c;
    std::vector<float> w = host_values(layer.weight().value), bias = leaf_tensor(layer, "bias");
    if (bias.empty()) bias.assign(static_cast<std::size_t>(out_c), 0.0f);
    if (bn != nullptr) {  // canonisation: the batch norm merged into the convolution
      const std::vector<float> gamma = leaf_tensor(*bn, "weight"), beta = leaf_tensor(*bn, "bias"),
                               mean = leaf_tensor(*bn, "running_mean"), var = leaf_tensor(*bn, "running_var");
      FOVEA_CHECK(!bn->training(), "lrp: the BatchNorm2d after '", path, "' is in training mode");
      for (std::int64_t o = 0; o < out_c; ++o) {
        const auto k = static_cast<std::size_t>(o);
        const double s = gamma[k] / std::sqrt(double(var[k]) + bn->eps());
        for (std::int64_t i = 0; i < per_out; ++i)
          w[static_cast<std::size_t>(o * per_out + i)] *= static_cast<float>(s);
        bias[k] = static_cast<float>(beta[k] - s * mean[k] + s * bias[k]);
      }
    }
    const auto clamped = [](std::vector<float> v, bool keep_positive) {
      for (float& e : v) e = keep_positive ? std::max(e, 0.0f) : std::min(e, 0.0f);
      return v;
    };
    ConvWeights cw;
    if (first && opt_.input == LrpInputRule::box) {
      cw.rho = device_tensor(w, wshape, device_);
      cw.positive = device_tensor(clamped(w, true), wshape, device_);
      cw.negative = device_tensor(clamped(w, false), wshape, device_);
    } else if (first && opt_.input == LrpInputRule::flat) {
      cw.rho = device_tensor(std::vector<float>(w.size(), 1.0f), wshape, device_);
    } else {
      const LrpRule rule = first ? LrpRule::epsilon : opt_.rule;
      std::vector<float> rho = w, rho_b = bias;
      if (rule == LrpRule::gamma) {
        for (float& e : rho) e += opt_.gamma * std::max(e, 0.0f);
        for (float& e : rho_b) e += opt_.gamma * std::max(e, 0.0f);
      } else if (rule == LrpRule::plus) {
        rho = clamped(w, true);
      }
      cw.rho = device_tensor(rho, wshape, device_);
      if (rule != LrpRule::plus) cw.rho_bias = device_tensor(rho_b, Shape{out_c}, device_);
    }
    return conv_weights_.emplace(&layer, std::move(cw)).first->second;
  }

  // The box rule's pixel bounds l and h for inputs of `shape` (channel c: (0 - mean_c) / std_c and
  // (1 - mean_c) / std_c), on device_; kept while the shape stays.
  void box_bounds(const Shape& shape, const std::string& path) {
    if (bounds_low_.data() != nullptr && bounds_low_.shape() == shape) return;
    const std::int64_t channels = shape.c(), plane = shape.h() * shape.w();
    FOVEA_CHECK(channels <= 3, "lrp: the box rule needs at most 3 input channels, got ", shape.str(), " at '",
                path, "'");
    std::vector<float> lo(static_cast<std::size_t>(shape.numel())), hi(lo.size());
    for (std::size_t i = 0; i < lo.size(); ++i) {
      const auto c = static_cast<int>((static_cast<std::int64_t>(i) / plane) % channels);
      lo[i] = (0.0f - opt_.normalisation.mean[c]) / opt_.normalisation.std[c];
      hi[i] = (1.0f - opt_.normalisation.mean[c]) / opt_.normalisation.std[c];
    }
    bounds_low_ = device_tensor(lo, shape, device_);
    bounds_high_ = device_tensor(hi, shape, device_);
  }

  // R_in = x * T(R / stab(z), W') for z = conv(x, W') + b'; the box rule subtracts the bounds' terms.
  // Everything runs on device_ (fovea ops); only the weights were prepared on the host.
  Tensor conv(nn::Conv2d& layer, nn::BatchNorm2d* bn, const Tensor& r, const std::string& path) {
    const CView x = input_of_capture(&layer, path);
    const bool first = &layer == first_layer_;
    const ConvWeights& cw = conv_weights(layer, bn, path, first);
    const Conv2dParams& p = layer.params();
    const auto transpose = [&](const Tensor& s, const Tensor& weights) {
      Tensor dx(x.shape(), device_);
      conv2d_backward_data(s, weights, dx.view(), p);
      return dx;
    };
    Tensor out(x.shape(), device_);
    if (first && opt_.input == LrpInputRule::box) {
      box_bounds(x.shape(), path);
      Tensor z = conv2d_forward(x, cw.rho, CView(), p);
      const Tensor zl = conv2d_forward(bounds_low_, cw.positive, CView(), p),
                   zh = conv2d_forward(bounds_high_, cw.negative, CView(), p);
      lrp_box_denominator(z, zl, zh, z.view());
      const Tensor s = ratio(r, z, path);
      const Tensor cx = transpose(s, cw.rho), cl = transpose(s, cw.positive), ch = transpose(s, cw.negative);
      lrp_box_input(x, cx, bounds_low_, cl, bounds_high_, ch, out.view());
    } else if (first && opt_.input == LrpInputRule::flat) {
      const Tensor ones = full(x.shape(), 1.0f, device_);
      const Tensor s = ratio(r, conv2d_forward(ones, cw.rho, CView(), p), path);
      conv2d_backward_data(s, cw.rho, out.view(), p);
    } else {
      const CView bias = cw.rho_bias.data() != nullptr ? cw.rho_bias.cview() : CView();
      const Tensor s = ratio(r, conv2d_forward(x, cw.rho, bias, p), path);
      multiply(x, transpose(s, cw.rho), out.view());
    }
    return out;
  }

  Tensor linear(nn::Linear& layer, const Tensor& r, const std::string& path) {
    const CView x = input_of_capture(&layer, path);
    const CView w = layer.weight().value;
    auto it = linear_bias_.find(&layer);
    if (it == linear_bias_.end()) {
      const std::vector<float> bias = leaf_tensor(layer, "bias");
      it = linear_bias_
               .emplace(&layer, bias.empty() ? Tensor() : device_tensor(bias, Shape{w.shape()[0]}, device_))
               .first;
    }
    const CView bias = it->second.data() != nullptr ? it->second.cview() : CView();
    const Shape xs{x.shape()[0], x.shape().sample_numel()};
    const CView x2 = x.reshaped(xs);
    const Tensor s = ratio(r, linear_forward(x2, w, bias), path);
    Tensor c(xs, device_);
    linear_backward_data(s, w, c.view());
    Tensor out(xs, device_);
    multiply(x2, c, out.view());
    out.reshape(x.shape());
    return out;
  }

  Tensor global_avg_pool(const void* layer, const Tensor& r, const std::string& path) {
    const CView x = input_of_capture(layer, path);
    const std::int64_t planes = x.shape()[0] * x.shape()[1];
    FOVEA_CHECK(r.numel() == planes, "lrp: layer '", path, "': relevance ", r.shape().str(), " for input ",
                x.shape().str());
    Tensor out(x.shape(), device_);
    lrp_mean_share(x, r, opt_.epsilon, out.view());
    return out;
  }

  Tensor max_pool(nn::MaxPool2d& layer, const Tensor& r, const std::string& path) {
    const CView x = input_of_capture(&layer, path);
    Tensor y(pool2d_output_shape(x.shape(), layer.params()), device_);
    max_pool2d_forward(x, y.view(), layer.params());
    FOVEA_CHECK(y.shape() == r.shape(), "lrp: layer '", path, "': relevance ", r.shape().str(),
                " for output ", y.shape().str());
    Tensor out(x.shape(), device_);
    max_pool2d_backward(x, y, r, out.view(), layer.params());
    return out;
  }

  LrpOptions opt_;
  Device device_;
  std::map<const void*, LrpCapture> captures_;
  const void* first_layer_ = nullptr;
  std::map<const void*, ConvWeights> conv_weights_;  // per convolution, for every chunk
  std::map<const void*, Tensor> linear_bias_;        // per linear layer (empty: no bias)
  Tensor bounds_low_, bounds_high_;                  // the box rule's l and h for the last input shape
};

}  // namespace detail

// LRP maps of images (N, 3, H, W) for targets[n] (see the header comment for the rules).
template <class Net>
AttributionMaps lrp(Net& net, CView images, std::span<const int> targets, const LrpOptions& opt = {}) {
  detail::check_batch(opt.batch, "lrp");
  FOVEA_CHECK(opt.epsilon >= 0.0f && std::isfinite(opt.epsilon), "lrp: epsilon ", opt.epsilon,
              " must be finite and >= 0");
  FOVEA_CHECK(opt.gamma >= 0.0f && std::isfinite(opt.gamma), "lrp: gamma ", opt.gamma,
              " must be finite and >= 0");
  const detail::Images im = detail::to_host(images, targets, "lrp");
  net.set_training(false);
  detail::LrpEngine engine(opt, im.device);
  const std::vector<nn::TapSite> sites = nn::tap_sites(net);
  FOVEA_CHECK(!sites.empty(), "lrp: the network has no layers");
  engine.set_first_layer(sites.front().layer);
  nn::ActivationTap tap([&](const nn::TapSite& site, CView x, CView y) { engine.capture(site, x, y); });
  tap.attach(net);

  AttributionMaps m = detail::empty_maps(im);
  for (std::int64_t i0 = 0; i0 < im.n; i0 += opt.batch) {
    const std::int64_t b = std::min<std::int64_t>(opt.batch, im.n - i0);
    const Shape shape{b, im.c, im.h, im.w};
    engine.clear();
    const CView out = net.forward(im.batch(i0, b));
    FOVEA_CHECK(out.shape().rank() == 2 && out.shape()[0] == b, "lrp: the net must give (N, K) logits, got ",
                out.shape().str());
    const std::int64_t k = out.shape()[1];
    std::vector<float> start = detail::host_values(out);
    for (std::int64_t i = 0; i < b; ++i) {
      const int t = targets[static_cast<std::size_t>(i0 + i)];
      FOVEA_CHECK(0 <= t && t < k, "lrp: target class ", t, " outside [0, ", k, ")");
      m.target_logit[static_cast<std::size_t>(i0 + i)] = start[static_cast<std::size_t>(i * k + t)];
      for (std::int64_t j = 0; j < k; ++j)
        if (j != t) start[static_cast<std::size_t>(i * k + j)] = 0.0f;
    }
    const Tensor rel = engine.relevance(net, detail::device_tensor(start, out.shape(), im.device), "");
    FOVEA_CHECK(rel.shape() == shape, "lrp: input relevance ", rel.shape().str(), " for images ",
                shape.str());
    copy(rel, View(m.raw.data() + i0 * im.size(), shape, Device::cpu()));
  }
  engine.clear();
  detail::fill_heatmap(m);
  return m;
}

}  // namespace fovea::analysis
