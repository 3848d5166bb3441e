#!/usr/bin/env python3
"""Golden gradients of small random Mamba2 layers for tests/test_mamba2_backward.cpp.

Oracle: PyTorch autograd through the reference scripts/reference/zebra_ref.py (Mamba2.forward_chunked, written
from /work/shared/spec/zebra-llama.md §1.4 and cross-checked against transformers' Mamba2Mixer by
check_zebra_ref.py), in float64 on fp32-representable weights, inputs and output gradients. The chunked and
the sequential forward must give the same gradients (asserted), so the fixture does not depend on the chunk.

Training layout: B rows of T tokens, each row a fresh sequence. Loss = sum(out * dout).
Writes tests/fixtures/mamba2_grad/<name>.safetensors (F32), one per config:
  in_proj.weight, conv1d.weight [conv_dim,1,4], conv1d.bias, dt_bias, A_log, D, norm.weight, out_proj.weight
  u [B*T, hidden], dout [B*T, hidden]      -- inputs and the output gradient
  out [B*T, hidden], du [B*T, hidden]      -- forward output and input gradient
  grad.<weight name>                       -- every weight's gradient, in the weight's shape
metadata: the dims, B, T, chunk (the chunk the C++ test runs, uneven against T).
Run: /work/main/.venv/bin/python scripts/reference/make_mamba2_grad_fixtures.py
"""
import math
import os
import sys

import torch
from safetensors.torch import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import zebra_ref  # noqa: E402

OUT_DIR = os.path.join(HERE, "..", "..", "tests", "fixtures", "mamba2_grad")

# name, hidden, d_inner, d_xb, d_state (= head_dim), B, T, chunk for the C++ side
CONFIGS = [
    ("rep2_b2", 24, 32, 16, 8, 2, 19, 8),   # 4 heads of 8, repeat_group 2, chunks 8+8+3
    ("rep3_b1", 16, 24, 8, 4, 1, 13, 5),    # 6 heads of 4, repeat_group 3, chunks 5+5+3
]
WEIGHTS = ["in_proj.weight", "conv1d.weight", "conv1d.bias", "dt_bias", "A_log", "D", "norm.weight",
           "out_proj.weight"]


def make(name, H, d_inner, d_xb, N, B, T, chunk, seed):
    g = torch.Generator().manual_seed(seed)
    cfg = zebra_ref.ZebraConfig(
        vocab_size=16, hidden_size=H, intermediate_size=2 * H, n_layer=1, mla_layers=[],
        num_attention_heads=4, num_key_value_heads=2, kv_lora_rank=8, q_lora_rank=None,
        qk_rope_head_dim=4, qk_nope_head_dim=4, v_head_dim=8,
        d_inner=d_inner, d_xb=d_xb, d_state=N, ngroups=d_inner // N)
    m = zebra_ref.Mamba2(cfg)
    nh = m.nh
    rows = 2 * d_inner + 2 * d_xb + nh

    def U(*shape, lo=-1.0, hi=1.0):
        return torch.rand(*shape, generator=g) * (hi - lo) + lo

    # As make_mamba2_fixtures.py: dt in ~[0.05, 0.6], A in [-4, -0.5], so both the carried state and new
    # tokens matter across chunks.
    w = {
        "in_proj.weight": U(rows, H) / math.sqrt(H),
        "conv1d.weight": U(m.conv_dim, 1, 4, lo=-0.5, hi=0.5),
        "conv1d.bias": U(m.conv_dim, lo=-0.5, hi=0.5),
        "dt_bias": torch.log(torch.expm1(U(nh, lo=0.05, hi=0.5))),
        "A_log": torch.log(U(nh, lo=0.5, hi=4.0)),
        "D": U(nh, lo=0.5, hi=1.5),
        "norm.weight": U(d_inner, lo=0.5, hi=1.5),
        "out_proj.weight": U(H, d_inner) / math.sqrt(d_inner),
    }
    w = {k: v.float().contiguous() for k, v in w.items()}
    u = torch.randn(B, T, H, generator=g).float()
    dout = torch.randn(B, T, H, generator=g).float()

    m = m.double()
    params = {
        "in_proj.weight": m.in_proj.weight, "conv1d.weight": m.conv1d.weight, "conv1d.bias": m.conv1d.bias,
        "dt_bias": m.dt_bias, "A_log": m.A_log, "D": m.D, "norm.weight": m.norm.weight,
        "out_proj.weight": m.out_proj.weight,
    }
    with torch.no_grad():
        for k, p in params.items():
            p.copy_(w[k].double())

    def run(forward):
        for p in params.values():
            p.grad = None
        ud = u.double().requires_grad_(True)
        out = forward(ud)
        (out * dout.double()).sum().backward()
        return out.detach(), ud.grad.detach(), {k: p.grad.detach().clone() for k, p in params.items()}

    out, du, grads = run(lambda x: m.forward_chunked(x, chunk_size=chunk))
    out_s, du_s, grads_s = run(m.forward_sequential)
    assert (out - out_s).abs().max() < 1e-12 and (du - du_s).abs().max() < 1e-12
    for k in WEIGHTS:
        assert (grads[k] - grads_s[k]).abs().max() < 1e-11, k

    tensors = dict(w)
    tensors.update({
        "u": u.reshape(B * T, H),
        "dout": dout.reshape(B * T, H),
        "out": out.reshape(B * T, H).float(),
        "du": du.reshape(B * T, H).float(),
    })
    for k in WEIGHTS:
        tensors["grad." + k] = grads[k].float()
    meta = {"hidden": str(H), "d_inner": str(d_inner), "d_xb": str(d_xb), "d_state": str(N),
            "n_heads": str(nh), "head_dim": str(N), "d_conv": "4", "eps": "1e-5",
            "B": str(B), "T": str(T), "chunk": str(chunk),
            "made_by": "scripts/reference/make_mamba2_grad_fixtures.py (oracle zebra_ref.Mamba2 autograd, float64)"}
    path = os.path.join(OUT_DIR, name + ".safetensors")
    save_file({k: v.contiguous() for k, v in tensors.items()}, path, metadata=meta)
    print(f"wrote {path}: {os.path.getsize(path)} bytes")


def main():
    os.makedirs(OUT_DIR, exist_ok=True)
    for i, c in enumerate(CONFIGS):
        make(*c, seed=20250700 + i)


if __name__ == "__main__":
    main()
