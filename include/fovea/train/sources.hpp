// fovea/train/sources.hpp: the data pipeline as a Trainer's BatchSource: LoaderSource wraps a
// data::Loader (background decoding in sampler order) and adds the augmentations, in supervised
// mode (one view, labels as floats) or two-view mode (SimCLR / MoCo: views 0 and 1 of the same
// samples stacked as (2N, 3, S, S)); plus an in-memory data set with its decode function.
//
// Determinism: batch b of epoch e holds the samples the sampler puts there (a function of the
// sampler's seed and e), decoded by the loader whatever the threads' timing, and augmented with the
// Philox keys (augment seed, e, dataset index, view). So batch b of epoch e is a function of
// (seeds, e, b), and start_epoch(e, b) resumes mid-epoch exactly. Augmentation keys use the data set
// index of a sample, so a sample drawn twice in one epoch (class-balanced sampling) gets the same
// view both times.
//
// Device: on the CPU the decoded host batch is augmented on the host. With a CUDA target the loader
// decodes into pinned (page-locked) host buffers, each batch is copied to the device with
// cudaMemcpyAsync on a copy stream of its own and augmented there (augment_images has a fused CUDA
// twin); the calling thread's current stream (the compute stream) waits for the copy through an
// event, and the copy of batch b + 1 is queued as soon as it is decoded (at the latest when next()
// asks for it), so it overlaps with the computation of batch b (detail::DeviceBatchQueue). Images
// come out on the target device, labels stay on the host (the tasks copy them, they are N floats).
#pragma once

#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "fovea/core/error.hpp"
#include "fovea/core/stream.hpp"
#include "fovea/core/tensor.hpp"
#include "fovea/data/augment.hpp"
#include "fovea/data/dataset.hpp"
#include "fovea/data/image.hpp"
#include "fovea/data/loader.hpp"
#include "fovea/data/sampler.hpp"
#include "fovea/train/tasks.hpp"

namespace fovea::train {

enum class SourceMode { supervised, two_view };

namespace detail {

// DeviceBatchQueue: a Loader's batches with their images copied to `device`, up to one batch ahead.
// On a CUDA device (the loader in pinned mode) each copy is a cudaMemcpyAsync on a copy stream of the
// queue's own, followed by an event; next() makes the calling thread's current stream (the compute
// stream) wait for that event, so the host never blocks on a copy. prefetch(), called once the work
// on the current batch is queued, starts copying the next batch when the loader has it decoded, so
// that copy overlaps with that work. Ordering:
// - before a copy into a device buffer, the copy stream waits for everything queued on the compute
//   stream so far: the buffer's earlier readers (and the users of a block the allocator recycled)
//   finish before it is overwritten;
// - a batch (and its pinned buffer, which the loader then reuses) is released only after its copy
//   event completed (a host wait, normally long done): at the next next(), reset() or destruction.
// The batch next() returns stays valid until the following next() or reset(); its `images` may be
// swapped out by the caller (the queue then reuses whatever tensor it gets back). On the CPU (tests)
// the copy is synchronous and nothing else changes. Decode errors surface from next() at the batch
// where they occurred, after the batches before it.
class DeviceBatchQueue {
 public:
  struct Staged {
    std::optional<data::Batch> batch;  // the host batch: labels, ids, indices, its images
    Tensor images;                     // (N, 3, H, W) on the device
    std::exception_ptr error;          // the loader's exception at this batch
    void* copied = nullptr;            // CUDA event recorded after the copy
    bool in_flight = false;            // a copy was recorded whose completion the host has not seen
  };

  DeviceBatchQueue(data::Loader& loader, Device device) : loader_(loader), device_(device) {}
  DeviceBatchQueue(const DeviceBatchQueue&) = delete;
  DeviceBatchQueue& operator=(const DeviceBatchQueue&) = delete;
  ~DeviceBatchQueue() {
    for (Staged& s : slots_) {
      try {
        release(s);
      } catch (...) {  // a failed wait (sticky CUDA error): nothing more can be done here
      }
#if FOVEA_WITH_CUDA
      if (s.copied != nullptr) cuda::event_destroy(s.copied);
#endif
    }
#if FOVEA_WITH_CUDA
    if (mark_ != nullptr) cuda::event_destroy(mark_);
#endif
  }

  // Forgets the batches held (before the loader starts an epoch).
  void reset() {
    for (Staged& s : slots_) release(s);
    ahead_ = false;
  }

  // The loader's next batch with its images on the device, ready for work queued on the calling
  // thread's current stream from now on; nullptr at the end of the epoch. Rethrows a decode error.
  Staged* next() {
    const int a = 1 - current_;
    if (!ahead_) fill(slots_[a]);
    ahead_ = false;
    release(slots_[current_]);
    current_ = a;
    Staged& s = slots_[a];
    if (s.error) std::rethrow_exception(std::exchange(s.error, nullptr));
    if (!s.batch) return nullptr;
    if (s.in_flight)
      FOVEA_CUDA_CALL(cuda::stream_wait_event(device_.index(), current_stream(device_), s.copied));
    return &s;
  }

  // Starts copying the following batch if the loader has it decoded; returns whether it did.
  bool prefetch() {
    if (ahead_ || !loader_.ready()) return false;
    fill(slots_[1 - current_]);
    ahead_ = true;
    return true;
  }

 private:
  void fill(Staged& s) {
    s.error = nullptr;
    s.batch.reset();
    try {
      s.batch = loader_.next();
    } catch (...) {
      s.error = std::current_exception();
      return;
    }
    if (!s.batch) return;
    const CView host = s.batch->image_view();  // (N, 3, H, W)
    if (s.images.data() == nullptr || s.images.device() != device_) s.images = Tensor(host.shape(), device_);
    else s.images.resize(host.shape());
    if (device_.is_cpu()) {
      copy(host, s.images.view());
      return;
    }
#if FOVEA_WITH_CUDA
    const int d = device_.index();
    if (!copy_stream_) {  // on first use; the stream last, so a failed start is retried whole
      auto stream = std::make_unique<Stream>(device_);
      if (mark_ == nullptr) mark_ = cuda::event_create_untimed(d);
      for (Staged& slot : slots_)
        if (slot.copied == nullptr) slot.copied = cuda::event_create_untimed(d);
      copy_stream_ = std::move(stream);
    }
    // After the allocation above: a recycled block's last users are queued before this mark.
    cuda::event_record(mark_, d, current_stream(device_));
    cuda::stream_wait_event(d, copy_stream_->handle(), mark_);
    cuda::memcpy_async(s.images.data(), host.data(), host.bytes(), cuda::CopyKind::host_to_device, d,
                       copy_stream_->handle());
    cuda::event_record(s.copied, d, copy_stream_->handle());
    s.in_flight = true;
#else
    ::fovea::detail::throw_no_cuda("copying a batch to a CUDA device");
#endif
  }

  void release(Staged& s) {
    if (s.in_flight) {
      s.in_flight = false;
      FOVEA_CUDA_CALL(cuda::event_synchronize(s.copied));
    }
    s.batch.reset();
    s.error = nullptr;
  }

  data::Loader& loader_;
  Device device_;
  Staged slots_[2];
  int current_ = 0;     // the slot next() returned last
  bool ahead_ = false;  // the other slot holds the following batch (prefetched)
  std::unique_ptr<Stream> copy_stream_;
  void* mark_ = nullptr;  // CUDA event: the compute stream's position before a copy
};

}  // namespace detail

struct LoaderSourceOptions {
  SourceMode mode = SourceMode::supervised;
  // Supervised: the view's transform (data::supervised_train for training, data::test_transform for
  // evaluation); none = the loader's images as decoded. Two-view: view 0's transform (required);
  // view1, when set, is view 1's (asymmetric pairs), else view 1 uses `augment` too.
  std::optional<data::AugmentConfig> augment;
  std::optional<data::AugmentConfig> view1;
  std::uint64_t augment_seed = 0;
  Device device = Device::cpu();  // where augmentation runs and where images are handed out
  // Optional: runs on each batch's images as decoded (N, 3, H, W) on `device`, before the
  // augmentation: before_augment(images, ids, out) writes out (same shape and device, allocated by
  // the source; ids = the data set indices). The robustness driver corrupts batches on the GPU with
  // it (data::corrupt_batch).
  std::function<void(CView images, std::span<const std::int64_t> ids, View out)> before_augment;
};

// LoaderSource: a data::Loader as a BatchSource (trainer.hpp).
//   requires: loader options' image_size >= 1; in two-view mode an `augment` config; augment
//             output sizes equal (the loader's image_size is the source size the crops are taken from).
//   ensures: next() gives batches_per_epoch() batches per epoch (the sampler's epoch size cut by
//            batch_size, drop_last honoured); supervised: images (N, 3, S, S), labels (N);
//            two-view: images (2N, 3, S, S), rows [0, N) view 0 and [N, 2N) view 1 of the same
//            samples, labels (N); ids = the data set indices of the N samples.
class LoaderSource {
 public:
  LoaderSource(data::Dataset dataset, data::Sampler sampler, data::LoaderOptions loader_options,
               LoaderSourceOptions options = {})
      : options_(std::move(options)) {
    const std::size_t n = sampler.epoch_size(), bs = loader_options.batch_size;
    FOVEA_CHECK(bs > 0, "LoaderSource: batch_size must be positive");
    per_epoch_ = static_cast<std::int64_t>(loader_options.drop_last ? n / bs : (n + bs - 1) / bs);
    if (options_.mode == SourceMode::two_view) {
      FOVEA_CHECK(options_.augment.has_value(),
                  "LoaderSource: two-view mode needs an augmentation (e.g. data::simclr(size))");
      pair_.emplace(*options_.augment, options_.view1.value_or(*options_.augment), options_.augment_seed);
    } else if (options_.augment) {
      data::check_config(*options_.augment);
    }
    loader_options.pinned = options_.device.is_cuda();
    loader_ =
        std::make_unique<data::Loader>(std::move(dataset), std::move(sampler), std::move(loader_options));
    if (options_.device.is_cuda())
      queue_ = std::make_unique<detail::DeviceBatchQueue>(*loader_, options_.device);
  }

  std::int64_t batches_per_epoch() const { return per_epoch_; }

  // The epoch's order from the sampler's seed, starting at batch `first` (resume).
  void start_epoch(std::int64_t epoch, std::int64_t first) {
    FOVEA_CHECK(epoch >= 0 && epoch <= 0x7FFFFFFF && first >= 0, "LoaderSource::start_epoch: epoch ", epoch,
                ", first batch ", first);
    if (queue_) queue_->reset();
    loader_->start_epoch(static_cast<std::uint32_t>(epoch), static_cast<std::size_t>(first));
    epoch_ = static_cast<int>(epoch);
  }

  // CUDA: out.images is ready for work queued on the calling thread's current stream; it and the
  // batch's host buffers stay valid until the next call.
  bool next(Batch& out) {
    if (queue_) return next_on_device(out);
    std::optional<data::Batch> b = loader_->next();
    if (!b) return false;
    out.ids.assign(b->indices.begin(), b->indices.end());
    out.labels = std::move(b->labels);  // (N)
    if (options_.before_augment) {
      transform(b->images.view(), out);
    } else if (options_.augment || options_.mode == SourceMode::two_view) {
      augment(b->images.view(), out);
    } else {
      out.images = std::move(b->images);
    }
    return true;
  }

  // The loader; on a CUDA target it may be one batch ahead of next() (the batch being copied).
  data::Loader& loader() { return *loader_; }
  const LoaderSourceOptions& options() const { return options_; }

 private:
  bool next_on_device(Batch& out) {
    detail::DeviceBatchQueue::Staged* s = queue_->next();
    if (s == nullptr) return false;
    out.ids.assign(s->batch->indices.begin(), s->batch->indices.end());
    out.labels = std::move(s->batch->labels);  // (N)
    if (options_.before_augment) transform(s->images.view(), out);
    else if (options_.augment || options_.mode == SourceMode::two_view) augment(s->images.view(), out);
    else std::swap(out.images, s->images);  // hand the device copy over; the queue reuses the old tensor
    queue_->prefetch();
    return true;
  }

  // before_augment into transformed_, then the augmentation (or transformed_ handed out as it is).
  void transform(CView images, Batch& out) {
    detail::ensure(transformed_, images.shape(), options_.device);
    options_.before_augment(images, out.ids, transformed_.view());
    if (options_.augment || options_.mode == SourceMode::two_view) augment(transformed_.view(), out);
    else std::swap(out.images, transformed_);
  }

  // images (N, 3, H, W) on options_.device -> out.images.
  void augment(CView images, Batch& out) {
    const Device device = options_.device;
    const std::int64_t n = images.shape()[0];
    if (options_.mode == SourceMode::two_view) {
      const std::int64_t s = pair_->output_size();
      detail::ensure(out.images, Shape{2 * n, 3, s, s}, device);  // (2N, 3, S, S)
      (*pair_)(images, out.ids, epoch_, out.images.view().batch(0, n), out.images.view().batch(n, 2 * n));
    } else {
      const std::int64_t s = options_.augment->output_size;
      detail::ensure(out.images, Shape{n, 3, s, s}, device);  // (N, 3, S, S)
      data::augment_batch(images, out.ids, epoch_, 0, *options_.augment, options_.augment_seed,
                          out.images.view());
    }
  }

  LoaderSourceOptions options_;
  std::unique_ptr<data::Loader> loader_;
  std::unique_ptr<detail::DeviceBatchQueue> queue_;  // CUDA target
  std::optional<data::TwoViewAugmenter> pair_;
  Tensor transformed_;  // before_augment's output
  std::int64_t per_epoch_ = 0;
  int epoch_ = 0;
};

// A data set held in memory: images (3, H, W) in [0, 1] on the cpu, one per sample, with ids
// "mem-000000", ... (each its own patient) and empty paths. decoder(size) hands the image named by
// a sample's id to the loader (so subsets and splits of `dataset` decode too), resized
// (resize_antialiased) when it is not size x size; it only reads, so it is thread-safe.
struct InMemoryDataset {
  data::Dataset dataset;
  std::shared_ptr<const std::vector<Tensor>> images;

  data::DecodeFn decoder(int size) const {
    return [images = images, size](const data::Sample& sample, const data::DecodeContext&) {
      const std::size_t i = image_number(sample.id);
      FOVEA_CHECK(i < images->size(), "InMemoryDataset: sample '", sample.id, "' names no image of ",
                  images->size());
      const Tensor& image = (*images)[i];
      if (image.shape()[1] == size && image.shape()[2] == size) return image.clone();
      return data::resize_antialiased(image.view(), size, size);
    };
  }

  // The image number of an id "mem-NNNNNN".
  static std::size_t image_number(const std::string& id) {
    FOVEA_CHECK(id.size() > 4 && id.compare(0, 4, "mem-") == 0 &&
                    id.find_first_not_of("0123456789", 4) == std::string::npos,
                "InMemoryDataset: '", id, "' is not an in-memory sample id (mem-NNNNNN)");
    return static_cast<std::size_t>(std::stoull(id.substr(4)));
  }
};

// make_in_memory_dataset: the data set of `images` with `labels` (data::kUnlabelled for none).
//   requires: images.size() == labels.size(); every image (3, H, W) on the cpu; labels in
//             [0, num_classes) or kUnlabelled.
inline InMemoryDataset make_in_memory_dataset(std::vector<Tensor> images, const std::vector<int>& labels,
                                              int num_classes = data::kNumGrades) {
  FOVEA_CHECK(images.size() == labels.size(), "make_in_memory_dataset: ", images.size(), " images, ",
              labels.size(), " labels");
  InMemoryDataset out;
  out.dataset.num_classes = num_classes;
  out.dataset.format = data::DatasetFormat::class_folders;
  for (std::size_t i = 0; i < images.size(); ++i) {
    FOVEA_CHECK(images[i].device().is_cpu() && images[i].shape().rank() == 3 && images[i].shape()[0] == 3,
                "make_in_memory_dataset: image ", i, " is ", images[i].shape().str(), " on ",
                images[i].device().str(), "; expected (3, H, W) on the cpu");
    FOVEA_CHECK(labels[i] == data::kUnlabelled || (labels[i] >= 0 && labels[i] < num_classes),
                "make_in_memory_dataset: label ", labels[i], " of image ", i, " outside [0, ", num_classes,
                ")");
    std::string id = std::to_string(i);
    id = "mem-" + std::string(id.size() < 6 ? 6 - id.size() : 0, '0') + id;
    out.dataset.samples.push_back(data::Sample{id, {}, labels[i], id});
  }
  out.images = std::make_shared<const std::vector<Tensor>>(std::move(images));
  return out;
}

}  // namespace fovea::train
