// zebra info: what a model is — per-layer kinds, parameters, exact cache sizes and the KV size as a
// percentage of the source Transformer's. Works on a directory holding only config.json (+
// hybrid_config.json) too, so the paper's figures can be checked without weights.
#include <cstdio>
#include <filesystem>

#include "common.h"
#include "model/hf_config.h"

namespace zebra::cli {

namespace fs = std::filesystem;

static const char* rope_name(RopeScaling::Type t) {
  switch (t) {
    case RopeScaling::Type::None: return "none";
    case RopeScaling::Type::Linear: return "linear";
    case RopeScaling::Type::Dynamic: return "dynamic";
    case RopeScaling::Type::Llama3: return "llama3";
    case RopeScaling::Type::Yarn: return "yarn";
  }
  return "?";
}

// Everything info reports, from a loaded model or from configs alone.
struct ModelSummary {
  std::string path, format;
  LlamaConfig base;
  bool hybrid = false;
  HybridConfig h;
  std::vector<LayerKind> kinds;
  int64_t params = 0;
  bool weights_loaded = false;
  int64_t kv_elements = 0, source_kv_elements = 0, state_elements = 0;
};

static bool has_weights(const std::string& dir) {
  for (const auto& e : fs::directory_iterator(dir))
    if (e.path().extension() == ".safetensors") return true;
  return false;
}

static ModelSummary summarize(const ModelOptions& o) {
  ModelSummary s;
  s.path = o.model;
  if (fs::is_directory(o.model) && !has_weights(o.model)) {
    // Config-only directory: shapes from config.json (+ hybrid_config.json), no tensors.
    s.base = load_hf_llama_config((fs::path(o.model) / "config.json").string());
    s.format = "config-only";
    fs::path hp = fs::path(o.model) / "hybrid_config.json";
    if (fs::exists(hp)) {
      s.hybrid = true;
      s.h = load_hybrid_config(hp.string(), s.base);
      s.params = hybrid_parameter_count(s.base, s.h);
    } else {
      const LlamaConfig& c = s.base;
      int64_t attn = c.hidden_size * (c.q_dim() + 2 * c.kv_dim()) + c.q_dim() * c.hidden_size;
      int64_t layer = attn + 3 * c.hidden_size * c.intermediate_size + 2 * c.hidden_size;
      s.params = c.num_layers * layer + c.vocab_size * c.hidden_size * (c.tie_word_embeddings ? 1 : 2) + c.hidden_size;
    }
    for (int64_t i = 0; i < s.base.num_layers; ++i)
      s.kinds.push_back(!s.hybrid ? LayerKind::Attention : s.h.is_mla(i) ? LayerKind::Mla : LayerKind::Mamba2);
  } else {
    LoadedModel lm = open_model(o, /*need_tokenizer=*/false);
    const Model& m = *lm.model;
    s.base = m.config;
    s.format = m.config.source_format;
    s.hybrid = m.is_hybrid;
    s.h = m.hybrid;
    s.params = m.parameter_count();
    s.weights_loaded = true;
    for (const Layer& l : m.layers) s.kinds.push_back(l.kind);
  }
  s.source_kv_elements = llama_kv_elements_per_token(s.base);
  if (s.hybrid) {
    s.kv_elements = hybrid_kv_elements_per_token(s.base, s.h);
    int64_t n_mamba = 0;
    for (LayerKind k : s.kinds) n_mamba += k == LayerKind::Mamba2;
    s.state_elements = n_mamba > 0 ? n_mamba * s.h.mamba_dims(s.base).state_elements() : 0;
  } else {
    s.kv_elements = s.source_kv_elements;
  }
  return s;
}

static void run_info(const ModelOptions& o) {
  ModelSummary s = summarize(o);
  const LlamaConfig& c = s.base;
  const double kv_pct = 100.0 * s.kv_elements / s.source_kv_elements;
  int64_t n_mla = 0, n_mamba = 0, n_attn = 0;
  for (LayerKind k : s.kinds) (k == LayerKind::Mla ? n_mla : k == LayerKind::Mamba2 ? n_mamba : n_attn)++;
  if (o.json) {
    std::printf("{\"path\": \"%s\", \"format\": \"%s\", \"architecture\": \"%s\", \"params\": %lld, "
                "\"weights_loaded\": %s, \"layers\": [",
                json_escape(s.path).c_str(), s.format.c_str(), s.hybrid ? "zebra-hybrid" : "llama",
                (long long)s.params, s.weights_loaded ? "true" : "false");
    for (size_t i = 0; i < s.kinds.size(); ++i)
      std::printf("%s{\"index\": %zu, \"kind\": \"%s\"}", i ? ", " : "", i, layer_kind_name(s.kinds[i]));
    std::printf("], \"hidden_size\": %lld, \"intermediate_size\": %lld, \"num_heads\": %lld, "
                "\"num_kv_heads\": %lld, \"head_dim\": %lld, \"vocab_size\": %lld, \"context_length\": %lld, "
                "\"rope_theta\": %g, \"rope_scaling\": \"%s\", \"tied_embeddings\": %s, "
                "\"kv_elements_per_token\": %lld, \"kv_bytes_per_token\": %lld, \"kv_bytes_per_token_bf16\": %lld, "
                "\"state_elements_per_sequence\": %lld, \"state_bytes_per_sequence\": %lld, "
                "\"source_kv_elements_per_token\": %lld, \"kv_percent_of_source\": %.4f}\n",
                (long long)c.hidden_size, (long long)c.intermediate_size, (long long)c.num_heads,
                (long long)c.num_kv_heads, (long long)c.head_dim, (long long)c.vocab_size,
                (long long)c.max_position_embeddings, c.rope_theta, rope_name(c.rope_scaling.type),
                c.tie_word_embeddings ? "true" : "false", (long long)s.kv_elements, (long long)s.kv_elements * 4,
                (long long)s.kv_elements * 2, (long long)s.state_elements, (long long)s.state_elements * 4,
                (long long)s.source_kv_elements, kv_pct);
    return;
  }
  std::printf("model:            %s (%s)\n", s.path.c_str(), s.format.c_str());
  if (s.hybrid) {
    std::printf("architecture:     Zebra hybrid, %lld layers: %lld MLA + %lld Mamba2\n", (long long)c.num_layers,
                (long long)n_mla, (long long)n_mamba);
    std::string kinds;
    for (size_t i = 0; i < s.kinds.size(); ++i) kinds += s.kinds[i] == LayerKind::Mla ? 'A' : 'M';
    std::printf("layers:           %s  (A = MLA, M = Mamba2)\n", kinds.c_str());
  } else {
    std::printf("architecture:     llama, %lld attention layers\n", (long long)n_attn);
  }
  std::printf("parameters:       %lld (%s)%s\n", (long long)s.params,
              (s.params >= 1e9 ? cat(s.params / 1e9, " B") : cat(s.params / 1e6, " M")).c_str(),
              s.weights_loaded ? "" : " from the configs");
  std::printf("hidden / mlp:     %lld / %lld\n", (long long)c.hidden_size, (long long)c.intermediate_size);
  std::printf("heads / kv heads: %lld / %lld, head dim %lld\n", (long long)c.num_heads, (long long)c.num_kv_heads,
              (long long)c.head_dim);
  std::printf("vocabulary:       %lld%s\n", (long long)c.vocab_size, c.tie_word_embeddings ? " (tied head)" : "");
  std::printf("context:          %lld, rope theta %g, scaling %s\n", (long long)c.max_position_embeddings, c.rope_theta,
              rope_name(c.rope_scaling.type));
  if (s.hybrid) {
    std::printf("MLA:              kv rank %lld, q rank %lld, rope %lld, nope %lld, v %lld\n",
                (long long)s.h.kv_lora_rank, (long long)s.h.q_lora_rank, (long long)s.h.qk_rope_head_dim,
                (long long)s.h.qk_nope_head_dim, (long long)s.h.v_head_dim);
  }
  std::printf("KV cache:         %lld elements per token = %lld bytes at fp32, %lld at bf16\n",
              (long long)s.kv_elements, (long long)s.kv_elements * 4, (long long)s.kv_elements * 2);
  if (s.hybrid)
    std::printf("Mamba2 state:     %lld elements per sequence = %lld bytes at fp32 (constant in length)\n",
                (long long)s.state_elements, (long long)s.state_elements * 4);
  std::printf("KV vs source:     %.2f%% of the source Llama's %lld elements per token\n", kv_pct,
              (long long)s.source_kv_elements);
}

void register_info(CLI::App& app) {
  auto* cmd = app.add_subcommand("info", "describe a model: layers, parameters, cache bytes per token");
  auto o = std::make_shared<ModelOptions>();
  add_model_options(cmd, *o, true);
  // Allow `zebra info MODEL` as well as `-m MODEL`.
  cmd->get_option("--model")->required(false);
  cmd->add_option("model_path", o->model, "model path (same as -m)");
  cmd->callback([o] {
    ZEBRA_CHECK(!o->model.empty(), "info: give a model path (zebra info MODEL)");
    run_info(*o);
  });
}

}  // namespace zebra::cli
