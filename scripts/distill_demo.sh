#!/usr/bin/env bash
# The Zebra-Llama pipeline end to end on stories260K (spec §2-§4), on CPU:
#   compose (all-MLA by SVD, all-Mamba2 from Q/K/V/O) -> ILD of both -> SMART select -> end-to-end KD
# then perplexity and KL to the teacher on tinystories_valid.txt, and the KV cache against the teacher's.
# Sizes come from the environment (defaults: the README's full demonstration; quickstart runs a short one):
#   ILD_STEPS KD_STEPS BATCH SEQ MLA_COUNT Q_RANK KV_RANK EVAL_CHUNKS THREADS OUT
set -euo pipefail
cd "$(dirname "$0")/.."
Z=${ZEBRA:-build/zebra}
A=../shared/assets
S=$A/models/stories260K
TEACHER=$S/stories260K.bin
TOK=$S/tok512.bin
TRAIN=$A/text/tinystories_train_2MiB.txt
VALID=$A/text/tinystories_valid.txt
OUT=${OUT:-out/distill_demo}
ILD_STEPS=${ILD_STEPS:-150}
KD_STEPS=${KD_STEPS:-300}
BATCH=${BATCH:-8}
SEQ=${SEQ:-256}
MLA_COUNT=${MLA_COUNT:-2}
Q_RANK=${Q_RANK:-16}
KV_RANK=${KV_RANK:-8}
EVAL_CHUNKS=${EVAL_CHUNKS:-100}
THREADS=${THREADS:-0}
for f in "$TEACHER" "$TOK" "$TRAIN" "$VALID"; do
  [ -f "$f" ] || { echo "distill_demo: $f is missing (the demo needs ../shared/assets)" >&2; exit 1; }
done
mkdir -p "$OUT"
T="-t $THREADS"
RANKS="--q-rank $Q_RANK --kv-rank $KV_RANK"
DATA="--data $TRAIN --data-cache $OUT/data --seq-len $SEQ -b $BATCH"

echo "== 1. compose: all-MLA (SVD init, q rank $Q_RANK, kv rank $KV_RANK) and all-Mamba2 (Q/K/V/O init)"
$Z -q compose --teacher $TEACHER --tokenizer $TOK --all-mla $RANKS --dtype f32 -o $OUT/composed_all_mla
$Z -q compose --teacher $TEACHER --tokenizer $TOK --all-mamba --dtype f32 -o $OUT/composed_all_mamba

echo "== 2. ILD: every layer learns to map the teacher's layer input to its output ($ILD_STEPS steps each)"
$Z distill --stage ild --teacher $TEACHER --tokenizer $TOK --student $OUT/composed_all_mla $DATA \
  --steps $ILD_STEPS --lr 3e-3 --warmup-ratio 0.02 --eval-every 50 --save-every 100 $T -o $OUT/ild_mla
$Z distill --stage ild --teacher $TEACHER --tokenizer $TOK --student $OUT/composed_all_mamba $DATA \
  --steps $ILD_STEPS --lr 3e-3 --warmup-ratio 0.02 --eval-every 50 --save-every 100 $T -o $OUT/ild_mamba

echo "== 3. SMART: per-layer sensitivity (KL on training text) and the placement of $MLA_COUNT MLA layers"
$Z select --teacher $TEACHER --tokenizer $TOK --mla-student $OUT/ild_mla/model --mamba-student $OUT/ild_mamba/model \
  --mla-count $MLA_COUNT --data $TRAIN $T -o $OUT/ild_hybrid
LAYOUT=$(python3 -c "import json,sys; print(','.join(map(str, json.load(open(sys.argv[1]))['layout'])))" \
  $OUT/ild_hybrid/smart_report.json)
echo "chosen MLA layers: $LAYOUT"
# The same layout straight from compose, untrained: the starting point the distillation is measured against.
$Z -q compose --teacher $TEACHER --tokenizer $TOK --mla-layers $LAYOUT $RANKS --dtype f32 -o $OUT/composed_hybrid

echo "== 4. KD: end-to-end distillation of the hybrid from the teacher ($KD_STEPS steps)"
$Z distill --stage kd --teacher $TEACHER --tokenizer $TOK --student $OUT/ild_hybrid $DATA \
  --steps $KD_STEPS --lr 2e-3 --warmup-ratio 0.02 --eval-every 100 --save-every 200 $T -o $OUT/kd

echo "== 5. perplexity on tinystories_valid.txt ($EVAL_CHUNKS windows of 512) and KL to the teacher"
PPL="--tokenizer $TOK -f $VALID -c 512 --chunks $EVAL_CHUNKS --json $T"
$Z -q perplexity -m $TEACHER $PPL --save-logits $OUT/teacher.logits > $OUT/ppl_teacher.json
for m in composed_hybrid ild_hybrid kd/model; do
  $Z -q perplexity -m $OUT/$m $PPL --kl-base $OUT/teacher.logits > $OUT/ppl_$(echo $m | tr / _).json
done
$Z -q info $OUT/kd/model --json > $OUT/info_hybrid.json

python3 - "$OUT" <<'PY'
import json, math, sys
out = sys.argv[1]
load = lambda p: json.load(open(f"{out}/{p}"))
t = load("ppl_teacher.json")
rows = [("teacher (stories260K)", t["ppl"], 0.0)]
for name, f in [("composed hybrid", "ppl_composed_hybrid.json"), ("after ILD (SMART-assembled)", "ppl_ild_hybrid.json"),
                ("after KD", "ppl_kd_model.json")]:
    r = load(f)
    rows.append((name, r["ppl"], r["kl"]["mean"]))
info = load("info_hybrid.json")
gap0 = rows[1][1] - t["ppl"]
lines = ["| model | ppl | KL(teacher‖model) nats/token | gap closed (ppl) | gap closed (log ppl) |",
         "|---|---:|---:|---:|---:|"]
for name, ppl, kl in rows:
    closed = "" if name.startswith("teacher") else f"{100 * (rows[1][1] - ppl) / gap0:.1f} %"
    lclosed = "" if name.startswith("teacher") else \
        f"{100 * (math.log(rows[1][1]) - math.log(ppl)) / (math.log(rows[1][1]) - math.log(t['ppl'])):.1f} %"
    lines.append(f"| {name} | {ppl:.3f} | {kl:.4f} | {closed} | {lclosed} |")
lines.append("")
lines.append(f"MLA layers {json.load(open(f'{out}/ild_hybrid/smart_report.json'))['layout']}; KV cache "
             f"{info['kv_elements_per_token']} floats/token = {info['kv_percent_of_source']:.2f} % of the teacher's "
             f"{info['source_kv_elements_per_token']}")
text = "\n".join(lines) + "\n"
open(f"{out}/summary.md", "w").write(text)
print(text)
PY
echo "summary: $OUT/summary.md; loss curves: .venv/bin/python scripts/plot.py train $OUT/ild_mla/train_log.csv:ild-mla $OUT/ild_mamba/train_log.csv:ild-mamba $OUT/kd/train_log.csv:kd -o $OUT/loss.png"
