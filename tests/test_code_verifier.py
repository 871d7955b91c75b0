"""Tests for code line labels: rule-based edits, PRLCoder mutation labels, prefix completions, CodeVerifier."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pytest

from annotators.verifiers.base import StepVerdict, first_flagged
from annotators.verifiers.code import HUMANEVAL_STOPS, CodeVerifier, assemble, code_lines, truncate_completion
from annotators.verifiers.code_labels import (
    mutation_labels,
    parse_teacher_line,
    prefix_completion_search,
    teacher_prompt,
    teacher_variant_search,
)
from annotators.verifiers.code_mutations import candidate_edits
from annotators.verifiers.sandbox import SandboxLimits
from domains.code import HUMANEVAL_PATH, builtin_tasks, load_humaneval
from engines.driver import run_searches
from schemas.records import Problem, Request, Sample, SamplingParams, derive_seed
from tests.conftest import needs_sandbox

TASKS = {row["problem_id"]: Problem.from_dict(row) for row in builtin_tasks()}
SQUARES = TASKS["builtin/sum_of_squares"]
SQUARES_LINES = code_lines(SQUARES.answer)


def _sample(text: str, finish_reason: str = "stop") -> Sample:
    return Sample(text=text, finish_reason=finish_reason, n_tokens=len(text.split()))


class ScriptedEngine:
    """An engine that answers each request with texts from a function of the request."""

    name = "scripted"
    model = "none"

    def __init__(self, answer: Callable[[Request], list[str]]) -> None:
        self.answer = answer
        self.requests: list[Request] = []

    def generate(self, requests: Sequence[Request]) -> list[list[Sample]]:
        self.requests.extend(requests)
        return [[_sample(t) for t in self.answer(r)] for r in requests]

    def close(self) -> None:
        pass


# ------------------------------------------------------------------------------------------------ domain


@needs_sandbox
def test_builtin_tasks_are_problem_dicts_that_pass() -> None:
    rows = builtin_tasks()
    assert 3 <= len(rows) <= 5
    for row in rows:
        assert row["domain"] == "code" and set(row["meta"]) == {"test", "entry_point"}
        problem = Problem.from_dict(row)
        verdicts = CodeVerifier().verify(problem, code_lines(problem.answer))
        assert all(v.verdict is True for v in verdicts), (problem.problem_id, verdicts)


def test_assemble_places_lines_after_the_prompt() -> None:
    program, first = assemble(SQUARES, SQUARES_LINES)
    assert program.startswith(SQUARES.question) and program.endswith(SQUARES_LINES[-1] + "\n")
    assert program.split("\n")[first - 1] == SQUARES_LINES[0]


def test_truncate_completion_stops_at_the_next_top_level_statement() -> None:
    text = "    return x\n\n\ndef other():\n    pass\n"
    assert truncate_completion(text, HUMANEVAL_STOPS) == "    return x\n\n"
    assert truncate_completion("    return x\n") == "    return x\n"


# ------------------------------------------------------------------------------------------ rule-based edits


def test_candidate_edits_cover_the_documented_rules() -> None:
    lines = ["    if a < b and flag == True:", "        return -1", "    total += x * 2", "    return not done"]
    rules = {i: {e.rule for e in candidate_edits(lines, i)} for i in range(len(lines))}
    assert {"op <-><=", "name and->or", "op ==->!=", "name True->False", "explicit bool"} <= rules[0]
    assert {"negate condition", "op <->>"} <= rules[0]
    assert {"int 1->2", "int 1->0", "op -->+", "drop return value", "return via variable"} <= rules[1]
    assert {"op +=->-=", "op *->/", "int 2->3", "expand augmented assignment"} <= rules[2]
    assert "drop not" in rules[3]
    edits = {e.rule: e.text for e in candidate_edits(lines, 1)}
    assert edits["drop return value"] == "        return"
    assert edits["return via variable"] == "        _result = -1; return _result"


def test_candidate_edits_leave_strings_unpacking_and_comments_alone() -> None:
    lines = ['    s = "a + b < c"  # 1 + 1', "    print(*args, **kwargs)", "    # x = 1 + 2", ""]
    assert [e.rule for e in candidate_edits(lines, 0)] == ["rename s->s_1"]
    assert candidate_edits(lines, 1) == []
    assert candidate_edits(lines, 2) == [] and candidate_edits(lines, 3) == []


def test_multi_line_statements_get_token_swaps_only() -> None:
    lines = ["    return (a +", "            b)"]
    rules = [e.rule for e in candidate_edits(lines, 0)]
    assert rules == ["op +->-"]


def test_rename_rewrites_later_lines_but_never_parameters() -> None:
    lines = ["    acc = 0", "    for x in xs:", "        acc += x", "    return acc"]
    edit = next(e for e in candidate_edits(lines, 0, {"xs"}) if e.kind == "refactor")
    assert edit.rename == ("acc", "acc_1")
    assert not [e for e in candidate_edits(["    xs = sorted(xs)"], 0, {"xs"}) if e.rule.startswith("rename")]


# ------------------------------------------------------------------------------------ PRLCoder mutation labels


@needs_sandbox
def test_mutation_labels_follow_the_recipe_and_are_deterministic() -> None:
    labelled = mutation_labels(SQUARES, SQUARES_LINES, seed=7, workers=2)
    assert labelled.reference_status == "passed" and labelled.variants
    for variant in labelled.variants:
        assert variant.lines[variant.line_index] == variant.replacement != variant.original
        assert all(v.verdict is True for v in variant.labels[: variant.line_index])
        assert variant.labels[variant.line_index].verdict is (variant.status == "passed")
        assert all(v.verdict is None for v in variant.labels[variant.line_index + 1 :])
    kinds = {(v.kind, v.status == "passed") for v in labelled.variants}
    assert ("mutation", False) in kinds and ("refactor", True) in kinds
    rename = next(v for v in labelled.variants if v.rule.startswith("rename total"))
    assert rename.lines[-1] == "    return total_1"  # the rename reached the later lines
    again = mutation_labels(SQUARES, SQUARES_LINES, seed=7, workers=2)
    assert [(v.line_index, v.rule) for v in again.variants] == [(v.line_index, v.rule) for v in labelled.variants]


@needs_sandbox
def test_mutation_labels_need_a_passing_reference() -> None:
    broken = ["    return 0"]
    labelled = mutation_labels(SQUARES, broken)
    assert labelled.variants == () and labelled.reference_status == "failed"
    assert "does not pass" in labelled.reason
    no_tests = Problem("p", SQUARES.question, SQUARES.answer, domain="code", meta={})
    assert mutation_labels(no_tests, SQUARES_LINES).reason == "the problem has no unit tests"


@needs_sandbox
def test_teacher_variant_search_parses_and_labels_teacher_lines() -> None:
    def teacher(request: Request) -> list[str]:
        if "/mutation/l4" in request.key:
            return ["```python\nreturn total + 1\n```"]
        if "/refactor/l4" in request.key:
            return ["Sure:\n```python\n    return int(total)\n```"]
        return [""]  # nothing usable: no variant

    engine = ScriptedEngine(teacher)
    search = teacher_variant_search(SQUARES, SQUARES_LINES, SamplingParams(max_tokens=64), run_seed=3)
    [outcome], _ = run_searches([search], engine)
    assert outcome.error is None
    assert len(engine.requests) == 2 * len(SQUARES_LINES)
    assert all(r.n == 1 and r.sampling.seed == derive_seed(3, SQUARES.problem_id, r.key) for r in engine.requests)
    assert "Line " in engine.requests[0].prompt and "plausible bug" in engine.requests[0].prompt
    by_rule = {(v.line_index, v.kind): v for v in outcome.result if v.line_index == 4}
    assert by_rule[(4, "teacher-mutation")].labels[4].verdict is False
    assert by_rule[(4, "teacher-refactor")].labels[4].verdict is True
    assert by_rule[(4, "teacher-mutation")].replacement == "    return total + 1"
    assert len(outcome.result) == 2


def test_parse_teacher_line() -> None:
    assert parse_teacher_line("```python\nx = 2\n```", "    x = 1") == "    x = 2"
    assert parse_teacher_line("x = 1", "    x = 1") is None  # unchanged
    assert parse_teacher_line("   \n", "    x = 1") is None
    assert parse_teacher_line("y" * 500, "    x = 1") is None
    assert "```python" in teacher_prompt(SQUARES, SQUARES_LINES, 0, "refactor")


# ----------------------------------------------------------------------------------------- prefix completions


@needs_sandbox
def test_prefix_completion_search_values_and_seeds() -> None:
    lines = [*SQUARES_LINES[:2], "", *SQUARES_LINES[2:]]  # a blank line shares the prefix before it
    wrong = "    return -1\n"

    def policy(request: Request) -> list[str]:
        index = int(request.key.rsplit("/l", 1)[1])
        right = "\n".join(lines[index + 1 :]) + "\n\n\ndef unrelated():\n    pass\n"
        return [right, wrong, wrong, wrong] if index < 3 else [wrong] * 4

    engine = ScriptedEngine(policy)
    sampling = SamplingParams(temperature=0.7, max_tokens=128)
    search = prefix_completion_search(SQUARES, lines, 4, sampling, run_seed=11, workers=2)
    [outcome], _ = run_searches([search], engine)
    assert outcome.error is None, outcome.error
    labels = outcome.result
    code_indices = [0, 1, 3, 4, 5]
    assert sorted(int(r.key.rsplit("/l", 1)[1]) for r in engine.requests) == code_indices
    assert all(r.n == 4 for r in engine.requests)
    seeds = [r.sampling.seed for r in engine.requests]
    assert seeds == [derive_seed(11, SQUARES.problem_id, r.key) for r in engine.requests] and len(set(seeds)) == 5
    assert labels.values[:2] == (0.25, 0.25) and labels.values[2] == 0.25  # the blank line takes line 1's value
    assert labels.values[3:5] == (0.0, 0.0)  # `if`/`total +=` then `return -1`: wrong
    assert labels.values[5] == 1.0  # after `return total` the program is whole: anything appended is dead code
    assert [v.verdict for v in labels.verdicts] == [True, True, True, False, False, True]
    assert "same prefix as line 1" in labels.verdicts[2].reason
    assert len(labels.statuses[0]) == 4


@needs_sandbox
def test_prefix_completion_search_ignores_error_samples() -> None:
    search = prefix_completion_search(SQUARES, SQUARES_LINES[:1], 2, SamplingParams(), run_seed=0)
    [request] = next(search)
    with pytest.raises(StopIteration) as stop:
        search.send([[_sample("", "error"), _sample("", "error")]])
    labels = stop.value.value
    assert request.n == 2 and labels.values == (None,)
    assert labels.verdicts[0] == StepVerdict(None, "no valid completion from this prefix")


# --------------------------------------------------------------------------------------------- the verifier


@needs_sandbox
def test_verifier_flags_the_line_where_the_exception_surfaces() -> None:
    steps = ["    total = 0", "    for value in numbers:", "        total += [value][1]", "    return total"]
    verdicts = CodeVerifier().verify(SQUARES, steps)
    assert [v.verdict for v in verdicts] == [None, None, False, None]
    assert "IndexError" in verdicts[2].reason and first_flagged(verdicts) == 2


@needs_sandbox
def test_verifier_skips_frames_in_the_prompt_helpers() -> None:
    prompt = "def helper(x):\n    return 10 // x\n\n\ndef f(x):\n"
    problem = Problem("h", prompt, "", domain="code", meta={"test": "def check(c):\n    c(1)\n", "entry_point": "f"})
    verdicts = CodeVerifier().verify(problem, ["    y = x - 1", "    return helper(y)"])
    assert [v.verdict for v in verdicts] == [None, False] and "ZeroDivisionError" in verdicts[1].reason


@needs_sandbox
def test_verifier_flags_a_syntax_error_line() -> None:
    steps = ["    total = 0", "    for value in numbers", "        total += value", "    return total"]
    verdicts = CodeVerifier().verify(SQUARES, steps)
    assert first_flagged(verdicts) == 1 and "does not compile" in verdicts[1].reason


@needs_sandbox
def test_verifier_says_nothing_without_line_evidence() -> None:
    wrong_value = CodeVerifier().verify(SQUARES, ["    return 10"])
    assert wrong_value == [StepVerdict(None, wrong_value[0].reason)] and "AssertionError" in wrong_value[0].reason
    looping = CodeVerifier({"wall_s": 1.0}).verify(SQUARES, ["    while True:", "        pass"])
    assert all(v.verdict is None for v in looping) and "timeout" in looping[0].reason
    no_tests = Problem("p", "def f():\n", "", domain="code")
    assert CodeVerifier().verify(no_tests, ["    return 1"])[0].reason == "the problem has no unit tests"


@needs_sandbox
def test_verifier_options_are_sandbox_limits() -> None:
    assert CodeVerifier({"wall_s": 3, "nproc": 4}).limits == SandboxLimits(wall_s=3, nproc=4)
    with pytest.raises(ValueError, match="unknown code verifier option"):
        CodeVerifier({"walltime": 3})


# ------------------------------------------------------------------------------------------------- HumanEval

needs_humaneval = pytest.mark.skipif(
    not HUMANEVAL_PATH.exists(), reason=f"HumanEval data not found at {HUMANEVAL_PATH} (../shared/data is absent)"
)


@needs_humaneval
@needs_sandbox
def test_humaneval_loads_and_canonical_solutions_pass() -> None:
    problems = load_humaneval()
    assert len(problems) == 164 and problems[0]["problem_id"] == "HumanEval/0"
    sample = [Problem.from_dict(problems[i]) for i in (0, 32, 100, 163)]  # 32 relies on a helper in its prompt
    for problem in sample:
        verdicts = CodeVerifier().verify(problem, code_lines(problem.answer))
        assert all(v.verdict is not False for v in verdicts) and first_flagged(verdicts) == -1
        assert any(v.verdict is True for v in verdicts), problem.problem_id


@needs_humaneval
@needs_sandbox
def test_humaneval_mutation_labels() -> None:
    problem = Problem.from_dict(load_humaneval(limit=1)[0])
    labelled = mutation_labels(problem, code_lines(problem.answer), seed=1, mutations_per_line=1, workers=2)
    assert labelled.reference_status == "passed"
    assert {v.labels[v.line_index].verdict for v in labelled.variants} == {True, False}
