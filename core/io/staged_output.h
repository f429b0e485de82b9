#pragma once
// Writing a result (an exported checkpoint, a planted copy, one file) so that nothing that
// looks complete exists until it is: everything goes to a hidden temporary name beside the
// target, which is renamed into place by commit(). A crash or Cancelled before commit() leaves
// at most a ".<name>.<tag>-tmp-<pid>-<n>" entry that no loader mistakes for the result (and
// the destructor removes it when it runs). With `replace`, an existing target is moved aside
// and removed only after the new one is in place.
#include <cstdint>
#include <filesystem>
#include <functional>

namespace mxlens {

// Refusals before anything is written, each an Error naming `out`:
//   - `out` exists and !force ("already exists; pass --force to replace it");
//   - `out` exists and is not of the kind written (directory / regular file);
//   - `out` is or contains `source_dir` (when given), which replacing would delete;
//   - the parent directory does not exist.
enum class OutputKind { directory, file };
void check_output_target(const std::filesystem::path& out, OutputKind kind, bool force,
                         const std::filesystem::path& source_dir = {});

// Free bytes on the file system that holds `path` (or its nearest existing parent).
uint64_t free_bytes_at(const std::filesystem::path& path);
// Throws Error(out, "needs N (…) but only M (…) are free on <fs path>") when `bytes_needed`
// plus a 1 % / 16 MiB margin does not fit. Sizes are printed in MB/GB and bytes. `free_bytes`
// answers for the output's parent directory (default: free_bytes_at).
using FreeBytesFn = std::function<uint64_t(const std::filesystem::path&)>;
void check_free_space(const std::filesystem::path& out, uint64_t bytes_needed,
                      const FreeBytesFn& free_bytes = {});

class StagedOutput {
 public:
  // Creates the temporary directory (kind directory) or reserves the temporary file name
  // (kind file) beside `out`. `tag` names the writer ("export", "plant").
  StagedOutput(std::filesystem::path out, OutputKind kind, const char* tag);
  StagedOutput(const StagedOutput&) = delete;
  StagedOutput& operator=(const StagedOutput&) = delete;
  // Removes the temporary entry unless commit() succeeded.
  ~StagedOutput();

  // Where to write: the temporary directory, or the temporary file path.
  const std::filesystem::path& path() const { return temp_; }
  const std::filesystem::path& target() const { return out_; }

  // fsyncs the temporary file(s), renames into place (replacing an existing target: moved
  // aside first, removed after), fsyncs the parent directory. Throws Error on failure, in
  // which case an existing target is restored.
  void commit();

 private:
  std::filesystem::path out_;
  std::filesystem::path temp_;
  OutputKind kind_;
  bool committed_ = false;
};

}  // namespace mxlens
