#!/usr/bin/env bash
# Installs zebra's build dependencies (Debian 12 packages) and builds it into build/.
#   scripts/setup.sh              system packages + Release build
#   scripts/setup.sh --reference  also the Python virtualenv (.venv) for the fixture scripts (PyTorch etc.)
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(build-essential cmake ninja-build pkg-config git python3 python3-venv python3-pip
          libopenblas-openmp-dev liblapacke-dev nlohmann-json3-dev libcli11-dev libpcre2-dev
          libgtest-dev libgmock-dev libbenchmark-dev clang libclang-rt-14-dev)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}" >&2
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ "${1:-}" = "--reference" ]; then
  [ -x .venv/bin/python ] || python3 -m venv .venv
  .venv/bin/pip install -q -r scripts/reference/requirements.txt
fi

cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
ninja -C build -j "$(nproc)" zebra
echo "setup: built build/zebra" >&2
