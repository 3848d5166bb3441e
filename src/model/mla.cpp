// Multi-head Latent Attention forward on the CPU in fp32 (spec §1.3, §1.6).
//
// Notation (per token t, head h, kv head g = h / (n_heads / kv_heads)):
//   q^h = [q_nope^h (nope) | q_pe^h (rope)]            from q_b·norm(q_a·x) or q_proj·x
//   [c_kv (kv_rank) | kpe (rope)] = kv_a·x              c_kv after kv_a_norm when lora_norm
//   [k_nope^g (nope) | v^g (v)] = W_kvb^g · c_kv        W_kvb^g = kv_b rows of kv head g
//   score = softmax_scale * (q_nope^h·k_nope^g_s + q_pe^h·kpe_s),  s <= pos_t,  o^h = Σ p_s v^g_s
// The cache holds [c_kv | rotated kpe] per (slot, position). Two equivalent ways to attend:
//   decompressed: rebuild k_nope/v for all needed positions once per sequence (prefill);
//   absorbed:     q_lat^h = W_UK^gᵀ q_nope^h, score_nope = q_lat^h·c_kv_s, o^h = W_UV^g Σ p_s c_kv_s,
//                 with W_UK^g = kv_b rows [g*(nope+v), +nope) and W_UV^g = the next v rows, both
//                 [*, kv_rank] slices of kv_b read in place (decode: nothing per position is expanded).
// RoPE rotates the adjacent pairs (2j, 2j+1) of q_pe and kpe and writes them in split-half order
// [rotated evens | rotated odds], exactly the reference's layout, so the cache matches it entry by entry.
#include "model/mla.h"

#include <cblas.h>

#include <algorithm>
#include <cmath>

#include "kernels/cpu/ops.h"

namespace zebra {

int64_t MlaDims::parameter_count() const {
  const int64_t dq = q_head_dim();
  int64_t n = 0;
  if (q_rank > 0) {
    n += q_rank * hidden + n_heads * dq * q_rank;  // q_a, q_b
    if (lora_norm) n += q_rank;                     // q_a_layernorm
  } else {
    n += n_heads * dq * hidden;  // q_proj
  }
  n += (kv_rank + rope_dim) * hidden;             // kv_a_proj_with_mqa
  if (lora_norm) n += kv_rank;                    // kv_a_layernorm
  n += kv_heads * (nope_dim + v_dim) * kv_rank;   // kv_b_proj
  n += hidden * n_heads * v_dim;                  // out_proj
  return n;
}

namespace {

// DeepSeek's yarn_get_mscale.
double yarn_mscale(double scale, double mscale) { return scale <= 1.0 ? 1.0 : 0.1 * mscale * std::log(scale) + 1.0; }

// C[M, N] = A[M, K] · (B[N, K]ᵀ if trans_b else B[K, N]) (+ C if accumulate), row-major with leading
// dimensions, so strided views (a cache row's c_kv part, one kv head's rows of kv_b output) need no copy.
void gemm(bool trans_b, int64_t M, int64_t N, int64_t K, const float* a, int64_t lda, const float* b, int64_t ldb,
          float* c, int64_t ldc, bool accumulate = false) {
  if (M <= 0 || N <= 0) return;
  if (K <= 0) {
    if (!accumulate)
      for (int64_t i = 0; i < M; ++i) std::fill(c + i * ldc, c + i * ldc + N, 0.0f);
    return;
  }
  if (M * N * K < (1 << 17)) {
    // Decode-sized products (a few query rows per KV head): a plain loop. OpenBLAS would hand these to
    // its thread pool, and the wake-ups cost far more than the arithmetic (10x slower decode on 2 cores).
    for (int64_t i = 0; i < M; ++i) {
      float* ci = c + i * ldc;
      if (!accumulate) std::fill(ci, ci + N, 0.0f);
      if (trans_b) {
        for (int64_t j = 0; j < N; ++j) ci[j] += cpu::dot(a + i * lda, b + j * ldb, K);
      } else {
        for (int64_t k = 0; k < K; ++k) cpu::axpy(a[i * lda + k], b + k * ldb, ci, N);
      }
    }
    return;
  }
  cblas_sgemm(CblasRowMajor, CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans, (int)M, (int)N, (int)K, 1.0f, a,
              (int)lda, b, (int)ldb, accumulate ? 1.0f : 0.0f, c, (int)ldc);
}

// Rotates adjacent pairs (2j, 2j+1) of x[D] by pos*inv_freq[j], cos/sin scaled by mscale, and writes
// them in split-half order: out[j] = rotated x[2j], out[D/2 + j] = rotated x[2j+1]. In place via tmp.
void rope_interleaved(float* x, int64_t D, const float* cs, const float* sn, float* tmp) {
  const int64_t half = D / 2;
  for (int64_t j = 0; j < half; ++j) {
    const float e = x[2 * j], o = x[2 * j + 1];
    tmp[j] = e * cs[j] - o * sn[j];
    tmp[half + j] = o * cs[j] + e * sn[j];
  }
  std::copy(tmp, tmp + D, x);
}

// Masked, scaled softmax of `rows` score rows of width ld: row r may see positions 0..len[r]-1; the
// rest of the row is zeroed so a following GEMM over all columns ignores them.
void causal_softmax(float* s, int64_t rows, int64_t ld, const int64_t* len, float scale) {
#pragma omp parallel for if (rows * ld > (1 << 15))
  for (int64_t r = 0; r < rows; ++r) {
    float* row = s + r * ld;
    for (int64_t i = 0; i < len[r]; ++i) row[i] *= scale;
    cpu::softmax_inplace(row, len[r]);
    std::fill(row + len[r], row + ld, 0.0f);
  }
}

}  // namespace

void check_mla_weights(const MlaDims& d, const MlaWeights& w, const std::string& where) {
  ZEBRA_CHECK(d.hidden > 0 && d.n_heads > 0 && d.kv_heads > 0 && d.kv_rank > 0 && d.nope_dim >= 0 &&
                  d.v_dim > 0 && d.q_rank >= 0,
              where, ": MLA dims must be positive (hidden ", d.hidden, ", heads ", d.n_heads, ", kv_heads ",
              d.kv_heads, ", kv_rank ", d.kv_rank, ", nope ", d.nope_dim, ", v ", d.v_dim, ", q_rank ", d.q_rank,
              ")");
  ZEBRA_CHECK(d.rope_dim > 0 && d.rope_dim % 2 == 0, where, ": MLA rope dim must be positive and even, got ",
              d.rope_dim);
  ZEBRA_CHECK(d.n_heads % d.kv_heads == 0, where, ": MLA n_heads ", d.n_heads, " is not a multiple of kv_heads ",
              d.kv_heads);
  auto expect = [&](const Tensor& t, const char* name, std::vector<int64_t> shape) {
    ZEBRA_CHECK(t.shape == shape && t.numel() == Tensor::count(shape), where, ": MLA tensor ", name,
                " expected shape ", shape_str(shape), ", found ", shape_str(t.shape));
  };
  const int64_t dq = d.q_head_dim();
  if (d.q_rank > 0) {
    expect(w.q_a, "q_a_proj", {d.q_rank, d.hidden});
    expect(w.q_b, "q_b_proj", {d.n_heads * dq, d.q_rank});
    if (d.lora_norm) expect(w.q_a_norm, "q_a_layernorm", {d.q_rank});
  } else {
    expect(w.q_proj, "q_proj", {d.n_heads * dq, d.hidden});
  }
  expect(w.kv_a, "kv_a_proj_with_mqa", {d.kv_rank + d.rope_dim, d.hidden});
  if (d.lora_norm) expect(w.kv_a_norm, "kv_a_layernorm", {d.kv_rank});
  expect(w.kv_b, "kv_b_proj", {d.kv_heads * (d.nope_dim + d.v_dim), d.kv_rank});
  expect(w.out_proj, "out_proj", {d.hidden, d.n_heads * d.v_dim});
}

MlaRope make_mla_rope(const HybridConfig& h, const MlaDims& d) {
  const int64_t D = d.rope_dim, half = D / 2;
  ZEBRA_CHECK(D > 0 && D % 2 == 0, "MLA rope: qk_rope_head_dim must be positive and even, got ", D);
  ZEBRA_CHECK(h.rope_theta > 1.0, "MLA rope: rope_theta must be > 1, got ", h.rope_theta);
  const RopeScaling& y = h.mla_rope;
  const double base = h.rope_theta, factor = y.factor;
  MlaRope r;
  r.inv_freq.resize(half);
  // f_extra_j = base^(-2j/D) (original), f_inter_j = f_extra_j / factor (interpolated).
  for (int64_t j = 0; j < half; ++j) r.inv_freq[j] = (float)(1.0 / std::pow(base, (double)(2 * j) / D));
  r.softmax_scale = (float)(1.0 / std::sqrt((double)d.q_head_dim()));
  if (factor <= 1.0) return r;  // YaRN with factor <= 1 is plain RoPE, mscale 1

  const double orig = y.original_max_position_embeddings > 0 ? (double)y.original_max_position_embeddings
                                                              : (double)h.max_position_embeddings;
  ZEBRA_CHECK(orig > 0 && y.beta_fast > 0 && y.beta_slow > 0,
              "MLA rope: yarn needs original_max_position_embeddings, beta_fast and beta_slow > 0 (got ", orig,
              ", ", y.beta_fast, ", ", y.beta_slow, ")");
  // corr_dim(n) = D ln(orig / (2π n)) / (2 ln base): the dim whose wavelength fits n times in orig.
  auto corr_dim = [&](double n_rot) { return D * std::log(orig / (n_rot * 2.0 * M_PI)) / (2.0 * std::log(base)); };
  const double low = std::max(std::floor(corr_dim(y.beta_fast)), 0.0);
  const double high = std::min(std::ceil(corr_dim(y.beta_slow)), (double)(D - 1));
  const double span = (low == high) ? 0.001 : high - low;  // DeepSeek's linear_ramp guard
  for (int64_t j = 0; j < half; ++j) {
    // ramp 0 below low keeps the original frequency; ramp 1 above high divides it by the factor.
    const double ramp = std::clamp((j - low) / span, 0.0, 1.0);
    const double extra = 1.0 / std::pow(base, (double)(2 * j) / D), inter = extra / factor;
    r.inv_freq[j] = (float)(inter * ramp + extra * (1.0 - ramp));
  }
  r.mscale = (float)(yarn_mscale(factor, y.mscale) / yarn_mscale(factor, y.mscale_all_dim));
  if (y.mscale_all_dim > 0) {
    const double m = yarn_mscale(factor, y.mscale_all_dim);
    r.softmax_scale = (float)(r.softmax_scale * m * m);
  }
  return r;
}

void MlaCache::allocate(int64_t slots, int64_t ctx, int64_t w) {
  ZEBRA_CHECK(slots >= 0 && ctx >= 0 && w > 0, "MLA cache: bad size (slots ", slots, ", ctx ", ctx, ", width ", w,
              ")");
  n_slots = slots, n_ctx = ctx, width = w;
  latent.assign(static_cast<size_t>(slots * ctx * w), 0.0f);
}

void mla_forward(const MlaDims& d, const MlaWeights& w, const MlaRope& rope, const Batch& batch, const float* x,
                 float* out, MlaCache& cache, MlaMode mode) {
  check_mla_weights(d, w, "mla_forward");
  const int64_t n = batch.size(), H = d.hidden, nh = d.n_heads, nkv = d.kv_heads, group = nh / nkv;
  const int64_t dn = d.nope_dim, dr = d.rope_dim, dv = d.v_dim, dq = d.q_head_dim(), R = d.kv_rank;
  const int64_t W = d.cache_width(), kvw = nkv * (dn + dv);
  ZEBRA_CHECK((int64_t)batch.seq.size() == n && (int64_t)batch.pos.size() == n,
              "mla_forward: batch seq/pos arrays do not match its ", n, " tokens");
  ZEBRA_CHECK(cache.width == W, "mla_forward: cache width ", cache.width, " != kv_rank + rope_dim = ", W);
  ZEBRA_CHECK((int64_t)rope.inv_freq.size() == dr / 2, "mla_forward: rope has ", rope.inv_freq.size(),
              " frequencies, expected rope_dim/2 = ", dr / 2);
  ZEBRA_CHECK(cache.latent.size() == (size_t)(cache.n_slots * cache.n_ctx * W), "mla_forward: cache holds ",
              cache.latent.size(), " floats, expected slots*ctx*width = ", cache.n_slots * cache.n_ctx * W);
  if (n == 0) return;

  // Group the batch's tokens by sequence (order of first appearance), checking slots and positions.
  std::vector<int64_t> seq_ids;            // distinct slots
  std::vector<std::vector<int64_t>> toks;  // token indices of each, in batch order
  {
    std::vector<int64_t> where(cache.n_slots, -1);
    for (int64_t t = 0; t < n; ++t) {
      const int64_t s = batch.seq[t], p = batch.pos[t];
      ZEBRA_CHECK(s >= 0 && s < cache.n_slots, "mla_forward: token ", t, " has sequence slot ", s,
                  " but the MLA cache has ", cache.n_slots, " slots");
      ZEBRA_CHECK(p >= 0 && p < cache.n_ctx, "mla_forward: token ", t, " has position ", p,
                  " outside the MLA cache context of ", cache.n_ctx, " tokens");
      if (where[s] < 0) where[s] = (int64_t)seq_ids.size(), seq_ids.push_back(s), toks.emplace_back();
      auto& list = toks[where[s]];
      ZEBRA_CHECK(list.empty() || batch.pos[list.back()] < p, "mla_forward: sequence ", s, " position ", p,
                  " at token ", t, " does not follow position ", list.empty() ? -1 : batch.pos[list.back()]);
      list.push_back(t);
    }
  }

  // Queries: q [n, nh*dq], per head [q_nope (dn) | q_pe (dr)].
  std::vector<float> q(n * nh * dq);
  if (d.q_rank > 0) {
    std::vector<float> cq(n * d.q_rank);                                    // [n, q_rank]
    cpu::matmul_wt(x, w.q_a.ptr(), cq.data(), n, H, d.q_rank);
    if (d.lora_norm) cpu::rmsnorm(cq.data(), w.q_a_norm.ptr(), cq.data(), n, d.q_rank, (float)d.eps);
    cpu::matmul_wt(cq.data(), w.q_b.ptr(), q.data(), n, d.q_rank, nh * dq);  // [n, nh*dq]
  } else {
    cpu::matmul_wt(x, w.q_proj.ptr(), q.data(), n, H, nh * dq);  // [n, nh*dq]
  }
  // Latents: a [n, W] = [c_kv (R) | kpe (dr)].
  std::vector<float> a(n * W);
  cpu::matmul_wt(x, w.kv_a.ptr(), a.data(), n, H, W);

  // Normalise c_kv, rotate q_pe (every head) and kpe, store [c_kv | kpe] at (slot, pos).
#pragma omp parallel for if (n * nh * dr > (1 << 16))
  for (int64_t t = 0; t < n; ++t) {
    std::vector<float> cs(dr / 2), sn(dr / 2), tmp(dr);
    const float p = (float)batch.pos[t];
    for (int64_t j = 0; j < dr / 2; ++j) {
      const float ang = p * rope.inv_freq[j];  // fp32 angle, as the reference table
      cs[j] = std::cos(ang) * rope.mscale, sn[j] = std::sin(ang) * rope.mscale;
    }
    float* at = &a[t * W];
    if (d.lora_norm) cpu::rmsnorm(at, w.kv_a_norm.ptr(), at, 1, R, (float)d.eps);
    rope_interleaved(at + R, dr, cs.data(), sn.data(), tmp.data());
    for (int64_t h = 0; h < nh; ++h) rope_interleaved(&q[t * nh * dq + h * dq + dn], dr, cs.data(), sn.data(), tmp.data());
    std::copy(at, at + W, cache.at(batch.seq[t], batch.pos[t]));
  }

  std::vector<float> ctx(n * nh * dv);  // [n, nh*dv] concatenated head outputs
  // Gathers the query rows of kv head g for the tokens tk: rows (token i, head j) = q^{g*group+j}
  // into dst [tk.size()*group, dq]; len gets each row's visible length pos+1.
  auto gather_q = [&](const int64_t* tk, int64_t m, int64_t g, float* dst, int64_t* len) {
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < group; ++j) {
        const float* src = &q[tk[i] * nh * dq + (g * group + j) * dq];
        std::copy(src, src + dq, dst + (i * group + j) * dq);
        len[i * group + j] = batch.pos[tk[i]] + 1;
      }
  };
  // Scatters o rows (token i, head j) [m*group, dv] into ctx.
  auto scatter_o = [&](const int64_t* tk, int64_t m, int64_t g, const float* o) {
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < group; ++j) {
        const float* src = o + (i * group + j) * dv;
        std::copy(src, src + dv, &ctx[tk[i] * nh * dv + (g * group + j) * dv]);
      }
  };

  // Sequences attended in latent space; all their tokens are handled together per kv head.
  std::vector<int64_t> abs_tok, abs_first, abs_slot;  // tokens by sequence, each sequence's first row
  for (size_t i = 0; i < seq_ids.size(); ++i) {
    const bool absorbed = mode == MlaMode::Absorbed || (mode == MlaMode::Auto && toks[i].size() == 1);
    if (absorbed) {
      abs_first.push_back((int64_t)abs_tok.size()), abs_slot.push_back(seq_ids[i]);
      abs_tok.insert(abs_tok.end(), toks[i].begin(), toks[i].end());
      continue;
    }
    // ---- decompressed: one sequence, its m tokens, positions 0..L-1 ----
    const int64_t slot = seq_ids[i], m = (int64_t)toks[i].size(), L = batch.pos[toks[i].back()] + 1;
    const float* lat = cache.at(slot, 0);  // [L, W]
    std::vector<float> kv(L * kvw);        // [L, nkv*(dn+dv)] = c_kv [L, R] · kv_bᵀ
    gemm(true, L, kvw, R, lat, W, w.kv_b.ptr(), R, kv.data(), kvw);
    // Query chunks bound the score block to chunk*group x L floats.
    const int64_t chunk = std::max<int64_t>(1, std::min<int64_t>(m, (int64_t)(1 << 22) / std::max<int64_t>(1, group * L)));
    std::vector<float> qg(chunk * group * dq), sc(chunk * group * L), og(chunk * group * dv);
    std::vector<int64_t> len(chunk * group);
    for (int64_t c0 = 0; c0 < m; c0 += chunk) {
      const int64_t mc = std::min(chunk, m - c0), rows = mc * group;
      for (int64_t g = 0; g < nkv; ++g) {
        gather_q(&toks[i][c0], mc, g, qg.data(), len.data());  // [rows, dq]
        // scores [rows, L] = q_nope · k_nope^gᵀ + q_pe · kpeᵀ
        gemm(true, rows, L, dn, qg.data(), dq, &kv[g * (dn + dv)], kvw, sc.data(), L);
        gemm(true, rows, L, dr, qg.data() + dn, dq, lat + R, W, sc.data(), L, true);
        causal_softmax(sc.data(), rows, L, len.data(), rope.softmax_scale);
        // o [rows, dv] = p [rows, L] · v^g [L, dv]
        gemm(false, rows, dv, L, sc.data(), L, &kv[g * (dn + dv) + dn], kvw, og.data(), dv);
        scatter_o(&toks[i][c0], mc, g, og.data());
      }
    }
  }

  if (!abs_tok.empty()) {
    // ---- absorbed: all latent-space tokens at once for the projections, per sequence for scores ----
    const int64_t na = (int64_t)abs_tok.size(), rows = na * group;
    abs_first.push_back(na);
    std::vector<float> qg(rows * dq), qc(rows * W), ol(rows * R), og(rows * dv), sc;
    std::vector<int64_t> len(rows);
    for (int64_t g = 0; g < nkv; ++g) {
      const float* w_uk = w.kv_b.ptr() + g * (dn + dv) * R;  // [dn, R]
      const float* w_uv = w_uk + dn * R;                     // [dv, R]
      gather_q(abs_tok.data(), na, g, qg.data(), len.data());  // [rows, dq]
      // qc [rows, W] = [q_lat = q_nope · W_UK^g (R) | q_pe (dr)], matching cache rows [c_kv | kpe].
      gemm(false, rows, R, dn, qg.data(), dq, w_uk, R, qc.data(), W);
      for (int64_t r = 0; r < rows; ++r) std::copy(&qg[r * dq + dn], &qg[(r + 1) * dq], &qc[r * W + R]);
      for (size_t si = 0; si + 1 < abs_first.size(); ++si) {
        const int64_t r0 = abs_first[si] * group, rs = (abs_first[si + 1] - abs_first[si]) * group;
        const int64_t L = len[r0 + rs - 1];  // last token of the sequence sees the most
        const float* lat = cache.at(abs_slot[si], 0);  // [L, W]
        sc.resize(rs * L);
        gemm(true, rs, L, W, &qc[r0 * W], W, lat, W, sc.data(), L);  // scores [rs, L]
        causal_softmax(sc.data(), rs, L, &len[r0], rope.softmax_scale);
        gemm(false, rs, R, L, sc.data(), L, lat, W, &ol[r0 * R], R);  // o_lat [rs, R] = p · c_kv
      }
      gemm(true, rows, dv, R, ol.data(), R, w_uv, R, og.data(), dv);  // o [rows, dv] = o_lat · W_UV^gᵀ
      scatter_o(abs_tok.data(), na, g, og.data());
    }
  }

  cpu::matmul_wt(ctx.data(), w.out_proj.ptr(), out, n, nh * dv, H);  // [n, hidden]
}

}  // namespace zebra
