// Fixed rotations and the channel transform (algorithm.md §5.3-§5.5, §10 item 6): Sylvester and
// Paley Hadamards, block Hadamard, seeded random orthogonal blocks, QuaRot full Hadamards of
// sizes m·2^p, and ChannelTransform: apply_rows against x·dense(C), inverse, weight/activation
// invariance x'W'ᵀ = xWᵀ, determinism, bad input.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"  // GCC 12 + Eigen AVX-512 false positive

#include <QtTest>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>

#include "core/rotation/block_kernels.h"
#include "core/rotation/block_rotation.h"
#include "core/rotation/channel_transform.h"
#include "core/rotation/hadamard.h"
#include "core/util/error.h"

using namespace mxlens;

namespace {

// §10.6: every R orthogonal to this in float32 (max |RRᵀ − I|) ...
constexpr double kOrthoFloat = 1e-5;
// ... and to this in double.
constexpr double kOrthoDouble = 1e-10;
// apply_rows (float32, FWHT / GEMM) against x·dense(C) (double), relative to max |x|.
constexpr double kApplyVsDense = 1e-5;
// x'W'ᵀ against xWᵀ, relative Frobenius norm.
constexpr double kInvariance = 1e-4;

RowMatrixXf random_rows(int rows, int cols, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> n(0.0f, 1.0f);
  RowMatrixXf x(rows, cols);
  for (Eigen::Index i = 0; i < x.size(); ++i) x.data()[i] = n(rng);
  return x;
}

double ortho_error(const Eigen::MatrixXd& R) {
  return (R * R.transpose() - Eigen::MatrixXd::Identity(R.rows(), R.rows())).cwiseAbs().maxCoeff();
}

double ortho_error_float(const Eigen::MatrixXf& R) {
  return double(
      (R * R.transpose() - Eigen::MatrixXf::Identity(R.rows(), R.rows())).cwiseAbs().maxCoeff());
}

// The transforms checked against their dense matrices, by name.
ChannelTransform make_transform(const QString& kind, int channels) {
  ChannelTransform t;
  if (kind == "hadamard32") {
    t.add_block_rotation(block_hadamard(32));
  } else if (kind == "hadamard32-signs") {
    t.add_block_rotation(block_hadamard(32, 7));
  } else if (kind == "random32") {
    t.add_block_rotation(random_orthogonal(32, 11));
  } else if (kind == "random128") {
    t.add_block_rotation(random_orthogonal(128, 12));
  } else if (kind == "permutation") {
    std::vector<int32_t> perm(size_t(channels), 0);
    for (int j = 0; j < channels; ++j) perm[size_t(j)] = (j * 37 + 5) % channels;
    t.add_permutation(perm);
  } else if (kind == "full") {
    t.add_full_hadamard(channels, 0);
  } else if (kind == "full-signs") {
    t.add_full_hadamard(channels, 99);
  } else if (kind == "rot-perm-rot") {
    t.add_block_rotation(random_orthogonal(128, 1));
    std::vector<int32_t> perm(size_t(channels), 0);
    for (int j = 0; j < channels; ++j) perm[size_t(j)] = channels - 1 - j;
    t.add_permutation(perm);
    t.add_block_rotation(random_orthogonal(128, 2));
  } else if (kind == "hadamard32+full") {
    t.add_block_rotation(block_hadamard(32));
    t.add_full_hadamard(channels, 3);
  }
  return t;
}

}  // namespace

class TestRotation : public QObject {
  Q_OBJECT
 private slots:
  void knownHadamardsAreHadamard_data() {
    QTest::addColumn<int>("order");
    for (int m : {1, 2, 4, 12, 20, 28}) QTest::newRow(qPrintable(QString("m=%1").arg(m))) << m;
  }
  void knownHadamardsAreHadamard() {
    QFETCH(int, order);
    const Eigen::MatrixXd H = known_hadamard(order);
    QCOMPARE(H.rows(), Eigen::Index(order));
    QVERIFY(((H.array() == 1.0) || (H.array() == -1.0)).all());
    // ±1 entries: H Hᵀ = m I holds exactly in double.
    const Eigen::MatrixXd gram = H * H.transpose();
    QVERIFY(gram == order * Eigen::MatrixXd::Identity(order, order));
    if (order >= 12) {
      // Negative check: one flipped entry breaks it.
      Eigen::MatrixXd broken = H;
      broken(3, 5) = -broken(3, 5);
      QVERIFY(broken * broken.transpose() != order * Eigen::MatrixXd::Identity(order, order));
    }
  }

  void sylvesterIsSymmetricHadamard() {
    for (int n : {1, 2, 32, 256}) {
      const Eigen::MatrixXd H = sylvester_hadamard(n);
      QVERIFY(H == H.transpose());
      QVERIFY(H * H.transpose() == n * Eigen::MatrixXd::Identity(n, n));
    }
    QVERIFY_THROWS_EXCEPTION(Error, sylvester_hadamard(24));
  }

  void blockHadamard_data() {
    QTest::addColumn<int>("block");
    QTest::addColumn<quint64>("signSeed");
    for (int b : {16, 32, 64, 128})
      for (quint64 s : {quint64(0), quint64(5)})
        QTest::newRow(qPrintable(QString("b=%1 signs=%2").arg(b).arg(s))) << b << s;
  }
  void blockHadamard() {
    QFETCH(int, block);
    QFETCH(quint64, signSeed);
    const Eigen::MatrixXf R = block_hadamard(block, signSeed);
    const double err = ortho_error_float(R);
    std::printf("  block Hadamard b=%d signs=%llu: max|RRᵀ−I| = %.3g\n", block,
                static_cast<unsigned long long>(signSeed), err);
    QVERIFY(err < kOrthoFloat);
    QVERIFY((R.cwiseAbs().array() - float(1.0 / std::sqrt(double(block)))).abs().maxCoeff() <
            1e-7f);
    if (signSeed == 0) QVERIFY(R == R.transpose());  // H_b/√b is its own inverse (§5.1)
  }

  void randomOrthogonal_data() {
    QTest::addColumn<int>("size");
    QTest::addColumn<quint64>("seed");
    QTest::newRow("n=31 seed=1") << 31 << quint64(1);
    QTest::newRow("n=32 seed=2") << 32 << quint64(2);
    QTest::newRow("n=128 seed=3") << 128 << quint64(3);
  }
  void randomOrthogonal() {
    QFETCH(int, size);
    QFETCH(quint64, seed);
    const Eigen::MatrixXd Q = random_orthogonal_d(size, seed);
    const double err_d = ortho_error(Q);
    const double err_f = ortho_error_float(random_orthogonal(size, seed));
    std::printf("  random orthogonal n=%d: double %.3g, float %.3g\n", size, err_d, err_f);
    QVERIFY(err_d < kOrthoDouble);
    QVERIFY(err_f < kOrthoFloat);
    // Sign normalization: Qᵀ·G is the R factor of the seeded Gaussian G, upper triangular
    // with a positive diagonal.
    SeededRandom rng(seed);
    Eigen::MatrixXd G(size, size);
    for (int i = 0; i < size; ++i)
      for (int j = 0; j < size; ++j) G(i, j) = rng.gaussian();
    const Eigen::MatrixXd R = Q.transpose() * G;
    double below = 0;
    for (int i = 0; i < size; ++i)
      for (int j = 0; j < i; ++j) below = std::max(below, std::fabs(R(i, j)));
    QVERIFY2(below < 1e-10 * R.cwiseAbs().maxCoeff(), qPrintable(QString::number(below)));
    QVERIFY((R.diagonal().array() > 0).all());
    // Determinism: identical bytes for the same seed, a different matrix for another seed.
    const Eigen::MatrixXf a = random_orthogonal(size, seed), b = random_orthogonal(size, seed);
    QVERIFY(std::memcmp(a.data(), b.data(), sizeof(float) * size_t(a.size())) == 0);
    QVERIFY((random_orthogonal(size, seed + 1) - a).cwiseAbs().maxCoeff() > 0.01f);
  }

  // The AVX-512 levels of the float FWHT do the same additions as the plain butterfly loop.
  void fwhtFastPathMatchesScalar() {
    for (int n : {1, 2, 4, 8, 16, 32, 64, 512, 4096}) {
      const RowMatrixXf x = random_rows(1, n, uint32_t(n));
      std::vector<float> fast(x.data(), x.data() + n), plain = fast;
      fwht(fast.data(), n);
      for (int h = 1; h < n; h <<= 1)
        for (int i = 0; i < n; i += 2 * h)
          for (int j = i; j < i + h; ++j) {
            const float a = plain[size_t(j)], b = plain[size_t(j + h)];
            plain[size_t(j)] = a + b;
            plain[size_t(j + h)] = a - b;
          }
      QVERIFY2(fast == plain, qPrintable(QString("n=%1").arg(n)));
    }
  }

  // The in-place 32×32 kernel against Eigen's product (4099 rows: a partial group of four).
  void blockKernelMatchesGemm() {
    const RowMatrixXf z = random_rows(4099, 32, 8);
    const RowMatrixXf R = random_orthogonal(32, 4);
    RowMatrixXf fast = z;
    if (!rotate_rows_fast(fast.data(), fast.rows(), 32, R.data())) {
      std::printf("  no fast 32×32 kernel in this build: apply_rows uses the GEMM path\n");
      QVERIFY(fast == z);
      return;
    }
    const RowMatrixXf gemm = z * R;
    const double diff = double((fast - gemm).cwiseAbs().maxCoeff() / gemm.cwiseAbs().maxCoeff());
    std::printf("  32×32 kernel vs GEMM: max rel diff %.3g\n", diff);
    QVERIFY(diff < 1e-6);
    QVERIFY(!rotate_rows_fast(fast.data(), 1, 16, R.data()));  // other sizes: GEMM
  }

  void derivedSeedsDiffer() {
    const uint64_t base = derive_seed(1, 0, 0);
    QCOMPARE(derive_seed(1, 0, 0), base);
    QVERIFY(derive_seed(1, 1, 0) != base);
    QVERIFY(derive_seed(1, 0, 1) != base);
    QVERIFY(derive_seed(1, 0, 0, 1) != base);
    QVERIFY(derive_seed(2, 0, 0) != base);
  }

  // QuaRot full Hadamards: the FWHT + H_m mixing path equals (H_m ⊗ H_{2^p})·diag(s)/√n built
  // directly, and the result is orthogonal.
  void fullHadamardMatchesKronecker_data() {
    QTest::addColumn<int>("size");
    for (int n : {64, 96, 160, 224, 3072}) QTest::newRow(qPrintable(QString("n=%1").arg(n))) << n;
  }
  void fullHadamardMatchesKronecker() {
    QFETCH(int, size);
    ChannelTransform t;
    t.add_full_hadamard(size, 42);
    const std::vector<float> signs = random_signs(size, 42);
    Eigen::MatrixXd expected = full_hadamard_matrix(size) / std::sqrt(double(size));
    for (int j = 0; j < size; ++j) expected.col(j) *= double(signs[size_t(j)]);
    const Eigen::MatrixXd T = t.dense(size);
    const double diff = (T - expected).cwiseAbs().maxCoeff();
    // The float path: T in float32 from apply_rows on the identity.
    RowMatrixXf Tf = RowMatrixXf::Identity(size, size);
    t.apply_rows(Tf);
    const double diff_f = (Tf.cast<double>() - expected).cwiseAbs().maxCoeff();
    const double err_f = ortho_error_float(Tf);
    std::printf(
        "  full Hadamard n=%d: |dense − kron| = %.3g, |float − kron| = %.3g, "
        "float max|TTᵀ−I| = %.3g\n",
        size, diff, diff_f, err_f);
    QVERIFY(diff < 1e-12);
    QVERIFY(diff_f < kApplyVsDense);
    QVERIFY(err_f < kOrthoFloat);
    if (size <= 224) QVERIFY(ortho_error(T) < kOrthoDouble);
  }

  // Sizes too large for a dense check (5120 = 20·256, 14336 = 28·512): rows of T for a spread of
  // basis vectors must be orthonormal (a principal submatrix of TTᵀ), and inverse(apply(x)) = x.
  void fullHadamardLargeSizes_data() {
    QTest::addColumn<int>("size");
    QTest::newRow("n=5120 (20·256)") << 5120;
    QTest::newRow("n=14336 (28·512)") << 14336;
    QTest::newRow("n=8192 (2^13)") << 8192;
  }
  void fullHadamardLargeSizes() {
    QFETCH(int, size);
    ChannelTransform t;
    t.add_full_hadamard(size, 17);
    constexpr int kProbes = 192;
    RowMatrixXf rows = RowMatrixXf::Zero(kProbes, size);
    for (int i = 0; i < kProbes; ++i) rows(i, (int64_t(i) * 7919) % size) = 1.0f;
    t.apply_rows(rows);
    const double err = ortho_error_float(rows);
    // Every entry of a normalized Hadamard (with signs) has magnitude 1/√n.
    const double mag =
        (rows.cwiseAbs().array() - float(1.0 / std::sqrt(double(size)))).abs().maxCoeff();
    RowMatrixXf x = random_rows(8, size, 3), y = x;
    t.apply_rows(y);
    const double norm_change = std::fabs(double(y.norm()) / double(x.norm()) - 1.0);
    t.apply_rows_inverse(y);
    const double round_trip = double((y - x).cwiseAbs().maxCoeff());
    std::printf(
        "  full Hadamard n=%d: %d-row Gram max|·−I| = %.3g, | |T_ij| − 1/√n | = %.3g, "
        "norm change %.3g, round trip %.3g\n",
        size, kProbes, err, mag, norm_change, round_trip);
    QVERIFY(err < kOrthoFloat);
    QVERIFY(mag < 1e-6);
    QVERIFY(norm_change < 1e-5);
    QVERIFY(round_trip < 1e-4);
  }

  void unsupportedFullHadamard_data() {
    QTest::addColumn<int>("size");
    for (int n : {100, 36, 44, 0, -32, 3000})
      QTest::newRow(qPrintable(QString("n=%1").arg(n))) << n;
  }
  void unsupportedFullHadamard() {
    QFETCH(int, size);
    QVERIFY(!full_hadamard_supported(size));
    ChannelTransform t;
    try {
      t.add_full_hadamard(size, 0);
      QFAIL("no Error");
    } catch (const Error& e) {
      const QString what = QString::fromUtf8(e.what());
      QVERIFY2(what.contains(QString("full Hadamard of size %1 unsupported").arg(size)),
               qPrintable(what));
    }
    QVERIFY(t.empty());
  }

  void applyRowsMatchesDense_data() {
    QTest::addColumn<QString>("kind");
    QTest::addColumn<int>("channels");
    QTest::newRow("hadamard32 C=256") << "hadamard32" << 256;
    QTest::newRow("hadamard32 with signs C=96") << "hadamard32-signs" << 96;
    QTest::newRow("random32 C=256") << "random32" << 256;
    QTest::newRow("random128 C=384") << "random128" << 384;
    QTest::newRow("permutation C=160") << "permutation" << 160;
    QTest::newRow("full Hadamard C=256") << "full" << 256;
    QTest::newRow("full Hadamard with signs C=96") << "full-signs" << 96;
    QTest::newRow("full Hadamard with signs C=448 (28·16)") << "full-signs" << 448;
    QTest::newRow("R1·P·R2 C=256") << "rot-perm-rot" << 256;
    QTest::newRow("hadamard32 then full C=320") << "hadamard32+full" << 320;
  }
  void applyRowsMatchesDense() {
    QFETCH(QString, kind);
    QFETCH(int, channels);
    const ChannelTransform t = make_transform(kind, channels);
    QVERIFY(t.accepts(channels));
    const Eigen::MatrixXd T = t.dense(channels);
    const double ortho = ortho_error(T);
    // 5000 rows: several GEMM tiles of the [rows·C/b, b] view, with a partial last tile.
    const RowMatrixXf x = random_rows(5000, channels, 1);
    RowMatrixXf y = x;
    t.apply_rows(y);
    const Eigen::MatrixXd expected = x.cast<double>() * T;
    const double scale = double(x.cwiseAbs().maxCoeff());
    const double diff = (y.cast<double>() - expected).cwiseAbs().maxCoeff() / scale;
    // A strided view (columns of a wider matrix) gives the same rows.
    RowMatrixXf wide = RowMatrixXf::Constant(64, channels + 8, 5.0f);
    wide.middleCols(3, channels) = x.topRows(64);
    t.apply_rows(wide.middleCols(3, channels));
    const double strided =
        double((wide.middleCols(3, channels) - y.topRows(64)).cwiseAbs().maxCoeff());
    QVERIFY((wide.leftCols(3).array() == 5.0f).all() && (wide.rightCols(5).array() == 5.0f).all());
    // Undo.
    RowMatrixXf back = y;
    t.apply_rows_inverse(back);
    const double round_trip = double((back - x).cwiseAbs().maxCoeff()) / scale;
    std::printf(
        "  %s: max|TTᵀ−I| = %.3g, |apply − x·T|/max|x| = %.3g, strided %.3g, "
        "round trip %.3g\n",
        qPrintable(kind), ortho, diff, strided, round_trip);
    QVERIFY(ortho < kOrthoFloat);
    QVERIFY(diff < kApplyVsDense);
    QVERIFY(strided < 1e-6 * scale);
    QVERIFY(round_trip < kApplyVsDense);
    // Negative check: comparing against the transposed matrix fails for non-symmetric T.
    if (kind == "random32") {
      const Eigen::MatrixXd wrong = x.cast<double>() * T.transpose();
      QVERIFY((y.cast<double>() - wrong).cwiseAbs().maxCoeff() / scale > 100 * kApplyVsDense);
    }
  }

  // x' W'ᵀ = x Wᵀ when both sides get the same T (algorithm.md §4.5, §5.1).
  void weightActivationInvariance_data() { applyRowsMatchesDense_data(); }
  void weightActivationInvariance() {
    QFETCH(QString, kind);
    QFETCH(int, channels);
    const ChannelTransform t = make_transform(kind, channels);
    const RowMatrixXf x = random_rows(200, channels, 2), W = random_rows(48, channels, 3);
    RowMatrixXf xr = x, Wr = W;
    t.apply_rows(xr);
    t.apply_rows(Wr);
    const Eigen::MatrixXf y = x * W.transpose(), yr = xr * Wr.transpose();
    const double rel = double((yr - y).norm() / y.norm());
    // Negative check: the transform on one side only changes the output.
    const double one_side = double((xr * W.transpose() - y).norm() / y.norm());
    std::printf("  %s: ‖x'W'ᵀ − xWᵀ‖/‖xWᵀ‖ = %.3g (one side only: %.3g)\n", qPrintable(kind), rel,
                one_side);
    QVERIFY(rel < kInvariance);
    QVERIFY(one_side > 100 * kInvariance);
  }

  // Threaded apply_rows (large input) gives the same bytes as one thread.
  void threadCountDoesNotChangeResult() {
    const ChannelTransform t = make_transform("rot-perm-rot", 256);
    ChannelTransform full = make_transform("hadamard32+full", 320);
    RowMatrixXf a = random_rows(1024, 256, 5), b = a;
    t.apply_rows(a, 1);
    t.apply_rows(b, 2);
    QVERIFY(a == b);
    RowMatrixXf c = random_rows(1024, 320, 6), d = c;
    full.apply_rows(c, 1);
    full.apply_rows(d, 2);
    QVERIFY(c == d);
  }

  void channelRequirements() {
    ChannelTransform none;
    QVERIFY(none.empty());
    QVERIFY(none.accepts(7));
    QCOMPARE(none.channels_required(), 0);
    ChannelTransform blocks;
    blocks.add_block_rotation(block_hadamard(32));
    QCOMPARE(blocks.channels_required(), 0);
    QCOMPARE(blocks.channel_multiple(), 32);
    QVERIFY(blocks.accepts(4096) && !blocks.accepts(100));
    blocks.add_full_hadamard(96, 0);
    QCOMPARE(blocks.channels_required(), 96);
    QVERIFY(blocks.accepts(96) && !blocks.accepts(128));
    RowMatrixXf x = RowMatrixXf::Ones(2, 128);
    QVERIFY_THROWS_EXCEPTION(Error, blocks.apply_rows(x));
    QVERIFY((x.array() == 1.0f).all());  // untouched
    QVERIFY_THROWS_EXCEPTION(Error, blocks.dense(64));
  }

  void badSteps() {
    ChannelTransform t;
    Eigen::MatrixXf not_orthogonal = Eigen::MatrixXf::Identity(32, 32);
    not_orthogonal(0, 1) = 0.01f;
    QVERIFY_THROWS_EXCEPTION(Error, t.add_block_rotation(not_orthogonal));
    QVERIFY_THROWS_EXCEPTION(Error, t.add_block_rotation(Eigen::MatrixXf::Identity(4, 8)));
    QVERIFY_THROWS_EXCEPTION(Error, t.add_block_rotation(Eigen::MatrixXf()));
    QVERIFY_THROWS_EXCEPTION(Error, t.add_permutation({0, 1, 1, 3}));
    QVERIFY_THROWS_EXCEPTION(Error, t.add_permutation({0, 4, 1, 2}));
    QVERIFY_THROWS_EXCEPTION(Error, t.add_permutation({}));
    QVERIFY(t.empty());
    // A float32 orthogonal R just inside the tolerance is accepted.
    t.add_block_rotation(random_orthogonal(32, 1));
    QVERIFY(!t.empty());
  }

  void appendComposes() {
    ChannelTransform a, b;
    a.add_block_rotation(random_orthogonal(32, 1));
    b.add_full_hadamard(64, 5);
    ChannelTransform ab = a;
    ab.append(b);
    QCOMPARE(ab.steps().size(), size_t(2));
    const double diff = (ab.dense(64) - a.dense(64) * b.dense(64)).cwiseAbs().maxCoeff();
    QVERIFY(diff < 1e-12);
  }
};

QTEST_GUILESS_MAIN(TestRotation)
#include "test_rotation.moc"
