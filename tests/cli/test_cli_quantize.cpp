// mxlens-cli quantize, run as a process: bytes of the §1.6 vectors in both layouts, headers
// of dqv2_log8 / nvfp4, and error exits on bad input.
#include <QtTest>

#include "tests/cli/cli_runner.h"

#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

namespace {

constexpr int kTimeoutMs = 30000;

const std::vector<float> kV1 = {
    0.1234f, -0.5678f, 0.9012f,  -1.3456f, 1.7890f,  -2.2222f, 0.0311f,  -0.0001f,
    0.4444f, -0.6667f, 2.9000f,  -3.1415f, 0.7071f,  -0.2500f, 1.1111f,  -1.9999f,
    0.3333f, -0.8765f, 5.4321f,  -0.0625f, 0.1500f,  -4.0500f, 2.5100f,  -0.3750f,
    0.0000f, 1.4142f,  -1.7321f, 0.6000f,  -0.9000f, 3.6000f,  -2.7000f, 0.0450f};
const std::vector<float> kV2 = {7.5f,   -0.25f, 0.75f,   -1.25f, 1.75f, -2.5f,  3.5f,   -5.0f,
                                0.125f, 0.375f, -0.625f, 0.875f, 1.0f,  -1.5f,  2.0f,   -3.0f,
                                4.0f,   -6.0f,  6.5f,    -7.0f,  0.0f,  -0.0f,  0.5f,   0.0625f,
                                2.25f,  -2.75f, 3.25f,   -4.5f,  5.5f,  -5.75f, 1.125f, -0.1875f};

QByteArray floats(const std::vector<float>& v) {
  return QByteArray(reinterpret_cast<const char*>(v.data()),
                    static_cast<qsizetype>(v.size() * sizeof(float)));
}

using Run = mxlens::test::CliBytesRun;
Run run_cli(const QStringList& args) {
  return mxlens::test::run_cli_bytes(args, kTimeoutMs);
}

}  // namespace

class TestCliQuantize : public QObject {
  Q_OBJECT
  QTemporaryDir dir_;

  QString write_input(const QString& name, const QByteArray& bytes) {
    const QString path = dir_.filePath(name);
    QFile f(path);
    if (!f.open(QIODevice::WriteOnly)) qFatal("cannot write %s", qPrintable(path));
    f.write(bytes);
    return path;
  }

 private slots:
  void initTestCase() {
    QVERIFY2(!qEnvironmentVariable("MXLENS_CLI").isEmpty(), "MXLENS_CLI is not set");
    QVERIFY(dir_.isValid());
  }

  void writesBlocks_data() {
    QTest::addColumn<QByteArray>("input");
    QTest::addColumn<QStringList>("options");
    QTest::addColumn<QByteArray>("expected");
    QTest::newRow("V1 mxfp4 default (ocp_floor rne ggml)")
        << floats(kV1) << QStringList{}
        << QByteArray::fromHex("7f10a9720b04ec50900139b51da160d20c");
    QTest::newRow("V1 mxfp4 layout pairs")
        << floats(kV1) << QStringList{"--layout", "pairs"}
        << QByteArray::fromHex("90b2c40091d501c2a107e095301b6a0d7f");
    QTest::newRow("V1 twice is two blocks")
        << floats(kV1) + floats(kV1) << QStringList{"--layout", "ggml"}
        << QByteArray::fromHex(
               "7f10a9720b04ec50900139b51da160d20c7f10a9720b04ec50900139b51da160d20c");
    QTest::newRow("V2 rounding ggml") << floats(kV2) << QStringList{"--rounding", "ggml"}
                                      << QByteArray::fromHex("7f67f071fa030c150e40d159e272fb240d");
    QTest::newRow("V2 rounding rne") << floats(kV2) << QStringList{"--rounding", "rne"}
                                     << QByteArray::fromHex("7f67f072fa040c160e40d159e272fb240d");
    // V2 under rceil: e = 0x80, codes 60192a4c00911a2b4d5e00002b3c5d10 (§1.6).
    QTest::newRow("V2 scale-rule rceil layout pairs")
        << floats(kV2) << QStringList{"--scale-rule", "rceil", "--layout", "pairs"}
        << QByteArray::fromHex("0691a2c40019a1b2d4e50000b2c3d50180");
  }
  void writesBlocks() {
    QFETCH(QByteArray, input);
    QFETCH(QStringList, options);
    QFETCH(QByteArray, expected);
    const QString in = write_input("in.f32", input), out = dir_.filePath("out.bin");
    QFile::remove(out);
    const Run r = run_cli(QStringList{"quantize", "--in", in, "--out", out} + options);
    qInfo("%s", r.out.constData());
    QVERIFY2(r.exit_code == 0, r.err.constData());
    QFile f(out);
    QVERIFY(f.open(QIODevice::ReadOnly));
    const QByteArray got = f.readAll();
    qInfo("bytes %s", got.toHex(' ').constData());
    QCOMPARE(got.toHex(' '), expected.toHex(' '));
    QVERIFY(!QFile::exists(out + ".tmp"));
  }

  // Headers: dqv2_log8 writes float64 lo, hi; nvfp4 writes float32 g.
  void writesHeaders() {
    const QString in = write_input("v1.f32", floats(kV1)), out = dir_.filePath("h.bin");
    Run r = run_cli({"quantize", "--in", in, "--out", out, "--scale-rule", "dqv2_log8"});
    QVERIFY2(r.exit_code == 0, r.err.constData());
    QFile f(out);
    QVERIFY(f.open(QIODevice::ReadOnly));
    QByteArray got = f.readAll();
    f.close();
    QCOMPARE(got.size(), 16 + 17);
    double lo = 0, hi = 0;
    std::memcpy(&lo, got.constData(), 8);
    std::memcpy(&hi, got.constData() + 8, 8);
    QCOMPARE(lo, hi);  // one block: hi == lo, scale = amax/6
    QVERIFY(std::fabs(std::exp2(lo) - 5.4321 / 6) < 1e-6);
    QCOMPARE(int(uint8_t(got[16])), 0);

    r = run_cli({"quantize", "--in", in, "--out", out, "--format", "nvfp4"});
    QVERIFY2(r.exit_code == 0, r.err.constData());
    QVERIFY(f.open(QIODevice::ReadOnly));
    got = f.readAll();
    QCOMPARE(got.size(), 4 + 2 * 9);
    float g = 0;
    std::memcpy(&g, got.constData(), 4);
    QCOMPARE(g, 5.4321f / 2688.0f);
  }

  void errorsExitNonZero_data() {
    QTest::addColumn<QByteArray>("input");  // empty: no input file at all
    QTest::addColumn<QStringList>("options");
    QTest::addColumn<QString>("message");
    QTest::newRow("missing input file") << QByteArray() << QStringList{} << "cannot read";
    QTest::newRow("size not a multiple of 4")
        << QByteArray(33 * 4 + 2, '\0') << QStringList{} << "not a multiple of 4";
    QTest::newRow("33 values not a multiple of 32")
        << QByteArray(33 * 4, '\0') << QStringList{} << "multiple of the mxfp4 block size 32";
    QTest::newRow("24 values not a multiple of 16 for nvfp4")
        << QByteArray(24 * 4, '\0') << QStringList{"--format", "nvfp4"}
        << "multiple of the nvfp4 block size 16";
    QTest::newRow("nvfp4 with a scale rule")
        << floats(kV1) << QStringList{"--format", "nvfp4", "--scale-rule", "rceil"}
        << "--scale-rule: applies to mxfp4 only";
    QTest::newRow("unknown format")
        << floats(kV1) << QStringList{"--format", "int4"} << "unknown format";
    QTest::newRow("unknown layout")
        << floats(kV1) << QStringList{"--layout", "tiled"} << "unknown layout";
    QTest::newRow("unknown rounding")
        << floats(kV1) << QStringList{"--rounding", "up"} << "unknown rounding";
    std::vector<float> nan_block = kV1;
    nan_block[3] = std::numeric_limits<float>::quiet_NaN();
    QTest::newRow("dqv2_log8 with NaN")
        << floats(nan_block) << QStringList{"--scale-rule", "dqv2_log8"} << "holds Inf or NaN";
  }
  void errorsExitNonZero() {
    QFETCH(QByteArray, input);
    QFETCH(QStringList, options);
    QFETCH(QString, message);
    const QString in =
        input.isEmpty() ? dir_.filePath("does-not-exist.f32") : write_input("bad.f32", input);
    const QString out = dir_.filePath("never.bin");
    const Run r = run_cli(QStringList{"quantize", "--in", in, "--out", out} + options);
    qInfo("exit %d: %s", r.exit_code, r.err.trimmed().constData());
    QCOMPARE(r.exit_code, 1);
    QVERIFY2(r.err.contains(message.toUtf8()), r.err.constData());
    QVERIFY(!QFile::exists(out));
  }

  void helpDocumentsLayouts() {
    const Run r = run_cli({"quantize", "--help"});
    QCOMPARE(r.exit_code, 0);
    QVERIFY(r.out.contains("n/32 blocks of 17 bytes"));
    QVERIFY(r.out.contains("dqv2_log8: not E8M0"));
  }
};

QTEST_GUILESS_MAIN(TestCliQuantize)
#include "test_cli_quantize.moc"
