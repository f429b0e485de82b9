// mxlens-cli: the engine's work, headless. Every subcommand prints --help; any error
// names the file and the problem and exits non-zero.
#include <cstdio>
#include <exception>

#include "app/cli/commands.h"
#include "core/util/error.h"

int main(int argc, char** argv) {
  CLI::App app{"mxlens-cli: MXFP4 W4A4 quantization workbench for LLaMA-family models (headless)"};
  app.set_version_flag("--version", std::string("mxlens ") + MXLENS_VERSION);
  app.require_subcommand(1);
  mxlens::cli::register_info(app);
  mxlens::cli::register_tokenize(app);
  mxlens::cli::register_eval(app);
  mxlens::cli::register_quantize(app);
  mxlens::cli::register_demo(app);
  mxlens::cli::register_synth(app);
  mxlens::cli::register_plant(app);
  mxlens::cli::register_calibrate(app);
  mxlens::cli::register_compare(app);
  mxlens::cli::register_export(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const mxlens::Error& e) {
    std::fprintf(stderr, "mxlens-cli: error: %s\n", e.what());
    return 1;
  } catch (const mxlens::Cancelled&) {
    std::fprintf(stderr, "mxlens-cli: cancelled\n");
    return 130;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "mxlens-cli: internal error: %s\n", e.what());
    return 2;
  }
  return 0;
}
