// Mamba2 layer: chunked SSD scan == recurrence, prefill + decode == full pass, interleaved batches ==
// separate runs, position checks, the linear-attention identity of the Llama-initialised layer (spec §2.2),
// and golden outputs of the PyTorch reference (scripts/reference/make_mamba2_fixtures.py).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <iostream>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "core/error.h"
#include "io/safetensors.h"
#include "kernels/cpu/ops.h"
#include "model/mamba2.h"
#include "support.h"

namespace zebra {
namespace {

Mamba2Dims make_dims(int64_t hidden, int64_t d_inner, int64_t d_xb, int64_t d_state) {
  Mamba2Dims d;
  d.hidden = hidden;
  d.d_inner = d_inner;
  d.d_xb = d_xb;
  d.d_state = d_state;
  d.n_heads = d_inner / d_state;
  d.head_dim = d_state;
  d.d_conv = 4;
  return d;
}

Tensor uniform(std::vector<int64_t> shape, std::mt19937& rng, float lo, float hi) {
  Tensor t(std::move(shape));
  std::uniform_real_distribution<float> u(lo, hi);
  for (float& v : t.data) v = u(rng);
  return t;
}

// A random layer whose decays and steps make both the carried state and new tokens matter.
Mamba2Weights random_weights(const Mamba2Dims& d, std::mt19937& rng) {
  Mamba2Weights w;
  const float a = 1.0f / std::sqrt(static_cast<float>(d.hidden));
  w.in_proj = uniform({d.in_proj_rows(), d.hidden}, rng, -a, a);
  w.conv_w = uniform({d.conv_dim(), 1, d.d_conv}, rng, -0.5f, 0.5f);
  w.conv_b = uniform({d.conv_dim()}, rng, -0.5f, 0.5f);
  w.dt_bias = uniform({d.n_heads}, rng, -3.0f, 0.0f);
  w.A_log = uniform({d.n_heads}, rng, -0.7f, 1.4f);
  w.D = uniform({d.n_heads}, rng, 0.5f, 1.5f);
  w.norm = uniform({d.d_inner}, rng, 0.5f, 1.5f);
  const float b = 1.0f / std::sqrt(static_cast<float>(d.d_inner));
  w.out_proj = uniform({d.hidden, d.d_inner}, rng, -b, b);
  return w;
}

std::vector<float> randn(int64_t n, std::mt19937& rng) {
  std::normal_distribution<float> g(0.0f, 1.0f);
  std::vector<float> v(n);
  for (float& x : v) x = g(rng);
  return v;
}

Batch seq_batch(int32_t slot, int32_t start, int64_t T) {
  Batch b;
  for (int64_t t = 0; t < T; ++t) b.add(0, slot, start + static_cast<int32_t>(t), true);
  return b;
}

// max |a - b| / max(1e-6, max |b|)
double rel_err(const float* a, const float* b, int64_t n) {
  double err = 0.0, scale = 1e-6;
  for (int64_t i = 0; i < n; ++i) {
    err = std::max(err, std::abs(static_cast<double>(a[i]) - b[i]));
    scale = std::max(scale, std::abs(static_cast<double>(b[i])));
  }
  return err / scale;
}
double rel_err(const std::vector<float>& a, const std::vector<float>& b) {
  EXPECT_EQ(a.size(), b.size());
  return rel_err(a.data(), b.data(), static_cast<int64_t>(std::min(a.size(), b.size())));
}
double max_abs(const float* a, const float* b, int64_t n) {
  double err = 0.0;
  for (int64_t i = 0; i < n; ++i) err = std::max(err, std::abs(static_cast<double>(a[i]) - b[i]));
  return err;
}

TEST(Mamba2, ParameterCountAndStateSizeMatchSpec) {
  // 1B Zebra (spec §1.4, §1.5): Mamba2 mixer 14.76M parameters; §1.6: 131072 + 12288 state elements.
  Mamba2Dims d = make_dims(2048, 2048, 512, 64);
  EXPECT_EQ(d.n_heads, 32);
  EXPECT_EQ(d.parameter_count(), 14763104);
  EXPECT_EQ(d.state_elements(), 143360);
  Mamba2State s;
  s.allocate(3, d);
  EXPECT_EQ(s.bytes(), 3u * 143360u * sizeof(float));
}

TEST(Mamba2, ChunkedScanEqualsRecurrence) {
  std::mt19937 rng(1);
  struct Case {
    Mamba2Dims d;
    const char* what;
  };
  // Small heads with GQA repeat 4, and large heads (64) so the OpenMP path over heads runs at T = 130.
  const Case cases[] = {{make_dims(32, 128, 32, 16), "8 heads of 16, repeat 4"},
                        {make_dims(48, 512, 256, 64), "8 heads of 64, repeat 2"}};
  for (const Case& c : cases) {
    const Mamba2Weights w = random_weights(c.d, rng);
    for (int64_t T : {1, 5, 37, 130}) {
      const std::vector<float> x = randn(T * c.d.hidden, rng);
      const Batch b = seq_batch(0, 0, T);
      Mamba2State ref_state;
      ref_state.allocate(1, c.d);
      std::vector<float> ref(T * c.d.hidden);
      mamba2_forward_sequential(c.d, w, b, x.data(), ref.data(), ref_state);
      for (int64_t chunk : {1, 3, 16, 64}) {
        SCOPED_TRACE(std::string(c.what) + ", T " + std::to_string(T) + ", chunk " + std::to_string(chunk));
        Mamba2State st;
        st.allocate(1, c.d);
        std::vector<float> out(T * c.d.hidden);
        mamba2_forward(c.d, w, b, x.data(), out.data(), st, chunk);
        EXPECT_LT(rel_err(out, ref), 1e-5);
        EXPECT_LT(rel_err(st.ssm, ref_state.ssm), 1e-5);
        EXPECT_EQ(st.conv, ref_state.conv);
        EXPECT_EQ(st.next_pos[0], T);
      }
    }
  }
}

TEST(Mamba2, PrefillThenDecodeStepsEqualsFullPass) {
  std::mt19937 rng(2);
  const Mamba2Dims d = make_dims(40, 96, 48, 16);  // 6 heads, repeat 2
  const Mamba2Weights w = random_weights(d, rng);
  const int64_t T = 45, T0 = 2;  // prefill of 2 (shorter than the conv window), then 43 steps
  const std::vector<float> x = randn(T * d.hidden, rng);

  Mamba2State full_state;
  full_state.allocate(1, d);
  std::vector<float> full(T * d.hidden);
  mamba2_forward(d, w, seq_batch(0, 0, T), x.data(), full.data(), full_state, 16);

  for (int64_t prefill : {T0, int64_t(21)}) {
    SCOPED_TRACE("prefill " + std::to_string(prefill));
    Mamba2State st;
    st.allocate(1, d);
    std::vector<float> out(T * d.hidden);
    mamba2_forward(d, w, seq_batch(0, 0, prefill), x.data(), out.data(), st, 16);
    for (int64_t t = prefill; t < T; ++t)
      mamba2_forward(d, w, seq_batch(0, static_cast<int32_t>(t), 1), x.data() + t * d.hidden,
                     out.data() + t * d.hidden, st, 16);
    EXPECT_LT(rel_err(out, full), 1e-5);
    EXPECT_LT(rel_err(st.ssm, full_state.ssm), 1e-5);
    EXPECT_LT(rel_err(st.conv, full_state.conv), 1e-6);  // in_proj rows: GEMM vs GEMV rounding only
    EXPECT_EQ(st.next_pos[0], T);
  }
}

TEST(Mamba2, InterleavedSequencesEqualSeparateRuns) {
  std::mt19937 rng(3);
  const Mamba2Dims d = make_dims(24, 64, 32, 16);
  const Mamba2Weights w = random_weights(d, rng);
  const std::vector<int64_t> lens = {11, 7, 1};  // slots 0, 1, 2
  const int64_t steps = 3;                      // then 3 decode steps of every slot in one batch each

  // Separate runs: prefill, then single steps, one slot at a time.
  std::vector<std::vector<float>> xs, outs;
  std::vector<Mamba2State> sep(lens.size());
  for (size_t s = 0; s < lens.size(); ++s) {
    const int64_t T = lens[s] + steps;
    xs.push_back(randn(T * d.hidden, rng));
    outs.emplace_back(T * d.hidden);
    sep[s].allocate(1, d);
    mamba2_forward(d, w, seq_batch(0, 0, lens[s]), xs[s].data(), outs[s].data(), sep[s]);
    for (int64_t t = lens[s]; t < T; ++t)
      mamba2_forward(d, w, seq_batch(0, static_cast<int32_t>(t), 1), xs[s].data() + t * d.hidden,
                     outs[s].data() + t * d.hidden, sep[s]);
  }

  // One prefill batch with the three prompts shuffled together (each slot's order kept), then one batch
  // per decode step holding every slot in a rotating order.
  Mamba2State st;
  st.allocate(3, d);
  std::vector<int32_t> order;
  for (size_t s = 0; s < lens.size(); ++s) order.insert(order.end(), lens[s], static_cast<int32_t>(s));
  std::shuffle(order.begin(), order.end(), rng);
  auto run_batch = [&](const std::vector<std::pair<int32_t, int32_t>>& tokens) {  // (slot, position)
    Batch b;
    std::vector<float> x, out(tokens.size() * d.hidden);
    for (auto [s, p] : tokens) {
      b.add(0, s, p, true);
      x.insert(x.end(), xs[s].begin() + p * d.hidden, xs[s].begin() + (p + 1) * d.hidden);
    }
    mamba2_forward(d, w, b, x.data(), out.data(), st, 4);
    for (size_t i = 0; i < tokens.size(); ++i) {
      auto [s, p] = tokens[i];
      SCOPED_TRACE("slot " + std::to_string(s) + " position " + std::to_string(p));
      EXPECT_LT(rel_err(out.data() + i * d.hidden, outs[s].data() + p * d.hidden, d.hidden), 1e-5);
    }
  };
  std::vector<std::pair<int32_t, int32_t>> prefill;
  std::vector<int32_t> next(lens.size(), 0);
  for (int32_t s : order) prefill.push_back({s, next[s]++});
  run_batch(prefill);
  for (int64_t k = 0; k < steps; ++k) {
    std::vector<std::pair<int32_t, int32_t>> step;
    for (size_t j = 0; j < lens.size(); ++j) {
      const int32_t s = static_cast<int32_t>((j + k) % lens.size());
      step.push_back({s, next[s]++});
    }
    run_batch(step);
  }
  for (size_t s = 0; s < lens.size(); ++s) {
    SCOPED_TRACE("slot " + std::to_string(s));
    EXPECT_LT(rel_err(st.ssm_at(s), sep[s].ssm.data(), st.ssm_size), 1e-5);
    EXPECT_LT(rel_err(st.conv_at(s), sep[s].conv.data(), st.conv_dim * st.d_conv), 1e-6);
    EXPECT_EQ(st.next_pos[s], lens[s] + steps);
  }
}

TEST(Mamba2, PositionZeroRestartsASlot) {
  std::mt19937 rng(4);
  const Mamba2Dims d = make_dims(24, 64, 32, 16);
  const Mamba2Weights w = random_weights(d, rng);
  const std::vector<float> x = randn(9 * d.hidden, rng);
  Mamba2State st;
  st.allocate(1, d);
  std::vector<float> first(9 * d.hidden), second(9 * d.hidden);
  mamba2_forward(d, w, seq_batch(0, 0, 9), x.data(), first.data(), st);
  // A new sequence in the same slot, starting at 0 after 9 tokens: no state may leak from the first one.
  mamba2_forward(d, w, seq_batch(0, 0, 9), x.data(), second.data(), st);
  EXPECT_EQ(first, second);
  // Two sequences one after the other in the same slot within one batch.
  Batch b = seq_batch(0, 0, 4);
  for (int32_t p = 0; p < 5; ++p) b.add(0, 0, p, true);
  std::vector<float> x2(x.begin(), x.begin() + 4 * d.hidden), out(9 * d.hidden);
  x2.insert(x2.end(), x.begin(), x.begin() + 5 * d.hidden);
  mamba2_forward(d, w, b, x2.data(), out.data(), st);
  // (tolerance: the GEMMs round rows of batches of other sizes differently)
  EXPECT_LT(rel_err(out.data(), first.data(), 4 * d.hidden), 1e-5);
  EXPECT_LT(rel_err(out.data() + 4 * d.hidden, first.data(), 5 * d.hidden), 1e-5);
  EXPECT_EQ(st.next_pos[0], 5);
}

TEST(Mamba2, PositionGapAndBadSlotThrowAndLeaveStateUntouched) {
  std::mt19937 rng(5);
  const Mamba2Dims d = make_dims(24, 64, 32, 16);
  const Mamba2Weights w = random_weights(d, rng);
  const std::vector<float> x = randn(8 * d.hidden, rng);
  std::vector<float> out(8 * d.hidden);
  Mamba2State st;
  st.allocate(2, d);
  mamba2_forward(d, w, seq_batch(0, 0, 5), x.data(), out.data(), st);
  const Mamba2State before = st;

  auto expect_error = [&](const Batch& b, const std::string& needle) {
    try {
      mamba2_forward(d, w, b, x.data(), out.data(), st);
      ADD_FAILURE() << "no error for " << needle;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
    EXPECT_EQ(st.ssm, before.ssm);
    EXPECT_EQ(st.conv, before.conv);
    EXPECT_EQ(st.next_pos, before.next_pos);
  };
  expect_error(seq_batch(0, 7, 1), "sequence slot 0: Mamba2 state is at position 5, got token at position 7");
  expect_error(seq_batch(0, 4, 1), "sequence slot 0: Mamba2 state is at position 5, got token at position 4");
  expect_error(seq_batch(1, 3, 2), "sequence slot 1: Mamba2 state is at position 0, got token at position 3");
  // A valid token of slot 1 first, then a gap in slot 0 later in the batch: nothing is applied.
  Batch mixed = seq_batch(1, 0, 2);
  mixed.add(0, 0, 5, true);
  mixed.add(0, 0, 7, true);
  expect_error(mixed, "sequence slot 0: Mamba2 state is at position 6, got token at position 7");
  expect_error(seq_batch(2, 0, 1), "sequence slot 2 is out of range");
  expect_error(seq_batch(-1, 0, 1), "sequence slot -1 is out of range");
  Batch short_pos = seq_batch(0, 5, 2);
  short_pos.pos.pop_back();
  expect_error(short_pos, "Mamba2 batch: 2 tokens");
  EXPECT_THROW(mamba2_forward(d, w, seq_batch(0, 5, 1), x.data(), out.data(), st, 0), Error);
}

TEST(Mamba2, WrongShapesThrow) {
  std::mt19937 rng(6);
  const Mamba2Dims d = make_dims(24, 64, 32, 16);
  Mamba2Weights w = random_weights(d, rng);
  const std::vector<float> x = randn(d.hidden, rng);
  std::vector<float> out(d.hidden);
  Mamba2State st;
  st.allocate(1, d);
  Mamba2Weights bad = w;
  bad.out_proj = Tensor({d.hidden, d.d_inner + 1});
  try {
    mamba2_forward(d, bad, seq_batch(0, 0, 1), x.data(), out.data(), st);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("out_proj"), std::string::npos) << e.what();
  }
  Mamba2Dims other = d;
  other.d_xb = 16;  // state allocated for d_xb 32
  Mamba2Weights w2 = random_weights(other, rng);
  EXPECT_THROW(mamba2_forward(other, w2, seq_batch(0, 0, 1), x.data(), out.data(), st), Error);
  Mamba2Dims odd = d;
  odd.d_xb = 24;  // does not divide d_inner
  EXPECT_THROW(mamba2_check(odd, w), Error);
  // The file layout [conv_dim, 1, d_conv] and the flat [conv_dim, d_conv] are both accepted.
  w.conv_w.shape = {d.conv_dim(), d.d_conv};
  EXPECT_NO_THROW(mamba2_check(d, w));
}

// Spec §2.2: a Mamba2 layer initialised from a Llama attention (x <- W_v, B <- W_k, C <- W_q) with decay 1
// (A_log = -inf: A = -0, exp(dt A) = 1), dt = 1 (dt rows of in_proj zero, dt_bias = softplus^-1(1)), D = 0,
// an identity conv (taps [0, 0, 0, 1], zero bias) and no SiLU is unnormalised causal linear attention of
// the teacher's Q/K/V without RoPE:  y_t^h = Σ_{s<=t} (q_t^h · k_s^g(h)) v_s^g(h),  g(h) = h / (nh / nkv).
TEST(Mamba2, LlamaInitialisedCoreIsCausalLinearAttention) {
  std::mt19937 rng(7);
  const int64_t H = 32, nh = 4, nkv = 2, hd = 8, T = 23;
  const Mamba2Dims d = make_dims(H, nh * hd, nkv * hd, hd);
  ASSERT_EQ(d.n_heads, nh);
  const Tensor Wq = uniform({nh * hd, H}, rng, -0.3f, 0.3f);
  const Tensor Wk = uniform({nkv * hd, H}, rng, -0.3f, 0.3f);
  const Tensor Wv = uniform({nkv * hd, H}, rng, -0.3f, 0.3f);

  Mamba2Weights w = random_weights(d, rng);  // z rows and out_proj stay random: the core does not read them
  // in_proj rows [z: d_inner][x: d_xb][B: d_xb][C: d_inner][dt: nh]
  std::copy(Wv.data.begin(), Wv.data.end(), w.in_proj.data.begin() + d.d_inner * H);
  std::copy(Wk.data.begin(), Wk.data.end(), w.in_proj.data.begin() + (d.d_inner + d.d_xb) * H);
  std::copy(Wq.data.begin(), Wq.data.end(), w.in_proj.data.begin() + (d.d_inner + 2 * d.d_xb) * H);
  std::fill(w.in_proj.data.begin() + (2 * d.d_inner + 2 * d.d_xb) * H, w.in_proj.data.end(), 0.0f);
  std::fill(w.dt_bias.data.begin(), w.dt_bias.data.end(), static_cast<float>(std::log(std::expm1(1.0))));
  std::fill(w.A_log.data.begin(), w.A_log.data.end(), -std::numeric_limits<float>::infinity());
  std::fill(w.D.data.begin(), w.D.data.end(), 0.0f);
  for (int64_t c = 0; c < d.conv_dim(); ++c)
    for (int64_t k = 0; k < d.d_conv; ++k) w.conv_w.data[c * d.d_conv + k] = k == d.d_conv - 1 ? 1.0f : 0.0f;
  std::fill(w.conv_b.data.begin(), w.conv_b.data.end(), 0.0f);

  const std::vector<float> u = randn(T * H, rng);
  // q [T, nh*hd], k/v [T, nkv*hd] in double, straight from the teacher's weights.
  auto project = [&](const Tensor& W) {
    const int64_t rows = W.dim(0);
    std::vector<double> r(T * rows);
    for (int64_t t = 0; t < T; ++t)
      for (int64_t o = 0; o < rows; ++o) {
        double acc = 0.0;
        for (int64_t i = 0; i < H; ++i) acc += static_cast<double>(u[t * H + i]) * W.data[o * H + i];
        r[t * rows + o] = acc;
      }
    return r;
  };
  const std::vector<double> q = project(Wq), k = project(Wk), v = project(Wv);
  std::vector<float> expected(T * d.d_inner);  // [T, nh*hd]
  for (int64_t t = 0; t < T; ++t)
    for (int64_t h = 0; h < nh; ++h) {
      const int64_t g = h / (nh / nkv);
      for (int64_t p = 0; p < hd; ++p) {
        double acc = 0.0;
        for (int64_t s = 0; s <= t; ++s) {
          double qk = 0.0;
          for (int64_t i = 0; i < hd; ++i) qk += q[t * nh * hd + h * hd + i] * k[s * nkv * hd + g * hd + i];
          acc += qk * v[s * nkv * hd + g * hd + p];
        }
        expected[t * d.d_inner + h * hd + p] = static_cast<float>(acc);
      }
    }

  std::vector<float> proj(T * d.in_proj_rows());  // [T, in_proj_rows]
  cpu::matmul_wt(u.data(), w.in_proj.ptr(), proj.data(), T, H, d.in_proj_rows());
  for (int64_t chunk : {0, 1, 3, 16, 64}) {
    SCOPED_TRACE("chunk " + std::to_string(chunk));
    std::vector<float> conv(d.conv_dim() * d.d_conv, 0.0f), ssm(nh * hd * hd, 0.0f), y(T * d.d_inner);
    mamba2_ssm_core(d, w, T, proj.data(), conv.data(), ssm.data(), y.data(), chunk, /*conv_silu=*/false);
    EXPECT_LT(rel_err(y, expected), 1e-5);
    // And split into two runs continuing the state.
    std::vector<float> conv2(conv.size(), 0.0f), ssm2(ssm.size(), 0.0f), y2(T * d.d_inner);
    const int64_t T1 = 10;
    mamba2_ssm_core(d, w, T1, proj.data(), conv2.data(), ssm2.data(), y2.data(), chunk, false);
    mamba2_ssm_core(d, w, T - T1, proj.data() + T1 * d.in_proj_rows(), conv2.data(), ssm2.data(),
                    y2.data() + T1 * d.d_inner, chunk, false);
    EXPECT_LT(rel_err(y2, expected), 1e-5);
  }
}

// Golden values of the PyTorch reference (zebra_ref.Mamba2 in float64) for a 4-head layer with GQA repeat 2.
TEST(Mamba2, MatchesPytorchReference) {
  const std::string path = test::fixture("mamba2/layer.safetensors");
  SafetensorsFile f(path);
  auto meta = [&](const char* key) { return std::stoll(f.metadata().at(key)); };
  Mamba2Dims d = make_dims(meta("hidden"), meta("d_inner"), meta("d_xb"), meta("d_state"));
  ASSERT_EQ(d.n_heads, meta("n_heads"));
  ASSERT_EQ(d.repeat_group(), 2);
  const int64_t T = meta("t_prefill"), S = meta("t_step");
  auto load = [&](const std::string& name) {
    const TensorView* v = f.find(name);
    if (!v) throw Error("fixture " + path + " lacks " + name);
    return view_to_tensor(*v);
  };
  Mamba2Weights w;
  w.in_proj = load("in_proj.weight");
  w.conv_w = load("conv1d.weight");
  w.conv_b = load("conv1d.bias");
  w.dt_bias = load("dt_bias");
  w.A_log = load("A_log");
  w.D = load("D");
  w.norm = load("norm.weight");
  w.out_proj = load("out_proj.weight");
  const Tensor u = load("u"), out_prefill = load("out_prefill"), out_step = load("out_step");
  const Tensor conv_pre = load("conv_state_prefill"), ssm_pre = load("ssm_state_prefill");
  const Tensor conv_fin = load("conv_state_final"), ssm_fin = load("ssm_state_final");
  ASSERT_EQ(u.dim(0), T + S);

  for (int64_t chunk : {0, 8, 64}) {  // 0 = mamba2_forward_sequential
    SCOPED_TRACE("chunk " + std::to_string(chunk));
    Mamba2State st;
    st.allocate(1, d);
    std::vector<float> out((T + S) * d.hidden);
    if (chunk == 0)
      mamba2_forward_sequential(d, w, seq_batch(0, 0, T), u.ptr(), out.data(), st);
    else
      mamba2_forward(d, w, seq_batch(0, 0, T), u.ptr(), out.data(), st, chunk);
    const double e_pre = max_abs(out.data(), out_prefill.ptr(), T * d.hidden);
    const double e_conv = max_abs(st.conv.data(), conv_pre.ptr(), conv_pre.numel());
    const double e_ssm = max_abs(st.ssm.data(), ssm_pre.ptr(), ssm_pre.numel());
    EXPECT_LT(rel_err(st.ssm.data(), ssm_pre.ptr(), ssm_pre.numel()), 1e-5);
    for (int64_t t = T; t < T + S; ++t)
      mamba2_forward(d, w, seq_batch(0, static_cast<int32_t>(t), 1), u.ptr() + t * d.hidden,
                     out.data() + t * d.hidden, st, chunk == 0 ? 1 : chunk);
    const double e_step = max_abs(out.data() + T * d.hidden, out_step.ptr(), S * d.hidden);
    const double e_fin = std::max(max_abs(st.conv.data(), conv_fin.ptr(), conv_fin.numel()),
                                  max_abs(st.ssm.data(), ssm_fin.ptr(), ssm_fin.numel()));
    std::cout << "[ reference ] chunk " << chunk << ": max abs error prefill out " << e_pre << ", conv state "
              << e_conv << ", ssm state " << e_ssm << ", decode out " << e_step << ", final states " << e_fin
              << "\n";
    EXPECT_LT(rel_err(out.data(), out_prefill.ptr(), T * d.hidden), 1e-5);
    EXPECT_LT(e_conv, 1e-5);  // the window holds in_proj outputs: fp32 GEMM vs fp64 rounding only
    EXPECT_LT(rel_err(st.conv.data(), conv_fin.ptr(), conv_fin.numel()), 1e-5);
    EXPECT_LT(rel_err(st.ssm.data(), ssm_fin.ptr(), ssm_fin.numel()), 1e-5);
    EXPECT_LT(rel_err(out.data() + T * d.hidden, out_step.ptr(), S * d.hidden), 1e-5);
    EXPECT_LT(e_pre, 1e-5);
    EXPECT_LT(e_step, 1e-5);
  }
}

}  // namespace
}  // namespace zebra
