#include "app/cli/commands.h"
#include "core/util/error.h"

namespace mxlens::cli {

void register_info(CLI::App& app) {
  auto* cmd = app.add_subcommand("info", "(not implemented yet)");
  cmd->callback([] { throw Error("info", "not implemented yet"); });
}

}  // namespace mxlens::cli
