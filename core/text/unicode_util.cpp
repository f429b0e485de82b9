#include "core/text/unicode_util.h"

#include "core/text/utf8.h"

namespace mxlens::text {

char32_t decode_char(std::string_view s, std::size_t pos, std::size_t& len) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data()) + pos;
  len = utf8_char_length(p[0]);
  if (pos + len > s.size()) len = 1;
  switch (len) {
    case 2:
      return (char32_t(p[0] & 0x1F) << 6) | (p[1] & 0x3F);
    case 3:
      return (char32_t(p[0] & 0x0F) << 12) | (char32_t(p[1] & 0x3F) << 6) | (p[2] & 0x3F);
    case 4:
      return (char32_t(p[0] & 0x07) << 18) | (char32_t(p[1] & 0x3F) << 12) |
             (char32_t(p[2] & 0x3F) << 6) | (p[3] & 0x3F);
    default:
      return p[0];
  }
}

void append_utf8(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

bool is_whitespace(char32_t cp) {
  return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
         (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F ||
         cp == 0x205F || cp == 0x3000;
}

std::string utf8_lossy(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size());
  const auto* p = reinterpret_cast<const unsigned char*>(bytes.data());
  const std::size_t n = bytes.size();
  std::size_t i = 0;
  while (i < n) {
    auto bad = first_invalid_utf8(bytes.substr(i));
    if (!bad) {
      out.append(bytes.substr(i));
      break;
    }
    out.append(bytes.substr(i, *bad));
    i += *bad;
    // Length of the maximal subpart of a valid sequence starting at p[i].
    const unsigned char c = p[i];
    std::size_t need = 0;
    unsigned char lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF)
      need = 2;
    else if (c == 0xE0)
      need = 3, lo = 0xA0;
    else if (c == 0xED)
      need = 3, hi = 0x9F;
    else if (c >= 0xE1 && c <= 0xEF)
      need = 3;
    else if (c == 0xF0)
      need = 4, lo = 0x90;
    else if (c >= 0xF1 && c <= 0xF3)
      need = 4;
    else if (c == 0xF4)
      need = 4, hi = 0x8F;
    std::size_t take = 1;
    if (need > 0 && i + 1 < n && p[i + 1] >= lo && p[i + 1] <= hi) {
      take = 2;
      while (take < need && i + take < n && (p[i + take] & 0xC0) == 0x80) ++take;
    }
    out += "\xEF\xBF\xBD";
    i += take;
  }
  return out;
}

namespace {

struct ByteTables {
  std::array<std::string, 256> to_visible;
  std::array<int, 0x144> from_visible{};
  ByteTables() {
    from_visible.fill(-1);
    int next = 0x100;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
      const char32_t cp = printable ? char32_t(b) : char32_t(next++);
      append_utf8(to_visible[b], cp);
      from_visible[cp] = b;
    }
  }
};

const ByteTables& tables() {
  static const ByteTables t;
  return t;
}

}  // namespace

const std::array<std::string, 256>& byte_to_visible() {
  return tables().to_visible;
}

int visible_to_byte(char32_t cp) {
  return cp < tables().from_visible.size() ? tables().from_visible[cp] : -1;
}

}  // namespace mxlens::text
