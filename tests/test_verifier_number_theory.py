"""Tests for number-theory claims (issue 21): congruences (`a \\equiv b \\pmod{m}` chains between numbers, "n is the
inverse of a mod m") and divisibility facts in words ("4 is a multiple of 3", "91 is prime", factorizations, gcd),
checked exactly; a variable, an unwritten modulus, an expression as subject or a denial: no claim."""

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
        "The prime factorization of 84 is " + "2 * " * 5000 + "3.",
        "4 is a multiple of " * 3000 + "3.",
        "9" * 5000 + " is prime. " + "1 is odd " * 2000,
        "gcd(" * 3000 + "1, 2) = 1",
    ],
)
def test_hostile_congruences_are_bounded(text: str) -> None:
    started = time.perf_counter()
    result = check_step(text)
    assert time.perf_counter() - started < 5  # a hang guard with wide headroom, not a performance figure
    assert result.verdict in (None, True, False)


# ---------------------------------------------------------------- divisibility facts stated in words


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("And 4 is a multiple of 3.", False),
        ("The number 2220 is a multiple of 3 because the digits add up to 6.", True),
        ("Because the remainder is 0, 54 is divisible by 6.", True),
        ("91 is prime.", False),
        ("97 is a prime number, so it has no other factor.", True),
        ("$27$ is odd, so we stop.", True),
        ("$54$ is odd.", False),
        ("The prime factorization of 2009 is $7^2 * 41$.", True),
        (r"The prime factorization of 84 is $2^2 \cdot 3 \cdot 7$.", True),
        ("The prime factorization of 84 is 2 * 2 * 21.", False),  # 21 is not prime
        ("The prime factorization of 84 is 2 * 2 * 7. We could go on.", False),  # the product is 28
        ("Since gcd(7,8)=1, the inverse exists.", True),
        (r"$\gcd(12, 18) = 4$", False),
        ("So lcm(4, 6) = 12.", True),
    ],
)
def test_divisibility_facts_in_words(text: str, expected: bool) -> None:
    assert verdict(text) is expected


@pytest.mark.parametrize(
    "text",
    [
        "Since 84 is divisible by 2 twice, one number is 2.",  # "twice" changes the claim: not read
        r"So $17\cdot 5 - 2\cdot 1$ is a multiple of 83.",  # the subject is an expression
        "0.5 is even.",  # the end of a decimal
        "1,001 is divisible by 7.",
        "41 is a prime factor of 82.",
        "91 is not prime.",  # a denial: no claim is read
        "So the prime factorization is 2 * 2 * 7.",  # of what?
    ],
)
def test_unsure_divisibility_phrases_are_not_read(text: str) -> None:
    assert all(claim.kind != "divisibility" for claim in extract_claims(text).claims)


def test_a_large_prime_claim_is_bounded() -> None:
    assert verdict("999999999989 is prime.") is True  # the largest prime below 10^12: trial division to 10^6
    assert verdict("9999999999999989 is prime.") is None  # above the bound: not checked
