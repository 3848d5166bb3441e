// Autoregressive generation for one sequence: prefill the prompt, then decode token by token.
#pragma once
#include <cstdint>
#include <functional>
#include <vector>

#include "model/model.h"
#include "model/sampler.h"

namespace zebra {

struct GenerateStats {
  int64_t prompt_tokens = 0, generated = 0;
  double prefill_seconds = 0, decode_seconds = 0;
  bool hit_context_limit = false, hit_stop = false;
};

// Feeds `prompt` (starting at position `start` in cache slot `slot`, whose positions < start must already
// hold this sequence's earlier tokens), then samples up to max_new tokens. on_token(id) is called for each
// generated token; return false from it to stop. Generation stops at any id in stop_ids (not passed to
// on_token) or when the cache's context is full. Returns the generated ids.
std::vector<int32_t> generate(const Model& model, Cache& cache, int32_t slot, int32_t start,
                              const std::vector<int32_t>& prompt, int64_t max_new, Sampler& sampler,
                              const std::vector<int32_t>& stop_ids, const std::function<bool(int32_t)>& on_token,
                              GenerateStats* stats = nullptr);

}  // namespace zebra
