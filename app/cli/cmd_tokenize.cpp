// mxlens-cli tokenize MODEL FILE: the ids the engine feeds the model, through the same
// Tokenizer (Hugging Face tokenizer.json semantics), or ids back to text with --decode.
#include <cctype>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "app/cli/commands.h"
#include "core/text/tokenizer.h"
#include "core/text/utf8.h"
#include "core/util/error.h"

namespace mxlens::cli {

namespace {

std::filesystem::path tokenizer_json_of(const std::filesystem::path& arg) {
  std::error_code ec;
  if (std::filesystem::is_directory(arg, ec)) {
    const auto p = arg / "tokenizer.json";
    if (!std::filesystem::is_regular_file(p, ec))
      throw Error(arg.string(), "directory has no tokenizer.json");
    return p;
  }
  if (!std::filesystem::exists(arg, ec)) throw Error(arg.string(), "no such file or directory");
  return arg;
}

// A piece or text made printable on one line: control characters and backslashes escaped.
std::string escaped(std::string_view s) {
  std::string out;
  for (unsigned char c : s) {
    switch (c) {
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\\':
        out += "\\\\";
        break;
      default:
        if (c < 0x20 || c == 0x7F) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\x%02X", c);
          out += buf;
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  return out;
}

void write_out(const std::string& s) {
  std::fwrite(s.data(), 1, s.size(), stdout);
}

// Ids from a file: integers separated by anything that is not a digit or '-' (so both
// "1 80 147" and the {"ids":[1,80,147]} that --json prints are accepted).
std::vector<int32_t> read_ids(const std::filesystem::path& p, const Tokenizer& tok) {
  const std::string text = read_text_file(p);
  std::vector<int32_t> ids;
  std::size_t i = 0;
  while (i < text.size()) {
    const unsigned char c = static_cast<unsigned char>(text[i]);
    if (!std::isdigit(c) && c != '-') {
      if (std::isalpha(c) && text.compare(i, 3, "ids") != 0)
        throw Error(p.string(), "unexpected '" + std::string(1, text[i]) + "' at byte offset " +
                                    std::to_string(i) + " (expected token ids)");
      i += std::isalpha(c) ? 3 : 1;
      continue;
    }
    std::size_t j = i + 1;
    while (j < text.size() && std::isdigit(static_cast<unsigned char>(text[j]))) ++j;
    const std::string number = text.substr(i, j - i);
    long long v = 0;
    try {
      v = std::stoll(number);
    } catch (const std::exception&) {
      throw Error(p.string(), "bad token id '" + number + "' at byte offset " + std::to_string(i));
    }
    if (v < 0 || v >= tok.vocab_size())
      throw Error(p.string(), "token id " + number + " at byte offset " + std::to_string(i) +
                                  " is outside the vocab [0, " + std::to_string(tok.vocab_size()) +
                                  ")");
    ids.push_back(static_cast<int32_t>(v));
    i = j;
  }
  if (ids.empty()) throw Error(p.string(), "no token ids in the file");
  return ids;
}

}  // namespace

void register_tokenize(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "tokenize", "Encode a UTF-8 text file to token ids (or decode ids with --decode)");
  struct Options {
    std::string model;
    std::string file;
    bool no_special = false;
    bool json = false;
    bool decode = false;
  };
  auto opts = std::make_shared<Options>();
  cmd->add_option("model", opts->model,
                  "Model directory containing tokenizer.json, or a tokenizer.json file")
      ->required();
  cmd->add_option("file", opts->file,
                  "UTF-8 text file to encode (with --decode: a file of token ids)")
      ->required();
  cmd->add_flag("--no-special", opts->no_special,
                "Encode without the post-processor's special tokens (BOS); with --decode, drop "
                "special tokens from the text");
  cmd->add_flag("--json", opts->json, "Print exactly {\"ids\":[...]} (encode only)");
  cmd->add_flag("--decode", opts->decode,
                "Read token ids (whitespace/comma separated, or the --json output) and print "
                "the decoded text");
  cmd->callback([opts] {
    const Tokenizer tok = Tokenizer::load(tokenizer_json_of(opts->model));
    if (opts->decode) {
      if (opts->json) throw Error("--json", "not available with --decode");
      write_out(tok.decode(read_ids(opts->file, tok), opts->no_special));
      return;
    }
    const std::string text = read_text_file(opts->file);
    const std::vector<int32_t> ids = tok.encode(text, !opts->no_special);
    std::string out;
    if (opts->json) {
      out.reserve(ids.size() * 7 + 16);
      out += "{\"ids\":[";
      for (std::size_t k = 0; k < ids.size(); ++k) {
        if (k) out += ',';
        out += std::to_string(ids[k]);
      }
      out += "]}\n";
      write_out(out);
      return;
    }
    const auto unk = tok.unk_id();
    std::size_t n_unk = 0;
    for (std::size_t k = 0; k < ids.size(); ++k) {
      const int32_t id = ids[k];
      if (unk && id == *unk) ++n_unk;
      out += std::to_string(k) + "\t" + std::to_string(id) + "\t" + escaped(tok.token(id)) + "\n";
    }
    out += std::to_string(ids.size()) + " tokens, " + std::to_string(n_unk) + " unknown" +
           (unk ? " (id " + std::to_string(*unk) + ")" : " (no unk token)") + ", " +
           std::to_string(text.size()) + " bytes, " +
           (opts->no_special ? "no special tokens" : "with special tokens") + "\n";
    write_out(out);
  });
}

}  // namespace mxlens::cli
