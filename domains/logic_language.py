"""The formal-logic language (FLD / FoVer style): formulas, their parser and renderer, and proof steps.

Pure code shared by the problem generator (`domains.logic`) and the Z3 step verifier
(`annotators.verifiers.logic`); nothing here generates problems or checks entailment.

Formula syntax (FLD's, §2.1)::

    formula  := "(x):" formula                 universal quantifier over variable x   (FLD "(x):")
              | "(Ex):" formula                existential quantifier                 (FLD "(Ex):")
              | disj ["->" formula]            implication, right-associative
    disj     := conj {"v" conj}                disjunction ("∨" also accepted)
    conj     := unary {"&" unary}              conjunction ("∧" also accepted)
    unary    := "¬" unary | atom | "(" formula ")" | quantified     ("~" also accepted for "¬")
    atom     := "{A}{a}"                       predicate A of constant a
              | "{A}x"                         predicate A of variable x (bound by a quantifier)
              | "{A}"                          0-ary proposition A
              | "⊤" | "⊥"                      true / false

Predicates are upper-case names in braces (`{A}`, `{AB}`), constants lower-case names in braces (`{a}`, `{aa}`),
variables single lower-case letters other than `v` (`x`, `y`, `z`). A quantifier's scope runs to the end of the
formula or of the enclosing parentheses. Binding order: ¬ tighter than &, & tighter than v, v tighter than ->.

Problems and proofs::

    facts:       fact1: (x): {A}x -> {B}x        fact2: {A}{a}        ...
    hypothesis:  {B}{a}
    proof steps: "fact2 & fact1 -> int1: {B}{a}"     cite facts/intermediates, derive a named intermediate
                 "int1 & fact3 -> hypothesis"        or the hypothesis ("¬hypothesis" for a disproof)
                 "__PROVED__"                        the verdict: __PROVED__ / __DISPROVED__ / __UNKNOWN__

A step is correct iff its cited formulas entail its conclusion (FoVer: cited ∧ ¬conclusion is UNSAT);
intermediates are cited by the formula their step stated, so every step is judged locally (§2.1).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

__all__ = [
    "LABELS",
    "MAX_DEPTH",
    "MAX_FORMULA_CHARS",
    "MAX_STEP_CHARS",
    "Formula",
    "LogicSyntaxError",
    "ProofStep",
    "free_variables",
    "negate",
    "parse_formula",
    "parse_step",
    "render",
]

LABELS = ("PROVED", "DISPROVED", "UNKNOWN")
MAX_FORMULA_CHARS = 2_000
# A step is its citations, an arrow and a formula; longer text is refused before any regex sees it.
MAX_STEP_CHARS = 4_000
# Depth of the formula tree (brackets, ¬, quantifiers and each & / v / -> of a chain): the tree is walked
# recursively (free variables, rendering, the Z3 encoding), so "⊤&⊤&..." 999 long must be refused, not recursed.
MAX_DEPTH = 60

# Formula AST, plain hashable tuples:
#   ("atom", pred, arg)   arg: None (0-ary), ("const", name) or ("var", name)
#   ("not", f) | ("and", f, g) | ("or", f, g) | ("imp", f, g) | ("all", var, f) | ("ex", var, f)
#   ("top",) | ("bot",)
Formula = tuple[Any, ...]


class LogicSyntaxError(ValueError):
    """A formula or a proof step that does not follow the syntax in the module docstring."""


# ---------------------------------------------------------------- parsing

_TOKEN_RE = re.compile(
    r"\s*(?:"
    r"(?P<quant>\((?P<ex>E?)(?P<qvar>[a-uw-z])\)\s*:)"
    r"|(?P<pred>\{[A-Z]+\})"
    r"|(?P<const>\{[a-z]+\})"
    r"|(?P<var>[a-uw-z])(?![A-Za-z0-9_])"
    r"|(?P<not>[¬~])"
    r"|(?P<and>[&∧])"
    r"|(?P<or>(?<![A-Za-z0-9_])v(?![A-Za-z0-9_])|∨)"
    r"|(?P<imp>->|→)"
    r"|(?P<lp>\()"
    r"|(?P<rp>\))"
    r"|(?P<top>⊤)"
    r"|(?P<bot>⊥)"
    r")"
)


def _tokenize(text: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    pos, end = 0, len(text.rstrip())
    while pos < end:
        m = _TOKEN_RE.match(text, pos)
        if not m or m.end() == pos:
            raise LogicSyntaxError(f"unexpected {text[pos : pos + 12]!r} at {pos}")
        kind = m.lastgroup if m.lastgroup not in ("ex", "qvar") else "quant"
        if m.group("quant"):
            tokens.append(("quant", ("ex:" if m.group("ex") else "all:") + m.group("qvar")))
        else:
            assert kind is not None
            tokens.append((kind, m.group(kind)))
        pos = m.end()
    return tokens


class _Parser:
    def __init__(self, tokens: list[tuple[str, str]]) -> None:
        self.tokens = tokens
        self.i = 0
        self.depth = 0

    def parse(self) -> Formula:
        if not self.tokens:
            raise LogicSyntaxError("empty formula")
        f = self._formula()
        if self.i != len(self.tokens):
            raise LogicSyntaxError(f"unexpected {self.tokens[self.i][1]!r}")
        return f

    def _peek(self) -> str | None:
        return self.tokens[self.i][0] if self.i < len(self.tokens) else None

    def _enter(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise LogicSyntaxError(f"formula nested deeper than {MAX_DEPTH}")

    def _formula(self) -> Formula:
        self._enter()
        if self._peek() == "quant":
            f = self._quantified()
        else:
            f = self._disj()
            if self._peek() == "imp":
                self.i += 1
                f = ("imp", f, self._formula())
        self.depth -= 1
        return f

    def _quantified(self) -> Formula:
        kind, var = self.tokens[self.i][1].split(":")
        self.i += 1
        return ("ex" if kind == "ex" else "all", var, self._formula())

    def _disj(self) -> Formula:
        f = self._conj()
        while self._peek() == "or":
            self.i += 1
            f = ("or", f, self._conj())
        return f

    def _conj(self) -> Formula:
        f = self._unary()
        while self._peek() == "and":
            self.i += 1
            f = ("and", f, self._unary())
        return f

    def _unary(self) -> Formula:
        kind = self._peek()
        if kind == "not":
            self._enter()
            self.i += 1
            f = ("not", self._unary())
            self.depth -= 1
            return f
        if kind == "quant":
            return self._quantified()
        if kind == "lp":
            self.i += 1
            f = self._formula()
            if self._peek() != "rp":
                raise LogicSyntaxError("missing ')'")
            self.i += 1
            return f
        if kind in ("top", "bot"):
            self.i += 1
            return (kind,)
        if kind == "pred":
            pred = self.tokens[self.i][1][1:-1]
            self.i += 1
            if self._peek() == "const":
                self.i += 1
                return ("atom", pred, ("const", self.tokens[self.i - 1][1][1:-1]))
            if self._peek() == "var":
                self.i += 1
                return ("atom", pred, ("var", self.tokens[self.i - 1][1]))
            return ("atom", pred, None)
        found = self.tokens[self.i][1] if self.i < len(self.tokens) else "end of formula"
        raise LogicSyntaxError(f"expected a formula, found {found!r}")


def parse_formula(text: str) -> Formula:
    """Parse one closed formula in the syntax above; raises LogicSyntaxError (never evaluates anything)."""
    if not isinstance(text, str):
        raise LogicSyntaxError(f"a formula is text, not a {type(text).__name__}")
    if len(text) > MAX_FORMULA_CHARS:
        raise LogicSyntaxError(f"formula longer than {MAX_FORMULA_CHARS} characters")
    formula = _Parser(_tokenize(text)).parse()
    if _tree_depth(formula) > MAX_DEPTH:
        raise LogicSyntaxError(f"formula nested deeper than {MAX_DEPTH} (each & / v / -> of a chain is a level)")
    free = free_variables(formula)
    if free:
        raise LogicSyntaxError(f"free variable(s) {sorted(free)} not bound by a quantifier")
    return formula


def _tree_depth(formula: Formula) -> int:
    """Depth of a formula tree, walked with an explicit stack (the tree may be deeper than the recursion limit)."""
    deepest, stack = 0, [(formula, 1)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        kind = node[0]
        if kind == "not":
            stack.append((node[1], depth + 1))
        elif kind in ("all", "ex"):
            stack.append((node[2], depth + 1))
        elif kind in ("and", "or", "imp"):
            stack += [(node[1], depth + 1), (node[2], depth + 1)]
    return deepest


def free_variables(formula: Formula, bound: frozenset[str] = frozenset()) -> set[str]:
    """Variables used outside the scope of a quantifier that binds them."""
    kind = formula[0]
    if kind == "atom":
        arg = formula[2]
        return {arg[1]} if arg is not None and arg[0] == "var" and arg[1] not in bound else set()
    if kind in ("all", "ex"):
        return free_variables(formula[2], bound | {formula[1]})
    if kind == "not":
        return free_variables(formula[1], bound)
    if kind in ("and", "or", "imp"):
        return free_variables(formula[1], bound) | free_variables(formula[2], bound)
    return set()


# ---------------------------------------------------------------- rendering

_BINARY = {"and": "&", "or": "v", "imp": "->"}


def render(formula: Formula) -> str:
    """The canonical text of a formula; `parse_formula(render(f)) == f`."""
    kind = formula[0]
    if kind == "atom":
        _, pred, arg = formula
        if arg is None:
            return f"{{{pred}}}"
        return f"{{{pred}}}{{{arg[1]}}}" if arg[0] == "const" else f"{{{pred}}}{arg[1]}"
    if kind == "top":
        return "⊤"
    if kind == "bot":
        return "⊥"
    if kind == "not":
        return "¬" + _wrapped(formula[1])
    if kind in ("all", "ex"):
        return f"({'E' if kind == 'ex' else ''}{formula[1]}): {render(formula[2])}"
    left, right = formula[1], formula[2]
    # `->` binds loosest, so a conjunction or disjunction on its right needs no brackets
    right_text = render(right) if kind == "imp" and right[0] in ("and", "or") else _wrapped(right)
    return f"{_wrapped(left)} {_BINARY[kind]} {right_text}"


def _wrapped(formula: Formula) -> str:
    text = render(formula)
    return f"({text})" if formula[0] in ("and", "or", "imp", "all", "ex") else text


def negate(formula: Formula) -> Formula:
    """¬f, with a double negation removed (the hypothesis of a disproof, §2.1)."""
    return formula[1] if formula[0] == "not" else ("not", formula)


# ---------------------------------------------------------------- proof steps

# Applied to the stripped step, so no pattern has a `\s*` run on each side of an optional piece at the end (the
# old `.+?\s*;?\s*$` backtracked cubically over a step padded with spaces); every `\s*` here sits between two
# fixed tokens and is tried once per start.
_REF = r"(?:fact\d+|int\d+)"
_STEP_RE = re.compile(rf"(?P<premises>void|{_REF}(?:\s*&\s*{_REF})*)\s*->(?P<conclusion>.*)", re.S)
_INT_RE = re.compile(r"(?P<name>int\d+)\s*:(?P<formula>.*)", re.S)
_VERDICT_RE = re.compile(
    r"(?:__(?P<a>PROVED|DISPROVED|UNKNOWN)__|(?:the final answer is|\$?proof_label\$?\s*:)\s*(?P<b>PROVED|DISPROVED|UNKNOWN))"
    r"(?:\s*[.;])?",
    re.I,
)


@dataclass(frozen=True)
class ProofStep:
    """One parsed proof step: a derivation (`premises -> conclusion`) or the final verdict."""

    premises: tuple[str, ...] = ()
    conclusion: str = ""  # "hypothesis", "¬hypothesis" or "formula"
    intermediate: str | None = None  # the "intN" this step defines
    formula: Formula | None = None  # the stated formula when conclusion == "formula"
    verdict: str | None = None  # PROVED / DISPROVED / UNKNOWN for the final step


def parse_step(text: str) -> ProofStep:
    """Parse a proof step; raises LogicSyntaxError with the reason (a step over MAX_STEP_CHARS is not parsed)."""
    if not isinstance(text, str):
        raise LogicSyntaxError(f"a proof step is text, not a {type(text).__name__}")
    if len(text) > MAX_STEP_CHARS:
        raise LogicSyntaxError(f"step longer than {MAX_STEP_CHARS} characters ({len(text)})")
    text = text.strip()
    verdict = _VERDICT_RE.fullmatch(text)
    if verdict:
        return ProofStep(verdict=(verdict.group("a") or verdict.group("b")).upper())
    m = _STEP_RE.fullmatch(text)
    conclusion = _strip_terminator(m.group("conclusion")) if m else ""
    if not conclusion:
        raise LogicSyntaxError(f"not a proof step: {text[:80]!r}")
    premises = tuple(p.strip() for p in m.group("premises").split("&") if p.strip() != "void")
    if conclusion == "hypothesis":
        return ProofStep(premises, "hypothesis")
    if conclusion[0] in "¬~" and conclusion[1:].lstrip() == "hypothesis":
        return ProofStep(premises, "¬hypothesis")
    named = _INT_RE.fullmatch(conclusion)
    name = named.group("name") if named else None
    formula = parse_formula(named.group("formula") if named else conclusion)
    return ProofStep(premises, "formula", name, formula)


def _strip_terminator(conclusion: str) -> str:
    """The conclusion without surrounding space and one trailing `;` (what `.+?\\s*;?\\s*$` used to leave)."""
    conclusion = conclusion.strip()
    if conclusion.endswith(";") and len(conclusion) > 1:
        conclusion = conclusion[:-1].rstrip()
    return conclusion
