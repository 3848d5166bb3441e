#include "train/dpo.h"

#include "train/losses.h"
#include "train/model_train.h"

namespace zebra {

namespace {

// One sequence prompt + response through the policy, kept for its backward.
struct ScoredSequence {
  std::vector<int32_t> tokens, targets;  // [T]: token t predicts targets[t] (= tokens[t+1])
  std::vector<uint8_t> mask;             // [T]: 1 where targets[t] is a response token
  Arena arena;
  ModelActivations act;
  double logp = 0;
};

void score(const Model& m, const std::vector<int32_t>& prompt, const std::vector<int32_t>& response,
           ScoredSequence& s) {
  ZEBRA_CHECK(!response.empty(), "DPO: a response has no tokens");
  s.tokens = prompt;
  s.tokens.insert(s.tokens.end(), response.begin(), response.end());
  const int64_t T = static_cast<int64_t>(s.tokens.size()) - 1;  // the last token predicts nothing
  ZEBRA_CHECK(T >= 1, "DPO: prompt + response is a single token");
  s.tokens.pop_back();
  s.targets.assign(T, 0);
  s.mask.assign(T, 0);
  for (int64_t t = 0; t < T; ++t) {
    s.targets[t] = t + 1 < T ? s.tokens[t + 1] : response.back();
    s.mask[t] = t + 1 >= static_cast<int64_t>(prompt.size());  // target t+1 lies in the response
  }
  s.arena.plan(model_activation_floats(m, 1, T, false));
  s.arena.reset();
  model_train_forward(m, s.tokens.data(), 1, T, false, s.arena, s.act);
  s.logp = sequence_logprob(s.act.logits, s.targets.data(), s.mask.data(), T, m.config.vocab_size, nullptr, 0.0f);
}

}  // namespace

double response_logprob(const Model& m, const std::vector<int32_t>& prompt, const std::vector<int32_t>& response) {
  ScoredSequence s;
  score(m, prompt, response, s);
  return s.logp;
}

DpoStats dpo_step(const Model& policy, const Model& reference, const std::vector<const PreferencePair*>& pairs,
                  double beta, Model* grad, double scale) {
  ZEBRA_CHECK(!pairs.empty(), "DPO: empty batch of pairs");
  DpoStats st;
  const double inv = 1.0 / static_cast<double>(pairs.size());
  Arena layer_arena;  // unused: no recompute for DPO's short sequences
  for (const PreferencePair* p : pairs) {
    ScoredSequence chosen, rejected;
    score(policy, p->prompt, p->chosen, chosen);
    score(policy, p->prompt, p->rejected, rejected);
    const double rc = response_logprob(reference, p->prompt, p->chosen);
    const double rr = response_logprob(reference, p->prompt, p->rejected);
    double dc = 0, dr = 0;
    st.loss += inv * dpo_loss(chosen.logp, rejected.logp, rc, rr, beta, &dc, &dr);
    const DpoRewards rw = dpo_rewards(chosen.logp, rejected.logp, rc, rr, beta);
    st.margin += inv * rw.margin;
    st.accuracy += inv * (rw.margin > 0);
    st.tokens += static_cast<int64_t>(chosen.tokens.size() + rejected.tokens.size());
    if (!grad) continue;
    for (ScoredSequence* s : {&chosen, &rejected}) {
      const double d = (s == &chosen ? dc : dr) * inv * scale;
      const int64_t T = static_cast<int64_t>(s->tokens.size()), V = policy.config.vocab_size;
      std::vector<float> dlogits(T * V, 0.0f);
      sequence_logprob(s->act.logits, s->targets.data(), s->mask.data(), T, V, dlogits.data(), static_cast<float>(d));
      model_backward(policy, s->tokens.data(), s->act, dlogits.data(), *grad, layer_arena);
    }
  }
  return st;
}

}  // namespace zebra
