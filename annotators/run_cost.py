"""What a run costs: sequences, generated tokens, GPU-hours and dollars, before it runs (`stepforge estimate`) and
after (the manifest's `spend`). Pure arithmetic: a config's search settings and a calibration in, figures out.

Sequences per problem, from the searches themselves:
- **MC** (Math-Shepherd, `annotators/mc.py`): N solutions, then k completions from every step prefix but the last
  (the last step is graded by its own answer): N · (1 + k · (S − 1)) for S steps per solution. An upper bound:
  prefixes that solutions share are sampled once, and `search.prefilter` skips problems whose N solutions agree.
- **OmegaPRM** (`annotators/omegaprm.py`, docs/omegaprm.md "Rollout budget"): at most the pre-filter, the root's k
  rollouts and `search_limit` binary searches of P = ⌈log2 S⌉ probes of k rollouts; a capped `rollout_budget`
  lowers that. Searches usually spend well under it (cache hits, implied probes, questions dropped at root MC 0
  or 1), so the expectation comes from a finished run's measured sequences per problem when one is given.

GPU-hours and dollars use the per-GPU throughput and price ranges of docs/scale.md (`GPUS`), so every figure is a
range: fast GPU and low price to slow GPU and high price.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from annotators.omegaprm import OmegaPRMConfig, auto_rollout_budget, probes_per_search
from schemas.config import data_keys


@dataclass(frozen=True)
class GpuProfile:
    """One GPU type: generated tokens per second for a ~7B model with vLLM (batched), and on-demand $ per GPU-hour."""

    name: str
    tokens_per_second: tuple[float, float]  # (low, high)
    dollars_per_hour: tuple[float, float]  # (low, high)


# docs/scale.md has the sources of every number; a range where the sources disagree.
GPUS: dict[str, GpuProfile] = {
    "l4": GpuProfile("NVIDIA L4 24GB", (400.0, 1000.0), (0.70, 1.50)),
    "a100": GpuProfile("NVIDIA A100 80GB", (3000.0, 6000.0), (0.90, 4.00)),
    "h100": GpuProfile("NVIDIA H100 80GB", (5000.0, 12500.0), (1.50, 12.30)),
}


@dataclass(frozen=True)
class Calibration:
    """Measured (or assumed) per-sequence figures the search settings do not give."""

    tokens_per_sequence: float  # generated tokens per sampled sequence (a solution or a completion)
    steps_per_solution: float  # mean steps of a sampled solution
    source: str  # where the figures come from: a run folder, or "default"
    sequences_per_problem: float | None = None  # measured by a finished run (its search's real spend)
    search: dict[str, Any] | None = None  # the `search` section of the run that measured it


# A placeholder, not a measurement: GSM8K-like solutions of about 6 steps, sequences that stop on average halfway
# to `sampling.max_tokens` (solutions run most of it, completions from mid-solution prefixes the rest). A
# 20-problem run (`--set input.limit=20`) and `estimate --from RUN` replace it with measured figures.
DEFAULT_STEPS_PER_SOLUTION = 6.0
DEFAULT_TOKEN_FRACTION = 0.5


def default_calibration(max_tokens: int) -> Calibration:
    """The documented default calibration for a config whose sequences are capped at `max_tokens`."""
    return Calibration(max_tokens * DEFAULT_TOKEN_FRACTION, DEFAULT_STEPS_PER_SOLUTION, "default")


def calibration_from_manifest(manifest: dict[str, Any], source: str = "manifest") -> Calibration:
    """Tokens per sequence, steps per solution and sequences per problem, as a finished run measured them."""
    engine = manifest.get("engine") or {}
    counts = manifest.get("counts") or {}
    sequences = engine.get("sequences") or 0
    tokens = engine.get("generated_tokens") or 0
    paths = counts.get("paths") or 0
    problems = counts.get("problems_labelled") or counts.get("problems") or 0
    if not sequences or not paths or not problems:
        raise ValueError(f"{source}: the manifest counts no generated sequences or labelled paths to calibrate from")
    return Calibration(
        tokens_per_sequence=tokens / sequences,
        steps_per_solution=counts.get("steps", 0) / paths,  # one labelled path per solution (MC) or searched rollout
        source=source,
        sequences_per_problem=sequences / problems,
        search=(manifest.get("config") or {}).get("search"),
    )


def mc_sequences_per_problem(num_solutions: int, completions_per_step: int, steps_per_solution: float) -> float:
    """Math-Shepherd: N solutions and k completions from each of the S − 1 prefixes before the last step."""
    return num_solutions * (1 + completions_per_step * max(steps_per_solution - 1.0, 0.0))


def omegaprm_options(search: dict[str, Any]) -> OmegaPRMConfig:
    """OmegaPRM's knobs from a config's `search` section, as the pipeline reads them (k = completions_per_step)."""
    options = dict(search.get("omegaprm") or {})
    options.setdefault("k", search.get("completions_per_step", 8))
    if search.get("prefilter"):
        options.setdefault("prefilter_samples", 32)  # the paper's question filter, as the pipeline sets it
    return OmegaPRMConfig(**options)


def omegaprm_sequences_per_problem(search: dict[str, Any], steps_per_solution: float) -> float:
    """The most completions one OmegaPRM question can take: the `auto` budget for S-step rollouts, or the
    configured cap when it is lower (docs/omegaprm.md, "Rollout budget")."""
    options = omegaprm_options(search)
    probes = probes_per_search(max(1, math.ceil(steps_per_solution)))
    bound = auto_rollout_budget(options.k, options.search_limit, options.prefilter_samples, probes)
    budget = options.rollout_budget
    return float(min(bound, budget) if isinstance(budget, int) else bound)


def sequences_per_problem(search: dict[str, Any], calibration: Calibration) -> tuple[float, str]:
    """Expected sequences per problem and how it was obtained."""
    method = search.get("method", "mc")
    measured = calibration.sequences_per_problem
    measured_method = (calibration.search or {}).get("method")
    if measured is not None and calibration.search is not None and _data(calibration.search) == _data(search):
        return measured, f"measured by {calibration.source} (same search settings)"
    if method == "omegaprm":
        if measured is not None and measured_method == "omegaprm":
            return measured, f"measured by {calibration.source} (other OmegaPRM settings)"
        return omegaprm_sequences_per_problem(search, calibration.steps_per_solution), "upper bound (rollout budget)"
    return (
        mc_sequences_per_problem(
            search.get("num_solutions", 4), search.get("completions_per_step", 8), calibration.steps_per_solution
        ),
        "N·(1 + k·(S − 1))",
    )


def _data(search: dict[str, Any]) -> dict[str, Any]:
    return data_keys({"search": search})["search"]  # batching and the driver do not change what is sampled


def estimate(search: dict[str, Any], problems: int, calibration: Calibration, gpu: str = "l4") -> dict[str, Any]:
    """Sequences, generated tokens, GPU-hours and dollars for `problems` problems of a config's `search` section."""
    profile = GPUS[gpu]
    per_problem, how = sequences_per_problem(search, calibration)
    sequences = per_problem * problems
    tokens = sequences * calibration.tokens_per_sequence
    return {
        "problems": problems,
        "method": search.get("method", "mc"),
        "sequences_per_problem": round(per_problem, 1),
        "sequences_per_problem_from": how,
        "sequences": round(sequences),
        "generated_tokens": round(tokens),
        "calibration": asdict(calibration),
        **gpu_cost(tokens, gpu),
        "gpu_name": profile.name,
    }


def gpu_cost(tokens: float, gpu: str) -> dict[str, Any]:
    """GPU-hours and dollars for `tokens` generated tokens on one GPU type, as (low, high) ranges."""
    profile = GPUS[gpu]
    slow, fast = profile.tokens_per_second
    hours = (tokens / fast / 3600, tokens / slow / 3600)
    low_price, high_price = profile.dollars_per_hour
    return {
        "gpu": gpu,
        "gpu_hours": (round(hours[0], 3), round(hours[1], 3)),
        "dollars": (round(hours[0] * low_price, 2), round(hours[1] * high_price, 2)),
    }


def spend(engine: dict[str, Any], counts: dict[str, Any]) -> dict[str, Any]:
    """A finished run's spend in the estimate's terms: sequences and tokens it generated, per problem and per
    sequence, and what that many tokens costs on each GPU type (the manifest's `spend`)."""
    sequences = int(engine.get("sequences") or 0)
    tokens = int(engine.get("generated_tokens") or 0)
    problems = int(counts.get("problems_labelled") or counts.get("problems") or 0)
    paths = int(counts.get("paths") or 0)
    return {
        "sequences": sequences,
        "generated_tokens": tokens,
        "sequences_per_problem": round(sequences / problems, 2) if problems else None,
        "tokens_per_sequence": round(tokens / sequences, 2) if sequences else None,
        "steps_per_solution": round(int(counts.get("steps") or 0) / paths, 2) if paths else None,
        "at": {gpu: gpu_cost(tokens, gpu) for gpu in GPUS},
    }
