// The sampler split into draw_uniform + sample_with (so the GPU engine samples with the host's draws) must give
// exactly what the one-call sampler gave for every seed: checked against a copy of the previous implementation.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "model/sampler.h"

using namespace zebra;

namespace {

// The sampler as it was before the split (the reference).
int32_t previous_sample(const SamplerParams& params, std::mt19937_64& rng, const float* logits, int64_t vocab) {
  if (params.temperature <= 0.0f) return argmax(logits, vocab);
  std::vector<std::pair<float, int32_t>> cand(vocab);
  for (int64_t i = 0; i < vocab; ++i) cand[i] = {logits[i], static_cast<int32_t>(i)};
  int64_t k = params.top_k > 0 ? std::min<int64_t>(params.top_k, vocab) : vocab;
  std::partial_sort(cand.begin(), cand.begin() + k, cand.end(),
                    [](const auto& a, const auto& b) { return a.first > b.first; });
  cand.resize(k);
  std::vector<double> probs(k);
  const double mx = cand[0].first;
  double sum = 0.0;
  for (int64_t i = 0; i < k; ++i) {
    probs[i] = std::exp((cand[i].first - mx) / params.temperature);
    sum += probs[i];
  }
  for (double& p : probs) p /= sum;
  int64_t keep = k;
  if (params.min_p > 0.0f) {
    const double floor = params.min_p * probs[0];
    keep = 1;
    while (keep < k && probs[keep] >= floor) ++keep;
  }
  if (params.top_p < 1.0f) {
    double cum = 0.0;
    int64_t cut = 0;
    while (cut < keep) {
      cum += probs[cut++];
      if (cum >= params.top_p) break;
    }
    keep = std::max<int64_t>(cut, 1);
  }
  double mass = 0.0;
  for (int64_t i = 0; i < keep; ++i) mass += probs[i];
  double r = std::uniform_real_distribution<double>(0.0, mass)(rng);
  for (int64_t i = 0; i < keep; ++i) {
    r -= probs[i];
    if (r <= 0.0) return cand[i].second;
  }
  return cand[keep - 1].second;
}

}  // namespace

TEST(Sampler, SplitDrawGivesTheSameTokensAsBeforeForEverySeed) {
  const int64_t V = 300;
  std::mt19937 gen(7);
  std::normal_distribution<float> nd(0.0f, 2.0f);
  const SamplerParams settings[] = {
      {0.8f, 40, 0.95f, 0.05f, 0}, {1.0f, 0, 1.0f, 0.0f, 0}, {0.5f, 5, 1.0f, 0.0f, 0},
      {1.3f, 0, 0.9f, 0.0f, 0},    {0.7f, 0, 1.0f, 0.1f, 0}, {0.0f, 40, 0.95f, 0.05f, 0}};
  for (const SamplerParams& base : settings) {
    for (uint64_t seed = 0; seed < 20; ++seed) {
      SamplerParams p = base;
      p.seed = seed;
      Sampler s(p);
      std::mt19937_64 ref_rng(seed);
      for (int step = 0; step < 30; ++step) {
        std::vector<float> logits(V);
        for (float& l : logits) l = nd(gen);
        const int32_t want = previous_sample(p, ref_rng, logits.data(), V);
        ASSERT_EQ(s.sample(logits.data(), V), want) << "seed " << seed << " step " << step << " temp " << p.temperature;
      }
    }
  }
}

TEST(Sampler, SampleWithIsTheSampleOfThatDraw) {
  const int64_t V = 64;
  std::vector<float> logits(V);
  for (int64_t i = 0; i < V; ++i) logits[i] = std::sin(0.37f * i) * 3.0f;
  SamplerParams p{0.9f, 20, 0.9f, 0.02f, 11};
  Sampler a(p), b(p);
  for (int step = 0; step < 50; ++step) {
    const double u = a.draw_uniform();
    EXPECT_GE(u, 0.0);
    EXPECT_LT(u, 1.0);
    EXPECT_EQ(a.sample_with(logits.data(), V, u), b.sample(logits.data(), V));
  }
  // Greedy ignores the draw and never advances the generator.
  SamplerParams g = p;
  g.temperature = 0.0f;
  Sampler greedy(g);
  EXPECT_EQ(greedy.sample_with(logits.data(), V, 0.999), argmax(logits.data(), V));
  EXPECT_TRUE(greedy.greedy());
}
