// fovea/core/error.hpp: fovea::Error and the check macros that throw it (never abort()).
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace fovea {

// The one exception type fovea throws for bad input, failed library calls and broken contracts.
// what() reads "file:line: <what failed>: <details>".
class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message) : std::runtime_error(message) {}
};

// Thrown when a CUDA allocation fails even after the cache was released.
class OutOfMemoryError : public Error {
 public:
  using Error::Error;
};

namespace detail {

inline void append_all(std::ostringstream&) {}
template <class T, class... Rest>
void append_all(std::ostringstream& os, const T& first, const Rest&... rest) {
  os << first;
  append_all(os, rest...);
}

template <class... Args>
[[noreturn]] void throw_error(const char* file, int line, const char* what, const Args&... details) {
  std::ostringstream os;
  os << file << ':' << line << ": " << what;
  if constexpr (sizeof...(details) > 0) {
    os << ": ";
    append_all(os, details...);
  }
  throw Error(os.str());
}

}  // namespace detail
}  // namespace fovea

// FOVEA_CHECK(cond, details...): throws fovea::Error naming the condition, file and line, followed by
// the streamed details (shapes, names, values).
#define FOVEA_CHECK(cond, ...)                                                                 \
  do {                                                                                         \
    if (!(cond)) [[unlikely]]                                                                  \
      ::fovea::detail::throw_error(__FILE__, __LINE__, "check failed: " #cond __VA_OPT__(, ) __VA_ARGS__); \
  } while (0)

// FOVEA_FAIL(details...): unconditional error with file and line.
#define FOVEA_FAIL(...) \
  ::fovea::detail::throw_error(__FILE__, __LINE__, "error" __VA_OPT__(, ) __VA_ARGS__)
