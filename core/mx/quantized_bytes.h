#pragma once
// A quantized tensor as bytes: what `mxlens-cli quantize` writes. Layouts (all little endian):
//
// MXFP4, n values, n/32 blocks:
//   ggml   n/32 records of 17 bytes: scale byte, then byte 1+j = code(j) | code(j+16) << 4
//          (j = 0..15). Identical to GGUF tensor data of type 39 (ggml block_mxfp4).
//   pairs  n/2 bytes, byte j = code(2j) | code(2j+1) << 4, then the n/32 scale bytes.
//   Scale byte: E8M0 (scale 2^(e-127)) for ocp_floor and rceil; for fpquant the E8M0 byte
//   k+127 while elements were divided by 2^k * 4/3 (the 4/3 is not stored: multiply by it on
//   dequant); for dqv2_log8 the byte is the log8 code q and the bytes start with a 16-byte
//   header of two float64, lo and hi: scale = 2^(lo + (hi - lo) q / 255) (2^lo if hi == lo).
// NVFP4, n values, n/16 blocks: a 4-byte float32 header g (per-tensor scale), then
//   ggml   n/16 records of 9 bytes: E4M3 scale byte, then byte 1+j = code(j) | code(j+8) << 4
//          (j = 0..7). This mirrors the MXFP4 record; it is not ggml's 36-byte block_nvfp4.
//   pairs  n/2 bytes as for MXFP4, then the n/16 E4M3 bytes.
//   Element = E2M1(code) * E4M3(scale byte) * g.
// E2M1 code: bit 3 sign, bits 2..0 index into {0, 0.5, 1, 1.5, 2, 3, 4, 6}.
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "core/mx/format_table.h"
#include "core/mx/quant_options.h"

namespace mxlens {

enum class BlockLayout : uint8_t { ggml, pairs };
std::string_view to_string(BlockLayout layout);
BlockLayout parse_block_layout(std::string_view name, std::string_view source = "--layout");

struct QuantizedTensor {
  const QuantFormat* format = nullptr;
  QuantOptions options;
  TensorScale scale;
  size_t n_elements = 0;
  std::vector<uint8_t> records;  // concatenated block records (ggml-style, packing.h)
};

// Quantizes with the format's fast path when the CPU has it (identical bits to the reference).
// Throws Error(source, ...) for a length that is not a whole number of blocks.
QuantizedTensor quantize_tensor(std::span<const float> x, const QuantFormat& format,
                                const QuantOptions& options, std::string_view source);
std::vector<float> dequantize_tensor(const QuantizedTensor& q);

// The file bytes described above.
std::vector<uint8_t> quantized_bytes(const QuantizedTensor& q, BlockLayout layout);

}  // namespace mxlens
