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

Pcre2Regex::Pcre2Regex(std::string_view pattern, const std::string& source)
    : code_(std::make_unique<Code>()), source_(source) {
  int err = 0;
  PCRE2_SIZE err_offset = 0;
  code_->code =
      pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                    PCRE2_UTF | PCRE2_UCP | PCRE2_NO_UTF_CHECK, &err, &err_offset, nullptr);
  if (!code_->code)
    throw Error(source, "regex /" + std::string(pattern) + "/ does not compile at offset " +
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
