#pragma once
// `mxlens --screenshots DIR CHECKPOINT`: opens the checkpoint in a real window, waits for the
// quick calibration, shows layer 0's qkv site (where plants put their outliers), runs a short
// perplexity comparison, and saves one PNG per view into DIR (the README's pictures, taken
// under Xvfb). Blocks on the job runner, which only this batch mode and tests do.
#include <QString>

namespace mxlens::gui {

class MainWindow;

// Returns 0 on success; prints what failed and returns 1 otherwise.
// `text`: calibration and evaluation text (empty: the built-in text).
int takeScreenshots(MainWindow& window, const QString& checkpoint, const QString& out_dir,
                    const QString& text = {});

}  // namespace mxlens::gui
