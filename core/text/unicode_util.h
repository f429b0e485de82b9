#pragma once
// Small Unicode helpers the tokenizer needs: code point decoding, Rust's char::is_whitespace,
// lossy UTF-8 repair (String::from_utf8_lossy) and the GPT-2 byte<->unicode table.
#include <array>
#include <cstdint>
#include <string>
#include <string_view>

namespace mxlens::text {

// Decodes the (valid) UTF-8 character at s[pos]; sets `len` to its byte length.
char32_t decode_char(std::string_view s, std::size_t pos, std::size_t& len);
void append_utf8(std::string& out, char32_t cp);
// Unicode White_Space, as Rust's char::is_whitespace.
bool is_whitespace(char32_t cp);
// Invalid sequences become U+FFFD, one per maximal invalid subpart (Rust's from_utf8_lossy).
std::string utf8_lossy(std::string_view bytes);

// GPT-2 byte-level alphabet (formats.md §3.3): byte -> visible character (UTF-8 encoded).
const std::array<std::string, 256>& byte_to_visible();
// Visible code point -> byte, or -1 if the code point is not in the alphabet.
int visible_to_byte(char32_t cp);

}  // namespace mxlens::text
