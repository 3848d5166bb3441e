#!/usr/bin/env bash
# Sets everything up and runs the main job on its built-in default: the Zebra-Llama pipeline on the tiny
# stories260K Llama (compose -> ILD -> SMART select -> KD, then perplexity, KL to the teacher and KV size
# before/after), a few minutes on 2 cores. Then a look at SmolLM2-135M and its composed hybrid.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/fetch_models.sh
Z=build/zebra
if [ -d ../shared/assets/models/stories260K ]; then
  echo "== the distillation pipeline on stories260K (short run; scripts/distill_demo.sh without overrides is the full one)"
  OUT=out/quickstart ILD_STEPS=${ILD_STEPS:-40} KD_STEPS=${KD_STEPS:-60} EVAL_CHUNKS=${EVAL_CHUNKS:-20} \
    scripts/distill_demo.sh
else
  echo "(../shared/assets is not here: skipping the stories260K distillation demo)"
fi
M=models/SmolLM2-135M-Instruct.Q4_1.gguf
echo
echo "== zebra info $M"
$Z info "$M"
echo
echo "== zebra generate (greedy, 32 tokens)"
$Z generate -m "$M" -p "<|im_start|>user
What is the capital of France?<|im_end|>
<|im_start|>assistant
" -n 32 --temp 0
