// zebra compose: MLA placement, SVD init of MLA against torch (sign-invariant products), algebraic
// identities of the inits, the seeded Mamba2 init, compose_hybrid + save_hybrid end to end.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>
#include <random>

#include "compose/compose.h"
#include "compose/init_mamba2.h"
#include "compose/init_mla.h"
#include "compose/placement.h"
#include "compose/svd.h"
#include "core/error.h"
#include "core/log.h"
#include "io/safetensors.h"
#include "model/hf_config.h"
#include "model/loader.h"
#include "model/save_hybrid.h"
#include "support.h"

using namespace zebra;
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

template <class F>
void expect_error(F&& f, const std::string& needle) {
  try {
    f();
    ADD_FAILURE() << "expected an error mentioning '" << needle << "'";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << "message: " << e.what();
  }
}

// C = A B for row-major A [m, k], B [k, n], in double.
std::vector<double> matmul(const float* a, const float* b, int64_t m, int64_t k, int64_t n) {
  std::vector<double> c(m * n, 0.0);
  for (int64_t i = 0; i < m; ++i)
    for (int64_t p = 0; p < k; ++p)
      for (int64_t j = 0; j < n; ++j) c[i * n + j] += static_cast<double>(a[i * k + p]) * b[p * n + j];
  return c;
}

// max |x - y| / max |y|
double rel_diff(const std::vector<double>& x, const float* y, size_t n) {
  double md = 0, my = 0;
  for (size_t i = 0; i < n; ++i) {
    md = std::max(md, std::fabs(x[i] - y[i]));
    my = std::max(my, std::fabs(static_cast<double>(y[i])));
  }
  return md / my;
}

// The fixture's teacher attention: H=32, nh=4, nkv=2, hd=8.
LlamaConfig small_config(int64_t layers = 1) {
  LlamaConfig c;
  c.vocab_size = 64;
  c.hidden_size = 32;
  c.intermediate_size = 48;
  c.num_layers = layers;
  c.num_heads = 4;
  c.num_kv_heads = 2;
  c.head_dim = 8;
  c.max_position_embeddings = 256;
  c.rope_theta = 10000.0;
  c.bos_token_id = 1;
  c.eos_token_ids = {2};
  return c;
}

AttentionWeights fixture_attention() {
  SafetensorsFile f(test::fixture("compose/attention.safetensors"));
  AttentionWeights a;
  a.wq = f.load("wq", {32, 32});
  a.wk = f.load("wk", {16, 32});
  a.wv = f.load("wv", {16, 32});
  a.wo = f.load("wo", {32, 32});
  return a;
}

MlaDims small_dims(int64_t nope, int64_t rope, int64_t q_rank, int64_t kv_rank, bool full_kv) {
  MlaDims d;
  d.hidden = 32;
  d.n_heads = 4;
  d.kv_heads = full_kv ? 4 : 2;
  d.q_rank = q_rank;
  d.kv_rank = kv_rank;
  d.rope_dim = rope;
  d.nope_dim = nope;
  d.v_dim = 8;
  return d;
}

Tensor random_tensor(std::vector<int64_t> shape, std::mt19937& rng, float scale) {
  Tensor t(std::move(shape));
  std::normal_distribution<float> nd(0.0f, scale);
  for (float& v : t.data) v = nd(rng);
  return t;
}

// A random Llama teacher with the small config.
Model random_teacher(int64_t layers, bool tied, uint32_t seed = 7) {
  std::mt19937 rng(seed);
  Model m;
  m.config = small_config(layers);
  m.config.tie_word_embeddings = tied;
  const int64_t H = 32, I = 48, V = 64;
  m.embed = random_tensor({V, H}, rng, 0.1f);
  m.norm = random_tensor({H}, rng, 1.0f);
  if (!tied) m.lm_head = random_tensor({V, H}, rng, 0.1f);
  m.layers.resize(layers);
  for (Layer& l : m.layers) {
    l.kind = LayerKind::Attention;
    l.input_norm = random_tensor({H}, rng, 1.0f);
    l.post_norm = random_tensor({H}, rng, 1.0f);
    l.attn.wq = random_tensor({32, H}, rng, 0.2f);
    l.attn.wk = random_tensor({16, H}, rng, 0.2f);
    l.attn.wv = random_tensor({16, H}, rng, 0.2f);
    l.attn.wo = random_tensor({H, 32}, rng, 0.2f);
    l.mlp.gate = random_tensor({I, H}, rng, 0.2f);
    l.mlp.up = random_tensor({I, H}, rng, 0.2f);
    l.mlp.down = random_tensor({H, I}, rng, 0.2f);
  }
  return m;
}

bool same(const Tensor& a, const Tensor& b) { return a.shape == b.shape && a.data == b.data; }

struct Quiet {
  LogLevel saved = log_level();
  Quiet() { set_log_level(LogLevel::Quiet); }
  ~Quiet() { set_log_level(saved); }
};

}  // namespace

// ---- placement ------------------------------------------------------------------------------------

TEST(Placement, DefaultLayoutFollowsTheReleasedStructure) {
  struct R { int64_t L; std::vector<int64_t> layers; bool reproduced; };
  const R released[] = {
      {16, {0, 2, 4, 6, 8, 10, 12, 14}, true},
      {16, {0, 2, 5, 8, 11, 14}, true},
      {16, {0, 5, 10, 14}, false},
      {28, {0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26}, true},
      {28, {0, 3, 7, 10, 14, 18, 22, 26}, false},
      {28, {0, 5, 10, 16, 21, 26}, false},
      {32, {0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30}, true},
      {32, {0, 4, 8, 12, 16, 20, 25, 30}, true},
  };
  for (const R& r : released) {
    const int64_t N = static_cast<int64_t>(r.layers.size());
    SCOPED_TRACE(testing::Message() << "L=" << r.L << " N=" << N);
    std::vector<int64_t> got = default_mla_layout(r.L, N);
    if (r.reproduced) EXPECT_EQ(got, r.layers);
    else EXPECT_NE(got, r.layers);
    // Every layout (ours and released) starts at 0, ends at L-2, and has floor/ceil gaps.
    const int64_t lo = (r.L - 2) / (N - 1), hi = (r.L - 2 + N - 2) / (N - 1);
    for (const std::vector<int64_t>* v : {static_cast<const std::vector<int64_t>*>(&got), &r.layers}) {
      ASSERT_EQ(static_cast<int64_t>(v->size()), N);
      EXPECT_EQ(v->front(), 0);
      EXPECT_EQ(v->back(), r.L - 2);
      for (int64_t i = 1; i < N; ++i) {
        int64_t g = (*v)[i] - (*v)[i - 1];
        EXPECT_TRUE(g == lo || g == hi) << "gap " << g;
      }
    }
  }
}

TEST(Placement, DefaultLayoutEdgeCases) {
  EXPECT_EQ(default_mla_layout(16, 0), std::vector<int64_t>{});
  EXPECT_EQ(default_mla_layout(16, -3), std::vector<int64_t>{});
  EXPECT_EQ(default_mla_layout(16, 1), std::vector<int64_t>{0});
  EXPECT_EQ(default_mla_layout(4, 4), (std::vector<int64_t>{0, 1, 2, 3}));
  EXPECT_EQ(default_mla_layout(4, 9), (std::vector<int64_t>{0, 1, 2, 3}));
  EXPECT_EQ(default_mla_layout(4, 3), (std::vector<int64_t>{0, 1, 2}));
  EXPECT_EQ(default_mla_layout(3, 2), (std::vector<int64_t>{0, 1}));
  EXPECT_EQ(default_mla_layout(2, 2), (std::vector<int64_t>{0, 1}));
  EXPECT_EQ(default_mla_layout(1, 1), std::vector<int64_t>{0});
  EXPECT_EQ(default_mla_layout(5, 2), (std::vector<int64_t>{0, 3}));
  EXPECT_THROW(default_mla_layout(0, 1), Error);
  // Every (L, N): sorted, in range, first 0, floor/ceil gaps.
  for (int64_t L = 1; L <= 40; ++L)
    for (int64_t N = 0; N <= L; ++N) {
      auto v = default_mla_layout(L, N);
      ASSERT_EQ(static_cast<int64_t>(v.size()), N);
      if (N >= 2 && N < L) {
        EXPECT_EQ(v.back(), L - 2);
        const int64_t lo = (L - 2) / (N - 1), hi = (L - 2 + N - 2) / (N - 1);
        for (int64_t i = 1; i < N; ++i) EXPECT_TRUE(v[i] - v[i - 1] == lo || v[i] - v[i - 1] == hi);
      }
    }
}

TEST(Placement, SmartLayoutOnHandMadeScores) {
  // Equal scores: the default layout.
  EXPECT_EQ(smart_layout(std::vector<double>(32, 1.0), 32, 8), default_mla_layout(32, 8));
  EXPECT_EQ(smart_layout(std::vector<double>(16, 0.0), 16, 6), default_mla_layout(16, 6));
  // L=16, N=4: gaps {4, 5}; a sensitive layer 10 selects the released [0, 5, 10, 14].
  std::vector<double> s(16, 0.0);
  s[10] = 1.0;
  EXPECT_EQ(smart_layout(s, 16, 4), (std::vector<int64_t>{0, 5, 10, 14}));
  s[10] = 0.0;
  s[4] = 1.0;
  EXPECT_EQ(smart_layout(s, 16, 4), (std::vector<int64_t>{0, 4, 9, 14}));
  // 3B-6MLA: layer 16 sensitive -> [0, 5, 10, 16, 21, 26].
  std::vector<double> t(28, 0.0);
  t[16] = 2.0;
  EXPECT_EQ(smart_layout(t, 28, 6), (std::vector<int64_t>{0, 5, 10, 16, 21, 26}));
  // The final layer beats L-2: last = L-1 and G = 15/3 = 5 exactly.
  std::vector<double> u(16, 0.0);
  u[15] = 1.0;
  EXPECT_EQ(smart_layout(u, 16, 4), (std::vector<int64_t>{0, 5, 10, 15}));
  // Edge cases and bad input.
  EXPECT_EQ(smart_layout(u, 16, 1), std::vector<int64_t>{0});
  EXPECT_EQ(smart_layout(u, 16, 0), std::vector<int64_t>{});
  EXPECT_THROW(smart_layout(u, 17, 4), Error);
  std::vector<double> nan(16, 0.0);
  nan[3] = std::nan("");
  EXPECT_THROW(smart_layout(nan, 16, 4), Error);
}

TEST(Placement, SmartLayoutIsTheBestFeasibleLayout) {
  // Brute force over all gap sequences on random scores.
  std::mt19937 rng(3);
  std::uniform_real_distribution<double> ud(-1, 1);
  for (int trial = 0; trial < 40; ++trial) {
    const int64_t L = 6 + trial % 14, N = 2 + trial % 5;
    if (N >= L) continue;
    std::vector<double> s(L);
    for (double& v : s) v = ud(rng);
    auto got = smart_layout(s, L, N);
    const int64_t last = s[L - 1] > s[L - 2] ? L - 1 : L - 2;
    const int64_t lo = last / (N - 1), hi = (last + N - 2) / (N - 1);
    double best = -1e300;
    std::vector<int64_t> cur{0};
    std::function<void()> rec = [&] {
      if (static_cast<int64_t>(cur.size()) == N) {
        if (cur.back() != last) return;
        double sum = 0;
        for (int64_t p : cur) sum += s[p];
        best = std::max(best, sum);
        return;
      }
      for (int64_t g : {lo, hi}) {
        cur.push_back(cur.back() + g);
        if (cur.back() <= last) rec();
        cur.pop_back();
        if (lo == hi) break;
      }
    };
    rec();
    double got_sum = 0;
    for (int64_t p : got) got_sum += s[p];
    EXPECT_NEAR(got_sum, best, 1e-12) << "L=" << L << " N=" << N;
    EXPECT_EQ(got.back(), last);
  }
}

// ---- SVD and the energy rule -------------------------------------------------------------------------

TEST(Svd, EnergyRankOnKnownSingularValues) {
  // A permuted diagonal matrix with singular values 7, 5, 3, 2, 1: energies 49, 25, 9, 4, 1 of 88.
  const double diag[5] = {1, 7, 3, 2, 5};
  std::vector<double> a(5 * 6, 0.0);  // 5 x 6
  for (int i = 0; i < 5; ++i) a[i * 6 + (4 - i)] = (i % 2 ? -1 : 1) * diag[i];
  Svd s = thin_svd(a, 5, 6, "test");
  ASSERT_EQ(s.k, 5);
  const double want[5] = {7, 5, 3, 2, 1};
  for (int i = 0; i < 5; ++i) EXPECT_NEAR(s.S[i], want[i], 1e-12);
  // cumulative ratios: .557 .841 .943 .989 1
  EXPECT_EQ(energy_rank(s.S, 0.5, 1), 1);  // none qualifies -> at least 1
  EXPECT_EQ(energy_rank(s.S, 0.6, 1), 1);
  EXPECT_EQ(energy_rank(s.S, 0.85, 1), 2);
  EXPECT_EQ(energy_rank(s.S, 0.95, 1), 3);
  EXPECT_EQ(energy_rank(s.S, 1.0, 1), 5);
  EXPECT_EQ(energy_rank(s.S, 0.85, 2), 2);
  EXPECT_EQ(energy_rank(s.S, 0.95, 2), 4);  // 3 rounded up
  EXPECT_EQ(energy_rank(s.S, 1.0, 2), 5);   // 6 capped at the matrix rank
  EXPECT_EQ(energy_rank(s.S, 0.5, 8), 5);   // 8 capped
  EXPECT_THROW(energy_rank(s.S, 0.0, 8), Error);
  EXPECT_THROW(energy_rank(s.S, 1.5, 8), Error);
  // U S Vt reproduces A.
  for (int i = 0; i < 5; ++i)
    for (int j = 0; j < 6; ++j) {
      double acc = 0;
      for (int p = 0; p < 5; ++p) acc += s.U[i * 5 + p] * s.S[p] * s.Vt[p * 6 + j];
      EXPECT_NEAR(acc, a[i * 6 + j], 1e-12);
    }
}

// ---- MLA init --------------------------------------------------------------------------------------

TEST(MlaInit, MatchesTorchUpToSign) {
  const json variants = json::parse(test::read_file(test::fixture("compose/variants.json")));
  SafetensorsFile products(test::fixture("compose/products.safetensors"));
  const AttentionWeights a = fixture_attention();
  const LlamaConfig cfg = small_config();
  for (auto it = variants.begin(); it != variants.end(); ++it) {
    const std::string name = it.key();
    const json& v = it.value();
    SCOPED_TRACE(name);
    MlaInitOptions io;
    int64_t q_rank = v["q_rank"], kv_rank = v["kv_rank"];
    if (!v["q_energy"].is_null()) io.q_energy = v["q_energy"].get<double>();
    if (!v["kv_energy"].is_null()) io.kv_energy = v["kv_energy"].get<double>();
    MlaDims d = small_dims(v["nope"], v["rope"], io.q_energy > 0 ? 1 : q_rank, io.kv_energy > 0 ? 1 : kv_rank,
                           v["full_kv_head"]);
    MlaInit init = init_mla_from_attention(a, cfg, d, io, name);
    EXPECT_EQ(init.dims.q_rank, q_rank);
    EXPECT_EQ(init.dims.kv_rank, kv_rank);
    const MlaWeights& w = init.weights;
    const int64_t dq = d.q_head_dim(), H = 32, kvrows = d.kv_heads * (d.nope_dim + d.v_dim);
    ASSERT_EQ(w.q_a.shape, (std::vector<int64_t>{q_rank, H}));
    ASSERT_EQ(w.q_b.shape, (std::vector<int64_t>{4 * dq, q_rank}));
    ASSERT_EQ(w.kv_a.shape, (std::vector<int64_t>{kv_rank + d.rope_dim, H}));
    ASSERT_EQ(w.kv_b.shape, (std::vector<int64_t>{kvrows, kv_rank}));
    ASSERT_EQ(w.out_proj.shape, (std::vector<int64_t>{H, 32}));

    Tensor q_ref = products.load(name + ".q", {4 * dq, H});
    Tensor kv_ref = products.load(name + ".kv", {kvrows, H});
    Tensor kpe_ref = products.load(name + ".kpe", {d.rope_dim, H});
    auto q = matmul(w.q_b.ptr(), w.q_a.ptr(), 4 * dq, q_rank, H);
    auto kv = matmul(w.kv_b.ptr(), w.kv_a.ptr(), kvrows, kv_rank, H);  // latent rows only: first kv_rank of kv_a
    std::vector<double> kpe(w.kv_a.data.begin() + kv_rank * H, w.kv_a.data.end());
    EXPECT_LT(rel_diff(q, q_ref.ptr(), q.size()), 1e-4);
    EXPECT_LT(rel_diff(kv, kv_ref.ptr(), kv.size()), 1e-4);
    EXPECT_LT(rel_diff(kpe, kpe_ref.ptr(), kpe.size()), 1e-6);
    EXPECT_TRUE(same(w.out_proj, a.wo));
  }
}

TEST(MlaInit, FullRankReproducesTheTeacher) {
  const AttentionWeights a = fixture_attention();
  const LlamaConfig cfg = small_config();
  const int64_t H = 32, hd = 8;
  // nope + rope = hd and full ranks: q_b q_a == W_q; kv_b kv_a rows == [W_k nope rows; W_v] per head.
  for (bool full_kv : {false, true}) {
    SCOPED_TRACE(full_kv ? "full kv head" : "gqa");
    MlaDims d = small_dims(2, 6, 32, 32, full_kv);
    MlaInit init = init_mla_from_attention(a, cfg, d, {}, "test");
    auto q = matmul(init.weights.q_b.ptr(), init.weights.q_a.ptr(), 32, 32, H);
    EXPECT_LT(rel_diff(q, a.wq.ptr(), q.size()), 1e-5);
    const int64_t kvh = d.kv_heads, per = d.nope_dim + d.v_dim, group = kvh / 2;
    auto kv = matmul(init.weights.kv_b.ptr(), init.weights.kv_a.ptr(), kvh * per, 32, H);
    std::vector<float> want;
    for (int64_t g = 0; g < kvh; ++g) {
      const int64_t src = g / group;  // the teacher kv head (repeat-interleave)
      for (int64_t j = 0; j < d.nope_dim; ++j)
        want.insert(want.end(), a.wk.ptr() + (src * hd + j) * H, a.wk.ptr() + (src * hd + j + 1) * H);
      want.insert(want.end(), a.wv.ptr() + src * hd * H, a.wv.ptr() + (src + 1) * hd * H);
    }
    EXPECT_LT(rel_diff(kv, want.data(), want.size()), 1e-5);
    // Rope-key rows: the last 6 rows of the head-averaged key.
    for (int64_t j = 0; j < 6; ++j)
      for (int64_t c = 0; c < H; ++c) {
        double avg = 0.5 * (a.wk.data[(0 * hd + 2 + j) * H + c] + a.wk.data[(1 * hd + 2 + j) * H + c]);
        EXPECT_NEAR(init.weights.kv_a.data[(32 + j) * H + c], avg, 1e-6);
      }
  }
  // q_rank 0: q_proj = W_q's nope rows (first) and rope rows (last) of each head.
  MlaDims d = small_dims(2, 4, 0, 8, false);
  MlaInit init = init_mla_from_attention(a, cfg, d, {}, "test");
  EXPECT_TRUE(init.weights.q_a.empty());
  ASSERT_EQ(init.weights.q_proj.shape, (std::vector<int64_t>{4 * 6, H}));
  for (int64_t h = 0; h < 4; ++h)
    for (int64_t j = 0; j < 6; ++j) {
      const int64_t src = h * hd + (j < 2 ? j : hd - 4 + (j - 2));
      for (int64_t c = 0; c < H; ++c) EXPECT_EQ(init.weights.q_proj.data[(h * 6 + j) * H + c], a.wq.data[src * H + c]);
    }
}

TEST(MlaInit, RejectsImpossibleShapes) {
  const AttentionWeights a = fixture_attention();
  const LlamaConfig cfg = small_config();
  expect_error([&] { init_mla_from_attention(a, cfg, small_dims(4, 6, 16, 8, false), {}, "L3"); },
               "L3: nope dim 4 + rope dim 6 must fit the teacher's head dim 8");
  expect_error([&] { init_mla_from_attention(a, cfg, small_dims(4, 3, 16, 8, false), {}, "L3"); },
               "rope dim must be positive and even");
  expect_error([&] { init_mla_from_attention(a, cfg, small_dims(4, 4, 33, 8, false), {}, "L3"); },
               "q rank 33 exceeds what W_q [32, 32] allows (at most 32)");
  expect_error([&] { init_mla_from_attention(a, cfg, small_dims(4, 4, 16, 40, false), {}, "L3"); },
               "kv rank 40 exceeds");
  MlaDims d = small_dims(4, 4, 16, 8, false);
  d.v_dim = 4;
  expect_error([&] { init_mla_from_attention(a, cfg, d, {}, "L3"); }, "v dim must equal the teacher's head dim 8");
  d = small_dims(4, 4, 16, 8, false);
  d.kv_heads = 3;
  expect_error([&] { init_mla_from_attention(a, cfg, d, {}, "L3"); }, "MLA kv heads must be the teacher's 2");
  AttentionWeights bad = a;
  bad.wk = Tensor({8, 32});
  expect_error([&] { init_mla_from_attention(bad, cfg, small_dims(4, 4, 16, 8, false), {}, "L3"); },
               "teacher k_proj has shape [8, 32], expected [16, 32]");
}

// ---- Mamba2 init -------------------------------------------------------------------------------------

TEST(Mamba2Init, CopiesAttentionAndDrawsTheRestSeeded) {
  const AttentionWeights a = fixture_attention();
  const LlamaConfig cfg = small_config();
  Mamba2Dims d;
  d.hidden = 32, d.d_inner = 32, d.d_xb = 16, d.d_state = 8, d.head_dim = 8, d.n_heads = 4;
  Mamba2Weights w = init_mamba2_from_attention(a, cfg, d, 42, 3, "test");
  const int64_t H = 32;
  ASSERT_EQ(w.in_proj.shape, (std::vector<int64_t>{2 * 32 + 2 * 16 + 4, H}));
  auto rows_equal = [&](int64_t r0, const Tensor& t) {
    return std::equal(t.data.begin(), t.data.end(), w.in_proj.data.begin() + r0 * H);
  };
  EXPECT_TRUE(rows_equal(32, a.wv));       // x
  EXPECT_TRUE(rows_equal(32 + 16, a.wk));  // B
  EXPECT_TRUE(rows_equal(32 + 32, a.wq));  // C
  EXPECT_TRUE(same(w.out_proj, a.wo));
  const double bound = 1.0 / std::sqrt(32.0);
  for (int64_t i = 0; i < 32 * H; ++i) EXPECT_LE(std::fabs(w.in_proj.data[i]), bound);  // z
  for (int64_t i = 96 * H; i < 100 * H; ++i) EXPECT_LE(std::fabs(w.in_proj.data[i]), bound);  // dt
  ASSERT_EQ(w.conv_w.shape, (std::vector<int64_t>{64, 4}));
  ASSERT_EQ(w.conv_b.shape, (std::vector<int64_t>{64}));
  for (float v : w.conv_w.data) EXPECT_LE(std::fabs(v), 0.5f);
  for (float v : w.conv_b.data) EXPECT_LE(std::fabs(v), 0.5f);
  for (float v : w.dt_bias.data) {
    double dt = std::log1p(std::exp(static_cast<double>(v)));  // softplus
    EXPECT_GE(dt, 1e-3 * (1 - 1e-5));
    EXPECT_LE(dt, 1e-1 * (1 + 1e-5));
  }
  for (float v : w.A_log.data) {
    EXPECT_GE(v, 0.0f);
    EXPECT_LE(v, std::log(16.0f) + 1e-6f);
  }
  for (float v : w.D.data) EXPECT_EQ(v, 1.0f);
  for (float v : w.norm.data) EXPECT_EQ(v, 1.0f);
  // Deterministic per (seed, layer); different seeds or layers differ.
  Mamba2Weights again = init_mamba2_from_attention(a, cfg, d, 42, 3, "test");
  EXPECT_TRUE(same(again.in_proj, w.in_proj) && same(again.conv_w, w.conv_w) && same(again.conv_b, w.conv_b) &&
              same(again.dt_bias, w.dt_bias) && same(again.A_log, w.A_log));
  EXPECT_FALSE(same(init_mamba2_from_attention(a, cfg, d, 43, 3, "test").conv_w, w.conv_w));
  EXPECT_FALSE(same(init_mamba2_from_attention(a, cfg, d, 42, 4, "test").conv_w, w.conv_w));
  // The z rows spread over the whole range (not a constant).
  double mn = 1, mx = -1;
  for (int64_t i = 0; i < 32 * H; ++i) mn = std::min<double>(mn, w.in_proj.data[i]), mx = std::max<double>(mx, w.in_proj.data[i]);
  EXPECT_LT(mn, -0.8 * bound);
  EXPECT_GT(mx, 0.8 * bound);
  d.d_state = 4;
  expect_error([&] { init_mamba2_from_attention(a, cfg, d, 42, 3, "L1"); }, "L1: Mamba2 shape");
}

// ---- compose_hybrid + save_hybrid ----------------------------------------------------------------------

TEST(Compose, SmallTeacherLayoutRanksAndCounts) {
  Quiet q;
  Model t = random_teacher(6, false);
  ComposeOptions o;
  o.mla_layers = std::vector<int64_t>{4, 0};
  o.q_rank = 16;
  o.kv_rank = 8;
  o.seed = 5;
  Model m = compose_hybrid(t, o);
  ASSERT_TRUE(m.is_hybrid);
  EXPECT_EQ(m.hybrid.mla_layers, (std::vector<int64_t>{0, 4}));
  for (int64_t i = 0; i < 6; ++i) {
    const Layer& l = m.layers[i];
    EXPECT_EQ(l.kind, (i == 0 || i == 4) ? LayerKind::Mla : LayerKind::Mamba2) << i;
    EXPECT_TRUE(same(l.mlp.gate, t.layers[i].mlp.gate) && same(l.mlp.down, t.layers[i].mlp.down) &&
                same(l.input_norm, t.layers[i].input_norm) && same(l.post_norm, t.layers[i].post_norm));
  }
  EXPECT_TRUE(same(m.embed, t.embed) && same(m.lm_head, t.lm_head) && same(m.norm, t.norm));
  // Defaults: rope = nope = hd/2, v = hd.
  const MlaDims& d = m.layers[0].mla_dims;
  EXPECT_EQ(d.rope_dim, 4);
  EXPECT_EQ(d.nope_dim, 4);
  EXPECT_EQ(d.v_dim, 8);
  EXPECT_EQ(d.q_rank, 16);
  EXPECT_EQ(d.kv_rank, 8);
  EXPECT_EQ(d.kv_heads, 2);
  EXPECT_EQ(m.mamba_dims.d_inner, 32);
  EXPECT_EQ(m.mamba_dims.d_xb, 16);
  EXPECT_EQ(m.mamba_dims.n_heads, 4);
  // Plain-rope teacher: YaRN factor 1.
  EXPECT_EQ(m.hybrid.mla_rope.factor, 1.0);
  EXPECT_EQ(m.hybrid.rope_theta, 10000.0);
  EXPECT_EQ(m.layers[0].mla_rope.inv_freq.size(), 2u);
  // The tensors' count equals the config-only count.
  EXPECT_EQ(m.parameter_count(), hybrid_parameter_count(m.config, m.hybrid));
  EXPECT_EQ(hybrid_kv_elements_per_token(m.config, m.hybrid), 2 * (8 + 4));
  // The MLA layer is the SVD init of the teacher's layer (kv latent path == truncated [W_k; W_v]).
  MlaInit direct = init_mla_from_attention(t.layers[4].attn, t.config, d, {}, "x");
  EXPECT_TRUE(same(direct.weights.kv_b, m.layers[4].mla.kv_b) && same(direct.weights.q_a, m.layers[4].mla.q_a));
  // Seeded: the same options give the same model.
  Model m2 = compose_hybrid(t, o);
  EXPECT_TRUE(same(m2.layers[1].mamba.conv_w, m.layers[1].mamba.conv_w));
  EXPECT_FALSE(same(m.layers[1].mamba.conv_w, m.layers[2].mamba.conv_w));
}

TEST(Compose, LayoutModesAndDefaults) {
  Quiet q;
  Model t = random_teacher(6, true);
  ComposeOptions o;
  Model m = compose_hybrid(t, o);  // default: half the layers, default layout
  EXPECT_EQ(m.hybrid.mla_layers, default_mla_layout(6, 3));
  EXPECT_TRUE(m.lm_head.empty());
  EXPECT_TRUE(m.config.tie_word_embeddings);
  // Default ranks: q = nh*hd/2 = 16, kv = 2*nkv*hd/8 = 4 -> rounded up to 8.
  EXPECT_EQ(m.hybrid.q_lora_rank, 16);
  EXPECT_EQ(m.hybrid.kv_lora_rank, 8);
  o.all_mla = true;
  m = compose_hybrid(t, o);
  EXPECT_EQ(m.hybrid.mla_layers.size(), 6u);
  o.all_mla = false;
  o.all_mamba = true;
  m = compose_hybrid(t, o);
  EXPECT_TRUE(m.hybrid.mla_layers.empty());
  EXPECT_EQ(m.parameter_count(), hybrid_parameter_count(m.config, m.hybrid));
  o.all_mamba = false;
  o.mla_count = 2;
  m = compose_hybrid(t, o);
  EXPECT_EQ(m.hybrid.mla_layers, (std::vector<int64_t>{0, 4}));
  // Full q_proj, full kv heads, explicit rope/nope split.
  o.q_rank = 0;
  o.full_kv_head = true;
  o.rope_dim = 6;
  m = compose_hybrid(t, o);
  EXPECT_EQ(m.layers[0].mla_dims.q_rank, 0);
  EXPECT_EQ(m.layers[0].mla_dims.kv_heads, 4);
  EXPECT_EQ(m.layers[0].mla_dims.nope_dim, 2);
  EXPECT_EQ(m.layers[0].mla.q_proj.shape, (std::vector<int64_t>{32, 32}));
  EXPECT_EQ(m.parameter_count(), hybrid_parameter_count(m.config, m.hybrid));
}

TEST(Compose, EnergyRanksAreStoredPerLayer) {
  Quiet q;
  Model t = random_teacher(4, false);
  ComposeOptions o;
  o.all_mla = true;
  o.q_energy = 0.5;
  o.kv_energy = 0.6;
  Model m = compose_hybrid(t, o);
  ASSERT_EQ(m.hybrid.layer_ranks.size(), 4u);
  for (int64_t i = 0; i < 4; ++i) {
    const MlaDims& d = m.layers[i].mla_dims;
    EXPECT_EQ(m.hybrid.layer_ranks.at(i), std::make_pair(d.q_rank, d.kv_rank));
    EXPECT_EQ(d.q_rank % 8, 0);
    EXPECT_EQ(d.kv_rank % 8, 0);
    EXPECT_EQ(m.hybrid.mla_dims(m.config, i).kv_rank, d.kv_rank);
  }
  EXPECT_EQ(m.parameter_count(), hybrid_parameter_count(m.config, m.hybrid));
}

TEST(Compose, RejectsImpossibleRequests) {
  Quiet q;
  Model t = random_teacher(4, false);
  auto run = [&](std::function<void(ComposeOptions&)> set) {
    return [&t, set] {
      ComposeOptions o;
      set(o);
      compose_hybrid(t, o);
    };
  };
  expect_error(run([](ComposeOptions& o) { o.mla_layers = std::vector<int64_t>{0, 4}; }),
               "MLA layer 4 (entry 1 of the list) is out of range [0, 4)");
  expect_error(run([](ComposeOptions& o) { o.mla_layers = std::vector<int64_t>{1, 1}; }), "MLA layer 1 is listed twice");
  expect_error(run([](ComposeOptions& o) { o.mla_count = 5; }), "MLA layer count 5 exceeds the teacher's 4 layers");
  expect_error(run([](ComposeOptions& o) { o.all_mla = o.all_mamba = true; }), "give at most one");
  expect_error(run([](ComposeOptions& o) { o.kv_rank = 25; }), "kv rank 25 is larger than the key/value matrices allow");
  expect_error(run([](ComposeOptions& o) { o.q_rank = 40; }), "q rank 40 is larger than the query matrices allow");
  expect_error(run([](ComposeOptions& o) { o.rope_dim = 5; }), "rope dim must be positive and even");
  expect_error(run([](ComposeOptions& o) { o.rope_dim = 6, o.nope_dim = 4; }),
               "rope dim 6 + nope dim 4 must fit the teacher's head dim 8");
  expect_error(run([](ComposeOptions& o) { o.v_dim = 4; }), "v dim must equal the teacher's head dim 8");
  expect_error(run([](ComposeOptions& o) { o.q_rank = 8, o.q_energy = 0.9; }), "not both");
  expect_error(run([](ComposeOptions& o) { o.kv_energy = 1.5; }), "energy ratios must be in (0, 1]");
  Model h = compose_hybrid(t, ComposeOptions{});
  expect_error([&] { compose_hybrid(h, ComposeOptions{}); }, "already a hybrid");
}

TEST(Compose, YarnFromTheTeacher) {
  Quiet q;
  Model t = random_teacher(2, false);
  t.config.rope_scaling.type = RopeScaling::Type::Llama3;
  t.config.rope_scaling.factor = 32.0;
  t.config.rope_scaling.original_max_position_embeddings = 8192;
  t.config.rope_theta = 500000.0;
  Model m = compose_hybrid(t, ComposeOptions{});
  EXPECT_EQ(m.hybrid.mla_rope.type, RopeScaling::Type::Yarn);
  EXPECT_EQ(m.hybrid.mla_rope.factor, 32.0);
  EXPECT_EQ(m.hybrid.mla_rope.original_max_position_embeddings, 8192);
  EXPECT_EQ(m.hybrid.rope_theta, 500000.0);
  ComposeOptions o;
  o.yarn_factor = 4.0;
  o.yarn_original_max = 1024;
  m = compose_hybrid(t, o);
  EXPECT_EQ(m.hybrid.mla_rope.factor, 4.0);
  EXPECT_EQ(m.hybrid.mla_rope.original_max_position_embeddings, 1024);
}

TEST(SaveHybrid, WritesAmdLayout) {
  Quiet q;
  Model t = random_teacher(4, false);
  ComposeOptions o;
  o.mla_layers = std::vector<int64_t>{0, 2};
  o.q_rank = 16;
  o.kv_rank = 8;
  Model m = compose_hybrid(t, o);
  const std::string root = test::temp_dir(), dir = root + "/out";
  save_hybrid(m, nullptr, dir, DType::F32);
  // Nothing but the output directory is left next to it.
  int entries = 0;
  for (auto& e : fs::directory_iterator(root)) {
    ++entries;
    EXPECT_EQ(e.path().filename(), "out");
  }
  EXPECT_EQ(entries, 1);

  LlamaConfig base = load_hf_llama_config(dir + "/config.json");
  EXPECT_EQ(base.hidden_size, 32);
  EXPECT_EQ(base.num_kv_heads, 2);
  EXPECT_FALSE(base.tie_word_embeddings);
  json cj = json::parse(test::read_file(dir + "/config.json"));
  EXPECT_EQ(cj["architectures"][0], "LlamaForCausalLM");
  EXPECT_EQ(cj["torch_dtype"], "float32");
  EXPECT_EQ(cj["eos_token_id"], 2);
  HybridConfig h = load_hybrid_config(dir + "/hybrid_config.json", base);
  EXPECT_EQ(h.generation, "current");
  EXPECT_EQ(h.mla_layers, m.hybrid.mla_layers);
  EXPECT_EQ(hybrid_parameter_count(base, h), m.parameter_count());

  SafetensorsDir st(dir);
  EXPECT_EQ(st.files().size(), 1u);
  auto shape = [&](const std::string& n) { return st.find(n) ? st.find(n)->shape : std::vector<int64_t>{-1}; };
  EXPECT_EQ(shape("model.embed_tokens.weight"), (std::vector<int64_t>{64, 32}));
  EXPECT_EQ(shape("lm_head.weight"), (std::vector<int64_t>{64, 32}));
  EXPECT_EQ(shape("model.norm.weight"), (std::vector<int64_t>{32}));
  EXPECT_EQ(shape("model.layers.0.mla.q_a_proj.weight"), (std::vector<int64_t>{16, 32}));
  EXPECT_EQ(shape("model.layers.0.mla.q_b_proj.weight"), (std::vector<int64_t>{32, 16}));
  EXPECT_EQ(shape("model.layers.0.mla.kv_a_proj_with_mqa.weight"), (std::vector<int64_t>{12, 32}));
  EXPECT_EQ(shape("model.layers.0.mla.kv_b_proj.weight"), (std::vector<int64_t>{24, 8}));
  EXPECT_EQ(shape("model.layers.0.mla.out_proj.weight"), (std::vector<int64_t>{32, 32}));
  EXPECT_EQ(shape("model.layers.1.mamba.in_proj.weight"), (std::vector<int64_t>{100, 32}));
  EXPECT_EQ(shape("model.layers.1.mamba.conv1d.weight"), (std::vector<int64_t>{64, 1, 4}));
  EXPECT_EQ(shape("model.layers.1.mamba.conv1d.bias"), (std::vector<int64_t>{64}));
  EXPECT_EQ(shape("model.layers.1.mamba.dt_bias"), (std::vector<int64_t>{4}));
  EXPECT_EQ(shape("model.layers.1.mamba.A_log"), (std::vector<int64_t>{4}));
  EXPECT_EQ(shape("model.layers.1.mamba.D"), (std::vector<int64_t>{4}));
  EXPECT_EQ(shape("model.layers.1.mamba.norm.weight"), (std::vector<int64_t>{32}));
  EXPECT_EQ(shape("model.layers.3.mlp.down_proj.weight"), (std::vector<int64_t>{32, 48}));
  EXPECT_EQ(shape("model.layers.3.post_attention_layernorm.weight"), (std::vector<int64_t>{32}));
  EXPECT_EQ(st.find("model.layers.1.mla.q_a_proj.weight"), nullptr);
  EXPECT_EQ(st.find("model.layers.0.self_attn.q_proj.weight"), nullptr);
  // Values survive (fp32).
  Tensor conv = st.load("model.layers.1.mamba.conv1d.weight", {64, 1, 4});
  EXPECT_EQ(conv.data, m.layers[1].mamba.conv_w.data);
  Tensor kvb = st.load("model.layers.2.mla.kv_b_proj.weight", {24, 8});
  EXPECT_EQ(kvb.data, m.layers[2].mla.kv_b.data);
  int64_t total = 0;
  for (const std::string& n : st.names()) total += Tensor::count(st.find(n)->shape);
  EXPECT_EQ(total, m.parameter_count());

  // Overwriting an existing output works (BF16 now); a stray shard is refused; bad dtype refused.
  save_hybrid(m, nullptr, dir, DType::BF16);
  EXPECT_EQ(SafetensorsDir(dir).find("model.embed_tokens.weight")->dtype, DType::BF16);
  EXPECT_EQ(json::parse(test::read_file(dir + "/config.json"))["torch_dtype"], "bfloat16");
  test::write_file(dir + "/model-00002-of-00002.safetensors", "x");
  expect_error([&] { save_hybrid(m, nullptr, dir, DType::F32); }, "already holds model-00002-of-00002.safetensors");
  expect_error([&] { save_hybrid(m, nullptr, root + "/other", DType::Q4_0); }, "F32, BF16 or F16");
  // A model whose layers contradict its config is refused before anything is written.
  Model bad = m;
  bad.layers[1].kind = LayerKind::Mla;
  expect_error([&] { save_hybrid(bad, nullptr, root + "/bad", DType::F32); }, "layer 1 is mla");
  EXPECT_FALSE(fs::exists(root + "/bad"));
  EXPECT_FALSE(fs::exists(root + "/other"));
  // Tied head: no lm_head.weight, tie_word_embeddings true.
  Model tied = compose_hybrid(random_teacher(2, true), ComposeOptions{});
  save_hybrid(tied, nullptr, root + "/tied", DType::F32);
  EXPECT_EQ(SafetensorsDir(root + "/tied").find("lm_head.weight"), nullptr);
  EXPECT_TRUE(load_hf_llama_config(root + "/tied/config.json").tie_word_embeddings);
}

TEST(Compose, Stories260KEndToEnd) {
  ZEBRA_REQUIRE_ASSET(dir, "models/stories260K");
  Quiet q;
  LoadOptions lo;
  lo.tokenizer_path = dir + "/tok512.bin";
  LoadedModel t = load_model(dir + "/stories260K.bin", lo);
  const LlamaConfig& c = t.model->config;
  ComposeOptions o;
  o.seed = 1;
  Model m = compose_hybrid(*t.model, o);
  const int64_t H = c.hidden_size, hd = c.head_dim, nh = c.num_heads, nkv = c.num_kv_heads;
  EXPECT_EQ(m.hybrid.mla_layers, default_mla_layout(c.num_layers, std::max<int64_t>(1, c.num_layers / 2)));
  // Hand count of one MLA and one Mamba2 mixer from the default shapes.
  const int64_t q_rank = std::min((nh * hd / 2 + 7) / 8 * 8, std::min(nh * hd, H));
  const int64_t kv_rank = std::min((2 * nkv * hd / 8 + 7) / 8 * 8, std::min(2 * nkv * hd, H));
  const int64_t rope = hd / 2 + (hd / 2) % 2, nope = hd - rope;
  const int64_t mla = q_rank * H + nh * hd * q_rank + (kv_rank + rope) * H + nkv * (nope + hd) * kv_rank + H * nh * hd;
  const int64_t di = nh * hd, dxb = nkv * hd;
  const int64_t mamba = (2 * di + 2 * dxb + nh) * H + (di + 2 * dxb) * 5 + 3 * nh + di + H * di;
  const int64_t n_mla = static_cast<int64_t>(m.hybrid.mla_layers.size());
  int64_t want = t.model->parameter_count();
  for (const Layer& l : t.model->layers)
    want -= l.attn.wq.numel() + l.attn.wk.numel() + l.attn.wv.numel() + l.attn.wo.numel();
  want += n_mla * mla + (c.num_layers - n_mla) * mamba;
  EXPECT_EQ(m.parameter_count(), want);
  EXPECT_EQ(hybrid_parameter_count(m.config, m.hybrid), want);
  const std::string out = test::temp_dir() + "/stories-hybrid";
  save_hybrid(m, t.tokenizer.get(), out, DType::F32);  // SentencePiece tokenizer: skipped with a warning
  SafetensorsDir st(out);
  int64_t total = 0;
  for (const std::string& n : st.names()) total += Tensor::count(st.find(n)->shape);
  EXPECT_EQ(total, want);
  EXPECT_EQ(load_hybrid_config(out + "/hybrid_config.json", load_hf_llama_config(out + "/config.json")).mla_layers,
            m.hybrid.mla_layers);
}

TEST(ComposeCli, Stories260K) {
  ZEBRA_REQUIRE_ASSET(dir, "models/stories260K");
  const std::string out = test::temp_dir() + "/h";
  const std::string teacher = " compose --teacher " + dir + "/stories260K.bin -o " + out;
  std::string so, se;
  ASSERT_EQ(test::run_command(test::zebra_binary() + teacher + " --mla-layers 0,3 --kv-rank 16 --dtype f32", &so, &se),
            0)
      << se;
  EXPECT_NE(so.find("MLA layers:   [0,3]"), std::string::npos) << so;
  EXPECT_NE(so.find("q 32, kv 16"), std::string::npos) << so;
  EXPECT_NE(so.find("KV cache:     12.50% of the teacher's per token (40 vs 320 elements)"), std::string::npos) << so;
  EXPECT_TRUE(test::file_exists(out + "/model.safetensors"));
  EXPECT_TRUE(test::file_exists(out + "/hybrid_config.json"));
  EXPECT_NE(test::run_command(test::zebra_binary() + teacher + "2 --mla-layers 0,x", &so, &se), 0);
  EXPECT_NE(se.find("--mla-layers: 'x' is not a non-negative integer"), std::string::npos) << se;
  EXPECT_NE(test::run_command(test::zebra_binary() + teacher + "2 --rope-dim 3", &so, &se), 0);
  EXPECT_NE(se.find("rope dim must be positive and even"), std::string::npos) << se;
  EXPECT_NE(test::run_command(test::zebra_binary() + teacher + "2 --dtype q4", &so, &se), 0);
  EXPECT_NE(se.find("--dtype must be f32, bf16 or f16"), std::string::npos) << se;
  EXPECT_FALSE(test::file_exists(out + "2"));
}
