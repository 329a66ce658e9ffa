// fovea/nn/summary.hpp: parameter counting, train/eval switching, initialisation and the layer
// table (print_summary) for any composed network.
#pragma once

#include <cstdint>
#include <cstdio>
#include <iomanip>
#include <ostream>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "fovea/nn/compose.hpp"

namespace fovea::nn {

// Number of trainable scalars (buffers not counted). Requires setup().
template <class Net>
std::int64_t count_parameters(Net& net) {
  std::int64_t n = 0;
  net.visit_parameters("", [&](const std::string&, Parameter& p) { n += p.value.numel(); });
  return n;
}

// Draws every parameter from (seed, parameter order) and resets buffers. Requires setup().
template <class Net>
void initialize(Net& net, std::uint64_t seed) {
  InitStream stream(seed);
  net.initialize(stream);
}

template <class Net>
void set_training(Net& net, bool training) {
  net.set_training(training);
}

// "12,345,678"
inline std::string with_thousands(std::int64_t v) {
  std::string s = std::to_string(v < 0 ? -v : v);
  for (int i = static_cast<int>(s.size()) - 3; i > 0; i -= 3) s.insert(static_cast<std::size_t>(i), ",");
  return v < 0 ? "-" + s : s;
}

// The layer table: one row per leaf layer in network order (path, type, output shape for `input`,
// parameters), then the total. Requires setup().
template <class Net>
void print_summary(Net& net, const Shape& input, std::ostream& os) {
  std::vector<std::pair<const void*, Shape>> shapes;
  detail::shape_record() = &shapes;
  const Shape out = net.output_shape(input);
  detail::shape_record() = nullptr;
  auto shape_of = [&](const void* layer) -> std::string {
    for (auto it = shapes.rbegin(); it != shapes.rend(); ++it)
      if (it->first == layer) return it->second.str();
    return "";
  };
  std::ostringstream body;
  std::size_t path_w = 5;
  struct Row {
    std::string path, kind, shape;
    std::int64_t params;
  };
  std::vector<Row> rows;
  visit_layers(net, [&](const std::string& path, auto& layer) {
    using L = std::remove_cvref_t<decltype(layer)>;
    if constexpr (!detail::Composite<L>) {
      std::int64_t n = 0;
      layer.visit_parameters("", [&](const std::string&, Parameter& p) { n += p.value.numel(); });
      rows.push_back({path.empty() ? "(root)" : path, std::string(L::kind_name()), shape_of(&layer), n});
      path_w = std::max(path_w, rows.back().path.size());
    }
  });
  os << std::left << std::setw(static_cast<int>(path_w) + 2) << "layer" << std::setw(14) << "type"
     << std::setw(22) << "output shape" << std::right << std::setw(12) << "parameters" << '\n';
  os << std::string(path_w + 2 + 14 + 22 + 12, '-') << '\n';
  for (const auto& r : rows)
    os << std::left << std::setw(static_cast<int>(path_w) + 2) << r.path << std::setw(14) << r.kind << std::setw(22)
       << r.shape << std::right << std::setw(12) << with_thousands(r.params) << '\n';
  os << std::string(path_w + 2 + 14 + 22 + 12, '-') << '\n';
  os << "input " << input.str() << " -> output " << out.str() << "; total parameters "
     << with_thousands(count_parameters(net)) << '\n';
}

}  // namespace fovea::nn
