// mxlens-cli info / synth run as a user would run them: exit codes, the numbers printed,
// and error messages that name the broken file.
#include <QtTest>

#include <QJsonArray>
#include <QJsonDocument>
#include <QJsonObject>
#include <QProcess>

#include "tests/cli/cli_runner.h"
#include "tests/test_data.h"

namespace {

constexpr int kTimeoutMs = 60000;

using Run = mxlens::test::CliRun;
Run run_cli(const QStringList& args) {
  return mxlens::test::run_cli(args, kTimeoutMs);
}

QString model_656k() {
  return QString::fromStdString(mxlens::test::model_656k().string());
}

}  // namespace

class TestCliInfo : public QObject {
  Q_OBJECT
 private slots:
  void initTestCase() {
    QVERIFY2(!qgetenv("MXLENS_CLI").isEmpty(), "MXLENS_CLI is not set (run through ctest)");
  }

  void info656kText() {
    const Run r = run_cli({"info", model_656k()});
    QVERIFY2(r.exit_code == 0, qPrintable(r.err));
    for (const char* line :
         {"architecture: LlamaForCausalLM (llama)", "hidden_size: 128", "intermediate_size: 384",
          "layers: 2", "heads: 8, kv_heads: 4 (group 2)", "head_dim: 16", "vocab_size: 2048",
          "rope: theta 10000, no scaling", "rms_norm_eps: 1e-06",
          "tie_word_embeddings: true (embedding: lm_head.weight, lm_head: lm_head.weight)",
          "tensors: 20", "parameters: 656000", "bytes F32: 2624000 (656000 parameters)",
          "file bytes: 2626168 in 1 shard(s)"}) {
      QVERIFY2(r.out.contains(QString::fromUtf8(line)), qPrintable(QString("missing: ") + line));
    }
    QVERIFY(r.out.contains(QRegularExpression(
        R"(model\.layers\.1\.self_attn\.k_proj\.weight\s+F32\s+\[64, 128\]\s+32768\s+model\.safetensors)")));
  }

  void info656kJson() {
    const Run r = run_cli({"info", model_656k(), "--json"});
    QVERIFY2(r.exit_code == 0, qPrintable(r.err));
    QJsonParseError error;
    const QJsonObject j = QJsonDocument::fromJson(r.out.toUtf8(), &error).object();
    QVERIFY2(error.error == QJsonParseError::NoError, qPrintable(error.errorString()));
    const QJsonObject cfg = j["config"].toObject();
    QCOMPARE(cfg["hidden_size"].toInt(), 128);
    QCOMPARE(cfg["num_kv_heads"].toInt(), 4);
    QCOMPARE(cfg["rms_norm_eps"].toDouble(), 1e-6);
    QCOMPARE(j["embedding"].toString(), QString("lm_head.weight"));
    QCOMPARE(j["tensors"].toArray().size(), 20);
    const QJsonObject totals = j["totals"].toObject();
    QCOMPARE(totals["parameters"].toInteger(), 656000);
    QCOMPARE(totals["file_bytes"].toInteger(), 2626168);
    QCOMPARE(totals["bytes_by_dtype"].toObject()["F32"].toInteger(), 2624000);
  }

  void infoBrokenDirNamesTheFile_data() {
    QTest::addColumn<QString>("breakage");
    QTest::addColumn<QString>("file");
    QTest::addColumn<QString>("problem");
    QTest::newRow("config.json without vocab_size") << "no-vocab"
                                                    << "config.json"
                                                    << "missing required field 'vocab_size'";
    QTest::newRow("truncated model.safetensors") << "truncated"
                                                 << "model.safetensors"
                                                 << "file is truncated";
    QTest::newRow("directory does not exist") << "absent"
                                              << ""
                                              << "directory does not exist";
  }
  void infoBrokenDirNamesTheFile() {
    QFETCH(QString, breakage);
    QFETCH(QString, file);
    QFETCH(QString, problem);
    QTemporaryDir tmp;
    const QString dir = tmp.filePath("model");
    const QString src = model_656k();
    if (breakage != "absent") {
      QVERIFY(QDir().mkpath(dir));
      QFile config(src + "/config.json");
      QVERIFY(config.open(QIODevice::ReadOnly));
      QByteArray config_text = config.readAll();
      if (breakage == "no-vocab") config_text.replace("\"vocab_size\"", "\"vocab_size_gone\"");
      QFile out(dir + "/config.json");
      QVERIFY(out.open(QIODevice::WriteOnly));
      out.write(config_text);
      out.close();
      QFile model(src + "/model.safetensors");
      QVERIFY(model.open(QIODevice::ReadOnly));
      QByteArray weights = model.readAll();
      if (breakage == "truncated") weights.chop(100);
      QFile model_out(dir + "/model.safetensors");
      QVERIFY(model_out.open(QIODevice::WriteOnly));
      model_out.write(weights);
    }
    const Run r = run_cli({"info", dir});
    qInfo().noquote() << r.err.trimmed();
    QCOMPARE(r.exit_code, 1);
    const QString path = file.isEmpty() ? dir : dir + "/" + file;
    QVERIFY2(r.err.contains(path + ": "), qPrintable(r.err));
    QVERIFY2(r.err.contains(problem), qPrintable(r.err));
  }

  void synthThenInfo() {
    QTemporaryDir tmp;
    const QString dir = tmp.filePath("synthetic");
    const Run w = run_cli(
        {"synth", "--preset", "tiny", "--out", dir, "--seed", "3", "--shard-bytes", "60000"});
    QVERIFY2(w.exit_code == 0, qPrintable(w.err));
    QVERIFY(w.out.contains("127296 parameters"));
    QVERIFY(w.out.contains("6 shard(s)"));
    const Run r = run_cli({"info", dir});
    QVERIFY2(r.exit_code == 0, qPrintable(r.err));
    QVERIFY(r.out.contains("bytes BF16: 254592 (127296 parameters)"));
    QVERIFY(r.out.contains("in 6 shard(s)"));
    QVERIFY(r.out.contains("tie_word_embeddings: false"));

    // A second run into the now non-empty directory refuses.
    const Run again = run_cli({"synth", "--preset", "tiny", "--out", dir});
    QCOMPARE(again.exit_code, 1);
    QVERIFY2(again.err.contains(dir + ": directory is not empty"), qPrintable(again.err));
    const Run bad = run_cli({"synth", "--preset", "nope", "--out", tmp.filePath("x")});
    QCOMPARE(bad.exit_code, 1);
    QVERIFY2(bad.err.contains("--preset: unknown preset 'nope'"), qPrintable(bad.err));
  }
};

QTEST_GUILESS_MAIN(TestCliInfo)
#include "test_cli_info.moc"
