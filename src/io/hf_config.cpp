#include "io/hf_config.h"

#include <cmath>
#include <fstream>
#include <limits>
#include <sstream>

#include "core/error.h"

namespace zebra {

namespace {

using json = nlohmann::json;

std::string type_of(const json& v) { return v.type_name(); }

// A present, non-null member or nullptr.
const json* member(const json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return nullptr;
  return &*it;
}

// An integer field: JSON integers, or floats with an integral value (some exporters write 2048.0).
int64_t as_int(const json& v, const std::string& where, const std::string& field) {
  if (v.is_number_integer()) {
    if (v.is_number_unsigned()) {
      uint64_t u = v.get<uint64_t>();
      ZEBRA_CHECK(u <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()), where, ": config field '", field,
                  "' is too large: ", u);
      return static_cast<int64_t>(u);
    }
    return v.get<int64_t>();
  }
  if (v.is_number_float()) {
    double d = v.get<double>();
    ZEBRA_CHECK(std::isfinite(d) && d == std::floor(d) && std::fabs(d) < 9e15, where, ": config field '", field,
                "' must be an integer, got ", d);
    return static_cast<int64_t>(d);
  }
  fail(where, ": config field '", field, "' must be an integer, got ", type_of(v), " ", v.dump());
}

double as_double(const json& v, const std::string& where, const std::string& field) {
  ZEBRA_CHECK(v.is_number(), where, ": config field '", field, "' must be a number, got ", type_of(v), " ",
              v.dump());
  double d = v.get<double>();
  ZEBRA_CHECK(std::isfinite(d), where, ": config field '", field, "' must be finite, got ", d);
  return d;
}

int64_t req_int(const json& j, const char* key, const std::string& where, const std::string& prefix = "") {
  const json* v = member(j, key);
  ZEBRA_CHECK(v != nullptr, where, ": config field '", prefix, key, "' is missing");
  return as_int(*v, where, prefix + key);
}

int64_t opt_int(const json& j, const char* key, int64_t def, const std::string& where, const std::string& prefix = "") {
  const json* v = member(j, key);
  return v ? as_int(*v, where, prefix + key) : def;
}

double req_double(const json& j, const char* key, const std::string& where, const std::string& prefix = "") {
  const json* v = member(j, key);
  ZEBRA_CHECK(v != nullptr, where, ": config field '", prefix, key, "' is missing");
  return as_double(*v, where, prefix + key);
}

double opt_double(const json& j, const char* key, double def, const std::string& where, const std::string& prefix = "") {
  const json* v = member(j, key);
  return v ? as_double(*v, where, prefix + key) : def;
}

bool opt_bool(const json& j, const char* key, bool def, const std::string& where, const std::string& prefix = "") {
  const json* v = member(j, key);
  if (!v) return def;
  ZEBRA_CHECK(v->is_boolean(), where, ": config field '", prefix, key, "' must be true or false, got ", type_of(*v), " ",
              v->dump());
  return v->get<bool>();
}

std::string opt_string(const json& j, const char* key, const std::string& where, const std::string& prefix = "") {
  const json* v = member(j, key);
  if (!v) return "";
  ZEBRA_CHECK(v->is_string(), where, ": config field '", prefix, key, "' must be a string, got ", type_of(*v), " ",
              v->dump());
  return v->get<std::string>();
}

int32_t token_id(const json& v, const std::string& where, const std::string& field) {
  int64_t id = as_int(v, where, field);
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
  std::string type = opt_string(j, "rope_type", where, pre);
  std::string legacy = opt_string(j, "type", where, pre);
  ZEBRA_CHECK(type.empty() || legacy.empty() || type == legacy, where, ": config field '", field,
              "' has rope_type '", type, "' but type '", legacy, "'");
  if (type.empty()) type = legacy;
  ZEBRA_CHECK(!type.empty(), where, ": config field '", field, "' has no 'rope_type' (or legacy 'type')");

  double partial = opt_double(j, "partial_rotary_factor", 1.0, where, pre);
  ZEBRA_CHECK(partial == 1.0, where, ": config field '", pre, "partial_rotary_factor' = ", partial,
              " is not supported (only full-width RoPE)");

  if (type == "default") return r;
  auto factor = [&] {
    double f = req_double(j, "factor", where, pre);
    ZEBRA_CHECK(f > 0, where, ": config field '", pre, "factor' must be positive, got ", f);
    return f;
  };
  if (type == "linear") {
    r.type = RopeScaling::Type::Linear;
    r.factor = factor();
  } else if (type == "dynamic") {
    r.type = RopeScaling::Type::Dynamic;
    r.factor = factor();
    r.original_max_position_embeddings = opt_int(j, "original_max_position_embeddings", 0, where, pre);
  } else if (type == "llama3") {
    r.type = RopeScaling::Type::Llama3;
    r.factor = factor();
    r.low_freq_factor = req_double(j, "low_freq_factor", where, pre);
    r.high_freq_factor = req_double(j, "high_freq_factor", where, pre);
    r.original_max_position_embeddings = req_int(j, "original_max_position_embeddings", where, pre);
    ZEBRA_CHECK(r.low_freq_factor > 0, where, ": config field '", pre, "low_freq_factor' must be positive");
    // The smoothing between the two bands divides by their difference.
    ZEBRA_CHECK(r.high_freq_factor > r.low_freq_factor, where, ": config field '", pre, "high_freq_factor' (",
                r.high_freq_factor, ") must be greater than low_freq_factor (", r.low_freq_factor, ")");
  } else if (type == "yarn") {
    r.type = RopeScaling::Type::Yarn;
    r.factor = factor();
    r.original_max_position_embeddings = opt_int(j, "original_max_position_embeddings", 0, where, pre);
    r.beta_fast = opt_double(j, "beta_fast", 32.0, where, pre);
    r.beta_slow = opt_double(j, "beta_slow", 1.0, where, pre);
    r.mscale = opt_double(j, "mscale", 1.0, where, pre);
    r.mscale_all_dim = opt_double(j, "mscale_all_dim", 0.0, where, pre);
    r.attention_factor = opt_double(j, "attention_factor", 0.0, where, pre);
    ZEBRA_CHECK(r.attention_factor >= 0, where, ": config field '", pre, "attention_factor' must be >= 0");
    ZEBRA_CHECK(r.beta_fast > 0 && r.beta_slow > 0, where, ": config fields '", pre, "beta_fast' and '", pre,
                "beta_slow' must be positive");
    ZEBRA_CHECK(opt_bool(j, "truncate", true, where, pre), where, ": config field '", pre,
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
  std::string model_type = opt_string(j, "model_type", where);
  ZEBRA_CHECK(model_type.empty() || model_type == "llama", where, ": config field 'model_type' is '", model_type,
              "'; only 'llama' models are supported");
  if (const json* arch = member(j, "architectures")) {
    ZEBRA_CHECK(arch->is_array(), where, ": config field 'architectures' must be a list of strings");
    for (const json& a : *arch) {
      ZEBRA_CHECK(a.is_string(), where, ": config field 'architectures' must be a list of strings");
      const std::string s = a.get<std::string>();
      ZEBRA_CHECK(s == "LlamaForCausalLM" || s == "LlamaModel", where, ": config field 'architectures' names '", s,
                  "'; only LlamaForCausalLM is supported");
    }
  }
  std::string act = opt_string(j, "hidden_act", where);
  ZEBRA_CHECK(act.empty() || act == "silu", where, ": config field 'hidden_act' is '", act,
              "'; Llama uses 'silu'");
  ZEBRA_CHECK(!opt_bool(j, "attention_bias", false, where), where,
              ": config field 'attention_bias' = true is not supported (Llama projections have no bias)");
  ZEBRA_CHECK(!opt_bool(j, "mlp_bias", false, where), where,
              ": config field 'mlp_bias' = true is not supported (Llama MLP has no bias)");

  LlamaConfig c;
  c.source_format = "hf";
  c.vocab_size = positive(req_int(j, "vocab_size", where), where, "vocab_size");
  c.hidden_size = positive(req_int(j, "hidden_size", where), where, "hidden_size");
  c.intermediate_size = positive(req_int(j, "intermediate_size", where), where, "intermediate_size");
  c.num_layers = positive(req_int(j, "num_hidden_layers", where), where, "num_hidden_layers");
  c.num_heads = positive(req_int(j, "num_attention_heads", where), where, "num_attention_heads");
  c.num_kv_heads = positive(opt_int(j, "num_key_value_heads", c.num_heads, where), where, "num_key_value_heads");
  ZEBRA_CHECK(c.num_heads % c.num_kv_heads == 0, where, ": config field 'num_key_value_heads' (", c.num_kv_heads,
              ") must divide num_attention_heads (", c.num_heads, ")");
  if (const json* hd = member(j, "head_dim")) {
    c.head_dim = positive(as_int(*hd, where, "head_dim"), where, "head_dim");
  } else {
    ZEBRA_CHECK(c.hidden_size % c.num_heads == 0, where, ": config has no 'head_dim' and hidden_size (",
                c.hidden_size, ") is not divisible by num_attention_heads (", c.num_heads, ")");
    c.head_dim = c.hidden_size / c.num_heads;
  }
  c.max_position_embeddings =
      positive(opt_int(j, "max_position_embeddings", 2048, where), where, "max_position_embeddings");
  c.rms_norm_eps = opt_double(j, "rms_norm_eps", 1e-6, where);
  ZEBRA_CHECK(c.rms_norm_eps > 0, where, ": config field 'rms_norm_eps' must be positive, got ", c.rms_norm_eps);
  c.tie_word_embeddings = opt_bool(j, "tie_word_embeddings", false, where);

  // RoPE: transformers 5 writes rope_parameters (with rope_theta inside); 4.x writes rope_theta and
  // rope_scaling. Accept both; if both scaling dicts are present they must agree on the type.
  c.rope_theta = opt_double(j, "rope_theta", 10000.0, where);
  const json* params = member(j, "rope_parameters");
  const json* scaling = member(j, "rope_scaling");
  if (params) {
    ZEBRA_CHECK(params->is_object(), where, ": config field 'rope_parameters' must be an object");
    c.rope_theta = opt_double(*params, "rope_theta", c.rope_theta, where, "rope_parameters.");
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

  if (const json* b = member(j, "bos_token_id")) c.bos_token_id = token_id(*b, where, "bos_token_id");
  if (const json* e = member(j, "eos_token_id")) {
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
  std::ifstream in(config_json_path, std::ios::binary);
  ZEBRA_CHECK(in.good(), "cannot open HF config ", config_json_path);
  std::stringstream ss;
  ss << in.rdbuf();
  json j;
  try {
    j = json::parse(ss.str());
  } catch (const json::exception& e) {
    fail(config_json_path, ": not valid JSON: ", e.what());
  }
  return parse_hf_llama_config(j, config_json_path);
}

}  // namespace zebra
