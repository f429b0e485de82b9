#pragma once
// GGUF (llama.cpp) writer for export.h's ExportFormat::gguf (formats.md §4.3). Internal to
// core/export: export_checkpoint() checks the session against the model, the output target
// and free space, and commits the file; these two functions do the format's part.
#include <filesystem>

#include "core/calib/session.h"
#include "core/export/export.h"
#include "core/model/checkpoint.h"
#include "core/model/llama_model.h"
#include "core/quant/quant_plan.h"

namespace mxlens {

// Refuses (Error naming the site and why) what a weight-only GGUF cannot hold exactly: any
// site with a rotation (no online rotation exists in llama.cpp and none of mxlens's rotations
// folds exactly into neighbouring weights together with the session's quantized weights), an
// online smoothing division (o_proj under GQA), a non-E8M0 weight rule or fpquant's 4/3
// factor, sites whose width is not a multiple of 32, a checkpoint without tokenizer.json
// (llama.cpp needs the vocabulary). Returns the exact file size and the notes.
ExportPlan plan_gguf_export(const Checkpoint& checkpoint, const Session& session,
                            const QuantPlan& plan);

// Writes the whole GGUF file to `file` (a temporary path; the caller renames it). Appends
// the notes to report.notes and sets report.quantized_linears.
void write_gguf_export(const Checkpoint& checkpoint, const LlamaWeights& weights,
                       const Session& session, const QuantPlan& plan,
                       const std::filesystem::path& file, const ExportOptions& options,
                       const Progress& progress, ExportReport& report);

}  // namespace mxlens
