#!/usr/bin/env bash
# The trainer's manual GPU check (CI has no GPU; docs/trainer.md, "GPU check"). Run from the repository root on a
# machine with a CUDA GPU and torch; this project need not be installed:
#
#   bash hack/gpu-check.sh            # log in $OUT/log (OUT defaults to /tmp/gpu-check)
#
# It prints the GPU and torch versions, runs the trainer unit tests and the CUDA tests (tests/trainer/test_gpu.py),
# then trains the digits example once on the CPU and once on the GPU, one process and under torchrun, for the
# accuracy and steps/s figures. Exit status: the tests'.
#
# When the machine's Python has no pydantic (the contract needs it), the wheels in .whl/ (not committed) are unpacked
# into a private directory first. For a Python 3.12 x86-64 machine without network, fetch them beforehand with
#   pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_17_x86_64 -d .whl pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0 \
#     typing-inspection==0.4.5 typing-extensions==4.16.0
set -uo pipefail
OUT=${OUT:-/tmp/gpu-check}
PY=${PYTHON:-python3}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
export PYTHONPATH="$PWD/trainer_image/src:$PWD${PYTHONPATH:+:$PYTHONPATH}"

digits() { # name, then the command prefix and flags; prints the --result JSON
  local name=$1
  shift
  local t0=$SECONDS
  if timeout 120 "$@" --result "$OUT/$name.json" >"$OUT/$name.out" 2>&1; then
    echo "$name ($((SECONDS - t0)) s wall): $(cat "$OUT/$name.json")"
  else
    echo "$name FAILED"
    tail -20 "$OUT/$name.out"
  fi
}

main() {
  if ! "$PY" -c 'import pydantic' 2>/dev/null && compgen -G ".whl/*.whl" >/dev/null; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/gpu-check-site \
      .whl/*.whl || return 1
    export PYTHONPATH="$PYTHONPATH:/tmp/gpu-check-site"
  fi
  echo "== machine"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || echo "nvidia-smi: none"
  echo "cpus: $(nproc)"
  "$PY" -c 'import sys, torch, pydantic
print("python", sys.version.split()[0], "torch", torch.__version__, "cuda", torch.version.cuda,
      "available", torch.cuda.is_available(), "gpus", torch.cuda.device_count(), "pydantic", pydantic.VERSION)
print("nccl", torch.cuda.nccl.version() if torch.cuda.is_available() else None)'

  echo "== tests: tests/unit/trainer tests/trainer/test_gpu.py"
  timeout 300 "$PY" -m pytest -q -p no:cacheprovider --durations=8 tests/unit/trainer tests/trainer/test_gpu.py
  local rc=$?
  echo "pytest exit status: $rc"

  echo "== figures: digits with the defaults (15 epochs, global batch 64; steps/s over the training loop)"
  local run=("$PY" -m torch.distributed.run --nproc-per-node 1 --master-port 29533)
  digits digits-cpu "$PY" -m elastic_trainer.examples.digits --device cpu
  digits torchrun-cpu-gloo "${run[@]}" -m elastic_trainer.examples.digits --device cpu
  if "$PY" -c 'import sys, torch; sys.exit(not torch.cuda.is_available())'; then
    digits digits-cuda "$PY" -m elastic_trainer.examples.digits --device cuda
    digits torchrun-cuda-nccl "${run[@]}" -m elastic_trainer.examples.digits --device cuda
  else
    echo "no CUDA: GPU figures skipped"
  fi
  return $rc
}

main 2>&1 | tee "$OUT/log"
