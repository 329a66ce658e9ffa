// fovea/nn/state.hpp: a network's state (parameters and buffers under torchvision names) as host
// tensors, and loading it back strictly (every key must match) or partially (e.g. backbone-only
// weights into a classifier).
#pragma once

#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "fovea/nn/compose.hpp"

namespace fovea::nn {

// A tensor's shape and values on the host, as a state dict holds it.
struct HostTensor {
  Shape shape;
  std::vector<float> values;
};
using StateDict = std::map<std::string, HostTensor>;

// Host copies of every parameter and buffer. Requires setup().
template <class Net>
StateDict state_dict(Net& net) {
  StateDict d;
  net.visit_parameters("", [&](const std::string& name, Parameter& p) {
    d[name] = HostTensor{p.value.shape(), p.value.to_vector()};
  });
  net.visit_buffers("", [&](const std::string& name, Tensor& t) { d[name] = HostTensor{t.shape(), t.to_vector()}; });
  return d;
}

enum class LoadMode {
  strict,   // every key of the network in the file, no other key, equal shapes; else an error
  partial,  // load what matches; report the rest (at least one key must load)
};

struct LoadReport {
  std::vector<std::string> loaded;
  std::vector<std::string> missing;     // in the network, not in the file
  std::vector<std::string> unexpected;  // in the file, not in the network
  std::vector<std::string> mismatched;  // "name: file (a, b) vs network (c, d)"
  std::string str() const {
    std::ostringstream os;
    os << loaded.size() << " loaded";
    auto list = [&](const char* what, const std::vector<std::string>& v) {
      if (v.empty()) return;
      os << "; " << v.size() << ' ' << what << ':';
      for (const auto& s : v) os << "\n  " << s;
    };
    list("missing", missing);
    list("unexpected", unexpected);
    list("mismatched", mismatched);
    return os.str();
  }
};

struct LoadOptions {
  LoadMode mode = LoadMode::strict;
  std::string strip_prefix{};  // removed from file keys first, e.g. "module.encoder_q."
  std::string source = "state dict";  // named in errors (the file path)
};

// Copies matching entries into the network's parameters and buffers (on their devices).
template <class Net>
LoadReport load_state(Net& net, const StateDict& entries, const LoadOptions& options = {}) {
  StateDict file;
  for (const auto& [key, t] : entries) {
    std::string k = key;
    if (!options.strip_prefix.empty() && k.rfind(options.strip_prefix, 0) == 0) k = k.substr(options.strip_prefix.size());
    file.emplace(std::move(k), t);
  }
  LoadReport report;
  std::map<std::string, bool> used;
  auto take = [&](const std::string& name, Tensor& target) {
    auto it = file.find(name);
    if (it == file.end()) {
      report.missing.push_back(name);
      return;
    }
    used[name] = true;
    if (!(it->second.shape == target.shape()) &&
        !(it->second.shape.numel() == target.numel() && it->second.shape.rank() == 0 && target.numel() == 1)) {
      report.mismatched.push_back(name + ": file " + it->second.shape.str() + " vs network " + target.shape().str());
      return;
    }
    report.loaded.push_back(name);
  };
  // First pass: decide; second pass: copy (so a strict failure leaves the network untouched).
  net.visit_parameters("", [&](const std::string& name, Parameter& p) { take(name, p.value); });
  net.visit_buffers("", [&](const std::string& name, Tensor& t) { take(name, t); });
  for (const auto& [key, t] : file)
    if (!used.count(key)) report.unexpected.push_back(key + " " + t.shape.str());

  const bool clean = report.missing.empty() && report.unexpected.empty() && report.mismatched.empty();
  if (options.mode == LoadMode::strict && !clean)
    throw Error("loading " + options.source + " strictly failed: " + report.str());
  if (report.loaded.empty())
    throw Error("loading " + options.source + ": no key matched the network (wrong architecture or prefix?): " +
                report.str());

  std::map<std::string, bool> load(std::map<std::string, bool>{});
  for (const auto& n : report.loaded) load[n] = true;
  auto copy_in = [&](const std::string& name, Tensor& target) {
    if (!load.count(name)) return;
    const HostTensor& h = file.at(name);
    copy(CView(h.values.data(), target.shape(), Device::cpu()), target.view());
  };
  net.visit_parameters("", [&](const std::string& name, Parameter& p) { copy_in(name, p.value); });
  net.visit_buffers("", [&](const std::string& name, Tensor& t) { copy_in(name, t); });
  return report;
}

}  // namespace fovea::nn
