// The CUDA engine against the CPU forward (Model::forward) on whole models, and its own identities: f32 within
// 1e-4 relative on the tiny hybrids, tiny llamas, random models of the released shapes and SmolLM2-135M; bf16
// with top-1 agreement >= 99% (mean KL printed); prefill + decode == one full forward; graph replay == eager; a
// mixed batch == each sequence alone; sliced forwards == one forward; GPU sampling == the CPU sampler; fork;
// and errors (bad tokens, positions, context, memory) as messages.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <nlohmann/json.hpp>

#include "engine/cuda_engine.h"
#include "gpu_support.h"
#include "model/hf_config.h"
#include "model/loader.h"
#include "model/random_weights.h"
#include "support.h"

using namespace zebra;
using namespace zebra::test;

namespace {

// stories260K (real trained weights, 1 MB): ../shared/assets, or $ZEBRA_STORIES260K_DIR on a machine where
// ../shared does not exist (a lent GPU machine gets only the repository: copy the folder in and point here).
std::string stories_dir() {
  if (const char* e = std::getenv("ZEBRA_STORIES260K_DIR")) return e;
  return shared_asset("models/stories260K");
}

std::unique_ptr<Model> load(const std::string& path) {
  LoadOptions lo;
  lo.need_tokenizer = false;
  return std::move(load_model(path, lo).model);
}

std::unique_ptr<Engine> gpu(const Model& m, const std::string& dtype, int64_t max_seqs, int64_t n_ctx,
                            CudaEngineTuning t = {}) {
  EngineOptions o;
  o.device = Device::Cuda;
  o.dtype = dtype;
  o.max_seqs = max_seqs;
  o.n_ctx = n_ctx;
  o.n_snapshots = 2;
  o.max_batch_tokens = max_seqs * n_ctx;  // the tests run whole batches; slicing is the tuning's business
  return make_cuda_engine(m, o, t);
}

Tensor cpu_forward(const Model& m, const Batch& b, int64_t slots, int64_t ctx) {
  Cache c = m.make_cache(slots, ctx);
  return m.forward(b, c);
}

Tensor gpu_forward(Engine& e, const Batch& b) {
  e.run(b);
  return e.logits();
}

std::vector<int32_t> tokens(int64_t n, int64_t vocab, int64_t salt) {
  std::vector<int32_t> t(n);
  for (int64_t i = 0; i < n; ++i) t[i] = static_cast<int32_t>((i * 7919 + salt * 104729 + 13) % vocab);
  return t;
}

struct Agreement {
  double rel = 0, top1 = 0, mean_kl = 0;
};

Agreement agree(const Tensor& got, const Tensor& ref) {
  Agreement a;
  EXPECT_EQ(got.shape, ref.shape);
  if (got.shape != ref.shape) return {INFINITY, 0, INFINITY};
  a.rel = rel_err(got.data, ref.data);
  const int64_t rows = ref.dim(0), V = ref.dim(1);
  int64_t same = 0;
  for (int64_t r = 0; r < rows; ++r) {
    const float* g = got.ptr() + r * V;
    const float* f = ref.ptr() + r * V;
    same += std::max_element(g, g + V) - g == std::max_element(f, f + V) - f;
    // KL(ref || got) of the softmaxes
    const double mg = *std::max_element(g, g + V), mf = *std::max_element(f, f + V);
    double zg = 0, zf = 0;
    for (int64_t v = 0; v < V; ++v) zg += std::exp(g[v] - mg), zf += std::exp(f[v] - mf);
    double kl = 0;
    for (int64_t v = 0; v < V; ++v) {
      const double lp = f[v] - mf - std::log(zf), lq = g[v] - mg - std::log(zg);
      kl += std::exp(lp) * (lp - lq);
    }
    a.mean_kl += kl / rows;
  }
  a.top1 = rows ? double(same) / rows : 1.0;
  return a;
}

// A batch of several sequences, interleaved token by token, each from position 0.
Batch interleaved(const std::vector<std::vector<int32_t>>& seqs) {
  Batch b;
  size_t longest = 0;
  for (const auto& s : seqs) longest = std::max(longest, s.size());
  for (size_t t = 0; t < longest; ++t)
    for (size_t s = 0; s < seqs.size(); ++s)
      if (t < seqs[s].size()) b.add(seqs[s][t], static_cast<int32_t>(s), static_cast<int32_t>(t), true);
  return b;
}

void expect_f32_parity(const Model& m, const std::string& what, int64_t n_ctx) {
  SCOPED_TRACE(what);
  const int64_t V = m.config.vocab_size;
  auto e = gpu(m, "f32", 3, n_ctx);
  const Batch one = make_sequence_batch(tokens(std::min<int64_t>(45, n_ctx), V, 1), 0, 0, true);
  Agreement a = agree(gpu_forward(*e, one), cpu_forward(m, one, 1, n_ctx));
  std::printf("%s f32 one sequence: rel %.2e top-1 %.3f\n", what.c_str(), a.rel, a.top1);
  EXPECT_LT(a.rel, 1e-4);
  // Three sequences of different lengths, interleaved in the batch.
  const Batch three = interleaved({tokens(30, V, 2), tokens(17, V, 3), tokens(1, V, 4)});
  a = agree(gpu_forward(*e, three), cpu_forward(m, three, 3, n_ctx));
  std::printf("%s f32 three sequences: rel %.2e\n", what.c_str(), a.rel);
  EXPECT_LT(a.rel, 1e-4);
}

// A small hybrid of a released layout: its MLA/Mamba2 dims, 2 layers (MLA then Mamba2), a small vocabulary.
Model released_hybrid(const std::string& layout, uint64_t seed) {
  const std::string dir = fixture("hybrid_configs/" + layout);
  LlamaConfig cfg = load_hf_llama_config(dir + "/config.json");
  HybridConfig h = load_hybrid_config(dir + "/hybrid_config.json", cfg);
  cfg.num_layers = 2;
  cfg.vocab_size = 1000;
  cfg.bos_token_id = -1;  // the real ids lie outside the small vocabulary
  cfg.eos_token_ids.clear();
  cfg.intermediate_size = 1024;
  h.mla_layers = {0};
  h.layer_ranks.clear();
  return random_model(cfg, &h, seed);
}

Model small_llama(int64_t nh, int64_t nkv, int64_t hd, uint64_t seed) {
  LlamaConfig c;
  c.vocab_size = 700, c.hidden_size = 256, c.intermediate_size = 384, c.num_layers = 2;
  c.num_heads = nh, c.num_kv_heads = nkv, c.head_dim = hd;
  c.max_position_embeddings = 4096, c.rope_theta = 500000.0, c.tie_word_embeddings = true;
  return random_model(c, nullptr, seed);
}

}  // namespace

TEST(CudaEngine, F32MatchesCpuOnTinyHybrids) {
  ZEBRA_REQUIRE_GPU();
  expect_f32_parity(*load(fixture("tiny_hybrid/model")), "tiny_hybrid", 128);
  expect_f32_parity(*load(fixture("tiny_hybrid/variant/model")), "tiny_hybrid variant", 128);
}

TEST(CudaEngine, F32MatchesCpuOnTinyLlamas) {
  ZEBRA_REQUIRE_GPU();
  for (const char* d : {"model", "linear", "yarn"}) expect_f32_parity(*load(fixture(std::string("tiny_llama/") + d)), d, 64);
  // Dynamic NTK past max_position_embeddings (32): the rope table follows the forward's longest position.
  expect_f32_parity(*load(fixture("tiny_llama/dynamic")), "dynamic", 45);
}

TEST(CudaEngine, F32MatchesCpuOnRandomLlamasGqaRatios) {
  ZEBRA_REQUIRE_GPU();
  expect_f32_parity(small_llama(8, 8, 64, 1), "ratio 1", 256);
  expect_f32_parity(small_llama(16, 4, 64, 2), "ratio 4", 256);
  expect_f32_parity(small_llama(32, 4, 128, 3), "ratio 8 hd 128", 256);
}

TEST(CudaEngine, F32MatchesCpuOnReleasedHybridDims) {
  ZEBRA_REQUIRE_GPU();
  expect_f32_parity(released_hybrid("1B-8MLA-8Mamba", 1), "1B dims (rope 32, latent 128)", 256);
  expect_f32_parity(released_hybrid("8B-16MLA-16Mamba", 2), "8B dims (rope 64, latent 160)", 256);
}

TEST(CudaEngine, SmolLm2F32AndBf16AgainstCpu) {
  ZEBRA_REQUIRE_GPU();
  ZEBRA_REQUIRE_SMOLLM(path);
  auto m = load(path);
  const int64_t V = m->config.vocab_size;
  std::vector<std::vector<int32_t>> prompts;
  for (const char* f : {"logits_chat.json", "logits_plain.json", "logits_code.json", "logits_long.json"}) {
    nlohmann::json j = nlohmann::json::parse(read_file(fixture(std::string("smollm/") + f)));
    prompts.push_back(j["prompt"]["input_ids"].get<std::vector<int32_t>>());
  }
  auto f32 = gpu(*m, "f32", 4, 512), b16 = gpu(*m, "bf16", 4, 512);
  double worst = 0, kl = 0, top1 = 0;
  int64_t rows = 0;
  for (size_t p = 0; p < prompts.size(); ++p) {
    const Batch b = make_sequence_batch(prompts[p], 0, 0, true);
    const Tensor ref = cpu_forward(*m, b, 1, 512);
    const Agreement a = agree(gpu_forward(*f32, b), ref);
    const Agreement h = agree(gpu_forward(*b16, b), ref);
    worst = std::max(worst, a.rel);
    kl += h.mean_kl * b.size(), top1 += h.top1 * b.size(), rows += b.size();
    std::printf("SmolLM2 prompt %zu (%lld tokens): f32 rel %.2e; bf16 rel %.2e top-1 %.3f mean KL %.2e\n", p,
                (long long)b.size(), a.rel, h.rel, h.top1, h.mean_kl);
  }
  std::printf("SmolLM2 bf16 over %lld positions: top-1 agreement %.4f, mean KL %.3e; f32 worst rel %.2e\n",
              (long long)rows, top1 / rows, kl / rows, worst);
  EXPECT_LT(worst, 1e-4);
  EXPECT_GE(top1 / rows, 0.99);
  (void)V;
}

TEST(CudaEngine, Stories260KF32AndBf16AgainstCpu) {
  ZEBRA_REQUIRE_GPU();
  const std::string dir = stories_dir();
  if (dir.empty()) GTEST_SKIP() << "skipped: stories260K not found (../shared/assets or $ZEBRA_STORIES260K_DIR)";
  LoadOptions lo;
  lo.tokenizer_path = dir + "/tok512.bin";
  auto m = std::move(load_model(dir + "/stories260K.bin", lo).model);
  // Its own greedy continuation from BOS (peaked distributions, as real text gives), 200 positions.
  std::vector<int32_t> toks = {1};
  {
    Cache c = m->make_cache(1, 256);
    Batch b;
    b.add(1, 0, 0, true);
    for (int i = 1; i < 200; ++i) {
      const Tensor l = m->forward(b, c);
      toks.push_back(argmax(l.ptr(), m->config.vocab_size));
      b.clear();
      b.add(toks.back(), 0, i, true);
    }
  }
  const Batch b = make_sequence_batch(toks, 0, 0, true);
  const Tensor ref = cpu_forward(*m, b, 1, 256);
  auto f32 = gpu(*m, "f32", 1, 256), b16 = gpu(*m, "bf16", 1, 256);
  const Agreement a = agree(gpu_forward(*f32, b), ref), h = agree(gpu_forward(*b16, b), ref);
  std::printf("stories260K (%lld positions): f32 rel %.2e; bf16 rel %.2e, top-1 agreement %.4f, mean KL %.3e\n",
              (long long)b.size(), a.rel, h.rel, h.top1, h.mean_kl);
  EXPECT_LT(a.rel, 1e-4);
  EXPECT_GE(h.top1, 0.99);
}

TEST(CudaEngine, PrefillThenDecodeEqualsOneFullForward) {
  ZEBRA_REQUIRE_GPU();
  for (const char* dir : {"tiny_hybrid/model", "tiny_llama/model"}) {
    SCOPED_TRACE(dir);
    auto m = load(fixture(dir));
    const int64_t n = 45, V = m->config.vocab_size, prefill = 19;
    const std::vector<int32_t> toks = tokens(n, V, 5);
    auto full = gpu(*m, "f32", 1, 64);
    const Tensor whole = gpu_forward(*full, make_sequence_batch(toks, 0, 0, true));
    for (bool graphs : {false, true}) {
      CudaEngineTuning t;
      t.graphs = graphs;
      auto e = gpu(*m, "f32", 1, 64, t);
      const Tensor pre =
          gpu_forward(*e, make_sequence_batch(std::vector<int32_t>(toks.begin(), toks.begin() + prefill), 0, 0, true));
      std::vector<float> got(pre.data);
      for (int64_t i = prefill; i < n; ++i) {
        Batch b;
        b.add(toks[i], 0, static_cast<int32_t>(i), true);
        const Tensor step = gpu_forward(*e, b);
        got.insert(got.end(), step.data.begin(), step.data.end());
      }
      EXPECT_EQ(e->seq_length(0), n);
      EXPECT_LT(rel_err(got, whole.data), 1e-5) << (graphs ? "graphs" : "eager");
    }
  }
}

TEST(CudaEngine, GraphReplayEqualsEager) {
  ZEBRA_REQUIRE_GPU();
  for (const char* dir : {"tiny_hybrid/model", "tiny_llama/model"}) {
    for (const char* dtype : {"f32", "bf16"}) {
      SCOPED_TRACE(std::string(dir) + " " + dtype);
      auto m = load(fixture(dir));
      const int64_t V = m->config.vocab_size;
      CudaEngineTuning on, off;
      off.graphs = false;
      auto g = gpu(*m, dtype, 5, 128, on), e = gpu(*m, dtype, 5, 128, off);
      const Batch pre = interleaved({tokens(20, V, 1), tokens(33, V, 2), tokens(5, V, 3), tokens(16, V, 4), tokens(9, V, 6)});
      EXPECT_LT(rel_err(gpu_forward(*g, pre).data, gpu_forward(*e, pre).data), 1e-6);
      // Decode steps over 5, 3 (bucket 4) and 1 sequences, each bucket replayed several times.
      const std::vector<std::vector<int32_t>> steps = {{0, 1, 2, 3, 4}, {4, 0, 2}, {1}, {0, 1, 2, 3, 4}, {3, 1, 0}, {2}};
      for (int rep = 0; rep < 2; ++rep)
        for (size_t s = 0; s < steps.size(); ++s) {
          Batch b;
          for (int32_t seq : steps[s])
            b.add(static_cast<int32_t>((seq * 31 + s * 7 + rep) % V), seq, static_cast<int32_t>(g->seq_length(seq)), true);
          const double err = rel_err(gpu_forward(*g, b).data, gpu_forward(*e, b).data);
          // Graphs use the split count of the longest context (n_ctx), eager runs that of the actual one: the same
          // sums in another order, then (bf16) rounded.
          EXPECT_LT(err, std::string(dtype) == "f32" ? 1e-5 : 1e-2) << "step " << s << " rep " << rep;
        }
    }
  }
}

TEST(CudaEngine, MixedBatchEqualsEachSequenceAlone) {
  ZEBRA_REQUIRE_GPU();
  for (const char* dir : {"tiny_hybrid/model", "tiny_llama/model"}) {
    SCOPED_TRACE(dir);
    auto m = load(fixture(dir));
    const int64_t V = m->config.vocab_size;
    const std::vector<int32_t> a = tokens(21, V, 1), b = tokens(22, V, 2), c = tokens(9, V, 3), d = tokens(1, V, 4);
    // Together: first a[0..20) and b[0..7); then, in one forward: a's decode token, b's next 15-token chunk,
    // c from scratch and d's single token.
    auto e = gpu(*m, "f32", 4, 64);
    Batch first;
    for (int i = 0; i < 20; ++i) first.add(a[i], 0, i, false);
    for (int i = 0; i < 7; ++i) first.add(b[i], 1, i, false);
    e->run(first);
    Batch mixed;
    mixed.add(a[20], 0, 20, true);
    for (int i = 7; i < 22; ++i) mixed.add(b[i], 1, i, true);
    for (int i = 0; i < 9; ++i) mixed.add(c[i], 2, i, i == 8);
    mixed.add(d[0], 3, 0, true);
    const Tensor together = gpu_forward(*e, mixed);
    // Alone: each sequence's whole history in its own engine.
    std::vector<float> alone;
    auto run_alone = [&](const std::vector<int32_t>& toks, int64_t from, bool last_only) {
      auto s = gpu(*m, "f32", 1, 64);
      Batch bb;
      for (size_t i = 0; i < toks.size(); ++i)
        bb.add(toks[i], 0, static_cast<int32_t>(i), static_cast<int64_t>(i) >= from && (!last_only || i + 1 == toks.size()));
      const Tensor l = gpu_forward(*s, bb);
      alone.insert(alone.end(), l.data.begin(), l.data.end());
    };
    run_alone(a, 20, false);
    run_alone(b, 7, false);
    run_alone(c, 0, true);
    run_alone(d, 0, true);
    EXPECT_LT(rel_err(together.data, alone), 1e-5);
  }
}

TEST(CudaEngine, SlicedForwardEqualsOneForward) {
  ZEBRA_REQUIRE_GPU();
  auto m = load(fixture("tiny_hybrid/model"));
  const Batch b = interleaved({tokens(45, m->config.vocab_size, 1), tokens(30, m->config.vocab_size, 2)});
  CudaEngineTuning small;
  small.forward_rows = 16;
  small.logit_rows = 8;
  auto whole = gpu(*m, "f32", 2, 64), sliced = gpu(*m, "f32", 2, 64, small);
  const Tensor w = gpu_forward(*whole, b), s = gpu_forward(*sliced, b);
  EXPECT_EQ(s.shape, w.shape);
  EXPECT_LT(rel_err(s.data, w.data), 1e-5);
}

TEST(CudaEngine, GpuSamplingEqualsCpuSampler) {
  ZEBRA_REQUIRE_GPU();
  for (const char* dir : {"tiny_hybrid/model", ""}) {
    std::unique_ptr<Model> m;
    if (*dir) {
      m = load(fixture(dir));
    } else {
      const std::string p = smollm_gguf();
      if (p.empty()) continue;
      m = load(p);  // vocab 49152: top_k 0 rows take the host path
    }
    const int64_t V = m->config.vocab_size;
    auto e = gpu(*m, "f32", 4, 64);
    const Batch b = interleaved({tokens(12, V, 1), tokens(5, V, 2), tokens(8, V, 3), tokens(3, V, 4)});
    std::vector<SamplerParams> ps = {{0.0f, 40, 0.95f, 0.05f, 1}, {0.8f, 40, 0.95f, 0.05f, 2},
                                     {1.0f, 0, 0.9f, 0.0f, 3},    {1.1f, 5, 1.0f, 0.1f, 4}};
    for (int step = 0; step < 3; ++step) {
      e->run(b);
      const Tensor logits = e->logits();
      const int64_t rows = logits.dim(0);
      std::vector<Sampler> gs, cs;
      for (int64_t r = 0; r < rows; ++r) {
        SamplerParams p = ps[r % ps.size()];
        p.seed = p.seed * 100 + r + step * 1000;
        gs.emplace_back(p), cs.emplace_back(p);
      }
      std::vector<Sampler*> ptrs;
      for (Sampler& s : gs) ptrs.push_back(&s);
      const std::vector<int32_t> got = e->sample(ptrs);
      for (int64_t r = 0; r < rows; ++r) EXPECT_EQ(got[r], cs[r].sample(logits.ptr() + r * V, V)) << "row " << r;
      for (int32_t s = 0; s < 4; ++s) e->seq_clear(s);
    }
  }
}

TEST(CudaEngine, ForkContinuesExactlyAsTheSource) {
  ZEBRA_REQUIRE_GPU();
  for (const char* dir : {"tiny_hybrid/model", "tiny_llama/model"}) {
    SCOPED_TRACE(dir);
    auto m = load(fixture(dir));
    const int64_t V = m->config.vocab_size;
    const std::vector<int32_t> p = tokens(21, V, 1);  // a partly filled second block: copy-on-write
    auto e = gpu(*m, "f32", 2, 64);
    e->run(make_sequence_batch(p, 0, 0, false));
    e->seq_fork(0, 1, 21);
    Batch b;
    b.add(5, 0, 21, true);
    b.add(9, 1, 21, true);
    const Tensor both = gpu_forward(*e, b);
    std::vector<float> want;
    for (int32_t t : {5, 9}) {
      std::vector<int32_t> h = p;
      h.push_back(t);
      auto s = gpu(*m, "f32", 1, 64);
      Batch bb = make_sequence_batch(h, 0, 0, false);
      const Tensor l = gpu_forward(*s, bb);
      want.insert(want.end(), l.data.begin(), l.data.end());
    }
    EXPECT_LT(rel_err(both.data, want), 1e-5);
  }
}

TEST(CudaEngine, BadInputAndMemoryErrorsAreMessages) {
  ZEBRA_REQUIRE_GPU();
  auto m = load(fixture("tiny_hybrid/model"));
  const int64_t V = m->config.vocab_size;
  auto e = gpu(*m, "bf16", 2, 32);
  Batch b;
  b.add(static_cast<int32_t>(V), 0, 0, true);
  EXPECT_NE(error_message([&] { e->run(b); }).find("outside the vocabulary"), std::string::npos);
  b.clear();
  b.add(1, 2, 0, true);
  EXPECT_NE(error_message([&] { e->run(b); }).find("sequence 2"), std::string::npos);
  b.clear();
  b.add(1, 0, 3, true);
  EXPECT_NE(error_message([&] { e->run(b); }).find("neither starts"), std::string::npos);
  e->run(make_sequence_batch(tokens(30, V, 1), 0, 0, false));
  EXPECT_NE(error_message([&] { e->run(make_sequence_batch({1, 2, 3}, 0, 30, false)); }).find("context size"),
            std::string::npos);
  EXPECT_EQ(e->seq_length(0), 30);  // a rejected batch changes nothing
  ForwardTrace trace;
  EXPECT_NE(error_message([&] { e->run(make_sequence_batch({1, 2}, 0, 0, true), &trace); }).find("trace"),
            std::string::npos);
  EngineOptions o;
  o.device = Device::Cuda;
  o.dtype = "f16";
  EXPECT_NE(error_message([&] { make_cuda_engine(*m, o); }).find("bf16 or f32"), std::string::npos);
  o.dtype = "bf16";
  o.n_ctx = 256;
  o.n_blocks = int64_t(1) << 40;  // far more than any GPU holds
  const std::string oom = error_message([&] { make_cuda_engine(*m, o); });
  std::printf("out-of-memory message: %s\n", oom.c_str());
  EXPECT_NE(oom.find("out of GPU memory"), std::string::npos) << oom;
  EXPECT_NE(oom.find("fit"), std::string::npos) << oom;
}

TEST(CudaEngine, MemoryReport) {
  ZEBRA_REQUIRE_GPU();
  auto m = load(fixture("tiny_hybrid/model"));
  auto e = gpu(*m, "bf16", 3, 64);
  const MemoryReport r = e->memory();
  const HybridConfig& h = m->hybrid;
  const int64_t n_mla = static_cast<int64_t>(h.mla_layers.size());
  EXPECT_EQ(r.kv_bytes_per_token, n_mla * (h.kv_lora_rank + h.qk_rope_head_dim) * 2);
  EXPECT_GE(r.weight_bytes, m->parameter_count() * 2);
  EXPECT_EQ(r.blocks_total, 3 * (64 / 16));
  EXPECT_GT(r.workspace_bytes, 0);
  EXPECT_GT(r.state_bytes_per_sequence, 0);
  e->run(make_sequence_batch(tokens(20, m->config.vocab_size, 1), 0, 0, false));
  EXPECT_EQ(e->memory().blocks_used, 2);
  std::printf("tiny hybrid bf16: weights %lld B, cache %lld B, workspace %lld B\n", (long long)r.weight_bytes,
              (long long)r.cache_bytes, (long long)r.workspace_bytes);
}
