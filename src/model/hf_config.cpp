#include "model/hf_config.h"

#include <cmath>
#include <fstream>
#include <limits>
#include <sstream>

#include "core/error.h"
#include "io/json_fields.h"

namespace zebra {

namespace {

using json = nlohmann::json;

std::string type_of(const json& v) { return v.type_name(); }

int32_t token_id(const json& v, const std::string& where, const std::string& field) {
  int64_t id = json_int(v, where, field);
  ZEBRA_CHECK(id >= 0 && id <= std::numeric_limits<int32_t>::max(), where, ": config field '", field,
              "' must be a token id >= 0, got ", id);
  return static_cast<int32_t>(id);
}

// Sizes must be positive and small enough that products of two of them (q_dim, vocab * hidden, ...) cannot
// overflow int64 downstream; 2^31 is far beyond any real model.
int64_t positive(int64_t v, const std::string& where, const char* field) {
  ZEBRA_CHECK(v > 0, where, ": config field '", field, "' must be positive, got ", v);
  ZEBRA_CHECK(v <= (int64_t{1} << 31), where, ": config field '", field, "' = ", v, " is implausibly large");
  return v;
}

}  // namespace

RopeScaling parse_hf_rope_scaling(const json& j, const std::string& where, const std::string& field) {
  RopeScaling r;
  if (j.is_null()) return r;
  ZEBRA_CHECK(j.is_object(), where, ": config field '", field, "' must be an object or null, got ", type_of(j));
  const std::string pre = field + ".";
  std::string type = json_optional_string(j, "rope_type", where, pre);
  std::string legacy = json_optional_string(j, "type", where, pre);
  ZEBRA_CHECK(type.empty() || legacy.empty() || type == legacy, where, ": config field '", field,
              "' has rope_type '", type, "' but type '", legacy, "'");
  if (type.empty()) type = legacy;
  ZEBRA_CHECK(!type.empty(), where, ": config field '", field, "' has no 'rope_type' (or legacy 'type')");

  double partial = json_optional_double(j, "partial_rotary_factor", 1.0, where, pre);
  ZEBRA_CHECK(partial == 1.0, where, ": config field '", pre, "partial_rotary_factor' = ", partial,
              " is not supported (only full-width RoPE)");

  if (type == "default") return r;
  auto factor = [&] {
    double f = json_required_double(j, "factor", where, pre);
    ZEBRA_CHECK(f > 0, where, ": config field '", pre, "factor' must be positive, got ", f);
    return f;
  };
  if (type == "linear") {
    r.type = RopeScaling::Type::Linear;
    r.factor = factor();
  } else if (type == "dynamic") {
    r.type = RopeScaling::Type::Dynamic;
    r.factor = factor();
    r.original_max_position_embeddings = json_optional_int(j, "original_max_position_embeddings", 0, where, pre);
  } else if (type == "llama3") {
    r.type = RopeScaling::Type::Llama3;
    r.factor = factor();
    r.low_freq_factor = json_required_double(j, "low_freq_factor", where, pre);
    r.high_freq_factor = json_required_double(j, "high_freq_factor", where, pre);
    r.original_max_position_embeddings = json_required_int(j, "original_max_position_embeddings", where, pre);
    ZEBRA_CHECK(r.low_freq_factor > 0, where, ": config field '", pre, "low_freq_factor' must be positive");
    // The smoothing between the two bands divides by their difference.
    ZEBRA_CHECK(r.high_freq_factor > r.low_freq_factor, where, ": config field '", pre, "high_freq_factor' (",
                r.high_freq_factor, ") must be greater than low_freq_factor (", r.low_freq_factor, ")");
  } else if (type == "yarn") {
    r.type = RopeScaling::Type::Yarn;
    r.factor = factor();
    r.original_max_position_embeddings = json_optional_int(j, "original_max_position_embeddings", 0, where, pre);
    r.beta_fast = json_optional_double(j, "beta_fast", 32.0, where, pre);
    r.beta_slow = json_optional_double(j, "beta_slow", 1.0, where, pre);
    r.mscale = json_optional_double(j, "mscale", 1.0, where, pre);
    r.mscale_all_dim = json_optional_double(j, "mscale_all_dim", 0.0, where, pre);
    r.attention_factor = json_optional_double(j, "attention_factor", 0.0, where, pre);
    ZEBRA_CHECK(r.attention_factor >= 0, where, ": config field '", pre, "attention_factor' must be >= 0");
    ZEBRA_CHECK(r.beta_fast > 0 && r.beta_slow > 0, where, ": config fields '", pre, "beta_fast' and '", pre,
                "beta_slow' must be positive");
    ZEBRA_CHECK(json_optional_bool(j, "truncate", true, where, pre), where, ": config field '", pre,
                "truncate' = false is not supported");
  } else {
    fail(where, ": config field '", pre, "rope_type' = '", type,
         "' is not supported (expected default, linear, dynamic, llama3 or yarn)");
  }
  if (r.original_max_position_embeddings != 0)
    ZEBRA_CHECK(r.original_max_position_embeddings > 0, where, ": config field '", pre,
                "original_max_position_embeddings' must be positive, got ", r.original_max_position_embeddings);
  return r;
}

LlamaConfig parse_hf_llama_config(const json& j, const std::string& where) {
  ZEBRA_CHECK(j.is_object(), where, ": config must be a JSON object, got ", type_of(j));

  // Architecture: only Llama; other families load silently wrong (different norms, biases, layouts).
  std::string model_type = json_optional_string(j, "model_type", where);
  ZEBRA_CHECK(model_type.empty() || model_type == "llama", where, ": config field 'model_type' is '", model_type,
              "'; only 'llama' models are supported");
  if (const json* arch = json_member(j, "architectures")) {
    ZEBRA_CHECK(arch->is_array(), where, ": config field 'architectures' must be a list of strings");
    for (const json& a : *arch) {
      ZEBRA_CHECK(a.is_string(), where, ": config field 'architectures' must be a list of strings");
      const std::string s = a.get<std::string>();
      ZEBRA_CHECK(s == "LlamaForCausalLM" || s == "LlamaModel", where, ": config field 'architectures' names '", s,
                  "'; only LlamaForCausalLM is supported");
    }
  }
  std::string act = json_optional_string(j, "hidden_act", where);
  ZEBRA_CHECK(act.empty() || act == "silu", where, ": config field 'hidden_act' is '", act,
              "'; Llama uses 'silu'");
  ZEBRA_CHECK(!json_optional_bool(j, "attention_bias", false, where), where,
              ": config field 'attention_bias' = true is not supported (Llama projections have no bias)");
  ZEBRA_CHECK(!json_optional_bool(j, "mlp_bias", false, where), where,
              ": config field 'mlp_bias' = true is not supported (Llama MLP has no bias)");

  LlamaConfig c;
  c.source_format = "hf";
  c.vocab_size = positive(json_required_int(j, "vocab_size", where), where, "vocab_size");
  c.hidden_size = positive(json_required_int(j, "hidden_size", where), where, "hidden_size");
  c.intermediate_size = positive(json_required_int(j, "intermediate_size", where), where, "intermediate_size");
  c.num_layers = positive(json_required_int(j, "num_hidden_layers", where), where, "num_hidden_layers");
  c.num_heads = positive(json_required_int(j, "num_attention_heads", where), where, "num_attention_heads");
  c.num_kv_heads =
      positive(json_optional_int(j, "num_key_value_heads", c.num_heads, where), where, "num_key_value_heads");
  ZEBRA_CHECK(c.num_heads % c.num_kv_heads == 0, where, ": config field 'num_key_value_heads' (", c.num_kv_heads,
              ") must divide num_attention_heads (", c.num_heads, ")");
  if (const json* hd = json_member(j, "head_dim")) {
    c.head_dim = positive(json_int(*hd, where, "head_dim"), where, "head_dim");
  } else {
    ZEBRA_CHECK(c.hidden_size % c.num_heads == 0, where, ": config has no 'head_dim' and hidden_size (",
                c.hidden_size, ") is not divisible by num_attention_heads (", c.num_heads, ")");
    c.head_dim = c.hidden_size / c.num_heads;
  }
  c.max_position_embeddings =
      positive(json_optional_int(j, "max_position_embeddings", 2048, where), where, "max_position_embeddings");
  c.rms_norm_eps = json_optional_double(j, "rms_norm_eps", 1e-6, where);
  ZEBRA_CHECK(c.rms_norm_eps > 0, where, ": config field 'rms_norm_eps' must be positive, got ", c.rms_norm_eps);
  c.tie_word_embeddings = json_optional_bool(j, "tie_word_embeddings", false, where);

  // RoPE: transformers 5 writes rope_parameters (with rope_theta inside); 4.x writes rope_theta and
  // rope_scaling. Accept both; if both scaling dicts are present they must agree on the type.
  c.rope_theta = json_optional_double(j, "rope_theta", 10000.0, where);
  const json* params = json_member(j, "rope_parameters");
  const json* scaling = json_member(j, "rope_scaling");
  if (params) {
    ZEBRA_CHECK(params->is_object(), where, ": config field 'rope_parameters' must be an object");
    c.rope_theta = json_optional_double(*params, "rope_theta", c.rope_theta, where, "rope_parameters.");
    c.rope_scaling = parse_hf_rope_scaling(*params, where, "rope_parameters");
    if (scaling) {
      RopeScaling other = parse_hf_rope_scaling(*scaling, where, "rope_scaling");
      ZEBRA_CHECK(other.type == c.rope_scaling.type && other.factor == c.rope_scaling.factor, where,
                  ": config fields 'rope_scaling' and 'rope_parameters' disagree");
    }
  } else if (scaling) {
    c.rope_scaling = parse_hf_rope_scaling(*scaling, where, "rope_scaling");
  }
  ZEBRA_CHECK(c.rope_theta > 0, where, ": config field 'rope_theta' must be positive, got ", c.rope_theta);

  if (const json* b = json_member(j, "bos_token_id")) c.bos_token_id = token_id(*b, where, "bos_token_id");
  if (const json* e = json_member(j, "eos_token_id")) {
    if (e->is_array()) {
      for (size_t i = 0; i < e->size(); ++i)
        c.eos_token_ids.push_back(token_id((*e)[i], where, cat("eos_token_id[", i, "]")));
    } else {
      c.eos_token_ids.push_back(token_id(*e, where, "eos_token_id"));
    }
  }
  c.validate(where);
  return c;
}

LlamaConfig load_hf_llama_config(const std::string& config_json_path) {
  json j = read_json_file(config_json_path, "HF config");
  return parse_hf_llama_config(j, config_json_path);
}

}  // namespace zebra
