#pragma once
// LlamaConfig: the fields of a Hugging Face config.json that the forward needs
// (formats.md §2.1-2.5), parsed and validated.
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace mxlens {

struct RopeScaling {
  std::string type = "default";  // "default", "llama3", "linear"
  double factor = 1.0;
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  int64_t original_max_position_embeddings = 0;
};

struct LlamaConfig {
  std::string architecture;   // "LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM"
  std::string model_type;     // "llama", "mistral", "qwen2"
  int hidden_size = 0;        // d
  int intermediate_size = 0;  // f
  int num_layers = 0;
  int num_heads = 0;
  int num_kv_heads = 0;  // = num_heads when absent
  int head_dim = 0;      // = hidden_size / num_heads when absent
  int vocab_size = 0;
  int64_t max_position_embeddings = 2048;
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000.0;
  RopeScaling rope_scaling;
  bool tie_word_embeddings = false;
  bool attention_bias = false;  // o_proj bias (config attention_bias; then q/k/v too)
  bool qkv_bias = false;        // q/k/v_proj biases: Qwen2, or attention_bias
  bool mlp_bias = false;
  std::vector<int> bos_token_ids;
  std::vector<int> eos_token_ids;
  std::string torch_dtype;  // as written ("bfloat16", ...), informational

  int kv_group() const { return num_heads / num_kv_heads; }
};

// Parses and validates config.json; throws mxlens::Error naming the file and field.
LlamaConfig parse_llama_config(const std::filesystem::path& config_json);

// RoPE inverse frequencies (head_dim/2 values), llama3/linear scaling applied (formats.md §2.3).
std::vector<double> rope_inv_freq(const LlamaConfig& cfg);

}  // namespace mxlens
