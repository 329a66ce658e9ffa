// tests/test_fundus.cpp: TIFF decoding (IDRiD masks vs their PNG copies, DRIVE LZW photos, errors),
// field-of-view masks, Ben Graham's normalisation and the preprocessing disk cache.
#include <gtest/gtest.h>

#include <bit>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "fovea/data/cache.hpp"
#include "fovea/data/fundus.hpp"
#include "fovea/data/image.hpp"
#include "fovea/data/loader.hpp"
#include "fovea/data/synthetic.hpp"
#include "fovea/data/tiff.hpp"
#include "test_support.hpp"

namespace fs = std::filesystem;
using namespace fovea;
using namespace fovea::data;

namespace {

using fovea::testing::error_of;
using fovea::testing::fundus_dir;

fs::path temp_dir(const std::string& name) {
  const fs::path dir = fs::temp_directory_path() / ("fovea_test_fundus_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

void write_bytes(const fs::path& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary);
  out << bytes;
}

std::string read_bytes(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

double iou(CView a, CView b) {
  double inter = 0, uni = 0;
  for (std::int64_t i = 0; i < a.numel(); ++i) {
    const bool x = a.data()[i] != 0.0f, y = b.data()[i] != 0.0f;
    inter += x && y;
    uni += x || y;
  }
  return uni > 0 ? inter / uni : 1.0;
}

// The true field of view of a synthetic fundus (inside iff distance <= radius).
Tensor true_fov(const SyntheticFundus& f) {
  const std::int64_t s = f.size();
  Tensor m(Shape{1, s, s});
  for (std::int64_t y = 0; y < s; ++y)
    for (std::int64_t x = 0; x < s; ++x) {
      const float dx = x + 0.5f - f.fov_x, dy = y + 0.5f - f.fov_y;
      m.data()[y * s + x] = dx * dx + dy * dy <= f.fov_radius * f.fov_radius ? 1.0f : 0.0f;
    }
  return m;
}

#define SKIP_WITHOUT_TIFF() \
  if (!kHaveTiff) GTEST_SKIP() << "built without libtiff (apt-get install libtiff-dev)"
#define SKIP_WITHOUT_IMAGE_IO() \
  if (!kHaveImageIo) GTEST_SKIP() << "built without stb (apt-get install libstb-dev)"

}  // namespace

// ---- TIFF ---------------------------------------------------------------------------------------

TEST(Tiff, IdridMasksEqualTheirPngCopies) {
  SKIP_WITHOUT_TIFF();
  SKIP_WITHOUT_IMAGE_IO();
  const fs::path root = fundus_dir();
  if (root.empty() || !fs::is_directory(root / "idrid" / "original_tif"))
    GTEST_SKIP() << "shared/data/fundus/idrid/original_tif not found (set FOVEA_SHARED_DATA to the fundus folder)";
  for (const char* type : {"MA", "HE", "EX", "SE"}) {
    const std::string name = std::string("IDRiD_03_") + type;
    const Tensor tif = load_image(root / "idrid" / "original_tif" / (name + ".tif"));
    const Tensor png = load_image(root / "idrid" / "masks" / type / (name + ".png"));
    ASSERT_EQ(tif.shape(), png.shape()) << name;
    EXPECT_EQ(tif.shape(), Shape({3, 2848, 4288})) << name;
    std::int64_t differ = 0, ones = 0;
    for (std::int64_t i = 0; i < tif.numel(); ++i) {
      differ += tif.data()[i] != png.data()[i];
      ones += tif.data()[i] == 1.0f;
    }
    EXPECT_EQ(differ, 0) << name;
    EXPECT_GT(ones, 0) << name << ": an empty mask would not test anything";
  }
}

TEST(Tiff, DriveLzwPhotoDecodes) {
  SKIP_WITHOUT_TIFF();
  const fs::path root = fundus_dir();
  const fs::path file = root / "drive" / "images" / "01_test.tif";
  if (root.empty() || !fs::exists(file)) GTEST_SKIP() << "shared/data/fundus/drive not found";
  const Tensor image = load_image(file);
  EXPECT_EQ(image.shape(), Shape({3, 584, 565}));
  double red = 0, blue = 0;
  const std::int64_t plane = 584 * 565;
  for (std::int64_t i = 0; i < plane; ++i) {
    ASSERT_GE(image.data()[i], 0.0f);
    ASSERT_LE(image.data()[i], 1.0f);
    red += image.data()[i];
    blue += image.data()[2 * plane + i];
  }
  EXPECT_GT(red, 2 * blue) << "a fundus photo is red";
  const Tensor mask = fov_mask(image);
  double inside = 0;
  for (std::int64_t i = 0; i < mask.numel(); ++i) inside += mask.data()[i];
  EXPECT_GT(inside / plane, 0.5);
  EXPECT_LT(inside / plane, 0.85);
  // DRIVE ships its own field-of-view masks (GIF).
  const fs::path gif = root / "drive" / "fov_mask" / "01_test_mask.gif";
  if (kHaveImageIo && fs::exists(gif)) {
    const Tensor truth = load_image(gif);
    EXPECT_GT(iou(mask, CView(truth.data(), Shape{1, 584, 565}, Device::cpu())), 0.95);
  }
}

TEST(Tiff, TruncatedAndFakeFilesNameTheFile) {
  SKIP_WITHOUT_TIFF();
  const fs::path dir = temp_dir("tiff");
  const fs::path fake = dir / "not_a_tiff.tif";
  write_bytes(fake, "this is plain text, not a TIFF at all");
  std::string e = error_of([&] { load_image(fake); });
  EXPECT_NE(e.find("not_a_tiff.tif"), std::string::npos) << e;
  EXPECT_NE(e.find("libtiff"), std::string::npos) << e;

  const fs::path missing = dir / "missing.tiff";
  e = error_of([&] { load_tiff(missing); });
  EXPECT_NE(e.find("missing.tiff"), std::string::npos) << e;

  const fs::path root = fundus_dir();
  const fs::path drive = root / "drive" / "images" / "02_test.tif";
  if (root.empty() || !fs::exists(drive)) GTEST_SKIP() << "shared/data/fundus/drive not found (truncation cases)";
  const std::string bytes = read_bytes(drive);
  for (std::size_t keep : {bytes.size() / 2, std::size_t{64}}) {
    const fs::path cut = dir / ("cut_" + std::to_string(keep) + ".tif");
    write_bytes(cut, bytes.substr(0, keep));
    e = error_of([&] { load_image(cut); });
    EXPECT_NE(e.find(cut.filename().string()), std::string::npos) << e;
  }
  const fs::path idrid = root / "idrid" / "original_tif" / "IDRiD_03_MA.tif";
  if (fs::exists(idrid)) {
    const std::string mask = read_bytes(idrid);
    const fs::path cut = dir / "cut_mask.tif";
    write_bytes(cut, mask.substr(0, mask.size() / 2));
    e = error_of([&] { load_image(cut); });
    EXPECT_NE(e.find("cut_mask.tif"), std::string::npos) << e;
  }
  fs::remove_all(dir);
}

// ---- field of view and Ben Graham ---------------------------------------------------------------

// The drivers' --image-cache runs preprocess_fundus without the crop and Ben Graham in place of the
// loader's default decoder (preprocess_for_model): the two must give the same bits before the cache's
// 8-bit storage, for wide, tall and square images at sizes above and below theirs.
TEST(Fundus, PreprocessWithoutCropEqualsTheDefaultDecoder) {
  const fs::path dir = temp_dir("nocrop");
  std::mt19937 gen(5);
  std::uniform_real_distribution<float> uniform(0.0f, 1.0f);
  for (const auto [h, w] : {std::pair{37, 50}, std::pair{61, 29}, std::pair{40, 40}}) {
    Tensor image(Shape{3, h, w});
    for (std::int64_t i = 0; i < image.numel(); ++i) image.data()[i] = uniform(gen);
    const fs::path file = dir / ("img_" + std::to_string(h) + "x" + std::to_string(w) + ".png");
    write_png(file, image);
    for (const int size : {16, 33, 64}) {
      FundusPreprocess settings;
      settings.size = size;
      settings.crop_to_fov = false;
      settings.ben_graham = false;
      const std::vector<float> a = preprocess_fundus(file, settings).to_vector();
      const std::vector<float> b = preprocess_for_model(file, size, {0, 0, 0}, {1, 1, 1}).to_vector();
      ASSERT_EQ(a.size(), b.size());
      EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)), 0)
          << h << "x" << w << " -> " << size;
    }
  }
  fs::remove_all(dir);
}

TEST(Fundus, FovMaskOfSyntheticFundus) {
  for (int index : {0, 3}) {
    SyntheticConfig cfg;
    cfg.seed = 7;
    cfg.size = 192;
    const SyntheticFundus f = generate_fundus(cfg, index, index % 5);
    const Tensor mask = fov_mask(f.image);
    ASSERT_EQ(mask.shape(), Shape({1, 192, 192}));
    EXPECT_GT(iou(mask, true_fov(f)), 0.95) << "image " << index;
    const BoundingBox box = fov_box(mask);
    EXPECT_NEAR(box.width(), 2 * f.fov_radius, 4.0);
    const Tensor crop = crop_to_fov(f.image, mask);
    EXPECT_EQ(crop.shape()[1], crop.shape()[2]);
    EXPECT_NEAR(static_cast<double>(crop.shape()[1]), 2 * f.fov_radius, 4.0);
  }
}

TEST(Fundus, FovMaskOfRealEyepacsImageCoversTheDisc) {
  SKIP_WITHOUT_IMAGE_IO();
  const fs::path root = fundus_dir();
  const fs::path file = root / "eyepacs" / "images" / "10003_right.jpeg";
  if (root.empty() || !fs::exists(file)) GTEST_SKIP() << "shared/data/fundus/eyepacs not found";
  const Tensor image = load_image(file);
  const Tensor mask = fov_mask(image);
  const std::int64_t h = image.shape()[1], w = image.shape()[2], plane = h * w;
  EXPECT_EQ(mask.data()[(h / 2) * w + w / 2], 1.0f) << "the centre is inside";
  EXPECT_EQ(mask.data()[0], 0.0f) << "the corner is outside";
  // Every clearly bright pixel is inside, and few dark pixels are.
  std::int64_t bright = 0, bright_in = 0, dark = 0, dark_in = 0;
  for (std::int64_t i = 0; i < plane; ++i) {
    const float r = image.data()[i];
    if (r > 0.25f) ++bright, bright_in += mask.data()[i] != 0.0f;
    if (r < 0.02f) ++dark, dark_in += mask.data()[i] != 0.0f;
  }
  ASSERT_GT(bright, plane / 3);
  EXPECT_GT(static_cast<double>(bright_in) / bright, 0.99);
  if (dark > 0) {
    EXPECT_LT(static_cast<double>(dark_in) / dark, 0.05);
  }
}

TEST(Fundus, FovMaskOfUniformImageIsEverything) {
  Tensor image(Shape{3, 9, 7});
  std::fill(image.data(), image.data() + image.numel(), 0.3f);
  const Tensor mask = fov_mask(image);
  for (std::int64_t i = 0; i < mask.numel(); ++i) EXPECT_EQ(mask.data()[i], 1.0f);
}

TEST(Fundus, GaussianBlurKeepsConstantsAndSums) {
  Tensor image(Shape{1, 33, 7});
  std::fill(image.data(), image.data() + image.numel(), 0.25f);
  Tensor b = gaussian_blur(image, 2.5f);
  for (std::int64_t i = 0; i < b.numel(); ++i) EXPECT_NEAR(b.data()[i], 0.25f, 1e-6f);
  // An impulse far from the borders spreads into a symmetric bump with mass 1.
  Tensor impulse(Shape{1, 41, 41});
  std::fill(impulse.data(), impulse.data() + impulse.numel(), 0.0f);
  impulse.data()[20 * 41 + 20] = 1.0f;
  b = gaussian_blur(impulse, 2.0f);
  double total = 0;
  for (std::int64_t i = 0; i < b.numel(); ++i) total += b.data()[i];
  EXPECT_NEAR(total, 1.0, 1e-5);
  EXPECT_NEAR(b.data()[20 * 41 + 17], b.data()[17 * 41 + 20], 1e-7f);
  EXPECT_NEAR(b.data()[20 * 41 + 20], 1.0 / (2 * M_PI * 4.0), 2e-3);
}

TEST(Fundus, BenGrahamOfConstantImageIsHalfInsideTheFov) {
  SyntheticConfig cfg;
  cfg.size = 128;
  cfg.camera_variation = false;
  const SyntheticFundus f = generate_fundus(cfg, 0, 0);
  const Tensor fov = true_fov(f);
  Tensor image(Shape{3, 128, 128});
  for (std::int64_t c = 0; c < 3; ++c)
    for (std::int64_t i = 0; i < 128 * 128; ++i) image.data()[c * 128 * 128 + i] = 0.6f * fov.data()[i];
  const Tensor out = ben_graham(image, fov);
  const float r = f.fov_radius, sigma = r / 30.0f;
  int checked = 0;
  for (std::int64_t y = 0; y < 128; ++y)
    for (std::int64_t x = 0; x < 128; ++x) {
      const float dx = x + 0.5f - f.fov_x, dy = y + 0.5f - f.fov_y, d = std::sqrt(dx * dx + dy * dy);
      for (std::int64_t c = 0; c < 3; ++c) {
        const float v = out.data()[(c * 128 + y) * 128 + x];
        if (d < r - 4 * sigma - 2) {
          EXPECT_NEAR(v, 0.5f, 1e-5f);
          ++checked;
        }
        if (d > 0.9f * r + 2) {
          EXPECT_EQ(v, kBenGrahamGray);
        }
      }
    }
  EXPECT_GT(checked, 1000);
  // A uniformly bright frame (mask all ones) is 0.5 everywhere.
  Tensor flat(Shape{3, 20, 20});
  std::fill(flat.data(), flat.data() + flat.numel(), 0.8f);
  const Tensor all = fov_mask(flat);
  const Tensor g = ben_graham(flat, all, 1.0f / 30.0f, 0.9f, 0.0f);
  EXPECT_NEAR(g.data()[10 * 20 + 10], 0.5f, 1e-6f);
  EXPECT_EQ(g.data()[0], 0.0f) << "the corner lies outside the 90 % circle";
}

// The fused crop-and-resize equals crop_square (zero-padded) followed by resize_antialiased, bit for
// bit, for windows inside, across and beyond the borders, shrinking, enlarging and keeping sizes.
TEST(Fundus, ResizeWindowEqualsCropSquareThenResize) {
  const std::int64_t h = 17, w = 29;
  Tensor image(Shape{3, h, w});
  std::uint32_t state = 12345;
  for (std::int64_t i = 0; i < image.numel(); ++i) {
    state = state * 1664525u + 1013904223u;
    image.data()[i] = static_cast<float>(state >> 8) / static_cast<float>(1u << 24);
  }
  const BoundingBox windows[] = {{0, 0, w, h},     {-6, -9, 35, 26}, {3, 2, 20, 15},   {-40, -3, 70, 30},
                                 {25, 10, 60, 45}, {-5, -5, 0, 0},   {10, -20, 12, 0}, {28, 16, 29, 17}};
  const int sizes[][2] = {{5, 7}, {24, 24}, {40, 33}, {1, 1}};
  int compared = 0;
  for (const BoundingBox& b : windows) {
    if (b.empty()) continue;
    const Tensor cropped = crop_square(image.view(), b);
    for (const auto& sz : sizes) {
      for (const bool keep_w : {false, true}) {
        const int oh = sz[0], ow = keep_w ? static_cast<int>(b.width()) : sz[1];
        const Tensor expect = resize_antialiased(cropped.view(), oh, ow);
        const Tensor got = resize_window_antialiased(image.view(), b.y0, b.x0, b.height(), b.width(), oh, ow);
        ASSERT_EQ(got.shape(), expect.shape());
        for (std::int64_t i = 0; i < got.numel(); ++i)
          ASSERT_EQ(std::bit_cast<std::uint32_t>(got.data()[i]),
                    std::bit_cast<std::uint32_t>(expect.data()[i]))
              << "window (" << b.x0 << ", " << b.y0 << ", " << b.x1 << ", " << b.y1 << ") to " << oh << "x"
              << ow << ", element " << i;
        ++compared;
      }
    }
  }
  EXPECT_EQ(compared, 8 * 4 * 2);  // two windows lie wholly outside the image
  EXPECT_THROW(resize_window_antialiased(image.view(), 0, 0, 0, 5, 3, 3), Error);
}

// A 40 x 12,340 strip: its field-of-view square is 12,340 pixels a side, which preprocess_fundus no
// longer builds (it took 1.8 GB and about 2 s; the fuzzer found it). The result is what cropping and
// resizing give.
TEST(Fundus, PreprocessOfVeryWideAndTallStripsDoesNotBuildTheirSquares) {
  Tensor strip(Shape{3, 40, 12340});
  for (std::int64_t i = 0; i < strip.numel(); ++i) strip.data()[i] = (i / 97) % 3 == 0 ? 0.8f : 0.1f;
  FundusPreprocess settings;
  settings.size = 24;
  settings.crop_to_fov = true;
  const Tensor out = preprocess_fundus(strip.clone(), settings);
  ASSERT_EQ(out.shape(), (Shape{3, 24, 24}));
  for (std::int64_t i = 0; i < out.numel(); ++i) ASSERT_TRUE(std::isfinite(out.data()[i])) << i;
  // The transposed strip: its square's horizontal taps mostly fall past the image and are skipped
  // (8.3 s for a 32,808 x 52 strip when they were visited).
  Tensor tall(Shape{3, 12340, 40});
  for (std::int64_t i = 0; i < tall.numel(); ++i) tall.data()[i] = (i / 89) % 3 == 0 ? 0.7f : 0.2f;
  const Tensor t = preprocess_fundus(tall.clone(), settings);
  ASSERT_EQ(t.shape(), (Shape{3, 24, 24}));
  for (std::int64_t i = 0; i < t.numel(); ++i) ASSERT_TRUE(std::isfinite(t.data()[i])) << i;
}

TEST(Fundus, PreprocessFundusGivesSquareOutput) {
  SKIP_WITHOUT_IMAGE_IO();
  const fs::path dir = temp_dir("preprocess");
  SyntheticConfig cfg;
  cfg.size = 160;
  const SyntheticFundus f = generate_fundus(cfg, 1, 2);
  const fs::path file = dir / "synthetic.png";
  write_png(file, f.image);
  for (bool crop : {true, false})
    for (bool graham : {false, true}) {
      FundusPreprocess s;
      s.size = 64;
      s.crop_to_fov = crop;
      s.ben_graham = graham;
      const Tensor out = preprocess_fundus(file, s);
      EXPECT_EQ(out.shape(), Shape({3, 64, 64}));
      for (std::int64_t i = 0; i < out.numel(); ++i) {
        ASSERT_GE(out.data()[i], 0.0f);
        ASSERT_LE(out.data()[i], 1.0f);
      }
    }
  fs::remove_all(dir);
}

// A photo (3, h, w): black, with a bright disc of radius r at (cx, cy) and, when lesion_side > 0, a
// white square of that side at (lx, ly) inside it.
Tensor disc_photo(std::int64_t h, std::int64_t w, double cx, double cy, double r, std::int64_t lx = 0,
                  std::int64_t ly = 0, std::int64_t lesion_side = 0) {
  Tensor image(Shape{3, h, w});
  for (std::int64_t y = 0; y < h; ++y)
    for (std::int64_t x = 0; x < w; ++x) {
      const double dx = x + 0.5 - cx, dy = y + 0.5 - cy;
      const bool disc = dx * dx + dy * dy <= r * r;
      const bool lesion = x >= lx && x < lx + lesion_side && y >= ly && y < ly + lesion_side;
      for (std::int64_t c = 0; c < 3; ++c)
        image.data()[(c * h + y) * w + x] = lesion ? 1.0f : disc ? 0.3f + 0.2f * static_cast<float>(c) : 0.0f;
    }
  return image;
}

TEST(FundusMode, NamesRoundTripAndABadOneIsNamed) {
  for (FundusMode m : {FundusMode::resize, FundusMode::fov, FundusMode::graham})
    EXPECT_EQ(parse_fundus_mode(fundus_mode_name(m)), m);
  const std::string e = error_of([] { parse_fundus_mode("Graham"); });
  EXPECT_NE(e.find("resize, fov or graham"), std::string::npos) << e;
  EXPECT_NE(e.find("'Graham'"), std::string::npos) << e;
  const FundusPreprocess r = fundus_settings(FundusMode::resize, 37);
  EXPECT_TRUE(!r.crop_to_fov && !r.ben_graham && r.size == 37 && r.margin_fraction == 0.0f);
  const FundusPreprocess g = fundus_settings(FundusMode::graham, 256);
  EXPECT_TRUE(g.crop_to_fov && g.ben_graham && g.size == 256);
  EXPECT_FLOAT_EQ(g.margin_fraction, 1.0f / 14.0f);  // (1 / 0.875 - 1) / 2
  EXPECT_EQ(fundus_settings(FundusMode::fov, 224, 1.0).margin_fraction, 0.0f);
  EXPECT_THROW(fundus_settings(FundusMode::fov, 0), Error);
  EXPECT_THROW(fundus_settings(FundusMode::fov, 64, 0.0), Error);
}

// The drivers decode at size / 0.875 and centre-crop 0.875: with fundus_settings' margin the crop
// shows the field of view edge to edge, wherever the disc sits in a wider photo; the decoded image
// keeps a black margin around it.
TEST(FundusMode, TheCentreCropOfTheDecodedImageIsTheFieldOfView) {
  for (const auto& [h, w, cx, cy, r] : {std::tuple{200, 300, 160.0, 100.0, 80.0}, std::tuple{180, 260, 90.0, 95.0, 70.0},
                                        std::tuple{240, 240, 120.0, 120.0, 100.0}}) {
    const Tensor photo = disc_photo(h, w, cx, cy, r);
    const int side = 256, size = 224;
    const Tensor decoded = preprocess_fundus(photo.view(), fundus_settings(FundusMode::fov, side));
    ASSERT_EQ(decoded.shape(), (Shape{3, side, side}));
    const BoundingBox whole = fov_box(fov_mask(decoded.view()).view());
    EXPECT_GE(whole.x0, 12) << h << "x" << w;  // margin of about 256 / 16 = 16 pixels per side
    EXPECT_LE(whole.x1, side - 12);
    EXPECT_GE(whole.y0, 12);
    EXPECT_LE(whole.y1, side - 12);
    const Tensor crop = center_crop(decoded.view(), size, size);
    const BoundingBox box = fov_box(fov_mask(crop.view()).view());
    EXPECT_LE(box.x0, 1) << h << "x" << w;
    EXPECT_GE(box.x1, size - 1);
    EXPECT_LE(box.y0, 1);
    EXPECT_GE(box.y1, size - 1);
  }
}

// resize_fundus's geometry: the window is the field of view's square with the margin, the frame and
// the field of view are mapped into output pixels; Ben Graham's step with them is preprocess_fundus'
// (gray outside the frame, where a disc cut by the photo's top edge was padded); a lesion mask
// cropped to the window lands on the lesion's pixels.
TEST(FundusMode, ResizeFundusReportsWhereThePhotoWent) {
  // A disc of radius 70 centred 50 pixels below the top edge: cut by the frame; a 12-pixel lesion.
  const std::int64_t h = 130, w = 220, lx = 100, ly = 60, side = 12;
  const Tensor photo = disc_photo(h, w, 110.0, 50.0, 70.0, lx, ly, side);
  FundusPreprocess settings = fundus_settings(FundusMode::graham, 70);
  const ResizedFundus r = resize_fundus(photo.view(), settings);
  const BoundingBox box = fov_box_fast(photo.view());
  EXPECT_EQ(box.x0, 40);
  EXPECT_EQ(box.x1, 180);
  EXPECT_EQ(box.y0, 0);
  const std::int64_t margin = std::lround(settings.margin_fraction * 140.0f);
  const BoundingBox sq = fov_square(box, margin);
  EXPECT_TRUE(r.window.x0 == sq.x0 && r.window.y0 == sq.y0 && r.window.x1 == sq.x1 && r.window.y1 == sq.y1);
  EXPECT_EQ(r.window.width(), 160);  // 140 + 2 * 10
  // window (30, -20) to (190, 140) at 70 / 160: the frame's top edge at (0 + 20) * 0.4375 = 8.75
  EXPECT_EQ(r.valid.y0, 9);
  EXPECT_EQ(r.valid.x0, -13);  // (0 - 30) * 0.4375
  EXPECT_EQ(r.fov.y0, 9);
  EXPECT_EQ(r.fov.x0, 4);  // (40 - 30) * 0.4375
  const Tensor graham = ben_graham(r.image.view(), r, settings);
  const Tensor direct = preprocess_fundus(photo.view(), settings);
  ASSERT_EQ(graham.shape(), direct.shape());
  for (std::int64_t i = 0; i < graham.numel(); ++i)
    ASSERT_EQ(std::bit_cast<std::uint32_t>(graham.data()[i]), std::bit_cast<std::uint32_t>(direct.data()[i])) << i;
  for (std::int64_t y = 0; y < r.valid.y0; ++y)
    for (std::int64_t x = 0; x < 70; ++x) ASSERT_EQ(graham.data()[y * 70 + x], kBenGrahamGray) << y << ", " << x;
  // The lesion mask through the window: the white pixels of the resized photo (all three channels
  // near 1) lie inside it, and it holds at least one.
  Tensor mask(Shape{1, h, w});
  for (std::int64_t y = 0; y < h; ++y)
    for (std::int64_t x = 0; x < w; ++x)
      mask.data()[y * w + x] = x >= lx && x < lx + side && y >= ly && y < ly + side ? 1.0f : 0.0f;
  const Tensor cut = crop_square(mask.view(), r.window);
  const std::int64_t plane = 70 * 70;
  int white = 0;
  for (std::int64_t i = 0; i < plane; ++i) {
    const bool is_white = r.image.data()[i] > 0.9f && r.image.data()[plane + i] > 0.9f && r.image.data()[2 * plane + i] > 0.9f;
    if (!is_white) continue;
    ++white;
    // the centre of the output pixel's footprint in the window (160 / 70 window pixels a side)
    const std::int64_t y = i / 70, x = i % 70;
    const std::int64_t wy = (y * 160 + 80) / 70, wx = (x * 160 + 80) / 70;
    EXPECT_EQ(cut.data()[wy * 160 + wx], 1.0f) << "white output pixel (" << x << ", " << y << ")";
  }
  EXPECT_GE(white, 9);  // a 12-pixel square at 70 / 160: 5.25 pixels a side, the inner ones white
}

// fundus_decoder is the loader's decode function for preprocess_fundus.
TEST(FundusMode, FundusDecoderIsPreprocessFundus) {
  SKIP_WITHOUT_IMAGE_IO();
  const fs::path dir = temp_dir("decoder");
  const fs::path file = dir / "photo.png";
  write_png(file, disc_photo(60, 90, 50.0, 30.0, 26.0, 40, 20, 4));
  const FundusPreprocess settings = fundus_settings(FundusMode::graham, 40);
  const DecodeFn decode = fundus_decoder(settings);
  const Tensor a = decode(Sample{"photo", file, 0, "photo"}, DecodeContext{});
  const Tensor b = preprocess_fundus(file, settings);
  ASSERT_EQ(a.shape(), b.shape());
  EXPECT_EQ(std::memcmp(a.data(), b.data(), static_cast<std::size_t>(a.numel()) * sizeof(float)), 0);
  fs::remove_all(dir);
}

// ---- the disk cache -----------------------------------------------------------------------------

TEST(PreprocessCache, HitsMissesAndRebuilds) {
  SKIP_WITHOUT_IMAGE_IO();
  const fs::path dir = temp_dir("cache");
  SyntheticConfig cfg;
  cfg.size = 96;
  const fs::path source = dir / "eye.png";
  write_png(source, generate_fundus(cfg, 2, 1).image);
  FundusPreprocess settings;
  settings.size = 48;
  settings.ben_graham = true;
  settings.mean = {0.5f, 0.5f, 0.5f};
  settings.std = {0.25f, 0.25f, 0.25f};

  CachedPreprocessor cache(dir / "cache", settings);
  const Tensor first = cache(source);
  EXPECT_EQ(first.shape(), Shape({3, 48, 48}));
  const Tensor second = cache(source);
  EXPECT_EQ(cache.stats().hits, 1u);
  EXPECT_EQ(cache.stats().misses, 1u);
  for (std::int64_t i = 0; i < first.numel(); ++i) ASSERT_EQ(first.data()[i], second.data()[i]) << i;
  // The cache holds the un-normalised image to within half an 8-bit step.
  Tensor direct = preprocess_fundus(source, settings);
  for (std::int64_t i = 0; i < first.numel(); ++i)
    ASSERT_NEAR(first.data()[i], direct.data()[i], 0.5f / 255.0f / 0.25f + 1e-5f) << i;

  // A changed setting is another key.
  FundusPreprocess other = settings;
  other.circle_fraction = 0.8f;
  CachedPreprocessor cache2(dir / "cache", other);
  EXPECT_NE(cache2.cache_path(source), cache.cache_path(source));
  cache2(source);
  EXPECT_EQ(cache2.stats().misses, 1u);

  // A touched source misses.
  const fs::path before = cache.cache_path(source);
  fs::last_write_time(source, fs::last_write_time(source) + std::chrono::seconds(5));
  EXPECT_NE(cache.cache_path(source), before);
  cache(source);
  EXPECT_EQ(cache.stats().misses, 2u);

  // Corrupt files (a flipped byte, a truncation, garbage) are rebuilt, never trusted.
  const fs::path file = cache.cache_path(source);
  const Tensor good = cache(source);
  EXPECT_EQ(cache.stats().hits, 2u);
  std::string bytes = read_bytes(file);
  std::string flipped = bytes;
  flipped[flipped.size() / 2] = static_cast<char>(flipped[flipped.size() / 2] ^ 0x10);
  for (const std::string& bad : {flipped, bytes.substr(0, bytes.size() - 9), std::string("garbage")}) {
    write_bytes(file, bad);
    const std::uint64_t rebuilt = cache.stats().rebuilt;
    const Tensor again = cache(source);
    EXPECT_EQ(cache.stats().rebuilt, rebuilt + 1);
    for (std::int64_t i = 0; i < good.numel(); ++i) ASSERT_EQ(good.data()[i], again.data()[i]) << i;
    EXPECT_EQ(read_bytes(file), bytes) << "the file is rewritten";
  }

  // As a loader decode function.
  // (loader.hpp's Sample / DecodeContext cannot share a translation unit with synthetic.hpp: both
  // define kLesionTypes; a stand-in with the same `path` member.)
  struct StandIn {
    fs::path path;
  };
  const auto decode = cache.decoder();
  const Tensor via_loader = decode(StandIn{source}, 0);
  for (std::int64_t i = 0; i < good.numel(); ++i) ASSERT_EQ(good.data()[i], via_loader.data()[i]) << i;

  const std::string e = error_of([&] { cache(dir / "absent.png"); });
  EXPECT_NE(e.find("absent.png"), std::string::npos) << e;
  fs::remove_all(dir);
}
