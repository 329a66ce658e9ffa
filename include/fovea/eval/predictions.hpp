// fovea/eval/predictions.hpp: an evaluation's predictions.csv read back (`image,label,pred,p0,...,
// p{K-1}`, written by `fovea evaluate` and the fine-tuning drivers: one row per image, its label, the
// argmax class and the K class probabilities in their shortest exact fp32 form), and two such files
// aligned image by image, as `fovea compare` and a user's own analysis need them. Host-side only.
#pragma once

#include <charconv>
#include <cmath>
#include <cstddef>
#include <filesystem>
#include <string>
#include <unordered_map>
#include <vector>

#include "fovea/core/error.hpp"
#include "fovea/data/csv.hpp"

namespace fovea::eval {

// One evaluation's predictions.
struct PredictionsFile {
  std::string path;               // the file, for messages
  std::vector<std::string> ids;   // image ids, in the file's order
  std::vector<int> labels;        // 0..classes-1
  std::vector<int> predicted;     // the file's pred column
  std::vector<double> probs;      // images x classes, row-major
  int classes = 0;
};

// predictions_from_table: a parsed predictions.csv. Throws fovea::Error naming the file, line and
// field for a header that is not predictions.csv's (at least two classes), a label outside
// 0..K-1, a pred that is not the row's first largest probability, a probability that is not a
// number in [0, 1] (read whole, as fp32, the precision evaluate wrote), a row whose probabilities
// do not sum to 1 within 1e-3 (scores, not probabilities), a repeated image, or no rows.
inline PredictionsFile predictions_from_table(const data::CsvTable& t) {
  PredictionsFile p;
  p.path = t.source;
  const std::vector<std::string>& header = t.header;
  FOVEA_CHECK(header.size() >= 5 && header[0] == "image" && header[1] == "label" && header[2] == "pred", "'",
              p.path, "' does not start with predictions.csv's header image,label,pred,p0,p1,...");
  p.classes = static_cast<int>(header.size()) - 3;
  for (int k = 0; k < p.classes; ++k)
    FOVEA_CHECK(header[static_cast<std::size_t>(3 + k)] == "p" + std::to_string(k), "'", p.path,
                "' header field ", 4 + k, " is '", header[static_cast<std::size_t>(3 + k)], "', expected p", k);
  std::unordered_map<std::string, std::size_t> seen;
  for (std::size_t r = 0; r < t.size(); ++r) {
    const std::string& id = t.at(r, 0);
    if (!seen.emplace(id, r).second) t.fail(r, "image '" + id + "' appears twice");
    p.ids.push_back(id);
    p.labels.push_back(static_cast<int>(t.integer(r, 1, 0, p.classes - 1)));
    const int pred = static_cast<int>(t.integer(r, 2, 0, p.classes - 1));
    p.predicted.push_back(pred);
    const std::size_t first = p.probs.size();
    double sum = 0;
    int best = 0;
    for (int k = 0; k < p.classes; ++k) {
      const std::string& s = t.at(r, 3 + k);
      float v = std::nanf("");
      const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
      if (ec != std::errc() || end != s.data() + s.size() || !(v >= 0.0f && v <= 1.0f))
        t.fail(r, "p" + std::to_string(k) + " '" + s + "' is not a probability");
      p.probs.push_back(static_cast<double>(v));
      sum += v;
      if (p.probs[first + static_cast<std::size_t>(k)] > p.probs[first + static_cast<std::size_t>(best)]) best = k;
    }
    if (!(std::abs(sum - 1.0) <= 1e-3))
      t.fail(r, "the probabilities p0..p" + std::to_string(p.classes - 1) + " sum to " + std::to_string(sum) +
                    ", not 1 (predictions.csv holds softmax probabilities, not scores)");
    if (pred != best)
      t.fail(r, "pred " + std::to_string(pred) + " is not the class of the largest probability (" +
                    std::to_string(best) + ")");
  }
  FOVEA_CHECK(!p.ids.empty(), "'", p.path, "' has no image rows");
  return p;
}

// read_predictions: `where` is a predictions.csv or a run folder holding one (strict CSV: quotes,
// field counts, file:line errors; then as predictions_from_table).
inline PredictionsFile read_predictions(const std::filesystem::path& where) {
  namespace fs = std::filesystem;
  const fs::path file = fs::is_directory(where) ? where / "predictions.csv" : where;
  FOVEA_CHECK(fs::is_regular_file(file), "cannot read '", file.string(),
              "' (give an evaluation's predictions.csv or the run folder that holds it)");
  return predictions_from_table(data::read_csv(file));
}

// align_predictions: B's probability rows in A's image order. Throws fovea::Error when the two
// files do not hold the same images with the same labels and classes (not the same evaluation set:
// nothing to pair).
inline std::vector<double> align_predictions(const PredictionsFile& a, const PredictionsFile& b) {
  FOVEA_CHECK(a.classes == b.classes, "'", a.path, "' has ", a.classes, " classes, '", b.path, "' ", b.classes);
  FOVEA_CHECK(a.ids.size() == b.ids.size(), "'", a.path, "' has ", a.ids.size(), " images, '", b.path, "' ",
              b.ids.size(), ": the models must be evaluated on the same images");
  std::unordered_map<std::string, std::size_t> row;
  for (std::size_t i = 0; i < b.ids.size(); ++i) row[b.ids[i]] = i;
  std::vector<double> out;
  out.reserve(b.probs.size());
  const auto k = static_cast<std::size_t>(a.classes);
  for (std::size_t i = 0; i < a.ids.size(); ++i) {
    const auto it = row.find(a.ids[i]);
    FOVEA_CHECK(it != row.end(), "image '", a.ids[i], "' of '", a.path, "' is not in '", b.path, "'");
    FOVEA_CHECK(b.labels[it->second] == a.labels[i], "image '", a.ids[i], "' has label ", a.labels[i], " in '",
                a.path, "' and ", b.labels[it->second], " in '", b.path, "'");
    out.insert(out.end(), b.probs.begin() + static_cast<std::ptrdiff_t>(it->second * k),
               b.probs.begin() + static_cast<std::ptrdiff_t>((it->second + 1) * k));
  }
  return out;
}

}  // namespace fovea::eval
