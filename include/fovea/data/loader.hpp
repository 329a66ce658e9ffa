// fovea/data/loader.hpp: batches of decoded images, produced by background threads into a bounded
// window and handed out in sampler order whatever the threads' timing.
//
// Threading model: start_epoch(e, b) computes epoch e's order (Sampler, a pure function of the seed
// and e) and starts `threads` workers. A worker claims the next batch number k, but only while
// k < (next batch to hand out) + prefetch, decodes its samples one after another with the caller's
// DecodeFn into a fresh host batch, and files it under k. next() waits for batch k = the next in order,
// so the output depends only on (data set, sampler, epoch, decode function), never on timing, and at
// most `prefetch` batches are decoded or ready at any time. threads = 0 decodes in next() itself.
// Stopping: ~Loader, start_epoch and a failed batch raise a stop flag, wake every waiting worker
// (workers check the flag between samples) and join them, so a consumer may stop early or throw at
// any point without a deadlock.
//
// Decode errors: with OnDecodeError::stop, next() throws at the failing batch (the earlier batches
// are delivered first) naming the sample id, its file and the decoder's message; the epoch ends. With
// OnDecodeError::skip the sample is replaced by the next sample of the epoch order (cyclically) that
// decodes, and the failure is reported in Batch::skipped and LoaderStats::skipped.
//
// Pinned batches: with LoaderOptions::pinned the images of a batch are written into page-locked host
// memory (PinnedBuffer, cudaHostAlloc) instead of a Tensor, so that a copy to a GPU is an
// asynchronous DMA (train::LoaderSource does this for a CUDA target). The buffers are recycled: a
// buffer returns to the loader when the last Batch holding it is destroyed, so at most prefetch + the
// batches the consumer still holds exist at any time.
#pragma once

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "fovea/core/error.hpp"
#include "fovea/core/tensor.hpp"
#include "fovea/data/dataset.hpp"
#include "fovea/data/image.hpp"
#include "fovea/data/sampler.hpp"

namespace fovea::data {

// Where a decode call sits: the epoch, the batch number, the position in the epoch order
// (batch * batch_size + slot) and the data set index of the sample decoded (which differs from
// order[position] when a skipped sample was replaced). Augmentations key their randomness on these.
struct DecodeContext {
  std::uint32_t epoch = 0;
  std::size_t batch = 0;
  std::size_t position = 0;
  std::size_t index = 0;
};

// Decodes and preprocesses one sample into a CPU tensor (3, S, S) or (1, 3, S, S), S = the loader's
// image_size. Called concurrently from the loader's threads: it must be thread-safe. Throws on failure.
using DecodeFn = std::function<Tensor(const Sample&, const DecodeContext&)>;

// resize_decoder: load_image, then torchvision's Resize(size) + CenterCrop(size), then Normalize(mean,
// std); with the default mean 0 and std 1 the values stay in [0, 1] (preprocess_for_model).
inline DecodeFn resize_decoder(int size, std::array<float, 3> mean = {0.0f, 0.0f, 0.0f},
                               std::array<float, 3> std = {1.0f, 1.0f, 1.0f}) {
  return [size, mean, std](const Sample& s, const DecodeContext&) {
    return preprocess_for_model(s.path, size, mean, std);
  };
}

enum class OnDecodeError { stop, skip };

// PinnedBuffer: host memory for images on their way to a GPU. Page-locked (cudaHostAlloc) when
// `page_locked` is asked and a CUDA device can be used, so that a copy from it
// (cuda::memcpy_async) is a DMA that overlaps with kernels; otherwise (a CPU-only build, no device,
// or the driver cannot pin that much) ordinary 64-byte aligned host memory (host_allocate), which
// every copy accepts too: pinned() says which. Page-locked bytes are not counted by
// memory_stats(Device::cpu()). Neither copied nor moved: hold it through a pointer.
class PinnedBuffer {
 public:
  explicit PinnedBuffer(std::size_t bytes, bool page_locked = true) : bytes_(bytes) {
#if FOVEA_WITH_CUDA
    if (page_locked && cuda_available()) data_ = cuda::host_alloc_pinned(std::max<std::size_t>(bytes, 1));
#else
    (void)page_locked;
#endif
    pinned_ = data_ != nullptr;
    if (!pinned_) data_ = host_allocate(bytes);
  }
  PinnedBuffer(const PinnedBuffer&) = delete;
  PinnedBuffer& operator=(const PinnedBuffer&) = delete;
  ~PinnedBuffer() {
#if FOVEA_WITH_CUDA
    if (pinned_) {
      cuda::host_free_pinned(data_);
      return;
    }
#endif
    host_deallocate(data_, bytes_);
  }

  float* data() const { return static_cast<float*>(data_); }
  std::size_t bytes() const { return bytes_; }
  bool pinned() const { return pinned_; }

 private:
  void* data_ = nullptr;
  std::size_t bytes_ = 0;
  bool pinned_ = false;
};

namespace detail {
// A loader's recycled batch buffers (cudaHostAlloc costs milliseconds for a batch): acquire() hands
// out a free buffer of at least `bytes` or makes one; the buffer comes back when the last
// shared_ptr to it goes (from any thread), or is freed when the pool is gone by then.
class PinnedPool : public std::enable_shared_from_this<PinnedPool> {
 public:
  std::shared_ptr<PinnedBuffer> acquire(std::size_t bytes) {
    std::unique_ptr<PinnedBuffer> buffer;
    {
      std::lock_guard lock(mu_);
      for (auto it = free_.begin(); it != free_.end(); ++it)
        if ((*it)->bytes() >= bytes) {
          buffer = std::move(*it);
          free_.erase(it);
          break;
        }
    }
    if (!buffer) {
      buffer = std::make_unique<PinnedBuffer>(bytes);
      std::lock_guard lock(mu_);
      ++created_;
    }
    std::weak_ptr<PinnedPool> home = weak_from_this();
    return std::shared_ptr<PinnedBuffer>(buffer.release(), [home](PinnedBuffer* b) {
      std::unique_ptr<PinnedBuffer> owned(b);
      if (std::shared_ptr<PinnedPool> pool = home.lock()) pool->give_back(std::move(owned));
    });
  }
  // Buffers made so far.
  std::size_t created() const {
    std::lock_guard lock(mu_);
    return created_;
  }

 private:
  void give_back(std::unique_ptr<PinnedBuffer> buffer) noexcept {
    try {
      std::lock_guard lock(mu_);
      free_.push_back(std::move(buffer));
    } catch (...) {  // no room to keep it: the buffer is freed instead
    }
  }

  mutable std::mutex mu_;
  std::vector<std::unique_ptr<PinnedBuffer>> free_;
  std::size_t created_ = 0;
};
}  // namespace detail

struct LoaderOptions {
  std::size_t batch_size = 32;
  bool drop_last = false;
  int image_size = 224;
  int threads = 2;           // background decode threads; 0 = decode synchronously in next()
  std::size_t prefetch = 0;  // batches decoded or ready at most; 0 = 2 * max(threads, 1)
  OnDecodeError on_error = OnDecodeError::stop;
  DecodeFn decode;  // empty = resize_decoder(image_size)
  // Batch images in recycled page-locked buffers (Batch::pinned) rather than Batch::images, for
  // asynchronous copies to a GPU; ordinary memory where no CUDA device can be used.
  bool pinned = false;
};

// One batch on the host.
struct Batch {
  Tensor images;                     // (B, 3, S, S); unallocated with LoaderOptions::pinned (see `pinned`)
  Tensor labels;                     // (B), the sample labels as floats (-1 = unlabelled)
  std::vector<std::string> ids;      // B sample ids
  std::vector<std::size_t> indices;  // B data set indices
  std::uint32_t epoch = 0;
  std::size_t index = 0;             // batch number within the epoch
  std::vector<std::string> skipped;  // skip mode: one message per replaced sample
  // Pinned mode: the images, image_shape floats at the start of this recycled buffer.
  std::shared_ptr<PinnedBuffer> pinned;
  Shape image_shape;  // (B, 3, S, S)
  std::size_t size() const { return ids.size(); }
  // The images (B, 3, S, S) on the host, wherever they are held. Valid while this Batch lives.
  CView image_view() const {
    return pinned ? CView(pinned->data(), image_shape, Device::cpu()) : images.view();
  }
};

// Counters of the current epoch (since start_epoch).
struct LoaderStats {
  std::size_t batches = 0;
  std::size_t images = 0;       // images handed out
  double seconds = 0.0;         // from start_epoch to the last batch handed out
  double decode_seconds = 0.0;  // decode time summed over threads
  std::vector<std::string> skipped;
  double images_per_second() const { return seconds > 0.0 ? static_cast<double>(images) / seconds : 0.0; }
};

class Loader {
 public:
  // requires: options.batch_size > 0, image_size > 0, threads >= 0; the sampler's indices < dataset.size().
  Loader(Dataset dataset, Sampler sampler, LoaderOptions options)
      : dataset_(std::move(dataset)), sampler_(std::move(sampler)), options_(std::move(options)) {
    FOVEA_CHECK(options_.batch_size > 0, "Loader: batch_size must be positive");
    FOVEA_CHECK(options_.image_size > 0, "Loader: image_size must be positive, got ", options_.image_size);
    FOVEA_CHECK(options_.threads >= 0, "Loader: threads must be >= 0, got ", options_.threads);
    FOVEA_CHECK(sampler_.kind() == SamplerKind::class_balanced || sampler_.epoch_size() == dataset_.size(),
                "Loader: the sampler covers ", sampler_.epoch_size(), " samples, the data set has ",
                dataset_.size());
    if (options_.prefetch == 0)
      options_.prefetch = 2 * static_cast<std::size_t>(std::max(options_.threads, 1));
    if (!options_.decode) options_.decode = resize_decoder(options_.image_size);
    if (options_.pinned) pinned_pool_ = std::make_shared<detail::PinnedPool>();
  }
  Loader(const Loader&) = delete;
  Loader& operator=(const Loader&) = delete;
  ~Loader() { stop_workers(); }

  // Starts epoch `epoch` at batch `first_batch` (resume); a running epoch is stopped first.
  // requires: first_batch <= num_batches of that epoch.
  void start_epoch(std::uint32_t epoch, std::size_t first_batch = 0) {
    stop_workers();
    batches_.reset();  // a failed start leaves no epoch (next() then asks for start_epoch)
    Batches batches = epoch_batches(sampler_, epoch, options_.batch_size, options_.drop_last);
    FOVEA_CHECK(first_batch <= batches.size(), "Loader::start_epoch: first batch ", first_batch,
                " of an epoch of ", batches.size(), " batches");
    for (std::size_t i : batches.order())
      FOVEA_CHECK(i < dataset_.size(), "Loader: sampler index ", i, " outside the data set of ",
                  dataset_.size());
    batches_.emplace(std::move(batches));
    epoch_ = epoch;
    next_claim_ = next_deliver_ = first_batch;
    ready_.clear();
    stats_ = LoaderStats{};
    decode_nanos_ = 0;
    start_ = std::chrono::steady_clock::now();
    stopping_ = false;
    for (int t = 0; t < options_.threads; ++t) workers_.emplace_back([this] { work(); });
  }

  // The next batch of the epoch in sampler order, or nullopt when the epoch is over. Throws (stop mode)
  // when a sample cannot be decoded; the epoch is then over. requires: start_epoch was called.
  std::optional<Batch> next() {
    FOVEA_CHECK(batches_.has_value(), "Loader::next: call start_epoch(epoch) first");
    if (next_deliver_ >= batches_->size()) return std::nullopt;
    Slot slot;
    if (options_.threads == 0) {
      try {
        slot.batch = build(next_deliver_);
      } catch (...) {
        slot.error = std::current_exception();
      }
      ++next_deliver_;
    } else {
      std::unique_lock lock(mu_);
      ready_cv_.wait(lock, [&] { return ready_.count(next_deliver_) != 0; });
      auto it = ready_.find(next_deliver_);
      slot = std::move(it->second);
      ready_.erase(it);
      ++next_deliver_;
      lock.unlock();
      space_cv_.notify_all();
    }
    if (slot.error) {
      {
        std::lock_guard lock(mu_);
        next_deliver_ = batches_->size();
      }
      stop_workers();
      std::rethrow_exception(slot.error);
    }
    std::lock_guard lock(mu_);
    stats_.batches += 1;
    stats_.images += slot.batch.size();
    stats_.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    stats_.decode_seconds = static_cast<double>(decode_nanos_) * 1e-9;
    stats_.skipped.insert(stats_.skipped.end(), slot.batch.skipped.begin(), slot.batch.skipped.end());
    return std::move(slot.batch);
  }

  // Whether next() would return at once, without decoding or waiting for a worker: the epoch is over
  // or (threads > 0) the next batch is decoded or has failed. False before start_epoch.
  bool ready() const {
    std::lock_guard lock(mu_);
    if (!batches_) return false;
    if (next_deliver_ >= batches_->size()) return true;
    return options_.threads > 0 && ready_.count(next_deliver_) != 0;
  }

  // Batches in the current epoch (0 before start_epoch).
  std::size_t num_batches() const { return batches_ ? batches_->size() : 0; }
  std::uint32_t epoch() const { return epoch_; }
  // The number of the batch next() returns next.
  std::size_t position() const { return next_deliver_; }
  const Dataset& dataset() const { return dataset_; }
  const LoaderOptions& options() const { return options_; }
  LoaderStats stats() const {
    std::lock_guard lock(mu_);
    return stats_;
  }
  // Pinned mode: the page-locked batch buffers made so far (they are recycled; 0 otherwise).
  std::size_t pinned_buffers() const { return pinned_pool_ ? pinned_pool_->created() : 0; }

 private:
  struct Slot {
    Batch batch;
    std::exception_ptr error;
  };
  struct Cancelled {};

  void stop_workers() noexcept {
    {
      std::lock_guard lock(mu_);
      stopping_ = true;
    }
    space_cv_.notify_all();
    for (std::thread& t : workers_)
      if (t.joinable()) t.join();
    workers_.clear();
  }

  void work() {
    for (;;) {
      std::size_t b = 0;
      {
        std::unique_lock lock(mu_);
        space_cv_.wait(lock, [&] {
          return stopping_ || next_claim_ >= batches_->size() ||
                 next_claim_ < next_deliver_ + options_.prefetch;
        });
        if (stopping_ || next_claim_ >= batches_->size()) return;
        b = next_claim_++;
      }
      Slot slot;
      try {
        slot.batch = build(b);
      } catch (const Cancelled&) {
        return;
      } catch (...) {
        slot.error = std::current_exception();
      }
      {
        std::lock_guard lock(mu_);
        ready_.emplace(b, std::move(slot));
      }
      ready_cv_.notify_all();
    }
  }

  bool stop_requested() {
    std::lock_guard lock(mu_);
    return stopping_;
  }

  Batch build(std::size_t b) {
    const auto indices = (*batches_)[b];
    const std::vector<std::size_t>& order = batches_->order();
    const std::int64_t n = static_cast<std::int64_t>(indices.size()), s = options_.image_size;
    const std::int64_t image_numel = 3 * s * s;
    Batch out;
    out.epoch = epoch_;
    out.index = b;
    out.image_shape = Shape{n, 3, s, s};  // (B, 3, S, S)
    float* images = nullptr;
    if (pinned_pool_) {
      // Every buffer holds a full batch, so one buffer serves every batch, the last included.
      out.pinned =
          pinned_pool_->acquire(options_.batch_size * static_cast<std::size_t>(image_numel) * sizeof(float));
      images = out.pinned->data();
    } else {
      out.images = Tensor(out.image_shape);
      images = out.images.data();
    }
    out.labels = Tensor(Shape{n});  // (B)
    std::int64_t nanos = 0;
    for (std::int64_t k = 0; k < n; ++k) {
      if (options_.threads > 0 && stop_requested()) throw Cancelled{};
      const std::size_t position = b * options_.batch_size + static_cast<std::size_t>(k);
      std::size_t chosen = indices[static_cast<std::size_t>(k)];
      Tensor image;
      for (std::size_t attempt = 1;; ++attempt) {
        const Sample& sample = dataset_[chosen];
        const auto t0 = std::chrono::steady_clock::now();
        try {
          image = options_.decode(sample, DecodeContext{epoch_, b, position, chosen});
          nanos += std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - t0)
                       .count();
          break;
        } catch (const std::exception& e) {
          std::string message =
              "Loader: cannot load sample '" + sample.id + "' ('" + sample.path.string() + "'): " + e.what();
          if (options_.on_error == OnDecodeError::stop) throw Error(message);
          if (attempt >= order.size()) throw Error(message + "; no sample of the epoch could be loaded");
          chosen = order[(position + attempt) % order.size()];
          out.skipped.push_back(message + "; replaced by '" + dataset_[chosen].id + "'");
        }
      }
      FOVEA_CHECK(image.device().is_cpu() && image.numel() == image_numel &&
                      (image.shape() == Shape{3, s, s} || image.shape() == Shape{1, 3, s, s}),
                  "Loader: the decode function returned ", image.shape().str(), " on ", image.device().str(),
                  " for sample '", dataset_[chosen].id, "'; expected (3, ", s, ", ", s, ") on the cpu");
      std::copy_n(image.data(), image_numel, images + k * image_numel);
      out.labels.data()[k] = static_cast<float>(dataset_[chosen].label);
      out.ids.push_back(dataset_[chosen].id);
      out.indices.push_back(chosen);
    }
    std::lock_guard lock(mu_);
    decode_nanos_ += nanos;
    return out;
  }

  Dataset dataset_;
  Sampler sampler_;
  LoaderOptions options_;
  std::shared_ptr<detail::PinnedPool> pinned_pool_;  // pinned mode

  std::optional<Batches> batches_;
  std::uint32_t epoch_ = 0;
  std::chrono::steady_clock::time_point start_{};

  mutable std::mutex mu_;
  std::condition_variable ready_cv_;  // the consumer waits for batch next_deliver_
  std::condition_variable space_cv_;  // workers wait for room in the prefetch window
  std::size_t next_claim_ = 0;        // guarded by mu_
  std::size_t next_deliver_ = 0;      // written by the consumer under mu_ (threads > 0)
  std::map<std::size_t, Slot> ready_;
  bool stopping_ = false;
  std::int64_t decode_nanos_ = 0;
  LoaderStats stats_;
  std::vector<std::thread> workers_;
};

}  // namespace fovea::data
