// Peak memory of FP32 evaluation of a BF16 model: a synthetic checkpoint with Llama-3.2-1B
// shapes is opened and one window is evaluated at seqlen 256 and then 2048; printed beside the
// file size and the size an FP32 copy of the weights would take.
//
// What the numbers include (from /proc/self/status): VmHWM is the peak resident set of the
// whole process: heap (our buffers), the binary and libraries, and every page of the mapped
// BF16 shards that has been touched (file-backed, clean: the kernel may drop them under
// pressure). RssAnon / RssFile are sampled at every site tap of every layer and after the
// window (logits chunk and lm_head slices held), so their peaks are the peaks seen at those
// points (the anonymous one is what the forward allocates).
//
//   bench_memory [--dir DIR] [--threads N]   (DIR: reuse/keep the synthetic model there;
//                                            default: written to a temp dir by a child process
//                                            so that writing it does not count)
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>

#include "core/eval/perplexity.h"
#include "core/model/checkpoint.h"
#include "core/model/synthetic_checkpoint.h"

using namespace mxlens;
namespace fs = std::filesystem;

namespace {

// Field of /proc/self/status in bytes ("VmHWM:   123 kB").
int64_t status_bytes(const char* field) {
  std::ifstream f("/proc/self/status");
  std::string line;
  const size_t n = std::strlen(field);
  while (std::getline(f, line))
    if (line.compare(0, n, field) == 0 && line.size() > n && line[n] == ':')
      return std::atoll(line.c_str() + n + 1) * 1024;
  return -1;
}

double gb(int64_t bytes) {
  return double(bytes) / 1e9;
}

// Samples the resident set at every site of every layer.
struct RssSampler : SiteTaps {
  int64_t peak_anon = 0, peak_file = 0, peak_rss = 0;
  void sample() {
    peak_anon = std::max(peak_anon, status_bytes("RssAnon"));
    peak_file = std::max(peak_file, status_bytes("RssFile"));
    peak_rss = std::max(peak_rss, status_bytes("VmRSS"));
  }
  void on_activations(int, Site, Eigen::Ref<RowMatrixXf>) override { sample(); }
};

std::vector<int32_t> pseudo_random_ids(int64_t n, int vocab) {
  std::vector<int32_t> ids(static_cast<size_t>(n));
  uint32_t s = 3;
  for (auto& t : ids) {
    s = s * 1664525u + 1013904223u;
    t = int32_t((s >> 8) % uint32_t(vocab));
  }
  return ids;
}

}  // namespace

int main(int argc, char** argv) {
  fs::path dir;
  int threads = 2;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--dir") && i + 1 < argc) dir = argv[++i];
    if (!std::strcmp(argv[i], "--threads") && i + 1 < argc) threads = std::atoi(argv[++i]);
  }
  const bool temp = dir.empty();
  if (temp) dir = fs::temp_directory_path() / ("mxlens_bench_mem_" + std::to_string(getpid()));
  if (!fs::exists(dir / "config.json")) {
    const pid_t child = fork();
    if (child == 0) {
      try {
        SyntheticOptions so;
        so.preset = "llama-3.2-1b";
        so.dtype = DType::BF16;
        write_synthetic_checkpoint(dir, so);
        _exit(0);
      } catch (const std::exception& e) {
        std::fprintf(stderr, "bench_memory: %s\n", e.what());
        _exit(1);
      }
    }
    int status = 0;
    waitpid(child, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) return 1;
  }
  int rc = 0;
  try {
    const int64_t base_hwm = status_bytes("VmHWM");
    const Checkpoint ckpt = Checkpoint::open(dir);
    const LlamaWeights weights(ckpt);
    const uint64_t file_bytes = ckpt.file_size_bytes();
    const uint64_t fp32_bytes = ckpt.parameter_count() * 4;
    std::printf(
        "synthetic llama-3.2-1b BF16: %llu parameters, files %.3f GB, an FP32 copy would "
        "be %.3f GB\n",
        static_cast<unsigned long long>(ckpt.parameter_count()), gb(int64_t(file_bytes)),
        gb(int64_t(fp32_bytes)));
    std::printf("per-layer FP32 conversion buffer: %.3f GB; threads %d\n",
                gb(weights.layer_conversion_floats() * 4), threads);
    std::printf("VmHWM before opening: %.3f GB (binary, libraries)\n\n", gb(base_hwm));
    std::printf("%7s %12s %14s %14s %12s %14s\n", "seqlen", "VmHWM GB", "peak RssAnon",
                "peak RssFile", "HWM/file", "HWM/FP32 copy");
    const auto ids = pseudo_random_ids(2048, ckpt.config().vocab_size);
    for (int L : {256, 2048}) {
      RssSampler sampler;
      PerplexityOptions opt;
      opt.seqlen = L;
      opt.max_windows = 1;
      opt.forward.threads = threads;
      Progress progress;
      // Sampled also after the window, when the logits chunk and lm_head slices are held.
      evaluate_perplexity(
          weights, ids, opt, progress, [&](const WindowResult&) { sampler.sample(); }, &sampler);
      const int64_t hwm = status_bytes("VmHWM");
      std::printf("%7d %12.3f %11.3f GB %11.3f GB %12.2f %14.2f\n", L, gb(hwm),
                  gb(sampler.peak_anon), gb(sampler.peak_file), double(hwm) / double(file_bytes),
                  double(hwm) / double(fp32_bytes));
      std::fflush(stdout);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_memory: %s\n", e.what());
    rc = 1;
  }
  if (temp) fs::remove_all(dir);
  return rc;
}
