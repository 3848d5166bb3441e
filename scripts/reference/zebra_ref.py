#!/usr/bin/env python3
"""PyTorch reference of AMD's Zebra-Llama hybrid (MLA + Mamba2) layers.

Written from /work/shared/spec/zebra-llama.md (section numbers below refer to it). Plain PyTorch,
CPU, any float dtype (fp32 for fixtures, fp64 for identity checks). Nothing here uses custom
kernels: every formula is spelled out so a C++ port can be checked line by line.

Contents
  ZebraConfig, load_config(dir), config_dicts(cfg, generation)      -- §7.2 both generations
  yarn_params(D, base, yarn) -> (inv_freq, mscale, low, high)       -- §1.3 RoPE
  rope_interleaved(x, cos, sin)                                      -- §1.3 pairing
  MLA       forward / prefill (returns latent cache) / decode_absorbed
  Mamba2    forward_sequential / forward_chunked / prefill / step
  HybridModel  forward (optionally per-layer hidden states), prefill + step, load/save (§7)
  mla_init_from_llama / mamba2_init_from_llama / dynamic_rank / mla_init_products  -- §2
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

LORA_NORM_EPS = 1e-6    # q_a_layernorm / kv_a_layernorm: DeepSeek RMSNorm default eps (AMD code builds them without eps)
MAMBA_NORM_EPS = 1e-5   # gated RMSNorm of Mamba2: hard-coded 1e-5 in the MambaInLlama layer
D_CONV = 4


# ----------------------------------------------------------------------------------------------
# Config (§7.2)
# ----------------------------------------------------------------------------------------------

@dataclass
class Yarn:
    factor: float = 1.0
    original_max_position_embeddings: int = 8192
    beta_fast: float = 32.0
    beta_slow: float = 1.0
    mscale: float = 1.0
    mscale_all_dim: float = 0.0


@dataclass
class ZebraConfig:
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    n_layer: int
    mla_layers: list
    num_attention_heads: int
    num_key_value_heads: int
    kv_lora_rank: int
    q_lora_rank: Optional[int]
    qk_rope_head_dim: int
    qk_nope_head_dim: int
    v_head_dim: int
    d_inner: int
    d_xb: int
    d_state: int
    ngroups: int
    rms_norm_eps: float = 1e-5
    use_lora_layer_norm: bool = False
    use_full_kv_head: bool = False
    qkv_rank_divisor: int = 8
    max_position_embeddings: int = 131072
    rope_theta: float = 500000.0
    yarn: Yarn = field(default_factory=Yarn)
    attention_bias: bool = False
    layer_rank_list: dict = field(default_factory=dict)   # {"i": {"q_rank": int, "kv_rank": int}}
    tie_word_embeddings: bool = False
    d_conv: int = D_CONV
    # Llama-side fields kept only to write config.json back
    llama_head_dim: Optional[int] = None
    llama_rope_theta: float = 500000.0
    llama_rope_scaling: Optional[dict] = None
    llama_max_position_embeddings: Optional[int] = None
    bos_token_id: int = 1
    eos_token_id: int = 2

    @property
    def nheads_ssm(self):
        return self.d_inner // self.d_state

    def ranks(self, layer_idx: int):
        """(q_rank or None, kv_rank) of one MLA layer: layer_rank_list overrides the global ranks."""
        e = self.layer_rank_list.get(str(layer_idx)) if self.layer_rank_list else None
        if e:
            return int(e["q_rank"]), int(e["kv_rank"])
        return self.q_lora_rank, self.kv_lora_rank


def yarn_from_rope_scaling(rs: Optional[dict]) -> Yarn:
    """LOADER RULE (§7.2): always YaRN; factor/original_max from the dict (default 8192), betas and
    mscales from the dict if present else 32/1/1/0, whatever the dict's own rope_type says.
    A missing/null rope_scaling is taken as factor 1 (YaRN with factor 1 == plain RoPE, mscale 1)."""
    if not rs:
        return Yarn(factor=1.0)
    def get(k, d):
        v = rs.get(k)
        return d if v is None else v
    return Yarn(factor=float(get("factor", 1.0)),
                original_max_position_embeddings=int(get("original_max_position_embeddings", 8192)),
                beta_fast=float(get("beta_fast", 32.0)), beta_slow=float(get("beta_slow", 1.0)),
                mscale=float(get("mscale", 1.0)), mscale_all_dim=float(get("mscale_all_dim", 0.0)))


def load_config(model_dir: str, hybrid_dir: Optional[str] = None) -> ZebraConfig:
    """Read config.json (Llama) and hybrid_config.json of either generation."""
    with open(os.path.join(model_dir, "config.json")) as f:
        llama = json.load(f)
    with open(os.path.join(hybrid_dir or model_dir, "hybrid_config.json")) as f:
        hy = json.load(f)
    ssm = hy.get("ssm_cfg") or {}
    nh = int(hy.get("num_attention_heads", llama["num_attention_heads"]))
    hidden = int(hy.get("hidden_size", llama["hidden_size"]))
    head_dim = llama.get("head_dim") or hidden // llama["num_attention_heads"]
    d_model = int(hy.get("d_model", hidden))
    d_inner = hy.get("d_inner") or int(ssm.get("expand", 1) * d_model)
    d_state = int(ssm.get("d_state", head_dim))
    return ZebraConfig(
        vocab_size=int(llama["vocab_size"]),
        hidden_size=hidden,
        intermediate_size=int(hy.get("intermediate_size", llama["intermediate_size"])),
        n_layer=int(hy.get("n_layer", llama["num_hidden_layers"])),
        mla_layers=[int(i) for i in hy.get("mla_layers", [])],
        rms_norm_eps=float(hy.get("rms_norm_eps", llama.get("rms_norm_eps", 1e-5))),
        num_attention_heads=nh,
        num_key_value_heads=int(hy.get("num_key_value_heads", llama["num_key_value_heads"])),
        kv_lora_rank=int(hy["kv_lora_rank"]),
        q_lora_rank=None if hy.get("q_lora_rank") is None else int(hy["q_lora_rank"]),
        qk_rope_head_dim=int(hy["qk_rope_head_dim"]),
        qk_nope_head_dim=int(hy["qk_nope_head_dim"]),
        v_head_dim=int(hy["v_head_dim"]),
        d_inner=int(d_inner),
        d_xb=int(hy["d_xb"]),
        d_state=d_state,
        ngroups=int(ssm.get("ngroups", int(d_inner) // d_state)),
        use_lora_layer_norm=bool(hy.get("use_lora_layer_norm", False)),
        use_full_kv_head=bool(hy.get("use_full_kv_head", False)),
        qkv_rank_divisor=int(hy.get("qkv_rank_divisor", 8)),
        max_position_embeddings=int(hy.get("max_position_embeddings", llama.get("max_position_embeddings", 131072))),
        rope_theta=float(hy.get("rope_theta", llama.get("rope_theta", 10000.0))),
        yarn=yarn_from_rope_scaling(hy.get("rope_scaling")),
        attention_bias=bool(hy.get("attention_bias", False)),
        layer_rank_list=dict(hy.get("layer_rank_list") or {}),
        tie_word_embeddings=bool(llama.get("tie_word_embeddings", False)),
        llama_head_dim=head_dim,
        llama_rope_theta=float(llama.get("rope_theta", 500000.0)),
        llama_rope_scaling=llama.get("rope_scaling"),
        llama_max_position_embeddings=llama.get("max_position_embeddings"),
        bos_token_id=llama.get("bos_token_id", 1),
        eos_token_id=llama.get("eos_token_id", 2),
    )


def config_dicts(cfg: ZebraConfig, generation: str = "current"):
    """(config.json dict, hybrid_config.json dict) as AMD's trainer writes them.
    generation "current": rope_scaling = {"factor", "original_max_position_embeddings", "rope_type": "yarn"}.
    generation "june2025": rope_scaling = the Llama llama3 dict (with the YaRN factor and original max),
    top-level rope_type "yarn", plus use_fixed_rank_for_first_and_last_block, layer_rank_list,
    q_energy_ratio, kv_energy_ratio."""
    y = cfg.yarn
    llama = {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama",
        "vocab_size": cfg.vocab_size, "hidden_size": cfg.hidden_size,
        "intermediate_size": cfg.intermediate_size, "num_hidden_layers": cfg.n_layer,
        "num_attention_heads": cfg.num_attention_heads, "num_key_value_heads": cfg.num_key_value_heads,
        "head_dim": cfg.llama_head_dim or cfg.hidden_size // cfg.num_attention_heads,
        "hidden_act": "silu", "rms_norm_eps": cfg.rms_norm_eps,
        "rope_theta": cfg.llama_rope_theta, "rope_scaling": cfg.llama_rope_scaling,
        "max_position_embeddings": cfg.llama_max_position_embeddings or cfg.max_position_embeddings,
        "attention_bias": False, "attention_dropout": 0.0, "mlp_bias": False,
        "tie_word_embeddings": cfg.tie_word_embeddings,
        "bos_token_id": cfg.bos_token_id, "eos_token_id": cfg.eos_token_id,
        "torch_dtype": "float32", "initializer_range": 0.02, "pretraining_tp": 1, "use_cache": True,
    }
    hy = {
        "hidden_size": cfg.hidden_size, "intermediate_size": cfg.intermediate_size, "hidden_act": "silu",
        "n_layer": cfg.n_layer, "mla_layers": list(cfg.mla_layers), "rms_norm_eps": cfg.rms_norm_eps,
        "num_attention_heads": cfg.num_attention_heads, "num_key_value_heads": cfg.num_key_value_heads,
        "kv_lora_rank": cfg.kv_lora_rank, "q_lora_rank": cfg.q_lora_rank,
        "use_lora_layer_norm": cfg.use_lora_layer_norm,
    }
    if generation == "june2025":
        hy["use_fixed_rank_for_first_and_last_block"] = False
    hy["use_full_kv_head"] = cfg.use_full_kv_head
    if generation == "june2025":
        hy["layer_rank_list"] = dict(cfg.layer_rank_list)
    hy.update({
        "qk_rope_head_dim": cfg.qk_rope_head_dim, "v_head_dim": cfg.v_head_dim,
        "qk_nope_head_dim": cfg.qk_nope_head_dim,
    })
    if generation == "june2025":
        hy["q_energy_ratio"] = None
        hy["kv_energy_ratio"] = None
    hy.update({
        "qkv_rank_divisor": cfg.qkv_rank_divisor, "max_position_embeddings": cfg.max_position_embeddings,
        "rope_theta": cfg.rope_theta,
    })
    if generation == "current":
        rs = {"factor": y.factor, "original_max_position_embeddings": y.original_max_position_embeddings,
              "rope_type": "yarn"}
        for k, d in (("beta_fast", 32.0), ("beta_slow", 1.0), ("mscale", 1.0), ("mscale_all_dim", 0.0)):
            if getattr(y, k) != d:
                rs[k] = getattr(y, k)
    elif generation == "june2025":
        rs = {"factor": y.factor, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
              "original_max_position_embeddings": y.original_max_position_embeddings, "rope_type": "llama3"}
    else:
        raise ValueError(generation)
    hy.update({
        "rope_scaling": rs, "attention_bias": cfg.attention_bias, "attention_dropout": 0.0,
        "rope_type": "yarn", "d_model": cfg.hidden_size,
        "ssm_cfg": {"expand": 1, "ngroups": cfg.ngroups, "d_state": cfg.d_state,
                    "repeat_kv_before_conv": False},
        "d_inner": cfg.d_inner, "d_xb": cfg.d_xb,
    })
    return llama, hy


# ----------------------------------------------------------------------------------------------
# Norms
# ----------------------------------------------------------------------------------------------

class RMSNorm(nn.Module):
    """Llama RMSNorm: normalise in fp32, cast back, times weight."""

    def __init__(self, n, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(n))
        self.eps = eps

    def forward(self, x):
        dt = x.dtype
        xf = x.to(torch.float32) if dt in (torch.float16, torch.bfloat16) else x
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * xf.to(dt)


def gated_group_rmsnorm(y, z, weight, group, eps=MAMBA_NORM_EPS):
    """Mamba2 norm with norm_before_gate=False: g = y*silu(z); RMS-normalise each contiguous group
    of `group` channels; times weight.  y, z: [..., d_inner]."""
    g = y * F.silu(z)
    shp = g.shape
    gg = g.reshape(*shp[:-1], shp[-1] // group, group)
    gg = gg * torch.rsqrt(gg.pow(2).mean(-1, keepdim=True) + eps)
    return gg.reshape(shp) * weight


# ----------------------------------------------------------------------------------------------
# YaRN RoPE (§1.3)
# ----------------------------------------------------------------------------------------------

def get_mscale(scale, mscale=1.0):
    if scale <= 1:
        return 1.0
    return 0.1 * mscale * math.log(scale) + 1.0


def yarn_params(D: int, base: float, y: Yarn):
    """inv_freq [D/2] (fp32), cos/sin multiplier m, and the integer correction range (low, high)."""
    def corr_dim(n_rot):
        return D * math.log(y.original_max_position_embeddings / (n_rot * 2 * math.pi)) / (2 * math.log(base))
    low = max(math.floor(corr_dim(y.beta_fast)), 0)
    high = min(math.ceil(corr_dim(y.beta_slow)), D - 1)
    expo = torch.arange(0, D, 2, dtype=torch.float32) / D
    freq_extra = 1.0 / (base ** expo)
    freq_inter = 1.0 / (y.factor * base ** expo)
    hi = high + 0.001 if low == high else high
    ramp = torch.clamp((torch.arange(D // 2, dtype=torch.float32) - low) / (hi - low), 0, 1)
    inv_freq = freq_inter * ramp + freq_extra * (1 - ramp)
    m = get_mscale(y.factor, y.mscale) / get_mscale(y.factor, y.mscale_all_dim)
    return inv_freq, float(m), low, high


def rope_cos_sin(positions: torch.Tensor, inv_freq: torch.Tensor, m: float, dtype):
    """positions [T] (int) -> cos, sin [T, D] = m * cos/sin(cat(t*f, t*f)), computed in fp32.
    Like the reference code, values come from one table over positions 0..n-1 (n a multiple of
    256), so a position's cos/sin never depends on which other positions are computed with it."""
    n = (int(positions.max()) // 256 + 1) * 256
    freqs = torch.outer(torch.arange(n, dtype=torch.float32), inv_freq)
    emb = torch.cat((freqs, freqs), dim=-1)
    cos, sin = emb.cos() * m, emb.sin() * m
    return cos[positions].to(dtype), sin[positions].to(dtype)


def rope_interleaved(x, cos, sin):
    """x [..., T, D] in the projection's original channel order.  Permute to [evens..., odds...]
    then rotate-half: equals rotating adjacent pairs (2j, 2j+1) by angle j, written in split-half
    output order [rotated evens..., rotated odds...]."""
    D = x.shape[-1]
    x = torch.cat((x[..., 0::2], x[..., 1::2]), dim=-1)
    rot = torch.cat((-x[..., D // 2:], x[..., : D // 2]), dim=-1)
    return x * cos + rot * sin


# ----------------------------------------------------------------------------------------------
# MLA (§1.3)
# ----------------------------------------------------------------------------------------------

def softmax_f32(scores):
    """Softmax over the last axis in fp32 (or in the input dtype when that is wider, e.g. fp64)."""
    wide = scores if scores.dtype in (torch.float32, torch.float64) else scores.to(torch.float32)
    return torch.softmax(wide, dim=-1)


class MLA(nn.Module):
    def __init__(self, cfg: ZebraConfig, layer_idx: int = 0):
        super().__init__()
        H, nh = cfg.hidden_size, cfg.num_attention_heads
        self.nh = nh
        self.nkv = nh if cfg.use_full_kv_head else cfg.num_key_value_heads
        self.d_n, self.d_r, self.d_v = cfg.qk_nope_head_dim, cfg.qk_rope_head_dim, cfg.v_head_dim
        self.d_q = self.d_n + self.d_r
        self.q_rank, self.kv_rank = cfg.ranks(layer_idx)
        bias = cfg.attention_bias
        if self.q_rank is None:
            self.q_proj = nn.Linear(H, nh * self.d_q, bias=bias)
        else:
            self.q_a_proj = nn.Linear(H, self.q_rank, bias=bias)
            self.q_a_layernorm = RMSNorm(self.q_rank, LORA_NORM_EPS) if cfg.use_lora_layer_norm else None
            self.q_b_proj = nn.Linear(self.q_rank, nh * self.d_q, bias=False)
        self.kv_a_proj_with_mqa = nn.Linear(H, self.kv_rank + self.d_r, bias=bias)
        self.kv_a_layernorm = RMSNorm(self.kv_rank, LORA_NORM_EPS) if cfg.use_lora_layer_norm else None
        self.kv_b_proj = nn.Linear(self.kv_rank, self.nkv * (self.d_n + self.d_v), bias=False)
        self.out_proj = nn.Linear(nh * self.d_v, H, bias=bias)
        self.inv_freq, self.rope_m, self.yarn_low, self.yarn_high = yarn_params(self.d_r, cfg.rope_theta, cfg.yarn)
        self.softmax_scale = self.d_q ** -0.5
        if cfg.yarn.mscale_all_dim:
            s = get_mscale(cfg.yarn.factor, cfg.yarn.mscale_all_dim)
            self.softmax_scale *= s * s

    # -- pieces shared by both paths --
    def _queries(self, x, pos):
        """x [B,T,H] -> q_nope [B,nh,T,d_n], rotated q_pe [B,nh,T,d_r] (split-half order)."""
        B, T, _ = x.shape
        if self.q_rank is None:
            q = self.q_proj(x)
        else:
            c = self.q_a_proj(x)
            if self.q_a_layernorm is not None:
                c = self.q_a_layernorm(c)
            q = self.q_b_proj(c)
        q = q.view(B, T, self.nh, self.d_q).transpose(1, 2)
        q_nope, q_pe = q[..., : self.d_n], q[..., self.d_n:]
        cos, sin = rope_cos_sin(pos, self.inv_freq, self.rope_m, x.dtype)
        return q_nope, rope_interleaved(q_pe, cos, sin)

    def latent(self, x, pos):
        """x [B,T,H] -> cache entries [B,T,r_kv+d_r] = [c_kv (after kv_a_layernorm), rotated kpe]."""
        a = self.kv_a_proj_with_mqa(x)
        c_kv, kpe = a[..., : self.kv_rank], a[..., self.kv_rank:]
        if self.kv_a_layernorm is not None:
            c_kv = self.kv_a_layernorm(c_kv)
        cos, sin = rope_cos_sin(pos, self.inv_freq, self.rope_m, x.dtype)
        return torch.cat((c_kv, rope_interleaved(kpe, cos, sin)), dim=-1)

    def w_uk_uv(self):
        """kv_b_proj split per KV head: W_UK [nkv, d_n, r_kv], W_UV [nkv, d_v, r_kv]."""
        w = self.kv_b_proj.weight.view(self.nkv, self.d_n + self.d_v, self.kv_rank)
        return w[:, : self.d_n], w[:, self.d_n:]

    def _group(self):
        """g(h) for every query head: floor(h / (nh/nkv)) (HF repeat_kv grouping)."""
        return torch.arange(self.nh) // (self.nh // self.nkv)

    # -- decompressed ("HF path") --
    def forward(self, x, start_pos: int = 0, cache: Optional[torch.Tensor] = None):
        """Causal attention over [cache tokens, x] with decompressed K/V.  x [B,T,H];
        cache [B,S,r_kv+d_r] or None.  Returns (y [B,T,H], new cache [B,S+T,r_kv+d_r])."""
        B, T, _ = x.shape
        pos = torch.arange(start_pos, start_pos + T)
        q_nope, q_pe = self._queries(x, pos)
        lat = self.latent(x, pos)
        full = lat if cache is None else torch.cat((cache, lat), dim=1)
        S = full.shape[1]
        c_kv, kpe = full[..., : self.kv_rank], full[..., self.kv_rank:]
        kv = self.kv_b_proj(c_kv).view(B, S, self.nkv, self.d_n + self.d_v).transpose(1, 2)
        g = self._group()
        k_nope, v = kv[:, g, :, : self.d_n], kv[:, g, :, self.d_n:]           # [B,nh,S,*]
        scores = (q_nope @ k_nope.transpose(-1, -2) + q_pe @ kpe[:, None].transpose(-1, -2)) * self.softmax_scale
        qpos = pos[:, None]
        kpos = torch.arange(S)[None, :]
        scores = scores.masked_fill(kpos > qpos, float("-inf"))
        p = softmax_f32(scores).to(x.dtype)
        o = (p @ v).transpose(1, 2).reshape(B, T, self.nh * self.d_v)
        return self.out_proj(o), full

    # -- absorbed ("fast path"): only the latent cache is ever read --
    def decode_absorbed(self, x, cache: Optional[torch.Tensor], start_pos: int):
        """Same result as forward() but K/V are never decompressed:
          q_lat^h = W_UK^{g(h)}^T q_nope^h               [r_kv]
          score   = scale * (q_lat^h . c_kv_s + q_pe^h . kpe_s)
          o_lat^h = sum_s p_s c_kv_s                     [r_kv]
          o^h     = W_UV^{g(h)} o_lat^h                  [d_v]
        x [B,T,H] (T >= 1 new tokens at positions start_pos..), cache [B,start_pos,r_kv+d_r] or None."""
        B, T, _ = x.shape
        pos = torch.arange(start_pos, start_pos + T)
        q_nope, q_pe = self._queries(x, pos)
        lat = self.latent(x, pos)
        full = lat if cache is None else torch.cat((cache, lat), dim=1)
        S = full.shape[1]
        c_kv, kpe = full[..., : self.kv_rank], full[..., self.kv_rank:]
        w_uk, w_uv = self.w_uk_uv()
        g = self._group()
        q_lat = torch.einsum("bhtn,hnr->bhtr", q_nope, w_uk[g])                  # [B,nh,T,r_kv]
        scores = (q_lat @ c_kv[:, None].transpose(-1, -2) + q_pe @ kpe[:, None].transpose(-1, -2)) * self.softmax_scale
        scores = scores.masked_fill(torch.arange(S)[None, :] > pos[:, None], float("-inf"))
        p = softmax_f32(scores).to(x.dtype)
        o_lat = p @ c_kv[:, None]                                                # [B,nh,T,r_kv]
        o = torch.einsum("bhtr,hvr->bhtv", o_lat, w_uv[g])
        o = o.transpose(1, 2).reshape(B, T, self.nh * self.d_v)
        return self.out_proj(o), full


# ----------------------------------------------------------------------------------------------
# Mamba2 (§1.4)
# ----------------------------------------------------------------------------------------------

class Mamba2(nn.Module):
    def __init__(self, cfg: ZebraConfig):
        super().__init__()
        H = cfg.hidden_size
        self.d_inner, self.d_xb, self.N = cfg.d_inner, cfg.d_xb, cfg.d_state
        self.nh = cfg.nheads_ssm
        assert self.nh == cfg.ngroups, "ngroups must equal nheads (headdim = d_state)"
        self.P = self.N
        self.rep = self.d_inner // self.d_xb
        self.conv_dim = self.d_inner + 2 * self.d_xb
        self.d_conv = cfg.d_conv
        self.in_proj = nn.Linear(H, 2 * self.d_inner + 2 * self.d_xb + self.nh, bias=False)
        self.conv1d = nn.Conv1d(self.conv_dim, self.conv_dim, self.d_conv, groups=self.conv_dim,
                                padding=self.d_conv - 1, bias=True)
        self.dt_bias = nn.Parameter(torch.zeros(self.nh))
        self.A_log = nn.Parameter(torch.zeros(self.nh))
        self.D = nn.Parameter(torch.ones(self.nh))
        self.norm = nn.Module()
        self.norm.weight = nn.Parameter(torch.ones(self.d_inner))
        self.out_proj = nn.Linear(self.d_inner, H, bias=False)

    # -- shared pieces --
    def _split_proj(self, zxbcdt):
        z = zxbcdt[..., : self.d_inner]
        xBC = zxbcdt[..., self.d_inner: self.d_inner + self.conv_dim]
        dt = zxbcdt[..., self.d_inner + self.conv_dim:]
        return z, xBC, dt

    def _ssm_inputs(self, xBC_act, dt_raw):
        """post-conv xBC [B,T,conv_dim], dt_raw [B,T,nh] -> per-head x [B,T,nh,P], B [B,T,nh,N],
        C [B,T,nh,N], dt [B,T,nh], A [nh]."""
        Bsz, T, _ = xBC_act.shape
        x = xBC_act[..., : self.d_xb].view(Bsz, T, self.d_xb // self.N, self.N)
        Bm = xBC_act[..., self.d_xb: 2 * self.d_xb].view(Bsz, T, self.d_xb // self.N, self.N)
        C = xBC_act[..., 2 * self.d_xb:].view(Bsz, T, self.nh, self.N)
        x = x.repeat_interleave(self.rep, dim=2)     # head h reads group floor(h / rep)
        Bm = Bm.repeat_interleave(self.rep, dim=2)
        dt = F.softplus(dt_raw + self.dt_bias)
        A = -torch.exp(self.A_log.float()).to(x.dtype)
        return x, Bm, C, dt, A

    def _conv(self, xBC):
        """Causal depthwise conv (zero left padding) + bias, then SiLU.  xBC [B,T,conv_dim]."""
        T = xBC.shape[1]
        y = self.conv1d(xBC.transpose(1, 2))[..., :T].transpose(1, 2)
        return F.silu(y)

    def _finish(self, y, z, x):
        """y [B,T,nh,P] (no D yet) -> out [B,T,H]."""
        Bsz, T = y.shape[:2]
        y = y + self.D[:, None] * x
        y = y.reshape(Bsz, T, self.d_inner)
        return self.out_proj(gated_group_rmsnorm(y, z, self.norm.weight, self.P))

    # -- definition: sequential recurrence --
    def forward_sequential(self, u, return_state: bool = False):
        z, xBC, dt_raw = self._split_proj(self.in_proj(u))
        x, Bm, C, dt, A = self._ssm_inputs(self._conv(xBC), dt_raw)
        Bsz, T = u.shape[:2]
        S = u.new_zeros(Bsz, self.nh, self.P, self.N)
        ys = []
        for t in range(T):
            dA = torch.exp(dt[:, t] * A)                                          # [B,nh]
            S = dA[..., None, None] * S + (dt[:, t, :, None, None] * x[:, t, :, :, None]) * Bm[:, t, :, None, :]
            ys.append(torch.einsum("bhpn,bhn->bhp", S, C[:, t]))
        y = torch.stack(ys, dim=1)
        out = self._finish(y, z, x)
        if return_state:
            return out, self._conv_state_from(xBC), S
        return out

    # -- chunked SSD (what the Triton kernel computes) --
    def forward_chunked(self, u, chunk_size: int = 256, return_state: bool = False):
        """Split time into chunks of L.  Inside a chunk, with a_s = dt_s*A and cum_l = sum_{s<=l} a_s:
          y_l = sum_{s<=l in chunk} (C_l . B_s) exp(cum_l - cum_s) dt_s x_s       (diagonal block)
              + exp(cum_l) * (S_start C_l)                                         (carry-in state)
          S_end = exp(cum_last) S_start + sum_s exp(cum_last - cum_s) dt_s x_s B_s^T"""
        z, xBC, dt_raw = self._split_proj(self.in_proj(u))
        x, Bm, C, dt, A = self._ssm_inputs(self._conv(xBC), dt_raw)
        Bsz, T = u.shape[:2]
        S = u.new_zeros(Bsz, self.nh, self.P, self.N)
        ys = []
        for c0 in range(0, T, chunk_size):
            sl = slice(c0, min(c0 + chunk_size, T))
            xc, Bc, Cc, dtc = x[:, sl], Bm[:, sl], C[:, sl], dt[:, sl]              # [B,L,nh,*]
            L = xc.shape[1]
            cum = torch.cumsum(dtc * A, dim=1)                                     # [B,L,nh]
            seg = cum[:, :, None, :] - cum[:, None, :, :]                           # [B,l,s,nh]
            causal = torch.ones(L, L, dtype=torch.bool).tril()
            decay = torch.exp(seg.masked_fill(~causal[None, :, :, None], float("-inf")))
            G = torch.einsum("blhn,bshn->blsh", Cc, Bc) * decay
            y_diag = torch.einsum("blsh,bsh,bshp->blhp", G, dtc, xc)
            y_off = torch.exp(cum)[..., None] * torch.einsum("bhpn,blhn->blhp", S, Cc)
            ys.append(y_diag + y_off)
            last = cum[:, -1]                                                      # [B,nh]
            w = torch.exp(last[:, None] - cum) * dtc                               # [B,L,nh]
            S = torch.exp(last)[..., None, None] * S + torch.einsum("blh,blhp,blhn->bhpn", w, xc, Bc)
        y = torch.cat(ys, dim=1)
        out = self._finish(y, z, x)
        if return_state:
            return out, self._conv_state_from(xBC), S
        return out

    forward = forward_chunked

    def _conv_state_from(self, xBC):
        """Conv state after a prefill: the last d_conv (=4) PRE-conv xBC inputs, oldest first,
        zero-padded on the left when fewer tokens were seen.  [B, conv_dim, d_conv]."""
        t = xBC.transpose(1, 2)
        return F.pad(t, (self.d_conv - t.shape[-1], 0)) if t.shape[-1] < self.d_conv else t[..., -self.d_conv:].clone()

    def step(self, u_t, conv_state, ssm_state):
        """One token.  u_t [B,H]; conv_state [B,conv_dim,4] = last 4 pre-conv inputs (oldest first);
        ssm_state [B,nh,P,N].  Shift the window left, append this token's xBC, conv = sum over the
        4 window slots * kernel + bias (slot k pairs with conv1d.weight[:,0,k]).  Returns
        (out [B,H], conv_state, ssm_state), states updated (new tensors)."""
        z, xBC, dt_raw = self._split_proj(self.in_proj(u_t))
        conv_state = torch.cat((conv_state[..., 1:], xBC[..., None]), dim=-1)
        xc = F.silu((conv_state * self.conv1d.weight[:, 0, :]).sum(-1) + self.conv1d.bias)
        x, Bm, C, dt, A = self._ssm_inputs(xc[:, None], dt_raw[:, None])
        x, Bm, C, dt = x[:, 0], Bm[:, 0], C[:, 0], dt[:, 0]
        dA = torch.exp(dt * A)
        ssm_state = dA[..., None, None] * ssm_state + (dt[..., None, None] * x[..., None]) * Bm[:, :, None, :]
        y = torch.einsum("bhpn,bhn->bhp", ssm_state, C)
        out = self._finish(y[:, None], z[:, None], x[:, None])[:, 0]
        return out, conv_state, ssm_state


# ----------------------------------------------------------------------------------------------
# Full hybrid (§1.2)
# ----------------------------------------------------------------------------------------------

class MLP(nn.Module):
    def __init__(self, H, I):
        super().__init__()
        self.gate_proj = nn.Linear(H, I, bias=False)
        self.up_proj = nn.Linear(H, I, bias=False)
        self.down_proj = nn.Linear(I, H, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Layer(nn.Module):
    def __init__(self, cfg: ZebraConfig, i: int):
        super().__init__()
        self.is_mla = i in cfg.mla_layers
        if self.is_mla:
            self.mla = MLA(cfg, i)
        else:
            self.mamba = Mamba2(cfg)
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.mlp = MLP(cfg.hidden_size, cfg.intermediate_size)

    def _mlp_res(self, h):
        return h + self.mlp(self.post_attention_layernorm(h))

    def forward(self, x, mamba_chunk=256):
        u = self.input_layernorm(x)
        mix = self.mla(u)[0] if self.is_mla else self.mamba.forward_chunked(u, mamba_chunk)
        return self._mlp_res(x + mix)


class HybridModel(nn.Module):
    def __init__(self, cfg: ZebraConfig):
        super().__init__()
        self.cfg = cfg
        self.model = nn.Module()
        self.model.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.model.layers = nn.ModuleList([Layer(cfg, i) for i in range(cfg.n_layer)])
        self.model.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.lm_head = nn.Linear(cfg.hidden_size, cfg.vocab_size, bias=False)
        if cfg.tie_word_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight

    def forward(self, ids, return_hidden=False, mamba_chunk=256):
        """ids [B,T] -> logits [B,T,V]; with return_hidden also [x_0 (embeddings), x_1, ..., x_L]
        (x_i = output of layer i-1, before the final norm)."""
        x = self.model.embed_tokens(ids)
        hs = [x]
        for layer in self.model.layers:
            x = layer(x, mamba_chunk)
            hs.append(x)
        logits = self.lm_head(self.model.norm(x))
        return (logits, hs) if return_hidden else logits

    # -- incremental inference: prefill then one token at a time --
    def prefill(self, ids):
        """Returns (logits [B,T,V], state) with state = per layer: ("mla", latent cache) or
        ("mamba", conv_state, ssm_state), plus the number of tokens seen."""
        x = self.model.embed_tokens(ids)
        states = []
        for layer in self.model.layers:
            u = layer.input_layernorm(x)
            if layer.is_mla:
                mix, cache = layer.mla.decode_absorbed(u, None, 0)
                states.append(["mla", cache])
            else:
                mix, cs, ss = layer.mamba.forward_chunked(u, return_state=True)
                states.append(["mamba", cs, ss])
            x = layer._mlp_res(x + mix)
        return self.lm_head(self.model.norm(x)), {"layers": states, "pos": ids.shape[1]}

    def step(self, tok, state):
        """tok [B] -> logits [B,V]; state updated in place (absorbed MLA decode, Mamba2 step)."""
        x = self.model.embed_tokens(tok)[:, None]
        pos = state["pos"]
        for layer, st in zip(self.model.layers, state["layers"]):
            u = layer.input_layernorm(x)
            if layer.is_mla:
                mix, st[1] = layer.mla.decode_absorbed(u, st[1], pos)
            else:
                o, st[1], st[2] = layer.mamba.step(u[:, 0], st[1], st[2])
                mix = o[:, None]
            x = layer._mlp_res(x + mix)
        state["pos"] = pos + 1
        return self.lm_head(self.model.norm(x))[:, 0]

    # -- checkpoint I/O (§7) --
    def amd_state_dict(self):
        """Tensor names exactly as in AMD's model.safetensors (§7.3)."""
        out = {}
        for k, v in self.state_dict().items():
            if k.endswith(".mla.inv_freq"):
                continue
            if k == "lm_head.weight" and self.cfg.tie_word_embeddings:
                continue
            out[k] = v.detach().contiguous()
        return out

    def save(self, out_dir, generation="current", dtype=torch.float32, hybrid_dir=None):
        from safetensors.torch import save_file
        os.makedirs(out_dir, exist_ok=True)
        llama, hy = config_dicts(self.cfg, generation)
        llama["torch_dtype"] = {torch.float32: "float32", torch.bfloat16: "bfloat16", torch.float16: "float16"}[dtype]
        with open(os.path.join(out_dir, "config.json"), "w") as f:
            json.dump(llama, f, indent=2)
            f.write("\n")
        with open(os.path.join(hybrid_dir or out_dir, "hybrid_config.json"), "w") as f:
            json.dump(hy, f, indent=2)
            f.write("\n")
        sd = {k: v.to(dtype) for k, v in sorted(self.amd_state_dict().items())}
        save_file(sd, os.path.join(out_dir, "model.safetensors"), metadata={"format": "pt"})

    @classmethod
    def load(cls, model_dir, hybrid_dir=None, dtype=torch.float32):
        """Load AMD's layout: config.json + hybrid_config.json + every *.safetensors in model_dir.
        lm_head.weight is used if present; only if absent it is tied to the embedding (§7.4)."""
        from safetensors.torch import load_file
        cfg = load_config(model_dir, hybrid_dir)
        sd = {}
        for fn in sorted(os.listdir(model_dir)):
            if fn.endswith(".safetensors"):
                sd.update(load_file(os.path.join(model_dir, fn)))
        cfg.tie_word_embeddings = "lm_head.weight" not in sd
        m = cls(cfg).to(dtype)
        sd = {k: v.to(dtype) for k, v in sd.items()}
        missing, unexpected = m.load_state_dict(sd, strict=False)
        missing = [k for k in missing if not k.endswith("inv_freq") and not (k == "lm_head.weight" and cfg.tie_word_embeddings)]
        if missing or unexpected:
            raise ValueError(f"{model_dir}: missing tensors {missing}, unexpected tensors {unexpected}")
        return m


# ----------------------------------------------------------------------------------------------
# Initialisation from a Llama attention block (§2)
# ----------------------------------------------------------------------------------------------

def dynamic_rank(s: torch.Tensor, ratio: float, divisor: int = 8) -> int:
    """rank = #{k : sum_{i<=k} s_i^2 / sum_i s_i^2 <= ratio}, at least 1, rounded UP to a multiple
    of divisor."""
    e = torch.cumsum(s.double() ** 2, 0)
    r = max(1, int((e / e[-1] <= ratio).sum()))
    return (r + divisor - 1) // divisor * divisor


def mla_init_from_llama(Wq, Wk, Wv, Wo, cfg: ZebraConfig, llama_nkv: int, llama_hd: int,
                        q_energy_ratio=None, kv_energy_ratio=None):
    """§2.1.  Wq [nh*hd, H], Wk/Wv [nkv*hd, H], Wo [H, nh*hd] (Llama layout, fp32 math).
    Returns (params dict keyed like MLA's state_dict, q_rank, kv_rank)."""
    nh, d_n, d_r = cfg.num_attention_heads, cfg.qk_nope_head_dim, cfg.qk_rope_head_dim
    nkv_mla = nh if cfg.use_full_kv_head else cfg.num_key_value_heads
    hd = llama_hd
    Wq, Wk, Wv = Wq.float(), Wk.float(), Wv.float()
    U, S, Vh = torch.linalg.svd(Wq, full_matrices=False)
    r_q = cfg.q_lora_rank if q_energy_ratio is None else dynamic_rank(S, q_energy_ratio, cfg.qkv_rank_divisor)
    q_a = torch.diag(S[:r_q]) @ Vh[:r_q]
    Ub = U[:, :r_q].reshape(nh, hd, r_q)
    q_b = torch.cat((Ub[:, :d_n], Ub[:, hd - d_r:]), dim=1).reshape(nh * (d_n + d_r), r_q)

    group = nkv_mla // llama_nkv
    k3 = Wk.reshape(llama_nkv, hd, -1)
    k_avg = k3.mean(0)
    k_rep = k3.repeat_interleave(group, dim=0).reshape(nkv_mla * hd, -1)
    v_rep = Wv.reshape(llama_nkv, hd, -1).repeat_interleave(group, dim=0).reshape(nkv_mla * hd, -1)
    M = torch.cat((k_rep, v_rep), dim=0)
    U2, S2, Vh2 = torch.linalg.svd(M, full_matrices=False)
    r_kv = cfg.kv_lora_rank if kv_energy_ratio is None else dynamic_rank(S2, kv_energy_ratio, cfg.qkv_rank_divisor)
    kv_a = torch.cat((torch.diag(S2[:r_kv]) @ Vh2[:r_kv], k_avg[hd - d_r:]), dim=0)
    UK = U2[: nkv_mla * hd, :r_kv].reshape(nkv_mla, hd, r_kv)[:, :d_n]
    UV = U2[nkv_mla * hd:, :r_kv].reshape(nkv_mla, hd, r_kv)
    kv_b = torch.cat((UK, UV), dim=1).reshape(nkv_mla * (d_n + hd), r_kv)
    params = {"q_a_proj.weight": q_a, "q_b_proj.weight": q_b, "kv_a_proj_with_mqa.weight": kv_a,
              "kv_b_proj.weight": kv_b, "out_proj.weight": Wo.float().clone()}
    return params, r_q, r_kv


def mla_init_products(params: dict, kv_rank: int):
    """Basis-independent views of an SVD init (singular vectors are only defined up to sign /
    rotation inside repeated singular values, so compare these instead of the factors):
      q   = q_b_proj @ q_a_proj                    [nh*d_q, H]
      kv  = kv_b_proj @ kv_a_proj_with_mqa[:r_kv]  [nkv*(d_n+d_v), H]
      kpe = kv_a_proj_with_mqa[r_kv:]              [d_r, H]  (unique: head-averaged key rows)"""
    kv_a = params["kv_a_proj_with_mqa.weight"]
    return {"q": params["q_b_proj.weight"] @ params["q_a_proj.weight"],
            "kv": params["kv_b_proj.weight"] @ kv_a[:kv_rank], "kpe": kv_a[kv_rank:]}


def truncated(W: torch.Tensor, r: int):
    """Best rank-r approximation U_r S_r V_r^T (fp32)."""
    U, S, Vh = torch.linalg.svd(W.float(), full_matrices=False)
    return U[:, :r] @ torch.diag(S[:r]) @ Vh[:r]


def mamba2_init_from_llama(Wq, Wk, Wv, Wo, cfg: ZebraConfig, gen: torch.Generator,
                           dt_min=1e-3, dt_max=0.1, dt_floor=1e-4, A_range=(1.0, 16.0)):
    """§2.2: in_proj x <- Wv, B <- Wk, C <- Wq; z and dt rows U(-1/sqrt(H), 1/sqrt(H)); conv weight
    and bias U(-0.5, 0.5) (fan_in 4); dt_bias = inverse softplus of log-uniform dt in [dt_min, dt_max]
    (clamped >= dt_floor); A_log = ln U[1,16]; D = 1; norm = 1; out_proj <- Wo."""
    H = Wq.shape[1]
    d_inner, d_xb, nh = cfg.d_inner, cfg.d_xb, cfg.nheads_ssm
    conv_dim = d_inner + 2 * d_xb
    bound = 1.0 / math.sqrt(H)
    z = (torch.rand(d_inner, H, generator=gen) * 2 - 1) * bound
    dtw = (torch.rand(nh, H, generator=gen) * 2 - 1) * bound
    in_proj = torch.cat((z, Wv.float(), Wk.float(), Wq.float(), dtw), dim=0)
    kb = 1.0 / math.sqrt(cfg.d_conv)
    conv_w = (torch.rand(conv_dim, 1, cfg.d_conv, generator=gen) * 2 - 1) * kb
    conv_b = (torch.rand(conv_dim, generator=gen) * 2 - 1) * kb
    dt = torch.exp(torch.rand(nh, generator=gen) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
    dt = dt.clamp(min=dt_floor)
    dt_bias = dt + torch.log(-torch.expm1(-dt))
    A_log = torch.log(torch.rand(nh, generator=gen) * (A_range[1] - A_range[0]) + A_range[0])
    return {"in_proj.weight": in_proj, "conv1d.weight": conv_w, "conv1d.bias": conv_b,
            "dt_bias": dt_bias, "A_log": A_log, "D": torch.ones(nh), "norm.weight": torch.ones(d_inner),
            "out_proj.weight": Wo.float().clone()}
