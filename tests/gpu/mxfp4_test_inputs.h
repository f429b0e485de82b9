#pragma once
// Deterministic MXFP4 inputs and exact comparisons shared by the gpu tests: the kernel-rule
// test (host, no device) and the parity test (device).
#include <QtTest>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <span>
#include <vector>

#include "core/mx/mxfp4.h"

namespace mxlens::test {

constexpr int64_t kMaxMismatchesPrinted = 5;

// stored_bytes: blocks of arbitrary bytes rather than quantized floats (dequantize only).
enum class Input {
  gaussian,
  powers_of_two,
  ties,
  subnormals,
  zeros,
  outliers,
  non_finite,
  stored_bytes
};

inline const char* name_of(Input input) {
  switch (input) {
    case Input::gaussian:
      return "gaussian";
    case Input::powers_of_two:
      return "powers_of_two";
    case Input::ties:
      return "ties";
    case Input::subnormals:
      return "subnormals";
    case Input::zeros:
      return "zeros";
    case Input::outliers:
      return "outliers";
    case Input::non_finite:
      return "inf_nan";
    case Input::stored_bytes:
      return "stored_bytes";
  }
  return "?";
}

// Deterministic inputs; each block gets its own exponent so scales cover a wide range.
inline std::vector<float> make_input(Input input, int64_t rows, int64_t cols, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_int_distribution<int> exponent(-30, 30);
  std::vector<float> x(static_cast<size_t>(rows * cols));
  const size_t n_blocks = x.size() / Mxfp4Block::kSize;
  for (size_t b = 0; b < n_blocks; ++b) {
    float* block = x.data() + b * Mxfp4Block::kSize;
    const int e = exponent(rng);
    for (int i = 0; i < Mxfp4Block::kSize; ++i) {
      float& v = block[i];
      switch (input) {
        case Input::gaussian:
          v = std::ldexp(normal(rng), e);
          break;
        case Input::powers_of_two: {
          // ±2^k and its float neighbours: where floor/ceil(log2) and the 4..8 range turn.
          const float p = std::ldexp(1.0f, std::uniform_int_distribution<int>(-130, 126)(rng));
          const int which = static_cast<int>(rng() % 3);
          v = which == 0 ? p : std::nextafter(p, which == 1 ? 0.0f : INFINITY);
          if (rng() & 1) v = -v;
          break;
        }
        case Input::ties:
          // Multiples of 1/4 up to 7, times 2^e: every E2M1 midpoint (0.25, 0.75, ... 5) and
          // values past 6 occur exactly, in both signs.
          v = std::ldexp(static_cast<float>(static_cast<int>(rng() % 57) - 28) * 0.25f, e);
          break;
        case Input::subnormals:
          v = std::ldexp(normal(rng), -130 - static_cast<int>(rng() % 18));
          break;
        case Input::zeros:
          v = (i % 2) ? -0.0f : 0.0f;
          break;
        case Input::outliers:
          // V3-style: small values and one huge element per block, plus extreme magnitudes.
          v = std::ldexp(normal(rng), e - 6);
          if (i == static_cast<int>(b % Mxfp4Block::kSize))
            v = (b % 7 == 0) ? std::numeric_limits<float>::max() : std::ldexp(41.3f, e);
          break;
        case Input::non_finite:
          v = normal(rng);
          if (b % 3 == 1 && i == 5) v = std::numeric_limits<float>::quiet_NaN();
          if (b % 3 == 2 && i == 30) v = (b % 2) ? INFINITY : -INFINITY;
          break;
        case Input::stored_bytes:
          v = 0.0f;  // not a float input; see make_stored_blocks
          break;
      }
    }
  }
  return x;
}

// Every scale byte and every code, for dequantization of arbitrary stored data (code 8 = -0,
// E8M0 0 = 2^-127, 254 = 2^127, 255 = NaN).
inline std::vector<Mxfp4Block> make_stored_blocks(int64_t n_blocks, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<Mxfp4Block> blocks(static_cast<size_t>(n_blocks));
  for (size_t b = 0; b < blocks.size(); ++b) {
    blocks[b].e = static_cast<uint8_t>(b < 256 ? b : rng() & 0xFF);
    for (uint8_t& q : blocks[b].qs) q = static_cast<uint8_t>(rng() & 0xFF);
  }
  return blocks;
}

// Counts differing bytes and names the first few, so a failure says where and what.
inline int64_t count_byte_mismatches(std::span<const uint8_t> got, std::span<const uint8_t> want,
                                     const char* what) {
  if (got.size() != want.size()) {
    qWarning("%s: size %zu, expected %zu", what, got.size(), want.size());
    return std::max<int64_t>(1, static_cast<int64_t>(got.size() + want.size()));
  }
  int64_t mismatches = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    if (got[i] == want[i]) continue;
    if (mismatches++ < kMaxMismatchesPrinted)
      qWarning("%s: byte %zu is 0x%02x, reference 0x%02x", what, i, got[i], want[i]);
  }
  return mismatches;
}

// Compares float bit patterns (so NaN payloads and the sign of zero count too).
inline int64_t count_float_mismatches(std::span<const float> got, std::span<const float> want,
                                      const char* what) {
  if (got.size() != want.size()) {
    qWarning("%s: size %zu, expected %zu", what, got.size(), want.size());
    return std::max<int64_t>(1, static_cast<int64_t>(got.size() + want.size()));
  }
  int64_t mismatches = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    if (std::memcmp(&got[i], &want[i], sizeof(float)) == 0) continue;
    if (mismatches++ < kMaxMismatchesPrinted)
      qWarning("%s: element %zu (block %zu) is %.9g, reference %.9g", what, i,
               i / Mxfp4Block::kSize, got[i], want[i]);
  }
  return mismatches;
}

}  // namespace mxlens::test
