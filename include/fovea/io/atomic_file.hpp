// fovea/io/atomic_file.hpp: write a whole file atomically (temp file in the same directory, fsync, rename).
#pragma once

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstring>
#include <filesystem>
#include <span>
#include <string>
#include <string_view>

#include "fovea/core/error.hpp"

namespace fovea::io {

namespace detail {

inline std::string errno_text(int err) {
  if (err == ENOSPC) return std::string(std::strerror(err)) + " (the disk is full)";
  if (err == EDQUOT) return std::string(std::strerror(err)) + " (the disk quota is exhausted)";
  return std::strerror(err);
}

[[noreturn]] inline void throw_io_error(const std::filesystem::path& path, const char* what, int err) {
  FOVEA_FAIL("cannot write '", path.string(), "': ", what, ": ", errno_text(err));
}

// Closes a descriptor and removes the temp file unless released (after the rename).
class TempFileGuard {
 public:
  TempFileGuard(int fd, std::filesystem::path path) : fd_(fd), path_(std::move(path)) {}
  TempFileGuard(const TempFileGuard&) = delete;
  TempFileGuard& operator=(const TempFileGuard&) = delete;
  ~TempFileGuard() {
    if (fd_ >= 0) ::close(fd_);
    if (!path_.empty()) ::unlink(path_.c_str());
  }
  int fd() const { return fd_; }
  // Closes the descriptor, reporting the error close() returns (delayed write errors show up here).
  int close() {
    const int rc = ::close(fd_);
    fd_ = -1;
    return rc == 0 ? 0 : errno;
  }
  void keep() { path_.clear(); }

 private:
  int fd_;
  std::filesystem::path path_;
};

}  // namespace detail

// Writes `bytes` to `path` so that readers see either the old file or the complete new one, never
// a partial file: the bytes go to a temp file "<dir>/.<name>.tmp.<pid>.<n>" in the same directory,
// which is fsync'ed and renamed over `path`; then the directory is fsync'ed.
// requires: the parent directory of `path` exists and is writable; `path` is not a directory.
// ensures:  on success `path` holds exactly `bytes` (mode 0666 minus the umask; a symlink at `path`
//           is replaced by a regular file). On failure (full disk, I/O error, permissions) it throws
//           fovea::Error naming `path` and the system error, removes the temp file and leaves an
//           existing file at `path` untouched.
inline void write_file_atomically(const std::filesystem::path& path, std::span<const std::byte> bytes) {
  namespace fs = std::filesystem;
  FOVEA_CHECK(!path.empty() && path.has_filename(), "write_file_atomically: '", path.string(),
              "' does not name a file");
  const fs::path dir = path.parent_path().empty() ? fs::path(".") : path.parent_path();

  static std::atomic<unsigned> counter{0};
  int fd = -1;
  fs::path temp;
  for (int attempt = 0; attempt < 100 && fd < 0; ++attempt) {
    std::string name = ".";  // built step by step: GCC 12 -O3 warns falsely (-Wrestrict) on "." + string
    name += path.filename().string();
    name += ".tmp.";
    name += std::to_string(::getpid());
    name += '.';
    name += std::to_string(counter.fetch_add(1));
    temp = dir / name;
    fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd < 0 && errno != EEXIST)
      detail::throw_io_error(path, "cannot create a temp file in its directory", errno);
  }
  if (fd < 0) detail::throw_io_error(path, "cannot find a free temp file name", EEXIST);
  detail::TempFileGuard guard(fd, temp);

  const std::byte* p = bytes.data();
  std::size_t left = bytes.size();
  while (left > 0) {
    const ::ssize_t n = ::write(guard.fd(), p, left);
    if (n < 0) {
      if (errno == EINTR) continue;
      detail::throw_io_error(path, "write failed", errno);
    }
    if (n == 0) detail::throw_io_error(path, "write made no progress", EIO);
    p += n;
    left -= static_cast<std::size_t>(n);
  }
  if (::fsync(guard.fd()) != 0) detail::throw_io_error(path, "fsync failed", errno);
  if (const int err = guard.close(); err != 0) detail::throw_io_error(path, "close failed", err);
  if (::rename(temp.c_str(), path.c_str()) != 0) detail::throw_io_error(path, "rename failed", errno);
  guard.keep();

  // Make the rename itself durable; failure here cannot undo it, so it is not an error.
  const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
}

inline void write_file_atomically(const std::filesystem::path& path, std::string_view bytes) {
  write_file_atomically(
      path, std::span<const std::byte>(reinterpret_cast<const std::byte*>(bytes.data()), bytes.size()));
}

}  // namespace fovea::io
