// FP-Quant export (formats.md §4.1). What the format holds per quantized linear P:
// P.qweight (codes, pairs packing), P.scales (E8M0 bytes), P.forward_hadamard_matrix and
// P.backward_hadamard_matrix (the site's g×g block of its transform, x_blk · H), and the two
// global scales; everything else keeps its name and dtype. Smoothing is folded: γ/s into the
// RMSNorm of norm-folded sites (written F32), 1/s into v/up rows (already in the session's
// quantized weights, which export_weight_blocks encodes bit for bit).
#include <algorithm>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <numeric>
#include <set>
#include <string>
#include <vector>

#include "core/export/export_weights.h"
#include "core/export/fp_quant_export.h"
#include "core/io/safetensors_writer.h"
#include "core/mx/packing.h"
#include "core/util/error.h"

namespace fs = std::filesystem;

namespace mxlens {

namespace {

constexpr const char* kSmallFiles[] = {"tokenizer.json",          "tokenizer_config.json",
                                       "special_tokens_map.json", "generation_config.json",
                                       "tokenizer.model",         "mxlens_plant.json"};

std::string where(int layer, Site site) {
  return "layer " + std::to_string(layer) + " " + std::string(site_name(site)) + " input";
}

// The block size of a transform made of block rotations only; 0 for none. Throws (naming the
// site) for steps a g×g per-linear matrix cannot express.
int transform_block(const SiteTransform& t, int layer, Site site) {
  int b = 0;
  for (const ChannelTransform::Step& step : t.rotation.steps()) {
    switch (step.kind) {
      case ChannelTransform::StepKind::BlockRotation:
        b = b == 0 ? int(step.rotation.rows()) : std::lcm(b, int(step.rotation.rows()));
        break;
      case ChannelTransform::StepKind::Permutation:
        throw Error("fp_quant",
                    where(layer, site) +
                        ": the transform has a channel permutation (original DuQuant's zigzag), "
                        "so it is not block-diagonal; fp_quant stores one g×g matrix per linear "
                        "applied to every g-block (formats.md §4.1). Export duquantpp, hadamard, "
                        "random, smooth or rtn sessions");
      case ChannelTransform::StepKind::FullHadamard:
        throw Error("fp_quant",
                    where(layer, site) +
                        ": the transform is a full-size Hadamard (QuaRot), not a g×g block "
                        "matrix; fp_quant stores one g×g matrix per linear (g ≤ 128)");
    }
  }
  return b;
}

// One hadamard_group_size for the whole file (a config field): the lcm of every site's block.
int choose_group_size(const QuantPlan& plan) {
  const LlamaConfig& cfg = plan.config();
  int g = 32;
  for (int l = 0; l < cfg.num_layers; ++l)
    for (Site site : kAllSites) {
      const int b = transform_block(plan.site(l, site), l, site);
      if (b == 0) continue;
      if (b > 128 || (128 % b) != 0)
        throw Error("fp_quant", where(l, site) + ": block rotation of size " + std::to_string(b) +
                                    "; fp_quant supports 32, 64 and 128");
      g = std::lcm(g, b);
    }
  for (int l = 0; l < cfg.num_layers; ++l)
    for (Site site : kAllSites)
      if (plan.site_channels(site) % g != 0)
        throw Error("fp_quant", where(l, site) + ": " + std::to_string(plan.site_channels(site)) +
                                    " channels are not a multiple of hadamard_group_size " +
                                    std::to_string(g) + " (and of the 32-element MXFP4 block)");
  return g;
}

// H = the g×g block of the site's transform (identity without one), row-major float.
std::vector<float> site_matrix(const SiteTransform& t, int g) {
  std::vector<float> m(size_t(g) * size_t(g), 0.0f);
  const auto& steps = t.rotation.steps();
  if (steps.size() == 1 && steps[0].rotation.rows() == g) {
    // The session's own float matrix, bit for bit.
    for (int i = 0; i < g; ++i)
      for (int j = 0; j < g; ++j) m[size_t(i * g + j)] = steps[0].rotation(i, j);
  } else if (!steps.empty()) {
    const Eigen::MatrixXd d = t.rotation.dense(g);
    for (int i = 0; i < g; ++i)
      for (int j = 0; j < g; ++j) m[size_t(i * g + j)] = float(d(i, j));
  } else {
    for (int i = 0; i < g; ++i) m[size_t(i * g + i)] = 1.0f;
  }
  return m;
}

void check_smoothing(const QuantPlan& plan) {
  const LlamaConfig& cfg = plan.config();
  for (int l = 0; l < cfg.num_layers; ++l)
    for (Site site : kAllSites) {
      const SiteTransform& t = plan.site(l, site);
      if (!t.has_smoothing()) continue;
      if (t.smooth_fold == SmoothFold::online)
        throw Error("fp_quant",
                    where(l, site) + ": smoothing is divided online (o_proj under GQA: " +
                        std::to_string(cfg.num_heads) + " query heads share " +
                        std::to_string(cfg.num_kv_heads) +
                        " KV heads), and fp_quant has no slot for a per-channel division; "
                        "recalibrate with --smooth-gqa tied (s equal per KV group, folded into "
                        "v_proj rows) or use a method without smoothing");
      if (site == Site::Down && cfg.mlp_bias)
        throw Error("fp_quant", where(l, site) +
                                    ": smoothing folded into up_proj rows would also need its "
                                    "bias divided, which mxlens does not do (mlp_bias)");
    }
}

struct Op {
  TensorSpec spec;
  int layer = -1;      // -1: copied tensor
  std::string source;  // copied tensor's stored name
};

struct Layout {
  int group = 32;
  std::vector<Op> ops;
  std::set<std::string> replaced;  // stored names not copied
};

bool norm_folded(const QuantPlan& plan, int layer, Site site) {
  const SiteTransform& t = plan.site(layer, site);
  return t.has_smoothing() && t.smooth_fold == SmoothFold::norm;
}

Layout make_layout(const Checkpoint& ckpt, const QuantPlan& plan) {
  Layout lay;
  lay.group = choose_group_size(plan);
  const LlamaConfig& cfg = ckpt.config();
  const uint64_t g = uint64_t(lay.group);
  // Per-layer tensors this writer produces.
  for (int l = 0; l < cfg.num_layers; ++l) {
    for (const char* norm : {"input_layernorm.weight", "post_attention_layernorm.weight"})
      lay.replaced.insert(ckpt.tensor(layer_tensor_name(l, norm)).name);
    for (Linear which : kAllLinears)
      lay.replaced.insert(ckpt.tensor(hf_linear_module(l, which) + ".weight").name);
  }
  // Everything else first, as stored (embeddings, final norm, lm_head, biases, buffers).
  for (const TensorRef& t : ckpt.tensors())
    if (!lay.replaced.count(t.name))
      lay.ops.push_back({TensorSpec{t.name, t.dtype, t.shape}, -1, t.name});
  for (int l = 0; l < cfg.num_layers; ++l) {
    const std::pair<const char*, Site> norms[] = {
        {"input_layernorm.weight", Site::Qkv}, {"post_attention_layernorm.weight", Site::GateUp}};
    for (const auto& [norm, site] : norms) {
      const TensorRef t = ckpt.tensor(layer_tensor_name(l, norm));
      const DType dt = norm_folded(plan, l, site) ? DType::F32 : t.dtype;
      lay.ops.push_back({TensorSpec{layer_tensor_name(l, norm), dt, t.shape}, l, t.name});
    }
    for (Linear which : kAllLinears) {
      const std::string m = hf_linear_module(l, which);
      const TensorRef w = ckpt.tensor(m + ".weight");
      const uint64_t out = w.shape[0], in = w.shape[1];
      lay.ops.push_back({TensorSpec{m + ".qweight", DType::U8, {out, in / 2}}, l, {}});
      lay.ops.push_back({TensorSpec{m + ".scales", DType::U8, {out, in / 32}}, l, {}});
      lay.ops.push_back({TensorSpec{m + ".forward_hadamard_matrix", DType::F32, {g, g}}, l, {}});
      lay.ops.push_back({TensorSpec{m + ".backward_hadamard_matrix", DType::F32, {g, g}}, l, {}});
      lay.ops.push_back({TensorSpec{m + ".weight_global_scale", DType::F32, {1}}, l, {}});
      lay.ops.push_back({TensorSpec{m + ".act_global_scale", DType::F32, {1}}, l, {}});
    }
  }
  return lay;
}

// Contiguous runs of ops, each at most max_bytes (a single larger tensor gets its own shard).
std::vector<std::pair<size_t, size_t>> shard_ranges(const std::vector<Op>& ops,
                                                    uint64_t max_bytes) {
  std::vector<std::pair<size_t, size_t>> ranges;
  size_t begin = 0;
  uint64_t bytes = 0;
  for (size_t i = 0; i < ops.size(); ++i) {
    const uint64_t b = ops[i].spec.size_bytes();
    if (i > begin && bytes + b > max_bytes) {
      ranges.emplace_back(begin, i);
      begin = i;
      bytes = 0;
    }
    bytes += b;
  }
  ranges.emplace_back(begin, ops.size());
  return ranges;
}

std::string shard_name(size_t i, size_t n) {
  if (n == 1) return "model.safetensors";
  char buf[64];
  std::snprintf(buf, sizeof buf, "model-%05zu-of-%05zu.safetensors", i + 1, n);
  return buf;
}

float weight_global_scale(const QuantPlan& plan) {
  // fpquant's elements were divided by 2^k·4/3 = 2^(k+2)/3: byte k+2+127 with global scale 3.
  return plan.scheme().weights.options.scale_rule == ScaleRule::fpquant ? 3.0f : 1.0f;
}

std::vector<std::string> notes_for(const Checkpoint& ckpt, const Session& session,
                                   const QuantPlan& plan, int g) {
  std::vector<std::string> notes;
  const QuantScheme& sch = plan.scheme();
  const ScaleRule wr = sch.weights.options.scale_rule;
  notes.push_back("hadamard_group_size " + std::to_string(g) + ": every quantized linear " +
                  "stores its input site's " + std::to_string(g) + "x" + std::to_string(g) +
                  " block matrix (q/k/v share one, gate/up share one; identity where the "
                  "session has no rotation).");
  if (wr == ScaleRule::fpquant)
    notes.push_back(
        "weights use the fpquant rule: scale bytes are written as k+2+127 with "
        "weight_global_scale 3 (FP-Quant's abs_max convention), the same values.");
  else
    notes.push_back(std::string("weights use the ") + std::string(to_string(wr)) +
                    " rule: plain E8M0 bytes with weight_global_scale 1.");
  if (!sch.activations.enabled()) {
    notes.push_back(
        "the session is W4A16, but the FP-Quant runtime always quantizes "
        "activations (abs_max); it will compute W4A4.");
  } else if (sch.activations.options.scale_rule != ScaleRule::fpquant) {
    notes.push_back(std::string("the session quantized activations with ") +
                    std::string(to_string(sch.activations.options.scale_rule)) +
                    "; the FP-Quant runtime always uses abs_max (mxlens's fpquant rule, scale "
                    "2^k·4/3), so its perplexity will differ from the session's. mxlens "
                    "evaluates this export with the session's rule (recorded in "
                    "quantization_config.mxlens); calibrate with --scale-rule fpquant to measure "
                    "what the runtime computes.");
  }
  if (sch.activations.enabled() && sch.activations.options.rounding != Rounding::rne)
    notes.push_back(
        "the session rounds activation ties the ggml way; the runtime rounds to "
        "nearest even.");
  const std::string dtype = ckpt.config().torch_dtype;
  if (dtype != "float32")
    notes.push_back(
        "rotation matrices and smoothed norms are stored in F32 so that mxlens's "
        "evaluation of the export is exact; transformers loads them in the model "
        "dtype (" +
        (dtype.empty() ? std::string("bfloat16") : dtype) +
        "), so the runtime rotates with rounded matrices.");
  if (method_smooths(session.settings.method))
    notes.push_back(
        "smoothing is folded: γ/s into the input and post-attention RMSNorm "
        "weights, 1/s into v_proj and up_proj rows (already in the quantized "
        "weights), s into the consuming weights' columns.");
  return notes;
}

}  // namespace

ExportPlan plan_fp_quant_export(const Checkpoint& ckpt, const Session& session,
                                const QuantPlan& plan, const ExportOptions& options) {
  check_exportable_scheme(plan.scheme(), "fp_quant");
  check_smoothing(plan);
  if (ckpt.fp_quant())
    throw Error(ckpt.dir().string(),
                "is already an fp_quant checkpoint; export from the "
                "unquantized model the session was made for");
  const Layout lay = make_layout(ckpt, plan);
  ExportPlan result;
  result.notes = notes_for(ckpt, session, plan, lay.group);
  const auto ranges = shard_ranges(lay.ops, options.max_shard_bytes);
  for (const auto& [b, e] : ranges) {
    std::vector<TensorSpec> specs;
    for (size_t i = b; i < e; ++i) specs.push_back(lay.ops[i].spec);
    result.bytes += SafetensorsWriter::header_bytes(specs, {{"format", "pt"}});
    for (const TensorSpec& s : specs) result.bytes += s.size_bytes();
  }
  for (const char* f : kSmallFiles)
    if (fs::is_regular_file(ckpt.dir() / f)) result.bytes += fs::file_size(ckpt.dir() / f);
  result.bytes += fs::file_size(ckpt.dir() / "config.json") + 4096;
  if (ranges.size() > 1) result.bytes += 256 * lay.ops.size();  // the index
  return result;
}

void write_fp_quant_export(const Checkpoint& ckpt, const LlamaWeights& weights,
                           const Session& session, const QuantPlan& plan, const fs::path& dir,
                           const ExportOptions& options, const Progress& progress,
                           ExportReport& report) {
  const Layout lay = make_layout(ckpt, plan);
  const int g = lay.group;
  const LlamaConfig& cfg = ckpt.config();
  const auto ranges = shard_ranges(lay.ops, options.max_shard_bytes);
  const float wgs = weight_global_scale(plan);
  const float ags = 3.0f;  // FP-Quant's abs_max activation quantizer
  const int scale_shift = plan.scheme().weights.options.scale_rule == ScaleRule::fpquant ? 2 : 0;

  std::unique_ptr<SafetensorsWriter> writer;
  size_t shard = 0;
  nlohmann::json weight_map = nlohmann::json::object();
  auto write = [&](size_t op, std::span<const std::byte> bytes) {
    while (op >= ranges[shard].second) {
      writer->finish();
      writer.reset();
      ++shard;
    }
    if (!writer) {
      std::vector<TensorSpec> specs;
      for (size_t i = ranges[shard].first; i < ranges[shard].second; ++i)
        specs.push_back(lay.ops[i].spec);
      writer =
          std::make_unique<SafetensorsWriter>(dir / shard_name(shard, ranges.size()), specs,
                                              std::map<std::string, std::string>{{"format", "pt"}});
    }
    weight_map[lay.ops[op].spec.name] = shard_name(shard, ranges.size());
    writer->write(lay.ops[op].spec.name, bytes);
  };
  auto as_bytes = [](const auto& v) { return std::as_bytes(std::span(v.data(), v.size())); };

  size_t op = 0;
  // Copied tensors.
  for (; op < lay.ops.size() && lay.ops[op].layer < 0; ++op) {
    progress.check_cancel();
    const TensorRef t = ckpt.tensor(lay.ops[op].source);
    write(op, t.bytes);
  }
  // Layers.
  LayerWeights lw;
  for (int l = 0; l < cfg.num_layers; ++l) {
    progress.check_cancel();
    progress.report(double(l) / double(cfg.num_layers), "layer " + std::to_string(l));
    weights.load_layer(l, lw, options.threads);
    for (const auto& [gamma, site] :
         {std::pair{lw.input_norm, Site::Qkv}, std::pair{lw.post_norm, Site::GateUp}}) {
      const Op& o = lay.ops[op];
      if (norm_folded(plan, l, site)) {
        const std::vector<float> folded =
            plan.folded_norm(l, site, std::span<const float>(gamma, size_t(cfg.hidden_size)));
        write(op++, as_bytes(folded));
      } else {
        write(op++, ckpt.tensor(o.source).bytes);
      }
    }
    for (Linear which : kAllLinears) {
      progress.check_cancel();
      const ExportedWeight ew = export_weight_blocks(plan, lw, which, options.threads);
      const std::span<const Mxfp4Block> blocks(ew.blocks);
      PairsLayout pairs = block_records_to_pairs(block_bytes(blocks), Mxfp4Block::kSize);
      if (scale_shift)
        for (uint8_t& b : pairs.scales)
          if (b != 0xFF) b = uint8_t(b + scale_shift);
      const std::vector<float> m = site_matrix(plan.site(l, site_of(which)), g);
      write(op++, as_bytes(pairs.packed));
      write(op++, as_bytes(pairs.scales));
      write(op++, as_bytes(m));
      write(op++, as_bytes(m));
      write(op++, std::as_bytes(std::span(&wgs, 1)));
      write(op++, std::as_bytes(std::span(&ags, 1)));
      ++report.quantized_linears;
    }
  }
  if (op != lay.ops.size()) throw Error("fp_quant", "internal: not every tensor was written");
  if (writer) writer->finish();

  if (ranges.size() > 1) {
    uint64_t total = 0;
    for (const Op& o : lay.ops) total += o.spec.size_bytes();
    nlohmann::json index = {{"metadata", {{"total_size", total}}}, {"weight_map", weight_map}};
    std::ofstream out(dir / "model.safetensors.index.json");
    out << index.dump(2) << "\n";
    if (!out) throw Error((dir / "model.safetensors.index.json").string(), "cannot write");
  }

  // config.json: the original, plus quantization_config.
  nlohmann::json config;
  {
    std::ifstream in(ckpt.dir() / "config.json");
    config = nlohmann::json::parse(in, nullptr, false);
    if (config.is_discarded()) throw Error((ckpt.dir() / "config.json").string(), "not valid JSON");
  }
  const QuantScheme& sch = plan.scheme();
  config["quantization_config"] = {
      {"quant_method", "fp_quant"},
      {"forward_dtype", "mxfp4"},
      {"backward_dtype", "bf16"},
      {"forward_method", "abs_max"},
      {"hadamard_group_size", g},
      {"modules_to_not_convert", {"lm_head"}},
      {"store_master_weights", false},
      {"pseudoquantization", false},
      {"transform_init", "hadamard"},
      {"mxlens",
       {{"method", method_name(session.settings.method)},
        {"scheme", sch.describe()},
        {"weight_scale_rule", to_string(sch.weights.options.scale_rule)},
        {"activations_quantized", sch.activations.enabled()},
        {"activation_scale_rule", to_string(sch.activations.options.scale_rule)},
        {"activation_rounding", to_string(sch.activations.options.rounding)},
        {"rotation_dtype", "F32"},
        {"session_created_utc", session.provenance.created_utc},
        {"model_weights_sha256", session.provenance.fingerprint.weights_sha256},
        {"mxlens_version", MXLENS_VERSION}}}};
  {
    std::ofstream out(dir / "config.json");
    out << config.dump(2) << "\n";
    if (!out) throw Error((dir / "config.json").string(), "cannot write");
  }
  for (const char* f : kSmallFiles)
    if (fs::is_regular_file(ckpt.dir() / f)) fs::copy_file(ckpt.dir() / f, dir / f);
  const ExportPlan p = plan_fp_quant_export(ckpt, session, plan, options);
  report.notes.insert(report.notes.end(), p.notes.begin(), p.notes.end());
}

}  // namespace mxlens
