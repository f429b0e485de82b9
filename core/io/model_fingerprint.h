#pragma once
// SHA-256 (OpenSSL's libcrypto) and the model fingerprint a session records, so that a session
// is never applied to another model (formats.md §5.1 /provenance).
//
// weights_sha256 covers every *.safetensors shard of the directory in name order: its name,
// size and header, and its data — the whole file when it is at most 256 MiB, otherwise 1024
// evenly spaced 64 KiB pieces (a 16 GB checkpoint is fingerprinted in well under a second while
// any realistic edit — a planted copy, another fine-tune — changes it).
#include <cstddef>
#include <filesystem>
#include <span>
#include <string>

#include "core/calib/session.h"

namespace mxlens {

class Checkpoint;

std::string sha256_hex(std::span<const std::byte> bytes);
std::string sha256_hex(std::string_view bytes);
// Throws Error(path, ...) when the file cannot be read.
std::string sha256_file(const std::filesystem::path& path);

ModelFingerprint model_fingerprint(const Checkpoint& checkpoint);

}  // namespace mxlens
