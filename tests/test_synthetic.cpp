// tests/test_synthetic.cpp: the synthetic fundus generator (determinism, anatomy, lesions per grade, masks, grade
// distributions, a handcrafted learnability check) and the `fovea generate` data set writer.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <numbers>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "fovea/data/synthetic.hpp"

#if __has_include(<CLI/CLI.hpp>)
#include "../tools/fovea/cmd_generate.hpp"
#define FOVEA_TEST_HAVE_CLI11 1
#else
#define FOVEA_TEST_HAVE_CLI11 0
#endif

namespace fovea::data {
namespace {

namespace fs = std::filesystem;

SyntheticFundus make(int size, std::int64_t index, int grade, std::uint64_t seed = 3) {
  SyntheticConfig config;
  config.seed = seed;
  config.size = size;
  return generate_fundus(config, index, grade);
}

bool same_floats(const Tensor& a, const Tensor& b) {
  return a.shape() == b.shape() &&
         std::equal(a.data(), a.data() + a.numel(), b.data(), [](float x, float y) {
           return std::bit_cast<std::uint32_t>(x) == std::bit_cast<std::uint32_t>(y);
         });
}

bool same(const SyntheticFundus& a, const SyntheticFundus& b) {
  if (!same_floats(a.image, b.image) || !same_floats(a.masks, b.masks) || a.lesions.size() != b.lesions.size())
    return false;
  for (std::size_t i = 0; i < a.lesions.size(); ++i) {
    const Lesion &x = a.lesions[i], &y = b.lesions[i];
    if (x.type != y.type || x.x != y.x || x.y != y.y || x.pixels != y.pixels) return false;
  }
  return true;
}

std::int64_t lesion_mask_pixels(const SyntheticFundus& f) {
  std::int64_t n = 0;
  for (LesionType t : kSyntheticLesionTypes)
    if (t != LesionType::OD) n += f.mask_pixels(t);
  return n;
}

TEST(Synthetic, SameSeedSamePixelsOtherSeedOtherPixels) {
  const SyntheticFundus a = make(96, 5, 3), b = make(96, 5, 3);
  EXPECT_TRUE(same(a, b));
  EXPECT_FALSE(same_floats(a.image, make(96, 5, 3, 4).image));
  EXPECT_FALSE(same_floats(a.image, make(96, 6, 3).image));
  ASSERT_EQ(a.image.shape(), (Shape{3, 96, 96}));
  ASSERT_EQ(a.masks.shape(), (Shape{kLesionTypeCount, 96, 96}));
}

TEST(Synthetic, CameraVariationCanBeSwitchedOff) {
  SyntheticConfig config;
  config.size = 100;
  config.camera_variation = false;
  const SyntheticFundus neutral = generate_fundus(config, 2, 2);
  EXPECT_FLOAT_EQ(neutral.fov_radius, 47.0f);
  EXPECT_FLOAT_EQ(neutral.fov_x, 50.0f);
  EXPECT_TRUE(same(neutral, generate_fundus(config, 2, 2)));
  EXPECT_FALSE(same_floats(neutral.image, make(100, 2, 2).image));
}

// The second site's camera (SyntheticConfig::site = 1): the same eye and lesions through a darker,
// bluer, smaller-field camera; site 0 is the default.
TEST(Synthetic, SecondSiteSeesTheSameEyeThroughAnotherCamera) {
  SyntheticConfig config;
  config.seed = 3, config.size = 96;
  for (int i = 0; i < 6; ++i) {
    const SyntheticFundus home = generate_fundus(config, i, 3);
    EXPECT_TRUE(same(home, make(96, i, 3))) << i;  // site 0 is the default
    SyntheticConfig other = config;
    other.site = 1;
    const SyntheticFundus away = generate_fundus(other, i, 3);
    EXPECT_EQ(away.grade, home.grade);
    for (LesionType t : kSyntheticLesionTypes) EXPECT_EQ(away.lesion_count(t), home.lesion_count(t)) << i;
    EXPECT_NEAR(away.fov_radius, 0.92f * home.fov_radius, 1e-3f * home.fov_radius) << i;
    // Channel means inside each image's field of view.
    auto means = [](const SyntheticFundus& f) {
      std::array<double, 3> m{};
      std::int64_t n = 0;
      const std::int64_t s = f.image.shape()[2];
      for (std::int64_t y = 0; y < s; ++y)
        for (std::int64_t x = 0; x < s; ++x) {
          const float dx = static_cast<float>(x) + 0.5f - f.fov_x,
                      dy = static_cast<float>(y) + 0.5f - f.fov_y;
          if (dx * dx + dy * dy > 0.8f * f.fov_radius * f.fov_radius) continue;
          for (int c = 0; c < 3; ++c) m[static_cast<std::size_t>(c)] += f.image.data()[(c * s + y) * s + x];
          ++n;
        }
      for (double& v : m) v /= static_cast<double>(n);
      return m;
    };
    const auto h = means(home), a = means(away);
    EXPECT_LT(a[0] + a[1] + a[2], 0.9 * (h[0] + h[1] + h[2])) << "image " << i << ": not darker";
    EXPECT_GT(a[2] / a[0], 1.1 * (h[2] / h[0])) << "image " << i << ": no blue cast";
  }
  config.site = 2;
  EXPECT_THROW(generate_fundus(config, 0, 0), Error);
  config.site = -1;
  EXPECT_THROW(generate_fundus(config, 0, 0), Error);
}

TEST(Synthetic, ThreadsDrawTheSameImagesAsOneThread) {
  std::vector<SyntheticFundus> sequential, parallel(4);
  for (int i = 0; i < 4; ++i) sequential.push_back(make(80, i, 4));
  std::vector<std::thread> threads;
  for (int i = 0; i < 4; ++i) threads.emplace_back([&parallel, i] { parallel[static_cast<std::size_t>(i)] = make(80, i, 4); });
  for (std::thread& t : threads) t.join();
  for (int i = 0; i < 4; ++i) EXPECT_TRUE(same(sequential[static_cast<std::size_t>(i)], parallel[static_cast<std::size_t>(i)])) << i;
}

TEST(Synthetic, GradeZeroIsLesionFreeAndHigherGradesHaveMicroaneurysms) {
  for (int i = 0; i < 6; ++i) {
    const SyntheticFundus healthy = make(96, i, 0);
    EXPECT_TRUE(healthy.lesions.empty()) << i;
    EXPECT_EQ(lesion_mask_pixels(healthy), 0) << i;
    EXPECT_GT(healthy.mask_pixels(LesionType::OD), 0) << i;
    for (int grade = 1; grade <= 4; ++grade) {
      const SyntheticFundus sick = make(96, i, grade);
      EXPECT_GT(sick.mask_pixels(LesionType::MA), 0) << "image " << i << " grade " << grade;
      EXPECT_GT(sick.lesion_count(LesionType::MA), 0) << "image " << i << " grade " << grade;
    }
    const SyntheticFundus mild = make(96, i, 1);
    EXPECT_EQ(mild.lesion_count(LesionType::MA), static_cast<std::int64_t>(mild.lesions.size())) << "grade 1 is MAs only";
    EXPECT_EQ(make(96, i, 4).lesion_count(LesionType::NV) > 0, true) << "grade 4 has new vessels";
    EXPECT_EQ(make(96, i, 3).lesion_count(LesionType::NV), 0) << "only grade 4 has new vessels";
  }
}

TEST(Synthetic, GradesShareTheAnatomyOfTheirIndex) {
  const SyntheticFundus healthy = make(96, 7, 0), sick = make(96, 7, 3);
  EXPECT_TRUE(std::equal(healthy.mask(LesionType::OD).data(), healthy.mask(LesionType::OD).data() + 96 * 96,
                         sick.mask(LesionType::OD).data()));
  EXPECT_EQ(healthy.fovea_x, sick.fovea_x);
  EXPECT_FALSE(same_floats(healthy.image, sick.image));
}

TEST(Synthetic, LesionCountsIncreaseWithGrade) {
  double previous = -1.0;
  for (int grade = 0; grade <= 4; ++grade) {
    double total = 0.0;
    for (int i = 0; i < 20; ++i) total += static_cast<double>(make(64, 100 + i, grade).lesions.size());
    const double mean = total / 20.0;
    EXPECT_GT(mean, previous) << "grade " << grade;
    previous = mean;
  }
}

TEST(Synthetic, LesionAreasSpanTwoOrdersOfMagnitude) {
  std::int64_t smallest = INT64_MAX, largest = 0;
  for (int i = 0; i < 6; ++i) {
    const SyntheticFundus f = make(128, i, 3 + i % 2);
    for (const Lesion& l : f.lesions) {
      EXPECT_GE(l.pixels, 1);
      smallest = std::min(smallest, l.pixels);
      largest = std::max(largest, l.pixels);
    }
  }
  EXPECT_GE(static_cast<double>(largest) / static_cast<double>(smallest), 100.0) << smallest << " .. " << largest;
}

TEST(Synthetic, BlackOutsideTheFieldOfViewAndTheDiscIsBrightest) {
  for (int i = 0; i < 8; ++i) {
    const SyntheticFundus f = make(128, i, 0);
    const int s = f.size();
    const std::int64_t plane = static_cast<std::int64_t>(s) * s;
    const float* img = f.image.data();
    double disc_sum = 0.0, rest_sum = 0.0;
    std::int64_t disc_n = 0, rest_n = 0;
    float max_outside = 0.0f;
    for (int y = 0; y < s; ++y)
      for (int x = 0; x < s; ++x) {
        const std::int64_t p = static_cast<std::int64_t>(y) * s + x;
        const float lum = (img[p] + img[plane + p] + img[2 * plane + p]) / 3.0f;
        const float d = std::hypot(x + 0.5f - f.fov_x, y + 0.5f - f.fov_y);
        if (d > f.fov_radius + 1.0f) max_outside = std::max({max_outside, img[p], img[plane + p], img[2 * plane + p]});
        if (d > f.fov_radius) continue;
        if (f.mask(LesionType::OD).data()[p] != 0.0f) {
          disc_sum += lum;
          ++disc_n;
        } else {
          rest_sum += lum;
          ++rest_n;
        }
      }
    EXPECT_LT(max_outside, 0.02f) << i;
    ASSERT_GT(disc_n, 0);
    EXPECT_GT(disc_sum / disc_n, rest_sum / rest_n + 0.1) << i;
    // The brightest 5x5 neighbourhood of the image lies on the disc.
    float best = -1.0f;
    int bx = 0, by = 0;
    for (int y = 2; y < s - 2; ++y)
      for (int x = 2; x < s - 2; ++x) {
        float sum = 0.0f;
        for (int dy = -2; dy <= 2; ++dy)
          for (int dx = -2; dx <= 2; ++dx) {
            const std::int64_t p = static_cast<std::int64_t>(y + dy) * s + x + dx;
            sum += img[p] + img[plane + p] + img[2 * plane + p];
          }
        if (sum > best) best = sum, bx = x, by = y;
      }
    EXPECT_LE(std::hypot(bx + 0.5f - f.disc_x, by + 0.5f - f.disc_y), f.disc_radius * 1.2f + 1.0f) << i;
  }
}

TEST(Synthetic, MasksAreBinaryAndInsideTheFieldOfView) {
  for (int grade = 0; grade <= 4; ++grade) {
    const SyntheticFundus f = make(96, 20 + grade, grade);
    const int s = f.size();
    for (int t = 0; t < kLesionTypeCount; ++t)
      for (int y = 0; y < s; ++y)
        for (int x = 0; x < s; ++x) {
          const float v = f.masks.data()[(static_cast<std::int64_t>(t) * s + y) * s + x];
          ASSERT_TRUE(v == 0.0f || v == 1.0f) << v;
          if (v != 0.0f) {
            ASSERT_LE(std::hypot(x + 0.5f - f.fov_x, y + 0.5f - f.fov_y), f.fov_radius);
          }
        }
    float lo = 1.0f, hi = 0.0f;
    for (std::int64_t i = 0; i < f.image.numel(); ++i) lo = std::min(lo, f.image.data()[i]), hi = std::max(hi, f.image.data()[i]);
    EXPECT_GE(lo, 0.0f);
    EXPECT_LE(hi, 1.0f);
    // Every listed lesion's centre lies within the field of view.
    for (const Lesion& l : f.lesions) EXPECT_LE(std::hypot(l.x - f.fov_x, l.y - f.fov_y), f.fov_radius);
  }
}

TEST(Synthetic, EyesAlternateAndNamesFollowEyePacs) {
  EXPECT_EQ(synthetic_image_name(0), "synthetic_0_left");
  EXPECT_EQ(synthetic_image_name(1), "synthetic_0_right");
  EXPECT_EQ(synthetic_image_name(21), "synthetic_10_right");
  // The disc lies on the image's left for a left eye and on its right for a right eye.
  for (int i = 0; i < 6; ++i) {
    const SyntheticFundus f = make(64, i, 0);
    EXPECT_EQ(f.eye, synthetic_eye(i));
    EXPECT_EQ(f.disc_x > f.fovea_x, f.eye == Eye::right) << i;
  }
}

void expect_proportions(const std::vector<int>& grades, const GradeDistribution& d) {
  double total = 0.0;
  for (double w : d.weights) total += w;
  const double n = static_cast<double>(grades.size());
  for (int g = 0; g < 5; ++g) {
    const double p = d.weights[static_cast<std::size_t>(g)] / total;
    const double count = static_cast<double>(std::count(grades.begin(), grades.end(), g));
    EXPECT_LE(std::abs(count - n * p), 4.0 * std::sqrt(n * p * (1.0 - p))) << "grade " << g << ": " << count;
  }
}

TEST(Synthetic, GradeDistributionsMatchTheirProportions) {
  const std::vector<int> eyepacs = synthetic_grades(5000, 17);
  expect_proportions(eyepacs, kEyePacsGradeDistribution);
  expect_proportions(synthetic_grades(5000, 17, kBalancedGradeDistribution), kBalancedGradeDistribution);
  const std::vector<int> prefix = synthetic_grades(100, 17);
  EXPECT_TRUE(std::equal(prefix.begin(), prefix.end(), eyepacs.begin())) << "grades do not depend on the count";
  EXPECT_NE(synthetic_grades(100, 18), prefix);
  for (int g : synthetic_grades(50, 1, GradeDistribution{{0.0, 0.0, 1.0, 0.0, 0.0}})) EXPECT_EQ(g, 2);
  EXPECT_THROW(synthetic_grades(3, 1, GradeDistribution{{0.0, 0.0, 0.0, 0.0, 0.0}}), Error);
}

TEST(Synthetic, RejectsBadArguments) {
  SyntheticConfig config;
  config.size = 64;
  EXPECT_THROW(generate_fundus(config, 0, 5), Error);
  EXPECT_THROW(generate_fundus(config, -1, 0), Error);
  config.size = 8;
  EXPECT_THROW(generate_fundus(config, 0, 0), Error);
}

// A handcrafted red- and bright-lesion detector on the IMAGE only: pixels of the smoothed green
// channel that are darker (or brighter) by 10 % than every point of a ring of radius 2 or 4 px
// around them, i.e. small isolated blobs; vessels are elongated and fail the test along their axis.
double blob_pixel_count(const Tensor& image) {
  const int s = static_cast<int>(image.shape()[2]);
  const std::int64_t plane = static_cast<std::int64_t>(s) * s;
  const float* red = image.data();
  const float* green = image.data() + plane;
  std::vector<float> g(static_cast<std::size_t>(plane));
  for (int y = 0; y < s; ++y)
    for (int x = 0; x < s; ++x) {
      float sum = 0.0f;
      for (int dy = -1; dy <= 1; ++dy)
        for (int dx = -1; dx <= 1; ++dx) sum += green[std::clamp(y + dy, 0, s - 1) * s + std::clamp(x + dx, 0, s - 1)];
      g[static_cast<std::size_t>(y * s + x)] = sum / 9.0f;
    }
  double cx = 0.0, cy = 0.0, n = 0.0;  // the field of view, estimated from the image
  for (int y = 0; y < s; ++y)
    for (int x = 0; x < s; ++x)
      if (red[y * s + x] > 0.05f) cx += x, cy += y, n += 1.0;
  cx /= n;
  cy /= n;
  const double radius = std::sqrt(n / std::numbers::pi);
  double count = 0.0;
  for (int ring : {2, 4})
    for (int y = 0; y < s; ++y)
      for (int x = 0; x < s; ++x) {
        if (std::hypot(x - cx, y - cy) > 0.85 * radius) continue;
        float lo = 1e9f, hi = -1e9f, mean = 0.0f;
        for (int a = 0; a < 12; ++a) {
          const double t = a * std::numbers::pi / 6.0;
          const int xx = std::clamp(x + static_cast<int>(std::lround(ring * std::cos(t))), 0, s - 1);
          const int yy = std::clamp(y + static_cast<int>(std::lround(ring * std::sin(t))), 0, s - 1);
          const float v = g[static_cast<std::size_t>(yy * s + xx)];
          lo = std::min(lo, v), hi = std::max(hi, v), mean += v / 12.0f;
        }
        const float v = g[static_cast<std::size_t>(y * s + x)];
        count += (lo - v > 0.1f * mean) + (v - hi > 0.1f * mean);
      }
  return count;
}

// Mann-Whitney AUC: P(score of a positive > score of a negative), ties counted half.
double auc(const std::vector<double>& positives, const std::vector<double>& negatives) {
  double wins = 0.0;
  for (double p : positives)
    for (double q : negatives) wins += p > q ? 1.0 : (p == q ? 0.5 : 0.0);
  return wins / (static_cast<double>(positives.size()) * static_cast<double>(negatives.size()));
}

TEST(Synthetic, AuxiliaryAucIsExact) {
  EXPECT_DOUBLE_EQ(auc({3, 4}, {1, 2}), 1.0);
  EXPECT_DOUBLE_EQ(auc({1, 2}, {3, 4}), 0.0);
  EXPECT_DOUBLE_EQ(auc({1, 3}, {2, 2}), 0.5);
}

TEST(Synthetic, ReferableGradesAreLearnableFromPixels) {
  std::vector<double> healthy, referable;
  for (int i = 0; i < 60; ++i) {
    const int grade = i % 2 == 0 ? 0 : 2 + (i / 2) % 3;
    const double score = blob_pixel_count(make(128, 1000 + i, grade, 11).image);
    (grade == 0 ? healthy : referable).push_back(score);
  }
  const double a = auc(referable, healthy);
  RecordProperty("auc", std::to_string(a));
  EXPECT_GT(a, 0.8) << "grade 0 vs >= 2 from a blob count on the image";
}

#if FOVEA_TEST_HAVE_CLI11

class TempDir {
 public:
  TempDir() {
    static int counter = 0;
    path_ = fs::temp_directory_path() / ("fovea_test_synthetic_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    fs::remove_all(path_);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

std::string read_text(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

std::vector<std::string> lines(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

void run_cli(std::vector<std::string> args) {
  CLI::App app{"fovea"};
  tools::add_generate_command(app);
  std::vector<const char*> argv{"fovea"};
  for (const std::string& a : args) argv.push_back(a.c_str());
  app.parse(static_cast<int>(argv.size()), argv.data());
}

TEST(SyntheticGenerate, WritesEyePacsAndIdridLayoutsReproducibly) {
  if (!kHaveImageIo) GTEST_SKIP() << "built without stb (libstb-dev): no PNG writer";
  TempDir a, b;
  run_cli({"generate", "--out", a.path().string(), "--count", "6", "--size", "64", "--seed", "5", "--balanced",
           "--masks", "--threads", "3"});
  run_cli({"generate", "--out", b.path().string(), "--count", "6", "--size", "64", "--seed", "5", "--balanced",
           "--masks", "--threads", "1"});
  const std::vector<std::string> labels = lines(read_text(a.path() / "labels.csv"));
  ASSERT_EQ(labels.size(), 7u);
  EXPECT_EQ(labels[0], "image,level");
  const std::vector<int> grades = synthetic_grades(6, 5, kBalancedGradeDistribution);
  for (int i = 0; i < 6; ++i) {
    EXPECT_EQ(labels[static_cast<std::size_t>(i + 1)], synthetic_image_name(i) + "," + std::to_string(grades[static_cast<std::size_t>(i)]));
    const fs::path png = a.path() / "images" / (synthetic_image_name(i) + ".png");
    ASSERT_TRUE(fs::exists(png)) << png;
    EXPECT_EQ(read_text(png), read_text(b.path() / "images" / (synthetic_image_name(i) + ".png"))) << "same bytes";
    const Tensor loaded = load_image(png);
    const SyntheticFundus f = make(64, i, grades[static_cast<std::size_t>(i)], 5);
    ASSERT_EQ(loaded.shape(), f.image.shape());
    for (std::int64_t p = 0; p < loaded.numel(); ++p) ASSERT_NEAR(loaded.data()[p], f.image.data()[p], 0.5f / 255.0f + 1e-6f);
  }
  const std::string lesions_csv = read_text(a.path() / "lesions.csv");
  EXPECT_EQ(lesions_csv, read_text(b.path() / "lesions.csv"));
  const std::vector<std::string> rows = lines(lesions_csv);
  ASSERT_GE(rows.size(), 7u);  // at least one OD mask per image
  EXPECT_EQ(rows[0], "image,lesion_type,mask_path,lesion_pixels");
  for (std::size_t r = 1; r < rows.size(); ++r) {
    std::istringstream in(rows[r]);
    std::string image, type, path, pixels;
    std::getline(in, image, ',');
    std::getline(in, type, ',');
    std::getline(in, path, ',');
    std::getline(in, pixels, ',');
    EXPECT_EQ(path, "masks/" + type + "/" + image.substr(0, image.size() - 4) + "_" + type + ".png");
    const Tensor mask = load_image(a.path() / path);  // (3, 64, 64), gray replicated
    std::int64_t on = 0;
    for (std::int64_t p = 0; p < 64 * 64; ++p) {
      ASSERT_TRUE(mask.data()[p] == 0.0f || mask.data()[p] == 1.0f);
      on += mask.data()[p] == 1.0f;
    }
    EXPECT_EQ(std::to_string(on), pixels) << rows[r];
  }
}

TEST(SyntheticGenerate, RejectsBadArguments) {
  TempDir dir;
  EXPECT_THROW(run_cli({"generate", "--out", dir.path().string(), "--count", "0"}), CLI::ValidationError);
  EXPECT_THROW(run_cli({"generate", "--count", "3"}), CLI::RequiredError);
  EXPECT_THROW(run_cli({"generate", "--out", dir.path().string(), "--count", "2", "--size", "8"}), CLI::ValidationError);
}

#endif

}  // namespace
}  // namespace fovea::data
