// tools/fovea/cmd_compare.hpp: `fovea compare A B`: two evaluations of different models on the same
// labelled images (their predictions.csv files, or the run folders holding them) compared image by
// image: the paired bootstrap of the kappa, referable-AUC and accuracy differences, DeLong's test of
// the AUCs and McNemar's test of the accuracies (eval/compare.hpp). Prints a table and, with --out,
// writes comparison.json. The study uses the same functions for its comparison table.
#pragma once

#include <CLI/CLI.hpp>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "fovea/core/error.hpp"
#include "fovea/data/csv.hpp"
#include "fovea/eval/compare.hpp"
#include "fovea/eval/predictions.hpp"
#include "fovea/io/atomic_file.hpp"

namespace fovea::tools {

// "+0.018 [-0.041, +0.077]"
inline std::string difference_text(double point, double low, double high) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%+.3f [%+.3f, %+.3f]", point, low, high);
  return buf;
}
// "0.034", "<0.001", "nan"
inline std::string p_text(double p) {
  char buf[32];
  if (std::isnan(p)) return "nan";
  if (p < 0.001) return "<0.001";
  std::snprintf(buf, sizeof buf, "%.3f", p);
  return buf;
}

struct CompareArgs {
  std::string a, b, names = "A,B", out;
  int referable_threshold = 2, bootstrap = 1000;
  std::uint64_t seed = 0;
};

// --names: two names separated by one comma.
inline std::pair<std::string, std::string> compare_names(const std::string& names) {
  const std::size_t comma = names.find(',');
  FOVEA_CHECK(comma != std::string::npos && comma > 0 && comma + 1 < names.size() &&
                  names.find(',', comma + 1) == std::string::npos,
              "--names '", names, "' must be two names separated by a comma");
  return {names.substr(0, comma), names.substr(comma + 1)};
}

inline int run_compare(const CompareArgs& args) {
  const auto [name_a, name_b] = compare_names(args.names);
  const eval::PredictionsFile a = eval::read_predictions(args.a), b = eval::read_predictions(args.b);
  const std::vector<double> pb = eval::align_predictions(a, b);
  const int threshold = a.classes == 2 ? 1 : args.referable_threshold;
  FOVEA_CHECK(threshold < a.classes, "--referable-threshold ", threshold, " needs more than ", a.classes,
              " classes");
  const eval::Comparison c =
      eval::compare_predictions(a.labels, a.probs, pb, threshold, args.bootstrap, args.seed);
  std::printf(
      "compare: %s against %s on %lld images (same labels), %d paired bootstrap resamples, seed %llu\n",
      name_a.c_str(), name_b.c_str(), static_cast<long long>(c.n), c.resamples,
      static_cast<unsigned long long>(c.seed));
  std::printf("%-16s %-9s %-9s %-28s %s\n", "", name_a.c_str(), name_b.c_str(), "difference, 95% CI", "p");
  std::printf(
      "%-16s %-9.3f %-9.3f %-28s %s (paired bootstrap)\n", "quadratic kappa", c.kappa.a, c.kappa.b,
      difference_text(c.kappa.difference.point, c.kappa.difference.low, c.kappa.difference.high).c_str(),
      p_text(c.kappa.p_value).c_str());
  std::printf("%-16s %-9.3f %-9.3f %-28s %s (DeLong; paired bootstrap %s, p %s)\n", "referable AUC",
              c.referable_auc.a, c.referable_auc.b,
              difference_text(c.delong.difference, c.delong.low, c.delong.high).c_str(),
              p_text(c.delong.p_value).c_str(),
              difference_text(c.referable_auc.difference.point, c.referable_auc.difference.low,
                              c.referable_auc.difference.high)
                  .c_str(),
              p_text(c.referable_auc.p_value).c_str());
  std::printf(
      "%-16s %-9.3f %-9.3f %-28s %s (McNemar: %lld images only %s gets right, %lld only %s)\n", "accuracy",
      c.accuracy.a, c.accuracy.b,
      difference_text(c.accuracy.difference.point, c.accuracy.difference.low, c.accuracy.difference.high)
          .c_str(),
      p_text(c.mcnemar.p_value).c_str(), static_cast<long long>(c.mcnemar.only_a), name_a.c_str(),
      static_cast<long long>(c.mcnemar.only_b), name_b.c_str());
  if (!args.out.empty()) {
    namespace fs = std::filesystem;
    fs::create_directories(args.out);
    const nlohmann::json j{{"a", {{"name", name_a}, {"predictions", a.path}}},
                           {"b", {{"name", name_b}, {"predictions", b.path}}},
                           {"comparison", nlohmann::json::parse(eval::to_json(c))}};
    io::write_file_atomically(fs::path(args.out) / "comparison.json", j.dump(2) + "\n");
    std::printf("outputs: %s\n", (fs::path(args.out) / "comparison.json").string().c_str());
  }
  return 0;
}

inline void add_compare_command(CLI::App& app) {
  auto args = std::make_shared<CompareArgs>();
  CLI::App* c = app.add_subcommand(
      "compare",
      "two models evaluated on the same images, image by image: paired bootstrap CIs of the kappa, AUC and "
      "accuracy differences, DeLong's and McNemar's tests; comparison.json with --out");
  c->add_option("a", args->a, "model A: an evaluation's predictions.csv or its run folder")->required();
  c->add_option("b", args->b, "model B, evaluated on the same images")->required();
  c->add_option("--names", args->names, "the two models' names in the output, comma-separated")
      ->capture_default_str();
  c->add_option("--out", args->out, "folder for comparison.json");
  c->add_option("--referable-threshold", args->referable_threshold, "referable DR: grade >= t")
      ->capture_default_str()
      ->check(CLI::Range(1, 4));
  c->add_option("--bootstrap", args->bootstrap, "paired bootstrap resamples")
      ->capture_default_str()
      ->check(CLI::Range(1, 100000));
  c->add_option("--seed", args->seed,
                "the resamples' seed (the evaluations' own --seed pairs them with "
                "their results.json intervals)")
      ->capture_default_str();
  c->callback([args] {
    try {  // malformed names are a usage error (exit code 2)
      compare_names(args->names);
    } catch (const fovea::Error& e) {
      throw CLI::ValidationError(e.what());
    }
    run_compare(*args);
  });
}

}  // namespace fovea::tools
