#pragma once
// The calibration text the workbench uses until the user picks one (File ▸ Calibration
// Text…): a few kilobytes of plain English prose written for mxlens (not taken from any data
// set), so that opening a model shows statistics within seconds without a download. It is
// far too short for real calibration or perplexity figures; the window says so.
#include <string_view>

namespace mxlens::gui {

// UTF-8, about 4 KB.
std::string_view defaultCalibrationText();
// How the text is named in sessions and reports.
inline constexpr const char* kDefaultTextName = "(built-in English text)";

}  // namespace mxlens::gui
