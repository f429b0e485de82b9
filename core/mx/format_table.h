#pragma once
// One table of the 4-bit block formats, each with its reference and fast functions, so tests
// and tools iterate formats instead of naming them (like ggml's type traits). Blocks are
// passed as raw bytes: concatenated block records (scale byte + split-packed codes; see
// packing.h), i.e. Mxfp4Block / Nvfp4Block arrays.
#include <cstdint>
#include <span>
#include <string_view>

#include "core/mx/quant_options.h"

namespace mxlens {

struct QuantFormat {
  using QuantizeFn = TensorScale (*)(std::span<const float> x, std::span<uint8_t> records,
                                     const QuantOptions& options);
  using DequantizeFn = void (*)(std::span<const uint8_t> records, const TensorScale& scale,
                                std::span<float> out);
  using FakeQuantizeFn = void (*)(std::span<float> x, const QuantOptions& options);

  std::string_view name;                   // "mxfp4", "nvfp4"
  int block_size;                          // elements per block
  int record_bytes;                        // bytes per block record: 1 + block_size/2
  std::span<const ScaleRule> scale_rules;  // values QuantOptions.scale_rule may take

  QuantizeFn quantize_ref;
  DequantizeFn dequantize_ref;
  FakeQuantizeFn fake_quantize_ref;
  // Fast path (AVX2): call only when fast_available() is true.
  QuantizeFn quantize_fast;
  DequantizeFn dequantize_fast;
  FakeQuantizeFn fake_quantize_fast;
  bool (*fast_available)();
  const char* fast_name;  // "avx2"
};

std::span<const QuantFormat> quant_formats();
// Throws Error(source, ...) naming the known formats.
const QuantFormat& find_quant_format(std::string_view name, std::string_view source = "--format");

}  // namespace mxlens
