#include "model/model.h"

#include <algorithm>

#include "kernels/cpu/ops.h"
#include "model/rope.h"
#include "model/row_plan.h"

namespace zebra {

const char* layer_kind_name(LayerKind k) {
  switch (k) {
    case LayerKind::Attention: return "attention";
    case LayerKind::Mla: return "mla";
    case LayerKind::Mamba2: return "mamba2";
  }
  return "?";
}

size_t Cache::bytes() const {
  size_t b = 0;
  for (const KvCache& c : kv) b += c.bytes();
  for (const MlaCache& c : latent) b += c.bytes();
  for (const Mamba2State& s : ssm) b += s.bytes();
  return b;
}

int64_t Model::layer_parameter_count(const Layer& l) const {
  int64_t n = l.input_norm.numel() + l.post_norm.numel();
  n += l.attn.wq.numel() + l.attn.wk.numel() + l.attn.wv.numel() + l.attn.wo.numel();
  n += l.mla.q_a.numel() + l.mla.q_a_norm.numel() + l.mla.q_b.numel() + l.mla.q_proj.numel() + l.mla.kv_a.numel() +
       l.mla.kv_a_norm.numel() + l.mla.kv_b.numel() + l.mla.out_proj.numel();
  n += l.mamba.in_proj.numel() + l.mamba.conv_w.numel() + l.mamba.conv_b.numel() + l.mamba.dt_bias.numel() +
       l.mamba.A_log.numel() + l.mamba.D.numel() + l.mamba.norm.numel() + l.mamba.out_proj.numel();
  n += l.mlp.gate.numel() + l.mlp.up.numel() + l.mlp.down.numel();
  return n;
}

int64_t Model::parameter_count() const {
  int64_t n = embed.numel() + norm.numel() + lm_head.numel();
  for (const Layer& l : layers) n += layer_parameter_count(l);
  return n;
}

int64_t Model::kv_bytes_per_token() const {
  int64_t elems = 0;
  for (const Layer& l : layers) {
    if (l.kind == LayerKind::Attention) elems += 2 * config.kv_dim();
    if (l.kind == LayerKind::Mla) elems += l.mla_dims.cache_width();
  }
  return elems * static_cast<int64_t>(sizeof(float));
}

int64_t Model::state_bytes_per_sequence() const {
  int64_t elems = 0;
  for (const Layer& l : layers)
    if (l.kind == LayerKind::Mamba2) elems += mamba_dims.state_elements();
  return elems * static_cast<int64_t>(sizeof(float));
}

Cache Model::make_cache(int64_t n_slots, int64_t n_ctx) const {
  Cache c;
  c.n_slots = n_slots, c.n_ctx = n_ctx;
  c.kv.resize(layers.size());
  c.latent.resize(layers.size());
  c.ssm.resize(layers.size());
  for (size_t i = 0; i < layers.size(); ++i) {
    switch (layers[i].kind) {
      case LayerKind::Attention: c.kv[i].allocate(n_slots, n_ctx, config.kv_dim()); break;
      case LayerKind::Mla: c.latent[i].allocate(n_slots, n_ctx, layers[i].mla_dims.cache_width()); break;
      case LayerKind::Mamba2: c.ssm[i].allocate(n_slots, mamba_dims); break;
    }
  }
  return c;
}

Tensor Model::forward(const Batch& batch, Cache& cache, ForwardTrace* trace) const {
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
  // The layers see the batch grouped by sequence (one contiguous run each); results go back in batch order.
  const RowPlan plan = plan_rows(batch);
  Batch rows;
  for (int64_t r = 0; r < n; ++r) rows.add(plan.tokens[r], batch.seq[plan.batch_index[r]], plan.pos[r], false);

  // x: [n, H] residual stream, in row order
  Tensor x({n, H});
  for (int64_t r = 0; r < n; ++r)
    std::copy_n(embed.ptr() + static_cast<int64_t>(plan.tokens[r]) * H, H, x.ptr() + r * H);

  // Copies row-ordered [n, H] activations into a batch-ordered tensor of the trace.
  auto to_batch_order = [&](const float* src) {
    Tensor t({n, H});
    for (int64_t r = 0; r < n; ++r) std::copy_n(src + r * H, H, t.ptr() + static_cast<int64_t>(plan.batch_index[r]) * H);
    return t;
  };
  std::vector<float> normed(n * H), branch(n * H);
  const float eps = static_cast<float>(config.rms_norm_eps);
  if (trace) {
    trace->layer_inputs.assign(layers.size(), Tensor());
    trace->mixer_outputs.assign(layers.size(), Tensor());
  }
  for (size_t li = 0; li < layers.size(); ++li) {
    const Layer& L = layers[li];
    if (trace) trace->layer_inputs[li] = to_batch_order(x.ptr());
    cpu::rmsnorm(x.ptr(), L.input_norm.ptr(), normed.data(), n, H, eps);
    switch (L.kind) {
      case LayerKind::Attention:
        attention_forward(config, L.attn, rope, rows, normed.data(), branch.data(), cache.kv[li]);
        break;
      case LayerKind::Mla:
        mla_forward(L.mla_dims, L.mla, L.mla_rope, rows, normed.data(), branch.data(), cache.latent[li], mla_mode);
        break;
      case LayerKind::Mamba2:
        mamba2_forward(mamba_dims, L.mamba, rows, normed.data(), branch.data(), cache.ssm[li]);
        break;
    }
    if (trace) trace->mixer_outputs[li] = to_batch_order(branch.data());
    cpu::add_inplace(x.ptr(), branch.data(), n * H);
    cpu::rmsnorm(x.ptr(), L.post_norm.ptr(), normed.data(), n, H, eps);
    mlp_forward(L.mlp, normed.data(), branch.data(), n, H, config.intermediate_size);
    cpu::add_inplace(x.ptr(), branch.data(), n * H);
  }

  if (trace) {
    cpu::rmsnorm(x.ptr(), norm.ptr(), normed.data(), n, H, eps);
    trace->final_hidden = to_batch_order(normed.data());
  }
  // Final norm and LM head only for the tokens that asked for logits, in batch order.
  const int64_t m = static_cast<int64_t>(plan.logit_rows.size());
  std::vector<float> sel(m * H);
  for (int64_t j = 0; j < m; ++j) std::copy_n(x.ptr() + static_cast<int64_t>(plan.logit_rows[j]) * H, H, sel.data() + j * H);
  cpu::rmsnorm(sel.data(), norm.ptr(), sel.data(), m, H, eps);
  Tensor logits({m, V});
  cpu::matmul_wt(sel.data(), head().ptr(), logits.ptr(), m, H, V);
  return logits;
}

}  // namespace zebra
