// The batched FP32 forward against the scalar reference forward (forward_ref.cpp) on both
// shared real models, the site taps, and a greedy continuation that must read like a story.
// GCC 12: false -Wmaybe-uninitialized inside AVX-512 intrinsics inlined from Eigen reductions.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#include <QtTest>

#include <cmath>
#include <cstdio>

#include "core/model/checkpoint.h"
#include "core/model/forward.h"
#include "core/model/forward_ref.h"
#include "core/model/synthetic_checkpoint.h"
#include "core/text/tokenizer.h"
#include "core/util/error.h"
#include "tests/test_data.h"

using namespace mxlens;

namespace {

// Fast vs reference: max |Δlogit| / max |logit| (summation order and fp32 vs double differ).
constexpr double kForwardRelTol = 1e-4;
// Same forward, 1 vs 2 threads: only the GEMM blocking changes.
constexpr double kThreadsRelTol = 1e-5;
// A tap that replaces activations must move the logits far beyond the tolerance.
constexpr double kTapEffectMin = 100 * kForwardRelTol;

std::vector<int32_t> pseudo_random_ids(int n, int vocab, uint32_t seed) {
  std::vector<int32_t> ids(static_cast<size_t>(n));
  for (auto& t : ids) {
    seed = seed * 1664525u + 1013904223u;
    t = int32_t((seed >> 8) % uint32_t(vocab));
  }
  return ids;
}

double rel_error(const RowMatrixXf& fast, const std::vector<float>& ref) {
  const Eigen::Map<const RowMatrixXf> r(ref.data(), fast.rows(), fast.cols());
  return double((fast - r).cwiseAbs().maxCoeff()) / double(r.cwiseAbs().maxCoeff());
}

double rel_error(const RowMatrixXf& a, const RowMatrixXf& b) {
  return double((a - b).cwiseAbs().maxCoeff()) / double(b.cwiseAbs().maxCoeff());
}

// Records every call; changes nothing.
struct RecordingTaps : SiteTaps {
  struct Call {
    int layer;
    Site site;
    Eigen::Index rows, cols;
  };
  std::vector<Call> calls;
  int weight_calls = 0;
  void on_activations(int layer, Site site, Eigen::Ref<RowMatrixXf> x) override {
    calls.push_back({layer, site, x.rows(), x.cols()});
  }
  const float* weight_override(int, Linear, std::span<const float>, int, int) override {
    ++weight_calls;
    return nullptr;
  }
};

// Halves the down-site input of one layer and zeroes one channel of the o-site input.
struct EditingTaps : SiteTaps {
  int layer_edit;
  explicit EditingTaps(int l) : layer_edit(l) {}
  void on_activations(int layer, Site site, Eigen::Ref<RowMatrixXf> x) override {
    if (layer != layer_edit) return;
    if (site == Site::Down) x *= 0.5f;
    if (site == Site::O) x.col(3).setZero();
  }
};

// Replaces one layer's down_proj by its negation.
struct NegateDownTaps : SiteTaps {
  int layer_edit;
  std::vector<float> storage;
  explicit NegateDownTaps(int l) : layer_edit(l) {}
  void on_activations(int, Site, Eigen::Ref<RowMatrixXf>) override {}
  const float* weight_override(int layer, Linear which, std::span<const float> w, int,
                               int) override {
    if (layer != layer_edit || which != Linear::Down) return nullptr;
    storage.assign(w.begin(), w.end());
    for (float& v : storage) v = -v;
    return storage.data();
  }
};

// Pieces of tokenizer.json's vocab, read with Qt (independent of core/text), decoded the
// SentencePiece way: "▁" becomes a space.
QString decode_pieces(const std::filesystem::path& tokenizer_json,
                      const std::vector<int32_t>& ids) {
  QFile f(QString::fromStdString(tokenizer_json.string()));
  if (!f.open(QIODevice::ReadOnly)) return {};
  const QJsonObject vocab =
      QJsonDocument::fromJson(f.readAll()).object()["model"].toObject()["vocab"].toObject();
  QHash<int, QString> piece;
  for (auto it = vocab.begin(); it != vocab.end(); ++it) piece[it.value().toInt()] = it.key();
  QString text;
  for (int32_t id : ids) text += piece.value(id);
  return text.replace(QChar(0x2581), ' ');
}

}  // namespace

class TestForward : public QObject {
  Q_OBJECT
 private slots:
  void matchesReference_data() {
    QTest::addColumn<QString>("model");
    QTest::addColumn<int>("tokens");
    QTest::addColumn<int>("threads");
    QTest::addColumn<int>("block");
    QTest::addColumn<int>("chunk");
    QTest::newRow("656k T=1") << "656k" << 1 << 1 << 64 << 256;
    QTest::newRow("656k T=37 block=7 chunk=5") << "656k" << 37 << 1 << 7 << 5;
    QTest::newRow("656k T=200 threads=2") << "656k" << 200 << 2 << 64 << 64;
    QTest::newRow("656k T=512 threads=2 block=100") << "656k" << 512 << 2 << 100 << 256;
    QTest::newRow("260k T=64 block=16") << "260k" << 64 << 1 << 16 << 256;
    QTest::newRow("260k T=300 threads=2 chunk=7") << "260k" << 300 << 2 << 64 << 7;
  }
  void matchesReference() {
    QFETCH(QString, model);
    QFETCH(int, tokens);
    QFETCH(int, threads);
    QFETCH(int, block);
    QFETCH(int, chunk);
    const auto dir = model == "656k" ? test::model_656k() : test::model_260k();
    const Checkpoint ckpt = Checkpoint::open(dir);
    const LlamaWeights weights(ckpt);
    const auto ids = pseudo_random_ids(tokens, ckpt.config().vocab_size, 7u + uint32_t(tokens));
    ForwardOptions opt;
    opt.threads = threads;
    opt.parallel_min_macs = 0;  // split every GEMM and loop when threads > 1
    opt.attention_block_rows = block;
    opt.logits_chunk_rows = chunk;
    LlamaForward fwd(weights, opt);
    const RowMatrixXf fast = fwd.logits_all(ids);
    const std::vector<float> ref = forward_ref(ckpt, ids);
    const double err = rel_error(fast, ref);
    std::printf("  %s: max|Δ|/max|ref| = %.3g\n", QTest::currentDataTag(), err);
    QVERIFY2(err <= kForwardRelTol, qPrintable(QString("relative error %1").arg(err)));
    // Every position's argmax agrees.
    const Eigen::Map<const RowMatrixXf> r(ref.data(), fast.rows(), fast.cols());
    for (Eigen::Index t = 0; t < fast.rows(); ++t) {
      Eigen::Index a = 0, b = 0;
      fast.row(t).maxCoeff(&a);
      r.row(t).maxCoeff(&b);
      QCOMPARE(a, b);
    }
  }

  // Synthetic checkpoints cover what the real models lack: BF16/F16 storage (per-layer
  // conversion, chunked lm_head), an untied lm_head, llama3 RoPE scaling, Qwen2 q/k/v biases.
  void matchesReferenceSynthetic_data() {
    QTest::addColumn<QString>("preset");
    QTest::addColumn<int>("dtype");
    QTest::newRow("tiny BF16 (untied lm_head)") << "tiny" << int(DType::BF16);
    QTest::newRow("tiny-llama3 F16 (llama3 rope, tied)") << "tiny-llama3" << int(DType::F16);
    QTest::newRow("tiny-qwen2 BF16 (q/k/v bias)") << "tiny-qwen2" << int(DType::BF16);
    QTest::newRow("tiny-qwen2 F32") << "tiny-qwen2" << int(DType::F32);
  }
  void matchesReferenceSynthetic() {
    QFETCH(QString, preset);
    QFETCH(int, dtype);
    QTemporaryDir tmp;
    SyntheticOptions so;
    so.preset = preset.toStdString();
    so.dtype = DType(dtype);
    so.seed = 5;
    write_synthetic_checkpoint(tmp.path().toStdString(), so);
    const Checkpoint ckpt = Checkpoint::open(tmp.path().toStdString());
    const LlamaWeights weights(ckpt);
    const auto ids = pseudo_random_ids(70, ckpt.config().vocab_size, 13);
    ForwardOptions opt;
    opt.threads = 2;
    opt.parallel_min_macs = 0;
    opt.attention_block_rows = 16;
    opt.logits_chunk_rows = 32;
    opt.lm_head_chunk_rows = 100;  // several lm_head slices when it is not F32
    LlamaForward fwd(weights, opt);
    const RowMatrixXf fast = fwd.logits_all(ids);
    const double err = rel_error(fast, forward_ref(ckpt, ids));
    std::printf("  %s: max|Δ|/max|ref| = %.3g\n", QTest::currentDataTag(), err);
    QVERIFY(err <= kForwardRelTol);
    QVERIFY(fast.cwiseAbs().maxCoeff() > 0);
  }

  // The tolerance can fail: a 0.1 % change of one site's input in one layer exceeds it.
  void toleranceDetectsSmallChange() {
    const Checkpoint ckpt = Checkpoint::open(test::model_656k());
    const LlamaWeights weights(ckpt);
    const auto ids = pseudo_random_ids(64, ckpt.config().vocab_size, 3);
    struct Nudge : SiteTaps {
      void on_activations(int layer, Site site, Eigen::Ref<RowMatrixXf> x) override {
        if (layer == 1 && site == Site::Qkv) x *= 1.001f;
      }
    } nudge;
    LlamaForward fwd(weights);
    const RowMatrixXf nudged = fwd.logits_all(ids, &nudge);
    const double err = rel_error(nudged, forward_ref(ckpt, ids));
    std::printf("  0.1%% nudge of layer-1 qkv input: relative error %.3g (tolerance %.1g)\n", err,
                kForwardRelTol);
    QVERIFY(err > kForwardRelTol);
  }

  void threadsGiveSameLogits() {
    const Checkpoint ckpt = Checkpoint::open(test::model_260k());
    const LlamaWeights weights(ckpt);
    const auto ids = pseudo_random_ids(257, ckpt.config().vocab_size, 11);
    ForwardOptions one, two;
    two.threads = 2;
    two.parallel_min_macs = 0;
    LlamaForward f1(weights, one), f2(weights, two);
    const double err = rel_error(f2.logits_all(ids), f1.logits_all(ids));
    std::printf("  1 vs 2 threads: relative difference %.3g\n", err);
    QVERIFY(err <= kThreadsRelTol);
  }

  void tapsSeeEverySite() {
    const Checkpoint ckpt = Checkpoint::open(test::model_260k());
    const LlamaConfig& c = ckpt.config();
    const LlamaWeights weights(ckpt);
    const auto ids = pseudo_random_ids(19, c.vocab_size, 5);
    LlamaForward fwd(weights);
    const RowMatrixXf plain = fwd.logits_all(ids);
    RecordingTaps taps;
    const RowMatrixXf tapped = fwd.logits_all(ids, &taps);
    QCOMPARE(int(taps.calls.size()), 4 * c.num_layers);
    QCOMPARE(taps.weight_calls, 7 * c.num_layers);
    for (size_t i = 0; i < taps.calls.size(); ++i) {
      const auto& call = taps.calls[i];
      QCOMPARE(call.layer, int(i / 4));
      QCOMPARE(call.site, kAllSites[i % 4]);
      QCOMPARE(call.rows, Eigen::Index(ids.size()));
      const Eigen::Index want = call.site == Site::Down ? c.intermediate_size
                                : call.site == Site::O  ? c.num_heads * c.head_dim
                                                        : c.hidden_size;
      QCOMPARE(call.cols, want);
    }
    QVERIFY(tapped == plain);  // a tap that writes nothing changes nothing, bit for bit
    // The reference calls the activation taps once per token.
    RecordingTaps ref_taps;
    forward_ref(ckpt, ids, &ref_taps);
    QCOMPARE(int(ref_taps.calls.size()), 4 * c.num_layers * int(ids.size()));
    QCOMPARE(ref_taps.calls.front().rows, Eigen::Index(1));
  }

  void tapsReplaceActivationsAndWeights_data() {
    QTest::addColumn<QString>("kind");
    QTest::newRow("activations: halve down input, zero one o channel") << "activations";
    QTest::newRow("weights: negate down_proj") << "weights";
  }
  void tapsReplaceActivationsAndWeights() {
    QFETCH(QString, kind);
    const Checkpoint ckpt = Checkpoint::open(test::model_656k());
    const LlamaWeights weights(ckpt);
    const auto ids = pseudo_random_ids(48, ckpt.config().vocab_size, 9);
    EditingTaps edit(0);
    NegateDownTaps negate(1);
    SiteTaps* taps = kind == "activations" ? static_cast<SiteTaps*>(&edit) : &negate;
    LlamaForward fwd(weights);
    const RowMatrixXf plain = fwd.logits_all(ids);
    const RowMatrixXf tapped = fwd.logits_all(ids, taps);
    const double err = rel_error(tapped, forward_ref(ckpt, ids, taps));
    const double effect = rel_error(tapped, plain);
    std::printf("  %s: fast vs ref %.3g, effect of the tap %.3g\n", qPrintable(kind), err, effect);
    QVERIFY(err <= kForwardRelTol);
    QVERIFY(effect > kTapEffectMin);
  }

  void logitsRowRanges() {
    const Checkpoint ckpt = Checkpoint::open(test::model_656k());
    const LlamaWeights weights(ckpt);
    const auto ids = pseudo_random_ids(30, ckpt.config().vocab_size, 4);
    ForwardOptions opt;
    opt.logits_chunk_rows = 4;
    LlamaForward fwd(weights, opt);
    const RowMatrixXf all = fwd.logits_all(ids);
    fwd.hidden(ids);
    std::vector<int64_t> starts;
    fwd.logits(
        [&](int64_t r0, const Eigen::Ref<const RowMatrixXf>& chunk) {
          starts.push_back(r0);
          QVERIFY(chunk.rows() <= 4);
          // Other GEMM shapes may round differently; the rows must agree to float precision.
          QVERIFY(rel_error(chunk, all.middleRows(r0, chunk.rows())) <= kThreadsRelTol);
        },
        10, 21);
    QCOMPARE(starts, (std::vector<int64_t>{10, 14, 18}));
  }

  void errorsOnBadInput() {
    const Checkpoint ckpt = Checkpoint::open(test::model_656k());
    const LlamaWeights weights(ckpt);
    LlamaForward fwd(weights);
    const std::vector<int32_t> bad = {1, 2048};
    QVERIFY_THROWS_EXCEPTION(Error, fwd.hidden(bad));
    const std::vector<int32_t> negative = {-1};
    QVERIFY_THROWS_EXCEPTION(Error, fwd.hidden(negative));
    QVERIFY_THROWS_EXCEPTION(Error, fwd.hidden({}));
    ForwardOptions zero;
    zero.threads = 0;
    QVERIFY_THROWS_EXCEPTION(Error, LlamaForward(weights, zero));
  }

  // README: greedy continuation of "Once upon a time" reads "…a little girl named Lily lived
  // in a small house with her mom, dad, and her dog, Spot…".
  void greedyContinuationReadsLikeAStory() {
    const Checkpoint ckpt = Checkpoint::open(test::model_656k());
    const LlamaWeights weights(ckpt);
    const Tokenizer tok = Tokenizer::load(*ckpt.tokenizer_json());
    std::vector<int32_t> ids = tok.encode("Once upon a time", /*add_special_tokens=*/true);
    QCOMPARE(ids.front(), 1);  // BOS <|start_story|>
    const size_t prompt = ids.size();
    LlamaForward fwd(weights);
    for (int step = 0; step < 40; ++step) {
      Eigen::Index next = 0;
      fwd.hidden(ids);
      fwd.logits([&](int64_t, const Eigen::Ref<const RowMatrixXf>& l) { l.row(0).maxCoeff(&next); },
                 int64_t(ids.size()) - 1, int64_t(ids.size()));
      ids.push_back(int32_t(next));
    }
    // The reference agrees with every greedy choice.
    const std::vector<float> ref = forward_ref(ckpt, ids);
    const int V = ckpt.config().vocab_size;
    for (size_t t = prompt - 1; t + 1 < ids.size(); ++t) {
      const Eigen::Map<const Eigen::RowVectorXf> row(ref.data() + t * size_t(V), V);
      Eigen::Index arg = 0;
      row.maxCoeff(&arg);
      QCOMPARE(int32_t(arg), ids[t + 1]);
    }
    const QString text = decode_pieces(*ckpt.tokenizer_json(), ids);
    std::printf("  greedy: %s\n", qPrintable(text));
    QVERIFY(text.contains("a little girl named Lily lived in a small house"));
    QVERIFY(text.contains("her dog, Spot"));
    // The library's decoder gives the same text (less the BOS piece and leading space).
    const QString decoded = QString::fromStdString(tok.decode(ids, /*skip_special_tokens=*/true));
    QVERIFY2(text.endsWith(decoded), qPrintable(decoded));
  }
};

QTEST_GUILESS_MAIN(TestForward)
#include "test_forward.moc"
