#include "widgets/color_maps.h"

#include <algorithm>
#include <array>
#include <cmath>

namespace mxlens {

QCPColorGradient sequentialGradient() {
  // viridis sampled at 0, 1/8, ..., 1.
  static constexpr std::array<QRgb, 9> kViridis = {0x440154, 0x472D7B, 0x3B528B, 0x2C728E, 0x21918C,
                                                   0x28AE80, 0x5EC962, 0xADDC30, 0xFDE725};
  QCPColorGradient gradient;
  gradient.clearColorStops();
  for (size_t i = 0; i < kViridis.size(); ++i)
    gradient.setColorStopAt(double(i) / double(kViridis.size() - 1), QColor(kViridis[i]));
  gradient.setColorInterpolation(QCPColorGradient::ciRGB);
  gradient.setLevelCount(256);
  gradient.setPeriodic(false);
  return gradient;
}

QCPColorGradient divergingGradient() {
  // ColorBrewer RdBu (reversed so negative is blue), white at the centre.
  static constexpr std::array<QRgb, 9> kBlueWhiteRed = {
      0x2166AC, 0x4393C3, 0x92C5DE, 0xD1E5F0, 0xFFFFFF, 0xFDDBC7, 0xF4A582, 0xD6604D, 0xB2182B};
  QCPColorGradient gradient;
  gradient.clearColorStops();
  for (size_t i = 0; i < kBlueWhiteRed.size(); ++i)
    gradient.setColorStopAt(double(i) / double(kBlueWhiteRed.size() - 1), QColor(kBlueWhiteRed[i]));
  gradient.setColorInterpolation(QCPColorGradient::ciRGB);
  // Odd level count: the middle level sits exactly on 0 and is pure white.
  gradient.setLevelCount(257);
  gradient.setPeriodic(false);
  return gradient;
}

QCPRange symmetricRange(double max_abs) {
  const double m = std::isfinite(max_abs) && max_abs > 0 ? max_abs : 1.0;
  return QCPRange(-m, m);
}

namespace {
constexpr std::array<QRgb, 12> kCategorical = {0x332288, 0x88CCEE, 0x44AA99, 0x117733,
                                               0x999933, 0xDDCC77, 0xCC6677, 0x882255,
                                               0xAA4499, 0xEE8866, 0x77AADD, 0xBBBBBB};
}

int categoricalColorCount() {
  return int(kCategorical.size());
}

QColor categoricalColor(int index) {
  const int n = categoricalColorCount();
  return QColor(kCategorical[size_t(((index % n) + n) % n)]);
}

QCPColorGradient categoricalGradient(int lo, int hi) {
  if (hi < lo) std::swap(lo, hi);
  const int levels = hi - lo + 1;
  QCPColorGradient gradient;
  gradient.clearColorStops();
  gradient.setPeriodic(false);
  if (levels == 1) {
    // QCustomPlot needs two levels; both get the one colour.
    gradient.setColorStopAt(0, categoricalColor(0));
    gradient.setColorStopAt(1, categoricalColor(0));
    gradient.setLevelCount(2);
    return gradient;
  }
  // Level i lies at position i/(levels-1). Each level gets a flat band of its colour (two
  // stops just inside the band's edges), so rounding in QCustomPlot's interpolation cannot
  // blend a neighbour into it.
  const double step = 1.0 / double(levels - 1), half = 0.49 * step;
  for (int i = 0; i < levels; ++i) {
    const double centre = double(i) * step;
    gradient.setColorStopAt(std::max(0.0, centre - half), categoricalColor(i));
    gradient.setColorStopAt(std::min(1.0, centre + half), categoricalColor(i));
  }
  gradient.setLevelCount(std::max(2, levels));
  return gradient;
}

QString powerOfTwoLabel(int exponent) {
  static const char16_t* kDigits[10] = {u"⁰", u"¹", u"²", u"³", u"⁴", u"⁵", u"⁶", u"⁷", u"⁸", u"⁹"};
  QString label = QStringLiteral("2");
  if (exponent < 0) label += QChar(0x207B);  // superscript minus
  const QString digits = QString::number(std::abs(exponent));
  for (QChar d : digits) label += QString::fromUtf16(kDigits[d.digitValue()]);
  return label;
}

}  // namespace mxlens
