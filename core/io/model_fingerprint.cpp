#include "core/io/model_fingerprint.h"

#include <openssl/evp.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <memory>
#include <system_error>
#include <vector>

#include "core/io/mapped_file.h"
#include "core/model/checkpoint.h"
#include "core/util/error.h"

namespace mxlens {

namespace {

// Shards up to this size are hashed whole; larger ones by kPieces evenly spaced pieces.
constexpr uint64_t kWholeFileLimit = uint64_t(256) << 20;
constexpr uint64_t kPieces = 1024;
constexpr uint64_t kPieceBytes = uint64_t(64) << 10;

struct MdCtxDeleter {
  void operator()(EVP_MD_CTX* ctx) const { EVP_MD_CTX_free(ctx); }
};

// Incremental SHA-256 over OpenSSL's EVP interface.
class Sha256 {
 public:
  Sha256() : ctx_(EVP_MD_CTX_new()) {
    if (!ctx_ || EVP_DigestInit_ex(ctx_.get(), EVP_sha256(), nullptr) != 1)
      throw Error("SHA-256", "OpenSSL could not initialize a SHA-256 digest");
  }
  void update(const void* data, size_t n) {
    if (n == 0) return;
    if (EVP_DigestUpdate(ctx_.get(), data, n) != 1)
      throw Error("SHA-256", "OpenSSL digest update failed");
  }
  void update(std::span<const std::byte> bytes) { update(bytes.data(), bytes.size()); }
  void update(std::string_view s) { update(s.data(), s.size()); }
  // Little-endian, so the fingerprint does not depend on the host's byte order.
  void update_u64(uint64_t v) {
    std::array<unsigned char, 8> b{};
    for (int i = 0; i < 8; ++i) b[size_t(i)] = static_cast<unsigned char>(v >> (8 * i));
    update(b.data(), b.size());
  }
  std::string hex() {
    std::array<unsigned char, EVP_MAX_MD_SIZE> md{};
    unsigned int len = 0;
    if (EVP_DigestFinal_ex(ctx_.get(), md.data(), &len) != 1)
      throw Error("SHA-256", "OpenSSL digest finalization failed");
    static constexpr char kHex[] = "0123456789abcdef";
    std::string out;
    out.reserve(size_t(len) * 2);
    for (unsigned int i = 0; i < len; ++i) {
      out.push_back(kHex[md[i] >> 4]);
      out.push_back(kHex[md[i] & 15]);
    }
    return out;
  }

 private:
  std::unique_ptr<EVP_MD_CTX, MdCtxDeleter> ctx_;
};

// One shard's contribution: its name, size, header and data (see model_fingerprint.h). Every
// variable-length part is preceded by its length so that no two inputs concatenate alike.
void hash_shard(Sha256& h, const std::filesystem::path& path) {
  const std::shared_ptr<MappedFile> file = MappedFile::open(path);
  const std::span<const std::byte> bytes = file->bytes();
  const uint64_t size = bytes.size();
  if (size < 8) throw Error(path.string(), "not a safetensors file: shorter than 8 bytes");
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i)
    header_len = (header_len << 8) | std::to_integer<uint64_t>(bytes[size_t(i)]);
  if (header_len > size - 8)
    throw Error(path.string(), "safetensors header length " + std::to_string(header_len) +
                                   " exceeds the file size " + std::to_string(size));

  const std::string name = path.filename().string();
  h.update_u64(name.size());
  h.update(name);
  h.update_u64(size);
  h.update_u64(header_len);
  h.update(bytes.subspan(8, size_t(header_len)));
  if (size <= kWholeFileLimit) {
    h.update(bytes);
    return;
  }
  // Evenly spaced pieces, the first at 0 and the last ending at the end of the file.
  const uint64_t last_start = size - kPieceBytes;
  for (uint64_t i = 0; i < kPieces; ++i) {
    const uint64_t offset = last_start * i / (kPieces - 1);  // no overflow below 18 PB
    h.update(bytes.subspan(size_t(offset), size_t(kPieceBytes)));
  }
}

}  // namespace

std::string sha256_hex(std::span<const std::byte> bytes) {
  Sha256 h;
  h.update(bytes);
  return h.hex();
}

std::string sha256_hex(std::string_view bytes) {
  Sha256 h;
  h.update(bytes);
  return h.hex();
}

std::string sha256_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(path.string(), "cannot open file to compute its SHA-256");
  Sha256 h;
  std::vector<char> buf(size_t(1) << 20);
  while (in) {
    in.read(buf.data(), std::streamsize(buf.size()));
    const std::streamsize n = in.gcount();
    if (n > 0) h.update(buf.data(), size_t(n));
  }
  if (in.bad()) throw Error(path.string(), "read error while computing its SHA-256");
  return h.hex();
}

ModelFingerprint model_fingerprint(const Checkpoint& checkpoint) {
  const std::filesystem::path& dir = checkpoint.dir();
  ModelFingerprint fp;
  fp.config_sha256 = sha256_file(dir / "config.json");
  if (const auto tok = checkpoint.tokenizer_json()) fp.tokenizer_sha256 = sha256_file(*tok);

  std::vector<std::filesystem::path> shards;
  std::error_code ec;
  for (std::filesystem::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::filesystem::path& p = it->path();
    if (p.extension() == ".safetensors" && it->is_regular_file(ec)) shards.push_back(p);
  }
  if (ec) throw Error(dir.string(), "cannot list the directory: " + ec.message());
  if (shards.empty()) throw Error(dir.string(), "no *.safetensors file to fingerprint");
  std::sort(shards.begin(), shards.end(),
            [](const auto& a, const auto& b) { return a.filename() < b.filename(); });

  Sha256 h;
  h.update_u64(shards.size());
  for (const auto& shard : shards) hash_shard(h, shard);
  fp.weights_sha256 = h.hex();
  return fp;
}

}  // namespace mxlens
