#include "core/io/mapped_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "core/util/error.h"

namespace mxlens {

namespace {

std::string errno_text(const char* what) {
  return std::string(what) + ": " + std::strerror(errno);
}

// Closes the descriptor on every path out of open(); the mapping outlives it.
struct FdGuard {
  int fd = -1;
  ~FdGuard() {
    if (fd >= 0) ::close(fd);
  }
};

}  // namespace

std::shared_ptr<MappedFile> MappedFile::open(const std::filesystem::path& path) {
  FdGuard guard;
  guard.fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (guard.fd < 0) throw Error(path.string(), errno_text("cannot open file"));
  struct stat st {};
  if (::fstat(guard.fd, &st) != 0) throw Error(path.string(), errno_text("cannot stat file"));
  if (!S_ISREG(st.st_mode)) throw Error(path.string(), "not a regular file");

  std::shared_ptr<MappedFile> file(new MappedFile());
  file->path_ = path;
  file->size_bytes_ = static_cast<uint64_t>(st.st_size);
  if (file->size_bytes_ == 0) return file;

  void* addr =
      ::mmap(nullptr, static_cast<size_t>(st.st_size), PROT_READ, MAP_PRIVATE, guard.fd, 0);
  if (addr == MAP_FAILED) throw Error(path.string(), errno_text("cannot memory-map file"));
  file->data_ = static_cast<const std::byte*>(addr);
  return file;
}

MappedFile::~MappedFile() {
  if (data_ && size_bytes_ > 0)
    ::munmap(const_cast<std::byte*>(data_), static_cast<size_t>(size_bytes_));
}

}  // namespace mxlens
