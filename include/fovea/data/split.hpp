// fovea/data/split.hpp: train / validation / test splits grouped by patient and stratified by grade,
// nested label fractions, and split files (`image,split`) that record a run's split.
//
// Grouping: all images of a patient (Sample::patient) land in one split, so left and right eyes never
// leak across splits. Strata: a patient's stratum is the largest label among its images (kUnlabelled
// when it has none). Within each stratum the patients, sorted by id, are shuffled by Philox-driven
// Fisher-Yates under RandomKey(seed, kPurposeSplit, epoch 0, sample = stratum + 1, view); the first
// round(n * test) go to test, the next round(n * validation) to validation, the rest to train. Each
// split thus holds its share of every stratum's patients to within one patient, and the result is a
// pure function of (the set of (id, label, patient), fractions, seed): it does not depend on the order
// of the samples, the platform or the thread count.
//
// Label fractions (subsample): within each stratum the patients are put in one seeded order (view 1)
// and the first max(1, round(fraction * n)) are kept (none for fraction 0, all for 1). Because the order
// does not depend on the fraction, the 10 % subset of a data set is contained in its 20 % subset for
// the same seed (nested), and both keep each stratum's share of patients to within one patient.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "fovea/core/error.hpp"
#include "fovea/core/random.hpp"
#include "fovea/data/csv.hpp"
#include "fovea/data/dataset.hpp"

namespace fovea::data {

enum class Split : std::uint8_t { train, validation, test };
inline constexpr int kNumSplits = 3;

inline const char* split_name(Split s) {
  switch (s) {
    case Split::train: return "train";
    case Split::validation: return "validation";
    case Split::test: return "test";
  }
  return "?";
}
// "train", "validation" (or "val"), "test"; nullopt otherwise.
inline std::optional<Split> parse_split_name(std::string_view name) {
  if (name == "train") return Split::train;
  if (name == "validation" || name == "val") return Split::validation;
  if (name == "test") return Split::test;
  return std::nullopt;
}

// The shares of patients (per stratum) for validation and test; train takes the rest.
struct SplitFractions {
  double validation = 0.1;
  double test = 0.1;
};

namespace detail {

// Patients of a data set, sorted by id, with their sample indices and stratum (largest label).
struct PatientGroups {
  std::vector<std::string> ids;
  std::vector<int> stratum;
  std::vector<std::vector<std::size_t>> members;
  // Patient indices per stratum, in patient-id order.
  std::map<int, std::vector<std::size_t>> by_stratum;
};

inline PatientGroups group_by_patient(const Dataset& d) {
  std::map<std::string, std::vector<std::size_t>> members;
  for (std::size_t i = 0; i < d.size(); ++i) members[d[i].patient].push_back(i);
  PatientGroups g;
  for (auto& [id, samples] : members) {
    int stratum = kUnlabelled;
    for (std::size_t i : samples) stratum = std::max(stratum, d[i].label);
    g.by_stratum[stratum].push_back(g.ids.size());
    g.ids.push_back(id);
    g.stratum.push_back(stratum);
    g.members.push_back(std::move(samples));
  }
  return g;
}

// Fisher-Yates with draws from one Philox stream: position i swaps with uniform_int(i + 1).
template <class T>
void philox_shuffle(std::vector<T>& v, const RandomKey& key) {
  FOVEA_CHECK(v.size() < (std::size_t{1} << 32), "philox_shuffle: ", v.size(),
              " elements (at most 2^32 - 1)");
  Philox rng(key);
  for (std::size_t i = v.size(); i > 1; --i) {
    const std::size_t j = rng.uniform_int(static_cast<std::uint32_t>(i));
    std::swap(v[i - 1], v[j]);
  }
}

inline std::uint32_t stratum_stream(int stratum) { return static_cast<std::uint32_t>(stratum + 1); }

inline constexpr std::uint32_t kViewSplit = 0;
inline constexpr std::uint32_t kViewSubsample = 1;

}  // namespace detail

// assign_splits: the split of every sample of `d` (index-aligned), grouped by patient and stratified
// by grade as described at the top of this file.
// requires: fractions in [0, 1], validation + test <= 1.
inline std::vector<Split> assign_splits(const Dataset& d, SplitFractions fractions, std::uint64_t seed) {
  FOVEA_CHECK(fractions.validation >= 0 && fractions.test >= 0 &&
                  fractions.validation + fractions.test <= 1.0 + 1e-12,
              "assign_splits: validation ", fractions.validation, " and test ", fractions.test,
              " must be >= 0 and sum to at most 1");
  const detail::PatientGroups g = detail::group_by_patient(d);
  std::vector<Split> out(d.size(), Split::train);
  for (const auto& [stratum, patients] : g.by_stratum) {
    std::vector<std::size_t> order = patients;
    detail::philox_shuffle(
        order, make_key(seed, kPurposeSplit, 0, detail::stratum_stream(stratum), detail::kViewSplit));
    const double n = static_cast<double>(order.size());
    const std::size_t n_test = static_cast<std::size_t>(std::llround(n * fractions.test));
    const std::size_t n_val =
        std::min(static_cast<std::size_t>(std::llround(n * fractions.validation)), order.size() - n_test);
    for (std::size_t k = 0; k < order.size(); ++k) {
      const Split s = k < n_test ? Split::test : k < n_test + n_val ? Split::validation : Split::train;
      for (std::size_t i : g.members[order[k]]) out[i] = s;
    }
  }
  return out;
}

// Three data sets from one, and the assignment they came from.
struct DatasetSplits {
  Dataset train, validation, test;
  std::vector<Split> assignment;  // index-aligned with the data set split

  Dataset& operator[](Split s) {
    return s == Split::train ? train : s == Split::validation ? validation : test;
  }
  const Dataset& operator[](Split s) const {
    return s == Split::train ? train : s == Split::validation ? validation : test;
  }
};

// apply_split: the three subsets of `d` named by `assignment` (samples keep their order).
inline DatasetSplits apply_split(const Dataset& d, const std::vector<Split>& assignment) {
  FOVEA_CHECK(assignment.size() == d.size(), "apply_split: ", assignment.size(), " assignments for ",
              d.size(), " samples");
  std::vector<std::size_t> idx[kNumSplits];
  for (std::size_t i = 0; i < d.size(); ++i) idx[static_cast<int>(assignment[i])].push_back(i);
  DatasetSplits s;
  s.train = d.subset(idx[0]);
  s.validation = d.subset(idx[1]);
  s.test = d.subset(idx[2]);
  s.assignment = assignment;
  return s;
}

// split_dataset: apply_split(d, assign_splits(d, fractions, seed)).
inline DatasetSplits split_dataset(const Dataset& d, SplitFractions fractions, std::uint64_t seed) {
  return apply_split(d, assign_splits(d, fractions, seed));
}

// shared_patients: the patients found in more than one of the three splits (empty for a grouped split).
inline std::vector<std::string> shared_patients(const DatasetSplits& s) {
  std::unordered_map<std::string, int> seen;  // patient -> bit mask of splits
  for (int k = 0; k < kNumSplits; ++k)
    for (const Sample& x : s[static_cast<Split>(k)].samples) seen[x.patient] |= 1 << k;
  std::vector<std::string> out;
  for (const auto& [p, mask] : seen)
    if ((mask & (mask - 1)) != 0) out.push_back(p);
  std::sort(out.begin(), out.end());
  return out;
}

// subsample_indices: the sample indices (ascending) of a stratified, patient-grouped label fraction
// of `d`; nested in `fraction` for a fixed seed (see the top of this file). requires: 0 <= fraction <= 1.
inline std::vector<std::size_t> subsample_indices(const Dataset& d, double fraction, std::uint64_t seed) {
  FOVEA_CHECK(fraction >= 0.0 && fraction <= 1.0, "subsample: fraction ", fraction, " outside [0, 1]");
  const detail::PatientGroups g = detail::group_by_patient(d);
  std::vector<std::size_t> keep;
  for (const auto& [stratum, patients] : g.by_stratum) {
    std::vector<std::size_t> order = patients;
    detail::philox_shuffle(
        order, make_key(seed, kPurposeSplit, 0, detail::stratum_stream(stratum), detail::kViewSubsample));
    std::size_t n = 0;
    if (fraction >= 1.0) {
      n = order.size();
    } else if (fraction > 0.0) {
      n = std::max<std::size_t>(
          1, static_cast<std::size_t>(std::llround(fraction * static_cast<double>(order.size()))));
      n = std::min(n, order.size());
    }
    for (std::size_t k = 0; k < n; ++k)
      keep.insert(keep.end(), g.members[order[k]].begin(), g.members[order[k]].end());
  }
  std::sort(keep.begin(), keep.end());
  return keep;
}

// subsample: the label fraction of `d` as a data set (samples in their original order).
inline Dataset subsample(const Dataset& d, double fraction, std::uint64_t seed) {
  return d.subset(subsample_indices(d, fraction, seed));
}

// ---- split files --------------------------------------------------------------------------------

// write_split: a CSV `image,split` (one row per sample, in data set order), written atomically.
inline void write_split(const std::filesystem::path& path, const Dataset& d,
                        const std::vector<Split>& assignment) {
  FOVEA_CHECK(assignment.size() == d.size(), "write_split: ", assignment.size(), " assignments for ",
              d.size(), " samples");
  std::vector<std::vector<std::string>> rows;
  rows.reserve(d.size());
  for (std::size_t i = 0; i < d.size(); ++i) rows.push_back({d[i].id, split_name(assignment[i])});
  write_csv(path, {"image", "split"}, rows);
}
inline void write_split(const std::filesystem::path& path, const Dataset& d, const DatasetSplits& s) {
  write_split(path, d, s.assignment);
}

// A split file read back: image id (extension dropped, see image_id) -> split.
struct SplitFile {
  std::string source;
  std::unordered_map<std::string, Split> by_id;

  // The assignment of every sample of `d`. Throws naming the first sample the file does not list;
  // ids the file lists but `d` lacks are ignored (e.g. images dropped by skip_missing).
  std::vector<Split> assignment_for(const Dataset& d) const {
    std::vector<Split> out;
    out.reserve(d.size());
    for (const Sample& s : d.samples) {
      const auto it = by_id.find(s.id);
      if (it == by_id.end())
        throw Error(source + ": no split for image '" + s.id + "' of the data set (" +
                    std::to_string(d.size()) + " images; the split file lists " +
                    std::to_string(by_id.size()) + ")");
      out.push_back(it->second);
    }
    return out;
  }
};

// split_from_table: a parsed CSV `image,split` (split: train, validation or val, test) as a split
// file. Throws "file:line: ..." for a missing column, an unknown split name or a repeated image.
inline SplitFile split_from_table(const CsvTable& t) {
  const int image_col = t.require_column("image");
  const int split_col = t.require_column("split");
  SplitFile f;
  f.source = t.source;
  for (std::size_t r = 0; r < t.size(); ++r) {
    const std::string id = image_id(t.nonempty(r, image_col));
    const std::string name = t.nonempty(r, split_col);
    const std::optional<Split> s = parse_split_name(name);
    if (!s) t.fail(r, "field 'split' is '" + name + "', not train, validation or test");
    if (!f.by_id.emplace(id, *s).second) t.fail(r, "image '" + id + "' is listed twice");
  }
  return f;
}

// read_split: split_from_table of the CSV file at `path` (its errors name the file and line).
inline SplitFile read_split(const std::filesystem::path& path) { return split_from_table(read_csv(path)); }

}  // namespace fovea::data
