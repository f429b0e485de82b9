// mxlens-cli quantize: raw float32 in, packed MXFP4 / NVFP4 blocks out.
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "app/cli/commands.h"
#include "core/mx/format_table.h"
#include "core/mx/quantized_bytes.h"
#include "core/util/error.h"

namespace mxlens::cli {

namespace {

constexpr const char* kFooter =
    R"(Input: raw little-endian float32 values, the tensor flattened row-major; the count must
be a multiple of the block size (32 for mxfp4, 16 for nvfp4). Blocks run over consecutive
values, so rows whose length is a multiple of the block size never share a block.

Output (little endian), E2M1 code = bit 3 sign, bits 2..0 index into {0,0.5,1,1.5,2,3,4,6}:
  mxfp4 --layout ggml   n/32 blocks of 17 bytes: [scale byte][16 bytes: byte j = code(j) |
                        code(j+16)<<4]. Same bytes as GGUF tensor data of type 39 (MXFP4).
  mxfp4 --layout pairs  n/2 bytes (byte j = code(2j) | code(2j+1)<<4), then n/32 scale bytes.
  scale byte: ocp_floor, rceil: E8M0, scale = 2^(e-127).
              fpquant: E8M0 byte k+127; elements were divided by 2^k*4/3, so dequantize as
              code value * 2^(e-127) * 4/3 (the 4/3 is not stored).
              dqv2_log8: not E8M0. The file starts with a 16-byte header: float64 lo, float64
              hi; byte q means scale = 2^(lo + (hi-lo)*q/255) (2^lo when hi == lo).
  nvfp4: a 4-byte float32 header g (per-tensor scale), then
         --layout ggml   n/16 blocks of 9 bytes: [E4M3 scale][8 bytes: byte j = code(j) |
                         code(j+8)<<4] (not ggml's 36-byte block_nvfp4),
         --layout pairs  n/2 code bytes as above, then n/16 E4M3 scale bytes;
         element = code value * E4M3(scale) * g. --scale-rule does not apply to nvfp4.
A block holding Inf/NaN gets the NaN scale byte (E8M0 0xFF / E4M3 0x7F) and zero codes;
dqv2_log8 refuses such input. The file is written to <out>.tmp and renamed when complete.)";

std::vector<float> read_f32(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec))
    throw Error(path, "cannot read: not a regular file or does not exist");
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) throw Error(path, std::string("cannot open: ") + std::strerror(errno));
  const std::streamoff size = in.tellg();
  if (size < 0) throw Error(path, "cannot determine the file size");
  if (size == 0) throw Error(path, "file is empty");
  if (size % 4 != 0)
    throw Error(path, "size " + std::to_string(size) + " bytes is not a multiple of 4 (float32)");
  std::vector<float> values(static_cast<size_t>(size) / 4);
  in.seekg(0);
  if (!in.read(reinterpret_cast<char*>(values.data()), size))
    throw Error(path, "read failed after " + std::to_string(in.gcount()) + " bytes");
  return values;  // little-endian host: quantized_bytes.cpp asserts it
}

void write_file(const std::string& path, const std::vector<uint8_t>& bytes) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) throw Error(path, std::string("cannot create: ") + std::strerror(errno));
    out.write(reinterpret_cast<const char*>(bytes.data()),
              static_cast<std::streamsize>(bytes.size()));
    out.close();
    if (!out) {
      std::filesystem::remove(tmp);
      throw Error(path, "write failed");
    }
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) {
    std::filesystem::remove(tmp);
    throw Error(path, "cannot rename the finished file into place: " + ec.message());
  }
}

struct QuantizeArgs {
  std::string in, out, format = "mxfp4", scale_rule = "ocp_floor", rounding = "rne",
                       layout = "ggml";
  const CLI::Option* scale_rule_option = nullptr;
};

void run_quantize(const QuantizeArgs& a) {
  const QuantFormat& format = find_quant_format(a.format, "--format");
  QuantOptions options;
  options.rounding = parse_rounding(a.rounding, "--rounding");
  options.scale_rule = parse_scale_rule(a.scale_rule, "--scale-rule");
  if (format.name != "mxfp4" && a.scale_rule_option->count() > 0)
    throw Error("--scale-rule", "applies to mxfp4 only; " + std::string(format.name) +
                                    " has its own scale rule (E4M3 block + FP32 tensor scale)");
  const BlockLayout layout = parse_block_layout(a.layout, "--layout");
  const std::vector<float> x = read_f32(a.in);
  const QuantizedTensor q = quantize_tensor(x, format, options, a.in);
  const std::vector<uint8_t> bytes = quantized_bytes(q, layout);
  write_file(a.out, bytes);

  // Round-trip error over the finite values, so a run says how lossy it was.
  const std::vector<float> xq = dequantize_tensor(q);
  double err2 = 0, sig2 = 0;
  size_t nonfinite = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    if (!std::isfinite(x[i]) || !std::isfinite(xq[i])) {
      ++nonfinite;
      continue;
    }
    err2 += (double(x[i]) - xq[i]) * (double(x[i]) - xq[i]);
    sig2 += double(x[i]) * x[i];
  }
  std::printf(
      "quantized %zu values (%zu blocks of %d, %s, scale rule %s, rounding %s)\n", x.size(),
      x.size() / static_cast<size_t>(format.block_size), format.block_size,
      std::string(format.name).c_str(),
      format.name == "mxfp4" ? std::string(to_string(options.scale_rule)).c_str() : "e4m3+fp32",
      std::string(to_string(options.rounding)).c_str());
  std::printf("wrote %zu bytes to %s (layout %s)\n", bytes.size(), a.out.c_str(),
              std::string(to_string(layout)).c_str());
  if (sig2 > 0)
    std::printf("relative RMS error %.6g, SQNR %.2f dB\n", std::sqrt(err2 / sig2),
                err2 > 0 ? 10.0 * std::log10(sig2 / err2) : INFINITY);
  if (nonfinite > 0) std::printf("%zu values in blocks holding Inf/NaN\n", nonfinite);
}

}  // namespace

void register_quantize(CLI::App& app) {
  auto args = std::make_shared<QuantizeArgs>();
  auto* cmd = app.add_subcommand(
      "quantize", "Quantize raw float32 values to packed MXFP4 or NVFP4 blocks (RTN)");
  cmd->add_option("--in", args->in, "raw little-endian float32 input file")->required();
  cmd->add_option("--out", args->out, "output file of packed blocks")->required();
  cmd->add_option("--format", args->format, "mxfp4 or nvfp4")->capture_default_str();
  args->scale_rule_option =
      cmd->add_option("--scale-rule", args->scale_rule,
                      "mxfp4 block scale: ocp_floor, fpquant, rceil or dqv2_log8")
          ->capture_default_str();
  cmd->add_option("--rounding", args->rounding,
                  "E2M1 ties: rne (to even) or ggml (to the smaller magnitude)")
      ->capture_default_str();
  cmd->add_option("--layout", args->layout,
                  "ggml (17-byte blocks) or pairs (codes, then scales); see below")
      ->capture_default_str();
  cmd->footer(kFooter);
  cmd->callback([args] { run_quantize(*args); });
}

}  // namespace mxlens::cli
