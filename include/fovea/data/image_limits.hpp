// fovea/data/image_limits.hpp: the largest image the decoders (data/image.hpp, data/tiff.hpp) accept.
//
// A few kilobytes of PNG, JPEG or TIFF can declare a picture of billions of pixels (a "decompression
// bomb"); decoding it would take the memory of the 8-bit buffer plus the 12 bytes per pixel of the
// float tensor before failing or, on a laptop, get the process killed. The decoders read the declared
// size from the header first and refuse an image larger than this limit with an error naming the
// file, its size and the setting. Default: PIL's, the number of pixels above which Pillow raises
// DecompressionBombError (2 x Image.MAX_IMAGE_PIXELS = 178,956,970, about 13,400 x 13,400); a 4288 x
// 2848 EyePACS photograph has 12.2 million.
#pragma once

#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "fovea/core/error.hpp"

namespace fovea::data {

inline constexpr std::int64_t kDefaultMaxImagePixels = 178'956'970;

// The limit in pixels (width x height): the environment variable FOVEA_MAX_IMAGE_PIXELS when set (a
// positive integer, or 0 for no limit), else kDefaultMaxImagePixels. Read on every call, so a program
// can change it between decodes. Anything else in the variable throws fovea::Error naming it.
inline std::int64_t max_image_pixels() {
  const char* v = std::getenv("FOVEA_MAX_IMAGE_PIXELS");
  if (v == nullptr || v[0] == '\0') return kDefaultMaxImagePixels;
  errno = 0;
  char* end = nullptr;
  const long long n = std::strtoll(v, &end, 10);
  FOVEA_CHECK(errno == 0 && end != v && *end == '\0' && n >= 0,
              "FOVEA_MAX_IMAGE_PIXELS must be a pixel count ",
              "(a non-negative integer; 0 means no limit), got '", v, "'");
  return n == 0 ? INT64_MAX : static_cast<std::int64_t>(n);
}

namespace detail {

// Throws unless a width x height image may be decoded: both positive and their product within
// max_image_pixels(). `what` names the file ("image 'x.png'"). Sides up to 2^32.
inline void check_image_size(const std::string& what, std::int64_t width, std::int64_t height) {
  FOVEA_CHECK(width > 0 && height > 0, "cannot decode ", what, ": bad image size ", width, "x", height);
  const std::int64_t limit = max_image_pixels();
  FOVEA_CHECK(
      width <= limit / height, "cannot decode ", what, ": ", width, "x", height, " = ",
      static_cast<std::uint64_t>(width) * static_cast<std::uint64_t>(height),
      " pixels is more than the limit of ", limit,
      " (a decompression bomb, or a very large image: raise FOVEA_MAX_IMAGE_PIXELS, 0 lifts the limit)");
}

}  // namespace detail
}  // namespace fovea::data
