"""Record types shared by every stage: problems, generation requests and samples, solutions, completions.

Plain dataclasses, no Beam and no engine imports, so annotators and searches can use them as pure data.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Problem:
    """A question with a reference answer (docs/design.md §1)."""

    problem_id: str
    question: str
    answer: str
    domain: str = "math"
    source: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, row: dict[str, Any]) -> Problem:
        return cls(**{f.name: row[f.name] for f in dataclasses.fields(cls) if f.name in row})


@dataclass(frozen=True)
class SamplingParams:
    """What an engine needs to sample; `seed` is per request (docs/design.md §5)."""

    temperature: float = 0.8
    top_p: float = 1.0
    max_tokens: int = 64
    stop: tuple[str, ...] = ()
    seed: int = 0


@dataclass(frozen=True)
class Request:
    """One generation request: `n` samples of `prompt`.

    `key` names the request inside its search (e.g. "p17/sol" or "p17/s2/t3"); it is the request identity that
    seeds derive from and the evidence records point back to. `problem_id` is the problem whose search asked for
    it, set when the requests of many problems are merged into engine calls (the sample cache files by it).
    """

    prompt: str
    n: int
    sampling: SamplingParams
    key: str = ""
    problem_id: str = ""


@dataclass(frozen=True)
class Sample:
    """One generated continuation. `text` excludes the prompt and any stop string the engine dropped."""

    text: str
    finish_reason: str  # "stop" | "length" | "error"
    n_tokens: int
    prompt_tokens: int = 0
    seed: int | None = None


@dataclass
class Solution:
    """One policy sample for a problem, cut into steps (docs/design.md §1)."""

    problem_id: str
    solution_index: int
    text: str
    steps: list[str]
    step_ends: list[int]  # char offset in `text` where each step ends; prefix t = text[: step_ends[t]]
    final_answer: str | None
    outcome_correct: bool | None
    verdict_reason: str
    finish_reason: str
    n_tokens: int
    seed: int | None = None


@dataclass
class Completion:
    """A continuation sampled from a solution prefix (an MC rollout)."""

    problem_id: str
    solution_index: int
    step_index: int  # the prefix holds steps 0..step_index
    completion_index: int
    text: str
    final_answer: str | None
    correct: bool | None
    verdict_reason: str
    finish_reason: str
    n_tokens: int
    seed: int | None = None


def derive_seed(run_seed: int, problem_id: str, request_key: str) -> int:
    """A per-request seed from (run seed, problem, request identity) (docs/design.md §5).

    One constant seed for every request makes samples of different prompts move in lockstep in vLLM
    (docs/cpu.md §4), so every request gets its own. 31 bits keep every backend happy; vLLM
    gives the i-th of n samples seed + i, so seeds are spaced by a multiple of 2**16 via the hash.
    """
    digest = hashlib.blake2b(f"{run_seed}\x1f{problem_id}\x1f{request_key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % (2**31 - 2**16)


def path_id(scope: str, steps: list[str]) -> str:
    """Stable id of a labelled path: a hash of its scope (the problem id; MC uses `problem_id#solution_index`, since
    two samples can share steps) and its steps."""
    return hashlib.sha256(json.dumps([scope, steps]).encode()).hexdigest()[:24]


def prefix_key(prefix: str, namespace: str = "") -> str:
    """Request identity of a step prefix: identical prefixes are estimated once, with one seed; `namespace` keeps
    one search's keys (and so its seeds) apart from another's ("omegaprm/")."""
    return f"{namespace}prefix/" + hashlib.sha256(prefix.encode()).hexdigest()[:20]
