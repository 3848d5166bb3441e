// Perplexity over a token stream, llama-perplexity style: non-overlapping windows of n_ctx tokens, the
// first token of each window replaced by BOS when the model uses one, and only the second half of each
// window scored (so every scored token sees at least n_ctx/2 tokens of context).
#pragma once
#include <cstdint>
#include <functional>
#include <vector>

#include "model/model.h"

namespace zebra {

// Which positions the windows score: in window w, positions j = first .. n_ctx - 2 predict token j + 1.
struct WindowPlan {
  int64_t n_ctx = 0, first = 0, n_windows = 0;
  int64_t scored() const { return n_ctx - first - 1; }  // positions scored per window
};
// Throws zebra::Error when n_ctx < 4 or the text is shorter than one window.
WindowPlan plan_windows(int64_t n_tokens, int64_t n_ctx);

// Runs window w through the model (cache: one slot of at least n_ctx positions) and returns the logits
// of its scored positions, [plan.scored(), vocab]. bos: id written at the window start (-1 = none).
Tensor window_logits(const Model& model, Cache& cache, const std::vector<int32_t>& tokens, const WindowPlan& plan,
                     int64_t w, int32_t bos);

struct PerplexityResult {
  double nll_sum = 0;  // total negative log-likelihood (nats)
  int64_t tokens = 0;  // scored tokens
  int64_t windows = 0;
  double nll_per_token() const { return tokens ? nll_sum / tokens : 0.0; }
  double ppl() const;
};

// tokens: the whole text; bos: id written at the start of each window (-1 = none).
// on_window(done, total) reports progress; on_logits(window logits [scored, vocab]) sees every window's
// logits in order (for --save-logits).
PerplexityResult perplexity(const Model& model, const std::vector<int32_t>& tokens, int64_t n_ctx, int32_t bos,
                            const std::function<void(int64_t, int64_t)>& on_window = {},
                            const std::function<void(const Tensor&)>& on_logits = {});

}  // namespace zebra
