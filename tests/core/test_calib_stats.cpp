// Calibration windows and per-site statistics (algorithm.md §7, formats.md §5.1): the tail
// region and seeded offsets, the evaluation windows before it, and SiteStatsTaps checked
// against direct computations with core/mx's reference quantizer on small hand-made tensors,
// against W4a4Taps as the inner tap, and against ActAbsMaxTaps on a real forward of the 656K
// model.
// GCC 12: false -Wmaybe-uninitialized inside AVX-512 intrinsics inlined from Eigen reductions.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#include <QtTest>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <random>
#include <set>

#include "core/calib/calib_windows.h"
#include "core/calib/site_stats.h"
#include "core/model/checkpoint.h"
#include "core/model/forward.h"
#include "core/model/forward_ref.h"
#include "core/mx/mxfp4.h"
#include "core/quant/quant_plan.h"
#include "core/quant/smoothing.h"
#include "core/quant/w4a4_taps.h"
#include "core/rotation/block_rotation.h"
#include "core/text/tokenizer.h"
#include "core/util/error.h"
#include "tests/test_data.h"

using namespace mxlens;

namespace {

// A one-layer model shape: qkv/gu 64 channels (2 blocks), o 64, down 40 (a short last block).
LlamaConfig tiny_config() {
  LlamaConfig c;
  c.architecture = "LlamaForCausalLM";
  c.model_type = "llama";
  c.hidden_size = 64;
  c.intermediate_size = 40;
  c.num_layers = 1;
  c.num_heads = 2;
  c.num_kv_heads = 2;
  c.head_dim = 32;
  c.vocab_size = 16;
  return c;
}

// Block Hadamard at qkv only.
QuantPlan hadamard_plan(QuantScheme scheme = {}) {
  const LlamaConfig c = tiny_config();
  std::vector<LayerTransforms> t(1);
  t[0].site(Site::Qkv).rotation.add_block_rotation(block_hadamard(32));
  return QuantPlan(c, scheme, std::move(t));
}

// Rows with magnitudes over many octaves (different E8M0 bytes per block and token), some
// exact zeros and a whole zero block in one row.
RowMatrixXf test_matrix(int rows, int cols, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> n(0.0f, 1.0f);
  std::uniform_int_distribution<int> e(-6, 6);
  RowMatrixXf x(rows, cols);
  for (int r = 0; r < rows; ++r)
    for (int c = 0; c < cols; ++c) x(r, c) = std::ldexp(n(rng), e(rng));
  if (rows > 1 && cols >= 32) x.row(1).head(32).setZero();
  if (rows > 2) x(2, 3) = 0.0f;
  return x;
}

// The independent computation: per block (zero-padded to 32) with the reference quantizer.
struct Expected {
  std::vector<float> absmax;
  std::vector<double> mean, rms;
  std::vector<uint32_t> hist;
  std::vector<double> signal, noise;
};

Expected expected_stats(const RowMatrixXf& x, const QuantOptions& mx) {
  const int C = int(x.cols()), B = (C + 31) / 32;
  Expected e;
  e.absmax.assign(size_t(C), 0.0f);
  e.mean.assign(size_t(C), 0.0);
  e.rms.assign(size_t(C), 0.0);
  e.hist.assign(size_t(B) * 256, 0);
  e.signal.assign(size_t(B), 0.0);
  e.noise.assign(size_t(B), 0.0);
  for (Eigen::Index r = 0; r < x.rows(); ++r)
    for (int b = 0; b < B; ++b) {
      std::vector<float> blk(32, 0.0f);
      const int n = std::min(32, C - 32 * b);
      for (int i = 0; i < n; ++i) blk[size_t(i)] = x(r, 32 * b + i);
      Mxfp4Block q{};
      quantize_mxfp4_ref(blk, std::span<Mxfp4Block>(&q, 1), mx);
      ++e.hist[size_t(b) * 256 + q.e];
      std::vector<float> fq = blk;
      fake_quantize_mxfp4_ref(fq, mx);
      double s = 0, z = 0;
      for (int i = 0; i < n; ++i) {
        const double v = blk[size_t(i)], d = v - double(fq[size_t(i)]);
        s += v * v;
        z += d * d;
      }
      e.signal[size_t(b)] += s;
      e.noise[size_t(b)] += z;
    }
  for (int c = 0; c < C; ++c) {
    double s = 0, s2 = 0;
    for (Eigen::Index r = 0; r < x.rows(); ++r) {
      e.absmax[size_t(c)] = std::max(e.absmax[size_t(c)], std::fabs(x(r, c)));
      s += x(r, c);
      s2 += double(x(r, c)) * x(r, c);
    }
    e.mean[size_t(c)] = s / double(x.rows());
    e.rms[size_t(c)] = std::sqrt(s2 / double(x.rows()));
  }
  return e;
}

bool close(double a, double b, double rel) {
  return std::fabs(a - b) <= rel * std::max(std::fabs(a), std::fabs(b)) + 1e-300;
}

void check_before(const SiteStats& st, const Expected& e) {
  QCOMPARE(st.absmax_before, e.absmax);
  QCOMPARE(st.e8m0_hist_before, e.hist);
  for (size_t c = 0; c < e.mean.size(); ++c) {
    QVERIFY2(close(st.mean_before[c], e.mean[c], 1e-6) || std::fabs(e.mean[c]) < 1e-30,
             qPrintable(QString::number(c)));
    QVERIFY(close(st.rms_before[c], e.rms[c], 1e-6));
  }
  for (size_t b = 0; b < e.signal.size(); ++b) {
    QVERIFY(close(st.signal_before[b], e.signal[b], 1e-12));
    QVERIFY(close(st.noise_before[b], e.noise[b], 1e-12));
  }
}

void check_after(const SiteStats& st, const Expected& e) {
  QCOMPARE(st.absmax_after, e.absmax);
  QCOMPARE(st.e8m0_hist_after, e.hist);
  for (size_t b = 0; b < e.signal.size(); ++b) {
    QVERIFY(close(st.signal_after[b], e.signal[b], 1e-12));
    QVERIFY(close(st.noise_after[b], e.noise[b], 1e-12));
  }
}

// Every statistic, bit for bit.
void check_same(const SiteStats& a, const SiteStats& b) {
  QCOMPARE(a.tokens, b.tokens);
  QCOMPARE(a.absmax_before, b.absmax_before);
  QCOMPARE(a.absmax_after, b.absmax_after);
  QCOMPARE(a.mean_before, b.mean_before);
  QCOMPARE(a.rms_before, b.rms_before);
  QCOMPARE(a.e8m0_hist_before, b.e8m0_hist_before);
  QCOMPARE(a.e8m0_hist_after, b.e8m0_hist_after);
  QCOMPARE(a.signal_before, b.signal_before);
  QCOMPARE(a.noise_before, b.noise_before);
  QCOMPARE(a.signal_after, b.signal_after);
  QCOMPARE(a.noise_after, b.noise_after);
  QCOMPARE(a.sample_tokens, b.sample_tokens);
  QVERIFY(a.sample_before == b.sample_before);
  QVERIFY(a.sample_after == b.sample_after);
}

struct Text656k {
  std::unique_ptr<Checkpoint> ckpt;
  std::unique_ptr<LlamaWeights> weights;
  std::vector<int32_t> ids;
};

Text656k load_656k(size_t n_ids) {
  Text656k m;
  m.ckpt = std::make_unique<Checkpoint>(Checkpoint::open(test::model_656k()));
  m.weights = std::make_unique<LlamaWeights>(*m.ckpt);
  const Tokenizer tok = Tokenizer::load(*m.ckpt->tokenizer_json());
  std::ifstream f(test::data_dir() / "tinystories-text" / "stories.txt");
  const std::string text((std::istreambuf_iterator<char>(f)), {});
  m.ids = tok.encode(text.substr(0, 8000));
  if (m.ids.size() < n_ids) throw Error("stories.txt", "too few ids for the test");
  m.ids.resize(n_ids);
  return m;
}

}  // namespace

class TestCalibStats : public QObject {
  Q_OBJECT

 private slots:
  void regionTail() {
    CalibWindowSpec s;
    s.seqlen = 50;
    s.tail_fraction = 0.1;
    QCOMPARE(calibration_region(1000, s), (TokenRegion{900, 1000}));
    QCOMPARE(calibration_region(1001, s), (TokenRegion{900, 1001}));  // ceil(100.1) = 101
    s.tail_fraction = 0.01;                                           // 10 ids < seqlen + 1
    QCOMPARE(calibration_region(1000, s), (TokenRegion{949, 1000}));
    s.tail_fraction = 0.0;
    QCOMPARE(calibration_region(1000, s), (TokenRegion{0, 1000}));
    s.tail_fraction = 1.0;
    QCOMPARE(calibration_region(1000, s), (TokenRegion{0, 1000}));
    s.tail_fraction = 0.5;
    QCOMPARE(calibration_region(51, s), (TokenRegion{0, 51}));  // exactly seqlen + 1
  }

  void regionErrors() {
    CalibWindowSpec s;
    s.seqlen = 50;
    try {
      calibration_region(50, s, "wiki.train.raw");
      QFAIL("no error for a text shorter than a window");
    } catch (const Error& e) {
      QCOMPARE(QString::fromStdString(e.source()), QString("wiki.train.raw"));
      const QString p = QString::fromStdString(e.problem());
      QVERIFY2(p.contains("50") && p.contains("51") && p.contains("--calib-seqlen"), qPrintable(p));
    }
    for (double f : {-0.1, 1.5, std::nan("")}) {
      s.tail_fraction = f;
      QVERIFY_THROWS_EXCEPTION(Error, calibration_region(1000, s));
    }
    s.tail_fraction = 0.1;
    s.seqlen = 0;
    QVERIFY_THROWS_EXCEPTION(Error, calibration_region(1000, s));
  }

  void offsets() {
    CalibWindowSpec s;
    s.count = 500;
    s.seqlen = 64;
    s.seed = 2;
    const TokenRegion reg{1000, 5000};
    const auto a = draw_window_offsets(reg, s);
    QCOMPARE(int(a.size()), 500);
    for (int64_t o : a) QVERIFY(o >= reg.begin && o + s.seqlen + 1 <= reg.end);
    QCOMPARE(draw_window_offsets(reg, s), a);  // deterministic
    s.seed = 3;
    const auto b = draw_window_offsets(reg, s);
    QVERIFY(b != a);
    // Spread over the region, not bunched at one end.
    const auto [lo, hi] = std::minmax_element(a.begin(), a.end());
    QVERIFY(*lo < reg.begin + 200 && *hi > reg.end - s.seqlen - 1 - 200);
    s.count = 0;
    QVERIFY(draw_window_offsets(reg, s).empty());
  }

  void offsetsBoundsInclusive() {
    // 3 possible offsets: begin, begin + 1, begin + 2 = end − seqlen − 1.
    CalibWindowSpec s;
    s.count = 300;
    s.seqlen = 10;
    const TokenRegion reg{7, 7 + 10 + 1 + 2};
    const auto o = draw_window_offsets(reg, s);
    const std::set<int64_t> seen(o.begin(), o.end());
    QCOMPARE(seen, (std::set<int64_t>{7, 8, 9}));
    // Exactly seqlen + 1 ids: a single offset.
    const auto one = draw_window_offsets({5, 16}, s);
    QVERIFY(std::all_of(one.begin(), one.end(), [](int64_t v) { return v == 5; }));
    QVERIFY_THROWS_EXCEPTION(Error, draw_window_offsets({5, 15}, s));
    s.count = -1;
    QVERIFY_THROWS_EXCEPTION(Error, draw_window_offsets({0, 100}, s));
  }

  void evalWindowsBefore() {
    QCOMPARE(eval_windows_before({896, 1000}, 64), int64_t(14));  // [832, 896) ends at 896
    QCOMPARE(eval_windows_before({895, 1000}, 64), int64_t(13));
    QCOMPARE(eval_windows_before({0, 1000}, 64), int64_t(0));
    QCOMPARE(eval_windows_before({63, 1000}, 64), int64_t(0));
    CalibWindowSpec s;
    s.seqlen = 64;
    const TokenRegion r = calibration_region(10000, s);
    QVERIFY(eval_windows_before(r, 64) * 64 <= r.begin);
    QVERIFY((eval_windows_before(r, 64) + 1) * 64 > r.begin);

    // The windows an evaluation of the calibration text keeps, and what reports say.
    const WindowsBeforeRegion few = limit_to_windows_before({896, 1000}, 64, 5, "t.txt");
    QCOMPARE(few.windows, int64_t(5));
    const WindowsBeforeRegion all = limit_to_windows_before({896, 1000}, 64, 15, "t.txt");
    QCOMPARE(all.windows, int64_t(14));
    QVERIFY2(all.note.find("[896, 1000)") != std::string::npos &&
                 all.note.find("14 windows of 64") != std::string::npos,
             all.note.c_str());
    try {
      limit_to_windows_before({63, 1000}, 64, 15, "t.txt");
      QFAIL("no window before the region was accepted");
    } catch (const Error& e) {
      QCOMPARE(e.source(), std::string("t.txt"));
      QVERIFY(std::string(e.problem()).find("no evaluation window of 64") != std::string::npos);
    }
  }

  void sampleBudget() {
    const LlamaConfig c = tiny_config();
    // One row: (64 + 64 + 64 + 40) channels × 4 bytes × 2 = 1856 bytes.
    SiteStatsOptions o;
    o.max_sample_rows = 100;
    o.sample_budget_bytes = 1856 * 3 + 1855;
    QCOMPARE(sample_rows_for_budget(c, o), 3);
    o.max_sample_rows = 2;
    QCOMPARE(sample_rows_for_budget(c, o), 2);
    o.sample_budget_bytes = 100;
    QCOMPARE(sample_rows_for_budget(c, o), 0);
    o.sample_budget_bytes = int64_t(1) << 40;
    o.max_sample_rows = 256;
    QCOMPARE(sample_rows_for_budget(c, o), 256);
    // A tiny budget: no samples, everything else still collected.
    o.sample_budget_bytes = 100;
    const QuantPlan plan = hadamard_plan();
    SiteStatsTaps taps(plan, nullptr, 2, 4, o);
    taps.begin_window(0);
    RowMatrixXf x = test_matrix(4, 64, 1);
    taps.on_activations(0, Site::Qkv, x);
    const SiteStats& st = taps.stats()[0][size_t(Site::Qkv)];
    QCOMPARE(st.sample_before.rows(), Eigen::Index(0));
    QVERIFY(st.sample_tokens.empty());
    QCOMPARE(st.tokens, int64_t(4));
    QVERIFY(std::isnan(st.mean_exponent_spread_before()));
    QVERIFY(st.sample_e8m0_before({}).empty());
  }

  // Known matrices at a rotated site (qkv) and a site with a short last block (down, C = 40),
  // fed in two calls of one window and one call of the next.
  void siteStatsAgainstReference_data() {
    QTest::addColumn<int>("rule");
    QTest::newRow("ocp_floor") << int(ScaleRule::ocp_floor);
    QTest::newRow("rceil") << int(ScaleRule::rceil);
    QTest::newRow("fpquant") << int(ScaleRule::fpquant);
  }
  void siteStatsAgainstReference() {
    QFETCH(int, rule);
    const QuantPlan plan = hadamard_plan();
    SiteStatsOptions o;
    o.mx.scale_rule = ScaleRule(rule);
    o.max_sample_rows = 5;
    o.seed = 11;
    const int windows = 2, seqlen = 6;
    SiteStatsTaps taps(plan, nullptr, windows, seqlen, o);
    std::array<RowMatrixXf, 2> win{test_matrix(seqlen, 64, 3), test_matrix(seqlen, 64, 4)};
    std::array<RowMatrixXf, 2> down{test_matrix(seqlen, 40, 5), test_matrix(seqlen, 40, 6)};
    for (int w = 0; w < windows; ++w) {
      taps.begin_window(w);
      RowMatrixXf a = win[size_t(w)].topRows(4), b = win[size_t(w)].bottomRows(2);
      taps.on_activations(0, Site::Qkv, a);
      taps.on_activations(0, Site::Qkv, b);
      QVERIFY(a == win[size_t(w)].topRows(4));  // no inner tap: x untouched
      RowMatrixXf d = down[size_t(w)];
      taps.on_activations(0, Site::Down, d);
    }
    RowMatrixXf all(2 * seqlen, 64), all_down(2 * seqlen, 40);
    all << win[0], win[1];
    all_down << down[0], down[1];

    const SiteStats& q = taps.stats()[0][size_t(Site::Qkv)];
    QCOMPARE(q.channels, 64);
    QCOMPARE(q.blocks, 2);
    QCOMPARE(q.tokens, int64_t(2 * seqlen));
    check_before(q, expected_stats(all, o.mx));
    // after = x·T (the plan's transform); T is the block Hadamard.
    RowMatrixXf rot = all;
    plan.transform_activations(0, Site::Qkv, rot);
    const Eigen::MatrixXd dense = plan.site(0, Site::Qkv).rotation.dense(64);
    QVERIFY((rot.cast<double>() - all.cast<double>() * dense).cwiseAbs().maxCoeff() <
            1e-5 * all.cwiseAbs().maxCoeff());
    QVERIFY(rot != all);
    check_after(q, expected_stats(rot, o.mx));
    for (Site s : {Site::Qkv, Site::Down}) {
      const SiteStats& st = taps.stats()[0][size_t(s)];
      for (int b = 0; b < st.blocks; ++b) {
        uint64_t n = 0, m = 0;
        for (int e = 0; e < 256; ++e) {
          n += st.e8m0_hist_before[size_t(b) * 256 + size_t(e)];
          m += st.e8m0_hist_after[size_t(b) * 256 + size_t(e)];
        }
        QCOMPARE(n, uint64_t(2 * seqlen));
        QCOMPARE(m, uint64_t(2 * seqlen));
      }
    }
    // The zero block of row 1 gets byte 0.
    QVERIFY(q.e8m0_hist_before[0] >= 2);

    // down: C = 40, blocks of 32 and 8 (zero-padded); no transform: after == before.
    const SiteStats& dn = taps.stats()[0][size_t(Site::Down)];
    QCOMPARE(dn.blocks, 2);
    const Expected ed = expected_stats(all_down, o.mx);
    check_before(dn, ed);
    check_after(dn, ed);
    // Untouched sites stay empty.
    QCOMPARE(taps.stats()[0][size_t(Site::O)].tokens, int64_t(0));

    // Samples: sorted distinct positions of windows × seqlen, the same at every site, and
    // the rows at those positions.
    QCOMPARE(int(q.sample_tokens.size()), 5);
    QVERIFY(std::is_sorted(q.sample_tokens.begin(), q.sample_tokens.end()));
    QCOMPARE(std::set<int64_t>(q.sample_tokens.begin(), q.sample_tokens.end()).size(), size_t(5));
    QCOMPARE(dn.sample_tokens, q.sample_tokens);
    QCOMPARE(taps.stats()[0][size_t(Site::O)].sample_tokens, q.sample_tokens);
    for (size_t i = 0; i < q.sample_tokens.size(); ++i) {
      const int64_t g = q.sample_tokens[i];
      QVERIFY(g >= 0 && g < windows * seqlen);
      QVERIFY(q.sample_before.row(Eigen::Index(i)) == all.row(g));
      QVERIFY(q.sample_after.row(Eigen::Index(i)) == rot.row(g));
      QVERIFY(dn.sample_before.row(Eigen::Index(i)) == all_down.row(g));
    }
    // Sample bytes: the reference quantizer's byte of each block.
    const std::vector<uint8_t> bytes = q.sample_e8m0_before(o.mx);
    QCOMPARE(bytes.size(), size_t(5 * 2));
    double spread = 0;
    for (size_t i = 0; i < 5; ++i) {
      std::array<Mxfp4Block, 2> blk{};
      const RowMatrixXf row = q.sample_before.row(Eigen::Index(i));
      quantize_mxfp4_ref(std::span<const float>(row.data(), 64), blk, o.mx);
      QCOMPARE(bytes[2 * i], blk[0].e);
      QCOMPARE(bytes[2 * i + 1], blk[1].e);
      spread += std::abs(int(blk[0].e) - int(blk[1].e));
    }
    QCOMPARE(q.mean_exponent_spread_before(o.mx), spread / 5);
    const std::vector<uint8_t> dbytes = dn.sample_e8m0_after(o.mx);
    for (size_t i = 0; i < 5; ++i) {
      std::array<float, 64> padded{};
      for (int c = 0; c < 40; ++c) padded[size_t(c)] = dn.sample_after(Eigen::Index(i), c);
      std::array<Mxfp4Block, 2> blk{};
      quantize_mxfp4_ref(padded, blk, o.mx);
      QCOMPARE(dbytes[2 * i + 1], blk[1].e);
    }
  }

  // dqv2_log8 has no E8M0 byte: histograms record the ocp_floor byte, the error is the
  // log8 fake quantization over the tensor of the call (its range is the tensor's).
  void dqv2Log8() {
    const QuantPlan plan = hadamard_plan();
    SiteStatsOptions o;
    o.mx.scale_rule = ScaleRule::dqv2_log8;
    SiteStatsTaps taps(plan, nullptr, 1, 6, o);
    taps.begin_window(0);
    const RowMatrixXf x0 = test_matrix(6, 64, 31);
    RowMatrixXf x = x0;
    taps.on_activations(0, Site::Qkv, x);
    const SiteStats& st = taps.stats()[0][size_t(Site::Qkv)];
    QCOMPARE(st.e8m0_hist_before, expected_stats(x0, {}).hist);
    RowMatrixXf fq = x0;
    fake_quantize_mxfp4_ref(std::span<float>(fq.data(), size_t(fq.size())), o.mx);
    const Expected floor = expected_stats(x0, {});
    bool differs = false;
    for (int b = 0; b < 2; ++b) {
      double z = 0;
      for (int r = 0; r < 6; ++r)
        for (int c = 32 * b; c < 32 * b + 32; ++c) {
          const double d = double(x0(r, c)) - double(fq(r, c));
          z += d * d;
        }
      QVERIFY(close(st.noise_before[size_t(b)], z, 1e-12));
      QVERIFY(close(st.signal_before[size_t(b)], floor.signal[size_t(b)], 1e-12));
      differs = differs || !close(z, floor.noise[size_t(b)], 1e-6);
    }
    QVERIFY(differs);
  }

  // A block holding NaN gets byte 0xFF; the other rows' bytes of that (short) block and the
  // sums of the other block stay as without it.
  void nonFiniteBlock() {
    const QuantPlan plan = hadamard_plan();
    SiteStatsTaps taps(plan, nullptr, 1, 2);
    taps.begin_window(0);
    RowMatrixXf x = test_matrix(2, 40, 41);
    x(0, 35) = std::numeric_limits<float>::quiet_NaN();
    const RowMatrixXf row1 = x.row(1);
    taps.on_activations(0, Site::Down, x);
    const SiteStats& st = taps.stats()[0][size_t(Site::Down)];
    QCOMPARE(st.e8m0_hist_before[256 + 0xFF], 1u);
    const Expected e = expected_stats(row1, {});
    for (int byte = 0; byte < 255; ++byte)
      QCOMPARE(st.e8m0_hist_before[size_t(256 + byte)], e.hist[size_t(256 + byte)]);
    QVERIFY(std::isfinite(st.signal_before[0]) && std::isfinite(st.noise_before[0]));
  }

  // One row per call (the reference forward's way), several threads, or one call per window:
  // the same statistics bit for bit.
  void rowByRowAndThreadsAgree() {
    const QuantPlan plan = hadamard_plan();
    const int windows = 3, seqlen = 40;
    std::vector<RowMatrixXf> xs;
    for (int w = 0; w < windows; ++w) xs.push_back(test_matrix(seqlen, 64, 20 + uint32_t(w)));
    auto run = [&](int threads, bool per_row) {
      SiteStatsOptions o;
      o.threads = threads;
      o.parallel_min_elements = 0;
      o.max_sample_rows = 17;
      o.seed = 5;
      auto taps = std::make_unique<SiteStatsTaps>(plan, nullptr, windows, seqlen, o);
      for (int w = 0; w < windows; ++w) {
        taps->begin_window(w);
        if (per_row) {
          for (int r = 0; r < seqlen; ++r) {
            RowMatrixXf row = xs[size_t(w)].row(r);
            taps->on_activations(0, Site::Qkv, row);
          }
        } else {
          RowMatrixXf x = xs[size_t(w)];
          taps->on_activations(0, Site::Qkv, x);
        }
      }
      return taps->take_stats();
    };
    const ModelSiteStats one = run(1, false);
    check_same(run(2, false)[0][0], one[0][0]);
    check_same(run(1, true)[0][0], one[0][0]);
    QCOMPARE(int(one[0][0].sample_tokens.size()), 17);
  }

  void samplePositions() {
    const QuantPlan plan = hadamard_plan();
    SiteStatsOptions o;
    o.max_sample_rows = 10;
    o.seed = 1;
    const auto a = SiteStatsTaps(plan, nullptr, 4, 25, o).stats()[0][0].sample_tokens;
    QCOMPARE(SiteStatsTaps(plan, nullptr, 4, 25, o).stats()[0][0].sample_tokens, a);
    o.seed = 2;
    QVERIFY(SiteStatsTaps(plan, nullptr, 4, 25, o).stats()[0][0].sample_tokens != a);
    // Evenly spread: one position in each tenth of the 100 positions.
    for (size_t i = 0; i < a.size(); ++i)
      QVERIFY(a[i] >= int64_t(10 * i) && a[i] < int64_t(10 * (i + 1)));
    // More rows allowed than positions: every position once.
    o.max_sample_rows = 1000;
    const auto all = SiteStatsTaps(plan, nullptr, 2, 7, o).stats()[0][0].sample_tokens;
    QCOMPARE(int(all.size()), 14);
    for (int i = 0; i < 14; ++i) QCOMPARE(all[size_t(i)], int64_t(i));
  }

  void sqnrAndSpread() {
    SiteStats st;
    st.signal_before = {100.0, 0.0, 5.0};
    st.noise_before = {1.0, 1.0, 0.0};
    const auto db = st.sqnr_db_before();
    QCOMPARE(db[0], 20.0);
    QVERIFY(std::isnan(db[1]));
    QVERIFY(std::isinf(db[2]) && db[2] > 0);
    QVERIFY(close(st.total_sqnr_db_before(), 10 * std::log10(105.0 / 2.0), 1e-12));
    // Spread: blocks with max 1 (byte 125), 16 (129) and 0.25 (123) → 6; 2, 2, 2 → 0.
    st.channels = 96;
    st.blocks = 3;
    st.sample_before = RowMatrixXf::Zero(2, 96);
    st.sample_before(0, 5) = 1.0f;
    st.sample_before(0, 40) = -16.0f;
    st.sample_before(0, 70) = 0.25f;
    st.sample_before(1, 0) = st.sample_before(1, 32) = st.sample_before(1, 64) = 2.0f;
    QCOMPARE(st.sample_e8m0_before({}), (std::vector<uint8_t>{125, 129, 123, 126, 126, 126}));
    QCOMPARE(st.mean_exponent_spread_before(), 3.0);
  }

  // With W4a4Taps inside, the x the forward continues with is what W4a4Taps alone makes, and
  // weights come from it; without an inner tap, no override.
  void innerTaps() {
    const QuantPlan plan = hadamard_plan(QuantScheme::make(QuantMode::w4a4));
    W4a4Taps alone(plan), inner(plan);
    SiteStatsTaps taps(plan, &inner, 1, 8);
    taps.begin_window(0);
    for (Site s : {Site::Qkv, Site::Down}) {
      const RowMatrixXf x0 = test_matrix(8, plan.site_channels(s), 9);
      RowMatrixXf x1 = x0, x2 = x0;
      taps.on_activations(0, s, x1);
      alone.on_activations(0, s, x2);
      QVERIFY(x1 == x2);
      QVERIFY(x1 != x0);
      // Statistics are of the incoming x, not of what the inner tap made of it.
      QCOMPARE(taps.stats()[0][size_t(s)].absmax_before, expected_stats(x0, {}).absmax);
    }
    const RowMatrixXf w = test_matrix(64, 64, 10);
    const std::span<const float> ws(w.data(), size_t(w.size()));
    const float* a = taps.weight_override(0, Linear::Q, ws, 64, 64);
    const float* b = alone.weight_override(0, Linear::Q, ws, 64, 64);
    QVERIFY(a && b);
    QVERIFY(std::equal(a, a + w.size(), b));
    SiteStatsTaps bare(plan, nullptr, 1, 8);
    QVERIFY(bare.weight_override(0, Linear::Q, ws, 64, 64) == nullptr);
  }

  void errors() {
    const QuantPlan plan = hadamard_plan();
    QVERIFY_THROWS_EXCEPTION(Error, SiteStatsTaps(plan, nullptr, -1, 8));
    QVERIFY_THROWS_EXCEPTION(Error, SiteStatsTaps(plan, nullptr, 1, 0));
    SiteStatsTaps taps(plan, nullptr, 1, 8);
    QVERIFY_THROWS_EXCEPTION(Error, taps.begin_window(-1));
    RowMatrixXf wrong = test_matrix(2, 48, 1);
    QVERIFY_THROWS_EXCEPTION(Error, taps.on_activations(0, Site::Qkv, wrong));
    RowMatrixXf x = test_matrix(2, 64, 1);
    QVERIFY_THROWS_EXCEPTION(Error, taps.on_activations(1, Site::Qkv, x));
  }

  // A real forward of the 656K model over 2 windows of 64 tokens: absmax before equals
  // ActAbsMaxTaps', after equals before (no transforms), and the reference forward (one row
  // per call) samples the same positions with the same rows up to forward rounding.
  void realForward656k() {
    const int seqlen = 64, windows = 2;
    const Text656k m = load_656k(size_t(seqlen * windows));
    const LlamaConfig& cfg = m.weights->config();
    const QuantPlan plan(cfg, QuantScheme{});
    SiteStatsOptions o;
    o.max_sample_rows = 12;
    SiteStatsTaps taps(plan, nullptr, windows, seqlen, o);
    SiteStatsTaps ref_taps(plan, nullptr, windows, seqlen, o);
    ActAbsMaxTaps act(cfg);
    LlamaForward fwd(*m.weights);
    for (int w = 0; w < windows; ++w) {
      const std::span<const int32_t> ids(m.ids.data() + w * seqlen, size_t(seqlen));
      taps.begin_window(w);
      fwd.hidden(ids, &taps);
      fwd.hidden(ids, &act);
      ref_taps.begin_window(w);
      forward_ref(*m.ckpt, ids, &ref_taps);
    }
    for (int l = 0; l < cfg.num_layers; ++l)
      for (Site s : kAllSites) {
        const SiteStats& st = taps.stats()[size_t(l)][size_t(s)];
        QCOMPARE(st.tokens, int64_t(seqlen * windows));
        QCOMPARE(st.absmax_before, act.absmax(l, s));
        QCOMPARE(st.absmax_after, st.absmax_before);
        QCOMPARE(st.e8m0_hist_after, st.e8m0_hist_before);
        QVERIFY(st.total_sqnr_db_before() > 5 && st.total_sqnr_db_before() < 40);
        const SiteStats& rs = ref_taps.stats()[size_t(l)][size_t(s)];
        QCOMPARE(rs.tokens, st.tokens);
        QCOMPARE(rs.sample_tokens, st.sample_tokens);
        QCOMPARE(st.sample_before.rows(), Eigen::Index(12));
        const float scale = st.sample_before.cwiseAbs().maxCoeff();
        QVERIFY(scale > 0);
        QVERIFY((rs.sample_before - st.sample_before).cwiseAbs().maxCoeff() < 1e-3f * scale);
        for (size_t c = 0; c < st.absmax_before.size(); ++c)
          QVERIFY(std::fabs(rs.absmax_before[c] - st.absmax_before[c]) <= 1e-3f * scale);
      }
  }
};

QTEST_GUILESS_MAIN(TestCalibStats)
#include "test_calib_stats.moc"
