#pragma once
// A colour chosen on a light background, made readable on the palette's background: on a dark
// one (Base lightness < 128), dark colours are lifted to a lightness of at least 150, hue and
// saturation kept, so the categorical palette's deep entries (indigo, green) do not vanish.
// (A candidate for widgets/color_maps.h; kept here until that file's owner takes it.)
#include <algorithm>

#include <QColor>
#include <QPalette>

namespace mxlens {

inline QColor readableOn(const QPalette& palette, const QColor& color) {
  if (palette.color(QPalette::Active, QPalette::Base).lightness() >= 128) return color;
  int h = 0, s = 0, l = 0, a = 255;
  color.getHsl(&h, &s, &l, &a);
  return QColor::fromHsl(h, s, std::max(l, 150), a);
}

}  // namespace mxlens
