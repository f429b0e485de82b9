#pragma once
// Two FP4 codes per byte (algorithm.md §1.5). Two layouts exist and must not be mixed:
//   split (ggml block_mxfp4): in a block of B codes, byte j = code j | code (j+B/2) << 4.
//   pairs (FP-Quant, compressed-tensors, most GPU kernels): byte j = code 2j | code 2j+1 << 4,
//         scale bytes kept in a separate array (one per block).
// A "block record" below is the ggml-style record: one scale byte followed by B/2 split-packed
// bytes (Mxfp4Block for B = 32, Nvfp4Block for B = 16).
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace mxlens {

// codes.size() == B (even), packed.size() == B/2.
void pack_codes_split(std::span<const uint8_t> codes, std::span<uint8_t> packed);
void unpack_codes_split(std::span<const uint8_t> packed, std::span<uint8_t> codes);
// codes.size() even, packed.size() == codes.size()/2.
void pack_codes_pairs(std::span<const uint8_t> codes, std::span<uint8_t> packed);
void unpack_codes_pairs(std::span<const uint8_t> packed, std::span<uint8_t> codes);

// The pairs layout of a whole tensor: all packed code bytes, then one scale byte per block.
struct PairsLayout {
  std::vector<uint8_t> packed;  // n_elements/2 bytes, element 2j low nibble of byte j
  std::vector<uint8_t> scales;  // n_blocks bytes
};

// Convert between concatenated block records of B elements and the pairs layout. Both throw
// Error("packing", ...) on a size that is not a whole number of blocks.
PairsLayout block_records_to_pairs(std::span<const uint8_t> records, int block_size);
std::vector<uint8_t> pairs_to_block_records(const PairsLayout& pairs, int block_size);

// Codes in element order (one per byte) and the scale bytes of concatenated block records.
std::vector<uint8_t> codes_of_block_records(std::span<const uint8_t> records, int block_size);
std::vector<uint8_t> scales_of_block_records(std::span<const uint8_t> records, int block_size);

// Raw bytes of a span of trivially copyable blocks (Mxfp4Block, Nvfp4Block).
template <class Block>
std::span<const uint8_t> block_bytes(std::span<const Block> blocks) {
  return {reinterpret_cast<const uint8_t*>(blocks.data()), blocks.size_bytes()};
}
template <class Block>
std::span<uint8_t> block_bytes(std::span<Block> blocks) {
  return {reinterpret_cast<uint8_t*>(blocks.data()), blocks.size_bytes()};
}

}  // namespace mxlens
