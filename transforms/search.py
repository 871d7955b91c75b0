"""Search: problems -> evidence, one engine per worker, requests of many problems merged into engine calls."""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections.abc import Iterator
from dataclasses import asdict
from typing import Any

import apache_beam as beam
from apache_beam.metrics import Metrics

from annotators.mc import McEvidence, McSearchConfig, math_shepherd_search
from engines.driver import run_searches
from schemas.config import Config
from schemas.records import Problem, SamplingParams
from transforms.read import DEAD, dead_letter

log = logging.getLogger(__name__)

EVIDENCE = "evidence"
STATS = "stats"


def mc_search_config(config: Config) -> McSearchConfig:
    s = config.sampling
    return McSearchConfig(
        num_solutions=config.search.num_solutions,
        completions_per_step=config.search.completions_per_step,
        sampling=SamplingParams(temperature=s.temperature, top_p=s.top_p, max_tokens=s.max_tokens, stop=tuple(s.stop)),
        splitter=config.steps.splitter,
        pattern=config.steps.pattern,
        max_steps=config.steps.max_steps,
        truncation_policy=config.answers.truncation_policy,
        prefilter=config.search.prefilter or config.search.method == "sample",
    )


def batch_key(problem_id: str, total: int, per_batch: int) -> int:
    """Deterministic batch of a problem: the batches (and so the engine calls) depend only on the input."""
    groups = max(1, math.ceil(total / per_batch))
    return int(hashlib.sha256(problem_id.encode()).hexdigest()[:8], 16) % groups


class _SearchBatch(beam.DoFn):
    """Runs the searches of one batch of problems together on the worker's shared engine."""

    def __init__(self, config: Config, total_hint: int = 0):
        self.config = config
        self.problems_done = Metrics.counter("search", "problems_searched")
        self.tokens = Metrics.counter("search", "generated_tokens")
        self.sequences = Metrics.counter("search", "sequences")
        self.calls = Metrics.counter("search", "engine_calls")
        self.failed = Metrics.counter("search", "problems_failed")
        self.fill = Metrics.distribution("search", "sequences_per_call")

    def setup(self) -> None:
        from engines import get_engine
        from engines.prompts import PromptRenderer

        self.engine = get_engine(self.config.policy)
        self.renderer = PromptRenderer(self.config.policy)

    def process(self, element: tuple[int, list[Problem]]) -> Iterator[Any]:
        _, problems = element
        problems = sorted(problems, key=lambda p: p.problem_id)
        search_config = mc_search_config(self.config)
        started = time.perf_counter()
        searches = [
            math_shepherd_search(p, self.renderer.render(p.question), search_config, self.config.run.seed)
            for p in problems
        ]
        outcomes, stats = run_searches(
            searches,
            self.engine,
            max_sequences_per_call=self.config.search.max_sequences_per_call,
            attempts=self.config.policy.max_retries,
            backoff_s=self.config.policy.backoff_s,
        )
        for problem, outcome in zip(problems, outcomes, strict=True):
            self.problems_done.inc()
            if outcome.error is not None:
                self.failed.inc()
                yield beam.pvalue.TaggedOutput(
                    DEAD, dead_letter("search", problem.source, outcome.error, problem.to_dict())
                )
                continue
            evidence: McEvidence = outcome.result
            yield evidence
        self.tokens.inc(stats.generated_tokens)
        self.sequences.inc(stats.sequences)
        self.calls.inc(stats.calls)
        for sequences in stats.call_sequences:
            self.fill.update(sequences)
        wall = time.perf_counter() - started
        log.info(
            "searched %d problems: %d engine calls, %d sequences, %d tokens in %.1fs (%.0f tok/s)",
            len(problems), stats.calls, stats.sequences, stats.generated_tokens, wall,
            stats.generated_tokens / max(wall, 1e-9),
        )  # fmt: skip
        yield beam.pvalue.TaggedOutput(STATS, {**asdict(stats), "wall_seconds": wall, "problems": len(problems)})


class SearchProblems(beam.PTransform):
    """Problems -> {evidence: McEvidence, dead_letters: dict, stats: dict per batch}."""

    def __init__(self, config: Config):
        super().__init__()
        self.config = config

    def expand(self, problems: beam.PCollection) -> dict[str, beam.PCollection]:
        per_batch = self.config.search.problems_per_batch
        total = problems | "Count problems" >> beam.combiners.Count.Globally()
        outputs = (
            problems
            | "Assign batches"
            >> beam.Map(lambda p, n: (batch_key(p.problem_id, n, per_batch), p), beam.pvalue.AsSingleton(total))
            | "Group batches" >> beam.GroupByKey()  # also the Reshuffle before generation
            | "Generate and search" >> beam.ParDo(_SearchBatch(self.config)).with_outputs(DEAD, STATS, main=EVIDENCE)
        )
        # A shuffle right after generation: a downstream retry never redoes GPU work (infra.md §4).
        evidence = outputs[EVIDENCE] | "Checkpoint evidence" >> beam.Reshuffle()
        return {EVIDENCE: evidence, DEAD: outputs[DEAD], STATS: outputs[STATS]}
