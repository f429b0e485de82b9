#pragma once
// Each mxlens-cli subcommand lives in its own file and registers itself on the app.
// A command's callback throws mxlens::Error on bad input; main() prints it and exits 1.
#include <CLI/CLI.hpp>

namespace mxlens::cli {

void register_info(CLI::App& app);
void register_tokenize(CLI::App& app);
void register_eval(CLI::App& app);
void register_quantize(CLI::App& app);
void register_demo(CLI::App& app);
void register_synth(CLI::App& app);
void register_plant(CLI::App& app);
void register_calibrate(CLI::App& app);
void register_compare(CLI::App& app);
void register_export(CLI::App& app);

}  // namespace mxlens::cli
