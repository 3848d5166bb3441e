#!/usr/bin/env bash
# Measures SmolLM2-135M-Instruct against its composed 8-MLA hybrid and writes docs/RESULTS.md:
# zero-shot accuracy (zebra eval, ten tasks), wikitext-2 perplexity (zebra perplexity -c 512), speed and
# cache memory (zebra bench --compare), with PNG charts from scripts/plot.py.
#
#   scripts/make_results.sh [--limit N] [--threads T] [-o docs/RESULTS.md] [--work DIR] [--from DIR]
#
#   --limit N    quick check: N items per eval task, N perplexity windows, a small bench sweep; the
#                report says so at the top. Without it: full tasks, the whole test set, the full sweep.
#   --threads T  CPU threads for every zebra command (default: all cores)
#   -o FILE      the report (default docs/RESULTS.md); charts go to <FILE's folder>/results/
#   --work DIR   where the hybrid and the raw JSON results go (default build/results)
#   --from DIR   only render the report from JSON already in DIR (eval_{teacher,hybrid}.json,
#                ppl_{teacher,hybrid}.json, bench_{decode,prefill}.json, meta.json); measures nothing
# Environment: ZEBRA (default build/zebra), TEACHER (default models/SmolLM2-135M-Instruct.Q4_1.gguf),
# PYTHON (default .venv/bin/python when it exists, for the charts; the report itself needs only python3).
set -euo pipefail
cd "$(dirname "$0")/.."

arguments="$*"  # recorded in the report
limit=0
threads=$(nproc)
out=docs/RESULTS.md
work=build/results
from=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --limit) limit="$2"; shift 2 ;;
    --threads) threads="$2"; shift 2 ;;
    -o|--output) out="$2"; shift 2 ;;
    --work) work="$2"; shift 2 ;;
    --from) from="$2"; shift 2 ;;
    -h|--help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "make_results.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
[[ "$limit" =~ ^[0-9]+$ ]] || { echo "make_results.sh: --limit must be a non-negative integer, got '$limit'" >&2; exit 2; }
[[ "$threads" =~ ^[1-9][0-9]*$ ]] || { echo "make_results.sh: --threads must be a positive integer, got '$threads'" >&2; exit 2; }

zebra=${ZEBRA:-build/zebra}
teacher=${TEACHER:-models/SmolLM2-135M-Instruct.Q4_1.gguf}
wikitext=../shared/assets/text/wikitext2_raw_test.txt
python=${PYTHON:-}
if [[ -z "$python" ]]; then
  if [[ -x .venv/bin/python ]]; then python=.venv/bin/python; else python=python3; fi
fi

if [[ -n "$from" ]]; then
  work="$from"
else
  for f in "$zebra" "$teacher" "$wikitext"; do
    [[ -e "$f" ]] || { echo "make_results.sh: $f not found (build, or run scripts/fetch_models.sh)" >&2; exit 1; }
  done
  mkdir -p "$work"
  hybrid="$work/smol-8mla"
  log() { echo "[make_results] $*" >&2; }

  # What the report's machine section needs, captured before anything loads the machine.
  loadavg=$(cut -d' ' -f1-3 /proc/loadavg)
  if [[ ! -f "$hybrid/model.safetensors" ]]; then
    log "composing the 8-MLA hybrid into $hybrid"
    "$zebra" -q compose --teacher "$teacher" --mla-count 8 -t "$threads" -o "$hybrid" >/dev/null
  fi

  eval_args=(--tasks all --batch 8 -t "$threads" --json)
  ppl_args=(-f "$wikitext" -c 512 -t "$threads" --json)
  if [[ "$limit" -gt 0 ]]; then
    eval_args+=(--limit "$limit")
    ppl_args+=(--chunks "$limit")
    # A reduced sweep: the full one takes about ten minutes per model on two cores.
    decode_sweep=(-b 1,4 -p 0 -n 16 -d 0,256 -r 1)
    prefill_sweep=(-b 1 -p 128 -n 0 -d 0,256 -r 1)
  else
    decode_sweep=(-b 1,4,16 -p 0 -n 64 -d 0,1024 -r 3)
    prefill_sweep=(-b 1 -p 512 -n 0 -d 0,1024 -r 3)
  fi

  for role in teacher hybrid; do
    model=$teacher; [[ $role == hybrid ]] && model=$hybrid
    log "eval ($role)"
    "$zebra" eval -m "$model" "${eval_args[@]}" --output "$work/eval_$role.json" >/dev/null
    log "perplexity ($role)"
    "$zebra" perplexity -m "$model" "${ppl_args[@]}" >"$work/ppl_$role.json"
  done
  log "bench: decode"
  "$zebra" bench --compare "$teacher" "$hybrid" "${decode_sweep[@]}" -t "$threads" -o "$work/bench_decode.json" >&2
  log "bench: prefill"
  "$zebra" bench --compare "$teacher" "$hybrid" "${prefill_sweep[@]}" -t "$threads" -o "$work/bench_prefill.json" >&2

  commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
  git diff --quiet HEAD -- src tools 2>/dev/null || commit="$commit (with uncommitted changes to src/ or tools/)"
  cpu=$(lscpu | sed -n 's/^Model name: *//p' | head -1)
  mem_gib=$(awk '/MemTotal/ {printf "%.0f", $2 / 1048576}' /proc/meminfo)
  MAKE_RESULTS_META="$work/meta.json" "$python" - "$limit" "$threads" "$(nproc)" "$cpu" "$mem_gib" \
    "$(date -u '+%Y-%m-%d %H:%M UTC')" "$commit" "$loadavg" "$teacher" "$hybrid" "$arguments" <<'EOF'
import json, os, sys
keys = ["limit", "threads", "cores", "cpu", "memory_gib", "date", "commit", "loadavg_before", "teacher", "hybrid",
        "arguments"]
meta = dict(zip(keys, sys.argv[1:]))
for k in ("limit", "threads", "cores"):
    meta[k] = int(meta[k])
with open(os.environ["MAKE_RESULTS_META"], "w") as f:
    json.dump(meta, f, indent=2)
EOF
fi

# ---- the report: charts, then markdown from the JSON files ---------------------------------------------
charts_dir="$(dirname "$out")/results"
charts=""
if "$python" -c "import matplotlib" 2>/dev/null; then
  mkdir -p "$charts_dir"
  "$python" scripts/plot.py bench "$work/bench_decode.json" "$work/bench_prefill.json" -o "$charts_dir" >/dev/null
  charts="$charts_dir"
else
  echo "[make_results] $python has no matplotlib: the report will have no charts (scripts/setup.sh --reference)" >&2
fi

python3 - "$work" "$out" "$charts" <<'EOF'
"""Renders docs/RESULTS.md from the JSON files that make_results.sh collected."""
import json
import os
import sys

work, out, charts = sys.argv[1], sys.argv[2], sys.argv[3]
TASKS = ["arc_easy", "arc_challenge", "piqa", "openbook_qa", "winogrande", "lambada_openai", "boolq", "siqa",
         "copa", "commonsense_qa"]


def load(name):
    path = os.path.join(work, name)
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        sys.exit(f"make_results.sh: cannot read {path}: {e}")


def pct(value, err=None):
    if value is None:
        return "-"
    s = f"{100 * value:.1f}"
    return s + (f" ± {100 * err:.1f}" if err is not None else "")


meta = load("meta.json")
ev = {role: load(f"eval_{role}.json") for role in ("teacher", "hybrid")}
ppl = {role: load(f"ppl_{role}.json") for role in ("teacher", "hybrid")}
bench = {kind: load(f"bench_{kind}.json") for kind in ("decode", "prefill")}

lines = ["# Results: SmolLM2-135M-Instruct and its composed 8-MLA hybrid", ""]
lines.append(f"Generated by `scripts/make_results.sh{(' ' + meta['arguments']) if meta.get('arguments') else ''}`"
             f" on {meta['date']} at commit {meta['commit']}. Do not edit by hand: re-run the script.")
lines.append("")
if meta["limit"] > 0:
    lines += [f"> **Quick check (`--limit {meta['limit']}`), not the published numbers:** each task is scored on "
              f"its first {meta['limit']} items only, perplexity on the first {meta['limit']} windows, and the "
              "speed sweep is reduced. Accuracies on so few items have standard errors of ±10 points or more.", ""]
lines += ["## Machine", "",
          "| CPU | cores | threads used | memory | load average before the run |",
          "|---|---:|---:|---:|---|",
          f"| {meta['cpu']} | {meta['cores']} | {meta['threads']} | {meta['memory_gib']} GiB | "
          f"{meta['loadavg_before']} |", "",
          "Timings on a shared machine vary with what else runs (see the load average); the zero-shot and "
          "perplexity numbers do not depend on it.", ""]
load1 = float(meta["loadavg_before"].split()[0])
if load1 >= meta["cores"]:
    lines += [f"**Other jobs were running** (load average {load1:.1f} on {meta['cores']} cores when the run "
              "started): the speed numbers below are disturbed and far below what this machine does when idle.", ""]

teacher_model, hybrid_model = bench["decode"]["models"][0], bench["decode"]["models"][1]
lines += ["## Models", "",
          "| role | model | parameters | KV cache bytes/token (fp32) | fixed state bytes/sequence |",
          "|---|---|---:|---:|---:|"]
for role, m in (("teacher", teacher_model), ("hybrid", hybrid_model)):
    lines.append(f"| {role} | `{m['path']}` | {m['params'] / 1e6:.2f} M | {m['kv_bytes_per_token']:,} | "
                 f"{m['state_bytes_per_sequence']:,} |")
lines += ["", "The hybrid is `zebra compose --teacher TEACHER --mla-count 8` (8 MLA + 22 Mamba2 layers) as "
          "composed, before any distillation: its accuracy is expected to be far below the teacher's.", ""]

# Zero-shot accuracy: lm-eval's layout ("acc,none", "acc_stderr,none", ...).
lines += ["## Zero-shot accuracy (`zebra eval`)", "",
          "| task | items | teacher acc % | teacher acc_norm % | hybrid acc % | hybrid acc_norm % |",
          "|---|---:|---:|---:|---:|---:|"]
tasks = [t for t in TASKS if t in ev["teacher"].get("results", {})]
tasks += sorted(t for t in ev["teacher"].get("results", {}) if t not in TASKS)
for t in tasks:
    r = {role: ev[role]["results"].get(t, {}) for role in ev}
    n = ev["teacher"].get("n-samples", {}).get(t, {})
    items = f"{n.get('effective', '?')} of {n.get('original', '?')}" if n else "-"
    cells = []
    for role in ("teacher", "hybrid"):
        for metric in ("acc", "acc_norm"):
            cells.append(pct(r[role].get(f"{metric},none"), r[role].get(f"{metric}_stderr,none")))
    lines.append(f"| {t} | {items} | " + " | ".join(cells) + " |")
avg = {role: ev[role].get("average", {}) for role in ev}
lines.append("| **average** | | " + " | ".join(pct(avg[role].get(f"{m},none")) for role in ("teacher", "hybrid")
                                          for m in ("acc", "acc_norm")) + " |")
lambada = {role: ev[role]["results"].get("lambada_openai", {}).get("perplexity,none") for role in ev}
if any(v is not None for v in lambada.values()):
    lines += ["", "LAMBADA (OpenAI) target-word perplexity: teacher "
              + ", hybrid ".join(f"{v:,.2f}" if v is not None else "-" for v in lambada.values()) + "."]
cfg = {role: ev[role].get("config", {}) for role in ev}
lines += ["", "Eval time: " + ", ".join(
    f"{role} {c['seconds']:.0f} s ({c.get('items_per_second', 0):.2f} items/s)"
    for role, c in cfg.items() if "seconds" in c) + ".", ""]

lines += ["## Perplexity (wikitext-2 raw test, `zebra perplexity -c 512`)", "",
          "| model | scored tokens | nll/token | ppl |", "|---|---:|---:|---:|"]
for role in ("teacher", "hybrid"):
    p = ppl[role]
    lines.append(f"| {role} | {p['tokens']:,} | {p['nll_per_token']:.4f} | {p['ppl']:,.2f} |")
lines.append("")


def bench_table(b, title):
    rows = [f"### {title}", "", "| batch | test | teacher t/s | hybrid t/s | hybrid/teacher | teacher cache MiB | "
            "hybrid cache MiB | hybrid/teacher cache |", "|---:|---|---:|---:|---:|---:|---:|---:|"]
    for e in b["compare"]:
        rows.append(f"| {e['batch']} | {e['test']} | {e['a_ts']:.2f} ± {e['a_stddev_ts']:.2f} | "
                    f"{e['b_ts']:.2f} ± {e['b_stddev_ts']:.2f} | {e['ts_ratio']:.2f} | {e['a_cache_mib']:.2f} | "
                    f"{e['b_cache_mib']:.2f} | {e['cache_ratio']:.4f} |")
    return rows + [""]


lines += ["## Speed and cache memory (`zebra bench --compare`)", "",
          f"{bench['decode']['backend']}, {bench['decode']['threads']} threads; measured read bandwidth "
          f"{bench['decode']['read_bandwidth_gbs']:.1f} GB/s. t/s counts the tokens of all sequences of a batch; "
          "cache MiB is what the batch's sequences hold after the test (fp32). `@ dN`: N tokens of context "
          "already in every sequence's cache.", ""]
lines += bench_table(bench["decode"], "Decode")
lines += bench_table(bench["prefill"], "Prefill")
if charts:
    rel = os.path.relpath(charts, os.path.dirname(os.path.abspath(out)) or ".")
    for name, caption in (("decode_vs_batch.png", "decode throughput vs batch"),
                          ("throughput_vs_depth.png", "throughput vs context depth"),
                          ("cache_vs_context.png", "cache memory vs context")):
        if os.path.exists(os.path.join(charts, name)):
            lines.append(f"![{caption}]({rel}/{name})")
    lines.append("")

os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
with open(out + ".tmp", "w") as f:
    f.write("\n".join(lines))
os.replace(out + ".tmp", out)
print(out)
EOF
