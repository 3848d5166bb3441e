#include "compose/init_mamba2.h"

#include <algorithm>
#include <cmath>
#include <random>

#include "core/error.h"

namespace zebra {

namespace {

// Uniform in [0, 1) from the top 53 bits: the same numbers on every platform (the standard library's
// distributions are implementation-defined).
double uniform01(std::mt19937_64& rng) { return static_cast<double>(rng() >> 11) * 0x1.0p-53; }
double uniform(std::mt19937_64& rng, double lo, double hi) { return lo + (hi - lo) * uniform01(rng); }

}  // namespace

Mamba2Weights init_mamba2_from_attention(const AttentionWeights& attn, const LlamaConfig& teacher,
                                         const Mamba2Dims& d, uint64_t seed, int64_t layer, const std::string& where) {
  const int64_t H = teacher.hidden_size, nh = teacher.num_heads, nkv = teacher.num_kv_heads, hd = teacher.head_dim;
  ZEBRA_CHECK(d.hidden == H && d.d_inner == nh * hd && d.d_xb == nkv * hd && d.d_state == hd && d.head_dim == hd,
              where, ": Mamba2 shape (hidden ", d.hidden, ", d_inner ", d.d_inner, ", d_xb ", d.d_xb, ", d_state ",
              d.d_state, ") must be (", H, ", nh*hd = ", nh * hd, ", nkv*hd = ", nkv * hd, ", hd = ", hd,
              ") to start from the teacher's attention");
  ZEBRA_CHECK(attn.wq.numel() == nh * hd * H && attn.wk.numel() == nkv * hd * H && attn.wv.numel() == nkv * hd * H &&
                  attn.wo.numel() == H * nh * hd,
              where, ": teacher attention weights do not match its config (q ", shape_str(attn.wq.shape), ", k ",
              shape_str(attn.wk.shape), ", v ", shape_str(attn.wv.shape), ", o ", shape_str(attn.wo.shape), ")");

  std::seed_seq sq{static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32), static_cast<uint32_t>(layer)};
  std::mt19937_64 rng(sq);
  Mamba2Weights w;
  const int64_t di = d.d_inner, dxb = d.d_xb, conv_dim = d.conv_dim();
  const double bound = 1.0 / std::sqrt(static_cast<double>(H));

  w.in_proj = Tensor({d.in_proj_rows(), H});  // [z | x | B | C | dt] rows
  float* p = w.in_proj.ptr();
  for (int64_t i = 0; i < di * H; ++i) p[i] = static_cast<float>(uniform(rng, -bound, bound));       // z
  std::copy_n(attn.wv.ptr(), dxb * H, p + di * H);                                                    // x <- W_v
  std::copy_n(attn.wk.ptr(), dxb * H, p + (di + dxb) * H);                                            // B <- W_k
  std::copy_n(attn.wq.ptr(), di * H, p + (di + 2 * dxb) * H);                                         // C <- W_q
  float* dt_rows = p + (2 * di + 2 * dxb) * H;
  for (int64_t i = 0; i < d.n_heads * H; ++i) dt_rows[i] = static_cast<float>(uniform(rng, -bound, bound));  // dt

  const double kb = 1.0 / std::sqrt(static_cast<double>(d.d_conv));
  w.conv_w = Tensor({conv_dim, d.d_conv});
  for (float& v : w.conv_w.data) v = static_cast<float>(uniform(rng, -kb, kb));
  w.conv_b = Tensor({conv_dim});
  for (float& v : w.conv_b.data) v = static_cast<float>(uniform(rng, -kb, kb));

  w.dt_bias = Tensor({d.n_heads});
  const double lo = std::log(1e-3), hi = std::log(1e-1);
  for (float& v : w.dt_bias.data) {
    double dt = std::max(std::exp(uniform(rng, lo, hi)), 1e-4);
    v = static_cast<float>(dt + std::log(-std::expm1(-dt)));  // softplus(v) == dt
  }
  w.A_log = Tensor({d.n_heads});
  for (float& v : w.A_log.data) v = static_cast<float>(std::log(uniform(rng, 1.0, 16.0)));
  w.D = Tensor({d.n_heads});
  std::fill(w.D.data.begin(), w.D.data.end(), 1.0f);
  w.norm = Tensor({di});
  std::fill(w.norm.data.begin(), w.norm.data.end(), 1.0f);
  w.out_proj = attn.wo;  // [H, d_inner]
  return w;
}

}  // namespace zebra
