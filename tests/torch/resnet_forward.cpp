// tests/torch/resnet_forward.cpp: fovea_resnet_forward, the fovea half of the torchvision cross-check
// (check_resnet.py): loads torchvision ResNet weights strictly, runs eval and train forwards and one
// backward, and writes logits, running statistics and gradients to a safetensors file.
//
// Usage: fovea_resnet_forward --arch resnet18|resnet50 --num-classes K --weights W.safetensors
//          --input X.safetensors --device cpu|cuda[:n] --out O.safetensors
// X holds "x" (N, 3, H, W) and "dy" (N, K). O holds "eval_logits", "train_logits" (N, K), "dx"
// (N, 3, H, W), "grad.<parameter>" for every parameter, and "running_mean.<bn>" /
// "running_var.<bn>" for every batch norm after the training forward. TF32 is off.
// Exit status: 0 done, 77 the device cannot be used (skip), 2 bad arguments, 1 any other error.
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "fovea/core/device.hpp"
#include "fovea/core/stream.hpp"
#include "fovea/core/tensor.hpp"
#include "fovea/io/safetensors.hpp"
#include "fovea/models/resnet.hpp"
#include "fovea/nn/summary.hpp"
#include "fovea/nn/weights.hpp"
#include "fovea/ops/blas.hpp"

namespace {

constexpr int kExitSkip = 77;
constexpr int kExitUsage = 2;

struct Options {
  std::string arch, weights, input, out, device = "cpu";
  int num_classes = 0;
};

[[noreturn]] void usage(const std::string& problem) {
  std::fprintf(stderr,
               "fovea_resnet_forward: %s\nusage: fovea_resnet_forward --arch resnet18|resnet50 --num-classes K "
               "--weights W.safetensors --input X.safetensors --device cpu|cuda --out O.safetensors\n",
               problem.c_str());
  std::exit(kExitUsage);
}

Options parse(int argc, char** argv) {
  Options o;
  std::map<std::string_view, std::string*> strings = {{"--arch", &o.arch},     {"--weights", &o.weights},
                                                      {"--input", &o.input},   {"--out", &o.out},
                                                      {"--device", &o.device}};
  for (int i = 1; i < argc; ++i) {
    const std::string_view flag = argv[i];
    if (i + 1 >= argc) usage("missing value after " + std::string(flag));
    const std::string value = argv[++i];
    if (auto it = strings.find(flag); it != strings.end()) {
      *it->second = value;
    } else if (flag == "--num-classes") {
      char* end = nullptr;
      const long k = std::strtol(value.c_str(), &end, 10);
      if (*end != '\0' || k <= 0 || k > 100000) usage("bad --num-classes '" + value + "'");
      o.num_classes = static_cast<int>(k);
    } else {
      usage("unknown argument '" + std::string(flag) + "'");
    }
  }
  if (o.arch != "resnet18" && o.arch != "resnet50") usage("--arch must be resnet18 or resnet50");
  if (o.num_classes == 0 || o.weights.empty() || o.input.empty() || o.out.empty())
    usage("--num-classes, --weights, --input and --out are required");
  return o;
}

// A stored tensor as a tensor on `device`, checked against the expected rank.
fovea::Tensor input_tensor(const fovea::io::SafeTensors& file, const std::string& name, int rank,
                           fovea::Device device, const std::string& path) {
  auto it = file.tensors.find(name);
  FOVEA_CHECK(it != file.tensors.end(), path, " has no tensor \"", name, "\"");
  FOVEA_CHECK(it->second.shape.rank() == rank, path, ": \"", name, "\" has shape ", it->second.shape.str(),
              ", expected rank ", rank);
  return fovea::io::to_tensor(it->second, device);
}

// A host copy of a view on any device.
fovea::Tensor host_copy(fovea::CView v) {
  fovea::Tensor t(v.shape(), fovea::Device::cpu());
  fovea::copy(v, t.view());
  return t;
}

template <class Net>
void run(const Options& o, fovea::Device device) {
  using namespace fovea;
  const io::SafeTensors input = io::read_safetensors(o.input);
  const Tensor x = input_tensor(input, "x", 4, device, o.input);
  const Tensor dy = input_tensor(input, "dy", 2, device, o.input);
  FOVEA_CHECK(dy.shape() == (Shape{x.shape().n(), o.num_classes}), o.input, ": dy has shape ", dy.shape().str(),
              ", expected (", x.shape().n(), ", ", o.num_classes, ")");

  Net net(models::ResNetConfig{.num_classes = o.num_classes});
  net.setup(x.shape(), device);
  const nn::LoadReport report = nn::load_weights(net, o.weights);  // strict
  std::printf("fovea_resnet_forward: %s on %s, input %s: %s\n", o.arch.c_str(), device.str().c_str(),
              x.shape().str().c_str(), report.str().c_str());

  std::map<std::string, Tensor> results;
  nn::set_training(net, false);
  results["eval_logits"] = host_copy(net.forward(x).reshaped(dy.shape()));

  nn::set_training(net, true);
  results["train_logits"] = host_copy(net.forward(x).reshaped(dy.shape()));
  net.visit_buffers("", [&](const std::string& name, Tensor& t) {
    const auto dot = name.rfind('.');
    results[name.substr(dot + 1) + "." + name.substr(0, dot)] = host_copy(t.cview());
  });

  results["dx"] = host_copy(net.backward(dy));
  net.visit_parameters("", [&](const std::string& name, nn::Parameter& p) {
    results["grad." + name] = host_copy(p.grad.cview());
  });

  std::map<std::string, CView> views;
  for (const auto& [name, t] : results) views.emplace(name, t.cview());
  io::write_safetensors(o.out, views, {{"arch", o.arch}, {"device", device.str()}});
  std::printf("fovea_resnet_forward: wrote %zu tensors to %s\n", views.size(), o.out.c_str());
}

}  // namespace

int main(int argc, char** argv) {
  const Options o = parse(argc, argv);
  try {
    const fovea::Device device = fovea::Device::parse(o.device);
    if (device.is_cuda() && !fovea::cuda_available()) {
      std::printf("fovea_resnet_forward: SKIP: no usable CUDA device: %s\n", fovea::cuda_unavailable_reason().c_str());
      return kExitSkip;
    }
    fovea::math_settings().allow_tf32 = false;
    if (o.arch == "resnet18") run<fovea::models::ResNet18>(o, device);
    else run<fovea::models::ResNet50>(o, device);
    if (device.is_cuda()) fovea::synchronize(device);
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "fovea_resnet_forward: error: %s\n", e.what());
    return 1;
  }
}
