// UTF-8 validation (first invalid byte offset), lossy repair as the HF decoders do it, and
// read_text_file's errors.
#include <QTemporaryDir>
#include <QtTest>

#include <fstream>

#include "core/text/unicode_util.h"
#include "core/text/utf8.h"
#include "core/util/error.h"

using namespace mxlens;

Q_DECLARE_METATYPE(std::string)

namespace {

constexpr int kValid = -1;  // expected offset for valid input

void write_file(const std::filesystem::path& p, const std::string& bytes) {
  std::ofstream out(p, std::ios::binary);
  out << bytes;
}

}  // namespace

class TestUtf8 : public QObject {
  Q_OBJECT
 private slots:
  void firstInvalid_data() {
    QTest::addColumn<std::string>("bytes");
    QTest::addColumn<int>("offset");
    QTest::newRow("empty") << std::string() << kValid;
    QTest::newRow("ascii") << std::string("Hello, world\n") << kValid;
    QTest::newRow("nul byte is valid") << std::string("a\0b", 3) << kValid;
    QTest::newRow("2-byte e-acute") << std::string("caf\xC3\xA9") << kValid;
    QTest::newRow("3-byte U+2581") << std::string("\xE2\x96\x81x") << kValid;
    QTest::newRow("3-byte U+FFFF") << std::string("\xEF\xBF\xBF") << kValid;
    QTest::newRow("4-byte emoji") << std::string("\xF0\x9F\x98\x80") << kValid;
    QTest::newRow("max U+10FFFF") << std::string("\xF4\x8F\xBF\xBF") << kValid;
    QTest::newRow("U+D7FF before surrogates") << std::string("\xED\x9F\xBF") << kValid;
    QTest::newRow("U+E000 after surrogates") << std::string("\xEE\x80\x80") << kValid;
    QTest::newRow("stray continuation") << std::string("ab\x80") << 2;
    QTest::newRow("overlong C0 80 (NUL)") << std::string("x\xC0\x80") << 1;
    QTest::newRow("overlong C1 BF") << std::string("\xC1\xBF") << 0;
    QTest::newRow("overlong E0 80 80") << std::string("\xE0\x80\x80") << 0;
    QTest::newRow("overlong E0 9F BF") << std::string("\xE0\x9F\xBF") << 0;
    QTest::newRow("overlong F0 80 80 80") << std::string("\xF0\x80\x80\x80") << 0;
    QTest::newRow("overlong F0 8F BF BF") << std::string("\xF0\x8F\xBF\xBF") << 0;
    QTest::newRow("surrogate D800") << std::string("ok\xED\xA0\x80") << 2;
    QTest::newRow("surrogate DFFF") << std::string("\xED\xBF\xBF") << 0;
    QTest::newRow("above U+10FFFF F4 90") << std::string("\xF4\x90\x80\x80") << 0;
    QTest::newRow("lead F5") << std::string("\xF5\x80\x80\x80") << 0;
    QTest::newRow("byte FF") << std::string("abc\xFF") << 3;
    QTest::newRow("truncated 2-byte at end") << std::string("ab\xC3") << 2;
    QTest::newRow("truncated 3-byte at end") << std::string("\xE2\x82") << 0;
    QTest::newRow("truncated 4-byte at end") << std::string("a\xF0\x9F\x98") << 1;
    QTest::newRow("truncated 3-byte mid text") << std::string("\xE2\x82z") << 0;
    QTest::newRow("bad second byte") << std::string("\xC3\x28") << 0;
    QTest::newRow("bad third byte") << std::string("aa\xE2\x82\x28") << 2;
    QTest::newRow("bad fourth byte") << std::string("\xF0\x9F\x98\x28") << 0;
    QTest::newRow("latin-1 text") << std::string("na\xEFve") << 2;
  }
  void firstInvalid() {
    QFETCH(std::string, bytes);
    QFETCH(int, offset);
    const auto bad = first_invalid_utf8(bytes);
    QCOMPARE(bad ? static_cast<int>(*bad) : kValid, offset);
    QCOMPARE(is_valid_utf8(bytes), offset == kValid);
  }

  void lossy_data() {
    // Expected outputs follow Rust's String::from_utf8_lossy (one U+FFFD per maximal
    // invalid subpart), which the HF ByteLevel decoder uses.
    QTest::addColumn<std::string>("bytes");
    QTest::addColumn<std::string>("expected");
    const std::string r = "\xEF\xBF\xBD";
    QTest::newRow("valid unchanged") << std::string("a\xC3\xA9z") << std::string("a\xC3\xA9z");
    QTest::newRow("truncated 4-byte is one") << std::string("\xF0\x9F\x98z") << r + "z";
    QTest::newRow("surrogate is three") << std::string("\xED\xA0\x80") << r + r + r;
    QTest::newRow("overlong C0 80 is two") << std::string("\xC0\x80") << r + r;
    QTest::newRow("stray continuations") << std::string("\x80\x80") << r + r;
    QTest::newRow("truncated at end") << std::string("ab\xE2\x82") << "ab" + r;
  }
  void lossy() {
    QFETCH(std::string, bytes);
    QFETCH(std::string, expected);
    QCOMPARE(QByteArray::fromStdString(text::utf8_lossy(bytes)),
             QByteArray::fromStdString(expected));
  }

  void readTextFileKeepsBytes() {
    QTemporaryDir dir;
    const auto p = std::filesystem::path(dir.path().toStdString()) / "crlf.txt";
    const std::string bytes = "line one\r\nline two\r\n\xE2\x96\x81";
    write_file(p, bytes);
    QCOMPARE(QByteArray::fromStdString(read_text_file(p)), QByteArray::fromStdString(bytes));
  }

  void readTextFileErrors_data() {
    QTest::addColumn<QString>("case_name");
    QTest::addColumn<QString>("expected_words");
    QTest::newRow("missing") << "missing"
                             << "no such file";
    QTest::newRow("empty") << "empty"
                           << "file is empty";
    QTest::newRow("invalid at 5") << "invalid"
                                  << "not valid UTF-8 at byte offset 5";
    QTest::newRow("directory") << "directory"
                               << "not a regular file";
  }
  void readTextFileErrors() {
    QFETCH(QString, case_name);
    QFETCH(QString, expected_words);
    QTemporaryDir dir;
    auto p = std::filesystem::path(dir.path().toStdString()) / "text.txt";
    if (case_name == "empty") write_file(p, "");
    if (case_name == "invalid") write_file(p, std::string("hello\xFFworld"));
    if (case_name == "directory") p = dir.path().toStdString();
    try {
      read_text_file(p);
      QFAIL("no Error thrown");
    } catch (const Error& e) {
      const QString msg = QString::fromUtf8(e.what());
      QVERIFY2(msg.contains(QString::fromStdString(p.string())), qPrintable(msg));
      QVERIFY2(msg.contains(expected_words), qPrintable(msg));
    }
  }
};

QTEST_GUILESS_MAIN(TestUtf8)
#include "test_utf8.moc"
