// kernels/conv.cuh: every cuDNN convolution call of fovea: the CUDA twins of conv2d_forward /
// backward_data / backward_filter / backward_bias (contracts in include/fovea/ops/conv.hpp) through
// cuDNN's legacy convolution API (why legacy: docs/ops-conv.md), with a plan cache.
//
// A plan holds the descriptors and the three chosen algorithms for one (device, shapes, params, TF32,
// deterministic) key. Algorithms come from the cudnnGet*Algorithm_v7 heuristics (no benchmarking,
// so the choice is the same from run to run): the first that succeeds, fits the math mode and, when
// math_settings().deterministic, is deterministic. Plans are built once, never changed and never
// destroyed (like the handles), so threads share them without locks after lookup. Workspaces come from
// fovea's caching allocator on the current stream and are returned right after the call is queued.
// Operands not 16-byte aligned (views into a batch) go through aligned scratch copies.
#pragma once

#include <cudnn.h>

#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

#include "check.cuh"
#include "common.cuh"
#include "cudnn.cuh"
#include "fovea/cuda/conv.hpp"
#include "fovea/ops/blas.hpp"

namespace fovea::cuda::detail {

struct ConvKey {
  int device = 0;
  std::int64_t n = 0, c = 0, h = 0, w = 0, k = 0, r = 0, s = 0;
  Conv2dParams params;
  bool tf32 = true, deterministic = false;
  friend bool operator==(const ConvKey&, const ConvKey&) = default;
};

struct ConvKeyHash {
  std::size_t operator()(const ConvKey& key) const {
    const std::int64_t fields[] = {key.device, key.n, key.c, key.h, key.w, key.k, key.r, key.s,
                                   key.params.stride_h, key.params.stride_w, key.params.pad_h, key.params.pad_w,
                                   key.params.dilation_h, key.params.dilation_w, key.params.groups,
                                   key.tf32, key.deterministic};
    std::size_t h = 1469598103934665603ull;
    for (std::int64_t f : fields) h = (h ^ std::hash<std::int64_t>{}(f)) * 1099511628211ull;
    return h;
  }
};

// Descriptors and algorithms of one convolution; immutable once built. One convolution descriptor
// per direction, each carrying the math type its algorithm was chosen with.
struct ConvPlan {
  cudnnTensorDescriptor_t x = nullptr, y = nullptr, bias = nullptr;
  cudnnFilterDescriptor_t w = nullptr;
  cudnnConvolutionDescriptor_t fwd_conv = nullptr, data_conv = nullptr, filter_conv = nullptr;
  cudnnConvolutionFwdAlgo_t fwd_algo{};
  cudnnConvolutionBwdDataAlgo_t data_algo{};
  cudnnConvolutionBwdFilterAlgo_t filter_algo{};
  std::size_t fwd_bytes = 0, data_bytes = 0, filter_bytes = 0;
};

inline std::string conv_where(const ConvKey& key) {
  return "input (" + std::to_string(key.n) + ", " + std::to_string(key.c) + ", " + std::to_string(key.h) + ", " +
         std::to_string(key.w) + "), weight (" + std::to_string(key.k) + ", " +
         std::to_string(key.c / key.params.groups) + ", " + std::to_string(key.r) + ", " + std::to_string(key.s) +
         "), " + key.params.str() + (key.tf32 ? ", TF32 allowed" : ", TF32 off") +
         (key.deterministic ? ", deterministic" : "");
}

inline int to_cudnn_int(std::int64_t v, const ConvKey& key) {
  FOVEA_CHECK(v <= std::numeric_limits<int>::max(), "cuDNN takes int sizes: ", v, " is too large for ",
              conv_where(key));
  return static_cast<int>(v);
}

inline cudnnTensorDescriptor_t make_tensor_desc(std::int64_t n, std::int64_t c, std::int64_t h, std::int64_t w,
                                                const ConvKey& key) {
  FOVEA_CHECK(n * c * h * w <= std::numeric_limits<int>::max(), "cuDNN tensors hold at most 2^31 - 1 elements; ",
              conv_where(key));
  cudnnTensorDescriptor_t d = nullptr;
  FOVEA_CHECK_CUDNN(cudnnCreateTensorDescriptor(&d));
  FOVEA_CHECK_CUDNN(cudnnSetTensor4dDescriptor(d, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, to_cudnn_int(n, key),
                                               to_cudnn_int(c, key), to_cudnn_int(h, key), to_cudnn_int(w, key)),
                    conv_where(key));
  return d;
}

inline cudnnConvolutionDescriptor_t make_conv_desc(const ConvKey& key) {
  const auto& p = key.params;
  cudnnConvolutionDescriptor_t d = nullptr;
  FOVEA_CHECK_CUDNN(cudnnCreateConvolutionDescriptor(&d));
  FOVEA_CHECK_CUDNN(cudnnSetConvolution2dDescriptor(d, p.pad_h, p.pad_w, p.stride_h, p.stride_w, p.dilation_h,
                                                    p.dilation_w, CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT),
                    conv_where(key));
  FOVEA_CHECK_CUDNN(cudnnSetConvolutionGroupCount(d, p.groups), conv_where(key));
  FOVEA_CHECK_CUDNN(cudnnSetConvolutionMathType(d, key.tf32 ? CUDNN_DEFAULT_MATH : CUDNN_FMA_MATH),
                    conv_where(key));
  return d;
}

// Whether a heuristic's result may be used under the key's settings.
template <class Perf>
bool usable(const Perf& perf, const ConvKey& key) {
  if (perf.status != CUDNN_STATUS_SUCCESS) return false;
  if (key.deterministic && perf.determinism != CUDNN_DETERMINISTIC) return false;
  if (!key.tf32 && perf.mathType != CUDNN_FMA_MATH && perf.mathType != CUDNN_DEFAULT_MATH) return false;
  return true;
}

// Fixes the math type of `conv` to the chosen algorithm's (TF32 off keeps CUDNN_FMA_MATH).
inline void set_chosen_math(cudnnConvolutionDescriptor_t conv, cudnnMathType_t chosen, const ConvKey& key) {
  FOVEA_CHECK_CUDNN(cudnnSetConvolutionMathType(conv, key.tf32 ? chosen : CUDNN_FMA_MATH), conv_where(key));
}

inline std::unique_ptr<ConvPlan> build_plan(cudnnHandle_t handle, const ConvKey& key, std::int64_t P,
                                            std::int64_t Q) {
  auto plan = std::make_unique<ConvPlan>();
  plan->x = make_tensor_desc(key.n, key.c, key.h, key.w, key);
  plan->y = make_tensor_desc(key.n, key.k, P, Q, key);
  plan->bias = make_tensor_desc(1, key.k, 1, 1, key);
  FOVEA_CHECK_CUDNN(cudnnCreateFilterDescriptor(&plan->w));
  FOVEA_CHECK_CUDNN(cudnnSetFilter4dDescriptor(plan->w, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW, to_cudnn_int(key.k, key),
                                               to_cudnn_int(key.c / key.params.groups, key),
                                               to_cudnn_int(key.r, key), to_cudnn_int(key.s, key)),
                    conv_where(key));
  plan->fwd_conv = make_conv_desc(key);
  plan->data_conv = make_conv_desc(key);
  plan->filter_conv = make_conv_desc(key);

  int dims[4] = {};
  FOVEA_CHECK_CUDNN(cudnnGetConvolutionNdForwardOutputDim(plan->fwd_conv, plan->x, plan->w, 4, dims),
                    conv_where(key));
  FOVEA_CHECK(dims[0] == key.n && dims[1] == key.k && dims[2] == P && dims[3] == Q,
              "cuDNN's output shape (", dims[0], ", ", dims[1], ", ", dims[2], ", ", dims[3],
              ") differs from fovea's (", key.n, ", ", key.k, ", ", P, ", ", Q, ") for ", conv_where(key));

  {
    cudnnConvolutionFwdAlgoPerf_t perf[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
    int count = 0;
    FOVEA_CHECK_CUDNN(cudnnGetConvolutionForwardAlgorithm_v7(handle, plan->x, plan->w, plan->fwd_conv, plan->y,
                                                             CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &count, perf),
                      conv_where(key));
    int i = 0;
    while (i < count && !usable(perf[i], key)) ++i;
    FOVEA_CHECK(i < count, "cuDNN offers no usable forward algorithm for ", conv_where(key));
    plan->fwd_algo = perf[i].algo;
    set_chosen_math(plan->fwd_conv, perf[i].mathType, key);
    FOVEA_CHECK_CUDNN(cudnnGetConvolutionForwardWorkspaceSize(handle, plan->x, plan->w, plan->fwd_conv, plan->y,
                                                              plan->fwd_algo, &plan->fwd_bytes),
                      conv_where(key));
  }
  {
    cudnnConvolutionBwdDataAlgoPerf_t perf[CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT];
    int count = 0;
    FOVEA_CHECK_CUDNN(cudnnGetConvolutionBackwardDataAlgorithm_v7(handle, plan->w, plan->y, plan->data_conv, plan->x,
                                                                  CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT, &count, perf),
                      conv_where(key));
    int i = 0;
    while (i < count && !usable(perf[i], key)) ++i;
    FOVEA_CHECK(i < count, "cuDNN offers no usable backward-data algorithm for ", conv_where(key));
    plan->data_algo = perf[i].algo;
    set_chosen_math(plan->data_conv, perf[i].mathType, key);
    FOVEA_CHECK_CUDNN(cudnnGetConvolutionBackwardDataWorkspaceSize(handle, plan->w, plan->y, plan->data_conv,
                                                                   plan->x, plan->data_algo, &plan->data_bytes),
                      conv_where(key));
  }
  {
    cudnnConvolutionBwdFilterAlgoPerf_t perf[CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT];
    int count = 0;
    FOVEA_CHECK_CUDNN(cudnnGetConvolutionBackwardFilterAlgorithm_v7(handle, plan->x, plan->y, plan->filter_conv,
                                                                    plan->w, CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT,
                                                                    &count, perf),
                      conv_where(key));
    int i = 0;
    while (i < count && !usable(perf[i], key)) ++i;
    FOVEA_CHECK(i < count, "cuDNN offers no usable backward-filter algorithm for ", conv_where(key));
    plan->filter_algo = perf[i].algo;
    set_chosen_math(plan->filter_conv, perf[i].mathType, key);
    FOVEA_CHECK_CUDNN(cudnnGetConvolutionBackwardFilterWorkspaceSize(handle, plan->x, plan->y, plan->filter_conv,
                                                                     plan->w, plan->filter_algo, &plan->filter_bytes),
                      conv_where(key));
  }
  return plan;
}

// The cached plan for x (N, C, H, W) and w (K, C / groups, R, S) under the current math settings.
inline const ConvPlan& conv_plan(cudnnHandle_t handle, Device device, const Shape& x, const Shape& w,
                                 const Conv2dParams& params) {
  const auto g = ::fovea::conv2d_geometry("conv2d (cuDNN)", x, w, params);
  const MathSettings settings = ::fovea::math_settings();
  const ConvKey key{device.index(), g.N, g.C, g.H, g.W, g.K, g.R, g.S, params, settings.allow_tf32,
                    settings.deterministic};
  static std::mutex mutex;
  static auto* plans = new std::unordered_map<ConvKey, std::unique_ptr<ConvPlan>, ConvKeyHash>();  // never freed
  std::lock_guard<std::mutex> lock(mutex);
  auto it = plans->find(key);
  if (it == plans->end()) it = plans->emplace(key, build_plan(handle, key, g.P, g.Q)).first;
  return *it->second;
}

// Device memory from fovea's caching allocator for one call on the current stream, returned when the
// scratch goes out of scope (after the work using it is queued: the allocator reuses a block only on
// the same stream, so queued work finishes first).
class Scratch {
 public:
  Scratch(Device device, std::size_t bytes) : device_(device) {
    if (bytes > 0) ptr_ = ::fovea::cuda_allocator(device.index()).allocate(bytes, ::fovea::current_stream(device));
  }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  ~Scratch() {
    if (ptr_ == nullptr) return;
    try {
      ::fovea::cuda_allocator(device_.index()).deallocate(ptr_);
    } catch (...) {  // the allocator made this pointer; a destructor must not throw
    }
  }
  void* get() const { return ptr_; }
  float* floats() const { return static_cast<float*>(ptr_); }

 private:
  Device device_;
  void* ptr_ = nullptr;
};

// Owns a tensor descriptor made for one call.
class TensorDesc {
 public:
  explicit TensorDesc(cudnnTensorDescriptor_t d) : d_(d) {}
  TensorDesc(const TensorDesc&) = delete;
  TensorDesc& operator=(const TensorDesc&) = delete;
  ~TensorDesc() { cudnnDestroyTensorDescriptor(d_); }
  cudnnTensorDescriptor_t get() const { return d_; }

 private:
  cudnnTensorDescriptor_t d_;
};

inline bool cudnn_aligned(const void* p) { return reinterpret_cast<std::uintptr_t>(p) % 16 == 0; }

// An input as cuDNN reads it: the view itself when 16-byte aligned, else an aligned copy.
class AlignedInput {
 public:
  AlignedInput(CView v, cudaStream_t stream) : scratch_(v.device(), cudnn_aligned(v.data()) ? 0 : v.bytes()) {
    ptr_ = v.data();
    if (scratch_.get() != nullptr) {
      FOVEA_CHECK_CUDA(cudaMemcpyAsync(scratch_.get(), v.data(), v.bytes(), cudaMemcpyDeviceToDevice, stream));
      ptr_ = scratch_.floats();
    }
  }
  const float* get() const { return ptr_; }

 private:
  Scratch scratch_;
  const float* ptr_ = nullptr;
};

// An output as cuDNN writes it: the view itself when aligned, else an aligned scratch that finish()
// copies back (and that starts as a copy of the view when the call accumulates into it).
class AlignedOutput {
 public:
  AlignedOutput(View v, bool load, cudaStream_t stream)
      : view_(v), stream_(stream), scratch_(v.device(), cudnn_aligned(v.data()) ? 0 : v.bytes()) {
    ptr_ = v.data();
    if (scratch_.get() != nullptr) {
      ptr_ = scratch_.floats();
      if (load) FOVEA_CHECK_CUDA(cudaMemcpyAsync(ptr_, v.data(), v.bytes(), cudaMemcpyDeviceToDevice, stream));
    }
  }
  float* get() const { return ptr_; }
  void finish() {
    if (scratch_.get() != nullptr)
      FOVEA_CHECK_CUDA(cudaMemcpyAsync(view_.data(), ptr_, view_.bytes(), cudaMemcpyDeviceToDevice, stream_));
  }

 private:
  View view_;
  cudaStream_t stream_;
  Scratch scratch_;
  float* ptr_ = nullptr;
};

}  // namespace fovea::cuda::detail

namespace fovea::cuda {

void conv2d_forward(CView x, CView w, CView bias, View y, const Conv2dParams& params) {
  if (y.numel() == 0) return;
  const Device dev = y.device();
  detail::DeviceGuard guard(dev.index());
  cudnnHandle_t handle = detail::cudnn_handle(dev);
  cudaStream_t stream = detail::stream_for(dev);
  const auto& plan = detail::conv_plan(handle, dev, x.shape(), w.shape(), params);
  detail::AlignedInput ax(x, stream), aw(w, stream);
  detail::AlignedOutput ay(y, false, stream);
  detail::Scratch workspace(dev, plan.fwd_bytes);
  const float one = 1.0f, zero = 0.0f;
  FOVEA_CHECK_CUDNN(cudnnConvolutionForward(handle, &one, plan.x, ax.get(), plan.w, aw.get(), plan.fwd_conv,
                                            plan.fwd_algo, workspace.get(), plan.fwd_bytes, &zero, plan.y, ay.get()),
                    "input ", x.shape().str(), ", weight ", w.shape().str(), ", ", params.str());
  if (::fovea::detail::is_present(bias)) {
    detail::AlignedInput ab(bias, stream);
    FOVEA_CHECK_CUDNN(cudnnAddTensor(handle, &one, plan.bias, ab.get(), &one, plan.y, ay.get()), "bias ",
                      bias.shape().str(), ", output ", y.shape().str());
  }
  ay.finish();
}

void conv2d_backward_data(CView dy, CView w, View dx, const Conv2dParams& params) {
  if (dx.numel() == 0) return;
  const Device dev = dx.device();
  detail::DeviceGuard guard(dev.index());
  cudnnHandle_t handle = detail::cudnn_handle(dev);
  cudaStream_t stream = detail::stream_for(dev);
  const auto& plan = detail::conv_plan(handle, dev, dx.shape(), w.shape(), params);
  detail::AlignedInput ady(dy, stream), aw(w, stream);
  detail::AlignedOutput adx(dx, false, stream);
  detail::Scratch workspace(dev, plan.data_bytes);
  const float one = 1.0f, zero = 0.0f;
  FOVEA_CHECK_CUDNN(cudnnConvolutionBackwardData(handle, &one, plan.w, aw.get(), plan.y, ady.get(), plan.data_conv,
                                                 plan.data_algo, workspace.get(), plan.data_bytes, &zero, plan.x,
                                                 adx.get()),
                    "dy ", dy.shape().str(), ", weight ", w.shape().str(), ", dx ", dx.shape().str(), ", ",
                    params.str());
  adx.finish();
}

void conv2d_backward_filter(CView x, CView dy, View dw, const Conv2dParams& params, bool accumulate) {
  const Device dev = dw.device();
  detail::DeviceGuard guard(dev.index());
  cudaStream_t stream = detail::stream_for(dev);
  if (x.shape()[0] == 0) {  // empty batch: cuDNN rejects N == 0
    if (!accumulate) FOVEA_CHECK_CUDA(cudaMemsetAsync(dw.data(), 0, dw.bytes(), stream), "dw ", dw.shape().str());
    return;
  }
  cudnnHandle_t handle = detail::cudnn_handle(dev);
  const auto& plan = detail::conv_plan(handle, dev, x.shape(), dw.shape(), params);
  detail::AlignedInput ax(x, stream), ady(dy, stream);
  detail::AlignedOutput adw(dw, accumulate, stream);
  detail::Scratch workspace(dev, plan.filter_bytes);
  const float one = 1.0f, beta = accumulate ? 1.0f : 0.0f;
  FOVEA_CHECK_CUDNN(cudnnConvolutionBackwardFilter(handle, &one, plan.x, ax.get(), plan.y, ady.get(),
                                                   plan.filter_conv, plan.filter_algo, workspace.get(),
                                                   plan.filter_bytes, &beta, plan.w, adw.get()),
                    "input ", x.shape().str(), ", dy ", dy.shape().str(), ", dw ", dw.shape().str(), ", ",
                    params.str());
  adw.finish();
}

void conv2d_backward_bias(CView dy, View db) {
  if (db.numel() == 0) return;
  const Device dev = db.device();
  detail::DeviceGuard guard(dev.index());
  cudaStream_t stream = detail::stream_for(dev);
  const Shape& s = dy.shape();
  if (dy.numel() == 0) {
    FOVEA_CHECK_CUDA(cudaMemsetAsync(db.data(), 0, db.bytes(), stream), "db ", db.shape().str());
    return;
  }
  cudnnHandle_t handle = detail::cudnn_handle(dev);
  const detail::ConvKey where{dev.index(), s[0], s[1], s[2], s[3], s[1], 1, 1, {}, false, false};
  const detail::TensorDesc dy_desc(detail::make_tensor_desc(s[0], s[1], s[2], s[3], where));
  const detail::TensorDesc db_desc(detail::make_tensor_desc(1, s[1], 1, 1, where));
  detail::AlignedInput ady(dy, stream);
  detail::AlignedOutput adb(db, false, stream);
  const float one = 1.0f, zero = 0.0f;
  FOVEA_CHECK_CUDNN(cudnnConvolutionBackwardBias(handle, &one, dy_desc.get(), ady.get(), &zero, db_desc.get(),
                                                 adb.get()),
                    "dy ", s.str(), ", db ", db.shape().str());
  adb.finish();
}

}  // namespace fovea::cuda
