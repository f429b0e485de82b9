#pragma once
// What the CUDA forward does to the input of one site (private to gpu/src; plain C++, shared by
// the host code that reads a QuantPlan and the .cu files that run it). It mirrors
// QuantPlan::transform_activations followed by the activation fake quantization of W4a4Taps:
//   x ← x / scale   (online smoothing: o under GQA; norm-folded smoothing is in the norm
//                    weight, γ/s, as on the CPU, so it never shows up here)
//   x ← x · T₁ · T₂ · …   (the ChannelTransform's steps, in order)
//   x ← MXFP4 fake quantization per token (E8M0 rules only)
#include <cstdint>
#include <vector>

#include "core/mx/quant_options.h"

namespace mxlens::gpu::detail {

// divide: x / scale, online smoothing (norm-folded smoothing is in the norm weight instead).
enum class SiteScale : uint8_t { none, divide };

struct SiteStep {
  enum class Kind : uint8_t { block_rotation, permutation, full_hadamard };
  Kind kind = Kind::block_rotation;
  int size = 0;                  // block_rotation: b; permutation / full_hadamard: channels
  std::vector<float> matrix;     // block_rotation: R, b×b row-major (x·R);
                                 // full_hadamard: the m×m segment mix, row-major (m > 1)
  std::vector<int32_t> indices;  // permutation: y[:, j] = x[:, indices[j]]
  std::vector<float> signs;      // full_hadamard: ±1 per channel, empty for none
  int hadamard_m = 1;            // full_hadamard: n = m · k, k a power of two
  int hadamard_k = 1;
  float hadamard_norm = 1.0f;  // 1/√n as float
};

struct SiteDesc {
  int channels = 0;
  SiteScale scale_mode = SiteScale::none;
  std::vector<float> scale;  // [channels] when scale_mode != none
  std::vector<SiteStep> steps;
  bool quantize = false;  // MXFP4 fake quantization of the activations
  QuantOptions quant;     // scale rule (not dqv2_log8) and rounding

  bool identity() const { return scale_mode == SiteScale::none && steps.empty() && !quantize; }
};

// Largest segment mix of a full Hadamard (m ∈ {1, 12, 20, 28}, hadamard.h).
constexpr int kMaxHadamardMix = 28;

}  // namespace mxlens::gpu::detail
