// Options and helpers shared by the zebra subcommands.
#pragma once
#include <CLI/CLI.hpp>
#include <cstdint>
#include <string>
#include <vector>

#include "model/loader.h"

namespace zebra::cli {

struct ModelOptions {
  std::string model;      // -m
  std::string tokenizer;  // --tokenizer (llama2.c)
  int threads = 0;        // -t (0 = all cores)
  bool json = false;      // --json
};

// Adds -m/--model, --tokenizer, -t/--threads (and --json when with_json) to a subcommand.
void add_model_options(CLI::App* cmd, ModelOptions& o, bool with_json);
// Sets threads and loads the model, logging what was loaded and how long it took.
LoadedModel open_model(const ModelOptions& o, bool need_tokenizer = true);
// Reads a whole text file; throws with the path on failure. Validates UTF-8 when check_utf8.
std::string read_text_file(const std::string& path, bool check_utf8);
// Copies a llama2.c tokenizer file next to a written model as tokenizer.bin, where the loader finds it
// (save_hybrid writes only HF tokenizer.json files). No-op for an empty path or when tokenizer.json exists.
void copy_llama2c_tokenizer(const std::string& tokenizer_path, const std::string& model_dir);
// JSON string escaping for hand-written JSON output.
std::string json_escape(const std::string& s);
// Parses a comma-separated list of non-negative integers ("0,5,10"); an error names `flag` and the bad
// item and shows `example`. An empty `text` gives an empty list.
std::vector<int64_t> parse_int_list(const std::string& text, const std::string& flag, const std::string& example);

void register_info(CLI::App& app);
void register_generate(CLI::App& app);
void register_chat(CLI::App& app);
void register_tokenize(CLI::App& app);
void register_perplexity(CLI::App& app);
void register_bench(CLI::App& app);
void register_compose(CLI::App& app);
void register_select(CLI::App& app);
void register_eval(CLI::App& app);
void register_distill(CLI::App& app);
void register_dpo(CLI::App& app);

}  // namespace zebra::cli
