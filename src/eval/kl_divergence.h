// How far a model's next-token distributions are from a base model's (the teacher), over perplexity's
// windows, as llama-perplexity --kl-divergence reports it. Per scored position with base
// probabilities p and model probabilities q:
//   KL(p‖q) = Σ_v p_v (log p_v − log q_v)                       nats
//   Δp      = q(actual next token) − p(actual next token)       probability, −1..1
//   same top: argmax p == argmax q
#pragma once
#include <cstdint>
#include <functional>
#include <vector>

#include "eval/logits_file.h"
#include "eval/perplexity.h"
#include "model/model.h"

namespace zebra {

// Where the base logits come from: a model run on the same windows, or a file saved by --save-logits
// (already checked against the text with LogitsFile::check_matches). Exactly one is set.
struct BaseLogits {
  const Model* model = nullptr;
  const LogitsFile* saved = nullptr;
};

struct KlResult {
  std::vector<double> kl;       // [scored tokens] KL(base‖model) per position
  std::vector<double> delta_p;  // [scored tokens]
  int64_t same_top = 0;         // positions whose argmax agrees
  double base_nll_sum = 0, model_nll_sum = 0;
  int64_t windows = 0;
  int64_t tokens() const { return static_cast<int64_t>(kl.size()); }
};

// on_base_logits(window logits [scored, vocab]) sees the base's logits of every window (for saving);
// on_window(done, total) reports progress.
KlResult kl_divergence(const Model& model, const BaseLogits& base, const std::vector<int32_t>& tokens, int64_t n_ctx,
                       int32_t bos, const std::function<void(const Tensor&)>& on_base_logits = {},
                       const std::function<void(int64_t, int64_t)>& on_window = {});

// Summary of a sample: mean, its standard error (sample std / sqrt(n)), min, max and percentiles
// (linear interpolation between order statistics, numpy's default).
struct SampleSummary {
  double mean = 0, stderr_ = 0, min = 0, max = 0;
  std::vector<double> percentiles;  // at kSummaryPercentiles
};
inline const double kSummaryPercentiles[] = {1, 5, 10, 25, 50, 75, 90, 95, 99};
SampleSummary summarize(std::vector<double> values);

}  // namespace zebra
