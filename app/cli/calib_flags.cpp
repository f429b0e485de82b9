#include "app/cli/calib_flags.h"

#include <cstdio>

#include "core/eval/perplexity.h"
#include "core/io/model_fingerprint.h"
#include "core/text/tokenizer.h"
#include "core/util/error.h"

namespace mxlens::cli {

void add_calibration_flags(CLI::App* cmd, CalibFlags& f) {
  cmd->add_option("--calib-windows", f.windows, "Calibration windows N (algorithm.md §7)")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd->add_option("--calib-seqlen", f.seqlen,
                  "Tokens per calibration window (capped by the model's context)")
      ->check(CLI::Range(2, 1 << 20))
      ->capture_default_str();
  cmd->add_option("--calib-seed", f.seed, "Seed of the calibration window offsets")
      ->capture_default_str();
  cmd->add_option("--calib-tail", f.tail_fraction,
                  "Share of the calibration text, at its end, that windows are drawn from; an "
                  "evaluation of the same text stops before it (0 = whole text)")
      ->check(CLI::Range(0.0, 1.0))
      ->capture_default_str();
  cmd->add_option("--format", f.format, "Element format: mxfp4, nvfp4, int4")
      ->capture_default_str();
  cmd->add_option("--mode", f.mode, "What is quantized: w4a4, w4a16, w16a4")->capture_default_str();
  cmd->add_option("--scale-rule", f.scale_rule,
                  "MXFP4 scale rule: ocp_floor, fpquant, rceil, dqv2_log8")
      ->capture_default_str();
  cmd->add_option("--rounding", f.rounding, "Element rounding: rne, ggml")->capture_default_str();
  cmd->add_option("--alpha", f.alpha, "Smoothing migration strength α")
      ->check(CLI::Range(0.0, 1.0))
      ->capture_default_str();
  cmd->add_option("--smooth-gqa", f.smooth_gqa,
                  "o_proj smoothing under GQA: online (x/s every forward, as the released code) "
                  "or tied (s equal across query heads sharing a KV head, folded into v_proj "
                  "rows; needed to export smoothed methods)")
      ->check(CLI::IsMember({"online", "tied"}))
      ->capture_default_str();
  cmd->add_option("--steps", f.steps, "DuQuant++ greedy steps S (best prefix kept)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  cmd->add_option("--duquant-steps", f.duquant_steps, "Original DuQuant steps per rotation")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  cmd->add_option("--selection", f.selection, "Greedy channel selection: paper, code")
      ->capture_default_str();
  cmd->add_option("--objective", f.objective, "Greedy objective: range, max_abs")
      ->capture_default_str();
  cmd->add_option("--rotation-seed", f.rotation_seed,
                  "Seed of random rotations, QuaRot signs and the searches' Q'")
      ->capture_default_str();
  cmd->add_option("--gptq-hessian", f.gptq_hessian,
                  "GPTQ Hessian from 'quantized' (DuQuant++*) or 'unquantized' inputs")
      ->capture_default_str();
  cmd->add_option("--stats-windows", f.stats_windows,
                  "Windows of the per-site statistics pass (0 = all calibration windows)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  cmd->add_option("--sample-rows", f.sample_rows, "Activation rows sampled per site (at most)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  cmd->add_option("--sample-budget-mb", f.sample_budget_mb,
                  "Memory budget of all sampled activation rows, MiB")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
}

CalibrationSettings to_settings(const CalibFlags& f, Method method) {
  CalibrationSettings s;
  s.method = method;
  QuantOptions q;
  q.scale_rule = parse_scale_rule(f.scale_rule);
  q.rounding = parse_rounding(f.rounding);
  s.scheme =
      QuantScheme::make(method_quantizes(method) ? parse_quant_mode(f.mode) : QuantMode::none,
                        parse_quant_format(f.format), q);
  validate(s.scheme.weights, "--format");
  validate(s.scheme.activations, "--format");
  s.windows.count = f.windows;
  s.windows.seqlen = f.seqlen;
  s.windows.seed = f.seed;
  s.windows.tail_fraction = f.tail_fraction;
  s.smoothing.alpha = f.alpha;
  s.smoothing.tie_gqa = f.smooth_gqa == "tied";
  s.greedy.max_steps = f.steps;
  s.greedy.selection = parse_greedy_selection(f.selection);
  s.greedy.objective = parse_greedy_objective(f.objective);
  s.greedy.seed = f.rotation_seed;
  s.duquant.max_steps = f.duquant_steps;
  s.duquant.selection = s.greedy.selection;
  s.duquant.objective = s.greedy.objective;
  s.duquant.seed = f.rotation_seed;
  s.rotation_seed = f.rotation_seed;
  if (f.gptq_hessian == "quantized")
    s.gptq.hessian_from_quantized_inputs = true;
  else if (f.gptq_hessian == "unquantized")
    s.gptq.hessian_from_quantized_inputs = false;
  else
    throw Error("--gptq-hessian",
                "unknown value '" + f.gptq_hessian + "' (known: quantized, unquantized)");
  s.stats_windows = f.stats_windows;
  s.stats.mx = q;
  s.stats.max_sample_rows = f.sample_rows;
  s.stats.sample_budget_bytes = int64_t(f.sample_budget_mb * 1024 * 1024);
  s.stats.seed = f.seed;
  return s;
}

LoadedText load_text(const Checkpoint& ckpt, const std::string& path, bool bos) {
  const auto tokenizer_json = ckpt.tokenizer_json();
  if (!tokenizer_json)
    throw Error(ckpt.dir().string(),
                "has no tokenizer.json; the model's tokenizer is needed to read " + path);
  const Tokenizer tokenizer = Tokenizer::load(*tokenizer_json);
  LoadedText t;
  t.path = path;
  t.ids = tokenize_text_file(tokenizer, path, bos);
  t.sha256 = sha256_file(path);
  return t;
}

void print_timings(const CalibrationTimings& t) {
  std::printf(
      "time           forward %.2f s, search %.2f s, gptq %.2f s, statistics %.2f s, "
      "total %.2f s\n",
      t.forward, t.search, t.gptq, t.statistics, t.total);
}

}  // namespace mxlens::cli
