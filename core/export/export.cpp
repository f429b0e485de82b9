#include "core/export/export.h"

#include <algorithm>

#include "core/export/export_weights.h"
#include "core/export/fp_quant_export.h"
#include "core/export/gguf_export.h"
#include "core/io/model_fingerprint.h"
#include "core/io/session_file.h"
#include "core/io/staged_output.h"
#include "core/util/error.h"

namespace fs = std::filesystem;

namespace mxlens {

std::string_view to_string(ExportFormat format) {
  switch (format) {
    case ExportFormat::fp_quant:
      return "fp_quant";
    case ExportFormat::gguf:
      return "gguf";
  }
  return "?";
}

ExportFormat parse_export_format(std::string_view name, std::string_view source) {
  if (name == "fp_quant" || name == "fp-quant") return ExportFormat::fp_quant;
  if (name == "gguf") return ExportFormat::gguf;
  throw Error(std::string(source),
              "unknown export format '" + std::string(name) + "' (known: fp_quant, gguf)");
}

uint64_t ExportReport::total_bytes() const {
  uint64_t sum = 0;
  for (const ExportedFile& f : files) sum += f.bytes;
  return sum;
}

namespace {

OutputKind output_kind(ExportFormat format) {
  return format == ExportFormat::gguf ? OutputKind::file : OutputKind::directory;
}

ExportPlan plan_format(const Checkpoint& ckpt, const Session& session, const QuantPlan& plan,
                       const ExportOptions& options) {
  switch (options.format) {
    case ExportFormat::fp_quant:
      return plan_fp_quant_export(ckpt, session, plan, options);
    case ExportFormat::gguf:
      return plan_gguf_export(ckpt, session, plan);
  }
  throw Error("export", "unknown format");
}

// The format's own checks: method, scheme, every site (plan_format throws the refusals).
ExportPlan check_format(const Checkpoint& ckpt, const Session& session,
                        const fs::path& session_file, const ExportOptions& options) {
  if (!method_quantizes(session.settings.method))
    throw Error(session_file.string(),
                "the session's method is fp, which quantizes nothing; "
                "export a session of a quantizing method");
  check_exportable_scheme(session.settings.scheme, to_string(options.format));
  const QuantPlan plan = make_plan(session, ckpt.config());
  return plan_format(ckpt, session, plan, options);
}

}  // namespace

std::string export_refusal(const Checkpoint& ckpt, const Session& session, ExportFormat format) {
  ExportOptions options;
  options.format = format;
  try {
    (void)check_format(ckpt, session, "session", options);
  } catch (const Error& e) {
    return e.what();
  }
  return {};
}

ExportPlan plan_export(const Checkpoint& ckpt, const Session& session, const fs::path& session_file,
                       const fs::path& out, const ExportOptions& options) {
  check_session_model(session, model_fingerprint(ckpt), session_file);
  ExportPlan result = check_format(ckpt, session, session_file, options);
  check_output_target(out, output_kind(options.format), options.force, ckpt.dir());
  check_free_space(out, result.bytes, options.free_bytes);
  return result;
}

ExportReport export_checkpoint(const Checkpoint& ckpt, const Session& session,
                               const fs::path& session_file, const fs::path& out,
                               const ExportOptions& options, const Progress& progress) {
  const ExportPlan export_plan = plan_export(ckpt, session, session_file, out, options);
  const QuantPlan plan = make_plan(session, ckpt.config());
  const LlamaWeights weights(ckpt);

  ExportReport report;
  report.format = options.format;
  report.out = out;
  report.method = std::string(method_name(session.settings.method));
  report.notes = export_plan.notes;

  StagedOutput staged(out, output_kind(options.format), "export");
  switch (options.format) {
    case ExportFormat::fp_quant:
      write_fp_quant_export(ckpt, weights, session, plan, staged.path(), options, progress, report);
      break;
    case ExportFormat::gguf:
      write_gguf_export(ckpt, weights, session, plan, staged.path(), options, progress, report);
      break;
  }
  progress.check_cancel();
  staged.commit();

  if (options.format == ExportFormat::gguf) {
    report.files.push_back({out, fs::file_size(out)});
  } else {
    for (const auto& entry : fs::directory_iterator(out))
      if (entry.is_regular_file()) report.files.push_back({entry.path(), entry.file_size()});
    std::sort(report.files.begin(), report.files.end(),
              [](const ExportedFile& a, const ExportedFile& b) { return a.path < b.path; });
  }
  // Notes may repeat between planning and writing; keep each once, in order.
  std::vector<std::string> unique;
  for (const std::string& n : report.notes)
    if (std::find(unique.begin(), unique.end(), n) == unique.end()) unique.push_back(n);
  report.notes = std::move(unique);
  progress.report(1.0, "done");
  return report;
}

}  // namespace mxlens
