#include "widgets/perplexity_view.h"

#include <qcustomplot.h>
#include <QApplication>
#include <QClipboard>
#include <QComboBox>
#include <QFormLayout>
#include <QGroupBox>
#include <QHBoxLayout>
#include <QHeaderView>
#include <QKeyEvent>
#include <QListWidget>
#include <QPushButton>
#include <QSpinBox>
#include <QSplitter>
#include <QStandardItemModel>
#include <QTableWidget>
#include <QVBoxLayout>
#include <algorithm>
#include <cmath>
#include <iterator>
#include <span>

#include "widgets/color_maps.h"
#include "widgets/plot_panel.h"
#include "widgets/readable_color.h"

namespace mxlens {

namespace {

constexpr ScaleRule kScaleRules[] = {ScaleRule::ocp_floor, ScaleRule::fpquant, ScaleRule::rceil,
                                     ScaleRule::dqv2_log8};
constexpr int kMaxSeqlen = 1 << 20;

QString qstr(std::string_view s) {
  return QString::fromUtf8(s.data(), qsizetype(s.size()));
}

int methodIndex(Method m) {
  return int(std::find(std::begin(kAllMethods), std::end(kAllMethods), m) -
             std::begin(kAllMethods));
}

// A fixed colour per method (the same in every run), the strong ones for the methods people
// compare most; the palette's pale entries are left out since they vanish on white.
QColor methodColor(Method m) {
  static const int kIndex[] = {-1, 0, 4, 2, 5, 8, 9, 6, 7, 3};
  static_assert(std::size(kIndex) == std::size(kAllMethods));
  return categoricalColor(kIndex[methodIndex(m)]);
}

// Column order of the table; the CSV header uses machine-friendly names for the same columns.
enum Column { kMethod, kPpl, kDeltaPpl, kKl, kTop1, kTokensPerS, kColumns };
const char* const kCsvHeader[kColumns] = {"method",       "ppl",      "delta_ppl_vs_fp",
                                          "kl_mean_nats", "top1_pct", "tokens_per_s"};
QSharedPointer<QCPAxisTicker> integerTicker() {
  auto ticker = QSharedPointer<QCPAxisTickerFixed>::create();
  ticker->setTickStep(1.0);
  ticker->setScaleStrategy(QCPAxisTickerFixed::ssMultiples);
  return ticker;
}

const QString kMissing = QStringLiteral("—");

QString csvField(const QString& text) {
  if (text == kMissing) return {};
  if (!text.contains(QLatin1Char(',')) && !text.contains(QLatin1Char('"')) &&
      !text.contains(QLatin1Char('\n')))
    return text;
  QString quoted = text;
  quoted.replace(QLatin1String("\""), QLatin1String("\"\""));
  return QLatin1Char('"') + quoted + QLatin1Char('"');
}

// Ticks for a logarithmic perplexity axis: 1-2-5 per decade when the range spans decades (a
// plain log ticker labels only powers of ten, leaving an FP line at 20 without a label), the
// ordinary linear ticks when it is narrower than one.
class PerplexityTicker : public QCPAxisTicker {
 public:
  void generate(const QCPRange& range, const QLocale& locale, QChar formatChar, int precision,
                QVector<double>& ticks, QVector<double>* subTicks,
                QVector<QString>* tickLabels) override {
    const double decades = range.lower > 0 ? std::log10(range.upper / range.lower) : 0;
    if (decades < 1.0) {
      QCPAxisTicker::generate(range, locale, formatChar, precision, ticks, subTicks, tickLabels);
      return;
    }
    static const double k125[] = {1, 2, 5}, k13[] = {1, 3}, k1[] = {1};
    const std::span<const double> mantissas = decades <= 2.5 ? std::span<const double>(k125)
                                              : decades <= 5 ? std::span<const double>(k13)
                                                             : std::span<const double>(k1);
    ticks.clear();
    for (int e = int(std::floor(std::log10(range.lower)));
         e <= int(std::ceil(std::log10(range.upper))); ++e)
      for (double m : mantissas) {
        const double t = m * std::pow(10.0, e);
        if (t >= range.lower && t <= range.upper) ticks.push_back(t);
      }
    if (subTicks) subTicks->clear();
    if (tickLabels) *tickLabels = createLabelVector(ticks, locale, formatChar, precision);
  }
};

}  // namespace

PerplexityView::PerplexityView(QWidget* parent)
    : QWidget(parent),
      methods_(new QListWidget(this)),
      scale_rule_(new QComboBox(this)),
      backend_(new QComboBox(this)),
      windows_(new QSpinBox(this)),
      seqlen_(new QSpinBox(this)),
      run_(new QPushButton(tr("Run"), this)),
      cancel_(new QPushButton(tr("Cancel"), this)),
      chart_panel_(new PlotPanel(this)),
      table_(new QTableWidget(0, kColumns, this)),
      copy_(new QPushButton(tr("Copy as CSV"), this)) {
  methods_->setObjectName(QStringLiteral("perplexityMethods"));
  for (Method m : kAllMethods) {
    auto* item = new QListWidgetItem(qstr(method_name(m)), methods_);
    item->setData(Qt::UserRole, methodIndex(m));
    item->setToolTip(qstr(method_description(m)));
    item->setFlags(Qt::ItemIsUserCheckable | Qt::ItemIsEnabled);
    const bool on =
        m == Method::fp || m == Method::rtn || m == Method::hadamard || m == Method::duquantpp;
    item->setCheckState(on ? Qt::Checked : Qt::Unchecked);
    if (m == Method::fp) {
      // FP is the reference every other method is compared with: always run.
      item->setFlags(Qt::ItemIsUserCheckable);
      item->setToolTip(item->toolTip() + tr(" — the reference, always run"));
    }
  }
  methods_->setSizeAdjustPolicy(QAbstractScrollArea::AdjustToContents);

  scale_rule_->setObjectName(QStringLiteral("perplexityScaleRule"));
  for (ScaleRule r : kScaleRules) scale_rule_->addItem(qstr(to_string(r)), int(r));
  scale_rule_->setToolTip(tr("How an MXFP4 block's scale is chosen from its absolute maximum"));
  backend_->setObjectName(QStringLiteral("perplexityBackend"));
  backend_->addItem(tr("CPU"), int(EvalBackend::cpu));
  backend_->addItem(tr("CUDA"), int(EvalBackend::cuda));
  setCudaAvailability(false, tr("no CUDA device has been looked for yet"));

  windows_->setObjectName(QStringLiteral("perplexityWindows"));
  windows_->setRange(0, 1000000);
  windows_->setSpecialValueText(tr("all"));
  windows_->setValue(0);
  windows_->setToolTip(tr("Evaluate only the first N windows (all: every usable window)"));
  seqlen_->setObjectName(QStringLiteral("perplexitySeqlen"));
  seqlen_->setRange(2, kMaxSeqlen);
  seqlen_->setValue(2048);
  seqlen_->setSuffix(tr(" tokens"));
  seqlen_->setToolTip(tr("Tokens per evaluation window"));
  run_->setObjectName(QStringLiteral("perplexityRun"));
  cancel_->setObjectName(QStringLiteral("perplexityCancel"));
  cancel_->setEnabled(false);

  auto* form = new QFormLayout;
  form->addRow(tr("Scale rule"), scale_rule_);
  form->addRow(tr("Backend"), backend_);
  form->addRow(tr("Windows"), windows_);
  form->addRow(tr("Sequence length"), seqlen_);
  auto* buttons = new QHBoxLayout;
  buttons->addWidget(run_);
  buttons->addWidget(cancel_);
  auto* settings = new QGroupBox(tr("Compare against FP"), this);
  auto* settings_layout = new QVBoxLayout(settings);
  settings_layout->addWidget(methods_, 1);
  settings_layout->addLayout(form);
  settings_layout->addLayout(buttons);

  QCustomPlot* plot = chart_panel_->plot();
  chart_panel_->setExportName(QStringLiteral("perplexity"));
  plot->xAxis->setLabel(tr("windows evaluated"));
  plot->yAxis->setLabel(tr("running perplexity"));
  // Quantized perplexities can be orders of magnitude above FP's: a log axis keeps them all
  // readable.
  plot->yAxis->setScaleType(QCPAxis::stLogarithmic);
  plot->yAxis->setTicker(QSharedPointer<QCPAxisTicker>(new PerplexityTicker));
  plot->yAxis->setNumberFormat(QStringLiteral("g"));
  plot->xAxis->setTicker(integerTicker());
  // The legend sits right of the axes, where no line can run under it.
  plot->legend->setVisible(true);
  auto* side = new QCPLayoutGrid;
  plot->plotLayout()->addElement(0, 1, side);
  plot->axisRect()->insetLayout()->take(plot->legend);
  side->addElement(0, 0, plot->legend);
  side->addElement(1, 0, new QCPLayoutElement(plot));
  side->setRowStretchFactor(0, 0.001);
  plot->plotLayout()->setColumnStretchFactor(1, 0.001);
  chart_panel_->setResetHandler([this] {
    follow_data_ = true;
    resetChartView();
  });
  // A zoom or pan by the user stops the chart from following new windows until a reset.
  connect(plot, &QCustomPlot::mouseWheel, this, [this] { follow_data_ = false; });
  connect(plot, &QCustomPlot::mouseMove, this, [this](QMouseEvent* e) {
    if (e->buttons() & Qt::LeftButton) follow_data_ = false;
  });
  connect(chart_panel_, &PlotPanel::paletteApplied, this, &PerplexityView::recolour);

  table_->setObjectName(QStringLiteral("perplexityTable"));
  table_->setHorizontalHeaderLabels(
      {tr("method"), tr("PPL"), tr("ΔPPL vs FP"), tr("KL (nats)"), tr("top-1 %"), tr("tokens/s")});
  table_->verticalHeader()->setVisible(false);
  table_->setEditTriggers(QAbstractItemView::NoEditTriggers);
  table_->setSelectionBehavior(QAbstractItemView::SelectRows);
  table_->horizontalHeader()->setSectionResizeMode(QHeaderView::Stretch);
  table_->horizontalHeader()->setMinimumSectionSize(70);
  table_->installEventFilter(this);
  copy_->setObjectName(QStringLiteral("perplexityCopyCsv"));
  copy_->setToolTip(tr("Copy the table as CSV (Ctrl+C in the table)"));
  auto* table_box = new QWidget(this);
  auto* table_layout = new QVBoxLayout(table_box);
  table_layout->setContentsMargins(0, 0, 0, 0);
  table_layout->addWidget(table_, 1);
  auto* copy_row = new QHBoxLayout;
  copy_row->addStretch(1);
  copy_row->addWidget(copy_);
  table_layout->addLayout(copy_row);

  auto* results = new QSplitter(Qt::Vertical, this);
  results->addWidget(chart_panel_);
  results->addWidget(table_box);
  results->setStretchFactor(0, 3);
  results->setStretchFactor(1, 1);
  auto* layout = new QHBoxLayout(this);
  layout->addWidget(settings);
  layout->addWidget(results, 1);

  connect(run_, &QPushButton::clicked, this, [this] { emit runRequested(request()); });
  connect(cancel_, &QPushButton::clicked, this, &PerplexityView::cancelRequested);
  connect(copy_, &QPushButton::clicked, this, &PerplexityView::copyCsv);
  resetResults();
}

PerplexityRequest PerplexityView::request() const {
  PerplexityRequest r;
  r.methods.clear();
  for (int i = 0; i < methods_->count(); ++i) {
    const QListWidgetItem* item = methods_->item(i);
    const Method m = kAllMethods[item->data(Qt::UserRole).toInt()];
    if (m == Method::fp || item->checkState() == Qt::Checked) r.methods.push_back(m);
  }
  r.scale_rule = ScaleRule(scale_rule_->currentData().toInt());
  r.backend = EvalBackend(backend_->currentData().toInt());
  r.max_windows = windows_->value();
  r.seqlen = seqlen_->value();
  return r;
}

void PerplexityView::setRequest(const PerplexityRequest& request) {
  for (int i = 0; i < methods_->count(); ++i) {
    QListWidgetItem* item = methods_->item(i);
    const Method m = kAllMethods[item->data(Qt::UserRole).toInt()];
    const bool on = m == Method::fp || std::find(request.methods.begin(), request.methods.end(),
                                                 m) != request.methods.end();
    item->setCheckState(on ? Qt::Checked : Qt::Unchecked);
  }
  scale_rule_->setCurrentIndex(std::max(0, scale_rule_->findData(int(request.scale_rule))));
  const int backend = backend_->findData(int(request.backend));
  const auto* model = qobject_cast<const QStandardItemModel*>(backend_->model());
  const bool usable = backend >= 0 && model->item(backend)->isEnabled();
  backend_->setCurrentIndex(usable ? backend : 0);
  windows_->setValue(int(std::clamp<int64_t>(request.max_windows, 0, windows_->maximum())));
  seqlen_->setValue(request.seqlen);
}

void PerplexityView::setCudaAvailability(bool available, const QString& reason) {
  auto* model = qobject_cast<QStandardItemModel*>(backend_->model());
  QStandardItem* cuda = model->item(backend_->findData(int(EvalBackend::cuda)));
  cuda->setEnabled(available);
  cuda->setToolTip(reason);
  cuda->setText(available ? tr("CUDA") : tr("CUDA (unavailable)"));
  if (!available && backend_->currentData().toInt() == int(EvalBackend::cuda))
    backend_->setCurrentIndex(backend_->findData(int(EvalBackend::cpu)));
}

void PerplexityView::setMaxSeqlen(int max_seqlen) {
  seqlen_->setMaximum(std::max(2, max_seqlen));
}

void PerplexityView::setRunning(bool running) {
  running_ = running;
  run_->setEnabled(!running);
  cancel_->setEnabled(running);
  for (QWidget* w :
       std::initializer_list<QWidget*>{methods_, scale_rule_, backend_, windows_, seqlen_})
    w->setEnabled(!running);
}

QCPGraph* PerplexityView::graphFor(Method method) {
  auto it = graphs_.find(method);
  if (it != graphs_.end()) return it->second;
  QCPGraph* graph = chart_panel_->plot()->addGraph();
  graph->setName(qstr(method_name(method)));
  graph->setScatterStyle(QCPScatterStyle(QCPScatterStyle::ssCircle, 4));
  graphs_.emplace(method, graph);
  chart_order_.push_back(method);
  recolour();
  return graph;
}

void PerplexityView::recolour() {
  const QColor text = plotTextColor(palette());
  for (const auto& [method, graph] : graphs_) {
    // FP in the text colour, dashed: the line every other is measured against.
    if (method == Method::fp)
      graph->setPen(QPen(text, 1.5, Qt::DashLine));
    else
      graph->setPen(QPen(readableOn(palette(), methodColor(method)), 1.8));
    graph->setScatterStyle(
        QCPScatterStyle(QCPScatterStyle::ssCircle, graph->pen().color(), graph->pen().color(), 4));
  }
  applyPlotPalette(chart_panel_->plot(), palette());
  chart_panel_->replotQueued();
}

void PerplexityView::addWindow(Method method, const WindowResult& window) {
  QCPGraph* graph = graphFor(method);
  graph->addData(double(window.window + 1), window.running_ppl);
  chart_windows_ = std::max({chart_windows_, window.windows, window.window + 1});
  if (follow_data_) resetChartView();
  chart_panel_->plot()->replot(QCustomPlot::rpQueuedReplot);
}

void PerplexityView::resetChartView() {
  QCustomPlot* plot = chart_panel_->plot();
  plot->xAxis->setRange(0.5, double(std::max<int64_t>(chart_windows_, 1)) + 0.5);
  double lo = INFINITY, hi = -INFINITY;
  for (const auto& [method, graph] : graphs_) {
    bool found = false;
    const QCPRange r = graph->getValueRange(found, QCP::sdBoth);
    if (found) {
      lo = std::min(lo, r.lower);
      hi = std::max(hi, r.upper);
    }
  }
  if (lo > 0 && std::isfinite(hi))
    plot->yAxis->setRange(lo / 1.15, hi * 1.15);
  else
    plot->yAxis->setRange(1, 100);
}

int PerplexityView::rowFor(Method method) {
  auto it = std::find(table_order_.begin(), table_order_.end(), method);
  if (it != table_order_.end()) return int(it - table_order_.begin());
  table_order_.push_back(method);
  const int row = table_->rowCount();
  table_->insertRow(row);
  for (int c = 0; c < kColumns; ++c) {
    auto* item = new QTableWidgetItem;
    item->setTextAlignment(c == kMethod ? Qt::AlignLeft | Qt::AlignVCenter
                                        : Qt::AlignRight | Qt::AlignVCenter);
    table_->setItem(row, c, item);
  }
  return row;
}

void PerplexityView::setMethodResult(const MethodResult& result) {
  const int row = rowFor(result.method);
  const PerplexityResult& e = result.eval;
  auto set = [&](int column, const QString& text, const QString& tip = {}) {
    table_->item(row, column)->setText(text);
    table_->item(row, column)->setToolTip(tip);
  };
  set(kMethod, qstr(method_name(result.method)), qstr(method_description(result.method)));
  set(kPpl, QString::number(e.ppl, 'f', 3),
      tr("%1 windows of %2 tokens; ±1 standard error: %3 – %4")
          .arg(e.windows)
          .arg(e.seqlen)
          .arg(QString::number(e.ppl_low, 'f', 3), QString::number(e.ppl_high, 'f', 3)));
  if (result.method == Method::fp)
    set(kDeltaPpl, kMissing, tr("FP is the reference"));
  else
    set(kDeltaPpl, QString::asprintf("%+.3f", result.delta_ppl));
  if (e.kl) {
    const KlSummary& kl = *e.kl;
    set(kKl, QString::number(kl.mean, 'g', 4),
        tr("KL(FP ‖ %1) per token over %2 tokens: median %3, p99 %4, max %5")
            .arg(qstr(method_name(result.method)))
            .arg(kl.tokens)
            .arg(QString::number(kl.median, 'g', 4), QString::number(kl.p99, 'g', 4),
                 QString::number(kl.max, 'g', 4)));
    set(kTop1, QString::number(kl.top1_agreement * 100.0, 'f', 2),
        tr("tokens whose most likely next token agrees with FP's"));
  } else {
    set(kKl, kMissing);
    set(kTop1, kMissing);
  }
  set(kTokensPerS, QString::number(e.tokens_per_s, 'f', 0));
}

void PerplexityView::resetResults() {
  QCustomPlot* plot = chart_panel_->plot();
  plot->clearGraphs();
  graphs_.clear();
  chart_order_.clear();
  chart_windows_ = 0;
  follow_data_ = true;
  table_->setRowCount(0);
  table_order_.clear();
  resetChartView();
  chart_panel_->replotQueued();
}

QString PerplexityView::csv() const {
  QStringList lines;
  QStringList header;
  for (const char* name : kCsvHeader) header << QLatin1String(name);
  lines << header.join(QLatin1Char(','));
  for (int r = 0; r < table_->rowCount(); ++r) {
    QStringList fields;
    for (int c = 0; c < kColumns; ++c) fields << csvField(tableCell(r, c));
    lines << fields.join(QLatin1Char(','));
  }
  return lines.join(QLatin1Char('\n')) + QLatin1Char('\n');
}

void PerplexityView::copyCsv() const {
  QGuiApplication::clipboard()->setText(csv());
}

bool PerplexityView::eventFilter(QObject* watched, QEvent* event) {
  if (watched == table_ &&
      (event->type() == QEvent::KeyPress || event->type() == QEvent::ShortcutOverride)) {
    auto* key = static_cast<QKeyEvent*>(event);
    if (key->matches(QKeySequence::Copy)) {
      // Accepting the override keeps an application-wide Copy action from taking the key.
      if (event->type() == QEvent::KeyPress) copyCsv();
      event->accept();
      return true;
    }
  }
  return QWidget::eventFilter(watched, event);
}

QStringList PerplexityView::chartMethods() const {
  QStringList names;
  for (Method m : chart_order_) names << qstr(method_name(m));
  return names;
}

int PerplexityView::graphPointCount(Method method) const {
  auto it = graphs_.find(method);
  return it == graphs_.end() ? 0 : it->second->dataCount();
}

QVector<QPointF> PerplexityView::graphPoints(Method method) const {
  QVector<QPointF> points;
  auto it = graphs_.find(method);
  if (it == graphs_.end()) return points;
  for (auto d = it->second->data()->constBegin(); d != it->second->data()->constEnd(); ++d)
    points.push_back(QPointF(d->key, d->value));
  return points;
}

int PerplexityView::tableRowCount() const {
  return table_->rowCount();
}

int PerplexityView::tableColumnCount() const {
  return table_->columnCount();
}

QString PerplexityView::tableCell(int row, int column) const {
  const QTableWidgetItem* item = table_->item(row, column);
  return item ? item->text() : QString();
}

QString PerplexityView::tableHeader(int column) const {
  const QTableWidgetItem* item = table_->horizontalHeaderItem(column);
  return item ? item->text() : QString();
}

}  // namespace mxlens
