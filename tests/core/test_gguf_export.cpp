// GGUF export (formats.md §4.3, §4.4): the writer against the worked header bytes, MXFP4
// blocks against the worked vectors, an exported file read by an independent parser written
// here (no mxlens GGUF code), round trips through mxlens's reader (every linear's blocks, the
// norms, the embeddings), the tokenizer mappings, the refusals, and the reader on broken
// files.
#include <QTemporaryDir>
#include <QtTest>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <numbers>
#include <set>
#include <string>
#include <vector>

#include "core/calib/calibrate.h"
#include "core/export/export.h"
#include "core/export/export_weights.h"
#include "core/export/gguf_export.h"
#include "core/export/gguf_vocab.h"
#include "core/export/gguf_writer.h"
#include "core/io/float_convert.h"
#include "core/io/gguf_reader.h"
#include "core/io/safetensors_writer.h"
#include "core/model/checkpoint.h"
#include "core/model/forward.h"
#include "core/model/synthetic_checkpoint.h"
#include "core/mx/mxfp4.h"
#include "core/plant/plant.h"
#include "core/quant/w4a4_taps.h"
#include "core/text/tokenizer.h"
#include "core/util/error.h"
#include "tests/test_data.h"

using namespace mxlens;
namespace fs = std::filesystem;

namespace {

// ---- An independent GGUF reader (formats.md §4.3), sharing nothing with core/io ---------

struct RawValue {
  uint32_t type = 0;
  uint64_t u = 0;  // unsigned ints and bool
  int64_t i = 0;   // signed ints
  double f = 0;    // f32 / f64
  std::string s;
  uint32_t elem = 0;  // arrays
  std::vector<RawValue> items;
};
struct RawTensor {
  std::string name;
  std::vector<uint64_t> dims;  // as stored (innermost first)
  uint32_t type = 0;
  uint64_t offset = 0;
};
struct RawGguf {
  std::string bytes;
  uint32_t version = 0;
  std::vector<std::string> keys;  // file order
  std::map<std::string, RawValue> kv;
  std::vector<RawTensor> tensors;
  uint64_t header_end = 0;  // before padding
};

struct RawCursor {
  const std::string& b;
  size_t pos = 0;
  template <class T>
  T get() {
    if (pos + sizeof(T) > b.size()) throw std::runtime_error("raw reader: truncated");
    T v;
    std::memcpy(&v, b.data() + pos, sizeof(T));
    pos += sizeof(T);
    return v;
  }
  std::string str() {
    const uint64_t n = get<uint64_t>();
    if (n > b.size() - pos) throw std::runtime_error("raw reader: string past the end");
    std::string s = b.substr(pos, size_t(n));
    pos += size_t(n);
    return s;
  }
  RawValue value(uint32_t type) {
    RawValue v;
    v.type = type;
    switch (type) {
      case 0:
        v.u = get<uint8_t>();
        break;
      case 1:
        v.i = get<int8_t>();
        break;
      case 2:
        v.u = get<uint16_t>();
        break;
      case 3:
        v.i = get<int16_t>();
        break;
      case 4:
        v.u = get<uint32_t>();
        break;
      case 5:
        v.i = get<int32_t>();
        break;
      case 6:
        v.f = get<float>();
        break;
      case 7:
        v.u = get<uint8_t>();
        break;
      case 8:
        v.s = str();
        break;
      case 9: {
        v.elem = get<uint32_t>();
        const uint64_t n = get<uint64_t>();
        for (uint64_t k = 0; k < n; ++k) v.items.push_back(value(v.elem));
        break;
      }
      case 10:
        v.u = get<uint64_t>();
        break;
      case 11:
        v.i = get<int64_t>();
        break;
      case 12:
        v.f = get<double>();
        break;
      default:
        throw std::runtime_error("raw reader: value type " + std::to_string(type));
    }
    return v;
  }
};

RawGguf read_raw(const fs::path& p) {
  RawGguf g;
  std::ifstream in(p, std::ios::binary);
  g.bytes.assign(std::istreambuf_iterator<char>(in), {});
  RawCursor c{g.bytes};
  if (c.get<uint32_t>() != 0x46554747) throw std::runtime_error("raw reader: magic");
  g.version = c.get<uint32_t>();
  const uint64_t n_tensors = c.get<uint64_t>();
  const uint64_t n_kv = c.get<uint64_t>();
  for (uint64_t k = 0; k < n_kv; ++k) {
    std::string key = c.str();
    const uint32_t type = c.get<uint32_t>();
    g.kv[key] = c.value(type);
    g.keys.push_back(std::move(key));
  }
  for (uint64_t k = 0; k < n_tensors; ++k) {
    RawTensor t;
    t.name = c.str();
    const uint32_t nd = c.get<uint32_t>();
    for (uint32_t d = 0; d < nd; ++d) t.dims.push_back(c.get<uint64_t>());
    t.type = c.get<uint32_t>();
    t.offset = c.get<uint64_t>();
    g.tensors.push_back(std::move(t));
  }
  g.header_end = c.pos;
  return g;
}

// Bytes of a tensor of the given ggml type (F32 4, F16/BF16 2, MXFP4 17 per 32).
uint64_t raw_tensor_bytes(const RawTensor& t) {
  uint64_t n = 1;
  for (uint64_t d : t.dims) n *= d;
  switch (t.type) {
    case 0:
      return n * 4;
    case 1:
    case 30:
      return n * 2;
    case 39:
      return n / 32 * 17;
  }
  throw std::runtime_error("raw reader: tensor type " + std::to_string(t.type));
}

uint64_t align32(uint64_t n) {
  return (n + 31) / 32 * 32;
}

// Row r of a q/k weight as llama.cpp stores it came from HF row h·D + half·D/2 + i, where
// r = h·D + 2i + half (formats.md §4.3), written here from the formula, not from the exporter.
int64_t hf_row_of_gguf_row(int64_t r, int64_t head_dim) {
  const int64_t h = r / head_dim, j = r % head_dim;
  return h * head_dim + (j % 2) * (head_dim / 2) + j / 2;
}

std::vector<uint8_t> hex_bytes(const char* hex) {
  std::vector<uint8_t> out;
  std::string h;
  for (const char* p = hex; *p; ++p)
    if (std::isxdigit(static_cast<unsigned char>(*p))) h += *p;
  for (size_t i = 0; i + 1 < h.size(); i += 2)
    out.push_back(uint8_t(std::stoi(h.substr(i, 2), nullptr, 16)));
  return out;
}

uint32_t bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

std::string write_text(const fs::path& p, const std::string& s) {
  std::ofstream(p, std::ios::binary) << s;
  return p.string();
}

// ---- A reference forward in llama.cpp's conventions, reading only the GGUF file -----------
// (formats.md §4.3): weights dequantized from the MXFP4 blocks by the OCP rule written here,
// RoPE on adjacent pairs (2i, 2i+1) of the permuted q/k rows, θ_i = pos·base^(−2i/D) divided by
// rope_freqs[i] (llama3) or by the linear scaling factor, GQA, SwiGLU, RMSNorm; in double.

using Mat = std::vector<double>;  // row-major

struct RefLinear {
  int64_t out = 0, in = 0;
  Mat w;
  std::vector<double> b;  // empty = no bias
};

double e2m1_value(int code) {
  static const double mag[8] = {0, 0.5, 1, 1.5, 2, 3, 4, 6};
  return (code & 8 ? -1.0 : 1.0) * mag[code & 7];
}

RefLinear ref_linear(const GgufFile& g, const std::string& name) {
  const GgufTensor& t = g.tensor(name + ".weight");
  RefLinear l;
  l.in = int64_t(t.dims[0]);
  l.out = int64_t(t.dims[1]);
  l.w.resize(size_t(l.out * l.in));
  const auto* p = reinterpret_cast<const uint8_t*>(t.data.data());
  for (int64_t blk = 0; blk < l.out * l.in / 32; ++blk, p += 17) {
    const double scale = std::ldexp(1.0, int(p[0]) - 127);
    for (int j = 0; j < 16; ++j) {
      l.w[size_t(blk * 32 + j)] = e2m1_value(p[1 + j] & 0xF) * scale;
      l.w[size_t(blk * 32 + j + 16)] = e2m1_value(p[1 + j] >> 4) * scale;
    }
  }
  if (g.find_tensor(name + ".bias")) {
    const std::vector<float> b = g.read_f32(name + ".bias");
    l.b.assign(b.begin(), b.end());
  }
  return l;
}

// y[T, out] = x[T, in]·Wᵀ + b
Mat apply(const RefLinear& l, const Mat& x, int64_t T) {
  Mat y(size_t(T * l.out), 0.0);
  for (int64_t t = 0; t < T; ++t)
    for (int64_t o = 0; o < l.out; ++o) {
      double acc = l.b.empty() ? 0.0 : l.b[size_t(o)];
      for (int64_t i = 0; i < l.in; ++i) acc += x[size_t(t * l.in + i)] * l.w[size_t(o * l.in + i)];
      y[size_t(t * l.out + o)] = acc;
    }
  return y;
}

Mat rms_norm(const Mat& x, const std::vector<float>& gamma, int64_t T, double eps) {
  const int64_t d = int64_t(gamma.size());
  Mat y(x.size());
  for (int64_t t = 0; t < T; ++t) {
    double ss = 0;
    for (int64_t i = 0; i < d; ++i) ss += x[size_t(t * d + i)] * x[size_t(t * d + i)];
    const double r = 1.0 / std::sqrt(ss / double(d) + eps);
    for (int64_t i = 0; i < d; ++i)
      y[size_t(t * d + i)] = x[size_t(t * d + i)] * r * gamma[size_t(i)];
  }
  return y;
}

Mat reference_logits(const GgufFile& g, const std::vector<int32_t>& tokens) {
  const int64_t T = int64_t(tokens.size());
  const int64_t d = g.get_u32("llama.embedding_length");
  const int64_t H = g.get_u32("llama.attention.head_count");
  const int64_t Hkv = g.get_u32("llama.attention.head_count_kv");
  const int64_t D = g.find_u32("llama.attention.key_length").value_or(uint32_t(d / H));
  const int64_t L = g.get_u32("llama.block_count");
  const double eps = g.get_f32("llama.attention.layer_norm_rms_epsilon");
  const double base = g.get_f32("llama.rope.freq_base");
  double linear = 1.0;
  if (g.find_string("llama.rope.scaling.type") == std::optional<std::string>("linear"))
    linear = g.get_f32("llama.rope.scaling.factor");
  std::vector<float> freq_factors(size_t(D / 2), 1.0f);
  if (g.find_tensor("rope_freqs.weight")) freq_factors = g.read_f32("rope_freqs.weight");
  const std::vector<float> emb = g.read_f32("token_embd.weight");
  Mat x(size_t(T * d));
  for (int64_t t = 0; t < T; ++t)
    for (int64_t i = 0; i < d; ++i) x[size_t(t * d + i)] = emb[size_t(tokens[size_t(t)] * d + i)];
  auto rope = [&](Mat& v, int64_t heads) {
    for (int64_t t = 0; t < T; ++t)
      for (int64_t h = 0; h < heads; ++h)
        for (int64_t i = 0; i < D / 2; ++i) {
          const double theta = double(t) * std::pow(base, -2.0 * double(i) / double(D)) /
                               freq_factors[size_t(i)] / linear;
          double& a = v[size_t(t * heads * D + h * D + 2 * i)];
          double& b = v[size_t(t * heads * D + h * D + 2 * i + 1)];
          const double a0 = a, b0 = b;
          a = a0 * std::cos(theta) - b0 * std::sin(theta);
          b = a0 * std::sin(theta) + b0 * std::cos(theta);
        }
  };
  for (int64_t l = 0; l < L; ++l) {
    const std::string blk = "blk." + std::to_string(l) + ".";
    const Mat n = rms_norm(x, g.read_f32(blk + "attn_norm.weight"), T, eps);
    Mat q = apply(ref_linear(g, blk + "attn_q"), n, T);
    Mat k = apply(ref_linear(g, blk + "attn_k"), n, T);
    const Mat v = apply(ref_linear(g, blk + "attn_v"), n, T);
    rope(q, H);
    rope(k, Hkv);
    Mat att(size_t(T * H * D), 0.0);
    for (int64_t h = 0; h < H; ++h) {
      const int64_t kh = h / (H / Hkv);
      for (int64_t t = 0; t < T; ++t) {
        std::vector<double> s(size_t(t + 1));
        double mx = -1e300;
        for (int64_t u = 0; u <= t; ++u) {
          double dot = 0;
          for (int64_t j = 0; j < D; ++j)
            dot += q[size_t(t * H * D + h * D + j)] * k[size_t(u * Hkv * D + kh * D + j)];
          s[size_t(u)] = dot / std::sqrt(double(D));
          mx = std::max(mx, s[size_t(u)]);
        }
        double z = 0;
        for (double& e : s) z += (e = std::exp(e - mx));
        for (int64_t u = 0; u <= t; ++u)
          for (int64_t j = 0; j < D; ++j)
            att[size_t(t * H * D + h * D + j)] +=
                s[size_t(u)] / z * v[size_t(u * Hkv * D + kh * D + j)];
      }
    }
    const Mat o = apply(ref_linear(g, blk + "attn_output"), att, T);
    for (size_t i = 0; i < x.size(); ++i) x[i] += o[i];
    const Mat n2 = rms_norm(x, g.read_f32(blk + "ffn_norm.weight"), T, eps);
    const Mat gate = apply(ref_linear(g, blk + "ffn_gate"), n2, T);
    Mat up = apply(ref_linear(g, blk + "ffn_up"), n2, T);
    for (size_t i = 0; i < up.size(); ++i) up[i] *= gate[i] / (1.0 + std::exp(-gate[i]));
    const Mat down = apply(ref_linear(g, blk + "ffn_down"), up, T);
    for (size_t i = 0; i < x.size(); ++i) x[i] += down[i];
  }
  const Mat n = rms_norm(x, g.read_f32("output_norm.weight"), T, eps);
  const std::vector<float> out = g.find_tensor("output.weight") ? g.read_f32("output.weight") : emb;
  const int64_t vocab = int64_t(out.size()) / d;
  Mat logits(size_t(T * vocab), 0.0);
  for (int64_t t = 0; t < T; ++t)
    for (int64_t r = 0; r < vocab; ++r) {
      double acc = 0;
      for (int64_t i = 0; i < d; ++i) acc += n[size_t(t * d + i)] * out[size_t(r * d + i)];
      logits[size_t(t * vocab + r)] = acc;
    }
  return logits;
}

}  // namespace

class TestGgufExport : public QObject {
  Q_OBJECT

  QTemporaryDir tmp_;
  std::unique_ptr<Checkpoint> ckpt_;
  std::unique_ptr<LlamaWeights> weights_;
  std::vector<int32_t> ids_;
  std::optional<Session> rtn_;

  fs::path dir() const { return fs::path(tmp_.path().toStdString()); }

  CalibrationSettings settings(Method m) const {
    CalibrationSettings s;
    s.method = m;
    s.windows.count = 4;
    s.windows.seqlen = 64;
    s.windows.tail_fraction = 0.5;
    s.greedy.max_steps = 4;
    s.smoothing.tie_gqa = true;
    return s;
  }
  Session calibrate_on(const Checkpoint& ck, const LlamaWeights& w, const CalibrationSettings& s,
                       const std::vector<int32_t>& ids) const {
    CalibrateOptions o;
    o.site_statistics = false;
    return calibrate(ck, w, {"stories.txt", "sha", ids}, s, o);
  }
  Session calibrate_656k(const CalibrationSettings& s) const {
    return calibrate_on(*ckpt_, *weights_, s, ids_);
  }
  // Through the dispatcher (session checked against the model, staged output).
  fs::path export_gguf(const Checkpoint& ck, const Session& s, const std::string& name,
                       ExportReport* report = nullptr, const Progress& progress = {}) {
    ExportOptions o;
    o.format = ExportFormat::gguf;
    o.force = true;
    const fs::path out = dir() / name;
    const ExportReport r = export_checkpoint(ck, s, "session.h5", out, o, progress);
    if (report) *report = r;
    return out;
  }

  // Every linear's blocks equal export_weight_blocks (q/k rows un-permuted), the norms equal
  // folded_norm bit for bit, the embeddings equal the checkpoint's bytes.
  void check_round_trip(const Checkpoint& ck, const LlamaWeights& w, const Session& s,
                        const fs::path& file) {
    const GgufFile g = GgufFile::open(file);
    const LlamaConfig& c = ck.config();
    const QuantPlan plan = make_plan(s, c);
    LayerWeights lw;
    static const char* names[] = {"attn_q",   "attn_k", "attn_v",  "attn_output",
                                  "ffn_gate", "ffn_up", "ffn_down"};
    for (int l = 0; l < c.num_layers; ++l) {
      w.load_layer(l, lw);
      for (Linear which : kAllLinears) {
        const std::string name = "blk." + std::to_string(l) + "." + names[int(which)] + ".weight";
        const ExportedWeight ew = export_weight_blocks(plan, lw, which);
        const std::span<const Mxfp4Block> got = g.mxfp4_blocks(name);
        QCOMPARE(got.size(), ew.blocks.size());
        QCOMPARE(g.tensor(name).shape(),
                 (std::vector<uint64_t>{uint64_t(ew.out), uint64_t(ew.in)}));
        const int64_t per_row = ew.in / 32;
        for (int64_t r = 0; r < ew.out; ++r) {
          const int64_t src =
              (which == Linear::Q || which == Linear::K) ? hf_row_of_gguf_row(r, c.head_dim) : r;
          QVERIFY2(std::memcmp(&got[size_t(r * per_row)], &ew.blocks[size_t(src * per_row)],
                               size_t(per_row) * sizeof(Mxfp4Block)) == 0,
                   (name + " row " + std::to_string(r)).c_str());
        }
        // And the blocks dequantize to the session's weight.
        RowMatrixXf q;
        const MatrixRef& m = lw.linear(which);
        plan.quantized_weight(l, which, m.span(), int(m.rows), int(m.cols), q);
        std::vector<float> back(size_t(q.size()));
        dequantize_mxfp4(ew.blocks, ew.scale, back);
        QVERIFY(std::memcmp(back.data(), q.data(), back.size() * 4) == 0);
        // Biases (q/k permuted the same way).
        const float* bias = which == Linear::Q   ? lw.q_bias
                            : which == Linear::K ? lw.k_bias
                            : which == Linear::V ? lw.v_bias
                            : which == Linear::O ? lw.o_bias
                                                 : nullptr;
        const std::string bname = name.substr(0, name.size() - 6) + "bias";
        QCOMPARE(g.find_tensor(bname) != nullptr, bias != nullptr);
        if (bias) {
          const std::vector<float> b = g.read_f32(bname);
          for (int64_t r = 0; r < ew.out; ++r) {
            const int64_t src =
                (which == Linear::Q || which == Linear::K) ? hf_row_of_gguf_row(r, c.head_dim) : r;
            QCOMPARE(bits(b[size_t(r)]), bits(bias[src]));
          }
        }
      }
      const size_t d = size_t(c.hidden_size);
      const std::vector<float> an = g.read_f32("blk." + std::to_string(l) + ".attn_norm.weight");
      const std::vector<float> fn = g.read_f32("blk." + std::to_string(l) + ".ffn_norm.weight");
      const std::vector<float> want_a =
          plan.folded_norm(l, Site::Qkv, std::span<const float>(lw.input_norm, d));
      const std::vector<float> want_f =
          plan.folded_norm(l, Site::GateUp, std::span<const float>(lw.post_norm, d));
      QVERIFY(std::memcmp(an.data(), want_a.data(), d * 4) == 0);
      QVERIFY(std::memcmp(fn.data(), want_f.data(), d * 4) == 0);
    }
    const std::vector<float> on = g.read_f32("output_norm.weight");
    QVERIFY(std::memcmp(on.data(), w.final_norm(), on.size() * 4) == 0);
    const TensorRef emb = ck.tensor(ck.embedding_name());
    const GgufTensor& te = g.tensor("token_embd.weight");
    QCOMPARE(te.shape(), emb.shape);
    QVERIFY(te.data.size() == emb.bytes.size() &&
            std::memcmp(te.data.data(), emb.bytes.data(), emb.bytes.size()) == 0);
    // The file computes the session's model with FP activations (W4A16): llama.cpp's
    // conventions (reference_logits) against mxlens's forward.
    {
      const QuantPlan w4a16(c,
                            QuantScheme::make(QuantMode::w4a16, QuantFormat::mxfp4,
                                              s.settings.scheme.weights.options),
                            s.transforms);
      W4a4Taps taps(w4a16);
      std::vector<int32_t> toks(12);
      for (size_t i = 0; i < toks.size(); ++i) toks[i] = int32_t((i * 37 + 5) % 200);
      LlamaForward fwd(w);
      const RowMatrixXf want = fwd.logits_all(toks, &taps);
      const Mat got = reference_logits(g, toks);
      QCOMPARE(got.size(), size_t(want.size()));
      double max_diff = 0, max_abs = 0;
      for (Eigen::Index t = 0; t < want.rows(); ++t)
        for (Eigen::Index r = 0; r < want.cols(); ++r) {
          max_diff = std::max(max_diff, std::abs(got[size_t(t * want.cols() + r)] - want(t, r)));
          max_abs = std::max(max_abs, double(std::abs(want(t, r))));
        }
      qInfo("%s: reference forward vs mxlens W4A16 logits, max |diff| %.3g of max |logit| %.3g",
            file.filename().c_str(), max_diff, max_abs);
      QVERIFY(max_diff <= 1e-4 * max_abs);
    }
    QCOMPARE(g.find_tensor("output.weight") != nullptr, !c.tie_word_embeddings);
    if (!c.tie_word_embeddings) {
      const TensorRef lm = ck.tensor(ck.lm_head_name());
      const GgufTensor& to = g.tensor("output.weight");
      QVERIFY(to.data.size() == lm.bytes.size() &&
              std::memcmp(to.data.data(), lm.bytes.data(), lm.bytes.size()) == 0);
    }
  }

  void expect_refusal(const Checkpoint& ck, const Session& s, std::vector<const char*> needles) {
    try {
      plan_gguf_export(ck, s, make_plan(s, ck.config()));
      QFAIL("the GGUF export was not refused");
    } catch (const Error& e) {
      qInfo("refused: %s", e.what());
      for (const char* n : needles)
        QVERIFY2(std::string(e.what()).find(n) != std::string::npos, e.what());
    }
  }

  // A small SentencePiece-style tokenizer (byte pieces, one merge) for the synthetic models.
  fs::path tiny_tokenizer(const std::string& extra_vocab = {},
                          const char* file = "tiny_tokenizer.json") {
    std::string vocab = R"("<unk>": 0, "<s>": 1, "</s>": 2)";
    char buf[32];
    for (int b = 0; b < 256; ++b) {
      std::snprintf(buf, sizeof buf, ", \"<0x%02X>\": %d", b, 3 + b);
      vocab += buf;
    }
    vocab +=
        ", \"\xE2\x96\x81\": 259, \"a\": 260, \"\xE2\x96\x81"
        "a\": 261";
    vocab += extra_vocab;
    const std::string j = std::string(R"({"version": "1.0", "truncation": null, "padding": null,
 "added_tokens": [
  {"id": 0, "content": "<unk>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true},
  {"id": 1, "content": "<s>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true},
  {"id": 2, "content": "</s>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true}],
 "normalizer": {"type": "Sequence", "normalizers": [{"type": "Prepend", "prepend": "\u2581"},
   {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"}]},
 "pre_tokenizer": null,
 "post_processor": {"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
   "pair": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}],
   "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}}},
 "decoder": null,
 "model": {"type": "BPE", "dropout": null, "unk_token": "<unk>", "continuing_subword_prefix": null,
   "end_of_word_suffix": null, "fuse_unk": true, "byte_fallback": true,
   "vocab": {)") + vocab + R"(}, "merges": ["\u2581 a"]}})";
    const fs::path p = dir() / file;
    write_text(p, j);
    return p;
  }

  // A hand-made model whose head_dim (32) is not hidden/heads (64/4), with linear RoPE
  // scaling, q/k/v/o biases and an F16 embedding: what no preset covers.
  fs::path write_head_dim_model(const fs::path& tokenizer) {
    const fs::path d = dir() / "hd32";
    fs::create_directories(d);
    const uint64_t hidden = 64, heads = 4, kv = 2, hd = 32, inter = 96, vocab = 320;
    std::vector<TensorSpec> specs = {{"model.embed_tokens.weight", DType::F16, {vocab, hidden}}};
    for (int l = 0; l < 2; ++l) {
      const std::string p = "model.layers." + std::to_string(l) + ".";
      specs.push_back({p + "input_layernorm.weight", DType::F32, {hidden}});
      specs.push_back({p + "self_attn.q_proj.weight", DType::F32, {heads * hd, hidden}});
      specs.push_back({p + "self_attn.q_proj.bias", DType::F32, {heads * hd}});
      specs.push_back({p + "self_attn.k_proj.weight", DType::F32, {kv * hd, hidden}});
      specs.push_back({p + "self_attn.k_proj.bias", DType::F32, {kv * hd}});
      specs.push_back({p + "self_attn.v_proj.weight", DType::F32, {kv * hd, hidden}});
      specs.push_back({p + "self_attn.v_proj.bias", DType::F32, {kv * hd}});
      specs.push_back({p + "self_attn.o_proj.weight", DType::F32, {hidden, heads * hd}});
      specs.push_back({p + "self_attn.o_proj.bias", DType::F32, {hidden}});
      specs.push_back({p + "post_attention_layernorm.weight", DType::F32, {hidden}});
      specs.push_back({p + "mlp.gate_proj.weight", DType::F32, {inter, hidden}});
      specs.push_back({p + "mlp.up_proj.weight", DType::F32, {inter, hidden}});
      specs.push_back({p + "mlp.down_proj.weight", DType::F32, {hidden, inter}});
    }
    specs.push_back({"model.norm.weight", DType::F32, {hidden}});
    SafetensorsWriter w(d / "model.safetensors", specs);
    uint64_t seed = 1;
    for (const TensorSpec& t : specs) {
      uint64_t n = 1;
      for (uint64_t x : t.shape) n *= x;
      std::vector<float> v(static_cast<size_t>(n));
      for (float& x : v) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        const float u = float(seed >> 40) / float(1 << 24) - 0.5f;
        x = t.name.ends_with("norm.weight") ? 1.0f + 0.2f * u : 0.1f * u;
      }
      if (t.dtype == DType::F16) {
        std::vector<uint16_t> h(v.size());
        for (size_t i = 0; i < v.size(); ++i) h[i] = f32_to_f16(v[i]);
        w.write(t.name, std::as_bytes(std::span<const uint16_t>(h)));
      } else {
        w.write(t.name, std::as_bytes(std::span<const float>(v)));
      }
    }
    w.finish();
    write_text(d / "config.json", R"({"architectures": ["LlamaForCausalLM"], "model_type": "llama",
 "hidden_size": 64, "intermediate_size": 96, "num_hidden_layers": 2, "num_attention_heads": 4,
 "num_key_value_heads": 2, "head_dim": 32, "vocab_size": 320, "max_position_embeddings": 256,
 "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "rope_scaling": {"rope_type": "linear", "factor": 2.0},
 "hidden_act": "silu", "tie_word_embeddings": true, "attention_bias": true, "mlp_bias": false,
 "bos_token_id": 1, "eos_token_id": 2, "torch_dtype": "float32"})");
    fs::copy_file(tokenizer, d / "tokenizer.json");
    return d;
  }

  std::vector<int32_t> pseudo_ids(int n, int vocab) const {
    std::vector<int32_t> ids(static_cast<size_t>(n));
    for (size_t i = 0; i < ids.size(); ++i) ids[i] = int32_t((i * 7919 + 13) % size_t(vocab));
    return ids;
  }

 private slots:
  void initTestCase() {
    QVERIFY(tmp_.isValid());
    ckpt_ = std::make_unique<Checkpoint>(Checkpoint::open(test::model_656k()));
    weights_ = std::make_unique<LlamaWeights>(*ckpt_);
    const Tokenizer tok = Tokenizer::load(*ckpt_->tokenizer_json());
    std::ifstream f(test::data_dir() / "tinystories-text" / "stories.txt");
    const std::string all((std::istreambuf_iterator<char>(f)), {});
    ids_ = tok.encode(all.substr(0, 8000));
    QVERIFY(ids_.size() > 600);
    rtn_ = calibrate_656k(settings(Method::rtn));
  }

  // formats.md §4.3 worked header: one KV general.architecture = "llama", one tensor
  // blk.0.attn_q.weight of HF shape [8, 64], type 39 — byte for byte; data at 128.
  void workedHeader() {
    GgufWriter w;
    w.add_string("general.architecture", "llama");
    w.add_tensor("blk.0.attn_q.weight", {8, 64}, GgmlType::mxfp4);
    const std::vector<uint8_t> want = hex_bytes(
        "47 47 55 46 03 00 00 00 01 00 00 00 00 00 00 00"
        "01 00 00 00 00 00 00 00 14 00 00 00 00 00 00 00"
        "67 65 6e 65 72 61 6c 2e 61 72 63 68 69 74 65 63"
        "74 75 72 65 08 00 00 00 05 00 00 00 00 00 00 00"
        "6c 6c 61 6d 61 13 00 00 00 00 00 00 00 62 6c 6b"
        "2e 30 2e 61 74 74 6e 5f 71 2e 77 65 69 67 68 74"
        "02 00 00 00 40 00 00 00 00 00 00 00 08 00 00 00"
        "00 00 00 00 27 00 00 00 00 00 00 00 00 00 00 00");
    QCOMPARE(want.size(), size_t(128));
    QCOMPARE(w.header(), want);
    QCOMPARE(w.tensor_bytes(0), uint64_t(272));  // 8 rows × 2 blocks × 17
    QCOMPARE(w.file_size(), uint64_t(128 + 288));
    // Streamed in two pieces; the file holds the header, the data at 128, zero padding.
    std::vector<std::byte> data(272);
    for (size_t i = 0; i < data.size(); ++i) data[i] = std::byte(i * 7 + 1);
    const fs::path p = dir() / "worked.gguf";
    w.open(p);
    w.write("blk.0.attn_q.weight", std::span(data).first(100));
    w.write("blk.0.attn_q.weight", std::span(data).subspan(100));
    w.finish();
    const RawGguf raw = read_raw(p);
    QCOMPARE(raw.bytes.size(), size_t(416));
    QVERIFY(std::memcmp(raw.bytes.data(), want.data(), 128) == 0);
    QVERIFY(std::memcmp(raw.bytes.data() + 128, data.data(), 272) == 0);
    for (size_t i = 400; i < 416; ++i) QCOMPARE(int(raw.bytes[i]), 0);
    // mxlens's reader agrees.
    const GgufFile g = GgufFile::open(p);
    QCOMPARE(g.get_string("general.architecture"), std::string("llama"));
    QCOMPARE(g.data_offset(), uint64_t(128));
    QCOMPARE(g.tensor("blk.0.attn_q.weight").dims, (std::vector<uint64_t>{64, 8}));
    QCOMPARE(g.mxfp4_blocks("blk.0.attn_q.weight").size(), size_t(16));
    // Writer misuse is an Error, not a bad file.
    GgufWriter bad;
    bad.add_tensor("a", {2, 32}, GgmlType::f32);
    bad.add_tensor("b", {32}, GgmlType::f32);
    QVERIFY_THROWS_EXCEPTION(Error, bad.add_tensor("a", {32}, GgmlType::f32));
    QVERIFY_THROWS_EXCEPTION(Error, bad.add_tensor("c", {2, 33}, GgmlType::mxfp4));
    QVERIFY_THROWS_EXCEPTION(Error, bad.add_tensor(std::string(64, 'x'), {32}, GgmlType::f32));
    QVERIFY_THROWS_EXCEPTION(Error, bad.add_u32("general.alignment", 24));
    bad.open(dir() / "bad.gguf");
    QVERIFY_THROWS_EXCEPTION(Error, bad.write("b", std::span(data).first(128)));
    bad.write("a", std::span(data).first(256));
    QVERIFY_THROWS_EXCEPTION(Error, bad.write("b", std::span(data).first(129)));
    QVERIFY_THROWS_EXCEPTION(Error, bad.finish());
  }

  // MXFP4 blocks (ggml layout, type 39) of formats.md §4.4 and algorithm.md §1.6, quantized by
  // mxlens, written as a GGUF tensor and read back raw.
  void mxfp4BlocksMatchWorkedVectors() {
    std::vector<float> x44(32, 0.0f);
    const std::vector<float>& x44c = x44;
    x44[0] = 1.0f, x44[1] = -0.5f, x44[16] = 3.0f, x44[17] = -6.0f;
    const std::vector<float> v1 = {
        0.1234f, -0.5678f, 0.9012f,  -1.3456f, 1.7890f,  -2.2222f, 0.0311f,  -0.0001f,
        0.4444f, -0.6667f, 2.9000f,  -3.1415f, 0.7071f,  -0.2500f, 1.1111f,  -1.9999f,
        0.3333f, -0.8765f, 5.4321f,  -0.0625f, 0.1500f,  -4.0500f, 2.5100f,  -0.3750f,
        0.0000f, 1.4142f,  -1.7321f, 0.6000f,  -0.9000f, 3.6000f,  -2.7000f, 0.0450f};
    const std::vector<float> v2 = {
        7.5f,   -0.25f,  0.75f, -1.25f, 1.75f, -2.5f, 3.5f,  -5.0f,  0.125f, 0.375f,  -0.625f,
        0.875f, 1.0f,    -1.5f, 2.0f,   -3.0f, 4.0f,  -6.0f, 6.5f,   -7.0f,  0.0f,    -0.0f,
        0.5f,   0.0625f, 2.25f, -2.75f, 3.25f, -4.5f, 5.5f,  -5.75f, 1.125f, -0.1875f};
    const std::vector<float> v3 = {
        0.0123f, -0.0568f, 0.0901f,  -0.1346f, 0.1789f,  -0.2222f, 0.0031f,  -0.0100f,
        0.0444f, -0.0667f, 0.2900f,  -0.3142f, 0.0707f,  -0.0250f, 0.1111f,  -0.2000f,
        0.0333f, -0.0877f, 41.3000f, -0.0063f, 0.0150f,  -0.4050f, 0.2510f,  -0.0375f,
        0.0000f, 0.1414f,  -0.1732f, 0.0600f,  -0.0900f, 0.3600f,  -0.2700f, 0.0045f};
    std::vector<float> rows;
    for (const std::vector<float>* v : {&x44c, &v1, &v2, &v3})
      rows.insert(rows.end(), v->begin(), v->end());
    rows.insert(rows.end(), 32, 0.0f);
    std::vector<float> ties = v2;  // ggml's tie rule on the same V2
    TensorScale ts;
    std::vector<Mxfp4Block> blocks = quantize_mxfp4(rows, QuantOptions{}, &ts);
    const std::vector<Mxfp4Block> tie_blocks =
        quantize_mxfp4(ties, QuantOptions{ScaleRule::ocp_floor, Rounding::ggml}, &ts);
    blocks.push_back(tie_blocks[0]);

    GgufWriter w;
    w.add_tensor("blocks", {6, 32}, GgmlType::mxfp4);
    const fs::path p = dir() / "vectors.gguf";
    w.open(p);
    w.write("blocks", std::as_bytes(std::span<const Mxfp4Block>(blocks)));
    w.finish();
    const RawGguf raw = read_raw(p);
    const uint8_t* data =
        reinterpret_cast<const uint8_t*>(raw.bytes.data()) + align32(raw.header_end);
    const char* want[] = {
        "7F 52 F9 00 00 00 00 00 00 00 00 00 00 00 00 00 00",  // formats.md §4.4
        "7f 10 a9 72 0b 04 ec 50 90 01 39 b5 1d a1 60 d2 0c",  // V1
        "7f 67 f0 72 fa 04 0c 16 0e 40 d1 59 e2 72 fb 24 0d",  // V2, RNE codes
        "82 00 00 70 00 00 00 00 00 00 00 00 00 00 00 00 00",  // V3
        "00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00",  // zero block
        "7f 67 f0 71 fa 03 0c 15 0e 40 d1 59 e2 72 fb 24 0d",  // V2, ggml ties
    };
    for (int b = 0; b < 6; ++b) {
      const std::vector<uint8_t> e = hex_bytes(want[b]);
      QVERIFY2(std::memcmp(data + 17 * b, e.data(), 17) == 0, want[b]);
    }
    const GgufFile g = GgufFile::open(p);
    QVERIFY(std::memcmp(g.mxfp4_blocks("blocks").data(), blocks.data(), 6 * 17) == 0);
  }

  // The 656K rtn export read by the parser above: every tensor's name, type, dims and offset
  // (aligned, increasing, in bounds, zero padding), and the key set with types and values.
  void independentParserOn656k() {
    ExportReport report;
    const fs::path p = export_gguf(*ckpt_, *rtn_, "rtn.gguf", &report);
    const RawGguf g = read_raw(p);
    const LlamaConfig& c = ckpt_->config();
    QCOMPARE(g.version, uint32_t(3));
    qInfo("656K rtn GGUF: %zu bytes, %zu keys, %zu tensors", g.bytes.size(), g.keys.size(),
          g.tensors.size());
    QCOMPARE(report.files.size(), size_t(1));
    QCOMPARE(report.files[0].bytes, uint64_t(g.bytes.size()));
    QCOMPARE(report.quantized_linears, 7 * c.num_layers);
    // Exact plan size.
    const QuantPlan plan = make_plan(*rtn_, c);
    QCOMPARE(plan_gguf_export(*ckpt_, *rtn_, plan).bytes, uint64_t(g.bytes.size()));

    // Keys: the exact set, each with its type.
    const std::map<std::string, uint32_t> want_types = {
        {"general.architecture", 8},
        {"general.name", 8},
        {"general.alignment", 4},
        {"general.quantization_version", 4},
        {"general.file_type", 4},
        {"llama.block_count", 4},
        {"llama.context_length", 4},
        {"llama.embedding_length", 4},
        {"llama.feed_forward_length", 4},
        {"llama.attention.head_count", 4},
        {"llama.attention.head_count_kv", 4},
        {"llama.rope.dimension_count", 4},
        {"llama.rope.freq_base", 6},
        {"llama.attention.layer_norm_rms_epsilon", 6},
        {"llama.vocab_size", 4},
        {"tokenizer.ggml.model", 8},
        {"tokenizer.ggml.tokens", 9},
        {"tokenizer.ggml.scores", 9},
        {"tokenizer.ggml.token_type", 9},
        {"tokenizer.ggml.bos_token_id", 4},
        {"tokenizer.ggml.eos_token_id", 4},
        {"tokenizer.ggml.unknown_token_id", 4},
        {"tokenizer.ggml.padding_token_id", 4},
        {"tokenizer.ggml.add_bos_token", 7},
        {"tokenizer.ggml.add_eos_token", 7},
        {"tokenizer.ggml.add_space_prefix", 7},
        {"mxlens.version", 8},
        {"mxlens.method", 8},
        {"mxlens.scheme", 8},
        {"mxlens.session_created_utc", 8},
        {"mxlens.model_weights_sha256", 8},
    };
    QCOMPARE(g.keys.size(), want_types.size());
    for (const auto& [key, type] : want_types) {
      QVERIFY2(g.kv.count(key), key.c_str());
      QVERIFY2(g.kv.at(key).type == type, key.c_str());
    }
    QCOMPARE(g.keys[0], std::string("general.architecture"));
    auto u = [&](const char* k) { return g.kv.at(k).u; };
    QCOMPARE(g.kv.at("general.architecture").s, std::string("llama"));
    QCOMPARE(g.kv.at("general.name").s, std::string("tinystories-656k"));
    QCOMPARE(u("general.alignment"), uint64_t(32));
    QCOMPARE(u("general.quantization_version"), uint64_t(2));
    QCOMPARE(u("general.file_type"), uint64_t(38));
    QCOMPARE(u("llama.block_count"), uint64_t(2));
    QCOMPARE(u("llama.context_length"), uint64_t(512));
    QCOMPARE(u("llama.embedding_length"), uint64_t(128));
    QCOMPARE(u("llama.feed_forward_length"), uint64_t(384));
    QCOMPARE(u("llama.attention.head_count"), uint64_t(8));
    QCOMPARE(u("llama.attention.head_count_kv"), uint64_t(4));
    QCOMPARE(u("llama.rope.dimension_count"), uint64_t(16));
    QCOMPARE(g.kv.at("llama.rope.freq_base").f, 10000.0);
    QCOMPARE(g.kv.at("llama.attention.layer_norm_rms_epsilon").f, double(1e-6f));
    QCOMPARE(u("llama.vocab_size"), uint64_t(2048));
    QCOMPARE(g.kv.at("mxlens.method").s, std::string("rtn"));
    // Tokenizer (SentencePiece-style file → llama model).
    QCOMPARE(g.kv.at("tokenizer.ggml.model").s, std::string("llama"));
    const RawValue& tokens = g.kv.at("tokenizer.ggml.tokens");
    const RawValue& types = g.kv.at("tokenizer.ggml.token_type");
    const RawValue& scores = g.kv.at("tokenizer.ggml.scores");
    QCOMPARE(tokens.elem, uint32_t(8));
    QCOMPARE(types.elem, uint32_t(5));
    QCOMPARE(scores.elem, uint32_t(6));
    QCOMPARE(tokens.items.size(), size_t(2048));
    QCOMPARE(types.items.size(), size_t(2048));
    QCOMPARE(scores.items.size(), size_t(2048));
    const Tokenizer tok = Tokenizer::load(*ckpt_->tokenizer_json());
    QCOMPARE(tokens.items[0].s, std::string("<unk>"));
    QCOMPARE(tokens.items[1].s, std::string("<|start_story|>"));
    QCOMPARE(tokens.items[2].s, std::string("<|end_story|>"));
    QCOMPARE(types.items[0].i, int64_t(2));  // unknown
    QCOMPARE(types.items[1].i, int64_t(3));  // control
    QCOMPARE(types.items[2].i, int64_t(3));
    for (int id = 3; id < 2048; ++id) {
      QCOMPARE(types.items[size_t(id)].i, int64_t(1));
      QCOMPARE(tokens.items[size_t(id)].s, std::string(tok.token(id)));
    }
    // The first merge "e ▁" makes "e▁": score −1; a single character scores 0.
    const int32_t e_end = *tok.token_to_id("e\xE2\x96\x81");
    QCOMPARE(scores.items[size_t(e_end)].f, -1.0);
    QCOMPARE(scores.items[size_t(*tok.token_to_id("e"))].f, 0.0);
    QCOMPARE(u("tokenizer.ggml.bos_token_id"), uint64_t(1));
    QCOMPARE(u("tokenizer.ggml.eos_token_id"), uint64_t(2));
    QCOMPARE(u("tokenizer.ggml.unknown_token_id"), uint64_t(0));
    QCOMPARE(u("tokenizer.ggml.padding_token_id"), uint64_t(0));
    QCOMPARE(u("tokenizer.ggml.add_bos_token"), uint64_t(1));
    QCOMPARE(u("tokenizer.ggml.add_eos_token"), uint64_t(0));
    QCOMPARE(u("tokenizer.ggml.add_space_prefix"), uint64_t(1));

    // Tensors: names, order, types and dims (innermost first).
    struct Want {
      std::string name;
      uint32_t type;
      std::vector<uint64_t> dims;
    };
    std::vector<Want> want = {{"token_embd.weight", 0, {128, 2048}}};
    for (int l = 0; l < 2; ++l) {
      const std::string b = "blk." + std::to_string(l) + ".";
      want.push_back({b + "attn_norm.weight", 0, {128}});
      want.push_back({b + "attn_q.weight", 39, {128, 128}});
      want.push_back({b + "attn_k.weight", 39, {128, 64}});
      want.push_back({b + "attn_v.weight", 39, {128, 64}});
      want.push_back({b + "attn_output.weight", 39, {128, 128}});
      want.push_back({b + "ffn_norm.weight", 0, {128}});
      want.push_back({b + "ffn_gate.weight", 39, {128, 384}});
      want.push_back({b + "ffn_up.weight", 39, {128, 384}});
      want.push_back({b + "ffn_down.weight", 39, {384, 128}});
    }
    want.push_back({"output_norm.weight", 0, {128}});
    QCOMPARE(g.tensors.size(), want.size());
    const uint64_t data_start = align32(g.header_end);
    for (size_t i = g.header_end; i < data_start; ++i) QCOMPARE(int(g.bytes[i]), 0);
    uint64_t expect_offset = 0;
    for (size_t i = 0; i < want.size(); ++i) {
      const RawTensor& t = g.tensors[i];
      QCOMPARE(t.name, want[i].name);
      QCOMPARE(t.type, want[i].type);
      QCOMPARE(t.dims, want[i].dims);
      QCOMPARE(t.offset % 32, uint64_t(0));
      QCOMPARE(t.offset, expect_offset);
      const uint64_t n = raw_tensor_bytes(t);
      QVERIFY(data_start + t.offset + n <= g.bytes.size());
      for (uint64_t k = t.offset + n; k < align32(t.offset + n); ++k)
        QCOMPARE(int(g.bytes[size_t(data_start + k)]), 0);
      expect_offset = align32(t.offset + n);
    }
    QCOMPARE(uint64_t(g.bytes.size()), data_start + expect_offset);
    // The notes say what llama.cpp does differently.
    bool weight_only = false, file_type = false;
    for (const std::string& n : report.notes) {
      weight_only |= n.find("8 bits") != std::string::npos;
      file_type |= n.find("MXFP4 MoE") != std::string::npos;
    }
    QVERIFY(weight_only && file_type);
  }

  // rtn: mxlens's reader gives back every linear's blocks, the norms and the embedding.
  void roundTripRtn() {
    const fs::path p = dir() / "rtn.gguf";
    if (!fs::exists(p)) export_gguf(*ckpt_, *rtn_, "rtn.gguf");
    check_round_trip(*ckpt_, *weights_, *rtn_, p);
    const GgufFile g = GgufFile::open(p);
    QCOMPARE(g.get_u32("general.file_type"), uint32_t(38));
    QCOMPARE(g.get_array_strings("tokenizer.ggml.tokens").size(), size_t(2048));
    QCOMPARE(g.get_array_i32("tokenizer.ggml.token_type")[0], int32_t(2));
    QCOMPARE(g.get_array_f32("tokenizer.ggml.scores").size(), size_t(2048));
    QCOMPARE(g.get_bool("tokenizer.ggml.add_bos_token"), true);
    QCOMPARE(g.find_u32("llama.attention.key_length"), std::optional<uint32_t>());
    QVERIFY_THROWS_EXCEPTION(Error, g.get_u32("general.architecture"));  // a string
    QVERIFY_THROWS_EXCEPTION(Error, g.get_u32("no.such.key"));
    QVERIFY_THROWS_EXCEPTION(Error, g.mxfp4_blocks("output_norm.weight"));  // F32
    QVERIFY_THROWS_EXCEPTION(Error, g.tensor("output.weight"));             // tied: absent
  }

  // smooth with GQA-tied scales (o folds into v): norms are γ/s, v/up rows carry 1/s.
  void roundTripSmoothTied() {
    const Session s = calibrate_656k(settings(Method::smooth));
    for (const LayerTransforms& lt : s.transforms)
      QCOMPARE(lt.site(Site::O).smooth_fold, SmoothFold::previous_rows);
    ExportReport report;
    const fs::path p = export_gguf(*ckpt_, s, "smooth.gguf", &report);
    check_round_trip(*ckpt_, *weights_, s, p);
    // The check above is not vacuous: the folded norm differs from γ.
    LayerWeights lw;
    weights_->load_layer(0, lw);
    const std::vector<float> an = GgufFile::open(p).read_f32("blk.0.attn_norm.weight");
    bool differs = false;
    for (size_t i = 0; i < an.size(); ++i) differs |= bits(an[i]) != bits(lw.input_norm[i]);
    QVERIFY(differs);
    bool folded_note = false;
    for (const std::string& n : report.notes) folded_note |= n.find("γ/s") != std::string::npos;
    QVERIFY(folded_note);
  }

  // The planted copy (norm mode, 4 channels × 8): rtn and tied smooth round-trip bit for bit,
  // and the smoothed export's norms undo the plant's channel scaling (γ/s is not γ there).
  void roundTripPlantedModel() {
    PlantOptions po;
    po.scale = 8;
    po.channels = 4;
    const fs::path planted = dir() / "planted";
    plant_outliers(*ckpt_, planted, po);
    const Checkpoint pc = Checkpoint::open(planted);
    const LlamaWeights pw(pc);
    for (Method m : {Method::rtn, Method::smooth}) {
      const Session s = calibrate_on(pc, pw, settings(m), ids_);
      const std::string name = "planted_" + std::string(method_name(m)) + ".gguf";
      const fs::path p = export_gguf(pc, s, name);
      check_round_trip(pc, pw, s, p);
      const GgufFile g = GgufFile::open(p);
      // The planted channels' norm weights: ×8 in rtn (as planted), divided back by s in smooth.
      LayerWeights lw;
      pw.load_layer(0, lw);
      const std::vector<float> an = g.read_f32("blk.0.attn_norm.weight");
      float amax_file = 0, amax_ckpt = 0;
      for (size_t i = 0; i < an.size(); ++i) {
        amax_file = std::max(amax_file, std::abs(an[i]));
        amax_ckpt = std::max(amax_ckpt, std::abs(lw.input_norm[i]));
      }
      qInfo("%s: %llu bytes, max |attn_norm| %.4g in the file, %.4g in the planted checkpoint",
            name.c_str(), static_cast<unsigned long long>(g.file_size()), double(amax_file),
            double(amax_ckpt));
      if (m == Method::rtn)
        QCOMPARE(amax_file, amax_ckpt);
      else
        QVERIFY(amax_file < amax_ckpt);
    }
  }

  // Synthetic checkpoints: BF16 embeddings copied as BF16, llama3 rope_freqs, q/k biases
  // permuted, untied output.weight, vocabulary padded to the model's vocab_size.
  void syntheticModels() {
    const fs::path tokjson = tiny_tokenizer();
    for (const char* preset : {"tiny-llama3", "tiny-qwen2", "tiny"}) {
      SyntheticOptions so;
      so.preset = preset;
      so.dtype = DType::BF16;
      so.tokenizer = tokjson;
      const fs::path src = dir() / (std::string("synth_") + preset);
      write_synthetic_checkpoint(src, so);
      const Checkpoint ck = Checkpoint::open(src);
      const LlamaWeights w(ck);
      const LlamaConfig& c = ck.config();
      const Session s = calibrate_on(ck, w, settings(Method::rtn), pseudo_ids(2048, 262));
      ExportReport report;
      const fs::path p = export_gguf(ck, s, std::string(preset) + ".gguf", &report);
      check_round_trip(ck, w, s, p);
      const GgufFile g = GgufFile::open(p);
      QCOMPARE(g.file_size(), plan_gguf_export(ck, s, make_plan(s, c)).bytes);
      QCOMPARE(g.tensor("token_embd.weight").type, GgmlType::bf16);
      // Vocabulary: 262 tokenizer ids, padded to 320.
      const std::vector<std::string> tokens = g.get_array_strings("tokenizer.ggml.tokens");
      const std::vector<int32_t> types = g.get_array_i32("tokenizer.ggml.token_type");
      QCOMPARE(tokens.size(), size_t(c.vocab_size));
      QCOMPARE(tokens[3], std::string("<0x00>"));
      QCOMPARE(types[3], int32_t(6));
      QCOMPARE(types[261], int32_t(1));
      QCOMPARE(tokens[300], std::string("[PAD300]"));
      QCOMPARE(types[300], int32_t(5));
      QCOMPARE(g.get_array_f32("tokenizer.ggml.scores")[261], -1.0f);
      bool pad_note = false;
      for (const std::string& n : report.notes) pad_note |= n.find("[PAD") != std::string::npos;
      QVERIFY(pad_note);
      if (std::string(preset) == "tiny-llama3") {
        // Divisors: inv_freq / divisor = the scaled frequency of rope_inv_freq, all three
        // branches of the blend present.
        const std::vector<float> f = g.read_f32("rope_freqs.weight");
        const std::vector<double> scaled = rope_inv_freq(c);
        QCOMPARE(f.size(), size_t(c.head_dim / 2));
        std::set<int> kinds;
        for (size_t i = 0; i < f.size(); ++i) {
          const double base = std::pow(c.rope_theta, -2.0 * double(i) / c.head_dim);
          QVERIFY(std::abs(base / f[i] - scaled[i]) <= 1e-6 * scaled[i]);
          kinds.insert(f[i] == 1.0f ? 0 : f[i] == float(c.rope_scaling.factor) ? 2 : 1);
        }
        QCOMPARE(kinds.size(), size_t(3));
      } else {
        QVERIFY(!g.find_tensor("rope_freqs.weight"));
      }
      if (std::string(preset) == "tiny-qwen2") {
        QVERIFY(g.find_tensor("blk.1.attn_k.bias"));
        bool arch_note = false;
        for (const std::string& n : report.notes) arch_note |= n.find("qwen2") != std::string::npos;
        QVERIFY(arch_note);
      }
    }
  }

  // head_dim ≠ hidden/heads: key_length/value_length written, q/k rows permuted with
  // head_dim 32; linear RoPE scaling as keys; biases of q/k/v/o; F16 embedding kept F16.
  void headDimModel() {
    const fs::path src = write_head_dim_model(tiny_tokenizer());
    const Checkpoint ck = Checkpoint::open(src);
    QCOMPARE(ck.config().head_dim, 32);
    const LlamaWeights w(ck);
    const Session s = calibrate_on(ck, w, settings(Method::rtn), pseudo_ids(2048, 262));
    const fs::path p = export_gguf(ck, s, "hd32.gguf");
    check_round_trip(ck, w, s, p);
    const GgufFile g = GgufFile::open(p);
    QCOMPARE(g.get_u32("llama.attention.key_length"), uint32_t(32));
    QCOMPARE(g.get_u32("llama.attention.value_length"), uint32_t(32));
    QCOMPARE(g.get_u32("llama.rope.dimension_count"), uint32_t(32));
    QCOMPARE(g.get_string("llama.rope.scaling.type"), std::string("linear"));
    QCOMPARE(g.get_f32("llama.rope.scaling.factor"), 2.0f);
    QCOMPARE(g.tensor("token_embd.weight").type, GgmlType::f16);
    QCOMPARE(g.tensor("blk.0.attn_q.weight").shape(), (std::vector<uint64_t>{128, 64}));
    QCOMPARE(g.tensor("blk.1.attn_output.bias").shape(), std::vector<uint64_t>{64});
    QCOMPARE(g.file_size(), plan_gguf_export(ck, s, make_plan(s, ck.config())).bytes);
  }

  // W4A16 with the rceil rule and ggml rounding: exported bit for bit, with the notes that say
  // how llama.cpp differs.
  void schemeVariants() {
    CalibrationSettings st = settings(Method::rtn);
    st.scheme = QuantScheme::make(QuantMode::w4a16, QuantFormat::mxfp4,
                                  QuantOptions{ScaleRule::rceil, Rounding::ggml});
    const Session s = calibrate_656k(st);
    ExportReport report;
    const fs::path p = export_gguf(*ckpt_, s, "w4a16_rceil.gguf", &report);
    check_round_trip(*ckpt_, *weights_, s, p);
    bool w4a16 = false, rceil = false, rounding = false;
    for (const std::string& n : report.notes) {
      w4a16 |= n.find("W4A16") != std::string::npos && n.find("W4A4") == std::string::npos;
      rceil |= n.find("rceil") != std::string::npos;
      rounding |= n.find("rounding") != std::string::npos;
    }
    QVERIFY(w4a16 && rceil && rounding);
  }

  // tokenizer.json → llama.cpp vocabularies on the two real shared tokenizers.
  void vocabularies() {
    LlamaConfig c;
    c.vocab_size = 128256;
    const GgufVocab l3 = gguf_vocab(test::data_dir() / "tokenizers/llama3/tokenizer.json", c);
    QCOMPARE(l3.model, std::string("gpt2"));
    QCOMPARE(l3.pre, std::string("llama-bpe"));
    QCOMPARE(l3.tokens.size(), size_t(128256));
    QCOMPARE(l3.merges.size(), size_t(280147));
    QCOMPARE(l3.merges[0], std::string("\xC4\xA0 \xC4\xA0"));  // "Ġ Ġ"
    QCOMPARE(l3.tokens[128000], std::string("<|begin_of_text|>"));
    QCOMPARE(l3.token_types[128000], int32_t(3));
    QCOMPARE(l3.token_types[0], int32_t(1));
    QVERIFY(l3.scores.empty());
    QCOMPARE(l3.bos, std::optional<uint32_t>(128000));
    QVERIFY(l3.eos && (*l3.eos == 128001 || *l3.eos == 128009));
    QCOMPARE(l3.add_bos, false);  // its post-processor is a bare ByteLevel
    QVERIFY(!l3.add_space_prefix);

    c.vocab_size = 32000;
    const fs::path spm = test::data_dir() / "tokenizers/spm-bpe-32k/tokenizer.json";
    const GgufVocab sp = gguf_vocab(spm, c);
    QCOMPARE(sp.model, std::string("llama"));
    QVERIFY(sp.pre.empty() && sp.merges.empty());
    QCOMPARE(sp.tokens.size(), size_t(32000));
    QCOMPARE(sp.token_types[0], int32_t(2));
    QCOMPARE(sp.token_types[1], int32_t(3));
    QCOMPARE(sp.tokens[3], std::string("<0x00>"));
    QCOMPARE(sp.token_types[3], int32_t(6));
    QCOMPARE(sp.token_types[258], int32_t(6));
    const Tokenizer tok = Tokenizer::load(spm);
    QCOMPARE(sp.scores[size_t(*tok.token_to_id("\xE2\x96\x81t"))], -1.0f);  // merge 0 "▁ t"
    QCOMPARE(sp.scores[size_t(*tok.token_to_id("in"))], -2.0f);             // merge 1 "i n"
    QCOMPARE(sp.bos, std::optional<uint32_t>(1));
    QCOMPARE(sp.eos, std::optional<uint32_t>(2));
    QCOMPARE(sp.unk, std::optional<uint32_t>(0));
    QCOMPARE(sp.add_bos, true);
    QCOMPARE(sp.add_space_prefix, std::optional<bool>(true));
    // A model with more embedding rows than ids pads; one with fewer is refused.
    c.vocab_size = 32016;
    const GgufVocab padded = gguf_vocab(spm, c);
    QCOMPARE(padded.tokens[32010], std::string("[PAD32010]"));
    QCOMPARE(padded.token_types[32010], int32_t(5));
    c.vocab_size = 31999;
    QVERIFY_THROWS_EXCEPTION(Error, gguf_vocab(spm, c));
    // A padding name that is also a real token would give llama.cpp the same text twice.
    c.vocab_size = 320;
    const fs::path clash = tiny_tokenizer(", \"[PAD300]\": 262", "clash.json");
    QCOMPARE(gguf_vocab(tiny_tokenizer(), c).tokens[300], std::string("[PAD300]"));
    try {
      gguf_vocab(clash, c);
      QFAIL("a duplicate token text was accepted");
    } catch (const Error& e) {
      QVERIFY2(std::string(e.what()).find("262 and 300") != std::string::npos, e.what());
    }
  }

  void refusals() {
    // A rotation at any site: named with the site and "rotation".
    const Session dq = calibrate_656k(settings(Method::duquantpp));
    expect_refusal(*ckpt_, dq, {"layer 0 qkv", "rotation", "--format fp_quant"});
    // Online smoothing of o (GQA, scales not tied).
    CalibrationSettings online = settings(Method::smooth);
    online.smoothing.tie_gqa = false;
    expect_refusal(*ckpt_, calibrate_656k(online), {"layer 0 o", "online", "--smooth-gqa tied"});
    // The fpquant rule's 4/3 and dqv2_log8's log code have no slot in ggml's block.
    Session fq = *rtn_;
    fq.settings.scheme = QuantScheme::make(QuantMode::w4a4, QuantFormat::mxfp4,
                                           QuantOptions{ScaleRule::fpquant, Rounding::rne});
    expect_refusal(*ckpt_, fq, {"fpquant", "4/3"});
    Session log8 = *rtn_;
    log8.settings.scheme = QuantScheme::make(QuantMode::w4a4, QuantFormat::mxfp4,
                                             QuantOptions{ScaleRule::dqv2_log8, Rounding::rne});
    expect_refusal(*ckpt_, log8, {"dqv2_log8"});
    // Through the dispatcher too, and nothing is written.
    QVERIFY_THROWS_EXCEPTION(Error, export_gguf(*ckpt_, dq, "refused.gguf"));
    QVERIFY(!fs::exists(dir() / "refused.gguf"));
    // stories260K: the 172-wide down site is not whole MXFP4 blocks.
    {
      const Checkpoint ck = Checkpoint::open(test::model_260k());
      const LlamaWeights w(ck);
      const Session s = calibrate_on(ck, w, settings(Method::rtn), pseudo_ids(2048, 512));
      expect_refusal(ck, s, {"layer 0 down", "172", "32"});
    }
    // No tokenizer.json: llama.cpp needs the vocabulary.
    {
      SyntheticOptions so;
      so.preset = "tiny";
      const fs::path src = dir() / "synth_no_tok";
      write_synthetic_checkpoint(src, so);
      const Checkpoint ck = Checkpoint::open(src);
      const LlamaWeights w(ck);
      const Session s = calibrate_on(ck, w, settings(Method::rtn), pseudo_ids(2048, 320));
      expect_refusal(ck, s, {"tokenizer.json"});
    }
  }

  // Cancelled after the first layer: Cancelled, and the staged output leaves nothing.
  void cancelLeavesNothing() {
    const fs::path parent = dir() / "cancel";
    fs::create_directories(parent);
    std::atomic<bool> cancel{false};
    std::vector<std::string> stages;
    Progress p(
        [&](double, std::string_view stage) {
          stages.emplace_back(stage);
          if (stage == "blk.1.attn_norm.weight") cancel = true;
        },
        &cancel);
    ExportOptions o;
    o.format = ExportFormat::gguf;
    QVERIFY_THROWS_EXCEPTION(Cancelled,
                             export_checkpoint(*ckpt_, *rtn_, "s.h5", parent / "out.gguf", o, p));
    QVERIFY(fs::is_empty(parent));
    QVERIFY(std::find(stages.begin(), stages.end(), "blk.0.ffn_down.weight") != stages.end());
  }

  // The reader on broken files: an Error naming the file, never a crash.
  void readerRejectsBrokenFiles() {
    // A small valid file with every value type, a nested array and two tensors.
    GgufWriter w;
    w.add_string("general.architecture", "llama");
    w.add("t.u8", GgufValue::u8(1));
    w.add("t.i8", GgufValue::i8(-1));
    w.add("t.u16", GgufValue::u16(2));
    w.add("t.i16", GgufValue::i16(-2));
    w.add_i32("t.i32", -3);
    w.add_u64("t.u64", 4);
    w.add("t.i64", GgufValue::i64(-4));
    w.add("t.f64", GgufValue::f64(0.5));
    w.add_bool("t.bool", true);
    GgufArray nested{GgufType::array, {GgufValue::strings({"a", "bc"}), GgufValue::strings({})}};
    w.add("t.nested", GgufValue::array(nested));
    w.add_tensor("w", {2, 32}, GgmlType::mxfp4);
    w.add_tensor("n", {3}, GgmlType::f32);
    const fs::path good = dir() / "small.gguf";
    w.open(good);
    std::vector<std::byte> zeros(64);
    w.write("w", std::span(zeros).first(34));
    w.write("n", std::span(zeros).first(12));
    w.finish();
    std::string bytes;
    {
      std::ifstream in(good, std::ios::binary);
      bytes.assign(std::istreambuf_iterator<char>(in), {});
    }
    const GgufFile g = GgufFile::open(good);
    QCOMPARE(g.kvs().size(), size_t(11));
    const GgufArray* a = g.find("t.nested")->get_if<GgufArray>();
    QVERIFY(a && a->items.size() == 2 && a->items[0].get_if<GgufArray>()->items.size() == 2);
    QCOMPARE(*a->items[0].get_if<GgufArray>()->items[1].get_if<std::string>(), std::string("bc"));
    QCOMPARE(*g.find("t.f64")->get_if<double>(), 0.5);

    const fs::path broken = dir() / "broken.gguf";
    auto expect_error = [&](const std::string& b, const char* needle, const char* what) {
      write_text(broken, b);
      try {
        GgufFile::open(broken);
        QFAIL(what);
      } catch (const Error& e) {
        QCOMPARE(QString::fromStdString(e.source()), QString::fromStdString(broken.string()));
        QVERIFY2(std::string(e.problem()).find(needle) != std::string::npos, e.what());
      }
    };
    // Every truncation that cuts into the header or a tensor's data (like llama.cpp, the
    // reader does not insist on the zero padding after the last tensor).
    const size_t data_end = size_t(g.data_offset() + g.tensor("n").offset + 12);
    QCOMPARE(data_end + 20, bytes.size());
    for (size_t n = 0; n < bytes.size(); ++n) {
      write_text(broken, bytes.substr(0, n));
      if (n < data_end)
        QVERIFY_THROWS_EXCEPTION(Error, GgufFile::open(broken));
      else
        QCOMPARE(GgufFile::open(broken).tensor("n").bytes, uint64_t(12));
    }
    auto patched = [&](size_t at, const void* v, size_t n) {
      std::string b = bytes;
      std::memcpy(b.data() + at, v, n);
      return b;
    };
    const uint32_t v2 = 2, bad_type = 13, five = 5, q4 = 2, two = 2;
    const uint64_t huge = uint64_t(1) << 60, odd = 16, far = 4096;
    expect_error(patched(0, "GGUG", 4), "not a GGUF", "bad magic");
    expect_error(patched(4, &v2, 4), "version 2", "version 2");
    expect_error(patched(8, &huge, 8), "tensors", "tensor count");
    expect_error(patched(16, &huge, 8), "metadata", "kv count");
    expect_error(patched(24, &huge, 8), "claims", "key length");
    // First key "general.architecture" (20 bytes) at 32: its type at 52, string length at 56.
    expect_error(patched(52, &bad_type, 4), "value type 13", "value type");
    expect_error(patched(56, &huge, 8), "truncated", "string length");
    // The tensor infos follow the metadata; find them by name.
    const size_t w_info = bytes.find(std::string("\x01\0\0\0\0\0\0\0w", 9)) + 9;
    const size_t n_info = bytes.find(std::string("\x01\0\0\0\0\0\0\0n", 9)) + 9;
    expect_error(patched(w_info, &five, 4), "5 dimensions", "dims");
    expect_error(patched(w_info + 4 + 16, &q4, 4), "ggml type 2", "ggml type");
    const uint64_t inner = 33;
    expect_error(patched(w_info + 4, &inner, 8), "multiple", "block multiple");
    expect_error(patched(n_info + 4 + 8 + 4, &odd, 8), "not a multiple of the alignment",
                 "alignment");
    expect_error(patched(n_info + 4 + 8 + 4, &far, 8), "past the end", "out of bounds");
    const uint64_t zero = 0;
    expect_error(patched(n_info + 4 + 8 + 4, &zero, 8), "overlap", "overlap");
    {
      std::string b = bytes;
      b[n_info - 1] = 'w';  // tensor "n" renamed "w"
      expect_error(b, "twice", "duplicate tensor");
    }
    {
      std::string b = bytes;
      const size_t k = b.find("t.i8");
      b[k + 2] = 'u';  // "t.i8" → "t.u8", same length
      expect_error(b, "twice", "duplicate key");
    }
    {
      const size_t k = bytes.find("t.bool") + 6 + 4;  // after the key and its type
      expect_error(patched(k, &two, 1), "bool", "bool value");
    }
    // Nesting deeper than the reader allows.
    {
      GgufArray deep{GgufType::u8, {GgufValue::u8(1)}};
      for (int i = 0; i < 10; ++i) deep = GgufArray{GgufType::array, {GgufValue::array(deep)}};
      GgufWriter dw;
      dw.add("deep", GgufValue::array(deep));
      dw.open(broken);
      dw.finish();
      QVERIFY_THROWS_EXCEPTION(Error, GgufFile::open(broken));
    }
    // general.alignment of the wrong type or not a power of two (the writer refuses both, so
    // the bytes are patched).
    {
      GgufWriter aw;
      aw.add_u32("general.alignment", 32);
      aw.open(broken);
      aw.finish();
      std::string b;
      {
        std::ifstream in(broken, std::ios::binary);
        b.assign(std::istreambuf_iterator<char>(in), {});
      }
      QCOMPARE(GgufFile::open(broken).alignment(), uint32_t(32));
      const size_t type_at = 24 + 8 + 17;  // after the counts, the key's length and its bytes
      std::string t = b;
      t[type_at] = 5;  // i32
      expect_error(t, "not u32", "alignment type");
      std::string v = b;
      v[type_at + 4] = 24;
      expect_error(v, "power of two", "alignment value");
    }
    // A truncated real export.
    const fs::path rtn = dir() / "rtn.gguf";
    if (!fs::exists(rtn)) export_gguf(*ckpt_, *rtn_, "rtn.gguf");
    std::string full;
    {
      std::ifstream in(rtn, std::ios::binary);
      full.assign(std::istreambuf_iterator<char>(in), {});
    }
    for (size_t n : {size_t(100), full.size() / 20, full.size() / 2, full.size() - 1})
      expect_error(full.substr(0, n), "truncated", "truncated export");
  }
};

QTEST_GUILESS_MAIN(TestGgufExport)
#include "test_gguf_export.moc"
