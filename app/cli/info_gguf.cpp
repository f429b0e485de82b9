#include "app/cli/info_gguf.h"

#include <algorithm>
#include <cstdio>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <type_traits>
#include <variant>
#include <vector>

namespace mxlens::cli {
namespace {

constexpr size_t kArrayHead = 4;     // array items shown in text
constexpr size_t kJsonHead = 16;     // array items kept in JSON
constexpr size_t kStringShown = 72;  // characters of a string value shown in text

std::string clip(const std::string& s) {
  if (s.size() <= kStringShown) return s;
  std::string out = s.substr(0, kStringShown);
  return out.append("…");
}

nlohmann::json to_json(const GgufValue& v) {
  return std::visit(
      [](const auto& x) -> nlohmann::json {
        using T = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<T, GgufArray>) {
          nlohmann::json head = nlohmann::json::array();
          for (size_t i = 0; i < std::min(kJsonHead, x.items.size()); ++i)
            head.push_back(to_json(x.items[i]));
          return {{"element_type", std::string(to_string(x.type))},
                  {"count", x.items.size()},
                  {"head", head}};
        } else if constexpr (std::is_same_v<T, uint8_t> || std::is_same_v<T, int8_t>) {
          return int(x);
        } else {
          return x;
        }
      },
      v.v);
}

// (Built with append: GCC 12 warns falsely about -Wrestrict on chains of string +.)
std::string to_text(const GgufValue& v) {
  std::string s;
  if (const auto* a = v.get_if<GgufArray>()) {
    s.append("[").append(to_string(a->type)).append(" × ");
    s.append(std::to_string(a->items.size())).append("]");
    for (size_t i = 0; i < std::min(kArrayHead, a->items.size()); ++i)
      s.append(i ? ", " : " ").append(to_text(a->items[i]));
    if (a->items.size() > kArrayHead) s.append(", …");
    return s;
  }
  // Quoted and escaped (control characters, invalid UTF-8 replaced), long ones clipped.
  if (const auto* str = v.get_if<std::string>())
    return nlohmann::json(clip(*str))
        .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  return to_json(v).dump();
}

struct ExponentRange {
  int lo = 0, hi = 0;
};

// Range of the E8M0 exponents (byte − 127) over an MXFP4 tensor's blocks.
ExponentRange exponent_range(const GgufFile& file, const GgufTensor& t) {
  const auto blocks = file.mxfp4_blocks(t.name);
  uint8_t lo = 255, hi = 0;
  for (const Mxfp4Block& b : blocks) {
    lo = std::min(lo, b.e);
    hi = std::max(hi, b.e);
  }
  if (blocks.empty()) return {};
  return {int(lo) - 127, int(hi) - 127};
}

std::string shape_text(const std::vector<uint64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i)
    s.append(i ? ", " : "").append(std::to_string(shape[i]));
  return s.append("]");
}

}  // namespace

void print_gguf_text(const GgufFile& file) {
  std::printf("gguf: %s\n", file.path().string().c_str());
  std::printf("version %u, alignment %u, data at byte %llu, %llu bytes\n", file.version(),
              file.alignment(), static_cast<unsigned long long>(file.data_offset()),
              static_cast<unsigned long long>(file.file_size()));
  std::printf("\nkeys: %zu\n", file.kvs().size());
  size_t key_width = 3;
  for (const GgufKv& kv : file.kvs()) key_width = std::max(key_width, kv.key.size());
  for (const GgufKv& kv : file.kvs())
    std::printf("%-*s  %-6s  %s\n", int(key_width), kv.key.c_str(),
                std::string(to_string(kv.value.type())).c_str(), to_text(kv.value).c_str());

  size_t name_width = 4;
  for (const GgufTensor& t : file.tensors()) name_width = std::max(name_width, t.name.size());
  std::printf("\ntensors: %zu (shapes outermost first, as in Hugging Face)\n",
              file.tensors().size());
  std::printf("%-*s  %-6s  %-14s  %12s  %12s  %s\n", int(name_width), "name", "type", "shape",
              "bytes", "offset", "E8M0 exponents");
  std::map<std::string, uint64_t> bytes_by_type;
  for (const GgufTensor& t : file.tensors()) {
    std::string exps;
    if (t.type == GgmlType::mxfp4) {
      const ExponentRange r = exponent_range(file, t);
      exps.append(std::to_string(r.lo)).append(" .. ").append(std::to_string(r.hi));
    }
    const std::string type(to_string(t.type));
    bytes_by_type[type] += t.bytes;
    std::printf("%-*s  %-6s  %-14s  %12llu  %12llu  %s\n", int(name_width), t.name.c_str(),
                type.c_str(), shape_text(t.shape()).c_str(),
                static_cast<unsigned long long>(t.bytes), static_cast<unsigned long long>(t.offset),
                exps.c_str());
  }
  std::printf("\n");
  for (const auto& [type, bytes] : bytes_by_type)
    std::printf("bytes %s: %llu\n", type.c_str(), static_cast<unsigned long long>(bytes));
}

void print_gguf_json(const GgufFile& file) {
  nlohmann::json j;
  j["gguf"] = file.path().string();
  j["version"] = file.version();
  j["alignment"] = file.alignment();
  j["data_offset"] = file.data_offset();
  j["file_bytes"] = file.file_size();
  nlohmann::json keys = nlohmann::json::object();
  for (const GgufKv& kv : file.kvs())
    keys[kv.key] = {{"type", std::string(to_string(kv.value.type()))},
                    {"value", to_json(kv.value)}};
  j["keys"] = keys;
  nlohmann::json tensors = nlohmann::json::array();
  for (const GgufTensor& t : file.tensors()) {
    nlohmann::json e = {{"name", t.name},
                        {"type", std::string(to_string(t.type))},
                        {"shape", t.shape()},
                        {"bytes", t.bytes},
                        {"offset", t.offset}};
    if (t.type == GgmlType::mxfp4) {
      const ExponentRange r = exponent_range(file, t);
      e["e8m0_exponent_min"] = r.lo;
      e["e8m0_exponent_max"] = r.hi;
    }
    tensors.push_back(e);
  }
  j["tensors"] = tensors;
  std::printf("%s\n", j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
}

}  // namespace mxlens::cli
