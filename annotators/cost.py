"""Cost per labelled step under three countings of what a search labelled (docs/omegaprm.md, "Three countings").

What counts as a labelled step decides how cheap a search looks, so a benchmark reports all three:

- **emitted** (a): distinct labelled steps of the rows as emitted. A first-error path stops at its first error,
  so a search over an M-step rollout with the error at step j emits j steps.
- **decided** (b): distinct steps of the searched rollouts and of the correct rollouts whose hard label the rule
  "MC > 0 means correct" decides from the evidence, read monotonically: a step is True when a rollout reached the
  gold answer through it (a correct complete rollout, or a state measured at MC > 0 that extends it), False when
  it extends a state sampled at MC = 0 or ends a complete wrong solution. A search that located the first error of
  an M-step rollout at step j then decides all M steps: True before j, False from j on; a correct rollout decides
  all its steps True. The rule decides more than that (every rollout sampled from an MC = 0 state is False
  throughout), but those k continuations of a known error are not counted: no trainer needs them, and counting
  them would price a label below one completion.
- **measured** (c): distinct prefixes with a value of their own: OmegaPRM's tree nodes (the paper's annotations,
  soft MC) and the terminal states graded by their answer; for MC, every step that carries an MC value.

A step is (problem, steps through it), as `annotators.compare.unique_labelled_steps` counts rows. Pure functions:
an `OmegaPRMResult` (or its node and path rows) in, counts out; MC is counted from its labelled rows, which hold
every step of every solution it labelled.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

from annotators.compare import unique_labelled_steps
from annotators.omegaprm import OmegaPRMResult
from annotators.steps import split_steps

Splitter = Callable[[str], tuple[list[str], list[int]]]  # text -> (steps, step_ends)
COUNTINGS = ("emitted", "decided", "measured")


@dataclass(frozen=True)
class StepCounts:
    """Distinct labelled steps under each counting; they add up over problems (a step belongs to one problem)."""

    emitted: int = 0  # (a)
    decided: int = 0  # (b) = decided_true + decided_false
    measured: int = 0  # (c)
    decided_true: int = 0
    decided_false: int = 0
    conflicts: int = 0  # steps the evidence decides both ways (counted in no `decided`)

    def __add__(self, other: StepCounts) -> StepCounts:
        return StepCounts(**{f.name: getattr(self, f.name) + getattr(other, f.name) for f in fields(self)})

    def per_step(self, completions: int) -> dict[str, float | None]:
        """Completions per labelled step under each counting (None where nothing was labelled)."""
        counts = {name: getattr(self, name) for name in COUNTINGS}
        return {name: completions / count if count else None for name, count in counts.items()}


def total(counts: Iterable[StepCounts]) -> StepCounts:
    out = StepCounts()
    for count in counts:
        out = out + count
    return out


def omegaprm_step_counts(result: OmegaPRMResult, split: Splitter | None = None) -> StepCounts:
    """The three countings for one OmegaPRM result (its nodes, paths and pre-filter samples)."""
    return omegaprm_table_counts(result.problem_id, result.nodes, result.paths, result.prefilter, split)


def omegaprm_table_counts(
    problem_id: str,
    nodes: Sequence[Mapping[str, Any]],
    paths: Sequence[Mapping[str, Any]],
    prefilter: Sequence[Mapping[str, Any]] = (),
    split: Splitter | None = None,
) -> StepCounts:
    """The three countings from one problem's stored rows: `OMEGAPRM_NODES` nodes, emitted paths, pre-filter samples.

    `split` cuts a full solution text into steps for (b) (default: the auto splitter); with `cut="step"` it is the
    splitter the search used, so (a) is a subset of (b) with the same labels.
    """
    split = split or (lambda text: split_steps(text))
    decided = decided_steps(nodes, prefilter, split)
    true_steps = sum(label is True for label in decided.values())
    false_steps = sum(label is False for label in decided.values())
    return StepCounts(
        emitted=unique_labelled_steps(paths),
        decided=true_steps + false_steps,
        measured=sum(node["parent_id"] is not None for node in nodes),  # the root's empty prefix is no step
        decided_true=true_steps,
        decided_false=false_steps,
        conflicts=sum(label is None for label in decided.values()),
    )


def mc_step_counts(rows: Iterable[Mapping[str, Any]]) -> StepCounts:
    """The three countings for labelled rows of per-step MC (Math-Shepherd): (b) counts the steps with a label,
    (c) those with an MC value. MC labels every step of a solution, so the three mostly agree."""
    labelled: dict[tuple[Any, ...], bool] = {}
    measured: set[tuple[Any, ...]] = set()
    rows = list(rows)
    for row in rows:
        steps = list(row["completions"])
        mc_values = row.get("mc_values") or [None] * len(steps)
        for t, (label, mc) in enumerate(zip(row["labels"], mc_values, strict=True)):
            key = (row["problem_id"], *steps[: t + 1])
            if label is not None:
                labelled.setdefault(key, bool(label))
            if mc is not None:
                measured.add(key)
    true_steps = sum(labelled.values())
    return StepCounts(
        emitted=unique_labelled_steps(rows),
        decided=len(labelled),
        measured=len(measured),
        decided_true=true_steps,
        decided_false=len(labelled) - true_steps,
    )


def decided_steps(
    nodes: Sequence[Mapping[str, Any]], prefilter: Sequence[Mapping[str, Any]] = (), split: Splitter | None = None
) -> dict[tuple[str, ...], bool | None]:
    """Counting (b) itself: steps (through them) -> the label the rule decides, for every step of the searched
    (selected) rollouts and the correct complete rollouts that it decides; None where it decides both ways. In
    order: a prefix's own value (a measured node, else a complete rollout's grade), then True if a witness passes
    through it, then False if it extends a prefix sampled at MC = 0. All the evidence decides; only which steps
    are counted is limited."""
    split = split or (lambda text: split_steps(text))
    own: dict[str, bool] = {}  # prefix -> its own value: a measured node, else a complete rollout's grade
    witnesses: list[str] = []  # prefixes some rollout reached the gold answer through
    zeros: set[str] = set()  # prefixes measured at MC = 0 by sampling
    texts: list[str] = []
    for node in nodes:
        if node["parent_id"] is not None:
            own[node["prefix"]] = node["mc"] > 0
        if node["mc_source"] == "monte_carlo":
            (witnesses.append if node["mc"] > 0 else zeros.add)(node["prefix"])
    for prefix, rollout in [(n["prefix"], r) for n in nodes for r in n["rollouts"]] + [("", r) for r in prefilter]:
        full = prefix + rollout["text"]
        if rollout.get("selected"):
            texts.append(full)
        if rollout["finish_reason"] == "stop" and rollout["extracted"] is not None:
            own.setdefault(full, rollout["correct"] is True)  # a complete solution: its answer grades its end
            if rollout["correct"] is True:
                witnesses.append(full)
                texts.append(full)
    witnesses.sort()
    zero_lengths = sorted({len(z) for z in zeros})

    decided: dict[tuple[str, ...], bool | None] = {}
    for full in dict.fromkeys(texts):
        # Steps from the first measured zero on extend it (nothing after a wrong answer: it can be recovered from).
        first_zero = next((n for n in zero_lengths if full[:n] in zeros), None)
        steps, ends = split(full)
        for t, end in enumerate(ends):
            prefix = full[:end]
            label = own.get(prefix)
            if label is None and _is_prefix_of_any(prefix, witnesses):
                label = True
            if label is None and first_zero is not None and first_zero <= end:
                label = False
            if label is None:
                continue
            key = tuple(steps[: t + 1])
            decided[key] = label if decided.get(key, label) == label else None
    return decided


def _is_prefix_of_any(prefix: str, ordered: list[str]) -> bool:
    """Whether some string of the sorted list starts with `prefix` (they sort right after it)."""
    index = bisect.bisect_left(ordered, prefix)
    return index < len(ordered) and ordered[index].startswith(prefix)
