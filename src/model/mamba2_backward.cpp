// Mamba2 training forward and backward (spec §1.4, MambaInLlama variant), CPU fp32, llm.c style: the
// forward saves its intermediates in the step's Arena and the backward walks them in reverse.
//
// Layout: B packed rows of T tokens, each row a fresh sequence (zero conv window, zero SSM state); token t
// of row b is row i = b*T + t of every [n, *] array (n = B*T).
//
// Forward (equal to mamba2_forward from a fresh state, same chunked SSD scan):
//   proj = x in_projᵀ                       -> z | xBC_pre | dt_raw
//   xbc  = SiLU(causal depthwise conv(xBC_pre) + conv_b)       -> x | B | C
//   dt   = softplus(dt_raw + dt_bias), A = -exp(A_log)
//   y    = scan(x[k(h)], B[k(h)], C[h], dt, A) + D x[k(h)]     per head h, k(h) = h / repeat_group
//   g    = y * SiLU(z);  gated = per-head RMSNorm(g) * norm     (groups of head_dim, eps d.eps)
//   out  = gated out_projᵀ
//
// Backward of the scan: a sequential reverse-time recurrence. The forward stores the SSM state entering
// every chunk but the first (the chunk boundaries are the checkpoints); the backward walks the chunks last
// to first, recomputes the chunk's L states from its checkpoint by the recurrence (L+1 states of [P, N] in a
// per-thread buffer), then runs time backwards through the chunk carrying dS = dLoss/dS_t:
//   S_t = a_t S_{t-1} + dt_t x_t B_tᵀ,  a_t = exp(dt_t A),  y_t = S_t C_t
//   dS_t   = dy_t C_tᵀ + a_{t+1} dS_{t+1}
//   dC_t   = S_tᵀ dy_t,   dx_t = dt_t dS_t B_t,   dB_t = dt_t dS_tᵀ x_t
//   ddt_t  = x_tᵀ dS_t B_t + A a_t <dS_t, S_{t-1}>,   dA += dt_t a_t <dS_t, S_{t-1}>
// Why not the chunked (SSD) form for the backward too: on the CPU it saves no work (the recurrence is
// ~6 P N multiply-adds per token and head, one fused pass over dS), it needs no [L, L] decay matrices or
// their exp-difference gradients, and it is the definition, so it is easy to trust. Memory is the
// checkpoints (B H (n_chunks-1) P N floats in the arena) plus (L+1) P N floats per thread.
// The scans run as OpenMP tasks over (row, head); heads sharing an x/B group write per-head gradients that
// are summed afterwards, so no two threads write the same float.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/error.h"
#include "kernels/cpu/grad_ops.h"
#include "kernels/cpu/ops.h"
#include "model/mamba2.h"

namespace zebra {

namespace {

// Parallel regions only above this many multiply-adds (as in mamba2.cpp: on 2 cores a region costs more
// than a tiny loop).
constexpr int64_t kParallelWork = int64_t(1) << 18;

float softplus(float v) { return v > 20.0f ? v : std::log1p(std::exp(v)); }  // PyTorch's threshold 20
float sigmoid(float v) { return 1.0f / (1.0f + std::exp(-v)); }
float silu(float v) { return v / (1.0f + std::exp(-v)); }

int64_t n_chunks(int64_t T, int64_t chunk) { return (T + chunk - 1) / chunk; }

// Column offsets inside one in_proj output row (spec §1.4 row order z | x | B | C | dt) and inside one
// post-conv row (x | B | C).
struct Cols {
  int64_t rows, z, xbc, dt;  // in proj
  int64_t x, B, C;           // in xbc
};
Cols cols(const Mamba2Dims& d) {
  return {d.in_proj_rows(), 0, d.d_inner, d.d_inner + d.conv_dim(), 0, d.d_xb, 2 * d.d_xb};
}

void check_shape(const Mamba2Dims& d, int64_t B, int64_t T, int64_t chunk_size, const char* who) {
  ZEBRA_CHECK(B > 0 && T > 0, who, ": expected at least one row of at least one token, got B ", B, ", T ", T);
  ZEBRA_CHECK(chunk_size >= 1, who, ": chunk size must be >= 1, got ", chunk_size);
  ZEBRA_CHECK(d.head_dim == d.d_state, who, ": head_dim ", d.head_dim, " must equal d_state ", d.d_state);
}

// The SSM state one (row, head) enters chunk c >= 1 with: [P, N] inside act.states.
float* checkpoint(const Mamba2Dims& d, float* states, int64_t T, int64_t chunk, int64_t b, int64_t h, int64_t c) {
  const int64_t per_head = (n_chunks(T, chunk) - 1) * d.head_dim * d.d_state;
  return states + (b * d.n_heads + h) * per_head + (c - 1) * d.head_dim * d.d_state;
}

// Per-thread scratch of the forward scan (allocated before the parallel region: nothing throws inside).
struct FwdScratch {
  std::vector<float> S, X, Bc, Cc;  // [P, N] running state; a chunk's gathered rows [L, P], [L, N], [L, N]
  std::vector<double> cum;          // [L]
};

// Chunked SSD scan of row b, head h, as mamba2.cpp's scan_head_chunked (Mamba2 paper §6). In a chunk of L
// tokens with cum_l = Σ_{s<=l} dt_s A (in double, so exp(cum_l - cum_s) keeps fp32 accuracy):
//   y_l   = Σ_{s<=l} (C_l·B_s) exp(cum_l - cum_s) dt_s x_s  +  exp(cum_l) S_in C_l
//   S_out = exp(cum_{L-1}) S_in  +  Σ_s exp(cum_{L-1} - cum_s) dt_s x_s B_sᵀ
// Writes y (without D x) and the checkpoint of every chunk but the first.
void scan_forward(const Mamba2Dims& d, const Mamba2Activations& act, int64_t b, int64_t h, float A,
                  FwdScratch& sc) {
  const int64_t T = act.T, chunk = act.chunk_size, P = d.head_dim, N = d.d_state, cd = d.conv_dim();
  const int64_t H = d.n_heads, g = h / d.repeat_group();
  const Cols cl = cols(d);
  const float* xs = act.xbc + b * T * cd + cl.x + g * P;  // row t at + t*cd: x^h [P]
  const float* Bs = act.xbc + b * T * cd + cl.B + g * N;  // B^h [N]
  const float* Cs = act.xbc + b * T * cd + cl.C + h * N;  // C^h [N]
  const float* dt = act.dt + b * T * H + h;               // row t at + t*H
  float* y = act.y + b * T * d.d_inner + h * P;           // row t at + t*d_inner
  float* S = sc.S.data();
  float *X = sc.X.data(), *Bc = sc.Bc.data(), *Cc = sc.Cc.data();
  double* cum = sc.cum.data();
  std::fill_n(S, P * N, 0.0f);
  for (int64_t c = 0, c0 = 0; c0 < T; ++c, c0 += chunk) {
    const int64_t L = std::min(chunk, T - c0);
    if (c > 0) std::copy_n(S, P * N, checkpoint(d, act.states, T, chunk, b, h, c));
    double run = 0.0;
    for (int64_t l = 0; l < L; ++l) {
      const int64_t t = c0 + l;
      std::copy_n(xs + t * cd, P, X + l * P);
      std::copy_n(Bs + t * cd, N, Bc + l * N);
      std::copy_n(Cs + t * cd, N, Cc + l * N);
      run += static_cast<double>(dt[t * H]) * A;
      cum[l] = run;
    }
    for (int64_t l = 0; l < L; ++l) {
      float* yl = y + (c0 + l) * d.d_inner;  // [P]
      const float* Cl = Cc + l * N;
      const float carry = static_cast<float>(std::exp(cum[l]));
      for (int64_t p = 0; p < P; ++p) {  // carried-in state: exp(cum_l) S_in C_l
        float acc = 0.0f;
#pragma omp simd reduction(+ : acc)
        for (int64_t n = 0; n < N; ++n) acc += S[p * N + n] * Cl[n];
        yl[p] = carry * acc;
      }
      for (int64_t s = 0; s <= l; ++s) {  // the chunk's own tokens
        const float* Bv = Bc + s * N;
        float cb = 0.0f;
#pragma omp simd reduction(+ : cb)
        for (int64_t n = 0; n < N; ++n) cb += Cl[n] * Bv[n];
        const float gs = cb * static_cast<float>(std::exp(cum[l] - cum[s])) * dt[(c0 + s) * H];
        const float* Xs = X + s * P;
#pragma omp simd
        for (int64_t p = 0; p < P; ++p) yl[p] += gs * Xs[p];
      }
    }
    const double last = cum[L - 1];
    const float keep = static_cast<float>(std::exp(last));
    for (int64_t i = 0; i < P * N; ++i) S[i] *= keep;
    for (int64_t s = 0; s < L; ++s) {
      const float ws = static_cast<float>(std::exp(last - cum[s])) * dt[(c0 + s) * H];
      const float* Bv = Bc + s * N;
      for (int64_t p = 0; p < P; ++p) {
        const float coef = ws * X[s * P + p];
        float* Sp = S + p * N;
#pragma omp simd
        for (int64_t n = 0; n < N; ++n) Sp[n] += coef * Bv[n];
      }
    }
  }
}

// Gradient buffers of the scan backward, all [n, *] like the activations.
struct ScanGrads {
  const float* dy;  // [n, d_inner] dLoss/dy (y before the gate; the scan part of it)
  float* dXh;       // [n, d_inner] per-head dx^h (heads of one group are summed later)
  float* dBh;       // [n, n_heads * N] per-head dB^h
  float* dxbc;      // [n, conv_dim] receives dC^h directly (C is per head)
  float* ddt;       // [n, n_heads] dLoss/d dt
  double* dA;       // [B * n_heads] dLoss/dA per (row, head), reduced over rows afterwards
};

struct BwdScratch {
  std::vector<float> S;   // [(L+1), P, N]: S_in then the chunk's states S_0..S_{L-1}
  std::vector<float> dS;  // [P, N] dLoss/dS_t, carried backwards across chunks
};

// Reverse-time recurrence of row b, head h (see the top of the file).
void scan_backward(const Mamba2Dims& d, const Mamba2Activations& act, int64_t b, int64_t h, float A,
                   const ScanGrads& gr, BwdScratch& sc) {
  const int64_t T = act.T, chunk = act.chunk_size, P = d.head_dim, N = d.d_state, cd = d.conv_dim();
  const int64_t H = d.n_heads, DI = d.d_inner, g = h / d.repeat_group(), PN = P * N;
  const Cols cl = cols(d);
  const int64_t r0 = b * T;  // first activation row of this sequence
  float* dS = sc.dS.data();
  std::fill_n(dS, PN, 0.0f);
  double dA = 0.0;
  for (int64_t c = n_chunks(T, chunk) - 1; c >= 0; --c) {
    const int64_t c0 = c * chunk, L = std::min(chunk, T - c0);
    // Recompute the chunk's states from its checkpoint: Sbuf[l+1] = S at token c0 + l.
    float* Sbuf = sc.S.data();
    if (c == 0)
      std::fill_n(Sbuf, PN, 0.0f);
    else
      std::copy_n(checkpoint(d, act.states, T, chunk, b, h, c), PN, Sbuf);
    for (int64_t l = 0; l < L; ++l) {
      const int64_t i = r0 + c0 + l;
      const float dt = act.dt[i * H + h], a = std::exp(dt * A);
      const float* x = act.xbc + i * cd + cl.x + g * P;
      const float* Bv = act.xbc + i * cd + cl.B + g * N;
      const float* Sp = Sbuf + l * PN;
      float* Sn = Sbuf + (l + 1) * PN;
      for (int64_t p = 0; p < P; ++p) {
        const float coef = dt * x[p];
#pragma omp simd
        for (int64_t n = 0; n < N; ++n) Sn[p * N + n] = a * Sp[p * N + n] + coef * Bv[n];
      }
    }
    // Backwards through the chunk, one fused pass over dS per token.
    for (int64_t l = L - 1; l >= 0; --l) {
      const int64_t i = r0 + c0 + l;
      const float dt = act.dt[i * H + h], a = std::exp(dt * A);
      const float* x = act.xbc + i * cd + cl.x + g * P;   // [P]
      const float* Bv = act.xbc + i * cd + cl.B + g * N;  // [N]
      const float* Cv = act.xbc + i * cd + cl.C + h * N;  // [N]
      const float* dy = gr.dy + i * DI + h * P;            // [P]
      float* dX = gr.dXh + i * DI + h * P;                 // [P]
      float* dB = gr.dBh + i * H * N + h * N;              // [N]
      float* dC = gr.dxbc + i * cd + cl.C + h * N;         // [N]
      const float* St = Sbuf + (l + 1) * PN;               // S_t
      const float* Sprev = Sbuf + l * PN;                  // S_{t-1}
      float xv = 0.0f, da = 0.0f;                          // x·(dS B), <dS, S_{t-1}>
      for (int64_t p = 0; p < P; ++p) {
        float* dSp = dS + p * N;
        const float gy = dy[p], coef = dt * x[p];
        const float* Stp = St + p * N;
        const float* Spp = Sprev + p * N;
        float v = 0.0f, dap = 0.0f;
#pragma omp simd reduction(+ : v, dap)
        for (int64_t n = 0; n < N; ++n) {
          dSp[n] += gy * Cv[n];    // dS_t = dy_t C_tᵀ + a_{t+1} dS_{t+1}
          dC[n] += gy * Stp[n];    // dC_t = S_tᵀ dy_t
          v += dSp[n] * Bv[n];     // (dS_t B_t)[p]
          dB[n] += coef * dSp[n];  // dB_t = dt dS_tᵀ x_t
          dap += dSp[n] * Spp[n];
          dSp[n] *= a;             // becomes the a_t dS_t part of dS_{t-1}
        }
        dX[p] += dt * v;  // dx_t = dt dS_t B_t
        xv += x[p] * v;
        da += dap;
      }
      gr.ddt[i * H + h] += xv + A * a * da;  // through dt x Bᵀ and through a_t = exp(dt A)
      dA += static_cast<double>(dt) * a * da;
    }
  }
  gr.dA[b * H + h] = dA;
}

void check_grad(const Tensor& g, int64_t numel, const char* name) {
  ZEBRA_CHECK(g.numel() == numel, "mamba2_backward: gradient ", name, " holds ", g.numel(), " floats (shape ",
              shape_str(g.shape), "), expected ", numel, " (pre-size it like the weight)");
}

}  // namespace

int64_t mamba2_activation_floats(const Mamba2Dims& d, int64_t B, int64_t T, int64_t chunk_size) {
  check_shape(d, B, T, chunk_size, "mamba2_activation_floats");
  const int64_t n = B * T;
  return n * (d.in_proj_rows() + d.conv_dim() + 2 * d.n_heads + 2 * d.d_inner) +
         B * d.n_heads * (n_chunks(T, chunk_size) - 1) * d.head_dim * d.d_state;
}

void mamba2_train_forward(const Mamba2Dims& d, const Mamba2Weights& w, int64_t B, int64_t T, const float* x,
                          float* out, Arena& arena, Mamba2Activations& act, int64_t chunk_size) {
  check_shape(d, B, T, chunk_size, "mamba2_train_forward");
  mamba2_check(d, w);
  const int64_t n = B * T, H = d.n_heads, P = d.head_dim, N = d.d_state, K = d.d_conv, cd = d.conv_dim();
  const int64_t DI = d.d_inner, rep = d.repeat_group();
  const Cols cl = cols(d);
  act = Mamba2Activations{};
  act.B = B, act.T = T, act.chunk_size = chunk_size;
  act.proj = arena.take(n * cl.rows, "mamba2.proj");
  act.xbc = arena.take(n * cd, "mamba2.xbc");
  act.dt = arena.take(n * H, "mamba2.dt");
  act.y = arena.take(n * DI, "mamba2.y");
  act.rstd = arena.take(n * H, "mamba2.rstd");
  act.gated = arena.take(n * DI, "mamba2.gated");
  act.states = arena.take(B * H * (n_chunks(T, chunk_size) - 1) * P * N, "mamba2.states");

  // proj [n, rows] = x [n, hidden] · in_projᵀ
  cpu::matmul_wt(x, w.in_proj.ptr(), act.proj, n, d.hidden, cl.rows);

  // xbc [n, cd] = SiLU(Σ_k cw[c][k] · pre[t-K+1+k][c] + cb[c]), zero before each row's first token;
  // dt [n, H] = softplus(dt_raw + dt_bias).
  const float* cw = w.conv_w.ptr();  // [cd][K] (a stored [cd, 1, K] has the same layout)
  const float* cb = w.conv_b.ptr();
#pragma omp parallel for schedule(static) if (n * cd * K >= kParallelWork)
  for (int64_t i = 0; i < n; ++i) {
    const int64_t t = i % T;
    float* o = act.xbc + i * cd;
    for (int64_t c = 0; c < cd; ++c) {
      float acc = cb[c];
      for (int64_t k = std::max<int64_t>(0, K - 1 - t); k < K; ++k)  // tap k reads token t - (K-1) + k
        acc += cw[c * K + k] * act.proj[(i - (K - 1) + k) * cl.rows + cl.xbc + c];
      o[c] = silu(acc);
    }
    for (int64_t h = 0; h < H; ++h)
      act.dt[i * H + h] = softplus(act.proj[i * cl.rows + cl.dt + h] + w.dt_bias.ptr()[h]);
  }

  // y [n, DI] = the scan of every (row, head), from zero states.
  {
    const int64_t L = std::min(chunk_size, T);
    const int threads = omp_get_max_threads();
    std::vector<FwdScratch> scratch(threads);
    for (FwdScratch& s : scratch) {
      s.S.resize(P * N), s.X.resize(L * P), s.Bc.resize(L * N), s.Cc.resize(L * N);
      s.cum.resize(L);
    }
#pragma omp parallel for schedule(dynamic) if (B * H > 1 && n * H * P * N >= kParallelWork)
    for (int64_t bh = 0; bh < B * H; ++bh)
      scan_forward(d, act, bh / H, bh % H, -std::exp(w.A_log.ptr()[bh % H]), scratch[omp_get_thread_num()]);
  }

  // y += D x; g = y * SiLU(z); gated = g / rms(g per head) * norm.
  const float* nw = w.norm.ptr();
#pragma omp parallel for schedule(static) if (n * DI * 8 >= kParallelWork)
  for (int64_t i = 0; i < n; ++i) {
    float* yi = act.y + i * DI;
    const float* zi = act.proj + i * cl.rows + cl.z;
    float* gi = act.gated + i * DI;
    for (int64_t h = 0; h < H; ++h) {
      const float Dh = w.D.ptr()[h];
      const float* xh = act.xbc + i * cd + cl.x + (h / rep) * P;
      double ss = 0.0;
      for (int64_t p = 0; p < P; ++p) {
        yi[h * P + p] += Dh * xh[p];
        gi[h * P + p] = yi[h * P + p] * silu(zi[h * P + p]);
        ss += static_cast<double>(gi[h * P + p]) * gi[h * P + p];
      }
      const float r = 1.0f / std::sqrt(static_cast<float>(ss / P) + static_cast<float>(d.eps));
      act.rstd[i * H + h] = r;
      for (int64_t p = h * P; p < (h + 1) * P; ++p) gi[p] = gi[p] * r * nw[p];
    }
  }
  // out [n, hidden] = gated [n, DI] · out_projᵀ
  cpu::matmul_wt(act.gated, w.out_proj.ptr(), out, n, DI, d.hidden);
}

void mamba2_backward(const Mamba2Dims& d, const Mamba2Weights& w, int64_t B, int64_t T, const float* x,
                     const Mamba2Activations& act, const float* dout, float* dx, Mamba2Weights& grad,
                     int64_t chunk_size) {
  check_shape(d, B, T, chunk_size, "mamba2_backward");
  ZEBRA_CHECK(act.B == B && act.T == T && act.chunk_size == chunk_size && act.proj,
              "mamba2_backward: the activations are of B ", act.B, ", T ", act.T, ", chunk ", act.chunk_size,
              ", called with B ", B, ", T ", T, ", chunk ", chunk_size);
  mamba2_check(d, w);
  const int64_t n = B * T, H = d.n_heads, P = d.head_dim, N = d.d_state, K = d.d_conv, cd = d.conv_dim();
  const int64_t DI = d.d_inner, rep = d.repeat_group();
  const Cols cl = cols(d);
  check_grad(grad.in_proj, w.in_proj.numel(), "in_proj");
  check_grad(grad.conv_w, cd * K, "conv1d.weight");
  check_grad(grad.conv_b, cd, "conv1d.bias");
  check_grad(grad.dt_bias, H, "dt_bias");
  check_grad(grad.A_log, H, "A_log");
  check_grad(grad.D, H, "D");
  check_grad(grad.norm, DI, "norm.weight");
  check_grad(grad.out_proj, w.out_proj.numel(), "out_proj");

  // Scratch gradients (zeroed: the ops below accumulate into them).
  std::vector<float> dgated(n * DI, 0.0f);  // [n, DI]  dLoss/d gated
  std::vector<float> dy(n * DI, 0.0f);      // [n, DI]  dLoss/dy (y = scan + D x)
  std::vector<float> dproj(n * cl.rows, 0.0f);  // [n, rows] z | xBC_pre | dt_raw

  // out = gated out_projᵀ
  cpu::linear_backward(act.gated, w.out_proj.ptr(), dout, n, DI, d.hidden, dgated.data(), grad.out_proj.ptr());

  // gated = norm * g * r per head (r = rstd, g = y * SiLU(z)). Each head's group has its own slice of
  // norm, so this is rmsnorm_backward per (token, head), written out here rather than n*H calls:
  //   dnorm += Σ_tokens dgated g r;   dg = r (norm dgated) - g r³/P Σ_p(norm dgated g).
  const float* nw = w.norm.ptr();
  {
    // dnorm first (dgated is overwritten by dg below): a reduction over tokens, kept serial so the sum
    // order is fixed. g r is recomputed rather than read as gated / norm (norm may hold zeros).
    float* dn = grad.norm.ptr();
    for (int64_t i = 0; i < n; ++i) {
      const float* zi = act.proj + i * cl.rows + cl.z;
      const float* yi = act.y + i * DI;
      const float* dgi = dgated.data() + i * DI;
      for (int64_t p = 0; p < DI; ++p) dn[p] += dgi[p] * yi[p] * silu(zi[p]) * act.rstd[i * H + p / P];
    }
  }
#pragma omp parallel for schedule(static) if (n * DI * 8 >= kParallelWork)
  for (int64_t i = 0; i < n; ++i) {
    const float* zi = act.proj + i * cl.rows + cl.z;
    const float* yi = act.y + i * DI;
    float* dgi = dgated.data() + i * DI;  // dgated becomes dg in place
    for (int64_t h = 0; h < H; ++h) {
      const float r = act.rstd[i * H + h];
      double s = 0.0;
      for (int64_t p = h * P; p < (h + 1) * P; ++p) s += static_cast<double>(nw[p]) * dgi[p] * yi[p] * silu(zi[p]);
      const float c = static_cast<float>(s * r * r * r / P);
      for (int64_t p = h * P; p < (h + 1) * P; ++p) dgi[p] = r * nw[p] * dgi[p] - c * yi[p] * silu(zi[p]);
    }
    // g = SiLU(z) * y: dz into dproj's z columns, dy.
    cpu::silu_mul_backward(zi, yi, dgi, DI, dproj.data() + i * cl.rows + cl.z, dy.data() + i * DI);
  }

  // The scan, per (row, head), in reverse time. dC lands in dxbc; dx^h, dB^h per head; ddt; dA per row.
  std::vector<float> dxbc(n * cd, 0.0f);  // [n, cd] dLoss/d xbc (post-SiLU)
  std::vector<float> dXh(n * DI, 0.0f);   // [n, H*P]
  std::vector<float> dBh(n * H * N, 0.0f);  // [n, H*N]
  std::vector<float> ddt(n * H, 0.0f);    // [n, H]
  std::vector<double> dA(B * H, 0.0);     // [B, H]
  {
    const int64_t L = std::min(chunk_size, T);
    const int threads = omp_get_max_threads();
    std::vector<BwdScratch> scratch(threads);
    for (BwdScratch& s : scratch) s.S.resize((L + 1) * P * N), s.dS.resize(P * N);
    const ScanGrads gr{dy.data(), dXh.data(), dBh.data(), dxbc.data(), ddt.data(), dA.data()};
#pragma omp parallel for schedule(dynamic) if (B * H > 1 && n * H * P * N >= kParallelWork)
    for (int64_t bh = 0; bh < B * H; ++bh)
      scan_backward(d, act, bh / H, bh % H, -std::exp(w.A_log.ptr()[bh % H]), gr, scratch[omp_get_thread_num()]);
  }
  // A = -exp(A_log): dA_log = dA * A.  dt = softplus(dt_raw + dt_bias): d(dt_raw) = ddt * sigmoid(.) (PyTorch
  // passes the gradient unchanged above its threshold 20, where softplus is the identity).
  for (int64_t h = 0; h < H; ++h) {
    double s = 0.0;
    for (int64_t b = 0; b < B; ++b) s += dA[b * H + h];
    grad.A_log.ptr()[h] += static_cast<float>(s * -std::exp(static_cast<double>(w.A_log.ptr()[h])));
  }
  for (int64_t i = 0; i < n; ++i)
    for (int64_t h = 0; h < H; ++h) {
      const float v = act.proj[i * cl.rows + cl.dt + h] + w.dt_bias.ptr()[h];
      const float g = ddt[i * H + h] * (v > 20.0f ? 1.0f : sigmoid(v));
      dproj[i * cl.rows + cl.dt + h] += g;
      grad.dt_bias.ptr()[h] += g;
    }

  // Group sums: x^h = x[h / rep] feeds the scan and the D skip, B^h = B[h / rep] the scan.
  //   dx[g] = Σ_{h in g} (dx^h + D_h dy^h),  dB[g] = Σ_{h in g} dB^h,  dD_h = Σ_tokens dy^h · x[g].
  std::vector<double> dD(H, 0.0);
  for (int64_t i = 0; i < n; ++i) {
    float* dxi = dxbc.data() + i * cd;
    const float* xi = act.xbc + i * cd;
    for (int64_t h = 0; h < H; ++h) {
      const int64_t g = h / rep;
      const float Dh = w.D.ptr()[h];
      const float* dyh = dy.data() + i * DI + h * P;
      const float* dXhh = dXh.data() + i * DI + h * P;
      const float* dBhh = dBh.data() + i * H * N + h * N;
      double s = 0.0;
      for (int64_t p = 0; p < P; ++p) {
        dxi[cl.x + g * P + p] += dXhh[p] + Dh * dyh[p];
        s += static_cast<double>(dyh[p]) * xi[cl.x + g * P + p];
      }
      for (int64_t k = 0; k < N; ++k) dxi[cl.B + g * N + k] += dBhh[k];
      dD[h] += s;
    }
  }
  for (int64_t h = 0; h < H; ++h) grad.D.ptr()[h] += static_cast<float>(dD[h]);

  // xbc = SiLU(u), u[t][c] = cb[c] + Σ_k cw[c][k] pre[t-K+1+k][c]. du (in place of dxbc) from the
  // recomputed u; then d pre[t][c] = Σ_k du[t+K-1-k][c] cw[c][k] within the row, into dproj.
  const float* cw = w.conv_w.ptr();
  const float* cb = w.conv_b.ptr();
#pragma omp parallel for schedule(static) if (n * cd * K >= kParallelWork)
  for (int64_t i = 0; i < n; ++i) {
    const int64_t t = i % T;
    float* du = dxbc.data() + i * cd;
    for (int64_t c = 0; c < cd; ++c) {
      float u = cb[c];
      for (int64_t k = std::max<int64_t>(0, K - 1 - t); k < K; ++k)
        u += cw[c * K + k] * act.proj[(i - (K - 1) + k) * cl.rows + cl.xbc + c];
      const float s = sigmoid(u);
      du[c] *= s * (1.0f + u * (1.0f - s));  // SiLU'(u)
    }
  }
#pragma omp parallel for schedule(static) if (n * cd * K >= kParallelWork)
  for (int64_t i = 0; i < n; ++i) {
    const int64_t t = i % T;
    float* dpre = dproj.data() + i * cl.rows + cl.xbc;
    for (int64_t k = 0; k < K; ++k) {
      const int64_t t_out = t + K - 1 - k;  // the output whose tap k reads token t
      if (t_out >= T) continue;
      const float* du = dxbc.data() + (i + K - 1 - k) * cd;
      for (int64_t c = 0; c < cd; ++c) dpre[c] += du[c] * cw[c * K + k];
    }
  }
  // dcw[c][k] += Σ_t du[t][c] pre[t-K+1+k][c],  dcb[c] += Σ_t du[t][c]: reductions over tokens, split
  // over channel blocks so threads never share a float.
  {
    float* dcw = grad.conv_w.ptr();
    float* dcb = grad.conv_b.ptr();
    constexpr int64_t kBlock = 64;
#pragma omp parallel for schedule(static) if (n * cd * K >= kParallelWork)
    for (int64_t c0 = 0; c0 < cd; c0 += kBlock) {
      const int64_t c1 = std::min(cd, c0 + kBlock);
      for (int64_t i = 0; i < n; ++i) {
        const int64_t t = i % T;
        const float* du = dxbc.data() + i * cd;
        for (int64_t c = c0; c < c1; ++c) dcb[c] += du[c];
        for (int64_t k = std::max<int64_t>(0, K - 1 - t); k < K; ++k) {
          const float* pre = act.proj + (i - (K - 1) + k) * cl.rows + cl.xbc;
          for (int64_t c = c0; c < c1; ++c) dcw[c * K + k] += du[c] * pre[c];
        }
      }
    }
  }

  // proj = x in_projᵀ
  cpu::linear_backward(x, w.in_proj.ptr(), dproj.data(), n, d.hidden, cl.rows, dx, grad.in_proj.ptr());
}

}  // namespace zebra
