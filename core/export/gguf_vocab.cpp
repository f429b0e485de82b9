#include "core/export/gguf_vocab.h"

#include <fstream>
#include <nlohmann/json.hpp>
#include <string_view>
#include <unordered_map>

#include "core/text/tokenizer.h"
#include "core/text/utf8.h"
#include "core/util/error.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace mxlens {

namespace {

// LLaMA-3's Split regex (formats.md §3.3) as it reads after JSON decoding; llama.cpp's
// "llama-bpe" pre-tokenizer is this pattern.
constexpr std::string_view kLlama3Pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr std::string_view kMetaspace = "\xE2\x96\x81";  // ▁

json read_json(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  if (!in) throw Error(p.string(), "cannot open file");
  json j = json::parse(in, nullptr, false);
  if (j.is_discarded()) throw Error(p.string(), "not valid JSON");
  return j;
}

// The components of a (possibly nested) Sequence, flattened.
void flatten(const json& j, const char* list_key, std::vector<const json*>& out) {
  if (!j.is_object()) return;
  if (j.value("type", "") == "Sequence") {
    if (auto it = j.find(list_key); it != j.end() && it->is_array())
      for (const json& c : *it) flatten(c, list_key, out);
    return;
  }
  out.push_back(&j);
}

std::string type_of(const json& j) {
  auto it = j.find("type");
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}

std::string string_pattern(const json& j) {
  auto p = j.find("pattern");
  if (p == j.end() || !p->is_object()) return {};
  if (auto s = p->find("String"); s != p->end() && s->is_string()) return *s;
  return {};
}

bool is_byte_piece(std::string_view t) {
  auto hex = [](char c) { return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'F'); };
  return t.size() == 6 && t.substr(0, 3) == "<0x" && hex(t[3]) && hex(t[4]) && t[5] == '>';
}

bool is_single_char(std::string_view t) {
  return !t.empty() && utf8_char_length(static_cast<unsigned char>(t[0])) == t.size();
}

// A merge as its two parts (legacy "a b" strings or ["a", "b"] pairs).
std::pair<std::string, std::string> merge_parts(const json& m, const std::string& src) {
  if (m.is_string()) {
    const std::string s = m;
    const size_t sp = s.find(' ');
    if (sp == std::string::npos || s.find(' ', sp + 1) != std::string::npos)
      throw Error(src, "merge '" + s + "' is not two parts separated by one space");
    return {s.substr(0, sp), s.substr(sp + 1)};
  }
  if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string())
    return {m[0].get<std::string>(), m[1].get<std::string>()};
  throw Error(src, "merge " + m.dump() + " is neither \"a b\" nor [\"a\", \"b\"]");
}

// "bos_token" of tokenizer_config.json: a string or {"content": ...}.
std::optional<std::string> config_token(const json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end()) return std::nullopt;
  if (it->is_string()) return it->get<std::string>();
  if (it->is_object())
    if (auto c = it->find("content"); c != it->end() && c->is_string())
      return c->get<std::string>();
  return std::nullopt;
}

}  // namespace

namespace {

GgufVocab make_vocab(const fs::path& tokenizer_json, const LlamaConfig& cfg) {
  const std::string src = tokenizer_json.string();
  // The library-compatible ids (added tokens, holes) and a check that mxlens can use the file.
  const Tokenizer tok = Tokenizer::load(tokenizer_json);
  const json j = read_json(tokenizer_json);
  const json& model = j.at("model");
  if (type_of(model) != "BPE" && !(model.contains("merges") && model.contains("vocab")))
    throw Error(src, "model type '" + type_of(model) +
                         "': llama.cpp's gpt2 and llama vocabularies need a BPE model");

  std::vector<const json*> pres, norms;
  if (auto p = j.find("pre_tokenizer"); p != j.end()) flatten(*p, "pretokenizers", pres);
  if (auto n = j.find("normalizer"); n != j.end()) flatten(*n, "normalizers", norms);
  const json* byte_level = nullptr;
  const json* metaspace = nullptr;
  const json* split = nullptr;
  for (const json* p : pres) {
    const std::string t = type_of(*p);
    if (t == "ByteLevel") byte_level = p;
    if (t == "Metaspace") metaspace = p;
    if (t == "Split") split = p;
  }
  bool prepend_norm = false, replace_norm = false;
  for (const json* n : norms) {
    const std::string t = type_of(*n);
    if (t == "Prepend" && n->value("prepend", "") == kMetaspace) prepend_norm = true;
    if (t == "Replace" && string_pattern(*n) == " " && n->value("content", "") == kMetaspace)
      replace_norm = true;
  }

  GgufVocab v;
  if (byte_level) {
    v.model = "gpt2";
  } else if (metaspace || replace_norm || prepend_norm) {
    v.model = "llama";
  } else {
    throw Error(src,
                "the BPE tokenizer is neither byte-level (ByteLevel pre-tokenizer) nor "
                "SentencePiece-style (Metaspace, or a \"▁\" normalizer); llama.cpp has no "
                "vocabulary that reproduces it");
  }
  const bool byte_fallback = model.value("byte_fallback", false);

  const int n_tok = tok.vocab_size();
  const int n = cfg.vocab_size;
  if (n_tok > n)
    throw Error(src, "has ids up to " + std::to_string(n_tok - 1) +
                         " but the model's embedding has " + std::to_string(n) +
                         " rows (vocab_size in config.json)");

  // Tokens and types.
  v.tokens.assign(size_t(n), std::string());
  v.token_types.assign(size_t(n), int32_t(GgufTokenType::unused));
  std::vector<bool> present(size_t(n), false);
  std::vector<bool> added(size_t(n), false);
  const json& vocab = model.at("vocab");
  if (!vocab.is_object()) throw Error(src, "model.vocab is not an object");
  for (const auto& [piece, id_json] : vocab.items()) {
    const int64_t id = id_json.get<int64_t>();
    if (id < 0 || id >= n) throw Error(src, "vocab id " + std::to_string(id) + " out of range");
    v.tokens[size_t(id)] = piece;
    v.token_types[size_t(id)] = int32_t(
        byte_fallback && is_byte_piece(piece) ? GgufTokenType::byte : GgufTokenType::normal);
    present[size_t(id)] = true;
  }
  if (auto at = j.find("added_tokens"); at != j.end() && at->is_array()) {
    for (const json& a : *at) {
      const std::string content = a.value("content", "");
      const std::optional<int32_t> id = tok.token_to_id(content);
      if (content.empty() || !id) continue;
      v.tokens[size_t(*id)] = content;
      v.token_types[size_t(*id)] =
          int32_t(a.value("special", false) ? GgufTokenType::control : GgufTokenType::user_defined);
      present[size_t(*id)] = added[size_t(*id)] = true;
    }
  }
  if (const std::optional<int32_t> unk = tok.unk_id())
    v.token_types[size_t(*unk)] = int32_t(GgufTokenType::unknown);
  int holes = 0;
  for (int id = 0; id < n; ++id)
    if (!present[size_t(id)]) {
      v.tokens[size_t(id)] = "[PAD" + std::to_string(id) + "]";
      ++holes;
    }
  // llama.cpp maps token text back to ids and asserts that no text appears twice.
  {
    std::unordered_map<std::string_view, int> seen;
    for (int id = 0; id < n; ++id) {
      const auto [it, fresh] = seen.emplace(v.tokens[size_t(id)], id);
      if (!fresh)
        throw Error(src, "ids " + std::to_string(it->second) + " and " + std::to_string(id) +
                             " are both the token \"" + v.tokens[size_t(id)] +
                             "\"; llama.cpp needs every token text once");
    }
  }
  if (holes > 0)
    v.notes.push_back("the tokenizer has no token for " + std::to_string(holes) + " of the " +
                      "model's " + std::to_string(n) +
                      " ids; they are written as unused \"[PAD<id>]\" tokens.");

  // Merges: "a b" strings for gpt2, ranks as scores for llama.
  const json& merges = model.at("merges");
  if (!merges.is_array()) throw Error(src, "model.merges is not an array");
  if (v.model == "gpt2") {
    v.merges.reserve(merges.size());
    for (const json& m : merges) {
      auto [a, b] = merge_parts(m, src);
      if (a.find(' ') != std::string::npos || b.find(' ') != std::string::npos)
        throw Error(src, "merge [\"" + a + "\", \"" + b +
                             "\"] contains a space, which llama.cpp's \"a b\" merges cannot hold");
      v.merges.push_back(a + " " + b);
    }
  } else {
    std::unordered_map<std::string, int32_t> ids;
    for (const auto& [piece, id_json] : vocab.items()) ids.emplace(piece, id_json.get<int32_t>());
    const float unreachable = -float(merges.size() + 1);
    std::vector<bool> scored(size_t(n), false);
    v.scores.assign(size_t(n), 0.0f);
    for (size_t r = 0; r < merges.size(); ++r) {
      auto [a, b] = merge_parts(merges[r], src);
      auto it = ids.find(a + b);
      if (it == ids.end() || scored[size_t(it->second)]) continue;
      v.scores[size_t(it->second)] = -float(r + 1);
      scored[size_t(it->second)] = true;
    }
    for (int id = 0; id < n; ++id) {
      const std::string& t = v.tokens[size_t(id)];
      if (scored[size_t(id)] || !present[size_t(id)] || added[size_t(id)] || is_single_char(t) ||
          (byte_fallback && is_byte_piece(t)))
        continue;
      v.scores[size_t(id)] = unreachable;
    }
    v.notes.push_back(
        "llama.cpp's SentencePiece tokenizer merges by token score (written as minus the merge "
        "rank), so for some texts its ids can differ from the tokenizer.json's.");
    bool has_bytes = false;
    for (int32_t t : v.token_types) has_bytes |= t == int32_t(GgufTokenType::byte);
    if (!has_bytes)
      v.notes.push_back(
          "the vocabulary has no <0xXX> byte pieces, so llama.cpp cannot encode characters "
          "outside it.");
  }

  // Pre-tokenizer (gpt2) and space prefix (llama).
  if (v.model == "gpt2") {
    std::string regex;
    if (split)
      if (auto p = split->find("pattern"); p != split->end() && p->is_object())
        if (auto r = p->find("Regex"); r != p->end() && r->is_string()) regex = *r;
    if (split && regex == kLlama3Pattern && pres.size() == 2) {
      v.pre = "llama-bpe";
    } else if (!split && pres.size() == 1 && byte_level->value("use_regex", true)) {
      v.pre = "gpt-2";
    } else {
      v.pre = "default";
      v.notes.push_back(
          "the pre-tokenizer is neither LLaMA-3's nor GPT-2's, so llama.cpp splits text with "
          "its default pattern and its ids can differ from the tokenizer.json's.");
    }
  } else {
    bool space = prepend_norm;
    if (metaspace) {
      const auto scheme = metaspace->find("prepend_scheme");
      if (scheme != metaspace->end() && scheme->is_string())
        space = space || *scheme != "never";
      else
        space = space || metaspace->value("add_prefix_space", true);
    }
    v.add_space_prefix = space;
  }

  // Special ids.
  json tcfg = json::object();
  if (const fs::path p = tokenizer_json.parent_path() / "tokenizer_config.json";
      fs::is_regular_file(p))
    tcfg = read_json(p);
  auto from_config = [&](const char* key) -> std::optional<uint32_t> {
    if (const std::optional<std::string> c = config_token(tcfg, key))
      if (const std::optional<int32_t> id = tok.token_to_id(*c)) return uint32_t(*id);
    return std::nullopt;
  };
  auto first = [](const std::vector<int>& ids) -> std::optional<uint32_t> {
    if (ids.empty() || ids[0] < 0) return std::nullopt;
    return uint32_t(ids[0]);
  };
  auto as_u32 = [](std::optional<int32_t> id) -> std::optional<uint32_t> {
    if (!id) return std::nullopt;
    return uint32_t(*id);
  };
  v.bos = from_config("bos_token");
  if (!v.bos) v.bos = first(cfg.bos_token_ids);
  if (!v.bos) v.bos = as_u32(tok.bos_id());
  v.eos = from_config("eos_token");
  if (!v.eos) v.eos = first(cfg.eos_token_ids);
  if (!v.eos) v.eos = as_u32(tok.eos_id());
  v.unk = from_config("unk_token");
  if (!v.unk) v.unk = as_u32(tok.unk_id());
  v.pad = from_config("pad_token");
  for (std::optional<uint32_t>* id : {&v.bos, &v.eos, &v.unk, &v.pad})
    if (*id && **id >= uint32_t(n)) id->reset();
  v.add_bos = tok.bos_id().has_value();
  v.add_eos = tok.eos_id().has_value();
  return v;
}

}  // namespace

GgufVocab gguf_vocab(const fs::path& tokenizer_json, const LlamaConfig& cfg) {
  try {
    return make_vocab(tokenizer_json, cfg);
  } catch (const json::exception& e) {
    // Shapes Tokenizer::load does not look at (it has checked the rest).
    throw Error(tokenizer_json.string(), std::string("unexpected JSON: ") + e.what());
  }
}

void add_vocab_keys(GgufWriter& w, const GgufVocab& v) {
  w.add_string("tokenizer.ggml.model", v.model);
  if (!v.pre.empty()) w.add_string("tokenizer.ggml.pre", v.pre);
  w.add_strings("tokenizer.ggml.tokens", v.tokens);
  if (!v.scores.empty()) w.add_f32s("tokenizer.ggml.scores", v.scores);
  w.add_i32s("tokenizer.ggml.token_type", v.token_types);
  if (!v.merges.empty()) w.add_strings("tokenizer.ggml.merges", v.merges);
  if (v.bos) w.add_u32("tokenizer.ggml.bos_token_id", *v.bos);
  if (v.eos) w.add_u32("tokenizer.ggml.eos_token_id", *v.eos);
  if (v.unk) w.add_u32("tokenizer.ggml.unknown_token_id", *v.unk);
  if (v.pad) w.add_u32("tokenizer.ggml.padding_token_id", *v.pad);
  w.add_bool("tokenizer.ggml.add_bos_token", v.add_bos);
  w.add_bool("tokenizer.ggml.add_eos_token", v.add_eos);
  if (v.add_space_prefix) w.add_bool("tokenizer.ggml.add_space_prefix", *v.add_space_prefix);
}

}  // namespace mxlens
