#include "app/cli/commands.h"
#include "core/util/error.h"

namespace mxlens::cli {

void register_tokenize(CLI::App& app) {
  auto* cmd = app.add_subcommand("tokenize", "(not implemented yet)");
  cmd->callback([] { throw Error("tokenize", "not implemented yet"); });
}

}  // namespace mxlens::cli
