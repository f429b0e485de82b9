// KL(P_ref ‖ P_test) per token, top-1 agreement, quantiles, and the stored-reference modes.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"  // GCC 12 + Eigen AVX-512 false positive

#include <QtTest>

#include <cmath>
#include <cstdio>
#include <random>

#include "core/eval/kl.h"
#include "core/util/error.h"

using namespace mxlens;

namespace {

// Identical distributions: KL is zero up to double rounding.
constexpr double kZeroKl = 1e-12;
// A stored reference against the logits it was made from: the log-sum-exps use fp32 exp
// (summed in double), so each side carries a ~1e-8 offset that does not cancel.
constexpr double kStoredSelfKl = 1e-7;
// Hand-computed examples (the logits are floats, e.g. logf(0.9f), so ~1e-7 relative).
constexpr double kExactTol = 1e-6;
// Full16 reference: log-probs rounded to (max-min)/65535 change the KL a little.
constexpr double kFull16RelTol = 1e-2;
constexpr double kFull16ZeroKl = 1e-6;

std::vector<float> random_logits(int vocab, uint32_t seed, float scale) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> n(0.0f, scale);
  std::vector<float> v(static_cast<size_t>(vocab));
  for (float& x : v) x = n(rng);
  return v;
}

std::vector<float> perturbed(std::vector<float> v, uint32_t seed, float amount) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> n(0.0f, amount);
  for (float& x : v) x += n(rng);
  return v;
}

}  // namespace

class TestKl : public QObject {
  Q_OBJECT
 private slots:
  void identicalLogitsGiveZero_data() {
    QTest::addColumn<int>("vocab");
    QTest::addColumn<float>("scale");
    QTest::newRow("vocab=5 scale=1") << 5 << 1.0f;
    QTest::newRow("vocab=2048 scale=3") << 2048 << 3.0f;
    QTest::newRow("vocab=128256 scale=10 (peaked)") << 128256 << 10.0f;
  }
  void identicalLogitsGiveZero() {
    QFETCH(int, vocab);
    QFETCH(float, scale);
    const auto logits = random_logits(vocab, 1, scale);
    KlStats stats;
    stats.add(logits, logits);
    const KlSummary s = stats.summary();
    std::printf("  KL of identical rows: %.3g\n", s.mean);
    QVERIFY(std::abs(s.mean) <= kZeroKl);
    QCOMPARE(s.top1_agreement, 1.0);
    // The check can fail: a 1e-2 perturbation gives a KL far above the bound.
    KlStats other;
    other.add(logits, perturbed(logits, 2, 1e-2f));
    std::printf("  KL after 1e-2 perturbation: %.3g\n", other.summary().mean);
    QVERIFY(other.summary().mean > 1000 * kZeroKl);
  }

  // p = (1/2, 1/2) vs q = (0.9, 0.1): KL = ½ ln(0.5/0.9) + ½ ln(0.5/0.1) = ½ ln(25/9).
  // p = softmax(2, 0) vs q = softmax(0, 2): KL = 2·(p₀ − p₁) = 2·tanh(1); argmaxes differ.
  void twoTokenExampleByHand() {
    KlStats stats;
    const std::vector<float> ref1 = {0.0f, 0.0f}, test1 = {std::log(0.9f), std::log(0.1f)};
    const std::vector<float> ref2 = {2.0f, 0.0f}, test2 = {0.0f, 2.0f};
    stats.add(ref1, test1);
    stats.add(ref2, test2);
    const double kl1 = 0.5 * std::log(25.0 / 9.0), kl2 = 2.0 * std::tanh(1.0);
    const KlSummary s = stats.summary();
    std::printf("  mean %.12f (by hand %.12f), max %.9f\n", s.mean, (kl1 + kl2) / 2, s.max);
    QVERIFY(std::abs(s.mean - (kl1 + kl2) / 2) <= kExactTol);
    QVERIFY(std::abs(s.max - kl2) <= 1e-6);  // stored as float
    QCOMPARE(s.top1_agreement, 0.5);
    QCOMPARE(s.tokens, int64_t(2));
    // Standard error of two values a, b: |a − b| / 2.
    QVERIFY(std::abs(s.mean_stderr - std::abs(kl1 - kl2) / 2) <= 1e-6);
    // KL is not symmetric: swapping the roles changes the first token's value.
    KlStats swapped;
    swapped.add(test1, ref1);
    QVERIFY(std::abs(swapped.summary().mean - kl1) > 1e-3);
  }

  void quantiles() {
    KlStats stats;
    for (int i = 1; i <= 1000; ++i) stats.add_value(i, i % 4 == 0);
    const KlSummary s = stats.summary();
    QCOMPARE(s.median, 500.5);
    QCOMPARE(s.max, 1000.0);
    QVERIFY(std::abs(s.p999 - 999.001) < 1e-9);
    QVERIFY(std::abs(s.p99 - 990.01) < 1e-9);
    QCOMPARE(s.top1_agreement, 0.25);
  }

  void chunksOfRows() {
    RowMatrixXf ref(3, 7), test(3, 7);
    for (int r = 0; r < 3; ++r) {
      const auto a = random_logits(7, 10 + r, 2), b = perturbed(a, 20 + r, 0.3f);
      for (int c = 0; c < 7; ++c) {
        ref(r, c) = a[size_t(c)];
        test(r, c) = b[size_t(c)];
      }
    }
    KlStats rows, one_by_one;
    rows.add_rows(ref, test);
    for (int r = 0; r < 3; ++r)
      one_by_one.add(std::span<const float>(ref.row(r).data(), 7),
                     std::span<const float>(test.row(r).data(), 7));
    QCOMPARE(rows.summary().mean, one_by_one.summary().mean);
    QVERIFY_THROWS_EXCEPTION(Error, rows.add_rows(ref, test.leftCols(6)));
  }

  void storedReference_data() {
    QTest::addColumn<int>("storage");
    QTest::addColumn<int>("topk");
    QTest::newRow("full32") << int(ReferenceLogProbs::Storage::Full32) << 0;
    QTest::newRow("full16") << int(ReferenceLogProbs::Storage::Full16) << 0;
    QTest::newRow("top-k=32") << int(ReferenceLogProbs::Storage::TopK) << 32;
    QTest::newRow("top-k=vocab") << int(ReferenceLogProbs::Storage::TopK) << 2048;
  }
  void storedReference() {
    QFETCH(int, storage);
    QFETCH(int, topk);
    constexpr int kVocab = 2048, kTokens = 20;
    const auto mode = ReferenceLogProbs::Storage(storage);
    ReferenceLogProbs ref(kVocab, mode, topk);
    KlStats direct, stored, self;
    for (int t = 0; t < kTokens; ++t) {
      const auto a = random_logits(kVocab, 100 + t, 4), b = perturbed(a, 200 + t, 0.5f);
      ref.append(a);
      direct.add(a, b);
      stored.add(ref, t, b);
      self.add(ref, t, a);
    }
    QCOMPARE(ref.tokens(), int64_t(kTokens));
    const double d = direct.summary().mean, s = stored.summary().mean;
    std::printf("  %s: direct %.9f stored %.9f self %.3g, %llu bytes\n", QTest::currentDataTag(), d,
                s, self.summary().mean, static_cast<unsigned long long>(ref.size_bytes()));
    QCOMPARE(stored.summary().top1_agreement, direct.summary().top1_agreement);
    switch (mode) {
      case ReferenceLogProbs::Storage::Full32:
        QVERIFY(std::abs(s - d) <= 1e-6 * d);
        QVERIFY(self.summary().mean <= kStoredSelfKl);
        QCOMPARE(ref.size_bytes(), uint64_t(kTokens) * kVocab * 4 + kTokens * 4);  // + argmax
        break;
      case ReferenceLogProbs::Storage::Full16:
        QVERIFY(std::abs(s - d) <= kFull16RelTol * d);
        QVERIFY(self.summary().mean <= kFull16ZeroKl);
        QVERIFY(ref.size_bytes() < uint64_t(kTokens) * kVocab * 3);
        break;
      case ReferenceLogProbs::Storage::TopK:
        if (topk == kVocab) {
          QVERIFY(std::abs(s - d) <= 1e-6 * d);
        } else {
          // Coarse-graining never increases KL: a lower bound, and not a trivial one.
          QVERIFY(s <= d * (1 + 1e-9));
          QVERIFY(s > 0.05 * d);
        }
        QVERIFY(self.summary().mean <= kStoredSelfKl);
        break;
    }
  }

  void errors() {
    ReferenceLogProbs ref(4, ReferenceLogProbs::Storage::Full32);
    const std::vector<float> three = {1, 2, 3}, four = {1, 2, 3, 4};
    QVERIFY_THROWS_EXCEPTION(Error, ref.append(three));
    ref.append(four);
    QVERIFY_THROWS_EXCEPTION(Error, ref.compare(1, four));  // not recorded
    QVERIFY_THROWS_EXCEPTION(Error, ReferenceLogProbs(4, ReferenceLogProbs::Storage::TopK, 0));
    KlStats stats;
    QVERIFY_THROWS_EXCEPTION(Error, stats.add(three, four));
  }
};

QTEST_GUILESS_MAIN(TestKl)
#include "test_kl.moc"
