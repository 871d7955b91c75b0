#!/usr/bin/env bash
# Sets up (first run only) and runs the embedded default: the tiny model on generated problems, CPU, offline.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/python run.py demo "$@"
