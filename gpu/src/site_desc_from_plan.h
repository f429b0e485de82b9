#pragma once
// The SiteDesc (site_desc.h) of one site of a QuantPlan: what QuantPlan::transform_activations
// and W4a4Taps' activation fake quantization do there, as plain arrays for the device (private
// to gpu/src; host C++ with Eigen, never included by a .cu file). Built with and without CUDA,
// so its translation is tested on every machine (tests/gpu/test_site_desc.cpp).
#include "core/quant/quant_plan.h"
#include "site_desc.h"

namespace mxlens::gpu::detail {

// One channel-transform step: block rotation R (b×b, row-major, x·R), permutation, or full
// Hadamard (n = m·k, segment mix H_mᵀ row-major, signs, 1/√n).
SiteStep step_desc(const ChannelTransform::Step& step);

// Smoothing (online: ÷ s; norm fold: nothing here, the caller uploads QuantPlan::folded_norm
// as the norm weight; previous-rows fold: nothing on the activations), every step of the site's
// rotation, and MXFP4 activation fake quantization when the scheme quantizes activations in MXFP4.
// Other activation formats are not described (cuda_unsupported_reason refuses them first).
SiteDesc site_desc(const QuantPlan& plan, int layer, Site site);

}  // namespace mxlens::gpu::detail
