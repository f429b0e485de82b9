// OutliersView draws exactly the SiteStats it is given: every heatmap cell, every bar, the
// labelled channels, block lines, hover text; exports; empty stats; switching stats.
#include <algorithm>
#include <cmath>
#include <memory>
#include <numeric>

#include <QDir>
#include <QElapsedTimer>
#include <QFile>
#include <QMenu>
#include <QTemporaryDir>
#include <QtTest>

#include "core/mx/mxfp4.h"
#include "widgets/outliers_view.h"
#include "widgets/plot_panel.h"

using namespace mxlens;

namespace {

constexpr int kOutlier = 37;

// channels × rows of known values: an outlier channel (37, block 1) in `before`, a flatter
// `after` with one exact zero, absmax a little above the sampled maximum, and one channel (70)
// whose absmax is large though its sampled rows are not (the stats see all tokens).
SiteStats makeStats(int channels = 96, int rows = 8) {
  SiteStats s;
  s.channels = channels;
  s.blocks = (channels + kStatsBlock - 1) / kStatsBlock;
  s.tokens = 1234;
  s.sample_before.resize(rows, channels);
  s.sample_after.resize(rows, channels);
  for (int r = 0; r < rows; ++r) {
    s.sample_tokens.push_back(int64_t(r) * 17 + 3);
    for (int c = 0; c < channels; ++c) {
      const float sign = (r + c) % 2 ? -1.0f : 1.0f;
      const float base = c == kOutlier ? 100.0f : 0.5f + 0.01f * float(c);
      s.sample_before(r, c) = sign * base * (1.0f + 0.1f * float(r));
      s.sample_after(r, c) = -sign * (0.25f + 0.005f * float(c + r));
    }
  }
  if (rows > 3 && channels > 5) s.sample_after(3, 5) = 0.0f;
  s.absmax_before.resize(size_t(channels));
  s.absmax_after.resize(size_t(channels));
  for (int c = 0; c < channels; ++c) {
    s.absmax_before[size_t(c)] =
        (rows ? s.sample_before.col(c).cwiseAbs().maxCoeff() : 1.0f) * 1.25f + 0.001f * float(c);
    s.absmax_after[size_t(c)] = (rows ? s.sample_after.col(c).cwiseAbs().maxCoeff() : 0.5f) * 1.5f;
  }
  if (channels > 70) s.absmax_before[70] = 60.0f;
  s.e8m0_hist_before.assign(size_t(s.blocks) * 256, 0);
  s.e8m0_hist_after.assign(size_t(s.blocks) * 256, 0);
  s.signal_before.assign(size_t(s.blocks), 1.0);
  s.noise_before.assign(size_t(s.blocks), 0.1);
  s.signal_after.assign(size_t(s.blocks), 1.0);
  s.noise_after.assign(size_t(s.blocks), 0.01);
  return s;
}

int countItems(QCustomPlot* plot, const char* class_name, bool visible_only = true) {
  int n = 0;
  for (int i = 0; i < plot->itemCount(); ++i) {
    QCPAbstractItem* item = plot->item(i);
    if (item->inherits(class_name) && (!visible_only || item->visible())) ++n;
  }
  return n;
}

QByteArray head(const QString& path, int n) {
  QFile f(path);
  if (!f.open(QIODevice::ReadOnly)) return {};
  return f.read(n);
}

void render(QWidget* w, const QString& name) {
  w->resize(1400, 900);
  w->show();
  QCoreApplication::processEvents();
  const QString path = QDir(QDir::tempPath()).filePath(name);
  QVERIFY2(w->grab().save(path), qPrintable(path));
  qInfo("rendered %s", qPrintable(path));
}

}  // namespace

class TestOutliersView : public QObject {
  Q_OBJECT

 private slots:
  void heatmapCellsAreAbsX() {
    const SiteStats s = makeStats();
    OutliersView view;
    view.setStats(s, "none", "DuQuant++");
    const QCPColorMap* maps[2] = {view.beforeMap(), view.afterMap()};
    const RowMatrixXf* samples[2] = {&s.sample_before, &s.sample_after};

    // The documented range: hi = largest |x|, lo = smallest positive |x| (within 6 decades).
    double hi = 0, lo = INFINITY;
    for (const RowMatrixXf* m : samples)
      for (Eigen::Index i = 0; i < m->size(); ++i) {
        const double a = std::fabs(double(m->data()[i]));
        hi = std::max(hi, a);
        if (a > 0) lo = std::min(lo, a);
      }
    QCOMPARE(view.colorRange().lower, lo);
    QCOMPARE(view.colorRange().upper, hi);

    for (int k = 0; k < 2; ++k) {
      const QCPColorMap* map = maps[k];
      QVERIFY(map->visible());
      QVERIFY(!map->interpolate());
      QCOMPARE(map->colorScale(), view.colorScale());  // one shared scale
      QCOMPARE(map->dataRange(), view.colorRange());
      QCOMPARE(map->dataScaleType(), QCPAxis::stLogarithmic);
      QCOMPARE(map->data()->keySize(), 96);
      QCOMPARE(map->data()->valueSize(), 8);
      for (int r = 0; r < 8; ++r)
        for (int c = 0; c < 96; ++c) {
          const double expect = std::max(std::fabs(double((*samples[k])(r, c))), lo);
          QCOMPARE(map->data()->cell(c, r), expect);
        }
    }
    // The zero in `after` draws at the bottom of the range.
    QCOMPARE(view.afterMap()->data()->cell(5, 3), lo);
    QVERIFY(view.message().isEmpty());
  }

  void barsAreAbsmax() {
    const SiteStats s = makeStats();
    OutliersView view;
    view.setStats(s, "none", "after");
    for (bool after : {false, true}) {
      const std::vector<float>& want = after ? s.absmax_after : s.absmax_before;
      const QVector<double> bars = view.absmaxBars(after);
      QCOMPARE(bars.size(), qsizetype(want.size()));
      for (size_t c = 0; c < want.size(); ++c) QCOMPARE(bars[qsizetype(c)], double(want[c]));
    }
  }

  void labelsAreTopKChannels() {
    const SiteStats s = makeStats();
    OutliersView view;
    view.setStats(s, "none", "after");
    std::vector<int> order(96);
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int a, int b) {
      return s.absmax_before[size_t(a)] > s.absmax_before[size_t(b)];
    });
    const QList<int> want(order.begin(), order.begin() + OutliersView::kLabelledChannels);
    QCOMPARE(view.labelledChannels(), want);
    QCOMPARE(want.at(0), kOutlier);
    QCOMPARE(want.at(1), 70);
    // One text item per labelled channel, showing its index at its bar.
    QCustomPlot* bars = view.barsPlot();
    QList<int> shown;
    for (int i = 0; i < bars->itemCount(); ++i)
      if (auto* text = qobject_cast<QCPItemText*>(bars->item(i)); text && text->visible()) {
        shown << text->text().toInt();
        QCOMPARE(text->position->coords().x(), double(shown.back()));
        QCOMPARE(text->position->coords().y(), double(s.absmax_before[size_t(shown.back())]));
      }
    QCOMPARE(shown, want);
  }

  void blockLinesEvery32Channels() {
    OutliersView view;
    view.setStats(makeStats(), "none", "after");
    QList<double> xs;
    QCustomPlot* heat = view.heatmapPlot();
    for (int i = 0; i < heat->itemCount(); ++i)
      if (auto* line = qobject_cast<QCPItemStraightLine*>(heat->item(i))) {
        QCOMPARE(line->point1->coords().x(), line->point2->coords().x());
        xs << line->point1->coords().x();
      }
    std::sort(xs.begin(), xs.end());
    QCOMPARE(xs, (QList<double>{31.5, 31.5, 63.5, 63.5}));  // both heatmaps
    QCOMPARE(countItems(view.barsPlot(), "QCPItemStraightLine"), 2);
  }

  void hoverNamesCellAndBlockScale() {
    const SiteStats s = makeStats();
    OutliersView view;
    QuantOptions mx;
    view.setStats(s, "none", "after", mx);
    const QString text = view.cellText(false, 2, kOutlier);
    QVERIFY2(text.contains("row 2 (token 37)"), qPrintable(text));
    QVERIFY2(text.contains("channel 37, block 1"), qPrintable(text));
    QVERIFY2(text.contains(QString::number(double(s.sample_before(2, kOutlier)), 'g', 6)),
             qPrintable(text));
    // The byte of row 2's block 1, computed here from the block itself.
    float amax = 0;
    for (int c = 32; c < 64; ++c) amax = std::max(amax, std::fabs(s.sample_before(2, c)));
    const uint8_t byte = mxfp4_block_scale(amax, mx.scale_rule).byte;
    QCOMPARE(int(byte), 127 + int(std::floor(std::log2(amax))) - 2);
    QVERIFY2(text.contains(QStringLiteral("E8M0 %1 ").arg(byte)), qPrintable(text));
    QVERIFY(view.cellText(true, 8, 0).isEmpty());
    QVERIFY(view.cellText(false, 0, 96).isEmpty());
    QVERIFY(view.barText(70).contains("channel 70, block 2"));
  }

  void axesAreLinkedAndDoubleClickResets() {
    OutliersView view;
    view.setStats(makeStats(), "none", "after");
    view.resize(1000, 700);
    view.show();
    QCoreApplication::processEvents();
    QCustomPlot* heat = view.heatmapPlot();
    QCPAxis* bx = view.beforeMap()->keyAxis();
    QCPAxis* ax = view.afterMap()->keyAxis();
    QCPAxis* by = view.beforeMap()->valueAxis();
    QCPAxis* ay = view.afterMap()->valueAxis();
    bx->setRange(10, 20);
    by->setRange(1, 3);
    QCOMPARE(ax->range(), QCPRange(10, 20));
    QCOMPARE(ay->range(), QCPRange(1, 3));
    QCOMPARE(view.barsPlot()->xAxis->range(), QCPRange(10, 20));
    ax->setRange(40, 50);
    QCOMPARE(bx->range(), QCPRange(40, 50));

    QTest::mouseDClick(heat, Qt::LeftButton, {}, heat->rect().center());
    QCOMPARE(bx->range(), QCPRange(-0.5, 95.5));
    QCOMPARE(ay->range(), QCPRange(-0.5, 7.5));
    QVERIFY(heat->interactions().testFlag(QCP::iRangeDrag));
    QVERIFY(heat->interactions().testFlag(QCP::iRangeZoom));
  }

  void exportsWriteTheirFormats() {
    OutliersView view;
    view.setStats(makeStats(), "none", "after");
    QTemporaryDir dir;
    QVERIFY(dir.isValid());
    QString error;
    const QString png = dir.filePath("o.png"), pdf = dir.filePath("o.PDF");
    QVERIFY2(exportPlot(view.heatmapPlot(), png, &error), qPrintable(error));
    QCOMPARE(head(png, 8), QByteArray("\x89PNG\r\n\x1a\n"));
    QVERIFY2(view.barsPanel()->exportTo(pdf, &error), qPrintable(error));
    QCOMPARE(head(pdf, 4), QByteArray("%PDF"));
    const QString svg = dir.filePath("o.svg");
    if (svgExportAvailable()) {
      QVERIFY2(exportPlot(view.heatmapPlot(), svg, &error), qPrintable(error));
      QVERIFY(QFile(svg).size() > 0);
      QFile f(svg);
      QVERIFY(f.open(QIODevice::ReadOnly));
      QVERIFY(f.readAll().contains("<svg"));
    } else {
      QVERIFY(!exportPlot(view.heatmapPlot(), svg, &error));
      QVERIFY2(error.contains("Qt SVG"), qPrintable(error));
      QVERIFY(!QFile::exists(svg));
    }
    QVERIFY(!exportPlot(view.heatmapPlot(), dir.filePath("o.xyz"), &error));
    QVERIFY2(error.contains("o.xyz") && error.contains("unknown"), qPrintable(error));
    QVERIFY(!exportPlot(view.heatmapPlot(), dir.filePath("missing/dir/o.png"), &error));
    QVERIFY2(error.contains("missing/dir/o.png"), qPrintable(error));
  }

  void everyPlotHasTheExportMenu() {
    OutliersView view;
    for (PlotPanel* panel : {view.heatmapPanel(), view.barsPanel()}) {
      QCOMPARE(panel->plot()->contextMenuPolicy(), Qt::CustomContextMenu);
      std::unique_ptr<QMenu> menu(panel->createContextMenu());
      QStringList texts;
      for (QAction* a : menu->actions())
        if (!a->isSeparator()) texts << a->text();
      QCOMPARE(texts.size(), 4);
      QCOMPARE(texts[0], QStringLiteral("Reset view"));
      QCOMPARE(texts[1], QStringLiteral("Export PNG…"));
      QVERIFY(texts[2].startsWith(QStringLiteral("Export SVG…")));
      QCOMPARE(texts[3], QStringLiteral("Export PDF…"));
      QCOMPARE(menu->actions()[3]->isEnabled(), svgExportAvailable());
    }
  }

  void noSamplesShowsMessage() {
    SiteStats s = makeStats(96, 0);
    OutliersView view;
    view.setStats(s, "none", "after");
    QCOMPARE(view.message(), OutliersView::kNoSamplesMessage);
    QVERIFY(!view.beforeMap()->visible());
    QVERIFY(!view.afterMap()->visible());
    QCOMPARE(countItems(view.heatmapPlot(), "QCPItemStraightLine"), 0);
    QCOMPARE(countItems(view.heatmapPlot(), "QCPItemText"), 1);  // the message itself
    for (int i = 0; i < view.heatmapPlot()->itemCount(); ++i)
      if (auto* text = qobject_cast<QCPItemText*>(view.heatmapPlot()->item(i))) {
        QCOMPARE(text->text(), OutliersView::kNoSamplesMessage);
        QVERIFY(text->realVisibility());  // drawn, not only flagged visible
      }
    for (QCPAxisRect* rect : view.heatmapPlot()->axisRects()) QVERIFY(!rect->realVisibility());
    QCOMPARE(view.absmaxBars(false).size(), 96);  // the bars still draw
    render(&view, "mxlens_outliers_view_no_samples.png");
    QString error;
    QTemporaryDir dir;
    QVERIFY2(exportPlot(view.heatmapPlot(), dir.filePath("m.png"), &error), qPrintable(error));

    // Samples arrive: the message goes, data shows.
    view.setStats(makeStats(), "none", "after");
    QVERIFY(view.message().isEmpty());
    QVERIFY(view.beforeMap()->visible());
    QCOMPARE(countItems(view.heatmapPlot(), "QCPItemText"), 0);

    view.setStats(SiteStats{}, QString(), QString());  // nothing at all
    QVERIFY(!view.message().isEmpty());
    QVERIFY(view.absmaxBars(false).isEmpty());
    QVERIFY(view.labelledChannels().isEmpty());
    view.clear();
    QVERIFY(!view.grab().isNull());
  }

  void switchingStatsReplacesData() {
    OutliersView view;
    view.setStats(makeStats(96, 8), "none", "a");
    view.setStats(makeStats(64, 4), "none", "b");
    QCOMPARE(view.beforeMap()->data()->keySize(), 64);
    QCOMPARE(view.afterMap()->data()->valueSize(), 4);
    QCOMPARE(view.absmaxBars(true).size(), 64);
    // One boundary (x = 31.5) per heatmap and in the bars, five labels: nothing left over.
    QCOMPARE(countItems(view.heatmapPlot(), "QCPAbstractItem"), 2);
    QCOMPARE(countItems(view.barsPlot(), "QCPAbstractItem"), 1 + OutliersView::kLabelledChannels);
    QCOMPARE(view.barsPlot()->itemCount(), 1 + OutliersView::kLabelledChannels);
    QCOMPARE(view.barsPlot()->plottableCount(), 2);
    QCOMPARE(view.heatmapPlot()->plottableCount(), 2);
    QCOMPARE(view.beforeMap()->keyAxis()->range(), QCPRange(-0.5, 63.5));

    // 40 channels: a short last block still gets its boundary, cells still match.
    const SiteStats odd = makeStats(40, 3);
    view.setStats(odd, "none", "c");
    QCOMPARE(countItems(view.heatmapPlot(), "QCPItemStraightLine"), 2);
    QCOMPARE(view.beforeMap()->data()->cell(39, 2),
             std::max(std::fabs(double(odd.sample_before(2, 39))), view.colorRange().lower));
  }

  void followsPalette() {
    OutliersView view;
    view.setStats(makeStats(), "none", "after");
    QPalette dark;
    dark.setColor(QPalette::Window, QColor(30, 30, 30));
    dark.setColor(QPalette::WindowText, QColor(230, 230, 230));
    dark.setColor(QPalette::Base, QColor(20, 20, 20));
    dark.setColor(QPalette::Text, QColor(230, 230, 230));
    view.setPalette(dark);
    QCOMPARE(view.beforeMap()->keyAxis()->tickLabelColor(), QColor(230, 230, 230));
    QCOMPARE(view.barsPlot()->xAxis->basePen().color(), QColor(230, 230, 230));
    QCOMPARE(view.colorScale()->axis()->labelColor(), QColor(230, 230, 230));
    QCOMPARE(view.barsPlot()->axisRect()->backgroundBrush().color(), QColor(20, 20, 20));
    for (int i = 0; i < view.barsPlot()->itemCount(); ++i)
      if (auto* text = qobject_cast<QCPItemText*>(view.barsPlot()->item(i)))
        QCOMPARE(text->color(), QColor(230, 230, 230));
    render(&view, "mxlens_outliers_view_dark.png");

    // A view born inside a dark window styles the elements it adds after its panels.
    QWidget window;
    window.setPalette(dark);
    auto* child = new OutliersView(&window);
    window.show();
    QCoreApplication::processEvents();
    for (QCPLayoutElement* e : child->heatmapPlot()->plotLayout()->elements(true))
      if (auto* title = qobject_cast<QCPTextElement*>(e))
        QCOMPARE(title->textColor(), QColor(230, 230, 230));
    QCOMPARE(child->colorScale()->axis()->basePen().color(), QColor(230, 230, 230));
    QCOMPARE(child->barsPlot()->legend->textColor(), QColor(230, 230, 230));
  }

  void rendersLayerSizeForAPerson() {
    // The shared model's largest site: 256 rows × 384 channels. Timing is printed, not checked.
    SiteStats s = makeStats(384, 256);
    OutliersView view;
    view.resize(1400, 900);
    view.show();
    QCoreApplication::processEvents();
    QElapsedTimer timer;
    timer.start();
    view.setStats(s, "none (RTN)", "DuQuant++");
    const double set_ms = double(timer.nsecsElapsed()) / 1e6;
    view.heatmapPlot()->replot();
    view.barsPlot()->replot();
    qInfo("setStats 256x384: %.2f ms, setStats + replot: %.2f ms", set_ms,
          double(timer.nsecsElapsed()) / 1e6);
    QCOMPARE(view.beforeMap()->data()->cell(kOutlier, 255),
             std::fabs(double(s.sample_before(255, kOutlier))));
    render(&view, "mxlens_outliers_view.png");
  }
};

QTEST_MAIN(TestOutliersView)
#include "test_outliers_view.moc"
