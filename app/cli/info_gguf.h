#pragma once
// `mxlens-cli info FILE.gguf`: what a GGUF file holds, read with mxlens's own reader
// (core/io/gguf_reader.h): metadata keys (long arrays summarized), tensors with type, shape,
// bytes and offset, and for MXFP4 tensors the range of their E8M0 exponents.
#include "core/io/gguf_reader.h"

namespace mxlens::cli {

void print_gguf_text(const GgufFile& file);
void print_gguf_json(const GgufFile& file);

}  // namespace mxlens::cli
