"""Filter: labelled paths -> kept paths and filtered ones, every filter behind one contract (`annotators.filters`).

Row filters (consensus) decide each path alone; a filter that needs every row of the run (balance) sees them in one
group, which fits one worker at the scales balance is used. A path a filter drops is written to `filtered/` with
its `drop_reason`; a path a filter raises on is a filter-stage dead letter.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import apache_beam as beam
from apache_beam.metrics import Metrics

from annotators.consensus import ConsensusConfig
from annotators.filters import BalanceFilter, ConsensusFilter, RowFilter, apply
from schemas.config import Config
from transforms.dead_letters import contain, contain_group
from transforms.read import DEAD

FILTERED = "filtered"


def consensus_config(config: Config) -> ConsensusConfig | None:
    c = config.filters.consensus
    if not c.enabled:
        return None
    # A configured verifier that votes abstains on the steps it cannot check (its None is no verdict on the row).
    abstaining = tuple(name for name in c.annotators if name in config.annotators)
    return ConsensusConfig(annotators=tuple(c.annotators), rule=c.rule, veto=tuple(c.veto), abstaining=abstaining)


def configured_filters(config: Config) -> list[RowFilter]:
    """The run's filters in the order they apply: consensus, then balance."""
    filters: list[RowFilter] = []
    if (consensus := consensus_config(config)) is not None:
        filters.append(ConsensusFilter(consensus))
    if config.filters.balance.enabled:
        filters.append(BalanceFilter(config.filters.balance.target_positive_ratio, config.run.seed))
    return filters


def path_source(row: dict[str, Any]) -> tuple[str, Any]:
    """(source, row) of a labelled path's dead letter."""
    return str(row.get("source") or ""), row


def _outputs(kept: list[dict[str, Any]], dropped: list[dict[str, Any]], counter: Any) -> Iterator[Any]:
    yield from kept
    for row in dropped:
        counter.inc()
        yield beam.pvalue.TaggedOutput(FILTERED, row)


class _EachRow(beam.DoFn):
    """A filter that decides each row alone."""

    def __init__(self, row_filter: RowFilter):
        self.row_filter = row_filter
        self.dropped = Metrics.counter("filter", f"{row_filter.kind}_dropped")

    def process(self, row: dict[str, Any]) -> Iterator[Any]:
        yield from contain("filter", lambda: _outputs(*apply([row], self.row_filter), self.dropped), *path_source(row))


class _AllRows(beam.DoFn):
    """A filter that decides over every row at once; a row it cannot weigh is a dead letter, not the end of the run."""

    def __init__(self, row_filter: RowFilter):
        self.row_filter = row_filter
        self.dropped = Metrics.counter("filter", f"{row_filter.kind}_dropped")

    def process(self, item: tuple[int, list[dict[str, Any]]]) -> Iterator[Any]:
        rows = sorted(item[1], key=lambda r: str(r.get("id")))
        result, _, dead = contain_group(
            "filter",
            rows,
            lambda group: apply(group, self.row_filter),
            lambda row: apply([row], self.row_filter),
            path_source,
        )
        for letter in dead:
            yield beam.pvalue.TaggedOutput(DEAD, letter)
        yield from _outputs(*(result if result is not None else ([], [])), self.dropped)


class FilterPaths(beam.PTransform):
    """Labelled paths -> {paths (kept), filtered (with drop_reason), dead_letters}."""

    def __init__(self, config: Config):
        super().__init__()
        self.filters = configured_filters(config)

    def expand(self, rows: beam.PCollection) -> dict[str, beam.PCollection]:
        pipeline = rows.pipeline
        filtered = [pipeline | "No filtered rows" >> beam.Create([])]
        dead = [pipeline | "No filter dead letters" >> beam.Create([])]
        for row_filter in self.filters:
            name = row_filter.kind.capitalize()
            if row_filter.needs_all_rows:
                grouped = (
                    rows
                    | f"One {row_filter.kind} group" >> beam.Map(lambda r: (0, r))
                    | f"Group for {row_filter.kind}" >> beam.GroupByKey()
                )
                out = grouped | f"{name} filter" >> beam.ParDo(_AllRows(row_filter)).with_outputs(
                    FILTERED, DEAD, main="paths"
                )
            else:
                out = rows | f"{name} filter" >> beam.ParDo(_EachRow(row_filter)).with_outputs(
                    FILTERED, DEAD, main="paths"
                )
            rows = out["paths"]
            filtered.append(out[FILTERED])
            dead.append(out[DEAD])
        return {
            "paths": rows,
            FILTERED: tuple(filtered) | "Merge filtered" >> beam.Flatten(),
            DEAD: tuple(dead) | "Merge filter dead letters" >> beam.Flatten(),
        }
