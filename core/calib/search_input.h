#pragma once
// What a site's rotation search saw, rebuilt from a session for the Greedy view: the sampled
// activation rows of the site (SiteStats::sample_before, as they arrived in the quantized
// model) with the site's smoothing division applied where the forward applies it online
// (QuantPlan::transform_activations without the rotation), reshaped to one n-channel block per
// row — the Z of algorithm.md §4.4 (up to the search using the mean window of §4.6 rather than
// these real token rows).
#include "core/calib/session.h"

namespace mxlens {

// Z for the last trace of (layer, site): [rows · C/n, n]. Empty when the session has no
// samples or no trace there, or C is not a multiple of n.
RowMatrixXf search_input_blocks(const Session& session, int layer, Site site);

}  // namespace mxlens
