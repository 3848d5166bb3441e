#!/usr/bin/env python3
"""Fixtures for tests/test_hybrid_config.cpp and tests/test_compose.cpp.

1. tests/fixtures/hybrid_configs/<layout>/{config.json,hybrid_config.json}: the six released Zebra-Llama
   layouts and the two config-only ones, written from the tables of /work/shared/spec/zebra-llama.md
   (§1.1 base Llama sizes, §1.3 MLA ranks, §1.4 Mamba2 sizes, §1.5 mla_layers, §7.2 fields) with
   zebra_ref.config_dicts. These are inputs; the expected parameter counts and KV percentages are the
   spec's [DERIVED] numbers, hard-coded in the test. The released checkpoints are written in the
   June-2025 generation (llama3 rope_scaling dict, layer_rank_list, ...), the config-only ones in the
   current generation, so both loaders are exercised.

2. tests/fixtures/compose/: a small random Llama attention block (attention.safetensors: wq [32,32],
   wk/wv [16,32], wo [32,32]; H=32, nh=4, nkv=2, hd=8; each matrix has a geometrically decaying spectrum
   so singular values are distinct and energy ranks are non-trivial) and, for three MLA init variants,
   torch's SVD init (zebra_ref.mla_init_from_llama: torch.linalg.svd in fp32, as AMD's code) reduced to the
   basis-independent products of zebra_ref.mla_init_products (products.safetensors: <variant>.q,
   <variant>.kv, <variant>.kpe) plus the ranks chosen (variants.json).

Run: .venv/bin/python scripts/reference/make_compose_fixtures.py
"""
import json
import os
import sys

import torch
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import zebra_ref as zr  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))

# ---- 1. released layouts (spec §1.5) ----------------------------------------------------------------

BASES = {  # spec §1.1 / §1.3
    "1B": dict(H=2048, L=16, nh=32, nkv=8, hd=64, I=8192, tie=True, yarn=32.0, r_q=1344, r_kv=128, d=32),
    "3B": dict(H=3072, L=28, nh=24, nkv=8, hd=128, I=8192, tie=True, yarn=32.0, r_q=1536, r_kv=128, d=64),
    "8B": dict(H=4096, L=32, nh=32, nkv=8, hd=128, I=14336, tie=False, yarn=8.0, r_q=2048, r_kv=160, d=64),
}
LAYOUTS = [  # name, base, mla_layers, generation
    ("1B-8MLA-8Mamba", "1B", [0, 2, 4, 6, 8, 10, 12, 14], "june2025"),
    ("1B-6MLA-10M2", "1B", [0, 2, 5, 8, 11, 14], "current"),
    ("1B-4MLA-12Mamba", "1B", [0, 5, 10, 14], "june2025"),
    ("3B-14MLA-14Mamba", "3B", list(range(0, 28, 2)), "june2025"),
    ("3B-8MLA-20M2", "3B", [0, 3, 7, 10, 14, 18, 22, 26], "current"),
    ("3B-6MLA-22Mamba", "3B", [0, 5, 10, 16, 21, 26], "june2025"),
    ("8B-16MLA-16Mamba", "8B", list(range(0, 32, 2)), "june2025"),
    ("8B-8MLA-24Mamba", "8B", [0, 4, 8, 12, 16, 20, 25, 30], "june2025"),
]


def write_layouts():
    for name, base, layers, gen in LAYOUTS:
        b = BASES[base]
        cfg = zr.ZebraConfig(
            vocab_size=128256, hidden_size=b["H"], intermediate_size=b["I"], n_layer=b["L"], mla_layers=layers,
            num_attention_heads=b["nh"], num_key_value_heads=b["nkv"], kv_lora_rank=b["r_kv"],
            q_lora_rank=b["r_q"], qk_rope_head_dim=b["d"], qk_nope_head_dim=b["d"], v_head_dim=b["hd"],
            d_inner=b["nh"] * b["hd"], d_xb=b["nkv"] * b["hd"], d_state=b["hd"], ngroups=b["nh"],
            max_position_embeddings=131072, rope_theta=500000.0,
            yarn=zr.Yarn(factor=b["yarn"], original_max_position_embeddings=8192),
            tie_word_embeddings=b["tie"], llama_head_dim=b["hd"], llama_rope_theta=500000.0,
            llama_rope_scaling={"factor": b["yarn"], "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                                "original_max_position_embeddings": 8192, "rope_type": "llama3"},
            llama_max_position_embeddings=131072, bos_token_id=128000, eos_token_id=[128001, 128008, 128009])
        llama, hy = zr.config_dicts(cfg, gen)
        llama["torch_dtype"] = "bfloat16"
        d = os.path.join(ROOT, "tests", "fixtures", "hybrid_configs", name)
        os.makedirs(d, exist_ok=True)
        for fn, obj in (("config.json", llama), ("hybrid_config.json", hy)):
            with open(os.path.join(d, fn), "w") as f:
                json.dump(obj, f, indent=2)
                f.write("\n")


# ---- 2. SVD init products ---------------------------------------------------------------------------

H, NH, NKV, HD = 32, 4, 2, 8


def decaying(rows, cols, gen, rate):
    """A random rows x cols matrix with singular values rate**i (distinct, decaying)."""
    k = min(rows, cols)
    U, _ = torch.linalg.qr(torch.randn(rows, k, generator=gen, dtype=torch.float64))
    V, _ = torch.linalg.qr(torch.randn(cols, k, generator=gen, dtype=torch.float64))
    s = torch.tensor([rate ** i for i in range(k)], dtype=torch.float64) * 2.0
    return (U @ torch.diag(s) @ V.T).float()


VARIANTS = [
    # name, nope, rope, q_rank, kv_rank, full_kv_head, q_energy, kv_energy
    ("gqa", 4, 4, 16, 8, False, None, None),
    ("full_kv", 2, 4, 12, 10, True, None, None),
    ("energy", 4, 4, None, None, False, 0.9, 0.8),
]


def write_compose():
    gen = torch.Generator().manual_seed(20250617)
    wq = decaying(NH * HD, H, gen, 0.9)
    wk = decaying(NKV * HD, H, gen, 0.85)
    wv = decaying(NKV * HD, H, gen, 0.88)
    wo = torch.randn(H, NH * HD, generator=gen) / H ** 0.5
    d = os.path.join(ROOT, "tests", "fixtures", "compose")
    os.makedirs(d, exist_ok=True)
    save_file({"wq": wq, "wk": wk, "wv": wv, "wo": wo.contiguous()}, os.path.join(d, "attention.safetensors"),
              metadata={"format": "pt"})
    products, meta = {}, {}
    for name, nope, rope, q_rank, kv_rank, full, q_en, kv_en in VARIANTS:
        cfg = zr.ZebraConfig(
            vocab_size=16, hidden_size=H, intermediate_size=16, n_layer=1, mla_layers=[0], num_attention_heads=NH,
            num_key_value_heads=NKV, kv_lora_rank=kv_rank or 0, q_lora_rank=q_rank, qk_rope_head_dim=rope,
            qk_nope_head_dim=nope, v_head_dim=HD, d_inner=NH * HD, d_xb=NKV * HD, d_state=HD, ngroups=NH,
            use_full_kv_head=full)
        params, r_q, r_kv = zr.mla_init_from_llama(wq, wk, wv, wo, cfg, NKV, HD,
                                                   q_energy_ratio=q_en, kv_energy_ratio=kv_en)
        # Products in fp64 from the fp32 factors (the factors' own rounding is ~1e-7 relative).
        pr = zr.mla_init_products({k: v.double() for k, v in params.items()}, r_kv)
        for k, v in pr.items():
            products[f"{name}.{k}"] = v.float().contiguous()
        meta[name] = {"nope": nope, "rope": rope, "v": HD, "q_rank": r_q, "kv_rank": r_kv, "full_kv_head": full,
                      "q_energy": q_en, "kv_energy": kv_en}
    save_file(products, os.path.join(d, "products.safetensors"), metadata={"format": "pt"})
    with open(os.path.join(d, "variants.json"), "w") as f:
        json.dump(meta, f, indent=2)
        f.write("\n")
    print(json.dumps(meta, indent=1))


if __name__ == "__main__":
    write_layouts()
    write_compose()
