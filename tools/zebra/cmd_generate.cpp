// zebra generate: complete a prompt; only the generated text goes to stdout.
#include <cstdio>

#include "common.h"
#include "core/log.h"
#include "core/utf8.h"
#include "model/generate.h"

namespace zebra::cli {

struct GenerateOptions {
  ModelOptions model;
  std::string prompt, prompt_file;
  int64_t n_predict = 128;
  int64_t ctx = 0;
  SamplerParams sampling;
  bool no_special = false;
};

static void run_generate(GenerateOptions o) {
  if (!o.prompt_file.empty()) o.prompt = read_text_file(o.prompt_file, true);
  ZEBRA_CHECK(utf8::is_valid(o.prompt), "the prompt is not valid UTF-8");
  ZEBRA_CHECK(o.n_predict >= 0, "-n must be >= 0, got ", o.n_predict);
  LoadedModel lm = open_model(o.model);
  const Model& m = *lm.model;
  const Tokenizer& tok = *lm.tokenizer;

  std::vector<int32_t> prompt = tok.encode(o.prompt, true, !o.no_special);
  if (prompt.empty()) {
    // An empty prompt means "start from BOS" for models that have one (as llama2.c's runner does).
    ZEBRA_CHECK(tok.bos_id() >= 0, "the prompt is empty and this model has no BOS token to start from");
    prompt.push_back(tok.bos_id());
  }
  int64_t ctx = o.ctx > 0 ? o.ctx : std::min<int64_t>(m.config.max_position_embeddings, 4096);
  ZEBRA_CHECK(static_cast<int64_t>(prompt.size()) <= ctx, "the prompt has ", prompt.size(),
              " tokens, more than the context size ", ctx, " (use -c to raise it)");
  Cache cache = m.make_cache(1, ctx);
  Sampler sampler(o.sampling);
  StreamDecoder dec(tok);
  // SentencePiece drops the space that starts the first piece after BOS: let the decoder see the BOS.
  if (prompt.back() == tok.bos_id()) dec.push(prompt.back());
  GenerateStats st;
  generate(m, cache, 0, 0, prompt, o.n_predict, sampler, tok.eos_ids(), [&](int32_t id) {
    std::string piece = dec.push(id);
    std::fwrite(piece.data(), 1, piece.size(), stdout);
    std::fflush(stdout);
    return true;
  }, &st);
  std::string rest = dec.flush();
  std::fwrite(rest.data(), 1, rest.size(), stdout);
  std::printf("\n");
  if (st.hit_context_limit) log_warn("stopped at the context limit of ", ctx, " tokens");
  log_info("prompt: ", st.prompt_tokens, " tokens in ", st.prefill_seconds * 1e3, " ms (",
           st.prompt_tokens / std::max(st.prefill_seconds, 1e-9), " tok/s); generated ", st.generated,
           " tokens in ", st.decode_seconds * 1e3, " ms (",
           st.generated / std::max(st.decode_seconds, 1e-9), " tok/s)");
}

void add_sampling_options(CLI::App* cmd, SamplerParams& s) {
  cmd->add_option("--temp", s.temperature, "temperature (0 = greedy)")->capture_default_str();
  cmd->add_option("--top-k", s.top_k, "top-k (0 = off)")->capture_default_str();
  cmd->add_option("--top-p", s.top_p, "top-p (1 = off)")->capture_default_str();
  cmd->add_option("--min-p", s.min_p, "min-p (0 = off)")->capture_default_str();
  cmd->add_option("--seed", s.seed, "random seed")->capture_default_str();
}

void register_generate(CLI::App& app) {
  auto* cmd = app.add_subcommand("generate", "complete a prompt (generated text on stdout)");
  auto o = std::make_shared<GenerateOptions>();
  add_model_options(cmd, o->model, false);
  cmd->add_option("-p,--prompt", o->prompt, "prompt text (empty: start from BOS)");
  cmd->add_option("-f,--file", o->prompt_file, "read the prompt from a file");
  cmd->add_option("-n,--n-predict", o->n_predict, "tokens to generate")->capture_default_str();
  cmd->add_option("-c,--ctx-size", o->ctx, "context size (default: the model's, at most 4096)");
  cmd->add_flag("--no-special", o->no_special, "treat special-token text in the prompt as plain text");
  add_sampling_options(cmd, o->sampling);
  cmd->callback([o] { run_generate(*o); });
}

}  // namespace zebra::cli
