// Stage 3, DPO (spec §4.4): the sigmoid loss of TRL on (prompt, chosen, rejected) pairs, with summed
// response log-probabilities under the policy and under a frozen copy of the starting model.
#pragma once
#include <cstdint>
#include <vector>

#include "core/arena.h"
#include "model/model.h"
#include "train/preference_data.h"

namespace zebra {

struct DpoStats {
  double loss = 0;       // mean over pairs
  double margin = 0;     // mean of beta * ((pc - rc) - (pr - rr)): rises as the policy learns the preference
  double accuracy = 0;   // share of pairs with a positive margin
  int64_t tokens = 0;    // tokens run through the policy
};

// Summed log-probability of the response tokens of prompt + response under m (no gradient).
double response_logprob(const Model& m, const std::vector<int32_t>& prompt, const std::vector<int32_t>& response);

// One micro-batch of pairs. Accumulates `scale` times the gradient of the mean loss into grad (zeros_like
// (policy)); grad == nullptr evaluates only.
DpoStats dpo_step(const Model& policy, const Model& reference, const std::vector<const PreferencePair*>& pairs,
                  double beta, Model* grad, double scale);

}  // namespace zebra
