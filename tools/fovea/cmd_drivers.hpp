// tools/fovea/cmd_drivers.hpp: the command-line side of the experiment drivers: `fovea pretrain`,
// `fovea finetune`, `fovea evaluate`, `fovea robustness` and `fovea study` (the README's main job:
// synthetic data -> SimCLR pretraining -> fine-tuning from it and from random initialisation ->
// evaluation, robustness, saliency and feature statistics side by side).
#pragma once

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "cmd_compare.hpp"
#include "cmd_features.hpp"
#include "cmd_generate.hpp"
#include "config_file.hpp"
#include "drivers.hpp"
#include "fovea/core/device.hpp"
#include "fovea/core/error.hpp"
#include "fovea/io/atomic_file.hpp"
#include "fovea/io/folder_lock.hpp"
#include "fovea/io/svg_plot.hpp"
#include "fovea/models/resnet.hpp"

namespace fovea::tools {

inline int run_pretrain(const PretrainArgs& a) {
  if (a.arch == "resnet18") return drivers::pretrain<models::ResNet18Backbone>(a);
  if (a.arch == "resnet34") return drivers::pretrain<models::ResNet34Backbone>(a);
  if (a.arch == "resnet50") return drivers::pretrain<models::ResNet50Backbone>(a);
  FOVEA_FAIL("unknown architecture '", a.arch, "' (expected resnet18, resnet34 or resnet50)");
}
inline int run_finetune(const FinetuneArgs& a) {
  if (a.arch == "resnet18") return drivers::finetune<models::ResNet18Backbone>(a);
  if (a.arch == "resnet34") return drivers::finetune<models::ResNet34Backbone>(a);
  if (a.arch == "resnet50") return drivers::finetune<models::ResNet50Backbone>(a);
  FOVEA_FAIL("unknown architecture '", a.arch, "' (expected resnet18, resnet34 or resnet50)");
}
inline EvalSummary run_evaluate(const EvaluateArgs& a) {
  if (a.arch == "resnet18") return drivers::evaluate<models::ResNet18Backbone>(a);
  if (a.arch == "resnet34") return drivers::evaluate<models::ResNet34Backbone>(a);
  if (a.arch == "resnet50") return drivers::evaluate<models::ResNet50Backbone>(a);
  FOVEA_FAIL("unknown architecture '", a.arch, "' (expected resnet18, resnet34 or resnet50)");
}

inline RobustnessSummary run_robustness(const RobustnessArgs& a) {
  if (a.arch == "resnet18") return drivers::robustness<models::ResNet18Backbone>(a);
  if (a.arch == "resnet34") return drivers::robustness<models::ResNet34Backbone>(a);
  if (a.arch == "resnet50") return drivers::robustness<models::ResNet50Backbone>(a);
  FOVEA_FAIL("unknown architecture '", a.arch, "' (expected resnet18, resnet34 or resnet50)");
}

inline SaliencySummary run_saliency(const SaliencyArgs& a) {
  if (a.arch == "resnet18") return drivers::saliency<models::ResNet18Backbone>(a);
  if (a.arch == "resnet34") return drivers::saliency<models::ResNet34Backbone>(a);
  if (a.arch == "resnet50") return drivers::saliency<models::ResNet50Backbone>(a);
  FOVEA_FAIL("unknown architecture '", a.arch, "' (expected resnet18, resnet34 or resnet50)");
}

namespace detail {
// --deterministic and --no-tf32 (RunArgs; the study passes them to every stage).
inline void add_math_flags(CLI::App* c, bool& deterministic, bool& tf32) {
  c->add_flag(
      "--deterministic", deterministic,
      "GPU: only cuDNN algorithms that give bitwise-identical results run to run (CPU runs always do)");
  c->add_flag("--tf32,!--no-tf32", tf32,
              "GPU: TF32 tensor cores for convolutions and GEMMs (the default); --no-tf32: full fp32");
}
// --preprocess (RunArgs::preprocess; the study passes it to every stage).
inline void add_preprocess_flag(CLI::App* c, std::string& preprocess) {
  c->add_option("--preprocess", preprocess,
                "resize (Resize + CenterCrop), fov (square crop around the field of view, then resize) or "
                "graham (fov, then Ben Graham's local contrast normalisation)")
      ->capture_default_str()
      ->check(CLI::IsMember({"resize", "fov", "graham"}));
}
inline void add_run_flags(CLI::App* c, RunArgs& a) {
  c->add_option("--data", a.data, "data folder (labels.csv + images, APTOS, class folders)");
  c->add_option("--labels", a.labels, "label CSV (default: <data>/labels.csv)");
  c->add_option("--arch", a.arch, "resnet18, resnet34 or resnet50")->capture_default_str();
  c->add_option("--out", a.out, "output folder (required)");
  add_config_flag(c, a.config);
  c->add_option("--device", a.device, "auto, cpu, cuda or cuda:N")->capture_default_str();
  c->add_option("--normalization", a.normalization, "dr or imagenet statistics")->capture_default_str();
  c->add_option("--size", a.size, "input side in pixels")->capture_default_str()->check(CLI::Range(16, 4096));
  c->add_option("--width", a.width, "ResNet width multiplier")->capture_default_str()->check(CLI::PositiveNumber);
  c->add_flag("--small-stem", a.small_stem, "3x3 stride-1 stem without max-pool (32-128 px inputs)");
  c->add_option("--epochs", a.epochs, "epochs")->capture_default_str()->check(CLI::Range(1, 100000));
  c->add_option("--batch-size", a.batch_size, "batch size")->capture_default_str()->check(CLI::Range(1, 65536));
  c->add_option("--lr", a.lr, "base learning rate (0: the method's default)")->capture_default_str();
  c->add_option("--weight-decay", a.weight_decay, "weight decay (< 0: the method's default)")->capture_default_str();
  c->add_option("--warmup-epochs", a.warmup_epochs, "warm-up epochs (< 0: the method's default)")->capture_default_str();
  c->add_option("--seed", a.seed, "seed of every random draw")->capture_default_str();
  c->add_option("--threads", a.threads, "loader threads")->capture_default_str()->check(CLI::Range(0, 256));
  c->add_option("--log-every", a.log_every, "steps between metrics rows")->capture_default_str()->check(CLI::Range(1, 1000000));
  c->add_option("--checkpoint-every", a.checkpoint_every,
                 "steps between mid-epoch checkpoints (0: only at epoch ends)")->capture_default_str()->check(CLI::Range(0, 100000000));
  c->add_flag("!--no-resume", a.resume, "start over even when <out>/checkpoints/latest exists");
  c->add_flag("--skip-bad-images", a.skip_bad_images,
              "drop images that are missing or do not decode (each decoded once first) instead of stopping; "
              "they are listed in <out>/skipped_images.csv");
  c->add_option("--image-cache", a.image_cache,
                "folder for a disk cache of the decoded, resized images: each decoded once across epochs and "
                "runs (stored in 8 bits)");
  add_preprocess_flag(c, a.preprocess);
  add_math_flags(c, a.deterministic, a.tf32);
}
}  // namespace detail

// Whether an option was set (on the command line or by --config) to something other than its
// default (a run's config.json lists every setting, the unused ones at their defaults).
inline bool set_away_from_default(const CLI::Option* o) {
  if (o == nullptr || o->count() == 0) return false;
  const std::string value = o->as<std::string>(), fallback = o->get_default_str();
  if (value == fallback) return false;
  try {
    const double a = std::stod(value), b = std::stod(fallback);
    return std::abs(a - b) > 1e-6 * std::max(1.0, std::abs(b));
  } catch (const std::exception&) {
    return true;
  }
}

// Flags that do not apply together are errors, not silently ignored: each of `flags` set away
// from its default contradicts the setting described by `because`.
inline void reject_flags(CLI::App& cmd, std::initializer_list<const char*> flags, const std::string& because) {
  for (const char* flag : flags)
    FOVEA_CHECK(!set_away_from_default(cmd.get_option_no_throw(flag)), "fovea ", cmd.get_name(), ": ", flag,
                " does not apply ", because);
}

// --augment / --pretrain-augment: a usage error (exit 2) naming the preset, key or value that
// data::parse_augment rejects.
inline CLI::Validator augment_validator() {
  return CLI::Validator(
      [](std::string& text) -> std::string {
        try {
          (void)data::parse_augment(text, data::simclr(64));
          return {};
        } catch (const fovea::Error& e) {
          const std::string what = e.what();
          const auto at = what.find("augmentation '");
          return at == std::string::npos ? what : what.substr(at);
        }
      },
      "AUGMENT");
}

// The main job: small enough for a CPU in minutes by default; --full for the GPU-sized study.
struct StudyArgs {
  std::string data, out = "runs/study", arch = "resnet18", device = "auto";
  // 10 SimCLR epochs over the 144 training images of the default 240 (4 steps each): about the 42
  // steps that 6 epochs over all 240 took before pretraining held the validation and test patients out.
  std::int64_t count = 240, pretrain_epochs = 10, finetune_epochs = 12, batch_size = 32;
  int size = 64, generate_size = 96, threads = 2;
  float width = 0.25f;
  std::uint64_t seed = 0;
  bool full = false;
  std::string config;
  std::string sampler = "shuffled", class_weights = "none";
  std::string regimes = "simclr,random", protocols = "finetune", label_fractions = "1";
  std::string imagenet_weights;  // torchvision ResNet weights for the imagenet* regimes
  std::string corruptions = "all", severities = "1,2,3,4,5";            // robustness stage ("none": skipped)
  std::string saliency = "gradient,integrated_gradients,grad_cam,lrp";  // saliency stage ("none": skipped)
  std::int64_t saliency_count = 40, saliency_randomization = 4;
  std::string features = "all";  // feature-statistics stage: fovea features --layers ("none": skipped)
  std::int64_t features_count = 512;
  std::string seeds;  // replicates: comma-separated seeds, each run in <out>/seed_<k> (empty: one run)
  // External test sets: auto (the synthetic default data: a second site's synthetic images; with
  // --data: none), none, or NAME=PATH,... (a labelled folder or label CSV each).
  std::string external = "auto";
  bool deterministic = false, tf32 = true;  // GPU math of every stage (RunArgs)
  bool skip_bad_images = false;             // every stage's RunArgs::skip_bad_images
  std::string image_cache;                  // every stage's RunArgs::image_cache
  std::string preprocess = "resize";        // every stage's RunArgs::preprocess (and features')
  // What pretraining learns from (PretrainArgs::images): train (the training patients of the
  // replicate's split, the fine-tuning stages' own) or all (every image, the held-out ones included).
  std::string pretrain_images = "train";
  // The SimCLR / MoCo v2 views' augmentation (PretrainArgs::augment): empty for each method's preset.
  std::string pretrain_augment;
};

// One external test set of the study: every model is evaluated on all of its labelled images.
struct StudyExternal {
  std::string name;
  std::string data;    // the image folder
  std::string labels;  // a label CSV, or empty: the folder's own (load_dataset's rules)
};

// Seed offset of the synthetic external set (its patients are not the training data's).
inline constexpr std::uint64_t kStudyExternalSeedOffset = 7919;

// --external NAME=PATH,...: PATH a folder (its labels.csv, trainLabels.csv, train.csv or
// messidor_data.csv, or class folders) or a label CSV file (images looked up beside it). Names are
// letters, digits, '_', '-' and '.', distinct, and not "test" (the test split's name in the tables).
inline std::vector<StudyExternal> study_external_list(const std::string& text) {
  namespace fs = std::filesystem;
  std::vector<StudyExternal> sets;
  std::stringstream in(text);
  std::string item;
  while (std::getline(in, item, ',')) {
    const std::size_t eq = item.find('=');
    FOVEA_CHECK(eq != std::string::npos && eq > 0 && eq + 1 < item.size(), "--external: '", item,
                "' is not NAME=PATH (e.g. messidor2=/data/messidor-2)");
    StudyExternal e;
    e.name = item.substr(0, eq);
    const std::string path = item.substr(eq + 1);
    for (const char c : e.name)
      FOVEA_CHECK(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.',
                  "--external: name '", e.name, "' may hold only letters, digits, '_', '-' and '.'");
    FOVEA_CHECK(
        std::none_of(sets.begin(), sets.end(), [&](const StudyExternal& o) { return o.name == e.name; }),
        "--external: the name '", e.name, "' appears twice");
    FOVEA_CHECK(e.name != "test",
                "--external: the name 'test' is the test split's in the study's tables; "
                "choose another");
    std::error_code ec;
    if (fs::is_regular_file(path, ec)) {
      e.labels = path;
      const fs::path parent = fs::path(path).parent_path();
      e.data = parent.empty() ? "." : parent.string();
    } else {
      FOVEA_CHECK(fs::is_directory(path, ec), "--external: '", path, "' (set ", e.name,
                  ") is neither a folder nor a label file");
      e.data = path;
    }
    sets.push_back(std::move(e));
  }
  FOVEA_CHECK(!sets.empty(), "--external: no set in '", text, "'");
  return sets;
}

// --seeds: comma-separated distinct unsigned integers (the study's replicates).
inline std::vector<std::uint64_t> study_seed_list(const std::string& text) {
  std::vector<std::uint64_t> seeds;
  std::stringstream in(text);
  std::string item;
  while (std::getline(in, item, ',')) {
    std::uint64_t v = 0;
    const auto [end, ec] = std::from_chars(item.data(), item.data() + item.size(), v);
    FOVEA_CHECK(ec == std::errc() && end == item.data() + item.size() && !item.empty(), "--seeds: '", item,
                "' is not a seed (expected e.g. 0,1,2)");
    FOVEA_CHECK(std::find(seeds.begin(), seeds.end(), v) == seeds.end(), "--seeds: seed ", v,
                " appears twice");
    seeds.push_back(v);
  }
  FOVEA_CHECK(!seeds.empty(), "--seeds: no seed in '", text, "'");
  return seeds;
}

// The spread of the study's summary figures over its replicates: reads <out>/seed_<k>/study.json
// for every seed and writes <out>/study_seeds.json and study_seeds.csv (one row per regime, protocol,
// label fraction and figure: the seeds' values, their mean, standard deviation (ddof 1), min and max,
// the mean's 95 % t interval and, for the paired differences from the reference, the one-sample t
// test of a mean difference of 0) and prints them. Figures: kappa, referable AUC and accuracy per cell, on
// the test split and on each external set (external_<name>_kappa, ...); the mean corrupted error and mCE per
// regime; the relevance mass inside the lesions per regime and method; the median CN and the mean CKA with
// the reference per regime.
inline void summarise_study_replicates(const std::string& out, const std::vector<std::uint64_t>& seeds) {
  namespace fs = std::filesystem;
  using json = nlohmann::json;
  struct Row {
    std::string regime, protocol, metric;
    double fraction = std::nan("");
    std::vector<double> values;  // one per seed, NaN where the figure is undefined
  };
  std::vector<Row> rows;
  auto add = [&](std::size_t seed_index, const std::string& regime, const std::string& protocol,
                 double fraction, const std::string& metric, const json& value) {
    const double v = value.is_number() ? value.get<double>() : std::nan("");
    auto it = std::find_if(rows.begin(), rows.end(), [&](const Row& r) {
      return r.regime == regime && r.protocol == protocol && r.metric == metric &&
             (r.fraction == fraction || (std::isnan(r.fraction) && std::isnan(fraction)));
    });
    if (it == rows.end()) {
      rows.push_back(
          Row{regime, protocol, metric, fraction, std::vector<double>(seeds.size(), std::nan(""))});
      it = rows.end() - 1;
    }
    it->values[seed_index] = v;
  };
  for (std::size_t k = 0; k < seeds.size(); ++k) {
    const fs::path file = fs::path(out) / ("seed_" + std::to_string(seeds[k])) / "study.json";
    std::ifstream in(file);
    FOVEA_CHECK(in.good(), "study: cannot read ", file.string());
    json j;
    try {
      j = json::parse(in);
    } catch (const json::exception& e) {
      FOVEA_FAIL("study: ", file.string(), " is not valid JSON: ", e.what());
    }
    try {  // a key missing or of another type: name the file, not just the key
      for (const json& c : j.at("cells"))
        for (const char* m : {"kappa", "referable_auc", "accuracy"})
          add(k, c.at("regime"), c.at("protocol"), c.at("label_fraction").get<double>(), m,
              c.at("metrics").at(m).at("point"));
      if (j.contains("external") && j["external"].is_array())
        for (const json& set : j["external"])
          for (const json& c : set.at("cells"))
            for (const char* m : {"kappa", "referable_auc", "accuracy"})
              add(k, c.at("regime"), c.at("protocol"), c.at("label_fraction").get<double>(),
                  "external_" + set.at("name").get<std::string>() + "_" + m, c.at("metrics").at(m).at("point"));
      if (j.contains("comparisons") && j["comparisons"].is_array())
        for (const json& c : j["comparisons"]) {
          const std::string set = c.at("set").get<std::string>() == "test"
                                      ? ""
                                      : "external_" + c.at("set").get<std::string>() + "_";
          const std::string vs = "_diff_vs_" + c.at("reference").get<std::string>();
          const json& x = c.at("comparison");
          add(k, c.at("regime"), c.at("protocol"), c.at("label_fraction").get<double>(), set + "kappa" + vs,
              x.at("quadratic_weighted_kappa").at("difference").at("point"));
          add(k, c.at("regime"), c.at("protocol"), c.at("label_fraction").get<double>(),
              set + "referable_auc" + vs, x.at("referable").at("delong").at("difference"));
          add(k, c.at("regime"), c.at("protocol"), c.at("label_fraction").get<double>(), set + "accuracy" + vs,
              x.at("accuracy").at("difference").at("point"));
        }
      if (j.contains("robustness") && j["robustness"].is_object())
        for (const auto& [regime, r] : j["robustness"].items()) {
          add(k, regime, "", std::nan(""), "mean_corrupted_error", r.at("mean_error"));
          add(k, regime, "", std::nan(""), "mce", r.at("mce"));
        }
      if (j.contains("saliency") && j["saliency"].is_object())
        for (const auto& [regime, r] : j["saliency"].items())
          for (const auto& [method, sc] : r.at("methods").items())
            add(k, regime, "", std::nan(""), "mass_inside_" + method, sc.at("mass_inside"));
      if (j.contains("features") && j["features"].is_object())
        for (const auto& [regime, r] : j["features"].items()) {
          add(k, regime, "", std::nan(""), "median_cn", r.at("median_cn"));
          add(k, regime, "", std::nan(""), "mean_cka_reference", r.at("mean_cka_reference"));
        }
    } catch (const json::exception& e) {
      FOVEA_FAIL("study: ", file.string(), " is not a study.json this fovea wrote (", e.what(),
                 "); rerun that seed's study");
    }
  }
  auto number = [](double v) { return std::isfinite(v) ? json(v) : json(nullptr); };
  json j_rows = json::array();
  std::string csv =
      "regime,protocol,label_fraction,metric,seeds,mean,sd,min,max,mean_low,mean_high,p_mean_zero,values\n";
  std::printf("\nstudy: %zu replicates (seeds", seeds.size());
  for (std::size_t k = 0; k < seeds.size(); ++k)
    std::printf("%s%llu", k ? "," : " ", static_cast<unsigned long long>(seeds[k]));
  std::printf(
      "): mean, standard deviation, range and the mean's 95%% t interval over the seeds; for the paired "
      "differences (_diff_vs_) the one-sample t test of a mean difference of 0\n");
  std::printf("%-16s %-9s %-7s %-36s %-5s %-9s %-9s %-9s %-9s %-20s %s\n", "regime", "protocol", "labels",
              "figure", "seeds", "mean", "sd", "min", "max", "mean, 95% CI", "p");
  for (const Row& r : rows) {
    std::vector<double> v;
    for (double x : r.values)
      if (std::isfinite(x)) v.push_back(x);
    if (v.empty()) continue;  // undefined in every replicate (the reference's mCE and CKA with itself)
    const eval::MeanInterval m = eval::mean_interval(v);
    const double mean = m.mean, sd = m.sd;
    // the t test of 0 is a question only for differences (a kappa of 0 is no null hypothesis)
    const double p = r.metric.find("_diff_vs_") != std::string::npos ? m.p_value : std::nan("");
    const double lo = *std::min_element(v.begin(), v.end()), hi = *std::max_element(v.begin(), v.end());
    char labels[32] = "", interval[64] = "";
    if (!std::isnan(r.fraction)) std::snprintf(labels, sizeof labels, "%g%%", 100.0 * r.fraction);
    if (!std::isnan(m.low)) std::snprintf(interval, sizeof interval, "[%.4f, %.4f]", m.low, m.high);
    std::printf("%-16s %-9s %-7s %-36s %-5zu %-9.4f %-9.4f %-9.4f %-9.4f %-20s %s\n", r.regime.c_str(),
                r.protocol.c_str(), labels, r.metric.c_str(), v.size(), mean, sd, lo, hi, interval,
                std::isnan(p) ? "" : p_text(p).c_str());
    json values = json::array();
    std::string joined;
    for (std::size_t k = 0; k < r.values.size(); ++k) {
      values.push_back(number(r.values[k]));
      char buf[40];
      std::snprintf(buf, sizeof buf, "%s%.17g", k ? ";" : "", r.values[k]);
      joined += buf;
    }
    char fraction[40] = "";
    if (!std::isnan(r.fraction)) std::snprintf(fraction, sizeof fraction, "%.17g", r.fraction);
    char line[512];
    std::snprintf(line, sizeof line, "%s,%s,%s,%s,%zu,%.17g,%.17g,%.17g,%.17g,%.17g,%.17g,%.17g,%s\n",
                  r.regime.c_str(), r.protocol.c_str(), fraction, r.metric.c_str(), v.size(), mean, sd, lo,
                  hi, m.low, m.high, p, joined.c_str());
    csv += line;
    j_rows.push_back(json{{"regime", r.regime},
                          {"protocol", r.protocol.empty() ? json(nullptr) : json(r.protocol)},
                          {"label_fraction", number(r.fraction)},
                          {"metric", r.metric},
                          {"seeds", v.size()},
                          {"values", values},
                          {"mean", number(mean)},
                          {"sd", number(sd)},
                          {"min", number(lo)},
                          {"max", number(hi)},
                          {"mean_low", number(m.low)},
                          {"mean_high", number(m.high)},
                          {"p_mean_zero", number(p)}});
  }
  const json summary{{"seeds", seeds}, {"replicates", seeds.size()}, {"rows", j_rows}};
  io::write_file_atomically(fs::path(out) / "study_seeds.json", summary.dump(2) + "\n");
  io::write_file_atomically(fs::path(out) / "study_seeds.csv", csv);
  std::printf("outputs: %s (study_seeds.csv, study_seeds.json; each replicate in seed_<k>/)\n", out.c_str());
}

// "0.780 [0.683, 0.854]": figure k ("kappa", "auc", "accuracy") of an evaluation with its interval.
inline std::string study_interval(const EvalSummary& r, const char* k) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.3f [%.3f, %.3f]", r.point.at(k), r.low.at(k), r.high.at(k));
  return buf;
}

// An evaluation's kappa, referable AUC and accuracy as study.json's metrics object (point, low,
// high; null where undefined); each also appended to `csv` as ",point,low,high".
inline nlohmann::json study_metrics(const EvalSummary& r, std::string& csv) {
  using json = nlohmann::json;
  auto number = [](double v) { return std::isfinite(v) ? json(v) : json(nullptr); };
  json metrics;
  for (const char* k : {"kappa", "auc", "accuracy"}) {
    metrics[k == std::string("auc") ? "referable_auc" : k] =
        json{{"point", number(r.point.at(k))}, {"low", number(r.low.at(k))}, {"high", number(r.high.at(k))}};
    char line[96];
    std::snprintf(line, sizeof line, ",%.17g,%.17g,%.17g", r.point.at(k), r.low.at(k), r.high.at(k));
    csv += line;
  }
  return metrics;
}

// One run of the study's grid (every stage) in a.out, on the labelled images in `data`.
inline void run_study_replicate(const StudyArgs& a, const std::vector<StudyRegime>& regimes,
                                const std::vector<std::string>& protocols,
                                const std::vector<double>& fractions, const std::string& data,
                                const std::vector<StudyExternal>& externals = {}) {
  namespace fs = std::filesystem;
  const bool small = a.size <= 128;
  // Every stage's GPU math (each driver sets them again from its RunArgs; the feature stage has none).
  math_settings().deterministic = a.deterministic;
  math_settings().allow_tf32 = a.tf32;
  auto base = [&](RunArgs& r, const std::string& sub) {
    r.data = data, r.arch = a.arch, r.out = (fs::path(a.out) / sub).string(), r.device = a.device;
    r.size = a.size, r.width = a.width, r.small_stem = small, r.batch_size = a.batch_size, r.seed = a.seed;
    r.threads = a.threads, r.deterministic = a.deterministic, r.tf32 = a.tf32;
    r.skip_bad_images = a.skip_bad_images, r.image_cache = a.image_cache, r.preprocess = a.preprocess;
  };
  // 1. Pretraining: one SimCLR / MoCo v2 run per self-supervised regime; the backbone each regime
  //    starts its fine-tuning from.
  std::map<std::string, std::string> backbone;
  nlohmann::json pretraining = nlohmann::json::object();  // regime -> its pretrain.json
  for (const StudyRegime& r : regimes) {
    if (r.method.empty()) {
      backbone[r.key] = r.imagenet ? a.imagenet_weights : "random";
      continue;
    }
    PretrainArgs pre;
    base(pre, "pretrain_" + r.key);
    pre.method = r.method;
    pre.epochs = a.pretrain_epochs;
    pre.images = a.pretrain_images;  // the fine-tuning stages' split: FinetuneArgs' fractions and scheme
    pre.augment = a.pretrain_augment;
    const FinetuneArgs split_of;
    pre.val_fraction = split_of.val_fraction, pre.test_fraction = split_of.test_fraction;
    pre.label_scheme = split_of.label_scheme;
    if (r.method == "moco") pre.queue = 0;  // sized to the data set (moco_queue_for)
    if (r.imagenet) pre.init = a.imagenet_weights;
    run_pretrain(pre);
    backbone[r.key] = (fs::path(pre.out) / "backbone.safetensors").string();
    try {
      std::ifstream in(fs::path(pre.out) / "pretrain.json");
      pretraining[r.key] = nlohmann::json::parse(in);
    } catch (const std::exception&) {
      pretraining[r.key] = nullptr;  // not readable: the tables go on without it
    }
  }
  // 2. Fine-tuning or linear evaluation per (regime, protocol, label fraction), each evaluated on
  //    the same held-out patients (the split depends on the seed only).
  struct Cell {
    const StudyRegime* regime;
    std::string protocol;
    double fraction;
    EvalSummary result;
    std::string weights, split;
  };
  std::vector<Cell> cells;
  for (const StudyRegime& r : regimes)
    for (const std::string& protocol : protocols)
      for (const double f : fractions) {
        const std::string tag = study_run_tag(r.key, protocol, f);
        FinetuneArgs ft;
        base(ft, (protocol == "linear" ? "linear_" : "finetune_") + study_run_tag(r.key, "finetune", f));
        ft.epochs = a.finetune_epochs;
        ft.sampler = a.sampler, ft.class_weights = a.class_weights;
        ft.init = backbone[r.key];
        ft.linear = protocol == "linear";
        ft.label_fraction = f;
        run_finetune(ft);
        EvaluateArgs ev;
        base(ev, "evaluate_" + tag);
        ev.weights = (fs::path(ft.out) / "best.safetensors").string();
        ev.split = (fs::path(ft.out) / "split.csv").string();
        cells.push_back({&r, protocol, f, run_evaluate(ev), ev.weights, ev.split});
      }
  // 2b. Every model on each external test set (all of its labelled images).
  struct ExternalResult {
    const StudyExternal* set;
    std::vector<EvalSummary> cells;  // in `cells` order
  };
  std::vector<ExternalResult> external_results;
  for (const StudyExternal& e : externals) {
    ExternalResult er{&e, {}};
    std::string scored_as;  // Messidor-1's 0-3 grades: the graded models scored as referable (>= 2)
    for (const Cell& c : cells) {
      EvaluateArgs ev;
      base(ev, "external_" + e.name + "_" + study_run_tag(c.regime->key, c.protocol, c.fraction));
      ev.data = e.data, ev.labels = e.labels;
      ev.weights = c.weights;
      if (er.cells.empty() && drivers::read_data(ev).num_classes == data::kMessidor1Grades) {
        scored_as = "referable";
        std::printf(
            "study: external set %s holds Messidor-1 grades (0-3, not ICDR): the models are scored as "
            "referable >= %d classifiers there (kappa and accuracy of that binary decision)\n",
            e.name.c_str(), ev.referable_threshold);
      }
      ev.as_binary = scored_as;
      er.cells.push_back(run_evaluate(ev));
    }
    external_results.push_back(std::move(er));
  }
  // Robustness and saliency per regime, on its first protocol's model trained on the most labels.
  const double most = *std::max_element(fractions.begin(), fractions.end());
  const auto primary = [&](const StudyRegime& r) -> const Cell& {
    for (const Cell& c : cells)
      if (c.regime == &r && c.protocol == protocols.front() && c.fraction == most) return c;
    FOVEA_FAIL("study: no run for regime ", r.key);
  };
  // 3. Robustness on the test split, the reference regime (random init when compared) first.
  const bool robustness = a.corruptions != "none";
  std::size_t reference = 0;
  for (std::size_t i = 0; i < regimes.size(); ++i)
    if (regimes[i].key == "random") reference = i;
  std::vector<std::size_t> reference_first{reference};  // the regimes, the reference first
  for (std::size_t i = 0; i < regimes.size(); ++i)
    if (i != reference) reference_first.push_back(i);
  std::map<std::string, RobustnessSummary> robust;
  if (robustness) {
    for (const std::size_t i : reference_first) {
      const Cell& c = primary(regimes[i]);
      RobustnessArgs ra;
      base(ra, "robustness_" + regimes[i].key);
      ra.weights = c.weights, ra.split = c.split;
      ra.corruptions = a.corruptions, ra.severities = a.severities;  // decode_cache_mb: the default
      if (i != reference)
        ra.reference =
            (fs::path(a.out) / ("robustness_" + regimes[reference].key) / "robustness.csv").string();
      robust[regimes[i].key] = run_robustness(ra);
    }
  }
  // 4. Interpretability on the test images with lesion masks: each regime's maps scored against them.
  std::string masks;
  for (const char* name : {"lesions.csv", "lesion_masks.csv"})
    if (masks.empty() && fs::exists(fs::path(data) / name)) masks = (fs::path(data) / name).string();
  const bool saliency = a.saliency != "none" && !masks.empty();
  if (a.saliency != "none" && masks.empty())
    std::cout << "study: no lesions.csv or lesion_masks.csv in " << data << ": saliency stage skipped\n";
  std::map<std::string, SaliencySummary> explained;
  for (const StudyRegime& r : regimes) {
    if (!saliency) break;
    const Cell& c = primary(r);
    SaliencyArgs sa2;
    base(sa2, "saliency_" + r.key);
    sa2.weights = c.weights, sa2.split = c.split, sa2.masks = masks;
    sa2.methods = a.saliency, sa2.count = a.saliency_count, sa2.randomization = a.saliency_randomization;
    explained[r.key] = run_saliency(sa2);
  }
  // 5. Feature statistics on the test images: each regime's CN per layer, and its linear CKA with the
  //    reference regime's model layer by layer (the reference first, so its folder exists).
  const bool features = a.features != "none";
  std::map<std::string, FeaturesSummary> stats;
  if (features) {
    for (const std::size_t i : reference_first) {
      const Cell& c = primary(regimes[i]);
      FeaturesArgs fa;
      fa.arch = a.arch, fa.width = a.width, fa.small_stem = small, fa.size = a.size;
      fa.weights = c.weights, fa.data = data, fa.split = c.split, fa.split_name = "test";
      fa.count = a.features_count, fa.layers = a.features, fa.batch_size = a.batch_size;
      fa.threads = a.threads, fa.seed = a.seed, fa.device = a.device, fa.skip_bad_images = a.skip_bad_images;
      fa.preprocess = a.preprocess;
      fa.out = (fs::path(a.out) / ("features_" + regimes[i].key)).string();
      if (i != reference) fa.compare = primary(regimes[reference]).weights;
      stats[regimes[i].key] = run_features(fa);
    }
  }
  if (!pretraining.empty()) {
    // Whether each contrastive stage learned anything: its loss against chance (drivers::pretrain_check).
    std::printf(
        "\nstudy: pretraining, means of the last logged steps against chance (every similarity equal)\n");
    std::printf("%-18s %-7s %-9s %-9s %-16s %-12s %-14s %s\n", "regime", "steps", "loss", "chance",
                "contrastive top-1", "chance", "effective rank", "");
    for (const StudyRegime& r : regimes) {
      const auto it = pretraining.find(r.key);
      if (it == pretraining.end() || !it->is_object()) continue;
      const auto num = [&](const char* k) {
        return it->contains(k) && (*it)[k].is_number() ? (*it)[k].get<double>() : eval::kNaN;
      };
      std::printf("%-18s %-7lld %-9.4f %-9.4f %-16.3f %-12.4f %-14.1f %s\n", r.label,
                  static_cast<long long>(num("steps")), num("loss"), num("chance_loss"),
                  num("contrastive_top1"), num("chance_top1"), num("effective_rank"),
                  it->value("left_chance", false) ? "learned"
                                                  : "at chance: fine-tuning from it is close to random init");
    }
  }
  std::printf("\nstudy: test split (%lld images), 95%% bootstrap CIs\n",
              static_cast<long long>(cells.front().result.images));
  std::printf("%-18s %-9s %-7s %-24s %-24s %-24s\n", "regime", "protocol", "labels", "quadratic kappa",
              "referable AUC", "accuracy");
  for (const Cell& c : cells) {
    auto cell = [&](const char* k) { return study_interval(c.result, k); };
    char labels[16];
    std::snprintf(labels, sizeof labels, "%g%%", 100.0 * c.fraction);
    std::printf("%-18s %-9s %-7s %-24s %-24s %-24s\n", c.regime->label, c.protocol.c_str(), labels,
                cell("kappa").c_str(), cell("auc").c_str(), cell("accuracy").c_str());
  }
  for (const ExternalResult& er : external_results) {
    char left_out[64] = "";
    if (er.cells.front().excluded > 0)
      std::snprintf(left_out, sizeof left_out, "; %lld rows left out (ungradable)",
                    static_cast<long long>(er.cells.front().excluded));
    const std::string binary = er.cells.front().as_binary;
    std::printf(
        "\nstudy: external test set %s (%lld images, %s%s), 95%% bootstrap CIs; %s\n", er.set->name.c_str(),
        static_cast<long long>(er.cells.front().images),
        (er.set->labels.empty() ? er.set->data : er.set->labels).c_str(), left_out,
        binary.empty()
            ? "kappa change from the test split"
            : ("the grades scored as " + binary + ": kappa and accuracy of that binary decision").c_str());
    std::printf("%-18s %-9s %-7s %-24s %-24s %-24s %s\n", "regime", "protocol", "labels", "quadratic kappa",
                "referable AUC", "accuracy", "kappa change");
    for (std::size_t i = 0; i < cells.size(); ++i) {
      const Cell& c = cells[i];
      const EvalSummary& r = er.cells[i];
      auto cell = [&](const char* k) { return study_interval(r, k); };
      char labels[16];
      std::snprintf(labels, sizeof labels, "%g%%", 100.0 * c.fraction);
      char change[32] = "n/a";  // a binary kappa is not comparable with the test split's graded one
      if (r.as_binary.empty())
        std::snprintf(change, sizeof change, "%+.3f", r.point.at("kappa") - c.result.point.at("kappa"));
      std::printf("%-18s %-9s %-7s %-24s %-24s %-24s %s\n", c.regime->label, c.protocol.c_str(), labels,
                  cell("kappa").c_str(), cell("auc").c_str(), cell("accuracy").c_str(), change);
    }
  }
  // Paired comparisons: each cell against the reference regime's cell with the same protocol and
  // label fraction, image by image (eval::compare_predictions), on the test split and each external set.
  struct ComparisonRow {
    std::string set;   // "test", or the external set's name
    std::size_t cell;  // index in `cells`
    eval::Comparison c;
  };
  std::vector<ComparisonRow> comparisons;
  auto compare_set = [&](const std::string& set, auto&& result_of) {
    for (std::size_t i = 0; i < cells.size(); ++i) {
      if (cells[i].regime == &regimes[reference]) continue;
      for (std::size_t j = 0; j < cells.size(); ++j) {
        if (cells[j].regime != &regimes[reference] || cells[j].protocol != cells[i].protocol ||
            cells[j].fraction != cells[i].fraction)
          continue;
        const EvalSummary &x = result_of(i), &y = result_of(j);
        FOVEA_CHECK(x.ids == y.ids && x.labels == y.labels, "study: ", set, ": ", cells[i].regime->key,
                    " and ", cells[j].regime->key, " were not evaluated on the same images");
        comparisons.push_back({set, i,
                               eval::compare_predictions(x.labels, x.probs, y.probs, x.referable_threshold,
                                                         x.resamples, x.seed)});
      }
    }
  };
  compare_set("test", [&](std::size_t i) -> const EvalSummary& { return cells[i].result; });
  for (const ExternalResult& er : external_results)
    compare_set(er.set->name, [&](std::size_t i) -> const EvalSummary& { return er.cells[i]; });
  for (std::size_t k = 0; k < comparisons.size(); ++k) {
    const ComparisonRow& row = comparisons[k];
    if (k == 0 || comparisons[k - 1].set != row.set) {
      std::printf(
          "\nstudy: paired comparison with %s on %s (%lld images): differences regime - %s, 95%% CIs, "
          "two-sided p\n",
          regimes[reference].label, row.set == "test" ? "the test split" : row.set.c_str(),
          static_cast<long long>(row.c.n), regimes[reference].label);
      std::printf("%-18s %-9s %-7s %-26s %-7s %-26s %-7s %-26s %s\n", "regime", "protocol", "labels",
                  "kappa (paired bootstrap)", "p", "referable AUC (DeLong)", "p", "accuracy", "p (McNemar)");
    }
    const Cell& c = cells[row.cell];
    const eval::Comparison& x = row.c;
    char labels[16];
    std::snprintf(labels, sizeof labels, "%g%%", 100.0 * c.fraction);
    std::printf(
        "%-18s %-9s %-7s %-26s %-7s %-26s %-7s %-26s %s\n", c.regime->label, c.protocol.c_str(), labels,
        difference_text(x.kappa.difference.point, x.kappa.difference.low, x.kappa.difference.high).c_str(),
        p_text(x.kappa.p_value).c_str(),
        difference_text(x.delong.difference, x.delong.low, x.delong.high).c_str(),
        p_text(x.delong.p_value).c_str(),
        difference_text(x.accuracy.difference.point, x.accuracy.difference.low, x.accuracy.difference.high)
            .c_str(),
        p_text(x.mcnemar.p_value).c_str());
  }
  if (robustness) {
    std::printf("\nstudy: robustness on the test split (corruptions %s, severities %s; %s models)\n",
                a.corruptions.c_str(), a.severities.c_str(), protocols.front().c_str());
    std::printf("%-18s %-12s %-16s %-16s mCE vs %s\n", "regime", "clean error", "corrupted error",
                "corrupted kappa", regimes[reference].label);
    for (const StudyRegime& r : regimes) {
      const RobustnessSummary& rs = robust.at(r.key);
      std::printf("%-18s %-12.3f %-16.3f %-16.3f %-16.3f\n", r.label, rs.clean_error, rs.mean_error,
                  rs.mean_kappa, &r == &regimes[reference] ? 1.0 : rs.mce);
    }
  }
  if (saliency) {
    std::printf("\nstudy: saliency against the MA+HE+EX lesion masks (%lld test images, means; %s models)\n",
                static_cast<long long>(explained.begin()->second.images), protocols.front().c_str());
    std::printf("%-18s %-22s %-12s %-14s %-14s %-s\n", "regime", "method", "mass inside", "rank accuracy",
                "pointing game", "randomised net (Spearman)");
    std::printf("%-18s %-22s %-12.3f %-14.3f\n", "", "chance level", explained.begin()->second.union_chance,
                explained.begin()->second.union_chance);
    for (const StudyRegime& r : regimes)
      for (const auto& [method, sc] : explained.at(r.key).union_scores)
        std::printf("%-18s %-22s %-12.3f %-14.3f %-14.3f %.3f\n", r.label, method.c_str(), sc.mass_inside,
                    sc.rank_accuracy, sc.pointing_game, sc.randomized_spearman);
  }
  // Per regime: the median and largest CN over the layers, the first conv's kurtosis, and the mean
  // over the layers of the CKA with the reference model's same layer (and at the last layer).
  struct FeatureRow {
    double median_cn = std::nan(""), max_cn = std::nan(""), mean_cka = std::nan(""), last_cka = std::nan("");
    std::string max_layer;
  };
  std::map<std::string, FeatureRow> feature_rows;
  for (const auto& [key, st] : stats) {
    FeatureRow row;
    std::vector<double> finite;
    for (std::size_t l = 0; l < st.cn.size(); ++l) {
      if (!std::isfinite(st.cn[l])) continue;
      finite.push_back(st.cn[l]);
      if (!(st.cn[l] <= row.max_cn)) row.max_cn = st.cn[l], row.max_layer = st.layers[l];
    }
    if (!finite.empty()) {
      std::sort(finite.begin(), finite.end());
      const std::size_t h = finite.size() / 2;
      row.median_cn = finite.size() % 2 ? finite[h] : 0.5 * (finite[h - 1] + finite[h]);
    }
    if (!st.cka_compare.empty()) {
      double sum = 0;
      std::size_t k = 0;
      for (const double v : st.cka_compare)
        if (std::isfinite(v)) sum += v, ++k;
      if (k > 0) row.mean_cka = sum / static_cast<double>(k);
      row.last_cka = st.cka_compare.back();
    }
    feature_rows[key] = row;
  }
  if (features) {
    const FeaturesSummary& ref = stats.at(regimes[reference].key);
    std::printf(
        "\nstudy: feature statistics on the test split (%lld images; %s models; %zu layers): CN(%g, %g) of "
        "the standardised activations, linear CKA with %s layer by layer\n",
        static_cast<long long>(ref.images), protocols.front().c_str(), ref.layers.size(), ref.p1, ref.p2,
        regimes[reference].label);
    const std::string kurtosis =
        (ref.first_conv.empty() ? std::string("first conv") : ref.first_conv) + " kurtosis";
    const std::string last = "CKA at " + (ref.layers.empty() ? std::string("?") : ref.layers.back());
    std::printf("%-18s %-11s %-11s %-20s %-16s %-11s %s\n", "regime", "median CN", "max CN", "max CN at",
                kurtosis.c_str(), "mean CKA", last.c_str());
    for (const StudyRegime& r : regimes) {
      const FeatureRow& row = feature_rows.at(r.key);
      const bool is_ref = &r == &regimes[reference];
      std::printf("%-18s %-11.4g %-11.4g %-20s %-16.3f %-11.3f %.3f\n", r.label, row.median_cn, row.max_cn,
                  row.max_layer.c_str(), stats.at(r.key).first_conv_kurtosis, is_ref ? 1.0 : row.mean_cka,
                  is_ref ? 1.0 : row.last_cka);
    }
  }
  // study.json, study.csv and study.svg: the tables above as files, and as a figure.
  using json = nlohmann::json;
  auto number = [](double v) { return std::isfinite(v) ? json(v) : json(nullptr); };
  json j_cells = json::array();
  std::string csv =
      "regime,protocol,label_fraction,images,kappa,kappa_low,kappa_high,referable_auc,referable_auc_low,"
      "referable_auc_high,accuracy,accuracy_low,accuracy_high\n";
  for (const Cell& c : cells) {
    char line[512];
    std::snprintf(line, sizeof line, "%s,%s,%.17g,%lld", c.regime->key.c_str(), c.protocol.c_str(),
                  c.fraction, static_cast<long long>(c.result.images));
    csv += line;
    const json metrics = study_metrics(c.result, csv);
    csv += "\n";
    j_cells.push_back(json{{"regime", c.regime->key},
                           {"protocol", c.protocol},
                           {"label_fraction", c.fraction},
                           {"images", c.result.images},
                           {"weights", c.weights},
                           {"metrics", metrics}});
  }
  // External test sets: study.json "external" and study_external.csv.
  json j_external = json::array();
  std::string external_csv =
      "set,regime,protocol,label_fraction,images,kappa,kappa_low,kappa_high,referable_auc,referable_auc_low,"
      "referable_auc_high,accuracy,accuracy_low,accuracy_high,kappa_change\n";
  for (const ExternalResult& er : external_results) {
    json set_cells = json::array();
    for (std::size_t i = 0; i < cells.size(); ++i) {
      const Cell& c = cells[i];
      const EvalSummary& r = er.cells[i];
      char line[512];
      std::snprintf(line, sizeof line, "%s,%s,%s,%.17g,%lld", er.set->name.c_str(), c.regime->key.c_str(),
                    c.protocol.c_str(), c.fraction, static_cast<long long>(r.images));
      external_csv += line;
      const json metrics = study_metrics(r, external_csv);
      const double change =
          r.as_binary.empty() ? r.point.at("kappa") - c.result.point.at("kappa") : std::nan("");
      std::snprintf(line, sizeof line, ",%.17g\n", change);
      external_csv += line;
      set_cells.push_back(json{{"regime", c.regime->key},
                               {"protocol", c.protocol},
                               {"label_fraction", c.fraction},
                               {"images", r.images},
                               {"metrics", metrics},
                               {"kappa_change", number(change)}});
    }
    j_external.push_back(json{
        {"name", er.set->name},
        {"scored_as", er.cells.front().as_binary.empty() ? json("grades") : json(er.cells.front().as_binary)},
        {"data", er.set->data},
        {"labels", er.set->labels.empty() ? json(nullptr) : json(er.set->labels)},
        {"images", er.cells.front().images},
        {"excluded_rows", er.cells.front().excluded},
        {"cells", set_cells}});
  }
  // Paired comparisons: study.json "comparisons" and study_comparisons.csv.
  json j_comparisons = json::array();
  std::string comparisons_csv =
      "set,regime,protocol,label_fraction,reference,images,kappa_difference,kappa_low,kappa_high,kappa_p,"
      "referable_auc_difference,referable_auc_low,referable_auc_high,referable_auc_p_delong,"
      "referable_auc_bootstrap_low,referable_auc_bootstrap_high,referable_auc_bootstrap_p,accuracy_"
      "difference,"
      "accuracy_low,accuracy_high,accuracy_p_mcnemar,only_regime_right,only_reference_right\n";
  for (const ComparisonRow& row : comparisons) {
    const Cell& c = cells[row.cell];
    const eval::Comparison& x = row.c;
    char line[1024];
    std::snprintf(
        line, sizeof line,
        "%s,%s,%s,%.17g,%s,%lld,%.17g,%.17g,%.17g,%.17g,%.17g,%.17g,%.17g,%.17g,%.17g,%.17g,%.17g,%.17g,"
        "%.17g,%.17g,%.17g,%lld,%lld\n",
        row.set.c_str(), c.regime->key.c_str(), c.protocol.c_str(), c.fraction,
        regimes[reference].key.c_str(), static_cast<long long>(x.n), x.kappa.difference.point,
        x.kappa.difference.low, x.kappa.difference.high, x.kappa.p_value, x.delong.difference, x.delong.low,
        x.delong.high, x.delong.p_value, x.referable_auc.difference.low, x.referable_auc.difference.high,
        x.referable_auc.p_value, x.accuracy.difference.point, x.accuracy.difference.low,
        x.accuracy.difference.high, x.mcnemar.p_value, static_cast<long long>(x.mcnemar.only_a),
        static_cast<long long>(x.mcnemar.only_b));
    comparisons_csv += line;
    j_comparisons.push_back(json{{"set", row.set},
                                 {"regime", c.regime->key},
                                 {"protocol", c.protocol},
                                 {"label_fraction", c.fraction},
                                 {"reference", regimes[reference].key},
                                 {"comparison", json::parse(eval::to_json(x))}});
  }
  json j_robust = json::object(), j_saliency = json::object();
  for (const auto& [key, rs] : robust) {
    json by = json::object();
    for (const auto& [v, e] : rs.error_by_severity) by[std::to_string(v)] = number(e);
    j_robust[key] = json{{"clean_error", number(rs.clean_error)},   {"mean_error", number(rs.mean_error)},
                         {"mean_kappa", number(rs.mean_kappa)},     {"mce", number(rs.mce)},
                         {"relative_mce", number(rs.relative_mce)}, {"error_by_severity", by}};
  }
  for (const auto& [key, ss] : explained) {
    json methods = json::object();
    for (const auto& [m, sc] : ss.union_scores)
      methods[m] = json{{"mass_inside", number(sc.mass_inside)},
                        {"rank_accuracy", number(sc.rank_accuracy)},
                        {"pointing_game", number(sc.pointing_game)},
                        {"randomized_spearman", number(sc.randomized_spearman)}};
    j_saliency[key] = json{{"chance", number(ss.union_chance)}, {"images", ss.images}, {"methods", methods}};
  }
  json j_features = json::object();
  std::string features_csv = "regime,layer,kind,cn,cka_reference\n";
  for (const auto& [key, st] : stats) {
    const FeatureRow& row = feature_rows.at(key);
    json layers = json::array();
    for (std::size_t l = 0; l < st.layers.size(); ++l) {
      const double cka = st.cka_compare.empty() ? std::nan("") : st.cka_compare[l];
      layers.push_back(json{{"layer", st.layers[l]},
                            {"kind", st.kinds[l]},
                            {"cn", number(st.cn[l])},
                            {"cka_reference", number(cka)}});
      char line[512];
      std::snprintf(line, sizeof line, "%s,%s,%s,%.17g,%.17g\n", key.c_str(), st.layers[l].c_str(),
                    st.kinds[l].c_str(), st.cn[l], cka);
      features_csv += line;
    }
    j_features[key] = json{
        {"images", st.images},
        {"layers", layers},
        {"median_cn", number(row.median_cn)},
        {"max_cn", number(row.max_cn)},
        {"max_cn_layer", row.max_layer},
        {"first_conv", st.first_conv.empty()
                           ? json(nullptr)
                           : json{{"layer", st.first_conv}, {"kurtosis", number(st.first_conv_kurtosis)}}},
        {"mean_cka_reference", number(row.mean_cka)}};
  }
  json summary{{"cells", j_cells},
               {"pretraining", pretraining.empty() ? json(nullptr) : pretraining},
               {"external", externals.empty() ? json(nullptr) : j_external},
               {"comparisons", comparisons.empty() ? json(nullptr) : j_comparisons},
               {"comparisons_reference", regimes[reference].key},
               {"robustness", robustness ? j_robust : json(nullptr)},
               {"robustness_reference", regimes[reference].key},
               {"saliency", saliency ? j_saliency : json(nullptr)},
               {"features", features ? j_features : json(nullptr)},
               {"features_reference", regimes[reference].key}};
  if (features) {
    const FeaturesSummary& ref = stats.at(regimes[reference].key);
    summary["features_cn_percentiles"] = json{ref.p1, ref.p2};
  }
  io::write_file_atomically(fs::path(a.out) / "study.json", summary.dump(2) + "\n");
  io::write_file_atomically(fs::path(a.out) / "study.csv", csv);
  if (features) io::write_file_atomically(fs::path(a.out) / "study_features.csv", features_csv);
  else fs::remove(fs::path(a.out) / "study_features.csv");  // left by an earlier study with the stage
  if (!externals.empty()) io::write_file_atomically(fs::path(a.out) / "study_external.csv", external_csv);
  else fs::remove(fs::path(a.out) / "study_external.csv");
  if (!comparisons.empty())
    io::write_file_atomically(fs::path(a.out) / "study_comparisons.csv", comparisons_csv);
  else fs::remove(fs::path(a.out) / "study_comparisons.csv");
  // The figure: kappa with its 95 % interval per regime (one series per protocol and label
  // fraction), the mean error over the corruptions against severity per regime, and per attribution
  // method the relevance mass inside the lesions per regime with the chance level.
  std::vector<io::LineChart> panels;
  {
    io::LineChart k;
    k.title = "quadratic kappa, 95% CI (test split)";
    k.width = 420, k.height = 320;
    for (const StudyRegime& r : regimes) k.x_labels.push_back(r.label);
    for (const std::string& protocol : protocols)
      for (const double f : fractions) {
        io::PlotSeries s;
        char label[64];
        std::snprintf(label, sizeof label, "%s %g%%", protocol.c_str(), 100.0 * f);
        s.label = label;
        s.line = false;
        for (std::size_t i = 0; i < regimes.size(); ++i)
          for (const Cell& c : cells)
            if (c.regime == &regimes[i] && c.protocol == protocol && c.fraction == f) {
              s.x.push_back(static_cast<double>(i));
              s.y.push_back(c.result.point.at("kappa"));
              s.err_low.push_back(c.result.low.at("kappa"));
              s.err_high.push_back(c.result.high.at("kappa"));
            }
        k.series.push_back(s);
      }
    panels.push_back(std::move(k));
  }
  if (!external_results.empty()) {  // first protocol, most labels: the test split beside each external set
    io::LineChart x;
    x.title = "kappa, 95% CI: test split and external (" + protocols.front() + ")";
    x.width = 420, x.height = 320;
    for (const StudyRegime& r : regimes) x.x_labels.push_back(r.label);
    auto series = [&](const std::string& label, auto&& result_of) {
      io::PlotSeries s;
      s.label = label;
      s.line = false;
      for (std::size_t i = 0; i < regimes.size(); ++i)
        for (std::size_t c = 0; c < cells.size(); ++c)
          if (cells[c].regime == &regimes[i] && cells[c].protocol == protocols.front() &&
              cells[c].fraction == most) {
            const EvalSummary& r = result_of(c);
            s.x.push_back(static_cast<double>(i));
            s.y.push_back(r.point.at("kappa"));
            s.err_low.push_back(r.low.at("kappa"));
            s.err_high.push_back(r.high.at("kappa"));
          }
      x.series.push_back(s);
    };
    series("test split", [&](std::size_t c) -> const EvalSummary& { return cells[c].result; });
    for (const ExternalResult& er : external_results)
      series(
          er.set->name + (er.cells.front().as_binary.empty() ? "" : " (" + er.cells.front().as_binary + ")"),
          [&](std::size_t c) -> const EvalSummary& { return er.cells[c]; });
    panels.push_back(std::move(x));
  }
  if (!comparisons.empty()) {  // the paired kappa differences from the reference: intervals around 0
    io::LineChart d;
    d.title = std::string("kappa difference from ") + regimes[reference].label + ", 95% CI (paired)";
    d.width = 420, d.height = 320;
    std::vector<const StudyRegime*> others;
    for (const StudyRegime& r : regimes)
      if (&r != &regimes[reference]) others.push_back(&r), d.x_labels.push_back(r.label);
    auto series = [&](const std::string& set, const std::string& label, auto&& keep) {
      io::PlotSeries s;
      s.label = label;
      s.line = false;
      for (const ComparisonRow& row : comparisons) {
        if (row.set != set || !keep(cells[row.cell])) continue;
        const auto at = std::find(others.begin(), others.end(), cells[row.cell].regime) - others.begin();
        s.x.push_back(static_cast<double>(at));
        s.y.push_back(row.c.kappa.difference.point);
        s.err_low.push_back(row.c.kappa.difference.low);
        s.err_high.push_back(row.c.kappa.difference.high);
      }
      if (!s.x.empty()) d.series.push_back(std::move(s));
    };
    for (const std::string& protocol : protocols)
      for (const double f : fractions) {
        char label[64];
        std::snprintf(label, sizeof label, "%s %g%%", protocol.c_str(), 100.0 * f);
        series("test", label, [&](const Cell& c) { return c.protocol == protocol && c.fraction == f; });
      }
    for (const ExternalResult& er : external_results)
      series(er.set->name, er.set->name + " (" + protocols.front() + ")",
             [&](const Cell& c) { return c.protocol == protocols.front() && c.fraction == most; });
    io::PlotSeries zero;
    zero.label = "no difference";
    zero.x = {-0.25, static_cast<double>(others.size()) - 0.75};
    zero.y = {0.0, 0.0};
    zero.markers = false, zero.dashed = true;
    d.series.push_back(std::move(zero));
    panels.push_back(std::move(d));
  }
  if (robustness) {
    io::LineChart e;
    e.title = "mean error over the corruptions";
    e.x_label = "severity";
    e.width = 420, e.height = 320;
    for (const StudyRegime& r : regimes) {
      io::PlotSeries s;
      s.label = r.label;
      for (const auto& [v, err] : robust.at(r.key).error_by_severity) s.x.push_back(v), s.y.push_back(err);
      e.series.push_back(s);
    }
    panels.push_back(std::move(e));
  }
  if (saliency) {
    io::LineChart m;
    m.title = "relevance mass inside MA+HE+EX";
    m.width = 420, m.height = 320;
    for (const auto& [method, sc] : explained.begin()->second.union_scores) m.x_labels.push_back(method);
    for (const StudyRegime& r : regimes) {
      io::PlotSeries s;
      s.label = r.label;
      s.line = false;
      for (const std::string& method : m.x_labels) {
        const auto& scores = explained.at(r.key).union_scores;
        const auto it = scores.find(method);
        s.y.push_back(it != scores.end() ? it->second.mass_inside : std::nan(""));
      }
      m.series.push_back(s);
    }
    io::PlotSeries chance;
    chance.label = "chance";
    chance.dashed = true, chance.markers = false;
    chance.x = {-0.5, static_cast<double>(m.x_labels.size()) - 0.5};
    chance.y = {explained.begin()->second.union_chance, explained.begin()->second.union_chance};
    m.series.push_back(chance);
    panels.push_back(std::move(m));
  }
  if (features) {
    const FeaturesSummary& ref = stats.at(regimes[reference].key);
    io::LineChart cn;
    char title[96];
    std::snprintf(title, sizeof title, "CN(%g, %g) per layer (test split)", ref.p1, ref.p2);
    cn.title = title;
    cn.log_y = true;
    cn.width = 420, cn.height = 320;
    cn.x_labels = ref.layers;
    io::LineChart cka;
    cka.title = std::string("linear CKA with ") + regimes[reference].label + ", same layer";
    cka.width = 420, cka.height = 320;
    cka.x_labels = ref.layers;
    cka.y_min = 0, cka.y_max = 1;
    for (const StudyRegime& r : regimes) {
      const FeaturesSummary& f = stats.at(r.key);
      io::PlotSeries line;
      line.label = r.label;
      line.markers = f.layers.size() <= 24;
      for (std::size_t l = 0; l < f.cn.size(); ++l)
        if (std::isfinite(f.cn[l]) && f.cn[l] > 0)
          line.x.push_back(static_cast<double>(l)), line.y.push_back(f.cn[l]);
      cn.series.push_back(line);
      line.x.clear(), line.y.clear();
      if (&r == &regimes[reference]) {  // itself: 1 at every layer (keeps each regime's colour)
        line.label += " (itself)";
        line.dashed = true, line.markers = false;
        line.x = {0.0, static_cast<double>(f.layers.size()) - 1.0};
        line.y = {1.0, 1.0};
      }
      for (std::size_t l = 0; l < f.cka_compare.size(); ++l)
        if (std::isfinite(f.cka_compare[l]))
          line.x.push_back(static_cast<double>(l)), line.y.push_back(f.cka_compare[l]);
      cka.series.push_back(line);
    }
    panels.push_back(std::move(cn));
    if (regimes.size() > 1) panels.push_back(std::move(cka));
  }
  io::write_file_atomically(fs::path(a.out) / "study.svg", io::chart_grid_svg(panels, 3, "fovea study"));
  std::printf("outputs: %s\n", a.out.c_str());
}

inline void add_driver_commands(CLI::App& app) {
  auto pa = std::make_shared<PretrainArgs>();
  auto* p = app.add_subcommand("pretrain", "contrastive pretraining (SimCLR or MoCo v2); writes backbone.safetensors");
  detail::add_run_flags(p, *pa);
  p->add_option("--method", pa->method, "simclr or moco")->capture_default_str()->check(CLI::IsMember({"simclr", "moco"}));
  p->add_option("--init", pa->init, "start from these backbone weights (e.g. torchvision ImageNet)");
  p->add_option("--temperature", pa->temperature, "tau (0: 0.5 SimCLR, 0.2 MoCo)")->capture_default_str();
  p->add_option("--proj-hidden", pa->hidden, "projection hidden width (0: the backbone's)")->capture_default_str();
  p->add_option("--proj-dim", pa->dim, "projection output dimension")->capture_default_str();
  p->add_option("--queue", pa->queue, "MoCo queue length (0: sized to the data set, at most 4096)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  p->add_option("--key-momentum", pa->key_momentum, "MoCo key-encoder momentum")->capture_default_str();
  p->add_option("--knn-every", pa->knn_every,
                "epochs between kNN accuracies of the backbone on the graded images (0: off)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  p->add_option("--augment", pa->augment,
                "the two views' augmentation: a preset (simclr, moco_v2, fundus, crop), key=value changes "
                "of the method's preset (e.g. hue=0,grayscale_p=0), or both (fundus,scale_min=0.08); "
                "default: the method's (docs/augmentations.md)")
      ->check(augment_validator());
  p->add_option(
       "--images", pa->images,
       "all (every image of --data) or train (only the training patients of the split fovea finetune "
       "makes with the same --seed, --val-fraction, --test-fraction and --label-scheme; written to "
       "split.csv)")
      ->capture_default_str()
      ->check(CLI::IsMember({"all", "train"}));
  p->add_option("--val-fraction", pa->val_fraction, "with --images train: validation share of patients")
      ->capture_default_str();
  p->add_option("--test-fraction", pa->test_fraction, "with --images train: test share of patients")
      ->capture_default_str();
  p->add_option("--label-scheme", pa->label_scheme,
                "with --images train: the label scheme the split is stratified by (as fovea finetune's)")
      ->capture_default_str();
  p->callback([pa, p] {
    if (!pa->config.empty()) apply_config_file(*p, pa->config);
    if (pa->method == "simclr") reject_flags(*p, {"--queue", "--key-momentum"}, "to SimCLR (MoCo settings)");
    if (pa->images != "train")
      reject_flags(*p, {"--val-fraction", "--test-fraction", "--label-scheme"}, "without --images train");
    run_pretrain(*pa);
  });

  auto fa = std::make_shared<FinetuneArgs>();
  auto* f = app.add_subcommand("finetune", "supervised training or linear evaluation; best checkpoint on validation");
  detail::add_run_flags(f, *fa);
  f->add_option("--init", fa->init, "random or a weights file (torchvision, fovea backbone or checkpoint)")->capture_default_str();
  f->add_flag("--linear", fa->linear, "linear evaluation: frozen backbone (batch norm in eval mode)");
  f->add_option("--label-fraction", fa->label_fraction, "fraction of training labels (stratified, by patient)")
      ->capture_default_str()->check(CLI::Range(1e-6, 1.0));
  f->add_option("--label-scheme", fa->label_scheme, "grades, referable (grade >= 2), referable>=N or any_dr")->capture_default_str();
  f->add_option("--val-fraction", fa->val_fraction, "validation share of patients")->capture_default_str();
  f->add_option("--test-fraction", fa->test_fraction, "test share of patients")->capture_default_str();
  f->add_option("--sampler", fa->sampler, "shuffled, or balanced: every class equally often (draws with replacement)")
      ->capture_default_str()->check(CLI::IsMember({"shuffled", "balanced"}));
  f->add_option("--class-weights", fa->class_weights,
                "cross-entropy class weights: none, inverse (n / (K n_k) on the training split) or w0,w1,...")
      ->capture_default_str();
  f->add_option("--label-smoothing", fa->label_smoothing, "label smoothing of the cross-entropy")
      ->capture_default_str()->check(CLI::Range(0.0, 0.999));
  f->callback([fa, f] {
    if (!fa->config.empty()) apply_config_file(*f, fa->config);
    run_finetune(*fa);
  });

  auto ea = std::make_shared<EvaluateArgs>();
  auto* e = app.add_subcommand("evaluate", "metrics with bootstrap 95% CIs on a labelled set: results.json, predictions.csv");
  detail::add_run_flags(e, *ea);
  e->add_option("--weights", ea->weights, "classifier weights (safetensors; required)");
  e->add_option("--label-scheme", ea->label_scheme, "grades, referable (grade >= 2), referable>=N or any_dr")->capture_default_str();
  e->add_option("--referable-threshold", ea->referable_threshold, "referable DR: grade >= t")->capture_default_str()->check(CLI::Range(1, 4));
  e->add_option("--bootstrap", ea->bootstrap, "bootstrap resamples")->capture_default_str()->check(CLI::Range(1, 100000));
  e->add_option(
      "--as-binary", ea->as_binary,
      "score the 5-grade classifier as a binary one: referable (grade >= --referable-threshold), "
      "referable>=N or any_dr; P(grade >= t) against labels >= t (Messidor-1's 0-3 grades need it)");
  e->add_option("--split", ea->split, "split file (image,split) to pick a part of the data");
  e->add_option("--split-name", ea->split_name, "train, validation or test")->capture_default_str();
  e->callback([ea, e] {
    if (!ea->config.empty()) apply_config_file(*e, ea->config);
    if (ea->split.empty()) reject_flags(*e, {"--split-name"}, "without --split");
    run_evaluate(*ea);
  });

  auto ra = std::make_shared<RobustnessArgs>();
  auto* r = app.add_subcommand("robustness",
                               "a classifier under ImageNet-C and fundus corruptions at 5 severities: "
                               "robustness.csv, robustness.json (mCE against --reference)");
  detail::add_run_flags(r, *ra);
  r->add_option("--weights", ra->weights, "classifier weights (safetensors; required)");
  r->add_option("--label-scheme", ra->label_scheme, "grades, referable (grade >= 2), referable>=N or any_dr")->capture_default_str();
  r->add_option("--referable-threshold", ra->referable_threshold, "referable DR: grade >= t")
      ->capture_default_str()
      ->check(CLI::Range(1, 4));
  r->add_option("--as-binary", ra->as_binary,
                "score the 5-grade classifier as a binary one (as fovea evaluate --as-binary): referable, "
                "referable>=N or any_dr");
  r->add_option("--split", ra->split, "split file (image,split) to pick a part of the data");
  r->add_option("--split-name", ra->split_name, "train, validation or test")->capture_default_str();
  r->add_option("--corruptions", ra->corruptions, "all, imagenet_c, fundus or comma-separated names")
      ->capture_default_str();
  r->add_option("--severities", ra->severities, "comma-separated severities in 1..5")->capture_default_str();
  r->add_option("--decode-cache-mb", ra->decode_cache_mb,
                "MiB of decoded images kept between the passes (each image decoded once; 0: decode every "
                "pass; does not change the results)")
      ->capture_default_str()
      ->check(CLI::Range(std::int64_t{0}, std::int64_t{1} << 40));
  r->add_option("--save-examples", ra->save_examples,
                "write the first N images of the set, corrupted as the model sees them, as "
                "examples/<corruption>_<severity>_<image>.png (does not change the results)")
      ->capture_default_str()
      ->check(CLI::Range(std::int64_t{0}, std::int64_t{1} << 31));
  r->add_option("--reference", ra->reference,
                "a reference run's robustness.csv (corruption errors relative to it)");
  r->callback([ra, r] {
    if (!ra->config.empty()) apply_config_file(*r, ra->config);
    if (ra->split.empty()) reject_flags(*r, {"--split-name"}, "without --split");
    try {  // a name or severity that does not exist is a usage error (exit code 2)
      corruption_list(ra->corruptions);
      severity_list(ra->severities);
    } catch (const fovea::Error& e) {
      throw CLI::ValidationError(e.what());
    }
    run_robustness(*ra);
  });

  auto la = std::make_shared<SaliencyArgs>();
  auto* l = app.add_subcommand("saliency",
                               "attribution maps of a classifier scored against lesion masks: "
                               "saliency.csv, saliency_by_size.csv, saliency.json, maps/");
  detail::add_run_flags(l, *la);
  l->add_option("--weights", la->weights, "classifier weights (safetensors; required)");
  l->add_option("--masks", la->masks, "lesion-mask CSV: image,lesion_type,mask_path (required)");
  l->add_option("--label-scheme", la->label_scheme, "the classifier's classes: grades, referable (grade >= 2), referable>=N or any_dr")
      ->capture_default_str();
  l->add_option("--method,--methods", la->methods,
                "gradient, gradient_x_input, smoothgrad, integrated_gradients, grad_cam, lrp (comma list)")
      ->capture_default_str();
  l->add_option("--target", la->target, "predicted or a class index")->capture_default_str();
  l->add_option("--baseline", la->baseline, "integrated gradients' baseline")
      ->capture_default_str()
      ->check(CLI::IsMember({"black", "gray", "mean", "blurred"}));
  l->add_option("--ig-rule", la->ig_rule, "integrated gradients' quadrature")
      ->capture_default_str()
      ->check(CLI::IsMember({"riemann_midpoint", "gauss_legendre"}));
  l->add_option("--ig-steps", la->ig_steps, "integrated gradients' steps")
      ->capture_default_str()
      ->check(CLI::Range(1, 4096));
  l->add_option("--smoothgrad-samples", la->smoothgrad_samples, "SmoothGrad's noisy copies")
      ->capture_default_str()
      ->check(CLI::Range(1, 65535));
  l->add_option("--smoothgrad-sigma", la->smoothgrad_sigma,
                "SmoothGrad's noise std / (max - min) of the image")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  l->add_option("--gradcam-layer", la->gradcam_layer,
                "Grad-CAM's layer (state-dict path: layer4, layer3.1, ...)")
      ->capture_default_str();
  l->add_option("--lrp-rule", la->lrp_rule, "LRP's rule for the inner convolutions")
      ->capture_default_str()
      ->check(CLI::IsMember({"plus", "gamma", "epsilon"}));
  l->add_option("--lrp-input", la->lrp_input, "LRP's rule for the first convolution")
      ->capture_default_str()
      ->check(CLI::IsMember({"box", "flat", "epsilon"}));
  l->add_option("--lrp-gamma", la->lrp_gamma, "LRP-gamma's gamma (--lrp-rule gamma)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  l->add_option("--count", la->count, "images scored (0: every image with a mask)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  l->add_option("--split", la->split, "split file (image,split): score only one part's images");
  l->add_option("--split-name", la->split_name, "train, validation or test")->capture_default_str();
  l->add_option("--randomization", la->randomization,
                "images of the cascading parameter-randomisation check (0: off): randomization.csv")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  // `--overlays` is the name config.json records (key "overlays"), so a run's config.json replays it.
  l->add_flag("--overlays,!--no-overlays", la->overlays,
              "write (default) or skip the PNG overlays and raw maps");
  l->callback([la, l] {
    if (!la->config.empty()) apply_config_file(*l, la->config);
    if (la->split.empty()) reject_flags(*l, {"--split-name"}, "without --split");
    try {
      saliency_methods(la->methods);
    } catch (const fovea::Error& e) {
      throw CLI::ValidationError(e.what());
    }
    run_saliency(*la);
  });

  auto sa = std::make_shared<StudyArgs>();
  auto* s = app.add_subcommand("study",
                               "the main job: pretraining regimes (SimCLR, MoCo v2, ImageNet), fine-tuning "
                               "or linear evaluation, evaluation, robustness and saliency side by side");
  s->add_option("--data", sa->data, "labelled data folder (default: generate fovea's synthetic fundus set)");
  s->add_option("--out", sa->out, "output folder")->capture_default_str();
  s->add_option("--arch", sa->arch, "resnet18, resnet34 or resnet50")->capture_default_str();
  s->add_option("--device", sa->device, "auto, cpu, cuda or cuda:N")->capture_default_str();
  s->add_option("--count", sa->count, "synthetic images to generate")->capture_default_str();
  s->add_option("--size", sa->size, "input side")->capture_default_str();
  s->add_option("--width", sa->width, "ResNet width multiplier")->capture_default_str();
  s->add_option("--pretrain-epochs", sa->pretrain_epochs, "SimCLR / MoCo v2 epochs")->capture_default_str();
  s->add_option(
       "--pretrain-images", sa->pretrain_images,
       "what SimCLR / MoCo v2 learn from: train (the training patients of the fine-tuning split) or all "
       "(every image, the validation and test patients' included)")
      ->capture_default_str()
      ->check(CLI::IsMember({"train", "all"}));
  s->add_option("--pretrain-augment", sa->pretrain_augment,
                "the SimCLR / MoCo v2 views' augmentation, as fovea pretrain --augment (default: each "
                "method's own preset)")
      ->check(augment_validator());
  s->add_option("--finetune-epochs", sa->finetune_epochs, "fine-tuning epochs")->capture_default_str();
  s->add_option("--batch-size", sa->batch_size, "batch size")->capture_default_str();
  s->add_option("--threads", sa->threads, "loader threads")->capture_default_str();
  s->add_option("--seed", sa->seed, "seed")->capture_default_str();
  s->add_option("--regimes", sa->regimes,
                "initialisations compared: random, imagenet, simclr, moco, imagenet_simclr, imagenet_moco "
                "(comma list; --full: random,simclr,moco, plus the imagenet ones with --imagenet-weights)")
      ->capture_default_str();
  s->add_option("--protocols", sa->protocols,
                "finetune (whole network) and/or linear (frozen backbone) (--full: finetune,linear)")
      ->capture_default_str();
  s->add_option("--label-fractions", sa->label_fractions,
                "fractions of the training labels, each in (0, 1] (--full: 1,0.1)")
      ->capture_default_str();
  s->add_option("--imagenet-weights", sa->imagenet_weights,
                "torchvision ResNet weights (safetensors) of --arch / --width for the imagenet* regimes");
  s->add_option("--sampler", sa->sampler, "fine-tuning sampler: shuffled or balanced")
      ->capture_default_str()->check(CLI::IsMember({"shuffled", "balanced"}));
  s->add_option("--class-weights", sa->class_weights, "fine-tuning class weights: none, inverse or w0,w1,...")
      ->capture_default_str();
  s->add_option("--corruptions", sa->corruptions,
                "robustness stage: all, imagenet_c, fundus, comma-separated names, or none to skip it")
      ->capture_default_str();
  s->add_option("--severities", sa->severities, "robustness stage: severities in 1..5")
      ->capture_default_str();
  s->add_option(
       "--saliency", sa->saliency,
       "saliency stage: attribution methods (comma list, see fovea saliency --method), or none to skip it")
      ->capture_default_str();
  s->add_option("--saliency-count", sa->saliency_count,
                "saliency stage: test images with lesion masks scored (0: all)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  s->add_option("--saliency-randomization", sa->saliency_randomization,
                "saliency stage: images of the cascading parameter-randomisation check (0: off)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  s->add_option("--features", sa->features,
                "feature-statistics stage: the layers (all = conv, bn, linear; conv; bn; linear; or layer "
                "paths, as fovea features --layers), or none to skip it")
      ->capture_default_str();
  s->add_option("--features-count", sa->features_count,
                "feature-statistics stage: at most N test images (a seeded subset when there are more)")
      ->capture_default_str()
      ->check(CLI::Range(std::int64_t{2}, std::int64_t{100000000}));
  s->add_option(
      "--seeds", sa->seeds,
      "replicates: comma-separated seeds, each running the whole grid in <out>/seed_<k> on the "
      "same data (its own split, initialisation, augmentations); then mean, sd and range over them");
  s->add_option("--external", sa->external,
                "external test sets every model is evaluated on: auto (with the synthetic default data, "
                "synthetic_site1: a quarter as many images from a second site's camera; with --data, none), "
                "none, or NAME=PATH,... (a labelled folder, e.g. Messidor-2's with messidor_data.csv, or a "
                "label CSV)")
      ->capture_default_str();
  s->add_flag("--full", sa->full,
              "GPU-sized defaults: ResNet-50 at 224 px, width 1, 2000 images, 100/50 epochs, "
              "batch 256, the regime / protocol / label-fraction grid above (flags given "
              "explicitly override them)");
  s->add_option("--image-cache", sa->image_cache,
                "folder for the disk cache of decoded, resized images that every stage shares");
  detail::add_preprocess_flag(s, sa->preprocess);
  s->add_flag("--skip-bad-images", sa->skip_bad_images,
              "every stage drops images that are missing or do not decode instead of stopping (listed in "
              "each stage's skipped_images.csv)");
  detail::add_math_flags(s, sa->deterministic, sa->tf32);
  add_config_flag(s, sa->config);
  s->callback([sa, s] {
    if (!sa->config.empty()) apply_config_file(*s, sa->config);
    if (!sa->data.empty()) reject_flags(*s, {"--count"}, "with --data (it sizes the generated synthetic set)");
    StudyArgs a = *sa;
    if (a.full) {  // the GPU-sized defaults; flags given explicitly keep their values
      auto unset = [&](const char* flag) { return s->get_option(flag)->count() == 0; };
      if (unset("--arch")) a.arch = "resnet50";
      if (unset("--size")) a.size = 224;
      if (unset("--width")) a.width = 1.0f;
      if (unset("--count")) a.count = 2000;
      if (unset("--pretrain-epochs")) a.pretrain_epochs = 100;
      if (unset("--finetune-epochs")) a.finetune_epochs = 50;
      if (unset("--batch-size")) a.batch_size = 256;
      if (unset("--regimes"))
        a.regimes = a.imagenet_weights.empty() ? "random,simclr,moco"
                                               : "random,imagenet,simclr,moco,imagenet_simclr,imagenet_moco";
      if (unset("--protocols")) a.protocols = "finetune,linear";
      if (unset("--label-fractions")) a.label_fractions = "1,0.1";
    }
    std::vector<StudyRegime> regimes;
    std::vector<std::string> protocols;
    std::vector<double> fractions;
    try {  // checked before hours of training, not after
      regimes = study_regimes(a.regimes);
      protocols = study_protocols(a.protocols);
      fractions = label_fraction_list(a.label_fractions);
      if (a.corruptions != "none") {
        corruption_list(a.corruptions);
        severity_list(a.severities);
      }
      if (a.saliency != "none") saliency_methods(a.saliency);
      if (!a.seeds.empty()) study_seed_list(a.seeds);
      if (a.external != "auto" && a.external != "none") study_external_list(a.external);
      if (a.features != "none") {  // the layer names against the architecture's layers
        models::ResNetConfig cfg;
        cfg.width = a.width, cfg.small_stem = a.size <= 128;
        std::set<std::string> named;
        features_detail::select_layers(make_model(a.arch, cfg)->tap_sites(), a.features, named, "--features");
      }
      const bool imagenet =
          std::any_of(regimes.begin(), regimes.end(), [](const auto& r) { return r.imagenet; });
      FOVEA_CHECK(!imagenet || !a.imagenet_weights.empty(),
                  "--regimes: the imagenet regimes need --imagenet-weights (torchvision ResNet weights)");
      FOVEA_CHECK(!imagenet || std::filesystem::exists(a.imagenet_weights), "--imagenet-weights: file '",
                  a.imagenet_weights, "' does not exist");
      FOVEA_CHECK(imagenet || a.imagenet_weights.empty(),
                  "--imagenet-weights given but no imagenet regime in --regimes '", a.regimes, "'");
    } catch (const fovea::Error& e) {
      throw CLI::ValidationError(e.what());
    }
    // Synthetic images at least as large as the decode side (size / 0.875), so nothing is upscaled.
    a.generate_size = std::max(96, static_cast<int>(std::lround(a.size / 0.875)));
    namespace fs = std::filesystem;
    // One study per folder at a time (its drivers lock their own subfolders too).
    const io::FolderLock lock(a.out, "fovea study");
    std::string data = a.data;
    if (data.empty()) {
      data = (fs::path(a.out) / "data").string();
      if (!fs::exists(fs::path(data) / "labels.csv")) {
        GenerateOptions g;
        g.out = data, g.count = a.count, g.size = a.generate_size, g.seed = a.seed, g.balanced = true, g.threads = a.threads;
        g.masks = true;  // lesions.csv + masks/: the saliency stage's ground truth
        write_synthetic_dataset(g, &std::cerr);
      }
      std::cout << "study: synthetic fundus data in " << data << "\n";
    }
    // External test sets; by default for synthetic data, a second site's camera on other patients.
    std::vector<StudyExternal> externals;
    if (a.external == "auto" && a.data.empty()) {
      StudyExternal e{"synthetic_site1", (fs::path(a.out) / "data_site1").string(), ""};
      if (!fs::exists(fs::path(e.data) / "labels.csv")) {
        GenerateOptions g;
        g.out = e.data, g.count = std::max<std::int64_t>(a.count / 4, 20), g.size = a.generate_size;
        g.seed = a.seed + kStudyExternalSeedOffset, g.balanced = true, g.threads = a.threads, g.site = 1;
        write_synthetic_dataset(g, &std::cerr);
      }
      std::cout << "study: external test set synthetic_site1 (a second site's camera) in " << e.data << "\n";
      externals.push_back(std::move(e));
    } else if (a.external != "auto" && a.external != "none") {
      externals = study_external_list(a.external);
    }
    if (a.seeds.empty()) {
      run_study_replicate(a, regimes, protocols, fractions, data, externals);
      return;
    }
    // Replicates: the same data and grid, each seed drawing its own split, initialisations,
    // augmentations and sampling, in <out>/seed_<k>; then the spread over the seeds.
    const std::vector<std::uint64_t> seeds = study_seed_list(a.seeds);
    for (const std::uint64_t seed : seeds) {
      StudyArgs r = a;
      r.seed = seed;
      r.out = (fs::path(a.out) / ("seed_" + std::to_string(seed))).string();
      std::cout << "study: replicate with --seed " << seed << " in " << r.out << std::endl;
      run_study_replicate(r, regimes, protocols, fractions, data, externals);
    }
    summarise_study_replicates(a.out, seeds);
  });
}

}  // namespace fovea::tools
