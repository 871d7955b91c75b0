"""Tests for the synthetic arithmetic domain (pure Python, no model needed)."""

from __future__ import annotations

import re

import pytest

from domains.arithmetic import (
    canonical_steps,
    evaluate,
    exact_first_error,
    generate_problems,
    gold_solution,
    parse_expression,
    question_for,
    split_steps,
    step_truth,
)


def test_generate_problems_is_deterministic() -> None:
    assert generate_problems(50, seed=3) == generate_problems(50, seed=3)
    assert generate_problems(50, seed=3) != generate_problems(50, seed=4)


def test_problem_fields_and_ids() -> None:
    problems = generate_problems(20, seed=11)
    for i, p in enumerate(problems):
        assert set(p) == {"problem_id", "question", "answer", "num_steps", "expression"}
        assert p["problem_id"] == f"arith-11-{i}"
        assert p["question"] == f"Q: {p['expression']}=?"
        assert p["answer"] == str(evaluate(p["expression"]))
        assert re.fullmatch(r"\d+([+\-*]\d+)+", p["expression"])


def test_chain_lengths_cover_range_and_match_steps() -> None:
    problems = generate_problems(500, seed=0)
    lengths = {p["num_steps"] for p in problems}
    assert lengths == {2, 3, 4, 5, 6}
    for p in problems:
        assert len(canonical_steps(p["expression"])) == p["num_steps"]
    fixed = generate_problems(30, seed=1, min_steps=4, max_steps=4)
    assert {p["num_steps"] for p in fixed} == {4}


def test_intermediate_results_are_non_negative_and_moderate() -> None:
    for p in generate_problems(500, seed=5):
        _, ops = parse_expression(p["expression"])
        assert "**" not in "".join(ops)
        for a, op, b, c in canonical_steps(p["expression"]):
            assert 0 <= c <= 99
            if op == "*":
                assert a <= 9 and b <= 9


def test_gold_solution_format() -> None:
    assert gold_solution("9*9+24-7") == " Step 1: 9*9=81 Step 2: 81+24=105 Step 3: 105-7=98 Answer: 98"
    assert question_for("9*9+24-7") == "Q: 9*9+24-7=?"


def test_order_of_evaluation_term_by_term_left_to_right() -> None:
    # each product is computed when reached, then folded into the running total
    assert canonical_steps("2+3*4-5*2") == [(3, "*", 4, 12), (2, "+", 12, 14), (5, "*", 2, 10), (14, "-", 10, 4)]
    assert canonical_steps("24-12+9*6") == [(24, "-", 12, 12), (9, "*", 6, 54), (12, "+", 54, 66)]
    assert canonical_steps("2*3*4") == [(2, "*", 3, 6), (6, "*", 4, 24)]
    assert canonical_steps("10-3+2") == [(10, "-", 3, 7), (7, "+", 2, 9)]
    assert evaluate("10-3+2") == 9
    assert evaluate("2+3*4-5*2") == 4


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gold_solutions_have_no_error(seed: int) -> None:
    for p in generate_problems(100, seed=seed):
        steps = split_steps(gold_solution(p["expression"]))
        assert len(steps) == p["num_steps"]
        assert exact_first_error(p["expression"], steps) == -1
        assert step_truth(p["expression"], steps) == [True] * len(steps)


def _plant_error(steps: list[str], k: int) -> list[str]:
    """Change the result of step k (and leave later steps as they were)."""
    bad = list(steps)
    m = re.match(r"(Step \d+: \d+[+\-*]\d+=)(\d+)(.*)", bad[k])
    assert m is not None
    bad[k] = f"{m[1]}{int(m[2]) + 1}{m[3]}"
    return bad


@pytest.mark.parametrize("seed", [7, 8])
def test_planted_arithmetic_error_found_at_k(seed: int) -> None:
    for p in generate_problems(60, seed=seed):
        steps = split_steps(gold_solution(p["expression"]))
        for k in range(len(steps)):
            bad = _plant_error(steps, k)
            assert exact_first_error(p["expression"], bad) == k
            assert step_truth(p["expression"], bad) == [i < k for i in range(len(steps))]


def test_consistent_but_wrong_operand_is_an_error() -> None:
    # 81+25=106 is true arithmetic, but 25 is not in the problem
    steps = ["Step 1: 9*9=81", "Step 2: 81+25=106", "Step 3: 106-7=99 Answer: 99"]
    assert exact_first_error("9*9+24-7", steps) == 1


def test_wrong_order_is_an_error() -> None:
    # doing the addition before the multiplication violates precedence
    assert exact_first_error("5+3*4", ["Step 1: 5+3=8", "Step 2: 8*4=32 Answer: 32"]) == 0
    # computing a later product early is a valid value but not the documented order
    steps = ["Step 1: 2*6=12", "Step 2: 24-12=12", "Step 3: 12+12=24 Answer: 24"]
    assert exact_first_error("24-12+2*6", steps) == 0


def test_commutative_swap_is_accepted() -> None:
    steps = ["Step 1: 9*9=81", "Step 2: 24+81=105", "Step 3: 105-7=98 Answer: 98"]
    assert exact_first_error("9*9+24-7", steps) == -1
    # but not for subtraction
    assert exact_first_error("10-3", ["Step 1: 3-10=7 Answer: 7"]) == 0


def test_answer_checks() -> None:
    expr = "9*9+24-7"
    right = ["Step 1: 9*9=81", "Step 2: 81+24=105", "Step 3: 105-7=98"]
    assert exact_first_error(expr, [*right[:2], right[2] + " Answer: 97"]) == 2  # wrong answer
    assert exact_first_error(expr, right) == 2  # no answer at all
    assert exact_first_error(expr, [right[0], right[1] + " Answer: 105"]) == 1  # stops early
    assert exact_first_error(expr, [right[0] + " Answer: 81", right[1], right[2] + " Answer: 98"]) == 0
    extra = [*right, "Step 4: 98+0=98 Answer: 98"]
    assert exact_first_error(expr, extra) == 3  # the superfluous step is the first wrong one
    extra = [*right[:2], right[2] + " Answer: 98", "Step 4: 98+0=98 Answer: 98"]
    assert exact_first_error(expr, extra) == 2  # answer given before the extra step


def test_wrong_step_label_is_an_error() -> None:
    assert exact_first_error("9*9+24", ["Step 1: 9*9=81", "Step 3: 81+24=105 Answer: 105"]) == 1
    # labels are optional
    assert exact_first_error("9*9+24", ["9*9=81", "81+24=105 Answer: 105"]) == -1


@pytest.mark.parametrize(
    "steps",
    [
        ["garbage"],
        [""],
        ["Step 1: nine times nine is 81"],
        ["Step 1: 9*9=", "Step 2: 81+24=105 Answer: 105"],
        ["Answer: 98"],
        [],
    ],
)
def test_garbage_gives_zero(steps: list[str]) -> None:
    assert exact_first_error("9*9+24-7", steps) == 0
    assert not any(step_truth("9*9+24-7", steps))


def test_split_steps() -> None:
    text = " Step 1: 9*9=81 Step 2: 81+24=107 Answer: 107"
    assert split_steps(text) == ["Step 1: 9*9=81", "Step 2: 81+24=107 Answer: 107"]
    assert split_steps("blah Step 1: 1+1=2") == ["blah", "Step 1: 1+1=2"]


def test_parse_expression_rejects_malformed() -> None:
    assert parse_expression("Q: 9*9+24-7=?") == ([9, 9, 24, 7], ["*", "+", "-"])
    for bad in ["", "9*", "*9", "9**9", "9+x", "9 9"]:
        with pytest.raises(ValueError):
            parse_expression(bad)
