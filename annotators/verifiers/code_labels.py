"""Line labels from running programs in the sandbox: PRLCoder's edited variants and Dai et al.'s prefix completions.

- `mutation_labels`: PRLCoder's recipe with rule-based edits (Ye et al., arXiv 2502.01715). For a reference
  program that passes, each code line in turn is mutated (plausible bug) or refactored (meant to keep
  semantics), the variant is run, and the changed line is labelled True if the tests still pass, else False;
  the lines before it are True (unchanged lines of a passing program), the lines after it None (masked, as in
  the recipe). `teacher_variant_search` does the same with a teacher model's edits, as a search generator.
- `prefix_completion_search`: Dai et al. (arXiv 2410.17621): from each line prefix, k policy completions are
  run; the line's value is the fraction that pass and its label is value > 0.

The edits come from `annotators.verifiers.code_mutations`, the programs and their runs from
`annotators.verifiers.code`.
"""

from __future__ import annotations

import dataclasses
import random
import re
from collections.abc import Generator, Sequence
from dataclasses import dataclass

from annotators.verifiers.base import StepVerdict
from annotators.verifiers.code import (
    HUMANEVAL_STOPS,
    assemble,
    is_code_line,
    problem_tests,
    run_program,
    run_programs,
    truncate_completion,
)
from annotators.verifiers.code_mutations import LineEdit, apply_edit, candidate_edits, names_in
from annotators.verifiers.sandbox import SandboxLimits, SandboxResult
from schemas.records import Problem, Request, Sample, SamplingParams, derive_seed

__all__ = [
    "LineVariant",
    "MutationLabels",
    "PrefixLabels",
    "mutation_labels",
    "parse_teacher_line",
    "prefix_completion_search",
    "teacher_prompt",
    "teacher_variant_search",
]


@dataclass(frozen=True)
class LineVariant:
    """A program with one line changed, run against the tests and labelled line by line."""

    line_index: int
    kind: str
    rule: str
    original: str
    replacement: str
    lines: tuple[str, ...]
    labels: tuple[StepVerdict, ...]
    status: str  # the sandbox status of the variant


@dataclass(frozen=True)
class MutationLabels:
    """All labelled variants of one reference program; empty with a reason when the reference does not pass."""

    problem_id: str
    reference_status: str
    variants: tuple[LineVariant, ...]
    reason: str = ""


@dataclass(frozen=True)
class PrefixLabels:
    """Per-line MC values (fraction of passing completions), labels and the statuses behind them."""

    values: tuple[float | None, ...]
    verdicts: tuple[StepVerdict, ...]
    statuses: tuple[tuple[str, ...], ...]  # per line, the sandbox status of each completion


def _variant_labels(n_lines: int, index: int, result: SandboxResult, lines: Sequence[str]) -> tuple[StepVerdict, ...]:
    """PRLCoder labels: lines before the edit True, the edited line by the tests, the lines after masked."""
    if result.passed:
        changed = StepVerdict(True, "the variant still passes all tests")
    elif result.status == "error":  # the sandbox or the tests broke, not the variant
        changed = StepVerdict(None, f"sandbox error: {result.reason}")
    else:  # failed, syntax_error, timeout, memory, output_limit, killed: the line broke the program
        changed = StepVerdict(False, f"the variant fails ({result.status}): {result.reason}")
    labels = []
    for i in range(n_lines):
        if i < index:
            labels.append(StepVerdict(True if is_code_line(lines[i]) else None, "unchanged line of a passing program"))
        elif i == index:
            labels.append(changed)
        else:
            labels.append(StepVerdict(None, "after the edited line: masked"))
    return tuple(labels)


def mutation_labels(
    problem: Problem,
    program_lines: Sequence[str],
    *,
    seed: int = 0,
    mutations_per_line: int = 2,
    refactors_per_line: int = 1,
    limits: SandboxLimits | None = None,
    workers: int = 1,
    slowdown: float = 10.0,
) -> MutationLabels:
    """PRLCoder-style labelled variants of a reference program, one edited line each (deterministic per seed).

    Variants get a wall-clock limit of `slowdown` times the reference's run (at least 2 s, at most
    `limits.wall_s`): a mutated loop that never ends costs seconds, not the full limit.
    """
    limits = limits or SandboxLimits()
    tests, entry_point = problem_tests(problem)
    if not tests:
        return MutationLabels(problem.problem_id, "error", (), "the problem has no unit tests")
    lines = list(program_lines)
    reference = run_program(problem, assemble(problem, lines)[0], tests, entry_point, limits)
    if not reference.passed:
        reason = f"the reference program does not pass ({reference.status}: {reference.reason})"
        return MutationLabels(problem.problem_id, reference.status, (), reason)
    wall_s = min(limits.wall_s, max(2.0, slowdown * reference.wall_s))
    variant_limits = dataclasses.replace(limits, wall_s=wall_s, cpu_s=max(1, min(limits.cpu_s, int(wall_s) + 1)))
    prompt_names = names_in(problem.question)
    chosen: list[tuple[int, LineEdit, list[str]]] = []
    for index in range(len(lines)):
        edits = candidate_edits(lines, index, prompt_names)
        rng = random.Random(derive_seed(seed, problem.problem_id, f"mutate/{index}"))
        for kind, quota in (("mutation", mutations_per_line), ("refactor", refactors_per_line)):
            pool = [e for e in edits if e.kind == kind]
            for edit in rng.sample(pool, min(quota, len(pool))):
                chosen.append((index, edit, apply_edit(lines, index, edit)))
    jobs = [(assemble(problem, variant)[0], tests, entry_point) for _, _, variant in chosen]
    results = run_programs(problem, jobs, variant_limits, workers)
    variants = tuple(
        LineVariant(
            index,
            edit.kind,
            edit.rule,
            lines[index],
            edit.text,
            tuple(variant),
            _variant_labels(len(variant), index, result, variant),
            result.status,
        )
        for (index, edit, variant), result in zip(chosen, results, strict=True)
    )
    return MutationLabels(problem.problem_id, reference.status, variants)


# --------------------------------------------------------------------------------------------- teacher edits


def teacher_prompt(problem: Problem, lines: Sequence[str], index: int, kind: str) -> str:
    """The request text asking a teacher model to rewrite one line ("mutation": plausible bug; "refactor")."""
    task = {
        "mutation": "Rewrite that line with one plausible bug, the kind of mistake a programmer could make.",
        "refactor": "Rewrite that line differently so that the program behaves exactly the same.",
    }[kind]
    program, first = assemble(problem, lines)
    return (
        "Here is a Python program.\n\n```python\n"
        f"{program}```\n\n"
        f"Line {first + index} is:\n```python\n{lines[index].strip()}\n```\n"
        f"{task} Answer with the new line only, in a ```python block.\n"
    )


def parse_teacher_line(text: str, original: str, max_chars: int = 400) -> str | None:
    """The single new line from a teacher's answer, re-indented like `original`; None if unusable or unchanged."""
    fenced = re.search(r"```(?:python|py)?\s*\n(.*?)(?:```|$)", text, flags=re.DOTALL)
    body = fenced.group(1) if fenced else text
    candidates = [ln for ln in body.split("\n") if ln.strip() and not ln.strip().startswith("```")]
    if not candidates:
        return None
    new = candidates[0].strip()
    if len(new) > max_chars or new == original.strip():
        return None
    indent = original[: len(original) - len(original.lstrip())]
    return indent + new


def teacher_variant_search(
    problem: Problem,
    program_lines: Sequence[str],
    sampling: SamplingParams,
    run_seed: int,
    *,
    kinds: Sequence[str] = ("mutation", "refactor"),
    limits: SandboxLimits | None = None,
    workers: int = 1,
) -> Generator[list[Request], list[list[Sample]], list[LineVariant]]:
    """A search (engines/driver.py): one teacher request per (code line, kind), then each edit labelled by tests."""
    limits = limits or SandboxLimits()
    tests, entry_point = problem_tests(problem)
    lines = list(program_lines)
    if not tests:
        return []  # nothing could label the edits: ask the teacher nothing
    asks: list[tuple[int, str]] = [(i, kind) for i in range(len(lines)) if is_code_line(lines[i]) for kind in kinds]
    requests = []
    for index, kind in asks:
        key = f"{problem.problem_id}/teacher/{kind}/l{index}"
        seeded = dataclasses.replace(sampling, seed=derive_seed(run_seed, problem.problem_id, key))
        requests.append(Request(teacher_prompt(problem, lines, index, kind), 1, seeded, key))
    answers = yield requests
    chosen: list[tuple[int, LineEdit, list[str]]] = []
    for (index, kind), samples in zip(asks, answers, strict=True):
        usable = [s for s in samples if s.finish_reason != "error"]
        new = parse_teacher_line(usable[0].text, lines[index]) if usable else None
        if new is not None:
            edit = LineEdit(kind, f"teacher {kind}", new)
            chosen.append((index, edit, apply_edit(lines, index, edit)))
    results = run_programs(
        problem, [(assemble(problem, v)[0], tests, entry_point) for _, _, v in chosen], limits, workers
    )
    return [
        LineVariant(
            index,
            f"teacher-{edit.kind}",
            edit.rule,
            lines[index],
            edit.text,
            tuple(variant),
            _variant_labels(len(variant), index, result, variant),
            result.status,
        )
        for (index, edit, variant), result in zip(chosen, results, strict=True)
    ]


# ------------------------------------------------------------------------------------------ prefix completions


def prefix_completion_search(
    problem: Problem,
    program_lines: Sequence[str],
    k: int,
    sampling: SamplingParams,
    run_seed: int,
    *,
    limits: SandboxLimits | None = None,
    workers: int = 1,
    stops: Sequence[str] = HUMANEVAL_STOPS,
) -> Generator[list[Request], list[list[Sample]], PrefixLabels]:
    """Per-line MC values from k policy completions of each line prefix, run against the tests (Dai et al.).

    One request per code line (prefix = prompt + lines[:i+1]); a blank or comment line adds nothing to the
    prefix, so it takes the result of the code line before it. Completions are cut at `stops`; samples whose
    finish_reason is "error" do not count. Label: True if any completion passes, False if none of at least
    one valid completion does, None without a valid completion.
    """
    limits = limits or SandboxLimits()
    tests, entry_point = problem_tests(problem)
    lines = list(program_lines)
    owner = _prefix_owners(lines)
    asked = sorted(set(owner))
    requests = []
    prefixes = {}
    for index in asked:
        prefixes[index] = assemble(problem, lines[: index + 1])[0]
        key = f"{problem.problem_id}/code-prefix/l{index}"
        seeded = dataclasses.replace(sampling, seed=derive_seed(run_seed, problem.problem_id, key))
        requests.append(Request(prefixes[index], k, seeded, key))
    answers = yield requests
    jobs: list[tuple[str, str, str | None]] = []
    slots: list[int] = []
    for index, samples in zip(asked, answers, strict=True):
        for sample in samples:
            if sample.finish_reason != "error":
                jobs.append((prefixes[index] + truncate_completion(sample.text, stops), tests, entry_point))
                slots.append(index)
    results = run_programs(problem, jobs, limits, workers) if tests else []
    by_line: dict[int, list[SandboxResult]] = {index: [] for index in asked}
    for index, result in zip(slots, results, strict=False):
        by_line[index].append(result)
    values: list[float | None] = []
    verdicts: list[StepVerdict] = []
    statuses: list[tuple[str, ...]] = []
    for index in range(len(lines)):
        runs = by_line[owner[index]]
        statuses.append(tuple(r.status for r in runs))
        if not tests:
            values.append(None)
            verdicts.append(StepVerdict(None, "the problem has no unit tests"))
            continue
        if not runs:
            values.append(None)
            verdicts.append(StepVerdict(None, "no valid completion from this prefix"))
            continue
        passing = sum(r.passed for r in runs)
        values.append(passing / len(runs))
        shared = "" if owner[index] == index else f" (same prefix as line {owner[index]})"
        if passing:
            verdicts.append(StepVerdict(True, f"{passing}/{len(runs)} completions pass the tests{shared}"))
        else:
            worst = max(sorted(set(statuses[-1])), key=statuses[-1].count)
            verdicts.append(StepVerdict(False, f"0/{len(runs)} completions pass (mostly {worst}){shared}"))
    return PrefixLabels(tuple(values), tuple(verdicts), tuple(statuses))


def _prefix_owners(lines: Sequence[str]) -> list[int]:
    """For each line, the line whose prefix it shares: itself for code lines, else the code line before it."""
    owners = []
    last_code = None
    for index, line in enumerate(lines):
        if is_code_line(line) or last_code is None:
            last_code = index
        owners.append(last_code)
    return owners
