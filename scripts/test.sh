#!/usr/bin/env bash
# Sets up (first run only) and runs the test suite. Tests that need ../shared/data skip when it is absent.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --test
export VLLM_ENABLE_V1_MULTIPROCESSING=0 OMP_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false
exec .venv/bin/python -m pytest -q "$@"
