#include "core/io/session_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <system_error>

#include <nlohmann/json.hpp>

#include "core/io/hdf5_util.h"
#include "core/util/error.h"

namespace mxlens {

namespace {

using h5::Handle;

constexpr const char* kFormatName = "mxlens-session";
constexpr const char* kApply = "row_vector_times_R";

constexpr std::array<std::string_view, 4> kSiteGroups = {"qkv_in", "o_in", "gateup_in", "down_in"};
constexpr std::array<std::string_view, 7> kProjNames = {"q", "k", "v", "o", "gate", "up", "down"};

std::string layer_group_name(size_t layer) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "L%03zu", layer);
  return buf;
}
std::string indexed_name(const char* prefix, size_t i) {
  char buf[48];
  std::snprintf(buf, sizeof buf, "%s%03zu", prefix, i);
  return buf;
}

std::string_view fold_name(SmoothFold f) {
  switch (f) {
    case SmoothFold::norm:
      return "norm";
    case SmoothFold::previous_rows:
      return "previous_rows";
    case SmoothFold::online:
      return "online";
  }
  return "?";
}
SmoothFold parse_fold(const std::string& s, const std::string& where) {
  for (SmoothFold f : {SmoothFold::norm, SmoothFold::previous_rows, SmoothFold::online})
    if (s == fold_name(f)) return f;
  throw Error(where, "unknown smoothing fold '" + s + "' (known: norm, previous_rows, online)");
}

std::string_view step_kind_name(ChannelTransform::StepKind k) {
  switch (k) {
    case ChannelTransform::StepKind::BlockRotation:
      return "block_rotation";
    case ChannelTransform::StepKind::Permutation:
      return "permutation";
    case ChannelTransform::StepKind::FullHadamard:
      return "full_hadamard";
  }
  return "?";
}

// Shape checks of what is read back.
void expect_dims(const std::vector<uint64_t>& dims, const std::vector<uint64_t>& want,
                 const std::string& where) {
  if (dims == want) return;
  auto show = [](const std::vector<uint64_t>& d) {
    std::string s = "[";
    for (size_t i = 0; i < d.size(); ++i) s += (i ? "," : "") + std::to_string(d[i]);
    return s + "]";
  };
  throw Error(where, "has shape " + show(dims) + ", expected " + show(want));
}

// ---- writing ----------------------------------------------------------------------------

// Eigen's default storage is column-major; the file holds row-major matrices as used.
void write_matrix_f32(hid_t parent, std::string_view name, const Eigen::MatrixXf& m,
                      std::vector<uint64_t> dims = {}) {
  const RowMatrixXf rm = m;
  if (dims.empty()) dims = {uint64_t(m.rows()), uint64_t(m.cols())};
  h5::write_dataset(parent, name, rm.data(), dims);
}

void write_transform(hid_t site_group, const ChannelTransform& t) {
  const Handle g = h5::create_group(site_group, "transform");
  const auto& steps = t.steps();
  h5::write_attr<int32_t>(g, "n_steps", int32_t(steps.size()));
  h5::write_attr_string(g, "apply", kApply);
  for (size_t i = 0; i < steps.size(); ++i) {
    const auto& s = steps[i];
    const Handle sg = h5::create_group(g, indexed_name("step_", i));
    h5::write_attr_string(sg, "kind", step_kind_name(s.kind));
    switch (s.kind) {
      case ChannelTransform::StepKind::BlockRotation: {
        h5::write_attr<int32_t>(sg, "block_size", int32_t(s.rotation.rows()));
        write_matrix_f32(sg, "rotation", s.rotation);
        break;
      }
      case ChannelTransform::StepKind::Permutation:
        h5::write_attr<int32_t>(sg, "channels", s.channels);
        h5::write_vector(sg, "permutation", s.permutation);
        break;
      case ChannelTransform::StepKind::FullHadamard:
        h5::write_attr<int32_t>(sg, "channels", s.channels);
        h5::write_attr<uint64_t>(sg, "sign_seed", s.sign_seed);
        // The signs are derived from the seed; stored too, so a reader without this build's
        // generator has them and a load can check that the generator still gives them.
        h5::write_vector(sg, "signs", s.signs);
        break;
    }
  }
  // The common single-rotation case also as one [1, b, b] array, as formats.md §5.1 lists it.
  if (steps.size() == 1 && steps[0].kind == ChannelTransform::StepKind::BlockRotation) {
    const auto& R = steps[0].rotation;
    write_matrix_f32(site_group, "rotation", R, {1, uint64_t(R.rows()), uint64_t(R.cols())});
    const Handle d(H5Dopen2(site_group, "rotation", H5P_DEFAULT));
    if (!d.valid()) h5::fail(h5::child_path(site_group, "rotation"), "cannot open dataset");
    h5::write_attr_string(d, "apply", kApply);
    h5::write_attr<int32_t>(d, "block_size", int32_t(R.rows()));
  }
}

void write_site_transform(hid_t site_group, const SiteTransform& t, float alpha) {
  h5::write_attr_string(site_group, "smooth_fold", fold_name(t.smooth_fold));
  h5::write_attr<int32_t>(site_group, "has_transform", 1);
  if (t.has_smoothing()) {
    h5::write_vector(site_group, "smooth_scales", t.smooth);
    const Handle d(H5Dopen2(site_group, "smooth_scales", H5P_DEFAULT));
    if (!d.valid()) h5::fail(h5::child_path(site_group, "smooth_scales"), "cannot open dataset");
    h5::write_attr_string(d, "fold", fold_name(t.smooth_fold));
    h5::write_attr<float>(d, "alpha", alpha);  // informational: the settings hold it
  }
  write_transform(site_group, t.rotation);
}

void write_trace(hid_t parent, std::string_view name, const GreedyTrace& tr) {
  const Handle g = h5::create_group(parent, name);
  h5::write_attr<int32_t>(g, "block_size", tr.block_size);
  h5::write_attr_string(g, "selection", to_string(tr.selection));
  h5::write_attr_string(g, "objective_kind", to_string(tr.objective));
  h5::write_attr<uint64_t>(g, "q_seed", tr.q_seed);
  h5::write_attr<int32_t>(g, "best_step", tr.best_step);
  h5::write_attr<int32_t>(g, "n_steps_requested", tr.max_steps());
  h5::write_attr<int32_t>(g, "n_steps_kept", tr.best_step);
  using RowMatrixXd = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  const RowMatrixXd q = tr.q_prime;
  h5::write_dataset(g, "q_prime", q.data(), {uint64_t(q.rows()), uint64_t(q.cols())});

  const size_t n = tr.steps.size();
  std::vector<int32_t> step(n), channel(n);
  std::vector<double> objective(n);
  std::vector<int64_t> max_row(n), max_col(n), min_row(n), min_col(n);
  std::vector<float> max_value(n), min_value(n);
  for (size_t i = 0; i < n; ++i) {
    const GreedyStep& s = tr.steps[i];
    step[i] = int32_t(i);
    channel[i] = s.channel;
    objective[i] = s.objective;
    max_row[i] = s.max_row;
    max_col[i] = s.max_col;
    min_row[i] = s.min_row;
    min_col[i] = s.min_col;
    max_value[i] = s.max_value;
    min_value[i] = s.min_value;
  }
  h5::write_vector(g, "step", step);
  h5::write_vector(g, "channel", channel);
  h5::write_vector(g, "objective", objective);
  h5::write_vector(g, "max_row", max_row);
  h5::write_vector(g, "max_col", max_col);
  h5::write_vector(g, "min_row", min_row);
  h5::write_vector(g, "min_col", min_col);
  h5::write_vector(g, "max_value", max_value);
  h5::write_vector(g, "min_value", min_value);
}

void write_search(hid_t site_group, const SiteSearch& s) {
  const Handle g = h5::create_group(site_group, "search");
  h5::write_attr<int32_t>(g, "n_traces", int32_t(s.traces.size()));
  h5::write_attr<int32_t>(g, "has_permutation", s.permutation.empty() ? 0 : 1);
  if (!s.permutation.empty()) h5::write_vector(g, "permutation", s.permutation);
  for (size_t i = 0; i < s.traces.size(); ++i)
    write_trace(g, indexed_name("trace_", i), s.traces[i]);
}

// 256 bins per block: stored [blocks, 256] as formats.md lists it when the size allows.
void write_hist(hid_t g, std::string_view name, const std::vector<uint32_t>& h) {
  if (!h.empty() && h.size() % 256 == 0)
    h5::write_dataset(g, name, h.data(), {uint64_t(h.size() / 256), 256});
  else
    h5::write_vector(g, name, h);
}

// The sampled rows' E8M0 bytes [rows, blocks], for readers of the file (derived from the
// samples with the statistics' scale rule; not read back).
void write_sample_bytes(hid_t g, std::string_view name, const RowMatrixXf& rows,
                        const std::vector<uint8_t>& bytes, int blocks, const QuantOptions& mx) {
  if (rows.rows() == 0 || blocks <= 0 || bytes.size() != size_t(rows.rows()) * size_t(blocks))
    return;
  h5::write_dataset(g, name, bytes.data(), {uint64_t(rows.rows()), uint64_t(blocks)});
  const Handle d(H5Dopen2(g, std::string(name).c_str(), H5P_DEFAULT));
  if (!d.valid()) h5::fail(h5::child_path(g, name), "cannot open dataset");
  h5::write_attr_string(d, "scale_rule", to_string(mx.scale_rule));
}

void write_stats(hid_t site_group, const SiteStats& s, const QuantOptions& mx) {
  const Handle g = h5::create_group(site_group, "statistics");
  h5::write_attr<int32_t>(g, "channels", s.channels);
  h5::write_attr<int32_t>(g, "blocks", s.blocks);
  h5::write_attr<int64_t>(g, "tokens", s.tokens);
  h5::write_vector(g, "absmax_channel", s.absmax_before);
  h5::write_vector(g, "absmax_channel_rot", s.absmax_after);
  h5::write_vector(g, "mean_channel", s.mean_before);
  h5::write_vector(g, "rms_channel", s.rms_before);
  write_hist(g, "e8m0_hist_before", s.e8m0_hist_before);
  write_hist(g, "e8m0_hist_after", s.e8m0_hist_after);
  h5::write_vector(g, "signal_before", s.signal_before);
  h5::write_vector(g, "noise_before", s.noise_before);
  h5::write_vector(g, "signal_after", s.signal_after);
  h5::write_vector(g, "noise_after", s.noise_after);
  h5::write_vector(g, "sample_tokens", s.sample_tokens);
  h5::write_dataset(g, "sample_before", s.sample_before.data(),
                    {uint64_t(s.sample_before.rows()), uint64_t(s.sample_before.cols())});
  h5::write_dataset(g, "sample_after", s.sample_after.data(),
                    {uint64_t(s.sample_after.rows()), uint64_t(s.sample_after.cols())});
  if (s.sample_before.cols() == s.channels)
    write_sample_bytes(g, "e8m0_before", s.sample_before, s.sample_e8m0_before(mx), s.blocks, mx);
  if (s.sample_after.cols() == s.channels)
    write_sample_bytes(g, "e8m0_after", s.sample_after, s.sample_e8m0_after(mx), s.blocks, mx);
}

void write_result(hid_t parent, std::string_view name, const EvalRecord& r) {
  const Handle g = h5::create_group(parent, name);
  h5::write_attr_string(g, "kind", r.kind);
  h5::write_attr_string(g, "dataset", r.dataset);
  h5::write_attr_string(g, "dataset_sha256", r.dataset_sha256);
  h5::write_attr_string(g, "method", r.method);
  h5::write_attr_string(g, "scheme", r.scheme);
  h5::write_attr<int32_t>(g, "seq_len", r.seqlen);
  h5::write_attr<int64_t>(g, "n_windows", r.windows);
  h5::write_attr<int64_t>(g, "tokens_scored", r.tokens_scored);
  h5::write_attr<double>(g, "ppl", r.ppl);
  h5::write_attr<double>(g, "nll_mean", r.nll_mean);
  if (r.kl_mean) h5::write_attr<double>(g, "kl_mean", *r.kl_mean);
  if (r.top1) h5::write_attr<double>(g, "top1", *r.top1);
  h5::write_attr_string(g, "started_utc", r.started_utc);
  h5::write_attr_string(g, "finished_utc", r.finished_utc);
  h5::write_vector(g, "nll_window", r.window_nll);
}

void write_file(const Session& s, hid_t file, const SessionSaveOptions& options) {
  auto part = [&](std::string_view name) {
    if (options.on_part) options.on_part(name);
  };
  const Provenance& p = s.provenance;
  const Handle root(H5Gopen2(file, "/", H5P_DEFAULT));
  if (!root.valid()) h5::fail("/", "cannot open the root group");
  h5::write_attr_string(root, "format", kFormatName);
  h5::write_attr<uint32_t>(root, "format_version", Session::kFormatVersion);
  h5::write_attr_string(root, "created_utc", p.created_utc);
  h5::write_attr_string(root, "mxlens_version", p.mxlens_version);
  h5::write_attr_string(root, "git_commit", p.git_commit);
  h5::write_attr_string(root, "host", p.host);

  {
    const Handle g = h5::create_group(file, "provenance");
    h5::write_attr_string(g, "model_dir", p.model_dir);
    h5::write_attr_string(g, "model_config_sha256", p.fingerprint.config_sha256);
    h5::write_attr_string(g, "tokenizer_sha256", p.fingerprint.tokenizer_sha256);
    h5::write_attr_string(g, "weights_sha256", p.fingerprint.weights_sha256);
    h5::write_attr_string(g, "backend", p.backend);
    h5::write_string_dataset(g, "config_json", p.config_json);
    h5::write_string_dataset(g, "settings_json", settings_to_json(s.settings));
  }
  {
    const CalibrationData& d = s.data;
    const CalibrationTimings& t = s.timings;
    const Handle g = h5::create_group(file, "calibration");
    h5::write_attr_string(g, "text_path", d.text_path);
    h5::write_attr_string(g, "text_sha256", d.text_sha256);
    h5::write_attr<int64_t>(g, "text_tokens", d.text_tokens);
    h5::write_attr<int64_t>(g, "region_begin", d.region.begin);
    h5::write_attr<int64_t>(g, "region_end", d.region.end);
    h5::write_string_dataset(g, "warnings_json", nlohmann::json(s.warnings).dump());
    h5::write_attr<double>(g, "time_forward_s", t.forward);
    h5::write_attr<double>(g, "time_statistics_s", t.statistics);
    h5::write_attr<double>(g, "time_search_s", t.search);
    h5::write_attr<double>(g, "time_gptq_s", t.gptq);
    h5::write_attr<double>(g, "time_total_s", t.total);
    h5::write_vector(g, "window_offsets", d.window_offsets);
  }

  const size_t n_layers =
      std::max({s.transforms.size(), s.searches.size(), s.stats.size(), s.weights.size()});
  const Handle layers = h5::create_group(file, "layers");
  h5::write_attr<int64_t>(layers, "n_layers", int64_t(n_layers));
  h5::write_attr<int64_t>(layers, "n_transforms", int64_t(s.transforms.size()));
  h5::write_attr<int64_t>(layers, "n_searches", int64_t(s.searches.size()));
  h5::write_attr<int64_t>(layers, "n_stats", int64_t(s.stats.size()));
  h5::write_attr<int64_t>(layers, "n_weights", int64_t(s.weights.size()));
  for (size_t l = 0; l < n_layers; ++l) {
    part("layer " + std::to_string(l));
    const Handle lg = h5::create_group(layers, layer_group_name(l));
    for (size_t si = 0; si < 4; ++si) {
      const Handle sg = h5::create_group(lg, kSiteGroups[si]);
      if (l < s.transforms.size())
        write_site_transform(sg, s.transforms[l].sites[si], s.settings.smoothing.alpha);
      if (l < s.searches.size()) {
        const SiteSearch& ss = s.searches[l][si];
        if (!ss.traces.empty() || !ss.permutation.empty()) write_search(sg, ss);
      }
      if (l < s.stats.size()) write_stats(sg, s.stats[l][si], s.settings.stats.mx);
    }
    if (l < s.weights.size()) {
      const Handle wg = h5::create_group(lg, "weights");
      for (size_t i = 0; i < 7; ++i) {
        const auto& w = s.weights[l][i];
        if (!w) continue;
        const Handle pg = h5::create_group(wg, kProjNames[i]);
        h5::write_dataset(pg, "weight", w->data(), {uint64_t(w->rows()), uint64_t(w->cols())},
                          h5::Storage::compressed);
      }
    }
  }

  part("results");
  const Handle results = h5::create_group(file, "results");
  h5::write_attr<int64_t>(results, "n_results", int64_t(s.results.size()));
  for (size_t i = 0; i < s.results.size(); ++i)
    write_result(results, indexed_name("eval_", i), s.results[i]);
  part("close");
}

// ---- reading ----------------------------------------------------------------------------

Eigen::MatrixXf read_matrix_f32(hid_t parent, std::string_view name, int64_t rows, int64_t cols) {
  std::vector<uint64_t> dims;
  const std::vector<float> v = h5::read_dataset<float>(parent, name, dims);
  expect_dims(dims, {uint64_t(rows), uint64_t(cols)}, h5::child_path(parent, name));
  return Eigen::Map<const RowMatrixXf>(v.data(), rows, cols);
}

RowMatrixXf read_row_matrix_f32(hid_t parent, std::string_view name) {
  std::vector<uint64_t> dims;
  const std::vector<float> v = h5::read_dataset<float>(parent, name, dims);
  if (dims.size() != 2) throw Error(h5::child_path(parent, name), "expected a 2-D dataset");
  return Eigen::Map<const RowMatrixXf>(v.data(), Eigen::Index(dims[0]), Eigen::Index(dims[1]));
}

ChannelTransform read_transform(hid_t site_group) {
  const Handle g = h5::open_group(site_group, "transform");
  const int n = h5::read_attr<int32_t>(g, "n_steps");
  ChannelTransform t;
  for (int i = 0; i < n; ++i) {
    const Handle sg = h5::open_group(g, indexed_name("step_", size_t(i)));
    const std::string where = h5::path_of(sg);
    const std::string kind = h5::read_attr_string(sg, "kind");
    try {
      if (kind == step_kind_name(ChannelTransform::StepKind::BlockRotation)) {
        const int b = h5::read_attr<int32_t>(sg, "block_size");
        if (b <= 0) throw Error(where, "block_size must be positive");
        t.add_block_rotation(read_matrix_f32(sg, "rotation", b, b));
      } else if (kind == step_kind_name(ChannelTransform::StepKind::Permutation)) {
        const int c = h5::read_attr<int32_t>(sg, "channels");
        std::vector<int32_t> perm = h5::read_vector<int32_t>(sg, "permutation");
        if (int64_t(perm.size()) != c)
          throw Error(where, "permutation has " + std::to_string(perm.size()) +
                                 " entries, channels is " + std::to_string(c));
        t.add_permutation(std::move(perm));
      } else if (kind == step_kind_name(ChannelTransform::StepKind::FullHadamard)) {
        const int c = h5::read_attr<int32_t>(sg, "channels");
        const uint64_t seed = h5::read_attr<uint64_t>(sg, "sign_seed");
        const std::vector<float> signs = h5::read_vector<float>(sg, "signs");
        t.add_full_hadamard(c, seed);
        // The transform rebuilds the signs from the seed; a build whose generator gave other
        // signs would silently compute another transform.
        const std::vector<float>& rebuilt = t.steps().back().signs;
        if (rebuilt.size() != signs.size() ||
            (!signs.empty() &&
             std::memcmp(rebuilt.data(), signs.data(), signs.size() * sizeof(float)) != 0))
          throw Error(where,
                      "the stored signs differ from those this build derives from "
                      "sign_seed " +
                          std::to_string(seed));
      } else {
        throw Error(where, "unknown transform step kind '" + kind + "'");
      }
    } catch (const Error& e) {
      if (e.source() == where) throw;
      throw Error(where, e.source() + ": " + e.problem());
    }
  }
  return t;
}

SiteTransform read_site_transform(hid_t site_group) {
  SiteTransform t;
  const std::string where = h5::path_of(site_group);
  if (!h5::has_attr(site_group, "has_transform"))
    throw Error(where, "the site's transform is missing");
  t.smooth_fold = parse_fold(h5::read_attr_string(site_group, "smooth_fold"), where);
  if (h5::has_child(site_group, "smooth_scales"))
    t.smooth = h5::read_vector<float>(site_group, "smooth_scales");
  t.rotation = read_transform(site_group);
  return t;
}

GreedyTrace read_trace(hid_t parent, std::string_view name) {
  const Handle g = h5::open_group(parent, name);
  const std::string where = h5::path_of(g);
  GreedyTrace tr;
  tr.block_size = h5::read_attr<int32_t>(g, "block_size");
  try {
    tr.selection = parse_greedy_selection(h5::read_attr_string(g, "selection"), "selection");
    tr.objective = parse_greedy_objective(h5::read_attr_string(g, "objective_kind"), "objective");
  } catch (const Error& e) {
    throw Error(where, e.source() + ": " + e.problem());
  }
  tr.q_seed = h5::read_attr<uint64_t>(g, "q_seed");
  tr.best_step = h5::read_attr<int32_t>(g, "best_step");
  {
    std::vector<uint64_t> dims;
    const std::vector<double> q = h5::read_dataset<double>(g, "q_prime", dims);
    if (dims.size() != 2) throw Error(where + "/q_prime", "expected a 2-D dataset");
    using RowMatrixXd = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
    tr.q_prime =
        Eigen::Map<const RowMatrixXd>(q.data(), Eigen::Index(dims[0]), Eigen::Index(dims[1]));
  }
  const auto channel = h5::read_vector<int32_t>(g, "channel");
  const auto objective = h5::read_vector<double>(g, "objective");
  const auto max_row = h5::read_vector<int64_t>(g, "max_row");
  const auto max_col = h5::read_vector<int64_t>(g, "max_col");
  const auto min_row = h5::read_vector<int64_t>(g, "min_row");
  const auto min_col = h5::read_vector<int64_t>(g, "min_col");
  const auto max_value = h5::read_vector<float>(g, "max_value");
  const auto min_value = h5::read_vector<float>(g, "min_value");
  const size_t n = channel.size();
  for (size_t len : {objective.size(), max_row.size(), max_col.size(), min_row.size(),
                     min_col.size(), max_value.size(), min_value.size()})
    if (len != n) throw Error(where, "the step arrays have different lengths");
  tr.steps.resize(n);
  for (size_t i = 0; i < n; ++i) {
    GreedyStep& s = tr.steps[i];
    s.channel = channel[i];
    s.objective = objective[i];
    s.max_row = max_row[i];
    s.max_col = max_col[i];
    s.min_row = min_row[i];
    s.min_col = min_col[i];
    s.max_value = max_value[i];
    s.min_value = min_value[i];
  }
  return tr;
}

SiteSearch read_search(hid_t site_group) {
  SiteSearch s;
  if (!h5::has_child(site_group, "search")) return s;
  const Handle g = h5::open_group(site_group, "search");
  const int n = h5::read_attr<int32_t>(g, "n_traces");
  if (h5::read_attr<int32_t>(g, "has_permutation") != 0)
    s.permutation = h5::read_vector<int32_t>(g, "permutation");
  for (int i = 0; i < n; ++i) s.traces.push_back(read_trace(g, indexed_name("trace_", size_t(i))));
  return s;
}

std::vector<uint32_t> read_hist(hid_t g, std::string_view name) {
  std::vector<uint64_t> dims;
  return h5::read_dataset<uint32_t>(g, name, dims);
}

SiteStats read_stats(hid_t site_group) {
  const Handle g = h5::open_group(site_group, "statistics");
  SiteStats s;
  s.channels = h5::read_attr<int32_t>(g, "channels");
  s.blocks = h5::read_attr<int32_t>(g, "blocks");
  s.tokens = h5::read_attr<int64_t>(g, "tokens");
  s.absmax_before = h5::read_vector<float>(g, "absmax_channel");
  s.absmax_after = h5::read_vector<float>(g, "absmax_channel_rot");
  s.mean_before = h5::read_vector<float>(g, "mean_channel");
  s.rms_before = h5::read_vector<float>(g, "rms_channel");
  s.e8m0_hist_before = read_hist(g, "e8m0_hist_before");
  s.e8m0_hist_after = read_hist(g, "e8m0_hist_after");
  s.signal_before = h5::read_vector<double>(g, "signal_before");
  s.noise_before = h5::read_vector<double>(g, "noise_before");
  s.signal_after = h5::read_vector<double>(g, "signal_after");
  s.noise_after = h5::read_vector<double>(g, "noise_after");
  s.sample_tokens = h5::read_vector<int64_t>(g, "sample_tokens");
  s.sample_before = read_row_matrix_f32(g, "sample_before");
  s.sample_after = read_row_matrix_f32(g, "sample_after");
  return s;
}

EvalRecord read_result(hid_t parent, std::string_view name) {
  const Handle g = h5::open_group(parent, name);
  EvalRecord r;
  r.kind = h5::read_attr_string(g, "kind");
  r.dataset = h5::read_attr_string(g, "dataset");
  r.dataset_sha256 = h5::read_attr_string(g, "dataset_sha256");
  r.method = h5::read_attr_string(g, "method");
  r.scheme = h5::read_attr_string(g, "scheme");
  r.seqlen = h5::read_attr<int32_t>(g, "seq_len");
  r.windows = h5::read_attr<int64_t>(g, "n_windows");
  r.tokens_scored = h5::read_attr<int64_t>(g, "tokens_scored");
  r.ppl = h5::read_attr<double>(g, "ppl");
  r.nll_mean = h5::read_attr<double>(g, "nll_mean");
  if (h5::has_attr(g, "kl_mean")) r.kl_mean = h5::read_attr<double>(g, "kl_mean");
  if (h5::has_attr(g, "top1")) r.top1 = h5::read_attr<double>(g, "top1");
  r.started_utc = h5::read_attr_string(g, "started_utc");
  r.finished_utc = h5::read_attr_string(g, "finished_utc");
  r.window_nll = h5::read_vector<double>(g, "nll_window");
  return r;
}

// config.json's text through the one config parser there is (it reads a file).
LlamaConfig parse_config_text(const std::string& text, const std::string& source) {
  static std::atomic<uint64_t> counter{0};
  std::error_code ec;
  std::filesystem::path dir = std::filesystem::temp_directory_path(ec);
  if (ec) dir = "/tmp";
  const std::filesystem::path tmp = dir / ("mxlens-config-" + std::to_string(::getpid()) + "-" +
                                           std::to_string(counter.fetch_add(1)) + ".json");
  struct Remove {
    std::filesystem::path p;
    ~Remove() {
      std::error_code e;
      std::filesystem::remove(p, e);
    }
  } remove{tmp};
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out.write(text.data(), std::streamsize(text.size()));
    out.close();
    if (!out) throw Error(source, "cannot write a temporary copy to parse it: " + tmp.string());
  }
  try {
    return parse_llama_config(tmp);
  } catch (const Error& e) {
    throw Error(source, e.problem());
  }
}

Session read_file(hid_t file, const std::string& name) {
  Session s;
  const Handle root(H5Gopen2(file, "/", H5P_DEFAULT));
  if (!root.valid()) h5::fail("/", "cannot open the root group");
  Provenance& p = s.provenance;
  p.created_utc = h5::read_attr_string(root, "created_utc");
  p.mxlens_version = h5::read_attr_string(root, "mxlens_version");
  p.git_commit = h5::read_attr_string(root, "git_commit");
  p.host = h5::read_attr_string(root, "host");
  {
    const Handle g = h5::open_group(file, "provenance");
    p.model_dir = h5::read_attr_string(g, "model_dir");
    p.fingerprint.config_sha256 = h5::read_attr_string(g, "model_config_sha256");
    p.fingerprint.tokenizer_sha256 = h5::read_attr_string(g, "tokenizer_sha256");
    p.fingerprint.weights_sha256 = h5::read_attr_string(g, "weights_sha256");
    p.backend = h5::read_attr_string(g, "backend");
    p.config_json = h5::read_string_dataset(g, "config_json");
    s.settings = settings_from_json(h5::read_string_dataset(g, "settings_json"),
                                    name + ":/provenance/settings_json");
    s.config = parse_config_text(p.config_json, name + ":/provenance/config_json");
  }
  {
    CalibrationData& d = s.data;
    CalibrationTimings& t = s.timings;
    const Handle g = h5::open_group(file, "calibration");
    d.text_path = h5::read_attr_string(g, "text_path");
    d.text_sha256 = h5::read_attr_string(g, "text_sha256");
    d.text_tokens = h5::read_attr<int64_t>(g, "text_tokens");
    d.region.begin = h5::read_attr<int64_t>(g, "region_begin");
    d.region.end = h5::read_attr<int64_t>(g, "region_end");
    if (h5::has_child(g, "warnings_json")) {
      try {
        s.warnings = nlohmann::json::parse(h5::read_string_dataset(g, "warnings_json"))
                         .get<std::vector<std::string>>();
      } catch (const nlohmann::json::exception& e) {
        throw Error(name + ":/calibration/warnings_json", std::string("malformed: ") + e.what());
      }
    }
    t.forward = h5::read_attr<double>(g, "time_forward_s");
    t.statistics = h5::read_attr<double>(g, "time_statistics_s");
    t.search = h5::read_attr<double>(g, "time_search_s");
    t.gptq = h5::read_attr<double>(g, "time_gptq_s");
    t.total = h5::read_attr<double>(g, "time_total_s");
    d.window_offsets = h5::read_vector<int64_t>(g, "window_offsets");
  }
  {
    const Handle layers = h5::open_group(file, "layers");
    const std::string where = h5::path_of(layers);
    const int64_t n_layers = h5::read_attr<int64_t>(layers, "n_layers");
    auto count = [&](const char* attr) {
      const int64_t n = h5::read_attr<int64_t>(layers, attr);
      if (n < 0 || n > n_layers)
        throw Error(where, std::string(attr) + " = " + std::to_string(n) + " is out of range");
      return size_t(n);
    };
    s.transforms.resize(count("n_transforms"));
    s.searches.resize(count("n_searches"));
    s.stats.resize(count("n_stats"));
    s.weights.resize(count("n_weights"));
    for (size_t l = 0; l < size_t(n_layers); ++l) {
      const Handle lg = h5::open_group(layers, layer_group_name(l));
      for (size_t si = 0; si < 4; ++si) {
        const Handle sg = h5::open_group(lg, kSiteGroups[si]);
        if (l < s.transforms.size()) s.transforms[l].sites[si] = read_site_transform(sg);
        if (l < s.searches.size()) s.searches[l][si] = read_search(sg);
        if (l < s.stats.size()) s.stats[l][si] = read_stats(sg);
      }
      if (l < s.weights.size() && h5::has_child(lg, "weights")) {
        const Handle wg = h5::open_group(lg, "weights");
        for (size_t i = 0; i < 7; ++i) {
          if (!h5::has_child(wg, kProjNames[i])) continue;
          const Handle pg = h5::open_group(wg, kProjNames[i]);
          s.weights[l][i] = read_row_matrix_f32(pg, "weight");
        }
      }
    }
  }
  {
    const Handle g = h5::open_group(file, "results");
    const int64_t n = h5::read_attr<int64_t>(g, "n_results");
    if (n < 0) throw Error(h5::path_of(g), "n_results is negative");
    for (int64_t i = 0; i < n; ++i)
      s.results.push_back(read_result(g, indexed_name("eval_", size_t(i))));
  }
  return s;
}

// ---- files ------------------------------------------------------------------------------

void fsync_path(const std::filesystem::path& path, bool directory) {
  const int fd = ::open(path.c_str(), directory ? (O_RDONLY | O_DIRECTORY) : O_RDONLY);
  if (fd < 0)
    throw Error(path.string(), std::string("cannot open to sync: ") + std::strerror(errno));
  const int rc = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  // Some file systems cannot sync a directory (EINVAL); the rename itself has happened.
  if (rc != 0 && !(directory && err == EINVAL))
    throw Error(path.string(), std::string("fsync failed: ") + std::strerror(err));
}

}  // namespace

void save_session(const Session& session, const std::filesystem::path& file,
                  const SessionSaveOptions& options) {
  const std::string name = file.string();
  const std::filesystem::path tmp =
      file.parent_path() / (file.filename().string() + ".tmp-" + std::to_string(::getpid()));
  const h5::QuietErrors quiet;
  bool remove_tmp = true;  // until the rename has happened
  try {
    if (file.filename().empty()) throw Error(name, "not a file name");
    const std::filesystem::path parent = file.parent_path().empty() ? "." : file.parent_path();
    std::error_code dir_ec;
    if (!std::filesystem::is_directory(parent, dir_ec))
      throw Error(name,
                  "cannot save the session: directory " + parent.string() + " does not exist");
    {
      Handle f(H5Fcreate(tmp.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT));
      if (!f.valid()) h5::fail(tmp.string(), "cannot create the file");
      write_file(session, f, options);
      if (H5Fflush(f, H5F_SCOPE_GLOBAL) < 0) h5::fail(tmp.string(), "flush failed");
      f.close(tmp.string());
    }
    fsync_path(tmp, false);
    std::error_code ec;
    std::filesystem::rename(tmp, file, ec);
    if (ec) throw Error(tmp.string(), "cannot rename over the target: " + ec.message());
    remove_tmp = false;
    fsync_path(parent, true);
  } catch (...) {
    if (remove_tmp) {
      std::error_code ec;
      std::filesystem::remove(tmp, ec);
    }
    try {
      throw;
    } catch (const Cancelled&) {
      throw;
    } catch (const Error& e) {
      if (e.source() == name) throw;
      throw Error(name, "cannot save the session: " + e.source() + ": " + e.problem());
    } catch (const std::exception& e) {
      throw Error(name, std::string("cannot save the session: ") + e.what());
    }
  }
}

Session load_session(const std::filesystem::path& file) {
  const std::string name = file.string();
  const h5::QuietErrors quiet;
  std::error_code ec;
  if (!std::filesystem::exists(file, ec)) throw Error(name, "no such file");
  if (std::filesystem::is_directory(file, ec)) throw Error(name, "is a directory, not a file");
  if (H5Fis_hdf5(file.c_str()) <= 0)
    throw Error(name, "not an mxlens session file (not an HDF5 file)");
  const Handle f(H5Fopen(file.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT));
  if (!f.valid()) {
    const std::string detail = h5::last_error();
    throw Error(name, "cannot open the HDF5 file" + (detail.empty() ? "" : " (" + detail + ")"));
  }
  try {
    const Handle root(H5Gopen2(f, "/", H5P_DEFAULT));
    if (!root.valid() || !h5::has_attr(root, "format") ||
        h5::read_attr_string(root, "format") != kFormatName)
      throw Error(name, "not an mxlens session file (no format=\"mxlens-session\" attribute)");
    if (!h5::has_attr(root, "format_version"))
      throw Error(name, "the session file has no format_version attribute");
    const uint32_t version = h5::read_attr<uint32_t>(root, "format_version");
    if (version != Session::kFormatVersion)
      throw Error(name, "session format_version " + std::to_string(version) +
                            " is not supported: this build reads version " +
                            std::to_string(Session::kFormatVersion));
    return read_file(f, name);
  } catch (const Error& e) {
    if (e.source() == name) throw;
    throw Error(name, e.source() + ": " + e.problem());
  }
}

void check_session_model(const Session& session, const ModelFingerprint& model,
                         const std::filesystem::path& session_file) {
  const ModelFingerprint& fp = session.provenance.fingerprint;
  std::vector<std::string> differs;
  if (fp.config_sha256 != model.config_sha256) differs.emplace_back("config.json");
  if (fp.tokenizer_sha256 != model.tokenizer_sha256) differs.emplace_back("tokenizer.json");
  if (fp.weights_sha256 != model.weights_sha256) differs.emplace_back("weights");
  if (differs.empty()) return;
  std::string list;
  for (size_t i = 0; i < differs.size(); ++i)
    list += (i == 0 ? "" : i + 1 == differs.size() ? " and " : ", ") + differs[i];
  throw Error(session_file.string(), "made for another model (" + session.provenance.model_dir +
                                         "): its " + list + " do not match the model given");
}

}  // namespace mxlens
