// GCC 12 reports a false -Wmaybe-uninitialized inside its own AVX-512 intrinsics when
// Eigen's vectorized exp is inlined (the `__m512 __Y = __Y;` idiom of avx512fintrin.h).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#include "core/model/forward.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "core/util/error.h"

// OpenBLAS's thread count is a process-wide setting with no standard BLAS interface; the
// symbols are looked up weakly so that another BLAS still links.
extern "C" void openblas_set_num_threads(int) __attribute__((weak));
extern "C" int openblas_get_num_threads(void) __attribute__((weak));

namespace mxlens {

namespace {

using ConstRowMap = Eigen::Map<const RowMatrixXf, 0, Eigen::OuterStride<>>;
using RowMap = Eigen::Map<RowMatrixXf, 0, Eigen::OuterStride<>>;

// All threading is OpenMP's: OpenBLAS runs single-threaded inside our threads. Two thread
// pools (OpenBLAS's pthreads and OpenMP's) spinning against each other on the same cores
// made a 2-thread run up to 30× slower than a 1-thread run on a loaded machine. The previous
// OpenBLAS setting is restored when the forward call returns.
class SingleThreadedBlas {
 public:
  SingleThreadedBlas() {
    if (openblas_set_num_threads && openblas_get_num_threads) {
      previous_ = openblas_get_num_threads();
      if (previous_ != 1) openblas_set_num_threads(1);
    }
  }
  ~SingleThreadedBlas() {
    if (previous_ > 1) openblas_set_num_threads(previous_);
  }
  SingleThreadedBlas(const SingleThreadedBlas&) = delete;
  SingleThreadedBlas& operator=(const SingleThreadedBlas&) = delete;

 private:
  int previous_ = 0;
};

// out = X · Wᵀ, W row-major [n_out, X.cols()] (the column-major matrix Wᵀ, so no transposed
// copy). `out` may be a column band of a wider matrix. With threads > 1 and at least
// min_parallel_macs of work, the output columns are split into bands, each a single-threaded
// sgemm.
void gemm_xwt(const Eigen::Ref<const RowMatrixXf>& X, const float* W, int64_t n_out,
              Eigen::Ref<RowMatrixXf> out, int threads, double min_parallel_macs) {
  const int64_t in = X.cols();
  auto band = [&](int64_t c0, int64_t n) {
    const Eigen::Map<const Eigen::MatrixXf> wt(W + c0 * in, in, n);
    out.middleCols(c0, n).noalias() = X * wt;
  };
  const double macs = double(X.rows()) * double(n_out) * double(in);
  if (threads <= 1 || macs < min_parallel_macs || n_out < 32 * threads) {
    band(0, n_out);
    return;
  }
  // Up to kBandsPerThread bands per thread, handed out dynamically: a thread that the OS
  // deschedules holds up one band, not a whole share. Bands are at least kMinBandColumns wide
  // (each re-packs X) and aligned to 16 columns (one AVX-512 register of floats).
  constexpr int64_t kBandsPerThread = 4, kMinBandColumns = 256;
  const int64_t bands =
      std::clamp<int64_t>(n_out / kMinBandColumns, threads, kBandsPerThread * threads);
  const int64_t per = ((n_out + bands - 1) / bands + 15) / 16 * 16;
#pragma omp parallel for num_threads(threads) schedule(dynamic, 1)
  for (int64_t i = 0; i < bands; ++i) {
    const int64_t c0 = i * per, n = std::min(per, n_out - c0);
    if (n > 0) band(c0, n);
  }
}

// out = in · Wᵀ (+ bias).
void linear(const RowMatrixXf& in, const MatrixRef& w, const float* bias, RowMatrixXf& out,
            const ForwardOptions& opt) {
  out.resize(in.rows(), w.rows);
  gemm_xwt(in, w.data, w.rows, out, opt.threads, opt.parallel_min_macs);
  if (bias) out.rowwise() += Eigen::Map<const Eigen::RowVectorXf>(bias, w.rows);
}

// y = x · rsqrt(mean(x²) + eps) · weight, per row, in fp32 (formats.md §2.3).
void rmsnorm(const RowMatrixXf& x, const float* weight, float eps, RowMatrixXf& y, int threads,
             double min_elements) {
  y.resize(x.rows(), x.cols());
  const Eigen::Map<const Eigen::RowVectorXf> wv(weight, x.cols());
  const Eigen::Index T = x.rows();
#pragma omp parallel for num_threads(threads) \
    schedule(static) if (double(T * x.cols()) >= min_elements)
  for (Eigen::Index t = 0; t < T; ++t) {
    const float ms = x.row(t).squaredNorm() / float(x.cols());
    const float inv = 1.0f / std::sqrt(ms + eps);
    y.row(t) = (x.row(t) * inv).cwiseProduct(wv);
  }
}

// Runs the tap's weight override for one linear, if any.
MatrixRef maybe_override(SiteTaps* taps, int layer, Linear which, const MatrixRef& w) {
  if (!taps) return w;
  const float* repl = taps->weight_override(layer, which, w.span(), static_cast<int>(w.rows),
                                            static_cast<int>(w.cols));
  return repl ? MatrixRef{repl, w.rows, w.cols} : w;
}

}  // namespace

double forward_flops(const LlamaConfig& c, int64_t tokens) {
  const double d = c.hidden_size, f = c.intermediate_size, D = c.head_dim;
  const double hd = double(c.num_heads) * D, kvd = double(c.num_kv_heads) * D;
  const double linear_params = d * hd + 2 * d * kvd + hd * d + 3 * d * f;
  const double T = double(tokens);
  // Causal: each head does QKᵀ and PV over T(T+1)/2 (query, key) pairs, 2·D flops each.
  const double attention = 2.0 * 2.0 * D * double(c.num_heads) * T * (T + 1) / 2.0;
  const double per_layer = 2.0 * T * linear_params + attention;
  return per_layer * c.num_layers + 2.0 * T * d * double(c.vocab_size);
}

LlamaForward::LlamaForward(const LlamaWeights& weights, ForwardOptions options)
    : w_(&weights), opt_(options) {
  if (opt_.threads < 1) throw Error("--threads", "must be at least 1");
  if (opt_.logits_chunk_rows < 1 || opt_.attention_block_rows < 1 || opt_.lm_head_chunk_rows < 1)
    throw Error("forward options", "chunk sizes must be at least 1");
}

void LlamaForward::ensure_rope(int64_t T) {
  if (T <= rope_positions_) return;
  const std::vector<double> inv_freq = rope_inv_freq(w_->config());
  const int64_t half = int64_t(inv_freq.size());
  rope_cos_.resize(static_cast<size_t>(T * half));
  rope_sin_.resize(static_cast<size_t>(T * half));
  for (int64_t p = 0; p < T; ++p)
    for (int64_t i = 0; i < half; ++i) {
      // Angle in double: p·f stays exact to float precision even at large positions.
      const double a = double(p) * inv_freq[size_t(i)];
      rope_cos_[size_t(p * half + i)] = float(std::cos(a));
      rope_sin_[size_t(p * half + i)] = float(std::sin(a));
    }
  rope_positions_ = T;
}

const RowMatrixXf& LlamaForward::hidden(std::span<const int32_t> tokens, SiteTaps* taps) {
  const LlamaConfig& c = w_->config();
  if (tokens.empty()) throw Error("token ids", "empty window");
  T_ = int64_t(tokens.size());
  if (int64_t(c.head_dim / 2) != int64_t(rope_inv_freq(c).size()))
    throw Error("config.json", "rope frequencies do not match head_dim");
  ensure_rope(T_);
  const SingleThreadedBlas single_threaded_blas;
  w_->embed(tokens, x_);
  return run_layers(taps);
}

const RowMatrixXf& LlamaForward::hidden_from_embeddings(Eigen::Ref<const RowMatrixXf> x0,
                                                        SiteTaps* taps) {
  const LlamaConfig& c = w_->config();
  if (x0.rows() == 0) throw Error("layer-0 inputs", "empty window");
  if (x0.cols() != c.hidden_size)
    throw Error("layer-0 inputs", "has " + std::to_string(x0.cols()) + " columns, the model's "
                                      "hidden size is " + std::to_string(c.hidden_size));
  T_ = int64_t(x0.rows());
  ensure_rope(T_);
  const SingleThreadedBlas single_threaded_blas;
  x_ = x0;
  return run_layers(taps);
}

const RowMatrixXf& LlamaForward::run_layers(SiteTaps* taps) {
  const LlamaConfig& c = w_->config();
  for (int layer = 0; layer < c.num_layers; ++layer) layer_forward(layer, taps);
  rmsnorm(x_, w_->final_norm(), float(c.rms_norm_eps), n_, opt_.threads, min_elements());
  return n_;
}

void LlamaForward::layer_forward(int layer, SiteTaps* taps) {
  const LlamaConfig& c = w_->config();
  const float eps = float(c.rms_norm_eps);
  w_->load_layer(layer, lw_, opt_.threads);

  // Attention block: h = x + o_proj(attn(rope(q), rope(k), v)), inputs normed.
  const auto gamma = [&](Site site, const float* g) {
    const float* r = taps ? taps->norm_override(layer, site, {g, size_t(c.hidden_size)}) : nullptr;
    return r ? r : g;
  };
  rmsnorm(x_, gamma(Site::Qkv, lw_.input_norm), eps, n_, opt_.threads, min_elements());
  if (taps) taps->on_activations(layer, Site::Qkv, n_);
  linear(n_, maybe_override(taps, layer, Linear::Q, lw_.q), lw_.q_bias, q_, opt_);
  linear(n_, maybe_override(taps, layer, Linear::K, lw_.k), lw_.k_bias, k_, opt_);
  linear(n_, maybe_override(taps, layer, Linear::V, lw_.v), lw_.v_bias, v_, opt_);
  attention(T_);
  if (taps) taps->on_activations(layer, Site::O, att_);
  linear(att_, maybe_override(taps, layer, Linear::O, lw_.o), lw_.o_bias, tmp_, opt_);
  x_ += tmp_;

  // MLP block: out = h + down(silu(gate(n2)) ⊙ up(n2)).
  rmsnorm(x_, gamma(Site::GateUp, lw_.post_norm), eps, n_, opt_.threads, min_elements());
  if (taps) taps->on_activations(layer, Site::GateUp, n_);
  linear(n_, maybe_override(taps, layer, Linear::Gate, lw_.gate), nullptr, gate_, opt_);
  linear(n_, maybe_override(taps, layer, Linear::Up, lw_.up), nullptr, up_, opt_);
  const Eigen::Index T = gate_.rows();
#pragma omp parallel for num_threads(opt_.threads) \
    schedule(static) if (double(T * gate_.cols()) >= min_elements())
  for (Eigen::Index t = 0; t < T; ++t) {
    auto g = gate_.row(t).array();
    g = g / (1.0f + (-g).exp()) * up_.row(t).array();
  }
  if (taps) taps->on_activations(layer, Site::Down, gate_);
  linear(gate_, maybe_override(taps, layer, Linear::Down, lw_.down), nullptr, tmp_, opt_);
  x_ += tmp_;
}

void LlamaForward::attention(int64_t T) {
  const LlamaConfig& c = w_->config();
  const int H = c.num_heads, D = c.head_dim, half = D / 2, group = c.kv_group();
  const int64_t hd = int64_t(H) * D, kvd = int64_t(c.num_kv_heads) * D;
  const float scale = 1.0f / std::sqrt(float(D));

  // RoPE, rotate-half: element i pairs with i + D/2 of the same head (formats.md §2.3).
  auto rope = [&](RowMatrixXf& m, int heads) {
#pragma omp parallel for num_threads(opt_.threads) \
    schedule(static) if (double(T * m.cols()) >= min_elements())
    for (int64_t t = 0; t < T; ++t) {
      const float* cs = rope_cos_.data() + t * half;
      const float* sn = rope_sin_.data() + t * half;
      for (int h = 0; h < heads; ++h) {
        float* x = m.row(t).data() + int64_t(h) * D;
        for (int i = 0; i < half; ++i) {
          const float x1 = x[i], x2 = x[i + half];
          x[i] = x1 * cs[i] - x2 * sn[i];
          x[i + half] = x2 * cs[i] + x1 * sn[i];
        }
      }
    }
  };
  rope(q_, H);
  rope(k_, c.num_kv_heads);

  att_.resize(T, hd);
  const int threads = opt_.threads;
  const int64_t B = opt_.attention_block_rows;
  if (int(scores_.size()) < threads) scores_.resize(size_t(threads));
  // One head per OpenMP thread at a time; its block GEMMs are single-threaded sgemms.
  const double macs = 2.0 * double(T) * double(T) * D * H;
#pragma omp parallel for num_threads(threads) \
    schedule(dynamic, 1) if (macs >= opt_.parallel_min_macs)
  for (int h = 0; h < H; ++h) {
    RowMatrixXf& S = scores_[size_t(omp_get_thread_num())];
    const int kv = h / group;
    for (int64_t r0 = 0; r0 < T; r0 += B) {
      const int64_t rows = std::min(B, T - r0), keys = r0 + rows;  // keys 0..r0+rows-1 visible
      const ConstRowMap qb(q_.data() + r0 * hd + int64_t(h) * D, rows, D, Eigen::OuterStride<>(hd));
      const ConstRowMap kb(k_.data() + int64_t(kv) * D, keys, D, Eigen::OuterStride<>(kvd));
      const ConstRowMap vb(v_.data() + int64_t(kv) * D, keys, D, Eigen::OuterStride<>(kvd));
      S.resize(rows, keys);
      S.noalias() = qb * kb.transpose();
      // Softmax in fp32 with the max subtracted; row i sees keys 0..r0+i.
      for (int64_t i = 0; i < rows; ++i) {
        const int64_t n = r0 + i + 1;
        auto row = S.row(i);
        auto valid = row.head(n).array();
        valid *= scale;
        const float mx = valid.maxCoeff();
        valid = (valid - mx).exp();
        valid /= valid.sum();
        row.tail(keys - n).setZero();
      }
      RowMap ob(att_.data() + r0 * hd + int64_t(h) * D, rows, D, Eigen::OuterStride<>(hd));
      ob.noalias() = S * vb;
    }
  }
}

void LlamaForward::logits(const LogitsChunkFn& fn, int64_t row_begin, int64_t row_end) {
  const LlamaConfig& c = w_->config();
  if (row_end < 0) row_end = T_;
  if (row_begin < 0 || row_begin > row_end || row_end > T_)
    throw Error("logits", "row range outside the last window");
  const SingleThreadedBlas single_threaded_blas;
  const int64_t V = c.vocab_size;
  const int threads = opt_.threads;
  if (int(lm_scratch_.size()) < threads) lm_scratch_.resize(size_t(threads));
  for (int64_t r0 = row_begin; r0 < row_end; r0 += opt_.logits_chunk_rows) {
    const int64_t rows = std::min<int64_t>(opt_.logits_chunk_rows, row_end - r0);
    const auto h = n_.middleRows(r0, rows);
    logit_.resize(rows, V);
    if (w_->lm_head_is_f32()) {
      const MatrixRef lm = w_->lm_head_rows(0, V, lm_scratch_[0]);
      gemm_xwt(h, lm.data, V, logit_, threads, opt_.parallel_min_macs);
    } else {
      // Convert the lm_head one slice of vocabulary rows at a time, each thread its own
      // slices; each slice fills a band of columns of the logits chunk.
      const int64_t slice = opt_.lm_head_chunk_rows, slices = (V + slice - 1) / slice;
#pragma omp parallel for num_threads(threads) schedule(dynamic, 1)
      for (int64_t i = 0; i < slices; ++i) {
        const int64_t v0 = i * slice, nv = std::min(slice, V - v0);
        const MatrixRef lm = w_->lm_head_rows(v0, nv, lm_scratch_[size_t(omp_get_thread_num())]);
        gemm_xwt(h, lm.data, nv, logit_.middleCols(v0, nv), 1, 0);
      }
    }
    fn(r0, logit_);
  }
}

void LlamaForward::run(std::span<const int32_t> tokens, SiteTaps* taps, const LogitsChunkFn& fn) {
  hidden(tokens, taps);
  logits(fn);
}

RowMatrixXf LlamaForward::logits_all(std::span<const int32_t> tokens, SiteTaps* taps) {
  RowMatrixXf all(int64_t(tokens.size()), w_->config().vocab_size);
  run(tokens, taps, [&](int64_t r0, const Eigen::Ref<const RowMatrixXf>& chunk) {
    all.middleRows(r0, chunk.rows()) = chunk;
  });
  return all;
}

}  // namespace mxlens
