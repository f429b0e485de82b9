#define PCRE2_CODE_UNIT_WIDTH 8
#include "core/text/regex_pcre2.h"

#include <pcre2.h>

#include "core/text/utf8.h"
#include "core/util/error.h"

namespace mxlens {

struct Pcre2Regex::Code {
  pcre2_code* code = nullptr;
  ~Code() { pcre2_code_free(code); }
};

namespace {

std::string pcre2_message(int code) {
  PCRE2_UCHAR buf[256];
  pcre2_get_error_message(code, buf, sizeof buf);
  return reinterpret_cast<const char*>(buf);
}

struct MatchData {
  pcre2_match_data* data;
  explicit MatchData(const pcre2_code* code)
      : data(pcre2_match_data_create_from_pattern(code, nullptr)) {
    if (!data) throw std::bad_alloc();
  }
  ~MatchData() { pcre2_match_data_free(data); }
  MatchData(const MatchData&) = delete;
  MatchData& operator=(const MatchData&) = delete;
};

}  // namespace

bool Pcre2Regex::jit_available() {
  uint32_t jit = 0;
  return pcre2_config(PCRE2_CONFIG_JIT, &jit) >= 0 && jit == 1;
}

// Oniguruma's \s (what the Hugging Face library uses): \t..\r, U+0085 and the Unicode
// separators Zs/Zl/Zp. PCRE2's \s in UCP mode also takes U+180E, so the class is spelled out.
constexpr std::string_view kOnigSpace =
    R"(\t\n\x0B\f\r\x20\x{85}\x{A0}\x{1680}\x{2000}-\x{200A}\x{2028}\x{2029}\x{202F}\x{205F}\x{3000})";

std::string onig_compatible_pattern(std::string_view pattern) {
  std::string out;
  out.reserve(pattern.size() + 64);
  bool in_class = false;
  std::size_t class_start = 0;  // index in `pattern` just after '[' or '[^'
  for (std::size_t i = 0; i < pattern.size(); ++i) {
    const char c = pattern[i];
    if (c == '\\' && i + 1 < pattern.size()) {
      const char e = pattern[i + 1];
      ++i;
      if (e == 's') {
        if (in_class)
          out.append(kOnigSpace);
        else
          out.append("[").append(kOnigSpace).append("]");
      } else if (e == 'S' && !in_class) {
        out.append("[^").append(kOnigSpace).append("]");
      } else {
        out += '\\';
        out += e;
      }
      continue;
    }
    if (!in_class && c == '[') {
      in_class = true;
      out += c;
      if (i + 1 < pattern.size() && pattern[i + 1] == '^') out += pattern[++i];
      class_start = i + 1;
      continue;
    }
    if (in_class && c == ']' && i != class_start) in_class = false;
    out += c;
  }
  return out;
}

Pcre2Regex::Pcre2Regex(std::string_view pattern_text, const std::string& source)
    : code_(std::make_unique<Code>()), source_(source) {
  const std::string pattern = onig_compatible_pattern(pattern_text);
  int err = 0;
  PCRE2_SIZE err_offset = 0;
  code_->code =
      pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                    PCRE2_UTF | PCRE2_UCP | PCRE2_NO_UTF_CHECK, &err, &err_offset, nullptr);
  if (!code_->code)
    throw Error(source, "regex /" + std::string(pattern_text) + "/ does not compile at offset " +
                            std::to_string(err_offset) + ": " + pcre2_message(err));
  if (jit_available()) jit_ = pcre2_jit_compile(code_->code, PCRE2_JIT_COMPLETE) == 0;
}

Pcre2Regex::~Pcre2Regex() = default;

namespace {

// One match attempt from `offset`; returns false if there is none. Falls back from the JIT to
// the interpreter if the JIT stack runs out (very long runs of one character class).
bool match_at(const pcre2_code* code, std::string_view text, std::size_t offset,
              pcre2_match_data* md, const std::string& source, std::size_t& start,
              std::size_t& end) {
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  int rc = pcre2_match(code, subject, text.size(), offset, PCRE2_NO_UTF_CHECK, md, nullptr);
  if (rc == PCRE2_ERROR_JIT_STACKLIMIT)
    rc = pcre2_match(code, subject, text.size(), offset, PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT, md,
                     nullptr);
  if (rc == PCRE2_ERROR_NOMATCH) return false;
  if (rc < 0) throw Error(source, "regex match failed: " + pcre2_message(rc));
  const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
  start = ov[0];
  end = ov[1];
  return true;
}

}  // namespace

void Pcre2Regex::for_each_match(
    std::string_view text, const std::function<void(std::size_t, std::size_t)>& on_match) const {
  MatchData md(code_->code);
  std::size_t offset = 0;
  std::size_t last_end = std::string_view::npos;
  while (offset <= text.size()) {
    std::size_t start = 0, end = 0;
    if (!match_at(code_->code, text, offset, md.data, source_, start, end)) return;
    if (start == end && last_end == end) {
      // Empty match glued to the previous one: step one character and search again.
      if (offset >= text.size()) return;
      offset += utf8_char_length(static_cast<unsigned char>(text[offset]));
      continue;
    }
    on_match(start, end);
    last_end = end;
    if (end == start) {
      if (end >= text.size()) return;
      offset = end + utf8_char_length(static_cast<unsigned char>(text[end]));
    } else {
      offset = end;
    }
  }
}

bool Pcre2Regex::search(std::string_view text) const {
  MatchData md(code_->code);
  std::size_t start = 0, end = 0;
  return match_at(code_->code, text, 0, md.data, source_, start, end);
}

}  // namespace mxlens
