#!/usr/bin/env python3
"""Golden values of the training losses (src/train/losses.h) for tests/test_losses.cpp.

Oracle: PyTorch in float64 with autograd, written the way the reference trainers compute them:
  KD (spec §4.3):  kl_weight * T^2 * F.kl_div(F.log_softmax(s/T), F.softmax(t/T), reduction="batchmean")
                   on [B, S, V] logits (sums positions and vocab, divides by B), or on [B*S, V] for the
                   per-token mean; + ce_weight * F.cross_entropy(s, targets, ignore_index=-100).
  ILD (spec §4.2): (a - b).norm(dim=-1).mean()  (per-token Euclidean distance, not squared).
  DPO (spec §4.4): TRL's sigmoid loss -F.logsigmoid(beta * ((pc - rc) - (pr - rr))).
  sequence log-prob: (log_softmax(logits).gather(targets) * mask).sum().
Inputs and options are fp32-representable (KdOptions holds floats: a weight of 0.3 would differ by 1e-8),
so the C++ test sees exactly the same numbers; gradients are autograd's.
Writes tests/fixtures/train/losses.json (~40 KB).
Run: /work/main/.venv/bin/python scripts/reference/make_loss_fixtures.py
"""
import json
import os

import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "..", "tests", "fixtures", "train", "losses.json")
g = torch.Generator().manual_seed(20250704)


def randn(*shape, scale=1.0):
    # fp32 values, then float64 for the computation: the C++ side reads the same numbers as floats.
    return (torch.randn(*shape, generator=g) * scale).float().double()


def flat(t):
    return [float(v) for v in t.detach().reshape(-1).tolist()]


def kd_case(name, B, S, V, T, kl_weight, ce_weight, reduction, scale=1.0, ignore=(), teacher_mask=()):
    s = randn(B, S, V, scale=scale).requires_grad_(True)
    t = randn(B, S, V, scale=scale)
    for (b, p, v) in teacher_mask:  # a teacher probability that underflows to exactly 0
        t[b, p, v] = -1e4
    targets = torch.randint(0, V, (B, S), generator=g)
    for (b, p) in ignore:
        targets[b, p] = -100
    ls = F.log_softmax(s / T, dim=-1)
    pt = F.softmax(t / T, dim=-1)
    if reduction == "batchmean":
        kl = F.kl_div(ls, pt, reduction="batchmean")  # sum over (S, V), / B
    else:
        kl = F.kl_div(ls.reshape(-1, V), pt.reshape(-1, V), reduction="batchmean")  # / (B*S)
    loss = kl_weight * T * T * kl
    if ce_weight:
        loss = loss + ce_weight * F.cross_entropy(s.reshape(-1, V), targets.reshape(-1), ignore_index=-100)
    loss.backward()
    return {
        "name": name, "batch_rows": B, "seq": S, "vocab": V, "temperature": T, "kl_weight": kl_weight,
        "ce_weight": ce_weight, "reduction": reduction, "student": flat(s), "teacher": flat(t),
        "targets": [int(v) for v in targets.reshape(-1).tolist()], "loss": loss.item(), "dlogits": flat(s.grad),
    }


def l2_case(name, n, dim, zero_rows=()):
    a = randn(n, dim).requires_grad_(True)
    b = randn(n, dim)
    with torch.no_grad():
        for r in zero_rows:
            b[r] = a[r]
    loss = (a - b).norm(dim=-1).mean()
    loss.backward()
    return {"name": name, "n_tokens": n, "dim": dim, "a": flat(a), "b": flat(b), "loss": loss.item(),
            "da": flat(a.grad)}


def dpo_case(pc, pr, rc, rr, beta):
    pc_t = torch.tensor(pc, dtype=torch.float64, requires_grad=True)
    pr_t = torch.tensor(pr, dtype=torch.float64, requires_grad=True)
    logits = (pc_t - rc) - (pr_t - rr)
    loss = -F.logsigmoid(beta * logits)
    loss.backward()
    return {"pc": pc, "pr": pr, "rc": rc, "rr": rr, "beta": beta, "loss": loss.item(),
            "d_chosen": pc_t.grad.item(), "d_rejected": pr_t.grad.item(),
            "chosen_reward": beta * (pc - rc), "rejected_reward": beta * (pr - rr)}


def seq_case(name, n, V, scale=1.0):
    logits = randn(n, V, scale=scale).requires_grad_(True)
    targets = torch.randint(0, V, (n,), generator=g)
    mask = (torch.rand(n, generator=g) > 0.3).to(torch.float64)
    mask[0] = 0  # a prompt position
    lp = (F.log_softmax(logits, dim=-1).gather(1, targets[:, None])[:, 0] * mask).sum()
    lp.backward()
    return {"name": name, "n": n, "vocab": V, "logits": flat(logits), "targets": [int(v) for v in targets.tolist()],
            "mask": [int(v) for v in mask.tolist()], "logp": lp.item(), "dlogits": flat(logits.grad)}


def main():
    out = {
        "kd": [
            kd_case("batchmean_T1", 2, 3, 7, 1.0, 1.0, 0.0, "batchmean"),
            kd_case("tokenmean_T2_ce", 1, 4, 11, 2.0, 0.5, 0.25, "tokenmean", ignore=[(0, 2)]),
            kd_case("batchmean_T0.5_ce_sharp", 3, 2, 5, 0.5, 1.0, 1.0, "batchmean", scale=20.0,
                    teacher_mask=[(0, 0, 1), (2, 1, 4)]),
            kd_case("tokenmean_T1_vocab64", 2, 5, 64, 1.0, 1.0, 0.0, "tokenmean", scale=3.0),
        ],
        "l2": [
            l2_case("random", 4, 6),
            l2_case("zero_row", 5, 3, zero_rows=[1]),
            l2_case("single", 1, 1),
        ],
        "dpo": [
            dpo_case(-12.5, -15.25, -13.0, -14.0, 0.1),
            dpo_case(-40.0, -20.0, -35.0, -30.0, 0.01),
            dpo_case(-3.0, -3.0, -3.0, -3.0, 0.5),
            dpo_case(-900.0, -10.0, -10.0, -900.0, 1.0),  # margin -1780: log-sigmoid far in the tail
            dpo_case(-10.0, -900.0, -900.0, -10.0, 1.0),  # margin +1780
        ],
        "seq_logprob": [
            seq_case("small", 6, 9),
            seq_case("sharp", 8, 33, scale=15.0),
        ],
    }
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        json.dump(out, f, indent=None, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
