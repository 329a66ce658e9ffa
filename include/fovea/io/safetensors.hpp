// fovea/io/safetensors.hpp: safetensors weight files, read (checked against hostile input) and written.
//
// Layout: an 8-byte little-endian u64 N, N bytes of UTF-8 JSON (the header), then the data buffer.
// The header maps each tensor name to {"dtype", "shape", "data_offsets": [begin, end]} (offsets
// relative to the buffer) plus an optional "__metadata__" object of string -> string. Reading
// converts F32 / F16 / BF16 / F64 to fp32; writing always writes F32. docs/weights.md has the rules.
#pragma once

#if __has_include(<nlohmann/json.hpp>)
#include <nlohmann/json.hpp>
#define FOVEA_IO_HAVE_NLOHMANN_JSON 1
#else
#error \
    "fovea/io/safetensors.hpp needs the header-only nlohmann/json library: install it (Debian/Ubuntu: apt install nlohmann-json3-dev; or run scripts/setup) or put <nlohmann/json.hpp> on the include path"
#define FOVEA_IO_HAVE_NLOHMANN_JSON 0
#endif
// Without nlohmann/json the rest of the file is skipped, so the #error above is the only message.
#if FOVEA_IO_HAVE_NLOHMANN_JSON

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <limits>
#include <map>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "fovea/core/error.hpp"
#include "fovea/core/shape.hpp"
#include "fovea/core/tensor.hpp"
#include "fovea/io/atomic_file.hpp"

namespace fovea::io {

static_assert(std::endian::native == std::endian::little, "safetensors I/O assumes a little-endian host");

// The largest header accepted (the limit of the reference implementation).
inline constexpr std::uint64_t kSafeTensorsMaxHeaderBytes = 100'000'000;

using SafeTensorsMetadata = std::map<std::string, std::string>;

// One tensor as read from a file: its dtype there, its shape and its elements converted to fp32.
struct StoredTensor {
  std::string dtype = "F32";
  Shape shape;
  std::vector<float> data;  // row-major, shape.numel() elements
};

// A valid tensor the reader left out because the caller asked to skip its kind.
struct SkippedTensor {
  std::string name;
  std::string dtype;
  std::vector<std::int64_t> shape;
  std::string reason;  // "dtype I64 is not a floating-point type fovea converts" / "rank 5 > 4"
};

struct SafeTensorsReadOptions {
  // Tensors whose dtype is valid but not F32/F16/BF16/F64 (I64, U8, BOOL, F8_*, ...) go to
  // `skipped` instead of failing the read (torchvision's BN `num_batches_tracked` is I64).
  bool skip_unsupported_dtypes = false;
  // Tensors of rank > 4 (fovea's limit) go to `skipped` instead of failing the read.
  bool skip_high_rank = false;
};

struct SafeTensors {
  std::map<std::string, StoredTensor> tensors;  // by name
  SafeTensorsMetadata metadata;                 // "__metadata__", empty when absent
  std::vector<SkippedTensor> skipped;           // by name
};

namespace detail {

// Index of the first byte that breaks UTF-8 (overlongs, surrogates and > U+10FFFF included), or npos.
inline std::size_t first_invalid_utf8(std::string_view s) {
  const auto* b = reinterpret_cast<const unsigned char*>(s.data());
  const std::size_t n = s.size();
  std::size_t i = 0;
  while (i < n) {
    const unsigned c = b[i];
    if (c < 0x80) {
      ++i;
      continue;
    }
    int extra = 0;
    unsigned lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) {
      extra = 1;
    } else if (c >= 0xE0 && c <= 0xEF) {
      extra = 2;
      if (c == 0xE0) lo = 0xA0;
      if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      extra = 3;
      if (c == 0xF0) lo = 0x90;
      if (c == 0xF4) hi = 0x8F;
    } else {
      return i;
    }
    if (n - i <= static_cast<std::size_t>(extra)) return i;
    if (b[i + 1] < lo || b[i + 1] > hi) return i;
    for (int k = 2; k <= extra; ++k)
      if (b[i + k] < 0x80 || b[i + k] > 0xBF) return i;
    i += static_cast<std::size_t>(extra) + 1;
  }
  return std::string_view::npos;
}

// Appends s as a JSON string, escaped the way serde_json (the reference writer) does.
inline void append_json_string(std::string& out, std::string_view s) {
  static constexpr char kHex[] = "0123456789abcdef";
  out += '"';
  for (const char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20) {
          out += "\\u00";
          out += kHex[c >> 4];
          out += kHex[c & 0xF];
        } else {
          out += ch;
        }
    }
  }
  out += '"';
}

// A name for error messages: quoted, escaped, cut to a readable length.
inline std::string display_name(std::string_view s) {
  constexpr std::size_t kMax = 120;
  bool cut = false;
  if (s.size() > kMax) {
    std::size_t i = kMax;
    while (i > 0 && (static_cast<unsigned char>(s[i]) & 0xC0) == 0x80) --i;
    s = s.substr(0, i);
    cut = true;
  }
  std::string out;
  append_json_string(out, s);
  if (cut) out += "...";
  return out;
}

struct DtypeInfo {
  std::string_view name;
  int bits;
  bool convertible;  // fovea converts it to fp32
};

inline constexpr DtypeInfo kDtypes[] = {
    {"F32", 32, true},     {"F16", 16, true},     {"BF16", 16, true},    {"F64", 64, true},
    {"BOOL", 8, false},    {"U8", 8, false},      {"I8", 8, false},      {"F8_E5M2", 8, false},
    {"F8_E4M3", 8, false}, {"F8_E8M0", 8, false}, {"I16", 16, false},    {"U16", 16, false},
    {"I32", 32, false},    {"U32", 32, false},    {"I64", 64, false},    {"U64", 64, false},
    {"C64", 64, false},    {"F6_E2M3", 6, false}, {"F6_E3M2", 6, false}, {"F4", 4, false},
};

inline const DtypeInfo* find_dtype(std::string_view name) {
  for (const DtypeInfo& d : kDtypes)
    if (d.name == name) return &d;
  return nullptr;
}

inline float f16_to_f32(std::uint16_t h) {
  const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
  const std::uint32_t exp = (h >> 10) & 0x1Fu;
  const std::uint32_t mant = h & 0x3FFu;
  std::uint32_t bits;
  if (exp == 0) {
    if (mant == 0) return std::bit_cast<float>(sign);
    bits = sign | std::bit_cast<std::uint32_t>(std::ldexp(static_cast<float>(mant), -24));
  } else if (exp == 0x1F) {
    bits = sign | 0x7F800000u | (mant << 13);  // inf, or NaN keeping its payload
  } else {
    bits = sign | ((exp + 112) << 23) | (mant << 13);
  }
  return std::bit_cast<float>(bits);
}

inline float bf16_to_f32(std::uint16_t b) {
  return std::bit_cast<float>(static_cast<std::uint32_t>(b) << 16);
}

// Rounds to nearest fp32; false when a finite value rounds beyond the fp32 range.
inline bool f64_to_f32(double d, float& out) {
  if (std::isnan(d)) {
    out =
        std::copysign(std::numeric_limits<float>::quiet_NaN(), static_cast<float>(std::signbit(d) ? -1 : 1));
    return true;
  }
  const double a = std::fabs(d);
  if (std::isinf(d)) {
    out = static_cast<float>(d);
    return true;
  }
  if (a >= 0x1.ffffffp+127) return false;  // the midpoint between FLT_MAX and 2^128 rounds to inf
  out = a > static_cast<double>(std::numeric_limits<float>::max())
            ? std::copysign(std::numeric_limits<float>::max(), static_cast<float>(d))
            : static_cast<float>(d);
  return true;
}

// Bounded random access to the bytes of a file (pread) or of memory.
class FileBytes {
 public:
  explicit FileBytes(const std::filesystem::path& path) : path_(path) {
    fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd_ < 0) FOVEA_FAIL("cannot open safetensors file '", path.string(), "': ", std::strerror(errno));
    struct stat st {};
    if (::fstat(fd_, &st) != 0) {
      const int err = errno;
      ::close(fd_);
      FOVEA_FAIL("cannot stat safetensors file '", path.string(), "': ", std::strerror(err));
    }
    if (!S_ISREG(st.st_mode)) {
      ::close(fd_);
      FOVEA_FAIL("safetensors file '", path.string(), "' is not a regular file");
    }
    size_ = static_cast<std::uint64_t>(st.st_size);
  }
  FileBytes(const FileBytes&) = delete;
  FileBytes& operator=(const FileBytes&) = delete;
  ~FileBytes() { ::close(fd_); }

  std::uint64_t size() const { return size_; }
  // requires offset + n <= size()
  void read(std::uint64_t offset, std::size_t n, void* dst) const {
    auto* p = static_cast<char*>(dst);
    while (n > 0) {
      const ::ssize_t got = ::pread(fd_, p, n, static_cast<::off_t>(offset));
      if (got < 0 && errno == EINTR) continue;
      if (got < 0) FOVEA_FAIL("cannot read safetensors file '", path_.string(), "': ", std::strerror(errno));
      if (got == 0) FOVEA_FAIL("safetensors file '", path_.string(), "' shrank while being read");
      p += got;
      n -= static_cast<std::size_t>(got);
      offset += static_cast<std::uint64_t>(got);
    }
  }

 private:
  std::filesystem::path path_;
  int fd_ = -1;
  std::uint64_t size_ = 0;
};

class MemoryBytes {
 public:
  explicit MemoryBytes(std::span<const std::byte> bytes) : bytes_(bytes) {}
  std::uint64_t size() const { return bytes_.size(); }
  void read(std::uint64_t offset, std::size_t n, void* dst) const {
    if (n > 0) std::memcpy(dst, bytes_.data() + offset, n);
  }

 private:
  std::span<const std::byte> bytes_;
};

// What the header says about one tensor, after validation.
struct EntryInfo {
  std::string name;
  const DtypeInfo* dtype = nullptr;
  std::vector<std::int64_t> shape;
  std::uint64_t begin = 0, end = 0;
};

class HeaderChecker {
 public:
  explicit HeaderChecker(std::string source) : source_(std::move(source)) {}

  template <class... Args>
  [[noreturn]] void fail(const Args&... details) const {
    FOVEA_FAIL("safetensors file '", source_, "': ", details...);
  }
  template <class... Args>
  [[noreturn]] void fail_key(const std::string& key, const Args&... details) const {
    FOVEA_FAIL("safetensors file '", source_, "': tensor ", display_name(key), ": ", details...);
  }

  nlohmann::json parse(const std::string& text) {
    if (const std::size_t bad = first_invalid_utf8(text); bad != std::string_view::npos)
      fail("the header is not valid UTF-8 (byte ", bad, " of the header)");
    if (const std::size_t nul = text.find('\0'); nul != std::string::npos)
      fail("the header contains a NUL byte (byte ", nul, " of the header)");
    if (text.empty() || text.front() != '{') fail("the header is not a JSON object (it must start with '{')");
    std::vector<std::set<std::string>> keys;  // keys seen in each open object
    constexpr int kMaxDepth = 8;              // real headers nest 3 deep
    auto callback = [&](int depth, nlohmann::json::parse_event_t event, nlohmann::json& parsed) {
      using E = nlohmann::json::parse_event_t;
      if ((event == E::object_start || event == E::array_start) && depth >= kMaxDepth)
        fail("the header nests JSON deeper than ", kMaxDepth, " levels");
      if (event == E::object_start) keys.emplace_back();
      if (event == E::object_end && !keys.empty()) keys.pop_back();
      if (event == E::key && !keys.empty() && !keys.back().insert(parsed.get<std::string>()).second)
        fail("duplicate key ", display_name(parsed.get<std::string>()), " in the header JSON");
      return true;
    };
    try {
      return nlohmann::json::parse(text, callback);
    } catch (const nlohmann::json::exception& e) {
      std::string what = e.what();  // quotes the last token read, which a hostile header makes huge
      if (what.size() > 300) what = what.substr(0, 300) + "...";
      fail("the header is not valid JSON: ", what);
    }
  }

  static bool get_u64(const nlohmann::json& v, std::uint64_t& out) {
    if (!v.is_number_unsigned()) return false;
    out = v.get<std::uint64_t>();
    return true;
  }

  EntryInfo entry(const std::string& key, const nlohmann::json& value, std::uint64_t buffer_size) const {
    EntryInfo info;
    info.name = key;
    if (!value.is_object()) fail_key(key, "the entry is a JSON ", value.type_name(), ", not an object");
    const auto dt = value.find("dtype");
    if (dt == value.end()) fail_key(key, "missing field \"dtype\"");
    if (!dt->is_string()) fail_key(key, "\"dtype\" is a JSON ", dt->type_name(), ", not a string");
    info.dtype = find_dtype(dt->get_ref<const std::string&>());
    if (info.dtype == nullptr)
      fail_key(key, "unknown dtype ", display_name(dt->get_ref<const std::string&>()));

    const auto sh = value.find("shape");
    if (sh == value.end()) fail_key(key, "missing field \"shape\"");
    if (!sh->is_array()) fail_key(key, "\"shape\" is a JSON ", sh->type_name(), ", not an array");
    std::uint64_t numel = 1;
    for (std::size_t i = 0; i < sh->size(); ++i) {
      const nlohmann::json& d = (*sh)[i];
      std::uint64_t dim = 0;
      if (!get_u64(d, dim))
        fail_key(key, "shape dimension ", i, " is ", d.dump(), ", not a non-negative integer");
      if (dim > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()) ||
          (dim != 0 && numel > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()) / dim))
        fail_key(key, "the element count of shape ", sh->dump(), " overflows");
      numel *= dim;
      info.shape.push_back(static_cast<std::int64_t>(dim));
    }

    const auto off = value.find("data_offsets");
    if (off == value.end()) fail_key(key, "missing field \"data_offsets\"");
    if (!off->is_array() || off->size() != 2 || !get_u64((*off)[0], info.begin) ||
        !get_u64((*off)[1], info.end))
      fail_key(key, "\"data_offsets\" is ", off->dump(), ", not two non-negative integers [begin, end]");
    if (info.begin > info.end) fail_key(key, "data_offsets ", off->dump(), " end before they begin");
    if (info.end > buffer_size)
      fail_key(key, "data_offsets ", off->dump(), " reach outside the ", buffer_size, "-byte data buffer");

    const auto bits = static_cast<std::uint64_t>(info.dtype->bits);
    if (numel > std::numeric_limits<std::uint64_t>::max() / bits)
      fail_key(key, "the byte size of shape ", sh->dump(), " overflows");
    if ((numel * bits) % 8 != 0)
      fail_key(key, numel, " elements of ", info.dtype->name, " do not fill whole bytes");
    const std::uint64_t want = numel * bits / 8;
    if (info.end - info.begin != want)
      fail_key(key, "data_offsets ", off->dump(), " span ", info.end - info.begin, " bytes but ", numel,
               " elements of ", info.dtype->name, " take ", want, " bytes");
    return info;
  }

  SafeTensorsMetadata metadata(const nlohmann::json& value) const {
    if (!value.is_object())
      fail("\"__metadata__\" is a JSON ", value.type_name(), ", not an object of strings");
    SafeTensorsMetadata out;
    for (const auto& [k, v] : value.items()) {
      if (!v.is_string())
        fail("\"__metadata__\" value for key ", display_name(k), " is a JSON ", v.type_name(),
             ", not a string");
      out.emplace(k, v.get<std::string>());
    }
    return out;
  }

  // The buffer must be covered by the tensors exactly: no overlaps, no holes, nothing after the end.
  void check_coverage(std::vector<const EntryInfo*> order, std::uint64_t buffer_size) const {
    std::sort(order.begin(), order.end(), [](const EntryInfo* a, const EntryInfo* b) {
      return a->begin != b->begin ? a->begin < b->begin : a->end < b->end;
    });
    std::uint64_t pos = 0;
    const EntryInfo* prev = nullptr;
    for (const EntryInfo* e : order) {
      if (e->begin < pos)
        fail_key(e->name, "data [", e->begin, ", ", e->end, ") overlaps tensor ", display_name(prev->name),
                 " [", prev->begin, ", ", prev->end, ")");
      if (e->begin > pos)
        fail_key(e->name, "data starts at byte ", e->begin, " but the previous tensor ends at ", pos,
                 ": a hole of ", e->begin - pos,
                 " bytes (the format requires the buffer to be fully covered)");
      pos = e->end;
      prev = e;
    }
    if (pos != buffer_size)
      fail(buffer_size - pos, " trailing bytes after the last tensor's data (buffer of ", buffer_size,
           " bytes covered up to ", pos, ")");
  }

 private:
  std::string source_;
};

template <class Bytes>
SafeTensors read_safetensors_from(const Bytes& bytes, const std::string& source,
                                  const SafeTensorsReadOptions& options) {
  HeaderChecker check(source);
  const std::uint64_t size = bytes.size();
  if (size < 8) check.fail("the file is ", size, " bytes, shorter than the 8-byte header length");
  unsigned char len_bytes[8];
  bytes.read(0, 8, len_bytes);
  std::uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | len_bytes[i];
  if (header_len > kSafeTensorsMaxHeaderBytes)
    check.fail("header length ", header_len, " exceeds the limit of ", kSafeTensorsMaxHeaderBytes, " bytes");
  if (header_len > size - 8)
    check.fail("header length ", header_len, " is larger than the ", size - 8,
               " bytes after the length field");

  std::string text(static_cast<std::size_t>(header_len), '\0');
  bytes.read(8, text.size(), text.data());
  const nlohmann::json header = check.parse(text);
  if (!header.is_object()) check.fail("the header is a JSON ", header.type_name(), ", not an object");

  const std::uint64_t data_start = 8 + header_len;
  const std::uint64_t buffer_size = size - data_start;
  SafeTensors out;
  std::vector<EntryInfo> entries;
  for (const auto& [key, value] : header.items()) {
    if (key == "__metadata__") out.metadata = check.metadata(value);
    else entries.push_back(check.entry(key, value, buffer_size));
  }
  std::vector<const EntryInfo*> order;
  order.reserve(entries.size());
  for (const EntryInfo& e : entries) order.push_back(&e);
  check.check_coverage(std::move(order), buffer_size);

  std::vector<unsigned char> raw;
  for (const EntryInfo& e : entries) {
    std::string skip_reason;
    if (!e.dtype->convertible) {
      if (!options.skip_unsupported_dtypes)
        check.fail_key(e.name, "dtype ", e.dtype->name,
                       " is not a floating-point type fovea converts (F32, F16, BF16, F64); "
                       "set skip_unsupported_dtypes to skip such tensors");
      skip_reason = "dtype " + std::string(e.dtype->name) + " is not one of F32, F16, BF16, F64";
    } else if (e.shape.size() > static_cast<std::size_t>(kMaxRank)) {
      if (!options.skip_high_rank)
        check.fail_key(e.name, "rank ", e.shape.size(), " exceeds fovea's maximum rank ", kMaxRank,
                       "; set skip_high_rank to skip such tensors");
      skip_reason = "rank " + std::to_string(e.shape.size()) + " > " + std::to_string(kMaxRank);
    }
    if (!skip_reason.empty()) {
      out.skipped.push_back({e.name, std::string(e.dtype->name), e.shape, std::move(skip_reason)});
      continue;
    }

    StoredTensor t;
    t.dtype = std::string(e.dtype->name);
    t.shape = Shape::from_range(e.shape.begin(), e.shape.end());
    const auto n = static_cast<std::size_t>(t.shape.numel());
    raw.resize(static_cast<std::size_t>(e.end - e.begin));
    bytes.read(data_start + e.begin, raw.size(), raw.data());
    t.data.resize(n);
    const unsigned char* p = raw.data();
    if (e.dtype->name == "F32") {
      if (n > 0) std::memcpy(t.data.data(), p, n * sizeof(float));
    } else if (e.dtype->name == "F16" || e.dtype->name == "BF16") {
      const bool half = e.dtype->name == "F16";
      for (std::size_t i = 0; i < n; ++i) {
        const auto v = static_cast<std::uint16_t>(p[2 * i] | (p[2 * i + 1] << 8));
        t.data[i] = half ? f16_to_f32(v) : bf16_to_f32(v);
      }
    } else {
      for (std::size_t i = 0; i < n; ++i) {
        double d;
        std::memcpy(&d, p + 8 * i, sizeof d);
        if (!f64_to_f32(d, t.data[i]))
          check.fail_key(e.name, "F64 element ", i, " (", d, ") is finite but outside the fp32 range");
      }
    }
    out.tensors.emplace(e.name, std::move(t));
  }
  return out;
}

}  // namespace detail

// Reads a safetensors file, checking everything before trusting it (see docs/weights.md).
// requires: nothing of the file; sizes are taken from the file system, never from the header.
// ensures:  every tensor of dtype F32/F16/BF16/F64 and rank <= 4 is returned as fp32 (F32 bitwise;
//           F16/BF16 exactly, NaN payloads kept; F64 rounded to nearest). Tensors of other dtypes
//           or rank > 4 fail the read, or land in `skipped` when the options say so. Any defect
//           (truncation, bad header length/UTF-8/JSON/fields, unknown dtype, bad shape, offsets
//           outside the buffer or not matching the shape, overlaps, holes, trailing bytes,
//           duplicate keys, non-string metadata) throws fovea::Error naming the file and the key.
inline SafeTensors read_safetensors(const std::filesystem::path& path,
                                    const SafeTensorsReadOptions& options = {}) {
  const detail::FileBytes bytes(path);
  return detail::read_safetensors_from(bytes, path.string(), options);
}

// The same from bytes in memory; `source` names them in error messages.
inline SafeTensors parse_safetensors(std::span<const std::byte> bytes, const std::string& source = "<memory>",
                                     const SafeTensorsReadOptions& options = {}) {
  return detail::read_safetensors_from(detail::MemoryBytes(bytes), source, options);
}

// The bytes of a safetensors file holding `tensors` as F32 in name order, with the header laid out
// as the reference writer does: compact JSON, "__metadata__" first (omitted when empty), fields
// dtype/shape/data_offsets, padded with spaces to a multiple of 8 bytes.
// requires: host views; names and metadata valid UTF-8; no tensor named "__metadata__".
// ensures:  the same input gives the same bytes.
inline std::string serialize_safetensors(const std::map<std::string, CView>& tensors,
                                         const SafeTensorsMetadata& metadata = {}) {
  auto check_utf8 = [](const std::string& s, const char* what) {
    FOVEA_CHECK(detail::first_invalid_utf8(s) == std::string_view::npos, "safetensors: ", what, " ",
                detail::display_name(s), " is not valid UTF-8");
  };
  std::string header = "{";
  if (!metadata.empty()) {
    header += "\"__metadata__\":{";
    bool first = true;
    for (const auto& [k, v] : metadata) {
      check_utf8(k, "metadata key");
      check_utf8(v, "metadata value");
      if (!first) header += ',';
      first = false;
      detail::append_json_string(header, k);
      header += ':';
      detail::append_json_string(header, v);
    }
    header += '}';
  }
  std::uint64_t offset = 0;
  for (const auto& [name, view] : tensors) {
    FOVEA_CHECK(name != "__metadata__", "safetensors: a tensor cannot be named \"__metadata__\"");
    check_utf8(name, "tensor name");
    FOVEA_CHECK(view.device().is_cpu(), "safetensors: tensor ", detail::display_name(name), " is on ",
                view.device().str(), "; serialize host views (write_safetensors copies for you)");
    if (header.size() > 1) header += ',';
    detail::append_json_string(header, name);
    header += ":{\"dtype\":\"F32\",\"shape\":[";
    for (int i = 0; i < view.shape().rank(); ++i) {
      if (i) header += ',';
      header += std::to_string(view.shape()[i]);
    }
    header += "],\"data_offsets\":[" + std::to_string(offset) + ',';
    offset += view.bytes();
    header += std::to_string(offset) + "]}";
  }
  header += '}';
  header.append((8 - header.size() % 8) % 8, ' ');

  std::string out;
  out.reserve(8 + header.size() + static_cast<std::size_t>(offset));
  const std::uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) out += static_cast<char>((n >> (8 * i)) & 0xFF);
  out += header;
  for (const auto& [name, view] : tensors)
    if (view.bytes() > 0) out.append(reinterpret_cast<const char*>(view.data()), view.bytes());
  return out;
}

// Writes `tensors` (on any device; copied to the host first) as F32 to `path`, atomically: a failed
// write leaves an existing file untouched and throws fovea::Error naming `path` (see
// write_file_atomically).
inline void write_safetensors(const std::filesystem::path& path, const std::map<std::string, CView>& tensors,
                              const SafeTensorsMetadata& metadata = {}) {
  std::map<std::string, CView> host;
  std::vector<std::vector<float>> copies;
  copies.reserve(tensors.size());
  for (const auto& [name, view] : tensors) {
    if (view.device().is_cpu()) {
      host.emplace(name, view);
    } else {
      copies.emplace_back(static_cast<std::size_t>(view.numel()));
      copy(view, View(copies.back().data(), view.shape(), Device::cpu()));
      host.emplace(name, CView(copies.back().data(), view.shape(), Device::cpu()));
    }
  }
  write_file_atomically(path, serialize_safetensors(host, metadata));
}

// The same for tensors as read by read_safetensors (written as F32 whatever their `dtype` was).
inline void write_safetensors(const std::filesystem::path& path,
                              const std::map<std::string, StoredTensor>& tensors,
                              const SafeTensorsMetadata& metadata = {}) {
  std::map<std::string, CView> views;
  for (const auto& [name, t] : tensors) {
    FOVEA_CHECK(static_cast<std::int64_t>(t.data.size()) == t.shape.numel(), "safetensors: tensor ",
                detail::display_name(name), " has ", t.data.size(), " values for shape ", t.shape.str());
    views.emplace(name, CView(t.data.data(), t.shape, Device::cpu()));
  }
  write_file_atomically(path, serialize_safetensors(views, metadata));
}

// A tensor on `device` holding a stored tensor's values.
inline Tensor to_tensor(const StoredTensor& t, Device device = Device::cpu()) {
  return Tensor::from(t.data, t.shape, device);
}

}  // namespace fovea::io

#endif  // FOVEA_IO_HAVE_NLOHMANN_JSON
