#pragma once
// The FP32 LLaMA forward over one token window (formats.md §2.3-2.4), batched: every linear
// is one GEMM over the whole window (OpenBLAS sgemm through Eigen, X · Wᵀ with no transposed
// copy), attention is computed per head as causal block GEMMs. Threads are OpenMP's only: a
// GEMM is split into one band of output columns per thread, attention runs one head per
// thread, and OpenBLAS is kept single-threaded (two thread pools spinning against each other
// on the same cores were far slower). On a machine busier than its core count, OpenMP's
// spin-waiting still costs: OMP_WAIT_POLICY=passive helps there.
// Logits are handed out in row chunks because [window, vocab] can be a gigabyte
// (2048 × 128256 floats).
//
// forward_ref.h holds the scalar oracle this is tested against.
#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include <Eigen/Core>

#include "core/model/llama_model.h"
#include "core/model/site_taps.h"

namespace mxlens {

struct ForwardOptions {
  // OpenMP threads for everything: each GEMM is split into bands of output columns handed out
  // to the threads, attention runs one head per thread. OpenBLAS itself is set to one thread
  // (a process-wide setting) for the duration of each hidden()/logits() call and restored
  // after, so only one thread pool runs at a time.
  int threads = 1;
  // Work below which a GEMM or a layer's attention stays on one thread, in multiply-adds
  // (default ~0.5 ms on one core): every parallel region ends in a barrier, and on a busy
  // machine a barrier can wait a whole scheduler time slice for a descheduled thread.
  // Element-wise loops use parallel_min_macs / 128 elements. Tests set 0 to force threading.
  double parallel_min_macs = double(1 << 25);
  // Tokens per logits chunk handed to the callback ([chunk, vocab] floats live at once).
  int logits_chunk_rows = 256;
  // Query rows per attention block (causal masking skips the blocks above the diagonal).
  int attention_block_rows = 64;
  // Vocabulary rows of a non-F32 lm_head converted to FP32 at a time.
  int lm_head_chunk_rows = 8192;
};

// logits: rows [row_begin, row_begin + logits.rows()) of the window, [rows, vocab].
using LogitsChunkFn =
    std::function<void(int64_t row_begin, const Eigen::Ref<const RowMatrixXf>& logits)>;

// Floating-point operations of one forward over `tokens` positions (multiply-add = 2):
// the seven linears of every layer, causal attention (QKᵀ and PV, lower triangle) and the
// lm_head over every position. Used to report GFLOP/s.
double forward_flops(const LlamaConfig& cfg, int64_t tokens);

class LlamaForward {
 public:
  // `weights` must outlive this object. Buffers are sized on first use and reused.
  explicit LlamaForward(const LlamaWeights& weights, ForwardOptions options = {});

  const ForwardOptions& options() const { return opt_; }
  void set_threads(int threads) { opt_.threads = threads; }

  // Runs embedding and every decoder layer over `tokens` (positions 0..T-1, causal), then the
  // final RMSNorm. Returns the normed hidden states [T, d], valid until the next call.
  // Taps (may be null) see and may replace the four site inputs of every layer.
  const RowMatrixXf& hidden(std::span<const int32_t> tokens, SiteTaps* taps = nullptr);
  // The same from given layer-0 inputs x0 [T, d] instead of token ids (the embedding
  // outputs, e.g. their mean over calibration windows, algorithm.md §4.6).
  const RowMatrixXf& hidden_from_embeddings(Eigen::Ref<const RowMatrixXf> x0,
                                            SiteTaps* taps = nullptr);

  // Logits of rows [row_begin, row_end) of the last hidden() window, computed and handed to
  // `fn` in chunks of options().logits_chunk_rows rows. row_end < 0 means all rows.
  void logits(const LogitsChunkFn& fn, int64_t row_begin = 0, int64_t row_end = -1);

  // hidden() then logits() over every row.
  void run(std::span<const int32_t> tokens, SiteTaps* taps, const LogitsChunkFn& fn);

  // All logits of a window at once, [T, vocab]; for small models and tests.
  RowMatrixXf logits_all(std::span<const int32_t> tokens, SiteTaps* taps = nullptr);

 private:
  const RowMatrixXf& run_layers(SiteTaps* taps);
  void layer_forward(int layer, SiteTaps* taps);
  void attention(int64_t T);
  void ensure_rope(int64_t T);
  double min_elements() const { return opt_.parallel_min_macs / 128; }

  const LlamaWeights* w_;
  ForwardOptions opt_;
  LayerWeights lw_;
  // Activations, [T, ·] row-major.
  RowMatrixXf x_;                    // residual stream [T, d]
  RowMatrixXf n_;                    // normed input of qkv / gate-up [T, d]
  RowMatrixXf q_;                    // [T, H·D]
  RowMatrixXf k_;                    // [T, Hkv·D]
  RowMatrixXf v_;                    // [T, Hkv·D]
  RowMatrixXf att_;                  // attention output, heads concatenated [T, H·D]
  RowMatrixXf gate_;                 // [T, f]; becomes silu(gate) ⊙ up
  RowMatrixXf up_;                   // [T, f]
  RowMatrixXf tmp_;                  // [T, d] output of o_proj / down_proj before the residual add
  RowMatrixXf logit_;                // [chunk, vocab]
  std::vector<RowMatrixXf> scores_;  // per thread [block, T]
  std::vector<float> rope_cos_, rope_sin_;  // [positions, D/2]
  int64_t rope_positions_ = 0;
  std::vector<std::vector<float>> lm_scratch_;  // per thread
  int64_t T_ = 0;
};

}  // namespace mxlens
