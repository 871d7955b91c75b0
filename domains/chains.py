"""Long running-total chains: the testbed where OmegaPRM's binary search is meant to pay.

A problem is a chain of M additions and subtractions, ``Q: 37+5-8+6=?``, solved one operation per step on the
running total::

     Step 1: 37+5=42 Step 2: 42-8=34 Step 3: 34+6=40 Answer: 40

These are the arithmetic domain's expressions without products, so its order, step format, parser and exact
checker apply unchanged (`domains.arithmetic`): each step's left operand is the previous result, the right operand
the next literal of the question, and the answer restates the last result. The first wrong step is therefore known
exactly, and a wrong intermediate can reach the gold answer only through a later slip that undoes it
(`compensated`): the case where "MC > 0 means the prefix is right" fails.

Chains have M = 4..32 operations by default; operands are 1..50 and every running total stays in 0..99, so every
number has at most two digits. Nothing here is ever ``eval``-ed.
"""

from __future__ import annotations

import random

from domains.arithmetic import exact_first_error, gold_solution, question_for, split_steps, step_truth

__all__ = [
    "MAX_STEPS",
    "MIN_STEPS",
    "compensated",
    "exact_first_error",
    "generate_problems",
    "gold_solution",
    "question_for",
    "split_steps",
    "step_truth",
]

MIN_STEPS, MAX_STEPS = 4, 32
_MAX_OPERAND = 50
_MAX_VALUE = 99


def _random_chain(rng: random.Random, num_steps: int) -> str:
    """A chain whose running total stays in 0.._MAX_VALUE: each operation is drawn among the feasible ones."""
    total = rng.randint(1, _MAX_OPERAND)
    parts = [str(total)]
    for _ in range(num_steps):
        up = min(_MAX_OPERAND, _MAX_VALUE - total)  # largest addend that stays in range
        down = min(_MAX_OPERAND, total)  # largest subtrahend that stays in range
        ops = [op for op, room in (("+", up), ("-", down)) if room >= 1]
        op = rng.choice(ops)
        operand = rng.randint(1, up if op == "+" else down)
        total = total + operand if op == "+" else total - operand
        parts.append(f"{op}{operand}")
    return "".join(parts)


def generate_problems(n: int, seed: int, min_steps: int = MIN_STEPS, max_steps: int = MAX_STEPS) -> list[dict]:
    """``n`` deterministic chains of ``min_steps..max_steps`` operations (length uniform).

    Each item: ``{"problem_id", "question", "answer", "num_steps", "expression", "domain"}``, the keys of the
    arithmetic domain's problems plus ``domain: chains``; the same arguments always give the same list.
    """
    if not 1 <= min_steps <= max_steps:
        raise ValueError(f"need 1 <= min_steps <= max_steps, got {min_steps}, {max_steps}")
    rng = random.Random(seed)
    problems = []
    for i in range(n):
        num_steps = rng.randint(min_steps, max_steps)
        expression = _random_chain(rng, num_steps)
        steps = split_steps(gold_solution(expression))
        answer = steps[-1].rsplit("Answer:", 1)[1].strip()
        problems.append(
            {
                "problem_id": f"chain-{seed}-{i}",
                "question": question_for(expression),
                "answer": answer,
                "num_steps": num_steps,
                "expression": expression,
                "domain": "chains",
            }
        )
    return problems


def compensated(expression: str, steps: list[str], final_answer: str | None, gold_answer: str) -> bool:
    """Whether a solution with a wrong step still ends on the gold answer (a later slip undid the error)."""
    return exact_first_error(expression, steps) >= 0 and final_answer is not None and final_answer == gold_answer
