#include "train/losses.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/error.h"

namespace zebra {

namespace {

// Below this many elements a parallel region costs more than it saves.
constexpr int64_t kParallelMin = 1 << 16;

// out[v] = log softmax(z * scale)[v] in double (max subtracted, so any finite logits are safe).
void log_softmax(const float* z, int64_t vocab, double scale, double* out) {
  double mx = -INFINITY;
  for (int64_t v = 0; v < vocab; ++v) mx = std::max(mx, (double)z[v] * scale);
  double s = 0.0;
  for (int64_t v = 0; v < vocab; ++v) s += std::exp((double)z[v] * scale - mx);
  const double lse = mx + std::log(s);
  for (int64_t v = 0; v < vocab; ++v) out[v] = (double)z[v] * scale - lse;
}

// Rows are independent, so they run in parallel; per-row results are summed afterwards in row order so
// the total does not depend on the thread count.
double sum_in_order(const std::vector<double>& parts) {
  double s = 0.0;
  for (double p : parts) s += p;
  return s;
}

}  // namespace

double kd_loss(const float* student_logits, const float* teacher_logits, int64_t n_tokens, int64_t vocab,
               const KdOptions& o, float* dlogits, const int32_t* targets) {
  ZEBRA_CHECK(n_tokens >= 0 && vocab > 0, "kd_loss: bad shape [", n_tokens, ", ", vocab, "]");
  ZEBRA_CHECK(std::isfinite(o.temperature) && o.temperature > 0, "kd_loss: temperature must be > 0, got ",
              o.temperature);
  ZEBRA_CHECK(o.ce_weight == 0 || targets, "kd_loss: ce_weight ", o.ce_weight, " needs targets");
  double denom = (double)n_tokens;
  if (o.reduction == KdOptions::BatchMean) {
    ZEBRA_CHECK(o.batch_rows > 0 && n_tokens % o.batch_rows == 0, "kd_loss: batchmean needs batch_rows > 0 dividing ",
                n_tokens, " tokens, got ", o.batch_rows);
    denom = (double)o.batch_rows;
  }
  if (n_tokens == 0) return 0.0;

  const bool use_ce = o.ce_weight != 0;
  int64_t n_valid = 0;  // CE is a mean over the tokens with a target
  if (use_ce)
    for (int64_t t = 0; t < n_tokens; ++t) {
      if (targets[t] == kIgnoreIndex) continue;
      ZEBRA_CHECK(targets[t] >= 0 && targets[t] < vocab, "kd_loss: target ", targets[t], " at token ", t,
                  " is outside the vocabulary of ", vocab);
      ++n_valid;
    }

  const double T = o.temperature;
  const double kl_scale = (double)o.kl_weight * T * T / denom;         // loss = kl_scale * sum_t KL_t
  const double kl_grad_scale = (double)o.kl_weight * T / denom;        // d/ds: kl_scale * (p_S - p_T) / T
  const double ce_scale = n_valid > 0 ? (double)o.ce_weight / n_valid : 0.0;
  std::vector<double> row_loss(n_tokens);

#pragma omp parallel if (n_tokens * vocab >= kParallelMin)
  {
    std::vector<double> ls(vocab), lt(vocab), ls1(use_ce && T != 1 ? vocab : 0);
#pragma omp for schedule(static)
    for (int64_t t = 0; t < n_tokens; ++t) {
      const float* s = student_logits + t * vocab;
      log_softmax(s, vocab, 1.0 / T, ls.data());
      log_softmax(teacher_logits + t * vocab, vocab, 1.0 / T, lt.data());
      float* d = dlogits ? dlogits + t * vocab : nullptr;
      double kl = 0.0;
      for (int64_t v = 0; v < vocab; ++v) {
        const double pt = std::exp(lt[v]);
        if (pt > 0) kl += pt * (lt[v] - ls[v]);  // p log p -> 0 as p -> 0 (also avoids 0 * -inf)
        if (d) d[v] = (float)(kl_grad_scale * (std::exp(ls[v]) - pt));
      }
      double loss = kl_scale * kl;

      if (use_ce && targets[t] != kIgnoreIndex) {
        // CE on the un-softened logits: reuse ls when T = 1.
        const double* l1 = ls.data();
        if (T != 1) {
          log_softmax(s, vocab, 1.0, ls1.data());
          l1 = ls1.data();
        }
        loss += ce_scale * -l1[targets[t]];
        if (d) {
          for (int64_t v = 0; v < vocab; ++v) d[v] += (float)(ce_scale * std::exp(l1[v]));
          d[targets[t]] -= (float)ce_scale;
        }
      }
      row_loss[t] = loss;
    }
  }
  return sum_in_order(row_loss);
}

double l2_distance_loss(const float* a, const float* b, int64_t n_tokens, int64_t dim, float* da) {
  ZEBRA_CHECK(n_tokens >= 0 && dim > 0, "l2_distance_loss: bad shape [", n_tokens, ", ", dim, "]");
  if (n_tokens == 0) return 0.0;
  std::vector<double> dist(n_tokens);
#pragma omp parallel for schedule(static) if (n_tokens * dim >= kParallelMin)
  for (int64_t t = 0; t < n_tokens; ++t) {
    const float* x = a + t * dim;
    const float* y = b + t * dim;
    double ss = 0.0;
    for (int64_t i = 0; i < dim; ++i) {
      const double e = (double)x[i] - y[i];
      ss += e * e;
    }
    dist[t] = std::sqrt(ss);
    if (!da || dist[t] == 0) continue;  // zero distance: subgradient 0 (see the header)
    const double g = 1.0 / (dist[t] * n_tokens);
    float* d = da + t * dim;
    for (int64_t i = 0; i < dim; ++i) d[i] += (float)(((double)x[i] - y[i]) * g);
  }
  return sum_in_order(dist) / n_tokens;
}

double dpo_loss(double policy_chosen_logp, double policy_rejected_logp, double ref_chosen_logp,
                double ref_rejected_logp, double beta, double* d_chosen, double* d_rejected) {
  const double m =
      dpo_rewards(policy_chosen_logp, policy_rejected_logp, ref_chosen_logp, ref_rejected_logp, beta).margin;
  // -log sigmoid(m) = softplus(-m) = max(-m, 0) + log1p(exp(-|m|)), finite for any finite m.
  const double loss = std::max(-m, 0.0) + std::log1p(std::exp(-std::abs(m)));
  // dLoss/dm = -sigmoid(-m); written without overflow on either side.
  const double sig_neg = m >= 0 ? std::exp(-m) / (1.0 + std::exp(-m)) : 1.0 / (1.0 + std::exp(m));
  if (d_chosen) *d_chosen = -beta * sig_neg;
  if (d_rejected) *d_rejected = beta * sig_neg;
  return loss;
}

DpoRewards dpo_rewards(double policy_chosen_logp, double policy_rejected_logp, double ref_chosen_logp,
                       double ref_rejected_logp, double beta) {
  DpoRewards r;
  r.chosen = beta * (policy_chosen_logp - ref_chosen_logp);
  r.rejected = beta * (policy_rejected_logp - ref_rejected_logp);
  r.margin = r.chosen - r.rejected;
  return r;
}

double sequence_logprob(const float* logits, const int32_t* targets, const uint8_t* mask, int64_t n, int64_t vocab,
                        float* dlogits, float scale) {
  ZEBRA_CHECK(n >= 0 && vocab > 0, "sequence_logprob: bad shape [", n, ", ", vocab, "]");
  for (int64_t t = 0; t < n; ++t)
    ZEBRA_CHECK((mask && !mask[t]) || (targets[t] >= 0 && targets[t] < vocab), "sequence_logprob: target ",
                targets[t], " at position ", t, " is outside the vocabulary of ", vocab);
  std::vector<double> row(n, 0.0);
#pragma omp parallel if (n * vocab >= kParallelMin)
  {
    std::vector<double> ls(vocab);
#pragma omp for schedule(static)
    for (int64_t t = 0; t < n; ++t) {
      if (mask && !mask[t]) continue;
      log_softmax(logits + t * vocab, vocab, 1.0, ls.data());
      row[t] = ls[targets[t]];
      if (!dlogits) continue;
      float* d = dlogits + t * vocab;
      for (int64_t v = 0; v < vocab; ++v) d[v] -= (float)(scale * std::exp(ls[v]));
      d[targets[t]] += scale;
    }
  }
  return sum_in_order(row);
}

}  // namespace zebra
