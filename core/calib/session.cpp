#include "core/calib/session.h"
#include "core/util/utc_time.h"

#include <nlohmann/json.hpp>

#include <cmath>
#include <initializer_list>
#include <string>

#include "core/util/error.h"

namespace mxlens {

namespace {

using json = nlohmann::json;

constexpr std::string_view kScaleTimingNames[] = {"group_start", "in_block_update",
                                                  "static_scales"};

std::string_view scale_timing_name(GptqScaleTiming t) {
  return kScaleTimingNames[size_t(t)];
}

std::string_view search_data_name(SearchData d) {
  switch (d) {
    case SearchData::mean_window:
      return "mean_window";
  }
  return "?";
}

// Floats are written as the double of the float's value: nlohmann prints the shortest text
// that reads back as the same double, and that double converts back to the same float.
json float_value(float v) {
  return double(v);
}

json quant_options_json(const QuantOptions& o) {
  return {{"scale_rule", to_string(o.scale_rule)}, {"rounding", to_string(o.rounding)}};
}

json tensor_quant_json(const TensorQuant& q) {
  return {{"format", to_string(q.format)},
          {"options", quant_options_json(q.options)},
          {"clip_ratio", float_value(q.clip_ratio)}};
}

// Reads one JSON object's fields with their types checked. Every field is required and every
// key must be known, so a settings text that this build would read differently is an error.
class Reader {
 public:
  Reader(std::string source, const json& obj, std::string path)
      : source_(std::move(source)), obj_(obj), path_(std::move(path)) {
    if (!obj_.is_object()) fail(path_.empty() ? "settings" : path_, "must be a JSON object");
  }

  // Throws when the object has a key outside `known`.
  void only(std::initializer_list<std::string_view> known) const {
    for (const auto& [key, value] : obj_.items()) {
      bool ok = false;
      for (std::string_view k : known) ok = ok || key == k;
      if (!ok) fail(name(key), "is not a known settings field");
    }
  }

  const json& field(const char* key) const {
    if (!obj_.contains(key)) fail(name(key), "is missing");
    return obj_[key];
  }
  Reader object(const char* key) const { return Reader(source_, field(key), name(key)); }
  bool has(const char* key) const { return obj_.contains(key); }

  std::string string(const char* key) const {
    const json& v = field(key);
    if (!v.is_string()) fail(name(key), "must be a string, got " + v.dump());
    return v.get<std::string>();
  }
  bool boolean(const char* key) const {
    const json& v = field(key);
    if (!v.is_boolean()) fail(name(key), "must be true or false, got " + v.dump());
    return v.get<bool>();
  }
  int64_t int64(const char* key) const {
    const json& v = field(key);
    if (v.is_number_unsigned() && v.get<uint64_t>() > uint64_t(INT64_MAX))
      fail(name(key), "is out of range: " + v.dump());
    if (!v.is_number_integer()) fail(name(key), "must be an integer, got " + v.dump());
    return v.get<int64_t>();
  }
  int int32(const char* key) const {
    const int64_t v = int64(key);
    if (v < INT32_MIN || v > INT32_MAX) fail(name(key), "is out of range: " + std::to_string(v));
    return int(v);
  }
  uint64_t uint64(const char* key) const {
    const json& v = field(key);
    if (v.is_number_unsigned()) return v.get<uint64_t>();
    if (v.is_number_integer() && v.get<int64_t>() >= 0) return uint64_t(v.get<int64_t>());
    fail(name(key), "must be a non-negative integer, got " + v.dump());
  }
  double number(const char* key) const {
    const json& v = field(key);
    if (!v.is_number()) fail(name(key), "must be a number, got " + v.dump());
    return v.get<double>();
  }
  float number_f32(const char* key) const {
    const double d = number(key);
    const float f = float(d);
    // A value written by settings_to_json is a float's double; anything else would be rounded.
    if (std::isfinite(d) && double(f) != d)
      fail(name(key), "is not a float32 value: " + field(key).dump());
    return f;
  }

  const std::string& source() const { return source_; }
  std::string name(std::string_view key) const {
    return path_.empty() ? std::string(key) : path_ + "." + std::string(key);
  }
  [[noreturn]] void fail(const std::string& what, const std::string& problem) const {
    throw Error(source_, "settings field '" + what + "' " + problem);
  }

 private:
  std::string source_;
  const json& obj_;
  std::string path_;
};

// Parses a name with one of the project's parse_* functions, re-labelling its Error with the
// settings source and field.
template <typename F>
auto parse_named(const Reader& r, const char* key, F parse) {
  const std::string name = r.string(key);
  try {
    return parse(name);
  } catch (const Error& e) {
    r.fail(r.name(key), e.problem());
  }
}

QuantOptions read_quant_options(const Reader& r) {
  r.only({"scale_rule", "rounding"});
  QuantOptions o;
  o.scale_rule = parse_named(
      r, "scale_rule", [](const std::string& s) { return parse_scale_rule(s, "scale_rule"); });
  o.rounding = parse_named(r, "rounding",
                           [](const std::string& s) { return parse_rounding(s, "rounding"); });
  return o;
}

TensorQuant read_tensor_quant(const Reader& r) {
  r.only({"format", "options", "clip_ratio"});
  TensorQuant q;
  q.format = parse_named(r, "format",
                         [](const std::string& s) { return parse_quant_format(s, "format"); });
  q.options = read_quant_options(r.object("options"));
  q.clip_ratio = r.number_f32("clip_ratio");
  try {
    validate(q, "format");
  } catch (const Error& e) {
    r.fail(r.name("format"), e.problem());
  }
  return q;
}

GreedySelection read_selection(const Reader& r) {
  return parse_named(r, "selection",
                     [](const std::string& s) { return parse_greedy_selection(s, "selection"); });
}
GreedyObjective read_objective(const Reader& r) {
  return parse_named(r, "objective",
                     [](const std::string& s) { return parse_greedy_objective(s, "objective"); });
}

}  // namespace

std::string settings_to_json(const CalibrationSettings& s) {
  json j;
  j["method"] = method_name(s.method);
  j["scheme"] = {{"weights", tensor_quant_json(s.scheme.weights)},
                 {"activations", tensor_quant_json(s.scheme.activations)}};
  j["windows"] = {{"count", s.windows.count},
                  {"seqlen", s.windows.seqlen},
                  {"seed", s.windows.seed},
                  {"tail_fraction", s.windows.tail_fraction}};
  j["add_bos"] = s.add_bos;
  j["smoothing"] = {{"alpha", float_value(s.smoothing.alpha)},
                    {"min_value", float_value(s.smoothing.min_value)},
                    {"floor_value", float_value(s.smoothing.floor_value)},
                    {"tie_gqa", s.smoothing.tie_gqa}};
  // layer/site/stage/threads of the search options are per call, not settings.
  j["greedy"] = {{"block_size", s.greedy.block_size},
                 {"max_steps", s.greedy.max_steps},
                 {"selection", to_string(s.greedy.selection)},
                 {"objective", to_string(s.greedy.objective)},
                 {"seed", s.greedy.seed}};
  j["duquant"] = {{"block_size", s.duquant.block_size},
                  {"max_steps", s.duquant.max_steps},
                  {"selection", to_string(s.duquant.selection)},
                  {"objective", to_string(s.duquant.objective)},
                  {"seed", s.duquant.seed}};
  j["gptq"] = {{"block_size", s.gptq.gptq.block_size},
               {"damp", s.gptq.gptq.damp},
               {"scale_timing", scale_timing_name(s.gptq.gptq.scale_timing)},
               {"hessian_from_quantized_inputs", s.gptq.hessian_from_quantized_inputs}};
  j["rotation_seed"] = s.rotation_seed;
  j["stats_windows"] = s.stats_windows;
  j["stats"] = {{"mx", quant_options_json(s.stats.mx)},
                {"max_sample_rows", s.stats.max_sample_rows},
                {"sample_budget_bytes", s.stats.sample_budget_bytes},
                {"seed", s.stats.seed}};
  j["search_data"] = search_data_name(s.search_data);
  return j.dump(2);
}

CalibrationSettings settings_from_json(std::string_view text, std::string_view source_view) {
  const std::string source(source_view);
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {
    throw Error(source, std::string("settings are not valid JSON: ") + e.what());
  }
  const Reader r(source, j, "");
  r.only({"method", "scheme", "windows", "add_bos", "smoothing", "greedy", "duquant", "gptq",
          "rotation_seed", "stats_windows", "stats", "search_data"});

  CalibrationSettings s;
  s.method =
      parse_named(r, "method", [](const std::string& m) { return parse_method(m, "method"); });

  const Reader scheme = r.object("scheme");
  scheme.only({"weights", "activations"});
  s.scheme.weights = read_tensor_quant(scheme.object("weights"));
  s.scheme.activations = read_tensor_quant(scheme.object("activations"));

  const Reader w = r.object("windows");
  w.only({"count", "seqlen", "seed", "tail_fraction"});
  s.windows.count = w.int32("count");
  s.windows.seqlen = w.int32("seqlen");
  s.windows.seed = w.uint64("seed");
  s.windows.tail_fraction = w.number("tail_fraction");

  s.add_bos = r.boolean("add_bos");

  const Reader sm = r.object("smoothing");
  sm.only({"alpha", "min_value", "floor_value", "tie_gqa"});
  s.smoothing.alpha = sm.number_f32("alpha");
  s.smoothing.min_value = sm.number_f32("min_value");
  s.smoothing.floor_value = sm.number_f32("floor_value");
  // Sessions written before tie_gqa existed used the online division.
  s.smoothing.tie_gqa = sm.has("tie_gqa") ? sm.boolean("tie_gqa") : false;

  const Reader g = r.object("greedy");
  g.only({"block_size", "max_steps", "selection", "objective", "seed"});
  s.greedy.block_size = g.int32("block_size");
  s.greedy.max_steps = g.int32("max_steps");
  s.greedy.selection = read_selection(g);
  s.greedy.objective = read_objective(g);
  s.greedy.seed = g.uint64("seed");

  const Reader d = r.object("duquant");
  d.only({"block_size", "max_steps", "selection", "objective", "seed"});
  s.duquant.block_size = d.int32("block_size");
  s.duquant.max_steps = d.int32("max_steps");
  s.duquant.selection = read_selection(d);
  s.duquant.objective = read_objective(d);
  s.duquant.seed = d.uint64("seed");

  const Reader q = r.object("gptq");
  q.only({"block_size", "damp", "scale_timing", "hessian_from_quantized_inputs"});
  s.gptq.gptq.block_size = q.int32("block_size");
  s.gptq.gptq.damp = q.number("damp");
  {
    const std::string name = q.string("scale_timing");
    bool found = false;
    for (size_t i = 0; i < std::size(kScaleTimingNames); ++i)
      if (name == kScaleTimingNames[i]) {
        s.gptq.gptq.scale_timing = GptqScaleTiming(i);
        found = true;
      }
    if (!found)
      q.fail(q.name("scale_timing"),
             "is unknown: '" + name + "' (known: group_start, in_block_update, static_scales)");
  }
  s.gptq.hessian_from_quantized_inputs = q.boolean("hessian_from_quantized_inputs");

  s.rotation_seed = r.uint64("rotation_seed");
  s.stats_windows = r.int32("stats_windows");

  const Reader st = r.object("stats");
  st.only({"mx", "max_sample_rows", "sample_budget_bytes", "seed"});
  s.stats.mx = read_quant_options(st.object("mx"));
  s.stats.max_sample_rows = st.int32("max_sample_rows");
  s.stats.sample_budget_bytes = st.int64("sample_budget_bytes");
  s.stats.seed = st.uint64("seed");

  const std::string sd = r.string("search_data");
  if (sd == search_data_name(SearchData::mean_window))
    s.search_data = SearchData::mean_window;
  else
    r.fail("search_data", "is unknown: '" + sd + "' (known: mean_window)");
  return s;
}

QuantPlan make_plan(const Session& session, const LlamaConfig& cfg) {
  const LlamaConfig& sc = session.config;
  const std::string source = "session of " + session.provenance.model_dir;
  auto check = [&](const char* what, int64_t session_value, int64_t model_value) {
    if (session_value != model_value)
      throw Error(source, std::string("made for another model: ") + what + " is " +
                              std::to_string(session_value) + " in the session but " +
                              std::to_string(model_value) + " in the model");
  };
  check("num_hidden_layers", sc.num_layers, cfg.num_layers);
  check("hidden_size", sc.hidden_size, cfg.hidden_size);
  check("intermediate_size", sc.intermediate_size, cfg.intermediate_size);
  check("num_attention_heads", sc.num_heads, cfg.num_heads);
  check("num_key_value_heads", sc.num_kv_heads, cfg.num_kv_heads);
  check("head_dim", sc.head_dim, cfg.head_dim);
  if (!session.transforms.empty() && int64_t(session.transforms.size()) != cfg.num_layers)
    throw Error(source, "the session has transforms for " +
                            std::to_string(session.transforms.size()) + " layers, the model has " +
                            std::to_string(cfg.num_layers));
  if (int64_t(session.weights.size()) > cfg.num_layers)
    throw Error(source, "the session has weights for " + std::to_string(session.weights.size()) +
                            " layers, the model has " + std::to_string(cfg.num_layers));

  QuantPlan plan(cfg, session.settings.scheme, session.transforms);
  const int d = cfg.hidden_size, f = cfg.intermediate_size;
  const int q_out = cfg.num_heads * cfg.head_dim, kv_out = cfg.num_kv_heads * cfg.head_dim;
  for (size_t l = 0; l < session.weights.size(); ++l) {
    for (Linear which : kAllLinears) {
      const auto& w = session.weights[l][size_t(which)];
      if (!w) continue;
      int out = 0, in = 0;
      switch (which) {
        case Linear::Q:
          out = q_out, in = d;
          break;
        case Linear::K:
        case Linear::V:
          out = kv_out, in = d;
          break;
        case Linear::O:
          out = d, in = q_out;
          break;
        case Linear::Gate:
        case Linear::Up:
          out = f, in = d;
          break;
        case Linear::Down:
          out = d, in = f;
          break;
      }
      if (w->rows() != out || w->cols() != in)
        throw Error(source, "stored weight of layer " + std::to_string(l) + " " +
                                std::string(linear_name(which)) + " is " +
                                std::to_string(w->rows()) + "x" + std::to_string(w->cols()) +
                                ", the model needs " + std::to_string(out) + "x" +
                                std::to_string(in));
      plan.set_weight(int(l), which, *w);
    }
  }
  return plan;
}

EvalRecord make_eval_record(const std::string& dataset, const std::string& dataset_sha256,
                            Method method, const QuantScheme& scheme, const PerplexityResult& r,
                            std::string started_utc) {
  EvalRecord e;
  e.kind = "ppl";
  e.dataset = dataset;
  e.dataset_sha256 = dataset_sha256;
  e.method = std::string(method_name(method));
  e.scheme = scheme.describe();
  e.seqlen = r.seqlen;
  e.windows = r.windows;
  e.tokens_scored = r.tokens_scored;
  e.window_nll = r.window_nll;
  e.ppl = r.ppl;
  e.nll_mean = r.nll_mean;
  if (r.kl) {
    e.kl_mean = r.kl->mean;
    e.top1 = r.kl->top1_agreement;
  }
  e.started_utc = std::move(started_utc);
  e.finished_utc = utc_now_iso8601();
  return e;
}

}  // namespace mxlens
