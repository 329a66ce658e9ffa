// fovea/core/env.hpp: process-wide settings read from environment variables.
#pragma once

#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <string>
#include <utility>

#include "fovea/core/error.hpp"

namespace fovea {

// The setting environment variable `name` selects among `choices` (accepted name, value): the value
// of the choice it names, the first choice's value when it is unset or empty. Anything else throws
// fovea::Error naming the variable, every accepted name and what it holds.
template <class T, std::size_t N>
T env_choice(const char* name, const std::pair<const char*, T> (&choices)[N]) {
  const char* v = std::getenv(name);
  if (v == nullptr || v[0] == '\0') return choices[0].second;
  std::string accepted;
  for (std::size_t i = 0; i < N; ++i) {
    if (std::strcmp(v, choices[i].first) == 0) return choices[i].second;
    accepted += std::string(i == 0 ? "" : i + 1 == N ? " or " : ", ") + choices[i].first;
  }
  FOVEA_FAIL(name, " must be ", accepted, ", got '", v, "'");
}

}  // namespace fovea
