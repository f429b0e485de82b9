#include "app/cli/commands.h"
#include "core/util/error.h"

namespace mxlens::cli {

void register_eval(CLI::App& app) {
  auto* cmd = app.add_subcommand("eval", "(not implemented yet)");
  cmd->callback([] { throw Error("eval", "not implemented yet"); });
}

}  // namespace mxlens::cli
