// zebra data: training data for distillation.
//   zebra data pack -m MODEL --data FILE... --seq-len L -o DIR [--holdout F | --holdout-rows N] [--seed S]
//   zebra data info PATH [-m MODEL]      (PATH: a packed directory or a .ztok shard)
//   zebra data prefs -m MODEL FILE [--max-length 1024 --max-prompt-length 512]
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "common.h"
#include "core/log.h"
#include "io/gguf.h"
#include "tokenizer/gguf_vocab.h"
#include "train/packing.h"
#include "train/preference_data.h"

namespace zebra::cli {

namespace fs = std::filesystem;

// Only the tokenizer (no weights) for Hugging Face directories and GGUF files; the loader for llama2.c.
// These are the calls load_model makes, so the tokenizer (and its fingerprint) is the model's.
static std::unique_ptr<Tokenizer> open_tokenizer(const ModelOptions& o) {
  switch (detect_model_format(o.model)) {
    case ModelFormat::HfDirectory:
      ZEBRA_CHECK(fs::exists(fs::path(o.model) / "tokenizer.json"), "model directory ", o.model,
                  " has no tokenizer.json");
      return load_hf_tokenizer(o.model);
    case ModelFormat::Gguf: {
      GgufFile g(o.model);
      return tokenizer_from_gguf(g);
    }
    case ModelFormat::Llama2c:
      break;
  }
  return open_model(o, true).tokenizer;
}

struct PackCmd {
  ModelOptions model;
  std::vector<std::string> data;
  int64_t seq_len = 0;
  std::string out;
  double holdout = 0.0;
  int64_t holdout_rows = -1;
  uint64_t seed = 42;
  bool no_shuffle = false, force = false;
  std::string doc_separator;
};

static void run_pack(const PackCmd& o) {
  auto tok = open_tokenizer(o.model);
  PackOptions po;
  po.holdout_fraction = o.holdout;
  po.holdout_rows = o.holdout_rows;
  po.seed = o.seed;
  po.shuffle = !o.no_shuffle;
  po.force = o.force;
  po.doc_separator = o.doc_separator;
  PackedData d = prepare_data(*tok, o.data, o.seq_len, o.out, po);
  const PackStats& s = d.stats;
  if (o.model.json) {
    nlohmann::json j = {{"dir", d.dir},
                        {"train", d.train_path},
                        {"holdout", d.holdout_path},
                        {"reused", d.reused},
                        {"seq_len", d.seq_len},
                        {"tokenizer_fingerprint", fingerprint_hex(d.fingerprint)},
                        {"files", s.files},
                        {"documents", s.documents},
                        {"empty_documents", s.empty_documents},
                        {"tokens", s.tokens},
                        {"rows", s.rows},
                        {"train_rows", s.train_rows},
                        {"holdout_rows", s.holdout_rows},
                        {"dropped_tokens", s.dropped_tokens}};
    std::printf("%s\n", j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
  } else {
    std::printf("%s: %lld train + %lld held-out rows of %lld tokens (%lld documents, %lld tokens, %lld dropped)%s\n",
                d.dir.c_str(), static_cast<long long>(s.train_rows), static_cast<long long>(s.holdout_rows),
                static_cast<long long>(d.seq_len), static_cast<long long>(s.documents),
                static_cast<long long>(s.tokens), static_cast<long long>(s.dropped_tokens),
                d.reused ? " [cached]" : "");
  }
}

struct InfoCmd {
  std::string path, model, tokenizer;
  int64_t show = 0;
  bool json = false;
};

static void run_info(const InfoCmd& o) {
  std::unique_ptr<Tokenizer> tok;
  if (!o.model.empty()) {
    ModelOptions mo;
    mo.model = o.model;
    mo.tokenizer = o.tokenizer;
    tok = open_tokenizer(mo);
  }
  std::vector<std::pair<std::string, TokenShard>> shards;
  if (fs::is_directory(o.path)) {
    PackedData d = open_packed_data(o.path, tok.get());
    shards.emplace_back("train", std::move(d.train));
    shards.emplace_back("holdout", std::move(d.holdout));
  } else {
    shards.emplace_back(fs::path(o.path).stem().string(), TokenShard::open(o.path));
    if (tok) shards.back().second.check_tokenizer(*tok);
  }
  nlohmann::json out = nlohmann::json::array();
  for (auto& [name, s] : shards) {
    nlohmann::json j = {{"name", name},       {"path", s.path()},       {"rows", s.rows()},
                        {"row_len", s.row_len()}, {"tokens", s.tokens()}, {"vocab_size", s.vocab_size()},
                        {"tokenizer_fingerprint", fingerprint_hex(s.fingerprint())}};
    if (tok && o.show > 0 && s.rows() > 0) {
      std::vector<int32_t> ids = s.row_ids(0);
      ids.resize(static_cast<size_t>(std::min<int64_t>(o.show, s.row_len())));
      j["first_row_text"] = tok->decode(ids);
    }
    if (!o.json) {
      std::printf("%s: %s, %lld rows x %lld tokens, vocab %u, tokenizer %s\n", name.c_str(), s.path().c_str(),
                  static_cast<long long>(s.rows()), static_cast<long long>(s.row_len()), s.vocab_size(),
                  fingerprint_hex(s.fingerprint()).c_str());
      if (j.contains("first_row_text"))
        std::printf("  row 0: %s\n", j["first_row_text"].get<std::string>().c_str());
    }
    out.push_back(j);
  }
  if (o.json) std::printf("%s\n", out.dump(2, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
}

struct PrefsCmd {
  ModelOptions model;
  std::string file;
  int64_t max_length = 1024, max_prompt_length = 512;
};

static void run_prefs(const PrefsCmd& o) {
  auto tok = open_tokenizer(o.model);
  std::vector<PreferencePair> pairs = load_preferences(*tok, o.file, o.max_length, o.max_prompt_length);
  int64_t truncated = 0, prompt = 0, chosen = 0, rejected = 0;
  for (const PreferencePair& p : pairs) {
    truncated += p.truncated;
    prompt += static_cast<int64_t>(p.prompt.size());
    chosen += static_cast<int64_t>(p.chosen.size());
    rejected += static_cast<int64_t>(p.rejected.size());
  }
  const double n = static_cast<double>(pairs.size());
  if (o.model.json) {
    nlohmann::json j = {{"pairs", pairs.size()},       {"truncated", truncated},
                        {"mean_prompt_tokens", prompt / n}, {"mean_chosen_tokens", chosen / n},
                        {"mean_rejected_tokens", rejected / n}};
    std::printf("%s\n", j.dump(2).c_str());
  } else {
    std::printf("%s: %zu pairs (%lld truncated); mean tokens: prompt %.1f, chosen %.1f, rejected %.1f\n",
                o.file.c_str(), pairs.size(), static_cast<long long>(truncated), prompt / n, chosen / n, rejected / n);
  }
}

void register_data(CLI::App& app) {
  auto* data = app.add_subcommand("data", "training data: pack text/JSONL into token shards, inspect them");
  data->require_subcommand(1);

  auto* pack = data->add_subcommand("pack", "tokenise documents into shuffled rows of --seq-len tokens (cached)");
  auto p = std::make_shared<PackCmd>();
  add_model_options(pack, p->model, true);
  pack->add_option("--data", p->data, ".txt (one document per file) or .jsonl ({\"text\"} or {\"messages\"}) files")
      ->required()
      ->expected(1, -1);
  pack->add_option("--seq-len,-L", p->seq_len, "tokens per row")->required();
  pack->add_option("-o,--out", p->out, "output directory (train.ztok, holdout.ztok, manifest.json)")->required();
  auto* hf = pack->add_option("--holdout", p->holdout, "share of rows held out for evaluation, in [0, 1)")
                 ->capture_default_str();
  pack->add_option("--holdout-rows", p->holdout_rows, "exact number of held-out rows")->excludes(hf);
  pack->add_option("--seed", p->seed, "row shuffle seed")->capture_default_str();
  pack->add_flag("--no-shuffle", p->no_shuffle, "keep rows in stream order");
  pack->add_option("--doc-separator", p->doc_separator,
                   "split non-JSONL files into documents at this string (e.g. '<|endoftext|>')");
  pack->add_flag("--force", p->force, "repack even when the cached manifest matches");
  pack->callback([p] { run_pack(*p); });

  auto* info = data->add_subcommand("info", "describe a packed directory or a .ztok shard");
  auto i = std::make_shared<InfoCmd>();
  info->add_option("path", i->path, "packed directory or .ztok file")->required();
  info->add_option("-m,--model", i->model, "check the shards against this model's tokenizer");
  info->add_option("--tokenizer", i->tokenizer, "tokenizer file for llama2.c models");
  info->add_option("--show", i->show, "decode the first N tokens of row 0 (needs -m)");
  info->add_flag("--json", i->json, "print results as JSON on stdout");
  info->callback([i] { run_info(*i); });

  auto* prefs = data->add_subcommand("prefs", "tokenise a DPO preference JSONL and report lengths");
  auto r = std::make_shared<PrefsCmd>();
  add_model_options(prefs, r->model, true);
  prefs->add_option("file", r->file, "JSONL with prompt, chosen, rejected")->required();
  prefs->add_option("--max-length", r->max_length, "prompt + response tokens")->capture_default_str();
  prefs->add_option("--max-prompt-length", r->max_prompt_length, "prompt tokens kept (from the end)")
      ->capture_default_str();
  prefs->callback([r] { run_prefs(*r); });
}

}  // namespace zebra::cli
