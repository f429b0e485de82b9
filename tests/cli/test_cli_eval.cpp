// mxlens-cli eval run as a user would run it: JSON fields and their consistency, the text
// report, --bos, and a clear non-zero exit for every kind of bad input.
#include <QtTest>

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
// scripts/reference_ppl.py (numpy, float64) on tinystories-656k, wiki.test.raw, no BOS,
// first 8 windows of 256 tokens; tests/core/test_perplexity.cpp checks the same value.
constexpr double kNumpyPpl256First8 = 806.5310641206884;
constexpr double kPplRelTol = 1e-4;

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
                     "--threads", "1"} +
         extra;
}

void write_file(const QString& path, const QByteArray& bytes) {
  QFile f(path);
  QVERIFY(f.open(QIODevice::WriteOnly));
  f.write(bytes);
}

}  // namespace

class TestCliEval : public QObject {
  Q_OBJECT
 private slots:
  void initTestCase() {
    QVERIFY2(!qgetenv("MXLENS_CLI").isEmpty(), "MXLENS_CLI is not set (run through ctest)");
  }

  void jsonFieldsConsistent() {
    const Run r = run_cli(eval_656k({"--seqlen", "256", "--windows", "8", "--json"}));
    QVERIFY2(r.exit_code == 0, qPrintable(r.err));
    QVERIFY2(!r.err.contains("ETA"), "progress bar written although stderr is not a TTY");
    QJsonParseError perr;
    const QJsonObject j = QJsonDocument::fromJson(r.out.toUtf8(), &perr).object();
    QVERIFY2(perr.error == QJsonParseError::NoError, qPrintable(r.out));
    for (const char* key :
         {"ppl", "ppl_low", "ppl_high", "nll_mean", "nll_stderr", "windows", "tokens_scored",
          "tokens_total", "tokens_per_s", "seconds", "window_ppl", "window_nll", "seqlen", "bos",
          "threads", "model", "data"})
      QVERIFY2(j.contains(key), key);
    QCOMPARE(j["windows"].toInt(), 8);
    QCOMPARE(j["seqlen"].toInt(), 256);
    QCOMPARE(j["tokens_scored"].toInt(), 8 * 255);
    QCOMPARE(j["tokens_total"].toInt(), 554431);
    QCOMPARE(j["bos"].toBool(), false);
    QCOMPARE(j["threads"].toInt(), 1);
    const QJsonArray wppl = j["window_ppl"].toArray(), wnll = j["window_nll"].toArray();
    QCOMPARE(wppl.size(), 8);
    QCOMPARE(wnll.size(), 8);
    double mean = 0;
    for (int i = 0; i < 8; ++i) {
      QVERIFY(std::abs(wppl[i].toDouble() - std::exp(wnll[i].toDouble())) <=
              1e-9 * wppl[i].toDouble());
      mean += wnll[i].toDouble() / 8;
    }
    const double ppl = j["ppl"].toDouble();
    QVERIFY(std::abs(mean - j["nll_mean"].toDouble()) < 1e-9);
    QVERIFY(std::abs(ppl - std::exp(j["nll_mean"].toDouble())) < 1e-9 * ppl);
    QVERIFY(j["ppl_low"].toDouble() < ppl && ppl < j["ppl_high"].toDouble());
    QVERIFY(j["tokens_per_s"].toDouble() > 0);
    const double rel = std::abs(ppl - kNumpyPpl256First8) / kNumpyPpl256First8;
    std::printf("  ppl %.10f vs numpy %.10f: relative difference %.3g\n", ppl, kNumpyPpl256First8,
                rel);
    QVERIFY(rel <= kPplRelTol);
  }

  void textReportAndBos() {
    const Run r = run_cli(eval_656k({"--seqlen", "128", "--windows", "2"}));
    QVERIFY2(r.exit_code == 0, qPrintable(r.err));
    for (const char* s : {"PPL ", "NLL ", "windows        2 x 128 tokens", "tokens scored  254",
                          "tokens/s", "554431 tokens"})
      QVERIFY2(r.out.contains(s), qPrintable(s + QString(" missing in:\n") + r.out));
    const Run bos = run_cli(eval_656k({"--seqlen", "128", "--windows", "2", "--bos", "--json"}));
    QVERIFY2(bos.exit_code == 0, qPrintable(bos.err));
    const QJsonObject j = QJsonDocument::fromJson(bos.out.toUtf8()).object();
    QCOMPARE(j["bos"].toBool(), true);
    QCOMPARE(j["tokens_total"].toInt(), 554432);  // one BOS for the whole text
  }

  void errors_data() {
    QTest::addColumn<QString>("case_name");
    QTest::addColumn<QString>("needle");
    QTest::newRow("seqlen 1024 exceeds the model's 512") << "seqlen"
                                                         << "512";
    QTest::newRow("seqlen 1 is too short") << "seqlen1"
                                           << "--seqlen";
    QTest::newRow("missing data file") << "missing"
                                       << "no-such-file.txt";
    QTest::newRow("empty data file") << "empty"
                                     << "empty.txt";
    QTest::newRow("non-UTF-8 data file") << "latin1"
                                         << "latin1.txt";
    QTest::newRow("text shorter than one window") << "short"
                                                  << "short.txt: has 5 tokens, fewer";
    QTest::newRow("model without tokenizer.json") << "notokenizer"
                                                  << "tokenizer.json";
    QTest::newRow("truncated model.safetensors") << "broken"
                                                 << "model.safetensors";
    QTest::newRow("missing model directory") << "nomodel"
                                             << "no-such-model";
  }
  void errors() {
    QFETCH(QString, case_name);
    QFETCH(QString, needle);
    QTemporaryDir tmp;
    const QString model = str(mxlens::test::model_656k());
    QString data = str(mxlens::test::wiki_test());
    QString seqlen = "256";
    QString model_dir = model;
    if (case_name == "seqlen") seqlen = "1024";
    if (case_name == "seqlen1") seqlen = "1";
    if (case_name == "missing") data = tmp.filePath("no-such-file.txt");
    if (case_name == "empty") write_file(data = tmp.filePath("empty.txt"), "");
    if (case_name == "latin1") write_file(data = tmp.filePath("latin1.txt"), "caf\xe9 au lait\n");
    if (case_name == "short") write_file(data = tmp.filePath("short.txt"), "Once upon a time.\n");
    if (case_name == "notokenizer") model_dir = str(mxlens::test::model_260k());
    if (case_name == "nomodel") model_dir = tmp.filePath("no-such-model");
    if (case_name == "broken") {
      model_dir = tmp.filePath("broken");
      QVERIFY(QDir().mkpath(model_dir));
      for (const char* f : {"config.json", "tokenizer.json"})
        QVERIFY(QFile::copy(model + "/" + f, model_dir + "/" + f));
      QFile src(model + "/model.safetensors");
      QVERIFY(src.open(QIODevice::ReadOnly));
      write_file(model_dir + "/model.safetensors", src.read(src.size() / 2));
    }
    const Run r =
        run_cli({"eval", model_dir, "--data", data, "--seqlen", seqlen, "--threads", "1"});
    std::printf("  exit %d: %s", r.exit_code, qPrintable(r.err));
    QVERIFY(r.exit_code != 0);
    QVERIFY2(r.err.contains(needle), qPrintable(r.err));
    QVERIFY(r.out.isEmpty());
  }
};

QTEST_GUILESS_MAIN(TestCliEval)
#include "test_cli_eval.moc"
