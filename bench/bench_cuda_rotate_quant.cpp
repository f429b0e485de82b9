// Fused 32×32 block rotation + MXFP4 activation fake quantization on the device (the CUDA
// forward's site kernel, mxlens/gpu/cuda.h device::rotate_quantize_rows) against the device's
// own copy bandwidth, measured side by side in one run:
//   copy    cudaMemcpyAsync device to device of the same bytes (read + write)
//   kernel  in place: reads and writes every float once
// GB/s counts bytes read + bytes written; "of copy" is the kernel's GB/s over the copy's (the
// issue's goal for rotate + quantize: at least 0.7). Best of --repeats runs; the input is
// restored from a pristine copy before each run, outside the timed region.
//
//   bench_cuda_rotate_quant [--repeats N] [--device D]
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "core/mx/quant_options.h"
#include "mxlens/gpu/cuda.h"

using namespace mxlens;

namespace {

void check(cudaError_t status, const char* what) {
  if (status != cudaSuccess) {
    std::fprintf(stderr, "bench_cuda_rotate_quant: %s: %s\n", what, cudaGetErrorString(status));
    std::exit(1);
  }
}

struct DeviceBuffer {
  float* p = nullptr;
  explicit DeviceBuffer(size_t floats) {
    check(cudaMalloc(reinterpret_cast<void**>(&p), floats * sizeof(float)), "cudaMalloc");
  }
  ~DeviceBuffer() { cudaFree(p); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
};

// Best time in seconds of `run` (enqueued on `stream`), `prepare` enqueued before each run
// outside the timed events.
template <class Prepare, class Run>
double best_seconds(cudaStream_t stream, int repeats, Prepare prepare, Run run) {
  cudaEvent_t start, stop;
  check(cudaEventCreate(&start), "cudaEventCreate");
  check(cudaEventCreate(&stop), "cudaEventCreate");
  double best = 1e30;
  for (int r = 0; r < repeats + 1; ++r) {  // the first run warms up
    prepare();
    check(cudaEventRecord(start, stream), "cudaEventRecord");
    run();
    check(cudaEventRecord(stop, stream), "cudaEventRecord");
    check(cudaEventSynchronize(stop), "cudaEventSynchronize");
    float ms = 0;
    check(cudaEventElapsedTime(&ms, start, stop), "cudaEventElapsedTime");
    if (r > 0) best = std::min(best, double(ms) / 1e3);
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  return best;
}

// A Hadamard-like orthogonal 32×32 (Sylvester, normalized), row-major.
std::vector<float> hadamard32() {
  std::vector<float> r(32 * 32);
  for (int i = 0; i < 32; ++i)
    for (int j = 0; j < 32; ++j)
      r[size_t(i) * 32 + j] =
          (__builtin_popcount(unsigned(i & j)) % 2 ? -1.0f : 1.0f) / std::sqrt(32.0f);
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  int repeats = 10, device = 0;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--repeats") && i + 1 < argc) repeats = std::atoi(argv[++i]);
    if (!std::strcmp(argv[i], "--device") && i + 1 < argc) device = std::atoi(argv[++i]);
  }
  if (gpu::cuda_device_count() == 0) {
    std::printf("bench_cuda_rotate_quant: %s; nothing to measure\n",
                gpu::cuda_unavailable_reason().c_str());
    return 0;
  }
  try {
    std::printf("%s\n", gpu::cuda_status().c_str());
    check(cudaSetDevice(device), "cudaSetDevice");
    cudaStream_t stream;
    check(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), "cudaStreamCreate");
    const std::vector<float> r_host = hadamard32();
    DeviceBuffer r_dev(r_host.size());
    check(cudaMemcpy(r_dev.p, r_host.data(), r_host.size() * sizeof(float), cudaMemcpyHostToDevice),
          "cudaMemcpy");
    const QuantOptions quant{};  // ocp_floor, rne

    std::printf("\n%-28s %10s %10s %10s %9s %12s\n", "shape (tokens x channels)", "variant",
                "copy GB/s", "GB/s", "of copy", "Gelem/s");
    struct Shape {
      int64_t rows, cols;
      const char* what;
    };
    for (const Shape& s : {Shape{2048, 4096, "8B qkv/gu site"}, Shape{2048, 14336, "8B down site"},
                           Shape{8192, 4096, "8192 tokens x 4096"}}) {
      const size_t n = size_t(s.rows * s.cols);
      const double bytes = 2.0 * double(n) * sizeof(float);  // read + write
      std::vector<float> host(n);
      std::mt19937 rng(1);
      std::normal_distribution<float> g(0, 1);
      for (size_t i = 0; i < n; ++i) host[i] = g(rng) * (i % 131 == 0 ? 30.0f : 1.0f);
      DeviceBuffer pristine(n), x(n), copy(n);
      check(cudaMemcpy(pristine.p, host.data(), n * sizeof(float), cudaMemcpyHostToDevice),
            "cudaMemcpy");
      const double copy_s = best_seconds(
          stream, repeats, [] {},
          [&] {
            check(cudaMemcpyAsync(copy.p, pristine.p, n * sizeof(float), cudaMemcpyDeviceToDevice,
                                  stream),
                  "cudaMemcpyAsync");
          });
      const double copy_gbs = bytes / copy_s / 1e9;
      struct Variant {
        const char* name;
        const float* rotation;
        const QuantOptions* quant;
      };
      for (const Variant& v :
           {Variant{"quantize", nullptr, &quant}, Variant{"rotate", r_dev.p, nullptr},
            Variant{"rot+quant", r_dev.p, &quant}}) {
        const double t = best_seconds(
            stream, repeats,
            [&] {
              check(cudaMemcpyAsync(x.p, pristine.p, n * sizeof(float), cudaMemcpyDeviceToDevice,
                                    stream),
                    "cudaMemcpyAsync");
            },
            [&] {
              gpu::device::rotate_quantize_rows(x.p, s.rows, s.cols, v.rotation, v.quant, stream);
            });
        const double gbs = bytes / t / 1e9;
        char shape[64];
        std::snprintf(shape, sizeof shape, "%lld x %lld (%s)", static_cast<long long>(s.rows),
                      static_cast<long long>(s.cols), s.what);
        std::printf("%-28s %10s %10.1f %10.1f %9.2f %12.2f\n", shape, v.name, copy_gbs, gbs,
                    gbs / copy_gbs, double(n) / t / 1e9);
      }
    }
    check(cudaStreamDestroy(stream), "cudaStreamDestroy");
    std::printf(
        "\nGB/s = (bytes read + bytes written) / best time; 'of copy' = kernel GB/s / device-to-"
        "device copy GB/s of the same bytes, measured in this run (goal for rot+quant: >= "
        "0.7).\n");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_cuda_rotate_quant: %s\n", e.what());
    return 1;
  }
  return 0;
}
