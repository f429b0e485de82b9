// The gpu library when mxlens is built without CUDA (MXLENS_CUDA=OFF, or AUTO with no
// compiler): no devices, a reason to show, and kernels that refuse with that reason.
#include "core/util/error.h"
#include "mxlens/gpu/backend.h"
#include "mxlens/gpu/cuda.h"

namespace mxlens::gpu {
namespace {

constexpr const char* kReason = "built without CUDA";

[[noreturn]] void unavailable() {
  throw Error("cuda", kReason);
}

}  // namespace

int cuda_device_count() {
  return 0;
}
std::string cuda_unavailable_reason() {
  return kReason;
}
CudaDeviceInfo cuda_device_info(int) {
  unavailable();
}
std::string cuda_status() {
  return std::string("CUDA unavailable: ") + kReason;
}

TensorScale cuda_quantize_mxfp4(std::span<const float>, int64_t, int64_t, std::span<Mxfp4Block>,
                                const QuantOptions&, int) {
  unavailable();
}
TensorScale cuda_quantize_mxfp4_pairs(std::span<const float>, int64_t, int64_t, std::span<uint8_t>,
                                      std::span<uint8_t>, const QuantOptions&, int) {
  unavailable();
}
void cuda_dequantize_mxfp4(std::span<const Mxfp4Block>, const TensorScale&, int64_t, int64_t,
                           std::span<float>, int) {
  unavailable();
}
void cuda_dequantize_mxfp4_pairs(std::span<const uint8_t>, std::span<const uint8_t>,
                                 const TensorScale&, int64_t, int64_t, std::span<float>, int) {
  unavailable();
}
void cuda_fake_quantize_mxfp4(std::span<const float>, int64_t, int64_t, std::span<float>,
                              const QuantOptions&, int) {
  unavailable();
}

void cuda_rotate_quantize_rows(std::span<const float>, int64_t, int64_t, std::span<const float>,
                               const QuantOptions*, std::span<float>, int) {
  unavailable();
}

std::unique_ptr<WindowModel> make_cuda_window_model(const LlamaWeights&, const QuantPlan*,
                                                    const ForwardOptions&,
                                                    const CudaModelOptions&) {
  unavailable();
}

namespace device {
void quantize_mxfp4(const float*, int64_t, int64_t, Mxfp4Block*, const QuantOptions&, void*) {
  unavailable();
}
void quantize_mxfp4_pairs(const float*, int64_t, int64_t, uint8_t*, uint8_t*, const QuantOptions&,
                          void*) {
  unavailable();
}
void dequantize_mxfp4(const Mxfp4Block*, ScaleRule, int64_t, int64_t, float*, void*) {
  unavailable();
}
void dequantize_mxfp4_pairs(const uint8_t*, const uint8_t*, ScaleRule, int64_t, int64_t, float*,
                            void*) {
  unavailable();
}
void fake_quantize_mxfp4(const float*, int64_t, int64_t, float*, const QuantOptions&, void*) {
  unavailable();
}
void rotate_quantize_rows(float*, int64_t, int64_t, const float*, const QuantOptions*, void*) {
  unavailable();
}
}  // namespace device

}  // namespace mxlens::gpu
