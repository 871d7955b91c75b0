"""A content-keyed generation cache in front of an engine.

Every sample is keyed by what determines it (docs/infrastructure.md §4): the engine fingerprint (backend,
library version, model and revision or weight hash, settings that change outputs), the rendered prompt, the
sampling parameters without `n`, the per-sample seed (vLLM gives sample i of `(prompt, n, seed)` the seed
`seed + i`) and the schema version. A request is answered from cached samples where they exist; only the missing
samples go to the engine, as requests `(prompt, 1 or more, seed + i)`, so a rerun with a larger budget generates
only the new samples. The pipeline joins each problem with its cached samples (transforms/search.py) and `engines.handler`
persists new ones; this class only does the lookup. `stream()` does the same per request for the request-level driver (`engines.base`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Callable, Hashable, Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

from engines.base import open_stream
from schemas.records import Request, Sample
from schemas.tables import SCHEMA_VERSION


def sample_key(fingerprint: str, request: Request, sample_seed: int) -> str:
    """The cache key of sample `sample_seed` of `request` (its n and its own seed do not enter)."""
    sampling = {k: v for k, v in asdict(request.sampling).items() if k != "seed"}
    payload = [fingerprint, SCHEMA_VERSION, request.prompt, sampling, sample_seed]
    return hashlib.sha256(json.dumps(payload, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


@dataclass(frozen=True)
class CacheEntry:
    key: str
    problem_id: str
    text: str
    finish_reason: str
    n_tokens: int
    prompt_tokens: int
    seed: int

    def sample(self) -> Sample:
        return Sample(self.text, self.finish_reason, self.n_tokens, self.prompt_tokens, self.seed)


class CachedEngine:
    """Answers requests from `entries` first and sends only the missing samples to `engine_factory()`.

    The engine is built on the first miss, so a fully cached rerun never loads a model. New samples are kept in
    `new_entries` for the caller to persist; `hits`/`misses` count samples.
    """

    def __init__(
        self,
        engine_factory: Callable[[], Any],
        fingerprint: str,
        entries: dict[str, CacheEntry],
    ):
        self._factory = engine_factory
        self._engine: Any = None
        self.fingerprint = fingerprint
        self.entries = dict(entries)
        self.new_entries: list[CacheEntry] = []
        self.on_new: Callable[[list[CacheEntry]], None] | None = None  # persists each call's new samples
        self.on_generated: Callable[[int, int], None] | None = None  # (samples, tokens) after each engine call
        self.hits = 0
        self.misses = 0
        self.generated_tokens = 0  # tokens of the samples the engine actually generated

    @property
    def name(self) -> str:
        return f"cached({self.engine.name})" if self._engine is not None else "cached"

    @property
    def model(self) -> str:
        return self.engine.model

    @property
    def engine(self) -> Any:
        if self._engine is None:
            self._engine = self._factory()
        return self._engine

    def generate(self, requests: Sequence[Request]) -> list[list[Sample]]:
        answers = [self._lookup(request) for request in requests]
        runs = [
            (r_index, first, run)
            for r_index, request in enumerate(requests)
            for first, run in _runs(request, answers[r_index])
        ]
        if runs:
            samples = self.engine.generate([run for _, _, run in runs])
            if self.on_generated is not None:
                self.on_generated(sum(len(g) for g in samples), sum(s.n_tokens for g in samples for s in g))
            fresh: list[CacheEntry] = []
            for (r_index, first, run), got in zip(runs, samples, strict=True):
                fresh.extend(self._record(requests[r_index], answers[r_index], first, run, got))
            self._persist(fresh)
        return [[s for s in row if s is not None] for row in answers]

    @contextlib.contextmanager
    def stream(self) -> Iterator[_CachedStream]:
        """A `RequestStream`: each request is answered from the cache where it can be, its missing samples go to the
        engine's own stream (a `BatchStream` for an engine without one), opened on the first miss."""
        with contextlib.ExitStack() as stack:
            stream = _CachedStream(self, stack)
            try:
                yield stream
            finally:
                stream.flush()

    def _lookup(self, request: Request) -> list[Sample | None]:
        """The request's samples from the cache, None where missing; counts hits and misses."""
        row: list[Sample | None] = []
        for i in range(request.n):
            entry = self.entries.get(sample_key(self.fingerprint, request, request.sampling.seed + i))
            row.append(None if entry is None else entry.sample())
        missing = row.count(None)
        self.hits += request.n - missing
        self.misses += missing
        return row

    def _record(
        self, original: Request, row: list[Sample | None], first: int, run: Request, got: list[Sample]
    ) -> list[CacheEntry]:
        """Put a run's generated samples in `row` from index `first` and into the cache; returns the new entries."""
        fresh: list[CacheEntry] = []
        for offset, sample in enumerate(got):
            self.generated_tokens += sample.n_tokens
            seed = run.sampling.seed + offset
            sample = replace(sample, seed=seed)
            row[first + offset] = sample
            entry = CacheEntry(
                key=sample_key(self.fingerprint, run, seed),
                problem_id=original.problem_id,
                text=sample.text,
                finish_reason=sample.finish_reason,
                n_tokens=sample.n_tokens,
                prompt_tokens=sample.prompt_tokens,
                seed=seed,
            )
            self.entries[entry.key] = entry
            fresh.append(entry)
        return fresh

    def _persist(self, fresh: list[CacheEntry]) -> None:
        self.new_entries.extend(fresh)
        if fresh and self.on_new is not None:
            self.on_new(fresh)

    def close(self) -> None:
        if self._engine is not None:
            self._engine.close()


def _runs(request: Request, row: list[Sample | None]) -> list[tuple[int, Request]]:
    """The missing samples of `row` as requests: consecutive ones become one `(prompt, run length, seed + first)`,
    which keeps the engine's prefix cache and n>1 batching."""
    runs: list[tuple[int, Request]] = []  # (first sample index, request for the run)
    for i, sample in enumerate(row):
        if sample is not None:
            continue
        if runs and runs[-1][0] + runs[-1][1].n == i:
            runs[-1] = (runs[-1][0], replace(runs[-1][1], n=runs[-1][1].n + 1))
        else:
            runs.append((i, replace(request, n=1, sampling=replace(request.sampling, seed=request.sampling.seed + i))))
    return runs


class _CachedStream:
    """`CachedEngine.stream()`: cached samples come back at the next step, missing ones when the engine has them.

    New samples are persisted every `flush_samples` and when the stream ends, not per request: one cache file per
    finished request would be thousands of tiny files.
    """

    flush_samples = 4096

    def __init__(self, cached: CachedEngine, stack: contextlib.ExitStack) -> None:
        self._cached = cached
        self._stack = stack
        self._inner: Any = None
        self._ready: list[tuple[Hashable, list[Sample]]] = []
        # A request with missing samples, by id: its tag, itself, its samples so far, its runs still generating.
        self._waiting: dict[int, tuple[Hashable, Request, list[Sample | None], int]] = {}
        self._ids = 0
        self._fresh: list[CacheEntry] = []

    def _engine_stream(self) -> Any:
        if self._inner is None:
            self._inner = self._stack.enter_context(open_stream(self._cached.engine))
        return self._inner

    def submit(self, tag: Hashable, request: Request) -> None:
        row = self._cached._lookup(request)
        runs = _runs(request, row)
        if not runs:
            self._ready.append((tag, [s for s in row if s is not None]))
            return
        self._ids += 1
        self._waiting[self._ids] = (tag, request, row, len(runs))
        for first, run in runs:
            self._engine_stream().submit((self._ids, first, run), run)

    def step(self) -> list[tuple[Hashable, list[Sample]]]:
        done, self._ready = self._ready, []
        if not self._waiting:
            return done
        finished = self._engine_stream().step()
        for (wait_id, first, run), got in finished:
            tag, request, row, left = self._waiting[wait_id]
            self._fresh.extend(self._cached._record(request, row, first, run, got))
            if left > 1:
                self._waiting[wait_id] = (tag, request, row, left - 1)
                continue
            del self._waiting[wait_id]
            done.append((tag, [s for s in row if s is not None]))
        if finished and self._cached.on_generated is not None:
            got_all = [s for _, got in finished for s in got]
            self._cached.on_generated(len(got_all), sum(s.n_tokens for s in got_all))
        if len(self._fresh) >= self.flush_samples:
            self.flush()
        return done

    def in_flight(self) -> int:
        engine = self._inner.in_flight() if self._inner is not None else 0
        return engine + sum(len(samples) for _, samples in self._ready)

    def abort(self) -> None:
        if self._inner is not None:
            self._inner.abort()
        self._waiting.clear()
        self._ready.clear()

    def flush(self) -> None:
        """Persist the samples generated since the last flush."""
        fresh, self._fresh = self._fresh, []
        self._cached._persist(fresh)
