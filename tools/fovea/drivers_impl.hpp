// tools/fovea/drivers_impl.hpp: the bodies of the experiment drivers (drivers.hpp), templated on the
// ResNet backbone; included only by drivers_resnet*.cpp, each instantiating one architecture.
#pragma once

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <span>
#include <sstream>
#include <string>
#include <tuple>
#include <unordered_set>
#include <vector>

#include "drivers.hpp"
#include "fovea/analysis/attribution.hpp"
#include "fovea/analysis/features.hpp"
#include "fovea/analysis/gradcam.hpp"
#include "fovea/analysis/lrp.hpp"
#include "fovea/analysis/randomization.hpp"
#include "fovea/analysis/saliency_scores.hpp"
#include "fovea/data/augment.hpp"
#include "fovea/data/cache.hpp"
#include "fovea/data/corruptions.hpp"
#include "fovea/data/dataset.hpp"
#include "fovea/data/fundus.hpp"
#include "fovea/data/split.hpp"
#include "fovea/eval/metrics.hpp"
#include "fovea/fovea.hpp"
#include "fovea/io/atomic_file.hpp"
#include "fovea/io/folder_lock.hpp"
#include "fovea/io/safetensors.hpp"
#include "fovea/io/svg_plot.hpp"
#include "fovea/models/resnet.hpp"
#include "fovea/nn/summary.hpp"
#include "fovea/nn/weights.hpp"
#include "fovea/optim/optim.hpp"
#include "fovea/train/sources.hpp"
#include "fovea/train/trainer.hpp"

#ifndef FOVEA_GIT_REVISION
#define FOVEA_GIT_REVISION "unknown"
#endif

namespace fovea::tools::drivers {

namespace fs = std::filesystem;
using nlohmann::json;

inline Device resolve_device(const std::string& text) {
  if (text == "auto") return cuda_available() ? Device::cuda(0) : Device::cpu();
  const Device d = Device::parse(text);
  require_device(d);
  return d;
}

inline ChannelStats stats_for(const std::string& name) {
  if (name == "dr") return kDrStats;
  if (name == "imagenet") return kImageNetStats;
  FOVEA_FAIL("--normalization must be dr or imagenet, got '", name, "'");
}

// The side the loader decodes to, so the test transform's centre crop (0.875) gives `size` (256 -> 224).
inline int decode_size(int size) { return static_cast<int>(std::lround(size / 0.875)); }

// Settings a resumed run may change without changing what it computes (where it runs, how it logs).
inline bool resume_may_change(const std::string& key) {
  return key == "device" || key == "threads" || key == "log_every" || key == "checkpoint_every" || key == "out" ||
         key == "command";
}

// The settings that differ between an earlier run's config and this one's (one line each), ignoring
// those a resumed run may change; empty when they agree.
inline std::string config_difference(const json& before, const json& now) {
  std::string diff;
  for (const auto& [key, value] : now.items()) {
    if (resume_may_change(key)) continue;
    const json old = before.contains(key) ? before[key] : json();
    if (old != value) diff += "\n  " + key + ": " + old.dump() + " before, " + value.dump() + " now";
  }
  for (const auto& [key, value] : before.items())
    if (!resume_may_change(key) && !now.contains(key)) diff += "\n  " + key + ": " + value.dump() + " before, unset now";
  return diff;
}

inline std::string refuse_resume_hint() {
  return "\nrerun with the same settings, or pass --no-resume (or another --out) to start over";
}

// Refuses to resume from a checkpoint written with other settings: continuing would silently mix
// two experiments (another schedule, data set or model). Names every differing setting.
inline std::function<void(const train::Checkpoint&)> resume_guard(const json& config) {
  return [config](const train::Checkpoint& c) {
    auto it = c.metadata.find("fovea.config");
    if (it == c.metadata.end()) return;
    json before;
    try {
      before = json::parse(it->second);
    } catch (const std::exception& e) {
      FOVEA_FAIL("checkpoint ", c.path.string(), ": its fovea.config metadata is not JSON (", e.what(), ")");
    }
    const std::string diff = config_difference(before, config);
    FOVEA_CHECK(diff.empty(), "cannot resume from ", c.path.string(), ": it was written with other settings:", diff,
                refuse_resume_hint());
  };
}

// Sets the process-wide math settings (ops/blas.hpp) from --deterministic / --no-tf32.
inline void apply_math_settings(const RunArgs& a) {
  math_settings().deterministic = a.deterministic;
  math_settings().allow_tf32 = a.tf32;
}

// The run's folder: config.json (resolved settings), environment.json, log.txt.
class RunDir {
 public:
  RunDir(const RunArgs& a, const std::string& command, json config, Device device) : root_(a.out) {
    FOVEA_CHECK(!a.out.empty(), "--out is required");
    // One process per run folder: a second run into the same --out is refused before it writes
    // anything there (io/folder_lock.hpp).
    lock_ = io::FolderLock(root_, "fovea " + command);
    config["command"] = command;
    // A run that would resume checks its settings before anything in the folder is rewritten.
    if (a.resume && fs::exists(root_ / "checkpoints" / "latest") && fs::exists(root_ / "config.json")) {
      json before;
      try {
        std::ifstream in(root_ / "config.json");
        before = json::parse(in);
      } catch (const std::exception& e) {
        FOVEA_FAIL((root_ / "config.json").string(), " is not valid JSON (", e.what(), "); pass --no-resume to start over");
      }
      const std::string diff = config_difference(before, config);
      FOVEA_CHECK(diff.empty(), "cannot resume the run in ", root_.string(), ": its config.json has other settings:",
                  diff, refuse_resume_hint());
    }
    fs::create_directories(root_);
    io::write_file_atomically(root_ / "config.json", config.dump(2) + "\n");
    apply_math_settings(a);
    json env{
        {"backend", backend_summary()},
        {"device", device.str()},
        {"cpu_threads", cpu_threads()},
        {"cpu_gemm", cpu::gemm_kernel()},
        {"cpu_conv", cpu::conv_kernel()},
        // OpenBLAS's idle spin (log2 cycles; cpu::restart_with_short_blas_spin sets 12): speed only.
        {"openblas_thread_timeout", std::getenv("OPENBLAS_THREAD_TIMEOUT") != nullptr
                                        ? json(std::getenv("OPENBLAS_THREAD_TIMEOUT"))
                                        : json(nullptr)},
        {"gpu_math",
         json{{"tf32", math_settings().allow_tf32}, {"deterministic", math_settings().deterministic}}},
        {"git_revision", FOVEA_GIT_REVISION},
        {"seed", a.seed},
        {"fovea_version", std::to_string(FOVEA_VERSION_MAJOR) + "." + std::to_string(FOVEA_VERSION_MINOR) +
                              "." + std::to_string(FOVEA_VERSION_PATCH)}};
    io::write_file_atomically(root_ / "environment.json", env.dump(2) + "\n");
    log(command + ": " + backend_summary() + "; " + std::to_string(cpu_threads()) +
        " CPU threads for the CPU ops (FOVEA_CPU_THREADS); CPU GEMM: " + cpu::gemm_kernel() +
        "; CPU convolutions: " + cpu::conv_kernel());
  }
  void log(const std::string& line) {
    std::cout << line << std::endl;
    std::ofstream(root_ / "log.txt", std::ios::app) << line << "\n";
  }
  const fs::path& root() const { return root_; }

 private:
  fs::path root_;
  io::FolderLock lock_;  // held while the driver runs
};

inline json common_config(const RunArgs& a) {
  json c{{"data", a.data},
         {"labels", a.labels},
         {"arch", a.arch},
         {"out", a.out},
         {"device", a.device},
         {"normalization", a.normalization},
         {"size", a.size},
         {"width", a.width},
         {"small_stem", a.small_stem},
         {"epochs", a.epochs},
         {"batch_size", a.batch_size},
         {"lr", a.lr},
         {"weight_decay", a.weight_decay},
         {"warmup_epochs", a.warmup_epochs},
         {"seed", a.seed},
         {"threads", a.threads},
         {"log_every", a.log_every},
         {"checkpoint_every", a.checkpoint_every}};
  // The GPU math settings only when they differ from the defaults, so that runs started before the
  // flags existed still resume (a run started with one of them resumes only with it).
  if (a.deterministic) c["deterministic"] = true;
  if (!a.tf32) c["tf32"] = false;
  if (a.skip_bad_images) c["skip_bad_images"] = true;  // the same: only when set
  if (!a.image_cache.empty()) c["image_cache"] = a.image_cache;  // 8-bit inputs: part of the computation
  if (a.preprocess != "resize") c["preprocess"] = a.preprocess;   // only when set: older runs still resume
  return c;
}

inline models::ResNetConfig resnet_config(const RunArgs& a, int classes) {
  return models::ResNetConfig{.num_classes = classes, .width = a.width, .small_stem = a.small_stem};
}

// What the loader decodes each image to (--preprocess at the decode side): data::fundus_settings.
inline data::FundusPreprocess decode_settings(const RunArgs& a) {
  return data::fundus_settings(data::parse_fundus_mode(a.preprocess), decode_size(a.size));
}

// The disk cache of --image-cache for one decode setting (side, --preprocess): one per (folder,
// settings) for the process (a study's stages share it), living as long as the process, as the
// loaders that use it need. The settings enter every file's key (data/cache.hpp), so caches of
// several sides and modes can share a folder.
inline data::CachedPreprocessor& image_cache(const std::string& dir, const data::FundusPreprocess& settings) {
  static std::mutex mutex;
  static std::map<std::tuple<std::string, int, bool, bool>, std::unique_ptr<data::CachedPreprocessor>> caches;
  const std::lock_guard<std::mutex> lock(mutex);
  auto& c = caches[{dir, settings.size, settings.crop_to_fov, settings.ben_graham}];
  if (!c) c = std::make_unique<data::CachedPreprocessor>(dir, settings);
  return *c;
}

// The loader's options; its decode function: the --image-cache's, or preprocess_fundus for --preprocess
// fov and graham, or (resize) the loader's default resize decoder.
inline data::LoaderOptions loader_options(const RunArgs& a, bool drop_last) {
  data::LoaderOptions o;
  o.batch_size = static_cast<std::size_t>(a.batch_size);
  o.drop_last = drop_last;
  o.image_size = decode_size(a.size);
  o.threads = a.threads;
  const data::FundusPreprocess settings = decode_settings(a);
  if (!a.image_cache.empty()) o.decode = image_cache(a.image_cache, settings).decoder();
  else if (settings.crop_to_fov) o.decode = data::fundus_decoder(settings);
  return o;
}

// "image cache DIR: H hits, M misses (R rebuilt)" for the run's log.
inline std::string image_cache_line(const RunArgs& a) {
  const data::PreprocessCacheStats st = image_cache(a.image_cache, decode_settings(a)).stats();
  return "image cache " + a.image_cache + ": " + std::to_string(st.hits) + " hits, " +
         std::to_string(st.misses) + " misses (" + std::to_string(st.rebuilt) +
         " of them rebuilt stale or damaged files)";
}

// A per-batch transform of the decoded images on the target device, before the test transform
// (train::LoaderSourceOptions::before_augment).
using BatchTransform = std::function<void(CView, std::span<const std::int64_t>, View)>;

// Calls f(images) for the batches of d in data set order, through the test transform, with `net` in
// evaluation mode (back in training mode afterwards). decode: the loader's decode function (empty: the
// default resize decoder); before: a transform of each decoded batch on `device` (empty: none).
template <class Net, class F>
void for_each_test_batch(Net& net, const data::Dataset& d, const RunArgs& a, Device device, F&& f,
                         data::DecodeFn decode = {}, BatchTransform before = {}) {
  train::LoaderSourceOptions so;
  so.augment = data::test_transform(a.size, stats_for(a.normalization));
  so.device = device;
  so.before_augment = std::move(before);
  data::LoaderOptions lo = loader_options(a, false);
  if (decode) lo.decode = std::move(decode);  // else the default or --image-cache decoder
  train::LoaderSource source(d, data::Sampler::sequential(d.size()), lo, so);
  net.set_training(false);
  source.start_epoch(0, 0);
  train::Batch b;
  while (source.next(b)) f(CView(b.images));
  net.set_training(true);
}

// Class probabilities (N x K, row-major, in data set order) of a classifier in evaluation mode.
template <class Net>
std::vector<double> predict_probabilities(Net& net, const data::Dataset& d, const RunArgs& a, Device device,
                                          data::DecodeFn decode = {}, BatchTransform before = {}) {
  std::vector<double> probs;
  Tensor p;
  for_each_test_batch(
      net, d, a, device,
      [&](CView images) {
        CView logits = net.forward(images);
        train::detail::ensure(p, logits.shape(), device);
        softmax_forward(logits, p);
        for (float v : p.to_vector()) probs.push_back(static_cast<double>(v));
      },
      std::move(decode), std::move(before));
  return probs;
}

// evaluation.svg (the referable-DR ROC curve with the 0.5 and Youden operating points, and the
// top-label reliability diagram) and confusion.svg (the confusion matrix, rows normalised: each
// true grade's share predicted as each grade).
inline void write_evaluation_figures(const fs::path& dir, std::span<const int> labels,
                                     std::span<const double> probs, int classes, int threshold,
                                     const eval::MetricReport& r) {
  char title[160];
  std::vector<io::LineChart> panels;
  const std::vector<int> binary = eval::referable(labels, threshold);
  const std::vector<double> score = eval::referable_score(probs, classes, threshold);
  if (r.referable_positives > 0 && r.referable_negatives > 0) {
    io::LineChart roc;
    std::snprintf(title, sizeof title, "referable (grade >= %d): AUC %.3f [%.3f, %.3f]", threshold,
                  r.referable_auc.point, r.referable_auc.low, r.referable_auc.high);
    roc.title = title;
    roc.x_label = "1 - specificity";
    roc.y_label = "sensitivity";
    roc.width = 460, roc.height = 400;
    roc.y_min = 0.0, roc.y_max = 1.0;
    io::PlotSeries curve;
    curve.label = "ROC", curve.markers = false;
    curve.x = {0.0}, curve.y = {0.0};
    for (const eval::OperatingPoint& p : eval::detail::operating_points(binary, score))
      curve.x.push_back(1.0 - p.specificity), curve.y.push_back(p.sensitivity);
    io::PlotSeries chance;
    chance.label = "chance", chance.dashed = true, chance.markers = false;
    chance.x = {0.0, 1.0}, chance.y = {0.0, 1.0};
    auto point = [](const char* label, const eval::OperatingPoint& p) {
      io::PlotSeries s;
      s.label = label, s.line = false;
      s.x = {1.0 - p.specificity}, s.y = {p.sensitivity};
      return s;
    };
    roc.series = {curve, chance, point("score >= 0.5", r.referable_at_half.point),
                  point("Youden", r.referable_youden.point)};
    panels.push_back(std::move(roc));
  }
  {
    io::LineChart rel;
    std::snprintf(title, sizeof title, "reliability (top label), ECE %.3f [%.3f, %.3f]", r.ece.point,
                  r.ece.low, r.ece.high);
    rel.title = title;
    rel.x_label = "confidence";
    rel.y_label = "accuracy";
    rel.width = 460, rel.height = 400;
    rel.y_min = 0.0, rel.y_max = 1.0;
    const eval::TopLabelOutcomes t = eval::top_label_outcomes(probs, labels, classes);
    const eval::CalibrationBins bins = eval::calibration_bins(t.confidence, t.correct, r.calibration_bins);
    io::PlotSeries acc;
    acc.label = "accuracy per bin";
    for (std::size_t b = 0; b < bins.count.size(); ++b)
      if (bins.count[b] > 0)
        acc.x.push_back(bins.confidence[b] / bins.count[b]), acc.y.push_back(bins.hits[b] / bins.count[b]);
    io::PlotSeries ideal;
    ideal.label = "perfect calibration", ideal.dashed = true, ideal.markers = false;
    ideal.x = {0.0, 1.0}, ideal.y = {0.0, 1.0};
    rel.series = {acc, ideal};
    panels.push_back(std::move(rel));
  }
  io::write_file_atomically(dir / "evaluation.svg", io::chart_grid_svg(panels, 2, "evaluation"));
  io::Heatmap cm;
  cm.title = "confusion matrix (rows: true grade, each row sums to 1)";
  cm.scale_label = "share";
  cm.cell = 48;
  for (int k = 0; k < classes; ++k) {
    cm.row_labels.push_back("true " + std::to_string(k));
    cm.column_labels.push_back("pred " + std::to_string(k));
    double total = 0;
    for (int j = 0; j < classes; ++j)
      total += static_cast<double>(r.confusion[static_cast<std::size_t>(k * classes + j)]);
    std::vector<double> row;
    for (int j = 0; j < classes; ++j)
      row.push_back(total > 0
                        ? static_cast<double>(r.confusion[static_cast<std::size_t>(k * classes + j)]) / total
                        : eval::kNaN);
    cm.values.push_back(row);
  }
  io::write_file_atomically(dir / "confusion.svg", io::heatmap_svg(cm));
}

// results.json and predictions.csv for a labelled set.
// results.json, predictions.csv and the figures; `excluded`: label-file rows the format left out
// (Messidor-2's ungradable images), recorded in results.json as excluded_rows when there are any.
// `as_binary`: the binary scheme a graded classifier's probabilities were collapsed to (evaluate
// --as-binary), recorded in results.json as as_binary when set.
inline eval::MetricReport write_evaluation(const fs::path& dir, const data::Dataset& d,
                                           const std::vector<double>& probs, int classes,
                                           int referable_threshold, int resamples, std::uint64_t seed,
                                           std::size_t excluded = 0, const std::string& as_binary = "") {
  const std::vector<int> labels = d.labels();
  for (std::size_t i = 0; i < labels.size(); ++i)
    FOVEA_CHECK(labels[i] >= 0 && labels[i] < classes, "evaluate: image '", d.samples[i].id, "' has label ",
                labels[i], " outside 0..", classes - 1);
  const int threshold = classes == 2 ? 1 : referable_threshold;
  eval::MetricReport r = eval::evaluate_predictions(labels, probs, threshold, resamples, seed);
  std::string report = eval::to_json(r);  // one object: the key goes before its closing brace
  if (excluded > 0) report.insert(report.size() - 1, ",\"excluded_rows\":" + std::to_string(excluded));
  if (!as_binary.empty()) report.insert(report.size() - 1, ",\"as_binary\":" + json(as_binary).dump());
  io::write_file_atomically(dir / "results.json", report + "\n");
  std::ostringstream csv;
  csv << "image,label,pred";
  for (int k = 0; k < classes; ++k) csv << ",p" << k;
  csv << "\n";
  for (std::size_t i = 0; i < labels.size(); ++i) {
    int best = 0;
    for (int k = 1; k < classes; ++k)
      if (probs[i * classes + k] > probs[i * classes + best]) best = k;
    csv << data::csv_field(d.samples[i].id) << ',' << labels[i] << ',' << best;
    for (int k = 0; k < classes; ++k) {  // the fp32 softmax output, in its shortest exact form
      char buf[32];
      const auto res = std::to_chars(buf, buf + sizeof buf, static_cast<float>(probs[i * classes + k]));
      csv << ',' << std::string_view(buf, static_cast<std::size_t>(res.ptr - buf));
    }
    csv << "\n";
  }
  io::write_file_atomically(dir / "predictions.csv", csv.str());
  write_evaluation_figures(dir, labels, probs, classes, threshold, r);
  return r;
}

inline std::string ci(const eval::ConfidenceInterval& c) {
  char buf[96];
  std::snprintf(buf, sizeof buf, "%.3f [%.3f, %.3f]", c.point, c.low, c.high);
  return buf;
}

// Backbone features (N x F, row-major, in data set order) of `net`'s backbone in evaluation mode, the
// images through the test transform.
template <class Net>
std::vector<float> backbone_features(Net& net, const data::Dataset& d, const RunArgs& a, Device device) {
  std::vector<float> out;
  for_each_test_batch(net, d, a, device, [&](CView images) {
    const CView f = net.backbone().forward(images);
    const std::size_t at = out.size();
    out.resize(at + static_cast<std::size_t>(f.shape().numel()));
    copy(f, View(out.data() + at, f.shape(), Device::cpu()));
  });
  return out;
}

// The kNN monitor of pretraining (docs/features.md): the graded images split by patient into a bank
// (70 %) and queries (30 %); after every `every` epochs (and the last) the backbone's features of both
// go into a weighted kNN classifier (k = 20, temperature 0.07, cosine similarity) and its accuracy on
// the queries is logged as a `val` row, `knn_top1`. Off when `every` is 0, or when an image has no
// grade or either part would be empty.
struct KnnMonitor {
  data::Dataset bank, queries;
  std::int64_t every = 0;
  int classes = 0;
  bool enabled() const { return every > 0; }
};

inline KnnMonitor knn_monitor(const data::Dataset& d, std::int64_t every, std::uint64_t seed, RunDir& run) {
  KnnMonitor m;
  if (every <= 0) return m;
  for (const auto& s : d.samples)
    if (s.label < 0) {
      run.log("pretrain: kNN monitor off (image '" + s.id + "' has no grade)");
      return m;
    }
  const data::DatasetSplits split = data::split_dataset(d, {0.3, 0.0}, seed);
  if (split.train.size() == 0 || split.validation.size() == 0) {
    run.log("pretrain: kNN monitor off (too few patients for a bank and queries)");
    return m;
  }
  m.bank = split.train;
  m.queries = split.validation;
  m.every = every;
  for (const auto& s : d.samples) m.classes = std::max(m.classes, s.label + 1);
  // What the accuracy is to be read against: always answering the queries' most common grade.
  std::vector<std::size_t> count(static_cast<std::size_t>(m.classes), 0);
  for (int label : m.queries.labels()) ++count[static_cast<std::size_t>(label)];
  char majority[96];
  std::snprintf(majority, sizeof majority, " (answering their most common grade scores %.4f)",
                static_cast<double>(*std::max_element(count.begin(), count.end())) /
                    static_cast<double>(m.queries.size()));
  run.log("pretrain: kNN monitor every " + std::to_string(every) +
          " epoch(s): " + std::to_string(m.bank.size()) + " bank and " + std::to_string(m.queries.size()) +
          " query images" + majority);
  return m;
}

template <class Net>
double knn_accuracy_of(Net& net, const KnnMonitor& m, const RunArgs& a, Device device) {
  const std::vector<float> fb = backbone_features(net, m.bank, a, device);
  const std::vector<float> fq = backbone_features(net, m.queries, a, device);
  const auto nb = static_cast<std::int64_t>(m.bank.size()), nq = static_cast<std::int64_t>(m.queries.size());
  const std::int64_t dims = static_cast<std::int64_t>(fb.size()) / nb;
  return analysis::knn_accuracy({fb, nb, dims}, m.bank.labels(), {fq, nq, dims}, m.queries.labels(),
                                m.classes);
}

// metrics.svg beside a run's metrics.jsonl: one panel per (phase, metric), training metrics against
// the step, validation ones against the step they were logged at. Nothing when there is no file.
// One record of a run's metrics.jsonl. train::MetricsLog writes flat objects of "key":value pairs
// whose values are numbers, NaN, Infinity or -Infinity, and "phase" a string.
struct MetricsRecord {
  std::string phase;  // empty when the record has none
  double step = eval::kNaN;
  std::vector<std::pair<std::string, double>> values;  // the other keys but epoch, in file order
};
// The records of <dir>/metrics.jsonl (none when there is no file). Lines that are not a whole
// object (one cut by a crash) and string values other than the phase are skipped.
inline std::vector<MetricsRecord> read_metrics_jsonl(const fs::path& dir) {
  std::vector<MetricsRecord> records;
  std::ifstream in(dir / "metrics.jsonl");
  std::string line;
  while (std::getline(in, line)) {
    if (line.size() < 2 || line.front() != '{' || line.back() != '}') continue;
    MetricsRecord r;
    std::stringstream fields(line.substr(1, line.size() - 2));
    std::string field;
    while (std::getline(fields, field, ',')) {
      const std::size_t colon = field.find(':');
      if (colon == std::string::npos || field.size() < 2 || field.front() != '"') continue;
      const std::string key = field.substr(1, colon - 2), value = field.substr(colon + 1);
      if (key == "phase") {
        if (value.size() >= 2 && value.front() == '"' && value.back() == '"')
          r.phase = value.substr(1, value.size() - 2);
        continue;
      }
      if (!value.empty() && value.front() == '"') continue;
      double v = eval::kNaN;
      if (value == "Infinity") v = std::numeric_limits<double>::infinity();
      else if (value == "-Infinity") v = -std::numeric_limits<double>::infinity();
      else if (value != "NaN") v = std::strtod(value.c_str(), nullptr);
      if (key == "step") r.step = v;
      else if (key != "epoch") r.values.emplace_back(key, v);
    }
    records.push_back(std::move(r));
  }
  return records;
}

inline void write_metrics_svg(const fs::path& dir) {
  std::map<std::pair<std::string, std::string>, io::PlotSeries> series;  // (phase, metric)
  std::vector<std::pair<std::string, std::string>> order;
  for (const MetricsRecord& r : read_metrics_jsonl(dir)) {
    const std::string phase = r.phase.empty() ? "train" : r.phase;
    for (const auto& [key, v] : r.values) {
      const auto id = std::make_pair(phase, key);
      if (!series.count(id)) order.push_back(id);
      io::PlotSeries& s = series[id];
      s.markers = phase != "train";
      s.x.push_back(r.step);
      s.y.push_back(v);
    }
  }
  std::vector<io::LineChart> panels;
  for (const auto& id : order) {
    io::LineChart c;
    c.title = id.first + ": " + id.second;
    c.x_label = "step";
    c.width = 320, c.height = 220;
    c.series.push_back(series[id]);
    panels.push_back(std::move(c));
  }
  if (panels.empty()) return;
  io::write_file_atomically(dir / "metrics.svg", io::chart_grid_svg(panels, 3, "metrics.jsonl"));
}

// The split by patient that fovea finetune makes, and pretrain --images train makes again: `loaded`
// with its grades mapped by `scheme` (every image must have one: `who` and `why` name the run and
// the reason in the error), split into validation and test shares of the patients by `seed` and
// written to <out>/split.csv.
struct PatientSplit {
  data::Dataset all;  // every image, labels mapped by the scheme
  data::DatasetSplits splits;
};
inline PatientSplit patient_split(data::Dataset loaded, const data::LabelScheme& scheme, double val_fraction,
                                  double test_fraction, std::uint64_t seed, const std::string& out,
                                  const std::string& who, const std::string& why) {
  PatientSplit r;
  r.all = data::map_labels(std::move(loaded), scheme);
  for (const auto& s : r.all.samples)
    FOVEA_CHECK(s.label >= 0, who, ": image '", s.id, "' has no label", why);
  r.splits = data::split_dataset(r.all, {val_fraction, test_fraction}, seed);
  data::write_split(fs::path(out) / "split.csv", r.all, r.splits);
  return r;
}

// The images pretraining learns from (PretrainArgs::images). `train` makes the split exactly as
// finetune does (the same data, label scheme, fractions and seed: data::split_dataset), writes it to
// <out>/split.csv and keeps its training patients, whatever label fraction fine-tuning later uses.
inline data::Dataset pretrain_images(const PretrainArgs& a, RunDir& run) {
  FOVEA_CHECK(a.images == "all" || a.images == "train", "--images must be all or train, got '", a.images,
              "'");
  if (a.images == "all") {
    std::error_code ec;
    fs::remove(fs::path(a.out) / "split.csv", ec);  // an earlier --no-resume run's with --images train
    data::Dataset d = load_data(a);
    run.log("pretrain: " + std::to_string(d.size()) + " images from " + a.data + " (labels ignored)");
    return d;
  }
  const data::LabelScheme scheme = data::parse_label_scheme(a.label_scheme);
  data::Dataset loaded = load_data(a);
  FOVEA_CHECK(loaded.num_classes > 0, "pretrain --images train: the images of '", a.data,
              "' have no labels, and the split by patient and grade needs them (--images all pretrains on an "
              "unlabelled folder)");
  const auto [all, splits] = patient_split(
      std::move(loaded), scheme, a.val_fraction, a.test_fraction, a.seed, a.out, "pretrain --images train",
      ", and the split by patient and grade needs every image's (--images all uses them all)");
  run.log("pretrain: " + std::to_string(splits.train.size()) + " of the " + std::to_string(all.size()) +
          " images of " + a.data + ": the training patients (labels ignored; " +
          std::to_string(splits.validation.size()) + " validation and " + std::to_string(splits.test.size()) +
          " test images held out, the split fovea finetune makes with --seed " + std::to_string(a.seed) +
          ")");
  return splits.train;
}

// What the contrastive stage learned, read back from its metrics.jsonl (so a resumed run counts its
// whole history): the means over the last tenth of the logged training rows (at least 5, all when
// fewer) of the loss, the contrastive top-1 and the effective rank of the projections, next to
// their chance levels, where every similarity is equal and each row picks its positive among
// `candidates` (SimCLR: 2B - 1 other views; MoCo v2: the key and the queue): loss log(candidates),
// top-1 1 / candidates. A loss not 2 % below chance means the backbone learned next to
// nothing, and fine-tuning from it is random initialisation moved by the pretraining's steps:
// the log says so. Written to <out>/pretrain.json.
inline json pretrain_check(const PretrainArgs& a, RunDir& run, std::int64_t candidates, std::int64_t steps) {
  std::vector<std::map<std::string, double>> rows;
  for (const MetricsRecord& r : read_metrics_jsonl(a.out))
    if (r.phase == "train") rows.emplace_back(r.values.begin(), r.values.end());
  const std::size_t n = std::min(rows.size(), std::max<std::size_t>(5, rows.size() / 10));
  const auto mean = [&](const char* key) -> json {
    double sum = 0.0;
    std::size_t count = 0;
    for (std::size_t i = rows.size() - n; i < rows.size(); ++i)
      if (const auto it = rows[i].find(key); it != rows[i].end() && std::isfinite(it->second))
        sum += it->second, ++count;
    return count > 0 ? json(sum / static_cast<double>(count)) : json(nullptr);
  };
  const double chance_loss = std::log(static_cast<double>(std::max<std::int64_t>(candidates, 1)));
  const json loss = mean("loss");
  const bool left = loss.is_number() && loss.get<double>() < 0.98 * chance_loss;
  json check{{"method", a.method},
             {"steps", steps},
             {"rows", n},
             {"loss", loss},
             {"contrastive_top1", mean("contrastive_top1")},
             {"effective_rank", mean("effective_rank")},
             {"uniformity", mean("uniformity")},
             {"candidates", candidates},
             {"chance_loss", chance_loss},
             {"chance_top1", 1.0 / static_cast<double>(std::max<std::int64_t>(candidates, 1))},
             {"left_chance", left}};
  io::write_file_atomically(fs::path(a.out) / "pretrain.json", check.dump(2) + "\n");
  if (loss.is_number() && !left) {
    char line[512];
    std::snprintf(
        line, sizeof line,
        "pretrain: warning: the loss of the last %zu logged steps, %.4f, has not fallen 2 %% below "
        "chance (log %lld = %.4f, every similarity equal): the backbone has learned next to nothing, and "
        "fine-tuning from it will be close to random initialisation (on fundus images the usual cause is "
        "the method's colour jitter: try --augment fundus; else more steps or larger batches; "
        "docs/augmentations.md)",
        n, loss.get<double>(), static_cast<long long>(candidates), chance_loss);
    run.log(line);
  }
  return check;
}

template <class Backbone>
int pretrain(const PretrainArgs& a) {
  const Device device = resolve_device(a.device);
  FOVEA_CHECK(a.method == "simclr" || a.method == "moco", "--method must be simclr or moco, got '", a.method, "'");
  json config = common_config(a);
  config.update(json{{"method", a.method},
                     {"init", a.init},
                     {"temperature", a.temperature},
                     {"proj_hidden", a.hidden},
                     {"proj_dim", a.dim},
                     {"queue", a.queue},
                     {"key_momentum", a.key_momentum},
                     {"knn_every", a.knn_every}});
  // The two views' augmentation: the method's preset, or --augment (a preset and/or key=value
  // changes of it); config.json records it when it differs from the method's, so that a resume
  // with other augmentations is refused.
  const bool simclr = a.method == "simclr";
  const data::AugmentConfig method_augment = simclr ? data::simclr(a.size, stats_for(a.normalization))
                                                    : data::moco_v2(a.size, stats_for(a.normalization));
  const data::AugmentConfig augment =
      a.augment.empty() ? method_augment : data::parse_augment(a.augment, method_augment);
  const std::string augment_text = data::describe_augment(augment);
  if (augment_text != data::describe_augment(method_augment)) config["augment"] = augment_text;
  if (a.images != "all")
    config.update(json{{"images", a.images},
                       {"val_fraction", a.val_fraction},
                       {"test_fraction", a.test_fraction},
                       {"label_scheme", a.label_scheme}});
  RunDir run(a, "pretrain", config, device);
  data::Dataset d = pretrain_images(a, run);
  const KnnMonitor knn = knn_monitor(d, a.knn_every, a.seed, run);
  const auto cfg = resnet_config(a, 1);
  const int features = Backbone::features(cfg);
  const int hidden = a.hidden > 0 ? a.hidden : features;
  using Net = models::ContrastiveModel<Backbone>;
  const Shape in{a.batch_size * (simclr ? 2 : 1), 3, a.size, a.size};
  Net net(cfg, hidden, a.dim);
  net.setup(in, device);
  nn::initialize(net, a.seed);
  if (!a.init.empty()) {
    auto report = nn::load_weights(net.backbone(), a.init, {.mode = nn::LoadMode::partial});
    run.log("init: " + a.init + ": " + std::to_string(report.loaded.size()) + " tensors loaded");
    if (const std::string note = preprocess_mismatch("pretrain", a.init, a.preprocess); !note.empty())
      run.log(note);
  }
  train::LoaderSourceOptions so;
  so.mode = train::SourceMode::two_view;
  so.augment = augment;
  run.log("pretrain: augmentation " +
          (a.augment.empty() ? std::string(simclr ? "simclr" : "moco_v2") : a.augment) + " (" + augment_text +
          ")");
  so.augment_seed = a.seed;
  so.device = device;
  FOVEA_CHECK(d.size() >= static_cast<std::size_t>(a.batch_size), "pretrain: ", d.size(), " images is fewer than one batch of ",
              a.batch_size);
  train::LoaderSource source(d, data::Sampler::shuffled(d.size(), a.seed), loader_options(a, true), so);
  const std::int64_t steps = source.batches_per_epoch();
  train::TrainerOptions to{.epochs = a.epochs, .out_dir = a.out, .log_every = a.log_every,
                           .checkpoint_every = a.checkpoint_every, .resume = a.resume,
                           .metadata = {{"fovea.config", config.dump()}}, .on_resume = resume_guard(config)};
  const auto epoch_end = [&](std::int64_t epoch, std::int64_t step, train::MetricsLog& log) {
    if (!knn.enabled() || ((epoch + 1) % knn.every != 0 && epoch + 1 != a.epochs)) return;
    const double acc = knn_accuracy_of(net, knn, a, device);
    log.log(train::MetricsRow{step, epoch, "val", {{"knn_top1", acc}}});
    run.log("pretrain: epoch " + std::to_string(epoch + 1) + " kNN accuracy " + std::to_string(acc));
  };
  if (simclr) {
    train::SimClrTask task(net, device, {.temperature = a.temperature > 0 ? a.temperature : 0.5f});
    // SimCLR's small-batch rule: 0.075 * sqrt(B) (the linear 0.3 * B / 256 is for B >= 1024).
    const float lr = a.lr > 0 ? a.lr : optim::scaled_lr(0.075f, a.batch_size, optim::LrScaling::sqrt);
    optim::Optimizer<optim::Lars> opt(task.trainable_parameters(),
                                      optim::LarsOptions{.weight_decay = a.weight_decay >= 0 ? a.weight_decay : 1e-6f});
    const auto warm = a.warmup_epochs >= 0 ? a.warmup_epochs : std::min<std::int64_t>(10, a.epochs / 10);
    train::Trainer trainer(task, opt, optim::WarmupCosineLr::from_epochs(lr, warm, a.epochs, steps), to);
    const auto r = trainer.fit(source, epoch_end);
    run.log("pretrain: done, " + std::to_string(r.position.step) + " steps, last loss " + std::to_string(r.last_loss));
    pretrain_check(a, run, 2 * a.batch_size - 1, r.position.step);
  } else {
    const auto images = static_cast<std::int64_t>(d.size());
    const std::int64_t queue = a.queue > 0 ? a.queue : moco_queue_for(images, a.batch_size);
    if (a.queue == 0)
      run.log("pretrain: MoCo queue of " + std::to_string(queue) + " keys (sized to the data set)");
    if (queue > images / 2)
      run.log("pretrain: warning: the MoCo queue (" + std::to_string(queue) +
              " keys) is more than half the " + std::to_string(images) +
              " images: it fills with earlier keys of this step's own images, which " +
              "then count as negatives (MoCo v2 on ImageNet keeps 65,536 of 1.28 M); consider --queue " +
              std::to_string(moco_queue_for(images, a.batch_size)) + " or --queue 0 (sized to the data set)");
    Net key(cfg, hidden, a.dim);
    key.setup(in, device);
    train::MocoTask task(net, key, device, a.dim,
                         {.temperature = a.temperature > 0 ? a.temperature : 0.2f,
                          .momentum = a.key_momentum,
                          .queue_size = queue,
                          .seed = a.seed});
    const float lr = a.lr > 0 ? a.lr : 0.03f;
    optim::Optimizer<optim::Sgd> opt(task.trainable_parameters(),
                                     optim::SgdOptions{.momentum = 0.9f, .weight_decay = a.weight_decay >= 0 ? a.weight_decay : 1e-4f});
    train::Trainer trainer(task, opt, optim::WarmupCosineLr::from_epochs(lr, 0, a.epochs, steps), to);
    const auto r = trainer.fit(source, epoch_end);
    run.log("pretrain: done, " + std::to_string(r.position.step) + " steps, last loss " + std::to_string(r.last_loss));
    pretrain_check(a, run, queue + 1, r.position.step);
  }
  write_metrics_svg(a.out);
  if (!a.image_cache.empty()) run.log(image_cache_line(a));
  // What it learned from, so that fine-tuning can tell which of its held-out images it saw
  // (pretraining_overlap_note): the data folder, the label file read, --images and the split.
  io::SafeTensorsMetadata meta{
      {"fovea.arch", a.arch},
      {"fovea.method", a.method},
      {"fovea.preprocess", a.preprocess},
      {"fovea.pretrain_data", fs::absolute(a.data).string()},
      {"fovea.pretrain_labels", d.labels_file.empty() ? std::string() : fs::absolute(d.labels_file).string()},
      {"fovea.pretrain_images", a.images},
      {"fovea.pretrain_augment", augment_text}};
  if (a.images == "train")
    meta["fovea.pretrain_split"] = json{
        {"seed", a.seed},
        {"val_fraction", a.val_fraction},
        {"test_fraction", a.test_fraction},
        {"label_scheme",
         a.label_scheme}}.dump();
  nn::save_weights(net.backbone(), fs::path(a.out) / "backbone.safetensors", meta);
  run.log("pretrain: backbone weights (torchvision keys) in " + (fs::path(a.out) / "backbone.safetensors").string());
  return 0;
}

// Cross-entropy class weights from --class-weights: none (empty), inverse (n / (K n_k), the
// "balanced" weights of scikit-learn, from the training labels) or K comma-separated values.
inline std::vector<float> class_weights_for(const std::string& text, const std::vector<int>& labels, int classes) {
  if (text == "none" || text.empty()) return {};
  std::vector<float> w;
  if (text == "inverse") {
    std::vector<double> count(static_cast<std::size_t>(classes), 0.0);
    for (int l : labels) count[static_cast<std::size_t>(l)] += 1.0;
    for (int k = 0; k < classes; ++k) {
      FOVEA_CHECK(count[static_cast<std::size_t>(k)] > 0, "--class-weights inverse: class ", k,
                  " has no training image (use explicit weights or another label scheme)");
      w.push_back(static_cast<float>(static_cast<double>(labels.size()) / (classes * count[static_cast<std::size_t>(k)])));
    }
    return w;
  }
  std::stringstream in(text);
  std::string item;
  while (std::getline(in, item, ',')) {
    std::size_t used = 0;
    float v = 0;
    try {
      v = std::stof(item, &used);
    } catch (...) {
      used = 0;
    }
    FOVEA_CHECK(used > 0 && used == item.size() && std::isfinite(v) && v >= 0, "--class-weights: '", item,
                "' is not a non-negative number (expected none, inverse or w0,w1,...)");
    w.push_back(v);
  }
  FOVEA_CHECK(static_cast<int>(w.size()) == classes, "--class-weights: ", w.size(), " weights for ", classes,
              " classes");
  return w;
}

// A note for fine-tuning's log when its --init weights were pretrained (fovea pretrain) on images
// that are in this run's validation or test split: their fovea.pretrain_* metadata name the data, the
// label file and the images (all, or the training patients of a split, which is made again here);
// empty when none of them is, or when the weights do not say (torchvision weights, older runs).
// `loaded`: this run's images with their grades, before its label scheme.
inline std::string pretraining_overlap_note(const FinetuneArgs& a, const data::Dataset& loaded,
                                            const data::DatasetSplits& splits) {
  const auto meta = weights_metadata(a.init);
  const auto field = [&](const char* key) {
    const auto it = meta.find(key);
    return it == meta.end() ? std::string() : it->second;
  };
  const std::string images = field("fovea.pretrain_images"), data_dir = field("fovea.pretrain_data");
  if (images.empty() || data_dir.empty()) return "";
  const auto canonical = [](const fs::path& p) {
    std::error_code ec;
    fs::path c = fs::weakly_canonical(p, ec);
    return ec ? fs::absolute(p).lexically_normal().string() : c.string();
  };
  const auto same_file = [&](const std::string& x, const std::string& y) {
    return x.empty() || y.empty() ? x.empty() && y.empty() : canonical(x) == canonical(y);
  };
  std::unordered_set<std::string> seen;
  try {
    data::Dataset pre;
    if (same_file(data_dir, a.data) && same_file(field("fovea.pretrain_labels"), loaded.labels_file)) {
      pre = loaded;  // the same images, with the same ones dropped by --skip-bad-images
    } else {
      PretrainArgs p;
      p.data = data_dir, p.labels = field("fovea.pretrain_labels"), p.skip_bad_images = true;
      pre = read_data(p);
    }
    if (images == "train") {
      const json s = json::parse(field("fovea.pretrain_split"));
      pre = data::split_dataset(
                data::map_labels(pre, data::parse_label_scheme(s.at("label_scheme").get<std::string>())),
                {s.at("val_fraction").get<double>(), s.at("test_fraction").get<double>()},
                s.at("seed").get<std::uint64_t>())
                .train;
    }
    for (const auto& sample : pre.samples) seen.insert(canonical(sample.path));
  } catch (const std::exception& e) {
    return "finetune: note: could not check which images " + a.init + " was pretrained on (" + e.what() + ")";
  }
  const auto count = [&](const data::Dataset& d) {
    std::size_t n = 0;
    for (const auto& sample : d.samples) n += seen.count(canonical(sample.path));
    return n;
  };
  const std::size_t test = count(splits.test), validation = count(splits.validation);
  if (test + validation == 0) return "";
  return "finetune: note: " + a.init + " was pretrained on " + std::to_string(test) + " of the " +
         std::to_string(splits.test.size()) + " test and " + std::to_string(validation) + " of the " +
         std::to_string(splits.validation.size()) + " validation images of this split (" +
         (images == "train" ? "the training patients of another split" : "fovea pretrain --images all") +
         "; their photographs, not their grades), so its test is transductive; fovea pretrain --images train "
         "with this run's --seed, --val-fraction, --test-fraction and --label-scheme holds them out";
}

template <class Backbone>
int finetune(const FinetuneArgs& a) {
  const Device device = resolve_device(a.device);
  json config = common_config(a);
  config.update(json{{"init", a.init}, {"linear", a.linear}, {"label_fraction", a.label_fraction},
                     {"label_scheme", a.label_scheme}, {"val_fraction", a.val_fraction}, {"test_fraction", a.test_fraction},
                     {"sampler", a.sampler}, {"class_weights", a.class_weights}, {"label_smoothing", a.label_smoothing}});
  RunDir run(a, "finetune", config, device);
  const data::LabelScheme scheme = data::parse_label_scheme(a.label_scheme);
  const data::Dataset loaded = load_labelled_data(a, "finetune");
  const auto [all, splits] = patient_split(loaded, scheme, a.val_fraction, a.test_fraction, a.seed, a.out,
                                           "finetune", " (every image needs a grade)");
  const data::Dataset train_set = a.label_fraction < 1.0 ? data::subsample(splits.train, a.label_fraction, a.seed) : splits.train;
  run.log("finetune: " + std::to_string(train_set.size()) + " training, " + std::to_string(splits.validation.size()) +
          " validation, " + std::to_string(splits.test.size()) + " test images (split by patient; " + scheme.name() + ")");
  FOVEA_CHECK(train_set.size() >= static_cast<std::size_t>(a.batch_size), "finetune: ", train_set.size(),
              " training images is fewer than one batch of ", a.batch_size);
  const int classes = scheme.num_classes();
  using Net = models::Classifier<Backbone>;
  Net net(resnet_config(a, classes));
  net.setup(Shape{a.batch_size, 3, a.size, a.size}, device);
  nn::initialize(net, a.seed);
  if (a.init != "random") {
    FOVEA_CHECK(fs::exists(a.init), "--init: weights file '", a.init, "' does not exist");
    auto report = nn::load_weights(net, a.init, {.mode = nn::LoadMode::partial});
    run.log("init: " + a.init + ": " + std::to_string(report.loaded.size()) + " tensors loaded, " +
            std::to_string(report.missing.size()) + " kept from initialisation (the head)");
    if (const std::string note = preprocess_mismatch("finetune", a.init, a.preprocess); !note.empty())
      run.log(note);
    if (const std::string note = pretraining_overlap_note(a, loaded, splits); !note.empty()) run.log(note);
  }
  const std::vector<float> weights = class_weights_for(a.class_weights, train_set.labels(), classes);
  if (!weights.empty()) {
    std::string w;
    for (float v : weights) w += (w.empty() ? "" : ", ") + std::to_string(v);
    run.log("finetune: class weights " + w);
  }
  train::ClassifierTask task(net, device,
                             {.label_smoothing = a.label_smoothing, .class_weights = weights, .linear_eval = a.linear});
  const float lr = a.lr > 0 ? a.lr : (a.linear ? 1e-2f : 1e-3f);
  optim::Optimizer<optim::AdamW> opt(task.trainable_parameters(),
                                     optim::AdamWOptions{.weight_decay = a.weight_decay >= 0 ? a.weight_decay : 1e-3f});
  train::LoaderSourceOptions so;
  so.augment = data::supervised_train(a.size, stats_for(a.normalization));
  so.augment_seed = a.seed;
  so.device = device;
  FOVEA_CHECK(a.sampler == "shuffled" || a.sampler == "balanced", "--sampler must be shuffled or balanced, got '",
              a.sampler, "'");
  const data::Sampler sampler = a.sampler == "balanced" ? data::Sampler::class_balanced(train_set.labels(), a.seed)
                                                        : data::Sampler::shuffled(train_set.size(), a.seed);
  train::LoaderSource source(train_set, sampler, loader_options(a, true), so);
  const auto warm = a.warmup_epochs >= 0 ? a.warmup_epochs : 0;
  train::Trainer trainer(task, opt,
                         optim::WarmupCosineLr::from_epochs(lr, warm, a.epochs, source.batches_per_epoch()),
                         train::TrainerOptions{.epochs = a.epochs, .out_dir = a.out, .log_every = a.log_every,
                                               .checkpoint_every = a.checkpoint_every, .resume = a.resume,
                                               .metadata = {{"fovea.config", config.dump()}},
                                               .on_resume = resume_guard(config)});
  // Best checkpoint on the validation split by quadratic weighted kappa (ties: later epoch loses).
  const fs::path best = fs::path(a.out) / "best.safetensors";
  double best_kappa = -2.0;
  if (fs::exists(fs::path(a.out) / "best.json")) {
    const fs::path file = fs::path(a.out) / "best.json";
    std::ifstream in(file);
    try {
      const json j = json::parse(in);
      if (!j.is_object() || !j.contains("kappa") || !j["kappa"].is_number()) throw Error("no number 'kappa'");
      best_kappa = j["kappa"].get<double>();
    } catch (const std::exception& e) {
      FOVEA_FAIL(file.string(), " is not the best checkpoint's record {\"kappa\": ..., ...} (", e.what(),
                 "); pass --no-resume to start over");
    }
  }
  trainer.fit(source, [&](std::int64_t epoch, std::int64_t step, train::MetricsLog& log) {
    if (splits.validation.size() == 0) return;
    const auto probs = predict_probabilities(net, splits.validation, a, device);
    const auto labels = splits.validation.labels();
    const auto preds = eval::argmax_rows(probs, classes);
    const double kappa = eval::quadratic_weighted_kappa(labels, preds, classes);
    const double acc = eval::accuracy(labels, preds);
    log.log({step, epoch, "val", {{"kappa", kappa}, {"accuracy", acc}}});
    run.log("epoch " + std::to_string(epoch) + ": validation kappa " + std::to_string(kappa) + ", accuracy " +
            std::to_string(acc));
    if (std::isfinite(kappa) && kappa > best_kappa) {
      best_kappa = kappa;
      nn::save_weights(net, best,
                       {{"fovea.arch", a.arch},
                        {"fovea.epoch", std::to_string(epoch)},
                        {"fovea.preprocess", a.preprocess}});
      io::write_file_atomically(fs::path(a.out) / "best.json",
                                json{{"epoch", epoch}, {"step", step}, {"kappa", kappa}}.dump() + "\n");
    }
  });
  write_metrics_svg(a.out);
  if (!a.image_cache.empty()) run.log(image_cache_line(a));
  if (fs::exists(best)) nn::load_weights(net, best);
  else nn::save_weights(net, best, {{"fovea.arch", a.arch}, {"fovea.preprocess", a.preprocess}});
  if (splits.test.size() > 0) {
    const auto probs = predict_probabilities(net, splits.test, a, device);
    const auto r = write_evaluation(a.out, splits.test, probs, classes, 2, 1000, a.seed);
    run.log("test (" + std::to_string(splits.test.size()) + " images): kappa " + ci(r.kappa) + ", referable AUC " +
            ci(r.referable_auc) + ", accuracy " + ci(r.accuracy));
  }
  return 0;
}

// The labelled images an evaluation runs on: --data under the label scheme, restricted to the part
// --split-name of the --split file when one is given; not empty.
inline data::Dataset evaluation_set(const EvaluateArgs& a, const data::LabelScheme& scheme,
                                    const char* command) {
  data::Dataset d = data::map_labels(load_labelled_data(a, command), scheme);
  if (!a.split.empty()) {
    const auto file = data::read_split(a.split);
    const auto part = data::parse_split_name(a.split_name);
    FOVEA_CHECK(part.has_value(), "--split-name must be train, validation or test, got '", a.split_name, "'");
    d = data::apply_split(d, file.assignment_for(d))[*part];
    if (d.size() == 0)
      throw Error(std::string(command) + ": the split file '" + a.split + "' assigns no image of " + a.data +
                  " to " + a.split_name + " (--split-name): nothing to evaluate");
  }
  if (d.size() == 0) throw Error(std::string(command) + ": no labelled image to evaluate in " + a.data);
  return d;
}

// --as-binary: the binary scheme a classifier of the 5 grades is scored under ("referable" takes
// --referable-threshold), or nothing when the flag is empty.
inline std::optional<data::LabelScheme> binary_scheme(const EvaluateArgs& a, const data::LabelScheme& model) {
  if (a.as_binary.empty()) return std::nullopt;
  const data::LabelScheme b = a.as_binary == "referable" ? data::LabelScheme::referable(a.referable_threshold)
                                                         : data::parse_label_scheme(a.as_binary);
  FOVEA_CHECK(b.kind != data::LabelKind::grades,
              "--as-binary must be referable, referable>=N or any_dr, not '", a.as_binary, "'");
  FOVEA_CHECK(model.kind == data::LabelKind::grades,
              "--as-binary scores a classifier of the 5 grades; this one ",
              "has the classes of --label-scheme ", a.label_scheme, " already");
  return b;
}

// (N, 5) grade probabilities -> (N, 2) of the binary scheme: [1 - s, s], s = P(grade >= t) summed in
// double (eval::referable_score).
inline std::vector<double> binary_probabilities(const std::vector<double>& probs,
                                                const data::LabelScheme& b) {
  const std::vector<double> score = eval::referable_score(probs, data::kNumGrades, b.threshold);
  std::vector<double> out(2 * score.size());
  for (std::size_t i = 0; i < score.size(); ++i) out[2 * i] = 1.0 - score[i], out[2 * i + 1] = score[i];
  return out;
}

template <class Backbone>
EvalSummary evaluate(const EvaluateArgs& a) {
  const Device device = resolve_device(a.device);
  json config = common_config(a);
  config.update(json{{"weights", a.weights}, {"label_scheme", a.label_scheme}, {"referable_threshold", a.referable_threshold},
                     {"bootstrap", a.bootstrap}, {"split", a.split}, {"split_name", a.split_name}});
  if (!a.as_binary.empty()) config["as_binary"] = a.as_binary;  // only when set: older runs still resume
  FOVEA_CHECK(!a.weights.empty(), "--weights is required (the classifier's safetensors file)");
  FOVEA_CHECK(fs::exists(a.weights), "--weights: file '", a.weights, "' does not exist");
  const data::LabelScheme scheme = data::parse_label_scheme(a.label_scheme);
  const std::optional<data::LabelScheme> binary = binary_scheme(a, scheme);
  RunDir run(a, "evaluate", config, device);
  const data::Dataset d = evaluation_set(a, binary ? *binary : scheme, "evaluate");
  const int classes = scheme.num_classes();
  models::Classifier<Backbone> net(resnet_config(a, classes));
  net.setup(Shape{a.batch_size, 3, a.size, a.size}, device);
  nn::load_weights(net, a.weights);  // strict: every key of this architecture, right shapes
  if (const std::string note = preprocess_mismatch("evaluate", a.weights, a.preprocess); !note.empty())
    run.log(note);
  std::vector<double> probs = predict_probabilities(net, d, a, device);
  if (!a.image_cache.empty()) run.log(image_cache_line(a));
  if (binary) probs = binary_probabilities(probs, *binary);
  const int scored = binary ? 2 : classes;
  const auto r = write_evaluation(a.out, d, probs, scored, a.referable_threshold, a.bootstrap, a.seed,
                                  d.excluded.size(), binary ? binary->name() : std::string());
  run.log("evaluate (" + std::to_string(d.size()) + " images" +
          (binary ? ", the grades scored as " + binary->name() : std::string()) + "): kappa " + ci(r.kappa) +
          ", referable AUC " + ci(r.referable_auc) + ", accuracy " + ci(r.accuracy));
  EvalSummary s;
  s.as_binary = binary ? binary->name() : std::string();
  s.images = static_cast<std::int64_t>(d.size());
  s.excluded = static_cast<std::int64_t>(d.excluded.size());
  for (const auto& sample : d.samples) s.ids.push_back(sample.id);
  s.labels = d.labels(), s.probs = probs, s.classes = scored;
  s.referable_threshold = r.referable_threshold, s.resamples = a.bootstrap, s.seed = a.seed;
  for (auto [name, c] : {std::pair{"kappa", r.kappa}, {"auc", r.referable_auc}, {"accuracy", r.accuracy}}) {
    s.point[name] = c.point;
    s.low[name] = c.low;
    s.high[name] = c.high;
  }
  return s;
}

// ---- robustness (docs/robustness.md) ----

// Whether a run that writes its results row by row continues from `results` (a partial file of an
// interrupted run): with --resume, when the file and config.json exist and config.json has these
// settings; another config.json there is an error (pass --no-resume to start over). Call it before
// RunDir rewrites config.json.
inline bool resumes_partial_results(const RunArgs& a, json config, const std::string& command,
                                    const fs::path& results) {
  const fs::path file = fs::path(a.out) / "config.json";
  if (!a.resume || !fs::exists(results) || !fs::exists(file)) return false;
  std::ifstream in(file);
  json before;
  try {
    before = json::parse(in);
  } catch (const std::exception& e) {
    FOVEA_FAIL(file.string(), " is not valid JSON (", e.what(), "); pass --no-resume to start over");
  }
  config["command"] = command;
  const std::string diff = config_difference(before, config);
  FOVEA_CHECK(diff.empty(), "cannot resume the run in ", a.out, ": its config.json has other settings:", diff,
              refuse_resume_hint());
  return true;
}

// One line of robustness.csv: the metrics of the classifier on the images under one corruption at one
// severity ("clean", 0: the images as they are).
struct RobustnessRow {
  std::string corruption;
  int severity = 0;
  std::int64_t images = 0;
  double accuracy = 0, error = 0, kappa = 0, referable_auc = 0;
};

inline constexpr const char* kRobustnessHeader =
    "corruption,severity,images,accuracy,error,kappa,referable_auc";

// A number for robustness.csv: the shortest round-trip form, nan where undefined (std::stod reads it back).
inline std::string csv_number(double v) {
  if (std::isnan(v)) return "nan";
  char buf[32];
  const auto res = std::to_chars(buf, buf + sizeof(buf), v);
  return std::string(buf, res.ptr);
}

inline std::string robustness_csv(const std::vector<RobustnessRow>& rows) {
  std::string out = std::string(kRobustnessHeader) + "\n";
  for (const RobustnessRow& r : rows)
    out += r.corruption + "," + std::to_string(r.severity) + "," + std::to_string(r.images) + "," +
           csv_number(r.accuracy) + "," + csv_number(r.error) + "," + csv_number(r.kappa) + "," +
           csv_number(r.referable_auc) + "\n";
  return out;
}

// A CSV fovea wrote with the fixed `header` (strict: quoted fields, field counts; errors name the
// file and line).
inline data::CsvTable read_own_csv(const fs::path& path, const char* header) {
  FOVEA_CHECK(fs::is_regular_file(path), "cannot read '", path.string(), "'");
  data::CsvTable t = data::read_csv(path);
  t.require_header(header);
  return t;
}

// Reads a robustness.csv; throws naming the file and line when it is not one.
inline std::vector<RobustnessRow> read_robustness_csv(const fs::path& path) {
  const data::CsvTable t = read_own_csv(path, kRobustnessHeader);
  std::vector<RobustnessRow> rows;
  for (std::size_t i = 0; i < t.size(); ++i) {
    RobustnessRow r;
    r.corruption = t.nonempty(i, 0);
    r.severity = static_cast<int>(t.integer(i, 1, 0, 5));
    r.images = t.integer(i, 2, 0, std::numeric_limits<std::int64_t>::max());
    r.accuracy = t.real(i, 3), r.error = t.real(i, 4), r.kappa = t.real(i, 5), r.referable_auc = t.real(i, 6);
    rows.push_back(r);
  }
  return rows;
}

inline RobustnessRow robustness_row(const std::string& corruption, int severity,
                                    const std::vector<int>& labels, const std::vector<double>& probs,
                                    int classes, int referable_threshold) {
  RobustnessRow r;
  r.corruption = corruption;
  r.severity = severity;
  r.images = static_cast<std::int64_t>(labels.size());
  const auto preds = eval::argmax_rows(probs, classes);
  r.accuracy = eval::accuracy(labels, preds);
  r.error = 1.0 - r.accuracy;
  r.kappa = eval::quadratic_weighted_kappa(labels, preds, classes);
  const int t = std::min(referable_threshold, classes - 1);
  r.referable_auc = eval::roc_auc(eval::referable(labels, t), eval::referable_score(probs, classes, t));
  return r;
}

// The row of corruption c at severity s in v, or nullptr.
inline const RobustnessRow* find_row(const std::vector<RobustnessRow>& v, const std::string& c, int s) {
  for (const RobustnessRow& r : v)
    if (r.corruption == c && r.severity == s) return &r;
  return nullptr;
}

// Corruption errors (Hendrycks & Dietterich 2019) against a reference run: per corruption
// CE = sum_s E_s / sum_s E_s(reference) and the relative CE = sum_s (E_s - E_clean) / sum_s
// (E_s(ref) - E_clean(ref)), each NaN where the reference lacks a severity or its sum is 0; mCE and
// relative mCE are their means over the corruptions with a finite value.
inline json corruption_errors(const std::vector<RobustnessRow>& rows,
                              const std::vector<RobustnessRow>& reference,
                              const std::vector<data::Corruption>& corruptions,
                              const std::vector<int>& severities, double* mce, double* relative_mce) {
  const RobustnessRow* clean = find_row(rows, "clean", 0);
  const RobustnessRow* ref_clean = find_row(reference, "clean", 0);
  json per = json::object();
  double sum_ce = 0, sum_rel = 0;
  int n_ce = 0, n_rel = 0;
  for (data::Corruption c : corruptions) {
    const std::string name(data::corruption_name(c));
    double e = 0, er = 0, d = 0, dr = 0, mean_error = 0, mean_kappa = 0;
    bool complete = !reference.empty();
    for (int s : severities) {
      const RobustnessRow* r = find_row(rows, name, s);
      mean_error += r->error / static_cast<double>(severities.size());
      mean_kappa += r->kappa / static_cast<double>(severities.size());
      const RobustnessRow* q = find_row(reference, name, s);
      if (q == nullptr || ref_clean == nullptr) {
        complete = false;
        continue;
      }
      e += r->error, er += q->error, d += r->error - clean->error, dr += q->error - ref_clean->error;
    }
    const double ce = complete && er > 0 ? e / er : eval::kNaN;
    const double rel = complete && dr > 0 ? d / dr : eval::kNaN;
    if (std::isfinite(ce)) sum_ce += ce, ++n_ce;
    if (std::isfinite(rel)) sum_rel += rel, ++n_rel;
    per[name] =
        json{{"mean_error", mean_error}, {"mean_kappa", mean_kappa}, {"ce", ce}, {"relative_ce", rel}};
  }
  *mce = n_ce > 0 ? sum_ce / n_ce : eval::kNaN;
  *relative_mce = n_rel > 0 ? sum_rel / n_rel : eval::kNaN;
  return per;
}

// robustness.svg: one panel per corruption, the error against severity (this model solid, the
// reference dashed when given), with each model's clean error as a flat line.
inline std::string robustness_svg(const std::vector<RobustnessRow>& rows,
                                  const std::vector<RobustnessRow>& reference,
                                  const std::vector<data::Corruption>& corruptions,
                                  const std::vector<int>& severities) {
  const RobustnessRow* clean = find_row(rows, "clean", 0);
  const RobustnessRow* ref_clean = find_row(reference, "clean", 0);
  std::vector<io::LineChart> panels;
  for (data::Corruption c : corruptions) {
    const std::string name(data::corruption_name(c));
    io::LineChart chart;
    chart.title = name;
    chart.width = 260, chart.height = 200;
    chart.y_label = panels.size() % 5 == 0 ? "error" : "";
    chart.x_label = "severity";
    chart.y_min = 0.0;
    auto series = [&](const std::vector<RobustnessRow>& from, const std::string& label, bool dashed) {
      io::PlotSeries s;
      s.label = label, s.dashed = dashed;
      for (int v : severities) {
        const RobustnessRow* r = find_row(from, name, v);
        s.x.push_back(v);
        s.y.push_back(r != nullptr ? r->error : eval::kNaN);
      }
      return s;
    };
    auto flat = [&](const RobustnessRow* r, const std::string& label) {
      io::PlotSeries s;
      s.label = label, s.dashed = true, s.markers = false;
      s.x = {static_cast<double>(severities.front()), static_cast<double>(severities.back())};
      s.y = {r->error, r->error};
      return s;
    };
    chart.series.push_back(series(rows, "this model", false));
    if (!reference.empty()) chart.series.push_back(series(reference, "reference", true));
    if (clean != nullptr) chart.series.push_back(flat(clean, "clean"));
    if (ref_clean != nullptr) chart.series.push_back(flat(ref_clean, "reference clean"));
    for (io::PlotSeries& s : chart.series) s.label.clear();  // the grid's title is the legend
    panels.push_back(std::move(chart));
  }
  return io::chart_grid_svg(panels, 5,
                            reference.empty()
                                ? "error against severity (blue); flat, dashed: the clean error"
                                : "error against severity: this model (blue), reference (orange, dashed); "
                                  "flat: clean errors (green: this model, red: reference)");
}

template <class Backbone>
RobustnessSummary robustness(const RobustnessArgs& a) {
  const Device device = resolve_device(a.device);
  const std::vector<data::Corruption> corruptions = corruption_list(a.corruptions);
  const std::vector<int> severities = severity_list(a.severities);
  json config = common_config(a);
  config.update(json{{"weights", a.weights},
                     {"label_scheme", a.label_scheme},
                     {"referable_threshold", a.referable_threshold},
                     {"split", a.split},
                     {"split_name", a.split_name},
                     {"corruptions", a.corruptions},
                     {"severities", a.severities},
                     {"reference", a.reference}});
  if (!a.as_binary.empty()) config["as_binary"] = a.as_binary;  // only when set: older runs still resume
  FOVEA_CHECK(!a.weights.empty(), "--weights is required (the classifier's safetensors file)");
  FOVEA_CHECK(fs::exists(a.weights), "--weights: file '", a.weights, "' does not exist");
  FOVEA_CHECK(a.decode_cache_mb >= 0, "--decode-cache-mb must be >= 0, got ", a.decode_cache_mb);
  const std::vector<RobustnessRow> reference =
      a.reference.empty() ? std::vector<RobustnessRow>{} : read_robustness_csv(a.reference);
  // An interrupted run with the same settings keeps the rows it wrote (robustness.csv is rewritten
  // atomically after each one).
  const fs::path csv = fs::path(a.out) / "robustness.csv";
  std::vector<RobustnessRow> rows;
  if (resumes_partial_results(a, config, "robustness", csv)) rows = read_robustness_csv(csv);
  const data::LabelScheme scheme = data::parse_label_scheme(a.label_scheme);
  const std::optional<data::LabelScheme> binary = binary_scheme(a, scheme);  // --as-binary
  RunDir run(a, "robustness", config, device);
  const data::Dataset d = evaluation_set(a, binary ? *binary : scheme, "robustness");
  const int model_classes = scheme.num_classes(), classes = binary ? 2 : model_classes;
  // The classifier's probabilities, collapsed to the binary scheme's under --as-binary.
  const auto scored = [&](std::vector<double> probs) {
    return binary ? binary_probabilities(probs, *binary) : probs;
  };
  if (binary) run.log("robustness: the grades scored as " + binary->name());
  models::Classifier<Backbone> net(resnet_config(a, model_classes));
  net.setup(Shape{a.batch_size, 3, a.size, a.size}, device);
  nn::load_weights(net, a.weights);
  if (const std::string note = preprocess_mismatch("robustness", a.weights, a.preprocess); !note.empty())
    run.log(note);
  const std::vector<int> labels = d.labels();
  const auto have = [&](const std::string& c, int s) {
    return std::any_of(rows.begin(), rows.end(),
                       [&](const RobustnessRow& r) { return r.corruption == c && r.severity == s; });
  };
  const auto add = [&](RobustnessRow r) {
    rows.push_back(std::move(r));
    io::write_file_atomically(csv, robustness_csv(rows));
    const RobustnessRow& b = rows.back();
    run.log("robustness: " + b.corruption + " " + std::to_string(b.severity) + ": accuracy " +
            std::to_string(b.accuracy) + ", kappa " + std::to_string(b.kappa));
  };
  // Each image is decoded and resized once and kept (within --decode-cache-mb) for the later passes;
  // the same call as the loader's decoder (loader_options: the default resize decoder, or
  // preprocess_fundus for --preprocess fov), so the results are the same with and without the cache.
  // --preprocess graham: the corruptions act on the photo, so they come before Ben Graham's step: the
  // kept images are the cropped, resized photos (data::resize_fundus), and each pass's batch transform
  // ends with Ben Graham's step (on the CPU), with each image's geometry from its decoding. The clean
  // pass gives bitwise the loader's preprocess_fundus.
  const int decode_side = decode_size(a.size);
  const data::FundusPreprocess settings = decode_settings(a);
  const bool graham = settings.ben_graham;
  const std::int64_t cache_mb = std::min<std::int64_t>(a.decode_cache_mb, std::int64_t{1} << 40);
  DecodedImageCache cache(d.size(), static_cast<std::size_t>(cache_mb) << 20);
  // --image-cache: the same pixels the evaluation of the same model read (8-bit), from the disk cache;
  // not with graham (the cache holds Ben Graham's output, which a corruption must precede).
  if (graham && !a.image_cache.empty())
    run.log("robustness: --preprocess graham reads the photos, not --image-cache (the cache holds Ben Graham's "
            "output, and the corruptions come before that step)");
  data::CachedPreprocessor* disk =
      a.image_cache.empty() || graham ? nullptr : &image_cache(a.image_cache, settings);
  std::vector<data::ResizedFundus> geometry(graham ? d.size() : 0);  // graham: per data set index
  const auto decoded = [&cache, &geometry, &settings, graham, decode_side, disk](const data::Sample& sample,
                                                                                 std::size_t index) {
    return cache.get(index, [&] {
      Tensor image;  // (3, S, S) or (1, 3, S, S)
      if (disk != nullptr) {
        image = (*disk)(sample.path);
      } else if (graham) {
        data::ResizedFundus r = data::resize_fundus(data::load_image(sample.path), settings);
        image = std::move(r.image);
        geometry[index] = std::move(r);  // the boxes (its image moved out)
      } else if (settings.crop_to_fov) {
        image = data::preprocess_fundus(sample.path, settings);
      } else {
        image = data::preprocess_for_model(sample.path, decode_side, {0.0f, 0.0f, 0.0f}, {1.0f, 1.0f, 1.0f});
      }
      image.reshape(Shape{1, 3, decode_side, decode_side});
      return image;
    });
  };
  // Ben Graham's step on each image of a batch (N, 3, S, S) on `device`, in place (through the host
  // on a GPU), in parallel over the images.
  const auto graham_step = [&](std::span<const std::int64_t> ids, View out) {
    const std::int64_t n = out.shape()[0], floats = out.numel() / std::max<std::int64_t>(1, n);
    Tensor host;
    float* values = out.data();
    if (!out.device().is_cpu()) {
      host = Tensor(out.shape());
      copy(CView(out), host.view());
      values = host.data();
    }
    parallel_for(
        n,
        [&](std::int64_t begin, std::int64_t end) {
          for (std::int64_t k = begin; k < end; ++k) {
            const data::ResizedFundus& g = geometry[static_cast<std::size_t>(ids[static_cast<std::size_t>(k)])];
            const Tensor t = data::ben_graham(
                CView(values + k * floats, Shape{3, out.shape()[2], out.shape()[3]}, Device::cpu()), g, settings);
            std::copy_n(t.data(), floats, values + k * floats);
          }
        },
        1);
    if (!out.device().is_cpu()) copy(CView(host), out);
  };
  // The image (3, S, S) on the cpu as the model sees it before the test transform.
  const auto example_of = [&](CView batch, std::int64_t k) {
    Tensor host(Shape{batch.shape()[1], batch.shape()[2], batch.shape()[3]});
    copy(CView(batch.data() + k * host.numel(), host.shape(), batch.device()), host.view());
    return host;
  };
  const auto save_example = [&](const std::string& name, int s, std::int64_t index, CView image) {
    const std::string id = data::image_id(d.samples[static_cast<std::size_t>(index)].id);
    data::write_png(fs::path(a.out) / "examples" /
                        (name + "_" + std::to_string(s) + "_" + data::file_name_of_id(id) + ".png"),
                    image);
  };
  if (a.save_examples > 0) {  // the clean images the examples are corrupted from
    fs::create_directories(fs::path(a.out) / "examples");
    for (std::size_t i = 0; i < d.size() && static_cast<std::int64_t>(i) < a.save_examples; ++i) {
      Tensor image = decoded(d.samples[i], i);  // (1, 3, S, S)
      if (graham) {
        const std::int64_t id[1] = {static_cast<std::int64_t>(i)};
        graham_step(id, image.view());
      }
      save_example("clean", 0, static_cast<std::int64_t>(i), example_of(image, 0));
    }
  }
  if (!have("clean", 0)) {
    const data::DecodeFn decode = [&decoded](const data::Sample& sample, const data::DecodeContext& ctx) {
      return decoded(sample, ctx.index);
    };
    BatchTransform before;
    if (graham)
      before = [&](CView images, std::span<const std::int64_t> ids, View out) {
        copy(images, out);
        graham_step(ids, out);
      };
    add(robustness_row("clean", 0, labels, scored(predict_probabilities(net, d, a, device, decode, before)),
                       classes, a.referable_threshold));
  }
  for (data::Corruption c : corruptions)
    for (int s : severities) {
      const std::string name(data::corruption_name(c));
      if (have(name, s)) continue;
      // The decoded image (in [0, 1], before the test transform's crop and normalisation) corrupted;
      // its random draws keyed by (seed, the image's index in the data set, corruption, severity).
      // Each decoded batch is corrupted on the net's device (data::corrupt_batch: CUDA kernels on a
      // GPU, on the CPU each image through data::corrupt in parallel); the fundus corruptions read
      // the fields of view found at decode time in the loader's threads (fov_mask, as corrupt does),
      // kept per data set index until their batch comes.
      const bool fundus = data::is_fundus_corruption(c);
      std::vector<Tensor> fov(fundus ? d.size() : 0);
      data::DecodeFn decode = [&decoded, &fov, fundus](const data::Sample& sample, const data::DecodeContext& ctx) {
        Tensor image = decoded(sample, ctx.index);
        const Shape& is = image.shape();  // (1, 3, S, S)
        if (fundus) fov[ctx.index] = data::fov_mask(CView(image.data(), Shape{is[1], is[2], is[3]}, image.device()));
        return image;
      };
      Tensor masks;  // (N, 1, S, S) on the device
      BatchTransform before = [&, c, s](CView images, std::span<const std::int64_t> ids, View out) {
        const CView* given = nullptr;
        CView view;
        if (fundus) {
          const std::int64_t plane = images.shape()[2] * images.shape()[3];
          Tensor host(Shape{images.shape()[0], 1, images.shape()[2], images.shape()[3]});
          for (std::size_t k = 0; k < ids.size(); ++k) {
            const Tensor& m = fov[static_cast<std::size_t>(ids[k])];
            FOVEA_CHECK(m.numel() == plane, "robustness: no field of view for image ", ids[k]);
            std::copy(m.data(), m.data() + plane, host.data() + static_cast<std::int64_t>(k) * plane);
          }
          masks = host.to(device);
          view = masks;
          given = &view;
        }
        data::corrupt_batch(images, c, s, a.seed, ids, out, given);
        if (graham) graham_step(ids, out);
        for (std::size_t k = 0; k < ids.size(); ++k)
          if (ids[k] < a.save_examples) save_example(name, s, ids[k], example_of(out, static_cast<std::int64_t>(k)));
      };
      add(robustness_row(name, s, labels, scored(predict_probabilities(net, d, a, device, decode, before)),
                         classes, a.referable_threshold));
    }
  RobustnessSummary summary;
  summary.images = static_cast<std::int64_t>(d.size());
  const json per =
      corruption_errors(rows, reference, corruptions, severities, &summary.mce, &summary.relative_mce);
  for (const RobustnessRow& r : rows) {
    if (r.corruption == "clean") {
      summary.clean_error = r.error, summary.clean_kappa = r.kappa;
      continue;
    }
    summary.mean_error += r.error / static_cast<double>(rows.size() - 1);
    summary.mean_kappa += r.kappa / static_cast<double>(rows.size() - 1);
  }
  for (int v : severities) {
    double sum = 0;
    int n = 0;
    for (const RobustnessRow& r : rows)
      if (r.corruption != "clean" && r.severity == v) sum += r.error, ++n;
    summary.error_by_severity[v] = n > 0 ? sum / n : eval::kNaN;
  }
  const json report{{"images", summary.images},
                    {"clean_error", summary.clean_error},
                    {"clean_kappa", summary.clean_kappa},
                    {"mean_corrupted_error", summary.mean_error},
                    {"mean_corrupted_kappa", summary.mean_kappa},
                    {"mce", summary.mce},
                    {"relative_mce", summary.relative_mce},
                    {"reference", a.reference},
                    {"corruptions", per}};
  io::write_file_atomically(fs::path(a.out) / "robustness.json", report.dump(2) + "\n");
  io::write_file_atomically(fs::path(a.out) / "robustness.svg",
                            robustness_svg(rows, reference, corruptions, severities));
  char cache_line[160];
  std::snprintf(cache_line, sizeof cache_line,
                "robustness: decode cache held %zu of %zu images, %.1f MiB (--decode-cache-mb %lld)",
                cache.images(), cache.capacity(), static_cast<double>(cache.bytes()) / (1 << 20),
                static_cast<long long>(a.decode_cache_mb));
  run.log(cache_line);
  run.log("robustness (" + std::to_string(summary.images) + " images, " + std::to_string(rows.size() - 1) +
          " corrupted sets): clean error " + std::to_string(summary.clean_error) + ", mean corrupted error " +
          std::to_string(summary.mean_error) +
          (a.reference.empty() ? "" : ", mCE " + std::to_string(summary.mce)));
  return summary;
}

// ---- saliency (docs/saliency.md) ----

// image (C, H, W) on the CPU, padded with zeros (black) around its centre to a square of side max(H, W):
// fundus photographs are wider than tall, and a centre crop would cut lesions off.
inline Tensor pad_square(CView image) {
  const std::int64_t c = image.shape()[0], h = image.shape()[1], w = image.shape()[2], side = std::max(h, w);
  const std::int64_t top = (side - h) / 2, left = (side - w) / 2;
  Tensor out = full(Shape{c, side, side}, 0.0f, Device::cpu());
  for (std::int64_t k = 0; k < c; ++k)
    for (std::int64_t y = 0; y < h; ++y)
      std::copy_n(image.data() + (k * h + y) * w, w, out.data() + (k * side + top + y) * side + left);
  return out;
}

// A mask image (channel 0 > 0.5 inside) through the images' geometry: padded to a square, then
// resized to size x size keeping every pixel that any inside source pixel maps to.
inline std::vector<std::uint8_t> square_mask(CView mask, int size) {
  const Tensor padded =
      pad_square(CView(mask.data(), Shape{1, mask.shape()[1], mask.shape()[2]}, mask.device()));
  const std::int64_t side = padded.shape()[1];
  std::vector<std::uint8_t> bytes(static_cast<std::size_t>(side * side));
  for (std::size_t i = 0; i < bytes.size(); ++i) bytes[i] = padded.data()[i] > 0.5f ? 1 : 0;
  return analysis::resize_mask_any({bytes, side, side}, size, size);
}

// The image saliency explains, before normalisation, and the photo's window it shows, so that lesion
// masks follow the same geometry. --preprocess resize: the photo padded to a square (pad_square) and
// resized, window empty; fov and graham: the square around the field of view, without margin (what
// the test transform's centre crop of the drivers' decoding shows), resized, then for graham Ben
// Graham's step.
struct SaliencyImage {
  Tensor image;                // (3, S, S) on the cpu, in [0, 1]
  data::BoundingBox window;    // fov / graham: the photo's square the image shows; resize: empty
};

inline SaliencyImage saliency_image(const Tensor& photo, const RunArgs& a) {
  const data::FundusMode mode = data::parse_fundus_mode(a.preprocess);
  if (mode == data::FundusMode::resize) return {data::resize_antialiased(pad_square(photo), a.size, a.size), {}};
  const data::FundusPreprocess settings = data::fundus_settings(mode, a.size, 1.0);
  data::ResizedFundus r = data::resize_fundus(photo, settings);
  if (settings.ben_graham) r.image = data::ben_graham(r.image, r, settings);
  return {std::move(r.image), r.window};
}

// A mask image (channel 0 > 0.5 inside) of the photo through saliency_image's geometry.
inline std::vector<std::uint8_t> saliency_mask(CView mask, const SaliencyImage& g, int size) {
  if (g.window.empty()) return square_mask(mask, size);
  const Tensor cut =
      data::crop_square(CView(mask.data(), Shape{1, mask.shape()[1], mask.shape()[2]}, mask.device()), g.window);
  std::vector<std::uint8_t> bytes(static_cast<std::size_t>(cut.numel()));
  for (std::size_t i = 0; i < bytes.size(); ++i) bytes[i] = cut.data()[i] > 0.5f ? 1 : 0;
  return analysis::resize_mask_any({bytes, g.window.height(), g.window.width()}, size, size);
}

// The heatmap over the image for a PNG: relevance scaled by its 99th percentile (clipped to 1) in a
// black-red-yellow-white ramp, blended half and half with the image (3, S, S) in [0, 1].
inline Tensor heatmap_overlay(CView image, std::span<const float> heat) {
  std::vector<float> sorted(heat.begin(), heat.end());
  const std::size_t k =
      std::min(sorted.size() - 1, static_cast<std::size_t>(0.99 * static_cast<double>(sorted.size())));
  std::nth_element(sorted.begin(), sorted.begin() + static_cast<std::ptrdiff_t>(k), sorted.end());
  const float top = sorted[k] > 0.0f ? sorted[k] : 1.0f;
  const std::int64_t n = static_cast<std::int64_t>(heat.size());
  Tensor out(image.shape());
  for (std::int64_t i = 0; i < n; ++i) {
    const float t = std::clamp(heat[static_cast<std::size_t>(i)] / top, 0.0f, 1.0f);
    const float ramp[3] = {std::clamp(3.0f * t, 0.0f, 1.0f), std::clamp(3.0f * t - 1.0f, 0.0f, 1.0f),
                           std::clamp(3.0f * t - 2.0f, 0.0f, 1.0f)};
    for (int c = 0; c < 3; ++c) out.data()[c * n + i] = 0.5f * image.data()[c * n + i] + 0.5f * ramp[c];
  }
  return out;
}

inline constexpr const char* kSaliencyHeader =
    "image,method,target,lesion,lesion_pixels,fov_pixels,mass_inside,rank_accuracy,pointing_game";
inline constexpr const char* kRandomizationHeader =
    "method,stage,image,heatmap_spearman,signed_spearman,heatmap_ssim";
inline constexpr const char* kSaliencySizeHeader =
    "image,method,lesion,min_area,max_area,components,lesion_pixels,mass_inside,rank_accuracy,hit_rate";

// One line of saliency.csv.
struct SaliencyRow {
  std::string image, method, lesion;
  int target = 0;
  std::int64_t lesion_pixels = 0, fov_pixels = 0;
  double mass_inside = 0, rank_accuracy = 0, pointing_game = 0;
  std::string line() const {
    return data::csv_row({image, method, std::to_string(target), lesion, std::to_string(lesion_pixels),
                          std::to_string(fov_pixels), csv_number(mass_inside), csv_number(rank_accuracy),
                          csv_number(pointing_game)});
  }
};

inline std::vector<SaliencyRow> read_saliency_csv(const fs::path& path) {
  const data::CsvTable t = read_own_csv(path, kSaliencyHeader);
  std::vector<SaliencyRow> rows;
  for (std::size_t r = 0; r < t.size(); ++r) {
    SaliencyRow row;
    row.image = t.at(r, 0), row.method = t.at(r, 1), row.lesion = t.at(r, 3);
    row.target = static_cast<int>(t.integer(r, 2, 0, 1 << 20));
    row.lesion_pixels = t.integer(r, 4, 0, std::numeric_limits<std::int64_t>::max());
    row.fov_pixels = t.integer(r, 5, 0, std::numeric_limits<std::int64_t>::max());
    row.mass_inside = t.real(r, 6), row.rank_accuracy = t.real(r, 7), row.pointing_game = t.real(r, 8);
    rows.push_back(std::move(row));
  }
  return rows;
}

// The rows of saliency_by_size.csv (fields as written), each checked: areas, counts and pixels
// integers (max_area may be inf), the three scores numbers.
inline std::vector<std::vector<std::string>> read_saliency_size_csv(const fs::path& path) {
  const data::CsvTable t = read_own_csv(path, kSaliencySizeHeader);
  constexpr auto most = std::numeric_limits<std::int64_t>::max();
  for (std::size_t r = 0; r < t.size(); ++r) {
    t.integer(r, 3, 0, most);
    if (t.at(r, 4) != "inf") t.integer(r, 4, 0, most);
    t.integer(r, 5, 0, most), t.integer(r, 6, 0, most);
    t.real(r, 7), t.real(r, 8), t.real(r, 9);
  }
  return t.rows;
}

template <class Net>
analysis::AttributionMaps attribution(Net& net, const std::string& method, CView x,
                                      std::span<const int> target, const SaliencyArgs& a) {
  if (method == "gradient") return analysis::gradient(net, x, target);
  if (method == "grad_cam")
    return analysis::grad_cam(net, x, target,
                              {.layer = a.gradcam_layer, .batch = static_cast<int>(a.batch_size)});
  if (method == "lrp") {
    analysis::LrpOptions o;
    o.rule = a.lrp_rule == "epsilon" ? analysis::LrpRule::epsilon
             : a.lrp_rule == "gamma" ? analysis::LrpRule::gamma
                                     : analysis::LrpRule::plus;
    o.input = a.lrp_input == "flat"      ? analysis::LrpInputRule::flat
              : a.lrp_input == "epsilon" ? analysis::LrpInputRule::epsilon
                                         : analysis::LrpInputRule::box;
    o.gamma = a.lrp_gamma;
    o.normalisation = stats_for(a.normalization);
    o.batch = static_cast<int>(a.batch_size);
    return analysis::lrp(net, x, target, o);
  }
  if (method == "gradient_x_input") return analysis::gradient_x_input(net, x, target);
  if (method == "smoothgrad")
    return analysis::smoothgrad(net, x, target,
                                {.samples = a.smoothgrad_samples,
                                 .sigma_fraction = a.smoothgrad_sigma,
                                 .seed = a.seed,
                                 .batch = static_cast<int>(a.batch_size)});
  analysis::IntegratedGradientsOptions o;
  o.steps = a.ig_steps;
  o.rule =
      a.ig_rule == "gauss_legendre" ? analysis::IgRule::gauss_legendre : analysis::IgRule::riemann_midpoint;
  o.baseline = a.baseline == "gray"      ? analysis::IgBaseline::gray
               : a.baseline == "mean"    ? analysis::IgBaseline::mean
               : a.baseline == "blurred" ? analysis::IgBaseline::blurred
                                         : analysis::IgBaseline::black;
  o.normalisation = stats_for(a.normalization);
  o.batch = static_cast<int>(a.batch_size);
  return analysis::integrated_gradients(net, x, target, o);
}

// saliency.svg: per method the relevance mass inside each lesion type as a multiple of chance (its
// share of the field of view), the hit rate of the MA + HE + EX lesions by size (the paper's "minute
// vs large lesions"), and, when the randomisation check ran, the heatmap Spearman correlation with
// the trained model's map as the network is randomised from the logits down.
inline std::string saliency_svg(const std::vector<std::string>& methods, const json& summary,
                                const std::vector<std::vector<std::string>>& size_rows,
                                const json& randomization) {
  std::vector<io::LineChart> panels;
  io::LineChart mass;
  mass.title = "relevance mass inside / chance";
  mass.width = 440, mass.height = 320;
  for (const char* lesion : {"MA", "HE", "EX", "SE", "NV", "OD", "MA+HE+EX"}) {
    bool any = false;
    for (const std::string& m : methods) any = any || (summary.contains(m) && summary[m].contains(lesion));
    if (any) mass.x_labels.push_back(lesion);
  }
  for (const std::string& m : methods) {
    io::PlotSeries sr;
    sr.label = m, sr.line = false;
    for (const std::string& lesion : mass.x_labels) {
      double v = eval::kNaN;
      if (summary.contains(m) && summary[m].contains(lesion)) {
        const json& e = summary[m][lesion];
        const double inside = e["mass_inside"].is_number() ? e["mass_inside"].get<double>() : eval::kNaN;
        const double chance = e["chance"].is_number() ? e["chance"].get<double>() : eval::kNaN;
        v = chance > 0 ? inside / chance : eval::kNaN;
      }
      sr.y.push_back(v);
    }
    mass.series.push_back(sr);
  }
  io::PlotSeries one;
  one.label = "chance", one.dashed = true, one.markers = false;
  one.x = {-0.5, static_cast<double>(mass.x_labels.size()) - 0.5}, one.y = {1.0, 1.0};
  mass.series.push_back(one);
  panels.push_back(std::move(mass));
  // by size: the mean over images of each bin's hit rate, MA + HE + EX
  io::LineChart sizes;
  sizes.title = "MA+HE+EX lesions hit, by size";
  sizes.width = 440, sizes.height = 320;
  std::map<std::pair<std::string, std::string>, std::pair<double, double>> hits;  // (method, bin) -> sum, n
  for (const std::vector<std::string>& f : size_rows) {
    if (f.size() < 10 || f[2] != "MA+HE+EX") continue;
    const std::string bin = f[4] == "inf" ? ">= " + f[3] + " px" : f[3] + "-" + f[4] + " px";
    if (std::find(sizes.x_labels.begin(), sizes.x_labels.end(), bin) == sizes.x_labels.end())
      sizes.x_labels.push_back(bin);
    const double v = std::strtod(f[9].c_str(), nullptr);
    if (std::isfinite(v)) hits[{f[1], bin}].first += v, hits[{f[1], bin}].second += 1;
  }
  for (const std::string& m : methods) {
    io::PlotSeries sr;
    sr.label = m, sr.line = false;
    for (const std::string& bin : sizes.x_labels) {
      const auto it = hits.find({m, bin});
      sr.y.push_back(it != hits.end() && it->second.second > 0 ? it->second.first / it->second.second
                                                               : eval::kNaN);
    }
    sizes.series.push_back(sr);
  }
  panels.push_back(std::move(sizes));
  if (randomization.is_object() && !randomization.empty()) {
    io::LineChart cascade;
    cascade.title = "randomised from the logits down";
    cascade.y_label = "heatmap Spearman";
    cascade.width = 440, cascade.height = 320;
    for (const json& st : randomization.begin().value())
      cascade.x_labels.push_back(st["stage"].get<std::string>());
    for (const std::string& m : methods) {
      if (!randomization.contains(m)) continue;
      io::PlotSeries sr;
      sr.label = m;
      for (const json& st : randomization[m])
        sr.y.push_back(st["heatmap_spearman"].is_number() ? st["heatmap_spearman"].get<double>()
                                                          : eval::kNaN);
      cascade.series.push_back(sr);
    }
    panels.push_back(std::move(cascade));
  }
  return io::chart_grid_svg(panels, 3, "attribution maps against the lesion masks");
}

template <class Backbone>
SaliencySummary saliency(const SaliencyArgs& a) {
  const Device device = resolve_device(a.device);
  const std::vector<std::string> methods = saliency_methods(a.methods);
  json config = common_config(a);
  config.update(json{{"weights", a.weights},
                     {"masks", a.masks},
                     {"label_scheme", a.label_scheme},
                     {"methods", a.methods},
                     {"target", a.target},
                     {"baseline", a.baseline},
                     {"ig_rule", a.ig_rule},
                     {"ig_steps", a.ig_steps},
                     {"smoothgrad_samples", a.smoothgrad_samples},
                     {"smoothgrad_sigma", a.smoothgrad_sigma},
                     {"gradcam_layer", a.gradcam_layer},
                     {"lrp_rule", a.lrp_rule},
                     {"lrp_input", a.lrp_input},
                     {"lrp_gamma", a.lrp_gamma},
                     {"count", a.count},
                     {"split", a.split},
                     {"split_name", a.split_name},
                     {"randomization", a.randomization},
                     {"overlays", a.overlays}});
  FOVEA_CHECK(!a.weights.empty(), "--weights is required (the classifier's safetensors file)");
  FOVEA_CHECK(fs::exists(a.weights), "--weights: file '", a.weights, "' does not exist");
  FOVEA_CHECK(!a.masks.empty(), "--masks is required (a lesion-mask CSV: image,lesion_type,mask_path)");
  const data::LesionMasks masks = data::load_lesion_masks(a.masks);
  // An interrupted run with the same settings keeps the images it scored: both CSVs are rewritten
  // atomically after each image, saliency_by_size.csv first, so an image counts as done once it is
  // in saliency.csv.
  const fs::path csv = fs::path(a.out) / "saliency.csv", size_csv = fs::path(a.out) / "saliency_by_size.csv";
  std::vector<SaliencyRow> rows;
  std::vector<std::vector<std::string>> size_rows;  // saliency_by_size.csv's fields
  std::set<std::string> done;
  const bool resumed = resumes_partial_results(a, config, "saliency", csv);
  if (resumed) {
    rows = read_saliency_csv(csv);
    for (const SaliencyRow& r : rows) done.insert(r.image);
    if (fs::exists(size_csv))
      for (std::vector<std::string>& f : read_saliency_size_csv(size_csv)) {
        if (done.count(f[0])) size_rows.push_back(std::move(f));
      }
  }
  RunDir run(a, "saliency", config, device);
  const data::LabelScheme scheme = data::parse_label_scheme(a.label_scheme);
  const int classes = scheme.num_classes();
  int fixed_target = -1;
  if (a.target != "predicted") {
    const auto [end, ec] = std::from_chars(a.target.data(), a.target.data() + a.target.size(), fixed_target);
    FOVEA_CHECK(ec == std::errc() && end == a.target.data() + a.target.size() && fixed_target >= 0 &&
                    fixed_target < classes,
                "--target must be 'predicted' or a class index in [0, ", classes, "), got '", a.target, "'");
  }
  // The images that have at least one mask, in data set order, at most --count.
  data::Dataset all = load_data(a);
  if (!a.split.empty()) {  // e.g. the test split of the fine-tuning run: explain held-out images only
    const auto file = data::read_split(a.split);
    const auto part = data::parse_split_name(a.split_name);
    FOVEA_CHECK(part.has_value(), "--split-name must be train, validation or test, got '", a.split_name, "'");
    all = data::apply_split(all, file.assignment_for(all))[*part];
  }
  std::vector<const data::Sample*> images;
  for (const auto& sample : all.samples)
    if (masks.by_image.count(data::image_id(sample.id)) &&
        (a.count <= 0 || static_cast<std::int64_t>(images.size()) < a.count))
      images.push_back(&sample);
  FOVEA_CHECK(!images.empty(), "saliency: no image of ", a.data,
              a.split.empty() ? "" : " (" + a.split_name + " split)", " has a mask in ", a.masks);
  run.log("saliency: " + std::to_string(images.size()) + " images with lesion masks; methods " + a.methods);

  models::Classifier<Backbone> net(resnet_config(a, classes));
  net.setup(Shape{std::max<std::int64_t>(a.batch_size, 1), 3, a.size, a.size}, device);
  nn::load_weights(net, a.weights);
  if (const std::string note = preprocess_mismatch("saliency", a.weights, a.preprocess); !note.empty())
    run.log(note);
  net.set_training(false);
  nn::set_input_grad(net, true);
  const ChannelStats stats = stats_for(a.normalization);
  const std::array<float, 3> mean{stats.mean[0], stats.mean[1], stats.mean[2]};
  const std::array<float, 3> std_dev{stats.std[0], stats.std[1], stats.std[2]};

  const fs::path maps_dir = fs::path(a.out) / "maps";
  if (a.overlays) fs::create_directories(maps_dir);
  const auto frac = [](double v) { return csv_number(v); };
  if (!done.empty()) run.log("saliency: " + std::to_string(done.size()) + " images already scored (resumed)");
  // The network input (1, 3, S, S) of an image (normalised, on the device) and its target class.
  const auto input_of = [&](const Tensor& resized) {
    Tensor input = resized.clone();
    data::normalize(input, mean, std_dev);
    input.reshape(Shape{1, 3, a.size, a.size});
    return input.to(device);
  };
  const auto target_of = [&](CView x) {
    if (fixed_target >= 0) return fixed_target;
    const CView out = net.forward(x);
    std::vector<float> logits(static_cast<std::size_t>(out.shape().numel()));
    copy(out, View(logits.data(), out.shape(), Device::cpu()));
    return static_cast<int>(std::max_element(logits.begin(), logits.end()) - logits.begin());
  };
  for (const data::Sample* sample : images) {
    const std::string id = data::image_id(sample->id);
    if (done.count(id)) continue;
    const Tensor photo = data::load_image(sample->path);
    const SaliencyImage view = saliency_image(photo, a);
    const Tensor& resized = view.image;  // (3, S, S) in [0, 1]
    const std::vector<std::uint8_t> fov = saliency_mask(data::fov_mask(photo), view, a.size);
    const Tensor x = input_of(resized);
    const int target = target_of(x);
    // The lesion sets: each type this image has a mask of, then the union of MA, HE and EX.
    std::vector<std::pair<std::string, std::vector<std::uint8_t>>> sets;
    std::vector<std::uint8_t> lesion_union(static_cast<std::size_t>(a.size) * a.size, 0);
    bool any_lesion = false;
    for (std::string_view type : data::kLesionTypes) {
      const data::LesionMask* m = masks.find(id, type);
      if (m == nullptr) continue;
      const Tensor mask_image = data::load_image(m->path);
      // A mask covers its photograph pixel for pixel (IDRiD's are 4288 x 2848 like the photos); one of
      // another size is another image's, or a resized copy, and would score the wrong pixels.
      const Shape& ms = mask_image.shape();
      const Shape& ps = photo.shape();
      if (ms[1] != ps[1] || ms[2] != ps[2])
        throw Error("saliency: the " + std::string(type) + " mask '" + m->path.string() + "' is " +
                    std::to_string(ms[2]) + " x " + std::to_string(ms[1]) + " pixels, its image '" +
                    sample->path.string() + "' " + std::to_string(ps[2]) + " x " + std::to_string(ps[1]) +
                    ": a lesion mask must have its photograph's size");
      std::vector<std::uint8_t> bytes = saliency_mask(mask_image, view, a.size);
      if (type == "MA" || type == "HE" || type == "EX") {
        for (std::size_t i = 0; i < bytes.size(); ++i) lesion_union[i] |= bytes[i];
        any_lesion = true;
      }
      sets.emplace_back(std::string(type), std::move(bytes));
    }
    if (any_lesion) sets.emplace_back("MA+HE+EX", lesion_union);
    const analysis::Mask fov_mask{fov, a.size, a.size};
    std::map<std::string, CView> raw_maps;
    std::vector<analysis::AttributionMaps> kept;
    kept.reserve(methods.size());
    for (const std::string& method : methods) {
      const int targets[1] = {target};
      kept.push_back(attribution(net, method, x, targets, a));
      const analysis::AttributionMaps& m = kept.back();
      const analysis::Heatmap heat{m.heatmap_of(0), a.size, a.size};
      for (const auto& [lesion, bytes] : sets) {
        const analysis::Mask lm{bytes, a.size, a.size};
        const analysis::SaliencyScores sc = analysis::score_heatmap(heat, lm, fov_mask);
        rows.push_back({id, method, lesion, target, sc.lesion_pixels, sc.fov_pixels, sc.mass_inside,
                        sc.rank_accuracy, sc.pointing_game});
        for (const analysis::SizeBinScores& b : analysis::score_by_lesion_size(heat, lm, fov_mask))
          size_rows.push_back({id, method, lesion, std::to_string(b.min_area),
                               b.max_area == std::numeric_limits<std::int64_t>::max()
                                   ? std::string("inf")
                                   : std::to_string(b.max_area),
                               std::to_string(b.components), std::to_string(b.lesion_pixels),
                               frac(b.mass_inside), frac(b.rank_accuracy), frac(b.hit_rate)});
      }
      if (a.overlays)
        data::write_png(maps_dir / (data::file_name_of_id(id) + "_" + method + ".png"),
                        heatmap_overlay(resized.view(), m.heatmap_of(0)));
    }
    if (a.overlays) {
      for (std::size_t k = 0; k < methods.size(); ++k) {
        raw_maps.emplace(methods[k] + ".heatmap",
                         CView(kept[k].heatmap.data(), Shape{a.size, a.size}, Device::cpu()));
        raw_maps.emplace(methods[k] + ".raw",
                         CView(kept[k].raw.data(), Shape{kept[k].channels, a.size, a.size}, Device::cpu()));
      }
      io::write_safetensors(maps_dir / (data::file_name_of_id(id) + ".safetensors"), raw_maps,
                            {{"fovea.image", id}, {"fovea.target", std::to_string(target)}});
    }
    std::string size_text = std::string(kSaliencySizeHeader) + "\n",
                text = std::string(kSaliencyHeader) + "\n";
    for (const std::vector<std::string>& f : size_rows) size_text += data::csv_row(f) + "\n";
    for (const SaliencyRow& r : rows) text += r.line() + "\n";
    io::write_file_atomically(size_csv, size_text);
    io::write_file_atomically(csv, text);
    run.log("saliency: " + id + " (target " + std::to_string(target) + ", " + std::to_string(sets.size()) +
            " lesion sets)");
  }
  // per (method, lesion): sums and counts of the finite scores, and of the chance level (the lesion
  // set's share of the field of view: what mass_inside and rank_accuracy of a map that ignores the
  // lesions come to)
  std::map<std::pair<std::string, std::string>, std::array<double, 8>> totals;
  for (const SaliencyRow& r : rows) {
    auto& t = totals[{r.method, r.lesion}];
    const double v[4] = {r.mass_inside, r.rank_accuracy, r.pointing_game,
                         r.fov_pixels > 0 ? static_cast<double>(r.lesion_pixels) / r.fov_pixels : eval::kNaN};
    for (int k = 0; k < 4; ++k)
      if (std::isfinite(v[k])) t[2 * k] += v[k], t[2 * k + 1] += 1.0;
  }
  // The sanity check (docs/randomization.md): the first --randomization images, each method's maps
  // after randomising the network from the logits down, compared with the trained network's.
  json randomization = json::object();
  std::map<std::string, double> randomized;
  // A resumed run whose earlier pass finished the check reads it back from its saliency.json (the
  // check is seeded: the same settings give the same numbers) instead of running it again.
  bool check_done = false;
  if (a.randomization > 0 && resumed && fs::exists(fs::path(a.out) / "randomization.csv") &&
      fs::exists(fs::path(a.out) / "saliency.json")) {
    try {
      std::ifstream in(fs::path(a.out) / "saliency.json");
      const json before = json::parse(in);
      if (before.contains("randomization") && before["randomization"].is_object()) {
        const json& r = before["randomization"];
        check_done = std::all_of(methods.begin(), methods.end(), [&](const std::string& m) {
          return r.contains(m) && r[m].is_array() && !r[m].empty();
        });
        if (check_done)
          for (const std::string& method : methods) {
            randomization[method] = r[method];
            const json& last = r[method].back().at("heatmap_spearman");
            randomized[method] = last.is_number() ? last.get<double>() : eval::kNaN;
          }
      }
    } catch (const json::exception&) {  // unreadable: run the check again
      check_done = false;
      randomization = json::object();
      randomized.clear();
    }
    if (check_done) run.log("saliency: randomisation check read back from saliency.json (resumed)");
  }
  if (a.randomization > 0 && !check_done) {
    const std::int64_t n = std::min<std::int64_t>(a.randomization, static_cast<std::int64_t>(images.size()));
    Tensor batch(Shape{n, 3, a.size, a.size});
    std::vector<int> targets;
    std::vector<std::string> ids;
    for (std::int64_t i = 0; i < n; ++i) {
      const data::Sample* sample = images[static_cast<std::size_t>(i)];
      const Tensor x =
          input_of(saliency_image(data::load_image(sample->path), a).image);
      targets.push_back(target_of(x));
      ids.push_back(data::image_id(sample->id));
      copy(x, View(batch.data() + i * 3 * a.size * a.size, Shape{1, 3, a.size, a.size}, Device::cpu()));
    }
    const Tensor xs = batch.to(device);
    std::string text = std::string(kRandomizationHeader) + "\n";
    for (const std::string& method : methods) {
      const analysis::RandomizationResult r = analysis::cascading_randomization(
          net,
          [&](auto& model, CView x, std::span<const int> t) { return attribution(model, method, x, t, a); },
          xs, targets, {.seed = a.seed});
      json stages = json::array();
      for (std::size_t k = 0; k < r.stages.size(); ++k) {
        for (std::int64_t i = 0; i < n; ++i) {
          const analysis::RandomizationScores& sc = r.scores[k][static_cast<std::size_t>(i)];
          text +=
              data::csv_row({method, r.stages[k].name, ids[static_cast<std::size_t>(i)],
                             frac(sc.heatmap_spearman), frac(sc.signed_spearman), frac(sc.heatmap_ssim)}) +
              "\n";
        }
        stages.push_back(json{{"stage", r.stages[k].name},
                              {"heatmap_spearman", r.mean[k].heatmap_spearman},
                              {"signed_spearman", r.mean[k].signed_spearman},
                              {"heatmap_ssim", r.mean[k].heatmap_ssim}});
      }
      randomization[method] = stages;
      const analysis::RandomizationScores& last = r.mean.back();
      randomized[method] = last.heatmap_spearman;
      const auto three = [](double v) {
        char buf[32];
        std::snprintf(buf, sizeof buf, "%.3f", v);
        return std::string(buf);
      };
      run.log("saliency: randomisation check, " + method +
              ": after randomising every layer, heatmap Spearman " + three(last.heatmap_spearman) +
              ", signed Spearman " + three(last.signed_spearman) + ", SSIM " + three(last.heatmap_ssim) +
              " (1 = unchanged)");
    }
    io::write_file_atomically(fs::path(a.out) / "randomization.csv", text);
  }

  json summary = json::object();
  SaliencySummary result;
  result.images = static_cast<std::int64_t>(images.size());
  for (const std::string& method : methods)
    result.union_scores[method] = {eval::kNaN, eval::kNaN, eval::kNaN,
                                   randomized.count(method) ? randomized[method] : eval::kNaN};
  for (const auto& [key, t] : totals) {
    const auto mean_of = [&](int k) { return t[2 * k + 1] > 0 ? t[2 * k] / t[2 * k + 1] : eval::kNaN; };
    summary[key.first][key.second] = json{{"mass_inside", mean_of(0)},
                                          {"rank_accuracy", mean_of(1)},
                                          {"pointing_game", mean_of(2)},
                                          {"chance", mean_of(3)},
                                          {"images", t[1]}};
    if (key.second == "MA+HE+EX") {
      SaliencySummary::Scores& sc = result.union_scores[key.first];
      sc.mass_inside = mean_of(0), sc.rank_accuracy = mean_of(1), sc.pointing_game = mean_of(2);
      result.union_chance = mean_of(3);
    }
  }
  json out{{"images", images.size()}, {"methods", summary}};
  if (a.randomization > 0) out["randomization"] = randomization;
  io::write_file_atomically(fs::path(a.out) / "saliency.json", out.dump(2) + "\n");
  io::write_file_atomically(fs::path(a.out) / "saliency.svg",
                            saliency_svg(methods, summary, size_rows, randomization));
  run.log("saliency: wrote saliency.csv, saliency_by_size.csv, saliency.json, saliency.svg" +
          std::string(a.overlays ? " and maps/" : ""));
  return result;
}

}  // namespace fovea::tools::drivers
