// fovea/core/shape.hpp: tensor shapes of rank 0 to 4 (NCHW order for 4-D).
#pragma once

#include <array>
#include <cstdint>
#include <initializer_list>
#include <ostream>
#include <sstream>
#include <string>

#include "fovea/core/error.hpp"

namespace fovea {

inline constexpr int kMaxRank = 4;

// A shape of rank 0..4; rank 0 is a scalar with one element. Sizes are >= 0.
class Shape {
 public:
  Shape() = default;
  Shape(std::initializer_list<std::int64_t> dims) {
    FOVEA_CHECK(dims.size() <= kMaxRank, "a shape has at most ", kMaxRank, " dimensions, got ",
                dims.size());
    for (std::int64_t d : dims) {
      FOVEA_CHECK(d >= 0, "negative dimension ", d, " in a shape");
      dims_[rank_++] = d;
    }
  }
  template <class It>
  static Shape from_range(It first, It last) {
    Shape s;
    for (; first != last; ++first) {
      FOVEA_CHECK(s.rank_ < kMaxRank, "a shape has at most ", kMaxRank, " dimensions");
      FOVEA_CHECK(*first >= 0, "negative dimension ", *first, " in a shape");
      s.dims_[s.rank_++] = static_cast<std::int64_t>(*first);
    }
    return s;
  }

  int rank() const { return rank_; }
  std::int64_t operator[](int i) const {
    FOVEA_CHECK(i >= 0 && i < rank_, "axis ", i, " out of range for shape ", str());
    return dims_[i];
  }
  // Size along axis i where missing leading axes count as 1 (so a 2-D shape (N, F) reads as
  // N, F, 1, 1 through n(), c(), h(), w()).
  std::int64_t dim_or_1(int i) const { return i < rank_ ? dims_[i] : 1; }
  std::int64_t n() const { return dim_or_1(0); }
  std::int64_t c() const { return dim_or_1(1); }
  std::int64_t h() const { return dim_or_1(2); }
  std::int64_t w() const { return dim_or_1(3); }

  std::int64_t numel() const {
    std::int64_t n = 1;
    for (int i = 0; i < rank_; ++i) n *= dims_[i];
    return n;
  }
  // Elements per index of axis 0 (the size of one sample).
  std::int64_t sample_numel() const {
    std::int64_t n = 1;
    for (int i = 1; i < rank_; ++i) n *= dims_[i];
    return n;
  }
  // A copy with axis `axis` set to `size`.
  Shape with(int axis, std::int64_t size) const {
    FOVEA_CHECK(axis >= 0 && axis < rank_, "axis ", axis, " out of range for shape ", str());
    FOVEA_CHECK(size >= 0, "negative dimension ", size);
    Shape s = *this;
    s.dims_[axis] = size;
    return s;
  }

  friend bool operator==(const Shape& a, const Shape& b) {
    if (a.rank_ != b.rank_) return false;
    for (int i = 0; i < a.rank_; ++i)
      if (a.dims_[i] != b.dims_[i]) return false;
    return true;
  }

  // "(2, 3, 224, 224)"; a scalar prints as "()".
  std::string str() const {
    std::ostringstream os;
    os << '(';
    for (int i = 0; i < rank_; ++i) os << (i ? ", " : "") << dims_[i];
    os << ')';
    return os.str();
  }
  friend std::ostream& operator<<(std::ostream& os, const Shape& s) { return os << s.str(); }

 private:
  std::array<std::int64_t, kMaxRank> dims_{};
  int rank_ = 0;
};

}  // namespace fovea
