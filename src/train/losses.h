// Distillation and preference losses (spec §4.2-4.4), each returning its value and the gradient the
// trainer backpropagates. Row-major; a row is one token. Internals run in double per row, so results do
// not depend on the logits' scale.
#pragma once
#include <cstdint>

namespace zebra {

// ---- Stage 2: end-to-end knowledge distillation (spec §4.3) ----

struct KdOptions {
  // Both distributions are softened by T. The KL term is multiplied by T^2 (Hinton et al. 2015, and the
  // usual implementations): the gradient of KL(softmax(t/T) || softmax(s/T)) w.r.t. s scales as 1/T, so
  // T^2 keeps the gradient's magnitude comparable across temperatures. At T = 1 (the reference) it is 1.
  float temperature = 1.0f;
  float kl_weight = 1.0f;
  // Cross-entropy of the student's un-softened logits (T = 1) on hard targets; needs targets when != 0.
  // Always a mean over the tokens whose target is not kIgnoreIndex (as the model's own LM loss in HF).
  float ce_weight = 0.0f;
  // How the KL sum over (tokens, vocab) is normalised:
  //   TokenMean: divided by n_tokens (a per-token KL; the scale does not depend on sequence length);
  //   BatchMean: divided by batch_rows, as the reference's F.kl_div(..., reduction="batchmean") on
  //              [B, T, V] logits: summed over positions and vocab, divided by the batch size B only, so
  //              its value is T x the TokenMean one (spec §4.3, §8 item 14).
  enum Reduction { TokenMean, BatchMean } reduction = TokenMean;
  int64_t batch_rows = 1;  // B, for BatchMean
};

// Targets equal to this (PyTorch's ignore_index) are left out of the CE term and its mean.
constexpr int32_t kIgnoreIndex = -100;

// student_logits, teacher_logits: [n_tokens, vocab]. Returns
//   kl_weight * T^2 * sum_t KL_t / denom + ce_weight * mean_{t: target valid} -log softmax(s_t)[target_t],
//   KL_t = sum_v p_T(v) (log p_T(v) - log p_S(v)),  p = softmax(logits / T),  denom per o.reduction.
// dlogits: [n_tokens, vocab], OVERWRITTEN with dLoss/d student_logits (nullptr to skip): the KL part is
// kl_weight * T * (p_S - p_T) / denom. targets: [n_tokens] (nullptr when ce_weight == 0).
double kd_loss(const float* student_logits, const float* teacher_logits, int64_t n_tokens, int64_t vocab,
               const KdOptions& o, float* dlogits, const int32_t* targets = nullptr);

// ---- Stage 1: intermediate layer distillation (spec §4.2) ----

// mean_t ||a_t - b_t||_2 over n_tokens rows of dim: the Euclidean distance, NOT squared and NOT divided by
// dim. da [n_tokens, dim] += dLoss/da = (a_t - b_t) / (||a_t - b_t|| * n_tokens) (nullptr to skip; b is
// the teacher's and gets no gradient). No epsilon is added: the direction (a - b)/||a - b|| is a unit
// vector however small the distance, so only an exactly zero distance is special, and there the gradient
// is 0 (the subgradient PyTorch's norm backward also returns). The loss value is therefore exact.
double l2_distance_loss(const float* a, const float* b, int64_t n_tokens, int64_t dim, float* da);

// ---- Stage 3: DPO, sigmoid loss (spec §4.4, TRL's loss_type "sigmoid") ----

// -log sigmoid(beta * ((pc - rc) - (pr - rr))), with pc/pr the policy's and rc/rr the frozen reference's
// sequence log-probabilities of the chosen/rejected responses. d_chosen / d_rejected (nullable) receive
// dLoss/d pc and dLoss/d pr: -beta * sigmoid(-m) and +beta * sigmoid(-m), m the bracket times beta.
double dpo_loss(double policy_chosen_logp, double policy_rejected_logp, double ref_chosen_logp,
                double ref_rejected_logp, double beta, double* d_chosen, double* d_rejected);

// The implicit rewards TRL logs: chosen = beta (pc - rc), rejected = beta (pr - rr), margin = their
// difference (the loss's argument); accuracy is margin > 0.
struct DpoRewards {
  double chosen, rejected, margin;
};
DpoRewards dpo_rewards(double policy_chosen_logp, double policy_rejected_logp, double ref_chosen_logp,
                       double ref_rejected_logp, double beta);

// sum over positions t with mask[t] != 0 (mask nullptr: all) of log softmax(logits_t)[targets[t]].
// logits: [n, vocab]; row t scores targets[t] (the caller aligns them: logits of position t predict token
// t + 1). dlogits [n, vocab] += scale * d(sum)/d logits = scale * (onehot(target) - softmax) on masked rows
// (nullptr to skip); scale is typically dpo_loss's d_chosen or d_rejected.
double sequence_logprob(const float* logits, const int32_t* targets, const uint8_t* mask, int64_t n, int64_t vocab,
                        float* dlogits, float scale);

}  // namespace zebra
