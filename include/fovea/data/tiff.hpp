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
#include <filesystem>
#include <string>
#include <vector>

#include "fovea/core/error.hpp"
#include "fovea/core/tensor.hpp"

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

// load_tiff: decodes the first image (directory) of a TIFF file.
// ensures: a CPU tensor (3, H, W) in [0, 1], like load_image:
//   - 1 bit per sample (bilevel, e.g. IDRiD masks, also palette-coded ones): the stored bit as 0 or 1
//     (palette colours are ignored; MinIsWhite is inverted so that 1 = white), replicated to 3 channels;
//   - 8 bits, RGB, gray, palette or YCbCr, any compression libtiff decodes (LZW, Deflate, PackBits,
//     JPEG), strips or tiles: k / 255 per channel through libtiff's RGBA reader; gray is replicated,
//     alpha is dropped; 16-bit samples are reduced to 8 bits by that reader.
// Throws fovea::Error naming the file and libtiff's reason (missing, not a TIFF, truncated, corrupt,
// unsupported variant), or in a build without libtiff naming the package to install.
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
  FOVEA_CHECK(w > 0 && h > 0 && static_cast<std::uint64_t>(w) * h < (std::uint64_t{1} << 31),
              "cannot decode TIFF '", path.string(), "': bad image size ", w, "x", h);
  Tensor image(Shape{3, static_cast<std::int64_t>(h), static_cast<std::int64_t>(w)});  // (3, H, W)
  float* out = image.data();
  const std::size_t plane = static_cast<std::size_t>(w) * h;

  if (bits == 1 && spp == 1 && !TIFFIsTiled(tif)) {
    const tmsize_t line = TIFFScanlineSize(tif);
    FOVEA_CHECK(line >= static_cast<tmsize_t>((w + 7) / 8), "cannot decode TIFF '", path.string(),
                "': scanline of ", line, " bytes for width ", w);
    std::vector<unsigned char> buf(static_cast<std::size_t>(line));
    const bool invert = photometric == PHOTOMETRIC_MINISWHITE;
    for (std::uint32_t y = 0; y < h; ++y) {
      if (TIFFReadScanline(tif, buf.data(), y, 0) < 0)
        FOVEA_FAIL("cannot decode TIFF '", path.string(), "': row ", y, " of ", h, ": ",
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
    FOVEA_FAIL("cannot decode TIFF '", path.string(), "' (", bits, " bits x ", spp, " samples, photometric ",
               photometric, "): ", detail::tiff_reason("read failed (truncated, corrupt or unsupported)"));
  if (!detail::tiff_messages().empty())  // libtiff may return what it could read of a damaged file
    FOVEA_FAIL("cannot decode TIFF '", path.string(), "': ", detail::tiff_reason(""));
  for (std::size_t p = 0; p < plane; ++p) {
    const std::uint32_t v = rgba[p];
    out[p] = static_cast<float>(TIFFGetR(v)) / 255.0f;
    out[plane + p] = static_cast<float>(TIFFGetG(v)) / 255.0f;
    out[2 * plane + p] = static_cast<float>(TIFFGetB(v)) / 255.0f;
  }
  return image;
#else
  FOVEA_FAIL("cannot read image '", path.string(), "': ", detail::kNoTiffMessage);
#endif
}

}  // namespace fovea::data
