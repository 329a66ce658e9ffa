// tools/fovea/cmd_generate.hpp: `fovea generate`, which writes a synthetic DR data set (EyePACS-style images and labels, IDRiD-style masks).
//
// Layout of --out DIR:
//   images/synthetic_<patient>_<left|right>.png   RGB, S x S (image i = eye i % 2 of patient i / 2)
//   labels.csv                                     image,level   (name without extension, as EyePACS)
//   masks/<TYPE>/<image>_<TYPE>.png                with --masks: 8-bit gray, 255 = lesion; only non-empty masks
//   lesions.csv                                    with --masks: image,lesion_type,mask_path,lesion_pixels
//                                                  (as IDRiD's lesion_masks.csv; paths relative to DIR)
// Every file is written atomically; the CSVs are removed first and written last, so a directory
// without labels.csv is an unfinished run. The same arguments give the same bytes, whatever --threads.
#pragma once

#include <CLI/CLI.hpp>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdint>
#include <exception>
#include <filesystem>
#include <iostream>
#include <limits>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "fovea/core/error.hpp"
#include "fovea/data/image.hpp"
#include "fovea/data/synthetic.hpp"
#include "fovea/io/atomic_file.hpp"

namespace fovea::tools {

struct GenerateOptions {
  std::filesystem::path out;
  std::int64_t count = 0;
  int size = 512;
  std::uint64_t seed = 0;
  bool balanced = false;  // grades uniform over 0..4 instead of the EyePACS proportions
  bool masks = false;     // also write lesion masks and lesions.csv
  int threads = 0;        // 0: one per hardware thread
  bool camera_variation = true;
  int site = 0;  // data::SyntheticConfig::site: 1 is a second site's camera
};

struct GenerateSummary {
  std::array<std::int64_t, 5> images_per_grade{};
  std::int64_t mask_files = 0;
};

namespace detail {

// The mask types in lesions.csv order (alphabetical, as IDRiD's lesion_masks.csv).
inline constexpr std::array<data::LesionType, data::kLesionTypeCount> kCsvLesionOrder{
    data::LesionType::EX, data::LesionType::HE, data::LesionType::MA,
    data::LesionType::NV, data::LesionType::OD, data::LesionType::SE};

struct ImageRecord {
  int grade = 0;
  std::array<std::int64_t, data::kLesionTypeCount> mask_pixels{};
};

}  // namespace detail

// write_synthetic_dataset: generates options.count images into options.out (layout above).
//   requires: count >= 1, size in [32, 8192], threads >= 0; the output directory can be created.
//   ensures: labels.csv (and with masks lesions.csv) exist only if every image was written; rethrows
//            the first error of any worker (fovea::Error naming the file) after stopping the others.
// Progress goes to `progress` (one line per 10 %) when not null.
inline GenerateSummary write_synthetic_dataset(const GenerateOptions& options, std::ostream* progress = nullptr) {
  namespace fs = std::filesystem;
  FOVEA_CHECK(options.count >= 1, "generate: --count must be >= 1, got ", options.count);
  FOVEA_CHECK(options.size >= 32 && options.size <= 8192, "generate: --size must be in [32, 8192], got ", options.size);
  FOVEA_CHECK(options.threads >= 0, "generate: --threads must be >= 0, got ", options.threads);
  FOVEA_CHECK(!options.out.empty(), "generate: --out is empty");
  FOVEA_CHECK(data::kHaveImageIo, "generate: this build has no PNG writer (stb): install libstb-dev and rebuild");

  const fs::path images_dir = options.out / "images", masks_dir = options.out / "masks";
  std::error_code ec;
  fs::create_directories(images_dir, ec);
  FOVEA_CHECK(!ec, "generate: cannot create '", images_dir.string(), "': ", ec.message());
  if (options.masks)
    for (data::LesionType t : data::kSyntheticLesionTypes) {
      fs::create_directories(masks_dir / data::lesion_type_name(t), ec);
      FOVEA_CHECK(!ec, "generate: cannot create '", (masks_dir / data::lesion_type_name(t)).string(), "': ", ec.message());
    }
  for (const char* csv : {"labels.csv", "lesions.csv"}) {
    fs::remove(options.out / csv, ec);
    FOVEA_CHECK(!ec, "generate: cannot remove the old '", (options.out / csv).string(), "': ", ec.message());
  }

  const std::vector<int> grades = data::synthetic_grades(
      options.count, options.seed,
      options.balanced ? data::kBalancedGradeDistribution : data::kEyePacsGradeDistribution);
  std::vector<detail::ImageRecord> records(static_cast<std::size_t>(options.count));
  data::SyntheticConfig config;
  config.seed = options.seed;
  config.size = options.size;
  config.camera_variation = options.camera_variation;
  config.site = options.site;

  std::atomic<std::int64_t> next{0}, done{0};
  std::atomic<bool> failed{false};
  std::exception_ptr first_error;
  std::mutex mutex;
  auto work = [&] {
    try {
      for (std::int64_t i = next++; i < options.count && !failed; i = next++) {
        const int grade = grades[static_cast<std::size_t>(i)];
        const data::SyntheticFundus fundus = data::generate_fundus(config, i, grade);
        const std::string name = data::synthetic_image_name(i);
        data::write_png(images_dir / (name + ".png"), fundus.image);
        detail::ImageRecord& record = records[static_cast<std::size_t>(i)];
        record.grade = grade;
        if (options.masks)
          for (data::LesionType t : data::kSyntheticLesionTypes) {
            const std::int64_t pixels = fundus.mask_pixels(t);
            record.mask_pixels[static_cast<std::size_t>(t)] = pixels;
            if (pixels == 0) continue;
            const char* type = data::lesion_type_name(t);
            data::write_png(masks_dir / type / (name + "_" + type + ".png"), fundus.mask(t));
          }
        const std::int64_t finished = ++done;
        if (progress != nullptr && (finished * 10 / options.count) != ((finished - 1) * 10 / options.count)) {
          std::lock_guard<std::mutex> lock(mutex);
          *progress << "generate: " << finished << "/" << options.count << " images\n" << std::flush;
        }
      }
    } catch (...) {
      std::lock_guard<std::mutex> lock(mutex);
      if (!first_error) first_error = std::current_exception();
      failed = true;
    }
  };
  const unsigned hardware = std::max(1u, std::thread::hardware_concurrency());
  const std::int64_t wanted = options.threads > 0 ? options.threads : static_cast<std::int64_t>(hardware);
  const int thread_count = static_cast<int>(std::clamp<std::int64_t>(wanted, 1, options.count));
  std::vector<std::thread> workers;
  for (int t = 1; t < thread_count; ++t) workers.emplace_back(work);
  work();
  for (std::thread& w : workers) w.join();
  if (first_error) std::rethrow_exception(first_error);

  GenerateSummary summary;
  std::string labels = "image,level\n";
  std::string lesions = "image,lesion_type,mask_path,lesion_pixels\n";
  for (std::int64_t i = 0; i < options.count; ++i) {
    const detail::ImageRecord& record = records[static_cast<std::size_t>(i)];
    const std::string name = data::synthetic_image_name(i);
    labels += name + "," + std::to_string(record.grade) + "\n";
    ++summary.images_per_grade[static_cast<std::size_t>(record.grade)];
    if (!options.masks) continue;
    for (data::LesionType t : detail::kCsvLesionOrder) {
      const std::int64_t pixels = record.mask_pixels[static_cast<std::size_t>(t)];
      if (pixels == 0) continue;
      const std::string type = data::lesion_type_name(t);
      lesions += name + ".png," + type + ",masks/" + type + "/" + name + "_" + type + ".png," + std::to_string(pixels) + "\n";
      ++summary.mask_files;
    }
  }
  if (options.masks) io::write_file_atomically(options.out / "lesions.csv", lesions);
  io::write_file_atomically(options.out / "labels.csv", labels);
  return summary;
}

// add_generate_command: registers `generate` on a CLI11 app:
//   fovea generate --out DIR --count N [--size S] [--seed K] [--balanced] [--masks] [--site 0|1] [--threads
//   T]
inline void add_generate_command(CLI::App& app) {
  auto options = std::make_shared<GenerateOptions>();
  CLI::App* cmd = app.add_subcommand(
      "generate", "Write a synthetic fundus data set: images/, labels.csv (image,level) and with --masks "
                  "IDRiD-style lesion masks and lesions.csv");
  cmd->add_option("--out", options->out, "output directory (created)")->required();
  cmd->add_option("--count", options->count, "number of images (image i is eye i % 2 of patient i / 2)")
      ->required()
      ->check(CLI::Range(std::int64_t{1}, std::numeric_limits<std::int64_t>::max()));
  cmd->add_option("--size", options->size, "image side in pixels")->check(CLI::Range(32, 8192))->capture_default_str();
  cmd->add_option("--seed", options->seed, "random seed: same seed and arguments, same bytes")->capture_default_str();
  cmd->add_flag("--balanced", options->balanced, "grades uniform over 0..4 (default: EyePACS proportions "
                                                 "73.5/7.0/15.1/2.5/2.0 %)");
  cmd->add_flag("--masks", options->masks, "also write lesion masks (MA HE EX SE NV OD) and lesions.csv");
  cmd->add_option("--site", options->site,
                  "camera site: 0 the default cameras, 1 a second site's camera (darker, green-blue cast, "
                  "defocused, noisier, smaller field of view) for external test sets")
      ->check(CLI::Range(0, data::kSyntheticSites - 1))
      ->capture_default_str();
  cmd->add_option("--threads", options->threads, "worker threads (0: one per hardware thread)")
      ->check(CLI::Range(0, 4096))
      ->capture_default_str();
  cmd->callback([options] {
    const GenerateSummary s = write_synthetic_dataset(*options, &std::cerr);
    std::cout << "generate: wrote " << options->count << " images of " << options->size << "x" << options->size
              << " to " << options->out.string() << " (grades 0-4: " << s.images_per_grade[0] << "/"
              << s.images_per_grade[1] << "/" << s.images_per_grade[2] << "/" << s.images_per_grade[3] << "/"
              << s.images_per_grade[4] << ")";
    if (options->masks) std::cout << ", " << s.mask_files << " masks";
    std::cout << "\n";
  });
}

}  // namespace fovea::tools
