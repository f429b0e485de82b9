#!/usr/bin/env bash
# Installs mxlens's Debian build dependencies (apt-get) and builds it in Release into build/.
# Usage: ./scripts/setup.sh [extra cmake args...]
# Environment: MXLENS_SKIP_APT=1 skips the package install; BUILD_DIR overrides build/.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ "${MXLENS_SKIP_APT:-0}" != 1 ]]; then
  mapfile -t pkgs < <(grep -v '^\s*#' scripts/debian-packages.txt | grep -v '^\s*$')
  missing=()
  for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if ((${#missing[@]})); then
    SUDO=""
    [[ $(id -u) -ne 0 ]] && SUDO="sudo"
    echo "setup: installing ${missing[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
  fi
fi

# The CUDA backend builds when nvcc is found (CUDA 13 lives in /usr/local/cuda on our machines).
if [[ -z "${CUDACXX:-}" && -x /usr/local/cuda/bin/nvcc ]]; then export CUDACXX=/usr/local/cuda/bin/nvcc; fi

BUILD_DIR=${BUILD_DIR:-build}
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release "$@"
cmake --build "$BUILD_DIR" -j "$(nproc)"
