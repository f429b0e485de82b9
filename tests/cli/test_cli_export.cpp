// mxlens-cli export as a user runs it: calibrate, export (dry run first), evaluate the export
// (the same perplexity as eval --session), and the refusals with their exit codes.
#include <QtTest>

#include <QDir>
#include <QFileInfo>
#include <QJsonArray>
#include <QJsonDocument>
#include <QJsonObject>
#include <QTemporaryDir>
#include <cmath>

#include "tests/cli/cli_runner.h"
#include "tests/test_data.h"

namespace {

constexpr int kTimeoutMs = 300000;

mxlens::test::CliRun run_cli(const QStringList& args) {
  return mxlens::test::run_cli(args, kTimeoutMs);
}
QString model() {
  return mxlens::test::qstr(mxlens::test::model_656k());
}
QString stories() {
  return mxlens::test::qstr(mxlens::test::data_dir() / "tinystories-text" / "stories.txt");
}
QJsonObject parse(const QString& out) {
  return QJsonDocument::fromJson(out.toUtf8()).object();
}

}  // namespace

class TestCliExport : public QObject {
  Q_OBJECT
  QTemporaryDir dir_;

  QString calibrate(const QString& name, const QStringList& extra) {
    const QString session = dir_.filePath(name);
    QStringList args = {"calibrate",       model(), "--data",         stories(), "--out",   session,
                        "--calib-windows", "4",     "--calib-seqlen", "128",     "--steps", "16",
                        "--stats-windows", "1",     "--threads",      "1"};
    args += extra;
    const auto r = run_cli(args);
    if (r.exit_code != 0) qWarning("%s", qPrintable(r.err));
    return r.exit_code == 0 ? session : QString();
  }

 private slots:
  void initTestCase() { QVERIFY(dir_.isValid()); }

  void exportAndEvaluate() {
    const QString session = calibrate("dq.h5", {"--method", "duquantpp", "--smooth-gqa", "tied"});
    QVERIFY(!session.isEmpty());
    const QString out = dir_.filePath("dq_fpq");
    // Dry run: size and notes, nothing written.
    auto dry =
        run_cli({"export", model(), "--session", session, "--out", out, "--dry-run", "--json"});
    QVERIFY2(dry.exit_code == 0, qPrintable(dry.err));
    QVERIFY(parse(dry.out)["bytes"].toDouble() > 1e6);
    QVERIFY(!QFileInfo::exists(out));

    auto r = run_cli({"export", model(), "--session", session, "--out", out, "--json"});
    QVERIFY2(r.exit_code == 0, qPrintable(r.err));
    const QJsonObject j = parse(r.out);
    QCOMPARE(j["format"].toString(), QString("fp_quant"));
    QCOMPARE(j["quantized_linears"].toInt(), 14);
    QVERIFY(!j["notes"].toArray().isEmpty());
    QVERIFY(QFileInfo(out + "/model.safetensors").isFile());
    // The planned size is what was written, up to the config's length.
    QVERIFY(std::abs(j["total_bytes"].toDouble() - parse(dry.out)["bytes"].toDouble()) < 8192);

    // The export evaluates to the session's W4A4 perplexity on the same windows.
    auto ev = run_cli({"eval", model(), "--session", session, "--data", stories(), "--seqlen",
                       "256", "--windows", "8", "--threads", "1", "--json"});
    QVERIFY2(ev.exit_code == 0, qPrintable(ev.err));
    auto ex = run_cli({"eval", out, "--data", stories(), "--seqlen", "256", "--windows", "8",
                       "--threads", "1", "--json"});
    QVERIFY2(ex.exit_code == 0, qPrintable(ex.err));
    const double a = parse(ev.out)["ppl"].toDouble(), b = parse(ex.out)["ppl"].toDouble();
    qInfo("eval --session %.10f, eval of the export %.10f", a, b);
    QVERIFY(a > 1 && std::abs(a - b) / a < 1e-5);
    QVERIFY(parse(ex.out)["fp_quant"].toString().contains("fp_quant"));

    // The output exists: refused without --force, replaced with it.
    auto again = run_cli({"export", model(), "--session", session, "--out", out});
    QCOMPARE(again.exit_code, 1);
    QVERIFY2(again.err.contains("already exists") && again.err.contains("--force"),
             qPrintable(again.err));
    auto forced = run_cli({"export", model(), "--session", session, "--out", out, "--force"});
    QVERIFY2(forced.exit_code == 0, qPrintable(forced.err));
    QVERIFY2(forced.out.contains("note"), qPrintable(forced.out));

    // A session with an fp_quant checkpoint is refused (its quantization is in its files).
    auto both = run_cli({"eval", out, "--session", session, "--data", stories(), "--seqlen", "256",
                         "--windows", "1"});
    QCOMPARE(both.exit_code, 1);
    QVERIFY2(both.err.contains("fp_quant"), qPrintable(both.err));
  }

  void refusals() {
    // Default smoothing under GQA is online: fp_quant cannot hold it.
    const QString online = calibrate("online.h5", {"--method", "duquantpp"});
    QVERIFY(!online.isEmpty());
    auto r = run_cli({"export", model(), "--session", online, "--out", dir_.filePath("x")});
    QCOMPARE(r.exit_code, 1);
    QVERIFY2(r.err.contains("layer 0 o input") && r.err.contains("--smooth-gqa tied"),
             qPrintable(r.err));
    QVERIFY(!QFileInfo::exists(dir_.filePath("x")));
    // Unknown format.
    r = run_cli(
        {"export", model(), "--session", online, "--out", dir_.filePath("x"), "--format", "onnx"});
    QCOMPARE(r.exit_code, 1);
    QVERIFY2(r.err.contains("fp_quant, gguf"), qPrintable(r.err));
    // A session for another model.
    const QString other = mxlens::test::qstr(mxlens::test::model_260k());
    r = run_cli({"export", other, "--session", online, "--out", dir_.filePath("y")});
    QCOMPARE(r.exit_code, 1);
    QVERIFY2(r.err.contains("another model"), qPrintable(r.err));
    QVERIFY(!QFileInfo::exists(dir_.filePath("y")));
    // A missing session file.
    r = run_cli(
        {"export", model(), "--session", dir_.filePath("none.h5"), "--out", dir_.filePath("z")});
    QCOMPARE(r.exit_code, 1);
    QVERIFY2(r.err.contains("none.h5"), qPrintable(r.err));
  }
};

QTEST_GUILESS_MAIN(TestCliExport)
#include "test_cli_export.moc"
