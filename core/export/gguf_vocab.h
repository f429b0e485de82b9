#pragma once
// A Hugging Face tokenizer.json (formats.md §3) as llama.cpp's tokenizer.ggml.* metadata
// (formats.md §4.3). Internal to the GGUF export; tests call it on the shared tokenizers.
//
// Two vocabularies map, both from a BPE model:
//   byte-level BPE (a ByteLevel pre-tokenizer; LLaMA-3)  → model "gpt2": tokens as stored (the
//       byte-to-unicode alphabet), merges as "a b" strings, pre "llama-bpe" when the Split
//       regex is LLaMA-3's, "gpt-2" for a bare regex-splitting ByteLevel, else "default";
//   SentencePiece-style BPE (Metaspace pre-tokenizer, or a Prepend/Replace "▁" normalizer)
//       → model "llama": tokens, scores, add_space_prefix. llama.cpp's SentencePiece tokenizer
//       merges the adjacent pair whose result has the highest score, so the score of a token
//       is −(1 + rank of the first merge that produces it): highest for the earliest merge, as
//       HF's merge ranks order them. Tokens no merge produces score 0 when they are single
//       characters, <0xXX> byte pieces or added tokens, and −(1 + merge count) otherwise
//       (HF's BPE never produces them, so they are ranked last).
// Token types: 3 control (added, special), 4 user-defined (added, not special), 2 unknown (the
// model's unk_token), 6 byte (<0xXX> with byte_fallback), 5 unused ("[PAD<id>]" filling ids
// the tokenizer does not have up to the model's vocab_size), 1 normal.
// Special ids: bos/eos/unk/pad from tokenizer_config.json beside the file (the token content),
// else config.json's bos/eos_token_id, else the post-processor's; unk also from the BPE
// model. add_bos_token / add_eos_token: whether the post-processor adds them.
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "core/export/gguf_writer.h"
#include "core/model/llama_config.h"

namespace mxlens {

enum class GgufTokenType : int32_t {
  normal = 1,
  unknown = 2,
  control = 3,
  user_defined = 4,
  unused = 5,
  byte = 6,
};

struct GgufVocab {
  std::string model;                 // "gpt2" or "llama"
  std::string pre;                   // gpt2 only
  std::vector<std::string> tokens;   // [vocab_size]
  std::vector<float> scores;         // llama only
  std::vector<int32_t> token_types;  // [vocab_size], GgufTokenType values
  std::vector<std::string> merges;   // gpt2 only
  std::optional<uint32_t> bos, eos, unk, pad;
  bool add_bos = false, add_eos = false;
  std::optional<bool> add_space_prefix;  // llama only
  std::vector<std::string> notes;        // what llama.cpp will do differently, one sentence each
};

// Throws Error(tokenizer_json, ...) for a file mxlens cannot load, a model other than BPE, a
// BPE that is neither byte-level nor SentencePiece-style, a merge that cannot be written as
// "a b", ids beyond the model's vocab_size (the embedding has no row for them), or a token text
// that two ids share (llama.cpp asserts that every text is unique).
GgufVocab gguf_vocab(const std::filesystem::path& tokenizer_json, const LlamaConfig& cfg);

// Adds the tokenizer.ggml.* keys.
void add_vocab_keys(GgufWriter& writer, const GgufVocab& vocab);

}  // namespace mxlens
