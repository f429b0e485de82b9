// mxlens-cli plant run as a user would run it: both modes verified on the real tiny models,
// the text report, refusal of an existing --out, --verify failing when the tolerance is too
// tight, and a clear non-zero exit for bad input.
#include <QtTest>

#include <QDir>
#include <QFile>
#include <QJsonArray>
#include <QJsonDocument>
#include <QJsonObject>
#include <QProcess>
#include <QTemporaryDir>
#include <cmath>

#include "tests/cli/cli_runner.h"
#include "tests/test_data.h"

namespace {

constexpr int kTimeoutMs = 120000;
constexpr double kLogitRelTol = 1e-4;   // the command's default --verify-tol
constexpr double kGrowthRelTol = 1e-3;  // norm mode: planted absmax grows by S

using Run = mxlens::test::CliRun;
Run run_cli(const QStringList& args) {
  return mxlens::test::run_cli(args, kTimeoutMs);
}

QString str(const std::filesystem::path& p) {
  return mxlens::test::qstr(p);
}

QString stories() {
  return str(mxlens::test::data_dir() / "tinystories-text" / "stories.txt");
}

using mxlens::test::parse_json;

}  // namespace

class TestCliPlant : public QObject {
  Q_OBJECT
 private slots:
  void initTestCase() {
    QVERIFY2(!qgetenv("MXLENS_CLI").isEmpty(), "MXLENS_CLI is not set (run through ctest)");
  }

  void helpExplainsModes() {
    const Run r = run_cli({"plant", "--help"});
    QCOMPARE(r.exit_code, 0);
    for (const char* word : {"--mode", "norm", "residual", "RTN", "smoothing", "--verify",
                             "--channels", "--scale", "--seed", "--force", "--calib"})
      QVERIFY2(r.out.contains(word), word);
  }

  void verified_data() {
    QTest::addColumn<QString>("model");
    QTest::addColumn<QStringList>("extra");
    QTest::addColumn<double>("scale");  // 0: residual mode
    QTest::newRow("656k norm S=8 calib text")
        << "tinystories-656k" << QStringList{"--calib", stories()} << 8.0;
    QTest::newRow("656k residual calib text")
        << "tinystories-656k" << QStringList{"--mode", "residual", "--calib", stories()} << 0.0;
    QTest::newRow("260k norm S=16 intermediate")
        << "stories260K-hf" << QStringList{"--scale", "16", "--intermediate"} << 16.0;
    QTest::newRow("260k residual random ids")
        << "stories260K-hf" << QStringList{"--mode", "residual"} << 0.0;
  }
  void verified() {
    QFETCH(QString, model);
    QFETCH(QStringList, extra);
    QFETCH(double, scale);
    QTemporaryDir tmp;
    const QString out = tmp.filePath("planted");
    const Run r = run_cli(QStringList{"plant", str(mxlens::test::data_dir() / model.toStdString()),
                                      "--out", out, "--verify", "--json", "--threads", "1"} +
                          extra);
    QVERIFY2(r.exit_code == 0, qPrintable(r.err));
    const QJsonObject j = parse_json(r);
    const double rel = j["relative_logit_diff"].toDouble(-1);
    qInfo("%s: max|dlogit| %.3e, max|logit| %.4g, relative %.3e", qPrintable(model),
          j["max_abs_logit_diff"].toDouble(), j["max_abs_logit"].toDouble(), rel);
    QVERIFY(rel >= 0 && rel <= kLogitRelTol);
    QVERIFY(j["verified"].toBool());
    QCOMPARE(j["channels"].toArray().size(), 4);
    QVERIFY(QFile::exists(out + "/model.safetensors"));
    QVERIFY(QFile::exists(out + "/mxlens_plant.json"));
    QVERIFY(QFile::exists(out + "/config.json"));
    const QJsonArray sites = j["sites_check"].toArray();
    QVERIFY(!sites.isEmpty());
    for (const auto& v : sites) {
      const QJsonObject s = v.toObject();
      if (scale > 0) {
        const double growth =
            s["planted_absmax_after"].toDouble() / s["planted_absmax_before"].toDouble();
        QVERIFY2(std::abs(growth / scale - 1) <= kGrowthRelTol,
                 qPrintable(QString::number(growth)));
      } else {
        QVERIFY(s["planted_absmax_after"].toDouble() > s["planted_absmax_before"].toDouble());
      }
    }
    if (scale == 0) {
      QFile cfg(out + "/config.json");
      QVERIFY(cfg.open(QIODevice::ReadOnly));
      QCOMPARE(QJsonDocument::fromJson(cfg.readAll()).object()["tie_word_embeddings"].toBool(true),
               false);
    }
  }

  void textReport() {
    QTemporaryDir tmp;
    const Run r = run_cli({"plant", str(mxlens::test::model_260k()), "--out", tmp.filePath("p"),
                           "--verify", "--threads", "1", "--channels", "2", "--seed", "3"});
    QVERIFY2(r.exit_code == 0, qPrintable(r.err));
    for (const char* line : {"planted", "channels", "scale", "dtype", "check", "verify", "ok"})
      QVERIFY2(r.out.contains(line), line);
  }

  void refusesExistingOut() {
    QTemporaryDir tmp;
    const QString out = tmp.filePath("p");
    const QStringList args{
        "plant", str(mxlens::test::model_260k()), "--out", out, "--threads", "1", "--check-tokens",
        "0"};
    QCOMPARE(run_cli(args).exit_code, 0);
    QFile marker(out + "/marker");
    QVERIFY(marker.open(QIODevice::WriteOnly));
    marker.close();
    const Run again = run_cli(args);
    QCOMPARE(again.exit_code, 1);
    QVERIFY2(again.err.contains("already exists"), qPrintable(again.err));
    QVERIFY(QFile::exists(out + "/marker"));
    QCOMPARE(run_cli(args + QStringList{"--force"}).exit_code, 0);
    QVERIFY(!QFile::exists(out + "/marker"));
  }

  // --verify must be able to fail: S = 6 rounds values, so a tolerance of 1e-12 is exceeded.
  void verifyFailsBeyondTolerance() {
    QTemporaryDir tmp;
    const Run r = run_cli({"plant", str(mxlens::test::model_260k()), "--out", tmp.filePath("p"),
                           "--scale", "6", "--verify", "--verify-tol", "1e-12", "--threads", "1"});
    QCOMPARE(r.exit_code, 1);
    QVERIFY2(r.out.contains("FAILED"), qPrintable(r.out));
    QVERIFY2(r.err.contains("--verify-tol"), qPrintable(r.err));
  }

  void badInput_data() {
    QTest::addColumn<QStringList>("args");
    const QString m260 = str(mxlens::test::model_260k());
    QTest::newRow("unknown mode") << QStringList{m260, "--mode", "spin"};
    QTest::newRow("scale in residual mode")
        << QStringList{m260, "--mode", "residual", "--scale", "4"};
    QTest::newRow("calib without tokenizer") << QStringList{m260, "--calib", stories()};
    QTest::newRow("zero channels") << QStringList{m260, "--channels", "0"};
    QTest::newRow("too many channels") << QStringList{m260, "--channels", "65"};
    QTest::newRow("layer out of range") << QStringList{m260, "--layers", "7"};
    QTest::newRow("unknown site") << QStringList{m260, "--sites", "attention-norm,lm-head"};
    QTest::newRow("missing model") << QStringList{"/nonexistent/model"};
    QTest::newRow("out is the source") << QStringList{m260, "--force"};
  }
  void badInput() {
    QFETCH(QStringList, args);
    QTemporaryDir tmp;
    const bool out_is_source = QString(QTest::currentDataTag()) == "out is the source";
    const QString out = out_is_source ? args[0] : tmp.filePath("p");
    const Run r = run_cli(QStringList{"plant"} + args + QStringList{"--out", out});
    QVERIFY2(r.exit_code != 0, qPrintable(r.out));
    QVERIFY(!r.err.isEmpty());
    if (!out_is_source) QVERIFY(!QFile::exists(out));
    QCOMPARE(
        QDir(tmp.path()).entryList(QDir::NoDotAndDotDot | QDir::AllEntries | QDir::Hidden).size(),
        0);
  }
};

QTEST_GUILESS_MAIN(TestCliPlant)
#include "test_cli_plant.moc"
