// fovea/train/metrics_log.hpp: metrics.jsonl and metrics.csv, one row per logged step, flushed
// and fsynced per row; on resume the rows past the checkpoint's step are dropped so an interrupted
// run's files equal an uninterrupted run's.
#pragma once

#include <fcntl.h>
#include <unistd.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "fovea/core/error.hpp"

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
// Keeps the lines of `path` for which keep(line) is true (rewritten atomically).
template <class Keep>
void filter_lines(const std::filesystem::path& path, Keep keep) {
  if (!std::filesystem::exists(path)) return;
  std::ifstream in(path);
  std::string line, kept;
  bool first = true;
  while (std::getline(in, line)) {
    if (keep(line, first)) kept += line + "\n";
    first = false;
  }
  in.close();
  const auto tmp = path.string() + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << kept;
    out.flush();
    if (!out) FOVEA_FAIL("cannot rewrite ", path.string());
  }
  std::filesystem::rename(tmp, path);
}
inline std::int64_t step_of_json_line(const std::string& line) {
  const auto k = line.find("\"step\":");
  return k == std::string::npos ? -1 : std::stoll(line.substr(k + 7));
}
inline std::int64_t step_of_csv_line(const std::string& line) {
  try {
    return std::stoll(line.substr(0, line.find(',')));
  } catch (...) {
    return -1;
  }
}
}  // namespace detail

class MetricsLog {
 public:
  MetricsLog() = default;
  explicit MetricsLog(const std::filesystem::path& dir) : jsonl_(dir / "metrics.jsonl"), csv_(dir / "metrics.csv") {}

  // Drops rows logged after `step` (resume from a checkpoint taken at `step`).
  void truncate_after(std::int64_t step) {
    detail::filter_lines(jsonl_, [&](const std::string& l, bool) { return detail::step_of_json_line(l) <= step; });
    detail::filter_lines(csv_, [&](const std::string& l, bool first) {
      if (first) {
        header_ = l;
        return true;
      }
      return detail::step_of_csv_line(l) <= step;
    });
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
