// Backend choice and the evaluation model factory (mxlens/gpu/backend.h). Built with and
// without CUDA: without it cuda_device_count() is 0 and make_cuda_window_model throws, so the
// choices below behave as on a machine without a device.
#include "mxlens/gpu/backend.h"

#include <string>

#include "core/util/error.h"
#include "mxlens/gpu/cuda.h"

namespace mxlens::gpu {

std::string_view to_string(BackendKind kind) {
  switch (kind) {
    case BackendKind::cpu:
      return "cpu";
    case BackendKind::cuda:
      return "cuda";
    case BackendKind::auto_:
      return "auto";
  }
  return "?";
}

BackendKind parse_backend(std::string_view name, std::string_view source) {
  if (name == "cpu") return BackendKind::cpu;
  if (name == "cuda") return BackendKind::cuda;
  if (name == "auto") return BackendKind::auto_;
  throw Error(std::string(source),
              "unknown backend '" + std::string(name) + "' (cpu, cuda or auto)");
}

std::string cuda_unsupported_reason(const LlamaConfig& cfg, const QuantPlan* plan) {
  if (cfg.num_kv_heads <= 0 || cfg.num_heads % cfg.num_kv_heads != 0)
    return "the CUDA forward needs the heads to be a multiple of the KV heads";
  if (!plan) return {};
  const TensorQuant& a = plan->scheme().activations;
  if (a.format != QuantFormat::none && a.format != QuantFormat::mxfp4)
    return "activation format " + std::string(to_string(a.format)) +
           " is not supported by the CUDA backend yet";
  if (a.format == QuantFormat::mxfp4 && a.options.scale_rule == ScaleRule::dqv2_log8)
    return "activation scale rule dqv2_log8 is not supported by the CUDA backend (it needs the "
           "whole tensor's scale range)";
  return {};
}

WindowModelFactory make_window_model_factory(BackendKind kind, int device, std::string* note,
                                             CudaGemm gemm) {
  if (note) note->clear();
  if (kind == BackendKind::cpu) return cpu_window_model_factory();
  if (cuda_device_count() == 0) {
    const std::string reason = cuda_unavailable_reason();
    if (kind == BackendKind::cuda)
      throw Error("--backend", "CUDA unavailable: " + reason + "; use --backend cpu or auto");
    if (note) *note = "CUDA unavailable (" + reason + "); evaluating on the CPU";
    return cpu_window_model_factory();
  }
  if (device < 0 || device >= cuda_device_count())
    throw Error("cuda", "device " + std::to_string(device) + " does not exist (" +
                            std::to_string(cuda_device_count()) + " present)");
  if (note) {
    if (device == 0) {
      *note = cuda_status();
    } else {
      const CudaDeviceInfo info = cuda_device_info(device);
      *note = "CUDA: " + info.name + " (device " + std::to_string(device) + ")";
    }
  }
  const CudaModelOptions options{device, gemm};
  const bool fall_back = kind == BackendKind::auto_;
  return [options, fall_back](const LlamaWeights& weights, const QuantPlan* plan,
                              const ForwardOptions& forward) -> std::unique_ptr<WindowModel> {
    if (fall_back && !cuda_unsupported_reason(weights.config(), plan).empty())
      return cpu_window_model_factory()(weights, plan, forward);
    return make_cuda_window_model(weights, plan, forward, options);
  };
}

}  // namespace mxlens::gpu
