// Tokenizer: ids must equal the Hugging Face `tokenizers` library's for the real files.
// Golden data: tokenizer_golden.h (HF tokenizers 0.23.2 via scripts/golden_tokenizer_ids.mjs).
#include <QCryptographicHash>
#include <QTemporaryDir>
#include <QtTest>

#include <fstream>
#include <map>
#include <thread>

#include <nlohmann/json.hpp>

#include "core/text/tokenizer.h"
#include "core/text/utf8.h"
#include "core/util/error.h"
#include "tests/core/tokenizer_golden.h"
#include "tests/test_data.h"

using namespace mxlens;
namespace golden = mxlens::test::tokenizer_golden;

Q_DECLARE_METATYPE(std::vector<int32_t>)
Q_DECLARE_METATYPE(std::string)

namespace {

// From the data README (counted there with the HF library, no BOS).
constexpr int kWiki656kTokens = 554431;
constexpr int kWiki656kUnk = 14463;
constexpr int kStories656kTokens = 193345;
constexpr int kStories656kUnk = 233;
constexpr std::size_t kShownIds = 32;  // ids compared literally at each end of a whole file

std::filesystem::path tokenizer_path(const std::string& name) {
  if (name == "656k") return test::model_656k() / "tokenizer.json";
  if (name == "llama3") return test::data_dir() / "tokenizers" / "llama3" / "tokenizer.json";
  if (name == "spm32k") return test::data_dir() / "tokenizers" / "spm-bpe-32k" / "tokenizer.json";
  throw std::runtime_error("unknown tokenizer " + name);
}

std::filesystem::path text_path(const std::string& name) {
  if (name == "wiki") return test::wiki_test();
  if (name == "stories") return test::data_dir() / "tinystories-text" / "stories.txt";
  throw std::runtime_error("unknown text " + name);
}

// Loaded once per process: the llama3 file takes a moment to parse.
const Tokenizer& cached(const std::string& name) {
  static std::map<std::string, Tokenizer> loaded;
  auto it = loaded.find(name);
  if (it == loaded.end()) it = loaded.emplace(name, Tokenizer::load(tokenizer_path(name))).first;
  return it->second;
}

QString sha256_le(const std::vector<int32_t>& ids) {
  QByteArray bytes;
  bytes.reserve(static_cast<qsizetype>(ids.size() * 4));
  for (int32_t id : ids) {
    const auto u = static_cast<uint32_t>(id);
    for (int k = 0; k < 4; ++k) bytes.append(static_cast<char>((u >> (8 * k)) & 0xFF));
  }
  return QString::fromLatin1(QCryptographicHash::hash(bytes, QCryptographicHash::Sha256).toHex());
}

QString show(const std::vector<int32_t>& ids) {
  QStringList parts;
  for (int32_t id : ids) parts << QString::number(id);
  return "[" + parts.join(",") + "]";
}

// Index of the first difference, or -1.
long first_difference(const std::vector<int32_t>& a, const std::vector<int32_t>& b) {
  const std::size_t n = std::min(a.size(), b.size());
  for (std::size_t k = 0; k < n; ++k)
    if (a[k] != b[k]) return static_cast<long>(k);
  return a.size() == b.size() ? -1 : static_cast<long>(n);
}

nlohmann::json read_json(const std::filesystem::path& p) {
  // Parsed once per file: several variants start from the same 9 MB llama3 file.
  static std::map<std::filesystem::path, nlohmann::json> parsed;
  auto it = parsed.find(p);
  if (it == parsed.end()) {
    std::ifstream in(p);
    it = parsed.emplace(p, nlohmann::json::parse(in)).first;
  }
  return it->second;
}

// Variants of the real files that exercise components the three files do not use. The HF
// library's ids for them are in golden::kVariants (built the same way in the generator).
nlohmann::json make_variant(const std::string& name) {
  using nlohmann::json;
  const auto starts = [&](const char* p) { return name.rfind(p, 0) == 0; };
  if (starts("spm_metaspace_")) {
    json j = read_json(tokenizer_path("spm32k"));
    const std::string rest = name.substr(std::string("spm_metaspace_").size());
    const std::string scheme = rest.substr(0, rest.find('_'));
    const bool split = rest.substr(rest.find('_') + 1) == "true";
    j["normalizer"] = nullptr;
    j["pre_tokenizer"] = {{"type", "Metaspace"},
                          {"replacement", "\u2581"},
                          {"prepend_scheme", scheme},
                          {"split", split}};
    j["decoder"] = j["pre_tokenizer"];
    return j;
  }
  if (name == "l3_gpt2") {
    json j = read_json(tokenizer_path("llama3"));
    j["pre_tokenizer"] = {{"type", "ByteLevel"},
                          {"add_prefix_space", true},
                          {"trim_offsets", true},
                          {"use_regex", true}};
    return j;
  }
  if (starts("l3_split_")) {
    json j = read_json(tokenizer_path("llama3"));
    const std::string rest = name.substr(std::string("l3_split_").size());
    const std::string behavior = rest.substr(0, rest.find('_'));
    const bool invert = rest.substr(rest.find('_') + 1) == "true";
    j["pre_tokenizer"] = {{"type", "Sequence"},
                          {"pretokenizers", json::array({{{"type", "Split"},
                                                          {"pattern", {{"String", " "}}},
                                                          {"behavior", behavior},
                                                          {"invert", invert}},
                                                         {{"type", "Split"},
                                                          {"pattern", {{"Regex", "\\p{N}"}}},
                                                          {"behavior", behavior},
                                                          {"invert", invert}},
                                                         {{"type", "ByteLevel"},
                                                          {"add_prefix_space", false},
                                                          {"trim_offsets", true},
                                                          {"use_regex", false}}})}};
    return j;
  }
  if (name == "l3_norm") {
    json j = read_json(tokenizer_path("llama3"));
    j["normalizer"] = {
        {"type", "Sequence"},
        {"normalizers",
         json::array(
             {{{"type", "Strip"}, {"strip_left", true}, {"strip_right", true}},
              {{"type", "Replace"}, {"pattern", {{"Regex", " {2,}"}}}, {"content", " "}}})}};
    return j;
  }
  if (name == "s656_added") {
    json j = read_json(tokenizer_path("656k"));
    for (auto& t : j["added_tokens"]) {
      if (t["content"] == "<|end_story|>")
        t["lstrip"] = t["rstrip"] = true, t["normalized"] = false;
      if (t["content"] == "<|start_story|>") t["single_word"] = true, t["normalized"] = false;
    }
    j["added_tokens"].push_back({{"id", 2048},
                                 {"content", "girl"},
                                 {"single_word", true},
                                 {"lstrip", false},
                                 {"rstrip", false},
                                 {"normalized", true},
                                 {"special", false}});
    j["added_tokens"].push_back({{"id", 2049},
                                 {"content", " lily"},
                                 {"single_word", false},
                                 {"lstrip", false},
                                 {"rstrip", false},
                                 {"normalized", false},
                                 {"special", true}});
    return j;
  }
  if (name == "spm_pairs") {
    json j = read_json(tokenizer_path("spm32k"));
    for (auto& m : j["model"]["merges"]) {
      const std::string s = m;
      m = json::array({s.substr(0, s.find(' ')), s.substr(s.find(' ') + 1)});
    }
    return j;
  }
  if (name == "s656_nofuse") {
    json j = read_json(tokenizer_path("656k"));
    j["model"]["fuse_unk"] = false;
    return j;
  }
  if (name == "l3_noignore") {
    json j = read_json(tokenizer_path("llama3"));
    j["model"]["ignore_merges"] = false;
    return j;
  }
  if (name == "l3_template") {
    json j = read_json(tokenizer_path("llama3"));
    const json bos = {{"SpecialToken", {{"id", "<|begin_of_text|>"}, {"type_id", 0}}}};
    const json eos = {{"SpecialToken", {{"id", "<|end_of_text|>"}, {"type_id", 0}}}};
    const json a = {{"Sequence", {{"id", "A"}, {"type_id", 0}}}};
    j["post_processor"] = {
        {"type", "Sequence"},
        {"processors", json::array({{{"type", "ByteLevel"},
                                     {"add_prefix_space", true},
                                     {"trim_offsets", false},
                                     {"use_regex", true}},
                                    {{"type", "TemplateProcessing"},
                                     {"single", json::array({bos, a, eos})},
                                     {"pair", json::array({a})},
                                     {"special_tokens",
                                      {{"<|begin_of_text|>",
                                        {{"id", "<|begin_of_text|>"},
                                         {"ids", {128000}},
                                         {"tokens", {"<|begin_of_text|>"}}}},
                                       {"<|end_of_text|>",
                                        {{"id", "<|end_of_text|>"},
                                         {"ids", {128001}},
                                         {"tokens", {"<|end_of_text|>"}}}}}}}})}};
    return j;
  }
  throw std::runtime_error("unknown variant " + name);
}

void write_file(const std::filesystem::path& p, const std::string& bytes) {
  std::ofstream out(p, std::ios::binary);
  out << bytes;
}

}  // namespace

class TestTokenizer : public QObject {
  Q_OBJECT
 private slots:
  void knownIds_data() {
    QTest::addColumn<QString>("tokenizer");
    QTest::addColumn<std::string>("text");
    QTest::addColumn<std::vector<int32_t>>("expected");
    // Data README / formats.md examples, checked against the HF library.
    QTest::newRow("656k once-upon-a-time")
        << "656k" << std::string("Once upon a time, there was a little girl.")
        << std::vector<int32_t>{1, 80, 147, 201, 282, 215, 286, 1890, 10};
    QTest::newRow("spm32k hello-world")
        << "spm32k" << std::string("Hello world") << std::vector<int32_t>{1, 22557, 1526};
    // The README lists [128000, 9906, 1917], but this tokenizer.json's post-processor is a
    // bare ByteLevel (offsets only), so the HF library adds no BOS: [9906, 1917].
    QTest::newRow("llama3 hello-world (no BOS from this file)")
        << "llama3" << std::string("Hello world") << std::vector<int32_t>{9906, 1917};
  }
  void knownIds() {
    QFETCH(QString, tokenizer);
    QFETCH(std::string, text);
    QFETCH(std::vector<int32_t>, expected);
    const auto ids = cached(tokenizer.toStdString()).encode(text);
    QCOMPARE(show(ids), show(expected));
  }

  void properties_data() {
    QTest::addColumn<QString>("tokenizer");
    QTest::addColumn<int>("vocab_size");
    QTest::addColumn<int>("bos");  // -1: none
    QTest::addColumn<int>("unk");  // -1: none
    QTest::addColumn<bool>("lossless");
    QTest::newRow("656k") << "656k" << 2048 << 1 << 0 << false;
    QTest::newRow("llama3") << "llama3" << 128256 << -1 << -1 << true;
    QTest::newRow("spm32k") << "spm32k" << 32000 << 1 << 0 << true;
  }
  void properties() {
    QFETCH(QString, tokenizer);
    QFETCH(int, vocab_size);
    QFETCH(int, bos);
    QFETCH(int, unk);
    QFETCH(bool, lossless);
    const Tokenizer& t = cached(tokenizer.toStdString());
    QCOMPARE(t.vocab_size(), vocab_size);
    QCOMPARE(t.bos_id().value_or(-1), bos);
    QCOMPARE(t.unk_id().value_or(-1), unk);
    QCOMPARE(t.is_lossless(), lossless);
    if (bos >= 0) QVERIFY(t.is_special(bos));
    QVERIFY(t.token(vocab_size).empty());
    QVERIFY(t.token(-1).empty());
    // Every id's piece maps back to that id (no holes in these three files).
    for (int id = 0; id < vocab_size; ++id) QCOMPARE(t.token_to_id(t.token(id)).value_or(-1), id);
  }

  void llama3Pieces() {
    const Tokenizer& t = cached("llama3");
    QCOMPARE(QString::fromStdString(std::string(t.token(128000))), QString("<|begin_of_text|>"));
    QCOMPARE(t.token_to_id("<|eot_id|>").value_or(-1), 128009);
    QCOMPARE(QString::fromStdString(std::string(t.token(1917))), QString::fromUtf8("\u0120world"));
  }

  void wholeFile_data() {
    QTest::addColumn<QString>("tokenizer");
    QTest::addColumn<QString>("file");
    QTest::addColumn<bool>("special");
    QTest::addColumn<int>("count");
    QTest::addColumn<QString>("sha256");
    QTest::addColumn<std::vector<int32_t>>("first");
    QTest::addColumn<std::vector<int32_t>>("last");
    for (const auto& r : golden::kWholeFile) {
      const QString name =
          QString("%1 %2 %3").arg(r.tokenizer, r.file, r.special ? "with-special" : "no-special");
      QTest::newRow(name.toUtf8().constData())
          << QString(r.tokenizer) << QString(r.file) << r.special << r.count << QString(r.sha256)
          << r.first << r.last;
    }
  }
  void wholeFile() {
    QFETCH(QString, tokenizer);
    QFETCH(QString, file);
    QFETCH(bool, special);
    QFETCH(int, count);
    QFETCH(QString, sha256);
    QFETCH(std::vector<int32_t>, first);
    QFETCH(std::vector<int32_t>, last);
    const std::string text = read_text_file(text_path(file.toStdString()));
    const auto ids = cached(tokenizer.toStdString()).encode(text, special);
    const std::size_t n = std::min(kShownIds, ids.size());
    const std::vector<int32_t> head(ids.begin(), ids.begin() + static_cast<long>(n));
    const std::vector<int32_t> tail(ids.end() - static_cast<long>(n), ids.end());
    if (long d = first_difference(head, first); d >= 0) qInfo() << "first ids differ at" << d;
    QCOMPARE(show(head), show(first));
    QCOMPARE(show(tail), show(last));
    QCOMPARE(static_cast<int>(ids.size()), count);
    const QString digest = sha256_le(ids);
    qInfo() << tokenizer << file << "tokens" << ids.size() << "sha256" << digest;
    QCOMPARE(digest, sha256);

    // Round trip on the same ids: exact where the tokenizer is lossless; 656K maps unknown
    // characters to <unk>, so there it must differ (the negative check).
    const Tokenizer& t = cached(tokenizer.toStdString());
    const bool round_trips = t.decode(ids, /*skip_special_tokens=*/true) == text;
    qInfo() << "decode(encode(text)) == text:" << round_trips;
    QCOMPARE(round_trips, t.is_lossless());
  }

  void digestDetectsOneChangedId() {
    std::vector<int32_t> ids = {1, 80, 147, 201};
    const QString before = sha256_le(ids);
    ids[2] = 148;
    QVERIFY(sha256_le(ids) != before);
    ids[2] = 147;
    QCOMPARE(sha256_le(ids), before);
  }

  void unknownCount656k_data() {
    QTest::addColumn<QString>("file");
    QTest::addColumn<int>("tokens");
    QTest::addColumn<int>("unknowns");
    QTest::newRow("wiki") << "wiki" << kWiki656kTokens << kWiki656kUnk;
    QTest::newRow("stories") << "stories" << kStories656kTokens << kStories656kUnk;
  }
  void unknownCount656k() {
    QFETCH(QString, file);
    QFETCH(int, tokens);
    QFETCH(int, unknowns);
    const Tokenizer& t = cached("656k");
    const auto ids = t.encode(read_text_file(text_path(file.toStdString())), false);
    const auto unk = std::count(ids.begin(), ids.end(), *t.unk_id());
    qInfo() << file << "tokens" << ids.size() << "unk" << unk;
    QCOMPARE(static_cast<int>(ids.size()), tokens);
    QCOMPARE(static_cast<int>(unk), unknowns);
  }

  void edgeCases_data() {
    QTest::addColumn<QString>("tokenizer");
    QTest::addColumn<std::string>("text");
    QTest::addColumn<std::vector<int32_t>>("ids");
    QTest::addColumn<std::vector<int32_t>>("ids_no_special");
    QTest::addColumn<std::string>("decoded");
    QTest::addColumn<std::string>("decoded_skip_special");
    for (const auto& r : golden::kEdge) {
      const QString name = QString("%1 #%2 %3")
                               .arg(r.tokenizer)
                               .arg(r.index)
                               .arg(QString::fromStdString(r.text).left(24).simplified());
      QTest::newRow(name.toUtf8().constData())
          << QString(r.tokenizer) << r.text << r.ids << r.ids_no_special << r.decoded
          << r.decoded_skip_special;
    }
  }
  void edgeCases() { check_edge(false); }

  void variants_data() {
    QTest::addColumn<QString>("tokenizer");
    QTest::addColumn<std::string>("text");
    QTest::addColumn<std::vector<int32_t>>("ids");
    QTest::addColumn<std::vector<int32_t>>("ids_no_special");
    QTest::addColumn<std::string>("decoded");
    QTest::addColumn<std::string>("decoded_skip_special");
    for (const auto& r : golden::kVariants) {
      const QString name = QString("%1 #%2 %3")
                               .arg(r.tokenizer)
                               .arg(r.index)
                               .arg(QString::fromStdString(r.text).left(24).simplified());
      QTest::newRow(name.toUtf8().constData())
          << QString(r.tokenizer) << r.text << r.ids << r.ids_no_special << r.decoded
          << r.decoded_skip_special;
    }
  }
  void variants() { check_edge(true); }

  void encodeRejectsInvalidUtf8() {
    const Tokenizer& t = cached("spm32k");
    try {
      t.encode(std::string("ok \xC3\x28 bad"));
      QFAIL("no Error for invalid UTF-8");
    } catch (const Error& e) {
      QVERIFY2(std::string(e.what()).find("byte offset 3") != std::string::npos, e.what());
    }
  }

  void decodeRejectsOutOfRangeIds() {
    const Tokenizer& t = cached("656k");
    const std::vector<int32_t> bad = {1, 2048};
    QVERIFY_THROWS_EXCEPTION(Error, t.decode(bad));
    const std::vector<int32_t> negative = {-1};
    QVERIFY_THROWS_EXCEPTION(Error, t.decode(negative));
  }

  void copiesShareState() {
    Tokenizer a = cached("656k");
    Tokenizer b = std::move(a);
    QCOMPARE(show(b.encode("Once upon")), show(cached("656k").encode("Once upon")));
  }

  void concurrentEncodeMatchesSerial() {
    // One Tokenizer shared read-only by several threads gives the serial ids.
    constexpr int kThreads = 4;
    const std::string text = read_text_file(text_path("stories"));
    for (const char* name : {"llama3", "spm32k", "656k"}) {
      const Tokenizer& t = cached(name);
      const auto serial = t.encode(text);
      std::vector<std::vector<int32_t>> got(kThreads);
      std::vector<std::thread> threads;
      for (int k = 0; k < kThreads; ++k) threads.emplace_back([&, k] { got[k] = t.encode(text); });
      for (auto& th : threads) th.join();
      for (int k = 0; k < kThreads; ++k) QCOMPARE(first_difference(got[k], serial), -1L);
    }
  }

  void badInput_data() {
    QTest::addColumn<QString>("case_name");
    QTest::addColumn<QString>("expected_words");
    QTest::newRow("missing file") << "missing"
                                  << "no such file";
    QTest::newRow("malformed JSON") << "malformed"
                                    << "malformed JSON";
    QTest::newRow("unsupported model WordPiece") << "wordpiece"
                                                 << "unsupported model type 'WordPiece'";
    QTest::newRow("unsupported model Unigram") << "unigram"
                                               << "unsupported model type 'Unigram'";
    QTest::newRow("merge with missing token") << "bad_merge"
                                              << "is not in the vocab";
    QTest::newRow("merge not two pieces") << "bad_merge_format"
                                          << "not two pieces";
    QTest::newRow("unsupported normalizer NFC") << "nfc"
                                                << "unsupported normalizer 'NFC'";
    QTest::newRow("unsupported pre_tokenizer Whitespace")
        << "whitespace"
        << "unsupported pre_tokenizer 'Whitespace'";
    QTest::newRow("unsupported decoder WordPiece") << "wp_decoder"
                                                   << "unsupported decoder 'WordPiece'";
    QTest::newRow("bad regex") << "bad_regex"
                               << "does not compile";
    QTest::newRow("template names unknown special") << "bad_template"
                                                    << "not in special_tokens";
  }
  void badInput() {
    QFETCH(QString, case_name);
    QFETCH(QString, expected_words);
    QTemporaryDir dir;
    QVERIFY(dir.isValid());
    const std::filesystem::path p =
        std::filesystem::path(dir.path().toStdString()) / "tokenizer.json";
    const std::string c = case_name.toStdString();
    nlohmann::json j = read_json(tokenizer_path("656k"));
    if (c == "malformed") {
      write_file(p, "{\"model\": {\"type\": \"BPE\", \"vocab\": {");
    } else if (c != "missing") {
      if (c == "wordpiece") j["model"]["type"] = "WordPiece";
      if (c == "unigram") j["model"] = {{"type", "Unigram"}, {"vocab", nlohmann::json::array()}};
      if (c == "bad_merge") j["model"]["merges"].push_back("e \xE2\x82\xAC");
      if (c == "bad_merge_format") j["model"]["merges"].push_back("a b c");
      if (c == "nfc") j["normalizer"] = {{"type", "NFC"}};
      if (c == "whitespace") j["pre_tokenizer"] = {{"type", "Whitespace"}};
      if (c == "wp_decoder") j["decoder"] = {{"type", "WordPiece"}, {"prefix", "##"}};
      if (c == "bad_regex")
        j["pre_tokenizer"] = {{"type", "Split"},
                              {"pattern", {{"Regex", "(unclosed"}}},
                              {"behavior", "Isolated"},
                              {"invert", false}};
      if (c == "bad_template") j["post_processor"]["single"][0]["SpecialToken"]["id"] = "<nope>";
      write_file(p, j.dump());
    }
    try {
      Tokenizer::load(p);
      QFAIL("no Error thrown");
    } catch (const Error& e) {
      const QString msg = QString::fromUtf8(e.what());
      qInfo() << msg;
      QVERIFY2(msg.contains(QString::fromStdString(p.string())), qPrintable(msg));
      QVERIFY2(msg.contains(expected_words), qPrintable(msg));
    }
  }

  void unmodifiedCopyLoads() {
    // Negative check for badInput: the same write path with no change loads fine.
    QTemporaryDir dir;
    const std::filesystem::path p =
        std::filesystem::path(dir.path().toStdString()) / "tokenizer.json";
    write_file(p, read_json(tokenizer_path("656k")).dump());
    QCOMPARE(show(Tokenizer::load(p).encode("Once upon a time, there was a little girl.")),
             show({1, 80, 147, 201, 282, 215, 286, 1890, 10}));
  }

 private:
  void check_edge(bool variant) {
    QFETCH(QString, tokenizer);
    QFETCH(std::string, text);
    QFETCH(std::vector<int32_t>, ids);
    QFETCH(std::vector<int32_t>, ids_no_special);
    QFETCH(std::string, decoded);
    QFETCH(std::string, decoded_skip_special);
    const std::string name = tokenizer.toStdString();
    std::optional<Tokenizer> own;
    if (variant) {
      static std::map<std::string, Tokenizer> variants;
      static QTemporaryDir dir;
      auto it = variants.find(name);
      if (it == variants.end()) {
        const auto p = std::filesystem::path(dir.path().toStdString()) / (name + ".json");
        write_file(p, make_variant(name).dump());
        it = variants.emplace(name, Tokenizer::load(p)).first;
      }
      own = it->second;
    }
    const Tokenizer& t = variant ? *own : cached(name);
    const auto got = t.encode(text, true);
    const auto got_no_special = t.encode(text, false);
    QCOMPARE(show(got), show(ids));
    QCOMPARE(show(got_no_special), show(ids_no_special));
    QCOMPARE(QString::fromStdString(t.decode(got, false)), QString::fromStdString(decoded));
    QCOMPARE(QString::fromStdString(t.decode(got, true)),
             QString::fromStdString(decoded_skip_special));
  }
};

QTEST_GUILESS_MAIN(TestTokenizer)
#include "test_tokenizer.moc"
