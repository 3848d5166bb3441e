#!/usr/bin/env python3
"""Reference fixtures for zebra eval and zebra perplexity --kl-base (tests/test_eval.cpp).

1. Zero-shot log-likelihoods: transformers runs SmolLM2-135M-Instruct from the same Q4_1 GGUF in fp32 on
   the shortest items of arc_easy, piqa (multiple choice), winogrande (partial scoring) and
   lambada_openai (language modelling) from ../shared/assets/benchmarks. Each (context, continuation)
   pair is tokenised with lm-eval-harness's rule (written out below, independently of the C++) by the
   GGUF's tokenizer with SmolLM2's Digits pre-tokenizer step restored, and the
   continuation's summed log-probability and greedy-match flag are computed from one full forward of
   context + continuation. Writes tests/fixtures/eval/loglik_<task>.json.

2. KL divergence: zebra itself composes a hybrid from stories260K (2 MLA + 3 Mamba2) and from SmolLM2
   (8 MLA + 22 Mamba2) and saves teacher and hybrid logits on tests/fixtures/eval/kl_text.txt with
   `zebra perplexity --save-logits`; this script reads the files with its own reader and computes
   KL(teacher||hybrid), delta-p, top-1 agreement and both perplexities in torch (float64). For SmolLM2 it
   also checks the saved teacher logits against transformers' own. Writes
   tests/fixtures/eval/kl_stories260K_hybrid.json and kl_smollm_hybrid8.json.

Usage: .venv/bin/python scripts/reference/make_eval_fixtures.py [--zebra build/zebra] [--skip-kl]
Needs: models/SmolLM2-135M-Instruct.Q4_1.gguf, ../shared/assets/benchmarks, a built build/zebra.
Takes about 3 minutes on 2 CPU cores.
"""
import argparse
import json
import os
import struct
import subprocess
import sys
import tempfile

import numpy as np
import torch

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
GGUF = os.path.join(REPO, "models", "SmolLM2-135M-Instruct.Q4_1.gguf")
BENCH = os.path.join(REPO, "..", "shared", "assets", "benchmarks")
OUT = os.path.join(REPO, "tests", "fixtures", "eval")

# task -> (file, schema, how many of the shortest items)
TASKS = {
    "arc_easy": ("arc_easy.jsonl", "multiple_choice", 100),
    "piqa": ("piqa.jsonl", "multiple_choice", 30),
    "winogrande": ("winogrande.jsonl", "partial_scoring", 100),
    "lambada_openai": ("lambada_openai.jsonl", "language_modelling", 100),
}
KL_CTX, KL_CHUNKS = 128, 2
PERCENTILES = [1, 5, 10, 25, 50, 75, 90, 95, 99]


def requests_of(item, schema):
    """The (context, continuation) text pairs of an item, as the task schema defines them."""
    if schema == "multiple_choice":
        return [(item["query"], c) for c in item["choices"]]
    if schema == "partial_scoring":
        return [(c, item["continuation"]) for c in item["context_options"]]
    return [(item["context"], item["continuation"])]


def encode_pair(tok, context, continuation, add_bos, bos_id, eos_id):
    """lm-eval-harness: target delimiter " " (unless either side already has the space), trailing
    whitespace of the context moved to the continuation, continuation ids = encode(whole) after
    len(encode(context)); BOS prepended when the model uses one."""
    if context and not context[-1].isspace() and continuation and not continuation[0].isspace():
        continuation = " " + continuation
    n_spaces = len(context) - len(context.rstrip())
    if n_spaces > 0:
        continuation = context[-n_spaces:] + continuation
        context = context[:-n_spaces]
    enc = lambda s: tok(s, add_special_tokens=False).input_ids
    whole, ctx = enc(context + continuation), enc(context)
    cont = whole[len(ctx):]
    prefix = [bos_id] if add_bos else ([] if ctx else [bos_id if bos_id is not None else eos_id])
    return prefix + ctx, cont


def score(model, ctx, cont):
    ids = torch.tensor([ctx + cont[:-1]], dtype=torch.long)
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=ids).logits[0].double(), dim=-1)  # [T, V]
    rows = logp[len(ctx) - 1:]
    target = torch.tensor(cont)
    ll = float(rows[torch.arange(len(cont)), target].sum())
    greedy = bool((rows.argmax(dim=-1) == target).all())
    return ll, greedy


def first_argmax(v):
    return int(np.argmax(np.array(v)))


def make_loglik_fixtures(tok, model):
    add_bos = False  # SmolLM2's tokenizer adds no BOS (tokenizer.ggml.add_bos_token is false)
    for name, (fname, schema, count) in TASKS.items():
        path = os.path.join(BENCH, fname)
        rows = []
        with open(path) as f:
            for line_no, line in enumerate(f, 1):
                if line.strip():
                    item = json.loads(line)
                    size = sum(len(a) + len(b) for a, b in requests_of(item, schema))
                    rows.append((size, line_no, item))
        rows.sort(key=lambda r: (r[0], r[1]))
        chosen = sorted(rows[:count], key=lambda r: r[1])
        items = []
        for n_done, (_, line_no, item) in enumerate(chosen):
            if n_done % 25 == 0:
                print(f"{name}: {n_done}/{len(chosen)}", flush=True)
            reqs = requests_of(item, schema)
            out = {"line": line_no, "contexts": [a for a, _ in reqs], "continuations": [b for _, b in reqs],
                   "gold": item.get("gold", -1), "context_ids": [], "continuation_ids": [], "loglik": [],
                   "greedy": []}
            for context, continuation in reqs:
                ctx, cont = encode_pair(tok, context, continuation, add_bos, tok.bos_token_id, tok.eos_token_id)
                ll, greedy = score(model, ctx, cont)
                out["context_ids"].append(ctx)
                out["continuation_ids"].append(cont)
                out["loglik"].append(ll)
                out["greedy"].append(greedy)
            if schema == "language_modelling":
                out["correct"] = out["greedy"][0]
            else:
                out["correct"] = first_argmax(out["loglik"]) == out["gold"]
                normed = [ll / len(c.encode("utf-8")) for ll, c in zip(out["loglik"], out["continuations"])]
                out["correct_norm"] = first_argmax(normed) == out["gold"] if schema == "multiple_choice" else False
                srt = sorted(out["loglik"], reverse=True)
                out["margin"] = srt[0] - srt[1] if len(srt) > 1 else None  # close calls could flip on noise
            items.append(out)
        acc = float(np.mean([it["correct"] for it in items]))
        doc = {"format": "zebra-eval-loglik-v1", "generator": "scripts/reference/make_eval_fixtures.py",
               "task": name, "schema": schema, "source": f"../shared/assets/benchmarks/{fname}",
               "selection": f"the {count} items with the shortest text, in file order", "gguf": os.path.basename(GGUF),
               "versions": {"torch": torch.__version__, "transformers": __import__("transformers").__version__},
               "acc": acc, "items": items}
        if schema == "language_modelling":
            doc["perplexity"] = float(np.exp(-np.mean([it["loglik"][0] for it in items])))
        if schema == "multiple_choice":
            doc["acc_norm"] = float(np.mean([it["correct_norm"] for it in items]))
        dst = os.path.join(OUT, f"loglik_{name}.json")
        with open(dst, "w") as f:
            json.dump(doc, f, separators=(",", ":"))
            f.write("\n")
        margins = [it["margin"] for it in items if it.get("margin") is not None]
        print(f"{name}: {len(items)} items, acc {acc:.3f}" + (f", smallest margin {min(margins):.2e}" if margins else "")
              + f" -> {dst} ({os.path.getsize(dst)} bytes)")


def read_logits_file(path):
    """zebra's --save-logits format (src/eval/logits_file.h), read independently."""
    with open(path, "rb") as f:
        data = f.read()
    assert data[:8] == b"ZBLOGITS", path
    version, vocab, n_ctx, scored, bos, _ = struct.unpack_from("<IIIIiI", data, 8)
    n_windows, n_tokens = struct.unpack_from("<QQ", data, 32)
    assert version == 1 and n_tokens == n_windows * n_ctx and scored == n_ctx - n_ctx // 2 - 1
    tokens = np.frombuffer(data, dtype="<i4", count=n_tokens, offset=48)
    logits = np.frombuffer(data, dtype="<f4", offset=48 + 4 * n_tokens).reshape(n_windows, scored, vocab)
    return {"vocab": vocab, "n_ctx": n_ctx, "bos": bos, "tokens": tokens, "logits": logits}


def summary(x):
    x = x.double()
    q = torch.quantile(x, torch.tensor(PERCENTILES, dtype=torch.float64) / 100.0)  # linear, as numpy
    out = {"mean": float(x.mean()), "stderr": float(x.std(unbiased=True) / np.sqrt(x.numel())),
           "min": float(x.min()), "max": float(x.max())}
    out.update({f"p{p}": float(v) for p, v in zip(PERCENTILES, q)})
    return out


# name -> (teacher, compose flags); the fixture is tests/fixtures/eval/kl_<name>.json
KL_PAIRS = {
    "stories260K_hybrid": (os.path.join(REPO, "..", "shared", "assets", "models", "stories260K", "stories260K.bin"),
                           ["--mla-count", "2"]),
    "smollm_hybrid8": (GGUF, ["--mla-count", "8"]),
}


def make_kl_fixture(zebra, name, hf_model=None):
    teacher, flags = KL_PAIRS[name]
    text = os.path.join(OUT, "kl_text.txt")
    with tempfile.TemporaryDirectory() as tmp:
        hybrid = os.path.join(tmp, "hybrid")
        compose = [zebra, "compose", "--teacher", teacher, *flags, "-o", hybrid]
        subprocess.run(compose, check=True, stderr=subprocess.DEVNULL)
        files = {}
        for who, m in (("teacher", teacher), ("hybrid", hybrid)):
            files[who] = os.path.join(tmp, who + ".logits")
            subprocess.run([zebra, "perplexity", "-m", m, "-f", text, "-c", str(KL_CTX), "--chunks", str(KL_CHUNKS),
                            "--save-logits", files[who]], check=True, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
        t, s = read_logits_file(files["teacher"]), read_logits_file(files["hybrid"])
    assert (t["tokens"] == s["tokens"]).all() and t["vocab"] == s["vocab"] and t["bos"] == s["bos"]
    tokens = torch.tensor(t["tokens"].astype(np.int64)).view(KL_CHUNKS, KL_CTX)
    first = KL_CTX // 2
    targets = tokens[:, first + 1:].reshape(-1)                          # [N] token j + 1 for scored j
    lp = torch.log_softmax(torch.tensor(t["logits"]).double(), -1).reshape(len(targets), -1)  # teacher [N, V]
    lq = torch.log_softmax(torch.tensor(s["logits"]).double(), -1).reshape(len(targets), -1)  # hybrid  [N, V]
    kl = (lp.exp() * (lp - lq)).sum(-1)
    idx = torch.arange(len(targets))
    dp = lq[idx, targets].exp() - lp[idx, targets].exp()
    same = (lp.argmax(-1) == lq.argmax(-1)).double().mean()
    base_nll, nll = -lp[idx, targets].mean(), -lq[idx, targets].mean()
    doc = {"format": "zebra-kl-v1", "generator": "scripts/reference/make_eval_fixtures.py",
           "teacher": os.path.relpath(teacher, REPO), "compose": flags,
           "commands": [" ".join(["zebra", "compose", "--teacher", "TEACHER", *flags, "-o", "HYBRID"]),
                        f"zebra perplexity -m MODEL -f tests/fixtures/eval/kl_text.txt -c {KL_CTX} "
                        f"--chunks {KL_CHUNKS} --save-logits FILE (for the teacher and the hybrid)"],
           "ctx": KL_CTX, "chunks": KL_CHUNKS, "tokens": len(targets),
           "base_ppl": float(base_nll.exp()), "ppl": float(nll.exp()), "delta_ppl": float(nll.exp() - base_nll.exp()),
           "kl": summary(kl), "delta_p": summary(dp), "same_top_p": float(same)}
    if hf_model is not None:  # SmolLM2: the saved teacher logits against transformers on the same windows
        with torch.no_grad():
            ref = hf_model(input_ids=tokens).logits[:, first:KL_CTX - 1].double().reshape(len(targets), -1)
        doc["teacher_logits_max_abs_diff_vs_transformers"] = float(
            (ref - torch.tensor(t["logits"]).double().reshape(len(targets), -1)).abs().max())
    dst = os.path.join(OUT, f"kl_{name}.json")
    with open(dst, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    print(f"KL {name}: mean {doc['kl']['mean']:.4f} nats over {len(targets)} tokens, ppl {doc['base_ppl']:.2f} -> "
          f"{doc['ppl']:.1f}, same top {doc['same_top_p']:.3f}; teacher logits vs transformers: "
          f"{doc.get('teacher_logits_max_abs_diff_vs_transformers', 'n/a')} -> {dst}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--zebra", default=os.path.join(REPO, "build", "zebra"))
    ap.add_argument("--skip-kl", action="store_true")
    ap.add_argument("--skip-loglik", action="store_true")
    ap.add_argument("--only-stories-kl", action="store_true", help="just the stories260K KL fixture (seconds)")
    args = ap.parse_args()
    if args.only_stories_kl:
        return make_kl_fixture(args.zebra, "stories260K_hybrid")
    from transformers import AutoModelForCausalLM, AutoTokenizer
    torch.set_num_threads(1)  # the fixture is small; one thread avoids OpenMP spinning on a busy machine
    d, f = os.path.dirname(GGUF), os.path.basename(GGUF)
    tok = AutoTokenizer.from_pretrained(d, gguf_file=f)
    # transformers' GGUF converter drops SmolLM2's Digits pre-tokenizer step (plain ByteLevel); put it back
    # so the ids are those of SmolLM2's own tokenizer.json (and llama.cpp's "smollm"), as
    # make_tokenizer_fixtures.py does. Without it " \n\n\n\n\n33" splits differently.
    from tokenizers import pre_tokenizers
    tok.backend_tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
    model = AutoModelForCausalLM.from_pretrained(d, gguf_file=f, dtype=torch.float32).eval()
    os.makedirs(OUT, exist_ok=True)
    if not args.skip_loglik:
        make_loglik_fixtures(tok, model)
    if not args.skip_kl:
        make_kl_fixture(args.zebra, "stories260K_hybrid")
        make_kl_fixture(args.zebra, "smollm_hybrid8", model)


if __name__ == "__main__":
    sys.exit(main())
