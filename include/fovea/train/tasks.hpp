// fovea/train/tasks.hpp: what one training step computes, for each training procedure of the study:
// supervised classification (full fine-tuning or linear evaluation on a frozen backbone), SimCLR
// (NT-Xent over two views in one batch) and MoCo v2 (InfoNCE against a queue, momentum key encoder).
// A task runs forward, loss and backward; the Trainer (trainer.hpp) owns the optimizer, the schedule,
// logging, checkpoints and resume. A task switches off the input gradient of the network it trains
// (nn::set_input_grad(net, false): the stem skips its backward-data convolution); a saliency study
// on the same network turns it back on with nn::set_input_grad(net, true).
#pragma once

#include <cmath>
#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "fovea/analysis/features.hpp"
#include "fovea/core/tensor.hpp"
#include "fovea/nn/layer.hpp"
#include "fovea/ops/contrastive.hpp"
#include "fovea/ops/loss.hpp"
#include "fovea/ops/random.hpp"
#include "fovea/optim/ema.hpp"
#include "fovea/optim/optimizer.hpp"

namespace fovea::train {

// One batch as a task consumes it. Supervised: images (N, 3, S, S), labels (N). Contrastive: images
// (2N, 3, S, S), rows [0, N) the first view and [N, 2N) the second of the same N samples.
struct Batch {
  Tensor images;
  Tensor labels;
  std::vector<std::int64_t> ids;
};

struct StepStats {
  double loss = 0.0;
  std::int64_t images = 0;  // samples consumed (not views)
  std::vector<std::pair<std::string, double>> metrics;
  // Metrics too costly for every step: the Trainer calls this only for the steps it logs, right
  // after the optimizer step (so it may read what the task computed in this step, not the weights).
  std::function<std::vector<std::pair<std::string, double>>()> logged_metrics;
};

namespace detail {
inline double scalar(const Tensor& t) { return static_cast<double>(t.to_vector().at(0)); }
// Embedding health (analysis/features.hpp) of normalised embeddings whose rows i and i + rows/2 are
// positives (the two views), as logged metrics: embedding_std (the mean per-dimension std; collapse
// drives it to 0, a healthy embedding sits near 1/sqrt(D)), embedding_std_scaled (times sqrt(D), ~1),
// effective_rank, alignment and uniformity.
inline std::vector<std::pair<std::string, double>> embedding_health_metrics(const std::vector<float>& z,
                                                                            std::int64_t rows,
                                                                            std::int64_t dims) {
  std::vector<std::int64_t> positive(static_cast<std::size_t>(rows));
  const std::int64_t half = rows / 2;
  for (std::int64_t i = 0; i < rows; ++i)
    positive[static_cast<std::size_t>(i)] = i < half ? i + half : i - half;
  const analysis::EmbeddingHealth h = analysis::embedding_health({z, rows, dims}, positive);
  return {{"embedding_std", h.dim_std_mean},
          {"embedding_std_scaled", h.dim_std_scaled},
          {"effective_rank", h.effective_rank},
          {"alignment", h.alignment},
          {"uniformity", h.uniformity}};
}
// Gives `t` the shape on `device`, reallocating only when needed.
inline void ensure(Tensor& t, const Shape& s, Device device) {
  if (t.data() == nullptr || t.device() != device) t = Tensor(s, device);
  else t.resize(s);
}
// The batch on `device` (a no-op view when it is already there).
inline CView on_device(const Tensor& host, Device device, Tensor& staging) {
  if (host.device() == device) return host.view();
  if (staging.device() != device || !(staging.shape() == host.shape())) staging = Tensor(host.shape(), device);
  copy(host.view(), staging.view());
  return staging.view();
}
}  // namespace detail

enum class SupervisedLoss { cross_entropy, mse };

struct ClassifierTaskOptions {
  SupervisedLoss loss = SupervisedLoss::cross_entropy;
  float label_smoothing = 0.0f;
  std::vector<float> class_weights{};  // empty: unweighted
  bool linear_eval = false;          // freeze the backbone (eval mode, no gradient), train the head only
};

// Supervised training of a Classifier<Backbone> (models/resnet.hpp): backbone() and fc().
template <class Net>
class ClassifierTask {
 public:
  ClassifierTask(Net& net, Device device, ClassifierTaskOptions options = {})
      : net_(net), device_(device), options_(std::move(options)) {
    if (!options_.class_weights.empty())
      weights_ = Tensor::from(options_.class_weights, Shape{static_cast<std::int64_t>(options_.class_weights.size())},
                              device_);
    loss_ = Tensor(Shape{}, device_);
    nn::set_input_grad(net_, false);
  }

  // The parameters the optimizer updates, with their names (the head only in linear evaluation).
  std::vector<optim::ParamRef> trainable_parameters() {
    return options_.linear_eval ? optim::collect_parameters(net_.fc(), "fc") : optim::collect_parameters(net_);
  }

  void set_training(bool training) {
    net_.set_training(training);
    if (options_.linear_eval) net_.backbone().set_training(false);  // BN uses running statistics
  }

  StepStats train_step(const Batch& batch) {
    CView x = detail::on_device(batch.images, device_, images_);
    CView y = detail::on_device(batch.labels, device_, labels_);
    CView logits;
    if (options_.linear_eval) {
      CView features = net_.backbone().forward(x);
      logits = net_.fc().forward(features);
    } else {
      logits = net_.forward(x);
    }
    StepStats stats = loss_and_grad(logits, y, /*backward=*/true);
    if (options_.linear_eval) net_.fc().backward(dlogits_);
    else net_.backward(dlogits_);
    stats.images = batch.images.shape()[0];
    return stats;
  }

  // Loss and accuracy without gradients (the caller sets evaluation mode).
  StepStats eval_step(const Batch& batch) {
    CView x = detail::on_device(batch.images, device_, images_);
    CView y = detail::on_device(batch.labels, device_, labels_);
    StepStats stats = loss_and_grad(net_.forward(x), y, /*backward=*/false);
    stats.images = batch.images.shape()[0];
    return stats;
  }

  // Everything a checkpoint must hold to resume: parameters and buffers as "model.<name>".
  template <class F>
  void visit_state(F&& f) {
    net_.visit_parameters("model", [&](const std::string& n, nn::Parameter& p) { f(n, p.value); });
    net_.visit_buffers("model", [&](const std::string& n, Tensor& t) { f(n, t); });
  }
  void after_optimizer_step() {}
  Net& net() { return net_; }

 private:
  StepStats loss_and_grad(CView logits, CView labels, bool backward) {
    StepStats stats;
    if (options_.loss == SupervisedLoss::cross_entropy) {
      cross_entropy_forward(logits, labels, weights_.data() ? weights_.cview() : CView(), options_.label_smoothing,
                            loss_);
      if (backward) {
        detail::ensure(dlogits_, logits.shape(), device_);
        cross_entropy_backward(logits, labels, weights_.data() ? weights_.cview() : CView(),
                               options_.label_smoothing, 1.0f, dlogits_);
      }
      // Accuracy on the host: logits are small (N, K).
      std::vector<float> l(static_cast<std::size_t>(logits.numel())), t(static_cast<std::size_t>(labels.numel()));
      copy(logits, View(l.data(), logits.shape(), Device::cpu()));
      copy(labels, View(t.data(), labels.shape(), Device::cpu()));
      const std::int64_t n = logits.shape()[0], k = logits.shape().sample_numel();
      std::int64_t correct = 0;
      for (std::int64_t i = 0; i < n; ++i) {
        std::int64_t best = 0;
        for (std::int64_t j = 1; j < k; ++j)
          if (l[static_cast<std::size_t>(i * k + j)] > l[static_cast<std::size_t>(i * k + best)]) best = j;
        correct += best == static_cast<std::int64_t>(t[static_cast<std::size_t>(i)]);
      }
      stats.metrics.emplace_back("accuracy", n > 0 ? static_cast<double>(correct) / static_cast<double>(n) : 0.0);
    } else {
      mse_forward(logits, labels, loss_);
      if (backward) {
        detail::ensure(dlogits_, logits.shape(), device_);
        mse_backward(logits, labels, 1.0f, dlogits_);
      }
    }
    stats.loss = detail::scalar(loss_);
    return stats;
  }

  Net& net_;
  Device device_;
  ClassifierTaskOptions options_;
  Tensor weights_, loss_, dlogits_, images_, labels_;
};

struct SimClrOptions {
  float temperature = 0.5f;
};

// SimCLR on a ContrastiveModel<Backbone> (backbone + projection head): both views in one batch.
template <class Net>
class SimClrTask {
 public:
  SimClrTask(Net& net, Device device, SimClrOptions options = {}) : net_(net), device_(device), options_(options) {
    loss_ = Tensor(Shape{}, device_);
    accuracy_ = Tensor(Shape{2}, device_);
    nn::set_input_grad(net_, false);
  }
  std::vector<optim::ParamRef> trainable_parameters() { return optim::collect_parameters(net_); }
  void set_training(bool training) { net_.set_training(training); }

  StepStats train_step(const Batch& batch) {
    const std::int64_t two_n = batch.images.shape()[0];
    FOVEA_CHECK(two_n >= 2 && two_n % 2 == 0, "SimCLR needs both views of each sample: got a batch of ", two_n,
                " images");
    CView x = detail::on_device(batch.images, device_, images_);
    CView z = net_.forward(x);  // (2N, D)
    detail::ensure(znorm_, z.shape(), device_);
    detail::ensure(dz_, z.shape(), device_);
    detail::ensure(row_lse_, Shape{two_n}, device_);
    nt_xent_forward(z, options_.temperature, loss_, row_lse_, znorm_);
    nt_xent_backward(z, znorm_, row_lse_, options_.temperature, 1.0f, dz_);
    net_.backward(dz_);
    contrastive_accuracy(znorm_, accuracy_);
    StepStats s;
    s.loss = detail::scalar(loss_);
    s.images = two_n / 2;
    const auto acc = accuracy_.to_vector();
    s.metrics = {{"contrastive_top1", acc[0]}, {"contrastive_top5", acc[1]}};
    s.logged_metrics = [this] {
      return detail::embedding_health_metrics(znorm_.to_vector(), znorm_.shape()[0], znorm_.shape()[1]);
    };
    return s;
  }
  template <class F>
  void visit_state(F&& f) {
    net_.visit_parameters("model", [&](const std::string& n, nn::Parameter& p) { f(n, p.value); });
    net_.visit_buffers("model", [&](const std::string& n, Tensor& t) { f(n, t); });
  }
  void after_optimizer_step() {}

 private:
  Net& net_;
  Device device_;
  SimClrOptions options_;
  Tensor loss_, accuracy_, row_lse_, znorm_, dz_, images_;
};

struct MocoOptions {
  float temperature = 0.2f;
  float momentum = 0.999f;      // key encoder EMA
  std::int64_t queue_size = 65536;
  std::uint64_t seed = 0;       // queue initialisation
};

// MoCo v2: query encoder `net_q` (trained), key encoder `net_k` (EMA of the query encoder), queue of
// normalised keys. A batch holds both views: rows [0, N) go to the query encoder, [N, 2N) to the key
// encoder. Single device, so no shuffled batch norm (MoCo's multi-GPU trick); documented.
template <class Net>
class MocoTask {
 public:
  MocoTask(Net& net_q, Net& net_k, Device device, std::int64_t dim, MocoOptions options = {})
      : q_(net_q), k_(net_k), device_(device), options_(options) {
    loss_ = Tensor(Shape{}, device_);
    accuracy_ = Tensor(Shape{2}, device_);
    nn::set_input_grad(q_, false);
    Tensor raw(Shape{options_.queue_size, dim}, device_);
    random_normal(raw, RandomKey{options_.seed, kPurposeInit, 0, 1u << 20, 0}, 0.0f, 1.0f);
    queue_ = Tensor(raw.shape(), device_);
    l2_normalize_rows(raw, queue_);
    // The key encoder starts as a copy of the query encoder (MoCo's initialisation), whatever its
    // parameters held (they may be set up but never initialised). Ema::of checks that both networks
    // list the same parameters.
    ema_ = optim::Ema::of(k_, q_);
    ema_.copy_source();
    std::vector<Tensor*> bq = buffers(q_), bk = buffers(k_);
    for (std::size_t i = 0; i < bq.size(); ++i) copy(*bq[i], *bk[i]);
  }
  std::vector<optim::ParamRef> trainable_parameters() { return optim::collect_parameters(q_); }
  void set_training(bool t) {
    q_.set_training(t);
    k_.set_training(t);
  }

  StepStats train_step(const Batch& batch) {
    const std::int64_t two_n = batch.images.shape()[0];
    FOVEA_CHECK(two_n >= 2 && two_n % 2 == 0, "MoCo needs both views of each sample: got a batch of ", two_n,
                " images");
    const std::int64_t n = two_n / 2;
    CView x = detail::on_device(batch.images, device_, images_);
    CView q = q_.forward(x.batch(0, n));
    CView k = k_.forward(x.batch(n, two_n));
    detail::ensure(row_lse_, Shape{n}, device_);
    detail::ensure(qnorm_, q.shape(), device_);
    detail::ensure(knorm_, k.shape(), device_);
    detail::ensure(dq_, q.shape(), device_);
    infonce_forward(q, k, queue_, options_.temperature, loss_, row_lse_, qnorm_, knorm_);
    infonce_backward(q, qnorm_, knorm_, queue_, row_lse_, options_.temperature, 1.0f, dq_);
    q_.backward(dq_);
    infonce_accuracy(qnorm_, knorm_, queue_, accuracy_);
    StepStats s;
    s.loss = detail::scalar(loss_);
    s.images = n;
    const auto acc = accuracy_.to_vector();
    s.metrics = {{"contrastive_top1", acc[0]}, {"contrastive_top5", acc[1]}};
    // queries and keys stacked: row i's positive is its key, row n + i (the keys are this step's:
    // after_optimizer_step enqueues them but leaves knorm_ as it is)
    s.logged_metrics = [this] {
      std::vector<float> z = qnorm_.to_vector();
      const std::vector<float> k = knorm_.to_vector();
      z.insert(z.end(), k.begin(), k.end());
      return detail::embedding_health_metrics(z, 2 * qnorm_.shape()[0], qnorm_.shape()[1]);
    };
    return s;
  }
  // After the query encoder's update: the key encoder follows (EMA), the keys join the queue.
  void after_optimizer_step() {
    ema_.update(options_.momentum);
    queue_enqueue(queue_, knorm_, head_);
  }
  template <class F>
  void visit_state(F&& f) {
    q_.visit_parameters("model", [&](const std::string& n, nn::Parameter& p) { f(n, p.value); });
    q_.visit_buffers("model", [&](const std::string& n, Tensor& t) { f(n, t); });
    k_.visit_parameters("key_encoder", [&](const std::string& n, nn::Parameter& p) { f(n, p.value); });
    k_.visit_buffers("key_encoder", [&](const std::string& n, Tensor& t) { f(n, t); });
    f("queue", queue_);
    Tensor head = Tensor::from({static_cast<float>(head_)}, Shape{1});
    f("queue_head", head);
    head_ = static_cast<std::int64_t>(head.to_vector()[0]);
  }

 private:
  static std::vector<Tensor*> buffers(Net& net) {
    std::vector<Tensor*> v;
    net.visit_buffers("", [&](const std::string&, Tensor& t) { v.push_back(&t); });
    return v;
  }

  Net& q_;
  Net& k_;
  Device device_;
  MocoOptions options_;
  Tensor loss_, accuracy_, queue_, row_lse_, qnorm_, knorm_, dq_, images_;
  optim::Ema ema_{{}, {}};
  std::int64_t head_ = 0;
};

}  // namespace fovea::train
