// zebra chat: interactive multi-turn conversation using the model's chat template.
// Each turn re-renders the whole conversation and feeds only the tokens the cache does not hold yet.
#include <cstdio>
#include <iostream>

#include "common.h"
#include "core/log.h"
#include "core/utf8.h"
#include "model/generate.h"

namespace zebra::cli {

void add_sampling_options(CLI::App* cmd, SamplerParams& s);

struct ChatOptions {
  ModelOptions model;
  std::string system;
  int64_t n_predict = 512, ctx = 0;
  SamplerParams sampling;
};

static void run_chat(const ChatOptions& o) {
  LoadedModel lm = open_model(o.model);
  const Model& m = *lm.model;
  const Tokenizer& tok = *lm.tokenizer;
  ZEBRA_CHECK(tok.chat_template() != ChatTemplateKind::None,
              "this model has no chat template zebra knows (ChatML or Llama-3); use zebra generate");
  int64_t ctx = o.ctx > 0 ? o.ctx : std::min<int64_t>(m.config.max_position_embeddings, 4096);
  Cache cache = m.make_cache(1, ctx);
  Sampler sampler(o.sampling);
  std::vector<ChatMessage> history;
  if (!o.system.empty()) history.push_back({"system", o.system});
  std::vector<int32_t> cached;  // tokens whose keys/values are in the cache
  std::vector<int32_t> stops = tok.eos_ids();

  std::fprintf(stderr, "chat with %s; an empty line or Ctrl-D ends the session\n", o.model.model.c_str());
  std::string line;
  while (true) {
    std::fprintf(stderr, "\n> ");
    if (!std::getline(std::cin, line) || line.empty()) break;
    if (!utf8::is_valid(line)) {
      std::fprintf(stderr, "error: the input is not valid UTF-8\n");
      continue;
    }
    history.push_back({"user", line});
    std::vector<int32_t> all = tok.encode(render_chat(tok.chat_template(), history, true), false, true);
    size_t common = 0;
    while (common < cached.size() && common < all.size() && cached[common] == all[common]) ++common;
    if (common == all.size()) --common;  // always feed at least one token
    std::vector<int32_t> fresh(all.begin() + common, all.end());
    if (static_cast<int64_t>(all.size()) >= ctx) {
      std::fprintf(stderr, "error: the conversation (%zu tokens) no longer fits the context of %lld tokens\n",
                   all.size(), (long long)ctx);
      break;
    }
    StreamDecoder dec(tok);
    std::string reply;
    std::vector<int32_t> out = generate(m, cache, 0, static_cast<int32_t>(common), fresh, o.n_predict, sampler,
                                        stops, [&](int32_t id) {
                                          std::string piece = dec.push(id);
                                          reply += piece;
                                          std::fwrite(piece.data(), 1, piece.size(), stdout);
                                          std::fflush(stdout);
                                          return true;
                                        });
    std::string rest = dec.flush();
    reply += rest;
    std::fwrite(rest.data(), 1, rest.size(), stdout);
    std::printf("\n");
    std::fflush(stdout);
    history.push_back({"assistant", reply});
    cached = all;
    if (!out.empty()) out.pop_back();  // the last sampled token may not have been fed to the model
    cached.insert(cached.end(), out.begin(), out.end());
  }
}

void register_chat(CLI::App& app) {
  auto* cmd = app.add_subcommand("chat", "interactive chat with the model's chat template");
  auto o = std::make_shared<ChatOptions>();
  add_model_options(cmd, o->model, false);
  cmd->add_option("--system", o->system, "system prompt");
  cmd->add_option("-n,--n-predict", o->n_predict, "max tokens per reply")->capture_default_str();
  cmd->add_option("-c,--ctx-size", o->ctx, "context size");
  add_sampling_options(cmd, o->sampling);
  cmd->callback([o] { run_chat(*o); });
}

}  // namespace zebra::cli
