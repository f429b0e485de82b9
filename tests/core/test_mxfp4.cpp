// MXFP4 numerics: the §1.6 vectors byte for byte, the §10 unit invariants, packing, and the
// fast path against the reference bit for bit for every format in the format table.
#include <QtTest>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "core/mx/e2m1.h"
#include "core/mx/e8m0.h"
#include "core/mx/format_table.h"
#include "core/mx/mxfp4.h"
#include "core/mx/packing.h"
#include "core/util/error.h"
#include "tests/core/mx_test_support.h"

using namespace mxlens;
using mxlens::test::first_bit_mismatch;
using mxlens::test::first_byte_mismatch;
using mxlens::test::hex_bytes;
using mxlens::test::hex_digits;
using mxlens::test::to_hex;

namespace {

// Elements per fast-vs-reference row (rows: format x distribution x rule x rounding); 5 extra
// blocks so the fast path's leftover blocks after its groups of 8 are exercised too.
constexpr size_t kParityElements = (size_t{1} << 19) + 5 * 32;
constexpr size_t kInvariantBlocks = 20000;
// Float rounding of a/6 and of the log8 scale moves a/scale off 6 by a few ulps at most.
constexpr double kDqv2RatioRelTol = 1e-6;
// x/scale is one float division for the non-power-of-two rules: |v| is off by <= 1 ulp.
constexpr double kErrorBoundRelTol = 1e-6;
// fpquant: float(4/3) = 1.33333337 > 4/3, so a/scale can sit 2e-8 below 3.
constexpr double kFourThirdsRelTol = 1e-7;

const std::vector<float> kV1 = {
    0.1234f, -0.5678f, 0.9012f,  -1.3456f, 1.7890f,  -2.2222f, 0.0311f,  -0.0001f,
    0.4444f, -0.6667f, 2.9000f,  -3.1415f, 0.7071f,  -0.2500f, 1.1111f,  -1.9999f,
    0.3333f, -0.8765f, 5.4321f,  -0.0625f, 0.1500f,  -4.0500f, 2.5100f,  -0.3750f,
    0.0000f, 1.4142f,  -1.7321f, 0.6000f,  -0.9000f, 3.6000f,  -2.7000f, 0.0450f};
const std::vector<float> kV2 = {7.5f,   -0.25f, 0.75f,   -1.25f, 1.75f, -2.5f,  3.5f,   -5.0f,
                                0.125f, 0.375f, -0.625f, 0.875f, 1.0f,  -1.5f,  2.0f,   -3.0f,
                                4.0f,   -6.0f,  6.5f,    -7.0f,  0.0f,  -0.0f,  0.5f,   0.0625f,
                                2.25f,  -2.75f, 3.25f,   -4.5f,  5.5f,  -5.75f, 1.125f, -0.1875f};
const std::vector<float> kV3 = {
    0.0123f, -0.0568f, 0.0901f,  -0.1346f, 0.1789f,  -0.2222f, 0.0031f,  -0.0100f,
    0.0444f, -0.0667f, 0.2900f,  -0.3142f, 0.0707f,  -0.0250f, 0.1111f,  -0.2000f,
    0.0333f, -0.0877f, 41.3000f, -0.0063f, 0.0150f,  -0.4050f, 0.2510f,  -0.0375f,
    0.0000f, 0.1414f,  -0.1732f, 0.0600f,  -0.0900f, 0.3600f,  -0.2700f, 0.0045f};

// Bit pattern, for exact float comparisons (QCOMPARE on floats is fuzzy).
uint32_t bits(float v) {
  return std::bit_cast<uint32_t>(v);
}

std::vector<float> parse_floats(const QString& s) {
  std::vector<float> out;
  for (const QString& t : QString(s).replace('|', ' ').split(' ', Qt::SkipEmptyParts))
    out.push_back(t.toFloat());
  return out;
}

// Pairs packing written out here, independent of packing.cpp.
std::vector<uint8_t> pairs_of(const std::vector<uint8_t>& codes) {
  std::vector<uint8_t> out(codes.size() / 2);
  for (size_t j = 0; j < out.size(); ++j) out[j] = codes[2 * j] | codes[2 * j + 1] << 4;
  return out;
}

struct Path {
  const char* name;
  TensorScale (*quantize)(std::span<const float>, std::span<Mxfp4Block>, const QuantOptions&);
  void (*dequantize)(std::span<const Mxfp4Block>, const TensorScale&, std::span<float>);
  void (*fake_quantize)(std::span<float>, const QuantOptions&);
};
std::vector<Path> mxfp4_paths() {
  std::vector<Path> paths = {
      {"ref", quantize_mxfp4_ref, dequantize_mxfp4_ref, fake_quantize_mxfp4_ref}};
  if (mxfp4_avx2_available())
    paths.push_back({"avx2", quantize_mxfp4_avx2, dequantize_mxfp4_avx2, fake_quantize_mxfp4_avx2});
  return paths;
}

// --- random inputs ---------------------------------------------------------------------------
enum class Distribution { normal, log_uniform, adversarial, nonfinite };
const char* name_of(Distribution d) {
  switch (d) {
    case Distribution::normal:
      return "normal";
    case Distribution::log_uniform:
      return "log_uniform";
    case Distribution::adversarial:
      return "adversarial";
    case Distribution::nonfinite:
      return "nonfinite";
  }
  return "?";
}

float pow2f(int k) {
  return std::ldexp(1.0f, std::clamp(k, -149, 127));
}
float below(float x) {
  return std::nextafter(x, 0.0f);
}
float above(float x) {
  return std::nextafter(x, std::numeric_limits<float>::infinity());
}

// One adversarial block of `n` values: powers of two, exact ties at every grid midpoint times
// the scale, subnormals, ±0, values just below powers of two, block maxima at every scale-rule
// boundary, extremes.
void adversarial_block(test::Rng& rng, float* x, int n) {
  static const float kMidpoints[] = {0.25f, 0.75f, 1.25f, 1.75f, 2.5f, 3.5f, 5.0f};
  static const float kGrid[] = {0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f};
  const int kind = rng.integer(0, 7);
  const int k = rng.integer(-124, 120);
  const float s = pow2f(k);
  for (int i = 0; i < n; ++i) {
    float v = 0.0f;
    switch (kind) {
      case 0:  // powers of two around 2^k
        v = rng.sign() * pow2f(k + rng.integer(-8, 3));
        break;
      case 1: {  // exact ties (and their neighbours) at scale 2^k, block max 4 or 6 times 2^k
        const float m = kMidpoints[rng.integer(0, 6)] * s;
        const int variant = rng.integer(0, 3);
        v = variant == 0   ? m
            : variant == 1 ? below(m)
            : variant == 2 ? above(m)
                           : kGrid[rng.integer(0, 7)] * s;
        v *= rng.sign();
        if (i == 0) v = rng.sign() * (rng.integer(0, 1) ? 4.0f : 6.0f) * s;
        break;
      }
      case 2:  // subnormals and zeros
        v = rng.integer(0, 4) == 0
                ? 0.0f
                : rng.sign() *
                      std::bit_cast<float>(static_cast<uint32_t>(1 + rng.bits() % 0x7FFFFF));
        break;
      case 3:  // ±0, sometimes one tiny value
        v = rng.sign() * 0.0f;
        if (i == 0 && rng.integer(0, 1)) v = rng.sign() * pow2f(rng.integer(-149, -100));
        break;
      case 4:  // just below powers of two, e.g. 7.9999995 (bits 0x40FFFFFF)
        v = rng.sign() * below(pow2f(k + rng.integer(-3, 3)));
        break;
      case 5: {  // block max at a boundary of some scale rule, the rest below it
        static const float kMaxima[] = {1.0f, 3.0f, 4.0f, 6.0f, 8.0f};
        const float m = kMaxima[rng.integer(0, 4)] * s;
        const int variant = rng.integer(0, 2);
        const float amax = variant == 0 ? m : variant == 1 ? below(m) : above(m);
        v = i == 0 ? rng.sign() * amax : static_cast<float>(rng.normal()) * 0.3f * s;
        break;
      }
      case 6:  // extremes of float32
        v = rng.sign() * (rng.integer(0, 2) == 0   ? std::numeric_limits<float>::max()
                          : rng.integer(0, 1) == 0 ? std::numeric_limits<float>::denorm_min()
                                                   : pow2f(rng.integer(-149, 127)));
        break;
      default:  // just off the decision points of E2M1 at scale 2^k (by one ulp)
        v = rng.sign() * (rng.integer(0, 1) ? above(kMidpoints[rng.integer(0, 6)] * s)
                                            : below(kMidpoints[rng.integer(0, 6)] * s));
        if (i == 0) v = 4.0f * s;
    }
    x[i] = v;
  }
}

std::vector<float> random_input(Distribution d, size_t n, uint64_t seed) {
  test::Rng rng(seed);
  std::vector<float> x(n);
  constexpr int kChunk = 32;
  for (size_t b = 0; b < n / kChunk; ++b) {
    float* block = x.data() + b * kChunk;
    switch (d) {
      case Distribution::normal:
        for (int i = 0; i < kChunk; ++i) block[i] = static_cast<float>(rng.normal());
        break;
      case Distribution::log_uniform:  // magnitudes 2^U(-60, 60), random signs
        for (int i = 0; i < kChunk; ++i)
          block[i] = rng.sign() * static_cast<float>(std::exp2(-60.0 + 120.0 * rng.uniform()));
        break;
      case Distribution::adversarial:
        adversarial_block(rng, block, kChunk);
        break;
      case Distribution::nonfinite:
        for (int i = 0; i < kChunk; ++i) block[i] = static_cast<float>(rng.normal());
        if (rng.integer(0, 3) == 0) {
          const float bad[] = {std::numeric_limits<float>::infinity(),
                               -std::numeric_limits<float>::infinity(),
                               std::numeric_limits<float>::quiet_NaN()};
          block[rng.integer(0, kChunk - 1)] = bad[rng.integer(0, 2)];
        }
        break;
    }
  }
  return x;
}

// Interval a/scale must lie in for an E8M0 rule (algorithm.md §10 item 3).
bool ratio_in_range(ScaleRule rule, double ratio) {
  switch (rule) {
    case ScaleRule::ocp_floor:
      return ratio >= 4.0 && ratio < 8.0;
    case ScaleRule::fpquant:
      return ratio >= 3.0 * (1 - kFourThirdsRelTol) && ratio < 6.0;
    case ScaleRule::rceil:
      return ratio > 3.0 && ratio <= 6.0;
    case ScaleRule::dqv2_log8:
      break;
  }
  return false;
}

// Largest error allowed for one element: half the local grid spacing times scale when |v| <= 6,
// exact saturation to ±6 * scale above.
bool error_within_bound(double x, double xq, float scale) {
  const double v = std::fabs(x) / scale;
  if (v > 6.0) return std::fabs(xq) == 6.0f * scale;  // the float product dequantize forms
  static const double kGrid[] = {0, 0.5, 1, 1.5, 2, 3, 4, 6};
  int i = 0;
  while (i < 6 && kGrid[i + 1] < v) ++i;
  const double half_spacing = 0.5 * (kGrid[i + 1] - kGrid[i]);
  return std::fabs(x - xq) <= half_spacing * scale * (1 + kErrorBoundRelTol);
}

}  // namespace

class TestMxfp4 : public QObject {
  Q_OBJECT
 private slots:
  void e2m1Grid() {
    for (int code = 0; code < 16; ++code) {
      const float v = e2m1_decode(static_cast<uint8_t>(code));
      for (Rounding r : {Rounding::rne, Rounding::ggml}) {
        const uint8_t back = e2m1_encode_ref(v, r);
        if (code == 8)
          QCOMPARE(back, uint8_t{0});  // -0 decodes to zero and re-encodes as +0
        else
          QCOMPARE(back, static_cast<uint8_t>(code));
      }
    }
    QCOMPARE(e2m1_decode(8), 0.0f);
    QCOMPARE(e2m1_decode(7), 6.0f);
    QCOMPARE(e2m1_decode(0xF), -6.0f);
    QCOMPARE(e2m1_encode_ref(-0.0f, Rounding::rne), uint8_t{0});
    QCOMPARE(e2m1_encode_ref(-0.0f, Rounding::ggml), uint8_t{0});
    QCOMPARE(e2m1_encode_ref(-0.1f, Rounding::rne), uint8_t{0});
    QCOMPARE(e2m1_encode_ref(1e30f, Rounding::rne), uint8_t{7});
    QCOMPARE(e2m1_encode_ref(-std::numeric_limits<float>::infinity(), Rounding::ggml),
             uint8_t{0xF});
  }

  void e2m1Ties_data() {
    QTest::addColumn<float>("v");
    QTest::addColumn<int>("rne");
    QTest::addColumn<int>("ggml");
    // algorithm.md §1.1: RNE 0.75->1, 1.75->2, 3.5->4; ggml to the smaller; others agree.
    QTest::newRow("0.25") << 0.25f << 0x0 << 0x0;
    QTest::newRow("0.75") << 0.75f << 0x2 << 0x1;
    QTest::newRow("1.25") << 1.25f << 0x2 << 0x2;
    QTest::newRow("1.75") << 1.75f << 0x4 << 0x3;
    QTest::newRow("2.5") << 2.5f << 0x4 << 0x4;
    QTest::newRow("3.5") << 3.5f << 0x6 << 0x5;
    QTest::newRow("5") << 5.0f << 0x6 << 0x6;
    QTest::newRow("-0.75") << -0.75f << 0xA << 0x9;
    QTest::newRow("-3.5") << -3.5f << 0xE << 0xD;
    QTest::newRow("-0.25") << -0.25f << 0x0 << 0x0;
    QTest::newRow("6.5 saturates") << 6.5f << 0x7 << 0x7;
    QTest::newRow("above 0.25 by one ulp") << std::nextafter(0.25f, 1.0f) << 0x1 << 0x1;
  }
  void e2m1Ties() {
    QFETCH(float, v);
    QFETCH(int, rne);
    QFETCH(int, ggml);
    QCOMPARE(int(e2m1_encode_ref(v, Rounding::rne)), rne);
    QCOMPARE(int(e2m1_encode_ref(v, Rounding::ggml)), ggml);
    // The fast path's threshold form gives the same codes (one element at scale 1).
    for (const Path& path : mxfp4_paths()) {
      for (Rounding r : {Rounding::rne, Rounding::ggml}) {
        std::vector<float> x(32, 0.0f);
        x[0] = 6.0f;  // fixes scale 1 under ocp_floor
        x[1] = v;
        std::vector<Mxfp4Block> blocks(1);
        path.quantize(x, blocks, {ScaleRule::ocp_floor, r});
        QCOMPARE(int(blocks[0].qs[1] & 0xF), r == Rounding::rne ? rne : ggml);
      }
    }
  }

  void e8m0Codes() {
    QCOMPARE(e8m0_decode(0x7F), 1.0f);
    QCOMPARE(e8m0_decode(0x80), 2.0f);
    QCOMPARE(std::bit_cast<uint32_t>(e8m0_decode(0x00)), 0x00400000u);  // 2^-127, subnormal
    QCOMPARE(e8m0_decode(0xFE), std::ldexp(1.0f, 127));
    QVERIFY(std::isnan(e8m0_decode(0xFF)));
    QCOMPARE(e8m0_encode(0), uint8_t{0x7F});
    QCOMPARE(e8m0_encode(-200), uint8_t{0x00});
    QCOMPARE(e8m0_encode(200), uint8_t{0xFE});
  }

  // algorithm.md §1.3: floor(log2 a) from the exponent field, not floorf(log2f(a)).
  void ocpFloorJustBelowPowerOfTwo() {
    const float a = std::bit_cast<float>(0x40FFFFFFu);  // 7.9999995, log2f rounds to 3.0
    QCOMPARE(mxfp4_block_scale(a, ScaleRule::ocp_floor).byte, uint8_t{0x7F});
    QCOMPARE(mxfp4_block_scale(8.0f, ScaleRule::ocp_floor).byte, uint8_t{0x80});
    // Subnormal amax: exponent from frexp, clamped at -127.
    QCOMPARE(mxfp4_block_scale(std::ldexp(1.0f, -140), ScaleRule::ocp_floor).byte, uint8_t{0});
    QCOMPARE(mxfp4_block_scale(std::ldexp(1.0f, -124), ScaleRule::ocp_floor).byte, uint8_t{1});
    // rceil: a/6 exactly a power of two stays, one ulp more goes up.
    QCOMPARE(mxfp4_block_scale(6.0f, ScaleRule::rceil).byte, uint8_t{0x7F});
    QCOMPARE(mxfp4_block_scale(std::nextafter(6.0f, 7.0f), ScaleRule::rceil).byte, uint8_t{0x80});
    QVERIFY_THROWS_EXCEPTION(Error, mxfp4_block_scale(1.0f, ScaleRule::dqv2_log8));
  }

  void vectors_data() {
    QTest::addColumn<std::vector<float>>("input");
    QTest::addColumn<int>("rule");
    QTest::addColumn<int>("rounding");
    QTest::addColumn<int>("e8m0");
    QTest::addColumn<float>("scale");
    QTest::addColumn<QString>("codes");
    QTest::addColumn<QString>("ggml");     // "" when §1.6 gives none (checked from codes)
    QTest::addColumn<QString>("pairs");    // ""
    QTest::addColumn<QString>("dequant");  // ""
    const int S1 = int(ScaleRule::ocp_floor), S2 = int(ScaleRule::fpquant),
              S3 = int(ScaleRule::rceil), RNE = int(Rounding::rne), GGML = int(Rounding::ggml);
    const QString v1_codes = "092b4c00195d102c1a700e5903b1a6d0";
    const QString v1_ggml = "7f 10 a9 72 0b 04 ec 50 90 01 39 b5 1d a1 60 d2 0c";
    const QString v1_pairs = "90 b2 c4 00 91 d5 01 c2 a1 07 e0 95 30 1b 6a 0d";
    const QString v1_dequant =
        "0 -0.5 1 -1.5 2 -2 0 0 | 0.5 -0.5 3 -3 0.5 0 1 -2 | 0.5 -1 6 0 0 -4 3 -0.5 | "
        "0 1.5 -1.5 0.5 -1 4 -3 0";
    for (int rounding : {RNE, GGML}) {
      const char* r = rounding == RNE ? "rne" : "ggml";
      QTest::addRow("V1 ocp_floor %s", r)
          << kV1 << S1 << rounding << 0x7F << 1.0f << v1_codes << v1_ggml << v1_pairs << v1_dequant;
      QTest::addRow("V1 rceil %s", r)
          << kV1 << S3 << rounding << 0x7F << 1.0f << v1_codes << v1_ggml << v1_pairs << v1_dequant;
    }
    QTest::newRow("V1 fpquant rne")
        << kV1 << S2 << RNE << 0x7F << 4.0f / 3.0f << "091a3b00194c102b09600d4902b195c0"
        << ""
        << ""
        << "";
    QTest::newRow("V2 ocp_floor rne")
        << kV2 << S1 << RNE << 0x7F << 1.0f << "702a4c6e01922b4d6f7f00104d5e7f20"
        << "7f 67 f0 72 fa 04 0c 16 0e 40 d1 59 e2 72 fb 24 0d"
        << ""
        << "6 0 1 -1 2 -2 4 -4 | 0 0.5 -0.5 1 1 -1.5 2 -3 | 4 -6 6 -6 0 0 0.5 0 | "
           "2 -3 3 -4 6 -6 1 0";
    QTest::newRow("V2 ocp_floor ggml")
        << kV2 << S1 << GGML << 0x7F << 1.0f << "701a3c5e01922b4d6f7f00104d5e7f20"
        << "7f 67 f0 71 fa 03 0c 15 0e 40 d1 59 e2 72 fb 24 0d"
        << ""
        << "";
    QTest::newRow("V2 rceil rne")
        << kV2 << S3 << RNE << 0x80 << 2.0f << "60192a4c00911a2b4d5e00002b3c5d10"
        << ""
        << ""
        << "8 0 1 -1 2 -2 4 -4 | 0 0 -1 1 1 -2 2 -3 | 4 -6 6 -8 0 0 0 0 | 2 -3 3 -4 6 -6 1 0";
    QTest::newRow("V2 fpquant rne")
        << kV2 << S2 << RNE << 0x7F << 4.0f / 3.0f << "701a3c5e01912a3c5e6f00103c4d6e20"
        << ""
        << ""
        << "";
    const QString v3_codes = "00000000000000000070000000000000";
    const QString v3_ggml = "82 00 00 70 00 00 00 00 00 00 00 00 00 00 00 00 00";
    QTest::newRow("V3 ocp_floor rne")
        << kV3 << S1 << RNE << 0x82 << 8.0f << v3_codes << v3_ggml << ""
        << "";
    QTest::newRow("V3 rceil rne") << kV3 << S3 << RNE << 0x82 << 8.0f << v3_codes << v3_ggml << ""
                                  << "";
    QTest::newRow("V3 fpquant rne")
        << kV3 << S2 << RNE << 0x82 << 32.0f / 3.0f << "00000000000000000060000000000000"
        << ""
        << ""
        << "";
    const std::vector<float> zeros(32, 0.0f);
    const QString zero_codes(32, '0');
    const QString zero_ggml = "00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00";
    QTest::newRow("zero block ocp_floor")
        << zeros << S1 << RNE << 0x00 << std::ldexp(1.0f, -127) << zero_codes << zero_ggml << ""
        << "";
    QTest::newRow("zero block rceil")
        << zeros << S3 << RNE << 0x00 << std::ldexp(1.0f, -127) << zero_codes << zero_ggml << ""
        << "";
  }
  void vectors() {
    QFETCH(std::vector<float>, input);
    QFETCH(int, rule);
    QFETCH(int, rounding);
    QFETCH(int, e8m0);
    QFETCH(float, scale);
    QFETCH(QString, codes);
    QFETCH(QString, ggml);
    QFETCH(QString, pairs);
    QFETCH(QString, dequant);
    const QuantOptions options{ScaleRule(rule), Rounding(rounding)};
    const std::vector<uint8_t> want_codes = hex_digits(codes.toStdString());
    QCOMPARE(want_codes.size(), size_t{32});
    for (const Path& path : mxfp4_paths()) {
      std::vector<Mxfp4Block> blocks(1);
      const TensorScale ts = path.quantize(input, blocks, options);
      const auto bytes = block_bytes(std::span<const Mxfp4Block>(blocks));
      qInfo("%s: %s", path.name, to_hex(bytes).c_str());
      QCOMPARE(int(blocks[0].e), e8m0);
      QCOMPARE(bits(mxfp4_scale_of(blocks[0].e, ts)), bits(scale));
      QCOMPARE(codes_of_block_records(bytes, 32), want_codes);
      // ggml layout: the bytes §1.6 lists, or (where it lists none) e then low j | high j+16.
      std::vector<uint8_t> want_ggml = hex_bytes(ggml.toStdString());
      if (want_ggml.empty()) {
        want_ggml.push_back(static_cast<uint8_t>(e8m0));
        for (int j = 0; j < 16; ++j)
          want_ggml.push_back(static_cast<uint8_t>(want_codes[j] | want_codes[j + 16] << 4));
      }
      QCOMPARE(std::vector<uint8_t>(bytes.begin(), bytes.end()), want_ggml);
      const PairsLayout pl = block_records_to_pairs(bytes, 32);
      const std::vector<uint8_t> want_pairs =
          pairs.isEmpty() ? pairs_of(want_codes) : hex_bytes(pairs.toStdString());
      QCOMPARE(pl.packed, want_pairs);
      QCOMPARE(pl.scales, std::vector<uint8_t>{static_cast<uint8_t>(e8m0)});
      // Dequantized values: code value times scale, and §1.6's list where it gives one.
      std::vector<float> out(32), fake = input;
      path.dequantize(blocks, ts, out);
      for (int i = 0; i < 32; ++i) QCOMPARE(bits(out[i]), bits(e2m1_decode(want_codes[i]) * scale));
      if (!dequant.isEmpty()) {
        const std::vector<float> want = parse_floats(dequant);
        QCOMPARE(want.size(), size_t{32});
        for (int i = 0; i < 32; ++i) QCOMPARE(bits(out[i]), bits(want[i]));
      }
      path.fake_quantize(fake, options);
      QCOMPARE(first_bit_mismatch(fake, out), -1L);
    }
  }

  // §1.6 S4 example: tensor = [V1 block, V3 block] under dqv2_log8.
  void dqv2Example() {
    std::vector<float> x = kV1;
    x.insert(x.end(), kV3.begin(), kV3.end());
    for (const Path& path : mxfp4_paths()) {
      std::vector<Mxfp4Block> blocks(2);
      const TensorScale ts = path.quantize(x, blocks, {ScaleRule::dqv2_log8, Rounding::rne});
      QCOMPARE(int(blocks[0].e), 0);
      QCOMPARE(int(blocks[1].e), 255);
      const float s0 = mxfp4_scale_of(blocks[0].e, ts), s1 = mxfp4_scale_of(blocks[1].e, ts);
      qInfo("%s: scales %.7g %.7g (a/6 = %.7g %.7g)", path.name, s0, s1, 5.4321f / 6.0f,
            41.3f / 6.0f);
      QCOMPARE(bits(s0), bits(5.4321f / 6.0f));  // exactly a/6 for the blocks at lo and hi
      QCOMPARE(bits(s1), bits(41.3f / 6.0f));
      const auto codes =
          codes_of_block_records(block_bytes(std::span<const Mxfp4Block>(blocks)), 32);
      QCOMPARE(std::vector<uint8_t>(codes.begin(), codes.begin() + 32),
               hex_digits("092b4c00195d292c1a700e5903c1a6d0"));
      std::vector<uint8_t> v3_codes(32, 0);
      v3_codes[18] = 7;
      QCOMPARE(std::vector<uint8_t>(codes.begin() + 32, codes.end()), v3_codes);
      std::vector<float> out(64);
      path.dequantize(blocks, ts, out);
      QCOMPARE(bits(out[32 + 18]), bits(6.0f * s1));
      QVERIFY(std::fabs(out[32 + 18] - 41.3f) <= 4e-6f * 41.3f);  // "41.3 exactly" up to float
      // hi == lo (one block): scale is s_b itself.
      std::vector<Mxfp4Block> one(1);
      const TensorScale ts1 =
          path.quantize(std::span(x).first(32), one, {ScaleRule::dqv2_log8, Rounding::rne});
      QCOMPARE(int(one[0].e), 0);
      QCOMPARE(bits(mxfp4_scale_of(one[0].e, ts1)), bits(5.4321f / 6.0f));
    }
  }

  // formats.md §4.4: the worked block in the ggml and pairs layouts.
  void workedBlockLayouts() {
    std::vector<float> x(32, 0.0f);
    x[0] = 1.0f, x[1] = -0.5f, x[16] = 3.0f, x[17] = -6.0f;
    for (const Path& path : mxfp4_paths()) {
      std::vector<Mxfp4Block> blocks(1);
      path.quantize(x, blocks, {});
      const auto bytes = block_bytes(std::span<const Mxfp4Block>(blocks));
      QCOMPARE(std::vector<uint8_t>(bytes.begin(), bytes.end()),
               hex_bytes("7F 52 F9 00 00 00 00 00 00 00 00 00 00 00 00 00 00"));
      const PairsLayout pl = block_records_to_pairs(bytes, 32);
      std::vector<uint8_t> want(16, 0);
      want[0] = 0x92, want[8] = 0xF5;
      QCOMPARE(pl.packed, want);
      QCOMPARE(pl.scales, std::vector<uint8_t>{0x7F});
    }
  }

  void packingRoundTrip() {
    test::Rng rng(7);
    for (int block_size : {16, 32}) {
      const int n_blocks = 50;
      std::vector<uint8_t> codes(static_cast<size_t>(block_size) * n_blocks);
      for (auto& c : codes) c = static_cast<uint8_t>(rng.bits() & 0xF);
      std::vector<uint8_t> records;
      for (int b = 0; b < n_blocks; ++b) {
        records.push_back(static_cast<uint8_t>(b));
        std::vector<uint8_t> packed(block_size / 2);
        pack_codes_split(std::span(codes).subspan(b * block_size, block_size), packed);
        // The split layout puts element j + B/2 in the high nibble.
        QCOMPARE(int(packed[1] >> 4), int(codes[b * block_size + 1 + block_size / 2]));
        records.insert(records.end(), packed.begin(), packed.end());
      }
      QCOMPARE(codes_of_block_records(records, block_size), codes);
      const PairsLayout pl = block_records_to_pairs(records, block_size);
      QCOMPARE(pl.packed, pairs_of(codes));
      QCOMPARE(int(pl.packed[0] & 0xF), int(codes[0]));
      QCOMPARE(int(pl.packed[0] >> 4), int(codes[1]));
      QCOMPARE(pairs_to_block_records(pl, block_size), records);
      std::vector<uint8_t> back(codes.size());
      unpack_codes_pairs(pl.packed, back);
      QCOMPARE(back, codes);
    }
    const std::vector<uint8_t> odd(18);
    QVERIFY_THROWS_EXCEPTION(Error, codes_of_block_records(odd, 32));
  }

  void invariants_data() {
    QTest::addColumn<int>("rule");
    QTest::addColumn<int>("rounding");
    for (ScaleRule rule : find_quant_format("mxfp4").scale_rules)
      for (Rounding r : {Rounding::rne, Rounding::ggml})
        QTest::addRow("%s %s", to_string(rule).data(), to_string(r).data()) << int(rule) << int(r);
  }
  void invariants() {
    QFETCH(int, rule);
    QFETCH(int, rounding);
    const ScaleRule scale_rule = ScaleRule(rule);
    std::vector<float> x = random_input(Distribution::log_uniform, kInvariantBlocks * 16, 11);
    const std::vector<float> x2 = random_input(Distribution::normal, kInvariantBlocks * 16, 12);
    x.insert(x.end(), x2.begin(), x2.end());
    TensorScale ts;
    const auto blocks = quantize_mxfp4(x, {scale_rule, Rounding(rounding)}, &ts);
    std::vector<float> xq(x.size());
    dequantize_mxfp4(blocks, ts, xq);
    const double step = (ts.log2_hi - ts.log2_lo) / 255.0;
    double ratio_min = 1e30, ratio_max = 0;
    size_t bad_ratio = 0, bad_error = 0, over_max = 0, ends = 0, other_rule_fails = 0;
    for (size_t b = 0; b < blocks.size(); ++b) {
      const float scale = mxfp4_scale_of(blocks[b].e, ts);
      double a = 0;
      for (int i = 0; i < 32; ++i) a = std::max(a, std::fabs(double(x[b * 32 + i])));
      const double ratio = a / scale;
      ratio_min = std::min(ratio_min, ratio);
      ratio_max = std::max(ratio_max, ratio);
      if (scale_rule == ScaleRule::dqv2_log8) {
        if (ratio < 6.0 * (1 - kDqv2RatioRelTol) ||
            ratio >= 6.0 * std::exp2(step) * (1 + kDqv2RatioRelTol))
          ++bad_ratio;
        const double t = std::log2(std::max(double(float(a) / 6.0f), std::ldexp(1.0, -126)));
        if (t == ts.log2_lo || t == ts.log2_hi) {  // the blocks that define lo and hi
          ++ends;
          if (std::fabs(ratio - 6.0) > 6.0 * kDqv2RatioRelTol) ++bad_ratio;
        }
      } else {
        if (!ratio_in_range(scale_rule, ratio)) ++bad_ratio;
        // Negative check: the neighbouring rule's interval must not hold for every block.
        const ScaleRule other =
            scale_rule == ScaleRule::ocp_floor ? ScaleRule::rceil : ScaleRule::ocp_floor;
        if (!ratio_in_range(other, ratio)) ++other_rule_fails;
      }
      for (int i = 0; i < 32; ++i) {
        const double xi = x[b * 32 + i], qi = xq[b * 32 + i];
        if (std::fabs(qi) > 6.0f * scale) ++over_max;
        if (!error_within_bound(xi, qi, scale)) ++bad_error;
      }
    }
    qInfo("a/scale in [%.6f, %.6f], step %.4f octaves, %zu blocks at lo/hi", ratio_min, ratio_max,
          step, ends);
    QCOMPARE(bad_ratio, size_t{0});
    QCOMPARE(over_max, size_t{0});
    QCOMPARE(bad_error, size_t{0});
    if (scale_rule == ScaleRule::dqv2_log8)
      QVERIFY(ends >= 2);
    else
      QVERIFY2(other_rule_fails > 0, "the a/scale interval check cannot tell rules apart");
    // Negative check for the error bound: one grid step off must fail it.
    const float scale0 = mxfp4_scale_of(blocks[0].e, ts);
    const double away = xq[0] >= x[0] ? 1.01 : -1.01;  // one grid step (<= 1 scale) further off
    QVERIFY(!error_within_bound(x[0], xq[0] + away * scale0, scale0));
  }

  void fastEqualsReference_data() {
    QTest::addColumn<int>("format");
    QTest::addColumn<int>("distribution");
    QTest::addColumn<int>("rule");
    QTest::addColumn<int>("rounding");
    const auto formats = quant_formats();
    for (size_t f = 0; f < formats.size(); ++f)
      for (Distribution d : {Distribution::normal, Distribution::log_uniform,
                             Distribution::adversarial, Distribution::nonfinite})
        for (ScaleRule rule : formats[f].scale_rules)
          for (Rounding r : {Rounding::rne, Rounding::ggml})
            QTest::addRow("%s %s %s %s", formats[f].name.data(), name_of(d),
                          formats[f].name == "mxfp4" ? to_string(rule).data() : "e4m3",
                          to_string(r).data())
                << int(f) << int(d) << int(rule) << int(r);
  }
  void fastEqualsReference() {
    QFETCH(int, format);
    QFETCH(int, distribution);
    QFETCH(int, rule);
    QFETCH(int, rounding);
    const QuantFormat& f = quant_formats()[format];
    if (!f.fast_available()) QSKIP("this CPU has no AVX2+FMA: the fast path falls back to ref");
    const QuantOptions options{ScaleRule(rule), Rounding(rounding)};
    const std::vector<float> x =
        random_input(Distribution(distribution), kParityElements, 1000 + distribution);
    const size_t n_bytes = x.size() / f.block_size * f.record_bytes;
    std::vector<uint8_t> ref_blocks(n_bytes), fast_blocks(n_bytes, 0xAA);
    const bool throws = ScaleRule(rule) == ScaleRule::dqv2_log8 &&
                        Distribution(distribution) == Distribution::nonfinite;
    if (throws) {  // mxfp4.h: a dqv2_log8 byte cannot mark Inf/NaN, both paths refuse
      QVERIFY_THROWS_EXCEPTION(Error, f.quantize_ref(x, ref_blocks, options));
      QVERIFY_THROWS_EXCEPTION(Error, f.quantize_fast(x, fast_blocks, options));
      std::vector<float> fake_ref = x, fake_fast = x;
      f.fake_quantize_ref(fake_ref, options);
      f.fake_quantize_fast(fake_fast, options);
      QCOMPARE(first_bit_mismatch(fake_ref, fake_fast), -1L);
    } else {
      const TensorScale ts_ref = f.quantize_ref(x, ref_blocks, options);
      const TensorScale ts_fast = f.quantize_fast(x, fast_blocks, options);
      const long at = first_byte_mismatch(ref_blocks, fast_blocks);
      if (at >= 0)
        qWarning("first differing byte %ld: ref %02x fast %02x (block %ld)", at, ref_blocks[at],
                 fast_blocks[at], at / f.record_bytes);
      QCOMPARE(at, -1L);
      QCOMPARE(std::bit_cast<uint64_t>(ts_fast.log2_lo), std::bit_cast<uint64_t>(ts_ref.log2_lo));
      QCOMPARE(std::bit_cast<uint64_t>(ts_fast.log2_hi), std::bit_cast<uint64_t>(ts_ref.log2_hi));
      QCOMPARE(bits(ts_fast.global_scale), bits(ts_ref.global_scale));
      std::vector<float> out_ref(x.size()), out_fast(x.size());
      f.dequantize_ref(ref_blocks, ts_ref, out_ref);
      f.dequantize_fast(ref_blocks, ts_ref, out_fast);
      QCOMPARE(first_bit_mismatch(out_ref, out_fast), -1L);
      // Fused fake quantization equals quantize + dequantize on both paths.
      std::vector<float> fake_ref = x, fake_fast = x;
      f.fake_quantize_ref(fake_ref, options);
      f.fake_quantize_fast(fake_fast, options);
      const long at_fake = first_bit_mismatch(fake_ref, fake_fast);
      if (at_fake >= 0)
        qWarning("fake quant differs at %ld: x %.9g ref %.9g fast %.9g", at_fake, x[at_fake],
                 fake_ref[at_fake], fake_fast[at_fake]);
      QCOMPARE(at_fake, -1L);
      QCOMPARE(first_bit_mismatch(fake_ref, out_ref), -1L);
      double err2 = 0, sig2 = 0;
      for (size_t i = 0; i < x.size(); ++i) {
        if (!std::isfinite(x[i]) || !std::isfinite(out_ref[i])) continue;
        err2 += (double(x[i]) - out_ref[i]) * (double(x[i]) - out_ref[i]);
        sig2 += double(x[i]) * x[i];
      }
      qInfo("%zu values bit-identical; relative RMS quantization error %.4g", x.size(),
            std::sqrt(err2 / std::max(sig2, 1e-300)));
    }
  }

  // The parity comparison must catch a single flipped nibble.
  void negativeFlippedNibble() {
    const QuantFormat& f = find_quant_format("mxfp4");
    const std::vector<float> x = random_input(Distribution::normal, 4096, 5);
    std::vector<uint8_t> a(x.size() / 32 * 17), b(a.size());
    f.quantize_ref(x, a, {});
    f.quantize_ref(x, b, {});
    QCOMPARE(first_byte_mismatch(a, b), -1L);
    b[17 * 3 + 5] ^= 0x10;  // block 3, element 4 + 16
    QCOMPARE(first_byte_mismatch(a, b), long(17 * 3 + 5));
    std::vector<float> da(x.size()), db(x.size());
    f.dequantize_ref(a, {}, da);
    f.dequantize_ref(b, {}, db);
    QCOMPARE(first_bit_mismatch(da, db), long(3 * 32 + 4 + 16));
  }

  // algorithm.md §1.4 as documented in mxfp4.h.
  void nonFiniteBlocks_data() {
    QTest::addColumn<int>("rule");
    QTest::addColumn<float>("bad");
    for (ScaleRule rule : find_quant_format("mxfp4").scale_rules) {
      QTest::addRow("%s NaN", to_string(rule).data())
          << int(rule) << std::numeric_limits<float>::quiet_NaN();
      QTest::addRow("%s +Inf", to_string(rule).data())
          << int(rule) << std::numeric_limits<float>::infinity();
      QTest::addRow("%s -Inf", to_string(rule).data())
          << int(rule) << -std::numeric_limits<float>::infinity();
    }
  }
  void nonFiniteBlocks() {
    QFETCH(int, rule);
    QFETCH(float, bad);
    const QuantOptions options{ScaleRule(rule), Rounding::rne};
    std::vector<float> x(64);
    for (int i = 0; i < 64; ++i) x[i] = 0.1f * float(i % 7) - 0.3f;
    x[40] = bad;  // second block
    for (const Path& path : mxfp4_paths()) {
      std::vector<float> fake = x;
      path.fake_quantize(fake, options);
      for (int i = 32; i < 64; ++i) QVERIFY(std::isnan(fake[i]));
      for (int i = 0; i < 32; ++i) QVERIFY(std::isfinite(fake[i]));
      std::vector<Mxfp4Block> blocks(2);
      if (ScaleRule(rule) == ScaleRule::dqv2_log8) {
        QVERIFY_THROWS_EXCEPTION(Error, path.quantize(x, blocks, options));
        continue;
      }
      const TensorScale ts = path.quantize(x, blocks, options);
      QCOMPARE(int(blocks[1].e), int(kE8M0Nan));
      for (uint8_t q : blocks[1].qs) QCOMPARE(int(q), 0);
      std::vector<float> out(64);
      path.dequantize(blocks, ts, out);
      for (int i = 32; i < 64; ++i) QVERIFY(std::isnan(out[i]));
      QCOMPARE(first_bit_mismatch(std::span(out).first(32), std::span(fake).first(32)), -1L);
    }
  }

  void badLengthsThrow() {
    std::vector<float> x(33, 1.0f);
    std::vector<Mxfp4Block> blocks(1);
    for (const Path& path : mxfp4_paths()) {
      QVERIFY_THROWS_EXCEPTION(Error, path.quantize(x, blocks, {}));
      QVERIFY_THROWS_EXCEPTION(Error, path.fake_quantize(x, {}));
      std::vector<Mxfp4Block> two(2);
      QVERIFY_THROWS_EXCEPTION(Error, path.quantize(std::span(x).first(32), two, {}));
    }
    try {
      fake_quantize_mxfp4(x);
      QFAIL("no error for 33 elements");
    } catch (const Error& e) {
      qInfo("%s", e.what());
      QVERIFY(QString(e.what()).contains("not a multiple of the block size 32"));
    }
  }

  void formatTable() {
    QVERIFY(quant_formats().size() >= 2);
    for (const QuantFormat& f : quant_formats()) {
      QCOMPARE(f.record_bytes, 1 + f.block_size / 2);
      QVERIFY(f.quantize_ref && f.quantize_fast && f.dequantize_ref && f.dequantize_fast &&
              f.fake_quantize_ref && f.fake_quantize_fast);
      QCOMPARE(&find_quant_format(f.name), &f);
    }
    QVERIFY_THROWS_EXCEPTION(Error, find_quant_format("int4"));
    qInfo("active MXFP4 path on this CPU: %s", mxfp4_active_path());
  }
};

QTEST_GUILESS_MAIN(TestMxfp4)
#include "test_mxfp4.moc"
