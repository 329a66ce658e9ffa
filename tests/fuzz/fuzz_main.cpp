// tests/fuzz/fuzz_main.cpp: one libFuzzer program per target of targets.hpp (the target's name in
// FOVEA_FUZZ_TARGET). Built with clang's -fsanitize=fuzzer,address,undefined by scripts/fuzz
// (CMake option FOVEA_BUILD_FUZZERS); stb_image's decoder is compiled into the program, so it is
// instrumented too (libtiff, yaml-cpp and the C++ library are the system's).
#define STB_IMAGE_IMPLEMENTATION
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "targets.hpp"

namespace {
const fovea::fuzz::Target& chosen() {
  static const fovea::fuzz::Target* target = [] {
    for (const auto& t : fovea::fuzz::kTargets)
      if (std::strcmp(t.name, FOVEA_FUZZ_TARGET) == 0) return &t;
    std::fprintf(stderr, "fuzz_main: no target named %s\n", FOVEA_FUZZ_TARGET);
    std::abort();
  }();
  return *target;
}
}  // namespace

// Images up to 4 Mpixels: a few hundred bytes can declare the default limit's 179 Mpixels, which then
// decode legitimately, and slowly under the sanitizers (the limit itself is tested in test_image.cpp).
extern "C" int LLVMFuzzerInitialize(int*, char***) {
  setenv("FOVEA_MAX_IMAGE_PIXELS", "4194304", 0);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  // A fovea::Error is a rejection; any other exception escapes and libFuzzer reports it.
  (void)fovea::fuzz::run(chosen(), fovea::fuzz::Bytes(data, size));
  return 0;
}
