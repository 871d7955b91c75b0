"""Tests for the formal-logic domain (syntax, generator) and its Z3 step verifier (FoVer-style checks)."""

from __future__ import annotations

import pytest

from annotators.verifiers.base import StepVerdict, first_flagged
from annotators.verifiers.logic import LogicVerifier
from domains.logic import generate_logic_problems
from domains.logic_language import LABELS, LogicSyntaxError, negate, parse_formula, parse_step, render
from schemas.records import Problem

FACTS = [
    {"name": "fact1", "formula": "(x): {A}x -> {B}x"},
    {"name": "fact2", "formula": "{A}{a}"},
    {"name": "fact3", "formula": "{C}{a} v {D}{a}"},
    {"name": "fact4", "formula": "¬{C}{a}"},
    {"name": "fact5", "formula": "(x): ({B}x & {D}x) -> ¬{E}x"},
    {"name": "fact6", "formula": "{P} -> {Q}"},
    {"name": "fact7", "formula": "{P}"},
]


def problem(hypothesis: str = "{B}{a}", facts: object = None) -> Problem:
    meta = {"premises": FACTS if facts is None else facts, "hypothesis": hypothesis}
    return Problem(problem_id="t", question="", answer="", domain="logic", meta=meta)


@pytest.fixture(scope="module")
def verifier() -> LogicVerifier:
    return LogicVerifier()


def verdicts(verifier: LogicVerifier, steps: list[str], hypothesis: str = "{B}{a}") -> list[bool | None]:
    return [v.verdict for v in verifier.verify(problem(hypothesis), steps)]


# ---------------------------------------------------------------- syntax


@pytest.mark.parametrize(
    ("text", "tree"),
    [
        ("{A}{a}", ("atom", "A", ("const", "a"))),
        ("{AB}", ("atom", "AB", None)),
        ("¬{A}{a}", ("not", ("atom", "A", ("const", "a")))),
        ("~{A}", ("not", ("atom", "A", None))),
        ("{A} & {B} v {C}", ("or", ("and", ("atom", "A", None), ("atom", "B", None)), ("atom", "C", None))),
        ("{A} -> {B} -> {C}", ("imp", ("atom", "A", None), ("imp", ("atom", "B", None), ("atom", "C", None)))),
        ("(x): {A}x -> {B}x", ("all", "x", ("imp", ("atom", "A", ("var", "x")), ("atom", "B", ("var", "x"))))),
        ("(Ex): {A}x", ("ex", "x", ("atom", "A", ("var", "x")))),
        ("{A} ∧ {B} ∨ ⊥ → ⊤", ("imp", ("or", ("and", ("atom", "A", None), ("atom", "B", None)), ("bot",)), ("top",))),
    ],
)
def test_parse_formula(text: str, tree: tuple) -> None:
    assert parse_formula(text) == tree
    assert parse_formula(render(tree)) == tree


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("{A}{a} &", "expected a formula"),
        ("{a}{A}", "expected a formula"),
        ("(x): {A}y", "free variable"),
        ("{A}x", "free variable"),
        ("{A}{a} ^ {B}{a}", "unexpected"),
        ("({A}", "missing"),
        ("¬" * 100 + "{A}", "deeper"),
        ("(" * 100 + "{A}" + ")" * 100, "deeper"),
        ("{A} & " * 500 + "{A}", "longer than"),
        ("import os", "unexpected"),
    ],
)
def test_parse_errors(text: str, message: str) -> None:
    with pytest.raises(LogicSyntaxError, match=message):
        parse_formula(text)


def test_negate_removes_double_negation() -> None:
    f = parse_formula("{A}{a}")
    assert negate(negate(f)) == f


def test_parse_step_forms() -> None:
    step = parse_step("fact1 & int2 -> int3: {B}{a} & {C}{a};")
    assert step.premises == ("fact1", "int2") and step.intermediate == "int3"
    assert step.formula == parse_formula("{B}{a} & {C}{a}")
    assert parse_step("int3 -> hypothesis").conclusion == "hypothesis"
    assert parse_step("int3 & fact2 -> ¬hypothesis").conclusion == "¬hypothesis"
    assert parse_step("void -> int1: {A} v ¬{A}").premises == ()
    assert parse_step("__DISPROVED__").verdict == "DISPROVED"
    assert parse_step("The final answer is unknown").verdict == "UNKNOWN"
    assert parse_step("$proof_label$: PROVED").verdict == "PROVED"
    with pytest.raises(LogicSyntaxError, match="not a proof step"):
        parse_step("therefore B holds")


# ---------------------------------------------------------------- step checks


def test_correct_steps_are_true(verifier: LogicVerifier) -> None:
    steps = [
        "fact2 & fact1 -> int1: {B}{a}",  # universal modus ponens
        "fact3 & fact4 -> int2: {D}{a}",  # disjunctive syllogism
        "int1 & int2 & fact5 -> int3: ¬{E}{a}",
        "fact2 -> int4: (Ex): {A}x",  # existential introduction
        "fact6 & fact7 -> int5: {Q}",
        "int1 -> hypothesis",
        "__PROVED__",
    ]
    assert verdicts(verifier, steps) == [True] * 7


@pytest.mark.parametrize(
    "step",
    [
        "fact1 -> int1: {B}{a}",  # a needed premise is not cited (FoVer README example, §2.1)
        "fact2 & fact1 -> int1: {B}{b}",  # wrong constant
        "fact2 & fact1 -> int1: ¬{B}{a}",  # negated conclusion
        "fact3 -> int1: {D}{a}",
        "fact2 & fact1 -> int1: {E}{a}",
        "fact2 & fact1 -> ¬hypothesis",
        "fact9 -> int1: {A}{a}",  # no such fact
        "int7 -> int1: {A}{a}",  # no earlier step derived int7
    ],
)
def test_wrong_steps_are_false(verifier: LogicVerifier, step: str) -> None:
    result = verifier.verify(problem(), [step])[0]
    assert result.verdict is False, result.reason


def test_intermediates_are_cited_as_stated(verifier: LogicVerifier) -> None:
    # FoVer judges every step locally: a step that follows from a wrong intermediate is still correct
    steps = ["fact1 -> int1: {B}{b}", "int1 -> int2: {B}{b} v {C}{b}", "int2 & fact4 -> hypothesis"]
    assert verdicts(verifier, steps) == [False, True, False]


def test_parse_errors_give_none(verifier: LogicVerifier) -> None:
    results = verifier.verify(problem(), ["fact2 & fact1 -> int1: {B}{a} &", "int1 -> hypothesis", "hello"])
    assert [r.verdict for r in results] == [None, None, None]
    assert "unparseable step" in results[0].reason
    assert "int1 did not parse" in results[1].reason


def test_unparseable_premise_or_hypothesis_gives_none(verifier: LogicVerifier) -> None:
    facts = [*FACTS, {"name": "fact8", "formula": "{A}{a} &"}]
    results = verifier.verify(problem(facts=facts), ["fact8 -> int1: {A}{a}", "fact2 -> int2: {A}{a}", "__PROVED__"])
    assert [r.verdict for r in results] == [None, True, None]
    assert "fact8 did not parse" in results[0].reason
    bad_hypothesis = verifier.verify(problem("{B}{a} v"), ["fact2 & fact1 -> hypothesis", "__PROVED__"])
    assert [r.verdict for r in bad_hypothesis] == [None, None]


def test_premises_may_be_a_dict(verifier: LogicVerifier) -> None:
    facts = {p["name"]: p["formula"] for p in FACTS}
    assert [v.verdict for v in verifier.verify(problem(facts=facts), ["fact2 & fact1 -> hypothesis"])] == [True]


@pytest.mark.parametrize(
    ("hypothesis", "stated", "expected"),
    [
        ("{B}{a}", "__PROVED__", True),
        ("{B}{a}", "__DISPROVED__", False),
        ("{B}{a}", "__UNKNOWN__", False),
        ("¬{B}{a}", "__DISPROVED__", True),
        ("{E}{a}", "The final answer is DISPROVED", True),
        ("{Z}{a}", "__UNKNOWN__", True),
        ("{Z}{a}", "__PROVED__", False),
        ("(x): {A}x -> {B}x", "__PROVED__", True),
        ("{B}{b}", "__UNKNOWN__", True),  # nothing is known about b
    ],
)
def test_verdict_step(verifier: LogicVerifier, hypothesis: str, stated: str, expected: bool) -> None:
    assert verdicts(verifier, [stated], hypothesis) == [expected]


def test_inconsistent_facts_prove_and_disprove() -> None:
    facts = [{"name": "fact1", "formula": "{A}"}, {"name": "fact2", "formula": "¬{A}"}]
    result = LogicVerifier().verify(problem("{B}", facts), ["__PROVED__", "__DISPROVED__", "__UNKNOWN__"])
    assert [r.verdict for r in result] == [True, True, False]


class _GivingUp(LogicVerifier):
    def _solve(self, formulas: list) -> str:
        self.solver_checks += 1
        return "unknown"  # what z3 answers when the per-check timeout fires


def test_solver_timeout_gives_none() -> None:
    results = _GivingUp().verify(problem(), ["fact2 & fact1 -> int1: {B}{a}", "__PROVED__"])
    assert [r.verdict for r in results] == [None, None]
    assert "solver gave up" in results[0].reason and "timeout" in results[0].reason


def test_cache_and_config() -> None:
    cached = LogicVerifier()
    cached.verify(problem(), ["fact2 & fact1 -> int1: {B}{a}"] * 3)
    assert cached.solver_checks == 1
    uncached = LogicVerifier({"cache_size": 0, "timeout_ms": 500})
    uncached.verify(problem(), ["fact2 & fact1 -> int1: {B}{a}"] * 3)
    assert uncached.solver_checks == 3
    with pytest.raises(ValueError, match="unknown logic verifier option"):
        LogicVerifier({"timeout": 5})
    with pytest.raises(ValueError, match="timeout_ms must be positive"):
        LogicVerifier({"timeout_ms": 0})


def test_constant_named_like_a_variable_is_not_captured(verifier: LogicVerifier) -> None:
    facts = [{"name": "fact1", "formula": "(x): {A}x"}, {"name": "fact2", "formula": "¬{B}{x}"}]
    assert [v.verdict for v in verifier.verify(problem("{A}{x}", facts), ["fact1 -> hypothesis"])] == [True]
    assert [v.verdict for v in verifier.verify(problem("{B}{x}", facts), ["fact1 -> hypothesis"])] == [False]


# ---------------------------------------------------------------- hostile steps and problems


def test_long_operator_chains_are_refused_not_recursed(verifier: LogicVerifier) -> None:
    # 999 levels in 1,999 characters: under the length cap, and past the recursion limit for the tree walks
    for chain in ("⊤&" * 999 + "⊤", "⊤v" * 999 + "⊤", "¬" * 999 + "⊤"):
        with pytest.raises(LogicSyntaxError, match="deeper than 60"):
            parse_formula(chain)
        result = verifier.verify(problem(), ["fact2 -> int1: " + chain])[0]
        assert result.verdict is None and "deeper than 60" in result.reason
    chained_fact = verifier.verify(problem(facts={"fact1": "⊤&" * 999 + "⊤"}), ["fact1 -> int1: ⊤"])[0]
    assert chained_fact.verdict is None and "fact1 did not parse: formula nested deeper than 60" in chained_fact.reason
    assert parse_formula("{A}&" * 59 + "{A}")[0] == "and"  # a 60-level chain still parses


def test_a_step_over_the_length_cap_is_refused_before_any_regex(verifier: LogicVerifier) -> None:
    padded = "fact2 -> int1: {A}{a}" + " " * 20_000 + "x"
    assert verifier.verify(problem(), [padded])[0] == StepVerdict(
        None, "unparseable step: step longer than 4000 characters (20022)"
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        # under the cap; the old `.+?\s*;?\s*$` took ~20 s on 2,000 spaces and minutes on these
        ("fact2 -> int1: {A}{a}" + " " * 3_900 + "x", "formula longer than 2000"),
        ("fact2 -> {A}{a}" + " " * 900 + ";" + " " * 900 + "x", "unexpected"),
        ("__PROVED__" + " " * 3_900 + "x", "not a proof step"),
        ("$proof_label$:" + " " * 3_900 + "PROVEDx", "not a proof step"),
        ("fact1" + " &" * 1_900 + " x", "not a proof step"),
    ],
)
def test_padded_steps_parse_in_linear_time(text: str, message: str) -> None:
    with pytest.raises(LogicSyntaxError, match=message):
        parse_step(text)


def test_step_terminators_are_read_as_before() -> None:
    assert parse_step("  fact2 & fact1 -> hypothesis ; ").conclusion == "hypothesis"
    assert parse_step("int1 -> ~ hypothesis;").conclusion == "¬hypothesis"
    assert parse_step("__PROVED__ .").verdict == "PROVED"
    assert parse_step("int1 -> int2: {A}{a} ;").formula == parse_formula("{A}{a}")
    for text in ("fact1 -> ;", "fact1 ->", "fact1 -> int2: {A}{a};;"):
        with pytest.raises(LogicSyntaxError):
            parse_step(text)


@pytest.mark.parametrize(
    ("meta", "reason"),
    [
        ({"premises": ["fact1: {A}"], "hypothesis": "{A}"}, "cannot check: premise 0 is not a {'name'"),
        ({"premises": 5, "hypothesis": "{A}"}, "cannot check: meta['premises'] is a int"),
        ({"premises": {3: "{A}"}, "hypothesis": "{A}"}, "cannot check: a premise name is not a string"),
        ({"premises": {"fact1": ["{A}"]}, "hypothesis": "{A}"}, "fact1 did not parse: it is a list, not a formula"),
        ({"premises": {"fact1": "{A}"}, "hypothesis": [[["{A}"]]]}, "hypothesis did not parse: it is a list"),
    ],
)
def test_malformed_problems_give_none_for_every_step(verifier: LogicVerifier, meta: dict, reason: str) -> None:
    bad = Problem(problem_id="t", question="", answer="", domain="logic", meta=meta)
    results = verifier.verify(bad, ["fact1 -> hypothesis", "__PROVED__"])
    assert [r.verdict for r in results] == [None, None]
    assert reason in results[0].reason


def test_no_exception_leaves_verify(monkeypatch: pytest.MonkeyPatch) -> None:
    broken = LogicVerifier()
    assert broken.verify(problem(), [None])[0].reason == "unparseable step: a proof step is text, not a NoneType"  # type: ignore[list-item]

    def fail(formulas: list) -> str:
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr(broken, "_check", fail)
    results = broken.verify(problem(), ["fact2 & fact1 -> int1: {B}{a}", "int1 -> hypothesis", "fact2 -> int2: {A}{a}"])
    assert [r.verdict for r in results] == [None, None, None]
    assert results[0].reason == "verifier error RecursionError: maximum recursion depth exceeded"
    assert results[1].reason == "cites int1: int1 could not be checked"


# ---------------------------------------------------------------- generator


def test_generator_is_deterministic_and_prefix_stable() -> None:
    assert generate_logic_problems(20, seed=3) == generate_logic_problems(20, seed=3)
    assert generate_logic_problems(20, seed=3) != generate_logic_problems(20, seed=4)
    assert generate_logic_problems(5, seed=3) == generate_logic_problems(20, seed=3)[:5]


def test_generator_fields() -> None:
    rows = generate_logic_problems(40, seed=1, wrong_step_rate=0.5)
    for i, row in enumerate(rows):
        assert row["problem_id"] == f"logic-1-{i}"
        assert row["domain"] == "logic" and row["answer"] in LABELS
        meta = row["meta"]
        assert {"premises", "hypothesis", "solution_steps", "planted_error_index"} <= set(meta)
        assert meta["hypothesis"] in row["question"]
        for premise in meta["premises"]:
            assert f"{premise['name']}: {premise['formula']}" in row["question"]
            assert render(parse_formula(premise["formula"])) == premise["formula"]
        assert meta["gold_solution_steps"][-1] == f"__{row['answer']}__"
        planted = meta["planted_error_index"]
        if planted < 0:
            assert meta["solution_steps"] == meta["gold_solution_steps"] and meta["planted_error_kind"] is None
        else:
            assert meta["solution_steps"][planted] != meta["gold_solution_steps"][planted]
            assert meta["solution_steps"][:planted] == meta["gold_solution_steps"][:planted]
        assert Problem.from_dict(row).meta == meta
    assert {r["answer"] for r in rows} == set(LABELS)


def test_wrong_step_rate_bounds() -> None:
    assert all(r["meta"]["planted_error_index"] == -1 for r in generate_logic_problems(30, 0, wrong_step_rate=0.0))
    assert all(r["meta"]["planted_error_index"] >= 0 for r in generate_logic_problems(30, 0, wrong_step_rate=1.0))
    with pytest.raises(ValueError, match="wrong_step_rate"):
        generate_logic_problems(1, 0, wrong_step_rate=1.5)


def test_gold_proofs_verify_and_planted_errors_are_found(verifier: LogicVerifier) -> None:
    rows = generate_logic_problems(60, seed=7, wrong_step_rate=0.6)
    kinds = set()
    for row in rows:
        p = Problem.from_dict(row)
        gold = verifier.verify(p, row["meta"]["gold_solution_steps"])
        assert all(v.verdict is True for v in gold), (row["problem_id"], [v.reason for v in gold])
        found = verifier.verify(p, row["meta"]["solution_steps"])
        planted = row["meta"]["planted_error_index"]
        assert first_flagged(found) == planted, (row["problem_id"], row["meta"]["planted_error_kind"])
        assert all(v.verdict is True for v in found[: max(planted, 0)])
        kinds.add(row["meta"]["planted_error_kind"])
    assert {"wrong_verdict", "dropped_premise", "negated_conclusion"} <= kinds
