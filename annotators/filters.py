"""Filters behind one contract, as datatrove's filters: `filter(row) -> None (keep) | Drop(kind, detail)`.

A filter looks at one labelled path and keeps it, or drops it with a kind (`consensus`, `balance`) and a detail;
the dropped row's `drop_reason` is `"<kind>: <detail>"`. A filter may record its decision in the row's `meta`
(consensus does, for kept and dropped rows alike). A filter whose decision depends on every row of the run
(balance) says so (`needs_all_rows`) and is `prepare`d with all of them before it filters any.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from annotators.balance import drops, row_key
from annotators.consensus import ConsensusConfig, consensus, first_errors, update_meta, verifier_flags


@dataclass(frozen=True)
class Drop:
    """Why a filter dropped a row."""

    kind: str
    detail: str

    @property
    def reason(self) -> str:
        return f"{self.kind}: {self.detail}"


class RowFilter(Protocol):
    kind: str
    needs_all_rows: bool

    def prepare(self, rows: Sequence[Mapping[str, Any]]) -> None: ...

    def filter(self, row: dict[str, Any]) -> Drop | None: ...


class ConsensusFilter:
    """Keeps a path only when its annotators agree on the first error, and its own labels agree with them
    (docs/labellers.md §1.3); records `{first_error, rule, reason}` under `meta[config.meta_key]`."""

    kind = "consensus"
    needs_all_rows = False

    def __init__(self, config: ConsensusConfig):
        self.config = config

    def prepare(self, rows: Sequence[Mapping[str, Any]]) -> None:
        pass

    def filter(self, row: dict[str, Any]) -> Drop | None:
        config = self.config
        keep, reason, first_error = consensus(
            first_errors(row, config.annotators, config.abstaining), verifier_flags(row, config.veto), config
        )
        own = row.get("first_error_index")
        if keep and own is not None and int(own) != first_error:
            keep, reason = False, f"labels disagree with consensus: first_error_index={own}, consensus={first_error}"
        row["meta"] = update_meta(row, {config.meta_key: {"first_error": first_error, "rule": config.rule,
                                                          "reason": reason}})["meta"]  # fmt: skip
        return None if keep else Drop(self.kind, reason)


class BalanceFilter:
    """Drops whole paths toward a target share of positive steps (`annotators.balance`), decided over the run."""

    kind = "balance"
    needs_all_rows = True

    def __init__(self, target_positive_ratio: float, seed: int):
        self.target = target_positive_ratio
        self.seed = seed
        self._drops: dict[str, str] = {}

    def prepare(self, rows: Sequence[Mapping[str, Any]]) -> None:
        self._drops = {row_key(rows[i]): detail for i, detail in drops(rows, self.target, self.seed).items()}

    def filter(self, row: dict[str, Any]) -> Drop | None:
        detail = self._drops.get(row_key(row))
        return None if detail is None else Drop(self.kind, detail)


def apply(
    rows: Sequence[Mapping[str, Any]], row_filter: RowFilter
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(kept, dropped) copies of `rows` in input order; dropped copies carry `drop_reason`."""
    copies = [dict(row) for row in rows]
    row_filter.prepare(copies)
    kept: list[dict[str, Any]] = []
    dropped: list[dict[str, Any]] = []
    for row in copies:
        drop = row_filter.filter(row)
        if drop is None:
            kept.append(row)
        else:
            row["drop_reason"] = drop.reason
            dropped.append(row)
    return kept, dropped


def filter_rows(
    rows: Iterable[Mapping[str, Any]], config: ConsensusConfig
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Consensus over `rows`: (kept, dropped) copies; a row is kept only when its own labels (`first_error_index`)
    agree with the consensus first error, so under "majority" a row whose training labels are in the minority is
    dropped rather than kept with labels the consensus rejects."""
    return apply(list(rows), ConsensusFilter(config))
