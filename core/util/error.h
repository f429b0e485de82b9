#pragma once
// One exception type for everything core reads or checks: it names the file (or
// other source) and the problem, so the CLI can print it and the GUI can show it.
#include <stdexcept>
#include <string>

namespace mxlens {

class Error : public std::runtime_error {
 public:
  // `source` is what was being read (a path, "config.json", "--seqlen"); `problem` says
  // what is wrong, in words a user can act on.
  Error(std::string source, std::string problem);

  const std::string& source() const noexcept { return source_; }
  const std::string& problem() const noexcept { return problem_; }

 private:
  std::string source_;
  std::string problem_;
};

// Thrown when a Progress's cancel flag is seen; not an error, a user's choice.
class Cancelled : public std::runtime_error {
 public:
  Cancelled() : std::runtime_error("cancelled") {}
};

}  // namespace mxlens
