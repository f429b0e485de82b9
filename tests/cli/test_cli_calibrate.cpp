// mxlens-cli calibrate, eval --session and compare run as a user would: a session written,
// refused over an existing file without --force, evaluated on the windows before its
// calibration region (with KL to FP and --record), rejected for another model; compare's JSON
// with FP first and KL/top-1 per method; clear non-zero exits for bad input.
#include <QtTest>

#include <QDir>
#include <QFile>
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

using Run = mxlens::test::CliRun;
Run run_cli(const QStringList& args) {
  return mxlens::test::run_cli(args, kTimeoutMs);
}
QString str(const std::filesystem::path& p) {
  return mxlens::test::qstr(p);
}
QString model() {
  return str(mxlens::test::model_656k());
}
QString wiki() {
  return str(mxlens::test::wiki_test());
}
QString stories() {
  return str(mxlens::test::data_dir() / "tinystories-text" / "stories.txt");
}

// Small, fast calibration settings (the defaults are the paper's 128 × 2048).
QStringList small_calibration() {
  return {"--calib-windows", "4", "--calib-seqlen",  "64", "--steps",   "8",
          "--duquant-steps", "8", "--stats-windows", "2",  "--threads", "1"};
}

using mxlens::test::parse_json;

}  // namespace

class TestCliCalibrate : public QObject {
  Q_OBJECT
 private:
  QTemporaryDir dir_;
  QString session_;  // duquantpp session on wiki.test.raw, written by calibrateWritesSession

 private slots:
  void initTestCase() {
    QVERIFY2(!qgetenv("MXLENS_CLI").isEmpty(), "MXLENS_CLI is not set (run through ctest)");
    QVERIFY(dir_.isValid());
    session_ = dir_.filePath("dqpp.h5");
  }

  void helpNamesEveryMethod() {
    const Run r = run_cli({"calibrate", "--help"});
    QCOMPARE(r.exit_code, 0);
    for (const char* m : {"fp", "rtn", "smooth", "hadamard", "random", "quarot", "duquant",
                          "duquantpp", "duquantpp-nosmooth", "duquantpp-gptq", "--calib-tail",
                          "--scale-rule", "--steps", "--out", "--force"})
      QVERIFY2(r.out.contains(m), m);
    const Run c = run_cli({"compare", "--help"});
    QCOMPARE(c.exit_code, 0);
    for (const char* w : {"--methods", "KL", "top-1", "--json", "--calib-data", "--sessions-dir"})
      QVERIFY2(c.out.contains(w), w);
  }

  void calibrateWritesSession() {
    const Run r = run_cli(QStringList{"calibrate", model(), "--data", wiki(), "--method",
                                      "duquantpp", "--out", session_, "--json"} +
                          small_calibration());
    QVERIFY2(r.exit_code == 0, qPrintable(r.err));
    QVERIFY(QFileInfo(session_).size() > 0);
    const QJsonObject j = parse_json(r);
    QCOMPARE(j["method"].toString(), QString("duquantpp"));
    QVERIFY2(j["scheme"].toString().contains("w4a4") && j["scheme"].toString().contains("mxfp4"),
             qPrintable(j["scheme"].toString()));
    const QJsonArray sites = j["sites"].toArray();
    QCOMPARE(sites.size(), 2 * 4);  // 2 layers × 4 sites
    for (const auto& v : sites) {
      const QJsonObject s = v.toObject();
      QVERIFY2(s["transform"].toString().contains("R32"), qPrintable(s["transform"].toString()));
      QVERIFY(s["best_step"].toInt() >= 0 && s["best_step"].toInt() <= 8);
      // The kept prefix never ends above the start (k* is the argmin, step 0 included).
      QVERIFY(s["objective_best"].toDouble() <= s["objective_start"].toDouble());
      QVERIFY(std::isfinite(s["sqnr_db_before"].toDouble()));
    }
    const QJsonArray region = j["calibration"].toObject()["region"].toArray();
    QCOMPARE(region.size(), 2);
    QVERIFY(region[0].toDouble() > 0);  // the tail of the text, not its start
    // Timings are reported and add up to at most the total.
    const QJsonObject t = j["timings"].toObject();
    QVERIFY(t["total"].toDouble() >= t["search"].toDouble());

    // Text report: one row per layer and site plus the time split.
    const Run text = run_cli(QStringList{"calibrate", model(), "--data", wiki(), "--method",
                                         "hadamard", "--out", dir_.filePath("had.h5")} +
                             small_calibration());
    QVERIFY2(text.exit_code == 0, qPrintable(text.err));
    QVERIFY(text.out.contains("R32"));
    QVERIFY(text.out.contains("time"));
  }

  void existingSessionNeedsForce() {
    QVERIFY(QFileInfo::exists(session_));
    const qint64 before = QFileInfo(session_).size();
    const Run r = run_cli(
        QStringList{"calibrate", model(), "--data", wiki(), "--method", "rtn", "--out", session_} +
        small_calibration());
    QVERIFY(r.exit_code != 0);
    QVERIFY2(r.err.contains(session_) && r.err.contains("--force"), qPrintable(r.err));
    QCOMPARE(QFileInfo(session_).size(), before);
    const QString other = dir_.filePath("forced.h5");
    QFile::copy(session_, other);
    const Run f = run_cli(QStringList{"calibrate", model(), "--data", wiki(), "--method", "rtn",
                                      "--out", other, "--force"} +
                          small_calibration());
    QVERIFY2(f.exit_code == 0, qPrintable(f.err));
  }

  void evalSessionScoresWindowsBeforeRegion() {
    const Run r = run_cli({"eval", model(), "--data", wiki(), "--seqlen", "128", "--session",
                           session_, "--kl", "--record", "--json", "--threads", "1"});
    QVERIFY2(r.exit_code == 0, qPrintable(r.err));
    const QJsonObject j = parse_json(r);
    QCOMPARE(j["method"].toString(), QString("duquantpp"));
    QVERIFY2(j["note"].toString().contains("before"), qPrintable(j["note"].toString()));
    // wiki.test.raw has 554431 ids; the tail 10 % is calibration's, so at most
    // floor(0.9 · 554431 / 128) windows are scored.
    const int windows = j["windows"].toInt();
    QVERIFY(windows > 0 && windows <= 554431 * 9 / 10 / 128);
    QVERIFY(j["kl"].toDouble() > 0);
    QVERIFY(j["top1"].toDouble() > 0.3 && j["top1"].toDouble() < 1.0);
    QVERIFY(std::isfinite(j["ppl"].toDouble()) && std::isfinite(j["fp_ppl"].toDouble()));
    QCOMPARE(j["recorded"].toBool(), true);

    // Another text is scored whole; the recorded session still loads.
    const Run s = run_cli({"eval", model(), "--data", stories(), "--seqlen", "128", "--windows",
                           "3", "--session", session_, "--json", "--threads", "1"});
    QVERIFY2(s.exit_code == 0, qPrintable(s.err));
    const QJsonObject js = parse_json(s);
    QCOMPARE(js["windows"].toInt(), 3);
    QVERIFY(js["note"].toString().isEmpty());
  }

  void sessionOfAnotherModelIsRefused() {
    const QString planted = dir_.filePath("planted");
    const Run p = run_cli({"plant", model(), "--out", planted, "--scale", "8"});
    QVERIFY2(p.exit_code == 0, qPrintable(p.err));
    const Run r = run_cli({"eval", planted, "--data", stories(), "--seqlen", "64", "--windows", "1",
                           "--session", session_});
    QVERIFY(r.exit_code != 0);
    QVERIFY2(r.err.contains(session_) && r.err.contains("another model"), qPrintable(r.err));
  }

  void compareJson() {
    const Run r = run_cli(QStringList{"compare", model(), "--data", stories(), "--methods",
                                      "rtn,hadamard,duquantpp", "--seqlen", "128", "--windows", "4",
                                      "--json"} +
                          small_calibration());
    QVERIFY2(r.exit_code == 0, qPrintable(r.err));
    const QJsonObject j = parse_json(r);
    const QJsonArray ms = j["methods"].toArray();
    QCOMPARE(ms.size(), 4);  // fp first, then the three asked for
    const QStringList names = {"fp", "rtn", "hadamard", "duquantpp"};
    for (int i = 0; i < 4; ++i) {
      const QJsonObject m = ms[i].toObject();
      QCOMPARE(m["name"].toString(), names[i]);
      QVERIFY(m.contains("kl") && m.contains("top1") && m.contains("ppl"));
      QVERIFY(std::isfinite(m["ppl"].toDouble()));
    }
    QCOMPARE(ms[0].toObject()["kl"].toDouble(), 0.0);
    QCOMPARE(ms[0].toObject()["top1"].toDouble(), 1.0);
    for (int i = 1; i < 4; ++i) QVERIFY(ms[i].toObject()["kl"].toDouble() > 0);
    QCOMPARE(j["windows"].toInt(), 4);
    QVERIFY(j["eval_excludes_calibration_region"].toBool());
    QVERIFY(j.contains("settings"));

    // Text table: KL and top-1 before PPL.
    const Run t = run_cli(QStringList{"compare", model(), "--data", stories(), "--methods", "rtn",
                                      "--seqlen", "128", "--windows", "2"} +
                          small_calibration());
    QVERIFY2(t.exit_code == 0, qPrintable(t.err));
    const qsizetype kl = t.out.indexOf("KL"), ppl = t.out.indexOf("PPL");
    QVERIFY(kl >= 0 && ppl > kl);
  }

  void badInput_data() {
    QTest::addColumn<QStringList>("args");
    QTest::addColumn<QString>("expected");
    QTest::newRow("unknown method")
        << QStringList{"calibrate", model(), "--data", wiki(),
                       "--method",  "bogus", "--out",  dir_.filePath("x.h5")}
        << "bogus";
    QTest::newRow("empty method list")
        << QStringList{"compare", model(), "--data", wiki(), "--methods", ","} << "--methods";
    QTest::newRow("missing text") << QStringList{"calibrate", model(),
                                                 "--data",    dir_.filePath("nope.txt"),
                                                 "--out",     dir_.filePath("y.h5")}
                                  << "nope.txt";
    QTest::newRow("bad scale rule") << QStringList{"compare",   model(), "--data",       wiki(),
                                                   "--methods", "rtn",   "--scale-rule", "floor"}
                                    << "--scale-rule";
    QTest::newRow("out dir missing")
        << QStringList{"calibrate", model(), "--data",
                       wiki(),      "--out", dir_.filePath("no/dir/s.h5")}
        << "does not exist";
    QTest::newRow("kl without session")
        << QStringList{"eval", model(), "--data", wiki(), "--seqlen", "64", "--kl"} << "--session";
  }

  void badInput() {
    QFETCH(QStringList, args);
    QFETCH(QString, expected);
    const Run r = run_cli(args);
    QVERIFY2(r.exit_code != 0 && r.exit_code != -1, qPrintable(r.err));
    QVERIFY2(r.err.contains(expected), qPrintable(r.err));
  }

  void notASessionFile() {
    const QString bogus = dir_.filePath("bogus.h5");
    QFile f(bogus);
    QVERIFY(f.open(QIODevice::WriteOnly));
    f.write("this is not HDF5");
    f.close();
    const Run r = run_cli({"eval", model(), "--data", wiki(), "--seqlen", "64", "--windows", "1",
                           "--session", bogus});
    QVERIFY(r.exit_code != 0 && r.exit_code != -1);
    QVERIFY2(r.err.contains(bogus) && r.err.contains("session"), qPrintable(r.err));
  }
};

QTEST_GUILESS_MAIN(TestCliCalibrate)
#include "test_cli_calibrate.moc"
