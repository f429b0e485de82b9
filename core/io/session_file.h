#pragma once
// The HDF5 session file (formats.md §5): save and load a Session.
//
// Layout (format_version 1), sites named qkv_in, o_in, gateup_in, down_in, layers L000...:
//   /                        attrs format="mxlens-session", format_version, created_utc,
//                            mxlens_version, git_commit, host
//   /provenance              attrs model_dir, model_config_sha256, tokenizer_sha256,
//                            weights_sha256, backend; datasets config_json, settings_json
//   /calibration             attrs text_path, text_sha256, text_tokens, region_begin/end,
//                            timings; dataset window_offsets i64 [N]
//   /layers/LNNN/{site}/     smooth_scales f32 [C] (attrs fold, alpha), transform/ (steps:
//                            rotation f32 [b,b], permutation i32 [C], full Hadamard attrs),
//                            rotation f32 [1,32,32] when the transform is one block rotation,
//                            search/ (per trace: step, channel, objective, max/min positions,
//                            q_prime; attrs n_steps_requested, n_steps_kept), statistics
//                            (absmax_channel, absmax_channel_rot, mean_channel, rms_channel,
//                            e8m0_hist_before/after, signal/noise, sampled rows and e8m0 bytes)
//   /layers/LNNN/weights/{proj}/weight f32 [out, in]   GPTQ results (gzip)
//   /results/eval_NNN/       attrs kind, dataset, seq_len, n_windows, method, ...;
//                            nll_window f64 [n]
// Matrices are stored row-major exactly as used (x_blk · R), attribute apply =
// "row_vector_times_R"; floats are stored bit-exactly, so a loaded session gives the same
// plan and the same results.
//
// Saving writes `<file>.tmp-<pid>` next to the target, flushes and closes it, fsyncs, then
// renames it over the target: a crash or kill mid-save leaves the previous file intact. All
// HDF5 calls of one save or load happen on the calling thread (the library is serial).
#include <filesystem>
#include <functional>
#include <string_view>

#include "core/calib/session.h"

namespace mxlens {

struct SessionSaveOptions {
  // Called between parts of the save (e.g. "layer 3"); tests use it to be killed mid-save.
  std::function<void(std::string_view part)> on_part;
};

// Throws Error(file, ...) on any HDF5 or file-system failure; the target is then untouched.
void save_session(const Session& session, const std::filesystem::path& file,
                  const SessionSaveOptions& options = {});

// Throws Error(file, ...) for a file that is not an mxlens session, an unknown
// format_version (naming it and the versions this build reads), or missing/malformed parts.
Session load_session(const std::filesystem::path& file);

// Throws Error(session_file, "made for another model ...") naming what differs (config,
// tokenizer or weights) and the session's model directory.
void check_session_model(const Session& session, const ModelFingerprint& model,
                         const std::filesystem::path& session_file);

}  // namespace mxlens
