#!/usr/bin/env python3
"""Build the tiny random Zebra-Llama hybrids and their reference outputs in tests/fixtures/tiny_hybrid/.

Everything is seeded and recomputed from scratch; format documented in
tests/fixtures/tiny_hybrid/README.md.  Weights are rounded to bf16-representable values before
anything is computed, so the F32 files and any BF16 copy decode to the very same fp32 numbers.

Usage: .venv/bin/python scripts/reference/make_tiny_hybrid.py [--out DIR]
"""
import argparse
import json
import math
import os
import shutil
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import zebra_ref as Z  # noqa: E402

SEED = 20250617
LLAMA3_DICT = {"factor": 4.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
               "original_max_position_embeddings": 32, "rope_type": "llama3"}


def main_cfg():
    return Z.ZebraConfig(
        vocab_size=128, hidden_size=32, intermediate_size=48, n_layer=4, mla_layers=[0, 2],
        num_attention_heads=4, num_key_value_heads=2, kv_lora_rank=16, q_lora_rank=24,
        qk_rope_head_dim=8, qk_nope_head_dim=4, v_head_dim=8,
        d_inner=32, d_xb=16, d_state=8, ngroups=4,
        rms_norm_eps=1e-5, max_position_embeddings=256, rope_theta=16.0,
        yarn=Z.Yarn(factor=4.0, original_max_position_embeddings=32),
        tie_word_embeddings=False, llama_head_dim=8, llama_rope_theta=10000.0,
        llama_rope_scaling=dict(LLAMA3_DICT), llama_max_position_embeddings=256)


def variant_cfg():
    return Z.ZebraConfig(
        vocab_size=128, hidden_size=32, intermediate_size=48, n_layer=2, mla_layers=[1],
        num_attention_heads=4, num_key_value_heads=2, kv_lora_rank=16, q_lora_rank=None,
        qk_rope_head_dim=8, qk_nope_head_dim=4, v_head_dim=8,
        d_inner=32, d_xb=16, d_state=8, ngroups=4,
        use_lora_layer_norm=True, use_full_kv_head=True,
        rms_norm_eps=1e-5, max_position_embeddings=256, rope_theta=16.0,
        yarn=Z.Yarn(factor=8.0, original_max_position_embeddings=16, beta_fast=16.0, beta_slow=2.0,
                    mscale=1.0, mscale_all_dim=0.5),
        tie_word_embeddings=True, llama_head_dim=8, llama_rope_theta=10000.0,
        llama_rope_scaling=dict(LLAMA3_DICT), llama_max_position_embeddings=256)


def bf16_round(t):
    return t.to(torch.bfloat16).to(torch.float32)


def init_random(model: Z.HybridModel, gen: torch.Generator):
    """Random weights in sane ranges (see README 'Weights')."""
    H = model.cfg.hidden_size
    with torch.no_grad():
        for name, p in model.named_parameters():
            shape = p.shape
            if name == "model.embed_tokens.weight":
                v = torch.randn(shape, generator=gen)
            elif name == "lm_head.weight":
                v = torch.randn(shape, generator=gen) * (2.0 / math.sqrt(H))
            elif name.endswith("A_log"):
                v = torch.log(torch.rand(shape, generator=gen) * 15.0 + 1.0)            # ln U[1,16]
            elif name.endswith("dt_bias"):
                dt = torch.exp(torch.rand(shape, generator=gen) * (math.log(0.1) - math.log(1e-3)) + math.log(1e-3))
                dt = dt.clamp(min=1e-4)
                v = dt + torch.log(-torch.expm1(-dt))                                   # inverse softplus
            elif name.endswith("mamba.D"):
                v = torch.rand(shape, generator=gen) + 0.5                              # U[0.5,1.5]
            elif name.endswith("conv1d.weight") or name.endswith("conv1d.bias"):
                v = torch.rand(shape, generator=gen) - 0.5                              # U[-0.5,0.5]
            elif name.endswith("norm.weight") or name.endswith("layernorm.weight"):
                v = 1.0 + 0.2 * torch.randn(shape, generator=gen)
            elif name.endswith(".weight") and p.dim() == 2:
                v = torch.randn(shape, generator=gen) / math.sqrt(shape[1])             # ~unit-variance outputs
            else:
                raise RuntimeError(f"no init rule for {name}")
            p.copy_(bf16_round(v))


def r(x, nd):
    return [round(float(v), nd) for v in x]


def versions():
    import safetensors
    import transformers
    return {"torch": torch.__version__, "transformers": transformers.__version__,
            "safetensors": safetensors.__version__}


def yarn_entry(name, D, base, y: Z.Yarn, positions):
    inv, m, lo, hi = Z.yarn_params(D, base, y)
    cos, sin = Z.rope_cos_sin(torch.tensor(positions), inv, m, torch.float32)
    return {"name": name, "D": D, "base": base, "factor": y.factor,
            "original_max_position_embeddings": y.original_max_position_embeddings,
            "beta_fast": y.beta_fast, "beta_slow": y.beta_slow, "mscale": y.mscale,
            "mscale_all_dim": y.mscale_all_dim, "low": lo, "high": hi, "m": m,
            "softmax_scale_multiplier": (Z.get_mscale(y.factor, y.mscale_all_dim) ** 2) if y.mscale_all_dim else 1.0,
            "inv_freq": [g9(v) for v in inv], "positions": positions,
            "cos": [[g9(v) for v in row[: D // 2]] for row in cos],
            "sin": [[g9(v) for v in row[: D // 2]] for row in sin]}


def g9(v):
    """An fp32 value printed with 9 significant digits (enough to round-trip any float32)."""
    return float(f"{float(v):.9g}")


def write_svd_init(path, gen):
    """Llama layer (H 32, nh 4, nkv 2, hd 8) -> expected basis-independent MLA init products."""
    from safetensors.torch import save_file
    H, nh, nkv, hd = 32, 4, 2, 8
    cfg = Z.ZebraConfig(vocab_size=128, hidden_size=H, intermediate_size=48, n_layer=1, mla_layers=[0],
                        num_attention_heads=nh, num_key_value_heads=nkv, kv_lora_rank=16, q_lora_rank=16,
                        qk_rope_head_dim=4, qk_nope_head_dim=4, v_head_dim=8, d_inner=32, d_xb=16,
                        d_state=8, ngroups=4)
    W = {"q_proj": torch.randn(nh * hd, H, generator=gen) / math.sqrt(H),
         "k_proj": torch.randn(nkv * hd, H, generator=gen) / math.sqrt(H),
         "v_proj": torch.randn(nkv * hd, H, generator=gen) / math.sqrt(H),
         "o_proj": torch.randn(H, nh * hd, generator=gen) / math.sqrt(nh * hd)}
    W = {k: bf16_round(v) for k, v in W.items()}
    tensors = {f"llama.{k}.weight": v for k, v in W.items()}
    meta = {"hidden": str(H), "nh": str(nh), "nkv": str(nkv), "head_dim": str(hd)}
    for tag, full_kv in (("gqa", False), ("fullkv", True)):
        cfg.use_full_kv_head = full_kv
        p, rq, rkv = Z.mla_init_from_llama(W["q_proj"], W["k_proj"], W["v_proj"], W["o_proj"], cfg, nkv, hd)
        for k, v in Z.mla_init_products(p, rkv).items():
            tensors[f"{tag}.{k}"] = v.contiguous()
        meta[f"{tag}.q_rank"], meta[f"{tag}.kv_rank"] = str(rq), str(rkv)
        if tag == "gqa":
            _, Sq, _ = torch.linalg.svd(W["q_proj"], full_matrices=False)
            _, Skv, _ = torch.linalg.svd(torch.cat((W["k_proj"], W["v_proj"])), full_matrices=False)
            tensors["gqa.q_singular_values"], tensors["gqa.kv_singular_values"] = Sq, Skv
            for ratio in (0.5, 0.9, 0.99):
                meta[f"dynamic_rank.q.{ratio}"] = str(Z.dynamic_rank(Sq, ratio))
                meta[f"dynamic_rank.kv.{ratio}"] = str(Z.dynamic_rank(Skv, ratio))
    meta.update({"r_q": "16", "r_kv": "16", "d_n": "4", "d_r": "4", "d_v": "8"})
    save_file({k: v.to(torch.float32).contiguous() for k, v in sorted(tensors.items())}, path, metadata=meta)


def write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, separators=(",", ":"))
        f.write("\n")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                                  "tests", "fixtures", "tiny_hybrid"))
    args = ap.parse_args()
    out = os.path.abspath(args.out)
    torch.set_num_threads(2)
    gen = torch.Generator().manual_seed(SEED)

    # ---- main model ----
    cfg = main_cfg()
    model = Z.HybridModel(cfg)
    init_random(model, gen)
    model.eval()
    for sub in ("model", "model_oldcfg", "variant"):
        shutil.rmtree(os.path.join(out, sub), ignore_errors=True)
    model.save(os.path.join(out, "model"), generation="current", dtype=torch.float32)

    # June-2025 generation config files for the same weights.  Its top-level ranks are set to
    # different values on purpose and the real ranks come from layer_rank_list (LOADER RULE).
    old = os.path.join(out, "model_oldcfg")
    os.makedirs(old)
    llama_json, hy_old = Z.config_dicts(cfg, "june2025")
    hy_old["q_lora_rank"], hy_old["kv_lora_rank"] = 16, 8
    hy_old["layer_rank_list"] = {str(i): {"q_rank": cfg.q_lora_rank, "kv_rank": cfg.kv_lora_rank}
                                 for i in cfg.mla_layers}
    with open(os.path.join(old, "config.json"), "w") as f:
        json.dump(llama_json, f, indent=2)
        f.write("\n")
    with open(os.path.join(old, "hybrid_config.json"), "w") as f:
        json.dump(hy_old, f, indent=2)
        f.write("\n")

    # Reload through both config generations: the numbers below come from the loaded copies.
    m_cur = Z.HybridModel.load(os.path.join(out, "model")).eval()
    m_old = Z.HybridModel.load(os.path.join(out, "model"), hybrid_dir=old).eval()
    assert m_old.model.layers[0].mla.kv_rank == cfg.kv_lora_rank

    seqs = []
    for name, T in (("len5", 5), ("len37", 37), ("len70", 70)):
        ids = torch.randint(0, cfg.vocab_size, (1, T), generator=gen)
        seqs.append((name, ids))
    entries = []
    with torch.no_grad():
        for name, ids in seqs:
            logits, hs = m_cur(ids, return_hidden=True)
            lo_old = m_old(ids)
            assert torch.equal(logits, lo_old), "old/new config generations disagree"
            # independent paths must agree (chunk size, prefill + absorbed/step decode)
            alt = m_cur(ids, mamba_chunk=7)
            lg, st = m_cur.prefill(ids[:, :3])
            steps = [lg] + [m_cur.step(ids[:, t], st)[:, None] for t in range(3, ids.shape[1])]
            inc = torch.cat(steps, 1)
            d_alt, d_inc = (alt - logits).abs().max().item(), (inc - logits).abs().max().item()
            assert d_alt < 1e-4 and d_inc < 1e-4, (d_alt, d_inc)
            entries.append({"name": name, "ids": ids[0].tolist(),
                            "logits": [r(row, 5) for row in logits[0]],
                            "argmax": logits[0].argmax(-1).tolist(),
                            "max_abs_diff_chunk7": d_alt, "max_abs_diff_prefill3_step": d_inc})
            if name == "len37":
                hidden = {"name": name, "ids": ids[0].tolist(),
                          "hidden": [[r(row, 4) for row in h[0]] for h in hs],
                          "final_norm": [r(row, 4) for row in m_cur.model.norm(hs[-1])[0]]}
    mla = m_cur.model.layers[0].mla
    write_json(os.path.join(out, "logits.json"), {
        "format": "zebra-tiny-hybrid-logits-v1", "generator": "scripts/reference/make_tiny_hybrid.py",
        "model_dir": "model", "seed": SEED, "dtype": "float32", "versions": versions(),
        "rounding": "logits rounded to 5 decimals",
        "rope": {"inv_freq": [float(v) for v in mla.inv_freq], "m": mla.rope_m, "low": mla.yarn_low,
                 "high": mla.yarn_high, "softmax_scale": mla.softmax_scale},
        "sequences": entries})
    write_json(os.path.join(out, "hidden_states.json"), {
        "format": "zebra-tiny-hybrid-hidden-v1", "generator": "scripts/reference/make_tiny_hybrid.py",
        "model_dir": "model", "dtype": "float32", "rounding": "4 decimals", **hidden})

    # ---- variant: q_proj, lora layer norms, full kv heads, tied embeddings, BF16 file ----
    vcfg = variant_cfg()
    vmodel = Z.HybridModel(vcfg)
    init_random(vmodel, gen)
    vdir = os.path.join(out, "variant")
    vmodel.save(os.path.join(vdir, "model"), generation="current", dtype=torch.bfloat16)
    vm = Z.HybridModel.load(os.path.join(vdir, "model")).eval()
    assert vm.cfg.tie_word_embeddings and vm.model.layers[1].mla.q_rank is None
    ids = torch.randint(0, vcfg.vocab_size, (1, 40), generator=gen)
    with torch.no_grad():
        vl, vh = vm(ids, return_hidden=True)
        lg, st = vm.prefill(ids[:, :3])
        inc = torch.cat([lg] + [vm.step(ids[:, t], st)[:, None] for t in range(3, 40)], 1)
        assert (inc - vl).abs().max().item() < 1e-4
    vmla = vm.model.layers[1].mla
    write_json(os.path.join(vdir, "logits.json"), {
        "format": "zebra-tiny-hybrid-logits-v1", "generator": "scripts/reference/make_tiny_hybrid.py",
        "model_dir": "model", "seed": SEED, "dtype": "float32 compute, weights stored as BF16",
        "versions": versions(), "rounding": "logits rounded to 5 decimals",
        "rope": {"inv_freq": [float(v) for v in vmla.inv_freq], "m": vmla.rope_m, "low": vmla.yarn_low,
                 "high": vmla.yarn_high, "softmax_scale": vmla.softmax_scale},
        "sequences": [{"name": "len40", "ids": ids[0].tolist(), "logits": [r(row, 5) for row in vl[0]],
                       "argmax": vl[0].argmax(-1).tolist(),
                       "max_abs_diff_prefill3_step": (inc - vl).abs().max().item()}]})

    # ---- SVD / kqvo initialisation from a tiny Llama attention block (§2.1, §2.2) ----
    write_svd_init(os.path.join(out, "svd_init.safetensors"), gen)

    # ---- YaRN tables of the real configs (§1.3) and of the two tiny ones ----
    pos = [0, 1, 37, 8191, 8192, 131071]
    write_json(os.path.join(out, "yarn.json"), {
        "format": "zebra-yarn-v1", "generator": "scripts/reference/make_tiny_hybrid.py",
        "note": "cos/sin hold the first D/2 entries (the table is cat(x, x)); already multiplied by m",
        "tables": [
            yarn_entry("zebra-1B", 32, 500000.0, Z.Yarn(32.0, 8192), pos),
            yarn_entry("zebra-3B", 64, 500000.0, Z.Yarn(32.0, 8192), pos),
            yarn_entry("zebra-8B", 64, 500000.0, Z.Yarn(8.0, 8192), pos),
            yarn_entry("tiny-main", 8, 16.0, cfg.yarn, [0, 1, 31, 32, 69]),
            yarn_entry("tiny-variant", 8, 16.0, vcfg.yarn, [0, 1, 31, 32, 39]),
        ]})

    total = 0
    for root, _, files in os.walk(out):
        for fn in sorted(files):
            p = os.path.join(root, fn)
            total += os.path.getsize(p)
            print(f"{os.path.relpath(p, out):40s} {os.path.getsize(p):8d}")
    print(f"total {total} bytes")


if __name__ == "__main__":
    main()
