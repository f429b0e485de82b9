#pragma once
// Where the shared real test data lives: $MXLENS_DATA if set, else the path CMake
// configured (../shared/data beside the repository). Never the working directory.
#include <cstdlib>
#include <filesystem>

namespace mxlens::test {

inline std::filesystem::path data_dir() {
  if (const char* env = std::getenv("MXLENS_DATA"); env && *env) return env;
  if (const char* env = std::getenv("MXLENS_DATA_DEFAULT"); env && *env) return env;
  return "../shared/data";
}

inline std::filesystem::path model_656k() {
  return data_dir() / "tinystories-656k";
}
inline std::filesystem::path model_260k() {
  return data_dir() / "stories260K-hf";
}
inline std::filesystem::path wiki_test() {
  return data_dir() / "wikitext-2-raw" / "wiki.test.raw";
}

}  // namespace mxlens::test
