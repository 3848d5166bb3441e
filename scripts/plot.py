#!/usr/bin/env python3
"""Charts from zebra's results: `zebra bench` JSON and training logs, as PNG files.

  scripts/plot.py bench FILE.json... -o DIR        decode t/s vs batch, t/s vs context depth, cache vs context
  scripts/plot.py train LOG.csv[:label]... -o FILE.png   loss curves (eval loss dashed), lr, grad norm, tokens/s

Bench files are what `zebra bench --json` / `-o FILE.json` writes (one model or a --compare of two; the
layout is documented in src/eval/bench_report.h). Training logs are CSV with a header (the trainer writes
step,loss,lr,grad_norm,tokens_per_s,mfu,eval_loss; eval_loss may be empty) or JSONL with the same keys.
Run with the project's virtualenv (.venv/bin/python, matplotlib).
"""
import argparse
import csv
import json
import math
import os
import sys

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402


def die(message):
    print(f"plot.py: error: {message}", file=sys.stderr)
    sys.exit(1)


# ---- bench ------------------------------------------------------------------------------------------


def load_bench(paths):
    """Every model in the files as (label, model dict); a model measured in several files (a decode and a
    prefill sweep, say) becomes one entry with all its rows. Labels are the models' file or folder names."""
    by_path = {}
    for path in paths:
        try:
            with open(path) as f:
                data = json.load(f)
        except (OSError, ValueError) as e:
            die(f"{path}: {e}")
        if not isinstance(data, dict) or not isinstance(data.get("models"), list):
            die(f"{path}: not a zebra bench JSON (no 'models' list)")
        for model in data["models"]:
            if model["path"] in by_path:
                by_path[model["path"]]["results"] += model["results"]
            else:
                by_path[model["path"]] = dict(model, results=list(model["results"]))
    runs, seen = [], {}
    for path, model in by_path.items():
        label = os.path.basename(os.path.normpath(path))
        seen[label] = seen.get(label, 0) + 1
        runs.append((label if seen[label] == 1 else f"{label} ({seen[label]})", model))
    return runs


COLORS = plt.rcParams["axes.prop_cycle"].by_key()["color"]
STYLES = ["-", "--", ":", "-."]
MARKERS = ["o", "s", "^", "D", "v"]


def style(model_index, series_index):
    """One colour per model, a line style and marker per series of that model."""
    return dict(color=COLORS[model_index % len(COLORS)], linestyle=STYLES[series_index % len(STYLES)],
                marker=MARKERS[series_index % len(MARKERS)])


def decode_vs_batch(runs, out):
    fig, ax = plt.subplots(figsize=(7, 4.5))
    drawn = False
    for mi, (label, model) in enumerate(runs):
        series = {}
        for r in model["results"]:
            if r["n_gen"] > 0:
                series.setdefault(r["test"], []).append((r["batch"], r["avg_ts"], r["stddev_ts"]))
        for si, (test, points) in enumerate(sorted(series.items())):
            points.sort()
            xs, ys, es = zip(*points)
            ax.errorbar(xs, ys, yerr=es, capsize=3, label=f"{label}: {test}", **style(mi, si))
            drawn = True
    if not drawn:
        plt.close(fig)
        return None
    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())  # 1, 4, 16 rather than 2^k
    ax.set_xlabel("batch (sequences decoded together)")
    ax.set_ylabel("decode tokens/s (all sequences)")
    ax.set_title("Decode throughput vs batch size")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    return save(fig, out, "decode_vs_batch.png")


def throughput_vs_depth(runs, out):
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    drawn = False
    for ax, kind, title in ((axes[0], "pp", "Prefill"), (axes[1], "tg", "Decode")):
        for mi, (label, model) in enumerate(runs):
            series = {}
            for r in model["results"]:
                n = r["n_prompt"] if kind == "pp" else r["n_gen"]
                if n > 0 and (kind == "pp") == (r["n_gen"] == 0):
                    series.setdefault((r["batch"], n), []).append((r["depth"], r["avg_ts"], r["stddev_ts"]))
            for si, ((batch, n), points) in enumerate(sorted(series.items())):
                points.sort()
                xs, ys, es = zip(*points)
                ax.errorbar(xs, ys, yerr=es, capsize=3, label=f"{label}: {kind}{n}, batch {batch}", **style(mi, si))
                drawn = True
        ax.set_xlabel("context depth (tokens already in the cache)")
        ax.set_ylabel("tokens/s")
        ax.set_title(f"{title} throughput vs context depth")
        ax.grid(True, alpha=0.3)
        if ax.has_data():
            ax.legend(fontsize=7)
    if not drawn:
        plt.close(fig)
        return None
    return save(fig, out, "throughput_vs_depth.png")


def cache_vs_context(runs, out):
    """Per-sequence cache: the closed form (KV bytes per token * T + state) as a line, measured rows as dots."""
    longest = 0
    for _, model in runs:
        for r in model["results"]:
            longest = max(longest, r["depth"] + r["n_prompt"] + r["n_gen"])
    if not runs:
        return None
    top = max(longest, 4096)
    xs = sorted({1, *[2**k for k in range(0, 40) if 2**k <= top], top})
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label, model in runs:
        kv, state = model["kv_bytes_per_token"], model["state_bytes_per_sequence"]
        line = ax.plot(xs, [(kv * t + state) / 2**20 for t in xs], label=f"{label} ({kv} B/token + {state} B)")[0]
        pts = [(r["depth"] + r["n_prompt"] + r["n_gen"], r["cache_mib"] / r["batch"]) for r in model["results"]]
        if pts:
            px, py = zip(*pts)
            ax.scatter(px, py, color=line.get_color(), zorder=3)
    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax.set_yscale("log")
    ax.set_xlabel("context (tokens per sequence)")
    ax.set_ylabel("cache MiB per sequence (fp32)")
    ax.set_title("Cache memory vs context (lines: closed form, dots: bench rows)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    return save(fig, out, "cache_vs_context.png")


def save(fig, out_dir, name):
    path = os.path.join(out_dir, name)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def cmd_bench(args):
    runs = load_bench(args.files)
    os.makedirs(args.output, exist_ok=True)
    for chart in (decode_vs_batch, throughput_vs_depth, cache_vs_context):
        path = chart(runs, args.output)
        if path:
            print(path)
        else:
            print(f"plot.py: {chart.__name__}: no matching rows, skipped", file=sys.stderr)


# ---- training logs ----------------------------------------------------------------------------------

TRAIN_COLUMNS = ("loss", "eval_loss", "lr", "grad_norm", "tokens_per_s")


def number(value):
    """A float, or None for an empty / missing / non-finite cell (eval_loss is empty between evals)."""
    if value is None or value == "":
        return None
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def load_train_log(path):
    try:
        with open(path, newline="") as f:
            text = f.read()
    except OSError as e:
        die(f"{path}: {e}")
    if path.endswith(".jsonl") or text.lstrip().startswith("{"):
        rows = []
        for i, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except ValueError as e:
                    die(f"{path}:{i}: {e}")
    else:
        rows = list(csv.DictReader(text.splitlines()))
    if not rows or "step" not in rows[0] or "loss" not in rows[0]:
        die(f"{path}: expected a header with at least 'step' and 'loss' columns")
    log = {c: [] for c in TRAIN_COLUMNS}
    for row in rows:
        step = number(row.get("step"))
        if step is None:
            continue
        for c in TRAIN_COLUMNS:
            v = number(row.get(c))
            if v is not None:
                log[c].append((step, v))
    return log


def parse_log_arg(arg):
    """LOG.csv[:label]: the label defaults to the file's name; a path that exists as given has no label."""
    if os.path.exists(arg) or ":" not in arg:
        return arg, os.path.splitext(os.path.basename(arg))[0]
    path, label = arg.rsplit(":", 1)
    return path, label


def cmd_train(args):
    logs = []
    for arg in args.logs:
        path, label = parse_log_arg(arg)
        logs.append((label, load_train_log(path)))
    panels = [("loss", "loss (dashed: eval)", False), ("lr", "learning rate", False),
              ("grad_norm", "gradient norm", True), ("tokens_per_s", "tokens/s", False)]
    panels = [p for p in panels if any(log[p[0]] for _, log in logs)]
    fig, axes = plt.subplots(len(panels), 1, figsize=(8, 3 * len(panels) + 0.5), sharex=True, squeeze=False)
    for ax, (column, title, log_y) in zip(axes[:, 0], panels):
        for i, (label, log) in enumerate(logs):
            color = COLORS[i % len(COLORS)]
            if log[column]:
                xs, ys = zip(*log[column])
                ax.plot(xs, ys, color=color, label=label)
            if column == "loss" and log["eval_loss"]:
                xs, ys = zip(*log["eval_loss"])
                ax.plot(xs, ys, "--o", color=color, markersize=3, label=f"{label} (eval)")
        if log_y:
            ax.set_yscale("log")
        ax.set_ylabel(title)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    axes[-1, 0].set_xlabel("step")
    fig.suptitle("Training")
    out_dir = os.path.dirname(os.path.abspath(args.output))
    os.makedirs(out_dir, exist_ok=True)
    fig.tight_layout()
    fig.savefig(args.output, dpi=110)
    plt.close(fig)
    print(args.output)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("bench", help="charts from zebra bench JSON files")
    b.add_argument("files", nargs="+", help="zebra bench --json output (one model or --compare)")
    b.add_argument("-o", "--output", required=True, help="directory for the PNG files")
    t = sub.add_parser("train", help="loss curves from training logs")
    t.add_argument("logs", nargs="+", help="LOG.csv or LOG.jsonl, optionally :label")
    t.add_argument("-o", "--output", required=True, help="PNG file to write")
    args = parser.parse_args()
    cmd_bench(args) if args.command == "bench" else cmd_train(args)


if __name__ == "__main__":
    main()
