#!/usr/bin/env bash
# Measures SmolLM2-135M-Instruct against its composed 8-MLA hybrid and writes docs/RESULTS.md:
# zero-shot accuracy (zebra eval, ten tasks), wikitext-2 perplexity (zebra perplexity -c 512), speed and
# cache memory (zebra bench --compare), with PNG charts from scripts/plot.py.
#
#   scripts/make_results.sh [--limit N] [--hybrid-limit N] [--threads T] [-o docs/RESULTS.md] [--work DIR]
#                           [--fresh] [--from DIR]
#
#   --limit N    quick check: N items per eval task, N perplexity windows, a small bench sweep; the
#                report says so at the top. Without it: full tasks, the whole test set, the full sweep.
#   --hybrid-limit N  score the hybrid on only N items per task and N perplexity windows (default: as
#                --limit); the teacher's numbers stay full. The report says so next to the tables.
#   --threads T  CPU threads for every zebra command (default: all cores)
#   -o FILE      the report (default docs/RESULTS.md); charts go to <FILE's folder>/results/
#   --work DIR   where the hybrid and the raw JSON results go (default build/results). A measurement
#                whose JSON is already there is kept, so an interrupted run continues where it stopped.
#   --fresh      measure everything again, ignoring the JSON already in --work
#   --from DIR   only render the report from JSON already in DIR (eval_{teacher,hybrid}.json,
#                ppl_{teacher,hybrid}.json, bench_{decode,prefill}.json, meta.json); measures nothing
# Environment: ZEBRA (default build/zebra), TEACHER (default models/SmolLM2-135M-Instruct.Q4_1.gguf),
# PYTHON (default .venv/bin/python when it exists, for the charts; the report itself needs only python3).
set -euo pipefail
cd "$(dirname "$0")/.."

arguments="$*"  # recorded in the report
limit=0
hybrid_limit=""
fresh=0
threads=$(nproc)
out=docs/RESULTS.md
work=build/results
from=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --limit) limit="$2"; shift 2 ;;
    --hybrid-limit) hybrid_limit="$2"; shift 2 ;;
    --threads) threads="$2"; shift 2 ;;
    --fresh) fresh=1; shift ;;
    -o|--output) out="$2"; shift 2 ;;
    --work) work="$2"; shift 2 ;;
    --from) from="$2"; shift 2 ;;
    -h|--help) sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "make_results.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
[[ "$limit" =~ ^[0-9]+$ ]] || { echo "make_results.sh: --limit must be a non-negative integer, got '$limit'" >&2; exit 2; }
[[ -z "$hybrid_limit" ]] && hybrid_limit=$limit
[[ "$hybrid_limit" =~ ^[0-9]+$ ]] || { echo "make_results.sh: --hybrid-limit must be a non-negative integer, got '$hybrid_limit'" >&2; exit 2; }
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

  # Each measurement writes its JSON through a .tmp file and a rename, so a killed run leaves no half file
  # behind, and a JSON already in $work is kept (unless --fresh): an interrupted run picks up where it stopped.
  measure() {  # measure NAME.json DESCRIPTION COMMAND... (the command writes its JSON to stdout)
    local file="$work/$1" what="$2"; shift 2
    if [[ $fresh -eq 0 && -s "$file" ]]; then log "$what: kept $file (--fresh measures it again)"; return; fi
    log "$what"
    "$@" >"$file.tmp"
    mv "$file.tmp" "$file"
  }
  eval_args=(--tasks all --batch 8 -t "$threads" --json)
  ppl_args=(-f "$wikitext" -c 512 -t "$threads" --json)
  if [[ "$limit" -gt 0 ]]; then
    # A reduced sweep: the full one takes about ten minutes per model on two cores.
    decode_sweep=(-b 1,4 -p 0 -n 16 -d 0,256 -r 1)
    prefill_sweep=(-b 1 -p 128 -n 0 -d 0,256 -r 1)
  else
    decode_sweep=(-b 1,4,16 -p 0 -n 64 -d 0,1024 -r 3)
    prefill_sweep=(-b 1 -p 512 -n 0 -d 0,1024 -r 3)
  fi

  for role in teacher hybrid; do
    model=$teacher; n=$limit
    [[ $role == hybrid ]] && { model=$hybrid; n=$hybrid_limit; }
    eval_limit=(); ppl_limit=()
    [[ "$n" -gt 0 ]] && { eval_limit=(--limit "$n"); ppl_limit=(--chunks "$n"); }
    measure "eval_$role.json" "eval ($role)" "$zebra" eval -m "$model" "${eval_args[@]}" "${eval_limit[@]}"
    measure "ppl_$role.json" "perplexity ($role)" "$zebra" perplexity -m "$model" "${ppl_args[@]}" "${ppl_limit[@]}"
  done
  measure bench_decode.json "bench: decode" "$zebra" bench --compare "$teacher" "$hybrid" "${decode_sweep[@]}" \
    -t "$threads" --json
  measure bench_prefill.json "bench: prefill" "$zebra" bench --compare "$teacher" "$hybrid" "${prefill_sweep[@]}" \
    -t "$threads" --json
  # Eval throughput, and what scoring every choice from the cached shared context buys over a full forward
  # per choice (--naive): both modes on the same items, one after the other.
  speed_items=64; [[ "$limit" -gt 0 && "$limit" -lt $speed_items ]] && speed_items=$limit
  for role in teacher hybrid; do
    model=$teacher; [[ $role == hybrid ]] && model=$hybrid
    for mode in cached naive; do
      naive=(); [[ $mode == naive ]] && naive=(--naive)
      measure "eval_speed_${role}_$mode.json" "eval speed ($role, $mode)" "$zebra" eval -m "$model" \
        --tasks arc_easy,boolq,siqa,winogrande --limit "$speed_items" --batch 8 -t "$threads" --json "${naive[@]}"
    done
  done

  commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
  git diff --quiet HEAD -- src tools 2>/dev/null || commit="$commit (with uncommitted changes to src/ or tools/)"
  cpu=$(lscpu | sed -n 's/^Model name: *//p' | head -1)
  mem_gib=$(awk '/MemTotal/ {printf "%.0f", $2 / 1048576}' /proc/meminfo)
  MAKE_RESULTS_META="$work/meta.json" "$python" - "$limit" "$hybrid_limit" "$threads" "$(nproc)" "$cpu" "$mem_gib" \
    "$(date -u '+%Y-%m-%d %H:%M UTC')" "$commit" "$loadavg" "$teacher" "$hybrid" "$arguments" <<'EOF'
import json, os, sys
keys = ["limit", "hybrid_limit", "threads", "cores", "cpu", "memory_gib", "date", "commit", "loadavg_before", "teacher", "hybrid",
        "arguments"]
meta = dict(zip(keys, sys.argv[1:]))
for k in ("limit", "hybrid_limit", "threads", "cores"):
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


def explain_bad_json(kind, value, traceback):
    """A JSON file in `work` that lacks a field, or has the wrong type, gets one clear line, not a traceback."""
    if issubclass(kind, (KeyError, TypeError, IndexError)):
        sys.exit(f"make_results.sh: the JSON in {work} is not what zebra writes ({kind.__name__}: {value}); "
                 "measure again with --fresh")
    sys.__excepthook__(kind, value, traceback)


sys.excepthook = explain_bad_json
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
hybrid_limit = meta.get("hybrid_limit", meta["limit"])
if hybrid_limit != meta["limit"]:
    teacher_scope = ("every item of every task and the whole perplexity text" if meta["limit"] == 0
                     else f"its first {meta['limit']} items of each task")
    lines += [f"> The teacher is scored on {teacher_scope}; the undistilled hybrid, to save time, on the first "
              f"{hybrid_limit} items of each task and the first {hybrid_limit} perplexity windows only "
              f"(`--hybrid-limit {hybrid_limit}`).", ""]
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



def chance(task, n_items, data_dir="../shared/assets/benchmarks"):
    """Expected acc of a uniform random pick over the task's first n_items items (the teacher's), from its data
    file."""
    path = os.path.join(data_dir, f"{task}.jsonl")
    if not n_items or not os.path.exists(path):
        return "-"
    with open(path) as f:
        items = [json.loads(line) for line, _ in zip(f, range(n_items))]
    options = [len(item.get("choices") or item.get("context_options") or []) for item in items]
    if not all(options):
        return "-"  # language modelling (LAMBADA): no options to pick from
    return f"{100 * sum(1 / k for k in options) / len(options):.1f}"


# Zero-shot accuracy: lm-eval's layout ("acc,none", "acc_stderr,none", ...).
lines += ["## Zero-shot accuracy (`zebra eval`)", "",
          "| task | items | teacher acc % | teacher acc_norm % | hybrid acc % | hybrid acc_norm % | chance % |",
          "|---|---:|---:|---:|---:|---:|---:|"]
tasks = [t for t in TASKS if t in ev["teacher"].get("results", {})]
tasks += sorted(t for t in ev["teacher"].get("results", {}) if t not in TASKS)
for t in tasks:
    r = {role: ev[role]["results"].get(t, {}) for role in ev}
    n = ev["teacher"].get("n-samples", {}).get(t, {})
    items = f"{n.get('effective', '?')} of {n.get('original', '?')}" if n else "-"
    n_hybrid = ev["hybrid"].get("n-samples", {}).get(t, {})
    if n and n_hybrid and n_hybrid.get("effective") != n.get("effective"):
        items += f" (hybrid: {n_hybrid.get('effective', '?')})"
    cells = []
    for role in ("teacher", "hybrid"):
        for metric in ("acc", "acc_norm"):
            cells.append(pct(r[role].get(f"{metric},none"), r[role].get(f"{metric}_stderr,none")))
    lines.append(f"| {t} | {items} | " + " | ".join(cells) + f" | {chance(t, n.get('effective'))} |")
avg = {role: ev[role].get("average", {}) for role in ev}
lines.append("| **average** | | " + " | ".join(pct(avg[role].get(f"{m},none")) for role in ("teacher", "hybrid")
                                          for m in ("acc", "acc_norm")) + " | |")


def letter_task_note(data_dir="../shared/assets/benchmarks"):
    """siqa and commonsense_qa score letters; a model that always answers "A" gets the share of gold-0 items."""
    shares = []
    for t in ("siqa", "commonsense_qa"):
        path = os.path.join(data_dir, f"{t}.jsonl")
        if t not in ev["teacher"]["results"] or not os.path.exists(path):
            continue
        with open(path) as f:
            items = [json.loads(line) for line in f if line.strip()]
        n_options = sorted({len(item["choices"]) for item in items})
        share_a = sum(item["gold"] == 0 for item in items) / len(items)
        shares.append(f"{t} {'/'.join(map(str, n_options))} options, answer A in {100 * share_a:.1f}% of items")
    if not shares:
        return []
    return ["", "siqa and commonsense_qa (llm-foundry's copies) list the options in the query and score the letters "
            "A, B, ... as the choices, so acc_norm equals acc there. A model that always answers A scores the share "
            "of items whose answer is A (" + "; ".join(shares) + ")."]


lines += letter_task_note()
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
    # The decode roofline (read bandwidth x batch / bytes one step reads) is per model; prefill has none (0).
    roofline = [{(r["test"], r["batch"]): r.get("roofline_ts", 0) for r in m["results"]} for m in b["models"]]

    def roof(i, e):
        value = roofline[i].get((e["test"], e["batch"]), 0)
        return f"{value:.1f}" if value > 0 else "-"

    rows = [f"### {title}", "", "| batch | test | teacher t/s | hybrid t/s | hybrid/teacher | teacher cache MiB | "
            "hybrid cache MiB | hybrid/teacher cache | roofline t/s teacher / hybrid |",
            "|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
    for e in b["compare"]:
        rows.append(f"| {e['batch']} | {e['test']} | {e['a_ts']:.2f} ± {e['a_stddev_ts']:.2f} | "
                    f"{e['b_ts']:.2f} ± {e['b_stddev_ts']:.2f} | {e['ts_ratio']:.2f} | {e['a_cache_mib']:.2f} | "
                    f"{e['b_cache_mib']:.2f} | {e['cache_ratio']:.4f} | {roof(0, e)} / {roof(1, e)} |")
    return rows + [""]


lines += ["## Speed and cache memory (`zebra bench --compare`)", "",
          f"{bench['decode']['backend']}, {bench['decode']['threads']} threads; measured read bandwidth "
          f"{bench['decode']['read_bandwidth_gbs']:.1f} GB/s. t/s counts the tokens of all sequences of a batch; "
          "cache MiB is what the batch's sequences hold after the test (fp32). `@ dN`: N tokens of context "
          "already in every sequence's cache. The roofline is the decode speed if a step cost only the time to "
          "read its weights and cache once at the measured bandwidth.", ""]
lines += bench_table(bench["decode"], "Decode")
lines += bench_table(bench["prefill"], "Prefill")


def eval_speed_table():
    """Items/s of zebra eval, cached shared context vs --naive, from eval_speed_<role>_<mode>.json (optional)."""
    runs = {}
    for role in ("teacher", "hybrid"):
        for mode in ("cached", "naive"):
            path = os.path.join(work, f"eval_speed_{role}_{mode}.json")
            if os.path.exists(path):
                runs[role, mode] = load(os.path.basename(path))
    if len(runs) < 4:
        return []
    tasks = ", ".join(runs["teacher", "cached"]["results"])
    items = sum(n["effective"] for n in runs["teacher", "cached"]["n-samples"].values())
    rows = ["## Eval throughput (`zebra eval`, cached shared context vs `--naive`)", "",
            f"The same {items} items ({tasks}; batch 8) scored twice per model: once with every choice scored from "
            "the cached state after the shared context, once with a full forward per choice (`--naive`).", "",
            "| model | cached items/s | naive items/s | speed-up |", "|---|---:|---:|---:|"]
    for role in ("teacher", "hybrid"):
        cached = runs[role, "cached"]["config"]["items_per_second"]
        naive = runs[role, "naive"]["config"]["items_per_second"]
        rows.append(f"| {role} | {cached:.2f} | {naive:.2f} | {cached / naive:.2f}x |")
    return rows + [""]


if charts:
    rel = os.path.relpath(charts, os.path.dirname(os.path.abspath(out)) or ".")
    for name, caption in (("decode_vs_batch.png", "decode throughput vs batch"),
                          ("throughput_vs_depth.png", "throughput vs context depth"),
                          ("cache_vs_context.png", "cache memory vs context")):
        if os.path.exists(os.path.join(charts, name)):
            lines.append(f"![{caption}]({rel}/{name})")
    lines.append("")
lines += eval_speed_table()

os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
with open(out + ".tmp", "w") as f:
    f.write("\n".join(lines))
os.replace(out + ".tmp", out)
print(out)
EOF
