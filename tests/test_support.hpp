// tests/test_support.hpp: helpers several test files share: a self-removing temporary folder, the
// location of the real fundus subsets in ../shared (absent on users' machines: tests skip), and the
// message of the fovea::Error a call throws.
#pragma once

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <string>
#include <system_error>
#include <vector>

#include "fovea/core/error.hpp"

namespace fovea::testing {

// The what() of the fovea::Error that f() throws, or "(no error)" (other exceptions propagate).
template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

// A fresh empty directory under the system temp dir, removed at the end of the test.
class TempDir {
 public:
  explicit TempDir(const std::string& tag = "test") {
    static int counter = 0;
    path_ = std::filesystem::temp_directory_path() /
            ("fovea_" + tag + "_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

// The real fundus subsets: $FOVEA_SHARED_DATA (the fundus folder, or a folder holding fundus/ or
// data/fundus/), else $FOVEA_FUNDUS_DIR, else shared/data/fundus found by walking up from the working
// directory, the test binary and this source file. Empty when absent.
inline std::filesystem::path fundus_dir() {
  namespace fs = std::filesystem;
  for (const char* var : {"FOVEA_SHARED_DATA", "FOVEA_FUNDUS_DIR"}) {
    const char* env = std::getenv(var);
    if (env == nullptr || *env == '\0') continue;
    for (const fs::path& p : {fs::path(env), fs::path(env) / "fundus", fs::path(env) / "data" / "fundus"})
      if (fs::is_directory(p / "eyepacs") || fs::is_directory(p / "idrid")) return p;
  }
  std::error_code ec;
  std::vector<fs::path> starts{fs::current_path(ec), fs::read_symlink("/proc/self/exe", ec).parent_path(),
                               fs::path(__FILE__).parent_path()};
  for (fs::path dir : starts) {
    for (; !dir.empty(); dir = dir.parent_path()) {
      const fs::path candidate = dir / "shared" / "data" / "fundus";
      if (fs::is_directory(candidate, ec)) return candidate;
      if (dir == dir.parent_path()) break;
    }
  }
  return {};
}

}  // namespace fovea::testing
