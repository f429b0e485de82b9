// GGUF export (formats.md §4.3): one file llama.cpp loads as a "llama" model. What it holds:
//   - keys: general.* (file_type 38, quantization_version 2, alignment 32), llama.* from the
//     config, tokenizer.ggml.* from tokenizer.json (gguf_vocab.h), mxlens.* provenance;
//   - rope_freqs.weight (F32 [D/2], llama3 RoPE scaling only): per-frequency divisors;
//   - token_embd.weight / output.weight (omitted when tied) as stored (F32, F16 or BF16 bytes
//     copied, no rounding);
//   - per layer: attn_norm / ffn_norm F32 (γ/s where smoothing folds into the norm), the seven
//     linears as MXFP4 (type 39) blocks from export_weight_blocks — exactly the weights the
//     session's forward multiplies with — q/k rows (and biases) permuted to llama.cpp's RoPE
//     pair order, biases F32;
//   - output_norm.weight F32.
// Layers are loaded one at a time; the embeddings are written from the mapped checkpoint.
#include <algorithm>
#include <cmath>
#include <memory>
#include <numbers>
#include <span>
#include <string>
#include <vector>

#include "core/export/export_weights.h"
#include "core/export/gguf_export.h"
#include "core/export/gguf_vocab.h"
#include "core/export/gguf_writer.h"
#include "core/util/error.h"

namespace fs = std::filesystem;

namespace mxlens {

namespace {

// llama.cpp's only MXFP4 file type (LLAMA_FTYPE_MOSTLY_MXFP4_MOE).
constexpr uint32_t kFileTypeMxfp4 = 38;
constexpr uint32_t kQuantizationVersion = 2;

std::string where(int layer, Site site) {
  return "layer " + std::to_string(layer) + " " + std::string(site_name(site));
}

std::string describe_rotation(const ChannelTransform& t) {
  std::string out;
  for (const ChannelTransform::Step& step : t.steps()) {
    if (!out.empty()) out += " and ";
    switch (step.kind) {
      case ChannelTransform::StepKind::BlockRotation: {
        const std::string b = std::to_string(step.rotation.rows());
        out += "a " + b + "×" + b + " block rotation";
        break;
      }
      case ChannelTransform::StepKind::Permutation:
        out += "a channel permutation";
        break;
      case ChannelTransform::StepKind::FullHadamard:
        out += "a full-size Hadamard";
        break;
    }
  }
  return out;
}

// Everything a weight-only MXFP4 GGUF cannot hold exactly (gguf_export.h).
void check_expressible(const Checkpoint& ckpt, const QuantPlan& plan) {
  const QuantScheme& scheme = plan.scheme();
  check_exportable_scheme(scheme, "gguf");
  if (scheme.weights.options.scale_rule == ScaleRule::fpquant)
    throw Error("gguf",
                "the session's weights use the fpquant scale rule (elements scaled by "
                "2^k·4/3); a GGUF MXFP4 block holds only the E8M0 exponent and llama.cpp has no "
                "per-tensor factor for the 4/3. Recalibrate with --scale-rule ocp_floor or "
                "rceil, or use --format fp_quant");
  if (ckpt.fp_quant())
    throw Error(ckpt.dir().string(),
                "is an fp_quant checkpoint (rotated, quantized weights); export to GGUF from "
                "the unquantized model the session was made for");
  const LlamaConfig& cfg = plan.config();
  const std::string_view rs = cfg.rope_scaling.type;
  if (rs != "default" && rs != "llama3" && rs != "linear")
    throw Error("gguf", "RoPE scaling '" + std::string(rs) + "' has no GGUF mapping in mxlens");
  for (int l = 0; l < cfg.num_layers; ++l)
    for (Site site : kAllSites) {
      const SiteTransform& t = plan.site(l, site);
      if (t.has_rotation())
        throw Error("gguf", where(l, site) + ": the session rotates this site's input (" +
                                describe_rotation(t.rotation) +
                                "); llama.cpp has no online activation rotation, and the "
                                "rotation cannot be folded into neighbouring weights. Use "
                                "--format fp_quant, or a method without rotation (rtn, smooth)");
      if (t.has_smoothing() && t.smooth_fold == SmoothFold::online)
        throw Error("gguf", where(l, site) + ": smoothing divides o_proj's input online (GQA: " +
                                std::to_string(cfg.num_heads) + " query heads share " +
                                std::to_string(cfg.num_kv_heads) +
                                " KV heads), and GGUF has no slot for a per-channel division. "
                                "Recalibrate with --smooth-gqa tied (s equal per KV group, "
                                "folded into v_proj rows), or use a method without smoothing "
                                "(rtn)");
      if (t.has_smoothing() && site == Site::Down && cfg.mlp_bias)
        throw Error("gguf", where(l, site) +
                                ": smoothing folded into up_proj rows would also need its bias "
                                "divided, which mxlens does not do (mlp_bias)");
      const int channels = plan.site_channels(site);
      if (channels % Mxfp4Block::kSize != 0)
        throw Error("gguf", where(l, site) + ": " + std::to_string(channels) +
                                " input channels are not a multiple of the 32-element MXFP4 "
                                "block; llama.cpp's MXFP4 rows must be whole blocks");
    }
}

GgmlType ggml_type_of(const TensorRef& t) {
  switch (t.dtype) {
    case DType::F32:
      return GgmlType::f32;
    case DType::F16:
      return GgmlType::f16;
    case DType::BF16:
      return GgmlType::bf16;
    default:
      throw Error(t.shard->string(), "tensor " + t.name + " is " + dtype_name(t.dtype) +
                                         "; GGUF export copies F32, F16 or BF16 embeddings");
  }
}

std::string gguf_linear_name(int layer, Linear which) {
  static constexpr const char* names[] = {"attn_q",   "attn_k", "attn_v",  "attn_output",
                                          "ffn_gate", "ffn_up", "ffn_down"};
  return "blk." + std::to_string(layer) + "." + names[size_t(which)];
}

// llama3 RoPE scaling as llama.cpp takes it: theta_i = pos · inv_freq_i / factor_i, the
// divisors of formats.md §2.3's blend (same branches as rope_inv_freq).
std::vector<float> rope_freq_factors(const LlamaConfig& cfg) {
  const RopeScaling& s = cfg.rope_scaling;
  const int half = cfg.head_dim / 2;
  const double old = static_cast<double>(s.original_max_position_embeddings);
  const double low_wl = old / s.low_freq_factor;
  const double high_wl = old / s.high_freq_factor;
  std::vector<float> out(static_cast<size_t>(half));
  for (int i = 0; i < half; ++i) {
    const double f = std::pow(cfg.rope_theta, -2.0 * i / static_cast<double>(cfg.head_dim));
    const double wl = 2.0 * std::numbers::pi / f;
    double d = 1.0;
    if (wl < high_wl) {
      d = 1.0;
    } else if (wl > low_wl) {
      d = s.factor;
    } else {
      const double smooth =
          (old / wl - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
      d = 1.0 / ((1.0 - smooth) / s.factor + smooth);
    }
    out[size_t(i)] = static_cast<float>(d);
  }
  return out;
}

// HF rotates (i, i + D/2) of a head, llama.cpp (2i, 2i+1): row h·D + half·D/2 + i moves to
// h·D + 2i + half (formats.md §4.3). Rows are whole output channels of `row_len` elements.
template <class T>
void permute_qk_rows(std::vector<T>& v, int64_t rows, int64_t row_len, int heads,
                     const std::string& what) {
  if (heads <= 0 || rows % heads != 0 || (rows / heads) % 2 != 0)
    throw Error("gguf", what + ": " + std::to_string(rows) + " rows do not split into " +
                            std::to_string(heads) + " heads of an even head_dim");
  const int64_t d = rows / heads, half = d / 2;
  std::vector<T> out(v.size());
  for (int64_t h = 0; h < heads; ++h)
    for (int64_t s = 0; s < 2; ++s)
      for (int64_t i = 0; i < half; ++i) {
        const int64_t src = h * d + s * half + i;
        const int64_t dst = h * d + 2 * i + s;
        std::copy_n(v.begin() + src * row_len, row_len, out.begin() + dst * row_len);
      }
  v.swap(out);
}

enum class OpKind { rope_freqs, embedding, attn_norm, ffn_norm, linear, bias, output_norm };

struct Op {
  OpKind kind;
  std::string name;  // GGUF tensor name
  int layer = -1;
  Linear which = Linear::Q;
  std::string source;  // checkpoint tensor (embedding / output)
};

Op make_op(OpKind kind, std::string name, int layer = -1, Linear which = Linear::Q,
           std::string source = {}) {
  return Op{kind, std::move(name), layer, which, std::move(source)};
}

struct Layout {
  std::unique_ptr<GgufWriter> writer = std::make_unique<GgufWriter>();
  std::vector<Op> ops;
  std::vector<std::string> notes;
};

std::vector<std::string> notes_for(const QuantPlan& plan, GgmlType embedding_type) {
  std::vector<std::string> notes;
  const QuantScheme& sch = plan.scheme();
  const LlamaConfig& cfg = plan.config();
  if (sch.activations.enabled())
    notes.push_back(
        "weight-only deployment: llama.cpp quantizes activations to 8 bits before its MXFP4 "
        "products, so the session's W4A4 results are not reproduced (expect numbers close to "
        "W4A16).");
  else
    notes.push_back(
        "llama.cpp quantizes activations to 8 bits before its MXFP4 products, so results are "
        "close to, not identical with, the session's W4A16 numbers.");
  if (sch.weights.options.scale_rule == ScaleRule::rceil)
    notes.push_back(
        "the weights use the rceil scale rule; its scale bytes are plain E8M0 exponents and "
        "load as such.");
  notes.push_back(
      "general.file_type is 38, llama.cpp's only MXFP4 file type, which it labels "
      "\"MXFP4 MoE\" (it holds dense models too); norms are F32 and the embeddings "
      "keep the checkpoint's " +
      std::string(to_string(embedding_type)) + ".");
  if (sch.weights.options.rounding != Rounding::rne ||
      (sch.activations.enabled() && sch.activations.options.rounding != Rounding::rne))
    notes.push_back(
        "the session's non-default element rounding only affects mxlens's activations "
        "(llama.cpp quantizes them its own way); the weight codes are stored as chosen.");
  bool smoothed = false;
  for (int l = 0; l < cfg.num_layers; ++l)
    for (Site site : kAllSites) smoothed |= plan.site(l, site).has_smoothing();
  if (smoothed)
    notes.push_back(
        "smoothing is folded: γ/s into attn_norm and ffn_norm, 1/s into attn_v and ffn_up rows, "
        "s into the consuming weights' columns (already in the MXFP4 blocks).");
  if (cfg.model_type != "llama")
    notes.push_back("the " + cfg.model_type +
                    " model is written with llama.cpp's llama architecture, which computes the "
                    "same function (q/k rows permuted for its RoPE, biases kept).");
  return notes;
}

std::string model_name(const Checkpoint& ckpt) {
  fs::path p = ckpt.dir().lexically_normal();
  if (p.filename().empty()) p = p.parent_path();
  const std::string n = p.filename().string();
  return n.empty() ? std::string("model") : n;
}

Layout make_layout(const Checkpoint& ckpt, const Session& session, const QuantPlan& plan) {
  check_expressible(ckpt, plan);
  const std::optional<fs::path> tokenizer = ckpt.tokenizer_json();
  if (!tokenizer)
    throw Error(ckpt.dir().string(),
                "has no tokenizer.json; a GGUF file must carry the vocabulary (llama.cpp cannot "
                "run without one). Add the model's tokenizer.json to the checkpoint directory");
  const LlamaConfig& cfg = ckpt.config();
  const GgufVocab vocab = gguf_vocab(*tokenizer, cfg);

  Layout lay;
  GgufWriter& w = *lay.writer;
  w.add_string("general.architecture", "llama");
  w.add_string("general.name", model_name(ckpt));
  w.add_u32("general.alignment", kGgufDefaultAlignment);
  w.add_u32("general.quantization_version", kQuantizationVersion);
  w.add_u32("general.file_type", kFileTypeMxfp4);
  w.add_u32("llama.block_count", uint32_t(cfg.num_layers));
  w.add_u32("llama.context_length", uint32_t(cfg.max_position_embeddings));
  w.add_u32("llama.embedding_length", uint32_t(cfg.hidden_size));
  w.add_u32("llama.feed_forward_length", uint32_t(cfg.intermediate_size));
  w.add_u32("llama.attention.head_count", uint32_t(cfg.num_heads));
  w.add_u32("llama.attention.head_count_kv", uint32_t(cfg.num_kv_heads));
  if (int64_t(cfg.head_dim) * cfg.num_heads != cfg.hidden_size) {
    w.add_u32("llama.attention.key_length", uint32_t(cfg.head_dim));
    w.add_u32("llama.attention.value_length", uint32_t(cfg.head_dim));
  }
  w.add_u32("llama.rope.dimension_count", uint32_t(cfg.head_dim));
  w.add_f32("llama.rope.freq_base", float(cfg.rope_theta));
  if (cfg.rope_scaling.type == "linear") {
    w.add_string("llama.rope.scaling.type", "linear");
    w.add_f32("llama.rope.scaling.factor", float(cfg.rope_scaling.factor));
  }
  w.add_f32("llama.attention.layer_norm_rms_epsilon", float(cfg.rms_norm_eps));
  w.add_u32("llama.vocab_size", uint32_t(cfg.vocab_size));
  add_vocab_keys(w, vocab);
  w.add_string("mxlens.version", MXLENS_VERSION);
  w.add_string("mxlens.method", std::string(method_name(session.settings.method)));
  w.add_string("mxlens.scheme", plan.scheme().describe());
  w.add_string("mxlens.session_created_utc", session.provenance.created_utc);
  w.add_string("mxlens.model_weights_sha256", session.provenance.fingerprint.weights_sha256);

  auto tensor = [&](Op op, std::vector<uint64_t> shape, GgmlType type) {
    w.add_tensor(op.name, std::move(shape), type);
    lay.ops.push_back(std::move(op));
  };
  const uint64_t d = uint64_t(cfg.hidden_size);
  if (cfg.rope_scaling.type == "llama3")
    tensor(make_op(OpKind::rope_freqs, "rope_freqs.weight"), {uint64_t(cfg.head_dim / 2)},
           GgmlType::f32);
  const TensorRef emb = ckpt.tensor(ckpt.embedding_name());
  const GgmlType emb_type = ggml_type_of(emb);
  if (emb.shape.size() != 2 || emb.shape[0] != uint64_t(cfg.vocab_size) || emb.shape[1] != d)
    throw Error(emb.shard->string(), emb.name + " is not [vocab_size, hidden_size]");
  tensor(make_op(OpKind::embedding, "token_embd.weight", -1, Linear::Q, emb.name), emb.shape,
         emb_type);
  for (int l = 0; l < cfg.num_layers; ++l) {
    const std::string blk = "blk." + std::to_string(l) + ".";
    tensor(make_op(OpKind::attn_norm, blk + "attn_norm.weight", l), {d}, GgmlType::f32);
    for (Linear which : kAllLinears) {
      if (which == Linear::Gate)
        tensor(make_op(OpKind::ffn_norm, blk + "ffn_norm.weight", l), {d}, GgmlType::f32);
      const TensorRef t = ckpt.tensor(hf_linear_module(l, which) + ".weight");
      const std::string name = gguf_linear_name(l, which);
      tensor(make_op(OpKind::linear, name + ".weight", l, which), t.shape, GgmlType::mxfp4);
      const bool bias = (site_of(which) == Site::Qkv && cfg.qkv_bias) ||
                        (which == Linear::O && cfg.attention_bias);
      if (bias)
        tensor(make_op(OpKind::bias, name + ".bias", l, which), {t.shape[0]}, GgmlType::f32);
    }
  }
  tensor(make_op(OpKind::output_norm, "output_norm.weight"), {d}, GgmlType::f32);
  if (!cfg.tie_word_embeddings) {
    const TensorRef out = ckpt.tensor(ckpt.lm_head_name());
    tensor(make_op(OpKind::embedding, "output.weight", -1, Linear::Q, out.name), out.shape,
           ggml_type_of(out));
  }

  lay.notes = notes_for(plan, emb_type);
  lay.notes.insert(lay.notes.end(), vocab.notes.begin(), vocab.notes.end());
  return lay;
}

const float* bias_of(const LayerWeights& lw, Linear which) {
  switch (which) {
    case Linear::Q:
      return lw.q_bias;
    case Linear::K:
      return lw.k_bias;
    case Linear::V:
      return lw.v_bias;
    case Linear::O:
      return lw.o_bias;
    default:
      return nullptr;
  }
}

template <class T>
std::span<const std::byte> bytes_of(const std::vector<T>& v) {
  return std::as_bytes(std::span<const T>(v));
}

}  // namespace

ExportPlan plan_gguf_export(const Checkpoint& checkpoint, const Session& session,
                            const QuantPlan& plan) {
  const Layout lay = make_layout(checkpoint, session, plan);
  ExportPlan result;
  result.bytes = lay.writer->file_size();
  result.notes = lay.notes;
  return result;
}

void write_gguf_export(const Checkpoint& ckpt, const LlamaWeights& weights, const Session& session,
                       const QuantPlan& plan, const fs::path& file, const ExportOptions& options,
                       const Progress& progress, ExportReport& report) {
  Layout lay = make_layout(ckpt, session, plan);
  const LlamaConfig& cfg = ckpt.config();
  const size_t d = size_t(cfg.hidden_size);
  GgufWriter& w = *lay.writer;
  w.open(file);

  LayerWeights lw;
  int loaded = -1;
  for (size_t i = 0; i < lay.ops.size(); ++i) {
    const Op& op = lay.ops[i];
    progress.check_cancel();
    progress.report(double(i) / double(lay.ops.size()), op.name);
    if (op.layer >= 0 && op.layer != loaded) {
      weights.load_layer(op.layer, lw, options.threads);
      loaded = op.layer;
    }
    switch (op.kind) {
      case OpKind::rope_freqs:
        w.write(op.name, bytes_of(rope_freq_factors(cfg)));
        break;
      case OpKind::embedding:
        w.write(op.name, ckpt.tensor(op.source).bytes);
        break;
      case OpKind::attn_norm:
        w.write(op.name, bytes_of(plan.folded_norm(op.layer, Site::Qkv,
                                                   std::span<const float>(lw.input_norm, d))));
        break;
      case OpKind::ffn_norm:
        w.write(op.name, bytes_of(plan.folded_norm(op.layer, Site::GateUp,
                                                   std::span<const float>(lw.post_norm, d))));
        break;
      case OpKind::linear: {
        ExportedWeight ew = export_weight_blocks(plan, lw, op.which, options.threads);
        if (op.which == Linear::Q || op.which == Linear::K)
          permute_qk_rows(ew.blocks, ew.out, ew.in / Mxfp4Block::kSize,
                          op.which == Linear::Q ? cfg.num_heads : cfg.num_kv_heads, op.name);
        w.write(op.name, bytes_of(ew.blocks));
        ++report.quantized_linears;
        break;
      }
      case OpKind::bias: {
        const float* b = bias_of(lw, op.which);
        const int64_t rows = lw.linear(op.which).rows;
        if (!b) throw Error("gguf", op.name + ": the checkpoint has no such bias");
        std::vector<float> v(b, b + rows);
        if (op.which == Linear::Q || op.which == Linear::K)
          permute_qk_rows(v, rows, 1, op.which == Linear::Q ? cfg.num_heads : cfg.num_kv_heads,
                          op.name);
        w.write(op.name, bytes_of(v));
        break;
      }
      case OpKind::output_norm:
        w.write(op.name,
                bytes_of(std::vector<float>(weights.final_norm(), weights.final_norm() + d)));
        break;
    }
  }
  progress.check_cancel();
  w.finish();
  report.notes.insert(report.notes.end(), lay.notes.begin(), lay.notes.end());
}

}  // namespace mxlens
