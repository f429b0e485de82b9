#pragma once
// The methods a calibration can produce (algorithm.md §3-§6, §11), by their CLI names:
//
//   fp                  no quantization (the reference)
//   rtn                 W4A4 round-to-nearest, no transform (§5.2)
//   smooth              SmoothQuant smoothing (α = 0.6) + RTN (§3)
//   hadamard            block Hadamard H32/√32 at all four sites (§5.3)
//   random              seeded random orthogonal 32×32 per layer and site (§5.4)
//   quarot              full-size Hadamard (§5.5), expressed per site — see below
//   duquant             original DuQuant: smoothing + R₁·zigzag·R₂, blocks of 128, 256 steps (§4.7)
//   duquantpp           DuQuant++: smoothing + greedy 32×32 rotation, ≤ 128 steps (§4, §11)
//   duquantpp-nosmooth  the DuQuant++ rotation without smoothing (isolates the rotation)
//   duquantpp-gptq      DuQuant++ followed by GPTQ on the weights (DuQuant++*, §6)
//
// QuaRot per site: the residual stream is never quantized in W4A4 fake quantization, so
// rotating it by Q (with γ folded into the next linears) is seen only at the sites: the qkv and
// gate/up inputs become RMSNorm(h)·Q without γ — smoothing with s = γ folded into the weights
// (x/γ, W·diag(γ)) followed by the full Hadamard Q of size hidden; the o input gets the full
// Hadamard of size H·D (per-head H_hd fused into v, across-head H_H online: their product),
// the down input the full Hadamard of size intermediate. Same logits as the model-level
// construction up to float rounding. A size without a Hadamard construction → Error naming it.
#include <string>
#include <string_view>
#include <vector>

namespace mxlens {

enum class Method {
  fp,
  rtn,
  smooth,
  hadamard,
  random,
  quarot,
  duquant,
  duquantpp,
  duquantpp_nosmooth,
  duquantpp_gptq,
};

inline constexpr Method kAllMethods[] = {
    Method::fp,      Method::rtn,       Method::smooth,             Method::hadamard,
    Method::random,  Method::quarot,    Method::duquant,            Method::duquantpp,
    Method::duquantpp_nosmooth, Method::duquantpp_gptq};

std::string_view method_name(Method method);  // "duquantpp-gptq", ...
// One line for help texts and reports.
std::string_view method_description(Method method);
// Throws Error(source, "unknown method 'x' (known: ...)").
Method parse_method(std::string_view name, std::string_view source = "--method");
// Comma-separated list, e.g. "fp,rtn,duquantpp"; duplicates and empty items are errors.
std::vector<Method> parse_method_list(std::string_view list, std::string_view source = "--methods");

bool method_quantizes(Method method);       // everything but fp
bool method_smooths(Method method);         // smooth, duquant, duquantpp, duquantpp-gptq
bool method_searches(Method method);        // duquant, duquantpp*, (greedy searches on data)
bool method_uses_gptq(Method method);       // duquantpp-gptq
bool method_needs_statistics(Method method);  // smoothing statistics or a search

}  // namespace mxlens
