"""Filter and augment labelled paths: positive/negative balance (global) and HRM node compression (per row)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import apache_beam as beam
from apache_beam.metrics import Metrics

from annotators.balance import balance
from annotators.compression import compress
from schemas.config import Config
from transforms.dead_letters import contain, contain_group
from transforms.read import DEAD

_JOINERS = {"step_markers": " ", "lines": "\n", "double_newline": "\n\n"}


def path_source(row: dict[str, Any]) -> tuple[str, Any]:
    """(source, row) of a labelled path's dead letter."""
    return str(row.get("source") or ""), row


class _Balance(beam.DoFn):
    def __init__(self, target: float, seed: int):
        self.target = target
        self.seed = seed
        self.dropped = Metrics.counter("filter", "balance_dropped")

    def process(self, item: tuple[int, list[dict[str, Any]]]) -> Iterator[Any]:
        rows = sorted(item[1], key=lambda r: str(r.get("id")))
        # Balance weighs every row at once; a row it cannot weigh is a dead letter, not the end of the run.
        result, _, dead = contain_group(
            "filter",
            rows,
            lambda group: balance(group, self.target, self.seed),
            lambda row: balance([row], self.target, self.seed),
            path_source,
        )
        for letter in dead:
            yield beam.pvalue.TaggedOutput(DEAD, letter)
        kept, dropped = result if result is not None else ([], [])
        yield from kept
        for row in dropped:
            self.dropped.inc()
            row.setdefault("drop_reason", "balance: positive/negative step ratio")
            yield beam.pvalue.TaggedOutput("filtered", row)


def _compressed(row: dict[str, Any], probability: float, seed: int, joiner: str) -> Iterator[Any]:
    """A labelled path and its compressed copies, or its dead letter when compressing it raises."""
    yield from contain("augment", lambda: [row, *compress(row, probability, seed, joiner=joiner)], *path_source(row))


class AugmentRows(beam.PTransform):
    """Labelled paths -> {paths, filtered, dead_letters}: balance (when on), then compressed copies (when on)."""

    def __init__(self, config: Config):
        super().__init__()
        self.config = config

    def expand(self, rows: beam.PCollection) -> dict[str, beam.PCollection]:
        pipeline = rows.pipeline
        filtered = pipeline | "No balance drops" >> beam.Create([])
        dead = [pipeline | "No augment dead letters" >> beam.Create([])]
        balance_config = self.config.filters.balance
        if balance_config.enabled:
            # Balance needs every row's labels at once; the rows of a run fit one worker at the scales balance is used.
            out = (
                rows
                | "One balance group" >> beam.Map(lambda r: (0, r))
                | "Group for balance" >> beam.GroupByKey()
                | "Balance labels"
                >> beam.ParDo(_Balance(balance_config.target_positive_ratio, self.config.run.seed)).with_outputs(
                    "filtered", DEAD, main="paths"
                )
            )
            rows, filtered = out["paths"], out["filtered"]
            dead.append(out[DEAD])
        compression = self.config.augment.compression
        if compression.enabled:
            joiner = _JOINERS.get(self.config.steps.splitter, "\n\n")
            probability, seed = compression.probability, self.config.run.seed
            out = rows | "Compress nodes" >> beam.FlatMap(_compressed, probability, seed, joiner).with_outputs(
                DEAD, main="paths"
            )
            rows = out["paths"]
            dead.append(out[DEAD])
        merged = tuple(dead) | "Merge augment dead letters" >> beam.Flatten()
        return {"paths": rows, "filtered": filtered, DEAD: merged}
