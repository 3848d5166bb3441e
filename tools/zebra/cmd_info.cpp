// zebra info: what a model is (architecture, sizes, parameters, cache bytes per token).
#include <cstdio>

#include "common.h"

namespace zebra::cli {

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

static void run_info(const ModelOptions& o) {
  LoadedModel lm = open_model(o, /*need_tokenizer=*/false);
  const Model& m = *lm.model;
  const LlamaConfig& c = m.config;
  const int64_t kv_elems = 2 * c.num_layers * c.kv_dim();
  if (o.json) {
    std::printf("{\"path\": \"%s\", \"format\": \"%s\", \"architecture\": \"llama\", \"params\": %lld, "
                "\"layers\": [",
                json_escape(o.model).c_str(), c.source_format.c_str(), (long long)m.parameter_count());
    for (size_t i = 0; i < m.layers.size(); ++i)
      std::printf("%s{\"index\": %zu, \"kind\": \"%s\"}", i ? ", " : "", i, layer_kind_name(m.layers[i].kind));
    std::printf("], \"hidden_size\": %lld, \"intermediate_size\": %lld, \"num_heads\": %lld, "
                "\"num_kv_heads\": %lld, \"head_dim\": %lld, \"vocab_size\": %lld, \"context_length\": %lld, "
                "\"rope_theta\": %g, \"rope_scaling\": \"%s\", \"tied_embeddings\": %s, "
                "\"kv_elements_per_token\": %lld, \"kv_bytes_per_token\": %lld, \"state_bytes_per_sequence\": 0, "
                "\"kv_percent_of_source\": 100.0}\n",
                (long long)c.hidden_size, (long long)c.intermediate_size, (long long)c.num_heads,
                (long long)c.num_kv_heads, (long long)c.head_dim, (long long)c.vocab_size,
                (long long)c.max_position_embeddings, c.rope_theta, rope_name(c.rope_scaling.type),
                m.lm_head.empty() ? "true" : "false", (long long)kv_elems, (long long)m.kv_bytes_per_token());
    return;
  }
  std::printf("model:            %s (%s)\n", o.model.c_str(), c.source_format.c_str());
  std::printf("architecture:     llama (%lld layers, all attention)\n", (long long)c.num_layers);
  std::printf("parameters:       %lld (%.2f M)\n", (long long)m.parameter_count(), m.parameter_count() / 1e6);
  std::printf("hidden / mlp:     %lld / %lld\n", (long long)c.hidden_size, (long long)c.intermediate_size);
  std::printf("heads / kv heads: %lld / %lld, head dim %lld\n", (long long)c.num_heads, (long long)c.num_kv_heads,
              (long long)c.head_dim);
  std::printf("vocabulary:       %lld%s\n", (long long)c.vocab_size, m.lm_head.empty() ? " (tied head)" : "");
  std::printf("context:          %lld, rope theta %g, scaling %s\n", (long long)c.max_position_embeddings,
              c.rope_theta, rope_name(c.rope_scaling.type));
  std::printf("KV cache:         %lld elements per token = %lld bytes at fp32 (%lld at bf16)\n",
              (long long)kv_elems, (long long)m.kv_bytes_per_token(), (long long)kv_elems * 2);
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
