"""Exact step truth for the arithmetic domain, and how far other labels agree with it.

The tiny model's steps (`Step k: a op b=c`) can be checked exactly (`domains.arithmetic`), which makes the
demo problems a label-quality benchmark: the MC (or OmegaPRM, judge, ...) first error of a solution is compared
with its exact first arithmetic error.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

from annotators.evaluation import step_accuracy
from domains.arithmetic import exact_first_error, gold_solution, parse_expression
from domains.arithmetic import split_steps as gold_steps

_QUESTION_RE = re.compile(r"^\s*Q:\s*(?P<expression>[0-9+\-* ]{1,200})=\?\s*$")


def arithmetic_expression(question: str) -> str | None:
    """`9*9+24-7` from `Q: 9*9+24-7=?`, or None when the question is not of the arithmetic domain."""
    match = _QUESTION_RE.match(question)
    if not match:
        return None
    expression = match.group("expression").replace(" ", "")
    try:
        parse_expression(expression)
    except ValueError:
        return None
    return expression


def exact_first_error_of(question: str, steps: list[str], complete: bool = True) -> int | None:
    """The exact first error of a solution (-1 when fully right), or None outside the arithmetic domain.

    `complete=False` is for a path cut after its labelled first error (OmegaPRM): the missing tail is not an
    error, so the gold continuation is appended before checking and only the given steps can be the first error.
    """
    expression = arithmetic_expression(question)
    if expression is None:
        return None
    if complete:
        return exact_first_error(expression, steps)
    tail = gold_steps(gold_solution(expression))[len(steps) :]
    first = exact_first_error(expression, [*steps, *tail])
    return first if first < len(steps) else -1


def row_agreement(row: Mapping[str, Any], key: str = "first_error_index") -> tuple[int, str, bool] | None:
    """(chain length, "erroneous" or "correct", whether `row[key]` is the exact first error) of one labelled row,
    or None outside the arithmetic domain."""
    expression = arithmetic_expression(row["prompt"])
    if expression is None:
        return None
    exact = exact_first_error_of(
        row["prompt"], list(row["completions"]), complete=not row.get("truncated_after_first_error", False)
    )
    return len(parse_expression(expression)[1]), "erroneous" if exact >= 0 else "correct", row[key] == exact


def first_error_agreement(rows: Iterable[Mapping[str, Any]], key: str = "first_error_index") -> dict[str, Any]:
    """How often `row[key]` equals the exact first error, overall and by chain length (operations).

    Rows outside the arithmetic domain are skipped and counted. Also splits by whether the solution is
    exactly right (-1) or has an error, since an all-correct labeller scores well on the first kind alone.
    """
    by_length: dict[int, list[int]] = defaultdict(lambda: [0, 0])
    by_kind: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    skipped = 0
    for row in rows:
        scored = row_agreement(row, key)
        if scored is None:
            skipped += 1
            continue
        length, kind, agree = scored
        for tally in (by_length[length], by_kind[kind]):
            tally[0] += int(agree)
            tally[1] += 1
    total = [sum(t[0] for t in by_length.values()), sum(t[1] for t in by_length.values())]
    return {
        "agreement": total[0] / total[1] if total[1] else None,
        "n": total[1],
        "by_chain_length": {n: {"agreement": a / c, "n": c} for n, (a, c) in sorted(by_length.items())},
        "by_kind": {k: {"agreement": a / c, "n": c} for k, (a, c) in sorted(by_kind.items())},
        "skipped": skipped,
    }


def exact_quality(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Every annotator of an arithmetic-domain run against the exact step truth."""
    rows = [r for r in rows if arithmetic_expression(r["prompt"]) is not None]
    if not rows:
        return {}
    columns = {"mc": "labels"} | {
        k[: -len("_labels")]: k for k in rows[0] if k.endswith("_labels") and k not in ("rpe_labels",)
    }
    out: dict[str, Any] = {"n_paths": len(rows)}
    for name, column in sorted(columns.items()):
        firsts = []
        preds, truths = [], []
        for r in rows:
            labels = r[column]
            firsts.append({**r, "_first": next((i for i, v in enumerate(labels) if v is False), -1)})
            first = exact_first_error_of(
                r["prompt"], list(r["completions"]), complete=not r.get("truncated_after_first_error", False)
            )
            truth = [first < 0 or i < first for i in range(len(labels))]
            for p, t in zip(labels, truth, strict=True):
                if p is not None:
                    preds.append(p)
                    truths.append(t)
        agreement = first_error_agreement(firsts, key="_first")
        out[name] = {
            "first_error_agreement": round(agreement["agreement"], 4) if agreement["agreement"] is not None else None,
            "by_chain_length": {str(k): round(v["agreement"], 4) for k, v in agreement["by_chain_length"].items()},
            "step_accuracy": round(step_accuracy(preds, truths), 4) if preds else None,
            "steps_scored": len(preds),
        }
    return out
