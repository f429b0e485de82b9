// GCC 12: false -Wmaybe-uninitialized inside AVX-512 intrinsics inlined from Eigen.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
// Outlier plants (plant.h): tensors are planned first (which transform, which dtype), then
// streamed one at a time into a SafetensorsWriter inside a temporary directory.
#include "core/plant/plant.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <set>
#include <sstream>

#include <Eigen/Dense>

#include "core/io/float_convert.h"
#include "core/io/safetensors_writer.h"
#include "core/io/staged_output.h"
#include "core/model/forward.h"
#include "core/model/llama_model.h"
#include "core/util/error.h"

namespace fs = std::filesystem;

namespace mxlens {

namespace {

using MatrixXdR = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

constexpr const char* kRecordFile = "mxlens_plant.json";
constexpr const char* kWeightsFile = "model.safetensors";
// Rows of a tensor processed at once: bounded memory for a 128k-row lm_head.
constexpr int64_t kChunkElements = int64_t(1) << 22;
// Files beside the weights larger than this are not copied (they are not "small files").
constexpr uintmax_t kMaxCopiedFileBytes = uintmax_t(256) << 20;

bool is_float_dtype(DType t) {
  return t == DType::F32 || t == DType::F16 || t == DType::BF16;
}

// What happens to one tensor.
struct TensorOp {
  enum Kind {
    Copy,      // bytes unchanged (or converted to another float dtype)
    Scale,     // y[r][c] = x[r][c] · row_scale[r] · col_scale[c] (empty vector = 1)
    Ones,      // RMSNorm γ ← 1 (folded into its consumers)
    InRotate,  // Y = X · diag(fold) · Q      (fold empty = 1)
    OutRotate  // Y = Qᵀ · X  (X is [d, in] or a bias [d])
  };
  Kind kind = Copy;
  std::string source;  // tensor read
  std::string name;    // tensor written
  DType in_dtype = DType::F32;
  DType out_dtype = DType::F32;
  std::vector<uint64_t> shape;
  std::vector<double> row_scale, col_scale, fold;

  int64_t rows() const { return shape.empty() ? 1 : int64_t(shape[0]); }
  int64_t cols() const {
    int64_t c = 1;
    for (size_t i = 1; i < shape.size(); ++i) c *= int64_t(shape[i]);
    return c;
  }
};

// Layer index and suffix of "model.layers.<l>.<suffix>"; nullopt for other names.
std::optional<std::pair<int, std::string>> split_layer_name(const std::string& name) {
  static const std::string prefix = "model.layers.";
  if (name.rfind(prefix, 0) != 0) return std::nullopt;
  size_t pos = prefix.size();
  size_t end = pos;
  while (end < name.size() && std::isdigit(static_cast<unsigned char>(name[end]))) ++end;
  if (end == pos || end >= name.size() || name[end] != '.') return std::nullopt;
  return std::make_pair(std::stoi(name.substr(pos, end - pos)), name.substr(end + 1));
}

// Encodes `values` (exact results in double) as `dtype`, counting values whose written value
// differs from the exact one. Throws when a finite result does not fit the dtype.
void encode_values(std::span<const double> values, DType dtype, std::vector<std::byte>& out,
                   uint64_t& rounded, const std::string& tensor) {
  const size_t bytes_per = size_t(dtype_bits(dtype) / 8);
  out.resize(values.size() * bytes_per);
  for (size_t i = 0; i < values.size(); ++i) {
    const double exact = values[i];
    const float f = static_cast<float>(exact);
    double written;
    if (dtype == DType::F32) {
      std::memcpy(out.data() + i * 4, &f, 4);
      written = f;
    } else if (dtype == DType::BF16) {
      const uint16_t h = f32_to_bf16(f);
      std::memcpy(out.data() + i * 2, &h, 2);
      written = bf16_to_f32(h);
    } else {
      const uint16_t h = f32_to_f16(f);
      std::memcpy(out.data() + i * 2, &h, 2);
      written = f16_to_f32_ref(h);
    }
    if (std::isfinite(exact) && !std::isfinite(written))
      throw Error(tensor, "planted value " + std::to_string(exact) + " overflows " +
                              dtype_name(dtype) + "; use a smaller --scale or --dtype f32");
    if (written != exact && !(std::isnan(written) && std::isnan(exact))) ++rounded;
  }
}

std::string format_number(double v) {
  std::ostringstream os;
  os << v;
  return os.str();
}

bool is_power_of_two(double s) {
  int e = 0;
  return s > 0 && std::frexp(s, &e) == 0.5;
}

// ---------------------------------------------------------------------------------------
// Residual mode: principal directions of the normalized residual stream.

// Sums x̂ᵀx̂ and x̂ over the qkv and gate/up site inputs of every layer, x̂ = n / γ.
class StreamMoments : public SiteTaps {
 public:
  StreamMoments(std::vector<std::vector<float>> input_gamma,
                std::vector<std::vector<float>> post_gamma, int d)
      : input_gamma_(std::move(input_gamma)),
        post_gamma_(std::move(post_gamma)),
        second_(Eigen::MatrixXd::Zero(d, d)),
        first_(Eigen::VectorXd::Zero(d)) {}

  void on_activations(int layer, Site site, Eigen::Ref<RowMatrixXf> x) override {
    if (site != Site::Qkv && site != Site::GateUp) return;
    const std::vector<float>& g =
        site == Site::Qkv ? input_gamma_[size_t(layer)] : post_gamma_[size_t(layer)];
    Eigen::MatrixXd xh = x.cast<double>();
    for (int64_t c = 0; c < xh.cols(); ++c) {
      const double gc = g[size_t(c)];
      // A zero γ hides the channel at this site; it contributes nothing there.
      xh.col(c) *= std::abs(gc) > 1e-30 ? 1.0 / gc : 0.0;
    }
    second_.noalias() += xh.transpose() * xh;
    first_ += xh.colwise().sum().transpose();
    rows_ += xh.rows();
  }

  const Eigen::MatrixXd& second() const { return second_; }
  const Eigen::VectorXd& first() const { return first_; }
  int64_t rows() const { return rows_; }

 private:
  std::vector<std::vector<float>> input_gamma_, post_gamma_;
  Eigen::MatrixXd second_;
  Eigen::VectorXd first_;
  int64_t rows_ = 0;
};

std::vector<float> read_vector(const Checkpoint& ckpt, const std::string& name) {
  const TensorRef t = ckpt.tensor(name);
  uint64_t n = 1;
  for (uint64_t s : t.shape) n *= s;
  std::vector<float> v(n);
  ckpt.read_f32(name, v);
  return v;
}

std::vector<int32_t> random_tokens(int vocab, int n, uint64_t seed) {
  std::mt19937_64 rng(seed ^ 0x5eed0fca1b7a7e5ull);
  std::vector<int32_t> ids(static_cast<size_t>(std::max(n, 0)));
  for (auto& id : ids) id = int32_t(rng() % uint64_t(vocab));
  return ids;
}

struct ResidualRotation {
  Eigen::MatrixXd q;  // [d, d], x' = x · q
  std::vector<double> top_eigenvalues;
  double top_energy_fraction = 0;
  double orthogonality_error = 0;
  int64_t calib_tokens = 0;
};

ResidualRotation residual_rotation(const Checkpoint& ckpt, const std::vector<int>& channels,
                                   std::vector<int32_t> tokens, int threads,
                                   const Progress& progress) {
  const LlamaConfig& cfg = ckpt.config();
  const int d = cfg.hidden_size;
  const int k = int(channels.size());
  std::vector<std::vector<float>> gin, gpost;
  for (int l = 0; l < cfg.num_layers; ++l) {
    gin.push_back(read_vector(ckpt, layer_tensor_name(l, "input_layernorm.weight")));
    gpost.push_back(read_vector(ckpt, layer_tensor_name(l, "post_attention_layernorm.weight")));
  }
  StreamMoments moments(std::move(gin), std::move(gpost), d);
  const LlamaWeights weights(ckpt);
  ForwardOptions fopt;
  fopt.threads = std::max(1, threads);
  LlamaForward forward(weights, fopt);
  const int64_t window = std::max<int64_t>(1, std::min<int64_t>(cfg.max_position_embeddings, 512));
  for (size_t begin = 0; begin < tokens.size(); begin += size_t(window)) {
    progress.check_cancel();
    const size_t n = std::min(tokens.size() - begin, size_t(window));
    forward.hidden(std::span<const int32_t>(tokens).subspan(begin, n), &moments);
  }
  if (moments.rows() == 0) throw Error("calibration", "no tokens to measure the residual stream");

  ResidualRotation r;
  r.calib_tokens = int64_t(tokens.size());
  const Eigen::MatrixXd m = moments.second() / double(moments.rows());
  Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> eig(m);
  if (eig.info() != Eigen::Success)
    throw Error("calibration", "eigendecomposition of the residual-stream moments failed");
  const Eigen::VectorXd& values = eig.eigenvalues();  // ascending
  const double trace = std::max(values.sum(), 1e-300);

  // A = [v_1 … v_K, e_j for every unchosen j]: its QR keeps v_i as the first K columns and
  // turns each unchosen unit vector into its nearest direction orthogonal to the ones before,
  // so the unplanted channels stay close to the original layout.
  Eigen::MatrixXd a = Eigen::MatrixXd::Zero(d, d);
  for (int i = 0; i < k; ++i) {
    Eigen::VectorXd v = eig.eigenvectors().col(d - 1 - i);
    if (v.dot(moments.first()) < 0) v = -v;  // massive activations are mostly one-signed
    a.col(i) = v;
    r.top_eigenvalues.push_back(values(d - 1 - i));
    r.top_energy_fraction += values(d - 1 - i) / trace;
  }
  std::vector<char> chosen(size_t(d), 0);
  for (int c : channels) chosen[size_t(c)] = 1;
  std::vector<int> rest;
  for (int j = 0; j < d; ++j)
    if (!chosen[size_t(j)]) rest.push_back(j);
  for (size_t m2 = 0; m2 < rest.size(); ++m2) a(rest[m2], k + int(m2)) = 1.0;
  Eigen::HouseholderQR<Eigen::MatrixXd> qr(a);
  Eigen::MatrixXd qfull = qr.householderQ();
  const Eigen::MatrixXd rmat = qr.matrixQR().triangularView<Eigen::Upper>();
  bool degenerate = false;
  for (int i = 0; i < d; ++i) {
    if (std::abs(rmat(i, i)) < 1e-8) degenerate = true;
    if (rmat(i, i) < 0) qfull.col(i) *= -1.0;
  }
  if (degenerate) {
    // The unit vectors do not complete the principal directions: use the whole eigenbasis.
    for (int i = 0; i < d; ++i) {
      Eigen::VectorXd v = eig.eigenvectors().col(d - 1 - i);
      if (i < k && v.dot(moments.first()) < 0) v = -v;
      qfull.col(i) = v;
    }
  }
  r.q = Eigen::MatrixXd(d, d);
  for (int i = 0; i < k; ++i) r.q.col(channels[size_t(i)]) = qfull.col(i);
  for (size_t m2 = 0; m2 < rest.size(); ++m2) r.q.col(rest[m2]) = qfull.col(k + int(m2));
  r.orthogonality_error =
      (r.q * r.q.transpose() - Eigen::MatrixXd::Identity(d, d)).cwiseAbs().maxCoeff();
  return r;
}

// ---------------------------------------------------------------------------------------

class TensorStreamer {
 public:
  TensorStreamer(const Checkpoint& ckpt, SafetensorsWriter& writer, const Eigen::MatrixXd* q,
                 PlantRecord& record)
      : ckpt_(ckpt), writer_(writer), q_(q), record_(record) {}

  void write(const TensorOp& op, const Progress& progress) {
    if (op.kind == TensorOp::Copy && op.in_dtype == op.out_dtype) {
      const TensorRef t = ckpt_.tensor(op.source);
      writer_.write(op.name, t.bytes);
      return;
    }
    if (!is_float_dtype(op.in_dtype))
      throw Error(op.source, std::string("cannot transform a ") + dtype_name(op.in_dtype) +
                                 " tensor (F32, F16 or BF16 only)");
    const int64_t rows = op.rows(), cols = op.cols();
    if (op.kind == TensorOp::OutRotate) {
      write_out_rotated(op, rows, cols);
      return;
    }
    // A 1-D tensor (norm γ, bias) is read whole, in one chunk.
    const int64_t chunk_rows =
        op.shape.size() < 2 ? rows
                            : std::max<int64_t>(1, kChunkElements / std::max<int64_t>(cols, 1));
    std::vector<float> in;
    std::vector<double> y;
    std::vector<std::byte> bytes;
    for (int64_t r0 = 0; r0 < rows; r0 += chunk_rows) {
      progress.check_cancel();
      const int64_t n = std::min(chunk_rows, rows - r0);
      in.resize(size_t(n * cols));
      y.resize(in.size());
      if (op.kind != TensorOp::Ones) {
        if (op.shape.size() >= 2)
          ckpt_.read_rows_f32(op.source, r0, n, in);
        else
          ckpt_.read_f32(op.source, in);  // 1-D: one chunk
      }
      switch (op.kind) {
        case TensorOp::Copy:
          for (size_t i = 0; i < in.size(); ++i) y[i] = in[i];
          break;
        case TensorOp::Ones:
          std::fill(y.begin(), y.end(), 1.0);
          break;
        case TensorOp::Scale:
          for (int64_t r = 0; r < n; ++r) {
            const double rs = op.row_scale.empty() ? 1.0 : op.row_scale[size_t(r0 + r)];
            for (int64_t c = 0; c < cols; ++c) {
              const double cs = op.col_scale.empty() ? 1.0 : op.col_scale[size_t(c)];
              const size_t i = size_t(r * cols + c);
              y[i] = double(in[i]) * rs * cs;
            }
          }
          break;
        case TensorOp::InRotate: {
          Eigen::Map<const Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>> x(
              in.data(), n, cols);
          MatrixXdR xd = x.cast<double>();
          if (!op.fold.empty())
            for (int64_t c = 0; c < cols; ++c) xd.col(c) *= op.fold[size_t(c)];
          Eigen::Map<MatrixXdR> out(y.data(), n, cols);
          out.noalias() = xd * (*q_);
          break;
        }
        case TensorOp::OutRotate:
          break;
      }
      encode_and_write(op, y, bytes);
    }
  }

 private:
  void encode_and_write(const TensorOp& op, std::span<const double> y,
                        std::vector<std::byte>& bytes) {
    uint64_t rounded = 0;
    encode_values(y, op.out_dtype, bytes, rounded, op.name);
    if (op.kind != TensorOp::Copy) {
      record_.values_rounded += rounded;
      record_.values_written += y.size();
    }
    writer_.write(op.name, bytes);
  }

  // Qᵀ·X mixes rows, so the whole tensor is read; columns are rotated in blocks.
  void write_out_rotated(const TensorOp& op, int64_t rows, int64_t cols) {
    std::vector<float> in(size_t(rows * cols));
    ckpt_.read_f32(op.source, in);
    Eigen::Map<const Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>> x(
        in.data(), rows, cols);
    std::vector<double> y(in.size());
    Eigen::Map<MatrixXdR> out(y.data(), rows, cols);
    const int64_t block = 1024;
    for (int64_t c0 = 0; c0 < cols; c0 += block) {
      const int64_t nc = std::min(block, cols - c0);
      const Eigen::MatrixXd xd = x.middleCols(c0, nc).cast<double>();
      out.middleCols(c0, nc).noalias() = q_->transpose() * xd;
    }
    std::vector<std::byte> bytes;
    encode_and_write(op, y, bytes);
  }

  const Checkpoint& ckpt_;
  SafetensorsWriter& writer_;
  const Eigen::MatrixXd* q_;
  PlantRecord& record_;
};

void check_options(const Checkpoint& ckpt, const PlantOptions& o) {
  const LlamaConfig& cfg = ckpt.config();
  if (o.channels < 1 || o.channels > cfg.hidden_size)
    throw Error("--channels",
                "must be between 1 and hidden_size (" + std::to_string(cfg.hidden_size) + ")");
  if (o.mode == PlantMode::Norm) {
    if (!(o.scale > 0) || !std::isfinite(o.scale))
      throw Error("--scale", "must be a finite number > 0");
    if (!o.sites.attention_norm && !o.sites.mlp_norm && !o.sites.intermediate)
      throw Error("--sites", "no site chosen");
    if (o.sites.intermediate && o.channels > cfg.intermediate_size)
      throw Error("--channels", "exceeds intermediate_size for the intermediate site");
    std::set<int> seen;
    for (int l : o.layers) {
      if (l < 0 || l >= cfg.num_layers)
        throw Error("--layers", "layer " + std::to_string(l) + " outside 0.." +
                                    std::to_string(cfg.num_layers - 1));
      if (!seen.insert(l).second) throw Error("--layers", "layer " + std::to_string(l) + " twice");
    }
  } else {
    if (!o.layers.empty())
      throw Error("--layers", "residual mode rotates the whole residual stream (all layers)");
    if (o.calib_tokens.empty() && o.calib_random_tokens < 1)
      throw Error("calibration", "needs at least one token");
    for (int32_t id : o.calib_tokens)
      if (id < 0 || id >= cfg.vocab_size)
        throw Error("calibration", "token id " + std::to_string(id) + " outside the vocabulary");
  }
}

DType out_dtype_for(DType in, const PlantOptions& o) {
  if (!is_float_dtype(in)) return in;
  if (o.dtype == PlantDtype::F32) return DType::F32;
  if (o.dtype == PlantDtype::Auto && o.mode == PlantMode::Residual) return DType::F32;
  return in;
}

std::string dtype_note(const PlantOptions& o, const PlantRecord& r) {
  if (o.mode == PlantMode::Norm && o.dtype != PlantDtype::F32)
    return std::string("source dtype of each tensor; S = ") + format_number(r.scale) +
           (is_power_of_two(r.scale)
                ? " is a power of two, so a scaled value is exact unless it leaves the dtype's "
                  "normal range"
                : " is not a power of two, so each scaled value is rounded once to its dtype");
  if (o.dtype == PlantDtype::F32)
    return "F32 for every float tensor (requested); scaled/rotated values rounded once from double";
  if (o.mode == PlantMode::Residual && o.dtype == PlantDtype::Auto)
    return "F32 for every float tensor: rotated values are new numbers, computed in double and "
           "rounded once to F32";
  return "source dtype of each tensor (requested): rotated values are computed in double and "
         "rounded once to it (BF16 keeps ~3 significant digits)";
}

void plan_norm(const Checkpoint& ckpt, const PlantOptions& o, PlantRecord& rec,
               std::vector<TensorOp>& ops) {
  const LlamaConfig& cfg = ckpt.config();
  const double s = o.scale;
  std::vector<double> gamma_scale(size_t(cfg.hidden_size), 1.0);
  std::vector<double> col_scale(size_t(cfg.hidden_size), 1.0);
  for (int c : rec.hidden_channels) {
    gamma_scale[size_t(c)] = s;
    col_scale[size_t(c)] = 1.0 / s;
  }
  std::vector<double> up_row(size_t(cfg.intermediate_size), 1.0);
  std::vector<double> down_col(size_t(cfg.intermediate_size), 1.0);
  for (int j : rec.intermediate_channels) {
    up_row[size_t(j)] = s;
    down_col[size_t(j)] = 1.0 / s;
  }
  const std::set<int> layers(rec.layers.begin(), rec.layers.end());
  for (TensorOp& op : ops) {
    const auto split = split_layer_name(op.source);
    if (!split || !layers.count(split->first)) continue;
    const std::string& suffix = split->second;
    if (o.sites.attention_norm) {
      if (suffix == "input_layernorm.weight") {
        op.kind = TensorOp::Scale;
        op.row_scale = gamma_scale;
      } else if (suffix == "self_attn.q_proj.weight" || suffix == "self_attn.k_proj.weight" ||
                 suffix == "self_attn.v_proj.weight") {
        op.kind = TensorOp::Scale;
        op.col_scale = col_scale;
      }
    }
    if (o.sites.mlp_norm) {
      if (suffix == "post_attention_layernorm.weight") {
        op.kind = TensorOp::Scale;
        op.row_scale = gamma_scale;
      } else if (suffix == "mlp.gate_proj.weight" || suffix == "mlp.up_proj.weight") {
        op.kind = TensorOp::Scale;
        op.col_scale = col_scale;
      }
    }
    if (o.sites.intermediate) {
      if (suffix == "mlp.up_proj.weight" || suffix == "mlp.up_proj.bias") {
        op.kind = TensorOp::Scale;
        op.row_scale = up_row;
      } else if (suffix == "mlp.down_proj.weight") {
        op.kind = TensorOp::Scale;
        op.col_scale = down_col;
      }
    }
  }
}

void plan_residual(const Checkpoint& ckpt, const PlantOptions& o, PlantRecord& rec,
                   std::vector<TensorOp>& ops) {
  const LlamaConfig& cfg = ckpt.config();
  std::vector<std::vector<double>> gin(size_t(cfg.num_layers)), gpost(size_t(cfg.num_layers));
  for (int l = 0; l < cfg.num_layers; ++l) {
    for (float v : read_vector(ckpt, layer_tensor_name(l, "input_layernorm.weight")))
      gin[size_t(l)].push_back(v);
    for (float v : read_vector(ckpt, layer_tensor_name(l, "post_attention_layernorm.weight")))
      gpost[size_t(l)].push_back(v);
  }
  std::vector<double> gfinal;
  for (float v : read_vector(ckpt, "model.norm.weight")) gfinal.push_back(v);

  const std::string emb = ckpt.embedding_name();
  const std::string head = ckpt.lm_head_name();
  std::vector<TensorOp> planned;
  bool wrote_embedding = false, wrote_head = false;
  for (TensorOp op : ops) {
    if (op.source == "model.norm.weight") {
      op.kind = TensorOp::Ones;
    } else if (const auto split = split_layer_name(op.source)) {
      const int l = split->first;
      const std::string& sx = split->second;
      if (sx == "input_layernorm.weight" || sx == "post_attention_layernorm.weight") {
        op.kind = TensorOp::Ones;
      } else if (sx == "self_attn.q_proj.weight" || sx == "self_attn.k_proj.weight" ||
                 sx == "self_attn.v_proj.weight") {
        op.kind = TensorOp::InRotate;
        op.fold = gin[size_t(l)];
      } else if (sx == "mlp.gate_proj.weight" || sx == "mlp.up_proj.weight") {
        op.kind = TensorOp::InRotate;
        op.fold = gpost[size_t(l)];
      } else if (sx == "self_attn.o_proj.weight" || sx == "mlp.down_proj.weight" ||
                 sx == "self_attn.o_proj.bias" || sx == "mlp.down_proj.bias") {
        op.kind = TensorOp::OutRotate;
      }
    }
    if (op.source == emb || op.source == head) {
      // The embedding and the lm_head become different matrices (γ_final folds into the head
      // only), so a tied pair is written as two tensors.
      if (op.source == emb && !wrote_embedding) {
        TensorOp e = op;
        e.name = "model.embed_tokens.weight";
        e.kind = TensorOp::InRotate;
        e.fold.clear();
        planned.push_back(e);
        wrote_embedding = true;
      }
      if (op.source == head && !wrote_head) {
        TensorOp h = op;
        h.name = "lm_head.weight";
        h.kind = TensorOp::InRotate;
        h.fold = gfinal;
        planned.push_back(h);
        wrote_head = true;
      }
      continue;
    }
    planned.push_back(op);
  }
  ops = std::move(planned);
  rec.untied = cfg.tie_word_embeddings || emb == head;
  (void)o;
}

void copy_small_files(const fs::path& src, const fs::path& dst, bool untie, PlantRecord& rec) {
  for (const auto& entry : fs::directory_iterator(src)) {
    if (!entry.is_regular_file()) continue;
    const fs::path p = entry.path();
    const std::string name = p.filename().string();
    const std::string ext = p.extension().string();
    if (ext == ".safetensors" || name == "model.safetensors.index.json" || name == kRecordFile)
      continue;
    // Other weight formats would disagree with the planted safetensors.
    if (ext == ".bin" || ext == ".pt" || ext == ".pth" || ext == ".gguf" || ext == ".h5" ||
        ext == ".msgpack" || ext == ".onnx" || ext == ".ckpt")
      continue;
    if (name == "config.json" && untie) {
      std::ifstream in(p);
      nlohmann::json cfg = nlohmann::json::parse(in, nullptr, false);
      if (cfg.is_discarded()) throw Error(p.string(), "not valid JSON");
      cfg["tie_word_embeddings"] = false;
      std::ofstream out(dst / name);
      out << cfg.dump(2) << "\n";
      if (!out) throw Error((dst / name).string(), "cannot write");
      rec.copied_files.push_back(name + " (tie_word_embeddings set to false)");
      continue;
    }
    if (entry.file_size() > kMaxCopiedFileBytes) continue;
    fs::copy_file(p, dst / name);
    rec.copied_files.push_back(name);
  }
}

nlohmann::json record_to_json(const PlantRecord& r) {
  nlohmann::json j;
  j["mxlens_plant_version"] = 1;
  j["mode"] = plant_mode_name(r.mode);
  j["source"] = r.source_dir;
  j["seed"] = r.seed;
  j["scale"] = r.scale;
  j["channels"] = r.hidden_channels;
  j["intermediate_channels"] = r.intermediate_channels;
  j["layers"] = r.layers;
  j["sites"] = {{"attention_norm", r.sites.attention_norm},
                {"mlp_norm", r.sites.mlp_norm},
                {"intermediate", r.sites.intermediate}};
  j["dtype"] = plant_dtype_name(r.dtype);
  j["dtype_note"] = r.dtype_note;
  j["values_written"] = r.values_written;
  j["values_rounded"] = r.values_rounded;
  j["untied"] = r.untied;
  if (r.mode == PlantMode::Residual) {
    j["calib_source"] = r.calib_source;
    j["calib_tokens"] = r.calib_tokens;
    j["top_eigenvalues"] = r.top_eigenvalues;
    j["top_energy_fraction"] = r.top_energy_fraction;
    j["orthogonality_error"] = r.orthogonality_error;
  }
  j["copied_files"] = r.copied_files;
  return j;
}

}  // namespace

const char* plant_mode_name(PlantMode mode) {
  return mode == PlantMode::Norm ? "norm" : "residual";
}

const char* plant_dtype_name(PlantDtype dtype) {
  switch (dtype) {
    case PlantDtype::Auto:
      return "auto";
    case PlantDtype::Source:
      return "source";
    case PlantDtype::F32:
      return "f32";
  }
  return "?";
}

std::vector<int> choose_plant_channels(int n, int k, uint64_t seed) {
  if (k < 0 || k > n)
    throw Error("--channels", "cannot choose " + std::to_string(k) + " distinct channels of " +
                                  std::to_string(n));
  std::vector<int> all(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) all[size_t(i)] = i;
  std::mt19937_64 rng(seed);
  // Partial Fisher-Yates with rejection sampling (no modulo bias, same on every platform).
  for (int i = 0; i < k; ++i) {
    const uint64_t range = uint64_t(n - i);
    const uint64_t limit =
        std::numeric_limits<uint64_t>::max() - std::numeric_limits<uint64_t>::max() % range;
    uint64_t x;
    do x = rng();
    while (x >= limit);
    std::swap(all[size_t(i)], all[size_t(i) + size_t(x % range)]);
  }
  all.resize(size_t(k));
  return all;
}

std::string plant_record_json(const PlantRecord& record) {
  return record_to_json(record).dump(2);
}

PlantRecord plant_outliers(const Checkpoint& ckpt, const fs::path& out_dir_arg,
                           const PlantOptions& options, const Progress& progress) {
  // "out/" names the directory "out".
  const fs::path out_dir = out_dir_arg.has_filename() ? out_dir_arg : out_dir_arg.parent_path();
  check_options(ckpt, options);
  check_output_target(out_dir, OutputKind::directory, options.force, ckpt.dir());
  const LlamaConfig& cfg = ckpt.config();

  PlantRecord rec;
  rec.mode = options.mode;
  rec.source_dir = ckpt.dir().string();
  rec.seed = options.seed;
  rec.dtype = options.dtype;
  rec.hidden_channels = choose_plant_channels(cfg.hidden_size, options.channels, options.seed);
  if (options.mode == PlantMode::Norm) {
    rec.scale = options.scale;
    rec.sites = options.sites;
    if (options.sites.intermediate)
      rec.intermediate_channels =
          choose_plant_channels(cfg.intermediate_size, options.channels, options.seed + 1);
    rec.layers = options.layers;
    if (rec.layers.empty())
      for (int l = 0; l < cfg.num_layers; ++l) rec.layers.push_back(l);
    std::sort(rec.layers.begin(), rec.layers.end());
  } else {
    rec.scale = 1.0;
    rec.sites = PlantSites{true, true, false};
    for (int l = 0; l < cfg.num_layers; ++l) rec.layers.push_back(l);
  }
  rec.dtype_note = dtype_note(options, rec);

  // Plan: every stored tensor, in name order, copied unless a mode transforms it.
  std::vector<TensorOp> ops;
  for (const TensorRef& t : ckpt.tensors()) {
    TensorOp op;
    op.source = op.name = t.name;
    op.in_dtype = t.dtype;
    op.out_dtype = out_dtype_for(t.dtype, options);
    op.shape = t.shape;
    ops.push_back(std::move(op));
  }
  std::optional<ResidualRotation> rotation;
  if (options.mode == PlantMode::Norm) {
    plan_norm(ckpt, options, rec, ops);
  } else {
    std::vector<int32_t> tokens = options.calib_tokens;
    rec.calib_source = options.calib_source;
    if (tokens.empty()) {
      tokens = random_tokens(cfg.vocab_size, options.calib_random_tokens, options.seed);
      rec.calib_source = std::to_string(tokens.size()) + " seeded uniform random token ids (seed " +
                         std::to_string(options.seed) + ")";
    }
    progress.report(0.0, "calibrating the residual-stream rotation");
    rotation =
        residual_rotation(ckpt, rec.hidden_channels, std::move(tokens), options.threads, progress);
    rec.calib_tokens = rotation->calib_tokens;
    rec.top_eigenvalues = rotation->top_eigenvalues;
    rec.top_energy_fraction = rotation->top_energy_fraction;
    rec.orthogonality_error = rotation->orthogonality_error;
    plan_residual(ckpt, options, rec, ops);
  }

  // Metadata: the source's, minus tensor aliases that no longer hold, plus the record.
  std::map<std::string, std::string> metadata;
  {
    const TensorRef any = ckpt.tensor(ops.front().source);
    const SafetensorsFile first = SafetensorsFile::open(*any.shard);
    std::set<std::string> names;
    for (const TensorOp& op : ops) names.insert(op.name);
    for (const auto& [key, value] : first.metadata())
      if (!(rec.untied && (names.count(key) || names.count(value)))) metadata[key] = value;
  }
  {
    // Counts of rounded values are known only after writing: they live in mxlens_plant.json.
    nlohmann::json header_record = record_to_json(rec);
    header_record.erase("values_written");
    header_record.erase("values_rounded");
    header_record.erase("copied_files");
    metadata["mxlens_plant"] = header_record.dump();
  }

  std::vector<TensorSpec> specs;
  for (const TensorOp& op : ops) specs.push_back(TensorSpec{op.name, op.out_dtype, op.shape});

  StagedOutput tmp(out_dir, OutputKind::directory, "plant");
  {
    SafetensorsWriter writer(tmp.path() / kWeightsFile, specs, metadata);
    TensorStreamer streamer(ckpt, writer, rotation ? &rotation->q : nullptr, rec);
    for (size_t i = 0; i < ops.size(); ++i) {
      progress.check_cancel();
      progress.report(double(i) / double(ops.size()), ops[i].name);
      streamer.write(ops[i], progress);
    }
    writer.finish();
  }
  copy_small_files(ckpt.dir(), tmp.path(), rec.untied && cfg.tie_word_embeddings, rec);
  {
    // The record in the file says what was written; values_* are known only now.
    std::ofstream out(tmp.path() / kRecordFile);
    out << plant_record_json(rec) << "\n";
    if (!out) throw Error((tmp.path() / kRecordFile).string(), "cannot write");
  }

  tmp.commit();
  progress.report(1.0, "done");
  return rec;
}

}  // namespace mxlens
