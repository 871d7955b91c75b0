"""Label: evidence -> labelled-path rows, with provenance. Thin glue over `annotators.mc`."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from typing import Any

import apache_beam as beam
from apache_beam.metrics import Metrics

from annotators.mc import LabelRule, McEvidence, label_paths
from schemas.config import Config
from schemas.tables import SCHEMA_VERSION
from transforms.read import DEAD, dead_letter

PATHS = "paths"
SOLUTIONS = "solutions"
COMPLETIONS = "completions"

_STATUS_REASONS = {
    "no_steps": "no solution had any step to label",
    "prefiltered_all_correct": "filtered: all sampled solutions were correct (search.prefilter)",
    "prefiltered_all_wrong": "filtered: all sampled solutions were wrong (search.prefilter)",
}


class _Label(beam.DoFn):
    def __init__(self, config: Config):
        self.config = config
        self.rule = LabelRule(config.label.hard_rule, config.label.threshold)
        self.provenance = {
            "policy_model": config.policy.model,
            "search": config.search.method,
            "seed": config.run.seed,
            "config_hash": config.config_hash(),
            "schema_version": SCHEMA_VERSION,
        }
        self.positive = Metrics.counter("label", "steps_positive")
        self.negative = Metrics.counter("label", "steps_negative")
        self.paths = Metrics.counter("label", "paths")

    def process(self, evidence: McEvidence) -> Iterator[Any]:
        for solution in evidence.solutions:
            yield beam.pvalue.TaggedOutput(SOLUTIONS, dataclasses.asdict(solution))
        for completion in evidence.completions:
            yield beam.pvalue.TaggedOutput(COMPLETIONS, dataclasses.asdict(completion))
        rows = label_paths(evidence, self.rule)
        if not rows:
            reason = _STATUS_REASONS.get(evidence.status, f"no labelled path ({evidence.status})")
            problem = evidence.problem
            yield beam.pvalue.TaggedOutput(DEAD, dead_letter("label", problem.source, reason, problem.to_dict()))
            return
        for row in rows:
            row.update(self.provenance)
            row["meta"] = json.dumps(row["meta"], sort_keys=True, ensure_ascii=False)
            self.paths.inc()
            positives = sum(row["labels"])
            self.positive.inc(positives)
            self.negative.inc(len(row["labels"]) - positives)
            yield row


class LabelEvidence(beam.PTransform):
    """Evidence -> {paths, solutions, completions, dead_letters}."""

    def __init__(self, config: Config):
        super().__init__()
        self.config = config

    def expand(self, evidence: beam.PCollection) -> dict[str, beam.PCollection]:
        out = evidence | "Label steps" >> beam.ParDo(_Label(self.config)).with_outputs(
            SOLUTIONS, COMPLETIONS, DEAD, main=PATHS
        )
        return {PATHS: out[PATHS], SOLUTIONS: out[SOLUTIONS], COMPLETIONS: out[COMPLETIONS], DEAD: out[DEAD]}
