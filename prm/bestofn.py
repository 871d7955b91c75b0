"""How well a process reward model ranks: best-of-N selection and first-error F1 (issue 17, item 2).

Pure functions over samples and scores: no torch, Beam or engine.

- Best-of-N: a problem has S policy samples, each a mapping with `answer` (the extracted final answer,
  normalised so equal answers compare equal, or None), `correct` (bool) and optional scores `prm_min` (the
  lowest step score), `prm_last` (the last step's score) and `orm` (an outcome model's score). For N in
  (4, 16, 64) the S samples are cut into S // N disjoint consecutive groups of N; each method picks one sample
  per group (or, for `majority` and `random`, an expected correctness) and a problem's accuracy is the mean over
  its groups. Methods: `prm_min`, `prm_last`, `orm` (the highest score; ties go to the lowest sample index, and an
  unscored sample ranks below every scored one), `majority` (the most common non-None answer; tied answers count
  as the mean correctness over them), `random` (the expected correctness of a uniform pick: the share correct),
  `oracle` (pass@N: any sample correct).
- Intervals: a percentile bootstrap over problems (the same resamples for every method, so differences are
  paired); `beats_majority` when the interval of (method - majority) lies above 0.
- Step level: a step is predicted wrong when its score is below a threshold; the first such step is the
  predicted first error, scored with ProcessBench's F1 (`annotators.evaluation.processbench_scores`).
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from annotators.evaluation import auroc, processbench_scores

__all__ = [
    "BOOTSTRAP_RESAMPLES",
    "DEFAULT_NS",
    "METHODS",
    "SCORE_METHODS",
    "best_of_n",
    "bootstrap",
    "first_error_from_scores",
    "group_correctness",
    "pick_by_score",
    "problem_accuracy",
    "step_level_scores",
    "step_truths",
    "within_problem_auroc",
]

DEFAULT_NS = (4, 16, 64)
SCORE_METHODS = ("prm_min", "prm_last", "orm")
METHODS = (*SCORE_METHODS, "majority", "random", "oracle")
BOOTSTRAP_RESAMPLES = 2000
CONFIDENCE = 0.95

Sample = Mapping[str, Any]


# ---------------------------------------------------------------- one group of N samples


def _valid(score: Any) -> bool:
    return score is not None and not math.isnan(float(score))


def pick_by_score(group: Sequence[Sample], key: str) -> int:
    """Index of the sample with the highest `key` score; ties (and a group with no score) go to the lowest index."""
    best_index, best_score = 0, -math.inf
    for index, sample in enumerate(group):
        score = sample.get(key)
        if _valid(score) and float(score) > best_score:  # strict: an equal later score never replaces the earlier
            best_index, best_score = index, float(score)
    return best_index


def majority_correctness(group: Sequence[Sample]) -> float:
    """Correctness of the most common non-None answer; a tie is the mean correctness over the tied answers."""
    counts = Counter(s["answer"] for s in group if s.get("answer") is not None)
    if not counts:
        return 0.0  # no answer to vote for: a majority vote has nothing to return
    top = max(counts.values())
    tied = [answer for answer, count in counts.items() if count == top]
    correct_of = {s["answer"]: bool(s["correct"]) for s in reversed(group) if s.get("answer") is not None}
    return sum(correct_of[answer] for answer in tied) / len(tied)


def group_correctness(group: Sequence[Sample], method: str) -> float:
    """1.0 / 0.0 for a picked sample, or the expected correctness for `majority` ties and `random`."""
    if not group:
        raise ValueError("an empty group has no pick")
    if method in SCORE_METHODS:
        return float(bool(group[pick_by_score(group, method)]["correct"]))
    if method == "majority":
        return majority_correctness(group)
    if method == "random":
        return sum(bool(s["correct"]) for s in group) / len(group)  # exact expectation, no RNG
    if method == "oracle":
        return float(any(bool(s["correct"]) for s in group))
    raise ValueError(f"unknown best-of-N method {method!r}; expected one of {', '.join(METHODS)}")


def problem_accuracy(samples: Sequence[Sample], method: str, n: int) -> float:
    """Mean correctness of `method` over the S // n disjoint consecutive groups of n samples of one problem."""
    groups = [samples[start : start + n] for start in range(0, len(samples) - n + 1, n)]
    if n < 1 or not groups:
        raise ValueError(f"best-of-{n} needs at least {n} samples, the problem has {len(samples)}")
    return sum(group_correctness(group, method) for group in groups) / len(groups)


# ---------------------------------------------------------------- over problems


def _percentiles(values: list[float]) -> tuple[float, float]:
    """The (2.5%, 97.5%) percentile interval of bootstrap means (nearest rank)."""
    ordered = sorted(values)
    tail = (1 - CONFIDENCE) / 2
    low = ordered[max(0, math.floor(tail * len(ordered)))]
    high = ordered[min(len(ordered) - 1, math.ceil((1 - tail) * len(ordered)) - 1)]
    return low, high


def resamples(n_problems: int, count: int, seed: int) -> list[list[int]]:
    """`count` bootstrap resamples of problem indices (with replacement), the same for every method."""
    rng = random.Random(seed)
    return [rng.choices(range(n_problems), k=n_problems) for _ in range(count)]


def bootstrap(values: Sequence[float], draws: list[list[int]]) -> dict[str, float]:
    """Mean of per-problem `values` and its percentile interval over the bootstrap `draws`."""
    if not values:
        return {"mean": math.nan, "low": math.nan, "high": math.nan}
    means = [sum(values[i] for i in draw) / len(draw) for draw in draws]
    low, high = _percentiles(means)
    return {"mean": sum(values) / len(values), "low": low, "high": high}


def best_of_n(
    problems: Sequence[Sequence[Sample]],
    ns: Sequence[int] = DEFAULT_NS,
    methods: Sequence[str] = METHODS,
    resample_count: int = BOOTSTRAP_RESAMPLES,
    seed: int = 0,
) -> dict[str, dict[str, dict[str, Any]]]:
    """`{str(N): {method: {mean, low, high, vs_majority: {mean, low, high}, beats_majority}}}` over problems.

    A score method no sample carries (no ORM given) is left out. `majority` has no `vs_majority` entry.
    """
    if not problems:
        raise ValueError("best-of-N needs at least one problem")
    present = [m for m in methods if m not in SCORE_METHODS or any(_valid(s.get(m)) for p in problems for s in p)]
    draws = resamples(len(problems), resample_count, seed)
    table: dict[str, dict[str, dict[str, Any]]] = {}
    for n in ns:
        accuracy = {m: [problem_accuracy(p, m, n) for p in problems] for m in present}
        majority = accuracy.get("majority") or [problem_accuracy(p, "majority", n) for p in problems]
        rows: dict[str, dict[str, Any]] = {}
        for method in present:
            row: dict[str, Any] = bootstrap(accuracy[method], draws)
            if method != "majority":
                differences = [a - b for a, b in zip(accuracy[method], majority, strict=True)]
                row["vs_majority"] = bootstrap(differences, draws)
                row["beats_majority"] = row["vs_majority"]["low"] > 0
            rows[method] = row
        table[str(n)] = rows
    return table


def within_problem_auroc(problems: Sequence[Sequence[Sample]], key: str = "prm_min") -> dict[str, Any]:
    """Mean over problems of the AUROC of `key` against correctness among one problem's own samples.

    What best-of-N needs: a score that ranks a problem's right samples above its wrong ones. A score that only
    knows which problems are easy separates right from wrong across problems and still picks at random within one.
    Problems whose samples are all right or all wrong have no such pair and are left out (counted).
    """
    values = [auroc([s.get(key) for s in p], [bool(s["correct"]) for s in p]) for p in problems]
    found = [v for v in values if not math.isnan(v)]
    return {"mean": sum(found) / len(found) if found else math.nan, "problems": len(found)}


# ---------------------------------------------------------------- step level


def first_error_from_scores(scores: Sequence[float | None], threshold: float = 0.5) -> int:
    """Index of the first step scored below `threshold`; -1 when none is. None/NaN scores are skipped."""
    for index, score in enumerate(scores):
        if _valid(score) and float(score) < threshold:
            return index
    return -1


def step_truths(first_error: int, n_steps: int) -> list[bool | None]:
    """Step truth from a first error: right before it, wrong at it, unknown after it (ProcessBench's view)."""
    if first_error < 0:
        return [True] * n_steps
    return [index < first_error if index <= first_error else None for index in range(n_steps)]


def step_level_scores(
    scores: Sequence[Sequence[float | None]], first_errors: Sequence[int], threshold: float = 0.5
) -> dict[str, Any]:
    """ProcessBench's acc_err, acc_cor and F1 of the thresholded first errors, plus the step AUROC of the scores."""
    if len(scores) != len(first_errors):
        raise ValueError(f"{len(scores)} score lists for {len(first_errors)} first errors")
    predictions = [first_error_from_scores(s, threshold) for s in scores]
    flat_scores: list[float] = []
    flat_truths: list[bool | None] = []
    for step_scores, first in zip(scores, first_errors, strict=True):
        flat_scores.extend(math.nan if s is None else float(s) for s in step_scores)
        flat_truths.extend(step_truths(first, len(step_scores)))
    return {
        **processbench_scores(predictions, list(first_errors)),
        "step_auroc": auroc(flat_scores, flat_truths),
        "threshold": threshold,
    }
