"""Runs many searches at once and merges their requests into engine calls (docs/design.md §6).

A search is a generator: it yields a list of `Request`s (one round), receives the samples for them (one list of
`request.n` samples per request, in order) and finally returns its result. The driver advances every live search
by one round per engine call, so the engine sees the requests of all problems together while each search stays
sequential.

With `sequences_in_flight`, searches start in order only while the live ones ask for fewer sequences than that
per round; each round starts more as others end. The calls then stay near that size until the searches run out,
instead of shrinking round by round as the searches of one batch finish (the tail of a batch of searches is a
few long searches asking for a handful of sequences per call).

With `request_level`, the driver does not wait for rounds: it hands each request to the engine's `RequestStream`
(engines/base.py) as soon as its search asks for it, and sends a search its answers as soon as the last request of
its round is done, so the next round joins the engine's running batch while the other searches' requests are still
being generated. On vLLM that is continuous batching across searches: no engine call ends waiting for its longest
rollout while the searches it has answered sit idle. The samples, and so the results, are the same either way;
only the order in which the searches advance differs. Fill is then counted per engine step.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from typing import Any

from engines.base import Engine, EngineError, checked_generate, open_stream, with_retries
from schemas.records import Request, Sample

log = logging.getLogger(__name__)

Search = Generator[list[Request], list[list[Sample]], Any]


@dataclass
class SearchOutcome:
    """What became of one search: its result, or the reason it failed."""

    result: Any = None
    error: str | None = None


@dataclass
class DriverStats:
    """Engine-side figures of one `run_searches` call. `unit`: what `calls` and `call_sequences` count, an engine
    call (rounds) or an engine step with the sequences in flight during it (request level)."""

    unit: str = "call"
    calls: int = 0
    requests: int = 0
    sequences: int = 0
    generated_tokens: int = 0
    engine_seconds: float = 0.0
    call_sequences: list[int] = field(default_factory=list)

    def merge(self, other: DriverStats) -> None:
        self.calls += other.calls
        self.requests += other.requests
        self.sequences += other.sequences
        self.generated_tokens += other.generated_tokens
        self.engine_seconds += other.engine_seconds
        self.call_sequences.extend(other.call_sequences)

    def batch_fill(self, capacity: int) -> dict[str, float]:
        """Mean and 10th percentile of sequences per call as a fraction of `capacity`."""
        if not self.call_sequences:
            return {"mean": 0.0, "p10": 0.0}
        fills = sorted(min(1.0, s / capacity) for s in self.call_sequences)
        return {"mean": sum(fills) / len(fills), "p10": fills[int(0.1 * (len(fills) - 1))]}


def run_searches(
    searches: Sequence[Search],
    engine: Engine,
    *,
    max_sequences_per_call: int = 4096,
    sequences_in_flight: int | None = None,
    attempts: int = 3,
    backoff_s: float = 1.0,
    sleep: Callable[[float], None] = time.sleep,
    on_done: Callable[[int], None] | None = None,
    request_level: bool = False,
) -> tuple[list[SearchOutcome], DriverStats]:
    """Drive `searches` to completion; a failing search or engine call never stops the others.

    `sequences_in_flight`: start a search only while the live ones ask for fewer sequences per round (None: all at
    once). Searches start in the order given, so the calls are the same for the same searches.
    `on_done(index)` is called as each search ends, with a result or an error (progress of a long batch).
    `request_level`: requests go to the engine one by one as they come (its `stream()`, or a `BatchStream`).
    """
    if sequences_in_flight is not None and sequences_in_flight < 1:
        raise ValueError(f"sequences_in_flight must be at least 1, got {sequences_in_flight}")
    if request_level:
        return _run_request_level(
            searches, engine, max_sequences_per_call, sequences_in_flight, attempts, backoff_s, sleep, on_done
        )
    outcomes = [SearchOutcome() for _ in searches]
    stats = DriverStats()
    pending: dict[int, list[Request]] = {}
    started = 0

    def advance(index: int, answer: list[list[Sample]] | None) -> None:
        search = searches[index]
        try:
            requests = next(search) if answer is None else search.send(answer)
        except StopIteration as stop:
            outcomes[index].result = stop.value
            done(index)
            return
        except Exception as error:  # noqa: BLE001 - a broken search is reported, the others go on
            outcomes[index].error = f"search failed: {type(error).__name__}: {error}"
            done(index)
            return
        pending[index] = list(requests)

    def done(index: int) -> None:
        pending.pop(index, None)
        if on_done is not None:
            on_done(index)

    def start_more() -> None:
        nonlocal started
        asked = sum(r.n for reqs in pending.values() for r in reqs)
        while started < len(searches) and (sequences_in_flight is None or asked < sequences_in_flight):
            advance(started, None)
            asked += sum(r.n for r in pending.get(started, ()))
            started += 1

    start_more()
    while pending or started < len(searches):
        # Searches that asked for nothing this round are answered at once.
        for index in [i for i, reqs in pending.items() if not reqs]:
            advance(index, [])
        order = sorted(pending)
        for group in _pack(order, pending, max_sequences_per_call):
            answers = _generate_group(group, pending, engine, stats, attempts, backoff_s, sleep)
            for index in group:
                if isinstance(answers[index], str):
                    outcomes[index].error = answers[index]
                    searches[index].close()
                    done(index)
                else:
                    advance(index, answers[index])
        start_more()
    return outcomes, stats


def _pack(order: list[int], pending: dict[int, list[Request]], limit: int) -> list[list[int]]:
    """Split the live searches into engine calls of at most `limit` sequences (a search is never split)."""
    groups: list[list[int]] = []
    current: list[int] = []
    size = 0
    for index in order:
        need = sum(r.n for r in pending[index])
        if current and size + need > limit:
            groups.append(current)
            current, size = [], 0
        current.append(index)
        size += need
    if current:
        groups.append(current)
    return groups


def _generate_group(
    group: list[int],
    pending: dict[int, list[Request]],
    engine: Engine,
    stats: DriverStats,
    attempts: int,
    backoff_s: float,
    sleep: Callable[[float], None],
) -> dict[int, list[list[Sample]] | str]:
    """One merged engine call; on failure, each search is retried alone so one bad request fails one search."""
    requests = [r for index in group for r in pending[index]]
    try:
        samples = _call(engine, requests, stats, attempts, backoff_s, sleep)
    except EngineError as error:
        if len(group) == 1:
            return {group[0]: str(error)}
        answers: dict[int, list[list[Sample]] | str] = {}
        for index in group:
            answers.update(_generate_group([index], pending, engine, stats, attempts, backoff_s, sleep))
        return answers
    answers = {}
    cursor = 0
    for index in group:
        count = len(pending[index])
        answers[index] = samples[cursor : cursor + count]
        cursor += count
    return answers


def _call(
    engine: Engine,
    requests: list[Request],
    stats: DriverStats,
    attempts: int,
    backoff_s: float,
    sleep: Callable[[float], None],
) -> list[list[Sample]]:
    started = time.perf_counter()
    out = with_retries(
        lambda: checked_generate(engine, requests),
        attempts=attempts,
        backoff_s=backoff_s,
        what=f"{engine.name} generate",
        sleep=sleep,
    )
    stats.engine_seconds += time.perf_counter() - started
    stats.calls += 1
    stats.requests += len(requests)
    sequences = sum(r.n for r in requests)
    stats.sequences += sequences
    stats.call_sequences.append(sequences)
    stats.generated_tokens += sum(s.n_tokens for samples in out for s in samples)
    return out


def _run_request_level(
    searches: Sequence[Search],
    engine: Engine,
    max_sequences_per_call: int,
    sequences_in_flight: int | None,
    attempts: int,
    backoff_s: float,
    sleep: Callable[[float], None],
    on_done: Callable[[int], None] | None,
) -> tuple[list[SearchOutcome], DriverStats]:
    """`run_searches` with requests submitted as they come and rounds answered as they complete.

    A failed engine step aborts what is in flight; each waiting search's round is then retried alone with
    `generate` (as a failed merged call is in the round driver), so one bad request fails one search.
    """
    outcomes = [SearchOutcome() for _ in searches]
    stats = DriverStats(unit="step")
    rounds: dict[int, list[Request]] = {}  # the round each waiting search asked for
    answers: dict[int, list[list[Sample] | None]] = {}
    left: dict[int, int] = {}  # requests of that round not answered yet
    started = 0
    context = open_stream(engine, max_sequences_per_call)

    def end(index: int, result: Any = None, error: str | None = None) -> None:
        outcomes[index].result, outcomes[index].error = result, error
        for table in (rounds, answers, left):
            table.pop(index, None)
        if error is not None:
            searches[index].close()
        if on_done is not None:
            on_done(index)

    with context as stream:

        def advance(index: int, answer: list[list[Sample]] | None) -> None:
            search = searches[index]
            while True:
                try:
                    requests = next(search) if answer is None else search.send(answer)
                except StopIteration as stop:
                    end(index, result=stop.value)
                    return
                except Exception as error:  # noqa: BLE001 - a broken search is reported, the others go on
                    end(index, error=f"search failed: {type(error).__name__}: {error}")
                    return
                if requests:
                    break
                answer = []  # a round that asks for nothing is answered at once
            rounds[index], answers[index], left[index] = list(requests), [None] * len(requests), len(requests)
            for position, request in enumerate(requests):
                try:
                    stream.submit((index, position), request)
                except Exception as error:  # noqa: BLE001 - a request the engine refuses fails its search only
                    end(index, error=f"engine refused a request: {type(error).__name__}: {error}")
                    return

        def start_more() -> None:
            nonlocal started
            while started < len(searches) and (sequences_in_flight is None or stream.in_flight() < sequences_in_flight):
                started += 1
                advance(started - 1, None)

        def answered(index: int, position: int, samples: list[Sample]) -> None:
            if index not in rounds:
                return  # its search has already failed
            answers[index][position] = samples
            left[index] -= 1
            stats.requests += 1
            stats.sequences += len(samples)
            stats.generated_tokens += sum(s.n_tokens for s in samples)
            if left[index] == 0:
                answer = answers[index]
                del rounds[index], answers[index], left[index]
                advance(index, answer)  # type: ignore[arg-type] - every slot is filled

        start_more()
        while rounds or started < len(searches):
            sequences = stream.in_flight()
            began = time.perf_counter()
            try:
                finished = stream.step()
            except Exception as error:  # noqa: BLE001 - the waiting searches are retried one by one below
                stats.engine_seconds += time.perf_counter() - began
                log.warning("engine step failed (%s); retrying %d searches one by one", error, len(rounds))
                stream.abort()
                retried = {index: list(requests) for index, requests in rounds.items()}
                # Every retry runs before any search moves on: a new submission would mix into these `generate`s.
                results = {
                    index: _generate_group([index], retried, engine, stats, attempts, backoff_s, sleep)[index]
                    for index in retried
                }
                for index, result in results.items():
                    rounds.pop(index, None)
                    if isinstance(result, str):
                        end(index, error=result)
                    else:
                        advance(index, result)
                start_more()
                continue
            stats.engine_seconds += time.perf_counter() - began
            if rounds and not finished and not stream.in_flight():
                for index in list(rounds):  # nothing in flight will ever answer them: an engine bug, not a hang
                    end(index, error="engine lost the requests of this search (nothing in flight, no answer)")
            if sequences or finished:
                stats.calls += 1
                stats.call_sequences.append(sequences)
            for (index, position), samples in finished:
                answered(index, position, samples)
            start_more()
    return outcomes, stats
