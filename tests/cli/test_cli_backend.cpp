// --backend cpu|cuda|auto on `eval` and `compare`, run as a user would. `--backend auto` tells
// which case this machine is: without a usable CUDA device, cuda must fail with the reason and
// auto must fall back to the CPU (same numbers) and say so; with one, cuda must evaluate on the
// device within the backend's PPL tolerance of the CPU. A recorded evaluation names its backend
// in the session's provenance.
#include <QtTest>

#include <QJsonArray>
#include <QJsonDocument>
#include <QJsonObject>
#include <QTemporaryDir>
#include <cmath>

#include "core/calib/session.h"
#include "core/io/session_file.h"
#include "tests/cli/cli_runner.h"
#include "tests/test_data.h"

namespace {

constexpr int kTimeoutMs = 180000;
// The CUDA backend's acceptance bar (issue 6): PPL within 1e-3 relative of the CPU.
constexpr double kCudaPplRelTol = 1e-3;

using Run = mxlens::test::CliRun;
Run run_cli(const QStringList& args) {
  return mxlens::test::run_cli(args, kTimeoutMs);
}

QString str(const std::filesystem::path& p) {
  return mxlens::test::qstr(p);
}

QStringList eval_656k(const QStringList& extra) {
  return QStringList{"eval",      str(mxlens::test::model_656k()),
                     "--data",    str(mxlens::test::wiki_test()),
                     "--seqlen",  "128",
                     "--windows", "3",
                     "--threads", "1"} +
         extra;
}

using mxlens::test::parse_json;

}  // namespace

class TestCliBackend : public QObject {
  Q_OBJECT

  bool device_ = false;  // what --backend auto chose on this machine
  double cpu_ppl_ = 0;
  QTemporaryDir dir_;

 private slots:
  void initTestCase() {
    QVERIFY2(!qgetenv("MXLENS_CLI").isEmpty(), "MXLENS_CLI is not set (run through ctest)");
    QVERIFY(dir_.isValid());
    const Run cpu = run_cli(eval_656k({"--backend", "cpu", "--json"}));
    QVERIFY2(cpu.exit_code == 0, qPrintable(cpu.err));
    const QJsonObject j = parse_json(cpu);
    QCOMPARE(j["backend"].toString(), QString("cpu"));
    QCOMPARE(j["backend_note"].toString(), QString());
    cpu_ppl_ = j["ppl"].toDouble();
    QVERIFY(cpu_ppl_ > 1);
    const Run a = run_cli(eval_656k({"--backend", "auto", "--json"}));
    QVERIFY2(a.exit_code == 0, qPrintable(a.err));
    device_ = parse_json(a)["backend"].toString() == "cuda";
    qInfo("--backend auto evaluated on %s", device_ ? "CUDA" : "the CPU");
  }

  void helpNamesTheFlag() {
    for (const char* cmd : {"eval", "compare"}) {
      const Run r = run_cli({cmd, "--help"});
      QCOMPARE(r.exit_code, 0);
      QVERIFY2(r.out.contains("--backend") && r.out.contains("auto"), cmd);
    }
  }

  void unknownBackendIsAnError() {
    const Run r = run_cli(eval_656k({"--backend", "gpu"}));
    QCOMPARE(r.exit_code, 1);
    QVERIFY2(r.err.contains("--backend") && r.err.contains("unknown backend 'gpu'") &&
                 r.err.contains("cpu, cuda or auto"),
             qPrintable(r.err));
  }

  void cudaBackend() {
    const Run r = run_cli(eval_656k({"--backend", "cuda", "--json"}));
    if (!device_) {
      // No device: a clear error before any work, naming the flag, the reason and the way out.
      QCOMPARE(r.exit_code, 1);
      QVERIFY2(r.err.contains("--backend: CUDA unavailable: ") &&
                   r.err.contains("use --backend cpu or auto"),
               qPrintable(r.err));
      QVERIFY(r.out.isEmpty());
      return;
    }
    QVERIFY2(r.exit_code == 0, qPrintable(r.err));
    const QJsonObject j = parse_json(r);
    QCOMPARE(j["backend"].toString(), QString("cuda"));
    QVERIFY2(j["device"].toString().startsWith("CUDA: "), qPrintable(j["device"].toString()));
    const double ppl = j["ppl"].toDouble();
    qInfo("PPL cpu %.6f, cuda %.6f", cpu_ppl_, ppl);
    QVERIFY(std::abs(ppl / cpu_ppl_ - 1) < kCudaPplRelTol);
  }

  void autoBackend() {
    const Run text = run_cli(eval_656k({"--backend", "auto"}));
    QVERIFY2(text.exit_code == 0, qPrintable(text.err));
    const Run js = run_cli(eval_656k({"--backend", "auto", "--json"}));
    QVERIFY2(js.exit_code == 0, qPrintable(js.err));
    const QJsonObject j = parse_json(js);
    QCOMPARE(j["backend_requested"].toString(), QString("auto"));
    if (!device_) {
      // The note, on stderr at once and in the report; the CPU's numbers exactly.
      for (const QString& s : {text.err, text.out, j["backend_note"].toString()})
        QVERIFY2(s.contains("CUDA unavailable (") && s.contains("evaluating on the CPU"),
                 qPrintable(s));
      QVERIFY2(text.out.contains("backend        cpu"), qPrintable(text.out));
      QCOMPARE(j["backend"].toString(), QString("cpu"));
      QCOMPARE(j["ppl"].toDouble(), cpu_ppl_);
    } else {
      QVERIFY2(j["backend_note"].toString().startsWith("CUDA: "),
               qPrintable(j["backend_note"].toString()));
      QVERIFY2(text.out.contains("backend        cuda (CUDA: "), qPrintable(text.out));
      QVERIFY(std::abs(j["ppl"].toDouble() / cpu_ppl_ - 1) < kCudaPplRelTol);
    }
  }

  // compare: every method's evaluation names its backend.
  void compareRecordsBackends() {
    const Run r = run_cli({"compare", str(mxlens::test::model_656k()), "--data",
                           str(mxlens::test::wiki_test()), "--methods", "fp,rtn", "--seqlen", "64",
                           "--windows", "2", "--calib-windows", "2", "--calib-seqlen", "64",
                           "--threads", "1", "--backend", "auto", "--json"});
    QVERIFY2(r.exit_code == 0, qPrintable(r.err));
    const QJsonObject j = parse_json(r);
    QCOMPARE(j["backend_requested"].toString(), QString("auto"));
    const QJsonArray methods = j["methods"].toArray();
    QCOMPARE(methods.size(), 2);
    for (const auto& m : methods)
      QCOMPARE(m.toObject()["backend"].toString(), QString(device_ ? "cuda" : "cpu"));
    if (!device_) QVERIFY(j["backend_note"].toString().contains("evaluating on the CPU"));
  }

  // eval --record stores the backend in the session's provenance.
  void recordNamesTheBackend() {
    const QString session = dir_.filePath("rtn.h5");
    const Run c = run_cli({"calibrate", str(mxlens::test::model_656k()), "--data",
                           str(mxlens::test::wiki_test()), "--method", "rtn", "--out", session,
                           "--calib-windows", "2", "--calib-seqlen", "64", "--threads", "1"});
    QVERIFY2(c.exit_code == 0, qPrintable(c.err));
    const Run r =
        run_cli(eval_656k({"--session", session, "--record", "--backend", "auto", "--json"}));
    QVERIFY2(r.exit_code == 0, qPrintable(r.err));
    const QString backend = parse_json(r)["backend"].toString();
    QCOMPARE(backend, QString(device_ ? "cuda" : "cpu"));
    const mxlens::Session s = mxlens::load_session(session.toStdString());
    QCOMPARE(QString::fromStdString(s.provenance.backend), backend);
    QCOMPARE(int(s.results.size()), 1);
  }
};

QTEST_GUILESS_MAIN(TestCliBackend)
#include "test_cli_backend.moc"
