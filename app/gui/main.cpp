// mxlens: the workbench GUI. Everything lives in the mxlens_gui library; this only parses
// the command line and shows the window.
#include <QApplication>
#include <QCommandLineParser>
#include <QIcon>

#include "app/gui/main_window.h"

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
  parser.process(app);

  mxlens::gui::MainWindow window;
  window.show();
  if (!parser.positionalArguments().isEmpty())
    window.openCheckpoint(parser.positionalArguments().first());
  return app.exec();
}
