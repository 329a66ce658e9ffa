// tests/test_safetensors.cpp: safetensors round trips, dtype conversion, reference-writer fixtures,
// hostile files (each built byte by byte here) and atomic writes.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <string>
#include <vector>

#include "fovea/fovea.hpp"
#include "fovea/io/safetensors.hpp"

namespace fovea::io {
namespace {

namespace fs = std::filesystem;

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

std::string le64(std::uint64_t v) {
  std::string s;
  for (int i = 0; i < 8; ++i) s += static_cast<char>((v >> (8 * i)) & 0xFF);
  return s;
}
template <class T>
std::string raw_bytes(const std::vector<T>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(T));
}
// A file: length field, header (padded with spaces to a multiple of 8), then data.
std::string st_file(const std::string& header, const std::string& data) {
  std::string h = header;
  h.append((8 - h.size() % 8) % 8, ' ');
  return le64(h.size()) + h + data;
}

class SafeTensorsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = fs::temp_directory_path() / ("fovea_st_" + std::to_string(::getpid()) + "_" + info->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override {
    std::error_code ec;
    fs::permissions(dir_, fs::perms::owner_all, fs::perm_options::add, ec);
    fs::remove_all(dir_, ec);
  }
  fs::path put(const std::string& name, const std::string& bytes) {
    fs::path p = dir_ / name;
    std::ofstream(p, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    return p;
  }
  static std::string slurp(const fs::path& p) {
    std::ifstream f(p, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(f), {});
  }
  // Expects read_safetensors(path) to throw fovea::Error whose message names the file and each part.
  static void expect_read_error(const fs::path& path, const std::vector<std::string>& parts,
                                const SafeTensorsReadOptions& options = {}) {
    try {
      read_safetensors(path, options);
      ADD_FAILURE() << "no error reading " << path;
    } catch (const Error& e) {
      const std::string msg = e.what();
      EXPECT_TRUE(contains(msg, path.string())) << msg;
      EXPECT_LT(msg.size(), 1000u) << "messages stay readable";
      for (const std::string& part : parts)
        EXPECT_TRUE(contains(msg, part)) << "missing '" << part << "' in: " << msg;
    }
  }
  std::size_t entries_in_dir() const {
    return static_cast<std::size_t>(std::distance(fs::directory_iterator(dir_), fs::directory_iterator()));
  }
  fs::path dir_;
};

std::vector<float> special_values() {
  return {1.5f,
          -0.0f,
          0.0f,
          std::numeric_limits<float>::denorm_min(),
          -std::numeric_limits<float>::max(),
          std::numeric_limits<float>::infinity(),
          std::bit_cast<float>(0x7FC01234u),
          std::bit_cast<float>(0xFF800001u),
          3.14159f};
}

TEST_F(SafeTensorsTest, RoundTripIsBitwiseAndDeterministic) {
  std::vector<float> big(std::size_t{3} * 67 * 7 * 5);
  for (std::size_t i = 0; i < big.size(); ++i) big[i] = std::sin(0.37f * static_cast<float>(i)) * 1e3f;
  const std::vector<float> specials = special_values();
  const std::vector<float> scalar = {-7.25f};
  const std::vector<float> vec = {0.5f, 2.0f, -3.0f};
  const std::vector<float> empty;
  std::map<std::string, CView> tensors = {
      {"layer1.0.conv1.weight", CView(big.data(), Shape{3, 67, 7, 5}, Device::cpu())},
      {"specials", CView(specials.data(), Shape{3, 3}, Device::cpu())},
      {"scalar", CView(scalar.data(), Shape{}, Device::cpu())},
      {"fc.bias", CView(vec.data(), Shape{3}, Device::cpu())},
      {"empty", CView(empty.data(), Shape{0, 3}, Device::cpu())},
      {"ünïcode \"quoted\"\n", CView(vec.data(), Shape{1, 3}, Device::cpu())},
  };
  const SafeTensorsMetadata meta = {{"format", "pt"}, {"note", "tab\there \"q\" \\ é\x01"}};
  const fs::path a = dir_ / "a.safetensors", b = dir_ / "b.safetensors";
  write_safetensors(a, tensors, meta);
  write_safetensors(b, tensors, meta);
  const std::string bytes = slurp(a);
  EXPECT_EQ(bytes, slurp(b));
  EXPECT_EQ(bytes, serialize_safetensors(tensors, meta));
  EXPECT_EQ(entries_in_dir(), 2u);  // no temp files left

  std::uint64_t n = 0;
  std::memcpy(&n, bytes.data(), 8);
  EXPECT_EQ(n % 8, 0u);
  EXPECT_EQ(bytes[8], '{');
  EXPECT_TRUE(contains(bytes.substr(0, 8 + n), "{\"__metadata__\":{\"format\":\"pt\",\"note\":"));

  const SafeTensors got = read_safetensors(a);
  EXPECT_EQ(got.metadata, meta);
  EXPECT_TRUE(got.skipped.empty());
  ASSERT_EQ(got.tensors.size(), tensors.size());
  for (const auto& [name, view] : tensors) {
    SCOPED_TRACE(name);
    const StoredTensor& t = got.tensors.at(name);
    EXPECT_EQ(t.dtype, "F32");
    EXPECT_EQ(t.shape, view.shape());
    ASSERT_EQ(t.data.size(), static_cast<std::size_t>(view.numel()));
    if (view.bytes() > 0) {
      EXPECT_EQ(std::memcmp(t.data.data(), view.data(), view.bytes()), 0);
    }
  }
  // Writing what was read gives the same file again.
  const fs::path c = dir_ / "c.safetensors";
  write_safetensors(c, got.tensors, got.metadata);
  EXPECT_EQ(slurp(c), bytes);
  // And to_tensor makes a fovea tensor of it.
  const Tensor w = to_tensor(got.tensors.at("fc.bias"));
  EXPECT_EQ(w.shape(), (Shape{3}));
  EXPECT_EQ(w.to_vector(), vec);
}

TEST_F(SafeTensorsTest, HeaderLayoutMatchesTheReferenceWriter) {
  const std::vector<float> b = {1.0f, 2.0f}, a = {3.0f};
  const std::string bytes = serialize_safetensors(
      {{"b", CView(b.data(), Shape{1, 2}, Device::cpu())}, {"a", CView(a.data(), Shape{}, Device::cpu())}});
  const std::string header =
      "{\"a\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,4]},"
      "\"b\":{\"dtype\":\"F32\",\"shape\":[1,2],\"data_offsets\":[4,12]}}";
  EXPECT_EQ(bytes, st_file(header, raw_bytes(a) + raw_bytes(b)));
  EXPECT_EQ(serialize_safetensors({}), le64(8) + "{}      ");
}

// Written by hand as Python's safetensors.torch.save_file({"a": torch.tensor([1.5, -2.0])},
// metadata={"format": "pt"}) lays it out: 85-byte compact header + 3 spaces = 0x58.
TEST_F(SafeTensorsTest, ReadsAReferenceWriterFile) {
  const std::string header =
      "{\"__metadata__\":{\"format\":\"pt\"},\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}} "
      "  ";
  const std::string bytes =
      std::string("\x58\0\0\0\0\0\0\0", 8) + header + std::string("\x00\x00\xc0\x3f\x00\x00\x00\xc0", 8);
  ASSERT_EQ(bytes.size(), 8u + 88u + 8u);
  const SafeTensors got = read_safetensors(put("ref.safetensors", bytes));
  EXPECT_EQ(got.metadata, (SafeTensorsMetadata{{"format", "pt"}}));
  ASSERT_EQ(got.tensors.count("a"), 1u);
  EXPECT_EQ(got.tensors.at("a").shape, (Shape{2}));
  EXPECT_EQ(got.tensors.at("a").data, (std::vector<float>{1.5f, -2.0f}));
  // fovea writes the same bytes for the same tensor.
  const std::vector<float> v = {1.5f, -2.0f};
  EXPECT_EQ(serialize_safetensors({{"a", CView(v.data(), Shape{2}, Device::cpu())}}, {{"format", "pt"}}),
            bytes);
}

// A torchvision-like BN state: the reference writer orders data by dtype size (I64 first), so JSON
// order differs from name order; num_batches_tracked is I64.
TEST_F(SafeTensorsTest, SkipsNonFloatTensorsOnlyWhenAsked) {
  const std::string header =
      "{\"__metadata__\":{\"format\":\"pt\"},"
      "\"bn1.num_batches_tracked\":{\"dtype\":\"I64\",\"shape\":[],\"data_offsets\":[0,8]},"
      "\"bn1.running_mean\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]},"
      "\"bn1.weight\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[16,20]}}";
  const std::string data = raw_bytes(std::vector<std::int64_t>{7}) +
                           raw_bytes(std::vector<float>{0.25f, -1.0f}) +
                           raw_bytes(std::vector<std::uint16_t>{0x3C00, 0xB800});
  const fs::path p = put("bn.safetensors", st_file(header, data));
  expect_read_error(p, {"\"bn1.num_batches_tracked\"", "I64", "skip_unsupported_dtypes"});

  SafeTensorsReadOptions opt;
  opt.skip_unsupported_dtypes = true;
  const SafeTensors got = read_safetensors(p, opt);
  ASSERT_EQ(got.skipped.size(), 1u);
  EXPECT_EQ(got.skipped[0].name, "bn1.num_batches_tracked");
  EXPECT_EQ(got.skipped[0].dtype, "I64");
  EXPECT_TRUE(got.skipped[0].shape.empty());
  EXPECT_TRUE(contains(got.skipped[0].reason, "I64"));
  ASSERT_EQ(got.tensors.size(), 2u);
  EXPECT_EQ(got.tensors.at("bn1.running_mean").data, (std::vector<float>{0.25f, -1.0f}));
  EXPECT_EQ(got.tensors.at("bn1.weight").dtype, "F16");
  EXPECT_EQ(got.tensors.at("bn1.weight").data, (std::vector<float>{1.0f, -0.5f}));
}

TEST_F(SafeTensorsTest, RankAboveFourFailsOrIsSkipped) {
  const std::string header =
      "{\"x\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,2],\"data_offsets\":[0,8]},"
      "\"y\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[8,12]}}";
  const fs::path p = put("r5.safetensors", st_file(header, raw_bytes(std::vector<float>{1, 2, 3})));
  expect_read_error(p, {"\"x\"", "rank 5", "skip_high_rank"});
  SafeTensorsReadOptions opt;
  opt.skip_high_rank = true;
  const SafeTensors got = read_safetensors(p, opt);
  ASSERT_EQ(got.skipped.size(), 1u);
  EXPECT_EQ(got.skipped[0].shape, (std::vector<std::int64_t>{1, 1, 1, 1, 2}));
  EXPECT_EQ(got.tensors.at("y").shape, Shape{});
  EXPECT_EQ(got.tensors.at("y").data, std::vector<float>{3.0f});
}

// One-tensor file of `dtype` holding `data`, read back as fp32.
std::vector<float> read_one(const std::string& dtype, const std::string& data, std::size_t n) {
  const std::string header = "{\"t\":{\"dtype\":\"" + dtype + "\",\"shape\":[" + std::to_string(n) +
                             "],\"data_offsets\":[0," + std::to_string(data.size()) + "]}}";
  const std::string bytes = st_file(header, data);
  return parse_safetensors(std::as_bytes(std::span(bytes.data(), bytes.size())), "mem").tensors.at("t").data;
}
std::uint32_t bits(float f) { return std::bit_cast<std::uint32_t>(f); }

TEST(SafeTensorsConversion, F16) {
  const std::vector<std::uint16_t> in = {0x3C00, 0xC000, 0x7BFF, 0x3555, 0x0001, 0x03FF, 0x0400,
                                         0x8000, 0x7C00, 0xFC00, 0x7E00, 0x7C01, 0xFE01};
  const std::vector<std::uint32_t> want = {
      bits(1.0f),     bits(-2.0f),           bits(65504.0f), bits(0.333251953125f),
      bits(0x1p-24f), bits(1023 * 0x1p-24f), bits(0x1p-14f), 0x80000000u,
      0x7F800000u,    0xFF800000u,           0x7FC00000u,    0x7F802000u,
      0xFFC02000u};
  const std::vector<float> got = read_one("F16", raw_bytes(in), in.size());
  ASSERT_EQ(got.size(), want.size());
  for (std::size_t i = 0; i < want.size(); ++i)
    EXPECT_EQ(bits(got[i]), want[i]) << "f16 0x" << std::hex << in[i];
}

TEST(SafeTensorsConversion, BF16) {
  const std::vector<std::uint16_t> in = {0x3F80, 0xC049, 0x0001, 0x807F, 0x7F7F,
                                         0x8000, 0x7F80, 0xFF80, 0x7FC0, 0x7F81};
  const std::vector<std::uint32_t> want = {
      bits(1.0f),        bits(-3.140625f), bits(0x1p-133f), bits(-127 * 0x1p-133f),
      bits(0x1.fep127f), 0x80000000u,      0x7F800000u,     0xFF800000u,
      0x7FC00000u,       0x7F810000u};
  const std::vector<float> got = read_one("BF16", raw_bytes(in), in.size());
  ASSERT_EQ(got.size(), want.size());
  for (std::size_t i = 0; i < want.size(); ++i)
    EXPECT_EQ(bits(got[i]), want[i]) << "bf16 0x" << std::hex << in[i];
}

TEST(SafeTensorsConversion, F64) {
  const double inf = std::numeric_limits<double>::infinity();
  const std::vector<double> in = {1.0,
                                  -2.5,
                                  0.1,
                                  1e-50,
                                  -1e-50,
                                  0x1p-140,
                                  1.0 + 0x1p-24,
                                  1.0 + 3 * 0x1p-24,
                                  3.4028234663852886e38,
                                  0x1.fffffe8p+127,
                                  -0x1.fffffe8p+127,
                                  inf,
                                  -inf,
                                  std::numeric_limits<double>::quiet_NaN()};
  const float fmax = std::numeric_limits<float>::max();
  const std::vector<std::uint32_t> want = {bits(1.0f),  bits(-2.5f),     bits(0.1f),  0u,
                                           0x80000000u, bits(0x1p-140f), bits(1.0f),  bits(1.0f + 0x1p-22f),
                                           bits(fmax),  bits(fmax),      bits(-fmax), 0x7F800000u,
                                           0xFF800000u};
  const std::vector<float> got = read_one("F64", raw_bytes(in), in.size());
  ASSERT_EQ(got.size(), in.size());
  for (std::size_t i = 0; i < want.size(); ++i) EXPECT_EQ(bits(got[i]), want[i]) << "f64 " << in[i];
  EXPECT_TRUE(std::isnan(got.back()));
  // A finite value that rounds past the fp32 range is an error, not a silent inf.
  EXPECT_THROW(read_one("F64", raw_bytes(std::vector<double>{0.0, 0x1.ffffffp+127}), 2), Error);
  try {
    read_one("F64", raw_bytes(std::vector<double>{1e39}), 1);
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_TRUE(contains(e.what(), "\"t\"")) << e.what();
    EXPECT_TRUE(contains(e.what(), "outside the fp32 range")) << e.what();
  }
}

struct Hostile {
  const char* name;
  std::string bytes;
  std::vector<std::string> parts;  // each must appear in the message
};

std::string one(const std::string& entry) { return "{\"w\":" + entry + "}"; }

std::vector<Hostile> hostile_cases() {
  const std::string d8(8, '\x11'), d12(12, '\x22');
  const std::string ok_entry = "{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}";
  std::string deep = "{\"w\":";
  for (int i = 0; i < 12; ++i) deep += '[';
  for (int i = 0; i < 12; ++i) deep += ']';
  deep += '}';
  return {
      {"empty", "", {"0 bytes", "shorter than the 8-byte"}},
      {"seven_bytes", std::string(7, '\0'), {"7 bytes", "shorter"}},
      {"header_past_end", le64(100) + "{}", {"header length 100", "larger than the 2 bytes"}},
      {"header_absurd", le64(std::uint64_t{1} << 63) + "{}", {"exceeds the limit"}},
      {"header_over_limit", le64(100'000'001) + "{}", {"header length 100000001", "exceeds the limit"}},
      {"zero_header", le64(0) + d8, {"not a JSON object"}},
      {"bad_utf8", st_file("{\"w\xff\":" + ok_entry + "}", d8), {"not valid UTF-8", "byte 3"}},
      {"overlong_utf8", st_file("{\"\xc0\x80\":{}}", ""), {"not valid UTF-8"}},
      {"surrogate_utf8", st_file("{\"\xed\xa0\x80\":{}}", ""), {"not valid UTF-8"}},
      {"truncated_utf8", st_file("{\"\xe2\x82", ""), {"not valid UTF-8"}},
      {"not_json", st_file("{\"w\":", ""), {"not valid JSON"}},
      {"huge_bad_token", st_file("{\"w\":" + std::string(100000, 't') + "}", ""), {"not valid JSON"}},
      {"trailing_garbage", st_file("{}x", ""), {"not valid JSON"}},
      {"array", st_file("[1,2]", ""), {"not a JSON object"}},
      {"leading_space", st_file(" {}", ""), {"not a JSON object"}},
      {"nul_padding", le64(8) + std::string("{}\0\0\0\0\0\0", 8), {"NUL byte", "byte 2"}},
      {"nul_then_json", st_file(std::string("{}\0{\"w\":[]}", 11), ""), {"NUL byte"}},
      {"entry_not_object", st_file(one("[1]"), ""), {"\"w\"", "array, not an object"}},
      {"missing_dtype",
       st_file(one("{\"shape\":[2],\"data_offsets\":[0,8]}"), d8),
       {"\"w\"", "missing field \"dtype\""}},
      {"missing_shape",
       st_file(one("{\"dtype\":\"F32\",\"data_offsets\":[0,8]}"), d8),
       {"\"w\"", "missing field \"shape\""}},
      {"missing_offsets",
       st_file(one("{\"dtype\":\"F32\",\"shape\":[2]}"), d8),
       {"\"w\"", "missing field \"data_offsets\""}},
      {"dtype_number",
       st_file(one("{\"dtype\":5,\"shape\":[2],\"data_offsets\":[0,8]}"), d8),
       {"\"w\"", "\"dtype\" is a JSON number"}},
      {"unknown_dtype",
       st_file(one("{\"dtype\":\"F17\",\"shape\":[2],\"data_offsets\":[0,8]}"), d8),
       {"\"w\"", "unknown dtype \"F17\""}},
      {"lowercase_dtype",
       st_file(one("{\"dtype\":\"f32\",\"shape\":[2],\"data_offsets\":[0,8]}"), d8),
       {"\"w\"", "unknown dtype"}},
      {"shape_not_array",
       st_file(one("{\"dtype\":\"F32\",\"shape\":2,\"data_offsets\":[0,8]}"), d8),
       {"\"w\"", "\"shape\" is a JSON number"}},
      {"shape_negative",
       st_file(one("{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}"), d8),
       {"\"w\"", "dimension 0 is -2"}},
      {"shape_fraction",
       st_file(one("{\"dtype\":\"F32\",\"shape\":[1,2.0],\"data_offsets\":[0,8]}"), d8),
       {"\"w\"", "dimension 1 is 2.0"}},
      {"shape_string",
       st_file(one("{\"dtype\":\"F32\",\"shape\":[\"2\"],\"data_offsets\":[0,8]}"), d8),
       {"\"w\"", "not a non-negative integer"}},
      {"shape_too_big_integer",
       st_file(one("{\"dtype\":\"F32\",\"shape\":[99999999999999999999],\"data_offsets\":[0,8]}"), d8),
       {"\"w\"", "not a non-negative integer"}},
      {"shape_dim_over_int64",
       st_file(one("{\"dtype\":\"F32\",\"shape\":[9223372036854775808],\"data_offsets\":[0,8]}"), d8),
       {"\"w\"", "overflows"}},
      {"shape_product_overflow",
       st_file(one("{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,0],\"data_offsets\":[0,0]}"), ""),
       {"\"w\"", "element count", "overflows"}},
      {"byte_size_overflow",
       st_file(one("{\"dtype\":\"F64\",\"shape\":[4611686018427387904],\"data_offsets\":[0,8]}"), d8),
       {"\"w\"", "byte size", "overflows"}},
      {"offsets_not_array",
       st_file(one("{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":8}"), d8),
       {"\"w\"", "not two non-negative integers"}},
      {"offsets_three",
       st_file(one("{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8,8]}"), d8),
       {"\"w\"", "not two"}},
      {"offsets_negative",
       st_file(one("{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[-8,0]}"), d8),
       {"\"w\"", "not two"}},
      {"offsets_float",
       st_file(one("{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8.0]}"), d8),
       {"\"w\"", "not two"}},
      {"offsets_reversed",
       st_file(one("{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,0]}"), d8),
       {"\"w\"", "end before they begin"}},
      {"offsets_outside",
       st_file(one("{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}"), d8),
       {"\"w\"", "outside the 8-byte data buffer"}},
      {"offsets_huge",
       st_file(one("{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[18446744073709551608,"
                   "18446744073709551615]}"),
               d8),
       {"\"w\"", "outside"}},
      {"size_mismatch",
       st_file(one("{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}"), d8),
       {"\"w\"", "span 8 bytes", "take 12 bytes"}},
      {"sub_byte_partial",
       st_file(one("{\"dtype\":\"F4\",\"shape\":[3],\"data_offsets\":[0,2]}"), "ab"),
       {"\"w\"", "whole bytes"}},
      {"overlap",
       st_file("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"b\":{\"dtype\":\"F32\","
               "\"shape\":[2],\"data_offsets\":[4,12]}}",
               d12),
       {"\"b\"", "overlaps tensor \"a\""}},
      {"same_range",
       st_file("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"b\":{\"dtype\":\"F32\","
               "\"shape\":[2],\"data_offsets\":[0,8]}}",
               d8),
       {"overlaps tensor"}},
      {"hole",
       st_file("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},\"b\":{\"dtype\":\"F32\","
               "\"shape\":[1],\"data_offsets\":[8,12]}}",
               d12),
       {"\"b\"", "hole of 4 bytes"}},
      {"leading_hole",
       st_file(one("{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}"), d8),
       {"\"w\"", "hole of 4 bytes"}},
      {"trailing_bytes",
       st_file(one("{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}"), d8),
       {"4 trailing bytes"}},
      {"data_without_tensors", st_file("{}", d8), {"8 trailing bytes"}},
      {"duplicate_key",
       st_file("{\"w\":" + ok_entry + ",\"w\":" + ok_entry + "}", d8),
       {"duplicate key \"w\""}},
      {"duplicate_field",
       st_file(one("{\"dtype\":\"F32\",\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[0,8]}"), d8),
       {"duplicate key \"dtype\""}},
      {"duplicate_metadata",
       st_file("{\"__metadata__\":{\"k\":\"a\",\"k\":\"b\"}}", ""),
       {"duplicate key \"k\""}},
      {"metadata_not_object",
       st_file("{\"__metadata__\":[\"a\"]}", ""),
       {"\"__metadata__\" is a JSON array"}},
      {"metadata_number", st_file("{\"__metadata__\":{\"epoch\":3}}", ""), {"\"epoch\"", "not a string"}},
      {"metadata_null", st_file("{\"__metadata__\":null}", ""), {"\"__metadata__\" is a JSON null"}},
      {"deep_nesting", st_file(deep, ""), {"deeper than"}},
      {"long_key",
       st_file("{\"" + std::string(5000, 'k') + "\":[]}", ""),
       {"\"kkkk", "...", "not an object"}},
  };
}

TEST_F(SafeTensorsTest, HostileFilesAreRejectedWithNamedErrors) {
  for (const Hostile& h : hostile_cases()) {
    SCOPED_TRACE(h.name);
    expect_read_error(put(std::string(h.name) + ".safetensors", h.bytes), h.parts);
    // Skipping options never relax validation.
    SafeTensorsReadOptions lax;
    lax.skip_unsupported_dtypes = lax.skip_high_rank = true;
    EXPECT_THROW(parse_safetensors(std::as_bytes(std::span(h.bytes.data(), h.bytes.size())), "m", lax),
                 Error);
  }
}

TEST_F(SafeTensorsTest, MissingFilesAndDirectoriesAreNamed) {
  expect_read_error(dir_ / "absent.safetensors", {"cannot open"});
  expect_read_error(dir_, {"not a regular file"});
}

// Every truncation and many single-byte corruptions of a valid file either parse or throw
// fovea::Error: never another exception, never an out-of-bounds read (run under the asan preset).
TEST(SafeTensorsFuzz, TruncationsAndCorruptionsThrowOnlyFoveaErrors) {
  const std::vector<float> a = {1, 2, 3, 4, 5, 6}, b = {7};
  const std::string good = serialize_safetensors(
      {{"a", CView(a.data(), Shape{2, 3}, Device::cpu())}, {"b", CView(b.data(), Shape{}, Device::cpu())}},
      {{"format", "pt"}});
  auto attempt = [](const std::string& bytes) {
    try {
      parse_safetensors(std::as_bytes(std::span(bytes.data(), bytes.size())), "fuzz");
      return true;
    } catch (const Error&) {
      return false;
    }
  };
  ASSERT_TRUE(attempt(good));
  for (std::size_t n = 0; n < good.size(); ++n)
    EXPECT_FALSE(attempt(good.substr(0, n))) << "truncated to " << n;
  const char kBytes[] = {'\0', ' ', '"', '[', ']', '{',  '}',    ',',
                         ':',  '-', '9', '.', 'e', '\\', '\x80', '\xff'};
  for (std::size_t i = 0; i < good.size() - a.size() * 4 - b.size() * 4; ++i)
    for (const char c : kBytes) {
      std::string bad = good;
      bad[i] = c;
      attempt(bad);
    }
}

TEST_F(SafeTensorsTest, WriterRejectsWhatCannotBeRead) {
  const std::vector<float> v = {1};
  const fs::path p = dir_ / "w.safetensors";
  EXPECT_THROW(write_safetensors(p, {{"__metadata__", CView(v.data(), Shape{1}, Device::cpu())}}), Error);
  EXPECT_THROW(write_safetensors(p, {{"bad\xff", CView(v.data(), Shape{1}, Device::cpu())}}), Error);
  EXPECT_THROW(write_safetensors(p, {{"ok", CView(v.data(), Shape{1}, Device::cpu())}}, {{"k", "\xc0\x80"}}),
               Error);
  StoredTensor t;
  t.shape = Shape{2};
  t.data = {1.0f};
  EXPECT_THROW(write_safetensors(p, {{"t", t}}), Error);
  EXPECT_FALSE(fs::exists(p));
}

TEST_F(SafeTensorsTest, AtomicWriteReplacesOrLeavesTheOldFile) {
  const fs::path p = dir_ / "f.bin";
  write_file_atomically(p, std::string_view("old contents"));
  EXPECT_EQ(slurp(p), "old contents");
  write_file_atomically(p, std::string_view("new"));
  EXPECT_EQ(slurp(p), "new");
  EXPECT_EQ(entries_in_dir(), 1u);

  const fs::path missing = dir_ / "no_such_dir" / "f.bin";
  try {
    write_file_atomically(missing, std::string_view("x"));
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_TRUE(contains(e.what(), missing.string())) << e.what();
  }
  // Renaming over a directory fails: the directory and its contents stay, no temp file is left.
  const fs::path sub = dir_ / "sub";
  fs::create_directory(sub);
  write_file_atomically(sub / "keep", std::string_view("k"));
  EXPECT_THROW(write_file_atomically(sub, std::string_view("x")), Error);
  EXPECT_EQ(slurp(sub / "keep"), "k");
  EXPECT_EQ(entries_in_dir(), 2u);
}

// A write that runs out of space (simulated with RLIMIT_FSIZE, which works as root too) throws
// naming the file and leaves the old file intact.
TEST_F(SafeTensorsTest, AtomicWriteFailingMidwayKeepsTheOldFile) {
  const fs::path p = dir_ / "weights.safetensors";
  const std::vector<float> small = {1, 2, 3};
  write_safetensors(p, {{"w", CView(small.data(), Shape{3}, Device::cpu())}});
  const std::string before = slurp(p);

  std::vector<float> big(1 << 16, 0.5f);
  rlimit old{};
  ASSERT_EQ(::getrlimit(RLIMIT_FSIZE, &old), 0);
  rlimit lim = old;
  lim.rlim_cur = 4096;
  auto* old_handler = ::signal(SIGXFSZ, SIG_IGN);
  ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &lim), 0);
  std::string msg;
  try {
    write_safetensors(p, {{"w", CView(big.data(), Shape{1 << 16}, Device::cpu())}});
  } catch (const Error& e) {
    msg = e.what();
  }
  ::setrlimit(RLIMIT_FSIZE, &old);
  ::signal(SIGXFSZ, old_handler);
  EXPECT_TRUE(contains(msg, p.string())) << msg;
  EXPECT_TRUE(contains(msg, "write failed")) << msg;
  EXPECT_EQ(slurp(p), before);
  EXPECT_EQ(entries_in_dir(), 1u);
  EXPECT_EQ(read_safetensors(p).tensors.at("w").data, small);
}

TEST_F(SafeTensorsTest, AtomicWriteToReadOnlyDirectoryKeepsTheOldFile) {
  if (::geteuid() == 0) GTEST_SKIP() << "running as root: directory permissions are not enforced";
  const fs::path p = dir_ / "f.bin";
  write_file_atomically(p, std::string_view("old"));
  fs::permissions(dir_, fs::perms::owner_read | fs::perms::owner_exec);
  try {
    write_file_atomically(p, std::string_view("new"));
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_TRUE(contains(e.what(), p.string())) << e.what();
  }
  EXPECT_EQ(slurp(p), "old");
}

}  // namespace
}  // namespace fovea::io
