// fovea/data/tiff.hpp: TIFF files (IDRiD lesion masks, DRIVE photos) to (3, H, W) tensors via libtiff.
//
// Host code on CPU tensors. Linked through the CMake target fovea::tiff (Debian/Ubuntu libtiff-dev),
// which defines FOVEA_WITH_TIFF=1; without it load_tiff throws fovea::Error naming the package.
// load_image (data/image.hpp) hands files ending in .tif / .tiff to load_tiff.
#pragma once

#include <algorithm>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <span>
#include <string>
#include <vector>

#include "fovea/core/error.hpp"
#include "fovea/core/tensor.hpp"
#include "fovea/data/image_limits.hpp"

#ifndef FOVEA_WITH_TIFF
#define FOVEA_WITH_TIFF 0
#endif
#if FOVEA_WITH_TIFF
#include <tiffio.h>
#endif

namespace fovea::data {

// True when this program was built with libtiff (load_tiff works).
inline constexpr bool kHaveTiff = FOVEA_WITH_TIFF != 0;

namespace detail {

inline constexpr const char* kNoTiffMessage =
    "built without TIFF support: install libtiff (Debian/Ubuntu: apt-get install libtiff-dev), reconfigure, "
    "and link the CMake target fovea::tiff";

// True when `path` ends in .tif or .tiff (any case).
inline bool has_tiff_extension(const std::filesystem::path& path) {
  std::string ext = path.extension().string();
  for (char& c : ext) c = static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
  return ext == ".tif" || ext == ".tiff";
}

#if FOVEA_WITH_TIFF
// libtiff reports through a process-wide handler; this one appends the message to the calling
// thread's buffer instead of printing it, so errors can name libtiff's reason.
inline std::string& tiff_messages() {
  thread_local std::string messages;
  return messages;
}

inline void tiff_capture(const char* module, const char* fmt, va_list args) {
  char text[512];
  std::vsnprintf(text, sizeof text, fmt, args);
  std::string& m = tiff_messages();
  if (m.size() > 2048) return;
  if (!m.empty()) m += "; ";
  if (module != nullptr && *module != '\0') m += std::string(module) + ": ";
  m += text;
}

inline void install_tiff_handlers() {
  static const bool installed = [] {
    TIFFSetErrorHandler(tiff_capture);
    TIFFSetWarningHandler(nullptr);  // warnings (unknown tags and the like) are dropped
    return true;
  }();
  (void)installed;
}

inline std::string tiff_reason(const char* fallback) {
  const std::string& m = tiff_messages();
  return m.empty() ? std::string(fallback) : "libtiff says '" + m + "'";
}
#endif

}  // namespace detail

namespace detail {
#if FOVEA_WITH_TIFF
// The decoding of an open TIFF handle, shared by load_tiff (a file) and decode_tiff (bytes in
// memory). `name` is the file or source in error messages.
inline Tensor decode_tiff_handle(TIFF* tif, const std::string& name) {
  struct Closer {
    TIFF* t;
    ~Closer() { TIFFClose(t); }
  } closer{tif};

  std::uint32_t w = 0, h = 0;
  std::uint16_t bits = 1, spp = 1, photometric = PHOTOMETRIC_MINISBLACK;
  TIFFGetField(tif, TIFFTAG_IMAGEWIDTH, &w);
  TIFFGetField(tif, TIFFTAG_IMAGELENGTH, &h);
  TIFFGetFieldDefaulted(tif, TIFFTAG_BITSPERSAMPLE, &bits);
  TIFFGetFieldDefaulted(tif, TIFFTAG_SAMPLESPERPIXEL, &spp);
  TIFFGetField(tif, TIFFTAG_PHOTOMETRIC, &photometric);
  check_image_size("TIFF '" + name + "'", w, h);
  FOVEA_CHECK(static_cast<std::uint64_t>(w) * h < (std::uint64_t{1} << 31), "cannot decode TIFF '", name,
              "': ", w, "x", h, " pixels is more than libtiff's RGBA reader takes (2^31)");
  // libtiff sizes its buffers from these fields: a few hundred bytes declaring 987 samples per pixel
  // made its RGBA reader ask for 3 GB. fovea reads at most RGBA plus extra samples, up to 16 bits.
  FOVEA_CHECK(spp >= 1 && spp <= 8 && (bits == 1 || bits == 2 || bits == 4 || bits == 8 || bits == 16),
              "cannot decode TIFF '", name, "': unsupported layout of ", spp, " samples per pixel of ", bits,
              " bits (fovea reads 1 to 8 samples of 1, 2, 4, 8 or 16 bits)");
  Tensor image(Shape{3, static_cast<std::int64_t>(h), static_cast<std::int64_t>(w)});  // (3, H, W)
  float* out = image.data();
  const std::size_t plane = static_cast<std::size_t>(w) * h;

  if (bits == 1 && spp == 1 && !TIFFIsTiled(tif)) {
    const tmsize_t line = TIFFScanlineSize(tif);
    FOVEA_CHECK(line >= static_cast<tmsize_t>((w + 7) / 8), "cannot decode TIFF '", name, "': scanline of ",
                line, " bytes for width ", w);
    std::vector<unsigned char> buf(static_cast<std::size_t>(line));
    const bool invert = photometric == PHOTOMETRIC_MINISWHITE;
    for (std::uint32_t y = 0; y < h; ++y) {
      if (TIFFReadScanline(tif, buf.data(), y, 0) < 0)
        FOVEA_FAIL("cannot decode TIFF '", name, "': row ", y, " of ", h, ": ",
                   detail::tiff_reason("read failed (truncated or corrupt)"));
      float* row = out + static_cast<std::size_t>(y) * w;
      for (std::uint32_t x = 0; x < w; ++x) {
        const bool bit = (buf[x >> 3] >> (7 - (x & 7))) & 1;
        row[x] = (bit != invert) ? 1.0f : 0.0f;
      }
    }
    std::copy_n(out, plane, out + plane);
    std::copy_n(out, plane, out + 2 * plane);
    return image;
  }

  std::vector<std::uint32_t> rgba(plane);
  if (TIFFReadRGBAImageOriented(tif, w, h, rgba.data(), ORIENTATION_TOPLEFT, 0) == 0)
    FOVEA_FAIL("cannot decode TIFF '", name, "' (", bits, " bits x ", spp, " samples, photometric ",
               photometric, "): ", detail::tiff_reason("read failed (truncated, corrupt or unsupported)"));
  if (!detail::tiff_messages().empty())  // libtiff may return what it could read of a damaged file
    FOVEA_FAIL("cannot decode TIFF '", name, "': ", detail::tiff_reason(""));
  for (std::size_t p = 0; p < plane; ++p) {
    const std::uint32_t v = rgba[p];
    out[p] = static_cast<float>(TIFFGetR(v)) / 255.0f;
    out[plane + p] = static_cast<float>(TIFFGetG(v)) / 255.0f;
    out[2 * plane + p] = static_cast<float>(TIFFGetB(v)) / 255.0f;
  }
  return image;
}

// A read-only TIFF stream over bytes in memory (TIFFClientOpen's procedures).
struct TiffMemory {
  const unsigned char* data = nullptr;
  std::uint64_t size = 0, pos = 0;
};

inline tmsize_t tiff_memory_read(thandle_t handle, void* buffer, tmsize_t n) {
  auto* m = static_cast<TiffMemory*>(handle);
  if (n <= 0 || m->pos >= m->size) return 0;
  const std::uint64_t count = std::min<std::uint64_t>(static_cast<std::uint64_t>(n), m->size - m->pos);
  std::memcpy(buffer, m->data + m->pos, count);
  m->pos += count;
  return static_cast<tmsize_t>(count);
}

inline tmsize_t tiff_memory_write(thandle_t, void*, tmsize_t) { return -1; }

inline toff_t tiff_memory_seek(thandle_t handle, toff_t offset, int whence) {
  auto* m = static_cast<TiffMemory*>(handle);
  const std::uint64_t base = whence == SEEK_SET ? 0 : whence == SEEK_CUR ? m->pos : m->size;
  if (whence != SEEK_SET && whence != SEEK_CUR && whence != SEEK_END) return static_cast<toff_t>(-1);
  // toff_t is unsigned: a negative relative offset arrives as its two's complement.
  const std::uint64_t target = base + static_cast<std::uint64_t>(offset);
  if (target > (std::uint64_t{1} << 62)) return static_cast<toff_t>(-1);
  m->pos = target;  // past the end is allowed, as for a file: reads there return 0 bytes
  return static_cast<toff_t>(target);
}

inline int tiff_memory_close(thandle_t) { return 0; }
inline toff_t tiff_memory_size(thandle_t handle) { return static_cast<TiffMemory*>(handle)->size; }
inline int tiff_memory_map(thandle_t, void**, toff_t*) { return 0; }  // no mapping: libtiff reads
inline void tiff_memory_unmap(thandle_t, void*, toff_t) {}
#endif
}  // namespace detail

// load_tiff: decodes the first image (directory) of a TIFF file.
// ensures: a CPU tensor (3, H, W) in [0, 1], like load_image:
//   - 1 bit per sample (bilevel, e.g. IDRiD masks, also palette-coded ones): the stored bit as 0 or 1
//     (palette colours are ignored; MinIsWhite is inverted so that 1 = white), replicated to 3 channels;
//   - 8 bits, RGB, gray, palette or YCbCr, any compression libtiff decodes (LZW, Deflate, PackBits,
//     JPEG), strips or tiles: k / 255 per channel through libtiff's RGBA reader; gray is replicated,
//     alpha is dropped; 16-bit samples are reduced to 8 bits by that reader.
// Throws fovea::Error naming the file and libtiff's reason (missing, not a TIFF, truncated, corrupt,
// unsupported variant), an image larger than max_image_pixels() (data/image_limits.hpp), or in a
// build without libtiff naming the package to install.
inline Tensor load_tiff(const std::filesystem::path& path) {
#if FOVEA_WITH_TIFF
  detail::install_tiff_handlers();
  detail::tiff_messages().clear();
  std::error_code ec;
  FOVEA_CHECK(std::filesystem::exists(path, ec), "cannot read image '", path.string(), "': no such file");
  FOVEA_CHECK(!std::filesystem::is_directory(path, ec), "cannot read image '", path.string(),
              "': it is a directory");
  TIFF* tif = TIFFOpen(path.c_str(), "r");
  if (tif == nullptr)
    FOVEA_FAIL("cannot decode TIFF '", path.string(), "': ", detail::tiff_reason("TIFFOpen failed"));
  return detail::decode_tiff_handle(tif, path.string());
#else
  FOVEA_FAIL("cannot read image '", path.string(), "': ", detail::kNoTiffMessage);
#endif
}

// decode_tiff: load_tiff of a TIFF file's bytes in memory; `source` names them in errors.
inline Tensor decode_tiff(std::span<const unsigned char> bytes, const std::string& source = "<memory>") {
#if FOVEA_WITH_TIFF
  detail::install_tiff_handlers();
  detail::tiff_messages().clear();
  FOVEA_CHECK(!bytes.empty(), "cannot decode TIFF '", source, "': no data");
  detail::TiffMemory m{bytes.data(), bytes.size(), 0};
  // "rm": read only, never memory-map (the procedures above serve every read).
  TIFF* tif = TIFFClientOpen(source.c_str(), "rm", static_cast<thandle_t>(&m), detail::tiff_memory_read,
                             detail::tiff_memory_write, detail::tiff_memory_seek, detail::tiff_memory_close,
                             detail::tiff_memory_size, detail::tiff_memory_map, detail::tiff_memory_unmap);
  if (tif == nullptr)
    FOVEA_FAIL("cannot decode TIFF '", source, "': ", detail::tiff_reason("TIFFClientOpen failed"));
  return detail::decode_tiff_handle(tif, source);
#else
  (void)bytes;
  FOVEA_FAIL("cannot decode TIFF '", source, "': ", detail::kNoTiffMessage);
#endif
}

}  // namespace fovea::data
