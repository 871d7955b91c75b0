"""Two labellers of the arithmetic domain compared at matched quality, on the same problems.

The OmegaPRM benchmark's reading of "N times fewer samples per labelled step at equal or better first-error
agreement" (issue 4). Three choices keep it like for like:

- **Same problems.** OmegaPRM labels no path of a question whose root estimate is all right or all wrong, which
  drops the questions MC labels worst; the baseline is scored and costed on only the candidate's problems.
- **Agreement by claim.** A first-error path claims an error; a correct rollout claims none; MC's rows claim
  either. Agreement over all rows depends on that mix, so it is split: of the rows that claim an error, how many
  put it on the exact first error; of those that claim none, how many are exactly right. The candidate is at
  least as good as a baseline when it is on every kind of claim it makes.
- **Intervals.** Paired bootstrap over problems (rows of one problem are not independent) of the candidate's
  agreement minus the baseline's.

Cost: the candidate pays every sample it drew (root estimates of questions it dropped included) per distinct
labelled step; the baseline pays its samples on the shared problems per distinct labelled step there.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from annotators.exact import exact_first_error_of, row_agreement
from annotators.rounding import round_figure

MEASURES = ("all", "error_claims", "no_error_claims")
Tally = dict[str, dict[str, list[int]]]  # problem -> measure -> [agree, n]


@dataclass(frozen=True)
class Labeller:
    """One method's labelled rows and the samples it drew, by problem."""

    name: str
    rows: list[Mapping[str, Any]]
    samples_by_problem: Mapping[str, int]


def unique_labelled_steps(rows: Iterable[Mapping[str, Any]]) -> int:
    """Distinct (problem, prefix + step) pairs: a step labelled in several rows (duplicate solutions, the shared
    prefixes of several paths) is one piece of supervision."""
    return len(
        {(r["problem_id"], tuple(r["completions"][: i + 1])) for r in rows for i in range(len(r["completions"]))}
    )


def tally(rows: Iterable[Mapping[str, Any]], key: str = "first_error_index") -> Tally:
    """Agreement counts by problem and measure; rows outside the arithmetic domain are left out."""
    out: Tally = defaultdict(lambda: {m: [0, 0] for m in MEASURES})
    for row in rows:
        scored = row_agreement(row, key)
        if scored is None:
            continue
        agree = int(scored[2])
        for measure in ("all", "error_claims" if row[key] >= 0 else "no_error_claims"):
            out[row["problem_id"]][measure][0] += agree
            out[row["problem_id"]][measure][1] += 1
    return out


def agreement(counts: Tally, problems: Iterable[str], measure: str) -> float | None:
    """Agreement of `measure` over `problems` (a problem listed twice counts twice: bootstrap draws)."""
    agree = n = 0
    for problem in problems:
        a, c = counts[problem][measure] if problem in counts else (0, 0)
        agree, n = agree + a, n + c
    return agree / n if n else None


def bootstrap_draws(problems: list[str], draws: int = 2000, seed: int = 0) -> list[list[str]]:
    """`draws` resamples of `problems` with replacement (deterministic for a seed)."""
    rng = random.Random(seed)
    return [[problems[rng.randrange(len(problems))] for _ in problems] for _ in range(draws)]


def paired_difference(
    a: Tally,
    b: Tally,
    problems: list[str],
    measure: str,
    draws: int = 2000,
    seed: int = 0,
    drawn: list[list[str]] | None = None,
) -> dict[str, float | None]:
    """Agreement of `a` minus that of `b` on `problems`, with a 95% percentile interval from resampling problems
    (`drawn`: resamples made once by `bootstrap_draws` and shared by several comparisons)."""
    drawn = drawn if drawn is not None else bootstrap_draws(problems, draws, seed)
    return paired_bootstrap(
        lambda sample: agreement(a, sample, measure), lambda sample: agreement(b, sample, measure), problems, drawn
    )


def paired_bootstrap(
    stat_a: Callable[[list[str]], float | None],
    stat_b: Callable[[list[str]], float | None],
    problems: list[str],
    drawn: list[list[str]],
) -> dict[str, float | None]:
    """`stat_a` minus `stat_b` on `problems`, with the 95% percentile interval over the resamples `drawn` (a
    resample on which either statistic is undefined is left out)."""
    point_a, point_b = stat_a(problems), stat_b(problems)
    if point_a is None or point_b is None:
        return {"difference": None, "low": None, "high": None}
    diffs = []
    for sample in drawn:
        x, y = stat_a(sample), stat_b(sample)
        if x is not None and y is not None:
            diffs.append(x - y)
    diffs.sort()
    return {
        "difference": round(point_a - point_b, 4),
        "low": round(diffs[int(0.025 * (len(diffs) - 1))], 4) if diffs else None,
        "high": round(diffs[int(0.975 * (len(diffs) - 1))], 4) if diffs else None,
    }


def samples_per_step(labeller: Labeller, problems: set[str] | None = None) -> float | None:
    """Samples per distinct labelled step, over all the labeller's samples or over `problems` only."""
    rows = [r for r in labeller.rows if problems is None or r["problem_id"] in problems]
    samples = sum(n for p, n in labeller.samples_by_problem.items() if problems is None or p in problems)
    steps = unique_labelled_steps(rows)
    return samples / steps if steps else None


def matched_quality(candidate: Labeller, baselines: list[Labeller], measures: tuple[str, ...] = MEASURES) -> dict:
    """The candidate against each baseline on the candidate's problems, and the dearest baseline the candidate is
    at least as good as on every kind of claim it makes: how many times more that baseline pays per labelled
    step. "point" compares the estimates; "significantly_better" takes only baselines the candidate beats with the
    whole 95% interval of the difference above 0 (a stricter reading: better, not equal)."""
    problems = sorted({str(r["problem_id"]) for r in candidate.rows})
    shared = set(problems)
    mine = tally(candidate.rows)
    cost = samples_per_step(candidate)
    drawn = bootstrap_draws(problems)  # the same resamples for every baseline and measure
    rows = []
    for base in baselines:
        theirs = tally(r for r in base.rows if r["problem_id"] in shared)
        base_cost = samples_per_step(base, shared)
        rows.append(
            {
                "baseline": base.name,
                "samples_per_unique_labelled_step": round(base_cost, 2) if base_cost else None,
                "agreement": {m: round_figure(agreement(theirs, problems, m)) for m in measures},
                "candidate_minus_baseline": {
                    m: paired_difference(mine, theirs, problems, m, drawn=drawn) for m in measures
                },
                "cost_ratio": round(base_cost / cost, 2) if base_cost and cost else None,
            }
        )
    # Judged on each kind of claim the candidate makes: agreement over all rows mixes the kinds in each method's
    # own proportions (a first-error path always claims an error, MC's rows mostly claim none).
    kinds = [
        m for m in ("error_claims", "no_error_claims") if m in measures and agreement(mine, problems, m) is not None
    ]
    own = {m: agreement(mine, problems, m) for m in kinds}
    point = [r for r in rows if all(r["agreement"][m] is None or own[m] >= r["agreement"][m] for m in kinds)]
    better = [
        r for r in rows if all((low := r["candidate_minus_baseline"][m]["low"]) is not None and low > 0 for m in kinds)
    ]
    verdict = {"compared_on": kinds, "point": _dearest(point), "significantly_better": _dearest(better)}
    return {
        "candidate": candidate.name,
        "problems": len(problems),
        "samples_per_unique_labelled_step": round(cost, 2) if cost else None,
        "agreement": {m: round_figure(agreement(mine, problems, m)) for m in measures},
        "rows": {m: sum(t[m][1] for t in mine.values()) for m in measures},
        "baselines": rows,
        "matched": verdict,
    }


def _dearest(beaten: list[dict]) -> dict:
    """The dearest baseline the candidate is at least as good as, and how many times more it pays per labelled
    step; `baseline` None when the candidate is worse than every baseline on some kind of claim."""
    priced = [r for r in beaten if r["cost_ratio"] is not None]
    if not priced:
        return {"baseline": None, "ratio": None}
    dearest = max(priced, key=lambda r: r["samples_per_unique_labelled_step"])
    return {"baseline": dearest["baseline"], "ratio": dearest["cost_ratio"]}


def mc_assumption(rows: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """How often "MC > 0 means the prefix is right" fails, over the distinct measured prefixes of labelled rows
    (an estimate from at least 2 rollouts; a last step graded by its own answer is no estimate).

    Both searches rest on it (docs/methods.md §1.1): a wrong prefix that still reaches the gold answer moves a
    first error later, a right prefix whose rollouts all fail moves it earlier.
    """
    seen: dict[tuple[str, tuple[str, ...]], tuple[bool, bool]] = {}
    for row in rows:
        steps = list(row["completions"])
        for i, (mc, n) in enumerate(zip(row["mc_values"], row["n_rollouts"], strict=True)):
            key = (str(row["problem_id"]), tuple(steps[: i + 1]))
            if mc is None or n is None or n < 2 or key in seen:
                continue
            exact = exact_first_error_of(row["prompt"], steps[: i + 1], complete=False)
            if exact is None:
                continue
            seen[key] = (exact == -1, mc > 0)
    wrong = [positive for right, positive in seen.values() if not right]
    right = [positive for right, positive in seen.values() if right]
    return {
        "measured_prefixes": len(seen),
        "wrong_prefixes": len(wrong),
        "wrong_prefixes_with_mc_above_0": round(sum(wrong) / len(wrong), 4) if wrong else None,
        "right_prefixes": len(right),
        "right_prefixes_with_mc_0": round(sum(not p for p in right) / len(right), 4) if right else None,
    }
