#pragma once
// Wall-clock timestamps for provenance (sessions, evaluation records).
#include <string>

namespace mxlens {

// Now in UTC as ISO 8601, e.g. "2026-11-23T21:30:00Z".
std::string utc_now_iso8601();

}  // namespace mxlens
