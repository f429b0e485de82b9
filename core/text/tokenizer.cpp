#include "core/text/tokenizer.h"

#include <algorithm>
#include <fstream>
#include <iterator>
#include <map>
#include <unordered_map>
#include <unordered_set>

#include <nlohmann/json.hpp>

#include "core/text/bpe_model.h"
#include "core/text/pipeline.h"
#include "core/text/regex_pcre2.h"
#include "core/text/unicode_util.h"
#include "core/text/utf8.h"
#include "core/util/error.h"

namespace mxlens {

namespace {

using nlohmann::json;

struct AddedToken {
  int32_t id = 0;
  std::string content;
  bool single_word = false, lstrip = false, rstrip = false, normalized = false, special = false;
};

// The library's AddedVocabulary matcher for one set of tokens (the "normalized: false" set is
// matched on the raw text, the "normalized: true" set on normalized text, with the patterns
// normalized too): Aho-Corasick leftmost-longest, then single_word / lstrip / rstrip.
class AddedMatcher {
 public:
  struct Pattern {
    std::string text;
    const AddedToken* token;
  };
  struct Split {
    std::size_t start, end;
    std::optional<int32_t> id;
  };

  void add(std::string text, const AddedToken* token) {
    if (text.empty()) return;
    patterns_.push_back({std::move(text), token});
  }
  void finish() {
    for (auto& list : by_first_byte_) list.clear();
    for (std::size_t k = 0; k < patterns_.size(); ++k)
      by_first_byte_[static_cast<unsigned char>(patterns_[k].text[0])].push_back(k);
    for (auto& list : by_first_byte_)
      std::stable_sort(list.begin(), list.end(), [&](std::size_t a, std::size_t b) {
        return patterns_[a].text.size() > patterns_[b].text.size();
      });
    for (int b = 0; b < 256; ++b)
      if (!by_first_byte_[b].empty()) first_bytes_ += static_cast<char>(b);
  }
  bool empty() const { return patterns_.empty(); }

  std::vector<Split> split(std::string_view s, const Pcre2Regex& word_end,
                           const Pcre2Regex& word_start) const {
    std::vector<Split> out;
    std::size_t start_offset = 0;
    std::size_t pos = 0;
    while (pos < s.size()) {
      // Leftmost match start, longest pattern there.
      const Pattern* hit = nullptr;
      std::size_t at = s.find_first_of(first_bytes_, pos);
      for (; at != std::string_view::npos; at = s.find_first_of(first_bytes_, at + 1)) {
        for (std::size_t k : by_first_byte_[static_cast<unsigned char>(s[at])]) {
          const auto& p = patterns_[k];
          if (s.compare(at, p.text.size(), p.text) == 0) {
            hit = &p;
            break;
          }
        }
        if (hit) break;
      }
      if (!hit) break;
      std::size_t start = at, stop = at + hit->text.size();
      pos = stop;
      const AddedToken& tok = *hit->token;
      if (tok.single_word) {
        const bool start_space = start == 0 || !word_end.search(s.substr(0, start));
        const bool stop_space = stop == s.size() || !word_start.search(s.substr(stop));
        if (!start_space || !stop_space) continue;
      }
      if (tok.lstrip) {
        std::size_t newstart = start;
        while (newstart > 0) {
          std::size_t b = newstart - 1;
          while (b > 0 && (static_cast<unsigned char>(s[b]) & 0xC0) == 0x80) --b;
          std::size_t len = 0;
          if (!text::is_whitespace(text::decode_char(s, b, len))) break;
          newstart = b;
        }
        start = std::max(newstart, start_offset);
      }
      if (tok.rstrip) {
        while (stop < s.size()) {
          std::size_t len = 0;
          if (!text::is_whitespace(text::decode_char(s, stop, len))) break;
          stop += len;
        }
      }
      if (start_offset < start) out.push_back({start_offset, start, std::nullopt});
      out.push_back({start, stop, tok.id});
      start_offset = stop;
    }
    if (start_offset != s.size()) out.push_back({start_offset, s.size(), std::nullopt});
    return out;
  }

 private:
  std::vector<Pattern> patterns_;
  std::vector<std::size_t> by_first_byte_[256];
  std::string first_bytes_;
};

std::string read_json_text(const std::filesystem::path& p) {
  std::error_code ec;
  if (!std::filesystem::exists(p, ec)) throw Error(p.string(), "no such file");
  if (!std::filesystem::is_regular_file(p, ec)) throw Error(p.string(), "not a regular file");
  std::ifstream in(p, std::ios::binary);
  if (!in) throw Error(p.string(), "cannot open for reading");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) throw Error(p.string(), "read failed");
  return text;
}

bool bool_or(const json& j, const char* key, bool fallback) {
  auto it = j.find(key);
  return it != j.end() && it->is_boolean() ? it->get<bool>() : fallback;
}

}  // namespace

struct Tokenizer::Impl {
  std::filesystem::path source;
  BpeModel model;
  std::vector<AddedToken> added;
  std::unordered_map<std::string, int32_t> added_ids;  // content -> id
  AddedMatcher raw_matcher, normalized_matcher;
  std::unique_ptr<text::Normalizer> normalizer;
  std::unique_ptr<text::PreTokenizer> pre_tokenizer;
  std::unique_ptr<text::PostProcessor> post_processor;
  std::unique_ptr<text::Decoder> decoder;
  std::vector<std::string> pieces;         // id -> piece (added tokens: their content)
  std::vector<std::string> decode_pieces;  // id -> what the decoder receives
  std::vector<bool> skip_when_decoding;    // with skip_special_tokens
  std::vector<bool> special;
  std::unique_ptr<Pcre2Regex> word_end, word_start;  // for single_word
  bool lossless = false;

  std::string normalize(std::string s) const {
    if (normalizer) normalizer->normalize(s);
    return s;
  }
};

Tokenizer Tokenizer::load(const std::filesystem::path& tokenizer_json) {
  const std::string src = tokenizer_json.string();
  const std::string raw = read_json_text(tokenizer_json);
  json j;
  try {
    j = json::parse(raw);
  } catch (const json::exception& e) {
    throw Error(src, std::string("malformed JSON: ") + e.what());
  }
  if (!j.is_object()) throw Error(src, "not a tokenizer.json (top level is not an object)");

  auto impl = std::make_shared<Impl>();
  impl->source = tokenizer_json;

  // Model.
  auto model = j.find("model");
  if (model == j.end() || !model->is_object()) throw Error(src, "no \"model\" object");
  std::string type;
  if (auto t = model->find("type"); t != model->end() && t->is_string())
    type = *t;
  else if (model->contains("merges") && model->contains("vocab"))
    type = "BPE";
  if (type != "BPE")
    throw Error(src, "unsupported model type '" + (type.empty() ? "(none)" : type) +
                         "' (only BPE is supported)");
  impl->model = BpeModel::from_json(*model, src);

  // Added tokens, registered as the library does (AddedVocabulary::add_tokens): a content
  // already known (added earlier or in the model vocab) keeps that id, any other content gets
  // the next id from the model vocab's size up; the JSON "id" is only a cross-check there.
  std::vector<AddedToken> listed;
  if (auto at = j.find("added_tokens"); at != j.end() && !at->is_null()) {
    if (!at->is_array()) throw Error(src, "added_tokens is not an array");
    for (const auto& t : *at) {
      AddedToken tok;
      auto id = t.find("id");
      auto content = t.find("content");
      if (id == t.end() || !id->is_number_integer() || id->get<int64_t>() < 0 ||
          id->get<int64_t>() > INT32_MAX || content == t.end() || !content->is_string())
        throw Error(src, "added_tokens entry without a valid id and content: " + t.dump());
      tok.id = static_cast<int32_t>(id->get<int64_t>());
      tok.content = content->get<std::string>();
      tok.special = bool_or(t, "special", false);
      tok.single_word = bool_or(t, "single_word", false);
      tok.lstrip = bool_or(t, "lstrip", false);
      tok.rstrip = bool_or(t, "rstrip", false);
      tok.normalized = bool_or(t, "normalized", !tok.special);
      listed.push_back(std::move(tok));
    }
  }
  const auto component = [&](const char* key) -> const json& {
    static const json null_json;
    auto it = j.find(key);
    return it == j.end() ? null_json : *it;
  };
  impl->normalizer = text::make_normalizer(component("normalizer"), src);

  std::unordered_map<std::string, int32_t> added_ids;  // content -> id
  std::map<int32_t, AddedToken> added_by_id;
  std::map<int32_t, std::string> normalized_form;  // id -> normalized content, if different
  std::unordered_set<std::string> special_contents;
  auto next_id = static_cast<int32_t>(impl->model.vocab().size());
  for (AddedToken tok : listed) {
    if (tok.content.empty()) continue;
    if (auto known = added_ids.find(tok.content); known != added_ids.end()) {
      const AddedToken& prev = added_by_id.at(known->second);
      if (prev.single_word == tok.single_word && prev.lstrip == tok.lstrip &&
          prev.rstrip == tok.rstrip && prev.normalized == tok.normalized &&
          prev.special == tok.special)
        continue;
    }
    int32_t id = 0;
    if (auto a = added_ids.find(tok.content); a != added_ids.end())
      id = a->second;
    else if (auto v = impl->model.vocab().find(tok.content))
      id = *v;
    else
      id = next_id++;
    tok.id = id;
    if (tok.normalized && impl->normalizer) {
      std::string normed = impl->normalize(tok.content);
      if (normed != tok.content) normalized_form[id] = std::move(normed);
    }
    added_ids[tok.content] = id;
    if (tok.special) special_contents.insert(tok.content);
    added_by_id[id] = std::move(tok);
  }
  for (auto& [id, tok] : added_by_id) impl->added.push_back(tok);
  impl->added_ids = added_ids;

  // Id -> piece tables over the model vocab and the added tokens.
  int32_t max_id = -1;
  for (const auto& [piece, id] : impl->model.vocab().entries()) max_id = std::max(max_id, id);
  for (const auto& t : impl->added) max_id = std::max(max_id, t.id);
  impl->pieces.resize(static_cast<std::size_t>(max_id + 1));
  impl->special.assign(impl->pieces.size(), false);
  for (const auto& [piece, id] : impl->model.vocab().entries()) impl->pieces[id] = piece;
  for (const auto& t : impl->added) {
    impl->pieces[t.id] = t.content;
    if (t.special) impl->special[t.id] = true;
  }
  // What decode() feeds the decoder: added tokens in their normalized form, and the
  // library's skip test, which looks that string up among the special contents (so a
  // normalized special token is not skipped, exactly as the library behaves).
  impl->decode_pieces = impl->pieces;
  for (const auto& [id, normed] : normalized_form) impl->decode_pieces[id] = normed;
  impl->skip_when_decoding.assign(impl->pieces.size(), false);
  for (std::size_t id = 0; id < impl->pieces.size(); ++id)
    impl->skip_when_decoding[id] = special_contents.count(impl->decode_pieces[id]) > 0;

  impl->pre_tokenizer = text::make_pre_tokenizer(component("pre_tokenizer"), src);
  impl->post_processor = text::make_post_processor(component("post_processor"), src,
                                                   static_cast<int>(impl->pieces.size()));
  impl->decoder = text::make_decoder(component("decoder"), src);

  for (const auto& t : impl->added) {
    if (t.normalized)
      impl->normalized_matcher.add(impl->normalize(t.content), &t);
    else
      impl->raw_matcher.add(t.content, &t);
  }
  impl->raw_matcher.finish();
  impl->normalized_matcher.finish();
  impl->word_end = std::make_unique<Pcre2Regex>(R"(\w$)", src);
  impl->word_start = std::make_unique<Pcre2Regex>(R"(^\w)", src);

  const bool byte_level = text::has_byte_level(component("pre_tokenizer")) && impl->decoder &&
                          impl->decoder->is_byte_level() && !impl->normalizer;
  const bool byte_fallback = impl->model.byte_fallback() && impl->model.has_all_byte_pieces() &&
                             impl->decoder && impl->decoder->has_byte_fallback();
  impl->lossless = byte_level || byte_fallback;
  return Tokenizer(std::move(impl));
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_special_tokens) const {
  const Impl& im = *impl_;
  if (auto bad = first_invalid_utf8(text))
    throw Error("text to encode", "not valid UTF-8 at byte offset " + std::to_string(*bad));
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3 + 4);
  // Words seen in this call; most words repeat, so this saves most BPE work.
  std::unordered_map<std::string, std::vector<int32_t>, StringHash, std::equal_to<>> cache;
  constexpr std::size_t kMaxCachedWordBytes = 256;
  std::vector<text::PreToken> words;

  auto encode_piece = [&](std::string piece, bool at_input_start) {
    words.clear();
    words.push_back(text::PreToken{std::move(piece), at_input_start});
    if (im.pre_tokenizer) im.pre_tokenizer->pre_tokenize(words);
    for (const auto& w : words) {
      if (w.text.empty()) continue;
      if (w.text.size() > kMaxCachedWordBytes) {
        im.model.tokenize(w.text, ids);
        continue;
      }
      if (auto it = cache.find(w.text); it != cache.end()) {
        ids.insert(ids.end(), it->second.begin(), it->second.end());
        continue;
      }
      const std::size_t before = ids.size();
      im.model.tokenize(w.text, ids);
      cache.emplace(w.text, std::vector<int32_t>(ids.begin() + before, ids.end()));
    }
  };

  std::vector<AddedMatcher::Split> raw_splits;
  if (im.raw_matcher.empty())
    raw_splits.push_back({0, text.size(), std::nullopt});
  else
    raw_splits = im.raw_matcher.split(text, *im.word_end, *im.word_start);
  for (const auto& rs : raw_splits) {
    if (rs.id) {
      ids.push_back(*rs.id);
      continue;
    }
    if (rs.end == rs.start) continue;
    const std::string normalized =
        im.normalize(std::string(text.substr(rs.start, rs.end - rs.start)));
    if (im.normalized_matcher.empty()) {
      encode_piece(normalized, rs.start == 0);
      continue;
    }
    for (const auto& ns : im.normalized_matcher.split(normalized, *im.word_end, *im.word_start)) {
      if (ns.id)
        ids.push_back(*ns.id);
      else if (ns.end > ns.start)
        encode_piece(normalized.substr(ns.start, ns.end - ns.start),
                     rs.start == 0 && ns.start == 0);
    }
  }
  if (im.post_processor) im.post_processor->process(ids, add_special_tokens);
  return ids;
}

std::string Tokenizer::decode(std::span<const int32_t> ids, bool skip_special_tokens) const {
  const Impl& im = *impl_;
  std::vector<std::string> tokens;
  tokens.reserve(ids.size());
  for (int32_t id : ids) {
    if (id < 0 || static_cast<std::size_t>(id) >= im.pieces.size())
      throw Error(im.source.string(), "token id " + std::to_string(id) +
                                          " is outside the vocab [0, " +
                                          std::to_string(im.pieces.size()) + ")");
    if (skip_special_tokens && im.skip_when_decoding[id]) continue;
    tokens.push_back(im.decode_pieces[id]);
  }
  if (!im.decoder) {
    std::string out;
    for (std::size_t k = 0; k < tokens.size(); ++k) {
      if (k) out += ' ';
      out += tokens[k];
    }
    return out;
  }
  im.decoder->decode_chain(tokens);
  std::string out;
  for (const auto& t : tokens) out += t;
  return out;
}

int Tokenizer::vocab_size() const {
  return static_cast<int>(impl_->pieces.size());
}
std::optional<int32_t> Tokenizer::bos_id() const {
  return impl_->post_processor ? impl_->post_processor->bos_id() : std::nullopt;
}
std::optional<int32_t> Tokenizer::eos_id() const {
  return impl_->post_processor ? impl_->post_processor->eos_id() : std::nullopt;
}
std::optional<int32_t> Tokenizer::unk_id() const {
  return impl_->model.unk_id();
}
std::string_view Tokenizer::token(int32_t id) const {
  if (id < 0 || static_cast<std::size_t>(id) >= impl_->pieces.size()) return {};
  return impl_->pieces[id];
}
std::optional<int32_t> Tokenizer::token_to_id(std::string_view piece) const {
  if (auto a = impl_->added_ids.find(std::string(piece)); a != impl_->added_ids.end())
    return a->second;
  return impl_->model.vocab().find(piece);
}
bool Tokenizer::is_special(int32_t id) const {
  return id >= 0 && static_cast<std::size_t>(id) < impl_->special.size() && impl_->special[id];
}
bool Tokenizer::is_lossless() const {
  return impl_->lossless;
}
const std::filesystem::path& Tokenizer::source() const {
  return impl_->source;
}

}  // namespace mxlens
