#!/usr/bin/env bash
# The GPU check (benchmarks/gpu_check.py): <= 8 minutes on one H100, figures in <out>/gpu_check.{json,md}.
#   bash benchmarks/gpu_check.sh [--dry] [--out DIR] [--budget S] [--only SECTIONS]
# On an offline GPU machine whose image lacks this project's pure-Python dependencies, copy the
# repository with kit/ (`make device-kit`) beside it: the kit is installed first when
# deepspeed/snakemake/bpo are not importable. Set PYTHON to choose the interpreter (default python3).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c "import deepspeed, snakemake, openai, starlette, uvicorn, bpo" >/dev/null 2>&1; then
  if [ -d kit ]; then
    echo "gpu_check: installing the device kit (kit/, no network, --no-deps: the image's torch stays)"
    "$PYTHON" -m pip install -q --no-index --no-deps --find-links kit/ kit/*.whl
  else
    echo "gpu_check: this python lacks the project's dependencies and there is no kit/ (make device-kit)" >&2
    exit 2
  fi
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
exec "$PYTHON" benchmarks/gpu_check.py "$@"
