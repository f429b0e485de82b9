#include "core/calib/method.h"

#include <algorithm>

#include "core/util/error.h"

namespace mxlens {

namespace {

struct MethodInfo {
  Method method;
  std::string_view name;
  std::string_view description;
};

constexpr MethodInfo kInfo[] = {
    {Method::fp, "fp", "no quantization (the reference)"},
    {Method::rtn, "rtn", "W4A4 MXFP4 round-to-nearest, no transform"},
    {Method::smooth, "smooth", "SmoothQuant smoothing (alpha 0.6) + round-to-nearest"},
    {Method::hadamard, "hadamard", "block Hadamard H32/sqrt(32) at every site"},
    {Method::random, "random", "seeded random orthogonal 32x32 blocks per layer and site"},
    {Method::quarot, "quarot", "QuaRot: full-size Hadamard rotations (per site)"},
    {Method::duquant, "duquant",
     "DuQuant: smoothing + rotation, zigzag permutation, rotation (blocks of 128)"},
    {Method::duquantpp, "duquantpp", "DuQuant++: smoothing + greedy 32x32 rotation"},
    {Method::duquantpp_nosmooth, "duquantpp-nosmooth",
     "the DuQuant++ greedy rotation without smoothing"},
    {Method::duquantpp_gptq, "duquantpp-gptq", "DuQuant++ followed by GPTQ on the weights"},
};

const MethodInfo& info(Method method) {
  for (const MethodInfo& i : kInfo) {
    if (i.method == method) return i;
  }
  throw Error("method", "unknown method value " + std::to_string(int(method)));
}

std::string known_names() {
  std::string out;
  for (const MethodInfo& i : kInfo) {
    if (!out.empty()) out += ", ";
    out += i.name;
  }
  return out;
}

}  // namespace

std::string_view method_name(Method method) {
  return info(method).name;
}

std::string_view method_description(Method method) {
  return info(method).description;
}

Method parse_method(std::string_view name, std::string_view source) {
  for (const MethodInfo& i : kInfo) {
    if (i.name == name) return i.method;
  }
  throw Error(std::string(source),
              "unknown method '" + std::string(name) + "' (known: " + known_names() + ")");
}

std::vector<Method> parse_method_list(std::string_view list, std::string_view source) {
  std::vector<Method> out;
  if (list.empty()) throw Error(std::string(source), "empty method list");
  size_t start = 0;
  while (true) {
    const size_t comma = list.find(',', start);
    const std::string_view item = list.substr(
        start, comma == std::string_view::npos ? std::string_view::npos : comma - start);
    if (item.empty()) {
      throw Error(std::string(source), "empty item in method list '" + std::string(list) + "'");
    }
    const Method m = parse_method(item, source);
    if (std::find(out.begin(), out.end(), m) != out.end()) {
      throw Error(std::string(source), "method '" + std::string(item) + "' listed twice");
    }
    out.push_back(m);
    if (comma == std::string_view::npos) break;
    start = comma + 1;
  }
  return out;
}

bool method_quantizes(Method method) {
  return method != Method::fp;
}

bool method_smooths(Method method) {
  return method == Method::smooth || method == Method::duquant || method == Method::duquantpp ||
         method == Method::duquantpp_gptq;
}

bool method_searches(Method method) {
  return method == Method::duquant || method == Method::duquantpp ||
         method == Method::duquantpp_nosmooth || method == Method::duquantpp_gptq;
}

bool method_uses_gptq(Method method) {
  return method == Method::duquantpp_gptq;
}

bool method_needs_statistics(Method method) {
  return method_smooths(method) || method_searches(method);
}

}  // namespace mxlens
