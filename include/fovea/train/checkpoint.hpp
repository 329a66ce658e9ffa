// fovea/train/checkpoint.hpp: full-state training checkpoints in safetensors (model parameters and
// buffers, optimizer state, MoCo queue, ...) with the loop position in the metadata, written
// atomically; `latest` points at the newest complete one, so an interrupted run resumes from it.
#pragma once

#include <algorithm>
#include <charconv>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "fovea/io/atomic_file.hpp"
#include "fovea/io/safetensors.hpp"

namespace fovea::train {

// Where the loop stands. `step` counts optimizer steps done; the next batch is batch
// `batch_in_epoch` of epoch `epoch` (the sampler replays that epoch's order from the seed).
struct LoopPosition {
  std::int64_t step = 0;
  std::int64_t epoch = 0;
  std::int64_t batch_in_epoch = 0;
};

struct Checkpoint {
  LoopPosition position;
  std::map<std::string, std::string> metadata;        // everything in __metadata__
  std::map<std::string, io::StoredTensor> tensors;    // "model.*", "optim.*", "queue", ...
  std::filesystem::path path;
};

inline std::string checkpoint_file_name(std::int64_t step) {
  char buf[48];
  std::snprintf(buf, sizeof buf, "step-%010lld.safetensors", static_cast<long long>(step));
  return buf;
}

// Writes <dir>/step-<step>.safetensors atomically, then <dir>/latest (the file name), then removes
// all but the newest `keep` step files. A crash at any point leaves `latest` naming a complete file.
inline std::filesystem::path save_checkpoint(const std::filesystem::path& dir, const LoopPosition& pos,
                                             const std::map<std::string, io::StoredTensor>& tensors,
                                             std::map<std::string, std::string> metadata = {}, int keep = 2) {
  std::filesystem::create_directories(dir);
  metadata["fovea.step"] = std::to_string(pos.step);
  metadata["fovea.epoch"] = std::to_string(pos.epoch);
  metadata["fovea.batch_in_epoch"] = std::to_string(pos.batch_in_epoch);
  const auto path = dir / checkpoint_file_name(pos.step);
  io::write_safetensors(path, tensors, metadata);
  io::write_file_atomically(dir / "latest", path.filename().string() + "\n");
  std::vector<std::filesystem::path> steps;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    const auto name = e.path().filename().string();
    if (name.rfind("step-", 0) == 0 && e.path().extension() == ".safetensors") steps.push_back(e.path());
  }
  std::sort(steps.begin(), steps.end());
  for (std::size_t i = 0; i + static_cast<std::size_t>(std::max(keep, 1)) < steps.size(); ++i)
    std::filesystem::remove(steps[i]);
  return path;
}

// Sets c.position from c.metadata's fovea.step, fovea.epoch and fovea.batch_in_epoch. Throws
// fovea::Error naming c.path and the field when one is missing, not an integer, or negative.
inline void read_checkpoint_position(Checkpoint& c) {
  auto get = [&](const char* key) -> std::int64_t {
    auto it = c.metadata.find(key);
    FOVEA_CHECK(it != c.metadata.end(), "checkpoint ", c.path.string(), " has no metadata field ", key);
    const std::string& text = it->second;
    std::int64_t v = -1;
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
    FOVEA_CHECK(ec == std::errc() && end == text.data() + text.size() && v >= 0, "checkpoint ",
                c.path.string(), ": metadata field ", key, " is not a non-negative integer: '", text, "'");
    return v;
  };
  c.position = LoopPosition{get("fovea.step"), get("fovea.epoch"), get("fovea.batch_in_epoch")};
}

inline Checkpoint read_checkpoint(const std::filesystem::path& path) {
  io::SafeTensors file = io::read_safetensors(path);
  Checkpoint c;
  c.path = path;
  c.metadata = file.metadata;
  c.tensors = std::move(file.tensors);
  read_checkpoint_position(c);
  return c;
}

// The checkpoint `latest` names in `dir`, or nothing when there is none (a fresh run).
inline std::optional<Checkpoint> read_latest_checkpoint(const std::filesystem::path& dir) {
  const auto latest = dir / "latest";
  if (!std::filesystem::exists(latest)) return std::nullopt;
  std::ifstream in(latest);
  std::string name;
  std::getline(in, name);
  FOVEA_CHECK(!name.empty() && name.find('/') == std::string::npos, "corrupt checkpoint pointer ", latest.string());
  return read_checkpoint(dir / name);
}

// Copies a checkpoint's tensor `name` into `target` (shapes must agree).
inline void restore_tensor(const Checkpoint& c, const std::string& name, View target) {
  auto it = c.tensors.find(name);
  FOVEA_CHECK(it != c.tensors.end(), "checkpoint ", c.path.string(), " lacks tensor ", name);
  FOVEA_CHECK(it->second.shape == target.shape(), "checkpoint ", c.path.string(), ": tensor ", name, " is ",
              it->second.shape.str(), " but the run expects ", target.shape().str());
  copy(CView(it->second.data.data(), it->second.shape, Device::cpu()), target);
}

}  // namespace fovea::train
