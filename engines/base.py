"""The engine contract (DESIGN.md, "Contracts"): `generate(requests) -> list[list[Sample]]`, batched by design.

Backend modules import their libraries lazily so that importing `engines` costs nothing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Protocol, TypeVar

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
