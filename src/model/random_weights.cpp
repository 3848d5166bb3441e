#include "model/random_weights.h"

#include <cmath>
#include <filesystem>

#include "core/error.h"
#include "model/hf_config.h"

namespace zebra {

namespace {

uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// Uniform in (0, 1) from 53 random bits (never 0, so log() is finite).
double unit(uint64_t bits) { return (static_cast<double>(bits >> 11) + 0.5) * (1.0 / 9007199254740992.0); }

// Each tensor draws from its own stream (seed, tensor number); element i's values depend only on (stream, i), so
// the result is the same whatever the thread count.
class Streams {
 public:
  explicit Streams(uint64_t seed) : seed_(splitmix64(seed ^ 0x5a5a5a5a5a5a5a5aull)) {}

  Tensor normal(std::vector<int64_t> shape, double stddev) {
    Tensor t(std::move(shape));
    const uint64_t s = next_stream();
    float* p = t.ptr();
    const int64_t n = t.numel();
#pragma omp parallel for schedule(static) if (n > (1 << 16))
    for (int64_t i = 0; i < n; i += 2) {
      // Box-Muller: one pair of normals per pair of elements.
      const uint64_t a = splitmix64(s + 2 * static_cast<uint64_t>(i)), b = splitmix64(a ^ 0xd1b54a32d192ed03ull);
      const double r = std::sqrt(-2.0 * std::log(unit(a))), th = 2.0 * M_PI * unit(b);
      p[i] = static_cast<float>(stddev * r * std::cos(th));
      if (i + 1 < n) p[i + 1] = static_cast<float>(stddev * r * std::sin(th));
    }
    return t;
  }
  Tensor uniform(std::vector<int64_t> shape, double lo, double hi) {
    Tensor t(std::move(shape));
    const uint64_t s = next_stream();
    for (int64_t i = 0; i < t.numel(); ++i)
      t.data[i] = static_cast<float>(lo + (hi - lo) * unit(splitmix64(s + static_cast<uint64_t>(i))));
    return t;
  }
  static Tensor constant(std::vector<int64_t> shape, float v) {
    Tensor t(std::move(shape));
    std::fill(t.data.begin(), t.data.end(), v);
    return t;
  }

 private:
  uint64_t next_stream() { return splitmix64(seed_ + 0x632be59bd9b4e019ull * ++count_); }
  uint64_t seed_;
  uint64_t count_ = 0;
};

Tensor linear_weight(Streams& r, int64_t out, int64_t in) {
  return r.normal({out, in}, 1.0 / std::sqrt(static_cast<double>(in)));
}

void random_mla(Streams& r, const MlaDims& d, MlaWeights& w) {
  const int64_t qd = d.n_heads * d.q_head_dim();
  if (d.q_rank > 0) {
    w.q_a = linear_weight(r, d.q_rank, d.hidden);
    w.q_b = linear_weight(r, qd, d.q_rank);
    if (d.lora_norm) w.q_a_norm = Streams::constant({d.q_rank}, 1.0f);
  } else {
    w.q_proj = linear_weight(r, qd, d.hidden);
  }
  w.kv_a = linear_weight(r, d.kv_rank + d.rope_dim, d.hidden);
  if (d.lora_norm) w.kv_a_norm = Streams::constant({d.kv_rank}, 1.0f);
  w.kv_b = linear_weight(r, d.kv_heads * (d.nope_dim + d.v_dim), d.kv_rank);
  w.out_proj = linear_weight(r, d.hidden, d.n_heads * d.v_dim);
}

void random_mamba(Streams& r, const Mamba2Dims& d, Mamba2Weights& w) {
  w.in_proj = linear_weight(r, d.in_proj_rows(), d.hidden);
  const double c = 1.0 / std::sqrt(static_cast<double>(d.d_conv));
  w.conv_w = r.uniform({d.conv_dim(), d.d_conv}, -c, c);
  w.conv_b = r.uniform({d.conv_dim()}, -c, c);
  // dt in [1e-3, 1e-1] log-uniformly; dt_bias = softplus⁻¹(dt) = dt + log(-expm1(-dt)).
  Tensor dt = r.uniform({d.n_heads}, std::log(1e-3), std::log(1e-1));
  w.dt_bias = Tensor({d.n_heads});
  for (int64_t h = 0; h < d.n_heads; ++h) {
    const double v = std::exp(static_cast<double>(dt.data[h]));
    w.dt_bias.data[h] = static_cast<float>(v + std::log(-std::expm1(-v)));
  }
  Tensor a = r.uniform({d.n_heads}, 1.0, 16.0);
  w.A_log = Tensor({d.n_heads});
  for (int64_t h = 0; h < d.n_heads; ++h) w.A_log.data[h] = std::log(a.data[h]);
  w.D = Streams::constant({d.n_heads}, 1.0f);
  w.norm = Streams::constant({d.d_inner}, 1.0f);
  w.out_proj = linear_weight(r, d.hidden, d.d_inner);
}

}  // namespace

Model random_model(const LlamaConfig& cfg, const HybridConfig* hybrid, uint64_t seed) {
  cfg.validate("random_model");
  if (hybrid) hybrid->validate(cfg, "random_model");
  Streams r(seed);
  Model m;
  m.config = cfg;
  m.path = cat("random weights (seed ", seed, ")");
  const int64_t H = cfg.hidden_size, I = cfg.intermediate_size, V = cfg.vocab_size;
  m.embed = r.normal({V, H}, 0.02);
  m.norm = Streams::constant({H}, 1.0f);
  if (!cfg.tie_word_embeddings) m.lm_head = linear_weight(r, V, H);
  if (hybrid) {
    m.is_hybrid = true;
    m.hybrid = *hybrid;
    m.mamba_dims = hybrid->mamba_dims(cfg);
  }
  m.layers.resize(cfg.num_layers);
  for (int64_t i = 0; i < cfg.num_layers; ++i) {
    Layer& L = m.layers[i];
    L.input_norm = Streams::constant({H}, 1.0f);
    L.post_norm = Streams::constant({H}, 1.0f);
    if (!hybrid) {
      L.kind = LayerKind::Attention;
      L.attn.wq = linear_weight(r, cfg.q_dim(), H);
      L.attn.wk = linear_weight(r, cfg.kv_dim(), H);
      L.attn.wv = linear_weight(r, cfg.kv_dim(), H);
      L.attn.wo = linear_weight(r, H, cfg.q_dim());
    } else if (hybrid->is_mla(i)) {
      L.kind = LayerKind::Mla;
      L.mla_dims = hybrid->mla_dims(cfg, i);
      random_mla(r, L.mla_dims, L.mla);
      L.mla_rope = make_mla_rope(*hybrid, L.mla_dims);
      check_mla_weights(L.mla_dims, L.mla, cat("random_model layer ", i));
    } else {
      L.kind = LayerKind::Mamba2;
      random_mamba(r, m.mamba_dims, L.mamba);
      mamba2_check(m.mamba_dims, L.mamba);
    }
    L.mlp.gate = linear_weight(r, I, H);
    L.mlp.up = linear_weight(r, I, H);
    L.mlp.down = linear_weight(r, H, I);
  }
  return m;
}

Model random_model_from_dir(const std::string& dir, uint64_t seed) {
  namespace fs = std::filesystem;
  const fs::path config = fs::path(dir) / "config.json", hybrid = fs::path(dir) / "hybrid_config.json";
  ZEBRA_CHECK(fs::exists(config), "random weights: ", dir, " has no config.json");
  LlamaConfig cfg = load_hf_llama_config(config.string());
  cfg.source_format = fs::exists(hybrid) ? "zebra" : "hf";
  if (!fs::exists(hybrid)) return random_model(cfg, nullptr, seed);
  const HybridConfig h = load_hybrid_config(hybrid.string(), cfg);
  Model m = random_model(cfg, &h, seed);
  return m;
}

}  // namespace zebra
