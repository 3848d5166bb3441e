// MLA training forward and backward on the CPU in fp32 (spec §1.3), for distillation.
//
// Layout: B packed rows of T tokens, n = B*T; row b's token t sits at x[b*T + t] with position t, and
// attends causally to tokens 0..t of its own row. There is no cache: keys and values are decompressed
// (kv = c_kv · kv_bᵀ per token) because every position is a query and a key at once, so the absorbed
// form would save nothing. Notation as in mla.cpp:
//   q^h = [q_nope^h | rope(q_pe^h)] from q_b·norm(q_a·x) or q_proj·x                  [n, nh*dq]
//   c_kv = norm(kv_a[:R]·x), kpe = rope(kv_a[R:]·x)                                   [n, R], [n, dr]
//   [k_nope^g | v^g] = kv_b^g · c_kv,  g = h / (nh / nkv)                            [n, nkv*(dn+dv)]
//   P^h = causal_softmax(scale * (q_nope^h k_nope^gᵀ + q_pe^h kpeᵀ))                 [T, T] per row
//   o^h = P^h v^g,  out = out_proj · [o^0 .. o^{nh-1}]                               [n, hidden]
// The forward saves every intermediate the backward reads (MlaActivations) in the step's Arena,
// including the attention probabilities, so the backward recomputes nothing: B*nh*T² floats, the
// dominant term for long rows (a flash-style backward would keep a logsumexp per row instead).
#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/cpu/grad_ops.h"
#include "kernels/cpu/ops.h"
#include "model/mla.h"

namespace zebra {

namespace {

// C[M, N] = op(A)·op(B) + beta·C, row-major with leading dimensions, so strided views (one head's
// columns of q, one kv head's columns of kv) need no copy. op(A) is [M, K], op(B) is [K, N].
// Called inside the (row, head) parallel loops, where OpenBLAS runs single-threaded.
void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, const float* a, int64_t lda, const float* b,
          int64_t ldb, float beta, float* c, int64_t ldc) {
  if (M <= 0 || N <= 0) return;
  if (K <= 0) {  // an empty product (nope_dim 0): only the beta scaling remains
    if (beta == 0.0f)
      for (int64_t i = 0; i < M; ++i) std::fill(c + i * ldc, c + i * ldc + N, 0.0f);
    return;
  }
  cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans, (int)M,
              (int)N, (int)K, 1.0f, a, (int)lda, b, (int)ldb, beta, c, (int)ldc);
}

// cos/sin [T, dr/2] of positions 0..T-1, scaled by mscale, with the fp32 angle of mla_forward.
void rope_tables(const MlaRope& rope, int64_t T, int64_t dr, std::vector<float>& cs, std::vector<float>& sn) {
  const int64_t half = dr / 2;
  cs.resize(T * half), sn.resize(T * half);
  for (int64_t t = 0; t < T; ++t)
    for (int64_t j = 0; j < half; ++j) {
      const float ang = (float)t * rope.inv_freq[j];
      cs[t * half + j] = std::cos(ang) * rope.mscale, sn[t * half + j] = std::sin(ang) * rope.mscale;
    }
}

// Forward (as mla.cpp): adjacent pairs (x[2j], x[2j+1]) rotated, written split-half:
//   y[j] = x[2j] c - x[2j+1] s,   y[D/2 + j] = x[2j+1] c + x[2j] s.
void rope_forward(float* x, int64_t D, const float* cs, const float* sn) {
  const int64_t half = D / 2;
  float tmp[512];  // D <= 512: rope dims are 32-64 in every released config
  for (int64_t j = 0; j < half; ++j) {
    const float e = x[2 * j], o = x[2 * j + 1];
    tmp[j] = e * cs[j] - o * sn[j];
    tmp[half + j] = o * cs[j] + e * sn[j];
  }
  std::copy(tmp, tmp + D, x);
}

// Its transpose, in place: a gradient on y (split-half order) becomes a gradient on x (pair order).
// cos/sin carry mscale, so this is not a pure rotation: the transpose, not the inverse.
void rope_backward(float* g, int64_t D, const float* cs, const float* sn) {
  const int64_t half = D / 2;
  float tmp[512];
  for (int64_t j = 0; j < half; ++j) {
    const float ga = g[j], gb = g[half + j];
    tmp[2 * j] = ga * cs[j] + gb * sn[j];
    tmp[2 * j + 1] = gb * cs[j] - ga * sn[j];
  }
  std::copy(tmp, tmp + D, g);
}

}  // namespace

int64_t mla_activation_floats(const MlaDims& d, int64_t B, int64_t T) {
  const int64_t n = B * T, norms = d.lora_norm ? 2 : 1;  // with norms, the raw and normed latents
  int64_t f = 0;
  if (d.q_rank > 0) f += norms * n * d.q_rank;                      // cq_raw?, cq
  f += n * d.n_heads * d.q_head_dim();                              // q
  f += norms * n * d.kv_rank;                                       // ckv_raw?, ckv
  f += n * d.rope_dim;                                              // kpe
  f += n * d.kv_heads * (d.nope_dim + d.v_dim);                     // kv
  f += B * d.n_heads * T * T;                                       // probs
  f += n * d.n_heads * d.v_dim;                                     // ctx
  return f;
}

void mla_train_forward(const MlaDims& d, const MlaWeights& w, const MlaRope& rope, int64_t B, int64_t T,
                       const float* x, float* out, Arena& arena, MlaActivations& act) {
  check_mla_weights(d, w, "mla_train_forward");
  ZEBRA_CHECK(B >= 0 && T >= 0, "mla_train_forward: bad batch ", B, " x ", T);
  ZEBRA_CHECK((int64_t)rope.inv_freq.size() == d.rope_dim / 2 && d.rope_dim <= 512, "mla_train_forward: rope has ",
              rope.inv_freq.size(), " frequencies, expected rope_dim/2 = ", d.rope_dim / 2, " (rope_dim <= 512)");
  const int64_t n = B * T, H = d.hidden, nh = d.n_heads, group = nh / d.kv_heads;
  const int64_t dn = d.nope_dim, dr = d.rope_dim, dv = d.v_dim, dq = d.q_head_dim(), R = d.kv_rank;
  const int64_t qw = nh * dq, kvw = d.kv_heads * (dn + dv), cw = nh * dv;  // row widths of q, kv, ctx
  const float eps = (float)d.eps;
  act = MlaActivations{};
  if (n == 0) return;

  // Queries q [n, qw].
  act.q = arena.take(n * qw, "mla q");
  if (d.q_rank > 0) {
    const int64_t Q = d.q_rank;
    act.cq = arena.take(n * Q, "mla cq");  // [n, Q]
    if (d.lora_norm) {
      act.cq_raw = arena.take(n * Q, "mla cq_raw");  // [n, Q] kept for the norm's backward
      cpu::matmul_wt(x, w.q_a.ptr(), act.cq_raw, n, H, Q);
      cpu::rmsnorm(act.cq_raw, w.q_a_norm.ptr(), act.cq, n, Q, eps);
    } else {
      cpu::matmul_wt(x, w.q_a.ptr(), act.cq, n, H, Q);
    }
    cpu::matmul_wt(act.cq, w.q_b.ptr(), act.q, n, Q, qw);
  } else {
    cpu::matmul_wt(x, w.q_proj.ptr(), act.q, n, H, qw);
  }

  // Latent c_kv [n, R] and rope key [n, dr]: kv_a's first R rows and its last dr rows, as two products.
  act.ckv = arena.take(n * R, "mla ckv");
  act.kpe = arena.take(n * dr, "mla kpe");
  if (d.lora_norm) {
    act.ckv_raw = arena.take(n * R, "mla ckv_raw");
    cpu::matmul_wt(x, w.kv_a.ptr(), act.ckv_raw, n, H, R);
    cpu::rmsnorm(act.ckv_raw, w.kv_a_norm.ptr(), act.ckv, n, R, eps);
  } else {
    cpu::matmul_wt(x, w.kv_a.ptr(), act.ckv, n, H, R);
  }
  cpu::matmul_wt(x, w.kv_a.ptr() + R * H, act.kpe, n, H, dr);

  // Rotate q_pe of every head and kpe; token i has position i % T.
  std::vector<float> cs, sn;  // [T, dr/2]
  rope_tables(rope, T, dr, cs, sn);
#pragma omp parallel for if (n * nh * dr > (1 << 16))
  for (int64_t i = 0; i < n; ++i) {
    const float* c = &cs[(i % T) * (dr / 2)];
    const float* s = &sn[(i % T) * (dr / 2)];
    rope_forward(act.kpe + i * dr, dr, c, s);
    for (int64_t h = 0; h < nh; ++h) rope_forward(act.q + i * qw + h * dq + dn, dr, c, s);
  }

  // Decompressed keys/values kv [n, kvw] = c_kv · kv_bᵀ.
  act.kv = arena.take(n * kvw, "mla kv");
  cpu::matmul_wt(act.ckv, w.kv_b.ptr(), act.kv, n, R, kvw);

  // Attention per (row b, head h): scores straight into the saved probs, softmax in place, o^h into ctx.
  act.probs = arena.take(B * nh * T * T, "mla probs");
  act.ctx = arena.take(n * cw, "mla ctx");
#pragma omp parallel for collapse(2) if (B * nh > 1)
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < nh; ++h) {
      const int64_t g = h / group;
      const float* qh = act.q + b * T * qw + h * dq;         // [T, dq] rows of stride qw
      const float* kn = act.kv + b * T * kvw + g * (dn + dv);  // k_nope^g [T, dn], stride kvw
      const float* vg = kn + dn;                               // v^g [T, dv], stride kvw
      const float* kp = act.kpe + b * T * dr;                  // kpe [T, dr]
      float* p = act.probs + (b * nh + h) * T * T;             // [T, T]
      gemm(false, true, T, T, dn, qh, qw, kn, kvw, 0.0f, p, T);       // q_nope · k_nopeᵀ
      gemm(false, true, T, T, dr, qh + dn, qw, kp, dr, 1.0f, p, T);   //  + q_pe · kpeᵀ
      for (int64_t t = 0; t < T; ++t) {  // row t sees keys 0..t
        float* row = p + t * T;
        for (int64_t s = 0; s <= t; ++s) row[s] *= rope.softmax_scale;
        cpu::softmax_inplace(row, t + 1);
        std::fill(row + t + 1, row + T, 0.0f);  // zeros above the diagonal: P·V may run over all columns
      }
      gemm(false, false, T, dv, T, p, T, vg, kvw, 0.0f, act.ctx + b * T * cw + h * dv, cw);  // o^h [T, dv]
    }

  cpu::matmul_wt(act.ctx, w.out_proj.ptr(), out, n, cw, H);  // [n, hidden]
}

void mla_backward(const MlaDims& d, const MlaWeights& w, const MlaRope& rope, int64_t B, int64_t T, const float* x,
                  const MlaActivations& act, const float* dout, float* dx, MlaWeights& grad) {
  check_mla_weights(d, w, "mla_backward (weights)");
  check_mla_weights(d, grad, "mla_backward (gradients)");
  const int64_t n = B * T, H = d.hidden, nh = d.n_heads, nkv = d.kv_heads, group = nh / nkv;
  const int64_t dn = d.nope_dim, dr = d.rope_dim, dv = d.v_dim, dq = d.q_head_dim(), R = d.kv_rank;
  const int64_t qw = nh * dq, kvw = nkv * (dn + dv), cw = nh * dv;
  const float eps = (float)d.eps, scale = rope.softmax_scale;
  ZEBRA_CHECK((int64_t)rope.inv_freq.size() == dr / 2 && dr <= 512, "mla_backward: rope has ", rope.inv_freq.size(),
              " frequencies, expected rope_dim/2 = ", dr / 2, " (rope_dim <= 512)");
  if (n == 0) return;
  ZEBRA_CHECK(act.q && act.ckv && act.kpe && act.kv && act.probs && act.ctx && (d.q_rank == 0 || act.cq) &&
                  (!d.lora_norm || (act.ckv_raw && (d.q_rank == 0 || act.cq_raw))),
              "mla_backward: activations missing (run mla_train_forward with the same dims first)");

  // out = ctx · out_projᵀ.
  std::vector<float> dctx(n * cw, 0.0f);  // [n, nh*dv]
  cpu::linear_backward(act.ctx, w.out_proj.ptr(), dout, n, cw, H, dctx.data(), grad.out_proj.ptr());

  // Attention, per (row b, kv head g): the heads of one group share k_nope^g and v^g, so their key and
  // value gradients are summed inside one task, and no two tasks write the same dkv entries. kpe is
  // shared by all kv heads, so each g sums its part into its own slice, reduced afterwards.
  std::vector<float> dqv(n * qw, 0.0f);           // [n, qw] gradient of the rotated queries
  std::vector<float> dkv(n * kvw, 0.0f);          // [n, kvw]
  std::vector<float> dkpe_g(nkv * n * dr, 0.0f);  // [nkv, n, dr]
#pragma omp parallel if (B * nkv > 1)
  {
    std::vector<float> dp(T * T), ds(T * T);  // [T, T] per thread
#pragma omp for collapse(2)
    for (int64_t b = 0; b < B; ++b)
      for (int64_t g = 0; g < nkv; ++g) {
        const float* kn = act.kv + b * T * kvw + g * (dn + dv);  // k_nope^g [T, dn], stride kvw
        const float* vg = kn + dn;                               // v^g [T, dv]
        const float* kp = act.kpe + b * T * dr;                  // kpe [T, dr]
        float* dkn = dkv.data() + b * T * kvw + g * (dn + dv);   // [T, dn]
        float* dvg = dkn + dn;                                   // [T, dv]
        float* dkp = dkpe_g.data() + (g * n + b * T) * dr;       // [T, dr]
        for (int64_t h = g * group; h < (g + 1) * group; ++h) {
          const float* qh = act.q + b * T * qw + h * dq;              // [T, dq]
          const float* p = act.probs + (b * nh + h) * T * T;          // [T, T]
          const float* doh = dctx.data() + b * T * cw + h * dv;       // [T, dv], stride cw
          float* dqh = dqv.data() + b * T * qw + h * dq;              // [T, dq]
          gemm(true, false, T, dv, T, p, T, doh, cw, 1.0f, dvg, kvw);  // dv^g += Pᵀ · do^h
          gemm(false, true, T, T, dv, doh, cw, vg, kvw, 0.0f, dp.data(), T);  // dP = do^h · v^gᵀ
          // dS = scale * softmax_backward(P, dP) on the visible part of each row; the rest stays 0.
          std::fill(ds.begin(), ds.end(), 0.0f);
          for (int64_t t = 0; t < T; ++t) {
            float* row = &ds[t * T];
            cpu::softmax_backward(p + t * T, &dp[t * T], t + 1, row);
            for (int64_t s = 0; s <= t; ++s) row[s] *= scale;
          }
          gemm(false, false, T, dn, T, ds.data(), T, kn, kvw, 0.0f, dqh, qw);       // dq_nope = dS · k_nope
          gemm(false, false, T, dr, T, ds.data(), T, kp, dr, 0.0f, dqh + dn, qw);   // dq_pe = dS · kpe
          gemm(true, false, T, dn, T, ds.data(), T, qh, qw, 1.0f, dkn, kvw);        // dk_nope += dSᵀ · q_nope
          gemm(true, false, T, dr, T, ds.data(), T, qh + dn, qw, 1.0f, dkp, dr);    // dkpe += dSᵀ · q_pe
        }
      }
  }

  // Un-rotate the rope gradients: dkpe (summed over kv heads) and every head's dq_pe.
  std::vector<float> cs, sn;
  rope_tables(rope, T, dr, cs, sn);
  std::vector<float> dkpe(n * dr, 0.0f);  // [n, dr] gradient of kv_a's rope rows' output
  for (int64_t g = 0; g < nkv; ++g) cpu::add_inplace(dkpe.data(), &dkpe_g[g * n * dr], n * dr);
#pragma omp parallel for if (n * nh * dr > (1 << 16))
  for (int64_t i = 0; i < n; ++i) {
    const float* c = &cs[(i % T) * (dr / 2)];
    const float* s = &sn[(i % T) * (dr / 2)];
    rope_backward(&dkpe[i * dr], dr, c, s);
    for (int64_t h = 0; h < nh; ++h) rope_backward(&dqv[i * qw + h * dq + dn], dr, c, s);
  }

  // Keys/values: kv = c_kv · kv_bᵀ, c_kv = norm(kv_a[:R] · x); kpe = kv_a[R:] · x.
  std::vector<float> dckv(n * R, 0.0f);  // [n, R]
  cpu::linear_backward(act.ckv, w.kv_b.ptr(), dkv.data(), n, R, kvw, dckv.data(), grad.kv_b.ptr());
  if (d.lora_norm) {
    std::vector<float> draw(n * R, 0.0f);  // [n, R] before the norm
    cpu::rmsnorm_backward(act.ckv_raw, w.kv_a_norm.ptr(), dckv.data(), n, R, eps, draw.data(), grad.kv_a_norm.ptr());
    dckv.swap(draw);
  }
  cpu::linear_backward(x, w.kv_a.ptr(), dckv.data(), n, H, R, dx, grad.kv_a.ptr());
  cpu::linear_backward(x, w.kv_a.ptr() + R * H, dkpe.data(), n, H, dr, dx, grad.kv_a.ptr() + R * H);

  // Queries: q = q_b · norm(q_a · x) or q_proj · x.
  if (d.q_rank > 0) {
    const int64_t Q = d.q_rank;
    std::vector<float> dcq(n * Q, 0.0f);  // [n, Q]
    cpu::linear_backward(act.cq, w.q_b.ptr(), dqv.data(), n, Q, qw, dcq.data(), grad.q_b.ptr());
    if (d.lora_norm) {
      std::vector<float> draw(n * Q, 0.0f);  // [n, Q] before the norm
      cpu::rmsnorm_backward(act.cq_raw, w.q_a_norm.ptr(), dcq.data(), n, Q, eps, draw.data(), grad.q_a_norm.ptr());
      dcq.swap(draw);
    }
    cpu::linear_backward(x, w.q_a.ptr(), dcq.data(), n, H, Q, dx, grad.q_a.ptr());
  } else {
    cpu::linear_backward(x, w.q_proj.ptr(), dqv.data(), n, H, qw, dx, grad.q_proj.ptr());
  }
}

}  // namespace zebra
