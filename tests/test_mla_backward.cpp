// The MLA training forward and backward (src/model/mla_backward.cpp) against:
//  * the inference forward mla_forward on the same rows (one cache slot per row, positions 0..T-1);
//  * central finite differences of an independent fp64 evaluation of the spec's formulas, for a spread
//    of shapes (q lora or q_proj, norms on/off, GQA/MQA/full kv heads, rope 2..8, nope 0.., B 1 and 3);
//  * PyTorch autograd through the reference zebra_ref.MLA in fp64
//    (scripts/reference/make_mla_grad_fixtures.py -> tests/fixtures/mla_grad);
//  * the activation plan: mla_activation_floats is exactly what the forward takes from the arena.
#include <algorithm>
#include <cmath>
#include <random>
#include <stdexcept>

#include "core/arena.h"
#include "io/safetensors.h"
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

// Every weight of MlaWeights with its Hugging Face name; a weight the dims do not use is an empty Tensor.
const std::vector<std::pair<const char*, Tensor MlaWeights::*>> kWeights = {
    {"q_a_proj.weight", &MlaWeights::q_a},         {"q_a_layernorm.weight", &MlaWeights::q_a_norm},
    {"q_b_proj.weight", &MlaWeights::q_b},         {"q_proj.weight", &MlaWeights::q_proj},
    {"kv_a_proj_with_mqa.weight", &MlaWeights::kv_a}, {"kv_a_layernorm.weight", &MlaWeights::kv_a_norm},
    {"kv_b_proj.weight", &MlaWeights::kv_b},       {"out_proj.weight", &MlaWeights::out_proj}};

Tensor randn(std::vector<int64_t> shape, std::mt19937& rng, float scale, float mean = 0.0f) {
  Tensor t(std::move(shape));
  std::normal_distribution<float> nd(0.0f, 1.0f);
  for (float& v : t.data) v = mean + scale * nd(rng);
  return t;
}

MlaDims dims(int64_t hidden, int64_t nh, int64_t nkv, int64_t q_rank, int64_t kv_rank, int64_t rope, int64_t nope,
             int64_t v, bool norm) {
  MlaDims d;
  d.hidden = hidden, d.n_heads = nh, d.kv_heads = nkv, d.q_rank = q_rank, d.kv_rank = kv_rank;
  d.rope_dim = rope, d.nope_dim = nope, d.v_dim = v, d.lora_norm = norm, d.eps = 1e-6;
  return d;
}

struct Case {
  MlaDims d;
  int64_t B, T;
};

// q lora / q_proj, norms on/off, GQA (4 over 2), MQA (4 over 1), GQA 6 over 2, full kv heads; rope 2/4/8;
// nope 0 and nope != v; B 1 and 3; row lengths that are multiples of nothing in particular.
std::vector<Case> cases() {
  return {{dims(16, 4, 2, 12, 8, 4, 6, 5, true), 3, 7},  {dims(12, 3, 3, 0, 6, 8, 4, 6, false), 1, 9},
          {dims(10, 4, 1, 6, 5, 2, 3, 7, false), 3, 5},  {dims(14, 6, 2, 0, 7, 8, 0, 4, true), 2, 11},
          {dims(8, 2, 2, 9, 6, 2, 5, 3, true), 1, 13}};
}

// YaRN factor 4 over an original context of 8, so the ramp and mscale are both in play.
Layer random_layer(const MlaDims& d, uint32_t seed, double mscale_all_dim = 0.0) {
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
  HybridConfig h;
  h.rope_theta = 16.0;
  h.mla_rope.factor = 4.0;
  h.mla_rope.original_max_position_embeddings = 8;
  h.mla_rope.mscale_all_dim = mscale_all_dim;
  l.rope = make_mla_rope(h, d);
  return l;
}

MlaWeights zero_grads(const MlaWeights& w) {
  MlaWeights g;
  for (const auto& [name, m] : kWeights)
    if (!(w.*m).empty()) g.*m = Tensor((w.*m).shape);
  return g;
}

float max_abs(const float* a, int64_t n) {
  float m = 0;
  for (int64_t i = 0; i < n; ++i) m = std::max(m, std::fabs(a[i]));
  return m;
}
float max_abs_diff(const float* a, const float* b, int64_t n) {
  float m = 0;
  for (int64_t i = 0; i < n; ++i) m = std::max(m, std::fabs(a[i] - b[i]));
  return m;
}

// Forward + backward of the C++ code with L = sum(out * dout): out [n, H], dx [n, H], grads.
struct Step {
  Tensor out, dx;
  MlaWeights grad;
};
Step train_step(const Layer& l, int64_t B, int64_t T, const Tensor& x, const Tensor& dout) {
  const int64_t n = B * T, H = l.d.hidden;
  Arena arena;
  arena.plan(mla_activation_floats(l.d, B, T));
  MlaActivations act;
  Step r{Tensor({n, H}), Tensor({n, H}), zero_grads(l.w)};
  mla_train_forward(l.d, l.w, l.rope, B, T, x.ptr(), r.out.ptr(), arena, act);
  mla_backward(l.d, l.w, l.rope, B, T, x.ptr(), act, dout.ptr(), r.dx.ptr(), r.grad);
  return r;
}

// ---- An independent fp64 evaluation of the spec's formulas (per token, per head, adjacent-pair rope) ----
struct DoubleWeights {
  std::vector<std::vector<double>> t;  // indexed like kWeights; empty when absent
};
DoubleWeights to_double(const MlaWeights& w) {
  DoubleWeights dw;
  for (const auto& [name, m] : kWeights) dw.t.emplace_back((w.*m).data.begin(), (w.*m).data.end());
  return dw;
}
enum { kQa, kQaNorm, kQb, kQproj, kKva, kKvaNorm, kKvb, kOut };

std::vector<double> forward_double(const Layer& l, const DoubleWeights& dw, const std::vector<double>& x, int64_t B,
                                   int64_t T) {
  const MlaDims& d = l.d;
  const int64_t H = d.hidden, nh = d.n_heads, dq = d.q_head_dim(), dn = d.nope_dim, dr = d.rope_dim;
  const int64_t R = d.kv_rank, dv = d.v_dim, group = nh / d.kv_heads, Q = d.q_rank;
  auto linear = [](const std::vector<double>& w, int64_t O, const std::vector<double>& in) {
    const int64_t I = (int64_t)in.size();
    std::vector<double> y(O, 0.0);
    for (int64_t o = 0; o < O; ++o)
      for (int64_t i = 0; i < I; ++i) y[o] += w[o * I + i] * in[i];
    return y;
  };
  auto rms = [&](std::vector<double> v, const std::vector<double>& g) {
    double ss = 0;
    for (double e : v) ss += e * e;
    const double inv = 1.0 / std::sqrt(ss / v.size() + d.eps);
    for (size_t i = 0; i < v.size(); ++i) v[i] = g[i] * v[i] * inv;
    return v;
  };
  auto rotate = [&](double* p, int64_t pos) {  // pairs (2j, 2j+1) in place
    for (int64_t j = 0; j < dr / 2; ++j) {
      const double ang = (float)pos * l.rope.inv_freq[j];  // fp32 angle, as the reference
      const double c = std::cos(ang) * l.rope.mscale, s = std::sin(ang) * l.rope.mscale;
      const double e = p[2 * j], o = p[2 * j + 1];
      p[2 * j] = e * c - o * s, p[2 * j + 1] = o * c + e * s;
    }
  };
  const int64_t n = B * T;
  std::vector<std::vector<double>> q(n), kpe(n), kv(n);
  for (int64_t i = 0; i < n; ++i) {
    std::vector<double> xt(x.begin() + i * H, x.begin() + (i + 1) * H);
    if (Q > 0) {
      std::vector<double> c = linear(dw.t[kQa], Q, xt);
      if (d.lora_norm) c = rms(c, dw.t[kQaNorm]);
      q[i] = linear(dw.t[kQb], nh * dq, c);
    } else {
      q[i] = linear(dw.t[kQproj], nh * dq, xt);
    }
    for (int64_t h = 0; h < nh; ++h) rotate(&q[i][h * dq + dn], i % T);
    std::vector<double> a = linear(dw.t[kKva], R + dr, xt);
    std::vector<double> ckv(a.begin(), a.begin() + R);
    if (d.lora_norm) ckv = rms(ckv, dw.t[kKvaNorm]);
    kpe[i].assign(a.begin() + R, a.end());
    rotate(kpe[i].data(), i % T);
    kv[i] = linear(dw.t[kKvb], d.kv_heads * (dn + dv), ckv);
  }
  std::vector<double> y(n * H);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < T; ++t) {
      const int64_t i = b * T + t;
      std::vector<double> ctx(nh * dv, 0.0);
      for (int64_t h = 0; h < nh; ++h) {
        const int64_t g = h / group;
        std::vector<double> s(t + 1);
        double mx = -1e300, sum = 0;
        for (int64_t p = 0; p <= t; ++p) {
          const int64_t k = b * T + p;
          double v = 0;
          for (int64_t e = 0; e < dn; ++e) v += q[i][h * dq + e] * kv[k][g * (dn + dv) + e];
          for (int64_t e = 0; e < dr; ++e) v += q[i][h * dq + dn + e] * kpe[k][e];
          s[p] = v * l.rope.softmax_scale, mx = std::max(mx, s[p]);
        }
        for (double& v : s) sum += (v = std::exp(v - mx));
        for (int64_t p = 0; p <= t; ++p)
          for (int64_t e = 0; e < dv; ++e) ctx[h * dv + e] += s[p] / sum * kv[b * T + p][g * (dn + dv) + dn + e];
      }
      std::vector<double> o = linear(dw.t[kOut], H, ctx);
      std::copy(o.begin(), o.end(), y.begin() + i * H);
    }
  return y;
}

double loss_double(const Layer& l, const DoubleWeights& dw, const std::vector<double>& x, int64_t B, int64_t T,
                   const Tensor& dout) {
  std::vector<double> y = forward_double(l, dw, x, B, T);
  double L = 0;
  for (size_t i = 0; i < y.size(); ++i) L += y[i] * dout.data[i];
  return L;
}

// Up to `k` distinct indices of [0, n), all of them when n <= k.
std::vector<int64_t> sample(int64_t n, int64_t k, std::mt19937& rng) {
  std::vector<int64_t> idx(n);
  for (int64_t i = 0; i < n; ++i) idx[i] = i;
  std::shuffle(idx.begin(), idx.end(), rng);
  idx.resize(std::min(n, k));
  return idx;
}

}  // namespace

TEST(MlaTrain, ActivationFloatsAreExactlyWhatTheForwardTakes) {
  for (const Case& c : cases()) {
    const Layer l = random_layer(c.d, 3);
    std::mt19937 rng(1);
    const Tensor x = randn({c.B * c.T, c.d.hidden}, rng, 1.0f);
    Tensor out({c.B * c.T, c.d.hidden});
    const int64_t want = mla_activation_floats(c.d, c.B, c.T);
    Arena arena;
    arena.plan(want);
    MlaActivations act;
    mla_train_forward(c.d, l.w, l.rope, c.B, c.T, x.ptr(), out.ptr(), arena, act);
    EXPECT_EQ(arena.used(), want) << "hidden " << c.d.hidden;
    // One float less is a planning bug the arena reports, naming the slice.
    Arena small;
    small.plan(want - 1);
    EXPECT_NE(test::error_message([&] {
                mla_train_forward(c.d, l.w, l.rope, c.B, c.T, x.ptr(), out.ptr(), small, act);
              }).find("activation arena"),
              std::string::npos);
  }
}

TEST(MlaTrain, ForwardEqualsInferenceForward) {
  // Each packed row is one sequence of mla_forward's batch, in its own cache slot (slots in reverse order).
  for (Case c : cases()) {
    c.B = 3, c.T = 37;  // past the yarn original context of 8
    const Layer l = random_layer(c.d, 5, c.d.hidden % 2 ? 0.5 : 0.0);
    const int64_t n = c.B * c.T, H = c.d.hidden;
    std::mt19937 rng(2);
    const Tensor x = randn({n, H}, rng, 1.0f);
    Tensor out({n, H});
    Arena arena;
    arena.plan(mla_activation_floats(c.d, c.B, c.T));
    MlaActivations act;
    mla_train_forward(c.d, l.w, l.rope, c.B, c.T, x.ptr(), out.ptr(), arena, act);

    Batch batch;
    for (int64_t b = 0; b < c.B; ++b) {
      Batch row = make_sequence_batch(std::vector<int32_t>(c.T, 1), (int32_t)(c.B - 1 - b), 0, true);
      for (int64_t t = 0; t < row.size(); ++t) batch.add(row.tokens[t], row.seq[t], row.pos[t], true);
    }
    for (MlaMode mode : {MlaMode::Auto, MlaMode::Absorbed}) {
      MlaCache cache;
      cache.allocate(c.B, c.T, c.d.cache_width());
      Tensor want({n, H});
      mla_forward(c.d, l.w, l.rope, batch, x.ptr(), want.ptr(), cache, mode);
      EXPECT_LT(max_abs_diff(out.ptr(), want.ptr(), n * H), 1e-5f * std::max(1.0f, max_abs(want.ptr(), n * H)))
          << "hidden " << H << " mode " << (int)mode;
    }
  }
}

TEST(MlaTrain, GradientsMatchFiniteDifferencesOfAnFp64Forward) {
  for (const Case& c : cases()) {
    SCOPED_TRACE("hidden " + std::to_string(c.d.hidden));
    const Layer l = random_layer(c.d, 7 + (uint32_t)c.d.hidden, c.d.hidden % 2 ? 0.5 : 0.0);
    const int64_t n = c.B * c.T, H = c.d.hidden;
    std::mt19937 rng(11);
    const Tensor x = randn({n, H}, rng, 1.0f), dout = randn({n, H}, rng, 1.0f);
    const Step r = train_step(l, c.B, c.T, x, dout);

    DoubleWeights dw = to_double(l.w);
    std::vector<double> xd(x.data.begin(), x.data.end());
    // The fp64 formulas are the function the fp32 code computes.
    const std::vector<double> y = forward_double(l, dw, xd, c.B, c.T);
    float ymax = 0, yerr = 0;
    for (int64_t i = 0; i < n * H; ++i)
      ymax = std::max(ymax, (float)std::fabs(y[i])), yerr = std::max(yerr, (float)std::fabs(y[i] - r.out.data[i]));
    EXPECT_LT(yerr, 2e-5f * std::max(1.0f, ymax));

    // Central differences on up to 40 elements of each tensor; the fp64 error is ~1e-9, so the
    // tolerance is the fp32 backward's own rounding, relative to the tensor's largest gradient.
    const double h = 1e-5;
    auto check = [&](const char* what, std::vector<double>& v, const float* g, int64_t size) {
      const float scale = std::max(1.0f, max_abs(g, size));
      float worst = 0;
      for (int64_t i : sample(size, 40, rng)) {
        const double keep = v[i];
        v[i] = keep + h;
        const double up = loss_double(l, dw, xd, c.B, c.T, dout);
        v[i] = keep - h;
        const double down = loss_double(l, dw, xd, c.B, c.T, dout);
        v[i] = keep;
        const float fd = (float)((up - down) / (2 * h));
        worst = std::max(worst, std::fabs(fd - g[i]));
        EXPECT_NEAR(g[i], fd, 1e-4f * scale) << what << "[" << i << "]";
      }
      std::printf("[ fd hidden %lld ] %-26s max |dL/dw| %8.3f, worst error %.2g\n", (long long)H, what, scale, worst);
    };
    check("x", xd, r.dx.ptr(), n * H);
    for (size_t k = 0; k < kWeights.size(); ++k)
      if (!dw.t[k].empty()) check(kWeights[k].first, dw.t[k], (r.grad.*kWeights[k].second).ptr(), dw.t[k].size());
  }
}

TEST(MlaTrain, GradientsAccumulateAndDxIsOptional) {
  const Case c = cases()[0];
  const Layer l = random_layer(c.d, 19);
  const int64_t n = c.B * c.T, H = c.d.hidden;
  std::mt19937 rng(4);
  const Tensor x = randn({n, H}, rng, 1.0f), dout = randn({n, H}, rng, 1.0f);
  const Step once = train_step(l, c.B, c.T, x, dout);

  // Start from non-zero gradients (a weight read elsewhere too) and no dx: every gradient adds on.
  Arena arena;
  arena.plan(mla_activation_floats(c.d, c.B, c.T));
  MlaActivations act;
  Tensor out({n, H});
  mla_train_forward(c.d, l.w, l.rope, c.B, c.T, x.ptr(), out.ptr(), arena, act);
  MlaWeights grad = zero_grads(l.w);
  for (const auto& [name, m] : kWeights) std::fill((grad.*m).data.begin(), (grad.*m).data.end(), 0.5f);
  mla_backward(c.d, l.w, l.rope, c.B, c.T, x.ptr(), act, dout.ptr(), nullptr, grad);
  Tensor dx({n, H});
  std::fill(dx.data.begin(), dx.data.end(), -1.0f);
  mla_backward(c.d, l.w, l.rope, c.B, c.T, x.ptr(), act, dout.ptr(), dx.ptr(), grad);
  for (const auto& [name, m] : kWeights) {
    const Tensor &g = grad.*m, &g1 = once.grad.*m;
    for (int64_t i = 0; i < g.numel(); ++i)
      ASSERT_NEAR(g.data[i], 0.5f + 2 * g1.data[i], 1e-5f * std::max(1.0f, std::fabs(g1.data[i]))) << name;
  }
  for (int64_t i = 0; i < n * H; ++i) ASSERT_NEAR(dx.data[i], -1.0f + once.dx.data[i], 1e-5f);
}

TEST(MlaTrain, GradientsMatchPytorchAutograd) {
  for (const char* name : {"gqa_lora", "full_kv"}) {
    SCOPED_TRACE(name);
    SafetensorsFile f(test::fixture(std::string("mla_grad/") + name + ".safetensors"));
    const auto cfg = nlohmann::json::parse(f.metadata().at("config"));
    auto get = [&](const std::string& t) {
      const TensorView* v = f.find(t);
      if (!v) throw std::runtime_error("fixture has no tensor " + t);
      return view_to_tensor(*v);
    };
    Layer l;
    l.d = dims(cfg["hidden"], cfg["n_heads"], cfg["kv_heads"], cfg["q_rank"], cfg["kv_rank"], cfg["rope_dim"],
               cfg["nope_dim"], cfg["v_dim"], cfg["lora_norm"]);
    l.d.eps = cfg["eps"];
    for (const auto& [wname, m] : kWeights)
      if (f.find(wname)) l.w.*m = get(wname);
    HybridConfig h;
    h.rope_theta = cfg["rope_theta"];
    h.mla_rope.factor = cfg["factor"];
    h.mla_rope.original_max_position_embeddings = cfg["original_max_position_embeddings"];
    h.mla_rope.beta_fast = cfg["beta_fast"], h.mla_rope.beta_slow = cfg["beta_slow"];
    h.mla_rope.mscale = cfg["mscale"], h.mla_rope.mscale_all_dim = cfg["mscale_all_dim"];
    l.rope = make_mla_rope(h, l.d);
    const int64_t B = cfg["B"], T = cfg["T"];

    const Tensor x = get("x"), dout = get("dout");
    const Step r = train_step(l, B, T, x, dout);
    auto compare = [&](const std::string& what, const Tensor& got, const Tensor& want) {
      ASSERT_EQ(got.shape, want.shape) << what;
      const float scale = std::max(1.0f, max_abs(want.ptr(), want.numel()));
      const float e = max_abs_diff(got.ptr(), want.ptr(), want.numel());
      std::printf("[ autograd %s ] %-31s max abs %8.3f, max err %.2g\n", name, what.c_str(), scale, e);
      EXPECT_LT(e, 1e-4f * scale) << what;
    };
    compare("y", r.out, get("y"));
    compare("dx", r.dx, get("dx"));
    int checked = 0;
    for (const auto& [wname, m] : kWeights)
      if (!(l.w.*m).empty()) compare(std::string("grad.") + wname, r.grad.*m, get(std::string("grad.") + wname)), ++checked;
    EXPECT_EQ(checked, l.d.q_rank > 0 ? (l.d.lora_norm ? 7 : 6) : (l.d.lora_norm ? 5 : 4));
  }
}
