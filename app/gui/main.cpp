// mxlens: the workbench GUI. Everything lives in the mxlens_gui library; this only parses
// the command line and shows the window.
#include <QApplication>
#include <QCommandLineParser>
#include <QIcon>

#include <cstdio>

#include "app/gui/main_window.h"
#include "app/gui/screenshots.h"

int main(int argc, char** argv) {
  QApplication app(argc, argv);
  QApplication::setOrganizationName("mxlens");
  QApplication::setApplicationName("mxlens");
  QApplication::setApplicationVersion(MXLENS_VERSION);
  QApplication::setDesktopFileName("mxlens");  // packaging/mxlens.desktop
  QApplication::setWindowIcon(QIcon::fromTheme("mxlens"));

  QCommandLineParser parser;
  parser.setApplicationDescription("MXFP4 W4A4 quantization workbench for LLaMA-family models");
  parser.addHelpOption();
  parser.addVersionOption();
  parser.addPositionalArgument("checkpoint", "Checkpoint directory to open", "[checkpoint]");
  QCommandLineOption screenshots(
      "screenshots",
      "Open the checkpoint, calibrate, run a short perplexity comparison, save one PNG per view "
      "into <dir> and quit (the README's pictures; run under xvfb-run without a display).",
      "dir");
  parser.addOption(screenshots);
  QCommandLineOption text("text", "With --screenshots: calibration and evaluation text.", "file");
  parser.addOption(text);
  parser.process(app);

  mxlens::gui::MainWindow window;
  if (parser.isSet(screenshots)) {
    if (parser.positionalArguments().isEmpty()) {
      std::fprintf(stderr, "mxlens: --screenshots needs a checkpoint directory\n");
      return 2;
    }
    return mxlens::gui::takeScreenshots(window, parser.positionalArguments().first(),
                                        parser.value(screenshots), parser.value(text));
  }
  window.show();
  if (!parser.positionalArguments().isEmpty())
    window.openCheckpoint(parser.positionalArguments().first());
  return app.exec();
}
