// fovea/train/trainer.hpp: the training loop shared by every procedure. A Task (tasks.hpp) computes
// forward, loss and backward; the Trainer adds the schedule, gradient clipping, the optimizer step,
// progress output, metrics.jsonl / metrics.csv, a NaN/Inf guard, atomic full-state checkpoints
// and resume. Resuming from a checkpoint continues bit for bit on the CPU: every random draw is a
// function of (seed, epoch, sample), the sampler replays the epoch's order, and the checkpoint holds
// all state (weights, buffers, optimizer state, step count, queue, loop position).
#pragma once

#include <cmath>
#include <concepts>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <string>

#include "fovea/train/checkpoint.hpp"
#include "fovea/train/metrics_log.hpp"
#include "fovea/train/progress.hpp"
#include "fovea/train/tasks.hpp"

namespace fovea::train {

// Thrown when the loss or the gradient norm is NaN or infinite; names the step and the last good
// checkpoint (which the guard never overwrites).
class NonFiniteError : public Error {
 public:
  using Error::Error;
};

template <class S>
concept BatchSource = requires(S& s, Batch& b, std::int64_t epoch, std::int64_t first) {
  { s.batches_per_epoch() } -> std::convertible_to<std::int64_t>;
  s.start_epoch(epoch, first);  // the epoch's order from the seed, starting at batch `first`
  { s.next(b) } -> std::same_as<bool>;
};

template <class T>
concept TrainTask = requires(T& t, const Batch& b, bool training) {
  { t.train_step(b) } -> std::same_as<StepStats>;
  t.set_training(training);
  t.after_optimizer_step();
  t.visit_state([](const std::string&, Tensor&) {});
};

struct TrainerOptions {
  std::int64_t epochs = 1;
  std::filesystem::path out_dir;      // metrics.jsonl, metrics.csv, checkpoints/
  std::int64_t log_every = 10;        // metrics rows and plain progress lines every N steps
  std::int64_t checkpoint_every = 0;  // steps between checkpoints; 0: only at the end of each epoch
  float clip_grad_norm = 0.0f;        // 0: off
  bool resume = true;                 // continue from out_dir/checkpoints/latest when present
  int keep_checkpoints = 2;
  std::map<std::string, std::string> metadata{};  // stored in every checkpoint (the run's config)
  bool progress = true;
  // Called with the checkpoint a resumed run is about to continue from, before anything is
  // restored; throws to refuse it (e.g. a checkpoint written with other settings).
  std::function<void(const Checkpoint&)> on_resume{};
};

struct FitResult {
  LoopPosition position;
  double last_loss = 0.0;
  std::optional<std::int64_t> resumed_from_step;
  std::filesystem::path last_checkpoint;
};

template <class Task, class Optimizer, class Schedule>
  requires TrainTask<Task>
class Trainer {
 public:
  Trainer(Task& task, Optimizer& optimizer, Schedule schedule, TrainerOptions options)
      : task_(task), optimizer_(optimizer), schedule_(std::move(schedule)), options_(std::move(options)),
        log_(options_.out_dir) {
    FOVEA_CHECK(!options_.out_dir.empty(), "Trainer: an output folder is required");
    FOVEA_CHECK(options_.epochs >= 1, "Trainer: epochs must be >= 1, got ", options_.epochs);
    std::filesystem::create_directories(options_.out_dir);
  }

  std::filesystem::path checkpoint_dir() const { return options_.out_dir / "checkpoints"; }

  // Trains to options.epochs. on_epoch_end(epoch, step, log) runs at the end of each epoch, before
  // the epoch's checkpoint (validation, best-model selection); it may log rows of its own. A run
  // killed before that checkpoint is complete replays the epoch's tail and on_epoch_end, so what it
  // writes must be a function of the weights at the epoch's end.
  template <BatchSource Source, class EpochEnd = std::function<void(std::int64_t, std::int64_t, MetricsLog&)>>
  FitResult fit(Source& source, EpochEnd on_epoch_end = [](std::int64_t, std::int64_t, MetricsLog&) {}) {
    FitResult result;
    LoopPosition pos;
    if (options_.resume) {
      if (auto c = read_latest_checkpoint(checkpoint_dir())) {
        if (options_.on_resume) options_.on_resume(*c);
        restore(*c);
        pos = c->position;
        result.resumed_from_step = pos.step;
        result.last_checkpoint = c->path;
      }
    }
    log_.truncate_after(pos.step);
    const std::int64_t per_epoch = source.batches_per_epoch();
    FOVEA_CHECK(per_epoch >= 1, "Trainer: the data source yields no batch per epoch");
    const std::int64_t total = per_epoch * options_.epochs;
    Progress progress(total, options_.log_every);
    progress.set_first_step(pos.step);
    Batch batch;
    for (std::int64_t epoch = pos.epoch; epoch < options_.epochs; ++epoch) {
      task_.set_training(true);
      const std::int64_t first = epoch == pos.epoch ? pos.batch_in_epoch : 0;
      source.start_epoch(epoch, first);
      for (std::int64_t b = first; b < per_epoch; ++b) {
        FOVEA_CHECK(source.next(batch), "Trainer: the data source ended after ", b, " of ", per_epoch,
                    " batches in epoch ", epoch);
        const float lr = schedule_.lr(pos.step);
        StepStats stats = task_.train_step(batch);
        guard(stats.loss, "loss", pos, result);
        double grad_norm = -1.0;
        if (options_.clip_grad_norm > 0.0f) {
          grad_norm = optimizer_.clip_grad_norm(options_.clip_grad_norm);
          guard(grad_norm, "gradient norm", pos, result);
        }
        optimizer_.step(lr);
        task_.after_optimizer_step();
        ++pos.step;
        pos.epoch = epoch;
        pos.batch_in_epoch = b + 1;
        result.last_loss = stats.loss;
        if (pos.step % options_.log_every == 0 || b + 1 == per_epoch) {
          MetricsRow row{pos.step, epoch, "train", {{"loss", stats.loss}, {"lr", lr}}};
          if (grad_norm >= 0) row.values.emplace_back("grad_norm", grad_norm);
          for (auto& m : stats.metrics) row.values.push_back(m);
          if (stats.logged_metrics)
            for (auto& m : stats.logged_metrics()) row.values.push_back(std::move(m));
          log_.log(row);
        }
        if (options_.progress)
          progress.update(pos.step - 1, epoch, stats.images, stats.loss, lr, optimizer_.device());
        if (options_.checkpoint_every > 0 && pos.step % options_.checkpoint_every == 0 && b + 1 < per_epoch)
          result.last_checkpoint = save(pos);
      }
      pos = LoopPosition{pos.step, epoch + 1, 0};
      if (options_.progress) progress.finish_line();
      on_epoch_end(epoch, pos.step, log_);
      result.last_checkpoint = save(pos);
    }
    result.position = pos;
    return result;
  }

  MetricsLog& metrics() { return log_; }

 private:
  void guard(double value, const char* what, const LoopPosition& pos, const FitResult& result) {
    if (std::isfinite(value)) return;
    throw NonFiniteError("training stopped: the " + std::string(what) + " is " + std::to_string(value) +
                         " at step " + std::to_string(pos.step) + " (epoch " + std::to_string(pos.epoch) +
                         ", batch " + std::to_string(pos.batch_in_epoch) + "); the last good checkpoint is " +
                         (result.last_checkpoint.empty() ? std::string("none (no checkpoint written yet)")
                                                         : result.last_checkpoint.string()) +
                         ". Lower the learning rate, clip gradients (--clip-grad-norm) or check the data.");
  }

  std::filesystem::path save(const LoopPosition& pos) {
    std::map<std::string, io::StoredTensor> tensors;
    auto take = [&](const std::string& name, Tensor& t) {
      FOVEA_CHECK(!tensors.count(name), "checkpoint: duplicate state name ", name);
      tensors[name] = io::StoredTensor{"F32", t.shape(), t.to_vector()};
    };
    task_.visit_state(take);
    optimizer_.visit_state([&](const std::string& name, Tensor& t) { take("optim." + name, t); });
    auto meta = options_.metadata;
    meta["fovea.optimizer"] = std::string(Optimizer::name());
    return save_checkpoint(checkpoint_dir(), pos, tensors, std::move(meta), options_.keep_checkpoints);
  }

  void restore(const Checkpoint& c) {
    auto it = c.metadata.find("fovea.optimizer");
    FOVEA_CHECK(it == c.metadata.end() || it->second == Optimizer::name(), "checkpoint ", c.path.string(),
                " was written with optimizer ", it == c.metadata.end() ? "?" : it->second, ", this run uses ",
                Optimizer::name());
    task_.visit_state([&](const std::string& name, Tensor& t) { restore_tensor(c, name, t.view()); });
    optimizer_.visit_state([&](const std::string& name, Tensor& t) { restore_tensor(c, "optim." + name, t.view()); });
  }

  Task& task_;
  Optimizer& optimizer_;
  Schedule schedule_;
  TrainerOptions options_;
  MetricsLog log_;
};

// Mean loss and metrics over one pass of `source` in evaluation mode (no gradients).
template <class Task, BatchSource Source>
StepStats evaluate(Task& task, Source& source, std::int64_t epoch = 0) {
  task.set_training(false);
  source.start_epoch(epoch, 0);
  Batch batch;
  StepStats total;
  std::map<std::string, double> sums;
  std::vector<std::string> order;
  while (source.next(batch)) {
    StepStats s = task.eval_step(batch);
    total.loss += s.loss * static_cast<double>(s.images);
    total.images += s.images;
    for (auto& [k, v] : s.metrics) {
      if (!sums.count(k)) order.push_back(k);
      sums[k] += v * static_cast<double>(s.images);
    }
  }
  if (total.images > 0) {
    total.loss /= static_cast<double>(total.images);
    for (const auto& k : order) total.metrics.emplace_back(k, sums[k] / static_cast<double>(total.images));
  }
  task.set_training(true);
  return total;
}

// A data source over batches held in memory (tests, small experiments): batch b of epoch e is
// batches[order_e[b]] with a per-epoch permutation from the seed (or in order when shuffle is off).
class InMemorySource {
 public:
  InMemorySource(std::vector<Batch>* batches, std::uint64_t seed, bool shuffle = true)
      : batches_(batches), seed_(seed), shuffle_(shuffle) {}
  std::int64_t batches_per_epoch() const { return static_cast<std::int64_t>(batches_->size()); }
  void start_epoch(std::int64_t epoch, std::int64_t first) {
    order_.resize(batches_->size());
    for (std::size_t i = 0; i < order_.size(); ++i) order_[i] = static_cast<std::int64_t>(i);
    if (shuffle_) {
      Philox rng(RandomKey{seed_, kPurposeShuffle, static_cast<std::uint32_t>(epoch), 0, 0});
      for (std::size_t i = order_.size(); i > 1; --i)
        std::swap(order_[i - 1], order_[static_cast<std::size_t>(rng.uniform_int(static_cast<std::uint32_t>(i)))]);
    }
    next_ = first;
  }
  bool next(Batch& out) {
    if (next_ >= static_cast<std::int64_t>(order_.size())) return false;
    const Batch& src = (*batches_)[static_cast<std::size_t>(order_[static_cast<std::size_t>(next_++)])];
    out.images = src.images.clone();
    out.labels = src.labels.data() ? src.labels.clone() : Tensor();
    out.ids = src.ids;
    return true;
  }

 private:
  std::vector<Batch>* batches_;
  std::uint64_t seed_;
  bool shuffle_;
  std::vector<std::int64_t> order_;
  std::int64_t next_ = 0;
};

}  // namespace fovea::train
