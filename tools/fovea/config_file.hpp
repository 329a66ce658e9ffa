// tools/fovea/config_file.hpp: `--config FILE` for the driver subcommands: a JSON or YAML mapping of
// flag names to values (`batch_size: 64` or `batch-size: 64`), applied to every flag the command
// line did not give, so flags override the file. A run's own config.json is a valid config file.
#pragma once

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#if FOVEA_WITH_YAML
#include <yaml-cpp/yaml.h>
#endif

#include "fovea/core/error.hpp"

namespace fovea::tools {

// One setting of a config file: the flag's name without dashes and its value(s) as text.
struct ConfigSetting {
  std::string key;
  std::vector<std::string> values;
};

namespace detail {

inline std::string json_scalar_text(const nlohmann::json& v, const std::string& file, const std::string& key) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_boolean()) return v.get<bool>() ? "true" : "false";
  if (v.is_number_integer() || v.is_number_unsigned()) return v.dump();
  if (v.is_number_float()) {
    std::ostringstream s;
    s.precision(9);
    s << v.get<double>();
    return s.str();
  }
  FOVEA_FAIL("config file ", file, ": setting '", key, "' must be a string, number or boolean, got ", v.dump());
}

inline std::vector<ConfigSetting> parse_json_config(const std::string& text, const std::string& file) {
  nlohmann::json j;
  std::set<std::string> keys;
  std::string duplicate;
  auto top_level_keys = [&](int depth, nlohmann::json::parse_event_t event, nlohmann::json& parsed) {
    if (depth == 1 && event == nlohmann::json::parse_event_t::key && !keys.insert(parsed.get<std::string>()).second)
      duplicate = parsed.get<std::string>();
    return true;
  };
  try {
    j = nlohmann::json::parse(text, top_level_keys);
  } catch (const std::exception& e) {
    FOVEA_FAIL("config file ", file, " is not valid JSON: ", e.what());
  }
  FOVEA_CHECK(j.is_object(), "config file ", file, ": expected a JSON object of settings, got ", j.type_name());
  FOVEA_CHECK(duplicate.empty(), "config file ", file, ": setting '", duplicate, "' is given twice");
  std::vector<ConfigSetting> out;
  for (const auto& [key, value] : j.items()) {
    ConfigSetting s{key, {}};
    if (value.is_null()) continue;
    if (value.is_array()) {
      for (const auto& v : value) s.values.push_back(json_scalar_text(v, file, key));
    } else {
      s.values.push_back(json_scalar_text(value, file, key));
    }
    out.push_back(std::move(s));
  }
  return out;
}

#if FOVEA_WITH_YAML
inline std::string yaml_scalar_text(const YAML::Node& v, const std::string& file, const std::string& key) {
  FOVEA_CHECK(v.IsScalar(), "config file ", file, ": setting '", key, "' must be a scalar (string, number or boolean)");
  return v.Scalar();
}

inline std::vector<ConfigSetting> parse_yaml_config(const std::string& text, const std::string& file) {
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    FOVEA_FAIL("config file ", file, " is not valid YAML: line ", e.mark.line + 1, ", column ", e.mark.column + 1, ": ",
               e.msg);
  }
  if (root.IsNull()) return {};
  FOVEA_CHECK(root.IsMap(), "config file ", file, ": expected a mapping of settings (key: value) at the top level");
  std::vector<ConfigSetting> out;
  for (const auto& kv : root) {
    FOVEA_CHECK(kv.first.IsScalar(), "config file ", file, ": a key is not a plain name");
    ConfigSetting s{kv.first.Scalar(), {}};
    const YAML::Node& value = kv.second;
    if (value.IsNull()) continue;
    if (value.IsSequence()) {
      for (const auto& v : value) s.values.push_back(yaml_scalar_text(v, file, s.key));
    } else {
      s.values.push_back(yaml_scalar_text(value, file, s.key));
    }
    out.push_back(std::move(s));
  }
  return out;
}
#endif

}  // namespace detail

// Reads a config file: JSON when it ends in .json or starts with '{', YAML otherwise (.yaml, .yml).
inline std::vector<ConfigSetting> read_config_file(const std::string& file) {
  namespace fs = std::filesystem;
  FOVEA_CHECK(fs::is_regular_file(file), "config file '", file, "' does not exist or is not a file");
  std::ifstream in(file, std::ios::binary);
  FOVEA_CHECK(in.good(), "config file '", file, "' cannot be read");
  std::stringstream buf;
  buf << in.rdbuf();
  const std::string text = buf.str();
  const auto first = text.find_first_not_of(" \t\r\n");
  const std::string ext = fs::path(file).extension().string();
  if (ext == ".json" || (first != std::string::npos && text[first] == '{')) return detail::parse_json_config(text, file);
#if FOVEA_WITH_YAML
  return detail::parse_yaml_config(text, file);
#else
  FOVEA_FAIL("config file '", file, "': this fovea was built without YAML support (yaml-cpp, Debian libyaml-cpp-dev); ",
             "write the settings as JSON");
#endif
}

// Applies a config file's settings to `cmd`'s options that the command line did not set. Keys are
// flag names without the leading dashes, '_' and '-' interchangeable (config.json's keys are the
// flags' names with '_'). `command`, when present, must name this subcommand. Unknown keys, keys
// given twice and values a flag rejects are errors naming the file and the key.
inline void apply_config_file(CLI::App& cmd, const std::string& file, const std::set<std::string>& ignored = {}) {
  std::set<std::string> seen;
  for (const ConfigSetting& s : read_config_file(file)) {
    std::string name = s.key;
    for (char& c : name)
      if (c == '_') c = '-';
    FOVEA_CHECK(!name.empty() && name[0] != '-', "config file ", file, ": key '", s.key,
                "' must be a flag name without leading dashes (e.g. batch_size)");
    FOVEA_CHECK(seen.insert(name).second, "config file ", file, ": setting '", s.key, "' is given twice");
    if (name == "command") {
      FOVEA_CHECK(s.values.size() == 1 && s.values[0] == cmd.get_name(), "config file ", file, " is for `fovea ",
                  s.values.empty() ? "?" : s.values[0], "`, not `fovea ", cmd.get_name(), "`");
      continue;
    }
    if (ignored.count(name)) continue;
    CLI::Option* opt = cmd.get_option_no_throw("--" + name);
    FOVEA_CHECK(opt != nullptr && name != "config" && name != "help", "config file ", file, ": unknown setting '",
                s.key, "' for `fovea ", cmd.get_name(), "` (see fovea ", cmd.get_name(), " --help)");
    if (opt->count() > 0) continue;  // the command line wins
    try {
      if (opt->get_expected_min() == 0) {
        FOVEA_CHECK(s.values.size() == 1, "config file ", file, ": flag '", s.key, "' takes true or false");
        opt->add_result(opt->get_flag_value(name, s.values[0]));
      } else {
        FOVEA_CHECK(!s.values.empty(), "config file ", file, ": setting '", s.key, "' has no value");
        opt->add_result(s.values);
      }
      opt->run_callback();
    } catch (const CLI::Error& e) {
      FOVEA_FAIL("config file ", file, ": setting '", s.key, "': ", e.what());
    }
  }
}

// Adds `--config FILE` to a subcommand; call apply_config(...) first thing in its callback.
inline CLI::Option* add_config_flag(CLI::App* cmd, std::string& file) {
  return cmd->add_option("--config", file,
                         "JSON or YAML file of settings (flag names as keys, e.g. batch_size: 64); "
                         "flags on the command line override it; a run's config.json works");
}

}  // namespace fovea::tools
