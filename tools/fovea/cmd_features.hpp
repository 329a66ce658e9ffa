// tools/fovea/cmd_features.hpp: `fovea features`, the feature statistics of REFERENCE §1.4 for one
// model (and a second one with --compare): per layer (every conv, BN and linear output by default)
// the top-100 PCA eigenvalues of the standardised activations of N images, the condition number
// CN(99.9, 90), the Fisher kurtosis of the first conv layer's spectrum, and linear CKA between every
// pair of layers (and across the two models).
//
// How: the images (a data folder as the drivers read it, or fovea's synthetic fundus images made in
// memory) go through the test transform once and stay on the host. The forward runs in evaluation
// mode with an nn::ActivationTap on the selected layers; each layer's outputs (N x C·H·W) are copied
// into buffers on the model's device and reduced there to its n x n Grams, centred and standardised
// (analysis/features_device.hpp: cublasDsyrk on a GPU). The buffers of one forward pass hold at most
// --max-memory bytes: the layers are packed into groups (a layer larger than the budget is split by
// feature ranges; Grams of disjoint features add up) and the forward is run once per group, so only
// the Grams outlive a pass. Outputs (--out DIR, each written atomically): features.json,
// spectra.csv, cn.csv, cka.csv and, with --compare, cka_compare.csv. docs/cli.md and
// docs/features.md describe them.
#pragma once

#include <CLI/CLI.hpp>
#include <algorithm>
#include <array>
#include <cctype>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iomanip>
#include <iostream>
#include <limits>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <span>
#include <sstream>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "drivers.hpp"
#include "fovea/analysis/features.hpp"
#include "fovea/analysis/features_device.hpp"
#include "fovea/core/device.hpp"
#include "fovea/core/error.hpp"
#include "fovea/core/parallel.hpp"
#include "fovea/core/tensor.hpp"
#include "fovea/data/augment.hpp"
#include "fovea/data/dataset.hpp"
#include "fovea/data/fundus.hpp"
#include "fovea/data/loader.hpp"
#include "fovea/data/sampler.hpp"
#include "fovea/data/split.hpp"
#include "fovea/data/synthetic.hpp"
#include "fovea/io/atomic_file.hpp"
#include "fovea/io/folder_lock.hpp"
#include "fovea/io/safetensors.hpp"
#include "fovea/io/svg_plot.hpp"
#include "fovea/nn/state.hpp"
#include "fovea/nn/tap.hpp"
#include "model.hpp"

namespace fovea::tools {

struct FeaturesArgs {
  std::string arch;
  int num_classes = 0;  // 0: from the weights' fc.weight (any value for backbone-only weights)
  float width = 1.0f;
  bool small_stem = false;
  std::string weights, compare;
  std::string data, labels;
  std::string split;  // optional split file (image,split): only its --split-name part of --data
  std::string split_name = "test";
  std::int64_t count = 512;    // at most this many images from --data (a seeded subset when it holds more)
  bool count_set = false;      // --count given (it does not apply to --synthetic)
  std::int64_t synthetic = 0;  // synthetic images instead of --data
  int size = 224;
  std::string normalization = "dr";
  std::int64_t batch_size = 32;
  int threads = 2;
  std::string layers = "all";
  int top_k = analysis::kDefaultTopEigenvalues;
  std::string cn = "99.9,90";
  bool debiased = false;
  std::string max_memory = "2GiB";
  std::uint64_t seed = 0;
  std::string device = "auto";
  std::string out;
  bool skip_bad_images = false;  // as the drivers' --skip-bad-images (counted on stdout)
  std::string preprocess = "resize";  // as the drivers' --preprocess (data::FundusMode), for --data
};

// What `features` found, for the study's table (run_features' result; features.json holds it all).
struct FeaturesSummary {
  std::vector<std::string> layers, kinds;  // the analysed layers' paths and kinds, in network order
  std::vector<double> cn;                  // CN(p1, p2) per layer (NaN where undefined)
  std::vector<double> cka_compare;  // per layer: linear CKA with the same layer of --compare (empty without)
  std::string first_conv;           // the network's first conv layer when analysed, else empty
  double first_conv_kurtosis = std::numeric_limits<double>::quiet_NaN();
  double p1 = 0, p2 = 0;  // the CN percentiles
  std::int64_t images = 0;
};

namespace features_detail {

namespace fs = std::filesystem;
using json = nlohmann::ordered_json;
using Clock = std::chrono::steady_clock;

inline double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

// A command-line mistake found after parsing (exit 2 through main's CLI::ParseError handler).
[[noreturn]] inline void usage(const std::string& flag, const std::string& message) {
  throw CLI::ValidationError(flag, message);
}

// "2GiB", "512M", "1.5G", "1000000" -> bytes (K, M, G, T are binary; "B" and "iB" are optional).
inline std::int64_t parse_bytes(const std::string& text) {
  double value = 0;
  const char* first = text.data();
  const char* last = text.data() + text.size();
  const auto [ptr, ec] = std::from_chars(first, last, value);
  std::string unit(ptr, last);
  double scale = 1;
  if (!unit.empty()) {
    const char u = static_cast<char>(std::toupper(static_cast<unsigned char>(unit[0])));
    const std::string rest = unit.substr(1);
    const int power = u == 'K' ? 1 : u == 'M' ? 2 : u == 'G' ? 3 : u == 'T' ? 4 : u == 'B' ? 0 : -1;
    const bool suffix_ok = (u == 'B' && rest.empty()) ||
                           (power > 0 && (rest.empty() || rest == "B" || rest == "iB" || rest == "ib"));
    if (!suffix_ok) usage("--max-memory", "'" + text + "' is not a byte count such as 2GiB, 512M or 1000000");
    scale = std::pow(1024.0, power);
  }
  if (ec != std::errc() || ptr == first || !(value > 0) || !std::isfinite(value * scale) ||
      value * scale > 9e18)
    usage("--max-memory", "'" + text + "' is not a positive byte count such as 2GiB, 512M or 1000000");
  return static_cast<std::int64_t>(value * scale);
}

// "99.9,90" -> {99.9, 90}.
inline std::pair<double, double> parse_percentiles(const std::string& text) {
  const std::size_t comma = text.find(',');
  std::pair<double, double> p{};
  bool ok = comma != std::string::npos;
  if (ok) {
    const std::string a = text.substr(0, comma), b = text.substr(comma + 1);
    const auto ra = std::from_chars(a.data(), a.data() + a.size(), p.first);
    const auto rb = std::from_chars(b.data(), b.data() + b.size(), p.second);
    ok = !a.empty() && !b.empty() && ra.ec == std::errc() && ra.ptr == a.data() + a.size() &&
         rb.ec == std::errc() && rb.ptr == b.data() + b.size();
  }
  if (!ok) usage("--cn", "'" + text + "' is not two comma-separated percentiles p1,p2 (e.g. 99.9,90)");
  if (!(p.first >= 0 && p.first <= 100 && p.second >= 0 && p.second <= 100))
    usage("--cn", "percentiles must be in [0, 100], got '" + text + "'");
  return p;
}

inline std::string human_bytes(double bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (bytes >= 1024 && u < 4) {
    bytes /= 1024;
    ++u;
  }
  if (u == 0) return std::to_string(static_cast<long long>(bytes)) + " B";
  std::ostringstream os;
  os.precision(3);
  os << bytes << ' ' << units[u];
  return os.str();
}

// The shortest decimal that reads back as the same double; nan / inf spelled so.
inline std::string number(double v) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  char buf[32];
  const auto [ptr, ec] = std::to_chars(buf, buf + sizeof buf, v);
  return std::string(buf, ptr);
}
// JSON has no NaN or infinity: they become null.
inline json json_number(double v) { return std::isfinite(v) ? json(v) : json(nullptr); }

inline void write_text(const fs::path& path, const std::string& text) {
  io::write_file_atomically(path, text);
}

// ---- weights ---------------------------------------------------------------------------------------

// A weights file read into memory and reduced to the classifier's (or backbone's) torchvision keys.
struct WeightsFile {
  std::string given;        // --weights as typed
  fs::path file;            // the safetensors file read
  std::string kind;         // "weights" or "training checkpoint"
  nn::StateDict state;      // torchvision keys
  bool classifier = false;  // holds fc.weight / fc.bias
  std::int64_t classes = 0;
  std::vector<std::string> dropped;  // keys left out (projection head, optimizer state)
  io::SafeTensorsMetadata metadata;
};

// --weights may name a safetensors file (fovea init, finetune's best.safetensors, pretrain's
// backbone.safetensors, converted torchvision weights, a training checkpoint checkpoints/step-*.safetensors
// whose model is under "model."), a checkpoints/latest file (naming the newest step file), or a run
// folder (its best.safetensors, else backbone.safetensors, else checkpoints/latest).
inline fs::path resolve_weights_path(const std::string& given, const char* flag) {
  fs::path p(given);
  FOVEA_CHECK(fs::exists(p), flag, ": '", given, "' does not exist");
  if (fs::is_directory(p)) {
    for (const char* name : {"best.safetensors", "backbone.safetensors", "checkpoints/latest"})
      if (fs::exists(p / name)) return resolve_weights_path((p / name).string(), flag);
    FOVEA_FAIL(
        flag, ": the folder '", given,
        "' holds no best.safetensors, backbone.safetensors or checkpoints/latest (name a weights file)");
  }
  if (p.filename() == "latest") {
    std::ifstream in(p);
    std::string name;
    std::getline(in, name);
    FOVEA_CHECK(!name.empty(), flag, ": '", given, "' names no checkpoint file");
    const fs::path target = p.parent_path() / name;
    FOVEA_CHECK(fs::exists(target), flag, ": '", given, "' names '", target.string(),
                "', which does not exist");
    return target;
  }
  return p;
}

inline WeightsFile read_weights(const std::string& given, const char* flag) {
  WeightsFile w;
  w.given = given;
  w.file = resolve_weights_path(given, flag);
  io::SafeTensorsReadOptions read;
  read.skip_unsupported_dtypes = true;
  read.skip_high_rank = true;
  io::SafeTensors file = io::read_safetensors(w.file, read);
  w.metadata = file.metadata;
  bool checkpoint = false;
  for (const auto& [name, t] : file.tensors) checkpoint |= name.rfind("model.", 0) == 0;
  w.kind = checkpoint ? "training checkpoint" : "weights";
  for (auto& [name, t] : file.tensors) {
    std::string key = name;
    if (checkpoint) {
      if (key.rfind("model.", 0) != 0) {  // optimizer state, MoCo key encoder and queue
        w.dropped.push_back(key);
        continue;
      }
      key = key.substr(6);
    }
    if (key.rfind("head.", 0) == 0) {  // a contrastive model's projection head: not part of a classifier
      w.dropped.push_back(key);
      continue;
    }
    w.state[key] = nn::HostTensor{t.shape, std::move(t.data)};
  }
  FOVEA_CHECK(!w.state.empty(), flag, ": ", w.file.string(), " holds no model tensors");
  const auto fc = w.state.find("fc.weight");
  w.classifier = fc != w.state.end();
  if (w.classifier && fc->second.shape.rank() == 2) w.classes = fc->second.shape[0];
  return w;
}

// Loads w into the model: strictly, except that backbone-only weights may leave fc.* missing.
inline nn::LoadReport load_weights_into(Model& model, const WeightsFile& w, const char* flag) {
  nn::LoadOptions options;
  options.source = w.file.string();
  options.mode = w.classifier ? nn::LoadMode::strict : nn::LoadMode::partial;
  const std::string hint =
      "\n(are these weights for another --arch, --num-classes, --width or --small-stem?)";
  try {
    nn::LoadReport r = model.load_state(w.state, options);
    bool clean = r.unexpected.empty() && r.mismatched.empty();
    for (const auto& m : r.missing) clean &= m.rfind("fc.", 0) == 0;
    if (!clean) throw Error("loading " + w.file.string() + " failed: " + r.str());
    return r;
  } catch (const Error& e) {
    throw Error(std::string(flag) + ": " + e.what() + hint);
  }
}

// ---- images ----------------------------------------------------------------------------------------

struct Images {
  Tensor values;  // (N, 3, S, S) on the host, normalised
  std::vector<std::string> ids;
  json description;
};

inline ChannelStats channel_stats(const std::string& name) {
  if (name == "imagenet") return kImageNetStats;
  return kDrStats;
}

// The side images are decoded to before the test transform's centre crop (0.875: 256 -> 224), as the
// drivers do.
inline int decode_size(int size) { return static_cast<int>(std::lround(size / 0.875)); }

inline Images load_images(const FeaturesArgs& a, std::ostream& log) {
  Images im;
  const data::AugmentConfig transform = data::test_transform(a.size, channel_stats(a.normalization));
  const std::int64_t s = a.size, side = decode_size(a.size);
  if (a.synthetic > 0) {
    const std::int64_t n = a.synthetic;
    const std::vector<int> grades = data::synthetic_grades(n, a.seed, data::kBalancedGradeDistribution);
    data::SyntheticConfig config;
    config.seed = a.seed;
    config.size = static_cast<int>(std::max<std::int64_t>(side, 32));
    const std::int64_t g = config.size;
    Tensor raw(Shape{n, 3, g, g});  // (N, 3, G, G) in [0, 1]
    parallel_for(
        n,
        [&](std::int64_t begin, std::int64_t end) {
          for (std::int64_t i = begin; i < end; ++i) {
            const data::SyntheticFundus f =
                data::generate_fundus(config, i, grades[static_cast<std::size_t>(i)]);
            std::copy_n(f.image.data(), 3 * g * g, raw.data() + i * 3 * g * g);
          }
        },
        kParallelMinWork);
    std::vector<std::int64_t> ids(static_cast<std::size_t>(n));
    for (std::int64_t i = 0; i < n; ++i) {
      ids[static_cast<std::size_t>(i)] = i;
      im.ids.push_back(data::synthetic_image_name(i));
    }
    im.values = Tensor(Shape{n, 3, s, s});
    data::augment_batch(raw, ids, 0, 0, transform, a.seed, im.values.view());
    std::array<int, 5> per_grade{};
    for (int grade : grades) ++per_grade[static_cast<std::size_t>(grade)];
    im.description = json{{"source", "synthetic"},
                          {"images", n},
                          {"seed", a.seed},
                          {"generated_size", g},
                          {"grades", per_grade}};
    log << "features: " << n << " synthetic fundus images (seed " << a.seed
        << ", balanced grades), generated at " << g << " px\n";
    return im;
  }
  FOVEA_CHECK(fs::is_directory(a.data), "--data: '", a.data, "' does not exist or is not a folder");
  data::Dataset d;
  data::DatasetOptions o;
  o.skip_missing = a.skip_bad_images;
  if (!a.labels.empty()) {
    FOVEA_CHECK(fs::exists(a.labels), "--labels: '", a.labels, "' does not exist");
    o.image_dir = a.data;
    d = data::load_labels_csv(a.labels, o);
  } else if (fs::exists(fs::path(a.data) / "labels.csv")) {
    d = data::load_labels_csv(fs::path(a.data) / "labels.csv", o);
  } else {
    d = data::load_dataset(a.data, o);
  }
  if (a.skip_bad_images) {
    const auto dropped = drivers::drop_bad_images(d, a.threads);
    if (!dropped.empty())
      log << "features: " << dropped.size() << " images skipped (--skip-bad-images): " << dropped.front()[0]
          << ": " << dropped.front()[1] << (dropped.size() > 1 ? "; ..." : "") << "\n";
  }
  if (!a.split.empty()) {  // the part of the data set that --split assigns to --split-name
    FOVEA_CHECK(fs::exists(a.split), "--split: '", a.split, "' does not exist");
    FOVEA_CHECK(!d.empty(), "--data: no images in '", a.data, "'");
    const data::SplitFile file = data::read_split(a.split);
    d = data::apply_split(d, file.assignment_for(d))[*data::parse_split_name(a.split_name)];
    FOVEA_CHECK(!d.empty(), "--split: ", a.split, " assigns no image of '", a.data, "' to ", a.split_name);
  }
  const auto available = static_cast<std::int64_t>(d.size());
  FOVEA_CHECK(available > 0, "--data: no images in '", a.data, "'");
  FOVEA_CHECK(available >= 2, "--data: '", a.data, "' holds 1 image; feature statistics need at least 2");
  const std::int64_t n = std::min(a.count, available);
  if (n < available) {  // a seeded subset, kept in data-set order
    std::vector<std::size_t> order = data::Sampler::shuffled(d.size(), a.seed).epoch_order(0);
    order.resize(static_cast<std::size_t>(n));
    std::sort(order.begin(), order.end());
    std::vector<data::Sample> kept;
    for (std::size_t i : order) kept.push_back(d.samples[i]);
    d.samples = std::move(kept);
  }
  for (const auto& sample : d.samples) im.ids.push_back(sample.id);
  data::LoaderOptions lo;
  lo.batch_size = static_cast<std::size_t>(std::max<std::int64_t>(1, a.batch_size));
  lo.image_size = static_cast<int>(side);
  lo.threads = a.threads;
  // --preprocess as the drivers decode (tools/fovea/drivers_impl.hpp's loader_options): the default
  // resize decoder, else preprocess_fundus with the field-of-view crop (and Ben Graham's step).
  const data::FundusMode mode = data::parse_fundus_mode(a.preprocess);
  if (mode != data::FundusMode::resize) lo.decode = data::fundus_decoder(data::fundus_settings(mode, static_cast<int>(side)));
  const std::string root = d.root, labels_file = d.labels_file, format = data::format_name(d.format);
  data::Loader loader(std::move(d), data::Sampler::sequential(static_cast<std::size_t>(n)), lo);
  loader.start_epoch(0);
  im.values = Tensor(Shape{n, 3, s, s});
  std::int64_t at = 0;
  while (std::optional<data::Batch> b = loader.next()) {
    const std::int64_t k = static_cast<std::int64_t>(b->size());
    std::vector<std::int64_t> ids(b->indices.begin(), b->indices.end());
    data::augment_batch(b->image_view(), ids, 0, 0, transform, a.seed, im.values.view().batch(at, at + k));
    at += k;
  }
  FOVEA_CHECK(at == n, "--data: read ", at, " of ", n, " images");
  im.description = json{{"source", "folder"},
                        {"data", a.data},
                        {"labels", a.labels.empty() ? json(labels_file) : json(a.labels)},
                        {"format", format},
                        {"split", a.split.empty() ? json(nullptr) : json(a.split)},
                        {"split_name", a.split.empty() ? json(nullptr) : json(a.split_name)},
                        {"available", available},
                        {"images", n},
                        {"subset_seed", n < available ? json(a.seed) : json(nullptr)},
                        {"preprocess", a.preprocess}};
  log << "features: " << n << " of " << available << " images from " << a.data << " (" << format
      << (a.split.empty() ? "" : "; the " + a.split_name + " part of " + a.split) << ")\n";
  return im;
}

// ---- layers ----------------------------------------------------------------------------------------

// --layers: a comma list of kinds (all = conv + bn + linear, conv, bn, linear, other) and layer paths.
// Returns the selected sites in network order; unknown names are a usage error listing the known ones.
inline std::vector<nn::TapSite> select_layers(const std::vector<nn::TapSite>& sites, const std::string& spec,
                                              std::set<std::string>& named, const char* flag = "--layers") {
  std::set<int> chosen;
  std::vector<std::string> unknown;
  std::stringstream in(spec);
  std::string item;
  bool any = false;
  while (std::getline(in, item, ',')) {
    item.erase(0, item.find_first_not_of(" \t"));
    item.erase(item.find_last_not_of(" \t") + 1);
    if (item.empty()) continue;
    any = true;
    const bool all = item == "all";
    std::optional<nn::LayerKind> kind;
    if (item == "conv") kind = nn::LayerKind::conv;
    if (item == "bn") kind = nn::LayerKind::bn;
    if (item == "linear") kind = nn::LayerKind::linear;
    if (item == "other") kind = nn::LayerKind::other;
    bool found = false;
    for (const auto& s : sites) {
      const bool take = all ? s.kind != nn::LayerKind::other : kind ? s.kind == *kind : s.path == item;
      if (!take) continue;
      chosen.insert(s.index);
      found = true;
      if (!all && !kind) named.insert(s.path);
    }
    if (!found && !all && !kind) unknown.push_back(item);
  }
  if (!any) usage(flag, "no layer given");
  if (!unknown.empty()) {
    std::string msg = "unknown layer";
    msg += unknown.size() > 1 ? "s " : " ";
    for (std::size_t i = 0; i < unknown.size(); ++i) msg += (i ? ", '" : "'") + unknown[i] + "'";
    msg += " (use all, conv, bn, linear, other or layer paths; this model's layers:";
    for (const auto& s : sites) msg += " " + s.path;
    msg += ")";
    usage(flag, msg);
  }
  std::vector<nn::TapSite> out;
  for (const auto& s : sites)
    if (chosen.count(s.index)) out.push_back(s);
  return out;
}

// ---- memory plan -----------------------------------------------------------------------------------

// Features [begin, end) of layer `layer`, held for all N images during one forward pass.
struct PiecePlan {
  std::size_t layer = 0;
  std::int64_t begin = 0, end = 0;
};

// Packs the layers, in order, into groups of pieces whose buffers (N x width floats each) fit `budget`
// bytes; a layer larger than what is left of a group is split by feature ranges.
inline std::vector<std::vector<PiecePlan>> plan_groups(const std::vector<std::int64_t>& features,
                                                       std::int64_t n, std::int64_t budget) {
  const std::int64_t row_bytes = n * static_cast<std::int64_t>(sizeof(float));  // one feature of N images
  FOVEA_CHECK(budget >= row_bytes, "--max-memory ", budget, " bytes cannot hold one feature of ", n,
              " images (", row_bytes, " bytes)");
  const std::int64_t capacity = budget / row_bytes;  // features per group
  std::vector<std::vector<PiecePlan>> groups(1);
  std::int64_t used = 0;
  for (std::size_t l = 0; l < features.size(); ++l) {
    for (std::int64_t f = 0; f < features[l];) {
      if (used == capacity) {
        groups.emplace_back();
        used = 0;
      }
      const std::int64_t take = std::min(features[l] - f, capacity - used);
      groups.back().push_back(PiecePlan{l, f, f + take});
      used += take;
      f += take;
    }
  }
  return groups;
}

// The Grams of one model's layers over all images.
struct Grams {
  std::vector<analysis::Gram> centred, standardised;
  std::vector<std::int64_t> constants;
};

struct PassTiming {
  double forward = 0, grams = 0;
  int passes = 0;
};

// Runs the forward once per group with a tap on the group's layers and adds each piece's Grams.
// on_done(l) runs once layer l's Grams are complete.
inline void compute_grams(Model& model, const Tensor& images, std::int64_t batch, Device device,
                          const std::vector<nn::TapSite>& layers,
                          const std::vector<std::vector<PiecePlan>>& groups, bool standardised, Grams& out,
                          PassTiming& timing, const std::string& label,
                          const std::function<void(std::size_t)>& on_done) {
  const std::int64_t n = images.shape()[0];
  const Shape sample_shape{1, images.shape()[1], images.shape()[2], images.shape()[3]};
  const std::int64_t sample = sample_shape.numel();
  out.centred.assign(layers.size(), analysis::Gram{});
  if (standardised) out.standardised.assign(layers.size(), analysis::Gram{});
  out.constants.assign(layers.size(), 0);
  std::vector<std::size_t> last_group(layers.size(), 0);
  for (std::size_t g = 0; g < groups.size(); ++g)
    for (const auto& p : groups[g]) last_group[p.layer] = g;
  Tensor device_batch;
  for (std::size_t g = 0; g < groups.size(); ++g) {
    const auto t0 = Clock::now();
    struct Piece {
      PiecePlan plan;
      Tensor values;  // (N, end - begin) on the model's device
    };
    std::vector<Piece> pieces;
    std::map<int, std::vector<std::size_t>> by_site;  // site index -> pieces
    std::int64_t bytes = 0;
    for (const auto& p : groups[g]) {
      by_site[layers[p.layer].index].push_back(pieces.size());
      pieces.push_back(Piece{p, Tensor(Shape{n, p.end - p.begin}, device)});
      bytes += n * (p.end - p.begin) * static_cast<std::int64_t>(sizeof(float));
    }
    std::int64_t offset = 0;  // first image of the running batch
    nn::ActivationTap tap(
        [&](const nn::TapSite& site, CView, CView y) {
          for (std::size_t k : by_site.at(site.index)) {
            Piece& p = pieces[k];
            analysis::copy_feature_columns(y, p.plan.begin, p.plan.end, p.values.view(), offset);
          }
        },
        [&](const nn::TapSite& site) { return by_site.count(site.index) > 0; });
    FOVEA_CHECK(model.attach_tap(tap) == by_site.size(), "features: the tap found ", by_site.size(),
                " layers in the model");
    for (offset = 0; offset < n; offset += batch) {
      const std::int64_t k = std::min(batch, n - offset);
      const CView x(images.data() + offset * sample,
                    Shape{k, sample_shape[1], sample_shape[2], sample_shape[3]}, Device::cpu());
      if (device.is_cpu()) {
        model.forward(x);
      } else {
        if (device_batch.data() == nullptr || device_batch.device() != device)
          device_batch = Tensor(x.shape(), device);
        else device_batch.resize(x.shape());
        copy(x, device_batch.view());
        model.forward(device_batch);
      }
    }
    tap.detach();
    const double forward = seconds_since(t0);
    const auto t1 = Clock::now();
    std::set<std::size_t> touched;
    for (const Piece& p : pieces) {
      const CView m = p.values.cview();
      const std::size_t l = p.plan.layer;
      if (standardised) out.constants[l] += analysis::add_to_feature_gram(out.standardised[l], m, true);
      const std::int64_t c = analysis::add_to_feature_gram(out.centred[l], m, false);
      if (!standardised) out.constants[l] += c;
      touched.insert(l);
    }
    pieces.clear();
    for (std::size_t l : touched)
      if (last_group[l] == g && on_done) on_done(l);
    const double grams = seconds_since(t1);
    timing.forward += forward;
    timing.grams += grams;
    ++timing.passes;
    std::cout << "features: " << label << "pass " << g + 1 << "/" << groups.size() << ": " << touched.size()
              << " layer" << (touched.size() == 1 ? "" : "s") << ", "
              << human_bytes(static_cast<double>(bytes)) << " of activations; forward " << std::fixed
              << std::setprecision(2) << forward << " s, Grams " << grams << " s" << std::defaultfloat
              << std::setprecision(6) << std::endl;
  }
}

inline std::vector<std::int64_t> sample_shape_of(const Shape& s) {
  std::vector<std::int64_t> v;
  for (int i = 1; i < s.rank(); ++i) v.push_back(s[i]);
  return v;
}

// A square matrix as CSV: a header row of the column layers, then one row per layer, its path first.
inline std::string matrix_csv(const std::vector<std::string>& rows, const std::vector<std::string>& cols,
                              const std::vector<std::vector<double>>& m) {
  std::string csv = "layer";
  for (const auto& c : cols) csv += "," + c;
  csv += "\n";
  for (std::size_t i = 0; i < rows.size(); ++i) {
    csv += rows[i];
    for (double v : m[i]) csv += "," + number(v);
    csv += "\n";
  }
  return csv;
}

inline json matrix_json(const std::vector<std::vector<double>>& m) {
  json rows = json::array();
  for (const auto& r : m) {
    json row = json::array();
    for (double v : r) row.push_back(json_number(v));
    rows.push_back(std::move(row));
  }
  return rows;
}

inline Device resolve_device(const std::string& text) {
  if (text == "auto") return cuda_available() ? Device::cuda(0) : Device::cpu();
  Device d;
  try {
    d = Device::parse(text);
  } catch (const Error&) {
    usage("--device", "'" + text + "' is not auto, cpu, cuda or cuda:N");
  }
  require_device(d);
  return d;
}

// The settings checked before anything is read or written (mistakes are usage errors, exit 2).
struct Settings {
  double p1 = 0, p2 = 0;    // CN percentiles
  std::int64_t budget = 0;  // --max-memory in bytes
  Device device;
};

inline Settings check_usage(const FeaturesArgs& a) {
  const bool has_data = !a.data.empty();
  if (has_data == (a.synthetic > 0)) usage("--data", "give exactly one of --data DIR and --synthetic N");
  if (!a.labels.empty() && !has_data) usage("--labels", "needs --data");
  if (a.count_set && !has_data) usage("--count", "applies to --data (--synthetic N is the count)");
  if (!a.split.empty() && !has_data) usage("--split", "needs --data");
  if (!data::parse_split_name(a.split_name))
    usage("--split-name", "'" + a.split_name + "' is not train, validation or test");
  if (a.count < 2)
    usage("--count", "feature statistics need at least 2 images, got " + std::to_string(a.count));
  if (a.debiased && a.synthetic > 0 && a.synthetic < 4) usage("--debiased-cka", "needs at least 4 images");
  if (a.out.empty()) usage("--out", "is required");
  Settings s;
  std::tie(s.p1, s.p2) = parse_percentiles(a.cn);
  s.budget = parse_bytes(a.max_memory);
  s.device = resolve_device(a.device);
  return s;
}

// A model built for the flags, holding its weights, in evaluation mode.
struct LoadedModel {
  WeightsFile weights;
  models::ResNetConfig config;
  std::unique_ptr<Model> model;
  std::size_t loaded = 0;  // tensors loaded
};

// --num-classes, else the weights' classifier rows (any value for backbone-only weights).
inline models::ResNetConfig config_for(const FeaturesArgs& a, const WeightsFile& w) {
  models::ResNetConfig cfg;
  cfg.num_classes = a.num_classes > 0 ? a.num_classes : w.classifier ? static_cast<int>(w.classes) : 1;
  cfg.width = a.width;
  cfg.small_stem = a.small_stem;
  return cfg;
}

inline LoadedModel build_model(const FeaturesArgs& a, WeightsFile w, Device device) {
  LoadedModel m;
  m.config = config_for(a, w);
  m.weights = std::move(w);
  m.model = make_model(a.arch, m.config);
  m.model->setup(Shape{a.batch_size, 3, a.size, a.size}, device);
  return m;
}

inline void load(LoadedModel& m, const char* flag) {
  m.loaded = load_weights_into(*m.model, m.weights, flag).loaded.size();
  m.model->set_training(false);
  const WeightsFile& w = m.weights;
  std::cout << "features: " << flag << " " << w.given;
  if (w.file.string() != w.given) std::cout << " (" << w.file.string() << ")";
  std::cout << ": " << w.kind << ", " << m.loaded << " tensors"
            << (w.classifier ? "" : "; no classifier (backbone weights): fc left out") << std::endl;
}

// The output shape of each layer for one image (N = 1).
inline std::vector<Shape> layer_shapes(Model& model, const Tensor& images,
                                       const std::vector<nn::TapSite>& layers, Device device) {
  std::map<int, Shape> by_index;
  for (const auto& l : layers) by_index[l.index] = Shape{};
  {
    nn::ActivationTap tap([&](const nn::TapSite& s, CView, CView y) { by_index[s.index] = y.shape(); },
                          [&](const nn::TapSite& s) { return by_index.count(s.index) > 0; });
    model.attach_tap(tap);
    const Shape& in = images.shape();
    const CView one(images.data(), Shape{1, in[1], in[2], in[3]}, Device::cpu());
    if (device.is_cpu()) {
      model.forward(one);
    } else {
      Tensor t(one.shape(), device);
      copy(one, t.view());
      model.forward(t);
    }
  }
  std::vector<Shape> shapes;
  for (const auto& l : layers) shapes.push_back(by_index.at(l.index));
  return shapes;
}

struct LayerResult {
  std::vector<double> eigenvalues;  // top min(top_k, N, features), descending
  double cn = 0, kurtosis = 0;
};

// Everything the output files hold, besides the settings.
struct Report {
  std::vector<nn::TapSite> layers;
  std::vector<Shape> shapes;  // per layer, for one image
  std::vector<std::int64_t> features, constants;
  std::vector<LayerResult> results;
  std::optional<std::size_t> first_conv;  // the network's first conv layer, when selected
  std::vector<std::vector<double>> cka, cross;
  PassTiming timing;
  double cka_seconds = 0;
};

inline json model_json(const FeaturesArgs& a, const LoadedModel& m) {
  json meta = json::object();
  for (const auto& [k, v] : m.weights.metadata) meta[k] = v;
  return json{{"arch", a.arch},
              {"num_classes", m.weights.classifier ? json(m.config.num_classes) : json(nullptr)},
              {"width", a.width},
              {"small_stem", a.small_stem},
              {"weights", m.weights.given},
              {"weights_file", m.weights.file.string()},
              {"weights_kind", m.weights.kind},
              {"classifier", m.weights.classifier},
              {"tensors_loaded", m.loaded},
              {"metadata", meta}};
}

// The figures beside the CSV files: cn.svg (CN(p1, p2) per layer in network order, log scale, the
// paper's plot), spectra.svg (the top eigenvalues of up to 8 layers spread over the network, log
// scale), cka.svg and, with a second model, cka_compare.svg (heatmaps over [0, 1]).
inline void write_plots(const fs::path& out, const Settings& s, const std::vector<std::string>& paths,
                        const Report& r, bool compare) {
  io::LineChart cn;
  cn.title = "condition number CN(" + number(s.p1) + ", " + number(s.p2) + ") per layer";
  cn.y_label = "CN";
  cn.log_y = true;
  cn.x_labels = paths;
  cn.width = std::max(640, static_cast<int>(14 * paths.size()) + 100);
  io::PlotSeries line;
  for (const LayerResult& lr : r.results) line.y.push_back(lr.cn);
  cn.series.push_back(line);
  write_text(out / "cn.svg", io::line_chart_svg(cn));
  io::LineChart spectra;
  spectra.title = "PCA spectra of the standardised activations";
  spectra.x_label = "eigenvalue index";
  spectra.y_label = "eigenvalue";
  spectra.log_y = true;
  spectra.width = 760, spectra.height = 440;
  const std::size_t count = paths.size(), shown = std::min<std::size_t>(8, count);
  for (std::size_t k = 0; k < shown; ++k) {
    const std::size_t l = shown == 1 ? 0 : k * (count - 1) / (shown - 1);
    io::PlotSeries sp;
    sp.label = paths[l];
    sp.markers = false;
    for (std::size_t i = 0; i < r.results[l].eigenvalues.size(); ++i) {
      sp.x.push_back(static_cast<double>(i + 1));
      sp.y.push_back(r.results[l].eigenvalues[i]);
    }
    spectra.series.push_back(sp);
  }
  write_text(out / "spectra.svg", io::line_chart_svg(spectra));
  auto heatmap = [&](const std::string& title, const std::vector<std::vector<double>>& m) {
    io::Heatmap h;
    h.title = title;
    h.row_labels = paths, h.column_labels = paths;
    h.values = m;
    h.scale_label = "CKA";
    return io::heatmap_svg(h);
  };
  write_text(out / "cka.svg", heatmap("linear CKA between layers", r.cka));
  if (compare)
    write_text(out / "cka_compare.svg",
               heatmap("linear CKA: --weights (rows) vs --compare (columns)", r.cross));
  else fs::remove(out / "cka_compare.svg");
}

// features.json, spectra.csv, cn.csv, cka.csv and (with a second model) cka_compare.csv, atomically.
inline void write_outputs(const FeaturesArgs& a, const Settings& s, const LoadedModel& m,
                          const LoadedModel* m2, const Images& images, const Report& r,
                          Clock::time_point start) {
  const fs::path out(a.out);
  FOVEA_CHECK(!fs::exists(out) || fs::is_directory(out), "--out: '", a.out, "' exists and is not a folder");
  const io::FolderLock lock(out, "fovea features");  // the files below are one set
  const std::size_t count = r.layers.size();
  std::vector<std::string> paths;
  for (const auto& l : r.layers) paths.push_back(l.path);
  json layer_list = json::array();
  std::string spectra = "layer,index,eigenvalue\n", cn_csv = "layer,kind,cn\n";
  for (std::size_t l = 0; l < count; ++l) {
    const LayerResult& lr = r.results[l];
    json ev = json::array();
    for (std::size_t k = 0; k < lr.eigenvalues.size(); ++k) {
      ev.push_back(json_number(lr.eigenvalues[k]));
      spectra += paths[l] + "," + std::to_string(k + 1) + "," + number(lr.eigenvalues[k]) + "\n";
    }
    cn_csv += paths[l] + "," + nn::to_string(r.layers[l].kind) + "," + number(lr.cn) + "\n";
    layer_list.push_back(json{{"path", paths[l]},
                              {"kind", nn::to_string(r.layers[l].kind)},
                              {"type", r.layers[l].type},
                              {"output_shape", sample_shape_of(r.shapes[l])},
                              {"features", r.features[l]},
                              {"constant_features", r.constants[l]},
                              {"eigenvalues", ev},
                              {"cn", json_number(lr.cn)},
                              {"kurtosis", json_number(lr.kurtosis)}});
  }
  json first_conv = nullptr;
  if (r.first_conv)
    first_conv =
        json{{"layer", paths[*r.first_conv]}, {"kurtosis", json_number(r.results[*r.first_conv].kurtosis)}};
  json result{{"command", "features"},
              {"model", model_json(a, m)},
              {"compare", m2 != nullptr ? model_json(a, *m2) : json(nullptr)},
              {"data", images.description},
              {"settings", json{{"layers", a.layers},
                                {"size", a.size},
                                {"normalization", a.normalization},
                                {"top_k", a.top_k},
                                {"cn_percentiles", {s.p1, s.p2}},
                                {"debiased_cka", a.debiased},
                                {"max_memory", s.budget},
                                {"batch_size", a.batch_size},
                                {"seed", a.seed},
                                {"device", s.device.str()},
                                {"backend", backend_summary()}}},
              {"layers", layer_list},
              {"first_conv", first_conv},
              {"cka", json{{"layers", paths}, {"matrix", matrix_json(r.cka)}}}};
  if (m2 != nullptr) {
    json diagonal = json::array();
    for (std::size_t i = 0; i < count; ++i)
      diagonal.push_back(json{{"layer", paths[i]}, {"cka", json_number(r.cross[i][i])}});
    result["cka_compare"] = json{{"rows", "--weights"},
                                 {"columns", "--compare"},
                                 {"diagonal", diagonal},
                                 {"matrix", matrix_json(r.cross)}};
  }
  result["images"] = images.ids;
  result["timing"] = json{{"seconds", seconds_since(start)},
                          {"forward_seconds", r.timing.forward},
                          {"gram_seconds", r.timing.grams},
                          {"cka_seconds", r.cka_seconds},
                          {"passes", r.timing.passes}};
  write_text(out / "spectra.csv", spectra);
  write_text(out / "cn.csv", cn_csv);
  write_text(out / "cka.csv", matrix_csv(paths, paths, r.cka));
  if (m2 != nullptr) write_text(out / "cka_compare.csv", matrix_csv(paths, paths, r.cross));
  else fs::remove(out / "cka_compare.csv");  // left by an earlier run with --compare
  write_plots(out, s, paths, r, m2 != nullptr);
  write_text(out / "features.json", result.dump(2) + "\n");
}

}  // namespace features_detail

// The whole command; returns what the study tabulates, or throws (fovea::Error: exit 1;
// CLI::ValidationError: exit 2).
inline FeaturesSummary run_features(const FeaturesArgs& a) {
  namespace fd = features_detail;
  const auto start = fd::Clock::now();
  const fd::Settings s = fd::check_usage(a);
  std::cout << "features: " << backend_summary() << "; device " << s.device.str() << std::endl;

  // Models, and the layers to analyse (backbone-only weights have no trained fc).
  fd::LoadedModel m = fd::build_model(a, fd::read_weights(a.weights, "--weights"), s.device);
  std::optional<fd::LoadedModel> m2;
  if (!a.compare.empty()) m2 = fd::build_model(a, fd::read_weights(a.compare, "--compare"), s.device);
  const std::vector<nn::TapSite> sites = m.model->tap_sites();
  std::set<std::string> named;
  fd::Report r;
  r.layers = fd::select_layers(sites, a.layers, named);
  for (const fd::LoadedModel* x : {&m, m2 ? &*m2 : nullptr}) {
    if (x == nullptr || x->weights.classifier) continue;
    FOVEA_CHECK(!named.count("fc"), "--layers names fc, but ", x->weights.file.string(),
                " holds no classifier (backbone weights)");
    std::erase_if(r.layers, [](const nn::TapSite& l) { return l.path == "fc"; });
  }
  FOVEA_CHECK(!r.layers.empty(), "--layers '", a.layers, "' selects no layer these weights hold");
  fd::load(m, "--weights");
  if (m2) fd::load(*m2, "--compare");
  if (!a.data.empty())  // the images as the model learned them? (as the drivers note it)
    for (const fd::LoadedModel* model : {&m, m2 ? &*m2 : nullptr})
      if (model != nullptr)
        if (const std::string note =
                preprocess_mismatch("features", model->weights.file.string(), a.preprocess);
            !note.empty())
          std::cout << note << "\n";

  const fd::Images images = fd::load_images(a, std::cout);
  const std::int64_t n = images.values.shape()[0];
  FOVEA_CHECK(n >= 2, "feature statistics need at least 2 images, got ", n);
  FOVEA_CHECK(!a.debiased || n >= 4, "--debiased-cka needs at least 4 images, got ", n);

  // The plan: layer sizes from one image, then groups of layers (or feature ranges) per forward pass.
  r.shapes = fd::layer_shapes(*m.model, images.values, r.layers, s.device);
  std::int64_t per_image = 0;
  for (const Shape& shape : r.shapes) {
    r.features.push_back(shape.sample_numel());
    per_image += shape.sample_numel();
  }
  const auto groups = fd::plan_groups(r.features, n, s.budget);
  std::cout << "features: " << r.layers.size() << " layers (";
  bool first = true;
  for (nn::LayerKind k :
       {nn::LayerKind::conv, nn::LayerKind::bn, nn::LayerKind::linear, nn::LayerKind::other}) {
    const auto c =
        std::count_if(r.layers.begin(), r.layers.end(), [k](const nn::TapSite& l) { return l.kind == k; });
    if (c == 0) continue;
    std::cout << (first ? "" : ", ") << nn::to_string(k) << " " << c;
    first = false;
  }
  const double gram_bytes = 8.0 * static_cast<double>(n) * static_cast<double>(n) *
                            static_cast<double>(r.layers.size()) * (m2 ? 2.0 : 1.0);
  std::cout << "), " << fd::human_bytes(4.0 * static_cast<double>(per_image)) << " of activations per image; "
            << groups.size() << " forward pass" << (groups.size() == 1 ? "" : "es")
            << (m2 ? " per model" : "") << " under --max-memory "
            << fd::human_bytes(static_cast<double>(s.budget)) << "; Grams " << fd::human_bytes(gram_bytes)
            << std::endl;

  // Grams; each layer's spectrum as soon as its standardised Gram is complete (then freed).
  r.results.resize(r.layers.size());
  fd::Grams grams, grams2;
  fd::compute_grams(*m.model, images.values, a.batch_size, s.device, r.layers, groups, true, grams, r.timing,
                    m2 ? "model 1, " : "", [&](std::size_t l) {
                      fd::LayerResult& lr = r.results[l];
                      // min(top_k, N, features) values, as analysis::pca_spectrum (sklearn's PCA).
                      const auto k = std::min<std::int64_t>(a.top_k, r.features[l]);
                      lr.eigenvalues = analysis::gram_eigenvalues(grams.standardised[l], static_cast<int>(k));
                      lr.cn = analysis::condition_number(lr.eigenvalues, s.p1, s.p2);
                      lr.kurtosis = analysis::fisher_kurtosis(lr.eigenvalues);
                      grams.standardised[l] = analysis::Gram{};
                    });
  r.constants = grams.constants;
  if (m2)
    fd::compute_grams(*m2->model, images.values, a.batch_size, s.device, r.layers, groups, false, grams2,
                      r.timing, "model 2, ", {});
  const auto first_conv = std::find_if(sites.begin(), sites.end(),
                                       [](const nn::TapSite& l) { return l.kind == nn::LayerKind::conv; });
  for (std::size_t l = 0; l < r.layers.size(); ++l)
    if (first_conv != sites.end() && r.layers[l].index == first_conv->index) r.first_conv = l;

  // Linear CKA from the centred Grams: every pair of layers, and across the two models.
  const auto t_cka = fd::Clock::now();
  const std::size_t count = r.layers.size();
  r.cka.assign(count, std::vector<double>(count, 0.0));
  for (std::size_t i = 0; i < count; ++i)
    for (std::size_t j = i; j < count; ++j)
      r.cka[i][j] = r.cka[j][i] = analysis::linear_cka(grams.centred[i], grams.centred[j], a.debiased);
  if (m2) {
    r.cross.assign(count, std::vector<double>(count, 0.0));
    for (std::size_t i = 0; i < count; ++i)
      for (std::size_t j = 0; j < count; ++j)
        r.cross[i][j] = analysis::linear_cka(grams.centred[i], grams2.centred[j], a.debiased);
  }
  r.cka_seconds = fd::seconds_since(t_cka);

  fd::write_outputs(a, s, m, m2 ? &*m2 : nullptr, images, r, start);
  std::cout << "features: wrote " << (std::filesystem::path(a.out) / "features.json").string()
            << ", spectra.csv, cn.csv, cka.csv" << (m2 ? ", cka_compare.csv" : "") << " (" << std::fixed
            << std::setprecision(1) << fd::seconds_since(start) << " s)" << std::defaultfloat << std::endl;
  FeaturesSummary summary;
  for (std::size_t l = 0; l < count; ++l) {
    summary.layers.push_back(r.layers[l].path);
    summary.kinds.push_back(nn::to_string(r.layers[l].kind));
    summary.cn.push_back(r.results[l].cn);
    if (m2) summary.cka_compare.push_back(r.cross[l][l]);
  }
  if (r.first_conv) {
    summary.first_conv = r.layers[*r.first_conv].path;
    summary.first_conv_kurtosis = r.results[*r.first_conv].kurtosis;
  }
  summary.p1 = s.p1, summary.p2 = s.p2;
  summary.images = n;
  return summary;
}

// add_features_command: registers `features` on a CLI11 app (see docs/cli.md).
inline void add_features_command(CLI::App& app) {
  auto a = std::make_shared<FeaturesArgs>();
  CLI::App* c = app.add_subcommand(
      "features", "feature statistics per layer: PCA spectra, condition numbers, linear CKA (REFERENCE 1.4)");
  c->add_option("--arch", a->arch, "architecture")->required()->check(CLI::IsMember(architectures()));
  c->add_option("--num-classes", a->num_classes, "classifier outputs (default: from the weights)")
      ->check(CLI::PositiveNumber);
  c->add_option("--width", a->width, "channel width multiplier")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  c->add_flag("--small-stem", a->small_stem, "3x3 stride-1 stem without max-pool (32-128 px inputs)");
  c->add_option("--weights", a->weights,
                "safetensors weights, a training checkpoint, checkpoints/latest or a run folder")
      ->required();
  c->add_option("--compare", a->compare, "a second model's weights (same flags): CKA between the two");
  auto* data =
      c->add_option("--data", a->data, "image folder (labels.csv + images, APTOS, class folders, plain)");
  c->add_option("--labels", a->labels, "label CSV (default: <data>/labels.csv)");
  c->add_option("--split", a->split,
                "split file (image,split), e.g. a fine-tuning run's split.csv: only --split-name's images")
      ->needs(data);
  c->add_option("--split-name", a->split_name, "train, validation or test")->capture_default_str();
  c->add_option("--count", a->count, "at most N images from --data (a seeded subset when it holds more)")
      ->check(CLI::Range(std::int64_t{2}, std::int64_t{100000000}))
      ->capture_default_str();
  c->add_option("--synthetic", a->synthetic, "N synthetic fundus images made in memory instead of --data")
      ->check(CLI::Range(std::int64_t{2}, std::int64_t{1000000}))
      ->excludes(data);
  c->add_option("--size", a->size, "input side in pixels")
      ->check(CLI::Range(16, 4096))
      ->capture_default_str();
  c->add_option("--normalization", a->normalization, "dr or imagenet statistics")
      ->check(CLI::IsMember({"dr", "imagenet"}))
      ->capture_default_str();
  c->add_option("--batch-size", a->batch_size, "images per forward")
      ->check(CLI::Range(std::int64_t{1}, std::int64_t{65536}))
      ->capture_default_str();
  c->add_option("--threads", a->threads, "image decoding threads")
      ->check(CLI::Range(0, 256))
      ->capture_default_str();
  c->add_flag("--skip-bad-images", a->skip_bad_images,
              "drop images of --data that are missing or do not decode instead of stopping");
  c->add_option("--preprocess", a->preprocess,
                "images of --data as the drivers' --preprocess makes them: resize, fov or graham")
      ->check(CLI::IsMember({"resize", "fov", "graham"}))
      ->capture_default_str()
      ->needs(data);
  c->add_option("--layers", a->layers,
                "all (conv, bn, linear), conv, bn, linear, other, or comma-separated paths")
      ->capture_default_str();
  c->add_option("--top-k", a->top_k, "PCA eigenvalues kept per layer")
      ->check(CLI::Range(1, 1000000))
      ->capture_default_str();
  c->add_option("--cn", a->cn, "condition number percentiles p1,p2: CN = P_p1 / P_p2 of the eigenvalues")
      ->capture_default_str();
  c->add_flag("--debiased-cka", a->debiased, "debiased linear CKA (Song et al. 2012 HSIC)");
  c->add_option("--max-memory", a->max_memory,
                "activation buffer budget per forward pass (2GiB, 512M, bytes)")
      ->capture_default_str();
  c->add_option("--seed", a->seed, "seed of the synthetic images and of the --count subset")
      ->capture_default_str();
  c->add_option("--device", a->device, "auto, cpu, cuda or cuda:N")->capture_default_str();
  c->add_option("--out", a->out, "output folder (created)")->required();
  c->callback([a, c] {
    a->count_set = c->get_option("--count")->count() > 0;
    run_features(*a);
  });
}

}  // namespace fovea::tools
