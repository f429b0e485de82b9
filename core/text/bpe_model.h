#pragma once
// The BPE model of a Hugging Face tokenizer.json (formats.md §3.2): vocab, merge ranks,
// unk / fuse_unk, byte_fallback (<0xHH> pieces), ignore_merges, continuing_subword_prefix and
// end_of_word_suffix. Merging follows the library exactly: a min-heap on (rank, position),
// stale entries skipped, leftmost wins ties.
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace mxlens {

struct StringHash {
  using is_transparent = void;
  std::size_t operator()(std::string_view s) const noexcept {
    return std::hash<std::string_view>{}(s);
  }
};

// piece -> id, open addressing with stored hashes: one cache line per probe instead of a
// node chase per lookup (the llama3 file does ~10^6 lookups while loading).
class PieceIndex {
 public:
  void reserve(std::size_t n);
  // A repeated piece keeps the last id.
  void insert(std::string piece, int32_t id);
  std::optional<int32_t> find(std::string_view piece) const;
  const std::vector<std::pair<std::string, int32_t>>& entries() const { return entries_; }
  std::size_t size() const { return entries_.size(); }

 private:
  struct Slot {
    uint64_t hash;
    int32_t entry;  // index into entries_, -1 when empty
  };
  void grow();
  std::vector<Slot> slots_;
  std::vector<std::pair<std::string, int32_t>> entries_;
};

class BpeModel {
 public:
  // `model` is the "model" object of tokenizer.json; errors name `source`.
  static BpeModel from_json(const nlohmann::json& model, const std::string& source);

  // Appends the ids of one pre-tokenized word.
  void tokenize(std::string_view word, std::vector<int32_t>& out) const;

  const PieceIndex& vocab() const { return vocab_; }
  std::optional<int32_t> unk_id() const { return unk_id_; }
  bool byte_fallback() const { return byte_fallback_; }
  // True if every byte 0x00..0xFF has its <0xHH> piece.
  bool has_all_byte_pieces() const { return has_all_byte_pieces_; }

 private:
  struct Merge {
    int32_t rank;
    int32_t new_id;
  };
  // (left id, right id) -> merge, open addressing.
  class MergeTable {
   public:
    void reserve(std::size_t n);
    void insert_or_assign(int32_t a, int32_t b, Merge m);
    const Merge* find(int32_t a, int32_t b) const;
    // False if `id` is the left or right side of no merge rule.
    bool can_merge(int32_t id) const {
      return static_cast<std::size_t>(id) < in_merge_.size() && in_merge_[id];
    }

   private:
    struct Slot {
      uint64_t key;  // kEmpty when free
      Merge merge;
    };
    static constexpr uint64_t kEmpty = ~uint64_t{0};
    static uint64_t key_of(int32_t a, int32_t b) {
      return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
    }
    std::size_t slot_of(uint64_t key) const {
      return static_cast<std::size_t>((key * 0x9E3779B97F4A7C15ull) >> 17) & (slots_.size() - 1);
    }
    void grow();
    std::vector<Slot> slots_;
    std::size_t used_ = 0;
    std::vector<bool> in_merge_;
  };
  void merge_word(std::string_view word, std::vector<int32_t>& out) const;
  void merge_segment(std::span<const int32_t> ids, std::vector<int32_t>& out) const;

  PieceIndex vocab_;
  MergeTable merges_;
  std::optional<int32_t> unk_id_;
  std::optional<std::string> unk_token_;
  bool fuse_unk_ = false;
  bool byte_fallback_ = false;
  bool ignore_merges_ = false;
  bool has_all_byte_pieces_ = false;
  std::string continuing_subword_prefix_;
  std::string end_of_word_suffix_;
  int32_t byte_ids_[256] = {};  // id of <0xHH>, or -1
};

}  // namespace mxlens
