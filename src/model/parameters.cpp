#include "model/parameters.h"

#include <algorithm>

namespace zebra {

std::vector<NamedTensor> named_parameters(Model& m) {
  std::vector<NamedTensor> out;
  auto add = [&](const std::string& name, Tensor& t) {
    if (!t.empty()) out.push_back({name, &t});
  };
  add("model.embed_tokens.weight", m.embed);
  for (size_t i = 0; i < m.layers.size(); ++i) {
    Layer& l = m.layers[i];
    const std::string p = "model.layers." + std::to_string(i) + ".";
    add(p + "input_layernorm.weight", l.input_norm);
    add(p + "post_attention_layernorm.weight", l.post_norm);
    add(p + "self_attn.q_proj.weight", l.attn.wq);
    add(p + "self_attn.k_proj.weight", l.attn.wk);
    add(p + "self_attn.v_proj.weight", l.attn.wv);
    add(p + "self_attn.o_proj.weight", l.attn.wo);
    add(p + "mla.q_a_proj.weight", l.mla.q_a);
    add(p + "mla.q_a_layernorm.weight", l.mla.q_a_norm);
    add(p + "mla.q_b_proj.weight", l.mla.q_b);
    add(p + "mla.q_proj.weight", l.mla.q_proj);
    add(p + "mla.kv_a_proj_with_mqa.weight", l.mla.kv_a);
    add(p + "mla.kv_a_layernorm.weight", l.mla.kv_a_norm);
    add(p + "mla.kv_b_proj.weight", l.mla.kv_b);
    add(p + "mla.out_proj.weight", l.mla.out_proj);
    add(p + "mamba.in_proj.weight", l.mamba.in_proj);
    add(p + "mamba.conv1d.weight", l.mamba.conv_w);
    add(p + "mamba.conv1d.bias", l.mamba.conv_b);
    add(p + "mamba.dt_bias", l.mamba.dt_bias);
    add(p + "mamba.A_log", l.mamba.A_log);
    add(p + "mamba.D", l.mamba.D);
    add(p + "mamba.norm.weight", l.mamba.norm);
    add(p + "mamba.out_proj.weight", l.mamba.out_proj);
    add(p + "mlp.gate_proj.weight", l.mlp.gate);
    add(p + "mlp.up_proj.weight", l.mlp.up);
    add(p + "mlp.down_proj.weight", l.mlp.down);
  }
  add("model.norm.weight", m.norm);
  add("lm_head.weight", m.lm_head);
  return out;
}

std::vector<std::pair<std::string, const Tensor*>> named_parameters(const Model& m) {
  std::vector<std::pair<std::string, const Tensor*>> out;
  for (const NamedTensor& t : named_parameters(const_cast<Model&>(m))) out.emplace_back(t.name, t.tensor);
  return out;
}

void set_zero(Model& m) {
  for (NamedTensor& t : named_parameters(m)) std::fill(t.tensor->data.begin(), t.tensor->data.end(), 0.0f);
}

Model zeros_like(const Model& m) {
  Model z = m;
  set_zero(z);
  return z;
}

}  // namespace zebra
