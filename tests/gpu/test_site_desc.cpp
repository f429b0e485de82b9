// The CUDA forward's description of each site (gpu/src/site_desc_from_plan.h) against the CPU's
// QuantPlan, with no device: a host emulation of what the site kernels do with the description
// (online smoothing division, block rotations with R row-major in index order, permutations,
// full Hadamard as core's butterflies then the segment mix and signs·1/√n, then core's MXFP4
// activation quantizer) gives the activations of QuantPlan::transform_activations + W4a4Taps,
// for every method family calibrated on tinystories-656k, at every site of every layer. The
// device test (test_cuda_forward) then only has to show that the kernels do what the
// description says.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"  // GCC 12 + Eigen AVX-512 false positive

#include <QtTest>

#include <cmath>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "core/calib/calibrate.h"
#include "core/calib/session.h"
#include "core/model/checkpoint.h"
#include "core/quant/quant_plan.h"
#include "core/rotation/hadamard.h"
#include "core/text/tokenizer.h"
#include "gpu/src/site_desc_from_plan.h"
#include "tests/test_data.h"

using namespace mxlens;
namespace gd = mxlens::gpu::detail;

namespace {

// Float transforms in another summation order: |Δ| within a few ulps of the row's magnitude.
constexpr double kTransformRelTol = 2e-6;
// After quantization a value on a rounding threshold may land on either side: the share of
// elements that differ stays tiny.
constexpr double kQuantizedMismatchShare = 1e-3;

// What the device does with a SiteDesc, on the host (before quantization).
void emulate_transform(const gd::SiteDesc& d, RowMatrixXf& x) {
  const int C = d.channels;
  for (Eigen::Index r = 0; r < x.rows(); ++r) {
    float* row = x.row(r).data();
    if (d.scale_mode == gd::SiteScale::divide)
      for (int c = 0; c < C; ++c) row[c] = row[c] / d.scale[size_t(c)];
    std::vector<float> y(static_cast<size_t>(C));
    for (const gd::SiteStep& s : d.steps) {
      switch (s.kind) {
        case gd::SiteStep::Kind::block_rotation:
          for (int c = 0; c < C; ++c) {
            const int b = s.size, j = c % b;
            float acc = 0;
            for (int i = 0; i < b; ++i)
              acc = std::fma(row[c - j + i], s.matrix[size_t(i) * b + j], acc);
            y[size_t(c)] = acc;
          }
          std::copy(y.begin(), y.end(), row);
          break;
        case gd::SiteStep::Kind::permutation:
          for (int c = 0; c < C; ++c) y[size_t(c)] = row[s.indices[size_t(c)]];
          std::copy(y.begin(), y.end(), row);
          break;
        case gd::SiteStep::Kind::full_hadamard: {
          const int m = s.hadamard_m, k = s.hadamard_k;
          for (int a = 0; a < m; ++a) fwht(row + a * k, k);
          if (m > 1)
            for (int c = 0; c < k; ++c) {
              std::vector<float> in(static_cast<size_t>(m));
              for (int a = 0; a < m; ++a) in[size_t(a)] = row[a * k + c];
              for (int a = 0; a < m; ++a) {
                float acc = 0;
                for (int b = 0; b < m; ++b) acc += s.matrix[size_t(a) * m + b] * in[size_t(b)];
                row[a * k + c] = acc;
              }
            }
          for (int c = 0; c < C; ++c)
            row[c] *= s.signs.empty() ? s.hadamard_norm : s.hadamard_norm * s.signs[size_t(c)];
          break;
        }
      }
    }
  }
}

// Random activations with outlier channels, [rows, channels].
RowMatrixXf activations(int64_t rows, int channels, uint32_t seed) {
  RowMatrixXf x(rows, channels);
  uint32_t s = seed;
  for (Eigen::Index i = 0; i < x.size(); ++i) {
    s = s * 1664525u + 1013904223u;
    const float u = float((s >> 8) & 0xffff) / 65536.0f - 0.5f;
    x.data()[i] = u * (i % channels % 37 == 0 ? 60.0f : 2.0f);
  }
  return x;
}

}  // namespace

class TestSiteDesc : public QObject {
  Q_OBJECT

  std::unique_ptr<Checkpoint> ckpt_;
  std::unique_ptr<LlamaWeights> weights_;
  std::vector<int32_t> ids_;

 private slots:
  void initTestCase() {
    ckpt_ = std::make_unique<Checkpoint>(Checkpoint::open(test::model_656k()));
    weights_ = std::make_unique<LlamaWeights>(*ckpt_);
    const Tokenizer tok = Tokenizer::load(*ckpt_->tokenizer_json());
    std::ifstream f(test::data_dir() / "tinystories-text" / "stories.txt");
    const std::string all((std::istreambuf_iterator<char>(f)), {});
    ids_ = tok.encode(all.substr(0, 20000));
  }

  void matchesQuantPlan_data() {
    QTest::addColumn<int>("method");
    for (Method m : {Method::rtn, Method::smooth, Method::hadamard, Method::random, Method::quarot,
                     Method::duquant, Method::duquantpp})
      QTest::newRow(std::string(method_name(m)).c_str()) << int(m);
  }
  void matchesQuantPlan() {
    QFETCH(int, method);
    CalibrationSettings s;
    s.method = Method(method);
    s.windows.count = 2;
    s.windows.seqlen = 128;
    s.windows.tail_fraction = 0.5;
    s.greedy.max_steps = 8;
    s.duquant.max_steps = 8;
    CalibrateOptions co;
    co.site_statistics = false;
    const Session session =
        calibrate(*ckpt_, *weights_, CalibrationText{"stories.txt", "sha", ids_}, s, co);
    const QuantPlan plan = make_plan(session, weights_->config());
    const TensorQuant& aq = plan.scheme().activations;
    int64_t compared = 0, quantized_mismatches = 0;
    double worst = 0;
    int kinds[3] = {0, 0, 0};
    for (int l = 0; l < weights_->config().num_layers; ++l)
      for (Site site : kAllSites) {
        const gd::SiteDesc d = gd::site_desc(plan, l, site);
        QCOMPARE(d.channels, plan.site_channels(site));
        QCOMPARE(d.quantize, aq.format == QuantFormat::mxfp4);
        QVERIFY(d.quant.scale_rule == aq.options.scale_rule);
        const SiteTransform& t = plan.site(l, site);
        QCOMPARE(int(d.steps.size()), t.has_rotation() ? int(t.rotation.steps().size()) : 0);
        for (const gd::SiteStep& st : d.steps) ++kinds[int(st.kind)];
        // Smoothing where the activations see it: ÷ s online only; the norm fold is in the
        // norm weight (γ/s) on the device as on the CPU (W4a4Taps::norm_override).
        const bool online = t.has_smoothing() && t.smooth_fold == SmoothFold::online;
        QCOMPARE(d.scale_mode == gd::SiteScale::divide, online);
        QCOMPARE(d.scale_mode != gd::SiteScale::none, online);
        const bool norm_folded = t.has_smoothing() && t.smooth_fold == SmoothFold::norm;

        const RowMatrixXf x = activations(64, d.channels, uint32_t(l * 4 + int(site) + 1));
        RowMatrixXf want = x, got = x;
        plan.transform_activations(l, site, want, 1, norm_folded);
        emulate_transform(d, got);
        for (Eigen::Index r = 0; r < x.rows(); ++r) {
          const double scale = std::max(1e-30, double(want.row(r).cwiseAbs().maxCoeff()));
          worst = std::max(worst, double((got.row(r) - want.row(r)).cwiseAbs().maxCoeff()) / scale);
        }
        fake_quantize_rows(want, aq, TensorRole::activations);
        fake_quantize_rows(got, aq, TensorRole::activations);
        compared += want.size();
        quantized_mismatches += (want.array() != got.array()).count();
      }
    qInfo(
        "%lld values; transform max |Δ|/row max %.3g; quantized mismatches %lld; steps: %d "
        "block rotations, %d permutations, %d full Hadamard",
        static_cast<long long>(compared), worst, static_cast<long long>(quantized_mismatches),
        kinds[0], kinds[1], kinds[2]);
    QVERIFY(worst < kTransformRelTol);
    QVERIFY(double(quantized_mismatches) <= kQuantizedMismatchShare * double(compared));
    const Method m = Method(method);
    if (m == Method::quarot) QVERIFY(kinds[2] > 0);
    if (m == Method::duquant) QVERIFY(kinds[1] > 0);
  }

  // The description can be wrong and the check sees it: a transposed rotation differs.
  void transposedRotationIsCaught() {
    const LlamaConfig& cfg = weights_->config();
    std::vector<LayerTransforms> t(size_t(cfg.num_layers));
    Eigen::MatrixXf r = Eigen::MatrixXf::Zero(32, 32);
    for (int i = 0; i < 32; ++i) r(i, (i * 5 + 3) % 32) = (i % 3) ? 1.0f : -1.0f;
    t[0].site(Site::Qkv).rotation.add_block_rotation(r);
    const QuantPlan plan(cfg, QuantScheme::make(QuantMode::none), t);
    gd::SiteDesc d = gd::site_desc(plan, 0, Site::Qkv);
    QVERIFY(!d.quantize);
    const RowMatrixXf x = activations(4, d.channels, 9);
    RowMatrixXf want = x, got = x;
    plan.transform_activations(0, Site::Qkv, want);
    emulate_transform(d, got);
    QVERIFY(got == want);  // a signed permutation: exact
    for (int i = 0; i < 32; ++i)
      for (int j = 0; j < i; ++j)
        std::swap(d.steps[0].matrix[size_t(i) * 32 + j], d.steps[0].matrix[size_t(j) * 32 + i]);
    got = x;
    emulate_transform(d, got);
    QVERIFY(got != want);
  }
};

QTEST_GUILESS_MAIN(TestSiteDesc)
#include "test_site_desc.moc"
