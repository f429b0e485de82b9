// mxlens-cli synth: writes a random-weight checkpoint with a real model's shapes
// (core/model/synthetic_checkpoint.h), for benchmarks and tests without the real weights.
#include <cstdio>
#include <memory>
#include <string>

#include "app/cli/commands.h"
#include "core/model/synthetic_checkpoint.h"
#include "core/util/error.h"

namespace mxlens::cli {

void register_synth(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "synth", "Write a random-weight LLaMA checkpoint (config.json + safetensors shards)");
  struct Options {
    std::string preset;
    std::string out;
    uint64_t seed = 0;
    std::string dtype = "bf16";
    uint64_t shard_bytes = uint64_t(1) << 30;
    int layers = 0;
    std::string tokenizer;
  };
  auto opts = std::make_shared<Options>();
  std::string presets;
  for (const auto& name : synthetic_preset_names()) presets += (presets.empty() ? "" : ", ") + name;
  cmd->add_option("--preset", opts->preset, "Model shapes: " + presets)->required();
  cmd->add_option("--out", opts->out, "Output directory (created; must be empty if it exists)")
      ->required();
  cmd->add_option("--seed", opts->seed, "Random seed")->capture_default_str();
  cmd->add_option("--dtype", opts->dtype, "Stored dtype: bf16, f16 or f32")->capture_default_str();
  cmd->add_option("--shard-bytes", opts->shard_bytes, "Largest shard size in bytes")
      ->capture_default_str();
  cmd->add_option("--layers", opts->layers, "Number of layers (0: the preset's)")
      ->capture_default_str();
  cmd->add_option("--tokenizer", opts->tokenizer, "tokenizer.json to copy into the checkpoint");
  cmd->callback([opts] {
    SyntheticOptions options;
    options.preset = opts->preset;
    options.seed = opts->seed;
    if (opts->dtype == "bf16")
      options.dtype = DType::BF16;
    else if (opts->dtype == "f16")
      options.dtype = DType::F16;
    else if (opts->dtype == "f32")
      options.dtype = DType::F32;
    else
      throw Error("--dtype", "unknown dtype '" + opts->dtype + "' (bf16, f16 or f32)");
    options.shard_bytes = opts->shard_bytes;
    options.layers = opts->layers;
    if (!opts->tokenizer.empty()) options.tokenizer = opts->tokenizer;
    const SyntheticSummary s = write_synthetic_checkpoint(opts->out, options);
    std::printf("wrote %s: preset %s, %llu parameters, %llu tensor bytes, %d shard(s)\n",
                opts->out.c_str(), opts->preset.c_str(),
                static_cast<unsigned long long>(s.n_parameters),
                static_cast<unsigned long long>(s.tensor_bytes), s.n_shards);
  });
}

}  // namespace mxlens::cli
