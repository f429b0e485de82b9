// mxlens-cli export as a user runs it: calibrate, export (dry run first), evaluate the export
// (the same perplexity as eval --session), and the refusals with their exit codes.
#include <QtTest>

#include <QDir>
#include <QFile>
#include <QFileInfo>
#include <QJsonArray>
#include <QJsonDocument>
#include <QJsonObject>
#include <QTemporaryDir>
#include <algorithm>
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
using mxlens::test::parse_json;

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
    QVERIFY(parse_json(dry)["bytes"].toDouble() > 1e6);
    QVERIFY(!QFileInfo::exists(out));

    auto r = run_cli({"export", model(), "--session", session, "--out", out, "--json"});
    QVERIFY2(r.exit_code == 0, qPrintable(r.err));
    const QJsonObject j = parse_json(r);
    QCOMPARE(j["format"].toString(), QString("fp_quant"));
    QCOMPARE(j["quantized_linears"].toInt(), 14);
    QVERIFY(!j["notes"].toArray().isEmpty());
    QVERIFY(QFileInfo(out + "/model.safetensors").isFile());
    // The planned size is what was written, up to the config's length.
    QVERIFY(std::abs(j["total_bytes"].toDouble() - parse_json(dry)["bytes"].toDouble()) < 8192);

    // The export evaluates to the session's W4A4 perplexity on the same windows.
    auto ev = run_cli({"eval", model(), "--session", session, "--data", stories(), "--seqlen",
                       "256", "--windows", "8", "--threads", "1", "--json"});
    QVERIFY2(ev.exit_code == 0, qPrintable(ev.err));
    auto ex = run_cli({"eval", out, "--data", stories(), "--seqlen", "256", "--windows", "8",
                       "--threads", "1", "--json"});
    QVERIFY2(ex.exit_code == 0, qPrintable(ex.err));
    const double a = parse_json(ev)["ppl"].toDouble(), b = parse_json(ex)["ppl"].toDouble();
    qInfo("eval --session %.10f, eval of the export %.10f", a, b);
    QVERIFY(a > 1 && std::abs(a - b) / a < 1e-5);
    QVERIFY(parse_json(ex)["fp_quant"].toString().contains("fp_quant"));

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

  // GGUF: weight-only note, then `info` reads the file back; its E8M0 ranges are checked
  // against the raw bytes at the offsets it reports. A rotated session is refused by site.
  void ggufExportAndInfo() {
    const QString session = calibrate("rtn.h5", {"--method", "rtn"});
    QVERIFY(!session.isEmpty());
    const QString out = dir_.filePath("rtn.gguf");
    auto r = run_cli({"export", model(), "--session", session, "--format", "gguf", "--out", out});
    QVERIFY2(r.exit_code == 0, qPrintable(r.err));
    QVERIFY2(r.out.contains("weight-only"), qPrintable(r.out));
    auto info = run_cli({"info", out, "--json"});
    QVERIFY2(info.exit_code == 0, qPrintable(info.err));
    const QJsonObject j = parse_json(info);
    QCOMPARE(j["keys"].toObject()["general.architecture"].toObject()["value"].toString(),
             QString("llama"));
    QCOMPARE(j["keys"].toObject()["general.file_type"].toObject()["value"].toInt(), 38);
    const QJsonArray tensors = j["tensors"].toArray();
    QCOMPARE(tensors.size(), 20);
    QFile f(out);
    QVERIFY(f.open(QIODevice::ReadOnly));
    const QByteArray bytes = f.readAll();
    QCOMPARE(qint64(bytes.size()), qint64(j["file_bytes"].toDouble()));
    int mxfp4 = 0;
    for (const QJsonValue& v : tensors) {
      const QJsonObject t = v.toObject();
      if (t["type"].toString() != "MXFP4") continue;
      ++mxfp4;
      const qint64 at = qint64(j["data_offset"].toDouble() + t["offset"].toDouble());
      const qint64 n = qint64(t["bytes"].toDouble());
      QCOMPARE(n % 17, qint64(0));
      int lo = 255, hi = 0;
      for (qint64 b = at; b < at + n; b += 17) {
        lo = std::min(lo, int(uint8_t(bytes[b])));
        hi = std::max(hi, int(uint8_t(bytes[b])));
      }
      QCOMPARE(t["e8m0_exponent_min"].toInt(), lo - 127);
      QCOMPARE(t["e8m0_exponent_max"].toInt(), hi - 127);
    }
    QCOMPARE(mxfp4, 14);
    auto text = run_cli({"info", out});
    QVERIFY2(text.exit_code == 0 && text.out.contains("blk.1.ffn_down.weight"),
             qPrintable(text.err));

    const QString dq = calibrate("dq_gguf.h5", {"--method", "duquantpp", "--smooth-gqa", "tied"});
    QVERIFY(!dq.isEmpty());
    auto refused =
        run_cli({"export", model(), "--session", dq, "--format", "gguf", "--out", out + "2"});
    QCOMPARE(refused.exit_code, 1);
    QVERIFY2(refused.err.contains("layer 0") && refused.err.contains("fp_quant"),
             qPrintable(refused.err));
    QVERIFY(!QFileInfo::exists(out + "2"));
    // info on something that is neither a checkpoint nor GGUF names the file.
    auto bad = run_cli({"info", session});
    QCOMPARE(bad.exit_code, 1);
    QVERIFY2(bad.err.contains("rtn.h5") && bad.err.contains("GGUF"), qPrintable(bad.err));
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
