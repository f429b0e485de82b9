// Calibration sessions (formats.md §5): the HDF5 session file round-trips every field of a
// hand-built session bit-exactly and gives the same plan; saving is atomic (a save killed
// mid-way leaves the previous file); foreign, damaged and future files are rejected with the
// file named; settings JSON round-trips and rejects bad input; SHA-256 and the model
// fingerprint.
// GCC 12: false -Wmaybe-uninitialized inside AVX-512 intrinsics inlined from Eigen reductions.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#include <QtTest>

#include <cmath>
#include <cstring>
#include <fstream>
#include <functional>
#include <limits>
#include <random>
#include <span>

// The test patches a file with the HDF5 C API; Debian keeps hdf5.h under hdf5/serial.
#if __has_include(<hdf5.h>)
#include <hdf5.h>
#elif __has_include(<hdf5/serial/hdf5.h>)
#include <hdf5/serial/hdf5.h>
#else
#error "hdf5.h not found"
#endif

#include "core/calib/session.h"
#include "core/io/model_fingerprint.h"
#include "core/io/session_file.h"
#include "core/model/checkpoint.h"
#include "core/model/llama_model.h"
#include "core/rotation/block_rotation.h"
#include "core/rotation/duquant.h"
#include "core/rotation/greedy_search.h"
#include "core/util/error.h"
#include "tests/kill_in_child.h"
#include "tests/test_data.h"

using namespace mxlens;
namespace fs = std::filesystem;

namespace {

template <typename T>
bool same_bits(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() &&
         (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0);
}
template <typename M>
bool same_bits_matrix(const M& a, const M& b) {
  return a.rows() == b.rows() && a.cols() == b.cols() &&
         (a.size() == 0 ||
          std::memcmp(a.data(), b.data(), size_t(a.size()) * sizeof(typename M::Scalar)) == 0);
}
template <typename T>
bool same_bits_value(T a, T b) {
  return std::memcmp(&a, &b, sizeof(T)) == 0;
}

std::string read_text(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(f)), {});
}

RowMatrixXf random_matrix(int rows, int cols, uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, scale);
  RowMatrixXf m(rows, cols);
  for (Eigen::Index i = 0; i < m.size(); ++i) m.data()[i] = nd(rng);
  return m;
}

std::vector<float> random_positive(int n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(0.01f, 3.0f);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) x = u(rng);
  return v;
}

std::vector<int32_t> random_permutation(int n, uint32_t seed) {
  std::vector<int32_t> p(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) p[size_t(i)] = i;
  std::shuffle(p.begin(), p.end(), std::mt19937(seed));
  return p;
}

int site_channels(const LlamaConfig& c, Site s) {
  return s == Site::Qkv || s == Site::GateUp ? c.hidden_size
         : s == Site::O                      ? c.num_heads * c.head_dim
                                             : c.intermediate_size;
}

// Settings with a non-default value in every field.
CalibrationSettings rich_settings() {
  CalibrationSettings s;
  s.method = Method::duquantpp_gptq;
  s.scheme = QuantScheme::make(QuantMode::w4a4, QuantFormat::mxfp4,
                               QuantOptions{ScaleRule::fpquant, Rounding::ggml});
  s.scheme.activations.options = QuantOptions{ScaleRule::rceil, Rounding::rne};
  s.scheme.weights.clip_ratio = 0.8125f;
  s.windows = {7, 64, std::numeric_limits<uint64_t>::max(), 0.123456789};
  s.add_bos = true;
  s.smoothing = {0.55f, 1.5e-5f, 0.0125f};
  s.greedy.block_size = 32;
  s.greedy.max_steps = 17;
  s.greedy.selection = GreedySelection::code;
  s.greedy.objective = GreedyObjective::max_abs;
  s.greedy.seed = 12345678901234567890ull;
  s.duquant.block_size = 128;
  s.duquant.max_steps = 9;
  s.duquant.selection = GreedySelection::paper;
  s.duquant.objective = GreedyObjective::range;
  s.duquant.seed = 42;
  s.gptq.gptq.block_size = 64;
  s.gptq.gptq.damp = 0.0137;
  s.gptq.gptq.scale_timing = GptqScaleTiming::in_block_update;
  s.gptq.hessian_from_quantized_inputs = false;
  s.rotation_seed = 0xDEADBEEFCAFEBABEull;
  s.stats_windows = 3;
  s.stats.mx = QuantOptions{ScaleRule::dqv2_log8, Rounding::ggml};
  s.stats.max_sample_rows = 17;
  s.stats.sample_budget_bytes = 12345;
  s.stats.seed = 99;
  return s;
}

void compare_settings(const CalibrationSettings& a, const CalibrationSettings& b) {
  QCOMPARE(a.method, b.method);
  auto tq = [](const TensorQuant& x, const TensorQuant& y) {
    QCOMPARE(x.format, y.format);
    QCOMPARE(x.options.scale_rule, y.options.scale_rule);
    QCOMPARE(x.options.rounding, y.options.rounding);
    QVERIFY(same_bits_value(x.clip_ratio, y.clip_ratio));
  };
  tq(a.scheme.weights, b.scheme.weights);
  tq(a.scheme.activations, b.scheme.activations);
  QCOMPARE(a.windows.count, b.windows.count);
  QCOMPARE(a.windows.seqlen, b.windows.seqlen);
  QCOMPARE(a.windows.seed, b.windows.seed);
  QVERIFY(same_bits_value(a.windows.tail_fraction, b.windows.tail_fraction));
  QCOMPARE(a.add_bos, b.add_bos);
  QVERIFY(same_bits_value(a.smoothing.alpha, b.smoothing.alpha));
  QVERIFY(same_bits_value(a.smoothing.min_value, b.smoothing.min_value));
  QVERIFY(same_bits_value(a.smoothing.floor_value, b.smoothing.floor_value));
  QCOMPARE(a.greedy.block_size, b.greedy.block_size);
  QCOMPARE(a.greedy.max_steps, b.greedy.max_steps);
  QCOMPARE(a.greedy.selection, b.greedy.selection);
  QCOMPARE(a.greedy.objective, b.greedy.objective);
  QCOMPARE(a.greedy.seed, b.greedy.seed);
  QCOMPARE(a.duquant.block_size, b.duquant.block_size);
  QCOMPARE(a.duquant.max_steps, b.duquant.max_steps);
  QCOMPARE(a.duquant.selection, b.duquant.selection);
  QCOMPARE(a.duquant.objective, b.duquant.objective);
  QCOMPARE(a.duquant.seed, b.duquant.seed);
  QCOMPARE(a.gptq.gptq.block_size, b.gptq.gptq.block_size);
  QVERIFY(same_bits_value(a.gptq.gptq.damp, b.gptq.gptq.damp));
  QCOMPARE(a.gptq.gptq.scale_timing, b.gptq.gptq.scale_timing);
  QCOMPARE(a.gptq.hessian_from_quantized_inputs, b.gptq.hessian_from_quantized_inputs);
  QCOMPARE(a.rotation_seed, b.rotation_seed);
  QCOMPARE(a.stats_windows, b.stats_windows);
  QCOMPARE(a.stats.mx.scale_rule, b.stats.mx.scale_rule);
  QCOMPARE(a.stats.mx.rounding, b.stats.mx.rounding);
  QCOMPARE(a.stats.max_sample_rows, b.stats.max_sample_rows);
  QCOMPARE(a.stats.sample_budget_bytes, b.stats.sample_budget_bytes);
  QCOMPARE(a.stats.seed, b.stats.seed);
  QCOMPARE(a.search_data, b.search_data);
}

SiteStats make_stats(int channels, int rows, uint32_t seed, bool with_after) {
  SiteStats s;
  s.channels = channels;
  s.blocks = (channels + 31) / 32;
  s.tokens = 1000 + seed;
  s.absmax_before = random_positive(channels, seed + 1);
  s.mean_before = random_positive(channels, seed + 3);
  s.rms_before = random_positive(channels, seed + 4);
  s.e8m0_hist_before.resize(size_t(s.blocks) * 256);
  for (size_t i = 0; i < s.e8m0_hist_before.size(); ++i)
    s.e8m0_hist_before[i] = uint32_t(i * 2654435761u % 1000);
  s.signal_before.resize(size_t(s.blocks));
  s.noise_before.resize(size_t(s.blocks));
  for (int b = 0; b < s.blocks; ++b) {
    s.signal_before[size_t(b)] = 1.0 / (b + 3) + seed;
    s.noise_before[size_t(b)] = std::ldexp(1.0, -b - 40);
  }
  s.noise_before[0] = 0.0;                                            // +inf SQNR
  s.signal_before.back() = std::numeric_limits<double>::quiet_NaN();  // any payload: bits kept
  s.sample_tokens.resize(size_t(rows));
  for (int r = 0; r < rows; ++r) s.sample_tokens[size_t(r)] = int64_t(r) * 977 + seed;
  s.sample_before = random_matrix(rows, channels, seed + 5);
  s.sample_before(0, 0) = -0.0f;
  s.sample_before(0, 1) = std::numeric_limits<float>::denorm_min();
  if (with_after) {  // otherwise left empty: "after" not collected
    s.absmax_after = random_positive(channels, seed + 2);
    s.e8m0_hist_after = s.e8m0_hist_before;
    s.e8m0_hist_after[7] = 123456;
    s.signal_after = s.signal_before;
    s.noise_after = s.noise_before;
    s.sample_after = random_matrix(rows, channels, seed + 6);
  }
  return s;
}

EvalRecord make_eval(int i, bool with_kl) {
  EvalRecord r;
  r.kind = "ppl";
  r.dataset = "wikitext-2-raw/wiki.test.raw";
  r.dataset_sha256 = sha256_hex(std::string("dataset ") + char('0' + i));
  r.method = i == 0 ? "duquantpp-gptq" : "rtn";
  r.scheme = "w4a4 mxfp4 ocp_floor rne";
  r.seqlen = 64 + i;
  r.windows = 3;
  r.tokens_scored = 189 + i;
  r.window_nll = {2.5 + i, 1.0 / 3.0, std::nextafter(2.0, 3.0)};
  r.ppl = std::exp(1.234567 + i);
  r.nll_mean = 1.234567 + i;
  if (with_kl) {
    r.kl_mean = 0.0123456789;
    r.top1 = 0.875;
  }
  r.started_utc = "2024-05-01T12:00:0" + std::to_string(i) + "Z";
  r.finished_utc = "2024-05-01T12:01:0" + std::to_string(i) + "Z";
  return r;
}

// A session with every part filled, made for the 656K model.
Session make_session(const Checkpoint& ckpt) {
  const LlamaConfig& cfg = ckpt.config();
  Session s;
  Provenance& p = s.provenance;
  p.model_dir = test::model_656k().string();
  p.fingerprint = model_fingerprint(ckpt);
  p.config_json = read_text(ckpt.dir() / "config.json");
  p.created_utc = "2024-05-01T12:00:00Z";
  p.mxlens_version = "0.1.0";
  p.git_commit = "0123456789abcdef";
  p.host = "höst-µ ✓";  // UTF-8
  p.backend = "cpu";
  s.settings = rich_settings();
  s.data.text_path = "wikitext-2-raw/wiki.test ✓.raw";
  s.data.text_sha256 = sha256_hex(std::string_view("text"));
  s.data.text_tokens = 123456;
  s.data.region = {100000, 123456};
  s.data.window_offsets = {100000, 100017, 123456 - 65, 110000, 105555, 120000, 101010};
  s.timings = {1.25, 0.1, 3.141592653589793, 1e-300, 7.000000000000001};
  s.config = cfg;

  const int L = cfg.num_layers;  // 2
  s.transforms.resize(size_t(L));
  s.searches.resize(size_t(L));
  const int d = cfg.hidden_size, hd = cfg.num_heads * cfg.head_dim, f = cfg.intermediate_size;

  // Layer 0 qkv: smoothing + a greedy 32-block rotation found on random data (its trace kept).
  {
    SiteTransform& t = s.transforms[0].site(Site::Qkv);
    t.smooth = random_positive(d, 11);
    t.smooth_fold = SmoothFold::norm;
    GreedyOptions go;
    go.block_size = 32;
    go.max_steps = 12;
    go.seed = s.settings.greedy.seed;
    go.layer = 0;
    go.site = int(Site::Qkv);
    go.threads = 1;
    const GreedyResult r = greedy_search(random_matrix(48, d, 21), go);
    t.rotation = r.rotation.transform();
    s.searches[0][size_t(Site::Qkv)].traces.push_back(r.trace);
  }
  // Layer 0 o: original DuQuant (R₁ 128, zigzag permutation, R₂ 128) with online smoothing.
  {
    SiteTransform& t = s.transforms[0].site(Site::O);
    t.smooth = random_positive(hd, 12);
    t.smooth_fold = smooth_fold(Site::O, cfg);
    DuQuantOptions dq;
    dq.block_size = 128;
    dq.max_steps = 6;
    dq.seed = s.settings.duquant.seed;
    dq.threads = 1;
    dq.site = int(Site::O);
    DuQuantResult r = duquant_transform(random_matrix(40, hd, 22), dq);
    t.rotation = r.transform;
    SiteSearch& ss = s.searches[0][size_t(Site::O)];
    ss.traces = {r.first_trace, r.second_trace};
    ss.permutation = r.permutation;
  }
  // Layer 0 gate/up: full Hadamard with random signs. Down: smoothing + random orthogonal.
  s.transforms[0].site(Site::GateUp).rotation.add_full_hadamard(d, 777);
  {
    SiteTransform& t = s.transforms[0].site(Site::Down);
    t.smooth = random_positive(f, 13);
    t.smooth_fold = SmoothFold::previous_rows;
    t.rotation.add_block_rotation(random_orthogonal(32, derive_seed(5, 0, 3)));
  }
  // Layer 1: qkv untouched; o a hand-made DuQuant-style chain and a permutation-only
  // search entry; gate/up smoothing only; down a 384-wide full Hadamard with signs.
  {
    SiteTransform& t = s.transforms[1].site(Site::O);
    t.rotation.add_block_rotation(random_orthogonal(128, 31));
    t.rotation.add_permutation(random_permutation(hd, 32));
    t.rotation.add_block_rotation(random_orthogonal(128, 33));
    t.rotation.add_full_hadamard(hd, 0);
    s.searches[1][size_t(Site::O)].permutation = random_permutation(hd, 34);
  }
  s.transforms[1].site(Site::GateUp).smooth = random_positive(d, 14);
  s.transforms[1].site(Site::Down).rotation.add_full_hadamard(f, 5);

  s.stats.resize(size_t(L));
  for (int l = 0; l < L; ++l)
    for (Site site : kAllSites)
      s.stats[size_t(l)][size_t(site)] =
          make_stats(site_channels(cfg, site), 5 + l, uint32_t(100 * l + int(site)),
                     !(l == 1 && site == Site::Down));

  s.weights.resize(size_t(L));
  s.weights[1][size_t(Linear::Down)] = random_matrix(d, f, 41, 0.05f);
  s.weights[0][size_t(Linear::Q)] = random_matrix(hd, d, 42, 0.05f);

  s.results = {make_eval(0, true), make_eval(1, false)};
  return s;
}

void compare_transform(const ChannelTransform& a, const ChannelTransform& b) {
  QCOMPARE(a.steps().size(), b.steps().size());
  for (size_t i = 0; i < a.steps().size(); ++i) {
    const auto& x = a.steps()[i];
    const auto& y = b.steps()[i];
    QCOMPARE(x.kind, y.kind);
    QVERIFY(same_bits_matrix(x.rotation, y.rotation));
    QCOMPARE(x.permutation, y.permutation);
    QCOMPARE(x.channels, y.channels);
    QCOMPARE(x.sign_seed, y.sign_seed);
    QVERIFY(same_bits(x.signs, y.signs));
  }
}

void compare_trace(const GreedyTrace& a, const GreedyTrace& b) {
  QCOMPARE(a.block_size, b.block_size);
  QCOMPARE(a.selection, b.selection);
  QCOMPARE(a.objective, b.objective);
  QCOMPARE(a.q_seed, b.q_seed);
  QVERIFY(same_bits_matrix(a.q_prime, b.q_prime));
  QCOMPARE(a.best_step, b.best_step);
  QCOMPARE(a.steps.size(), b.steps.size());
  for (size_t i = 0; i < a.steps.size(); ++i) {
    const GreedyStep& x = a.steps[i];
    const GreedyStep& y = b.steps[i];
    QCOMPARE(x.channel, y.channel);
    QVERIFY(same_bits_value(x.objective, y.objective));
    QCOMPARE(x.max_row, y.max_row);
    QCOMPARE(x.max_col, y.max_col);
    QCOMPARE(x.min_row, y.min_row);
    QCOMPARE(x.min_col, y.min_col);
    QVERIFY(same_bits_value(x.max_value, y.max_value));
    QVERIFY(same_bits_value(x.min_value, y.min_value));
  }
}

void compare_stats(const SiteStats& a, const SiteStats& b) {
  QCOMPARE(a.channels, b.channels);
  QCOMPARE(a.blocks, b.blocks);
  QCOMPARE(a.tokens, b.tokens);
  QVERIFY(same_bits(a.absmax_before, b.absmax_before));
  QVERIFY(same_bits(a.absmax_after, b.absmax_after));
  QVERIFY(same_bits(a.mean_before, b.mean_before));
  QVERIFY(same_bits(a.rms_before, b.rms_before));
  QVERIFY(same_bits(a.e8m0_hist_before, b.e8m0_hist_before));
  QVERIFY(same_bits(a.e8m0_hist_after, b.e8m0_hist_after));
  QVERIFY(same_bits(a.signal_before, b.signal_before));
  QVERIFY(same_bits(a.noise_before, b.noise_before));
  QVERIFY(same_bits(a.signal_after, b.signal_after));
  QVERIFY(same_bits(a.noise_after, b.noise_after));
  QVERIFY(same_bits(a.sample_tokens, b.sample_tokens));
  QVERIFY(same_bits_matrix(a.sample_before, b.sample_before));
  QVERIFY(same_bits_matrix(a.sample_after, b.sample_after));
}

void compare_eval(const EvalRecord& a, const EvalRecord& b) {
  QCOMPARE(a.kind, b.kind);
  QCOMPARE(a.dataset, b.dataset);
  QCOMPARE(a.dataset_sha256, b.dataset_sha256);
  QCOMPARE(a.method, b.method);
  QCOMPARE(a.scheme, b.scheme);
  QCOMPARE(a.seqlen, b.seqlen);
  QCOMPARE(a.windows, b.windows);
  QCOMPARE(a.tokens_scored, b.tokens_scored);
  QVERIFY(same_bits(a.window_nll, b.window_nll));
  QVERIFY(same_bits_value(a.ppl, b.ppl));
  QVERIFY(same_bits_value(a.nll_mean, b.nll_mean));
  QCOMPARE(a.kl_mean.has_value(), b.kl_mean.has_value());
  if (a.kl_mean) QVERIFY(same_bits_value(*a.kl_mean, *b.kl_mean));
  QCOMPARE(a.top1.has_value(), b.top1.has_value());
  if (a.top1) QVERIFY(same_bits_value(*a.top1, *b.top1));
  QCOMPARE(a.started_utc, b.started_utc);
  QCOMPARE(a.finished_utc, b.finished_utc);
}

void compare_config(const LlamaConfig& a, const LlamaConfig& b) {
  QCOMPARE(a.architecture, b.architecture);
  QCOMPARE(a.model_type, b.model_type);
  QCOMPARE(a.hidden_size, b.hidden_size);
  QCOMPARE(a.intermediate_size, b.intermediate_size);
  QCOMPARE(a.num_layers, b.num_layers);
  QCOMPARE(a.num_heads, b.num_heads);
  QCOMPARE(a.num_kv_heads, b.num_kv_heads);
  QCOMPARE(a.head_dim, b.head_dim);
  QCOMPARE(a.vocab_size, b.vocab_size);
  QCOMPARE(a.max_position_embeddings, b.max_position_embeddings);
  QVERIFY(same_bits_value(a.rms_norm_eps, b.rms_norm_eps));
  QVERIFY(same_bits_value(a.rope_theta, b.rope_theta));
  QCOMPARE(a.rope_scaling.type, b.rope_scaling.type);
  QCOMPARE(a.tie_word_embeddings, b.tie_word_embeddings);
  QCOMPARE(a.bos_token_ids, b.bos_token_ids);
  QCOMPARE(a.eos_token_ids, b.eos_token_ids);
  QCOMPARE(a.torch_dtype, b.torch_dtype);
}

void compare_sessions(const Session& a, const Session& b) {
  const Provenance &p = a.provenance, &q = b.provenance;
  QCOMPARE(p.model_dir, q.model_dir);
  QVERIFY(p.fingerprint == q.fingerprint);
  QCOMPARE(p.config_json, q.config_json);
  QCOMPARE(p.created_utc, q.created_utc);
  QCOMPARE(p.mxlens_version, q.mxlens_version);
  QCOMPARE(p.git_commit, q.git_commit);
  QCOMPARE(p.host, q.host);
  QCOMPARE(p.backend, q.backend);
  compare_settings(a.settings, b.settings);
  QCOMPARE(a.data.text_path, b.data.text_path);
  QCOMPARE(a.data.text_sha256, b.data.text_sha256);
  QCOMPARE(a.data.text_tokens, b.data.text_tokens);
  QVERIFY(a.data.region == b.data.region);
  QCOMPARE(a.data.window_offsets, b.data.window_offsets);
  QVERIFY(same_bits_value(a.timings.forward, b.timings.forward));
  QVERIFY(same_bits_value(a.timings.statistics, b.timings.statistics));
  QVERIFY(same_bits_value(a.timings.search, b.timings.search));
  QVERIFY(same_bits_value(a.timings.gptq, b.timings.gptq));
  QVERIFY(same_bits_value(a.timings.total, b.timings.total));
  compare_config(a.config, b.config);

  QCOMPARE(a.transforms.size(), b.transforms.size());
  for (size_t l = 0; l < a.transforms.size(); ++l)
    for (size_t si = 0; si < 4; ++si) {
      const SiteTransform& x = a.transforms[l].sites[si];
      const SiteTransform& y = b.transforms[l].sites[si];
      QVERIFY(same_bits(x.smooth, y.smooth));
      QCOMPARE(x.smooth_fold, y.smooth_fold);
      compare_transform(x.rotation, y.rotation);
    }
  QCOMPARE(a.searches.size(), b.searches.size());
  for (size_t l = 0; l < a.searches.size(); ++l)
    for (size_t si = 0; si < 4; ++si) {
      const SiteSearch& x = a.searches[l][si];
      const SiteSearch& y = b.searches[l][si];
      QCOMPARE(x.permutation, y.permutation);
      QCOMPARE(x.traces.size(), y.traces.size());
      for (size_t i = 0; i < x.traces.size(); ++i) compare_trace(x.traces[i], y.traces[i]);
    }
  QCOMPARE(a.stats.size(), b.stats.size());
  for (size_t l = 0; l < a.stats.size(); ++l)
    for (size_t si = 0; si < 4; ++si) compare_stats(a.stats[l][si], b.stats[l][si]);
  QCOMPARE(a.weights.size(), b.weights.size());
  for (size_t l = 0; l < a.weights.size(); ++l)
    for (size_t i = 0; i < 7; ++i) {
      QCOMPARE(a.weights[l][i].has_value(), b.weights[l][i].has_value());
      if (a.weights[l][i]) QVERIFY(same_bits_matrix(*a.weights[l][i], *b.weights[l][i]));
    }
  QCOMPARE(a.results.size(), b.results.size());
  for (size_t i = 0; i < a.results.size(); ++i) compare_eval(a.results[i], b.results[i]);
  QCOMPARE(a.warnings, b.warnings);
}

// What external readers find beside the round-tripped data (formats.md §5.1): the one-block
// rotation as [1, b, b] with its convention, and the sampled rows' E8M0 bytes.
void check_layout(const fs::path& file, const Session& s) {
  const hid_t f = H5Fopen(file.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  QVERIFY(f >= 0);
  auto read_f32 = [&](const char* path, std::vector<hsize_t>& dims) {
    std::vector<float> v;
    const hid_t d = H5Dopen2(f, path, H5P_DEFAULT);
    if (d < 0) return v;
    const hid_t sp = H5Dget_space(d);
    dims.assign(size_t(H5Sget_simple_extent_ndims(sp)), 0);
    H5Sget_simple_extent_dims(sp, dims.data(), nullptr);
    v.resize(size_t(H5Sget_simple_extent_npoints(sp)));
    H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, v.data());
    H5Sclose(sp);
    H5Dclose(d);
    return v;
  };
  std::vector<hsize_t> dims;
  const std::vector<float> r = read_f32("/layers/L000/down_in/rotation", dims);
  QCOMPARE(dims, (std::vector<hsize_t>{1, 32, 32}));
  const Eigen::MatrixXf& R = s.transforms[0].site(Site::Down).rotation.steps()[0].rotation;
  const RowMatrixXf Rr = R;  // the file is row-major: r[i·32 + j] = R(i, j)
  QVERIFY(same_bits(r, std::vector<float>(Rr.data(), Rr.data() + Rr.size())));
  QCOMPARE(H5Aexists_by_name(f, "/layers/L000/down_in/rotation", "apply", H5P_DEFAULT), 1);
  // A DuQuant chain has no single rotation.
  QCOMPARE(H5Lexists(f, "/layers/L000/o_in/rotation", H5P_DEFAULT), 0);

  const SiteStats& st = s.stats[0][size_t(Site::Qkv)];
  const std::vector<uint8_t> want = st.sample_e8m0_before(s.settings.stats.mx);
  const hid_t d = H5Dopen2(f, "/layers/L000/qkv_in/statistics/e8m0_before", H5P_DEFAULT);
  QVERIFY(d >= 0);
  std::vector<uint8_t> got(want.size() + 1, 0xAB);
  const hid_t sp = H5Dget_space(d);
  QCOMPARE(H5Sget_simple_extent_npoints(sp), hssize_t(want.size()));
  QVERIFY(H5Dread(d, H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, got.data()) >= 0);
  got.pop_back();
  QCOMPARE(got, want);
  H5Sclose(sp);
  H5Dclose(d);
  H5Fclose(f);
}

// Runs `f`, which must throw Error; returns its message (empty when it did not throw).
template <typename F>
QString error_of(F f) {
  try {
    f();
  } catch (const Error& e) {
    return QString::fromStdString(std::string(e.what()) + " [source: " + e.source() + "]");
  }
  return {};
}

// Files in `dir` whose names start with `stem` (the target and any temporary beside it).
QStringList files_like(const fs::path& dir, const std::string& stem) {
  QStringList out;
  for (const auto& e : fs::directory_iterator(dir)) {
    const std::string n = e.path().filename().string();
    if (n.rfind(stem, 0) == 0) out << QString::fromStdString(n);
  }
  out.sort();
  return out;
}

}  // namespace

class TestSession : public QObject {
  Q_OBJECT

 private:
  QTemporaryDir tmp_;
  fs::path dir() const { return fs::path(tmp_.path().toStdString()); }

 private slots:
  void sha256KnownVectors() {
    QCOMPARE(sha256_hex(std::string_view("abc")),
             std::string("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"));
    QCOMPARE(sha256_hex(std::string_view("")),
             std::string("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"));
    // FIPS 180-2 two-block message.
    QCOMPARE(
        sha256_hex(std::string_view("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq")),
        std::string("248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"));
    const std::string text(3 << 20, 'a');  // more than one read buffer
    const fs::path p = dir() / "sha.bin";
    std::ofstream(p, std::ios::binary).write(text.data(), std::streamsize(text.size()));
    QCOMPARE(sha256_file(p), sha256_hex(std::as_bytes(std::span(text.data(), text.size()))));
    const QString e = error_of([&] { sha256_file(dir() / "absent.bin"); });
    QVERIFY2(e.contains("absent.bin"), qPrintable(e));
  }

  void fingerprintsDifferAndAreStable() {
    const Checkpoint a = Checkpoint::open(test::model_656k());
    const Checkpoint b = Checkpoint::open(test::model_260k());
    const ModelFingerprint fa = model_fingerprint(a), fa2 = model_fingerprint(a);
    const ModelFingerprint fb = model_fingerprint(b);
    QVERIFY(fa == fa2);
    QCOMPARE(fa.config_sha256, sha256_file(test::model_656k() / "config.json"));
    QCOMPARE(fa.tokenizer_sha256, sha256_file(test::model_656k() / "tokenizer.json"));
    QCOMPARE(fa.weights_sha256.size(), size_t(64));
    QVERIFY(fb.tokenizer_sha256.empty());  // stories260K-hf has no tokenizer.json
    QVERIFY(fa.config_sha256 != fb.config_sha256);
    QVERIFY(fa.weights_sha256 != fb.weights_sha256);

    // One changed byte in the tensor data changes the weights hash only.
    const fs::path copy = dir() / "model-copy";
    fs::create_directories(copy);
    for (const char* name : {"config.json", "tokenizer.json", "model.safetensors"})
      fs::copy_file(test::model_656k() / name, copy / name, fs::copy_options::overwrite_existing);
    {
      std::fstream f(copy / "model.safetensors", std::ios::in | std::ios::out | std::ios::binary);
      f.seekg(-5, std::ios::end);
      char c = 0;
      f.read(&c, 1);
      c = char(c ^ 1);
      f.seekp(-5, std::ios::end);
      f.write(&c, 1);
    }
    const ModelFingerprint fc = model_fingerprint(Checkpoint::open(copy));
    QCOMPARE(fc.config_sha256, fa.config_sha256);
    QCOMPARE(fc.tokenizer_sha256, fa.tokenizer_sha256);
    QVERIFY(fc.weights_sha256 != fa.weights_sha256);
  }

  void settingsJsonRoundTrip() {
    const CalibrationSettings s = rich_settings();
    const std::string j = settings_to_json(s);
    compare_settings(settings_from_json(j, "test"), s);
    const std::string j_default = settings_to_json(CalibrationSettings{});
    compare_settings(settings_from_json(j_default, "test"), CalibrationSettings{});
    QVERIFY(j.find("18446744073709551615") != std::string::npos);  // uint64 seed as integer
  }

  void settingsJsonErrors() {
    const std::string good = settings_to_json(rich_settings());
    auto replaced = [&](const std::string& from, const std::string& to) {
      std::string s = good;
      const size_t at = s.find(from);
      if (at == std::string::npos) return std::string("<pattern not found>");
      return s.replace(at, from.size(), to);
    };
    struct Case {
      std::string json, expect;
    };
    const std::vector<Case> cases = {
        {"{not json", "not valid JSON"},
        {replaced("\"duquantpp-gptq\"", "\"magic\""), "magic"},
        {replaced("\"count\"", "\"cnt\""), "cnt"},  // unknown + missing field
        {replaced("\"add_bos\": true", "\"add_bos\": 1"), "add_bos"},
        {replaced("\"scale_timing\": \"in_block_update\"", "\"scale_timing\": \"late\""), "late"},
        {replaced("\"format\": \"mxfp4\"", "\"format\": \"fp8\""), "fp8"},
        {replaced("\"seed\": 99", "\"seed\": -1"), "seed"},
        {replaced("\"search_data\": \"mean_window\"", "\"search_data\": \"all\""), "all"},
    };
    for (const Case& c : cases) {
      QVERIFY2(c.json != "<pattern not found>", c.expect.c_str());
      const QString e = error_of([&] { settings_from_json(c.json, "session.h5:settings"); });
      QVERIFY2(e.contains("session.h5:settings"), (c.expect + ": " + e.toStdString()).c_str());
      QVERIFY2(e.contains(QString::fromStdString(c.expect)),
               (c.expect + ": " + e.toStdString()).c_str());
    }
  }

  void roundTripEveryField() {
    const Checkpoint ckpt = Checkpoint::open(test::model_656k());
    QCOMPARE(ckpt.config().num_layers, 2);
    Session s = make_session(ckpt);
    s.warnings = {"layer 0 site down left unrotated: 172 channels", "ümlaut \"quoted\""};
    const fs::path file = dir() / "rich.mxsession";
    std::vector<std::string> parts;
    SessionSaveOptions opt;
    opt.on_part = [&](std::string_view p) { parts.emplace_back(p); };
    save_session(s, file, opt);
    QVERIFY(std::find(parts.begin(), parts.end(), "layer 0") != parts.end());
    QVERIFY(std::find(parts.begin(), parts.end(), "layer 1") != parts.end());
    QCOMPARE(files_like(dir(), "rich.mxsession"), QStringList{"rich.mxsession"});

    const Session loaded = load_session(file);
    compare_sessions(s, loaded);
    if (QTest::currentTestFailed()) return;
    check_layout(file, s);
    if (QTest::currentTestFailed()) return;
    // Saving the loaded session gives the same session again.
    save_session(loaded, dir() / "rich2.mxsession");
    compare_sessions(s, load_session(dir() / "rich2.mxsession"));
    if (QTest::currentTestFailed()) return;

    // The same plan: identical weights for every linear, identical transformed activations.
    const LlamaConfig& cfg = ckpt.config();
    const QuantPlan pa = make_plan(s, cfg);
    const QuantPlan pb = make_plan(loaded, cfg);
    const LlamaWeights weights(ckpt);
    LayerWeights lw;
    int stored = 0;
    for (int l = 0; l < cfg.num_layers; ++l) {
      weights.load_layer(l, lw);
      for (Linear which : kAllLinears) {
        const MatrixRef& w = lw.linear(which);
        RowMatrixXf qa, qb;
        pa.quantized_weight(l, which, w.span(), int(w.rows), int(w.cols), qa);
        pb.quantized_weight(l, which, w.span(), int(w.rows), int(w.cols), qb);
        QVERIFY2(same_bits_matrix(qa, qb), linear_name(which).data());
        stored += pb.stored_weight(l, which) != nullptr;
      }
      for (Site site : kAllSites) {
        RowMatrixXf xa = random_matrix(9, site_channels(cfg, site), 7 + l);
        RowMatrixXf xb = xa;
        const RowMatrixXf x0 = xa;
        pa.transform_activations(l, site, xa);
        pb.transform_activations(l, site, xb);
        QVERIFY(same_bits_matrix(xa, xb));
        if (s.transforms[size_t(l)].site(site).has_rotation())
          QVERIFY(!same_bits_matrix(xa, x0));  // the transform did something
      }
    }
    QCOMPARE(stored, 2);
  }

  void makePlanRejectsAnotherModel() {
    const Checkpoint ckpt = Checkpoint::open(test::model_656k());
    Session s;
    s.config = ckpt.config();
    s.provenance.model_dir = "/models/656k";
    LlamaConfig other = ckpt.config();
    other.intermediate_size = 512;
    QString e = error_of([&] { make_plan(s, other); });
    QVERIFY2(e.contains("intermediate_size") && e.contains("384") && e.contains("512"),
             qPrintable(e));
    other = ckpt.config();
    other.num_layers = 3;
    e = error_of([&] { make_plan(s, other); });
    QVERIFY2(e.contains("num_hidden_layers"), qPrintable(e));
    // A stored weight of the wrong shape.
    s.weights.resize(2);
    s.weights[0][size_t(Linear::K)] = RowMatrixXf::Zero(128, 128);  // k is [64, 128]
    e = error_of([&] { make_plan(s, ckpt.config()); });
    QVERIFY2(e.contains("k_proj") && e.contains("128x128") && e.contains("64x128"), qPrintable(e));
    s.weights[0][size_t(Linear::K)] = RowMatrixXf::Zero(64, 128);
    QVERIFY(error_of([&] { make_plan(s, ckpt.config()); }).isEmpty());
  }

  void saveReplacesExistingFile() {
    const Checkpoint ckpt = Checkpoint::open(test::model_656k());
    Session a;
    a.provenance.config_json = read_text(ckpt.dir() / "config.json");
    a.provenance.created_utc = "first";
    a.results = {make_eval(0, true), make_eval(1, false)};
    const fs::path file = dir() / "replace.mxsession";
    save_session(a, file);
    Session b = a;
    b.provenance.created_utc = "second";
    b.results.resize(1);
    save_session(b, file);
    const Session loaded = load_session(file);
    QCOMPARE(loaded.provenance.created_utc, std::string("second"));
    QCOMPARE(loaded.results.size(), size_t(1));
    QVERIFY(loaded.transforms.empty() && loaded.stats.empty() && loaded.weights.empty());
    QCOMPARE(files_like(dir(), "replace.mxsession"), QStringList{"replace.mxsession"});
  }

  void unknownVersionRejected() {
    const Checkpoint ckpt = Checkpoint::open(test::model_656k());
    Session a;
    a.provenance.config_json = read_text(ckpt.dir() / "config.json");
    const fs::path file = dir() / "future.mxsession";
    save_session(a, file);
    {
      const hid_t f = H5Fopen(file.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
      QVERIFY(f >= 0);
      const hid_t attr = H5Aopen_by_name(f, "/", "format_version", H5P_DEFAULT, H5P_DEFAULT);
      QVERIFY(attr >= 0);
      const uint32_t v = 7;
      QVERIFY(H5Awrite(attr, H5T_NATIVE_UINT32, &v) >= 0);
      H5Aclose(attr);
      QVERIFY(H5Fclose(f) >= 0);
    }
    const QString e = error_of([&] { load_session(file); });
    QVERIFY2(e.contains("future.mxsession") && e.contains("format_version 7") &&
                 e.contains("this build reads version 1"),
             qPrintable(e));
  }

  void foreignFilesRejected() {
    const fs::path text = dir() / "notes.txt";
    std::ofstream(text) << "hello, not HDF5\n";
    QString e = error_of([&] { load_session(text); });
    QVERIFY2(e.contains("notes.txt") && e.contains("not an mxlens session file"), qPrintable(e));

    const fs::path missing = dir() / "missing.mxsession";
    e = error_of([&] { load_session(missing); });
    QVERIFY2(e.contains("missing.mxsession"), qPrintable(e));

    // An HDF5 file without the format attribute.
    const fs::path other = dir() / "other.h5";
    const hid_t f = H5Fcreate(other.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    QVERIFY(f >= 0);
    QVERIFY(H5Fclose(f) >= 0);
    e = error_of([&] { load_session(other); });
    QVERIFY2(e.contains("other.h5") && e.contains("not an mxlens session file"), qPrintable(e));

    // A session whose settings were damaged: the error names the file and the field.
    const Checkpoint ckpt = Checkpoint::open(test::model_656k());
    Session a;
    a.provenance.config_json = read_text(ckpt.dir() / "config.json");
    a.provenance.config_json.replace(a.provenance.config_json.find("\"hidden_size\""), 13,
                                     "\"hidden_sizeX\"");
    const fs::path bad = dir() / "badconfig.mxsession";
    save_session(a, bad);
    e = error_of([&] { load_session(bad); });
    QVERIFY2(e.contains("badconfig.mxsession") && e.contains("hidden_size"), qPrintable(e));
  }

  // A save that throws mid-way (here: the part callback) removes its temporary file and
  // leaves the previous file; a cancel stays a cancel.
  void failedSaveKeepsOldFile() {
    const Checkpoint ckpt = Checkpoint::open(test::model_656k());
    Session a;
    a.provenance.config_json = read_text(ckpt.dir() / "config.json");
    a.provenance.created_utc = "old";
    a.transforms.resize(2);
    const fs::path file = dir() / "failed.mxsession";
    save_session(a, file);
    Session b = a;
    b.provenance.created_utc = "new";
    SessionSaveOptions opt;
    opt.on_part = [](std::string_view part) {
      if (part == "layer 1") throw std::runtime_error("disk on fire");
    };
    const QString e = error_of([&] { save_session(b, file, opt); });
    QVERIFY2(e.contains("failed.mxsession") && e.contains("disk on fire"), qPrintable(e));
    QCOMPARE(files_like(dir(), "failed.mxsession"), QStringList{"failed.mxsession"});
    QCOMPARE(load_session(file).provenance.created_utc, std::string("old"));

    opt.on_part = [](std::string_view part) {
      if (part == "results") throw Cancelled();
    };
    QVERIFY_THROWS_EXCEPTION(Cancelled, save_session(b, file, opt));
    QCOMPARE(files_like(dir(), "failed.mxsession"), QStringList{"failed.mxsession"});
    QCOMPARE(load_session(file).provenance.created_utc, std::string("old"));
  }

  void saveIntoMissingDirectoryFails() {
    const fs::path file = dir() / "no-such-dir" / "s.mxsession";
    const QString e = error_of([&] { save_session(Session{}, file); });
    QVERIFY2(e.contains("s.mxsession"), qPrintable(e));
    QVERIFY(!fs::exists(dir() / "no-such-dir"));
  }

  void checkSessionModel() {
    const Checkpoint a = Checkpoint::open(test::model_656k());
    Session s;
    s.provenance.model_dir = "/models/tinystories-656k";
    s.provenance.fingerprint = model_fingerprint(a);
    check_session_model(s, model_fingerprint(a), "x.mxsession");  // same model: no error
    const ModelFingerprint other = model_fingerprint(Checkpoint::open(test::model_260k()));
    QString e = error_of([&] { check_session_model(s, other, "x.mxsession"); });
    QVERIFY2(e.contains("x.mxsession") && e.contains("/models/tinystories-656k") &&
                 e.contains("config") && e.contains("tokenizer") && e.contains("weights"),
             qPrintable(e));
    ModelFingerprint fp = s.provenance.fingerprint;
    fp.weights_sha256[0] = fp.weights_sha256[0] == '0' ? '1' : '0';
    e = error_of([&] { check_session_model(s, fp, "y.mxsession"); });
    QVERIFY2(e.contains("y.mxsession") && e.contains("weights") && !e.contains("config") &&
                 !e.contains("tokenizer"),
             qPrintable(e));
  }

  // A save killed mid-way (SIGKILL while it writes layer 1) leaves the previous file intact.
  void killedSaveLeavesOldFile() {
    const Checkpoint ckpt = Checkpoint::open(test::model_656k());
    const LlamaConfig& cfg = ckpt.config();
    Session old_s;
    old_s.provenance.config_json = read_text(ckpt.dir() / "config.json");
    old_s.provenance.created_utc = "old";
    old_s.transforms.resize(size_t(cfg.num_layers));
    old_s.transforms[0].site(Site::Qkv).rotation.add_block_rotation(random_orthogonal(32, 1));
    const fs::path file = dir() / "killed.mxsession";
    save_session(old_s, file);

    Session new_s = old_s;
    new_s.provenance.created_utc = "new";
    new_s.transforms[1].site(Site::Down).smooth = random_positive(cfg.intermediate_size, 3);

    const test::KilledChild k = test::kill_child_at([&](const std::function<void()>& stop_here) {
      SessionSaveOptions opt;
      opt.on_part = [&](std::string_view part) {
        if (part == "layer 1") stop_here();
      };
      save_session(new_s, file, opt);
    });
    QVERIFY(k.pid > 0);
    QVERIFY(k.reaped);
    QCOMPARE(k.reached, ssize_t(1));
    QVERIFY(k.killed_by_sigkill());
    const pid_t child = k.pid;

    const Session loaded = load_session(file);
    QCOMPARE(loaded.provenance.created_utc, std::string("old"));
    QVERIFY(!loaded.transforms[1].site(Site::Down).has_smoothing());
    const QString tmp_name = QString("killed.mxsession.tmp-%1").arg(child);
    QStringList seen = files_like(dir(), "killed.mxsession");
    QVERIFY2(seen.removeAll("killed.mxsession") == 1, qPrintable(seen.join(",")));
    for (const QString& n : seen) QVERIFY2(n.contains(".tmp-"), qPrintable(n));
    QVERIFY2(seen.contains(tmp_name), qPrintable(seen.join(",")));  // the kill left it behind
    fs::remove(dir() / tmp_name.toStdString());

    // A later save still works and replaces the file.
    save_session(new_s, file);
    QCOMPARE(load_session(file).provenance.created_utc, std::string("new"));
  }
};

QTEST_GUILESS_MAIN(TestSession)
#include "test_session.moc"
