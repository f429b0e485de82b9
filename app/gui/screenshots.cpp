#include "app/gui/screenshots.h"

#include <QApplication>
#include <QDir>
#include <QElapsedTimer>
#include <QTabWidget>
#include <cstdio>

#include "app/gui/job_runner.h"
#include "app/gui/main_window.h"
#include "app/gui/model_tree.h"
#include "core/calib/session.h"
#include "widgets/greedy_view.h"
#include "widgets/perplexity_view.h"

namespace mxlens::gui {

namespace {

constexpr int kWaitMs = 600000;

bool save(MainWindow& window, int tab, const QDir& dir, const QString& name) {
  window.viewTabs()->setCurrentIndex(tab);
  for (int i = 0; i < 5; ++i) QApplication::processEvents();  // queued replots, then paint
  const QString file = dir.filePath(name);
  if (!window.grab().save(file)) {
    std::fprintf(stderr, "mxlens: cannot write %s\n", qPrintable(file));
    return false;
  }
  std::printf("wrote %s\n", qPrintable(file));
  return true;
}

}  // namespace

int takeScreenshots(MainWindow& window, const QString& checkpoint, const QString& out_dir,
                    const QString& text) {
  const QDir dir(out_dir);
  if (!dir.exists()) {
    std::fprintf(stderr, "mxlens: %s: no such directory\n", qPrintable(out_dir));
    return 1;
  }
  QString failure;
  window.setErrorReporter(
      [&](const QString& title, const QString& message) { failure = title + ": " + message; });
  if (!text.isEmpty()) {
    window.setCalibrationTextFile(text);
    window.setEvaluationTextFile(text);
  }
  window.resize(1440, 900);
  window.show();
  if (!window.openCheckpoint(checkpoint) || !window.runner()->waitIdle(kWaitMs) ||
      !window.session() || !failure.isEmpty()) {
    std::fprintf(
        stderr, "mxlens: %s\n",
        qPrintable(failure.isEmpty() ? checkpoint + ": calibration did not finish" : failure));
    return 1;
  }
  window.modelTree()->selectSite(0, Site::Qkv);
  bool ok = save(window, MainWindow::OutliersTab, dir, "outliers.png");
  ok = save(window, MainWindow::ScalesTab, dir, "scales.png") && ok;
  // The Greedy tab on the site whose search lowered its objective most, at its best step.
  int best_layer = 0;
  Site best_site = Site::Qkv;
  double best_gain = -1;
  const Session& session = *window.session();
  for (size_t l = 0; l < session.searches.size(); ++l)
    for (Site site : kAllSites) {
      const auto& traces = session.searches[l][size_t(site)].traces;
      if (traces.empty()) continue;
      const GreedyTrace& t = traces.back();
      const double start = t.steps.front().objective, kept = t.steps[size_t(t.best_step)].objective;
      const double gain = start > 0 ? (start - kept) / start : 0;
      if (gain > best_gain) {
        best_gain = gain;
        best_layer = int(l);
        best_site = site;
      }
    }
  window.modelTree()->selectSite(best_layer, best_site);
  window.greedyView()->setStep(window.greedyView()->keptPrefix());
  ok = save(window, MainWindow::GreedyTab, dir, "greedy.png") && ok;
  window.modelTree()->selectSite(0, Site::Qkv);

  PerplexityRequest request = window.perplexityView()->request();
  request.methods = {Method::fp, Method::rtn, Method::smooth, Method::hadamard, Method::duquantpp};
  request.max_windows = 24;
  request.seqlen = 256;
  window.perplexityView()->setRequest(request);
  window.viewTabs()->setCurrentIndex(MainWindow::PerplexityTab);
  window.startPerplexity(request);
  if (!window.runner()->waitIdle(kWaitMs) || !failure.isEmpty()) {
    std::fprintf(stderr, "mxlens: perplexity run failed: %s\n", qPrintable(failure));
    return 1;
  }
  ok = save(window, MainWindow::PerplexityTab, dir, "perplexity.png") && ok;
  return ok ? 0 : 1;
}

}  // namespace mxlens::gui
