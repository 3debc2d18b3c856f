#!/usr/bin/env bash
# Creates (or refreshes) the project's virtual environment. Reinstalls only when pyproject.toml changed.
set -euo pipefail
venv="${1:-${ELASTIC_TRAINING_VENV:-$HOME/.cache/elastic-training/venv}}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
stamp="$venv/.elastic-training-stamp"
want="$(sha256sum "$root/pyproject.toml" | cut -c1-16) $root"
if [[ -x "$venv/bin/python" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
  echo "[venv] $venv is up to date"; exit 0
fi
[[ -x "$venv/bin/python" ]] || python3 -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --upgrade pip
# torch's default Linux wheel (CUDA build, ~3 GB) runs on the CPU too; pip's cache keeps later installs fast.
"$venv/bin/python" -m pip install --quiet -e "$root[dev]"
echo "$want" > "$stamp"
echo "[venv] $venv ready"
