#pragma once
// UTF-8 checks and whole-file text reading.
#include <cstddef>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

namespace mxlens {

// Byte offset of the first invalid UTF-8 sequence (overlong forms, surrogates, code points
// above U+10FFFF, stray continuation bytes, truncated sequences), or nullopt if `s` is valid.
std::optional<std::size_t> first_invalid_utf8(std::string_view s);
inline bool is_valid_utf8(std::string_view s) {
  return !first_invalid_utf8(s).has_value();
}

// Length in bytes of the UTF-8 sequence that starts with `lead` (1 for a stray byte).
std::size_t utf8_char_length(unsigned char lead);

// Reads the whole file as is (no newline conversion). Throws Error naming the file if it
// cannot be read, is empty, or is not valid UTF-8 (the message gives the byte offset).
std::string read_text_file(const std::filesystem::path& p);

}  // namespace mxlens
