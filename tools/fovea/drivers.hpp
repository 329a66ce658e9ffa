// tools/fovea/drivers.hpp: the experiment drivers of the fovea program: `pretrain` (SimCLR or MoCo v2),
// `finetune` (full fine-tuning or linear evaluation, best checkpoint on validation), `evaluate`
// (kappa, AUC, accuracy, sensitivity/specificity, ECE with bootstrap CIs), `robustness` (the same
// classifier under image corruptions, corruption errors against a reference) and `study` (the
// README's main job). The templated bodies live in drivers_impl.hpp, instantiated once per architecture in
// drivers_resnet*.cpp so the network templates compile in parallel.
#pragma once

#include <algorithm>
#include <atomic>
#include <charconv>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "fovea/core/error.hpp"
#include "fovea/core/tensor.hpp"
#include "fovea/data/corruptions.hpp"
#include "fovea/data/dataset.hpp"
#include "fovea/data/image.hpp"
#include "fovea/io/atomic_file.hpp"
#include "fovea/io/safetensors.hpp"

namespace fovea::tools {

// The string entries of a safetensors file's __metadata__ (fovea.* keys that pretrain and finetune
// write); empty when it has none or its header cannot be read (loading the file reports that properly).
inline std::map<std::string, std::string> weights_metadata(const std::string& weights) {
  std::map<std::string, std::string> out;
  try {
    std::ifstream in(weights, std::ios::binary);
    unsigned char size[8] = {};
    if (!in.read(reinterpret_cast<char*>(size), 8)) return out;
    std::uint64_t n = 0;
    for (int i = 7; i >= 0; --i) n = (n << 8) | size[i];
    if (n == 0 || n > io::kSafeTensorsMaxHeaderBytes) return out;
    std::string header(static_cast<std::size_t>(n), '\0');
    if (!in.read(header.data(), static_cast<std::streamsize>(n))) return out;
    const nlohmann::json h = nlohmann::json::parse(header);
    const auto m = h.find("__metadata__");
    if (m == h.end() || !m->is_object()) return out;
    for (const auto& [key, value] : m->items())
      if (value.is_string()) out[key] = value.get<std::string>();
  } catch (const std::exception&) {
    out.clear();
  }
  return out;
}

// The --preprocess a weights file was made with: its fovea.preprocess metadata; empty when the file
// does not say (torchvision weights, runs before the flag).
inline std::string weights_preprocess(const std::string& weights) {
  const auto m = weights_metadata(weights);
  const auto it = m.find("fovea.preprocess");
  return it == m.end() ? "" : it->second;
}

// A note for a log when `weights` says it was made with another --preprocess than `preprocess` (not an
// error: evaluating across preprocessings can be the point); empty otherwise. `who`: the command.
inline std::string preprocess_mismatch(const std::string& who, const std::string& weights,
                                       const std::string& preprocess) {
  const std::string made = weights_preprocess(weights);
  if (made.empty() || made == preprocess) return "";
  return who + ": note: " + weights + " was trained with --preprocess " + made +
         ", this run uses --preprocess " + preprocess + " (pass --preprocess " + made +
         " to give the model the inputs it learned from)";
}

// Settings every driver shares (flags of REFERENCE.md §2).
struct RunArgs {
  std::string data;            // data folder (EyePACS-style labels.csv + images, APTOS, folders)
  std::string labels;          // label CSV; default: <data>/labels.csv when present
  std::string arch = "resnet18";
  std::string out;             // output folder
  std::string device = "auto"; // auto (cuda:0 when usable, else cpu), cpu, cuda, cuda:N
  std::string normalization = "dr";  // dr | imagenet
  int size = 224;              // network input side
  float width = 1.0f;          // ResNet width multiplier
  bool small_stem = false;
  std::int64_t epochs = 1;
  std::int64_t batch_size = 32;
  float lr = 0.0f;             // 0: the method's default
  float weight_decay = -1.0f;  // < 0: the method's default
  std::int64_t warmup_epochs = -1;  // < 0: the method's default
  std::uint64_t seed = 0;
  int threads = 2;             // loader threads
  std::int64_t log_every = 10;
  std::int64_t checkpoint_every = 200;  // steps between mid-epoch checkpoints (0: epoch ends only)
  bool resume = true;          // continue from <out>/checkpoints/latest when present
  // GPU math (math_settings()): only cuDNN algorithms that are bitwise reproducible run to run;
  // TF32 tensor cores for convolutions and GEMMs. The CPU ops are always fp32 and deterministic.
  bool deterministic = false;
  bool tf32 = true;
  std::string config;          // --config FILE (applied by the command line; not part of config.json)
  // Drop images that are missing or do not decode (each decoded once first) instead of stopping;
  // they are listed in <out>/skipped_images.csv.
  bool skip_bad_images = false;
  // A folder for the disk cache of decoded and resized images (data/cache.hpp): each image is decoded
  // once across epochs and runs; stored in 8 bits, so results differ from an uncached run by at most
  // half an 8-bit step per input value. Empty: no cache.
  std::string image_cache;
  // What turns a decoded photo into the loader's image (data::FundusMode): resize (Resize +
  // CenterCrop, the study's), fov (square crop around the field of view) or graham (fov, then Ben
  // Graham's local contrast normalisation). Part of config.json when not resize.
  std::string preprocess = "resize";
};

struct PretrainArgs : RunArgs {
  std::string method = "simclr";  // simclr | moco
  std::string init;               // weights file (e.g. torchvision ImageNet) or empty: random
  float temperature = 0.0f;       // 0: 0.5 SimCLR, 0.2 MoCo
  int hidden = 0;                 // projection hidden width; 0: the backbone's feature width
  int dim = 128;                  // projection output
  std::int64_t queue = 4096;      // MoCo queue length (0: moco_queue_for(images, batch))
  float key_momentum = 0.99f;     // MoCo key encoder EMA
  std::int64_t knn_every = 1;     // epochs between kNN monitors of the backbone (0: off; needs grades)
  // The two views' augmentation (data::parse_augment): empty for the method's preset (simclr,
  // moco_v2), else a preset (simclr, moco_v2, fundus, crop) and/or key=value changes.
  std::string augment;
  // Which images it learns from: all (every image of --data) or train (only the training patients
  // of the split fovea finetune makes with the same seed, fractions and label scheme, so that no
  // validation or test patient is seen before fine-tuning and testing; the study's default).
  std::string images = "all";
  double val_fraction = 0.2, test_fraction = 0.2;  // with images == train: finetune's split
  std::string label_scheme = "grades";
};

struct FinetuneArgs : RunArgs {
  std::string init = "random";    // random | weights file (torchvision, fovea backbone or checkpoint)
  bool linear = false;            // linear evaluation: frozen backbone
  double label_fraction = 1.0;
  std::string label_scheme = "grades";  // grades | referable | referable>=N | any_dr (data::parse_label_scheme)
  double val_fraction = 0.2, test_fraction = 0.2;
  std::string sampler = "shuffled";     // shuffled | balanced (class-balanced draws with replacement)
  std::string class_weights = "none";   // none | inverse (n / (K n_k)) | comma-separated weights
  float label_smoothing = 0.0f;
};

struct EvaluateArgs : RunArgs {
  std::string weights;
  std::string label_scheme = "grades";
  int referable_threshold = 2;
  // Non-empty (referable, referable>=N, any_dr): evaluate the classifier of the 5 grades as a binary
  // one, P(grade >= t) against labels >= t (the only way to score it on Messidor-1's 0-3 grades).
  std::string as_binary;
  int bootstrap = 1000;
  std::string split;        // optional split file (image,split); with split_name: evaluate that part
  std::string split_name = "test";
};

// `robustness`: a classifier on a labelled set under image corruptions (docs/robustness.md).
struct RobustnessArgs : EvaluateArgs {
  std::string corruptions = "all";  // all | imagenet_c | fundus | comma-separated names
  std::string severities = "1,2,3,4,5";
  std::string reference;  // another run's robustness.csv: corruption errors relative to it
  // MiB of decoded test images kept in memory between the passes (0: decode every pass). Does not
  // change the results, so it is not part of config.json.
  std::int64_t decode_cache_mb = 2048;
  // The first N images of the set (data set order), corrupted as the model sees them (before the
  // test transform's crop and normalisation), as examples/<corruption>_<severity>_<image>.png. Does
  // not change the results, so it is not part of config.json.
  std::int64_t save_examples = 0;
};

// DecodedImageCache: the decoded images of one data set, kept in memory between passes over it
// (`robustness` decodes each image once, not once per corrupted set), keyed by data set index.
// get(index, decode) returns a copy of the stored image, or else calls decode() and stores its result
// while the stored bytes stay within the budget; an image beyond it is simply decoded again on every
// call. Which images end up stored may depend on thread timing, but a stored image equals what
// decode() returns, so for a deterministic decode the results never depend on the cache. One slot per
// index, allocated up front: threads filling distinct indices touch distinct slots, and two threads
// decoding the same index at once both return their own image while only one of them stores it.
// Thread-safe (get from any number of threads; images() / bytes() any time).
class DecodedImageCache {
 public:
  DecodedImageCache(std::size_t images, std::size_t budget_bytes) : slots_(images), budget_(budget_bytes) {}
  DecodedImageCache(const DecodedImageCache&) = delete;
  DecodedImageCache& operator=(const DecodedImageCache&) = delete;

  // The image of data set index `index` (< the size given to the constructor): a clone of the stored
  // one, or decode()'s result (a Tensor; what it throws propagates and nothing is stored).
  template <class Decode>
  Tensor get(std::size_t index, Decode&& decode) {
    FOVEA_CHECK(index < slots_.size(), "DecodedImageCache: index ", index, " outside a cache of ",
                slots_.size(), " images");
    Slot& slot = slots_[index];
    if (slot.state.load(std::memory_order_acquire) == kStored) return slot.image.clone();
    Tensor image = decode();
    if (budget_ == 0 || !image.device().is_cpu()) return image;
    int empty = kEmpty;
    if (!slot.state.compare_exchange_strong(empty, kFilling, std::memory_order_acq_rel)) return image;
    if (!reserve(image.bytes())) {
      slot.state.store(kEmpty, std::memory_order_release);
      return image;
    }
    slot.image = image.clone();
    images_.fetch_add(1, std::memory_order_relaxed);
    slot.state.store(kStored, std::memory_order_release);
    return image;
  }

  std::size_t images() const { return images_.load(std::memory_order_relaxed); }  // images stored
  std::size_t bytes() const { return bytes_.load(std::memory_order_relaxed); }    // their bytes
  std::size_t budget_bytes() const { return budget_; }
  std::size_t capacity() const { return slots_.size(); }  // indices

 private:
  static constexpr int kEmpty = 0, kFilling = 1, kStored = 2;
  struct Slot {
    std::atomic<int> state{kEmpty};
    Tensor image;  // written once, by the thread that moved state from kEmpty to kFilling
  };
  // Adds `bytes` to the stored bytes when the sum stays within the budget.
  bool reserve(std::size_t bytes) {
    std::size_t used = bytes_.load(std::memory_order_relaxed);
    do {
      if (bytes > budget_ || used > budget_ - bytes) return false;
    } while (!bytes_.compare_exchange_weak(used, used + bytes, std::memory_order_relaxed));
    return true;
  }

  std::vector<Slot> slots_;
  std::size_t budget_;
  std::atomic<std::size_t> bytes_{0}, images_{0};
};

// What `robustness` found: the clean error and, per corruption, the mean error over the severities
// and (with a reference) the corruption error CE; mCE over the corruptions (NaN without a reference).
struct RobustnessSummary {
  double clean_error = 0.0, clean_kappa = 0.0, mean_error = 0.0, mean_kappa = 0.0, mce = 0.0,
         relative_mce = 0.0;
  std::int64_t images = 0;
  std::map<int, double> error_by_severity;  // severity -> mean error over the corruptions
};

// `saliency`: attribution maps of a classifier scored against lesion masks (docs/saliency.md).
struct SaliencyArgs : RunArgs {
  std::string weights;
  std::string masks;  // lesion-mask CSV: image,lesion_type,mask_path[,lesion_pixels] (IDRiD's, fovea generate
                      // --masks)
  std::string label_scheme = "grades";  // the classifier's head: 5 grades, or 2 classes
  std::string methods = "gradient,gradient_x_input,smoothgrad,integrated_gradients,grad_cam,lrp";
  std::string target = "predicted";          // predicted | a class index
  std::string baseline = "black";            // integrated gradients: black | gray | mean | blurred
  std::string ig_rule = "riemann_midpoint";  // riemann_midpoint | gauss_legendre
  int ig_steps = 50;
  int smoothgrad_samples = 50;
  float smoothgrad_sigma = 0.15f;
  std::string gradcam_layer = "layer4";  // Grad-CAM's layer (state-dict path)
  std::string lrp_rule = "plus";         // LRP's rule for inner convolutions: plus | gamma | epsilon
  std::string lrp_input = "box";         // LRP's rule for the first convolution: box | flat | epsilon
  float lrp_gamma = 0.25f;
  std::int64_t count = 0;  // images scored (0: every image with a mask)
  std::string split;       // optional split file (image,split): score only that part's images
  std::string split_name = "test";
  std::int64_t randomization = 0;  // images of the cascading parameter-randomisation check (0: off)
  bool overlays = true;    // PNG overlays and raw maps per image
};

// What `saliency` found, for the study's table: per method, the means over the images of the scores
// against the MA + HE + EX union (NaN where no image had one).
struct SaliencySummary {
  struct Scores {
    double mass_inside = 0, rank_accuracy = 0, pointing_game = 0;
    // the randomisation check's mean heatmap Spearman after every stage is randomised (NaN: not run)
    double randomized_spearman = std::numeric_limits<double>::quiet_NaN();
  };
  std::map<std::string, Scores> union_scores;                      // method -> scores
  double union_chance = std::numeric_limits<double>::quiet_NaN();  // mean lesion share of the field of view
  std::int64_t images = 0;
};

// What `evaluate` found, for the study's table.
struct EvalSummary {
  std::map<std::string, double> point, low, high;  // "kappa", "auc", "accuracy"
  std::int64_t images = 0;
  std::int64_t excluded = 0;  // label-file rows the format left out (Messidor-2's ungradable images)
  // What predictions.csv holds, for paired comparisons (eval::compare_predictions): the images in
  // evaluation order, their labels, the probabilities (images x classes), and the evaluation's settings.
  std::vector<std::string> ids;
  std::vector<int> labels;
  std::vector<double> probs;
  int classes = 0, referable_threshold = 0, resamples = 0;
  std::uint64_t seed = 0;
  std::string as_binary;  // the binary scheme the graded classifier was scored under, or empty
};

// The corruptions --corruptions names: all (ImageNet-C's 16, then the 5 fundus ones), imagenet_c,
// fundus, or comma-separated names (data::parse_corruption_list).
inline std::vector<data::Corruption> corruption_list(const std::string& text) {
  return data::parse_corruption_list(text);
}

// --severities: comma-separated integers in 1..5.
inline std::vector<int> severity_list(const std::string& text) {
  std::vector<int> v;
  std::stringstream in(text);
  std::string item;
  while (std::getline(in, item, ',')) {
    int s = 0;
    const auto [end, ec] = std::from_chars(item.data(), item.data() + item.size(), s);
    FOVEA_CHECK(ec == std::errc() && end == item.data() + item.size() && s >= 1 && s <= 5, "--severities: '",
                item, "' is not a severity in 1..5 (expected e.g. 1,2,3,4,5)");
    v.push_back(s);
  }
  FOVEA_CHECK(!v.empty(), "--severities: no severity in '", text, "'");
  return v;
}

// The initialisations `fovea study` compares (--regimes): key, table label, the self-supervised
// method run first (empty: none) and whether it starts from --imagenet-weights.
struct StudyRegime {
  std::string key;
  const char* label;
  std::string method;
  bool imagenet;
};

inline const std::vector<StudyRegime>& known_study_regimes() {
  static const std::vector<StudyRegime> regimes{{"random", "random init", "", false},
                                                {"imagenet", "ImageNet init", "", true},
                                                {"simclr", "SimCLR init", "simclr", false},
                                                {"moco", "MoCo v2 init", "moco", false},
                                                {"imagenet_simclr", "ImageNet+SimCLR", "simclr", true},
                                                {"imagenet_moco", "ImageNet+MoCo v2", "moco", true}};
  return regimes;
}

// Comma-separated items of `text`, each once and each in `known` (else an error naming `flag`).
inline std::vector<std::string> checked_list(const std::string& text, const std::vector<std::string>& known,
                                             const char* flag) {
  std::vector<std::string> v;
  std::stringstream in(text);
  std::string item;
  std::string names;
  for (const std::string& k : known) names += (names.empty() ? "" : ", ") + k;
  while (std::getline(in, item, ',')) {
    FOVEA_CHECK(std::find(known.begin(), known.end(), item) != known.end(), flag, ": '", item,
                "' is not one of ", names);
    FOVEA_CHECK(std::find(v.begin(), v.end(), item) == v.end(), flag, " names '", item, "' twice");
    v.push_back(item);
  }
  FOVEA_CHECK(!v.empty(), flag, ": nothing in '", text, "'");
  return v;
}

// The attribution methods --method names (comma-separated, each once).
inline std::vector<std::string> saliency_methods(const std::string& text) {
  return checked_list(
      text, {"gradient", "gradient_x_input", "smoothgrad", "integrated_gradients", "grad_cam", "lrp"},
      "--method");
}

// --regimes, in the order given.
inline std::vector<StudyRegime> study_regimes(const std::string& text) {
  std::vector<std::string> keys;
  for (const StudyRegime& r : known_study_regimes()) keys.push_back(r.key);
  std::vector<StudyRegime> out;
  for (const std::string& k : checked_list(text, keys, "--regimes"))
    for (const StudyRegime& r : known_study_regimes())
      if (r.key == k) out.push_back(r);
  return out;
}

// --protocols: finetune (the whole network) and / or linear (frozen backbone).
inline std::vector<std::string> study_protocols(const std::string& text) {
  return checked_list(text, {"finetune", "linear"}, "--protocols");
}

// --label-fractions: comma-separated numbers in (0, 1], each once.
inline std::vector<double> label_fraction_list(const std::string& text) {
  std::vector<double> v;
  std::stringstream in(text);
  std::string item;
  while (std::getline(in, item, ',')) {
    double f = 0;
    const auto [end, ec] = std::from_chars(item.data(), item.data() + item.size(), f);
    FOVEA_CHECK(ec == std::errc() && end == item.data() + item.size() && f > 0.0 && f <= 1.0,
                "--label-fractions: '", item, "' is not a fraction in (0, 1]");
    FOVEA_CHECK(std::find(v.begin(), v.end(), f) == v.end(), "--label-fractions names ", item, " twice");
    v.push_back(f);
  }
  FOVEA_CHECK(!v.empty(), "--label-fractions: nothing in '", text, "'");
  return v;
}

// A MoCo queue length for a data set of `images`: the largest multiple of the batch size up to half
// the images (at least one batch), at most 4096. The queue then spans at most half an epoch, so an
// image's key from the previous epoch is usually gone when the image comes back (a reshuffle can
// still bring it back sooner at an epoch boundary); a queue longer than the data set holds several
// keys of every image. `fovea pretrain --queue 0` and the study's MoCo runs use it.
inline std::int64_t moco_queue_for(std::int64_t images, std::int64_t batch) {
  const std::int64_t half = std::max<std::int64_t>(batch, images / 2 / batch * batch);
  return std::min<std::int64_t>(4096, half);
}

// The run-folder tag of one (regime, protocol, label fraction) of the study: "simclr",
// "linear_simclr", "simclr_f0.1" (the full-label fine-tuning run keeps the regime's bare key).
inline std::string study_run_tag(const std::string& regime, const std::string& protocol, double fraction) {
  std::string tag = (protocol == "linear" ? "linear_" : "") + regime;
  if (fraction != 1.0) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "_f%g", fraction);
    tag += buf;
  }
  return tag;
}

namespace drivers {
// The labelled images of --data (and --labels), read without a word on stdout (load_data reports).
// With --skip-bad-images, images the label file lists but the folder lacks are dropped (listed in
// Dataset::missing) instead of stopping the run.
inline data::Dataset read_data(const RunArgs& a) {
  FOVEA_CHECK(!a.data.empty(),
              "--data is required (a folder of fundus images with labels.csv, or of class folders)");
  if (std::filesystem::is_regular_file(a.data))
    throw Error("--data '" + a.data +
                "' is a file: give the folder of the images, and a label file other than <folder>/labels.csv "
                "with --labels");
  FOVEA_CHECK(std::filesystem::is_directory(a.data), "data folder '", a.data,
              "' does not exist or is not a folder");
  data::DatasetOptions o;
  o.skip_missing = a.skip_bad_images;
  data::Dataset d;
  if (!a.labels.empty()) {
    FOVEA_CHECK(std::filesystem::exists(a.labels), "label file '", a.labels, "' does not exist");
    if (!std::filesystem::is_regular_file(a.labels))
      throw Error("--labels '" + a.labels +
                  "' is not a file (give the label CSV; the images' folder is --data)");
    o.image_dir = a.data;
    d = data::load_labels_csv(a.labels, o);
  } else if (std::filesystem::exists(std::filesystem::path(a.data) / "labels.csv")) {
    d = data::load_labels_csv(std::filesystem::path(a.data) / "labels.csv", o);
  } else {
    d = data::load_dataset(a.data, o);
  }
  return d;
}

namespace detail {
// The outcome of decoding a file, remembered per (path, size, modification time) for the process, so
// a study's stages decode each image once for the check: empty when it decodes, else the reason.
inline std::string decode_problem(const std::filesystem::path& file) {
  static std::mutex mutex;
  static std::map<std::string, std::string> seen;
  std::error_code ec;
  const auto size = std::filesystem::file_size(file, ec);
  const auto time = std::filesystem::last_write_time(file, ec);
  const std::string key = file.string() + '\n' + std::to_string(ec ? 0 : size) + '\n' +
                          std::to_string(ec ? 0 : time.time_since_epoch().count());
  {
    const std::lock_guard<std::mutex> lock(mutex);
    if (const auto it = seen.find(key); it != seen.end()) return it->second;
  }
  std::string problem;
  try {
    (void)data::load_image(file);
  } catch (const std::exception& e) {  // fovea::Error, or std::bad_alloc for a file too large to hold
    problem = e.what();
    // "<header>:<line>: error: " locates fovea's source, not the image: the reason is what follows
    if (const std::size_t at = problem.find(": error: ");
        at != std::string::npos && problem.find(".hpp:") < at)
      problem.erase(0, at + 9);
    if (problem.empty()) problem = "cannot decode";
  }
  const std::lock_guard<std::mutex> lock(mutex);
  seen.emplace(key, problem);
  return problem;
}
}  // namespace detail

// --skip-bad-images: decodes every image of `d` once (`threads` at a time) and drops those that do
// not decode, so the split, training and every evaluation see the same images. Returns one
// (image, reason) per dropped image, the missing ones (Dataset::missing) first.
inline std::vector<std::vector<std::string>> drop_bad_images(data::Dataset& d, int threads) {
  std::vector<std::vector<std::string>> dropped;
  for (std::size_t i = 0; i < d.missing.size(); ++i)
    dropped.push_back({i < d.missing_ids.size() ? d.missing_ids[i] : std::string(), d.missing[i]});
  std::vector<std::string> problems(d.size());
  std::atomic<std::size_t> next{0};
  const auto work = [&] {
    for (std::size_t i; (i = next.fetch_add(1)) < d.size();)
      problems[i] = detail::decode_problem(d.samples[i].path);
  };
  std::vector<std::thread> pool;
  for (int t = 1; t < std::max(threads, 1); ++t) pool.emplace_back(work);
  work();
  for (std::thread& t : pool) t.join();
  std::vector<data::Sample> kept;
  kept.reserve(d.size());
  for (std::size_t i = 0; i < d.size(); ++i) {
    if (problems[i].empty()) kept.push_back(std::move(d.samples[i]));
    else dropped.push_back({d.samples[i].id, problems[i]});
  }
  d.samples = std::move(kept);
  return dropped;
}

// read_data, then rows the format leaves out (Messidor-2's ungradable images) are counted on stdout
// with the first of them named. With --skip-bad-images, missing and undecodable images are dropped
// (drop_bad_images), counted on stdout with the first named, and listed in <out>/skipped_images.csv
// (image,reason; written atomically, and removed when a later run skips none).
inline data::Dataset load_data(const RunArgs& a) {
  data::Dataset d = read_data(a);
  if (!d.excluded.empty())
    std::printf("data: %zu rows of %s left out (%s%s)\n", d.excluded.size(), d.labels_file.c_str(),
                d.excluded.front().c_str(), d.excluded.size() > 1 ? ", ..." : "");
  if (d.size() == 0 && d.missing.empty())
    throw Error(d.labels_file.empty()
                    ? "data: no images in '" + a.data +
                          "' (looked for labels.csv, trainLabels.csv, train.csv or messidor_data.csv, class "
                          "folders 0/, 1/, ..., and image files)"
                    : "data: " + d.labels_file + " lists no images");
  if (a.skip_bad_images) {
    const std::size_t listed = d.size() + d.missing.size();
    const std::vector<std::vector<std::string>> dropped = drop_bad_images(d, a.threads);
    const std::filesystem::path list = std::filesystem::path(a.out) / "skipped_images.csv";
    if (!dropped.empty()) {
      std::printf("data: %zu of %zu images skipped (--skip-bad-images; %s): %s%s\n", dropped.size(), listed,
                  list.string().c_str(), dropped.front()[1].c_str(), dropped.size() > 1 ? "; ..." : "");
      if (!a.out.empty() && std::filesystem::is_directory(a.out))
        data::write_csv(list, {"image", "reason"}, dropped);
    } else if (!a.out.empty()) {
      std::error_code ec;
      std::filesystem::remove(list, ec);
    }
    FOVEA_CHECK(d.size() > 0, "data: none of the ", listed, " images of ", a.data,
                " could be used (--skip-bad-images)");
  }
  return d;
}

// load_data for a command that needs labels (fine-tuning, evaluation): an unlabelled folder is an
// error saying so.
inline data::Dataset load_labelled_data(const RunArgs& a, const char* command) {
  data::Dataset d = load_data(a);
  if (d.num_classes == 0)
    throw Error(std::string(command) + ": the images of '" + a.data +
                "' have no labels (no labels.csv or other label file, no class folders 0/, 1/, ...): " +
                command + " needs labels; an unlabelled folder serves pretrain");
  return d;
}

template <class Backbone>
int pretrain(const PretrainArgs& a);
template <class Backbone>
int finetune(const FinetuneArgs& a);
template <class Backbone>
EvalSummary evaluate(const EvaluateArgs& a);
template <class Backbone>
RobustnessSummary robustness(const RobustnessArgs& a);
template <class Backbone>
SaliencySummary saliency(const SaliencyArgs& a);
}  // namespace drivers

}  // namespace fovea::tools
