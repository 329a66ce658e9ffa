// tests/torch/golden_steps.cpp: fovea_golden_steps, the fovea half of the golden training-step check
// (check_golden_steps.py): a few fine-tuning steps (ResNet-18 classifier, cross-entropy, AdamW) or
// SimCLR steps (ResNet-18 backbone + projection head, NT-Xent, LARS) on fixed batches, from weights
// written by PyTorch, with the per-step losses and the final state written for comparison.
//
// Usage: fovea_golden_steps --weights W.safetensors --input X.safetensors --device cpu|cuda[:n]
//          --out O.safetensors
// W holds the initial state dict (torchvision names; I64 num_batches_tracked is skipped). X holds
// "images.<k>" for k < steps ((N, 3, S, S) fine-tuning, (2N, 3, S, S) SimCLR: rows [0, N) view 1,
// [N, 2N) view 2), for fine-tuning "labels.<k>" (N) (class indices as floats), and the whole case in
// its metadata (all values strings):
//   task            finetune | simclr
//   steps           number of optimizer steps
//   small_stem      0 | 1 (3x3 stride-1 stem, no max-pool)
//   width           channel width multiplier
//   schedule        constant | warmup_cosine; lr, warmup_steps, total_steps, min_lr (WarmupCosineLr)
//   finetune:       num_classes, label_smoothing, class_weights ("w0,w1,..." or empty), and AdamW's
//                   beta1, beta2, eps, weight_decay (decay on every parameter, as torch.optim.AdamW)
//   simclr:         hidden, out_dim (projection head), temperature, and LARS's momentum,
//                   weight_decay, trust_coefficient (bias and batch-norm parameters excluded)
// Each step runs what Trainer::fit runs: lr = schedule.lr(step), task.train_step(batch),
// optimizer.step(lr), task.after_optimizer_step(). O holds "loss", "lr" and "metric" (steps): the
// step's loss (before its update), learning rate and accuracy (fine-tuning: batch accuracy; SimCLR:
// contrastive top-1), and "final.<name>" for every parameter and buffer after the last step.
// TF32 is off. Exit status: 0 done, 77 the device cannot be used (skip), 2 bad arguments, 1 any other
// error.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "fovea/core/device.hpp"
#include "fovea/core/stream.hpp"
#include "fovea/core/tensor.hpp"
#include "fovea/io/safetensors.hpp"
#include "fovea/models/resnet.hpp"
#include "fovea/nn/weights.hpp"
#include "fovea/optim/adamw.hpp"
#include "fovea/optim/lars.hpp"
#include "fovea/optim/schedule.hpp"
#include "fovea/train/tasks.hpp"

namespace {

constexpr int kExitSkip = 77;
constexpr int kExitUsage = 2;

struct Options {
  std::string weights, input, out, device = "cpu";
};

[[noreturn]] void usage(const std::string& problem) {
  std::fprintf(
      stderr,
      "fovea_golden_steps: %s\nusage: fovea_golden_steps --weights W.safetensors --input X.safetensors "
      "--device cpu|cuda --out O.safetensors\n",
      problem.c_str());
  std::exit(kExitUsage);
}

Options parse(int argc, char** argv) {
  Options o;
  std::map<std::string_view, std::string*> strings = {
      {"--weights", &o.weights}, {"--input", &o.input}, {"--out", &o.out}, {"--device", &o.device}};
  for (int i = 1; i < argc; ++i) {
    const std::string_view flag = argv[i];
    auto it = strings.find(flag);
    if (it == strings.end()) usage("unknown argument '" + std::string(flag) + "'");
    if (i + 1 >= argc) usage("missing value after " + std::string(flag));
    *it->second = argv[++i];
  }
  if (o.weights.empty() || o.input.empty() || o.out.empty())
    usage("--weights, --input and --out are required");
  return o;
}

// The case, read from the input file's metadata.
class Case {
 public:
  Case(fovea::io::SafeTensorsMetadata meta, std::string source)
      : meta_(std::move(meta)), source_(std::move(source)) {}

  const std::string& text(const std::string& key) const {
    auto it = meta_.find(key);
    FOVEA_CHECK(it != meta_.end(), source_, ": the metadata has no \"", key, "\"");
    return it->second;
  }
  double number(const std::string& key) const {
    const std::string& v = text(key);
    char* end = nullptr;
    const double x = std::strtod(v.c_str(), &end);
    FOVEA_CHECK(!v.empty() && *end == '\0', source_, ": metadata \"", key, "\" = '", v, "' is not a number");
    return x;
  }
  float real(const std::string& key) const { return static_cast<float>(number(key)); }
  int integer(const std::string& key) const {
    const double x = number(key);
    FOVEA_CHECK(x == static_cast<double>(static_cast<int>(x)), source_, ": metadata \"", key, "\" = ", x,
                " is not an integer");
    return static_cast<int>(x);
  }
  std::vector<float> reals(const std::string& key) const {
    std::vector<float> out;
    const std::string& v = text(key);
    std::size_t pos = 0;
    while (pos < v.size()) {
      const std::size_t comma = std::min(v.find(',', pos), v.size());
      const std::string part = v.substr(pos, comma - pos);
      char* end = nullptr;
      out.push_back(std::strtof(part.c_str(), &end));
      FOVEA_CHECK(!part.empty() && *end == '\0', source_, ": metadata \"", key, "\" = '", v,
                  "' is not a comma-separated list of numbers");
      pos = comma + 1;
    }
    return out;
  }

  fovea::optim::AnySchedule schedule() const {
    const std::string& kind = text("schedule");
    if (kind == "constant") return fovea::optim::ConstantLr{real("lr")};
    FOVEA_CHECK(kind == "warmup_cosine", source_, ": unknown schedule '", kind, "'");
    return fovea::optim::WarmupCosineLr{real("lr"), integer("warmup_steps"), integer("total_steps"),
                                        real("min_lr")};
  }

 private:
  fovea::io::SafeTensorsMetadata meta_;
  std::string source_;
};

// A stored tensor as a tensor on the host, checked against the expected shape.
fovea::Tensor stored(const fovea::io::SafeTensors& file, const std::string& name, const fovea::Shape& shape,
                     const std::string& path) {
  auto it = file.tensors.find(name);
  FOVEA_CHECK(it != file.tensors.end(), path, " has no tensor \"", name, "\"");
  FOVEA_CHECK(it->second.shape == shape, path, ": \"", name, "\" has shape ", it->second.shape.str(),
              ", expected ", shape.str());
  return fovea::io::to_tensor(it->second, fovea::Device::cpu());
}

// A host copy of a view on any device.
fovea::Tensor host_copy(fovea::CView v) {
  fovea::Tensor t(v.shape(), fovea::Device::cpu());
  fovea::copy(v, t.view());
  return t;
}

// Runs the steps of `task` with `optimizer` and writes the results.
template <class Net, class Task, class Optimizer>
void train_and_write(const Options& o, const Case& c, Net& net, Task& task, Optimizer& optimizer,
                     const std::vector<fovea::train::Batch>& batches, const char* metric) {
  using namespace fovea;
  const optim::AnySchedule schedule = c.schedule();
  std::vector<float> losses, lrs, metrics;
  task.set_training(true);
  for (std::size_t step = 0; step < batches.size(); ++step) {
    const float lr = optim::lr_at(schedule, static_cast<std::int64_t>(step));
    const train::StepStats stats = task.train_step(batches[step]);
    optimizer.step(lr);
    task.after_optimizer_step();
    double value = -1.0;
    for (const auto& [name, v] : stats.metrics)
      if (name == metric) value = v;
    FOVEA_CHECK(value >= 0.0, "the task reported no metric \"", metric, "\"");
    losses.push_back(static_cast<float>(stats.loss));
    lrs.push_back(lr);
    metrics.push_back(static_cast<float>(value));
    std::printf("fovea_golden_steps: step %zu  lr %.6g  loss %.7f  %s %.4f\n", step, lr, stats.loss, metric,
                value);
  }
  std::map<std::string, Tensor> results;
  const Shape per_step{static_cast<std::int64_t>(batches.size())};
  results["loss"] = Tensor::from(losses, per_step);
  results["lr"] = Tensor::from(lrs, per_step);
  results["metric"] = Tensor::from(metrics, per_step);
  net.visit_parameters("final", [&](const std::string& name, nn::Parameter& p) {
    results[name] = host_copy(p.value.cview());
  });
  net.visit_buffers("final",
                    [&](const std::string& name, Tensor& t) { results[name] = host_copy(t.cview()); });
  std::map<std::string, CView> views;
  for (const auto& [name, t] : results) views.emplace(name, t.cview());
  io::write_safetensors(o.out, views, {{"task", c.text("task")}, {"device", optimizer.device().str()}});
  std::printf("fovea_golden_steps: wrote %zu tensors to %s\n", views.size(), o.out.c_str());
}

void run(const Options& o, fovea::Device device) {
  using namespace fovea;
  const io::SafeTensors input = io::read_safetensors(o.input);
  const Case c(input.metadata, o.input);
  const std::string task = c.text("task");
  const int steps = c.integer("steps");
  FOVEA_CHECK(steps >= 1, o.input, ": steps must be >= 1, got ", steps);
  FOVEA_CHECK(task == "finetune" || task == "simclr", o.input, ": unknown task '", task, "'");

  auto first = input.tensors.find("images.0");
  FOVEA_CHECK(first != input.tensors.end() && first->second.shape.rank() == 4, o.input,
              " has no 4-d tensor \"images.0\"");
  const Shape image_shape = first->second.shape;  // (N, 3, S, S) or (2N, 3, S, S)
  std::vector<train::Batch> batches(static_cast<std::size_t>(steps));
  for (int k = 0; k < steps; ++k) {
    train::Batch& b = batches[static_cast<std::size_t>(k)];
    b.images = stored(input, "images." + std::to_string(k), image_shape, o.input);
    if (task == "finetune")
      b.labels = stored(input, "labels." + std::to_string(k), Shape{image_shape.n()}, o.input);
  }

  models::ResNetConfig cfg;
  cfg.width = c.real("width");
  cfg.small_stem = c.integer("small_stem") != 0;
  math_settings().allow_tf32 = false;
  if (task == "finetune") {
    cfg.num_classes = c.integer("num_classes");
    models::ResNet18 net(cfg);
    net.setup(image_shape, device);
    const nn::LoadReport report = nn::load_weights(net, o.weights);  // strict
    std::printf("fovea_golden_steps: finetune, resnet18 on %s, batch %s: %s\n", device.str().c_str(),
                image_shape.str().c_str(), report.str().c_str());
    train::ClassifierTaskOptions options;
    options.label_smoothing = c.real("label_smoothing");
    if (!c.text("class_weights").empty()) options.class_weights = c.reals("class_weights");
    train::ClassifierTask<models::ResNet18> job(net, device, options);
    optim::AdamWOptimizer optimizer(job.trainable_parameters(),
                                    optim::AdamWOptions{.beta1 = c.real("beta1"),
                                                        .beta2 = c.real("beta2"),
                                                        .eps = c.real("eps"),
                                                        .weight_decay = c.real("weight_decay")});
    train_and_write(o, c, net, job, optimizer, batches, "accuracy");
  } else {
    using Net = models::ContrastiveModel<models::ResNet18Backbone>;
    Net net(cfg, c.integer("hidden"), c.integer("out_dim"));
    net.setup(image_shape, device);
    const nn::LoadReport report = nn::load_weights(net, o.weights);  // strict
    std::printf("fovea_golden_steps: simclr, resnet18 + projection head on %s, batch %s: %s\n",
                device.str().c_str(), image_shape.str().c_str(), report.str().c_str());
    train::SimClrTask<Net> job(net, device, train::SimClrOptions{c.real("temperature")});
    optim::LarsOptimizer optimizer(job.trainable_parameters(),
                                   optim::LarsOptions{.momentum = c.real("momentum"),
                                                      .weight_decay = c.real("weight_decay"),
                                                      .trust_coefficient = c.real("trust_coefficient")});
    train_and_write(o, c, net, job, optimizer, batches, "contrastive_top1");
  }
}

}  // namespace

int main(int argc, char** argv) {
  const Options o = parse(argc, argv);
  try {
    const fovea::Device device = fovea::Device::parse(o.device);
    if (device.is_cuda() && !fovea::cuda_available()) {
      std::printf("fovea_golden_steps: SKIP: no usable CUDA device: %s\n",
                  fovea::cuda_unavailable_reason().c_str());
      return kExitSkip;
    }
    run(o, device);
    if (device.is_cuda()) fovea::synchronize(device);
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "fovea_golden_steps: error: %s\n", e.what());
    return 1;
  }
}
