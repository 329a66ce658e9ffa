// fovea/cpu/lane_sum.hpp: long sums in double over independent lanes. A single running double
// waits about 4 cycles for each add, so a serial sum runs at a quarter of the memory's pace; 8 lanes
// let the adds overlap (and vectorise), and 32 (batch norm's statistics) keep two vector adders busy
// with every lane its own chain. The lanes and the final combination follow the index only, never
// the thread count, so a deterministic run gives the same bits on any machine with the same
// compiler flags.
#pragma once

#include <cstdint>

namespace fovea::detail {

// The lanes l[0, n) combined pairwise, n a power of two: for 8 lanes ((0 + 1) + (2 + 3)) + ((4 + 5) +
// (6 + 7)).
inline double lane_tree(const double* l, int n) {
  return n == 1 ? l[0] : lane_tree(l, n / 2) + lane_tree(l + n / 2, n / 2);
}

template <int Lanes>
class BasicLaneSum {
  static_assert(Lanes > 0 && (Lanes & (Lanes - 1)) == 0, "a power of two");

 public:
  static constexpr int kLanes = Lanes;

  // Adds term(k) for k in [0, n): term k goes to lane k % Lanes (each call starts at lane 0).
  template <class Term>
  void add(std::int64_t n, Term&& term) {
    std::int64_t k = 0;
    for (; k + kLanes <= n; k += kLanes)
      for (int j = 0; j < kLanes; ++j) lane_[j] += static_cast<double>(term(k + j));
    for (int j = 0; k < n; ++k, ++j) lane_[j] += static_cast<double>(term(k));
  }

  double total() const { return lane_tree(lane_, kLanes); }

 private:
  double lane_[kLanes] = {};
};

using LaneSum = BasicLaneSum<8>;

}  // namespace fovea::detail
