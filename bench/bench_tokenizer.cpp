// Tokenizer throughput: encode all of wiki.test.raw (1.29 MB) with each real tokenizer,
// single thread, and print seconds, MB/s, tokens/s and each tokenizer's time relative to
// llama3 measured in the same run. Usage: bench_tokenizer [DATA_DIR] [REPEATS]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "core/text/regex_pcre2.h"
#include "core/text/tokenizer.h"
#include "core/text/utf8.h"
#include "core/util/error.h"

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

struct Result {
  std::string name;
  double load_s = 0;
  double encode_s = 0;  // best of the repeats
  std::size_t tokens = 0;
};

}  // namespace

int main(int argc, char** argv) {
  const std::filesystem::path data = argc > 1 ? argv[1] : MXLENS_DATA_DEFAULT;
  const int repeats = argc > 2 ? std::max(1, std::atoi(argv[2])) : 3;
  try {
    const std::filesystem::path wiki = data / "wikitext-2-raw" / "wiki.test.raw";
    const std::string text = mxlens::read_text_file(wiki);
    const double mb = static_cast<double>(text.size()) / 1e6;
    std::printf("text: %s (%.2f MB), best of %d encodes, single thread, PCRE2 JIT %s\n",
                wiki.string().c_str(), mb, repeats,
                mxlens::Pcre2Regex::jit_available() ? "available" : "NOT available");
    const std::vector<std::pair<std::string, std::filesystem::path>> tokenizers = {
        {"llama3", data / "tokenizers" / "llama3" / "tokenizer.json"},
        {"spm-bpe-32k", data / "tokenizers" / "spm-bpe-32k" / "tokenizer.json"},
        {"tinystories-656k", data / "tinystories-656k" / "tokenizer.json"},
    };
    std::vector<Result> results;
    for (const auto& [name, path] : tokenizers) {
      Result r{name};
      auto t0 = Clock::now();
      const mxlens::Tokenizer tok = mxlens::Tokenizer::load(path);
      r.load_s = seconds_since(t0);
      r.encode_s = 1e30;
      for (int k = 0; k < repeats; ++k) {
        t0 = Clock::now();
        const auto ids = tok.encode(text, false);
        r.encode_s = std::min(r.encode_s, seconds_since(t0));
        r.tokens = ids.size();
      }
      results.push_back(r);
    }
    const double ref = results.front().encode_s;
    std::printf("%-18s %8s %9s %8s %12s %10s %14s\n", "tokenizer", "load_s", "encode_s", "MB/s",
                "tokens/s", "tokens", "time/llama3");
    for (const auto& r : results)
      std::printf("%-18s %8.3f %9.3f %8.2f %12.0f %10zu %14.2f\n", r.name.c_str(), r.load_s,
                  r.encode_s, mb / r.encode_s, static_cast<double>(r.tokens) / r.encode_s, r.tokens,
                  r.encode_s / ref);
  } catch (const mxlens::Error& e) {
    std::fprintf(stderr, "bench_tokenizer: %s\n", e.what());
    return 1;
  }
  return 0;
}
