// ScalesView draws exactly the SiteStats it is given: exponent map cells are the E8M0 bytes,
// the histogram is the block-summed e8m0_hist, the SQNR bars are sqnr_db_*(), the summary
// carries the spreads and SQNRs; exports; empty stats; switching stats.
#include <algorithm>
#include <cmath>
#include <random>

#include <QDir>
#include <QElapsedTimer>
#include <QFile>
#include <QTemporaryDir>
#include <QtTest>

#include "core/mx/mxfp4.h"
#include "widgets/color_maps.h"
#include "widgets/plot_panel.h"
#include "widgets/scales_view.h"

using namespace mxlens;

namespace {

// Plain loops, not Eigen reductions: GCC 12 warns falsely (-Wmaybe-uninitialized) inside its
// AVX-512 intrinsics when those are inlined here.
float blockAmax(const RowMatrixXf& x, int row, int block) {
  float amax = 0;
  for (int c = block * 32; c < block * 32 + 32; ++c) amax = std::max(amax, std::fabs(x(row, c)));
  return amax;
}

// channels (a multiple of 32) × rows. `before`: log-normal magnitudes with two outlier
// channels (37 and, when present, 200) a hundred times larger; `after`: a narrower log-normal
// (what a rotation does). Row 5's block 2 of `before` is all zero (byte 0). The histograms
// count the sampled rows' bytes plus extra zero-block and NaN-block counts; signal and noise
// come from MXFP4 fake quantization of the rows, so the SQNRs are real ones.
SiteStats makeStats(int channels = 96, int rows = 8, uint32_t seed = 1) {
  SiteStats s;
  s.channels = channels;
  s.blocks = channels / kStatsBlock;
  s.tokens = 12345;
  std::mt19937 rng(seed);
  std::normal_distribution<float> wide(0.0f, 1.0f), narrow(0.0f, 0.4f);
  s.sample_before.resize(rows, channels);
  s.sample_after.resize(rows, channels);
  for (int r = 0; r < rows; ++r) {
    s.sample_tokens.push_back(int64_t(r) * 100 + 7);
    for (int c = 0; c < channels; ++c) {
      const float sign = (r * 7 + c * 3) % 5 < 2 ? -1.0f : 1.0f;
      float before = sign * std::exp(wide(rng));
      if (c == 37 || c == 200) before *= 100.0f;
      s.sample_before(r, c) = before;
      s.sample_after(r, c) = -sign * 2.0f * std::exp(narrow(rng));
    }
  }
  if (rows > 5 && channels >= 96)
    for (int c = 64; c < 96; ++c) s.sample_before(5, c) = 0.0f;

  const QuantOptions mx;
  s.e8m0_hist_before.assign(size_t(s.blocks) * 256, 0);
  s.e8m0_hist_after.assign(size_t(s.blocks) * 256, 0);
  s.signal_before.assign(size_t(s.blocks), 0.0);
  s.noise_before.assign(size_t(s.blocks), 0.0);
  s.signal_after.assign(size_t(s.blocks), 0.0);
  s.noise_after.assign(size_t(s.blocks), 0.0);
  for (bool after : {false, true}) {
    const RowMatrixXf& x = after ? s.sample_after : s.sample_before;
    RowMatrixXf q = x;
    fake_quantize_mxfp4(std::span<float>(q.data(), size_t(q.size())), mx);
    auto& hist = after ? s.e8m0_hist_after : s.e8m0_hist_before;
    auto& signal = after ? s.signal_after : s.signal_before;
    auto& noise = after ? s.noise_after : s.noise_before;
    for (int r = 0; r < rows; ++r)
      for (int b = 0; b < s.blocks; ++b) {
        hist[size_t(b) * 256 + mxfp4_block_scale(blockAmax(x, r, b), mx.scale_rule).byte]++;
        for (int c = b * 32; c < b * 32 + 32; ++c) {
          const double v = x(r, c), d = v - double(q(r, c));
          signal[size_t(b)] += v * v;
          noise[size_t(b)] += d * d;
        }
      }
  }
  s.e8m0_hist_before[0 * 256 + 0] += 3;    // zero blocks seen outside the samples
  s.e8m0_hist_before[0 * 256 + 255] += 2;  // blocks that held Inf/NaN
  s.absmax_before.assign(size_t(channels), 1.0f);
  s.absmax_after.assign(size_t(channels), 1.0f);
  return s;
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

class TestScalesView : public QObject {
  Q_OBJECT

 private slots:
  void exponentCellsAreE8M0Bytes() {
    const SiteStats s = makeStats();
    const QuantOptions mx;
    ScalesView view;
    view.setStats(s, mx, "none", "DuQuant++");
    for (bool after : {false, true}) {
      const std::vector<uint8_t> bytes = after ? s.sample_e8m0_after(mx) : s.sample_e8m0_before(mx);
      const RowMatrixXf& x = after ? s.sample_after : s.sample_before;
      const QCPColorMap* map = view.exponentMap(after);
      QVERIFY(map->visible());
      QVERIFY(!map->interpolate());
      QCOMPARE(map->data()->keySize(), 3);
      QCOMPARE(map->data()->valueSize(), 8);
      for (int r = 0; r < 8; ++r)
        for (int b = 0; b < 3; ++b) {
          // The byte, from the block itself and from core: same number, and the cell holds it.
          const uint8_t want = mxfp4_block_scale(blockAmax(x, r, b), mx.scale_rule).byte;
          QCOMPARE(bytes[size_t(r) * 3 + size_t(b)], want);
          QCOMPARE(map->data()->cell(b, r), double(want));
          QCOMPARE(view.exponentCell(after, r, b), double(want));
        }
    }
    QCOMPARE(view.exponentCell(false, 5, 2), 0.0);  // the all-zero block
    QVERIFY(view.cellText(false, 5, 2).contains("all-zero block"));
    QVERIFY(std::isnan(view.exponentCell(false, 8, 0)));

    // Colour range: the bytes present except 0, one level per byte, 2ᵏ legend.
    int lo = 255, hi = 0;
    for (const auto& bytes : {s.sample_e8m0_before(mx), s.sample_e8m0_after(mx)})
      for (uint8_t b : bytes)
        if (b != 0 && b != 255) lo = std::min<int>(lo, b), hi = std::max<int>(hi, b);
    QVERIFY(hi > lo);
    const QCPColorMap* map = view.exponentMap(false);
    QCOMPARE(map->dataRange(), QCPRange(lo, hi));
    QCOMPARE(map->gradient().levelCount(), hi - lo + 1);
    QCOMPARE(view.exponentMap(true)->colorScale(), map->colorScale());
    auto ticker = map->colorScale()->axis()->ticker().dynamicCast<QCPAxisTickerText>();
    QVERIFY(ticker);
    QCOMPARE(ticker->ticks().value(lo), powerOfTwoLabel(lo - 127));
    // Distinct neighbouring bytes get distinct colours.
    QVERIFY(categoricalColor(0) != categoricalColor(1));
  }

  void colorMapsAreWhatTheySay() {
    // Categorical: byte lo + i gets categoricalColor(i), exactly, for every byte of a range.
    const int lo = 120, hi = 140;
    QCPColorGradient cat = categoricalGradient(lo, hi);
    for (int b = lo; b <= hi; ++b)
      QCOMPARE(QColor(cat.color(b, QCPRange(lo, hi))), categoricalColor(b - lo));
    QVERIFY(categoricalColor(0) != categoricalColor(1));
    QCOMPARE(categoricalColor(categoricalColorCount()), categoricalColor(0));
    QCPColorGradient one = categoricalGradient(7, 7);
    QCOMPARE(QColor(one.color(7, QCPRange(6.5, 7.5))), categoricalColor(0));
    // Diverging: white exactly at 0 of a symmetric range, blue below, red above.
    QCPColorGradient div = divergingGradient();
    const QCPRange sym = symmetricRange(3.0);
    QCOMPARE(sym, QCPRange(-3, 3));
    QCOMPARE(QColor(div.color(0.0, sym)), QColor(Qt::white));
    QVERIFY(QColor(div.color(-3.0, sym)).blue() > QColor(div.color(-3.0, sym)).red());
    QVERIFY(QColor(div.color(3.0, sym)).red() > QColor(div.color(3.0, sym)).blue());
    QCOMPARE(symmetricRange(0.0), QCPRange(-1, 1));
    // Sequential: viridis' ends, luma (Rec. 709) rising.
    QCPColorGradient seq = sequentialGradient();
    QCOMPARE(QColor(seq.color(0.0, QCPRange(0, 1))), QColor(0x44, 0x01, 0x54));
    QCOMPARE(QColor(seq.color(1.0, QCPRange(0, 1))), QColor(0xFD, 0xE7, 0x25));
    double last = -1;
    for (int i = 0; i <= 8; ++i) {
      const QColor c(seq.color(i / 8.0, QCPRange(0, 1)));
      const double l = 0.2126 * c.redF() + 0.7152 * c.greenF() + 0.0722 * c.blueF();
      QVERIFY(l > last);
      last = l;
    }
    QCOMPARE(powerOfTwoLabel(-3), QStringLiteral("2⁻³"));
    QCOMPARE(powerOfTwoLabel(12), QStringLiteral("2¹²"));
    QCOMPARE(powerOfTwoLabel(0), QStringLiteral("2⁰"));
  }

  void hoverNamesRowBlockAndScale() {
    const SiteStats s = makeStats();
    const QuantOptions mx;
    ScalesView view;
    view.setStats(s, mx, "none", "after");
    const uint8_t byte = s.sample_e8m0_before(mx)[size_t(2) * 3 + 1];
    const QString text = view.cellText(false, 2, 1);
    QVERIFY2(text.contains("row 2 (token 207)"), qPrintable(text));
    QVERIFY2(text.contains("block 1 (channels 32–63)"), qPrintable(text));
    QVERIFY2(text.contains(
                 QStringLiteral("E8M0 %1: scale %2").arg(byte).arg(powerOfTwoLabel(byte - 127))),
             qPrintable(text));
    QVERIFY(view.cellText(true, 0, 3).isEmpty());
  }

  void histogramIsSummedHist() {
    const SiteStats s = makeStats();
    ScalesView view;
    view.setStats(s, QuantOptions{}, "none", "after");
    for (bool after : {false, true}) {
      const auto& hist = after ? s.e8m0_hist_after : s.e8m0_hist_before;
      const QVector<double> bars = view.histogramBars(after);
      QCOMPARE(bars.size(), 255);  // bytes 0..254, keyed by exponent
      for (int e = 0; e < 255; ++e) {
        double sum = 0;
        for (int b = 0; b < 3; ++b) sum += hist[size_t(b) * 256 + size_t(e)];
        QCOMPARE(bars[e], sum);
      }
      const QCPBars* plotted =
          qobject_cast<QCPBars*>(view.histogramPlot()->plottable(after ? 1 : 0));
      QVERIFY(plotted);
      QCOMPARE(plotted->data()->at(0)->key, -127.0);
      QCOMPARE(plotted->data()->at(254)->key, 127.0);
    }
    QCOMPARE(view.histogramBars(false)[0], 3.0 + 1.0);  // extra zero blocks + row 5 block 2
    QVERIFY(view.summaryText().contains("NaN blocks 2 → 0"));
  }

  void sqnrBarsAreSqnrDb() {
    SiteStats s = makeStats();
    s.noise_before[2] = 0;  // +inf: no bar
    s.signal_after[1] = 0;  // NaN: no bar
    ScalesView view;
    view.setStats(s, QuantOptions{}, "none", "after");
    for (bool after : {false, true}) {
      const std::vector<double> want = after ? s.sqnr_db_after() : s.sqnr_db_before();
      const QVector<double> bars = view.sqnrBars(after);
      QCOMPARE(bars.size(), 3);
      for (int b = 0; b < 3; ++b) {
        if (std::isfinite(want[size_t(b)]))
          QCOMPARE(bars[b], want[size_t(b)]);
        else
          QVERIFY(std::isnan(bars[b]));
      }
    }
    QVERIFY(std::isnan(view.sqnrBars(false)[2]));
    QVERIFY(std::isnan(view.sqnrBars(true)[1]));
    QVERIFY(std::isfinite(view.sqnrBars(true)[0]));
  }

  void summaryCarriesSpreadAndSqnr() {
    const SiteStats s = makeStats();
    const QuantOptions mx;
    ScalesView view;
    view.setStats(s, mx, "none", "DuQuant++");
    auto spread = [](const std::vector<uint8_t>& bytes, int rows, int blocks, int* max) {
      double total = 0;
      *max = 0;
      for (int r = 0; r < rows; ++r) {
        const auto [lo, hi] =
            std::minmax_element(bytes.begin() + r * blocks, bytes.begin() + (r + 1) * blocks);
        total += *hi - *lo;
        *max = std::max(*max, int(*hi - *lo));
      }
      return total / rows;
    };
    int max_b = 0, max_a = 0;
    const double mean_b = spread(s.sample_e8m0_before(mx), 8, 3, &max_b);
    const double mean_a = spread(s.sample_e8m0_after(mx), 8, 3, &max_a);
    QCOMPARE(mean_b, s.mean_exponent_spread_before(mx));  // agrees with core's badge number
    QCOMPARE(mean_a, s.mean_exponent_spread_after(mx));
    const QString text = view.summaryText();
    const QString want =
        QStringLiteral("exponent spread mean %1 → %2, max %3 → %4 (8 sampled rows)")
            .arg(mean_b, 0, 'f', 2)
            .arg(mean_a, 0, 'f', 2)
            .arg(max_b)
            .arg(max_a);
    QVERIFY2(text.contains(want), qPrintable(text + "\nwant: " + want));
    QVERIFY2(text.contains(QStringLiteral("SQNR %1 → %2 dB")
                               .arg(s.total_sqnr_db_before(), 0, 'f', 2)
                               .arg(s.total_sqnr_db_after(), 0, 'f', 2)),
             qPrintable(text));
    QVERIFY2(text.contains(QStringLiteral("tokens %1").arg(QLocale().toString(qlonglong(12345)))),
             qPrintable(text));
    QVERIFY(text.startsWith("none → DuQuant++"));
    QVERIFY(max_b > max_a);  // the test data: the transform narrows the spread
  }

  void noSamplesShowsMessage() {
    SiteStats s = makeStats();
    s.sample_before.resize(0, 96);
    s.sample_after.resize(0, 96);
    s.sample_tokens.clear();
    ScalesView view;
    view.setStats(s, QuantOptions{}, "none", "after");
    QCOMPARE(view.message(), ScalesView::kNoSamplesMessage);
    QVERIFY(!view.exponentMap(false)->visible());
    QVERIFY(std::isnan(view.exponentCell(false, 0, 0)));
    QCOMPARE(view.histogramBars(false).size(), 255);  // histogram and SQNR still draw
    QVERIFY(std::isfinite(view.sqnrBars(false)[0]));
    QVERIFY(view.summaryText().contains("exponent spread: no sampled rows"));
    render(&view, "mxlens_scales_view_no_samples.png");

    view.setStats(SiteStats{}, QuantOptions{}, QString(), QString());
    QVERIFY(!view.message().isEmpty());
    QVERIFY(view.histogramBars(false).isEmpty());
    QVERIFY(view.sqnrBars(false).isEmpty());
    view.clear();
    QVERIFY(!view.grab().isNull());
  }

  void switchingStatsReplacesData() {
    ScalesView view;
    view.setStats(makeStats(96, 8), QuantOptions{}, "none", "a");
    const SiteStats b = makeStats(64, 4, 7);
    view.setStats(b, QuantOptions{}, "none", "b");
    QVERIFY(view.message().isEmpty());
    QCOMPARE(view.exponentMap(false)->data()->keySize(), 2);
    QCOMPARE(view.exponentMap(true)->data()->valueSize(), 4);
    QCOMPARE(view.sqnrBars(false).size(), 2);
    QCOMPARE(view.exponentPlot()->plottableCount(), 2);
    QCOMPARE(view.histogramPlot()->plottableCount(), 2);
    QCOMPARE(view.sqnrPlot()->plottableCount(), 2);
    for (QCustomPlot* plot : {view.exponentPlot(), view.histogramPlot(), view.sqnrPlot()})
      for (int i = 0; i < plot->itemCount(); ++i) QVERIFY(!plot->item(i)->visible());
    const std::vector<uint8_t> bytes = b.sample_e8m0_after(QuantOptions{});
    QCOMPARE(view.exponentCell(true, 3, 1), double(bytes[3 * 2 + 1]));
    QCOMPARE(view.exponentMap(false)->keyAxis()->range(), QCPRange(-0.5, 1.5));
    QVERIFY(view.summaryText().contains("none → b"));
  }

  void axesLinkedAndReset() {
    ScalesView view;
    view.setStats(makeStats(), QuantOptions{}, "none", "after");
    view.exponentMap(false)->keyAxis()->setRange(0.5, 1.5);
    QCOMPARE(view.exponentMap(true)->keyAxis()->range(), QCPRange(0.5, 1.5));
    view.exponentPanel()->resetView();
    QCOMPARE(view.exponentMap(true)->keyAxis()->range(), QCPRange(-0.5, 2.5));
    QCOMPARE(view.exponentMap(true)->valueAxis()->range(), QCPRange(-0.5, 7.5));
  }

  void exportsWriteTheirFormats() {
    ScalesView view;
    view.setStats(makeStats(), QuantOptions{}, "none", "after");
    QTemporaryDir dir;
    QString error;
    for (QCustomPlot* plot : {view.exponentPlot(), view.histogramPlot(), view.sqnrPlot()}) {
      const QString png = dir.filePath("s.png"), pdf = dir.filePath("s.pdf");
      QVERIFY2(exportPlot(plot, png, &error), qPrintable(error));
      QCOMPARE(head(png, 8), QByteArray("\x89PNG\r\n\x1a\n"));
      QVERIFY2(exportPlot(plot, pdf, &error), qPrintable(error));
      QCOMPARE(head(pdf, 4), QByteArray("%PDF"));
      if (svgExportAvailable()) {
        const QString svg = dir.filePath("s.svg");
        QVERIFY2(exportPlot(plot, svg, &error), qPrintable(error));
        QVERIFY(head(svg, 4096).contains("<svg"));
      }
    }
  }

  void rendersLayerSizeForAPerson() {
    const SiteStats s = makeStats(384, 256, 3);
    ScalesView view;
    view.resize(1400, 900);
    view.show();
    QCoreApplication::processEvents();
    QElapsedTimer timer;
    timer.start();
    view.setStats(s, QuantOptions{}, "none (RTN)", "DuQuant++");
    const double set_ms = double(timer.nsecsElapsed()) / 1e6;
    for (QCustomPlot* plot : {view.exponentPlot(), view.histogramPlot(), view.sqnrPlot()})
      plot->replot();
    qInfo("setStats 256x384: %.2f ms, setStats + replot: %.2f ms", set_ms,
          double(timer.nsecsElapsed()) / 1e6);
    QCOMPARE(view.exponentMap(false)->data()->keySize(), 12);
    render(&view, "mxlens_scales_view.png");
    QPalette dark;
    dark.setColor(QPalette::Window, QColor(30, 30, 30));
    dark.setColor(QPalette::WindowText, QColor(230, 230, 230));
    dark.setColor(QPalette::Base, QColor(20, 20, 20));
    view.setPalette(dark);
    QCOMPARE(view.histogramPlot()->xAxis->tickLabelColor(), QColor(230, 230, 230));
    QCOMPARE(view.exponentMap(false)->colorScale()->axis()->tickLabelColor(),
             QColor(230, 230, 230));
    render(&view, "mxlens_scales_view_dark.png");
  }
};

QTEST_MAIN(TestScalesView)
#include "test_scales_view.moc"
