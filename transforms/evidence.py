"""Evidence rows: what the search produced for each problem, as the evidence tables a relabel starts from.

`problems`, `solutions`, `completions` (MC) and `omegaprm_nodes`, `omegaprm_paths` (OmegaPRM: the lossless
search tree and the paths its binary search located, which are evidence, not labels). The judge and verify stages
emit their own evidence rows (`critiques`, `verdicts`).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from typing import Any

import apache_beam as beam

from annotators.evidence import ProblemEvidence
from annotators.omegaprm import OmegaPRMResult
from annotators.omegaprm_rows import nodes_to_rows
from schemas.config import Config
from schemas.tables import with_meta_json
from transforms.dead_letters import contain
from transforms.label import provenance
from transforms.read import DEAD

PROBLEMS = "problems"
SOLUTIONS = "solutions"
COMPLETIONS = "completions"
NODES = "omegaprm_nodes"
SEARCH_PATHS = "omegaprm_paths"
TABLES = (PROBLEMS, SOLUTIONS, COMPLETIONS, NODES, SEARCH_PATHS)


class _EvidenceRows(beam.DoFn):
    def __init__(self, config: Config):
        self.provenance = provenance(config)

    def _rows(self, evidence: ProblemEvidence) -> Iterator[Any]:
        problem = evidence.problem
        yield beam.pvalue.TaggedOutput(
            PROBLEMS, {**problem.to_dict(), "meta": json.dumps(problem.meta, sort_keys=True)}
        )
        search = evidence.search
        if isinstance(search, OmegaPRMResult):
            for node in nodes_to_rows(search):
                yield beam.pvalue.TaggedOutput(NODES, node)
            for row in search.paths:
                yield beam.pvalue.TaggedOutput(SEARCH_PATHS, with_meta_json({**row, **self.provenance}))
            return
        for solution in search.solutions:
            yield beam.pvalue.TaggedOutput(SOLUTIONS, dataclasses.asdict(solution))
        for completion in search.completions:
            yield beam.pvalue.TaggedOutput(COMPLETIONS, dataclasses.asdict(completion))

    def process(self, evidence: ProblemEvidence) -> Iterator[Any]:
        problem = evidence.problem
        yield from contain("evidence", lambda: self._rows(evidence), problem.source, problem.to_dict())


class EvidenceRows(beam.PTransform):
    """Evidence -> one PCollection of rows per evidence table, and dead letters."""

    def __init__(self, config: Config):
        super().__init__()
        self.config = config

    def expand(self, evidence: beam.PCollection) -> dict[str, beam.PCollection]:
        out = evidence | "Evidence rows" >> beam.ParDo(_EvidenceRows(self.config)).with_outputs(*TABLES, DEAD)
        return {**{tag: out[tag] for tag in TABLES}, DEAD: out[DEAD]}
