#!/usr/bin/env python3
"""Gradients of a whole tiny hybrid under the end-to-end KD loss, by PyTorch autograd (float64), for
tests/test_train.cpp: the C++ trainer's explicit backward (embedding, every MLA/Mamba2/MLP/norm weight,
final norm, tied or untied head) must reproduce them.

Models: tests/fixtures/tiny_hybrid/model (untied head, q LoRA, GQA-MLA, 2 MLA + 2 Mamba2 layers) and
tests/fixtures/tiny_hybrid/variant (tied head, full q_proj, lora norms, full kv heads), loaded with the
reference implementation scripts/reference/zebra_ref.py (written from the spec, not from our C++).

Loss: KL(softmax(teacher) || softmax(student)) summed over the vocabulary, averaged over all B*T tokens
(zebra's default "token" reduction), with seeded random teacher logits.

Usage: .venv/bin/python scripts/reference/make_train_fixtures.py
Writes tests/fixtures/train_model/<name>.safetensors: "tokens" [B,T] (as float), "teacher_logits" [B*T,V],
"loss" [1], and "grad.<AMD tensor name>" for every parameter (float32).
"""
import os
import sys

import torch
from safetensors.torch import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import zebra_ref as Z  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(HERE))
OUT = os.path.join(ROOT, "tests", "fixtures", "train_model")


def make(name, model_dir, B, T, seed):
    torch.manual_seed(seed)
    m = Z.HybridModel.load(model_dir, dtype=torch.float64)
    V = m.cfg.vocab_size
    ids = torch.randint(0, V, (B, T))
    teacher = torch.randn(B * T, V, dtype=torch.float64) * 2.0
    logits = m(ids).reshape(B * T, V)
    log_q = torch.log_softmax(logits, -1)
    log_p = torch.log_softmax(teacher, -1)
    loss = (log_p.exp() * (log_p - log_q)).sum() / (B * T)
    loss.backward()
    out = {"tokens": ids.to(torch.float32), "teacher_logits": teacher.to(torch.float32),
           "loss": loss.detach().reshape(1).to(torch.float32)}
    for k, p in m.named_parameters():
        if p.grad is None:
            continue
        out["grad." + k] = p.grad.detach().to(torch.float32).contiguous()
    os.makedirs(OUT, exist_ok=True)
    save_file(out, os.path.join(OUT, name + ".safetensors"))
    print(name, "loss", float(loss), "tensors", len(out))


if __name__ == "__main__":
    fx = os.path.join(ROOT, "tests", "fixtures", "tiny_hybrid")
    make("tiny_hybrid_kd", os.path.join(fx, "model"), 2, 13, 1)
    make("variant_kd", os.path.join(fx, "variant", "model"), 3, 7, 2)
