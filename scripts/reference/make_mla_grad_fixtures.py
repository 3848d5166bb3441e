#!/usr/bin/env python3
"""Gradient fixtures for the C++ MLA training backward (tests/test_mla_backward.cpp), from PyTorch
autograd through the reference zebra_ref.MLA (spec §1.3).

Each case is one small random MLA layer run over B packed rows of T tokens, every row at positions
0..T-1 (the training layout of mla_train_forward), with YaRN on. Weights, x and dout are drawn in fp32;
the layer then runs in fp64 and autograd differentiates L = sum(y * dout), so the expected gradients
carry no fp32 rounding of their own. Written to tests/fixtures/mla_grad/<case>.safetensors (F32):

  x [B*T, hidden], dout [B*T, hidden]      inputs (row b's token t at b*T + t)
  y [B*T, hidden]                          MLA.forward output
  dx [B*T, hidden]                         dL/dx
  <weight name> / grad.<weight name>       each weight ([out, in], HF names) and dL/d(weight)
  metadata "config": JSON of the dims, B, T, rope_theta, yarn fields and the lora-norm eps.

Cases:
  gqa_lora   hidden 16, 4 heads over 2 kv heads, q_rank 12, kv_rank 8, rope 4, nope 6, v 5, lora norms,
             rope_theta 16, yarn factor 4 over 8 positions, B 2, T 7
  full_kv    hidden 12, 3 heads = 3 kv heads (use_full_kv_head), q_proj, kv_rank 6, rope 8, nope 2, v 4,
             no norms, rope_theta 100, yarn factor 4 with mscale_all_dim 0.5, B 3, T 5

Run: /work/main/.venv/bin/python scripts/reference/make_mla_grad_fixtures.py
"""
import json
import os
import sys

import torch
from safetensors.torch import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import zebra_ref as Z  # noqa: E402

OUT = os.path.join(HERE, "..", "..", "tests", "fixtures", "mla_grad")

CASES = {
    "gqa_lora": dict(B=2, T=7, seed=11, cfg=dict(hidden_size=16, num_attention_heads=4, num_key_value_heads=2,
                                                 q_lora_rank=12, kv_lora_rank=8, qk_rope_head_dim=4,
                                                 qk_nope_head_dim=6, v_head_dim=5, use_lora_layer_norm=True,
                                                 rope_theta=16.0,
                                                 yarn=Z.Yarn(factor=4.0, original_max_position_embeddings=8))),
    "full_kv": dict(B=3, T=5, seed=12, cfg=dict(hidden_size=12, num_attention_heads=3, num_key_value_heads=1,
                                                use_full_kv_head=True, q_lora_rank=None, kv_lora_rank=6,
                                                qk_rope_head_dim=8, qk_nope_head_dim=2, v_head_dim=4,
                                                rope_theta=100.0,
                                                yarn=Z.Yarn(factor=4.0, original_max_position_embeddings=8,
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
    B, T, H = spec["B"], spec["T"], cfg.hidden_size
    x = torch.randn(B, T, H, generator=gen)
    dout = torch.randn(B, T, H, generator=gen)
    weights = {k: v.detach().clone().contiguous() for k, v in mla.state_dict().items()}

    mla = mla.double()
    xd = x.double().requires_grad_(True)
    y, _ = mla.forward(xd, start_pos=0)  # every row at positions 0..T-1, causal, no cache
    (y * dout.double()).sum().backward()

    flat = lambda t: t.reshape(B * T, H)  # noqa: E731
    tensors = {"x": flat(x), "dout": flat(dout), "y": flat(y.detach()), "dx": flat(xd.grad)}
    tensors.update(weights)
    for pname, p in mla.named_parameters():
        tensors[f"grad.{pname}"] = p.grad
    meta_cfg = dict(hidden=H, n_heads=mla.nh, kv_heads=mla.nkv, q_rank=mla.q_rank or 0, kv_rank=mla.kv_rank,
                    rope_dim=mla.d_r, nope_dim=mla.d_n, v_dim=mla.d_v, lora_norm=cfg.use_lora_layer_norm,
                    eps=Z.LORA_NORM_EPS, rope_theta=cfg.rope_theta, factor=cfg.yarn.factor,
                    original_max_position_embeddings=cfg.yarn.original_max_position_embeddings,
                    beta_fast=cfg.yarn.beta_fast, beta_slow=cfg.yarn.beta_slow, mscale=cfg.yarn.mscale,
                    mscale_all_dim=cfg.yarn.mscale_all_dim, B=B, T=T)
    meta = {"config": json.dumps(meta_cfg),
            "source": "scripts/reference/make_mla_grad_fixtures.py (zebra_ref.MLA.forward + autograd, fp64)"}
    path = os.path.join(OUT, f"{name}.safetensors")
    save_file({k: v.float().contiguous() for k, v in tensors.items()}, path, metadata=meta)
    gmax = max(p.grad.abs().max().item() for p in mla.parameters())
    print(f"{path}: {os.path.getsize(path)} bytes, |y| max {y.abs().max().item():.3f}, "
          f"|dx| max {xd.grad.abs().max().item():.3f}, |dW| max {gmax:.3f}")


def main():
    os.makedirs(OUT, exist_ok=True)
    torch.set_num_threads(2)
    for name, spec in CASES.items():
        make(name, spec)


if __name__ == "__main__":
    main()
