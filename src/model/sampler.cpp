#include "model/sampler.h"

#include <algorithm>
#include <cmath>

namespace zebra {

int32_t argmax(const float* x, int64_t n) {
  int64_t best = 0;
  for (int64_t i = 1; i < n; ++i)
    if (x[i] > x[best]) best = i;
  return static_cast<int32_t>(best);
}

int32_t Sampler::sample(const float* logits, int64_t vocab) {
  if (greedy()) return argmax(logits, vocab);
  return sample_with(logits, vocab, draw_uniform());
}

// uniform_real_distribution(0, mass)(rng) is generate_canonical(rng) * mass + 0, so drawing u in [0, 1) first and
// scaling by the mass later gives the same bits as drawing in [0, mass) did.
double Sampler::draw_uniform() { return std::uniform_real_distribution<double>(0.0, 1.0)(rng_); }

int32_t Sampler::sample_with(const float* logits, int64_t vocab, double u) {
  if (greedy()) return argmax(logits, vocab);

  // Candidates sorted by logit, cut to top-k.
  candidates_.resize(vocab);
  for (int64_t i = 0; i < vocab; ++i) candidates_[i] = {logits[i], static_cast<int32_t>(i)};
  int64_t k = params_.top_k > 0 ? std::min<int64_t>(params_.top_k, vocab) : vocab;
  std::partial_sort(candidates_.begin(), candidates_.begin() + k, candidates_.end(),
                    [](const auto& a, const auto& b) { return a.first > b.first; });
  candidates_.resize(k);

  // Softmax at the temperature.
  std::vector<double> probs(k);
  const double mx = candidates_[0].first;
  double sum = 0.0;
  for (int64_t i = 0; i < k; ++i) {
    probs[i] = std::exp((candidates_[i].first - mx) / params_.temperature);
    sum += probs[i];
  }
  for (double& p : probs) p /= sum;

  // min-p: drop tokens below min_p times the best probability.
  int64_t keep = k;
  if (params_.min_p > 0.0f) {
    const double floor = params_.min_p * probs[0];
    keep = 1;
    while (keep < k && probs[keep] >= floor) ++keep;
  }
  // top-p: smallest prefix whose mass reaches top_p.
  if (params_.top_p < 1.0f) {
    double cum = 0.0;
    int64_t cut = 0;
    while (cut < keep) {
      cum += probs[cut++];
      if (cum >= params_.top_p) break;
    }
    keep = std::max<int64_t>(cut, 1);
  }
  double mass = 0.0;
  for (int64_t i = 0; i < keep; ++i) mass += probs[i];
  double r = u * mass;
  for (int64_t i = 0; i < keep; ++i) {
    r -= probs[i];
    if (r <= 0.0) return candidates_[i].second;
  }
  return candidates_[keep - 1].second;
}

}  // namespace zebra
