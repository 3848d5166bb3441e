#!/usr/bin/env python3
"""Golden values of the optimiser (src/train/optimizer.h) for tests/test_optimizer.cpp.

Oracles:
  AdamW      torch.optim.AdamW (foreach=False: the single-tensor CPU path), fp32 params, two param groups
             (weight decay on the 2-D/3-D weights, 0 on the norm weight and A_log), a different lr each step
             as a scheduler would set it; params after every step and the final exp_avg / exp_avg_sq.
  clipping   torch.nn.utils.clip_grad_norm_ (L2), one case that clips and one that does not.
  schedule   transformers.get_cosine_schedule_with_warmup and get_cosine_with_min_lr_schedule_with_warmup
             (LambdaLR stepped like the Trainer does), lr at every step 0..total.
  warmup     transformers.TrainingArguments(warmup_steps=<ratio>).get_warmup_steps(total) (a ratio < 1 is
             ceil(total * ratio), what warmup_ratio did before transformers 5).
Writes tests/fixtures/train/optimizer.json.
Run: /work/main/.venv/bin/python scripts/reference/make_optimizer_fixtures.py
"""
import json
import os
import tempfile

import torch
import transformers

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "..", "tests", "fixtures", "train", "optimizer.json")
g = torch.Generator().manual_seed(20250705)

# name, shape, decay (what zebra's default_decay + rank rule gives for the name)
PARAMS = [
    ("model.layers.0.mlp.gate_proj.weight", (4, 5), True),
    ("model.layers.0.input_layernorm.weight", (5,), False),
    ("model.layers.1.mamba.A_log", (3,), False),
    ("model.layers.1.mamba.conv1d.weight", (6, 1, 4), True),
]


def flat(t):
    return [float(v) for v in t.detach().reshape(-1).tolist()]


def adamw_case(name, lrs, betas, eps, wd, grad_scale):
    params = [torch.nn.Parameter(torch.randn(*shape, generator=g)) for (_, shape, _) in PARAMS]
    init = [flat(p) for p in params]
    groups = [
        {"params": [p for p, (_, _, d) in zip(params, PARAMS) if d], "weight_decay": wd},
        {"params": [p for p, (_, _, d) in zip(params, PARAMS) if not d], "weight_decay": 0.0},
    ]
    opt = torch.optim.AdamW(groups, lr=lrs[0], betas=betas, eps=eps, foreach=False)
    steps = []
    for lr in lrs:
        grads = [torch.randn(p.shape, generator=g) * grad_scale for p in params]
        for p, gr in zip(params, grads):
            p.grad = gr.clone()
        for group in opt.param_groups:
            group["lr"] = lr
        opt.step()
        steps.append({"lr": lr, "grads": [flat(x) for x in grads], "params": [flat(p) for p in params]})
    return {
        "name": name, "beta1": betas[0], "beta2": betas[1], "eps": eps, "weight_decay": wd,
        "init": init, "steps": steps,
        "exp_avg": [flat(opt.state[p]["exp_avg"]) for p in params],
        "exp_avg_sq": [flat(opt.state[p]["exp_avg_sq"]) for p in params],
    }


def clip_case(name, max_norm, grad_scale):
    params = [torch.nn.Parameter(torch.zeros(*shape)) for (_, shape, _) in PARAMS]
    grads = [torch.randn(p.shape, generator=g) * grad_scale for p in params]
    for p, gr in zip(params, grads):
        p.grad = gr.clone()
    total = torch.nn.utils.clip_grad_norm_(params, max_norm, foreach=False)
    return {"name": name, "max_norm": max_norm, "grads": [flat(x) for x in grads], "total_norm": total.item(),
            "clipped": [flat(p.grad) for p in params]}


def schedule_case(total, warmup, peak, min_lr=0.0):
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=peak)
    if min_lr:
        sched = transformers.get_cosine_with_min_lr_schedule_with_warmup(opt, warmup, total, min_lr=min_lr)
    else:
        sched = transformers.get_cosine_schedule_with_warmup(opt, warmup, total)
    lrs = []
    for _ in range(total + 1):  # the lr used by optimiser step k, k = 0..total
        lrs.append(sched.get_last_lr()[0])
        opt.step()
        sched.step()
    return {"total": total, "warmup": warmup, "peak": peak, "min_lr": min_lr, "lrs": lrs}


def warmup_case(ratio, total):
    with tempfile.TemporaryDirectory() as d:
        args = transformers.TrainingArguments(output_dir=d, warmup_steps=ratio, report_to=[])
        return {"ratio": ratio, "total": total, "warmup": args.get_warmup_steps(total)}


def main():
    out = {
        "params": [{"name": n, "shape": list(s), "decay": d} for (n, s, d) in PARAMS],
        "adamw": [
            adamw_case("hf_default_wd0.1", [1e-3, 2e-3, 1.5e-3, 5e-4, 1e-4], (0.9, 0.999), 1e-8, 0.1, 1.0),
            adamw_case("betas_0.9_0.8_small_grads", [2e-4] * 4, (0.9, 0.8), 1e-6, 0.01, 1e-3),
        ],
        "clip": [clip_case("clips", 1.0, 1.0), clip_case("no_clip", 100.0, 1.0)],
        "cosine": [
            schedule_case(100, 1, 2e-4),        # ILD: warmup_ratio 0.01
            schedule_case(50, 5, 5e-7),         # DPO: warmup_ratio 0.1
            schedule_case(37, 0, 8e-5),         # no warmup
            schedule_case(40, 7, 1e-3, 1e-4),   # with a floor
        ],
        "warmup": [warmup_case(r, t) for (r, t) in
                   [(0.01, 100), (0.01, 13842), (0.1, 1234), (0.1, 30), (0.01, 72021), (0.03, 1000), (0.0, 500)]],
    }
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        json.dump(out, f, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
