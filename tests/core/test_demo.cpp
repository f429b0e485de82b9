// The embedded demo computes the right things: planted outliers raise their blocks'
// exponents and error, a block Hadamard lowers error and crest, results follow the seed.
#include <QtTest>

#include <cmath>
#include <string>
#include <vector>

#include "core/demo/demo.h"
#include "core/mx/mxfp4.h"
#include "core/util/error.h"

using namespace mxlens;

namespace {

constexpr double kOrthonormalTol = 1e-12;
// Outlier channels (x25..x50) must raise their block's mean exponent by over an octave.
constexpr double kMinExponentInflation = 1.0;

double mean_exponent(const DemoReport& r, const DemoVariant& v, int block) {
  double sum = 0;
  for (int t = 0; t < r.config.tokens; ++t) sum += v.exponent[t * r.n_blocks + block];
  return sum / r.config.tokens;
}

}  // namespace

class TestDemo : public QObject {
  Q_OBJECT
 private slots:
  void hadamardIsOrthonormal() {
    const std::vector<double> h = hadamard32();
    double worst = 0;
    for (int i = 0; i < 32; ++i)
      for (int j = 0; j < 32; ++j) {
        double dot = 0;
        for (int k = 0; k < 32; ++k) dot += h[i * 32 + k] * h[j * 32 + k];
        worst = std::max(worst, std::fabs(dot - (i == j ? 1.0 : 0.0)));
      }
    qInfo("max |H H^T - I| = %.3g", worst);
    QVERIFY(worst < kOrthonormalTol);
    for (int j = 0; j < 32; ++j) QCOMPARE(h[j], 1.0 / std::sqrt(32.0));  // row 0 all 1/sqrt(32)
    QCOMPARE(h[1 * 32 + 1], -1.0 / std::sqrt(32.0));
  }

  void plantedOutliers_data() {
    QTest::addColumn<int>("channels");
    QTest::addColumn<int>("outliers");
    QTest::addColumn<float>("scale");
    QTest::addColumn<quint64>("seed");
    QTest::newRow("256x256 K=3 S=32 seed 1") << 256 << 3 << 32.0f << quint64(1);
    QTest::newRow("256x512 K=5 S=50 seed 7") << 512 << 5 << 50.0f << quint64(7);
    QTest::newRow("256x1024 K=3 S=25 seed 2") << 1024 << 3 << 25.0f << quint64(2);
  }
  void plantedOutliers() {
    QFETCH(int, channels);
    QFETCH(int, outliers);
    QFETCH(float, scale);
    QFETCH(quint64, seed);
    DemoConfig c;
    c.channels = channels;
    c.outliers = outliers;
    c.outlier_scale = scale;
    c.seed = seed;
    const DemoReport r = run_demo(c);
    QCOMPARE(int(r.outlier_channels.size()), outliers);
    QVERIFY(!r.outlier_blocks.empty());
    // Exponents of outlier blocks exceed every block without an outlier.
    double max_plain = -1e9;
    for (int b = 0; b < r.n_blocks; ++b)
      if (std::find(r.outlier_blocks.begin(), r.outlier_blocks.end(), b) == r.outlier_blocks.end())
        max_plain = std::max(max_plain, mean_exponent(r, r.identity, b));
    double max_plain_ordinary = 0, max_outlier = -1e9;
    for (int b = 0; b < r.n_blocks; ++b)
      if (std::find(r.outlier_blocks.begin(), r.outlier_blocks.end(), b) == r.outlier_blocks.end())
        max_plain_ordinary = std::max(max_plain_ordinary, r.identity.block_rel_error_ordinary[b]);
    for (int b : r.outlier_blocks) {
      const double e = mean_exponent(r, r.identity, b);
      qInfo(
          "outlier block %d: mean exponent %.2f vs max %.2f elsewhere; error of its ordinary "
          "channels %.4f vs at most %.4f elsewhere (hadamard %.4f)",
          b, e, max_plain, r.identity.block_rel_error_ordinary[b], max_plain_ordinary,
          r.hadamard.block_rel_error_ordinary[b]);
      QVERIFY(e > max_plain);
      max_outlier = std::max(max_outlier, e);
      // The inflated exponent crushes the outlier's 31 neighbours. (A rotation need not help
      // them: it spreads the outlier's own error over the block; only the total must drop.)
      QVERIFY(r.identity.block_rel_error_ordinary[b] > max_plain_ordinary);
    }
    QVERIFY(max_outlier >= max_plain + kMinExponentInflation);
    // The outlier token has the largest exponent of every block without an outlier channel.
    for (int b = 0; b < r.n_blocks; ++b)
      if (std::find(r.outlier_blocks.begin(), r.outlier_blocks.end(), b) == r.outlier_blocks.end())
        QCOMPARE(r.identity.exponent[r.outlier_token * r.n_blocks + b], r.identity.exponent_max[b]);
    // Block Hadamard lowers the total error, the crest factor, and the error of outlier blocks.
    qInfo(
        "total relative error identity %.4f (%.2f dB) -> hadamard %.4f (%.2f dB); crest %.2f -> "
        "%.2f octaves",
        r.identity.rel_error, r.identity.sqnr_db, r.hadamard.rel_error, r.hadamard.sqnr_db,
        r.identity.mean_crest_octaves, r.hadamard.mean_crest_octaves);
    QVERIFY(r.hadamard.rel_error < r.identity.rel_error);
    QVERIFY(r.hadamard.mean_crest_octaves < r.identity.mean_crest_octaves);
    // Totals agree with the per-block numbers.
    QVERIFY(std::fabs(r.identity.sqnr_db + 20.0 * std::log10(r.identity.rel_error)) < 1e-9);
  }

  // Exponents are those of quantize_mxfp4 on the same data (cross-check one token).
  void exponentsMatchQuantizer() {
    DemoConfig c;
    std::vector<int> planted;
    int token = 0;
    const std::vector<float> x = demo_activations(c, &planted, &token);
    const DemoReport r = run_demo(c);
    QCOMPARE(r.outlier_channels, planted);
    QCOMPARE(r.outlier_token, token);
    TensorScale ts;
    const auto blocks =
        quantize_mxfp4(std::span(x).subspan(size_t(token) * c.channels, c.channels), {}, &ts);
    for (int b = 0; b < r.n_blocks; ++b)
      QCOMPARE(r.identity.exponent[token * r.n_blocks + b], int(blocks[b].e) - 127);
  }

  void deterministicUnderSeed() {
    DemoConfig c;
    c.seed = 42;
    const DemoReport a = run_demo(c), b = run_demo(c);
    QCOMPARE(a.outlier_channels, b.outlier_channels);
    QCOMPARE(a.identity.exponent, b.identity.exponent);
    QCOMPARE(a.hadamard.rel_error, b.hadamard.rel_error);
    QCOMPARE(a.greedy.rotation, b.greedy.rotation);
    QCOMPARE(a.linear.duquant, b.linear.duquant);
    c.seed = 43;
    const DemoReport other = run_demo(c);
    QVERIFY(other.identity.rel_error != a.identity.rel_error);  // negative check: seed matters
  }

  // Without outliers there is nothing for the rotation to fix: errors stay close.
  void noOutliersNoBigGain() {
    DemoConfig c;
    c.outliers = 0;
    c.token_scale = 1.0f;
    c.channel_sigma = 0.0f;
    const DemoReport r = run_demo(c);
    qInfo("plain Gaussian: identity %.4f hadamard %.4f", r.identity.rel_error,
          r.hadamard.rel_error);
    QVERIFY(r.outlier_blocks.empty());
    QVERIFY(std::fabs(r.hadamard.rel_error - r.identity.rel_error) < 0.2 * r.identity.rel_error);
  }

  // DuQuant++ greedy-32 beside the block Hadamard: the search lowers its objective, the
  // rotation is orthogonal, and it lowers the MXFP4 error, the crest factor and the W4A4 output
  // error of the linear against identity.
  void duquantVariant_data() { plantedOutliers_data(); }
  void duquantVariant() {
    QFETCH(int, channels);
    QFETCH(int, outliers);
    QFETCH(float, scale);
    QFETCH(quint64, seed);
    DemoConfig c;
    c.channels = channels;
    c.outliers = outliers;
    c.outlier_scale = scale;
    c.seed = seed;
    const DemoReport r = run_demo(c);
    const DemoGreedy& g = r.greedy;
    qInfo(
        "greedy: k* = %d of %d, objective %.2f -> %.2f; MXFP4 error identity %.4f hadamard %.4f "
        "duquant++ %.4f; crest %.2f / %.2f / %.2f; linear W4A4 %.4f / %.4f / %.4f",
        g.best_step, g.max_steps, g.objective_start, g.objective_best, r.identity.rel_error,
        r.hadamard.rel_error, r.duquant.rel_error, r.identity.mean_crest_octaves,
        r.hadamard.mean_crest_octaves, r.duquant.mean_crest_octaves, r.linear.identity,
        r.linear.hadamard, r.linear.duquant);
    QCOMPARE(g.max_steps, c.greedy_steps);
    QCOMPARE(g.calib_tokens, c.calib_tokens);
    QCOMPARE(int(g.channels.size()), g.best_step);
    QVERIFY(g.best_step > 0);
    QVERIFY(g.objective_best < g.objective_start);
    double worst = 0;
    for (int i = 0; i < 32; ++i)
      for (int j = 0; j < 32; ++j) {
        double dot = 0;
        for (int k = 0; k < 32; ++k) dot += g.rotation[i * 32 + k] * g.rotation[j * 32 + k];
        worst = std::max(worst, std::fabs(dot - (i == j ? 1.0 : 0.0)));
      }
    QVERIFY(worst < 1e-5);
    QCOMPARE(r.duquant.name, std::string("duquant++32"));
    QVERIFY(r.duquant.rel_error < r.identity.rel_error);
    QVERIFY(r.duquant.mean_crest_octaves < r.identity.mean_crest_octaves);
    QVERIFY(r.linear.hadamard < r.linear.identity);
    QVERIFY(r.linear.duquant < r.linear.identity);
    QCOMPARE(r.linear.out_features, c.out_features);
  }

  // With S = 0 the search keeps the identity: the duquant++ variant equals the identity one.
  void zeroGreedyStepsIsIdentity() {
    DemoConfig c;
    c.greedy_steps = 0;
    const DemoReport r = run_demo(c);
    QCOMPARE(r.greedy.best_step, 0);
    QCOMPARE(r.duquant.rel_error, r.identity.rel_error);
    QCOMPARE(r.duquant.exponent, r.identity.exponent);
    QCOMPARE(r.linear.duquant, r.linear.identity);
  }

  void badConfigThrows_data() {
    QTest::addColumn<int>("tokens");
    QTest::addColumn<int>("channels");
    QTest::addColumn<int>("outliers");
    QTest::addColumn<float>("scale");
    QTest::newRow("channels 100 not a multiple of 32") << 16 << 100 << 1 << 2.0f;
    QTest::newRow("zero tokens") << 0 << 64 << 1 << 2.0f;
    QTest::newRow("more outliers than channels") << 16 << 64 << 65 << 2.0f;
    QTest::newRow("negative scale") << 16 << 64 << 1 << -2.0f;
    QTest::newRow("too many values") << (1 << 20) << 1024 << 0 << 2.0f;
  }
  void badConfigThrows() {
    QFETCH(int, tokens);
    QFETCH(int, channels);
    QFETCH(int, outliers);
    QFETCH(float, scale);
    DemoConfig c;
    c.tokens = tokens;
    c.channels = channels;
    c.outliers = outliers;
    c.outlier_scale = scale;
    QVERIFY_THROWS_EXCEPTION(Error, run_demo(c));
  }

  void badGreedyConfigThrows() {
    DemoConfig c;
    c.greedy_steps = -1;
    QVERIFY_THROWS_EXCEPTION(Error, run_demo(c));
    c = DemoConfig{};
    c.calib_tokens = 0;
    QVERIFY_THROWS_EXCEPTION(Error, run_demo(c));
    c = DemoConfig{};
    c.out_features = 0;
    QVERIFY_THROWS_EXCEPTION(Error, run_demo(c));
  }
};

QTEST_GUILESS_MAIN(TestDemo)
#include "test_demo.moc"
