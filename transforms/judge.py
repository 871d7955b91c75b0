"""Judge: evidence -> evidence with the judge's parsed, voted critiques of every path (when `judge.enabled`).

The critiques of a batch of problems' paths run together on the judge engine, as the searches do on the policy
engine, through the same sample cache (a rerun generates only the critiques it lacks). A path whose critique prompt or parsing raises makes its problem a judge-stage dead letter; an engine that
does not answer is not the problem's fault, so that path only has no verdict. The critiques leave as evidence rows.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Iterator
from dataclasses import asdict
from typing import Any

import apache_beam as beam
from apache_beam.metrics import Metrics

from annotators.evidence import ProblemEvidence
from annotators.judge import CRITIQUE_TEMPLATE, judge_search
from engines.cache import CacheEntry
from schemas.config import Config, sampling_params
from transforms.dead_letters import failure_reason
from transforms.progress import PROGRESS
from transforms.read import DEAD, dead_letter
from transforms.search import STATS, Batches, WithCachedSamples, drive, tag_requests, with_accelerator

log = logging.getLogger(__name__)

CRITIQUES = "critiques"


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


def critique_rows(evidence: ProblemEvidence) -> Iterator[dict[str, Any]]:
    """The evidence table `critiques`: every critique text of every judged path, with its parse."""
    for path_id, vote in sorted(evidence.critiques.items()):
        for index, (text, parsed) in enumerate(zip(vote.critiques, vote.parsed, strict=True)):
            yield {"problem_id": evidence.problem.problem_id, "path_id": path_id, "critique_index": index,
                   "text": text, "parsed": parsed, "parser": vote.parser}  # fmt: skip


class _JudgeBatch(beam.DoFn):
    """m critiques of every path of a batch of problems, merged into judge-engine calls."""

    def __init__(self, config: Config, cache_dir: str | None):
        self.config = config
        self.cache_dir = cache_dir
        self.tokens = Metrics.counter("judge", "generated_tokens")
        self.unparseable = Metrics.counter("judge", "unparseable_critiques")
        self.failed = Metrics.counter("judge", "problems_failed")

    def setup(self) -> None:
        from engines.handler import EngineHandler
        from engines.prompts import PromptRenderer

        engine = self.config.judge_engine()
        share = self.config.resources.share_engine()
        self.handler = EngineHandler(engine, share_across_processes=share, cache_dir=self.cache_dir)
        self.renderer = PromptRenderer(engine)

    def process(self, element: tuple[int, list[tuple[ProblemEvidence, list[dict[str, Any]]]]]) -> Iterator[Any]:
        judge = self.config.judge
        items = sorted(element[1], key=lambda item: item[0].problem.problem_id)
        evidences = [ev for ev, _ in items]
        engine = self.handler.cached({e["key"]: CacheEntry(**e) for _, entries in items for e in entries})
        engine.on_generated = lambda samples, tokens: PROGRESS.update("critiques", samples, unit="samples")
        jobs = [(ev, path) for ev in evidences for path in ev.paths()]
        searches = [
            raised_as_result(
                tag_requests(
                    judge_search(
                        ev.problem.problem_id,
                        ev.problem.question,
                        path.steps,
                        judge.samples,
                        sampling_params(judge.sampling),
                        self.config.run.seed,
                        self.renderer.render_user,
                        parser=judge.parser,
                        key=f"judge/{path.id}",
                        template=judge.template or CRITIQUE_TEMPLATE,
                    ),
                    ev.problem.problem_id,
                )
            )
            for ev, path in jobs
        ]
        started = time.perf_counter()
        outcomes, stats = drive(searches, engine, self.config)
        failures: dict[str, dict[str, str]] = {}
        for (ev, path), outcome in zip(jobs, outcomes, strict=True):
            problem = ev.problem
            if isinstance(outcome.result, Raised):
                if problem.problem_id not in failures:
                    reason = failure_reason("judge", outcome.result.error)
                    failures[problem.problem_id] = dead_letter("judge", problem.source, reason, problem.to_dict())
            elif outcome.error is None:
                ev.critiques[path.id] = outcome.result
                self.unparseable.inc(outcome.result.n_unparseable)
        self.tokens.inc(stats.generated_tokens)
        for ev in evidences:
            if ev.problem.problem_id in failures:
                self.failed.inc()
                yield beam.pvalue.TaggedOutput(DEAD, failures[ev.problem.problem_id])
                continue
            yield ev
            for row in critique_rows(ev):
                yield beam.pvalue.TaggedOutput(CRITIQUES, row)
        stats_row = {**asdict(stats), "wall_seconds": time.perf_counter() - started, "cache_hits": engine.hits,
                     "cache_misses": engine.misses, "engine_generated_tokens": engine.generated_tokens}  # fmt: skip
        yield beam.pvalue.TaggedOutput(STATS, stats_row)


class JudgePaths(beam.PTransform):
    """Evidence -> {evidence (with critiques), critiques (evidence rows), dead_letters, stats per batch}."""

    def __init__(self, config: Config, cache_dir: str | None = None):
        super().__init__()
        self.config = config
        self.cache_dir = cache_dir if config.cache.enabled else None

    def expand(self, evidence: beam.PCollection) -> dict[str, beam.PCollection]:
        judge = beam.ParDo(_JudgeBatch(self.config, self.cache_dir)).with_outputs(
            CRITIQUES, DEAD, STATS, main="evidence"
        )
        per_batch = self.config.search.problems_per_batch
        outputs = (
            evidence
            | "Join cached critiques" >> WithCachedSamples(self.cache_dir, lambda ev: ev.problem.problem_id)
            | "Batch for the judge" >> Batches(per_batch, lambda item: item[0].problem.problem_id)
            | "Critique paths" >> with_accelerator(judge, self.config)
        )
        # Critiques are generated work too: a downstream retry never redoes them (docs/infrastructure.md §4).
        judged = outputs["evidence"] | "Checkpoint critiques" >> beam.Reshuffle()
        return {"evidence": judged, CRITIQUES: outputs[CRITIQUES], DEAD: outputs[DEAD], STATS: outputs[STATS]}
