#pragma once
// The scalar reference forward: plain loops, one token at a time with a KV cache, double
// accumulation. Obviously correct and slow; the oracle for LlamaForward (forward.h).
// It reads every tensor to FP32 up front, so use it on small models only.
#include <cstdint>
#include <span>
#include <vector>

#include "core/model/checkpoint.h"
#include "core/model/site_taps.h"

namespace mxlens {

// Logits [tokens.size(), vocab] row-major for positions 0..T-1 of one window. Taps are called
// per token (x has one row) at the same four sites as in the fast forward.
std::vector<float> forward_ref(const Checkpoint& checkpoint, std::span<const int32_t> tokens,
                               SiteTaps* taps = nullptr);

}  // namespace mxlens
