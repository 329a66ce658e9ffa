// fovea/nn/layers.hpp: the leaf layers: Conv2d, BatchNorm2d, ReLU, MaxPool2d, GlobalAvgPool,
// Flatten, Linear, Identity. Each wraps Tier-B ops (ops/*.hpp); see nn/layer.hpp for the contract.
// Buffer release (nn/layer.hpp): every layer frees its input gradient on release_input_grad();
// Conv2d, BatchNorm2d, GlobalAvgPool and Linear free their output on release_output() (their
// backward does not read it; ReLU and MaxPool2d do); ReLU and GlobalAvgPool keep no view of their
// input, nor does BatchNorm2d in evaluation mode; Identity and Flatten pass buffers through and
// have no release members.
#pragma once

#include <cmath>
#include <string>
#include <string_view>

#include "fovea/nn/layer.hpp"
#include "fovea/ops/batch_norm.hpp"
#include "fovea/ops/conv.hpp"
#include "fovea/ops/elementwise.hpp"
#include "fovea/ops/linear.hpp"
#include "fovea/ops/pool.hpp"
#include "fovea/ops/random.hpp"

namespace fovea::nn {

// The no-op members of a layer without parameters or mode (ReLU, pooling, Flatten, Identity).
struct ParameterFree {
  void initialize(InitStream&) {}
  void set_training(bool) {}
  template <class F>
  void visit_parameters(const std::string&, F&&) {}
  template <class F>
  void visit_buffers(const std::string&, F&&) {}
};

// 2-D convolution, weight (K, C, R, S) as in PyTorch; C is inferred at setup.
// Initialisation: Kaiming normal, fan-out, gain sqrt(2) (torchvision's ResNet); bias 0.
class Conv2d {
 public:
  Conv2d() = default;
  Conv2d(int out_channels, int kernel, int stride = 1, int padding = 0, bool bias = false, int dilation = 1)
      : out_channels_(out_channels), kernel_(kernel), bias_(bias) {
    FOVEA_CHECK(out_channels > 0 && kernel > 0 && stride > 0 && padding >= 0 && dilation > 0,
                "Conv2d(out_channels=", out_channels, ", kernel=", kernel, ", stride=", stride,
                ", padding=", padding, ", dilation=", dilation, ")");
    params_.stride_h = params_.stride_w = stride;
    params_.pad_h = params_.pad_w = padding;
    params_.dilation_h = params_.dilation_w = dilation;
  }
  static constexpr std::string_view kind_name() { return "Conv2d"; }

  Shape output_shape(const Shape& in) const {
    return conv2d_output_shape(in, weight_shape(in.c()), params_);
  }
  Shape setup(const Shape& in, Device device) {
    FOVEA_CHECK(in.rank() == 4, "Conv2d expects (N, C, H, W) input, got ", in.str());
    in_channels_ = static_cast<int>(in.c());
    weight_.allocate(weight_shape(in_channels_), device, ParamKind::weight);
    if (bias_) bias_param_.allocate(Shape{out_channels_}, device, ParamKind::bias);
    return output_shape(in);
  }
  void initialize(InitStream& init) {
    const double fan_out = static_cast<double>(out_channels_) * kernel_ * kernel_;
    random_normal(weight_.value, init.next(), 0.0f, static_cast<float>(std::sqrt(2.0 / fan_out)));
    if (bias_) fill(bias_param_.value, 0.0f);
  }
  CView forward(CView x) {
    check_input(x);
    act_.x = x;
    View y = act_.output_for(output_shape(x.shape()), x.device());
    conv2d_forward(x, weight_.value, bias_ ? bias_param_.value.cview() : CView(), y, params_);
    return y;
  }
  CView backward(CView dy) {
    if (param_grad_) {
      conv2d_backward_filter(act_.x, dy, weight_.grad, params_);
      if (bias_) conv2d_backward_bias(dy, bias_param_.grad);
    }
    if (!input_grad_) return CView();
    View dx = act_.input_grad_for(act_.x.shape(), dy.device());
    conv2d_backward_data(dy, weight_.value, dx, params_);
    return dx;
  }
  void release_input_grad() { act_.release_input_grad(); }
  void release_output() { act_.release_output(); }
  // false: backward skips the backward-data convolution and returns a null view.
  void set_input_grad(bool needed) {
    input_grad_ = needed;
    if (!needed) act_.release_input_grad();
  }
  // false: backward skips the backward-filter convolution and leaves the parameter gradients as
  // they are (attribution needs only the input gradients).
  void set_param_grad(bool needed) { param_grad_ = needed; }
  void set_training(bool) {}
  template <class F>
  void visit_parameters(const std::string& prefix, F&& f) {
    f(join_name(prefix, "weight"), weight_);
    if (bias_) f(join_name(prefix, "bias"), bias_param_);
  }
  template <class F>
  void visit_buffers(const std::string&, F&&) {}

  int out_channels() const { return out_channels_; }
  int kernel() const { return kernel_; }
  const Conv2dParams& params() const { return params_; }
  Parameter& weight() { return weight_; }

 private:
  Shape weight_shape(std::int64_t c) const { return Shape{out_channels_, c, kernel_, kernel_}; }
  void check_input(CView x) const {
    FOVEA_CHECK(x.shape().rank() == 4 && x.shape().c() == in_channels_, "Conv2d set up for ", in_channels_,
                " input channels got input ", x.shape().str());
  }

  int out_channels_ = 0, kernel_ = 1, in_channels_ = 0;
  bool bias_ = false, input_grad_ = true, param_grad_ = true;
  Conv2dParams params_{};
  Parameter weight_, bias_param_;
  Activations act_;
};

// Batch normalisation over (N, H, W) per channel, PyTorch semantics: batch statistics and a
// running-statistics update (momentum 0.1, unbiased variance) in training, running statistics in
// evaluation; backward in both modes (evaluation: the input gradient of the affine map only, for
// saliency). gamma = 1, beta = 0 at initialisation (gamma = 0 with zero_init, for the last norm of
// a residual block).
class BatchNorm2d {
 public:
  BatchNorm2d() = default;
  explicit BatchNorm2d(float eps, float momentum = 0.1f, bool zero_init = false)
      : eps_(eps), momentum_(momentum), zero_init_(zero_init) {}
  static constexpr std::string_view kind_name() { return "BatchNorm2d"; }

  void set_zero_init(bool z) { zero_init_ = z; }
  Shape output_shape(const Shape& in) const { return in; }
  Shape setup(const Shape& in, Device device) {
    FOVEA_CHECK(in.rank() == 4 || in.rank() == 2, "BatchNorm2d expects (N, C, H, W) or (N, C), got ", in.str());
    channels_ = in.c();
    gamma_.allocate(Shape{channels_}, device, ParamKind::norm);
    beta_.allocate(Shape{channels_}, device, ParamKind::norm);
    running_mean_ = Tensor(Shape{channels_}, device);
    running_var_ = Tensor(Shape{channels_}, device);
    saved_mean_ = Tensor(Shape{channels_}, device);
    saved_invstd_ = Tensor(Shape{channels_}, device);
    return in;
  }
  void initialize(InitStream&) {
    fill(gamma_.value, zero_init_ ? 0.0f : 1.0f);
    fill(beta_.value, 0.0f);
    fill(running_mean_, 0.0f);
    fill(running_var_, 1.0f);
  }
  CView forward(CView x) {
    FOVEA_CHECK(x.shape().c() == channels_, "BatchNorm2d set up for ", channels_, " channels got input ",
                x.shape().str());
    act_.x = x;
    forward_training_ = training_;
    View y = act_.output_for(x.shape(), x.device());
    if (training_) {
      batch_norm_forward_training(x, gamma_.value, beta_.value, running_mean_, running_var_, momentum_, eps_, y,
                                  saved_mean_, saved_invstd_);
    } else {
      batch_norm_forward_inference(x, gamma_.value, beta_.value, running_mean_, running_var_, eps_, y);
    }
    return y;
  }
  // Backward of the last forward, in the mode it ran in (changing the mode in between is an error).
  // Training: through the batch statistics, writing dgamma and dbeta. Evaluation: the layer is the
  // per-channel affine y = gamma (x - running_mean) / sqrt(running_var + eps) + beta, so
  // dx = dy * gamma / sqrt(running_var + eps) (the inference op applied to dy with mean 0, beta 0);
  // the parameter gradients are left untouched (saliency needs dx only, a frozen backbone nothing).
  CView backward(CView dy) {
    FOVEA_CHECK(
        training_ || !forward_training_,
        "BatchNorm2d::backward in evaluation mode after a forward pass in training mode: set the mode "
        "before forward");
    FOVEA_CHECK(
        !training_ || forward_training_,
        "BatchNorm2d::backward in training mode after a forward pass in evaluation mode (its input was "
        "not kept): run forward in training mode first");
    if (!training_) return backward_evaluation(dy);
    View dx = act_.input_grad_for(act_.x.shape(), dy.device());
    batch_norm_backward(act_.x, dy, gamma_.value, saved_mean_, saved_invstd_, dx, gamma_.grad, beta_.grad);
    return dx;
  }
  void release_input_grad() { act_.release_input_grad(); }
  void release_output() { act_.release_output(); }
  // Only a training-mode forward keeps its input (for backward).
  bool keeps_input() const { return forward_training_; }
  void set_training(bool t) { training_ = t; }
  bool training() const { return training_; }
  float eps() const { return eps_; }
  template <class F>
  void visit_parameters(const std::string& prefix, F&& f) {
    f(join_name(prefix, "weight"), gamma_);
    f(join_name(prefix, "bias"), beta_);
  }
  template <class F>
  void visit_buffers(const std::string& prefix, F&& f) {
    f(join_name(prefix, "running_mean"), running_mean_);
    f(join_name(prefix, "running_var"), running_var_);
  }

 private:
  CView backward_evaluation(CView dy) {
    FOVEA_CHECK(dy.shape().c() == channels_, "BatchNorm2d set up for ", channels_, " channels got gradient ",
                dy.shape().str());
    if (zero_.data() == nullptr || zero_.device() != dy.device())
      zero_ = zeros(Shape{channels_}, dy.device());
    View dx = act_.input_grad_for(dy.shape(), dy.device());
    batch_norm_forward_inference(dy, gamma_.value, zero_, zero_, running_var_, eps_, dx);
    return dx;
  }

  float eps_ = 1e-5f, momentum_ = 0.1f;
  bool zero_init_ = false, training_ = true, forward_training_ = false;
  std::int64_t channels_ = 0;
  Parameter gamma_, beta_;
  Tensor running_mean_, running_var_, saved_mean_, saved_invstd_;
  Tensor zero_;  // (C) zeros: the mean and beta of the evaluation backward, made on first use
  Activations act_;
};

// max(x, 0). Backward uses the output's sign pattern.
class ReLU : public ParameterFree {
 public:
  static constexpr std::string_view kind_name() { return "ReLU"; }
  Shape output_shape(const Shape& in) const { return in; }
  Shape setup(const Shape& in, Device) { return in; }
  CView forward(CView x) {
    View y = act_.output_for(x.shape(), x.device());
    relu_forward(x, y);
    return y;
  }
  CView backward(CView dy) {
    View dx = act_.input_grad_for(dy.shape(), dy.device());
    relu_backward(act_.y, dy, dx);
    return dx;
  }
  void release_input_grad() { act_.release_input_grad(); }
  bool keeps_input() const { return false; }

 private:
  Activations act_;
};

// Max pooling (padding with -inf, floor mode), e.g. ResNet's 3x3 stride-2 pad-1 pool.
class MaxPool2d : public ParameterFree {
 public:
  MaxPool2d() = default;
  MaxPool2d(int kernel, int stride, int padding = 0) : params_{kernel, stride, padding} {}
  static constexpr std::string_view kind_name() { return "MaxPool2d"; }
  Shape output_shape(const Shape& in) const { return pool2d_output_shape(in, params_); }
  Shape setup(const Shape& in, Device) { return output_shape(in); }
  CView forward(CView x) {
    act_.x = x;
    View y = act_.output_for(output_shape(x.shape()), x.device());
    max_pool2d_forward(x, y, params_);
    return y;
  }
  CView backward(CView dy) {
    View dx = act_.input_grad_for(act_.x.shape(), dy.device());
    max_pool2d_backward(act_.x, act_.y, dy, dx, params_);
    return dx;
  }
  void release_input_grad() { act_.release_input_grad(); }
  const PoolParams& params() const { return params_; }

 private:
  PoolParams params_{};
  Activations act_;
};

// (N, C, H, W) -> (N, C, 1, 1) mean over H, W.
class GlobalAvgPool : public ParameterFree {
 public:
  static constexpr std::string_view kind_name() { return "GlobalAvgPool"; }
  Shape output_shape(const Shape& in) const { return Shape{in.n(), in.c(), 1, 1}; }
  Shape setup(const Shape& in, Device) {
    FOVEA_CHECK(in.rank() == 4, "GlobalAvgPool expects (N, C, H, W), got ", in.str());
    return output_shape(in);
  }
  CView forward(CView x) {
    in_shape_ = x.shape();
    View y = act_.output_for(output_shape(x.shape()), x.device());
    global_avg_pool_forward(x, y);
    return y;
  }
  CView backward(CView dy) {
    View dx = act_.input_grad_for(in_shape_, dy.device());
    global_avg_pool_backward(dy, dx);
    return dx;
  }
  void release_input_grad() { act_.release_input_grad(); }
  void release_output() { act_.release_output(); }
  bool keeps_input() const { return false; }

 private:
  Shape in_shape_;
  Activations act_;
};

// (N, C, H, W) -> (N, C*H*W) without copying.
class Flatten : public ParameterFree {
 public:
  static constexpr std::string_view kind_name() { return "Flatten"; }
  Shape output_shape(const Shape& in) const { return Shape{in.n(), in.sample_numel()}; }
  Shape setup(const Shape& in, Device) { return output_shape(in); }
  CView forward(CView x) {
    in_shape_ = x.shape();
    return x.reshaped(output_shape(x.shape()));
  }
  CView backward(CView dy) { return dy.reshaped(in_shape_); }

 private:
  Shape in_shape_;
};

// Fully connected, weight (O, F) and bias (O) as in PyTorch: y = x Wᵀ + b.
class Linear {
 public:
  enum class Init {
    pytorch_default,  // U(-1/sqrt(F), 1/sqrt(F)) for weight and bias, as torch.nn.Linear
    normal_001,       // weight N(0, 0.01), bias 0: the study's classifier head
  };
  Linear() = default;
  explicit Linear(int out_features, bool bias = true, Init init = Init::pytorch_default)
      : out_features_(out_features), bias_(bias), init_(init) {
    FOVEA_CHECK(out_features > 0, "Linear(out_features=", out_features, ")");
  }
  static constexpr std::string_view kind_name() { return "Linear"; }
  Shape output_shape(const Shape& in) const { return Shape{in.n(), out_features_}; }
  Shape setup(const Shape& in, Device device) {
    in_features_ = in.sample_numel();
    weight_.allocate(Shape{out_features_, in_features_}, device, ParamKind::weight);
    if (bias_) bias_param_.allocate(Shape{out_features_}, device, ParamKind::bias);
    return output_shape(in);
  }
  void initialize(InitStream& init) {
    if (init_ == Init::normal_001) {
      random_normal(weight_.value, init.next(), 0.0f, 0.01f);
      if (bias_) fill(bias_param_.value, 0.0f);
    } else {
      const float bound = 1.0f / std::sqrt(static_cast<float>(in_features_));
      random_uniform(weight_.value, init.next(), -bound, bound);
      if (bias_) random_uniform(bias_param_.value, init.next(), -bound, bound);
    }
  }
  CView forward(CView x) {
    FOVEA_CHECK(x.shape().sample_numel() == in_features_, "Linear set up for ", in_features_,
                " input features got input ", x.shape().str());
    act_.x = x;
    View y = act_.output_for(output_shape(x.shape()), x.device());
    linear_forward(x, weight_.value, bias_ ? bias_param_.value.cview() : CView(), y);
    return y;
  }
  CView backward(CView dy) {
    if (param_grad_) {
      linear_backward_weight(act_.x, dy, weight_.grad);
      if (bias_) linear_backward_bias(dy, bias_param_.grad);
    }
    if (!input_grad_) return CView();
    View dx = act_.input_grad_for(act_.x.shape(), dy.device());
    linear_backward_data(dy, weight_.value, dx);
    return dx;
  }
  void release_input_grad() { act_.release_input_grad(); }
  void release_output() { act_.release_output(); }
  // false: backward skips the input gradient and returns a null view.
  void set_input_grad(bool needed) {
    input_grad_ = needed;
    if (!needed) act_.release_input_grad();
  }
  // false: backward leaves the parameter gradients as they are.
  void set_param_grad(bool needed) { param_grad_ = needed; }
  void set_training(bool) {}
  template <class F>
  void visit_parameters(const std::string& prefix, F&& f) {
    f(join_name(prefix, "weight"), weight_);
    if (bias_) f(join_name(prefix, "bias"), bias_param_);
  }
  template <class F>
  void visit_buffers(const std::string&, F&&) {}
  Parameter& weight() { return weight_; }

 private:
  int out_features_ = 0;
  std::int64_t in_features_ = 0;
  bool bias_ = true, input_grad_ = true, param_grad_ = true;
  Init init_ = Init::pytorch_default;
  Parameter weight_, bias_param_;
  Activations act_;
};

// y = x.
class Identity : public ParameterFree {
 public:
  static constexpr std::string_view kind_name() { return "Identity"; }
  Shape output_shape(const Shape& in) const { return in; }
  Shape setup(const Shape& in, Device) { return in; }
  CView forward(CView x) { return x; }
  CView backward(CView dy) { return dy; }
};

}  // namespace fovea::nn
