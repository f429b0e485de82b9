// mxlens-cli tokenize run as a user would: ids printed for real files, JSON form, decode,
// and errors that name the file and byte offset.
#include <QtTest>

#include <QFile>
#include <QJsonArray>
#include <QJsonDocument>
#include <QJsonObject>
#include <QProcess>
#include <QTemporaryDir>

#include "tests/test_data.h"

namespace {

constexpr int kTimeoutMs = 60000;

struct Run {
  int exit_code = -1;
  QByteArray out;
  QString err;
};

Run run_cli(const QStringList& args) {
  QProcess p;
  p.start(QString::fromLocal8Bit(qgetenv("MXLENS_CLI")), args);
  Run r;
  if (!p.waitForFinished(kTimeoutMs)) {
    p.kill();
    p.waitForFinished();
    r.err = "timed out";
    return r;
  }
  r.exit_code = p.exitStatus() == QProcess::NormalExit ? p.exitCode() : -1;
  r.out = p.readAllStandardOutput();
  r.err = QString::fromUtf8(p.readAllStandardError());
  return r;
}

QString path_of(const std::filesystem::path& p) {
  return QString::fromStdString(p.string());
}

QString model_656k() {
  return path_of(mxlens::test::model_656k());
}
QString llama3_json() {
  return path_of(mxlens::test::data_dir() / "tokenizers" / "llama3" / "tokenizer.json");
}

QString write_temp(const QTemporaryDir& dir, const QString& name, const QByteArray& bytes) {
  const QString p = dir.filePath(name);
  QFile f(p);
  if (!f.open(QIODevice::WriteOnly)) return {};
  f.write(bytes);
  return p;
}

QList<int> ids_of(const QByteArray& json) {
  QList<int> ids;
  const QJsonDocument doc = QJsonDocument::fromJson(json);
  for (const auto& v : doc.object().value("ids").toArray()) ids << v.toInt();
  return ids;
}

}  // namespace

class TestCliTokenize : public QObject {
  Q_OBJECT
 private slots:
  void initTestCase() {
    QVERIFY2(!qgetenv("MXLENS_CLI").isEmpty(), "MXLENS_CLI is not set (run through ctest)");
  }

  void jsonIds_data() {
    QTest::addColumn<QString>("model");
    QTest::addColumn<QByteArray>("text");
    QTest::addColumn<bool>("no_special");
    QTest::addColumn<QList<int>>("expected");
    QTest::newRow("656k dir once-upon")
        << model_656k() << QByteArray("Once upon a time, there was a little girl.") << false
        << QList<int>{1, 80, 147, 201, 282, 215, 286, 1890, 10};
    QTest::newRow("656k dir once-upon --no-special")
        << model_656k() << QByteArray("Once upon a time, there was a little girl.") << true
        << QList<int>{80, 147, 201, 282, 215, 286, 1890, 10};
    QTest::newRow("llama3 json hello")
        << llama3_json() << QByteArray("Hello world") << false << QList<int>{9906, 1917};
  }
  void jsonIds() {
    QFETCH(QString, model);
    QFETCH(QByteArray, text);
    QFETCH(bool, no_special);
    QFETCH(QList<int>, expected);
    QTemporaryDir dir;
    const QString file = write_temp(dir, "in.txt", text);
    QStringList args = {"tokenize", model, file, "--json"};
    if (no_special) args << "--no-special";
    const Run r = run_cli(args);
    QVERIFY2(r.exit_code == 0, qPrintable(r.err));
    // Exactly {"ids":[...]} (and a newline).
    QVERIFY2(r.out.startsWith("{\"ids\":[") && r.out.trimmed().endsWith("]}"), r.out.constData());
    QCOMPARE(ids_of(r.out), expected);
  }

  void listingAndSummary() {
    QTemporaryDir dir;
    const QString file = write_temp(dir, "in.txt", "Hello world\n\xE6\x95\xB0");
    const Run r = run_cli({"tokenize", model_656k(), file});
    QVERIFY2(r.exit_code == 0, qPrintable(r.err));
    const QString out = QString::fromUtf8(r.out);
    QVERIFY2(out.contains("0\t1\t<|start_story|>\n"), qPrintable(out));
    QVERIFY2(out.contains("\t3\t\\n\n"), qPrintable(out));  // newline piece shown escaped
    QVERIFY2(out.contains("8 tokens, 1 unknown (id 0), 15 bytes, with special tokens"),
             qPrintable(out));
  }

  void wholeFileCountMatchesLibrary() {
    // HF tokenizers: 554431 tokens for wiki.test.raw with the 656K tokenizer, no BOS.
    const Run r = run_cli(
        {"tokenize", model_656k(), path_of(mxlens::test::wiki_test()), "--json", "--no-special"});
    QVERIFY2(r.exit_code == 0, qPrintable(r.err));
    const QList<int> ids = ids_of(r.out);
    QCOMPARE(ids.size(), 554431);
    QCOMPARE(static_cast<int>(std::count(ids.begin(), ids.end(), 0)), 14463);
  }

  void decodeRoundTrip() {
    QTemporaryDir dir;
    const QByteArray text = "Caf\xC3\xA9 = 12345 \xF0\x9F\x98\x80\n  two spaces\n";
    const QString file = write_temp(dir, "in.txt", text);
    const Run enc = run_cli({"tokenize", llama3_json(), file, "--json"});
    QVERIFY2(enc.exit_code == 0, qPrintable(enc.err));
    const QString ids_file = write_temp(dir, "ids.json", enc.out);
    const Run dec = run_cli({"tokenize", llama3_json(), ids_file, "--decode"});
    QVERIFY2(dec.exit_code == 0, qPrintable(dec.err));
    QCOMPARE(dec.out, text);
    // Plain whitespace-separated ids work too. With --no-special the HF library still keeps
    // 656K's BOS text: its added tokens are "normalized", so the decoder sees "▁<|start_story|>",
    // which is not in the special set. The expected text is the library's decode.
    const QString plain = write_temp(dir, "ids.txt", "1 80 147 201 282\n");
    const Run d2 = run_cli({"tokenize", model_656k(), plain, "--decode", "--no-special"});
    QVERIFY2(d2.exit_code == 0, qPrintable(d2.err));
    QCOMPARE(d2.out, QByteArray("<|start_story|> Once upon a tim"));
    // spm-bpe-32k's <s> is not normalized, so there --no-special does drop it.
    const QString spm =
        QString::fromStdString((mxlens::test::data_dir() / "tokenizers" / "spm-bpe-32k").string());
    const Run d3 = run_cli(
        {"tokenize", spm, write_temp(dir, "ids2.txt", "1 22557 1526"), "--decode", "--no-special"});
    QVERIFY2(d3.exit_code == 0, qPrintable(d3.err));
    QCOMPARE(d3.out, QByteArray("Hello world"));
  }

  void errors_data() {
    QTest::addColumn<QString>("case_name");
    QTest::addColumn<QString>("expected_words");
    QTest::newRow("empty file") << "empty"
                                << "in.txt: file is empty";
    QTest::newRow("invalid UTF-8 at 6") << "invalid"
                                        << "in.txt: not valid UTF-8 at byte offset 6";
    QTest::newRow("missing text file") << "missing_text"
                                       << "nope.txt: no such file";
    QTest::newRow("missing model") << "missing_model"
                                   << "no-model: no such file or directory";
    QTest::newRow("directory without tokenizer.json") << "no_tokenizer"
                                                      << "directory has no tokenizer.json";
    QTest::newRow("decode id outside vocab") << "bad_id"
                                             << "token id 99999";
    QTest::newRow("decode non-numbers") << "bad_ids_text"
                                        << "expected token ids";
  }
  void errors() {
    QFETCH(QString, case_name);
    QFETCH(QString, expected_words);
    QTemporaryDir dir;
    QStringList args = {"tokenize", model_656k()};
    if (case_name == "empty") args << write_temp(dir, "in.txt", "");
    if (case_name == "invalid") args << write_temp(dir, "in.txt", "hello \xC3\x28 world");
    if (case_name == "missing_text") args << dir.filePath("nope.txt");
    if (case_name == "missing_model")
      args = {"tokenize", dir.filePath("no-model"), write_temp(dir, "in.txt", "x")};
    if (case_name == "no_tokenizer")
      args = {"tokenize", dir.path(), write_temp(dir, "in.txt", "x")};
    if (case_name == "bad_id") args << write_temp(dir, "ids.txt", "1 2 99999") << "--decode";
    if (case_name == "bad_ids_text") args << write_temp(dir, "ids.txt", "1 two 3") << "--decode";
    const Run r = run_cli(args);
    QVERIFY2(r.exit_code != 0, "exit code 0 for bad input");
    QVERIFY2(r.err.contains(expected_words), qPrintable(r.err));
  }

  void helpListsOptions() {
    const Run r = run_cli({"tokenize", "--help"});
    QCOMPARE(r.exit_code, 0);
    for (const char* opt : {"--no-special", "--json", "--decode"})
      QVERIFY2(r.out.contains(opt), r.out.constData());
  }
};

QTEST_GUILESS_MAIN(TestCliTokenize)
#include "test_cli_tokenize.moc"
