#pragma once
// FP-Quant (transformers "fp_quant") writer for export.h's ExportFormat::fp_quant
// (formats.md §4.1). Internal to core/export, like gguf_export.h.
#include <filesystem>

#include "core/calib/session.h"
#include "core/export/export.h"
#include "core/model/checkpoint.h"
#include "core/model/llama_model.h"
#include "core/quant/quant_plan.h"

namespace mxlens {

ExportPlan plan_fp_quant_export(const Checkpoint& checkpoint, const Session& session,
                                const QuantPlan& plan, const ExportOptions& options);

// Writes the directory's files into `dir` (a temporary directory; the caller renames it).
void write_fp_quant_export(const Checkpoint& checkpoint, const LlamaWeights& weights,
                           const Session& session, const QuantPlan& plan,
                           const std::filesystem::path& dir, const ExportOptions& options,
                           const Progress& progress, ExportReport& report);

}  // namespace mxlens
