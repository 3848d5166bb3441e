#include "compose/compose.h"

#include <algorithm>
#include <cmath>

#include "compose/init_mamba2.h"
#include "compose/init_mla.h"
#include "compose/placement.h"
#include "core/log.h"
#include "core/progress.h"

namespace zebra {

namespace {

int64_t round_up(int64_t v, int64_t m) { return (v + m - 1) / m * m; }

// The MLA YaRN parameters derived from the teacher's RoPE (see ComposeOptions).
RopeScaling mla_yarn(const LlamaConfig& t, const ComposeOptions& o) {
  RopeScaling r;
  r.type = RopeScaling::Type::Yarn;
  r.factor = 1.0;
  r.original_max_position_embeddings = t.max_position_embeddings;
  const RopeScaling& s = t.rope_scaling;
  switch (s.type) {
    case RopeScaling::Type::Llama3:
      r.factor = s.factor;
      r.original_max_position_embeddings = s.original_max_position_embeddings > 0 ? s.original_max_position_embeddings : 8192;
      break;
    case RopeScaling::Type::Yarn:
      r = s;
      r.freq_factors.clear();
      if (r.original_max_position_embeddings <= 0) r.original_max_position_embeddings = 8192;
      break;
    case RopeScaling::Type::Linear:
    case RopeScaling::Type::Dynamic:
      r.factor = s.factor;
      r.original_max_position_embeddings =
          s.original_max_position_embeddings > 0
              ? s.original_max_position_embeddings
              : std::max<int64_t>(1, static_cast<int64_t>(std::llround(t.max_position_embeddings / s.factor)));
      break;
    case RopeScaling::Type::None:
      if (!s.freq_factors.empty()) {
        // A GGUF Llama-3 keeps its llama3 scaling as per-frequency divisors; the largest is the factor.
        r.factor = *std::max_element(s.freq_factors.begin(), s.freq_factors.end());
        r.original_max_position_embeddings = 8192;
        log_info("teacher RoPE has GGUF frequency factors: MLA YaRN factor ", r.factor,
                 ", original context 8192 (override with the yarn options)");
      }
      break;
  }
  if (o.yarn_factor > 0) r.factor = o.yarn_factor;
  if (o.yarn_original_max > 0) r.original_max_position_embeddings = o.yarn_original_max;
  ZEBRA_CHECK(r.factor > 0, "compose: YaRN factor must be positive, got ", r.factor);
  return r;
}

}  // namespace

std::vector<int64_t> resolve_mla_layers(const ComposeOptions& o, int64_t L) {
  int given = (o.mla_layers ? 1 : 0) + (o.mla_count >= 0 ? 1 : 0) + (o.all_mla ? 1 : 0) + (o.all_mamba ? 1 : 0);
  ZEBRA_CHECK(given <= 1, "compose: give at most one of the MLA layer list, the MLA layer count, all-MLA and "
              "all-Mamba");
  if (o.all_mla) return default_mla_layout(L, L);
  if (o.all_mamba) return {};
  if (o.mla_count >= 0) {
    ZEBRA_CHECK(o.mla_count <= L, "compose: MLA layer count ", o.mla_count, " exceeds the teacher's ", L, " layers");
    return default_mla_layout(L, o.mla_count);
  }
  if (o.mla_layers) {
    std::vector<int64_t> v = *o.mla_layers;
    for (size_t i = 0; i < v.size(); ++i)
      ZEBRA_CHECK(v[i] >= 0 && v[i] < L, "compose: MLA layer ", v[i], " (entry ", i, " of the list) is out of range "
                  "[0, ", L, ")");
    std::sort(v.begin(), v.end());
    for (size_t i = 1; i < v.size(); ++i)
      ZEBRA_CHECK(v[i] != v[i - 1], "compose: MLA layer ", v[i], " is listed twice");
    return v;
  }
  return default_mla_layout(L, std::max<int64_t>(1, L / 2));
}

Model compose_hybrid(const Model& teacher, const ComposeOptions& o) {
  ZEBRA_CHECK(!teacher.is_hybrid, "compose: the teacher is already a hybrid; compose needs a Llama (all attention)");
  const LlamaConfig& t = teacher.config;
  const int64_t L = t.num_layers, H = t.hidden_size, nh = t.num_heads, nkv = t.num_kv_heads, hd = t.head_dim;
  ZEBRA_CHECK(static_cast<int64_t>(teacher.layers.size()) == L, "compose: teacher has ", teacher.layers.size(),
              " layers but its config says ", L);
  for (int64_t i = 0; i < L; ++i)
    ZEBRA_CHECK(teacher.layers[i].kind == LayerKind::Attention, "compose: teacher layer ", i, " is ",
                layer_kind_name(teacher.layers[i].kind), ", expected Llama attention");

  HybridConfig h;
  h.mla_layers = resolve_mla_layers(o, L);
  h.generation = "current";
  h.rms_norm_eps = t.rms_norm_eps;
  h.rope_theta = t.rope_theta;
  h.max_position_embeddings = t.max_position_embeddings;
  h.use_full_kv_head = o.full_kv_head;
  h.qkv_rank_divisor = o.rank_divisor;
  ZEBRA_CHECK(o.rank_divisor > 0, "compose: rank divisor must be positive, got ", o.rank_divisor);

  // MLA head split: rope and nope share the teacher head; v is the whole head.
  int64_t rope = o.rope_dim, nope = o.nope_dim;
  if (rope <= 0 && nope < 0) {
    rope = hd / 2 + (hd / 2) % 2;
    nope = hd - rope;
  } else if (rope <= 0) {
    rope = hd - nope;
  } else if (nope < 0) {
    nope = hd - rope;
  }
  ZEBRA_CHECK(rope > 0 && rope % 2 == 0, "compose: rope dim must be positive and even, got ", rope,
              o.rope_dim <= 0 ? cat(" (the head dim ", hd, " minus nope dim ", nope, ")") : std::string());
  ZEBRA_CHECK(nope >= 0 && nope + rope <= hd, "compose: rope dim ", rope, " + nope dim ", nope,
              " must fit the teacher's head dim ", hd);
  const int64_t v_dim = o.v_dim > 0 ? o.v_dim : hd;
  ZEBRA_CHECK(v_dim == hd, "compose: v dim must equal the teacher's head dim ", hd,
              " (o_proj is reused as out_proj), got ", v_dim);
  h.qk_rope_head_dim = rope;
  h.qk_nope_head_dim = nope;
  h.v_head_dim = v_dim;

  // Ranks.
  const int64_t kvh = o.full_kv_head ? nh : nkv;
  const int64_t q_cap = std::min(nh * (nope + rope), H), kv_cap = std::min({2 * kvh * hd, kvh * (nope + v_dim), H});
  ZEBRA_CHECK(!(o.q_energy > 0 && o.q_rank >= 0), "compose: give a q rank or a q energy ratio, not both");
  ZEBRA_CHECK(!(o.kv_energy > 0 && o.kv_rank > 0), "compose: give a kv rank or a kv energy ratio, not both");
  ZEBRA_CHECK(o.q_energy <= 1 && o.kv_energy <= 1 && o.q_energy >= 0 && o.kv_energy >= 0,
              "compose: energy ratios must be in (0, 1]");
  int64_t q_rank = o.q_rank >= 0 ? o.q_rank : std::min(round_up(nh * hd / 2, o.rank_divisor), q_cap);
  int64_t kv_rank = o.kv_rank > 0 ? o.kv_rank : std::max<int64_t>(1, std::min(round_up(2 * nkv * hd / 8, o.rank_divisor), kv_cap));
  ZEBRA_CHECK(o.kv_rank >= 0, "compose: kv rank must be positive, got ", o.kv_rank);
  ZEBRA_CHECK(q_rank <= q_cap, "compose: q rank ", q_rank, " is larger than the query matrices allow (min(hidden ", H,
              ", heads*(nope+rope) ", nh * (nope + rope), ") = ", q_cap, ")");
  ZEBRA_CHECK(kv_rank <= kv_cap, "compose: kv rank ", kv_rank, " is larger than the key/value matrices allow "
              "(min(hidden ", H, ", 2*kv_heads*head_dim ", 2 * kvh * hd, ", kv_heads*(nope+v) ", kvh * (nope + v_dim),
              ") = ", kv_cap, ")");
  if (o.q_energy > 0 && q_rank == 0) q_rank = 1;  // placeholder until the SVD decides
  h.q_lora_rank = q_rank;
  h.kv_lora_rank = kv_rank;
  h.mla_rope = mla_yarn(t, o);

  // Mamba2 sizes (spec §1.4): MambaInLlama's, which the kqvo init needs.
  h.d_inner = nh * hd;
  h.d_xb = nkv * hd;
  h.d_state = hd;
  h.ngroups = nh;
  h.d_conv = 4;
  h.validate(t, "compose");

  Model m;
  m.config = t;
  m.config.tie_word_embeddings = teacher.lm_head.empty();
  m.is_hybrid = true;
  m.embed = teacher.embed;
  m.norm = teacher.norm;
  m.lm_head = teacher.lm_head;
  m.layers.resize(L);
  const Mamba2Dims md = h.mamba_dims(t);
  MlaInitOptions io;
  io.q_energy = o.q_energy;
  io.kv_energy = o.kv_energy;
  io.rank_divisor = o.rank_divisor;

  std::unique_ptr<Progress> bar;
  if (o.progress) bar = std::make_unique<Progress>("compose", L, "layers");
  for (int64_t i = 0; i < L; ++i) {
    const Layer& src = teacher.layers[i];
    Layer& dst = m.layers[i];
    dst.input_norm = src.input_norm;
    dst.post_norm = src.post_norm;
    dst.mlp = src.mlp;
    const std::string where = cat("compose: layer ", i);
    if (h.is_mla(i)) {
      dst.kind = LayerKind::Mla;
      MlaInit init = init_mla_from_attention(src.attn, t, h.mla_dims(t, i), io, where);
      dst.mla = std::move(init.weights);
      dst.mla_dims = init.dims;
      if (o.q_energy > 0 || o.kv_energy > 0) h.layer_ranks[i] = {init.dims.q_rank, init.dims.kv_rank};
    } else {
      dst.kind = LayerKind::Mamba2;
      dst.mamba = init_mamba2_from_attention(src.attn, t, md, o.seed, i, where);
    }
    if (bar) bar->update(i + 1);
  }
  if (bar) bar->finish();

  // Dynamic ranks: the global fields hold the largest per-layer rank (the per-layer list is authoritative).
  if (!h.layer_ranks.empty()) {
    h.q_lora_rank = 0;
    h.kv_lora_rank = 0;
    for (const auto& [l, r] : h.layer_ranks) {
      h.q_lora_rank = std::max(h.q_lora_rank, r.first);
      h.kv_lora_rank = std::max(h.kv_lora_rank, r.second);
    }
  }
  h.validate(t, "compose");
  for (int64_t i : h.mla_layers) m.layers[i].mla_rope = make_mla_rope(h, m.layers[i].mla_dims);
  m.hybrid = h;
  if (static_cast<int64_t>(h.mla_layers.size()) < L) m.mamba_dims = md;
  return m;
}

}  // namespace zebra
