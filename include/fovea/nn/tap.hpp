// fovea/nn/tap.hpp: activation capture. An ActivationTap observes the forward output of selected
// leaf layers of a composed network (nn/compose.hpp), named by their state-dict path ("conv1",
// "layer1.0.bn2", "layer2.0.downsample.0", "fc") and kind (conv, bn, linear, other): what
// torchvision users get from forward hooks, for feature statistics and saliency.
//
// Mechanism: every composite (Sequential, Residual, Repeat, Optional) keeps one TapHook per child.
// After a leaf child's forward returns, the composite tests that hook's pointer; when it is set, the
// tap's callback runs with (site, input, output) before the next layer runs. So:
//   - without a tap a leaf forward costs one null-pointer test, no virtual call;
//   - a leaf the tap did not select keeps a null hook and costs the same test;
//   - the callback sees the output exactly as the leaf wrote it: fovea's ReLU writes its own buffer
//     (never in place on its input) and Residual adds and rectifies into a buffer of its own, so a
//     BatchNorm2d's captured output is the normalised value before the ReLU that follows it (and,
//     for a block's last BN, before the residual add), as a torchvision forward hook on the
//     BatchNorm2d module sees it when it runs. (In torchvision the next ReLU(inplace=True) then
//     overwrites that tensor, so a hook that keeps a reference without cloning ends up holding the
//     rectified values; fovea's callback gets a view that stays unchanged until the next layer runs
//     and must copy what it keeps.)
// The views passed to the callback are valid only during the call; they live on the network's
// device (copy_to_host copies from a CUDA device, which waits for the producing kernels).
//
// A tap selects its layers when attached (attach(net) calls the selector once per leaf, in network
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
  std::string type;  // the layer's kind_name(): "Conv2d", "ReLU", ...
  int index = 0;     // position among all leaves of the network, in network (forward) order
};

// Called after a selected leaf's forward: its input x and output y (on the network's device).
using TapCallback = std::function<void(const TapSite& site, CView x, CView y)>;
using TapSelector = std::function<bool(const TapSite& site)>;

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
  const TapCallback* callback = nullptr;
  const void* owner = nullptr;  // the ActivationTap
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
  void emit(CView x, CView y) const { (*point_->callback)(point_->site, x, y); }

 private:
  friend class ActivationTap;
  const detail::TapPoint* point_ = nullptr;
};

namespace detail {

// f(path, leaf, hook) for every leaf under `layer`, depth first in network order. Composites that
// keep no hooks (user types without visit_child_hooks) are skipped: their leaves cannot be observed.
template <class L, class F>
void for_each_leaf_hook(L& layer, const std::string& path, F& f) {
  layer.visit_child_hooks(path, [&](const std::string& child_path, auto& child, TapHook& hook) {
    using C = std::remove_cvref_t<decltype(child)>;
    if constexpr (TapComposite<C>) for_each_leaf_hook(child, child_path, f);
    else if constexpr (!Composite<C>) f(child_path, child, hook);
  });
}

// What a composite runs for each child: the child's forward, then the hook of a leaf child.
template <class L>
CView forward_child(L& child, CView x, const TapHook& hook) {
  const CView y = child.forward(x);
  if constexpr (!Composite<L>) {
    if (hook.attached()) [[unlikely]]
      hook.emit(x, y);
  }
  return y;
}

}  // namespace detail

// Every leaf of `net` (a composite) in network order, with its path, kind and type.
template <class Net>
std::vector<TapSite> tap_sites(Net& net) {
  static_assert(detail::TapComposite<Net>, "fovea tap: the network must be a composite (Sequential, ...)");
  std::vector<TapSite> sites;
  auto f = [&](const std::string& path, auto& leaf, TapHook&) {
    using L = std::remove_cvref_t<decltype(leaf)>;
    sites.push_back(TapSite{path, layer_kind(L::kind_name()), std::string(L::kind_name()),
                            static_cast<int>(sites.size())});
  };
  detail::for_each_leaf_hook(net, std::string(), f);
  return sites;
}

// Observes the selected leaves of one network at a time.
class ActivationTap {
 public:
  // select: which leaves to observe (empty: all); callback: what to do with their outputs.
  explicit ActivationTap(TapCallback callback, TapSelector select = {})
      : callback_(std::move(callback)), select_(std::move(select)) {
    FOVEA_CHECK(static_cast<bool>(callback_), "ActivationTap: the callback is empty");
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
    auto f = [&](const std::string& path, auto& leaf, TapHook& hook) {
      using L = std::remove_cvref_t<decltype(leaf)>;
      TapSite site{path, layer_kind(L::kind_name()), std::string(L::kind_name()), index++};
      FOVEA_CHECK(!hook.attached(), "ActivationTap::attach: layer '", path, "' already carries another tap");
      if (select_ && !select_(site)) return;
      points_.push_back(
          std::make_unique<detail::TapPoint>(detail::TapPoint{std::move(site), &callback_, this}));
      hooks.push_back(&hook);
    };
    try {
      detail::for_each_leaf_hook(net, std::string(), f);
    } catch (...) {  // nothing hooked yet: leave the tap unattached
      points_.clear();
      throw;
    }
    for (std::size_t i = 0; i < hooks.size(); ++i) hooks[i]->point_ = points_[i].get();
    detach_ = [&net, this] {
      auto clear = [this](const std::string&, auto&, TapHook& hook) {
        if (hook.point_ != nullptr && hook.point_->owner == this) hook.point_ = nullptr;
      };
      detail::for_each_leaf_hook(net, std::string(), clear);
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
  TapSelector select_;
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
