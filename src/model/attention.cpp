#include "model/attention.h"

#include <cmath>

#include "kernels/cpu/ops.h"

namespace zebra {

void KvCache::allocate(int64_t slots, int64_t ctx, int64_t dim) {
  n_slots = slots, n_ctx = ctx, kv_dim = dim;
  k.assign(slots * ctx * dim, 0.0f);
  v.assign(slots * ctx * dim, 0.0f);
}

void attention_forward(const LlamaConfig& cfg, const AttentionWeights& w, const RopeTable& rope,
                       const Batch& batch, const float* x, float* out, KvCache& cache) {
  const int64_t n = batch.size(), H = cfg.hidden_size, hd = cfg.head_dim;
  const int64_t nh = cfg.num_heads, nkv = cfg.num_kv_heads, group = nh / nkv;
  const int64_t qd = nh * hd, kvd = nkv * hd;

  std::vector<float> q(n * qd), k(n * kvd), v(n * kvd);
  cpu::matmul_wt(x, w.wq.ptr(), q.data(), n, H, qd);  // [n, nh*hd]
  cpu::matmul_wt(x, w.wk.ptr(), k.data(), n, H, kvd);  // [n, nkv*hd]
  cpu::matmul_wt(x, w.wv.ptr(), v.data(), n, H, kvd);

  // Rotate queries and keys, then store keys/values at their (slot, position).
#pragma omp parallel for if (n > 16)
  for (int64_t t = 0; t < n; ++t) {
    std::vector<float> cs(hd / 2), sn(hd / 2);
    rope.angles(batch.pos[t], cs.data(), sn.data());
    for (int64_t h = 0; h < nh; ++h) cpu::rope_rotate_half(&q[t * qd + h * hd], cs.data(), sn.data(), hd);
    for (int64_t h = 0; h < nkv; ++h) cpu::rope_rotate_half(&k[t * kvd + h * hd], cs.data(), sn.data(), hd);
    std::copy(&k[t * kvd], &k[(t + 1) * kvd], cache.k_at(batch.seq[t], batch.pos[t]));
    std::copy(&v[t * kvd], &v[(t + 1) * kvd], cache.v_at(batch.seq[t], batch.pos[t]));
  }

  // Causal attention of each (token, head) over positions 0..pos of its own sequence.
  std::vector<float> ctx(n * qd);
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  // Threads only pay off when there is real work: tiny models and short contexts run serially.
  int64_t work = 0;
  for (int64_t t = 0; t < n; ++t) work += (batch.pos[t] + 1) * nh * hd;
#pragma omp parallel if (work > (1 << 16))
  {
    std::vector<float> scores;
#pragma omp for collapse(2) schedule(dynamic)
    for (int64_t t = 0; t < n; ++t) {
      for (int64_t h = 0; h < nh; ++h) {
        const int64_t slot = batch.seq[t], len = batch.pos[t] + 1, g = h / group;
        const float* qh = &q[t * qd + h * hd];
        scores.resize(len);
        for (int64_t s = 0; s < len; ++s) scores[s] = cpu::dot(qh, cache.k_at(slot, s) + g * hd, hd) * scale;
        cpu::softmax_inplace(scores.data(), len);
        float* o = &ctx[t * qd + h * hd];
        std::fill(o, o + hd, 0.0f);
        for (int64_t s = 0; s < len; ++s) cpu::axpy(scores[s], cache.v_at(slot, s) + g * hd, o, hd);
      }
    }
  }
  cpu::matmul_wt(ctx.data(), w.wo.ptr(), out, n, qd, H);
}

}  // namespace zebra
