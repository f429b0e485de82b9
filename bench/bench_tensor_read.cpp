// Per-tensor conversion to FP32 on use (core/io/float_convert.h): BF16 shift and F16
// (F16C when present) against a plain FP32 copy and the scalar F16 reference, measured
// side by side in one run on the same buffer size. Prints throughput and ratios.
//   bench_tensor_read [n_elements]   (default 64 Mi elements)
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <vector>

#include "core/io/float_convert.h"

using namespace mxlens;

namespace {

constexpr int kRepeats = 5;

// Best of kRepeats, in seconds.
double best_seconds(const std::function<void()>& fn) {
  double best = 1e30;
  for (int r = 0; r < kRepeats; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    fn();
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    best = std::min(best, s);
  }
  return best;
}

}  // namespace

int main(int argc, char** argv) {
  const size_t n = argc > 1 ? std::strtoull(argv[1], nullptr, 10) : (size_t(64) << 20);
  std::vector<float> source(n);
  uint32_t state = 12345;
  for (float& v : source) {
    state = state * 1664525u + 1013904223u;
    v = (static_cast<float>(state >> 8) / 16777216.0f - 0.5f) * 0.1f;
  }
  std::vector<std::byte> f32(n * 4), bf16(n * 2), f16(n * 2);
  std::memcpy(f32.data(), source.data(), f32.size());
  for (size_t i = 0; i < n; ++i) {
    const uint16_t b = f32_to_bf16(source[i]), h = f32_to_f16(source[i]);
    std::memcpy(bf16.data() + 2 * i, &b, 2);
    std::memcpy(f16.data() + 2 * i, &h, 2);
  }
  std::vector<float> dst(n);
  volatile float sink = 0;

  const double t_f32 = best_seconds([&] { convert_to_f32(DType::F32, f32, dst, "f32"); });
  sink = sink + dst[n / 2];
  const double t_bf16 = best_seconds([&] { convert_to_f32(DType::BF16, bf16, dst, "bf16"); });
  sink = sink + dst[n / 3];
  const double t_f16 = best_seconds([&] { convert_to_f32(DType::F16, f16, dst, "f16"); });
  sink = sink + dst[n / 4];
  const double t_f16_ref = best_seconds([&] {
    for (size_t i = 0; i < n; ++i) {
      uint16_t h;
      std::memcpy(&h, f16.data() + 2 * i, 2);
      dst[i] = f16_to_f32_ref(h);
    }
  });
  sink = sink + dst[n / 5];

  const double gelem = double(n) / 1e9;
  std::printf("elements: %zu (best of %d runs each)\n", n, kRepeats);
  std::printf("%-28s %8.3f ms  %6.2f Gelem/s  ratio to F32 copy %.2f\n", "F32 copy", t_f32 * 1e3,
              gelem / t_f32, 1.0);
  std::printf("%-28s %8.3f ms  %6.2f Gelem/s  ratio to F32 copy %.2f\n", "BF16 -> F32",
              t_bf16 * 1e3, gelem / t_bf16, t_bf16 / t_f32);
  std::printf("%-28s %8.3f ms  %6.2f Gelem/s  ratio to F32 copy %.2f\n", "F16 -> F32 (dispatch)",
              t_f16 * 1e3, gelem / t_f16, t_f16 / t_f32);
  std::printf("%-28s %8.3f ms  %6.2f Gelem/s  ratio to F32 copy %.2f\n", "F16 -> F32 (scalar ref)",
              t_f16_ref * 1e3, gelem / t_f16_ref, t_f16_ref / t_f32);
  std::printf("F16 dispatch speed-up over scalar ref: %.2fx\n", t_f16_ref / t_f16);
  return sink == 12345.0f ? 1 : 0;
}
