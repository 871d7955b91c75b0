"""A content-keyed generation cache in front of an engine.

Every sample is keyed by what determines it (shared/reference/infra.md §4): the engine fingerprint (backend,
library version, model and revision or weight hash, settings that change outputs), the rendered prompt, the
sampling parameters without `n`, the per-sample seed (vLLM gives sample i of `(prompt, n, seed)` the seed
`seed + i`) and the schema version. A request is answered from cached samples where they exist; only the missing
samples go to the engine, as requests `(prompt, 1 or more, seed + i)`, so a rerun with a larger budget generates
only the new samples. The pipeline joins each problem with its cached samples (transforms/search.py); this class
only does the lookup.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

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
        problem_of: Callable[[Request], str],
    ):
        self._factory = engine_factory
        self._engine: Any = None
        self.fingerprint = fingerprint
        self.entries = dict(entries)
        self.problem_of = problem_of
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
        self._current = list(requests)
        answers: list[list[Sample | None]] = []
        missing: list[tuple[int, int, Request]] = []  # (request index, sample index, single-sample request)
        for r_index, request in enumerate(requests):
            row: list[Sample | None] = []
            for i in range(request.n):
                seed = request.sampling.seed + i
                entry = self.entries.get(sample_key(self.fingerprint, request, seed))
                if entry is None:
                    row.append(None)
                    missing.append((r_index, i, request))
                else:
                    row.append(entry.sample())
            answers.append(row)
        self.hits += sum(r.n for r in requests) - len(missing)
        self.misses += len(missing)
        if missing:
            self._fill(answers, missing)
        return [[s for s in row if s is not None] for row in answers]

    def _fill(self, answers: list[list[Sample | None]], missing: list[tuple[int, int, Request]]) -> None:
        # Consecutive missing samples of one request become one request (prompt, run length, seed + first index),
        # which keeps the prefix cache and n>1 batching of the engine.
        runs: list[tuple[int, int, Request]] = []  # (request index, first sample index, request for the run)
        for r_index, i, request in missing:
            if runs and runs[-1][0] == r_index and runs[-1][1] + runs[-1][2].n == i:
                first, run = runs[-1][1], runs[-1][2]
                runs[-1] = (r_index, first, replace(run, n=run.n + 1))
            else:
                seed = request.sampling.seed + i
                runs.append((r_index, i, replace(request, n=1, sampling=replace(request.sampling, seed=seed))))
        samples = self.engine.generate([run for _, _, run in runs])
        if self.on_generated is not None:
            self.on_generated(sum(len(g) for g in samples), sum(s.n_tokens for g in samples for s in g))
        fresh: list[CacheEntry] = []
        for (r_index, first, run), got in zip(runs, samples, strict=True):
            original = self._current[r_index]
            for offset, sample in enumerate(got):
                self.generated_tokens += sample.n_tokens
                seed = run.sampling.seed + offset
                sample = replace(sample, seed=seed)
                answers[r_index][first + offset] = sample
                entry = CacheEntry(
                    key=sample_key(self.fingerprint, run, seed),
                    problem_id=self.problem_of(original),
                    text=sample.text,
                    finish_reason=sample.finish_reason,
                    n_tokens=sample.n_tokens,
                    prompt_tokens=sample.prompt_tokens,
                    seed=seed,
                )
                self.entries[entry.key] = entry
                fresh.append(entry)
        self.new_entries.extend(fresh)
        if self.on_new is not None:
            self.on_new(fresh)

    def close(self) -> None:
        if self._engine is not None:
            self._engine.close()
