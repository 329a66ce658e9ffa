// fovea/optim/ema.hpp: the exponential moving average of MoCo's key encoder,
// target = m*target + (1-m)*source over all parameter tensors in one fused op.
#pragma once

#include <string>
#include <vector>

#include "fovea/nn/layer.hpp"
#include "fovea/ops/optim.hpp"
#include "fovea/optim/optimizer.hpp"

namespace fovea::optim {

// Pairs target[i] with source[i] (same shapes, one device) and keeps the table between calls.
class Ema {
 public:
  Ema(std::vector<nn::Parameter*> target, std::vector<nn::Parameter*> source)
      : target_(std::move(target)), source_(std::move(source)) {
    FOVEA_CHECK(target_.size() == source_.size(), "ema: ", target_.size(), " target tensors vs ", source_.size(),
                " source tensors");
  }
  // Both networks' parameters in visiting order; names must match.
  template <class TargetNet, class SourceNet>
  static Ema of(TargetNet& target, SourceNet& source) {
    const auto t = collect_parameters(target), s = collect_parameters(source);
    FOVEA_CHECK(t.size() == s.size(), "ema: target has ", t.size(), " parameters, source ", s.size());
    std::vector<nn::Parameter*> tp, sp;
    for (std::size_t i = 0; i < t.size(); ++i) {
      FOVEA_CHECK(t[i].name == s[i].name, "ema: parameter ", i, " is '", t[i].name, "' in the target but '",
                  s[i].name, "' in the source");
      tp.push_back(t[i].param);
      sp.push_back(s[i].param);
    }
    return Ema(std::move(tp), std::move(sp));
  }

  // target = source, every tensor, bit for bit, whatever target held (MoCo's initial copy of the
  // query encoder: update(0) would compute 0 * target, which is NaN where the target's memory was
  // never written and holds an infinity or a NaN).
  void copy_source() {
    for (std::size_t i = 0; i < target_.size(); ++i) {
      Tensor& t = target_[i]->value;
      const Tensor& s = source_[i]->value;
      check_same_shape("ema_copy", "target", t.shape(), "source", s.shape());
      copy(s, t.view());
    }
  }
  // target = momentum*target + (1-momentum)*source, every tensor.
  void update(float momentum) {
    std::vector<TensorSlot> slots(target_.size());
    Device device;
    for (std::size_t i = 0; i < target_.size(); ++i) {
      Tensor& t = target_[i]->value;
      const Tensor& s = source_[i]->value;
      check_same_shape("ema_update", "target", t.shape(), "source", s.shape());
      check_same_device("ema_update", "target", t.device(), "source", s.device());
      if (i == 0) device = t.device();
      check_same_device("ema_update", "first target", device, "target", t.device());
      slots[i].param = t.data();
      slots[i].grad = const_cast<float*>(s.data());  // read only: the EMA source
      slots[i].numel = t.numel();
    }
    if (slots.empty()) return;
    table_.set(std::move(slots), device);
    fovea::ema_update(table_, momentum);
  }

 private:
  std::vector<nn::Parameter*> target_, source_;
  MultiTensorTable table_;
};

// One-off form: builds the table, updates, drops it.
inline void ema_update(const std::vector<nn::Parameter*>& target, const std::vector<nn::Parameter*>& source,
                       float momentum) {
  Ema(target, source).update(momentum);
}

}  // namespace fovea::optim
