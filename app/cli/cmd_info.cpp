// mxlens-cli info DIR [--json]: what a checkpoint holds, read through the same loader the
// engine uses (so a broken checkpoint fails here with the same message).
#include <algorithm>
#include <cctype>
#include <cstdio>
#include <filesystem>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <string>

#include "app/cli/commands.h"
#include "app/cli/info_gguf.h"
#include "core/model/checkpoint.h"
#include "core/util/error.h"

namespace mxlens::cli {

namespace {

std::string shape_text(const std::vector<uint64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

std::string ids_text(const std::vector<int>& ids) {
  std::string s;
  for (size_t i = 0; i < ids.size(); ++i) {
    if (i) s += ",";
    s += std::to_string(ids[i]);
  }
  return s.empty() ? "-" : s;
}

std::string rope_text(const LlamaConfig& c) {
  char buf[256];
  const RopeScaling& s = c.rope_scaling;
  if (s.type == "llama3") {
    std::snprintf(buf, sizeof buf,
                  "theta %g, llama3 scaling (factor %g, low_freq_factor %g, high_freq_factor %g, "
                  "original_max_position_embeddings %lld)",
                  c.rope_theta, s.factor, s.low_freq_factor, s.high_freq_factor,
                  static_cast<long long>(s.original_max_position_embeddings));
  } else if (s.type == "linear") {
    std::snprintf(buf, sizeof buf, "theta %g, linear scaling (factor %g)", c.rope_theta, s.factor);
  } else {
    std::snprintf(buf, sizeof buf, "theta %g, no scaling", c.rope_theta);
  }
  return buf;
}

std::string biases_text(const LlamaConfig& c) {
  std::string s;
  if (c.qkv_bias) s += "q,k,v";
  if (c.attention_bias) s += ",o";
  if (c.mlp_bias) s += std::string(s.empty() ? "" : ",") + "gate,up,down";
  return s.empty() ? "none" : s;
}

// "model.layers.2.x" before "model.layers.10.x": digit runs compare as numbers.
bool natural_less(const std::string& a, const std::string& b) {
  size_t i = 0, j = 0;
  while (i < a.size() && j < b.size()) {
    if (std::isdigit(static_cast<unsigned char>(a[i])) &&
        std::isdigit(static_cast<unsigned char>(b[j]))) {
      size_t ie = i, je = j;
      while (ie < a.size() && std::isdigit(static_cast<unsigned char>(a[ie]))) ++ie;
      while (je < b.size() && std::isdigit(static_cast<unsigned char>(b[je]))) ++je;
      const std::string_view na(a.data() + i, ie - i), nb(b.data() + j, je - j);
      if (na.size() != nb.size()) return na.size() < nb.size();
      if (na != nb) return na < nb;
      i = ie, j = je;
    } else {
      if (a[i] != b[j]) return a[i] < b[j];
      ++i, ++j;
    }
  }
  return a.size() - i < b.size() - j;
}

std::vector<TensorRef> sorted_tensors(const Checkpoint& ck) {
  std::vector<TensorRef> tensors = ck.tensors();
  std::sort(tensors.begin(), tensors.end(),
            [](const TensorRef& x, const TensorRef& y) { return natural_less(x.name, y.name); });
  return tensors;
}

struct Totals {
  uint64_t parameters = 0;
  std::map<std::string, uint64_t> bytes_by_dtype;
  std::map<std::string, uint64_t> parameters_by_dtype;
  std::set<std::string> shards;
};

Totals totals_of(const std::vector<TensorRef>& tensors) {
  Totals t;
  for (const TensorRef& ref : tensors) {
    uint64_t numel = 1;
    for (uint64_t dim : ref.shape) numel *= dim;
    t.parameters += numel;
    t.bytes_by_dtype[dtype_name(ref.dtype)] += ref.bytes.size();
    t.parameters_by_dtype[dtype_name(ref.dtype)] += numel;
    t.shards.insert(ref.shard->filename().string());
  }
  return t;
}

void print_json(const Checkpoint& ck) {
  const LlamaConfig& c = ck.config();
  const auto tensors = sorted_tensors(ck);
  const Totals totals = totals_of(tensors);
  nlohmann::ordered_json j;
  j["dir"] = ck.dir().string();
  nlohmann::ordered_json cfg;
  cfg["architecture"] = c.architecture;
  cfg["model_type"] = c.model_type;
  cfg["hidden_size"] = c.hidden_size;
  cfg["intermediate_size"] = c.intermediate_size;
  cfg["num_layers"] = c.num_layers;
  cfg["num_heads"] = c.num_heads;
  cfg["num_kv_heads"] = c.num_kv_heads;
  cfg["head_dim"] = c.head_dim;
  cfg["vocab_size"] = c.vocab_size;
  cfg["max_position_embeddings"] = c.max_position_embeddings;
  cfg["rms_norm_eps"] = c.rms_norm_eps;
  cfg["rope_theta"] = c.rope_theta;
  cfg["rope_scaling"] = {
      {"type", c.rope_scaling.type},
      {"factor", c.rope_scaling.factor},
      {"low_freq_factor", c.rope_scaling.low_freq_factor},
      {"high_freq_factor", c.rope_scaling.high_freq_factor},
      {"original_max_position_embeddings", c.rope_scaling.original_max_position_embeddings}};
  cfg["tie_word_embeddings"] = c.tie_word_embeddings;
  cfg["qkv_bias"] = c.qkv_bias;
  cfg["attention_bias"] = c.attention_bias;
  cfg["mlp_bias"] = c.mlp_bias;
  cfg["bos_token_ids"] = c.bos_token_ids;
  cfg["eos_token_ids"] = c.eos_token_ids;
  cfg["torch_dtype"] = c.torch_dtype;
  j["config"] = cfg;
  j["embedding"] = ck.embedding_name();
  j["lm_head"] = ck.lm_head_name();
  const auto tok = ck.tokenizer_json();
  j["tokenizer"] = tok ? nlohmann::ordered_json(tok->string()) : nlohmann::ordered_json(nullptr);
  auto& list = j["tensors"] = nlohmann::ordered_json::array();
  for (const TensorRef& t : tensors)
    list.push_back({{"name", t.name},
                    {"dtype", dtype_name(t.dtype)},
                    {"shape", t.shape},
                    {"bytes", t.bytes.size()},
                    {"shard", t.shard->filename().string()}});
  j["totals"] = {{"parameters", totals.parameters},
                 {"parameters_by_dtype", totals.parameters_by_dtype},
                 {"bytes_by_dtype", totals.bytes_by_dtype},
                 {"n_shards", totals.shards.size()},
                 {"file_bytes", ck.file_size_bytes()}};
  std::printf("%s\n", j.dump(2).c_str());
}

void print_text(const Checkpoint& ck) {
  const LlamaConfig& c = ck.config();
  const auto tensors = sorted_tensors(ck);
  const Totals totals = totals_of(tensors);
  const auto tok = ck.tokenizer_json();
  std::printf("checkpoint: %s\n", ck.dir().string().c_str());
  std::printf("architecture: %s (%s)\n", c.architecture.c_str(), c.model_type.c_str());
  std::printf("hidden_size: %d\n", c.hidden_size);
  std::printf("intermediate_size: %d\n", c.intermediate_size);
  std::printf("layers: %d\n", c.num_layers);
  std::printf("heads: %d, kv_heads: %d (group %d)\n", c.num_heads, c.num_kv_heads, c.kv_group());
  std::printf("head_dim: %d\n", c.head_dim);
  std::printf("vocab_size: %d\n", c.vocab_size);
  std::printf("max_position_embeddings: %lld\n", static_cast<long long>(c.max_position_embeddings));
  std::printf("rope: %s\n", rope_text(c).c_str());
  std::printf("rms_norm_eps: %g\n", c.rms_norm_eps);
  std::printf("tie_word_embeddings: %s (embedding: %s, lm_head: %s)\n",
              c.tie_word_embeddings ? "true" : "false", ck.embedding_name().c_str(),
              ck.lm_head_name().c_str());
  std::printf("biases: %s\n", biases_text(c).c_str());
  std::printf("bos/eos token ids: %s / %s\n", ids_text(c.bos_token_ids).c_str(),
              ids_text(c.eos_token_ids).c_str());
  std::printf("torch_dtype: %s\n", c.torch_dtype.empty() ? "-" : c.torch_dtype.c_str());
  std::printf("tokenizer: %s\n", tok ? tok->string().c_str() : "(none)");

  size_t name_width = 4;
  for (const TensorRef& t : tensors) name_width = std::max(name_width, t.name.size());
  std::printf("\ntensors: %zu\n", tensors.size());
  std::printf("%-*s  %-5s  %-14s  %12s  %s\n", static_cast<int>(name_width), "name", "dtype",
              "shape", "bytes", "shard");
  for (const TensorRef& t : tensors)
    std::printf("%-*s  %-5s  %-14s  %12zu  %s\n", static_cast<int>(name_width), t.name.c_str(),
                dtype_name(t.dtype), shape_text(t.shape).c_str(), t.bytes.size(),
                t.shard->filename().string().c_str());

  std::printf("\nparameters: %llu\n", static_cast<unsigned long long>(totals.parameters));
  for (const auto& [dtype, bytes] : totals.bytes_by_dtype)
    std::printf("bytes %s: %llu (%llu parameters)\n", dtype.c_str(),
                static_cast<unsigned long long>(bytes),
                static_cast<unsigned long long>(totals.parameters_by_dtype.at(dtype)));
  std::printf("file bytes: %llu in %zu shard(s)\n",
              static_cast<unsigned long long>(ck.file_size_bytes()), totals.shards.size());
}

}  // namespace

void register_info(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "info",
      "Show a checkpoint's config, tensors and sizes, or a GGUF file's keys and tensors (with "
      "the E8M0 exponent range of each MXFP4 tensor)");
  struct Options {
    std::string dir;
    bool json = false;
  };
  auto opts = std::make_shared<Options>();
  cmd->add_option("dir", opts->dir,
                  "Checkpoint directory (config.json + safetensors) or a .gguf file")
      ->required();
  cmd->add_flag("--json", opts->json, "Print one JSON object instead of text");
  cmd->callback([opts] {
    if (std::filesystem::is_regular_file(opts->dir)) {
      const GgufFile file = GgufFile::open(opts->dir);
      if (opts->json)
        print_gguf_json(file);
      else
        print_gguf_text(file);
      return;
    }
    const Checkpoint ck = Checkpoint::open(opts->dir);
    if (opts->json)
      print_json(ck);
    else
      print_text(ck);
  });
}

}  // namespace mxlens::cli
