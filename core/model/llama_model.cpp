#include "core/model/llama_model.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <exception>
#include <utility>

#include "core/util/error.h"

namespace mxlens {

namespace {

struct LinearSpec {
  Linear which;
  const char* suffix;
};
constexpr std::array<LinearSpec, 7> kLinearSpecs = {{
    {Linear::Q, "self_attn.q_proj.weight"},
    {Linear::K, "self_attn.k_proj.weight"},
    {Linear::V, "self_attn.v_proj.weight"},
    {Linear::O, "self_attn.o_proj.weight"},
    {Linear::Gate, "mlp.gate_proj.weight"},
    {Linear::Up, "mlp.up_proj.weight"},
    {Linear::Down, "mlp.down_proj.weight"},
}};

// [out, in] of each linear.
std::pair<int64_t, int64_t> linear_shape(const LlamaConfig& c, Linear which) {
  const int64_t d = c.hidden_size, f = c.intermediate_size;
  const int64_t hd = int64_t(c.num_heads) * c.head_dim, kvd = int64_t(c.num_kv_heads) * c.head_dim;
  switch (which) {
    case Linear::Q:
      return {hd, d};
    case Linear::K:
    case Linear::V:
      return {kvd, d};
    case Linear::O:
      return {d, hd};
    case Linear::Gate:
    case Linear::Up:
      return {f, d};
    case Linear::Down:
      return {d, f};
  }
  return {0, 0};
}

std::vector<float> read_vector(const Checkpoint& ckpt, const std::string& name, int64_t n) {
  const TensorRef t = ckpt.tensor(name);
  uint64_t numel = 1;
  for (uint64_t s : t.shape) numel *= s;
  if (t.shape.size() != 1 || int64_t(numel) != n)
    throw Error(ckpt.dir().string(),
                "tensor '" + name + "' should have shape [" + std::to_string(n) + "]");
  std::vector<float> v(static_cast<size_t>(n));
  ckpt.read_f32(name, v);
  return v;
}

void check_matrix_shape(const Checkpoint& ckpt, const TensorRef& t, int64_t rows, int64_t cols) {
  if (t.shape.size() != 2 || int64_t(t.shape[0]) != rows || int64_t(t.shape[1]) != cols)
    throw Error(ckpt.dir().string(), "tensor '" + t.name + "' should have shape [" +
                                         std::to_string(rows) + ", " + std::to_string(cols) + "]");
}

}  // namespace

const MatrixRef& LayerWeights::linear(Linear which) const {
  switch (which) {
    case Linear::Q:
      return q;
    case Linear::K:
      return k;
    case Linear::V:
      return v;
    case Linear::O:
      return o;
    case Linear::Gate:
      return gate;
    case Linear::Up:
      return up;
    case Linear::Down:
      return down;
  }
  return q;
}

MatrixRef& LayerWeights::linear(Linear which) {
  return const_cast<MatrixRef&>(std::as_const(*this).linear(which));
}

LlamaWeights::LlamaWeights(const Checkpoint& checkpoint)
    : ckpt_(&checkpoint), cfg_(checkpoint.config()) {
  const std::string src = checkpoint.dir().string();
  const LlamaConfig& c = cfg_;
  if (c.hidden_size <= 0 || c.intermediate_size <= 0 || c.num_layers <= 0 || c.num_heads <= 0 ||
      c.num_kv_heads <= 0 || c.head_dim <= 0 || c.vocab_size <= 0)
    throw Error(src, "config has a non-positive model dimension");
  if (c.num_heads % c.num_kv_heads != 0)
    throw Error(src, "num_attention_heads (" + std::to_string(c.num_heads) +
                         ") is not a multiple of num_key_value_heads (" +
                         std::to_string(c.num_kv_heads) + ")");
  if (c.head_dim % 2 != 0) throw Error(src, "head_dim must be even for rotary embeddings");
  if (c.mlp_bias) throw Error(src, "mlp_bias is not supported by the LLaMA forward");

  embedding_name_ = checkpoint.embedding_name();
  lm_head_name_ = checkpoint.lm_head_name();
  check_matrix_shape(checkpoint, checkpoint.tensor(embedding_name_), c.vocab_size, c.hidden_size);
  check_matrix_shape(checkpoint, checkpoint.tensor(lm_head_name_), c.vocab_size, c.hidden_size);
  if (auto e = checkpoint.f32_view(embedding_name_); !e.empty())
    embedding_f32_ = {e.data(), c.vocab_size, c.hidden_size};
  if (auto l = checkpoint.f32_view(lm_head_name_); !l.empty())
    lm_head_f32_ = {l.data(), c.vocab_size, c.hidden_size};

  final_norm_ = read_vector(checkpoint, "model.norm.weight", c.hidden_size);
  const int64_t hd = int64_t(c.num_heads) * c.head_dim, kvd = int64_t(c.num_kv_heads) * c.head_dim;
  for (int l = 0; l < c.num_layers; ++l) {
    input_norms_.push_back(
        read_vector(checkpoint, layer_tensor_name(l, "input_layernorm.weight"), c.hidden_size));
    post_norms_.push_back(read_vector(
        checkpoint, layer_tensor_name(l, "post_attention_layernorm.weight"), c.hidden_size));
    auto optional_bias = [&](const char* suffix, int64_t n) {
      const std::string name = layer_tensor_name(l, suffix);
      return checkpoint.has(name) ? read_vector(checkpoint, name, n) : std::vector<float>{};
    };
    q_bias_.push_back(optional_bias("self_attn.q_proj.bias", hd));
    k_bias_.push_back(optional_bias("self_attn.k_proj.bias", kvd));
    v_bias_.push_back(optional_bias("self_attn.v_proj.bias", kvd));
    o_bias_.push_back(optional_bias("self_attn.o_proj.bias", c.hidden_size));
    if ((c.qkv_bias || c.attention_bias) &&
        (q_bias_[l].empty() || k_bias_[l].empty() || v_bias_[l].empty()))
      throw Error(src, "config asks for q/k/v biases but layer " + std::to_string(l) +
                           " lacks one of self_attn.{q,k,v}_proj.bias");
  }
}

int64_t LlamaWeights::layer_conversion_floats() const {
  if (cfg_.num_layers == 0) return 0;
  int64_t total = 0;
  for (const LinearSpec& s : kLinearSpecs) {
    const std::string name = layer_tensor_name(0, s.suffix);
    if (ckpt_->f32_view(name).empty()) {
      auto [rows, cols] = linear_shape(cfg_, s.which);
      total += rows * cols;
    }
  }
  return total;
}

void LlamaWeights::load_layer(int layer, LayerWeights& out, int threads) const {
  if (layer < 0 || layer >= cfg_.num_layers)
    throw Error(ckpt_->dir().string(), "layer " + std::to_string(layer) + " out of range");
  // First pass: which tensors need a converted copy, and how many floats in all; the buffer
  // is sized before any view into it is taken.
  std::array<std::span<const float>, 7> views;
  std::array<std::string, 7> names;
  std::array<bool, 7> stored_quantized{};  // fp_quant: decode qweight/scales instead
  int64_t need = 0;
  const FpQuantConfig* fpq = ckpt_->fp_quant();
  for (size_t i = 0; i < kLinearSpecs.size(); ++i) {
    names[i] = layer_tensor_name(layer, kLinearSpecs[i].suffix);
    auto [rows, cols] = linear_shape(cfg_, kLinearSpecs[i].which);
    const std::string module = names[i].substr(0, names[i].size() - std::string(".weight").size());
    if (fpq && fpq->quantizes(module)) {
      stored_quantized[i] = true;
      names[i] = module;
      need += rows * cols;
      continue;
    }
    const TensorRef t = ckpt_->tensor(names[i]);
    check_matrix_shape(*ckpt_, t, rows, cols);
    views[i] = ckpt_->f32_view(names[i]);
    if (views[i].empty()) need += rows * cols;
  }
  if (int64_t(out.storage.size()) < need) out.storage.resize(static_cast<size_t>(need));
  int64_t offset = 0;
  std::vector<std::pair<size_t, std::span<float>>> to_convert;  // (linear, destination)
  for (size_t i = 0; i < kLinearSpecs.size(); ++i) {
    auto [rows, cols] = linear_shape(cfg_, kLinearSpecs[i].which);
    MatrixRef& m = out.linear(kLinearSpecs[i].which);
    if (!views[i].empty()) {
      m = {views[i].data(), rows, cols};
    } else {
      std::span<float> dst(out.storage.data() + offset, static_cast<size_t>(rows * cols));
      m = {dst.data(), rows, cols};
      offset += rows * cols;
      to_convert.emplace_back(i, dst);
    }
  }
  // The conversions are independent (one tensor each): one per thread at a time. An Error
  // cannot leave an OpenMP region, so the first one is carried out and rethrown.
  std::exception_ptr error;
#pragma omp parallel for num_threads(std::max(1, threads)) \
    schedule(dynamic, 1) if (threads > 1 && to_convert.size() > 1)
  for (size_t j = 0; j < to_convert.size(); ++j) {
    try {
      const size_t i = to_convert[j].first;
      if (stored_quantized[i]) {
        auto [rows, cols] = linear_shape(cfg_, kLinearSpecs[i].which);
        float global_scale = 0;
        ckpt_->read_f32(names[i] + ".weight_global_scale", std::span<float>(&global_scale, 1));
        const TensorRef q = ckpt_->tensor(names[i] + ".qweight");
        const TensorRef sc = ckpt_->tensor(names[i] + ".scales");
        auto u8 = [](const TensorRef& t) {
          return std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(t.bytes.data()),
                                          t.bytes.size());
        };
        if (!(global_scale > 0) || !std::isfinite(global_scale))
          throw Error(q.shard->string(), names[i] + ".weight_global_scale is " +
                                             std::to_string(global_scale) + ", not positive");
        decode_fp_quant_weight(u8(q), u8(sc), global_scale, rows, cols, to_convert[j].second);
      } else {
        ckpt_->read_f32(names[i], to_convert[j].second);
      }
    } catch (...) {
#pragma omp critical(mxlens_load_layer_error)
      if (!error) error = std::current_exception();
    }
  }
  if (error) std::rethrow_exception(error);
  out.layer = layer;
  out.input_norm = input_norms_[layer].data();
  out.post_norm = post_norms_[layer].data();
  auto ptr = [](const std::vector<float>& v) { return v.empty() ? nullptr : v.data(); };
  out.q_bias = ptr(q_bias_[layer]);
  out.k_bias = ptr(k_bias_[layer]);
  out.v_bias = ptr(v_bias_[layer]);
  out.o_bias = ptr(o_bias_[layer]);
}

void LlamaWeights::embed(std::span<const int32_t> tokens, RowMatrixXf& x) const {
  const int d = cfg_.hidden_size;
  x.resize(static_cast<Eigen::Index>(tokens.size()), d);
  for (size_t t = 0; t < tokens.size(); ++t) {
    const int32_t id = tokens[t];
    if (id < 0 || id >= cfg_.vocab_size)
      throw Error("token ids", "id " + std::to_string(id) + " at position " + std::to_string(t) +
                                   " is outside the model's vocabulary [0, " +
                                   std::to_string(cfg_.vocab_size) + ")");
    std::span<float> row(x.row(Eigen::Index(t)).data(), static_cast<size_t>(d));
    if (embedding_f32_.data) {
      std::copy_n(embedding_f32_.data + int64_t(id) * d, d, row.begin());
    } else {
      ckpt_->read_rows_f32(embedding_name_, id, 1, row);
    }
  }
}

MatrixRef LlamaWeights::lm_head_rows(int64_t row_begin, int64_t n_rows,
                                     std::vector<float>& scratch) const {
  const int64_t d = cfg_.hidden_size;
  if (row_begin < 0 || n_rows < 0 || row_begin + n_rows > cfg_.vocab_size)
    throw Error(lm_head_name_, "row range out of bounds");
  if (lm_head_f32_.data) return {lm_head_f32_.data + row_begin * d, n_rows, d};
  if (int64_t(scratch.size()) < n_rows * d) scratch.resize(static_cast<size_t>(n_rows * d));
  ckpt_->read_rows_f32(lm_head_name_, row_begin, n_rows,
                       std::span<float>(scratch.data(), static_cast<size_t>(n_rows * d)));
  return {scratch.data(), n_rows, d};
}

}  // namespace mxlens
