#include "core/model/synthetic_checkpoint.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <numbers>

#include "core/io/float_convert.h"
#include "core/io/safetensors_writer.h"
#include "core/model/checkpoint.h"
#include "core/util/error.h"

namespace mxlens {

namespace {

using ordered_json = nlohmann::ordered_json;

constexpr double kWeightStd = 0.02;           // a typical HF initializer_range
constexpr uint64_t kChunkElements = 1 << 20;  // bounded memory per write
constexpr uint64_t kSliceElements = 1 << 15;  // values generated per thread at a time

uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

uint64_t fnv1a(std::string_view s) {
  uint64_t h = 0xCBF29CE484222325ull;
  for (char c : s) h = (h ^ static_cast<unsigned char>(c)) * 0x100000001B3ull;
  return h;
}

// Uniform in (0, 1]: 53 random bits, never 0 so log() stays finite.
double unit_uniform(uint64_t bits) {
  return (static_cast<double>(bits >> 11) + 1.0) * 0x1.0p-53;
}

bool is_norm_weight(std::string_view name) {
  return name.ends_with("norm.weight");
}

ordered_json config_json(const LlamaConfig& c, const SyntheticOptions& options) {
  ordered_json j;
  j["architectures"] = {c.architecture};
  j["model_type"] = c.model_type;
  j["hidden_size"] = c.hidden_size;
  j["intermediate_size"] = c.intermediate_size;
  j["num_hidden_layers"] = c.num_layers;
  j["num_attention_heads"] = c.num_heads;
  j["num_key_value_heads"] = c.num_kv_heads;
  j["head_dim"] = c.head_dim;
  j["vocab_size"] = c.vocab_size;
  j["max_position_embeddings"] = c.max_position_embeddings;
  j["rms_norm_eps"] = c.rms_norm_eps;
  j["rope_theta"] = c.rope_theta;
  if (c.rope_scaling.type == "default") {
    j["rope_scaling"] = nullptr;
  } else {
    ordered_json s;
    s["rope_type"] = c.rope_scaling.type;
    s["factor"] = c.rope_scaling.factor;
    if (c.rope_scaling.type == "llama3") {
      s["low_freq_factor"] = c.rope_scaling.low_freq_factor;
      s["high_freq_factor"] = c.rope_scaling.high_freq_factor;
      s["original_max_position_embeddings"] = c.rope_scaling.original_max_position_embeddings;
    }
    j["rope_scaling"] = s;
  }
  j["hidden_act"] = "silu";
  j["tie_word_embeddings"] = c.tie_word_embeddings;
  if (c.model_type != "qwen2") j["attention_bias"] = c.attention_bias;
  j["mlp_bias"] = c.mlp_bias;
  j["bos_token_id"] = c.bos_token_ids.size() == 1 ? ordered_json(c.bos_token_ids[0])
                                                  : ordered_json(c.bos_token_ids);
  j["eos_token_id"] = c.eos_token_ids.size() == 1 ? ordered_json(c.eos_token_ids[0])
                                                  : ordered_json(c.eos_token_ids);
  j["torch_dtype"] = options.dtype == DType::BF16  ? "bfloat16"
                     : options.dtype == DType::F16 ? "float16"
                                                   : "float32";
  j["mxlens_synthetic"] = {{"preset", options.preset}, {"seed", options.seed}};
  return j;
}

// Tensors in the order Hugging Face writes a LLaMA model (formats.md §2.4, §2.5).
std::vector<TensorSpec> tensor_specs(const LlamaConfig& c, DType dtype) {
  const uint64_t d = c.hidden_size, f = c.intermediate_size, vocab = c.vocab_size;
  const uint64_t q_rows = uint64_t(c.num_heads) * c.head_dim;
  const uint64_t kv_rows = uint64_t(c.num_kv_heads) * c.head_dim;
  std::vector<TensorSpec> specs;
  auto add = [&](std::string name, std::vector<uint64_t> shape) {
    specs.push_back({std::move(name), dtype, std::move(shape)});
  };
  add("model.embed_tokens.weight", {vocab, d});
  for (int layer = 0; layer < c.num_layers; ++layer) {
    auto name = [&](const char* suffix) { return layer_tensor_name(layer, suffix); };
    add(name("input_layernorm.weight"), {d});
    add(name("self_attn.q_proj.weight"), {q_rows, d});
    add(name("self_attn.k_proj.weight"), {kv_rows, d});
    add(name("self_attn.v_proj.weight"), {kv_rows, d});
    if (c.qkv_bias) {
      add(name("self_attn.q_proj.bias"), {q_rows});
      add(name("self_attn.k_proj.bias"), {kv_rows});
      add(name("self_attn.v_proj.bias"), {kv_rows});
    }
    add(name("self_attn.o_proj.weight"), {d, q_rows});
    if (c.attention_bias) add(name("self_attn.o_proj.bias"), {d});
    add(name("post_attention_layernorm.weight"), {d});
    add(name("mlp.gate_proj.weight"), {f, d});
    add(name("mlp.up_proj.weight"), {f, d});
    add(name("mlp.down_proj.weight"), {d, f});
  }
  add("model.norm.weight", {d});
  if (!c.tie_word_embeddings) add("lm_head.weight", {vocab, d});
  return specs;
}

void write_text_atomically(const std::filesystem::path& path, const std::string& text) {
  auto temp = path;
  temp += ".tmp" + std::to_string(::getpid());
  {
    std::ofstream out(temp, std::ios::binary | std::ios::trunc);
    out << text;
    out.close();
    if (!out) throw Error(temp.string(), "cannot write file");
  }
  std::error_code ec;
  std::filesystem::rename(temp, path, ec);
  if (ec) throw Error(path.string(), "cannot rename temporary file into place: " + ec.message());
}

void encode_chunk(DType dtype, std::span<const float> values, std::vector<std::byte>& bytes) {
  const size_t element_bytes = dtype_bits(dtype) / 8;
  bytes.resize(values.size() * element_bytes);
  if (dtype == DType::F32) {
    std::memcpy(bytes.data(), values.data(), bytes.size());
    return;
  }
  for (size_t i = 0; i < values.size(); ++i) {
    const uint16_t h = dtype == DType::BF16 ? f32_to_bf16(values[i]) : f32_to_f16(values[i]);
    std::memcpy(bytes.data() + 2 * i, &h, sizeof h);
  }
}

}  // namespace

std::vector<std::string> synthetic_preset_names() {
  return {"llama-3.2-1b", "llama-3-8b", "tiny", "tiny-llama3", "tiny-qwen2"};
}

LlamaConfig synthetic_preset(std::string_view name) {
  LlamaConfig c;
  c.architecture = "LlamaForCausalLM";
  c.model_type = "llama";
  c.bos_token_ids = {1};
  c.eos_token_ids = {2};
  c.rms_norm_eps = 1e-5;
  if (name == "llama-3.2-1b") {
    c.hidden_size = 2048;
    c.intermediate_size = 8192;
    c.num_layers = 16;
    c.num_heads = 32;
    c.num_kv_heads = 8;
    c.head_dim = 64;
    c.vocab_size = 128256;
    c.max_position_embeddings = 131072;
    c.rope_theta = 500000.0;
    c.rope_scaling = {"llama3", 32.0, 1.0, 4.0, 8192};
    c.tie_word_embeddings = true;
    c.bos_token_ids = {128000};
    c.eos_token_ids = {128001};
    return c;
  }
  if (name == "llama-3-8b") {  // Meta-Llama-3-8B: untied, no RoPE scaling, 8K context
    c.hidden_size = 4096;
    c.intermediate_size = 14336;
    c.num_layers = 32;
    c.num_heads = 32;
    c.num_kv_heads = 8;
    c.head_dim = 128;
    c.vocab_size = 128256;
    c.max_position_embeddings = 8192;
    c.rope_theta = 500000.0;
    c.bos_token_ids = {128000};
    c.eos_token_ids = {128001};
    return c;
  }
  // The tiny presets: small enough for unit tests, GQA, odd-ish sizes.
  c.hidden_size = 64;
  c.intermediate_size = 160;
  c.num_layers = 2;
  c.num_heads = 4;
  c.num_kv_heads = 2;
  c.head_dim = 16;
  c.vocab_size = 320;
  c.max_position_embeddings = 512;
  c.rope_theta = 10000.0;
  if (name == "tiny") return c;  // untied: lm_head.weight stored
  if (name == "tiny-llama3") {
    c.tie_word_embeddings = true;
    c.rope_theta = 500000.0;
    c.rope_scaling = {"llama3", 8.0, 1.0, 4.0, 64};  // all three branches of §2.3 occur
    return c;
  }
  if (name == "tiny-qwen2") {
    c.architecture = "Qwen2ForCausalLM";
    c.model_type = "qwen2";
    c.qkv_bias = true;
    c.tie_word_embeddings = true;
    c.rope_theta = 1000000.0;
    c.rms_norm_eps = 1e-6;
    return c;
  }
  std::string known;
  for (const auto& n : synthetic_preset_names()) known += (known.empty() ? "" : ", ") + n;
  throw Error("--preset", "unknown preset '" + std::string(name) + "' (known: " + known + ")");
}

void synthetic_values(std::string_view tensor_name, uint64_t seed, uint64_t first,
                      std::span<float> out) {
  if (is_norm_weight(tensor_name)) {
    std::fill(out.begin(), out.end(), 1.0f);
    return;
  }
  const uint64_t key = splitmix64(seed ^ fnv1a(tensor_name));
  // Box-Muller on pairs: element 2p takes the cosine, 2p+1 the sine of pair p.
  const uint64_t end = first + out.size();
  for (uint64_t pair = first / 2; 2 * pair < end; ++pair) {
    const double u1 = unit_uniform(splitmix64(key + 2 * pair));
    const double u2 = unit_uniform(splitmix64(key + 2 * pair + 1));
    const double radius = kWeightStd * std::sqrt(-2.0 * std::log(u1));
    const double angle = 2.0 * std::numbers::pi * u2;
    if (2 * pair >= first) out[2 * pair - first] = static_cast<float>(radius * std::cos(angle));
    if (2 * pair + 1 >= first && 2 * pair + 1 < end)
      out[2 * pair + 1 - first] = static_cast<float>(radius * std::sin(angle));
  }
}

SyntheticSummary write_synthetic_checkpoint(const std::filesystem::path& dir,
                                            const SyntheticOptions& options,
                                            const Progress& progress) {
  if (options.dtype != DType::BF16 && options.dtype != DType::F16 && options.dtype != DType::F32)
    throw Error("--dtype", std::string("unsupported dtype ") + dtype_name(options.dtype));
  if (options.shard_bytes == 0) throw Error("--shard-bytes", "must be positive");
  if (options.layers < 0) throw Error("--layers", "must be positive");
  LlamaConfig config = synthetic_preset(options.preset);
  if (options.layers > 0) config.num_layers = options.layers;
  if (options.tokenizer && !std::filesystem::is_regular_file(*options.tokenizer))
    throw Error(options.tokenizer->string(), "tokenizer file not found");

  std::error_code ec;
  if (std::filesystem::exists(dir)) {
    if (!std::filesystem::is_directory(dir))
      throw Error(dir.string(), "exists and is not a directory");
    if (!std::filesystem::is_empty(dir))
      throw Error(dir.string(), "directory is not empty (refusing to mix with existing files)");
  } else if (!std::filesystem::create_directories(dir, ec) || ec) {
    throw Error(dir.string(), "cannot create directory: " + ec.message());
  }

  // Split into shards: a shard closes before it would exceed shard_bytes.
  const std::vector<TensorSpec> specs = tensor_specs(config, options.dtype);
  std::vector<std::vector<TensorSpec>> shards(1);
  uint64_t shard_fill = 0, total_bytes = 0, total_params = 0;
  for (const TensorSpec& spec : specs) {
    const uint64_t size = spec.size_bytes();
    if (!shards.back().empty() && shard_fill + size > options.shard_bytes) {
      shards.emplace_back();
      shard_fill = 0;
    }
    shards.back().push_back(spec);
    shard_fill += size;
    total_bytes += size;
    uint64_t numel = 1;
    for (uint64_t dim : spec.shape) numel *= dim;
    total_params += numel;
  }

  const int n_shards = static_cast<int>(shards.size());
  auto shard_name = [&](int s) {
    if (n_shards == 1) return std::string("model.safetensors");
    char buf[64];
    std::snprintf(buf, sizeof buf, "model-%05d-of-%05d.safetensors", s + 1, n_shards);
    return std::string(buf);
  };

  std::vector<float> values;
  std::vector<std::byte> bytes;
  ordered_json weight_map = ordered_json::object();
  uint64_t done_bytes = 0;
  for (int s = 0; s < n_shards; ++s) {
    const std::string name = shard_name(s);
    SafetensorsWriter writer(dir / name, shards[s], {{"format", "pt"}});
    for (const TensorSpec& spec : shards[s]) {
      progress.check_cancel();
      progress.report(double(done_bytes) / double(total_bytes), spec.name);
      uint64_t numel = 1;
      for (uint64_t dim : spec.shape) numel *= dim;
      for (uint64_t first = 0; first < numel; first += kChunkElements) {
        values.resize(std::min(kChunkElements, numel - first));
        // Each value is a pure function of its index: slices on all cores give the same bytes
        // (an 8B model's 8e9 values take minutes on one core).
        const int64_t slices = int64_t((values.size() + kSliceElements - 1) / kSliceElements);
#pragma omp parallel for schedule(static) if (slices > 1)
        for (int64_t i = 0; i < slices; ++i) {
          const uint64_t begin = uint64_t(i) * kSliceElements;
          const uint64_t n = std::min<uint64_t>(kSliceElements, values.size() - begin);
          synthetic_values(spec.name, options.seed, first + begin,
                           std::span<float>(values).subspan(size_t(begin), size_t(n)));
        }
        encode_chunk(spec.dtype, values, bytes);
        writer.write(spec.name, bytes);
      }
      done_bytes += spec.size_bytes();
      weight_map[spec.name] = name;
    }
    writer.finish();
  }
  if (n_shards > 1) {
    ordered_json index;
    index["metadata"] = {{"total_size", total_bytes}};
    index["weight_map"] = weight_map;
    write_text_atomically(dir / "model.safetensors.index.json", index.dump(2) + "\n");
  }
  if (options.tokenizer) {
    std::filesystem::copy_file(*options.tokenizer, dir / "tokenizer.json",
                               std::filesystem::copy_options::overwrite_existing, ec);
    if (ec) throw Error(options.tokenizer->string(), "cannot copy tokenizer: " + ec.message());
    // copy_file keeps the source's mode; a read-only source must not make the copy read-only.
    std::filesystem::permissions(dir / "tokenizer.json", std::filesystem::perms::owner_write,
                                 std::filesystem::perm_options::add, ec);
  }
  // config.json last: a directory without it is recognisably incomplete.
  write_text_atomically(dir / "config.json", config_json(config, options).dump(2) + "\n");
  progress.report(1.0, "done");
  return {n_shards, total_params, total_bytes};
}

}  // namespace mxlens
