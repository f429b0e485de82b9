#pragma once
// What a planted-outlier checkpoint's results mean (issue: planted outliers; algorithm.md §10b).
// A `norm`-mode plant scales RMSNorm channels up by S and the consumer columns down by S: its
// outliers carry no extra signal, so beyond S ≈ 8–16 every rotation spreads signal-free energy
// into the MX block and loses to RTN, and smoothing undoes the plant exactly. Reports and views
// show this caveat next to their numbers instead of letting the numbers mislead.
#include <filesystem>
#include <optional>
#include <string>

namespace mxlens {

struct PlantSummary {
  std::string mode;  // "norm" or "residual"
  double scale = 1;  // S (norm mode)
  int hidden_channels = 0, intermediate_channels = 0;
};

// Reads DIR/mxlens_plant.json when present; nullopt for an ordinary checkpoint. Throws Error
// naming the file when it exists but is not a plant record.
std::optional<PlantSummary> read_plant_summary(const std::filesystem::path& model_dir);

// One paragraph for reports: what the plant is and how to read rotation vs RTN vs smoothing
// results on it. Empty for an ordinary checkpoint.
std::string plant_caveat(const std::optional<PlantSummary>& plant);

}  // namespace mxlens
