// tests/fuzz/replay.cpp: every committed fuzz input (tests/fuzz/corpus/<target>/: seeds;
// tests/fuzz/regressions/<target>/: inputs that once crashed or misbehaved, kept after the fix) run
// through its target in every build, the asan preset included. Each must parse or be rejected with
// fovea::Error; the seeds must (mostly) parse, so that the fuzzer starts from valid files.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <typeinfo>
#include <vector>

#include "targets.hpp"

namespace fs = std::filesystem;

namespace {

const fs::path kFuzzDir = FOVEA_FUZZ_DIR;

std::vector<fs::path> files_in(const fs::path& dir) {
  std::vector<fs::path> out;
  if (fs::is_directory(dir))
    for (const auto& e : fs::directory_iterator(dir))
      if (e.is_regular_file()) out.push_back(e.path());
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<std::uint8_t> bytes_of(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// Whether this build can parse seed `p` of `target` at all (image and TIFF seeds need the decoders,
// YAML seeds yaml-cpp).
bool build_reads(const fovea::fuzz::Target& target, const fs::path& p) {
  const bool tiff_file = p.extension() == ".tif";
  if (target.run == fovea::fuzz::tiff || (target.run == fovea::fuzz::image && tiff_file))
    return fovea::data::kHaveTiff;
  if (target.run == fovea::fuzz::image || target.run == fovea::fuzz::fundus) return fovea::data::kHaveImageIo;
  if (p.extension() == ".yaml") return FOVEA_WITH_YAML != 0;
  return true;
}

class FuzzReplay : public ::testing::TestWithParam<fovea::fuzz::Target> {};

// Seeds (valid files the fuzzer mutates from) must parse, except those named bad-* or truncated-*,
// which must be rejected with fovea::Error. Regression inputs (files that once crashed a parser or
// got past it) must be rejected with fovea::Error, except those named valid-*, which must parse. Any
// other exception fails the test naming the file.
TEST_P(FuzzReplay, SeedsParseAndRegressionsAreRejectedCleanly) {
  const fovea::fuzz::Target& target = GetParam();
  int seeds = 0, checked = 0, regressions = 0;
  for (const char* kind : {"corpus", "regressions"}) {
    for (const fs::path& p : files_in(kFuzzDir / kind / target.name)) {
      const bool seed = std::string(kind) == "corpus";
      (seed ? seeds : regressions) += 1;
      const std::vector<std::uint8_t> b = bytes_of(p);
      bool parsed = false;
      try {
        parsed = fovea::fuzz::run(target, fovea::fuzz::Bytes(b.data(), b.size()));
      } catch (const std::exception& e) {
        ADD_FAILURE() << target.name << ": " << p << " threw " << typeid(e).name() << ": " << e.what();
        continue;
      }
      if (!build_reads(target, p)) continue;
      const std::string name = p.filename().string();
      const bool broken = seed ? name.rfind("bad-", 0) == 0 || name.rfind("truncated-", 0) == 0
                               : name.rfind("valid-", 0) != 0;
      EXPECT_EQ(parsed, !broken) << target.name << ": " << kind << " " << p
                                 << (broken ? " parsed" : " was rejected");
      ++checked;
    }
  }
  ASSERT_GE(seeds, 3) << "tests/fuzz/corpus/" << target.name << " holds too few seeds";
  std::printf("%s: %d seeds, %d regression inputs (%d judged in this build)\n", target.name, seeds,
              regressions, checked);
}

INSTANTIATE_TEST_SUITE_P(Targets, FuzzReplay, ::testing::ValuesIn(fovea::fuzz::kTargets),
                         [](const auto& info) { return std::string(info.param.name); });

}  // namespace
