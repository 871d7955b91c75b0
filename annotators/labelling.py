"""Composes the annotators: base labelled paths + per-annotator columns (judge, verifiers) + progress columns.

Pure and deterministic: the same evidence and config give the same rows, with no model call, which is what a
relabel from stored evidence relies on (DESIGN.md, "Reruns").
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from annotators.judge import JudgeEvidence, judge_labels
from annotators.progress import pav_advantages, rpe_labels
from annotators.verifiers.base import StepVerdict, Verifier
from schemas.records import Completion, Problem, Solution

_VERIFIER_CLASSES = {
    "arithmetic": ("annotators.verifiers.arithmetic", "ArithmeticVerifier"),
    "logic": ("annotators.verifiers.logic", "LogicVerifier"),
    "code": ("annotators.verifiers.code", "CodeVerifier"),
}


def make_verifier(name: str, options: Mapping[str, Any] | None = None) -> Verifier:
    """The verifier called `name` in the config's `annotators:` section, built with its options."""
    if name not in _VERIFIER_CLASSES:
        raise ValueError(f"unknown verifier {name!r} (known: {', '.join(sorted(_VERIFIER_CLASSES))})")
    module, cls = _VERIFIER_CLASSES[name]
    return getattr(importlib.import_module(module), cls)(dict(options or {}))


def attach_judge(row: dict[str, Any], evidence: JudgeEvidence | None) -> None:
    """`judge_labels` (True before the judged first error, False on it, None after) and the vote's reasons."""
    n = len(row["completions"])
    first_error = evidence.first_error if evidence else None
    row["judge_labels"] = judge_labels(first_error, n)
    if evidence is None:
        reason = "no judge evidence"
    elif first_error is None:
        reason = f"no verdict: {evidence.n_unparseable}/{len(evidence.critiques)} critiques unparseable"
    else:
        reason = f"vote {first_error} of {evidence.parsed} ({evidence.parser} parser)"
    row["judge_reasons"] = [reason] * n
    row["judge_first_error"] = first_error


def attach_verdicts(row: dict[str, Any], name: str, verdicts: list[StepVerdict]) -> None:
    if len(verdicts) != len(row["completions"]):
        raise ValueError(f"{name}: {len(verdicts)} verdicts for {len(row['completions'])} steps")
    row[f"{name}_labels"] = [v.verdict for v in verdicts]
    row[f"{name}_reasons"] = [v.reason for v in verdicts]


def attach_progress(row: dict[str, Any], root_mc: float | None, pav_k: int, rpe_epsilon: float) -> None:
    """PAV advantages (Setlur et al., annotators.md §5) and GenPRM relative-progress labels (§6.1) from MC values."""
    mc = row["mc_values"]
    row["pav_advantages"] = pav_advantages(mc, root_mc, pav_k)
    row["rpe_labels"] = rpe_labels(mc, root_mc, rpe_epsilon)


def root_mc(rows: list[dict[str, Any]]) -> float | None:
    """The question-level pass rate: the fraction of sampled solutions whose answer is right."""
    outcomes = [r["outcome_correct"] for r in rows if r.get("outcome_correct") is not None]
    return sum(outcomes) / len(outcomes) if outcomes else None


@dataclass
class ProblemEvidence:
    """Everything expensive gathered for one problem: search evidence, base labelled paths, judge critiques."""

    problem: Problem
    method: str  # mc | omegaprm
    status: str  # ok, or why the problem has no labelled path
    solutions: list[Solution] = field(default_factory=list)
    completions: list[Completion] = field(default_factory=list)
    omegaprm: Any = None  # annotators.omegaprm.OmegaPRMResult for method omegaprm
    rows: list[dict[str, Any]] = field(default_factory=list)  # base labelled paths (PATHS columns)
    critiques: dict[str, JudgeEvidence] = field(default_factory=dict)  # by path id
    generated_tokens: int = 0
    root_mc: float | None = None  # question-level pass rate (progress labels); from the solutions when None
