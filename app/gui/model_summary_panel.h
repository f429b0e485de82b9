#pragma once
// The central "what did I open" panel: config facts of the loaded checkpoint as a form.
// It is told what to show (setCheckpoint / clear) and never opens anything itself.
#include <QString>
#include <QWidget>

class QFormLayout;
class QLabel;

namespace mxlens {
class Checkpoint;
}

namespace mxlens::gui {

class ModelSummaryPanel : public QWidget {
  Q_OBJECT
 public:
  explicit ModelSummaryPanel(QWidget* parent = nullptr);

  void setCheckpoint(const Checkpoint& checkpoint);
  void clear();

  // The text shown for a fact ("Hidden size", "Layers", ...); empty when absent. For tests
  // and for copying, so nobody has to dig labels out of the layout.
  QString fact(const QString& name) const;
  QStringList factNames() const;

 private:
  void addFact(const QString& name, const QString& value);

  QLabel* heading_;
  QWidget* form_host_;
  QFormLayout* form_;
  QList<QPair<QString, QLabel*>> facts_;
};

}  // namespace mxlens::gui
