"""Correct competition-style steps must not be flagged (issue 21): a False verdict vetoes a label, so a misreading
is the worst failure. The steps (tests/data/verifier_correct_steps.json) are the false flags three red-team passes
found in earlier versions (the README there lists their kinds); the same shapes with a real slip stay flagged."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from annotators.verifiers.arithmetic import check_step

STEPS = json.loads((Path(__file__).parent / "data" / "verifier_correct_steps.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize("step", STEPS, ids=[s["text"][:40] for s in STEPS])
def test_a_correct_step_is_not_flagged(step: dict) -> None:
    result = check_step(step["text"], previous=step["previous"])
    assert result.verdict is not False, result.reason


@pytest.mark.parametrize(
    ("text", "previous"),
    [
        # the same shapes with a real slip are still flagged
        (r"$(x-2)(x-3) = 0$, so $x - 2 = 0$ or $x - 3 = 0$. Thus $x = 2$ or $x = 4$.", ""),
        (r"$(x + 1)^2 = x^2 + x + 1 = (x + 1)x + 1$.", ""),  # a rewrite that keeps the degree
        ("Working modulo 7, $3^2 = 3$.", ""),  # false mod 7 as well
        ("In base 5, $4 + 3 = 13$.", ""),  # 4 + 3 is 12 in base 5
        (r"$2^{10} \approx 500$.", ""),  # off by half
        ("Case 1: ways = 4 * 3 = 11", ""),
        ("Pages 10-99 = 80 pages.", ""),
        (r"$\gcd(84, 90) = 4$.", ""),
        ("So 221 is prime.", ""),
        ("Possible sums:\n- 1 + 6 = 7\n- 2 + 5 = 8", ""),  # a bullet list with a slip
        ("\\[\nS = 1 + 3 + 5 + \\\\\n7 + 9 = 26\n\\]", ""),  # a display line broken after `+`
        (r"We have $2x + 3 = 11$, so $x = 5$.", ""),  # off by one from an integer root: not a rounding
        (r"Since $k$ is an integer, $(2k)^2 = 2k^2 = 2k \cdot k$.", ""),
    ],
)
def test_the_same_shapes_with_a_slip_are_flagged(text: str, previous: str) -> None:
    assert check_step(text, previous=previous).verdict is False


SLIPS = json.loads((Path(__file__).parent / "data" / "verifier_slip_steps.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize("step", SLIPS, ids=[s["slip"][:40] for s in SLIPS])
def test_a_planted_slip_stays_flagged(step: dict) -> None:
    # recall side: the abstentions that keep correct steps unflagged must not hide these slips
    assert check_step(step["text"]).verdict is False, step["slip"]
