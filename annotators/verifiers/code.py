"""HumanEval programs whose steps are code lines, run against their unit tests in the sandbox, and `CodeVerifier`.

Steps are code lines. A problem holds the prompt (imports, signature, docstring) in `question`, the reference
body in `answer` and `meta = {"test": "def check(candidate): ...", "entry_point": "name"}`. The program run for
a list of lines is `question + "\\n".join(lines)`, then the tests, then `check(entry_point)`
(`annotators.verifiers.sandbox.run_tests`). Nothing here executes code in this process.

`CodeVerifier` labels a given full solution, rule in its docstring. The other labellers of code lines build on the
programs here: rule-based edits in `annotators.verifiers.code_mutations`, the labels from running edited programs
or prefix completions in `annotators.verifiers.code_labels`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from annotators.verifiers.base import StepVerdict, as_config
from annotators.verifiers.sandbox import SandboxLimits, SandboxResult, require_isolation, run_tests
from schemas.records import Problem

__all__ = [
    "CodeVerifier",
    "HUMANEVAL_STOPS",
    "assemble",
    "code_lines",
    "is_code_line",
    "problem_tests",
    "run_program",
    "run_programs",
    "truncate_completion",
]

# Codex/HumanEval stop sequences: a completion ends where the next top-level statement begins.
HUMANEVAL_STOPS = ("\ndef ", "\nclass ", "\nif __name__", "\nprint(", "\n#", "\nassert ")


# --------------------------------------------------------------------------------------------------- programs


def code_lines(text: str) -> list[str]:
    """Split a solution body into lines (steps), without trailing blank lines."""
    return text.rstrip().split("\n") if text.strip() else []


def is_code_line(line: str) -> bool:
    """A line that says something: not blank, not only a comment."""
    stripped = line.strip()
    return bool(stripped) and not stripped.startswith("#")


def assemble(problem: Problem, lines: Sequence[str]) -> tuple[str, int]:
    """The program for `lines` after the problem's prompt, and the 1-based program line where lines[0] sits."""
    prompt = problem.question
    if prompt and not prompt.endswith("\n"):
        prompt += "\n"
    return prompt + "\n".join(lines) + "\n", prompt.count("\n") + 1


def problem_tests(problem: Problem) -> tuple[str, str | None]:
    """The problem's unit tests (`meta["test"]`, "" without) and the entry point they check (None without)."""
    return str(problem.meta.get("test") or ""), problem.meta.get("entry_point") or None


def truncate_completion(text: str, stops: Sequence[str] = HUMANEVAL_STOPS) -> str:
    """Cut a completion at the first stop sequence (the start of the next top-level statement)."""
    cut = min((i for i in (text.find(s) for s in stops) if i >= 0), default=len(text))
    return text[:cut]


def run_programs(
    problem: Problem, jobs: Sequence[tuple[str, str, str | None]], limits: SandboxLimits, workers: int
) -> list[SandboxResult]:
    """Run (program, tests, entry point) jobs of one problem in the sandbox, in order; threads only wait."""

    def run(job: tuple[str, str, str | None]) -> SandboxResult:
        return run_program(problem, *job, limits)

    if workers <= 1 or len(jobs) <= 1:
        return [run(job) for job in jobs]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(run, jobs))


def run_program(
    problem: Problem, program: str, tests: str, entry_point: str | None, limits: SandboxLimits
) -> SandboxResult:
    """One sandboxed run; the prompt is the trusted context, so a completion cannot redefine what the tests use."""
    return run_tests(program, tests, entry_point, limits, context=problem.question)


# -------------------------------------------------------------------------------------------------- verifier


class CodeVerifier:
    """Labels a given full solution (steps = code lines) by running its unit tests in the sandbox.

    Rule:
    - passes all tests -> every code line True (blank/comment lines None);
    - fails with line evidence: the exception surfaced at step j (the deepest traceback frame among the steps;
      a helper in the prompt is skipped) or the parser stopped at step j (SyntaxError) -> step j False: the
      program as given breaks there. Steps before j are None (the real mistake may sit earlier: a wrong value
      computed above, an unclosed bracket the parser noticed late), steps after j None (not judged);
    - fails without a line in the steps (a wrong result caught by an assert in the tests, an error inside the
      prompt's own code), time-out, memory, sandbox error, no tests -> every step None.

    Built only where every isolation layer of the sandbox works: elsewhere the constructor raises
    `SandboxUnavailable` with the reason, so a run refuses at its start instead of running code with less.
    """

    name = "code-exec"

    def __init__(self, config: dict[str, Any] | None = None, limits: SandboxLimits | None = None) -> None:
        options = as_config(config)
        known = {f.name for f in dataclasses.fields(SandboxLimits)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise ValueError(f"unknown code verifier option(s) {unknown}; known: {sorted(known)}")
        self.limits = limits or SandboxLimits(**options)
        require_isolation(self.limits)

    def verify(self, problem: Problem, steps: list[str]) -> list[StepVerdict]:
        """One verdict per step (code line)."""
        tests, entry_point = problem_tests(problem)
        if not tests:
            return [StepVerdict(None, "the problem has no unit tests")] * len(steps)
        program, first = assemble(problem, steps)
        result = run_program(problem, program, tests, entry_point, self.limits)
        if result.passed:
            return [
                StepVerdict(True, "the program passes all tests")
                if is_code_line(s)
                else StepVerdict(None, "blank or comment line")
                for s in steps
            ]
        in_steps = [line - first for line in result.error_lines if 0 <= line - first < len(steps)]
        index = in_steps[-1] if in_steps else -1  # the deepest frame inside the steps, not the prompt's code
        if result.status in ("failed", "syntax_error") and index >= 0:
            verdicts = [StepVerdict(None, "before the failing line: not judged") for _ in steps]
            what = "does not compile" if result.status == "syntax_error" else "raises"
            verdicts[index] = StepVerdict(False, f"{what} here: {result.reason}")
            for later in range(index + 1, len(steps)):
                verdicts[later] = StepVerdict(None, "after the failing line: not judged")
            return verdicts
        reason = f"tests {result.status} without line-level evidence: {result.reason}"
        return [StepVerdict(None, reason)] * len(steps)
