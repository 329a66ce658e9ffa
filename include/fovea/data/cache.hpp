// fovea/data/cache.hpp: a disk cache of preprocessed fundus images (preprocess_fundus at one size),
// so that later epochs and runs skip decoding and resizing full-resolution photos.
//
// One file per (source, settings): "<dir>/<key as 16 hex digits>.fpc", written atomically
// (io::write_file_atomically). Layout, little-endian:
//   "FOVEAPC1" | u64 key | u32 channels, height, width | C*H*W u8 pixels | u64 FNV-1a of all before.
// Pixels are the image before Normalize, in [0, 1], stored as round(255 v): the precision is 1/510
// (half an 8-bit step), 4x smaller than fp32. mean / std are applied after reading, so they are not
// part of the key; every other FundusPreprocess field is.
// Key: FNV-1a 64 of (format version, fovea version, absolute source path, source size, source mtime
// in ns, settings). A changed source (size or mtime) or changed settings gives another key: a miss.
// A file of the wrong size, with a wrong checksum, magic or key is treated as a miss and rewritten.
#pragma once

#include <sys/stat.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "fovea/core/config.hpp"
#include "fovea/core/error.hpp"
#include "fovea/core/tensor.hpp"
#include "fovea/data/fundus.hpp"
#include "fovea/io/atomic_file.hpp"

namespace fovea::data {

inline constexpr std::uint32_t kPreprocessCacheFormat = 1;

namespace detail {

struct Fnv64 {
  std::uint64_t h = 0xcbf29ce484222325ull;
  void bytes(const void* p, std::size_t n) {
    const auto* b = static_cast<const unsigned char*>(p);
    for (std::size_t i = 0; i < n; ++i) h = (h ^ b[i]) * 0x100000001b3ull;
  }
  template <class T>
  void value(const T& v) { bytes(&v, sizeof v); }
  void text(const std::string& s) {
    value(static_cast<std::uint64_t>(s.size()));
    bytes(s.data(), s.size());
  }
};

inline void put_u32(std::string& out, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
inline void put_u64(std::string& out, std::uint64_t v) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
inline std::uint64_t get_le(const std::string& in, std::size_t at, int n) {
  std::uint64_t v = 0;
  for (int i = 0; i < n; ++i) v |= static_cast<std::uint64_t>(static_cast<unsigned char>(in[at + static_cast<std::size_t>(i)])) << (8 * i);
  return v;
}

inline constexpr char kCacheMagic[8] = {'F', 'O', 'V', 'E', 'A', 'P', 'C', '1'};
inline constexpr std::size_t kCacheHeader = 8 + 8 + 3 * 4;

}  // namespace detail

// The cache key of `source` under `settings` (see the file comment). Throws naming the file when it
// cannot be stat'ed.
inline std::uint64_t preprocess_cache_key(const std::filesystem::path& source, const FundusPreprocess& settings) {
  struct stat st {};
  if (::stat(source.c_str(), &st) != 0)
    FOVEA_FAIL("cannot read image '", source.string(), "': ", std::strerror(errno));
  detail::Fnv64 f;
  f.value(kPreprocessCacheFormat);
  f.value(static_cast<std::uint32_t>(FOVEA_VERSION_MAJOR * 10000 + FOVEA_VERSION_MINOR * 100 + FOVEA_VERSION_PATCH));
  std::error_code ec;
  const std::filesystem::path abs = std::filesystem::absolute(source, ec);
  f.text((ec ? source : abs).lexically_normal().string());
  f.value(static_cast<std::int64_t>(st.st_size));
  f.value(static_cast<std::int64_t>(st.st_mtim.tv_sec) * 1000000000 + static_cast<std::int64_t>(st.st_mtim.tv_nsec));
  f.value(static_cast<std::int32_t>(settings.size));
  f.value(static_cast<std::uint8_t>(settings.crop_to_fov));
  f.value(settings.margin_fraction);
  f.value(static_cast<std::uint8_t>(settings.ben_graham));
  f.value(settings.sigma_fraction);
  f.value(settings.circle_fraction);
  f.value(settings.outside);
  return f.h;
}

// Counters of a CachedPreprocessor (over all threads).
struct PreprocessCacheStats {
  std::uint64_t hits = 0, misses = 0, rebuilt = 0;  // rebuilt: misses on a corrupt or stale file
};

// CachedPreprocessor: preprocess_fundus(path, settings) through the disk cache in `dir` (created if
// missing). Thread-safe (concurrent writers of one key each replace the file whole). A miss and a
// later hit return identical pixels (both go through the 8-bit quantisation).
//   operator()(path) -> (3, S, S) on the cpu, normalised with settings.mean / std.
class CachedPreprocessor {
 public:
  CachedPreprocessor(std::filesystem::path dir, FundusPreprocess settings)
      : dir_(std::move(dir)), settings_(settings) {
    FOVEA_CHECK(settings_.size > 0, "CachedPreprocessor: size must be positive, got ", settings_.size);
    std::error_code ec;
    std::filesystem::create_directories(dir_, ec);
    FOVEA_CHECK(std::filesystem::is_directory(dir_), "CachedPreprocessor: cannot create cache folder '",
                dir_.string(), "'", ec ? ": " + ec.message() : std::string());
  }
  CachedPreprocessor(const CachedPreprocessor&) = delete;
  CachedPreprocessor& operator=(const CachedPreprocessor&) = delete;

  const FundusPreprocess& settings() const { return settings_; }
  const std::filesystem::path& dir() const { return dir_; }

  // The cache file of `source` under these settings.
  std::filesystem::path cache_path(const std::filesystem::path& source) const {
    char name[32];
    std::snprintf(name, sizeof name, "%016llx.fpc",
                  static_cast<unsigned long long>(preprocess_cache_key(source, settings_)));
    return dir_ / name;
  }

  Tensor operator()(const std::filesystem::path& source) {
    const std::uint64_t key = preprocess_cache_key(source, settings_);
    char name[32];
    std::snprintf(name, sizeof name, "%016llx.fpc", static_cast<unsigned long long>(key));
    const std::filesystem::path file = dir_ / name;
    bool existed = false;
    Tensor image = read(file, key, existed);
    if (image.shape().rank() == 3) {
      ++hits_;
      normalize(image, settings_.mean, settings_.std);
      return image;
    }
    ++misses_;
    if (existed) ++rebuilt_;
    FundusPreprocess raw = settings_;
    raw.mean = {0.0f, 0.0f, 0.0f};
    raw.std = {1.0f, 1.0f, 1.0f};
    image = preprocess_fundus(source, raw);
    std::string bytes = encode(image, key);
    io::write_file_atomically(file, bytes);
    image = decode_pixels(bytes, image.shape());
    normalize(image, settings_.mean, settings_.std);
    return image;
  }

  // A loader decode function: converts to DecodeFn (LoaderOptions::decode, data/loader.hpp) and reads
  // sample.path through this cache. Generic so that this header does not need loader.hpp. The
  // CachedPreprocessor must outlive the loader; settings.size must equal LoaderOptions::image_size.
  auto decoder() {
    return [this](const auto& sample, const auto& /*context*/) -> Tensor { return (*this)(sample.path); };
  }

  PreprocessCacheStats stats() const { return {hits_.load(), misses_.load(), rebuilt_.load()}; }

 private:
  static std::string encode(const Tensor& image, std::uint64_t key) {
    std::string out(detail::kCacheMagic, 8);
    detail::put_u64(out, key);
    for (int d = 0; d < 3; ++d) detail::put_u32(out, static_cast<std::uint32_t>(image.shape()[d]));
    out.reserve(out.size() + static_cast<std::size_t>(image.numel()) + 8);
    for (std::int64_t i = 0; i < image.numel(); ++i) {
      const float v = std::isnan(image.data()[i]) ? 0.0f : std::clamp(image.data()[i], 0.0f, 1.0f);
      out.push_back(static_cast<char>(static_cast<unsigned char>(std::lround(v * 255.0f))));
    }
    detail::Fnv64 f;
    f.bytes(out.data(), out.size());
    detail::put_u64(out, f.h);
    return out;
  }

  static Tensor decode_pixels(const std::string& bytes, const Shape& shape) {
    Tensor image(shape);
    const auto* p = reinterpret_cast<const unsigned char*>(bytes.data()) + detail::kCacheHeader;
    for (std::int64_t i = 0; i < image.numel(); ++i) image.data()[i] = static_cast<float>(p[i]) / 255.0f;
    return image;
  }

  // The cached image, or a default (rank 0) tensor on any mismatch (missing, short, long, wrong magic, key,
  // shape or checksum). `existed` tells whether a file was there.
  Tensor read(const std::filesystem::path& file, std::uint64_t key, bool& existed) const {
    std::ifstream in(file, std::ios::binary);
    existed = static_cast<bool>(in);
    if (!in) return {};
    const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (bytes.size() < detail::kCacheHeader + 8 || std::memcmp(bytes.data(), detail::kCacheMagic, 8) != 0 ||
        detail::get_le(bytes, 8, 8) != key)
      return {};
    const std::uint64_t c = detail::get_le(bytes, 16, 4), h = detail::get_le(bytes, 20, 4),
                        w = detail::get_le(bytes, 24, 4);
    const auto s = static_cast<std::uint64_t>(settings_.size);
    if (c != 3 || h != s || w != s || bytes.size() != detail::kCacheHeader + c * h * w + 8) return {};
    detail::Fnv64 f;
    f.bytes(bytes.data(), bytes.size() - 8);
    if (f.h != detail::get_le(bytes, bytes.size() - 8, 8)) return {};
    return decode_pixels(bytes, Shape{static_cast<std::int64_t>(c), static_cast<std::int64_t>(h),
                                      static_cast<std::int64_t>(w)});
  }

  std::filesystem::path dir_;
  FundusPreprocess settings_;
  std::atomic<std::uint64_t> hits_{0}, misses_{0}, rebuilt_{0};
};

}  // namespace fovea::data
