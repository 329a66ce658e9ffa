// fovea/nn/weights.hpp: a network's weights to and from safetensors files (fovea checkpoints and
// torchvision / timm ResNet weights, by torchvision key names). Include it only where files are
// read or written: it brings in the JSON parser (see docs/weights.md).
#pragma once

#include <filesystem>
#include <map>
#include <string>

#include "fovea/io/safetensors.hpp"
#include "fovea/nn/state.hpp"

namespace fovea::nn {

// Reads `path` and loads it into `net` (see load_state for strict and partial modes). Non-float
// tensors such as torchvision's BN `num_batches_tracked` (I64) are skipped, as are tensors of
// rank > 4 (reported as unexpected). Errors name the file.
template <class Net>
LoadReport load_weights(Net& net, const std::filesystem::path& path, LoadOptions options = {}) {
  io::SafeTensorsReadOptions read;
  read.skip_unsupported_dtypes = true;
  read.skip_high_rank = true;
  io::SafeTensors file = io::read_safetensors(path, read);
  StateDict entries;
  for (auto& [name, t] : file.tensors) entries[name] = HostTensor{t.shape, std::move(t.data)};
  options.source = path.string();
  LoadReport report = load_state(net, entries, options);
  for (const auto& s : file.skipped)
    if (s.name.find("num_batches_tracked") == std::string::npos) report.unexpected.push_back(s.name + " (" + s.reason + ")");
  return report;
}

// Writes every parameter and buffer of `net` as F32 under torchvision names, atomically.
template <class Net>
void save_weights(Net& net, const std::filesystem::path& path, const io::SafeTensorsMetadata& metadata = {}) {
  std::map<std::string, CView> views;
  net.visit_parameters("", [&](const std::string& name, Parameter& p) { views.emplace(name, p.value.cview()); });
  net.visit_buffers("", [&](const std::string& name, Tensor& t) { views.emplace(name, t.cview()); });
  io::write_safetensors(path, views, metadata);
}

}  // namespace fovea::nn
