// Calibration and comparison (algorithm.md §3-§7, §10.6, §10.9, §10b) on the shared 656K model
// with a few short windows: every method's transforms keep the FP logits with quantization off,
// every rotation is orthogonal, calibrations are deterministic and their seeds matter, the
// search data propagates through the quantized layers (§4.6), QuaRot rejects a size without a
// Hadamard, sites the rotation block does not divide stay unrotated with a warning, compare
// evaluates only windows before a same-text calibration region and reports KL, and
// cancellation and bad inputs are errors.
// GCC 12: false -Wmaybe-uninitialized inside AVX-512 intrinsics inlined from Eigen reductions.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#include <QtTest>

#include <atomic>
#include <cmath>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <set>

#include "core/calib/calibrate.h"
#include "core/calib/compare.h"
#include "core/calib/method.h"
#include "core/calib/search_input.h"
#include "core/io/model_fingerprint.h"
#include "core/model/checkpoint.h"
#include "core/model/forward.h"
#include "core/quant/quant_plan.h"
#include "core/quant/w4a4_taps.h"
#include "core/rotation/greedy_search.h"
#include "core/text/tokenizer.h"
#include "core/util/error.h"
#include "tests/test_data.h"

using namespace mxlens;

namespace {

// Transforms with quantization off: max |Δlogit| / max |logit| (algorithm.md §10.9).
constexpr double kEquivalenceRelTol = 1e-4;
// ‖TTᵀ − I‖ (largest entry) of every rotation in float32 (algorithm.md §10.6).
constexpr double kOrthogonalityTol = 1e-5;
constexpr int kWindows = 4;
constexpr int kSeqlen = 64;
constexpr int kSteps = 16;

int channels_of(const LlamaConfig& c, Site s) {
  return s == Site::Qkv || s == Site::GateUp ? c.hidden_size
         : s == Site::O                      ? c.num_heads * c.head_dim
                                             : c.intermediate_size;
}

double rel_error(const RowMatrixXf& a, const RowMatrixXf& ref) {
  return double((a - ref).cwiseAbs().maxCoeff()) / double(ref.cwiseAbs().maxCoeff());
}

// Records one site's input of one layer as it arrives, then hands it to the wrapped tap.
class CaptureTaps : public SiteTaps {
 public:
  CaptureTaps(int layer, Site site, SiteTaps* inner) : layer_(layer), site_(site), inner_(inner) {}
  void on_activations(int layer, Site site, Eigen::Ref<RowMatrixXf> x) override {
    if (layer == layer_ && site == site_) captured = x;
    if (inner_) inner_->on_activations(layer, site, x);
  }
  const float* weight_override(int layer, Linear linear, std::span<const float> w, int out,
                               int in) override {
    return inner_ ? inner_->weight_override(layer, linear, w, out, in) : nullptr;
  }
  RowMatrixXf captured;

 private:
  int layer_;
  Site site_;
  SiteTaps* inner_;
};

// The objective of a [T, C] site tensor seen as blocks of 32 (algorithm.md §4.4).
double block_objective(const RowMatrixXf& x) {
  const Eigen::Map<const RowMatrixXf> z(x.data(), x.size() / 32, 32);
  return greedy_objective(z, GreedyObjective::range);
}

bool same_floats(const Eigen::MatrixXf& a, const Eigen::MatrixXf& b) {
  return a.rows() == b.rows() && a.cols() == b.cols() &&
         (a.size() == 0 || std::memcmp(a.data(), b.data(), size_t(a.size()) * sizeof(float)) == 0);
}

bool same_transform(const ChannelTransform& a, const ChannelTransform& b) {
  if (a.steps().size() != b.steps().size()) return false;
  for (size_t i = 0; i < a.steps().size(); ++i) {
    const auto &x = a.steps()[i], &y = b.steps()[i];
    if (x.kind != y.kind || !same_floats(x.rotation, y.rotation) ||
        x.permutation != y.permutation || x.channels != y.channels || x.sign_seed != y.sign_seed ||
        x.signs != y.signs)
      return false;
  }
  return true;
}

bool same_transforms(const Session& a, const Session& b) {
  if (a.transforms.size() != b.transforms.size()) return false;
  for (size_t l = 0; l < a.transforms.size(); ++l)
    for (Site s : kAllSites) {
      const SiteTransform &x = a.transforms[l].site(s), &y = b.transforms[l].site(s);
      if (x.smooth != y.smooth || x.smooth_fold != y.smooth_fold ||
          !same_transform(x.rotation, y.rotation))
        return false;
    }
  return true;
}

bool same_traces(const Session& a, const Session& b) {
  if (a.searches.size() != b.searches.size()) return false;
  for (size_t l = 0; l < a.searches.size(); ++l)
    for (size_t s = 0; s < 4; ++s) {
      const SiteSearch &x = a.searches[l][s], &y = b.searches[l][s];
      if (x.permutation != y.permutation || x.traces.size() != y.traces.size()) return false;
      for (size_t t = 0; t < x.traces.size(); ++t) {
        const GreedyTrace &p = x.traces[t], &q = y.traces[t];
        if (p.best_step != q.best_step || p.q_seed != q.q_seed ||
            p.objectives() != q.objectives() || p.channels() != q.channels())
          return false;
      }
    }
  return true;
}

bool same_stats(const Session& a, const Session& b) {
  if (a.stats.size() != b.stats.size()) return false;
  for (size_t l = 0; l < a.stats.size(); ++l)
    for (size_t s = 0; s < 4; ++s) {
      const SiteStats &x = a.stats[l][s], &y = b.stats[l][s];
      if (x.tokens != y.tokens || x.absmax_before != y.absmax_before ||
          x.absmax_after != y.absmax_after || x.mean_before != y.mean_before ||
          x.rms_before != y.rms_before || x.e8m0_hist_before != y.e8m0_hist_before ||
          x.e8m0_hist_after != y.e8m0_hist_after || x.noise_after != y.noise_after ||
          x.signal_after != y.signal_after || x.sample_tokens != y.sample_tokens ||
          !same_floats(x.sample_before, y.sample_before) ||
          !same_floats(x.sample_after, y.sample_after))
        return false;
    }
  return true;
}

std::vector<int32_t> pseudo_random_ids(int n, int vocab, uint32_t seed) {
  std::vector<int32_t> ids(static_cast<size_t>(n));
  for (auto& t : ids) {
    seed = seed * 1664525u + 1013904223u;
    t = int32_t((seed >> 8) % uint32_t(vocab));
  }
  return ids;
}

}  // namespace

class TestCalibrate : public QObject {
  Q_OBJECT

  std::unique_ptr<Checkpoint> ckpt_;
  std::unique_ptr<LlamaWeights> weights_;
  std::vector<int32_t> ids_;     // in-domain text: calibration and evaluation
  std::vector<int32_t> window_;  // one evaluation window before the calibration region
  CalibrationSettings base_;
  std::map<Method, Session> sessions_;

  const LlamaConfig& cfg() const { return weights_->config(); }
  CalibrationText text() const { return {"stories.txt", "sha-of-stories", ids_}; }

  Session run(const CalibrationSettings& s, const Progress& progress = {}) const {
    return calibrate(*ckpt_, *weights_, text(), s, 1, progress);
  }
  CalibrationSettings settings(Method m) const {
    CalibrationSettings s = base_;
    s.method = m;
    return s;
  }

 private slots:
  void initTestCase() {
    ckpt_ = std::make_unique<Checkpoint>(Checkpoint::open(test::model_656k()));
    weights_ = std::make_unique<LlamaWeights>(*ckpt_);
    const Tokenizer tok = Tokenizer::load(*ckpt_->tokenizer_json());
    std::ifstream f(test::data_dir() / "tinystories-text" / "stories.txt");
    const std::string all((std::istreambuf_iterator<char>(f)), {});
    ids_ = tok.encode(all.substr(0, 12000));
    QVERIFY(ids_.size() > 2000);
    window_.assign(ids_.begin(), ids_.begin() + 128);

    base_.windows.count = kWindows;
    base_.windows.seqlen = kSeqlen;
    base_.windows.tail_fraction = 0.5;
    base_.greedy.max_steps = kSteps;
    base_.duquant.max_steps = kSteps;
    base_.stats.max_sample_rows = 16;
    for (Method m : kAllMethods) sessions_[m] = run(settings(m));
  }

  // What every session records: windows in the tail region, provenance, stats, timings.
  void sessionContents() {
    const std::string config_json = [&] {
      std::ifstream f(test::model_656k() / "config.json", std::ios::binary);
      return std::string((std::istreambuf_iterator<char>(f)), {});
    }();
    const ModelFingerprint fp = model_fingerprint(*ckpt_);
    for (const auto& [m, s] : sessions_) {
      const QByteArray name(method_name(m).data(), qsizetype(method_name(m).size()));
      QVERIFY2(s.settings.method == m, name);
      QCOMPARE(s.settings.windows.seqlen, kSeqlen);
      QCOMPARE(int(s.data.window_offsets.size()), kWindows);
      QCOMPARE(s.data.text_tokens, int64_t(ids_.size()));
      QVERIFY(s.data.region.begin >= int64_t(ids_.size()) / 2 - 1);
      for (int64_t o : s.data.window_offsets)
        QVERIFY(o >= s.data.region.begin && o + kSeqlen <= s.data.region.end);
      QCOMPARE(s.provenance.config_json, config_json);
      QVERIFY(s.provenance.fingerprint == fp);
      QVERIFY(!s.provenance.mxlens_version.empty());
      QCOMPARE(s.provenance.created_utc.size(), size_t(20));  // 2025-01-02T03:04:05Z
      QCOMPARE(s.provenance.created_utc.back(), 'Z');
      QCOMPARE(s.config.hidden_size, cfg().hidden_size);
      QVERIFY2(s.warnings.empty(), name);
      QCOMPARE(int(s.stats.size()), cfg().num_layers);
      for (const auto& layer : s.stats)
        for (const SiteStats& st : layer) QCOMPARE(st.tokens, int64_t(kWindows * kSeqlen));
      QVERIFY(s.timings.total > 0);
      QVERIFY(s.timings.total >=
              s.timings.forward + s.timings.search + s.timings.gptq + s.timings.statistics);
      QCOMPARE(s.timings.forward > 0, method_smooths(m));
      QCOMPARE(s.timings.search > 0, method_searches(m));
      QCOMPARE(s.timings.gptq > 0, method_uses_gptq(m));
      QCOMPARE(s.settings.scheme.mode(), m == Method::fp ? QuantMode::none : QuantMode::w4a4);
      QCOMPARE(int(s.weights.size()), method_uses_gptq(m) ? cfg().num_layers : 0);
      QCOMPARE(int(s.searches.size()), method_searches(m) ? cfg().num_layers : 0);
    }
    // The statistics ran through the quantized model: RTN's "after" differs from FP's.
    QVERIFY(sessions_[Method::rtn].stats[1][0].absmax_before !=
            sessions_[Method::fp].stats[1][0].absmax_before);
    for (const auto& layer : sessions_[Method::duquantpp_gptq].weights)
      for (const auto& w : layer) QVERIFY(w.has_value());
  }

  // Which sites each method transforms.
  void transformsPerMethod() {
    const Session& fp = sessions_[Method::fp];
    QVERIFY(fp.transforms.empty());
    QVERIFY(sessions_[Method::rtn].transforms.empty());
    for (Method m : kAllMethods) {
      if (m == Method::fp || m == Method::rtn) continue;
      const Session& s = sessions_[m];
      QCOMPARE(int(s.transforms.size()), cfg().num_layers);
      for (const LayerTransforms& lt : s.transforms)
        for (Site site : kAllSites) {
          const SiteTransform& t = lt.site(site);
          const bool smoothed = method_smooths(m) || (m == Method::quarot &&
                                                      (site == Site::Qkv || site == Site::GateUp));
          QCOMPARE(t.has_smoothing(), smoothed);
          // A search may keep no step (k* = 0 → R = I) but still sets the rotation.
          QCOMPARE(t.has_rotation(), m != Method::smooth);
        }
    }
    // DuQuant: R₁, P, R₂ with two traces per site; DuQuant++: one trace.
    for (const auto& layer : sessions_[Method::duquant].searches)
      for (const SiteSearch& ss : layer) {
        QCOMPARE(int(ss.traces.size()), 2);
        QVERIFY(!ss.permutation.empty());
        QCOMPARE(ss.traces[0].max_steps(), kSteps);
      }
    for (const auto& layer : sessions_[Method::duquantpp].searches)
      for (const SiteSearch& ss : layer) {
        QCOMPARE(int(ss.traces.size()), 1);
        QCOMPARE(ss.traces[0].max_steps(), kSteps);
        QVERIFY(ss.traces[0].objectives()[size_t(ss.traces[0].best_step)] <=
                ss.traces[0].objectives()[0]);
      }
    // QuaRot: one residual Q at qkv and gu of every layer.
    const Session& q = sessions_[Method::quarot];
    const auto& step = q.transforms[0].site(Site::Qkv).rotation.steps().at(0);
    QCOMPARE(int(step.kind), int(ChannelTransform::StepKind::FullHadamard));
    for (const LayerTransforms& lt : q.transforms) {
      QCOMPARE(lt.site(Site::GateUp).rotation.steps().at(0).sign_seed, step.sign_seed);
      QCOMPARE(lt.site(Site::Qkv).rotation.steps().at(0).sign_seed, step.sign_seed);
    }
    QVERIFY(q.transforms[0].site(Site::Down).rotation.steps().at(0).sign_seed !=
            q.transforms[1].site(Site::Down).rotation.steps().at(0).sign_seed);
  }

  // (a) With quantization off, every session's transforms reproduce the FP logits; the
  // quantized plan does not (so the comparison can fail).
  void equivalence() {
    LlamaForward fwd(*weights_);
    const RowMatrixXf ref = fwd.logits_all(window_);
    for (const auto& [m, s] : sessions_) {
      const QByteArray name(method_name(m).data(), qsizetype(method_name(m).size()));
      // GPTQ's weights are not the FP ones: its transforms alone.
      const QuantPlan plan(cfg(), QuantScheme::make(QuantMode::none), s.transforms);
      W4a4Taps taps(plan);
      const double err = rel_error(fwd.logits_all(window_, &taps), ref);
      QVERIFY2(err < kEquivalenceRelTol, name + " " + QByteArray::number(err));
      if (m == Method::fp) continue;
      const QuantPlan quant = make_plan(s, cfg());
      W4a4Taps qtaps(quant);
      QVERIFY2(rel_error(fwd.logits_all(window_, &qtaps), ref) > 10 * kEquivalenceRelTol, name);
    }
  }

  // Tied GQA smoothing (--smooth-gqa tied): the o site's s is equal across the query heads
  // sharing a KV head and folds into v_proj rows (no online division), the model is still
  // FP-equivalent, and the factors differ from the untied ones (so the option does something).
  void tiedGqaSmoothing() {
    QVERIFY(cfg().num_kv_heads < cfg().num_heads);  // the 656K model is GQA
    CalibrationSettings st = settings(Method::duquantpp);
    st.smoothing.tie_gqa = true;
    const Session tied = run(st);
    const Session& untied = sessions_.at(Method::duquantpp);
    for (int l = 0; l < cfg().num_layers; ++l) {
      const SiteTransform& o = tied.transforms[size_t(l)].site(Site::O);
      QCOMPARE(o.smooth_fold, SmoothFold::previous_rows);
      QVERIFY(smoothing_tied_across_groups(o.smooth, cfg().head_dim, cfg().kv_group()));
      QCOMPARE(untied.transforms[size_t(l)].site(Site::O).smooth_fold, SmoothFold::online);
      QVERIFY(!smoothing_tied_across_groups(untied.transforms[size_t(l)].site(Site::O).smooth,
                                            cfg().head_dim, cfg().kv_group()));
      // Per group and offset, s comes from the maxima over the group's heads.
      for (Site site : {Site::Qkv, Site::GateUp, Site::Down})
        QCOMPARE(tied.transforms[size_t(l)].site(site).smooth,
                 untied.transforms[size_t(l)].site(site).smooth);
    }
    LlamaForward fwd(*weights_);
    const RowMatrixXf ref = fwd.logits_all(window_);
    const QuantPlan plan(cfg(), QuantScheme::make(QuantMode::none), tied.transforms);
    W4a4Taps taps(plan);
    const double err = rel_error(fwd.logits_all(window_, &taps), ref);
    QVERIFY2(err < kEquivalenceRelTol, QByteArray::number(err));
    // The settings round-trip through JSON, and an untied s is refused as a v fold.
    QVERIFY(settings_from_json(settings_to_json(tied.settings), "t").smoothing.tie_gqa);
    std::vector<LayerTransforms> bad = untied.transforms;
    bad[0].site(Site::O).smooth_fold = SmoothFold::previous_rows;
    QVERIFY_THROWS_EXCEPTION(Error, QuantPlan(cfg(), QuantScheme::make(QuantMode::none), bad));
  }

  // (b) Every rotation is orthogonal in float32, every permutation a permutation.
  void rotationsOrthogonal() {
    int checked = 0;
    for (const auto& [m, s] : sessions_) {
      for (size_t l = 0; l < s.transforms.size(); ++l)
        for (Site site : kAllSites) {
          const ChannelTransform& t = s.transforms[l].site(site).rotation;
          if (t.empty()) continue;
          const int c = channels_of(cfg(), site);
          const Eigen::MatrixXf d = t.dense(c).cast<float>();
          const Eigen::MatrixXf e = d * d.transpose() - Eigen::MatrixXf::Identity(c, c);
          QVERIFY2(e.cwiseAbs().maxCoeff() < kOrthogonalityTol, method_name(m).data());
          ++checked;
        }
      for (const auto& layer : s.searches)
        for (const SiteSearch& ss : layer) {
          for (const GreedyTrace& tr : ss.traces) {
            const Eigen::MatrixXf r = tr.rotation();
            const Eigen::MatrixXf e =
                r * r.transpose() - Eigen::MatrixXf::Identity(r.rows(), r.cols());
            QVERIFY(e.cwiseAbs().maxCoeff() < kOrthogonalityTol);
          }
          if (!ss.permutation.empty()) {
            std::set<int32_t> seen(ss.permutation.begin(), ss.permutation.end());
            QCOMPARE(seen.size(), ss.permutation.size());
            QCOMPARE(*seen.begin(), 0);
            QCOMPARE(*seen.rbegin(), int32_t(ss.permutation.size()) - 1);
          }
        }
    }
    // hadamard, random, quarot, duquant and the three DuQuant++: every site of every layer.
    QCOMPARE(checked, 7 * cfg().num_layers * 4);
  }

  // (c) Same settings → bit-identical transforms, traces and statistics; another seed →
  // other random and DuQuant++ rotations.
  void deterministic() {
    for (Method m : {Method::random, Method::duquant, Method::duquantpp, Method::duquantpp_gptq}) {
      const Session again = run(settings(m));
      const Session& first = sessions_[m];
      QVERIFY2(same_transforms(again, first), method_name(m).data());
      QVERIFY2(same_traces(again, first), method_name(m).data());
      QVERIFY2(same_stats(again, first), method_name(m).data());
      for (size_t l = 0; l < first.weights.size(); ++l)
        for (size_t k = 0; k < 7; ++k)
          QVERIFY(same_floats(*again.weights[l][k], *first.weights[l][k]));
    }
    CalibrationSettings r = settings(Method::random);
    r.rotation_seed = 1;
    QVERIFY(!same_transforms(run(r), sessions_[Method::random]));
    CalibrationSettings g = settings(Method::duquantpp);
    g.greedy.seed = 1;
    const Session other = run(g);
    QVERIFY(!same_transforms(other, sessions_[Method::duquantpp]));
    QVERIFY(!same_traces(other, sessions_[Method::duquantpp]));
    // Another window seed draws other windows, so other statistics.
    CalibrationSettings w = settings(Method::rtn);
    w.windows.seed = 3;
    const Session ws = run(w);
    QVERIFY(ws.data.window_offsets != sessions_[Method::rtn].data.window_offsets);
    QVERIFY(!same_stats(ws, sessions_[Method::rtn]));
  }

  // (d) §4.6: the layer-1 qkv search ran on the mean sequence after quantized layer 0 — its
  // first objective is that of the smoothed layer-1 input under the final W4A4 plan, not that
  // of the FP model's; layer 0's is the FP one (nothing upstream is quantized).
  void searchPropagatesThroughQuantizedLayers() {
    const Session& s = sessions_[Method::duquantpp];
    Eigen::MatrixXd sum = Eigen::MatrixXd::Zero(kSeqlen, cfg().hidden_size);
    RowMatrixXf e;
    for (int64_t off : s.data.window_offsets) {
      weights_->embed(std::span<const int32_t>(ids_).subspan(size_t(off), kSeqlen), e);
      sum += e.cast<double>();
    }
    const RowMatrixXf x0 = (sum / double(kWindows)).cast<float>();
    // Smoothing only, to see the tensor as the search saw it.
    std::vector<LayerTransforms> smooth_only = s.transforms;
    for (auto& lt : smooth_only)
      for (auto& st : lt.sites) st.rotation = ChannelTransform();
    const QuantPlan smoothing(cfg(), QuantScheme::make(QuantMode::none), smooth_only);
    auto search_input = [&](int layer, SiteTaps* inner) {
      CaptureTaps cap(layer, Site::Qkv, inner);
      LlamaForward(*weights_).hidden_from_embeddings(x0, &cap);
      RowMatrixXf x = cap.captured;
      smoothing.transform_activations(layer, Site::Qkv, x);
      return block_objective(x);
    };
    const QuantPlan plan = make_plan(s, cfg());
    W4a4Taps quant(plan);
    const double traced1 = s.searches[1][0].traces[0].objectives()[0];
    const double quant1 = search_input(1, &quant);
    const double fp1 = search_input(1, nullptr);
    QVERIFY2(std::abs(traced1 - quant1) <= 1e-6 * std::abs(quant1),
             QByteArray::number(traced1) + " vs " + QByteArray::number(quant1));
    QVERIFY2(std::abs(traced1 - fp1) > 1e-4 * std::abs(fp1),
             QByteArray::number(traced1) + " vs FP " + QByteArray::number(fp1));
    const double traced0 = s.searches[0][0].traces[0].objectives()[0];
    QVERIFY(std::abs(traced0 - search_input(0, nullptr)) <= 1e-6 * std::abs(traced0));
  }

  // (e) QuaRot needs a Hadamard of every site size: stories260K's 172-wide down site has none.
  // Block rotations leave that site unrotated and say so.
  void stories260k() {
    const Checkpoint ck = Checkpoint::open(test::model_260k());
    const LlamaWeights w(ck);
    const std::vector<int32_t> ids = pseudo_random_ids(1000, w.config().vocab_size, 3);
    const CalibrationText t{"random ids", "sha-random", ids};
    CalibrationSettings s = settings(Method::quarot);
    s.stats_windows = 1;
    try {
      calibrate(ck, w, t, s, 1);
      QFAIL("quarot on stories260K did not throw");
    } catch (const Error& e) {
      QCOMPARE(QString::fromStdString(e.source()), QString("quarot"));
      QVERIFY2(e.problem().find("full Hadamard of size 172 unsupported") != std::string::npos,
               e.what());
    }
    for (Method m : {Method::hadamard, Method::duquantpp}) {
      s.method = m;
      const Session h = calibrate(ck, w, t, s, 1);
      QCOMPARE(int(h.warnings.size()), 1);
      QVERIFY2(h.warnings[0].find("down") != std::string::npos &&
                   h.warnings[0].find("172") != std::string::npos,
               h.warnings[0].c_str());
      for (const LayerTransforms& lt : h.transforms) {
        QVERIFY(!lt.site(Site::Down).has_rotation());
        QVERIFY(lt.site(Site::Qkv).has_rotation() && lt.site(Site::O).has_rotation() &&
                lt.site(Site::GateUp).has_rotation());
      }
      // Still equivalent with quantization off.
      const std::vector<int32_t> win(ids.begin(), ids.begin() + 64);
      LlamaForward fwd(w);
      const QuantPlan plan(w.config(), QuantScheme::make(QuantMode::none), h.transforms);
      W4a4Taps taps(plan);
      QVERIFY(rel_error(fwd.logits_all(win, &taps), fwd.logits_all(win)) < kEquivalenceRelTol);
    }
    // GPTQ needs whole 32-column groups.
    s.method = Method::duquantpp_gptq;
    try {
      calibrate(ck, w, t, s, 1);
      QFAIL("duquantpp-gptq on stories260K did not throw");
    } catch (const Error& e) {
      QCOMPARE(QString::fromStdString(e.source()), QString("duquantpp-gptq"));
      QVERIFY2(e.problem().find("site down") != std::string::npos &&
                   e.problem().find("172") != std::string::npos,
               e.what());
    }
    // DuQuant's 128-blocks fit no site of this model (64, 64, 64, 172 channels).
    s.method = Method::duquant;
    const Session d = calibrate(ck, w, t, s, 1);
    QCOMPARE(int(d.warnings.size()), 4);
    for (const LayerTransforms& lt : d.transforms)
      for (const SiteTransform& st : lt.sites) QVERIFY(!st.has_rotation() && st.has_smoothing());
  }

  // (f) compare on the same text: FP first, evaluation windows before the calibration region,
  // KL > 0 for quantized methods, 0 for transforms without quantization, one event per window.
  void compareSameText() {
    CompareOptions o;
    o.methods = {Method::rtn, Method::fp, Method::hadamard};
    o.calibration = base_;
    o.seqlen = kSeqlen;
    o.max_windows = 2;
    std::map<Method, std::vector<int64_t>> seen;
    std::vector<Method> finished;
    int stages = 0;
    CompareEvents ev;
    ev.on_window = [&](Method m, const WindowResult& w) { seen[m].push_back(w.window); };
    ev.on_method = [&](const MethodResult& r) { finished.push_back(r.method); };
    ev.on_stage = [&](double f, const std::string&) {
      QVERIFY(f >= 0 && f <= 1);
      ++stages;
    };
    const EvalText et{"stories.txt", "sha-of-stories", ids_};
    const CompareResult r = run_compare(*ckpt_, *weights_, et, text(), o, {}, ev);
    QCOMPARE(r.seqlen, kSeqlen);
    QCOMPARE(r.windows, int64_t(2));
    QVERIFY(r.eval_excludes_calibration_region);
    QVERIFY(!r.note.empty());
    QCOMPARE(int(r.methods.size()), 3);
    QCOMPARE(int(r.methods[0].method), int(Method::fp));
    QCOMPARE(int(r.methods[1].method), int(Method::rtn));
    QCOMPARE(int(r.methods[2].method), int(Method::hadamard));
    QCOMPARE(finished.size(), size_t(3));
    QVERIFY(stages >= 6);
    for (const MethodResult& m : r.methods) {
      QCOMPARE(seen[m.method], (std::vector<int64_t>{0, 1}));
      QCOMPARE(m.eval.windows, int64_t(2));
      QCOMPARE(m.session.data.region, r.methods[0].session.data.region);
      QVERIFY(r.windows * kSeqlen <= m.session.data.region.begin);
      QVERIFY(m.session.stats.empty());  // not collected by default
      QCOMPARE(int(m.session.results.size()), 1);
      QCOMPARE(m.session.results[0].window_nll, m.eval.window_nll);
    }
    QVERIFY(!r.methods[0].eval.kl.has_value());
    QCOMPARE(r.methods[0].delta_ppl, 0.0);
    for (int i : {1, 2}) {
      QVERIFY(r.methods[size_t(i)].eval.kl.has_value());
      QVERIFY(r.methods[size_t(i)].eval.kl->mean > 0);
      QCOMPARE(r.methods[size_t(i)].delta_ppl,
               r.methods[size_t(i)].eval.ppl - r.methods[0].eval.ppl);
    }
    // The region of a tail_fraction 0.5 calibration leaves about half of the ids before it.
    o.max_windows = 0;
    o.methods = {Method::fp};
    const CompareResult all = run_compare(*ckpt_, *weights_, et, text(), o);
    QCOMPARE(all.windows, eval_windows_before(all.methods[0].session.data.region, kSeqlen));
    QCOMPARE(int(all.methods.size()), 1);
    // Another calibration text: every window counts.
    const CalibrationText other{"other", "sha-other", ids_};
    const CompareResult free = run_compare(*ckpt_, *weights_, et, other, o);
    QVERIFY(!free.eval_excludes_calibration_region);
    QCOMPARE(free.windows, int64_t(ids_.size()) / kSeqlen);
    // Transforms without quantization: KL 0 up to float rounding.
    o.methods = {Method::hadamard};
    o.max_windows = 2;
    o.calibration.scheme = QuantScheme::make(QuantMode::none);
    o.collect_site_stats = true;
    const CompareResult none = run_compare(*ckpt_, *weights_, et, text(), o);
    QVERIFY(none.methods[1].eval.kl->mean < 1e-8);
    QCOMPARE(none.methods[1].eval.kl->top1_agreement, 1.0);
    QCOMPARE(int(none.methods[1].session.stats.size()), cfg().num_layers);
  }

  // (g) A set cancel flag stops calibration (before it starts and in the middle of a search)
  // and comparison.
  void cancel() {
    std::atomic<bool> flag{true};
    const Progress cancelled([](double, std::string_view) {}, &flag);
    QVERIFY_THROWS_EXCEPTION(Cancelled, run(settings(Method::rtn), cancelled));
    std::atomic<bool> later{false};
    int reports_after = 0;
    const Progress mid(
        [&](double, std::string_view stage) {
          if (later) ++reports_after;
          if (stage.find("search layer 1 o") != std::string_view::npos) later = true;
        },
        &later);
    QVERIFY_THROWS_EXCEPTION(Cancelled, run(settings(Method::duquantpp), mid));
    QVERIFY(reports_after < 3 * kSteps);
    later = false;
    const Progress mid_gptq(
        [&](double, std::string_view stage) {
          if (stage.find("GPTQ") != std::string_view::npos) later = true;
        },
        &later);
    QVERIFY_THROWS_EXCEPTION(Cancelled, run(settings(Method::duquantpp_gptq), mid_gptq));
    CompareOptions o;
    o.methods = {Method::rtn};
    o.calibration = base_;
    o.seqlen = kSeqlen;
    const EvalText et{"stories.txt", "sha-of-stories", ids_};
    QVERIFY_THROWS_EXCEPTION(Cancelled, run_compare(*ckpt_, *weights_, et, text(), o, cancelled));
  }

  // (h) Bad inputs.
  void errors() {
    const std::vector<int32_t> few(ids_.begin(), ids_.begin() + kSeqlen);
    const CalibrationText short_text{"short.txt", "sha-short", few};
    try {
      calibrate(*ckpt_, *weights_, short_text, settings(Method::rtn), 1);
      QFAIL("a text shorter than one window was accepted");
    } catch (const Error& e) {
      QCOMPARE(QString::fromStdString(e.source()), QString("short.txt"));
    }
    CalibrationSettings s = settings(Method::rtn);
    s.stats_windows = kWindows + 1;
    QVERIFY_THROWS_EXCEPTION(Error, run(s));
    s = settings(Method::rtn);
    s.windows.count = 0;
    QVERIFY_THROWS_EXCEPTION(Error, run(s));
    QVERIFY_THROWS_EXCEPTION(Error, calibrate(*ckpt_, *weights_, text(), base_, 0));

    CompareOptions o;
    o.calibration = base_;
    o.seqlen = kSeqlen;
    const EvalText et{"eval.txt", "sha-eval", ids_};
    try {
      run_compare(*ckpt_, *weights_, et, text(), o);
      QFAIL("an empty method list was accepted");
    } catch (const Error& e) {
      QCOMPARE(QString::fromStdString(e.source()), QString("--methods"));
    }
    o.methods = {Method::rtn};
    const EvalText tiny{"tiny.txt", "sha-tiny", std::span<const int32_t>(few).subspan(0, 10)};
    QVERIFY_THROWS_EXCEPTION(Error, run_compare(*ckpt_, *weights_, tiny, text(), o));
    // Same text, but the whole text is the calibration region: no window before it.
    o.calibration.windows.tail_fraction = 1.0;
    const EvalText same{"stories.txt", "sha-of-stories", ids_};
    QVERIFY_THROWS_EXCEPTION(Error, run_compare(*ckpt_, *weights_, same, text(), o));
  }

  // Method names, descriptions and lists.
  // The Greedy view's Z: sampled rows, smoothing divided where the forward divides online,
  // DuQuant's second search on x·R₁·P, one block per row.
  void searchInputBlocks() {
    const Session& pp = sessions_[Method::duquantpp];
    for (int l = 0; l < cfg().num_layers; ++l)
      for (Site site : kAllSites) {
        const SiteStats& st = pp.stats[size_t(l)][size_t(site)];
        const SiteTransform& t = pp.transforms[size_t(l)].site(site);
        QVERIFY(st.sample_before.rows() > 0);
        const RowMatrixXf z = search_input_blocks(pp, l, site);
        QCOMPARE(z.cols(), Eigen::Index(32));
        QCOMPARE(z.rows(), st.sample_before.rows() * st.channels / 32);
        // qkv/gu divide by s (norm fold stand-in), o divides online under GQA (656K has GQA);
        // the down input arrives already divided (W_up rows absorbed s).
        const bool divides = site != Site::Down && t.has_smoothing();
        double worst = 0;
        for (Eigen::Index r = 0; r < st.sample_before.rows(); ++r)
          for (int c = 0; c < st.channels; ++c) {
            const double want = divides
                                    ? double(st.sample_before(r, c)) / double(t.smooth[size_t(c)])
                                    : double(st.sample_before(r, c));
            const double got = z(r * (st.channels / 32) + c / 32, c % 32);
            worst = std::max(worst, std::abs(got - want) / std::max(1e-30, std::abs(want)));
          }
        QVERIFY2(worst < 1e-6,
                 qPrintable(QString("layer %1 site %2: %3")
                                .arg(l)
                                .arg(QString::fromStdString(std::string(site_name(site))))
                                .arg(worst)));
      }
    // Original DuQuant: blocks of 128 from x·R₁·P.
    const Session& dq = sessions_[Method::duquant];
    const SiteSearch& search = dq.searches[0][size_t(Site::GateUp)];
    QCOMPARE(search.traces.size(), size_t(2));
    const SiteStats& st = dq.stats[0][size_t(Site::GateUp)];
    const RowMatrixXf z = search_input_blocks(dq, 0, Site::GateUp);
    QCOMPARE(z.cols(), Eigen::Index(128));
    RowMatrixXf x = st.sample_before;
    const auto& s = dq.transforms[0].site(Site::GateUp).smooth;
    for (Eigen::Index c = 0; c < x.cols(); ++c) x.col(c) /= s[size_t(c)];
    const Eigen::MatrixXd R1 = search.traces.front().rotation().cast<double>();
    Eigen::MatrixXd y = x.cast<double>();
    for (Eigen::Index b = 0; b < y.cols() / 128; ++b)
      y.middleCols(b * 128, 128) = y.middleCols(b * 128, 128) * R1;
    double worst = 0;
    for (Eigen::Index r = 0; r < y.rows(); ++r)
      for (Eigen::Index j = 0; j < y.cols(); ++j) {
        const double want = y(r, search.permutation[size_t(j)]);
        const double got = z(r * (y.cols() / 128) + j / 128, j % 128);
        worst = std::max(worst, std::abs(got - want));
      }
    QVERIFY2(worst < 1e-4 * std::max(1.0, y.cwiseAbs().maxCoeff()),
             qPrintable(QString::number(worst)));
    // No trace (hadamard) or no samples: empty.
    QCOMPARE(search_input_blocks(sessions_[Method::hadamard], 0, Site::Qkv).size(),
             Eigen::Index(0));
    QCOMPARE(search_input_blocks(pp, 99, Site::Qkv).size(), Eigen::Index(0));
  }

  // The Outliers/Scales views following the stepper: at the kept step the rows equal the
  // statistics pass's transformed samples; at step 0 the plain search input.
  void siteStatsAtStep() {
    const Session& pp = sessions_[Method::duquantpp];
    for (int l = 0; l < cfg().num_layers; ++l)
      for (Site site : kAllSites) {
        const SiteStats& st = pp.stats[size_t(l)][size_t(site)];
        const GreedyTrace& trace = pp.searches[size_t(l)][size_t(site)].traces.back();
        const auto best = site_stats_at_step(pp, l, site, trace.best_step);
        QVERIFY(best.has_value());
        QCOMPARE(best->sample_after.rows(), st.sample_after.rows());
        const double scale = std::max(1e-6f, st.sample_after.cwiseAbs().maxCoeff());
        const double diff = (best->sample_after - st.sample_after).cwiseAbs().maxCoeff();
        QVERIFY2(
            diff < 1e-5 * scale,
            qPrintable(
                QString("layer %1 site %2: %3 of %4").arg(l).arg(int(site)).arg(diff).arg(scale)));
        QVERIFY(best->sample_before == st.sample_before);
        const auto start = site_stats_at_step(pp, l, site, 0);
        const RowMatrixXf z = search_input_blocks(pp, l, site);
        QVERIFY(Eigen::Map<const RowMatrixXf>(z.data(), st.sample_before.rows(), st.channels) ==
                start->sample_after);
        // Every per-block figure describes the sampled rows.
        QCOMPARE(best->tokens, st.sample_before.rows());
        for (int b = 0; b < best->blocks; ++b) {
          uint64_t before = 0, after = 0;
          for (int e = 0; e < 256; ++e) {
            before += best->e8m0_hist_before[size_t(b) * 256 + size_t(e)];
            after += best->e8m0_hist_after[size_t(b) * 256 + size_t(e)];
          }
          QCOMPARE(before, uint64_t(best->tokens));
          QCOMPARE(after, uint64_t(best->tokens));
          QVERIFY(best->noise_after[size_t(b)] > 0 && best->signal_after[size_t(b)] > 0);
        }
        for (int c = 0; c < st.channels; ++c)
          QCOMPARE(best->absmax_after[size_t(c)], best->sample_after.col(c).cwiseAbs().maxCoeff());
      }
    QVERIFY(!site_stats_at_step(sessions_[Method::rtn], 0, Site::Qkv, 0).has_value());
  }

  void methodNames() {
    std::set<std::string_view> names;
    for (Method m : kAllMethods) {
      QCOMPARE(int(parse_method(method_name(m))), int(m));
      QVERIFY(!method_description(m).empty());
      names.insert(method_name(m));
    }
    QCOMPARE(names.size(), std::size(kAllMethods));
    QCOMPARE(method_name(Method::duquantpp_gptq), std::string_view("duquantpp-gptq"));
    const std::vector<Method> list = parse_method_list("fp,rtn,duquantpp");
    QCOMPARE(int(list.size()), 3);
    QCOMPARE(int(list[2]), int(Method::duquantpp));
    for (const char* bad : {"", "fp,,rtn", "fp,fp", "fp,", "nope", "FP"})
      QVERIFY_THROWS_EXCEPTION(Error, parse_method_list(bad));
    try {
      parse_method("nope", "--method");
      QFAIL("unknown method accepted");
    } catch (const Error& e) {
      QCOMPARE(QString::fromStdString(e.source()), QString("--method"));
      QVERIFY(e.problem().find("duquantpp-gptq") != std::string::npos);
    }
    QVERIFY(method_quantizes(Method::rtn) && !method_quantizes(Method::fp));
    QVERIFY(method_smooths(Method::duquantpp) && !method_smooths(Method::duquantpp_nosmooth));
    QVERIFY(method_searches(Method::duquantpp_nosmooth) && !method_searches(Method::quarot));
    QVERIFY(method_uses_gptq(Method::duquantpp_gptq) && !method_uses_gptq(Method::duquantpp));
    QVERIFY(method_needs_statistics(Method::smooth) && !method_needs_statistics(Method::hadamard));
  }
};

QTEST_GUILESS_MAIN(TestCalibrate)
#include "test_calibrate.moc"
