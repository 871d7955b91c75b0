"""Verify: evidence -> evidence with every configured verifier's per-step verdicts on every path.

Solver and sandbox verdicts (`annotators.verifiers`) with a reason each, None where a step cannot be checked. A
problem whose verification raises is a verify-stage dead letter; the verdicts leave as evidence rows too.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import apache_beam as beam

from annotators.evidence import ProblemEvidence
from annotators.labelling import make_verifier
from schemas.config import Config
from transforms.dead_letters import contain
from transforms.read import DEAD

VERDICTS = "verdicts"


def verdict_rows(evidence: ProblemEvidence) -> Iterator[dict[str, Any]]:
    """The evidence table `verdicts`: one row per verifier, path and step."""
    for name, by_path in sorted(evidence.verdicts.items()):
        for path_id, verdicts in by_path.items():
            for step, verdict in enumerate(verdicts):
                yield {"problem_id": evidence.problem.problem_id, "path_id": path_id, "annotator": name,
                       "step_index": step, "verdict": verdict.verdict, "reason": verdict.reason}  # fmt: skip


class _Verify(beam.DoFn):
    def __init__(self, config: Config):
        self.config = config

    def setup(self) -> None:
        self.verifiers = {name: make_verifier(name, opts) for name, opts in sorted(self.config.annotators.items())}

    def _verified(self, evidence: ProblemEvidence) -> Iterator[Any]:
        for name, verifier in self.verifiers.items():
            evidence.verdicts[name] = {
                path.id: verifier.verify(evidence.problem, list(path.steps)) for path in evidence.paths()
            }
        yield evidence
        for row in verdict_rows(evidence):
            yield beam.pvalue.TaggedOutput(VERDICTS, row)

    def process(self, evidence: ProblemEvidence) -> Iterator[Any]:
        problem = evidence.problem
        yield from contain("verify", lambda: self._verified(evidence), problem.source, problem.to_dict())


class VerifyPaths(beam.PTransform):
    """Evidence -> {evidence (with verdicts), verdicts (evidence rows), dead_letters}."""

    def __init__(self, config: Config):
        super().__init__()
        self.config = config

    def expand(self, evidence: beam.PCollection) -> dict[str, beam.PCollection]:
        out = evidence | "Verify steps" >> beam.ParDo(_Verify(self.config)).with_outputs(
            VERDICTS, DEAD, main="evidence"
        )
        return {"evidence": out["evidence"], VERDICTS: out[VERDICTS], DEAD: out[DEAD]}
