// Placeholder until the GGUF writer lands: every GGUF export is refused with a clear message.
#include "core/export/gguf_export.h"

#include "core/util/error.h"

namespace mxlens {

ExportPlan plan_gguf_export(const Checkpoint&, const Session&, const QuantPlan&) {
  throw Error("gguf", "GGUF export is not available in this build yet; use --format fp_quant");
}

void write_gguf_export(const Checkpoint&, const LlamaWeights&, const Session&, const QuantPlan&,
                       const std::filesystem::path&, const ExportOptions&, const Progress&,
                       ExportReport&) {
  throw Error("gguf", "GGUF export is not available in this build yet; use --format fp_quant");
}

}  // namespace mxlens
