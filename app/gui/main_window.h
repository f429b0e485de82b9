#pragma once
#include <QMainWindow>

namespace mxlens::gui {

class MainWindow : public QMainWindow {
  Q_OBJECT
 public:
  explicit MainWindow(QWidget* parent = nullptr);
};

}  // namespace mxlens::gui
