// fovea/data/sampler.hpp: the order in which an epoch visits a data set, as a pure function of
// (seed, epoch), and its division into batches.
//
// A shuffled epoch is Fisher-Yates driven by the Philox stream RandomKey(seed, kPurposeShuffle,
// epoch, sample 0, view 0); a class-balanced epoch draws from RandomKey(seed, kPurposeShuffle, epoch,
// sample 0, view 1). Nothing carries over between epochs, so epoch e can be recomputed at any time:
// a run resumed at batch b of epoch e sees exactly the batches b, b + 1, ... it would have seen.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <numeric>
#include <span>
#include <string>
#include <vector>

#include "fovea/core/error.hpp"
#include "fovea/core/random.hpp"

namespace fovea::data {

// epoch_permutation: a uniformly random permutation of 0..n-1, a pure function of (n, seed, epoch).
// requires: n < 2^32.
inline std::vector<std::size_t> epoch_permutation(std::size_t n, std::uint64_t seed, std::uint32_t epoch) {
  FOVEA_CHECK(n < (std::size_t{1} << 32), "epoch_permutation: ", n, " samples (at most 2^32 - 1)");
  std::vector<std::size_t> order(n);
  std::iota(order.begin(), order.end(), std::size_t{0});
  Philox rng(make_key(seed, kPurposeShuffle, epoch, 0, 0));
  for (std::size_t i = n; i > 1; --i)
    std::swap(order[i - 1], order[rng.uniform_int(static_cast<std::uint32_t>(i))]);
  return order;
}

enum class SamplerKind { sequential, shuffled, class_balanced };

// Produces each epoch's sample order. Copyable value type; epoch_order is const and thread-safe.
//   sequential:     0, 1, ..., n-1 every epoch (evaluation).
//   shuffled:       epoch_permutation(n, seed, epoch).
//   class_balanced: `epoch_size` draws with replacement; each draw picks a class uniformly among the
//                   classes that have samples, then a sample of that class uniformly (two uniform_int
//                   draws, in that order, from view 1 of the epoch's stream).
class Sampler {
 public:
  static Sampler sequential(std::size_t n) { return Sampler(SamplerKind::sequential, n, 0); }
  static Sampler shuffled(std::size_t n, std::uint64_t seed) {
    return Sampler(SamplerKind::shuffled, n, seed);
  }
  // requires: every label >= 0 (no unlabelled samples); at least one sample. epoch_size 0 = labels.size().
  static Sampler class_balanced(const std::vector<int>& labels, std::uint64_t seed,
                                std::size_t epoch_size = 0) {
    FOVEA_CHECK(!labels.empty(), "class-balanced sampler of an empty data set");
    Sampler s(SamplerKind::class_balanced, epoch_size ? epoch_size : labels.size(), seed);
    int max_label = -1;
    for (std::size_t i = 0; i < labels.size(); ++i) {
      FOVEA_CHECK(labels[i] >= 0, "class-balanced sampler: sample ", i, " has label ", labels[i],
                  " (unlabelled samples cannot be balanced)");
      max_label = std::max(max_label, labels[i]);
    }
    std::vector<std::vector<std::size_t>> by_class(static_cast<std::size_t>(max_label) + 1);
    for (std::size_t i = 0; i < labels.size(); ++i)
      by_class[static_cast<std::size_t>(labels[i])].push_back(i);
    for (auto& members : by_class)
      if (!members.empty()) s.classes_.push_back(std::move(members));
    return s;
  }

  SamplerKind kind() const { return kind_; }
  std::uint64_t seed() const { return seed_; }
  // Samples per epoch.
  std::size_t epoch_size() const { return size_; }
  // The classes the class-balanced sampler draws from (those with samples), each as its sample list.
  const std::vector<std::vector<std::size_t>>& classes() const { return classes_; }

  std::vector<std::size_t> epoch_order(std::uint32_t epoch) const {
    switch (kind_) {
      case SamplerKind::sequential: {
        std::vector<std::size_t> order(size_);
        std::iota(order.begin(), order.end(), std::size_t{0});
        return order;
      }
      case SamplerKind::shuffled: return epoch_permutation(size_, seed_, epoch);
      case SamplerKind::class_balanced: {
        Philox rng(make_key(seed_, kPurposeShuffle, epoch, 0, 1));
        std::vector<std::size_t> order(size_);
        for (std::size_t& i : order) {
          const auto& members = classes_[rng.uniform_int(static_cast<std::uint32_t>(classes_.size()))];
          i = members[rng.uniform_int(static_cast<std::uint32_t>(members.size()))];
        }
        return order;
      }
    }
    return {};
  }

 private:
  Sampler(SamplerKind kind, std::size_t size, std::uint64_t seed) : kind_(kind), size_(size), seed_(seed) {
    FOVEA_CHECK(size < (std::size_t{1} << 32), "sampler: ", size, " samples per epoch (at most 2^32 - 1)");
  }

  SamplerKind kind_;
  std::size_t size_;
  std::uint64_t seed_;
  std::vector<std::vector<std::size_t>> classes_;
};

// An epoch's order cut into batches of batch_size; the last batch is smaller, or dropped with drop_last.
class Batches {
 public:
  Batches(std::vector<std::size_t> order, std::size_t batch_size, bool drop_last)
      : order_(std::move(order)), batch_size_(batch_size) {
    FOVEA_CHECK(batch_size > 0, "batch size must be positive");
    count_ = drop_last ? order_.size() / batch_size : (order_.size() + batch_size - 1) / batch_size;
  }
  std::size_t size() const { return count_; }
  std::size_t batch_size() const { return batch_size_; }
  const std::vector<std::size_t>& order() const { return order_; }
  // The sample indices of batch b. requires: b < size().
  std::span<const std::size_t> operator[](std::size_t b) const {
    FOVEA_CHECK(b < count_, "batch ", b, " of an epoch of ", count_, " batches");
    const std::size_t begin = b * batch_size_;
    return std::span<const std::size_t>(order_).subspan(begin, std::min(batch_size_, order_.size() - begin));
  }

 private:
  std::vector<std::size_t> order_;
  std::size_t batch_size_;
  std::size_t count_;
};

// epoch_batches: the batches of `epoch` under `sampler`.
inline Batches epoch_batches(const Sampler& sampler, std::uint32_t epoch, std::size_t batch_size,
                             bool drop_last) {
  return Batches(sampler.epoch_order(epoch), batch_size, drop_last);
}

}  // namespace fovea::data
