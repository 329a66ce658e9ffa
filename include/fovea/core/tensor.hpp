// fovea/core/tensor.hpp: the one concrete tensor type (fp32, rank <= 4, NCHW), its non-owning
// views, explicit transfers between devices, and the shape/device checks ops use.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "fovea/core/device.hpp"
#include "fovea/core/error.hpp"
#include "fovea/core/memory.hpp"
#include "fovea/core/parallel.hpp"
#include "fovea/core/shape.hpp"
#include "fovea/core/stream.hpp"

namespace fovea {

// A non-owning, contiguous window onto fp32 elements on one device. View is writable, CView is
// read-only; a View converts to a CView. A view does not keep its memory alive: it must not outlive
// the Tensor it came from.
template <class T>
class BasicView {
  static_assert(std::is_same_v<std::remove_const_t<T>, float>, "fovea tensors hold float");

 public:
  BasicView() = default;
  BasicView(T* data, Shape shape, Device device) : data_(data), shape_(shape), device_(device) {}
  template <class U>
    requires(std::is_const_v<T> && std::is_same_v<const U, T>)
  BasicView(const BasicView<U>& other)  // NOLINT: View -> CView is implicit
      : data_(other.data()), shape_(other.shape()), device_(other.device()) {}

  T* data() const { return data_; }
  const Shape& shape() const { return shape_; }
  Device device() const { return device_; }
  std::int64_t numel() const { return shape_.numel(); }
  std::size_t bytes() const { return static_cast<std::size_t>(numel()) * sizeof(float); }
  bool empty() const { return numel() == 0; }

  // Samples [begin, end) along axis 0: rows of a contiguous NCHW tensor, so no copy.
  BasicView batch(std::int64_t begin, std::int64_t end) const {
    FOVEA_CHECK(shape_.rank() >= 1, "batch() of a scalar view");
    FOVEA_CHECK(0 <= begin && begin <= end && end <= shape_[0], "batch range [", begin, ", ", end,
                ") outside axis 0 of shape ", shape_.str());
    return BasicView(data_ + begin * shape_.sample_numel(), shape_.with(0, end - begin), device_);
  }
  // Splits axis 0 into chunks of `chunk` samples (the last may be smaller).
  std::vector<BasicView> split_batch(std::int64_t chunk) const {
    FOVEA_CHECK(chunk > 0, "split_batch chunk must be positive, got ", chunk);
    FOVEA_CHECK(shape_.rank() >= 1, "split_batch() of a scalar view");
    std::vector<BasicView> parts;
    for (std::int64_t b = 0; b < shape_[0]; b += chunk)
      parts.push_back(batch(b, std::min(b + chunk, shape_[0])));
    return parts;
  }
  // The same elements under another shape with the same element count.
  BasicView reshaped(const Shape& shape) const {
    FOVEA_CHECK(shape.numel() == numel(), "cannot reshape ", shape_.str(), " to ", shape.str());
    return BasicView(data_, shape, device_);
  }

 private:
  T* data_ = nullptr;
  Shape shape_;
  Device device_;
};

using View = BasicView<float>;
using CView = BasicView<const float>;

// Copies src into dst, between any two devices. Shapes must be equal. A copy to the host is complete
// on return; copies to a CUDA device are queued on the current stream of that device.
inline void copy(CView src, View dst) {
  FOVEA_CHECK(src.shape() == dst.shape(), "copy: shape mismatch: source ", src.shape().str(),
              " vs destination ", dst.shape().str());
  if (src.bytes() == 0 || src.data() == dst.data()) return;
  if (src.device().is_cpu() && dst.device().is_cpu()) {
    // Large copies in 64 Ki-float chunks on the parallel loop (serial below 8 chunks).
    constexpr std::int64_t kChunk = std::int64_t{1} << 16;
    const std::int64_t n = src.numel(), chunks = (n + kChunk - 1) / kChunk;
    parallel_for(
        chunks,
        [&](std::int64_t first, std::int64_t last) {
          const std::int64_t begin = first * kChunk, end = std::min(n, last * kChunk);
          std::memcpy(dst.data() + begin, src.data() + begin,
                      static_cast<std::size_t>(end - begin) * sizeof(float));
        },
        kParallelMinWork / 8);
    return;
  }
#if FOVEA_WITH_CUDA
  using cuda::CopyKind;
  if (src.device().is_cpu()) {
    cuda::memcpy(dst.data(), src.data(), src.bytes(), CopyKind::host_to_device,
                 dst.device().index(), current_stream(dst.device()));
  } else if (dst.device().is_cpu()) {
    cuda::memcpy(dst.data(), src.data(), src.bytes(), CopyKind::device_to_host,
                 src.device().index(), current_stream(src.device()));
  } else {
    FOVEA_CHECK(src.device() == dst.device(), "copy between two CUDA devices (", src.device().str(),
                " -> ", dst.device().str(), ") goes through the host: copy to cpu first");
    cuda::memcpy(dst.data(), src.data(), src.bytes(), CopyKind::device_to_device,
                 dst.device().index(), current_stream(dst.device()));
  }
#else
  detail::throw_no_cuda("copy to or from a CUDA device");
#endif
}

// An owning fp32 tensor. Move-only: copies are explicit (clone(), to()). Contents start
// uninitialised unless made by Tensor::from() or fovea::zeros() / fovea::full()
// (ops/elementwise.hpp).
class Tensor {
 public:
  Tensor() = default;
  explicit Tensor(const Shape& shape, Device device = Device::cpu()) : shape_(shape), device_(device) {
    allocate(static_cast<std::size_t>(shape.numel()) * sizeof(float));
  }
  Tensor(const Tensor&) = delete;
  Tensor& operator=(const Tensor&) = delete;
  Tensor(Tensor&& other) noexcept { swap(other); }
  Tensor& operator=(Tensor&& other) noexcept {
    Tensor(std::move(other)).swap(*this);
    return *this;
  }
  ~Tensor() { release(); }

  // A tensor holding `values` (row-major, numel == values.size()) on `device`.
  static Tensor from(const std::vector<float>& values, const Shape& shape,
                     Device device = Device::cpu()) {
    FOVEA_CHECK(static_cast<std::int64_t>(values.size()) == shape.numel(), "Tensor::from: ",
                values.size(), " values for shape ", shape.str());
    Tensor t(shape, device);
    copy(CView(values.data(), shape, Device::cpu()), t.view());
    return t;
  }

  float* data() { return data_; }
  const float* data() const { return data_; }
  const Shape& shape() const { return shape_; }
  Device device() const { return device_; }
  std::int64_t numel() const { return shape_.numel(); }
  std::size_t bytes() const { return static_cast<std::size_t>(numel()) * sizeof(float); }
  bool empty() const { return numel() == 0; }

  View view() { return View(data_, shape_, device_); }
  CView view() const { return CView(data_, shape_, device_); }
  CView cview() const { return view(); }
  operator View() { return view(); }         // NOLINT: tensors pass where views are expected
  operator CView() const { return view(); }  // NOLINT
  View batch(std::int64_t begin, std::int64_t end) { return view().batch(begin, end); }
  CView batch(std::int64_t begin, std::int64_t end) const { return view().batch(begin, end); }
  std::vector<View> split_batch(std::int64_t chunk) { return view().split_batch(chunk); }

  // Changes the shape in place; the element count must stay the same.
  void reshape(const Shape& shape) {
    FOVEA_CHECK(shape.numel() == numel(), "cannot reshape ", shape_.str(), " to ", shape.str());
    shape_ = shape;
  }
  // Gives the tensor a new shape, reallocating only when the current memory is too small. Contents
  // are unspecified afterwards.
  void resize(const Shape& shape) {
    const std::size_t need = static_cast<std::size_t>(shape.numel()) * sizeof(float);
    if (need > capacity_) {
      release();
      allocate(need);
    }
    shape_ = shape;
  }

  // A copy on `device` (also when it is the same device).
  Tensor to(Device device) const {
    Tensor t(shape_, device);
    copy(view(), t.view());
    return t;
  }
  Tensor clone() const { return to(device_); }
  // The elements, copied to the host.
  std::vector<float> to_vector() const {
    std::vector<float> v(static_cast<std::size_t>(numel()));
    copy(view(), View(v.data(), shape_, Device::cpu()));
    return v;
  }

  void swap(Tensor& other) noexcept {
    std::swap(data_, other.data_);
    std::swap(shape_, other.shape_);
    std::swap(device_, other.device_);
    std::swap(capacity_, other.capacity_);
  }

 private:
  void allocate(std::size_t bytes) {
    if (device_.is_cuda()) {
      data_ = static_cast<float*>(cuda_allocator(device_.index()).allocate(bytes, current_stream(device_)));
    } else {
      data_ = static_cast<float*>(host_allocate(bytes));
    }
    capacity_ = bytes;
  }
  void release() noexcept {
    if (data_ == nullptr) return;
    if (device_.is_cuda()) {
      try {
        cuda_allocator(device_.index()).deallocate(data_);
      } catch (...) {  // a destructor must not throw; the allocator already checked the pointer
      }
    } else {
      host_deallocate(data_, capacity_);
    }
    data_ = nullptr;
    capacity_ = 0;
  }

  float* data_ = nullptr;
  Shape shape_;
  Device device_;
  std::size_t capacity_ = 0;
};

// ---- checks shared by ops -------------------------------------------------------------------

// Throws unless a and b have equal shapes; the message names the op, both operands and both shapes.
inline void check_same_shape(const char* op, const char* name_a, const Shape& a, const char* name_b,
                             const Shape& b) {
  if (!(a == b))
    throw Error(std::string(op) + ": shape mismatch: " + name_a + " " + a.str() + " vs " + name_b +
                " " + b.str());
}
// Throws unless a and b live on the same device.
inline void check_same_device(const char* op, const char* name_a, Device a, const char* name_b,
                              Device b) {
  if (!(a == b))
    throw Error(std::string(op) + ": device mismatch: " + name_a + " on " + a.str() + " vs " +
                name_b + " on " + b.str());
}

}  // namespace fovea
