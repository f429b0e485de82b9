#pragma once
// Hugging Face tokenizer.json, encode and decode, giving the same ids as the `tokenizers`
// library for the LLaMA-family files (formats.md §3): added/special tokens, normalizers
// (Sequence, Prepend, Replace), pre-tokenizers (Split, ByteLevel, Metaspace, Sequence),
// the BPE model (merge ranks, byte fallback, unk fusing, ignore_merges), TemplateProcessing
// and the ByteLevel / SentencePiece decoders. Anything else is refused with an Error that
// names the file and the component.
//
// A Tokenizer is immutable after load(): copies share the same state (cheap), and encode()
// and decode() may be called from many threads at once.
//
// Checked against the library itself (tokenizers 0.23.2, scripts/golden_tokenizer_ids.mjs):
// identical ids for whole files and edge cases, including its quirks: added tokens get the
// library's ids (the model's id for a known content, else the next free id; the JSON "id" is
// only a cross-check there), "normalized" added tokens match their normalized form (656K's
// "<|end_story|>" matches "▁<|end_story|>" only) and decode in that form, and
// skip_special_tokens does not skip them. The file's "truncation" and "padding" are ignored:
// encode() always returns every id.
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace mxlens {

class Tokenizer {
 public:
  // Reads and checks `tokenizer_json` (a tokenizer.json file). Throws Error naming the file
  // on a missing/unreadable file, malformed JSON, or an unsupported component.
  static Tokenizer load(const std::filesystem::path& tokenizer_json);

  // `text` must be valid UTF-8 (Error otherwise). Added tokens written in the text (e.g.
  // "<s>", "<|begin_of_text|>") are always matched; `add_special_tokens` only decides whether
  // the post-processor adds its tokens (BOS).
  std::vector<int32_t> encode(std::string_view text, bool add_special_tokens = true) const;

  // ids -> text through the decoder. Ids outside [0, vocab_size()) throw Error.
  std::string decode(std::span<const int32_t> ids, bool skip_special_tokens = false) const;

  int vocab_size() const;  // max id + 1 over the model vocab and the added tokens
  // What the post-processor prepends, if any. nullopt for the llama3 file: its post-processor
  // is a bare ByteLevel, so the library adds no <|begin_of_text|> (use token_to_id for it).
  std::optional<int32_t> bos_id() const;
  std::optional<int32_t> eos_id() const;     // the post-processor's appended token, if any
  std::optional<int32_t> unk_id() const;     // the BPE model's unk_token, if any
  std::string_view token(int32_t id) const;  // the piece as stored (empty for holes)
  std::optional<int32_t> token_to_id(std::string_view piece) const;
  bool is_special(int32_t id) const;  // added token marked "special": true
  // True when decode(encode(x, false)) == x for ordinary text: byte-level BPE, or byte
  // fallback with all 256 <0xHH> pieces. (SentencePiece-style decoders still turn a literal
  // "▁" in the text into a space.)
  bool is_lossless() const;
  const std::filesystem::path& source() const;

  struct Impl;

 private:
  explicit Tokenizer(std::shared_ptr<const Impl> impl) : impl_(std::move(impl)) {}
  std::shared_ptr<const Impl> impl_;
};

}  // namespace mxlens
