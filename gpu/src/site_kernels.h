#pragma once
// Activation-side kernels of a W4A4 site (private to gpu/src): the fused smoothing + 32×32 block
// rotation + MXFP4 fake quantization, and the other channel-transform steps (block rotations of
// other sizes, permutations, full Hadamard). DeviceSite holds one site's uploaded transform and
// runs it in place on [rows, channels] row-major activations.
#include <cuda_runtime.h>

#include <cstdint>
#include <vector>

#include "cuda_util.h"
#include "site_desc.h"

namespace mxlens::gpu::detail {

// The fused kernel: per 32-element block of every row (a short last block when cols is not a
// multiple of 32), optionally x·scale or x/scale per channel, then x·R (R 32×32 row-major on
// the device; requires cols % 32 == 0), then MXFP4 fake quantization (rule not dqv2_log8).
// In place; x needs no alignment. The quantization equals core's bit for bit on the floats it
// is given; the rotation uses fused multiply-adds in a fixed order (not Eigen's).
struct FusedSiteArgs {
  float* x = nullptr;
  int64_t rows = 0;
  int cols = 0;
  SiteScale scale_mode = SiteScale::none;
  const float* scale = nullptr;     // [cols] on the device
  const float* rotation = nullptr;  // 32×32 on the device, or null
  bool quantize = false;
  ScaleRule rule = ScaleRule::ocp_floor;
  Rounding rounding = Rounding::rne;
};
void launch_fused_site(const FusedSiteArgs& args, int multiprocessors, cudaStream_t stream);

// y = x · blockdiag(R), R b×b row-major on the device (any b dividing cols); out of place.
void launch_block_rotation(const float* x, float* y, int64_t rows, int cols, const float* rotation,
                           int b, cudaStream_t stream);
// y[:, j] = x[:, perm[j]]; out of place.
void launch_permute_columns(const float* x, float* y, int64_t rows, int cols,
                            const int32_t* permutation, cudaStream_t stream);
// x ← x·(H_m ⊗ H_k)·diag(signs)·norm per row of n = m·k channels, in place (one CTA per row, the
// row in shared memory: n·4 bytes must fit the device's per-block limit). mix: m×m row-major
// (H_mᵀ) when m > 1; signs may be null.
void launch_full_hadamard(float* x, int64_t rows, int n, int m, int k, const float* mix,
                          const float* signs, float norm, cudaStream_t stream);
// Shared memory per CTA the full Hadamard kernel may use on the current device (opt-in limit).
size_t full_hadamard_max_channels();

// One site's transform on the device.
class DeviceSite {
 public:
  DeviceSite() = default;
  // Uploads `desc` (checked: channel counts, rule) on `stream`. Throws Error naming `where`.
  DeviceSite(const SiteDesc& desc, const std::string& where, cudaStream_t stream);

  bool identity() const { return identity_; }
  // x [rows, channels] in place; scratch holds at least rows·channels floats.
  void apply(float* x, int64_t rows, float* scratch, int multiprocessors,
             cudaStream_t stream) const;

 private:
  struct Step {
    SiteStep::Kind kind = SiteStep::Kind::block_rotation;
    int size = 0;
    DeviceArray<float> matrix;
    DeviceArray<int32_t> indices;
    DeviceArray<float> signs;
    int m = 1, k = 1;
    float norm = 1.0f;
  };

  bool identity_ = true;
  int channels_ = 0;
  SiteScale scale_mode_ = SiteScale::none;
  DeviceArray<float> scale_;
  std::vector<Step> steps_;
  // The last step when it is a 32×32 block rotation: fused with the quantization.
  bool fuse_last_rotation_ = false;
  bool quantize_ = false;
  QuantOptions quant_;
};

}  // namespace mxlens::gpu::detail
