// zebra perplexity: perplexity of a text file (llama-perplexity's windowing), and with --kl-base the KL
// divergence of the model from a base model (or from base logits saved by --save-logits).
#include <cmath>
#include <cstdio>

#include "common.h"
#include "core/log.h"
#include "core/progress.h"
#include "eval/kl_divergence.h"
#include "eval/logits_file.h"
#include "eval/perplexity.h"
#include "io/atomic_write.h"

namespace zebra::cli {

struct PerplexityOptions {
  ModelOptions model;
  std::string file;
  int64_t ctx = 512;
  int64_t max_windows = 0;
  std::string kl_base;      // a model (same tokenizer) or a file from --save-logits
  std::string save_logits;  // write the base's logits here
};

// KL needs the same token ids to mean the same text in both models.
static void check_same_vocabulary(const LoadedModel& a, const std::string& a_name, const LoadedModel& b,
                                  const std::string& b_name) {
  const Tokenizer &ta = *a.tokenizer, &tb = *b.tokenizer;
  ZEBRA_CHECK(a.model->config.vocab_size == b.model->config.vocab_size && ta.vocab_size() == tb.vocab_size(),
              "--kl-base: ", b_name, " has a vocabulary of ", b.model->config.vocab_size, " tokens (tokenizer ",
              tb.vocab_size(), "), ", a_name, " has ", a.model->config.vocab_size, " (tokenizer ", ta.vocab_size(),
              "); KL divergence needs the same tokenizer");
  // Special tokens may be spelled differently by two formats of one vocabulary (llama2.c's "\n<s>\n" is
  // "<s>" in tokenizer.json); ordinary tokens must be the same bytes.
  for (int32_t id = 0; id < ta.vocab_size(); ++id)
    ZEBRA_CHECK((ta.is_special(id) && tb.is_special(id)) || ta.token_bytes(id) == tb.token_bytes(id),
                "--kl-base: token ", id, " is '",
                json_escape(tb.token_bytes(id)), "' in ", b_name, " but '", json_escape(ta.token_bytes(id)), "' in ",
                a_name, "; KL divergence needs the same tokenizer");
}

static void print_perplexity(const PerplexityOptions& o, const PerplexityResult& r) {
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

static std::string summary_json(const SampleSummary& s) {
  static const char* names[] = {"p1", "p5", "p10", "p25", "p50", "p75", "p90", "p95", "p99"};
  std::string out = cat("{\"mean\": ", s.mean, ", \"stderr\": ", s.stderr_, ", \"min\": ", s.min);
  for (size_t i = 0; i < s.percentiles.size(); ++i) out += cat(", \"", names[i], "\": ", s.percentiles[i]);
  return out + cat(", \"max\": ", s.max, "}");
}

static void print_kl(const PerplexityOptions& o, const KlResult& r) {
  const double n = static_cast<double>(r.tokens());
  const double base_ppl = std::exp(r.base_nll_sum / n), ppl = std::exp(r.model_nll_sum / n);
  const SampleSummary kl = summarize(r.kl), dp = summarize(r.delta_p);
  const double same_top = r.same_top / n;
  if (o.model.json) {
    std::string j = cat("{\"ppl\": ", ppl, ", \"base_ppl\": ", base_ppl, ", \"delta_ppl\": ", ppl - base_ppl,
                        ", \"nll_per_token\": ", r.model_nll_sum / n, ", \"base_nll_per_token\": ", r.base_nll_sum / n,
                        ", \"kl\": ", summary_json(kl), ", \"same_top_p\": ", same_top,
                        ", \"delta_p\": ", summary_json(dp), ", \"tokens\": ", r.tokens(), ", \"windows\": ", r.windows,
                        ", \"ctx\": ", o.ctx, ", \"file\": \"", json_escape(o.file), "\", \"base\": \"",
                        json_escape(o.kl_base), "\"}\n");
    std::fputs(j.c_str(), stdout);
    return;
  }
  std::printf("KL divergence from base %s over %lld scored tokens (%lld windows of %lld)\n\n", o.kl_base.c_str(),
              (long long)r.tokens(), (long long)r.windows, (long long)o.ctx);
  std::printf("| | value |\n|---|---:|\n");
  std::printf("| ppl (base) | %.4f |\n| ppl (model) | %.4f |\n| Δppl | %.4f |\n", base_ppl, ppl, ppl - base_ppl);
  std::printf("| mean KL(base‖model) | %.6f ± %.6f nats |\n", kl.mean, kl.stderr_);
  std::printf("| same top p | %.3f %% |\n| mean Δp | %.3f ± %.3f %% |\n\n", 100 * same_top, 100 * dp.mean,
              100 * dp.stderr_);
  std::printf("| | KL (nats) | Δp (%%) |\n|---|---:|---:|\n");
  std::printf("| min | %.6f | %.3f |\n", kl.min, 100 * dp.min);
  for (size_t i = 0; i < kl.percentiles.size(); ++i)
    std::printf("| %g%%%s | %.6f | %.3f |\n", kSummaryPercentiles[i], kSummaryPercentiles[i] == 50 ? " (median)" : "",
                kl.percentiles[i], 100 * dp.percentiles[i]);
  std::printf("| max | %.6f | %.3f |\n", kl.max, 100 * dp.max);
}

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
  const WindowPlan plan = plan_windows(static_cast<int64_t>(tokens.size()), o.ctx);
  tokens.resize(plan.n_windows * plan.n_ctx);  // the tail shorter than a window is never scored
  Progress bar("perplexity", plan.n_windows, "windows");
  auto progress = [&](int64_t done, int64_t) { bar.update(done); };

  // --save-logits streams the base's logits (the --kl-base model's, else this model's) into a file that
  // appears only when complete.
  const LogitsHeader header{m.config.vocab_size, plan.n_ctx, plan.scored(), plan.n_windows, bos};
  auto with_saved_logits = [&](const std::function<void(const std::function<void(const Tensor&)>&)>& run) {
    if (o.save_logits.empty()) return run({});
    write_file_atomic(o.save_logits, [&](std::ostream& out) {
      LogitsFileWriter writer(out, header, tokens);
      run([&](const Tensor& logits) { writer.write_window(logits); });
    });
    log_info("saved base logits of ", plan.n_windows * plan.scored(), " positions to ", o.save_logits);
  };

  if (o.kl_base.empty()) {
    PerplexityResult r;
    with_saved_logits([&](const auto& on_logits) { r = perplexity(m, tokens, o.ctx, bos, progress, on_logits); });
    bar.finish();
    print_perplexity(o, r);
    return;
  }
  KlResult r;
  if (is_logits_file(o.kl_base)) {
    ZEBRA_CHECK(o.save_logits.empty(), "--save-logits with --kl-base ", o.kl_base,
                ": the base logits are already saved in that file");
    LogitsFile saved(o.kl_base);
    saved.check_matches(m.config.vocab_size, o.ctx, bos, tokens);
    r = kl_divergence(m, BaseLogits{nullptr, &saved}, tokens, o.ctx, bos, {}, progress);
  } else {
    ModelOptions bo = o.model;
    bo.model = o.kl_base;
    LoadedModel base = open_model(bo);
    check_same_vocabulary(lm, o.model.model, base, o.kl_base);
    with_saved_logits([&](const auto& on_logits) {
      r = kl_divergence(m, BaseLogits{base.model.get(), nullptr}, tokens, o.ctx, bos, on_logits, progress);
    });
  }
  bar.finish();
  print_kl(o, r);
}

void register_perplexity(CLI::App& app) {
  auto* cmd = app.add_subcommand("perplexity", "perplexity of a text file; KL divergence from a base model");
  auto o = std::make_shared<PerplexityOptions>();
  add_model_options(cmd, o->model, true);
  cmd->add_option("-f,--file", o->file, "text file")->required();
  cmd->add_option("-c,--ctx-size", o->ctx, "window size in tokens")->capture_default_str();
  cmd->add_option("--chunks", o->max_windows, "score at most this many windows (0 = all)");
  cmd->add_option("--kl-base", o->kl_base,
                  "base (teacher) for KL(base||model): a model with the same tokenizer, or a file from --save-logits");
  cmd->add_option("--save-logits", o->save_logits,
                  "write the base's scored-position logits (the --kl-base model's, else -m's) for a later --kl-base");
  cmd->callback([o] { run_perplexity(*o); });
}

}  // namespace zebra::cli
