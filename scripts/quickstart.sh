#!/usr/bin/env bash
# Sets everything up and runs the main job on its built-in default: builds zebra, fetches SmolLM2-135M,
# and shows info, generation and perplexity on it (plus the tiny stories260K model when ../shared is there).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/fetch_models.sh
Z=build/zebra
M=models/SmolLM2-135M-Instruct.Q4_1.gguf
echo "== zebra info $M"
$Z info "$M"
echo
echo "== zebra generate (greedy, 48 tokens)"
$Z generate -m "$M" -p "<|im_start|>user
What is the capital of France?<|im_end|>
<|im_start|>assistant
" -n 48 --temp 0
STORIES=../shared/assets/models/stories260K
if [ -d "$STORIES" ]; then
  echo
  echo "== zebra generate -m stories260K (greedy from BOS)"
  $Z generate -m $STORIES/stories260K.bin --tokenizer $STORIES/tok512.bin -n 64 --temp 0
fi
WIKI=../shared/assets/text/wikitext2_raw_test.txt
if [ -f "$WIKI" ]; then
  echo
  echo "== zebra perplexity on the first 8 windows of 512 tokens of WikiText-2"
  $Z perplexity -m "$M" -f "$WIKI" -c 512 --chunks 8
fi
