// Evaluation speed of the CUDA backend against the CPU path and a cuBLAS BF16 forward, measured
// side by side in one run on a LLaMA-3-8B-shaped model with random weights (synthetic
// checkpoint, core/model/synthetic_checkpoint.h, written once) and random ids:
//   FP                 CUDA FP32 (the parity path), CUDA BF16 (the cuBLAS BF16 forward), CPU
//   W4A4 RTN           the same three
//   W4A4 Hadamard-32   block Hadamard at every site (the fused rotate + quantize kernel)
// tokens/s = scored positions / wall time of evaluate_perplexity (forward, logits to the host,
// log-sum-exp scoring); "fwd tok/s" is the device forward alone (logits to the host included,
// no scoring); upload = making the model (W4A4: the host computes each layer's quantized
// weights). The CPU runs --cpu-windows windows (an 8B window is tens of seconds on a CPU).
//
//   bench_cuda_eval [--model DIR | --synth-dir DIR] [--layers N] [--seqlen L] [--windows W]
//                   [--cpu-windows C] [--threads T] [--no-cpu] [--no-bf16]
//   (default: writes llama-3-8b BF16 into a temporary directory and removes it afterwards;
//    --synth-dir DIR keeps it there for the next run)
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "core/backend/window_model.h"
#include "core/eval/perplexity.h"
#include "core/model/checkpoint.h"
#include "core/model/synthetic_checkpoint.h"
#include "core/quant/quant_plan.h"
#include "core/rotation/hadamard.h"
#include "mxlens/gpu/backend.h"
#include "mxlens/gpu/cuda.h"

using namespace mxlens;
namespace fs = std::filesystem;

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

std::vector<int32_t> pseudo_random_ids(int64_t n, int vocab) {
  std::vector<int32_t> ids(static_cast<size_t>(n));
  uint32_t s = 2;
  for (auto& t : ids) {
    s = s * 1664525u + 1013904223u;
    t = int32_t((s >> 8) % uint32_t(vocab));
  }
  return ids;
}

struct Row {
  double tokens_per_s = 0;
  double forward_tokens_per_s = 0;  // device forward alone (0: not measured)
  double upload_s = 0;
  int64_t windows = 0;
};

Row measure(const WindowModelFactory& factory, const LlamaWeights& w, const QuantPlan* plan,
            std::span<const int32_t> ids, int L, int64_t windows, int threads, bool forward_alone) {
  ForwardOptions fo;
  fo.threads = threads;
  Row row;
  const auto t0 = Clock::now();
  const std::unique_ptr<WindowModel> model = factory(w, plan, fo);
  row.upload_s = seconds_since(t0);
  PerplexityOptions po;
  po.seqlen = L;
  po.max_windows = windows;
  po.forward = fo;
  Progress progress;
  const PerplexityResult r = evaluate_perplexity(*model, ids, po, progress);
  row.tokens_per_s = r.tokens_per_s;
  row.windows = r.windows;
  if (forward_alone) {
    double sink = 0;
    const auto t1 = Clock::now();
    for (int64_t k = 0; k < windows; ++k)
      model->run(ids.subspan(size_t(k * L), size_t(L - 1)),
                 [&](int64_t, const Eigen::Ref<const RowMatrixXf>& c) { sink += c(0, 0); });
    row.forward_tokens_per_s = double(windows * (L - 1)) / seconds_since(t1);
    if (sink == 12345.678) std::printf(" ");
  }
  return row;
}

// Block Hadamard (32×32, normalized) at every site: the plan of the hadamard method without
// calibration.
QuantPlan hadamard_plan(const LlamaConfig& cfg) {
  const Eigen::MatrixXf h = (sylvester_hadamard(32) / std::sqrt(32.0)).cast<float>();
  std::vector<LayerTransforms> t(size_t(cfg.num_layers));
  for (auto& layer : t)
    for (Site s : kAllSites) layer.site(s).rotation.add_block_rotation(h);
  return QuantPlan(cfg, QuantScheme::make(QuantMode::w4a4), std::move(t));
}

void print_row(const char* model, const char* path, const Row& r, double cpu_tps,
               double bf16_fp_tps) {
  char vs_cpu[32] = "-", vs_bf16[32] = "-", fwd[32] = "-";
  if (cpu_tps > 0) std::snprintf(vs_cpu, sizeof vs_cpu, "%.1fx", r.tokens_per_s / cpu_tps);
  if (bf16_fp_tps > 0)
    std::snprintf(vs_bf16, sizeof vs_bf16, "%.2fx", r.tokens_per_s / bf16_fp_tps);
  if (r.forward_tokens_per_s > 0) std::snprintf(fwd, sizeof fwd, "%.0f", r.forward_tokens_per_s);
  std::printf("%-18s %-12s %7lld %11.1f %11s %9.1f %9s %13s\n", model, path,
              static_cast<long long>(r.windows), r.tokens_per_s, fwd, r.upload_s, vs_cpu, vs_bf16);
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  fs::path model_dir, synth_dir;
  int layers = 0, L = 2048, threads = int(std::max(1u, std::thread::hardware_concurrency()));
  int64_t windows = 4, cpu_windows = 1;
  bool cpu = true, bf16 = true;
  for (int i = 1; i < argc; ++i) {
    const bool more = i + 1 < argc;
    if (!std::strcmp(argv[i], "--model") && more)
      model_dir = argv[++i];
    else if (!std::strcmp(argv[i], "--synth-dir") && more)
      synth_dir = argv[++i];
    else if (!std::strcmp(argv[i], "--layers") && more)
      layers = std::atoi(argv[++i]);
    else if (!std::strcmp(argv[i], "--seqlen") && more)
      L = std::atoi(argv[++i]);
    else if (!std::strcmp(argv[i], "--windows") && more)
      windows = std::atoll(argv[++i]);
    else if (!std::strcmp(argv[i], "--cpu-windows") && more)
      cpu_windows = std::atoll(argv[++i]);
    else if (!std::strcmp(argv[i], "--threads") && more)
      threads = std::atoi(argv[++i]);
    else if (!std::strcmp(argv[i], "--no-cpu"))
      cpu = false;
    else if (!std::strcmp(argv[i], "--no-bf16"))
      bf16 = false;
    else {
      std::fprintf(stderr, "bench_cuda_eval: unknown argument %s\n", argv[i]);
      return 2;
    }
  }
  if (gpu::cuda_device_count() == 0) {
    std::printf("bench_cuda_eval: %s; nothing to measure\n",
                gpu::cuda_unavailable_reason().c_str());
    return 0;
  }
  bool remove_after = false;
  try {
    std::printf("%s\n", gpu::cuda_status().c_str());
    if (model_dir.empty()) {
      remove_after = synth_dir.empty();
      model_dir = synth_dir.empty()
                      ? fs::temp_directory_path() / ("mxlens_bench_8b_" + std::to_string(getpid()))
                      : synth_dir;
      if (!fs::exists(model_dir / "config.json")) {
        SyntheticOptions so;
        so.preset = "llama-3-8b";
        so.dtype = DType::BF16;
        so.layers = layers;
        const auto t0 = Clock::now();
        const SyntheticSummary s = write_synthetic_checkpoint(model_dir, so);
        std::printf("wrote synthetic llama-3-8b BF16 (%s layers): %.2f GB, %.1f s\n",
                    layers > 0 ? std::to_string(layers).c_str() : "32",
                    double(s.tensor_bytes) / 1e9, seconds_since(t0));
      }
    }
    const Checkpoint ckpt = Checkpoint::open(model_dir);
    const LlamaWeights w(ckpt);
    const LlamaConfig& cfg = w.config();
    std::printf("model %s: %d layers, d %d, f %d, %d/%d heads, vocab %d; seqlen %d, threads %d\n",
                model_dir.string().c_str(), cfg.num_layers, cfg.hidden_size, cfg.intermediate_size,
                cfg.num_heads, cfg.num_kv_heads, cfg.vocab_size, L, threads);
    const std::vector<int32_t> ids =
        pseudo_random_ids(std::max(windows, cpu_windows) * L + 1, cfg.vocab_size);
    const QuantPlan rtn(cfg, QuantScheme::make(QuantMode::w4a4));
    const QuantPlan had = hadamard_plan(cfg);

    const WindowModelFactory cuda32 = [](const LlamaWeights& weights, const QuantPlan* plan,
                                         const ForwardOptions& fo) {
      return gpu::make_cuda_window_model(weights, plan, fo, {0, gpu::CudaGemm::fp32});
    };
    const WindowModelFactory cuda16 = [](const LlamaWeights& weights, const QuantPlan* plan,
                                         const ForwardOptions& fo) {
      return gpu::make_cuda_window_model(weights, plan, fo, {0, gpu::CudaGemm::bf16});
    };
    const WindowModelFactory host = cpu_window_model_factory();

    std::printf("\n%-18s %-12s %7s %11s %11s %9s %9s %13s\n", "model", "path", "windows",
                "tokens/s", "fwd tok/s", "upload s", "vs CPU", "vs BF16 FP");
    double bf16_fp = 0;
    struct Case {
      const char* name;
      const QuantPlan* plan;
    };
    for (const Case& c :
         {Case{"FP", nullptr}, Case{"W4A4 RTN", &rtn}, Case{"W4A4 Hadamard-32", &had}}) {
      double cpu_tps = 0;
      std::optional<Row> cpu_row;
      if (cpu) {
        cpu_row = measure(host, w, c.plan, ids, L, cpu_windows, threads, false);
        cpu_tps = cpu_row->tokens_per_s;
      }
      std::optional<Row> r16;
      if (bf16) {
        r16 = measure(cuda16, w, c.plan, ids, L, windows, threads, true);
        if (!c.plan) bf16_fp = r16->tokens_per_s;
      }
      const Row r32 = measure(cuda32, w, c.plan, ids, L, windows, threads, true);
      print_row(c.name, "cuda fp32", r32, cpu_tps, bf16_fp);
      if (r16) print_row(c.name, "cuda bf16", *r16, cpu_tps, bf16_fp);
      if (cpu_row) print_row(c.name, "cpu", *cpu_row, cpu_tps, bf16_fp);
    }
    std::printf(
        "\n'cuda bf16' FP is the cuBLAS BF16 forward (BF16 weights and activations, FP32 "
        "accumulation; attention in FP32); W4A4 operands are exact in BF16. GFLOP per window: "
        "%.0f.\n",
        forward_flops(cfg, L - 1) / 1e9);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_cuda_eval: %s\n", e.what());
    if (remove_after) fs::remove_all(model_dir);
    return 1;
  }
  if (remove_after) fs::remove_all(model_dir);
  return 0;
}
