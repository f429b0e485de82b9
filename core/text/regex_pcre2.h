#pragma once
// A compiled PCRE2 regular expression in UTF + Unicode-property mode (\p{L}, \p{N}, (?i:...),
// lookahead), JIT-compiled when the library supports it. Immutable after construction, so one
// instance may be used from many threads (each call makes its own match data).
#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

namespace mxlens {

// The pattern is rewritten so that \s and \S mean what they mean in Oniguruma (the Hugging
// Face library's regex engine): PCRE2 would also count U+180E as a space. (\S inside a
// character class keeps PCRE2's meaning.)
std::string onig_compatible_pattern(std::string_view pattern);

class Pcre2Regex {
 public:
  // Throws Error(source, ...) if the pattern does not compile.
  Pcre2Regex(std::string_view pattern, const std::string& source);
  ~Pcre2Regex();
  Pcre2Regex(const Pcre2Regex&) = delete;
  Pcre2Regex& operator=(const Pcre2Regex&) = delete;

  // Calls on_match(start, end) for each non-overlapping match, left to right, with the
  // Oniguruma find_iter rule the Hugging Face library uses: an empty match right at the end of
  // the previous match is skipped by advancing one character.
  void for_each_match(std::string_view text,
                      const std::function<void(std::size_t, std::size_t)>& on_match) const;

  // True if the pattern matches somewhere in `text`.
  bool search(std::string_view text) const;

  bool jit() const { return jit_; }
  static bool jit_available();

 private:
  struct Code;
  std::unique_ptr<Code> code_;
  std::string source_;
  bool jit_ = false;
};

}  // namespace mxlens
