// fovea/cpu/lane_sum.hpp: long sums in double over 8 independent lanes. A single running double
// waits about 4 cycles for each add, so a serial sum runs at a quarter of the memory's pace; 8 lanes
// let the adds overlap (and vectorise). The lanes and the final combination follow the index only,
// never the thread count, so a deterministic run gives the same bits on any machine with the same
// compiler flags.
#pragma once

#include <cstdint>

namespace fovea::detail {

class LaneSum {
 public:
  static constexpr int kLanes = 8;

  // Adds term(k) for k in [0, n): term k goes to lane k % 8 (each call starts at lane 0).
  template <class Term>
  void add(std::int64_t n, Term&& term) {
    std::int64_t k = 0;
    for (; k + kLanes <= n; k += kLanes)
      for (int j = 0; j < kLanes; ++j) lane_[j] += static_cast<double>(term(k + j));
    for (int j = 0; k < n; ++k, ++j) lane_[j] += static_cast<double>(term(k));
  }

  // The lanes combined pairwise: ((0 + 1) + (2 + 3)) + ((4 + 5) + (6 + 7)).
  double total() const {
    return ((lane_[0] + lane_[1]) + (lane_[2] + lane_[3])) + ((lane_[4] + lane_[5]) + (lane_[6] + lane_[7]));
  }

 private:
  double lane_[kLanes] = {};
};

}  // namespace fovea::detail
