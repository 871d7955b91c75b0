"""Verify, label and filter: evidence -> labelled-path rows with per-annotator columns, and evidence tables.

Thin glue over `annotators`: verifiers and the labelling composition are pure functions; this module emits their
results and the evidence (solutions, completions, search trees, critiques, verdicts) as tagged outputs.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from typing import Any

import apache_beam as beam
from apache_beam.metrics import Metrics

from annotators.consensus import ConsensusConfig, filter_rows
from annotators.labelling import ProblemEvidence, attach_judge, attach_progress, attach_verdicts, make_verifier, root_mc
from annotators.omegaprm_rows import no_path_reason, nodes_to_rows
from schemas.config import Config
from schemas.tables import SCHEMA_VERSION
from transforms.dead_letters import at_stage, contain
from transforms.read import DEAD, dead_letter

PATHS = "paths"
FILTERED = "filtered"
SOLUTIONS = "solutions"
COMPLETIONS = "completions"
NODES = "omegaprm_nodes"
SEARCH_PATHS = "omegaprm_paths"
CRITIQUES = "critiques"
VERDICTS = "verdicts"
PROBLEMS = "problems"

_STATUS_REASONS = {
    "no_steps": "no solution had any step to label",
    "prefiltered_all_correct": "filtered: all sampled solutions were correct (search.prefilter)",
    "prefiltered_all_wrong": "filtered: all sampled solutions were wrong (search.prefilter)",
}


def provenance(config: Config) -> dict[str, Any]:
    return {
        "policy_model": config.policy.model,
        "search": config.search.method,
        "seed": config.run.seed,
        "config_hash": config.config_hash(),
        "schema_version": SCHEMA_VERSION,
    }


def consensus_config(config: Config) -> ConsensusConfig | None:
    c = config.filters.consensus
    if not c.enabled:
        return None
    # A configured verifier that votes abstains on the steps it cannot check (its None is no verdict on the row).
    abstaining = tuple(name for name in c.annotators if name in config.annotators)
    return ConsensusConfig(annotators=tuple(c.annotators), rule=c.rule, veto=tuple(c.veto), abstaining=abstaining)


class _Label(beam.DoFn):
    def __init__(self, config: Config):
        self.config = config
        self.provenance = provenance(config)
        self.consensus = consensus_config(config)
        self.positive = Metrics.counter("label", "steps_positive")
        self.negative = Metrics.counter("label", "steps_negative")
        self.paths = Metrics.counter("label", "paths")
        self.dropped = Metrics.counter("filter", "consensus_dropped")

    def setup(self) -> None:
        self.verifiers = {name: make_verifier(name, opts) for name, opts in sorted(self.config.annotators.items())}

    def process(self, evidence: ProblemEvidence) -> Iterator[Any]:
        problem = evidence.problem
        # The evidence is written even when labelling fails: a relabel from it can label the problem later.
        stored = contain("label", lambda: self._evidence_rows(evidence), problem.source, problem.to_dict())
        yield from stored
        if stored.dead is not None:
            return
        labelled = contain("label", lambda: self._labelled(evidence), problem.source, problem.to_dict())
        yield from labelled
        if labelled.dead is None:
            self._count(labelled.outputs)

    def _evidence_rows(self, evidence: ProblemEvidence) -> Iterator[Any]:
        problem = evidence.problem
        yield beam.pvalue.TaggedOutput(
            PROBLEMS, {**problem.to_dict(), "meta": json.dumps(problem.meta, sort_keys=True)}
        )
        for solution in evidence.solutions:
            yield beam.pvalue.TaggedOutput(SOLUTIONS, dataclasses.asdict(solution))
        for completion in evidence.completions:
            yield beam.pvalue.TaggedOutput(COMPLETIONS, dataclasses.asdict(completion))
        if evidence.omegaprm is not None:
            for node in nodes_to_rows(evidence.omegaprm):
                yield beam.pvalue.TaggedOutput(NODES, node)
            # OmegaPRM's paths come out of the search itself, so they are evidence a relabel starts from.
            for row in evidence.rows:
                yield beam.pvalue.TaggedOutput(SEARCH_PATHS, self._finish(dict(row)))
        for row_id, critique in sorted(evidence.critiques.items()):
            for index, (text, parsed) in enumerate(zip(critique.critiques, critique.parsed, strict=True)):
                yield beam.pvalue.TaggedOutput(
                    CRITIQUES,
                    {"problem_id": problem.problem_id, "path_id": row_id, "critique_index": index, "text": text,
                     "parsed": parsed, "parser": critique.parser},
                )  # fmt: skip

    def _labelled(self, evidence: ProblemEvidence) -> Iterator[Any]:
        """Verify, label and filter the problem's paths: kept rows, filtered rows, verdicts, or its dead letter."""
        problem = evidence.problem
        if not evidence.rows:
            if evidence.method == "omegaprm":
                reason = no_path_reason(evidence.root_mc)
            else:
                reason = _STATUS_REASONS.get(evidence.status, f"no labelled path ({evidence.status})")
            yield beam.pvalue.TaggedOutput(DEAD, dead_letter("label", problem.source, reason, problem.to_dict()))
            return
        rows = [self._annotate(evidence, dict(row)) for row in evidence.rows]
        yield from self._verdict_rows(problem.problem_id, rows)
        with at_stage("filter"):
            kept, dropped = filter_rows(rows, self.consensus) if self.consensus else (rows, [])
        for row in dropped:
            yield beam.pvalue.TaggedOutput(FILTERED, self._finish(row))
        for row in kept:
            yield self._finish(row)

    def _count(self, outputs: list[Any]) -> None:
        """Counters of a problem labelled to the end (a dead-lettered one counts nothing)."""
        for output in outputs:
            if isinstance(output, beam.pvalue.TaggedOutput):
                if output.tag == FILTERED:
                    self.dropped.inc()
                continue
            self.paths.inc()
            positives = sum(output["labels"])
            self.positive.inc(positives)
            self.negative.inc(len(output["labels"]) - positives)

    def _annotate(self, evidence: ProblemEvidence, row: dict[str, Any]) -> dict[str, Any]:
        for name, verifier in self.verifiers.items():
            with at_stage("verify"):
                attach_verdicts(row, name, verifier.verify(evidence.problem, list(row["completions"])))
        if self.config.judge.enabled:
            with at_stage("judge"):
                attach_judge(row, evidence.critiques.get(row["id"]))
        if self.config.progress.enabled:
            root = evidence.root_mc if evidence.root_mc is not None else root_mc(evidence.rows)
            attach_progress(row, root, self.config.progress.pav_k, self.config.progress.rpe_epsilon)
        return row

    def _verdict_rows(self, problem_id: str, rows: list[dict[str, Any]]) -> Iterator[Any]:
        for row in rows:
            for name in sorted(self.verifiers):
                for step, (verdict, reason) in enumerate(
                    zip(row[f"{name}_labels"], row[f"{name}_reasons"], strict=True)
                ):
                    yield beam.pvalue.TaggedOutput(
                        VERDICTS,
                        {"problem_id": problem_id, "path_id": row["id"], "annotator": name, "step_index": step,
                         "verdict": verdict, "reason": reason},
                    )  # fmt: skip

    def _finish(self, row: dict[str, Any]) -> dict[str, Any]:
        row.update(self.provenance)
        if not isinstance(row.get("meta"), str):
            row["meta"] = json.dumps(row.get("meta") or {}, sort_keys=True, ensure_ascii=False, default=str)
        return row


class LabelEvidence(beam.PTransform):
    """Evidence -> {paths, filtered, dead_letters, and one PCollection per evidence table}."""

    def __init__(self, config: Config):
        super().__init__()
        self.config = config

    def expand(self, evidence: beam.PCollection) -> dict[str, beam.PCollection]:
        tags = [FILTERED, SOLUTIONS, COMPLETIONS, NODES, SEARCH_PATHS, CRITIQUES, VERDICTS, PROBLEMS, DEAD]
        out = evidence | "Verify and label steps" >> beam.ParDo(_Label(self.config)).with_outputs(*tags, main=PATHS)
        return {PATHS: out[PATHS], **{tag: out[tag] for tag in tags}}
