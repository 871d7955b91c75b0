"""Divisibility facts stated in words about written integers, checked exactly (docs/verifiers.md, "Number theory").

    "4 is a multiple of 3"            A % B == 0
    "54 is divisible by 6"            A % B == 0
    "41 is prime", "41 is a prime"    A is prime (A up to 10^12: trial division, bounded)
    "27 is odd", "54 is even"         parity
    "the prime factorization of 84 is 2 * 2 * 21"
                                      the product equals 84 and every factor is prime
    "gcd(7, 8) = 1", "\\gcd(12, 18) = 6", "lcm(4, 6) = 12"

A phrase is read only when its subject number stands alone (not the end of an expression such as "17*5 - 2 is a
multiple of 83", not the object of a preposition as in "the number of divisors of 36 is odd"), when what follows
it ends the statement or starts a new clause ("4 is a multiple of 3, so ..."; not "84 is divisible by 2 twice"),
and when its sentence does not ask, test, quantify or suppose ("check whether 221 is prime", "None of 25, 35, 49
is divisible by 3"). Negations ("is not prime") are not read: no claim. All regexes are linear, with bounded
quantifiers, over a step already bounded in length.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from annotators.verifiers.expr import ArithmeticLimits, Budget, Node, Parser, Reading, Skip, evaluate, tokenize

__all__ = ["DivisibilityClaim", "scan_divisibility", "stands_alone"]

_MAX_PRIME = 10**12  # trial division up to 10^6
_NUM = r"(\d{1,15})"
_SP = r"[\s$]{1,4}"
# what may follow a read phrase: the end, punctuation, or a word that opens a new clause
_END = r"(?=[\s$]{0,4}(?:[.,;:!?)]|$|(?:so|and|but|which|because|since|then|as|too|again|also|hence|thus)\b))"
_MULTIPLE_RE = re.compile(
    _NUM
    + _SP
    + r"is"
    + _SP
    + r"(?:(?:a|an)"
    + _SP
    + r")?(?:multiple"
    + _SP
    + r"of|divisible"
    + _SP
    + r"by)"
    + _SP
    + _NUM
    + _END,
    re.I,
)
_PRIME_RE = re.compile(_NUM + _SP + r"is" + _SP + r"(?:a" + _SP + r")?prime(?:" + _SP + r"number)?" + _END, re.I)
_PARITY_RE = re.compile(
    _NUM + _SP + r"is" + _SP + r"(?:an?" + _SP + r")?(even|odd)(?:" + _SP + r"number)?" + _END, re.I
)
_GCD_RE = re.compile(
    r"(?<![A-Za-z])\\?(gcd|lcm)\s{0,3}(?:\\left)?\(\s{0,3}"
    + _NUM
    + r"\s{0,3},\s{0,3}"
    + _NUM
    + r"\s{0,3}(?:\\right)?\)\s{0,3}=\s{0,3}"
    + _NUM
    + r"(?!\d|[.,]\d|\s{0,3}(?:[*^/+\-×·{]|\\(?:cdot|times|,)))",  # "= 2 \cdot 3 = 6" is not "= 2"
    re.I,
)
_FACTORIZATION_RE = re.compile(
    r"prime"
    + _SP
    + r"factori[sz]ation"
    + _SP
    + r"of"
    + _SP
    + _NUM
    + _SP
    + r"is"
    + _SP
    + r"([0-9\s^*{}()\\a-z]{1,120}?)"
    + r"(?=[\s$]{0,4}(?:[.,;:!?]|$|(?:so|and|but|which|because|since|then|we)\b))",
    re.I,
)
_FACTOR_WORD_RE = re.compile(r"\\(?:cdot|times)(?![A-Za-z])")


@dataclass(frozen=True)
class DivisibilityClaim:
    text: str
    holds: bool
    detail: str  # why it fails: "4 = 1 * 3 + 1"


def scan_divisibility(text: str, limits: ArithmeticLimits, budget: Budget) -> list[DivisibilityClaim]:
    """Every divisibility, primality, parity, factorization and gcd/lcm fact of one step, checked."""
    claims: list[DivisibilityClaim] = []
    for match in _MULTIPLE_RE.finditer(text):
        if stands_alone(text, match.start()) and _asserted(text, match.start()):
            a, b = int(match.group(1)), int(match.group(2))
            if b != 0:
                holds = a % b == 0
                claims.append(_claim(match, holds, f"{a} = {a // b} * {b} + {a % b}"))
    for match in _PRIME_RE.finditer(text):
        a = int(match.group(1))
        if stands_alone(text, match.start()) and _asserted(text, match.start()) and a <= _MAX_PRIME:
            factor = _smallest_factor(a)
            claims.append(_claim(match, factor == a and a > 1, f"{a} = {factor} * {a // factor}" if a > 1 else ""))
    for match in _PARITY_RE.finditer(text):
        if stands_alone(text, match.start()) and _asserted(text, match.start()):
            a = int(match.group(1))
            holds = (a % 2 == 0) == (match.group(2).lower() == "even")
            claims.append(_claim(match, holds, f"{a} is {'even' if a % 2 == 0 else 'odd'}"))
    for match in _GCD_RE.finditer(text):
        a, b, stated = int(match.group(2)), int(match.group(3)), int(match.group(4))
        value = math.gcd(a, b) if match.group(1).lower() == "gcd" else math.lcm(a, b)
        claims.append(_claim(match, value == stated, f"it is {value}"))
    for match in _FACTORIZATION_RE.finditer(text):
        claim = _factorization(match, limits, budget) if _asserted(text, match.start()) else None
        if claim is not None:
            claims.append(claim)
    return claims


# A phrase inside a question, a test, a quantifier over a list or a supposition is not an assertion:
# "check whether 221 is prime", "None of 25, 35, 49 is divisible by 3", "Suppose 15 is even".
_NOT_ASSERTED_RE = re.compile(
    r"\b(?:whether|if|check\w*|test\w*|determine|decide|ask\w*|suppose|assum\w*|none|no|neither|nor|exactly|"
    r"one|some|any|each|every|all|either|at\s{1,3}least|at\s{1,3}most|which|whose|would|could|might)\b|\?",
    re.I,
)
_SENTENCE_START_RE = re.compile(r"[.!?\n](?=\s)")


def _asserted(text: str, start: int) -> bool:
    """No cue of a question, test, quantifier or supposition between the sentence start and the phrase."""
    window_start = max(0, start - 200)
    window = text[window_start:start]
    starts = [m.end() for m in _SENTENCE_START_RE.finditer(window)]
    sentence = window[starts[-1] :] if starts else window
    return _NOT_ASSERTED_RE.search(sentence) is None


def _claim(match: re.Match[str], holds: bool, detail: str) -> DivisibilityClaim:
    return DivisibilityClaim(" ".join(match.group().replace("$", " ").split()), holds, "" if holds else detail)


def stands_alone(text: str, start: int) -> bool:
    """The subject number is not the end of an expression: before it (spaces and `$` aside) is the start of the
    text, punctuation, or a plain word, never a digit, an operator or a LaTeX command."""
    at = start
    while at > 0 and start - at < 8 and text[at - 1] in " \t\n$":
        at -= 1
    if at == 0:
        return True
    before = text[at - 1]
    if before in ".," and at == start and at >= 2 and text[at - 2].isdigit():
        return False  # 0.5, 1,000: the end of a number
    if before in ".,;:!?(\n":
        return True
    if not before.isalpha():
        return False
    word_start = at - 1
    while word_start > 0 and at - word_start < 40 and text[word_start - 1].isalpha():
        word_start -= 1
    if text[word_start:at].lower() in _PREPOSITIONS:
        return False  # "the number of divisors of $36$ is odd": 36 is not the subject
    return word_start == 0 or text[word_start - 1] != "\\"


_PREPOSITIONS = frozenset("of in below under than from above between to by on at for with over within into".split())


def _smallest_factor(n: int) -> int:
    if n < 4:
        return n
    for p in (2, 3):
        if n % p == 0:
            return p
    k = 5
    while k * k <= n:  # n <= 10^12: at most ~3.3e5 steps
        if n % k == 0:
            return k
        if n % (k + 2) == 0:
            return k + 2
        k += 6
    return n


def _factorization(match: re.Match[str], limits: ArithmeticLimits, budget: Budget) -> DivisibilityClaim | None:
    """`N is 2^2 * 3 * 7`: a product of powers of numbers only; its value must be N and its bases prime."""
    number = int(match.group(1))
    written = _FACTOR_WORD_RE.sub("*", match.group(2)).replace("{", "(").replace("}", ")")
    toks = [t for t in tokenize(written, limits.max_tokens) if t.kind != "sep"]
    if not toks or any(t.kind not in ("num", "op", "lp", "rp") for t in toks):
        return None
    try:
        tree = Parser(toks, limits).parse()
        bases = _bases(tree)
        value = evaluate(tree, Reading(), budget)
    except Skip:
        return None
    if bases is None or value.denominator != 1 or any(b > _MAX_PRIME for b in bases):
        return None
    composite = [b for b in bases if b < 2 or _smallest_factor(b) != b]
    if value != number:
        return _claim(match, False, f"the product is {value}")
    if composite:
        return _claim(match, False, f"{composite[0]} is not prime")
    return _claim(match, True, "")


def _bases(node: Node) -> list[int] | None:
    """The bases of a product of powers (`2^2 * 3 * 7` -> [2, 3, 7]), or None for anything else."""
    kind: Any = node[0]
    if kind == "num":
        value = node[1]
        return [int(value)] if value.denominator == 1 else None
    if kind == "bin" and node[1] == "*":
        left, right = _bases(node[2]), _bases(node[3])
        return None if left is None or right is None else left + right
    if kind == "bin" and node[1] == "^" and node[2][0] == "num" and node[3][0] == "num":
        return _bases(node[2])
    return None
