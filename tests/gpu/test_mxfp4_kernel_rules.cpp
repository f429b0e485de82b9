// The per-element rules the CUDA kernels run (gpu/src/mxfp4_block.cuh: block scale from the
// float exponent field, threshold rounding, element values), compiled for the host and
// checked against the scalar reference in core/mx. It needs no device and no CUDA headers,
// so the kernels' arithmetic is tested on every machine; the device parity test then only
// has to show that the kernels apply these rules to the right elements and bytes.
#include <QtTest>

#include <string>
#include <vector>

#include "core/mx/mxfp4.h"
#include "core/mx/packing.h"
#include "gpu/src/mxfp4_block.cuh"
#include "tests/gpu/mxfp4_test_inputs.h"

using namespace mxlens;
using namespace mxlens::test;
namespace kr = mxlens::gpu::detail;

namespace {

constexpr int64_t kRows = 257;  // blocks per row x rows: enough draws for every rule branch
constexpr int64_t kCols = 256;

// One block the way the kernels do it, element by element (no warps): the block max of the
// |x| bits, the scale, then codes split-packed as ggml's block_mxfp4.
Mxfp4Block quantize_block(const float* x, ScaleRule rule, Rounding rounding, float* fake) {
  uint32_t amax_bits = 0;
  for (int i = 0; i < Mxfp4Block::kSize; ++i)
    amax_bits = std::max(amax_bits, kr::float_bits(x[i]) & 0x7fffffffu);
  const kr::BlockScale s = kr::block_scale(amax_bits, rule);
  uint32_t codes[Mxfp4Block::kSize] = {};
  if (s.e8m0 != kr::kE8m0Nan)
    for (int i = 0; i < Mxfp4Block::kSize; ++i) codes[i] = kr::encode_e2m1(x[i], s.scale, rounding);
  Mxfp4Block block{};
  block.e = s.e8m0;
  for (int j = 0; j < 16; ++j) block.qs[j] = static_cast<uint8_t>(codes[j] | (codes[j + 16] << 4));
  for (int i = 0; i < Mxfp4Block::kSize; ++i)
    fake[i] =
        s.scale != s.scale ? kr::bits_float(kr::kQuietNanBits) : kr::e2m1_value(codes[i]) * s.scale;
  return block;
}

void dequantize_block(const Mxfp4Block& block, ScaleRule rule, float* out) {
  const float scale = kr::stored_scale(block.e, rule);
  for (int i = 0; i < Mxfp4Block::kSize; ++i) {
    const uint32_t code = i < 16 ? (block.qs[i] & 0xFu) : (block.qs[i - 16] >> 4);
    out[i] = scale != scale ? kr::bits_float(kr::kQuietNanBits) : kr::e2m1_value(code) * scale;
  }
}

// "702a4c..." (one hex digit per element, element 0 first) from split-packed blocks.
std::string code_digits(const Mxfp4Block& block) {
  static const char* kHex = "0123456789abcdef";
  std::string digits;
  for (int i = 0; i < Mxfp4Block::kSize; ++i)
    digits += kHex[i < 16 ? (block.qs[i] & 0xF) : (block.qs[i - 16] >> 4)];
  return digits;
}

}  // namespace

Q_DECLARE_METATYPE(ScaleRule)
Q_DECLARE_METATYPE(Rounding)
Q_DECLARE_METATYPE(Input)

class TestMxfp4KernelRules : public QObject {
  Q_OBJECT
 private slots:
  void matchesReference_data() {
    QTest::addColumn<ScaleRule>("rule");
    QTest::addColumn<Rounding>("rounding");
    QTest::addColumn<Input>("input");
    for (ScaleRule rule : {ScaleRule::ocp_floor, ScaleRule::fpquant, ScaleRule::rceil})
      for (Rounding rounding : {Rounding::rne, Rounding::ggml})
        for (Input input : {Input::gaussian, Input::powers_of_two, Input::ties, Input::subnormals,
                            Input::zeros, Input::outliers, Input::non_finite}) {
          const std::string name =
              std::string(to_string(rule)) + " " + std::string(to_string(rounding)) + " " +
              name_of(input) + " rows=" + std::to_string(kRows) + " cols=" + std::to_string(kCols);
          QTest::newRow(name.c_str()) << rule << rounding << input;
        }
  }
  void matchesReference() {
    QFETCH(ScaleRule, rule);
    QFETCH(Rounding, rounding);
    QFETCH(Input, input);
    const std::vector<float> x =
        make_input(input, kRows, kCols, static_cast<uint32_t>(qHash(QTest::currentDataTag())));
    const size_t n_blocks = x.size() / Mxfp4Block::kSize;
    std::vector<Mxfp4Block> ref(n_blocks), got(n_blocks);
    std::vector<float> ref_fake = x, got_fake(x.size()), ref_deq(x.size()), got_deq(x.size());
    quantize_mxfp4_ref(x, ref, {rule, rounding});
    fake_quantize_mxfp4_ref(ref_fake, {rule, rounding});
    dequantize_mxfp4_ref(ref, {.scale_rule = rule}, ref_deq);
    for (size_t b = 0; b < n_blocks; ++b) {
      got[b] = quantize_block(&x[b * 32], rule, rounding, &got_fake[b * 32]);
      dequantize_block(ref[b], rule, &got_deq[b * 32]);
    }
    const int64_t bytes =
        count_byte_mismatches(block_bytes(std::span<const Mxfp4Block>(got)),
                              block_bytes(std::span<const Mxfp4Block>(ref)), "blocks");
    const int64_t fakes = count_float_mismatches(got_fake, ref_fake, "fake_quantize");
    const int64_t deqs = count_float_mismatches(got_deq, ref_deq, "dequantize");
    qInfo("blocks %zu: mismatching bytes %lld, fake-quant floats %lld, dequant floats %lld",
          n_blocks, static_cast<long long>(bytes), static_cast<long long>(fakes),
          static_cast<long long>(deqs));
    QCOMPARE(bytes, int64_t{0});
    QCOMPARE(fakes, int64_t{0});
    QCOMPARE(deqs, int64_t{0});
  }

  // Every stored byte (all 256 scale bytes, all 16 codes) decodes like the reference.
  void dequantizesEveryStoredByte_data() {
    QTest::addColumn<ScaleRule>("rule");
    QTest::newRow("ocp_floor") << ScaleRule::ocp_floor;
    QTest::newRow("fpquant") << ScaleRule::fpquant;
    QTest::newRow("rceil") << ScaleRule::rceil;
  }
  void dequantizesEveryStoredByte() {
    QFETCH(ScaleRule, rule);
    const std::vector<Mxfp4Block> blocks = make_stored_blocks(1024, 99);
    std::vector<float> ref(blocks.size() * 32), got(blocks.size() * 32);
    dequantize_mxfp4_ref(blocks, {.scale_rule = rule}, ref);
    for (size_t b = 0; b < blocks.size(); ++b) dequantize_block(blocks[b], rule, &got[b * 32]);
    QCOMPARE(count_float_mismatches(got, ref, "dequantize"), int64_t{0});
  }

  // algorithm.md §1.6 vector V2 (exact ties and saturation): known codes, independent of
  // core/mx.
  void testVectorV2_data() {
    QTest::addColumn<ScaleRule>("rule");
    QTest::addColumn<Rounding>("rounding");
    QTest::addColumn<int>("e8m0");
    QTest::addColumn<QString>("codes");
    QTest::newRow("V2 ocp_floor rne")
        << ScaleRule::ocp_floor << Rounding::rne << 0x7F << "702a4c6e01922b4d6f7f00104d5e7f20";
    QTest::newRow("V2 ocp_floor ggml")
        << ScaleRule::ocp_floor << Rounding::ggml << 0x7F << "701a3c5e01922b4d6f7f00104d5e7f20";
    QTest::newRow("V2 rceil rne") << ScaleRule::rceil << Rounding::rne << 0x80
                                  << "60192a4c00911a2b4d5e00002b3c5d10";
    QTest::newRow("V2 fpquant rne")
        << ScaleRule::fpquant << Rounding::rne << 0x7F << "701a3c5e01912a3c5e6f00103c4d6e20";
  }
  void testVectorV2() {
    QFETCH(ScaleRule, rule);
    QFETCH(Rounding, rounding);
    QFETCH(int, e8m0);
    QFETCH(QString, codes);
    const float v2[32] = {7.5f,   -0.25f, 0.75f,   -1.25f, 1.75f, -2.5f,  3.5f,   -5.0f,
                          0.125f, 0.375f, -0.625f, 0.875f, 1.0f,  -1.5f,  2.0f,   -3.0f,
                          4.0f,   -6.0f,  6.5f,    -7.0f,  0.0f,  -0.0f,  0.5f,   0.0625f,
                          2.25f,  -2.75f, 3.25f,   -4.5f,  5.5f,  -5.75f, 1.125f, -0.1875f};
    float fake[32];
    const Mxfp4Block block = quantize_block(v2, rule, rounding, fake);
    QCOMPARE(int(block.e), e8m0);
    QCOMPARE(QString::fromStdString(code_digits(block)), codes);
  }

  // The fused site kernel forms x · 2^-k instead of x / 2^k for power-of-two scales: the same
  // code for every scale byte, on quotients that land on every rounding threshold and tie
  // (elements k · 2^e near each grid point), subnormals and saturation.
  void pow2QuotientEqualsDivision() {
    std::vector<float> xs;
    for (float g : {0.0f, 0.25f, 0.5f, 0.75f, 1.0f, 1.25f, 1.5f, 1.75f, 2.0f, 2.5f, 3.0f, 3.5f,
                    4.0f, 5.0f, 6.0f, 7.0f})
      for (float nudge : {-1.0f, 0.0f, 1.0f})
        for (int e = -140; e <= 127; e += 3) {
          const float base = std::ldexp(g, e);
          const float x = nudge == 0 ? base : std::nextafter(base, nudge * 1e38f);
          xs.push_back(x);
          xs.push_back(-x);
        }
    const std::vector<float> random = make_input(Input::gaussian, 64, 256, 17);
    xs.insert(xs.end(), random.begin(), random.end());
    int64_t checked = 0, mismatches = 0;
    for (int byte = 0; byte <= 254; ++byte) {
      const float scale = kr::exp2i(byte - 127);
      const float inverse = kr::inverse_power_scale(static_cast<uint8_t>(byte));
      QCOMPARE(scale * inverse, 1.0f);
      for (Rounding rounding : {Rounding::rne, Rounding::ggml})
        for (float x : xs) {
          ++checked;
          if (kr::encode_e2m1_pow2(x, inverse, rounding) != kr::encode_e2m1(x, scale, rounding))
            ++mismatches;
        }
    }
    qInfo("%lld (value, scale byte, rounding) triples", static_cast<long long>(checked));
    QCOMPARE(mismatches, int64_t{0});
  }

  // The comparison can fail: one flipped nibble in the emulated block is seen.
  void flippedNibbleIsDetected() {
    const std::vector<float> x = make_input(Input::gaussian, 2, 64, 3);
    std::vector<Mxfp4Block> ref(4);
    quantize_mxfp4_ref(x, ref, {});
    float fake[32];
    Mxfp4Block got = quantize_block(&x[64], ScaleRule::ocp_floor, Rounding::rne, fake);
    QCOMPARE(count_byte_mismatches(block_bytes(std::span<const Mxfp4Block>(&got, 1)),
                                   block_bytes(std::span<const Mxfp4Block>(&ref[2], 1)), "same"),
             int64_t{0});
    got.qs[3] ^= 0x01;
    QCOMPARE(
        count_byte_mismatches(block_bytes(std::span<const Mxfp4Block>(&got, 1)),
                              block_bytes(std::span<const Mxfp4Block>(&ref[2], 1)), "negative"),
        int64_t{1});
  }
};

QTEST_GUILESS_MAIN(TestMxfp4KernelRules)
#include "test_mxfp4_kernel_rules.moc"
