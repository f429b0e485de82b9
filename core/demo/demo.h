#pragma once
// The embedded demo: seeded synthetic activations with planted outliers, quantized to MXFP4
// before and after a 32x32 block Hadamard rotation and the DuQuant++ greedy-32 rotation
// (algorithm.md §4.4, paper selection), summarized per block, plus the W4A4 output error of one
// linear layer under each. Needs no files; `mxlens-cli demo` prints it. (Setup after
// algorithm.md §10 item 10, smaller by default.)
#include <cstdint>
#include <string>
#include <vector>

#include "core/mx/quant_options.h"

namespace mxlens {

struct DemoConfig {
  int tokens = 256;             // rows
  int channels = 256;           // columns; a multiple of 32
  int outliers = 3;             // planted outlier channels
  float outlier_scale = 32.0f;  // their magnitude factor
  float token_scale = 8.0f;     // factor of the one outlier token
  float channel_sigma = 0.5f;   // channel scales exp(sigma * N(0,1)) (log-normal)
  uint64_t seed = 1;
  int greedy_steps = 128;  // DuQuant++ search steps S
  int calib_tokens = 64;   // tokens the search sees (evenly spaced, at most `tokens`)
  int out_features = 128;  // rows of the random weight W of the linear-layer check
  QuantOptions quant;      // MXFP4 rule used for the error numbers and exponents
};

// Per-variant statistics; per-block vectors have n_blocks = channels/32 entries.
struct DemoVariant {
  std::string name;                             // "identity", "hadamard32", "duquant++32"
  std::vector<int> exponent;                    // tokens x n_blocks: E8M0 exponent k = e - 127
  std::vector<int> exponent_min, exponent_max;  // per block, over tokens
  std::vector<double> crest_octaves;            // per block: mean over tokens of log2(amax / rms)
  // Errors are measured in the original channel basis: x_hat = Q(x R) R^T (R = I, H or greedy).
  std::vector<double> block_rel_error;  // per block: ||x - x_hat|| / ||x|| over all tokens
  std::vector<double> block_sqnr_db;    // per block: 10 log10(||x||^2 / ||x - x_hat||^2)
  // per block, over its ordinary (non-outlier) channels only: what an outlier's inflated
  // exponent does to its 31 neighbours (equal to block_rel_error in blocks without outliers)
  std::vector<double> block_rel_error_ordinary;
  double rel_error = 0, sqnr_db = 0;  // whole tensor
  double mean_crest_octaves = 0;      // mean over blocks and tokens
};

// The DuQuant++ search behind the "duquant++32" variant.
struct DemoGreedy {
  int calib_tokens = 0;                            // rows searched on
  int max_steps = 0;                               // S
  int best_step = 0;                               // k*
  double objective_start = 0, objective_best = 0;  // range max(Z) − min(Z): peaks[0], peaks[k*]
  std::vector<int> channels;     // the channel chosen at each kept step (k* entries)
  std::vector<double> rotation;  // R (32x32, row-major, orthogonal, not symmetric)
};

// One linear y = x Wᵀ (W random out_features x channels): relative error of the W4A4 output,
// ‖Q(xR) Q(WR)ᵀ − x Wᵀ‖ / ‖x Wᵀ‖, for R = I, H32, greedy.
struct DemoLinear {
  int out_features = 0;
  double identity = 0, hadamard = 0, duquant = 0;
};

struct DemoReport {
  DemoConfig config;
  int n_blocks = 0;
  std::vector<int> outlier_channels;  // ascending
  std::vector<int> outlier_blocks;    // blocks holding at least one outlier channel, ascending
  int outlier_token = 0;
  DemoVariant identity, hadamard;  // hadamard: quantize x (I ⊗ H32/sqrt(32)), rotate back
  DemoVariant duquant;             // quantize x (I ⊗ R), rotate back with Rᵀ
  DemoGreedy greedy;
  DemoLinear linear;
};

// The activations (tokens x channels, row-major) and what was planted. Throws Error naming
// the offending option (--tokens, --channels, --outliers, --scale) on a bad config.
std::vector<float> demo_activations(const DemoConfig& config, std::vector<int>* outlier_channels,
                                    int* outlier_token);

// Normalized Sylvester Hadamard H_32/sqrt(32) (symmetric, orthonormal), row-major.
std::vector<double> hadamard32();

DemoReport run_demo(const DemoConfig& config);

}  // namespace mxlens
