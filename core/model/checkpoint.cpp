#include "core/model/checkpoint.h"

#include <cstring>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "core/io/float_convert.h"
#include "core/util/error.h"

namespace mxlens {

namespace {

using json = nlohmann::json;

constexpr const char* kEmbedName = "model.embed_tokens.weight";
constexpr const char* kLmHeadName = "lm_head.weight";
constexpr const char* kNormName = "model.norm.weight";

std::string shape_text(const std::vector<uint64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

bool is_float_dtype(DType t) {
  return t == DType::F32 || t == DType::F16 || t == DType::BF16;
}

// A shard name from the index must stay inside the checkpoint directory.
void check_shard_name(const std::filesystem::path& index_path, const std::string& name) {
  const std::filesystem::path p(name);
  bool escapes = p.empty() || p.is_absolute();
  for (const auto& part : p)
    if (part == "..") escapes = true;
  if (escapes)
    throw Error(index_path.string(),
                "shard name '" + name + "' is not a file inside the checkpoint directory");
}

}  // namespace

struct Checkpoint::Impl {
  struct Entry {
    size_t shard = 0;
    const TensorInfo* info = nullptr;
  };
  std::filesystem::path dir;
  LlamaConfig config;
  std::optional<std::filesystem::path> tokenizer;
  std::vector<std::unique_ptr<SafetensorsFile>> shards;
  std::map<std::string, Entry, std::less<>> tensors;
  std::string embedding;
  std::string lm_head;
  std::optional<FpQuantConfig> fp_quant;

  void add_shard(const std::filesystem::path& path) {
    shards.push_back(std::make_unique<SafetensorsFile>(SafetensorsFile::open(path)));
    const size_t index = shards.size() - 1;
    for (const TensorInfo& t : shards.back()->tensors()) {
      auto [it, inserted] = tensors.emplace(t.name, Entry{index, &t});
      if (!inserted)
        throw Error(path.string(), "tensor '" + t.name + "' also appears in " +
                                       shards[it->second.shard]->path().string());
    }
  }

  // Canonical HF names carry "model."; LlamaModel exports store them without it.
  const Entry* find(std::string_view name) const {
    if (auto it = tensors.find(name); it != tensors.end()) return &it->second;
    constexpr std::string_view prefix = "model.";
    if (name.starts_with(prefix)) {
      if (auto it = tensors.find(name.substr(prefix.size())); it != tensors.end())
        return &it->second;
    }
    return nullptr;
  }

  const Entry& get(std::string_view name) const {
    const Entry* e = find(name);
    if (!e) throw Error(dir.string(), "checkpoint has no tensor '" + std::string(name) + "'");
    return *e;
  }

  TensorRef ref(std::string_view name) const {
    const Entry& e = get(name);
    const SafetensorsFile& shard = *shards[e.shard];
    return TensorRef{e.info->name, e.info->dtype, e.info->shape, shard.bytes(*e.info),
                     &shard.path()};
  }

  void require(const std::string& name, std::vector<uint64_t> shape) const {
    const Entry* e = find(name);
    if (!e) throw Error(dir.string(), "missing tensor '" + name + "'");
    const std::string& shard = shards[e->shard]->path().string();
    if (!is_float_dtype(e->info->dtype))
      throw Error(shard, "tensor '" + name + "' has dtype " + dtype_name(e->info->dtype) +
                             ", expected F32, F16 or BF16");
    if (e->info->shape != shape)
      throw Error(shard, "tensor '" + name + "' has shape " + shape_text(e->info->shape) +
                             ", expected " + shape_text(shape));
  }

  // An fp_quant tensor: dtype in `dtypes`, shape exactly `shape`.
  void require_stored(const std::string& name, std::initializer_list<DType> dtypes,
                      std::vector<uint64_t> shape) const {
    const Entry* e = find(name);
    if (!e)
      throw Error(dir.string(), "missing tensor '" + name + "' (an fp_quant checkpoint stores " +
                                    "qweight, scales, forward_hadamard_matrix and global scales " +
                                    "per quantized linear)");
    const std::string& shard = shards[e->shard]->path().string();
    bool ok = false;
    for (DType t : dtypes) ok = ok || e->info->dtype == t;
    if (!ok)
      throw Error(shard, "tensor '" + name + "' has dtype " + dtype_name(e->info->dtype) +
                             ", which fp_quant does not use there");
    if (e->info->shape != shape)
      throw Error(shard, "tensor '" + name + "' has shape " + shape_text(e->info->shape) +
                             ", expected " + shape_text(shape));
  }
  void require_linear(const std::string& module, uint64_t rows, uint64_t cols) const {
    if (!fp_quant || !fp_quant->quantizes(module)) {
      require(module + ".weight", {rows, cols});
      return;
    }
    if (cols % 32 != 0)
      throw Error(dir.string(), module + " has " + std::to_string(cols) +
                                    " input channels, not a multiple of the MXFP4 block (32)");
    const uint64_t g = uint64_t(fp_quant->group_size);
    if (cols % g != 0)
      throw Error(dir.string(), module + " has " + std::to_string(cols) +
                                    " input channels, not a multiple of hadamard_group_size " +
                                    std::to_string(g));
    require_stored(module + ".qweight", {DType::U8}, {rows, cols / 2});
    require_stored(module + ".scales", {DType::U8, DType::F8_E8M0}, {rows, cols / 32});
    require_stored(module + ".forward_hadamard_matrix", {DType::F32, DType::BF16, DType::F16},
                   {g, g});
    require_stored(module + ".weight_global_scale", {DType::F32, DType::BF16, DType::F16}, {1});
    require_stored(module + ".act_global_scale", {DType::F32, DType::BF16, DType::F16}, {1});
  }

  void open_shards();
  void check_tensors();
};

void Checkpoint::Impl::open_shards() {
  const auto single = dir / "model.safetensors";
  const auto index_path = dir / "model.safetensors.index.json";
  if (std::filesystem::exists(single)) {
    add_shard(single);
    return;
  }
  if (!std::filesystem::exists(index_path))
    throw Error(dir.string(),
                "no model.safetensors or model.safetensors.index.json in the directory");

  std::ifstream in(index_path, std::ios::binary);
  if (!in) throw Error(index_path.string(), "cannot open file");
  std::stringstream text;
  text << in.rdbuf();
  json index;
  try {
    index = json::parse(text.str());
  } catch (const json::exception& e) {
    throw Error(index_path.string(), std::string("not valid JSON: ") + e.what());
  }
  if (!index.is_object() || !index.contains("weight_map") || !index["weight_map"].is_object())
    throw Error(index_path.string(), "missing object 'weight_map'");
  const json& weight_map = index["weight_map"];
  if (weight_map.empty()) throw Error(index_path.string(), "'weight_map' is empty");

  std::vector<std::string> shard_names;  // distinct, in order of first mention
  std::set<std::string> seen;
  for (const auto& [tensor, shard] : weight_map.items()) {
    if (!shard.is_string())
      throw Error(index_path.string(), "weight_map entry for '" + tensor + "' is not a file name");
    const std::string name = shard.get<std::string>();
    check_shard_name(index_path, name);
    if (seen.insert(name).second) shard_names.push_back(name);
  }
  for (const std::string& name : shard_names) {
    const auto path = dir / name;
    if (!std::filesystem::exists(path))
      throw Error(index_path.string(), "shard '" + name + "' listed in weight_map does not exist");
    add_shard(path);
  }
  for (const auto& [tensor, shard] : weight_map.items()) {
    const auto it = tensors.find(tensor);
    const std::string name = shard.get<std::string>();
    if (it == tensors.end())
      throw Error(index_path.string(), "tensor '" + tensor + "' is mapped to shard '" + name +
                                           "' but that shard does not contain it");
    const auto& actual = shards[it->second.shard]->path();
    if (actual != dir / name)
      throw Error(index_path.string(), "tensor '" + tensor + "' is mapped to shard '" + name +
                                           "' but is stored in " + actual.string());
  }
}

// formats.md §2.4 (+ §2.5 biases): every tensor the forward reads, with its shape.
void Checkpoint::Impl::check_tensors() {
  const LlamaConfig& c = config;
  const uint64_t d = c.hidden_size, f = c.intermediate_size, vocab = c.vocab_size;
  const uint64_t q_rows = uint64_t(c.num_heads) * c.head_dim;
  const uint64_t kv_rows = uint64_t(c.num_kv_heads) * c.head_dim;

  const bool has_embed = find(kEmbedName) != nullptr;
  const bool has_head = find(kLmHeadName) != nullptr;
  if (has_embed) {
    embedding = kEmbedName;
  } else if (has_head && c.tie_word_embeddings) {
    embedding = kLmHeadName;
  } else {
    throw Error(dir.string(),
                std::string("missing tensor '") + kEmbedName + "'" +
                    (has_head ? " (lm_head.weight is present but tie_word_embeddings is false)"
                              : " (and no lm_head.weight to use with tied embeddings)"));
  }
  if (has_head) {
    lm_head = kLmHeadName;
  } else if (c.tie_word_embeddings) {
    lm_head = embedding;
  } else {
    throw Error(dir.string(), std::string("missing tensor '") + kLmHeadName +
                                  "' and tie_word_embeddings is false");
  }
  require(embedding, {vocab, d});
  require(lm_head, {vocab, d});
  require(kNormName, {d});
  for (int layer = 0; layer < c.num_layers; ++layer) {
    auto name = [&](const char* suffix) { return layer_tensor_name(layer, suffix); };
    require(name("input_layernorm.weight"), {d});
    require(name("post_attention_layernorm.weight"), {d});
    auto module = [&](const char* suffix) { return layer_tensor_name(layer, suffix); };
    require_linear(module("self_attn.q_proj"), q_rows, d);
    require_linear(module("self_attn.k_proj"), kv_rows, d);
    require_linear(module("self_attn.v_proj"), kv_rows, d);
    require_linear(module("self_attn.o_proj"), d, q_rows);
    require_linear(module("mlp.gate_proj"), f, d);
    require_linear(module("mlp.up_proj"), f, d);
    require_linear(module("mlp.down_proj"), d, f);
    if (c.qkv_bias) {
      require(name("self_attn.q_proj.bias"), {q_rows});
      require(name("self_attn.k_proj.bias"), {kv_rows});
      require(name("self_attn.v_proj.bias"), {kv_rows});
    }
    if (c.attention_bias) require(name("self_attn.o_proj.bias"), {d});
    if (c.mlp_bias) {
      require(name("mlp.gate_proj.bias"), {f});
      require(name("mlp.up_proj.bias"), {f});
      require(name("mlp.down_proj.bias"), {d});
    }
  }
}

Checkpoint Checkpoint::open(const std::filesystem::path& dir) {
  if (!std::filesystem::exists(dir)) throw Error(dir.string(), "directory does not exist");
  if (!std::filesystem::is_directory(dir)) throw Error(dir.string(), "not a directory");
  auto impl = std::make_unique<Impl>();
  impl->dir = dir;
  const auto config_path = dir / "config.json";
  if (!std::filesystem::exists(config_path)) throw Error(config_path.string(), "file not found");
  impl->config = parse_llama_config(config_path);
  impl->fp_quant = read_fp_quant_config(config_path);
  impl->open_shards();
  impl->check_tensors();
  if (const auto tok = dir / "tokenizer.json"; std::filesystem::is_regular_file(tok))
    impl->tokenizer = tok;
  return Checkpoint(std::move(impl));
}

Checkpoint::Checkpoint(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

const FpQuantConfig* Checkpoint::fp_quant() const {
  return impl_->fp_quant ? &*impl_->fp_quant : nullptr;
}
Checkpoint::Checkpoint(Checkpoint&&) noexcept = default;
Checkpoint& Checkpoint::operator=(Checkpoint&&) noexcept = default;
Checkpoint::~Checkpoint() = default;

const std::filesystem::path& Checkpoint::dir() const {
  return impl_->dir;
}
const LlamaConfig& Checkpoint::config() const {
  return impl_->config;
}
std::optional<std::filesystem::path> Checkpoint::tokenizer_json() const {
  return impl_->tokenizer;
}

bool Checkpoint::has(std::string_view name) const {
  return impl_->find(name) != nullptr;
}
TensorRef Checkpoint::tensor(std::string_view name) const {
  return impl_->ref(name);
}

std::vector<TensorRef> Checkpoint::tensors() const {
  std::vector<TensorRef> out;
  out.reserve(impl_->tensors.size());
  for (const auto& [name, e] : impl_->tensors) out.push_back(impl_->ref(name));
  return out;
}

uint64_t Checkpoint::file_size_bytes() const {
  uint64_t total = 0;
  for (const auto& shard : impl_->shards) total += shard->file_size_bytes();
  return total;
}

uint64_t Checkpoint::parameter_count() const {
  uint64_t total = 0;
  for (const auto& [name, e] : impl_->tensors) total += e.info->numel();
  return total;
}

std::string Checkpoint::embedding_name() const {
  return impl_->embedding;
}
std::string Checkpoint::lm_head_name() const {
  return impl_->lm_head;
}

void Checkpoint::read_f32(std::string_view name, std::span<float> dst) const {
  const TensorRef t = impl_->ref(name);
  const uint64_t numel = impl_->get(name).info->numel();
  if (dst.size() != numel)
    throw Error(t.shard->string(), "read_f32 of '" + t.name + "': destination holds " +
                                       std::to_string(dst.size()) + " floats, tensor has " +
                                       std::to_string(numel));
  convert_to_f32(t.dtype, t.bytes, dst, t.shard->string() + ": tensor '" + t.name + "'");
}

void Checkpoint::read_rows_f32(std::string_view name, int64_t row_begin, int64_t n_rows,
                               std::span<float> dst) const {
  const TensorRef t = impl_->ref(name);
  if (t.shape.size() != 2)
    throw Error(t.shard->string(), "read_rows_f32 of '" + t.name + "': tensor is not 2-D");
  const uint64_t rows = t.shape[0], cols = t.shape[1];
  if (row_begin < 0 || n_rows < 0 || uint64_t(row_begin) + uint64_t(n_rows) > rows)
    throw Error(t.shard->string(), "read_rows_f32 of '" + t.name + "': rows [" +
                                       std::to_string(row_begin) + ", " +
                                       std::to_string(row_begin + n_rows) + ") outside [0, " +
                                       std::to_string(rows) + ")");
  if (dst.size() != uint64_t(n_rows) * cols)
    throw Error(t.shard->string(), "read_rows_f32 of '" + t.name + "': destination holds " +
                                       std::to_string(dst.size()) + " floats, rows need " +
                                       std::to_string(uint64_t(n_rows) * cols));
  const uint64_t element_bytes = dtype_bits(t.dtype) / 8;
  const auto bytes = t.bytes.subspan(uint64_t(row_begin) * cols * element_bytes,
                                     uint64_t(n_rows) * cols * element_bytes);
  convert_to_f32(t.dtype, bytes, dst, t.shard->string() + ": tensor '" + t.name + "'");
}

std::span<const float> Checkpoint::f32_view(std::string_view name) const {
  const Impl::Entry& e = impl_->get(name);
  if (e.info->dtype != DType::F32) return {};
  const SafetensorsFile& shard = *impl_->shards[e.shard];
  if (!shard.is_aligned(*e.info)) return {};
  const auto bytes = shard.bytes(*e.info);
  return {reinterpret_cast<const float*>(bytes.data()), bytes.size() / sizeof(float)};
}

std::string layer_tensor_name(int layer, std::string_view suffix) {
  return "model.layers." + std::to_string(layer) + "." + std::string(suffix);
}

}  // namespace mxlens
