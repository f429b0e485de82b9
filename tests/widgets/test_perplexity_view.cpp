// PerplexityView offscreen: live chart points per method, table rows from MethodResults, the
// CSV of a known table (button, Ctrl+C and csv()), Run emitting the chosen settings, Cancel,
// the running state, and the CUDA backend item disabled with its reason.
#include <QtTest>

#include <QClipboard>
#include <QComboBox>
#include <QDir>
#include <QListWidget>
#include <QPalette>
#include <QPushButton>
#include <QSpinBox>
#include <QStandardItemModel>
#include <QTableWidget>
#include <cmath>

#include "widgets/perplexity_view.h"

using mxlens::Method;
using mxlens::PerplexityView;

namespace {

mxlens::WindowResult window(int64_t i, int64_t n, double running) {
  mxlens::WindowResult w;
  w.window = i;
  w.windows = n;
  w.running_ppl = running;
  w.ppl = running;
  w.nll_mean = std::log(running);
  return w;
}

mxlens::MethodResult result(Method m, double ppl, double delta, double tokens_per_s,
                            std::optional<std::pair<double, double>> kl_top1) {
  mxlens::MethodResult r;
  r.method = m;
  r.eval.ppl = ppl;
  r.eval.ppl_low = ppl * 0.99;
  r.eval.ppl_high = ppl * 1.01;
  r.eval.windows = 4;
  r.eval.seqlen = 256;
  r.eval.tokens_per_s = tokens_per_s;
  r.delta_ppl = delta;
  if (kl_top1) {
    mxlens::KlSummary kl;
    kl.tokens = 1020;
    kl.mean = kl_top1->first;
    kl.top1_agreement = kl_top1->second;
    r.eval.kl = kl;
  }
  return r;
}

QListWidgetItem* methodItem(PerplexityView& view, const QString& name) {
  const auto items = view.methodList()->findItems(name, Qt::MatchExactly);
  return items.size() == 1 ? items.front() : nullptr;
}

}  // namespace

class TestPerplexityView : public QObject {
  Q_OBJECT

 private slots:
  void liveChart() {
    PerplexityView view;
    view.addWindow(Method::fp, window(0, 3, 21.5));
    view.addWindow(Method::fp, window(1, 3, 20.25));
    view.addWindow(Method::rtn, window(0, 3, 480.0));
    view.addWindow(Method::fp, window(2, 3, 20.0));
    view.addWindow(Method::rtn, window(1, 3, 455.5));
    QCOMPARE(view.chartMethods(), QStringList({"fp", "rtn"}));
    QCOMPARE(view.graphPointCount(Method::fp), 3);
    QCOMPARE(view.graphPointCount(Method::rtn), 2);
    QCOMPARE(view.graphPointCount(Method::duquantpp), 0);
    QCOMPARE(view.graphPoints(Method::fp), QVector<QPointF>({{1, 21.5}, {2, 20.25}, {3, 20.0}}));
    QCOMPARE(view.graphPoints(Method::rtn), QVector<QPointF>({{1, 480.0}, {2, 455.5}}));
    view.resetResults();
    QVERIFY(view.chartMethods().isEmpty());
    QCOMPARE(view.graphPointCount(Method::fp), 0);
    view.addWindow(Method::duquantpp, window(0, 2, 30.0));
    QCOMPARE(view.graphPoints(Method::duquantpp), QVector<QPointF>({{1, 30.0}}));
  }

  void tableAndCsv() {
    PerplexityView view;
    view.resize(1000, 650);
    view.setMethodResult(result(Method::fp, 20.0, 0.0, 1534.4, std::nullopt));
    view.setMethodResult(result(Method::rtn, 455.123456, 435.123456, 1210.6, {{2.345678, 0.4321}}));
    view.setMethodResult(result(Method::duquantpp, 24.5, 4.5, 998.0, {{0.0912345, 0.875}}));
    QCOMPARE(view.tableRowCount(), 3);
    QCOMPARE(view.tableColumnCount(), 6);
    QCOMPARE(view.tableHeader(2), QString::fromUtf8("ΔPPL vs FP"));
    QCOMPARE(view.tableCell(0, 0), QString("fp"));
    QCOMPARE(view.tableCell(0, 1), QString("20.000"));
    QCOMPARE(view.tableCell(0, 2), QString::fromUtf8("—"));
    QCOMPARE(view.tableCell(0, 3), QString::fromUtf8("—"));
    QCOMPARE(view.tableCell(1, 0), QString("rtn"));
    QCOMPARE(view.tableCell(1, 1), QString("455.123"));
    QCOMPARE(view.tableCell(1, 2), QString("+435.123"));
    QCOMPARE(view.tableCell(1, 3), QString("2.346"));
    QCOMPARE(view.tableCell(1, 4), QString("43.21"));
    QCOMPARE(view.tableCell(1, 5), QString("1211"));
    QCOMPARE(view.tableCell(2, 3), QString("0.09123"));

    const QString expected =
        "method,ppl,delta_ppl_vs_fp,kl_mean_nats,top1_pct,tokens_per_s\n"
        "fp,20.000,,,,1534\n"
        "rtn,455.123,+435.123,2.346,43.21,1211\n"
        "duquantpp,24.500,+4.500,0.09123,87.50,998\n";
    QCOMPARE(view.csv(), expected);

    // A second result for a method replaces its row.
    view.setMethodResult(result(Method::rtn, 400.0, 380.0, 1000.0, {{2.0, 0.5}}));
    QCOMPARE(view.tableRowCount(), 3);
    QCOMPARE(view.tableCell(1, 1), QString("400.000"));
    QCOMPARE(view.tableCell(1, 2), QString("+380.000"));

    QClipboard* clipboard = QGuiApplication::clipboard();
    clipboard->setText("before");
    QTest::mouseClick(view.findChild<QPushButton*>("perplexityCopyCsv"), Qt::LeftButton);
    QCOMPARE(clipboard->text(), view.csv());
    clipboard->setText("before");
    view.table()->setFocus();
    view.table()->setCurrentCell(1, 1);
    QTest::keyClick(view.table(), Qt::Key_C, Qt::ControlModifier);
    // The whole table, not just the current cell (what QTableWidget alone would copy).
    QCOMPARE(clipboard->text(), view.csv());

    for (int i = 0; i < 6; ++i) view.addWindow(Method::fp, window(i, 6, 20.0 + 3.0 / (i + 1)));
    for (int i = 0; i < 6; ++i) view.addWindow(Method::rtn, window(i, 6, 500.0 - 10.0 * i));
    for (int i = 0; i < 4; ++i) view.addWindow(Method::duquantpp, window(i, 6, 26.0 - 0.5 * i));
    view.show();
    QVERIFY(QTest::qWaitForWindowExposed(&view));
    QCoreApplication::processEvents();
    const QString png = QDir(QDir::tempPath()).filePath("mxlens_perplexity_view.png");
    QVERIFY(view.grab().save(png));
    qInfo("perplexity view screenshot: %s", qPrintable(png));
    QPalette dark = view.palette();
    dark.setColor(QPalette::Window, QColor(37, 37, 38));
    dark.setColor(QPalette::Base, QColor(30, 30, 30));
    dark.setColor(QPalette::WindowText, QColor(230, 230, 230));
    dark.setColor(QPalette::Text, QColor(230, 230, 230));
    view.setPalette(dark);
    QCoreApplication::processEvents();  // the chart's queued replot
    QVERIFY(view.grab().save(QDir(QDir::tempPath()).filePath("mxlens_perplexity_view_dark.png")));

    view.resetResults();
    QCOMPARE(view.tableRowCount(), 0);
    QCOMPARE(view.csv(),
             QString("method,ppl,delta_ppl_vs_fp,kl_mean_nats,top1_pct,tokens_per_s\n"));
  }

  void csvQuotesWhereNeeded() {
    // Cells come from numbers and method names, none with a comma today; quoting is still
    // right for a cell that has one (e.g. a locale decimal comma).
    PerplexityView view;
    view.setMethodResult(result(Method::fp, 20.0, 0.0, 1.0, std::nullopt));
    view.table()->item(0, 0)->setText("a,b \"c\"");
    QVERIFY2(view.csv().contains("\n\"a,b \"\"c\"\"\",20.000,"), qPrintable(view.csv()));
  }

  void runEmitsTheChoices() {
    PerplexityView view;
    std::vector<mxlens::PerplexityRequest> requests;
    connect(&view, &PerplexityView::runRequested, this,
            [&](const mxlens::PerplexityRequest& r) { requests.push_back(r); });
    QSignalSpy cancels(&view, &PerplexityView::cancelRequested);

    // FP is listed, checked and cannot be unchecked.
    QListWidgetItem* fp = methodItem(view, "fp");
    QVERIFY(fp);
    QCOMPARE(fp->checkState(), Qt::Checked);
    QVERIFY(!(fp->flags() & Qt::ItemIsEnabled));
    QCOMPARE(view.methodList()->count(), int(std::size(mxlens::kAllMethods)));

    for (int i = 0; i < view.methodList()->count(); ++i)
      if (view.methodList()->item(i) != fp)
        view.methodList()->item(i)->setCheckState(Qt::Unchecked);
    methodItem(view, "duquantpp-gptq")->setCheckState(Qt::Checked);
    methodItem(view, "smooth")->setCheckState(Qt::Checked);
    fp->setCheckState(Qt::Unchecked);  // even so, fp is run (the reference)
    QCOMPARE(view.scaleRuleCombo()->count(), 4);
    view.scaleRuleCombo()->setCurrentIndex(view.scaleRuleCombo()->findText("rceil"));
    view.windowsSpinBox()->setValue(12);
    view.seqlenSpinBox()->setValue(512);
    QTest::mouseClick(view.runButton(), Qt::LeftButton);
    QCOMPARE(requests.size(), size_t(1));
    const mxlens::PerplexityRequest& r = requests.front();
    QCOMPARE(r.methods, (std::vector<Method>{Method::fp, Method::smooth, Method::duquantpp_gptq}));
    QVERIFY(r.scale_rule == mxlens::ScaleRule::rceil);
    QVERIFY(r.backend == mxlens::EvalBackend::cpu);
    QCOMPARE(r.max_windows, int64_t(12));
    QCOMPARE(r.seqlen, 512);

    // Running: Run off, Cancel on and emitting; the choices are locked.
    view.setRunning(true);
    QVERIFY(!view.runButton()->isEnabled());
    QVERIFY(view.cancelButton()->isEnabled());
    QVERIFY(!view.seqlenSpinBox()->isEnabled());
    QTest::mouseClick(view.runButton(), Qt::LeftButton);
    QCOMPARE(requests.size(), size_t(1));
    QTest::mouseClick(view.cancelButton(), Qt::LeftButton);
    QCOMPARE(cancels.count(), 1);
    view.setRunning(false);
    QVERIFY(view.runButton()->isEnabled());
    QVERIFY(!view.cancelButton()->isEnabled());

    // setRequest round-trips.
    mxlens::PerplexityRequest other;
    other.methods = {Method::fp, Method::quarot};
    other.scale_rule = mxlens::ScaleRule::dqv2_log8;
    other.max_windows = 0;
    other.seqlen = 128;
    view.setRequest(other);
    QCOMPARE(view.request(), other);
    QCOMPARE(view.windowsSpinBox()->text(), QString("all"));
  }

  void cudaItemDisabledWithReason() {
    PerplexityView view;
    QComboBox* backend = view.backendCombo();
    QCOMPARE(backend->count(), 2);
    auto* model = qobject_cast<QStandardItemModel*>(backend->model());
    QVERIFY(model);
    const QString reason = "no CUDA device: cudaGetDeviceCount returned 0";
    view.setCudaAvailability(false, reason);
    QStandardItem* cuda = model->item(1);
    QVERIFY(!cuda->isEnabled());
    QCOMPARE(cuda->toolTip(), reason);
    QCOMPARE(backend->itemData(1, Qt::ToolTipRole).toString(), reason);
    QCOMPARE(backend->currentIndex(), 0);
    // A request for CUDA falls back to CPU while it is unavailable.
    mxlens::PerplexityRequest wants_cuda;
    wants_cuda.backend = mxlens::EvalBackend::cuda;
    view.setRequest(wants_cuda);
    QVERIFY(view.request().backend == mxlens::EvalBackend::cpu);

    view.setCudaAvailability(true, "NVIDIA H100 (sm_90)");
    QVERIFY(cuda->isEnabled());
    view.setRequest(wants_cuda);
    QVERIFY(view.request().backend == mxlens::EvalBackend::cuda);
    // Losing the device moves the choice back to CPU.
    view.setCudaAvailability(false, reason);
    QVERIFY(view.request().backend == mxlens::EvalBackend::cpu);
  }
};

QTEST_MAIN(TestPerplexityView)
#include "test_perplexity_view.moc"
