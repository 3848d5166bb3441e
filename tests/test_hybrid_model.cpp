// A whole Zebra hybrid (MLA + Mamba2 layers) loaded from AMD's checkpoint layout against the PyTorch
// reference written from the spec (scripts/reference/make_tiny_hybrid.py; fixtures/tiny_hybrid/README.md),
// and the cache identity prefill + step decode == full forward on a hybrid.
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "model/loader.h"
#include "support.h"

using namespace zebra;
namespace fs = std::filesystem;

namespace {

LoadedModel load_dir(const std::string& dir) {
  LoadOptions lo;
  lo.need_tokenizer = false;
  return load_model(dir, lo);
}

// Compares full-forward logits of every sequence in a logits.json with the model's.
void check_logits(const Model& m, const std::string& logits_json, float tol, MlaMode mode = MlaMode::Auto) {
  nlohmann::json j = nlohmann::json::parse(test::read_file(logits_json));
  const int64_t V = m.config.vocab_size;
  Model& mm = const_cast<Model&>(m);
  mm.mla_mode = mode;
  for (const auto& seq : j["sequences"]) {
    std::vector<int32_t> ids = seq["ids"].get<std::vector<int32_t>>();
    Cache cache = m.make_cache(1, static_cast<int64_t>(ids.size()));
    Tensor got = m.forward(make_sequence_batch(ids, 0, 0, true), cache);
    float max_abs = 0;
    for (size_t t = 0; t < ids.size(); ++t)
      for (int64_t v = 0; v < V; ++v)
        max_abs = std::max(max_abs, std::fabs(got.data[t * V + v] - seq["logits"][t][v].get<float>()));
    std::printf("%s %s (T=%zu): max |diff| %.2e\n", logits_json.c_str(), seq["name"].get<std::string>().c_str(),
                ids.size(), max_abs);
    EXPECT_LT(max_abs, tol) << seq["name"];
  }
  mm.mla_mode = MlaMode::Auto;
}

}  // namespace

TEST(HybridModel, TinyHybridMatchesPyTorchReference) {
  LoadedModel lm = load_dir(test::fixture("tiny_hybrid/model"));
  const Model& m = *lm.model;
  ASSERT_TRUE(m.is_hybrid);
  ASSERT_EQ(m.layers.size(), 4u);
  EXPECT_EQ(m.layers[0].kind, LayerKind::Mla);
  EXPECT_EQ(m.layers[1].kind, LayerKind::Mamba2);
  EXPECT_FALSE(m.lm_head.empty());
  check_logits(m, test::fixture("tiny_hybrid/logits.json"), 1e-4f);
  check_logits(m, test::fixture("tiny_hybrid/logits.json"), 1e-4f, MlaMode::Absorbed);
}

TEST(HybridModel, June2025ConfigGenerationGivesTheSameModel) {
  // model_oldcfg holds only the two config files; combine them with the same weights.
  std::string dir = test::temp_dir();
  for (const char* f : {"config.json", "hybrid_config.json"})
    fs::copy_file(test::fixture(std::string("tiny_hybrid/model_oldcfg/") + f), dir + "/" + f);
  fs::copy_file(test::fixture("tiny_hybrid/model/model.safetensors"), dir + "/model.safetensors");
  LoadedModel lm = load_dir(dir);
  check_logits(*lm.model, test::fixture("tiny_hybrid/logits.json"), 1e-4f);
}

TEST(HybridModel, VariantFullQueryLoraNormsFullKvHeadsTiedBf16) {
  LoadedModel lm = load_dir(test::fixture("tiny_hybrid/variant/model"));
  EXPECT_TRUE(lm.model->lm_head.empty());  // tied: no lm_head.weight in the file
  check_logits(*lm.model, test::fixture("tiny_hybrid/variant/logits.json"), 5e-4f);
}

TEST(HybridModel, PrefillThenStepDecodeEqualsFullForward) {
  LoadedModel lm = load_dir(test::fixture("tiny_hybrid/model"));
  const Model& m = *lm.model;
  const int64_t n = 45, V = m.config.vocab_size;
  std::vector<int32_t> toks(n);
  for (int64_t i = 0; i < n; ++i) toks[i] = static_cast<int32_t>((i * 37 + 5) % V);
  Cache full_cache = m.make_cache(1, n);
  Tensor full = m.forward(make_sequence_batch(toks, 0, 0, true), full_cache);
  Cache cache = m.make_cache(1, n);
  const int64_t prefill = 11;
  m.forward(make_sequence_batch(std::vector<int32_t>(toks.begin(), toks.begin() + prefill), 0, 0, false), cache);
  float max_diff = 0;
  for (int64_t t = prefill; t < n; ++t) {
    Batch b;
    b.add(toks[t], 0, static_cast<int32_t>(t), true);
    Tensor step = m.forward(b, cache);
    for (int64_t v = 0; v < V; ++v) max_diff = std::max(max_diff, std::fabs(step.data[v] - full.data[t * V + v]));
  }
  EXPECT_LT(max_diff, 1e-4f);
}

TEST(HybridModel, ConfigThatContradictsTheTensorsIsRejected) {
  std::string dir = test::temp_dir();
  fs::copy_file(test::fixture("tiny_hybrid/model/config.json"), dir + "/config.json");
  fs::copy_file(test::fixture("tiny_hybrid/model/model.safetensors"), dir + "/model.safetensors");
  std::string h = test::read_file(test::fixture("tiny_hybrid/model/hybrid_config.json"));
  // Claim layers 0 and 1 are MLA while the file has a Mamba2 layer at 1.
  size_t at = h.find("\"mla_layers\"");
  size_t open = h.find('[', at), close = h.find(']', at);
  h = h.substr(0, open) + "[0, 1]" + h.substr(close + 1);
  test::write_file(dir + "/hybrid_config.json", h);
  try {
    load_dir(dir);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("layer 1"), std::string::npos) << e.what();
  }
}

TEST(HybridModel, CacheIsExactlyTheFormulasSize) {
  // Spec §1.6: B * [N_mla * T * (r_kv + d_r) + N_m2 * (nh*hd*hd + 4*(d_inner + 2*d_xb))] elements.
  LoadedModel lm = load_dir(test::fixture("tiny_hybrid/model"));
  const Model& m = *lm.model;
  const HybridConfig& h = m.hybrid;
  const int64_t B = 3, T = 100, nh = m.config.num_heads, hd = m.config.head_dim;
  const int64_t n_mla = static_cast<int64_t>(h.mla_layers.size()), n_m2 = m.config.num_layers - n_mla;
  const int64_t elements =
      B * (n_mla * T * (h.kv_lora_rank + h.qk_rope_head_dim) + n_m2 * (nh * hd * hd + 4 * (h.d_inner + 2 * h.d_xb)));
  Cache c = m.make_cache(B, T);
  EXPECT_EQ(c.bytes(), static_cast<size_t>(elements) * sizeof(float));
  EXPECT_EQ(m.kv_bytes_per_token(), n_mla * (h.kv_lora_rank + h.qk_rope_head_dim) * 4);
}
