// CudaWindowModel: reads LlamaWeights and a QuantPlan on the host (Eigen lives here, never in
// a .cu file) and hands plain arrays to the CUDA engine (cuda_engine.h).
#include <algorithm>
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "core/util/error.h"
#include "cuda_engine.h"
#include "mxlens/gpu/backend.h"
#include "mxlens/gpu/cuda.h"
#include "site_desc_from_plan.h"

namespace mxlens::gpu {
namespace {

constexpr int64_t kUploadRows = 4096;  // embedding / lm_head rows converted and sent at a time

class CudaWindowModel final : public WindowModel {
 public:
  CudaWindowModel(const LlamaWeights& weights, const QuantPlan* plan, const ForwardOptions& options,
                  const CudaModelOptions& cuda)
      : weights_(&weights) {
    const LlamaConfig& c = weights.config();
    if (const std::string why = cuda_unsupported_reason(c, plan); !why.empty())
      throw Error("cuda", why + "; use --backend cpu or auto");
    if (plan && plan->config().num_layers != c.num_layers)
      throw Error("cuda", "the quantization plan is for another model");
    if (options.threads < 1) throw Error("--threads", "must be at least 1");
    const int count = cuda_device_count();
    if (count == 0) throw Error("cuda", "CUDA unavailable: " + cuda_unavailable_reason());

    detail::EngineConfig ec;
    ec.hidden = c.hidden_size;
    ec.intermediate = c.intermediate_size;
    ec.layers = c.num_layers;
    ec.heads = c.num_heads;
    ec.kv_heads = c.num_kv_heads;
    ec.head_dim = c.head_dim;
    ec.vocab = c.vocab_size;
    ec.rms_norm_eps = float(c.rms_norm_eps);
    ec.qkv_bias = c.qkv_bias;
    ec.o_bias = c.attention_bias;
    ec.tied_lm_head = weights.checkpoint().embedding_name() == weights.checkpoint().lm_head_name();
    ec.inv_freq = rope_inv_freq(c);
    engine_ = std::make_unique<detail::CudaEngine>(
        ec, cuda.device,
        cuda.gemm == CudaGemm::bf16 ? detail::EngineGemm::bf16 : detail::EngineGemm::fp32,
        options.logits_chunk_rows);

    // Embedding rows (and an untied lm_head) in slices, converted to FP32 on the host.
    const int64_t V = c.vocab_size;
    std::vector<int32_t> ids;
    RowMatrixXf rows;
    for (int64_t r0 = 0; r0 < V; r0 += kUploadRows) {
      const int64_t n = std::min(kUploadRows, V - r0);
      ids.resize(size_t(n));
      for (int64_t i = 0; i < n; ++i) ids[size_t(i)] = int32_t(r0 + i);
      weights.embed(ids, rows);
      engine_->upload_embedding_rows(r0, n, rows.data());
    }
    if (!ec.tied_lm_head) {
      std::vector<float> scratch;
      for (int64_t r0 = 0; r0 < V; r0 += kUploadRows) {
        const int64_t n = std::min(kUploadRows, V - r0);
        const MatrixRef lm = weights.lm_head_rows(r0, n, scratch);
        engine_->upload_lm_head_rows(r0, n, lm.data);
      }
    }
    engine_->upload_final_norm(weights.final_norm());

    // One layer at a time: FP32 conversion (and, for W4A4, the transformed fake-quantized
    // weights) on the host, then up.
    LayerWeights lw;
    RowMatrixXf quantized;
    for (int l = 0; l < c.num_layers; ++l) {
      weights.load_layer(l, lw, options.threads);
      using detail::LayerVector;
      // Norm-folded smoothing: the norm weight is γ/s, as W4a4Taps::norm_override makes it.
      const int d = c.hidden_size;
      if (plan) {
        const std::vector<float> in_norm =
            plan->folded_norm(l, Site::Qkv, {lw.input_norm, size_t(d)});
        const std::vector<float> post_norm =
            plan->folded_norm(l, Site::GateUp, {lw.post_norm, size_t(d)});
        engine_->upload_layer_vector(l, LayerVector::input_norm, in_norm.data());
        engine_->upload_layer_vector(l, LayerVector::post_norm, post_norm.data());
      } else {
        engine_->upload_layer_vector(l, LayerVector::input_norm, lw.input_norm);
        engine_->upload_layer_vector(l, LayerVector::post_norm, lw.post_norm);
      }
      if (lw.q_bias) engine_->upload_layer_vector(l, LayerVector::q_bias, lw.q_bias);
      if (lw.k_bias) engine_->upload_layer_vector(l, LayerVector::k_bias, lw.k_bias);
      if (lw.v_bias) engine_->upload_layer_vector(l, LayerVector::v_bias, lw.v_bias);
      if (lw.o_bias) engine_->upload_layer_vector(l, LayerVector::o_bias, lw.o_bias);
      for (Linear which : kAllLinears) {
        const MatrixRef& w = lw.linear(which);
        const float* data = w.data;
        if (plan) {
          plan->quantized_weight(l, which, w.span(), int(w.rows), int(w.cols), quantized,
                                 options.threads);
          data = quantized.data();
        }
        engine_->upload_linear(l, int(which), data, w.rows, w.cols);
      }
      if (plan)
        for (Site site : kAllSites)
          engine_->set_site(l, int(site), detail::site_desc(*plan, l, site));
    }
    engine_->finish_upload();
  }

  const LlamaConfig& config() const override { return weights_->config(); }
  std::string backend_name() const override { return "cuda"; }
  std::string device_description() const override { return engine_->device_line(); }

  void run(std::span<const int32_t> tokens, const LogitsChunkFn& fn) override {
    const LlamaConfig& c = weights_->config();
    if (tokens.empty()) throw Error("token ids", "empty window");
    for (size_t t = 0; t < tokens.size(); ++t)
      if (tokens[t] < 0 || tokens[t] >= c.vocab_size)
        throw Error("token ids", "id " + std::to_string(tokens[t]) + " at position " +
                                     std::to_string(t) + " is outside the model's vocabulary [0, " +
                                     std::to_string(c.vocab_size) + ")");
    engine_->run(tokens.data(), int64_t(tokens.size()),
                 [&](int64_t r0, int64_t rows, const float* logits) {
                   const Eigen::Map<const RowMatrixXf> chunk(logits, rows, c.vocab_size);
                   fn(r0, chunk);
                 });
  }

 private:
  const LlamaWeights* weights_;
  std::unique_ptr<detail::CudaEngine> engine_;
};

}  // namespace

std::unique_ptr<WindowModel> make_cuda_window_model(const LlamaWeights& weights,
                                                    const QuantPlan* plan,
                                                    const ForwardOptions& options,
                                                    const CudaModelOptions& cuda) {
  return std::make_unique<CudaWindowModel>(weights, plan, options, cuda);
}

}  // namespace mxlens::gpu
