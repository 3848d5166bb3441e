#!/usr/bin/env bash
# Runs zebra's whole test suite: builds everything, fetches the real test model, runs each libFuzzer target
# briefly, then every GoogleTest suite through ctest (its summary is the last thing printed).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/fetch_models.sh || echo "test: could not fetch SmolLM2; its tests will be skipped" >&2
JOBS=$(nproc)
ninja -C build -j "$JOBS"

FUZZ_SECONDS=${FUZZ_SECONDS:-20}
if [ "$FUZZ_SECONDS" -gt 0 ]; then
  cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_COMPILER=clang \
        -DCMAKE_CXX_COMPILER=clang++ -DZEBRA_FUZZ=ON -DZEBRA_TESTS=OFF -DZEBRA_NATIVE=OFF >/dev/null
  ninja -C build-fuzz -j "$JOBS" $(cd fuzz && ls fuzz_*.cpp | sed 's/\.cpp$//')
  for src in fuzz/fuzz_*.cpp; do
    name=$(basename "$src" .cpp)
    seeds=fuzz/corpus/${name#fuzz_}
    work=$(mktemp -d)
    [ -d "$seeds" ] && cp -r "$seeds"/. "$work"/
    echo "fuzz: $name for ${FUZZ_SECONDS}s" >&2
    (cd "$work" && "$OLDPWD/build-fuzz/$name" -max_total_time="$FUZZ_SECONDS" -max_len=65536 \
        -print_final_stats=0 "$work" 2>fuzz.log) || { tail -50 "$work/fuzz.log"; echo "fuzz: $name FAILED"; exit 1; }
    rm -rf "$work"
  done
fi

ctest --test-dir build -j "$JOBS" --output-on-failure
