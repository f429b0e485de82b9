// fp_quant export (formats.md §4.1): the files read back by an independent header parser, the
// packing against the worked vectors, the round trip (the export opened as a checkpoint gives
// the session's W4A4 perplexity), the refusals, and nothing half-written on failure.
#include <QTemporaryDir>
#include <QtTest>

#include <atomic>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/calib/calibrate.h"
#include "core/eval/perplexity.h"
#include "core/export/export.h"
#include "core/export/export_weights.h"
#include "core/io/session_file.h"
#include "core/io/staged_output.h"
#include "core/model/checkpoint.h"
#include "core/model/fp_quant_config.h"
#include "core/model/synthetic_checkpoint.h"
#include "core/mx/mxfp4.h"
#include "core/mx/packing.h"
#include "core/plant/plant.h"
#include "core/quant/fp_quant_plan.h"
#include "core/quant/w4a4_taps.h"
#include "core/text/tokenizer.h"
#include "core/util/error.h"
#include "tests/kill_in_child.h"
#include "tests/test_data.h"

using namespace mxlens;
namespace fs = std::filesystem;

namespace {

// An independent reader of a safetensors header (formats.md §1.1): 8-byte little-endian
// length, JSON, data. Uses nothing of core/io.
struct RawTensor {
  std::string dtype;
  std::vector<uint64_t> shape;
  uint64_t begin = 0, end = 0;
};
struct RawFile {
  uint64_t header_len = 0, file_size = 0;
  std::map<std::string, RawTensor> tensors;
  std::string bytes;
};

RawFile read_raw(const fs::path& p) {
  RawFile f;
  std::ifstream in(p, std::ios::binary);
  f.bytes.assign(std::istreambuf_iterator<char>(in), {});
  f.file_size = f.bytes.size();
  if (f.file_size < 8) throw std::runtime_error("short file");
  for (int i = 7; i >= 0; --i) f.header_len = (f.header_len << 8) | uint8_t(f.bytes[size_t(i)]);
  const auto j = nlohmann::json::parse(f.bytes.substr(8, f.header_len));
  for (const auto& [name, v] : j.items()) {
    if (name == "__metadata__") continue;
    RawTensor t;
    t.dtype = v["dtype"].get<std::string>();
    t.shape = v["shape"].get<std::vector<uint64_t>>();
    t.begin = v["data_offsets"][0].get<uint64_t>();
    t.end = v["data_offsets"][1].get<uint64_t>();
    f.tensors[name] = t;
  }
  return f;
}

const uint8_t* raw_data(const RawFile& f, const RawTensor& t) {
  return reinterpret_cast<const uint8_t*>(f.bytes.data()) + 8 + f.header_len + t.begin;
}

double rel(double a, double b) {
  return std::abs(a - b) / std::abs(b);
}

}  // namespace

class TestFpQuantExport : public QObject {
  Q_OBJECT

  QTemporaryDir tmp_;
  std::unique_ptr<Checkpoint> ckpt_;
  std::unique_ptr<LlamaWeights> weights_;
  std::vector<int32_t> ids_;
  std::vector<int32_t> eval_ids_;

  fs::path dir() const { return fs::path(tmp_.path().toStdString()); }

  CalibrationSettings settings(Method m) const {
    CalibrationSettings s;
    s.method = m;
    s.windows.count = 4;
    s.windows.seqlen = 128;
    s.windows.tail_fraction = 0.5;
    s.greedy.max_steps = 16;
    s.duquant.max_steps = 8;
    s.smoothing.tie_gqa = true;
    return s;
  }
  Session calibrate_on(const Checkpoint& ck, const LlamaWeights& w,
                       const CalibrationSettings& s) const {
    CalibrateOptions o;
    o.site_statistics = false;
    return calibrate(ck, w, {"stories.txt", "sha", ids_}, s, o);
  }
  // The session's W4A4 perplexity and its export's, on the same windows.
  std::pair<double, double> round_trip(const Checkpoint& ck, const LlamaWeights& w,
                                       const Session& s, const fs::path& session_file,
                                       const fs::path& out) {
    save_session(s, session_file);
    ExportOptions eo;
    eo.force = true;
    const ExportReport r = export_checkpoint(ck, s, session_file, out, eo);
    [&] { QCOMPARE(r.quantized_linears, 7 * ck.config().num_layers); }();
    PerplexityOptions po;
    po.seqlen = 128;
    Progress p;
    const QuantPlan plan = make_plan(s, ck.config());
    W4a4Taps taps(plan);
    const double session_ppl = evaluate_perplexity(w, eval_ids_, po, p, {}, &taps).ppl;
    const Checkpoint exported = Checkpoint::open(out);
    const LlamaWeights ew(exported);
    const QuantPlan eplan = fp_quant_plan(exported);
    W4a4Taps etaps(eplan);
    const double export_ppl = evaluate_perplexity(ew, eval_ids_, po, p, {}, &etaps).ppl;
    return {session_ppl, export_ppl};
  }

 private slots:
  void initTestCase() {
    QVERIFY(tmp_.isValid());
    ckpt_ = std::make_unique<Checkpoint>(Checkpoint::open(test::model_656k()));
    weights_ = std::make_unique<LlamaWeights>(*ckpt_);
    const Tokenizer tok = Tokenizer::load(*ckpt_->tokenizer_json());
    std::ifstream f(test::data_dir() / "tinystories-text" / "stories.txt");
    const std::string all((std::istreambuf_iterator<char>(f)), {});
    ids_ = tok.encode(all.substr(0, 20000));
    eval_ids_.assign(ids_.begin(), ids_.begin() + 128 * 8);
  }

  // formats.md §4.4: element 0 = 1.0, 1 = −0.5, 16 = 3.0, 17 = −6.0 → pairs bytes 0x92 at 0,
  // 0xF5 at 8, scale 0x7F; algorithm.md §1.6's packing rule (element 2k low nibble).
  void pairsPackingMatchesWorkedBlock() {
    std::vector<float> x(32, 0.0f);
    x[0] = 1.0f, x[1] = -0.5f, x[16] = 3.0f, x[17] = -6.0f;
    TensorScale ts;
    const std::vector<Mxfp4Block> blocks = quantize_mxfp4(x, QuantOptions{}, &ts);
    const std::span<const Mxfp4Block> bs(blocks);
    const PairsLayout p = block_records_to_pairs(block_bytes(bs), 32);
    QCOMPARE(p.scales.size(), size_t(1));
    QCOMPARE(int(p.scales[0]), 0x7F);
    for (size_t i = 0; i < 16; ++i) QCOMPARE(int(p.packed[i]), i == 0 ? 0x92 : i == 8 ? 0xF5 : 0);
    // The ggml record of the same block (formats.md §4.4 GGUF line).
    const uint8_t* r = reinterpret_cast<const uint8_t*>(blocks.data());
    const uint8_t expect[17] = {0x7F, 0x52, 0xF9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
    QVERIFY(std::memcmp(r, expect, 17) == 0);

    // algorithm.md §1.6 V1: S1 pairs bytes as listed there; S2 (fpquant) codes as listed,
    // packed by the same rule, with the scale byte 0x7F (scale 4/3) that the fp_quant writer
    // stores as 0x81 beside weight_global_scale 3 (formats.md §4.1; roundTripOriginalModel checks
    // that shift on a written file).
    const std::vector<float> v1 = {
        0.1234f, -0.5678f, 0.9012f,  -1.3456f, 1.7890f,  -2.2222f, 0.0311f,  -0.0001f,
        0.4444f, -0.6667f, 2.9000f,  -3.1415f, 0.7071f,  -0.2500f, 1.1111f,  -1.9999f,
        0.3333f, -0.8765f, 5.4321f,  -0.0625f, 0.1500f,  -4.0500f, 2.5100f,  -0.3750f,
        0.0000f, 1.4142f,  -1.7321f, 0.6000f,  -0.9000f, 3.6000f,  -2.7000f, 0.0450f};
    const auto pairs_of = [](const std::vector<float>& v, ScaleRule rule) {
      QuantOptions o;
      o.scale_rule = rule;
      TensorScale ts_v;
      const std::vector<Mxfp4Block> b = quantize_mxfp4(v, o, &ts_v);
      return block_records_to_pairs(block_bytes(std::span<const Mxfp4Block>(b)), 32);
    };
    const auto codes_to_pairs = [](const char* hex) {
      std::vector<uint8_t> out;
      for (int j = 0; j < 16; ++j) {
        const auto nib = [&](int i) {
          const char c = hex[i];
          return uint8_t(c <= '9' ? c - '0' : c - 'a' + 10);
        };
        out.push_back(uint8_t(nib(2 * j) | (nib(2 * j + 1) << 4)));
      }
      return out;
    };
    const PairsLayout s1 = pairs_of(v1, ScaleRule::ocp_floor);
    const std::vector<uint8_t> s1_expect = {0x90, 0xb2, 0xc4, 0x00, 0x91, 0xd5, 0x01, 0xc2,
                                            0xa1, 0x07, 0xe0, 0x95, 0x30, 0x1b, 0x6a, 0x0d};
    QCOMPARE(std::vector<uint8_t>(s1.packed.begin(), s1.packed.end()), s1_expect);
    QCOMPARE(int(s1.scales[0]), 0x7F);
    QCOMPARE(std::vector<uint8_t>(s1.packed.begin(), s1.packed.end()),
             codes_to_pairs("092b4c00195d102c1a700e5903b1a6d0"));
    const PairsLayout s2 = pairs_of(v1, ScaleRule::fpquant);
    QCOMPARE(std::vector<uint8_t>(s2.packed.begin(), s2.packed.end()),
             codes_to_pairs("091a3b00194c102b09600d4902b195c0"));
    QCOMPARE(int(s2.scales[0]), 0x7F);
  }

  // The written files, parsed without mxlens's reader: names, dtypes, shapes, offsets, and
  // the bytes of one linear against export_weight_blocks.
  void filesAndHeader() {
    const Session s = calibrate_on(*ckpt_, *weights_, settings(Method::duquantpp));
    const fs::path sf = dir() / "dq.h5", out = dir() / "dq_fpq";
    save_session(s, sf);
    const ExportReport r = export_checkpoint(*ckpt_, s, sf, out, {});
    QVERIFY(fs::is_regular_file(out / "model.safetensors"));
    QVERIFY(fs::is_regular_file(out / "tokenizer.json"));
    QVERIFY(!r.notes.empty());
    const RawFile f = read_raw(out / "model.safetensors");
    const LlamaConfig& c = ckpt_->config();
    // Offsets: contiguous, in order of begin, ending at the file's end.
    std::vector<std::pair<uint64_t, uint64_t>> spans;
    for (const auto& [n, t] : f.tensors) spans.emplace_back(t.begin, t.end);
    std::sort(spans.begin(), spans.end());
    uint64_t at = 0;
    for (const auto& [b, e] : spans) {
      QCOMPARE(b, at);
      at = e;
    }
    QCOMPARE(8 + f.header_len + at, f.file_size);
    QCOMPARE((8 + f.header_len) % 8, uint64_t(0));
    for (int l = 0; l < c.num_layers; ++l)
      for (Linear which : kAllLinears) {
        const std::string m = hf_linear_module(l, which);
        QVERIFY2(!f.tensors.count(m + ".weight"), m.c_str());
        const RawTensor& q = f.tensors.at(m + ".qweight");
        const RawTensor& sc = f.tensors.at(m + ".scales");
        const RawTensor& h = f.tensors.at(m + ".forward_hadamard_matrix");
        QCOMPARE(q.dtype, std::string("U8"));
        QCOMPARE(sc.dtype, std::string("U8"));
        QCOMPARE(h.dtype, std::string("F32"));
        QCOMPARE(h.shape, (std::vector<uint64_t>{32, 32}));
        QCOMPARE(f.tensors.at(m + ".backward_hadamard_matrix").shape, h.shape);
        QCOMPARE(f.tensors.at(m + ".weight_global_scale").shape, std::vector<uint64_t>{1});
        QCOMPARE(f.tensors.at(m + ".act_global_scale").shape, std::vector<uint64_t>{1});
        const uint64_t out_ch = q.shape[0], in_ch = q.shape[1] * 2;
        QCOMPARE(sc.shape, (std::vector<uint64_t>{out_ch, in_ch / 32}));
        QCOMPARE(q.end - q.begin, out_ch * in_ch / 2);
      }
    // Layer 1 down_proj: codes and scales equal the session's weight blocks, repacked.
    const QuantPlan plan = make_plan(s, c);
    LayerWeights lw;
    weights_->load_layer(1, lw);
    const ExportedWeight ew = export_weight_blocks(plan, lw, Linear::Down);
    const std::string m = hf_linear_module(1, Linear::Down);
    const RawTensor& q = f.tensors.at(m + ".qweight");
    const RawTensor& sc = f.tensors.at(m + ".scales");
    const uint8_t* qd = raw_data(f, q);
    const uint8_t* sd = raw_data(f, sc);
    for (size_t b = 0; b < ew.blocks.size(); ++b) {
      QCOMPARE(int(sd[b]), int(ew.blocks[b].e));
      for (int j = 0; j < 32; ++j) {
        const int want = j < 16 ? ew.blocks[b].qs[j] & 0xF : ew.blocks[b].qs[j - 16] >> 4;
        const uint8_t byte = qd[b * 16 + size_t(j / 2)];
        QCOMPARE(int(j % 2 ? byte >> 4 : byte & 0xF), want);
      }
    }
    // The stored matrix is the session's rotation of that site, x_blk · R.
    const Eigen::MatrixXf& R = s.transforms[1].site(Site::Down).rotation.steps().at(0).rotation;
    const float* hd =
        reinterpret_cast<const float*>(raw_data(f, f.tensors.at(m + ".forward_hadamard_matrix")));
    for (int i = 0; i < 32; ++i)
      for (int j = 0; j < 32; ++j) QCOMPARE(hd[i * 32 + j], R(i, j));
    // config.json carries the format's quantization_config.
    std::ifstream cj(out / "config.json");
    const auto j = nlohmann::json::parse(cj);
    const auto& qc = j.at("quantization_config");
    QCOMPARE(qc.at("quant_method").get<std::string>(), std::string("fp_quant"));
    QCOMPARE(qc.at("forward_dtype").get<std::string>(), std::string("mxfp4"));
    QCOMPARE(qc.at("hadamard_group_size").get<int>(), 32);
    QCOMPARE(qc.at("mxlens").at("method").get<std::string>(), std::string("duquantpp"));
  }

  // The export opened as a checkpoint evaluates to the session's W4A4 perplexity (1e-5; in
  // practice bit-identical), for several methods and both weight scale conventions.
  void roundTripOriginalModel() {
    for (Method m : {Method::rtn, Method::hadamard, Method::duquantpp, Method::duquantpp_gptq}) {
      CalibrationSettings st = settings(m);
      const Session s = calibrate_on(*ckpt_, *weights_, st);
      const std::string name(method_name(m));
      const auto [a, b] =
          round_trip(*ckpt_, *weights_, s, dir() / (name + ".h5"), dir() / ("rt_" + name));
      qInfo("%s: session W4A4 PPL %.10f, export %.10f", name.c_str(), a, b);
      QVERIFY2(rel(b, a) < 1e-5, name.c_str());
    }
    // fpquant rule: bytes k+2+127, global scale 3, same values.
    CalibrationSettings st = settings(Method::duquantpp);
    st.scheme = QuantScheme::make(QuantMode::w4a4, QuantFormat::mxfp4,
                                  QuantOptions{ScaleRule::fpquant, Rounding::rne});
    const Session s = calibrate_on(*ckpt_, *weights_, st);
    const auto [a, b] = round_trip(*ckpt_, *weights_, s, dir() / "fq.h5", dir() / "rt_fq");
    qInfo("duquantpp fpquant: session %.10f, export %.10f", a, b);
    QVERIFY(rel(b, a) < 1e-5);
    const RawFile f = read_raw(dir() / "rt_fq" / "model.safetensors");
    const RawTensor& g = f.tensors.at("model.layers.0.mlp.up_proj.weight_global_scale");
    float v = 0;
    std::memcpy(&v, raw_data(f, g), 4);
    QCOMPARE(v, 3.0f);
    // The file's scale bytes are the session's E8M0 bytes + 2 (2^k·4/3 stored as 3·2^k / 3).
    {
      const QuantPlan plan = make_plan(s, weights_->config());
      LayerWeights lw;
      weights_->load_layer(0, lw);
      const ExportedWeight ew = export_weight_blocks(plan, lw, Linear::Up);
      const RawTensor& sc = f.tensors.at("model.layers.0.mlp.up_proj.scales");
      QCOMPARE(sc.dtype, std::string("U8"));
      const uint8_t* bytes = raw_data(f, sc);
      QCOMPARE(size_t(sc.shape[0] * sc.shape[1]), ew.blocks.size());
      for (size_t i = 0; i < ew.blocks.size(); ++i)
        QCOMPARE(int(bytes[i]), ew.blocks[i].e == 0xFF ? 0xFF : int(ew.blocks[i].e) + 2);
    }
    // Without mxlens's record the loader uses the runtime's abs_max (= fpquant): same PPL.
    const Checkpoint exported = Checkpoint::open(dir() / "rt_fq");
    QCOMPARE(fp_quant_plan(exported).scheme().activations.options.scale_rule, ScaleRule::fpquant);
  }

  // The planted copy (norm plant, S = 8): the same round trip.
  void roundTripPlantedModel() {
    PlantOptions po;
    po.scale = 8;
    po.channels = 4;
    const fs::path planted = dir() / "planted";
    plant_outliers(*ckpt_, planted, po);
    const Checkpoint pc = Checkpoint::open(planted);
    const LlamaWeights pw(pc);
    for (Method m : {Method::smooth, Method::duquantpp}) {
      const Session s = calibrate_on(pc, pw, settings(m));
      const std::string name(method_name(m));
      const auto [a, b] =
          round_trip(pc, pw, s, dir() / ("p_" + name + ".h5"), dir() / ("prt_" + name));
      qInfo("planted %s: session W4A4 PPL %.10f, export %.10f", name.c_str(), a, b);
      QVERIFY2(rel(b, a) < 1e-5, name.c_str());
    }
    QVERIFY(fs::is_regular_file(dir() / "prt_duquantpp" / "mxlens_plant.json"));
    // A session of the planted copy is refused for the original model, nothing written.
    const Session s = calibrate_on(pc, pw, settings(Method::rtn));
    save_session(s, dir() / "p_rtn.h5");
    QVERIFY_THROWS_EXCEPTION(
        Error, export_checkpoint(*ckpt_, s, dir() / "p_rtn.h5", dir() / "wrong_model", {}));
    QVERIFY(!fs::exists(dir() / "wrong_model"));
  }

  // A BF16 checkpoint (synthetic, random ids) exported in shards: the index names every
  // tensor, Checkpoint::open reads the shards, the round trip is still exact, and the notes
  // say that transformers will round the F32 matrices to the model dtype.
  void bf16ShardedRoundTrip() {
    SyntheticOptions so;
    so.preset = "tiny";
    so.dtype = DType::BF16;
    const fs::path src = dir() / "synth_bf16";
    write_synthetic_checkpoint(src, so);
    const Checkpoint ck = Checkpoint::open(src);
    const LlamaWeights w(ck);
    std::vector<int32_t> ids(4096);
    for (size_t i = 0; i < ids.size(); ++i) ids[i] = int32_t((i * 7919 + 13) % 256);
    CalibrationSettings st = settings(Method::duquantpp);
    CalibrateOptions co;
    co.site_statistics = false;
    const Session s = calibrate(ck, w, {"ids", "sha", ids}, st, co);
    save_session(s, dir() / "bf16.h5");
    ExportOptions eo;
    eo.max_shard_bytes = 64 * 1024;
    const fs::path out = dir() / "bf16_fpq";
    const ExportReport r = export_checkpoint(ck, s, dir() / "bf16.h5", out, eo);
    QVERIFY(fs::is_regular_file(out / "model.safetensors.index.json"));
    int shards = 0;
    for (const ExportedFile& f : r.files)
      if (f.path.extension() == ".safetensors") ++shards;
    QVERIFY2(shards > 1, QByteArray::number(shards));
    bool rounded_note = false;
    for (const std::string& n : r.notes) rounded_note |= n.find("bfloat16") != std::string::npos;
    QVERIFY(rounded_note);
    const Checkpoint exported = Checkpoint::open(out);
    const LlamaWeights ew(exported);
    PerplexityOptions po;
    po.seqlen = 128;
    po.max_windows = 4;
    Progress p;
    const QuantPlan plan = make_plan(s, ck.config());
    W4a4Taps taps(plan);
    const double a = evaluate_perplexity(w, ids, po, p, {}, &taps).ppl;
    const QuantPlan eplan = fp_quant_plan(exported);
    W4a4Taps etaps(eplan);
    const double b = evaluate_perplexity(ew, ids, po, p, {}, &etaps).ppl;
    qInfo("bf16 synthetic, %d shards: session %.10f, export %.10f", shards, a, b);
    QVERIFY(rel(b, a) < 1e-5);
    // The embedding is copied in its dtype.
    QCOMPARE(exported.tensor(exported.embedding_name()).dtype, DType::BF16);
  }

  void refusals() {
    auto expect_refusal = [&](const Session& s, const char* needle) {
      save_session(s, dir() / "r.h5");
      try {
        export_checkpoint(*ckpt_, s, dir() / "r.h5", dir() / "refused", {});
        QFAIL("export was not refused");
      } catch (const Error& e) {
        qInfo("refused: %s", e.what());
        QVERIFY2(std::string(e.what()).find(needle) != std::string::npos, e.what());
      }
      QVERIFY(!fs::exists(dir() / "refused"));
    };
    CalibrationSettings online = settings(Method::duquantpp);
    online.smoothing.tie_gqa = false;
    expect_refusal(calibrate_on(*ckpt_, *weights_, online), "--smooth-gqa tied");
    expect_refusal(calibrate_on(*ckpt_, *weights_, settings(Method::duquant)), "permutation");
    expect_refusal(calibrate_on(*ckpt_, *weights_, settings(Method::quarot)), "Hadamard");
    CalibrationSettings log8 = settings(Method::rtn);
    log8.scheme = QuantScheme::make(QuantMode::w4a4, QuantFormat::mxfp4,
                                    QuantOptions{ScaleRule::dqv2_log8, Rounding::rne});
    expect_refusal(calibrate_on(*ckpt_, *weights_, log8), "dqv2_log8");
    expect_refusal(calibrate_on(*ckpt_, *weights_, settings(Method::fp)), "fp");

    // export_refusal: the same format checks without an output, for choosing a format.
    {
      const Session so = calibrate_on(*ckpt_, *weights_, online);
      const std::string fq = export_refusal(*ckpt_, so, ExportFormat::fp_quant);
      QVERIFY2(fq.find("--smooth-gqa tied") != std::string::npos, fq.c_str());
      const Session st = calibrate_on(*ckpt_, *weights_, settings(Method::duquantpp));
      QCOMPARE(export_refusal(*ckpt_, st, ExportFormat::fp_quant), std::string());
      const std::string gg = export_refusal(*ckpt_, st, ExportFormat::gguf);
      QVERIFY2(gg.find("layer 0 qkv") != std::string::npos, gg.c_str());
      const Session sm = calibrate_on(*ckpt_, *weights_, settings(Method::smooth));
      QCOMPARE(export_refusal(*ckpt_, sm, ExportFormat::gguf), std::string());
    }
    // An existing output is kept unless --force.
    const Session s = calibrate_on(*ckpt_, *weights_, settings(Method::rtn));
    save_session(s, dir() / "rtn.h5");
    fs::create_directories(dir() / "exists");
    std::ofstream(dir() / "exists" / "keep.txt") << "user data";
    QVERIFY_THROWS_EXCEPTION(Error,
                             export_checkpoint(*ckpt_, s, dir() / "rtn.h5", dir() / "exists", {}));
    QVERIFY(fs::exists(dir() / "exists" / "keep.txt"));
    ExportOptions force;
    force.force = true;
    export_checkpoint(*ckpt_, s, dir() / "rtn.h5", dir() / "exists", force);
    QVERIFY(!fs::exists(dir() / "exists" / "keep.txt"));
    QVERIFY(fs::exists(dir() / "exists" / "model.safetensors"));
    // Not enough space: the check names the need and what is free.
    const uint64_t free = free_bytes_at(dir());
    QVERIFY_THROWS_EXCEPTION(Error, check_free_space(dir() / "x", free + (uint64_t(1) << 30)));
    check_free_space(dir() / "x", 1024);
    // The export runs that check before it writes anything, for both formats, and an output
    // it would have replaced (--force) is kept.
    const Session smooth = calibrate_on(*ckpt_, *weights_, settings(Method::smooth));
    for (ExportFormat f : {ExportFormat::fp_quant, ExportFormat::gguf}) {
      const bool dir_out = f == ExportFormat::fp_quant;
      const fs::path target = dir() / (dir_out ? "full_disk" : "full_disk.gguf");
      if (dir_out) {
        fs::create_directories(target);
        std::ofstream(target / "keep.txt") << "user data";
      } else {
        std::ofstream(target) << "user data";
      }
      ExportOptions tight;
      tight.format = f;
      tight.force = true;
      uint64_t asked = 0;
      tight.free_bytes = [&](const fs::path&) { return asked = 4096; };
      try {
        export_checkpoint(*ckpt_, smooth, dir() / "smooth.h5", target, tight);
        QFAIL("an export without room was not refused");
      } catch (const Error& e) {
        const std::string what = e.what();
        QVERIFY2(
            what.find("needs") != std::string::npos && what.find("are free") != std::string::npos,
            what.c_str());
        QVERIFY2(what.find(target.string()) != std::string::npos, what.c_str());
      }
      QCOMPARE(asked, uint64_t(4096));
      QVERIFY(fs::exists(dir_out ? target / "keep.txt" : target));
      if (!dir_out) {
        std::ifstream in(target);
        std::string line;
        std::getline(in, line);
        QCOMPARE(line, std::string("user data"));
      }
      for (const fs::directory_entry& e : fs::directory_iterator(dir()))
        QVERIFY2(e.path().filename().string().find("tmp") == std::string::npos, e.path().c_str());
    }
  }

  // Cancelled mid-export: no output and no temporary entry left beside it.
  void cancelLeavesNothing() {
    const Session s = calibrate_on(*ckpt_, *weights_, settings(Method::rtn));
    save_session(s, dir() / "c.h5");
    const fs::path parent = dir() / "cancel";
    fs::create_directories(parent);
    std::atomic<bool> cancel{false};
    Progress p(
        [&](double, std::string_view stage) {
          if (stage == "layer 1") cancel = true;
        },
        &cancel);
    QVERIFY_THROWS_EXCEPTION(Cancelled,
                             export_checkpoint(*ckpt_, s, dir() / "c.h5", parent / "out", {}, p));
    QVERIFY(fs::is_empty(parent));
  }

  // An export killed mid-way (SIGKILL while it writes layer 1) replacing an existing output
  // (--force): the old output is intact, nothing that looks like the output is added (only a
  // hidden ".<name>.export-tmp-<pid>-<n>" entry), and a later export still works.
  void killedExportKeepsOldOutput() {
    const Session s = calibrate_on(*ckpt_, *weights_, settings(Method::smooth));
    for (ExportFormat f : {ExportFormat::fp_quant, ExportFormat::gguf}) {
      const bool dir_out = f == ExportFormat::fp_quant;
      const fs::path parent = dir() / (std::string("killed_") + std::string(to_string(f)));
      fs::create_directories(parent);
      const fs::path out = parent / (dir_out ? "model" : "model.gguf");
      if (dir_out) {
        fs::create_directories(out);
        std::ofstream(out / "keep.txt") << "old";
      } else {
        std::ofstream(out) << "old";
      }
      ExportOptions o;
      o.format = f;
      o.force = true;
      const test::KilledChild k = test::kill_child_at([&](const std::function<void()>& stop_here) {
        // fp_quant reports layers, GGUF tensors: stop in layer 1 either way.
        const Progress p([&](double, std::string_view stage) {
          if (stage == "layer 1" || stage == "blk.1.attn_norm.weight") stop_here();
        });
        export_checkpoint(*ckpt_, s, "k.h5", out, o, p);
      });
      QVERIFY(k.pid > 0);
      QVERIFY(k.reaped);
      QCOMPARE(k.reached, ssize_t(1));
      QVERIFY(k.killed_by_sigkill());
      const pid_t child = k.pid;
      // The old output is as it was; everything else is a hidden temporary of the killed pid.
      if (dir_out) {
        QVERIFY(fs::exists(out / "keep.txt"));
        QVERIFY(!fs::exists(out / "model.safetensors"));
      } else {
        QCOMPARE(fs::file_size(out), uintmax_t(3));
      }
      int temps = 0;
      for (const fs::directory_entry& e : fs::directory_iterator(parent)) {
        const std::string name = e.path().filename().string();
        if (e.path() == out) continue;
        QVERIFY2(
            name.front() == '.' && name.find("-tmp-" + std::to_string(child)) != std::string::npos,
            name.c_str());
        ++temps;
      }
      QCOMPARE(temps, 1);
      // A later export replaces the old output.
      export_checkpoint(*ckpt_, s, "k.h5", out, o);
      QVERIFY(dir_out ? fs::exists(out / "model.safetensors") : fs::file_size(out) > 1000);
      QVERIFY(!dir_out || !fs::exists(out / "keep.txt"));
    }
  }

  // Broken fp_quant checkpoints are refused naming the file.
  void badFpQuantCheckpoints() {
    const Session s = calibrate_on(*ckpt_, *weights_, settings(Method::rtn));
    save_session(s, dir() / "b.h5");
    const fs::path out = dir() / "bad";
    ExportOptions o;
    o.force = true;
    export_checkpoint(*ckpt_, s, dir() / "b.h5", out, o);
    QVERIFY(Checkpoint::open(out).fp_quant());
    std::ifstream in(out / "config.json");
    nlohmann::json j = nlohmann::json::parse(in);
    in.close();
    j["quantization_config"]["forward_dtype"] = "nvfp4";
    std::ofstream(out / "config.json") << j.dump();
    try {
      Checkpoint::open(out);
      QFAIL("nvfp4 accepted");
    } catch (const Error& e) {
      QVERIFY2(std::string(e.what()).find("config.json") != std::string::npos, e.what());
    }
    // Exporting from an fp_quant checkpoint is refused.
    j["quantization_config"]["forward_dtype"] = "mxfp4";
    std::ofstream(out / "config.json") << j.dump();
    const Checkpoint fq = Checkpoint::open(out);
    QVERIFY(LlamaWeights(fq).prequantized());
  }
};

QTEST_GUILESS_MAIN(TestFpQuantExport)
#include "test_fp_quant_export.moc"
