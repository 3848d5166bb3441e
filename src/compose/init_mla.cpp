#include "compose/init_mla.h"

#include <algorithm>
#include <string>

#include "compose/svd.h"
#include "core/error.h"

namespace zebra {

namespace {

void check_shape(const Tensor& t, int64_t rows, int64_t cols, const std::string& where, const char* name) {
  ZEBRA_CHECK(t.rank() == 2 && t.dim(0) == rows && t.dim(1) == cols, where, ": teacher ", name, " has shape ",
              shape_str(t.shape), ", expected [", rows, ", ", cols, "]");
}

// Rows [r0, r0 + n) of a row-major fp32 matrix with `cols` columns, appended to `dst` as double.
void append_rows(std::vector<double>& dst, const Tensor& t, int64_t r0, int64_t n) {
  const int64_t cols = t.dim(1);
  const float* p = t.ptr() + r0 * cols;
  dst.insert(dst.end(), p, p + n * cols);
}

}  // namespace

MlaInit init_mla_from_attention(const AttentionWeights& attn, const LlamaConfig& teacher, const MlaDims& dims,
                                const MlaInitOptions& opts, const std::string& where) {
  const int64_t H = teacher.hidden_size, nh = teacher.num_heads, nkv = teacher.num_kv_heads, hd = teacher.head_dim;
  check_shape(attn.wq, nh * hd, H, where, "q_proj");
  check_shape(attn.wk, nkv * hd, H, where, "k_proj");
  check_shape(attn.wv, nkv * hd, H, where, "v_proj");
  check_shape(attn.wo, H, nh * hd, where, "o_proj");
  const int64_t dn = dims.nope_dim, dr = dims.rope_dim, dv = dims.v_dim, kvh = dims.kv_heads;
  ZEBRA_CHECK(dims.hidden == H && dims.n_heads == nh, where, ": MLA shape (hidden ", dims.hidden, ", heads ",
              dims.n_heads, ") does not match the teacher (hidden ", H, ", heads ", nh, ")");
  ZEBRA_CHECK(kvh == nkv || kvh == nh, where, ": MLA kv heads must be the teacher's ", nkv,
              " (GQA-MLA) or its ", nh, " query heads (full kv head), got ", kvh);
  ZEBRA_CHECK(dr > 0 && dr % 2 == 0, where, ": rope dim must be positive and even, got ", dr);
  ZEBRA_CHECK(dn >= 0 && dn + dr <= hd, where, ": nope dim ", dn, " + rope dim ", dr,
              " must fit the teacher's head dim ", hd, " (nope = the first rows of each head, rope = the last)");
  ZEBRA_CHECK(dv == hd, where, ": v dim must equal the teacher's head dim ", hd, " (o_proj is reused as out_proj), got ",
              dv);

  MlaInit out;
  out.dims = dims;
  MlaWeights& w = out.weights;
  const int64_t dq = dn + dr;
  // Row of W_q / U (teacher head layout) that MLA query row j (< dq) of head h comes from.
  auto q_src = [&](int64_t h, int64_t j) { return h * hd + (j < dn ? j : hd - dr + (j - dn)); };

  // ---- query ----
  const bool q_svd = opts.q_energy > 0 || dims.q_rank > 0;
  if (!q_svd) {
    w.q_proj = Tensor({nh * dq, H});  // [nh*(nope+rope), H]: the selected rows of W_q
    for (int64_t h = 0; h < nh; ++h)
      for (int64_t j = 0; j < dq; ++j)
        std::copy_n(attn.wq.ptr() + q_src(h, j) * H, H, w.q_proj.ptr() + (h * dq + j) * H);
  } else {
    std::vector<double> a;
    a.reserve(nh * hd * H);
    append_rows(a, attn.wq, 0, nh * hd);
    Svd s = thin_svd(a, nh * hd, H, (where + " q_proj").c_str());
    // Energy ranks are also capped by q_b's rows (a wider latent than the output adds nothing).
    int64_t r = opts.q_energy > 0 ? std::min(energy_rank(s.S, opts.q_energy, opts.rank_divisor), nh * dq) : dims.q_rank;
    ZEBRA_CHECK(r >= 1 && r <= s.k, where, ": q rank ", r, " exceeds what W_q [", nh * hd, ", ", H,
                "] allows (at most ", s.k, ")");
    out.dims.q_rank = r;
    w.q_a = Tensor({r, H});  // [r, H] = S[:r] V^T[:r]
    for (int64_t i = 0; i < r; ++i)
      for (int64_t c = 0; c < H; ++c) w.q_a.data[i * H + c] = static_cast<float>(s.S[i] * s.Vt[i * H + c]);
    w.q_b = Tensor({nh * dq, r});  // [nh*dq, r] = selected rows of U[:, :r]
    for (int64_t h = 0; h < nh; ++h)
      for (int64_t j = 0; j < dq; ++j)
        for (int64_t i = 0; i < r; ++i)
          w.q_b.data[(h * dq + j) * r + i] = static_cast<float>(s.U[q_src(h, j) * s.k + i]);
  }

  // ---- keys and values ----
  const int64_t group = kvh / nkv;  // MLA kv heads per teacher kv head (1 for GQA-MLA)
  std::vector<double> m;            // [2*kvh*hd, H] = [K_rep; V_rep]
  m.reserve(2 * kvh * hd * H);
  for (int64_t g = 0; g < kvh; ++g) append_rows(m, attn.wk, (g / group) * hd, hd);
  for (int64_t g = 0; g < kvh; ++g) append_rows(m, attn.wv, (g / group) * hd, hd);
  Svd s = thin_svd(m, 2 * kvh * hd, H, (where + " [k_proj; v_proj]").c_str());
  int64_t r = opts.kv_energy > 0 ? std::min(energy_rank(s.S, opts.kv_energy, opts.rank_divisor), kvh * (dn + dv))
                                  : dims.kv_rank;
  ZEBRA_CHECK(r >= 1 && r <= s.k, where, ": kv rank ", r, " exceeds what [W_k; W_v] [", 2 * kvh * hd, ", ", H,
              "] allows (at most ", s.k, ")");
  out.dims.kv_rank = r;

  w.kv_a = Tensor({r + dr, H});  // [r + rope, H]: latent rows, then the shared rope-key rows
  for (int64_t i = 0; i < r; ++i)
    for (int64_t c = 0; c < H; ++c) w.kv_a.data[i * H + c] = static_cast<float>(s.S[i] * s.Vt[i * H + c]);
  for (int64_t j = 0; j < dr; ++j) {
    const int64_t row = hd - dr + j;  // last rope rows of the head-averaged key
    for (int64_t c = 0; c < H; ++c) {
      double acc = 0;
      for (int64_t g = 0; g < nkv; ++g) acc += attn.wk.data[(g * hd + row) * H + c];
      w.kv_a.data[(r + j) * H + c] = static_cast<float>(acc / static_cast<double>(nkv));
    }
  }
  const int64_t per = dn + dv;
  w.kv_b = Tensor({kvh * per, r});  // [kvh*(nope+v), r]
  for (int64_t g = 0; g < kvh; ++g) {
    for (int64_t j = 0; j < dn; ++j)
      for (int64_t i = 0; i < r; ++i) w.kv_b.data[(g * per + j) * r + i] = static_cast<float>(s.U[(g * hd + j) * s.k + i]);
    for (int64_t j = 0; j < dv; ++j)
      for (int64_t i = 0; i < r; ++i)
        w.kv_b.data[(g * per + dn + j) * r + i] = static_cast<float>(s.U[(kvh * hd + g * hd + j) * s.k + i]);
  }

  w.out_proj = attn.wo;  // [H, nh*v]
  if (dims.lora_norm) {
    if (q_svd) w.q_a_norm = Tensor({out.dims.q_rank});
    w.kv_a_norm = Tensor({r});
    std::fill(w.q_a_norm.data.begin(), w.q_a_norm.data.end(), 1.0f);
    std::fill(w.kv_a_norm.data.begin(), w.kv_a_norm.data.end(), 1.0f);
  }
  return out;
}

}  // namespace zebra
