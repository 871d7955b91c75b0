"""Are two runs the same data? Compares every shard, filtered row file, evidence file and dead-letter file byte for
byte, and the manifests with what a rerun may change set aside (timings, the code version, engine seconds).

    .venv/bin/python bench/compare_runs.py RUN_A RUN_B        # two run folders (schema_v*/cfg_*/)
    .venv/bin/python bench/compare_runs.py ROOT_A ROOT_B       # two output roots holding the same runs by name

Used to show that a restructuring changed no output (docs/architecture.md, "Proof of no change"). Exit 1 on any
difference.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

COMPARED = ("data", "filtered", "evidence", "dead_letters")
VOLATILE = {("timings",), ("code_version",), ("engine", "engine_seconds"), ("engine", "engine_tokens_per_second")}


def _strip(value, path=()):
    if isinstance(value, dict):
        return {k: _strip(v, (*path, k)) for k, v in value.items() if (*path, k) not in VOLATILE}
    return value


def _files(run: Path) -> set[Path]:
    return {p.relative_to(run) for folder in COMPARED for p in (run / folder).rglob("*") if p.is_file()}


def compare(a: Path, b: Path) -> list[str]:
    """The differences between two run folders (empty when they hold the same data)."""
    problems = []
    files_a, files_b = _files(a), _files(b)
    problems += [f"only in one run: {f}" for f in sorted(map(str, files_a ^ files_b))]
    problems += [f"differs: {f}" for f in sorted(files_a & files_b) if (a / f).read_bytes() != (b / f).read_bytes()]
    ma, mb = (_strip(json.loads((run / "manifest.json").read_text())) for run in (a, b))
    problems += [f"manifest key differs: {k}" for k in sorted(set(ma) | set(mb)) if ma.get(k) != mb.get(k)]
    print(f"{a.name}: {len(files_a & files_b)} files compared, manifest compared (timings and code version aside): "
          f"{'identical' if not problems else f'{len(problems)} differences'}")  # fmt: skip
    return problems


def _runs(root: Path) -> dict[str, Path]:
    if (root / "manifest.json").is_file():
        return {root.name: root}
    return {m.parent.relative_to(root).parts[0]: m.parent for m in sorted(root.glob("*/schema_v*/cfg_*/manifest.json"))}


def main() -> int:
    a, b = (Path(arg) for arg in sys.argv[1:3])
    runs_a, runs_b = _runs(a), _runs(b)
    if len(runs_a) == 1 and len(runs_b) == 1:
        pairs = [(next(iter(runs_a.values())), next(iter(runs_b.values())))]
    else:
        pairs = [(runs_a[name], runs_b[name]) for name in sorted(runs_a) if name in runs_b]
        if set(runs_a) != set(runs_b):
            print(f"runs in one root only: {sorted(set(runs_a) ^ set(runs_b))}")
            return 1
    problems = [p for run_a, run_b in pairs for p in compare(run_a, run_b)]
    for problem in problems:
        print(" ", problem)
    print("IDENTICAL" if not problems else f"{len(problems)} DIFFERENCES")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
