#include "core/model/llama_config.h"

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <numbers>
#include <sstream>

#include "core/util/error.h"

namespace mxlens {

namespace {

using json = nlohmann::json;

struct Architecture {
  const char* architecture;
  const char* model_type;
};

constexpr Architecture kArchitectures[] = {
    {"LlamaForCausalLM", "llama"},
    {"MistralForCausalLM", "mistral"},
    {"Qwen2ForCausalLM", "qwen2"},
};

// Reads config fields with their types checked; a JSON null counts as absent.
class ConfigReader {
 public:
  ConfigReader(std::string source, const json& j) : source_(std::move(source)), j_(j) {}

  const std::string& source() const { return source_; }

  bool has(const json& obj, const char* key) const {
    return obj.contains(key) && !obj[key].is_null();
  }
  bool has(const char* key) const { return has(j_, key); }

  int64_t integer(const json& obj, const char* key, const std::string& prefix = {}) const {
    const json& v = obj[key];
    if (!v.is_number_integer())
      throw Error(source_, "field '" + prefix + key + "' must be an integer, got " + v.dump());
    return v.get<int64_t>();
  }
  int required_int(const char* key) const {
    if (!has(key)) throw Error(source_, std::string("missing required field '") + key + "'");
    return positive_int(key);
  }
  int positive_int(const char* key) const {
    const int64_t v = integer(j_, key);
    if (v <= 0 || v > INT32_MAX)
      throw Error(source_, std::string("field '") + key + "' must be a positive integer, got " +
                               std::to_string(v));
    return static_cast<int>(v);
  }
  double number(const json& obj, const char* key, const std::string& prefix = {}) const {
    const json& v = obj[key];
    if (!v.is_number())
      throw Error(source_, "field '" + prefix + key + "' must be a number, got " + v.dump());
    return v.get<double>();
  }
  bool boolean(const char* key, bool fallback) const {
    if (!has(key)) return fallback;
    if (!j_[key].is_boolean())
      throw Error(source_,
                  std::string("field '") + key + "' must be true or false, got " + j_[key].dump());
    return j_[key].get<bool>();
  }
  std::string string(const json& obj, const char* key, const std::string& prefix = {}) const {
    const json& v = obj[key];
    if (!v.is_string())
      throw Error(source_, "field '" + prefix + key + "' must be a string, got " + v.dump());
    return v.get<std::string>();
  }
  std::vector<int> token_ids(const char* key) const {
    std::vector<int> ids;
    if (!has(key)) return ids;
    const json& v = j_[key];
    auto one = [&](const json& id) {
      if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() > INT32_MAX)
        throw Error(source_, std::string("field '") + key +
                                 "' must be a token id or a list of token ids, got " + v.dump());
      ids.push_back(static_cast<int>(id.get<int64_t>()));
    };
    if (v.is_array()) {
      for (const json& id : v) one(id);
    } else {
      one(v);
    }
    return ids;
  }

 private:
  std::string source_;
  const json& j_;
};

void read_architecture(const ConfigReader& r, const json& j, LlamaConfig& cfg) {
  std::string model_type;
  if (r.has("model_type")) model_type = r.string(j, "model_type");
  if (r.has("architectures")) {
    const json& archs = j["architectures"];
    if (!archs.is_array() || archs.empty() || !archs[0].is_string())
      throw Error(r.source(), "field 'architectures' must be a non-empty list of strings");
    cfg.architecture = archs[0].get<std::string>();
  }
  for (const auto& a : kArchitectures) {
    if (cfg.architecture == a.architecture ||
        (cfg.architecture.empty() && model_type == a.model_type)) {
      cfg.architecture = a.architecture;
      cfg.model_type = a.model_type;
      if (!model_type.empty() && model_type != a.model_type)
        throw Error(r.source(), "model_type '" + model_type + "' does not match architecture " +
                                    a.architecture + " (expected '" + a.model_type + "')");
      return;
    }
  }
  if (cfg.architecture.empty() && model_type.empty())
    throw Error(r.source(), "missing required field 'architectures' (or 'model_type')");
  throw Error(r.source(),
              "unsupported architecture '" +
                  (cfg.architecture.empty() ? model_type : cfg.architecture) +
                  "' (supported: LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM)");
}

// formats.md §2.2: rope_parameters (transformers v5) or rope_scaling + rope_theta.
void read_rope(const ConfigReader& r, const json& j, LlamaConfig& cfg) {
  if (r.has("rope_theta")) cfg.rope_theta = r.number(j, "rope_theta");
  const char* object_key = nullptr;
  if (r.has("rope_parameters"))
    object_key = "rope_parameters";
  else if (r.has("rope_scaling"))
    object_key = "rope_scaling";
  if (object_key) {
    const json& rope = j[object_key];
    const std::string prefix = std::string(object_key) + ".";
    if (!rope.is_object())
      throw Error(r.source(), std::string("field '") + object_key + "' must be an object");
    if (r.has(rope, "rope_theta")) cfg.rope_theta = r.number(rope, "rope_theta", prefix);
    if (r.has(rope, "rope_type"))
      cfg.rope_scaling.type = r.string(rope, "rope_type", prefix);
    else if (r.has(rope, "type"))
      cfg.rope_scaling.type = r.string(rope, "type", prefix);
    RopeScaling& s = cfg.rope_scaling;
    if (s.type == "llama3" || s.type == "linear") {
      if (!r.has(rope, "factor"))
        throw Error(r.source(), "missing field '" + prefix + "factor' for rope type " + s.type);
      s.factor = r.number(rope, "factor", prefix);
      if (!(s.factor >= 1.0))
        throw Error(r.source(),
                    "field '" + prefix + "factor' must be >= 1, got " + std::to_string(s.factor));
    }
    if (s.type == "llama3") {
      if (r.has(rope, "low_freq_factor"))
        s.low_freq_factor = r.number(rope, "low_freq_factor", prefix);
      if (r.has(rope, "high_freq_factor"))
        s.high_freq_factor = r.number(rope, "high_freq_factor", prefix);
      s.original_max_position_embeddings =
          r.has(rope, "original_max_position_embeddings")
              ? r.integer(rope, "original_max_position_embeddings", prefix)
              : cfg.max_position_embeddings;
      if (!(s.low_freq_factor > 0.0) || !(s.high_freq_factor > s.low_freq_factor))
        throw Error(r.source(), "llama3 rope needs 0 < low_freq_factor < high_freq_factor, got " +
                                    std::to_string(s.low_freq_factor) + " and " +
                                    std::to_string(s.high_freq_factor));
      if (s.original_max_position_embeddings <= 0)
        throw Error(r.source(),
                    "field '" + prefix + "original_max_position_embeddings' must be positive");
    }
    if (s.type != "default" && s.type != "llama3" && s.type != "linear")
      throw Error(r.source(),
                  "unsupported rope type '" + s.type + "' (supported: default, llama3, linear)");
  }
  if (!(cfg.rope_theta > 0.0) || !std::isfinite(cfg.rope_theta))
    throw Error(r.source(), "field 'rope_theta' must be a positive number");
}

}  // namespace

LlamaConfig parse_llama_config(const std::filesystem::path& config_json) {
  const std::string source = config_json.string();
  std::ifstream in(config_json, std::ios::binary);
  if (!in) throw Error(source, "cannot open file");
  std::stringstream text;
  text << in.rdbuf();
  json j;
  try {
    j = json::parse(text.str());
  } catch (const json::exception& e) {
    throw Error(source, std::string("not valid JSON: ") + e.what());
  }
  if (!j.is_object()) throw Error(source, "not a JSON object");
  const ConfigReader r(source, j);

  LlamaConfig cfg;
  read_architecture(r, j, cfg);
  cfg.hidden_size = r.required_int("hidden_size");
  cfg.num_layers = r.required_int("num_hidden_layers");
  cfg.num_heads = r.required_int("num_attention_heads");
  cfg.intermediate_size = r.required_int("intermediate_size");
  cfg.vocab_size = r.required_int("vocab_size");
  cfg.num_kv_heads =
      r.has("num_key_value_heads") ? r.positive_int("num_key_value_heads") : cfg.num_heads;
  if (r.has("head_dim")) {
    cfg.head_dim = r.positive_int("head_dim");
  } else {
    if (cfg.hidden_size % cfg.num_heads != 0)
      throw Error(source, "hidden_size " + std::to_string(cfg.hidden_size) +
                              " is not divisible by num_attention_heads " +
                              std::to_string(cfg.num_heads) + " and no head_dim is given");
    cfg.head_dim = cfg.hidden_size / cfg.num_heads;
  }
  if (cfg.num_heads % cfg.num_kv_heads != 0)
    throw Error(source, "num_attention_heads " + std::to_string(cfg.num_heads) +
                            " is not a multiple of num_key_value_heads " +
                            std::to_string(cfg.num_kv_heads));
  if (cfg.head_dim % 2 != 0)
    throw Error(source, "head_dim " + std::to_string(cfg.head_dim) + " must be even for RoPE");
  if (r.has("max_position_embeddings"))
    cfg.max_position_embeddings = r.positive_int("max_position_embeddings");
  if (r.has("rms_norm_eps")) cfg.rms_norm_eps = r.number(j, "rms_norm_eps");
  if (!(cfg.rms_norm_eps >= 0.0) || !std::isfinite(cfg.rms_norm_eps))
    throw Error(source, "field 'rms_norm_eps' must be a non-negative number");
  if (r.has("hidden_act")) {
    const std::string act = r.string(j, "hidden_act");
    if (act != "silu")
      throw Error(source, "unsupported hidden_act '" + act + "' (only silu is supported)");
  }
  read_rope(r, j, cfg);

  cfg.tie_word_embeddings = r.boolean("tie_word_embeddings", false);
  cfg.qkv_bias = cfg.model_type == "qwen2";
  cfg.attention_bias = cfg.qkv_bias ? false : r.boolean("attention_bias", false);
  if (cfg.attention_bias) cfg.qkv_bias = true;
  cfg.mlp_bias = r.boolean("mlp_bias", false);
  if (cfg.model_type == "qwen2" && r.boolean("use_sliding_window", false))
    throw Error(source, "use_sliding_window is true: sliding-window attention is not supported");
  cfg.bos_token_ids = r.token_ids("bos_token_id");
  cfg.eos_token_ids = r.token_ids("eos_token_id");
  if (r.has("torch_dtype"))
    cfg.torch_dtype = r.string(j, "torch_dtype");
  else if (r.has("dtype") && j["dtype"].is_string())
    cfg.torch_dtype = j["dtype"].get<std::string>();
  return cfg;
}

std::vector<double> rope_inv_freq(const LlamaConfig& cfg) {
  const int half = cfg.head_dim / 2;
  std::vector<double> inv_freq(half);
  for (int i = 0; i < half; ++i)
    inv_freq[i] = std::pow(cfg.rope_theta, -2.0 * i / static_cast<double>(cfg.head_dim));

  const RopeScaling& s = cfg.rope_scaling;
  if (s.type == "linear") {
    for (double& f : inv_freq) f /= s.factor;
  } else if (s.type == "llama3") {
    // formats.md §2.3; strict comparisons, so the boundaries fall into the blend.
    const double old = static_cast<double>(s.original_max_position_embeddings);
    const double low_wl = old / s.low_freq_factor;
    const double high_wl = old / s.high_freq_factor;
    for (double& f : inv_freq) {
      const double wl = 2.0 * std::numbers::pi / f;
      if (wl < high_wl) continue;
      if (wl > low_wl) {
        f = f / s.factor;
      } else {
        const double smooth =
            (old / wl - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
        f = (1.0 - smooth) * f / s.factor + smooth * f;
      }
    }
  }
  return inv_freq;
}

}  // namespace mxlens
