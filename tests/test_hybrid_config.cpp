// hybrid_config.json loading (both generations), validation errors, saving, and parameter / KV counts
// of the released Zebra-Llama layouts against the spec's [DERIVED] numbers (spec §1.5, §1.6).
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "model/hf_config.h"
#include "model/hybrid_config.h"
#include "support.h"

using namespace zebra;
using json = nlohmann::json;

namespace {

struct Layout {
  const char* name;
  double params_b;   // spec §1.5 [DERIVED] (billions)
  double params_tol;
  double kv_percent;  // spec §1.6
  const char* generation;
  int64_t n_mla;
};

// Released: 4-digit parameter counts of §1.5 [DERIVED]; config-only: the table's values (1.276B, 3.36B).
const Layout kLayouts[] = {
    {"1B-8MLA-8Mamba", 1.2671, 5e-5, 7.8125, "june2025", 8},
    {"1B-6MLA-10M2", 1.276, 5e-4, 5.859375, "current", 6},
    {"1B-4MLA-12Mamba", 1.2857, 5e-5, 3.90625, "june2025", 4},
    {"3B-14MLA-14Mamba", 3.2692, 5e-5, 4.6875, "june2025", 14},
    {"3B-8MLA-20M2", 3.36, 5e-3, 2.678571, "current", 8},
    {"3B-6MLA-22Mamba", 3.3896, 5e-5, 2.008929, "june2025", 6},
    {"8B-16MLA-16Mamba", 8.1857, 5e-5, 5.46875, "june2025", 16},
    {"8B-8MLA-24Mamba", 8.3791, 5e-5, 2.734375, "june2025", 8},
};

std::string dir_of(const std::string& name) { return test::fixture("hybrid_configs/" + name); }

LlamaConfig base_of(const std::string& dir) { return load_hf_llama_config(dir + "/config.json"); }

json read_json(const std::string& path) { return json::parse(test::read_file(path)); }

// Writes `j` as a hybrid_config.json in a temp dir and loads it against `base`.
HybridConfig load_json(const json& j, const LlamaConfig& base) {
  std::string p = test::temp_dir() + "/hybrid_config.json";
  test::write_file(p, j.dump(2));
  return load_hybrid_config(p, base);
}

void expect_error(const json& j, const LlamaConfig& base, const std::string& needle) {
  try {
    load_json(j, base);
    ADD_FAILURE() << "expected an error mentioning '" << needle << "'";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << "message: " << e.what();
  }
}

}  // namespace

TEST(HybridConfig, ReleasedLayoutsParamsAndKv) {
  for (const Layout& l : kLayouts) {
    SCOPED_TRACE(l.name);
    const std::string dir = dir_of(l.name);
    LlamaConfig base = base_of(dir);
    HybridConfig h = load_hybrid_config(dir + "/hybrid_config.json", base);
    EXPECT_EQ(h.generation, l.generation);
    EXPECT_EQ(static_cast<int64_t>(h.mla_layers.size()), l.n_mla);
    const double params = static_cast<double>(hybrid_parameter_count(base, h)) / 1e9;
    EXPECT_NEAR(params, l.params_b, l.params_tol);
    const double kv = 100.0 * static_cast<double>(hybrid_kv_elements_per_token(base, h)) /
                      static_cast<double>(llama_kv_elements_per_token(base));
    EXPECT_NEAR(kv, l.kv_percent, 1e-5);
    // Both generations read the same YaRN (spec §7.2 loader rule).
    EXPECT_EQ(h.mla_rope.type, RopeScaling::Type::Yarn);
    EXPECT_EQ(h.mla_rope.factor, base.hidden_size == 4096 ? 8.0 : 32.0);
    EXPECT_EQ(h.mla_rope.original_max_position_embeddings, 8192);
    EXPECT_EQ(h.mla_rope.beta_fast, 32.0);
    EXPECT_EQ(h.mla_rope.beta_slow, 1.0);
    EXPECT_EQ(h.mla_rope.mscale, 1.0);
    EXPECT_EQ(h.mla_rope.mscale_all_dim, 0.0);
    EXPECT_EQ(h.rope_theta, 500000.0);
  }
}

TEST(HybridConfig, ShapesMatchSpecTensorTables) {
  // spec §7.3: 1B / 3B / 8B MLA and Mamba2 tensor shapes.
  struct S { const char* name; int64_t q_b_rows, kv_a_rows, kv_b_rows, kv_rank, in_proj, conv, heads; };
  const S shapes[] = {{"1B-8MLA-8Mamba", 2048, 160, 768, 128, 5152, 3072, 32},
                      {"3B-6MLA-22Mamba", 3072, 192, 1536, 128, 8216, 5120, 24},
                      {"8B-8MLA-24Mamba", 4096, 224, 1536, 160, 10272, 6144, 32}};
  for (const S& s : shapes) {
    SCOPED_TRACE(s.name);
    LlamaConfig base = base_of(dir_of(s.name));
    HybridConfig h = load_hybrid_config(dir_of(s.name) + "/hybrid_config.json", base);
    MlaDims d = h.mla_dims(base, 0);
    EXPECT_EQ(d.n_heads * d.q_head_dim(), s.q_b_rows);
    EXPECT_EQ(d.kv_rank + d.rope_dim, s.kv_a_rows);
    EXPECT_EQ(d.kv_heads * (d.nope_dim + d.v_dim), s.kv_b_rows);
    EXPECT_EQ(d.kv_rank, s.kv_rank);
    EXPECT_EQ(d.kv_heads, 8);
    Mamba2Dims m = h.mamba_dims(base);
    EXPECT_EQ(m.in_proj_rows(), s.in_proj);
    EXPECT_EQ(m.conv_dim(), s.conv);
    EXPECT_EQ(m.n_heads, s.heads);
    EXPECT_EQ(m.head_dim, m.d_state);
    EXPECT_EQ(m.repeat_group(), s.heads / 8);
    EXPECT_TRUE(h.is_mla(0));
    EXPECT_FALSE(h.is_mla(1));
  }
}

TEST(HybridConfig, MambaStateMatchesSpec) {
  // spec §1.6: constant Mamba state per layer per sequence.
  LlamaConfig b1 = base_of(dir_of("1B-4MLA-12Mamba"));
  EXPECT_EQ(load_hybrid_config(dir_of("1B-4MLA-12Mamba") + "/hybrid_config.json", b1).mamba_dims(b1).state_elements(),
            143360);
  LlamaConfig b8 = base_of(dir_of("8B-8MLA-24Mamba"));
  EXPECT_EQ(load_hybrid_config(dir_of("8B-8MLA-24Mamba") + "/hybrid_config.json", b8).mamba_dims(b8).state_elements(),
            548864);
}

TEST(HybridConfig, BothGenerationsOfTinyHybrid) {
  const std::string cur = test::fixture("tiny_hybrid/model"), old = test::fixture("tiny_hybrid/model_oldcfg");
  LlamaConfig base = base_of(cur);
  HybridConfig a = load_hybrid_config(cur + "/hybrid_config.json", base);
  HybridConfig b = load_hybrid_config(old + "/hybrid_config.json", base_of(old));
  EXPECT_EQ(a.generation, "current");
  EXPECT_EQ(b.generation, "june2025");
  EXPECT_EQ(a.mla_layers, b.mla_layers);
  for (int64_t l : a.mla_layers) {
    MlaDims x = a.mla_dims(base, l), y = b.mla_dims(base, l);
    EXPECT_EQ(x.q_rank, y.q_rank);  // june2025 file: global 16/8 overridden to 24/16 by layer_rank_list
    EXPECT_EQ(x.kv_rank, y.kv_rank);
    EXPECT_EQ(x.q_rank, 24);
    EXPECT_EQ(x.kv_rank, 16);
    EXPECT_EQ(x.rope_dim, 8);
    EXPECT_EQ(x.nope_dim, 4);
  }
  EXPECT_EQ(b.q_lora_rank, 16);
  EXPECT_EQ(a.mla_rope.factor, 4.0);
  EXPECT_EQ(b.mla_rope.factor, 4.0);
  EXPECT_EQ(a.mla_rope.original_max_position_embeddings, 32);
  EXPECT_EQ(b.mla_rope.original_max_position_embeddings, 32);
  EXPECT_EQ(a.rope_theta, 16.0);  // the hybrid's own, not config.json's 10000
  EXPECT_EQ(a.max_position_embeddings, 256);
  EXPECT_EQ(a.d_inner, 32);
  EXPECT_EQ(a.d_xb, 16);
  EXPECT_EQ(a.d_state, 8);
  EXPECT_EQ(a.ngroups, 4);
}

TEST(HybridConfig, LoaderRuleYarnDefaultsAndOverrides) {
  const std::string dir = test::fixture("tiny_hybrid/model");
  LlamaConfig base = base_of(dir);
  json j = read_json(dir + "/hybrid_config.json");
  // Betas and mscales from the dict when present, whatever its rope_type.
  j["rope_scaling"] = {{"factor", 2.0}, {"beta_fast", 16.0}, {"beta_slow", 2.0}, {"mscale", 0.707},
                       {"mscale_all_dim", 0.707}, {"rope_type", "llama3"}};
  HybridConfig h = load_json(j, base);
  EXPECT_EQ(h.mla_rope.type, RopeScaling::Type::Yarn);
  EXPECT_EQ(h.mla_rope.factor, 2.0);
  EXPECT_EQ(h.mla_rope.original_max_position_embeddings, 8192);  // default when absent
  EXPECT_EQ(h.mla_rope.beta_fast, 16.0);
  EXPECT_EQ(h.mla_rope.beta_slow, 2.0);
  EXPECT_EQ(h.mla_rope.mscale, 0.707);
  EXPECT_EQ(h.mla_rope.mscale_all_dim, 0.707);
  // No rope_scaling at all: factor 1 (plain rope). Unknown fields are ignored. null q_lora_rank = full q_proj.
  j.erase("rope_scaling");
  j["some_future_field"] = {1, 2, 3};
  j["q_lora_rank"] = nullptr;
  h = load_json(j, base);
  EXPECT_EQ(h.mla_rope.factor, 1.0);
  EXPECT_EQ(h.q_lora_rank, 0);
  EXPECT_EQ(h.mla_dims(base, 0).q_rank, 0);
}

TEST(HybridConfig, SaveWritesCurrentGenerationAndRoundTrips) {
  const std::string old = test::fixture("tiny_hybrid/model_oldcfg");
  LlamaConfig base = base_of(old);
  HybridConfig b = load_hybrid_config(old + "/hybrid_config.json", base);
  const std::string p = test::temp_dir() + "/hybrid_config.json";
  save_hybrid_config(p, b, base);
  json j = read_json(p);
  EXPECT_EQ(j["rope_scaling"]["rope_type"], "yarn");
  EXPECT_EQ(j["rope_type"], "yarn");
  EXPECT_FALSE(j.contains("q_energy_ratio"));
  EXPECT_EQ(j["ssm_cfg"]["ngroups"], 4);
  EXPECT_EQ(j["ssm_cfg"]["repeat_kv_before_conv"], false);
  HybridConfig c = load_hybrid_config(p, base);
  EXPECT_EQ(c.generation, "june2025");  // per-layer ranks are kept as layer_rank_list
  EXPECT_EQ(c.mla_layers, b.mla_layers);
  EXPECT_EQ(c.layer_ranks, b.layer_ranks);
  EXPECT_EQ(c.q_lora_rank, b.q_lora_rank);
  EXPECT_EQ(c.kv_lora_rank, b.kv_lora_rank);
  EXPECT_EQ(c.mla_rope.factor, b.mla_rope.factor);
  EXPECT_EQ(c.mla_rope.original_max_position_embeddings, b.mla_rope.original_max_position_embeddings);
  EXPECT_EQ(c.rope_theta, b.rope_theta);
  EXPECT_EQ(c.d_inner, b.d_inner);
  EXPECT_EQ(c.d_xb, b.d_xb);

  // A released config round-trips too (current generation, no layer_rank_list).
  const std::string d8 = dir_of("8B-8MLA-24Mamba");
  LlamaConfig b8 = base_of(d8);
  HybridConfig h8 = load_hybrid_config(d8 + "/hybrid_config.json", b8);
  save_hybrid_config(p, h8, b8);
  HybridConfig r8 = load_hybrid_config(p, b8);
  EXPECT_EQ(r8.generation, "current");
  EXPECT_EQ(hybrid_parameter_count(b8, r8), hybrid_parameter_count(b8, h8));
  EXPECT_EQ(r8.mla_layers, h8.mla_layers);
  // The same JSON as the reference's current-generation dump (zebra_ref.config_dicts).
  json cur = read_json(dir_of("1B-6MLA-10M2") + "/hybrid_config.json");
  LlamaConfig b1 = base_of(dir_of("1B-6MLA-10M2"));
  save_hybrid_config(p, load_hybrid_config(dir_of("1B-6MLA-10M2") + "/hybrid_config.json", b1), b1);
  EXPECT_EQ(read_json(p), cur);
}

TEST(HybridConfig, BadConfigsGiveSpecificErrors) {
  const std::string dir = test::fixture("tiny_hybrid/model");
  LlamaConfig base = base_of(dir);
  const json good = read_json(dir + "/hybrid_config.json");
  auto with = [&](const char* key, json v) {
    json j = good;
    j[key] = std::move(v);
    return j;
  };
  expect_error(with("mla_layers", {0, 4}), base, "mla_layers[1] = 4 is out of range [0, 4)");
  expect_error(with("mla_layers", {-1, 2}), base, "mla_layers[0] = -1 is out of range");
  expect_error(with("mla_layers", {0, 2, 2}), base, "mla_layers[2] = 2 is listed twice");
  expect_error(with("mla_layers", {2, 0}), base, "must be sorted");
  expect_error(with("mla_layers", "0,2"), base, "'mla_layers' must be a list");
  expect_error(with("qk_rope_head_dim", 7), base, "qk_rope_head_dim must be positive and even");
  expect_error(with("qk_rope_head_dim", 0), base, "qk_rope_head_dim must be positive and even");
  expect_error(with("kv_lora_rank", 0), base, "kv_lora_rank of layer 0 is 0");
  expect_error(with("kv_lora_rank", 33), base, "kv_lora_rank of layer 0 is 33");
  expect_error(with("q_lora_rank", 49), base, "q_lora_rank of layer 0 is 49");
  expect_error(with("hidden_size", 64), base, "'hidden_size' = 64 contradicts config.json's hidden_size = 32");
  expect_error(with("n_layer", 5), base, "'n_layer' = 5 contradicts");
  expect_error(with("num_key_value_heads", 4), base, "'num_key_value_heads' = 4 contradicts");
  expect_error(with("d_xb", 12), base, "d_xb (12) must be a positive multiple of the head dim d_state (8)");
  expect_error(with("d_xb", 24), base, "x/B groups must divide");
  expect_error(with("d_inner", 36), base, "field 'd_inner' = 36 contradicts ssm_cfg.expand");
  {
    json j = good;
    j["ssm_cfg"]["d_state"] = 6;
    expect_error(j, base, "d_inner (32) must be a positive multiple of the Mamba2 head dim = ssm_cfg.d_state (6)");
  }
  expect_error(with("attention_bias", true), base, "attention_bias");
  expect_error(with("hidden_act", "gelu"), base, "hidden_act");
  expect_error(with("kv_lora_rank", "16"), base, "'kv_lora_rank' must be an integer");
  {
    json j = good;
    j["ssm_cfg"]["ngroups"] = 2;
    expect_error(j, base, "ssm_cfg.ngroups (2) must equal d_inner / d_state = 4");
  }
  {
    json j = good;
    j["ssm_cfg"]["repeat_kv_before_conv"] = true;
    expect_error(j, base, "repeat_kv_before_conv = true is not supported");
  }
  {
    json j = good;
    j["layer_rank_list"] = {{"1", {{"q_rank", 8}, {"kv_rank", 8}}}};
    expect_error(j, base, "layer_rank_list names layer 1, which is not in mla_layers");
    j["layer_rank_list"] = {{"x", {{"q_rank", 8}, {"kv_rank", 8}}}};
    expect_error(j, base, "keys must be layer indices");
    j["layer_rank_list"] = {{"0", {{"q_rank", 8}}}};
    expect_error(j, base, "layer_rank_list.0.kv_rank' is missing");
  }
  {
    json j = good;
    j.erase("kv_lora_rank");
    expect_error(j, base, "'kv_lora_rank' is missing");
  }
  {
    std::string p = test::temp_dir() + "/hybrid_config.json";
    test::write_file(p, "{\"mla_layers\": [0,");
    EXPECT_THROW(load_hybrid_config(p, base), Error);
    EXPECT_THROW(load_hybrid_config(p + ".missing", base), Error);
  }
  // An all-Mamba2 config needs no MLA fields; an all-MLA one ignores Mamba2 contradictions.
  {
    json j = good;
    j["mla_layers"] = json::array();
    for (const char* k : {"kv_lora_rank", "q_lora_rank", "qk_rope_head_dim", "qk_nope_head_dim", "v_head_dim"})
      j.erase(k);
    HybridConfig h = load_json(j, base);
    EXPECT_TRUE(h.mla_layers.empty());
    EXPECT_EQ(hybrid_kv_elements_per_token(base, h), 0);
  }
}
