#pragma once
// CudaEngine: the LLaMA forward on one CUDA device (private to gpu/src; plain C++ so that the
// host code reading LlamaWeights and QuantPlan, which uses Eigen, is compiled by the C++
// compiler and nvcc never sees Eigen). The host uploads everything once — embeddings, norms,
// biases, the seven linears of every layer as the forward uses them, each site's activation
// transform — then run() computes a window and hands the logits back in row chunks.
//
// Per layer, as core/model/forward.cpp: RMSNorm → site qkv → q/k/v (+bias) → RoPE (rotate-half)
// → causal GQA attention (softmax in FP32) → site o → o_proj (+bias) added to the residual →
// RMSNorm → site gu → gate/up → SwiGLU → site down → down_proj added to the residual; then the
// final RMSNorm and the lm_head in chunks. GEMMs are cuBLAS: FP32 sgemm (the parity path) or
// BF16 operands with FP32 accumulation (tensor cores) for the linears and the lm_head.
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "site_desc.h"

namespace mxlens::gpu::detail {

struct EngineConfig {
  int hidden = 0;        // d
  int intermediate = 0;  // f
  int layers = 0;
  int heads = 0;
  int kv_heads = 0;
  int head_dim = 0;
  int vocab = 0;
  float rms_norm_eps = 1e-6f;
  bool qkv_bias = false;
  bool o_bias = false;
  bool tied_lm_head = false;     // lm_head = embedding table
  std::vector<double> inv_freq;  // RoPE inverse frequencies, head_dim / 2 (rope_inv_freq)
};

enum class EngineGemm { fp32, bf16 };

// Per-layer vectors, in LayerWeights' terms.
enum class LayerVector { input_norm, post_norm, q_bias, k_bias, v_bias, o_bias };

class CudaEngine {
 public:
  // Makes `device` current for the calling thread, creates a stream and a cuBLAS handle, and
  // checks that the weights fit the device's free memory (Error("cuda", ...) otherwise).
  CudaEngine(const EngineConfig& config, int device, EngineGemm gemm, int logits_chunk_rows);
  ~CudaEngine();
  CudaEngine(const CudaEngine&) = delete;
  CudaEngine& operator=(const CudaEngine&) = delete;

  // Uploads (each waits for its copy, so the host buffer may be reused at once).
  void upload_embedding_rows(int64_t row_begin, int64_t rows, const float* data);  // [rows, d]
  void upload_lm_head_rows(int64_t row_begin, int64_t rows, const float* data);    // untied only
  void upload_final_norm(const float* data);                                       // [d]
  void upload_layer_vector(int layer, LayerVector which, const float* data);
  // linear: 0..6 in core's Linear order (q, k, v, o, gate, up, down); [rows, cols] row-major.
  void upload_linear(int layer, int linear, const float* data, int64_t rows, int64_t cols);
  // site: 0..3 in core's Site order (qkv, o, gu, down).
  void set_site(int layer, int site, const SiteDesc& desc);
  // Call once after every upload: checks that nothing is missing, builds the BF16 lm_head of a
  // tied model and frees the staging buffer.
  void finish_upload();

  // Logits of rows [row_begin, row_begin + rows), [rows, vocab] row-major in host memory that
  // stays valid during the call only.
  using ChunkFn = std::function<void(int64_t row_begin, int64_t rows, const float* logits)>;
  // Runs tokens (positions 0..T-1) and hands every position's logits to `fn` in order. Ids must
  // be checked by the caller (0 <= id < vocab). The next chunk is computed while `fn` runs.
  void run(const int32_t* tokens, int64_t T, const ChunkFn& fn);

  // "CUDA: <name> (sm_XY, ...)" of the engine's device.
  const std::string& device_line() const;
  // Device memory held by the weights, bytes.
  uint64_t weight_bytes() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace mxlens::gpu::detail
