// Random weights for config-only directories: right shapes (parameter counts from the configs alone), the same
// weights for the same seed, and a forward with finite, non-degenerate logits.
#include <cmath>

#include "model/hf_config.h"
#include "model/random_weights.h"
#include "support.h"

using namespace zebra;

namespace {

void expect_sane_logits(const Model& m) {
  const int64_t n = 12, V = m.config.vocab_size;
  std::vector<int32_t> toks(n);
  for (int64_t i = 0; i < n; ++i) toks[i] = static_cast<int32_t>((i * 31 + 3) % V);
  Cache cache = m.make_cache(1, n);
  Tensor logits = m.forward(make_sequence_batch(toks, 0, 0, true), cache);
  double sum = 0, sq = 0;
  for (float v : logits.data) {
    ASSERT_TRUE(std::isfinite(v));
    sum += v, sq += double(v) * v;
  }
  const double mean = sum / logits.numel(), sd = std::sqrt(sq / logits.numel() - mean * mean);
  EXPECT_GT(sd, 0.05) << "logits barely vary";
  EXPECT_LT(sd, 50.0) << "logits blow up";
}

}  // namespace

TEST(RandomWeights, TinyHybridLayoutHasTheConfigsParameterCount) {
  const std::string dir = test::fixture("tiny_hybrid/model");
  Model m = random_model_from_dir(dir, 1);
  ASSERT_TRUE(m.is_hybrid);
  EXPECT_EQ(m.parameter_count(), hybrid_parameter_count(m.config, m.hybrid));
  EXPECT_EQ(m.layers[0].kind, LayerKind::Mla);
  EXPECT_EQ(m.layers[1].kind, LayerKind::Mamba2);
  expect_sane_logits(m);
}

TEST(RandomWeights, SameSeedSameWeightsOtherSeedOthers) {
  const std::string dir = test::fixture("tiny_hybrid/model");
  Model a = random_model_from_dir(dir, 7), b = random_model_from_dir(dir, 7), c = random_model_from_dir(dir, 8);
  EXPECT_EQ(a.embed.data, b.embed.data);
  EXPECT_EQ(a.layers[1].mamba.in_proj.data, b.layers[1].mamba.in_proj.data);
  EXPECT_NE(a.embed.data, c.embed.data);
  // Mamba2 parameters in their usual ranges.
  for (float v : a.layers[1].mamba.A_log.data) EXPECT_TRUE(v >= 0.0f && v <= std::log(16.0f) + 1e-6f);
  for (float v : a.layers[1].mamba.dt_bias.data) EXPECT_TRUE(v > -7.5f && v < -2.0f) << v;  // softplus⁻¹ of 1e-3..1e-1
}

TEST(RandomWeights, TinyLlamaForward) {
  Model m = random_model_from_dir(test::fixture("tiny_llama/model"), 3);
  EXPECT_FALSE(m.is_hybrid);
  EXPECT_EQ(m.layers[0].kind, LayerKind::Attention);
  expect_sane_logits(m);
}

TEST(RandomWeights, Llama32OneBConfigFixture) {
  LlamaConfig c = load_hf_llama_config(test::fixture("llama_configs/llama-3.2-1b/config.json"));
  EXPECT_EQ(c.hidden_size, 2048);
  EXPECT_EQ(c.num_layers, 16);
  EXPECT_EQ(c.num_heads, 32);
  EXPECT_EQ(c.num_kv_heads, 8);
  EXPECT_EQ(c.head_dim, 64);
  EXPECT_EQ(c.intermediate_size, 8192);
  EXPECT_EQ(c.vocab_size, 128256);
  EXPECT_EQ(c.max_position_embeddings, 131072);
  EXPECT_TRUE(c.tie_word_embeddings);
  EXPECT_EQ(c.rope_scaling.type, RopeScaling::Type::Llama3);
  EXPECT_DOUBLE_EQ(c.rope_scaling.factor, 32.0);
  EXPECT_DOUBLE_EQ(c.rope_theta, 500000.0);
}
