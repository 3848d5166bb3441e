// zebra tokenize: text to token ids (and the pieces they stand for).
#include <cstdio>

#include "common.h"

namespace zebra::cli {

struct TokenizeOptions {
  ModelOptions model;
  std::string text, file;
  bool no_bos = false, no_special = false, ids_only = false;
};

static void run_tokenize(const TokenizeOptions& o) {
  ZEBRA_CHECK(o.text.empty() || o.file.empty(), "tokenize: give TEXT or -f FILE, not both");
  std::string text = o.file.empty() ? o.text : read_text_file(o.file, false);
  LoadedModel lm = open_model(o.model);
  const Tokenizer& tok = *lm.tokenizer;
  std::vector<int32_t> ids = tok.encode(text, !o.no_bos, !o.no_special);
  if (o.model.json) {
    std::printf("{\"ids\": [");
    for (size_t i = 0; i < ids.size(); ++i) std::printf("%s%d", i ? ", " : "", ids[i]);
    std::printf("], \"pieces\": [");
    for (size_t i = 0; i < ids.size(); ++i)
      std::printf("%s\"%s\"", i ? ", " : "", json_escape(tok.token_text(ids[i])).c_str());
    std::printf("], \"count\": %zu}\n", ids.size());
    return;
  }
  if (o.ids_only) {
    for (size_t i = 0; i < ids.size(); ++i) std::printf("%s%d", i ? " " : "", ids[i]);
    std::printf("\n");
    return;
  }
  for (int32_t id : ids) std::printf("%6d -> '%s'\n", id, tok.token_text(id).c_str());
  std::fprintf(stderr, "%zu tokens\n", ids.size());
}

void register_tokenize(CLI::App& app) {
  auto* cmd = app.add_subcommand("tokenize", "show the token ids of a text");
  auto o = std::make_shared<TokenizeOptions>();
  add_model_options(cmd, o->model, true);
  cmd->add_option("text", o->text, "text to tokenize");
  cmd->add_option("-f,--file", o->file, "read the text from a file");
  cmd->add_flag("--no-bos", o->no_bos, "do not add BOS even if the model expects it");
  cmd->add_flag("--no-special", o->no_special, "treat special-token text as plain text");
  cmd->add_flag("--ids", o->ids_only, "print only the ids, space separated");
  cmd->callback([o] { run_tokenize(*o); });
}

}  // namespace zebra::cli
