// Outlier plants (core/plant/plant.h) on the two real tiny models and a synthetic BF16 one:
// the planted copy computes the same logits, its planted channels grow as promised, and the
// same comparison catches a plant whose consumer columns were scaled wrongly.
#include <QtTest>

#include <QTemporaryDir>
#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>

#include "core/io/safetensors.h"
#include "core/io/safetensors_writer.h"
#include "core/model/checkpoint.h"
#include "core/model/synthetic_checkpoint.h"
#include "core/plant/plant.h"
#include "core/text/tokenizer.h"
#include "core/util/error.h"
#include "tests/test_data.h"

namespace fs = std::filesystem;
using namespace mxlens;

namespace {

// Function preservation: max |logit diff| / max |logit| over the window (algorithm.md §10.9).
constexpr double kLogitRelTol = 1e-4;
// Norm mode: a planted channel's absmax grows by S up to float rounding of the forward.
constexpr double kGrowthRelTol = 1e-3;
// Residual mode written back to BF16 rounds every rotated weight to ~3 significant digits.
constexpr double kBf16SourceDtypeRelTol = 1e-2;
// A wrong plant must move the logits by far more than the tolerance.
constexpr double kNegativeMinRel = 100 * kLogitRelTol;
constexpr int kCheckTokens = 300;
constexpr int kCalibTokens = 512;
constexpr double kScale = 8.0;

std::vector<int32_t> fixed_ids(int vocab, int n) {
  std::vector<int32_t> ids(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) ids[size_t(i)] = int32_t((i * 37 + 11) % vocab);
  return ids;
}

// `n` tokens of the in-domain stories starting at byte `offset` (656K; BOS first), nullopt for
// a model without a tokenizer.
std::optional<std::vector<int32_t>> story_tokens(const Checkpoint& ckpt, size_t offset, int n) {
  const auto tj = ckpt.tokenizer_json();
  if (!tj) return std::nullopt;
  std::ifstream in(test::data_dir() / "tinystories-text" / "stories.txt");
  in.seekg(std::streamoff(offset));
  std::string text(size_t(n) * 20, '\0');
  in.read(text.data(), std::streamsize(text.size()));
  text.resize(size_t(in.gcount()));
  // Never start or end inside a UTF-8 sequence.
  while (!text.empty() && (static_cast<unsigned char>(text.front()) & 0xC0) == 0x80)
    text.erase(text.begin());
  while (!text.empty() && (static_cast<unsigned char>(text.back()) & 0x80) != 0) text.pop_back();
  std::vector<int32_t> ids = Tokenizer::load(*tj).encode(text, true);
  if (ids.size() < size_t(n)) return std::nullopt;
  ids.resize(size_t(n));
  return ids;
}

// The first kCheckTokens tokens of the in-domain stories (656K), fixed ids otherwise.
std::vector<int32_t> check_tokens(const Checkpoint& ckpt) {
  if (auto ids = story_tokens(ckpt, 0, kCheckTokens)) return *ids;
  return fixed_ids(ckpt.config().vocab_size, kCheckTokens);
}

// Residual-mode calibration: stories far from the checked ones (656K), else seeded random ids.
std::vector<int32_t> calib_tokens(const Checkpoint& ckpt) {
  if (auto ids = story_tokens(ckpt, 100000, kCalibTokens)) return *ids;
  return {};
}

fs::path model_dir(const QString& name) {
  return name == "tinystories-656k" ? test::model_656k() : test::model_260k();
}

// Copies checkpoint `src` into `dst` as F32 tensors, passing tensor `name` through `change`.
void copy_with_change(const fs::path& src, const fs::path& dst, const std::string& name,
                      const std::function<void(std::vector<float>&, const TensorRef&)>& change) {
  const Checkpoint c = Checkpoint::open(src);
  fs::create_directories(dst);
  std::vector<TensorData> tensors;
  for (const TensorRef& t : c.tensors()) {
    uint64_t n = 1;
    for (uint64_t s : t.shape) n *= s;
    std::vector<float> v(n);
    c.read_f32(t.name, v);
    if (t.name == name) change(v, t);
    TensorData d;
    d.spec = TensorSpec{t.name, DType::F32, t.shape};
    d.bytes.resize(n * 4);
    std::memcpy(d.bytes.data(), v.data(), n * 4);
    tensors.push_back(std::move(d));
  }
  write_safetensors(dst / "model.safetensors", tensors, {{"format", "pt"}});
  fs::copy_file(src / "config.json", dst / "config.json");
}

nlohmann::json read_json(const fs::path& p) {
  std::ifstream in(p);
  return nlohmann::json::parse(in);
}

}  // namespace

class TestPlant : public QObject {
  Q_OBJECT

 private slots:
  void initTestCase() {
    QVERIFY2(fs::exists(test::model_656k() / "model.safetensors"), "shared data missing");
    QVERIFY2(fs::exists(test::model_260k() / "model.safetensors"), "shared data missing");
  }

  void channelsDistinctAndSeeded() {
    const std::vector<int> a = choose_plant_channels(128, 16, 7);
    QCOMPARE(choose_plant_channels(128, 16, 7), a);
    QVERIFY(choose_plant_channels(128, 16, 8) != a);
    QCOMPARE(std::set<int>(a.begin(), a.end()).size(), a.size());
    for (int c : a) QVERIFY(c >= 0 && c < 128);
    const std::vector<int> all = choose_plant_channels(5, 5, 1);
    QCOMPARE(std::set<int>(all.begin(), all.end()).size(), size_t(5));
    QVERIFY_THROWS_EXCEPTION(Error, choose_plant_channels(4, 5, 0));
  }

  void normMode_data() {
    QTest::addColumn<QString>("model");
    QTest::addColumn<double>("scale");
    QTest::addColumn<bool>("intermediate");
    for (const char* m : {"tinystories-656k", "stories260K-hf"}) {
      QTest::addRow("%s S=8", m) << QString(m) << 8.0 << false;
      QTest::addRow("%s S=16 intermediate", m) << QString(m) << 16.0 << true;
      QTest::addRow("%s S=6 (rounded)", m) << QString(m) << 6.0 << true;
    }
  }
  void normMode() {
    QFETCH(QString, model);
    QFETCH(double, scale);
    QFETCH(bool, intermediate);
    QTemporaryDir tmp;
    const Checkpoint src = Checkpoint::open(model_dir(model));
    PlantOptions opt;
    opt.scale = scale;
    opt.sites.intermediate = intermediate;
    const PlantRecord rec = plant_outliers(src, fs::path(tmp.path().toStdString()) / "p", opt);
    const Checkpoint planted = Checkpoint::open(fs::path(tmp.path().toStdString()) / "p");
    const PlantCheck chk = check_plant(src, planted, check_tokens(src), rec);
    qInfo(
        "%s S=%g: max|dlogit| %.3e / max|logit| %.4g = %.3e relative; %llu of %llu values "
        "rounded",
        qPrintable(model), scale, chk.max_abs_logit_diff, chk.max_abs_logit,
        chk.relative_logit_diff(), static_cast<unsigned long long>(rec.values_rounded),
        static_cast<unsigned long long>(rec.values_written));
    QVERIFY(chk.relative_logit_diff() <= kLogitRelTol);
    QCOMPARE(int(rec.hidden_channels.size()), opt.channels);
    if (scale == 8.0 || scale == 16.0) QCOMPARE(rec.values_rounded, uint64_t(0));
    if (scale == 6.0) QVERIFY(rec.values_rounded > 0);
    QCOMPARE(chk.sites.size(), size_t(src.config().num_layers * (intermediate ? 3 : 2)));
    double worst = 0;
    for (const PlantSiteStats& s : chk.sites) {
      const double growth = s.planted_absmax_after / s.planted_absmax_before;
      worst = std::max(worst, std::abs(growth / scale - 1));
      QVERIFY2(std::abs(growth / scale - 1) <= kGrowthRelTol,
               qPrintable(QString("layer %1 %2: growth %3")
                              .arg(s.layer)
                              .arg(site_name(s.site).data())
                              .arg(growth)));
      QVERIFY(std::abs(s.other_absmax_after / s.other_absmax_before - 1) <= kGrowthRelTol);
    }
    qInfo("  planted absmax growth / S - 1: worst %.2e", worst);
    // Same dtype out (F32 here); the tie is kept.
    for (const TensorRef& t : planted.tensors()) QCOMPARE(t.dtype, DType::F32);
    QCOMPARE(planted.config().tie_word_embeddings, src.config().tie_word_embeddings);
  }

  void residualMode_data() {
    QTest::addColumn<QString>("model");
    QTest::newRow("tinystories-656k") << QString("tinystories-656k");
    QTest::newRow("stories260K-hf") << QString("stories260K-hf");
  }
  void residualMode() {
    QFETCH(QString, model);
    QTemporaryDir tmp;
    const fs::path out = fs::path(tmp.path().toStdString()) / "r";
    const Checkpoint src = Checkpoint::open(model_dir(model));
    const std::vector<int32_t> tokens = check_tokens(src);
    PlantOptions opt;
    opt.mode = PlantMode::Residual;
    opt.calib_tokens = calib_tokens(src);
    const PlantRecord rec = plant_outliers(src, out, opt);
    const Checkpoint planted = Checkpoint::open(out);
    const PlantCheck chk = check_plant(src, planted, tokens, rec);
    qInfo(
        "%s residual: max|dlogit| %.3e / max|logit| %.4g = %.3e relative; top-%d energy %.3f; "
        "|QQt-I| %.1e",
        qPrintable(model), chk.max_abs_logit_diff, chk.max_abs_logit, chk.relative_logit_diff(),
        opt.channels, rec.top_energy_fraction, rec.orthogonality_error);
    QVERIFY(chk.relative_logit_diff() <= kLogitRelTol);
    QVERIFY(rec.orthogonality_error < 1e-10);
    QVERIFY(rec.untied);
    QVERIFY(!planted.config().tie_word_embeddings);
    QVERIFY(planted.has("model.embed_tokens.weight") && planted.has("lm_head.weight"));
    // Every norm γ was folded.
    std::vector<float> g(size_t(src.config().hidden_size));
    planted.read_f32("model.norm.weight", g);
    for (float v : g) QCOMPARE(v, 1.0f);

    // The planted channels become the top channels: at every qkv and gate/up site the
    // largest-absmax channel is planted and at least half of the top K are.
    int sites_top = 0;
    for (const PlantSiteStats& s : chk.sites) {
      qInfo(
          "  layer %d %s: absmax planted %.4g -> %.4g, others %.4g -> %.4g, ratio %.2f, "
          "top-K %d; rms planted %.4g -> %.4g, others %.4g -> %.4g, ratio %.2f, top-K %d",
          s.layer, site_name(s.site).data(), s.planted_absmax_before, s.planted_absmax_after,
          s.other_absmax_before, s.other_absmax_after,
          s.planted_absmax_after / s.other_absmax_after, s.planted_in_top_k_after,
          s.planted_rms_before, s.planted_rms_after, s.other_rms_before, s.other_rms_after,
          s.planted_rms_after / s.other_rms_after, s.planted_in_top_k_rms_after);
      QVERIFY(s.planted_rms_after > s.other_rms_after);
      QVERIFY(2 * s.planted_in_top_k_rms_after >= opt.channels);
      ++sites_top;
    }
    QCOMPARE(sites_top, 2 * src.config().num_layers);
    // Negative: in the original model the same channels are not the top ones.
    const PlantCheck same = check_plant(src, src, tokens, rec);
    int sites_top_before = 0;
    for (const PlantSiteStats& s : same.sites)
      sites_top_before += s.planted_rms_after > s.other_rms_after &&
                          2 * s.planted_in_top_k_rms_after >= opt.channels;
    qInfo("  sites meeting the criterion in the original: %d of %zu", sites_top_before,
          same.sites.size());
    QVERIFY(2 * sites_top_before < int(same.sites.size()));
  }

  // The comparison that passes the plants above must fail a plant with one wrong scaling.
  void wrongPlantDetected_data() {
    QTest::addColumn<QString>("model");
    QTest::addColumn<bool>("residual");
    for (const char* m : {"tinystories-656k", "stories260K-hf"}) {
      QTest::addRow("%s norm, q_proj column not scaled", m) << QString(m) << false;
      QTest::addRow("%s residual, o_proj not rotated", m) << QString(m) << true;
    }
  }
  void wrongPlantDetected() {
    QFETCH(QString, model);
    QFETCH(bool, residual);
    QTemporaryDir tmp;
    const fs::path base(tmp.path().toStdString());
    const Checkpoint src = Checkpoint::open(model_dir(model));
    PlantOptions opt;
    opt.mode = residual ? PlantMode::Residual : PlantMode::Norm;
    opt.scale = kScale;
    const PlantRecord rec = plant_outliers(src, base / "good", opt);
    const std::string name =
        layer_tensor_name(0, residual ? "self_attn.o_proj.weight" : "self_attn.q_proj.weight");
    const int channel = rec.hidden_channels[0];
    copy_with_change(base / "good", base / "bad", name,
                     [&](std::vector<float>& w, const TensorRef& t) {
                       if (residual) {
                         src.read_f32(name, w);  // the unrotated original
                         return;
                       }
                       const uint64_t cols = t.shape[1];
                       for (uint64_t r = 0; r < t.shape[0]; ++r)
                         w[r * cols + uint64_t(channel)] *= float(kScale);  // undo the ÷S
                     });
    const Checkpoint bad = Checkpoint::open(base / "bad");
    const Checkpoint good = Checkpoint::open(base / "good");
    const std::vector<int32_t> tokens = check_tokens(src);
    const double rel_good = check_plant(src, good, tokens, rec).relative_logit_diff();
    const double rel_bad = check_plant(src, bad, tokens, rec).relative_logit_diff();
    qInfo("%s: good plant %.3e, wrong plant %.3e relative", qPrintable(model), rel_good, rel_bad);
    QVERIFY(rel_good <= kLogitRelTol);
    QVERIFY(rel_bad > kNegativeMinRel);
  }

  void bf16Synthetic_data() {
    QTest::addColumn<int>("mode");
    QTest::addColumn<int>("dtype");
    QTest::addColumn<int>("expectedDtype");
    QTest::addColumn<double>("tolerance");
    QTest::newRow("norm auto keeps BF16")
        << int(PlantMode::Norm) << int(PlantDtype::Auto) << int(DType::BF16) << kLogitRelTol;
    QTest::newRow("residual auto writes F32")
        << int(PlantMode::Residual) << int(PlantDtype::Auto) << int(DType::F32) << kLogitRelTol;
    QTest::newRow("residual source rounds to BF16")
        << int(PlantMode::Residual) << int(PlantDtype::Source) << int(DType::BF16)
        << kBf16SourceDtypeRelTol;
  }
  void bf16Synthetic() {
    QFETCH(int, mode);
    QFETCH(int, dtype);
    QFETCH(int, expectedDtype);
    QFETCH(double, tolerance);
    QTemporaryDir tmp;
    const fs::path base(tmp.path().toStdString());
    SyntheticOptions so;
    so.preset = "tiny";
    so.dtype = DType::BF16;
    so.layers = 2;
    write_synthetic_checkpoint(base / "src", so);
    const Checkpoint src = Checkpoint::open(base / "src");
    PlantOptions opt;
    opt.mode = PlantMode(mode);
    opt.dtype = PlantDtype(dtype);
    opt.calib_random_tokens = 128;
    const PlantRecord rec = plant_outliers(src, base / "out", opt);
    const Checkpoint planted = Checkpoint::open(base / "out");
    for (const TensorRef& t : planted.tensors()) QCOMPARE(int(t.dtype), expectedDtype);
    const std::vector<int32_t> tokens = fixed_ids(src.config().vocab_size, 128);
    const PlantCheck chk = check_plant(src, planted, tokens, rec);
    qInfo(
        "synthetic BF16, %s %s: relative logit diff %.3e (tolerance %.0e); %llu of %llu "
        "values rounded",
        plant_mode_name(PlantMode(mode)), plant_dtype_name(PlantDtype(dtype)),
        chk.relative_logit_diff(), tolerance, static_cast<unsigned long long>(rec.values_rounded),
        static_cast<unsigned long long>(rec.values_written));
    QVERIFY(chk.relative_logit_diff() <= tolerance);
    if (PlantMode(mode) == PlantMode::Norm) {
      QCOMPARE(rec.values_rounded, uint64_t(0));  // S = 8 is a power of two
      // Untouched tensors are byte-identical.
      const TensorRef a = src.tensor(layer_tensor_name(0, "self_attn.o_proj.weight"));
      const TensorRef b = planted.tensor(layer_tensor_name(0, "self_attn.o_proj.weight"));
      QVERIFY(std::equal(a.bytes.begin(), a.bytes.end(), b.bytes.begin(), b.bytes.end()));
    }
    if (PlantDtype(dtype) == PlantDtype::Source) {
      QVERIFY(rec.values_rounded > 0);
      QVERIFY(chk.relative_logit_diff() > kLogitRelTol);  // the rounding is real; say so
    }
  }

  void recordWritten() {
    QTemporaryDir tmp;
    const fs::path out = fs::path(tmp.path().toStdString()) / "p";
    const Checkpoint src = Checkpoint::open(test::model_656k());
    PlantOptions opt;
    opt.channels = 3;
    opt.seed = 42;
    opt.layers = {1};
    const PlantRecord rec = plant_outliers(src, out, opt);
    const nlohmann::json j = read_json(out / "mxlens_plant.json");
    QCOMPARE(j["mode"].get<std::string>(), std::string("norm"));
    QCOMPARE(j["channels"].get<std::vector<int>>(), rec.hidden_channels);
    QCOMPARE(j["layers"].get<std::vector<int>>(), std::vector<int>{1});
    QCOMPARE(j["seed"].get<uint64_t>(), uint64_t(42));
    const SafetensorsFile st = SafetensorsFile::open(out / "model.safetensors");
    QVERIFY(st.metadata().count("mxlens_plant"));
    const nlohmann::json h = nlohmann::json::parse(st.metadata().at("mxlens_plant"));
    QCOMPARE(h["channels"].get<std::vector<int>>(), rec.hidden_channels);
    // Layer 0 untouched: its γ is the source's bit for bit.
    std::vector<float> a(128), b(128);
    src.read_f32(layer_tensor_name(0, "input_layernorm.weight"), a);
    Checkpoint::open(out).read_f32(layer_tensor_name(0, "input_layernorm.weight"), b);
    QCOMPARE(a, b);
    QVERIFY(fs::exists(out / "tokenizer.json"));
    QVERIFY(fs::exists(out / "config.json"));
    // Nothing else left beside the output (the temporary directory was renamed).
    int entries = 0;
    for (const auto& e : fs::directory_iterator(tmp.path().toStdString())) {
      (void)e;
      ++entries;
    }
    QCOMPARE(entries, 1);
  }

  void refusesExistingOut() {
    QTemporaryDir tmp;
    const fs::path out = fs::path(tmp.path().toStdString()) / "p";
    const Checkpoint src = Checkpoint::open(test::model_260k());
    fs::create_directories(out);
    std::ofstream(out / "marker") << "x";
    PlantOptions opt;
    QVERIFY_THROWS_EXCEPTION(Error, plant_outliers(src, out, opt));
    QVERIFY(fs::exists(out / "marker"));  // untouched
    opt.force = true;
    plant_outliers(src, out, opt);
    QVERIFY(!fs::exists(out / "marker"));
    QVERIFY(fs::exists(out / "model.safetensors"));
    // Never the source itself, or a directory holding it, even with --force.
    QVERIFY_THROWS_EXCEPTION(Error, plant_outliers(src, test::model_260k(), opt));
    QVERIFY_THROWS_EXCEPTION(Error, plant_outliers(src, test::data_dir(), opt));
  }

  void badOptions_data() {
    QTest::addColumn<int>("which");
    QTest::newRow("zero channels") << 0;
    QTest::newRow("more channels than hidden") << 1;
    QTest::newRow("layer out of range") << 2;
    QTest::newRow("residual with layers") << 3;
    QTest::newRow("zero scale") << 4;
    QTest::newRow("no site") << 5;
  }
  void badOptions() {
    QFETCH(int, which);
    QTemporaryDir tmp;
    const Checkpoint src = Checkpoint::open(test::model_260k());
    PlantOptions opt;
    switch (which) {
      case 0:
        opt.channels = 0;
        break;
      case 1:
        opt.channels = 65;
        break;
      case 2:
        opt.layers = {5};
        break;
      case 3:
        opt.mode = PlantMode::Residual;
        opt.layers = {0};
        break;
      case 4:
        opt.scale = 0;
        break;
      case 5:
        opt.sites = PlantSites{false, false, false};
        break;
    }
    const fs::path out = fs::path(tmp.path().toStdString()) / "p";
    QVERIFY_THROWS_EXCEPTION(Error, plant_outliers(src, out, opt));
    QVERIFY(!fs::exists(out));
  }
};

QTEST_GUILESS_MAIN(TestPlant)
#include "test_plant.moc"
