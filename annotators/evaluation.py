"""Offline label-quality metrics: ProcessBench first-error agreement and generic step-level scores.

Pure functions over predictions and truths, plus ``load_processbench`` (the one reader of an evaluation file).
docs/labellers.md §1.1 (metric) and §8 (how to use the evaluation data).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "auroc",
    "first_error_from_labels",
    "labels_from_first_error",
    "load_processbench",
    "processbench_scores",
    "step_accuracy",
]

_PROCESSBENCH_KEYS = ("id", "problem", "steps", "label")


def processbench_scores(preds: Sequence[int | None], labels: Sequence[int]) -> dict[str, float | int]:
    """ProcessBench's metric (run_eval.py, docs/labellers.md §1.1), as fractions rather than percents.

    ``acc_err`` = mean(pred == label) over samples with label != -1; ``acc_cor`` = mean(pred == -1) over samples
    with label == -1; ``f1`` = their harmonic mean. A None prediction never matches. An empty group gives NaN
    for its accuracy and for F1 (ProcessBench's ``np.mean([])``); both accuracies 0 gives F1 = 0 (ProcessBench
    would print NaN there, from 0/0).
    """
    if len(preds) != len(labels):
        raise ValueError(f"{len(preds)} predictions for {len(labels)} labels")
    err_matches = [pred == label for pred, label in zip(preds, labels, strict=True) if label != -1]
    cor_matches = [pred == -1 for pred, label in zip(preds, labels, strict=True) if label == -1]
    acc_err = sum(err_matches) / len(err_matches) if err_matches else math.nan
    acc_cor = sum(cor_matches) / len(cor_matches) if cor_matches else math.nan
    if math.isnan(acc_err) or math.isnan(acc_cor):
        f1 = math.nan
    elif acc_err + acc_cor == 0:
        f1 = 0.0
    else:
        f1 = 2 * acc_err * acc_cor / (acc_err + acc_cor)
    return {"acc_err": acc_err, "acc_cor": acc_cor, "f1": f1, "n_err": len(err_matches), "n_cor": len(cor_matches)}


# The offline copies of the benchmarks beside the repository (tests skip when they are absent).
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
DEFAULT_DATA = {
    "processbench": SHARED_DATA / "processbench" / "gsm8k.json",
    "prm800k": SHARED_DATA / "prm800k" / "phase1_test.jsonl",
}


def load_processbench(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a ProcessBench split (a JSON array, or JSON lines): ``id, generator, problem, steps, label, ...``.

    Raises ValueError naming the row when a required key is missing or ``label`` is not in ``[-1, len(steps))``.
    """
    text = Path(path).read_text(encoding="utf-8")
    stripped = text.lstrip()
    if stripped.startswith("["):
        rows = json.loads(stripped)
    else:
        rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    for position, row in enumerate(rows):
        missing = [key for key in _PROCESSBENCH_KEYS if key not in row]
        if missing:
            raise ValueError(f"{path}: row {position} lacks {missing}")
        label = row["label"]
        if not isinstance(label, int) or isinstance(label, bool) or not -1 <= label < len(row["steps"]):
            raise ValueError(f"{path}: row {row['id']} has label {label!r} for {len(row['steps'])} steps")
    return rows


def first_error_from_labels(labels: Sequence[bool | None]) -> int | None:
    """Index of the first False label; -1 when every label is True; None when a None comes before any False.

    A None before the first False leaves the first error undetermined; Nones after it are masked steps
    (ProcessBench/PRM800K semantics, docs/labellers.md §1.3) and do not matter. An empty list gives -1.
    """
    for index, label in enumerate(labels):
        if label is None:
            return None
        if not label:
            return index
    return -1


def labels_from_first_error(first_error: int | None, n_steps: int) -> list[bool | None]:
    """FoVer's step view of a first-error index (docs/labellers.md §8): True before it, False at it, None after.

    -1 gives all True; None (no verdict) gives all None.
    """
    if first_error is None:
        return [None] * n_steps
    if first_error == -1:
        return [True] * n_steps
    if not 0 <= first_error < n_steps:
        raise ValueError(f"first error {first_error} out of range for {n_steps} steps")
    return [True] * first_error + [False] + [None] * (n_steps - first_error - 1)


def step_accuracy(preds: Sequence[bool | None], truths: Sequence[bool | None]) -> float:
    """Fraction of steps with a known truth whose prediction equals it (a None prediction counts as wrong).

    NaN when no step has a known truth.
    """
    if len(preds) != len(truths):
        raise ValueError(f"{len(preds)} predictions for {len(truths)} truths")
    pairs = [(pred, truth) for pred, truth in zip(preds, truths, strict=True) if truth is not None]
    if not pairs:
        return math.nan
    return sum(1 for pred, truth in pairs if pred is not None and bool(pred) == bool(truth)) / len(pairs)


def auroc(scores: Sequence[float], truths: Sequence[bool]) -> float:
    """Area under the ROC curve by ranks (Mann-Whitney U), tied scores sharing their average rank.

    Pairs with a None truth or a None/NaN score are skipped; NaN when either class is empty.
    """
    if len(scores) != len(truths):
        raise ValueError(f"{len(scores)} scores for {len(truths)} truths")
    pairs = [
        (float(score), bool(truth))
        for score, truth in zip(scores, truths, strict=True)
        if truth is not None and score is not None and not math.isnan(float(score))
    ]
    n_pos = sum(1 for _, truth in pairs if truth)
    n_neg = len(pairs) - n_pos
    if n_pos == 0 or n_neg == 0:
        return math.nan
    pairs.sort(key=lambda pair: pair[0])
    rank_sum_pos = 0.0
    start = 0
    while start < len(pairs):
        end = start
        while end + 1 < len(pairs) and pairs[end + 1][0] == pairs[start][0]:
            end += 1
        average_rank = (start + end) / 2 + 1  # ranks are 1-based
        rank_sum_pos += average_rank * sum(1 for _, truth in pairs[start : end + 1] if truth)
        start = end + 1
    return (rank_sum_pos - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def prm800k_pairs(path: Path) -> Iterator[tuple[str, list[str], str, int]]:
    """(question, previous steps, rated step, rating) for every rated completion of PRM800K phase 1."""
    for line in Path(path).read_text().splitlines():
        if not line.strip():
            continue
        record = json.loads(line)
        question = record["question"]["problem"]
        previous: list[str] = []
        for step in record["label"]["steps"]:
            for completion in step.get("completions") or []:
                if completion.get("rating") is not None:
                    yield question, list(previous), completion["text"], int(completion["rating"])
            chosen = step.get("chosen_completion")
            if chosen is not None:
                previous.append(step["completions"][chosen]["text"])
            elif step.get("human_completion") is not None:
                human = step["human_completion"]
                previous.append(human["text"] if isinstance(human, dict) else str(human))
            else:
                break
