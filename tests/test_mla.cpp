// The MLA layer (spec §1.3) against outside references and identities:
//  * goldens from the PyTorch reference (scripts/reference/make_mla_fixtures.py -> tests/fixtures/mla);
//  * YaRN frequency ranges and mscales derived in the spec for the released configs;
//  * a direct per-formula fp64 evaluation of the spec's equations (adjacent-pair rope, per-head loops);
//  * absorbed == decompressed, prefill + step == full, multi-sequence batch == separate runs;
//  * full-rank MLA built from a Llama attention == that attention (no RoPE).
#include <cmath>
#include <random>

#include "io/safetensors.h"
#include "kernels/cpu/ops.h"
#include "model/attention.h"
#include "model/mla.h"
#include "nlohmann/json.hpp"
#include "support.h"

using namespace zebra;

namespace {

struct Layer {
  MlaDims d;
  MlaWeights w;
  MlaRope rope;
};

Tensor randn(std::vector<int64_t> shape, std::mt19937& rng, float scale, float mean = 0.0f) {
  Tensor t(std::move(shape));
  std::normal_distribution<float> nd(0.0f, 1.0f);
  for (float& v : t.data) v = mean + scale * nd(rng);
  return t;
}

// Small YaRN (factor 4 over an original context of 32, base 16) so positions past 32 use the scaling.
HybridConfig yarn_config(double factor = 4.0, double mscale_all_dim = 0.0) {
  HybridConfig h;
  h.rope_theta = 16.0;
  h.mla_rope.factor = factor;
  h.mla_rope.original_max_position_embeddings = 32;
  h.mla_rope.mscale_all_dim = mscale_all_dim;
  return h;
}

Layer random_layer(const MlaDims& d, uint32_t seed) {
  std::mt19937 rng(seed);
  Layer l;
  l.d = d;
  const int64_t H = d.hidden, dq = d.q_head_dim();
  auto lin = [&](int64_t out, int64_t in) { return randn({out, in}, rng, 1.5f / std::sqrt((float)in)); };
  if (d.q_rank > 0) {
    l.w.q_a = lin(d.q_rank, H);
    l.w.q_b = lin(d.n_heads * dq, d.q_rank);
    if (d.lora_norm) l.w.q_a_norm = randn({d.q_rank}, rng, 0.3f, 1.0f);
  } else {
    l.w.q_proj = lin(d.n_heads * dq, H);
  }
  l.w.kv_a = lin(d.kv_rank + d.rope_dim, H);
  if (d.lora_norm) l.w.kv_a_norm = randn({d.kv_rank}, rng, 0.3f, 1.0f);
  l.w.kv_b = lin(d.kv_heads * (d.nope_dim + d.v_dim), d.kv_rank);
  l.w.out_proj = lin(H, d.n_heads * d.v_dim);
  l.rope = make_mla_rope(yarn_config(), d);
  return l;
}

MlaDims dims(int64_t hidden, int64_t nh, int64_t nkv, int64_t q_rank, int64_t kv_rank, int64_t rope, int64_t nope,
             int64_t v, bool norm) {
  MlaDims d;
  d.hidden = hidden, d.n_heads = nh, d.kv_heads = nkv, d.q_rank = q_rank, d.kv_rank = kv_rank;
  d.rope_dim = rope, d.nope_dim = nope, d.v_dim = v, d.lora_norm = norm, d.eps = 1e-6;
  return d;
}

// A spread of shapes: GQA and full kv heads, with/without q lora, norms on/off, rope dims 4..16.
std::vector<MlaDims> dim_cases() {
  return {dims(32, 4, 2, 24, 16, 8, 8, 12, true),   dims(32, 4, 4, 0, 16, 4, 6, 8, false),
          dims(24, 6, 2, 16, 12, 16, 4, 6, false), dims(40, 8, 1, 0, 20, 6, 10, 10, true),
          dims(16, 2, 2, 12, 8, 12, 0, 4, true)};
}

Tensor run(const Layer& l, const Batch& b, const Tensor& x, MlaCache& cache, MlaMode mode) {
  Tensor out({b.size(), l.d.hidden});
  mla_forward(l.d, l.w, l.rope, b, x.ptr(), out.ptr(), cache, mode);
  return out;
}

Batch seq_batch(int64_t n, int32_t slot = 0, int32_t start = 0) {
  Batch b;
  for (int64_t t = 0; t < n; ++t) b.add(0, slot, start + (int32_t)t, true);
  return b;
}

float max_abs_diff(const float* a, const float* b, int64_t n) {
  float m = 0;
  for (int64_t i = 0; i < n; ++i) m = std::max(m, std::fabs(a[i] - b[i]));
  return m;
}
float max_abs(const Tensor& t) {
  float m = 0;
  for (float v : t.data) m = std::max(m, std::fabs(v));
  return m;
}

// The spec's equations evaluated literally in fp64 for one sequence at positions 0..T-1: per token,
// per head, adjacent pairs (2j, 2j+1) rotated in place (the engine writes split-half order instead).
std::vector<double> direct_mla(const Layer& l, const Tensor& x, int64_t T) {
  const MlaDims& d = l.d;
  const int64_t H = d.hidden, nh = d.n_heads, dq = d.q_head_dim(), dn = d.nope_dim, dr = d.rope_dim;
  const int64_t R = d.kv_rank, dv = d.v_dim, group = nh / d.kv_heads;
  auto linear = [](const Tensor& w, const std::vector<double>& in) {
    const int64_t O = w.dim(0), I = w.dim(1);
    std::vector<double> y(O, 0.0);
    for (int64_t o = 0; o < O; ++o)
      for (int64_t i = 0; i < I; ++i) y[o] += (double)w.data[o * I + i] * in[i];
    return y;
  };
  auto rms = [&](std::vector<double> v, const Tensor& g) {
    double ss = 0;
    for (double e : v) ss += e * e;
    const double inv = 1.0 / std::sqrt(ss / v.size() + d.eps);
    for (size_t i = 0; i < v.size(); ++i) v[i] = g.data[i] * v[i] * inv;
    return v;
  };
  auto rotate = [&](double* p, int64_t pos) {
    for (int64_t j = 0; j < dr / 2; ++j) {
      const double ang = (float)pos * l.rope.inv_freq[j];  // fp32 angle, as the reference
      const double c = std::cos(ang) * l.rope.mscale, s = std::sin(ang) * l.rope.mscale;
      const double e = p[2 * j], o = p[2 * j + 1];
      p[2 * j] = e * c - o * s, p[2 * j + 1] = o * c + e * s;
    }
  };
  std::vector<std::vector<double>> q(T), ckv(T), kpe(T), kv(T);
  for (int64_t t = 0; t < T; ++t) {
    std::vector<double> xt(x.data.begin() + t * H, x.data.begin() + (t + 1) * H);
    if (d.q_rank > 0) {
      std::vector<double> c = linear(l.w.q_a, xt);
      if (d.lora_norm) c = rms(c, l.w.q_a_norm);
      q[t] = linear(l.w.q_b, c);
    } else {
      q[t] = linear(l.w.q_proj, xt);
    }
    for (int64_t h = 0; h < nh; ++h) rotate(&q[t][h * dq + dn], t);
    std::vector<double> a = linear(l.w.kv_a, xt);
    ckv[t].assign(a.begin(), a.begin() + R);
    if (d.lora_norm) ckv[t] = rms(ckv[t], l.w.kv_a_norm);
    kpe[t].assign(a.begin() + R, a.end());
    rotate(kpe[t].data(), t);
    kv[t] = linear(l.w.kv_b, ckv[t]);  // [kv_heads*(dn+dv)]
  }
  std::vector<double> ctx(nh * dv), y(T * H);
  for (int64_t t = 0; t < T; ++t) {
    for (int64_t h = 0; h < nh; ++h) {
      const int64_t g = h / group;
      std::vector<double> s(t + 1);
      double mx = -1e300, sum = 0;
      for (int64_t p = 0; p <= t; ++p) {
        double v = 0;
        for (int64_t i = 0; i < dn; ++i) v += q[t][h * dq + i] * kv[p][g * (dn + dv) + i];
        for (int64_t i = 0; i < dr; ++i) v += q[t][h * dq + dn + i] * kpe[p][i];
        s[p] = v * l.rope.softmax_scale, mx = std::max(mx, s[p]);
      }
      for (double& v : s) sum += (v = std::exp(v - mx));
      for (int64_t i = 0; i < dv; ++i) {
        double o = 0;
        for (int64_t p = 0; p <= t; ++p) o += s[p] / sum * kv[p][g * (dn + dv) + dn + i];
        ctx[h * dv + i] = o;
      }
    }
    std::vector<double> o = linear(l.w.out_proj, ctx);
    std::copy(o.begin(), o.end(), y.begin() + t * H);
  }
  return y;
}

}  // namespace

TEST(MlaRope, YarnRangesAndMscalesOfTheReleasedConfigs) {
  // Spec §1.3 [DERIVED]: base 500000, original context 8192; D=32: low 4, high 9; D=64: low 9, high 18;
  // m = 0.1 ln(s) + 1 = 1.346574 (s=32), 1.207944 (s=8); softmax_scale = d_q^-0.5 (no mscale_all_dim).
  struct Case { int64_t D; double s; int low, high; float m; };
  for (const Case& c : {Case{32, 32.0, 4, 9, 1.346574f}, Case{64, 8.0, 9, 18, 1.207944f}}) {
    HybridConfig h;
    h.rope_theta = 500000.0;
    h.mla_rope.factor = c.s;
    h.mla_rope.original_max_position_embeddings = 8192;
    MlaDims d = dims(64, 2, 1, 0, 16, c.D, c.D, 8, false);
    MlaRope r = make_mla_rope(h, d);
    ASSERT_EQ((int64_t)r.inv_freq.size(), c.D / 2);
    for (int64_t j = 0; j < c.D / 2; ++j) {
      const double extra = std::pow(500000.0, -2.0 * j / c.D);
      const double ramp = std::clamp((j - c.low) / double(c.high - c.low), 0.0, 1.0);
      const double want = extra / c.s * ramp + extra * (1 - ramp);
      EXPECT_NEAR(r.inv_freq[j], want, 1e-6 * want) << "D " << c.D << " j " << j;
      if (j <= c.low) {
        EXPECT_NEAR(r.inv_freq[j], extra, 1e-6 * extra) << "original frequency below low";
      }
      if (j >= c.high) {
        EXPECT_NEAR(r.inv_freq[j], extra / c.s, 1e-6 * extra) << "divided by s above high";
      }
    }
    EXPECT_NEAR(r.mscale, c.m, 1e-6);
    EXPECT_NEAR(r.softmax_scale, 1.0 / std::sqrt(2.0 * c.D), 1e-7);
  }
  // factor 1: plain RoPE, no scaling.
  HybridConfig plain;
  plain.rope_theta = 10000.0;
  MlaRope r = make_mla_rope(plain, dims(8, 1, 1, 0, 4, 8, 8, 8, false));
  EXPECT_EQ(r.mscale, 1.0f);
  for (int64_t j = 0; j < 4; ++j) EXPECT_NEAR(r.inv_freq[j], std::pow(10000.0, -2.0 * j / 8), 1e-7 * std::pow(10000.0, -2.0 * j / 8));
  // mscale_all_dim (DeepSeek-V3 style): cos/sin get mscale(s,1)/mscale(s,a), softmax gets mscale(s,a)^2.
  HybridConfig v3 = yarn_config(40.0, 0.5);
  MlaRope r3 = make_mla_rope(v3, dims(8, 1, 1, 0, 4, 8, 24, 8, false));
  const double m1 = 0.1 * std::log(40.0) + 1, ma = 0.05 * std::log(40.0) + 1;
  EXPECT_NEAR(r3.mscale, m1 / ma, 1e-6);
  EXPECT_NEAR(r3.softmax_scale, ma * ma / std::sqrt(32.0), 1e-6);
}

TEST(Mla, GoldenFromPytorchReference) {
  for (const char* name : {"gqa_lora", "full_kv"}) {
    SCOPED_TRACE(name);
    SafetensorsFile f(test::fixture(std::string("mla/") + name + ".safetensors"));
    auto cfg = nlohmann::json::parse(f.metadata().at("config"));
    auto get = [&](const char* t) { return view_to_tensor(*f.find(t)); };
    Layer l;
    l.d = dims(cfg["hidden"], cfg["n_heads"], cfg["kv_heads"], cfg["q_rank"], cfg["kv_rank"], cfg["rope_dim"],
               cfg["nope_dim"], cfg["v_dim"], cfg["lora_norm"]);
    l.d.eps = cfg["eps"];
    if (l.d.q_rank > 0) {
      l.w.q_a = get("q_a_proj.weight"), l.w.q_b = get("q_b_proj.weight");
      if (l.d.lora_norm) l.w.q_a_norm = get("q_a_layernorm.weight");
    } else {
      l.w.q_proj = get("q_proj.weight");
    }
    l.w.kv_a = get("kv_a_proj_with_mqa.weight");
    if (l.d.lora_norm) l.w.kv_a_norm = get("kv_a_layernorm.weight");
    l.w.kv_b = get("kv_b_proj.weight"), l.w.out_proj = get("out_proj.weight");
    HybridConfig h;
    h.rope_theta = cfg["rope_theta"];
    h.mla_rope.factor = cfg["factor"];
    h.mla_rope.original_max_position_embeddings = cfg["original_max_position_embeddings"];
    h.mla_rope.beta_fast = cfg["beta_fast"], h.mla_rope.beta_slow = cfg["beta_slow"];
    h.mla_rope.mscale = cfg["mscale"], h.mla_rope.mscale_all_dim = cfg["mscale_all_dim"];
    l.rope = make_mla_rope(h, l.d);

    // Rope tables: frequencies and both scales.
    Tensor inv = get("inv_freq");
    EXPECT_LT(max_abs_diff(inv.ptr(), l.rope.inv_freq.data(), inv.numel()), 1e-7f);
    EXPECT_NEAR(l.rope.mscale, std::stod(f.metadata().at("mscale")), 1e-6);
    EXPECT_NEAR(l.rope.softmax_scale, std::stod(f.metadata().at("softmax_scale")), 1e-7);

    const Tensor x = get("x"), y = get("y"), want_cache = get("cache");
    const int64_t T = cfg["T"], W = l.d.cache_width();
    ASSERT_EQ(x.dim(0), T);
    const float tol = 2e-5f * std::max(1.0f, max_abs(y));
    for (MlaMode mode : {MlaMode::Auto, MlaMode::Decompressed, MlaMode::Absorbed}) {
      MlaCache cache;
      cache.allocate(1, T, W);
      Tensor out = run(l, seq_batch(T), x, cache, mode);
      const float e = max_abs_diff(out.ptr(), y.ptr(), y.numel());
      const float ec = max_abs_diff(cache.latent.data(), want_cache.ptr(), want_cache.numel());
      std::printf("[ golden %s mode %d ] prefill max abs err %.3g (|y| max %.3g), cache %.3g\n", name, (int)mode, e,
                  max_abs(y), ec);
      EXPECT_LT(e, tol);
      EXPECT_LT(ec, 1e-5f * std::max(1.0f, max_abs(want_cache)));
    }
    // Token-by-token decode (absorbed in Auto).
    MlaCache cache;
    cache.allocate(1, T, W);
    float e = 0;
    for (int64_t t = 0; t < T; ++t) {
      Tensor xt({1, l.d.hidden});
      std::copy(x.data.begin() + t * l.d.hidden, x.data.begin() + (t + 1) * l.d.hidden, xt.data.begin());
      Tensor out = run(l, seq_batch(1, 0, (int32_t)t), xt, cache, MlaMode::Auto);
      e = std::max(e, max_abs_diff(out.ptr(), &y.data[t * l.d.hidden], l.d.hidden));
    }
    std::printf("[ golden %s ] step decode max abs err %.3g\n", name, e);
    EXPECT_LT(e, tol);
  }
}

TEST(Mla, BothModesMatchTheDirectFormula) {
  const int64_t T = 45;  // past the yarn original context of 32
  for (const MlaDims& d : dim_cases()) {
    Layer l = random_layer(d, 7 + (uint32_t)d.hidden);
    std::mt19937 rng(3);
    Tensor x = randn({T, d.hidden}, rng, 1.0f);
    std::vector<double> want = direct_mla(l, x, T);
    float ref_max = 0;
    for (double v : want) ref_max = std::max(ref_max, (float)std::fabs(v));
    for (MlaMode mode : {MlaMode::Decompressed, MlaMode::Absorbed}) {
      MlaCache cache;
      cache.allocate(1, T, d.cache_width());
      Tensor out = run(l, seq_batch(T), x, cache, mode);
      float e = 0;
      for (int64_t i = 0; i < out.numel(); ++i) e = std::max(e, (float)std::fabs(out.data[i] - want[i]));
      EXPECT_LT(e, 2e-5f * std::max(1.0f, ref_max)) << "hidden " << d.hidden << " mode " << (int)mode;
    }
  }
}

TEST(Mla, AbsorbedEqualsDecompressed) {
  const int64_t T = 70;
  for (const MlaDims& d : dim_cases()) {
    Layer l = random_layer(d, 11 + (uint32_t)d.n_heads);
    std::mt19937 rng(5);
    Tensor x = randn({T, d.hidden}, rng, 1.0f);
    MlaCache c1, c2;
    c1.allocate(1, T, d.cache_width());
    c2.allocate(1, T, d.cache_width());
    Tensor dec = run(l, seq_batch(T), x, c1, MlaMode::Decompressed);
    Tensor abs = run(l, seq_batch(T), x, c2, MlaMode::Absorbed);
    EXPECT_LT(max_abs_diff(dec.ptr(), abs.ptr(), dec.numel()), 2e-5f * std::max(1.0f, max_abs(dec)))
        << "hidden " << d.hidden;
    EXPECT_EQ(c1.latent, c2.latent);
  }
}

TEST(Mla, PrefillThenStepDecodeEqualsFullForward) {
  const int64_t T = 50, prefill = 19;
  for (const MlaDims& d : dim_cases()) {
    Layer l = random_layer(d, 13);
    std::mt19937 rng(9);
    Tensor x = randn({T, d.hidden}, rng, 1.0f);
    MlaCache full_cache, cache;
    full_cache.allocate(1, T, d.cache_width());
    cache.allocate(1, T, d.cache_width());
    Tensor full = run(l, seq_batch(T), x, full_cache, MlaMode::Auto);

    Tensor head({prefill, d.hidden});
    std::copy(x.data.begin(), x.data.begin() + prefill * d.hidden, head.data.begin());
    Tensor pre = run(l, seq_batch(prefill), head, cache, MlaMode::Auto);
    float e = max_abs_diff(pre.ptr(), full.ptr(), pre.numel());
    // Steps of one token (absorbed) and then a chunk of three (decompressed) against the cache.
    for (int64_t t = prefill; t < T;) {
      const int64_t m = (t < T - 3) ? 1 : T - t;
      Tensor xt({m, d.hidden});
      std::copy(x.data.begin() + t * d.hidden, x.data.begin() + (t + m) * d.hidden, xt.data.begin());
      Tensor out = run(l, seq_batch(m, 0, (int32_t)t), xt, cache, MlaMode::Auto);
      e = std::max(e, max_abs_diff(out.ptr(), &full.data[t * d.hidden], m * d.hidden));
      t += m;
    }
    EXPECT_LT(e, 2e-5f * std::max(1.0f, max_abs(full))) << "hidden " << d.hidden;
  }
}

TEST(Mla, MultiSequenceBatchEqualsSeparateRuns) {
  for (const MlaDims& d : dim_cases()) {
    Layer l = random_layer(d, 17);
    const int64_t H = d.hidden, ctx = 40;
    // Three sequences: A has 12 cached tokens then 1 new (absorbed in Auto), B is a fresh prompt of 9,
    // C has 5 cached tokens then 4 new; their new tokens are interleaved in one batch (slots 2, 0, 1).
    const int32_t slot[3] = {2, 0, 1};
    const int64_t cached[3] = {12, 0, 5}, fresh[3] = {1, 9, 4};
    std::mt19937 rng(21);
    std::vector<Tensor> xs;
    for (int s = 0; s < 3; ++s) xs.push_back(randn({cached[s] + fresh[s], H}, rng, 1.0f));

    // Separate runs: each sequence alone, whole, in its own single-slot cache.
    std::vector<Tensor> alone;
    for (int s = 0; s < 3; ++s) {
      MlaCache c;
      c.allocate(1, ctx, d.cache_width());
      alone.push_back(run(l, seq_batch(xs[s].dim(0)), xs[s], c, MlaMode::Decompressed));
    }
    for (MlaMode mode : {MlaMode::Auto, MlaMode::Decompressed, MlaMode::Absorbed}) {
      MlaCache cache;
      cache.allocate(3, ctx, d.cache_width());
      for (int s = 0; s < 3; ++s) {
        if (!cached[s]) continue;
        Tensor pre({cached[s], H});
        std::copy(xs[s].data.begin(), xs[s].data.begin() + cached[s] * H, pre.data.begin());
        run(l, seq_batch(cached[s], slot[s]), pre, cache, mode);
      }
      Batch b;
      std::vector<std::pair<int, int64_t>> who;  // (sequence, row in xs)
      for (int64_t i = 0; i < 9; ++i)
        for (int s = 0; s < 3; ++s)
          if (i < fresh[s]) b.add(0, slot[s], (int32_t)(cached[s] + i), true), who.push_back({s, cached[s] + i});
      Tensor x({b.size(), H});
      for (int64_t t = 0; t < b.size(); ++t)
        std::copy(&xs[who[t].first].data[who[t].second * H], &xs[who[t].first].data[(who[t].second + 1) * H],
                  &x.data[t * H]);
      Tensor out = run(l, b, x, cache, mode);
      float e = 0, m = 0;
      for (int64_t t = 0; t < b.size(); ++t) {
        const float* want = &alone[who[t].first].data[who[t].second * H];
        e = std::max(e, max_abs_diff(&out.data[t * H], want, H));
        for (int64_t i = 0; i < H; ++i) m = std::max(m, std::fabs(want[i]));
      }
      EXPECT_LT(e, 2e-5f * std::max(1.0f, m)) << "hidden " << d.hidden << " mode " << (int)mode;
    }
  }
}

// Identity checked: an MLA whose ranks are full (q_rank = nh*hd, kv_rank = 2*nkv*hd) can hold a Llama
// GQA attention exactly. q_a = W_q and q_b selects head h's rows into its nope slots (or q_proj = W_q
// laid out per head when q_rank = 0); kv_a's latent rows are [W_k; W_v] and kv_b selects kv head g's key
// rows into its nope slots and its value rows into its v slots; out_proj = W_o. The rope rows of q_b /
// q_proj are zero, so q_pe = 0 and the rope part of every score vanishes whatever kpe is (kpe rows are
// random on purpose); softmax_scale is set to hd^-0.5, Llama's, instead of (hd + rope)^-0.5. The result
// must equal a plain causal GQA softmax attention of W_q, W_k, W_v, W_o without RoPE, evaluated here in
// fp64, and the engine's own Llama attention with an identity rotation (all frequencies 0).
TEST(Mla, FullRankMlaEqualsLlamaAttentionWithoutRope) {
  const int64_t H = 24, nh = 4, nkv = 2, hd = 6, dr = 2, T = 30, group = nh / nkv;
  std::mt19937 rng(33);
  auto lin = [&](int64_t out, int64_t in) { return randn({out, in}, rng, 1.5f / std::sqrt((float)in)); };
  Tensor wq = lin(nh * hd, H), wk = lin(nkv * hd, H), wv = lin(nkv * hd, H), wo = lin(H, nh * hd);
  Tensor x = randn({T, H}, rng, 1.0f);

  // fp64 causal GQA attention, no RoPE.
  std::vector<double> want(T * H, 0.0);
  {
    auto proj = [&](const Tensor& w, int64_t t, int64_t r) {
      double v = 0;
      for (int64_t i = 0; i < H; ++i) v += (double)w.data[r * H + i] * x.data[t * H + i];
      return v;
    };
    std::vector<double> q(T * nh * hd), k(T * nkv * hd), v(T * nkv * hd), ctx(T * nh * hd);
    for (int64_t t = 0; t < T; ++t) {
      for (int64_t r = 0; r < nh * hd; ++r) q[t * nh * hd + r] = proj(wq, t, r);
      for (int64_t r = 0; r < nkv * hd; ++r) k[t * nkv * hd + r] = proj(wk, t, r), v[t * nkv * hd + r] = proj(wv, t, r);
    }
    for (int64_t t = 0; t < T; ++t)
      for (int64_t h = 0; h < nh; ++h) {
        const int64_t g = h / group;
        std::vector<double> s(t + 1);
        double mx = -1e300, sum = 0;
        for (int64_t p = 0; p <= t; ++p) {
          double d = 0;
          for (int64_t i = 0; i < hd; ++i) d += q[t * nh * hd + h * hd + i] * k[p * nkv * hd + g * hd + i];
          s[p] = d / std::sqrt((double)hd), mx = std::max(mx, s[p]);
        }
        for (double& e : s) sum += (e = std::exp(e - mx));
        for (int64_t i = 0; i < hd; ++i) {
          double o = 0;
          for (int64_t p = 0; p <= t; ++p) o += s[p] / sum * v[p * nkv * hd + g * hd + i];
          ctx[t * nh * hd + h * hd + i] = o;
        }
      }
    for (int64_t t = 0; t < T; ++t)
      for (int64_t r = 0; r < H; ++r)
        for (int64_t i = 0; i < nh * hd; ++i) want[t * H + r] += (double)wo.data[r * nh * hd + i] * ctx[t * nh * hd + i];
  }
  float ref_max = 0;
  for (double v : want) ref_max = std::max(ref_max, (float)std::fabs(v));

  // The engine's Llama attention with identity rotation, as a second witness.
  LlamaConfig lc;
  lc.hidden_size = H, lc.num_heads = nh, lc.num_kv_heads = nkv, lc.head_dim = hd;
  AttentionWeights aw{wq, wk, wv, wo};
  RopeTable identity;
  identity.inv_freq.assign(hd / 2, 0.0f);
  KvCache kvc;
  kvc.allocate(1, T, nkv * hd);
  Tensor llama({T, H});
  attention_forward(lc, aw, identity, seq_batch(T), x.ptr(), llama.ptr(), kvc);
  float e_llama = 0;
  for (int64_t i = 0; i < T * H; ++i) e_llama = std::max(e_llama, (float)std::fabs(llama.data[i] - want[i]));
  EXPECT_LT(e_llama, 2e-5f * std::max(1.0f, ref_max));

  for (int64_t q_rank : {nh * hd, (int64_t)0}) {
    Layer l;
    l.d = dims(H, nh, nkv, q_rank, 2 * nkv * hd, dr, hd, hd, false);
    const int64_t dq = hd + dr, R = 2 * nkv * hd;
    Tensor qsel({nh * dq, nh * hd});  // head h's nope rows <- W_q rows h*hd.., rope rows 0
    for (int64_t h = 0; h < nh; ++h)
      for (int64_t i = 0; i < hd; ++i) qsel.data[(h * dq + i) * nh * hd + h * hd + i] = 1.0f;
    if (q_rank > 0) {
      l.w.q_a = wq, l.w.q_b = qsel;  // q_b · q_a = qsel · W_q
    } else {
      l.w.q_proj = Tensor({nh * dq, H});
      cpu::matmul(qsel.ptr(), wq.ptr(), l.w.q_proj.ptr(), nh * dq, nh * hd, H);  // exact: one 1 per row
    }
    l.w.kv_a = Tensor({R + dr, H});
    std::copy(wk.data.begin(), wk.data.end(), l.w.kv_a.data.begin());
    std::copy(wv.data.begin(), wv.data.end(), l.w.kv_a.data.begin() + nkv * hd * H);
    Tensor kpe_rows = lin(dr, H);
    std::copy(kpe_rows.data.begin(), kpe_rows.data.end(), l.w.kv_a.data.begin() + R * H);
    l.w.kv_b = Tensor({nkv * 2 * hd, R});
    for (int64_t g = 0; g < nkv; ++g)
      for (int64_t i = 0; i < hd; ++i) {
        l.w.kv_b.data[(g * 2 * hd + i) * R + g * hd + i] = 1.0f;                  // k_nope^g <- W_k rows
        l.w.kv_b.data[(g * 2 * hd + hd + i) * R + nkv * hd + g * hd + i] = 1.0f;  // v^g <- W_v rows
      }
    l.w.out_proj = wo;
    l.rope = make_mla_rope(yarn_config(), l.d);
    l.rope.softmax_scale = 1.0f / std::sqrt((float)hd);
    for (MlaMode mode : {MlaMode::Decompressed, MlaMode::Absorbed}) {
      MlaCache cache;
      cache.allocate(1, T, l.d.cache_width());
      Tensor out = run(l, seq_batch(T), x, cache, mode);
      float e = 0;
      for (int64_t i = 0; i < T * H; ++i) e = std::max(e, (float)std::fabs(out.data[i] - want[i]));
      EXPECT_LT(e, 2e-5f * std::max(1.0f, ref_max)) << "q_rank " << q_rank << " mode " << (int)mode;
    }
  }
}

TEST(Mla, ParameterCountMatchesTheWeights) {
  for (const MlaDims& d : dim_cases()) {
    Layer l = random_layer(d, 1);
    int64_t n = 0;
    for (const Tensor* t : {&l.w.q_a, &l.w.q_a_norm, &l.w.q_b, &l.w.q_proj, &l.w.kv_a, &l.w.kv_a_norm, &l.w.kv_b,
                            &l.w.out_proj})
      n += t->numel();
    EXPECT_EQ(d.parameter_count(), n);
  }
  // 1B layer (spec §7.3): q_a 1344x2048, q_b 2048x1344, kv_a 160x2048, kv_b 768x128, out 2048x2048.
  MlaDims d = dims(2048, 32, 8, 1344, 128, 32, 32, 64, false);
  EXPECT_EQ(d.parameter_count(), 1344 * 2048 + 2048 * 1344 + 160 * 2048 + 768 * 128 + 2048 * 2048);
}

TEST(Mla, RejectsBadBatchesAndWeights) {
  MlaDims d = dims(32, 4, 2, 24, 16, 8, 8, 12, true);
  Layer l = random_layer(d, 2);
  Tensor x({1, d.hidden});
  Tensor out({1, d.hidden});
  auto expect_error = [&](const Batch& b, MlaCache& c, const std::string& needle, const Layer& lay) {
    try {
      mla_forward(lay.d, lay.w, lay.rope, b, x.ptr(), out.ptr(), c);
      ADD_FAILURE() << "no error for " << needle;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  MlaCache c;
  c.allocate(2, 8, d.cache_width());
  expect_error(seq_batch(1, 0, 8), c, "position 8 outside the MLA cache context of 8", l);
  expect_error(seq_batch(1, 0, -1), c, "position -1", l);
  expect_error(seq_batch(1, 2, 0), c, "slot 2", l);
  Batch back;
  back.add(0, 0, 3, true), back.add(0, 0, 3, true);
  Tensor x2({2, d.hidden}), out2({2, d.hidden});
  try {
    mla_forward(l.d, l.w, l.rope, back, x2.ptr(), out2.ptr(), c);
    ADD_FAILURE() << "repeated position accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("does not follow"), std::string::npos) << e.what();
  }
  MlaCache narrow;
  narrow.allocate(1, 8, d.cache_width() - 1);
  expect_error(seq_batch(1), narrow, "cache width", l);
  Layer bad = l;
  bad.w.kv_b = Tensor({3, 3});
  expect_error(seq_batch(1), c, "kv_b_proj expected shape", bad);
  bad = l;
  bad.w.q_a_norm = Tensor();
  expect_error(seq_batch(1), c, "q_a_layernorm", bad);
}
