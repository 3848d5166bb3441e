#!/usr/bin/env python3
"""Cross-checks of scripts/reference/zebra_ref.py.

1. Mamba2 (nkv = nh, so no GQA repeat) vs transformers' Mamba2Mixer torch path.
2. MLA (full kv heads, lora layer norms) vs transformers' DeepseekV3Attention (eager,
   rope_interleave=True, yarn rope), with and without mscale_all_dim.
3. Internal identities: chunked SSD == sequential recurrence; absorbed MLA == decompressed;
   prefill + step == full forward (whole hybrid); save/load round trip in both config
   generations; SVD-init products == truncated SVDs; YaRN correction ranges of the real configs
   (spec §1.3 derived values).
Prints a summary; exits 1 if any check fails.
"""
import math
import os
import sys
import tempfile

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import zebra_ref as Z  # noqa: E402

torch.set_num_threads(2)
RESULTS = []


def check(name, diff, tol):
    ok = bool(diff <= tol)
    RESULTS.append((name, float(diff), tol, ok))
    print(f"[{'PASS' if ok else 'FAIL'}] {name}: max abs diff {float(diff):.3e} (tol {tol:.0e})")


def maxdiff(a, b):
    return (a.double() - b.double()).abs().max().item()


def tiny_cfg(**kw):
    base = dict(vocab_size=128, hidden_size=32, intermediate_size=48, n_layer=4, mla_layers=[0, 2],
                num_attention_heads=4, num_key_value_heads=2, kv_lora_rank=16, q_lora_rank=24,
                qk_rope_head_dim=8, qk_nope_head_dim=4, v_head_dim=8, d_inner=32, d_xb=16, d_state=8,
                ngroups=4, rope_theta=16.0, max_position_embeddings=256,
                yarn=Z.Yarn(factor=4.0, original_max_position_embeddings=32), llama_head_dim=8)
    base.update(kw)
    return Z.ZebraConfig(**base)


def randomize(module, gen, scale=0.2):
    with torch.no_grad():
        for n, p in module.named_parameters():
            if n.endswith("A_log"):
                p.copy_(torch.log(torch.rand(p.shape, generator=gen) * 15 + 1))
            elif n.endswith("dt_bias"):
                dt = torch.exp(torch.rand(p.shape, generator=gen) * (math.log(0.1) - math.log(1e-3)) + math.log(1e-3))
                p.copy_(dt + torch.log(-torch.expm1(-dt)))
            elif "norm" in n or n.endswith(".D") or n == "D":
                p.copy_(1 + 0.3 * torch.randn(p.shape, generator=gen))
            else:
                p.copy_(scale * torch.randn(p.shape, generator=gen))


# ---------------------------------------------------------------------------------------------
def check_mamba_vs_hf():
    from transformers import Mamba2Config
    from transformers.models.mamba2.modeling_mamba2 import Mamba2Mixer
    gen = torch.Generator().manual_seed(1)
    nh, hd = 4, 8
    cfg = tiny_cfg(hidden_size=nh * hd, num_key_value_heads=nh, d_inner=nh * hd, d_xb=nh * hd, d_state=hd, ngroups=nh)
    ours = Z.Mamba2(cfg)
    randomize(ours, gen)
    hcfg = Mamba2Config(hidden_size=nh * hd, num_heads=nh, head_dim=hd, state_size=hd, n_groups=nh, expand=1,
                        conv_kernel=4, use_conv_bias=True, use_bias=False, layer_norm_epsilon=Z.MAMBA_NORM_EPS,
                        chunk_size=8, num_hidden_layers=1, vocab_size=16)
    hf = Mamba2Mixer(hcfg, layer_idx=0).eval()
    # Same in_proj layout when nkv == nh: [z | x | B | C | dt] == HF [gate | x | B | C | dt].
    hf.load_state_dict({k: v.clone() for k, v in ours.state_dict().items()})
    x = torch.randn(2, 21, nh * hd, generator=gen)
    with torch.no_grad():
        ref = hf(x)
        a = ours.forward_sequential(x)
        b = ours.forward_chunked(x, 8)
    check("Mamba2 sequential vs transformers Mamba2Mixer (fp32)", maxdiff(a, ref), 1e-5)
    check("Mamba2 chunked(8) vs transformers Mamba2Mixer (fp32)", maxdiff(b, ref), 1e-5)


def check_mla_vs_hf():
    from transformers import DeepseekV3Config
    from transformers.models.deepseek_v3.modeling_deepseek_v3 import DeepseekV3Attention, DeepseekV3RotaryEmbedding
    for label, yarn in (("mscale_all_dim=0", Z.Yarn(factor=4.0, original_max_position_embeddings=32)),
                        ("mscale=mscale_all_dim=0.707", Z.Yarn(factor=4.0, original_max_position_embeddings=32,
                                                               mscale=0.707, mscale_all_dim=0.707))):
        gen = torch.Generator().manual_seed(2)
        cfg = tiny_cfg(use_full_kv_head=True, use_lora_layer_norm=True, yarn=yarn)
        ours = Z.MLA(cfg, 0)
        randomize(ours, gen)
        rp = {"rope_type": "yarn", "rope_theta": cfg.rope_theta, "factor": yarn.factor,
              "original_max_position_embeddings": yarn.original_max_position_embeddings,
              "beta_fast": yarn.beta_fast, "beta_slow": yarn.beta_slow}
        if yarn.mscale_all_dim:
            rp.update(mscale=yarn.mscale, mscale_all_dim=yarn.mscale_all_dim)
        hcfg = DeepseekV3Config(hidden_size=cfg.hidden_size, num_attention_heads=cfg.num_attention_heads,
                                num_key_value_heads=cfg.num_attention_heads, q_lora_rank=cfg.q_lora_rank,
                                kv_lora_rank=cfg.kv_lora_rank, qk_rope_head_dim=cfg.qk_rope_head_dim,
                                qk_nope_head_dim=cfg.qk_nope_head_dim, v_head_dim=cfg.v_head_dim,
                                rope_interleave=True, rope_parameters=rp,
                                max_position_embeddings=cfg.max_position_embeddings, attention_bias=False,
                                num_hidden_layers=1, vocab_size=16, n_routed_experts=4, num_experts_per_tok=2,
                                n_group=1, topk_group=1)
        hcfg._attn_implementation = "eager"
        hf = DeepseekV3Attention(hcfg, 0).eval()
        sd = {k: v.clone() for k, v in ours.state_dict().items()}
        sd["o_proj.weight"] = sd.pop("out_proj.weight")
        hf.load_state_dict(sd)
        rot = DeepseekV3RotaryEmbedding(hcfg)
        T = 70
        x = torch.randn(1, T, cfg.hidden_size, generator=gen)
        pos = torch.arange(T)[None]
        mask = torch.full((T, T), float("-inf")).triu(1)[None, None]
        with torch.no_grad():
            ref = hf(x, position_embeddings=rot(x, pos), attention_mask=mask)[0]
            a = ours(x)[0]
        check(f"MLA vs transformers DeepseekV3Attention, yarn {label}, T={T}", maxdiff(a, ref), 1e-5)


# ---------------------------------------------------------------------------------------------
def check_chunked_vs_sequential():
    gen = torch.Generator().manual_seed(3)
    cfg = tiny_cfg()   # GQA repeat active: d_xb = d_inner / 2
    m = Z.Mamba2(cfg).double()
    randomize(m, gen)
    x = torch.randn(2, 45, cfg.hidden_size, generator=gen, dtype=torch.float64)
    with torch.no_grad():
        seq, cs0, ss0 = m.forward_sequential(x, return_state=True)
        for L in (1, 7, 16, 45, 256):
            ch, cs, ss = m.forward_chunked(x, L, return_state=True)
            check(f"Mamba2 chunked(L={L}) == sequential (fp64, GQA repeat 2)", max(maxdiff(ch, seq), maxdiff(ss, ss0)), 1e-12)
        # step() from zero state == sequential
        cs = torch.zeros(2, m.conv_dim, 4, dtype=torch.float64)
        ss = torch.zeros(2, m.nh, m.P, m.N, dtype=torch.float64)
        outs = []
        for t in range(x.shape[1]):
            o, cs, ss = m.step(x[:, t], cs, ss)
            outs.append(o)
        check("Mamba2 step() x T from zero state == sequential (fp64)", maxdiff(torch.stack(outs, 1), seq), 1e-12)
        # prefill 3 (< d_conv) tokens then step
        _, cs, ss = m.forward_chunked(x[:, :3], 16, return_state=True)
        outs = []
        for t in range(3, x.shape[1]):
            o, cs, ss = m.step(x[:, t], cs, ss)
            outs.append(o)
        check("Mamba2 prefill(3) + step == sequential (fp64)", maxdiff(torch.stack(outs, 1), seq[:, 3:]), 1e-12)


def check_absorbed():
    for label, kw in (("GQA nkv=2, q_lora", {}),
                      ("full kv heads, q_proj, lora norms", dict(q_lora_rank=None, use_full_kv_head=True,
                                                                   use_lora_layer_norm=True))):
        gen = torch.Generator().manual_seed(4)
        cfg = tiny_cfg(**kw)
        m = Z.MLA(cfg, 0).double()
        randomize(m, gen)
        x = torch.randn(2, 70, cfg.hidden_size, generator=gen, dtype=torch.float64)
        with torch.no_grad():
            full, cache_full = m(x)
            ab, cache_ab = m.decode_absorbed(x, None, 0)
            check(f"MLA absorbed (all positions) == decompressed (fp64, {label})", maxdiff(ab, full), 1e-12)
            cache = None
            outs = []
            for t in range(x.shape[1]):
                o, cache = m.decode_absorbed(x[:, t:t + 1], cache, t)
                outs.append(o)
            check(f"MLA absorbed token-by-token == decompressed (fp64, {label})",
                  max(maxdiff(torch.cat(outs, 1), full), maxdiff(cache, cache_full)), 1e-12)
            # decompressed path with a cache (prefill 40 then 30)
            a, c = m(x[:, :40])
            b, _ = m(x[:, 40:], 40, c)
            check(f"MLA decompressed prefill(40)+continue == one pass (fp64, {label})",
                  maxdiff(torch.cat((a, b), 1), full), 1e-12)


def check_prefill_step(dtype=torch.float64, tol=1e-11):
    gen = torch.Generator().manual_seed(5)
    cfg = tiny_cfg()
    model = Z.HybridModel(cfg).to(dtype)
    randomize(model, gen)
    ids = torch.randint(0, cfg.vocab_size, (2, 50), generator=gen)
    with torch.no_grad():
        ref = model(ids)
        for k in (1, 3, 33):
            lg, st = model.prefill(ids[:, :k])
            outs = [lg]
            for t in range(k, ids.shape[1]):
                outs.append(model.step(ids[:, t], st)[:, None])
            check(f"hybrid prefill({k}) + step == full forward ({str(dtype)[6:]})", maxdiff(torch.cat(outs, 1), ref), tol)


def check_save_load():
    gen = torch.Generator().manual_seed(6)
    cfg = tiny_cfg(llama_rope_scaling={"factor": 4.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                                       "original_max_position_embeddings": 32, "rope_type": "llama3"})
    model = Z.HybridModel(cfg)
    randomize(model, gen)
    ids = torch.randint(0, cfg.vocab_size, (1, 40), generator=gen)
    with torch.no_grad():
        ref = model(ids)
        with tempfile.TemporaryDirectory() as d:
            for g in ("current", "june2025"):
                model.save(os.path.join(d, g), generation=g)
                m2 = Z.HybridModel.load(os.path.join(d, g))
                check(f"save/load round trip, {g} hybrid_config.json", maxdiff(m2(ids), ref), 0.0)


def check_svd_init():
    gen = torch.Generator().manual_seed(7)
    H, nh, nkv, hd = 32, 4, 2, 8
    cfg = tiny_cfg(qk_nope_head_dim=4, qk_rope_head_dim=4, v_head_dim=8, q_lora_rank=16, kv_lora_rank=16)
    Wq, Wk, Wv, Wo = (torch.randn(nh * hd, H, generator=gen), torch.randn(nkv * hd, H, generator=gen),
                      torch.randn(nkv * hd, H, generator=gen), torch.randn(H, nh * hd, generator=gen))
    p, rq, rkv = Z.mla_init_from_llama(Wq, Wk, Wv, Wo, cfg, nkv, hd)
    prod = Z.mla_init_products(p, rkv)
    check("SVD init: q_b@q_a == rank-r_q truncation of W_q", maxdiff(prod["q"], Z.truncated(Wq, rq)), 1e-4)
    M = torch.cat((Wk, Wv), 0)
    Mt = Z.truncated(M, rkv)
    d_n = cfg.qk_nope_head_dim
    want = torch.cat((Mt[: nkv * hd].reshape(nkv, hd, H)[:, :d_n], Mt[nkv * hd:].reshape(nkv, hd, H)), 1).reshape(-1, H)
    check("SVD init: kv_b@kv_a[:r] == rows of rank-r_kv truncation of [W_k;W_v]", maxdiff(prod["kv"], want), 1e-4)
    check("SVD init: rope-key rows == last d_r rows of head-mean W_k",
          maxdiff(prod["kpe"], Wk.reshape(nkv, hd, H).mean(0)[hd - cfg.qk_rope_head_dim:]), 1e-6)
    s = torch.tensor([4.0, 3.0, 2.0, 1.0] + [0.1] * 20)
    # energies: 16, 25, 29, 30, 30.01, ... of total 30.2 -> ratio 0.95 admits k with cum <= 28.69 -> 2 -> 8
    check("dynamic rank rule (cum s^2 ratio, round up to 8)", abs(Z.dynamic_rank(s, 0.95) - 8) + abs(Z.dynamic_rank(s, 1.0) - 24), 0)
    gm = torch.Generator().manual_seed(8)
    mp = Z.mamba2_init_from_llama(Wq, Wk, Wv, Wo, tiny_cfg(hidden_size=H, d_inner=nh * hd, d_xb=nkv * hd, d_state=hd), gm)
    ip = mp["in_proj.weight"]
    ok = (torch.equal(ip[32:48], Wv) and torch.equal(ip[48:64], Wk) and torch.equal(ip[64:96], Wq)
          and ip.shape[0] == 2 * 32 + 2 * 16 + 4)
    check("Mamba2 kqvo init: in_proj blocks x<-V, B<-K, C<-Q", 0 if ok else 1, 0)


def check_yarn_tables():
    y32 = Z.Yarn(factor=32.0, original_max_position_embeddings=8192)
    y8 = Z.Yarn(factor=8.0, original_max_position_embeddings=8192)
    _, m32, lo, hi = Z.yarn_params(32, 500000.0, y32)
    _, _, lo64, hi64 = Z.yarn_params(64, 500000.0, y32)
    _, m8, _, _ = Z.yarn_params(64, 500000.0, y8)
    ok = (lo, hi, lo64, hi64) == (4, 9, 9, 18)
    check("YaRN correction range D=32 -> (4,9), D=64 -> (9,18) (spec §1.3)", 0 if ok else 1, 0)
    check("YaRN mscale s=32 == 1.346574, s=8 == 1.207944", max(abs(m32 - 1.346574), abs(m8 - 1.207944)), 1e-6)


def main():
    torch.manual_seed(0)
    for fn in (check_yarn_tables, check_mamba_vs_hf, check_mla_vs_hf, check_chunked_vs_sequential, check_absorbed,
               lambda: check_prefill_step(torch.float64, 1e-11), lambda: check_prefill_step(torch.float32, 1e-4),
               check_save_load, check_svd_init):
        try:
            fn()
        except Exception as e:  # a crashing check is a failing check
            import traceback
            traceback.print_exc()
            RESULTS.append((getattr(fn, "__name__", "check"), float("nan"), 0, False))
    n_fail = sum(1 for r in RESULTS if not r[3])
    print(f"\n{len(RESULTS) - n_fail} passed, {n_fail} failed")
    sys.exit(1 if n_fail else 0)


if __name__ == "__main__":
    main()
