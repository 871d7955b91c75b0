"""Containment: an exception on one element becomes that element's dead letter, and the run goes on.

On Beam an exception that leaves a DoFn fails its bundle; the runner retries the bundle and then fails the whole
job, so one hostile problem, solution or step would stop a run. Every stage after reading therefore does its
per-element work through `contain`: the element's outputs are buffered and emitted only when all of them were
made; otherwise the element becomes one dead letter (stage, source, reason, row) and nothing else of it is emitted,
so a half-labelled problem never reaches the shards and the counts still add up (docs/security.md, rule 1).

- `contain(stage, work, source, row)`: one element (a problem, its evidence, a labelled path).
- `at_stage(stage)`: inside `work`, names the stage that failed (verify, judge, filter) when it is not `stage`.
- `contain_group(stage, items, work, check, describe)`: a stage that works on a group at once (balance, a
  shard) retries the group without the items that fail on their own, so only they become dead letters.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import apache_beam as beam

from transforms.read import DEAD, dead_letter

log = logging.getLogger(__name__)

T = TypeVar("T")

# The longest error text kept in a reason: hostile input can make an exception message as large as the input.
MAX_REASON_CHARS = 500


class StageFailure(Exception):
    """An exception raised inside `at_stage(stage)`, carrying the stage it happened at."""

    def __init__(self, stage: str, error: BaseException):
        super().__init__(f"{stage}: {error}")
        self.stage = stage
        self.error = error


@contextmanager
def at_stage(stage: str) -> Iterator[None]:
    """Attribute an exception raised in this block to `stage` (the innermost stage wins)."""
    try:
        yield
    except StageFailure:
        raise
    except Exception as error:  # noqa: BLE001 - re-raised with its stage; `contain` makes it a dead letter
        raise StageFailure(stage, error) from error


def bounded(text: str) -> str:
    """`text` on one line and at most MAX_REASON_CHARS long, for a dead letter's reason."""
    text = " ".join(str(text).split())
    return text if len(text) <= MAX_REASON_CHARS else text[:MAX_REASON_CHARS] + "..."


def failure_reason(stage: str, error: BaseException) -> str:
    """`<stage> failed: <type>: <message>`; the manifest groups reasons by the text before the first colon."""
    return f"{stage} failed: {type(error).__name__}: {bounded(str(error))}"


def failure_of(stage: str, error: BaseException) -> tuple[str, str]:
    """(stage, reason) of an exception caught for an element of `stage`."""
    if isinstance(error, StageFailure):
        stage, error = error.stage, error.error
    return stage, failure_reason(stage, error)


@dataclass
class Contained:
    """The outputs of one element's work, or its dead letter; iterating yields what the DoFn should emit."""

    outputs: list[Any] = field(default_factory=list)
    dead: dict[str, str] | None = None

    def __iter__(self) -> Iterator[Any]:
        yield from self.outputs
        if self.dead is not None:
            yield beam.pvalue.TaggedOutput(DEAD, self.dead)


def contain(stage: str, work: Callable[[], Iterable[Any]], source: str, row: Any) -> Contained:
    """Run one element's `work` to the end; on an exception, its dead letter instead of any of its outputs."""
    try:
        return Contained(outputs=list(work()))
    except Exception as error:  # noqa: BLE001 - one element fails, the run goes on (module docstring)
        failed_stage, reason = failure_of(stage, error)
        log.warning("dead letter at %s (%s): %s", failed_stage, source, reason)
        log.debug("traceback of the dead letter at %s (%s)", failed_stage, source, exc_info=True)
        return Contained(dead=dead_letter(failed_stage, source, reason, row))


def isolate(items: Sequence[T], check: Callable[[T], Any]) -> tuple[list[T], list[tuple[T, BaseException]]]:
    """Split `items` into those `check` accepts one by one and those it raises on (with the exception)."""
    good: list[T] = []
    bad: list[tuple[T, BaseException]] = []
    for item in items:
        try:
            check(item)
        except Exception as error:  # noqa: BLE001 - the failing item is reported by the caller
            bad.append((item, error))
        else:
            good.append(item)
    return good, bad


def contain_group(
    stage: str,
    items: Sequence[T],
    work: Callable[[Sequence[T]], Any],
    check: Callable[[T], Any],
    describe: Callable[[T], tuple[str, Any]],
) -> tuple[Any, list[T], list[dict[str, str]]]:
    """`work(items)` for a stage that works on a group at once: (result, items it ran on, dead letters).

    On an exception, the items `check` raises on alone become dead letters and `work` runs again on the rest; if
    that fails too (items that fail only together), every item is a dead letter and the result is None.
    `describe(item)` gives the (source, row) of an item's dead letter.
    """
    try:
        return work(items), list(items), []
    except Exception as first:  # noqa: BLE001 - retried below without the items that fail alone
        log.warning(
            "%s failed on a group of %d items (%s); retrying without the failing ones", stage, len(items), first
        )
    good, bad = isolate(items, check)
    letters = [_letter(stage, describe(item), failure_reason(stage, error)) for item, error in bad]
    try:
        return work(good), good, letters
    except Exception as error:  # noqa: BLE001 - no single item to blame: each is a dead letter
        reason = failure_reason(stage, error)
        return None, [], letters + [_letter(stage, describe(item), reason) for item in good]


def _letter(stage: str, source_row: tuple[str, Any], reason: str) -> dict[str, str]:
    source, row = source_row
    return dead_letter(stage, source, reason, row)


def problem_id_of(letter: dict[str, str]) -> str | None:
    """The problem id a dead letter's row names (a problem, its evidence or a labelled path), or None."""
    try:
        row = json.loads(letter["row"])
    except (TypeError, ValueError, RecursionError):
        return None
    value = row.get("problem_id") if isinstance(row, dict) else None
    return value if isinstance(value, str) else None
