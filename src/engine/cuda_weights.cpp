#include "engine/cuda_weights.h"

#include <cuda_runtime_api.h>

#include "kernels/cuda/check.h"

namespace zebra::cuda {

namespace {

// Host conversion into T, then one synchronous copy (loading is not the hot path).
template <class T>
void put(T* dst, const Tensor& t, int64_t offset_elems = 0) {
  if (t.numel() == 0) return;
  ZEBRA_CHECK(dst, "upload_weights: no device room for a tensor of shape ", shape_str(t.shape));
  std::vector<T> host(static_cast<size_t>(t.numel()));
  const float* src = t.ptr();
  const int64_t n = t.numel();
#pragma omp parallel for schedule(static) if (n > (1 << 20))
  for (int64_t i = 0; i < n; ++i) host[i] = from_f32<T>(src[i]);
  ZEBRA_CUDA_CHECK(cudaMemcpy(dst + offset_elems, host.data(), static_cast<size_t>(n) * sizeof(T), cudaMemcpyHostToDevice));
}

void put_f32(float* dst, const std::vector<float>& v) {
  if (v.empty()) return;
  ZEBRA_CUDA_CHECK(cudaMemcpy(dst, v.data(), v.size() * sizeof(float), cudaMemcpyHostToDevice));
}

}  // namespace

template <class T>
void take_weights(const Model& m, DeviceArena& a, DevWeights<T>& w) {
  const LlamaConfig& c = m.config;
  const int64_t H = c.hidden_size, I = c.intermediate_size, V = c.vocab_size;
  w.embed = a.take<T>(V * H);
  w.head = m.lm_head.empty() ? w.embed : a.take<T>(V * H);
  w.norm = a.take<float>(H);
  w.layers.assign(m.layers.size(), DevLayer<T>{});
  for (size_t i = 0; i < m.layers.size(); ++i) {
    const Layer& L = m.layers[i];
    DevLayer<T>& d = w.layers[i];
    d.kind = L.kind;
    d.input_norm = a.take<float>(H);
    d.post_norm = a.take<float>(H);
    switch (L.kind) {
      case LayerKind::Attention:
        d.wqkv = a.take<T>((c.q_dim() + 2 * c.kv_dim()) * H);
        d.wo = a.take<T>(H * c.q_dim());
        break;
      case LayerKind::Mla:
        d.q_a = a.take<T>(L.mla.q_a.numel());
        d.q_b = a.take<T>(L.mla.q_b.numel());
        d.q_proj = a.take<T>(L.mla.q_proj.numel());
        d.kv_a = a.take<T>(L.mla.kv_a.numel());
        d.kv_b = a.take<T>(L.mla.kv_b.numel());
        d.mla_out = a.take<T>(L.mla.out_proj.numel());
        d.q_a_norm = a.take<float>(L.mla.q_a_norm.numel());
        d.kv_a_norm = a.take<float>(L.mla.kv_a_norm.numel());
        d.mla_inv_freq = a.take<float>(static_cast<int64_t>(L.mla_rope.inv_freq.size()));
        break;
      case LayerKind::Mamba2:
        d.in_proj = a.take<T>(L.mamba.in_proj.numel());
        d.mamba_out = a.take<T>(L.mamba.out_proj.numel());
        d.conv_w = a.take<float>(L.mamba.conv_w.numel());
        d.conv_b = a.take<float>(L.mamba.conv_b.numel());
        d.dt_bias = a.take<float>(L.mamba.dt_bias.numel());
        d.A_log = a.take<float>(L.mamba.A_log.numel());
        d.D = a.take<float>(L.mamba.D.numel());
        d.gnorm = a.take<float>(L.mamba.norm.numel());
        break;
    }
    d.wgu = a.take<T>(2 * I * H);
    d.wd = a.take<T>(H * I);
  }
}

template <class T>
void upload_weights(const Model& m, DevWeights<T>& w) {
  const LlamaConfig& c = m.config;
  const int64_t H = c.hidden_size, I = c.intermediate_size;
  put(w.embed, m.embed);
  if (!m.lm_head.empty()) put(w.head, m.lm_head);
  put_f32(w.norm, m.norm.data);
  for (size_t i = 0; i < m.layers.size(); ++i) {
    const Layer& L = m.layers[i];
    DevLayer<T>& d = w.layers[i];
    put_f32(d.input_norm, L.input_norm.data);
    put_f32(d.post_norm, L.post_norm.data);
    switch (L.kind) {
      case LayerKind::Attention:
        put(d.wqkv, L.attn.wq);
        put(d.wqkv, L.attn.wk, c.q_dim() * H);
        put(d.wqkv, L.attn.wv, (c.q_dim() + c.kv_dim()) * H);
        put(d.wo, L.attn.wo);
        break;
      case LayerKind::Mla:
        put(d.q_a, L.mla.q_a);
        put(d.q_b, L.mla.q_b);
        put(d.q_proj, L.mla.q_proj);
        put(d.kv_a, L.mla.kv_a);
        put(d.kv_b, L.mla.kv_b);
        put(d.mla_out, L.mla.out_proj);
        put_f32(d.q_a_norm, L.mla.q_a_norm.data);
        put_f32(d.kv_a_norm, L.mla.kv_a_norm.data);
        put_f32(d.mla_inv_freq, L.mla_rope.inv_freq);
        break;
      case LayerKind::Mamba2:
        put(d.in_proj, L.mamba.in_proj);
        put(d.mamba_out, L.mamba.out_proj);
        put_f32(d.conv_w, L.mamba.conv_w.data);
        put_f32(d.conv_b, L.mamba.conv_b.data);
        put_f32(d.dt_bias, L.mamba.dt_bias.data);
        put_f32(d.A_log, L.mamba.A_log.data);
        put_f32(d.D, L.mamba.D.data);
        put_f32(d.gnorm, L.mamba.norm.data);
        break;
    }
    put(d.wgu, L.mlp.gate);
    put(d.wgu, L.mlp.up, I * H);
    put(d.wd, L.mlp.down);
  }
}

template void take_weights<float>(const Model&, DeviceArena&, DevWeights<float>&);
template void take_weights<bf16>(const Model&, DeviceArena&, DevWeights<bf16>&);
template void upload_weights<float>(const Model&, DevWeights<float>&);
template void upload_weights<bf16>(const Model&, DevWeights<bf16>&);

}  // namespace zebra::cuda
