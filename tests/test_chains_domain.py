"""Tests for the long-chain domain: generation, exact first error on hand-made chains, compensation."""

from __future__ import annotations

from pathlib import Path

import pytest

from domains.arithmetic import canonical_steps
from domains.chains import compensated, exact_first_error, generate_problems, gold_solution, split_steps

CHAIN = "37+5-8+6"
RIGHT = " Step 1: 37+5=42 Step 2: 42-8=34 Step 3: 34+6=40 Answer: 40"
REPO = Path(__file__).resolve().parent.parent


def test_generated_chains_are_deterministic_and_in_range() -> None:
    problems = generate_problems(300, seed=5)
    assert problems == generate_problems(300, seed=5)
    assert problems != generate_problems(300, seed=6)
    lengths = {p["num_steps"] for p in problems}
    assert min(lengths) == 4 and max(lengths) == 32
    for p in problems:
        steps = canonical_steps(p["expression"])
        assert len(steps) == p["num_steps"] and {op for _, op, _, _ in steps} <= {"+", "-"}
        assert all(0 <= c <= 99 and 1 <= b <= 50 for _, _, b, c in steps)
        assert all(later[0] == earlier[3] for earlier, later in zip(steps, steps[1:], strict=False))  # running total
        assert p["question"] == f"Q: {p['expression']}=?" and p["answer"] == str(steps[-1][3])
        assert p["domain"] == "chains" and p["problem_id"].startswith("chain-5-")


def test_lengths_can_be_pinned() -> None:
    assert {p["num_steps"] for p in generate_problems(20, seed=1, min_steps=16, max_steps=16)} == {16}
    with pytest.raises(ValueError):
        generate_problems(1, seed=1, min_steps=5, max_steps=4)


def test_exact_first_error_on_hand_made_chains() -> None:
    assert gold_solution(CHAIN) == RIGHT
    assert exact_first_error(CHAIN, split_steps(RIGHT)) == -1
    slip = " Step 1: 37+5=42 Step 2: 42-8=35 Step 3: 35+6=41 Answer: 41"
    assert exact_first_error(CHAIN, split_steps(slip)) == 1
    wrong_operand = " Step 1: 37+5=42 Step 2: 42-6=36 Step 3: 36+6=42 Answer: 42"
    assert exact_first_error(CHAIN, split_steps(wrong_operand)) == 1
    wrong_answer = " Step 1: 37+5=42 Step 2: 42-8=34 Step 3: 34+6=40 Answer: 41"
    assert exact_first_error(CHAIN, split_steps(wrong_answer)) == 2


def test_a_compensated_slip_reaches_the_gold_answer_with_a_wrong_step() -> None:
    # 42-8 written as 35, then 35+6 written as 40: two slips that cancel, the answer is right.
    undone = " Step 1: 37+5=42 Step 2: 42-8=35 Step 3: 35+6=40 Answer: 40"
    steps = split_steps(undone)
    assert exact_first_error(CHAIN, steps) == 1
    assert compensated(CHAIN, steps, "40", "40")
    assert not compensated(CHAIN, split_steps(RIGHT), "40", "40")  # right all along
    assert not compensated(CHAIN, split_steps(" Step 1: 37+5=42 Step 2: 42-8=35 Answer: 35"), "35", "40")


@pytest.mark.parametrize("model", ["tiny-chain", "tiny-arith"])
def test_the_tokenizer_round_trips_the_domain_text(model: str) -> None:
    path = REPO / "models" / model
    if not (path / "tokenizer.json").exists():
        pytest.skip(f"models/{model} is not built")
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    for problem in generate_problems(50, seed=3):
        for text in (problem["question"], gold_solution(problem["expression"])):
            ids = tokenizer(text, add_special_tokens=False)["input_ids"]
            assert tokenizer.decode(ids) == text
            assert tokenizer.unk_token_id not in ids
