#include "app/gui/main_window.h"

namespace mxlens::gui {

MainWindow::MainWindow(QWidget* parent) : QMainWindow(parent) {
  setWindowTitle("mxlens");
}

}  // namespace mxlens::gui
