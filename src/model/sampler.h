// Choosing the next token from logits: greedy, or temperature with top-k, top-p and min-p, seeded.
#pragma once
#include <cstdint>
#include <random>
#include <vector>

namespace zebra {

struct SamplerParams {
  float temperature = 0.8f;  // <= 0 means greedy
  int32_t top_k = 40;        // <= 0 disables
  float top_p = 0.95f;       // >= 1 disables
  float min_p = 0.05f;       // <= 0 disables
  uint64_t seed = 0;
};

class Sampler {
 public:
  explicit Sampler(SamplerParams p) : params_(p), rng_(p.seed) {}
  // logits: [vocab]; returns the chosen token id. Greedy draws nothing; otherwise it is
  // sample_with(logits, vocab, draw_uniform()).
  int32_t sample(const float* logits, int64_t vocab);
  // The two halves of a non-greedy sample, so another device can sample exactly as this one: the uniform draw
  // in [0, 1) (advances the generator; one per non-greedy sample), and the choice a given draw makes (top-k,
  // temperature softmax, min-p, top-p, then the token whose cumulative probability mass first reaches u * kept).
  double draw_uniform();
  int32_t sample_with(const float* logits, int64_t vocab, double u);
  bool greedy() const { return params_.temperature <= 0.0f; }
  const SamplerParams& params() const { return params_; }

 private:
  SamplerParams params_;
  std::mt19937_64 rng_;
  std::vector<std::pair<float, int32_t>> candidates_;
};

int32_t argmax(const float* x, int64_t n);

}  // namespace zebra
