// safetensors reading (formats.md §1): the worked example, every rejection rule of §1.3 as
// its own row, the writer's output, and the 16-bit float conversions.
#include <QtTest>

#include <bit>
#include <cmath>
#include <cstring>
#include <fstream>

#include "core/io/float_convert.h"
#include "core/io/safetensors.h"
#include "core/io/safetensors_writer.h"
#include "core/util/error.h"

using namespace mxlens;

namespace {

constexpr int kCorruptionTrials = 3000;

// formats.md §1.4, byte for byte.
const unsigned char kWorkedExample[] = {
    0x38, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x7b, 0x22, 0x61, 0x22, 0x3a, 0x7b,
    0x22, 0x64, 0x74, 0x79, 0x70, 0x65, 0x22, 0x3a, 0x22, 0x46, 0x31, 0x36, 0x22, 0x2c,
    0x22, 0x73, 0x68, 0x61, 0x70, 0x65, 0x22, 0x3a, 0x5b, 0x32, 0x5d, 0x2c, 0x22, 0x64,
    0x61, 0x74, 0x61, 0x5f, 0x6f, 0x66, 0x66, 0x73, 0x65, 0x74, 0x73, 0x22, 0x3a, 0x5b,
    0x30, 0x2c, 0x34, 0x5d, 0x7d, 0x7d, 0x20, 0x20, 0x00, 0x3c, 0x00, 0xc0};

QByteArray u64_le(uint64_t n) {
  QByteArray b(8, '\0');
  for (int i = 0; i < 8; ++i) b[i] = static_cast<char>((n >> (8 * i)) & 0xFF);
  return b;
}

// A file with `header` as its JSON (length prefix computed) and `data_bytes` zero bytes after it.
QByteArray file_with(const QByteArray& header, int data_bytes) {
  return u64_le(header.size()) + header + QByteArray(data_bytes, '\0');
}

std::filesystem::path write_file(const QTemporaryDir& dir, const QByteArray& bytes,
                                 const QString& name = "model.safetensors") {
  const std::filesystem::path path = dir.filePath(name).toStdString();
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.constData(), bytes.size());
  return path;
}

std::vector<std::byte> as_bytes(const std::vector<uint16_t>& values) {
  std::vector<std::byte> b(values.size() * 2);
  std::memcpy(b.data(), values.data(), b.size());
  return b;
}

// Independent oracle for a finite F16 pattern: (-1)^s * m * 2^(e-25), subnormals e=1, m<1024.
double f16_value(uint16_t h) {
  const int e = (h >> 10) & 0x1F;
  const int m = h & 0x3FF;
  const double magnitude = std::ldexp(double(e ? m + 1024 : m), (e ? e : 1) - 25);
  return (h & 0x8000) ? -magnitude : magnitude;
}

}  // namespace

class TestSafetensors : public QObject {
  Q_OBJECT
 private slots:
  void workedExampleParses() {
    QTemporaryDir dir;
    const auto path = write_file(
        dir, QByteArray(reinterpret_cast<const char*>(kWorkedExample), sizeof kWorkedExample));
    const SafetensorsFile f = SafetensorsFile::open(path);
    QCOMPARE(f.file_size_bytes(), uint64_t(68));
    QCOMPARE(f.data_offset(), uint64_t(64));
    QCOMPARE(f.tensors().size(), size_t(1));
    const TensorInfo& t = f.tensors()[0];
    QCOMPARE(QString::fromStdString(t.name), QString("a"));
    QVERIFY(t.dtype == DType::F16);
    QVERIFY(t.shape == std::vector<uint64_t>{2});
    QCOMPARE(t.size_bytes(), uint64_t(4));
    float values[2];
    convert_to_f32(t.dtype, f.bytes(t), values, "a");
    QCOMPARE(values[0], 1.0f);
    QCOMPARE(values[1], -2.0f);
    QVERIFY(f.find("a") == &t);
    QVERIFY(f.find("b") == nullptr);
  }

  void writerReproducesWorkedExample() {
    QTemporaryDir dir;
    const std::filesystem::path path = dir.filePath("written.safetensors").toStdString();
    write_safetensors(path, {{{"a", DType::F16, {2}}, as_bytes({0x3C00, 0xC000})}});
    std::ifstream in(path, std::ios::binary);
    const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    QCOMPARE(QByteArray::fromStdString(bytes),
             QByteArray(reinterpret_cast<const char*>(kWorkedExample), sizeof kWorkedExample));
    QVERIFY(!std::filesystem::exists(path.string() + ".tmp"));
  }

  void writerRoundTripKeepsOrderMetadataAndBits() {
    QTemporaryDir dir;
    const std::filesystem::path path = dir.filePath("rt.safetensors").toStdString();
    // BF16 patterns: 1, -2, smallest subnormal, largest subnormal, +inf, -inf, NaN, -0.
    const std::vector<uint16_t> bf16 = {0x3F80, 0xC000, 0x0001, 0x007F,
                                        0x7F80, 0xFF80, 0x7FC0, 0x8000};
    std::vector<std::byte> f32(3 * 4);
    const float f32_values[3] = {0.5f, -1e-30f, 3.0e38f};
    std::memcpy(f32.data(), f32_values, f32.size());
    write_safetensors(path,
                      {{{"z.bf16", DType::BF16, {2, 4}}, as_bytes(bf16)},
                       {{"a.f32", DType::F32, {3}}, f32},
                       {{"scalar.u8", DType::U8, {}}, {std::byte{7}}},
                       {{"empty", DType::F32, {0, 5}}, {}}},
                      {{"format", "pt"}});
    const SafetensorsFile f = SafetensorsFile::open(path);
    QCOMPARE(f.data_offset() % 8, uint64_t(0));
    QCOMPARE(QString::fromStdString(f.metadata().at("format")), QString("pt"));
    QCOMPARE(f.tensors().size(), size_t(4));
    QCOMPARE(QString::fromStdString(f.tensors()[0].name), QString("z.bf16"));  // order kept
    const auto stored = f.bytes(*f.find("z.bf16"));
    QVERIFY(std::memcmp(stored.data(), bf16.data(), stored.size()) == 0);
    std::vector<float> decoded(8);
    convert_to_f32(DType::BF16, stored, decoded, "z.bf16");
    QCOMPARE(std::bit_cast<uint32_t>(decoded[2]), 0x00010000u);  // BF16 subnormal stays exact
    QVERIFY(std::isinf(decoded[4]) && decoded[4] > 0);
    QVERIFY(std::isnan(decoded[6]));
    QVERIFY(std::signbit(decoded[7]) && decoded[7] == 0.0f);
    QCOMPARE(f.find("scalar.u8")->numel(), uint64_t(1));
    QCOMPARE(f.find("empty")->size_bytes(), uint64_t(0));
  }

  void writerRejectsIncompleteTensors() {
    QTemporaryDir dir;
    const std::filesystem::path path = dir.filePath("partial.safetensors").toStdString();
    {
      SafetensorsWriter w(path, {{"a", DType::F32, {4}}, {"b", DType::F32, {1}}});
      w.write("a", std::vector<std::byte>(16));
      QVERIFY_THROWS_EXCEPTION(Error, w.write("a", std::vector<std::byte>(4)));  // a is done
      QVERIFY_THROWS_EXCEPTION(Error, w.finish());                               // b missing
    }
    QVERIFY(!std::filesystem::exists(path));  // nothing renamed into place
    for (const auto& entry : std::filesystem::directory_iterator(dir.path().toStdString()))
      QFAIL(qPrintable("leftover file " + QString::fromStdString(entry.path().string())));
  }

  void acceptsPaddingAndUnpaddedHeaders_data() {
    QTest::addColumn<QByteArray>("header");
    QTest::addColumn<int>("dataBytes");
    QTest::newRow("no tensors, {}") << QByteArray("{}") << 0;
    QTest::newRow("header with 200 trailing spaces")
        << QByteArray(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})") +
               QByteArray(200, ' ')
        << 4;
    QTest::newRow("header not padded to 8 (55 bytes)")
        << QByteArray(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}} )") << 4;
    QTest::newRow("metadata null") << QByteArray(R"({"__metadata__":null})") << 0;
    QTest::newRow("tensors listed out of offset order")
        << QByteArray(
               R"({"b":{"dtype":"U8","shape":[2],"data_offsets":[4,6]},"a":{"dtype":"I32","shape":[],"data_offsets":[0,4]}})")
        << 6;
    QTest::newRow("F4 with an even element count")
        << QByteArray(R"({"q":{"dtype":"F4","shape":[2,3],"data_offsets":[0,3]}})") << 3;
  }
  void acceptsPaddingAndUnpaddedHeaders() {
    QFETCH(QByteArray, header);
    QFETCH(int, dataBytes);
    QTemporaryDir dir;
    const auto path = write_file(dir, file_with(header, dataBytes));
    const SafetensorsFile f = SafetensorsFile::open(path);
    uint64_t total = 0;
    for (const TensorInfo& t : f.tensors()) total += t.size_bytes();
    QCOMPARE(total, uint64_t(dataBytes));
  }

  void alignmentIsReported() {
    QTemporaryDir dir;
    // 55-byte header: the F32 data starts at file offset 63, not a multiple of 4.
    const auto path =
        write_file(dir, file_with(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}} )", 4));
    const SafetensorsFile f = SafetensorsFile::open(path);
    QCOMPARE(f.data_offset(), uint64_t(63));
    QVERIFY(!f.is_aligned(f.tensors()[0]));
    QTemporaryDir dir2;
    const auto aligned = write_file(
        dir2, file_with(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}  )", 4));
    QVERIFY(SafetensorsFile::open(aligned).is_aligned(SafetensorsFile::open(aligned).tensors()[0]));
  }

  void rejectsBadFile_data() {
    QTest::addColumn<QByteArray>("bytes");
    QTest::addColumn<QString>("problem");
    const QByteArray a4 = R"("a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]})";
    auto json = [](const QByteArray& body) { return "{" + body + "}"; };

    QTest::newRow("empty file") << QByteArray() << "header too small";
    QTest::newRow("5-byte file") << QByteArray(5, '\0') << "header too small";
    QTest::newRow("header length 100000001")
        << u64_le(100000001) + QByteArray(16, ' ') << "header too large";
    QTest::newRow("header length beyond the file")
        << u64_le(64) + QByteArray("{}") << "invalid header length";
    QTest::newRow("header not UTF-8")
        << file_with("{\"\xC3\x28\":{}}", 0) << "not valid UTF-8 (byte 2";
    QTest::newRow("header overlong UTF-8")
        << file_with("{\"\xC0\xAF\":{}}", 0) << "not valid UTF-8";
    QTest::newRow("header not JSON") << file_with("{\"a\":", 0) << "not valid JSON";
    QTest::newRow("header not starting with {") << file_with("[]", 0) << "does not start with '{'";
    QTest::newRow("trailing garbage after JSON") << file_with("{} x", 0) << "not valid JSON";
    QTest::newRow("tensor entry not an object")
        << file_with(R"({"a":[1,2]})", 0) << "tensor 'a': entry must be a JSON object";
    QTest::newRow("dtype not a string")
        << file_with(R"({"a":{"dtype":3,"shape":[1],"data_offsets":[0,4]}})", 4)
        << "tensor 'a': dtype must be a string";
    QTest::newRow("shape entry negative")
        << file_with(R"({"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", 4)
        << "tensor 'a': shape entry must be a non-negative integer";
    QTest::newRow("shape entry fractional")
        << file_with(R"({"a":{"dtype":"F32","shape":[1.5],"data_offsets":[0,4]}})", 4)
        << "tensor 'a': shape entry must be a non-negative integer";
    QTest::newRow("data_offsets with three entries")
        << file_with(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4,8]}})", 4)
        << "tensor 'a': data_offsets must be an array [begin, end]";
    QTest::newRow("missing data_offsets") << file_with(R"({"a":{"dtype":"F32","shape":[1]}})", 0)
                                          << "tensor 'a': missing field 'data_offsets'";
    QTest::newRow("unexpected field")
        << file_with(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"x":1}})", 4)
        << "tensor 'a': unexpected field 'x'";
    QTest::newRow("unknown dtype F12")
        << file_with(R"({"a":{"dtype":"F12","shape":[1],"data_offsets":[0,4]}})", 4)
        << "tensor 'a': unknown dtype 'F12'";
    QTest::newRow("first tensor not at offset 0")
        << file_with(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", 8)
        << "invalid offset for tensor 'a': begins at 4 but the previous tensor ends at 0 (gap)";
    QTest::newRow("offsets overlapping")
        << file_with(json(a4 + R"(,"b":{"dtype":"F32","shape":[1],"data_offsets":[2,6]})"), 6)
        << "invalid offset for tensor 'b': begins at 2 but the previous tensor ends at 4 (overlap)";
    QTest::newRow("offsets with a gap (out of order)")
        << file_with(json(R"("b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]},)" + a4), 12)
        << "invalid offset for tensor 'b': begins at 8 but the previous tensor ends at 4 (gap)";
    QTest::newRow("end before begin")
        << file_with(json(a4 + R"(,"b":{"dtype":"F32","shape":[0],"data_offsets":[4,2]})"), 4)
        << "invalid offset for tensor 'b': end 2 is before begin 4";
    QTest::newRow("offsets past the end of the file")
        << file_with(R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", 8)
        << "file is truncated: tensor data needs 16 bytes after the header but the file has 8";
    QTest::newRow("shape x dtype != byte length")
        << file_with(R"({"a":{"dtype":"BF16","shape":[3],"data_offsets":[0,8]}})", 8)
        << "invalid info for tensor 'a': shape [3] of BF16 needs 6 bytes but data_offsets span 8";
    QTest::newRow("shape element count overflows")
        << file_with(
               R"({"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,4]}})", 4)
        << "tensor 'a': shape element count overflows";
    QTest::newRow("shape bit count overflows")
        << file_with(R"({"a":{"dtype":"F64","shape":[4611686018427387904],"data_offsets":[0,4]}})",
                     4)
        << "tensor 'a': shape bit count overflows";
    QTest::newRow("F4 with an odd element count")
        << file_with(R"({"a":{"dtype":"F4","shape":[3],"data_offsets":[0,2]}})", 2)
        << "tensor 'a': 3 elements of F4 are not a whole number of bytes";
    QTest::newRow("duplicate tensor key")
        << file_with(json(a4 + "," + a4), 4) << "duplicate key 'a' in header";
    QTest::newRow("duplicate field inside a tensor")
        << file_with(R"({"a":{"dtype":"F32","dtype":"F32","shape":[1],"data_offsets":[0,4]}})", 4)
        << "duplicate key 'dtype' in entry 'a'";
    QTest::newRow("metadata value not a string")
        << file_with(R"({"__metadata__":{"format":"pt","n":3}})", 0)
        << "__metadata__ value of 'n' is not a string";
    QTest::newRow("metadata nested object") << file_with(R"({"__metadata__":{"x":{"y":"z"}}})", 0)
                                            << "__metadata__ value of 'x' is not a string";
    QTest::newRow("metadata not an object")
        << file_with(R"({"__metadata__":"pt"})", 0) << "__metadata__ must be an object of strings";
    QTest::newRow("trailing bytes after the last tensor")
        << file_with(json(a4), 5)
        << "trailing bytes: tensor data ends at 4 bytes after the header but the file has 5";
  }
  void rejectsBadFile() {
    QFETCH(QByteArray, bytes);
    QFETCH(QString, problem);
    QTemporaryDir dir;
    const auto path = write_file(dir, bytes);
    try {
      SafetensorsFile::open(path);
      QFAIL("no Error thrown");
    } catch (const Error& e) {
      const QString message = QString::fromStdString(e.what());
      qInfo().noquote() << message;
      QCOMPARE(QString::fromStdString(e.source()), QString::fromStdString(path.string()));
      QVERIFY2(message.startsWith(QString::fromStdString(path.string()) + ": "),
               qPrintable(message));
      QVERIFY2(message.contains(problem), qPrintable(message + "\n  wanted: " + problem));
    }
  }

  void missingFileNamesThePath() {
    QTemporaryDir dir;
    const std::filesystem::path path = dir.filePath("absent.safetensors").toStdString();
    try {
      SafetensorsFile::open(path);
      QFAIL("no Error thrown");
    } catch (const Error& e) {
      QCOMPARE(QString::fromStdString(e.source()), QString::fromStdString(path.string()));
      QVERIFY(QString(e.what()).contains("cannot open file"));
    }
  }

  // Deterministic corruption of a valid file: every outcome is a parsed file or an
  // mxlens::Error, never a crash or another exception type (run under ASan in CI).
  void randomCorruptionsThrowErrorOrParse() {
    QTemporaryDir dir;
    const std::filesystem::path valid = dir.filePath("valid.safetensors").toStdString();
    write_safetensors(valid,
                      {{{"w", DType::BF16, {4, 3}}, std::vector<std::byte>(24, std::byte{0x3F})},
                       {{"b", DType::F32, {3}}, std::vector<std::byte>(12)},
                       {{"n", DType::U8, {5}}, std::vector<std::byte>(5)}},
                      {{"format", "pt"}});
    std::ifstream in(valid, std::ios::binary);
    const QByteArray original = QByteArray::fromStdString(
        std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>()));
    uint64_t state = 0x9E3779B97F4A7C15ull;
    auto next = [&] {
      state ^= state << 13, state ^= state >> 7, state ^= state << 17;
      return state;
    };
    const char alphabet[] = "{}[]\":,0123456789-.e ABFUIL_x\xff\x00";
    int parsed = 0, rejected = 0;
    for (int trial = 0; trial < kCorruptionTrials; ++trial) {
      QByteArray bytes = original;
      const int edits = 1 + int(next() % 3);
      for (int e = 0; e < edits; ++e) {
        const uint64_t kind = next() % 4;
        const int at = int(next() % uint64_t(bytes.size()));
        if (kind == 0)
          bytes[at] = char(next() & 0xFF);
        else if (kind == 1)
          bytes[at] = alphabet[next() % (sizeof alphabet - 1)];
        else if (kind == 2)
          bytes.truncate(at);
        else
          bytes.insert(at, alphabet[next() % (sizeof alphabet - 1)]);
        if (bytes.isEmpty()) break;
      }
      // A fresh name per trial: truncating and rewriting one file makes ext4 flush it.
      const auto path = write_file(dir, bytes, QString("trial%1.safetensors").arg(trial));
      try {
        const SafetensorsFile f = SafetensorsFile::open(path);
        for (const TensorInfo& t : f.tensors()) {
          if (t.dtype != DType::F32 && t.dtype != DType::BF16 && t.dtype != DType::F16) continue;
          std::vector<float> out(t.numel());
          convert_to_f32(t.dtype, f.bytes(t), out, t.name);
        }
        ++parsed;
      } catch (const Error&) {
        ++rejected;
      }
      std::filesystem::remove(path);
    }
    qInfo("%d corrupted files: %d parsed, %d rejected with mxlens::Error", kCorruptionTrials,
          parsed, rejected);
    QCOMPARE(parsed + rejected, kCorruptionTrials);
    QVERIFY(rejected > kCorruptionTrials / 2);
  }

  // Every F16 pattern: the fast path equals the scalar reference bit for bit, and every
  // finite pattern equals the independent (-1)^s * m * 2^(e-25) formula.
  void f16ToF32AllPatterns() {
    std::vector<uint16_t> all(65536);
    for (uint32_t h = 0; h < 65536; ++h) all[h] = static_cast<uint16_t>(h);
    std::vector<float> fast(all.size());
    convert_to_f32(DType::F16, as_bytes(all), fast, "all");
    int mismatches = 0, nans = 0, infs = 0, subnormals = 0;
    for (uint32_t h = 0; h < 65536; ++h) {
      const float ref = f16_to_f32_ref(static_cast<uint16_t>(h));
      const bool exponent_all_ones = ((h >> 10) & 0x1F) == 0x1F;
      if (exponent_all_ones) {
        if (h & 0x3FF) {
          nans += std::isnan(ref) && std::isnan(fast[h]);
        } else {
          infs += std::isinf(ref) && std::isinf(fast[h]) && (std::signbit(ref) == bool(h & 0x8000));
        }
        continue;
      }
      if (((h >> 10) & 0x1F) == 0 && (h & 0x3FF)) ++subnormals;
      const bool same_ref = std::bit_cast<uint32_t>(ref) == std::bit_cast<uint32_t>(fast[h]);
      const bool same_formula = double(ref) == f16_value(static_cast<uint16_t>(h)) &&
                                std::signbit(ref) == bool(h & 0x8000);
      mismatches += !(same_ref && same_formula);
    }
    qInfo("F16: %d mismatches, %d NaN, %d inf, %d subnormal patterns checked", mismatches, nans,
          infs, subnormals);
    QCOMPARE(mismatches, 0);
    QCOMPARE(nans, 2 * 1023);
    QCOMPARE(infs, 2);
    QCOMPARE(subnormals, 2 * 1023);
  }

  void f16KnownValues_data() {
    QTest::addColumn<int>("bits");
    QTest::addColumn<double>("value");
    QTest::newRow("0x0001 smallest subnormal 2^-24") << 0x0001 << std::ldexp(1.0, -24);
    QTest::newRow("0x03FF largest subnormal") << 0x03FF << 1023 * std::ldexp(1.0, -24);
    QTest::newRow("0x0400 smallest normal 2^-14") << 0x0400 << std::ldexp(1.0, -14);
    QTest::newRow("0x7BFF largest finite 65504") << 0x7BFF << 65504.0;
    QTest::newRow("0x3C00 one") << 0x3C00 << 1.0;
    QTest::newRow("0xC000 minus two") << 0xC000 << -2.0;
    QTest::newRow("0x3555 0.333251953125") << 0x3555 << 0.333251953125;
    QTest::newRow("0x8001 negative subnormal") << 0x8001 << -std::ldexp(1.0, -24);
  }
  void f16KnownValues() {
    QFETCH(int, bits);
    QFETCH(double, value);
    QCOMPARE(double(f16_to_f32_ref(static_cast<uint16_t>(bits))), value);
    QCOMPARE(int(f32_to_f16(static_cast<float>(value))), bits);
  }

  void f32ToF16RoundsToNearestEven_data() {
    QTest::addColumn<float>("input");
    QTest::addColumn<int>("bits");
    QTest::newRow("1+2^-11 tie goes to even 1.0") << float(1 + std::ldexp(1.0, -11)) << 0x3C00;
    QTest::newRow("1+3*2^-11 tie goes to even 0x3C02")
        << float(1 + 3 * std::ldexp(1.0, -11)) << 0x3C02;
    QTest::newRow("1+2^-11+2^-20 rounds up")
        << float(1 + std::ldexp(1.0, -11) + std::ldexp(1.0, -20)) << 0x3C01;
    QTest::newRow("65519 rounds to 65504") << 65519.0f << 0x7BFF;
    QTest::newRow("65520 rounds to inf") << 65520.0f << 0x7C00;
    QTest::newRow("2^-25 subnormal tie goes to zero") << float(std::ldexp(1.0, -25)) << 0x0000;
    QTest::newRow("3*2^-25 subnormal tie goes to 2") << float(3 * std::ldexp(1.0, -25)) << 0x0002;
    QTest::newRow("-1e-10 underflows to -0") << -1e-10f << 0x8000;
    QTest::newRow("largest subnormal rounds into smallest normal")
        << float(std::ldexp(1.0, -14) - std::ldexp(1.0, -26)) << 0x0400;
    QTest::newRow("-inf") << -INFINITY << 0xFC00;
  }
  void f32ToF16RoundsToNearestEven() {
    QFETCH(float, input);
    QFETCH(int, bits);
    QCOMPARE(int(f32_to_f16(input)), bits);
  }

  void f16RoundTripsEveryFinitePattern() {
    int mismatches = 0;
    for (uint32_t h = 0; h < 65536; ++h) {
      if (((h >> 10) & 0x1F) == 0x1F) continue;
      mismatches += f32_to_f16(f16_to_f32_ref(static_cast<uint16_t>(h))) != h;
    }
    QCOMPARE(mismatches, 0);
    QVERIFY(std::isnan(f16_to_f32_ref(f32_to_f16(NAN))));
  }

  void bf16Conversions_data() {
    QTest::addColumn<float>("input");
    QTest::addColumn<int>("bits");
    QTest::newRow("one") << 1.0f << 0x3F80;
    QTest::newRow("1+2^-8 tie goes to even 1.0") << float(1 + std::ldexp(1.0, -8)) << 0x3F80;
    QTest::newRow("1+3*2^-8 tie goes to even 0x3F82")
        << float(1 + 3 * std::ldexp(1.0, -8)) << 0x3F82;
    QTest::newRow("smallest subnormal 2^-133") << float(std::ldexp(1.0, -133)) << 0x0001;
    QTest::newRow("FLT_MAX rounds to inf") << 3.4028235e38f << 0x7F80;
    QTest::newRow("-0") << -0.0f << 0x8000;
  }
  void bf16Conversions() {
    QFETCH(float, input);
    QFETCH(int, bits);
    QCOMPARE(int(f32_to_bf16(input)), bits);
  }

  void bf16BulkEqualsShiftAtAnyAlignment() {
    std::vector<uint16_t> all(65536);
    for (uint32_t h = 0; h < 65536; ++h) all[h] = static_cast<uint16_t>(h);
    const std::vector<std::byte> bytes = as_bytes(all);
    std::vector<std::byte> shifted(bytes.size() + 1);  // source starting at an odd address
    std::memcpy(shifted.data() + 1, bytes.data(), bytes.size());
    std::vector<float> out(all.size());
    convert_to_f32(DType::BF16, std::span(shifted).subspan(1), out, "all");
    int mismatches = 0;
    for (uint32_t h = 0; h < 65536; ++h) mismatches += std::bit_cast<uint32_t>(out[h]) != (h << 16);
    QCOMPARE(mismatches, 0);
    std::vector<float> f16_out(all.size());
    convert_to_f32(DType::F16, std::span(shifted).subspan(1), f16_out, "all");
    QCOMPARE(f16_out[0x3C00], 1.0f);
  }

  void convertRejectsOtherDtypesAndSizes() {
    std::vector<std::byte> bytes(8);
    std::vector<float> out(2);
    QVERIFY_THROWS_EXCEPTION(Error, convert_to_f32(DType::I32, bytes, out, "t"));
    std::vector<float> wrong(3);
    QVERIFY_THROWS_EXCEPTION(Error, convert_to_f32(DType::F32, bytes, wrong, "t"));
  }
};

QTEST_GUILESS_MAIN(TestSafetensors)
#include "test_safetensors.moc"
