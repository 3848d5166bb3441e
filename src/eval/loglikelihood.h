// Log-likelihood of continuations given contexts, the primitive of zero-shot evaluation
// (lm-eval-harness's `loglikelihood` requests).
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "model/model.h"
#include "tokenizer/tokenizer.h"

namespace zebra {

// Token ids of one request: the model reads context + continuation[:-1] and every continuation token is
// scored from the logits of the position before it.
struct Request {
  std::vector<int32_t> context;       // starts with BOS when the model uses one; never empty
  std::vector<int32_t> continuation;  // never empty
  int64_t size() const { return static_cast<int64_t>(context.size() + continuation.size()); }
};

// Tokenises a (context, continuation) text pair as lm-eval-harness does:
//  1. the continuation is joined with a space (lm-eval's target_delimiter " ") unless the context is
//     empty, ends in whitespace, or the continuation starts with whitespace;
//  2. trailing whitespace of the context moves to the start of the continuation (_encode_pair);
//  3. context_ids = encode(context), whole = encode(context + continuation), continuation_ids =
//     whole[len(context_ids):] (so a BPE merge across the boundary is attributed to the continuation);
//  4. BOS is prepended when the tokenizer uses one; an empty context without BOS becomes [EOS]
//     (lm-eval's prefix token).
// Throws zebra::Error when the continuation produces no tokens of its own.
Request encode_request(const Tokenizer& tok, const std::string& context, const std::string& continuation);

struct RequestScore {
  double loglik = 0;    // sum over continuation tokens of log p(token | everything before it)
  bool greedy = true;   // every continuation token is the argmax of its position's logits
};

struct ScoreOptions {
  int64_t batch_items = 8;  // items processed together, each in its own cache slots
  // false: an item's shared token prefix is run once and each request continues from a copy of that
  // cache slot; true: every request is a full forward of its own tokens (the cross-check).
  bool naive = false;
};

// Scores every request of every item ([item][request] -> score). The cache is sized for the longest
// request; throws zebra::Error when one exceeds the model's context length. on_items(done) reports the
// number of items finished so far.
std::vector<std::vector<RequestScore>> score_requests(const Model& model,
                                                      const std::vector<std::vector<Request>>& items,
                                                      const ScoreOptions& opts,
                                                      const std::function<void(int64_t)>& on_items = {});

}  // namespace zebra
