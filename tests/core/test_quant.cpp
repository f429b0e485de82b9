// W4A4 fake quantization through taps (algorithm.md §2, §3, §10.9, §10.14) on the two shared
// real models: transforms with quantization off keep the logits, the quantization modes order
// as they must, smoothing changes W4A4, quantized weights are MXFP4-representable, the plan's
// stored/cached/on-demand weights agree, and bad plans and names are rejected.
// GCC 12: false -Wmaybe-uninitialized inside AVX-512 intrinsics inlined from Eigen reductions.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#include <QtTest>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <memory>

#include "core/eval/kl.h"
#include "core/io/safetensors_writer.h"
#include "core/model/checkpoint.h"
#include "core/model/forward.h"
#include "core/model/forward_ref.h"
#include "core/mx/e2m1.h"
#include "core/mx/mxfp4.h"
#include "core/mx/nvfp4.h"
#include "core/quant/quant_plan.h"
#include "core/quant/smoothing.h"
#include "core/quant/w4a4_taps.h"
#include "core/rotation/block_rotation.h"
#include "core/text/tokenizer.h"
#include "core/util/error.h"
#include "tests/test_data.h"

using namespace mxlens;
namespace fs = std::filesystem;

namespace {

// Transforms with quantization off: max |Δlogit| / max |logit| (algorithm.md §10.9).
constexpr double kEquivalenceRelTol = 1e-4;
// Negative check: the same transform applied to one side only must move the logits this much.
constexpr double kOneSidedMin = 100 * kEquivalenceRelTol;
// W4A4 must visibly change the distribution (nats per token).
constexpr double kMinW4a4Kl = 1e-4;
// Smoothing must change the W4A4 KL by at least this fraction (§10.14).
constexpr double kSmoothingChangesKl = 1e-3;
constexpr int kWindowTokens = 256;
// W4A4 in the reference vs the batched forward: sums in another order can move a value across
// a rounding boundary of the fake quantization, so the two quantized models differ a little —
// far less than either differs from FP.
constexpr double kRefVsFastKlShare = 1e-4;

struct Model {
  std::unique_ptr<Checkpoint> ckpt;
  std::unique_ptr<LlamaWeights> weights;
  std::vector<int32_t> ids;  // one window
  const LlamaConfig& cfg() const { return weights->config(); }
};

std::vector<int32_t> pseudo_random_ids(int n, int vocab, uint32_t seed) {
  std::vector<int32_t> ids(static_cast<size_t>(n));
  for (auto& t : ids) {
    seed = seed * 1664525u + 1013904223u;
    t = int32_t((seed >> 8) % uint32_t(vocab));
  }
  return ids;
}

// 656k: the first stories of the in-domain text; 260k (no tokenizer): seeded ids.
Model load(const QString& name) {
  Model m;
  m.ckpt = std::make_unique<Checkpoint>(
      Checkpoint::open(name == "656k" ? test::model_656k() : test::model_260k()));
  m.weights = std::make_unique<LlamaWeights>(*m.ckpt);
  if (name == "656k") {
    const Tokenizer tok = Tokenizer::load(*m.ckpt->tokenizer_json());
    std::ifstream f(test::data_dir() / "tinystories-text" / "stories.txt");
    const std::string text((std::istreambuf_iterator<char>(f)), {});
    m.ids = tok.encode(text.substr(0, 3000));
    m.ids.resize(size_t(kWindowTokens));
  } else {
    m.ids = pseudo_random_ids(kWindowTokens, m.cfg().vocab_size, 7);
  }
  return m;
}

RowMatrixXf logits(const Model& m, SiteTaps* taps) {
  LlamaForward fwd(*m.weights);
  return fwd.logits_all(m.ids, taps);
}

double rel_error(const RowMatrixXf& a, const RowMatrixXf& ref) {
  return double((a - ref).cwiseAbs().maxCoeff()) / double(ref.cwiseAbs().maxCoeff());
}

int channels(const LlamaConfig& c, Site s) {
  return s == Site::Qkv || s == Site::GateUp ? c.hidden_size
         : s == Site::O                      ? c.num_heads * c.head_dim
                                             : c.intermediate_size;
}

enum class Rotation { none, block_hadamard, random_orthogonal };

// Smoothing from the FP statistics of the model's window (α = 0.6) and/or a 32-block rotation
// at every site whose width is a multiple of 32 (stories260K's 172-wide down site has none).
std::vector<LayerTransforms> make_transforms(const Model& m, bool smoothing, Rotation rotation) {
  const LlamaConfig& c = m.cfg();
  std::vector<LayerTransforms> t(size_t(c.num_layers));
  if (smoothing) {
    ActAbsMaxTaps stats(c);
    LlamaForward(*m.weights).hidden(m.ids, &stats);
    set_smoothing(t, *m.weights, stats);
  }
  if (rotation != Rotation::none)
    for (int l = 0; l < c.num_layers; ++l)
      for (Site site : kAllSites) {
        if (channels(c, site) % 32 != 0) continue;
        const Eigen::MatrixXf r = rotation == Rotation::block_hadamard
                                      ? block_hadamard(32)
                                      : random_orthogonal(32, derive_seed(1, l, int(site)));
        t[size_t(l)].site(site).rotation.add_block_rotation(r);
      }
  return t;
}

// Applies the plan's activation side only (weights stay FP): must break equivalence.
struct ActivationsOnlyTaps : W4a4Taps {
  using W4a4Taps::W4a4Taps;
  const float* weight_override(int, Linear, std::span<const float>, int, int) override {
    return nullptr;
  }
};

// The plan's taps with one linear's weight left as stored (FP, unsmoothed).
struct SkipOneWeightTaps : W4a4Taps {
  SkipOneWeightTaps(const QuantPlan& plan, Linear skip) : W4a4Taps(plan), skip_(skip) {}
  const float* weight_override(int layer, Linear linear, std::span<const float> w, int out,
                               int in) override {
    return linear == skip_ ? nullptr : W4a4Taps::weight_override(layer, linear, w, out, in);
  }
  Linear skip_;
};

// tinystories-656k made non-GQA: every KV head of k_proj / v_proj repeated for the two query
// heads that share it, num_key_value_heads 4 → 8. The same function, without GQA.
void write_mha_656k(const fs::path& dir) {
  const Checkpoint src = Checkpoint::open(test::model_656k());
  const LlamaConfig& c = src.config();
  std::vector<TensorData> out;
  for (const TensorRef& t : src.tensors()) {
    uint64_t n = 1;
    for (uint64_t d : t.shape) n *= d;
    std::vector<float> v(n);
    src.read_f32(t.name, v);
    std::vector<uint64_t> shape = t.shape;
    if (t.name.find("k_proj.weight") != std::string::npos ||
        t.name.find("v_proj.weight") != std::string::npos) {
      const size_t D = size_t(c.head_dim), in = size_t(c.hidden_size);
      std::vector<float> r;
      for (int h = 0; h < c.num_heads; ++h) {
        const size_t kv = size_t(h / c.kv_group());
        r.insert(r.end(), v.begin() + long(kv * D * in), v.begin() + long((kv + 1) * D * in));
      }
      v = std::move(r);
      shape[0] = uint64_t(c.num_heads) * D;
    }
    TensorData td{{t.name, DType::F32, shape}, std::vector<std::byte>(v.size() * sizeof(float))};
    std::memcpy(td.bytes.data(), v.data(), td.bytes.size());
    out.push_back(std::move(td));
  }
  write_safetensors(dir / "model.safetensors", out);
  std::ifstream f(test::model_656k() / "config.json");
  std::string cfg((std::istreambuf_iterator<char>(f)), {});
  const std::string from = "\"num_key_value_heads\": 4", to = "\"num_key_value_heads\": 8";
  const size_t at = cfg.find(from);
  if (at == std::string::npos) throw Error("config.json", "num_key_value_heads not found");
  cfg.replace(at, from.size(), to);
  std::ofstream(dir / "config.json") << cfg;
}

KlSummary kl_of(const RowMatrixXf& ref, const RowMatrixXf& test) {
  KlStats s;
  s.add_rows(ref, test);
  return s.summary();
}

KlSummary run_kl(const Model& m, const RowMatrixXf& fp, QuantScheme scheme,
                 std::vector<LayerTransforms> t = {}) {
  const QuantPlan plan(m.cfg(), scheme, std::move(t));
  W4a4Taps taps(plan);
  return kl_of(fp, logits(m, &taps));
}

// Every 32-element block (a short last one included) is code values × one power of two.
bool block_is_mxfp4(const float* v, int n) {
  float amax = 0;
  for (int i = 0; i < n; ++i) amax = std::max(amax, std::fabs(v[i]));
  if (amax == 0) return true;
  const int e = std::ilogb(amax);
  for (int k = e - 3; k <= e; ++k) {  // the block max is 0.5..6 times the scale
    bool ok = true;
    for (int i = 0; i < n && ok; ++i) {
      const float u = std::ldexp(std::fabs(v[i]), -k);
      bool on_grid = false;
      for (int c = 0; c < 8; ++c) on_grid |= u == kE2M1Values[c];
      ok = on_grid;
    }
    if (ok) return true;
  }
  return false;
}

int64_t non_mxfp4_blocks(const RowMatrixXf& w) {
  int64_t bad = 0;
  for (Eigen::Index r = 0; r < w.rows(); ++r)
    for (Eigen::Index c0 = 0; c0 < w.cols(); c0 += 32)
      bad += !block_is_mxfp4(w.row(r).data() + c0, int(std::min<Eigen::Index>(32, w.cols() - c0)));
  return bad;
}

}  // namespace

class TestQuant : public QObject {
  Q_OBJECT
 private slots:
  void schemeNamesAndModes() {
    QCOMPARE(parse_quant_mode("w4a4"), QuantMode::w4a4);
    QCOMPARE(parse_quant_mode("w16a4"), QuantMode::w16a4);
    QCOMPARE(parse_quant_format("nvfp4"), QuantFormat::nvfp4);
    QCOMPARE(parse_quant_format("int4"), QuantFormat::int4);
    for (QuantMode mode : {QuantMode::none, QuantMode::w4a4, QuantMode::w4a16, QuantMode::w16a4})
      QCOMPARE(QuantScheme::make(mode).mode(), mode);
    const QuantScheme w4a16 = QuantScheme::make(QuantMode::w4a16);
    QVERIFY(w4a16.weights.enabled() && !w4a16.activations.enabled());
    const QuantScheme int4 = QuantScheme::make(QuantMode::w4a4, QuantFormat::int4);
    QCOMPARE(int4.activations.clip_ratio, kInt4ActivationClip);
    QCOMPARE(int4.weights.clip_ratio, kInt4WeightClip);
    std::printf("  %s | %s\n", QuantScheme::make(QuantMode::w4a4).describe().c_str(),
                int4.describe().c_str());
    try {
      parse_quant_mode("w4a8");
      QFAIL("w4a8 accepted");
    } catch (const Error& e) {
      std::printf("  %s\n", e.what());
      QCOMPARE(e.source(), std::string("--mode"));
      QVERIFY(std::string(e.problem()).find("w4a4") != std::string::npos);
    }
    QVERIFY_THROWS_EXCEPTION(Error, parse_quant_format("fp4"));
    QVERIFY_THROWS_EXCEPTION(Error, QuantScheme::make(QuantMode::w4a4, QuantFormat::nvfp4,
                                                      {ScaleRule::rceil, Rounding::rne}));
    QVERIFY_THROWS_EXCEPTION(Error, validate({QuantFormat::int4, {}, 1.5f}, "weights"));
  }

  // fake_quantize_rows against the core/mx functions it is built on: whole tensor, threads,
  // short last block (zero padding), strided views, per-token NVFP4, INT4 by hand.
  void fakeQuantizeRowsMatchesCoreMx() {
    RowMatrixXf a = RowMatrixXf::Random(37, 172) * 3.0f;
    a(5, 17) = 80.0f;  // an outlier block
    const TensorQuant mx{QuantFormat::mxfp4, {}, 1.0f};
    // Whole rows of 160 = 5 blocks: one span call, any thread count.
    RowMatrixXf b = a.leftCols(160), b2 = b, expect = b;
    fake_quantize_mxfp4(std::span<float>(expect.data(), size_t(expect.size())));
    fake_quantize_rows(b, mx, TensorRole::activations, 1);
    fake_quantize_rows(b2, mx, TensorRole::activations, 2);
    QVERIFY(b == expect);
    QVERIFY(b2 == expect);
    QVERIFY(!(b == RowMatrixXf(a.leftCols(160))));  // it did quantize
    // 172 columns: the last 12 elements form a block of their own, as if zero-padded.
    RowMatrixXf padded = RowMatrixXf::Zero(37, 192);
    padded.leftCols(172) = a;
    fake_quantize_mxfp4(std::span<float>(padded.data(), size_t(padded.size())));
    RowMatrixXf r = a;
    fake_quantize_rows(r, mx, TensorRole::weights);
    QVERIFY(r == RowMatrixXf(padded.leftCols(172)));
    // A strided view (columns 32..95 of a wider matrix) is quantized in place, the rest kept.
    RowMatrixXf wide = a;
    fake_quantize_rows(wide.middleCols(32, 64), mx, TensorRole::activations);
    RowMatrixXf mid = a.middleCols(32, 64);
    fake_quantize_mxfp4(std::span<float>(mid.data(), size_t(mid.size())));
    QVERIFY(RowMatrixXf(wide.middleCols(32, 64)) == mid);
    QVERIFY(RowMatrixXf(wide.leftCols(32)) == RowMatrixXf(a.leftCols(32)));
    // NVFP4: per token for activations (each row its own global scale), one tensor for weights.
    const TensorQuant nv{QuantFormat::nvfp4, {}, 1.0f};
    const RowMatrixXf src = a.leftCols(160).topRows(4);
    RowMatrixXf act = src, wgt = src, rows = src, whole = src;
    for (int i = 0; i < 4; ++i) fake_quantize_nvfp4(std::span<float>(rows.row(i).data(), 160));
    fake_quantize_nvfp4(std::span<float>(whole.data(), size_t(whole.size())));
    fake_quantize_rows(act, nv, TensorRole::activations);
    fake_quantize_rows(wgt, nv, TensorRole::weights);
    QVERIFY(act == rows);
    QVERIFY(wgt == whole);
    QVERIFY(!(rows == whole));  // the two tensor choices differ on this data
    // INT4 asymmetric, clip 1: [-1, 0, 0.5, 2] → scale 0.2, zero 5; 0.5/0.2 = 2.5 rounds to 2.
    RowMatrixXf i4(1, 4);
    i4 << -1.0f, 0.0f, 0.5f, 2.0f;
    fake_quantize_rows(i4, {QuantFormat::int4, {}, 1.0f}, TensorRole::activations);
    std::printf("  int4 [-1 0 0.5 2] -> [%g %g %g %g]\n", i4(0, 0), i4(0, 1), i4(0, 2), i4(0, 3));
    QVERIFY(std::fabs(i4(0, 0) + 1.0f) < 1e-6f && i4(0, 1) == 0.0f);
    QVERIFY(std::fabs(i4(0, 2) - 0.4f) < 1e-6f && std::fabs(i4(0, 3) - 2.0f) < 1e-6f);
  }

  void transformsWithoutQuantizationKeepLogits_data() {
    QTest::addColumn<QString>("model");
    QTest::addColumn<bool>("smoothing");
    QTest::addColumn<int>("rotation");
    for (const char* m : {"656k", "260k"}) {
      const QString s(m);
      QTest::addRow("%s smoothing", m) << s << true << int(Rotation::none);
      QTest::addRow("%s block hadamard 32", m) << s << false << int(Rotation::block_hadamard);
      QTest::addRow("%s random orthogonal 32", m) << s << false << int(Rotation::random_orthogonal);
      QTest::addRow("%s smoothing + block hadamard", m)
          << s << true << int(Rotation::block_hadamard);
    }
  }
  void transformsWithoutQuantizationKeepLogits() {
    QFETCH(QString, model);
    QFETCH(bool, smoothing);
    QFETCH(int, rotation);
    const Model m = load(model);
    const RowMatrixXf fp = logits(m, nullptr);
    const QuantPlan plan(m.cfg(), QuantScheme::make(QuantMode::none),
                         make_transforms(m, smoothing, Rotation(rotation)));
    W4a4Taps taps(plan, {2, false, 0});  // threads forced on small tensors
    const double rel = rel_error(logits(m, &taps), fp);
    ActivationsOnlyTaps one_sided(plan);
    const double rel_one_sided = rel_error(logits(m, &one_sided), fp);
    std::printf("  max|Δlogit|/max|logit|: transformed %.3g, activation side only %.3g\n", rel,
                rel_one_sided);
    QVERIFY(rel <= kEquivalenceRelTol);
    QVERIFY(rel_one_sided >= kOneSidedMin);
  }

  void quantizationModesOrder_data() {
    QTest::addColumn<QString>("model");
    QTest::newRow("656k stories window") << "656k";
    QTest::newRow("260k seeded ids") << "260k";
  }
  void quantizationModesOrder() {
    QFETCH(QString, model);
    const Model m = load(model);
    const RowMatrixXf fp = logits(m, nullptr);
    const KlSummary w4a4 = run_kl(m, fp, QuantScheme::make(QuantMode::w4a4));
    const KlSummary w4a16 = run_kl(m, fp, QuantScheme::make(QuantMode::w4a16));
    const KlSummary w16a4 = run_kl(m, fp, QuantScheme::make(QuantMode::w16a4));
    const KlSummary smooth =
        run_kl(m, fp, QuantScheme::make(QuantMode::w4a4), make_transforms(m, true, Rotation::none));
    const KlSummary had = run_kl(m, fp, QuantScheme::make(QuantMode::w4a4),
                                 make_transforms(m, false, Rotation::block_hadamard));
    auto show = [](const char* name, const KlSummary& s) {
      std::printf("  %-28s KL %.5f ± %.5f nats/token, top-1 %.3f\n", name, s.mean, s.mean_stderr,
                  s.top1_agreement);
    };
    show("RTN W4A4 ocp_floor", w4a4);
    show("RTN W4A16", w4a16);
    show("RTN W16A4", w16a4);
    show("smoothing + RTN W4A4", smooth);
    show("block Hadamard + RTN W4A4", had);
    QVERIFY(w4a4.mean > kMinW4a4Kl);
    QVERIFY(w4a16.mean < w4a4.mean);
    QVERIFY(w16a4.mean < w4a4.mean);
    QVERIFY(std::fabs(smooth.mean - w4a4.mean) > kSmoothingChangesKl * w4a4.mean);
    // Negative check of the KL comparison: FP against itself gives zero.
    QVERIFY(kl_of(fp, fp).mean < kMinW4a4Kl);
  }

  // The scalar reference forward calls the taps once per token; the per-token transforms and
  // quantization must give the same model as in the batched forward.
  void referenceForwardAgrees_data() {
    QTest::addColumn<QString>("model");
    QTest::newRow("656k") << "656k";
    QTest::newRow("260k") << "260k";
  }
  void referenceForwardAgrees() {
    QFETCH(QString, model);
    Model m = load(model);
    m.ids.resize(64);
    const QuantPlan off(m.cfg(), QuantScheme::make(QuantMode::none),
                        make_transforms(m, true, Rotation::random_orthogonal));
    const QuantPlan on(m.cfg(), QuantScheme::make(QuantMode::w4a4),
                       make_transforms(m, true, Rotation::random_orthogonal));
    auto ref = [&](const QuantPlan& plan) {
      W4a4Taps taps(plan);
      const std::vector<float> v = forward_ref(*m.ckpt, m.ids, &taps);
      return RowMatrixXf(
          Eigen::Map<const RowMatrixXf>(v.data(), Eigen::Index(m.ids.size()), m.cfg().vocab_size));
    };
    W4a4Taps t_off(off), t_on(on);
    const RowMatrixXf fp = logits(m, nullptr), fast_off = logits(m, &t_off);
    const RowMatrixXf fast_on = logits(m, &t_on), ref_on = ref(on);
    const double rel_off = rel_error(ref(off), fast_off);
    const double kl_between = kl_of(fast_on, ref_on).mean, kl_quant = kl_of(fp, fast_on).mean;
    std::printf(
        "  transforms only: ref vs fast %.3g;  W4A4: KL(fast||ref) %.3g vs KL(FP||fast) %.3g\n",
        rel_off, kl_between, kl_quant);
    QVERIFY(rel_off <= kEquivalenceRelTol);
    QVERIFY(kl_between <= kRefVsFastKlShare * kl_quant);
  }

  void otherFormatsQuantize_data() {
    QTest::addColumn<int>("format");
    QTest::newRow("nvfp4") << int(QuantFormat::nvfp4);
    QTest::newRow("int4 (DuQuant clip 0.8/0.9)") << int(QuantFormat::int4);
    QTest::newRow("mxfp4 dqv2_log8") << int(QuantFormat::mxfp4);
  }
  void otherFormatsQuantize() {
    QFETCH(int, format);
    const Model m = load("656k");
    const RowMatrixXf fp = logits(m, nullptr);
    const QuantOptions opt{
        QuantFormat(format) == QuantFormat::mxfp4 ? ScaleRule::dqv2_log8 : ScaleRule::ocp_floor,
        Rounding::rne};
    const KlSummary s = run_kl(m, fp, QuantScheme::make(QuantMode::w4a4, QuantFormat(format), opt));
    std::printf("  W4A4 %s: KL %.5f, top-1 %.3f\n", to_string(QuantFormat(format)).data(), s.mean,
                s.top1_agreement);
    QVERIFY(std::isfinite(s.mean));
    QVERIFY(s.mean > kMinW4a4Kl);
  }

  void quantizedWeightsAreMxfp4Values_data() {
    QTest::addColumn<QString>("model");
    QTest::addColumn<int>("rule");
    QTest::newRow("656k ocp_floor") << "656k" << int(ScaleRule::ocp_floor);
    QTest::newRow("656k rceil") << "656k" << int(ScaleRule::rceil);
    QTest::newRow("260k ocp_floor (172-wide down: short last block)")
        << "260k" << int(ScaleRule::ocp_floor);
  }
  void quantizedWeightsAreMxfp4Values() {
    QFETCH(QString, model);
    QFETCH(int, rule);
    const Model m = load(model);
    const QuantPlan plan(
        m.cfg(),
        QuantScheme::make(QuantMode::w4a4, QuantFormat::mxfp4, {ScaleRule(rule), Rounding::rne}),
        make_transforms(m, true, Rotation::block_hadamard));
    LayerWeights lw;
    int64_t blocks = 0, bad = 0;
    RowMatrixXf q;
    for (int l = 0; l < m.cfg().num_layers; ++l) {
      m.weights->load_layer(l, lw);
      for (Linear which : kAllLinears) {
        const MatrixRef& w = lw.linear(which);
        plan.quantized_weight(l, which, w.span(), int(w.rows), int(w.cols), q);
        blocks += q.rows() * ((q.cols() + 31) / 32);
        bad += non_mxfp4_blocks(q);
      }
    }
    std::printf("  blocks %lld, not MXFP4-representable %lld\n", (long long)blocks, (long long)bad);
    QCOMPARE(bad, int64_t(0));
    // Negative check: one element moved by one ulp makes its block fail.
    q(0, 3) = std::nextafter(q(0, 3), 1e9f);
    QCOMPARE(non_mxfp4_blocks(q), int64_t(1));
  }

  void storedCachedAndOnDemandWeightsAgree() {
    const Model m = load("656k");
    QuantPlan plan(m.cfg(), QuantScheme::make(QuantMode::w4a4),
                   make_transforms(m, true, Rotation::random_orthogonal));
    W4a4Taps on_demand(plan);
    const RowMatrixXf a = logits(m, &on_demand);
    W4a4Taps cached(plan, {1, true});
    const RowMatrixXf b = logits(m, &cached);
    const RowMatrixXf b2 = logits(m, &cached);  // second window from the cache
    plan.store_all_weights(*m.weights);
    W4a4Taps stored(plan);
    const RowMatrixXf c = logits(m, &stored);
    const LlamaConfig& cfg = m.cfg();
    const int64_t per_layer = int64_t(cfg.hidden_size) * (2 * cfg.num_heads * cfg.head_dim +
                                                          2 * cfg.num_kv_heads * cfg.head_dim) +
                              3 * int64_t(cfg.hidden_size) * cfg.intermediate_size;
    std::printf("  stored floats %lld\n", (long long)plan.stored_floats());
    QCOMPARE(plan.stored_floats(), per_layer * cfg.num_layers);
    QVERIFY(a == b);
    QVERIFY(a == b2);
    QVERIFY(a == c);
    // A stored weight that differs must show: zero one layer's down_proj.
    RowMatrixXf z = *plan.stored_weight(0, Linear::Down);
    z.setZero();
    plan.set_weight(0, Linear::Down, z);
    W4a4Taps changed(plan);
    QVERIFY(!(logits(m, &changed) == a));
  }

  void badPlansAreRejected() {
    const Model m = load("656k");
    const LlamaConfig& c = m.cfg();
    std::vector<LayerTransforms> t(size_t(c.num_layers));
    t[0].site(Site::Qkv).smooth.assign(7, 1.0f);
    QVERIFY_THROWS_EXCEPTION(Error, QuantPlan(c, QuantScheme::make(QuantMode::w4a4), t));
    t[0].site(Site::Qkv).smooth.clear();
    t[1].site(Site::Down).rotation.add_block_rotation(Eigen::MatrixXf::Identity(256, 256));
    QVERIFY_THROWS_EXCEPTION(Error,
                             QuantPlan(c, QuantScheme::make(QuantMode::w4a4), t));  // 384 % 256
    t[1].site(Site::Down).rotation = ChannelTransform();
    // GQA: s equal across each KV group folds into v rows (--smooth-gqa tied) ...
    t[0].site(Site::O).smooth.assign(size_t(c.num_heads * c.head_dim), 2.0f);
    t[0].site(Site::O).smooth_fold = SmoothFold::previous_rows;
    QuantPlan tied(c, QuantScheme::make(QuantMode::w4a4), t);
    // ... s that differs between the heads of a group cannot.
    for (size_t i = 0; i < t[0].site(Site::O).smooth.size(); ++i)
      t[0].site(Site::O).smooth[i] = 1.0f + 0.01f * float(i);
    try {
      QuantPlan p(c, QuantScheme::make(QuantMode::w4a4), t);
      QFAIL("v-row fold accepted under GQA");
    } catch (const Error& e) {
      std::printf("  %s\n", e.what());
    }
    QCOMPARE(smooth_fold(Site::O, c), SmoothFold::online);
    QCOMPARE(smooth_fold(Site::O, c, /*tie_gqa=*/true), SmoothFold::previous_rows);
    t[0].site(Site::O).smooth_fold = SmoothFold::online;
    const QuantPlan ok(c, QuantScheme::make(QuantMode::w4a4), t);
    QVERIFY_THROWS_EXCEPTION(
        Error, QuantPlan(c, QuantScheme::make(QuantMode::w4a4), std::vector<LayerTransforms>(1)));
  }

  // Without GQA the o-site factors fold into the rows of W_v (algorithm.md §3); the result
  // must still equal FP, and leaving W_v unsmoothed must break it.
  void oSmoothingFoldsIntoVWithoutGqa() {
    QTemporaryDir dir;
    QVERIFY(dir.isValid());
    write_mha_656k(dir.path().toStdString());
    const Model gqa = load("656k");
    Model m;
    m.ckpt = std::make_unique<Checkpoint>(Checkpoint::open(dir.path().toStdString()));
    m.weights = std::make_unique<LlamaWeights>(*m.ckpt);
    m.ids = gqa.ids;
    QCOMPARE(m.cfg().num_kv_heads, m.cfg().num_heads);
    QCOMPARE(smooth_fold(Site::O, m.cfg()), SmoothFold::previous_rows);
    const RowMatrixXf fp = logits(gqa, nullptr);
    const double rel_mha = rel_error(logits(m, nullptr), fp);
    const QuantPlan plan(m.cfg(), QuantScheme::make(QuantMode::none),
                         make_transforms(m, true, Rotation::block_hadamard));
    QCOMPARE(plan.site(0, Site::O).smooth_fold, SmoothFold::previous_rows);
    W4a4Taps taps(plan);
    const double rel = rel_error(logits(m, &taps), fp);
    // Only the o site smoothed, W_v left as stored: the sole difference is the missing row fold.
    auto o_only = make_transforms(m, true, Rotation::none);
    for (auto& layer : o_only)
      for (Site site : {Site::Qkv, Site::GateUp, Site::Down}) layer.site(site).smooth.clear();
    const QuantPlan plan_o(m.cfg(), QuantScheme::make(QuantMode::none), o_only);
    W4a4Taps taps_o(plan_o);
    const double rel_o = rel_error(logits(m, &taps_o), fp);
    SkipOneWeightTaps skip_v(plan_o, Linear::V);
    const double rel_skip = rel_error(logits(m, &skip_v), fp);
    std::printf(
        "  non-GQA copy vs GQA model %.3g; smoothing (o into v rows) + Hadamard %.3g; "
        "o smoothing only %.3g; o smoothing with W_v left unsmoothed %.3g\n",
        rel_mha, rel, rel_o, rel_skip);
    QVERIFY(rel_mha <= kEquivalenceRelTol);
    QVERIFY(rel <= kEquivalenceRelTol);
    QVERIFY(rel_o <= kEquivalenceRelTol);
    QVERIFY(rel_skip >= kOneSidedMin);
  }

  void foldedNormIsGammaOverS() {
    const Model m = load("656k");
    const auto t = make_transforms(m, true, Rotation::none);
    const QuantPlan plan(m.cfg(), QuantScheme::make(QuantMode::none), t);
    const std::vector<float> gamma(size_t(m.cfg().hidden_size), 2.0f);
    const std::vector<float> g = plan.folded_norm(1, Site::GateUp, gamma);
    const std::vector<float>& s = t[1].site(Site::GateUp).smooth;
    for (size_t i = 0; i < g.size(); ++i) QCOMPARE(g[i], 2.0f / s[i]);
    QVERIFY_THROWS_EXCEPTION(Error, plan.folded_norm(0, Site::Down, gamma));
  }
};

QTEST_GUILESS_MAIN(TestQuant)
#include "test_quant.moc"
