// tests/test_image.cpp: image decoding and PNG writing (stb), PIL-style antialiased bilinear resize,
// torchvision's centre crop and Resize rounding, normalisation, and decoding real fundus photos.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "fovea/data/image.hpp"
#include "test_support.hpp"

namespace fovea::data {
namespace {

namespace fs = std::filesystem;

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

using ::fovea::testing::fundus_dir;
using TempDir = ::fovea::testing::TempDir;

#define SKIP_WITHOUT_STB() \
  if (!kHaveImageIo) GTEST_SKIP() << "built without stb (libstb-dev): load_image and write_png are off"

Tensor image_from(const std::vector<float>& v, std::int64_t c, std::int64_t h, std::int64_t w) {
  return Tensor::from(v, Shape{c, h, w});
}

TEST(Image, PngRoundTripIsExactForEightBitValues) {
  SKIP_WITHOUT_STB();
  TempDir dir;
  const std::int64_t h = 7, w = 33;
  std::vector<float> v(static_cast<std::size_t>(3 * h * w));
  for (std::size_t i = 0; i < v.size(); ++i) v[i] = static_cast<float>((i * 37 + 11) % 256) / 255.0f;
  const Tensor image = image_from(v, 3, h, w);
  write_png(dir.path() / "a.png", image);
  const Tensor back = load_image(dir.path() / "a.png");
  ASSERT_EQ(back.shape(), (Shape{3, h, w}));
  EXPECT_EQ(back.to_vector(), v);
}

TEST(Image, GrayscalePngIsReplicatedIntoThreeChannels) {
  SKIP_WITHOUT_STB();
  TempDir dir;
  const Tensor gray = image_from({0.0f, 10 / 255.0f, 200 / 255.0f, 1.0f, 0.5f, 7 / 255.0f}, 1, 2, 3);
  write_png(dir.path() / "g.png", gray);
  const auto back = load_image(dir.path() / "g.png").to_vector();
  ASSERT_EQ(back.size(), 18u);
  for (std::size_t c = 0; c < 3; ++c)
    for (std::size_t p = 0; p < 6; ++p)
      EXPECT_EQ(back[c * 6 + p], back[p]) << "channel " << c << " pixel " << p;
  EXPECT_EQ(back[2], 200 / 255.0f);
  EXPECT_EQ(back[4], 128 / 255.0f);  // 0.5 -> round(127.5) = 128
}

TEST(Image, MissingTruncatedAndNonImageFilesNameTheFile) {
  SKIP_WITHOUT_STB();
  TempDir dir;
  const Tensor image = image_from(std::vector<float>(3 * 16 * 16, 0.25f), 3, 16, 16);
  write_png(dir.path() / "whole.png", image);
  std::string bytes;
  {
    std::ifstream in(dir.path() / "whole.png", std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(in), {});
  }
  ASSERT_GT(bytes.size(), 40u);
  {
    std::ofstream out(dir.path() / "truncated.png", std::ios::binary);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size() / 2));
  }
  {
    std::ofstream out(dir.path() / "notes.txt", std::ios::binary);
    out << "these are not pixels\n";
  }
  { std::ofstream out(dir.path() / "empty.png", std::ios::binary); }

  auto message_of = [](const fs::path& p) -> std::string {
    try {
      load_image(p);
    } catch (const Error& e) {
      return e.what();
    }
    return "no error";
  };
  const std::string missing = message_of(dir.path() / "absent.png");
  EXPECT_TRUE(contains(missing, "absent.png") && contains(missing, "No such file")) << missing;
  const std::string truncated = message_of(dir.path() / "truncated.png");
  EXPECT_TRUE(contains(truncated, "truncated.png") && contains(truncated, "cannot decode")) << truncated;
  const std::string text = message_of(dir.path() / "notes.txt");
  EXPECT_TRUE(contains(text, "notes.txt") && contains(text, "unknown image type")) << text;
  const std::string empty = message_of(dir.path() / "empty.png");
  EXPECT_TRUE(contains(empty, "empty.png") && contains(empty, "empty")) << empty;
  const std::string directory = message_of(dir.path());
  EXPECT_TRUE(contains(directory, "directory")) << directory;
}

std::vector<unsigned char> file_bytes(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

std::string decode_error(const std::vector<unsigned char>& bytes, const std::string& source = "mem.img") {
  try {
    decode_image(bytes, source);
  } catch (const Error& e) {
    return e.what();
  }
  return "no error";
}

// Sets an environment variable for one scope, restoring the previous value (or its absence).
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old, had_ = true;
    ::setenv(name, value, 1);
  }
  ~ScopedEnv() { had_ ? (void)::setenv(name_, old_.c_str(), 1) : (void)::unsetenv(name_); }

 private:
  const char* name_;
  std::string old_;
  bool had_ = false;
};

void put_le(std::vector<unsigned char>& b, std::uint64_t v, int n) {
  for (int i = 0; i < n; ++i) b.push_back(static_cast<unsigned char>(v >> (8 * i)));
}
void put_be(std::vector<unsigned char>& b, std::uint64_t v, int n) {
  for (int i = n - 1; i >= 0; --i) b.push_back(static_cast<unsigned char>(v >> (8 * i)));
}

TEST(Image, DecodeImageFromMemoryEqualsLoadImage) {
  SKIP_WITHOUT_STB();
  TempDir dir;
  std::vector<float> v(3 * 5 * 7);
  for (std::size_t i = 0; i < v.size(); ++i) v[i] = static_cast<float>((i * 37) % 256) / 255.0f;
  write_png(dir.path() / "a.png", image_from(v, 3, 5, 7));
  const Tensor from_file = load_image(dir.path() / "a.png");
  const Tensor from_memory = decode_image(file_bytes(dir.path() / "a.png"), "a.png");
  ASSERT_EQ(from_memory.shape(), from_file.shape());
  for (std::int64_t i = 0; i < from_file.numel(); ++i)
    ASSERT_EQ(from_memory.data()[i], from_file.data()[i]) << i;
  EXPECT_TRUE(contains(decode_error({}, "nothing.png"), "nothing.png")) << decode_error({}, "nothing.png");
}

// stb 2.27 overruns its tables on a JPEG Huffman table of more than 256 codes; fovea rejects the
// file first (tests/fuzz/regressions/image holds the fuzzer's inputs that found it).
TEST(Image, JpegHuffmanTablesOfMoreThan256CodesAreRejectedBeforeDecoding) {
  SKIP_WITHOUT_STB();
  auto jpeg_with_dht = [](int fill, int segment_length, std::vector<unsigned char> counts) {
    std::vector<unsigned char> b(static_cast<std::size_t>(fill), 0xFF);
    b.insert(b.end(), {0xFF, 0xD8, 0xFF, 0xC4});
    put_be(b, static_cast<std::uint64_t>(segment_length), 2);
    b.push_back(0x10);  // AC table 0
    b.insert(b.end(), counts.begin(), counts.end());
    b.resize(b.size() + 300, 0x01);  // the symbols
    return b;
  };
  std::vector<unsigned char> over(16, 0);
  over[15] = 200, over[14] = 100;  // 300 codes
  for (const int fill : {0, 5}) {
    const std::string m = decode_error(jpeg_with_dht(fill, 2 + 17 + 300, over), "dht.jpg");
    EXPECT_TRUE(contains(m, "dht.jpg") && contains(m, "Huffman table") && contains(m, "300 codes")) << m;
  }
  // The table's header runs past a too-short segment, as stb reads it anyway.
  const std::string past = decode_error(jpeg_with_dht(0, 3, over), "short.jpg");
  EXPECT_TRUE(contains(past, "Huffman table") && contains(past, "300 codes")) << past;
  // 256 codes is legal as far as this check goes (stb then rejects the file for other reasons).
  std::vector<unsigned char> full(16, 0);
  full[15] = 200, full[14] = 56;
  const std::string ok = decode_error(jpeg_with_dht(0, 2 + 17 + 256, full), "full.jpg");
  EXPECT_FALSE(contains(ok, "Huffman table")) << ok;
}

// A scan decoding with a Huffman table no DHT segment defined made stb 2.27 decode with uninitialised
// memory (a crash under the fuzzer); the table references are checked first. A progressive DC
// refinement scan reads no table, so an undefined one is allowed there.
TEST(Image, JpegScansUsingUndefinedHuffmanTablesAreRejected) {
  SKIP_WITHOUT_STB();
  auto jpeg = [](unsigned char sof, unsigned char ss, unsigned char ahal) {
    std::vector<unsigned char> b = {0xFF, 0xD8, 0xFF, sof, 0x00, 0x0B, 8, 0, 1, 0, 1, 1, 1, 0x11, 0};
    b.insert(b.end(), {0xFF, 0xC4, 0x00, 0x14, 0x00, 1});  // DC table 0, one code of length 1
    b.insert(b.end(), 15, 0);
    b.push_back(0);
    b.insert(b.end(),
             {0xFF, 0xDA, 0x00, 0x08, 1, 1, 0x00, ss, static_cast<unsigned char>(ss ? 63 : 0), ahal});
    b.insert(b.end(), {0x00, 0xFF, 0xD9});
    return b;
  };
  const std::string ac = decode_error(jpeg(0xC2, 1, 0x00), "ac.jpg");  // progressive AC scan, AC table 0
  EXPECT_TRUE(contains(ac, "ac.jpg") && contains(ac, "AC Huffman table 0, which no DHT segment defined"))
      << ac;
  const std::string seq = decode_error(jpeg(0xC0, 0, 0x00), "seq.jpg");  // sequential: both tables
  EXPECT_TRUE(contains(seq, "AC Huffman table 0")) << seq;
  for (const unsigned char ahal : {0x00, 0x10}) {  // progressive DC scans: first (DC table 0), refinement
    const std::string dc = decode_error(jpeg(0xC2, 0, ahal), "dc.jpg");
    EXPECT_FALSE(contains(dc, "Huffman table")) << dc;
  }
}

// BMP, binary PNM and uncompressed TGA: a file shorter than its header's pixels is an error, where
// stb alone would return the missing pixels as zeros.
TEST(Image, TruncatedUncompressedImagesAreRejected) {
  SKIP_WITHOUT_STB();
  // PPM, 4 x 3 RGB.
  std::vector<unsigned char> ppm = {'P', '6', '\n', '#', ' ', 'c', '\n', '4',
                                    ' ', '3', '\n', '2', '5', '5', '\n'};
  for (int i = 0; i < 36; ++i) ppm.push_back(static_cast<unsigned char>(7 * i));
  const Tensor p = decode_image(ppm, "a.ppm");
  ASSERT_EQ(p.shape(), (Shape{3, 3, 4}));
  EXPECT_EQ(p.data()[1 * 12 + 0], 7.0f / 255.0f);  // green of pixel (0, 0): byte 1
  std::vector<unsigned char> short_ppm(ppm.begin(), ppm.end() - 1);
  const std::string pm = decode_error(short_ppm, "a.ppm");
  EXPECT_TRUE(contains(pm, "a.ppm") && contains(pm, "PNM file is truncated") && contains(pm, "51 bytes"))
      << pm;
  // 16-bit gray (stb 2.27 read past its buffer converting it), big-endian samples / maxval.
  const std::string g16 = "P5 2 1 1000\n";
  std::vector<unsigned char> pgm(g16.begin(), g16.end());
  pgm.insert(pgm.end(), {0x01, 0xF4, 0x03, 0xE8});  // 500, 1000
  const Tensor g = decode_image(pgm, "a.pgm");
  ASSERT_EQ(g.shape(), (Shape{3, 1, 2}));
  for (int c = 0; c < 3; ++c) {
    EXPECT_EQ(g.data()[2 * c], 0.5f) << c;
    EXPECT_EQ(g.data()[2 * c + 1], 1.0f) << c;
  }
  // maxval 15: scaled to [0, 1]; a sample above maxval is an error naming its byte.
  const std::string m15 = "P5 2 1 15\n";
  std::vector<unsigned char> four(m15.begin(), m15.end());
  four.insert(four.end(), {15, 3});
  EXPECT_EQ(decode_image(four, "f.pgm").data()[0], 1.0f);
  four.back() = 16;
  const std::string above = decode_error(four, "f.pgm");
  EXPECT_TRUE(contains(above, "f.pgm") && contains(above, "sample 16 at byte 11 is above maxval 15"))
      << above;
  // stb 2.27 would overflow an int reading this maxval (undefined behaviour): refused before stb.
  const std::string big = "P6\n4 3\n28888888888\n";
  const std::string om = decode_error(std::vector<unsigned char>(big.begin(), big.end()), "big.ppm");
  EXPECT_TRUE(contains(om, "big.ppm") && contains(om, "corrupt PNM header") && contains(om, "28888888888"))
      << om;

  // BMP, 24 bits, 2 x 2, bottom-up: rows of 6 bytes padded to 8.
  std::vector<unsigned char> bmp = {'B', 'M'};
  put_le(bmp, 54 + 16, 4), put_le(bmp, 0, 4), put_le(bmp, 54, 4);
  put_le(bmp, 40, 4), put_le(bmp, 2, 4), put_le(bmp, 2, 4), put_le(bmp, 1, 2), put_le(bmp, 24, 2);
  put_le(bmp, 0, 4), put_le(bmp, 16, 4), put_le(bmp, 2835, 4), put_le(bmp, 2835, 4), put_le(bmp, 0, 4),
      put_le(bmp, 0, 4);
  for (int row = 0; row < 2; ++row) {
    for (int i = 0; i < 6; ++i) bmp.push_back(static_cast<unsigned char>(10 * row + i));
    bmp.push_back(0), bmp.push_back(0);
  }
  ASSERT_EQ(bmp.size(), 70u);
  EXPECT_EQ(decode_image(bmp, "a.bmp").shape(), (Shape{3, 2, 2}));
  const std::vector<unsigned char> no_last_padding(bmp.begin(), bmp.end() - 2);
  EXPECT_EQ(decode_image(no_last_padding, "a.bmp").shape(), (Shape{3, 2, 2}));
  const std::vector<unsigned char> short_bmp(bmp.begin(), bmp.end() - 3);
  const std::string bm = decode_error(short_bmp, "a.bmp");
  EXPECT_TRUE(contains(bm, "a.bmp") && contains(bm, "BMP file is truncated") && contains(bm, "68 bytes"))
      << bm;

  // TGA, type 2 (true colour), 24 bits, 2 x 2.
  std::vector<unsigned char> tga = {0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0};
  put_le(tga, 2, 2), put_le(tga, 2, 2), tga.push_back(24), tga.push_back(0);
  for (int i = 0; i < 12; ++i) tga.push_back(static_cast<unsigned char>(20 * i));
  EXPECT_EQ(decode_image(tga, "a.tga").shape(), (Shape{3, 2, 2}));
  const std::vector<unsigned char> short_tga(tga.begin(), tga.end() - 4);
  const std::string tm = decode_error(short_tga, "a.tga");
  EXPECT_TRUE(contains(tm, "a.tga") && contains(tm, "TGA file is truncated") && contains(tm, "30 bytes"))
      << tm;
}

// A PNG of a few dozen bytes declaring 14000 x 14000 pixels is refused from its header, before any
// memory is taken; FOVEA_MAX_IMAGE_PIXELS moves or lifts the limit.
TEST(Image, DeclaredSizeAboveThePixelLimitIsRefused) {
  SKIP_WITHOUT_STB();
  auto png_header = [](std::uint32_t w, std::uint32_t h) {
    std::vector<unsigned char> b = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
    put_be(b, 13, 4);
    b.insert(b.end(), {'I', 'H', 'D', 'R'});
    put_be(b, w, 4), put_be(b, h, 4);
    b.insert(b.end(), {8, 2, 0, 0, 0, 0, 0, 0, 0});  // 8-bit RGB; a CRC stb does not check
    return b;
  };
  ::unsetenv("FOVEA_MAX_IMAGE_PIXELS");
  EXPECT_EQ(max_image_pixels(), kDefaultMaxImagePixels);
  const std::string bomb = decode_error(png_header(14000, 14000), "bomb.png");
  EXPECT_TRUE(contains(bomb, "bomb.png") && contains(bomb, "14000x14000 = 196000000 pixels") &&
              contains(bomb, "FOVEA_MAX_IMAGE_PIXELS"))
      << bomb;

  TempDir dir;
  write_png(dir.path() / "small.png", image_from(std::vector<float>(3 * 3 * 4, 0.5f), 3, 3, 4));  // 12 pixels
  const std::vector<unsigned char> small = file_bytes(dir.path() / "small.png");
  {
    ScopedEnv limit("FOVEA_MAX_IMAGE_PIXELS", "11");
    EXPECT_TRUE(contains(decode_error(small), "more than the limit of 11")) << decode_error(small);
  }
  {
    ScopedEnv limit("FOVEA_MAX_IMAGE_PIXELS", "12");
    EXPECT_EQ(decode_image(small).shape(), (Shape{3, 3, 4}));
  }
  {
    ScopedEnv limit("FOVEA_MAX_IMAGE_PIXELS", "0");  // no limit: the bomb gets past the check
    EXPECT_FALSE(contains(decode_error(png_header(14000, 14000)), "limit"));
    // ... and a PNM whose pixel bytes would pass 2^64 is still refused as truncated, not read.
    const std::string huge = "P6 2147483647 2147483647 65535\n" + std::string(64, '\x01');
    const std::string m = decode_error(std::vector<unsigned char>(huge.begin(), huge.end()), "huge.ppm");
    EXPECT_TRUE(contains(m, "huge.ppm") && contains(m, "PNM file is truncated")) << m;
  }
  for (const char* bad : {"-1", "1e6", "many"}) {
    ScopedEnv limit("FOVEA_MAX_IMAGE_PIXELS", bad);
    const std::string m = decode_error(small);
    EXPECT_TRUE(contains(m, "FOVEA_MAX_IMAGE_PIXELS must be") && contains(m, bad)) << m;
  }
}

// stb names an unknown critical PNG chunk by its four bytes: they reach the message escaped, so an
// error stays printable text.
TEST(Image, FileBytesInDecoderReasonsAreEscaped) {
  SKIP_WITHOUT_STB();
  std::vector<unsigned char> b = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
  put_be(b, 13, 4);
  b.insert(b.end(), {'I', 'H', 'D', 'R'});
  put_be(b, 2, 4), put_be(b, 2, 4);
  b.insert(b.end(), {8, 2, 0, 0, 0, 0, 0, 0, 0});
  put_be(b, 0, 4);
  b.insert(b.end(), {0x0C, 0x85, 0xCF, 0xA1, 0, 0, 0, 0});  // an unknown critical chunk, empty
  const std::string m = decode_error(b, "chunk.png");
  EXPECT_TRUE(contains(m, "chunk.png") && contains(m, "\\x0c\\x85\\xcf\\xa1")) << m;
  for (const char c : m) EXPECT_TRUE(c >= 0x20 || c == '\n') << static_cast<int>(c);
}

// A minimal uncompressed 8-bit grayscale TIFF (little-endian, one strip), decoded from memory, from
// a file, and through decode_image's magic test: the same pixels; a truncated copy names the source.
TEST(Tiff, DecodeTiffFromMemoryEqualsLoadTiff) {
  if (!kHaveTiff) GTEST_SKIP() << "built without libtiff (apt-get install libtiff-dev)";
  const int w = 3, h = 2;
  std::vector<unsigned char> b = {'I', 'I', 42, 0};
  const int entries = 9;
  const std::uint32_t ifd = 8, pixels = ifd + 2 + 12 * entries + 4;
  put_le(b, ifd, 4);
  put_le(b, entries, 2);
  auto tag = [&](int id, int type, std::uint32_t value) {
    put_le(b, static_cast<std::uint64_t>(id), 2), put_le(b, static_cast<std::uint64_t>(type), 2),
        put_le(b, 1, 4);
    put_le(b, value, type == 3 ? 2 : 4);
    if (type == 3) put_le(b, 0, 2);
  };
  tag(256, 3, w), tag(257, 3, h), tag(258, 3, 8), tag(259, 3, 1), tag(262, 3, 1);  // min-is-black
  tag(273, 4, pixels), tag(277, 3, 1), tag(278, 3, h), tag(279, 4, w * h);
  put_le(b, 0, 4);  // no next IFD
  ASSERT_EQ(b.size(), pixels);
  for (int i = 0; i < w * h; ++i) b.push_back(static_cast<unsigned char>(40 * i + 5));

  const Tensor m = decode_tiff(b, "gray.tif");
  ASSERT_EQ(m.shape(), (Shape{3, h, w}));
  for (int c = 0; c < 3; ++c)
    for (int i = 0; i < w * h; ++i)
      EXPECT_EQ(m.data()[c * w * h + i], static_cast<float>(40 * i + 5) / 255.0f);
  TempDir dir;
  {
    std::ofstream out(dir.path() / "gray.tif", std::ios::binary);
    out.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
  }
  const Tensor f = load_tiff(dir.path() / "gray.tif");
  ASSERT_EQ(f.shape(), m.shape());
  for (std::int64_t i = 0; i < m.numel(); ++i) EXPECT_EQ(f.data()[i], m.data()[i]);
  if (kHaveImageIo) {
    const Tensor d = decode_image(b, "sniffed");
    for (std::int64_t i = 0; i < m.numel(); ++i) EXPECT_EQ(d.data()[i], m.data()[i]);
  }
  // 987 samples per pixel: refused before libtiff sizes a buffer from it.
  std::vector<unsigned char> many = b;
  many[ifd + 2 + 12 * 6 + 8] = 0xDB, many[ifd + 2 + 12 * 6 + 9] = 0x03;  // tag 277's value
  try {
    decode_tiff(many, "many.tif");
    ADD_FAILURE() << "987 samples per pixel decoded";
  } catch (const Error& e) {
    EXPECT_TRUE(contains(e.what(), "many.tif") && contains(e.what(), "987 samples per pixel")) << e.what();
  }
  const std::vector<unsigned char> cut(b.begin(), b.begin() + 20);
  try {
    decode_tiff(cut, "cut.tif");
    ADD_FAILURE() << "a truncated TIFF decoded";
  } catch (const Error& e) {
    EXPECT_TRUE(contains(e.what(), "cut.tif")) << e.what();
  }
}

TEST(Image, WritePngLeavesNoFileOnBadInput) {
  SKIP_WITHOUT_STB();
  TempDir dir;
  const Tensor two_channels = image_from(std::vector<float>(2 * 4 * 4, 0.5f), 2, 4, 4);
  EXPECT_THROW(write_png(dir.path() / "x.png", two_channels), Error);
  EXPECT_THROW(
      write_png(dir.path() / "missing_dir" / "x.png", image_from(std::vector<float>(3, 0.5f), 3, 1, 1)),
      Error);
  EXPECT_TRUE(fs::is_empty(dir.path()));
}

TEST(Resize, ConstantImageStaysConstant) {
  const Tensor image = image_from(std::vector<float>(3 * 33 * 7, 0.625f), 3, 33, 7);
  for (auto [oh, ow] :
       {std::pair{1, 1}, std::pair{5, 67}, std::pair{129, 3}, std::pair{33, 7}, std::pair{11, 2}}) {
    const Tensor out = resize_antialiased(image, oh, ow);
    ASSERT_EQ(out.shape(), (Shape{3, oh, ow}));
    for (float v : out.to_vector()) ASSERT_NEAR(v, 0.625f, 1e-6f) << oh << "x" << ow;
  }
}

TEST(Resize, HalvingACheckerboardMatchesPilBilinear) {
  // PIL's BILINEAR at an exact 2x shrink weights input pixels 2o-1, 2o, 2o+1, 2o+2 by (1, 3, 3, 1) / 8
  // for output o, which on a one-pixel checkerboard equals the 2x2 box average (0.5) inside the
  // image. At the borders the tap outside is dropped and the rest renormalised ((3, 3, 1) / 7).
  const int n = 8;
  std::vector<double> v(static_cast<std::size_t>(n * n));
  for (int y = 0; y < n; ++y)
    for (int x = 0; x < n; ++x) v[static_cast<std::size_t>(y * n + x)] = (x + y) % 2;
  auto halve = [](const std::vector<double>& line) {
    const int len = static_cast<int>(line.size());
    std::vector<double> out(static_cast<std::size_t>(len / 2));
    for (int o = 0; o < len / 2; ++o) {
      const double taps[4] = {1, 3, 3, 1};
      double num = 0, den = 0;
      for (int k = 0; k < 4; ++k)
        if (const int x = 2 * o - 1 + k; x >= 0 && x < len) {
          num += taps[k] * line[static_cast<std::size_t>(x)];
          den += taps[k];
        }
      out[static_cast<std::size_t>(o)] = num / den;
    }
    return out;
  };
  std::vector<std::vector<double>> rows;  // (n, n / 2) after the row pass
  for (int y = 0; y < n; ++y)
    rows.push_back(halve(std::vector<double>(v.begin() + y * n, v.begin() + (y + 1) * n)));
  std::vector<float> f(v.begin(), v.end());
  const auto out = resize_antialiased(image_from(f, 1, n, n), n / 2, n / 2).to_vector();
  for (int ox = 0; ox < n / 2; ++ox) {
    std::vector<double> column;
    for (int y = 0; y < n; ++y)
      column.push_back(rows[static_cast<std::size_t>(y)][static_cast<std::size_t>(ox)]);
    const std::vector<double> expected = halve(column);
    for (int oy = 0; oy < n / 2; ++oy) {
      const float got = out[static_cast<std::size_t>(oy * n / 2 + ox)];
      EXPECT_NEAR(got, expected[static_cast<std::size_t>(oy)], 1e-6) << oy << "," << ox;
      if (oy > 0 && ox > 0 && oy < n / 2 - 1 && ox < n / 2 - 1) {
        EXPECT_NEAR(got, 0.5, 1e-6) << oy << "," << ox;
      }
    }
  }
  EXPECT_NEAR(
      out[0],
      (3 * (3 * 0 + 3 * 1 + 0) / 7.0 + 3 * (3 * 1 + 3 * 0 + 1) / 7.0 + (3 * 0 + 3 * 1 + 0) / 7.0) / 7.0,
      1e-6);
}

TEST(Resize, UpscalingTwoByTwoIsHalfPixelBilinear) {
  // 2 -> 4 along an axis: output centres at 0.25, 0.75, 1.25, 1.75 in input pixels, so the weights
  // of (in0, in1) are (1, 0), (3/4, 1/4), (1/4, 3/4), (0, 1) (edges clamp).
  const Tensor image = image_from({1.0f, 5.0f, 9.0f, 13.0f}, 1, 2, 2);  // [[1, 5], [9, 13]]
  const auto out = resize_antialiased(image, 4, 4).to_vector();
  const float row[2][4] = {{1, 2, 4, 5}, {9, 10, 12, 13}};
  const float wy[4][2] = {{1, 0}, {0.75f, 0.25f}, {0.25f, 0.75f}, {0, 1}};
  for (int y = 0; y < 4; ++y)
    for (int x = 0; x < 4; ++x)
      EXPECT_NEAR(out[static_cast<std::size_t>(y * 4 + x)], wy[y][0] * row[0][x] + wy[y][1] * row[1][x],
                  1e-5f)
          << y << "," << x;
  // Only one axis changes: the other is copied exactly.
  const auto wide = resize_antialiased(image, 2, 4).to_vector();
  EXPECT_EQ(wide, (std::vector<float>{1, 2, 4, 5, 9, 10, 12, 13}));
}

TEST(Resize, ShrinkingAveragesEveryInputPixel) {
  // 9 -> 1: one output whose triangle spans the whole row: weights 1 - |x + 0.5 - 4.5| / 9.
  std::vector<float> v(9);
  for (int i = 0; i < 9; ++i) v[static_cast<std::size_t>(i)] = static_cast<float>(i * i);
  const float out = resize_antialiased(image_from(v, 1, 1, 9), 1, 1).to_vector()[0];
  double num = 0, den = 0;
  for (int i = 0; i < 9; ++i) {
    const double w = 1.0 - std::abs(i + 0.5 - 4.5) / 9.0;
    num += w * i * i;
    den += w;
  }
  EXPECT_NEAR(out, num / den, 1e-4);
}

TEST(Resize, RejectsBadSizes) {
  const Tensor image = image_from({1, 2, 3, 4}, 1, 2, 2);
  EXPECT_THROW(resize_antialiased(image, 0, 3), Error);
  EXPECT_THROW(resize_antialiased(Tensor::from({1, 2}, Shape{2, 1}), 2, 2), Error);
}

TEST(CenterCrop, OffsetsFollowTorchvisionRounding) {
  EXPECT_EQ(center_crop_offset(7, 3), 2);  // 2.0
  EXPECT_EQ(center_crop_offset(6, 3), 2);  // round(1.5) = 2
  EXPECT_EQ(center_crop_offset(8, 3), 2);  // round(2.5) = 2 (half to even)
  EXPECT_EQ(center_crop_offset(4, 3), 0);  // round(0.5) = 0
  EXPECT_EQ(center_crop_offset(5, 5), 0);
  std::vector<float> v(2 * 7 * 6);
  for (std::size_t i = 0; i < v.size(); ++i) v[i] = static_cast<float>(i);
  const Tensor image = image_from(v, 2, 7, 6);
  const Tensor crop = center_crop(image, 3, 3);  // top = 2, left = round(1.5) = 2
  ASSERT_EQ(crop.shape(), (Shape{2, 3, 3}));
  const auto c = crop.to_vector();
  for (int ch = 0; ch < 2; ++ch)
    for (int y = 0; y < 3; ++y)
      for (int x = 0; x < 3; ++x)
        EXPECT_EQ(c[static_cast<std::size_t>((ch * 3 + y) * 3 + x)],
                  v[static_cast<std::size_t>((ch * 7 + 2 + y) * 6 + 2 + x)]);
  EXPECT_THROW(center_crop(image, 8, 3), Error);
}

TEST(Preprocess, ResizeRoundingFollowsTorchvision) {
  EXPECT_EQ(resized_shorter_side(50, 80, 64), (std::array<int, 2>{64, 102}));  // int(102.4)
  EXPECT_EQ(resized_shorter_side(80, 50, 64), (std::array<int, 2>{102, 64}));
  EXPECT_EQ(resized_shorter_side(2592, 3888, 224), (std::array<int, 2>{224, 336}));
  EXPECT_EQ(resized_shorter_side(100, 100, 224), (std::array<int, 2>{224, 224}));
  EXPECT_EQ(resized_shorter_side(3, 10, 2), (std::array<int, 2>{2, 6}));  // int(6.67)
}

TEST(Normalize, SubtractsMeanAndDividesByStdPerChannel) {
  Tensor image = image_from({0.5f, 1.0f, 0.25f, 0.75f, 0.0f, 1.0f}, 3, 1, 2);
  normalize(image, {0.5f, 0.25f, 0.5f}, {0.5f, 0.25f, 0.25f});
  EXPECT_EQ(image.to_vector(), (std::vector<float>{0, 1, 0, 2, -2, 2}));
  Tensor batch = Tensor::from(std::vector<float>(2 * 3, 1.0f), Shape{2, 3, 1, 1});
  normalize(batch, {0, 0.5f, 1}, {1, 1, 1});
  EXPECT_EQ(batch.to_vector(), (std::vector<float>{1, 0.5f, 0, 1, 0.5f, 0}));
  EXPECT_THROW(normalize(image, {0, 0, 0}, {1, 0, 1}), Error);
  Tensor four = Tensor::from(std::vector<float>(4, 1.0f), Shape{4, 1, 1});
  EXPECT_THROW(normalize(four, {0, 0, 0}, {1, 1, 1}), Error);
}

TEST(Preprocess, SquareImagesAreNotResizedOthersAreResizedAndCropped) {
  SKIP_WITHOUT_STB();
  TempDir dir;
  std::vector<float> v(3 * 8 * 8);
  for (std::size_t i = 0; i < v.size(); ++i) v[i] = static_cast<float>(i % 256) / 255.0f;
  write_png(dir.path() / "square.png", image_from(v, 3, 8, 8));
  const Tensor same = preprocess_for_model(dir.path() / "square.png", 8, {0, 0, 0}, {1, 1, 1});
  ASSERT_EQ(same.shape(), (Shape{1, 3, 8, 8}));
  EXPECT_EQ(same.to_vector(), v);

  // 5 x 10 (H x W) at size 4: resize to 4 x 8, crop columns [2, 6), then normalise.
  std::vector<float> r(3 * 5 * 10);
  for (std::size_t i = 0; i < r.size(); ++i) r[i] = static_cast<float>((i * 7) % 256) / 255.0f;
  write_png(dir.path() / "wide.png", image_from(r, 3, 5, 10));
  const Tensor got = preprocess_for_model(dir.path() / "wide.png", 4, kImageNetMean, kImageNetStd);
  ASSERT_EQ(got.shape(), (Shape{1, 3, 4, 4}));
  Tensor expected = center_crop(resize_antialiased(load_image(dir.path() / "wide.png"), 4, 8), 4, 4);
  normalize(expected, kImageNetMean, kImageNetStd);
  EXPECT_EQ(got.to_vector(), expected.to_vector());
}

TEST(FundusData, EyepacsJpegAndDriveGifDecode) {
  SKIP_WITHOUT_STB();
  const fs::path dir = fundus_dir();
  if (dir.empty())
    GTEST_SKIP() << "../shared/data/fundus not found next to the repository (set FOVEA_FUNDUS_DIR)";
  const fs::path jpeg = dir / "eyepacs" / "images" / "10003_right.jpeg";  // 256 x 256 RGB (eyepacs/README.md)
  if (!fs::exists(jpeg)) GTEST_SKIP() << jpeg << " is absent";
  const Tensor image = load_image(jpeg);
  EXPECT_EQ(image.shape(), (Shape{3, 256, 256}));
  double sum = 0;
  float lo = 1, hi = 0;
  for (float x : image.to_vector()) {
    sum += x;
    lo = std::min(lo, x);
    hi = std::max(hi, x);
  }
  EXPECT_GE(lo, 0.0f);
  EXPECT_LE(hi, 1.0f);
  EXPECT_GT(hi - lo, 0.3f) << "a fundus photo has contrast";
  const Tensor input = preprocess_for_model(jpeg, 224, kImageNetMean, kImageNetStd);
  EXPECT_EQ(input.shape(), (Shape{1, 3, 224, 224}));

  const fs::path gif = dir / "drive" / "fov_mask" / "01_test_mask.gif";  // 565 x 584 (W x H), 0 / 255
  if (fs::exists(gif)) {
    const auto mask = load_image(gif);
    EXPECT_EQ(mask.shape(), (Shape{3, 584, 565}));
    for (float x : mask.to_vector()) ASSERT_TRUE(x == 0.0f || x == 1.0f) << x;
  }
  const fs::path tiff = dir / "drive" / "images" / "01_test.tif";
  if (fs::exists(tiff)) {
    if (kHaveTiff) {
      EXPECT_EQ(load_image(tiff).shape(), (Shape{3, 584, 565}));  // libtiff: DRIVE's LZW photo
    } else {
      try {
        load_image(tiff);
        ADD_FAILURE() << "decoded a TIFF without libtiff";
      } catch (const Error& e) {
        EXPECT_TRUE(contains(e.what(), "01_test.tif") && contains(e.what(), "TIFF")) << e.what();
      }
    }
  }
}

}  // namespace
}  // namespace fovea::data
