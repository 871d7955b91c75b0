"""The engine contract (docs/design.md §4): `generate(requests) -> list[list[Sample]]`, batched by design.

An engine may also take requests one at a time as they come (`stream()`, a `RequestStream`): the vLLM engine adds
them to its running batch, so a search's next round joins the batch as soon as its last round is answered instead
of waiting for every other search. `BatchStream` gives any engine that interface on top of `generate`.

Backend modules import their libraries lazily so that importing `engines` costs nothing.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Hashable, Sequence
from typing import Any, Protocol, TypeVar

from schemas.records import Request, Sample, derive_seed  # noqa: F401 - re-exported

log = logging.getLogger(__name__)

T = TypeVar("T")


class EngineError(RuntimeError):
    """A backend failed to answer a batch of requests."""


class Engine(Protocol):
    """What answers generation requests. `generate` returns, per request, exactly `request.n` samples."""

    name: str
    model: str

    def generate(self, requests: Sequence[Request]) -> list[list[Sample]]: ...

    def close(self) -> None: ...


def with_retries(
    call: Callable[[], T], *, attempts: int, backoff_s: float, what: str, sleep: Callable[[float], None] = time.sleep
) -> T:
    """Run `call`, retrying with exponential backoff; re-raise the last error as EngineError."""
    last: BaseException | None = None
    for attempt in range(max(1, attempts)):
        try:
            return call()
        except Exception as error:  # noqa: BLE001 - any backend error is retried, then reported
            last = error
            log.warning("%s failed (attempt %d/%d): %s", what, attempt + 1, attempts, error)
            if attempt + 1 < attempts:
                sleep(backoff_s * (2**attempt))
    raise EngineError(f"{what} failed after {attempts} attempts: {type(last).__name__}: {last}") from last


def checked_generate(engine: Engine, requests: Sequence[Request]) -> list[list[Sample]]:
    """`engine.generate(requests)`, refused unless it answers every request with exactly `request.n` samples."""
    out = engine.generate(requests)
    if len(out) != len(requests) or any(len(s) != r.n for s, r in zip(out, requests, strict=False)):
        raise EngineError("engine returned the wrong number of samples")
    return out


class RequestStream(Protocol):
    """Requests in, answers out as each is done: the request-level form of an engine.

    `submit(tag, request)` queues one request; `step()` runs the engine one step and returns `(tag, samples)` for
    every request that finished in it (`request.n` samples each, as `generate` would give); `in_flight()` counts
    the sequences submitted and not yet returned; `abort()` drops them all (after a failed step).
    """

    def submit(self, tag: Hashable, request: Request) -> None: ...

    def step(self) -> list[tuple[Hashable, list[Sample]]]: ...

    def in_flight(self) -> int: ...

    def abort(self) -> None: ...


class BatchStream:
    """A `RequestStream` over any engine's `generate`: each step is one call with the requests queued so far
    (at most `max_sequences` sequences, whole requests, in the order they came)."""

    def __init__(self, engine: Engine, max_sequences: int = 4096) -> None:
        self.engine = engine
        self.max_sequences = max_sequences
        self._queue: list[tuple[Hashable, Request]] = []

    def submit(self, tag: Hashable, request: Request) -> None:
        self._queue.append((tag, request))

    def step(self) -> list[tuple[Hashable, list[Sample]]]:
        taken, size = 0, 0
        while taken < len(self._queue) and (taken == 0 or size + self._queue[taken][1].n <= self.max_sequences):
            size += self._queue[taken][1].n
            taken += 1
        batch = self._queue[:taken]
        if not batch:
            return []
        samples = checked_generate(self.engine, [request for _, request in batch])
        del self._queue[:taken]
        return [(tag, got) for (tag, _), got in zip(batch, samples, strict=True)]

    def in_flight(self) -> int:
        return sum(request.n for _, request in self._queue)

    def abort(self) -> None:
        self._queue.clear()


def open_stream(engine: Any, max_sequences: int = 4096) -> contextlib.AbstractContextManager[Any]:
    """The engine's own `stream()` where its class has one, else a `BatchStream` over its `generate`.

    The class, not the instance, is asked: a proxy to an engine in another process (Beam's MultiProcessShared)
    forwards any name, but a stream cannot cross processes, so a proxied engine is driven through `generate`.
    """
    if callable(getattr(type(engine), "stream", None)):
        return engine.stream()
    return contextlib.nullcontext(BatchStream(engine, max_sequences))
