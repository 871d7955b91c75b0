"""Augment: labelled paths -> the paths and their HRM node-compressed copies (`annotators.compression`)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import apache_beam as beam

from annotators.compression import compress
from schemas.config import Config
from transforms.dead_letters import contain
from transforms.filter import path_source
from transforms.read import DEAD

_JOINERS = {"step_markers": " ", "lines": "\n", "double_newline": "\n\n"}


def _compressed(row: dict[str, Any], probability: float, seed: int, joiner: str) -> Iterator[Any]:
    """A labelled path and its compressed copies, or its dead letter when compressing it raises."""
    yield from contain("augment", lambda: [row, *compress(row, probability, seed, joiner=joiner)], *path_source(row))


class AugmentPaths(beam.PTransform):
    """Labelled paths -> {paths, dead_letters}: with `augment.compression` on, each path and its compressed copies."""

    def __init__(self, config: Config):
        super().__init__()
        self.config = config

    def expand(self, rows: beam.PCollection) -> dict[str, beam.PCollection]:
        compression = self.config.augment.compression
        if not compression.enabled:
            return {"paths": rows, DEAD: rows.pipeline | "No augment dead letters" >> beam.Create([])}
        joiner = _JOINERS.get(self.config.steps.splitter, "\n\n")
        probability, seed = compression.probability, self.config.run.seed
        out = rows | "Compress nodes" >> beam.FlatMap(_compressed, probability, seed, joiner).with_outputs(
            DEAD, main="paths"
        )
        return {"paths": out["paths"], DEAD: out[DEAD]}
