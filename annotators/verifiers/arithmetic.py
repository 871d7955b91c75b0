"""Claim verifier: finds equalities inside natural-language or LaTeX steps and checks them exactly.

Why: a cheap solver-backed veto for step labels, trusted only if its flags are right: high precision, low
recall, used next to MC/judge labels, never as the only labeller. Reading rules, the rounding/truncation rule,
the symbolic check, the limits and the measured figures: docs/verifiers.md (`bench/bench_arithmetic_verifier.py`).

This module scans a step for claims and gives the verdict; `expr.py` holds the tokens, the parser and the exact
evaluator, `symbolic.py` the sympy-backed checks, `annotators/latex.py` the LaTeX vocabulary shared with the
answer grader.

Verdict per step: False if any claim fails (the reason names it: "81+24=107 but 81+24=105"), True if at least
one claim was checked and all hold, None if nothing was checkable (the reason says why). A claim is an `=` (or
`≈`) with a numeric expression on each side (arithmetic), or, inside a formula, an identity or a stated solution
with variables, or a number with a radical or logarithm (symbolic). Whenever the reading is uncertain (an unknown
command or function next to a side, a side cut out of a larger expression, a label, two formulas and the text
between them, a step that rejects something) there is no claim, and the reason is kept in `ClaimScan.skipped`.

Safety (docs/security.md: model output is data): our own linear-regex normaliser, tokenizer and bounded
recursive-descent parser; never eval, sympify or parse_expr. `check_step` never raises: a non-text step or any
failure is verdict None with the reason.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from fractions import Fraction
from typing import Any

__all__ = ["ArithmeticLimits", "ArithmeticVerifier", "Claim", "ClaimScan", "check_step", "extract_claims"]

from annotators import latex
from annotators.verifiers import congruence, divisibility, symbolic
from annotators.verifiers.base import StepVerdict, as_config
from annotators.verifiers.expr import (
    Abort,
    ArithmeticLimits,
    Budget,
    Node,
    NotRational,
    Parser,
    Reading,
    Skip,
    Tok,
    agree,
    evaluate,
    has_kind,
    has_operator,
    leftmost_number,
    literal_decimals,
    tokenize,
    value_of,
)
from schemas.records import Problem


@dataclass(frozen=True)
class Claim:
    """One checked equality: the source text of both sides, their exact values and whether it holds."""

    text: str
    lhs: str
    rhs: str
    lhs_value: Fraction | None  # None for a symbolic claim: its sides are not rational numbers
    rhs_value: Fraction | None
    holds: bool
    source: str  # "text" or "annotation" (a GSM8K <<a*b=c>> calculator annotation)
    rhs_is_number: bool = False
    # "symbolic": through sympy (variables, radicals, logarithms); "congruence": mod m; "divisibility": in words
    kind: str = "arithmetic"
    detail: str = ""  # a symbolic claim's reason, e.g. "they differ at x = 3/7: 100/49 vs 58/49"

    def describe(self) -> str:
        if self.holds:
            return self.text
        if self.lhs_value is None or self.rhs_value is None:
            return f"{self.text} but {self.detail}"
        eq = "=" if "=" in self.text and " = " not in self.text else " = "
        out = f"{self.text} but {self.lhs}{eq}{_fmt(self.lhs_value)}"
        if not self.rhs_is_number:
            out += f" and {self.rhs}{eq}{_fmt(self.rhs_value)}"
        return out


@dataclass
class ClaimScan:
    """Every claim found in one step: the checked ones, why others were skipped, or the limit that stopped it."""

    claims: list[Claim] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # why a found claim could not be checked
    aborted: str | None = None  # a step-level limit was hit


# ---------------------------------------------------------------- normalisation (plain text and LaTeX)

_ANNOTATION_RE = re.compile(r"<<([^<>]{0,400})>>")
_MIXED_RE = re.compile(r"(?<=\d)\s*(?=\\[dt]?frac)")
_BINOM_SHORT_RE = re.compile(r"\\[dt]?binom\s*(\d)\s*(\d)")
_FRAC_SHORT_RE = re.compile(r"\\[dt]?frac\s*(\d)\s*(\d)")
_BOXED_RE = re.compile(r"\\(?:boxed|fbox)\s*\{([^{}]*)\}")
# A closing `$` right after a value or a letter ("$17\cdot 44=788$"): the text uses `$` as a math delimiter.
# A currency `$` is followed by its amount and preceded by a space or an operator ("= $18").
_LATEX_DOLLAR_RE = re.compile(r"(?<=[\w})\]!.'])(?<!\\)\$(?!\d)|\$(?=\\|[A-Za-z(\-{])")
# Arguments whose reading is uncertain become unknown commands, so a claim touching them is dropped:
# \sqrt[n]{x} other than a root of a written number, \sqrt23 and \log_28 (one subscript/argument digit in LaTeX,
# two to the eye), a repeating decimal.
_UNSURE_FUNCTION_RE = re.compile(
    r"\\sqrt\s*\[[^\[\]]{0,40}\]?|\\sqrt\s*(?=\d\d)|\\log\s*_\s*(?=\d\d)"
    r"|(?<=\d)\.?\s*\\(?:overline|dot|bar)(?![A-Za-z])"  # 33.\overline{3}: a repeating decimal is not 33
    r"|(?<=\d)(?:\.{3}|…|\\[lc]?dots(?![A-Za-z]))"  # 27.2727...: the digits go on
)
# \sqrt[3]{8}: an n-th root of a written number is a power; any other \sqrt[...] stays unsure
_NTH_ROOT_RE = re.compile(r"\\sqrt\s*\[\s*([2-6])\s*\]\s*\{\s*(\d{1,30}(?:\.\d{1,30})?)\s*\}")
# A line goes on when it ends in an operator ("1 + 4 + \\\\ 9 = 14") or when the next align row opens with `&=`
# (`S &= a \\\\ &= b` is the chain S = a = b).
_CONTINUED_LINE_RE = re.compile(
    r"(?:(?<=[-+*/=×·])|(?<=\\cdot)|(?<=\\times))[ \t]{0,8}(?:\\\\[ \t]{0,8}\n?|\n)[ \t]{0,8}&?"
    r"|\\\\[ \t]{0,8}\n?[ \t]{0,8}&?[ \t]{0,8}(?==)"
)
_BULLET_RE = re.compile(r"(?m)^[ \t]{0,12}[-–•][ \t]+")
_BINOM_RE = re.compile(r"\\[dt]?binom\s*\{([^{}]*)\}\s*\{([^{}]*)\}")
_SQRT_RE = re.compile(r"\\sqrt\s*\{([^{}]*)\}")
_SCRIPT_GROUP_RE = re.compile(r"([\^_])\s*\{([^{}]*)\}")  # 10^{-2}, \log_{10}
_GROUP_PASSES = 8
_SUBS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"\\\\"), " \n "),  # LaTeX line break separates claims
    (re.compile(r"\\[()\[\]]"), " \n "),  # math delimiters \( \) \[ \] end a claim; not parentheses
    (re.compile(r"\\left\s*[(\[]"), "("),
    (re.compile(r"\\right\s*[)\]]"), ")"),
    (re.compile(r"\\(?:left|right)\s*(?:\\?\||\\[lr]?[vV]ert\b)"), "|"),  # absolute values stay visible
    (re.compile(r"\\(?:left|right)\b\s*(?:\\[{}]|[.{}])?"), " "),  # not the `\` of \left\lfloor
    (re.compile(r"\\(?:times|cdot|ast)(?![A-Za-z])|[×·∙⋅∗]"), " * "),  # a control word ends at a non-letter: \cdot4
    (re.compile(r"\\div(?![A-Za-z])|÷"), " / "),
    (re.compile(r"−"), "-"),
    (re.compile(r"\\(?:approx|simeq|thickapprox)(?![A-Za-z])|≈|≃"), " ≈ "),
    # not equalities: inequalities, congruences, arrows
    (
        re.compile(
            r"\\(?:neq?|leq?|geq?|leqslant|geqslant|lt|gt|equiv|implies|Rightarrow|rightarrow|to|iff)(?![A-Za-z])"
        ),
        " ; ",
    ),
    (re.compile(r"[≠≤≥≡⇒→⟹<>]|!=|=>|=<|->|<-|:=|==+>?"), " ; "),
    (re.compile(r"\\%"), "%"),
    (re.compile(r"\\?\$"), " "),
    (latex.LATEX_SPACING, " "),
    (re.compile(r"&"), " "),
    (re.compile(r"(?<=[\d)])[ \t]*\*\*[ \t]*(?=[\d(])"), "^"),  # 10**6
    (re.compile(r"\*\*"), " "),  # markdown bold
]
# Words read as operators when they sit between numbers: prose only, never inside a formula ("2x(x+1)").
_WORD_SUBS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"(?<=[\d)%])(?:[xX]|[ \t]+[xX][ \t]+)(?=[\d(.])"), " * "),  # 5 x 3, 2x3 (not "1.5x 6")
    (re.compile(r"(?<=[\d)%])[ \t]*[–—][ \t]*(?=[\d(.])"), " - "),  # en dash used as minus: 120 – 80
    (re.compile(r"(?<=[\d)%])[ \t]+(?:times|multiplied[ \t]+by)[ \t]+(?=[\d(.])", re.I), " * "),
    (re.compile(r"(?<=[\d)%])[ \t]+plus[ \t]+(?=[\d(.])", re.I), " + "),
    (re.compile(r"(?<=[\d)%])[ \t]+minus[ \t]+(?=[\d(.])", re.I), " - "),
    (re.compile(r"(?<=[\d)%])[ \t]+divided[ \t]+by[ \t]+(?=[\d(.])", re.I), " / "),
    (re.compile(r"(?<=\d)[ \t]*percent\b", re.I), "%"),
    (re.compile(r"(?<=%)[ \t]+of[ \t]+(?=[\d(.])", re.I), " * "),  # 20% of 50
    (re.compile(r"\b(?:equals|is\s+equal\s+to)\b", re.I), " = "),
]
_FRAC_OF_RE = re.compile(r"(?<![\d.])(\d+[ \t]*/[ \t]*\d+)[ \t]+of[ \t]+(?=[\d(.])", re.I)  # 1/3 of 18
_VULGAR = {
    "½": "1/2",
    "⅓": "1/3",
    "⅔": "2/3",
    "¼": "1/4",
    "¾": "3/4",
    "⅕": "1/5",
    "⅖": "2/5",
    "⅗": "3/5",
    "⅘": "4/5",
    "⅙": "1/6",
    "⅚": "5/6",
    "⅛": "1/8",
    "⅜": "3/8",
    "⅝": "5/8",
    "⅞": "7/8",
}
_VULGAR_RE = re.compile("[" + "".join(_VULGAR) + "]")
_BRACKETS = str.maketrans({"{": "(", "}": ")", "[": "(", "]": ")"})


def is_latex_dollar_text(text: str) -> bool:
    """Whether `$` marks formulas in this text (`$x = 4$`) rather than amounts of money (`= $18`)."""
    return _LATEX_DOLLAR_RE.search(text) is not None


def normalise(text: str, prose: bool = True) -> str:
    """Rewrite LaTeX (and, in prose, word operators) into one plain token alphabet; every pass is a linear regex.

    In a text that uses `$` for formulas, each formula delimiter becomes a line break: a claim never spans two
    formulas, nor a formula and the prose next to it ("$6!$ ways, so $720 = 6/2$" has no claim `720 = 6/2`).
    """
    text = latex.THOUSANDS_SPACE.sub("", text)
    text = _VULGAR_RE.sub(lambda m: f" ({_VULGAR[m.group()]}) ", text)
    text = _CONTINUED_LINE_RE.sub(" ", text)
    text = text.replace("\\\\", " \n ")
    if prose:
        text = _BULLET_RE.sub(" ", text)  # "- 3 \times 4 = 12" in a list: a bullet, not a minus
    if is_latex_dollar_text(text):
        text = latex.math_delimiters_to(text, " \n ")
    text = latex.unwrap_text_commands(text)
    text = _MIXED_RE.sub(" ", text)  # 2\frac12 is a mixed number: keep the space so it is never read as 2*(1/2)
    text = _NTH_ROOT_RE.sub(r" ((\2)^(1/\1)) ", text)
    text = _UNSURE_FUNCTION_RE.sub(r" \\unsure ", text)
    text = latex.DEGREES.sub(" degrees ", text)  # before ^{...} groups open: 90^{\circ} is a unit, not a power
    for _ in range(
        _GROUP_PASSES if "{" in text else 0
    ):  # innermost groups first, so \frac{\binom{5}{2}}{4} opens up; bounded
        before = text
        text = _BINOM_RE.sub(r"\\binom(\1)(\2)", text)
        text = _SQRT_RE.sub(r"\\sqrt(\1)", text)
        text = _SCRIPT_GROUP_RE.sub(r"\1(\2)", text)
        text = latex.expand_fracs(text, passes=1)
        if text == before:
            break
    text = _FRAC_SHORT_RE.sub(r"((\1)/(\2))", text)
    text = _BINOM_SHORT_RE.sub(r"\\binom(\1)(\2)", text)  # \binom31 is C(3, 1): one digit per argument, as in TeX
    text = _BOXED_RE.sub(lambda m: f" {m.group(1)} ", text)
    for pattern, repl in _SUBS:
        text = pattern.sub(repl, text)
    if prose:
        for pattern, repl in _WORD_SUBS:
            text = pattern.sub(repl, text)
        text = _FRAC_OF_RE.sub(r"(\1) * ", text)
    return text.translate(_BRACKETS)


_ARITH = frozenset({"num", "op", "lp", "rp", "pct", "fn", "sub", "fact"})
# words that are never unit names: connectives, verbs, scale words (a number before `million` is not the value)
_NOT_UNITS = frozenset(
    "a an and or but so then is are was were be of the to from by for in on at if as with than that this these "
    "those which what who we he she it they you i times plus minus divided multiplied over more less fewer "
    "hundred thousand million billion trillion dozen dozens half percent remainder left total each per "
    "step answer equals".split()
)
_SCALE_WORDS = frozenset("hundred thousand million billion trillion dozen dozens remainder r".split())
_RHS_GLUE_OK = frozenset('.,;!?"”’)\n')  # sentence punctuation may touch a stated result
_LHS_GLUE_OK = frozenset('"“‘(\n')
_BARE_LHS_OK = frozenset("\n:;")  # a bare number may open a claim only at the start of a line or clause
_NAME_OPENERS = frozenset("\n:;.,")  # what may precede a named quantity, "Total cost = ..."
_MAX_NAME_WORDS = 6
_MAX_UNIT_WORDS = 4


def _drop_unit_phrases(toks: list[Tok]) -> list[Tok]:
    """Remove unit words between a number and an operator/`=`: `18 hours / 3 kangaroos = 6` -> `18 / 3 = 6`."""
    out: list[Tok] = []
    i, n = 0, len(toks)
    while i < n:
        tok = toks[i]
        out.append(tok)
        i += 1
        if tok.kind not in ("num", "pct") or i >= n:
            continue
        j, words = i, 0
        while j < n and words <= _MAX_UNIT_WORDS:
            t = toks[j]
            if t.kind == "word" and _is_unit_word(t, toks[j - 1]):
                words += 1
                j += 1
            elif t.kind == "op" and t.text == "/" and j + 1 < n and _is_unit_text(toks[j + 1]):
                words += 1
                j += 2  # pounds/week, $15/student
            elif t.kind == "lp" and (j > i or toks[j - 1].end != t.start):  # "7995 (total cookies) - ..."
                k = j + 1
                while k < n and k - j < 12 and toks[k].kind in ("word", "sep") and toks[k].text != "\n":
                    k += 1
                if k < n and toks[k].kind == "rp" and k > j + 1:
                    j, words = k + 1, words + 1
                else:
                    break
            else:
                break
        if j > i and words and j < n and words <= _MAX_UNIT_WORDS and _continues_expression(toks[j]):
            out[-1] = tok._replace(unit=True)
            i = j
    return out


def _is_unit_word(tok: Tok, prev: Tok) -> bool:
    # glued to a number (5kg, 2nd) is not safe to read as a unit
    return prev.end != tok.start and _is_unit_text(tok)


def _is_unit_text(tok: Tok) -> bool:
    # single letters (3 x + 2) and capitalised words (a new sentence) are not units
    return tok.kind == "word" and len(tok.text) > 1 and tok.text[0].islower() and tok.text not in _NOT_UNITS


def _continues_expression(tok: Tok) -> bool:
    return (tok.kind == "op" and tok.text != "^") or tok.kind in ("eq", "rp")


# ---------------------------------------------------------------- claim extraction


@dataclass(frozen=True)
class _Side:
    """One side of an `=`: its tokens and whether a mismatch there is ambiguous rather than wrong."""

    toks: list[Tok]
    ambiguous: bool = False  # "since 2/5 = 12.8 hectares": the fraction may be a share, not a quotient


def _close_brackets(run: list[Tok], opener: str, closer: str) -> list[Tok]:
    """Keep the prefix of `run` that closes every bracket it opens (read from the `=` outwards).

    A closer with no opener ends the side there; an unmatched opener right at the `=` drops the side (it is a
    piece of a bracketed group), anywhere else it ends the side ("= 0.20 (20 cents)").
    """
    for _ in range(len(run) + 1):
        stack: list[int] = []
        cut = None
        for idx, t in enumerate(run):
            if t.kind == opener:
                stack.append(idx)
            elif t.kind == closer:
                if not stack:
                    cut = idx
                    break
                stack.pop()
        if cut is not None:
            if cut and run[cut - 1].end == run[cut].start and run[cut - 1].kind != opener:
                return []  # "= (1/4)(1 - x)": glued, so the bracket continues the side
            run = run[:cut]
        elif not stack:
            return run
        elif stack[0] == 0:
            return []  # "(x, y) = (2^3 + 7, 5)": the side is a piece of a bracketed group
        elif run[stack[0] - 1].end == run[stack[0]].start and run[stack[0] - 1].kind != opener:
            return []  # "= 1/4(1 - x": glued, so the bracket continues the side
        else:
            run = run[: stack[0]]
    return []


def _lhs_run(toks: list[Tok], eq: int, pos: dict[int, int]) -> _Side | None:
    j = eq
    while j > 0 and toks[j - 1].kind in _ARITH:
        j -= 1
    run = _close_brackets(toks[j:eq][::-1], "rp", "lp")[::-1]  # read right to left from the `=`
    if not run:
        return None
    first = run[0]
    k = pos[first.start]
    prev = toks[k - 1] if k > 0 else None
    if first.kind == "op" and first.text in "+*/^":
        return None  # cut out of a larger expression: "2x + 3 = 11"
    if first.kind in ("sub", "fact"):
        return None  # "a_1 + 3 = 5": a subscript or a factorial cut from its base
    if prev is not None:
        if _function_word(prev):
            return None  # "\sin 30 + 1 = 1.5", "log 8 = 3": a function the reader does not know applies to it
        if prev.end == first.start and prev.kind in ("word", "sep") and prev.text not in _LHS_GLUE_OK:
            return None  # x2 + 1, f(3), 2:30
        if first.kind == "op" and prev.kind in ("word", "num", "rp", "pct"):
            return None  # "x - 3 = 5"
        if _operator_across_words(toks, k - 1, -1):
            return None  # "25 classmates + his 1 teacher + 1 himself = 27": the sum started before the words
        before = k - 1
        while before >= 0 and toks[before].kind == "lp":
            before -= 1
        if before < k - 1 and before >= 0 and toks[before].kind in ("op", "num", "rp", "pct"):
            return None  # "2 * (5 + 3 = 8)": the side is an operand of a larger expression
    ambiguous = False
    if _simple(run) and prev is not None and prev.kind != "eq":
        if not (prev.kind in ("sep", "lp") and (prev.text in _BARE_LHS_OK or prev.kind == "lp")):
            if _bare(run):
                return None  # a label: "Day 2 = 40", "i.e. 48 = 100% + 20%"
            ambiguous = True  # "15 pages x 1/3 = 5": checked, but only a match counts
    if (
        _bare(run)
        and prev is not None
        and (prev.text == ":" or (prev.text == "\n" and k > 1 and toks[k - 2].text == ":"))
    ):
        ambiguous = True  # an enumeration, "$n$: $1 = 3^3 \cdot 1$": the number may be a label, only a match counts
    if _bare(run) and any(t.unit for t in run):
        return None  # a quantity with its unit, "5 pairs = 5 * 2": a conversion, not a computed result
    return _Side(run, ambiguous)


def _rhs_run(toks: list[Tok], eq: int, pos: dict[int, int]) -> _Side | None:
    j = eq + 1
    while j < len(toks) and toks[j].kind in _ARITH:
        j += 1
    run = _close_brackets(toks[eq + 1 : j], "lp", "rp")
    if not run:
        return None
    last = run[-1]
    if run[0].kind == "op" and run[0].text in "*/^" or run[0].kind in ("sub", "fact"):
        return None
    if last.kind in ("op", "sub", "fn"):
        return None  # "= 5 + x", "= \log_2 x"
    k = pos[last.start]
    nxt = toks[k + 1] if k + 1 < len(toks) else None
    if nxt is not None:
        if _function_word(nxt):
            return None  # "= 5 \pi", "= 3 \pmod 7": a command the reader does not know continues the side
        if nxt.start == last.end and nxt.kind in ("word", "sep") and nxt.text not in _RHS_GLUE_OK:
            return None  # 8x, 5th, 3:45
        if nxt.kind == "word" and nxt.text.lower() in _SCALE_WORDS:
            return None  # "= 1.5 million", "= 3 remainder 2"
        if _operator_across_words(toks, k + 1, 1):
            return None  # "= 8 apples + 3 pears": the expression goes on after the words
        after = k + 1
        while after < len(toks) and toks[after].kind == "rp":
            after += 1
        if after > k + 1 and after < len(toks) and toks[after].kind in ("op", "num", "pct"):
            return None  # "(5 + 3 = 8) * 2"
    if _bare(run) and any(t.unit for t in run):
        return None
    return _Side(run)


# Functions written as words; a claim side next to one is a piece of the function's argument or value.
_FUNCTION_WORDS = frozenset("sin cos tan cot sec csc log ln lg exp sqrt mod gcd lcm floor ceil max min det".split())


def _function_word(tok: Tok) -> bool:
    """An unknown LaTeX command (`\\sin`, `\\pi`, `\\pmod`) or a function name written as a word."""
    return tok.kind == "word" and (tok.text.startswith("\\") or tok.text.lower() in _FUNCTION_WORDS)


def _operator_across_words(toks: list[Tok], i: int, step: int) -> bool:
    """True if a few words starting at `i` (walking by `step`) lead to an arithmetic operator."""
    words = 0
    while 0 <= i < len(toks) and toks[i].kind == "word" and words < _MAX_UNIT_WORDS:
        i, words = i + step, words + 1
    return words > 0 and 0 <= i < len(toks) and toks[i].kind == "op" and toks[i].text in "+-*/"


def _bare(run: list[Tok]) -> bool:
    """A single stated number (maybe signed, bracketed or a percentage), no operation."""
    return all(t.kind in ("num", "pct", "lp", "rp") or (i == 0 and t.text in "+-") for i, t in enumerate(run))


def _simple(run: list[Tok]) -> bool:
    """A bare number or a bare fraction `a/b`, which prose uses as a label or a share rather than a computation."""
    core = [t for t in run if t.kind not in ("lp", "rp")]
    return _bare(run) or (len(core) == 3 and core[0].kind == core[2].kind == "num" and core[1].text == "/")


def _name_before(toks: list[Tok], eq: int) -> str | None:
    """The words naming the quantity an `=` defines ("Total earnings = ..."), if they start a clause."""
    j, words = eq, 0
    while j > 0 and (toks[j - 1].kind == "word" or toks[j - 1].text in "'’"):
        j -= 1
        words += toks[j].kind == "word"
        if words > _MAX_NAME_WORDS:
            return None
    if not words or (j > 0 and not (toks[j - 1].kind == "sep" and toks[j - 1].text in _NAME_OPENERS)):
        return None
    if eq - j == 1 and len(toks[j].text) == 1:
        return None  # "$x = 2/(-2)$ or $x = -6/(-2)$": a variable takes several values, a quantity does not
    return " ".join(t.text.lower() for t in toks[j:eq] if t.kind == "word")


def _shorten(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else f"{text[: limit // 2 - 2]} … {text[-(limit // 2 - 2) :]}"


def _span(text: str, run: list[Tok]) -> str:
    return " ".join(text[run[0].start : run[-1].end].split())


def _compare(
    text: str,
    lhs: _Side,
    rhs: _Side,
    eq: Tok,
    limits: ArithmeticLimits,
    budget: Budget,
    source: str,
    name: str = "",
) -> Claim | None:
    lhs_node = Parser(lhs.toks, limits).parse()
    rhs_node = Parser(rhs.toks, limits).parse()
    if not (has_operator(lhs_node) or has_operator(rhs_node)):
        return None  # "2 hours = 120 minutes": a restatement or a conversion, nothing computed
    approx = eq.text == "≈"
    try:
        outcome = _exact_outcome(lhs_node, rhs_node, approx, budget)
    except NotRational:
        if not limits.symbolic:
            raise
        return _symbolic_claim(text, lhs, rhs, lhs_node, rhs_node, approx, limits, source)
    if outcome is None:
        return None
    holds, first = outcome
    if not holds and (lhs.ambiguous or rhs.ambiguous):
        return None
    if not holds and rhs_node[0] == "bin" and leftmost_number(rhs_node) == first[0]:
        return None  # running-total notation, "3/2 = 1.50 + 3.00 = 4.50": the right side continues from the left
    lhs_src, rhs_src = _span(text, lhs.toks), _span(text, rhs.toks)
    if name:
        joiner = " = "
    else:
        between = text[lhs.toks[-1].end : rhs.toks[0].start]
        joiner = between.strip() if between.strip() == between else f" {between.strip()} "
    return Claim(
        text=f"{name}: {lhs_src}{joiner}{rhs_src}" if name else f"{lhs_src}{joiner}{rhs_src}",
        lhs=lhs_src,
        rhs=rhs_src,
        lhs_value=first[0],
        rhs_value=first[1],
        holds=holds,
        source=source,
        rhs_is_number=literal_decimals(rhs_node, Reading()) is not None,
    )


def _readings(lhs_node: Node, rhs_node: Node) -> list[Reading]:
    """Every reading of the ambiguous marks: `%` as /100 or a plain number, a glued `!` as a factorial or as an
    exclamation mark ("= 15!"). A pair holds if any reading holds."""
    pct = (True, False) if has_kind(lhs_node, "pct") or has_kind(rhs_node, "pct") else (True,)
    fact = (True, False) if has_kind(lhs_node, "fact") or has_kind(rhs_node, "fact") else (True,)
    return [Reading(p, f) for p in pct for f in fact]


def _exact_outcome(
    lhs_node: Node, rhs_node: Node, approx: bool, budget: Budget
) -> tuple[bool, tuple[Fraction, Fraction]] | None:
    """(holds, the values shown in the reason) over every reading; None when no reading can be evaluated."""
    first: tuple[Fraction, Fraction] | None = None
    skipped: Skip | None = None
    for reading in _readings(lhs_node, rhs_node):
        try:
            lv, rv = evaluate(lhs_node, reading, budget), evaluate(rhs_node, reading, budget)
        except NotRational:
            raise
        except Skip as exc:  # "15!" read as a factorial may be out of bounds while the plain reading is not
            skipped = skipped or exc
            continue
        first = first or (lv, rv)
        ld, rd = literal_decimals(lhs_node, reading), literal_decimals(rhs_node, reading)
        if agree(lv, rv, ld, rd, approx):
            return True, (lv, rv)
    if first is None:
        raise skipped or Skip("no reading could be evaluated")
    if skipped is not None:
        return None  # one reading is out of bounds and the others fail: unsure, no claim
    return False, first


def _symbolic_claim(
    text: str,
    lhs: _Side,
    rhs: _Side,
    lhs_node: Node,
    rhs_node: Node,
    approx: bool,
    limits: ArithmeticLimits,
    source: str,
) -> Claim | None:
    """A numeric claim with a radical or logarithm (`\\sqrt{12} = 2\\sqrt{3}`), compared through sympy."""
    if lhs.ambiguous or rhs.ambiguous or has_kind(lhs_node, "pct") or has_kind(rhs_node, "pct"):
        raise Skip("an irrational value next to an ambiguous reading")
    result = symbolic.compare_constants(lhs_node, rhs_node, approx, limits)
    lhs_src, rhs_src = _span(text, lhs.toks), _span(text, rhs.toks)
    claim_text = f"{lhs_src} {'≈' if approx else '='} {rhs_src}"
    return Claim(
        text=claim_text,
        lhs=lhs_src,
        rhs=rhs_src,
        lhs_value=None,
        rhs_value=None,
        holds=result.holds,
        source=source,
        kind="symbolic",
        detail=result.detail,
    )


def _scan_text(text: str, limits: ArithmeticLimits, budget: Budget, scan: ClaimScan, source: str) -> None:
    toks = _drop_unit_phrases(tokenize(text, limits.max_tokens))
    pos = {t.start: idx for idx, t in enumerate(toks)}
    # the last `=` seen: (its name, the side it defines, whether that side ended the statement)
    last_named: tuple[str, _Side] | None = None
    for i, tok in enumerate(toks):
        if tok.kind != "eq":
            continue
        lhs, rhs = _lhs_run(toks, i, pos), _rhs_run(toks, i, pos)
        pairs: list[tuple[_Side, _Side, str]] = []
        if lhs is not None and rhs is not None:
            pairs.append((lhs, rhs, ""))
        name = _name_before(toks, i)
        if name and rhs is not None and last_named is not None and last_named[0] == name and _bare(rhs.toks):
            # "Total = 52 + 24 + 44 + 48 \] \[ Total = 178": one quantity restated across statements, as a result;
            # a label between them ("Case 2: ways = 5 * 2") starts another case that reuses the name
            if ":" not in text[last_named[1].toks[-1].end : tok.start]:
                pairs.append((last_named[1], rhs, name))
        end = pos[rhs.toks[-1].start] + 1 if rhs is not None else i + 1
        ends_statement = end >= len(toks) or toks[end].kind != "eq"
        last_named = (name, rhs) if name and rhs is not None and ends_statement else None
        for left, right, label in pairs:
            unsure = _part_of_more(toks, pos, left, right)
            if unsure:
                scan.skipped.append(
                    f"{unsure} in {_shorten(_span(text, left.toks) + ' = ' + _span(text, right.toks))!r}"
                )
                continue
            try:
                claim = _compare(text, left, right, tok, limits, budget, source, label)
            except Skip as exc:
                claim_text = f"{_span(text, left.toks)} {tok.text} {_span(text, right.toks)}"
                scan.skipped.append(f"{exc} in {_shorten(claim_text)!r}")
                continue
            if claim is not None:
                scan.claims.append(claim)


_PART_WORDS = frozenset("half third thirds quarter quarters fourth fourths fifth fifths twice double triple".split())


def _part_of_more(toks: list[Tok], pos: dict[int, int], lhs: _Side, rhs: _Side) -> str:
    """Why the two sides are pieces of something larger, or "": a part of a ratio (`12 : 18 = 2 : 3`), or an
    operand of a word operator before it ("Half of 3/4 of 24 = 9")."""
    first, last = pos[lhs.toks[0].start], pos[rhs.toks[-1].start]
    if _ratio_colon(toks, first - 1) or _ratio_colon(toks, last + 1):
        return "a part of a ratio"
    if (
        first >= 2
        and toks[first - 1].text.lower() == "of"
        and toks[first - 2].kind == "word"
        and toks[first - 2].text.lower() in _PART_WORDS
    ):
        return f"the operand of {toks[first - 2].text} of"
    return ""


def _ratio_colon(toks: list[Tok], k: int) -> bool:
    """A `:` between two numbers with the same spacing on both sides (`2:3`, `12 : 18`); a label's colon has a
    space after it only (`Step 1: 3 + 4 = 7`)."""
    if not 0 < k < len(toks) - 1 or toks[k].text != ":":
        return False
    before, after = toks[k - 1], toks[k + 1]
    if before.kind not in ("num", "rp") or after.kind not in ("num", "lp"):
        return False
    return (toks[k].start > before.end) == (after.start > toks[k].end)


def extract_claims(text: str, limits: ArithmeticLimits | None = None, previous: str = "") -> ClaimScan:
    """Find and check every claim in one step's text (annotations first, then the prose). `previous`: the step
    before it, whose equations a solution stated at the start of this step is substituted back into."""
    limits = limits or ArithmeticLimits()
    scan = ClaimScan()
    if len(text) > limits.max_chars:
        scan.aborted = f"step longer than {limits.max_chars} characters ({len(text)})"
        return scan
    budget = Budget(limits)
    try:
        annotations = [m.group(1) for m in _ANNOTATION_RE.finditer(text)]
        for inner in annotations:
            # GSM8K calculator annotations: the whole inner text is the claim
            _scan_text(normalise(inner), limits, budget, scan, "annotation")
        prose = _ANNOTATION_RE.sub(" ", text) if annotations else text
        _scan_text(normalise(prose), limits, budget, scan, "text")
        dollar_is_math = is_latex_dollar_text(prose)
        if limits.symbolic:
            _scan_symbolic(prose, dollar_is_math, limits, budget, scan, previous[-limits.max_chars :])
        for found in congruence.scan_congruences(prose, dollar_is_math, normalise, limits, budget):
            scan.claims.append(_claim_of(found.text, found.holds, found.detail, "congruence"))
        for fact in divisibility.scan_divisibility(prose, limits, budget):
            scan.claims.append(_claim_of(fact.text, fact.holds, fact.detail, "divisibility"))
        if not all(claim.holds for claim in scan.claims):
            _withdraw_unsure(text, scan, limits, budget)
    except Abort as exc:
        scan.aborted = str(exc)
    return scan


def _withdraw_unsure(text: str, scan: ClaimScan, limits: ArithmeticLimits, budget: Budget) -> None:
    """Keep as skipped, with the reason, the failing claims that the step may not assert: rejected, tested, a range,
    or true where the step says it works."""
    cue = _REJECTION_RE.search(text)
    if cue is not None:
        _withdraw(scan, lambda claim: f"the step says {cue.group()!r}: it may be on purpose")
    values = {m.group(1) for m in _TEST_CUE_RE.finditer(text)}
    if values:
        _withdraw(scan, lambda claim: next((_TESTS.format(v) for v in values if _is_test_of(claim, v)), ""))
    _withdraw(scan, _range_of)
    moduli = {int(m.group(1) or m.group(2)) for m in _MODULUS_DECLARED_RE.finditer(text)} - {0, 1}
    bases = {
        int(m.group(1)) if m.group(1) else _BASE_WORDS[m.group(2).lower()] for m in _BASE_DECLARED_RE.finditer(text)
    }
    if moduli or bases:
        _withdraw(scan, lambda claim: _declared_where(claim, moduli, bases, limits, budget))


def _withdraw(scan: ClaimScan, reason_of: Callable[[Claim], str]) -> None:
    """Move each failing claim that `reason_of` gives a reason for to `skipped`."""
    kept = []
    for claim in scan.claims:
        reason = "" if claim.holds else reason_of(claim)
        if reason:
            scan.skipped.append(f"{claim.describe()}, but {reason}")
        else:
            kept.append(claim)
    scan.claims = kept


# A step that says something fails or is withdrawn: its false equalities may be stated on purpose ("1 = \sqrt{9}
# + 4, so x = 1 is extraneous"), asked ("Is 2^{10} = 1000? No") or corrected in words ("17 * 44 = 788? No, wait").
# Linear: one alternation.
_REJECTION_RE = re.compile(
    r"\b(?:not|never|neither|extraneous|contradict\w*|impossible|invalid|false|incorrect|wrong|mistake|error|"
    r"oops|wait|actually|instead|cannot|isn|doesn|don|aren|wasn|no)\b|n't|≠|\\neq?\b|\?",
    re.I,
)


# "Plugging in $1$ we get $1=\\sqrt{11-2(1)}+4$": the equation with a candidate put in is a test, stated to be
# checked, not asserted. The cue and the value it puts in; linear: the quantifiers read disjoint characters.
_TEST_CUE_RE = re.compile(
    r"\b(?:plug\w*|substitut\w*|check\w*|test\w*|verif\w*|try\w*)(?:\s+(?:in|into|back))?(?:\s+in)?"
    r"[\s$\\(]{0,6}(?:[A-Za-z]\s{0,3}=\s{0,3})?(-?\d+(?:\.\d+)?)",
    re.I,
)


# The modulus or base a step declares: "Working modulo 7", "mod 13:", "\pmod{83}", "in $\mathbb{Z}_7$", "In base 5",
# "in binary". Linear: bounded quantifiers after literal anchors.
_MODULUS_DECLARED_RE = re.compile(
    r"(?:(?<![A-Za-z])mod(?:ulo)?|\\[pb]?mod)(?![A-Za-z])[\s$]{0,3}\{?\s{0,3}(\d{1,9})"
    r"|\\mathbb\s{0,3}\{?\s{0,3}Z\s{0,3}\}?\s{0,3}_\s{0,3}\{?\s{0,3}(\d{1,9})",
    re.I,
)
_BASE_DECLARED_RE = re.compile(r"\bbase[\s$]{0,3}(\d{1,2})(?!\d)|\b(binary|ternary|octal)\b", re.I)
_BASE_WORDS = {"binary": 2, "ternary": 3, "octal": 8}


def _declared_where(claim: Claim, moduli: set[int], bases: set[int], limits: ArithmeticLimits, budget: Budget) -> str:
    """ "Working modulo 7, $3^2 = 2$", "In base 5, $4 + 3 = 12$": an arithmetic claim that holds in the modulus or
    base the step declares is right where it is said."""
    if claim.kind != "arithmetic":
        return ""
    a, b = claim.lhs_value, claim.rhs_value
    if a is not None and b is not None:
        for m in sorted(moduli):
            if math.gcd(a.denominator * b.denominator, m) == 1:
                if (a.numerator * b.denominator - b.numerator * a.denominator) % m == 0:
                    return f"it holds mod {m}, as the step declares"
    for base in sorted(bases):
        if 2 <= base <= 10:
            left, right = (
                _value_in_base(claim.lhs, base, limits, budget),
                _value_in_base(claim.rhs, base, limits, budget),
            )
            if left is not None and left == right:
                return f"it holds in base {base}, as the step declares"
    return ""


def _value_in_base(side: str, base: int, limits: ArithmeticLimits, budget: Budget) -> Fraction | None:
    """The value of a side whose integer literals are read in `base` (None if a digit or a decimal does not fit)."""
    toks = []
    for tok in tokenize(side, limits.max_tokens):
        if tok.kind == "sep":
            continue
        if tok.kind == "num":
            if not tok.text.isdigit() or any(int(c) >= base for c in tok.text):
                return None
            tok = tok._replace(text=str(int(tok.text, base)))
        toks.append(tok)
    return value_of(toks, limits, budget)


_RANGE_RE = re.compile(r"(\d{1,9})\s{0,3}-\s{0,3}(\d{1,9})")


def _range_of(claim: Claim) -> str:
    """ "Pages 10-99 = 90 pages": `a - b` with a < b whose stated value counts the range is not a subtraction."""
    match = _RANGE_RE.fullmatch(claim.lhs.strip()) if claim.kind == "arithmetic" else None
    if match:
        low, high = int(match.group(1)), int(match.group(2))
        if low < high and claim.rhs_value == high - low + 1:
            return f"{claim.lhs.strip()} is a range"
    return ""


_TESTS = "it tests the value {} put into an equation"


def _is_test_of(claim: Claim, value: str) -> bool:
    """The failing claim of a step that puts a value into an equation to test it is that test when one side is
    the value itself or both sides hold it ("plugging in 1: 1 = \\sqrt{9} + 4")."""
    if claim.kind != "arithmetic":
        return False
    sides = (claim.lhs.strip(), claim.rhs.strip())
    if value in sides:
        return True
    number = re.compile(r"(?<![\d.])" + re.escape(value) + r"(?![\d.])")
    return all(number.search(side) for side in sides)


def _scan_symbolic(
    text: str, dollar_is_math: bool, limits: ArithmeticLimits, budget: Budget, scan: ClaimScan, previous: str
) -> None:
    """Claims with variables inside formulas: identities and solutions substituted back (symbolic.py)."""
    earlier = (
        symbolic.equations_of(previous, is_latex_dollar_text(previous), normalise, limits, budget) if previous else None
    )
    for found in symbolic.scan_math(text, dollar_is_math, normalise, limits, budget, earlier):
        scan.claims.append(_claim_of(found.text, found.holds, found.detail, "symbolic"))


def _claim_of(text: str, holds: bool, detail: str, kind: str) -> Claim:
    """A claim whose sides are not two rational numbers (symbolic, congruence, divisibility): the reason is in
    `detail`."""
    return Claim(
        text=text, lhs="", rhs="", lhs_value=None, rhs_value=None, holds=holds, source="text", kind=kind, detail=detail
    )


def check_step(text: str, limits: ArithmeticLimits | None = None, previous: str = "") -> StepVerdict:
    """Verdict for one step: False if a claim fails, True if ≥1 claim was checked and all hold, else None.
    `previous` is the step before it (its equations may be solved in this one).

    Never raises: a step that is not text, or any failure of the checker on it, is verdict None with the reason.
    """
    if not isinstance(text, str):
        return StepVerdict(None, f"not checked: the step is a {type(text).__name__}, not text")
    try:
        return _check_step(text, limits, previous if isinstance(previous, str) else "")
    except Exception as error:  # noqa: BLE001 - a checker bug on one step must not abort every row (docs/security.md)
        message = " ".join(str(error).split())[:200]
        return StepVerdict(None, f"not checked: verifier error {type(error).__name__}: {message}")


def _check_step(text: str, limits: ArithmeticLimits | None, previous: str) -> StepVerdict:
    scan = extract_claims(text, limits, previous=previous) if previous else extract_claims(text, limits)
    if scan.aborted:
        return StepVerdict(None, f"not checked: {scan.aborted}")
    wrong = [c for c in scan.claims if not c.holds]
    if wrong:
        more = f" (and {len(wrong) - 1} more wrong)" if len(wrong) > 1 else ""
        return StepVerdict(False, wrong[0].describe() + more)
    if scan.claims:
        shown = "; ".join(c.text for c in scan.claims[:3])
        more = f"; +{len(scan.claims) - 3} more" if len(scan.claims) > 3 else ""
        counts = Counter(c.kind for c in scan.claims)
        if len(counts) == 1:
            what = f"{len(scan.claims)} {next(iter(counts))} claim(s)"
        else:
            what = f"{len(scan.claims)} claims ({', '.join(f'{n} {kind}' for kind, n in counts.items())})"
        return StepVerdict(True, f"{what} hold: {shown}{more}")
    if scan.skipped:
        return StepVerdict(None, f"no checkable arithmetic claim (skipped: {scan.skipped[0]})")
    return StepVerdict(None, "no arithmetic claim found")


class ArithmeticVerifier:
    """Verifier over arithmetic claims in natural-language steps; options are `ArithmeticLimits` fields."""

    name = "arithmetic"

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        options = as_config(config)
        known = {f.name for f in fields(ArithmeticLimits)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise ValueError(f"unknown arithmetic verifier option(s) {unknown}; known: {sorted(known)}")
        self.limits = ArithmeticLimits(**options)

    def verify(self, problem: Problem, steps: list[str]) -> list[StepVerdict]:
        return [check_step(step, self.limits, steps[i - 1] if i else "") for i, step in enumerate(steps)]


# ---------------------------------------------------------------- formatting


# Values with more bits are shown as a 7-digit approximation: their exact digits would swamp the reason, and
# float() overflows above ~1e308 (a claim like `(2^64)^17 / 3 = 1` is within max_bits but not within a float).
_MAX_EXACT_BITS = 200


def _fmt(value: Fraction) -> str:
    if max(abs(value.numerator).bit_length(), value.denominator.bit_length()) > _MAX_EXACT_BITS:
        return f"≈{_approx(value)}"
    if value.denominator == 1:
        return str(value.numerator)
    den, twos, fives = value.denominator, 0, 0
    while den % 2 == 0:
        den, twos = den // 2, twos + 1
    while den % 5 == 0:
        den, fives = den // 5, fives + 1
    if den == 1 and max(twos, fives) <= 12:
        places = max(twos, fives)
        scaled = abs(value.numerator) * 10**places // value.denominator
        sign = "-" if value < 0 else ""
        return f"{sign}{scaled // 10**places}.{scaled % 10**places:0{places}d}"
    return f"{value.numerator}/{value.denominator} (≈{float(value):.6g})"


def _approx(value: Fraction, digits: int = 7) -> str:
    """`value` in scientific notation with `digits` significant digits (truncated), in integer arithmetic only."""
    if value == 0:
        return "0"
    sign = "-" if value < 0 else ""
    num, den = abs(value.numerator), value.denominator
    exponent = int((num.bit_length() - den.bit_length()) * math.log10(2))  # within one of the true exponent
    low, high = 10 ** (digits - 1), 10**digits
    while True:
        shift = digits - 1 - exponent
        mantissa = num * 10**shift // den if shift >= 0 else num // (den * 10**-shift)
        if mantissa >= high:
            exponent += 1
        elif mantissa < low:
            exponent -= 1
        else:
            break
    text = f"{mantissa // low}.{mantissa % low:0{digits - 1}d}".rstrip("0").rstrip(".")
    return f"{sign}{text}e{exponent:+d}"
