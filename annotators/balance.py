"""Positive/negative balance: drop whole labelled solutions until the step-label ratio reaches a target.

Rule (deterministic, documented because it decides what a trainer sees):

- The ratio is positive steps / labelled steps over the kept rows; None labels are not counted.
- Positives in excess (ratio > target): all-positive rows (no False label) are the lever. They are dropped one by
  one in the order of ``blake2b(seed, row id)`` while the ratio is above the target, so the final ratio is at or
  just below the target (by at most one row's steps). Rows with a negative step are never dropped for this.
  Without any negative step nothing is dropped (the target is unreachable short of dropping everything).
- Negatives in excess (ratio < target): rows with a negative step whose own positive fraction is below the
  current ratio (each such drop raises it) are dropped in the same hash order while the ratio is below target.
- Only whole rows are dropped, so a row's labels are never changed; every dropped row carries ``drop_reason``.
  Kept and dropped rows come back in input order.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["balance", "drops", "positive_ratio", "row_key"]


def row_key(row: Mapping[str, Any]) -> str:
    """The row's ``id``, or a content hash of (problem_id, prompt, completions) when it has none."""
    if row.get("id"):
        return str(row["id"])
    payload = json.dumps([row.get("problem_id"), row.get("prompt"), list(row.get("completions") or [])])
    return hashlib.blake2b(payload.encode("utf-8", "surrogatepass"), digest_size=12).hexdigest()


def _counts(row: Mapping[str, Any]) -> tuple[int, int]:
    """(positive steps, labelled steps) of one row."""
    labels = [label for label in (row.get("labels") or []) if label is not None]
    return sum(1 for label in labels if label), len(labels)


def positive_ratio(rows: Sequence[Mapping[str, Any]]) -> float:
    """Positive steps / labelled steps over ``rows``; NaN when no step is labelled."""
    positives = labelled = 0
    for row in rows:
        p, n = _counts(row)
        positives += p
        labelled += n
    return positives / labelled if labelled else float("nan")


def _order(seed: int, key: str) -> bytes:
    return hashlib.blake2b(f"{seed}\x1f{key}".encode("utf-8", "surrogatepass"), digest_size=16).digest()


def drops(rows: Sequence[Mapping[str, Any]], target_positive_ratio: float, seed: int) -> dict[int, str]:
    """The rows to drop toward ``target_positive_ratio`` of positive steps, by index, with why (the module's rule)."""
    if not 0.0 < target_positive_ratio < 1.0:
        raise ValueError(f"target_positive_ratio must be in (0, 1), got {target_positive_ratio}")
    counts = [_counts(row) for row in rows]
    positives = sum(p for p, _ in counts)
    labelled = sum(n for _, n in counts)
    order = sorted(range(len(rows)), key=lambda index: _order(seed, row_key(rows[index])))
    drop: dict[int, str] = {}
    if positives < labelled and positives / labelled > target_positive_ratio:
        for index in order:
            p, n = counts[index]
            if positives / labelled <= target_positive_ratio:
                break
            if n and p == n:  # all-positive row: the lever
                positives, labelled = positives - p, labelled - n
                drop[index] = f"excess positives: all-positive row dropped toward {target_positive_ratio:g}"
    elif labelled and positives / labelled < target_positive_ratio:
        for index in order:
            p, n = counts[index]
            if positives / labelled >= target_positive_ratio:
                break
            if p < n < labelled and p * labelled < positives * n:  # own fraction below the ratio
                positives, labelled = positives - p, labelled - n
                drop[index] = f"excess negatives: row dropped toward {target_positive_ratio:g}"
    return drop


def balance(
    rows: Sequence[Mapping[str, Any]], target_positive_ratio: float, seed: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Drop whole rows (deterministically, by hash order) toward ``target_positive_ratio`` of positive steps.

    Returns ``(kept, dropped)`` as copies in input order; dropped rows have a ``drop_reason``.
    """
    drop = drops(rows, target_positive_ratio, seed)
    kept: list[dict[str, Any]] = []
    dropped: list[dict[str, Any]] = []
    for index, row in enumerate(rows):
        out = dict(row)
        if index in drop:
            out["drop_reason"] = f"balance: {drop[index]}"
            dropped.append(out)
        else:
            kept.append(out)
    return kept, dropped
