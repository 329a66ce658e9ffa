// fovea/nn/tap.hpp: activation and gradient capture. An ActivationTap observes selected layers of a
// composed network (nn/compose.hpp), named by their state-dict path ("conv1", "layer1.0.bn2",
// "layer2.0.downsample.0", "fc", and with TapOptions::composites also "layer4", "layer4.1") and
// kind (conv, bn, linear, other): what torchvision users get from forward hooks (feature
// statistics) and full backward hooks (Grad-CAM's gradient at an inner layer).
//
// Mechanism: every composite (Sequential, Residual, Repeat, Optional) keeps one TapHook per child.
// After a child's forward returns, the composite tests that hook's pointer; when it is set, the
// tap's callback runs with (site, input, output) before the next layer runs. Before a child's
// backward runs, the composite tests the same pointer; when it is set and the tap has a gradient
// callback, that runs with (site, dy), dy the gradient with respect to the child's output. So:
//   - without a tap a forward or backward costs one null-pointer test per child, no virtual call;
//   - a layer the tap did not select keeps a null hook and costs the same test;
//   - the callback sees the output exactly as the layer wrote it: fovea's ReLU writes its own buffer
//     (never in place on its input) and Residual adds and rectifies into a buffer of its own, so a
//     BatchNorm2d's captured output is the normalised value before the ReLU that follows it (and,
//     for a block's last BN, before the residual add), as a torchvision forward hook on the
//     BatchNorm2d module sees it when it runs. (In torchvision the next ReLU(inplace=True) then
//     overwrites that tensor, so a hook that keeps a reference without cloning ends up holding the
//     rectified values; fovea's callback gets a view that stays unchanged until the next layer runs
//     and must copy what it keeps.) A composite's output is its last layer's (a ResNet block's:
//     after the residual add and its ReLU).
// The views passed to the callbacks are valid only during the call; they live on the network's
// device (copy_to_host copies from a CUDA device, which waits for the producing kernels).
//
// Sites: by default the leaves of the network, in network order. With TapOptions::composites the
// composites are sites too, each listed before the layers inside it; a composite that has no name of
// its own (an unnamed wrapper: a Residual's body Sequential, Optional, Inline) shares its parent's
// path and is not a site (its leaves still are). Paths of leaves may still coincide with a
// composite's (an Identity shortcut has its block's path): select by path and type, or take the
// first site of a path, which is the outermost.
//
// A tap selects its layers when attached (attach(net) calls the selector once per site, in network
// order) and detaches on destruction: the network must outlive the tap, or call detach() first.
// One network carries at most one tap at a time; copies and moves of a network carry no tap.
// The root passed to attach must be a composite (a bare leaf has no parent to hold its hook).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "fovea/nn/layer.hpp"

namespace fovea::nn {

// The leaf kinds feature statistics distinguish (REFERENCE §1.4: every conv, BN and linear output).
enum class LayerKind { conv, bn, linear, other };

inline const char* to_string(LayerKind k) {
  switch (k) {
    case LayerKind::conv: return "conv";
    case LayerKind::bn: return "bn";
    case LayerKind::linear: return "linear";
    case LayerKind::other: return "other";
  }
  return "?";
}

// The kind of a leaf from its kind_name(): Conv2d -> conv, BatchNorm2d -> bn, Linear -> linear.
inline LayerKind layer_kind(std::string_view kind_name) {
  if (kind_name == "Conv2d") return LayerKind::conv;
  if (kind_name == "BatchNorm2d") return LayerKind::bn;
  if (kind_name == "Linear") return LayerKind::linear;
  return LayerKind::other;
}

// One leaf layer of a network.
struct TapSite {
  std::string path;  // state-dict prefix: "layer1.0.conv2"; unnamed leaves by index ("layer1.0.2")
  LayerKind kind = LayerKind::other;
  std::string type;             // the layer's kind_name(): "Conv2d", "ReLU", "Repeat", ...
  int index = 0;                // position among all sites of the network, in network (forward) order
  bool composite = false;       // a composite (only with TapOptions::composites)
  const void* layer = nullptr;  // the layer object (identifies it; valid while the network lives)
};

// Called after a selected layer's forward: its input x and output y (on the network's device).
using TapCallback = std::function<void(const TapSite& site, CView x, CView y)>;
// Called before a selected layer's backward: dy, the gradient with respect to its output.
using TapGradCallback = std::function<void(const TapSite& site, CView dy)>;
using TapSelector = std::function<bool(const TapSite& site)>;

// What a tap observes beyond the forward outputs of the leaves.
struct TapOptions {
  TapSelector select;           // which sites to hook (empty: all)
  TapGradCallback on_gradient;  // empty: no gradient capture
  bool composites = false;      // composites are sites too (see the header comment)
};

namespace detail {

// Does L contain children (composites recurse; leaves are what a tap observes)?
template <class L>
concept Composite = requires(L& l) {
  l.visit_children(std::string(), [](const std::string&, auto&) {});
};

// A composite that keeps a TapHook per child (every composite of nn/compose.hpp).
template <class L>
concept TapComposite = requires(L& l) {
  l.visit_child_hooks(std::string(), [](const std::string&, auto&, auto&) {});
};

struct TapPoint {
  TapSite site;
  const TapCallback* callback = nullptr;           // may hold an empty function
  const TapGradCallback* grad_callback = nullptr;  // may hold an empty function
  const void* owner = nullptr;                     // the ActivationTap
};

}  // namespace detail

// A composite's slot for one child: null unless a tap selected that child. Copying or moving a
// network yields unattached hooks (a copy must not report to the original's tap).
class TapHook {
 public:
  TapHook() = default;
  TapHook(const TapHook&) noexcept {}
  TapHook& operator=(const TapHook&) noexcept {
    point_ = nullptr;
    return *this;
  }
  bool attached() const { return point_ != nullptr; }
  void emit(CView x, CView y) const {
    if (*point_->callback) (*point_->callback)(point_->site, x, y);
  }
  void emit_gradient(CView dy) const {
    if (*point_->grad_callback) (*point_->grad_callback)(point_->site, dy);
  }

 private:
  friend class ActivationTap;
  const detail::TapPoint* point_ = nullptr;
};

namespace detail {

// f(path, layer, hook) for every leaf under `layer` (and, with composites, every named composite
// before what it contains), depth first in network order. Composites that keep no hooks (user types
// without visit_child_hooks) are skipped: their leaves cannot be observed.
template <class L, class F>
void for_each_site_hook(L& layer, const std::string& path, F& f, bool composites) {
  layer.visit_child_hooks(path, [&](const std::string& child_path, auto& child, TapHook& hook) {
    using C = std::remove_cvref_t<decltype(child)>;
    if constexpr (TapComposite<C>) {
      if (composites && child_path != path) f(child_path, child, hook);
      for_each_site_hook(child, child_path, f, composites);
    } else if constexpr (!Composite<C>) {
      f(child_path, child, hook);
    }
  });
}

// What a composite runs for each child: the child's forward, then the child's hook.
template <class L>
CView forward_child(L& child, CView x, const TapHook& hook) {
  const CView y = child.forward(x);
  if (hook.attached()) [[unlikely]]
    hook.emit(x, y);
  return y;
}

// ... and for each child's backward: the hook with dy, then the child's backward.
template <class L>
CView backward_child(L& child, CView dy, const TapHook& hook) {
  if (hook.attached()) [[unlikely]]
    hook.emit_gradient(dy);
  return child.backward(dy);
}

}  // namespace detail

// Every leaf of `net` (a composite) in network order, with its path, kind and type; with
// `composites`, every site as TapOptions::composites defines them.
template <class Net>
std::vector<TapSite> tap_sites(Net& net, bool composites = false) {
  static_assert(detail::TapComposite<Net>, "fovea tap: the network must be a composite (Sequential, ...)");
  std::vector<TapSite> sites;
  auto f = [&](const std::string& path, auto& layer, TapHook&) {
    using L = std::remove_cvref_t<decltype(layer)>;
    sites.push_back(TapSite{path, layer_kind(L::kind_name()), std::string(L::kind_name()),
                            static_cast<int>(sites.size()), detail::Composite<L>, &layer});
  };
  detail::for_each_site_hook(net, std::string(), f, composites);
  return sites;
}

// Observes the selected layers of one network at a time.
class ActivationTap {
 public:
  // select: which leaves to observe (empty: all); callback: what to do with their outputs.
  explicit ActivationTap(TapCallback callback, TapSelector select = {})
      : callback_(std::move(callback)), select_(std::move(select)) {
    FOVEA_CHECK(static_cast<bool>(callback_), "ActivationTap: the callback is empty");
  }
  // callback (may be empty when options.on_gradient is set) for the forward outputs, options for
  // the selection, the gradients and the composites.
  ActivationTap(TapCallback callback, TapOptions options)
      : callback_(std::move(callback)),
        grad_callback_(std::move(options.on_gradient)),
        select_(std::move(options.select)),
        composites_(options.composites) {
    FOVEA_CHECK(static_cast<bool>(callback_) || static_cast<bool>(grad_callback_),
                "ActivationTap: both callbacks are empty");
  }
  ActivationTap(const ActivationTap&) = delete;
  ActivationTap& operator=(const ActivationTap&) = delete;
  ~ActivationTap() { detach(); }

  // Hooks the selected leaves of `net` (detaching from any earlier network first). Throws if `net`
  // already carries another tap. Returns the number of leaves selected.
  template <class Net>
  std::size_t attach(Net& net) {
    static_assert(detail::TapComposite<Net>, "fovea tap: the network must be a composite (Sequential, ...)");
    detach();
    int index = 0;
    std::vector<TapHook*> hooks;
    auto f = [&](const std::string& path, auto& layer, TapHook& hook) {
      using L = std::remove_cvref_t<decltype(layer)>;
      TapSite site{path,    layer_kind(L::kind_name()), std::string(L::kind_name()),
                   index++, detail::Composite<L>,       &layer};
      FOVEA_CHECK(!hook.attached(), "ActivationTap::attach: layer '", path, "' already carries another tap");
      if (select_ && !select_(site)) return;
      points_.push_back(std::make_unique<detail::TapPoint>(
          detail::TapPoint{std::move(site), &callback_, &grad_callback_, this}));
      hooks.push_back(&hook);
    };
    try {
      detail::for_each_site_hook(net, std::string(), f, composites_);
    } catch (...) {  // nothing hooked yet: leave the tap unattached
      points_.clear();
      throw;
    }
    for (std::size_t i = 0; i < hooks.size(); ++i) hooks[i]->point_ = points_[i].get();
    detach_ = [&net, this] {
      auto clear = [this](const std::string&, auto&, TapHook& hook) {
        if (hook.point_ != nullptr && hook.point_->owner == this) hook.point_ = nullptr;
      };
      detail::for_each_site_hook(net, std::string(), clear, true);
    };
    return points_.size();
  }

  // Unhooks the network (no-op when not attached).
  void detach() {
    if (detach_) detach_();
    detach_ = nullptr;
    points_.clear();
  }

  bool attached() const { return static_cast<bool>(detach_); }
  // The selected leaves, in network order.
  std::vector<TapSite> sites() const {
    std::vector<TapSite> s;
    for (const auto& p : points_) s.push_back(p->site);
    return s;
  }

 private:
  TapCallback callback_;
  TapGradCallback grad_callback_;
  TapSelector select_;
  bool composites_ = false;
  std::vector<std::unique_ptr<detail::TapPoint>> points_;
  std::function<void()> detach_;
};

// Copies features [begin, end) of every sample of y (rows of y.shape().sample_numel() values) into
// dst, row i at dst + i * dst_stride. y on any device (a CUDA source is copied to the host first,
// through `staging`, which is resized as needed and may be reused between calls).
//   requires: 0 <= begin <= end <= y.shape().sample_numel(); dst holds n rows of dst_stride >= end - begin.
inline void copy_to_host(CView y, std::int64_t begin, std::int64_t end, float* dst, std::int64_t dst_stride,
                         Tensor* staging = nullptr) {
  const std::int64_t n = y.shape().rank() == 0 ? 1 : y.shape()[0], f = y.shape().sample_numel();
  FOVEA_CHECK(0 <= begin && begin <= end && end <= f && dst_stride >= end - begin, "copy_to_host: features [",
              begin, ", ", end, ") of ", y.shape().str(), " with row stride ", dst_stride);
  if (n == 0 || begin == end) return;
  const float* src = y.data();
  Tensor local;
  if (!y.device().is_cpu()) {
    if (begin == 0 && end == f && dst_stride == f) {  // whole rows: one copy straight into dst
      copy(y, View(dst, y.shape(), Device::cpu()));
      return;
    }
    Tensor& host = staging != nullptr ? *staging : local;
    if (host.device() != Device::cpu() || host.data() == nullptr) host = Tensor(y.shape());
    else host.resize(y.shape());
    copy(y, host.view());
    src = host.data();
  }
  const std::int64_t width = end - begin;
  for (std::int64_t i = 0; i < n; ++i)
    std::memcpy(dst + i * dst_stride, src + i * f + begin, static_cast<std::size_t>(width) * sizeof(float));
}

}  // namespace fovea::nn
