// zebra perplexity: perplexity of a text file (llama-perplexity's windowing).
#include <cstdio>

#include "common.h"
#include "core/progress.h"
#include "eval/perplexity.h"

namespace zebra::cli {

struct PerplexityOptions {
  ModelOptions model;
  std::string file;
  int64_t ctx = 512;
  int64_t max_windows = 0;
};

static void run_perplexity(const PerplexityOptions& o) {
  std::string text = read_text_file(o.file, true);
  ZEBRA_CHECK(!text.empty(), o.file, ": the file is empty");
  LoadedModel lm = open_model(o.model);
  const Model& m = *lm.model;
  ZEBRA_CHECK(o.ctx <= m.config.max_position_embeddings, "-c ", o.ctx, " exceeds the model's context length ",
              m.config.max_position_embeddings);
  std::vector<int32_t> tokens = lm.tokenizer->encode(text, true, false);
  if (o.max_windows > 0 && static_cast<int64_t>(tokens.size()) > o.max_windows * o.ctx)
    tokens.resize(o.max_windows * o.ctx);
  const int32_t bos = lm.tokenizer->adds_bos() ? lm.tokenizer->bos_id() : -1;
  Progress bar("perplexity", static_cast<int64_t>(tokens.size()) / std::max<int64_t>(o.ctx, 1), "windows");
  PerplexityResult r = perplexity(m, tokens, o.ctx, bos, [&](int64_t done, int64_t) { bar.update(done); });
  bar.finish();
  if (o.model.json) {
    std::printf("{\"ppl\": %.6f, \"nll_per_token\": %.6f, \"tokens\": %lld, \"windows\": %lld, \"ctx\": %lld, "
                "\"file\": \"%s\"}\n",
                r.ppl(), r.nll_per_token(), (long long)r.tokens, (long long)r.windows, (long long)o.ctx,
                json_escape(o.file).c_str());
  } else {
    std::printf("ppl = %.4f, %.4f nats/token over %lld scored tokens (%lld windows of %lld)\n", r.ppl(),
                r.nll_per_token(), (long long)r.tokens, (long long)r.windows, (long long)o.ctx);
  }
}

void register_perplexity(CLI::App& app) {
  auto* cmd = app.add_subcommand("perplexity", "perplexity of a text file");
  auto o = std::make_shared<PerplexityOptions>();
  add_model_options(cmd, o->model, true);
  cmd->add_option("-f,--file", o->file, "text file")->required();
  cmd->add_option("-c,--ctx-size", o->ctx, "window size in tokens")->capture_default_str();
  cmd->add_option("--chunks", o->max_windows, "score at most this many windows (0 = all)");
  cmd->callback([o] { run_perplexity(*o); });
}

}  // namespace zebra::cli
