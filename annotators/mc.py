"""Per-step Monte Carlo estimation (Math-Shepherd, arXiv 2312.08935; docs/methods.md §2).

Two pure parts:
- `math_shepherd_search`: a search coroutine (docs/design.md §6). It asks for N solutions, then
  for k completions from every step prefix but the last in ONE round (one request with n=k per distinct prefix,
  so the engine's prefix cache serves the k samples). The last step is judged by its own final answer, so a
  solution of K steps costs k·(K−1) completions (§2.1 "Cost").
- `label_paths`: the annotator, evidence -> labelled-path rows (hard labels, soft labels, first error).
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from annotators.answers import Verdict, judge_text
from annotators.steps import split_steps
from schemas.records import (
    Completion,
    Problem,
    Request,
    Sample,
    SamplingParams,
    Solution,
    derive_seed,
    path_id,
    prefix_key,
)

Grader = Callable[[str, str, str], Verdict]  # (text, finish_reason, gold) -> verdict on the final answer


@dataclass(frozen=True)
class McSearchConfig:
    """The knobs of the Math-Shepherd search; `sampling.seed` is ignored (seeds are per request)."""

    num_solutions: int = 4
    completions_per_step: int = 8  # N = 8 in the paper (docs/methods.md §2.1)
    sampling: SamplingParams = field(default_factory=SamplingParams)
    splitter: str = "auto"
    pattern: str | None = None
    max_steps: int = 64
    truncation_policy: str = "wrong"
    prefilter: bool = False  # skip problems whose N solutions are all right or all wrong


@dataclass
class McResult:
    """Everything the MC search produced for one problem (docs/design.md §1)."""

    problem: Problem
    status: str  # ok | prefiltered_all_correct | prefiltered_all_wrong | no_steps
    solutions: list[Solution] = field(default_factory=list)
    completions: list[Completion] = field(default_factory=list)
    requests: int = 0
    generated_tokens: int = 0


def default_grader(truncation_policy: str) -> Grader:
    def grade(text: str, finish_reason: str, gold: str) -> Verdict:
        return judge_text(text, finish_reason, gold, truncation_policy=truncation_policy)

    return grade


def search_status(solutions: list[Solution], prefilter: bool) -> str:
    """Whether the MC search goes on after sampling solutions: `ok`, `no_steps` or a pre-filter outcome."""
    if not any(s.steps for s in solutions):
        return "no_steps"
    if prefilter:
        outcomes = {bool(s.outcome_correct) for s in solutions}
        if outcomes == {True}:
            return "prefiltered_all_correct"
        if outcomes == {False}:
            return "prefiltered_all_wrong"
    return "ok"


def math_shepherd_search(
    problem: Problem, prompt: str, config: McSearchConfig, run_seed: int, grade: Grader | None = None
) -> Generator[list[Request], list[list[Sample]], McResult]:
    """Sample N solutions, then k completions from each step prefix; returns the evidence."""
    grade = grade or default_grader(config.truncation_policy)
    pid = problem.problem_id

    def request(key: str, text: str, n: int) -> Request:
        sampling = replace(config.sampling, seed=derive_seed(run_seed, pid, key))
        return Request(prompt=text, n=n, sampling=sampling, key=key)

    result = McResult(problem=problem, status="ok")
    sol_request = request("solutions", prompt, config.num_solutions)
    (samples,) = yield [sol_request]
    result.requests += 1
    for index, sample in enumerate(samples):
        steps, ends = split_steps(sample.text, config.splitter, config.pattern, max_steps=config.max_steps)
        verdict = grade(sample.text, sample.finish_reason, problem.answer)
        result.generated_tokens += sample.n_tokens
        result.solutions.append(
            Solution(
                problem_id=pid,
                solution_index=index,
                text=sample.text,
                steps=steps,
                step_ends=ends,
                final_answer=verdict.extracted,
                outcome_correct=verdict.correct,
                verdict_reason=verdict.reason,
                finish_reason=sample.finish_reason,
                n_tokens=sample.n_tokens,
                seed=sample.seed,
            )
        )
    result.status = search_status(result.solutions, config.prefilter)
    if result.status != "ok":
        return result
    labelled = [s for s in result.solutions if s.steps]

    # One request per distinct prefix; every (solution, step) that shares it points at the same samples.
    requests: list[Request] = []
    by_prefix: dict[str, int] = {}
    wanted: list[tuple[Solution, int, int]] = []
    for solution in labelled:
        for step_index in range(len(solution.steps) - 1):
            prefix = solution.text[: solution.step_ends[step_index]]
            if prefix not in by_prefix:
                by_prefix[prefix] = len(requests)
                requests.append(request(prefix_key(prefix), prompt + prefix, config.completions_per_step))
            wanted.append((solution, step_index, by_prefix[prefix]))
    if not requests:
        return result
    answers = yield requests
    result.requests += len(requests)
    verdicts: list[list[Verdict]] = []
    for req, samples in zip(requests, answers, strict=True):
        prefix = req.prompt[len(prompt) :]
        verdicts.append([grade(prefix + s.text, s.finish_reason, problem.answer) for s in samples])
        result.generated_tokens += sum(s.n_tokens for s in samples)
    for solution, step_index, request_index in wanted:
        for completion_index, (sample, verdict) in enumerate(
            zip(answers[request_index], verdicts[request_index], strict=True)
        ):
            result.completions.append(
                Completion(
                    problem_id=pid,
                    solution_index=solution.solution_index,
                    step_index=step_index,
                    completion_index=completion_index,
                    text=sample.text,
                    final_answer=verdict.extracted,
                    correct=verdict.correct,
                    verdict_reason=verdict.reason,
                    finish_reason=sample.finish_reason,
                    n_tokens=sample.n_tokens,
                    seed=sample.seed,
                )
            )
    return result


@dataclass(frozen=True)
class LabelRule:
    """How MC values become hard labels: `mc>0` (Math-Shepherd hard estimate, Eq. 3) or `mc > threshold`."""

    hard_rule: str = "mc>0"
    threshold: float = 0.5

    @property
    def name(self) -> str:
        return "mc>0" if self.hard_rule == "mc>0" else f"mc>{self.threshold:g}"

    def hard(self, mc: float) -> bool:
        return mc > 0 if self.hard_rule == "mc>0" else mc > self.threshold


def step_estimates(result: McResult) -> dict[int, list[tuple[int, int]]]:
    """(n_correct, n) per solution and step from the stored completions; `None` verdicts count as wrong."""
    counts: dict[tuple[int, int], list[int]] = {}
    for c in result.completions:
        tally = counts.setdefault((c.solution_index, c.step_index), [0, 0])
        tally[0] += 1 if c.correct else 0
        tally[1] += 1
    out: dict[int, list[tuple[int, int]]] = {}
    for solution in result.solutions:
        out[solution.solution_index] = [
            tuple(counts.get((solution.solution_index, t), [0, 0])) for t in range(len(solution.steps) - 1)
        ]
    return out


def generated_completions(rows: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The completion rows the engine generated, one each: a prefix shared by several solutions is one request
    (one seed) stored as a completion row of each solution. A row without a seed cannot be matched: it counts."""
    seen: set[tuple[Any, ...]] = set()
    out = []
    for row in rows:
        if row.get("seed") is not None:
            key = (row["problem_id"], row["seed"], row["completion_index"])
            if key in seen:
                continue
            seen.add(key)
        out.append(row)
    return out


def label_paths(result: McResult, rule: LabelRule) -> list[dict[str, Any]]:
    """Labelled-path rows (schemas.tables.PATHS columns from the evidence) for every solution with steps.

    Soft label = MC = n_correct / k per prefix (Eq. 4); the last step's value is its own answer's correctness.
    """
    if result.status != "ok":
        return []
    estimates = step_estimates(result)
    rows = []
    for solution in result.solutions:
        if not solution.steps:
            continue
        tallies = estimates[solution.solution_index]
        mc_values: list[float] = [c / n if n else 0.0 for c, n in tallies]
        mc_values.append(1.0 if solution.outcome_correct else 0.0)
        labels = [rule.hard(v) for v in mc_values]
        first_error = next((i for i, ok in enumerate(labels) if not ok), -1)
        rows.append(
            {
                "id": path_id(f"{result.problem.problem_id}#{solution.solution_index}", solution.steps),
                "problem_id": result.problem.problem_id,
                "source": result.problem.source,
                "prompt": result.problem.question,
                "completions": list(solution.steps),
                "labels": labels,
                "mc_values": mc_values,
                "n_correct": [c for c, _ in tallies] + [1 if solution.outcome_correct else 0],
                "n_rollouts": [n for _, n in tallies] + [1],
                "label_policy": rule.name,
                "first_error_index": first_error,
                "truncated_after_first_error": False,
                "is_terminal": solution.finish_reason == "stop",
                "final_answer": solution.final_answer,
                "outcome_correct": solution.outcome_correct,
                "gold_answer": result.problem.answer,
                "meta": {
                    "solution_index": solution.solution_index,
                    "solution_seed": solution.seed,
                    "verdict_reason": solution.verdict_reason,
                    "finish_reason": solution.finish_reason,
                    "n_tokens": solution.n_tokens,
                    "domain": result.problem.domain,
                },
            }
        )
    return rows
