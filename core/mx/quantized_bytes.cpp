#include "core/mx/quantized_bytes.h"

#include <bit>
#include <cstring>
#include <string>

#include "core/mx/packing.h"
#include "core/util/error.h"

namespace mxlens {

static_assert(std::endian::native == std::endian::little,
              "quantized_bytes writes float headers by memcpy: little-endian hosts only");

std::string_view to_string(BlockLayout layout) {
  return layout == BlockLayout::ggml ? "ggml" : "pairs";
}

BlockLayout parse_block_layout(std::string_view name, std::string_view source) {
  if (name == "ggml") return BlockLayout::ggml;
  if (name == "pairs") return BlockLayout::pairs;
  throw Error(std::string(source),
              "unknown layout '" + std::string(name) + "' (expected ggml or pairs)");
}

QuantizedTensor quantize_tensor(std::span<const float> x, const QuantFormat& format,
                                const QuantOptions& options, std::string_view source) {
  const size_t block = static_cast<size_t>(format.block_size);
  if (x.empty() || x.size() % block != 0)
    throw Error(std::string(source),
                std::to_string(x.size()) + " float32 values is not a positive multiple of the " +
                    std::string(format.name) + " block size " + std::to_string(block));
  QuantizedTensor q;
  q.format = &format;
  q.options = options;
  q.n_elements = x.size();
  q.records.resize(x.size() / block * static_cast<size_t>(format.record_bytes));
  try {
    q.scale = format.fast_available() ? format.quantize_fast(x, q.records, options)
                                      : format.quantize_ref(x, q.records, options);
  } catch (const Error& e) {  // name the input rather than "mxfp4"
    throw Error(std::string(source), e.problem());
  }
  return q;
}

std::vector<float> dequantize_tensor(const QuantizedTensor& q) {
  std::vector<float> out(q.n_elements);
  if (q.format->fast_available())
    q.format->dequantize_fast(q.records, q.scale, out);
  else
    q.format->dequantize_ref(q.records, q.scale, out);
  return out;
}

std::vector<uint8_t> quantized_bytes(const QuantizedTensor& q, BlockLayout layout) {
  // Header: NVFP4 float32 g; MXFP4 dqv2_log8 float64 lo, hi; otherwise none.
  uint8_t header[16];
  size_t header_bytes = 0;
  if (q.format->name == "nvfp4") {
    std::memcpy(header, &q.scale.global_scale, 4);
    header_bytes = 4;
  } else if (q.options.scale_rule == ScaleRule::dqv2_log8) {
    std::memcpy(header, &q.scale.log2_lo, 8);
    std::memcpy(header + 8, &q.scale.log2_hi, 8);
    header_bytes = 16;
  }
  // Sized up front and filled by memcpy (vector::insert trips a GCC 12 false warning).
  std::vector<uint8_t> out(header_bytes + q.records.size());
  std::memcpy(out.data(), header, header_bytes);
  uint8_t* body = out.data() + header_bytes;
  if (layout == BlockLayout::ggml) {
    std::memcpy(body, q.records.data(), q.records.size());
  } else {
    const PairsLayout pairs = block_records_to_pairs(q.records, q.format->block_size);
    std::memcpy(body, pairs.packed.data(), pairs.packed.size());
    std::memcpy(body + pairs.packed.size(), pairs.scales.data(), pairs.scales.size());
  }
  return out;
}

}  // namespace mxlens
