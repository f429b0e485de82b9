// NVFP4 (algorithm.md §1.7): E4M3 block scales, the per-tensor FP32 scale, a hand-computed
// two-block example in both layouts, invariants and the error cases. Fast-vs-reference
// parity on random data runs for every format in test_mxfp4.cpp (format table).
#include <QtTest>

#include <bit>
#include <cmath>
#include <limits>
#include <vector>

#include "core/mx/e2m1.h"
#include "core/mx/mxfp4.h"
#include "core/mx/nvfp4.h"
#include "core/mx/packing.h"
#include "core/util/error.h"
#include "tests/core/mx_test_support.h"

using namespace mxlens;
using mxlens::test::first_bit_mismatch;
using mxlens::test::hex_bytes;

namespace {

constexpr int kE4M3RandomValues = 200000;
constexpr int kInvariantBlocks = 20000;

uint32_t bits(float v) {
  return std::bit_cast<uint32_t>(v);
}

struct Path {
  const char* name;
  TensorScale (*quantize)(std::span<const float>, std::span<Nvfp4Block>, const QuantOptions&);
  void (*dequantize)(std::span<const Nvfp4Block>, const TensorScale&, std::span<float>);
  void (*fake_quantize)(std::span<float>, const QuantOptions&);
};
std::vector<Path> nvfp4_paths() {
  std::vector<Path> paths = {
      {"ref", quantize_nvfp4_ref, dequantize_nvfp4_ref, fake_quantize_nvfp4_ref}};
  if (mxfp4_avx2_available())
    paths.push_back({"avx2", quantize_nvfp4_avx2, dequantize_nvfp4_avx2, fake_quantize_nvfp4_avx2});
  return paths;
}

// Block 0: max 2688 -> g = 2688 / (6 * 448) = 1, sb = 448 (0x7E). Block 1: max 6 -> sb = 1
// (0x38), elements are E2M1 ties and grid points. Block 2: max 1e-4 -> sb rounds to 0.
std::vector<float> example() {
  std::vector<float> x(48, 0.0f);
  x[0] = 2688.0f, x[1] = -1344.0f, x[2] = 448.0f, x[9] = 100.0f;
  const float b1[16] = {6.0f,   -0.25f, 0.75f,   -1.25f, 1.75f, -2.5f, 3.5f, -5.0f,
                        0.125f, 0.375f, -0.625f, 0.875f, 1.0f,  -1.5f, 2.0f, -3.0f};
  for (int i = 0; i < 16; ++i) x[16 + i] = b1[i];
  x[32] = 1e-4f, x[40] = -5e-5f;
  return x;
}

}  // namespace

class TestNvfp4 : public QObject {
  Q_OBJECT
 private slots:
  void e4m3Decode() {
    QCOMPARE(e4m3_decode(0x38), 1.0f);
    QCOMPARE(e4m3_decode(0x7E), 448.0f);
    QCOMPARE(e4m3_decode(0x08), std::ldexp(1.0f, -6));  // smallest normal
    QCOMPARE(e4m3_decode(0x01), std::ldexp(1.0f, -9));  // smallest subnormal
    QCOMPARE(e4m3_decode(0x07), 7 * std::ldexp(1.0f, -9));
    QCOMPARE(e4m3_decode(0xB8), -1.0f);
    QVERIFY(std::isnan(e4m3_decode(0x7F)));
    QVERIFY(std::isnan(e4m3_decode(0xFF)));
    QCOMPARE(e4m3_decode(0x00), 0.0f);
  }

  // The arithmetic encoder (fast path) equals the brute-force one (reference) everywhere:
  // every representable value, every midpoint and its neighbours, random values, overflow.
  void e4m3EncodeMatchesBruteForce() {
    std::vector<float> probes;
    for (int byte = 0; byte <= 0x7E; ++byte) {
      const float v = e4m3_decode(static_cast<uint8_t>(byte));
      probes.push_back(v);
      if (byte < 0x7E) {
        const float mid = 0.5f * (v + e4m3_decode(static_cast<uint8_t>(byte + 1)));
        probes.push_back(mid);
        probes.push_back(std::nextafter(mid, 0.0f));
        probes.push_back(std::nextafter(mid, 1000.0f));
      }
    }
    test::Rng rng(3);
    for (int i = 0; i < kE4M3RandomValues; ++i)
      probes.push_back(static_cast<float>(std::exp2(-14.0 + 24.0 * rng.uniform())));
    for (float v : {448.5f, 464.0f, 480.0f, 1e6f, std::ldexp(1.0f, -12), 0.0f}) probes.push_back(v);
    size_t mismatches = 0;
    for (float v : probes)
      if (e4m3_encode(v) != e4m3_encode_ref(v)) {
        if (++mismatches < 5)
          qWarning("v=%.9g fast %02x ref %02x", v, e4m3_encode(v), e4m3_encode_ref(v));
      }
    qInfo("%zu probes", probes.size());
    QCOMPARE(mismatches, size_t{0});
    // Ties to even: the midpoint of 1.0 (0x38) and 1.125 (0x39) goes to 0x38; 1.1875 to 0x3A.
    QCOMPARE(int(e4m3_encode_ref(1.0625f)), 0x38);
    QCOMPARE(int(e4m3_encode_ref(1.1875f)), 0x3A);
    QCOMPARE(int(e4m3_encode_ref(1000.0f)), 0x7E);  // saturates at 448
  }

  void example_data() {
    QTest::addColumn<int>("rounding");
    QTest::addColumn<QString>("ggml");
    QTest::newRow("rne") << int(Rounding::rne)
                         << "7e 07 0d 02 00 00 00 00 00 "
                            "38 07 10 92 2a 24 bc 46 de "
                            "00 00 00 00 00 00 00 00 00";
    // ggml ties: 0.75 -> 0.5 (1), 1.75 -> 1.5 (3), 3.5 -> 3 (5); block 0's 100/448 = 0.223 -> 0.
    QTest::newRow("ggml") << int(Rounding::ggml)
                          << "7e 07 0d 02 00 00 00 00 00 "
                             "38 07 10 91 2a 23 bc 45 de "
                             "00 00 00 00 00 00 00 00 00";
  }
  void example() {
    QFETCH(int, rounding);
    QFETCH(QString, ggml);
    const std::vector<float> x = ::example();
    const QuantOptions options{ScaleRule::ocp_floor, Rounding(rounding)};
    const std::vector<uint8_t> want = hex_bytes(ggml.toStdString());
    for (const Path& path : nvfp4_paths()) {
      std::vector<Nvfp4Block> blocks(3);
      const TensorScale ts = path.quantize(x, blocks, options);
      QCOMPARE(ts.global_scale, 1.0f);
      const auto bytes = block_bytes(std::span<const Nvfp4Block>(blocks));
      qInfo("%s: %s", path.name, test::to_hex(bytes).c_str());
      QCOMPARE(std::vector<uint8_t>(bytes.begin(), bytes.end()), want);
      // Pairs layout: byte j = code 2j | code 2j+1 << 4, scales apart.
      const PairsLayout pl = block_records_to_pairs(bytes, 16);
      const std::vector<uint8_t> codes = codes_of_block_records(bytes, 16);
      QCOMPARE(pl.scales, (std::vector<uint8_t>{0x7E, 0x38, 0x00}));
      QCOMPARE(int(pl.packed[0]), 0xD7);  // elements 0 (code 7) and 1 (code D)
      for (size_t j = 0; j < pl.packed.size(); ++j)
        QCOMPARE(int(pl.packed[j]), codes[2 * j] | codes[2 * j + 1] << 4);
      // Dequant = code value * sb * g.
      std::vector<float> out(48), fake = x;
      path.dequantize(blocks, ts, out);
      QCOMPARE(out[0], 2688.0f);
      QCOMPARE(out[1], -1344.0f);
      QCOMPARE(out[2], 448.0f);
      QCOMPARE(out[9], 0.0f);
      for (int i = 0; i < 16; ++i) QCOMPARE(bits(out[16 + i]), bits(e2m1_decode(codes[16 + i])));
      for (int i = 32; i < 48; ++i) QCOMPARE(bits(out[i]), bits(0.0f));
      path.fake_quantize(fake, options);
      QCOMPARE(first_bit_mismatch(fake, out), -1L);
    }
  }

  void invariants() {
    test::Rng rng(21);
    std::vector<float> x(kInvariantBlocks * 16);
    for (size_t b = 0; b < kInvariantBlocks; ++b) {
      const double block_scale = std::exp2(-12.0 + 16.0 * rng.uniform());
      for (int i = 0; i < 16; ++i) x[b * 16 + i] = static_cast<float>(rng.normal() * block_scale);
    }
    std::vector<Nvfp4Block> blocks(kInvariantBlocks);
    const TensorScale ts = quantize_nvfp4(x, blocks);
    std::vector<float> xq(x.size());
    dequantize_nvfp4(blocks, ts, xq);
    float amax_t = 0;
    for (float v : x) amax_t = std::max(amax_t, std::fabs(v));
    QCOMPARE(ts.global_scale, amax_t / 2688.0f);
    size_t at_448 = 0, over = 0, bad_error = 0, zero_scale = 0;
    double err2 = 0, sig2 = 0;
    for (size_t b = 0; b < blocks.size(); ++b) {
      const float sb = e4m3_decode(blocks[b].scale);
      const float divisor = sb * ts.global_scale;
      QVERIFY(sb >= 0.0f && sb <= 448.0f);
      at_448 += blocks[b].scale == 0x7E;
      zero_scale += sb == 0.0f;
      for (int i = 0; i < 16; ++i) {
        const double xi = x[b * 16 + i], qi = xq[b * 16 + i];
        if (std::fabs(qi) > 6.0f * divisor) ++over;
        if (divisor > 0 && std::fabs(xi) / divisor <= 6.0 &&
            std::fabs(xi - qi) > 1.0 * divisor * (1 + 1e-6))  // half of the widest grid gap
          ++bad_error;
        err2 += (xi - qi) * (xi - qi);
        sig2 += xi * xi;
      }
    }
    qInfo("%zu blocks at sb = 448, %zu with sb = 0, relative RMS error %.4f", at_448, zero_scale,
          std::sqrt(err2 / sig2));
    QVERIFY(at_448 >= 1);  // the block holding the tensor max
    QCOMPARE(over, size_t{0});
    QCOMPARE(bad_error, size_t{0});
  }

  void nonFiniteAndZero() {
    std::vector<float> x(32, 0.5f);
    x[20] = std::numeric_limits<float>::infinity();
    for (const Path& path : nvfp4_paths()) {
      std::vector<Nvfp4Block> blocks(2);
      const TensorScale ts = path.quantize(x, blocks, {});
      QCOMPARE(ts.global_scale, 0.5f / 2688.0f);  // Inf block left out of amax_tensor
      QCOMPARE(int(blocks[1].scale), int(kE4M3Nan));
      std::vector<float> out(32), fake = x;
      path.dequantize(blocks, ts, out);
      path.fake_quantize(fake, {});
      for (int i = 16; i < 32; ++i) QVERIFY(std::isnan(out[i]) && std::isnan(fake[i]));
      for (int i = 0; i < 16; ++i) QCOMPARE(out[i], 0.5f);
      // All-zero tensor: g = 0, every code and scale byte 0, dequant 0.
      std::vector<float> zeros(32, 0.0f);
      zeros[3] = -0.0f;
      const TensorScale tz = path.quantize(zeros, blocks, {});
      QCOMPARE(tz.global_scale, 0.0f);
      path.dequantize(blocks, tz, out);
      for (float v : out) QCOMPARE(bits(v), 0u);
    }
  }

  void badInputThrows() {
    std::vector<float> x(24, 1.0f);
    std::vector<Nvfp4Block> blocks(1);
    for (const Path& path : nvfp4_paths()) {
      QVERIFY_THROWS_EXCEPTION(Error, path.quantize(x, blocks, {}));
      QVERIFY_THROWS_EXCEPTION(Error, path.fake_quantize(x, {}));
      QVERIFY_THROWS_EXCEPTION(
          Error, path.quantize(std::span(x).first(16), blocks, {ScaleRule::rceil, Rounding::rne}));
    }
  }
};

QTEST_GUILESS_MAIN(TestNvfp4)
#include "test_nvfp4.moc"
