#include "model/model.h"

#include <algorithm>

#include "kernels/cpu/ops.h"
#include "model/rope.h"

namespace zebra {

const char* layer_kind_name(LayerKind k) {
  switch (k) {
    case LayerKind::Attention: return "attention";
  }
  return "?";
}

size_t Cache::bytes() const {
  size_t b = 0;
  for (const KvCache& c : kv) b += c.bytes();
  return b;
}

int64_t Model::parameter_count() const {
  int64_t n = embed.numel() + norm.numel() + lm_head.numel();
  for (const Layer& l : layers) {
    n += l.input_norm.numel() + l.post_norm.numel();
    n += l.attn.wq.numel() + l.attn.wk.numel() + l.attn.wv.numel() + l.attn.wo.numel();
    n += l.mlp.gate.numel() + l.mlp.up.numel() + l.mlp.down.numel();
  }
  return n;
}

int64_t Model::kv_bytes_per_token() const {
  int64_t b = 0;
  for (const Layer& l : layers)
    if (l.kind == LayerKind::Attention) b += 2 * config.kv_dim() * static_cast<int64_t>(sizeof(float));
  return b;
}

Cache Model::make_cache(int64_t n_slots, int64_t n_ctx) const {
  Cache c;
  c.n_slots = n_slots, c.n_ctx = n_ctx;
  c.kv.resize(layers.size());
  for (size_t i = 0; i < layers.size(); ++i)
    if (layers[i].kind == LayerKind::Attention) c.kv[i].allocate(n_slots, n_ctx, config.kv_dim());
  return c;
}

Tensor Model::forward(const Batch& batch, Cache& cache) const {
  const int64_t n = batch.size(), H = config.hidden_size, V = config.vocab_size;
  ZEBRA_CHECK(n > 0, "forward: empty batch");
  int64_t max_pos = 0;
  for (int64_t t = 0; t < n; ++t) {
    ZEBRA_CHECK(batch.tokens[t] >= 0 && batch.tokens[t] < V, "token id ", batch.tokens[t],
                " is outside the vocabulary [0, ", V, ")");
    ZEBRA_CHECK(batch.seq[t] >= 0 && batch.seq[t] < cache.n_slots, "sequence slot ", batch.seq[t],
                " is outside the cache's ", cache.n_slots, " slots");
    ZEBRA_CHECK(batch.pos[t] >= 0 && batch.pos[t] < cache.n_ctx, "position ", batch.pos[t],
                " exceeds the context size ", cache.n_ctx, " (use a larger -c)");
    max_pos = std::max<int64_t>(max_pos, batch.pos[t]);
  }
  const RopeTable rope = make_rope_table(config, config.head_dim, max_pos + 1);

  // x: [n, H] residual stream
  Tensor x({n, H});
  for (int64_t t = 0; t < n; ++t)
    std::copy_n(embed.ptr() + batch.tokens[t] * H, H, x.ptr() + t * H);

  std::vector<float> normed(n * H), branch(n * H);
  const float eps = static_cast<float>(config.rms_norm_eps);
  for (size_t li = 0; li < layers.size(); ++li) {
    const Layer& L = layers[li];
    cpu::rmsnorm(x.ptr(), L.input_norm.ptr(), normed.data(), n, H, eps);
    attention_forward(config, L.attn, rope, batch, normed.data(), branch.data(), cache.kv[li]);
    cpu::add_inplace(x.ptr(), branch.data(), n * H);
    cpu::rmsnorm(x.ptr(), L.post_norm.ptr(), normed.data(), n, H, eps);
    mlp_forward(L.mlp, normed.data(), branch.data(), n, H, config.intermediate_size);
    cpu::add_inplace(x.ptr(), branch.data(), n * H);
  }

  // Final norm and LM head only for the tokens that asked for logits.
  const int64_t m = batch.n_logits();
  std::vector<float> sel(m * H);
  for (int64_t t = 0, j = 0; t < n; ++t)
    if (batch.logits[t]) std::copy_n(x.ptr() + t * H, H, sel.data() + (j++) * H);
  cpu::rmsnorm(sel.data(), norm.ptr(), sel.data(), m, H, eps);
  Tensor logits({m, V});
  cpu::matmul_wt(sel.data(), head().ptr(), logits.ptr(), m, H, V);
  return logits;
}

}  // namespace zebra
