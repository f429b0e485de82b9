// mxlens-cli demo runs without files, prints the report, and rejects bad options.
#include <QtTest>

#include "tests/cli/cli_runner.h"

namespace {

constexpr int kTimeoutMs = 60000;

using Run = mxlens::test::CliBytesRun;
Run run_cli(const QStringList& args) {
  return mxlens::test::run_cli_bytes(args, kTimeoutMs);
}

}  // namespace

class TestCliDemo : public QObject {
  Q_OBJECT
 private slots:
  void initTestCase() {
    QVERIFY2(!qEnvironmentVariable("MXLENS_CLI").isEmpty(), "MXLENS_CLI is not set");
  }

  void printsReport() {
    const Run r = run_cli({"demo", "--tokens", "64", "--channels", "128", "--seed", "3"});
    QVERIFY2(r.exit_code == 0, r.err.constData());
    for (const char* part : {"outlier channels", "E8M0 exponent k = e-127 per block, identity",
                             "hadamard32", "total MXFP4 error: identity",
                             "DuQuant++ greedy-32 search", "best prefix k* =", "W4A4 output error"})
      QVERIFY2(r.out.contains(part), part);
    // Same seed, same report.
    const Run again = run_cli({"demo", "--tokens", "64", "--channels", "128", "--seed", "3"});
    QCOMPARE(again.out, r.out);
  }

  void rejectsBadOptions_data() {
    QTest::addColumn<QStringList>("options");
    QTest::addColumn<QString>("message");
    QTest::newRow("channels 100") << QStringList{"--channels", "100"} << "--channels";
    QTest::newRow("outliers above channels") << QStringList{"--outliers", "999"} << "--outliers";
    QTest::newRow("scale 0") << QStringList{"--scale", "0"} << "--scale";
    QTest::newRow("greedy steps -1") << QStringList{"--greedy-steps", "-1"} << "--greedy-steps";
  }
  void rejectsBadOptions() {
    QFETCH(QStringList, options);
    QFETCH(QString, message);
    const Run r = run_cli(QStringList{"demo"} + options);
    qInfo("exit %d: %s", r.exit_code, r.err.trimmed().constData());
    QCOMPARE(r.exit_code, 1);
    QVERIFY(r.err.contains(message.toUtf8()));
  }
};

QTEST_GUILESS_MAIN(TestCliDemo)
#include "test_cli_demo.moc"
