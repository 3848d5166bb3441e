#!/usr/bin/env python3
"""Golden outputs of one small random Mamba2 layer (GQA repeat) for tests/test_mamba2.cpp.

Oracle: the PyTorch reference scripts/reference/zebra_ref.py (Mamba2.forward_sequential and .step,
written from /work/shared/spec/zebra-llama.md §1.4 and cross-checked against transformers' Mamba2Mixer by
check_zebra_ref.py), evaluated in float64 on fp32-representable weights and inputs.

Layer: hidden 48, d_inner 64 = 4 heads x 16, d_xb 32 (2 x/B groups: repeat_group 2), d_state 16, d_conv 4.
Writes tests/fixtures/mamba2/layer.safetensors (F32, ~90 KB):
  in_proj.weight [196,48], conv1d.weight [128,1,4], conv1d.bias [128], dt_bias [4], A_log [4], D [4],
  norm.weight [64], out_proj.weight [48,64]                       -- the layer
  u [40,48]                   -- inputs: rows 0..36 are one prefill, rows 37..39 three decode steps
  out_prefill [37,48]         -- forward_sequential(u[:37])
  conv_state_prefill [128,4], ssm_state_prefill [4,16,16]         -- states after the prefill
  out_step [3,48]             -- step() outputs of rows 37..39 continuing those states
  conv_state_final [128,4], ssm_state_final [4,16,16]             -- states after the steps
Run: /work/main/.venv/bin/python scripts/reference/make_mamba2_fixtures.py
"""
import math
import os
import sys

import torch
from safetensors.torch import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import zebra_ref  # noqa: E402

OUT = os.path.join(HERE, "..", "..", "tests", "fixtures", "mamba2", "layer.safetensors")
H, D_INNER, D_XB, N = 48, 64, 32, 16
T_PREFILL, T_STEP = 37, 3


def main():
    g = torch.Generator().manual_seed(20250611)
    cfg = zebra_ref.ZebraConfig(
        vocab_size=16, hidden_size=H, intermediate_size=96, n_layer=1, mla_layers=[],
        num_attention_heads=4, num_key_value_heads=2, kv_lora_rank=8, q_lora_rank=None,
        qk_rope_head_dim=4, qk_nope_head_dim=4, v_head_dim=8,
        d_inner=D_INNER, d_xb=D_XB, d_state=N, ngroups=D_INNER // N)
    m = zebra_ref.Mamba2(cfg)
    nh = m.nh
    rows = 2 * D_INNER + 2 * D_XB + nh

    def U(*shape, lo=-1.0, hi=1.0):
        return torch.rand(*shape, generator=g) * (hi - lo) + lo

    # Decays and steps chosen so that both the carried state and the new inputs matter over 37 tokens:
    # dt in ~[0.05, 0.6] (softplus of dt_bias plus a small dt_raw), A in [-4, -0.5].
    w = {
        "in_proj.weight": U(rows, H) / math.sqrt(H),
        "conv1d.weight": U(m.conv_dim, 1, 4, lo=-0.5, hi=0.5),
        "conv1d.bias": U(m.conv_dim, lo=-0.5, hi=0.5),
        "dt_bias": torch.log(torch.expm1(U(nh, lo=0.05, hi=0.5))),
        "A_log": torch.log(U(nh, lo=0.5, hi=4.0)),
        "D": U(nh, lo=0.5, hi=1.5),
        "norm.weight": U(D_INNER, lo=0.5, hi=1.5),
        "out_proj.weight": U(H, D_INNER) / math.sqrt(D_INNER),
    }
    w = {k: v.float().contiguous() for k, v in w.items()}
    u = torch.randn(T_PREFILL + T_STEP, H, generator=g).float()

    m = m.double()
    with torch.no_grad():
        m.in_proj.weight.copy_(w["in_proj.weight"].double())
        m.conv1d.weight.copy_(w["conv1d.weight"].double())
        m.conv1d.bias.copy_(w["conv1d.bias"].double())
        m.dt_bias.copy_(w["dt_bias"].double())
        m.A_log.copy_(w["A_log"].double())
        m.D.copy_(w["D"].double())
        m.norm.weight.copy_(w["norm.weight"].double())
        m.out_proj.weight.copy_(w["out_proj.weight"].double())

        ud = u.double()[None]                                        # [1, T, H]
        out_pre, conv_pre, ssm_pre = m.forward_sequential(ud[:, :T_PREFILL], return_state=True)
        out_chk, conv_chk, ssm_chk = m.forward_chunked(ud[:, :T_PREFILL], chunk_size=8, return_state=True)
        assert (out_pre - out_chk).abs().max() < 1e-12 and (ssm_pre - ssm_chk).abs().max() < 1e-12
        conv, ssm, steps = conv_pre, ssm_pre, []
        for t in range(T_PREFILL, T_PREFILL + T_STEP):
            o, conv, ssm = m.step(ud[:, t], conv, ssm)
            steps.append(o)
        # the steps must agree with one full pass over all 40 tokens
        out_all = m.forward_sequential(ud)
        assert (torch.cat(steps) - out_all[0, T_PREFILL:]).abs().max() < 1e-12

    tensors = dict(w)
    tensors.update({
        "u": u,
        "out_prefill": out_pre[0].float(),
        "conv_state_prefill": conv_pre[0].float(),
        "ssm_state_prefill": ssm_pre[0].float(),
        "out_step": torch.cat(steps).float(),
        "conv_state_final": conv[0].float(),
        "ssm_state_final": ssm[0].float(),
    })
    meta = {"hidden": str(H), "d_inner": str(D_INNER), "d_xb": str(D_XB), "d_state": str(N),
            "n_heads": str(nh), "head_dim": str(N), "d_conv": "4", "eps": "1e-5",
            "t_prefill": str(T_PREFILL), "t_step": str(T_STEP),
            "made_by": "scripts/reference/make_mamba2_fixtures.py (oracle zebra_ref.Mamba2, float64)"}
    save_file({k: v.contiguous() for k, v in tensors.items()}, OUT, metadata=meta)
    print(f"wrote {OUT}: {os.path.getsize(OUT)} bytes")


if __name__ == "__main__":
    main()
