// Checkpoint loading (formats.md §1.5, §2): the two real models, config.json parsing and
// RoPE frequencies, sharded synthetic round trips, and one row per broken checkpoint.
#include <QtTest>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <numbers>
#include <set>

#include "core/io/float_convert.h"
#include "core/io/safetensors_writer.h"
#include "core/model/checkpoint.h"
#include "core/model/synthetic_checkpoint.h"
#include "core/util/error.h"
#include "tests/test_data.h"

using namespace mxlens;
using json = nlohmann::json;
namespace fs = std::filesystem;

namespace {

constexpr double kSyntheticStd = 0.02;       // what synthetic_values draws from
constexpr double kStdTolerance = 0.001;      // 4096 samples: standard error of the std ~0.0002
constexpr uint64_t kTinyShardBytes = 60000;  // splits the tiny BF16 preset into 6 shards

void write_text(const fs::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
}

json read_json(const fs::path& path) {
  std::ifstream in(path);
  return json::parse(in);
}

void edit_json(const fs::path& path, const std::function<void(json&)>& edit) {
  json j = read_json(path);
  edit(j);
  write_text(path, j.dump(2));
}

// Rewrites a shard in place after `edit` changes its tensor list (bytes are copied).
void edit_shard(const fs::path& path, const std::function<void(std::vector<TensorData>&)>& edit) {
  std::vector<TensorData> tensors;
  std::map<std::string, std::string> metadata;
  {
    const SafetensorsFile f = SafetensorsFile::open(path);
    metadata = f.metadata();
    for (const TensorInfo& t : f.tensors()) {
      const auto bytes = f.bytes(t);
      tensors.push_back({{t.name, t.dtype, t.shape}, {bytes.begin(), bytes.end()}});
    }
  }
  edit(tensors);
  write_safetensors(path, tensors, metadata);
}

void erase_tensor(std::vector<TensorData>& tensors, const std::string& name) {
  std::erase_if(tensors, [&](const TensorData& t) { return t.spec.name == name; });
}

std::string shard_of(const fs::path& dir, const std::string& tensor) {
  return read_json(dir / "model.safetensors.index.json")["weight_map"][tensor].get<std::string>();
}

// Removes a tensor from its shard and from the index.
void remove_tensor(const fs::path& dir, const std::string& tensor) {
  edit_shard(dir / shard_of(dir, tensor), [&](auto& t) { erase_tensor(t, tensor); });
  edit_json(dir / "model.safetensors.index.json", [&](json& j) { j["weight_map"].erase(tensor); });
}

fs::path make_tiny(const QTemporaryDir& tmp, DType dtype = DType::BF16,
                   uint64_t shard_bytes = kTinyShardBytes, const std::string& preset = "tiny",
                   uint64_t seed = 7) {
  const fs::path dir = fs::path(tmp.path().toStdString()) / "model";
  SyntheticOptions options;
  options.preset = preset;
  options.dtype = dtype;
  options.shard_bytes = shard_bytes;
  options.seed = seed;
  write_synthetic_checkpoint(dir, options);
  return dir;
}

float round_to(DType dtype, float v) {
  if (dtype == DType::BF16) return bf16_to_f32(f32_to_bf16(v));
  if (dtype == DType::F16) return f16_to_f32_ref(f32_to_f16(v));
  return v;
}

std::vector<float> read_all(const Checkpoint& ck, const std::string& name) {
  uint64_t numel = 1;
  for (uint64_t dim : ck.tensor(name).shape) numel *= dim;
  std::vector<float> values(numel);
  ck.read_f32(name, values);
  return values;
}

std::vector<uint64_t> shape_of(const Checkpoint& ck, const std::string& name) {
  return ck.tensor(name).shape;
}

const char* kBaseConfig = R"({
  "architectures": ["LlamaForCausalLM"], "model_type": "llama",
  "hidden_size": 128, "intermediate_size": 384, "num_hidden_layers": 2,
  "num_attention_heads": 8, "num_key_value_heads": 4, "vocab_size": 2048,
  "rms_norm_eps": 1e-6, "rope_theta": 10000.0, "hidden_act": "silu"})";

QByteArray config_with(const std::function<void(json&)>& edit) {
  json j = json::parse(kBaseConfig);
  edit(j);
  return QByteArray::fromStdString(j.dump());
}

LlamaConfig parse_text(const QTemporaryDir& tmp, const QByteArray& text) {
  const fs::path path = fs::path(tmp.path().toStdString()) / "config.json";
  write_text(path, text.toStdString());
  return parse_llama_config(path);
}

}  // namespace

class TestCheckpoint : public QObject {
  Q_OBJECT
 private slots:
  void opens656kWithTiedEmbeddingFallback() {
    const Checkpoint ck = Checkpoint::open(test::model_656k());
    const LlamaConfig& c = ck.config();
    QCOMPARE(QString::fromStdString(c.architecture), QString("LlamaForCausalLM"));
    QCOMPARE(c.hidden_size, 128);
    QCOMPARE(c.intermediate_size, 384);
    QCOMPARE(c.num_layers, 2);
    QCOMPARE(c.num_heads, 8);
    QCOMPARE(c.num_kv_heads, 4);
    QCOMPARE(c.kv_group(), 2);
    QCOMPARE(c.head_dim, 16);
    QCOMPARE(c.vocab_size, 2048);
    QCOMPARE(c.max_position_embeddings, int64_t(512));
    QCOMPARE(c.rms_norm_eps, 1e-6);
    QCOMPARE(c.rope_theta, 10000.0);
    QCOMPARE(QString::fromStdString(c.rope_scaling.type), QString("default"));
    QVERIFY(c.tie_word_embeddings);
    QVERIFY(!c.qkv_bias && !c.attention_bias && !c.mlp_bias);
    QVERIFY(c.bos_token_ids == std::vector<int>{1});
    QVERIFY(c.eos_token_ids == std::vector<int>{2});

    // Only lm_head.weight is stored; both roles resolve to it.
    QVERIFY(!ck.has("model.embed_tokens.weight"));
    QCOMPARE(QString::fromStdString(ck.embedding_name()), QString("lm_head.weight"));
    QCOMPARE(QString::fromStdString(ck.lm_head_name()), QString("lm_head.weight"));
    QVERIFY(shape_of(ck, ck.embedding_name()) == (std::vector<uint64_t>{2048, 128}));
    QVERIFY(shape_of(ck, layer_tensor_name(1, "self_attn.q_proj.weight")) ==
            (std::vector<uint64_t>{128, 128}));
    QVERIFY(shape_of(ck, layer_tensor_name(1, "self_attn.k_proj.weight")) ==
            (std::vector<uint64_t>{64, 128}));
    QVERIFY(shape_of(ck, layer_tensor_name(0, "mlp.down_proj.weight")) ==
            (std::vector<uint64_t>{128, 384}));
    QVERIFY(ck.tensor("model.norm.weight").dtype == DType::F32);
    QCOMPARE(ck.parameter_count(), uint64_t(656000));
    QCOMPARE(ck.file_size_bytes(), uint64_t(2626168));
    QCOMPARE(ck.tensors().size(), size_t(20));
    QVERIFY(ck.tokenizer_json().has_value());
    QCOMPARE(ck.tokenizer_json()->filename().string(), std::string("tokenizer.json"));
    QVERIFY_THROWS_EXCEPTION(Error, ck.tensor("model.layers.2.mlp.up_proj.weight"));

    // F32 and aligned: the zero-copy view and the converting read agree.
    const std::vector<float> embedding = read_all(ck, ck.embedding_name());
    const auto view = ck.f32_view(ck.embedding_name());
    QCOMPARE(view.size(), embedding.size());
    QVERIFY(std::memcmp(view.data(), embedding.data(), view.size_bytes()) == 0);
    std::vector<float> rows(3 * 128);
    ck.read_rows_f32(ck.embedding_name(), 100, 3, rows);
    QVERIFY(std::memcmp(rows.data(), embedding.data() + 100 * 128, rows.size() * 4) == 0);
    QVERIFY_THROWS_EXCEPTION(Error, ck.read_rows_f32(ck.embedding_name(), 2046, 3, rows));
    std::vector<float> wrong_size(10);
    QVERIFY_THROWS_EXCEPTION(Error, ck.read_f32("model.norm.weight", wrong_size));
  }

  void opens260kWithGqaAndBothEmbeddings() {
    const Checkpoint ck = Checkpoint::open(test::model_260k());
    const LlamaConfig& c = ck.config();
    QCOMPARE(c.num_layers, 5);
    QCOMPARE(c.hidden_size, 64);
    QCOMPARE(c.intermediate_size, 172);
    QCOMPARE(c.num_heads, 8);
    QCOMPARE(c.num_kv_heads, 4);
    QCOMPARE(c.head_dim, 8);
    QCOMPARE(c.vocab_size, 512);
    QCOMPARE(c.rms_norm_eps, 1e-5);
    QCOMPARE(QString::fromStdString(ck.embedding_name()), QString("model.embed_tokens.weight"));
    QCOMPARE(QString::fromStdString(ck.lm_head_name()), QString("lm_head.weight"));
    QVERIFY(!ck.tokenizer_json().has_value());
    QVERIFY(shape_of(ck, layer_tensor_name(4, "self_attn.v_proj.weight")) ==
            (std::vector<uint64_t>{32, 64}));
    QVERIFY(shape_of(ck, layer_tensor_name(4, "mlp.gate_proj.weight")) ==
            (std::vector<uint64_t>{172, 64}));
    // Tied and both stored: identical bytes.
    const auto embed = ck.tensor("model.embed_tokens.weight").bytes;
    const auto head = ck.tensor("lm_head.weight").bytes;
    QCOMPARE(embed.size(), head.size());
    QVERIFY(std::memcmp(embed.data(), head.data(), embed.size()) == 0);
    QCOMPARE(ck.parameter_count(), uint64_t(292800));
  }

  void ropeInvFreqDefaultAndLinear() {
    QTemporaryDir tmp;
    LlamaConfig c = parse_text(tmp, kBaseConfig);
    const auto f = rope_inv_freq(c);
    QCOMPARE(f.size(), size_t(8));
    QCOMPARE(f[0], 1.0);
    for (int i = 0; i < 8; ++i) QCOMPARE(f[i], std::pow(10000.0, -2.0 * i / 16));
    c.rope_scaling.type = "linear";
    c.rope_scaling.factor = 4.0;
    const auto linear = rope_inv_freq(c);
    for (int i = 0; i < 8; ++i) QCOMPARE(linear[i], f[i] / 4.0);
  }

  // tiny-llama3: head_dim 16, theta 5e5, factor 8, low 1, high 4, original 64, so
  // low_wl = 64, high_wl = 16: i=0 (wl 6.3) unchanged, i=1 (wl 32.4) blended, i>=2 slowed.
  void ropeInvFreqLlama3Regions() {
    const LlamaConfig c = synthetic_preset("tiny-llama3");
    const auto f = rope_inv_freq(c);
    QCOMPARE(f.size(), size_t(8));
    std::vector<double> base(8);
    for (int i = 0; i < 8; ++i) base[i] = std::pow(500000.0, -2.0 * i / 16);
    QCOMPARE(f[0], base[0]);
    const double wl1 = 2 * std::numbers::pi / base[1];
    QVERIFY(wl1 > 16 && wl1 < 64);
    const double s = (64 / wl1 - 1.0) / (4.0 - 1.0);
    QCOMPARE(f[1], (1 - s) * base[1] / 8 + s * base[1]);
    QVERIFY(f[1] < base[1] && f[1] > base[1] / 8);
    for (int i = 2; i < 8; ++i) QCOMPARE(f[i], base[i] / 8);

    // Llama-3.2-1B's values: 64-dim heads, factor 32, original 8192.
    const auto big = rope_inv_freq(synthetic_preset("llama-3.2-1b"));
    QCOMPARE(big.size(), size_t(32));
    int unchanged = 0, slowed = 0, blended = 0;
    for (int i = 0; i < 32; ++i) {
      const double b = std::pow(500000.0, -2.0 * i / 64);
      unchanged += big[i] == b;
      slowed += big[i] == b / 32;
      blended += big[i] < b && big[i] > b / 32;
    }
    qInfo("llama-3.2-1b inv_freq: %d unchanged, %d blended, %d slowed", unchanged, blended, slowed);
    QCOMPARE(unchanged + blended + slowed, 32);
    QVERIFY(unchanged > 0 && blended > 0 && slowed > 0);
  }

  void configAccepts_data() {
    QTest::addColumn<QByteArray>("text");
    QTest::addColumn<int>("headDim");
    QTest::addColumn<int>("kvHeads");
    QTest::addColumn<QString>("ropeType");
    QTest::addColumn<double>("ropeTheta");
    QTest::addColumn<double>("factor");
    QTest::addColumn<int>("originalMax");
    QTest::addColumn<int>("nEos");
    QTest::addColumn<QString>("dtype");
    QTest::addColumn<bool>("qkvBias");

    QTest::newRow("base llama") << QByteArray(kBaseConfig) << 16 << 4 << "default" << 10000.0 << 1.0
                                << 0 << 0 << "" << false;
    QTest::newRow("v5 rope_parameters llama3, original_max defaults to max_position")
        << config_with([](json& j) {
             j.erase("rope_theta");
             j["max_position_embeddings"] = 4096;
             j["rope_parameters"] = {{"rope_type", "llama3"},
                                     {"rope_theta", 500000.0},
                                     {"factor", 8.0},
                                     {"low_freq_factor", 1.0},
                                     {"high_freq_factor", 4.0}};
           })
        << 16 << 4 << "llama3" << 500000.0 << 8.0 << 4096 << 0 << "" << false;
    QTest::newRow("rope_scaling with legacy 'type' linear") << config_with([](json& j) {
      j["rope_scaling"] = {{"type", "linear"}, {"factor", 2.0}};
    }) << 16 << 4 << "linear" << 10000.0 << 2.0 << 0 << 0 << ""
                                                            << false;
    QTest::newRow("rope_scaling null")
        << config_with([](json& j) { j["rope_scaling"] = nullptr; }) << 16 << 4 << "default"
        << 10000.0 << 1.0 << 0 << 0 << "" << false;
    QTest::newRow("eos list of three, dtype field") << config_with([](json& j) {
      j["eos_token_id"] = {128001, 128008, 128009};
      j["dtype"] = "bfloat16";
    }) << 16 << 4 << "default" << 10000.0 << 1.0 << 0
                                                    << 3 << "bfloat16" << false;
    QTest::newRow("num_key_value_heads null means MHA")
        << config_with([](json& j) { j["num_key_value_heads"] = nullptr; }) << 16 << 8 << "default"
        << 10000.0 << 1.0 << 0 << 0 << "" << false;
    QTest::newRow("mistral explicit head_dim 128 with d=5120 H=32") << config_with([](json& j) {
      j["architectures"] = {"MistralForCausalLM"};
      j["model_type"] = "mistral";
      j["hidden_size"] = 5120;
      j["num_attention_heads"] = 32;
      j["num_key_value_heads"] = 8;
      j["head_dim"] = 128;
      j["sliding_window"] = nullptr;
      j["torch_dtype"] = "bfloat16";
    }) << 128 << 8 << "default" << 10000.0 << 1.0 << 0 << 0 << "bfloat16"
                                                                    << false;
    QTest::newRow("qwen2 has q/k/v biases") << config_with([](json& j) {
      j["architectures"] = {"Qwen2ForCausalLM"};
      j["model_type"] = "qwen2";
      j["rope_theta"] = 1000000.0;
      j["use_sliding_window"] = false;
    }) << 16 << 4 << "default" << 1000000.0 << 1.0
                                            << 0 << 0 << "" << true;
  }
  void configAccepts() {
    QFETCH(QByteArray, text);
    QTemporaryDir tmp;
    const LlamaConfig c = parse_text(tmp, text);
    QTEST(c.head_dim, "headDim");
    QTEST(c.num_kv_heads, "kvHeads");
    QTEST(QString::fromStdString(c.rope_scaling.type), "ropeType");
    QTEST(c.rope_theta, "ropeTheta");
    QTEST(c.rope_scaling.factor, "factor");
    QTEST(int(c.rope_scaling.original_max_position_embeddings), "originalMax");
    QTEST(int(c.eos_token_ids.size()), "nEos");
    QTEST(QString::fromStdString(c.torch_dtype), "dtype");
    QTEST(c.qkv_bias, "qkvBias");
  }

  void configRejects_data() {
    QTest::addColumn<QByteArray>("text");
    QTest::addColumn<QString>("problem");
    for (const char* field : {"hidden_size", "num_hidden_layers", "num_attention_heads",
                              "intermediate_size", "vocab_size"}) {
      QTest::addRow("missing %s", field) << config_with([&](json& j) { j.erase(field); })
                                         << QString("missing required field '%1'").arg(field);
    }
    QTest::newRow("hidden_size 0") << config_with([](json& j) { j["hidden_size"] = 0; })
                                   << "field 'hidden_size' must be a positive integer, got 0";
    QTest::newRow("num_hidden_layers negative")
        << config_with([](json& j) { j["num_hidden_layers"] = -2; })
        << "field 'num_hidden_layers' must be a positive integer, got -2";
    QTest::newRow("hidden_size as a string")
        << config_with([](json& j) { j["hidden_size"] = "128"; })
        << "field 'hidden_size' must be an integer";
    QTest::newRow("heads not dividing hidden_size")
        << config_with([](json& j) { j["hidden_size"] = 100; })
        << "hidden_size 100 is not divisible by num_attention_heads 8";
    QTest::newRow("heads not a multiple of kv heads")
        << config_with([](json& j) { j["num_key_value_heads"] = 3; })
        << "num_attention_heads 8 is not a multiple of num_key_value_heads 3";
    QTest::newRow("odd head_dim") << config_with([](json& j) { j["head_dim"] = 15; })
                                  << "head_dim 15 must be even";
    QTest::newRow("rope type yarn") << config_with([](json& j) {
      j["rope_scaling"] = {{"rope_type", "yarn"}, {"factor", 4.0}};
    }) << "unsupported rope type 'yarn'";
    QTest::newRow("llama3 rope without factor") << config_with([](json& j) {
      j["rope_scaling"] = {{"rope_type", "llama3"}};
    }) << "missing field 'rope_scaling.factor' for rope type llama3";
    QTest::newRow("llama3 rope with high_freq_factor below low") << config_with([](json& j) {
      j["rope_scaling"] = {{"rope_type", "llama3"},
                           {"factor", 8.0},
                           {"low_freq_factor", 4.0},
                           {"high_freq_factor", 1.0}};
    }) << "llama3 rope needs 0 < low_freq_factor < high_freq_factor";
    QTest::newRow("rope_theta zero") << config_with([](json& j) { j["rope_theta"] = 0; })
                                     << "field 'rope_theta' must be a positive number";
    QTest::newRow("hidden_act gelu") << config_with([](json& j) { j["hidden_act"] = "gelu"; })
                                     << "unsupported hidden_act 'gelu'";
    QTest::newRow("architecture GPT2LMHeadModel") << config_with([](json& j) {
      j["architectures"] = {"GPT2LMHeadModel"};
      j["model_type"] = "gpt2";
    }) << "unsupported architecture 'GPT2LMHeadModel'";
    QTest::newRow("no architecture and no model_type") << config_with([](json& j) {
      j.erase("architectures");
      j.erase("model_type");
    }) << "missing required field 'architectures'";
    QTest::newRow("eos_token_id a string")
        << config_with([](json& j) { j["eos_token_id"] = "</s>"; })
        << "field 'eos_token_id' must be a token id or a list of token ids";
    QTest::newRow("tie_word_embeddings a number")
        << config_with([](json& j) { j["tie_word_embeddings"] = 1; })
        << "field 'tie_word_embeddings' must be true or false";
    QTest::newRow("qwen2 sliding window on") << config_with([](json& j) {
      j["architectures"] = {"Qwen2ForCausalLM"};
      j["model_type"] = "qwen2";
      j["use_sliding_window"] = true;
    }) << "sliding-window attention is not supported";
    QTest::newRow("model_type contradicting architectures")
        << config_with([](json& j) { j["architectures"] = {"Qwen2ForCausalLM"}; })
        << "model_type 'llama' does not match architecture Qwen2ForCausalLM";
    QTest::newRow("not JSON") << QByteArray("{\"hidden_size\": ") << "not valid JSON";
    QTest::newRow("JSON array") << QByteArray("[1, 2]") << "not a JSON object";
  }
  void configRejects() {
    QFETCH(QByteArray, text);
    QFETCH(QString, problem);
    QTemporaryDir tmp;
    const QString path = tmp.filePath("config.json");
    try {
      parse_text(tmp, text);
      QFAIL("no Error thrown");
    } catch (const Error& e) {
      const QString message = QString::fromStdString(e.what());
      qInfo().noquote() << message;
      QCOMPARE(QString::fromStdString(e.source()), path);
      QVERIFY2(message.contains(problem), qPrintable(message + "\n  wanted: " + problem));
    }
  }

  void shardedSyntheticRoundTrip_data() {
    QTest::addColumn<int>("dtype");
    QTest::addColumn<QString>("preset");
    QTest::newRow("BF16 tiny, 6 shards") << int(DType::BF16) << "tiny";
    QTest::newRow("F16 tiny-qwen2 (q/k/v biases)") << int(DType::F16) << "tiny-qwen2";
    QTest::newRow("F32 tiny-llama3 (tied)") << int(DType::F32) << "tiny-llama3";
  }
  void shardedSyntheticRoundTrip() {
    QFETCH(int, dtype);
    QFETCH(QString, preset);
    const DType type = static_cast<DType>(dtype);
    QTemporaryDir tmp;
    const fs::path dir = make_tiny(tmp, type, kTinyShardBytes, preset.toStdString(), 7);
    QVERIFY(fs::exists(dir / "model.safetensors.index.json"));
    const Checkpoint ck = Checkpoint::open(dir);
    QCOMPARE(ck.config().num_layers, 2);
    QCOMPARE(ck.config().torch_dtype.empty(), false);

    std::set<std::string> shards;
    uint64_t mismatches = 0, other_seed_matches = 0, checked = 0;
    for (const TensorRef& t : ck.tensors()) {
      QVERIFY(t.dtype == type);
      shards.insert(t.shard->filename().string());
      const std::vector<float> got = read_all(ck, t.name);
      std::vector<float> want(got.size()), other(got.size());
      synthetic_values(t.name, 7, 0, want);
      synthetic_values(t.name, 8, 0, other);
      for (size_t i = 0; i < got.size(); ++i) {
        mismatches += got[i] != round_to(type, want[i]);
        if (!t.name.ends_with("norm.weight"))
          other_seed_matches += got[i] == round_to(type, other[i]);
      }
      checked += got.size();
    }
    qInfo("%s: %zu shards, %llu values checked, %llu mismatches, %llu equal to seed 8's",
          dtype_name(type), shards.size(), static_cast<unsigned long long>(checked),
          static_cast<unsigned long long>(mismatches),
          static_cast<unsigned long long>(other_seed_matches));
    QVERIFY(shards.size() > 1);
    QCOMPARE(checked, ck.parameter_count());
    QCOMPARE(mismatches, uint64_t(0));
    QVERIFY(other_seed_matches < checked / 100);  // a different seed is not the same data

    // Weights look like an init: std 0.02, norms exactly 1.
    const std::vector<float> q = read_all(ck, layer_tensor_name(1, "self_attn.q_proj.weight"));
    double sum_sq = 0;
    for (float v : q) sum_sq += double(v) * v;
    const double std_dev = std::sqrt(sum_sq / q.size());
    qInfo("q_proj std %.5f (want %.3f +- %.3f)", std_dev, kSyntheticStd, kStdTolerance);
    QVERIFY(std::abs(std_dev - kSyntheticStd) < kStdTolerance);
    for (float v : read_all(ck, "model.norm.weight")) QCOMPARE(v, 1.0f);

    // Row reads of the (possibly 16-bit) embedding equal the full conversion.
    const std::vector<float> embedding = read_all(ck, ck.embedding_name());
    std::vector<float> rows(5 * 64);
    ck.read_rows_f32(ck.embedding_name(), 311, 5, rows);
    QVERIFY(std::memcmp(rows.data(), embedding.data() + 311 * 64, rows.size() * 4) == 0);
    QCOMPARE(ck.f32_view(ck.embedding_name()).empty(), type != DType::F32);
  }

  void misalignedF32IsCopiedNotViewed() {
    QTemporaryDir tmp;
    const fs::path dir = make_tiny(tmp, DType::F32, uint64_t(1) << 30);
    const std::string name = layer_tensor_name(0, "self_attn.q_proj.weight");
    std::vector<float> aligned;
    {
      const Checkpoint ck = Checkpoint::open(dir);
      QVERIFY(!ck.f32_view(name).empty());
      aligned = read_all(ck, name);
    }
    // One more space of header padding moves every tensor to an odd file offset.
    const fs::path file = dir / "model.safetensors";
    std::ifstream in(file, std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    in.close();
    uint64_t n = 0;
    std::memcpy(&n, bytes.data(), 8);
    bytes.insert(8 + n, 1, ' ');
    ++n;
    std::memcpy(bytes.data(), &n, 8);
    write_text(file, bytes);

    const Checkpoint ck = Checkpoint::open(dir);
    QVERIFY(ck.f32_view(name).empty());
    QVERIFY(read_all(ck, name) == aligned);
  }

  void toleratesExtraKeysAndMissingModelPrefix() {
    QTemporaryDir tmp;
    const fs::path dir = make_tiny(tmp, DType::BF16, uint64_t(1) << 30);
    const std::vector<float> norm_before = [&] {
      return read_all(Checkpoint::open(dir), "model.layers.1.input_layernorm.weight");
    }();
    edit_shard(dir / "model.safetensors", [](std::vector<TensorData>& tensors) {
      for (TensorData& t : tensors)
        if (t.spec.name.starts_with("model.")) t.spec.name = t.spec.name.substr(6);
      tensors.push_back({{"layers.0.self_attn.rotary_emb.inv_freq", DType::F32, {8}},
                         std::vector<std::byte>(32)});
    });
    const Checkpoint ck = Checkpoint::open(dir);
    QVERIFY(ck.has("model.norm.weight"));
    QCOMPARE(QString::fromStdString(ck.tensor("model.norm.weight").name), QString("norm.weight"));
    QCOMPARE(QString::fromStdString(ck.embedding_name()), QString("model.embed_tokens.weight"));
    QVERIFY(read_all(ck, "model.layers.1.input_layernorm.weight") == norm_before);
  }

  void rejectsBrokenCheckpoint_data() {
    QTest::addColumn<QString>("mutation");
    QTest::addColumn<QString>("file");  // relative to the checkpoint dir; "" = the dir itself
    QTest::addColumn<QString>("problem");
    QTest::newRow("config.json missing vocab_size") << "config-missing-vocab"
                                                    << "config.json"
                                                    << "missing required field 'vocab_size'";
    QTest::newRow("config.json absent") << "config-absent"
                                        << "config.json"
                                        << "file not found";
    QTest::newRow("tensor missing from shard and index")
        << "missing-up-proj"
        << ""
        << "missing tensor 'model.layers.1.mlp.up_proj.weight'";
    QTest::newRow("tensor missing from its shard but still in the index")
        << "missing-up-proj-shard-only"
        << "model.safetensors.index.json"
        << "tensor 'model.layers.1.mlp.up_proj.weight' is mapped to shard "
           "'model-00004-of-00006.safetensors' but that shard does not contain it";
    QTest::newRow("shard listed in index but absent")
        << "shard-absent"
        << "model.safetensors.index.json"
        << "shard 'model-00002-of-00006.safetensors' listed in weight_map does not exist";
    QTest::newRow("index maps a tensor to the wrong shard")
        << "wrong-shard"
        << "model.safetensors.index.json"
        << "tensor 'model.norm.weight' is mapped to shard 'model-00001-of-00006.safetensors' but "
           "is stored in";
    QTest::newRow("tensor in two shards") << "two-shards"
                                          << "model-00005-of-00006.safetensors"
                                          << "tensor 'model.norm.weight' also appears in";
    QTest::newRow("shard name escapes the directory")
        << "escaping-shard"
        << "model.safetensors.index.json"
        << "shard name '../x.safetensors' is not a file inside the checkpoint directory";
    QTest::newRow("index not JSON") << "index-garbage"
                                    << "model.safetensors.index.json"
                                    << "not valid JSON";
    QTest::newRow("no weights at all") << "no-weights"
                                       << ""
                                       << "no model.safetensors or model.safetensors.index.json";
    QTest::newRow("wrong shape for k_proj (config says 4 kv heads)")
        << "kv-heads-4"
        << "model-00001-of-00006.safetensors"
        << "tensor 'model.layers.0.self_attn.k_proj.weight' has shape [32, 64], expected [64, 64]";
    QTest::newRow("norm stored as I16") << "norm-i16"
                                        << "model-00005-of-00006.safetensors"
                                        << "tensor 'model.norm.weight' has dtype I16, expected "
                                           "F32, F16 or BF16";
    QTest::newRow("untied and lm_head absent")
        << "no-lm-head"
        << ""
        << "missing tensor 'lm_head.weight' and tie_word_embeddings is false";
    QTest::newRow("untied and embed_tokens absent")
        << "no-embed"
        << ""
        << "missing tensor 'model.embed_tokens.weight' (lm_head.weight is present but "
           "tie_word_embeddings is false)";
    QTest::newRow("truncated shard") << "truncated-shard"
                                     << "model-00003-of-00006.safetensors"
                                     << "file is truncated";
  }
  void rejectsBrokenCheckpoint() {
    QFETCH(QString, mutation);
    QFETCH(QString, file);
    QFETCH(QString, problem);
    QTemporaryDir tmp;
    const fs::path dir = make_tiny(tmp);
    const fs::path index = dir / "model.safetensors.index.json";
    const std::string m = mutation.toStdString();
    if (m == "config-missing-vocab") {
      edit_json(dir / "config.json", [](json& j) { j.erase("vocab_size"); });
    } else if (m == "config-absent") {
      fs::remove(dir / "config.json");
    } else if (m == "missing-up-proj") {
      remove_tensor(dir, "model.layers.1.mlp.up_proj.weight");
    } else if (m == "missing-up-proj-shard-only") {
      const std::string name = "model.layers.1.mlp.up_proj.weight";
      QCOMPARE(QString::fromStdString(shard_of(dir, name)),
               QString("model-00004-of-00006.safetensors"));
      edit_shard(dir / shard_of(dir, name), [&](auto& t) { erase_tensor(t, name); });
    } else if (m == "shard-absent") {
      fs::remove(dir / "model-00002-of-00006.safetensors");
    } else if (m == "wrong-shard") {
      edit_json(index, [](json& j) {
        j["weight_map"]["model.norm.weight"] = "model-00001-of-00006.safetensors";
      });
    } else if (m == "two-shards") {
      write_safetensors(dir / "extra.safetensors",
                        {{{"model.norm.weight", DType::BF16, {64}}, std::vector<std::byte>(128)},
                         {{"extra.weight", DType::BF16, {1}}, std::vector<std::byte>(2)}});
      edit_json(index, [](json& j) { j["weight_map"]["extra.weight"] = "extra.safetensors"; });
    } else if (m == "escaping-shard") {
      edit_json(index, [](json& j) { j["weight_map"]["model.norm.weight"] = "../x.safetensors"; });
    } else if (m == "index-garbage") {
      write_text(index, "{\"weight_map\": {");
    } else if (m == "no-weights") {
      fs::remove(index);
    } else if (m == "kv-heads-4") {
      edit_json(dir / "config.json", [](json& j) { j["num_key_value_heads"] = 4; });
    } else if (m == "norm-i16") {
      edit_shard(dir / shard_of(dir, "model.norm.weight"), [](std::vector<TensorData>& tensors) {
        for (TensorData& t : tensors)
          if (t.spec.name == "model.norm.weight") t.spec.dtype = DType::I16;
      });
    } else if (m == "no-lm-head") {
      remove_tensor(dir, "lm_head.weight");
    } else if (m == "no-embed") {
      remove_tensor(dir, "model.embed_tokens.weight");
    } else if (m == "truncated-shard") {
      const fs::path shard = dir / "model-00003-of-00006.safetensors";
      fs::resize_file(shard, fs::file_size(shard) - 10);
    } else {
      QFAIL("unknown mutation");
    }
    const QString source =
        QString::fromStdString((file.isEmpty() ? dir : dir / file.toStdString()).string());
    try {
      Checkpoint::open(dir);
      QFAIL("no Error thrown");
    } catch (const Error& e) {
      const QString message = QString::fromStdString(e.what());
      qInfo().noquote() << message;
      QCOMPARE(QString::fromStdString(e.source()), source);
      QVERIFY2(message.contains(problem), qPrintable(message + "\n  wanted: " + problem));
    }
  }

  void unmodifiedTinyOpens() {  // the baseline the broken rows mutate
    QTemporaryDir tmp;
    const Checkpoint ck = Checkpoint::open(make_tiny(tmp));
    QCOMPARE(QString::fromStdString(ck.lm_head_name()), QString("lm_head.weight"));
    QVERIFY(!ck.config().tie_word_embeddings);
  }

  void syntheticValuesIndependentOfChunking() {
    std::vector<float> whole(64), part(7);
    synthetic_values("model.layers.0.mlp.up_proj.weight", 5, 0, whole);
    synthetic_values("model.layers.0.mlp.up_proj.weight", 5, 5, part);  // odd start
    QVERIFY(std::equal(part.begin(), part.end(), whole.begin() + 5));
    synthetic_values("model.layers.0.mlp.gate_proj.weight", 5, 5, part);  // another tensor
    QVERIFY(!std::equal(part.begin(), part.end(), whole.begin() + 5));
  }

  void syntheticRejectsBadOptions() {
    QTemporaryDir tmp;
    SyntheticOptions options;
    options.preset = "no-such-model";
    QVERIFY_THROWS_EXCEPTION(Error,
                             write_synthetic_checkpoint(tmp.filePath("a").toStdString(), options));
    options.preset = "tiny";
    write_text(tmp.filePath("occupied").toStdString(), "x");
    QVERIFY_THROWS_EXCEPTION(Error, write_synthetic_checkpoint(tmp.path().toStdString(), options));
  }
};

QTEST_GUILESS_MAIN(TestCheckpoint)
#include "test_checkpoint.moc"
