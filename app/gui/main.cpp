#include <QApplication>

#include "app/gui/main_window.h"

int main(int argc, char** argv) {
  QApplication app(argc, argv);
  mxlens::gui::MainWindow window;
  window.show();
  return app.exec();
}
