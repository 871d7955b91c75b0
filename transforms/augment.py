"""Filter and augment labelled paths: positive/negative balance (global) and HRM node compression (per row)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import apache_beam as beam
from apache_beam.metrics import Metrics

from annotators.balance import balance
from annotators.compression import compress
from schemas.config import Config

_JOINERS = {"step_markers": " ", "lines": "\n", "double_newline": "\n\n"}


class _Balance(beam.DoFn):
    def __init__(self, target: float, seed: int):
        self.target = target
        self.seed = seed
        self.dropped = Metrics.counter("filter", "balance_dropped")

    def process(self, item: tuple[int, list[dict[str, Any]]]) -> Iterator[Any]:
        rows = sorted(item[1], key=lambda r: r["id"])
        kept, dropped = balance(rows, self.target, self.seed)
        yield from kept
        for row in dropped:
            self.dropped.inc()
            row.setdefault("drop_reason", "balance: positive/negative step ratio")
            yield beam.pvalue.TaggedOutput("filtered", row)


class AugmentRows(beam.PTransform):
    """Labelled paths -> {paths, filtered}: balance (when on), then compressed copies (when on)."""

    def __init__(self, config: Config):
        super().__init__()
        self.config = config

    def expand(self, rows: beam.PCollection) -> dict[str, beam.PCollection]:
        pipeline = rows.pipeline
        filtered = pipeline | "No balance drops" >> beam.Create([])
        balance_config = self.config.filters.balance
        if balance_config.enabled:
            # Balance needs every row's labels at once; the rows of a run fit one worker at the scales balance is used.
            out = (
                rows
                | "One balance group" >> beam.Map(lambda r: (0, r))
                | "Group for balance" >> beam.GroupByKey()
                | "Balance labels"
                >> beam.ParDo(_Balance(balance_config.target_positive_ratio, self.config.run.seed)).with_outputs(
                    "filtered", main="paths"
                )
            )
            rows, filtered = out["paths"], out["filtered"]
        compression = self.config.augment.compression
        if compression.enabled:
            joiner = _JOINERS.get(self.config.steps.splitter, "\n\n")
            probability, seed = compression.probability, self.config.run.seed
            rows = rows | "Compress nodes" >> beam.FlatMap(
                lambda r: [r, *compress(r, probability, seed, joiner=joiner)]
            )
        return {"paths": rows, "filtered": filtered}
