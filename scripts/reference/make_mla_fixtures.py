#!/usr/bin/env python3
"""Golden fixtures for the C++ MLA layer (tests/test_mla.cpp), from the PyTorch reference zebra_ref.py.

Each case is one small random MLA layer (spec §1.3) run over one sequence at positions 0..T-1 with
YaRN (factor 4, original_max_position_embeddings 32, so positions run well past the original context).
Weights are drawn in fp32; the layer then runs in fp64 (the reference computes the rope frequencies and
cos/sin tables in fp32 whatever the dtype, spec §1.3 point 3), so the goldens carry no fp32 rounding of
their own. Written to tests/fixtures/mla/<case>.safetensors (F32 tensors):

  x [T, hidden]              layer input
  y [T, hidden]              MLA.forward output (decompressed path, causal)
  cache [T, kv_rank+rope]    the latent cache rows [c_kv (after kv_a_layernorm), rotated kpe (split-half order)]
  inv_freq [rope/2]          YaRN frequencies;  scalars in metadata: mscale, softmax_scale
  q_a_proj / q_a_layernorm / q_b_proj / q_proj / kv_a_proj_with_mqa / kv_a_layernorm / kv_b_proj / out_proj
                             the weights ([out, in]), whichever the case has
  metadata "config": JSON of the dims, rope_theta, yarn fields and the lora-norm eps.

Cases:
  gqa_lora   hidden 32, 4 heads over 2 kv heads, q_rank 24, kv_rank 16, rope 8, nope 8, v 12, lora norms,
             rope_theta 16, yarn mscale 1 / mscale_all_dim 0 (AMD's configs), T = 72
  full_kv    hidden 24, 3 heads = 3 kv heads (use_full_kv_head), q_proj (no q lora), kv_rank 12, rope 16,
             nope 4, v 6, no norms, rope_theta 100, yarn mscale 1 / mscale_all_dim 0.5, T = 48

Run: /work/main/.venv/bin/python scripts/reference/make_mla_fixtures.py
"""
import json
import os
import sys

import torch
from safetensors.torch import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import zebra_ref as Z  # noqa: E402

OUT = os.path.join(HERE, "..", "..", "tests", "fixtures", "mla")

CASES = {
    "gqa_lora": dict(T=72, seed=1, cfg=dict(hidden_size=32, num_attention_heads=4, num_key_value_heads=2,
                                            q_lora_rank=24, kv_lora_rank=16, qk_rope_head_dim=8,
                                            qk_nope_head_dim=8, v_head_dim=12, use_lora_layer_norm=True,
                                            rope_theta=16.0,
                                            yarn=Z.Yarn(factor=4.0, original_max_position_embeddings=32))),
    "full_kv": dict(T=48, seed=2, cfg=dict(hidden_size=24, num_attention_heads=3, num_key_value_heads=1,
                                           use_full_kv_head=True, q_lora_rank=None, kv_lora_rank=12,
                                           qk_rope_head_dim=16, qk_nope_head_dim=4, v_head_dim=6,
                                           rope_theta=100.0,
                                           yarn=Z.Yarn(factor=4.0, original_max_position_embeddings=32,
                                                       mscale=1.0, mscale_all_dim=0.5))),
}


def make(name, spec):
    base = dict(vocab_size=16, intermediate_size=8, n_layer=1, mla_layers=[0], d_inner=8, d_xb=8, d_state=8,
                ngroups=1, max_position_embeddings=256)
    base.update(spec["cfg"])
    cfg = Z.ZebraConfig(**base)
    gen = torch.Generator().manual_seed(spec["seed"])
    mla = Z.MLA(cfg, 0)
    with torch.no_grad():
        for pname, p in mla.named_parameters():
            if "layernorm" in pname:
                p.copy_(1 + 0.3 * torch.randn(p.shape, generator=gen))
            else:  # ~unit-variance outputs; larger than 1/sqrt(in) so softmaxes are not flat
                p.copy_(1.5 * torch.randn(p.shape, generator=gen) / p.shape[1] ** 0.5)
    T, H = spec["T"], cfg.hidden_size
    x = torch.randn(1, T, H, generator=gen)
    weights = {k: v.detach().clone().contiguous() for k, v in mla.state_dict().items()}
    mla = mla.double()
    with torch.no_grad():
        y, cache = mla.forward(x.double(), start_pos=0)
        # The reference's own identity: absorbed == decompressed (sanity of the goldens).
        y_abs, _ = mla.decode_absorbed(x.double(), None, 0)
        assert (y_abs - y).abs().max().item() < 1e-10
    tensors = {"x": x[0], "y": y[0].float(), "cache": cache[0].float(), "inv_freq": mla.inv_freq.float()}
    tensors.update(weights)
    meta_cfg = dict(hidden=H, n_heads=mla.nh, kv_heads=mla.nkv, q_rank=mla.q_rank or 0, kv_rank=mla.kv_rank,
                    rope_dim=mla.d_r, nope_dim=mla.d_n, v_dim=mla.d_v, lora_norm=cfg.use_lora_layer_norm,
                    eps=Z.LORA_NORM_EPS, rope_theta=cfg.rope_theta, factor=cfg.yarn.factor,
                    original_max_position_embeddings=cfg.yarn.original_max_position_embeddings,
                    beta_fast=cfg.yarn.beta_fast, beta_slow=cfg.yarn.beta_slow, mscale=cfg.yarn.mscale,
                    mscale_all_dim=cfg.yarn.mscale_all_dim, T=T, yarn_low=mla.yarn_low, yarn_high=mla.yarn_high)
    meta = {"config": json.dumps(meta_cfg), "mscale": repr(mla.rope_m), "softmax_scale": repr(mla.softmax_scale),
            "source": "scripts/reference/make_mla_fixtures.py (zebra_ref.MLA.forward, fp64)"}
    path = os.path.join(OUT, f"{name}.safetensors")
    save_file({k: v.float().contiguous() for k, v in tensors.items()}, path, metadata=meta)
    print(f"{path}: {os.path.getsize(path)} bytes, yarn low/high {mla.yarn_low}/{mla.yarn_high}, "
          f"mscale {mla.rope_m:.6f}, softmax_scale {mla.softmax_scale:.6f}, |y| max {y.abs().max().item():.3f}")


def main():
    os.makedirs(OUT, exist_ok=True)
    torch.set_num_threads(2)
    for name, spec in CASES.items():
        make(name, spec)


if __name__ == "__main__":
    main()
