"""Search: problems -> evidence, one engine per worker, requests of many problems merged into engine calls.

The searches (MC or OmegaPRM) of one batch of problems run together on the policy engine; then, when the judge
is on, the judge's critiques of every labelled path run together on the judge engine.
"""

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

from annotators.judge import judge_search
from annotators.labelling import ProblemEvidence
from annotators.mc import LabelRule, McEvidence, McSearchConfig, label_paths, math_shepherd_search
from annotators.omegaprm import OmegaPRMConfig, OmegaPRMResult, omegaprm_search
from engines.driver import DriverStats, run_searches
from schemas.config import Config, ConfigError, SamplingConfig
from schemas.records import Problem, SamplingParams
from transforms.read import DEAD, dead_letter

log = logging.getLogger(__name__)

EVIDENCE = "evidence"
STATS = "stats"


def sampling_params(s: SamplingConfig) -> SamplingParams:
    return SamplingParams(temperature=s.temperature, top_p=s.top_p, max_tokens=s.max_tokens, stop=tuple(s.stop))


def mc_search_config(config: Config) -> McSearchConfig:
    return McSearchConfig(
        num_solutions=config.search.num_solutions,
        completions_per_step=config.search.completions_per_step,
        sampling=sampling_params(config.sampling),
        splitter=config.steps.splitter,
        pattern=config.steps.pattern,
        max_steps=config.steps.max_steps,
        truncation_policy=config.answers.truncation_policy,
        prefilter=config.search.prefilter,
    )


def omegaprm_config(config: Config) -> OmegaPRMConfig:
    """OmegaPRM's knobs from `search.omegaprm` (k defaults to search.completions_per_step); errors name the key."""
    options = dict(config.search.omegaprm)
    options.setdefault("k", config.search.completions_per_step)
    if config.search.prefilter:
        options.setdefault("prefilter_samples", 32)  # the paper's 32-sample question filter (algorithms.md §1.1)
    try:
        return OmegaPRMConfig(
            sampling=sampling_params(config.sampling),
            splitter=config.steps.splitter,
            split_pattern=config.steps.pattern,
            truncation_policy=config.answers.truncation_policy,
            **options,
        )
    except TypeError as error:
        raise ConfigError(f"search.omegaprm: {error}") from error
    except ValueError as error:
        raise ConfigError(f"search.omegaprm.{error}") from error


def batch_key(problem_id: str, total: int, per_batch: int) -> int:
    """Deterministic batch of a problem: the batches (and so the engine calls) depend only on the input."""
    groups = max(1, math.ceil(total / per_batch))
    return int(hashlib.sha256(problem_id.encode()).hexdigest()[:8], 16) % groups


def evidence_of(problem: Problem, result: McEvidence | OmegaPRMResult, rule: LabelRule) -> ProblemEvidence:
    """The search result of one problem with its base labelled paths."""
    if isinstance(result, McEvidence):
        return ProblemEvidence(
            problem=problem,
            method="mc",
            status=result.status,
            solutions=result.solutions,
            completions=result.completions,
            rows=label_paths(result, rule),
            generated_tokens=result.generated_tokens,
        )
    status = result.status if result.paths else f"{result.status}: no labelled path"
    return ProblemEvidence(
        problem=problem,
        method="omegaprm",
        status="ok" if result.paths else status,
        omegaprm=result,
        rows=[dict(row) for row in result.paths],
        generated_tokens=result.counters.generated_tokens,
    )


class _SearchBatch(beam.DoFn):
    """Runs the searches of one batch of problems together on the worker's shared engine(s)."""

    def __init__(self, config: Config):
        self.config = config
        self.problems_done = Metrics.counter("search", "problems_searched")
        self.tokens = Metrics.counter("search", "generated_tokens")
        self.sequences = Metrics.counter("search", "sequences")
        self.calls = Metrics.counter("search", "engine_calls")
        self.failed = Metrics.counter("search", "problems_failed")
        self.fill = Metrics.distribution("search", "sequences_per_call")
        self.judge_tokens = Metrics.counter("judge", "generated_tokens")
        self.unparseable = Metrics.counter("judge", "unparseable_critiques")

    def setup(self) -> None:
        from engines import get_engine
        from engines.prompts import PromptRenderer

        self.engine = get_engine(self.config.policy)
        self.renderer = PromptRenderer(self.config.policy)
        if self.config.judge.enabled:
            judge_engine = self.config.judge_engine()
            self.judge_engine = get_engine(judge_engine)
            self.judge_renderer = PromptRenderer(judge_engine)

    def _searches(self, problems: list[Problem]) -> list[Any]:
        seed = self.config.run.seed
        if self.config.search.method == "omegaprm":
            omega = omegaprm_config(self.config)
            offsets = getattr(self.engine, "token_offsets", None)
            return [
                omegaprm_search(p, self.renderer.render(p.question), omega, seed, token_offsets=offsets)
                for p in problems
            ]
        mc = mc_search_config(self.config)
        return [math_shepherd_search(p, self.renderer.render(p.question), mc, seed) for p in problems]

    def _drive(self, searches: list[Any], engine: Any) -> tuple[list[Any], DriverStats]:
        return run_searches(
            searches,
            engine,
            max_sequences_per_call=self.config.search.max_sequences_per_call,
            attempts=self.config.policy.max_retries,
            backoff_s=self.config.policy.backoff_s,
        )

    def process(self, element: tuple[int, list[Problem]]) -> Iterator[Any]:
        _, problems = element
        problems = sorted(problems, key=lambda p: p.problem_id)
        started = time.perf_counter()
        outcomes, stats = self._drive(self._searches(problems), self.engine)
        rule = LabelRule(self.config.label.hard_rule, self.config.label.threshold)
        evidences: list[ProblemEvidence] = []
        for problem, outcome in zip(problems, outcomes, strict=True):
            self.problems_done.inc()
            if outcome.error is not None:
                self.failed.inc()
                yield beam.pvalue.TaggedOutput(
                    DEAD, dead_letter("search", problem.source, outcome.error, problem.to_dict())
                )
                continue
            evidences.append(evidence_of(problem, outcome.result, rule))
        judge_stats = self._judge(evidences) if self.config.judge.enabled else DriverStats()
        yield from evidences
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
        yield beam.pvalue.TaggedOutput(
            STATS,
            {**asdict(stats), "wall_seconds": wall, "problems": len(problems), "judge": asdict(judge_stats)},
        )

    def _judge(self, evidences: list[ProblemEvidence]) -> DriverStats:
        """m critiques of every labelled path, merged into judge-engine calls; unanswered paths get no verdict."""
        judge = self.config.judge
        jobs = [(ev, row) for ev in evidences for row in ev.rows]
        searches = [
            judge_search(
                ev.problem.problem_id,
                ev.problem.question,
                row["completions"],
                judge.samples,
                sampling_params(judge.sampling),
                self.config.run.seed,
                self.judge_renderer.render_user,
                parser=judge.parser,
                key=f"judge/{row['id']}",
            )
            for ev, row in jobs
        ]
        outcomes, stats = self._drive(searches, self.judge_engine)
        for (ev, row), outcome in zip(jobs, outcomes, strict=True):
            if outcome.error is None:
                ev.critiques[row["id"]] = outcome.result
                self.unparseable.inc(outcome.result.n_unparseable)
        self.judge_tokens.inc(stats.generated_tokens)
        return stats


class SearchProblems(beam.PTransform):
    """Problems -> {evidence: ProblemEvidence, dead_letters: dict, stats: dict per batch}."""

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
