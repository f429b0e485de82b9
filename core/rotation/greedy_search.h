#pragma once
// DuQuant++ greedy search for one site (algorithm.md §4.4): from calibration activations X
// (T×C), reshaped to Z ((T·C/n)×n, one row per n-channel block of one token), find the block
// rotation R that minimizes the objective of Z·R, keeping the best prefix of S greedy steps.
#include <cstdint>

#include <Eigen/Core>

#include "core/model/site_taps.h"
#include "core/rotation/block_rotation.h"
#include "core/rotation/greedy_trace.h"
#include "core/util/progress.h"

namespace mxlens {

struct GreedyOptions {
  int block_size = 32;  // n (DuQuant++: 32 = the MX block; original DuQuant: 128)
  int max_steps = 128;  // S (DuQuant++ run.sh; the code's CLI default is 256)
  GreedySelection selection = GreedySelection::paper;
  GreedyObjective objective = GreedyObjective::range;
  // Q' is drawn from derive_seed(seed, layer, site, stage): one per (layer, site) search.
  uint64_t seed = 0;
  int layer = 0;
  int site = 0;     // e.g. int(Site)
  int stage = 0;    // 0 for DuQuant++; DuQuant's two searches use 1 and 2
  int threads = 0;  // ≤ 0: OpenMP default
};

struct GreedyResult {
  BlockRotation rotation;  // = trace.rotation()
  GreedyTrace trace;
};

// z: N×n, every row one block. Throws Error on a wrong width, no rows or non-finite input;
// Cancelled when progress is cancelled between steps.
GreedyResult greedy_search_blocks(Eigen::Ref<const RowMatrixXf> z, const GreedyOptions& options,
                                  const Progress* progress = nullptr);
// x: T×C activations, C a multiple of n (else Error naming C and n).
GreedyResult greedy_search(Eigen::Ref<const RowMatrixXf> x, const GreedyOptions& options,
                           const Progress* progress = nullptr);

// The objective of one matrix (rows × n), computed directly: for tests and views.
double greedy_objective(Eigen::Ref<const RowMatrixXf> z, GreedyObjective objective);

}  // namespace mxlens
