#pragma once
// A Hugging Face LLaMA-family checkpoint directory: config.json, model.safetensors or
// model.safetensors.index.json shards (memory-mapped), tokenizer.json when present.
// Tensors stay in their stored dtype (F32/F16/BF16); callers convert one tensor at a
// time to FP32 on use, so a BF16 model is never expanded in full.
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/io/safetensors.h"
#include "core/model/fp_quant_config.h"
#include "core/model/llama_config.h"

namespace mxlens {

struct TensorRef {
  std::string name;
  DType dtype;
  std::vector<uint64_t> shape;
  std::span<const std::byte> bytes;    // points into the mapped shard
  const std::filesystem::path* shard;  // which file holds it
};

class Checkpoint {
 public:
  // Validates config, shards and the presence and shape of every tensor the LLaMA forward
  // needs (formats.md §2.4; §4.1 for fp_quant linears); throws mxlens::Error naming the file
  // and the problem.
  static Checkpoint open(const std::filesystem::path& dir);

  const std::filesystem::path& dir() const;
  const LlamaConfig& config() const;
  std::optional<std::filesystem::path> tokenizer_json() const;  // nullopt if absent
  // Set for an FP-Quant (MXFP4) checkpoint: its seven linears per layer are stored as
  // P.qweight / P.scales / P.forward_hadamard_matrix / global scales instead of P.weight
  // (formats.md §4.1), and LlamaWeights gives their dequantized, already rotated values.
  const FpQuantConfig* fp_quant() const;

  bool has(std::string_view name) const;
  TensorRef tensor(std::string_view name) const;  // throws Error if absent
  std::vector<TensorRef> tensors() const;         // every tensor of every shard, by name
  uint64_t file_size_bytes() const;               // sum of shard file sizes
  uint64_t parameter_count() const;

  // Name of the embedding matrix: model.embed_tokens.weight, or lm_head.weight when the
  // embedding is absent and the embeddings are tied (tinystories-656k stores only that).
  std::string embedding_name() const;
  // Name of the output projection: lm_head.weight, or the embedding when tied and absent.
  std::string lm_head_name() const;

  // Converts one tensor to row-major FP32 (dst.size() must equal numel).
  void read_f32(std::string_view name, std::span<float> dst) const;
  // Rows [row_begin, row_begin + n_rows) of a 2-D tensor (e.g. embedding rows of a window).
  void read_rows_f32(std::string_view name, int64_t row_begin, int64_t n_rows,
                     std::span<float> dst) const;
  // Zero-copy view when the tensor is F32 and aligned; empty span otherwise.
  std::span<const float> f32_view(std::string_view name) const;

  Checkpoint(Checkpoint&&) noexcept;
  Checkpoint& operator=(Checkpoint&&) noexcept;
  ~Checkpoint();

 private:
  struct Impl;
  explicit Checkpoint(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Per-layer tensor names, formats.md §2.4.
std::string layer_tensor_name(int layer, std::string_view suffix);  // "self_attn.q_proj.weight"

}  // namespace mxlens
