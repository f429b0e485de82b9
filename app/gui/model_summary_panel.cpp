#include "app/gui/model_summary_panel.h"

#include <QFormLayout>
#include <QLabel>
#include <QLocale>
#include <QVBoxLayout>

#include "core/model/checkpoint.h"
#include "core/mx/mxfp4.h"

namespace mxlens::gui {

namespace {

QString yes_no(bool value) {
  return value ? QStringLiteral("yes") : QStringLiteral("no");
}

QString rope_text(const LlamaConfig& c) {
  const RopeScaling& s = c.rope_scaling;
  QString text = QStringLiteral("θ = %1").arg(c.rope_theta);
  if (s.type == "llama3")
    text += QStringLiteral(", llama3 scaling ×%1 (original context %2)")
                .arg(s.factor)
                .arg(s.original_max_position_embeddings);
  else if (s.type == "linear")
    text += QStringLiteral(", linear scaling ×%1").arg(s.factor);
  return text;
}

// MXFP4 blocks of 32 along a reduction dimension; says so when it does not divide.
QString blocks_text(int dim) {
  if (dim % Mxfp4Block::kSize != 0) return QStringLiteral("%1 is not a multiple of 32").arg(dim);
  return QString::number(dim / Mxfp4Block::kSize);
}

}  // namespace

ModelSummaryPanel::ModelSummaryPanel(QWidget* parent) : QWidget(parent) {
  auto* layout = new QVBoxLayout(this);
  heading_ = new QLabel(this);
  heading_->setObjectName("summaryHeading");
  heading_->setTextInteractionFlags(Qt::TextSelectableByMouse);
  QFont font = heading_->font();
  font.setPointSizeF(font.pointSizeF() * 1.4);
  font.setBold(true);
  heading_->setFont(font);
  layout->addWidget(heading_);
  form_host_ = new QWidget(this);
  form_ = new QFormLayout(form_host_);
  form_->setLabelAlignment(Qt::AlignRight);
  layout->addWidget(form_host_);
  layout->addStretch(1);
  clear();
}

void ModelSummaryPanel::clear() {
  while (form_->rowCount() > 0) form_->removeRow(0);
  facts_.clear();
  heading_->setText(tr("No model open"));
  addFact(tr("Open"), tr("File ▸ Open Checkpoint… (Ctrl+O), or drop a checkpoint directory "
                         "on this window"));
}

void ModelSummaryPanel::setCheckpoint(const Checkpoint& checkpoint) {
  while (form_->rowCount() > 0) form_->removeRow(0);
  facts_.clear();
  const LlamaConfig& c = checkpoint.config();
  const QLocale locale;
  heading_->setText(QString::fromStdString(checkpoint.dir().filename().string()));
  addFact(tr("Directory"), QString::fromStdString(checkpoint.dir().string()));
  addFact(tr("Architecture"), QStringLiteral("%1 (%2)").arg(QString::fromStdString(c.architecture),
                                                            QString::fromStdString(c.model_type)));
  addFact(tr("Layers"), QString::number(c.num_layers));
  addFact(tr("Hidden size"), QString::number(c.hidden_size));
  addFact(tr("Intermediate size"), QString::number(c.intermediate_size));
  addFact(tr("Attention heads"), QStringLiteral("%1 query, %2 key/value (head dim %3)")
                                     .arg(c.num_heads)
                                     .arg(c.num_kv_heads)
                                     .arg(c.head_dim));
  addFact(tr("Vocabulary"), QString::number(c.vocab_size));
  addFact(tr("Context length"), QString::number(c.max_position_embeddings));
  addFact(tr("RMSNorm ε"), QString::number(c.rms_norm_eps));
  addFact(tr("RoPE"), rope_text(c));
  addFact(tr("Tied embeddings"), yes_no(c.tie_word_embeddings));
  addFact(tr("Parameters"), locale.toString(static_cast<qulonglong>(checkpoint.parameter_count())));
  addFact(tr("File size"),
          locale.formattedDataSize(static_cast<qint64>(checkpoint.file_size_bytes())));
  addFact(tr("Tensors"), QString::number(checkpoint.tensors().size()));
  addFact(tr("Stored dtype"),
          c.torch_dtype.empty() ? tr("(not stated)") : QString::fromStdString(c.torch_dtype));
  addFact(tr("Tokenizer"), checkpoint.tokenizer_json() ? tr("tokenizer.json") : tr("none"));
  addFact(tr("MX blocks per row"),
          QStringLiteral("hidden %1, intermediate %2")
              .arg(blocks_text(c.hidden_size), blocks_text(c.intermediate_size)));
}

QString ModelSummaryPanel::fact(const QString& name) const {
  for (const auto& [fact_name, label] : facts_)
    if (fact_name == name) return label->text();
  return {};
}

QStringList ModelSummaryPanel::factNames() const {
  QStringList names;
  for (const auto& entry : facts_) names << entry.first;
  return names;
}

void ModelSummaryPanel::addFact(const QString& name, const QString& value) {
  auto* label = new QLabel(value, form_host_);
  label->setTextInteractionFlags(Qt::TextSelectableByMouse);
  label->setWordWrap(true);
  form_->addRow(name + QLatin1Char(':'), label);
  facts_.append({name, label});
}

}  // namespace mxlens::gui
