"""Congruences between numbers: `164 \\equiv 10 \\pmod{13}` chains and "5 is the inverse of 17 mod 83", checked
exactly (docs/verifiers.md, "Congruences").

A congruence is read only inside a formula whose modulus is a written positive integer (`\\pmod{m}`, `\\pmod m`,
`\\mod{m}`, `\\bmod m`, `(\\text{mod } m)`, or `(mod m)` right after the formula). Each `\\equiv` links the two
expressions beside it; a link is checked only when both are numbers built from our own parse tree (no
variables): `17^{-1}` is the rational 1/17, and `a/b \\equiv c/d (mod m)` holds when `ad - cb` is a multiple of m,
with b and d prime to m (otherwise the link is not checked). An `=` inside a chain is left to the arithmetic pass:
in modular text it often means "congruent".

Safety: linear regexes with bounded quantifiers, the verifier's own tokenizer, parser and exact evaluator; a
formula is at most `symbolic._MAX_SEGMENT_CHARS` long and a step has at most `symbolic._MAX_SEGMENTS` of them.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from annotators import latex
from annotators.verifiers.divisibility import stands_alone
from annotators.verifiers.expr import ArithmeticLimits, Budget, tokenize, value_of
from annotators.verifiers.symbolic import math_segments

__all__ = ["CongruenceClaim", "scan_congruences"]

_EQUIV_RE = re.compile(r"\\equiv(?![A-Za-z])|≡")
_MOD_WORD_RE = re.compile(r"\\[pb]?mod(?![A-Za-z])|(?<![A-Za-z\\])mod(?![A-Za-z])")
_MODULUS_RE = re.compile(r"\s{0,3}\{?\s{0,3}(\d{1,18})\s{0,3}\}?\s{0,3}\)?")
# "(mod 143)" just after the formula: "$7n \equiv 5$ (mod 143)"
_AFTER_RE = re.compile(
    r"\s{0,3}(?:\$\$?|\\[)\]])\s{0,3}\(\s{0,3}(?:\\text\s{0,3}\{\s{0,3})?mod\s{0,3}\}?\s{0,3}(\d{1,18})\s{0,3}\)"
)
_CUT_RE = re.compile(
    r"[,;]|\\quad|\\qquad|\\text|\\(?:implies|Rightarrow|Longrightarrow|iff)(?![A-Za-z])|\band\b|\bor\b"
)
# "5 is the multiplicative inverse of 17 mod 83", "the inverse of 17 modulo 83 is 44"; the number must stand alone
# (divisibility.stands_alone: not the end of an expression such as "17*5*42 = 735")
_INVERSE_IS_RE = re.compile(
    r"(?<!\d)(\d{1,18})\s{1,3}is\s{1,3}(?:the|an?)\s{1,3}(?:multiplicative\s{1,3})?inverse\s{1,3}"
    r"of\s{1,3}(\d{1,18})\s{1,3}(?:mod|modulo)\s{1,3}(\d{1,18})(?![\d,]|\.\d)",
    re.I,
)
_INVERSE_OF_RE = re.compile(
    r"inverse\s{1,3}of\s{1,3}(\d{1,18})\s{1,3}(?:mod|modulo)\s{1,3}(\d{1,18})\s{1,3}is\s{1,3}(\d{1,18})(?![\d,]|\.\d)",
    re.I,
)


@dataclass(frozen=True)
class CongruenceClaim:
    text: str
    holds: bool
    detail: str  # why it fails: "164 is 8 and 10 is 10 mod 13"


def scan_congruences(
    text: str, dollar_is_math: bool, normalise: Any, limits: ArithmeticLimits, budget: Budget
) -> list[CongruenceClaim]:
    """Every checkable congruence of one step: chains inside formulas, then the inverse phrases of the prose."""
    claims: list[CongruenceClaim] = []
    for _start, end, segment in math_segments(text, dollar_is_math):
        if _EQUIV_RE.search(segment) is None:
            continue
        after = _AFTER_RE.match(text, end)
        claims.extend(_chains(segment, int(after.group(1)) if after else None, normalise, limits, budget))
    plain = text.replace("$", " ")
    for match in _INVERSE_IS_RE.finditer(plain):
        if not stands_alone(plain, match.start()):
            continue
        claims.append(_inverse(match.group(), int(match.group(1)), int(match.group(2)), int(match.group(3))))
    for match in _INVERSE_OF_RE.finditer(plain):
        claims.append(_inverse(match.group(), int(match.group(3)), int(match.group(1)), int(match.group(2))))
    return claims


def _chains(
    segment: str, trailing_modulus: int | None, normalise: Any, limits: ArithmeticLimits, budget: Budget
) -> list[CongruenceClaim]:
    """Split a formula at its modulus marks; each stretch before a mark is one chain with that modulus."""
    segment = latex.unwrap_text_commands(segment, r" \1 ")
    chains: list[tuple[str, int]] = []
    begin = 0
    for word in _MOD_WORD_RE.finditer(segment):
        if word.start() < begin:
            continue
        number = _MODULUS_RE.match(segment, word.end())
        if number is None:
            return []  # a modulus that is not a written number (\pmod{n}, \bmod p): unsure, no claim
        stretch = segment[begin : word.start()].rstrip()
        chains.append((stretch[:-1] if stretch.endswith("(") else stretch, int(number.group(1))))
        begin = number.end()
    if trailing_modulus is not None and not chains:
        chains.append((segment, trailing_modulus))
    claims: list[CongruenceClaim] = []
    for stretch, modulus in chains:
        pieces = _CUT_RE.split(stretch)
        claims.extend(_links(pieces[-1], modulus, normalise, limits, budget))
    return claims


def _links(chain: str, modulus: int, normalise: Any, limits: ArithmeticLimits, budget: Budget) -> list[CongruenceClaim]:
    members = _EQUIV_RE.split(chain)
    if len(members) < 2 or modulus < 2:
        return []
    claims = []
    for left, right in zip(members, members[1:], strict=False):
        left_text, right_text = left.split("=")[-1], right.split("=")[0]
        a, b = _value(left_text, normalise, limits, budget), _value(right_text, normalise, limits, budget)
        if a is None or b is None or math.gcd(a.denominator * b.denominator, modulus) != 1:
            continue
        shown = f"{' '.join(left_text.split())} ≡ {' '.join(right_text.split())} (mod {modulus})"
        holds = (a.numerator * b.denominator - b.numerator * a.denominator) % modulus == 0
        detail = "" if holds else f"{_residue(a, modulus)} and {_residue(b, modulus)} mod {modulus}"
        claims.append(CongruenceClaim(shown, holds, detail))
    return claims


def _value(side: str, normalise: Any, limits: ArithmeticLimits, budget: Budget) -> Fraction | None:
    """The exact value of a number expression, or None when it holds anything else (a variable, a word)."""
    toks = [t for t in tokenize(normalise(side, prose=False), limits.max_tokens) if t.kind != "sep"]
    if not toks or len(toks) > limits.max_side_tokens or any(t.kind == "word" for t in toks):
        return None
    if toks[0].kind == "op" and toks[0].text in "+*/^":
        return None  # cut out of a larger expression
    return value_of(toks, limits, budget)


def _residue(value: Fraction, modulus: int) -> str:
    shown = str(value.numerator) if value.denominator == 1 else f"{value.numerator}/{value.denominator}"
    residue = value.numerator * pow(value.denominator, -1, modulus) % modulus
    return f"{shown} is {residue}"


def _inverse(text: str, inverse: int, of: int, modulus: int) -> CongruenceClaim:
    shown = " ".join(text.split())
    if modulus < 2:
        return CongruenceClaim(shown, True, "")
    holds = inverse * of % modulus == 1
    return CongruenceClaim(shown, holds, "" if holds else f"{inverse} * {of} is {inverse * of % modulus} mod {modulus}")
