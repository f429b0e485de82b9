#include "core/text/bpe_model.h"

#include <algorithm>
#include <cstdio>
#include <queue>

#include <nlohmann/json.hpp>

#include "core/text/utf8.h"
#include "core/util/error.h"

namespace mxlens {

namespace {

std::string optional_string(const nlohmann::json& j, const char* key, const std::string& source) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return {};
  if (!it->is_string()) throw Error(source, std::string("model.") + key + " is not a string");
  return it->get<std::string>();
}

bool optional_bool(const nlohmann::json& j, const char* key, const std::string& source) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return false;
  if (!it->is_boolean()) throw Error(source, std::string("model.") + key + " is not a boolean");
  return it->get<bool>();
}

}  // namespace

void PieceIndex::reserve(std::size_t n) {
  entries_.reserve(n);
  std::size_t cap = 16;
  while (cap < 2 * n) cap *= 2;
  if (cap > slots_.size()) {
    slots_.assign(cap, Slot{0, -1});
    for (std::size_t e = 0; e < entries_.size(); ++e) {
      const uint64_t h = StringHash{}(entries_[e].first);
      std::size_t i = h & (slots_.size() - 1);
      while (slots_[i].entry >= 0) i = (i + 1) & (slots_.size() - 1);
      slots_[i] = Slot{h, static_cast<int32_t>(e)};
    }
  }
}

void PieceIndex::grow() {
  reserve(std::max<std::size_t>(16, entries_.size() * 2));
}

void PieceIndex::insert(std::string piece, int32_t id) {
  if (2 * (entries_.size() + 1) > slots_.size()) grow();
  const uint64_t h = StringHash{}(piece);
  std::size_t i = h & (slots_.size() - 1);
  while (slots_[i].entry >= 0) {
    auto& e = entries_[slots_[i].entry];
    if (slots_[i].hash == h && e.first == piece) {
      e.second = id;
      return;
    }
    i = (i + 1) & (slots_.size() - 1);
  }
  slots_[i] = Slot{h, static_cast<int32_t>(entries_.size())};
  entries_.emplace_back(std::move(piece), id);
}

std::optional<int32_t> PieceIndex::find(std::string_view piece) const {
  if (slots_.empty()) return std::nullopt;
  const uint64_t h = StringHash{}(piece);
  for (std::size_t i = h & (slots_.size() - 1);; i = (i + 1) & (slots_.size() - 1)) {
    const Slot& s = slots_[i];
    if (s.entry < 0) return std::nullopt;
    if (s.hash == h && entries_[s.entry].first == piece) return entries_[s.entry].second;
  }
}

void BpeModel::MergeTable::reserve(std::size_t n) {
  std::size_t cap = 16;
  while (cap < 2 * n) cap *= 2;
  if (cap <= slots_.size()) return;
  std::vector<Slot> old = std::move(slots_);
  slots_.assign(cap, Slot{kEmpty, {}});
  for (const Slot& s : old) {
    if (s.key == kEmpty) continue;
    std::size_t i = slot_of(s.key);
    while (slots_[i].key != kEmpty) i = (i + 1) & (slots_.size() - 1);
    slots_[i] = s;
  }
}

void BpeModel::MergeTable::grow() {
  reserve(std::max<std::size_t>(16, used_ * 2));
}

void BpeModel::MergeTable::insert_or_assign(int32_t a, int32_t b, Merge m) {
  for (int32_t id : {a, b}) {
    if (static_cast<std::size_t>(id) >= in_merge_.size()) in_merge_.resize(id + 1, false);
    in_merge_[id] = true;
  }
  if (2 * (used_ + 1) > slots_.size()) grow();
  const uint64_t key = key_of(a, b);
  std::size_t i = slot_of(key);
  while (slots_[i].key != kEmpty && slots_[i].key != key) i = (i + 1) & (slots_.size() - 1);
  if (slots_[i].key == kEmpty) ++used_;
  slots_[i] = Slot{key, m};
}

const BpeModel::Merge* BpeModel::MergeTable::find(int32_t a, int32_t b) const {
  if (slots_.empty()) return nullptr;
  const uint64_t key = key_of(a, b);
  for (std::size_t i = slot_of(key);; i = (i + 1) & (slots_.size() - 1)) {
    if (slots_[i].key == key) return &slots_[i].merge;
    if (slots_[i].key == kEmpty) return nullptr;
  }
}

BpeModel BpeModel::from_json(const nlohmann::json& model, const std::string& source) {
  BpeModel m;
  if (auto d = model.find("dropout"); d != model.end() && !d->is_null()) {
    if (!d->is_number()) throw Error(source, "model.dropout is not a number");
    if (d->get<double>() != 0.0)
      throw Error(source, "unsupported BPE dropout (non-deterministic encoding)");
  }
  auto vocab = model.find("vocab");
  if (vocab == model.end() || !vocab->is_object())
    throw Error(source, "model.vocab is missing or not an object");
  m.vocab_.reserve(vocab->size());
  for (const auto& [piece, id] : vocab->items()) {
    if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() > INT32_MAX)
      throw Error(source, "model.vocab['" + piece + "'] is not a valid id");
    m.vocab_.insert(piece, static_cast<int32_t>(id.get<int64_t>()));
  }

  if (auto unk = model.find("unk_token"); unk != model.end() && !unk->is_null()) {
    if (!unk->is_string()) throw Error(source, "model.unk_token is not a string");
    m.unk_token_ = unk->get<std::string>();
    m.unk_id_ = m.vocab_.find(*m.unk_token_);
  }
  m.fuse_unk_ = optional_bool(model, "fuse_unk", source);
  m.byte_fallback_ = optional_bool(model, "byte_fallback", source);
  m.ignore_merges_ = optional_bool(model, "ignore_merges", source);
  m.continuing_subword_prefix_ = optional_string(model, "continuing_subword_prefix", source);
  m.end_of_word_suffix_ = optional_string(model, "end_of_word_suffix", source);

  m.has_all_byte_pieces_ = true;
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof name, "<0x%02X>", b);
    const auto id = m.vocab_.find(std::string_view(name));
    m.byte_ids_[b] = id.value_or(-1);
    if (!id) m.has_all_byte_pieces_ = false;
  }

  auto merges = model.find("merges");
  if (merges == model.end() || merges->is_null()) return m;
  if (!merges->is_array()) throw Error(source, "model.merges is not an array");
  m.merges_.reserve(merges->size());
  const std::size_t prefix_len = m.continuing_subword_prefix_.size();
  auto lookup = [&](const std::string& piece, std::size_t rank, const std::string& shown) {
    const auto id = m.vocab_.find(piece);
    if (!id)
      throw Error(source, "merge " + std::to_string(rank) + " ('" + shown + "'): token '" + piece +
                              "' is not in the vocab");
    return *id;
  };
  std::size_t rank = 0;  // "#version" lines do not count
  for (std::size_t index = 0; index < merges->size(); ++index) {
    const auto& entry = (*merges)[index];
    std::string a, b, shown;
    if (entry.is_string()) {
      const auto& line = entry.get_ref<const std::string&>();
      if (line.rfind("#version", 0) == 0) continue;
      auto space = line.find(' ');
      if (space == std::string::npos || line.find(' ', space + 1) != std::string::npos)
        throw Error(source, "merge " + std::to_string(rank) + " ('" + line +
                                "') is not two pieces separated by one space");
      a = line.substr(0, space);
      b = line.substr(space + 1);
      shown = line;
    } else if (entry.is_array() && entry.size() == 2 && entry[0].is_string() &&
               entry[1].is_string()) {
      a = entry[0].get<std::string>();
      b = entry[1].get<std::string>();
      shown = a + " " + b;
    } else {
      throw Error(source,
                  "merge " + std::to_string(rank) + " is neither \"a b\" nor a pair of strings");
    }
    const int32_t a_id = lookup(a, rank, shown);
    const int32_t b_id = lookup(b, rank, shown);
    if (b.size() < prefix_len)
      throw Error(source, "merge " + std::to_string(rank) + " ('" + shown +
                              "'): second piece shorter than continuing_subword_prefix");
    const int32_t new_id = lookup(a + b.substr(prefix_len), rank, shown);
    // A repeated pair keeps its last rank, as the library's hash map does.
    m.merges_.insert_or_assign(a_id, b_id, Merge{static_cast<int32_t>(rank), new_id});
    ++rank;
  }
  return m;
}

void BpeModel::tokenize(std::string_view word, std::vector<int32_t>& out) const {
  if (word.empty()) return;
  if (ignore_merges_) {
    if (auto id = vocab_.find(word)) {
      out.push_back(*id);
      return;
    }
  }
  merge_word(word, out);
}

void BpeModel::merge_word(std::string_view word, std::vector<int32_t>& out) const {
  std::vector<int32_t> initial;  // symbol ids before any merge
  initial.reserve(word.size());
  auto add = [&](int32_t id) { initial.push_back(id); };

  // 1. characters -> symbols (vocab entry, else <0xHH> bytes, else unk, fused if asked).
  int32_t pending_unk = -1;  // -1: none
  std::string scratch;
  for (std::size_t i = 0; i < word.size();) {
    const std::size_t len = utf8_char_length(static_cast<unsigned char>(word[i]));
    std::string_view ch = word.substr(i, len);
    const bool is_first = i == 0;
    const bool is_last = i + len >= word.size();
    i += len;
    std::string_view key = ch;
    if ((!is_first && !continuing_subword_prefix_.empty()) ||
        (is_last && !end_of_word_suffix_.empty())) {
      scratch.clear();
      if (!is_first) scratch += continuing_subword_prefix_;
      scratch += ch;
      if (is_last) scratch += end_of_word_suffix_;
      key = scratch;
    }
    if (auto id = vocab_.find(key)) {
      if (pending_unk >= 0) {
        add(pending_unk);
        pending_unk = -1;
      }
      add(*id);
      continue;
    }
    if (byte_fallback_) {
      bool all = true;
      for (char c : key) all = all && byte_ids_[static_cast<unsigned char>(c)] >= 0;
      if (all) {
        // The library does not flush a pending unk here; keep its order exactly.
        for (char c : key) add(byte_ids_[static_cast<unsigned char>(c)]);
        continue;
      }
    }
    if (unk_token_) {
      if (!unk_id_) throw Error("tokenizer", "unk_token '" + *unk_token_ + "' is not in the vocab");
      if (pending_unk >= 0 && !fuse_unk_) add(pending_unk);
      pending_unk = *unk_id_;
    }
    // No unk token: the character is dropped, as the library does.
  }
  if (pending_unk >= 0) add(pending_unk);

  // 2. merges. A symbol whose id is in no merge rule can never merge, so the merges on
  // either side of it are independent: each segment between such symbols is merged on its
  // own (same result as one pass; keeps the heap small for long words such as a whole
  // SentencePiece-style text).
  std::size_t begin = 0;
  while (begin < initial.size()) {
    std::size_t end = begin;
    while (end < initial.size() && merges_.can_merge(initial[end])) ++end;
    if (end == begin) {
      out.push_back(initial[begin++]);
      continue;
    }
    merge_segment(std::span<const int32_t>(initial.data() + begin, end - begin), out);
    begin = end;
  }
}

void BpeModel::merge_segment(std::span<const int32_t> ids, std::vector<int32_t>& out) const {
  struct Symbol {
    int32_t id;
    int32_t prev;
    int32_t next;
    bool removed;
  };
  std::vector<Symbol> symbols(ids.size());
  const auto n = static_cast<int32_t>(ids.size());
  for (int32_t k = 0; k < n; ++k) symbols[k] = Symbol{ids[k], k - 1, k + 1 < n ? k + 1 : -1, false};

  // Lowest rank first, leftmost on ties (the library's BinaryHeap order).
  struct Candidate {
    int32_t rank;
    int32_t pos;
    int32_t new_id;
    bool operator>(const Candidate& o) const {
      return rank != o.rank ? rank > o.rank : pos > o.pos;
    }
  };
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<>> queue;
  for (int32_t k = 0; k + 1 < n; ++k) {
    if (const Merge* m = merges_.find(symbols[k].id, symbols[k + 1].id))
      queue.push(Candidate{m->rank, k, m->new_id});
  }
  while (!queue.empty()) {
    const Candidate top = queue.top();
    queue.pop();
    Symbol& left = symbols[top.pos];
    if (left.removed || left.next < 0) continue;
    const Symbol right = symbols[left.next];
    const Merge* m = merges_.find(left.id, right.id);
    if (!m || m->new_id != top.new_id) continue;  // stale entry
    symbols[left.next].removed = true;
    left.id = top.new_id;
    left.next = right.next;
    if (right.next >= 0) symbols[right.next].prev = top.pos;
    if (left.prev >= 0) {
      if (const Merge* p = merges_.find(symbols[left.prev].id, left.id))
        queue.push(Candidate{p->rank, left.prev, p->new_id});
    }
    if (left.next >= 0) {
      if (const Merge* nx = merges_.find(left.id, symbols[left.next].id))
        queue.push(Candidate{nx->rank, top.pos, nx->new_id});
    }
  }
  for (const Symbol& s : symbols)
    if (!s.removed) out.push_back(s.id);
}

}  // namespace mxlens
