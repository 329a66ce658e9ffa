// fovea/data/image.hpp: image files to (3, H, W) tensors and the torchvision-style preprocessing that
// feeds a classifier: antialiased bilinear resize, centre crop, per-channel normalisation; PNG output.
//
// Host code on CPU tensors. Decoding and encoding use stb_image / stb_image_write (Debian/Ubuntu
// libstb-dev), linked through the CMake target fovea::stb, which defines FOVEA_WITH_STB=1. Without it,
// load_image and write_png throw fovea::Error naming the missing package; the rest works anyway.
#pragma once

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cerrno>
#include <climits>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "fovea/core/error.hpp"
#include "fovea/core/tensor.hpp"
#include "fovea/data/image_limits.hpp"
#include "fovea/data/tiff.hpp"
#include "fovea/io/atomic_file.hpp"

#ifndef FOVEA_WITH_STB
#define FOVEA_WITH_STB 0
#endif
#if FOVEA_WITH_STB
#include <stb_image.h>
#include <stb_image_write.h>
#endif

namespace fovea::data {

// torchvision's ImageNet statistics (transforms.Normalize in its reference scripts).
inline constexpr std::array<float, 3> kImageNetMean{0.485f, 0.456f, 0.406f};
inline constexpr std::array<float, 3> kImageNetStd{0.229f, 0.224f, 0.225f};

// True when this program was built with stb (load_image and write_png work).
inline constexpr bool kHaveImageIo = FOVEA_WITH_STB != 0;

namespace detail {

inline constexpr const char* kNoStbMessage =
    "built without image I/O: install stb (Debian/Ubuntu: apt-get install libstb-dev; or run scripts/setup), "
    "reconfigure, and link the CMake target fovea::stb";

// The whole file, or an error naming it and the system error.
inline std::vector<unsigned char> read_whole_file(const std::filesystem::path& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) FOVEA_FAIL("cannot read image '", path.string(), "': ", std::strerror(errno));
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  struct stat st {};
  if (::fstat(fd, &st) != 0) FOVEA_FAIL("cannot read image '", path.string(), "': ", std::strerror(errno));
  if (S_ISDIR(st.st_mode)) FOVEA_FAIL("cannot read image '", path.string(), "': it is a directory");
  FOVEA_CHECK(st.st_size <= INT_MAX, "cannot read image '", path.string(), "': ", st.st_size,
              " bytes is more than the decoder accepts (2 GiB)");
  std::vector<unsigned char> bytes(static_cast<std::size_t>(st.st_size));
  std::size_t got = 0;
  while (got < bytes.size()) {
    const ::ssize_t n = ::read(fd, bytes.data() + got, bytes.size() - got);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) FOVEA_FAIL("cannot read image '", path.string(), "': ", std::strerror(errno));
    if (n == 0) break;
    got += static_cast<std::size_t>(n);
  }
  bytes.resize(got);
  return bytes;
}

// Two defects of stb_image 2.27 (Debian bookworm's libstb) that a JPEG's segments reveal before any
// pixel is decoded, refused here first (both found by fuzzing, docs/testing.md):
//   - a DHT segment declaring more than 256 codes in one table makes stb write past its Huffman
//     tables (nothings/stb issues 1289 and 1291, fixed in 2.28);
//   - a scan that decodes with a Huffman table no DHT segment defined before it makes stb decode with
//     uninitialised memory, which crashed the process.
// The walk follows the segments as stb reads them (entropy-coded data skipped up to the next
// marker). Anything else it does not judge: stb reports truncation and other defects itself.
inline void check_jpeg_huffman_tables(std::span<const unsigned char> b, const std::string& source) {
  std::size_t pos = 0;  // stb takes fill bytes before the start-of-image marker, too
  while (pos < b.size() && b[pos] == 0xFF) ++pos;
  if (pos == 0 || pos >= b.size() || b[pos] != 0xD8) return;  // not a JPEG
  ++pos;
  bool defined[8] = {};  // Huffman tables defined so far: DC 0-3, then AC 0-3
  bool progressive = false;
  while (pos < b.size()) {
    if (b[pos] != 0xFF) {  // entropy-coded data: on to the next 0xFF
      const void* next = std::memchr(b.data() + pos, 0xFF, b.size() - pos);
      if (next == nullptr) return;
      pos = static_cast<std::size_t>(static_cast<const unsigned char*>(next) - b.data());
      continue;
    }
    while (pos < b.size() && b[pos] == 0xFF) ++pos;  // fill bytes
    if (pos >= b.size()) return;
    const unsigned marker = b[pos++];
    if (marker == 0x00 || marker == 0x01 || (marker >= 0xD0 && marker <= 0xD8)) continue;  // no length
    if (marker == 0xD9 || pos + 2 > b.size()) return;                                      // end of image
    const std::size_t length = (std::size_t{b[pos]} << 8) | b[pos + 1];
    if (marker == 0xC0 || marker == 0xC1 || marker == 0xC2) progressive = marker == 0xC2;
    if (marker == 0xDA && pos + 3 <= b.size()) {  // start of scan: Ns, then (Cs, Td << 4 | Ta) per component
      const std::size_t ns = b[pos + 2], tail = pos + 3 + 2 * ns;
      if (tail + 3 <= b.size()) {
        const unsigned ss = b[tail], ah = b[tail + 2] >> 4;
        // What stb decodes with: both tables in a sequential scan; in a progressive one the DC table in
        // a first DC scan, the AC table in any AC scan (DC refinement reads raw bits).
        const bool dc = !progressive || (ss == 0 && ah == 0), ac = !progressive || ss > 0;
        for (std::size_t i = 0; i < ns; ++i) {
          const unsigned td = b[pos + 4 + 2 * i] >> 4, ta = b[pos + 4 + 2 * i] & 15;
          if (td > 3 || ta > 3) continue;  // stb refuses these itself
          FOVEA_CHECK(!dc || defined[td], "cannot decode image '", source,
                      "': corrupt JPEG: the scan at byte ", pos, " decodes with DC Huffman table ", td,
                      ", which no DHT segment defined before it");
          FOVEA_CHECK(!ac || defined[4 + ta], "cannot decode image '", source,
                      "': corrupt JPEG: the scan at byte ", pos, " decodes with AC Huffman table ", ta,
                      ", which no DHT segment defined before it");
        }
      }
    }
    if (marker == 0xC4) {
      // As stb does: tables follow each other while the segment has bytes left, a table's header read
      // even where it runs past the segment's end (past the file's end stb reads zeros).
      auto at = [&](std::size_t i) -> std::size_t { return i < b.size() ? b[i] : 0; };
      std::size_t t = pos + 2;
      for (std::ptrdiff_t left = static_cast<std::ptrdiff_t>(length) - 2; left > 0 && t < b.size();) {
        std::size_t codes = 0;
        for (std::size_t i = 1; i <= 16; ++i) codes += at(t + i);
        FOVEA_CHECK(codes <= 256, "cannot decode image '", source,
                    "': corrupt JPEG: the Huffman table at byte ", t, " declares ", codes,
                    " codes (at most 256)");
        const unsigned q = b[t], tc = q >> 4, th = q & 15;
        if (tc <= 1 && th <= 3) defined[4 * tc + th] = true;  // stb refuses other ids itself
        t += 17 + codes;
        left -= static_cast<std::ptrdiff_t>(17 + codes);
      }
    }
    pos += length;
  }
}

// The header of a binary PNM (P5 gray, P6 RGB), parsed as stb parses it: whitespace and # comments,
// then decimal numbers. Numbers saturate at 2^40 instead of overflowing.
struct PnmHeader {
  bool binary = false;  // starts with P5 or P6
  std::uint64_t channels = 0, width = 0, height = 0, maxval = 0;
  std::size_t data = 0;  // where the pixels start: one whitespace byte after maxval
};

inline PnmHeader pnm_header(std::span<const unsigned char> b) {
  PnmHeader p;
  if (b.size() < 2 || b[0] != 'P' || (b[1] != '5' && b[1] != '6')) return p;
  p.binary = true;
  p.channels = b[1] == '6' ? 3 : 1;
  std::size_t pos = 2;
  auto number = [&]() -> std::uint64_t {
    while (pos < b.size() && (std::isspace(b[pos]) || b[pos] == '#')) {
      if (b[pos] == '#')
        while (pos < b.size() && b[pos] != '\n' && b[pos] != '\r') ++pos;
      else ++pos;
    }
    std::uint64_t v = 0;
    for (; pos < b.size() && b[pos] >= '0' && b[pos] <= '9'; ++pos)
      v = std::min<std::uint64_t>(v * 10 + (b[pos] - '0'), std::uint64_t{1} << 40);
    return v;
  };
  p.width = number(), p.height = number(), p.maxval = number();
  p.data = pos + 1;
  return p;
}

// Binary PNM (P5 gray, P6 RGB; 8 or 16 bits, big-endian) decoded here rather than by stb 2.27,
// which overflows an int on a large header number and, for a 16-bit gray file, converts the samples
// as 8-bit ones and then reads past its buffer. Values are sample / maxval, as the format defines
// them (stb divided by 255 whatever the maxval). Errors name the source: a header number out of
// range, a maxval above 65535, a sample above maxval, a file shorter than its pixels.
inline Tensor decode_pnm(std::span<const unsigned char> b, const PnmHeader& p, const std::string& source) {
  for (const std::uint64_t v : {p.width, p.height, p.maxval})
    FOVEA_CHECK(v >= 1 && v <= static_cast<std::uint64_t>(INT_MAX), "cannot decode image '", source,
                "': corrupt PNM header: the number ",
                v >= (std::uint64_t{1} << 40) ? "(over 2^40)" : std::to_string(v), " is out of range");
  FOVEA_CHECK(p.maxval <= 65535, "cannot decode image '", source, "': corrupt PNM header: maxval ", p.maxval,
              " is above 65535");
  FOVEA_CHECK(p.data - 1 < b.size() && std::isspace(b[p.data - 1]), "cannot decode image '", source,
              "': corrupt PNM header: no whitespace after maxval");
  check_image_size("image '" + source + "'", static_cast<std::int64_t>(p.width),
                   static_cast<std::int64_t>(p.height));
  const std::uint64_t depth = p.maxval > 255 ? 2 : 1, plane = p.width * p.height,
                      per_pixel = p.channels * depth;
  // Saturating: with the pixel limit lifted, plane * per_pixel may pass 2^64.
  const std::uint64_t need =
      plane > (UINT64_MAX - p.data) / per_pixel ? UINT64_MAX : p.data + plane * per_pixel;
  FOVEA_CHECK(b.size() >= need, "cannot decode image '", source,
              "': the PNM file is truncated: its header needs ", need, " bytes, the file has ", b.size());
  Tensor image(Shape{3, static_cast<std::int64_t>(p.height), static_cast<std::int64_t>(p.width)});
  float* out = image.data();
  const float scale = 1.0f / static_cast<float>(p.maxval);
  const unsigned char* q = b.data() + p.data;
  for (std::uint64_t i = 0; i < plane; ++i) {
    for (std::uint64_t c = 0; c < p.channels; ++c, q += depth) {
      const unsigned sample = depth == 1 ? q[0] : (unsigned{q[0]} << 8) | q[1];
      FOVEA_CHECK(sample <= p.maxval, "cannot decode image '", source, "': PNM sample ", sample, " at byte ",
                  q - b.data(), " is above maxval ", p.maxval);
      // maxval 255: exactly k / 255, as the other decoders give
      out[c * plane + i] =
          p.maxval == 255 ? static_cast<float>(sample) / 255.0f : static_cast<float>(sample) * scale;
    }
  }
  if (p.channels == 1) {
    std::copy_n(out, plane, out + plane);
    std::copy_n(out, plane, out + 2 * plane);
  }
  return image;
}

// stb_image decodes a truncated BMP or uncompressed TGA without complaint: the missing pixels read as
// zeros. These formats store their pixels uncompressed, so the bytes a file must have follow from its
// header; a shorter file is rejected, naming both sizes. (JPEG and PNG report truncation themselves,
// binary PNM is decode_pnm's; GIF, PSD and RLE-coded TGA are not checked.)
inline void check_uncompressed_size(std::span<const unsigned char> b, const std::string& source) {
  auto le = [&](std::size_t at, int n) -> std::uint64_t {
    std::uint64_t v = 0;
    for (int i = n - 1; i >= 0; --i) v = (v << 8) | (at + i < b.size() ? b[at + i] : 0);
    return v;
  };
  auto need = [&](std::uint64_t bytes, const char* format) {
    FOVEA_CHECK(b.size() >= bytes, "cannot decode image '", source, "': the ", format,
                " file is truncated: its ", "header needs ", bytes, " bytes, the file has ", b.size());
  };
  auto starts = [&](std::string_view magic) {
    return b.size() >= magic.size() && std::memcmp(b.data(), magic.data(), magic.size()) == 0;
  };
  if (starts("BM")) {
    const std::uint64_t offset = le(10, 4), hsz = le(14, 4);
    const bool core = hsz == 12;
    const std::uint64_t w = le(18, core ? 2 : 4), bpp = le(core ? 24 : 28, 2);
    // A negative height (top-down rows) only in the 32-bit fields of the newer headers.
    const std::int64_t h = core ? static_cast<std::int64_t>(le(20, 2)) : static_cast<std::int32_t>(le(22, 4));
    const std::uint64_t compression = core ? 0 : le(30, 4);
    if ((compression != 0 && compression != 3) || bpp == 0 || bpp > 32 || w == 0 || h == 0 || w > (1u << 24))
      return;  // stb refuses these itself
    const std::uint64_t rows = static_cast<std::uint64_t>(h < 0 ? -h : h), row = (bpp * w + 31) / 32 * 4;
    need(offset + row * (rows - 1) + (bpp * w + 7) / 8, "BMP");  // the last row's padding may be missing
  } else if (b.size() >= 18 && (b[2] == 1 || b[2] == 2 || b[2] == 3) && b[1] <= 1) {
    // TGA has no magic; stb tries it last, so only a file no other format claims gets here.
    if (starts("\x89PNG") || starts("GIF8") || starts("8BPS") || starts("#?") || starts("S\x80\xf6\x34") ||
        b[0] == 0xFF)
      return;
    const std::uint64_t id = b[0], cmap = b[1] ? le(5, 2) * ((le(7, 1) + 7) / 8) : 0;
    const std::uint64_t w = le(12, 2), h = le(14, 2), bpp = b[16];
    need(18 + id + cmap + w * h * ((bpp + 7) / 8), "TGA");
  }
}

// One axis of a separable resize: output i reads inputs [first[i], first[i] + count[i]) with the
// weights in row i of `weights` (stride `stride`), which sum to 1.
struct ResampleTaps {
  std::vector<int> first, count;
  std::vector<float> weights;
  int stride = 0;
};

// PIL's BILINEAR ("triangle") resampling along one axis: output pixel i is centred at input
// coordinate (i + 0.5) * scale (half-pixel centres); when shrinking (scale > 1) the triangle is
// stretched by `scale`, so every input pixel contributes (antialiasing). Taps beyond the border are
// dropped and the remaining weights renormalised.
inline ResampleTaps bilinear_taps(int in_size, int out_size) {
  const double scale = static_cast<double>(in_size) / out_size;
  const double stretch = std::max(scale, 1.0);
  const double support = stretch;  // the triangle's half-width is 1 input pixel, stretched
  ResampleTaps t;
  t.stride = static_cast<int>(std::ceil(support)) * 2 + 1;
  t.first.resize(static_cast<std::size_t>(out_size));
  t.count.resize(static_cast<std::size_t>(out_size));
  t.weights.assign(static_cast<std::size_t>(out_size) * static_cast<std::size_t>(t.stride), 0.0f);
  std::vector<double> w(static_cast<std::size_t>(t.stride));
  for (int i = 0; i < out_size; ++i) {
    const double centre = (i + 0.5) * scale;
    const int lo = std::max(static_cast<int>(centre - support + 0.5), 0);
    const int hi = std::min(static_cast<int>(centre + support + 0.5), in_size);
    const int n = std::min(hi - lo, t.stride);
    double total = 0.0;
    for (int k = 0; k < n; ++k) {
      const double d = std::abs((lo + k + 0.5 - centre) / stretch);
      w[static_cast<std::size_t>(k)] = d < 1.0 ? 1.0 - d : 0.0;
      total += w[static_cast<std::size_t>(k)];
    }
    t.first[static_cast<std::size_t>(i)] = lo;
    t.count[static_cast<std::size_t>(i)] = n;
    for (int k = 0; k < n; ++k)
      t.weights[static_cast<std::size_t>(i) * static_cast<std::size_t>(t.stride) +
                static_cast<std::size_t>(k)] =
          static_cast<float>(total > 0.0 ? w[static_cast<std::size_t>(k)] / total : 0.0);
  }
  return t;
}

inline void check_image(const char* op, CView image) {
  FOVEA_CHECK(image.device().is_cpu(), op, ": image must be on the cpu, got ", image.device().str());
  FOVEA_CHECK(image.shape().rank() == 3, op, ": image must be (C, H, W), got ", image.shape().str());
}

}  // namespace detail

// decode_image: decodes a JPEG, PNG, BMP or GIF (first frame) held in memory (also TGA, PSD, HDR,
// PIC; a TIFF, recognised by its first four bytes, goes to decode_tiff; binary PNM, P5 / P6, is
// decoded by fovea itself). `source` names the bytes in errors (a file name, an archive member).
// ensures: a CPU tensor (3, H, W) of RGB values k / 255 in [0, 1] (16-bit PNGs are reduced to 8 bits;
//          PNM gives sample / maxval); grayscale is replicated into the three channels, alpha is dropped.
// Throws fovea::Error naming `source` and the reason: no data, truncated or corrupt data, an
// unsupported format, an image larger than max_image_pixels() (data/image_limits.hpp: the declared
// size is checked before decoding), or, in a build without stb, the package to install.
inline Tensor decode_image(std::span<const unsigned char> bytes, const std::string& source = "<memory>") {
  FOVEA_CHECK(!bytes.empty(), "cannot decode image '", source, "': the file is empty");
  if (bytes.size() >= 4 && ((bytes[0] == 'I' && bytes[1] == 'I' && bytes[2] == 42 && bytes[3] == 0) ||
                            (bytes[0] == 'M' && bytes[1] == 'M' && bytes[2] == 0 && bytes[3] == 42)))
    return decode_tiff(bytes, source);
  if (const detail::PnmHeader pnm = detail::pnm_header(bytes); pnm.binary)
    return detail::decode_pnm(bytes, pnm, source);
#if FOVEA_WITH_STB
  FOVEA_CHECK(bytes.size() <= static_cast<std::size_t>(INT_MAX), "cannot decode image '", source,
              "': ", bytes.size(), " bytes is more than the decoder accepts (2 GiB)");
  const int size = static_cast<int>(bytes.size());
  detail::check_jpeg_huffman_tables(bytes, source);
  int w = 0, h = 0, channels = 0;
  if (stbi_info_from_memory(bytes.data(), size, &w, &h, &channels) != 0) {
    detail::check_image_size("image '" + source + "'", w, h);
    detail::check_uncompressed_size(bytes, source);
  }
  unsigned char* pixels = stbi_load_from_memory(bytes.data(), size, &w, &h, &channels, 3);
  if (pixels == nullptr) {
    const char* why = stbi_failure_reason();
    std::string reason;  // stb quotes bytes of the file in some reasons (an unknown PNG chunk's type)
    for (const char* c = why != nullptr ? why : "unknown failure"; *c != '\0'; ++c) {
      const auto u = static_cast<unsigned char>(*c);
      if (u >= 0x20 && u < 0x7F) {
        reason += *c;
      } else {
        char hex[8];
        std::snprintf(hex, sizeof hex, "\\x%02x", u);
        reason += hex;
      }
    }
    if (reason == "unknown image type")
      reason += " (stb_image decodes JPEG, PNG, BMP, GIF, TGA, PSD, PNM, HDR and PIC; not TIFF or WebP)";
    else if (reason != "outofmem")
      reason = "stb_image says '" + reason + "': the file is truncated, corrupt or an unsupported variant";
    FOVEA_FAIL("cannot decode image '", source, "': ", reason);
  }
  struct Freer {
    unsigned char* p;
    ~Freer() { stbi_image_free(p); }
  } freer{pixels};
  // The info call and the decoder read the same header; check again what was decoded.
  detail::check_image_size("image '" + source + "'", w, h);
  Tensor image(Shape{3, h, w});  // (3, H, W)
  float* out = image.data();
  const std::size_t plane = static_cast<std::size_t>(h) * static_cast<std::size_t>(w);
  for (std::size_t p = 0; p < plane; ++p)
    for (std::size_t c = 0; c < 3; ++c) out[c * plane + p] = static_cast<float>(pixels[p * 3 + c]) / 255.0f;
  return image;
#else
  FOVEA_FAIL("cannot decode image '", source, "': ", detail::kNoStbMessage);
#endif
}

// load_image: decode_image of a file's bytes, errors naming the file (also a missing or unreadable
// file, a directory). Files ending in .tif / .tiff go to load_tiff (data/tiff.hpp, libtiff), with the
// same contract.
inline Tensor load_image(const std::filesystem::path& path) {
  if (detail::has_tiff_extension(path)) return load_tiff(path);
#if FOVEA_WITH_STB
  const std::vector<unsigned char> bytes = detail::read_whole_file(path);
  return decode_image(bytes, path.string());
#else
  FOVEA_FAIL("cannot read image '", path.string(), "': ", detail::kNoStbMessage);
#endif
}

// resize_antialiased: resizes every channel to (out_h, out_w) with PIL's BILINEAR filter, which
// torchvision's Resize uses on PIL images: a separable triangle filter with half-pixel centres whose
// support widens with the downscale factor (antialiasing); upscaling is plain bilinear interpolation
// with edge clamping. Rows first, then columns; an axis whose size does not change is copied.
// Differences from PIL: fp32 arithmetic, no rounding to 8 bits between the passes (within 1/255).
//   image (C, H, W) on the cpu -> (C, out_h, out_w).
inline Tensor resize_antialiased(CView image, int out_h, int out_w);

// resize_window_antialiased: resize_antialiased of the window of `image` with rows [y0, y0 + wh)
// and columns [x0, x0 + ww), pixels outside the image read as 0 (the window may reach past any
// border), without building the window: bitwise equal to cropping it out, zero-padded, and resizing
// that, in time and memory linear in the image, the output and the window's sides, not in its area.
// A square window around a 40 x 12,340 strip would otherwise take 1.8 GB; taps that fall past the
// image are not visited (a 32,808 x 52 strip: 8.3 s with them).
//   image (C, H, W) on the cpu -> (C, out_h, out_w).
inline Tensor resize_window_antialiased(CView image, std::int64_t y0, std::int64_t x0, std::int64_t wh,
                                        std::int64_t ww, int out_h, int out_w) {
  detail::check_image("resize_window_antialiased", image);
  FOVEA_CHECK(out_h > 0 && out_w > 0, "resize_antialiased: output size ", out_h, "x", out_w,
              " must be positive");
  FOVEA_CHECK(wh > 0 && ww > 0 && wh <= INT_MAX && ww <= INT_MAX, "resize_window_antialiased: window ", wh,
              "x", ww, " must be positive");
  const std::int64_t channels = image.shape()[0], in_h = image.shape()[1], in_w = image.shape()[2];
  FOVEA_CHECK(in_h > 0 && in_w > 0, "resize_antialiased: empty image ", image.shape().str());

  // Horizontal pass over the window's rows (rows outside the image stay zero: a sum of w * 0).
  Tensor rows(Shape{channels, wh, out_w});  // (C, wh, out_w)
  std::fill(rows.data(), rows.data() + rows.numel(), 0.0f);
  const std::int64_t ys = std::max<std::int64_t>(y0, 0), ye = std::min(y0 + wh, in_h);
  const bool resize_w = ww != out_w;
  const detail::ResampleTaps t = detail::bilinear_taps(static_cast<int>(ww), resize_w ? out_w : 1);
  for (std::int64_t c = 0; c < channels; ++c) {
    for (std::int64_t y = ys; y < ye; ++y) {
      const float* src = image.data() + (c * in_h + y) * in_w;  // image column x is window column x - x0
      float* dst = rows.data() + (c * wh + (y - y0)) * out_w;
      if (!resize_w) {
        for (std::int64_t i = 0; i < out_w; ++i) {
          const std::int64_t x = x0 + i;
          dst[i] = x >= 0 && x < in_w ? src[x] : 0.0f;
        }
        continue;
      }
      for (int i = 0; i < out_w; ++i) {
        const float* w = t.weights.data() + static_cast<std::size_t>(i) * static_cast<std::size_t>(t.stride);
        const std::int64_t first = x0 + t.first[static_cast<std::size_t>(i)];
        const int n = t.count[static_cast<std::size_t>(i)];
        // Taps past the border would add w * 0 = +0 to a sum that starts at +0 and so is never -0:
        // leaving them out changes no bit. The taps inside are one contiguous run.
        const int k0 = static_cast<int>(std::clamp<std::int64_t>(-first, 0, n));
        const int k1 = static_cast<int>(std::clamp<std::int64_t>(in_w - first, k0, n));
        float acc = 0.0f;
        for (int k = k0; k < k1; ++k) acc += w[k] * src[first + k];
        dst[i] = acc;
      }
    }
  }
  if (wh == out_h) return rows;

  Tensor out(Shape{channels, out_h, out_w});  // (C, out_h, out_w)
  const detail::ResampleTaps v = detail::bilinear_taps(static_cast<int>(wh), out_h);
  for (std::int64_t c = 0; c < channels; ++c) {
    const float* src = rows.data() + c * wh * out_w;
    float* dst = out.data() + c * out_h * out_w;
    for (int i = 0; i < out_h; ++i) {
      const float* w = v.weights.data() + static_cast<std::size_t>(i) * static_cast<std::size_t>(v.stride);
      float* d = dst + static_cast<std::int64_t>(i) * out_w;
      std::fill(d, d + out_w, 0.0f);
      // Window rows outside the image are zeros: skipped, as the horizontal pass skips its taps.
      const std::int64_t first = v.first[static_cast<std::size_t>(i)],
                         n = v.count[static_cast<std::size_t>(i)];
      const std::int64_t k0 = std::clamp<std::int64_t>(ys - y0 - first, 0, n);
      const std::int64_t k1 = std::clamp<std::int64_t>(ye - y0 - first, k0, n);
      for (std::int64_t k = k0; k < k1; ++k) {
        const float* s = src + (first + k) * out_w;
        for (int x = 0; x < out_w; ++x) d[x] += w[k] * s[x];
      }
    }
  }
  return out;
}

inline Tensor resize_antialiased(CView image, int out_h, int out_w) {
  detail::check_image("resize_antialiased", image);
  FOVEA_CHECK(image.shape()[1] > 0 && image.shape()[2] > 0, "resize_antialiased: empty image ",
              image.shape().str());
  return resize_window_antialiased(image, 0, 0, image.shape()[1], image.shape()[2], out_h, out_w);
}

// The output size of torchvision's Resize(size) for an int `size`: the shorter side becomes `size`,
// the longer one int(size * long / short) (truncated). Returns {height, width}.
inline std::array<int, 2> resized_shorter_side(std::int64_t height, std::int64_t width, int size) {
  FOVEA_CHECK(size > 0 && height > 0 && width > 0, "resized_shorter_side: size ", size, " of a ", height, "x",
              width, " image");
  const std::int64_t shorter = std::min(height, width), longer = std::max(height, width);
  const int scaled = static_cast<int>(static_cast<double>(static_cast<std::int64_t>(size) * longer) /
                                      static_cast<double>(shorter));
  return height <= width ? std::array<int, 2>{size, scaled} : std::array<int, 2>{scaled, size};
}

// The offset of a centred crop as torchvision computes it: round((size - crop) / 2) with Python's
// round-half-to-even (so 1.5 -> 2, 2.5 -> 2).
inline std::int64_t center_crop_offset(std::int64_t size, std::int64_t crop) {
  const std::int64_t d = size - crop;
  const std::int64_t half = d / 2;
  return d % 2 == 0 || half % 2 == 0 ? half : half + 1;
}

// center_crop: the centred (h, w) window, offsets by center_crop_offset.
// requires: 0 < h <= H and 0 < w <= W (no padding).
//   image (C, H, W) on the cpu -> (C, h, w).
inline Tensor center_crop(CView image, int h, int w) {
  detail::check_image("center_crop", image);
  const std::int64_t channels = image.shape()[0], in_h = image.shape()[1], in_w = image.shape()[2];
  FOVEA_CHECK(h > 0 && w > 0 && h <= in_h && w <= in_w, "center_crop: a ", h, "x", w, " crop of image ",
              image.shape().str(), " (the crop must fit; fovea does not pad)");
  const std::int64_t top = center_crop_offset(in_h, h), left = center_crop_offset(in_w, w);
  Tensor out(Shape{channels, h, w});  // (C, h, w)
  for (std::int64_t c = 0; c < channels; ++c)
    for (std::int64_t y = 0; y < h; ++y)
      std::copy_n(image.data() + (c * in_h + top + y) * in_w + left, w, out.data() + (c * h + y) * w);
  return out;
}

// normalize: image[c] = (image[c] - mean[c]) / std[c], in place.
// requires: image (3, H, W) or (N, 3, H, W) on the cpu; every std[c] > 0.
inline void normalize(View image, std::array<float, 3> mean, std::array<float, 3> std) {
  const Shape& s = image.shape();
  FOVEA_CHECK(image.device().is_cpu(), "normalize: image must be on the cpu, got ", image.device().str());
  FOVEA_CHECK((s.rank() == 3 && s[0] == 3) || (s.rank() == 4 && s[1] == 3),
              "normalize: image must be (3, H, W) or (N, 3, H, W), got ", s.str());
  for (float v : std) FOVEA_CHECK(v > 0.0f && std::isfinite(v), "normalize: std must be positive, got ", v);
  const std::int64_t plane = s[s.rank() - 1] * s[s.rank() - 2];
  const std::int64_t planes = image.numel() / plane;
  for (std::int64_t p = 0; p < planes; ++p) {
    const std::size_t c = static_cast<std::size_t>(p % 3);
    const float m = mean[c], inv = 1.0f / std[c];
    float* x = image.data() + p * plane;
    for (std::int64_t i = 0; i < plane; ++i) x[i] = (x[i] - m) * inv;
  }
}

// preprocess_for_model: torchvision's evaluation transform Resize(size) -> CenterCrop(size) ->
// ToTensor -> Normalize(mean, std) on the image at `path`. An image already size x size is used as
// it is; otherwise its shorter side is resized to `size` (resized_shorter_side) and the centre
// size x size window is kept.
//   -> (1, 3, size, size) on the cpu.
inline Tensor preprocess_for_model(const std::filesystem::path& path, int size, std::array<float, 3> mean,
                                   std::array<float, 3> std) {
  FOVEA_CHECK(size > 0, "preprocess_for_model: size must be positive, got ", size);
  Tensor image = load_image(path);  // (3, H, W)
  const std::int64_t h = image.shape()[1], w = image.shape()[2];
  if (h != size || w != size) {
    const auto [rh, rw] = resized_shorter_side(h, w, size);
    if (rh != h || rw != w) image = resize_antialiased(image, rh, rw);
    image = center_crop(image, size, size);
  }
  normalize(image, mean, std);
  image.reshape(Shape{1, 3, size, size});
  return image;
}

// write_png: encodes image (C, H, W) with C = 1 (gray) or 3 (RGB), values in [0, 1] (clamped), as an
// 8-bit PNG (value v -> round(255 v), so k / 255 round-trips exactly through load_image) and writes
// it atomically (io::write_file_atomically: an existing file is replaced whole or left untouched).
inline void write_png(const std::filesystem::path& path, CView image) {
  detail::check_image("write_png", image);
  const std::int64_t channels = image.shape()[0], h = image.shape()[1], w = image.shape()[2];
  FOVEA_CHECK(channels == 1 || channels == 3, "write_png: '", path.string(),
              "': image must have 1 or 3 channels, got ", image.shape().str());
  FOVEA_CHECK(h > 0 && w > 0 && h < INT_MAX / 4 && w < INT_MAX / 4 && h * w * channels < INT_MAX,
              "write_png: '", path.string(), "': bad image size ", image.shape().str());
#if FOVEA_WITH_STB
  const std::int64_t plane = h * w;
  std::vector<unsigned char> pixels(static_cast<std::size_t>(plane * channels));
  for (std::int64_t p = 0; p < plane; ++p)
    for (std::int64_t c = 0; c < channels; ++c) {
      const float v = image.data()[c * plane + p];
      FOVEA_CHECK(!std::isnan(v), "write_png: '", path.string(), "': NaN at channel ", c, ", pixel ", p);
      pixels[static_cast<std::size_t>(p * channels + c)] =
          static_cast<unsigned char>(std::lround(std::clamp(v, 0.0f, 1.0f) * 255.0f));
    }
  std::string encoded;
  auto sink = [](void* context, void* data, int size) {
    static_cast<std::string*>(context)->append(static_cast<const char*>(data),
                                               static_cast<std::size_t>(size));
  };
  const int ok =
      stbi_write_png_to_func(sink, &encoded, static_cast<int>(w), static_cast<int>(h),
                             static_cast<int>(channels), pixels.data(), static_cast<int>(w * channels));
  FOVEA_CHECK(ok != 0 && !encoded.empty(), "write_png: encoding '", path.string(), "' failed");
  io::write_file_atomically(path, encoded);
#else
  FOVEA_FAIL("cannot write image '", path.string(), "': ", detail::kNoStbMessage);
#endif
}

}  // namespace fovea::data
