#pragma once
// Export of a calibrated model (a checkpoint plus one of its sessions) to a format serving
// stacks load (formats.md §4):
//
//   fp_quant  a Hugging Face directory for transformers' FP-Quant integration (§4.1): per
//             quantized linear P the packed E2M1 codes P.qweight, E8M0 bytes P.scales, the
//             site's 32×32 (or 64/128) block rotation in P.forward_hadamard_matrix /
//             P.backward_hadamard_matrix and the global scales; smoothing folded into norms
//             and preceding rows; config.json with quantization_config; tokenizer files copied.
//             W4A4: the runtime rotates and quantizes activations online.
//   gguf      one GGUF v3 file for llama.cpp (§4.3): LLaMA keys, tokenizer keys, the seven
//             linears of every layer as MXFP4 (type 39), the rest F32. Weight-only: llama.cpp
//             quantizes activations to 8 bits itself, and no online rotation exists there.
//
// Everything that cannot be expressed is refused before any byte is written, naming the
// site and the reason (a zigzag permutation, a full-size Hadamard, an online smoothing
// division, a non-E8M0 scale rule, …); what can be written but will behave differently in
// the target runtime (its own activation quantizer, BF16 casts) is listed in
// ExportReport::notes. Writes go through StagedOutput (core/io/staged_output.h): a temporary
// name, renamed when complete; free space is checked first.
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "core/calib/session.h"
#include "core/io/staged_output.h"
#include "core/model/checkpoint.h"
#include "core/util/progress.h"

namespace mxlens {

enum class ExportFormat { fp_quant, gguf };
std::string_view to_string(ExportFormat format);
// "fp_quant" or "gguf"; Error(source, ...) listing them otherwise.
ExportFormat parse_export_format(std::string_view name, std::string_view source = "--format");

struct ExportOptions {
  ExportFormat format = ExportFormat::fp_quant;
  bool force = false;  // replace an existing output
  int threads = 1;
  // fp_quant: above this many bytes of tensors, model-NNNNN-of-NNNNN.safetensors shards with
  // model.safetensors.index.json (Hugging Face's default limit is 5 GB).
  uint64_t max_shard_bytes = uint64_t(5) << 30;
  // Free bytes where the output goes (empty: the file system's, free_bytes_at); the tests set
  // it to see the refusal without filling a disk.
  FreeBytesFn free_bytes;
};

struct ExportedFile {
  std::filesystem::path path;  // final path
  uint64_t bytes = 0;
};

struct ExportReport {
  ExportFormat format = ExportFormat::fp_quant;
  std::filesystem::path out;  // directory (fp_quant) or file (gguf)
  std::string method;         // the session's method name
  std::vector<ExportedFile> files;
  int quantized_linears = 0;
  // What the exported model will do differently from what mxlens measured, and what the format
  // could not hold (each one sentence). Printed by the CLI, shown by the GUI.
  std::vector<std::string> notes;
  uint64_t total_bytes() const;
};

// What an export would write, found without writing: the refusals below are thrown here.
struct ExportPlan {
  uint64_t bytes = 0;              // estimated size of everything written
  std::vector<std::string> notes;  // as ExportReport::notes
};

// Checks, in this order, each an Error naming the file or site:
//   - the session was made for another model (fingerprint; check_session_model);
//   - the method or scheme cannot be expressed in the format (naming the site and why);
//   - the output exists without options.force, is the source, or its parent is missing;
//   - not enough free space for ExportPlan::bytes.
// `session_file` names the session in messages.
ExportPlan plan_export(const Checkpoint& checkpoint, const Session& session,
                       const std::filesystem::path& session_file, const std::filesystem::path& out,
                       const ExportOptions& options);

// Why `session` cannot be exported to `format` at all (method, scheme or a site the format
// cannot hold: plan_export's format checks, without the model fingerprint, the output or the
// disk), as "source: problem"; empty when it can. For choosing a format before a file name.
std::string export_refusal(const Checkpoint& checkpoint, const Session& session,
                           ExportFormat format);

// plan_export, then writes. Progress per tensor; Cancelled leaves no output behind.
ExportReport export_checkpoint(const Checkpoint& checkpoint, const Session& session,
                               const std::filesystem::path& session_file,
                               const std::filesystem::path& out, const ExportOptions& options,
                               const Progress& progress = {});

}  // namespace mxlens
