#pragma once
// Random-weight LLaMA-family checkpoints with the shapes of a real model, for tests and
// benchmarks where the real weights are not available: config.json, safetensors shards
// (+ model.safetensors.index.json when there is more than one) and optionally a copied
// tokenizer.json. Deterministic in the seed; streamed tensor by tensor in bounded memory.
#include <cstdint>
#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/io/safetensors.h"
#include "core/model/llama_config.h"
#include "core/util/progress.h"

namespace mxlens {

struct SyntheticOptions {
  std::string preset = "tiny";
  uint64_t seed = 0;
  DType dtype = DType::BF16;                       // BF16, F16 or F32
  uint64_t shard_bytes = uint64_t(1) << 30;        // a shard closes before exceeding this
  int layers = 0;                                  // 0 keeps the preset's layer count
  std::optional<std::filesystem::path> tokenizer;  // copied as tokenizer.json
};

struct SyntheticSummary {
  int n_shards = 0;
  uint64_t n_parameters = 0;
  uint64_t tensor_bytes = 0;
};

// "llama-3.2-1b" (Llama-3.2-1B shapes), "llama-3-8b" (Meta-Llama-3-8B shapes), "tiny",
// "tiny-llama3", "tiny-qwen2".
std::vector<std::string> synthetic_preset_names();
// The preset's config; throws Error("--preset", ...) for an unknown name.
LlamaConfig synthetic_preset(std::string_view name);

// Writes the checkpoint into `dir` (created if absent; must be empty if present).
SyntheticSummary write_synthetic_checkpoint(const std::filesystem::path& dir,
                                            const SyntheticOptions& options,
                                            const Progress& progress = {});

// FP32 values (before rounding to the stored dtype) of elements [first, first + out.size())
// of a synthetic tensor: 1 for norm weights, normal(0, 0.02) otherwise, a pure function of
// (name, seed, element index), so tests can regenerate what was written.
void synthetic_values(std::string_view tensor_name, uint64_t seed, uint64_t first,
                      std::span<float> out);

}  // namespace mxlens
