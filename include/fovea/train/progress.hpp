// fovea/train/progress.hpp: progress output. On a terminal one live line (epoch, step, ETA, img/s,
// loss, lr, memory) redrawn in place; otherwise (files, CI) a plain line every N steps.
#pragma once

#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>

#include "fovea/core/memory.hpp"

namespace fovea::train {

inline std::string format_duration(double seconds) {
  if (!(seconds >= 0) || seconds > 1e7) return "--:--";
  const auto s = static_cast<long long>(seconds + 0.5);
  char buf[32];
  if (s >= 3600) std::snprintf(buf, sizeof buf, "%lld:%02lld:%02lld", s / 3600, (s / 60) % 60, s % 60);
  else std::snprintf(buf, sizeof buf, "%02lld:%02lld", s / 60, s % 60);
  return buf;
}

class Progress {
 public:
  // total_steps: for the ETA; every: plain-line period when not on a terminal.
  Progress(std::int64_t total_steps, std::int64_t every = 50, std::FILE* out = stderr)
      : total_(total_steps), every_(every < 1 ? 1 : every), out_(out), live_(::isatty(::fileno(out)) != 0),
        start_(Clock::now()), last_(start_) {}

  // Call once per step after it finished.
  void update(std::int64_t step, std::int64_t epoch, std::int64_t images, double loss, double lr, Device device) {
    images_ += images;
    const auto now = Clock::now();
    const double elapsed = seconds(start_, now);
    const double rate = elapsed > 0 ? static_cast<double>(images_) / elapsed : 0.0;
    const double per_step = (step - first_step_ + 1) > 0 ? elapsed / static_cast<double>(step - first_step_ + 1) : 0.0;
    const double eta = per_step * static_cast<double>(total_ - step - 1);
    const auto mem = memory_stats(device);
    char line[256];
    std::snprintf(line, sizeof line, "epoch %lld step %lld/%lld  loss %.4f  lr %.3g  %.0f img/s  ETA %s  mem %.0f MiB",
                  static_cast<long long>(epoch), static_cast<long long>(step + 1), static_cast<long long>(total_), loss,
                  lr, rate, format_duration(eta).c_str(), static_cast<double>(mem.current_bytes) / (1 << 20));
    if (live_) {
      if (seconds(last_, now) >= 0.2 || step + 1 == total_) {
        std::fprintf(out_, "\r%-110s", line);
        std::fflush(out_);
        last_ = now;
      }
    } else if ((step + 1) % every_ == 0 || step + 1 == total_) {
      std::fprintf(out_, "%s\n", line);
      std::fflush(out_);
    }
  }
  // Ends the live line (before other output).
  void finish_line() {
    if (live_) std::fprintf(out_, "\n");
  }
  void set_first_step(std::int64_t s) { first_step_ = s; }

 private:
  using Clock = std::chrono::steady_clock;
  static double seconds(Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double>(b - a).count(); }
  std::int64_t total_, every_;
  std::FILE* out_;
  bool live_;
  Clock::time_point start_, last_;
  std::int64_t images_ = 0, first_step_ = 0;
};

}  // namespace fovea::train
