"""Tests for congruence claims (issue 21): `a \\equiv b \\pmod{m}` chains between numbers and "n is the inverse of a
mod m", checked exactly; anything with a variable, an unwritten modulus or a denominator not prime to m abstains."""

from __future__ import annotations

import time

import pytest

from annotators.verifiers.arithmetic import check_step, extract_claims


def verdict(text: str) -> bool | None:
    return check_step(text).verdict


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (r"The remainder is $55 \equiv 1 \pmod{9}$.", True),
        (r"$100 \equiv 3 \pmod{7}$", False),  # 100 = 14 * 7 + 2
        (r"Thus $m \equiv -4 \equiv 3 \pmod 7$", True),  # the link with a variable is left out
        (r"$x \equiv 164 \equiv 10 \pmod{11}$ and $x \equiv 164 \equiv 10 \pmod{13}$", False),  # 164 is 8 mod 13
        (r"$x \equiv 164 \equiv 10 \pmod{11}$", True),
        (r"$7 \equiv 15 \mod{8}$", True),
        (r"$(\mod 8)$ aside, $9 \equiv 1 \ (\mod 8)$", True),
        (r"$9 \equiv 2$ (mod 8)", False),  # the modulus written after the formula
        (r"$9 \equiv 1$ (mod 8)", True),
        (r"$9 \equiv 1 \ (\text{mod } 8)$", True),
        (r"And $2\cdot42=84\equiv 1\pmod{83}$.", True),  # `=` is left to the arithmetic pass
        (r"So $17^{-1}\equiv 44\pmod{83}$.", True),  # 17 * 44 = 748 = 9 * 83 + 1
        (r"So $17^{-1}\equiv 45\pmod{83}$.", False),
        (r"$\frac{1}{2} \equiv 4 \pmod 7$", True),
        (r"$17\cdot 205\equiv 82\pmod{83}$", True),
        ("So 5 is the multiplicative inverse of 17 mod 83.", False),
        ("So 44 is the inverse of 17 modulo 83.", True),
        ("The inverse of 17 mod 83 is 44.", True),
        ("The inverse of 17 mod 83 is 42.", False),
    ],
)
def test_congruences_between_numbers(text: str, expected: bool) -> None:
    assert verdict(text) is expected


@pytest.mark.parametrize(
    "text",
    [
        r"$7n \equiv 5$ (mod 143)",  # a variable: an equation to solve
        r"$2^{10} \equiv 1 \pmod{n}$",  # the modulus is not a written number
        r"$f(0, j) = \text{mod}_5(j+1)$",
        r"$\frac{1}{2} \equiv 3 \pmod 6$",  # 2 has no inverse mod 6
        r"$9 \equiv 2$",  # no modulus at all
        "5 is not the inverse of 17 mod 83.",  # a denial, not a claim
        r"$100 \equiv 3 \pmod{7}$ is false.",  # the step rejects it
    ],
)
def test_unsure_congruences_abstain(text: str) -> None:
    assert verdict(text) is None


def test_an_expression_before_is_the_inverse_is_not_read_as_the_inverse() -> None:
    # "17*5*42 = 735 is the inverse of 17 mod 83": which number is the inverse is unsure; the product is still read
    scan = extract_claims("So $17\\cdot5\\cdot42=735$ is the multiplicative inverse of 17 mod 83.")
    assert [claim.kind for claim in scan.claims] == ["arithmetic"]
    assert not scan.claims[0].holds  # 17 * 5 * 42 = 3570


def test_the_reason_names_both_residues() -> None:
    result = check_step(r"$164 \equiv 10 \pmod{13}$")
    assert result.verdict is False
    assert "164 is 8 and 10 is 10 mod 13" in result.reason


def test_congruence_claims_have_their_own_kind() -> None:
    scan = extract_claims(r"$2 + 2 = 4$ and $55 \equiv 1 \pmod{9}$")
    assert sorted(claim.kind for claim in scan.claims) == ["arithmetic", "congruence"]


@pytest.mark.parametrize(
    "text",
    [
        "$" + r"1 \equiv " * 3000 + r"1 \pmod{2}$",
        "$" + r"1 \equiv " * 200 + r"1 \pmod{2}$, " * 100,
        r"$1 \equiv 1 \pmod{" + "9" * 5000 + "}$",
        r"\pmod" * 5000,
        "$" + "mod " * 4000 + "$",
        "7 is the inverse of" + " " * 5000 + "3 mod 5 " * 500,
        r"$2^{10^{10}} \equiv 1 \pmod{7}$",
    ],
)
def test_hostile_congruences_are_bounded(text: str) -> None:
    started = time.perf_counter()
    result = check_step(text)
    assert time.perf_counter() - started < 5  # a hang guard with wide headroom, not a performance figure
    assert result.verdict in (None, True, False)
