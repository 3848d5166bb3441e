#!/usr/bin/env bash
# The folder layout under src/ is the architecture; this keeps the #include "..." graph following it.
# Each enforced folder lists the folders it may include (itself included); any other project include is
# printed as FILE:LINE: folder X may not include Y, and the script exits 1. The upper layers (compose,
# train, eval) are not enforced yet: what they include is printed so a reviewer sees it.
# Usage: scripts/check_layers.sh [REPO_ROOT]   (run by ctest as the "layering" test)
set -euo pipefail

root=${1:-"$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"}
cd "$root/src"

declare -A allowed=(
  [core]="core"
  [io]="core io"
  [tokenizer]="core io tokenizer"
  [kernels]="core kernels"
  [cache]="core kernels cache"
  [model]="core io tokenizer kernels cache model"
  [engine]="core io tokenizer kernels cache model engine"
)
# Reported, not enforced: they may use every layer below and each other, as they do today.
reported="compose train eval"

violations=0
checked=0
declare -A uses  # "folder target" -> count, for the reported folders

while IFS= read -r -d '' file; do
  folder=${file%%/*}
  if [[ -n ${allowed[$folder]+x} ]]; then
    checked=$((checked + 1))
  elif [[ " $reported " != *" $folder "* ]]; then
    echo "src/$file: folder $folder has no layering rule (add it to scripts/check_layers.sh)"
    violations=$((violations + 1))
    continue
  fi
  while IFS=: read -r line text; do
    [[ $text =~ \"([^\"]*)\" ]] || continue
    header=${BASH_REMATCH[1]}
    if [[ $header == */* ]]; then
      target=${header%%/*}
      [[ -d $target ]] || continue  # not a project header (project includes are rooted at src/)
    else
      target=$folder  # a header beside the file
    fi
    if [[ -n ${allowed[$folder]+x} ]]; then
      if [[ " ${allowed[$folder]} " != *" $target "* ]]; then
        echo "src/$file:$line: folder $folder may not include $target ($header)"
        violations=$((violations + 1))
      fi
    else
      key="$folder $target"
      uses[$key]=$(( ${uses[$key]:-0} + 1 ))
    fi
  done < <(grep -nE '^[[:space:]]*#[[:space:]]*include[[:space:]]*"' "$file" || true)
done < <(find . -type f \( -name '*.h' -o -name '*.hpp' -o -name '*.cpp' -o -name '*.cc' -o -name '*.inc' \) \
           -printf '%P\0' | sort -z)

# Layer order first, then any other folder they reach.
targets="core io tokenizer kernels cache model engine compose train eval"
for dir in */; do
  if [[ " $targets " != *" ${dir%/} "* ]]; then targets+=" ${dir%/}"; fi
done
for folder in $reported; do
  line=""
  for target in $targets; do
    n=${uses["$folder $target"]:-0}
    if (( n > 0 )); then line+=" $target($n)"; fi
  done
  if [[ -n $line ]]; then echo "layering: $folder (not enforced) includes:$line"; fi
done

echo "layering: $checked files of core, io, tokenizer, kernels, cache, model, engine checked"
for folder in core io tokenizer kernels cache model engine; do
  echo "  $folder may include: ${allowed[$folder]}"
done
if (( violations > 0 )); then
  echo "layering: $violations violation(s)"
  exit 1
fi
echo "layering: ok"
