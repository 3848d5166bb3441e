// zebra compose: build a Zebra hybrid (MLA + Mamba2) from a Llama by the paper's initialisation (SVD for
// MLA, attention-to-SSM mapping for Mamba2) and write it in AMD's Hugging Face layout.
#include <chrono>
#include <cstdio>

#include "common.h"
#include "compose/compose.h"
#include "core/log.h"
#include "model/save_hybrid.h"

namespace zebra::cli {

struct ComposeCliOptions {
  ModelOptions teacher;
  std::string output;
  std::string mla_layers;  // "0,5,10,14"
  int64_t mla_count = -1;
  bool all_mla = false, all_mamba = false;
  int64_t q_rank = -1, kv_rank = 0, rope_dim = 0, nope_dim = -1, v_dim = 0;
  double q_energy = 0, kv_energy = 0;
  bool full_kv_head = false;
  double yarn_factor = 0;
  int64_t yarn_original_max = 0;
  uint64_t seed = 0;
  std::string dtype = "bf16";
};

static std::string join(const std::vector<int64_t>& v) {
  std::string s;
  for (size_t i = 0; i < v.size(); ++i) s += (i ? "," : "") + std::to_string(v[i]);
  return s;
}

static void run_compose(const ComposeCliOptions& c) {
  DType dtype;
  if (c.dtype == "f32") dtype = DType::F32;
  else if (c.dtype == "bf16") dtype = DType::BF16;
  else if (c.dtype == "f16") dtype = DType::F16;
  else fail("--dtype must be f32, bf16 or f16, got '", c.dtype, "'");

  ComposeOptions o;
  if (!c.mla_layers.empty()) {
    std::vector<int64_t> layers = parse_int_list(c.mla_layers, "--mla-layers", "0,5,10,14");
    ZEBRA_CHECK(!layers.empty(), "--mla-layers: empty list (use --all-mamba for no MLA layers)");
    o.mla_layers = std::move(layers);
  }
  o.mla_count = c.mla_count;
  o.all_mla = c.all_mla;
  o.all_mamba = c.all_mamba;
  o.q_rank = c.q_rank;
  o.kv_rank = c.kv_rank;
  o.rope_dim = c.rope_dim;
  o.nope_dim = c.nope_dim;
  o.v_dim = c.v_dim;
  o.q_energy = c.q_energy;
  o.kv_energy = c.kv_energy;
  o.full_kv_head = c.full_kv_head;
  o.yarn_factor = c.yarn_factor;
  o.yarn_original_max = c.yarn_original_max;
  o.seed = c.seed;

  LoadedModel lm = open_model(c.teacher, /*need_tokenizer=*/false);
  const Model& t = *lm.model;
  // Check the layout before the (slow) SVDs so a typo fails fast.
  resolve_mla_layers(o, t.config.num_layers);
  auto t0 = std::chrono::steady_clock::now();
  Model m = compose_hybrid(t, o);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  log_info("composed in ", secs, " s");
  save_hybrid(m, lm.tokenizer.get(), c.output, dtype);
  copy_llama2c_tokenizer(lm.llama2c_tokenizer_file, c.output);  // SentencePiece: keep the .bin beside

  const HybridConfig& h = m.hybrid;
  const LlamaConfig& b = m.config;
  const int64_t n_mla = static_cast<int64_t>(h.mla_layers.size());
  const double kv_pct = 100.0 * static_cast<double>(hybrid_kv_elements_per_token(b, h)) /
                        static_cast<double>(llama_kv_elements_per_token(b));
  std::printf("hybrid:       %lld MLA + %lld Mamba2 layers -> %s\n", (long long)n_mla,
              (long long)(b.num_layers - n_mla), c.output.c_str());
  std::printf("MLA layers:   [%s]\n", join(h.mla_layers).c_str());
  if (n_mla > 0) {
    std::printf("MLA shape:    rope %lld, nope %lld, v %lld, kv heads %lld, YaRN factor %g (original %lld)\n",
                (long long)h.qk_rope_head_dim, (long long)h.qk_nope_head_dim, (long long)h.v_head_dim,
                (long long)(h.use_full_kv_head ? b.num_heads : b.num_kv_heads), h.mla_rope.factor,
                (long long)h.mla_rope.original_max_position_embeddings);
    if (h.layer_ranks.empty()) {
      std::printf("MLA ranks:    q %s, kv %lld\n",
                  h.q_lora_rank > 0 ? std::to_string(h.q_lora_rank).c_str() : "full (no q LoRA)",
                  (long long)h.kv_lora_rank);
    } else {
      std::printf("MLA ranks:   ");
      for (const auto& [l, r] : h.layer_ranks)
        std::printf(" %lld:q%lld/kv%lld", (long long)l, (long long)r.first, (long long)r.second);
      std::printf("\n");
    }
  }
  if (n_mla < b.num_layers) {
    const Mamba2Dims& md = m.mamba_dims;
    std::printf("Mamba2 shape: d_inner %lld, d_xb %lld, d_state %lld, heads %lld (seed %llu)\n",
                (long long)md.d_inner, (long long)md.d_xb, (long long)md.d_state, (long long)md.n_heads,
                (unsigned long long)c.seed);
  }
  const double np = static_cast<double>(m.parameter_count());
  std::printf("parameters:   %lld (%.4f %s; teacher %lld)\n", (long long)m.parameter_count(),
              np >= 1e9 ? np / 1e9 : np / 1e6, np >= 1e9 ? "B" : "M", (long long)t.parameter_count());
  std::printf("KV cache:     %.2f%% of the teacher's per token (%lld vs %lld elements)\n", kv_pct,
              (long long)hybrid_kv_elements_per_token(b, h), (long long)llama_kv_elements_per_token(b));
}

void register_compose(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "compose", "build a Zebra hybrid (MLA + Mamba2) from a Llama teacher by SVD / attention-to-SSM init");
  auto c = std::make_shared<ComposeCliOptions>();
  cmd->add_option("--teacher", c->teacher.model, "teacher Llama: Hugging Face directory, .gguf or llama2.c .bin")
      ->required();
  cmd->add_option("--tokenizer", c->teacher.tokenizer, "tokenizer file for a llama2.c teacher");
  cmd->add_option("-o,--output", c->output, "output directory (AMD's layout)")->required();
  cmd->add_option("--mla-layers", c->mla_layers, "MLA layer indices, e.g. 0,5,10,14");
  cmd->add_option("--mla-count", c->mla_count, "number of MLA layers, placed like the released models "
                                               "(first 0, last L-2, even gaps)");
  cmd->add_flag("--all-mla", c->all_mla, "every layer MLA (X-EcoMLA)");
  cmd->add_flag("--all-mamba", c->all_mamba, "every layer Mamba2");
  cmd->add_option("--q-rank", c->q_rank, "query LoRA rank; 0 = full q_proj (default nh*hd/2)");
  cmd->add_option("--kv-rank", c->kv_rank, "key/value latent rank (default 2*nkv*hd/8)");
  cmd->add_option("--rope-dim", c->rope_dim, "rope dims per head (default hd/2)");
  cmd->add_option("--nope-dim", c->nope_dim, "non-rope query/key dims per head (default hd - rope)");
  cmd->add_option("--v-dim", c->v_dim, "value dims per head (must be hd)");
  cmd->add_option("--q-energy", c->q_energy, "per-layer q rank by singular-value energy ratio (0, 1]");
  cmd->add_option("--kv-energy", c->kv_energy, "per-layer kv rank by singular-value energy ratio (0, 1]");
  cmd->add_flag("--full-kv-head", c->full_kv_head, "kv_b_proj with one head per query head (X-EcoMLA)");
  cmd->add_option("--yarn-factor", c->yarn_factor, "MLA YaRN factor (default: the teacher's rope scaling, else 1)");
  cmd->add_option("--yarn-original-max", c->yarn_original_max,
                  "MLA YaRN original context (default: the teacher's, else 8192)");
  cmd->add_option("--seed", c->seed, "seed of the Mamba2 random init (default 0)");
  cmd->add_option("--dtype", c->dtype, "stored tensor type: f32, bf16 (default) or f16");
  cmd->add_option("-t,--threads", c->teacher.threads, "CPU threads (default: all cores)");
  cmd->callback([c] { run_compose(*c); });
}

}  // namespace zebra::cli
