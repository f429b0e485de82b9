#include "app/cli/commands.h"
#include "core/util/error.h"

namespace mxlens::cli {

void register_quantize(CLI::App& app) {
  auto* cmd = app.add_subcommand("quantize", "(not implemented yet)");
  cmd->callback([] { throw Error("quantize", "not implemented yet"); });
}

}  // namespace mxlens::cli
