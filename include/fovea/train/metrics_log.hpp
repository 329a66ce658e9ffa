// fovea/train/metrics_log.hpp: metrics.jsonl and metrics.csv, one row per logged step, flushed
// and fsynced per row; on resume the rows past the checkpoint's step are dropped so an interrupted
// run's files equal an uninterrupted run's.
#pragma once

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "fovea/core/error.hpp"
#include "fovea/io/atomic_file.hpp"

namespace fovea::train {

// One row: the step, then named values in a fixed column order (the first row fixes the columns).
struct MetricsRow {
  std::int64_t step = 0;
  std::int64_t epoch = 0;
  std::string phase = "train";  // train | val | test
  std::vector<std::pair<std::string, double>> values;
};

namespace detail {
inline std::string json_number(double v) {
  if (std::isnan(v)) return "NaN";  // JSON has no NaN; readers of metrics.jsonl accept NaN (Python's json does)
  if (std::isinf(v)) return v > 0 ? "Infinity" : "-Infinity";
  std::ostringstream os;
  os.precision(9);
  os << v;
  return os.str();
}
inline void append_line(const std::filesystem::path& path, const std::string& line) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) FOVEA_FAIL("cannot open ", path.string(), " for appending");
  const std::string data = line + "\n";
  const char* p = data.data();
  std::size_t left = data.size();
  while (left > 0) {
    const ssize_t n = ::write(fd, p, left);
    if (n < 0) {
      ::close(fd);
      FOVEA_FAIL("cannot write to ", path.string(), " (disk full?)");
    }
    p += n;
    left -= static_cast<std::size_t>(n);
  }
  ::fsync(fd);
  ::close(fd);
}
// The complete lines of a file fovea appends to. Every record is written with its line end in one
// write (append_line), so text after the last line end is a record cut short (a full disk, a kill
// mid-write) and is not returned.
inline std::vector<std::string> complete_lines(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) FOVEA_FAIL("cannot read ", path.string());
  std::ostringstream all;
  all << in.rdbuf();
  const std::string text = all.str();
  std::vector<std::string> lines;
  for (std::size_t begin = 0, end; (end = text.find('\n', begin)) != std::string::npos; begin = end + 1)
    lines.push_back(text.substr(begin, end - begin));
  return lines;
}
// Rewrites `path` atomically with `lines`, each ended by a line end.
inline void rewrite_lines(const std::filesystem::path& path, const std::vector<std::string>& lines) {
  std::string text;
  for (const std::string& l : lines) text += l + "\n";
  io::write_file_atomically(path, std::string_view(text));
}
// The whole decimal integer s, or -1 when s is not one (empty, a sign, other characters).
inline std::int64_t whole_step(std::string_view s) {
  std::int64_t v = -1;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  return ec == std::errc() && end == s.data() + s.size() && v >= 0 ? v : -1;
}
// The step of a metrics.jsonl record `{"step":N,...}`, or -1 when the line is not a whole record
// in the form log() writes.
inline std::int64_t step_of_json_line(std::string_view line) {
  constexpr std::string_view key = "{\"step\":";
  if (line.size() < key.size() + 2 || line.substr(0, key.size()) != key || line.back() != '}') return -1;
  const std::string_view rest = line.substr(key.size());
  return whole_step(rest.substr(0, std::min(rest.find(','), rest.size() - 1)));
}
// The step of a metrics.csv row (its first field), or -1 when it is not a row of `fields` fields
// whose first is a step.
inline std::int64_t step_of_csv_line(std::string_view line, std::size_t fields) {
  if (static_cast<std::size_t>(std::count(line.begin(), line.end(), ',')) + 1 != fields) return -1;
  return whole_step(line.substr(0, line.find(',')));
}
}  // namespace detail

class MetricsLog {
 public:
  MetricsLog() = default;
  explicit MetricsLog(const std::filesystem::path& dir) : jsonl_(dir / "metrics.jsonl"), csv_(dir / "metrics.csv") {}

  // Drops rows logged after `step` (resume from a checkpoint taken at `step`), and every line that
  // is not a whole record: text after the last line end (a write cut short by a full disk or a
  // kill) and lines that do not parse, so that rows appended next start on a line of their own.
  // Each file is rewritten atomically. A metrics.csv whose header is cut short is removed (the next
  // row writes the header again).
  void truncate_after(std::int64_t step) {
    namespace fs = std::filesystem;
    if (fs::exists(jsonl_)) {
      std::vector<std::string> kept;
      for (const std::string& l : detail::complete_lines(jsonl_)) {
        const std::int64_t s = detail::step_of_json_line(l);
        if (s >= 0 && s <= step) kept.push_back(l);
      }
      detail::rewrite_lines(jsonl_, kept);
    }
    header_.clear();
    if (fs::exists(csv_)) {
      const std::vector<std::string> lines = detail::complete_lines(csv_);
      if (lines.empty() || lines.front().rfind("step,epoch,phase", 0) != 0) {
        fs::remove(csv_);
        return;
      }
      header_ = lines.front();
      const auto fields = static_cast<std::size_t>(std::count(header_.begin(), header_.end(), ',')) + 1;
      std::vector<std::string> kept{header_};
      for (std::size_t i = 1; i < lines.size(); ++i) {
        const std::int64_t s = detail::step_of_csv_line(lines[i], fields);
        if (s >= 0 && s <= step) kept.push_back(lines[i]);
      }
      detail::rewrite_lines(csv_, kept);
    }
  }

  void log(const MetricsRow& row) {
    std::ostringstream js;
    js << "{\"step\":" << row.step << ",\"epoch\":" << row.epoch << ",\"phase\":\"" << row.phase << '"';
    for (const auto& [k, v] : row.values) js << ",\"" << k << "\":" << detail::json_number(v);
    js << '}';
    detail::append_line(jsonl_, js.str());

    std::ostringstream header;
    header << "step,epoch,phase";
    for (const auto& [k, v] : row.values) header << ',' << k;
    if (header_.empty() && !std::filesystem::exists(csv_)) {
      detail::append_line(csv_, header.str());
      header_ = header.str();
    } else if (header_.empty()) {
      std::ifstream in(csv_);
      std::getline(in, header_);
    }
    // Rows of another phase may carry other columns: they are written under the header's columns
    // (missing values empty); the jsonl file has every value.
    std::ostringstream cs;
    cs << row.step << ',' << row.epoch << ',' << row.phase;
    std::stringstream hs(header_);
    std::string col;
    int index = 0;
    while (std::getline(hs, col, ',')) {
      if (index++ < 3) continue;
      cs << ',';
      for (const auto& [k, v] : row.values)
        if (k == col) {
          cs << detail::json_number(v);
          break;
        }
    }
    detail::append_line(csv_, cs.str());
  }

  const std::filesystem::path& jsonl_path() const { return jsonl_; }
  const std::filesystem::path& csv_path() const { return csv_; }

 private:
  std::filesystem::path jsonl_, csv_;
  std::string header_;
};

}  // namespace fovea::train
