// GPTQ cost (algorithm.md §6) on LLaMA-like weight shapes, beside RTN and the Hessian
// accumulation of one 2048-token window, measured side by side in one run. Random
// correlated inputs; prints the output-error ratio GPTQ / RTN as a sanity figure.
//
//   bench_gptq [--max-in N]   (largest input dimension tried, default 4096)
// GCC 12 reports a false -Wmaybe-uninitialized inside its AVX-512 intrinsics when Eigen is inlined.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>

#include "core/quant/gptq.h"
#include "core/quant/quant_scheme.h"

using namespace mxlens;

namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

RowMatrixXf gauss(int r, int c, std::mt19937& rng, float sigma) {
  std::normal_distribution<float> n(0.0f, sigma);
  RowMatrixXf m(r, c);
  for (Eigen::Index i = 0; i < m.size(); ++i) m.data()[i] = n(rng);
  return m;
}

}  // namespace

int main(int argc, char** argv) {
  int max_in = 4096;
  if (argc == 3 && std::strcmp(argv[1], "--max-in") == 0) max_in = std::atoi(argv[2]);
  std::printf("%-12s %10s %10s %10s %10s %12s\n", "out x in", "H (s)", "RTN (s)", "GPTQ (s)",
              "GPTQ/RTN", "err ratio");
  for (int in = 512; in <= max_in; in *= 2) {
    const int out = in, tokens = 2048;
    std::mt19937 rng{static_cast<uint32_t>(in)};
    RowMatrixXf x =
        gauss(tokens, in, rng, 1.0f) *
        (gauss(in, in, rng, 1.0f / std::sqrt(float(in))) + RowMatrixXf::Identity(in, in));
    const RowMatrixXf w = gauss(out, in, rng, 0.02f);
    const TensorQuant mx{QuantFormat::mxfp4, {}, 1.0f};
    fake_quantize_rows(x, mx, TensorRole::activations);
    auto t0 = std::chrono::steady_clock::now();
    HessianAccumulator acc(in);
    acc.add_window(x);
    const double t_h = seconds_since(t0);
    t0 = std::chrono::steady_clock::now();
    RowMatrixXf q_rtn = w;
    fake_quantize_rows(q_rtn, mx, TensorRole::weights);
    const double t_rtn = seconds_since(t0);
    t0 = std::chrono::steady_clock::now();
    const GptqResult g = gptq_quantize(w, acc.hessian(), mx);
    const double t_gptq = seconds_since(t0);
    const double e_g = double((x * (w - g.q).transpose()).norm());
    const double e_r = double((x * (w - q_rtn).transpose()).norm());
    std::printf("%5d x %-5d %10.3f %10.4f %10.3f %9.0fx %12.4f\n", out, in, t_h, t_rtn, t_gptq,
                t_gptq / t_rtn, e_g / e_r);
  }
  return 0;
}
