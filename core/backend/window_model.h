#pragma once
// WindowModel: what evaluation needs from a compute backend — run one token window through the
// model (FP or the fake-quantized model of a QuantPlan) and hand back the logits of every
// position, in row chunks, to the host. Scoring (log-sum-exp, KL, references) stays on the host
// (core/eval), so every backend is scored by the same code.
//
// CpuWindowModel is the CPU forward (LlamaForward + optional SiteTaps): evaluating through it is
// exactly the path evaluate_perplexity always took. The CUDA backend (gpu/, mxlens/gpu/backend.h)
// provides another implementation through a WindowModelFactory.
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>

#include "core/model/forward.h"
#include "core/model/llama_model.h"
#include "core/quant/quant_plan.h"
#include "core/quant/w4a4_taps.h"

namespace mxlens {

class WindowModel {
 public:
  virtual ~WindowModel() = default;

  virtual const LlamaConfig& config() const = 0;
  // Runs `tokens` (positions 0..T-1, causal) and calls `fn` with the logits of every position,
  // rows in increasing order, in chunks whose size the backend chooses. A chunk is only valid
  // during the call.
  virtual void run(std::span<const int32_t> tokens, const LogitsChunkFn& fn) = 0;
  // "cpu", "cuda": recorded with results.
  virtual std::string backend_name() const = 0;
  // One line about where it runs ("CUDA: NVIDIA H100 ... (sm_90, ...)"); empty for the CPU.
  virtual std::string device_description() const { return {}; }
};

// The CPU forward. `weights` (and `taps`, when given) must outlive the model.
class CpuWindowModel : public WindowModel {
 public:
  // FP, or whatever `taps` make of the forward (may be null).
  CpuWindowModel(const LlamaWeights& weights, const ForwardOptions& options,
                 SiteTaps* taps = nullptr);
  // The fake-quantized model of `plan` (null: FP) through W4a4Taps owned by the model; `plan`
  // must outlive it. taps_options.threads is set from options.threads.
  CpuWindowModel(const LlamaWeights& weights, const QuantPlan* plan, const ForwardOptions& options,
                 W4a4Taps::Options taps_options);

  const LlamaConfig& config() const override { return weights_->config(); }
  void run(std::span<const int32_t> tokens, const LogitsChunkFn& fn) override;
  std::string backend_name() const override { return "cpu"; }

 private:
  const LlamaWeights* weights_;
  LlamaForward forward_;
  std::optional<W4a4Taps> owned_taps_;
  SiteTaps* taps_ = nullptr;
};

// Makes the model that evaluates `plan` (null = FP) on `weights`; `weights` and `plan` must
// outlive it. An empty factory means the CPU (callers choose the CPU's taps themselves).
using WindowModelFactory = std::function<std::unique_ptr<WindowModel>(
    const LlamaWeights& weights, const QuantPlan* plan, const ForwardOptions& options)>;

// A factory of CpuWindowModels; a W4A4 model keeps every layer's quantized weights across
// windows when they fit weight_cache_fits' budget.
WindowModelFactory cpu_window_model_factory();

}  // namespace mxlens
