#pragma once
// The compute backend behind evaluation (plain C++, no CUDA types): which one to use, and the
// WindowModelFactory (core/backend/window_model.h) that evaluate_perplexity and run_compare
// take. The CUDA model uploads the weights once (FP: the checkpoint's, converted to FP32 one
// layer at a time; W4A4: the plan's transformed, fake-quantized weights, computed on the host
// layer by layer) and runs the whole forward on the device: per-site smoothing, channel
// transform and MXFP4 activation fake quantization (bit-identical to core's quantizer on the
// same floats), RMSNorm, RoPE, causal GQA attention, SwiGLU, cuBLAS GEMMs. Logits come back to
// the host in row chunks, where they are scored as for the CPU.
#include <memory>
#include <string>
#include <string_view>

#include "core/backend/window_model.h"
#include "core/model/llama_model.h"
#include "core/quant/quant_plan.h"

namespace mxlens::gpu {

enum class BackendKind {
  cpu,
  cuda,   // error when no device can be used
  auto_,  // CUDA when a device is there and supports the plan, else the CPU
};

// "cpu", "cuda", "auto"; parse throws Error(source, ...) listing them.
std::string_view to_string(BackendKind kind);
BackendKind parse_backend(std::string_view name, std::string_view source = "--backend");

// How the CUDA forward multiplies.
enum class CudaGemm {
  fp32,  // cublasSgemm: the parity path (PPL within 1e-3 of the CPU)
  bf16,  // weights and activations rounded to BF16, FP32 accumulation (tensor cores). W4A4
         // operands are exact in BF16 for the power-of-two scale rules, so W4A4 results match
         // the FP32 path up to summation order; FP results are a BF16 forward's.
};

struct CudaModelOptions {
  int device = 0;
  CudaGemm gemm = CudaGemm::fp32;
};

// Why the CUDA forward cannot evaluate `plan` (null: FP) on a model of `cfg`, or empty when it
// can as far as the plan goes (the device is checked when the model is made): activation
// formats other than MXFP4 with an E8M0 scale rule (nvfp4, int4, dqv2_log8) run on the CPU only.
std::string cuda_unsupported_reason(const LlamaConfig& cfg, const QuantPlan* plan);

// The CUDA model of `plan` (null: FP) on `weights`; both must outlive it. Uploads everything
// (minutes for an 8B model: the host computes W4A4 weights layer by layer). Throws
// Error("cuda", ...) without a device, when the plan is unsupported, or when the weights do not
// fit the device's free memory.
std::unique_ptr<WindowModel> make_cuda_window_model(const LlamaWeights& weights,
                                                    const QuantPlan* plan,
                                                    const ForwardOptions& options,
                                                    const CudaModelOptions& cuda = {});

// The factory for `kind`:
//   cpu   the CPU factory (cpu_window_model_factory).
//   cuda  CUDA models; without a device throws Error("--backend", "CUDA unavailable: <reason>;
//         use --backend cpu or auto").
//   auto  CUDA models when a device is there (a plan CUDA cannot run falls back to the CPU
//         model, whose backend_name() then says "cpu"), else the CPU factory.
// `note` (may be null) receives a line for the user: the device used, or why evaluation runs
// on the CPU ("CUDA unavailable (<reason>); evaluating on the CPU"); empty for cpu.
WindowModelFactory make_window_model_factory(BackendKind kind, int device = 0,
                                             std::string* note = nullptr,
                                             CudaGemm gemm = CudaGemm::fp32);

}  // namespace mxlens::gpu
