#include "model/generate.h"

#include <algorithm>
#include <chrono>

namespace zebra {

std::vector<int32_t> generate(const Model& model, Cache& cache, int32_t slot, int32_t start,
                              const std::vector<int32_t>& prompt, int64_t max_new, Sampler& sampler,
                              const std::vector<int32_t>& stop_ids, const std::function<bool(int32_t)>& on_token,
                              GenerateStats* stats) {
  using clock = std::chrono::steady_clock;
  ZEBRA_CHECK(!prompt.empty(), "generate: the prompt has no tokens");
  ZEBRA_CHECK(start + static_cast<int64_t>(prompt.size()) <= cache.n_ctx, "the prompt (", prompt.size(),
              " tokens from position ", start, ") does not fit the context of ", cache.n_ctx, " tokens");
  GenerateStats st;
  st.prompt_tokens = static_cast<int64_t>(prompt.size());
  const int64_t V = model.config.vocab_size;

  auto t0 = clock::now();
  Tensor logits = model.forward(make_sequence_batch(prompt, slot, start, false), cache);
  st.prefill_seconds = std::chrono::duration<double>(clock::now() - t0).count();

  std::vector<int32_t> out;
  int32_t pos = start + static_cast<int32_t>(prompt.size());
  auto t1 = clock::now();
  for (int64_t i = 0; i < max_new; ++i) {
    int32_t next = sampler.sample(logits.ptr(), V);
    if (std::find(stop_ids.begin(), stop_ids.end(), next) != stop_ids.end()) {
      st.hit_stop = true;
      break;
    }
    out.push_back(next);
    if (on_token && !on_token(next)) break;
    if (i + 1 == max_new) break;
    if (pos >= cache.n_ctx) {
      st.hit_context_limit = true;
      break;
    }
    Batch b;
    b.add(next, slot, pos++, true);
    logits = model.forward(b, cache);
  }
  st.generated = static_cast<int64_t>(out.size());
  st.decode_seconds = std::chrono::duration<double>(clock::now() - t1).count();
  if (stats) *stats = st;
  return out;
}

}  // namespace zebra
