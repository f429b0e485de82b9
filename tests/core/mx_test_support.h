#pragma once
// Helpers shared by the MXFP4 / NVFP4 tests: hex parsing, bit-level comparison, seeded
// random inputs (own samplers, so streams do not depend on the standard library).
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <span>
#include <string>
#include <vector>

namespace mxlens::test {

// "092b4c..." -> one value per hex digit (FP4 codes, element 0 first).
inline std::vector<uint8_t> hex_digits(const std::string& s) {
  std::vector<uint8_t> out;
  for (char c : s)
    if (std::isxdigit(static_cast<unsigned char>(c)))
      out.push_back(static_cast<uint8_t>(std::stoi(std::string(1, c), nullptr, 16)));
  return out;
}

// "7f 10 a9" or "7f10a9" -> bytes.
inline std::vector<uint8_t> hex_bytes(const std::string& s) {
  const std::vector<uint8_t> d = hex_digits(s);
  std::vector<uint8_t> out;
  for (size_t i = 0; i + 1 < d.size(); i += 2)
    out.push_back(static_cast<uint8_t>(d[i] << 4 | d[i + 1]));
  return out;
}

inline std::string to_hex(std::span<const uint8_t> bytes) {
  static const char* digits = "0123456789abcdef";
  std::string s;
  for (uint8_t b : bytes) {
    s += digits[b >> 4];
    s += digits[b & 0xF];
    s += ' ';
  }
  return s;
}

// Index of the first differing byte, or -1 when equal (sizes differ: the shorter size).
inline long first_byte_mismatch(std::span<const uint8_t> a, std::span<const uint8_t> b) {
  const size_t n = std::min(a.size(), b.size());
  for (size_t i = 0; i < n; ++i)
    if (a[i] != b[i]) return static_cast<long>(i);
  return a.size() == b.size() ? -1 : static_cast<long>(n);
}

// Same for floats compared as bit patterns (so -0 != +0 and NaN payloads count).
inline long first_bit_mismatch(std::span<const float> a, std::span<const float> b) {
  const size_t n = std::min(a.size(), b.size());
  for (size_t i = 0; i < n; ++i)
    if (std::bit_cast<uint32_t>(a[i]) != std::bit_cast<uint32_t>(b[i])) return static_cast<long>(i);
  return a.size() == b.size() ? -1 : static_cast<long>(n);
}

class Rng {
 public:
  explicit Rng(uint64_t seed) : engine_(seed) {}
  uint64_t bits() { return engine_(); }
  double uniform() { return static_cast<double>(engine_() >> 11) * 0x1.0p-53; }
  int integer(int lo, int hi) {
    return lo + static_cast<int>(engine_() % static_cast<uint64_t>(hi - lo + 1));
  }
  double normal() {  // Box-Muller
    const double u1 = 1.0 - uniform(), u2 = uniform();
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
  }
  float sign() { return (engine_() & 1) ? -1.0f : 1.0f; }

 private:
  std::mt19937_64 engine_;
};

}  // namespace mxlens::test
