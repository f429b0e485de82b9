// Layer-switch redraw time of the workbench views (goal ≤ 50 ms on the shared model): calibrates
// DuQuant++ on a model (default: the shared tinystories-656k; pass a planted copy with --model),
// then switches the Outliers, Scales and Greedy views through every layer × site, several
// rounds, timing each switch from the first setStats/setTrace to the end of the synchronous
// repaint of the shown view and of the whole window (QWidget::repaint on a 1600×1000 window;
// offscreen platform unless a display is set).
//
//   bench_gui_redraw [--model DIR] [--data TEXT] [--windows N] [--seqlen L] [--rounds R]
#include <QApplication>
#include <QElapsedTimer>
#include <QTabWidget>
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "core/calib/calibrate.h"
#include "core/calib/search_input.h"
#include "core/eval/perplexity.h"
#include "core/io/model_fingerprint.h"
#include "core/model/checkpoint.h"
#include "core/text/tokenizer.h"
#include "core/util/error.h"
#include "widgets/greedy_view.h"
#include "widgets/outliers_view.h"
#include "widgets/scales_view.h"

using namespace mxlens;

namespace {

struct Args {
  std::string model = std::string(MXLENS_DATA_DEFAULT) + "/tinystories-656k";
  std::string data = std::string(MXLENS_DATA_DEFAULT) + "/tinystories-text/stories.txt";
  int windows = 16, seqlen = 512, rounds = 5;
};

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string k = argv[i];
    if (i + 1 >= argc) throw Error(k, "needs a value");
    const char* v = argv[++i];
    if (k == "--model")
      a.model = v;
    else if (k == "--data")
      a.data = v;
    else if (k == "--windows")
      a.windows = std::atoi(v);
    else if (k == "--seqlen")
      a.seqlen = std::atoi(v);
    else if (k == "--rounds")
      a.rounds = std::atoi(v);
    else
      throw Error(k, "unknown option");
  }
  return a;
}

void summarize(const char* what, std::vector<double> ms) {
  std::sort(ms.begin(), ms.end());
  const double median = ms[ms.size() / 2], p90 = ms[size_t(double(ms.size()) * 0.9)],
               worst = ms.back();
  std::printf("%-34s median %7.2f ms   p90 %7.2f ms   max %7.2f ms   (%zu switches, goal 50 ms)\n",
              what, median, p90, worst, ms.size());
}

}  // namespace

int main(int argc, char** argv) {
  if (qEnvironmentVariableIsEmpty("DISPLAY") && qEnvironmentVariableIsEmpty("QT_QPA_PLATFORM"))
    qputenv("QT_QPA_PLATFORM", "offscreen");
  QApplication app(argc, argv);
  try {
    const Args a = parse(argc, argv);
    const Checkpoint ckpt = Checkpoint::open(a.model);
    const LlamaWeights weights(ckpt);
    const auto tok = Tokenizer::load(*ckpt.tokenizer_json());
    const std::vector<int32_t> ids = tokenize_text_file(tok, a.data, false);
    CalibrationSettings s;
    s.method = Method::duquantpp;
    s.windows.count = a.windows;
    s.windows.seqlen = a.seqlen;
    QElapsedTimer t;
    t.start();
    const Session session =
        calibrate(ckpt, weights, CalibrationText{a.data, sha256_file(a.data), ids}, s, 2);
    std::printf(
        "model %s: %d layers; DuQuant++ calibration %d x %d tokens in %.1f s, %lld rows "
        "sampled per site\n",
        a.model.c_str(), weights.config().num_layers, a.windows, session.settings.windows.seqlen,
        double(t.elapsed()) / 1000,
        static_cast<long long>(session.stats[0][0].sample_before.rows()));

    QTabWidget window;
    auto* outliers = new OutliersView;
    auto* scales = new ScalesView;
    auto* greedy = new GreedyView;
    window.addTab(outliers, "Outliers");
    window.addTab(scales, "Scales");
    window.addTab(greedy, "Greedy search");
    window.resize(1600, 1000);
    window.show();
    app.processEvents();

    struct Item {
      int layer;
      Site site;
    };
    std::vector<Item> items;
    for (int l = 0; l < weights.config().num_layers; ++l)
      for (Site site : kAllSites) items.push_back({l, site});
    std::vector<std::vector<double>> shown(3), all;
    all.resize(1);
    for (int round = 0; round < a.rounds; ++round)
      for (const Item& it : items) {
        const SiteStats& st = session.stats[size_t(it.layer)][size_t(it.site)];
        const auto& traces = session.searches[size_t(it.layer)][size_t(it.site)].traces;
        for (int tab = 0; tab < 3; ++tab) {
          window.setCurrentIndex(tab);
          app.processEvents();
          QElapsedTimer timer;
          timer.start();
          if (tab == 0) outliers->setStats(st, "before", "DuQuant++", s.stats.mx);
          if (tab == 1) scales->setStats(st, s.stats.mx, "before", "DuQuant++");
          if (tab == 2 && !traces.empty())
            greedy->setTrace(traces.back(), search_input_blocks(session, it.layer, it.site));
          app.processEvents();  // queued replots render the plots' buffers
          window.repaint();     // then one synchronous paint of the window
          app.processEvents();
          shown[size_t(tab)].push_back(double(timer.nsecsElapsed()) / 1e6);
        }
        // A whole switch as the window does it: every view updated, the shown one painted.
        QElapsedTimer timer;
        timer.start();
        outliers->setStats(st, "before", "DuQuant++", s.stats.mx);
        scales->setStats(st, s.stats.mx, "before", "DuQuant++");
        if (!traces.empty())
          greedy->setTrace(traces.back(), search_input_blocks(session, it.layer, it.site));
        app.processEvents();
        window.repaint();
        app.processEvents();
        all[0].push_back(double(timer.nsecsElapsed()) / 1e6);
      }
    summarize("Outliers view (update + paint)", shown[0]);
    summarize("Scales view (update + paint)", shown[1]);
    summarize("Greedy view (update + paint)", shown[2]);
    summarize("all three views updated, one shown", all[0]);
  } catch (const Error& e) {
    std::fprintf(stderr, "bench_gui_redraw: %s\n", e.what());
    return 1;
  }
  return 0;
}
