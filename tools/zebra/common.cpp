#include "common.h"

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include "core/log.h"
#include "kernels/cpu/ops.h"

namespace zebra::cli {

void add_model_options(CLI::App* cmd, ModelOptions& o, bool with_json) {
  cmd->add_option("-m,--model", o.model, "model: Hugging Face directory, .gguf file, or llama2.c .bin")->required();
  cmd->add_option("--tokenizer", o.tokenizer, "tokenizer file for llama2.c models (tokenizer.bin)");
  cmd->add_option("-t,--threads", o.threads, "CPU threads (default: all cores)");
  if (with_json) cmd->add_flag("--json", o.json, "print results as JSON on stdout");
}

LoadedModel open_model(const ModelOptions& o, bool need_tokenizer) {
  cpu::set_num_threads(o.threads);
  auto t0 = std::chrono::steady_clock::now();
  LoadOptions lo;
  lo.tokenizer_path = o.tokenizer;
  lo.need_tokenizer = need_tokenizer;
  LoadedModel m = load_model(o.model, lo);
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  log_info("loaded ", o.model, " (", m.model->config.source_format, ", ", m.model->layers.size(), " layers, ",
           m.model->parameter_count() / 1e6, " M params) in ", s, " s");
  return m;
}

std::vector<int64_t> parse_int_list(const std::string& text, const std::string& flag, const std::string& example) {
  std::vector<int64_t> out;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    long long v = -1;
    size_t used = 0;
    try {
      v = std::stoll(item, &used);
    } catch (const std::exception&) {  // not a number, or out of range
      v = -1;
    }
    ZEBRA_CHECK(used == item.size() && v >= 0, flag, ": '", item,
                "' is not a non-negative integer (expected a comma-separated list like ", example, ")");
    out.push_back(v);
  }
  return out;
}

bool valid_utf8(const std::string& s, size_t* bad_offset) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  size_t n = s.size(), i = 0;
  while (i < n) {
    unsigned c = p[i];
    size_t len = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 0;
    bool ok = len > 0 && i + len <= n;
    for (size_t k = 1; ok && k < len; ++k) ok = (p[i + k] & 0xC0) == 0x80;
    if (ok && len == 2) ok = c >= 0xC2;
    if (ok && len == 3) {
      unsigned cp = ((c & 0x0F) << 12) | ((p[i + 1] & 0x3F) << 6) | (p[i + 2] & 0x3F);
      ok = cp >= 0x800 && (cp < 0xD800 || cp > 0xDFFF);
    }
    if (ok && len == 4) {
      unsigned cp = ((c & 0x07) << 18) | ((p[i + 1] & 0x3F) << 12) | ((p[i + 2] & 0x3F) << 6) | (p[i + 3] & 0x3F);
      ok = cp >= 0x10000 && cp <= 0x10FFFF;
    }
    if (!ok) {
      if (bad_offset) *bad_offset = i;
      return false;
    }
    i += len;
  }
  return true;
}

std::string read_text_file(const std::string& path, bool check_utf8) {
  std::ifstream in(path, std::ios::binary);
  ZEBRA_CHECK(in.good(), "cannot open text file ", path);
  std::ostringstream ss;
  ss << in.rdbuf();
  std::string text = ss.str();
  size_t bad = 0;
  if (check_utf8)
    ZEBRA_CHECK(valid_utf8(text, &bad), path, ": invalid UTF-8 at byte offset ", bad);
  return text;
}

std::string json_escape(const std::string& s) {
  std::string out;
  for (unsigned char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  return out;
}

void copy_llama2c_tokenizer(const std::string& tokenizer_path, const std::string& model_dir) {
  namespace fs = std::filesystem;
  if (tokenizer_path.empty() || fs::exists(fs::path(model_dir) / "tokenizer.json")) return;
  fs::copy_file(tokenizer_path, fs::path(model_dir) / "tokenizer.bin", fs::copy_options::overwrite_existing);
}

}  // namespace zebra::cli
