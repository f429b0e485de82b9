#pragma once
// The calibration flags `calibrate` and `compare` share, and the text loading both need.
#include <CLI/CLI.hpp>
#include <cstdint>
#include <string>
#include <vector>

#include "core/calib/session.h"
#include "core/model/checkpoint.h"

namespace mxlens::cli {

struct CalibFlags {
  int windows = 128, seqlen = 2048;
  uint64_t seed = 2;
  double tail_fraction = 0.1;
  std::string format = "mxfp4", mode = "w4a4", scale_rule = "ocp_floor", rounding = "rne";
  float alpha = 0.6f;
  std::string smooth_gqa = "online";
  int steps = 128, duquant_steps = 256;
  std::string selection = "paper", objective = "range";
  uint64_t rotation_seed = 0;
  std::string gptq_hessian = "quantized";
  int stats_windows = 0, sample_rows = 256;
  double sample_budget_mb = 64;
};

// Adds the flags to `cmd` (defaults shown in --help).
void add_calibration_flags(CLI::App* cmd, CalibFlags& flags);
// The settings for `method`; throws Error naming the flag on a bad value.
CalibrationSettings to_settings(const CalibFlags& flags, Method method);

// A text file read as is, tokenized once (no special tokens; with `bos` one BOS in front).
struct LoadedText {
  std::string path, sha256;
  std::vector<int32_t> ids;
};
LoadedText load_text(const Checkpoint& checkpoint, const std::string& path, bool bos);

// One line per stage of a calibration's time split.
void print_timings(const CalibrationTimings& t);

}  // namespace mxlens::cli
