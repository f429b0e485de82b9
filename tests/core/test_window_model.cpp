// WindowModel (core/backend/window_model.h): the CPU model hands exactly the logits of the
// forward it wraps (FP and W4A4), evaluation through it gives the same PPL and KL as before
// (anchored to the independent numpy reference), a backend that chunks rows its own way is
// scored the same, a backend that hands rows out of order is caught, and run_compare gives
// identical results with an empty factory and the CPU factory.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"  // GCC 12 + Eigen AVX-512 false positive

#include <QtTest>

#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "core/backend/window_model.h"
#include "core/calib/compare.h"
#include "core/eval/perplexity.h"
#include "core/model/checkpoint.h"
#include "core/quant/quant_plan.h"
#include "core/quant/w4a4_taps.h"
#include "core/text/tokenizer.h"
#include "core/util/error.h"
#include "tests/test_data.h"

using namespace mxlens;

namespace {

// scripts/reference_ppl.py (float64) on tinystories-656k, wiki.test.raw, first 8 windows of
// 256 tokens (tests/core/test_perplexity.cpp checks the same value on the old path).
constexpr double kNumpyPpl256First8 = 806.5310641206884;
constexpr double kPplRelTol = 1e-4;
constexpr int kSeqlen = 256;
constexpr int64_t kWindows = 8;

// Hands the wrapped model's rows on in chunks of `rows` (or, when `skip` is set, drops the
// second chunk: a broken backend).
class RechunkingModel : public WindowModel {
 public:
  RechunkingModel(WindowModel& inner, int rows, bool skip = false)
      : inner_(&inner), rows_(rows), skip_(skip) {}
  const LlamaConfig& config() const override { return inner_->config(); }
  std::string backend_name() const override { return "rechunk"; }
  void run(std::span<const int32_t> tokens, const LogitsChunkFn& fn) override {
    RowMatrixXf all(int64_t(tokens.size()), config().vocab_size);
    inner_->run(tokens, [&](int64_t r0, const Eigen::Ref<const RowMatrixXf>& chunk) {
      all.middleRows(r0, chunk.rows()) = chunk;
    });
    int chunk_index = 0;
    for (int64_t r0 = 0; r0 < all.rows(); r0 += rows_, ++chunk_index) {
      const int64_t n = std::min<int64_t>(rows_, all.rows() - r0);
      if (skip_ && chunk_index == 1) continue;
      fn(r0, all.middleRows(r0, n));
    }
  }

 private:
  WindowModel* inner_;
  int rows_;
  bool skip_;
};

}  // namespace

class TestWindowModel : public QObject {
  Q_OBJECT

  std::unique_ptr<Checkpoint> ckpt_;
  std::unique_ptr<LlamaWeights> weights_;
  std::vector<int32_t> wiki_;
  std::unique_ptr<QuantPlan> rtn_;

  PerplexityOptions ppl_options() const {
    PerplexityOptions o;
    o.seqlen = kSeqlen;
    o.max_windows = kWindows;
    o.source = "wiki.test.raw";
    return o;
  }

 private slots:
  void initTestCase() {
    ckpt_ = std::make_unique<Checkpoint>(Checkpoint::open(test::model_656k()));
    weights_ = std::make_unique<LlamaWeights>(*ckpt_);
    const Tokenizer tok = Tokenizer::load(*ckpt_->tokenizer_json());
    wiki_ = tokenize_text_file(tok, test::wiki_test(), /*add_bos=*/false);
    rtn_ = std::make_unique<QuantPlan>(weights_->config(), QuantScheme::make(QuantMode::w4a4));
  }

  // The chunks the CPU model hands are the forward's logits, bit for bit, FP and W4A4.
  void cpuModelHandsTheForwardsLogits() {
    const std::span<const int32_t> window(wiki_.data(), 200);
    ForwardOptions fo;
    fo.logits_chunk_rows = 64;  // 64, 64, 64, 8
    LlamaForward forward(*weights_, fo);
    for (const QuantPlan* plan :
         {static_cast<const QuantPlan*>(nullptr), static_cast<const QuantPlan*>(rtn_.get())}) {
      std::optional<W4a4Taps> taps;
      if (plan) taps.emplace(*plan);
      const RowMatrixXf expected = forward.logits_all(window, taps ? &*taps : nullptr);
      CpuWindowModel model(*weights_, plan, fo, {});
      QCOMPARE(QString::fromStdString(model.backend_name()), QString("cpu"));
      RowMatrixXf got = RowMatrixXf::Constant(expected.rows(), expected.cols(), -1.0f);
      std::vector<int64_t> starts;
      model.run(window, [&](int64_t r0, const Eigen::Ref<const RowMatrixXf>& chunk) {
        starts.push_back(r0);
        got.middleRows(r0, chunk.rows()) = chunk;
      });
      QCOMPARE(starts, (std::vector<int64_t>{0, 64, 128, 192}));
      QVERIFY2(got == expected, plan ? "w4a4" : "fp");
    }
    // The W4A4 logits differ from FP's (the comparison above can fail).
    CpuWindowModel fp(*weights_, nullptr, fo, {}), q(*weights_, rtn_.get(), fo, {});
    float fp0 = 0, q0 = 0;
    fp.run(window.first(8),
           [&](int64_t, const Eigen::Ref<const RowMatrixXf>& c) { fp0 = c(7, 5); });
    q.run(window.first(8), [&](int64_t, const Eigen::Ref<const RowMatrixXf>& c) { q0 = c(7, 5); });
    QVERIFY(fp0 != q0);
  }

  // PPL and KL through a WindowModel equal the old entry point's, which is anchored to numpy.
  void evaluationThroughModelIsUnchanged() {
    Progress progress;
    PerplexityOptions o = ppl_options();
    ReferenceLogProbs ref_old(weights_->config().vocab_size, ReferenceLogProbs::Storage::Full32);
    o.record_reference = &ref_old;
    const PerplexityResult fp_old = evaluate_perplexity(*weights_, wiki_, o, progress);
    QVERIFY(std::abs(fp_old.ppl / kNumpyPpl256First8 - 1) < kPplRelTol);
    QCOMPARE(QString::fromStdString(fp_old.backend), QString("cpu"));

    ReferenceLogProbs ref_new(weights_->config().vocab_size, ReferenceLogProbs::Storage::Full32);
    o.record_reference = &ref_new;
    CpuWindowModel fp_model(*weights_, o.forward);
    const PerplexityResult fp_new = evaluate_perplexity(fp_model, wiki_, o, progress);
    QCOMPARE(fp_new.ppl, fp_old.ppl);
    QCOMPARE(fp_new.window_nll, fp_old.window_nll);
    QCOMPARE(ref_new.tokens(), ref_old.tokens());
    QCOMPARE(ref_new.tokens(), kWindows * (kSeqlen - 1));
    QCOMPARE(ref_new.top1(1000), ref_old.top1(1000));

    o.record_reference = nullptr;
    o.kl_reference = &ref_old;
    W4a4Taps taps(*rtn_);
    const PerplexityResult q_old = evaluate_perplexity(*weights_, wiki_, o, progress, {}, &taps);
    CpuWindowModel q_model(*weights_, rtn_.get(), o.forward, {});
    const PerplexityResult q_new = evaluate_perplexity(q_model, wiki_, o, progress);
    QVERIFY(q_old.kl && q_new.kl);
    QVERIFY(q_old.kl->mean > 0);
    QCOMPARE(q_new.ppl, q_old.ppl);
    QCOMPARE(q_new.kl->mean, q_old.kl->mean);
    QCOMPARE(q_new.kl->p99, q_old.kl->p99);
    QCOMPARE(q_new.kl->top1_agreement, q_old.kl->top1_agreement);
    QVERIFY(q_new.ppl != fp_new.ppl);
  }

  // Scoring does not depend on how a backend chunks its rows; rows handed out of order fail.
  void scoringIndependentOfChunking() {
    Progress progress;
    PerplexityOptions o = ppl_options();
    o.max_windows = 2;
    ReferenceLogProbs ref(weights_->config().vocab_size, ReferenceLogProbs::Storage::Full32);
    o.record_reference = &ref;
    CpuWindowModel fp(*weights_, o.forward);
    const PerplexityResult expected = evaluate_perplexity(fp, wiki_, o, progress);
    o.record_reference = nullptr;
    o.kl_reference = &ref;
    const PerplexityResult self = evaluate_perplexity(fp, wiki_, o, progress);
    QVERIFY(self.kl->mean < 1e-6);  // against itself: rounding of the stored log-probs only
    for (int rows : {1, 7, 255, 1000}) {
      RechunkingModel chunked(fp, rows);
      const PerplexityResult r = evaluate_perplexity(chunked, wiki_, o, progress);
      QCOMPARE(r.window_nll, expected.window_nll);
      QCOMPARE(r.kl->mean, self.kl->mean);
      QCOMPARE(r.kl->top1_agreement, 1.0);
      QCOMPARE(QString::fromStdString(r.backend), QString("rechunk"));
    }
    RechunkingModel broken(fp, 100, /*skip=*/true);
    try {
      evaluate_perplexity(broken, wiki_, o, progress);
      QFAIL("a backend that skipped rows was scored");
    } catch (const Error& e) {
      QCOMPARE(QString::fromStdString(e.source()), QString("rechunk backend"));
    }
  }

  // run_compare: the CPU factory and no factory give the same numbers; sessions record "cpu".
  void compareFactoryEmptyEqualsCpuFactory() {
    const Tokenizer tok = Tokenizer::load(*ckpt_->tokenizer_json());
    std::ifstream f(test::data_dir() / "tinystories-text" / "stories.txt");
    const std::string all((std::istreambuf_iterator<char>(f)), {});
    const std::vector<int32_t> ids = tok.encode(all.substr(0, 12000));
    CompareOptions o;
    o.methods = {Method::fp, Method::rtn, Method::hadamard};
    o.calibration.windows.count = 2;
    o.calibration.windows.seqlen = 64;
    o.calibration.windows.tail_fraction = 0.5;
    o.seqlen = 64;
    o.max_windows = 3;
    const EvalText et{"stories.txt", "eval-sha", ids};
    const CalibrationText ct{"stories.txt", "calib-sha", ids};
    const CompareResult empty = run_compare(*ckpt_, *weights_, et, ct, o);
    o.model_factory = cpu_window_model_factory();
    const CompareResult cpu = run_compare(*ckpt_, *weights_, et, ct, o);
    QCOMPARE(cpu.methods.size(), size_t(3));
    QCOMPARE(empty.methods.size(), cpu.methods.size());
    for (size_t i = 0; i < cpu.methods.size(); ++i) {
      const MethodResult &a = empty.methods[i], &b = cpu.methods[i];
      QCOMPARE(a.eval.window_nll, b.eval.window_nll);
      QCOMPARE(a.eval.kl.has_value(), b.eval.kl.has_value());
      if (a.eval.kl) {
        QCOMPARE(a.eval.kl->mean, b.eval.kl->mean);
        QCOMPARE(a.eval.kl->top1_agreement, b.eval.kl->top1_agreement);
      }
      QCOMPARE(QString::fromStdString(b.eval.backend), QString("cpu"));
      QCOMPARE(QString::fromStdString(b.session.provenance.backend), QString("cpu"));
    }
    QVERIFY(cpu.methods[1].eval.kl->mean > 0);

    // The factory is what runs: one that names itself is recorded.
    o.methods = {Method::fp};
    o.model_factory = [](const LlamaWeights& w, const QuantPlan* plan,
                         const ForwardOptions& fo) -> std::unique_ptr<WindowModel> {
      class Named : public CpuWindowModel {
       public:
        using CpuWindowModel::CpuWindowModel;
        std::string backend_name() const override { return "named"; }
      };
      return std::make_unique<Named>(w, plan, fo, W4a4Taps::Options{});
    };
    const CompareResult named = run_compare(*ckpt_, *weights_, et, ct, o);
    QCOMPARE(QString::fromStdString(named.methods[0].session.provenance.backend), QString("named"));
    QCOMPARE(named.methods[0].eval.window_nll, cpu.methods[0].eval.window_nll);
  }
};

QTEST_GUILESS_MAIN(TestWindowModel)
#include "test_window_model.moc"
