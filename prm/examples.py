"""Training examples from finished runs: the steps and one label per step, split into train and validation by problem.

Label kinds (`--labels`):
- `hard`: the run's `labels` (its hard rule, e.g. MC > 0).
- `soft`: the run's `mc_values` as the probability that a step is right (Math-Shepherd's soft estimate); a step
  without an MC value (a verifier- or judge-only label) falls back to its hard label.
- `outcome`: an outcome reward model: only the last step is trained on, with the solution's final correctness.
- `exact`: the exact step truth of the arithmetic domain (annotators/exact.py), the ceiling a labeller can reach;
  rows outside that domain are skipped and counted.
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

LABEL_KINDS = ("hard", "soft", "outcome", "exact")
COLUMNS = ["id", "problem_id", "prompt", "completions", "labels", "mc_values", "outcome_correct"]
COLUMNS_EXACT = [*COLUMNS, "truncated_after_first_error"]


@dataclass(frozen=True)
class Example:
    """One solution: its prompt, its steps and one training target per step (None: not trained on)."""

    row_id: str
    problem_id: str
    prompt: str
    steps: tuple[str, ...]
    targets: tuple[float | None, ...]


def run_shards(run: str | Path) -> list[Path]:
    """A run's labelled shards (`RUN/data/train-*.parquet`), or a clear error naming where it looked."""
    folder = Path(run) / "data"
    shards = sorted(folder.glob("train-*.parquet"))
    if not shards:
        raise FileNotFoundError(f"no labelled shards at {folder / 'train-*.parquet'} (is {run} a finished run?)")
    return shards


def read_rows(runs: Iterable[str | Path], columns: list[str]) -> list[dict[str, Any]]:
    import pyarrow.parquet as pq

    rows: list[dict[str, Any]] = []
    for run in runs:
        for shard in run_shards(run):
            rows.extend(pq.read_table(shard, columns=columns).to_pylist())
    return rows


def targets_of(row: Mapping[str, Any], kind: str) -> tuple[float | None, ...] | None:
    """The per-step targets of one paths row for label kind `kind`, or None when the row cannot give them."""
    steps = list(row.get("completions") or [])
    if not steps:
        return None
    if kind == "hard":
        labels = row.get("labels")
        if labels is None or len(labels) != len(steps) or any(label is None for label in labels):
            return None
        return tuple(float(bool(label)) for label in labels)
    if kind == "soft":
        hard = targets_of(row, "hard")
        values = row.get("mc_values") or [None] * len(steps)
        if hard is None or len(values) != len(steps):
            return None
        return tuple(h if v is None or not math.isfinite(v) else float(v) for v, h in zip(values, hard, strict=True))
    if kind == "outcome":
        outcome = row.get("outcome_correct")
        return None if outcome is None else (*([None] * (len(steps) - 1)), float(bool(outcome)))
    if kind == "exact":
        from annotators.exact import exact_first_error_of

        complete = not row.get("truncated_after_first_error", False)
        first = exact_first_error_of(row["prompt"], steps, complete=complete)
        if first is None:
            return None
        return tuple(1.0 if first < 0 or i < first else 0.0 for i in range(len(steps)))
    raise ValueError(f"unknown label kind {kind!r}; choose one of {', '.join(LABEL_KINDS)}")


def examples_of(rows: Iterable[Mapping[str, Any]], kind: str, skipped: Counter | None = None) -> list[Example]:
    """Examples in row-id order (shards are hash-sharded, so order by id for the same bytes every time)."""
    out = []
    for row in sorted(rows, key=lambda r: (str(r["problem_id"]), str(r["id"]))):
        targets = targets_of(row, kind)
        if targets is None:
            if skipped is not None:
                skipped[f"no {kind} labels"] += 1
            continue
        out.append(Example(str(row["id"]), str(row["problem_id"]), row["prompt"], tuple(row["completions"]), targets))
    return out


def load_examples(runs: Iterable[str | Path], kind: str, skipped: Counter | None = None) -> list[Example]:
    if kind not in LABEL_KINDS:
        raise ValueError(f"unknown label kind {kind!r}; choose one of {', '.join(LABEL_KINDS)}")
    return examples_of(read_rows(runs, COLUMNS_EXACT if kind == "exact" else COLUMNS), kind, skipped)


def in_validation(problem_id: str, fraction: float, seed: int) -> bool:
    """Whether a problem is held out: a hash of (seed, problem id), so all its solutions fall on one side."""
    digest = hashlib.sha256(f"{seed}:{problem_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


def split_by_problem(examples: list[Example], fraction: float, seed: int) -> tuple[list[Example], list[Example]]:
    train = [e for e in examples if not in_validation(e.problem_id, fraction, seed)]
    validation = [e for e in examples if in_validation(e.problem_id, fraction, seed)]
    return train, validation
