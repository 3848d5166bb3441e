#include "eval/loglikelihood.h"

#include <algorithm>
#include <cctype>

#include "eval/cache_slots.h"
#include "kernels/cpu/ops.h"

namespace zebra {

Request encode_request(const Tokenizer& tok, const std::string& context_text, const std::string& continuation_text) {
  auto is_space = [](char c) { return std::isspace(static_cast<unsigned char>(c)) != 0; };
  std::string context = context_text, continuation = continuation_text;
  if (!context.empty() && !is_space(context.back()) && !continuation.empty() && !is_space(continuation.front()))
    continuation = " " + continuation;
  size_t kept = context.size();
  while (kept > 0 && is_space(context[kept - 1])) --kept;
  continuation = context.substr(kept) + continuation;
  context.resize(kept);

  std::vector<int32_t> context_ids = tok.encode(context, false, false);
  std::vector<int32_t> whole = tok.encode(context + continuation, false, false);
  Request r;
  if (tok.adds_bos() && tok.bos_id() >= 0) r.context.push_back(tok.bos_id());
  else if (context_ids.empty()) r.context.push_back(tok.bos_id() >= 0 ? tok.bos_id() : tok.eos_id());
  r.context.insert(r.context.end(), context_ids.begin(), context_ids.end());
  if (whole.size() > context_ids.size()) r.continuation.assign(whole.begin() + context_ids.size(), whole.end());
  ZEBRA_CHECK(!r.continuation.empty(), "the continuation '", continuation_text, "' adds no tokens after its context");
  ZEBRA_CHECK(r.context.front() >= 0, "the context is empty and the tokenizer has neither BOS nor EOS to start it");
  return r;
}

namespace {

// Adds one continuation token's log-probability under `row` (the logits of the position before it).
void score_token(const float* row, int64_t V, int32_t target, RequestScore& s) {
  s.loglik += static_cast<double>(row[target]) - static_cast<double>(cpu::logsumexp(row, V));
  int64_t best = 0;
  for (int64_t v = 1; v < V; ++v)
    if (row[v] > row[best]) best = v;
  if (best != target) s.greedy = false;
}

int32_t token_at(const Request& r, int64_t t) {
  const int64_t nc = static_cast<int64_t>(r.context.size());
  return t < nc ? r.context[t] : r.continuation[t - nc];
}

// How many leading tokens all requests of an item share, at most the shortest context (so every
// continuation token is predicted at or after the prefix's last position).
int64_t shared_prefix(const std::vector<Request>& reqs) {
  int64_t p = static_cast<int64_t>(reqs[0].context.size());
  for (const Request& r : reqs) {
    p = std::min<int64_t>(p, r.context.size());
    int64_t k = 0;
    while (k < p && token_at(r, k) == token_at(reqs[0], k)) ++k;
    p = k;
  }
  return p;
}

// Scores the items [begin, end): item k's requests use cache slots slot0[k] + r.
void score_group(const Model& model, Cache& cache, const std::vector<std::vector<Request>>& items, size_t begin,
                 size_t end, bool naive, std::vector<std::vector<RequestScore>>& out) {
  const int64_t V = model.config.vocab_size;
  std::vector<int32_t> slot0(end - begin);
  for (size_t i = begin, slot = 0; i < end; slot += items[i].size(), ++i) slot0[i - begin] = static_cast<int32_t>(slot);

  // Cached mode: run each item's shared prefix once (logits of its last position only), then give
  // every other request a copy of that slot.
  std::vector<int64_t> prefix(end - begin, 0), prefix_row(end - begin, -1);
  Tensor prefix_logits;  // [items with a prefix, V]
  if (!naive) {
    Batch b;
    int64_t rows = 0;
    for (size_t i = begin; i < end; ++i) {
      const int64_t p = shared_prefix(items[i]);
      prefix[i - begin] = p;
      for (int64_t t = 0; t < p; ++t) b.add(token_at(items[i][0], t), slot0[i - begin], static_cast<int32_t>(t), t == p - 1);
      if (p > 0) prefix_row[i - begin] = rows++;
    }
    if (b.size() > 0) prefix_logits = model.forward(b, cache);
    for (size_t i = begin; i < end; ++i)
      for (size_t r = 1; r < items[i].size(); ++r)
        if (prefix[i - begin] > 0) copy_cache_slot(cache, slot0[i - begin], slot0[i - begin] + r, prefix[i - begin]);
  }

  // Every request continues in its own slot from the prefix (position 0 when naive) up to its
  // second-to-last token, asking for logits from the position before its first continuation token.
  Batch b;
  std::vector<std::vector<int64_t>> first_row(end - begin);  // [item][request] row of its first scored position here
  int64_t rows = 0;
  for (size_t i = begin; i < end; ++i) {
    for (size_t r = 0; r < items[i].size(); ++r) {
      const Request& req = items[i][r];
      const int64_t start = prefix[i - begin], nc = static_cast<int64_t>(req.context.size());
      first_row[i - begin].push_back(rows);
      for (int64_t t = start; t + 1 < req.size(); ++t) {
        const bool want = t >= nc - 1;
        b.add(token_at(req, t), slot0[i - begin] + static_cast<int32_t>(r), static_cast<int32_t>(t), want);
        rows += want;
      }
    }
  }
  Tensor logits;  // [rows, V]
  if (b.size() > 0) logits = model.forward(b, cache);

  for (size_t i = begin; i < end; ++i) {
    std::vector<RequestScore>& scores = out[i];
    scores.assign(items[i].size(), RequestScore{});
    for (size_t r = 0; r < items[i].size(); ++r) {
      const Request& req = items[i][r];
      const int64_t p = prefix[i - begin], nc = static_cast<int64_t>(req.context.size());
      const int64_t first_branch_pos = std::max(p, nc - 1);  // position of row first_row[i][r]
      for (int64_t t = nc; t < req.size(); ++t) {  // token t is predicted by position t - 1
        const float* row = t - 1 < p ? prefix_logits.ptr() + prefix_row[i - begin] * V
                                     : logits.ptr() + (first_row[i - begin][r] + (t - 1 - first_branch_pos)) * V;
        score_token(row, V, token_at(req, t), scores[r]);
      }
    }
  }
}

}  // namespace

std::vector<std::vector<RequestScore>> score_requests(const Model& model,
                                                      const std::vector<std::vector<Request>>& items,
                                                      const ScoreOptions& opts,
                                                      const std::function<void(int64_t)>& on_items) {
  ZEBRA_CHECK(opts.batch_items >= 1, "the batch size must be at least 1, got ", opts.batch_items);
  int64_t max_requests = 1, max_input = 1;
  for (size_t i = 0; i < items.size(); ++i) {
    ZEBRA_CHECK(!items[i].empty(), "item ", i, " has no requests");
    max_requests = std::max<int64_t>(max_requests, items[i].size());
    for (const Request& r : items[i]) {
      ZEBRA_CHECK(!r.context.empty() && !r.continuation.empty(), "item ", i, ": a request has no context or no continuation tokens");
      max_input = std::max<int64_t>(max_input, r.size() - 1);
    }
  }
  ZEBRA_CHECK(max_input <= model.config.max_position_embeddings, "a request needs ", max_input + 1,
              " tokens, more than the model's context length ", model.config.max_position_embeddings, " + 1");
  std::vector<std::vector<RequestScore>> out(items.size());
  const int64_t group = std::min<int64_t>(opts.batch_items, std::max<size_t>(items.size(), 1));
  Cache cache = model.make_cache(group * max_requests, max_input);
  for (size_t begin = 0; begin < items.size(); begin += group) {
    const size_t end = std::min(items.size(), begin + static_cast<size_t>(group));
    score_group(model, cache, items, begin, end, opts.naive, out);
    if (on_items) on_items(static_cast<int64_t>(end));
  }
  return out;
}

}  // namespace zebra
