"""Label: evidence -> labelled-path rows with every annotator's columns (`annotators.labelling`), or the
problem's label-stage dead letter when it has no path to label or labelling raises."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import apache_beam as beam
from apache_beam.metrics import Metrics

from annotators.evidence import ProblemEvidence
from annotators.labelling import LabelSetting, label_rows, no_path
from annotators.mc import LabelRule
from schemas.config import Config
from schemas.tables import SCHEMA_VERSION
from transforms.dead_letters import contain
from transforms.read import DEAD, dead_letter


def provenance(config: Config) -> dict[str, Any]:
    """The columns that say where a labelled path came from."""
    return {
        "policy_model": config.policy.model,
        "search": config.search.method,
        "seed": config.run.seed,
        "config_hash": config.config_hash(),
        "schema_version": SCHEMA_VERSION,
    }


def label_setting(config: Config) -> LabelSetting:
    progress = (config.progress.pav_k, config.progress.rpe_epsilon) if config.progress.enabled else None
    return LabelSetting(
        rule=LabelRule(config.label.hard_rule, config.label.threshold),
        verifiers=tuple(sorted(config.annotators)),
        judge=config.judge.enabled,
        progress=progress,
    )


class _Label(beam.DoFn):
    def __init__(self, config: Config):
        self.setting = label_setting(config)
        self.provenance = provenance(config)
        self.positive = Metrics.counter("label", "steps_positive")
        self.negative = Metrics.counter("label", "steps_negative")
        self.paths = Metrics.counter("label", "paths")

    def _labelled(self, evidence: ProblemEvidence) -> Iterator[Any]:
        rows = label_rows(evidence, self.setting)
        if not rows:
            problem = evidence.problem
            yield beam.pvalue.TaggedOutput(
                DEAD, dead_letter("label", problem.source, no_path(evidence), problem.to_dict())
            )
        for row in rows:
            yield {**row, **self.provenance}

    def process(self, evidence: ProblemEvidence) -> Iterator[Any]:
        problem = evidence.problem
        labelled = contain("label", lambda: self._labelled(evidence), problem.source, problem.to_dict())
        yield from labelled
        for row in labelled.outputs:
            if isinstance(row, dict):
                self.paths.inc()
                positives = sum(row["labels"])
                self.positive.inc(positives)
                self.negative.inc(len(row["labels"]) - positives)


class LabelPaths(beam.PTransform):
    """Evidence -> {paths: labelled-path rows (meta still a dict), dead_letters}."""

    def __init__(self, config: Config):
        super().__init__()
        self.config = config

    def expand(self, evidence: beam.PCollection) -> dict[str, beam.PCollection]:
        out = evidence | "Label steps" >> beam.ParDo(_Label(self.config)).with_outputs(DEAD, main="paths")
        return {"paths": out["paths"], DEAD: out[DEAD]}
