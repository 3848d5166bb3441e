#!/usr/bin/env python3
"""Makes tests/fixtures/tiny_llama: small random Llama checkpoints saved by transformers, and the logits
transformers computes for them (the oracle for zebra's Llama forward and RoPE scalings).

  model/    hidden 64, 3 layers, 4 heads / 2 KV heads (GQA), head_dim 16, MLP 96, vocab 256, llama3 RoPE
            scaling, untied lm_head, saved in BF16 as >= 2 safetensors shards with an index.
  linear/   hidden 32, 2 layers, 4/2 heads, head_dim 8, MLP 48, vocab 64, F32 single file; RoPE linear x2.
  dynamic/  same shape; dynamic NTK x2 with max_position_embeddings 32 (the 48-token sequence exceeds it).
  yarn/     same shape; YaRN x4, original_max_position_embeddings 32, max_position_embeddings 128.

Each directory holds config.json, the safetensors weights and logits.safetensors with, for every test
sequence k: "seq{k}.input_ids" (I64 [T]) and "seq{k}.logits" (F32 [T, vocab]): the full-sequence forward
(no cache, positions 0..T-1) in fp32 on the stored weights (for model/, the bf16-rounded values).

Run: .venv/bin/python scripts/reference/make_tiny_llama.py  (deterministic: fixed seeds, CPU, eager attention)
"""
import json
import os
import shutil

import torch
import transformers
from safetensors.torch import save_file
from transformers import LlamaConfig, LlamaForCausalLM

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "fixtures", "tiny_llama")


def randomize(model, seed):
    """Weights large enough that logits vary a lot (std-0.02 init gives nearly flat logits), and norm
    weights away from 1 so a forward that skipped them would be caught."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            if name.endswith("norm.weight"):
                p.copy_(0.5 + torch.rand(p.shape, generator=g))
            else:
                fan_in = p.shape[-1]
                p.copy_(torch.randn(p.shape, generator=g) * (1.5 / fan_in ** 0.5))


def make(subdir, cfg, seed, seq_lens, dtype, max_shard_size):
    out = os.path.join(ROOT, subdir)
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(cfg)
    randomize(model, seed)
    model = model.to(dtype)
    model.save_pretrained(out, max_shard_size=max_shard_size)

    # Reload what was written and run it in fp32: the oracle sees exactly the stored (rounded) weights.
    ref = LlamaForCausalLM.from_pretrained(out, dtype=torch.float32, attn_implementation="eager").eval()
    g = torch.Generator().manual_seed(seed + 1)
    tensors = {}
    for k, n in enumerate(seq_lens):
        ids = torch.randint(0, cfg.vocab_size, (n,), generator=g, dtype=torch.int64)
        with torch.no_grad():
            logits = ref(input_ids=ids[None, :], use_cache=False).logits[0].float()
        tensors[f"seq{k}.input_ids"] = ids.contiguous()
        tensors[f"seq{k}.logits"] = logits.contiguous()
        print(f"{subdir}: seq{k} len {n}, logits std {logits.std().item():.3f}")
    save_file(tensors, os.path.join(out, "logits.safetensors"),
              metadata={"transformers": transformers.__version__, "torch": torch.__version__,
                        "sequences": json.dumps(seq_lens)})
    gen = os.path.join(out, "generation_config.json")
    if os.path.exists(gen):
        os.remove(gen)  # not needed by the fixture


def main():
    common = dict(rms_norm_eps=1e-5, rope_theta=10000.0, bos_token_id=1, eos_token_id=2,
                  tie_word_embeddings=False, attention_bias=False, mlp_bias=False, hidden_act="silu")
    main_cfg = LlamaConfig(
        vocab_size=256, hidden_size=64, intermediate_size=96, num_hidden_layers=3, num_attention_heads=4,
        num_key_value_heads=2, head_dim=16, max_position_embeddings=512,
        rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                      "original_max_position_embeddings": 64},
        **common)
    make("model", main_cfg, seed=1234, seq_lens=[1, 7, 100], dtype=torch.bfloat16, max_shard_size="100KB")

    small = dict(vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, head_dim=8, **common)
    make("linear", LlamaConfig(max_position_embeddings=64, rope_scaling={"rope_type": "linear", "factor": 2.0},
                               **small), seed=11, seq_lens=[5, 48], dtype=torch.float32, max_shard_size="50GB")
    make("dynamic", LlamaConfig(max_position_embeddings=32, rope_scaling={"rope_type": "dynamic", "factor": 2.0},
                                **small), seed=12, seq_lens=[5, 48], dtype=torch.float32, max_shard_size="50GB")
    make("yarn", LlamaConfig(max_position_embeddings=128,
                             rope_scaling={"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32},
                             **small), seed=13, seq_lens=[5, 48], dtype=torch.float32, max_shard_size="50GB")


if __name__ == "__main__":
    main()
