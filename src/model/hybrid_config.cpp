// hybrid_config.json (AMD's HybridConfig dump, both generations; spec §7.2), the per-layer MLA and
// Mamba2 shapes it implies, and parameter / KV-cache counts from the configs alone (spec §1.5, §1.6).
#include "model/hybrid_config.h"

#include <algorithm>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/error.h"
#include "io/atomic_write.h"
#include "io/json_fields.h"

namespace zebra {

namespace {

using json = nlohmann::json;

// The Mamba2 gated RMSNorm eps is hard-coded in the MambaInLlama layer (spec §1.4).
constexpr double kMambaNormEps = 1e-5;
// q_a_layernorm / kv_a_layernorm: AMD builds DeepSeek's RMSNorm without an eps, i.e. its 1e-6 default.
constexpr double kLoraNormEps = 1e-6;

// A field that repeats a Llama config value must agree with config.json.
void check_same(const json& j, const char* key, int64_t base_value, const char* base_field, const std::string& where) {
  if (const json* v = json_member(j, key)) {
    int64_t got = json_int(*v, where, key);
    ZEBRA_CHECK(got == base_value, where, ": field '", key, "' = ", got, " contradicts config.json's ", base_field,
                " = ", base_value);
  }
}

// The spec's LOADER RULE (§7.2): always YaRN; factor and original_max_position_embeddings (default 8192)
// from the dict, beta/mscale keys if present else DeepSeek's defaults, whatever the dict's rope_type says
// (June-2025 files carry Llama's llama3 dict here). A missing dict is factor 1, i.e. plain RoPE.
RopeScaling yarn_from_dict(const json* rs, const std::string& where) {
  RopeScaling r;
  r.type = RopeScaling::Type::Yarn;
  r.factor = 1.0;
  r.original_max_position_embeddings = 8192;
  if (!rs) return r;
  ZEBRA_CHECK(rs->is_object(), where, ": field 'rope_scaling' must be an object or null, got ", rs->type_name());
  const std::string pre = "rope_scaling.";
  r.factor = json_optional_double(*rs, "factor", 1.0, where, pre);
  r.original_max_position_embeddings = json_optional_int(*rs, "original_max_position_embeddings", 8192, where, pre);
  r.beta_fast = json_optional_double(*rs, "beta_fast", 32.0, where, pre);
  r.beta_slow = json_optional_double(*rs, "beta_slow", 1.0, where, pre);
  r.mscale = json_optional_double(*rs, "mscale", 1.0, where, pre);
  r.mscale_all_dim = json_optional_double(*rs, "mscale_all_dim", 0.0, where, pre);
  ZEBRA_CHECK(r.factor > 0, where, ": field 'rope_scaling.factor' must be positive, got ", r.factor);
  ZEBRA_CHECK(r.original_max_position_embeddings > 0, where,
              ": field 'rope_scaling.original_max_position_embeddings' must be positive, got ",
              r.original_max_position_embeddings);
  ZEBRA_CHECK(r.beta_fast > 0 && r.beta_slow > 0, where,
              ": fields 'rope_scaling.beta_fast' and 'rope_scaling.beta_slow' must be positive");
  return r;
}

HybridConfig parse_hybrid(const json& j, const LlamaConfig& base, const std::string& where) {
  ZEBRA_CHECK(j.is_object(), where, ": hybrid config must be a JSON object, got ", j.type_name());
  HybridConfig h;

  // Fields repeating config.json: accepted when they agree.
  check_same(j, "hidden_size", base.hidden_size, "hidden_size", where);
  check_same(j, "d_model", base.hidden_size, "hidden_size", where);
  check_same(j, "intermediate_size", base.intermediate_size, "intermediate_size", where);
  check_same(j, "n_layer", base.num_layers, "num_hidden_layers", where);
  check_same(j, "num_attention_heads", base.num_heads, "num_attention_heads", where);
  check_same(j, "num_key_value_heads", base.num_kv_heads, "num_key_value_heads", where);
  if (const json* act = json_member(j, "hidden_act")) {
    ZEBRA_CHECK(act->is_string() && act->get<std::string>() == "silu", where, ": field 'hidden_act' is ",
                act->dump(), "; only \"silu\" is supported");
  }
  ZEBRA_CHECK(!json_optional_bool(j, "attention_bias", false, where), where,
              ": field 'attention_bias' = true is not supported (Zebra's MLA projections have no bias)");

  if (const json* ml = json_member(j, "mla_layers")) {
    ZEBRA_CHECK(ml->is_array(), where, ": field 'mla_layers' must be a list of layer indices, got ", ml->type_name());
    for (size_t i = 0; i < ml->size(); ++i) {
      h.mla_layers.push_back(json_int((*ml)[i], where, cat("mla_layers[", i, "]")));
    }
  }

  // MLA. Ranks are only required when some layer is MLA.
  const bool any_mla = !h.mla_layers.empty();
  auto mla_int = [&](const char* key) {
    return any_mla ? json_required_int(j, key, where) : json_optional_int(j, key, 0, where);
  };
  // null q_lora_rank = full q_proj
  if (const json* q = json_member(j, "q_lora_rank")) h.q_lora_rank = json_int(*q, where, "q_lora_rank");
  h.kv_lora_rank = mla_int("kv_lora_rank");
  h.qk_rope_head_dim = mla_int("qk_rope_head_dim");
  h.qk_nope_head_dim = mla_int("qk_nope_head_dim");
  h.v_head_dim = mla_int("v_head_dim");
  h.use_lora_layer_norm = json_optional_bool(j, "use_lora_layer_norm", false, where);
  h.use_full_kv_head = json_optional_bool(j, "use_full_kv_head", false, where);
  h.qkv_rank_divisor = json_optional_int(j, "qkv_rank_divisor", 8, where);
  h.rope_theta = json_optional_double(j, "rope_theta", base.rope_theta, where);
  h.max_position_embeddings = json_optional_int(j, "max_position_embeddings", base.max_position_embeddings, where);
  h.rms_norm_eps = json_optional_double(j, "rms_norm_eps", base.rms_norm_eps, where);
  h.mla_rope = yarn_from_dict(json_member(j, "rope_scaling"), where);

  if (const json* lr = json_member(j, "layer_rank_list")) {
    ZEBRA_CHECK(lr->is_object(), where, ": field 'layer_rank_list' must be an object {\"layer\": {\"q_rank\", "
                "\"kv_rank\"}}, got ", lr->type_name());
    for (auto it = lr->begin(); it != lr->end(); ++it) {
      const std::string f = "layer_rank_list." + it.key();
      int64_t layer = 0;
      try {
        size_t used = 0;
        layer = std::stoll(it.key(), &used);
        ZEBRA_CHECK(used == it.key().size(), "");
      } catch (...) {
        fail(where, ": field 'layer_rank_list' has key '", it.key(), "'; keys must be layer indices");
      }
      ZEBRA_CHECK(it.value().is_object(), where, ": field '", f, "' must be an object {\"q_rank\", \"kv_rank\"}");
      // q_rank absent: the global rank; null: no q LoRA (full q_proj), as for q_lora_rank.
      int64_t q = h.q_lora_rank;
      if (it.value().contains("q_rank")) {
        const json* qr = json_member(it.value(), "q_rank");
        q = qr ? json_int(*qr, where, f + ".q_rank") : 0;
      }
      int64_t kv = json_required_int(it.value(), "kv_rank", where, f + ".");
      h.layer_ranks[layer] = {q, kv};
    }
  }

  // Mamba2 (spec §1.4): head_dim = d_state, heads = d_inner / d_state = ngroups.
  const json* ssm = json_member(j, "ssm_cfg");
  ZEBRA_CHECK(!ssm || ssm->is_object(), where, ": field 'ssm_cfg' must be an object");
  const json empty = json::object();
  const json& s = ssm ? *ssm : empty;
  const int64_t expand = json_optional_int(s, "expand", 1, where, "ssm_cfg.");
  h.d_state = json_optional_int(s, "d_state", base.head_dim, where, "ssm_cfg.");
  h.d_inner = json_optional_int(j, "d_inner", expand * base.hidden_size, where);
  if (json_member(s, "expand") && json_member(j, "d_inner"))
    ZEBRA_CHECK(expand * base.hidden_size == h.d_inner, where, ": field 'd_inner' = ", h.d_inner,
                " contradicts ssm_cfg.expand (", expand, ") * hidden_size (", base.hidden_size, ")");
  h.ngroups = json_optional_int(s, "ngroups", h.d_state > 0 ? h.d_inner / h.d_state : 0, where, "ssm_cfg.");
  h.d_xb = json_optional_int(j, "d_xb", base.num_kv_heads * h.d_state, where);
  h.d_conv = json_optional_int(s, "d_conv", 4, where, "ssm_cfg.");
  h.repeat_kv_before_conv = json_optional_bool(s, "repeat_kv_before_conv", false, where, "ssm_cfg.");

  // Generation: the June-2025 trainer wrote these extra fields and Llama's llama3 dict as rope_scaling.
  bool june = j.contains("layer_rank_list") || j.contains("use_fixed_rank_for_first_and_last_block") ||
              j.contains("q_energy_ratio") || j.contains("kv_energy_ratio");
  if (const json* rs = json_member(j, "rope_scaling"))
    if (rs->is_object() && rs->value("rope_type", std::string()) == "llama3") june = true;
  h.generation = june ? "june2025" : "current";

  h.validate(base, where);
  return h;
}

}  // namespace

bool HybridConfig::is_mla(int64_t layer) const {
  return std::binary_search(mla_layers.begin(), mla_layers.end(), layer);
}

MlaDims HybridConfig::mla_dims(const LlamaConfig& base, int64_t layer) const {
  MlaDims d;
  d.hidden = base.hidden_size;
  d.n_heads = base.num_heads;
  d.kv_heads = use_full_kv_head ? base.num_heads : base.num_kv_heads;
  d.q_rank = q_lora_rank;
  d.kv_rank = kv_lora_rank;
  if (auto it = layer_ranks.find(layer); it != layer_ranks.end()) {
    d.q_rank = it->second.first;
    d.kv_rank = it->second.second;
  }
  d.rope_dim = qk_rope_head_dim;
  d.nope_dim = qk_nope_head_dim;
  d.v_dim = v_head_dim;
  d.lora_norm = use_lora_layer_norm;
  d.eps = kLoraNormEps;
  return d;
}

Mamba2Dims HybridConfig::mamba_dims(const LlamaConfig& base) const {
  Mamba2Dims d;
  d.hidden = base.hidden_size;
  d.d_inner = d_inner;
  d.d_xb = d_xb;
  d.d_state = d_state;
  d.head_dim = d_state;
  d.n_heads = d_state > 0 ? d_inner / d_state : 0;
  d.d_conv = d_conv;
  d.eps = kMambaNormEps;
  return d;
}

void HybridConfig::validate(const LlamaConfig& base, const std::string& where) const {
  const int64_t L = base.num_layers;
  for (size_t i = 0; i < mla_layers.size(); ++i) {
    const int64_t l = mla_layers[i];
    ZEBRA_CHECK(l >= 0 && l < L, where, ": mla_layers[", i, "] = ", l, " is out of range [0, ", L, ")");
    if (i > 0) {
      ZEBRA_CHECK(l != mla_layers[i - 1], where, ": mla_layers[", i, "] = ", l, " is listed twice");
      ZEBRA_CHECK(l > mla_layers[i - 1], where, ": mla_layers must be sorted ascending; mla_layers[", i, "] = ", l,
                  " follows ", mla_layers[i - 1]);
    }
  }
  const bool any_mla = !mla_layers.empty();
  const bool any_mamba = static_cast<int64_t>(mla_layers.size()) < L;

  if (any_mla) {
    ZEBRA_CHECK(qk_rope_head_dim > 0 && qk_rope_head_dim % 2 == 0, where,
                ": qk_rope_head_dim must be positive and even (rope rotates pairs), got ", qk_rope_head_dim);
    ZEBRA_CHECK(qk_nope_head_dim >= 0, where, ": qk_nope_head_dim must be >= 0, got ", qk_nope_head_dim);
    ZEBRA_CHECK(v_head_dim > 0, where, ": v_head_dim must be positive, got ", v_head_dim);
    ZEBRA_CHECK(qkv_rank_divisor > 0, where, ": qkv_rank_divisor must be positive, got ", qkv_rank_divisor);
    ZEBRA_CHECK(rope_theta > 0, where, ": rope_theta must be positive, got ", rope_theta);
    ZEBRA_CHECK(max_position_embeddings > 0, where, ": max_position_embeddings must be positive, got ",
                max_position_embeddings);
    ZEBRA_CHECK(mla_rope.factor > 0, where, ": rope_scaling.factor must be positive, got ", mla_rope.factor);
    for (const auto& [layer, r] : layer_ranks)
      ZEBRA_CHECK(is_mla(layer), where, ": layer_rank_list names layer ", layer, ", which is not in mla_layers");
    for (int64_t l : mla_layers) {
      const MlaDims d = mla_dims(base, l);
      const int64_t q_rows = d.n_heads * d.q_head_dim(), kv_rows = d.kv_heads * (d.nope_dim + d.v_dim);
      // A factorisation wider than either side of the matrix it factors adds nothing (and the SVD
      // init cannot fill it).
      ZEBRA_CHECK(d.q_rank >= 0 && d.q_rank <= std::min(q_rows, d.hidden), where, ": q_lora_rank of layer ", l,
                  " is ", d.q_rank, "; it must be 0 (full q_proj) or at most min(hidden ", d.hidden,
                  ", heads*(nope+rope) ", q_rows, ") = ", std::min(q_rows, d.hidden));
      ZEBRA_CHECK(d.kv_rank > 0 && d.kv_rank <= std::min(kv_rows, d.hidden), where, ": kv_lora_rank of layer ", l,
                  " is ", d.kv_rank, "; it must be in [1, min(hidden ", d.hidden, ", kv_heads*(nope+v) ", kv_rows,
                  ")] = [1, ", std::min(kv_rows, d.hidden), "]");
    }
  }
  if (any_mamba) {
    ZEBRA_CHECK(!repeat_kv_before_conv, where, ": ssm_cfg.repeat_kv_before_conv = true is not supported "
                "(no released Zebra config uses it)");
    ZEBRA_CHECK(d_state > 0, where, ": ssm_cfg.d_state must be positive, got ", d_state);
    ZEBRA_CHECK(d_inner > 0 && d_inner % d_state == 0, where, ": d_inner (", d_inner,
                ") must be a positive multiple of the Mamba2 head dim = ssm_cfg.d_state (", d_state, ")");
    const int64_t heads = d_inner / d_state;
    ZEBRA_CHECK(ngroups == heads, where, ": ssm_cfg.ngroups (", ngroups, ") must equal d_inner / d_state = ",
                heads, " (one group per Mamba2 head)");
    ZEBRA_CHECK(d_xb > 0 && d_xb % d_state == 0, where, ": d_xb (", d_xb,
                ") must be a positive multiple of the head dim d_state (", d_state, ")");
    ZEBRA_CHECK(heads % (d_xb / d_state) == 0, where, ": d_xb / d_state = ", d_xb / d_state,
                " x/B groups must divide the ", heads, " Mamba2 heads (d_inner = heads * head_dim, d_xb = "
                "kv_heads * head_dim)");
    ZEBRA_CHECK(d_conv > 0, where, ": ssm_cfg.d_conv must be positive, got ", d_conv);
  }
  ZEBRA_CHECK(rms_norm_eps > 0, where, ": rms_norm_eps must be positive, got ", rms_norm_eps);
}

HybridConfig load_hybrid_config(const std::string& path, const LlamaConfig& base) {
  json j = read_json_file(path, "hybrid config");
  try {
    return parse_hybrid(j, base, path);
  } catch (const json::exception& e) {
    fail(path, ": unexpected JSON structure: ", e.what());
  }
}

void save_hybrid_config(const std::string& path, const HybridConfig& h, const LlamaConfig& base) {
  h.validate(base, path);
  // Field order of AMD's current HybridConfig dataclass (spec §7.2).
  json j = json::object();
  j["hidden_size"] = base.hidden_size;
  j["intermediate_size"] = base.intermediate_size;
  j["hidden_act"] = "silu";
  j["n_layer"] = base.num_layers;
  j["mla_layers"] = h.mla_layers;
  j["rms_norm_eps"] = h.rms_norm_eps;
  j["num_attention_heads"] = base.num_heads;
  j["num_key_value_heads"] = base.num_kv_heads;
  j["kv_lora_rank"] = h.kv_lora_rank;
  j["q_lora_rank"] = h.q_lora_rank > 0 ? json(h.q_lora_rank) : json(nullptr);
  j["use_lora_layer_norm"] = h.use_lora_layer_norm;
  j["use_full_kv_head"] = h.use_full_kv_head;
  // Not a field of the current dataclass, but the only way to keep dynamic-rank models loadable
  // (the June-2025 code wrote it; the loader rule reads it in either generation).
  if (!h.layer_ranks.empty()) {
    json lr = json::object();
    for (const auto& [layer, r] : h.layer_ranks)
      lr[std::to_string(layer)] = {{"q_rank", r.first > 0 ? json(r.first) : json(nullptr)}, {"kv_rank", r.second}};
    j["layer_rank_list"] = lr;
  }
  j["qk_rope_head_dim"] = h.qk_rope_head_dim;
  j["v_head_dim"] = h.v_head_dim;
  j["qk_nope_head_dim"] = h.qk_nope_head_dim;
  j["qkv_rank_divisor"] = h.qkv_rank_divisor;
  j["max_position_embeddings"] = h.max_position_embeddings;
  j["rope_theta"] = h.rope_theta;
  json rs = {{"factor", h.mla_rope.factor},
             {"original_max_position_embeddings",
              h.mla_rope.original_max_position_embeddings > 0 ? h.mla_rope.original_max_position_embeddings : 8192},
             {"rope_type", "yarn"}};
  if (h.mla_rope.beta_fast != 32.0) rs["beta_fast"] = h.mla_rope.beta_fast;
  if (h.mla_rope.beta_slow != 1.0) rs["beta_slow"] = h.mla_rope.beta_slow;
  if (h.mla_rope.mscale != 1.0) rs["mscale"] = h.mla_rope.mscale;
  if (h.mla_rope.mscale_all_dim != 0.0) rs["mscale_all_dim"] = h.mla_rope.mscale_all_dim;
  j["rope_scaling"] = rs;
  j["attention_bias"] = false;
  j["attention_dropout"] = 0.0;
  j["rope_type"] = "yarn";
  j["d_model"] = base.hidden_size;
  j["ssm_cfg"] = {{"expand", base.hidden_size > 0 ? h.d_inner / base.hidden_size : 1},
                  {"ngroups", h.ngroups},
                  {"d_state", h.d_state},
                  {"repeat_kv_before_conv", h.repeat_kv_before_conv}};
  if (h.d_conv != 4) j["ssm_cfg"]["d_conv"] = h.d_conv;
  j["d_inner"] = h.d_inner;
  j["d_xb"] = h.d_xb;
  write_file_atomic(path, j.dump(2) + "\n");
}

int64_t hybrid_parameter_count(const LlamaConfig& base, const HybridConfig& h) {
  const int64_t H = base.hidden_size, I = base.intermediate_size, V = base.vocab_size;
  int64_t n = V * H + H;  // embedding + final norm
  if (!base.tie_word_embeddings) n += V * H;
  const Mamba2Dims md = h.mamba_dims(base);
  for (int64_t l = 0; l < base.num_layers; ++l) {
    n += 2 * H + 3 * H * I;  // two norms + SwiGLU MLP
    n += h.is_mla(l) ? h.mla_dims(base, l).parameter_count() : md.parameter_count();
  }
  return n;
}

int64_t hybrid_kv_elements_per_token(const LlamaConfig& base, const HybridConfig& h) {
  int64_t n = 0;
  for (int64_t l : h.mla_layers) n += h.mla_dims(base, l).cache_width();
  return n;
}

int64_t llama_kv_elements_per_token(const LlamaConfig& base) {
  return 2 * base.num_layers * base.num_kv_heads * base.head_dim;
}

}  // namespace zebra
