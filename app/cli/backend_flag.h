#pragma once
// --backend cpu|cuda|auto, shared by `eval` and `compare`: the evaluation model factory and the
// line that tells the user where evaluation runs.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <string>

#include "core/backend/window_model.h"
#include "mxlens/gpu/backend.h"

namespace mxlens::cli {

inline void add_backend_flag(CLI::App* cmd, std::string& backend) {
  cmd->add_option("--backend", backend,
                  "Where evaluation runs: cpu, cuda (error without a usable device) or auto (CUDA "
                  "when a device is there, else the CPU with a note); calibration always runs on "
                  "the CPU")
      ->capture_default_str();
}

struct ChosenBackend {
  std::string requested;  // as given
  std::string note;       // device line, or why the CPU is used; empty for cpu
  WindowModelFactory factory;
};

// Throws Error("--backend", ...) for an unknown name, or for cuda without a device. The note
// goes to stderr at once (a long run should say early where it runs).
inline ChosenBackend choose_backend(const std::string& name) {
  ChosenBackend b;
  b.requested = name;
  b.factory = gpu::make_window_model_factory(gpu::parse_backend(name), 0, &b.note);
  if (!b.note.empty()) std::fprintf(stderr, "mxlens-cli: %s\n", b.note.c_str());
  return b;
}

}  // namespace mxlens::cli
