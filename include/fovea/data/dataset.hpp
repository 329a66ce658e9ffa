// fovea/data/dataset.hpp: fundus data sets as lists of samples (image id, file, grade, patient): the
// EyePACS / APTOS / IDRiD label files, folder-per-class and unlabelled folders, IDRiD lesion masks,
// and the label schemes (5 grades, referable DR, any DR).
//
// Format detection (load_dataset / load_labels_csv), by the CSV header:
//   image,level                                  EyePACS / Kaggle 2015   grades 0-4, extension .jpeg first
//   id_code,diagnosis                            APTOS 2019              grades 0-4, extension .png first
//   Image name,Ophthalmologic department,Retinopathy grade[,...]
//                                                Messidor-1              Messidor's own grades 0-3 (not
//                                                ICDR: map_labels gives only referable >= 2 or 3 and any
//                                                DR), extension .tif first
//   Image name,Retinopathy grade[,...]           IDRiD grading set       grades 0-4, extension .jpg first
//   image_id,adjudicated_dr_grade[,...]          Messidor-2 (Krause et al. grades 0-4, also written 2.0;
//                                                rows with adjudicated_gradable 0 are left out and listed
//                                                in Dataset::excluded), extension .png first
//   image,lesion_type,mask_path[,lesion_pixels]  IDRiD lesion masks      unlabelled (the masked images)
// A directory holding labels.csv, trainLabels.csv, train.csv or messidor_data.csv is read through that
// file; one whose subfolders are class numbers (0/, 1/, ...) is folder-per-class; any other is an
// unlabelled folder.
//
// Image lookup for a CSV name (ImageFinder): in the folders BASE, BASE/images, BASE/train,
// BASE/train_images, BASE/IMAGES (those that exist, in this order; BASE = DatasetOptions::image_dir or
// else the CSV's folder), the first file that is NAME as written, else NAME + extension for the
// format's extension order (a permutation of .jpeg .jpg .png .tif .tiff), else, for a NAME that has an
// image extension, its id + extension (in every folder, in that order). Names are case-sensitive but
// for the image extension: where no file matches exactly, one whose extension differs only in case
// is taken ("IM002385" or "IM002385.jpg" finds IM002385.JPG; of two such files the first in byte
// order), as the folder loaders do. Names holding a '/' are looked up exactly.
// An id is the CSV name without a trailing image extension ("IDRiD_01.jpg" -> "IDRiD_01").
//
// Patient rule (PatientRule): EyePACS, folder and unlabelled data: the part of the file name
// (directories dropped) before the first '_' ("10_left" -> "10", "sub/7_right" -> "7"; a name
// without '_' is its own patient). APTOS, IDRiD, Messidor-1 and Messidor-2: every image is its own
// patient (their ids carry no patient; Messidor's files do not link a patient's two eyes, and a
// Messidor-1 name begins with a date, not a patient).
// DatasetOptions::patient replaces the rule.
#pragma once

#include <algorithm>
#include <array>
#include <cctype>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "fovea/core/error.hpp"
#include "fovea/data/csv.hpp"

namespace fovea::data {

inline constexpr int kUnlabelled = -1;
inline constexpr int kNumGrades = 5;  // ICDR: 0 no DR, 1 mild, 2 moderate, 3 severe NPDR, 4 PDR
inline constexpr int kMessidor1Grades = 4;  // Messidor-1's own scale, 0-3 (load_messidor1)

// One image: its id (unique within a data set), file, label (kUnlabelled = -1 when none) and patient.
struct Sample {
  std::string id;
  std::filesystem::path path;
  int label = kUnlabelled;
  std::string patient;
};

enum class DatasetFormat {
  eyepacs,
  aptos,
  idrid_grading,
  idrid_lesions,
  class_folders,
  unlabelled_folder,
  messidor2,
  messidor1
};

inline const char* format_name(DatasetFormat f) {
  switch (f) {
    case DatasetFormat::eyepacs: return "eyepacs";
    case DatasetFormat::aptos: return "aptos";
    case DatasetFormat::idrid_grading: return "idrid_grading";
    case DatasetFormat::idrid_lesions: return "idrid_lesions";
    case DatasetFormat::class_folders: return "class_folders";
    case DatasetFormat::unlabelled_folder: return "unlabelled_folder";
    case DatasetFormat::messidor2: return "messidor2";
    case DatasetFormat::messidor1: return "messidor1";
  }
  return "unknown";
}

// A list of samples in a fixed order (CSV order, or sorted paths for folders).
struct Dataset {
  std::vector<Sample> samples;
  std::string root;         // the folder images were looked up in (or the folder read)
  std::string labels_file;  // the CSV read, or empty
  DatasetFormat format = DatasetFormat::unlabelled_folder;
  int num_classes = kNumGrades;      // labels lie in [0, num_classes) or are kUnlabelled; 0 = no labels
                                     // (kMessidor1Grades for Messidor-1's own 0-3 scale)
  std::vector<std::string> missing;  // with skip_missing: one message per dropped image
  std::vector<std::string> missing_ids;  // and its image id (index-aligned with missing)
  std::vector<std::string> excluded;  // rows the format leaves out (Messidor-2: ungradable), one message each

  std::size_t size() const { return samples.size(); }
  bool empty() const { return samples.empty(); }
  const Sample& operator[](std::size_t i) const { return samples[i]; }
  Sample& operator[](std::size_t i) { return samples[i]; }

  std::vector<int> labels() const {
    std::vector<int> v;
    v.reserve(samples.size());
    for (const Sample& s : samples) v.push_back(s.label);
    return v;
  }
  // Samples per class, index = label (unlabelled samples not counted).
  std::vector<std::size_t> class_counts() const {
    std::vector<std::size_t> counts(static_cast<std::size_t>(std::max(num_classes, 0)), 0);
    for (const Sample& s : samples)
      if (s.label >= 0 && s.label < num_classes) ++counts[static_cast<std::size_t>(s.label)];
    return counts;
  }
  std::size_t patient_count() const {
    std::unordered_set<std::string> p;
    for (const Sample& s : samples) p.insert(s.patient);
    return p.size();
  }
  // The samples at `indices`, in that order, with the same metadata.
  Dataset subset(const std::vector<std::size_t>& indices) const {
    Dataset d;
    d.root = root;
    d.labels_file = labels_file;
    d.format = format;
    d.num_classes = num_classes;
    d.samples.reserve(indices.size());
    for (std::size_t i : indices) {
      FOVEA_CHECK(i < samples.size(), "Dataset::subset: index ", i, " of a data set of ", samples.size());
      d.samples.push_back(samples[i]);
    }
    return d;
  }
};

// ---- patients -----------------------------------------------------------------------------------

using PatientRule = std::function<std::string(std::string_view id)>;

// The default EyePACS rule: the file name part of `id` without its eye suffix when it ends in
// "_left" / "_right" ("10_left" -> "10", "synthetic_12_right" -> "synthetic_12"), else up to the
// first '_'.
inline std::string patient_before_underscore(std::string_view id) {
  if (const std::size_t slash = id.rfind('/'); slash != std::string_view::npos) id.remove_prefix(slash + 1);
  for (std::string_view eye : {std::string_view("_left"), std::string_view("_right")})
    if (id.size() > eye.size() && id.substr(id.size() - eye.size()) == eye)
      return std::string(id.substr(0, id.size() - eye.size()));
  return std::string(id.substr(0, id.find('_')));
}
// Every image its own patient (APTOS, IDRiD).
inline std::string patient_is_image(std::string_view id) { return std::string(id); }

struct DatasetOptions {
  // Drop images that are referenced but absent, listing them in Dataset::missing, instead of failing.
  bool skip_missing = false;
  // Where to look for images; empty = the CSV's folder (see ImageFinder for the subfolders tried).
  std::filesystem::path image_dir;
  // The patient rule; empty = the format's default (see the top of this file).
  PatientRule patient;
};

// ---- image lookup -------------------------------------------------------------------------------

inline constexpr std::array<std::string_view, 5> kImageExtensions{".jpeg", ".jpg", ".png", ".tif", ".tiff"};

namespace detail {

inline std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// True when `name` ends with one of kImageExtensions (any case).
inline bool has_image_extension(std::string_view name) {
  const std::string l = lower(name);
  return std::any_of(kImageExtensions.begin(), kImageExtensions.end(), [&](std::string_view e) {
    return l.size() > e.size() && std::string_view(l).substr(l.size() - e.size()) == e;
  });
}

inline std::vector<std::string> extension_order(std::string_view first) {
  std::vector<std::string> order{std::string(first)};
  for (std::string_view e : kImageExtensions)
    if (e != first) order.emplace_back(e);
  return order;
}

}  // namespace detail

// image_id: a CSV image name without its image extension ("IDRiD_01.jpg" -> "IDRiD_01").
inline std::string image_id(std::string_view name) {
  if (!detail::has_image_extension(name)) return std::string(name);
  return std::string(name.substr(0, name.rfind('.')));
}

// file_name_of_id: an image id as one file name, for the files drivers write per image (saliency
// maps, robustness examples). Ids may name subfolders ("0/abc" in a folder-per-class data set,
// "sub/abc" in a labels.csv), which would otherwise need folders that do not exist; '/', '\\',
// '%' and control bytes become %XX (so different ids stay different names and the id can be read
// back), and a leading '.' becomes %2E (no hidden files, no "." or ".."). An empty id gives "%".
inline std::string file_name_of_id(std::string_view id) {
  if (id.empty()) return "%";
  std::string out;
  out.reserve(id.size());
  for (std::size_t i = 0; i < id.size(); ++i) {
    const auto c = static_cast<unsigned char>(id[i]);
    if (c == '/' || c == '\\' || c == '%' || c < 0x20 || c == 0x7f || (i == 0 && c == '.')) {
      constexpr char hex[] = "0123456789ABCDEF";
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 15];
    } else {
      out += static_cast<char>(c);
    }
  }
  return out;
}

// Finds the file of an image name: see the top of this file for the search order. Each folder is
// listed once, so lookups cost no system calls (names with a '/' are checked on disk).
class ImageFinder {
 public:
  ImageFinder(const std::filesystem::path& base, std::vector<std::string> extensions)
      : extensions_(std::move(extensions)) {
    namespace fs = std::filesystem;
    for (const char* sub : {"", "images", "train", "train_images", "IMAGES"}) {
      const fs::path dir = *sub ? base / sub : base;
      std::error_code ec;
      if (!fs::is_directory(dir, ec)) continue;
      Folder folder{dir, {}, {}};
      for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec))
        if (it->is_regular_file(ec)) {
          std::string file = it->path().filename().string();
          if (detail::has_image_extension(file)) {
            const auto [at, inserted] = folder.folded.emplace(extension_folded(file), file);
            if (!inserted && file < at->second) at->second = file;  // the first in byte order
          }
          folder.files.insert(std::move(file));
        }
      if (ec) throw Error("cannot list image folder '" + dir.string() + "': " + ec.message());
      folders_.push_back(std::move(folder));
    }
  }

  // NAME as written, else NAME + an extension, else (for a NAME with an image extension: a grade file
  // written for .tif images that were converted to .png) its id + an extension.
  std::optional<std::filesystem::path> find(const std::string& name) const {
    for (const Folder& f : folders_) {
      if (const auto file = lookup(f, name)) return f.path / *file;
      for (const std::string& ext : extensions_)
        if (const auto file = lookup(f, name + ext)) return f.path / *file;
    }
    if (const std::string id = image_id(name); id != name)
      for (const Folder& f : folders_)
        for (const std::string& ext : extensions_)
          if (const auto file = lookup(f, id + ext)) return f.path / *file;
    return std::nullopt;
  }
  // "looked for 'NAME' and NAME{.jpeg,...} in 'a', 'b'" for error messages.
  std::string describe(const std::string& name) const {
    std::string s = "looked for '" + name + "' and '" + name + "' + {";
    for (std::size_t i = 0; i < extensions_.size(); ++i) s += (i ? "," : "") + extensions_[i];
    s += "} in ";
    if (folders_.empty()) return s + "(no existing folder)";
    for (std::size_t i = 0; i < folders_.size(); ++i)
      s += (i ? ", '" : "'") + folders_[i].path.string() + "'";
    return s;
  }

 private:
  struct Folder {
    std::filesystem::path path;
    std::unordered_set<std::string> files;
    // name with its image extension in lower case -> the file (of several, the first in byte order)
    std::unordered_map<std::string, std::string> folded;
  };
  // `file` with a trailing image extension in lower case (unchanged when it has none).
  static std::string extension_folded(const std::string& file) {
    if (!detail::has_image_extension(file)) return file;
    const std::size_t dot = file.rfind('.');
    return file.substr(0, dot) + detail::lower(std::string_view(file).substr(dot));
  }
  // The file of `f` named `name`, else one whose image extension differs only in case.
  static std::optional<std::string> lookup(const Folder& f, const std::string& name) {
    if (name.find('/') != std::string::npos) {
      std::error_code ec;
      if (std::filesystem::is_regular_file(f.path / name, ec)) return name;
      return std::nullopt;
    }
    if (f.files.count(name) != 0) return name;
    if (const auto it = f.folded.find(extension_folded(name)); it != f.folded.end()) return it->second;
    return std::nullopt;
  }

  std::vector<std::string> extensions_;
  std::vector<Folder> folders_;
};

// ---- CSV label files ----------------------------------------------------------------------------

enum class CsvKind { eyepacs, aptos, idrid_grading, messidor1, messidor2, lesion_masks, split, unknown };

// detect_csv_kind: the kind of a CSV file from its header (see the top of this file; split files
// are `image,split`).
inline CsvKind detect_csv_kind(const CsvTable& t) {
  if (t.has_columns({"image", "lesion_type", "mask_path"})) return CsvKind::lesion_masks;
  if (t.has_columns({"image", "level"})) return CsvKind::eyepacs;
  if (t.has_columns({"id_code", "diagnosis"})) return CsvKind::aptos;
  // Messidor-1's annotation sheets share IDRiD's two columns; their department column tells them apart.
  if (t.has_columns({"Image name", "Ophthalmologic department", "Retinopathy grade"}))
    return CsvKind::messidor1;
  if (t.has_columns({"Image name", "Retinopathy grade"})) return CsvKind::idrid_grading;
  if (t.has_columns({"image_id", "adjudicated_dr_grade"})) return CsvKind::messidor2;
  if (t.has_columns({"image", "split"})) return CsvKind::split;
  return CsvKind::unknown;
}

namespace detail {

struct CsvLayout {
  DatasetFormat format;
  const char* image_column;
  const char* label_column;  // nullptr: unlabelled
  const char* first_extension;
  PatientRule default_patient;
  int grades = kNumGrades;  // labels lie in [0, grades)
};

inline Dataset dataset_from_table(const CsvTable& t, const CsvLayout& layout, const DatasetOptions& options) {
  namespace fs = std::filesystem;
  const fs::path csv_dir = fs::path(t.source).parent_path();
  const fs::path base =
      !options.image_dir.empty() ? options.image_dir : (csv_dir.empty() ? fs::path(".") : csv_dir);
  const ImageFinder finder(base, extension_order(layout.first_extension));
  const PatientRule& patient = options.patient ? options.patient : layout.default_patient;

  Dataset d;
  d.root = base.string();
  d.labels_file = t.source;
  d.format = layout.format;
  d.num_classes = layout.label_column ? layout.grades : 0;
  const int image_col = t.require_column(layout.image_column);
  const int label_col = layout.label_column ? t.require_column(layout.label_column) : -1;
  std::unordered_map<std::string, int> first_line;  // id -> line
  for (std::size_t r = 0; r < t.size(); ++r) {
    const std::string name = t.nonempty(r, image_col);
    const int label =
        label_col >= 0 ? static_cast<int>(t.integer(r, label_col, 0, layout.grades - 1)) : kUnlabelled;
    std::string id = image_id(name);
    const auto [it, inserted] = first_line.emplace(id, t.lines[r]);
    if (!inserted) {
      if (layout.label_column == nullptr) continue;  // lesion masks: one row per (image, type)
      t.fail(r, "image '" + id + "' is listed twice (first on line " + std::to_string(it->second) + ")");
    }
    const std::optional<fs::path> path = finder.find(name);
    if (!path) {
      std::string message = t.where(r) + ": image '" + name + "' not found (" + finder.describe(name) + ")";
      if (!options.skip_missing) throw Error(message);
      d.missing.push_back(std::move(message));
      d.missing_ids.push_back(id);
      continue;
    }
    d.samples.push_back(Sample{id, *path, label, patient(id)});
  }
  return d;
}

}  // namespace detail

// load_eyepacs: a Kaggle 2015 `image,level` file (names without extension; .jpeg files).
// Throws "file:line: ..." for a malformed row, a grade outside 0-4, a duplicate image or (without
// skip_missing) a missing file.
inline Dataset load_eyepacs(const CsvTable& t, const DatasetOptions& options = {}) {
  return detail::dataset_from_table(
      t, {DatasetFormat::eyepacs, "image", "level", ".jpeg", patient_before_underscore}, options);
}
// load_aptos: an APTOS 2019 `id_code,diagnosis` file (.png files).
inline Dataset load_aptos(const CsvTable& t, const DatasetOptions& options = {}) {
  return detail::dataset_from_table(
      t, {DatasetFormat::aptos, "id_code", "diagnosis", ".png", patient_is_image}, options);
}
// load_idrid_grading: an IDRiD grading file `Image name,Retinopathy grade,...` (.jpg files; pass the
// image folder as DatasetOptions::image_dir: IDRiD keeps images and labels apart).
inline Dataset load_idrid_grading(const CsvTable& t, const DatasetOptions& options = {}) {
  return detail::dataset_from_table(
      t, {DatasetFormat::idrid_grading, "Image name", "Retinopathy grade", ".jpg", patient_is_image},
      options);
}
// load_messidor2: Messidor-2's adjudicated grade file `image_id,adjudicated_dr_grade,adjudicated_dme,
// adjudicated_gradable` (Krause et al. 2018; names with their extension, .png first otherwise). Grades
// may be written as floats with a zero fraction ("2.0", as pandas writes a column holding NaN). A row
// whose adjudicated_gradable is 0 is left out, with a message in Dataset::excluded; its grade may be
// empty. Any other empty or fractional grade is an error naming the file and line.
inline Dataset load_messidor2(const CsvTable& t, const DatasetOptions& options = {}) {
  const int grade_col = t.require_column("adjudicated_dr_grade");
  const int gradable_col = t.column("adjudicated_gradable");
  const int image_col = t.require_column("image_id");
  CsvTable kept{t.source, t.header, {}, {}};
  std::vector<std::string> excluded;
  for (std::size_t r = 0; r < t.size(); ++r) {
    if (gradable_col >= 0 && t.integer(r, gradable_col, 0, 1) == 0) {
      excluded.push_back(t.where(r) + ": image '" + t.nonempty(r, image_col) +
                         "' is ungradable (adjudicated_gradable 0)");
      continue;
    }
    std::vector<std::string> row = t.rows[r];
    // "2.0" -> "2": a zero fraction only ("2.5" stays and fails the integer check below).
    std::string& grade = row.at(static_cast<std::size_t>(grade_col));
    std::string_view g = detail::trim_spaces(grade);
    if (const std::size_t dot = g.find('.'); dot != std::string_view::npos && dot > 0 &&
                                             g.find_first_not_of('0', dot + 1) == std::string_view::npos)
      grade = std::string(g.substr(0, dot));
    kept.rows.push_back(std::move(row));
    kept.lines.push_back(t.lines[r]);
  }
  Dataset d = detail::dataset_from_table(
      kept, {DatasetFormat::messidor2, "image_id", "adjudicated_dr_grade", ".png", patient_is_image},
      options);
  d.excluded = std::move(excluded);
  return d;
}
// load_messidor1: a Messidor-1 annotation sheet saved as CSV (`Image name,Ophthalmologic department,
// Retinopathy grade,Risk of macular edema`, one per base or concatenated; names with their .tif
// extension). Messidor-1 grades on its own 0-3 scale (0 normal; 1 up to 5 microaneurysms, no
// haemorrhage; 2 5-15 microaneurysms or 1-4 haemorrhages, no neovascularisation; 3 more, or
// neovascularisation), not on the ICDR 0-4 scale fovea's graded classifiers predict, so the data set
// keeps num_classes = kMessidor1Grades and map_labels allows only the binary schemes both scales
// share (referable >= 2 or >= 3, any DR). Throws "file:line: ..." for a grade outside 0-3.
inline Dataset load_messidor1(const CsvTable& t, const DatasetOptions& options = {}) {
  return detail::dataset_from_table(t,
                                    {DatasetFormat::messidor1, "Image name", "Retinopathy grade", ".tif",
                                     patient_is_image, kMessidor1Grades},
                                    options);
}
// load_lesion_images: the distinct images of a lesion-mask file `image,lesion_type,mask_path,...`, as
// an unlabelled data set in first-appearance order (the masks themselves: load_lesion_masks).
inline Dataset load_lesion_images(const CsvTable& t, const DatasetOptions& options = {}) {
  return detail::dataset_from_table(
      t, {DatasetFormat::idrid_lesions, "image", nullptr, ".jpg", patient_is_image}, options);
}

// load_labels_csv: reads a label CSV and picks the loader from its header (see the top of this file).
inline Dataset load_labels_csv(const std::filesystem::path& csv, const DatasetOptions& options = {}) {
  const CsvTable t = read_csv(csv);
  switch (detect_csv_kind(t)) {
    case CsvKind::eyepacs: return load_eyepacs(t, options);
    case CsvKind::aptos: return load_aptos(t, options);
    case CsvKind::idrid_grading: return load_idrid_grading(t, options);
    case CsvKind::messidor1: return load_messidor1(t, options);
    case CsvKind::messidor2: return load_messidor2(t, options);
    case CsvKind::lesion_masks: return load_lesion_images(t, options);
    case CsvKind::split:
      throw Error(t.source + ": header " + t.header_text() +
                  " is a split file (image,split): read it with read_split() and apply it to a data set");
    case CsvKind::unknown: break;
  }
  throw Error(
      t.source + ": unrecognised label file header " + t.header_text() +
      "; expected 'image,level' (EyePACS), 'id_code,diagnosis' (APTOS), 'Image name,Retinopathy grade' "
      "(IDRiD), 'Image name,Ophthalmologic department,Retinopathy grade' (Messidor-1), "
      "'image_id,adjudicated_dr_grade' (Messidor-2) or 'image,lesion_type,mask_path' (lesion masks)");
}

// ---- folders ------------------------------------------------------------------------------------

namespace detail {

// Image files under `dir`, recursively, as paths relative to `dir`, sorted.
inline std::vector<std::filesystem::path> image_files_under(const std::filesystem::path& dir) {
  namespace fs = std::filesystem;
  std::vector<fs::path> files;
  std::error_code ec;
  for (fs::recursive_directory_iterator it(dir, fs::directory_options::follow_directory_symlink, ec), end;
       !ec && it != end; it.increment(ec)) {
    if (it->path().filename().string().starts_with(".")) {
      if (it->is_directory(ec)) it.disable_recursion_pending();
      continue;
    }
    if (it->is_regular_file(ec) && has_image_extension(it->path().filename().string()))
      files.push_back(it->path().lexically_relative(dir));
  }
  if (ec) throw Error("cannot list folder '" + dir.string() + "': " + ec.message());
  std::sort(files.begin(), files.end());
  return files;
}

inline std::string relative_id(const std::filesystem::path& rel) { return image_id(rel.generic_string()); }

// The class-number subfolders of `dir` (names made of 1-2 digits, no leading zero), sorted by number.
inline std::vector<std::pair<int, std::filesystem::path>> class_subfolders(const std::filesystem::path& dir) {
  namespace fs = std::filesystem;
  std::vector<std::pair<int, fs::path>> classes;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    if (!it->is_directory(ec)) continue;
    const std::string n = it->path().filename().string();
    const bool number = !n.empty() && n.size() <= 2 &&
                        std::all_of(n.begin(), n.end(), [](char c) { return c >= '0' && c <= '9'; }) &&
                        (n.size() == 1 || n[0] != '0');
    if (number) classes.emplace_back(std::stoi(n), it->path());
  }
  if (ec) throw Error("cannot list folder '" + dir.string() + "': " + ec.message());
  std::sort(classes.begin(), classes.end());
  return classes;
}

}  // namespace detail

// load_class_folders: DIR/0/..., DIR/1/..., one subfolder per class number (images found
// recursively; other subfolders ignored). num_classes = the largest class number + 1.
// Ids are paths relative to the class folder without extension; an id in two classes is an error.
inline Dataset load_class_folders(const std::filesystem::path& dir, const DatasetOptions& options = {}) {
  const auto classes = detail::class_subfolders(dir);
  if (classes.empty())
    throw Error("'" + dir.string() + "': no class subfolders (0/, 1/, ...) for a folder-per-class data set");
  const PatientRule& patient = options.patient ? options.patient : PatientRule(patient_before_underscore);
  Dataset d;
  d.root = dir.string();
  d.format = DatasetFormat::class_folders;
  d.num_classes = classes.back().first + 1;
  std::unordered_map<std::string, int> seen;
  for (const auto& [label, folder] : classes) {
    for (const auto& rel : detail::image_files_under(folder)) {
      std::string id = detail::relative_id(rel);
      const auto [it, inserted] = seen.emplace(id, label);
      if (!inserted)
        throw Error("'" + dir.string() + "': image '" + id + "' is in class folders " +
                    std::to_string(it->second) + " and " + std::to_string(label));
      d.samples.push_back(Sample{id, folder / rel, label, patient(id)});
    }
  }
  return d;
}

// load_unlabelled_folder: every image file under DIR, recursively (hidden entries skipped), sorted by
// path, label kUnlabelled; ids are relative paths without extension. For pretraining.
inline Dataset load_unlabelled_folder(const std::filesystem::path& dir, const DatasetOptions& options = {}) {
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec)) throw Error("'" + dir.string() + "': not a folder");
  const PatientRule& patient = options.patient ? options.patient : PatientRule(patient_before_underscore);
  Dataset d;
  d.root = dir.string();
  d.format = DatasetFormat::unlabelled_folder;
  d.num_classes = 0;
  std::unordered_map<std::string, std::filesystem::path> seen;
  for (const auto& rel : detail::image_files_under(dir)) {
    std::string id = detail::relative_id(rel);
    const auto [it, inserted] = seen.emplace(id, rel);
    if (!inserted)
      throw Error("'" + dir.string() + "': two files have the image id '" + id + "': '" +
                  it->second.string() + "' and '" + rel.string() + "'");
    d.samples.push_back(Sample{id, dir / rel, kUnlabelled, patient(id)});
  }
  return d;
}

// load_dataset: a CSV file (load_labels_csv) or a folder: through its labels.csv, trainLabels.csv,
// train.csv or messidor_data.csv if present, else folder-per-class if it has class-number subfolders, else
// unlabelled.
inline Dataset load_dataset(const std::filesystem::path& path, const DatasetOptions& options = {}) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (fs::is_regular_file(path, ec)) return load_labels_csv(path, options);
  if (!fs::is_directory(path, ec)) throw Error("'" + path.string() + "': no such file or folder");
  for (const char* name : {"labels.csv", "trainLabels.csv", "train.csv", "messidor_data.csv"})
    if (fs::is_regular_file(path / name, ec)) return load_labels_csv(path / name, options);
  if (!detail::class_subfolders(path).empty()) return load_class_folders(path, options);
  return load_unlabelled_folder(path, options);
}

// ---- lesion masks -------------------------------------------------------------------------------

// IDRiD's mask types: microaneurysms, haemorrhages, hard exudates, soft exudates, optic disc; and NV
// (new vessels), which IDRiD has no masks of but fovea's synthetic generator writes for grade 4.
inline constexpr std::array<std::string_view, 6> kLesionTypes{"MA", "HE", "EX", "SE", "OD", "NV"};

struct LesionMask {
  std::filesystem::path path;
  std::int64_t pixels = -1;  // lesion pixel count from the CSV, -1 when not given
};

// Lesion masks by image id, then by type. Images without a mask of some type (IDRiD has 40 SE masks
// for 81 images) simply lack that entry.
struct LesionMasks {
  std::string labels_file;
  std::map<std::string, std::map<std::string, LesionMask>> by_image;
  std::vector<std::string> missing;  // with skip_missing: one message per dropped mask

  // The mask of `type` for image `id` (with or without extension), or nullptr.
  const LesionMask* find(std::string_view id, std::string_view type) const {
    const auto i = by_image.find(image_id(id));
    if (i == by_image.end()) return nullptr;
    const auto j = i->second.find(std::string(type));
    return j == i->second.end() ? nullptr : &j->second;
  }
  std::vector<std::string> images() const {
    std::vector<std::string> ids;
    for (const auto& [id, masks] : by_image) ids.push_back(id);
    return ids;
  }
  std::size_t count(std::string_view type) const {
    std::size_t n = 0;
    for (const auto& [id, masks] : by_image) n += masks.count(std::string(type));
    return n;
  }
};

// load_lesion_masks: a CSV `image,lesion_type,mask_path[,lesion_pixels]` (paths relative to the CSV's
// folder). Throws "file:line: ..." for a type outside kLesionTypes, a repeated (image, type), a bad
// pixel count or (without skip_missing) a missing mask file.
inline LesionMasks load_lesion_masks(const std::filesystem::path& csv, const DatasetOptions& options = {}) {
  namespace fs = std::filesystem;
  const CsvTable t = read_csv(csv);
  const int image_col = t.require_column("image");
  const int type_col = t.require_column("lesion_type");
  const int path_col = t.require_column("mask_path");
  const int pixels_col = t.column("lesion_pixels");
  const fs::path dir = csv.parent_path();
  LesionMasks m;
  m.labels_file = t.source;
  std::error_code ec;
  for (std::size_t r = 0; r < t.size(); ++r) {
    const std::string id = image_id(t.nonempty(r, image_col));
    const std::string type = t.nonempty(r, type_col);
    if (std::find(kLesionTypes.begin(), kLesionTypes.end(), type) == kLesionTypes.end())
      t.fail(r, "field 'lesion_type' is '" + type + "', not one of MA, HE, EX, SE, OD, NV");
    const std::int64_t pixels = pixels_col >= 0 ? t.integer(r, pixels_col, 0, INT64_MAX) : -1;
    const fs::path path = dir / t.nonempty(r, path_col);
    if (!fs::is_regular_file(path, ec)) {
      std::string message = t.where(r) + ": mask file '" + path.string() + "' not found";
      if (!options.skip_missing) throw Error(message);
      m.missing.push_back(std::move(message));
      continue;
    }
    if (!m.by_image[id].emplace(type, LesionMask{path, pixels}).second)
      t.fail(r, "image '" + id + "' has a second " + type + " mask");
  }
  return m;
}

// ---- label schemes ------------------------------------------------------------------------------

enum class LabelKind { grades, referable, any_dr };

// How grades 0-4 become training labels: the 5 grades; referable DR (grade >= threshold, default 2,
// the clinical convention; the authors' code also uses 3) -> 0/1; any DR (grade >= 1) -> 0/1.
struct LabelScheme {
  LabelKind kind = LabelKind::grades;
  int threshold = 2;

  static LabelScheme grades() { return {LabelKind::grades, 0}; }
  static LabelScheme referable(int threshold = 2) { return {LabelKind::referable, threshold}; }
  static LabelScheme any_dr() { return {LabelKind::any_dr, 1}; }

  int num_classes() const { return kind == LabelKind::grades ? kNumGrades : 2; }
  // requires: grade in [0, 4] or kUnlabelled (which stays kUnlabelled).
  int map(int grade) const {
    if (grade == kUnlabelled) return kUnlabelled;
    FOVEA_CHECK(grade >= 0 && grade < kNumGrades, "LabelScheme::map: grade ", grade, " outside 0-4");
    switch (kind) {
      case LabelKind::grades: return grade;
      case LabelKind::referable: return grade >= threshold ? 1 : 0;
      case LabelKind::any_dr: return grade >= 1 ? 1 : 0;
    }
    return grade;
  }
  std::string name() const {
    switch (kind) {
      case LabelKind::grades: return "grades";
      case LabelKind::referable: return "referable>=" + std::to_string(threshold);
      case LabelKind::any_dr: return "any_dr";
    }
    return "?";
  }
};

// parse_label_scheme: "grades", "referable" (>= 2), "referable>=N" (N in 1-4), "any_dr".
inline LabelScheme parse_label_scheme(std::string_view text) {
  if (text == "grades") return LabelScheme::grades();
  if (text == "referable") return LabelScheme::referable();
  if (text == "any_dr" || text == "any") return LabelScheme::any_dr();
  if (text.starts_with("referable>=") && text.size() == 12 && text[11] >= '1' && text[11] <= '4')
    return LabelScheme::referable(text[11] - '0');
  throw Error("unknown label scheme '" + std::string(text) +
              "': expected grades, referable, referable>=N (N = 1-4) or any_dr");
}

// map_labels: a copy of `d` with every grade mapped by `scheme` (unlabelled samples stay unlabelled).
// requires: d holds grades (num_classes == 5, as every loader of graded data makes it), or Messidor-1's
// 0-3 grades (num_classes == kMessidor1Grades) under referable >= 2, referable >= 3 or any DR, the
// binary questions both scales can answer: any DR is grade >= 1 on both; Messidor 2-3 are the eyes
// usually taken as referable; Messidor 3 (15 or more microaneurysms, 5 or more haemorrhages, or new
// vessels) is close to, and broader than, ICDR's severe NPDR and PDR. Grades and referable >= 4 on
// Messidor-1 are errors (referable >= 1 is any DR).
inline Dataset map_labels(const Dataset& d, const LabelScheme& scheme) {
  if (d.num_classes == kMessidor1Grades) {
    FOVEA_CHECK(
        scheme.kind == LabelKind::any_dr ||
            (scheme.kind == LabelKind::referable && scheme.threshold >= 1 && scheme.threshold <= 3),
        "map_labels: ", d.labels_file.empty() ? std::string("the data set") : d.labels_file,
        " holds Messidor-1 grades (0-3, Messidor's own scale), which are not the ICDR grades 0-4 ",
        "the label scheme '", scheme.name(),
        "' needs: use referable>=2 (Messidor 2-3), referable>=3 or any_dr; to evaluate a classifier of the ",
        "5 grades on it, run fovea evaluate --as-binary referable (or any_dr)");
    Dataset out = d;
    for (Sample& s : out.samples)
      if (s.label != kUnlabelled) s.label = scheme.map(s.label);
    out.num_classes = scheme.num_classes();
    return out;
  }
  FOVEA_CHECK(d.num_classes == kNumGrades, "map_labels: the data set holds ", d.num_classes,
              "-class labels, not the 5 DR grades (labels already mapped?)");
  Dataset out = d;
  for (Sample& s : out.samples) s.label = scheme.map(s.label);
  out.num_classes = scheme.num_classes();
  return out;
}

}  // namespace fovea::data
