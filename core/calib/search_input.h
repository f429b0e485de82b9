#pragma once
// What a site's rotation search saw, rebuilt from a session for the Greedy view: the sampled
// activation rows of the site (SiteStats::sample_before, as they arrived in the quantized
// model) with the site's smoothing division applied where the forward applies it online
// (QuantPlan::transform_activations without the rotation), reshaped to one n-channel block per
// row — the Z of algorithm.md §4.4 (up to the search using the mean window of §4.6 rather than
// these real token rows).
#include <optional>

#include "core/calib/session.h"

namespace mxlens {

// Z for the last trace of (layer, site): [rows · C/n, n]. Empty when the session has no
// samples or no trace there, or C is not a multiple of n.
RowMatrixXf search_input_blocks(const Session& session, int layer, Site site);

// The site's statistics as if the search had stopped at step k (0 ≤ k ≤ S of the last trace):
// "after" = the search input (search_input_blocks) times R_k, "before" = the sampled rows as
// they arrived. Both sides are computed from the sampled rows only (absmax, mean/RMS, E8M0
// histograms, MX error with the session's statistics rule), so they compare like with like;
// `tokens` is the number of sampled rows. At k = best_step this reproduces the session's
// sample_after up to float rounding. For the Outliers and Scales views following the Greedy
// stepper. nullopt where search_input_blocks is empty.
std::optional<SiteStats> site_stats_at_step(const Session& session, int layer, Site site, int k);

// Fills every per-channel and per-block member of a SiteStats from sampled rows (before and
// after, same shape), with MXFP4 under `mx`.
SiteStats site_stats_from_rows(const RowMatrixXf& before, const RowMatrixXf& after,
                               const QuantOptions& mx);

}  // namespace mxlens
