// Perplexity over a token stream, llama-perplexity style: non-overlapping windows of n_ctx tokens, the
// first token of each window replaced by BOS when the model uses one, and only the second half of each
// window scored (so every scored token sees at least n_ctx/2 tokens of context).
#pragma once
#include <cstdint>
#include <functional>
#include <vector>

#include "model/model.h"

namespace zebra {

struct PerplexityResult {
  double nll_sum = 0;  // total negative log-likelihood (nats)
  int64_t tokens = 0;  // scored tokens
  int64_t windows = 0;
  double nll_per_token() const { return tokens ? nll_sum / tokens : 0.0; }
  double ppl() const;
};

// tokens: the whole text; bos: id written at the start of each window (-1 = none).
// on_window(done, total) reports progress.
PerplexityResult perplexity(const Model& model, const std::vector<int32_t>& tokens, int64_t n_ctx, int32_t bos,
                            const std::function<void(int64_t, int64_t)>& on_window = {});

}  // namespace zebra
