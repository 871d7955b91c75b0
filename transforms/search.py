"""Search: problems -> evidence, one engine per worker, requests of many problems merged into engine calls.

The searches (MC or OmegaPRM) of one batch of problems run together on the policy engine (`engines.handler`
loads, shares, fingerprints and caches it); each problem's search result leaves as its `ProblemEvidence`. The
judge, verifiers and labels are later stages (`transforms.judge`, `transforms.verify`, `transforms.label`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import math
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict
from typing import Any

import apache_beam as beam
from apache_beam.metrics import Metrics

from annotators.evidence import ProblemEvidence
from annotators.mc import McSearchConfig, math_shepherd_search
from annotators.omegaprm import OmegaPRMConfig, OmegaPRMResult, omegaprm_search
from engines.cache import CacheEntry
from engines.driver import run_searches
from schemas.config import Config, ConfigError, sampling_params
from schemas.records import Problem
from transforms.dead_letters import bounded, contain
from transforms.progress import PROGRESS
from transforms.read import DEAD, dead_letter

log = logging.getLogger(__name__)

EVIDENCE = "evidence"
STATS = "stats"


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
        options.setdefault("prefilter_samples", 32)  # the paper's 32-sample question filter (docs/methods.md §1.1)
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


def tag_requests(search: Any, problem_id: str) -> Any:
    """A search whose requests carry its problem id, so merged requests can be traced to their problem."""
    answer = None
    try:
        while True:
            requests = search.send(answer) if answer is not None else next(search)
            answer = yield [dataclasses.replace(r, problem_id=problem_id) for r in requests]
    except StopIteration as stop:
        return stop.value


def batch_key(problem_id: str, total: int, per_batch: int) -> int:
    """Deterministic batch of a problem: the batches (and so the engine calls) depend only on the input."""
    groups = max(1, math.ceil(total / per_batch))
    return int(hashlib.sha256(problem_id.encode()).hexdigest()[:8], 16) % groups


def drive(searches: list[Any], engine: Any, config: Config, on_done: Callable[[int], None] | None = None) -> Any:
    """Run coroutines to their end on `engine` with the run's driver settings: (outcomes, DriverStats)."""
    return run_searches(
        searches,
        engine,
        max_sequences_per_call=config.search.max_sequences_per_call,
        sequences_in_flight=config.search.sequences_in_flight or None,
        attempts=config.policy.max_retries,
        backoff_s=config.policy.backoff_s,
        on_done=on_done,
        request_level=config.search.driver == "requests",
    )


class _SearchBatch(beam.DoFn):
    """Runs the searches of one batch of problems together on the worker's engine; emits each one's evidence."""

    def __init__(self, config: Config, cache_dir: str | None):
        self.config = config
        self.cache_dir = cache_dir
        self.cache_hits = Metrics.counter("cache", "sample_hits")
        self.cache_misses = Metrics.counter("cache", "sample_misses")
        self.problems_done = Metrics.counter("search", "problems_searched")
        self.tokens = Metrics.counter("search", "generated_tokens")
        self.sequences = Metrics.counter("search", "sequences")
        self.calls = Metrics.counter("search", "engine_calls")
        self.failed = Metrics.counter("search", "problems_failed")
        self.fill = Metrics.distribution("search", "sequences_per_call")
        self.batch_ms = Metrics.distribution("search", "batch_milliseconds")

    def setup(self) -> None:
        from engines.handler import EngineHandler
        from engines.prompts import PromptRenderer

        self.handler = EngineHandler(
            self.config.policy,
            share_across_processes=self.config.resources.share_engine(),
            cache_dir=self.cache_dir,
        )
        self.handler.fingerprint()  # hashes the weights once, at setup, not inside the first bundle
        self.renderer = PromptRenderer(self.config.policy)

    def _search_factory(self) -> Callable[[Problem], Any]:
        """What starts one problem's search: its prompt rendered, its coroutine tagged with its problem id."""
        seed = self.config.run.seed
        if self.config.search.method == "omegaprm":
            omega = omegaprm_config(self.config)
            offsets = None
            if omega.cut == "token":
                from engines.prompts import token_offsets

                tokenizer = self.renderer.tokenizer
                offsets = lambda text: token_offsets(tokenizer, text)  # noqa: E731

            def start(p: Problem) -> Any:
                return omegaprm_search(p, self.renderer.render(p.question), omega, seed, token_offsets=offsets)
        else:
            mc = mc_search_config(self.config)

            def start(p: Problem) -> Any:
                return math_shepherd_search(p, self.renderer.render(p.question), mc, seed)

        return lambda p: tag_requests(start(p), p.problem_id)

    def process(self, element: tuple[int, list[tuple[Problem, list[dict[str, Any]]]]], total: int = 0) -> Iterator[Any]:
        _, items = element
        items = sorted(items, key=lambda item: item[0].problem_id)
        problems = [problem for problem, _ in items]
        engine = self.handler.cached({e["key"]: CacheEntry(**e) for _, entries in items for e in entries})
        engine.on_generated = lambda samples, tokens: PROGRESS.update("completions", samples, unit="samples")
        started = time.perf_counter()

        def searched(_: int) -> None:  # per problem as its search ends: a batch of OmegaPRM searches takes minutes
            PROGRESS.update("search", 1, total=total or None, unit="problems")

        PROGRESS.update("search", 0, total=total or None, unit="problems")  # the bar (and its clock) starts now

        # A problem whose prompt or search cannot even start is a dead letter; the batch goes on without it.
        start = self._search_factory()
        live: list[Problem] = []
        searches: list[Any] = []
        for problem in problems:
            begun = contain("search", lambda p=problem: [start(p)], problem.source, problem.to_dict())
            if begun.dead is not None:
                self.problems_done.inc()
                self.failed.inc()
                searched(0)
                yield from begun
                continue
            live.append(problem)
            searches.extend(begun.outputs)
        outcomes, stats = drive(searches, engine, self.config, searched)
        self.cache_hits.inc(engine.hits)
        self.cache_misses.inc(engine.misses)
        omegaprm: Counter[str] = Counter()  # what the OmegaPRM searches did, summed for the manifest
        for problem, outcome in zip(live, outcomes, strict=True):
            if isinstance(outcome.result, OmegaPRMResult):
                omegaprm.update(asdict(outcome.result.counters))
            self.problems_done.inc()
            if outcome.error is not None:
                self.failed.inc()
                yield beam.pvalue.TaggedOutput(
                    DEAD, dead_letter("search", problem.source, bounded(outcome.error), problem.to_dict())
                )
                continue
            yield ProblemEvidence(problem=problem, search=outcome.result)
        PROGRESS.flush("completions")
        self.tokens.inc(stats.generated_tokens)
        self.sequences.inc(stats.sequences)
        self.calls.inc(stats.calls)
        for sequences in stats.call_sequences:
            self.fill.update(sequences)
        wall = time.perf_counter() - started
        self.batch_ms.update(int(wall * 1000))
        log.info(
            "searched %d problems: %d engine calls, %d sequences, %d tokens in %.1fs (%.0f tok/s)",
            len(problems), stats.calls, stats.sequences, stats.generated_tokens, wall,
            stats.generated_tokens / max(wall, 1e-9),
        )  # fmt: skip
        yield beam.pvalue.TaggedOutput(
            STATS,
            {
                **asdict(stats),
                "wall_seconds": wall,
                "problems": len(problems),
                "cache_hits": engine.hits,
                "cache_misses": engine.misses,
                "engine_generated_tokens": engine.generated_tokens,
                "omegaprm": dict(omegaprm),
            },
        )


class SearchProblems(beam.PTransform):
    """Problems -> {evidence: ProblemEvidence, dead_letters: dict, stats: dict per batch}."""

    def __init__(self, config: Config, cache_dir: str | None = None):
        super().__init__()
        self.config = config
        self.cache_dir = cache_dir if config.cache.enabled else None

    def _generate(self, total: Any) -> beam.PTransform:
        return _generate_transform(self.config, self.cache_dir, total)

    def expand(self, problems: beam.PCollection) -> dict[str, beam.PCollection]:
        per_batch = self.config.search.problems_per_batch
        total = problems | "Count problems" >> beam.combiners.Count.Globally()
        joined = problems | "Join cached samples" >> WithCachedSamples(self.cache_dir, lambda p: p.problem_id)
        outputs = (
            joined
            | "Batch problems" >> Batches(per_batch, lambda item: item[0].problem_id, beam.pvalue.AsSingleton(total))
            | "Generate and search" >> self._generate(beam.pvalue.AsSingleton(total))
        )
        # A shuffle right after generation: a downstream retry never redoes GPU work (docs/infrastructure.md §4).
        evidence = outputs[EVIDENCE] | "Checkpoint evidence" >> beam.Reshuffle()
        return {EVIDENCE: evidence, DEAD: outputs[DEAD], STATS: outputs[STATS]}


def _generate_transform(config: Config, cache_dir: str | None, total: Any) -> beam.PTransform:
    transform = beam.ParDo(_SearchBatch(config, cache_dir), total=total).with_outputs(DEAD, STATS, main=EVIDENCE)
    return with_accelerator(transform, config)


def with_accelerator(transform: beam.PTransform, config: Config) -> beam.PTransform:
    """A generation step: with `resources.accelerator` it carries Dataflow's accelerator hint (right fitting)."""
    hint = config.resources.accelerator_hint()
    return transform.with_resource_hints(accelerator=hint) if hint else transform


class WithCachedSamples(beam.PTransform):
    """Elements -> (element, its problem's cached samples sorted by key): the cache split happens here, so only
    misses reach the engine (`engines.cache`); without a cache every element gets []."""

    def __init__(self, cache_dir: str | None, id_of: Callable[[Any], str]):
        super().__init__()
        self.cache_dir = cache_dir
        self.id_of = id_of

    def expand(self, elements: beam.PCollection) -> beam.PCollection:
        id_of = self.id_of
        keyed = elements | "Key by problem" >> beam.Map(lambda e: (id_of(e), e))
        if not self.cache_dir:
            return keyed | "No cache" >> beam.Map(lambda kv: (kv[1], []))
        from apache_beam.io.filesystems import FileSystems
        from apache_beam.io.parquetio import ReadAllFromParquet

        cached = (
            elements.pipeline
            | "Cache glob" >> beam.Create([FileSystems.join(self.cache_dir, "part-*.parquet")])
            | "Read cache" >> ReadAllFromParquet()
            | "Key cache" >> beam.Map(lambda e: (e["problem_id"], e))
        )
        return (
            {"element": keyed, "cache": cached}
            | "Join cache" >> beam.CoGroupByKey()
            | "With cached samples"
            >> beam.FlatMap(lambda kv: [(e, sorted(kv[1]["cache"], key=lambda c: c["key"])) for e in kv[1]["element"]])
        )


class Batches(beam.PTransform):
    """Elements -> (batch, [elements]) of about `per_batch` each: the batches (and so the engine calls) depend only
    on the elements' ids; the GroupByKey is also the Reshuffle before generation."""

    def __init__(self, per_batch: int, id_of: Callable[[Any], str], total: Any = None):
        super().__init__()
        self.per_batch = per_batch
        self.id_of = id_of
        self.total = total  # the elements' count as a singleton side input, when the caller has one already

    def expand(self, elements: beam.PCollection) -> beam.PCollection:
        total = self.total
        if total is None:
            total = beam.pvalue.AsSingleton(elements | "Count" >> beam.combiners.Count.Globally())
        per_batch, id_of = self.per_batch, self.id_of
        return (
            elements
            | "Assign batches" >> beam.Map(lambda item, n: (batch_key(id_of(item), n, per_batch), item), total)
            | "Group batches" >> beam.GroupByKey()
        )
