#include "core/model/fp_quant_config.h"

#include <cmath>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>

#include "core/mx/e2m1.h"
#include "core/util/error.h"

namespace mxlens {

bool FpQuantConfig::quantizes(std::string_view module) const {
  for (const std::string& m : modules_to_not_convert) {
    if (module == m) return false;
    // transformers matches by suffix of the dotted name ("lm_head" matches "lm_head").
    if (module.size() > m.size() && module.ends_with(m) &&
        module[module.size() - m.size() - 1] == '.')
      return false;
  }
  return true;
}

std::optional<FpQuantConfig> read_fp_quant_config(const std::filesystem::path& path) {
  std::ifstream f(path);
  if (!f) throw Error(path.string(), "cannot open");
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(f);
  } catch (const std::exception& e) {
    throw Error(path.string(), std::string("not valid JSON: ") + e.what());
  }
  if (!j.contains("quantization_config") || j["quantization_config"].is_null()) return std::nullopt;
  const nlohmann::json& q = j["quantization_config"];
  const std::string src = path.string();
  if (!q.is_object()) throw Error(src, "quantization_config must be an object");
  const std::string method = q.value("quant_method", std::string());
  if (method != "fp_quant")
    throw Error(src, "quantization_config.quant_method is '" + method +
                         "'; mxlens opens unquantized checkpoints and fp_quant (MXFP4) ones");
  auto str = [&](const char* key, const char* fallback) {
    if (!q.contains(key)) return std::string(fallback);
    if (!q[key].is_string())
      throw Error(src, std::string("quantization_config.") + key + " must be a string");
    return q[key].get<std::string>();
  };
  FpQuantConfig c;
  // Older fp_quant defaults to mxfp4, one transformers version to nvfp4: absent is ambiguous.
  const std::string dtype = str("forward_dtype", "");
  if (dtype != "mxfp4")
    throw Error(src, "quantization_config.forward_dtype is '" + dtype +
                         "'; only \"mxfp4\" is supported (write it explicitly)");
  c.forward_method = str("forward_method", "abs_max");
  if (c.forward_method != "abs_max")
    throw Error(src, "quantization_config.forward_method '" + c.forward_method +
                         "' is not supported (only abs_max)");
  if (q.value("pseudoquantization", false))
    throw Error(src, "pseudo-quantized fp_quant checkpoints (dqweight) are not supported");
  if (q.contains("hadamard_group_size")) {
    if (!q["hadamard_group_size"].is_number_integer())
      throw Error(src, "quantization_config.hadamard_group_size must be an integer");
    c.group_size = q["hadamard_group_size"].get<int>();
  }
  if (c.group_size != 32 && c.group_size != 64 && c.group_size != 128)
    throw Error(src, "quantization_config.hadamard_group_size is " + std::to_string(c.group_size) +
                         "; MXFP4 needs 32, 64 or 128");
  if (q.contains("modules_to_not_convert") && q["modules_to_not_convert"].is_array())
    for (const auto& m : q["modules_to_not_convert"])
      if (m.is_string()) c.modules_to_not_convert.push_back(m.get<std::string>());
  if (q.contains("mxlens") && q["mxlens"].is_object()) {
    const nlohmann::json& m = q["mxlens"];
    c.mxlens_method = m.value("method", std::string());
    c.activation_scale_rule = m.value("activation_scale_rule", std::string());
    c.activation_rounding = m.value("activation_rounding", std::string());
    c.activations_quantized = m.value("activations_quantized", true);
  }
  return c;
}

void decode_fp_quant_weight(std::span<const uint8_t> packed, std::span<const uint8_t> scales,
                            float global_scale, int64_t out, int64_t in, std::span<float> dst) {
  if (in % 32 != 0 || int64_t(packed.size()) != out * in / 2 ||
      int64_t(scales.size()) != out * in / 32 || int64_t(dst.size()) != out * in)
    throw Error("fp_quant", "stored weight sizes do not match [" + std::to_string(out) + ", " +
                                std::to_string(in) + "]");
  float block_scale[256];
  for (int b = 0; b < 256; ++b)
    block_scale[b] = b == 0xFF ? std::numeric_limits<float>::quiet_NaN()
                               : std::ldexp(1.0f, b - 127) / global_scale;
  for (int64_t i = 0; i < out * in; i += 2) {
    const uint8_t byte = packed[size_t(i / 2)];
    const float s = block_scale[scales[size_t(i / 32)]];
    dst[size_t(i)] = e2m1_decode(uint8_t(byte & 0xF)) * s;
    dst[size_t(i + 1)] = e2m1_decode(uint8_t(byte >> 4)) * s;
  }
}

}  // namespace mxlens
