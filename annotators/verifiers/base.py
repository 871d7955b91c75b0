"""The verifier contract: per-step verdicts `True` / `False` / `None` (cannot check), each with a reason."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from schemas.records import Problem


@dataclass(frozen=True)
class StepVerdict:
    """One step's verdict from a solver or executor; `None` means the step could not be checked."""

    verdict: bool | None
    reason: str


class Verifier(Protocol):
    """An annotator backed by a solver or an executor (docs/design.md §1). Pure: no model calls."""

    name: str

    def verify(self, problem: Problem, steps: list[str]) -> list[StepVerdict]: ...


def first_flagged(verdicts: list[StepVerdict]) -> int:
    """Index of the first step verified False, or -1."""
    return next((i for i, v in enumerate(verdicts) if v.verdict is False), -1)


def as_config(obj: Any) -> dict[str, Any]:
    """Verifier options arrive as plain dicts from the YAML config."""
    return dict(obj or {})
