// bench/bench_decode.cpp: decode + fundus preprocessing throughput on one CPU core (images/s), on a
// dozen real EyePACS JPEGs (256x256), on the full-resolution EyePACS photo (3888x2592) and on one
// full-size IDRiD JPEG (4288x2848), read from ../shared/data/fundus (skipped with a message where
// absent). decode/... times load_image alone (file read + JPEG decode + conversion to float CHW),
// decode_preprocess/... the whole pipeline, so preprocessing = the difference. CPU only; nothing
// registers on CUDA.
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "bench_common.hpp"
#include "fovea/data/cache.hpp"
#include "fovea/data/fundus.hpp"

namespace fovea::bench {

void register_decode_benchmarks(Device device);

namespace {

namespace fs = std::filesystem;

// $FOVEA_SHARED_DATA (the fundus folder or one above it), else shared/data/fundus found walking up
// from the working directory, the program and this source file. Empty when absent.
fs::path fundus_dir() {
  if (const char* env = std::getenv("FOVEA_SHARED_DATA"); env != nullptr && *env != '\0')
    for (const fs::path& p : {fs::path(env), fs::path(env) / "fundus", fs::path(env) / "data" / "fundus"})
      if (fs::is_directory(p / "eyepacs") || fs::is_directory(p / "idrid")) return p;
  std::error_code ec;
  for (fs::path dir : {fs::current_path(ec), fs::read_symlink("/proc/self/exe", ec).parent_path(),
                       fs::path(__FILE__).parent_path()})
    for (; !dir.empty(); dir = dir.parent_path()) {
      if (fs::is_directory(dir / "shared" / "data" / "fundus", ec)) return dir / "shared" / "data" / "fundus";
      if (dir == dir.parent_path()) break;
    }
  return {};
}

// Up to `count` files of `folder` with extension `ext`, sorted by name.
std::vector<fs::path> first_files(const fs::path& folder, const std::string& ext, std::size_t count) {
  std::vector<fs::path> files;
  std::error_code ec;
  if (!fs::is_directory(folder, ec)) return files;
  for (const auto& e : fs::directory_iterator(folder, ec))
    if (e.path().extension() == ext) files.push_back(e.path());
  std::sort(files.begin(), files.end());
  if (files.size() > count) files.resize(count);
  return files;
}

// Registers `name`, timing work(file) over `files` (images/s = items_per_second). With `warm`, one
// untimed pass over the files comes first.
template <class Work>
void register_files(const std::string& name, std::vector<fs::path> files, const std::string& missing,
                    Work work, bool warm = false) {
  benchmark::RegisterBenchmark(
      name.c_str(),
      [files, missing, work, warm](benchmark::State& state) {
        if (files.empty()) {
          state.SkipWithError(missing.c_str());
          return;
        }
        try {
          if (warm)
            for (const fs::path& f : files) (void)work(f);
          for (auto _ : state)
            for (const fs::path& f : files) benchmark::DoNotOptimize(work(f).data());
        } catch (const std::exception& e) {
          state.SkipWithError(e.what());
          return;
        }
        state.SetItemsProcessed(state.iterations() * static_cast<std::int64_t>(files.size()));
      })
      ->Unit(benchmark::kMillisecond)
      ->MinTime(0.2);
}

void register_decode(const std::string& name, std::vector<fs::path> files, const std::string& missing) {
  register_files(name, std::move(files), missing, [](const fs::path& f) { return data::load_image(f); });
}

void register_pipeline(const std::string& name, std::vector<fs::path> files, data::FundusPreprocess settings,
                       const std::string& missing) {
  register_files(name, std::move(files), missing,
                 [settings](const fs::path& f) { return data::preprocess_fundus(f, settings); });
}

// The same pipeline read back from a warm disk cache (data/cache.hpp; the drivers' --image-cache),
// in a folder under the temp directory removed at exit. An untimed pass fills the cache, so the
// figures are hits (read, checksum, 8-bit to float).
void register_cached(const std::string& name, std::vector<fs::path> files, data::FundusPreprocess settings,
                     const std::string& missing) {
  struct Root {
    fs::path dir;
    ~Root() {
      std::error_code ec;
      fs::remove_all(dir, ec);
    }
  };
  static const Root root{fs::temp_directory_path() / ("fovea_bench_cache_" + std::to_string(::getpid()))};
  auto cache =
      std::make_shared<data::CachedPreprocessor>(root.dir / name.substr(name.rfind('/') + 1), settings);
  register_files(
      name, std::move(files), missing, [cache](const fs::path& f) { return (*cache)(f); }, true);
}

}  // namespace

void register_decode_benchmarks(Device device) {
  if (device.is_cuda()) return;
  const fs::path root = fundus_dir();
  const std::string where =
      root.empty() ? std::string("shared/data/fundus not found (set FOVEA_SHARED_DATA)") : root.string();
  const auto eyepacs =
      root.empty() ? std::vector<fs::path>{} : first_files(root / "eyepacs" / "images", ".jpeg", 12);
  const auto idrid =
      root.empty() ? std::vector<fs::path>{} : first_files(root / "idrid" / "images", ".jpg", 1);
  const auto fullres =
      root.empty() ? std::vector<fs::path>{} : first_files(root / "eyepacs" / "raw_fullres", ".jpeg", 1);
  if (eyepacs.empty() || idrid.empty() || fullres.empty())
    std::printf("fovea_bench: decode benchmarks skipped where data is missing (%s)\n", where.c_str());

  data::FundusPreprocess plain;  // torchvision-style Resize + CenterCrop, no FOV handling
  plain.size = 224;
  plain.crop_to_fov = false;
  data::FundusPreprocess fov;  // FOV mask + square crop + resize
  fov.size = 224;
  data::FundusPreprocess graham = fov;  // + Ben Graham at the output size
  graham.ben_graham = true;
  const std::string no_eyepacs = "no EyePACS JPEGs under " + where + "/eyepacs/images";
  const std::string no_idrid = "no IDRiD JPEG under " + where + "/idrid/images";
  const std::string no_fullres = "no EyePACS JPEG under " + where + "/eyepacs/raw_fullres";
  register_decode("decode/cpu/eyepacs_256_jpeg/load_image", eyepacs, no_eyepacs);
  register_pipeline("decode_preprocess/cpu/eyepacs_256_jpeg/resize224", eyepacs, plain, no_eyepacs);
  register_pipeline("decode_preprocess/cpu/eyepacs_256_jpeg/fov224", eyepacs, fov, no_eyepacs);
  register_pipeline("decode_preprocess/cpu/eyepacs_256_jpeg/fov_graham224", eyepacs, graham, no_eyepacs);
  data::FundusPreprocess graham512 = graham;
  graham512.size = 512;
  register_decode("decode/cpu/eyepacs_3888x2592_jpeg/load_image", fullres, no_fullres);
  register_pipeline("decode_preprocess/cpu/eyepacs_3888x2592_jpeg/resize224", fullres, plain, no_fullres);
  register_pipeline("decode_preprocess/cpu/eyepacs_3888x2592_jpeg/fov224", fullres, fov, no_fullres);
  register_decode("decode/cpu/idrid_4288x2848_jpeg/load_image", idrid, no_idrid);
  register_pipeline("decode_preprocess/cpu/idrid_4288x2848_jpeg/resize224", idrid, plain, no_idrid);
  register_pipeline("decode_preprocess/cpu/idrid_4288x2848_jpeg/fov224", idrid, fov, no_idrid);
  register_pipeline("decode_preprocess/cpu/idrid_4288x2848_jpeg/fov_graham512", idrid, graham512, no_idrid);
  // The drivers' --image-cache at --size 224 (decode side 256, Resize + CenterCrop), warm.
  data::FundusPreprocess side256 = plain;
  side256.size = 256;
  register_pipeline("decode_preprocess/cpu/eyepacs_3888x2592_jpeg/resize256", fullres, side256, no_fullres);
  register_cached("decode_cached/cpu/eyepacs_3888x2592_jpeg/resize256", fullres, side256, no_fullres);
  register_pipeline("decode_preprocess/cpu/idrid_4288x2848_jpeg/resize256", idrid, side256, no_idrid);
  register_cached("decode_cached/cpu/idrid_4288x2848_jpeg/resize256", idrid, side256, no_idrid);
  register_cached("decode_cached/cpu/eyepacs_256_jpeg/resize256", eyepacs, side256, no_eyepacs);
}

}  // namespace fovea::bench
