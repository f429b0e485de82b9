// DuQuant++ greedy search and original DuQuant (algorithm.md §4.2-§4.4, §4.7, §10 items 5-8
// and 10): base matrix, step matrix, the search's invariants and replayable trace, zigzag
// permutation, and the synthetic-outlier experiment (MXFP4 error and block crest factor).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"  // GCC 12 + Eigen AVX-512 false positive

#include <QtTest>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <set>

#include "core/rotation/block_rotation.h"
#include "core/rotation/duquant.h"
#include "core/rotation/greedy_search.h"
#include "core/rotation/rotation_metrics.h"
#include "core/util/error.h"

using namespace mxlens;

Q_DECLARE_METATYPE(mxlens::GreedySelection)
Q_DECLARE_METATYPE(mxlens::GreedyObjective)

namespace {

// §10.5 (double).
constexpr double kBaseOrtho = 1e-12;
// §10.6 (float32 R).
constexpr double kOrthoFloat = 1e-5;
// §10.7: the objective recomputed on Z·R against peaks[k*] (Z evolved step by step in float32).
constexpr double kObjectiveRel = 1e-4;

// §10 item 10: tokens × channels, log-normal channel scales, three outlier channels ×25..60,
// one outlier token ×8.
RowMatrixXf synthetic_outliers(int tokens, int channels, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> scale(static_cast<size_t>(channels));
  for (float& s : scale) s = std::exp(0.5f * normal(rng));
  const int outliers[3] = {37, 420, 901};
  const float factors[3] = {25.0f, 40.0f, 60.0f};
  for (int i = 0; i < 3; ++i) scale[size_t(outliers[i] % channels)] *= factors[i];
  RowMatrixXf x(tokens, channels);
  for (int t = 0; t < tokens; ++t)
    for (int c = 0; c < channels; ++c) x(t, c) = normal(rng) * scale[size_t(c)];
  x.row(tokens / 3) *= 8.0f;
  return x;
}

RowMatrixXf to_blocks(const RowMatrixXf& x, int n) {
  RowMatrixXf z(x.rows() * x.cols() / n, n);
  std::memcpy(z.data(), x.data(), sizeof(float) * size_t(x.size()));
  return z;
}

double ortho_error(const Eigen::MatrixXd& R) {
  return (R * R.transpose() - Eigen::MatrixXd::Identity(R.rows(), R.rows())).cwiseAbs().maxCoeff();
}

double ortho_error_float(const Eigen::MatrixXf& R) {
  return double(
      (R * R.transpose() - Eigen::MatrixXf::Identity(R.rows(), R.rows())).cwiseAbs().maxCoeff());
}

bool same_bytes(const Eigen::MatrixXf& a, const Eigen::MatrixXf& b) {
  return a.rows() == b.rows() && a.cols() == b.cols() &&
         std::memcmp(a.data(), b.data(), sizeof(float) * size_t(a.size())) == 0;
}

}  // namespace

class TestGreedy : public QObject {
  Q_OBJECT
 private slots:
  void baseMatrix_data() {
    QTest::addColumn<int>("n");
    for (int n : {2, 32, 128}) QTest::newRow(qPrintable(QString("n=%1").arg(n))) << n;
  }
  void baseMatrix() {
    QFETCH(int, n);
    const Eigen::MatrixXd M0 = duquant_base_matrix(n);
    const double ortho = ortho_error(M0);
    const double row0 = (M0.row(0).array() - 1.0 / std::sqrt(double(n))).abs().maxCoeff();
    std::printf("  M0 n=%d: max|M0M0ᵀ−I| = %.3g, max|row0 − 1/√n| = %.3g\n", n, ortho, row0);
    QVERIFY(ortho < kBaseOrtho);
    QVERIFY(row0 < 1e-12);
    // Column 0 = (1/√n, 0, …, 0, −√((n−1)/n), 0) for n ≥ 3.
    if (n >= 3) {
      Eigen::VectorXd col0 = Eigen::VectorXd::Zero(n);
      col0(0) = 1.0 / std::sqrt(double(n));
      col0(n - 2) = -std::sqrt(double(n - 1) / double(n));
      QVERIFY((M0.col(0) - col0).cwiseAbs().maxCoeff() < 1e-12);
    }
    // Negative check: the matrix before the final row/column swap does not have row 0 constant.
    Eigen::MatrixXd unswapped = M0;
    unswapped.row(0).swap(unswapped.row(n - 1));
    unswapped.col(0).swap(unswapped.col(n - 1));
    if (n > 2)
      QVERIFY((unswapped.row(0).array() - 1.0 / std::sqrt(double(n))).abs().maxCoeff() > 0.01);
    QVERIFY_THROWS_EXCEPTION(Error, duquant_base_matrix(1));
  }

  void stepMatrix() {
    constexpr int n = 32;
    const Eigen::MatrixXd Qp = random_orthogonal_d(n - 1, derive_seed(5, 3, 1));
    const Eigen::MatrixXd M = greedy_step_matrix(duquant_base_matrix(n), Qp);
    QVERIFY(ortho_error(M) < 1e-12);
    QVERIFY(std::fabs(M(0, 0) - 1.0 / std::sqrt(double(n))) < 1e-12);
    QVERIFY(std::fabs(M.row(0).norm() - 1.0) < 1e-12);
    // S_d = E_d M E_d: orthogonal, and S_d(d, d) = M(0, 0) (channel d keeps weight 1/√n).
    for (int d : {0, 1, 17, 31}) {
      const Eigen::MatrixXd S = swapped_step_matrix(M, d);
      QVERIFY(ortho_error(S) < 1e-12);
      QCOMPARE(S(d, d), M(0, 0));
      Eigen::MatrixXd E = Eigen::MatrixXd::Identity(n, n);
      E.row(0).swap(E.row(d));
      QVERIFY((E * M * E - S).cwiseAbs().maxCoeff() == 0.0);
    }
    QVERIFY_THROWS_EXCEPTION(Error, greedy_step_matrix(duquant_base_matrix(n), Qp.topRows(30)));
  }

  void greedyInvariants_data() {
    QTest::addColumn<GreedySelection>("selection");
    QTest::addColumn<GreedyObjective>("objective");
    QTest::addColumn<int>("steps");
    for (GreedySelection s : {GreedySelection::paper, GreedySelection::code})
      for (GreedyObjective o : {GreedyObjective::range, GreedyObjective::max_abs})
        for (int steps : {0, 1, 128})
          QTest::newRow(qPrintable(QString("sel=%1 obj=%2 S=%3")
                                       .arg(QString::fromUtf8(to_string(s).data()))
                                       .arg(QString::fromUtf8(to_string(o).data()))
                                       .arg(steps)))
              << s << o << steps;
  }
  void greedyInvariants() {
    QFETCH(GreedySelection, selection);
    QFETCH(GreedyObjective, objective);
    QFETCH(int, steps);
    const RowMatrixXf x = synthetic_outliers(96, 1024, 7);
    GreedyOptions opt;
    opt.max_steps = steps;
    opt.selection = selection;
    opt.objective = objective;
    opt.seed = 3;
    const GreedyResult res = greedy_search(x, opt);
    const GreedyTrace& tr = res.trace;
    QCOMPARE(tr.max_steps(), steps);
    QCOMPARE(int(tr.steps.size()), steps + 1);
    const std::vector<double> peaks = tr.objectives();
    const int k = tr.best_step;
    // peaks[k*] = min(peaks) ≤ peaks[0], k* the first argmin.
    const double best = *std::min_element(peaks.begin(), peaks.end());
    QCOMPARE(peaks[size_t(k)], best);
    QVERIFY(peaks[size_t(k)] <= peaks[0]);
    for (int t = 0; t < k; ++t) QVERIFY(peaks[size_t(t)] > best);
    // Recomputing the objective on Z·R gives peaks[k*].
    const RowMatrixXf Z = to_blocks(x, 32);
    const RowMatrixXf ZR = Z * res.rotation.matrix;
    const double recomputed = greedy_objective(ZR, objective);
    const double rel = std::fabs(recomputed - peaks[size_t(k)]) / peaks[size_t(k)];
    // Replay: the trace rebuilds the returned R exactly, and R is orthogonal.
    const Eigen::MatrixXf replay = tr.matrix_at_step(k).cast<float>();
    const double ortho = ortho_error_float(res.rotation.matrix);
    std::printf(
        "  k* = %d of %d, objective %.4f -> %.4f, recomputed rel diff %.3g, "
        "max|RRᵀ−I| = %.3g\n",
        k, steps, peaks[0], peaks[size_t(k)], rel, ortho);
    QVERIFY(rel < kObjectiveRel);
    QVERIFY(same_bytes(replay, res.rotation.matrix));
    QVERIFY(ortho < kOrthoFloat);
    if (k == 0) QVERIFY(res.rotation.matrix == Eigen::MatrixXf::Identity(32, 32));
    // Every recorded step: extremes of Z after t steps and the chosen channel.
    const Eigen::MatrixXd M = tr.step_matrix();
    QVERIFY(std::fabs(M(0, 0) - 1.0 / std::sqrt(32.0)) < 1e-12);
    QVERIFY(ortho_error(tr.q_prime) < 1e-10);
    QCOMPARE(tr.q_seed, derive_seed(opt.seed, opt.layer, opt.site, opt.stage));
    for (int t : {0, std::min(1, steps), steps / 2, steps}) {
      const GreedyStep& s = tr.steps[size_t(t)];
      const RowMatrixXf Zt = Z * tr.matrix_at_step(t).cast<float>();
      const double obj_t = greedy_objective(Zt, objective);
      QVERIFY2(std::fabs(obj_t - s.objective) <= kObjectiveRel * s.objective,
               qPrintable(QString("t=%1: %2 vs %3").arg(t).arg(obj_t).arg(s.objective)));
      if (t == 0) {
        QCOMPARE(Z(s.max_row, s.max_col), s.max_value);
        QCOMPARE(Z(s.min_row, s.min_col), s.min_value);
        QCOMPARE(Z.maxCoeff(), s.max_value);
        QCOMPARE(Z.minCoeff(), s.min_value);
      }
      const bool use_max = std::fabs(s.max_value) > std::fabs(s.min_value);
      const int64_t row = use_max ? s.max_row : s.min_row, col = use_max ? s.max_col : s.min_col;
      QCOMPARE(int64_t(s.channel), selection == GreedySelection::paper ? col : row % 32);
    }
  }

  // A flat calibration matrix (all ones) is already optimal: k* = 0 and R = I.
  void flatDataKeepsIdentity() {
    for (GreedyObjective o : {GreedyObjective::range, GreedyObjective::max_abs}) {
      GreedyOptions opt;
      opt.max_steps = 16;
      opt.objective = o;
      const GreedyResult res = greedy_search_blocks(RowMatrixXf::Ones(300, 32), opt);
      QCOMPARE(res.trace.best_step, 0);
      QVERIFY(res.rotation.matrix == Eigen::MatrixXf::Identity(32, 32));
      QVERIFY(res.trace.objectives()[1] > res.trace.objectives()[0]);
    }
  }

  void determinism() {
    const RowMatrixXf x = synthetic_outliers(64, 512, 9);
    GreedyOptions opt;
    opt.seed = 11;
    opt.layer = 2;
    opt.site = 1;
    opt.threads = 1;
    const GreedyResult a = greedy_search(x, opt);
    opt.threads = 2;
    const GreedyResult b = greedy_search(x, opt);
    QVERIFY(a.trace.best_step > 0);
    QVERIFY(same_bytes(a.rotation.matrix, b.rotation.matrix));
    QVERIFY(a.trace.channels() == b.trace.channels());
    QVERIFY(a.trace.objectives() == b.trace.objectives());
    opt.seed = 12;
    const GreedyResult c = greedy_search(x, opt);
    const double diff = double((c.rotation.matrix - a.rotation.matrix).cwiseAbs().maxCoeff());
    std::printf("  seeds 11 vs 12: max |ΔR| = %.3g\n", diff);
    QVERIFY(diff > 0.01);
    opt.seed = 11;
    opt.layer = 3;
    QVERIFY(!same_bytes(greedy_search(x, opt).rotation.matrix, a.rotation.matrix));
    // Large enough to run threaded (16384 rows, 8 tiles): the same bytes on 1 and 2 threads.
    const RowMatrixXf big = synthetic_outliers(512, 1024, 5);
    GreedyOptions big_opt;
    big_opt.max_steps = 24;
    big_opt.threads = 1;
    const GreedyResult one = greedy_search(big, big_opt);
    big_opt.threads = 2;
    const GreedyResult two = greedy_search(big, big_opt);
    QVERIFY(same_bytes(one.rotation.matrix, two.rotation.matrix));
    QVERIFY(one.trace.objectives() == two.trace.objectives());
    QVERIFY(one.trace.channels() == two.trace.channels());
  }

  void badInput() {
    GreedyOptions opt;
    QVERIFY_THROWS_EXCEPTION(Error, greedy_search(RowMatrixXf::Ones(4, 100), opt));
    QVERIFY_THROWS_EXCEPTION(Error, greedy_search_blocks(RowMatrixXf::Ones(4, 16), opt));
    QVERIFY_THROWS_EXCEPTION(Error, greedy_search_blocks(RowMatrixXf(0, 32), opt));
    RowMatrixXf nan = RowMatrixXf::Ones(4, 32);
    nan(2, 3) = std::nanf("");
    QVERIFY_THROWS_EXCEPTION(Error, greedy_search_blocks(nan, opt));
    opt.max_steps = -1;
    QVERIFY_THROWS_EXCEPTION(Error, greedy_search_blocks(RowMatrixXf::Ones(4, 32), opt));
    QVERIFY_THROWS_EXCEPTION(Error, parse_greedy_selection("rows"));
    QVERIFY_THROWS_EXCEPTION(Error, parse_greedy_objective("l2"));
    QCOMPARE(parse_greedy_selection("code"), GreedySelection::code);
    QCOMPARE(parse_greedy_objective("max_abs"), GreedyObjective::max_abs);
    GreedyTrace empty_trace;
    QVERIFY_THROWS_EXCEPTION(Error, empty_trace.matrix_at_step(1));
  }

  void cancel() {
    std::atomic<bool> flag{true};
    Progress progress({}, &flag);
    QVERIFY_THROWS_EXCEPTION(
        Cancelled, greedy_search(synthetic_outliers(8, 64, 1), GreedyOptions{}, &progress));
  }

  // §10.8.
  void zigzagBuckets() {
    std::vector<int> seq;
    for (int i = 0; i < 12; ++i) seq.push_back(zigzag_bucket(i, 3));
    QCOMPARE(seq, (std::vector<int>{0, 1, 2, 2, 1, 0, 0, 1, 2, 2, 1, 0}));
    for (int channels : {128, 384, 1024}) {
      std::mt19937 rng(static_cast<uint32_t>(channels));
      std::uniform_real_distribution<float> u(0.0f, 10.0f);
      std::vector<float> m(static_cast<size_t>(channels));
      for (float& v : m) v = u(rng);
      m[5] = m[6];  // a tie: stable sort keeps channel 5 first
      const std::vector<int32_t> P = zigzag_permutation(m, 128);
      QCOMPARE(std::set<int32_t>(P.begin(), P.end()).size(), size_t(channels));
      QCOMPARE(*std::min_element(P.begin(), P.end()), 0);
      QCOMPARE(*std::max_element(P.begin(), P.end()), channels - 1);
      const int K = channels / 128;
      std::vector<float> sorted = m;
      std::sort(sorted.begin(), sorted.end(), std::greater<float>());
      for (int b = 0; b < K; ++b) {
        // Inside a bucket: descending; bucket b holds the channels whose rank maps to b.
        for (int j = 1; j < 128; ++j)
          QVERIFY(m[size_t(P[size_t(b * 128 + j - 1)])] >= m[size_t(P[size_t(b * 128 + j)])]);
        int count = 0;
        for (int i = 0; i < channels; ++i) count += zigzag_bucket(i, K) == b;
        QCOMPARE(count, 128);
        QCOMPARE(m[size_t(P[size_t(b * 128)])], sorted[size_t(b)]);  // rank b leads bucket b
      }
    }
    QVERIFY_THROWS_EXCEPTION(Error, zigzag_permutation(std::vector<float>(100, 1.0f), 128));
  }

  void duquantTransform() {
    const RowMatrixXf x = synthetic_outliers(64, 384, 4);
    DuQuantOptions opt;
    opt.seed = 1;
    const DuQuantResult res = duquant_transform(x, opt);
    QCOMPARE(res.first.block_size(), 128);
    QCOMPARE(res.first_trace.max_steps(), 256);
    const double o1 = ortho_error_float(res.first.matrix),
                 o2 = ortho_error_float(res.second.matrix);
    const double oT = ortho_error(res.transform.dense(384));
    std::printf("  DuQuant: k*1 = %d, k*2 = %d, R1 %.3g, R2 %.3g, T %.3g\n",
                res.first_trace.best_step, res.second_trace.best_step, o1, o2, oT);
    QVERIFY(o1 < kOrthoFloat && o2 < kOrthoFloat && oT < kOrthoFloat);
    QCOMPARE(std::set<int32_t>(res.permutation.begin(), res.permutation.end()).size(), size_t(384));
    QVERIFY(same_bytes(res.first_trace.rotation(), res.first.matrix));
    QVERIFY(same_bytes(res.second_trace.rotation(), res.second.matrix));
    QVERIFY(res.first_trace.q_seed != res.second_trace.q_seed);
    // The permutation is the zigzag of X·blockdiag(R1), and R2 was searched on Y·P.
    RowMatrixXf y = x;
    res.first.transform().apply_rows(y);
    std::vector<float> m(384);
    for (int c = 0; c < 384; ++c) m[size_t(c)] = y.col(c).cwiseAbs().maxCoeff();
    QVERIFY(zigzag_permutation(m, 128) == res.permutation);
    RowMatrixXf yp(y.rows(), y.cols());
    for (int j = 0; j < 384; ++j) yp.col(j) = y.col(res.permutation[size_t(j)]);
    const double obj2 = greedy_objective(to_blocks(yp, 128) * res.second.matrix, opt.objective);
    QVERIFY(std::fabs(obj2 - res.second_trace.objectives()[size_t(res.second_trace.best_step)]) <=
            kObjectiveRel * obj2);
    QVERIFY_THROWS_EXCEPTION(Error, duquant_transform(synthetic_outliers(8, 96, 1), opt));
  }

  // §10 item 10: Hadamard-32 and greedy-32 (both selections) each reduce the relative MXFP4
  // error and the mean per-block crest factor against identity.
  void syntheticOutliers() {
    const RowMatrixXf x = synthetic_outliers(512, 1024, 2026);
    RowMatrixXf calib(64, 1024);
    for (int i = 0; i < 64; ++i) calib.row(i) = x.row(i * 8 + 1);
    const double err_id = mxfp4_relative_error(x), crest_id = mean_block_crest_log2(x);
    std::printf("  %-22s MXFP4 rel. error %.4f  crest log2(amax/rms) %.3f\n", "identity", err_id,
                crest_id);
    struct Row {
      const char* name;
      ChannelTransform t;
      bool asserted;
    };
    std::vector<Row> rows;
    rows.push_back({"block Hadamard 32", BlockRotation{block_hadamard(32)}.transform(), true});
    rows.push_back(
        {"random orthogonal 32", BlockRotation{random_orthogonal(32, 5)}.transform(), false});
    for (GreedySelection s : {GreedySelection::paper, GreedySelection::code}) {
      GreedyOptions opt;
      opt.selection = s;
      opt.seed = 1;
      const GreedyResult g = greedy_search(calib, opt);
      std::printf("  greedy (%s): k* = %d, objective %.2f -> %.2f\n", to_string(s).data(),
                  g.trace.best_step, g.trace.steps[0].objective,
                  g.trace.steps[size_t(g.trace.best_step)].objective);
      rows.push_back({s == GreedySelection::paper ? "greedy 32 (paper)" : "greedy 32 (code)",
                      g.rotation.transform(), true});
    }
    for (const Row& r : rows) {
      RowMatrixXf y = x;
      r.t.apply_rows(y);
      const double err = mxfp4_relative_error(y), crest = mean_block_crest_log2(y);
      std::printf("  %-22s MXFP4 rel. error %.4f  crest log2(amax/rms) %.3f\n", r.name, err, crest);
      if (r.asserted) {
        QVERIFY2(err < err_id, r.name);
        QVERIFY2(crest < crest_id, r.name);
      }
    }
    // Negative check: the empty transform gives exactly the identity numbers, so a strict
    // reduction above is a property of the rotation, not of the measurement.
    ChannelTransform none;
    RowMatrixXf same = x;
    none.apply_rows(same);
    QCOMPARE(mxfp4_relative_error(same), err_id);
  }
};

QTEST_GUILESS_MAIN(TestGreedy)
#include "test_greedy.moc"
