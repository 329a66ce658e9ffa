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
// Device: with a CUDA target the decoded host batch is copied to the device and augmented there
// (augment_images has a fused CUDA twin); on the CPU it is augmented on the host. Images come out on
// the target device, labels stay on the host (the tasks copy them, they are N floats).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "fovea/core/error.hpp"
#include "fovea/core/tensor.hpp"
#include "fovea/data/augment.hpp"
#include "fovea/data/dataset.hpp"
#include "fovea/data/image.hpp"
#include "fovea/data/loader.hpp"
#include "fovea/data/sampler.hpp"
#include "fovea/train/tasks.hpp"

namespace fovea::train {

enum class SourceMode { supervised, two_view };

struct LoaderSourceOptions {
  SourceMode mode = SourceMode::supervised;
  // Supervised: the view's transform (data::supervised_train for training, data::test_transform for
  // evaluation); none = the loader's images as decoded. Two-view: view 0's transform (required);
  // view1, when set, is view 1's (asymmetric pairs), else view 1 uses `augment` too.
  std::optional<data::AugmentConfig> augment;
  std::optional<data::AugmentConfig> view1;
  std::uint64_t augment_seed = 0;
  Device device = Device::cpu();  // where augmentation runs and where images are handed out
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
    loader_ = std::make_unique<data::Loader>(std::move(dataset), std::move(sampler), std::move(loader_options));
  }

  std::int64_t batches_per_epoch() const { return per_epoch_; }

  // The epoch's order from the sampler's seed, starting at batch `first` (resume).
  void start_epoch(std::int64_t epoch, std::int64_t first) {
    FOVEA_CHECK(epoch >= 0 && epoch <= 0x7FFFFFFF && first >= 0, "LoaderSource::start_epoch: epoch ", epoch,
                ", first batch ", first);
    loader_->start_epoch(static_cast<std::uint32_t>(epoch), static_cast<std::size_t>(first));
    epoch_ = static_cast<int>(epoch);
  }

  bool next(Batch& out) {
    std::optional<data::Batch> b = loader_->next();
    if (!b) return false;
    const std::int64_t n = static_cast<std::int64_t>(b->size());
    out.ids.assign(b->indices.begin(), b->indices.end());
    out.labels = std::move(b->labels);  // (N)
    const Device device = options_.device;
    Tensor device_images;
    CView images = b->images.view();  // (N, 3, H, W) on the host
    if (device != images.device() && (options_.augment || options_.mode == SourceMode::two_view)) {
      device_images = b->images.to(device);
      images = device_images.view();
    }
    if (options_.mode == SourceMode::two_view) {
      const std::int64_t s = pair_->output_size();
      detail::ensure(out.images, Shape{2 * n, 3, s, s}, device);  // (2N, 3, S, S)
      (*pair_)(images, out.ids, epoch_, out.images.view().batch(0, n), out.images.view().batch(n, 2 * n));
    } else if (options_.augment) {
      const std::int64_t s = options_.augment->output_size;
      detail::ensure(out.images, Shape{n, 3, s, s}, device);  // (N, 3, S, S)
      data::augment_batch(images, out.ids, epoch_, 0, *options_.augment, options_.augment_seed, out.images.view());
    } else {
      out.images = device == b->images.device() ? std::move(b->images) : b->images.to(device);
    }
    return true;
  }

  data::Loader& loader() { return *loader_; }
  const LoaderSourceOptions& options() const { return options_; }

 private:
  LoaderSourceOptions options_;
  std::unique_ptr<data::Loader> loader_;
  std::optional<data::TwoViewAugmenter> pair_;
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
                "make_in_memory_dataset: label ", labels[i], " of image ", i, " outside [0, ", num_classes, ")");
    std::string id = std::to_string(i);
    id = "mem-" + std::string(id.size() < 6 ? 6 - id.size() : 0, '0') + id;
    out.dataset.samples.push_back(data::Sample{id, {}, labels[i], id});
  }
  out.images = std::make_shared<const std::vector<Tensor>>(std::move(images));
  return out;
}

}  // namespace fovea::train
