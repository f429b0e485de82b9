#include "core/mx/format_table.h"

#include <string>

#include "core/mx/mxfp4.h"
#include "core/mx/nvfp4.h"
#include "core/util/error.h"

namespace mxlens {

namespace {

template <class Block>
std::span<Block> as_blocks(std::span<uint8_t> records) {
  if (records.size() % sizeof(Block) != 0)
    throw Error("format_table", "block bytes are not a whole number of blocks");
  return {reinterpret_cast<Block*>(records.data()), records.size() / sizeof(Block)};
}
template <class Block>
std::span<const Block> as_blocks(std::span<const uint8_t> records) {
  if (records.size() % sizeof(Block) != 0)
    throw Error("format_table", "block bytes are not a whole number of blocks");
  return {reinterpret_cast<const Block*>(records.data()), records.size() / sizeof(Block)};
}

// Adapters from the typed functions to the table's byte-level signatures.
template <class Block,
          TensorScale (*F)(std::span<const float>, std::span<Block>, const QuantOptions&)>
TensorScale quantize_bytes(std::span<const float> x, std::span<uint8_t> records,
                           const QuantOptions& options) {
  return F(x, as_blocks<Block>(records), options);
}
template <class Block, void (*F)(std::span<const Block>, const TensorScale&, std::span<float>)>
void dequantize_bytes(std::span<const uint8_t> records, const TensorScale& scale,
                      std::span<float> out) {
  F(as_blocks<Block>(records), scale, out);
}

constexpr ScaleRule kMxfp4Rules[] = {ScaleRule::ocp_floor, ScaleRule::fpquant, ScaleRule::rceil,
                                     ScaleRule::dqv2_log8};
constexpr ScaleRule kNvfp4Rules[] = {ScaleRule::ocp_floor};  // the default: "not applicable"

const QuantFormat kFormats[] = {
    {"mxfp4", Mxfp4Block::kSize, sizeof(Mxfp4Block), kMxfp4Rules,
     quantize_bytes<Mxfp4Block, quantize_mxfp4_ref>,
     dequantize_bytes<Mxfp4Block, dequantize_mxfp4_ref>, fake_quantize_mxfp4_ref,
     quantize_bytes<Mxfp4Block, quantize_mxfp4_avx2>,
     dequantize_bytes<Mxfp4Block, dequantize_mxfp4_avx2>, fake_quantize_mxfp4_avx2,
     mxfp4_avx2_available, "avx2"},
    {"nvfp4", Nvfp4Block::kSize, sizeof(Nvfp4Block), kNvfp4Rules,
     quantize_bytes<Nvfp4Block, quantize_nvfp4_ref>,
     dequantize_bytes<Nvfp4Block, dequantize_nvfp4_ref>, fake_quantize_nvfp4_ref,
     quantize_bytes<Nvfp4Block, quantize_nvfp4_avx2>,
     dequantize_bytes<Nvfp4Block, dequantize_nvfp4_avx2>, fake_quantize_nvfp4_avx2,
     mxfp4_avx2_available, "avx2"},
};

}  // namespace

std::span<const QuantFormat> quant_formats() {
  return kFormats;
}

const QuantFormat& find_quant_format(std::string_view name, std::string_view source) {
  for (const QuantFormat& f : kFormats)
    if (f.name == name) return f;
  throw Error(std::string(source),
              "unknown format '" + std::string(name) + "' (expected mxfp4 or nvfp4)");
}

}  // namespace mxlens
