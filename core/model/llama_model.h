#pragma once
// LlamaWeights: the tensors of a Checkpoint arranged for the forward (formats.md §2.4).
// F32 tensors are used in place (zero copy into the mapped shard); BF16/F16 tensors are
// converted to FP32 one layer at a time, into a buffer the caller reuses, so a BF16 model is
// never held as a full FP32 copy. Embedding rows are gathered per window; the lm_head of a
// non-F32 model is converted in row chunks.
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include <Eigen/Core>

#include "core/model/checkpoint.h"
#include "core/model/llama_config.h"
#include "core/model/site_taps.h"

namespace mxlens {

// A row-major [rows, cols] FP32 matrix that someone else owns (mapped file or a buffer).
struct MatrixRef {
  const float* data = nullptr;
  int64_t rows = 0;
  int64_t cols = 0;

  std::span<const float> span() const { return {data, static_cast<size_t>(rows * cols)}; }
  // The same bytes seen as a column-major [cols, rows] matrix, i.e. Wᵀ: X · Wᵀ is then a plain
  // product with no transposed copy.
  Eigen::Map<const Eigen::MatrixXf> transposed() const {
    return Eigen::Map<const Eigen::MatrixXf>(data, cols, rows);
  }
};

// One decoder layer's weights, FP32. Shapes with d = hidden, f = intermediate, H heads,
// Hkv KV heads, D = head_dim.
struct LayerWeights {
  int layer = -1;
  const float* input_norm = nullptr;  // [d]
  const float* post_norm = nullptr;   // [d]
  MatrixRef q;                        // [H·D, d]
  MatrixRef k;                        // [Hkv·D, d]
  MatrixRef v;                        // [Hkv·D, d]
  MatrixRef o;                        // [d, H·D]
  MatrixRef gate;                     // [f, d]
  MatrixRef up;                       // [f, d]
  MatrixRef down;                     // [d, f]
  const float* q_bias = nullptr;      // [H·D] (Qwen2 / attention_bias), else null
  const float* k_bias = nullptr;      // [Hkv·D]
  const float* v_bias = nullptr;      // [Hkv·D]
  const float* o_bias = nullptr;      // [d] (attention_bias only)

  const MatrixRef& linear(Linear which) const;
  MatrixRef& linear(Linear which);

  // Holds the converted copies of non-F32 tensors; reused from layer to layer.
  std::vector<float> storage;
};

class LlamaWeights {
 public:
  // Keeps a reference to `checkpoint`, which must outlive this object. Reads the small
  // vectors (norms, biases) once; checks that the config is one the forward supports.
  explicit LlamaWeights(const Checkpoint& checkpoint);

  const LlamaConfig& config() const { return cfg_; }
  const Checkpoint& checkpoint() const { return *ckpt_; }
  // An fp_quant checkpoint: the linears load as their stored, already rotated and quantized
  // values, which only fp_quant_plan()'s plan (core/quant/fp_quant_plan.h) runs correctly.
  bool prequantized() const { return ckpt_->fp_quant() != nullptr; }

  // Points `out` at layer `layer`'s weights, converting non-F32 tensors into out.storage
  // (up to `threads` tensors converted at once).
  void load_layer(int layer, LayerWeights& out, int threads = 1) const;

  // x ← embedding rows of `tokens` ([tokens, d]). Throws Error for ids outside the vocab.
  void embed(std::span<const int32_t> tokens, RowMatrixXf& x) const;

  const float* final_norm() const { return final_norm_.data(); }  // [d]

  // Rows [row_begin, row_begin + n_rows) of the lm_head ([vocab, d]), FP32: a view into the
  // file when it is F32, else converted into `scratch`.
  MatrixRef lm_head_rows(int64_t row_begin, int64_t n_rows, std::vector<float>& scratch) const;
  bool lm_head_is_f32() const { return lm_head_f32_.data != nullptr; }

  // Floats of per-layer FP32 conversion buffer (0 when every layer tensor is F32).
  int64_t layer_conversion_floats() const;

 private:
  const Checkpoint* ckpt_;
  LlamaConfig cfg_;
  std::string embedding_name_;
  std::string lm_head_name_;
  MatrixRef embedding_f32_;  // set when F32 (zero copy)
  MatrixRef lm_head_f32_;    // set when F32 (zero copy)
  std::vector<float> final_norm_;
  std::vector<std::vector<float>> input_norms_, post_norms_;
  std::vector<std::vector<float>> q_bias_, k_bias_, v_bias_, o_bias_;
};

}  // namespace mxlens
