// Mamba2 layer of the Zebra hybrid (MambaInLlama variant, spec §1.4), CPU fp32.
// One forward: in_proj of the whole batch (one GEMM); then for each sequence's run of consecutive tokens:
// causal depthwise conv continuing the slot's window, SiLU, softplus dt, the SSM scan (chunked SSD for
// prefill, the recurrence for one token), D skip, gate and per-head RMSNorm; then out_proj (one GEMM).
#include "model/mamba2.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "kernels/cpu/ops.h"

namespace zebra {

int64_t Mamba2Dims::parameter_count() const {
  // in_proj + conv (weight + bias) + dt_bias, A_log, D + norm + out_proj
  return in_proj_rows() * hidden + conv_dim() * (d_conv + 1) + 3 * n_heads + d_inner + hidden * d_inner;
}

void Mamba2State::allocate(int64_t slots, const Mamba2Dims& d) {
  ZEBRA_CHECK(slots > 0, "Mamba2State::allocate: expected at least one sequence slot, got ", slots);
  n_slots = slots;
  conv_dim = d.conv_dim();
  d_conv = d.d_conv;
  ssm_size = d.n_heads * d.head_dim * d.d_state;
  conv.assign(static_cast<size_t>(slots * conv_dim * d_conv), 0.0f);
  ssm.assign(static_cast<size_t>(slots * ssm_size), 0.0f);
  next_pos.assign(static_cast<size_t>(slots), 0);
}

namespace {

// A scan's heads are spread over OpenMP threads only above this many multiply-adds: on the shared 2-core
// machine a parallel region costs more than a small scan (a decode step of a 1B layer is ~4e5).
constexpr int64_t kParallelWork = int64_t(1) << 22;

float softplus(float v) { return v > 20.0f ? v : std::log1p(std::exp(v)); }  // PyTorch's threshold 20
float silu(float v) { return v / (1.0f + std::exp(-v)); }

// Column offsets of the blocks of one in_proj output row (spec §1.4 row order z | x | B | C | dt).
struct ProjLayout {
  int64_t z, xbc, dt, rows;
};
ProjLayout proj_layout(const Mamba2Dims& d) {
  return {0, d.d_inner, d.d_inner + d.conv_dim(), d.in_proj_rows()};
}

// One head's SSM inputs: row t of x (P values), B (N) and C (N) at base + t * stride inside the post-conv
// activations [T, conv_dim]; dt at dt + t * dt_stride.
struct HeadInputs {
  const float* x;
  const float* B;
  const float* C;
  int64_t stride;
  const float* dt;
  int64_t dt_stride;
  float A;
};

// The recurrence (the definition) for one head over T tokens: S [P, N] is updated in place,
// y row t [P] at y + t * y_stride receives S_t C_t.
void scan_head_sequential(const HeadInputs& in, int64_t T, int64_t P, int64_t N, float* S, float* y,
                          int64_t y_stride) {
  for (int64_t t = 0; t < T; ++t) {
    const float dt = in.dt[t * in.dt_stride];
    const float decay = std::exp(dt * in.A);
    const float* x = in.x + t * in.stride;  // [P]
    const float* B = in.B + t * in.stride;  // [N]
    const float* C = in.C + t * in.stride;  // [N]
    float* yt = y + t * y_stride;           // [P]
    for (int64_t p = 0; p < P; ++p) {
      float* Sp = S + p * N;  // row p of S [P, N]
      const float xp = dt * x[p];
      float acc = 0.0f;
#pragma omp simd reduction(+ : acc)
      for (int64_t n = 0; n < N; ++n) {
        Sp[n] = decay * Sp[n] + xp * B[n];  // S_t = exp(dt A) S_{t-1} + dt x Bᵀ
        acc += Sp[n] * C[n];                // y = S_t C
      }
      yt[p] = acc;
    }
  }
}

// Per-head scratch of the chunked scan, allocated before the parallel region (nothing may throw inside it).
struct ChunkScratch {
  std::vector<float> X, B, C, G, w;  // [L, P], [L, N], [L, N], [L, L], [L]
  std::vector<double> cum;           // [L]
  void allocate(int64_t L, int64_t P, int64_t N) {
    X.resize(L * P), B.resize(L * N), C.resize(L * N), G.resize(L * L), w.resize(L), cum.resize(L);
  }
};

// Chunked SSD scan for one head (Mamba2 paper §6). For a chunk of L tokens with a_s = dt_s A and
// cum_l = Σ_{s<=l} a_s (cumulated in double so exp(cum_l - cum_s) keeps fp32 accuracy over long chunks):
//   y_l   = Σ_{s<=l} (C_l·B_s) exp(cum_l - cum_s) dt_s x_s   +   exp(cum_l) S_in C_l
//   S_out = exp(cum_{L-1}) S_in  +  Σ_s exp(cum_{L-1} - cum_s) dt_s x_s B_sᵀ
// The products are GEMM-shaped loops over contiguous gathered rows (BLAS is not called from the worker
// threads: OpenBLAS inside an OpenMP region oversubscribes the cores).
void scan_head_chunked(const HeadInputs& in, int64_t T, int64_t P, int64_t N, int64_t chunk, float* S, float* y,
                       int64_t y_stride, ChunkScratch& sc) {
  float* X = sc.X.data();  // [L, P]
  float* Bc = sc.B.data(); // [L, N]
  float* Cc = sc.C.data(); // [L, N]
  float* G = sc.G.data();  // [L, L] lower triangle
  float* w = sc.w.data();  // [L]
  double* cum = sc.cum.data();
  for (int64_t c0 = 0; c0 < T; c0 += chunk) {
    const int64_t L = std::min(chunk, T - c0);
    // Gather the chunk's rows: X [L, P], Bc [L, N], Cc [L, N]; cum [L].
    double run = 0.0;
    for (int64_t l = 0; l < L; ++l) {
      const int64_t t = c0 + l;
      std::copy_n(in.x + t * in.stride, P, X + l * P);
      std::copy_n(in.B + t * in.stride, N, Bc + l * N);
      std::copy_n(in.C + t * in.stride, N, Cc + l * N);
      run += static_cast<double>(in.dt[t * in.dt_stride]) * in.A;
      cum[l] = run;
    }
    // G [L, L]: G[l][s] = (C_l·B_s) exp(cum_l - cum_s) dt_s for s <= l (the masked decay matrix).
    for (int64_t l = 0; l < L; ++l) {
      const float* Cl = Cc + l * N;
      for (int64_t s = 0; s <= l; ++s) {
        const float* Bs = Bc + s * N;
        float acc = 0.0f;
#pragma omp simd reduction(+ : acc)
        for (int64_t n = 0; n < N; ++n) acc += Cl[n] * Bs[n];
        G[l * L + s] = acc * static_cast<float>(std::exp(cum[l] - cum[s])) * in.dt[(c0 + s) * in.dt_stride];
      }
    }
    // Y [L, P] = exp(cum_l) (S_in C_l) + G X over s <= l.
    for (int64_t l = 0; l < L; ++l) {
      float* yl = y + (c0 + l) * y_stride;  // [P]
      const float* Cl = Cc + l * N;
      const float carry = static_cast<float>(std::exp(cum[l]));
      for (int64_t p = 0; p < P; ++p) {
        const float* Sp = S + p * N;
        float acc = 0.0f;
#pragma omp simd reduction(+ : acc)
        for (int64_t n = 0; n < N; ++n) acc += Sp[n] * Cl[n];
        yl[p] = carry * acc;
      }
      for (int64_t s = 0; s <= l; ++s) {
        const float g = G[l * L + s];
        const float* Xs = X + s * P;
#pragma omp simd
        for (int64_t p = 0; p < P; ++p) yl[p] += g * Xs[p];
      }
    }
    // S [P, N] = exp(cum_last) S_in + Xᵀ diag(w) Bc with w_s = exp(cum_last - cum_s) dt_s.
    const double last = cum[L - 1];
    const float keep = static_cast<float>(std::exp(last));
    for (int64_t i = 0; i < P * N; ++i) S[i] *= keep;
    for (int64_t s = 0; s < L; ++s)
      w[s] = static_cast<float>(std::exp(last - cum[s])) * in.dt[(c0 + s) * in.dt_stride];
    for (int64_t s = 0; s < L; ++s) {
      const float* Bs = Bc + s * N;
      for (int64_t p = 0; p < P; ++p) {
        const float coef = w[s] * X[s * P + p];
        float* Sp = S + p * N;
#pragma omp simd
        for (int64_t n = 0; n < N; ++n) Sp[n] += coef * Bs[n];
      }
    }
  }
}

void check_state(const Mamba2Dims& d, const Mamba2State& st) {
  const int64_t ssm_size = d.n_heads * d.head_dim * d.d_state;
  ZEBRA_CHECK(st.n_slots > 0 && st.conv_dim == d.conv_dim() && st.d_conv == d.d_conv && st.ssm_size == ssm_size &&
                  static_cast<int64_t>(st.conv.size()) == st.n_slots * st.conv_dim * st.d_conv &&
                  static_cast<int64_t>(st.ssm.size()) == st.n_slots * st.ssm_size &&
                  static_cast<int64_t>(st.next_pos.size()) == st.n_slots,
              "Mamba2 state: allocated for ", st.n_slots, " slots with conv_dim ", st.conv_dim, ", d_conv ",
              st.d_conv, ", ssm size ", st.ssm_size, "; the layer needs conv_dim ", d.conv_dim(), ", d_conv ",
              d.d_conv, ", ssm size ", ssm_size, " (call Mamba2State::allocate)");
}

// One sequence slot's tokens of the batch that continue each other, in batch order.
struct Run {
  int32_t slot = 0;
  bool reset = false;        // the run starts at position 0: the slot's state starts fresh
  std::vector<int64_t> idx;  // batch rows
};

// Groups the batch into runs per slot (order preserved) and checks every position before any state
// changes, so a rejected batch leaves the state as it was.
std::vector<Run> plan_runs(const Batch& batch, const Mamba2State& st) {
  const int64_t n = batch.size();
  ZEBRA_CHECK(static_cast<int64_t>(batch.seq.size()) == n && static_cast<int64_t>(batch.pos.size()) == n,
              "Mamba2 batch: ", n, " tokens but ", batch.seq.size(), " slots and ", batch.pos.size(), " positions");
  std::vector<Run> runs;
  std::vector<int64_t> next(st.next_pos);     // the position each slot expects after the tokens seen so far
  std::vector<int64_t> open(st.n_slots, -1);  // the run a slot's next continuing token joins
  for (int64_t i = 0; i < n; ++i) {
    const int32_t s = batch.seq[i];
    const int32_t p = batch.pos[i];
    ZEBRA_CHECK(s >= 0 && s < st.n_slots, "Mamba2 batch token ", i, ": sequence slot ", s,
                " is out of range (state has ", st.n_slots, " slots)");
    if (p != 0 && p != next[s])
      fail("sequence slot ", s, ": Mamba2 state is at position ", next[s], ", got token at position ", p);
    if (p == 0 || open[s] < 0) {
      runs.push_back(Run{s, p == 0, {}});
      open[s] = static_cast<int64_t>(runs.size()) - 1;
    }
    runs[open[s]].idx.push_back(i);
    next[s] = static_cast<int64_t>(p) + 1;
  }
  return runs;
}

// The shared body of both forwards; chunk_size 0 = the sequential recurrence.
void forward_impl(const Mamba2Dims& d, const Mamba2Weights& w, const Batch& batch, const float* x, float* out,
                  Mamba2State& state, int64_t chunk_size) {
  mamba2_check(d, w);
  check_state(d, state);
  const std::vector<Run> runs = plan_runs(batch, state);
  const int64_t n = batch.size();
  if (n == 0) return;
  const ProjLayout lay = proj_layout(d);
  const int64_t P = d.head_dim;

  // proj [n, rows] = x [n, hidden] · in_projᵀ; rows = z | x | B | C | dt
  std::vector<float> proj(n * lay.rows);
  cpu::matmul_wt(x, w.in_proj.ptr(), proj.data(), n, d.hidden, lay.rows);

  std::vector<float> gated(n * d.d_inner);  // [n, d_inner] normalised gated mixer outputs, batch order
  std::vector<float> run_proj, y;
  for (const Run& r : runs) {
    const int64_t T = static_cast<int64_t>(r.idx.size());
    // run_proj [T, rows]: the run's in_proj rows, contiguous (a single in-order sequence is used in place).
    const float* rp = proj.data() + r.idx[0] * lay.rows;
    if (r.idx.back() - r.idx.front() + 1 != T) {
      run_proj.resize(T * lay.rows);
      for (int64_t j = 0; j < T; ++j)
        std::copy_n(proj.data() + r.idx[j] * lay.rows, lay.rows, run_proj.data() + j * lay.rows);
      rp = run_proj.data();
    }
    float* conv_window = state.conv_at(r.slot);  // [conv_dim][d_conv]
    float* ssm = state.ssm_at(r.slot);           // [n_heads][P][N]
    if (r.reset) {
      std::fill_n(conv_window, state.conv_dim * state.d_conv, 0.0f);
      std::fill_n(ssm, state.ssm_size, 0.0f);
    }
    y.resize(T * d.d_inner);  // [T, d_inner]
    mamba2_ssm_core(d, w, T, rp, conv_window, ssm, y.data(), chunk_size);
    state.next_pos[r.slot] = static_cast<int64_t>(batch.pos[r.idx.back()]) + 1;

    // gated[t] = RMSNorm_per_head(y * silu(z)) * norm  (norm_before_gate = False; groups of head_dim)
    const float* nw = w.norm.ptr();
    for (int64_t j = 0; j < T; ++j) {
      const float* yj = y.data() + j * d.d_inner;       // [d_inner]
      const float* zj = rp + j * lay.rows + lay.z;      // [d_inner]
      float* gj = gated.data() + r.idx[j] * d.d_inner;  // [d_inner]
      for (int64_t h = 0; h < d.n_heads; ++h) {
        double ss = 0.0;
        for (int64_t p = h * P; p < (h + 1) * P; ++p) {
          gj[p] = yj[p] * silu(zj[p]);
          ss += static_cast<double>(gj[p]) * gj[p];
        }
        const float inv = 1.0f / std::sqrt(static_cast<float>(ss / P) + static_cast<float>(d.eps));
        for (int64_t p = h * P; p < (h + 1) * P; ++p) gj[p] = gj[p] * inv * nw[p];
      }
    }
  }
  // out [n, hidden] = gated [n, d_inner] · out_projᵀ
  cpu::matmul_wt(gated.data(), w.out_proj.ptr(), out, n, d.d_inner, d.hidden);
}

}  // namespace

void mamba2_check(const Mamba2Dims& d, const Mamba2Weights& w) {
  ZEBRA_CHECK(d.hidden > 0 && d.d_inner > 0 && d.d_xb > 0 && d.d_state > 0 && d.n_heads > 0 && d.head_dim > 0 &&
                  d.d_conv > 0,
              "Mamba2 dims: every size must be positive (hidden ", d.hidden, ", d_inner ", d.d_inner, ", d_xb ",
              d.d_xb, ", d_state ", d.d_state, ", n_heads ", d.n_heads, ", head_dim ", d.head_dim, ", d_conv ",
              d.d_conv, ")");
  ZEBRA_CHECK(d.n_heads * d.head_dim == d.d_inner, "Mamba2 dims: n_heads ", d.n_heads, " x head_dim ", d.head_dim,
              " must equal d_inner ", d.d_inner);
  ZEBRA_CHECK(d.n_heads * d.d_state == d.d_inner, "Mamba2 dims: C holds d_state per head: n_heads ", d.n_heads,
              " x d_state ", d.d_state, " must equal d_inner ", d.d_inner);
  ZEBRA_CHECK(d.d_inner % d.d_xb == 0 && d.n_heads % d.repeat_group() == 0 &&
                  (d.n_heads / d.repeat_group()) * d.head_dim == d.d_xb &&
                  (d.n_heads / d.repeat_group()) * d.d_state == d.d_xb,
              "Mamba2 dims: d_xb ", d.d_xb, " must hold whole x/B groups of head_dim ", d.head_dim, " and d_state ",
              d.d_state, " with d_inner ", d.d_inner, " a multiple of it");
  auto expect = [](const Tensor& t, const char* name, const std::vector<int64_t>& shape) {
    ZEBRA_CHECK(t.shape == shape && t.numel() == Tensor::count(shape), "Mamba2 weight ", name, ": expected shape ",
                shape_str(shape), ", found ", shape_str(t.shape));
  };
  expect(w.in_proj, "in_proj", {d.in_proj_rows(), d.hidden});
  if (w.conv_w.rank() == 3)
    expect(w.conv_w, "conv1d.weight", {d.conv_dim(), 1, d.d_conv});
  else
    expect(w.conv_w, "conv1d.weight", {d.conv_dim(), d.d_conv});
  expect(w.conv_b, "conv1d.bias", {d.conv_dim()});
  expect(w.dt_bias, "dt_bias", {d.n_heads});
  expect(w.A_log, "A_log", {d.n_heads});
  expect(w.D, "D", {d.n_heads});
  expect(w.norm, "norm.weight", {d.d_inner});
  expect(w.out_proj, "out_proj", {d.hidden, d.d_inner});
}

void mamba2_ssm_core(const Mamba2Dims& d, const Mamba2Weights& w, int64_t T, const float* proj, float* conv_window,
                     float* ssm, float* y, int64_t chunk_size, bool conv_silu) {
  ZEBRA_CHECK(chunk_size >= 0, "Mamba2: chunk size must be >= 0 (0 = sequential), got ", chunk_size);
  mamba2_check(d, w);
  if (T <= 0) return;
  const ProjLayout lay = proj_layout(d);
  const int64_t cd = d.conv_dim(), K = d.d_conv, P = d.head_dim, N = d.d_state, H = d.n_heads;
  const int64_t rep = d.repeat_group();
  const float* cw = w.conv_w.ptr();  // [conv_dim][K]
  const float* cb = w.conv_b.ptr();  // [conv_dim]

  // xbc [T, conv_dim] = act(Σ_k cw[c][k] · in[t - K + 1 + k][c] + cb[c]) over the pre-conv inputs
  // in = window (K rows, oldest first) followed by the run's proj[:, xBC] rows.
  std::vector<float> xbc(T * cd);
  for (int64_t t = 0; t < T; ++t) {
    float* o = xbc.data() + t * cd;
    for (int64_t c = 0; c < cd; ++c) {
      float acc = cb[c];
      for (int64_t k = 0; k < K; ++k) {
        const int64_t j = t + 1 + k - K;  // run row of this tap; < 0 reads the window
        const float v = j >= 0 ? proj[j * lay.rows + lay.xbc + c] : conv_window[c * K + K + j];
        acc += cw[c * K + k] * v;
      }
      o[c] = conv_silu ? silu(acc) : acc;
    }
  }
  // window ← the last K pre-conv inputs; ascending k reads slot K+j = T+k > k before it is overwritten.
  for (int64_t c = 0; c < cd; ++c)
    for (int64_t k = 0; k < K; ++k) {
      const int64_t j = T - K + k;
      conv_window[c * K + k] = j >= 0 ? proj[j * lay.rows + lay.xbc + c] : conv_window[c * K + K + j];
    }

  // dt [T, n_heads] = softplus(dt_raw + dt_bias)  (no clamp)
  std::vector<float> dt(T * H);
  for (int64_t t = 0; t < T; ++t)
    for (int64_t h = 0; h < H; ++h) dt[t * H + h] = softplus(proj[t * lay.rows + lay.dt + h] + w.dt_bias.ptr()[h]);

  // Scan per head: x^h = x[k(h) P ...], B^h = B[k(h) N ...] with k(h) = h / rep (GQA repeat), C^h = C[h N ...].
  const bool chunked = chunk_size > 0 && T > 1;  // one token: the recurrence step directly
  const int64_t L = chunked ? std::min(chunk_size, T) : 0;
  std::vector<ChunkScratch> scratch(chunked ? H : 0);
  for (ChunkScratch& s : scratch) s.allocate(L, P, N);
  const int64_t work = T * H * P * N;
#pragma omp parallel for schedule(static) if (H > 1 && work >= kParallelWork)
  for (int64_t h = 0; h < H; ++h) {
    const int64_t g = h / rep;
    HeadInputs in{xbc.data() + g * P,
                  xbc.data() + d.d_xb + g * N,
                  xbc.data() + 2 * d.d_xb + h * N,
                  cd,
                  dt.data() + h,
                  H,
                  -std::exp(w.A_log.ptr()[h])};
    float* S = ssm + h * P * N;  // [P, N]
    if (chunked)
      scan_head_chunked(in, T, P, N, chunk_size, S, y + h * P, d.d_inner, scratch[h]);
    else
      scan_head_sequential(in, T, P, N, S, y + h * P, d.d_inner);
  }
  // y += D x (per head, x repeated like the scan's)
  for (int64_t t = 0; t < T; ++t)
    for (int64_t h = 0; h < H; ++h) {
      const float Dh = w.D.ptr()[h];
      const float* xh = xbc.data() + t * cd + (h / rep) * P;
      float* yh = y + t * d.d_inner + h * P;
      for (int64_t p = 0; p < P; ++p) yh[p] += Dh * xh[p];
    }
}

void mamba2_forward(const Mamba2Dims& d, const Mamba2Weights& w, const Batch& batch, const float* x, float* out,
                    Mamba2State& state, int64_t chunk_size) {
  ZEBRA_CHECK(chunk_size >= 1, "mamba2_forward: chunk size must be >= 1, got ", chunk_size);
  forward_impl(d, w, batch, x, out, state, chunk_size);
}

void mamba2_forward_sequential(const Mamba2Dims& d, const Mamba2Weights& w, const Batch& batch, const float* x,
                               float* out, Mamba2State& state) {
  forward_impl(d, w, batch, x, out, state, 0);
}

}  // namespace zebra
