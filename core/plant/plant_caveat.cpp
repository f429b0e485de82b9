#include "core/plant/plant_caveat.h"

#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/util/error.h"

namespace mxlens {

std::optional<PlantSummary> read_plant_summary(const std::filesystem::path& model_dir) {
  const std::filesystem::path file = model_dir / "mxlens_plant.json";
  std::error_code ec;
  if (!std::filesystem::is_regular_file(file, ec)) return std::nullopt;
  std::ifstream in(file, std::ios::binary);
  if (!in) throw Error(file.string(), "cannot open the plant record");
  std::stringstream text;
  text << in.rdbuf();
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text.str());
  } catch (const nlohmann::json::exception& e) {
    throw Error(file.string(), std::string("is not valid JSON: ") + e.what());
  }
  if (!j.is_object() || !j.contains("mxlens_plant_version") || !j.contains("mode"))
    throw Error(file.string(), "is not an mxlens plant record (no mxlens_plant_version/mode)");
  try {
    PlantSummary s;
    s.mode = j.at("mode").get<std::string>();
    s.scale = j.value("scale", 1.0);
    s.hidden_channels = int(j.value("channels", nlohmann::json::array()).size());
    s.intermediate_channels = int(j.value("intermediate_channels", nlohmann::json::array()).size());
    return s;
  } catch (const nlohmann::json::exception& e) {
    throw Error(file.string(), std::string("malformed plant record: ") + e.what());
  }
}

std::string plant_caveat(const std::optional<PlantSummary>& plant) {
  if (!plant) return {};
  char buf[1024];
  if (plant->mode == "norm") {
    std::snprintf(
        buf, sizeof buf,
        "This checkpoint is a norm-mode plant (%d hidden%s channels scaled by S = %g). "
        "Its outliers carry no signal: the consumer weight columns shrank by S, so a "
        "rotation only spreads signal-free energy over the MX block. Around S = 8 "
        "rotations still win; from S = 16 on every rotation loses to RTN although "
        "exponent spread and MX error at the site improve. Smoothing undoes the plant "
        "exactly, so smoothed methods score as on the original model.",
        plant->hidden_channels,
        plant->intermediate_channels
            ? (" + " + std::to_string(plant->intermediate_channels) + " intermediate").c_str()
            : "",
        plant->scale);
  } else {
    std::snprintf(buf, sizeof buf,
                  "This checkpoint is a residual-mode plant (%d channels): the residual stream "
                  "was rotated so its top principal directions sit on single channels. Those "
                  "outliers carry real signal, as in large LLMs, so rotations should beat RTN.",
                  plant->hidden_channels);
  }
  return buf;
}

}  // namespace mxlens
