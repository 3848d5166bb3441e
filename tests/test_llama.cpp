// The CPU Llama engine against outside references: llama2.c's published stories260K output, and
// identities (prefill + step decode == full forward; a multi-sequence batch == separate runs).
#include <cmath>

#include "model/generate.h"
#include "model/loader.h"
#include "support.h"

using namespace zebra;

namespace {

LoadedModel load_stories(const std::string& dir) {
  LoadOptions o;
  o.tokenizer_path = dir + "/tok512.bin";
  return load_model(dir + "/stories260K.bin", o);
}

std::vector<int32_t> sample_tokens(int64_t n, int64_t vocab) {
  std::vector<int32_t> t(n);
  for (int64_t i = 0; i < n; ++i) t[i] = static_cast<int32_t>((i * 7919 + 13) % vocab);
  return t;
}

}  // namespace

TEST(Llama, Stories260KGreedyMatchesLlama2cPublishedOutput) {
  ZEBRA_REQUIRE_ASSET(dir, "models/stories260K");
  LoadedModel lm = load_stories(dir);
  const Model& m = *lm.model;
  EXPECT_EQ(m.config.num_layers, 5);
  // MANIFEST: 264,128 fp32 values, of which 2 x 512 x 4 are llama2.c's precomputed RoPE tables.
  EXPECT_EQ(m.parameter_count(), 264128 - 2 * 512 * 4);
  Cache cache = m.make_cache(1, 512);
  SamplerParams greedy;
  greedy.temperature = 0;
  Sampler sampler(greedy);
  std::vector<int32_t> out = generate(m, cache, 0, 0, {lm.tokenizer->bos_id()}, 255, sampler, {}, {});
  // Decode as llama2.c prints it: after BOS, the first piece's leading space is dropped.
  StreamDecoder dec(*lm.tokenizer);
  dec.push(lm.tokenizer->bos_id());
  std::string text;
  for (int32_t id : out) text += dec.push(id);
  text += dec.flush();
  // The first line llama2.c's runner prints (assets MANIFEST.md), an external golden.
  const std::string expected =
      "Once upon a time, there was a little girl named Lily. She loved to play outside in the park. One day, "
      "she saw a big, red ball. She wanted to play with it, but it was too high.";
  ASSERT_GE(text.size(), expected.size()) << text;
  EXPECT_EQ(text.substr(0, expected.size()), expected) << text;
  EXPECT_NE(text.find("Lily's mom said,"), std::string::npos) << text;
}

TEST(Llama, PrefillThenStepDecodeEqualsFullForward) {
  ZEBRA_REQUIRE_ASSET(dir, "models/stories260K");
  LoadedModel lm = load_stories(dir);
  const Model& m = *lm.model;
  const int64_t n = 40, V = m.config.vocab_size;
  std::vector<int32_t> toks = sample_tokens(n, V);

  Cache full_cache = m.make_cache(1, n);
  Tensor full = m.forward(make_sequence_batch(toks, 0, 0, true), full_cache);  // [n, V]

  Cache cache = m.make_cache(1, n);
  const int64_t prefill = 17;
  std::vector<int32_t> head(toks.begin(), toks.begin() + prefill);
  Tensor pre = m.forward(make_sequence_batch(head, 0, 0, true), cache);
  float max_diff = 0;
  for (int64_t t = 0; t < prefill; ++t)
    for (int64_t v = 0; v < V; ++v) max_diff = std::max(max_diff, std::fabs(pre.data[t * V + v] - full.data[t * V + v]));
  for (int64_t t = prefill; t < n; ++t) {
    Batch b;
    b.add(toks[t], 0, static_cast<int32_t>(t), true);
    Tensor step = m.forward(b, cache);
    for (int64_t v = 0; v < V; ++v) max_diff = std::max(max_diff, std::fabs(step.data[v] - full.data[t * V + v]));
  }
  EXPECT_LT(max_diff, 1e-4f);
}

TEST(Llama, MultiSequenceBatchEqualsSeparateRuns) {
  ZEBRA_REQUIRE_ASSET(dir, "models/stories260K");
  LoadedModel lm = load_stories(dir);
  const Model& m = *lm.model;
  const int64_t V = m.config.vocab_size;
  std::vector<int32_t> a = sample_tokens(9, V), b = sample_tokens(14, V);
  for (auto& x : b) x = (x + 100) % V;

  Cache ca = m.make_cache(1, 32), cb = m.make_cache(1, 32), both = m.make_cache(2, 32);
  Tensor la = m.forward(make_sequence_batch(a, 0, 0, true), ca);
  Tensor lb = m.forward(make_sequence_batch(b, 0, 0, true), cb);
  // Interleave the two sequences' tokens in one batch.
  Batch mixed;
  std::vector<std::pair<int, int>> order;
  for (size_t i = 0; i < std::max(a.size(), b.size()); ++i) {
    if (i < a.size()) mixed.add(a[i], 0, (int32_t)i, true), order.push_back({0, (int)i});
    if (i < b.size()) mixed.add(b[i], 1, (int32_t)i, true), order.push_back({1, (int)i});
  }
  Tensor lm_ = m.forward(mixed, both);
  float max_diff = 0;
  for (size_t r = 0; r < order.size(); ++r) {
    const Tensor& ref = order[r].first == 0 ? la : lb;
    for (int64_t v = 0; v < V; ++v)
      max_diff = std::max(max_diff, std::fabs(lm_.data[r * V + v] - ref.data[order[r].second * V + v]));
  }
  EXPECT_LT(max_diff, 1e-4f);
}

TEST(Llama, RejectsContextOverflowAndBadTokens) {
  ZEBRA_REQUIRE_ASSET(dir, "models/stories260K");
  LoadedModel lm = load_stories(dir);
  const Model& m = *lm.model;
  Cache cache = m.make_cache(1, 8);
  std::vector<int32_t> toks = sample_tokens(9, m.config.vocab_size);
  try {
    m.forward(make_sequence_batch(toks, 0, 0, false), cache);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("exceeds the context size 8"), std::string::npos) << e.what();
  }
  Batch bad;
  bad.add(100000, 0, 0, true);
  EXPECT_THROW(m.forward(bad, cache), Error);
}
