// fovea/io/folder_lock.hpp: one writer per run folder. Two runs started with the same --out (a
// command repeated in a second terminal, a scheduler starting a job twice) would otherwise write
// checkpoints, metrics and result tables over each other, and a resume would then continue a mix of
// two runs. FolderLock holds an exclusive flock(2) on "<dir>/.fovea.lock" for its lifetime; the
// second process is refused at once with the first one's pid, host, start time and command.
//
// flock locks belong to the open file, so the kernel drops the lock when the holder exits, however
// it ends (SIGKILL, OOM killer, power loss with a local disk): no stale lock to clean up, and an
// interrupted run resumes at once. The lock file stays in the folder (its text names the last
// holder, for people; nothing reads it as the lock). On file systems without flock (some network
// mounts answer ENOLCK or EOPNOTSUPP) the folder is used unlocked, as before, and held() is false.
#pragma once

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <string>
#include <string_view>
#include <utility>

#include "fovea/core/error.hpp"

namespace fovea::io {

class FolderLock {
 public:
  FolderLock() = default;
  // Locks `dir` (created when missing) for `what` (e.g. "fovea finetune", written into the lock file
  // for whoever is refused). Throws fovea::Error naming the folder and the holder when another
  // process holds it, or naming the lock file and the system error when it cannot be opened.
  FolderLock(const std::filesystem::path& dir, std::string_view what) {
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    if (ec) throw Error("cannot create the run folder '" + dir.string() + "': " + ec.message());
    path_ = dir / ".fovea.lock";
    fd_ = ::open(path_.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd_ < 0) {
      const int err = errno;
      throw Error("cannot open the lock file '" + path_.string() + "': " + std::strerror(err));
    }
    if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
      const int err = errno;
      if (err == ENOLCK || err == EOPNOTSUPP || err == ENOSYS || err == EINVAL) return;  // no locks here
      const std::string holder = read_all();
      ::close(fd_);
      fd_ = -1;
      if (err == EWOULDBLOCK)
        throw Error("the run folder '" + dir.string() + "' is in use by another fovea process (" +
                    (holder.empty() ? std::string("its lock file ") + path_.string() + " is empty" : holder) +
                    "); wait for it to end, or choose another --out");
      throw Error("cannot lock '" + path_.string() + "': " + std::strerror(err));
    }
    held_ = true;
    char host[256] = "?";
    ::gethostname(host, sizeof host - 1);
    host[sizeof host - 1] = '\0';
    char when[32] = "?";
    const std::time_t now = std::time(nullptr);
    std::tm utc{};
    if (::gmtime_r(&now, &utc) != nullptr) std::strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &utc);
    const std::string text = "pid " + std::to_string(::getpid()) + " on " + host + " since " + when + ": " +
                             std::string(what);
    // For people only: a short or failed write leaves the lock itself intact.
    if (::ftruncate(fd_, 0) == 0) (void)!::pwrite(fd_, text.data(), text.size(), 0);
  }
  FolderLock(const FolderLock&) = delete;
  FolderLock& operator=(const FolderLock&) = delete;
  FolderLock(FolderLock&& o) noexcept
      : path_(std::move(o.path_)), fd_(std::exchange(o.fd_, -1)), held_(std::exchange(o.held_, false)) {}
  FolderLock& operator=(FolderLock&& o) noexcept {
    if (this != &o) {
      release();
      path_ = std::move(o.path_);
      fd_ = std::exchange(o.fd_, -1);
      held_ = std::exchange(o.held_, false);
    }
    return *this;
  }
  ~FolderLock() { release(); }

  // Whether the folder is locked (false where the file system has no flock).
  bool held() const { return held_; }
  const std::filesystem::path& path() const { return path_; }

 private:
  void release() {
    if (fd_ >= 0) ::close(fd_);  // drops the flock
    fd_ = -1;
    held_ = false;
  }
  std::string read_all() const {
    std::string s;
    char buf[512];
    for (off_t at = 0; s.size() < 4096;) {
      const ssize_t n = ::pread(fd_, buf, sizeof buf, at);
      if (n <= 0) break;
      s.append(buf, static_cast<std::size_t>(n));
      at += n;
    }
    for (char& c : s)
      if (static_cast<unsigned char>(c) < 0x20) c = ' ';
    return s;
  }

  std::filesystem::path path_;
  int fd_ = -1;
  bool held_ = false;
};

}  // namespace fovea::io
