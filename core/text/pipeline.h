#pragma once
// The components of a tokenizer.json pipeline other than the model (formats.md §3.2):
// normalizers, pre-tokenizers, post-processors and decoders, each built from its JSON object
// by a make_* function that throws Error(source, "unsupported <kind> '<type>'") for anything
// it cannot reproduce exactly. All are immutable after construction.
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace mxlens::text {

class Normalizer {
 public:
  virtual ~Normalizer() = default;
  virtual void normalize(std::string& s) const = 0;
};

// A piece of text on its way to the model. `at_input_start`: the piece begins at byte 0 of
// the caller's text (Metaspace's prepend_scheme "first" needs it).
struct PreToken {
  std::string text;
  bool at_input_start = false;
};

class PreTokenizer {
 public:
  virtual ~PreTokenizer() = default;
  // Replaces `pieces` by their splits; empty pieces are dropped.
  virtual void pre_tokenize(std::vector<PreToken>& pieces) const = 0;
};

class PostProcessor {
 public:
  virtual ~PostProcessor() = default;
  virtual void process(std::vector<int32_t>& ids, bool add_special_tokens) const = 0;
  virtual std::optional<int32_t> bos_id() const { return std::nullopt; }
  virtual std::optional<int32_t> eos_id() const { return std::nullopt; }
};

class Decoder {
 public:
  virtual ~Decoder() = default;
  // The library's decode_chain: tokens in, tokens out; decode() joins the result.
  virtual void decode_chain(std::vector<std::string>& tokens) const = 0;
  virtual bool is_byte_level() const { return false; }
  virtual bool has_byte_fallback() const { return false; }
};

// `j` may be JSON null (then nullptr is returned). `vocab_lookup` resolves token strings for
// the post-processor's special tokens.
std::unique_ptr<Normalizer> make_normalizer(const nlohmann::json& j, const std::string& source);
std::unique_ptr<PreTokenizer> make_pre_tokenizer(const nlohmann::json& j,
                                                 const std::string& source);
std::unique_ptr<PostProcessor> make_post_processor(const nlohmann::json& j,
                                                   const std::string& source, int vocab_size);
std::unique_ptr<Decoder> make_decoder(const nlohmann::json& j, const std::string& source);

// True if `pre` (possibly a Sequence) contains a ByteLevel pre-tokenizer.
bool has_byte_level(const nlohmann::json& pre_tokenizer);

}  // namespace mxlens::text
