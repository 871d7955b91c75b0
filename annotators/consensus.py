"""Consensus filtering between annotators, with cheap verifiers as vetoes (docs/labellers.md §0, §1.2, §1.3, §7).

The Lessons recipe (Zhang et al., arXiv 2501.07301) keeps a labelled solution only when the MC first error and
the judge's first error agree (-1 == -1 counts as agreement). A cheap verifier either vetoes (a flag before the
agreed first error drops the row) or votes as an abstaining annotator: its None on a
step means "not checkable", so its first error is its first flag, -1 when it checked steps and flagged none, and
None only when it checked nothing. Every drop carries its reason.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from annotators.evaluation import first_error_from_labels

__all__ = [
    "ConsensusConfig",
    "consensus",
    "first_errors",
    "retention_by_annotator",
    "retention_by_source",
    "update_meta",
    "verifier_flags",
]

_RULES = ("all", "majority")


@dataclass(frozen=True)
class ConsensusConfig:
    """Which annotators must agree, how, and which verifiers may veto.

    ``annotators``: names compared; ``"mc"`` is the row's own ``first_error_index``, any other name ``n`` is read
    from the ``n_labels`` column. ``rule``: ``"all"`` (every annotator has a verdict and they are equal) or
    ``"majority"`` (a first error held by more than half of ``annotators``; a missing verdict is a non-vote).
    ``veto``: verifier names whose ``<name>_labels`` flag (first False) before the consensus first error drops
    the row. ``abstaining``: annotators whose None verdict on a step is an abstention, not an undetermined first
    error (cheap verifiers: see ``first_errors``).
    """

    annotators: tuple[str, ...] = ("mc", "judge")
    rule: str = "all"
    veto: tuple[str, ...] = ()
    abstaining: tuple[str, ...] = ()
    meta_key: str = field(default="consensus")

    def __post_init__(self) -> None:
        object.__setattr__(self, "annotators", tuple(self.annotators))
        object.__setattr__(self, "veto", tuple(self.veto))
        object.__setattr__(self, "abstaining", tuple(self.abstaining))
        if self.rule not in _RULES:
            raise ValueError(f"consensus rule must be one of {_RULES}, got {self.rule!r}")
        if not self.annotators:
            raise ValueError("consensus needs at least one annotator")
        if len(set(self.annotators)) != len(self.annotators):
            raise ValueError(f"duplicate annotators in {self.annotators}")


def first_errors(
    row: Mapping[str, Any], names: Iterable[str] | None = None, abstaining: Iterable[str] = ()
) -> dict[str, int | None]:
    """First error per annotator read from a labelled-path row: -1 = none, None = undetermined.

    ``mc`` is ``first_error_index``; another annotator ``n`` is the first False of ``n_labels`` (all True: -1;
    a None before any False, or no such column: None). An ``abstaining`` annotator (a verifier that checks only
    some steps) skips its None steps: its first flag, -1 when it checked a step and flagged none, None when it
    checked nothing. ``names`` defaults to ``mc`` plus every ``*_labels`` column of the row.
    """
    abstaining = set(abstaining)
    if names is None:
        names = ["mc"] + sorted(key[: -len("_labels")] for key in row if key.endswith("_labels") and key != "_labels")
    out: dict[str, int | None] = {}
    for name in names:
        if name == "mc":
            value = row.get("first_error_index")
            out[name] = None if value is None else int(value)
        else:
            labels = row.get(f"{name}_labels")
            if labels is None:
                out[name] = None
            elif name in abstaining:
                out[name] = _verifier_first_error(list(labels))
            else:
                out[name] = first_error_from_labels(list(labels))
    return out


def _verifier_first_error(labels: Sequence[bool | None]) -> int | None:
    """A partial checker's vote: its first flag, -1 when it checked a step and flagged none, None if it checked none."""
    flagged = next((index for index, verdict in enumerate(labels) if verdict is False), None)
    if flagged is not None:
        return flagged
    return -1 if any(verdict is True for verdict in labels) else None


def verifier_flags(row: Mapping[str, Any], names: Iterable[str]) -> dict[str, int]:
    """First step each verifier flagged (first False of ``<name>_labels``; None verdicts are skipped), or -1."""
    flags: dict[str, int] = {}
    for name in names:
        labels = row.get(f"{name}_labels") or []
        flags[name] = next((index for index, verdict in enumerate(labels) if verdict is False), -1)
    return flags


def _agreed(row_first_errors: Mapping[str, int | None], config: ConsensusConfig) -> tuple[int | None, str]:
    """The consensus first error under the rule, or None with the reason it has none."""
    values = {name: row_first_errors.get(name) for name in config.annotators}
    missing = [name for name, value in values.items() if value is None]
    described = ", ".join(f"{name}={value}" for name, value in values.items())
    if config.rule == "all":
        if missing:
            return None, f"missing verdict: {', '.join(missing)}"
        if len(set(values.values())) > 1:
            return None, f"disagree: {described}"
        return next(iter(values.values())), f"agree: {described}"
    counts: dict[int, int] = {}
    for value in values.values():
        if value is not None:
            counts[value] = counts.get(value, 0) + 1
    winners = [value for value, count in counts.items() if 2 * count > len(config.annotators)]
    if not winners:
        suffix = f" (missing: {', '.join(missing)})" if missing else ""
        return None, f"no majority: {described}{suffix}"
    return winners[0], f"majority: {described}"


def consensus(
    row_first_errors: Mapping[str, int | None],
    verifier_flags: Mapping[str, int],
    config: ConsensusConfig,
) -> tuple[bool, str, int | None]:
    """Keep or drop one labelled solution: ``(keep, reason, consensus first error)``.

    A verifier in ``config.veto`` that flagged step j drops the row when j comes before the consensus first
    error k (j < k, or any flag when k == -1); a flag at k agrees and a flag after k is on a masked step.
    """
    first_error, reason = _agreed(row_first_errors, config)
    if first_error is None:
        return False, reason, None
    for name in config.veto:
        flagged = verifier_flags.get(name, -1)
        if flagged is not None and flagged >= 0 and (first_error == -1 or flagged < first_error):
            return False, f"veto: {name} flags step {flagged} before consensus first error {first_error}", first_error
    return True, reason, first_error


def update_meta(row: Mapping[str, Any], updates: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of the row with ``updates`` merged into ``meta``; ``meta`` stays a JSON string if it was one."""
    out = dict(row)
    meta = row.get("meta")
    if isinstance(meta, str):
        try:
            loaded = json.loads(meta) if meta else {}
        except json.JSONDecodeError:
            loaded = {"unparsed_meta": meta}
        if not isinstance(loaded, dict):
            loaded = {"unparsed_meta": loaded}
        loaded.update(updates)
        out["meta"] = json.dumps(loaded, sort_keys=True)
    else:
        out["meta"] = {**(meta or {}), **updates}
    return out


def _reason_kind(reason: str) -> str:
    """The reason's category: the text before its first ``:`` after any stage prefix ("consensus: veto: ...")."""
    parts = [part.strip() for part in reason.split(":")]
    return ": ".join(parts[:2]) if len(parts) > 2 else parts[0]


def _tally(kept: int, dropped: int, reasons: Mapping[str, int]) -> dict[str, Any]:
    total = kept + dropped
    return {
        "kept": kept,
        "dropped": dropped,
        "total": total,
        "retention": kept / total if total else 0.0,
        "drop_reasons": dict(sorted(reasons.items())),
    }


def retention_by_source(kept: Sequence[Mapping[str, Any]], dropped: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Retention per ``source`` and overall, with drop counts per reason kind (docs/labellers.md §1.3: log it).

    Returns ``{"sources": {source: {kept, dropped, total, retention, drop_reasons}}, "overall": {...}}``.
    """
    per_source: dict[str, list[Any]] = {}
    overall_reasons: dict[str, int] = {}
    for row in kept:
        per_source.setdefault(str(row.get("source", "")), [0, 0, {}])[0] += 1
    for row in dropped:
        entry = per_source.setdefault(str(row.get("source", "")), [0, 0, {}])
        entry[1] += 1
        kind = _reason_kind(str(row.get("drop_reason", "unknown")))
        entry[2][kind] = entry[2].get(kind, 0) + 1
        overall_reasons[kind] = overall_reasons.get(kind, 0) + 1
    return {
        "sources": {source: _tally(*entry) for source, entry in sorted(per_source.items())},
        "overall": _tally(len(kept), len(dropped), overall_reasons),
    }


def retention_by_annotator(rows: Iterable[Mapping[str, Any]], config: ConsensusConfig) -> dict[str, dict[str, Any]]:
    """Per annotator other than ``mc``: how often its first error equals the row's own (MC) first error.

    ``rows`` are kept and dropped rows together. ``retention`` is the share that consensus between MC and that
    annotator alone would keep (before vetoes): it names the annotator that keeps nothing.
    Returns ``{name: {agree, disagree, abstain, total, retention}}``.
    """
    names = [name for name in config.annotators if name != "mc"]
    tallies = {name: {"agree": 0, "disagree": 0, "abstain": 0} for name in names}
    for row in rows:
        own = row.get("first_error_index")
        for name, value in first_errors(row, names, config.abstaining).items():
            if value is None:
                kind = "abstain"
            else:
                kind = "agree" if own is not None and int(own) == value else "disagree"
            tallies[name][kind] += 1
    out = {}
    for name, tally in tallies.items():
        total = sum(tally.values())
        out[name] = {**tally, "total": total, "retention": round(tally["agree"] / total, 4) if total else None}
    return out
