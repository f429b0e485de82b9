#pragma once
// Colour maps shared by the views (gui.md "Views"): one perceptual sequential map for
// magnitudes, one diverging map for signed matrices, one categorical palette for integers.
#include <qcustomplot.h>
#include <QColor>
#include <QVector>

namespace mxlens {

// Viridis-like (9 control points from matplotlib's viridis), perceptually uniform and
// readable in grey: for |x| heatmaps, usually with a logarithmic colour scale.
QCPColorGradient sequentialGradient();

// Blue-white-red, white exactly at the middle of the range: pair it with
// symmetricRange(max |v|) so that 0 is white.
QCPColorGradient divergingGradient();
QCPRange symmetricRange(double max_abs);

// Qualitative palette (12 colours, Paul Tol's "muted" + extras), index taken modulo its size.
QColor categoricalColor(int index);
int categoricalColorCount();

// Gradient for integer data lo..hi (lo ≤ hi): one level per integer, level i coloured
// categoricalColor(i - lo), so a colour map whose data range is exactly [lo, hi] paints each
// integer in its own colour with no blending.
QCPColorGradient categoricalGradient(int lo, int hi);

// "2⁻³", "2⁰", "2¹²": a power of two with a Unicode superscript exponent.
QString powerOfTwoLabel(int exponent);

}  // namespace mxlens
