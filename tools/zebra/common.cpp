#include "common.h"

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include "core/log.h"
#include "core/utf8.h"
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

std::string read_text_file(const std::string& path, bool check_utf8) {
  std::ifstream in(path, std::ios::binary);
  ZEBRA_CHECK(in.good(), "cannot open text file ", path);
  std::ostringstream ss;
  ss << in.rdbuf();
  std::string text = ss.str();
  if (check_utf8) {
    const size_t bad = utf8::first_invalid(text);
    ZEBRA_CHECK(bad == std::string::npos, path, ": invalid UTF-8 at byte offset ", bad);
  }
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
