#include "core/mx/packing.h"

#include <string>

#include "core/util/error.h"

namespace mxlens {

namespace {
void require(bool ok, const std::string& problem) {
  if (!ok) throw Error("packing", problem);
}
size_t record_count(size_t n_bytes, int block_size) {
  const size_t record_bytes = 1 + static_cast<size_t>(block_size) / 2;
  require(block_size > 0 && block_size % 2 == 0, "block size must be positive and even");
  require(n_bytes % record_bytes == 0, std::to_string(n_bytes) +
                                           " bytes is not a whole number of " +
                                           std::to_string(record_bytes) + "-byte blocks");
  return n_bytes / record_bytes;
}
}  // namespace

void pack_codes_split(std::span<const uint8_t> codes, std::span<uint8_t> packed) {
  const size_t half = packed.size();
  require(codes.size() == 2 * half, "split packing needs B codes into B/2 bytes");
  for (size_t j = 0; j < half; ++j)
    packed[j] = static_cast<uint8_t>((codes[j] & 0xF) | (codes[j + half] & 0xF) << 4);
}

void unpack_codes_split(std::span<const uint8_t> packed, std::span<uint8_t> codes) {
  const size_t half = packed.size();
  require(codes.size() == 2 * half, "split unpacking needs B/2 bytes into B codes");
  for (size_t j = 0; j < half; ++j) {
    codes[j] = packed[j] & 0xF;
    codes[j + half] = packed[j] >> 4;
  }
}

void pack_codes_pairs(std::span<const uint8_t> codes, std::span<uint8_t> packed) {
  require(codes.size() == 2 * packed.size(), "pairs packing needs 2n codes into n bytes");
  for (size_t j = 0; j < packed.size(); ++j)
    packed[j] = static_cast<uint8_t>((codes[2 * j] & 0xF) | (codes[2 * j + 1] & 0xF) << 4);
}

void unpack_codes_pairs(std::span<const uint8_t> packed, std::span<uint8_t> codes) {
  require(codes.size() == 2 * packed.size(), "pairs unpacking needs n bytes into 2n codes");
  for (size_t j = 0; j < packed.size(); ++j) {
    codes[2 * j] = packed[j] & 0xF;
    codes[2 * j + 1] = packed[j] >> 4;
  }
}

std::vector<uint8_t> codes_of_block_records(std::span<const uint8_t> records, int block_size) {
  const size_t n_blocks = record_count(records.size(), block_size);
  const size_t bs = static_cast<size_t>(block_size), record_bytes = 1 + bs / 2;
  std::vector<uint8_t> codes(n_blocks * bs);
  for (size_t b = 0; b < n_blocks; ++b)
    unpack_codes_split(records.subspan(b * record_bytes + 1, bs / 2),
                       std::span(codes).subspan(b * bs, bs));
  return codes;
}

std::vector<uint8_t> scales_of_block_records(std::span<const uint8_t> records, int block_size) {
  const size_t n_blocks = record_count(records.size(), block_size);
  const size_t record_bytes = 1 + static_cast<size_t>(block_size) / 2;
  std::vector<uint8_t> scales(n_blocks);
  for (size_t b = 0; b < n_blocks; ++b) scales[b] = records[b * record_bytes];
  return scales;
}

PairsLayout block_records_to_pairs(std::span<const uint8_t> records, int block_size) {
  const std::vector<uint8_t> codes = codes_of_block_records(records, block_size);
  PairsLayout pairs;
  pairs.packed.resize(codes.size() / 2);
  pack_codes_pairs(codes, pairs.packed);
  pairs.scales = scales_of_block_records(records, block_size);
  return pairs;
}

std::vector<uint8_t> pairs_to_block_records(const PairsLayout& pairs, int block_size) {
  require(block_size > 0 && block_size % 2 == 0, "block size must be positive and even");
  const size_t bs = static_cast<size_t>(block_size), record_bytes = 1 + bs / 2;
  const size_t n_blocks = pairs.scales.size();
  require(pairs.packed.size() == n_blocks * bs / 2,
          std::to_string(pairs.packed.size()) + " packed bytes do not match " +
              std::to_string(n_blocks) + " scale bytes of " + std::to_string(bs) +
              "-element blocks");
  std::vector<uint8_t> codes(n_blocks * bs);
  unpack_codes_pairs(pairs.packed, codes);
  std::vector<uint8_t> records(n_blocks * record_bytes);
  for (size_t b = 0; b < n_blocks; ++b) {
    records[b * record_bytes] = pairs.scales[b];
    pack_codes_split(std::span<const uint8_t>(codes).subspan(b * bs, bs),
                     std::span(records).subspan(b * record_bytes + 1, bs / 2));
  }
  return records;
}

}  // namespace mxlens
