#include "core/mx/quant_options.h"

#include <string>

#include "core/util/error.h"

namespace mxlens {

std::string_view to_string(ScaleRule rule) {
  switch (rule) {
    case ScaleRule::ocp_floor:
      return "ocp_floor";
    case ScaleRule::fpquant:
      return "fpquant";
    case ScaleRule::rceil:
      return "rceil";
    case ScaleRule::dqv2_log8:
      return "dqv2_log8";
  }
  return "?";
}

std::string_view to_string(Rounding rounding) {
  return rounding == Rounding::rne ? "rne" : "ggml";
}

ScaleRule parse_scale_rule(std::string_view name, std::string_view source) {
  for (ScaleRule r :
       {ScaleRule::ocp_floor, ScaleRule::fpquant, ScaleRule::rceil, ScaleRule::dqv2_log8}) {
    if (name == to_string(r)) return r;
  }
  throw Error(std::string(source), "unknown scale rule '" + std::string(name) +
                                       "' (expected ocp_floor, fpquant, rceil or dqv2_log8)");
}

Rounding parse_rounding(std::string_view name, std::string_view source) {
  if (name == "rne") return Rounding::rne;
  if (name == "ggml") return Rounding::ggml;
  throw Error(std::string(source),
              "unknown rounding '" + std::string(name) + "' (expected rne or ggml)");
}

}  // namespace mxlens
