#include "core/text/pipeline.h"

#include <algorithm>
#include <functional>

#include <nlohmann/json.hpp>

#include "core/text/regex_pcre2.h"
#include "core/text/unicode_util.h"
#include "core/text/utf8.h"
#include "core/util/error.h"

namespace mxlens::text {

namespace {

using nlohmann::json;

std::string type_of(const json& j, const std::string& source, const char* kind) {
  if (!j.is_object()) throw Error(source, std::string(kind) + " is not a JSON object");
  auto t = j.find("type");
  if (t == j.end() || !t->is_string())
    throw Error(source, std::string(kind) + " has no \"type\" string");
  return t->get<std::string>();
}

const json& field(const json& j, const char* key, const std::string& source,
                  const std::string& where) {
  auto it = j.find(key);
  if (it == j.end()) throw Error(source, where + " has no \"" + key + "\"");
  return *it;
}

std::string string_field(const json& j, const char* key, const std::string& source,
                         const std::string& where) {
  const json& v = field(j, key, source, where);
  if (!v.is_string()) throw Error(source, where + "." + key + " is not a string");
  return v.get<std::string>();
}

bool bool_field(const json& j, const char* key, bool fallback, const std::string& source,
                const std::string& where) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return fallback;
  if (!it->is_boolean()) throw Error(source, where + "." + key + " is not a boolean");
  return it->get<bool>();
}

// A single character given as a string ("▁").
char32_t char_field(const json& j, const char* key, const std::string& source,
                    const std::string& where) {
  const std::string s = string_field(j, key, source, where);
  std::size_t len = 0;
  if (s.empty() || (decode_char(s, 0, len), len != s.size()))
    throw Error(source, where + "." + key + " must be exactly one character");
  return decode_char(s, 0, len);
}

// {"String": "..."} or {"Regex": "..."}: a literal or a PCRE2 regex.
class Pattern {
 public:
  Pattern(const json& j, const std::string& source, const std::string& where) {
    if (!j.is_object() || j.size() != 1)
      throw Error(source, where + ".pattern must be {\"String\": ...} or {\"Regex\": ...}");
    if (auto s = j.find("String"); s != j.end() && s->is_string()) {
      literal_ = s->get<std::string>();
      if (literal_.empty()) throw Error(source, where + ".pattern is an empty string");
    } else if (auto r = j.find("Regex"); r != j.end() && r->is_string()) {
      regex_ = std::make_unique<Pcre2Regex>(r->get<std::string>(), source);
    } else {
      throw Error(source, where + ".pattern must be {\"String\": ...} or {\"Regex\": ...}");
    }
  }
  // Matches (start, end), non-overlapping, left to right.
  std::vector<std::pair<std::size_t, std::size_t>> matches(std::string_view s) const {
    std::vector<std::pair<std::size_t, std::size_t>> out;
    if (regex_) {
      regex_->for_each_match(s, [&](std::size_t a, std::size_t b) { out.emplace_back(a, b); });
    } else {
      for (std::size_t pos = s.find(literal_); pos != std::string_view::npos;
           pos = s.find(literal_, pos + literal_.size()))
        out.emplace_back(pos, pos + literal_.size());
    }
    return out;
  }
  std::string replace_all(std::string_view s, std::string_view content) const {
    std::string out;
    std::size_t prev = 0;
    for (auto [a, b] : matches(s)) {
      out.append(s.substr(prev, a - prev));
      out.append(content);
      prev = b;
    }
    out.append(s.substr(prev));
    return out;
  }

 private:
  std::string literal_;
  std::unique_ptr<Pcre2Regex> regex_;
};

// ---------------------------------------------------------------- normalizers

class SequenceNormalizer : public Normalizer {
 public:
  std::vector<std::unique_ptr<Normalizer>> parts;
  void normalize(std::string& s) const override {
    for (const auto& p : parts) p->normalize(s);
  }
};

class PrependNormalizer : public Normalizer {
 public:
  std::string prepend;
  void normalize(std::string& s) const override {
    if (!s.empty()) s.insert(0, prepend);
  }
};

class ReplaceNormalizer : public Normalizer {
 public:
  ReplaceNormalizer(const json& j, const std::string& source)
      : pattern(field(j, "pattern", source, "normalizer Replace"), source, "normalizer Replace"),
        content(string_field(j, "content", source, "normalizer Replace")) {}
  Pattern pattern;
  std::string content;
  void normalize(std::string& s) const override { s = pattern.replace_all(s, content); }
};

class StripNormalizer : public Normalizer {
 public:
  bool left = true, right = true;
  void normalize(std::string& s) const override {
    std::size_t begin = 0, end = s.size();
    if (left) {
      while (begin < end) {
        std::size_t len = 0;
        if (!is_whitespace(decode_char(s, begin, len))) break;
        begin += len;
      }
    }
    if (right) {
      while (end > begin) {
        std::size_t start = end - 1;
        while (start > begin && (static_cast<unsigned char>(s[start]) & 0xC0) == 0x80) --start;
        std::size_t len = 0;
        if (!is_whitespace(decode_char(s, start, len))) break;
        end = start;
      }
    }
    s = s.substr(begin, end - begin);
  }
};

// ---------------------------------------------------------------- pre-tokenizers

enum class SplitBehavior { Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous };

struct Segment {
  std::size_t start, end;
  bool flag;  // is_match before the behavior, "remove" after it
};

// The library's NormalizedString::split: `matches` become a covering list of segments,
// merged per `behavior`; returns the kept (start, end) ranges.
std::vector<std::pair<std::size_t, std::size_t>> split_ranges(
    std::size_t size, const std::vector<std::pair<std::size_t, std::size_t>>& matches,
    SplitBehavior behavior, bool invert) {
  std::vector<Segment> segs;
  if (size == 0) {
    segs.push_back({0, 0, false});
  } else {
    std::size_t prev = 0;
    for (auto [a, b] : matches) {
      if (prev != a) segs.push_back({prev, a, false});
      segs.push_back({a, b, true});
      prev = b;
    }
    if (prev != size) segs.push_back({prev, size, false});
  }
  if (invert)
    for (auto& s : segs) s.flag = !s.flag;

  std::vector<Segment> out;
  switch (behavior) {
    case SplitBehavior::Isolated:
      for (auto s : segs) out.push_back({s.start, s.end, false});
      break;
    case SplitBehavior::Removed:
      out = segs;
      break;
    case SplitBehavior::Contiguous: {
      bool previous = false;
      for (auto s : segs) {
        if (s.flag == previous && !out.empty())
          out.back().end = s.end;
        else
          out.push_back({s.start, s.end, false});
        previous = s.flag;
      }
      break;
    }
    case SplitBehavior::MergedWithPrevious: {
      bool previous = false;
      for (auto s : segs) {
        if (s.flag && !previous && !out.empty())
          out.back().end = s.end;
        else
          out.push_back({s.start, s.end, false});
        previous = s.flag;
      }
      break;
    }
    case SplitBehavior::MergedWithNext: {
      bool previous = false;
      for (auto it = segs.rbegin(); it != segs.rend(); ++it) {
        if (it->flag && !previous && !out.empty())
          out.back().start = it->start;
        else
          out.push_back({it->start, it->end, false});
        previous = it->flag;
      }
      std::reverse(out.begin(), out.end());
      break;
    }
  }
  std::vector<std::pair<std::size_t, std::size_t>> kept;
  for (auto s : out)
    if (!s.flag && s.end > s.start) kept.emplace_back(s.start, s.end);
  return kept;
}

void split_pieces(
    std::vector<PreToken>& pieces,
    const std::function<std::vector<std::pair<std::size_t, std::size_t>>(const std::string&)>&
        ranges_of) {
  std::vector<PreToken> out;
  out.reserve(pieces.size());
  for (auto& p : pieces) {
    for (auto [a, b] : ranges_of(p.text))
      out.push_back(PreToken{p.text.substr(a, b - a), p.at_input_start && a == 0});
  }
  pieces = std::move(out);
}

SplitBehavior parse_behavior(const json& j, const std::string& source) {
  const std::string b = string_field(j, "behavior", source, "pre_tokenizer Split");
  if (b == "Removed") return SplitBehavior::Removed;
  if (b == "Isolated") return SplitBehavior::Isolated;
  if (b == "MergedWithPrevious") return SplitBehavior::MergedWithPrevious;
  if (b == "MergedWithNext") return SplitBehavior::MergedWithNext;
  if (b == "Contiguous") return SplitBehavior::Contiguous;
  throw Error(source, "unsupported Split behavior '" + b + "'");
}

class SequencePreTokenizer : public PreTokenizer {
 public:
  std::vector<std::unique_ptr<PreTokenizer>> parts;
  void pre_tokenize(std::vector<PreToken>& pieces) const override {
    for (const auto& p : parts) p->pre_tokenize(pieces);
  }
};

class SplitPreTokenizer : public PreTokenizer {
 public:
  SplitPreTokenizer(const json& j, const std::string& source)
      : pattern(field(j, "pattern", source, "pre_tokenizer Split"), source, "pre_tokenizer Split"),
        behavior(parse_behavior(j, source)),
        invert(bool_field(j, "invert", false, source, "pre_tokenizer Split")) {}
  Pattern pattern;
  SplitBehavior behavior;
  bool invert;
  void pre_tokenize(std::vector<PreToken>& pieces) const override {
    split_pieces(pieces, [&](const std::string& s) {
      return split_ranges(s.size(), pattern.matches(s), behavior, invert);
    });
  }
};

constexpr std::string_view kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

class ByteLevelPreTokenizer : public PreTokenizer {
 public:
  ByteLevelPreTokenizer(const json& j, const std::string& source)
      : add_prefix_space(bool_field(j, "add_prefix_space", true, source, "ByteLevel")),
        use_regex(bool_field(j, "use_regex", true, source, "ByteLevel")) {
    if (use_regex) regex = std::make_unique<Pcre2Regex>(kGpt2Pattern, source);
  }
  bool add_prefix_space;
  bool use_regex;
  std::unique_ptr<Pcre2Regex> regex;
  void pre_tokenize(std::vector<PreToken>& pieces) const override {
    if (add_prefix_space)
      for (auto& p : pieces)
        if (p.text.empty() || p.text[0] != ' ') p.text.insert(0, 1, ' ');
    if (use_regex) {
      split_pieces(pieces, [&](const std::string& s) {
        std::vector<std::pair<std::size_t, std::size_t>> m;
        regex->for_each_match(s, [&](std::size_t a, std::size_t b) { m.emplace_back(a, b); });
        return split_ranges(s.size(), m, SplitBehavior::Isolated, false);
      });
    }
    const auto& table = byte_to_visible();
    for (auto& p : pieces) {
      std::string mapped;
      mapped.reserve(p.text.size() * 2);
      for (char c : p.text) mapped += table[static_cast<unsigned char>(c)];
      p.text = std::move(mapped);
    }
  }
};

enum class PrependScheme { Always, First, Never };

PrependScheme parse_prepend_scheme(const json& j, const std::string& source) {
  auto it = j.find("prepend_scheme");
  if (it == j.end() || it->is_null())
    return bool_field(j, "add_prefix_space", true, source, "Metaspace") ? PrependScheme::Always
                                                                        : PrependScheme::Never;
  const std::string s = it->is_string() ? it->get<std::string>() : "";
  if (s == "always") return PrependScheme::Always;
  if (s == "first") return PrependScheme::First;
  if (s == "never") return PrependScheme::Never;
  throw Error(source, "unsupported Metaspace prepend_scheme '" + it->dump() + "'");
}

class MetaspacePreTokenizer : public PreTokenizer {
 public:
  MetaspacePreTokenizer(const json& j, const std::string& source)
      : scheme(parse_prepend_scheme(j, source)),
        split(bool_field(j, "split", true, source, "Metaspace")) {
    append_utf8(replacement, char_field(j, "replacement", source, "Metaspace"));
  }
  std::string replacement;
  PrependScheme scheme;
  bool split;
  void pre_tokenize(std::vector<PreToken>& pieces) const override {
    for (auto& p : pieces) {
      std::string r;
      r.reserve(p.text.size() + 8);
      for (char c : p.text) {
        if (c == ' ')
          r += replacement;
        else
          r += c;
      }
      const bool starts = r.compare(0, replacement.size(), replacement) == 0;
      if (!starts &&
          (scheme == PrependScheme::Always || (scheme == PrependScheme::First && p.at_input_start)))
        r.insert(0, replacement);
      p.text = std::move(r);
    }
    if (split) {
      split_pieces(pieces, [&](const std::string& s) {
        std::vector<std::pair<std::size_t, std::size_t>> m;
        for (std::size_t pos = s.find(replacement); pos != std::string::npos;
             pos = s.find(replacement, pos + replacement.size()))
          m.emplace_back(pos, pos + replacement.size());
        return split_ranges(s.size(), m, SplitBehavior::MergedWithNext, false);
      });
    }
  }
};

// ---------------------------------------------------------------- post-processors

class TemplatePostProcessor : public PostProcessor {
 public:
  struct Item {
    bool is_sequence;
    std::vector<int32_t> ids;  // special token ids
  };
  std::vector<Item> single;
  void process(std::vector<int32_t>& ids, bool add_special_tokens) const override {
    if (!add_special_tokens) return;
    std::vector<int32_t> out;
    out.reserve(ids.size() + 4);
    for (const auto& item : single) {
      if (item.is_sequence)
        out.insert(out.end(), ids.begin(), ids.end());
      else
        out.insert(out.end(), item.ids.begin(), item.ids.end());
    }
    ids = std::move(out);
  }
  std::optional<int32_t> bos_id() const override {
    if (single.size() >= 2 && !single[0].is_sequence && single[0].ids.size() == 1)
      return single[0].ids[0];
    return std::nullopt;
  }
  std::optional<int32_t> eos_id() const override {
    if (single.size() >= 2 && !single.back().is_sequence && single.back().ids.size() == 1)
      return single.back().ids[0];
    return std::nullopt;
  }
};

// ByteLevel as a post-processor only trims offsets: ids are unchanged.
class OffsetsOnlyPostProcessor : public PostProcessor {
 public:
  void process(std::vector<int32_t>&, bool) const override {}
};

class SequencePostProcessor : public PostProcessor {
 public:
  std::vector<std::unique_ptr<PostProcessor>> parts;
  void process(std::vector<int32_t>& ids, bool add_special_tokens) const override {
    for (const auto& p : parts) p->process(ids, add_special_tokens);
  }
  std::optional<int32_t> bos_id() const override {
    for (const auto& p : parts)
      if (auto id = p->bos_id()) return id;
    return std::nullopt;
  }
  std::optional<int32_t> eos_id() const override {
    for (const auto& p : parts)
      if (auto id = p->eos_id()) return id;
    return std::nullopt;
  }
};

std::unique_ptr<TemplatePostProcessor> make_template(const json& j, const std::string& source,
                                                     int vocab_size) {
  const std::string where = "post_processor TemplateProcessing";
  auto t = std::make_unique<TemplatePostProcessor>();
  const json& specials = field(j, "special_tokens", source, where);
  if (!specials.is_object()) throw Error(source, where + ".special_tokens is not an object");
  const json& single = field(j, "single", source, where);
  if (!single.is_array()) throw Error(source, where + ".single is not an array");
  for (const auto& item : single) {
    if (auto seq = item.find("Sequence"); seq != item.end()) {
      if (string_field(*seq, "id", source, where) != "A")
        throw Error(source, where + ".single refers to a sequence other than A");
      t->single.push_back({true, {}});
    } else if (auto sp = item.find("SpecialToken"); sp != item.end()) {
      const std::string name = string_field(*sp, "id", source, where);
      auto def = specials.find(name);
      if (def == specials.end())
        throw Error(source, where + ": special token '" + name + "' is not in special_tokens");
      const json& ids = field(*def, "ids", source, where + ".special_tokens['" + name + "']");
      if (!ids.is_array()) throw Error(source, where + ": ids of '" + name + "' not an array");
      TemplatePostProcessor::Item it{false, {}};
      for (const auto& id : ids) {
        if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() >= vocab_size)
          throw Error(source, where + ": special token '" + name + "' has an id outside the vocab");
        it.ids.push_back(static_cast<int32_t>(id.get<int64_t>()));
      }
      t->single.push_back(std::move(it));
    } else {
      throw Error(source, where + ".single has an item that is neither Sequence nor SpecialToken");
    }
  }
  return t;
}

// ---------------------------------------------------------------- decoders

class SequenceDecoder : public Decoder {
 public:
  std::vector<std::unique_ptr<Decoder>> parts;
  void decode_chain(std::vector<std::string>& tokens) const override {
    for (const auto& p : parts) p->decode_chain(tokens);
  }
  bool is_byte_level() const override {
    return std::any_of(parts.begin(), parts.end(), [](auto& p) { return p->is_byte_level(); });
  }
  bool has_byte_fallback() const override {
    return std::any_of(parts.begin(), parts.end(), [](auto& p) { return p->has_byte_fallback(); });
  }
};

class ByteLevelDecoder : public Decoder {
 public:
  void decode_chain(std::vector<std::string>& tokens) const override {
    std::string bytes;
    for (const auto& t : tokens) {
      std::string mapped;
      bool ok = true;
      for (std::size_t i = 0; i < t.size() && ok;) {
        std::size_t len = 0;
        const int b = visible_to_byte(decode_char(t, i, len));
        if (b < 0)
          ok = false;
        else
          mapped += static_cast<char>(b);
        i += len;
      }
      bytes += ok ? mapped : t;
    }
    tokens.assign(1, utf8_lossy(bytes));
  }
  bool is_byte_level() const override { return true; }
};

class ReplaceDecoder : public Decoder {
 public:
  ReplaceDecoder(const json& j, const std::string& source)
      : pattern(field(j, "pattern", source, "decoder Replace"), source, "decoder Replace"),
        content(string_field(j, "content", source, "decoder Replace")) {}
  Pattern pattern;
  std::string content;
  void decode_chain(std::vector<std::string>& tokens) const override {
    for (auto& t : tokens) t = pattern.replace_all(t, content);
  }
};

class ByteFallbackDecoder : public Decoder {
 public:
  static std::optional<unsigned char> byte_of(const std::string& t) {
    if (t.size() != 6 || t.compare(0, 3, "<0x") != 0 || t[5] != '>') return std::nullopt;
    // Rust's u8::from_str_radix on the two characters (a leading '+' is accepted).
    auto hex = [](char c) -> int {
      if (c >= '0' && c <= '9') return c - '0';
      if (c >= 'a' && c <= 'f') return c - 'a' + 10;
      if (c >= 'A' && c <= 'F') return c - 'A' + 10;
      return -1;
    };
    if (t[3] == '+') {
      const int v = hex(t[4]);
      return v < 0 ? std::nullopt : std::optional<unsigned char>(static_cast<unsigned char>(v));
    }
    const int hi = hex(t[3]), lo = hex(t[4]);
    if (hi < 0 || lo < 0) return std::nullopt;
    return static_cast<unsigned char>(hi * 16 + lo);
  }
  void decode_chain(std::vector<std::string>& tokens) const override {
    std::vector<std::string> out;
    std::string pending;
    auto flush = [&] {
      if (pending.empty()) return;
      if (is_valid_utf8_bytes(pending))
        out.push_back(pending);
      else
        for (std::size_t k = 0; k < pending.size(); ++k) out.emplace_back("\xEF\xBF\xBD");
      pending.clear();
    };
    for (auto& t : tokens) {
      if (auto b = byte_of(t)) {
        pending += static_cast<char>(*b);
      } else {
        flush();
        out.push_back(std::move(t));
      }
    }
    flush();
    tokens = std::move(out);
  }
  bool has_byte_fallback() const override { return true; }

 private:
  static bool is_valid_utf8_bytes(const std::string& s) { return utf8_lossy(s) == s; }
};

class FuseDecoder : public Decoder {
 public:
  void decode_chain(std::vector<std::string>& tokens) const override {
    std::string all;
    for (const auto& t : tokens) all += t;
    tokens.assign(1, std::move(all));
  }
};

class StripDecoder : public Decoder {
 public:
  char32_t content;
  std::size_t start, stop;
  void decode_chain(std::vector<std::string>& tokens) const override {
    for (auto& t : tokens) {
      std::vector<std::pair<std::size_t, std::size_t>> chars;  // (offset, len)
      for (std::size_t i = 0; i < t.size();) {
        std::size_t len = 0;
        decode_char(t, i, len);
        chars.emplace_back(i, len);
        i += len;
      }
      auto is_content = [&](std::size_t k) {
        std::size_t len = 0;
        return decode_char(t, chars[k].first, len) == content;
      };
      std::size_t start_cut = 0;
      for (std::size_t k = 0; k < std::min(start, chars.size()); ++k) {
        if (!is_content(k)) break;
        start_cut = k + 1;
      }
      std::size_t stop_cut = chars.size();
      for (std::size_t k = 0; k < std::min(stop, chars.size()); ++k) {
        const std::size_t index = chars.size() - k - 1;
        if (!is_content(index)) break;
        stop_cut = index;
      }
      if (stop_cut <= start_cut) {
        t.clear();
        continue;
      }
      const std::size_t from = chars[start_cut].first;
      const std::size_t to = stop_cut == chars.size() ? t.size() : chars[stop_cut].first;
      t = t.substr(from, to - from);
    }
  }
};

class MetaspaceDecoder : public Decoder {
 public:
  char32_t replacement;
  PrependScheme scheme;
  void decode_chain(std::vector<std::string>& tokens) const override {
    for (std::size_t i = 0; i < tokens.size(); ++i) {
      std::string out;
      const std::string& t = tokens[i];
      for (std::size_t k = 0; k < t.size();) {
        std::size_t len = 0;
        const char32_t c = decode_char(t, k, len);
        if (c == replacement) {
          if (!(i == 0 && scheme != PrependScheme::Never)) out += ' ';
        } else {
          out.append(t, k, len);
        }
        k += len;
      }
      tokens[i] = std::move(out);
    }
  }
};

}  // namespace

// ---------------------------------------------------------------- factories

std::unique_ptr<Normalizer> make_normalizer(const json& j, const std::string& source) {
  if (j.is_null()) return nullptr;
  const std::string type = type_of(j, source, "normalizer");
  if (type == "Sequence") {
    auto seq = std::make_unique<SequenceNormalizer>();
    const json& list = field(j, "normalizers", source, "normalizer Sequence");
    if (!list.is_array()) throw Error(source, "normalizer Sequence.normalizers is not an array");
    for (const auto& n : list) {
      if (n.is_null()) throw Error(source, "normalizer Sequence holds a null normalizer");
      seq->parts.push_back(make_normalizer(n, source));
    }
    return seq;
  }
  if (type == "Prepend") {
    auto p = std::make_unique<PrependNormalizer>();
    p->prepend = string_field(j, "prepend", source, "normalizer Prepend");
    return p;
  }
  if (type == "Replace") return std::make_unique<ReplaceNormalizer>(j, source);
  if (type == "Strip") {
    auto s = std::make_unique<StripNormalizer>();
    s->left = bool_field(j, "strip_left", true, source, "normalizer Strip");
    s->right = bool_field(j, "strip_right", true, source, "normalizer Strip");
    return s;
  }
  throw Error(source, "unsupported normalizer '" + type +
                          "' (supported: Sequence, Prepend, Replace, Strip)");
}

std::unique_ptr<PreTokenizer> make_pre_tokenizer(const json& j, const std::string& source) {
  if (j.is_null()) return nullptr;
  const std::string type = type_of(j, source, "pre_tokenizer");
  if (type == "Sequence") {
    auto seq = std::make_unique<SequencePreTokenizer>();
    const json& list = field(j, "pretokenizers", source, "pre_tokenizer Sequence");
    if (!list.is_array())
      throw Error(source, "pre_tokenizer Sequence.pretokenizers is not an array");
    for (const auto& p : list) {
      if (p.is_null()) throw Error(source, "pre_tokenizer Sequence holds a null pre-tokenizer");
      seq->parts.push_back(make_pre_tokenizer(p, source));
    }
    return seq;
  }
  if (type == "Split") return std::make_unique<SplitPreTokenizer>(j, source);
  if (type == "ByteLevel") return std::make_unique<ByteLevelPreTokenizer>(j, source);
  if (type == "Metaspace") return std::make_unique<MetaspacePreTokenizer>(j, source);
  throw Error(source, "unsupported pre_tokenizer '" + type +
                          "' (supported: Sequence, Split, ByteLevel, Metaspace)");
}

std::unique_ptr<PostProcessor> make_post_processor(const json& j, const std::string& source,
                                                   int vocab_size) {
  if (j.is_null()) return nullptr;
  const std::string type = type_of(j, source, "post_processor");
  if (type == "TemplateProcessing") return make_template(j, source, vocab_size);
  if (type == "ByteLevel") return std::make_unique<OffsetsOnlyPostProcessor>();
  if (type == "Sequence") {
    auto seq = std::make_unique<SequencePostProcessor>();
    const json& list = field(j, "processors", source, "post_processor Sequence");
    if (!list.is_array()) throw Error(source, "post_processor Sequence.processors not an array");
    for (const auto& p : list) {
      if (p.is_null()) throw Error(source, "post_processor Sequence holds a null processor");
      seq->parts.push_back(make_post_processor(p, source, vocab_size));
    }
    return seq;
  }
  throw Error(source, "unsupported post_processor '" + type +
                          "' (supported: TemplateProcessing, ByteLevel, Sequence)");
}

std::unique_ptr<Decoder> make_decoder(const json& j, const std::string& source) {
  if (j.is_null()) return nullptr;
  const std::string type = type_of(j, source, "decoder");
  if (type == "Sequence") {
    auto seq = std::make_unique<SequenceDecoder>();
    const json& list = field(j, "decoders", source, "decoder Sequence");
    if (!list.is_array()) throw Error(source, "decoder Sequence.decoders is not an array");
    for (const auto& d : list) {
      if (d.is_null()) throw Error(source, "decoder Sequence holds a null decoder");
      seq->parts.push_back(make_decoder(d, source));
    }
    return seq;
  }
  if (type == "ByteLevel") return std::make_unique<ByteLevelDecoder>();
  if (type == "Replace") return std::make_unique<ReplaceDecoder>(j, source);
  if (type == "ByteFallback") return std::make_unique<ByteFallbackDecoder>();
  if (type == "Fuse") return std::make_unique<FuseDecoder>();
  if (type == "Strip") {
    auto s = std::make_unique<StripDecoder>();
    s->content = char_field(j, "content", source, "decoder Strip");
    const json& a = field(j, "start", source, "decoder Strip");
    const json& b = field(j, "stop", source, "decoder Strip");
    if (!a.is_number_unsigned() || !b.is_number_unsigned())
      throw Error(source, "decoder Strip start/stop must be non-negative integers");
    s->start = a.get<std::size_t>();
    s->stop = b.get<std::size_t>();
    return s;
  }
  if (type == "Metaspace") {
    auto m = std::make_unique<MetaspaceDecoder>();
    m->replacement = char_field(j, "replacement", source, "decoder Metaspace");
    m->scheme = parse_prepend_scheme(j, source);
    return m;
  }
  throw Error(source, "unsupported decoder '" + type +
                          "' (supported: Sequence, ByteLevel, Replace, ByteFallback, Fuse, "
                          "Strip, Metaspace)");
}

bool has_byte_level(const json& pre) {
  if (!pre.is_object()) return false;
  auto t = pre.find("type");
  if (t == pre.end() || !t->is_string()) return false;
  if (*t == "ByteLevel") return true;
  if (*t == "Sequence") {
    auto list = pre.find("pretokenizers");
    if (list == pre.end() || !list->is_array()) return false;
    return std::any_of(list->begin(), list->end(), [](const json& p) { return has_byte_level(p); });
  }
  return false;
}

}  // namespace mxlens::text
