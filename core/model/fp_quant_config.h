#pragma once
// Reading FP-Quant checkpoints (formats.md §4.1): the quantization_config of config.json and
// the stored weights of one quantized linear. mxlens opens such a checkpoint (its own export,
// or FP-Quant's real-quant MXFP4 files) as a model whose seven linears per layer are already
// rotated and quantized; core/quant/fp_quant_plan.h turns the stored rotations into the plan
// the forward runs.
#include <cstdint>
#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace mxlens {

struct FpQuantConfig {
  int group_size = 32;                     // hadamard_group_size: 32, 64 or 128
  std::string forward_method = "abs_max";  // the runtime's activation quantizer
  std::vector<std::string> modules_to_not_convert;
  // mxlens's own record (quantization_config.mxlens): present in mxlens exports only. Empty
  // strings when absent.
  std::string mxlens_method;          // "duquantpp", ...
  std::string activation_scale_rule;  // what the session measured: "ocp_floor", ...
  std::string activation_rounding;    // "rne" / "ggml"
  bool activations_quantized = true;  // false for a W4A16 session

  // Whether module `name` (e.g. "model.layers.0.self_attn.q_proj") is stored quantized.
  bool quantizes(std::string_view module) const;
};

// nullopt when config.json has no quantization_config. Throws Error(config.json, ...) for a
// quantization_config this build cannot load: another quant_method, forward_dtype other than
// mxfp4, a group size outside {32, 64, 128}, pseudoquantization (dequantized BF16 weights),
// forward_method "quest".
std::optional<FpQuantConfig> read_fp_quant_config(const std::filesystem::path& config_json);

// Dequantized values of one stored linear, [out, in] row-major into `dst`:
// value = E2M1(code) · 2^(byte − 127) / weight_global_scale, with `packed` [out, in/2]
// (element 2k in the low nibble of byte k) and `scales` [out, in/32]. Byte 0xFF (E8M0 NaN)
// gives NaN. The scale is computed in float as 2^(byte−127) / global_scale, which for
// global_scale 3 equals core/mx's fpquant scale 2^(byte−129) · 4/3 bit for bit.
void decode_fp_quant_weight(std::span<const uint8_t> packed, std::span<const uint8_t> scales,
                            float weight_global_scale, int64_t out, int64_t in,
                            std::span<float> dst);

}  // namespace mxlens
