// The CUDA W4A4 backend against the CPU path (mxlens/gpu/backend.h):
//   - the backend choice (runs everywhere): cuda without a device is an error naming --backend,
//     auto falls back to the CPU with a note, unsupported plans are named;
//   - with a device: FP logits of tinystories-656k against the CPU forward; FP and W4A4 PPL of
//     every method family (RTN, smoothing, block Hadamard, DuQuant's permutation and 128-block
//     rotations, DuQuant++, QuaRot's full Hadamard) within 1e-3 relative of the CPU, FP32 and
//     BF16 GEMMs; the fused rotate + quantize kernel bit-identical to core's quantizer on more
//     than 1e7 values, random and real activations of the 656k forward.
// Without a device (or in a build without CUDA) the device tests skip with the reason.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"  // GCC 12 + Eigen AVX-512 false positive

#include <QtTest>

#include <Eigen/QR>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "core/backend/window_model.h"
#include "core/calib/calibrate.h"
#include "core/calib/session.h"
#include "core/eval/perplexity.h"
#include "core/model/checkpoint.h"
#include "core/quant/quant_plan.h"
#include "core/quant/quant_scheme.h"
#include "core/rotation/hadamard.h"
#include "core/text/tokenizer.h"
#include "core/util/error.h"
#include "mxlens/gpu/backend.h"
#include "mxlens/gpu/cuda.h"
#include "tests/test_data.h"

using namespace mxlens;

namespace {

// FP32 on both sides, different summation orders: logits agree to float rounding.
constexpr double kFpLogitsRelTol = 1e-4;  // max |Δ| / max |logit|
// The acceptance bar of the CUDA backend (issue 6): PPL within 1e-3 relative of the CPU.
constexpr double kPplRelTol = 1e-3;
// BF16 operands: FP is a BF16 forward's PPL; W4A4's operands are exact in BF16, only the
// lm_head and attention inputs round.
constexpr double kBf16PplRelTol = 2e-2;
// The rotation alone (FMA in index order vs Eigen's product): a few float ulps of the row norm.
constexpr double kRotationAbsTol = 1e-5;
// Values through the bit-exactness check of the fused kernel.
constexpr int64_t kMinKernelValues = 10'000'000;
constexpr int kSeqlen = 256;
constexpr int64_t kWindows = 4;

std::string skip_message() {
  const std::string reason = gpu::cuda_unavailable_reason();
  return reason.rfind("no CUDA device", 0) == 0 ? reason : "no CUDA device: " + reason;
}

#define MXLENS_REQUIRE_CUDA()                                         \
  do {                                                                \
    if (gpu::cuda_device_count() == 0) QSKIP(skip_message().c_str()); \
  } while (false)

bool same_bits(float a, float b) {
  uint32_t x, y;
  std::memcpy(&x, &a, 4);
  std::memcpy(&y, &b, 4);
  return x == y;
}

int64_t bit_mismatches(const std::vector<float>& got, const std::vector<float>& want,
                       const char* what) {
  int64_t n = 0;
  for (size_t i = 0; i < got.size(); ++i)
    if (!same_bits(got[i], want[i]) && n++ < 5)
      qWarning("%s: element %zu: gpu %.9g, cpu %.9g", what, i, double(got[i]), double(want[i]));
  return n;
}

// Copies every site input of the forward (the real activations the kernel sees).
class CaptureTaps : public SiteTaps {
 public:
  struct Capture {
    int cols = 0;
    std::vector<float> values;
  };
  std::vector<Capture> captures;
  void on_activations(int, Site, Eigen::Ref<RowMatrixXf> x) override {
    Capture c;
    c.cols = int(x.cols());
    c.values.resize(size_t(x.size()));
    Eigen::Map<RowMatrixXf>(c.values.data(), x.rows(), x.cols()) = x;
    captures.push_back(std::move(c));
  }
};

// Random orthogonal 32×32 (QR of a Gaussian matrix), row-major floats.
std::vector<float> random_rotation(uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<double> n(0, 1);
  Eigen::MatrixXd g(32, 32);
  for (int i = 0; i < 32; ++i)
    for (int j = 0; j < 32; ++j) g(i, j) = n(rng);
  const Eigen::MatrixXd q = Eigen::HouseholderQR<Eigen::MatrixXd>(g).householderQ();
  std::vector<float> r(32 * 32);
  for (int i = 0; i < 32; ++i)
    for (int j = 0; j < 32; ++j) r[size_t(i) * 32 + j] = float(q(i, j));
  return r;
}

// A signed permutation: every product in the rotation is exact.
std::vector<float> signed_permutation(uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<int> p(32);
  for (int i = 0; i < 32; ++i) p[size_t(i)] = i;
  std::shuffle(p.begin(), p.end(), rng);
  std::vector<float> r(32 * 32, 0.0f);
  for (int i = 0; i < 32; ++i) r[size_t(i) * 32 + p[size_t(i)]] = (rng() & 1) ? 1.0f : -1.0f;
  return r;
}

}  // namespace

class TestCudaForward : public QObject {
  Q_OBJECT

  std::unique_ptr<Checkpoint> ckpt_;
  std::unique_ptr<LlamaWeights> weights_;
  std::vector<int32_t> wiki_, stories_;

  double cpu_ppl(const QuantPlan* plan) const {
    Progress progress;
    PerplexityOptions o;
    o.seqlen = kSeqlen;
    o.max_windows = kWindows;
    const auto model = cpu_window_model_factory()(*weights_, plan, o.forward);
    return evaluate_perplexity(*model, wiki_, o, progress).ppl;
  }
  double cuda_ppl(const QuantPlan* plan, gpu::CudaGemm gemm) const {
    Progress progress;
    PerplexityOptions o;
    o.seqlen = kSeqlen;
    o.max_windows = kWindows;
    o.forward.logits_chunk_rows = 100;  // three chunks per window: the double buffering
    const auto model = gpu::make_cuda_window_model(*weights_, plan, o.forward, {0, gemm});
    const PerplexityResult r = evaluate_perplexity(*model, wiki_, o, progress);
    if (r.backend != "cuda") qFatal("backend %s", r.backend.c_str());
    return r.ppl;
  }
  Session calibrated(Method method) const {
    CalibrationSettings s;
    s.method = method;
    s.windows.count = 4;
    s.windows.seqlen = 128;
    s.windows.tail_fraction = 0.5;
    s.greedy.max_steps = 16;
    s.duquant.max_steps = 16;
    CalibrateOptions co;
    co.site_statistics = false;
    return calibrate(*ckpt_, *weights_, CalibrationText{"stories.txt", "sha", stories_}, s, co);
  }

 private slots:
  void initTestCase() {
    qInfo("gpu: %s", gpu::cuda_status().c_str());
    ckpt_ = std::make_unique<Checkpoint>(Checkpoint::open(test::model_656k()));
    weights_ = std::make_unique<LlamaWeights>(*ckpt_);
    const Tokenizer tok = Tokenizer::load(*ckpt_->tokenizer_json());
    wiki_ = tokenize_text_file(tok, test::wiki_test(), /*add_bos=*/false);
    std::ifstream f(test::data_dir() / "tinystories-text" / "stories.txt");
    const std::string all((std::istreambuf_iterator<char>(f)), {});
    stories_ = tok.encode(all.substr(0, 20000));
  }

  // Runs with and without a device: what each choice does there.
  void backendChoice() {
    QCOMPARE(int(gpu::parse_backend("cpu")), int(gpu::BackendKind::cpu));
    QCOMPARE(int(gpu::parse_backend("auto")), int(gpu::BackendKind::auto_));
    QCOMPARE(QString::fromStdString(std::string(gpu::to_string(gpu::BackendKind::cuda))),
             QString("cuda"));
    try {
      gpu::parse_backend("gpu");
      QFAIL("parsed 'gpu'");
    } catch (const Error& e) {
      QCOMPARE(QString::fromStdString(e.source()), QString("--backend"));
    }
    std::string note = "stale";
    const WindowModelFactory cpu = gpu::make_window_model_factory(gpu::BackendKind::cpu, 0, &note);
    QVERIFY(note.empty());
    QCOMPARE(QString::fromStdString(cpu(*weights_, nullptr, {})->backend_name()), QString("cpu"));

    const WindowModelFactory automatic =
        gpu::make_window_model_factory(gpu::BackendKind::auto_, 0, &note);
    const bool device = gpu::cuda_device_count() > 0;
    const QuantPlan rtn(weights_->config(), QuantScheme::make(QuantMode::w4a4));
    if (!device) {
      QVERIFY2(note.find("CUDA unavailable") == 0 &&
                   note.find("evaluating on the CPU") != std::string::npos,
               note.c_str());
      QCOMPARE(QString::fromStdString(automatic(*weights_, &rtn, {})->backend_name()),
               QString("cpu"));
      try {
        gpu::make_window_model_factory(gpu::BackendKind::cuda);
        QFAIL("--backend cuda without a device gave a factory");
      } catch (const Error& e) {
        QCOMPARE(QString::fromStdString(e.source()), QString("--backend"));
        QVERIFY2(e.problem().find("CUDA unavailable: " + gpu::cuda_unavailable_reason()) == 0 &&
                     e.problem().find("use --backend cpu or auto") != std::string::npos,
                 e.what());
      }
    } else {
      QVERIFY2(note.find("CUDA: ") == 0, note.c_str());
      QCOMPARE(QString::fromStdString(automatic(*weights_, &rtn, {})->backend_name()),
               QString("cuda"));
      // auto: a plan CUDA cannot run goes to the CPU; cuda: an error saying why.
      const QuantPlan nv(weights_->config(),
                         QuantScheme::make(QuantMode::w4a4, QuantFormat::nvfp4));
      QCOMPARE(QString::fromStdString(automatic(*weights_, &nv, {})->backend_name()),
               QString("cpu"));
      const WindowModelFactory cuda = gpu::make_window_model_factory(gpu::BackendKind::cuda);
      try {
        cuda(*weights_, &nv, {});
        QFAIL("an nvfp4 plan was accepted by the CUDA backend");
      } catch (const Error& e) {
        QVERIFY2(e.problem().find("nvfp4") != std::string::npos, e.what());
      }
    }
    // What the CUDA backend cannot run, named without a device.
    const LlamaConfig& cfg = weights_->config();
    QVERIFY(gpu::cuda_unsupported_reason(cfg, nullptr).empty());
    QVERIFY(gpu::cuda_unsupported_reason(cfg, &rtn).empty());
    const QuantPlan int4(cfg, QuantScheme::make(QuantMode::w4a4, QuantFormat::int4));
    QVERIFY(gpu::cuda_unsupported_reason(cfg, &int4).find("int4") != std::string::npos);
    QuantOptions log8;
    log8.scale_rule = ScaleRule::dqv2_log8;
    const QuantPlan dq(cfg, QuantScheme::make(QuantMode::w4a4, QuantFormat::mxfp4, log8));
    QVERIFY(gpu::cuda_unsupported_reason(cfg, &dq).find("dqv2_log8") != std::string::npos);
    const QuantPlan w4a16(cfg, QuantScheme::make(QuantMode::w4a16, QuantFormat::nvfp4));
    QVERIFY(gpu::cuda_unsupported_reason(cfg, &w4a16).empty());  // weights: computed on the host
  }

  void fpLogitsMatchCpu() {
    MXLENS_REQUIRE_CUDA();
    const std::span<const int32_t> window(wiki_.data(), 255);
    ForwardOptions fo;
    fo.logits_chunk_rows = 64;
    LlamaForward cpu(*weights_, fo);
    const RowMatrixXf want = cpu.logits_all(window);
    const auto model = gpu::make_cuda_window_model(*weights_, nullptr, fo);
    RowMatrixXf got = RowMatrixXf::Constant(want.rows(), want.cols(), NAN);
    int64_t next = 0;
    model->run(window, [&](int64_t r0, const Eigen::Ref<const RowMatrixXf>& chunk) {
      QCOMPARE(r0, next);
      next = r0 + chunk.rows();
      got.middleRows(r0, chunk.rows()) = chunk;
    });
    QCOMPARE(next, int64_t(window.size()));
    const double rel = (got - want).cwiseAbs().maxCoeff() / want.cwiseAbs().maxCoeff();
    int64_t same_top1 = 0;
    for (Eigen::Index i = 0; i < want.rows(); ++i) {
      Eigen::Index a = 0, b = 0;
      want.row(i).maxCoeff(&a);
      got.row(i).maxCoeff(&b);
      same_top1 += a == b;
    }
    qInfo("FP logits: max |gpu - cpu| / max |cpu| = %.3g, top-1 agreement %lld/%lld", rel,
          static_cast<long long>(same_top1), static_cast<long long>(want.rows()));
    QVERIFY(rel < kFpLogitsRelTol);
    // A second window through the same model (buffers reused) gives the same logits.
    RowMatrixXf again(want.rows(), want.cols());
    model->run(window, [&](int64_t r0, const Eigen::Ref<const RowMatrixXf>& chunk) {
      again.middleRows(r0, chunk.rows()) = chunk;
    });
    QVERIFY(again == got);
  }

  void pplMatchesCpu_data() {
    MXLENS_REQUIRE_CUDA();
    QTest::addColumn<int>("method");
    QTest::addColumn<bool>("bf16");
    for (Method m : {Method::fp, Method::rtn, Method::smooth, Method::hadamard, Method::duquant,
                     Method::duquantpp, Method::quarot}) {
      QTest::newRow((std::string(method_name(m)) + " fp32").c_str()) << int(m) << false;
    }
    for (Method m : {Method::fp, Method::rtn, Method::duquantpp})
      QTest::newRow((std::string(method_name(m)) + " bf16").c_str()) << int(m) << true;
  }
  void pplMatchesCpu() {
    MXLENS_REQUIRE_CUDA();
    QFETCH(int, method);
    QFETCH(bool, bf16);
    const Method m = Method(method);
    std::optional<QuantPlan> plan;
    if (m != Method::fp) plan.emplace(make_plan(calibrated(m), weights_->config()));
    const QuantPlan* p = plan ? &*plan : nullptr;
    const double cpu = cpu_ppl(p);
    const double gpu = cuda_ppl(p, bf16 ? gpu::CudaGemm::bf16 : gpu::CudaGemm::fp32);
    const double rel = std::abs(gpu / cpu - 1);
    qInfo("%s: PPL cpu %.6f, cuda %.6f (relative %.3g)", std::string(method_name(m)).c_str(), cpu,
          gpu, rel);
    QVERIFY(std::isfinite(gpu));
    QVERIFY(rel < (bf16 ? kBf16PplRelTol : kPplRelTol));
  }

  // The fused kernel's quantization is core's bit for bit, on > 1e7 random and real values.
  void rotateQuantizeBitIdentical() {
    MXLENS_REQUIRE_CUDA();
    struct Tensor {
      std::string name;
      int64_t rows, cols;
      std::vector<float> x;
    };
    std::vector<Tensor> tensors;
    {
      // Random: Gaussian with heavy-tailed outlier channels, 4096 × 2048.
      std::mt19937 rng(6);
      std::normal_distribution<float> n(0, 1);
      std::student_t_distribution<float> t(2);
      Tensor r{"random", 4096, 2048, std::vector<float>(size_t(4096) * 2048)};
      for (size_t i = 0; i < r.x.size(); ++i)
        r.x[i] =
            (i % 97 == 0 ? 40.0f * t(rng) : n(rng)) * std::ldexp(1.0f, int(i / 2048) % 20 - 10);
      tensors.push_back(std::move(r));
      // Real: every site input of 16 windows of the 656k forward.
      CaptureTaps capture;
      LlamaForward fwd(*weights_);
      for (int w = 0; w < 16; ++w)
        fwd.hidden(std::span<const int32_t>(wiki_.data() + w * kSeqlen, kSeqlen - 1), &capture);
      for (auto& c : capture.captures) {
        const int64_t rows = int64_t(c.values.size()) / c.cols;
        tensors.push_back({"real", rows, c.cols, std::move(c.values)});
      }
    }
    int64_t total = 0;
    for (const Tensor& t : tensors) total += int64_t(t.x.size());
    qInfo("%lld values (%zu tensors)", static_cast<long long>(total), tensors.size());
    QVERIFY(total >= kMinKernelValues);

    const std::vector<float> rotation = random_rotation(3), permutation = signed_permutation(4);
    TensorQuant tq;
    tq.format = QuantFormat::mxfp4;
    int64_t mismatches = 0;
    double rotation_error = 0;
    for (const Tensor& t : tensors) {
      std::vector<float> got(t.x.size()), want(t.x.size());
      const auto as_matrix = [&](std::vector<float>& v) {
        return Eigen::Map<RowMatrixXf>(v.data(), t.rows, t.cols);
      };
      // (a) No rotation, every E8M0 rule and rounding on the random tensor, the default on all.
      for (ScaleRule rule : {ScaleRule::ocp_floor, ScaleRule::fpquant, ScaleRule::rceil})
        for (Rounding rounding : {Rounding::rne, Rounding::ggml}) {
          const bool default_options = rule == ScaleRule::ocp_floor && rounding == Rounding::rne;
          if (!default_options && t.name != "random") continue;
          tq.options = {rule, rounding};
          gpu::cuda_rotate_quantize_rows(t.x, t.rows, t.cols, {}, &tq.options, got);
          want = t.x;
          fake_quantize_rows(as_matrix(want), tq, TensorRole::activations);
          mismatches += bit_mismatches(got, want, "quantize");
        }
      tq.options = {};
      // (b) A random rotation: the rotated floats as the kernel computes them, then core's
      // quantizer on exactly those floats.
      std::vector<float> rotated(t.x.size());
      gpu::cuda_rotate_quantize_rows(t.x, t.rows, t.cols, rotation, nullptr, rotated);
      std::vector<float> eigen = t.x;
      {
        ChannelTransform ct;
        Eigen::MatrixXf r(32, 32);
        for (int i = 0; i < 32; ++i)
          for (int j = 0; j < 32; ++j) r(i, j) = rotation[size_t(i) * 32 + j];
        ct.add_block_rotation(r);
        ct.apply_rows(as_matrix(eigen));
      }
      for (size_t i = 0; i < eigen.size(); i += 32) {
        double norm = 0, diff = 0;
        for (size_t j = i; j < i + 32; ++j) {
          norm = std::max(norm, double(std::abs(eigen[j])));
          diff = std::max(diff, double(std::abs(eigen[j] - rotated[j])));
        }
        if (norm > 0) rotation_error = std::max(rotation_error, diff / norm);
      }
      gpu::cuda_rotate_quantize_rows(t.x, t.rows, t.cols, rotation, &tq.options, got);
      want = rotated;
      fake_quantize_rows(as_matrix(want), tq, TensorRole::activations);
      mismatches += bit_mismatches(got, want, "rotate+quantize");
      // (c) A signed permutation is exact: equal to core's rotation and quantization.
      gpu::cuda_rotate_quantize_rows(t.x, t.rows, t.cols, permutation, &tq.options, got);
      want = t.x;
      {
        ChannelTransform ct;
        Eigen::MatrixXf r(32, 32);
        for (int i = 0; i < 32; ++i)
          for (int j = 0; j < 32; ++j) r(i, j) = permutation[size_t(i) * 32 + j];
        ct.add_block_rotation(r);
        ct.apply_rows(as_matrix(want));
      }
      fake_quantize_rows(as_matrix(want), tq, TensorRole::activations);
      mismatches += bit_mismatches(got, want, "signed permutation");
    }
    qInfo("rotation: max |gpu - eigen| / block max = %.3g", rotation_error);
    QCOMPARE(mismatches, int64_t{0});
    QVERIFY(rotation_error < kRotationAbsTol);
  }

  // A short last block (cols not a multiple of 32) is quantized as zero-padded, as core does.
  void shortLastBlock() {
    MXLENS_REQUIRE_CUDA();
    const int64_t rows = 37, cols = 172;  // stories260K's down site
    std::mt19937 rng(8);
    std::normal_distribution<float> n(0, 3);
    std::vector<float> x(size_t(rows * cols)), got(x.size());
    for (float& v : x) v = n(rng);
    TensorQuant tq;
    tq.format = QuantFormat::mxfp4;
    gpu::cuda_rotate_quantize_rows(x, rows, cols, {}, &tq.options, got);
    std::vector<float> want = x;
    fake_quantize_rows(Eigen::Map<RowMatrixXf>(want.data(), rows, cols), tq,
                       TensorRole::activations);
    QCOMPARE(bit_mismatches(got, want, "short block"), int64_t{0});
    QVERIFY(got != x);
  }
};

QTEST_GUILESS_MAIN(TestCudaForward)
#include "test_cuda_forward.moc"
