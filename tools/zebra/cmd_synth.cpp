// zebra synth: sample a corpus from a teacher (pseudo-labels for distillation), written as JSONL.
#include <unistd.h>

#include <chrono>
#include <cstdio>

#include "common.h"
#include "core/log.h"
#include "io/atomic_write.h"
#include "train/synth.h"

namespace zebra::cli {

void add_sampling_options(CLI::App* cmd, SamplerParams& s);  // cmd_generate.cpp

struct SynthCmd {
  ModelOptions model;
  SynthOptions synth;
  std::string prompts_file, out;
  bool n_given = false;
};

// One status line: documents and tokens with their rates (a redrawn line on a terminal, every 10 s otherwise).
class SynthStatus {
 public:
  explicit SynthStatus(int64_t total) : total_(total), tty_(isatty(STDERR_FILENO)) {}
  void update(int64_t docs, int64_t tokens, bool final = false) {
    if (log_level() < LogLevel::Info) return;
    auto now = std::chrono::steady_clock::now();
    double since = std::chrono::duration<double>(now - last_).count();
    if (!final && since < (tty_ ? 0.1 : 10.0)) return;
    last_ = now;
    double t = std::max(1e-9, std::chrono::duration<double>(now - start_).count());
    double eta = docs > 0 ? (total_ - docs) * t / docs : -1;
    std::fprintf(stderr, "%ssynth: %lld/%lld docs, %lld tokens, %.2f docs/s, %.1f tokens/s, %s %.0f s%s",
                 tty_ ? "\r" : "", static_cast<long long>(docs), static_cast<long long>(total_),
                 static_cast<long long>(tokens), docs / t, tokens / t, final ? "elapsed" : "ETA", final ? t : eta,
                 tty_ && !final ? "   " : "\n");
    std::fflush(stderr);
  }

 private:
  int64_t total_;
  bool tty_;
  std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now(), last_ = start_;
};

static void run_synth(SynthCmd o) {
  if (!o.prompts_file.empty()) {
    o.synth.prompts = read_prompts_file(o.prompts_file);
    if (!o.n_given) o.synth.n_docs = static_cast<int64_t>(o.synth.prompts.size());
  }
  LoadedModel lm = open_model(o.model);
  SynthStatus status(o.synth.n_docs);
  int64_t tokens = 0;
  std::vector<SynthDoc> docs = synthesize(*lm.model, *lm.tokenizer, o.synth, [&](int64_t d, int64_t t) {
    tokens = t;
    status.update(d, t);
  });
  status.update(static_cast<int64_t>(docs.size()), tokens, true);
  int64_t stopped = 0;
  std::string body;
  for (const SynthDoc& d : docs) {
    body += d.jsonl(o.synth.chat);
    body += '\n';
    stopped += d.hit_stop;
  }
  write_file_atomic(o.out, body);
  log_info("wrote ", docs.size(), " documents (", tokens, " generated tokens; ", stopped, " ended at EOS) to ", o.out);
}

void register_synth(CLI::App& app) {
  auto* cmd = app.add_subcommand("synth", "sample a training corpus from a teacher (JSONL {\"text\"} lines)");
  auto o = std::make_shared<SynthCmd>();
  add_model_options(cmd, o->model, false);
  auto* n = cmd->add_option("-n,--n-docs", o->synth.n_docs, "documents to sample (default: 100, or one per prompt)");
  cmd->add_option("--max-tokens", o->synth.max_tokens, "generated tokens per document (fewer at EOS)")
      ->capture_default_str();
  cmd->add_option("--prompts", o->prompts_file,
                  "prompts: one per line, or .jsonl with {\"text\"} / {\"prompt\"} (default: start from BOS); "
                  "cycled when -n exceeds their number");
  cmd->add_flag("--chat", o->synth.chat,
                "prompts are user messages: render with the chat template, write {\"messages\": [user, assistant]}");
  cmd->add_option("-b,--batch", o->synth.batch, "sequences decoded per forward pass")->capture_default_str();
  cmd->add_option("-c,--ctx-size", o->synth.ctx, "context size (default: longest prompt + --max-tokens)");
  cmd->add_option("-o,--out", o->out, "output JSONL file (written atomically)")->required();
  add_sampling_options(cmd, o->synth.sampling);
  cmd->callback([o, n] {
    o->n_given = n->count() > 0;
    run_synth(*o);
  });
}

}  // namespace zebra::cli
