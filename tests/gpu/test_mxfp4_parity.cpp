// CUDA MXFP4 kernels against the scalar reference in core/mx (quantize_mxfp4_ref,
// dequantize_mxfp4_ref, fake_quantize_mxfp4_ref): RTN is deterministic, so the GPU must give
// the same bytes and the same float bits, in both packing layouts. Without a device (or in a
// build without CUDA) the GPU rows skip with the reason from the gpu API.
#include <QtTest>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "core/mx/mxfp4.h"
#include "core/mx/packing.h"
#include "core/util/error.h"
#include "mxlens/gpu/cuda.h"
#include "tests/gpu/mxfp4_test_inputs.h"

using namespace mxlens;
using namespace mxlens::test;

namespace {

// Parity is exact: no tolerance. Large shapes span many CTAs and the grid-stride loop.
constexpr int64_t kLargeRows = 1031;
constexpr int64_t kLargeCols = 2048;

std::string skip_message() {
  const std::string reason = gpu::cuda_unavailable_reason();
  return reason.rfind("no CUDA device", 0) == 0 ? reason : "no CUDA device: " + reason;
}

}  // namespace

// In a _data function this skips the whole test function with one message.
#define MXLENS_REQUIRE_CUDA()                                         \
  do {                                                                \
    if (gpu::cuda_device_count() == 0) QSKIP(skip_message().c_str()); \
  } while (false)

Q_DECLARE_METATYPE(ScaleRule)
Q_DECLARE_METATYPE(Rounding)
Q_DECLARE_METATYPE(Input)

class TestMxfp4Parity : public QObject {
  Q_OBJECT

 private:
  // Rows "<op> <rule> <rounding> <input> rows=R cols=C" over rules x roundings x inputs x
  // shapes (odd row counts, one block, a block count that is not a multiple of 4, large).
  static void add_rows(const char* op) {
    QTest::addColumn<ScaleRule>("rule");
    QTest::addColumn<Rounding>("rounding");
    QTest::addColumn<Input>("input");
    QTest::addColumn<qint64>("rows");
    QTest::addColumn<qint64>("cols");
    struct Shape {
      int64_t rows, cols;
    };
    const Shape shapes[] = {{64, 96}, {1, 32}, {7, 160}, {5, 32}};
    for (ScaleRule rule : {ScaleRule::ocp_floor, ScaleRule::fpquant, ScaleRule::rceil}) {
      for (Rounding rounding : {Rounding::rne, Rounding::ggml}) {
        for (Input input : {Input::gaussian, Input::powers_of_two, Input::ties, Input::subnormals,
                            Input::zeros, Input::outliers, Input::non_finite}) {
          for (const Shape& s : shapes) add_row(op, rule, rounding, input, s.rows, s.cols);
        }
        add_row(op, rule, rounding, Input::gaussian, kLargeRows, kLargeCols);
        add_row(op, rule, rounding, Input::ties, kLargeRows, kLargeCols);
      }
    }
  }

  static void add_row(const char* op, ScaleRule rule, Rounding rounding, Input input, int64_t rows,
                      int64_t cols) {
    const std::string name = std::string(op) + " " + std::string(to_string(rule)) + " " +
                             std::string(to_string(rounding)) + " " + name_of(input) +
                             " rows=" + std::to_string(rows) + " cols=" + std::to_string(cols);
    QTest::newRow(name.c_str()) << rule << rounding << input << qint64(rows) << qint64(cols);
  }

  static uint32_t seed_of(const char* tag) { return static_cast<uint32_t>(qHash(QByteArray(tag))); }

 private slots:
  void initTestCase() { qInfo("gpu: %s", gpu::cuda_status().c_str()); }

  void quantize_data() {
    MXLENS_REQUIRE_CUDA();
    add_rows("quantize");
  }
  void quantize() {
    MXLENS_REQUIRE_CUDA();
    QFETCH(ScaleRule, rule);
    QFETCH(Rounding, rounding);
    QFETCH(Input, input);
    QFETCH(qint64, rows);
    QFETCH(qint64, cols);
    const QuantOptions options{rule, rounding};
    const std::vector<float> x = make_input(input, rows, cols, seed_of(QTest::currentDataTag()));
    const int64_t n_blocks = rows * cols / Mxfp4Block::kSize;

    std::vector<Mxfp4Block> ref(n_blocks);
    quantize_mxfp4_ref(x, ref, options);
    std::vector<Mxfp4Block> got(n_blocks);
    const TensorScale ts = gpu::cuda_quantize_mxfp4(x, rows, cols, got, options);
    QVERIFY(ts.scale_rule == rule);
    const int64_t block_mismatches =
        count_byte_mismatches(block_bytes(std::span<const Mxfp4Block>(got)),
                              block_bytes(std::span<const Mxfp4Block>(ref)), "ggml blocks");

    // Pairs layout: the reference's blocks converted by core/mx/packing.
    const PairsLayout ref_pairs =
        block_records_to_pairs(block_bytes(std::span<const Mxfp4Block>(ref)), Mxfp4Block::kSize);
    std::vector<uint8_t> packed(rows * cols / 2), scales(n_blocks);
    gpu::cuda_quantize_mxfp4_pairs(x, rows, cols, packed, scales, options);
    const int64_t packed_mismatches = count_byte_mismatches(packed, ref_pairs.packed, "pairs");
    const int64_t scale_mismatches = count_byte_mismatches(scales, ref_pairs.scales, "scales");
    qInfo("blocks %lld: ggml-layout mismatching bytes %lld, pairs %lld, scales %lld",
          static_cast<long long>(n_blocks), static_cast<long long>(block_mismatches),
          static_cast<long long>(packed_mismatches), static_cast<long long>(scale_mismatches));
    QCOMPARE(block_mismatches, int64_t{0});
    QCOMPARE(packed_mismatches, int64_t{0});
    QCOMPARE(scale_mismatches, int64_t{0});
  }

  void dequantize_data() {
    MXLENS_REQUIRE_CUDA();
    add_rows("dequantize");
    // Arbitrary stored bytes: all 256 scale bytes (0xFF = NaN) and all 16 codes (8 = -0).
    for (ScaleRule rule : {ScaleRule::ocp_floor, ScaleRule::fpquant, ScaleRule::rceil})
      add_row("dequantize", rule, Rounding::rne, Input::stored_bytes, 9, 32 * 37);
  }
  void dequantize() {
    MXLENS_REQUIRE_CUDA();
    QFETCH(ScaleRule, rule);
    QFETCH(Rounding, rounding);
    QFETCH(Input, input);
    QFETCH(qint64, rows);
    QFETCH(qint64, cols);
    const uint32_t seed = seed_of(QTest::currentDataTag());
    const int64_t n_blocks = rows * cols / Mxfp4Block::kSize;
    std::vector<Mxfp4Block> blocks(n_blocks);
    if (input == Input::stored_bytes) {
      blocks = make_stored_blocks(n_blocks, seed);
    } else {
      quantize_mxfp4_ref(make_input(input, rows, cols, seed), blocks, {rule, rounding});
    }
    const TensorScale ts{.scale_rule = rule};
    std::vector<float> ref(rows * cols), got(rows * cols), got_pairs(rows * cols);
    dequantize_mxfp4_ref(blocks, ts, ref);
    gpu::cuda_dequantize_mxfp4(blocks, ts, rows, cols, got);
    const PairsLayout pairs =
        block_records_to_pairs(block_bytes(std::span<const Mxfp4Block>(blocks)), Mxfp4Block::kSize);
    gpu::cuda_dequantize_mxfp4_pairs(pairs.packed, pairs.scales, ts, rows, cols, got_pairs);
    const int64_t mismatches = count_float_mismatches(got, ref, "dequantize ggml");
    const int64_t pair_mismatches = count_float_mismatches(got_pairs, ref, "dequantize pairs");
    qInfo("elements %lld: mismatching floats ggml layout %lld, pairs %lld",
          static_cast<long long>(rows * cols), static_cast<long long>(mismatches),
          static_cast<long long>(pair_mismatches));
    QCOMPARE(mismatches, int64_t{0});
    QCOMPARE(pair_mismatches, int64_t{0});
  }

  void fakeQuantize_data() {
    MXLENS_REQUIRE_CUDA();
    add_rows("fake_quantize");
  }
  void fakeQuantize() {
    MXLENS_REQUIRE_CUDA();
    QFETCH(ScaleRule, rule);
    QFETCH(Rounding, rounding);
    QFETCH(Input, input);
    QFETCH(qint64, rows);
    QFETCH(qint64, cols);
    const QuantOptions options{rule, rounding};
    const std::vector<float> x = make_input(input, rows, cols, seed_of(QTest::currentDataTag()));
    std::vector<float> ref = x;
    fake_quantize_mxfp4_ref(ref, options);
    std::vector<float> got(x.size());
    gpu::cuda_fake_quantize_mxfp4(x, rows, cols, got, options);
    const int64_t mismatches = count_float_mismatches(got, ref, "fake_quantize");
    qInfo("elements %lld: mismatching floats %lld", static_cast<long long>(x.size()),
          static_cast<long long>(mismatches));
    QCOMPARE(mismatches, int64_t{0});
  }

  // The comparison that guards parity must see a single flipped nibble and a single flipped
  // float bit (runs without a device: it checks the checker on reference output).
  void comparisonDetectsOneFlippedNibble() {
    const std::vector<float> x = make_input(Input::ties, 3, 64, 7);
    std::vector<Mxfp4Block> ref(6);
    quantize_mxfp4_ref(x, ref, {});
    std::vector<Mxfp4Block> flipped = ref;
    flipped[4].qs[9] ^= 0x10;
    QCOMPARE(count_byte_mismatches(block_bytes(std::span<const Mxfp4Block>(flipped)),
                                   block_bytes(std::span<const Mxfp4Block>(ref)), "negative"),
             int64_t{1});
    std::vector<float> deq(x.size());
    dequantize_mxfp4_ref(ref, {}, deq);
    std::vector<float> off = deq;
    off[17] = std::nextafter(off[17], INFINITY);
    off[40] = -off[40];  // a zero (if it is one) changes sign: still a different bit pattern
    QVERIFY(count_float_mismatches(off, deq, "negative") >= 1);
    QCOMPARE(count_float_mismatches(deq, deq, "self"), int64_t{0});
  }

  void badArgumentsThrow() {
    std::vector<float> x(33 * 2), out(33 * 2);
    std::vector<Mxfp4Block> blocks(2);
    const auto x64 = std::span<const float>(x).first(64);
    const auto out64 = std::span<float>(out).first(64);
    if (gpu::cuda_device_count() == 0) {
      // Without a device a valid call refuses with the same reason the skip shows.
      try {
        gpu::cuda_fake_quantize_mxfp4(x64, 2, 32, out64);
        QFAIL("expected mxlens::Error without a CUDA device");
      } catch (const Error& e) {
        qInfo("without a device: %s", e.what());
        QVERIFY(std::string(e.what()).find(gpu::cuda_unavailable_reason()) != std::string::npos);
      }
      QSKIP(skip_message().c_str());
    }
    QVERIFY_THROWS_EXCEPTION(Error, gpu::cuda_fake_quantize_mxfp4(x, 2, 33, out));
    QVERIFY_THROWS_EXCEPTION(Error, gpu::cuda_quantize_mxfp4(x, 1, 64, blocks));  // size 66
    QVERIFY_THROWS_EXCEPTION(Error, gpu::cuda_fake_quantize_mxfp4(
                                        x64, 2, 32, out64, {ScaleRule::dqv2_log8, Rounding::rne}));
    gpu::cuda_fake_quantize_mxfp4(x64, 2, 32, out64);  // the same call with valid options runs
    QVERIFY_THROWS_EXCEPTION(Error, gpu::cuda_device_info(gpu::cuda_device_count()));
  }
};

QTEST_GUILESS_MAIN(TestMxfp4Parity)
#include "test_mxfp4_parity.moc"
