#include "core/io/staged_output.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <string>
#include <system_error>

#include "core/util/error.h"

namespace fs = std::filesystem;

namespace mxlens {

namespace {

std::string human_bytes(uint64_t b) {
  char buf[64];
  if (b >= (uint64_t(1) << 30))
    std::snprintf(buf, sizeof buf, "%.2f GB", double(b) / 1e9);
  else
    std::snprintf(buf, sizeof buf, "%.1f MB", double(b) / 1e6);
  return std::string(buf) + " (" + std::to_string(b) + " bytes)";
}

fs::path parent_of(const fs::path& p) {
  const fs::path parent = p.parent_path();
  return parent.empty() ? fs::path(".") : parent;
}

fs::path sibling_temp(const fs::path& out, const char* tag) {
  static std::atomic<int> counter{0};
  std::string name = ".";
  name += out.filename().string();
  name += '.';
  name += tag;
  name += "-tmp-";
  name += std::to_string(::getpid());
  name += '-';
  name += std::to_string(++counter);
  return parent_of(out) / name;
}

// fsync of one file or directory; errors are reported, not ignored: a rename of unsynced data
// could otherwise survive a crash as an empty file.
void sync_path(const fs::path& p, bool directory) {
  const int fd = ::open(p.c_str(), directory ? (O_RDONLY | O_DIRECTORY) : O_RDONLY);
  if (fd < 0) throw Error(p.string(), "cannot open to sync");
  const int rc = ::fsync(fd);
  ::close(fd);
  if (rc != 0 && !directory) throw Error(p.string(), "fsync failed");
}

void sync_tree(const fs::path& p) {
  if (fs::is_directory(p)) {
    for (const auto& e : fs::recursive_directory_iterator(p))
      if (e.is_regular_file()) sync_path(e.path(), false);
    sync_path(p, true);
  } else {
    sync_path(p, false);
  }
}

}  // namespace

void check_output_target(const fs::path& out, OutputKind kind, bool force,
                         const fs::path& source_dir) {
  if (out.empty()) throw Error("--out", "no output path given");
  if (!source_dir.empty()) {
    const fs::path src = fs::weakly_canonical(source_dir);
    const fs::path dst = fs::weakly_canonical(out);
    if (dst == src) throw Error(out.string(), "is the source checkpoint; choose another --out");
    // Replacing a directory that holds the source would delete it.
    const auto mismatch = std::mismatch(dst.begin(), dst.end(), src.begin(), src.end());
    if (mismatch.first == dst.end())
      throw Error(out.string(), "contains the source checkpoint; choose another --out");
  }
  std::error_code ec;
  const bool exists = fs::exists(fs::symlink_status(out, ec));
  if (exists && !force) throw Error(out.string(), "already exists; pass --force to replace it");
  if (exists && kind == OutputKind::directory && !fs::is_directory(out))
    throw Error(out.string(), "exists and is not a directory");
  if (exists && kind == OutputKind::file && !fs::is_regular_file(out))
    throw Error(out.string(), "exists and is not a regular file");
  if (!fs::is_directory(parent_of(out)))
    throw Error(out.string(), "parent directory " + parent_of(out).string() + " does not exist");
}

uint64_t free_bytes_at(const fs::path& path) {
  fs::path p = path;
  std::error_code ec;
  while (!p.empty() && !fs::exists(p, ec)) p = p.parent_path();
  if (p.empty()) p = ".";
  const fs::space_info info = fs::space(p, ec);
  if (ec) throw Error(path.string(), "cannot read the free space: " + ec.message());
  return info.available;
}

void check_free_space(const fs::path& out, uint64_t bytes_needed, const FreeBytesFn& free_bytes) {
  const uint64_t margin = std::max<uint64_t>(uint64_t(16) << 20, bytes_needed / 100);
  const uint64_t free = free_bytes ? free_bytes(parent_of(out)) : free_bytes_at(parent_of(out));
  if (bytes_needed + margin > free)
    throw Error(out.string(), "needs " + human_bytes(bytes_needed) + " but only " +
                                  human_bytes(free) + " are free on " +
                                  fs::weakly_canonical(parent_of(out)).string());
}

StagedOutput::StagedOutput(fs::path out, OutputKind kind, const char* tag)
    : out_(std::move(out)), temp_(sibling_temp(out_, tag)), kind_(kind) {
  if (kind_ == OutputKind::directory) {
    std::error_code ec;
    fs::create_directory(temp_, ec);
    if (ec) throw Error(temp_.string(), "cannot create the temporary directory: " + ec.message());
  }
}

StagedOutput::~StagedOutput() {
  if (committed_) return;
  std::error_code ec;
  fs::remove_all(temp_, ec);
}

void StagedOutput::commit() {
  if (committed_) return;
  if (!fs::exists(temp_)) throw Error(temp_.string(), "nothing was written");
  sync_tree(temp_);
  std::error_code ec;
  if (fs::exists(fs::symlink_status(out_, ec))) {
    const fs::path old = sibling_temp(out_, "old");
    fs::rename(out_, old, ec);
    if (ec) throw Error(out_.string(), "cannot move the existing output aside: " + ec.message());
    fs::rename(temp_, out_, ec);
    if (ec) {
      std::error_code ec2;
      fs::rename(old, out_, ec2);  // put the user's previous output back
      throw Error(out_.string(), "cannot rename the new output into place: " + ec.message());
    }
    fs::remove_all(old, ec);
  } else {
    fs::rename(temp_, out_, ec);
    if (ec) throw Error(out_.string(), "cannot rename the new output into place: " + ec.message());
  }
  committed_ = true;
  sync_path(parent_of(out_), true);
}

}  // namespace mxlens
