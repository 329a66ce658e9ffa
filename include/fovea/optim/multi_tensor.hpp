// fovea/optim/multi_tensor.hpp: the table behind fovea's fused multi-tensor ops (optimizer
// updates, norms, clipping, EMA) and the per-element update formulas shared by the CPU loop and
// the CUDA kernels (kernels/optim.cuh).
//
// A multi-tensor op treats a list of tensors as one concatenated element space cut into chunks of
// kMultiTensorChunk elements; a chunk never crosses a tensor boundary. The table lists, per tensor,
// its parameter, gradient and optimizer-state pointers, its size and flags; per chunk, which tensor
// and which chunk of it. A CUDA op runs one block per chunk, so one launch covers all tensors. The
// table is copied to the device once and again only when a pointer changes.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "fovea/core/config.hpp"
#include "fovea/core/tensor.hpp"

namespace fovea {

// Elements per chunk: a multiple of 4 (float4 loads) and of the block size.
inline constexpr std::int64_t kMultiTensorChunk = 16384;

// Per-tensor flags.
inline constexpr std::uint32_t kSlotNoDecay = 1u;   // weight decay does not apply (bias / norm rule)
inline constexpr std::uint32_t kSlotNoAdapt = 2u;   // LARS: no trust-ratio adaptation
inline constexpr std::uint32_t kSlotAligned = 4u;   // every pointer 16-byte aligned (set by the table)

// One tensor of a multi-tensor op. state0/state1 may be null when the op uses fewer states.
struct TensorSlot {
  float* param = nullptr;   // updated in place (the EMA target)
  float* grad = nullptr;    // read (the EMA source); scaled in place by clipping
  float* state0 = nullptr;  // momentum buffer, Adam first moment
  float* state1 = nullptr;  // Adam second moment
  std::int64_t numel = 0;
  std::uint32_t flags = 0;
  std::uint32_t chunk_begin = 0;  // index of this tensor's first chunk in the chunk table (set by the table)
};

// One chunk: tensor index and chunk index within that tensor.
struct ChunkRef {
  std::uint32_t tensor = 0;
  std::uint32_t chunk = 0;
};

// Host table of slots and chunks plus its device copy and device scratch (per-chunk partial sums).
// set() compares the new slots with the current ones and re-uploads only when something changed.
class MultiTensorTable {
 public:
  MultiTensorTable() = default;
  MultiTensorTable(std::vector<TensorSlot> slots, Device device) { set(std::move(slots), device); }

  void set(std::vector<TensorSlot> slots, Device device) {
    for (auto& s : slots) {
      FOVEA_CHECK(s.numel >= 0, "multi-tensor table: negative size ", s.numel);
      FOVEA_CHECK(s.numel == 0 || (s.param != nullptr && s.grad != nullptr),
                  "multi-tensor table: a tensor of ", s.numel, " elements has a null parameter or gradient");
      const bool aligned = aligned16(s.param) && aligned16(s.grad) && aligned16(s.state0) && aligned16(s.state1);
      s.flags = (s.flags & ~kSlotAligned) | (aligned ? kSlotAligned : 0u);
    }
    std::vector<ChunkRef> chunks;
    std::int64_t total = 0;
    for (std::size_t t = 0; t < slots.size(); ++t) {
      slots[t].chunk_begin = static_cast<std::uint32_t>(chunks.size());
      const std::int64_t n = (slots[t].numel + kMultiTensorChunk - 1) / kMultiTensorChunk;
      for (std::int64_t c = 0; c < n; ++c)
        chunks.push_back({static_cast<std::uint32_t>(t), static_cast<std::uint32_t>(c)});
      total += slots[t].numel;
    }
    FOVEA_CHECK(chunks.size() < (std::size_t{1} << 31), "multi-tensor table: too many chunks (", chunks.size(), ")");
    const bool unchanged = device == device_ && slots.size() == slots_.size() &&
                           (slots.empty() || std::memcmp(slots.data(), slots_.data(), slots.size() * sizeof(TensorSlot)) == 0);
    if (unchanged && valid_) return;
    slots_ = std::move(slots);
    chunks_ = std::move(chunks);
    total_ = total;
    device_ = device;
    valid_ = true;
    ++version_;
    if (device.is_cuda()) upload();
  }

  const std::vector<TensorSlot>& slots() const { return slots_; }
  const std::vector<ChunkRef>& chunks() const { return chunks_; }
  std::int64_t total_numel() const { return total_; }
  std::int64_t num_chunks() const { return static_cast<std::int64_t>(chunks_.size()); }
  Device device() const { return device_; }
  // Incremented each time the table changes (the device copy was rebuilt).
  std::uint64_t version() const { return version_; }

  // Device copies (CUDA tables only).
  const TensorSlot* device_slots() const { return reinterpret_cast<const TensorSlot*>(storage_.data()); }
  const ChunkRef* device_chunks() const {
    return reinterpret_cast<const ChunkRef*>(reinterpret_cast<const char*>(storage_.data()) + chunk_offset_);
  }
  // Device scratch of `per_chunk` floats per chunk plus `extra` floats (grown on demand).
  float* scratch(std::int64_t per_chunk, std::int64_t extra = 0) {
    const std::int64_t need = std::max<std::int64_t>(1, per_chunk * num_chunks() + extra);
    if (scratch_.numel() < need || !(scratch_.device() == device_)) scratch_ = Tensor(Shape{need}, device_);
    return scratch_.data();
  }

 private:
  static bool aligned16(const void* p) { return (reinterpret_cast<std::uintptr_t>(p) & 15u) == 0; }

  void upload() {
    const std::size_t slot_bytes = slots_.size() * sizeof(TensorSlot);
    chunk_offset_ = (slot_bytes + 15) / 16 * 16;
    const std::size_t bytes = chunk_offset_ + chunks_.size() * sizeof(ChunkRef);
    host_.assign((bytes + 3) / 4 + 1, 0.0f);
    if (slot_bytes) std::memcpy(host_.data(), slots_.data(), slot_bytes);
    if (!chunks_.empty())
      std::memcpy(reinterpret_cast<char*>(host_.data()) + chunk_offset_, chunks_.data(), chunks_.size() * sizeof(ChunkRef));
    const Shape s{static_cast<std::int64_t>(host_.size())};
    if (storage_.numel() < s.numel() || !(storage_.device() == device_)) storage_ = Tensor(s, device_);
    copy(CView(host_.data(), s, Device::cpu()), View(storage_.data(), s, device_));
  }

  std::vector<TensorSlot> slots_;
  std::vector<ChunkRef> chunks_;
  std::int64_t total_ = 0;
  Device device_;
  bool valid_ = false;
  std::uint64_t version_ = 0;
  std::vector<float> host_;  // staging for the upload (TensorSlot and ChunkRef bytes)
  std::size_t chunk_offset_ = 0;
  Tensor storage_;           // device copy of host_
  Tensor scratch_;
};

// ---- per-step scalars of each fused op ------------------------------------------------------

// torch.optim.SGD: d = g + wd*p; buf = first ? d : momentum*buf + (1-dampening)*d;
// d = nesterov ? d + momentum*buf : buf; p -= lr*d. momentum == 0: p -= lr*d, no buffer.
struct SgdStep {
  float lr = 0.0f;
  float momentum = 0.0f;
  float dampening = 0.0f;
  float weight_decay = 0.0f;
  bool nesterov = false;
  bool first = false;  // first step: the buffer is initialised to d (PyTorch)
};

// torch.optim.AdamW: p *= 1 - lr*wd; m = lerp(m, g, 1-b1); v = b2*v + (1-b2)*g^2;
// p -= (lr / bc1) * m / (sqrt(v) / sqrt(bc2) + eps), bc_i = 1 - b_i^t.
struct AdamWStep {
  float lr = 0.0f;
  float beta1 = 0.9f;
  float beta2 = 0.999f;
  float eps = 1e-8f;
  float weight_decay = 0.0f;
  float bias_correction1 = 1.0f;  // 1 - beta1^t
  float bias_correction2 = 1.0f;  // 1 - beta2^t
};

// The denominator of the LARS trust ratio.
enum class LarsTrust {
  paper,             // eta*|w| / (|g| + wd*|w|)        (You et al. 2017, eq. 6)
  decayed_gradient,  // eta*|w| / |g + wd*w|            (SimCLR's TF LARSOptimizer, Barlow Twins)
};

// LARS as SimCLR runs it: d = g + wd*p (wd = 0 for excluded tensors); r = trust ratio (1 for
// excluded tensors, and when |w| or the denominator's gradient norm is 0); v = momentum*v + lr*r*d;
// p -= nesterov ? momentum*v + lr*r*d : v.
struct LarsStep {
  float lr = 0.0f;
  float momentum = 0.9f;
  float weight_decay = 1e-6f;
  float trust_coefficient = 1e-3f;
  bool nesterov = false;
  LarsTrust trust = LarsTrust::paper;
};

namespace math {

// Element functors of the fused updates. Each sees one element: p (parameter), g (gradient),
// s0/s1 (states), the tensor's effective weight decay and its LARS trust ratio. kStates says
// how many state arrays the op reads and writes.
struct SgdPlainElement {
  static constexpr int kStates = 0;
  float lr;
  FOVEA_HD void operator()(float& p, float g, float&, float&, float decay, float) const {
    p -= lr * (g + decay * p);
  }
};

struct SgdMomentumElement {
  static constexpr int kStates = 1;
  float lr, momentum, dampening;
  bool nesterov, first;
  FOVEA_HD void operator()(float& p, float g, float& buf, float&, float decay, float) const {
    const float d = g + decay * p;
    buf = first ? d : momentum * buf + (1.0f - dampening) * d;
    p -= lr * (nesterov ? d + momentum * buf : buf);
  }
};

struct AdamWElement {
  static constexpr int kStates = 2;
  float lr, beta1, beta2, eps, step_size, bias_correction2_sqrt;
  FOVEA_HD void operator()(float& p, float g, float& m, float& v, float decay, float) const {
    p *= 1.0f - lr * decay;
    m += (1.0f - beta1) * (g - m);
    v = beta2 * v + (1.0f - beta2) * g * g;
    p -= step_size * m / (sqrtf(v) / bias_correction2_sqrt + eps);
  }
};

struct LarsElement {
  static constexpr int kStates = 1;
  float lr, momentum;
  bool nesterov;
  FOVEA_HD void operator()(float& p, float g, float& v, float&, float decay, float ratio) const {
    const float step = lr * ratio * (g + decay * p);
    v = momentum * v + step;
    p -= nesterov ? momentum * v + step : v;
  }
};

// target = m*target + (1-m)*source (p is the target, g the source).
struct EmaElement {
  static constexpr int kStates = 0;
  float momentum;
  FOVEA_HD void operator()(float& p, float g, float&, float&, float, float) const {
    p = momentum * p + (1.0f - momentum) * g;
  }
};

inline AdamWElement adamw_element(const AdamWStep& s) {
  return {s.lr, s.beta1, s.beta2, s.eps, s.lr / s.bias_correction1, std::sqrt(s.bias_correction2)};
}

// LARS trust ratio from the tensor's sums w2 = sum p^2, g2 = sum g^2, wg = sum p*g and its
// effective weight decay; 1 when |w| == 0 or the gradient norm is 0.
FOVEA_HD float lars_trust_ratio(double w2, double g2, double wg, float decay, float eta, LarsTrust rule) {
  const double w = sqrt(w2);
  const double gn = sqrt(g2);
  if (!(w > 0.0) || !(gn > 0.0)) return 1.0f;
  double denom;
  if (rule == LarsTrust::paper) {
    denom = gn + static_cast<double>(decay) * w;
  } else {
    const double d2 = g2 + 2.0 * decay * wg + static_cast<double>(decay) * decay * w2;
    denom = sqrt(d2 > 0.0 ? d2 : 0.0);
    if (!(denom > 0.0)) return 1.0f;
  }
  return static_cast<float>(eta * w / denom);
}

// torch.nn.utils.clip_grad_norm_: the factor applied to every gradient.
FOVEA_HD float clip_coefficient(float total_norm, float max_norm) {
  const float c = max_norm / (total_norm + 1e-6f);
  return c < 1.0f ? c : 1.0f;
}

}  // namespace math
}  // namespace fovea
