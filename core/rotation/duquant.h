#pragma once
// Original DuQuant transform (algorithm.md §4.7), run with MXFP4 as a baseline:
//   T(x) = ((x·blockdiag(R₁))·P)·blockdiag(R₂),  blocks of 128, 256 greedy steps each.
// R₁ is searched on X, the zigzag permutation P on Y = X·blockdiag(R₁), R₂ on Y·P.
#include <cstdint>
#include <span>
#include <vector>

#include <Eigen/Core>

#include "core/model/site_taps.h"
#include "core/rotation/channel_transform.h"
#include "core/rotation/greedy_search.h"
#include "core/util/progress.h"

namespace mxlens {

struct DuQuantOptions {
  int block_size = 128;
  int max_steps = 256;
  GreedySelection selection = GreedySelection::paper;
  GreedyObjective objective = GreedyObjective::range;
  uint64_t seed = 0;  // R₁'s Q' from derive_seed(seed, layer, site, 1), R₂'s from stage 2
  int layer = 0;
  int site = 0;
  int threads = 0;
};

struct DuQuantResult {
  ChannelTransform transform;        // block rotation R₁, permutation P, block rotation R₂
  BlockRotation first, second;       // R₁, R₂
  std::vector<int32_t> permutation;  // P: Y_perm[:, j] = Y[:, P[j]]
  GreedyTrace first_trace, second_trace;
};

// Bucket of the i-th channel in descending-max order: 0,1,…,K−1, K−1,…,0, 0,1,… (period 2K).
int zigzag_bucket(int64_t i, int buckets);
// The zigzag permutation from per-channel maxima m[c] = max_t |Y[t, c]|: channels sorted by m
// descending (stable), dealt to the buckets in zigzag order, each bucket sorted by m
// descending, buckets concatenated. m.size() must be a multiple of bucket_size (else Error).
std::vector<int32_t> zigzag_permutation(std::span<const float> channel_max, int bucket_size);

// x: T×C calibration activations, C a multiple of the block size (else Error naming C).
DuQuantResult duquant_transform(Eigen::Ref<const RowMatrixXf> x, const DuQuantOptions& options,
                                const Progress* progress = nullptr);

}  // namespace mxlens
