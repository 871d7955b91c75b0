"""Label: evidence -> labelled-path rows, the base labels plus the columns each annotator adds.

Pure and deterministic: the same evidence and config give the same rows, with no model call, which is what a
relabel from stored evidence relies on (docs/design.md §3). Each annotator declares the columns it adds
(`verifier_columns`, `JUDGE_COLUMNS`, `PROGRESS_COLUMNS`); the labelled-path table's schema is derived from them
(`schemas.tables.paths_schema`), so a column cannot be written without being declared.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from annotators.evidence import ProblemEvidence
from annotators.judge import JudgeVote, judge_labels
from annotators.mc import LabelRule, label_paths
from annotators.omegaprm import OmegaPRMResult
from annotators.omegaprm_rows import no_path_reason
from annotators.progress import pav_advantages, rpe_labels
from annotators.verifiers.base import StepVerdict, Verifier
from schemas.tables import Column

_VERIFIER_CLASSES = {
    "arithmetic": ("annotators.verifiers.arithmetic", "ArithmeticVerifier"),
    "logic": ("annotators.verifiers.logic", "LogicVerifier"),
    "code": ("annotators.verifiers.code", "CodeVerifier"),
}

# Why an MC search left a problem without a path to label (the dead letter's reason).
_STATUS_REASONS = {
    "no_steps": "no solution had any step to label",
    "prefiltered_all_correct": "filtered: all sampled solutions were correct (search.prefilter)",
    "prefiltered_all_wrong": "filtered: all sampled solutions were wrong (search.prefilter)",
}


def verifier_columns(name: str) -> tuple[Column, ...]:
    """A verifier's (and the judge's) per-step verdicts (null: cannot check) and their reasons."""
    return (Column(f"{name}_labels", "bools"), Column(f"{name}_reasons", "strings"))


JUDGE_COLUMNS = (*verifier_columns("judge"), Column("judge_first_error", "int"))
PROGRESS_COLUMNS = (Column("pav_advantages", "floats"), Column("rpe_labels", "bools"))


@dataclass(frozen=True)
class LabelSetting:
    """What the label stage needs from the config: the hard-label rule and which annotators add columns."""

    rule: LabelRule
    verifiers: tuple[str, ...] = ()  # sorted names of the configured verifiers
    judge: bool = False
    progress: tuple[int, float] | None = None  # (pav_k, rpe_epsilon) when progress labels are on

    def columns(self) -> tuple[Column, ...]:
        """The columns the annotators add to a labelled path, in table order."""
        added = [column for name in self.verifiers for column in verifier_columns(name)]
        if self.judge:
            added.extend(JUDGE_COLUMNS)
        if self.progress is not None:
            added.extend(PROGRESS_COLUMNS)
        return tuple(added)


def make_verifier(name: str, options: Mapping[str, Any] | None = None) -> Verifier:
    """The verifier called `name` in the config's `annotators:` section, built with its options."""
    if name not in _VERIFIER_CLASSES:
        raise ValueError(f"unknown verifier {name!r} (known: {', '.join(sorted(_VERIFIER_CLASSES))})")
    module, cls = _VERIFIER_CLASSES[name]
    return getattr(importlib.import_module(module), cls)(dict(options or {}))


def base_rows(evidence: ProblemEvidence, rule: LabelRule) -> list[dict[str, Any]]:
    """The labelled paths before any annotator column: MC's per-step estimates under `rule`, or OmegaPRM's paths
    (its binary search decided their labels)."""
    if isinstance(evidence.search, OmegaPRMResult):
        return [dict(row) for row in evidence.search.paths]
    return label_paths(evidence.search, rule)


def no_path(evidence: ProblemEvidence) -> str:
    """Why a problem has no path to label (its label-stage dead letter's reason)."""
    if isinstance(evidence.search, OmegaPRMResult):
        return no_path_reason(evidence.search.root_mc)
    status = evidence.search.status
    return _STATUS_REASONS.get(status, f"no labelled path ({status})")


def label_rows(evidence: ProblemEvidence, setting: LabelSetting) -> list[dict[str, Any]]:
    """Every labelled path of the problem with the annotators' columns; [] when it has none (see `no_path`)."""
    rows = base_rows(evidence, setting.rule)
    if isinstance(evidence.search, OmegaPRMResult) and evidence.search.root_mc is not None:
        root = evidence.search.root_mc
    else:
        root = root_mc(rows)
    for row in rows:
        for name in setting.verifiers:
            attach_verdicts(row, name, evidence.verdicts[name][row["id"]])
        if setting.judge:
            attach_judge(row, evidence.critiques.get(row["id"]))
        if setting.progress is not None:
            attach_progress(row, root, *setting.progress)
    return rows


def attach_judge(row: dict[str, Any], vote: JudgeVote | None) -> None:
    """`judge_labels` (True before the judged first error, False on it, None after) and the vote's reasons."""
    n = len(row["completions"])
    first_error = vote.first_error if vote else None
    row["judge_labels"] = judge_labels(first_error, n)
    if vote is None:
        reason = "no judge evidence"
    elif first_error is None:
        reason = f"no verdict: {vote.n_unparseable}/{len(vote.critiques)} critiques unparseable"
    else:
        reason = f"vote {first_error} of {vote.parsed} ({vote.parser} parser)"
    row["judge_reasons"] = [reason] * n
    row["judge_first_error"] = first_error


def attach_verdicts(row: dict[str, Any], name: str, verdicts: Sequence[StepVerdict]) -> None:
    if len(verdicts) != len(row["completions"]):
        raise ValueError(f"{name}: {len(verdicts)} verdicts for {len(row['completions'])} steps")
    row[f"{name}_labels"] = [v.verdict for v in verdicts]
    row[f"{name}_reasons"] = [v.reason for v in verdicts]


def attach_progress(row: dict[str, Any], root_mc: float | None, pav_k: int, rpe_epsilon: float) -> None:
    """PAV advantages (Setlur et al. 2024, docs/labellers.md §5) and GenPRM relative-progress labels (§6.1)."""
    mc = row["mc_values"]
    row["pav_advantages"] = pav_advantages(mc, root_mc, pav_k)
    row["rpe_labels"] = rpe_labels(mc, root_mc, rpe_epsilon)


def root_mc(rows: list[dict[str, Any]]) -> float | None:
    """The question-level pass rate: the fraction of sampled solutions whose answer is right."""
    outcomes = [r["outcome_correct"] for r in rows if r.get("outcome_correct") is not None]
    return sum(outcomes) / len(outcomes) if outcomes else None
