// HF config.json parsing for Llama models.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "model/hf_config.h"
#include "support.h"

using namespace zebra;
using json = nlohmann::json;

namespace {

json minimal() {
  return {{"model_type", "llama"},
          {"architectures", {"LlamaForCausalLM"}},
          {"vocab_size", 100},
          {"hidden_size", 64},
          {"intermediate_size", 128},
          {"num_hidden_layers", 2},
          {"num_attention_heads", 4}};
}

// Expects parse_hf_llama_config(j) to throw an Error naming the file and containing `needle`.
void expect_error(const json& j, const std::string& needle) {
  try {
    parse_hf_llama_config(j, "cfg/config.json");
    ADD_FAILURE() << "accepted " << j.dump();
  } catch (const Error& e) {
    std::string m = e.what();
    EXPECT_NE(m.find("cfg/config.json"), std::string::npos) << m;
    EXPECT_NE(m.find(needle), std::string::npos) << "'" << m << "' lacks '" << needle << "'";
  }
}

json with(json j, const std::string& key, const json& v) {
  j[key] = v;
  return j;
}

}  // namespace

TEST(HfConfig, Llama32WithLlama3Scaling) {
  LlamaConfig c = load_hf_llama_config(test::fixture("configs/llama-3.2-1b-instruct.json"));
  EXPECT_EQ(c.vocab_size, 128256);
  EXPECT_EQ(c.hidden_size, 2048);
  EXPECT_EQ(c.intermediate_size, 8192);
  EXPECT_EQ(c.num_layers, 16);
  EXPECT_EQ(c.num_heads, 32);
  EXPECT_EQ(c.num_kv_heads, 8);
  EXPECT_EQ(c.head_dim, 64);
  EXPECT_EQ(c.max_position_embeddings, 131072);
  EXPECT_DOUBLE_EQ(c.rms_norm_eps, 1e-5);
  EXPECT_DOUBLE_EQ(c.rope_theta, 500000.0);
  EXPECT_EQ(c.rope_scaling.type, RopeScaling::Type::Llama3);
  EXPECT_DOUBLE_EQ(c.rope_scaling.factor, 32.0);
  EXPECT_DOUBLE_EQ(c.rope_scaling.low_freq_factor, 1.0);
  EXPECT_DOUBLE_EQ(c.rope_scaling.high_freq_factor, 4.0);
  EXPECT_EQ(c.rope_scaling.original_max_position_embeddings, 8192);
  EXPECT_TRUE(c.tie_word_embeddings);
  EXPECT_EQ(c.bos_token_id, 128000);
  EXPECT_EQ(c.eos_token_ids, (std::vector<int32_t>{128001, 128008, 128009}));
  EXPECT_EQ(c.source_format, "hf");
}

TEST(HfConfig, SmolLM2) {
  LlamaConfig c = load_hf_llama_config(test::fixture("configs/smollm2-135m-instruct.json"));
  EXPECT_EQ(c.vocab_size, 49152);
  EXPECT_EQ(c.hidden_size, 576);
  EXPECT_EQ(c.num_layers, 30);
  EXPECT_EQ(c.num_heads, 9);
  EXPECT_EQ(c.num_kv_heads, 3);
  EXPECT_EQ(c.head_dim, 64);  // derived: 576 / 9
  EXPECT_EQ(c.intermediate_size, 1536);
  EXPECT_DOUBLE_EQ(c.rope_theta, 100000.0);
  EXPECT_EQ(c.rope_scaling.type, RopeScaling::Type::None);
  EXPECT_TRUE(c.tie_word_embeddings);
  EXPECT_EQ(c.bos_token_id, 1);
  EXPECT_EQ(c.eos_token_ids, (std::vector<int32_t>{2}));
}

TEST(HfConfig, YarnLinearAndLegacyType) {
  LlamaConfig y = load_hf_llama_config(test::fixture("configs/yarn.json"));
  EXPECT_EQ(y.rope_scaling.type, RopeScaling::Type::Yarn);
  EXPECT_DOUBLE_EQ(y.rope_scaling.factor, 4.0);
  EXPECT_EQ(y.rope_scaling.original_max_position_embeddings, 4096);
  EXPECT_DOUBLE_EQ(y.rope_scaling.beta_fast, 32.0);
  EXPECT_DOUBLE_EQ(y.rope_scaling.beta_slow, 1.0);
  EXPECT_DOUBLE_EQ(y.rope_scaling.mscale, 0.707);
  EXPECT_DOUBLE_EQ(y.rope_scaling.mscale_all_dim, 0.707);
  EXPECT_DOUBLE_EQ(y.rope_scaling.attention_factor, 0.0);  // derived later
  EXPECT_EQ(y.num_kv_heads, 4);
  EXPECT_DOUBLE_EQ(y.rms_norm_eps, 1e-6);
  EXPECT_FALSE(y.tie_word_embeddings);

  LlamaConfig l = load_hf_llama_config(test::fixture("configs/linear.json"));
  EXPECT_EQ(l.rope_scaling.type, RopeScaling::Type::Linear);
  EXPECT_DOUBLE_EQ(l.rope_scaling.factor, 2.0);
  EXPECT_EQ(l.num_kv_heads, 32);          // default: = num_attention_heads
  EXPECT_DOUBLE_EQ(l.rope_theta, 10000.0);  // default
  EXPECT_FALSE(l.tie_word_embeddings);     // transformers' LlamaConfig default

  LlamaConfig d = load_hf_llama_config(test::fixture("configs/legacy-type-dynamic.json"));
  EXPECT_EQ(d.rope_scaling.type, RopeScaling::Type::Dynamic);
  EXPECT_DOUBLE_EQ(d.rope_scaling.factor, 2.0);
  EXPECT_EQ(d.head_dim, 128);
}

TEST(HfConfig, Transformers5RopeParameters) {
  LlamaConfig c = load_hf_llama_config(test::fixture("tiny_llama/model/config.json"));
  EXPECT_EQ(c.vocab_size, 256);
  EXPECT_EQ(c.hidden_size, 64);
  EXPECT_EQ(c.num_layers, 3);
  EXPECT_EQ(c.num_heads, 4);
  EXPECT_EQ(c.num_kv_heads, 2);
  EXPECT_EQ(c.head_dim, 16);
  EXPECT_EQ(c.intermediate_size, 96);
  EXPECT_EQ(c.max_position_embeddings, 512);
  EXPECT_DOUBLE_EQ(c.rope_theta, 10000.0);
  EXPECT_DOUBLE_EQ(c.rms_norm_eps, 1e-5);
  EXPECT_EQ(c.rope_scaling.type, RopeScaling::Type::Llama3);
  EXPECT_DOUBLE_EQ(c.rope_scaling.factor, 8.0);
  EXPECT_EQ(c.rope_scaling.original_max_position_embeddings, 64);
  EXPECT_FALSE(c.tie_word_embeddings);

  EXPECT_EQ(load_hf_llama_config(test::fixture("tiny_llama/linear/config.json")).rope_scaling.type,
            RopeScaling::Type::Linear);
  LlamaConfig d = load_hf_llama_config(test::fixture("tiny_llama/dynamic/config.json"));
  EXPECT_EQ(d.rope_scaling.type, RopeScaling::Type::Dynamic);
  EXPECT_EQ(d.max_position_embeddings, 32);
  LlamaConfig y = load_hf_llama_config(test::fixture("tiny_llama/yarn/config.json"));
  EXPECT_EQ(y.rope_scaling.type, RopeScaling::Type::Yarn);
  EXPECT_DOUBLE_EQ(y.rope_scaling.factor, 4.0);
  EXPECT_EQ(y.rope_scaling.original_max_position_embeddings, 32);

  // rope_type "default" inside rope_parameters = no scaling, theta from inside.
  json j = minimal();
  j["rope_parameters"] = {{"rope_type", "default"}, {"rope_theta", 5e5}};
  LlamaConfig p = parse_hf_llama_config(j, "x");
  EXPECT_EQ(p.rope_scaling.type, RopeScaling::Type::None);
  EXPECT_DOUBLE_EQ(p.rope_theta, 5e5);
}

TEST(HfConfig, DefaultsAndLenientNumbers) {
  json j = minimal();
  j["max_position_embeddings"] = 4096.0;  // an integral float is accepted
  j["eos_token_id"] = nullptr;
  j["bos_token_id"] = nullptr;
  j["head_dim"] = nullptr;
  j["num_key_value_heads"] = nullptr;
  LlamaConfig c = parse_hf_llama_config(j, "x");
  EXPECT_EQ(c.max_position_embeddings, 4096);
  EXPECT_EQ(c.num_kv_heads, 4);
  EXPECT_EQ(c.head_dim, 16);
  EXPECT_DOUBLE_EQ(c.rms_norm_eps, 1e-6);
  EXPECT_EQ(c.bos_token_id, -1);
  EXPECT_TRUE(c.eos_token_ids.empty());
  // An explicit head_dim may differ from hidden / heads (then hidden need not divide).
  json k = with(with(minimal(), "num_attention_heads", 3), "head_dim", 32);
  EXPECT_EQ(parse_hf_llama_config(k, "x").head_dim, 32);
}

TEST(HfConfig, RejectsBadConfigs) {
  expect_error(with(minimal(), "hidden_size", "64"), "'hidden_size' must be an integer");
  expect_error(with(minimal(), "hidden_size", 64.5), "'hidden_size' must be an integer");
  expect_error(with(minimal(), "hidden_size", true), "'hidden_size'");
  expect_error(with(minimal(), "hidden_size", -64), "'hidden_size' must be positive");
  expect_error(with(minimal(), "num_hidden_layers", 0), "'num_hidden_layers' must be positive");
  expect_error(with(minimal(), "vocab_size", int64_t{1} << 40), "'vocab_size' = 1099511627776 is implausibly large");
  expect_error(with(minimal(), "hidden_size", uint64_t{1} << 63), "'hidden_size' is too large");
  {
    json j = minimal();
    j.erase("vocab_size");
    expect_error(j, "'vocab_size' is missing");
  }
  expect_error(with(minimal(), "num_attention_heads", 5), "not divisible by num_attention_heads");
  expect_error(with(minimal(), "num_key_value_heads", 3), "'num_key_value_heads' (3) must divide");
  expect_error(with(minimal(), "head_dim", 15), "head_dim must be even");
  expect_error(with(minimal(), "model_type", "mistral"), "'model_type' is 'mistral'");
  expect_error(with(minimal(), "architectures", {"Qwen2ForCausalLM"}), "'architectures' names 'Qwen2ForCausalLM'");
  expect_error(with(minimal(), "architectures", "LlamaForCausalLM"), "'architectures' must be a list");
  expect_error(with(minimal(), "attention_bias", true), "'attention_bias'");
  expect_error(with(minimal(), "mlp_bias", true), "'mlp_bias'");
  expect_error(with(minimal(), "hidden_act", "gelu"), "'hidden_act'");
  expect_error(with(minimal(), "rms_norm_eps", "1e-5"), "'rms_norm_eps' must be a number");
  expect_error(with(minimal(), "rms_norm_eps", 0), "'rms_norm_eps' must be positive");
  expect_error(with(minimal(), "rope_theta", -1.0), "'rope_theta' must be positive");
  expect_error(with(minimal(), "tie_word_embeddings", 1), "'tie_word_embeddings' must be true or false");
  expect_error(with(minimal(), "eos_token_id", {2, "x"}), "'eos_token_id[1]'");
  expect_error(with(minimal(), "eos_token_id", -1), "'eos_token_id' must be a token id");
  expect_error(with(minimal(), "eos_token_id", 100), "eos_token_id 100 out of range");
  expect_error(with(minimal(), "bos_token_id", 1000), "bos_token_id 1000 >= vocab_size");

  expect_error(with(minimal(), "rope_scaling", {{"rope_type", "longrope"}, {"factor", 2}}),
               "'rope_scaling.rope_type' = 'longrope' is not supported");
  expect_error(with(minimal(), "rope_scaling", {{"factor", 2}}), "no 'rope_type'");
  expect_error(with(minimal(), "rope_scaling", {{"rope_type", "linear"}}), "'rope_scaling.factor' is missing");
  expect_error(with(minimal(), "rope_scaling", {{"rope_type", "linear"}, {"factor", "2"}}),
               "'rope_scaling.factor' must be a number");
  expect_error(with(minimal(), "rope_scaling", {{"rope_type", "linear"}, {"factor", -2}}),
               "'rope_scaling.factor' must be positive");
  expect_error(with(minimal(), "rope_scaling", {{"rope_type", "linear"}, {"type", "dynamic"}, {"factor", 2}}),
               "rope_type 'linear' but type 'dynamic'");
  expect_error(with(minimal(), "rope_scaling", {{"rope_type", "llama3"}, {"factor", 8}, {"high_freq_factor", 4},
                                               {"original_max_position_embeddings", 8192}}),
               "'rope_scaling.low_freq_factor' is missing");
  expect_error(with(minimal(), "rope_scaling", {{"rope_type", "llama3"}, {"factor", 8}, {"low_freq_factor", 4},
                                               {"high_freq_factor", 4}, {"original_max_position_embeddings", 8192}}),
               "must be greater than low_freq_factor");
  expect_error(with(minimal(), "rope_scaling", {{"rope_type", "yarn"}, {"factor", 4}, {"truncate", false}}),
               "'rope_scaling.truncate'");
  expect_error(with(minimal(), "rope_scaling", {{"rope_type", "yarn"}, {"factor", 4},
                                               {"original_max_position_embeddings", -5}}),
               "'rope_scaling.original_max_position_embeddings' must be positive");
  expect_error(with(minimal(), "rope_scaling", {{"rope_type", "default"}, {"partial_rotary_factor", 0.5}}),
               "partial_rotary_factor");
  expect_error(with(minimal(), "rope_scaling", "linear"), "'rope_scaling' must be an object");
  {
    json j = minimal();
    j["rope_parameters"] = {{"rope_type", "linear"}, {"factor", 2.0}, {"rope_theta", 1e4}};
    j["rope_scaling"] = {{"rope_type", "dynamic"}, {"factor", 2.0}};
    expect_error(j, "disagree");
  }
  expect_error(json::array(), "must be a JSON object");
}

TEST(HfConfig, FileErrors) {
  EXPECT_THROW(load_hf_llama_config("/nonexistent/config.json"), Error);
  std::string dir = test::temp_dir();
  test::write_file(dir + "/config.json", "{\"vocab_size\": 10,");
  try {
    load_hf_llama_config(dir + "/config.json");
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("not valid JSON"), std::string::npos) << e.what();
  }
}
