#include "app/cli/commands.h"
#include "core/util/error.h"

namespace mxlens::cli {

void register_demo(CLI::App& app) {
  auto* cmd = app.add_subcommand("demo", "(not implemented yet)");
  cmd->callback([] { throw Error("demo", "not implemented yet"); });
}

}  // namespace mxlens::cli
